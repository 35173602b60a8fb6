/*
 * store.c: the store object: opening and closing, applying a validated transaction plan
 * to the writer's indices, publishing immutable versions, the transaction table, the
 * change stream and time-dimension frontiers (docs/storage.md "Snapshots",
 * "Transactions", "Time dimensions").
 *
 * Design notes.
 *  1. One writer at a time holds wmu; it owns trees/schema/stats/frontier/next_id. Readers
 *     only see published versions; a version is immutable (btree.c design note 1).
 *  2. Commit: plan (tx.c) → apply (private nodes of the current epoch) → build the
 *     version → bump the epoch → (durable: log append under wmu, fsync outside it) →
 *     publish in transaction order (vmu + pub_cv: tx N waits for N-1) → listeners.
 *  3. A failure before the version is built abandons the private nodes and restores the
 *     roots and counters of the last built version (btree.c design note 3): the indices,
 *     the transaction count and the log are unchanged.
 *  4. Reclamation: retired nodes of epoch r are freed once the oldest live version has
 *     epoch >= r. Versions are live while referenced by the store (the newest published
 *     and any built but not yet published) or by snapshots.
 *  5. Recovery (dl__store_recovery_begin/_end): replayed transactions apply in place in one
 *     epoch with no versions (no reader can exist yet); the end builds and publishes one.
 *  6. Statistics: datoms and distinct entities per attribute are counted as changes apply;
 *     distinct values come from AVET/VAET neighbours or vcount.c's value counts, which are
 *     undone with the rest when a transaction fails.
 *  7. Commit without waiting (dl_store_transact_*_begin): apply and append under wmu, then
 *     queue (version, lsn) in the pending ring; dl_store_wait_durable(tx) syncs the log
 *     once up to tx's record (covering every earlier record) and publishes the queue up
 *     to tx in order. The blocking calls are begin + wait. Any waiter may publish others'
 *     durable transactions (one publisher at a time); a failed sync fails every queued
 *     transaction not yet known durable (fail_from) and closes the store for writing.
 *  8. Transaction records (time vector and changes) are cut from 64 KiB bulk blocks
 *     (rec_alloc), never freed one by one: a failed transaction gives its record back
 *     (rec_undo: it is the newest allocation), the rest lives as long as the store.
 * It does not parse transaction data (txform.c), resolve it (tx.c) or read (db.c).
 */
#include "store/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the transaction table ------------------------------------------------------------------ */

static dl_txrec_t *txrec_slot(dl_store_t *s, uint64_t tx);

const dl_txrec_t *dl__store_txrec(const dl_store_t *s, uint64_t tx) {
    uint64_t c = tx >> DL_TXCHUNK_BITS;
    if (c >= DL_TXDIR_SIZE || !s->txdir[c])
        return NULL;
    const dl_txrec_t *r = &s->txdir[c][tx & ((1u << DL_TXCHUNK_BITS) - 1)];
    return r->time ? r : NULL;
}

dl_txrec_t *dl__store_txrec_slot(dl_store_t *s, uint64_t tx) { return txrec_slot(s, tx); }

int dl__store_keep_bulk(dl_store_t *s, void *p) {
    void **b = dl_realloc(s->bulk, (s->n_bulk + 1) * sizeof *b);
    if (!b) {
        dl_free(p);
        return DL_ENOMEM;
    }
    b[s->n_bulk++] = p;
    s->bulk = b;
    return 0;
}

/* Room for a record's time vector and changes. Records are never freed one by one (only
 * the newest, when its transaction fails: rec_undo), so they are cut from bulk blocks of
 * 64 KiB (a larger record gets a block of its own): one allocation per many small
 * transactions instead of two per transaction. */
enum { REC_BLOCK = 64 * 1024 };

typedef struct rec_mark {
    char *arena;
    size_t used, cap, n_bulk;
} rec_mark_t;

static void *rec_alloc(dl_store_t *s, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    if (bytes > REC_BLOCK / 4) {
        void *b = dl_malloc(bytes);
        return b && dl__store_keep_bulk(s, b) == 0 ? b : NULL;
    }
    if (s->rec_cap - s->rec_used < bytes) {
        char *b = dl_malloc(REC_BLOCK);
        if (!b || dl__store_keep_bulk(s, b) != 0)
            return NULL;
        s->rec_arena = b;
        s->rec_used = 0;
        s->rec_cap = REC_BLOCK;
    }
    void *p = s->rec_arena + s->rec_used;
    s->rec_used += bytes;
    return p;
}

/* Forgets every record allocation made after mark (a failed transaction's). */
static void rec_undo(dl_store_t *s, const rec_mark_t *m) {
    while (s->n_bulk > m->n_bulk)
        dl_free(s->bulk[--s->n_bulk]);
    s->rec_arena = m->arena;
    s->rec_used = m->used;
    s->rec_cap = m->cap;
}

static dl_txrec_t *txrec_slot(dl_store_t *s, uint64_t tx) {
    uint64_t c = tx >> DL_TXCHUNK_BITS;
    if (c >= DL_TXDIR_SIZE)
        return NULL;
    if (!s->txdir[c] && !(s->txdir[c] = dl_calloc(1u << DL_TXCHUNK_BITS, sizeof(dl_txrec_t))))
        return NULL;
    return &s->txdir[c][tx & ((1u << DL_TXCHUNK_BITS) - 1)];
}

/* ---- versions ------------------------------------------------------------------------------- */

static void store_free(dl_store_t *s);

static void version_free(dl_version_t *v) {
    dl__schema_unref(v->schema);
    dl_free(v); /* stats and frontier live in the same block */
}

/* Drops one reference; caller holds vmu. Returns true when the store itself must be freed. */
static bool version_unref_locked(dl_version_t *v) {
    if (--v->refs > 0)
        return false;
    dl_store_t *s = v->store;
    if (v->prev)
        v->prev->next = v->next;
    else
        s->vhead = v->next;
    if (v->next)
        v->next->prev = v->prev;
    else
        s->vtail = v->prev;
    version_free(v);
    return --s->refs == 0;
}

void dl__store_version_unref(dl_version_t *v) {
    dl_store_t *s = v->store;
    pthread_mutex_lock(&s->vmu);
    bool last = version_unref_locked(v);
    pthread_mutex_unlock(&s->vmu);
    if (last)
        store_free(s);
}

/* Builds a version from the writer state (caller holds wmu) and links it as live. */
static dl_version_t *version_build(dl_store_t *s, uint64_t tx) {
    size_t na = s->schema->n_attrs, nf = (size_t)s->schema->n_dims + 1;
    /* one block: the version, then its statistics, then its frontier */
    size_t off_st = (sizeof(dl_version_t) + 15) & ~(size_t)15;
    size_t off_fr = off_st + (na + 1) * sizeof(dl_stat_t);
    dl_version_t *v = dl_malloc(off_fr + nf * sizeof(uint64_t));
    if (!v)
        return NULL;
    memset(v, 0, sizeof *v);
    v->stats = (dl_stat_t *)((char *)v + off_st);
    v->frontier = (uint64_t *)((char *)v + off_fr);
    memcpy(v->stats, s->stats, na * sizeof *v->stats);
    memcpy(v->frontier, s->frontier, nf * sizeof *v->frontier);
    v->frontier[0] = tx + 1;
    v->epoch = s->ctx.epoch;
    v->basis_tx = tx;
    v->next_id = s->next_id;
    memcpy(v->trees, s->trees, sizeof v->trees);
    v->schema = dl__schema_ref(s->schema);
    v->refs = 1; /* the store's */
    v->store = s;
    pthread_mutex_lock(&s->vmu);
    v->prev = s->vtail;
    if (s->vtail)
        s->vtail->next = v;
    else
        s->vhead = v;
    s->vtail = v;
    s->refs++;
    pthread_mutex_unlock(&s->vmu);
    return v;
}

