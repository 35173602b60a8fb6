/*
 * test_model.c: the model-based property test of the store (issue 3 "Tests"). Random
 * transaction streams — assertions, retractions, cardinality-one replacement,
 * retractEntity with components, upserts, refs between new entities, and deliberate
 * contradictions — go to the store and to a tiny, obviously correct model: a plain array
 * of every change (e, a, v, tx, +/-) from which every answer is recomputed by brute
 * force. At every step every index (current), as-of, since, history and tx-log read must
 * agree, rejected transactions must leave the database unchanged, and the B+tree
 * validators must hold. The model re-implements the transaction rules naively
 * (docs/storage.md "Transactions") rather than calling the store's code.
 */
#include "store_test_util.h"

#include "store/store.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

/* Attributes of the model schema (ids resolved at start). */
enum { M_ID, M_NAME, M_TAG, M_SCORE, M_REF, M_PART, M_N };
static const char *m_ident[M_N] = {"m/id", "m/name", "m/tag", "m/score", "m/ref", "m/part"};
static const bool m_many[M_N] = {false, false, true, false, true, false};
static const bool m_refattr[M_N] = {false, false, false, false, true, true};
static const bool m_indexed[M_N] = {true, false, false, true, false, false};

typedef struct mch {
    int64_t e, a;
    dl_value_t v;
    int64_t tx;
    bool added;
} mch_t;

typedef struct model {
    mch_t *log;
    size_t n, cap;
    int64_t attr[M_N];
    int64_t *ents; /* entity ids the model knows about */
    size_t n_ents, cap_ents;
} model_t;

static int attr_slot(const model_t *m, int64_t a) {
    for (int i = 0; i < M_N; i++)
        if (m->attr[i] == a)
            return i;
    return -1;
}

static void m_push(model_t *m, mch_t c) {
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 256;
        m->log = realloc(m->log, m->cap * sizeof *m->log);
    }
    m->log[m->n++] = c;
}

/* Is (e,a,v) present at time t (t < 0: now)? Sum of the changes with tx <= t. */
static int64_t m_present(const model_t *m, int64_t e, int64_t a, dl_value_t v, int64_t t,
                         int64_t *last_tx) {
    int64_t sum = 0;
    for (size_t i = 0; i < m->n; i++) {
        const mch_t *c = &m->log[i];
        if (c->e == e && c->a == a && dl_value_eq(c->v, v) && (t < 0 || c->tx <= t)) {
            sum += c->added ? 1 : -1;
            if (c->added && last_tx)
                *last_tx = c->tx;
        }
    }
    return sum;
}

/* The current (or as-of t) datoms, as an array (new, free()). */
static mch_t *m_state(const model_t *m, int64_t t, size_t *out_n) {
    mch_t *r = malloc((m->n + 1) * sizeof *r);
    size_t n = 0;
    for (size_t i = 0; i < m->n; i++) {
        const mch_t *c = &m->log[i];
        if (!c->added || (t >= 0 && c->tx > t))
            continue;
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = r[j].e == c->e && r[j].a == c->a && dl_value_eq(r[j].v, c->v);
        if (dup)
            continue;
        int64_t last = 0;
        if (m_present(m, c->e, c->a, c->v, t, &last) > 0) {
            r[n] = *c;
            r[n].tx = last;
            n++;
        }
    }
    *out_n = n;
    return r;
}

static int c64(int64_t x, int64_t y) { return (x > y) - (x < y); }
static int g_order;
/* The index orders, written out independently of the store's comparator. */
static int cmp_order(const void *px, const void *py) {
    const mch_t *x = px, *y = py;
    int c;
    switch (g_order) {
        case 0:
            if ((c = c64(x->e, y->e)) || (c = c64(x->a, y->a)) || (c = dl_value_cmp(x->v, y->v)))
                return c;
            break;
        case 1:
            if ((c = c64(x->a, y->a)) || (c = c64(x->e, y->e)) || (c = dl_value_cmp(x->v, y->v)))
                return c;
            break;
        case 2:
            if ((c = c64(x->a, y->a)) || (c = dl_value_cmp(x->v, y->v)) || (c = c64(x->e, y->e)))
                return c;
            break;
        default:
            if ((c = dl_value_cmp(x->v, y->v)) || (c = c64(x->a, y->a)) || (c = c64(x->e, y->e)))
                return c;
            break;
    }
    if ((c = c64(x->tx, y->tx)))
        return c;
    return (int)x->added - (int)y->added;
}

