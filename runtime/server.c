/*
 * server.c: the I/O side of the server: one libuv loop on the thread that calls
 * dl_server_run(), owning the listener, every connection, line framing, the limits,
 * per-connection reply order, auth, signals and the graceful stop. Requests that touch
 * the store go to the engine thread (engine.c) as jobs; the rest (hello, ping, errors
 * found while framing or decoding) are answered here.
 *
 * Design notes (docs/protocol.md "Transports and limits" is the user-facing side):
 *  1. Transports. TCP connections and the stdio "connection" share every line of code
 *     above the handle: framing, decoding, slots, writes. Only how bytes come in and go
 *     out differs (a uv stream, or uv_fs reads/writes when stdin/stdout are files), so
 *     the same input yields the same output bytes on both.
 *  2. Order. Each request line gets a slot in its connection's FIFO at the moment it is
 *     framed; replies fill slots in any order (engine jobs finish later than pings) and
 *     are written strictly from the head, so replies come in request order.
 *  3. Limits. A line longer than max_line gets a "limit" error reply and is skipped up
 *     to its newline; the connection stays open. Reading pauses while a connection has
 *     max_inflight unanswered requests or max_outbuf bytes of replies not yet taken by
 *     the peer, and resumes when both are below half; so memory per connection is
 *     bounded by max_line + one read + its replies. A connection over max_connections
 *     gets one "limit" error line and is closed.
 *  4. Jobs in flight (sent to the engine, not yet back) never exceed ring_size - 1
 *     (engine.c invariant 3); excess jobs wait in `overflow`, in order.
 *  5. A connection is freed only when it is closing, its handles are closed, no job of
 *     it is in the engine and no write of it is pending.
 *  6. Stop: stop accepting and reading; every request already framed is answered and
 *     written (bounded by a drain timeout for peers that do not read); then the engine
 *     is stopped, which closes the store cleanly; then the loop ends. Subscriptions get
 *     their end message ("closed") first.
 *  7. Subscriptions (docs/protocol.md "Subscriptions"). The engine hands the connection
 *     a channel-mode dl_sub_t with the subscribe reply; the connection polls its eventfd
 *     on this loop and turns each message into a slot after the reply, so a subscription's
 *     messages follow its reply and keep their order. Backpressure: the connection takes
 *     messages only while its held bytes (writes not yet completed plus subscription
 *     messages waiting in slots) are below max_outbuf; above it the poll stops and the
 *     messages stay in the subscription's queue, where its policy applies: coalesce merges
 *     them into one net delta (memory bounded by the result's size), block makes the
 *     engine wait (then ends it with "timeout"), drop ends it with "lagged". The poll
 *     resumes when the held bytes fall below half. Closing the connection closes its
 *     subscriptions (the registry reaps them at its next pump). An unsubscribe naming a
 *     number not yet known while subscribes are in the engine waits for their replies
 *     (its slot keeps its place), so pipelined subscribe + unsubscribe works.
 * Does not: run requests (exec.c), decode JSON (proto.c).
 */
#include "runtime/http.h" /* external transports (WebSocket): dashboard hook */
#include "runtime/runtime.h"

#include <ck_pr.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#if DL_HAVE_SUBS
#include <deltalog/subscribe.h>
#endif

#define READ_CHUNK       (64 * 1024)
#define RING_SIZE        4096
#define DRAIN_TIMEOUT_MS 5000

static const char oom_line[] =
    "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"nomem\",\"message\":\"out of memory\"}}\n";

typedef struct slot {
    struct slot *next;
    char *line; /* the reply, ending in '\n'; NULL until ready */
    size_t len;
    bool ready;
    bool static_line; /* line points to oom_line: not freed */
    bool sub_msg;     /* a subscription message (counted in the connection's held bytes) */
} slot_t;

typedef struct csub csub_t; /* a subscription relayed by a connection (design note 7) */

enum { K_TCP, K_STDIO_STREAM, K_STDIO_FILE, K_EXT /* dashboard hook: http.c, demo.c */ };

typedef struct conn conn_t;
struct conn {
    dl_server_t *srv;
    conn_t *prev, *next; /* the server's list of live connections */
    int kind;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_tty_t tty;
    } ih, oh;              /* input handle (TCP: both directions); stdio output handle */
    uv_stream_t *in, *out; /* NULL for files */
    int in_fd, out_fd;     /* K_STDIO_FILE */
    uv_fs_t rreq;          /* K_STDIO_FILE: the read in progress */
    char *fbuf;            /* K_STDIO_FILE: its buffer */
    bool fs_reading;
    int guard;       /* > 0 while a callback still uses the connection: not freed */
    int handles;     /* handles not yet closed */
    dl_buf_t inbuf;  /* received bytes not yet framed */
    bool discarding; /* skipping the rest of an over-long line */
    bool reading, paused, eof, closing, authed, rejected;
    slot_t *head, *tail;
    int n_slots;   /* requests framed whose reply is not yet handed to a write */
    int in_engine; /* jobs of this connection in the engine or overflow */
    int pending_writes;
    size_t out_bytes;       /* bytes of replies handed to writes not yet completed */
    size_t sub_bytes;       /* bytes of subscription messages waiting in slots (design note 7) */
    csub_t *subs;           /* its live subscriptions */
    int subs_pending;       /* subscribe requests in the engine */
    struct punsub *punsubs; /* unsubscribes waiting for those (design note 7) */
    char peer[64];
    const dl_server_ext_ops_t *ext_ops; /* K_EXT: the transport (dashboard hook) */
    void *ext_ctx;
};

typedef struct wreq {
    union {
        uv_write_t w;
        uv_fs_t f;
    } req;
    conn_t *c;
    size_t total;
    unsigned n;
    uv_buf_t *bufs; /* n buffers */
    slot_t **slots; /* n slots owning the lines */
} wreq_t;

struct dl_server {
    dl_server_options_t opt;
    char *listen_copy, *token, *port_file;
    char address[80];
    dl_proto_limits_t lim;
    uv_loop_t loop;
    bool loop_ok;
    uv_tcp_t listener;
    bool listening;
    uv_signal_t sigint, sigterm;
    bool signals;
    uv_async_t reply_async, stop_async;
    uv_timer_t drain_timer;
    bool drain_timer_on;
    dl_engine_t *engine;
    unsigned in_flight; /* jobs in the engine (invariant 4) */
    dl_job_t *overflow_head, *overflow_tail;
    conn_t *conns;
    int n_conns;
    bool stopping, engine_stopped, handles_closed;
    void (*stop_hooks[4])(void *ctx); /* dashboard hook: run once the connections are gone */
    void *stop_ctx[4];
    dl_server_counters_t counters;
    const void *enc_delta; /* design note 7: the last DATA delta encoded (a reference)... */
    char *enc_body;        /* ...and its message without "sub" (shared by its subscribers) */
    size_t enc_len;
    char readbuf[READ_CHUNK];
};

