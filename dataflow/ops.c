/*
 * ops.c: what each operator does with a batch it receives: the per-row operators (map,
 * flat_map, filter, project, selections, concat, negate, consolidate), enter and leave,
 * the iterate variable's feedback, arranging, and join. DESIGN-NOTES §2: per-row
 * operators keep the time; join's output time is the join of the input times and its
 * diff the product. Reduce is in reduce.c, captures in output.c.
 *
 * Join is computed when a batch reaches an arrangement, before it is inserted into that
 * arrangement's spine: delta ⋈ (everything the other side has received before). Each pair
 * of batches thus meets exactly once, whichever came second (a self-join adds delta ⋈
 * delta on its right role). Cost: per key of the delta, one galloping seek in each batch
 * of the other spine; nothing is rescanned.
 */
#include "dataflow/dataflow.h"

#include <assert.h>

int dl_emit_diff(dl_emitter_t *out, const dl_value_t *row, int64_t mult) {
    dl_ubuf_t *b = out->buf;
    size_t i = dl__batch_ubuf_alloc(b);
    if (i == SIZE_MAX)
        return DL_ENOMEM;
    dl_value_t *r = dl__ub_row(b, i);
    if (out->n_prefix)
        memcpy(r, out->prefix, out->n_prefix * sizeof(dl_value_t));
    if (out->arity)
        memcpy(r + out->n_prefix, row, out->arity * sizeof(dl_value_t));
    memcpy(dl__ub_time(b, i), out->time, b->dim * sizeof(uint64_t));
    *dl__ub_diff(b, i) = out->diff * mult;
    out->count++;
    return 0;
}

int dl_emit(dl_emitter_t *out, const dl_value_t *row) { return dl_emit_diff(out, row, 1); }

/* Copies every record of `in` through `keep` into a new buffer emitted by n. */
static int per_row(dl_coll_t *n, const dl_ubuf_t *in) {
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, n->arity, n->dim);
    if (!dl__batch_ubuf_reserve(&o, in->n))
        return DL_ENOMEM;
    int rc = 0;
    size_t rb = (size_t)in->arity * sizeof(dl_value_t);
    for (size_t i = 0; i < in->n && !rc; i++) {
        const dl_value_t *row = dl__ub_row(in, i);
        const uint64_t *t = dl__ub_time(in, i);
        int64_t d = *dl__ub_diff(in, i);
        switch (n->op) {
            case OP_MAP:
            case OP_FLAT_MAP: {
                dl_emitter_t e = {&o, t, d, NULL, 0, n->arity, 0};
                rc = ((dl_map_fn)n->fn)(n->ctx, row, &e);
                break;
            }
            case OP_FILTER:
                if (((dl_filter_fn)n->fn)(n->ctx, row))
                    memcpy(o.data + o.n++ * o.stride, in->data + i * in->stride, in->stride);
                break;
            case OP_FILTER_EQ:
                if (dl__batch_vcmp(row + n->n_cols, &n->val) == 0)
                    memcpy(o.data + o.n++ * o.stride, in->data + i * in->stride, in->stride);
                break;
            case OP_FILTER_COLS:
                if (dl__batch_vcmp(row + n->cols[0], row + n->cols[1]) == 0)
                    memcpy(o.data + o.n++ * o.stride, in->data + i * in->stride, in->stride);
                break;
            case OP_PROJECT: {
                size_t k = o.n++;
                dl_value_t *r = dl__ub_row(&o, k);
                for (size_t c = 0; c < n->n_cols; c++)
                    r[c] = row[n->cols[c]];
                memcpy(dl__ub_time(&o, k), t, o.dim * sizeof(uint64_t));
                *dl__ub_diff(&o, k) = d;
                break;
            }
            case OP_NEGATE:
                memcpy(o.data + o.n * o.stride, in->data + i * in->stride, in->stride);
                *dl__ub_diff(&o, o.n) = -d;
                o.n++;
                break;
            case OP_ENTER:
            case OP_LEAVE: {
                size_t k = o.n++;
                memcpy(dl__ub_row(&o, k), row, rb);
                uint64_t *ot = dl__ub_time(&o, k);
                for (size_t c = 0; c < o.dim; c++)
                    ot[c] = c < in->dim ? t[c] : 0;
                *dl__ub_diff(&o, k) = d;
                break;
            }
            default:
                rc = DL_EINTERNAL;
        }
    }
    if (!rc)
        rc = dl__graph_emit_buf(n, &o);
    dl__batch_ubuf_fini(&o);
    return rc;
}

