/*
 * http.c: the dashboard's HTTP and WebSocket endpoint, with libwebsockets (its libuv event
 * library) running on the server's own libuv loop as a foreign loop. It serves the static
 * files of one directory (runtime/web/: the dashboard page) and, on a WebSocket upgrade
 * at any path, runs a protocol v1 connection: each text message is one request, each
 * reply and each subscription message goes back as one text message.
 *
 * The WebSocket connection is an "external transport" of server.c (runtime/http.h): the
 * bytes of a message are handed to the server's framing with raw newlines turned into
 * spaces (valid JSON never holds a raw newline inside a string, so this changes no
 * request) and a '\n' at the end of the message; reply lines come back in request order
 * and are sent one per message. So decoding, limits, auth, backpressure and the engine
 * path are exactly the TCP ones, and the same request gives the same bytes.
 *
 * Does not: parse HTTP (libwebsockets does), run requests (server.c and the engine do),
 * serve TLS, or listen on anything but the address given (loopback by default; the demo
 * refuses other addresses without a token, as serve does).
 * Follows docs/protocol.md; the WebSocket transport is described in
 * examples/dashboard/README.md.
 */
#include "runtime/http.h"

#include "base/base.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A write handed over by the server: n buffers of reply lines, sent one line per
 * WebSocket message, then completed with dl__server_ext_written. */
typedef struct wsout {
    struct wsout *next;
    void *token;
    const uv_buf_t *bufs; /* borrowed until completed */
    unsigned n, i;        /* buffers, and the one being sent */
    size_t off;           /* offset in bufs[i] */
} wsout_t;

/* One WebSocket connection (lws allocates and zeroes it: per_session_data_size). */
typedef struct session {
    struct lws *wsi;
    void *conn; /* the server's connection; NULL once closed */
    wsout_t *head, *tail;
    bool server_closing; /* the server asked to close: close once the queue is empty */
    bool gone;           /* dl__server_ext_closed was called */
    dl_buf_t msg;        /* LWS_PRE bytes of padding, then the message being sent */
} session_t;

struct dl_http {
    dl_server_t *srv;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct lws_http_mount mount;
    char *web_dir;
    char iface[64];
    bool destroying; /* lws_context_destroy was called once */
};

static const char *const index_name = "index.html";

/* ---- the transport side of the server's connection ----------------------------------------- */

static void ws_write(void *ctx, const uv_buf_t *bufs, unsigned n, void *token) {
    session_t *ss = ctx;
    wsout_t *o = dl_calloc(1, sizeof *o);
    if (!o) {
        /* Out of memory: fail this write now and close. Safe although the contract says
         * "later": the connection cannot be freed here, its transport handle is open. */
        ss->server_closing = true;
        lws_callback_on_writable(ss->wsi);
        dl__server_ext_written(token, UV_ENOMEM);
        return;
    }
    o->token = token;
    o->bufs = bufs;
    o->n = n;
    if (ss->tail)
        ss->tail->next = o;
    else
        ss->head = o;
    ss->tail = o;
    lws_callback_on_writable(ss->wsi);
}

static void ws_flow(void *ctx, bool reading) {
    session_t *ss = ctx;
    lws_rx_flow_control(ss->wsi, reading ? 1 : 0);
}

static void ws_close(void *ctx) {
    session_t *ss = ctx;
    if (ss->gone)
        return;
    ss->server_closing = true;
    lws_callback_on_writable(ss->wsi);
}

static const dl_server_ext_ops_t ws_ops = {ws_write, ws_flow, ws_close};

/* Completes every queued write with status (the peer is gone). */
static void fail_queue(session_t *ss, int status) {
    while (ss->head) {
        wsout_t *o = ss->head;
        ss->head = o->next;
        if (!ss->head)
            ss->tail = NULL;
        void *token = o->token;
        dl_free(o);
        dl__server_ext_written(token, status);
    }
}

/* Skips empty buffer ends; true when the head write has nothing left to send. */
static bool head_done(wsout_t *o) {
    while (o->i < o->n && o->off >= o->bufs[o->i].len) {
        o->i++;
        o->off = 0;
    }
    return o->i >= o->n;
}

