/*
 * db.c: snapshots and reads (docs/storage.md "Snapshots", "Reads"). A dl_db_t is a
 * published version plus time filters; reads walk the version's current trees, and for
 * history, as-of and since views the merge of its current and past trees:
 *  - history: every assertion and retraction (current ∪ past), filtered by as-of/since;
 *  - as-of (current view): per (e,a,v) the sum of the changes whose time is <= the point
 *    (+1 assertion, -1 retraction); the datom is present when the sum is positive, with
 *    the last assertion at or before the point as its tx;
 *  - since: keeps changes (or present datoms) whose transaction number is > t.
 * Nothing here takes a lock except the few instructions that take or drop a version
 * reference. It does not change the store.
 */
#include "store/store.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- snapshots ------------------------------------------------------------------------------ */

static dl_db_t *db_new(dl_version_t *v) {
    dl_db_t *db = dl_calloc(1, sizeof *db);
    if (!db)
        return NULL;
    db->v = v;
    db->refs = 1;
    return db;
}

dl_db_t *dl_store_db(dl_store_t *s) {
    if (!s)
        return NULL;
    pthread_mutex_lock(&s->vmu);
    dl_version_t *v = s->current;
    if (v)
        v->refs++;
    pthread_mutex_unlock(&s->vmu);
    if (!v)
        return NULL;
    dl_db_t *db = db_new(v);
    if (!db)
        dl__store_version_unref(v);
    return db;
}

static dl_db_t *db_ref(dl_db_t *db) {
    atomic_fetch_add_explicit((_Atomic int *)&db->refs, 1, memory_order_relaxed);
    return db;
}

void dl_db_unref(dl_db_t *db) {
    if (!db || atomic_fetch_sub_explicit((_Atomic int *)&db->refs, 1, memory_order_acq_rel) != 1)
        return;
    dl_version_t *v = db->v;
    dl_free(db->point);
    dl_free(db);
    dl__store_version_unref(v);
}

/* A new view of the same version with the same filters. */
static dl_db_t *db_derive(const dl_db_t *db) {
    if (!db)
        return NULL;
    dl_store_t *s = db->v->store;
    pthread_mutex_lock(&s->vmu);
    db->v->refs++;
    pthread_mutex_unlock(&s->vmu);
    dl_db_t *d = db_new(db->v);
    if (!d) {
        dl__store_version_unref(db->v);
        return NULL;
    }
    d->history = db->history;
    d->asof_kind = db->asof_kind;
    d->asof_tx = db->asof_tx;
    d->since_tx = db->since_tx;
    if (db->n_point) {
        d->point = dl_malloc(db->n_point * sizeof *d->point);
        if (!d->point) {
            dl_db_unref(d);
            return NULL;
        }
        memcpy(d->point, db->point, db->n_point * sizeof *d->point);
        d->n_point = db->n_point;
    }
    return d;
}

dl_db_t *dl_db_as_of(const dl_db_t *db, uint64_t tx) {
    dl_db_t *d = db_derive(db);
    if (!d)
        return NULL;
    /* as-of composes as the meet with an earlier as-of */
    if (d->asof_kind == 1 && d->asof_tx < tx)
        return d;
    if (d->asof_kind == 2) {
        if (d->n_point && d->point[0] > tx)
            d->point[0] = tx;
        return d;
    }
    d->asof_kind = 1;
    d->asof_tx = tx;
    return d;
}

dl_db_t *dl_db_as_of_point(const dl_db_t *db, const uint64_t *point, size_t n) {
    dl_db_t *d = db_derive(db);
    if (!d || !n)
        return d;
    uint64_t *p = dl_malloc(DL_MAX(n, d->n_point) * sizeof *p);
    if (!p) {
        dl_db_unref(d);
        return NULL;
    }
    for (size_t i = 0; i < DL_MAX(n, d->n_point); i++) {
        uint64_t x = i < n ? point[i] : UINT64_MAX;
        if (i < d->n_point && d->point[i] < x)
            x = d->point[i];
        p[i] = x;
    }
    if (d->asof_kind == 1 && d->asof_tx < p[0])
        p[0] = d->asof_tx;
    dl_free(d->point);
    d->point = p;
    d->n_point = DL_MAX(n, d->n_point);
    d->asof_kind = 2;
    return d;
}

dl_db_t *dl_db_since(const dl_db_t *db, uint64_t tx) {
    dl_db_t *d = db_derive(db);
    if (d && tx > d->since_tx)
        d->since_tx = tx;
    return d;
}

dl_db_t *dl_db_history(const dl_db_t *db) {
    dl_db_t *d = db_derive(db);
    if (d)
        d->history = true;
    return d;
}

uint64_t dl_db_basis_tx(const dl_db_t *db) { return db ? db->v->basis_tx : 0; }

