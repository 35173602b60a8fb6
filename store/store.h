/*
 * store/store.h: the store module's internal API shared by its files (btree.c, schema.c,
 * tx.c, txform.c, db.c, store.c, codec.c). Not included by other modules: they use
 * include/deltalog/store.h.
 *
 * Follows docs/storage.md ("Index structure", "Snapshots") for the representation:
 * a datom key is (e, a, v, tx<<1|added); eight persistent B+trees hold the indices —
 * four over the current state (one entry per present (e,a,v)) and four over the past
 * (pairs of entries: the assertion and the retraction of every datom that was
 * retracted). History = current ∪ past, merged by key.
 */
#ifndef DL_STORE_STORE_H
#define DL_STORE_STORE_H

#include "base/base.h"

#include <deltalog/store.h>
#include <pthread.h>

/* ---- datom keys and orders (btree.c) ------------------------------------------------------ */

typedef struct dl_kd {
    int64_t e;
    int64_t a;
    dl_value_t v;
    uint64_t txop; /* tx << 1 | added */
} dl_kd_t;

#define DL_KD_TX(k)        ((int64_t)((k)->txop >> 1))
#define DL_KD_ADDED(k)     ((bool)((k)->txop & 1))
#define DL_TXOP(tx, added) (((uint64_t)(tx) << 1) | ((added) ? 1u : 0u))

enum { DL_ORD_EAVT = 0, DL_ORD_AEVT = 1, DL_ORD_AVET = 2, DL_ORD_VAET = 3 };

/* Compares the first n (1..4) components of x and y in the order's component order.
 * Inline (always): it is on every path of every index, sort and check. Integer-like
 * values compare by number and interned strings by pointer first; everything else in
 * the value order (dl_value_cmp). */
static inline int dl__cmp64(int64_t x, int64_t y) { return (x > y) - (x < y); }

static inline int dl__kd_vcmp(dl_value_t a, dl_value_t b) {
    if (a.type == b.type && (a.type == DL_T_INT || a.type == DL_T_REF || a.type == DL_T_INSTANT))
        return dl__cmp64(a.as.i, b.as.i);
    if (a.type == b.type && (a.type == DL_T_STRING || a.type == DL_T_KEYWORD) && a.as.s == b.as.s)
        return 0;
    return dl_value_cmp(a, b);
}

static inline __attribute__((always_inline)) int dl__btree_cmp(int order, const dl_kd_t *x,
                                                               const dl_kd_t *y, int n) {
    int c = 0;
    switch (order) {
        case DL_ORD_EAVT:
            if ((c = dl__cmp64(x->e, y->e)) || n < 2 || (c = dl__cmp64(x->a, y->a)) || n < 3 ||
                (c = dl__kd_vcmp(x->v, y->v)))
                return c;
            break;
        case DL_ORD_AEVT:
            if ((c = dl__cmp64(x->a, y->a)) || n < 2 || (c = dl__cmp64(x->e, y->e)) || n < 3 ||
                (c = dl__kd_vcmp(x->v, y->v)))
                return c;
            break;
        case DL_ORD_AVET:
            if ((c = dl__cmp64(x->a, y->a)) || n < 2 || (c = dl__kd_vcmp(x->v, y->v)) || n < 3 ||
                (c = dl__cmp64(x->e, y->e)))
                return c;
            break;
        default: /* VAET */
            if ((c = dl__kd_vcmp(x->v, y->v)) || n < 2 || (c = dl__cmp64(x->a, y->a)) || n < 3 ||
                (c = dl__cmp64(x->e, y->e)))
                return c;
            break;
    }
    if (n < 4)
        return 0;
    return (x->txop > y->txop) - (x->txop < y->txop);
}

typedef struct dl_bnode dl_bnode_t;

/* A persistent B+tree. Invariant: keys unique under dl__btree_cmp(order, ., ., ncmp);
 * nodes whose epoch is older than the writer's epoch are immutable (shared with
 * published snapshots) and are copied before a change (path copying). */
typedef struct dl_btree {
    dl_bnode_t *root; /* never NULL once initialized */
    uint8_t order;    /* DL_ORD_* */
    uint8_t ncmp;     /* 3 for current trees (tx not part of identity), 4 for past trees */
    int64_t count;    /* number of keys */
} dl_btree_t;