static void conn_process(conn_t *c);
static void conn_flush(conn_t *c);
static void subs_close_all(conn_t *c, const char *end_message);
static void punsubs_free(conn_t *c);
static void subs_resume(conn_t *c);
static void held_add(dl_server_t *s, int64_t n);
static void conn_close(conn_t *c);
static void server_check_stop(dl_server_t *s);
static void conn_start_reading(conn_t *c);
static void begin_stop(dl_server_t *s, const char *why);

static void logf_(dl_server_t *s, const char *fmt, ...) DL_PRINTF(2, 3);
static void logf_(dl_server_t *s, const char *fmt, ...) {
    if (s->opt.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("deltalog: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- slots and replies ----------------------------------------------------------------- */

static slot_t *slot_push(conn_t *c) {
    slot_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (c->tail)
        c->tail->next = s;
    else
        c->head = s;
    c->tail = s;
    c->n_slots++;
    return s;
}

static void slot_fill(conn_t *c, slot_t *s, char *line, size_t len, bool failed) {
    if (!line) {
        line = (char *)oom_line;
        len = sizeof oom_line - 1;
        s->static_line = true;
        failed = true;
    }
    s->line = line;
    s->len = len;
    s->ready = true;
    if (failed)
        ck_pr_add_64(&c->srv->counters.errors, 1);
}

static void slot_free(slot_t *s) {
    if (!s->static_line)
        dl_free(s->line);
    dl_free(s);
}

/* Answers with an error now (in order: the slot keeps its place). */
static void reply_error(conn_t *c, slot_t *s, const json_t *id, int code, const char *msg) {
    size_t len = 0;
    char *line = dl__proto_reply_error(id, code, msg, &len);
    slot_fill(c, s, line, len, true);
}

/* ---- connection lifetime ---------------------------------------------------------------- */

static void conn_maybe_free(conn_t *c) {
    if (!c->closing || c->handles || c->in_engine || c->pending_writes || c->fs_reading || c->guard)
        return;
    dl_server_t *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (!c->rejected) {
        s->n_conns--;
        ck_pr_store_64(&s->counters.connections, (uint64_t)s->n_conns);
    }
    for (slot_t *x = c->head, *nx; x; x = nx) {
        nx = x->next;
        slot_free(x);
    }
    held_add(s, -(int64_t)c->sub_bytes);
    punsubs_free(c);
    dl__buf_fini(&c->inbuf);
    dl_free(c->fbuf);
    dl_free(c);
    if (s->opt.use_stdio)
        begin_stop(s, "end of input"); /* the stdio server lives as long as its connection */
    server_check_stop(s);
}

static void on_handle_closed(uv_handle_t *h) {
    conn_t *c = h->data;
    c->handles--;
    conn_maybe_free(c);
}

static void conn_close(conn_t *c) {
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    subs_close_all(c, NULL); /* design note 7: closing a connection unsubscribes */
    if (c->kind == K_EXT) {  /* dashboard hook: the transport calls dl__server_ext_closed */
        c->guard++;
        c->ext_ops->close(c->ext_ctx);
        c->guard--;
    }
    if (c->in && !uv_is_closing((uv_handle_t *)c->in))
        uv_close((uv_handle_t *)c->in, on_handle_closed);
    if (c->out && c->out != c->in && !uv_is_closing((uv_handle_t *)c->out))
        uv_close((uv_handle_t *)c->out, on_handle_closed);
    conn_maybe_free(c);
}

static conn_t *conn_new(dl_server_t *s, int kind) {
    conn_t *c = dl_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    c->kind = kind;
    c->in_fd = c->out_fd = -1;
    dl__buf_init(&c->inbuf);
    c->authed = s->token == NULL;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    return c;
}

/* True when this connection has nothing left to answer or write. */
static bool conn_idle(const conn_t *c) {
    return c->n_slots == 0 && c->in_engine == 0 && c->pending_writes == 0;
}

/* After input ended (EOF, or the server stopping) and everything is written: close. */
static void conn_check_done(conn_t *c) {
    if (c->closing || !c->eof || !conn_idle(c))
        return;
    conn_close(c);
}

/* ---- writing ---------------------------------------------------------------------------- */

static void write_done(wreq_t *w, int status) {
    conn_t *c = w->c;
    for (unsigned i = 0; i < w->n; i++)
        slot_free(w->slots[i]);
    c->out_bytes -= w->total;
    c->pending_writes--;
    held_add(c->srv, -(int64_t)w->total);
    dl_free(w);
    if (!c->closing)
        subs_resume(c);
    c->guard++;
    if (status < 0 && !c->closing) {
        logf_(c->srv, "%s: write failed: %s", c->peer, uv_strerror(status));
        c->eof = true;
        conn_close(c);
    }
    if (!c->closing) {
        conn_process(c); /* may resume a paused connection */
        conn_check_done(c);
    }
    c->guard--;
    conn_maybe_free(c);
}

static void on_stream_written(uv_write_t *req, int status) {
    write_done((wreq_t *)req->data, status);
}

static void on_fs_written(uv_fs_t *req) {
    wreq_t *w = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    if (r >= 0 && (size_t)r < w->total) {
        /* A short write to a file: write the rest synchronously (files do not block long). */
        size_t done = (size_t)r;
        for (unsigned i = 0; i < w->n && r >= 0; i++) {
            size_t blen = w->bufs[i].len;
            if (done >= blen) {
                done -= blen;
                continue;
            }
            const char *p = w->bufs[i].base + done;
            size_t left = blen - done;
            done = 0;
            while (left) {
                ssize_t k = write(w->c->out_fd, p, left);
                if (k < 0) {
                    r = -1;
                    break;
                }
                p += k;
                left -= (size_t)k;
            }
        }
    }
    write_done(w, r < 0 ? UV_EIO : 0);
}

/* Writes every ready reply at the head of the FIFO in one write (design note 2). */
static void conn_flush(conn_t *c) {
    if (c->closing)
        return;
    /* File output goes through the thread pool, where two writes in flight could land in
     * either order: one at a time (the next flush happens in write_done). Streams keep
     * their write order themselves. */
    if (!c->out && c->pending_writes)
        return;
    unsigned n = 0;
    for (slot_t *x = c->head; x && x->ready; x = x->next)
        n++;
    if (!n)
        return;
    wreq_t *w = dl_calloc(1, sizeof *w + n * (sizeof(uv_buf_t) + sizeof(slot_t *)));
    if (!w) {
        conn_close(c); /* cannot answer in order any more: closing is the honest option */
        return;
    }
    w->c = c;
    w->n = n;
    w->bufs = (uv_buf_t *)(w + 1);
    w->slots = (slot_t **)(w->bufs + n);
    for (unsigned i = 0; i < n; i++) {
        slot_t *x = c->head;
        c->head = x->next;
        if (!c->head)
            c->tail = NULL;
        x->next = NULL;
        w->slots[i] = x;
        w->bufs[i] = uv_buf_init(x->line, (unsigned)x->len);
        w->total += x->len;
        if (x->sub_msg) {
            c->sub_bytes -= x->len;
            held_add(c->srv, -(int64_t)x->len);
        }
    }
    held_add(c->srv, (int64_t)w->total);
    c->n_slots -= (int)n;
    c->out_bytes += w->total;
    c->pending_writes++;
    ck_pr_add_64(&c->srv->counters.bytes_out, w->total);
    int rc;
    if (c->kind == K_EXT) { /* dashboard hook: completes later with dl__server_ext_written */
        c->ext_ops->write(c->ext_ctx, w->bufs, n, w);
        return;
    }
    if (c->out) {
        w->req.w.data = w;
        rc = uv_write(&w->req.w, c->out, w->bufs, n, on_stream_written);
    } else {
        w->req.f.data = w;
        rc = uv_fs_write(&c->srv->loop, &w->req.f, c->out_fd, w->bufs, n, -1, on_fs_written);
    }
    if (rc != 0)
        write_done(w, rc);
}

/* ---- requests ---------------------------------------------------------------------------- */

static bool token_equal(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    unsigned char d = (unsigned char)(na != nb);
    for (size_t i = 0; i < nb; i++)
        d |= (unsigned char)(a[i % (na ? na : 1)] ^ b[i]);
    return d == 0;
}

static void submit_overflow(dl_server_t *s) {
    while (s->overflow_head && s->in_flight < RING_SIZE - 1) {
        dl_job_t *j = s->overflow_head;
        if (!dl__engine_submit(s->engine, j))
            break;
        s->overflow_head = j->next;
        if (!s->overflow_head)
            s->overflow_tail = NULL;
        j->next = NULL;
        s->in_flight++;
    }
}

static void send_job(conn_t *c, slot_t *slot, dl_request_t *req) {
    dl_server_t *s = c->srv;
    dl_job_t *j = dl_calloc(1, sizeof *j);
    if (!j) {
        reply_error(c, slot, req->id, DL_ENOMEM, "out of memory");
        dl__proto_request_fini(req);
        return;
    }
    j->subscribe = req->op == DL_REQ_SUBSCRIBE;
    if (j->subscribe)
        c->subs_pending++;
    j->req = *req; /* taken */
    memset(req, 0, sizeof *req);
    j->conn = c;
    j->slot = slot;
    c->in_engine++;
    if (s->overflow_tail)
        s->overflow_tail->next = j;
    else
        s->overflow_head = j;
    s->overflow_tail = j;
    submit_overflow(s);
}

static void do_unsubscribe(conn_t *c, slot_t *slot, const dl_request_t *req);

static void do_hello(conn_t *c, slot_t *slot, const dl_request_t *req) {
    dl_server_t *s = c->srv;
    const json_t *proto = json_object_get(req->msg, "protocol");
    if (proto && json_integer_value(proto) != DL_PROTO_VERSION) {
        reply_error(c, slot, req->id, DL_EVERSION, "this server speaks protocol 1 only");
        return;
    }
    if (s->token) {
        const json_t *tok = json_object_get(req->msg, "token");
        if (!tok || !token_equal(s->token, json_string_value(tok))) {
            reply_error(c, slot, req->id, DL_EAUTH, "wrong or missing token");
            return;
        }
        c->authed = true;
    }
    json_t *b = json_object();
    if (b) {
        json_object_set_new(b, "server", json_string("deltalog"));
        json_object_set_new(b, "version", json_string(dl_version()));
        json_object_set_new(b, "protocol", json_integer(DL_PROTO_VERSION));
    }
    size_t len = 0;
    char *line = b ? dl__proto_reply_ok(req->id, b, &len) : NULL;
    slot_fill(c, slot, line, len, false);
}

static void handle_line(conn_t *c, const char *p, size_t n) {
    if (dl__proto_line_blank(p, n))
        return;
    dl_server_t *s = c->srv;
    ck_pr_add_64(&s->counters.requests, 1);
    slot_t *slot = slot_push(c);
    if (!slot) {
        conn_close(c); /* cannot keep order without a slot */
        return;
    }
    dl_request_t req;
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl__proto_decode(p, n, &s->lim, &req, &err);
    if (rc != DL_OK) {
        reply_error(c, slot, req.id, rc, err.message);
    } else if (!c->authed && req.op != DL_REQ_HELLO) {
        reply_error(c, slot, req.id, DL_EAUTH,
                    "this server requires a hello with the token before any other op");
    } else if (req.op == DL_REQ_HELLO) {
        do_hello(c, slot, &req);
    } else if (req.op == DL_REQ_UNSUBSCRIBE) {
        do_unsubscribe(c, slot, &req);
    } else if (req.op == DL_REQ_PING) {
        size_t len = 0;
        char *line = dl__proto_reply_ok(req.id, json_object(), &len);
        slot_fill(c, slot, line, len, false);
    } else {
        send_job(c, slot, &req);
    }
    dl__proto_request_fini(&req);
}

static bool over_limits(const conn_t *c) {
    const dl_server_t *s = c->srv;
    return c->n_slots >= s->opt.max_inflight || c->out_bytes >= s->opt.max_outbuf;
}

static bool below_resume(const conn_t *c) {
    const dl_server_t *s = c->srv;
    return c->n_slots <= s->opt.max_inflight / 2 && c->out_bytes <= s->opt.max_outbuf / 2;
}

static void conn_stop_reading(conn_t *c) {
    if (!c->reading)
        return;
    c->reading = false;
    if (c->kind == K_EXT)
        c->ext_ops->flow(c->ext_ctx, false);
    else if (c->in)
        uv_read_stop(c->in);
    /* files: the read in flight completes; on_fs_read does not issue the next one. */
}

/* Frames and handles complete lines in inbuf until it is empty or limits pause us. */
static void conn_process(conn_t *c) {
    dl_server_t *s = c->srv;
    if (c->closing)
        return;
    if (s->stopping) { /* design note 6: answer what was read, read nothing more */
        conn_flush(c);
        return;
    }
    if (c->paused) {
        conn_flush(c); /* slots answered since the pause may be written now */
        if (!below_resume(c))
            return;
        c->paused = false;
    }
    size_t pos = 0;
    dl_buf_t *b = &c->inbuf;
    while (pos < b->len && !c->closing) {
        if (over_limits(c)) {
            c->paused = true;
            break;
        }
        char *start = b->data + pos;
        size_t avail = b->len - pos;
        char *nl = memchr(start, '\n', avail);
        if (c->discarding) {
            if (!nl) {
                pos = b->len;
                break;
            }
            pos += (size_t)(nl - start) + 1;
            c->discarding = false;
            continue;
        }
        if (!nl) {
            if (avail > s->lim.max_line + 1) { /* +1: a trailing '\r' is not counted */
                slot_t *slot = slot_push(c);
                if (slot) {
                    char msg[128];
                    snprintf(msg, sizeof msg,
                             "request line over the limit of %zu bytes; skipped to its end",
                             s->lim.max_line);
                    reply_error(c, slot, NULL, DL_ELIMIT, msg);
                    ck_pr_add_64(&s->counters.requests, 1);
                }
                c->discarding = true;
                pos = b->len;
            }
            break;
        }
        size_t n = (size_t)(nl - start);
        pos += n + 1;
        handle_line(c, start, n);
    }
    if (pos) {
        memmove(b->data, b->data + pos, b->len - pos);
        b->len -= pos;
    }
    if (c->eof && !c->paused && b->len && !c->closing) {
        /* The last line of the input had no newline: it is still a request. */
        if (!c->discarding)
            handle_line(c, b->data, b->len);
        b->len = 0;
    }
    conn_flush(c);
    if (c->paused)
        conn_stop_reading(c);
    else if (!c->eof && !c->reading && !c->closing)
        conn_start_reading(c);
}

/* ---- reading ----------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    conn_t *c = h->data;
    *buf = uv_buf_init(c->srv->readbuf, sizeof c->srv->readbuf);
}

static void conn_input(conn_t *c, const char *p, size_t n) {
    ck_pr_add_64(&c->srv->counters.bytes_in, n);
    dl__buf_put(&c->inbuf, p, n);
    if (c->inbuf.oom) {
        logf_(c->srv, "%s: out of memory buffering input; closing", c->peer);
        conn_close(c);
        return;
    }
    conn_process(c);
}

static void conn_input_end(conn_t *c) {
    c->eof = true;
    conn_stop_reading(c);
    conn_process(c);
    conn_check_done(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = st->data;
    if (nread > 0)
        conn_input(c, buf->base, (size_t)nread);
    else if (nread < 0) {
        if (nread != UV_EOF)
            logf_(c->srv, "%s: read failed: %s", c->peer, uv_strerror((int)nread));
        conn_input_end(c);
    }
}

static void fs_read_next(conn_t *c);

static void on_fs_read(uv_fs_t *req) {
    conn_t *c = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    /* fs_reading stays set while the bytes are handled, so c cannot be freed under us. */
    if (!c->closing) {
        if (r > 0)
            conn_input(c, c->fbuf, (size_t)r);
        else
            conn_input_end(c);
    }
    c->fs_reading = false;
    if (!c->closing && c->reading)
        fs_read_next(c);
    conn_maybe_free(c);
}

static void fs_read_next(conn_t *c) {
    if (c->fs_reading)
        return;
    uv_buf_t b = uv_buf_init(c->fbuf, READ_CHUNK);
    c->rreq.data = c;
    if (uv_fs_read(&c->srv->loop, &c->rreq, c->in_fd, &b, 1, -1, on_fs_read) == 0)
        c->fs_reading = true;
    else
        conn_input_end(c);
}

static void conn_start_reading(conn_t *c) {
    if (c->reading || c->eof || c->closing || c->srv->stopping)
        return;
    c->reading = true;
    if (c->kind == K_EXT) {
        c->ext_ops->flow(c->ext_ctx, true);
    } else if (c->in) {
        int rc = uv_read_start(c->in, on_alloc, on_read);
        if (rc != 0) {
            c->reading = false;
            conn_input_end(c);
        }
    } else {
        fs_read_next(c);
    }
}

/* ---- accepting --------------------------------------------------------------------------- */

static void on_connection(uv_stream_t *server, int status) {
    dl_server_t *s = server->data;
    if (status < 0 || s->stopping)
        return;
    conn_t *c = conn_new(s, K_TCP);
    if (!c)
        return;
    uv_tcp_init(&s->loop, &c->ih.tcp);
    c->ih.tcp.data = c;
    c->in = c->out = (uv_stream_t *)&c->ih.tcp;
    c->handles = 1;
    if (uv_accept(server, c->in) != 0) {
        c->rejected = true;
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->ih.tcp, 1);
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "connection");
    if (uv_tcp_getpeername(&c->ih.tcp, (struct sockaddr *)&ss, &len) == 0) {
        char host[48] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    }
    if (s->n_conns >= s->opt.max_connections) {
        /* Design note 3: one error line, then close. Not counted as a connection. */
        c->rejected = true;
        slot_t *slot = slot_push(c);
        if (slot) {
            char msg[96];
            snprintf(msg, sizeof msg, "too many connections (the limit is %d)",
                     s->opt.max_connections);
            reply_error(c, slot, NULL, DL_ELIMIT, msg);
        }
        c->eof = true;
        conn_flush(c);
        conn_check_done(c);
        return;
    }
    s->n_conns++;
    ck_pr_store_64(&s->counters.connections, (uint64_t)s->n_conns);
    ck_pr_add_64(&s->counters.connections_total, 1);
    conn_start_reading(c);
}

/* ---- subscriptions (design note 7) -------------------------------------------------------- */

struct csub {
    csub_t *next;
    conn_t *c;
    uint64_t id;        /* the wire number */
    struct dl_sub *sub; /* the connection's (consumer's) reference */
    uv_poll_t poll;     /* on dl_sub_fd(sub) */
    bool polling;       /* the poll is started */
    bool finishing;     /* closing its poll handle */
};

static void held_add(dl_server_t *s, int64_t n) {
    uint64_t now = ck_pr_faa_64(&s->counters.out_queued, (uint64_t)n) + (uint64_t)n;
    if (n > 0 && now > ck_pr_load_64(&s->counters.out_queued_peak))
        ck_pr_store_64(&s->counters.out_queued_peak, now);
}

#if DL_HAVE_SUBS
/* True while the connection may take more subscription messages. */
static bool subs_room(const conn_t *c) {
    return c->out_bytes + c->sub_bytes < c->srv->opt.max_outbuf;
}

/* Queues a ready subscription line (takes line): after `after` when given (the snapshot
 * goes right after its subscribe reply), else after everything queued. */
static void sub_line_at(conn_t *c, slot_t *after, char *line, size_t len) {
    slot_t *slot = NULL;
    if (after) {
        slot = dl_calloc(1, sizeof *slot);
        if (slot) {
            slot->next = after->next;
            after->next = slot;
            if (c->tail == after)
                c->tail = slot;
            c->n_slots++;
        }
    } else {
        slot = slot_push(c);
    }
    if (!slot) {
        dl_free(line);
        conn_close(c); /* cannot keep the stream in order: closing is the honest option */
        return;
    }
    slot_fill(c, slot, line, len, false);
    slot->sub_msg = true;
    c->sub_bytes += slot->len;
    held_add(c->srv, (int64_t)slot->len);
    ck_pr_add_64(&c->srv->counters.sub_messages, 1);
}

static void sub_line(conn_t *c, char *line, size_t len) { sub_line_at(c, NULL, line, len); }

static void on_csub_closed(uv_handle_t *h) {
    csub_t *cs = h->data;
    conn_t *c = cs->c;
    dl_sub_close(cs->sub); /* the registry reaps it at its next pump */
    dl_free(cs);
    c->handles--;
    conn_maybe_free(c);
}

/* Forgets cs: unlinks it, stops its poll and closes the subscription once the handle is
 * closed. */
static void csub_finish(csub_t *cs) {
    conn_t *c = cs->c;
    for (csub_t **p = &c->subs; *p; p = &(*p)->next)
        if (*p == cs) {
            *p = cs->next;
            break;
        }
    cs->finishing = true;
    if (cs->polling)
        uv_poll_stop(&cs->poll);
    cs->polling = false;
    uv_close((uv_handle_t *)&cs->poll, on_csub_closed);
}

/* Ends every subscription of c; with end_message, each gets its end message first. */
static void subs_close_all(conn_t *c, const char *end_message) {
    while (c->subs) {
        csub_t *cs = c->subs;
        if (end_message && !c->closing) {
            size_t len = 0;
            char *line = dl__format_sub_end(cs->id, DL_ECLOSED, end_message, &len);
            if (line)
                sub_line(c, line, len);
        }
        csub_finish(cs);
    }
}

/* A subscription message line for delta d (new, dl_free). Subscribers of one source get
 * the same delta object: its body is encoded once and prefixed with each one's number. */
static char *encode_sub(dl_server_t *s, uint64_t id, dl_delta_t *d, size_t *out_len) {
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return dl__format_sub_message(id, d, NULL, out_len);
    if (s->enc_delta != d) {
        dl_delta_unref((dl_delta_t *)s->enc_delta);
        dl_free(s->enc_body);
        s->enc_delta = NULL;
        s->enc_body = dl__format_sub_body(d, &s->enc_len);
        if (!s->enc_body)
            return NULL;
        s->enc_delta = dl_delta_ref(d);
    }
    char prefix[40];
    int n = snprintf(prefix, sizeof prefix, "{\"sub\":%llu,", (unsigned long long)id);
    size_t len = (size_t)n + s->enc_len - 1; /* the body's '{' is replaced by the prefix */
    char *line = dl_malloc(len + 1);
    if (!line)
        return NULL;
    memcpy(line, prefix, (size_t)n);
    memcpy(line + n, s->enc_body + 1, s->enc_len - 1);
    line[len] = 0;
    *out_len = len;
    return line;
}

static void encode_cache_free(dl_server_t *s) {
    dl_delta_unref((dl_delta_t *)s->enc_delta);
    dl_free(s->enc_body);
    s->enc_delta = NULL;
    s->enc_body = NULL;
}

static void on_sub_ready(uv_poll_t *h, int status, int events) {
    (void)events;
    csub_t *cs = h->data;
    conn_t *c = cs->c;
    if (cs->finishing || c->closing)
        return;
    c->guard++;
    bool ended = false;
    while (!ended && subs_room(c) && !c->closing) {
        dl_delta_t *d = NULL;
        if (status < 0 || dl_sub_next(cs->sub, 0, &d, NULL) != DL_OK) {
            /* The poll failed or the END was taken: say so rather than hang. */
            size_t len = 0;
            char *line = dl__format_sub_end(cs->id, DL_EIO, "subscription channel failed", &len);
            if (line)
                sub_line(c, line, len);
            ended = true;
            break;
        }
        if (!d)
            break;
        ended = dl_delta_kind(d) == DL_DELTA_END;
        size_t len = 0;
        /* FRONTIER messages come only with "dims" (several time coordinates). */
        char *line = encode_sub(c->srv, cs->id, d, &len);
        bool oom = !line;
        dl_delta_unref(d);
        if (oom) {
            line = dl__format_sub_end(cs->id, DL_ENOMEM, "out of memory encoding a message", &len);
            ended = true;
        }
        if (line)
            sub_line(c, line, len);
    }
    if (ended && !c->closing)
        csub_finish(cs);
    else if (!c->closing && !subs_room(c) && cs->polling) {
        uv_poll_stop(&cs->poll); /* messages wait in the queue, under its policy */
        cs->polling = false;
    }
    if (!c->closing)
        conn_flush(c);
    c->guard--;
    conn_maybe_free(c);
}

/* Restarts the polls stopped for lack of room, once the held bytes are below half. */
static void subs_resume(conn_t *c) {
    if (c->out_bytes + c->sub_bytes > c->srv->opt.max_outbuf / 2)
        return;
    for (csub_t *cs = c->subs; cs; cs = cs->next)
        if (!cs->polling && !cs->finishing &&
            uv_poll_start(&cs->poll, UV_READABLE, on_sub_ready) == 0)
            cs->polling = true;
}

/* Takes a new subscription from the engine (its reply is already in `reply`, its slot):
 * the snapshot, queued by the engine before the reply, goes right after the reply, ahead
 * of later replies; the rest comes through the poll. */
static void csub_start(conn_t *c, slot_t *reply, dl_sub_t *sub, uint64_t id) {
    dl_server_t *s = c->srv;
    if (c->closing || s->stopping) {
        if (!c->closing) {
            size_t len = 0;
            char *line = dl__format_sub_end(id, DL_ECLOSED, "the server is shutting down", &len);
            if (line)
                sub_line(c, line, len);
        }
        dl_sub_close(sub);
        return;
    }
    csub_t *cs = dl_calloc(1, sizeof *cs);
    if (!cs || uv_poll_init(&s->loop, &cs->poll, dl_sub_fd(sub)) != 0) {
        dl_free(cs);
        dl_sub_close(sub);
        size_t len = 0;
        char *line = dl__format_sub_end(id, DL_ENOMEM, "cannot watch the subscription", &len);
        if (line)
            sub_line(c, line, len);
        return;
    }
    cs->c = c;
    cs->id = id;
    cs->sub = sub;
    cs->poll.data = cs;
    c->handles++;
    cs->next = c->subs;
    c->subs = cs;
    dl_delta_t *d = NULL;
    if (dl_sub_next(sub, 0, &d, NULL) == DL_OK && d) {
        size_t len = 0;
        bool end = dl_delta_kind(d) == DL_DELTA_END;
        char *line = encode_sub(s, id, d, &len);
        dl_delta_unref(d);
        if (!line) {
            line = dl__format_sub_end(id, DL_ENOMEM, "out of memory encoding a message", &len);
            end = true;
        }
        if (line)
            sub_line_at(c, reply, line, len);
        if (end) {
            csub_finish(cs);
            return;
        }
    }
    if (uv_poll_start(&cs->poll, UV_READABLE, on_sub_ready) == 0)
        cs->polling = true;
}

/* An unsubscribe waiting for the subscribes in the engine (design note 7). */
typedef struct punsub {
    struct punsub *next;
    slot_t *slot;
    uint64_t id;
    json_t *rid; /* the request's id (a reference) */
} punsub_t;

static void punsubs_free(conn_t *c) {
    while (c->punsubs) {
        punsub_t *u = c->punsubs;
        c->punsubs = u->next;
        json_decref(u->rid);
        dl_free(u);
    }
}

static void unsub_notfound(conn_t *c, slot_t *slot, const json_t *rid, uint64_t id) {
    char msg[128];
    snprintf(msg, sizeof msg, "no subscription %llu on this connection", (unsigned long long)id);
    reply_error(c, slot, rid, DL_ENOTFOUND, msg);
}

/* Answers an unsubscribe of cs in `slot`: the reply, then right after it the end message. */
static void unsub_answer(conn_t *c, slot_t *slot, const json_t *rid, csub_t *cs) {
    size_t len = 0;
    char *line = dl__proto_reply_ok(rid, json_object(), &len);
    slot_fill(c, slot, line, len, false);
    line = dl__format_sub_end(cs->id, DL_ECLOSED, "unsubscribed", &len);
    if (line)
        sub_line_at(c, slot, line, len);
    csub_finish(cs);
}

/* After a subscribe's reply (sub_id 0: it failed): answers the unsubscribes waiting for
 * it, and once no subscribe is left in the engine, the rest with notfound. */
static void punsubs_resolve(conn_t *c, uint64_t sub_id) {
    for (punsub_t **p = &c->punsubs; *p;) {
        punsub_t *u = *p;
        csub_t *cs = NULL;
        bool mine = sub_id && u->id == sub_id;
        if (mine)
            for (cs = c->subs; cs && cs->id != u->id; cs = cs->next)
                ;
        if (mine || c->subs_pending == 0) {
            if (cs)
                unsub_answer(c, u->slot, u->rid, cs);
            else
                unsub_notfound(c, u->slot, u->rid, u->id);
            *p = u->next;
            json_decref(u->rid);
            dl_free(u);
        } else {
            p = &u->next;
        }
    }
}

/* "unsubscribe" (answered here: the subscription lives on this connection). */
static void do_unsubscribe(conn_t *c, slot_t *slot, const dl_request_t *req) {
    uint64_t id = (uint64_t)json_integer_value(json_object_get(req->msg, "sub"));
    csub_t *cs = c->subs;
    while (cs && cs->id != id)
        cs = cs->next;
    if (!cs && c->subs_pending > 0) { /* maybe one of those: wait for their replies */
        punsub_t *u = dl_calloc(1, sizeof *u);
        if (u) {
            u->slot = slot;
            u->id = id;
            u->rid = json_incref((json_t *)req->id);
            u->next = c->punsubs;
            c->punsubs = u;
            return;
        }
    }
    if (!cs)
        unsub_notfound(c, slot, req->id, id);
    else
        unsub_answer(c, slot, req->id, cs);
}
#else /* no subscriptions in this build: the engine never hands one over */
static void subs_close_all(conn_t *c, const char *end_message) {
    (void)c;
    (void)end_message;
}
static void subs_resume(conn_t *c) { (void)c; }
static void encode_cache_free(dl_server_t *s) { (void)s; }
static void punsubs_free(conn_t *c) { (void)c; }
static void punsubs_resolve(conn_t *c, uint64_t sub_id) {
    (void)c;
    (void)sub_id;
}
static void csub_start(conn_t *c, slot_t *reply, void *sub, uint64_t id) {
    (void)c;
    (void)reply;
    (void)sub;
    (void)id;
}
static void do_unsubscribe(conn_t *c, slot_t *slot, const dl_request_t *req) {
    reply_error(c, slot, req->id, DL_EUNSUPPORTED,
                "not available yet: subscriptions need subscribe/, datalog/ and dataflow/, "
                "which this build does not include");
}
#endif

/* ---- replies from the engine ------------------------------------------------------------- */

static void take_reply(dl_job_t *j, void *ctx) {
    dl_server_t *s = ctx;
    conn_t *c = j->conn;
    slot_t *slot = j->slot;
    s->in_flight--;
    c->in_engine--;
    slot_fill(c, slot, j->reply, j->reply_len, j->failed);
    if (j->sub) /* after its reply (design note 7) */
        csub_start(c, slot, j->sub, j->sub_id);
    if (j->subscribe) {
        c->subs_pending--;
        if (c->punsubs && !c->closing)
            punsubs_resolve(c, j->sub ? j->sub_id : 0);
    }
    dl_free(j);
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    conn_process(c); /* flushes, and resumes reading if it was paused */
    conn_check_done(c);
}

static void on_replies(uv_async_t *h) {
    dl_server_t *s = h->data;
    dl_job_t *j;
    while ((j = dl__engine_poll(s->engine)) != NULL)
        take_reply(j, s);
    submit_overflow(s);
    server_check_stop(s);
}

static void notify_loop(void *ctx) {
    dl_server_t *s = ctx;
    uv_async_send(&s->reply_async);
}

/* ---- stopping ------------------------------------------------------------------------------ */

static void on_drain_timeout(uv_timer_t *t) {
    dl_server_t *s = t->data;
    logf_(s, "stop: peers not reading their replies after %d ms; closing them", DRAIN_TIMEOUT_MS);
    for (conn_t *c = s->conns; c; c = c->next)
        if (c->in_engine == 0)
            conn_close(c);
}

static void close_server_handles(dl_server_t *s) {
    if (s->handles_closed)
        return;
    s->handles_closed = true;
    for (int i = 0; i < 4; i++) /* dashboard hook: HTTP listener, demo writer */
        if (s->stop_hooks[i])
            s->stop_hooks[i](s->stop_ctx[i]);
    uv_close((uv_handle_t *)&s->reply_async, NULL);
    uv_close((uv_handle_t *)&s->stop_async, NULL);
    if (s->signals) {
        uv_close((uv_handle_t *)&s->sigint, NULL);
        uv_close((uv_handle_t *)&s->sigterm, NULL);
    }
    if (s->drain_timer_on)
        uv_close((uv_handle_t *)&s->drain_timer, NULL);
    if (s->listening && !uv_is_closing((uv_handle_t *)&s->listener))
        uv_close((uv_handle_t *)&s->listener, NULL);
}

static void server_check_stop(dl_server_t *s) {
    if (!s->stopping)
        return;
    bool busy = false;
    for (conn_t *c = s->conns; c; c = c->next) {
        if (!c->closing && conn_idle(c))
            conn_close(c);
        if (c->in_engine)
            busy = true;
    }
    if (!busy && !s->engine_stopped && s->in_flight == 0 && !s->overflow_head) {
        s->engine_stopped = true;
        dl__engine_stop(s->engine, take_reply, s); /* closes the store */
        s->engine = NULL;
        logf_(s, "store closed");
    }
    if (s->engine_stopped && !s->conns)
        close_server_handles(s);
}

static void begin_stop(dl_server_t *s, const char *why) {
    if (s->stopping)
        return;
    s->stopping = true;
    logf_(s, "stopping (%s): answering requests already received", why);
    if (s->listening)
        uv_close((uv_handle_t *)&s->listener, NULL);
    for (conn_t *c = s->conns; c; c = c->next) {
        subs_close_all(c, "the server is shutting down"); /* design note 7 */
        conn_stop_reading(c);
        c->eof = true;
        if (!c->closing)
            conn_flush(c);
    }
    if (uv_timer_init(&s->loop, &s->drain_timer) == 0) {
        s->drain_timer_on = true;
        s->drain_timer.data = s;
        uv_timer_start(&s->drain_timer, on_drain_timeout, DRAIN_TIMEOUT_MS, 0);
        uv_unref((uv_handle_t *)&s->drain_timer);
    }
    server_check_stop(s);
}

static void on_signal(uv_signal_t *h, int signum) {
    begin_stop(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_stop_async(uv_async_t *h) { begin_stop(h->data, "stop requested"); }

/* ---- setup --------------------------------------------------------------------------------- */

void dl_server_options_init(dl_server_options_t *opt) {
    memset(opt, 0, sizeof *opt);
    opt->handle_signals = true;
}

static bool is_loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) {
        const unsigned char *b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
        return b[0] == 127;
    }
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return memcmp(a, one, 16) == 0;
}

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT"/"PORT" (loopback). */
static int parse_listen(const char *text, struct sockaddr_storage *out, dl_error_t *err) {
    char host[64];
    const char *port_s;
    const char *colon = strrchr(text, ':');
    if (!colon) {
        snprintf(host, sizeof host, "127.0.0.1");
        port_s = text;
    } else {
        size_t hl = (size_t)(colon - text);
        if (hl >= sizeof host)
            return dl_error_set(err, DL_EINVAL, "listen address %s: host too long", text);
        memcpy(host, text, hl);
        host[hl] = 0;
        port_s = colon + 1;
        if (hl == 0)
            snprintf(host, sizeof host, "127.0.0.1");
    }
    char *end;
    long port = strtol(port_s, &end, 10);
    if (!*port_s || *end || port < 0 || port > 65535)
        return dl_error_set(err, DL_EINVAL, "listen address %s: bad port", text);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = 0;
        if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out) != 0)
            return dl_error_set(err, DL_EINVAL, "listen address %s: bad IPv6 address", text);
        return DL_OK;
    }
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) != 0)
        return dl_error_set(err, DL_EINVAL,
                            "listen address %s: not a numeric IP address (or localhost)", text);
    return DL_OK;
}

