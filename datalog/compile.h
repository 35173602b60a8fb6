/*
 * compile.h: the private interface between the compiler (compile.c) and live queries
 * (live.c): the state of one compiled query, which owns a dataflow graph.
 * Not API: include/deltalog/datalog.h is. Design: docs/datalog.md "Compilation".
 */
#ifndef DL_DATALOG_COMPILE_H
#define DL_DATALOG_COMPILE_H

#include "datalog/datalog.h"

#include <deltalog/dataflow.h>

/* How a source of a compiled query follows the store (dl_live_source_t.kind). */
enum { DL__SRC_ABSENT = -1 };

/* (e, v) -> the transaction that asserted it, for the tx column of a current source. */
typedef struct dl__txmap {
    dl_value_t *keys; /* 2 per slot */
    int64_t *tx;
    uint8_t *state; /* 0 empty, 1 used, 2 deleted */
    size_t n_used, n_slots;
} dl__txmap_t;

/* A base attribute input of an engine (dl_engine_t): one per (attribute, shape) read by
 * any of its queries, arranged by entity (arr_e: key e, val the rest); its collection
 * (arr_e's) is what patterns read, so a query added later receives the contents and
 * the arrangements over it (by entity, by value) are shared by every query. Each shared
 * arrangement is held by a trace at the engine's last transaction, so that a new reader
 * receives it at complete times. refs: live queries reading it. */
typedef struct dl__eattr {
    int64_t id;
    const char *ident;
    bool wide;
    dl_input_t *in;
    dl_arr_t *arr_e;
    dl_coll_t *coll;
    dl_arr_t *arrs[4]; /* shared arrangements over coll (arr_e first), each traced */
    dl_trace_t *traces[4];
    size_t n_arrs;
    dl__txmap_t txmap; /* wide: (e, v) -> asserting transaction */
    size_t refs;
    unsigned value_scans; /* patterns [?e :a v] compiled over it (compile.c by_value) */
} dl__eattr_t;

/* One (source, attribute, shape) the query reads: an input collection of [e v] rows
 * (narrow) or [e v tx added] rows (wide: patterns binding tx or added). */
typedef struct dl__live_attr {
    int64_t id;
    const char *ident; /* immortal (the store interns idents) */
    int src;           /* index into the query's sources */
    bool wide;
    dl_input_t *in;
    dl_coll_t *coll;   /* what patterns read (root): the input, distinct for history */
    dl__txmap_t txmap; /* wide inputs of a current source */
    dl__eattr_t *ea;   /* engine queries: the engine's input (in is NULL) */
} dl__live_attr_t;

/* A root collection entered into an iterate scope (built once, reused). */
typedef struct dl__live_entered {
    dl_scope_t *scope;
    dl_coll_t *from;
    dl_coll_t *coll;
} dl__live_entered_t;

/* A pattern's relation, built once per (scope, attribute, constants, shape) and reused by
 * every identical pattern of the query ("identical sub-plans are built once"). */
typedef struct dl__live_memo {
    dl_scope_t *scope;
    int src;
    int64_t attr;
    uint8_t ek, vk;    /* term kinds of e and v (BLANK, VAR, CONST) */
    bool same;         /* e and v are the same variable */
    dl_value_t ec, vc; /* the constants */
    dl_coll_t *coll;   /* the relation: columns e then v for the VAR positions */
} dl__live_memo_t;

/* One EXPLAIN line: its text and, once known, the collection it describes (root scope
 * collections are counted by EXPLAIN ANALYZE). */
typedef struct dl__live_line {
    char *text; /* arena */
    int depth;
    dl_coll_t *coll;
    int64_t actual; /* rows at the last completed time (analyze) */
    bool counted;
} dl__live_line_t;

/* Invariants: every input of the graph is in attrs, consts or arg_in; after dl_live_new
 * the constant inputs are closed and every attribute input's frontier is last_tx + 1;
 * `acc` holds the accumulated result (the sum of every diff captured from `out`). */
