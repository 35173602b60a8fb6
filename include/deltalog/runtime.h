/*
 * runtime.h: embedding the deltalog server. A dl_server_t opens a store, starts its
 * engine thread, and serves protocol v1 (docs/protocol.md: JSON lines) over TCP or over
 * the process's stdin/stdout. `deltalog serve` is this API plus argument parsing.
 *
 * Threads: dl_server_run() runs the I/O loop on the calling thread; the engine thread is
 * started by dl_server_new() and stopped by dl_server_run() on the way out.
 * dl_server_stop() may be called from any thread or a signal-free context.
 */
#ifndef DELTALOG_RUNTIME_H
#define DELTALOG_RUNTIME_H

#include <deltalog/common.h>
#include <deltalog/error.h>
#include <stdbool.h>
#include <stddef.h>

DL_BEGIN_DECLS

#define DL_SERVER_DEFAULT_LISTEN   "127.0.0.1:7878"
#define DL_SERVER_DEFAULT_MAX_LINE (1u << 20) /* bytes per request line */
#define DL_SERVER_DEFAULT_MAX_CONN 1024
#define DL_SERVER_DEFAULT_MAX_OUT  (16u << 20) /* bytes of replies queued per connection */
#define DL_SERVER_DEFAULT_DEPTH    64          /* JSON nesting in a request */
#define DL_SERVER_DEFAULT_INFLIGHT 1024        /* unanswered requests per connection */

typedef struct dl_server dl_server_t;

/* Caller-allocated; initialize with dl_server_options_init(). Strings are borrowed for
 * the duration of dl_server_new(). */
typedef struct dl_server_options {
    const char *data_dir;  /* the store directory (created if missing) */
    bool memory;           /* in-memory store instead of data_dir */
    int sync_mode;         /* the store's DL_SYNC_* mode; 0: fsync every transaction */
    const char *listen;    /* "HOST:PORT" (port 0: any free port); NULL: the default */
    bool use_stdio;        /* serve one connection on stdin/stdout instead of TCP */
    const char *token;     /* required in a first "hello" when set; mandatory when the
                              listen address is not loopback */
    size_t max_line;       /* 0: DL_SERVER_DEFAULT_MAX_LINE */
    int max_connections;   /* 0: DL_SERVER_DEFAULT_MAX_CONN */
    size_t max_outbuf;     /* 0: DL_SERVER_DEFAULT_MAX_OUT */
    int max_depth;         /* 0: DL_SERVER_DEFAULT_DEPTH */
    int max_inflight;      /* 0: DL_SERVER_DEFAULT_INFLIGHT */
    bool handle_signals;   /* SIGINT/SIGTERM stop the server gracefully */
    const char *port_file; /* when set, the bound "HOST:PORT" is written there */
    bool quiet;            /* no log lines on stderr */
} dl_server_options_t;

DL_API void dl_server_options_init(dl_server_options_t *opt);
/* new: opens the store, starts the engine thread and binds the listener (or takes
 * stdin/stdout). Free with dl_server_free. */
DL_API int dl_server_new(const dl_server_options_t *opt, dl_server_t **out, dl_error_t *err) DL_WUR;
/* The bound address, "HOST:PORT" ("stdio" for the stdio transport). Borrowed. */
DL_API const char *dl_server_address(const dl_server_t *s);
/* Serves until dl_server_stop(), a signal (when handled) or, for stdio, the end of stdin.
 * On the way out: stops accepting, answers every request already read, closes the store. */
DL_API int dl_server_run(dl_server_t *s, dl_error_t *err) DL_WUR;
/* Asks a running server to stop; thread-safe. */
DL_API void dl_server_stop(dl_server_t *s);
DL_API void dl_server_free(dl_server_t *s);

DL_END_DECLS
#endif
