/*
 * dataflow.h: the differential dataflow engine: build a graph of operators over
 * collections of rows that change over partially ordered time, feed inputs, advance
 * frontiers, run to quiescence, and read consolidated output diffs per completed time.
 *
 * Semantics: ../shared/DESIGN-NOTES.md §1-2 and §6; design and an example: docs/dataflow.md.
 * This header knows nothing of EAVT or Datalog.
 *
 * Vocabulary.
 * - Time: a vector of `dim` uint64 coordinates, compared by the product partial order.
 *   A graph's root scope has `dim` = k (1..DL_TIME_MAX_ROOT_DIM, coordinate 0 = system
 *   time); every iterate scope adds one loop coordinate at the end. Times are passed as
 *   `const uint64_t *` of the scope's dim.
 * - Collection (dl_coll_t): the output stream of one operator: rows of a fixed `arity`
 *   (dl_value_t each) with int64 diffs at times of its scope. Contents at t = the sum of
 *   the diffs at times <= t.
 * - Arrangement (dl_arr_t): a collection indexed by key columns, held as immutable sorted
 *   batches (key, val, time, diff) in a merging spine; shared by every operator that reads
 *   it; compacted to the meet of its readers' frontiers.
 * - Frontier: an antichain of times; "t is complete" when no element of the frontier is
 *   <= t, i.e. no further update at or below t can appear.
 *
 * Ownership: every dl_coll_t, dl_arr_t, dl_input_t, dl_capture_t, dl_scope_t and dl_var_t
 * is owned by its graph and borrowed by the caller until dl_graph_free. dl_trace_t
 * (an arrangement reader) is new: release with dl_trace_free (before the graph).
 * Threading: a graph is single-threaded state (one worker); several graphs may run on
 * several threads. There is no global mutable state.
 * Attaching later: operators may be added between runs. A consumer of an arranged
 * collection (dl_arr_coll, or a reduce's output) that already holds data receives the
 * arrangement's contents (times advanced to its compaction frontier); a join of two
 * arrangements that hold data emits their join at the next run; a reduce over one starts
 * from all of its keys. A new consumer of a collection that is not arranged (an input, a
 * map, ...) sees only later updates: arrange what later queries will share before loading.
 * Errors: functions return 0 or a negative DL_E... code and fill the optional err.
 * Building functions return NULL on error (err says why); a graph with a failed build
 * call stays usable.
 */
#ifndef DELTALOG_DATAFLOW_H
#define DELTALOG_DATAFLOW_H

#include <deltalog/common.h>
#include <deltalog/error.h>
#include <deltalog/value.h>
#include <stdbool.h>

DL_BEGIN_DECLS

#define DL_TIME_MAX_ROOT_DIM 8  /* coordinates of a graph's root scope */
#define DL_TIME_MAX_DIM      16 /* root coordinates plus nested iterate scopes */
#define DL_ARITY_MAX         64 /* columns of a row */

/* ---- times and antichains ------------------------------------------------------------- */
/* Product partial order: a <= b iff a[i] <= b[i] for every i. */
DL_API bool dl_time_le(const uint64_t *a, const uint64_t *b, size_t dim);
/* Lexicographic total order (a linear extension of the product order): <0, 0, >0. */
DL_API int dl_time_cmp(const uint64_t *a, const uint64_t *b, size_t dim);
/* out = coordinate-wise max (join) / min (meet). out may alias a or b. */
DL_API void dl_time_join(const uint64_t *a, const uint64_t *b, size_t dim, uint64_t *out);
DL_API void dl_time_meet(const uint64_t *a, const uint64_t *b, size_t dim, uint64_t *out);

/* An antichain of times of one dim (a frontier). Caller-allocated plain value: call
 * dl_antichain_init before use and dl_antichain_fini after. Invariant: no element is
 * <= another. The empty antichain is the "closed" frontier (every time complete). */
typedef struct dl_antichain {
    uint32_t dim;    /* coordinates per element */
    uint32_t n;      /* number of elements */
    uint32_t cap;    /* capacity in elements */
    uint64_t *elems; /* n * dim coordinates; heap (dl_malloc) */
} dl_antichain_t;

DL_API void dl_antichain_init(dl_antichain_t *a, size_t dim);
DL_API void dl_antichain_fini(dl_antichain_t *a);
DL_API void dl_antichain_clear(dl_antichain_t *a);
/* Inserts t unless some element is <= t; removes elements >= t. Returns 1 when inserted,
 * 0 when dominated, DL_ENOMEM. */
