/*
 * runtime.h: the runtime module's internal API, shared by its files and its tests:
 * the wire-protocol decoder and reply encoder (proto.c), the request executor that owns
 * the store (exec.c), the engine thread with its rings (engine.c), the libuv server
 * (server.c) and the command line's output formats (format.c).
 * Not API: the public embedding API is include/deltalog/runtime.h. The protocol itself
 * is specified in docs/protocol.md; this header follows it.
 */
#ifndef DL_RUNTIME_RUNTIME_H
#define DL_RUNTIME_RUNTIME_H

#include "base/base.h"

#include <deltalog/deltalog.h>
#include <deltalog/runtime.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- protocol (proto.c) ----------------------------------------------------------------- */
#define DL_PROTO_VERSION 1

/* Wire codes the protocol adds to dl_err_name()'s: negative, far below error.h's range so
 * they can never collide with a DL_E... code added later. */
#define DL_PROTO_EUNKNOWN_OP (-1000) /* "unknown_op": the op is not part of protocol v1 */

/* The operations of protocol v1, in the order docs/protocol.md lists them. */
typedef enum dl_req_op {
    DL_REQ_HELLO,
    DL_REQ_PING,
    DL_REQ_STATS,
    DL_REQ_TRANSACT,
    DL_REQ_ENTITY,
    DL_REQ_HISTORY,
    DL_REQ_SCHEMA,
    DL_REQ_ADVANCE,
    DL_REQ_QUERY,
    DL_REQ_EXPLAIN,
    DL_REQ_SUBSCRIBE,
    DL_REQ_UNSUBSCRIBE,
    DL_REQ__COUNT
} dl_req_op_t;

typedef struct dl_proto_limits {
    size_t max_line; /* bytes per request line, excluding the '\n' */
    int max_depth;   /* nesting of JSON arrays/objects in a request */
} dl_proto_limits_t;

/* A decoded request. Invariant: when msg != NULL it is a JSON object whose fields were
 * checked against the op's field table (names, types, required ones present). */
typedef struct dl_request {
    dl_req_op_t op;
    json_t *msg; /* owned: the whole request object (NULL when the line was not JSON) */
    json_t *id;  /* borrowed from msg: the request's "id", NULL when absent */
} dl_request_t;

const char *dl__proto_op_name(dl_req_op_t op);
/* The wire code of an error code: dl_err_name() or a protocol code above. */
const char *dl__proto_code_name(int code);

/* Decodes one request line (without its '\n'; a trailing '\r' is allowed). On success
 * returns 0 and fills *out. On failure returns the error code, fills err, and still
 * fills out->msg/out->id when the line was a JSON object, so the error reply can echo
 * the id. In every case the caller calls dl__proto_request_fini(out). */
int dl__proto_decode(const char *line, size_t len, const dl_proto_limits_t *lim, dl_request_t *out,
                     dl_error_t *err) DL_WUR;
void dl__proto_request_fini(dl_request_t *req);
/* True when the line holds only whitespace (such lines are skipped, not answered). */
bool dl__proto_line_blank(const char *line, size_t len);

/* Reply lines. Both return a new NUL-terminated line ending in '\n' (dl_free), with its
 * length in *out_len, or NULL on out of memory. `id` is borrowed (NULL: no id field is
 * written... except that error replies always carry "id", null when unknown). `body`
 * is taken: an object whose fields follow "id" and "ok", or NULL. */
char *dl__proto_reply_ok(const json_t *id, json_t *body, size_t *out_len);
char *dl__proto_reply_error(const json_t *id, int code, const char *message, size_t *out_len);
/* Serializes any JSON value compactly into a new line ending in '\n' (dl_free). */
char *dl__proto_dump_line(const json_t *j, size_t *out_len);

/* ---- the executor (exec.c): runs requests against the store ------------------------------ */
typedef struct dl_exec dl_exec_t;

typedef struct dl_exec_options {
    const char *data_dir; /* the store's directory; NULL with memory = true */
    bool memory;          /* in-memory store, nothing written */
    bool create;          /* create the directory when it does not exist */
    int sync_mode;        /* the store's DL_SYNC_* mode (0: every transaction is fsynced) */
} dl_exec_options_t;

/* Shared counters the server updates and the executor reports in "stats". Loop thread
 * writes, engine thread reads: accessed with ck_pr loads/stores only. */