/* Compares a store read with an expected list (sorted here in the index order). */
static void check_read(const dl_db_t *db, int order, const dl_datom_t *prefix, int n_prefix,
                       mch_t *want, size_t n_want, const char *what, long step) {
    g_order = order;
    if (n_want > 1)
        qsort(want, n_want, sizeof *want, cmp_order);
    dl_iter_t *it;
    assert_int_equal(dl_db_datoms(db, (dl_index_t)order, prefix, n_prefix, NULL, &it, NULL), 0);
    dl_datom_t d;
    size_t i = 0;
    while (dl_iter_next(it, &d)) {
        if (i >= n_want)
            dl_prop_fail("step %ld %s idx %d: extra datom [%lld %lld tx %lld %d]", step, what,
                         order, (long long)d.e, (long long)d.a, (long long)d.tx, d.added);
        const mch_t *w = &want[i];
        if (w->e != d.e || w->a != d.a || !dl_value_eq(w->v, d.v) || w->tx != d.tx ||
            w->added != d.added) {
            char *vs = dl_value_to_edn(d.v), *ws = dl_value_to_edn(w->v);
            dl_prop_fail("step %ld %s idx %d #%zu: got [%lld %lld %s %lld %d] want [%lld %lld "
                         "%s %lld %d]",
                         step, what, order, i, (long long)d.e, (long long)d.a, vs, (long long)d.tx,
                         d.added, (long long)w->e, (long long)w->a, ws, (long long)w->tx, w->added);
        }
        i++;
    }
    dl_iter_free(it);
    if (i != n_want)
        dl_prop_fail("step %ld %s idx %d: %zu datoms, want %zu", step, what, order, i, n_want);
}

/* Keeps the rows of an index (AVET only indexed attrs, VAET only refs). */
static size_t filter_index(const model_t *m, int order, mch_t *v, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int s = attr_slot(m, v[i].a);
        if (order == 2 && !(s >= 0 && m_indexed[s]))
            continue;
        if (order == 3 && !(s >= 0 && m_refattr[s]))
            continue;
        v[w++] = v[i];
    }
    return w;
}