/* Frees retired nodes no live version can reach (design note 4). Caller holds wmu. */
static void reclaim(dl_store_t *s) {
    pthread_mutex_lock(&s->vmu);
    uint64_t oldest = s->vhead ? s->vhead->epoch : s->ctx.epoch;
    pthread_mutex_unlock(&s->vmu);
    dl__btctx_reclaim(&s->ctx, oldest);
    /* An old snapshot holds the list back: now and then, free what no live version can
     * reach (the writer builds every version, so the list cannot gain one meanwhile). */
    if (s->ctx.n_ret <= s->precise_at || s->ctx.n_ret < 4096)
        return;
    pthread_mutex_lock(&s->vmu);
    size_t n = 0;
    for (dl_version_t *v = s->vhead; v; v = v->next)
        n++;
    uint64_t *live = dl_malloc((n + 1) * sizeof *live);
    n = 0;
    for (dl_version_t *v = s->vhead; live && v; v = v->next)
        live[n++] = v->epoch;
    pthread_mutex_unlock(&s->vmu);
    if (live)
        dl__btctx_reclaim_live(&s->ctx, live, n);
    dl_free(live);
    s->precise_at = 2 * s->ctx.n_ret;
}

/* Publishes v (built for transaction tx) in transaction order and calls the listeners with
 * commit (may be NULL when there are none to call). Takes the store's reference on v. */
static void publish(dl_store_t *s, dl_version_t *v, const dl_commit_t *commit) {
    pthread_mutex_lock(&s->vmu);
    while (s->published_tx + 1 < v->basis_tx)
        pthread_cond_wait(&s->pub_cv, &s->vmu);
    dl_version_t *old = s->current;
    s->current = v;
    bool last = old ? version_unref_locked(old) : false;
    pthread_mutex_unlock(&s->vmu);
    (void)last; /* the store holds its own reference while open */
    if (commit) {
        pthread_mutex_lock(&s->lmu);
        for (size_t i = 0; i < s->n_listeners; i++)
            s->listeners[i].fn(s->listeners[i].ctx, commit);
        pthread_mutex_unlock(&s->lmu);
    }
    /* before the turn passes: dl_store_close waits for it, so the store is still whole */
    if (s->durable && commit)
        dl__durable_after_commit(s, v->basis_tx);
    pthread_mutex_lock(&s->vmu);
    s->published_tx = v->basis_tx;
    if (s->queued_tx < v->basis_tx) /* recovery: replayed, durable, never queued */
        s->queued_tx = s->durable_tx = v->basis_tx;
    pthread_cond_broadcast(&s->pub_cv);
    pthread_mutex_unlock(&s->vmu);
}

/* ---- applying changes ----------------------------------------------------------------------- */

/* Attributes whose distinct values no index counts: vcount.c keeps them. */
static bool map_counted(const dl_attr_t *a) {
    return a && a->is_attr && !a->indexed && a->type != DL_T_REF;
}

/* Inserts or deletes k in every index tree of kind base (DL_T_CUR or DL_T_PAST) that holds
 * attribute a. */
static int index_op(dl_store_t *s, int base, const dl_attr_t *a, const dl_kd_t *k, bool ins) {
    for (int o = 0; o < 4; o++) {
        if (o == DL_ORD_AVET && !(a && a->indexed))
            continue;
        if (o == DL_ORD_VAET && !(a && a->type == DL_T_REF))
            continue;
        dl_btree_t *t = &s->trees[base + o];
        /* the plan guarantees absence (insert) and presence (delete): no probes */
        int rc =
            ins ? dl__btree_insert_new(&s->ctx, t, k) : dl__btree_delete_present(&s->ctx, t, k);
        if (rc != 0)
            return rc < 0 ? rc : DL_EINTERNAL;
    }
    return 0;
}

static bool prefix_has(const dl_btree_t *t, const dl_kd_t *k, int n, int at_least) {
    dl_btcur_t q;
    dl__btree_seek(&q, t, k, n);
    int c = 0;
    for (const dl_kd_t *g; (g = dl__btree_cur_get(&q)) && dl__btree_cmp(t->order, g, k, n) == 0;
         dl__btree_cur_next(&q))
        if (++c >= at_least)
            return true;
    return false;
}

/* Keeps the statistics of attribute slot `slot` after k was inserted (+1) or deleted (-1)
 * from the current trees. Distinct values are kept where an index orders by value (AVET,
 * VAET); otherwise -1 (dl_db_attr_stats computes them on demand). */
static void stats_update(dl_store_t *s, const dl_attr_t *a, long slot, const dl_kd_t *k, int d) {
    if (slot < 0)
        return;
    dl_stat_t *st = &s->stats[slot];
    st->datoms += d;
    dl_kd_t p = {.e = k->e, .a = k->a, .v = k->v};
    /* cardinality one: one value per entity; unique: one entity per value */
    if (!a->many)
        st->entities += d;
    else if (!prefix_has(&s->trees[DL_T_CUR + DL_ORD_EAVT], &p, 2, d > 0 ? 2 : 1))
        st->entities += d;
    if (a->unique) {
        st->values += d;
    } else if (a->indexed || a->type == DL_T_REF) {
        int ord = a->indexed ? DL_ORD_AVET : DL_ORD_VAET;
        bool other_v = prefix_has(&s->trees[DL_T_CUR + ord], &p, 2, d > 0 ? 2 : 1);
        if (!other_v)
            st->values += d;
    }
}

/* One comparator per order: qsort has no context argument, and a shared variable would
 * race between two stores committing on two threads. */
static int cmp_eavt3(const void *x, const void *y) { return dl__btree_cmp(DL_ORD_EAVT, x, y, 3); }
static int cmp_aevt3(const void *x, const void *y) { return dl__btree_cmp(DL_ORD_AEVT, x, y, 3); }
static int cmp_avet3(const void *x, const void *y) { return dl__btree_cmp(DL_ORD_AVET, x, y, 3); }
static int cmp_vaet3(const void *x, const void *y) { return dl__btree_cmp(DL_ORD_VAET, x, y, 3); }

/* Sorts keys in `order` unless they already are (the common case costs one pass). */
static void ensure_sorted(dl_kd_t *k, size_t n, int order) {
    static int (*const cmps[4])(const void *, const void *) = {cmp_eavt3, cmp_aevt3, cmp_avet3,
                                                               cmp_vaet3};
    for (size_t i = 1; i < n; i++)
        if (dl__btree_cmp(order, &k[i - 1], &k[i], 3) > 0) {
            qsort(k, n, sizeof *k, cmps[order]);
            return;
        }
}

