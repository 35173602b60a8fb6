/*
 * output.c: getting results out of a graph: captures (per completed time, one
 * consolidated diff, by callback or queued for dl_capture_pop) and traces (readers of an
 * arrangement holding back its compaction, reading accumulated contents at a time).
 * DESIGN-NOTES §1: a time's diff is handed out only once it is complete. Does not decide
 * completeness (graph.c computes frontiers).
 */
#include "dataflow/dataflow.h"

dl_capture_t *dl_capture_new(dl_coll_t *c, dl_capture_fn fn, void *ctx, dl_error_t *err) {
    if (!c) {
        dl_error_set(err, DL_EINVAL, "NULL collection");
        return NULL;
    }
    dl_capture_t *cap = dl_calloc(1, sizeof *cap);
    if (!cap) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    dl_coll_t *n = dl__graph_node_new(c->scope, OP_CAPTURE, c->arity, &c, 1, err);
    if (!n) {
        dl_free(cap);
        return NULL;
    }
    n->cap = cap;
    cap->node = n;
    cap->fn = fn;
    cap->ctx = ctx;
    dl__spine_init(&cap->pend, c->arity, 0, c->dim);
    return cap;
}

static void capq_fini(dl_capq_t *q) {
    dl_free(q->time);
    dl_free(q->vals);
    dl_free(q->diffs);
    memset(q, 0, sizeof *q);
}

void dl__output_capture_free(dl_capture_t *c) {
    if (!c)
        return;
    dl__spine_fini(&c->pend);
    for (size_t i = 0; i < c->q_n; i++)
        capq_fini(&c->q[(c->q_head + i) % c->q_cap]);
    dl_free(c->q);
    dl_free(c->pop_time);
    dl_free(c->pop_vals);
    dl_free(c->pop_diffs);
    dl_free(c);
}

static int deliver_entry(dl_capture_t *c, dl_capq_t *ep);

/* Hands records [from, to) of `done` (consolidated, one time; rows are `skip` time
 * columns, then the row) to the callback, or queues them for dl_capture_pop. */
static int deliver(dl_capture_t *c, const uint64_t *t, const dl_ubuf_t *done, size_t skip,
                   size_t from, size_t to) {
    size_t ar = c->pend.ka, dim = c->pend.dim, n = to - from;
    dl_capq_t e = {0};
    e.n = n;
    e.time = dl_malloc(dim * sizeof *e.time);
    e.vals = dl_malloc((n * ar + 1) * sizeof *e.vals);
    e.diffs = dl_malloc((n + 1) * sizeof *e.diffs);
    if (!e.time || !e.vals || !e.diffs) {
        capq_fini(&e);
        return DL_ENOMEM;
    }
    memcpy(e.time, t, dim * sizeof *e.time);
    for (size_t i = 0; i < n; i++) {
        memcpy(e.vals + i * ar, dl__ub_row(done, from + i) + skip, ar * sizeof *e.vals);
        e.diffs[i] = *dl__ub_diff(done, from + i);
    }
    return deliver_entry(c, &e);
}

/* Hands a built diff (taken) to the callback, or queues it for dl_capture_pop. */
static int deliver_entry(dl_capture_t *c, dl_capq_t *ep) {
    dl_capq_t e = *ep;
    size_t ar = c->pend.ka, dim = c->pend.dim, n = e.n;
    if (c->fn) {
        dl_diff_t d = {e.time, dim, ar, n, e.vals, e.diffs};
        int rc = c->fn(c->ctx, &d);
        capq_fini(&e);
        return rc;
    }
    if (c->q_n == c->q_cap) {
        size_t nc = c->q_cap ? c->q_cap * 2 : 8;
        dl_capq_t *q = dl_malloc(nc * sizeof *q);
        if (!q) {
            capq_fini(&e);
            return DL_ENOMEM;
        }
        for (size_t i = 0; i < c->q_n; i++)
            q[i] = c->q[(c->q_head + i) % c->q_cap];
        dl_free(c->q);
        c->q = q;
        c->q_cap = nc;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_n) % c->q_cap] = e;
    c->q_n++;
    return 0;
}

/* Delivers batch b (one time, consolidated; only the capture references it) without a
 * copy of its rows: the diffs are taken out, then the rows are packed to the front of
 * the batch's own buffer, which becomes the delivered values (a bulk load's first diff is
 * the whole result: a second copy of it was the peak of memory). b is emptied. */
