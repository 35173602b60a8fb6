/*
 * combine.c: linear pre-aggregation (a combiner, as MapReduce's): each batch's updates
 * are folded per (key, time) into one row key ++ [sum of diffs, sum of diff * v for each
 * value column] with diff +1. Any aggregate that depends only on those sums (a LINEAR
 * reduce's COUNT and SUM, reduce-linear.md) computed by summing the combined columns gives
 * what it gives over the original updates: sums of sums. The rows themselves are not the
 * input's rows, so only such readers may consume the output (whoever builds the graph
 * guarantees it); a key whose updates cancel within a batch contributes nothing (zero
 * sums are not emitted), and one whose total count reaches 0 across batches keeps a row
 * of zero totals downstream, which the reader must drop (the count is a column).
 *
 * It is what makes a grouped aggregate over a large one-shot input cheap: the batch is
 * folded through a hash table (one probe per update) instead of being sorted into an
 * arrangement; the arrangement before the reduce then holds a row per key and batch.
 * Per-update cost, no state kept between batches. DESIGN-NOTES §2: per-update operator,
 * times unchanged. docs/datalog.md "One-shot plans", docs/dataflow.md "Operators";
 * tests/dataflow/test_lookup.c.
 */
#include "dataflow/dataflow.h"

typedef struct combine {
    uint32_t n_key, n_sum;
    uint32_t key_cols[DL_ARITY_MAX];
    uint32_t sum_cols[DL_ARITY_MAX];
} combine_t;

dl_coll_t *dl_combine(dl_coll_t *in, const uint32_t *key_cols, size_t n_key,
                      const uint32_t *sum_cols, size_t n_sum, dl_error_t *err) {
    if (!in || (!key_cols && n_key) || (!sum_cols && n_sum)) {
        dl_error_set(err, DL_EINVAL, "dl_combine: NULL argument");
        return NULL;
    }
    if (n_key + 1 + n_sum > DL_ARITY_MAX) {
        dl_error_set(err, DL_EARITY, "dl_combine: too many columns");
        return NULL;
    }
    for (size_t i = 0; i < n_key + n_sum; i++) {
        uint32_t c = i < n_key ? key_cols[i] : sum_cols[i - n_key];
        if (c >= in->arity) {
            dl_error_set(err, DL_EARITY, "dl_combine: column %u out of range (arity %u)", c,
                         in->arity);
            return NULL;
        }
    }
    /* The parameters live in the node's cols array (freed with the node): n_key, n_sum,
     * the key columns, the sum columns. */
    uint32_t *p = dl_malloc((2 + n_key + n_sum) * sizeof *p);
    if (!p) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    p[0] = (uint32_t)n_key;
    p[1] = (uint32_t)n_sum;
    if (n_key)
        memcpy(p + 2, key_cols, n_key * sizeof *p);
    if (n_sum)
        memcpy(p + 2 + n_key, sum_cols, n_sum * sizeof *p);
    dl_coll_t *n = dl__graph_node_new(in->scope, OP_COMBINE, n_key + 1 + n_sum, &in, 1, err);
    if (!n) {
        dl_free(p);
        return NULL;
    }
    n->cols = p;
    n->n_cols = 2 + n_key + n_sum;
    return n;
}

/* Hash of a record's key columns and time (values are canonical, text interned: bitwise
 * equality is value equality, as groups.c relies on). */
static uint64_t rec_hash(const dl_value_t *row, const uint32_t *kc, size_t nk, const uint64_t *t,
                         size_t dim) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < nk; i++)
        h = dl__hash_combine(h, ((uint64_t)row[kc[i]].type << 56) ^ row[kc[i]].as.bits);
    for (size_t i = 0; i < dim; i++)
        h = dl__hash_combine(h, t[i]);
    return h;
}