struct dl_live {
    const dl_query_t *q; /* borrowed: must outlive the live query */
    dl_engine_t *engine; /* engine queries: the graph is the engine's (not owned) */
    const dl_db_t *edb;  /* engine queries, while compiling: loads new base attributes */
    int *src_kind;       /* per q->srcs entry: DL_LIVE_CURRENT/HISTORY/FIXED or ABSENT */
    dl_arena_t arena;    /* builder contexts handed to operators (live as long as g) */
    dl_graph_t *g;
    dl__live_attr_t *attrs;
    size_t n_attrs, cap_attrs;
    dl_input_t **consts; /* fixed inputs: loaded at time 0, closed at start */
    size_t n_consts, cap_consts;
    dl_input_t *arg_in[64]; /* per :in binding, in order */
    size_t n_arg_in;
    dl__live_entered_t *entered;
    size_t n_entered, cap_entered;
    dl_coll_t **rule_out; /* per (rule, source): its SCC's fixpoint in the root, or NULL */
    dl_coll_t *unit;      /* root unit relation, once made */
    dl_coll_t *out;       /* the result collection: rows of the :find elements */
    dl_capture_t *cap;
    uint64_t entity_vars[64]; /* variables in entity positions (args: long -> ref) */
    dl__live_memo_t *memo;    /* pattern relations built so far (reused) */
    size_t n_memo, cap_memo;
    dl__live_line_t *lines; /* EXPLAIN */
    size_t n_lines, cap_lines;
    bool analyze;       /* count the rows of each plan line's collection */
    uint64_t coll_cols; /* find columns holding a collection aggregate's EDN text */
    /* engine queries: the arguments text (a copy), for dl_engine_query's reads of a
     * maintained result (live.c engine_peek) */
    char *args_text;
    size_t args_len;
    uint64_t last_tx; /* the last transaction applied */
    int failed;       /* a run failed: the live query is unusable (the code) */
    /* accumulated result: open addressing over rows (n_find values each) */
    size_t arity;
    dl_value_t *rows;
    int64_t *counts;
    size_t n_rows, cap_rows;
    uint32_t *slots;
    size_t n_slots;
    bool no_result; /* dl_live_drop_result: the owner keeps the result; nothing above is kept */
    /* the change of the last apply (consolidated) */
    dl_value_t *ch_rows;
    int64_t *ch_diffs;
    uint64_t *ch_times; /* dims coordinates per change (multi-dimensional queries only) */
    size_t n_ch, cap_ch;
    size_t dims; /* time coordinates of the graph: 1, or dl_live_new_dims's n_dims */
    /* One-shot compilation (dl_query_run*, dl_engine_query): the graph is run once at the
     * sources' snapshot and read, so patterns may read the snapshot itself: index-range
     * scans as constant inputs and lookup joins into its indexes (snapshot.c; docs/datalog.md
     * "One-shot plans"). snap: per source, while compiling only (borrowed); NULL for live
     * queries. snap_tx: the time of the snapshot's rows. probes: the lookup joins'
     * cursors (each holds its database), freed with the query. */
    const dl_db_t *const *snap;
    uint64_t snap_tx;
    struct dl__probe **probes;
    size_t n_probes, cap_probes;
    uint64_t dim_frontier[DL_TIME_MAX_ROOT_DIM]; /* dims > 1: the inputs' frontier */
};

/* Builds the dataflow of q into L->g (L->g, L->arena, L->explain initialized). The
 * attributes are resolved against db's schema; statistics of db drive the join order.
 * DL_EUNSUPPORTED for what the compiler does not handle (see compile.c). */
/* One graph shared by every query of a store (include/deltalog/datalog.h "engine"). */
struct dl_engine {
    dl_graph_t *g;
    dl__eattr_t **attrs; /* base attributes (each heap-allocated: pointers stay valid) */
    size_t n_attrs, cap_attrs;
    dl_live_t **lives; /* its live queries */
    size_t n_lives, cap_lives;
    uint64_t last_tx;
    int failed;
    bool keep_base;
    /* time coordinates of the graph: 1 (dl_engine_new), or the store's first `dims`
     * coordinates [tx, dim1, ...] (dl_engine_new_dims); frontier: the inputs' frontier,
     * [last_tx + 1, f1, ...] (docs/datalog.md "Multi-dimensional engines") */
    size_t dims;
    uint64_t frontier[DL_TIME_MAX_ROOT_DIM];
};