static int write_port_file(dl_server_t *s, dl_error_t *err) {
    size_t n = strlen(s->port_file);
    char *tmp = dl_malloc(n + 8);
    if (!tmp)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    snprintf(tmp, n + 8, "%s.tmp", s->port_file);
    FILE *f = fopen(tmp, "w");
    int rc = DL_OK;
    if (!f || fprintf(f, "%s\n", s->address) < 0 || fclose(f) != 0 ||
        rename(tmp, s->port_file) != 0)
        rc = dl_error_set(err, DL_EIO, "cannot write port file %s", s->port_file);
    dl_free(tmp);
    return rc;
}

static int setup_tcp(dl_server_t *s, dl_error_t *err) {
    const char *text = s->listen_copy ? s->listen_copy : DL_SERVER_DEFAULT_LISTEN;
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    int rc = parse_listen(text, &addr, err);
    if (rc != DL_OK)
        return rc;
    if (!is_loopback((struct sockaddr *)&addr) && !s->token)
        return dl_error_set(err, DL_EAUTH,
                            "listening on %s (not loopback) requires a token (--token)", text);
    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    s->listening = true;
    int uvrc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
    if (uvrc == 0)
        uvrc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    if (uvrc != 0)
        return dl_error_set(err, DL_EIO, "cannot listen on %s: %s", text, uv_strerror(uvrc));
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    char host[48] = "?";
    int port;
    if (bound.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&bound, host, sizeof host);
        port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
        snprintf(s->address, sizeof s->address, "[%s]:%d", host, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&bound, host, sizeof host);
        port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        snprintf(s->address, sizeof s->address, "%s:%d", host, port);
    }
    return DL_OK;
}