static int deliver_owned(dl_capture_t *c, const uint64_t *t, dl_batch_t *b) {
    dl_ubuf_t *u = &b->u;
    size_t ar = c->pend.ka, dim = c->pend.dim, n = u->n, rb = ar * sizeof(dl_value_t);
    dl_capq_t e = {0};
    e.n = n;
    e.time = dl_malloc(dim * sizeof *e.time + 1);
    e.diffs = dl_malloc((n + 1) * sizeof *e.diffs);
    if (!e.time || !e.diffs) {
        capq_fini(&e);
        return DL_ENOMEM;
    }
    memcpy(e.time, t, dim * sizeof *e.time);
    for (size_t i = 0; i < n; i++)
        e.diffs[i] = *dl__ub_diff(u, i);
    for (size_t i = 0; i < n; i++) /* front to back: a row never moves past its own start */
        if (rb && (uint8_t *)dl__ub_row(u, i) != u->data + i * rb)
            memmove(u->data + i * rb, dl__ub_row(u, i), rb);
    if (rb == 0 || !u->data) {
        e.vals = dl_malloc(sizeof *e.vals);
        if (!e.vals) {
            capq_fini(&e);
            return DL_ENOMEM;
        }
    } else {
        e.vals = (dl_value_t *)u->data; /* taken from the batch */
        dl_value_t *v = dl_realloc(e.vals, n * rb);
        if (v)
            e.vals = v;
        u->data = NULL;
    }
    u->n = u->cap = 0;
    return deliver_entry(c, &e);
}

/* Pending updates are kept as a spine of consolidated sorted runs (spine.c): a long run
 * (an iterate converging, a bulk load) can send many updates that cancel or repeat before
 * its time completes, and the runs merge in place as they grow, so the capture holds about
 * its distinct (row, time) pairs and never needs scratch space proportional to them. */
int dl__output_capture_add(dl_capture_t *c, const dl_ubuf_t *u) {
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, u->arity, u->dim);
    if (!dl__batch_ubuf_reserve(&o, u->n))
        return DL_ENOMEM;
    memcpy(o.data, u->data, u->n * u->stride);
    o.n = u->n;
    if (!dl__batch_consolidate(&o)) {
        dl__batch_ubuf_fini(&o);
        return DL_ENOMEM;
    }
    if (o.n == 0)
        return 0;
    dl_batch_t *b = dl__batch_new(&o, true);
    if (!b) {
        dl__batch_ubuf_fini(&o);
        return DL_ENOMEM;
    }
    return dl__spine_insert(&c->pend, b);
}

/* True when every pending record is at one time that f has passed (the usual step: one
 * completed time): then the runs merge into one sorted diff with nothing re-laid. */
static bool one_complete_time(const dl_spine_t *p, const dl_antichain_t *f) {
    const uint64_t *t0 = dl__ub_time(&p->batches[0]->u, 0);
    if (dl_antichain_less_equal(f, t0))
        return false;
    for (size_t k = 0; k < p->n; k++) {
        const dl_ubuf_t *u = &p->batches[k]->u;
        for (size_t i = 0; i < u->n; i++)
            if (memcmp(dl__ub_time(u, i), t0, p->dim * sizeof *t0) != 0)
                return false;
    }
    return true;
}

static void pend_reset(dl_spine_t *p) {
    size_t ar = p->ka, dim = p->dim;
    dl__spine_fini(p);
    dl__spine_init(p, ar, 0, dim);
}