typedef struct dl_server_counters {
    uint64_t connections;       /* open now */
    uint64_t connections_total; /* accepted since start */
    uint64_t requests;          /* request lines received */
    uint64_t errors;            /* error replies sent */
    uint64_t bytes_in, bytes_out;
    uint64_t out_queued;      /* bytes of replies and subscription messages held, all
                                 connections (handed to writes or waiting in slots) */
    uint64_t out_queued_peak; /* its high-water mark */
    uint64_t sub_messages;    /* subscription messages written to connections */
} dl_server_counters_t;

int dl__exec_open(const dl_exec_options_t *opt, dl_exec_t **out, dl_error_t *err) DL_WUR;
/* Closes the store cleanly (flushes what was committed). NULL-safe. */
void dl__exec_close(dl_exec_t *x);
void dl__exec_set_counters(dl_exec_t *x, const dl_server_counters_t *c);
/* Executes one decoded request on the calling thread (the executor's owner) and returns
 * its reply line (new, dl_free; NULL only on out of memory). *out_failed (may be NULL)
 * tells whether the reply is an error reply. */
char *dl__exec_run(dl_exec_t *x, const dl_request_t *req, size_t *out_len, bool *out_failed);
/* The store the executor owns (borrowed; only in builds with the store module). */
struct dl_store;
struct dl_store *dl__exec_store(dl_exec_t *x);
/* Reads (entity, history, schema, query, explain) may run off the engine thread, on a
 * snapshot pinned by the engine thread in request order (so a connection reads its own
 * writes): dl__exec_is_read tells which ops; dl__exec_snapshot (engine thread) returns a
 * new snapshot; dl__exec_run_read (any thread) runs the op on it, taking the snapshot.
 * dl__exec_snapshot_release frees a snapshot that will not be run. */
bool dl__exec_is_read(dl_req_op_t op);
void *dl__exec_snapshot(dl_exec_t *x);
void dl__exec_snapshot_release(void *snap);
char *dl__exec_run_read(const dl_request_t *req, void *snap, size_t *out_len, bool *out_failed);
/* Subscriptions (engine thread; only in builds with subscribe/ and datalog/).
 * dl__exec_subscribe runs a "subscribe" request: on success *out_sub is a new channel-mode
 * subscription (the caller's reference, for the connection's loop thread: poll its fd,
 * dl_sub_next, dl_sub_close when done) whose snapshot is already queued, *out_sub_id its
 * wire number, and the reply line says so. dl__exec_pump delivers what the last write
 * changed to every subscription (BLOCK subscriptions may make it wait, bounded by their
 * timeout). dl__exec_has_subs tells whether the build supports them. */
char *dl__exec_subscribe(dl_exec_t *x, const dl_request_t *req, size_t *out_len, bool *out_failed,
                         void **out_sub, uint64_t *out_sub_id);
void dl__exec_pump(dl_exec_t *x);
bool dl__exec_has_subs(void);
/* A new JSON object describing the store for `deltalog status` and "stats". */
json_t *dl__exec_status(dl_exec_t *x);
/* Whether the modules that back each op are built in. */
bool dl__exec_has_store(void);
bool dl__exec_has_datalog(void);

/* ---- the engine thread (engine.c) ------------------------------------------------------- */
/* A unit of work crossing threads. Taken by whoever it is handed to: the loop thread
 * enqueues it for the engine (never touching it again until it comes back), the engine
 * fills `reply` and hands it back. */
typedef struct dl_job {
    dl_request_t req;    /* taken by the engine, finalized there */
    void *conn;          /* routing for the reply, opaque to the engine */
    void *slot;          /* the connection's reply slot */
    char *reply;         /* filled by the engine: new reply line */
    size_t reply_len;    /* its length */
    bool failed;         /* the reply is an error reply */
    bool subscribe;      /* the request is a subscribe (set by the loop thread) */
    void *sub;           /* subscribe: the new dl_sub_t (caller's reference), else NULL */
    uint64_t sub_id;     /* subscribe: its wire number */
    struct dl_job *next; /* loop-side overflow list link */
} dl_job_t;

/* Group commit (engine thread): dl__exec_is_write tells which ops write (transact,
 * advance). dl__exec_run_writes runs n write jobs in order, each committed without
 * waiting for durability (later ones resolve against earlier ones; a rejected one changes
 * nothing), then waits once for the last one's log sync, and fills every job's reply:
 * no reply says ok before its transaction is durable and published. */