/* Sends the next reply line as one message. Returns -1 to close the connection. */
static int send_next(session_t *ss) {
    wsout_t *o = ss->head;
    while (o && head_done(o)) { /* completes writes whose lines are all sent */
        ss->head = o->next;
        if (!ss->head)
            ss->tail = NULL;
        void *token = o->token;
        dl_free(o);
        dl__server_ext_written(token, 0); /* may queue more or ask to close */
        o = ss->head;
    }
    if (!o) {
        if (ss->server_closing) {
            lws_close_reason(ss->wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        return 0;
    }
    const char *base = o->bufs[o->i].base + o->off;
    size_t avail = o->bufs[o->i].len - o->off;
    const char *nl = memchr(base, '\n', avail);
    size_t len = nl ? (size_t)(nl - base) : avail;
    o->off += nl ? len + 1 : len;
    ss->msg.len = 0;
    if (!dl__buf_reserve(&ss->msg, LWS_PRE + len + 1))
        return -1;
    memcpy(ss->msg.data + LWS_PRE, base, len);
    if (lws_write(ss->wsi, (unsigned char *)ss->msg.data + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len)
        return -1;
    if (ss->head || ss->server_closing) /* more lines, a write to complete, or the close */
        lws_callback_on_writable(ss->wsi);
    return 0;
}

/* Hands a message fragment to the server's framing (design note at the top). */
static void feed(session_t *ss, const char *p, size_t n, bool final) {
    char tmp[4096];
    while (n && ss->conn) {
        size_t k = n < sizeof tmp ? n : sizeof tmp;
        for (size_t i = 0; i < k; i++)
            tmp[i] = (p[i] == '\n' || p[i] == '\r') ? ' ' : p[i];
        dl__server_ext_input(ss->conn, tmp, k);
        p += k;
        n -= k;
    }
    if (final && ss->conn)
        dl__server_ext_input(ss->conn, "\n", 1);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
    session_t *ss = user;
    dl_http_t *h = lws_context_user(lws_get_context(wsi));
    switch (reason) {
        case LWS_CALLBACK_ESTABLISHED: {
            memset(ss, 0, sizeof *ss);
            ss->wsi = wsi;
            dl__buf_init(&ss->msg);
            char peer[64] = "websocket";
            char ip[48];
            if (lws_get_peer_simple(wsi, ip, sizeof ip))
                snprintf(peer, sizeof peer, "ws %s", ip);
            ss->conn = dl__server_ext_open(h->srv, &ws_ops, ss, peer);
            if (!ss->conn) {
                ss->gone = true;
                lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
                return -1;
            }
            return 0;
        }
        case LWS_CALLBACK_RECEIVE:
            if (ss->conn && !ss->gone)
                feed(ss, in, len, lws_is_final_fragment(wsi));
            return 0;
        case LWS_CALLBACK_SERVER_WRITEABLE:
            if (ss->gone)
                return -1;
            return send_next(ss);
        case LWS_CALLBACK_CLOSED:
            if (!ss->gone && ss->conn) {
                ss->gone = true;
                fail_queue(ss, UV_ECANCELED);
                void *conn = ss->conn;
                ss->conn = NULL;
                dl__server_ext_closed(conn);
            }
            dl__buf_fini(&ss->msg);
            return 0;
        default:
            break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    /* The first protocol gets plain HTTP and WebSocket upgrades without a subprotocol. */
    {"deltalog", callback, sizeof(session_t), 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- start and stop ------------------------------------------------------------------------- */

/* Stop hook: the server has no connections left. lws closes its handles on the loop,
 * which keeps running until they are closed; dl__http_free finishes afterwards. */
static void http_stop(void *ctx) {
    dl_http_t *h = ctx;
    if (h->ctx && !h->destroying) {
        h->destroying = true;
        lws_context_destroy(h->ctx);
    }
}

void dl__http_free(dl_http_t *h) {
    if (!h)
        return;
    if (h->ctx) {
        if (!h->destroying)
            lws_context_destroy(h->ctx);
        lws_context_destroy(h->ctx); /* a foreign loop: the second call frees the context */
    }
    dl_free(h->web_dir);
    dl_free(h);
}

int dl__http_start(dl_server_t *s, const char *listen, const char *web_dir, dl_http_t **out,
                   char *out_addr, size_t addr_cap, dl_error_t *err) {
    *out = NULL;
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || !colon[1] || *end || port < 0 || port > 65535 || (size_t)(colon - listen) >= 64)
        return dl_error_set(err, DL_EINVAL, "--http %s: expected HOST:PORT", listen);
    dl_http_t *h = dl_calloc(1, sizeof *h);
    if (!h)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    h->srv = s;
    memcpy(h->iface, listen, (size_t)(colon - listen));
    if (!h->iface[0] || strcmp(h->iface, "localhost") == 0)
        snprintf(h->iface, sizeof h->iface, "127.0.0.1");
    h->web_dir = dl_strdup(web_dir);
    if (!h->web_dir) {
        dl_free(h);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    lws_set_log_level(LLL_ERR, NULL);

    struct lws_context_creation_info ci;
    memset(&ci, 0, sizeof ci);
    void *loops[1] = {dl__server_loop(s)};
    ci.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    ci.foreign_loops = loops;
    ci.user = h;
    ci.port = CONTEXT_PORT_NO_LISTEN;
    h->ctx = lws_create_context(&ci);
    if (!h->ctx) {
        dl__http_free(h);
        return dl_error_set(err, DL_EIO, "libwebsockets: cannot create a context on the loop");
    }

    h->mount.mountpoint = "/";
    h->mount.mountpoint_len = 1;
    h->mount.origin = h->web_dir;
    h->mount.def = index_name;
    h->mount.origin_protocol = LWSMPRO_FILE;
    struct lws_context_creation_info vi;
    memset(&vi, 0, sizeof vi);
    vi.port = (int)port;
    vi.iface = h->iface;
    vi.protocols = protocols;
    vi.mounts = &h->mount;
    vi.vhost_name = "deltalog";
    vi.options = LWS_SERVER_OPTION_LIBUV;
    h->vh = lws_create_vhost(h->ctx, &vi);
    if (!h->vh) {
        dl__http_free(h);
        return dl_error_set(err, DL_EIO, "cannot listen on %s (HTTP)", listen);
    }
    int bound = lws_get_vhost_listen_port(h->vh);
    if (bound <= 0) {
        dl__http_free(h);
        return dl_error_set(err, DL_EIO, "cannot listen on %s (HTTP)", listen);
    }
    snprintf(out_addr, addr_cap, "%s:%d", h->iface, bound);
    if (dl__server_on_stop(s, http_stop, h) != DL_OK) {
        dl__http_free(h);
        return dl_error_set(err, DL_ELIMIT, "too many stop hooks");
    }
    *out = h;
    return DL_OK;
}