static void check_all(dl_store_t *s, model_t *m, int64_t last_tx, dl_rng_t *rng, long step) {
    dl_db_t *db = dl_store_db(s);
    assert_int_equal(dl_db_basis_tx(db), (uint64_t)last_tx);
    /* the B+trees' invariants */
    for (int i = 0; i < DL_N_TREES; i++)
        if (dl__btree_check(&s->trees[i]) < 0)
            dl_prop_fail("step %ld: tree %d invariant broken", step, i);
    /* only user attributes: restrict reads to entities >= first user id */
    size_t n;
    mch_t *cur = m_state(m, -1, &n);
    for (int order = 0; order < 4; order++) {
        mch_t *w = malloc((n + 1) * sizeof *w);
        memcpy(w, cur, n * sizeof *w);
        size_t k = filter_index(m, order, w, n);
        /* a prefix read: EAVT by entity, AEVT and AVET by attribute, VAET by value */
        int slot = (int)dl_rng_below(rng, M_N);
        int64_t e = m->n_ents ? m->ents[dl_rng_below(rng, m->n_ents)] : 999999;
        dl_datom_t p = {.a = m->attr[slot]};
        if (order == 0)
            p = (dl_datom_t){.e = e};
        else if (order == 3)
            p = (dl_datom_t){.v = dl_value_ref(e)};
        size_t kk = 0;
        for (size_t i = 0; i < k; i++) {
            bool keep = order == 0   ? w[i].e == e
                        : order == 3 ? w[i].v.type == DL_T_REF && w[i].v.as.i == e
                                     : w[i].a == p.a;
            if (keep)
                w[kk++] = w[i];
        }
        check_read(db, order, &p, 1, w, kk, "current", step);
        free(w);
    }
    free(cur);
    /* as-of a random past transaction, and since it */
    int64_t t = (int64_t)dl_rng_below(rng, (uint64_t)last_tx + 1);
    dl_db_t *asof = dl_db_as_of(db, (uint64_t)t);
    mch_t *st = m_state(m, t, &n);
    for (int order = 0; order < 2; order++) {
        mch_t *w = malloc((n + 1) * sizeof *w);
        size_t k = 0;
        int64_t a = m->attr[dl_rng_below(rng, M_N)];
        for (size_t i = 0; i < n; i++)
            if (st[i].a == a)
                w[k++] = st[i];
        dl_datom_t p = {.a = a};
        check_read(asof, 1, &p, 1, w, k, "as-of", step);
        free(w);
    }
    if (m->n_ents) {
        int64_t e = m->ents[dl_rng_below(rng, m->n_ents)];
        mch_t *w = malloc((n + 1) * sizeof *w);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (st[i].e == e)
                w[k++] = st[i];
        dl_datom_t p = {.e = e};
        check_read(asof, 0, &p, 1, w, k, "as-of entity", step);
        free(w);
    }
    free(st);
    dl_db_unref(asof);
    {
        mch_t *now = m_state(m, -1, &n);
        size_t k = 0;
        int64_t a = m->attr[dl_rng_below(rng, M_N)];
        for (size_t i = 0; i < n; i++)
            if (now[i].tx > t && now[i].a == a)
                now[k++] = now[i];
        dl_db_t *since = dl_db_since(db, (uint64_t)t);
        dl_datom_t p = {.a = a};
        check_read(since, 1, &p, 1, now, k, "since", step);
        dl_db_unref(since);
        free(now);
    }
    /* history of an entity and of an attribute */
    dl_db_t *hist = dl_db_history(db);
    {
        mch_t *w = malloc((m->n + 1) * sizeof *w);
        size_t k = 0;
        int64_t a = m->attr[dl_rng_below(rng, M_N)];
        for (size_t i = 0; i < m->n; i++)
            if (m->log[i].a == a)
                w[k++] = m->log[i];
        dl_datom_t p = {.a = a};
        check_read(hist, 1, &p, 1, w, k, "history attr", step);
        if (m->n_ents) {
            int64_t e = m->ents[dl_rng_below(rng, m->n_ents)];
            k = 0;
            for (size_t i = 0; i < m->n; i++)
                if (m->log[i].e == e)
                    w[k++] = m->log[i];
            dl_datom_t pe = {.e = e};
            check_read(hist, 0, &pe, 1, w, k, "history entity", step);
        }
        /* history as-of t */
        dl_db_t *ha = dl_db_as_of(hist, (uint64_t)t);
        k = 0;
        for (size_t i = 0; i < m->n; i++)
            if (m->log[i].a == a && m->log[i].tx <= t)
                w[k++] = m->log[i];
        check_read(ha, 1, &p, 1, w, k, "history as-of", step);
        dl_db_unref(ha);
        free(w);
    }
    dl_db_unref(hist);
    /* statistics: datoms and distinct entities per attribute */
    mch_t *now = m_state(m, -1, &n);
    for (int i = 0; i < M_N; i++) {
        dl_attr_stats_t stt;
        assert_int_equal(dl_db_attr_stats(db, m->attr[i], &stt, NULL), 0);
        int64_t cnt = 0, ents = 0, vals = 0;
        for (size_t j = 0; j < n; j++) {
            if (now[j].a != m->attr[i])
                continue;
            cnt++;
            bool seen_e = false, seen_v = false;
            for (size_t k = 0; k < j; k++) {
                if (now[k].a != m->attr[i])
                    continue;
                seen_e |= now[k].e == now[j].e;
                seen_v |= dl_value_eq(now[k].v, now[j].v);
            }
            ents += !seen_e;
            vals += !seen_v;
        }
        /* every attribute's distinct values are kept incrementally (vcount.c or an index) */
        long slot = dl__schema_slot(db->v->schema, m->attr[i]);
        if (db->v->stats[slot].values < 0)
            dl_prop_fail("step %ld: distinct values of %s not kept", step, m_ident[i]);
        if (stt.datoms != cnt || stt.distinct_entities != ents || stt.distinct_values != vals)
            dl_prop_fail("step %ld stats of %s: %lld/%lld/%lld want %lld/%lld/%lld", step,
                         m_ident[i], (long long)stt.datoms, (long long)stt.distinct_entities,
                         (long long)stt.distinct_values, (long long)cnt, (long long)ents,
                         (long long)vals);
    }
    free(now);
    dl_db_unref(db);
}

