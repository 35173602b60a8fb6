/*
 * lookup.c: the lookup join (a half join, Materialize's delta-join "lookup"): a collection
 * joined with a static indexed collection that lives outside the graph and is read through
 * a callback, such as a store snapshot seen by the Datalog compiler. For every input update
 * (row, t, d) and every row val the callback yields for the row's key, the output carries
 * the chosen columns of (key, row, val) at join(t, spec time) with diff d.
 *
 * DESIGN-NOTES §2: this is join with the static side's updates all at one time with
 * multiplicity one and never changing; it is then exact for every input, incremental or
 * not, because the other half of a delta join (changes of the static side against the
 * input's history) is empty. Whoever supplies the callback guarantees that the collection
 * never changes for the life of the operator (a snapshot). It does not arrange anything:
 * the input is neither sorted into a spine nor kept; only, when asked, each incoming batch
 * is probed in key order (a copy of its record numbers sorted by the key's integer image),
 * so that a callback walking a sorted index moves forward (the cost of a merge join).
 * The rest of the dataflow treats it as a per-row operator (frontier: its input's, which
 * bounds its output times from below). docs/datalog.md "One-shot plans", docs/dataflow.md
 * "Operators"; tests/dataflow/test_lookup.c.
 */
#include "dataflow/dataflow.h"

typedef struct lookup {
    dl_lookup_fn fn;
    void *ctx;
    uint32_t n_key, val_arity;
    uint32_t key_cols[DL_ARITY_MAX];
    bool sort;
    uint64_t time[DL_TIME_MAX_DIM]; /* the static side's time, the node's dim coordinates */
} lookup_t;

struct dl_lookup_sink {
    dl_coll_t *n;
    const lookup_t *lk;
    dl_ubuf_t *out;
    const dl_value_t *key, *row;
    uint64_t t[DL_TIME_MAX_DIM]; /* join(input time, static time) */
    int64_t diff;
};

int dl_lookup_yield(dl_lookup_sink_t *s, const dl_value_t *val) {
    if (!s || (!val && s->lk->val_arity))
        return DL_EINVAL;
    dl_ubuf_t *o = s->out;
    size_t k = dl__batch_ubuf_alloc(o);
    if (k == SIZE_MAX)
        return DL_ENOMEM;
    dl_value_t *r = dl__ub_row(o, k);
    const dl_coll_t *n = s->n;
    for (size_t c = 0; c < n->n_cols; c++) {
        const dl_join_col_t *jc = &n->jcols[c];
        r[c] = jc->src == DL_JOIN_KEY    ? s->key[jc->col]
               : jc->src == DL_JOIN_LEFT ? s->row[jc->col]
                                         : val[jc->col];
    }
    memcpy(dl__ub_time(o, k), s->t, o->dim * sizeof(uint64_t));
    *dl__ub_diff(o, k) = s->diff;
    return 0;
}

dl_coll_t *dl_lookup_join(dl_coll_t *in, const dl_lookup_spec_t *spec, const dl_join_col_t *cols,
                          size_t n_cols, dl_error_t *err) {
    if (!in || !spec || !spec->fn || (!cols && n_cols) || (!spec->key_cols && spec->n_key) ||
        !spec->time) {
        dl_error_set(err, DL_EINVAL, "dl_lookup_join: NULL argument");
        return NULL;
    }
    if (spec->n_key > DL_ARITY_MAX || spec->val_arity > DL_ARITY_MAX) {
        dl_error_set(err, DL_EARITY, "dl_lookup_join: too many columns");
        return NULL;
    }
    for (size_t i = 0; i < spec->n_key; i++)
        if (spec->key_cols[i] >= in->arity) {
            dl_error_set(err, DL_EARITY, "dl_lookup_join: key column %u out of range",
                         spec->key_cols[i]);
            return NULL;
        }
    for (size_t i = 0; i < n_cols; i++) {
        size_t lim = cols[i].src == DL_JOIN_KEY     ? spec->n_key
                     : cols[i].src == DL_JOIN_LEFT  ? in->arity
                     : cols[i].src == DL_JOIN_RIGHT ? spec->val_arity
                                                    : 0;
        if (cols[i].src > DL_JOIN_RIGHT || cols[i].col >= lim) {
            dl_error_set(err, DL_EARITY, "dl_lookup_join: output column out of range");
            return NULL;
        }
    }
    /* One block: the output columns (the node's jcols, which the graph frees with the
     * node), then the parameters (the node's ctx). */
    size_t off = (DL_MAX(n_cols, 1) * sizeof(dl_join_col_t) + 15) & ~(size_t)15;
    dl_join_col_t *jc = dl_calloc(1, off + sizeof(lookup_t));
    if (!jc) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    lookup_t *lk = (lookup_t *)((uint8_t *)jc + off);
    lk->fn = spec->fn;
    lk->ctx = spec->ctx;
    lk->n_key = (uint32_t)spec->n_key;
    lk->val_arity = (uint32_t)spec->val_arity;
    if (spec->n_key)
        memcpy(lk->key_cols, spec->key_cols, spec->n_key * sizeof *lk->key_cols);
    lk->sort = spec->sort;
    memcpy(lk->time, spec->time, dl_scope_dim(in->scope) * sizeof(uint64_t));
    if (n_cols)
        memcpy(jc, cols, n_cols * sizeof *cols);
    dl_coll_t *n = dl__graph_node_new(in->scope, OP_LOOKUP, n_cols, &in, 1, err);
    if (!n) {
        dl_free(jc);
        return NULL;
    }
    n->ctx = lk; /* in jc's block: freed with the node */
    n->jcols = jc;
    n->n_cols = n_cols;
    return n;
}