int dl__output_capture_step(dl_capture_t *c, const dl_antichain_t *f) {
    dl_spine_t *p = &c->pend;
    if (p->records == 0)
        return 0;
    size_t dim = p->dim, ar = p->ka;
    if (one_complete_time(p, f)) {
        uint64_t t[DL_TIME_MAX_DIM];
        memcpy(t, dl__ub_time(&p->batches[0]->u, 0), dim * sizeof *t);
        size_t fuel = 0;
        int rc = 0;
        while (p->n > 1 && (rc = dl__spine_maintain(p, &fuel)) > 0) {
        }
        if (rc < 0)
            return rc;
        rc = p->n ? deliver_owned(c, t, p->batches[0]) : 0;
        pend_reset(p);
        return rc;
    }
    /* Completed records are re-laid as (time ++ row), times as order-preserving ints, so
     * that one consolidation groups them by time and sorts each time's rows. */
    dl_ubuf_t done, keep;
    dl__batch_ubuf_init(&done, ar + dim, 0);
    dl__batch_ubuf_init(&keep, ar, dim);
    int rc = 0;
    for (size_t b = 0; b < p->n && !rc; b++) {
        const dl_ubuf_t *u = &p->batches[b]->u;
        for (size_t i = 0; i < u->n && !rc; i++) {
            const uint64_t *t = dl__ub_time(u, i);
            if (dl_antichain_less_equal(f, t)) {
                if (!dl__batch_ubuf_push(&keep, dl__ub_row(u, i), t, *dl__ub_diff(u, i)))
                    rc = DL_ENOMEM;
                continue;
            }
            size_t k = dl__batch_ubuf_alloc(&done);
            if (k == SIZE_MAX) {
                rc = DL_ENOMEM;
                break;
            }
            dl_value_t *r = dl__ub_row(&done, k);
            for (size_t d = 0; d < dim; d++)
                r[d] = dl_value_int((int64_t)(t[d] ^ 0x8000000000000000ull));
            memcpy(r + dim, dl__ub_row(u, i), ar * sizeof *r);
            *dl__ub_diff(&done, k) = *dl__ub_diff(u, i);
        }
    }
    if (!rc && !dl__batch_consolidate(&done))
        rc = DL_ENOMEM;
    if (!rc) {
        pend_reset(p);
        if (keep.n)
            rc = dl__output_capture_add(c, &keep);
    }
    uint64_t t[DL_TIME_MAX_DIM];
    for (size_t i = 0; i < done.n && !rc;) {
        const dl_value_t *r = dl__ub_row(&done, i);
        for (size_t d = 0; d < dim; d++)
            t[d] = (uint64_t)r[d].as.i ^ 0x8000000000000000ull;
        size_t j = i + 1;
        while (j < done.n && dl__batch_rcmp(dl__ub_row(&done, j), r, dim) == 0)
            j++;
        rc = deliver(c, t, &done, dim, i, j);
        i = j;
    }
    dl__batch_ubuf_fini(&done);
    dl__batch_ubuf_fini(&keep);
    return rc;
}

int dl_capture_pop(dl_capture_t *cap, dl_diff_t *out) {
    if (!cap || !out || cap->q_n == 0)
        return 0;
    dl_capq_t e = cap->q[cap->q_head];
    cap->q_head = (cap->q_head + 1) % cap->q_cap;
    cap->q_n--;
    dl_free(cap->pop_time);
    dl_free(cap->pop_vals);
    dl_free(cap->pop_diffs);
    cap->pop_time = e.time;
    cap->pop_vals = e.vals;
    cap->pop_diffs = e.diffs;
    out->time = e.time;
    out->dim = cap->pend.dim;
    out->arity = cap->pend.ka;
    out->n = e.n;
    out->rows = e.vals;
    out->diffs = e.diffs;
    return 1;
}