/* Opens fd as a libuv stream of the right kind into h; false when it is a file. */
static int open_stdio_stream(dl_server_t *s, int fd, bool readable, void *h, uv_stream_t **out) {
    *out = NULL;
    switch (uv_guess_handle(fd)) {
        case UV_TTY:
            if (uv_tty_init(&s->loop, h, fd, readable) != 0)
                return -1;
            break;
        case UV_NAMED_PIPE:
            if (uv_pipe_init(&s->loop, h, 0) != 0)
                return -1;
            if (uv_pipe_open(h, fd) != 0) {
                uv_close(h, NULL);
                return -1;
            }
            break;
        case UV_TCP:
            if (uv_tcp_init(&s->loop, h) != 0)
                return -1;
            if (uv_tcp_open(h, fd) != 0) {
                uv_close(h, NULL);
                return -1;
            }
            break;
        default:
            return 0; /* a file (or a character device such as /dev/null): uv_fs */
    }
    *out = h;
    return 0;
}

static int setup_stdio(dl_server_t *s, dl_error_t *err) {
    conn_t *c = conn_new(s, K_STDIO_STREAM);
    if (!c)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    snprintf(c->peer, sizeof c->peer, "stdio");
    snprintf(s->address, sizeof s->address, "stdio");
    if (open_stdio_stream(s, 0, true, &c->ih, &c->in) != 0 ||
        open_stdio_stream(s, 1, false, &c->oh, &c->out) != 0) {
        c->rejected = true;
        conn_close(c);
        return dl_error_set(err, DL_EIO, "cannot use stdin/stdout");
    }
    if (c->in) {
        c->in->data = c;
        c->handles++;
    } else {
        c->in_fd = 0;
        c->fbuf = dl_malloc(READ_CHUNK);
        if (!c->fbuf) {
            c->rejected = true;
            conn_close(c);
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        }
    }
    if (c->out) {
        c->out->data = c;
        c->handles++;
    } else {
        c->out_fd = 1;
    }
    c->kind = (c->in && c->out) ? K_STDIO_STREAM : K_STDIO_FILE;
    s->n_conns = 1;
    ck_pr_store_64(&s->counters.connections, 1);
    ck_pr_store_64(&s->counters.connections_total, 1);
    return DL_OK;
}