/* The variable: out = init + delay(result - init), delay adding 1 to the loop coordinate
 * (docs/dataflow.md "Iterate"). Port 0 carries init, port 1 the result. */
static int var_process(dl_coll_t *n, const dl_ubuf_t *in, uint32_t port) {
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, n->arity, n->dim);
    size_t copies = port == 0 ? 2 : 1;
    if (!dl__batch_ubuf_reserve(&o, in->n * copies))
        return DL_ENOMEM;
    size_t last = n->dim - 1;
    for (size_t i = 0; i < in->n; i++) {
        if (port == 0) {
            memcpy(o.data + o.n * o.stride, in->data + i * in->stride, in->stride);
            o.n++;
        }
        size_t k = o.n++;
        memcpy(o.data + k * o.stride, in->data + i * in->stride, in->stride);
        dl__ub_time(&o, k)[last]++;
        if (port == 0)
            *dl__ub_diff(&o, k) = -*dl__ub_diff(&o, k);
    }
    int rc = dl__graph_emit_buf(n, &o);
    dl__batch_ubuf_fini(&o);
    return rc;
}

/* ---- join ------------------------------------------------------------------------------ */
typedef struct join_side {
    const dl_batch_t *b;
    size_t pos;
} join_side_t;

static int join_emit(dl_coll_t *j, dl_ubuf_t *o, const dl_value_t *key, const dl_value_t *lv,
                     const dl_value_t *rv, const uint64_t *tl, size_t dl_, const uint64_t *tr,
                     size_t dr, int64_t diff) {
    uint64_t t[DL_TIME_MAX_DIM];
    dl__time_join_pad(tl, dl_, tr, dr, t);
    if (j->fn) {
        dl_emitter_t e = {o, t, diff, NULL, 0, j->arity, 0};
        return ((dl_join_fn)j->fn)(j->ctx, key, lv, rv, &e);
    }
    size_t k = dl__batch_ubuf_alloc(o);
    if (k == SIZE_MAX)
        return DL_ENOMEM;
    dl_value_t *r = dl__ub_row(o, k);
    for (size_t c = 0; c < j->n_cols; c++) {
        const dl_join_col_t *jc = &j->jcols[c];
        r[c] = jc->src == DL_JOIN_KEY    ? key[jc->col]
               : jc->src == DL_JOIN_LEFT ? lv[jc->col]
                                         : rv[jc->col];
    }
    memcpy(dl__ub_time(o, k), t, o->dim * sizeof(uint64_t));
    *dl__ub_diff(o, k) = diff;
    return 0;
}

/* Joins the sorted delta (of arrangement da) with every batch of `other` (plus `extra`, a
 * batch not yet in other's spine), emitting from join node j. */
