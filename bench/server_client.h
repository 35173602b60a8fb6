/*
 * server_client.h: what a benchmark needs to drive a `deltalog serve` process over TCP
 * (docs/protocol.md): start the binary (the one next to the benchmark, or a given path)
 * on a free loopback port and learn the port from its --port-file, connect with
 * TCP_NODELAY, send request lines, read reply and subscription lines without copying
 * them one by one, and read the server's CPU time and peak RSS from /proc.
 * It does not know any operation's fields: callers build and parse the lines (with
 * jansson or by hand). Used by bench_w1 and bench_w3 --via server; bench_server keeps
 * its own copy of the same steps for now.
 */
#ifndef DL_BENCH_SERVER_CLIENT_H
#define DL_BENCH_SERVER_CLIENT_H

#include <deltalog/error.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct bench_srv {
    pid_t pid; /* 0 when not started (or already reaped) */
    int fd;    /* -1 when not connected */
    char *buf; /* received bytes; lines start at off */
    size_t off, len, cap;
    char port_file[96];
} bench_srv_t;

/* Starts `<path> serve --listen 127.0.0.1:0 --quiet --port-file F <args...>` (args ends
 * with NULL; e.g. {"--memory", NULL}) and connects to it. path NULL: the `deltalog`
 * binary in this program's directory. Waits up to 30 s for the port file. */
int bench_srv_start(bench_srv_t *s, const char *path, const char *const *args, dl_error_t *err);
/* Sends all of data (blocking). */
int bench_srv_send(bench_srv_t *s, const char *data, size_t len, dl_error_t *err);
/* The next line (without its newline, NUL-terminated in place; valid until the next call)
 * and its length; NULL with err set when the server hung up or was silent for
 * timeout_ms. */
char *bench_srv_line(bench_srv_t *s, size_t *len, int timeout_ms, dl_error_t *err);
/* True when a whole line is already buffered (bench_srv_line would not block). */
bool bench_srv_has_line(const bench_srv_t *s);
/* Waits up to timeout_ms for bytes from the server and buffers what came; returns the
 * number of bytes read (0 on timeout), or -1 with err set when the server hung up. */
long bench_srv_fill(bench_srv_t *s, int timeout_ms, dl_error_t *err);
/* The server process's CPU seconds (user + system) so far; 0 when unreadable. */
double bench_srv_cpu_seconds(const bench_srv_t *s);
/* Its peak RSS (VmHWM) in MiB; 0 when unreadable. */
double bench_srv_peak_rss_mb(const bench_srv_t *s);
/* Closes the connection (which unsubscribes its subscriptions), stops the server with
 * SIGTERM and waits for it; returns its exit status (-1 if none). NULL-safe. */
int bench_srv_stop(bench_srv_t *s);

#endif
