/*
 * dataflow.h (internal): the structures shared by the files of dataflow/: update buffers
 * and sealed batches (batch.c), spines and arrangements (spine.c), the graph, its nodes and
 * the scheduler (graph.c), per-row operators and join (ops.c), reduce (reduce.c), capture
 * and traces (output.c). The public API is include/deltalog/dataflow.h; the design is
 * docs/dataflow.md. Nothing here is thread-shared: one graph is one worker's state.
 */
#ifndef DL_DATAFLOW_INTERNAL_H
#define DL_DATAFLOW_INTERNAL_H

#include "base/base.h"

#include <deltalog/dataflow.h>

/* ---- update buffers (batch.c) ---------------------------------------------------------- */
/* A buffer of updates stored as fixed-stride records: arity values, then dim time
 * coordinates, then the int64 diff. No order is implied unless a caller says so.
 * A sealed spine batch may be narrow (dl__batch_narrow): when all its records share one
 * time, or one diff, that part is stored once in `shared` instead of in every record
 * (compacted arrangements mostly hold one time and diff +1: 16 of a W1 edge's 48 bytes).
 * The accessors hide the difference; only whole-record copies must use dl__ub_copy. A
 * narrow buffer is never appended to: reserve/alloc widen it first. */
#define DL_UB_SHARED_TIME 1u
#define DL_UB_SHARED_DIFF 2u
typedef struct dl_ubuf {
    uint32_t arity;
    uint32_t dim;
    size_t stride;   /* bytes per record: arity*16 + dim*8 + 8, less what is shared */
    size_t n;        /* records */
    size_t cap;      /* records allocated */
    uint8_t *data;   /* n * stride bytes, 16-byte aligned (dl_malloc) */
    unsigned narrow; /* DL_UB_SHARED_* */
    uint64_t shared[DL_TIME_MAX_DIM + 1]; /* the shared time, then the shared diff */
} dl_ubuf_t;

static inline dl_value_t *dl__ub_row(const dl_ubuf_t *b, size_t i) {
    return (dl_value_t *)(b->data + i * b->stride);
}
static inline uint64_t *dl__ub_time(const dl_ubuf_t *b, size_t i) {
    if (DL_UNLIKELY(b->narrow & DL_UB_SHARED_TIME))
        return (uint64_t *)b->shared;
    return (uint64_t *)(b->data + i * b->stride + (size_t)b->arity * sizeof(dl_value_t));
}
static inline int64_t *dl__ub_diff(const dl_ubuf_t *b, size_t i) {
    if (DL_UNLIKELY(b->narrow & DL_UB_SHARED_DIFF))
        return (int64_t *)&b->shared[DL_TIME_MAX_DIM];
    return (int64_t *)(b->data + (i + 1) * b->stride - sizeof(int64_t));
}
/* Copies record i of src (either layout) to record k of dst (wide, same shape). */
static inline void dl__ub_copy(dl_ubuf_t *dst, size_t k, const dl_ubuf_t *src, size_t i) {
    if (DL_LIKELY(!src->narrow)) {
        memcpy(dst->data + k * dst->stride, src->data + i * src->stride, dst->stride);
        return;
    }
    memcpy(dl__ub_row(dst, k), dl__ub_row(src, i), (size_t)src->arity * sizeof(dl_value_t));
    memcpy(dl__ub_time(dst, k), dl__ub_time(src, i), (size_t)src->dim * sizeof(uint64_t));
    *dl__ub_diff(dst, k) = *dl__ub_diff(src, i);
}

void dl__batch_ubuf_init(dl_ubuf_t *b, size_t arity, size_t dim);
void dl__batch_ubuf_fini(dl_ubuf_t *b);
bool dl__batch_ubuf_reserve(dl_ubuf_t *b, size_t extra);
/* Gives back unused capacity (sealed buffers are never appended to again). */
void dl__batch_ubuf_shrink(dl_ubuf_t *b);
/* Appends one record (row: arity values; time: dim coordinates) or returns false (oom). */
bool dl__batch_ubuf_push(dl_ubuf_t *b, const dl_value_t *row, const uint64_t *t, int64_t diff);
/* Appends an uninitialized record and returns its index, or SIZE_MAX on oom. */
size_t dl__batch_ubuf_alloc(dl_ubuf_t *b);
/* Sorts by (row, time) and merges equal (row, time) by adding diffs; drops zero diffs.
 * Returns false on oom (the buffer is then unchanged). */