/* A retired node or object, freed once no live version has epoch < epoch. */
typedef struct dl_retired {
    void *p;
    uint64_t epoch;
} dl_retired_t;

/* The writer's copy-on-write context. */
typedef struct dl_btctx {
    uint64_t epoch;    /* nodes of this epoch are private to the writer */
    dl_retired_t *ret; /* retire list, nondecreasing epochs */
    size_t n_ret, cap_ret;
    /* Freed nodes kept for reuse, per kind (0 leaf, 1 internal), linked through their
     * first word: path copying replaces a few nodes per transaction and frees as many a
     * transaction later, so the writer recycles them instead of going through malloc.
     * Only the writer's paths use it (never the bulk builds, which may run on two
     * threads). */
    void *pool[2];
    size_t n_pool[2];
} dl_btctx_t;

int dl__btree_init(dl_btctx_t *c, dl_btree_t *t, int order, int ncmp) DL_WUR;
/* 0 inserted, 1 already present (nothing changed), DL_ENOMEM. */
int dl__btree_insert(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) DL_WUR;
/* 0 removed, 1 absent, DL_ENOMEM. */
int dl__btree_delete(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) DL_WUR;
/* The same without the probe, for callers that know k is absent (insert) or present
 * (delete): the transaction plan guarantees it. Breaking that promise corrupts the tree. */
int dl__btree_insert_new(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) DL_WUR;
int dl__btree_delete_present(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) DL_WUR;
/* Inserts n absent keys sorted ascending in t's order (a sequential run touches each leaf
 * about once). */
int dl__btree_insert_run(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *keys, size_t n) DL_WUR;
/* Frees every node of epoch c->epoch reachable from root (the writer's private nodes),
 * used to abandon a failed transaction. */
void dl__btree_discard(dl_btctx_t *c, dl_bnode_t *root);
/* Frees a whole tree regardless of epochs (store teardown: nodes shared with other trees
 * must not exist, i.e. only for the last remaining version). */
void dl__btree_free_all(dl_bnode_t *root, uint64_t min_epoch);
/* Retires p (a node or other heap block) at the context's epoch. */
int dl__btctx_retire(dl_btctx_t *c, void *p) DL_WUR;
/* Frees retired blocks with epoch <= upto. */
void dl__btctx_reclaim(dl_btctx_t *c, uint64_t upto);
/* Frees every retired node that no live version can reach: live holds the epochs of the
 * live versions, ascending. Only nodes are ever retired. */
void dl__btctx_reclaim_live(dl_btctx_t *c, const uint64_t *live, size_t n_live);
void dl__btctx_fini(dl_btctx_t *c);
/* Debug validator: sortedness, fill and separator invariants; returns the key count or -1. */
int64_t dl__btree_check(const dl_btree_t *t);

/* Bulk loading from keys in the tree's order, bottom-up (no per-key descent): begin
 * allocates the leaves for n keys, build_slot(pos) is where the pos-th key (0-based, in
 * the tree's order) goes, and every slot must be written before end, which builds the
 * internal levels and replaces t's nodes (freeing them: only for trees no version reads,
 * i.e. during recovery). abort frees a build that is not ended. */
typedef struct dl_bbuild {
    dl_btctx_t *c;
    size_t n, n_leaves, q, r;
    dl_bnode_t **nodes;
} dl_bbuild_t;
int dl__btree_build_begin(dl_btctx_t *c, dl_bbuild_t *b, size_t n) DL_WUR;
dl_kd_t *dl__btree_build_slot(dl_bbuild_t *b, size_t pos);
/* The same, plus *room: the slots pos, pos+1, ... that follow contiguously in one leaf. */
dl_kd_t *dl__btree_build_at(dl_bbuild_t *b, size_t pos, size_t *room);
int dl__btree_build_end(dl_bbuild_t *b, dl_btree_t *t) DL_WUR;
void dl__btree_build_abort(dl_bbuild_t *b);

#define DL_BT_MAXDEPTH 24
typedef struct dl_btcur {
    int order, depth;
    struct {
        const dl_bnode_t *n;
        uint32_t i;
    } st[DL_BT_MAXDEPTH];
    bool valid;
} dl_btcur_t;

/* Positions on the first key >= k comparing the first n components (n 0: the first key). */
void dl__btree_seek(dl_btcur_t *cur, const dl_btree_t *t, const dl_kd_t *k, int n);
/* As dl__btree_seek, cheap when the target lies in the cursor's current leaf (forward
 * probes of sorted keys); cur must be a cursor of t or fresh. */
