/*
 * subscribe.h: live subscriptions: consolidated deltas tagged with times, per-subscriber
 * queues with backpressure (coalesce, block, drop), delivery by callback or by channel
 * (pull with a timeout, an eventfd for event loops, a libuv helper), and a registry that
 * lets subscriptions to the same normalized query with equal inputs share one live source.
 *
 * Semantics: ../shared/DESIGN-NOTES.md §4; design, threads and an example: docs/subscribe.md.
 *
 * Vocabulary.
 * - Delta (dl_delta_t): one message to a subscriber. Kind DATA: a consolidated set of
 *   (row, diff) pairs (rows of a fixed arity, every row at most once, every diff nonzero)
 *   tagged with a time (the coordinates the subscription watches; coordinate 0 is system
 *   time). Kind FRONTIER: "this time is complete" (no rows). Kind END: the last message,
 *   carrying a code (0 for a normal end, DL_ELAGGED, DL_ETIMEOUT, DL_ENOMEM, ...).
 *   A delta is mutable while its creator builds it and immutable once sealed (handed to a
 *   subscription); sealed deltas are reference counted (atomics) and shared between the
 *   subscriptions that receive them.
 * - Subscription (dl_sub_t): one subscriber's endpoint: its queue, policy, delivery mode and
 *   statistics. One producer (the engine thread) pushes; one consumer pulls (channel mode)
 *   or is called back on the producer's thread (callback mode).
 * - Invariant, for every subscriber and every policy: the sum of the DATA deltas it has
 *   received equals the producer's accumulated collection at the time of its latest DATA
 *   delta; times of DATA deltas strictly increase; the first DATA delta is the snapshot.
 *
 * Threads: a dl_sub_t may be used by exactly two threads at once: the producer (push, end)
 * and the consumer (next, fd, close, stats). A registry is single-threaded: call it from
 * the engine thread only. Errors: 0 or a negative DL_E... code, details in the optional err.
 */
#ifndef DELTALOG_SUBSCRIBE_H
#define DELTALOG_SUBSCRIBE_H

#include <deltalog/common.h>
#include <deltalog/error.h>
#include <deltalog/value.h>
#include <stdbool.h>

DL_BEGIN_DECLS

#define DL_DELTA_MAX_DIM 16 /* time coordinates of a delta */

/* ---- deltas ---------------------------------------------------------------------------- */
typedef enum dl_delta_kind {
    DL_DELTA_DATA = 0,     /* rows with diffs at a time */
    DL_DELTA_FRONTIER = 1, /* the time is complete: no further data at or below it */
    DL_DELTA_END = 2       /* last message of a subscription; dl_delta_code() says why */
} dl_delta_kind_t;

typedef struct dl_delta dl_delta_t;

/* new: an empty, unsealed delta. arity: columns per row (DATA; 0 allowed). time: n_dims
 * coordinates (1..DL_DELTA_MAX_DIM), copied. Release with dl_delta_unref.
 * Errors: DL_EINVAL (bad kind or dims), DL_ENOMEM. */
DL_API int dl_delta_new(dl_delta_kind_t kind, size_t arity, const uint64_t *time, size_t n_dims,
                        dl_delta_t **out, dl_error_t *err) DL_WUR;
/* Adds (row, diff) to an unsealed DATA delta, consolidating: the row's diff is summed with
 * any diff already held for an equal row and the row disappears when the sum is 0. The row
 * (arity values) is copied. Errors: DL_ESTATE (sealed or not DATA), DL_ERANGE (the sum
 * overflows int64), DL_ENOMEM (the delta is unchanged). */
DL_API int dl_delta_add(dl_delta_t *d, const dl_value_t *row, int64_t diff, dl_error_t *err) DL_WUR;
/* Marks a DATA delta as a snapshot (the full result as additions); unsealed only. */
DL_API int dl_delta_set_snapshot(dl_delta_t *d, bool snapshot) DL_WUR;
/* Makes d immutable. Idempotent; dl_sub_push seals what it is given. */
DL_API void dl_delta_seal(dl_delta_t *d);

/* Reference counting (atomic: sealed deltas cross threads). ref returns d. unref frees at
 * zero and accepts NULL. */
DL_API dl_delta_t *dl_delta_ref(dl_delta_t *d);
DL_API void dl_delta_unref(dl_delta_t *d);