/* An order-preserving image of an integer-like value (ints and refs by number). */
static bool int_image(const dl_value_t *v, uint64_t *out) {
    if (v->type != DL_T_INT && v->type != DL_T_REF)
        return false;
    *out = (uint64_t)v->as.i ^ (1ull << 63);
    return true;
}

typedef struct probe {
    uint64_t img;
    uint32_t idx;
} probe_t;

/* LSD radix sort of p by img, 11 bits a pass (a counter array on the stack: graphs may
 * run on several threads); passes where every item has the same digit are skipped.
 * tmp: n items of scratch. */
static void probe_sort(probe_t *p, probe_t *tmp, size_t n) {
    size_t cnt[1 << 11];
    for (int shift = 0; shift < 64; shift += 11) {
        memset(cnt, 0, sizeof cnt);
        for (size_t i = 0; i < n; i++)
            cnt[(p[i].img >> shift) & 0x7ff]++;
        if (cnt[(p[0].img >> shift) & 0x7ff] == n)
            continue;
        size_t sum = 0;
        for (size_t d = 0; d < (1u << 11); d++) {
            size_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            tmp[cnt[(p[i].img >> shift) & 0x7ff]++] = p[i];
        memcpy(p, tmp, n * sizeof *p);
    }
}

/* The record order to probe in: NULL (as they come) when the batch is already in key
 * order, or the keys are not all integer-like; else a new array of record numbers. */
static uint32_t *probe_order(const lookup_t *lk, const dl_ubuf_t *in, int *rc) {
    *rc = 0;
    if (!lk->sort || lk->n_key == 0 || in->n < 2 || in->n > UINT32_MAX)
        return NULL;
    uint32_t k0 = lk->key_cols[0];
    uint64_t prev = 0;
    bool sorted = true;
    for (size_t i = 0; i < in->n; i++) {
        uint64_t x;
        if (!int_image(dl__ub_row(in, i) + k0, &x))
            return NULL;
        sorted &= i == 0 || x >= prev;
        prev = x;
    }
    if (sorted)
        return NULL;
    probe_t *p = dl_malloc(2 * in->n * sizeof *p);
    uint32_t *ord = p ? dl_malloc(in->n * sizeof *ord) : NULL;
    if (!ord) {
        dl_free(p);
        *rc = DL_ENOMEM;
        return NULL;
    }
    for (size_t i = 0; i < in->n; i++) {
        (void)int_image(dl__ub_row(in, i) + k0, &p[i].img);
        p[i].idx = (uint32_t)i;
    }
    probe_sort(p, p + in->n, in->n);
    for (size_t i = 0; i < in->n; i++)
        ord[i] = p[i].idx;
    dl_free(p);
    return ord;
}

int dl__lookup_process(dl_coll_t *n, const dl_batch_t *b) {
    const lookup_t *lk = n->ctx;
    const dl_ubuf_t *in = &b->u;
    int rc = 0;
    uint32_t *ord = probe_order(lk, in, &rc);
    if (rc)
        return rc;
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, n->arity, n->dim);
    if (!dl__batch_ubuf_reserve(&o, in->n)) {
        dl_free(ord);
        return DL_ENOMEM;
    }
    dl_value_t key[DL_ARITY_MAX];
    dl_lookup_sink_t s = {n, lk, &o, key, NULL, {0}, 0};
    for (size_t x = 0; x < in->n && !rc; x++) {
        size_t i = ord ? ord[x] : x;
        /* in key order the rows are read out of place: ask for them a few probes ahead */
        if (ord && x + 8 < in->n)
            __builtin_prefetch(dl__ub_row(in, ord[x + 8]));
        const dl_value_t *row = dl__ub_row(in, i);
        for (size_t k = 0; k < lk->n_key; k++)
            key[k] = row[lk->key_cols[k]];
        s.row = row;
        dl__time_join_pad(dl__ub_time(in, i), in->dim, lk->time, n->dim, s.t);
        s.diff = *dl__ub_diff(in, i);
        rc = lk->fn(lk->ctx, key, &s);
    }
    dl_free(ord);
    if (!rc)
        rc = dl__graph_emit_buf(n, &o);
    dl__batch_ubuf_fini(&o);
    return rc;
}