/* Inserts the plan's assertions into the current trees, each tree as one sorted run
 * (btree.c dl__btree_insert_run), and counts their statistics first, against the trees
 * as they were before the transaction: a group of new datoms sharing a prefix counts
 * once. */
static int insert_assertions(dl_store_t *s, const dl_txplan_t *p, uint64_t tx) {
    const dl_schema_t *sc = s->schema;
    size_t n = p->n_assert;
    if (s->cap_abuf < 3 * n) {
        dl_kd_t *b = dl_realloc(s->abuf, 3 * n * sizeof *b);
        if (!b)
            return DL_ENOMEM;
        s->abuf = b;
        s->cap_abuf = 3 * n;
    }
    dl_kd_t *eavt = s->abuf, *aevt = s->abuf + n, *sub = s->abuf + 2 * n;
    for (size_t i = 0; i < n; i++) {
        eavt[i] = p->assert[i];
        eavt[i].txop = DL_TXOP(tx, true);
    }
    ensure_sorted(eavt, n, DL_ORD_EAVT);
    /* AEVT: a stable partition of the EAVT order by attribute is the AEVT order. */
    size_t na = sc->n_attrs;
    size_t start_buf[64];
    size_t *start = na + 2 <= 64 ? start_buf : dl_malloc((na + 2) * sizeof *start);
    if (!start)
        return DL_ENOMEM;
    memset(start, 0, (na + 2) * sizeof *start);
    for (size_t i = 0; i < n; i++)
        start[dl__schema_slot(sc, eavt[i].a) + 1]++;
    for (size_t i = 0; i < na; i++)
        start[i + 1] += start[i];
    for (size_t i = 0; i < n; i++)
        aevt[start[dl__schema_slot(sc, eavt[i].a)]++] = eavt[i];
    if (start != start_buf)
        dl_free(start);
    ensure_sorted(aevt, n, DL_ORD_AEVT);
    /* statistics: datoms; entities per (e,a) group new to the tree; values per group */
    int64_t first_new = s->next_id; /* the allocator before this transaction */
    const dl_btree_t *E = &s->trees[DL_T_CUR + DL_ORD_EAVT];
    for (size_t i = 0; i < n; i++) {
        const dl_kd_t *k = &aevt[i];
        long slot = dl__schema_slot(sc, k->a);
        const dl_attr_t *a = &sc->attrs[slot];
        dl_stat_t *st = &s->stats[slot];
        st->datoms++;
        bool first_of_group = i == 0 || aevt[i - 1].a != k->a || aevt[i - 1].e != k->e;
        if (!a->many)
            st->entities++;
        else if (first_of_group && (k->e >= first_new || !prefix_has(E, k, 2, 1)))
            st->entities++;
        if (a->unique)
            st->values++;
    }
    /* AVET and VAET subsets, their value statistics, then the inserts */
    for (int ord = DL_ORD_AVET; ord <= DL_ORD_VAET; ord++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            const dl_attr_t *a = dl__schema_by_id(sc, aevt[i].a);
            if (ord == DL_ORD_AVET ? a->indexed : a->type == DL_T_REF)
                sub[m++] = aevt[i];
        }
        if (!m)
            continue;
        ensure_sorted(sub, m, ord);
        const dl_btree_t *T = &s->trees[DL_T_CUR + ord];
        for (size_t i = 0; i < m; i++) {
            const dl_kd_t *k = &sub[i];
            long slot = dl__schema_slot(sc, k->a);
            const dl_attr_t *a = &sc->attrs[slot];
            /* values come from AVET when indexed, else from VAET for refs */
            bool counts = ord == DL_ORD_AVET ? !a->unique : !a->indexed;
            if (!counts)
                continue;
            bool first_of_group =
                i == 0 || sub[i - 1].a != k->a || !dl_value_eq(sub[i - 1].v, k->v);
            if (first_of_group && !prefix_has(T, k, 2, 1))
                s->stats[slot].values++;
        }
        int rc = dl__btree_insert_run(&s->ctx, &s->trees[DL_T_CUR + ord], sub, m);
        if (rc != 0)
            return rc;
    }
    int rc = dl__btree_insert_run(&s->ctx, &s->trees[DL_T_CUR + DL_ORD_EAVT], eavt, n);
    if (rc == 0)
        rc = dl__btree_insert_run(&s->ctx, &s->trees[DL_T_CUR + DL_ORD_AEVT], aevt, n);
    return rc;
}

/* Rebuilds AVET entries of attribute a (current and past) when its :db/index or unique
 * flag turns on (add) or off. */