/* Engine queries (live.c): the base collection of an attribute in L's engine, created
 * and loaded on first use (a reference is taken for L); and notice that compile.c arranged
 * collection src as a: a base collection's arrangements are shared and kept. */
dl_coll_t *dl__engine_attr(dl_live_t *L, int64_t id, const char *ident, bool wide, dl_error_t *err);
int dl__engine_note_arr(dl_live_t *L, dl_coll_t *src, dl_arr_t *a, dl_error_t *err) DL_WUR;
/* Counts a pattern [?e :a v] (constant value) over base collection src; true when it is
 * not the first: the pattern then reads the by-value arrangement (an attribute read by a
 * constant value again is worth indexing by value; the first reader filters). */
bool dl__engine_value_scan(dl_live_t *L, dl_coll_t *src);
/* Releases an engine query: its capture, its base references, its operators. */
void dl__engine_release(dl_live_t *L);

int dl__compile_query(dl_live_t *L, const dl_query_t *q, const dl_db_t *db, dl_error_t *err) DL_WUR;

/* EXPLAIN (ANALYZE) of q over srcs: the live plan, or with oneshot the plan that
 * dl_query_run_sources runs (live.c). *out: new (dl_free). */
int dl__query_explain_sources(const dl_query_t *q, const dl_live_source_t *srcs, size_t n_srcs,
                              const char *args, size_t args_len, bool analyze, bool oneshot,
                              char **out, dl_error_t *err) DL_WUR;

/* ---- snapshot reads of one-shot plans (snapshot.c) ---------------------------------------- */
/* Where a component of a pattern's datom comes from in a scan or a lookup. */
enum { DL__SNAP_FREE = 0, DL__SNAP_CONST = 1, DL__SNAP_KEY = 2 };
/* One index range of a snapshot, given by the pattern [e :a v]: e and v each free, a
 * constant, or (lookups) the probe key's column e_col / v_col. Yields the free components
 * that are variables (yield_e, yield_v; e as a ref), each datom once; with neither, one
 * empty row when the range is not empty (an existence test). */
typedef struct dl__snapq {
    int64_t a;
    int idx;            /* dl_index_t: AEVT when e is given, else AVET (indexed) or VAET (refs) */
    int e_kind, v_kind; /* DL__SNAP_* */
    dl_value_t ec, vc;  /* constants */
    uint32_t e_col, v_col; /* key columns */
    bool yield_e, yield_v;
    bool v_filter; /* AEVT over the whole attribute with v constant: filter by vc */
    bool single;   /* at most one datom per range (e given, cardinality one) */
} dl__snapq_t;
/* A lookup join's cursor: the query and an iterator over its database (new; freed by
 * dl__snap_probe_free). */
typedef struct dl__probe {
    dl__snapq_t sq;
    dl_iter_t *it;
    /* A fused chain (several patterns probed with the same key, one operator): the next
     * stage (borrowed: each stage is in the query's probes and freed there), and this
     * stage's rows for the current key while the chain is walked. */
    struct dl__probe *then;
    dl_value_t *rows;
    size_t n_rows, cap_rows;
} dl__probe_t;
int dl__snap_probe_new(const dl_db_t *db, const dl__snapq_t *sq, dl__probe_t **out,
                       dl_error_t *err) DL_WUR;
void dl__snap_probe_free(dl__probe_t *p);
/* The lookup callback (dl_lookup_fn) of a dl__probe_t. */
int dl__snap_probe_fn(void *ctx, const dl_value_t *key, dl_lookup_sink_t *out);
/* Loads the rows of range sq (no key components) of db into input in at time t. */
int dl__snap_scan(const dl_db_t *db, const dl__snapq_t *sq, dl_input_t *in, const uint64_t *t,
                  dl_error_t *err) DL_WUR;

#endif