int dl__combine_process(dl_coll_t *n, const dl_batch_t *b) {
    const dl_ubuf_t *in = &b->u;
    const uint32_t *kc = n->cols + 2, *sc = n->cols + 2 + n->cols[0];
    size_t nk = n->cols[0], ns = n->cols[1], dim = in->dim;
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, n->arity, n->dim);
    if (in->n == 0)
        return 0;
    /* Open addressing over output record numbers (+1; 0 empty), at most half full. */
    size_t n_slots = 16;
    uint32_t *slots = dl_calloc(n_slots, sizeof *slots);
    if (!slots)
        return DL_ENOMEM;
    uint32_t ident[DL_ARITY_MAX]; /* an output record's key columns: 0 .. nk-1 */
    for (size_t c = 0; c < nk; c++)
        ident[c] = (uint32_t)c;
    int rc = 0;
    for (size_t i = 0; i < in->n && !rc; i++) {
        const dl_value_t *row = dl__ub_row(in, i);
        const uint64_t *t = dl__ub_time(in, i);
        int64_t d = *dl__ub_diff(in, i);
        if (2 * (o.n + 1) > n_slots) {
            size_t ns2 = 2 * n_slots;
            uint32_t *s2 = dl_calloc(ns2, sizeof *s2);
            if (!s2) {
                rc = DL_ENOMEM;
                break;
            }
            for (size_t k = 0; k < o.n; k++) {
                size_t h = (size_t)rec_hash(dl__ub_row(&o, k), ident, nk, dl__ub_time(&o, k), dim) &
                           (ns2 - 1);
                while (s2[h])
                    h = (h + 1) & (ns2 - 1);
                s2[h] = (uint32_t)(k + 1);
            }
            dl_free(slots);
            slots = s2;
            n_slots = ns2;
        }
        size_t h = (size_t)rec_hash(row, kc, nk, t, dim) & (n_slots - 1);
        size_t k = SIZE_MAX;
        while (slots[h]) {
            size_t cand = slots[h] - 1;
            const dl_value_t *r = dl__ub_row(&o, cand);
            bool eq = memcmp(dl__ub_time(&o, cand), t, dim * sizeof *t) == 0;
            for (size_t c = 0; eq && c < nk; c++)
                eq = r[c].type == row[kc[c]].type && r[c].as.bits == row[kc[c]].as.bits;
            if (eq) {
                k = cand;
                break;
            }
            h = (h + 1) & (n_slots - 1);
        }
        if (k == SIZE_MAX) {
            k = dl__batch_ubuf_alloc(&o);
            if (k == SIZE_MAX) {
                rc = DL_ENOMEM;
                break;
            }
            dl_value_t *r = dl__ub_row(&o, k);
            for (size_t c = 0; c < nk; c++)
                r[c] = row[kc[c]];
            for (size_t c = 0; c <= ns; c++)
                r[nk + c] = dl_value_int(0);
            memcpy(dl__ub_time(&o, k), t, dim * sizeof *t);
            *dl__ub_diff(&o, k) = 1;
            slots[h] = (uint32_t)(k + 1);
        }
        dl_value_t *acc = dl__ub_row(&o, k) + nk;
        if (__builtin_add_overflow(acc[0].as.i, d, &acc[0].as.i)) {
            rc = DL_ERANGE;
            break;
        }
        for (size_t c = 0; c < ns && !rc; c++) {
            const dl_value_t *v = &row[sc[c]];
            int64_t x;
            if (v->type != DL_T_INT)
                rc = DL_ETYPE;
            else if (__builtin_mul_overflow(v->as.i, d, &x) ||
                     __builtin_add_overflow(acc[1 + c].as.i, x, &acc[1 + c].as.i))
                rc = DL_ERANGE;
        }
    }
    dl_free(slots);
    /* Keys whose updates cancelled: nothing to say. */
    size_t w = 0;
    for (size_t k = 0; k < o.n && !rc; k++) {
        const dl_value_t *acc = dl__ub_row(&o, k) + nk;
        bool zero = true;
        for (size_t c = 0; c <= ns && zero; c++)
            zero = acc[c].as.i == 0;
        if (zero)
            continue;
        if (w != k)
            memcpy(o.data + w * o.stride, o.data + k * o.stride, o.stride);
        w++;
    }
    o.n = w;
    if (!rc && o.n)
        rc = dl__graph_emit_buf(n, &o);
    dl__batch_ubuf_fini(&o);
    return rc;
}