void dl__btree_cur_seek(dl_btcur_t *cur, const dl_btree_t *t, const dl_kd_t *k, int n);
/* The key under the cursor (NULL at the end) and advance. */
const dl_kd_t *dl__btree_cur_get(const dl_btcur_t *cur);
void dl__btree_cur_next(dl_btcur_t *cur);
/* Finds the key equal to k in the first n components; NULL when absent. */
const dl_kd_t *dl__btree_find(const dl_btree_t *t, const dl_kd_t *k, int n);

/* ---- schema (schema.c) -------------------------------------------------------------------- */

/* Built-in entity ids (docs/storage.md "Schema attributes"). */
enum {
    DL_A_IDENT = 1,
    DL_A_VALUETYPE = 2,
    DL_A_CARDINALITY = 3,
    DL_A_UNIQUE = 4,
    DL_A_INDEX = 5,
    DL_A_ISCOMPONENT = 6,
    DL_A_NOHISTORY = 7,
    DL_A_DOC = 8,
    DL_A_TIMEDIM = 9,
    /* enum entities */
    DL_E_TYPE_STRING = 20,
    DL_E_TYPE_KEYWORD,
    DL_E_TYPE_LONG,
    DL_E_TYPE_DOUBLE,
    DL_E_TYPE_BOOLEAN,
    DL_E_TYPE_INSTANT,
    DL_E_TYPE_REF,
    DL_E_TYPE_UUID,
    DL_E_CARD_ONE,
    DL_E_CARD_MANY,
    DL_E_UNIQUE_IDENTITY,
    DL_E_UNIQUE_VALUE,
    DL_E_BUILTIN_END,
    DL_FIRST_USER_ID = 1000 /* first id the allocator hands out */
};

/* One attribute or dimension: its schema and (in the per-version stats) its statistics. */
typedef struct dl_attr {
    int64_t id;
    const dl_sym_t *ident; /* NULL for a plain entity slot that is not an attribute */
    dl_type_t type;
    bool many, indexed, component, no_history, is_attr, is_dim;
    int unique; /* 0, DL_UNIQUE_IDENTITY, DL_UNIQUE_VALUE */
    int dim;    /* 1.. for a dimension */
} dl_attr_t;

/* An immutable schema shared by versions (reference counted with atomics). Invariant:
 * attrs sorted by id; by_ident maps ident symbols to indexes into attrs. */
typedef struct dl_schema {
    int refs;
    dl_attr_t *attrs;
    size_t n_attrs;
    const dl_sym_t **hkeys; /* open-addressing table of ident symbols, cap_h slots */
    uint32_t *hvals;        /* index into attrs */
    size_t cap_h;
    int n_dims;
    int64_t *dim_ids; /* n_dims dimension entity ids, index = coordinate - 1 */
    int32_t *hid;     /* open-addressing table of attribute ids (cap_h slots): index into
                       * attrs + 1, 0 empty; Fibonacci hashing with hid_shift */
    int hid_shift;
} dl_schema_t;

int dl__schema_bootstrap(dl_schema_t **out) DL_WUR;
dl_schema_t *dl__schema_ref(dl_schema_t *s);
void dl__schema_unref(dl_schema_t *s);
const dl_attr_t *dl__schema_by_id(const dl_schema_t *s, int64_t id);
const dl_attr_t *dl__schema_by_ident(const dl_schema_t *s, const char *ident, size_t n);
/* The index of attribute id in attrs, or -1 (on every datom's path: inline, O(1)). */
static inline long dl__schema_slot(const dl_schema_t *s, int64_t id) {
    size_t m = s->cap_h - 1;
    for (size_t i = (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> s->hid_shift);;
         i = (i + 1) & m) {
        int32_t v = s->hid[i];
        if (!v)
            return -1;
        if (s->attrs[v - 1].id == id)
            return v - 1;
    }
}
/* The built-in datoms that describe the built-in schema (installed at tx 0). */
size_t dl__schema_builtin_datoms(dl_kd_t *out, size_t cap);
/* Builds a schema from the entity datoms of candidate schema entities: for each entity id
 * in ids, its current (post-transaction) datoms on :db/ attributes in `datoms`. */
