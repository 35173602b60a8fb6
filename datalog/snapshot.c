/*
 * snapshot.c: how a one-shot plan reads a store snapshot directly (docs/datalog.md "One-shot
 * plans"): index-range scans loaded into constant inputs, and the lookup callback of
 * dl_lookup_join (dataflow/lookup.c) that probes an index with a reusable cursor. The
 * dataflow sees only the callback; the store only its public cursor API (dl_db_datoms,
 * dl_iter_seek). Which patterns use these, and when, is compile.c's business; this file
 * does not plan. A snapshot never changes, which is what makes a lookup into it a join
 * (the other half of the delta join is empty) and a scan loaded once a complete input.
 */
#include "datalog/compile.h"

#include <deltalog/store.h>
#include <string.h>

/* The prefix of sq's range in its index for the key (NULL for scans); *n: its components;
 * false when a key component cannot match (an entity that is not a ref). */
static bool snap_prefix(const dl__snapq_t *sq, const dl_value_t *key, dl_datom_t *pre, int *n) {
    memset(pre, 0, sizeof *pre);
    pre->a = sq->a;
    dl_value_t e = dl_value_nil(), v = dl_value_nil();
    if (sq->e_kind == DL__SNAP_CONST)
        e = sq->ec;
    else if (sq->e_kind == DL__SNAP_KEY)
        e = key[sq->e_col];
    if (sq->v_kind == DL__SNAP_CONST)
        v = sq->vc;
    else if (sq->v_kind == DL__SNAP_KEY)
        v = key[sq->v_col];
    bool has_e = sq->e_kind != DL__SNAP_FREE, has_v = sq->v_kind != DL__SNAP_FREE && !sq->v_filter;
    if (has_e) {
        if (e.type != DL_T_REF)
            return false; /* datoms' entities are refs: nothing else joins them */
        pre->e = e.as.i;
    }
    if (has_v)
        pre->v = v;
    switch (sq->idx) {
        case DL_INDEX_AEVT:
            *n = has_e ? (has_v ? 3 : 2) : 1;
            break;
        case DL_INDEX_AVET:
        case DL_INDEX_VAET:
            *n = has_v ? (has_e ? 3 : 2) : 1;
            break;
        default:
            *n = 1;
    }
    return true;
}

/* Calls fn(ctx, row) for every datom of the range the iterator is positioned on: row is
 * [e] [v] [e v] or [] (once) by sq's yields; AEVT ranges that yield only e skip repeated
 * entities (a cardinality-many attribute whose value is not read). */
static int snap_walk(const dl__snapq_t *sq, dl_iter_t *it,
                     int (*fn)(void *ctx, const dl_value_t *row), void *ctx) {
    dl_datom_t d;
    int64_t last_e = 0;
    bool any = false;
    while (dl_iter_next(it, &d)) {
        if (!d.added)
            continue;
        if (sq->v_filter && dl_value_cmp(d.v, sq->vc) != 0)
            continue;
        dl_value_t row[2];
        size_t k = 0;
        if (sq->yield_e) {
            if (!sq->yield_v && any && d.e == last_e)
                continue;
            row[k++] = dl_value_ref(d.e);
        }
        if (sq->yield_v)
            row[k++] = d.v;
        last_e = d.e;
        any = true;
        int rc = fn(ctx, row);
        if (rc)
            return rc;
        if (k == 0 || sq->single)
            break; /* existence: one row; a cardinality-one value of a given entity */
    }
    return 0;
}