int dl_server_new(const dl_server_options_t *opt, dl_server_t **out, dl_error_t *err) {
    *out = NULL;
    dl_server_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    s->opt = *opt;
    if (!s->opt.max_line)
        s->opt.max_line = DL_SERVER_DEFAULT_MAX_LINE;
    if (s->opt.max_connections <= 0)
        s->opt.max_connections = DL_SERVER_DEFAULT_MAX_CONN;
    if (!s->opt.max_outbuf)
        s->opt.max_outbuf = DL_SERVER_DEFAULT_MAX_OUT;
    if (s->opt.max_depth <= 0)
        s->opt.max_depth = DL_SERVER_DEFAULT_DEPTH;
    if (s->opt.max_inflight <= 0)
        s->opt.max_inflight = DL_SERVER_DEFAULT_INFLIGHT;
    s->lim.max_line = s->opt.max_line;
    s->lim.max_depth = s->opt.max_depth;
    int rc = DL_OK;
    if ((opt->listen && !(s->listen_copy = dl_strdup(opt->listen))) ||
        (opt->token && !(s->token = dl_strdup(opt->token))) ||
        (opt->port_file && !(s->port_file = dl_strdup(opt->port_file)))) {
        dl_free(s->listen_copy);
        dl_free(s->token);
        dl_free(s->port_file);
        dl_free(s);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    s->opt.listen = s->opt.token = s->opt.port_file = s->opt.data_dir = NULL;
    if (s->token && !*s->token) {
        dl_free(s->token);
        s->token = NULL;
    }
    int uvrc = uv_loop_init(&s->loop);
    if (uvrc != 0) {
        rc = dl_error_set(err, DL_EIO, "event loop: %s", uv_strerror(uvrc));
        goto fail;
    }
    s->loop_ok = true;
    uv_async_init(&s->loop, &s->reply_async, on_replies);
    s->reply_async.data = s;
    uv_async_init(&s->loop, &s->stop_async, on_stop_async);
    s->stop_async.data = s;
    if (opt->handle_signals) {
        uv_signal_init(&s->loop, &s->sigint);
        uv_signal_init(&s->loop, &s->sigterm);
        s->sigint.data = s->sigterm.data = s;
        uv_signal_start(&s->sigint, on_signal, SIGINT);
        uv_signal_start(&s->sigterm, on_signal, SIGTERM);
        s->signals = true;
    }
    /* A peer that goes away mid-write must be an error return, not a process kill. */
    signal(SIGPIPE, SIG_IGN);
    if (opt->use_stdio)
        rc = setup_stdio(s, err);
    else
        rc = setup_tcp(s, err);
    if (rc != DL_OK)
        goto fail;
    dl_exec_options_t xo;
    memset(&xo, 0, sizeof xo);
    xo.data_dir = opt->data_dir;
    xo.memory = opt->memory;
    xo.create = true;
    xo.sync_mode = opt->sync_mode;
    dl_exec_t *x = NULL;
    if ((rc = dl__exec_open(&xo, &x, err)) != DL_OK)
        goto fail;
    dl__exec_set_counters(x, &s->counters);
    if ((rc = dl__engine_start(x, RING_SIZE, notify_loop, s, &s->engine, err)) != DL_OK)
        goto fail;
    if (s->port_file && (rc = write_port_file(s, err)) != DL_OK)
        goto fail;
    *out = s;
    return DL_OK;
fail:
    dl_server_free(s);
    return rc;
}

const char *dl_server_address(const dl_server_t *s) { return s->address; }

int dl_server_run(dl_server_t *s, dl_error_t *err) {
    if (!s->engine)
        return dl_error_set(err, DL_ESTATE, "server already ran");
    logf_(s, "serving protocol %d on %s", DL_PROTO_VERSION, s->address);
    for (conn_t *c = s->conns; c; c = c->next)
        conn_start_reading(c);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return DL_OK;
}

void dl_server_stop(dl_server_t *s) { uv_async_send(&s->stop_async); }

static void on_walk_close(uv_handle_t *h, void *arg) {
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void dl_server_free(dl_server_t *s) {
    if (!s)
        return;
    if (s->engine) {
        /* Never ran (or failed during setup): stop the engine, closing the store. */
        s->stopping = true;
        dl__engine_stop(s->engine, take_reply, s);
        s->engine = NULL;
    }
    s->stopping = s->engine_stopped = s->handles_closed = true;
    if (s->loop_ok) {
        for (conn_t *c = s->conns; c; c = c->next)
            conn_close(c);
        uv_walk(&s->loop, on_walk_close, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
    }
    encode_cache_free(s);
    dl_free(s->listen_copy);
    dl_free(s->token);
    dl_free(s->port_file);
    dl_free(s);
}

/* ---- external transports (dashboard hook; runtime/http.h) -------------------------------------
 * A connection whose bytes come and go through another library on this loop (the
 * WebSocket endpoint of http.c, the demo writer of demo.c). Everything above the handle is
 * shared with TCP: framing, decoding, slots, limits, auth and the engine path. */

uv_loop_t *dl__server_loop(dl_server_t *s) { return &s->loop; }

bool dl__server_stopping(const dl_server_t *s) { return s->stopping; }

int dl__server_on_stop(dl_server_t *s, void (*fn)(void *ctx), void *ctx) {
    for (int i = 0; i < 4; i++)
        if (!s->stop_hooks[i]) {
            s->stop_hooks[i] = fn;
            s->stop_ctx[i] = ctx;
            return DL_OK;
        }
    return DL_ELIMIT;
}

void *dl__server_ext_open(dl_server_t *s, const dl_server_ext_ops_t *ops, void *ctx,
                          const char *peer) {
    if (s->stopping || s->n_conns >= s->opt.max_connections)
        return NULL;
    conn_t *c = conn_new(s, K_EXT);
    if (!c)
        return NULL;
    c->ext_ops = ops;
    c->ext_ctx = ctx;
    c->handles = 1; /* the transport's side, released by dl__server_ext_closed */
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    s->n_conns++;
    ck_pr_store_64(&s->counters.connections, (uint64_t)s->n_conns);
    ck_pr_add_64(&s->counters.connections_total, 1);
    c->reading = true; /* the transport delivers input until flow(false) */
    return c;
}

void dl__server_ext_input(void *conn, const char *p, size_t n) {
    conn_t *c = conn;
    if (c->closing || c->eof)
        return;
    conn_input(c, p, n);
}

void dl__server_ext_written(void *token, int status) { write_done(token, status); }

void dl__server_ext_eof(void *conn) {
    conn_t *c = conn;
    if (c->closing || c->eof)
        return;
    c->guard++;
    conn_input_end(c);
    c->guard--;
    conn_maybe_free(c);
}

void dl__server_ext_closed(void *conn) {
    conn_t *c = conn;
    if (!c->closing) { /* the peer went away first */
        c->eof = true;
        c->guard++;
        conn_close(c); /* calls ext_ops->close: the transport must ignore it now */
        c->guard--;
    }
    c->handles--;
    conn_maybe_free(c);
}