DL_API dl_delta_kind_t dl_delta_kind(const dl_delta_t *d);
DL_API size_t dl_delta_arity(const dl_delta_t *d);
/* The time (borrowed, lives as long as d) and its number of coordinates. */
DL_API const uint64_t *dl_delta_time(const dl_delta_t *d, size_t *out_n_dims);
/* DATA: number of (row, diff) pairs, in no particular order (see dl_delta_sort). */
DL_API size_t dl_delta_len(const dl_delta_t *d);
/* The i-th row (arity values, borrowed, lives as long as d and until it changes). */
DL_API const dl_value_t *dl_delta_row(const dl_delta_t *d, size_t i);
DL_API int64_t dl_delta_diff(const dl_delta_t *d, size_t i);
/* The diff held for an equal row, 0 when absent. */
DL_API int64_t dl_delta_find(const dl_delta_t *d, const dl_value_t *row);
DL_API bool dl_delta_is_snapshot(const dl_delta_t *d);
/* END: the code (0 for a normal end of stream). */
DL_API int dl_delta_code(const dl_delta_t *d);
/* DATA: how many producer times this delta stands for (1, more after coalescing). */
DL_API uint64_t dl_delta_n_times(const dl_delta_t *d);
/* Bytes of memory the delta holds (header, rows, diffs and index, with their slack). */
DL_API size_t dl_delta_bytes(const dl_delta_t *d);
/* Sorts an unsealed delta's pairs by row (dl_row_cmp), for deterministic printing. */
DL_API int dl_delta_sort(dl_delta_t *d, dl_error_t *err) DL_WUR;

/* ---- subscriptions --------------------------------------------------------------------- */
typedef enum dl_sub_policy {
    DL_SUB_COALESCE = 0, /* default: undelivered deltas consolidate into one net delta */
    DL_SUB_BLOCK = 1,    /* bounded queue: a full queue makes the producer wait (timeout) */
    DL_SUB_DROP = 2      /* bounded queue: overflowing it ends the subscription (lagged) */
} dl_sub_policy_t;

typedef struct dl_sub dl_sub_t;

/* Callback delivery: runs on the PRODUCER's thread (the engine thread), synchronously
 * inside dl_sub_push / dl_sub_end, never concurrently with itself. `d` is borrowed for the
 * call (dl_delta_ref it to keep it). It must not call dl_sub_push on the same
 * subscription. A slow callback slows the producer: no queue, no policy. */
typedef void (*dl_sub_cb)(dl_sub_t *sub, const dl_delta_t *d, void *udata);

/* Caller-allocated options: call dl_sub_options_init first, then change fields. */
typedef struct dl_sub_options {
    dl_sub_policy_t policy; /* DL_SUB_COALESCE by default */
    size_t max_queued;      /* BLOCK/DROP: most messages queued (default 64) */
    size_t max_bytes;       /* BLOCK/DROP: most bytes queued, 0 = no byte limit (default) */
    int64_t
        block_timeout_ms; /* BLOCK: longest producer wait, then DL_ETIMEOUT (5000); <0: forever */
    dl_sub_cb on_delta;   /* non-NULL: callback delivery; NULL: channel delivery */
    void *udata;          /* passed to on_delta */
    size_t n_dims;        /* registry: time coordinates watched (default 1: system time) */
} dl_sub_options_t;

DL_API void dl_sub_options_init(dl_sub_options_t *o);

/* Per-subscription statistics (a consistent snapshot taken under the queue's lock). */
typedef struct dl_sub_stats {
    dl_sub_policy_t policy;
    bool callback;           /* callback delivery */
    bool ended;              /* an END message was queued or delivered */
    int end_code;            /* its code (valid when ended) */
    uint64_t queued;         /* messages waiting */
    uint64_t queued_rows;    /* (row, diff) pairs waiting */
    uint64_t queued_bytes;   /* bytes held by waiting messages (dl_delta_bytes, shared ones too) */
    uint64_t lag_times;      /* producer times not yet reflected in what was delivered */
    uint64_t lag_tx;         /* the same in system time: latest pushed t[0] - latest delivered */
    uint64_t pushed;         /* messages offered by the producer (empty ones included) */
    uint64_t delivered;      /* messages handed to the consumer */
    uint64_t delivered_rows; /* pairs handed to the consumer */
    uint64_t coalesced;      /* COALESCE: messages merged into a waiting one or cancelled out */
    uint64_t blocked;        /* BLOCK: producer waits */
    uint64_t blocked_ns;     /* BLOCK: total producer wait */
    uint64_t dropped;        /* messages discarded because the subscription ended early */
    uint64_t peak_queued_bytes; /* high-water mark of queued_bytes */
    uint64_t shared_with; /* registry: subscriptions sharing this one's source (itself included) */
    uint64_t source_id;   /* registry: the shared source's id (0 outside a registry) */
} dl_sub_stats_t;