int dl__snap_probe_new(const dl_db_t *db, const dl__snapq_t *sq, dl__probe_t **out,
                       dl_error_t *err) {
    *out = NULL;
    dl__probe_t *p = dl_calloc(1, sizeof *p);
    if (!p)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    p->sq = *sq;
    dl_datom_t pre;
    memset(&pre, 0, sizeof pre);
    pre.a = sq->a;
    if (sq->idx == DL_INDEX_VAET) /* v leads: start anywhere, every probe seeks */
        pre.v = dl_value_nil();
    int rc = dl_db_datoms(db, (dl_index_t)sq->idx, &pre, sq->idx == DL_INDEX_VAET ? 0 : 1, NULL,
                          &p->it, err);
    if (rc) {
        dl_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void dl__snap_probe_free(dl__probe_t *p) {
    if (!p)
        return;
    dl_iter_free(p->it);
    dl_free(p->rows);
    dl_free(p);
}

static int yield_row(void *ctx, const dl_value_t *row) { return dl_lookup_yield(ctx, row); }

/* A stage of a chain keeps its rows for the key (the yields of all stages are joined). */
static int keep_row(void *ctx, const dl_value_t *row) {
    dl__probe_t *p = ctx;
    size_t w = (size_t)p->sq.yield_e + (size_t)p->sq.yield_v;
    if (!dl__grow(&p->rows, &p->cap_rows, (p->n_rows + 1) * (w ? w : 1), sizeof *p->rows, 8))
        return DL_ENOMEM;
    memcpy(p->rows + p->n_rows * w, row, w * sizeof *row);
    p->n_rows++;
    return 0;
}

/* The rows of every stage of chain p for key, their product yielded (stage order). */
static int chain_probe(dl__probe_t *p, const dl_value_t *key, dl_lookup_sink_t *out) {
    size_t n_st = 0, width = 0;
    dl__probe_t *st[DL_ARITY_MAX];
    for (dl__probe_t *x = p; x && n_st < DL_ARITY_MAX; x = x->then) {
        dl_datom_t pre;
        int n;
        x->n_rows = 0;
        if (!snap_prefix(&x->sq, key, &pre, &n))
            return 0;
        int rc = dl_iter_seek(x->it, &pre, n);
        if (!rc)
            rc = snap_walk(&x->sq, x->it, keep_row, x);
        if (rc)
            return rc;
        if (x->n_rows == 0)
            return 0; /* a stage without a match: no row */
        st[n_st++] = x;
        width += (size_t)x->sq.yield_e + (size_t)x->sq.yield_v;
    }
    if (width > DL_ARITY_MAX)
        return DL_ELIMIT;
    /* Odometer over the stages' rows. */
    size_t idx[DL_ARITY_MAX] = {0};
    dl_value_t row[DL_ARITY_MAX];
    for (;;) {
        size_t k = 0;
        for (size_t s = 0; s < n_st; s++) {
            size_t w = (size_t)st[s]->sq.yield_e + (size_t)st[s]->sq.yield_v;
            memcpy(row + k, st[s]->rows + idx[s] * w, w * sizeof *row);
            k += w;
        }
        int rc = dl_lookup_yield(out, row);
        if (rc)
            return rc;
        size_t s = n_st;
        while (s > 0 && ++idx[s - 1] == st[s - 1]->n_rows)
            idx[--s] = 0;
        if (s == 0)
            return 0;
    }
}

int dl__snap_probe_fn(void *ctx, const dl_value_t *key, dl_lookup_sink_t *out) {
    dl__probe_t *p = ctx;
    if (p->then)
        return chain_probe(p, key, out);
    dl_datom_t pre;
    int n;
    if (!snap_prefix(&p->sq, key, &pre, &n))
        return 0;
    int rc = dl_iter_seek(p->it, &pre, n);
    if (rc)
        return rc;
    return snap_walk(&p->sq, p->it, yield_row, out);
}

typedef struct scanctx {
    dl_input_t *in;
    size_t arity;
    const uint64_t *t;
    dl_error_t *err;
} scanctx_t;

static int scan_row(void *ctx, const dl_value_t *row) {
    scanctx_t *s = ctx;
    dl_value_t nil = dl_value_nil();
    return dl_input_update(s->in, s->arity ? row : &nil, s->arity ? s->arity : 1, s->t, 1, s->err);
}

int dl__snap_scan(const dl_db_t *db, const dl__snapq_t *sq, dl_input_t *in, const uint64_t *t,
                  dl_error_t *err) {
    dl_datom_t pre;
    int n;
    if (!snap_prefix(sq, NULL, &pre, &n))
        return 0; /* a constant entity that is not one: nothing matches */
    dl_iter_t *it = NULL;
    int rc = dl_db_datoms(db, (dl_index_t)sq->idx, &pre, n, NULL, &it, err);
    if (rc)
        return rc;
    scanctx_t s = {in, (size_t)sq->yield_e + (size_t)sq->yield_v, t, err};
    rc = snap_walk(sq, it, scan_row, &s);
    dl_iter_free(it);
    return rc;
}