/* ---- random transactions and the model's verdict --------------------------------------- */

typedef struct gop {
    int kind;     /* 0 add, 1 retract, 2 retract attr, 3 retractEntity */
    int64_t e;    /* > 0 entity, < 0 tempid -1..-3 */
    int a;        /* slot */
    dl_value_t v; /* non-ref value */
    int64_t ve;   /* ref value: entity or tempid */
} gop_t;

static dl_value_t rand_value(dl_rng_t *r, int slot) {
    static const char *names[] = {"ann", "bob", "cy", "dee"};
    if (slot == M_NAME) {
        const char *s = names[dl_rng_below(r, 4)];
        dl_value_t v;
        if (dl_value_text(DL_T_STRING, s, strlen(s), &v, NULL) != 0)
            return dl_value_nil();
        return v;
    }
    return dl_value_int((int64_t)dl_rng_below(r, slot == M_ID ? 6 : 4));
}

static int64_t rand_entity(dl_rng_t *r, const model_t *m, bool allow_tmp) {
    if ((allow_tmp && dl_rng_below(r, 3) == 0) || m->n_ents == 0)
        return allow_tmp ? -1 - (int64_t)dl_rng_below(r, 3) : 0;
    return m->ents[dl_rng_below(r, m->n_ents)];
}

typedef struct mdatom {
    int64_t e, a;
    dl_value_t v;
} md_t;

static bool md_eq(const md_t *x, const md_t *y) {
    return x->e == y->e && x->a == y->a && dl_value_eq(x->v, y->v);
}
static bool md_in(const md_t *set, size_t n, const md_t *x) {
    for (size_t i = 0; i < n; i++)
        if (md_eq(&set[i], x))
            return true;
    return false;
}

/* The model's verdict: 0 and the change sets, or 1 for "rejected". tmp_ids[k] receives
 * the resolved entity of tempid -(k+1) (0 = new: taken from the store's report). */
static int model_tx(const model_t *m, const gop_t *ops, size_t n, int64_t tmp_ids[3],
                    const int64_t new_ids[3], md_t *A, size_t *nA, md_t *R, size_t *nR) {
    /* tempids: upsert through :m/id */
    bool as_entity[3] = {0}, used[3] = {0};
    for (int k = 0; k < 3; k++)
        tmp_ids[k] = 0;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].e < 0) {
            used[-ops[i].e - 1] = true;
            if (ops[i].kind != 0)
                return 1; /* tempid in a retraction */
            as_entity[-ops[i].e - 1] = true;
        }
        if (ops[i].kind == 0 && m_refattr[ops[i].a] && ops[i].ve < 0)
            used[-ops[i].ve - 1] = true;
    }
    for (int k = 0; k < 3; k++)
        if (used[k] && !as_entity[k])
            return 1;
    for (size_t i = 0; i < n; i++) {
        if (ops[i].kind != 0 || ops[i].e >= 0 || ops[i].a != M_ID)
            continue;
        size_t ns;
        mch_t *st = m_state(m, -1, &ns);
        int64_t owner = 0;
        for (size_t j = 0; j < ns; j++)
            if (st[j].a == m->attr[M_ID] && dl_value_eq(st[j].v, ops[i].v))
                owner = st[j].e;
        free(st);
        int k = (int)(-ops[i].e - 1);
        if (owner && tmp_ids[k] && tmp_ids[k] != owner)
            return 1;
        if (owner)
            tmp_ids[k] = owner;
    }
    /* tempids sharing a new :m/id value are one entity */
    int rep[3] = {0, 1, 2};
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (ops[i].kind == 0 && ops[j].kind == 0 && ops[i].e < 0 && ops[j].e < 0 &&
                ops[i].a == M_ID && ops[j].a == M_ID && dl_value_eq(ops[i].v, ops[j].v)) {
                int x = (int)(-ops[i].e - 1), y = (int)(-ops[j].e - 1);
                if (!tmp_ids[x] && !tmp_ids[y]) {
                    int lo = rep[x] < rep[y] ? rep[x] : rep[y];
                    for (int k = 0; k < 3; k++)
                        if (rep[k] == rep[x] || rep[k] == rep[y])
                            rep[k] = lo;
                }
            }
    for (int k = 0; k < 3; k++)
        if (used[k] && !tmp_ids[k])
            tmp_ids[k] = tmp_ids[rep[k]] ? tmp_ids[rep[k]] : new_ids[rep[k]];
    size_t ns;
    mch_t *st = m_state(m, -1, &ns);
    md_t *RX = malloc((n + 1) * sizeof *RX);
    size_t nRX = 0;
    *nA = *nR = 0;