DL_API int dl_antichain_insert(dl_antichain_t *a, const uint64_t *t) DL_WUR;
/* True when some element is <= t (t is not complete with respect to the frontier a). */
DL_API bool dl_antichain_less_equal(const dl_antichain_t *a, const uint64_t *t);
/* True when every element of b is >= some element of a (a is not ahead of b). */
DL_API bool dl_antichain_le(const dl_antichain_t *a, const dl_antichain_t *b);
DL_API int dl_antichain_copy(dl_antichain_t *dst, const dl_antichain_t *src) DL_WUR;
/* Advances t by the frontier f (differential dataflow's advance_by): out = the meet over
 * the elements e of f of join(t, e); unchanged when f is empty. For every time s >= f,
 * out <= s iff t <= s, so times advanced this way accumulate identically beyond f. */
DL_API void dl_time_advance_by(const uint64_t *t, const dl_antichain_t *f, uint64_t *out);

/* ---- graph and scopes ----------------------------------------------------------------- */
typedef struct dl_graph dl_graph_t;
typedef struct dl_scope dl_scope_t; /* the root scope or an iterate scope */
typedef struct dl_coll dl_coll_t;   /* an operator's output collection */
typedef struct dl_arr dl_arr_t;     /* an arrangement */
typedef struct dl_input dl_input_t;
typedef struct dl_capture dl_capture_t;
typedef struct dl_var dl_var_t;     /* an iterate variable */
typedef struct dl_trace dl_trace_t; /* a reader of an arrangement, with its own frontier */

/* new: a graph whose root scope has `dim` time coordinates (1..DL_TIME_MAX_ROOT_DIM). */
DL_API dl_graph_t *dl_graph_new(size_t dim, dl_error_t *err);
DL_API void dl_graph_free(dl_graph_t *g);
DL_API dl_scope_t *dl_graph_root(dl_graph_t *g);
DL_API size_t dl_scope_dim(const dl_scope_t *s);
DL_API size_t dl_coll_arity(const dl_coll_t *c);
DL_API dl_scope_t *dl_coll_scope(const dl_coll_t *c);

/* ---- input ---------------------------------------------------------------------------- */
/* An input collection of the given arity in scope s (normally the root). Its frontier
 * starts at the all-zero time. */
DL_API dl_input_t *dl_input_new(dl_scope_t *s, size_t arity, dl_error_t *err);
DL_API dl_coll_t *dl_input_coll(dl_input_t *in);
/* Stages (row, time, diff); the row (arity values) and time are copied. DL_EARITY when
 * n_cols differs from the arity, DL_ETIME when t is not >= the input's frontier, DL_ESTATE
 * after dl_input_close. Staged updates enter the graph at the next run/step. */
DL_API int dl_input_update(dl_input_t *in, const dl_value_t *row, size_t n_cols, const uint64_t *t,
                           int64_t diff, dl_error_t *err) DL_WUR;
/* Replaces the frontier: every element of f must be >= some element of the current
 * frontier (DL_ETIME "frontier backward" otherwise); f->dim must equal the scope's dim. */
DL_API int dl_input_advance(dl_input_t *in, const dl_antichain_t *f, dl_error_t *err) DL_WUR;
/* Convenience for totally ordered use: advances to the single time t. */
DL_API int dl_input_advance_to(dl_input_t *in, const uint64_t *t, dl_error_t *err) DL_WUR;
/* Empties the frontier: no more updates (every time becomes complete for this input). */
DL_API int dl_input_close(dl_input_t *in, dl_error_t *err) DL_WUR;

/* ---- per-row operators ---------------------------------------------------------------- */
/* Row callbacks. `row` (in_arity values) is borrowed for the call. Emit output rows with
 * dl_emit(out, row) (out_arity values, copied). Return 0, or a negative DL_E... code to
 * abort the run (the code is returned by dl_graph_run). */
typedef struct dl_emitter dl_emitter_t;
DL_API int dl_emit(dl_emitter_t *out, const dl_value_t *row) DL_WUR;
/* As dl_emit with a diff multiplier (flat_map may emit a row several times). */
DL_API int dl_emit_diff(dl_emitter_t *out, const dl_value_t *row, int64_t mult) DL_WUR;

