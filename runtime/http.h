/*
 * http.h: the dashboard's private interface between server.c, http.c and demo.c:
 *  - the "external transport" hook of server.c: a protocol v1 connection whose bytes come
 *    and go through another library running on the server's libuv loop (the WebSocket
 *    endpoint of http.c, the in-process writer of demo.c). Everything above the handle
 *    (framing, decoding, reply order, limits, auth, the engine path) is server.c's, so a
 *    WebSocket client gets the same bytes as a TCP one;
 *  - http.c: HTTP (static files) and the WebSocket endpoint with libwebsockets on that loop;
 *  - demo.c: the `deltalog demo` command.
 * Not API (include/deltalog/runtime.h is). Follows docs/protocol.md; the WebSocket
 * transport is described in examples/dashboard/README.md.
 */
#ifndef DL_RUNTIME_HTTP_H
#define DL_RUNTIME_HTTP_H

#include <deltalog/runtime.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* ---- server.c: external transports ------------------------------------------------------ */

/* What the server calls on a transport. All calls happen on the loop thread. */
typedef struct dl_server_ext_ops {
    /* Takes n buffers of reply lines (each line ends in '\n'; a buffer may hold several)
     * for the peer. The buffers stay valid until the transport calls
     * dl__server_ext_written(token, status), which it must do later (from one of its own
     * callbacks, never from inside write), also when the peer is gone (status < 0). */
    void (*write)(void *ctx, const uv_buf_t *bufs, unsigned n, void *token);
    /* Backpressure: stop (false) or resume (true) delivering input. */
    void (*flow)(void *ctx, bool reading);
    /* The server closes the connection: finish pending writes, end the peer, then call
     * dl__server_ext_closed (later, not from inside close). Ignored after the transport
     * itself called dl__server_ext_closed. */
    void (*close)(void *ctx);
} dl_server_ext_ops_t;

uv_loop_t *dl__server_loop(dl_server_t *s);
bool dl__server_stopping(const dl_server_t *s);
/* Registers fn to run once when the server has no connections left while stopping (up
 * to 4 hooks): the place to close handles of other libraries on the loop. */
int dl__server_on_stop(dl_server_t *s, void (*fn)(void *ctx), void *ctx);
/* A new connection (opaque; NULL when the server is stopping, at its connection limit,
 * or out of memory). ops is borrowed for the connection's life. */
void *dl__server_ext_open(dl_server_t *s, const dl_server_ext_ops_t *ops, void *ctx,
                          const char *peer);
/* Bytes from the peer, framed as protocol lines (one request per '\n'). */
void dl__server_ext_input(void *conn, const char *p, size_t n);
/* The peer will send nothing more; replies still go out, then the server closes. */
void dl__server_ext_eof(void *conn);
/* Completes a write handed to ops->write. */
void dl__server_ext_written(void *token, int status);
/* The transport's side is gone (after the peer left or after ops->close); the last call
 * a transport makes for this connection. */
void dl__server_ext_closed(void *conn);

/* ---- http.c: HTTP + WebSocket ------------------------------------------------------------ */
typedef struct dl_http dl_http_t;

/* Serves the files of web_dir over HTTP on listen ("HOST:PORT", port 0: any free port)
 * and protocol v1 over WebSocket (any path; one request per text message, one reply or
 * subscription message per message) on the server's loop. Must be called before
 * dl_server_run. Stops by itself when the server stops (a stop hook). Writes the bound
 * "HOST:PORT" into out_addr. */
int dl__http_start(dl_server_t *s, const char *listen, const char *web_dir, dl_http_t **out,
                   char *out_addr, size_t addr_cap, dl_error_t *err) DL_WUR;

/* After dl_server_run returned (before dl_server_free): frees what http_start made.
 * NULL-safe. */
void dl__http_free(dl_http_t *h);

/* ---- demo.c --------------------------------------------------------------------------------- */
/* `deltalog demo [OPTIONS]`: argv[0] is "demo". Returns the process exit code. */
int dl__demo_main(int argc, char **argv);

#endif