bool dl__batch_consolidate(dl_ubuf_t *b);
/* Stores a shared time or diff once when every record has it (sealed spine batches of at
 * least min records). */
void dl__batch_narrow(dl_ubuf_t *b, size_t min);
/* Back to one time and diff per record, with room for at least cap records; false on oom
 * (the buffer is then unchanged). */
bool dl__batch_widen(dl_ubuf_t *b, size_t cap);
/* Checks the sorted-and-consolidated invariant (tests and asserts). */
bool dl__batch_check(const dl_ubuf_t *b);

/* Fast value and row comparison (the order of dl_value_cmp). */
static inline int dl__batch_vcmp(const dl_value_t *a, const dl_value_t *b) {
    if (a->type == b->type && a->type != DL_T_DOUBLE && a->type < DL_T_STRING)
        return (a->as.i > b->as.i) - (a->as.i < b->as.i);
    if (a->type == DL_T_REF && b->type == DL_T_REF)
        return (a->as.i > b->as.i) - (a->as.i < b->as.i);
    return dl_value_cmp(*a, *b);
}
static inline int dl__batch_rcmp(const dl_value_t *a, const dl_value_t *b, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int c = dl__batch_vcmp(a + i, b + i);
        if (c)
            return c;
    }
    return 0;
}

/* A sealed, immutable, reference-counted buffer: messages between operators (unsorted)
 * and spine batches (sorted by (row, time), consolidated). */
typedef struct dl_batch {
    int refs;
    bool sorted;        /* sorted and consolidated */
    uint64_t since_gen; /* spine batches: the spine's since generation it is compacted to */
    uint64_t *kidx;     /* spine batches: image of the first key column of every
                           DL_KIDX_STEP-th record (NULL: no index; see spine.c) */
    size_t n_kidx;
    dl_ubuf_t u;
} dl_batch_t;

/* new: takes the buffer's contents (u is left empty). NULL on oom (u untouched). */
dl_batch_t *dl__batch_new(dl_ubuf_t *u, bool sorted);
void dl__batch_ref(dl_batch_t *b);
/* b itself (a new reference) when it is wide, else a wide copy: messages between
 * operators are always wide. NULL on oom. */
dl_batch_t *dl__batch_wide(dl_batch_t *b);
void dl__batch_unref(dl_batch_t *b);

/* Time helpers. Padded join: a (da coordinates) and b (db coordinates), missing
 * coordinates are 0; out has max(da, db). */
static inline void dl__time_join_pad(const uint64_t *a, size_t da, const uint64_t *b, size_t db,
                                     uint64_t *out) {
    size_t d = da > db ? da : db;
    for (size_t i = 0; i < d; i++) {
        uint64_t x = i < da ? a[i] : 0, y = i < db ? b[i] : 0;
        out[i] = x > y ? x : y;
    }
}
/* A one-element antichain {t} over caller storage (dim coordinates), for calls that take
 * an antichain: no allocation. Read-only: never inserted into or freed. */
static inline dl_antichain_t dl__antichain_one(uint64_t *buf, const uint64_t *t, size_t dim) {
    memcpy(buf, t, dim * sizeof *buf);
    dl_antichain_t a = {(uint32_t)dim, 1, 1, buf};
    return a;
}
/* Antichain projected to its first `dim` coordinates (or padded with zeros). */
int dl__time_project(const dl_antichain_t *src, size_t dim, dl_antichain_t *out);

/* ---- spines (spine.c) ------------------------------------------------------------------ */
/* Invariants: batches[i] sorted and consolidated over rows key ++ val; batches are ordered
 * oldest first; no batch is empty; every time in a batch with since_gen == spine's
 * since_gen has been advanced by `since`. */
typedef struct dl_spine {
    uint32_t ka, va, dim;
    dl_batch_t **batches;
    size_t n, cap;
    dl_antichain_t since; /* logical compaction frontier */
    uint64_t since_gen;   /* incremented whenever since advances */
    size_t records;       /* total records in batches */
    size_t narrow_min;    /* merge outputs of at least this many records are narrowed */
} dl_spine_t;

/* Smaller batches are merged again soon (they are the spine's young layers), so narrowing
 * them would mostly buy relayout work (10% of W3's time at 2048); the memory is in the
 * large ones. Tests lower a spine's narrow_min to exercise the layout on small data. */