typedef int (*dl_map_fn)(void *ctx, const dl_value_t *row, dl_emitter_t *out);
typedef bool (*dl_filter_fn)(void *ctx, const dl_value_t *row);

/* map: exactly one output row per input row (the callback must call dl_emit once). */
DL_API dl_coll_t *dl_map(dl_coll_t *in, size_t out_arity, dl_map_fn fn, void *ctx, dl_error_t *err);
/* flat_map: zero or more output rows per input row. */
DL_API dl_coll_t *dl_flat_map(dl_coll_t *in, size_t out_arity, dl_map_fn fn, void *ctx,
                              dl_error_t *err);
DL_API dl_coll_t *dl_filter(dl_coll_t *in, dl_filter_fn fn, void *ctx, dl_error_t *err);
/* Output row = the input columns cols[0..n_cols) (repetition allowed). */
DL_API dl_coll_t *dl_project(dl_coll_t *in, const uint32_t *cols, size_t n_cols, dl_error_t *err);
/* Keeps rows whose column `col` equals v (the common selection, no callback needed). */
DL_API dl_coll_t *dl_filter_eq(dl_coll_t *in, uint32_t col, dl_value_t v, dl_error_t *err);
/* Keeps rows whose columns a and b are equal. */
DL_API dl_coll_t *dl_filter_cols_eq(dl_coll_t *in, uint32_t a, uint32_t b, dl_error_t *err);
/* Sum of n collections of one scope and arity (DL_EARITY / DL_EINVAL otherwise). */
DL_API dl_coll_t *dl_concat(dl_coll_t *const *ins, size_t n, dl_error_t *err);
DL_API dl_coll_t *dl_negate(dl_coll_t *in, dl_error_t *err);
/* Same contents; each batch is consolidated (sorted, diffs summed, zeros dropped). */
DL_API dl_coll_t *dl_consolidate(dl_coll_t *in, dl_error_t *err);

/* ---- arrangements and join ------------------------------------------------------------ */
/* Arranges `in` by key columns key_cols[0..n_key) with value columns val_cols[0..n_val)
 * (val_cols NULL: every non-key column in order). The arrangement is shared: arranging
 * one collection twice by the same columns returns the same arrangement. */
DL_API dl_arr_t *dl_arrange(dl_coll_t *in, const uint32_t *key_cols, size_t n_key,
                            const uint32_t *val_cols, size_t n_val, dl_error_t *err);
DL_API size_t dl_arr_key_arity(const dl_arr_t *a);
DL_API size_t dl_arr_val_arity(const dl_arr_t *a);
/* The arrangement's updates as a collection of rows key ++ val. */
DL_API dl_coll_t *dl_arr_coll(dl_arr_t *a);

/* A column of a join output row: from the key, the left value or the right value. */
typedef enum dl_join_src { DL_JOIN_KEY = 0, DL_JOIN_LEFT = 1, DL_JOIN_RIGHT = 2 } dl_join_src_t;
typedef struct dl_join_col {
    uint8_t src;  /* dl_join_src_t */
    uint32_t col; /* column index within that part */
} dl_join_col_t;
/* General join output: called per matching (key, left val, right val). */
typedef int (*dl_join_fn)(void *ctx, const dl_value_t *key, const dl_value_t *lval,
                          const dl_value_t *rval, dl_emitter_t *out);

/* Join of two arrangements with equal key arity; left and right may be the same
 * arrangement; either may belong to an enclosing scope of the other (it is then read as
 * entered: missing loop coordinates are 0). Output scope: the deeper of the two. Output
 * time = join of the times, diff = product. Output row = cols[0..n_cols). */
DL_API dl_coll_t *dl_join(dl_arr_t *left, dl_arr_t *right, const dl_join_col_t *cols, size_t n_cols,
                          dl_error_t *err);
DL_API dl_coll_t *dl_join_map(dl_arr_t *left, dl_arr_t *right, size_t out_arity, dl_join_fn fn,
                              void *ctx, dl_error_t *err);

/* ---- lookup join ----------------------------------------------------------------------- */
/* A static indexed collection outside the graph (a store snapshot, say) read through a
 * callback: fn(ctx, key, out) yields, through dl_lookup_yield, the val rows (val_arity
 * values each) present for key; each yield is one row of multiplicity 1, all at time
 * `time` (the scope's dim coordinates, copied). The caller guarantees the collection never
 * changes while the operator exists. key is borrowed for the call. */