bool dl__exec_is_write(dl_req_op_t op);
void dl__exec_run_writes(dl_exec_t *x, dl_job_t **jobs, size_t n);

typedef struct dl_engine dl_engine_t;
/* Called on the engine thread after replies were queued; must only wake the loop. */
typedef void (*dl_engine_notify_fn)(void *ctx);

/* Starts the engine thread owning x (taken: closed by dl__engine_stop). */
int dl__engine_start(dl_exec_t *x, unsigned ring_size, dl_engine_notify_fn notify, void *ctx,
                     dl_engine_t **out, dl_error_t *err) DL_WUR;
/* Loop thread: hands a job to the engine; false when the request ring is full (the job
 * is not taken then). */
bool dl__engine_submit(dl_engine_t *e, dl_job_t *job);
/* Loop thread: the next finished job, or NULL. */
dl_job_t *dl__engine_poll(dl_engine_t *e);
/* Loop thread: runs every job already submitted, closes the executor (and the store)
 * cleanly, joins the thread and frees the engine. Finished jobs still in the reply ring
 * are passed to `drain` first. */
void dl__engine_stop(dl_engine_t *e, void (*drain)(dl_job_t *job, void *ctx), void *ctx);

/* ---- command-line output (format.c) ----------------------------------------------------- */
typedef enum dl_format { DL_FMT_TABLE, DL_FMT_JSON, DL_FMT_EDN } dl_format_t;

/* Prints a successful reply body for people or programs. */
void dl__format_reply(FILE *out, dl_format_t fmt, const json_t *reply);
/* Prints an aligned table: header names and rows of JSON arrays (values in the wire
 * encoding, shown as EDN). */
void dl__format_table(FILE *out, const char *const *header, size_t n_cols, const json_t *rows);
/* A parsed EDN form as JSON in the wire encoding (values.md): vectors, lists and sets
 * become arrays, maps objects keyed by the bare name of keyword/string/symbol keys,
 * symbols strings. New reference. */
json_t *dl__format_edn_to_json(const dl_edn_t *f);
/* The :find elements of a query's text as written ("?n", "(sum ?a)"): a new JSON array of
 * strings, numbered "%1".."%n" when the text is not understood or does not give n_cols
 * names (n_cols 0: whatever the text gives). NULL on out of memory. */
json_t *dl__format_find_columns(const char *q_text, size_t n_cols);
/* Encodes a subscription message (a dl_delta_t, subscribe.h) for subscription `sub` as a
 * wire line (new, dl_free, ending in '\n'): DATA as {"sub","t","time","diff"[,"snapshot"]},
 * END as {"sub","end":true[,"error"]}; `end_message` overrides the END's text. Only in
 * builds with subscribe/. NULL on out of memory or for other kinds. */
char *dl__format_sub_message(uint64_t sub, const void *delta, const char *end_message,
                             size_t *out_len);
/* A DATA message without its "sub" field: {"t",...}\n (new, dl_free), so that one shared
 * delta is encoded once for all its subscribers; NULL for other kinds or out of memory. */
char *dl__format_sub_body(const void *delta, size_t *out_len);
/* The end message of a subscription ended by the server itself (code, message). */
char *dl__format_sub_end(uint64_t sub, int code, const char *message, size_t *out_len);
/* EDN text of a JSON value in the wire encoding (values.md); appends to out. */
void dl__format_edn(const json_t *j, dl_buf_t *out);

/* ---- feed.c: commits applied on a worker thread, in order (builds with subscribe/) ---- */
struct dl_commit;
typedef struct dl_feed dl_feed_t;
/* Called on the worker thread for each commit, in commit order; the commit is a copy that
 * lives for the call. */
typedef void (*dl__feed_fn)(void *ctx, const struct dl_commit *c);
/* new: starts the worker; push waits while max_queued commits wait. DL_ENOMEM, DL_EIO. */
int dl__feed_new(dl__feed_fn fn, void *ctx, size_t max_queued, dl_feed_t **out, dl_error_t *err);
/* Queues a copy of c (from the store's listener). DL_ENOMEM: nothing queued. */
int dl__feed_push(dl_feed_t *f, const struct dl_commit *c);
/* Waits until every commit pushed before the call has been handed to fn. Not from fn. */
void dl__feed_sync(dl_feed_t *f);
/* Hands every queued commit to fn, then stops the worker and frees. NULL-safe. */
void dl__feed_free(dl_feed_t *f);

#endif