typedef struct dl_schema_ent {
    int64_t id;
    const dl_sym_t *ident;
    int64_t valuetype, cardinality, unique; /* enum entity ids, 0 when absent */
    bool index, component, no_history, timedim, has_ident;
} dl_schema_ent_t;
/* A schema from its attribute table (a checkpoint's copy; attrs in any order). */
int dl__schema_from_attrs(const dl_attr_t *attrs, size_t n, dl_schema_t **out) DL_WUR;
int dl__schema_derive(const dl_schema_t *old, const dl_schema_ent_t *ents, size_t n,
                      dl_schema_t **out, dl_error_t *err) DL_WUR;

/* ---- value counts (vcount.c) ---- */

/* Per-attribute counts of current values for attributes no index orders by value. */
typedef struct dl_vcount {
    struct dl_vcmap **maps; /* sorted by attribute id; each map stays where it is */
    size_t n, cap;
    bool oom; /* a map could not even be created: all counts are unreliable */
} dl_vcount_t;
/* Adds d (+1/-1) to the count of value v of attribute a; *out_transition is +1 when the
 * value appears, -1 when it disappears. DL_ENOMEM marks the attribute lost. */
int dl__vcount_add(dl_vcount_t *vc, int64_t a, dl_value_t v, int d, int *out_transition) DL_WUR;
/* The same in two steps, for a run of changes: the map of attribute a (created when
 * create; NULL when absent or out of memory; the pointer stays valid until
 * dl__vcount_free), then dl__vcount_add_in on it. */
struct dl_vcmap *dl__vcount_map(dl_vcount_t *vc, int64_t a, bool create);
int dl__vcount_add_in(dl_vcount_t *vc, struct dl_vcmap *m, dl_value_t v, int d,
                      int *out_transition) DL_WUR;
bool dl__vcount_map_lost(const dl_vcount_t *vc, const struct dl_vcmap *m);
/* Forgets attribute a's counts; its distinct-values statistic is then computed on demand. */
void dl__vcount_lose(dl_vcount_t *vc, int64_t a);
bool dl__vcount_lost(dl_vcount_t *vc, int64_t a);
void dl__vcount_free(dl_vcount_t *vc);

/* ---- versions, store, snapshots (store.c, db.c) ------------------------------------------- */

enum { DL_T_CUR = 0, DL_T_PAST = 4, DL_N_TREES = 8 };

typedef struct dl_stat {
    int64_t datoms, entities, values;
} dl_stat_t;

/* One transaction's record in the store's tx table (immortal until the store is freed). */
typedef struct dl_txrec {
    uint64_t *time; /* n_time coordinates */
    size_t n_time;
    dl_change_t *changes; /* n_changes, retractions first, each group in EAVT order */
    size_t n_changes;
    int64_t next_id; /* the entity allocator after the transaction */
    bool advance;    /* a frontier advance (no changes; time[1..] is the new frontier) */
    bool bulk;       /* time and changes live in one of the store's bulk blocks */
} dl_txrec_t;

#define DL_TXCHUNK_BITS 14
#define DL_TXDIR_SIZE   (1u << 16)

typedef struct dl_version dl_version_t;
/* Invariant: immutable once published. Lives while refs > 0; the live list is ordered by
 * epoch and guarded by store->vmu. */
struct dl_version {
    uint64_t epoch;
    uint64_t basis_tx;
    int64_t next_id;
    dl_btree_t trees[DL_N_TREES];
    dl_schema_t *schema;
    dl_stat_t *stats;   /* schema->n_attrs entries, parallel to schema->attrs */
    uint64_t *frontier; /* schema->n_dims + 1 coordinates */
    int refs;           /* guarded by store->vmu */
    dl_version_t *prev, *next;
    struct dl_store *store;
};

struct dl_store {
    pthread_mutex_t wmu; /* the writer lock */
    pthread_mutex_t vmu; /* guards the version list, refcounts and `current` */
    pthread_mutex_t lmu; /* guards the listener list; held while listeners run */
    pthread_cond_t pub_cv;
    dl_version_t *current; /* the latest published version */
    dl_version_t *vhead, *vtail;
    int refs; /* 1 for the open store + 1 per live version; guarded by vmu */