typedef struct dl_lookup_sink dl_lookup_sink_t;
DL_API int dl_lookup_yield(dl_lookup_sink_t *out, const dl_value_t *val) DL_WUR;
typedef int (*dl_lookup_fn)(void *ctx, const dl_value_t *key, dl_lookup_sink_t *out);
typedef struct dl_lookup_spec {
    const uint32_t *key_cols; /* the key: these columns of the input rows */
    size_t n_key;
    size_t val_arity;
    dl_lookup_fn fn;
    void *ctx;
    const uint64_t *time;
    bool sort; /* probe each batch in the order of its first key column (ints and refs) */
} dl_lookup_spec_t;
/* Lookup join (a half join): for every update (row, t, d) of `in` and every val yielded
 * for row's key, an output row cols[0..n_cols) (DL_JOIN_KEY: key column, DL_JOIN_LEFT: a
 * column of row, DL_JOIN_RIGHT: a column of val) at join(t, time) with diff d: the join
 * of `in` with the static collection, at a cost proportional to `in`'s updates (nothing
 * is arranged). Output scope: in's. Its use: docs/datalog.md "One-shot plans". */
DL_API dl_coll_t *dl_lookup_join(dl_coll_t *in, const dl_lookup_spec_t *spec,
                                 const dl_join_col_t *cols, size_t n_cols, dl_error_t *err);

/* ---- combine (linear pre-aggregation) --------------------------------------------------- */
/* Folds each batch per (key, time): one row key_cols ++ [sum of diffs, sum of diff * v for
 * each of sum_cols (ints)] with diff +1, keys whose sums are all 0 left out. Only for
 * readers that sum those columns (a LINEAR reduce with SUM aggregates: COUNT and SUM of the
 * input are then the SUMs of the combined columns) and drop keys whose summed count is 0:
 * the rows are partial sums, not the input's rows. The run fails with DL_ETYPE for a
 * non-int sum column, DL_ERANGE on overflow. Its use: docs/datalog.md "One-shot plans". */
DL_API dl_coll_t *dl_combine(dl_coll_t *in, const uint32_t *key_cols, size_t n_key,
                             const uint32_t *sum_cols, size_t n_sum, dl_error_t *err);

/* ---- reduce --------------------------------------------------------------------------- */
typedef enum dl_reduce_kind {
    DL_REDUCE_COUNT,     /* out: key ++ [count] for keys with a nonzero count */
    DL_REDUCE_SUM,       /* out: key ++ [sum of val column `col` (ints) * count] */
    DL_REDUCE_MIN,       /* out: key ++ [min of val column `col` over positive counts] */
    DL_REDUCE_MAX,       /* out: key ++ [max ...] */
    DL_REDUCE_AVG,       /* out: key ++ [double average of column `col`] */
    DL_REDUCE_DISTINCT,  /* out: key ++ val with count 1 for each (val) of positive count */
    DL_REDUCE_THRESHOLD, /* out: key ++ val with count thresh_fn(count) */
    DL_REDUCE_GENERAL,   /* out: key ++ whatever general_fn emits */
    DL_REDUCE_LINEAR     /* out: key ++ [one value per aggs[i]] (see dl_linear_agg_t) */
} dl_reduce_kind_t;

/* LINEAR reduce: aggregates that depend only on the sums of count and count * val of
 * int64 columns, computed together per key at a cost proportional to the change (each
 * input update becomes updates of a per-key accumulator; the group is never re-read).
 * Output for a key with nonzero total count: COUNT -> int (sum of counts), SUM -> int
 * (sum of count * val), AVG -> double (exact sum / count). Keys whose total count is 0
 * have no output row. Errors from the run: DL_ETYPE when a SUM/AVG column holds a value
 * that is not an int; DL_ERANGE when a SUM result (or one count * val) is outside int64
 * (AVG never overflows: the sum is carried in two halves). docs/reduce-linear.md. */
typedef enum dl_linear_op { DL_LINEAR_COUNT, DL_LINEAR_SUM, DL_LINEAR_AVG } dl_linear_op_t;
typedef struct dl_linear_agg {
    dl_linear_op_t op;
    uint32_t col; /* SUM/AVG: the val column (ignored for COUNT) */
} dl_linear_agg_t;

/* General reducer: the key's accumulated input multiset (n distinct vals, val_arity values
 * each, sorted, counts nonzero) in, its output multiset out through dl_emit_diff (rows of
 * the out value columns only; the key is prepended). Called only for keys with n > 0. */