#define DL_NARROW_MIN 65536

void dl__spine_init(dl_spine_t *s, size_t ka, size_t va, size_t dim);
void dl__spine_fini(dl_spine_t *s);
/* Inserts a sorted batch (taken reference), merging to keep the geometric layer rule. */
int dl__spine_insert(dl_spine_t *s, dl_batch_t *b);
/* Advances since to f if f is not behind it (else ignored). */
int dl__spine_set_since(dl_spine_t *s, const dl_antichain_t *f);
/* One unit of idle work (merge two batches or re-compact a stale one); adds the records
 * moved to *fuel_used. Returns 1 if work was done, 0 if nothing is left, or an error. */
int dl__spine_maintain(dl_spine_t *s, size_t *fuel_used);
/* Index of the first record in b whose key is >= key, at or after `from`; every record
 * before `from` must be < key (callers visit keys in increasing order). Gallops from
 * `from` for nearby keys and uses the batch's sparse key index for far ones. */
size_t dl__spine_seek(const dl_batch_t *b, size_t ka, const dl_value_t *key, size_t from);
/* Debug validator: every batch sorted, consolidated, of the spine's shape, its key index
 * right, and the record count right. */
bool dl__spine_check(const dl_spine_t *s);
/* Prefetches the records where a seek for key would land (reduce calls it a few keys
 * ahead, so the memory latency of seeks overlaps), and returns a position at or after
 * `from` before which every record sorts before key: a start for that key's seek. */
size_t dl__spine_prefetch(const dl_batch_t *b, const dl_value_t *key, size_t from);
/* Builds b's sparse key index (no-op for small batches or mixed key types). */
void dl__spine_index(dl_batch_t *b, size_t ka);
#define DL_KIDX_STEP 8 /* 8 bytes of index per 8 records; 4 cost 0.4 MB more on W1 1e5 */

/* ---- graph (graph.c) ------------------------------------------------------------------- */
typedef enum dl_op {
    OP_INPUT,
    OP_MAP,
    OP_FLAT_MAP,
    OP_FILTER,
    OP_PROJECT,
    OP_FILTER_EQ,
    OP_FILTER_COLS,
    OP_CONCAT,
    OP_NEGATE,
    OP_CONSOLIDATE,
    OP_ARRANGE,
    OP_JOIN,
    OP_REDUCE,
    OP_ENTER,
    OP_LEAVE,
    OP_VAR,
    OP_CAPTURE,
    OP_LOOKUP, /* lookup.c; ctx: its parameters, in the jcols block */
    OP_COMBINE /* combine.c; cols: n_key, n_sum, key columns, sum columns */
} dl_op_t;

typedef struct dl_qitem {
    dl_batch_t *b;
    uint32_t port;
} dl_qitem_t;

typedef struct dl_edge {
    dl_coll_t *to;
    uint32_t port;
} dl_edge_t;

typedef struct dl_reduce_state dl_reduce_state_t;

/* Per-key accumulator slots in a hash table (groups.c; a linear reduce under totally
 * ordered time, reduce.c note 6). */
typedef struct dl_groups {
    size_t ka, ns;    /* key arity; slots per group */
    uint32_t *slots;  /* open addressing: group id + 1, 0 empty */
    size_t n_slots;   /* power of two, or 0 */
    size_t live;      /* groups in the table */
    dl_value_t *keys; /* ka per group id */
    uint64_t *acc;    /* ns per group id */
    uint32_t *stamp;  /* per group id: free for the owner's use (0 for a new group) */
    uint32_t *free_ids;
    size_t n_ids, cap_ids, n_free;
} dl_groups_t;
void dl__groups_init(dl_groups_t *g, size_t ka, size_t ns);
void dl__groups_fini(dl_groups_t *g);
/* The id of key's group, added with zeroed slots if absent; SIZE_MAX when out of memory.
 * Ids of live groups are stable; the keys/acc/stamp arrays may move. */
size_t dl__groups_get(dl_groups_t *g, const dl_value_t *key);
/* Removes group id (its id may be reused by the next added group). */
void dl__groups_drop(dl_groups_t *g, size_t id);