#define ENT(x) ((x) < 0 ? tmp_ids[-(x)-1] : (x))
    for (size_t i = 0; i < n; i++) {
        const gop_t *o = &ops[i];
        int64_t e = ENT(o->e);
        md_t d = {e, m->attr[o->a], m_refattr[o->a] ? dl_value_ref(ENT(o->ve)) : o->v};
        if (o->kind == 0) {
            if (!md_in(A, *nA, &d))
                A[(*nA)++] = d;
        } else if (o->kind == 1) {
            RX[nRX++] = d;
            for (size_t j = 0; j < ns; j++) {
                md_t x = {st[j].e, st[j].a, st[j].v};
                if (md_eq(&x, &d) && !md_in(R, *nR, &x))
                    R[(*nR)++] = x;
            }
        } else if (o->kind == 2) {
            for (size_t j = 0; j < ns; j++) {
                md_t x = {st[j].e, st[j].a, st[j].v};
                if (x.e == e && x.a == d.a && !md_in(R, *nR, &x))
                    R[(*nR)++] = x;
            }
        } else {
            /* retractEntity, cascading through :m/part */
            int64_t stack[256];
            size_t sp = 0, nseen = 0;
            int64_t seen[256];
            stack[sp++] = e;
            while (sp) {
                int64_t x = stack[--sp];
                bool dup = false;
                for (size_t k = 0; k < nseen; k++)
                    dup |= seen[k] == x;
                if (dup)
                    continue;
                seen[nseen++] = x;
                for (size_t j = 0; j < ns; j++) {
                    md_t y = {st[j].e, st[j].a, st[j].v};
                    bool mine = y.e == x;
                    bool refs_me = y.v.type == DL_T_REF && y.v.as.i == x;
                    if ((mine || refs_me) && !md_in(R, *nR, &y))
                        R[(*nR)++] = y;
                    if (mine && y.a == m->attr[M_PART])
                        stack[sp++] = y.v.as.i;
                }
            }
        }
    }
    int verdict = 0;
    /* contradictions */
    for (size_t i = 0; i < *nA && !verdict; i++) {
        if (md_in(R, *nR, &A[i]) || md_in(RX, nRX, &A[i]))
            verdict = 1;
        int s = attr_slot(m, A[i].a);
        for (size_t j = 0; j < i && !verdict; j++)
            if (!m_many[s] && A[j].e == A[i].e && A[j].a == A[i].a)
                verdict = 1;
    }
    /* no-ops and cardinality-one replacement */
    size_t w = 0;
    for (size_t i = 0; i < *nA && !verdict; i++) {
        bool present = false;
        for (size_t j = 0; j < ns; j++)
            present |= st[j].e == A[i].e && st[j].a == A[i].a && dl_value_eq(st[j].v, A[i].v);
        if (present)
            continue;
        int s = attr_slot(m, A[i].a);
        if (!m_many[s])
            for (size_t j = 0; j < ns; j++) {
                md_t x = {st[j].e, st[j].a, st[j].v};
                if (x.e == A[i].e && x.a == A[i].a && !md_in(R, *nR, &x))
                    R[(*nR)++] = x;
            }
        A[w++] = A[i];
    }
    if (!verdict)
        *nA = w;
    /* uniqueness of :m/id */
    for (size_t i = 0; i < *nA && !verdict; i++) {
        if (A[i].a != m->attr[M_ID])
            continue;
        for (size_t j = 0; j < *nA; j++)
            if (j != i && A[j].a == A[i].a && dl_value_eq(A[j].v, A[i].v) && A[j].e != A[i].e)
                verdict = 1;
        for (size_t j = 0; j < ns; j++) {
            md_t x = {st[j].e, st[j].a, st[j].v};
            if (x.a == A[i].a && dl_value_eq(x.v, A[i].v) && x.e != A[i].e && !md_in(R, *nR, &x))
                verdict = 1;
        }
    }