typedef int (*dl_reduce_fn)(void *ctx, const dl_value_t *key, const dl_value_t *vals,
                            const int64_t *counts, size_t n, dl_emitter_t *out);
typedef int64_t (*dl_threshold_fn)(void *ctx, const dl_value_t *row, int64_t count);

typedef struct dl_reduce_spec {
    dl_reduce_kind_t kind;
    uint32_t col;              /* SUM/MIN/MAX/AVG: the val column */
    size_t out_arity;          /* GENERAL: values per output row, excluding the key */
    dl_reduce_fn general_fn;   /* GENERAL */
    dl_threshold_fn thresh_fn; /* THRESHOLD */
    void *ctx;
    const dl_linear_agg_t *aggs; /* LINEAR: n_aggs aggregates (copied by dl_reduce) */
    size_t n_aggs;
} dl_reduce_spec_t;

/* Reduces an arrangement by key. The result is itself an arrangement (by the same key,
 * val = output columns) in the input's scope. Correct under partially ordered times: for
 * each key it re-evaluates at the closure under join of the key's new, pending and
 * historical times, carrying not-yet-complete times forward (docs/dataflow.md). */
DL_API dl_arr_t *dl_reduce(dl_arr_t *in, const dl_reduce_spec_t *spec, dl_error_t *err);
/* distinct of a whole collection: arrange by every column, reduce DISTINCT, as collection. */
DL_API dl_coll_t *dl_distinct(dl_coll_t *in, dl_error_t *err);
/* count by key columns: rows key ++ [count]. */
DL_API dl_coll_t *dl_count(dl_coll_t *in, const uint32_t *key_cols, size_t n_key, dl_error_t *err);

/* ---- iterate -------------------------------------------------------------------------- */
/* A nested scope of `parent` whose times gain one loop coordinate (last). */
DL_API dl_scope_t *dl_iterate_begin(dl_scope_t *parent, dl_error_t *err);
/* The collection `c` of the parent scope inside `s`, at loop coordinate 0. */
DL_API dl_coll_t *dl_enter(dl_scope_t *s, dl_coll_t *c, dl_error_t *err);
/* A variable of scope s starting as `init` (a collection of s): at loop iteration 0 it
 * equals init, at iteration i+1 it equals the collection given to dl_var_set at i.
 * DL_ECYCLE if s is the root scope. */
DL_API dl_var_t *dl_var_new(dl_scope_t *s, dl_coll_t *init, dl_error_t *err);
DL_API dl_coll_t *dl_var_coll(dl_var_t *v);
/* Closes the loop (once). result must be in s and of the variable's arity. */
DL_API int dl_var_set(dl_var_t *v, dl_coll_t *result, dl_error_t *err) DL_WUR;
/* The collection c of scope s in s's parent: the loop coordinate is dropped (diffs of all
 * iterations add up to the fixpoint). */
DL_API dl_coll_t *dl_leave(dl_coll_t *c, dl_error_t *err);

/* ---- output: capture and inspection --------------------------------------------------- */
/* One completed time's consolidated change of a captured collection: n rows (arity
 * values each, sorted) with nonzero diffs. All pointers borrowed for the callback. */
typedef struct dl_diff {
    const uint64_t *time; /* dim coordinates */
    size_t dim;
    size_t arity;
    size_t n;
    const dl_value_t *rows; /* n * arity */
    const int64_t *diffs;   /* n */
} dl_diff_t;
typedef int (*dl_capture_fn)(void *ctx, const dl_diff_t *d);

/* Captures c (any scope depth 0 collection, i.e. of the root scope). When fn is not NULL
 * it is called during run for each completed time whose change is not empty, in
 * lexicographic time order; otherwise the diffs are queued for dl_capture_pop. */
DL_API dl_capture_t *dl_capture_new(dl_coll_t *c, dl_capture_fn fn, void *ctx, dl_error_t *err);
/* Pops the oldest queued completed diff into *out (valid until the next pop or run).
 * Returns 1 when one was popped, 0 when none is queued. */
DL_API int dl_capture_pop(dl_capture_t *cap, dl_diff_t *out);

/* Releases a capture: it receives nothing more, and the operators only it depended on
 * become garbage for dl_graph_collect (which frees the capture). c is invalid after. */