static int join_delta(dl_coll_t *j, const dl_ubuf_t *delta, bool delta_left,
                      dl_batch_t *const *other, size_t n_other, const dl_batch_t *extra) {
    size_t ka = j->jl->ka;
    size_t nb = n_other + (extra ? 1 : 0);
    if (nb == 0 || delta->n == 0)
        return 0;
    join_side_t sides_buf[64], *sides = sides_buf;
    if (nb > 64) {
        sides = dl_malloc(nb * sizeof *sides);
        if (!sides)
            return DL_ENOMEM;
    }
    for (size_t b = 0; b < n_other; b++)
        sides[b] = (join_side_t){other[b], 0};
    if (extra)
        sides[nb - 1] = (join_side_t){extra, 0};
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, j->arity, j->dim);
    int rc = 0;
    size_t i = 0;
    while (i < delta->n && !rc) {
        const dl_value_t *key = dl__ub_row(delta, i);
        size_t iend = i + 1;
        while (iend < delta->n && dl__batch_rcmp(dl__ub_row(delta, iend), key, ka) == 0)
            iend++;
        for (size_t b = 0; b < nb && !rc; b++) {
            const dl_ubuf_t *u = &sides[b].b->u;
            size_t p = dl__spine_seek(sides[b].b, ka, key, sides[b].pos), q = p;
            while (q < u->n && dl__batch_rcmp(dl__ub_row(u, q), key, ka) == 0)
                q++;
            sides[b].pos = q;
            for (size_t x = i; x < iend && !rc; x++) {
                const dl_value_t *dv = dl__ub_row(delta, x) + ka;
                const uint64_t *dt = dl__ub_time(delta, x);
                int64_t dd = *dl__ub_diff(delta, x);
                for (size_t y = p; y < q && !rc; y++) {
                    const dl_value_t *ov = dl__ub_row(u, y) + ka;
                    const uint64_t *ot = dl__ub_time(u, y);
                    int64_t od = *dl__ub_diff(u, y);
                    if (delta_left)
                        rc = join_emit(j, &o, key, dv, ov, dt, delta->dim, ot, u->dim, dd * od);
                    else
                        rc = join_emit(j, &o, key, ov, dv, ot, u->dim, dt, delta->dim, od * dd);
                }
            }
        }
        i = iend;
    }
    if (sides != sides_buf)
        dl_free(sides);
    if (!rc)
        rc = dl__graph_emit_buf(j, &o);
    dl__batch_ubuf_fini(&o);
    return rc;
}

int dl__ops_join_init(dl_coll_t *j) {
    int rc = 0;
    for (size_t b = 0; b < j->n_init_l && !rc; b++)
        rc = join_delta(j, &j->init_l[b]->u, true, j->init_r, j->n_init_r, NULL);
    for (size_t i = 0; i < j->n_init_l; i++)
        dl__batch_unref(j->init_l[i]);
    for (size_t i = 0; i < j->n_init_r; i++)
        dl__batch_unref(j->init_r[i]);
    dl_free(j->init_l);
    dl_free(j->init_r);
    j->init_l = j->init_r = NULL;
    j->n_init_l = j->n_init_r = 0;
    return rc;
}

int dl__ops_arr_deliver(dl_arr_t *a, dl_batch_t *delta) {
    int rc = 0;
    for (size_t r = 0; r < a->n_readers && !rc; r++) {
        const dl_reader_t *rd = &a->readers[r];
        switch (rd->kind) {
            case RD_JOIN_LEFT:
                rc = join_delta(rd->node, &delta->u, true, rd->node->jr->spine.batches,
                                rd->node->jr->spine.n, NULL);
                break;
            case RD_JOIN_RIGHT:
                rc = join_delta(rd->node, &delta->u, false, rd->node->jl->spine.batches,
                                rd->node->jl->spine.n, rd->node->jl == a ? delta : NULL);
                break;
            case RD_REDUCE:
                if (rd->node->jl == a)
                    rc = dl__reduce_note(rd->node, delta);
                break;
            case RD_TRACE:
                break;
        }
    }
    if (rc)
        return rc;
    rc = dl__graph_emit(a->node, delta);
    if (rc)
        return rc;
    if (!dl__graph_arr_keeps(a)) { /* every reader has taken the delta: nothing reads it later */
        a->dropped = true;
        return 0;
    }
    dl__batch_ref(delta);
    return dl__spine_insert(&a->spine, delta);
}