static int reindex_avet(dl_store_t *s, int64_t a, bool add) {
    for (int base = 0; base <= DL_T_PAST; base += DL_T_PAST) {
        dl_kd_t k = {.a = a};
        dl_btcur_t q;
        dl__btree_seek(&q, &s->trees[base + DL_ORD_AEVT], &k, 1);
        /* Collect first: the AEVT tree is not changed, but keep the loop simple and safe. */
        for (const dl_kd_t *g; (g = dl__btree_cur_get(&q)) && g->a == a; dl__btree_cur_next(&q)) {
            dl_kd_t x = *g;
            int rc = add ? dl__btree_insert(&s->ctx, &s->trees[base + DL_ORD_AVET], &x)
                         : dl__btree_delete(&s->ctx, &s->trees[base + DL_ORD_AVET], &x);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Applies a new schema: statistics follow their attributes to their new slots; AVET follows
 * :db/index. */
static int apply_schema(dl_store_t *s, dl_schema_t *ns) {
    dl_stat_t *st = dl_calloc(ns->n_attrs + 1, sizeof *st);
    if (!st)
        return DL_ENOMEM;
    for (size_t i = 0; i < ns->n_attrs; i++) {
        const dl_attr_t *na = &ns->attrs[i];
        long os = dl__schema_slot(s->schema, na->id);
        const dl_attr_t *oa = os >= 0 ? &s->schema->attrs[os] : NULL;
        if (os >= 0)
            st[i] = s->stats[os];
        bool was = oa && oa->indexed, is = na->indexed;
        if (was != is) {
            int rc = reindex_avet(s, na->id, is);
            if (rc != 0) {
                dl_free(st);
                return rc;
            }
            if (map_counted(na))
                st[i].values = -1; /* no counts were kept while indexed: on demand */
        }
        if (is && (!was || !oa) && na->type != DL_T_REF) {
            /* count distinct values from the new AVET */
            int64_t nv = 0;
            dl_kd_t k = {.a = na->id}, prev;
            dl_btcur_t q;
            bool any = false;
            dl__btree_seek(&q, &s->trees[DL_ORD_AVET], &k, 1);
            for (const dl_kd_t *g; (g = dl__btree_cur_get(&q)) && g->a == na->id;
                 dl__btree_cur_next(&q)) {
                if (!any || !dl_value_eq(prev.v, g->v))
                    nv++;
                prev = *g;
                any = true;
            }
            st[i].values = nv;
        }
        if (!oa && map_counted(na))
            st[i].values = 0; /* a new attribute: vcount.c counts from here */
    }
    uint64_t *f = dl_calloc((size_t)ns->n_dims + 1, sizeof *f);
    if (!f) {
        dl_free(st);
        return DL_ENOMEM;
    }
    memcpy(f, s->frontier, ((size_t)s->schema->n_dims + 1) * sizeof *f);
    /* The old arrays and schema are kept until the transaction is done, so that a
     * rollback restores them without allocating (finish_schema / rollback). */
    s->prev_stats = s->stats;
    s->prev_frontier = s->frontier;
    s->prev_schema = s->schema;
    s->stats = st;
    s->frontier = f;
    s->schema = dl__schema_ref(ns);
    return 0;
}

/* The transaction committed: drop what apply_schema kept for a rollback, and the value
 * counts of attributes whose values an index now counts, or that lost their index. */
static void finish_schema(dl_store_t *s) {
    if (!s->prev_schema)
        return;
    for (size_t i = 0; i < s->schema->n_attrs; i++) {
        const dl_attr_t *na = &s->schema->attrs[i];
        const dl_attr_t *oa = dl__schema_by_id(s->prev_schema, na->id);
        if (oa && map_counted(oa) != map_counted(na))
            dl__vcount_lose(&s->vc, na->id);
    }
    dl_free(s->prev_stats);
    dl_free(s->prev_frontier);
    dl__schema_unref(s->prev_schema);
    s->prev_stats = NULL;
    s->prev_frontier = NULL;
    s->prev_schema = NULL;
}

/* Restores the writer state of the last built version (design note 3). */
static void rollback(dl_store_t *s, const dl_version_t *base) {
    for (int i = 0; i < DL_N_TREES; i++) {
        dl__btree_discard(&s->ctx, s->trees[i].root);
        s->trees[i] = base->trees[i];
    }
    while (s->ctx.n_ret && s->ctx.ret[s->ctx.n_ret - 1].epoch == s->ctx.epoch)
        s->ctx.n_ret--;
    if (s->prev_schema) {
        /* undo apply_schema without allocating */
        dl_free(s->stats);
        dl_free(s->frontier);
        dl__schema_unref(s->schema);
        s->stats = s->prev_stats;
        s->frontier = s->prev_frontier;
        s->schema = s->prev_schema;
        s->prev_stats = NULL;
        s->prev_frontier = NULL;
        s->prev_schema = NULL;
    }
    memcpy(s->stats, base->stats, base->schema->n_attrs * sizeof *s->stats);
    s->next_id = base->next_id;
}

static int cmp_change(const void *x, const void *y) {
    const dl_change_t *a = x, *b = y;
    if (a->diff != b->diff)
        return a->diff < b->diff ? -1 : 1;
    dl_kd_t p = {.e = a->e, .a = a->a, .v = a->v}, q = {.e = b->e, .a = b->a, .v = b->v};
    return dl__btree_cmp(DL_ORD_EAVT, &p, &q, 3);
}

/* The version writers build on: the newest built one (the tail of the live list). */
static dl_version_t *newest(dl_store_t *s) {
    pthread_mutex_lock(&s->vmu);
    dl_version_t *v = s->vtail;
    pthread_mutex_unlock(&s->vmu);
    return v;
}

/* The value-count maps of the last attributes seen in a run of changes (a plan's changes
 * are in entity order, so its attributes alternate): saves the lookup per change. */
typedef struct vcache {
    int64_t a[4];
    struct dl_vcmap *m[4];
    unsigned next;
} vcache_t;

/* One value-count delta: +1 for an assertion, -1 for a retraction (times sign). */
static int vcount_one(dl_store_t *s, const dl_schema_t *sc, vcache_t *vcc, const dl_kd_t *k,
                      int d) {
    long slot = dl__schema_slot(sc, k->a);
    if (slot < 0 || !map_counted(&sc->attrs[slot]))
        return 0;
    struct dl_vcmap *m = NULL;
    for (int j = 0; j < 4 && !m; j++)
        if (vcc->m[j] && vcc->a[j] == k->a)
            m = vcc->m[j];
    if (!m) {
        if (!(m = dl__vcount_map(&s->vc, k->a, true)))
            return DL_ENOMEM;
        vcc->a[vcc->next & 3] = k->a;
        vcc->m[vcc->next & 3] = m;
        vcc->next++;
    }
    int t = 0;
    int rc = dl__vcount_add_in(&s->vc, m, k->v, d, &t);
    if (dl__vcount_map_lost(&s->vc, m))
        s->stats[slot].values = -1;
    else
        s->stats[slot].values += t;
    return rc;
}

/* Applies (sign +1) or undoes (sign -1) the value counts of a plan's changes. A failure
 * half way undoes the part done; an undo that fails marks the attribute lost (its
 * statistic is then computed on demand), so counts are never wrong. */
static int vcount_apply(dl_store_t *s, const dl_schema_t *sc, const dl_txplan_t *p, int sign) {
    size_t n = p->n_retract + p->n_assert;
    vcache_t vcc = {{0}, {0}, 0};
    for (size_t i = 0; i < n; i++) {
        bool r = i < p->n_retract;
        const dl_kd_t *k = r ? &p->retract[i] : &p->assert[i - p->n_retract];
        int rc = vcount_one(s, sc, &vcc, k, (r ? -1 : 1) * sign);
        if (rc != 0 && sign > 0) {
            while (i-- > 0) {
                bool r2 = i < p->n_retract;
                const dl_kd_t *k2 = r2 ? &p->retract[i] : &p->assert[i - p->n_retract];
                if (vcount_one(s, sc, &vcc, k2, r2 ? 1 : -1) != 0)
                    dl__vcount_lose(&s->vc, k2->a);
            }
            return rc;
        }
        if (rc != 0)
            dl__vcount_lose(&s->vc, k->a);
    }
    return 0;
}

/* Applies plan p as transaction tx (p->time holds dimension coordinates). Caller holds
 * wmu. On success *out_v is the built version (not yet published). */
static int apply(dl_store_t *s, dl_txplan_t *p, uint64_t tx, dl_version_t **out_v,
                 uint64_t *out_lsn, dl_error_t *err) {
    dl_version_t *base = newest(s);
    int rc = 0;
    const dl_schema_t *sc = s->schema;
    for (size_t i = 0; i < p->n_retract && rc == 0; i++) {
        const dl_kd_t *k = &p->retract[i];
        long slot = dl__schema_slot(sc, k->a);
        const dl_attr_t *a = slot >= 0 ? &sc->attrs[slot] : NULL;
        if ((rc = index_op(s, DL_T_CUR, a, k, false)) != 0)
            break;
        stats_update(s, a, slot, k, -1);
        if (a && a->no_history)
            continue;
        dl_kd_t r = *k;
        r.txop = DL_TXOP(tx, false);
        if ((rc = index_op(s, DL_T_PAST, a, k, true)) == 0)
            rc = index_op(s, DL_T_PAST, a, &r, true);
    }
    if (rc == 0 && p->n_assert)
        rc = insert_assertions(s, p, tx);
    bool vc_applied = false;
    if (rc == 0) {
        rc = vcount_apply(s, sc, p, +1);
        vc_applied = rc == 0;
    }
    if (rc == 0 && p->new_schema)
        rc = apply_schema(s, p->new_schema);
    dl_txrec_t *rec = NULL;
    rec_mark_t rmark = {s->rec_arena, s->rec_used, s->rec_cap, s->n_bulk};
    if (rc == 0) {
        size_t nt = (size_t)s->schema->n_dims + 1, nc = p->n_retract + p->n_assert;
        rec = txrec_slot(s, tx);
        if (!rec) {
            rc = DL_ENOMEM;
        } else {
            size_t bytes_ch = ((nc ? nc : 1) * sizeof *rec->changes + 15) & ~(size_t)15;
            char *blk = rec_alloc(s, bytes_ch + nt * sizeof *rec->time);
            if (!blk) {
                rec_undo(s, &rmark);
                rc = DL_ENOMEM;
            } else {
                rec->changes = (dl_change_t *)blk;
                rec->time = (uint64_t *)(blk + bytes_ch);
                rec->bulk = true;
                rec->n_time = nt;
                rec->advance = p->advance;
                rec->next_id = p->next_id > s->next_id ? p->next_id : s->next_id;
                rec->time[0] = tx;
                for (size_t k = 1; k < nt; k++)
                    rec->time[k] = k < p->n_time ? p->time[k] : s->frontier[k];
                rec->n_changes = nc;
                for (size_t i = 0; i < p->n_retract; i++)
                    rec->changes[i] =
                        (dl_change_t){p->retract[i].e, p->retract[i].a, p->retract[i].v, -1};
                for (size_t i = 0; i < p->n_assert; i++)
                    rec->changes[p->n_retract + i] =
                        (dl_change_t){p->assert[i].e, p->assert[i].a, p->assert[i].v, +1};
                /* plans list retractions and assertions each in EAVT order already */
                bool sorted = true;
                for (size_t i = 1; i < nc && sorted; i++)
                    sorted = cmp_change(&rec->changes[i - 1], &rec->changes[i]) <= 0;
                if (!sorted)
                    qsort(rec->changes, nc, sizeof *rec->changes, cmp_change);
            }
        }
    }
    dl_version_t *v = NULL;
    int64_t saved_next = s->next_id;
    if (rc == 0) {
        if (p->next_id > s->next_id)
            s->next_id = p->next_id;
        if (s->recovering) {
            /* no reader can exist yet: one epoch, no versions, no copies until the end */
            finish_schema(s);
            s->last_tx = tx;
            return 0;
        }
        v = version_build(s, tx);
        if (!v)
            rc = DL_ENOMEM;
    }
    /* The log append is the last step that can fail: once a record is appended it may
     * reach the disk, so nothing after it may abandon the transaction. */
    if (rc == 0 && s->log) {
        rc = dl__log_hook_append(s, tx, rec, out_lsn, err);
        if (rc != 0) {
            pthread_mutex_lock(&s->vmu);
            bool last = version_unref_locked(v);
            pthread_mutex_unlock(&s->vmu);
            (void)last; /* the store's own reference keeps it alive */
        }
    }
    if (rc != 0) {
        if (rec && rec->time) {
            rec_undo(s, &rmark);
            memset(rec, 0, sizeof *rec);
        }
        if (vc_applied)
            (void)vcount_apply(s, sc, p, -1); /* an undo never fails: it marks lost */
        rollback(s, base);
        s->next_id = saved_next;
        if (s->log && rc == DL_EIO)
            s->failed = true;
        return err && err->code ? err->code : dl_error_set(err, rc, "%s", dl_strerror(rc));
    }
    finish_schema(s);
    s->last_tx = tx;
    s->ctx.epoch++;
    reclaim(s);
    *out_v = v;
    return 0;
}

static void commit_of(const dl_store_t *s, uint64_t tx, const dl_version_t *v, dl_commit_t *c) {
    const dl_txrec_t *r = dl__store_txrec(s, tx);
    c->tx = tx;
    c->time = r->time;
    c->n_time = r->n_time;
    c->frontier = v->frontier;
    c->changes = r->changes;
    c->n_changes = r->n_changes;
}

static int fill_report(dl_store_t *s, dl_txplan_t *p, uint64_t tx, dl_tx_report_t *rep) {
    const dl_txrec_t *r = dl__store_txrec(s, tx);
    memset(rep, 0, sizeof *rep);
    rep->tx = tx;
    rep->time = dl_malloc(r->n_time * sizeof *rep->time);
    rep->datoms = dl_malloc((r->n_changes + 1) * sizeof *rep->datoms);
    if (!rep->time || !rep->datoms) {
        dl_free(rep->time);
        dl_free(rep->datoms);
        memset(rep, 0, sizeof *rep);
        return DL_ENOMEM;
    }
    memcpy(rep->time, r->time, r->n_time * sizeof *rep->time);
    rep->n_time = r->n_time;
    for (size_t i = 0; i < r->n_changes; i++) {
        const dl_change_t *c = &r->changes[i];
        rep->datoms[i] = (dl_datom_t){c->e, c->a, c->v, (int64_t)tx, c->diff > 0};
    }
    rep->n_datoms = r->n_changes;
    if (p) {
        rep->tempids = p->tempids;
        rep->n_tempids = p->n_tempids;
        p->tempids = NULL;
        p->n_tempids = 0;
    }
    return 0;
}

void dl_tx_report_fini(dl_tx_report_t *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_tempids; i++)
        dl_free((char *)r->tempids[i].tempid);
    dl_free(r->tempids);
    dl_free(r->time);
    dl_free(r->datoms);
    memset(r, 0, sizeof *r);
}

/* Makes room in the pending ring for one more transaction, before it is applied: once its
 * record is appended nothing may fail (design note 7). Caller holds wmu. */
static int pend_reserve(dl_store_t *s) {
    pthread_mutex_lock(&s->vmu);
    int rc = 0;
    if (s->queued_tx - s->published_tx + 1 > s->cap_pend) {
        size_t cap = s->cap_pend ? s->cap_pend * 2 : 64;
        struct dl_pending *np = dl_calloc(cap, sizeof *np);
        if (!np) {
            rc = DL_ENOMEM;
        } else {
            for (uint64_t t = s->published_tx + 1; t <= s->queued_tx; t++)
                np[t & (cap - 1)] = s->pend[t & (s->cap_pend - 1)];
            dl_free(s->pend);
            s->pend = np;
            s->cap_pend = cap;
        }
    }
    pthread_mutex_unlock(&s->vmu);
    return rc;
}

/* Queues transaction tx (applied, its record appended) for publication. Caller holds wmu
 * and reserved the slot. */
static void pend_push(dl_store_t *s, uint64_t tx, dl_version_t *v, uint64_t lsn) {
    pthread_mutex_lock(&s->vmu);
    s->pend[tx & (s->cap_pend - 1)] = (struct dl_pending){v, lsn};
    s->queued_tx = tx;
    pthread_mutex_unlock(&s->vmu);
}

/* The outcome of transaction tx once it left the ring (caller holds vmu). */
static int settled(const dl_store_t *s, uint64_t tx, dl_error_t *err) {
    if (s->fail_from && tx >= s->fail_from)
        return dl_error_set(err, DL_EIO,
                            "transaction %" PRIu64 " did not become durable: the log failed", tx);
    return 0;
}

/* Design note 7: makes tx durable (one log sync covers every record appended before it),
 * then publishes every queued transaction up to tx in order, calling the listeners. Any
 * thread may publish another's transaction once it is durable; `publishing` keeps one
 * publisher at a time. A failed sync fails every transaction not yet known durable. */
static int drain(dl_store_t *s, uint64_t tx, dl_error_t *err) {
    pthread_mutex_lock(&s->vmu);
    if (tx <= s->published_tx) {
        int rc = settled(s, tx, err);
        pthread_mutex_unlock(&s->vmu);
        return rc;
    }
    if (tx > s->queued_tx) {
        pthread_mutex_unlock(&s->vmu);
        return dl_error_set(err, DL_EINVAL, "transaction %" PRIu64 " was not committed", tx);
    }
    uint64_t lsn = s->pend[tx & (s->cap_pend - 1)].lsn;
    bool need_sync = tx > s->durable_tx && !s->fail_from;
    pthread_mutex_unlock(&s->vmu);
    int rc = 0;
    dl_error_t serr;
    dl_error_clear(&serr);
    if (need_sync && s->log)
        rc = dl__log_hook_sync(s, lsn, &serr);
    if (rc != 0) {
        pthread_mutex_lock(&s->wmu);
        s->failed = true;
        pthread_mutex_unlock(&s->wmu);
    }
    pthread_mutex_lock(&s->vmu);
    if (rc != 0 && !s->fail_from)
        s->fail_from = (s->durable_tx > s->published_tx ? s->durable_tx : s->published_tx) + 1;
    else if (rc == 0 && tx > s->durable_tx && !s->fail_from)
        s->durable_tx = tx;
    while (s->published_tx < tx) {
        if (s->publishing) {
            pthread_cond_wait(&s->pub_cv, &s->vmu);
            continue;
        }
        uint64_t next = s->published_tx + 1;
        struct dl_pending *e = &s->pend[next & (s->cap_pend - 1)];
        dl_version_t *v = e->v;
        e->v = NULL;
        if (s->fail_from && next >= s->fail_from) {
            /* never acknowledged: publish nothing, pass the turn */
            (void)version_unref_locked(v); /* the store's own reference keeps it alive */
            s->published_tx = next;
            pthread_cond_broadcast(&s->pub_cv);
            continue;
        }
        s->publishing = true;
        dl_version_t *old = s->current;
        s->current = v;
        (void)(old ? version_unref_locked(old) : false); /* the store holds its own */
        pthread_mutex_unlock(&s->vmu);
        dl_commit_t c;
        commit_of(s, next, v, &c);
        pthread_mutex_lock(&s->lmu);
        for (size_t i = 0; i < s->n_listeners; i++)
            s->listeners[i].fn(s->listeners[i].ctx, &c);
        pthread_mutex_unlock(&s->lmu);
        /* before the turn passes: dl_store_close waits for it, so the store is still whole */
        if (s->durable)
            dl__durable_after_commit(s, next);
        pthread_mutex_lock(&s->vmu);
        s->publishing = false;
        s->published_tx = next;
        pthread_cond_broadcast(&s->pub_cv);
    }
    int out = settled(s, tx, err);
    pthread_mutex_unlock(&s->vmu);
    if (out != 0 && rc != 0 && err)
        dl_error_set(err, DL_EIO, "%s", serr.message);
    return out;
}

int dl_store_wait_durable(dl_store_t *s, uint64_t tx, dl_error_t *err) {
    if (!s)
        return dl_error_set(err, DL_EINVAL, "dl_store_wait_durable: NULL store");
    return drain(s, tx, err);
}

/* Plans and applies one transaction from parsed data and queues it; *out_tx receives its
 * number. Does not wait for durability (dl_store_wait_durable). */
static int transact_begin(dl_store_t *s, dl_txdata_t *d, dl_tx_report_t *report, uint64_t *out_tx,
                          dl_error_t *err) {
    if (report)
        memset(report, 0, sizeof *report);
    if (out_tx)
        *out_tx = 0;
    pthread_mutex_lock(&s->wmu);
    if (s->failed || s->closing) {
        pthread_mutex_unlock(&s->wmu);
        return dl_error_set(err, s->failed ? DL_EIO : DL_ECLOSED,
                            "the store is not accepting transactions%s",
                            s->failed ? " (an earlier log write failed; reopen it)" : "");
    }
    dl_txplan_t p;
    d->want_tempids = report != NULL;
    int rc = dl__tx_plan(s, d, &p, err);
    if (rc != 0) {
        pthread_mutex_unlock(&s->wmu);
        return rc;
    }
    uint64_t tx = s->last_tx + 1, lsn = 0;
    dl_version_t *v = NULL;
    rc = pend_reserve(s);
    if (rc != 0)
        rc = dl_error_set(err, rc, "out of memory");
    else
        rc = apply(s, &p, tx, &v, &lsn, err);
    if (rc == 0) {
        pend_push(s, tx, v, lsn);
        if (report && fill_report(s, &p, tx, report) != 0)
            memset(report, 0, sizeof *report); /* committed anyway; the report is best effort */
    }
    pthread_mutex_unlock(&s->wmu);
    dl__txplan_fini(&p);
    if (rc == 0 && out_tx)
        *out_tx = tx;
    return rc;
}

/* Runs one transaction from parsed data and waits until it is durable and published. */
static int transact_data(dl_store_t *s, dl_txdata_t *d, dl_tx_report_t *report, dl_error_t *err) {
    uint64_t tx = 0;
    int rc = transact_begin(s, d, report, &tx, err);
    if (rc != 0)
        return rc;
    rc = drain(s, tx, err);
    if (rc != 0 && report)
        dl_tx_report_fini(report);
    return rc;
}

int dl_store_transact_edn_begin(dl_store_t *s, const char *text, size_t len, dl_tx_report_t *report,
                                uint64_t *out_tx, dl_error_t *err) {
    if (out_tx)
        *out_tx = 0;
    if (!s || !text || !out_tx)
        return dl_error_set(err, DL_EINVAL, "dl_store_transact_edn_begin: NULL argument");
    dl_txdata_t d = {0};
    int rc = dl__txform_edn(text, len, &d, err);
    if (rc == 0)
        rc = transact_begin(s, &d, report, out_tx, err);
    dl__txdata_fini(&d);
    return rc;
}

int dl_store_transact_json_begin(dl_store_t *s, const char *text, size_t len,
                                 dl_tx_report_t *report, uint64_t *out_tx, dl_error_t *err) {
    if (out_tx)
        *out_tx = 0;
    if (!s || !text || !out_tx)
        return dl_error_set(err, DL_EINVAL, "dl_store_transact_json_begin: NULL argument");
    dl_txdata_t d = {0};
    int rc = dl__txform_json(text, len, &d, err);
    if (rc == 0)
        rc = transact_begin(s, &d, report, out_tx, err);
    dl__txdata_fini(&d);
    return rc;
}

/* The C-array form, waiting (out_tx NULL) or not. */
static int transact_ops(dl_store_t *s, const dl_tx_op_t *ops, size_t n_ops,
                        const dl_tx_coord_t *coords, size_t n_coords, dl_tx_report_t *report,
                        uint64_t *out_tx, dl_error_t *err) {
    if (!s || (!ops && n_ops))
        return dl_error_set(err, DL_EINVAL, "dl_store_transact: NULL argument");
    dl_txdata_t d = {0};
    d.ops = (dl_tx_op_t *)ops;
    d.n = n_ops;
    d.coords = (dl_tx_coord_t *)coords;
    d.n_coords = n_coords;
    /* small transactions (the common one-event case) keep their sources on the stack */
    dl_opsrc_t src_buf[16];
    d.src = n_ops < 16 ? src_buf : dl_malloc((n_ops + 1) * sizeof *d.src);
    if (!d.src)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    memset(d.src, 0, (n_ops + 1) * sizeof *d.src);
    for (size_t i = 0; i < n_ops; i++)
        d.src[i].index = i;
    int rc =
        out_tx ? transact_begin(s, &d, report, out_tx, err) : transact_data(s, &d, report, err);
    if (d.src != src_buf)
        dl_free(d.src);
    return rc;
}

int dl_store_transact(dl_store_t *s, const dl_tx_op_t *ops, size_t n_ops,
                      const dl_tx_coord_t *coords, size_t n_coords, dl_tx_report_t *report,
                      dl_error_t *err) {
    return transact_ops(s, ops, n_ops, coords, n_coords, report, NULL, err);
}

int dl_store_transact_begin(dl_store_t *s, const dl_tx_op_t *ops, size_t n_ops,
                            const dl_tx_coord_t *coords, size_t n_coords, dl_tx_report_t *report,
                            uint64_t *out_tx, dl_error_t *err) {
    if (!out_tx)
        return dl_error_set(err, DL_EINVAL, "dl_store_transact_begin: NULL out_tx");
    *out_tx = 0;
    return transact_ops(s, ops, n_ops, coords, n_coords, report, out_tx, err);
}

int dl_store_transact_edn(dl_store_t *s, const char *text, size_t len, dl_tx_report_t *report,
                          dl_error_t *err) {
    if (!s || !text)
        return dl_error_set(err, DL_EINVAL, "dl_store_transact_edn: NULL argument");
    dl_txdata_t d = {0};
    int rc = dl__txform_edn(text, len, &d, err);
    if (rc == 0)
        rc = transact_data(s, &d, report, err);
    dl__txdata_fini(&d);
    return rc;
}

int dl_store_transact_json(dl_store_t *s, const char *text, size_t len, dl_tx_report_t *report,
                           dl_error_t *err) {
    if (!s || !text)
        return dl_error_set(err, DL_EINVAL, "dl_store_transact_json: NULL argument");
    dl_txdata_t d = {0};
    int rc = dl__txform_json(text, len, &d, err);
    if (rc == 0)
        rc = transact_data(s, &d, report, err);
    dl__txdata_fini(&d);
    return rc;
}

int dl_store_transact_json_value_begin(dl_store_t *s, const struct json_t *data,
                                       dl_tx_report_t *report, uint64_t *out_tx, dl_error_t *err) {
    if (out_tx)
        *out_tx = 0;
    if (!s || !data || !out_tx)
        return dl_error_set(err, DL_EINVAL, "dl_store_transact_json_value_begin: NULL argument");
    dl_txdata_t d = {0};
    int rc = dl__txform_json_value(data, &d, err);
    if (rc == 0)
        rc = transact_begin(s, &d, report, out_tx, err);
    dl__txdata_fini(&d);
    return rc;
}

int dl_store_transact_json_value(dl_store_t *s, const struct json_t *data, dl_tx_report_t *report,
                                 dl_error_t *err) {
    if (!s || !data)
        return dl_error_set(err, DL_EINVAL, "dl_store_transact_json_value: NULL argument");
    dl_txdata_t d = {0};
    int rc = dl__txform_json_value(data, &d, err);
    if (rc == 0)
        rc = transact_data(s, &d, report, err);
    dl__txdata_fini(&d);
    return rc;
}

int dl_store_advance_begin(dl_store_t *s, dl_value_t dim, uint64_t t, uint64_t *out_tx,
                           dl_error_t *err) {
    if (out_tx)
        *out_tx = 0;
    if (!s)
        return dl_error_set(err, DL_EINVAL, "dl_store_advance: NULL store");
    pthread_mutex_lock(&s->wmu);
    const dl_attr_t *a = NULL;
    if (dim.type == DL_T_KEYWORD)
        a = dl__schema_by_ident(s->schema, dim.as.s->bytes, dim.as.s->len);
    else if (dim.type == DL_T_REF || dim.type == DL_T_INT)
        a = dl__schema_by_id(s->schema, dim.as.i);
    int rc = 0;
    if (s->failed || s->closing)
        rc = dl_error_set(err, s->failed ? DL_EIO : DL_ECLOSED, "the store is not writable");
    else if (!a || !a->is_dim)
        rc = dl_error_set(err, DL_EUNKNOWN_ATTR, "not a time dimension");
    else if (t < s->frontier[a->dim])
        rc = dl_error_set(err, DL_ETIME,
                          "advance of :%s to %" PRIu64 " would move its frontier %" PRIu64
                          " backward",
                          a->ident->bytes, t, s->frontier[a->dim]);
    if (rc != 0 || t == s->frontier[a->dim]) {
        pthread_mutex_unlock(&s->wmu);
        return rc;
    }
    if ((rc = pend_reserve(s)) != 0) {
        pthread_mutex_unlock(&s->wmu);
        return dl_error_set(err, rc, "out of memory");
    }
    uint64_t old = s->frontier[a->dim];
    s->frontier[a->dim] = t;
    dl_txplan_t p = {0};
    p.advance = true;
    uint64_t tx = s->last_tx + 1, lsn = 0;
    dl_version_t *v = NULL;
    rc = apply(s, &p, tx, &v, &lsn, err);
    if (rc != 0)
        s->frontier[a->dim] = old;
    else
        pend_push(s, tx, v, lsn);
    pthread_mutex_unlock(&s->wmu);
    if (rc == 0 && out_tx)
        *out_tx = tx;
    return rc;
}

int dl_store_advance(dl_store_t *s, dl_value_t dim, uint64_t t, uint64_t *out_tx, dl_error_t *err) {
    uint64_t tx = 0;
    int rc = dl_store_advance_begin(s, dim, t, &tx, err);
    if (rc == 0 && tx)
        rc = drain(s, tx, err);
    if (out_tx)
        *out_tx = rc == 0 ? tx : 0;
    return rc;
}

int dl__store_apply_replayed(dl_store_t *s, dl_txplan_t *p, uint64_t tx, dl_error_t *err) {
    pthread_mutex_lock(&s->wmu);
    void *log = s->log;
    s->log = NULL;
    uint64_t lsn = 0;
    dl_version_t *v = NULL;
    int rc = apply(s, p, tx, &v, &lsn, err);
    s->log = log;
    pthread_mutex_unlock(&s->wmu);
    if (rc == 0 && v)
        publish(s, v, NULL);
    return rc;
}

void dl__store_recovery_begin(dl_store_t *s) { s->recovering = true; }

int dl__store_recovery_end(dl_store_t *s, dl_error_t *err) {
    pthread_mutex_lock(&s->wmu);
    s->recovering = false;
    dl_version_t *v = s->last_tx > s->published_tx ? version_build(s, s->last_tx) : NULL;
    bool need = s->last_tx > s->published_tx;
    if (v) {
        s->ctx.epoch++;
        reclaim(s);
    }
    pthread_mutex_unlock(&s->wmu);
    if (need && !v)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    if (v) {
        /* the replayed transactions were never published one by one: this one is next */
        pthread_mutex_lock(&s->vmu);
        s->published_tx = v->basis_tx - 1;
        pthread_mutex_unlock(&s->vmu);
        publish(s, v, NULL);
    }
    return 0;
}

/* ---- listeners ------------------------------------------------------------------------------ */

int dl_store_listen(dl_store_t *s, dl_store_listener_fn fn, void *ctx, int *out_id,
                    dl_error_t *err) {
    if (!s || !fn)
        return dl_error_set(err, DL_EINVAL, "dl_store_listen: NULL argument");
    pthread_mutex_lock(&s->lmu);
    if (s->n_listeners == s->cap_listeners) {
        size_t cap = s->cap_listeners ? s->cap_listeners * 2 : 4;
        void *x = dl_realloc(s->listeners, cap * sizeof *s->listeners);
        if (!x) {
            pthread_mutex_unlock(&s->lmu);
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        }
        s->listeners = x;
        s->cap_listeners = cap;
    }
    int id = ++s->next_listener_id;
    s->listeners[s->n_listeners].fn = fn;
    s->listeners[s->n_listeners].ctx = ctx;
    s->listeners[s->n_listeners].id = id;
    s->n_listeners++;
    pthread_mutex_unlock(&s->lmu);
    if (out_id)
        *out_id = id;
    return 0;
}

void dl_store_unlisten(dl_store_t *s, int id) {
    if (!s)
        return;
    pthread_mutex_lock(&s->lmu);
    for (size_t i = 0; i < s->n_listeners; i++)
        if (s->listeners[i].id == id) {
            memmove(&s->listeners[i], &s->listeners[i + 1],
                    (s->n_listeners - i - 1) * sizeof *s->listeners);
            s->n_listeners--;
            break;
        }
    pthread_mutex_unlock(&s->lmu);
}

/* ---- open and close ------------------------------------------------------------------------- */

static void store_free(dl_store_t *s) {
    for (int i = 0; i < DL_N_TREES; i++)
        dl__btree_free_all(s->trees[i].root, 0);
    dl__btctx_fini(&s->ctx);
    dl__schema_unref(s->schema);
    dl_free(s->stats);
    dl_free(s->frontier);
    if (s->txdir) {
        for (size_t c = 0; c < DL_TXDIR_SIZE; c++) {
            if (!s->txdir[c])
                continue;
            for (size_t i = 0; i < (1u << DL_TXCHUNK_BITS); i++) {
                if (s->txdir[c][i].bulk)
                    continue;
                dl_free(s->txdir[c][i].time);
                dl_free(s->txdir[c][i].changes);
            }
            dl_free(s->txdir[c]);
        }
        dl_free(s->txdir);
    }
    for (size_t i = 0; i < s->n_bulk; i++)
        dl_free(s->bulk[i]);
    dl_free(s->bulk);
    dl_free(s->listeners);
    dl_free(s->pend);
    dl__tx_scratch_free(s->scratch);
    dl_free(s->abuf);
    dl__vcount_free(&s->vc);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->vmu);
    pthread_mutex_destroy(&s->lmu);
    pthread_cond_destroy(&s->pub_cv);
    dl_free(s);
}

/* Creates the empty store with the built-in schema at transaction 0, published. */
int dl__store_new(dl_store_t **out, dl_error_t *err) {
    dl_store_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->vmu, NULL);
    pthread_mutex_init(&s->lmu, NULL);
    pthread_cond_init(&s->pub_cv, NULL);
    s->refs = 1;
    s->ctx.epoch = 1;
    s->next_id = DL_FIRST_USER_ID;
    int rc = 0;
    for (int i = 0; i < DL_N_TREES && rc == 0; i++)
        rc = dl__btree_init(&s->ctx, &s->trees[i], i % 4, i < DL_T_PAST ? 3 : 4);
    if (rc == 0)
        rc = dl__schema_bootstrap(&s->schema);
    if (rc == 0) {
        s->stats = dl_calloc(s->schema->n_attrs + 1, sizeof *s->stats);
        s->frontier = dl_calloc(1, sizeof *s->frontier);
        s->txdir = dl_calloc(DL_TXDIR_SIZE, sizeof *s->txdir);
        if (!s->stats || !s->frontier || !s->txdir)
            rc = DL_ENOMEM;
    }
    if (rc != 0) {
        store_free(s);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    /* The built-in schema datoms, as transaction 0. */
    dl_kd_t bd[128];
    size_t nb = dl__schema_builtin_datoms(bd, DL_ARRAY_LEN(bd));
    dl_txplan_t p = {0};
    p.assert = bd;
    p.n_assert = nb;
    p.next_id = DL_FIRST_USER_ID;
    dl_version_t *v = NULL;
    uint64_t lsn;
    void *log = s->log;
    s->log = NULL;
    rc = nb ? apply(s, &p, 0, &v, &lsn, err) : dl_error_set(err, DL_ENOMEM, "out of memory");
    s->log = log;
    if (rc != 0) {
        store_free(s);
        return rc;
    }
    s->current = v;
    s->published_tx = 0;
    *out = s;
    return 0;
}

int dl_store_open_memory(dl_store_t **out, dl_error_t *err) {
    if (!out)
        return dl_error_set(err, DL_EINVAL, "dl_store_open_memory: NULL out");
    *out = NULL;
    return dl__store_new(out, err);
}

void dl_store_close(dl_store_t *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->wmu);
    s->closing = true;
    /* an abandoned recovery published nothing: there is nothing in flight to wait for */
    uint64_t last = s->recovering ? s->published_tx : s->last_tx;
    pthread_mutex_unlock(&s->wmu);
    /* transactions begun but never waited for: make them durable and publish them now */
    if (last > 0)
        (void)drain(s, last, NULL);
    pthread_mutex_lock(&s->vmu);
    while (s->published_tx < last)
        pthread_cond_wait(&s->pub_cv, &s->vmu);
    pthread_mutex_unlock(&s->vmu);
    dl__store_close_log(s);
    pthread_mutex_lock(&s->vmu);
    dl_version_t *cur = s->current;
    s->current = NULL;
    bool last_ref = cur ? version_unref_locked(cur) : false;
    if (!last_ref)
        last_ref = --s->refs == 0;
    pthread_mutex_unlock(&s->vmu);
    if (last_ref)
        store_free(s);
}