DL_API void dl_capture_release(dl_capture_t *c);

/* ---- teardown of subgraphs ------------------------------------------------------------ */
/* Frees every operator that no live output depends on: the roots are the unreleased
 * captures, the inputs that are not closed, and the arrangements read by a dl_trace_t;
 * every operator and arrangement not reachable backward from a root (through inputs,
 * join sides, reduce inputs, iterate feedback) is removed with its batches, queues and
 * state; arrangements that survive lose the readers that were removed; iterate scopes
 * left empty are freed. Collections, arrangements and inputs that were removed are
 * invalid afterwards. DL_ESTATE between the steps of a run. *out_removed (optional): the
 * number of operators removed. */
DL_API int dl_graph_collect(dl_graph_t *g, size_t *out_removed, dl_error_t *err) DL_WUR;

/* A reader of an arrangement: holds back its compaction to the reader's frontier.
 * new: release with dl_trace_free. Its frontier starts at the arrangement's. */
DL_API dl_trace_t *dl_trace_new(dl_arr_t *a, dl_error_t *err);
DL_API void dl_trace_free(dl_trace_t *t);
/* Allows compaction up to f (must not go backward: DL_ETIME). */
DL_API int dl_trace_advance(dl_trace_t *t, const dl_antichain_t *f, dl_error_t *err) DL_WUR;
/* dl_trace_advance to the one-element frontier {time} (the trace's dim coordinates). */
DL_API int dl_trace_advance_to(dl_trace_t *t, const uint64_t *time, dl_error_t *err) DL_WUR;
/* Reads the accumulated contents at time `time` (must be >= the reader's frontier, else
 * DL_ETIME): fn(ctx, key, val, count) per (key, val) with nonzero count, in order.
 * Only updates that have entered the arrangement are seen: run first, and read complete
 * times for final answers. */
typedef int (*dl_read_fn)(void *ctx, const dl_value_t *key, const dl_value_t *val, int64_t count);
DL_API int dl_trace_read(dl_trace_t *t, const uint64_t *time, dl_read_fn fn, void *ctx,
                         dl_error_t *err) DL_WUR;
/* As dl_trace_read restricted to one key. */
DL_API int dl_trace_read_key(dl_trace_t *t, const dl_value_t *key, const uint64_t *time,
                             dl_read_fn fn, void *ctx, dl_error_t *err) DL_WUR;

/* ---- running -------------------------------------------------------------------------- */
/* Moves staged input into the graph and runs every operator until quiescent: every
 * update that can be processed at the current frontiers is, captures receive their
 * completed times, arrangements are compacted and merged. A callback's error aborts the
 * run and is returned (the graph is then in an unspecified but safe state: free it). */
DL_API int dl_graph_run(dl_graph_t *g, dl_error_t *err) DL_WUR;
/* One bounded slice of a run (for callers that interleave other work): the first call
 * moves staged input in; each call drains queues and lets reduces process the times that
 * are complete (one loop iteration of an iterate, typically); the call that finds nothing
 * left delivers captures, compacts and sets *out_done. dl_graph_run is this in a loop.
 * Input updates staged between the steps of one run wait for the next run. */
DL_API int dl_graph_step(dl_graph_t *g, bool *out_done, dl_error_t *err) DL_WUR;
/* Maintenance while idle: spends up to `fuel` record-moves merging spine batches
 * (physical compaction) without new input. Returns 1 when more work remains, 0 when done. */
DL_API int dl_graph_maintain(dl_graph_t *g, size_t fuel, dl_error_t *err) DL_WUR;
/* The frontier of collection c's updates after the last run: every time not >= some
 * element is complete for c. Copies into out (initialized by the caller to any dim). */
DL_API int dl_coll_frontier(const dl_coll_t *c, dl_antichain_t *out) DL_WUR;

/* Statistics for tests and monitoring. */
typedef struct dl_graph_stats {
    size_t n_ops;            /* operators */
    size_t n_arrangements;   /* arrangements */
    size_t arranged_updates; /* records held in all arrangements' batches */
    size_t arranged_batches; /* batches held in all spines */
    size_t pending_times;    /* (key, time) pairs reduce operators carry forward */
    size_t reduce_touched;   /* records reduce operators read or wrote (cumulative) */
} dl_graph_stats_t;
DL_API void dl_graph_stats(const dl_graph_t *g, dl_graph_stats_t *out);

DL_END_DECLS
#endif