/* new: an open subscription endpoint for rows of `arity` columns, with one reference held
 * by the caller. o NULL means defaults. Errors: DL_EINVAL, DL_ENOMEM, DL_EIO (eventfd). */
DL_API int dl_sub_new(const dl_sub_options_t *o, size_t arity, dl_sub_t **out,
                      dl_error_t *err) DL_WUR;
/* Reference counting (atomic): the producer and the consumer each hold one. */
DL_API dl_sub_t *dl_sub_ref(dl_sub_t *s);
DL_API void dl_sub_unref(dl_sub_t *s);

/* ---- producer side (one thread) ----
 * Offers d (borrowed; sealed by this call; the subscription takes its own reference when it
 * queues it) under the subscription's policy. DATA deltas must have the subscription's arity
 * and strictly increasing times (by coordinate 0, then lexicographically); empty DATA deltas
 * other than the snapshot are not delivered. END deltas are refused (use dl_sub_end).
 * Returns 0 when queued, coalesced or delivered; DL_ECLOSED when the subscription has ended
 * or was closed (drop it); DL_ETIMEOUT (BLOCK: no room within the timeout; the subscription
 * has now ended with that code); DL_ELAGGED (DROP: the queue overflowed; ended);
 * DL_ENOMEM (the subscription has ended with DL_ENOMEM: an END can always be delivered);
 * DL_EINVAL / DL_EARITY / DL_ETIME for a delta that breaks the rules (subscription intact). */
DL_API int dl_sub_push(dl_sub_t *s, dl_delta_t *d, dl_error_t *err) DL_WUR;
/* Ends the subscription with `code` (0: normal end of stream). Later pushes return
 * DL_ECLOSED. Idempotent: the first end wins. Never allocates. */
DL_API void dl_sub_end(dl_sub_t *s, int code);
/* True once the subscription has ended or its consumer closed it. */
DL_API bool dl_sub_is_done(dl_sub_t *s);

/* ---- consumer side (one thread; channel delivery) ----
 * Takes the next message: 0 with *out a new reference (dl_delta_unref), or 0 with
 * *out == NULL when nothing arrived within timeout_ms (0: do not wait; <0: wait forever).
 * After the END message has been taken: DL_ECLOSED. DL_EINVAL in callback mode. */
DL_API int dl_sub_next(dl_sub_t *s, int64_t timeout_ms, dl_delta_t **out, dl_error_t *err) DL_WUR;
/* An eventfd that is readable exactly while a message is waiting (level-triggered): poll
 * it, then call dl_sub_next(s, 0, ...) until it yields NULL. Never read or close it. */
DL_API int dl_sub_fd(const dl_sub_t *s);
/* Unsubscribes: discards what is queued, makes later pushes return DL_ECLOSED (wakes a
 * blocked producer), and releases the caller's reference. Any thread; NULL is a no-op. */
DL_API void dl_sub_close(dl_sub_t *s);
DL_API void dl_sub_stats(dl_sub_t *s, dl_sub_stats_t *out);

/* ---- libuv integration (loop thread) ----
 * Watches the subscription's fd with a uv_poll_t on `loop`; when messages wait, takes them
 * all (dl_sub_next with timeout 0) and calls cb(sub, d, udata) on the loop thread for
 * each, the END message included (d is borrowed for the call). The watcher holds its own
 * reference on the subscription. After the END callback returns, the watcher stops, closes
 * and frees itself (so uv_run returns once nothing else is active): *out is then invalid.
 * To stop before END, call dl_sub_uv_stop (also allowed inside cb); the handle is freed by
 * the loop once closed, so run the loop before uv_loop_close.
 * Errors: DL_EINVAL (callback mode, NULL arguments), DL_ENOMEM, DL_EIO (libuv). */