#undef ENT
    free(st);
    free(RX);
    return verdict;
}

static void gen_ops(dl_rng_t *r, const model_t *m, gop_t *ops, size_t *out_n) {
    size_t n = 1 + dl_rng_below(r, 4);
    for (size_t i = 0; i < n; i++) {
        gop_t *o = &ops[i];
        memset(o, 0, sizeof *o);
        uint64_t k = dl_rng_below(r, 100);
        o->a = (int)dl_rng_below(r, M_N);
        if (k < 60) {
            o->kind = 0;
            o->e = rand_entity(r, m, true);
        } else if (k < 80) {
            o->kind = 1;
            o->e = rand_entity(r, m, dl_rng_below(r, 10) == 0);
        } else if (k < 90) {
            o->kind = 2;
            o->e = rand_entity(r, m, false);
        } else {
            o->kind = 3;
            o->e = rand_entity(r, m, false);
        }
        if (o->e == 0) {
            o->kind = 0;
            o->e = -1;
        }
        if (m_refattr[o->a])
            o->ve = rand_entity(r, m, o->kind == 0);
        else
            o->v = rand_value(r, o->a);
        if (m_refattr[o->a] && o->ve == 0) {
            o->a = M_TAG;
            o->v = rand_value(r, M_TAG);
        }
    }
    *out_n = n;
}

/* EDN text of the generated ops. */
static void ops_edn(const model_t *m, const gop_t *ops, size_t n, dl_buf_t *b) {
    (void)m;
    dl__buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        const gop_t *o = &ops[i];
        static const char *kinds[] = {":db/add", ":db/retract", ":db/retract", ":db/retractEntity"};
        dl__buf_printf(b, "[%s ", kinds[o->kind]);
        if (o->e < 0)
            dl__buf_printf(b, "\"t%lld\"", (long long)-o->e);
        else
            dl__buf_printf(b, "%lld", (long long)o->e);
        if (o->kind != 3)
            dl__buf_printf(b, " :%s", m_ident[o->a]);
        if (o->kind == 0 || o->kind == 1) {
            dl__buf_putc(b, ' ');
            if (m_refattr[o->a]) {
                if (o->ve < 0)
                    dl__buf_printf(b, "\"t%lld\"", (long long)-o->ve);
                else
                    dl__buf_printf(b, "%lld", (long long)o->ve);
            } else {
                dl__edn_print_value(o->v, b);
            }
        }
        dl__buf_puts(b, "] ");
    }
    dl__buf_puts(b, "]");
}

/* Every index (st_dump) plus every transaction record (time, allocator, changes): what a
 * reopen must reproduce exactly. new. */
static char *whole_dump(dl_store_t *s) {
    char *d = st_dump(s);
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_puts(&b, d);
    dl_free(d);
    dl_db_t *db = dl_store_db(s);
    for (uint64_t tx = 0; tx <= dl_db_basis_tx(db); tx++) {
        const dl_txrec_t *r = dl__store_txrec(s, tx);
        if (!r) {
            dl__buf_printf(&b, "tx %llu missing\n", (unsigned long long)tx);
            continue;
        }
        dl__buf_printf(&b, "tx %llu next %lld adv %d:", (unsigned long long)tx,
                       (long long)r->next_id, (int)r->advance);
        for (size_t i = 0; i < r->n_time; i++)
            dl__buf_printf(&b, " %llu", (unsigned long long)r->time[i]);
        for (size_t i = 0; i < r->n_changes; i++) {
            dl__buf_printf(&b, " [%lld %lld ", (long long)r->changes[i].e,
                           (long long)r->changes[i].a);
            dl__edn_print_value(r->changes[i].v, &b);
            dl__buf_printf(&b, " %lld]", (long long)r->changes[i].diff);
        }
        dl__buf_putc(&b, '\n');
    }
    /* the statistics as kept (-1: counted on demand), attribute by attribute */
    for (size_t i = 0; i < db->v->schema->n_attrs; i++)
        dl__buf_printf(&b, "stats %lld: %lld %lld %lld\n", (long long)db->v->schema->attrs[i].id,
                       (long long)db->v->stats[i].datoms, (long long)db->v->stats[i].entities,
                       (long long)db->v->stats[i].values);
    dl_db_unref(db);
    return dl__buf_take(&b);
}

