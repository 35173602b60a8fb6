/*
 * subscribe.h (internal): what the files of subscribe/ share and the public header does
 * not expose: delta merging and cloning for the queue's coalescing, the registry's hooks
 * into a subscription, and test hooks. Public API: include/deltalog/subscribe.h.
 */
#ifndef DL_SUBSCRIBE_INTERNAL_H
#define DL_SUBSCRIBE_INTERNAL_H

#include <deltalog/subscribe.h>

/* ---- subscribe/delta.c ---- */
/* new: an unsealed private copy of d (same kind, time, rows, snapshot flag, n_times). */
int dl__delta_clone(const dl_delta_t *d, dl_delta_t **out);
/* Adds every pair of `from` into the unsealed `into` (consolidating), then tags `into`
 * with from's time and adds from's n_times. DL_ENOMEM or DL_ERANGE leave `into` partly
 * merged: the caller discards it. */
int dl__delta_merge(dl_delta_t *into, const dl_delta_t *from);
/* Sets the END code of an END delta (even sealed: used once, before it is queued). */
void dl__delta_set_code(dl_delta_t *d, int code);
/* A snapshot of several messages (a source watching n_dims > 1 coordinates: one DATA
 * message per distinct user coordinate, then FRONTIER messages) is returned by the source's
 * snapshot as its first message with the others chained behind it: dl__delta_chain
 * appends `next` (taken) at the end of d's chain; dl__delta_unchain detaches and returns
 * d's follower (the caller's reference now), or NULL. A delta freed with a chain frees it. */
void dl__delta_chain(dl_delta_t *d, dl_delta_t *next);
dl_delta_t *dl__delta_unchain(dl_delta_t *d);
/* Retags an unsealed delta with `time` (its own number of coordinates). DL_ESTATE if sealed. */
int dl__delta_set_time(dl_delta_t *d, const uint64_t *time);
/* Lexicographic comparison of two times of n coordinates. */
int dl__delta_time_cmp(const uint64_t *a, const uint64_t *b, size_t n);
/* Product order: a <= b. */
bool dl__delta_time_le(const uint64_t *a, const uint64_t *b, size_t n);
/* Debug validator: the index finds every entry, no diff is 0, no row repeats (an unindexed
 * delta: its rows are strictly ascending in key order, delta.c design note 5). */
bool dl__delta_check(const dl_delta_t *d);
/* dl_delta_add of n pairs (rows: n * arity values; zero diffs skipped), without hashing
 * while they are strictly ascending in key order (dl_row_cmp's order for canonical values,
 * such as a dataflow capture's consolidated diff) and d is empty or unindexed: d then stays
 * unindexed (delta.c design note 5) and its index is built at its first dl_delta_add.
 * Errors as dl_delta_add. */
int dl__delta_add_rows(dl_delta_t *d, const dl_value_t *rows, const int64_t *diffs, size_t n,
                       dl_error_t *err);

/* The sum of a stream of DATA deltas of one arity and time width (what a source handed
 * out: its snapshot), kept as a stack of sorted runs merged as they grow (delta.c design
 * note 6): a sorted delta enters by reference (it is sealed), others as a sorted copy. */
typedef struct dl__dacc {
    dl_delta_t **runs; /* sealed, unindexed or key-sorted; oldest (largest) first */
    size_t n, cap;
    /* Once the sum outgrows big_rows (32768 by default) its bottom is this private indexed
     * delta, and the runs are added into it pair by pair as soon as they hold fold_rows
     * pairs (1 by default: each delta at once, as a hashed accumulation does): a large
     * result is never merged sequentially as a whole (delta.c design note 6). */
    dl_delta_t *big;
    size_t big_rows, fold_rows;
    size_t arity, n_dims;
    uint64_t time[DL_DELTA_MAX_DIM]; /* the latest added delta's time (init: the given one) */
    uint64_t n_times;                /* the sum of the added deltas' n_times */
} dl__dacc_t;
void dl__dacc_init(dl__dacc_t *a, size_t arity, const uint64_t *time, size_t n_dims);
void dl__dacc_fini(dl__dacc_t *a);
/* Adds d (seals it when it is kept by reference). DL_EINVAL (another arity or width): d
 * is not added. DL_ENOMEM: the sum includes d or not (the caller fails its source).
 * DL_ERANGE (a diff overflows), DL_ELIMIT: the sum is then unspecified. */
int dl__dacc_add(dl__dacc_t *a, dl_delta_t *d);
/* Merges the runs into one (runs[0], when the sum is not empty), or into big. DL_ENOMEM,
 * DL_ERANGE, DL_ELIMIT. */
int dl__dacc_compact(dl__dacc_t *a);
/* new: the sum as one unsealed DATA delta (sorted and unindexed, or a copy of big) tagged
 * with the latest time and n_times (compacts first). Errors of dl__dacc_compact. */
int dl__dacc_snapshot(dl__dacc_t *a, dl_delta_t **out);

/* Accumulation per user coordinate, for sources watching n_dims > 1 coordinates [tx, u]:
 * the sum of the changes at each u (over every transaction), one unsealed delta per u with
 * a nonzero sum, sorted by u (delta.c). Its snapshot at system time tx is the messages
 * [tx, u] a new subscriber receives: the first at [tx, 0 ...] with the snapshot flag
 * (holding u = 0's sum, possibly empty), the others chained behind it (dl__delta_chain). */
typedef struct dl__uacc {
    dl_delta_t **v;
    size_t n, cap;
    size_t arity, n_dims;
} dl__uacc_t;
void dl__uacc_init(dl__uacc_t *a, size_t arity, size_t n_dims);
void dl__uacc_fini(dl__uacc_t *a);
/* Adds (row, diff) at time's u / every pair of a DATA delta at its u. DL_ENOMEM leaves the
 * accumulation partly updated (the source is then failed). */
int dl__uacc_add(dl__uacc_t *a, const uint64_t *time, const dl_value_t *row, int64_t diff);
int dl__uacc_add_delta(dl__uacc_t *a, const dl_delta_t *d);
/* new: the snapshot messages at system time tx (unsealed, chained). DL_ENOMEM. */
int dl__uacc_snapshot(const dl__uacc_t *a, uint64_t tx, dl_delta_t **out);

/* ---- subscribe/sub.c ---- */
/* Registry bookkeeping shown in dl_sub_stats (under the subscription's lock). */
void dl__sub_set_source(dl_sub_t *s, uint64_t source_id, uint64_t shared_with);
/* The arity and watched dims the subscription was created with. */
size_t dl__sub_arity(const dl_sub_t *s);
size_t dl__sub_n_dims(const dl_sub_t *s);
/* dl_sub_push for the messages of a snapshot (sub.c design note 10): admitted whatever the
 * BLOCK/DROP limits (never waits, never ends the subscription for lack of room). */
int dl__sub_push_initial(dl_sub_t *s, dl_delta_t *d, dl_error_t *err);
/* Test hook: waits until the producer is waiting for room (BLOCK), up to timeout_ms.
 * 0 when it is, DL_ETIMEOUT otherwise. */
int dl__sub_wait_producer_blocked(dl_sub_t *s, int64_t timeout_ms);

#endif