struct uv_loop_s;
typedef struct dl_sub_uv dl_sub_uv_t;
DL_API int dl_sub_uv_start(struct uv_loop_s *loop, dl_sub_t *s, dl_sub_cb cb, void *udata,
                           dl_sub_uv_t **out, dl_error_t *err) DL_WUR;
DL_API void dl_sub_uv_stop(dl_sub_uv_t *w);

/* ---- sources and the registry ----------------------------------------------------------
 * A source is a live query's output: it can give its current full result (a snapshot) and,
 * after the engine has advanced, the deltas of each newly completed time. The registry
 * depends on this table only; the Datalog layer's live compiled query plugs in here. */
typedef struct dl_source_vtable {
    /* Creates a live source for a normalized query with its inputs (borrowed for the call).
     * *out_src is the source's state; *out_arity its row arity. */
    int (*open)(void *ctx, const char *normalized_query, const dl_value_t *inputs, size_t n_inputs,
                size_t n_dims, void **out_src, size_t *out_arity, dl_error_t *err);
    /* new: a sealed-or-not DATA delta holding the full current result as additions, at the
     * latest completed time; it must not include changes not yet returned by poll. */
    int (*snapshot)(void *src, dl_delta_t **out, dl_error_t *err);
    /* Takes the next completed-time message (DATA or FRONTIER), in time order: 0 with *out
     * new, or 0 with *out == NULL when none is ready. */
    int (*poll)(void *src, dl_delta_t **out, dl_error_t *err);
    /* Tears the source down and returns its memory. */
    void (*close)(void *src);
    /* Optional: writes the canonical text of a query into *out (new, dl_free). NULL: the
     * registry re-prints the query's EDN form (whitespace, commas and comments removed). */
    int (*normalize)(void *ctx, const char *query, char **out, dl_error_t *err);
} dl_source_vtable_t;

typedef struct dl_registry dl_registry_t;

typedef struct dl_registry_stats {
    size_t n_sources;        /* live shared sources (dataflows) */
    size_t n_subs;           /* live subscriptions */
    uint64_t sources_opened; /* total, for tests */
    uint64_t sources_closed;
} dl_registry_stats_t;

/* new: a registry over sources made by vt (copied) with ctx (borrowed until free). */
DL_API int dl_registry_new(const dl_source_vtable_t *vt, void *ctx, dl_registry_t **out,
                           dl_error_t *err) DL_WUR;
/* Ends every subscription (code 0), closes every source. NULL is a no-op. */
DL_API void dl_registry_free(dl_registry_t *r);
/* Subscribes to `query` with `inputs` (copied): shares the live source of an equal
 * normalized query with equal inputs and n_dims, or opens one. The snapshot is queued (or
 * called back) before this returns. *out is new (the caller's reference): unsubscribe
 * with dl_unsubscribe (engine thread) or dl_sub_close (any thread; reaped at the next
 * pump). Errors: DL_EINVAL, those of normalize/open/snapshot, DL_ENOMEM. */
DL_API int dl_subscribe(dl_registry_t *r, const char *query, const dl_value_t *inputs,
                        size_t n_inputs, const dl_sub_options_t *o, dl_sub_t **out,
                        dl_error_t *err) DL_WUR;
/* Unsubscribes and releases the caller's reference; the last subscriber of a source
 * closes it. NULL is a no-op. */
DL_API void dl_unsubscribe(dl_registry_t *r, dl_sub_t *s);
/* Delivers every ready message of every source to its subscribers (call after each engine
 * step), reaping closed and ended subscriptions and closing unused sources. A source's
 * poll error ends its subscribers with that code and closes it; the first error is
 * returned after all sources were served. */
DL_API int dl_registry_pump(dl_registry_t *r, dl_error_t *err) DL_WUR;
DL_API void dl_registry_stats(const dl_registry_t *r, dl_registry_stats_t *out);

/* ---- a source over a dataflow capture --------------------------------------------------
 * The building block for sources whose results come from a dataflow graph
 * (include/deltalog/dataflow.h): the owner builds the graph, captures the output collection
 * in queue mode (dl_capture_new with fn NULL), feeds and runs the graph, and implements its
 * dl_source_vtable_t's snapshot and poll with the two functions below. Built only when the
 * dataflow module is (DL_ONLY_MODULES). Times are the graph's root times (n_dims = its dim:
 * no projection to fewer coordinates yet). Single-threaded, like the graph. */