size_t dl_db_tx_time(const dl_db_t *db, uint64_t tx, uint64_t *out, size_t n) {
    if (!db || tx > db->v->basis_tx)
        return 0;
    const dl_txrec_t *r = dl__store_txrec(db->v->store, tx);
    if (!r)
        return 0;
    for (size_t i = 0; i < n && i < r->n_time; i++)
        out[i] = r->time[i];
    return r->n_time;
}

size_t dl_db_frontier(const dl_db_t *db, uint64_t *out, size_t n) {
    if (!db)
        return 0;
    size_t nf = (size_t)db->v->schema->n_dims + 1;
    for (size_t i = 0; i < n && i < nf; i++)
        out[i] = db->v->frontier[i];
    return nf;
}

/* Is transaction tx at or before the view's as-of point? */
static bool tx_visible(const dl_db_t *db, int64_t tx) {
    if ((uint64_t)tx > db->v->basis_tx)
        return false;
    if (db->asof_kind == 1)
        return (uint64_t)tx <= db->asof_tx;
    if (db->asof_kind == 2) {
        const dl_txrec_t *r = dl__store_txrec(db->v->store, (uint64_t)tx);
        for (size_t i = 0; i < db->n_point; i++) {
            uint64_t c = r && i < r->n_time ? r->time[i] : 0;
            if (i == 0)
                c = (uint64_t)tx;
            if (c > db->point[i])
                return false;
        }
    }
    return true;
}

/* ---- iterators ------------------------------------------------------------------------------ */

struct dl_iter {
    dl_db_t *db;
    int order;
    dl_kd_t prefix;
    int n;       /* prefix components compared (0..3) */
    bool has_tx; /* the prefix's 4th component (tx) */
    int64_t tx;
    dl_btcur_t c[2];
    bool merged; /* read past trees too */
    int mode;    /* 0 current, 1 history, 2 as-of */
    bool have_peek;
    dl_kd_t peek;
};

/* The next raw key of the (merged) stream within the prefix. */
static bool raw_next(dl_iter_t *it, dl_kd_t *out) {
    if (it->have_peek) {
        *out = it->peek;
        it->have_peek = false;
        return true;
    }
    const dl_kd_t *a = dl__btree_cur_get(&it->c[0]);
    const dl_kd_t *b = it->merged ? dl__btree_cur_get(&it->c[1]) : NULL;
    if (a && it->n && dl__btree_cmp(it->order, a, &it->prefix, it->n) != 0)
        a = NULL;
    if (b && it->n && dl__btree_cmp(it->order, b, &it->prefix, it->n) != 0)
        b = NULL;
    if (!a && !b)
        return false;
    int which = !a ? 1 : !b ? 0 : dl__btree_cmp(it->order, a, b, 4) <= 0 ? 0 : 1;
    *out = which ? *b : *a;
    dl__btree_cur_next(&it->c[which]);
    return true;
}

static void to_datom(const dl_kd_t *k, dl_datom_t *out) {
    out->e = k->e;
    out->a = k->a;
    out->v = k->v;
    out->tx = DL_KD_TX(k);
    out->added = DL_KD_ADDED(k);
}

bool dl_iter_next(dl_iter_t *it, dl_datom_t *out) {
    if (!it)
        return false;
    const dl_db_t *db = it->db;
    dl_kd_t k;
    for (;;) {
        if (!raw_next(it, &k))
            return false;
        if (it->mode == 0) {
            if ((uint64_t)DL_KD_TX(&k) <= db->since_tx && db->since_tx)
                continue;
        } else if (it->mode == 1) {
            if (!tx_visible(db, DL_KD_TX(&k)) ||
                (db->since_tx && (uint64_t)DL_KD_TX(&k) <= db->since_tx))
                continue;
        } else {
            /* as-of: fold the group of one (e,a,v) */
            int64_t sum = 0, last = -1;
            dl_kd_t g = k, x = k;
            for (bool more = true; more;) {
                if (tx_visible(db, DL_KD_TX(&x))) {
                    sum += DL_KD_ADDED(&x) ? 1 : -1;
                    if (DL_KD_ADDED(&x))
                        last = DL_KD_TX(&x);
                }
                more = raw_next(it, &x);
                if (more && dl__btree_cmp(it->order, &x, &g, 3) != 0) {
                    it->peek = x;
                    it->have_peek = true;
                    more = false;
                }
            }
            if (sum <= 0 || (db->since_tx && (uint64_t)last <= db->since_tx))
                continue;
            k = g;
            k.txop = DL_TXOP(last, true);
        }
        if (it->has_tx && DL_KD_TX(&k) != it->tx)
            continue;
        to_datom(&k, out);
        return true;
    }
}