/* A reader of an arrangement: a join side, a reduce, or a user trace. */
typedef enum dl_reader_kind { RD_JOIN_LEFT, RD_JOIN_RIGHT, RD_REDUCE, RD_TRACE } dl_reader_kind_t;
typedef struct dl_reader {
    dl_reader_kind_t kind;
    dl_coll_t *node;   /* the join or reduce node (NULL for traces) */
    dl_trace_t *trace; /* RD_TRACE */
    bool deltas_only;  /* reads each delta as it arrives, never the spine (linear reduce) */
} dl_reader_t;

struct dl_arr {
    dl_graph_t *g;
    dl_coll_t *node; /* the node whose output this arrangement holds (ARRANGE or REDUCE) */
    dl_coll_t *src;  /* ARRANGE: the arranged collection */
    uint32_t *key_cols, *val_cols;
    uint32_t ka, va;
    dl_spine_t spine;
    dl_reader_t *readers;
    size_t n_readers, cap_readers;
    /* Readers that only take deltas need no history: while every reader is one, deltas
     * are not stored (a linear reduce's input would otherwise keep every update forever).
     * Once that happened, a reader needing history cannot attach (DL_ESTATE). */
    bool dropped;
};

struct dl_trace {
    dl_arr_t *arr;
    dl_antichain_t frontier;
};

struct dl_scope {
    dl_graph_t *g;
    dl_scope_t *parent;
    uint32_t dim;
    uint32_t depth;
};

struct dl_var {
    dl_coll_t *node; /* OP_VAR node */
    bool set;
};

/* Staged input is sealed in chunks of this many updates, so that operator buffers stay
 * small enough to be recycled by the allocator rather than mapped afresh. */
#define DL_INPUT_CHUNK 65536

struct dl_input {
    dl_coll_t *node;
    dl_ubuf_t staged;    /* updates not yet sealed (fewer than DL_INPUT_CHUNK) */
    dl_batch_t **sealed; /* full chunks of staged updates, oldest first */
    size_t n_sealed, cap_sealed;
    dl_antichain_t frontier;
    bool closed;
};

typedef struct dl_capq {
    uint64_t *time;   /* dim coordinates */
    dl_value_t *vals; /* n * arity, sorted, consolidated */
    int64_t *diffs;   /* n, nonzero */
    size_t n;
} dl_capq_t;

struct dl_capture {
    dl_coll_t *node;
    dl_capture_fn fn;
    void *ctx;
    dl_spine_t pend; /* updates not yet complete: sorted runs (rows are all key) */
    dl_capq_t *q;    /* completed diffs waiting for dl_capture_pop (fn == NULL) */
    size_t q_head, q_n, q_cap;
    uint64_t *pop_time; /* the diff most recently popped (owned until the next pop) */
    dl_value_t *pop_vals;
    int64_t *pop_diffs;
    bool released; /* dl_capture_release: no longer a root of dl_graph_collect */
};

/* A node: one operator and its output collection. Invariant: inputs were created before
 * the node (ids increase along edges), except the VAR result edge (the loop). */
struct dl_coll {
    dl_graph_t *g;
    dl_scope_t *scope;
    dl_op_t op;
    uint32_t id;
    uint32_t arity;
    uint32_t dim;
    dl_coll_t **ins; /* inputs (for ARRANGE: the source; JOIN/REDUCE: none, see arr) */
    size_t n_ins;
    dl_edge_t *outs; /* downstream consumers */
    size_t n_outs, cap_outs;
    dl_qitem_t *q; /* queued input batches */
    size_t q_n, q_cap;
    dl_antichain_t frontier; /* frontier of this node's output (computed by graph.c) */
    dl_antichain_t scratch;  /* frontier computation scratch */
    /* op parameters */
    void *fn;
    void *ctx;
    uint32_t *cols;
    size_t n_cols;
    dl_join_col_t *jcols;
    dl_value_t val;
    dl_arr_t *arr;                 /* ARRANGE, REDUCE: the arrangement this node produces */
    dl_arr_t *jl, *jr;             /* JOIN: the two sides */
    bool join_init;                /* JOIN over arrangements holding data: join at run */
    dl_batch_t **init_l, **init_r; /* JOIN: the sides' batches at creation (references) */
    size_t n_init_l, n_init_r;
    dl_arr_t **arrs; /* arrangements built on this node's output (sharing) */
    size_t n_arrs;
    dl_reduce_state_t *red; /* REDUCE */
    dl_input_t *input;      /* INPUT */
    dl_var_t *var;          /* VAR */
    dl_capture_t *cap;      /* CAPTURE */
    bool gc_mark;           /* dl_graph_collect: reachable from a root */
};