/* ---- traces ---------------------------------------------------------------------------- */
dl_trace_t *dl_trace_new(dl_arr_t *a, dl_error_t *err) {
    if (!a) {
        dl_error_set(err, DL_EINVAL, "NULL arrangement");
        return NULL;
    }
    if (a->dropped)
        return dl__graph_no_history(err, a);
    dl_trace_t *t = dl_calloc(1, sizeof *t);
    if (!t) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    t->arr = a;
    dl_antichain_init(&t->frontier, a->spine.dim);
    if (dl_antichain_copy(&t->frontier, &a->spine.since) ||
        dl__graph_arr_add_reader(a, RD_TRACE, NULL, t)) {
        dl_antichain_fini(&t->frontier);
        dl_free(t);
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    return t;
}

void dl_trace_free(dl_trace_t *t) {
    if (!t)
        return;
    dl_arr_t *a = t->arr;
    if (a) {
        for (size_t i = 0; i < a->n_readers; i++)
            if (a->readers[i].kind == RD_TRACE && a->readers[i].trace == t) {
                memmove(a->readers + i, a->readers + i + 1,
                        (a->n_readers - i - 1) * sizeof *a->readers);
                a->n_readers--;
                break;
            }
    }
    dl_antichain_fini(&t->frontier);
    dl_free(t);
}

int dl_trace_advance(dl_trace_t *t, const dl_antichain_t *f, dl_error_t *err) {
    if (!t || !f || !t->arr)
        return dl_error_set(err, DL_EINVAL, "NULL or detached trace");
    if (f->dim != t->frontier.dim)
        return dl_error_set(err, DL_EINVAL, "frontier dim mismatch");
    if (!dl_antichain_le(&t->frontier, f))
        return dl_error_set(err, DL_ETIME, "trace frontier would move backward");
    int rc = dl_antichain_copy(&t->frontier, f);
    return rc ? dl_error_set(err, rc, "out of memory") : 0;
}

int dl_trace_advance_to(dl_trace_t *t, const uint64_t *time, dl_error_t *err) {
    if (!t || !time)
        return dl_error_set(err, DL_EINVAL, "NULL argument");
    uint64_t buf[DL_TIME_MAX_DIM];
    dl_antichain_t f = dl__antichain_one(buf, time, t->frontier.dim);
    return dl_trace_advance(t, &f, err);
}

typedef struct rd_entry {
    const dl_value_t *row;
    int64_t d;
} rd_entry_t;

static int read_impl(dl_trace_t *t, const dl_value_t *key, const uint64_t *time, dl_read_fn fn,
                     void *ctx, dl_error_t *err) {
    if (!t || !time || !fn || !t->arr)
        return dl_error_set(err, DL_EINVAL, "NULL argument or detached trace");
    if (!dl_antichain_less_equal(&t->frontier, time))
        return dl_error_set(err, DL_ETIME, "read time is not beyond the trace frontier");
    const dl_spine_t *s = &t->arr->spine;
    size_t rs = (size_t)s->ka + s->va;
    /* Per batch, the records (of key, if given) at times <= time; then a k-way merge by
     * row over the sorted batches, summing diffs. */
    size_t nb = s->n;
    size_t *pos = dl_calloc(nb + 1, sizeof *pos), *end = dl_calloc(nb + 1, sizeof *end);
    if (!pos || !end) {
        dl_free(pos);
        dl_free(end);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    for (size_t b = 0; b < nb; b++) {
        const dl_ubuf_t *u = &s->batches[b]->u;
        if (key) {
            pos[b] = dl__spine_seek(s->batches[b], s->ka, key, 0);
            size_t e = pos[b];
            while (e < u->n && dl__batch_rcmp(dl__ub_row(u, e), key, s->ka) == 0)
                e++;
            end[b] = e;
        } else {
            end[b] = u->n;
        }
    }
    int rc = 0;
    for (;;) {
        const dl_value_t *min = NULL;
        for (size_t b = 0; b < nb; b++)
            if (pos[b] < end[b]) {
                const dl_value_t *r = dl__ub_row(&s->batches[b]->u, pos[b]);
                if (!min || dl__batch_rcmp(r, min, rs) < 0)
                    min = r;
            }
        if (!min)
            break;
        int64_t sum = 0;
        for (size_t b = 0; b < nb; b++) {
            const dl_ubuf_t *u = &s->batches[b]->u;
            while (pos[b] < end[b] && dl__batch_rcmp(dl__ub_row(u, pos[b]), min, rs) == 0) {
                if (dl_time_le(dl__ub_time(u, pos[b]), time, s->dim))
                    sum += *dl__ub_diff(u, pos[b]);
                pos[b]++;
            }
        }
        /* min still points into a live batch (positions only moved past it). */
        if (sum != 0) {
            rc = fn(ctx, min, min + s->ka, sum);
            if (rc)
                break;
        }
    }
    dl_free(pos);
    dl_free(end);
    if (rc)
        return dl_error_set(err, rc, "read callback failed");
    return 0;
}

int dl_trace_read(dl_trace_t *t, const uint64_t *time, dl_read_fn fn, void *ctx, dl_error_t *err) {
    return read_impl(t, NULL, time, fn, ctx, err);
}

int dl_trace_read_key(dl_trace_t *t, const dl_value_t *key, const uint64_t *time, dl_read_fn fn,
                      void *ctx, dl_error_t *err) {
    if (!key && t && t->arr && t->arr->ka)
        return dl_error_set(err, DL_EINVAL, "NULL key");
    return read_impl(t, key, time, fn, ctx, err);
}