void dl_iter_free(dl_iter_t *it) {
    if (!it)
        return;
    dl_db_unref(it->db);
    dl_free(it);
}

static void from_datom(const dl_datom_t *d, dl_kd_t *k) {
    k->e = d->e;
    k->a = d->a;
    k->v = d->v;
    k->txop = DL_TXOP(d->tx, d->added);
}

int dl_db_datoms(const dl_db_t *db, dl_index_t idx, const dl_datom_t *prefix, int n_components,
                 const dl_datom_t *start, dl_iter_t **out, dl_error_t *err) {
    if (!db || !out || (unsigned)idx > DL_INDEX_VAET || n_components < 0 || n_components > 4 ||
        (n_components && !prefix))
        return dl_error_set(err, DL_EINVAL, "dl_db_datoms: bad argument");
    dl_iter_t *it = dl_calloc(1, sizeof *it);
    if (!it)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    it->db = db_ref((dl_db_t *)db);
    it->order = (int)idx;
    it->n = n_components > 3 ? 3 : n_components;
    if (prefix)
        from_datom(prefix, &it->prefix);
    it->has_tx = n_components == 4;
    it->tx = prefix ? prefix->tx : 0;
    it->mode = db->history ? 1 : db->asof_kind ? 2 : 0;
    it->merged = it->mode != 0;
    dl_kd_t seek = it->prefix;
    int ns = it->n;
    if (start) {
        dl_kd_t st;
        from_datom(start, &st);
        if (!it->n || dl__btree_cmp(it->order, &st, &it->prefix, 3) > 0) {
            seek = st;
            ns = 3;
        }
    }
    dl__btree_seek(&it->c[0], &db->v->trees[DL_T_CUR + idx], &seek, ns);
    if (it->merged)
        dl__btree_seek(&it->c[1], &db->v->trees[DL_T_PAST + idx], &seek, ns);
    *out = it;
    return 0;
}

int dl_iter_seek(dl_iter_t *it, const dl_datom_t *prefix, int n_components) {
    if (!it || !prefix || n_components < 1 || n_components > 3)
        return DL_EINVAL;
    from_datom(prefix, &it->prefix);
    it->n = n_components;
    it->has_tx = false;
    it->have_peek = false;
    const dl_db_t *db = it->db;
    dl__btree_cur_seek(&it->c[0], &db->v->trees[DL_T_CUR + it->order], &it->prefix, it->n);
    if (it->merged)
        dl__btree_cur_seek(&it->c[1], &db->v->trees[DL_T_PAST + it->order], &it->prefix, it->n);
    return 0;
}