static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
    rmdir(dir);
}

/* Closes and reopens the durable store at dir (after a checkpoint when ckpt): the reopened
 * database (checkpoint + log tail) must be the same, indices, records and statistics. */
static dl_store_t *reopen(dl_store_t *s, const char *dir, bool ckpt, long step) {
    if (ckpt) {
        dl_error_t err = {0};
        if (dl_store_checkpoint(s, &err) != 0)
            dl_prop_fail("step %ld: checkpoint: %s", step, err.message);
    }
    char *before = whole_dump(s);
    dl_store_close(s);
    dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_NONE};
    dl_error_t err = {0};
    if (dl_store_open(dir, &o, &s, &err) != 0)
        dl_prop_fail("step %ld: reopen: %s", step, err.message);
    char *after = whole_dump(s);
    if (strcmp(before, after) != 0) {
        size_t i = 0;
        while (before[i] && before[i] == after[i])
            i++;
        dl_prop_fail("step %ld: reopened database differs at byte %zu:\n%.200s\nvs\n%.200s", step,
                     i, before + (i > 40 ? i - 40 : 0), after + (i > 40 ? i - 40 : 0));
    }
    dl_free(before);
    dl_free(after);
    return s;
}

static void test_model_random_streams(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("store.model_random_streams");
    long rounds = dl_prop_iters(6), n_rejected = 0, n_total = 0, n_reopens = 0;
    for (long round = 0; round < rounds; round++) {
        dl_rng_t rng = {seed + (uint64_t)round};
        dl_store_t *s;
        /* odd rounds are durable and reopen at random steps, from a checkpoint or not */
        char dir[64] = "";
        bool durable = round % 2 == 1;
        if (durable) {
            snprintf(dir, sizeof dir, "/tmp/dl-model-XXXXXX");
            assert_non_null(mkdtemp(dir));
            dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_NONE};
            assert_int_equal(dl_store_open(dir, &o, &s, NULL), 0);
        } else {
            assert_int_equal(dl_store_open_memory(&s, NULL), 0);
        }
        assert_int_equal(st_tx(s,
                               "[{:db/ident :m/id :db/valueType :db.type/long :db/cardinality "
                               ":db.cardinality/one :db/unique :db.unique/identity}"
                               " {:db/ident :m/name :db/valueType :db.type/string :db/cardinality "
                               ":db.cardinality/one}"
                               " {:db/ident :m/tag :db/valueType :db.type/long :db/cardinality "
                               ":db.cardinality/many}"
                               " {:db/ident :m/score :db/valueType :db.type/long :db/cardinality "
                               ":db.cardinality/one :db/index true}"
                               " {:db/ident :m/ref :db/valueType :db.type/ref :db/cardinality "
                               ":db.cardinality/many}"
                               " {:db/ident :m/part :db/valueType :db.type/ref :db/cardinality "
                               ":db.cardinality/one :db/isComponent true}]",
                               0, NULL, NULL),
                         0);
        model_t m = {0};
        dl_db_t *db0 = dl_store_db(s);
        for (int i = 0; i < M_N; i++) {
            dl_attr_info_t ai;
            assert_int_equal(dl_db_attr(db0, m_ident[i], &ai, NULL), 0);
            m.attr[i] = ai.id;
        }
        dl_db_unref(db0);
        int64_t last_tx = 1;
        /* an old snapshot must keep reading the same after many commits */
        dl_db_t *old = NULL;
        char *old_dump = NULL;
        long steps = 120;
        for (long step = 0; step < steps; step++) {
            gop_t ops[8];
            size_t n;
            gen_ops(&rng, &m, ops, &n);
            dl_buf_t b;
            dl__buf_init(&b);
            ops_edn(&m, ops, n, &b);
            if (getenv("DL_MODEL_TRACE"))
                fprintf(stderr, "step %ld: %s\n", step, b.data);
            char *before = st_dump(s);
            dl_tx_report_t rep;
            dl_error_t err = {0};
            int rc = dl_store_transact_edn(s, b.data, b.len, &rep, &err);
            /* placeholders keep tempids distinct when the store rejects (no ids then) */
            int64_t new_ids[3] = {-101, -102, -103}, tmp_ids[3];
            if (rc == 0)
                for (int k = 0; k < 3; k++) {
                    char t[8];
                    snprintf(t, sizeof t, "t%d", k + 1);
                    new_ids[k] = st_tempid(&rep, t);
                }
            md_t A[64], R[256];
            size_t nA, nR;
            int verdict = model_tx(&m, ops, n, tmp_ids, new_ids, A, &nA, R, &nR);
            n_rejected += rc != 0;
            n_total++;
            if ((rc != 0) != (verdict != 0))
                dl_prop_fail("step %ld: %s: store rc %s (%s), model %s", step, b.data,
                             dl_err_name(rc), err.message, verdict ? "rejects" : "accepts");
            if (rc != 0) {
                char *after = st_dump(s);
                if (strcmp(before, after) != 0)
                    dl_prop_fail("step %ld: rejected tx changed the database", step);
                dl_free(after);
            } else {
                last_tx = (int64_t)rep.tx;
                if (rep.n_datoms != nA + nR)
                    dl_prop_fail("step %ld: %s: %zu changes, model %zu+%zu", step, b.data,
                                 rep.n_datoms, nA, nR);
                for (size_t i = 0; i < nR; i++)
                    m_push(&m, (mch_t){R[i].e, R[i].a, R[i].v, last_tx, false});
                for (size_t i = 0; i < nA; i++)
                    m_push(&m, (mch_t){A[i].e, A[i].a, A[i].v, last_tx, true});
                for (int k = 0; k < 3; k++) {
                    int64_t id = new_ids[k];
                    bool known = !id;
                    for (size_t j = 0; j < m.n_ents && !known; j++)
                        known = m.ents[j] == id;
                    if (!known) {
                        if (m.n_ents == m.cap_ents) {
                            m.cap_ents = m.cap_ents ? m.cap_ents * 2 : 16;
                            m.ents = realloc(m.ents, m.cap_ents * sizeof *m.ents);
                        }
                        m.ents[m.n_ents++] = id;
                    }
                }
                dl_tx_report_fini(&rep);
            }
            dl_free(before);
            dl__buf_fini(&b);
            if (durable && dl_rng_below(&rng, 10) == 0) {
                s = reopen(s, dir, dl_rng_below(&rng, 3) != 0, step);
                n_reopens++;
            }
            check_all(s, &m, last_tx, &rng, step);
            if (step == steps / 3) {
                old = dl_store_db(s);
                old_dump = st_dump_db(old);
            }
        }
        char *again = st_dump_db(old);
        assert_string_equal(old_dump, again);
        dl_free(again);
        dl_free(old_dump);
        dl_db_unref(old);
        /* the transaction log: every change of the model, tx by tx */
        dl_db_t *db = dl_store_db(s);
        struct {
            model_t *m;
            size_t seen;
        } lc = {&m, 0};
        for (int64_t tx = 2; tx <= last_tx; tx++) {
            size_t want = 0;
            for (size_t i = 0; i < m.n; i++)
                want += m.log[i].tx == tx;
            const dl_txrec_t *r = dl__store_txrec(s, (uint64_t)tx);
            assert_non_null(r);
            if (r->n_changes != want)
                dl_prop_fail("tx %lld: log has %zu changes, model %zu", (long long)tx, r->n_changes,
                             want);
            lc.seen += want;
        }
        assert_int_equal(lc.seen, m.n);
        dl_db_unref(db);
        free(m.log);
        free(m.ents);
        if (durable)
            s = reopen(s, dir, true, steps); /* the final state from a checkpoint too */
        dl_store_close(s);
        if (durable)
            rm_dir(dir);
    }
    fprintf(stderr, "model: %ld transactions, %ld rejected, %ld reopens\n", n_total, n_rejected,
            n_reopens);
    assert_true(n_reopens > 0);
    /* the stream must exercise both outcomes, or the test proves little */
    assert_true(n_rejected > n_total / 20 && n_rejected < n_total * 3 / 4);
}

DL_TEST_GROUP(model, cmocka_unit_test(test_model_random_streams));