struct dl_capture;
typedef struct dl_capsrc dl_capsrc_t;
/* new: over `cap` (borrowed: it lives in its graph, which must outlive the dl_capsrc_t),
 * rows of `arity`, times of n_dims coordinates starting at t0 (the time the empty initial
 * result is tagged with). */
DL_API int dl_capsrc_new(struct dl_capture *cap, size_t arity, const uint64_t *t0, size_t n_dims,
                         dl_capsrc_t **out, dl_error_t *err) DL_WUR;
DL_API void dl_capsrc_free(dl_capsrc_t *s);
/* The next completed time's change as a new DATA delta (the capture's next diff), or
 * *out == NULL when none is queued; also adds it to the accumulated result. */
DL_API int dl_capsrc_poll(dl_capsrc_t *s, dl_delta_t **out, dl_error_t *err) DL_WUR;
/* new: the accumulated result of everything polled so far, as a snapshot delta tagged with
 * the latest polled time. With n_dims > 1: one message per user coordinate u = time[1 ..]
 * with a nonzero result, at [latest polled time[0], u], the first (at [.., 0 ...], maybe
 * empty) flagged as the snapshot and the others chained behind it, which dl_subscribe
 * delivers together when the vtable's snapshot returns it. */
DL_API int dl_capsrc_snapshot(dl_capsrc_t *s, dl_delta_t **out, dl_error_t *err) DL_WUR;
/* Rows in the accumulated result (for statistics). */
DL_API size_t dl_capsrc_rows(const dl_capsrc_t *s);

/* ---- Datalog live queries as sources ---------------------------------------------------
 * dl_qsrcs_t implements dl_source_vtable_t with the Datalog layer's live compiled queries
 * (include/deltalog/datalog.h: dl_live_new / dl_live_apply): a registry made with
 * dl_registry_new(dl_qsrcs_vtable(), qs, ...) parses, compiles and loads each distinct
 * (query, inputs) once. The engine thread feeds every committed transaction with
 * dl_qsrcs_apply, then calls dl_registry_pump. Inputs are the query's non-source :in
 * arguments in order (values; an entity argument may be an int). Rows are the :find
 * elements; times are the commit's first n_dims coordinates (system time first). Built only
 * when the datalog module is. Single-threaded (the engine thread). */
struct dl_db;
struct dl_commit;
typedef struct dl_qsrc_env {
    /* A borrowed snapshot of the current database (valid until the next dl_qsrcs_apply) and
     * the time vector of its basis transaction (at most DL_DELTA_MAX_DIM coordinates,
     * [tx, dim1, ...]; [0] for an empty database). */
    int (*current_db)(void *ctx, const struct dl_db **out_db, uint64_t *out_time,
                      size_t *out_n_time, dl_error_t *err);
    void *ctx;
    const char *rules; /* the rule set bound to % (EDN), or NULL; copied */
} dl_qsrc_env_t;

typedef struct dl_qsrcs dl_qsrcs_t;
/* new: free with dl_qsrcs_free after the registry using it. */
DL_API int dl_qsrcs_new(const dl_qsrc_env_t *env, dl_qsrcs_t **out, dl_error_t *err) DL_WUR;
DL_API void dl_qsrcs_free(dl_qsrcs_t *qs);
/* The source table to give dl_registry_new together with the dl_qsrcs_t as its ctx. */
DL_API const dl_source_vtable_t *dl_qsrcs_vtable(void);
/* Feeds one committed transaction (as delivered by dl_store_listen) to every open live
 * query; each query's change becomes a DATA delta for the next pump. A query whose run
 * fails keeps the code; its subscribers are ended with it at the next pump. Returns 0, or
 * DL_ENOMEM when a change could not be queued (that query is failed likewise). */
DL_API int dl_qsrcs_apply(dl_qsrcs_t *qs, const struct dl_commit *c, dl_error_t *err) DL_WUR;
/* Open live queries (for statistics and tests). */
DL_API size_t dl_qsrcs_count(const dl_qsrcs_t *qs);

DL_END_DECLS
#endif