int dl_db_entity(const dl_db_t *db, int64_t e, dl_datom_t **out, size_t *out_n, dl_error_t *err) {
    if (!out || !out_n)
        return dl_error_set(err, DL_EINVAL, "dl_db_entity: NULL output");
    *out = NULL;
    *out_n = 0;
    dl_datom_t p = {.e = e};
    dl_iter_t *it;
    int rc = dl_db_datoms(db, DL_INDEX_EAVT, &p, 1, NULL, &it, err);
    if (rc != 0)
        return rc;
    size_t n = 0, cap = 16;
    dl_datom_t *v = dl_malloc(cap * sizeof *v);
    if (!v) {
        dl_iter_free(it);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    while (dl_iter_next(it, &v[n])) {
        if (++n == cap) {
            cap *= 2;
            dl_datom_t *x = dl_realloc(v, cap * sizeof *v);
            if (!x) {
                dl_free(v);
                dl_iter_free(it);
                return dl_error_set(err, DL_ENOMEM, "out of memory");
            }
            v = x;
        }
    }
    dl_iter_free(it);
    *out = v;
    *out_n = n;
    return 0;
}

int dl_db_lookup(const dl_db_t *db, int64_t a, dl_value_t v, int64_t *out_id, dl_error_t *err) {
    if (!db || !out_id)
        return dl_error_set(err, DL_EINVAL, "dl_db_lookup: NULL argument");
    dl_datom_t p = {.a = a, .v = v};
    dl_iter_t *it;
    int rc = dl_db_datoms(db, DL_INDEX_AVET, &p, 2, NULL, &it, err);
    if (rc != 0)
        return rc;
    dl_datom_t d;
    bool found = false;
    while (!found && dl_iter_next(it, &d))
        found = d.added;
    dl_iter_free(it);
    if (!found)
        return dl_error_set(err, DL_ENOTFOUND, "no entity has that value of attribute %lld",
                            (long long)a);
    *out_id = d.e;
    return 0;
}

int dl_db_ident(const dl_db_t *db, const char *ident, int64_t *out_id, dl_error_t *err) {
    if (!ident)
        return dl_error_set(err, DL_EINVAL, "dl_db_ident: NULL ident");
    if (ident[0] == ':')
        ident++;
    dl_value_t kw;
    int rc = dl_value_text(DL_T_KEYWORD, ident, strlen(ident), &kw, err);
    if (rc != 0)
        return rc;
    rc = dl_db_lookup(db, DL_A_IDENT, kw, out_id, NULL);
    if (rc != 0)
        return dl_error_set(err, rc, "no entity has ident :%s", ident);
    return 0;
}

int dl_db_tx_range(const dl_db_t *db, uint64_t from, uint64_t to,
                   int (*fn)(void *ctx, const dl_commit_t *c), void *ctx) {
    if (!db || !fn)
        return DL_EINVAL;
    for (uint64_t tx = from; tx <= db->v->basis_tx && (!to || tx < to); tx++) {
        const dl_txrec_t *r = dl__store_txrec(db->v->store, tx);
        if (!r)
            continue;
        dl_commit_t c = {tx, r->time, r->n_time, NULL, r->changes, r->n_changes};
        int rc = fn(ctx, &c);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- schema and statistics ------------------------------------------------------------------ */

static void attr_info(const dl_attr_t *a, dl_attr_info_t *o) {
    memset(o, 0, sizeof *o);
    o->id = a->id;
    o->ident = a->ident ? a->ident->bytes : "";
    o->type = a->type;
    o->many = a->many;
    o->unique = a->unique;
    o->indexed = a->indexed;
    o->component = a->component;
    o->no_history = a->no_history;
    o->time_dimension = a->is_dim;
    o->dim = a->dim;
}

int dl_db_attr(const dl_db_t *db, const char *ident, dl_attr_info_t *out, dl_error_t *err) {
    if (!db || !ident || !out)
        return dl_error_set(err, DL_EINVAL, "dl_db_attr: NULL argument");
    const dl_attr_t *a = dl__schema_by_ident(db->v->schema, ident, strlen(ident));
    if (!a)
        return dl_error_set(err, DL_EUNKNOWN_ATTR, "unknown attribute :%s",
                            ident[0] == ':' ? ident + 1 : ident);
    attr_info(a, out);
    return 0;
}

int dl_db_attr_by_id(const dl_db_t *db, int64_t id, dl_attr_info_t *out, dl_error_t *err) {
    if (!db || !out)
        return dl_error_set(err, DL_EINVAL, "dl_db_attr_by_id: NULL argument");
    const dl_attr_t *a = dl__schema_by_id(db->v->schema, id);
    if (!a)
        return dl_error_set(err, DL_EUNKNOWN_ATTR, "unknown attribute %lld", (long long)id);
    attr_info(a, out);
    return 0;
}

size_t dl_db_attrs(const dl_db_t *db, dl_attr_info_t *out, size_t n) {
    if (!db)
        return 0;
    const dl_schema_t *s = db->v->schema;
    for (size_t i = 0; i < n && i < s->n_attrs; i++)
        attr_info(&s->attrs[i], &out[i]);
    return s->n_attrs;
}

static int cmp_val(const void *x, const void *y) {
    return dl_value_cmp(*(const dl_value_t *)x, *(const dl_value_t *)y);
}

int dl_db_attr_stats(const dl_db_t *db, int64_t a, dl_attr_stats_t *out, dl_error_t *err) {
    if (!db || !out)
        return dl_error_set(err, DL_EINVAL, "dl_db_attr_stats: NULL argument");
    long slot = dl__schema_slot(db->v->schema, a);
    if (slot < 0)
        return dl_error_set(err, DL_EUNKNOWN_ATTR, "unknown attribute %lld", (long long)a);
    const dl_stat_t *st = &db->v->stats[slot];
    out->datoms = st->datoms;
    out->distinct_entities = st->entities;
    out->distinct_values = st->values;
    if (st->values >= 0)
        return 0;
    /* Not kept incrementally (no index orders this attribute by value): count now. */
    size_t n = 0, cap = (size_t)st->datoms + 1;
    dl_value_t *vals = dl_malloc(cap * sizeof *vals);
    if (!vals)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    dl_kd_t k = {.a = a};
    dl_btcur_t q;
    dl__btree_seek(&q, &db->v->trees[DL_T_CUR + DL_ORD_AEVT], &k, 1);
    for (const dl_kd_t *g; n < cap && (g = dl__btree_cur_get(&q)) && g->a == a;
         dl__btree_cur_next(&q))
        vals[n++] = g->v;
    if (n > 1)
        qsort(vals, n, sizeof *vals, cmp_val);
    int64_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += i == 0 || !dl_value_eq(vals[i], vals[i - 1]);
    dl_free(vals);
    out->distinct_values = d;
    return 0;
}