    /* writer state (under wmu) */
    dl_btctx_t ctx;
    dl_btree_t trees[DL_N_TREES];
    dl_schema_t *schema;
    dl_stat_t *stats;
    uint64_t *frontier;
    dl_stat_t *prev_stats; /* kept by apply_schema until the transaction ends (rollback) */
    uint64_t *prev_frontier;
    dl_schema_t *prev_schema;
    int64_t next_id;
    uint64_t last_tx;
    uint64_t published_tx; /* guarded by vmu */
    /* Committed but not yet published transactions (published_tx, queued_tx], each with
     * its version and log position, in a ring indexed by tx (guarded by vmu; only the
     * writer, holding wmu, pushes). See store.c design note 7. */
    struct dl_pending {
        dl_version_t *v;
        uint64_t lsn;
    } * pend;
    size_t cap_pend;     /* a power of two, or 0 */
    uint64_t queued_tx;  /* the last transaction pushed (guarded by vmu) */
    uint64_t durable_tx; /* every tx <= this is durable (guarded by vmu) */
    uint64_t fail_from;  /* 0, or the first transaction that failed to become durable */
    bool publishing;     /* a thread is publishing the next transaction (guarded by vmu) */
    bool failed;         /* a log write failed: the store refuses writes */
    bool recovering;     /* replaying at open: no versions until the end (no readers) */
    bool closing;

    dl_txrec_t **txdir; /* DL_TXDIR_SIZE chunk pointers */

    struct {
        dl_store_listener_fn fn;
        void *ctx;
        int id;
    } * listeners;
    size_t n_listeners, cap_listeners;
    int next_listener_id;

    void *log;                    /* dl_log_t * when durable */
    struct dl_txscratch *scratch; /* tx.c's reusable buffers (writer only) */
    struct dl_durable *durable;   /* durable.c's state (background checkpoints), or NULL */
    dl_kd_t *abuf;                /* store.c's reusable sort buffer for assertions */
    dl_vcount_t vc;               /* value counts of attributes without a value index */
    size_t precise_at;            /* retire-list length that triggers a precise reclaim */
    size_t cap_abuf;
    void **bulk; /* blocks holding tx records (time and changes): loaded from a
                  * checkpoint, or filled by commits (the arena below) */
    size_t n_bulk;
    char *rec_arena; /* the bulk block commits append their records' time and changes to */
    size_t rec_used, rec_cap;
};
/* The writable slot of transaction tx (NULL: out of memory or beyond the table). */
dl_txrec_t *dl__store_txrec_slot(struct dl_store *s, uint64_t tx);
/* Keeps block p (dl_malloc'd) until the store is freed; DL_ENOMEM frees it at once. */
int dl__store_keep_bulk(struct dl_store *s, void *p) DL_WUR;
void dl__tx_scratch_free(struct dl_txscratch *x);

const dl_txrec_t *dl__store_txrec(const struct dl_store *s, uint64_t tx);
/* Creates the empty in-memory store (built-in schema at tx 0). */
int dl__store_new(struct dl_store **out, dl_error_t *err) DL_WUR;
void dl__store_version_unref(dl_version_t *v);
/* The durable glue (durable.c): log hooks called by store.c. */
int dl__log_hook_append(struct dl_store *s, uint64_t tx, const dl_txrec_t *rec, uint64_t *out_lsn,
                        dl_error_t *err) DL_WUR;
int dl__log_hook_sync(struct dl_store *s, uint64_t lsn, dl_error_t *err) DL_WUR;
void dl__store_close_log(struct dl_store *s);
/* Recovery mode: replayed transactions apply in place (one epoch, no versions); the end
 * publishes one version of the result. */
void dl__store_recovery_begin(struct dl_store *s);
int dl__store_recovery_end(struct dl_store *s, dl_error_t *err) DL_WUR;
/* Test hooks (durable.c): the checkpoint payload (version 2) of the current database
 * (*out new, dl_free), and loading one into a fresh store from dl__store_new. */
int dl__durable_encode_indices(struct dl_store *s, void **out, size_t *out_n,
                               dl_error_t *err) DL_WUR;
int dl__durable_load_indices(struct dl_store *s, uint64_t covers, const void *blob, size_t n,
                             dl_error_t *err) DL_WUR;
/* dl_store_open over file system io (NULL: POSIX), e.g. store/io.h's fault-injecting
 * in-memory one (tests). */
struct dl_io;
int dl__store_open_io(const char *dir, const dl_store_options_t *opts, const struct dl_io *io,
                      struct dl_store **out, dl_error_t *err) DL_WUR;