/* Arranges one incoming batch: project to key ++ val, consolidate, deliver. When the
 * queue held the only reference and the projected record is not wider, the buffer is
 * taken and projected in place (record i is read whole before it is written at a position
 * that does not reach record i+1), saving a copy of the whole batch. */
static int arrange_process(dl_coll_t *n, dl_batch_t *in_b) {
    dl_arr_t *a = n->arr;
    const dl_ubuf_t *in = &in_b->u;
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, n->arity, n->dim);
    bool in_place = in_b->refs == 1 && o.stride <= in->stride;
    if (in_place) {
        o.data = in_b->u.data;
        o.cap = in_b->u.cap * in_b->u.stride / o.stride;
        in_b->u.data = NULL;
        in_b->u.cap = 0;
    } else if (!dl__batch_ubuf_reserve(&o, in->n)) {
        return DL_ENOMEM;
    }
    const uint8_t *src = in_place ? o.data : in->data;
    size_t in_stride = in->stride, in_n = in->n, in_ar = in->arity;
    size_t tb = in->dim * sizeof(uint64_t) + sizeof(int64_t);
    dl_value_t row[DL_ARITY_MAX];
    uint64_t td[DL_TIME_MAX_DIM + 1];
    for (size_t i = 0; i < in_n; i++) {
        const uint8_t *rec = src + i * in_stride;
        memcpy(row, rec, in_ar * sizeof(dl_value_t));
        memcpy(td, rec + in_ar * sizeof(dl_value_t), tb);
        dl_value_t *r = dl__ub_row(&o, i);
        for (size_t c = 0; c < a->ka; c++)
            r[c] = row[a->key_cols[c]];
        for (size_t c = 0; c < a->va; c++)
            r[a->ka + c] = row[a->val_cols[c]];
        memcpy(dl__ub_time(&o, i), td, tb);
    }
    o.n = in_n;
    if (in_place)
        in_b->u.n = 0;
    if (!dl__batch_consolidate(&o)) {
        dl__batch_ubuf_fini(&o);
        return DL_ENOMEM;
    }
    if (o.n == 0) {
        dl__batch_ubuf_fini(&o);
        return 0;
    }
    dl_batch_t *b = dl__batch_new(&o, true);
    if (!b) {
        dl__batch_ubuf_fini(&o);
        return DL_ENOMEM;
    }
    int rc = dl__ops_arr_deliver(a, b);
    dl__batch_unref(b);
    return rc;
}

int dl__ops_process(dl_coll_t *n, dl_batch_t *b, uint32_t port) {
    assert(!b->u.narrow); /* operators copy whole records of messages */
    switch (n->op) {
        case OP_CONCAT:
            return dl__graph_emit(n, b);
        case OP_CONSOLIDATE: {
            dl_ubuf_t o;
            dl__batch_ubuf_init(&o, n->arity, n->dim);
            if (!dl__batch_ubuf_reserve(&o, b->u.n))
                return DL_ENOMEM;
            memcpy(o.data, b->u.data, b->u.n * b->u.stride);
            o.n = b->u.n;
            int rc = dl__batch_consolidate(&o) ? dl__graph_emit_buf(n, &o) : DL_ENOMEM;
            dl__batch_ubuf_fini(&o);
            return rc;
        }
        case OP_ARRANGE:
            return arrange_process(n, b);
        case OP_LOOKUP:
            return dl__lookup_process(n, b);
        case OP_COMBINE:
            return dl__combine_process(n, b);
        case OP_VAR:
            return var_process(n, &b->u, port);
        case OP_CAPTURE: /* an orphan node (dl_capture_new failed half-way) drops its input */
            return n->cap ? dl__output_capture_add(n->cap, &b->u) : 0;
        case OP_INPUT:
        case OP_JOIN:
        case OP_REDUCE:
            return DL_EINTERNAL;
        default:
            return per_row(n, &b->u);
    }
}