struct dl_graph {
    dl_scope_t root;
    dl_scope_t **scopes;
    size_t n_scopes;
    dl_coll_t **nodes;
    size_t n_nodes, cap_nodes;
    dl_arr_t **arrs;
    size_t n_arrs;
    bool running;          /* between the first dl_graph_step of a run and its last */
    dl_antichain_t sa, sb; /* frontier computation and compaction scratch, kept (no
                              allocation per step) */
    size_t work;           /* records processed in the current run (maintenance fuel) */
};

struct dl_emitter {
    dl_ubuf_t *buf;
    const uint64_t *time;
    int64_t diff;
    const dl_value_t *prefix; /* prepended to every row (reduce: the key) */
    uint32_t n_prefix;
    uint32_t arity; /* values the callback passes */
    uint32_t count; /* rows emitted so far */
};

/* Sends batch b (a reference is taken per consumer) to every consumer of node n. */
int dl__graph_emit(dl_coll_t *n, dl_batch_t *b);
/* As dl__graph_emit, taking ownership of the buffer (which is left empty). */
int dl__graph_emit_buf(dl_coll_t *n, dl_ubuf_t *u);
dl_coll_t *dl__graph_node_new(dl_scope_t *s, dl_op_t op, size_t arity, dl_coll_t *const *ins,
                              size_t n_ins, dl_error_t *err);
/* DL_ESTATE when a dropped history (see dl_arr_t) would be needed, or DL_ENOMEM. */
int dl__graph_arr_add_reader(dl_arr_t *a, dl_reader_kind_t kind, dl_coll_t *node,
                             dl_trace_t *trace);
/* Whether a keeps its history (some reader reads the spine, or nobody reads it yet). */
bool dl__graph_arr_keeps(const dl_arr_t *a);
/* Sets the DL_ESTATE error for a reader that would need a's dropped history; NULL. */
void *dl__graph_no_history(dl_error_t *err, const dl_arr_t *a);

/* ---- operators (ops.c, reduce.c, output.c) --------------------------------------------- */
/* Emits the join of the contents both sides held when join node j was created. */
int dl__ops_join_init(dl_coll_t *j);
/* Processes one queued batch at node n. */
int dl__ops_process(dl_coll_t *n, dl_batch_t *b, uint32_t port);
/* A new sorted batch delta arrived at arrangement a (not yet in a's spine): runs every
 * reader (joins produce output; reduces record pending work), then inserts it. */
int dl__ops_arr_deliver(dl_arr_t *a, dl_batch_t *delta);
/* Records pending (key, time) work for a reduce from a delta of its input. */
int dl__reduce_note(dl_coll_t *n, const dl_batch_t *delta);
/* Processes the reduce's pending times that are complete with respect to its input
 * frontier; *out_worked set when it did anything. */
int dl__reduce_step(dl_coll_t *n, const dl_antichain_t *in_frontier, bool *out_worked);
/* The reduce's capabilities: inserts its pending times' minima into f. */
int dl__reduce_caps(dl_coll_t *n, dl_antichain_t *f);
size_t dl__reduce_pending(const dl_coll_t *n);
/* Whether the reduce keeps per-key sums in a hash table (reduce.c note 6). */
bool dl__reduce_total(const dl_coll_t *n);
/* Records the reduce has read from spines or produced (cumulative; tests of cost). */
size_t dl__reduce_touched(const dl_coll_t *n);
void dl__reduce_free(dl_reduce_state_t *r);
int dl__reduce_init(dl_coll_t *n, const dl_reduce_spec_t *spec, dl_error_t *err);
/* Processes one batch at a lookup join node (lookup.c). */
int dl__lookup_process(dl_coll_t *n, const dl_batch_t *b);
/* Processes one batch at a combine node (combine.c). */
int dl__combine_process(dl_coll_t *n, const dl_batch_t *b);
/* Delivers a capture's completed times. */
int dl__output_capture_step(dl_capture_t *c, const dl_antichain_t *f);
void dl__output_capture_free(dl_capture_t *c);
/* Adds a batch of updates to the capture's pending ones. */
int dl__output_capture_add(dl_capture_t *c, const dl_ubuf_t *u);

#endif