/* Called after each published commit (outside the writer lock). */
void dl__durable_after_commit(struct dl_store *s, uint64_t tx);
/* Applies and publishes a replayed transaction (recovery; no listeners, no log). */
struct dl_txplan;
int dl__store_apply_replayed(struct dl_store *s, struct dl_txplan *p, uint64_t tx,
                             dl_error_t *err) DL_WUR;

/* A snapshot view: a version plus time filters. */
struct dl_db {
    dl_version_t *v;
    int refs;
    bool history;
    int asof_kind; /* 0 none, 1 tx number, 2 point */
    uint64_t asof_tx;
    uint64_t *point;
    size_t n_point;
    uint64_t since_tx; /* 0: none */
};

/* ---- transactions (tx.c, txform.c) -------------------------------------------------------- */

/* Where an op came from, for error messages. */
typedef struct dl_opsrc {
    const char *text; /* EDN/JSON input (borrowed) or NULL for C ops */
    size_t len;
    int64_t offset;
    int line, column;
    size_t index; /* index of the top-level form */
    int json;     /* 1 when the op came from the JSON form */
    int pair;     /* 1: a map value [kw x] read as a lookup ref; two values if the attribute
                   * turns out to be a cardinality-many non-ref attribute (tx.c) */
} dl_opsrc_t;

/* The parsed transaction: ops, with sources, and coordinates. */
typedef struct dl_txdata {
    dl_tx_op_t *ops;
    dl_opsrc_t *src;
    size_t n, cap;
    dl_tx_coord_t *coords;
    size_t n_coords, cap_coords;
    dl_arena_t *arena;
    int gen_tempids;   /* counter for the implicit tempids of nested maps */
    bool want_tempids; /* fill the plan's tempid map (a report was asked for) */
} dl_txdata_t;

int dl__txform_edn(const char *text, size_t len, dl_txdata_t *out, dl_error_t *err) DL_WUR;
int dl__txform_json(const char *text, size_t len, dl_txdata_t *out, dl_error_t *err) DL_WUR;
/* The same from an already decoded JSON value (a jansson array; not changed). */
int dl__txform_json_value(const struct json_t *top, dl_txdata_t *out, dl_error_t *err) DL_WUR;
int dl__txdata_push(dl_txdata_t *d, const dl_tx_op_t *op, const dl_opsrc_t *src) DL_WUR;
void dl__txdata_fini(dl_txdata_t *d);

/* Reports an error for op i of d with its position. Returns code. */
int dl__tx_error(dl_error_t *err, int code, const dl_txdata_t *d, size_t i, const char *fmt, ...)
    DL_PRINTF(5, 6);

/* The outcome of resolving a transaction against the writer's state. */
typedef struct dl_txplan {
    dl_kd_t *retract; /* current datoms to retract (with their assertion tx) */
    size_t n_retract, cap_retract;
    dl_kd_t *assert; /* datoms to assert */
    size_t n_assert, cap_assert;
    dl_tempid_t *tempids;
    size_t n_tempids;
    uint64_t *time; /* coordinates of the tx's dimensions (index = dim), [0] unused */
    size_t n_time;
    bool *time_given;
    dl_schema_t *new_schema; /* non-NULL when the schema changes */
    bool borrowed;           /* retract/assert belong to the store's scratch buffers */
    bool time_borrowed;      /* time/time_given too */
    int64_t next_id;         /* allocator after the transaction */
    bool advance;            /* a frontier advance (dl_store_advance or its replay) */
} dl_txplan_t;

int dl__tx_plan(struct dl_store *s, dl_txdata_t *d, dl_txplan_t *p, dl_error_t *err) DL_WUR;
void dl__txplan_fini(dl_txplan_t *p);

/* Applies a validated plan (or a replayed one) to the writer's trees and stats, records
 * the tx, publishes the version and calls the listeners. */
int dl__store_commit(struct dl_store *s, dl_txplan_t *p, dl_tx_report_t *report,
                     dl_error_t *err) DL_WUR;

/* Schema entity records for ids touched by a plan, from the writer state plus the plan. */
int dl__tx_schema_entities(struct dl_store *s, const dl_txplan_t *p, dl_schema_ent_t **out,
                           size_t *out_n, dl_error_t *err) DL_WUR;

#endif
