/*
 * reduce.c: reduce by key (count, sum, min, max, avg, distinct, threshold, general, and the
 * linear count/sum/avg of note 5), the operator that must be right under partially ordered
 * time. DESIGN-NOTES §2: the output for a key at time t is f(input accumulated at t),
 * re-evaluated at every time that is a join of the key's input times. Follows docs/dataflow.md
 * "Reduce and interesting times". Does not arrange its input (the caller passes an arrangement) and
 * never rescans keys that did not change.
 *
 * Design notes.
 * 1. Pending work is a set of (key, time) pairs ("interesting times"). A delta of the
 *    input adds (key, t) for each of its updates. A pair is processed once t is complete
 *    (no element of the input frontier is <= t); until then it is a capability: the
 *    reduce may still produce output at t (graph.c counts it in frontiers).
 * 2. For one key, complete times are processed in lexicographic order (a linear extension
 *    of the product order), so every earlier time <= t has been settled before t. At t:
 *    desired = f(input accumulated at t); current = output accumulated at t (trace plus
 *    what this step produced); the difference is emitted at t.
 * 3. After processing t, for every time h of the key's input and output history, join(t,
 *    h) is interesting unless it equals t: it is added to this step's list if complete,
 *    else to pending. Iterating this closes the set under joins: any join of new times
 *    with history times is reached by successive joins, which is what 3-D cases need
 *    ((1,0,0), (0,1,0), (0,0,1) yield (1,1,0), then (1,1,1)). Pairwise joins alone are
 *    not enough, and neither is evaluating at arriving times only.
 * 4. Evaluating at an extra time is harmless (the difference is empty); missing one is
 *    wrong: hence history includes the output times too.
 * 5. LINEAR (count, sum, avg of int64 columns; docs/reduce-linear.md): the output at t
 *    depends only on per-key sums of weights, so each input update (key, val, t, d) is
 *    exploded on arrival (dl__reduce_note) into updates of a private accumulator spine
 *    with rows key ++ [slot] and the weight in the diff: slot 0 carries d (count), and
 *    each summed column j carries d * hi in slot 1+2j and d * lo in slot 2+2j, where
 *    val = hi * 2^32 + lo with 0 <= lo < 2^32. The halves keep every accumulated diff
 *    far inside int64 (no wrap in spine consolidation), and the exact sum is rebuilt at
 *    evaluation, where overflow of a SUM result is DL_ERANGE. The accumulator spine is
 *    compacted to the input frontier after every step (every later evaluation time is
 *    beyond it, as for the input arrangement), so a key's accumulator history is a few
 *    records per spine batch: process_key reads it instead of the key's input history,
 *    and the interesting-time machinery (notes 1-4) is unchanged.
 * 6. TOTAL (a LINEAR reduce whose time has one coordinate): times are totally ordered, so
 *    a key's complete times arrive in increasing order and each evaluation only adds to
 *    the previous one. The state is then one row of slot sums per key in a hash table
 *    (groups.c), valid at the key's last evaluated time; input updates wait in `fut`
 *    (key ++ summed values) until their time is complete, then, one time at a time in
 *    increasing order, are added to their key's sums, and the key's old and new output
 *    rows are computed from the sums before and after. No accumulator spine, no pending
 *    pairs, no reading of the output's history (its arrangement keeps none unless another
 *    reader needs it), and no interesting times beyond the input's: under a total order
 *    the join of two times is one of them. This is DD's count_total/threshold_total idea.
 */
#include "dataflow/dataflow.h"

#include <stdlib.h>

typedef struct entry {
    const dl_value_t *v;
    const uint64_t *t;
    int64_t d;
} entry_t;

typedef struct scratch {
    entry_t *inp, *outp, *acc, *tmp;
    size_t n_inp, n_outp, cap_inp, cap_outp, cap_acc, cap_tmp;
    uint64_t *times, *hist; /* dim-strided */
    size_t n_times, cap_times, n_hist, cap_hist;
    dl_value_t *vals;
    int64_t *counts;
    size_t cap_vals, cap_counts;
    dl_ubuf_t des;            /* desired output values at t */
    dl_ubuf_t newo;           /* outputs produced this step for the current key: row = out vals */
    size_t *pos_in, *pos_out; /* per-batch cursors into the input and output spines */
    size_t cap_pos, cap_pos_out;
    /* Seek hints from the prefetches: a ring of HINT_RING keys, per batch of each spine
     * (see dl__spine_prefetch); cur_* point at the current key's row of the ring. */
    size_t *hint_in, *hint_out;
    size_t cap_hint_in, cap_hint_out;
    const size_t *cur_in, *cur_out;
} scratch_t;

struct dl_reduce_state {
    dl_reduce_spec_t spec;
    uint32_t ka, va_in, va_out, dim;
    dl_ubuf_t pending; /* rows: keys; times: pending times; diff unused */
    uint32_t *slots;   /* open addressing: index+1 into pending, 0 empty */
    size_t n_slots;    /* power of two */
    size_t touched;    /* records read from spines, exploded or produced (stats) */
    /* LINEAR (note 5) */
    dl_linear_agg_t *aggs;
    uint32_t *agg_sum; /* per aggregate: its summed-column index (SUM, AVG) */
    uint32_t *sum_cols;
    size_t n_sum;
    dl_spine_t acc; /* rows key ++ [slot]; diff = weight */
    /* TOTAL (note 6) */
    bool total;
    dl_groups_t groups; /* key -> slot sums at its last evaluated time */
    dl_ubuf_t fut;      /* input not yet evaluated: rows key ++ summed values */
    uint64_t fut_min;   /* least time in fut (when fut.n > 0) */
    uint32_t run;       /* stamps the groups touched at the time being evaluated */
    uint32_t *tids;     /* those groups */
    uint64_t *old;      /* and their sums before it (ns each) */
    size_t cap_tids;
    /* process_key's buffers, kept from step to step (a step of one changed key would
     * otherwise allocate a dozen of them); trimmed when a step needed large ones. */
    scratch_t sc;
};

static uint64_t pair_hash(const dl_value_t *key, size_t ka, const uint64_t *t, size_t dim) {
    uint64_t h = 0x12345;
    for (size_t i = 0; i < ka; i++)
        h = dl__hash_combine(h, ((uint64_t)key[i].type << 56) ^ key[i].as.bits);
    for (size_t i = 0; i < dim; i++)
        h = dl__hash_combine(h, t[i]);
    return h;
}

static int pending_rehash(dl_reduce_state_t *r, size_t want) {
    size_t ns = 16;
    while (ns < want * 2)
        ns *= 2;
    if (ns != r->n_slots) {
        uint32_t *s = dl_realloc(r->slots, ns * sizeof *s);
        if (!s)
            return DL_ENOMEM;
        r->slots = s;
        r->n_slots = ns;
    }
    memset(r->slots, 0, r->n_slots * sizeof *r->slots);
    for (size_t i = 0; i < r->pending.n; i++) {
        uint64_t h =
            pair_hash(dl__ub_row(&r->pending, i), r->ka, dl__ub_time(&r->pending, i), r->dim);
        size_t m = r->n_slots - 1, s = h & m;
        while (r->slots[s])
            s = (s + 1) & m;
        r->slots[s] = (uint32_t)(i + 1);
    }
    return 0;
}

/* Adds (key, t) to pending unless present. */
static int pending_add(dl_reduce_state_t *r, const dl_value_t *key, const uint64_t *t) {
    if ((r->pending.n + 1) * 2 > r->n_slots) {
        int rc = pending_rehash(r, r->pending.n + 1);
        if (rc)
            return rc;
    }
    uint64_t h = pair_hash(key, r->ka, t, r->dim);
    size_t m = r->n_slots - 1, s = h & m;
    while (r->slots[s]) {
        size_t i = r->slots[s] - 1;
        if (dl_time_cmp(dl__ub_time(&r->pending, i), t, r->dim) == 0 &&
            dl__batch_rcmp(dl__ub_row(&r->pending, i), key, r->ka) == 0)
            return 0;
        s = (s + 1) & m;
    }
    if (!dl__batch_ubuf_push(&r->pending, key, t, 1))
        return DL_ENOMEM;
    r->slots[s] = (uint32_t)r->pending.n;
    return 0;
}

int dl__reduce_init(dl_coll_t *n, const dl_reduce_spec_t *spec, dl_error_t *err) {
    dl_reduce_state_t *r = dl_calloc(1, sizeof *r);
    if (!r)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    r->spec = *spec;
    r->ka = n->jl->ka;
    r->va_in = n->jl->va;
    r->va_out = n->arity - r->ka;
    r->dim = n->dim;
    dl__batch_ubuf_init(&r->pending, r->ka, r->dim);
    dl__spine_init(&r->acc, r->ka, 1, r->dim);
    dl__batch_ubuf_init(&r->sc.des, r->va_out, r->dim);
    dl__batch_ubuf_init(&r->sc.newo, r->va_out, r->dim);
    n->red = r;
    if (spec->kind != DL_REDUCE_LINEAR)
        return 0;
    size_t na = spec->n_aggs;
    r->aggs = dl_malloc(na * sizeof *r->aggs);
    r->agg_sum = dl_calloc(na, sizeof *r->agg_sum);
    r->sum_cols = dl_malloc(na * sizeof *r->sum_cols);
    if (!r->aggs || !r->agg_sum || !r->sum_cols)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    memcpy(r->aggs, spec->aggs, na * sizeof *r->aggs);
    r->spec.aggs = r->aggs;
    for (size_t k = 0; k < na; k++) {
        if (r->aggs[k].op == DL_LINEAR_COUNT)
            continue;
        size_t j = 0;
        while (j < r->n_sum && r->sum_cols[j] != r->aggs[k].col)
            j++;
        if (j == r->n_sum)
            r->sum_cols[r->n_sum++] = r->aggs[k].col;
        r->agg_sum[k] = (uint32_t)j;
    }
    r->total = r->dim == 1;
    dl__groups_init(&r->groups, r->ka, 1 + 2 * r->n_sum);
    dl__batch_ubuf_init(&r->fut, r->ka + r->n_sum, r->dim);
    return 0;
}

bool dl__reduce_total(const dl_coll_t *n) { return n->red->total; }

/* Keys ahead whose seek hints are kept (the prefetch runs 8 records ahead). */
#define HINT_RING 16

/* Entries of process_key's buffers kept between steps, at most (beyond: freed). */
#define SCRATCH_KEEP 65536

/* Frees the scratch buffers (the state stays usable: they grow again from empty). */
static void scratch_free(scratch_t *sc) {
    dl_free(sc->pos_in);
    dl_free(sc->pos_out);
    dl_free(sc->hint_in);
    dl_free(sc->hint_out);
    dl_free(sc->inp);
    dl_free(sc->outp);
    dl_free(sc->acc);
    dl_free(sc->tmp);
    dl_free(sc->times);
    dl_free(sc->hist);
    dl_free(sc->vals);
    dl_free(sc->counts);
    dl__batch_ubuf_fini(&sc->des);
    dl__batch_ubuf_fini(&sc->newo);
    dl_ubuf_t des = sc->des, newo = sc->newo;
    memset(sc, 0, sizeof *sc);
    sc->des = des;
    sc->newo = newo;
}

void dl__reduce_free(dl_reduce_state_t *r) {
    if (!r)
        return;
    scratch_free(&r->sc);
    dl__batch_ubuf_fini(&r->pending);
    dl_free(r->slots);
    dl__spine_fini(&r->acc);
    dl__groups_fini(&r->groups);
    dl__batch_ubuf_fini(&r->fut);
    dl_free(r->tids);
    dl_free(r->old);
    dl_free(r->aggs);
    dl_free(r->agg_sum);
    dl_free(r->sum_cols);
    dl_free(r);
}

size_t dl__reduce_pending(const dl_coll_t *n) {
    return n->red->total ? n->red->fut.n : n->red->pending.n;
}

size_t dl__reduce_touched(const dl_coll_t *n) { return n->red->touched; }

/* The spine process_key reads as the key's input: the accumulator for LINEAR (note 5). */
static const dl_spine_t *input_spine(const dl_coll_t *n) {
    return n->red->spec.kind == DL_REDUCE_LINEAR ? &n->red->acc : &n->jl->spine;
}

static bool push_slot(dl_ubuf_t *o, const dl_value_t *row, size_t ka, int64_t slot,
                      const uint64_t *t, int64_t d) {
    if (d == 0)
        return true;
    size_t k = dl__batch_ubuf_alloc(o);
    if (k == SIZE_MAX)
        return false;
    dl_value_t *w = dl__ub_row(o, k);
    memcpy(w, row, ka * sizeof *w);
    w[ka] = dl_value_int(slot);
    memcpy(dl__ub_time(o, k), t, o->dim * sizeof(uint64_t));
    *dl__ub_diff(o, k) = d;
    return true;
}

/* Note 5: the weight d of value x as the pair of slot weights (d * hi, d * lo). */
static int split_weight(const dl_value_t *x, int64_t d, int64_t *dh, int64_t *dlo) {
    if (x->type != DL_T_INT)
        return DL_ETYPE; /* the run fails with "wrong type" (docs/reduce-linear.md) */
    int64_t hi = x->as.i >> 32, lo = (int64_t)((uint64_t)x->as.i & 0xffffffffu);
    if (__builtin_mul_overflow(d, hi, dh) || __builtin_mul_overflow(d, lo, dlo))
        return DL_ERANGE;
    return 0;
}

/* Note 5: explodes a delta of the input into accumulator updates and inserts them. */
static int linear_explode(dl_reduce_state_t *r, const dl_ubuf_t *u) {
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, r->ka + 1, r->dim);
    int rc = 0;
    if (!dl__batch_ubuf_reserve(&o, u->n * (1 + 2 * r->n_sum)))
        rc = DL_ENOMEM;
    for (size_t i = 0; i < u->n && !rc; i++) {
        const dl_value_t *row = dl__ub_row(u, i);
        const uint64_t *t = dl__ub_time(u, i);
        int64_t d = *dl__ub_diff(u, i);
        if (!push_slot(&o, row, r->ka, 0, t, d)) {
            rc = DL_ENOMEM;
            break;
        }
        for (size_t j = 0; j < r->n_sum && !rc; j++) {
            int64_t dh, dlo;
            rc = split_weight(row + r->ka + r->sum_cols[j], d, &dh, &dlo);
            if (!rc && (!push_slot(&o, row, r->ka, (int64_t)(1 + 2 * j), t, dh) ||
                        !push_slot(&o, row, r->ka, (int64_t)(2 + 2 * j), t, dlo)))
                rc = DL_ENOMEM;
        }
    }
    r->touched += u->n;
    if (!rc && !dl__batch_consolidate(&o))
        rc = DL_ENOMEM;
    if (!rc && o.n) {
        dl_batch_t *b = dl__batch_new(&o, true);
        if (!b)
            rc = DL_ENOMEM;
        else
            rc = dl__spine_insert(&r->acc, b);
    }
    dl__batch_ubuf_fini(&o);
    return rc;
}

/* Note 6: keeps a delta's keys and summed values until their times are complete. */
static int total_note(dl_reduce_state_t *r, const dl_ubuf_t *u) {
    for (size_t i = 0; i < u->n; i++) /* as in linear_explode: nothing kept on a bad value */
        for (size_t j = 0; j < r->n_sum; j++)
            if (dl__ub_row(u, i)[r->ka + r->sum_cols[j]].type != DL_T_INT)
                return DL_ETYPE;
    if (!dl__batch_ubuf_reserve(&r->fut, u->n))
        return DL_ENOMEM;
    for (size_t i = 0; i < u->n; i++) {
        const dl_value_t *row = dl__ub_row(u, i);
        uint64_t t = *dl__ub_time(u, i);
        size_t k = dl__batch_ubuf_alloc(&r->fut);
        dl_value_t *w = dl__ub_row(&r->fut, k);
        memcpy(w, row, r->ka * sizeof *w);
        for (size_t j = 0; j < r->n_sum; j++)
            w[r->ka + j] = row[r->ka + r->sum_cols[j]];
        *dl__ub_time(&r->fut, k) = t;
        *dl__ub_diff(&r->fut, k) = *dl__ub_diff(u, i);
        if (k == 0 || t < r->fut_min)
            r->fut_min = t;
    }
    r->touched += u->n;
    return 0;
}

int dl__reduce_note(dl_coll_t *n, const dl_batch_t *delta) {
    dl_reduce_state_t *r = n->red;
    const dl_ubuf_t *u = &delta->u;
    if (r->total)
        return total_note(r, u);
    if (r->spec.kind == DL_REDUCE_LINEAR) {
        int rc = linear_explode(r, u);
        if (rc)
            return rc;
    }
    for (size_t i = 0; i < u->n; i++) {
        /* Consecutive records of one key at one time add one pair. */
        if (i > 0 && dl_time_cmp(dl__ub_time(u, i), dl__ub_time(u, i - 1), r->dim) == 0 &&
            dl__batch_rcmp(dl__ub_row(u, i), dl__ub_row(u, i - 1), r->ka) == 0)
            continue;
        int rc = pending_add(r, dl__ub_row(u, i), dl__ub_time(u, i));
        if (rc)
            return rc;
    }
    return 0;
}

int dl__reduce_caps(dl_coll_t *n, dl_antichain_t *f) {
    dl_reduce_state_t *r = n->red;
    if (r->total) { /* one coordinate: the least time covers the rest */
        int rc = r->fut.n ? dl_antichain_insert(f, &r->fut_min) : 0;
        return rc < 0 ? rc : 0;
    }
    for (size_t i = 0; i < r->pending.n; i++) {
        int rc = dl_antichain_insert(f, dl__ub_time(&r->pending, i));
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- built-in reducers ----------------------------------------------------------------- */
static int reduce_builtin(dl_reduce_state_t *r, const dl_value_t *key, const dl_value_t *vals,
                          const int64_t *counts, size_t n, dl_emitter_t *out) {
    size_t va = r->va_in, col = r->spec.col;
    switch (r->spec.kind) {
        case DL_REDUCE_COUNT: {
            int64_t c = 0;
            for (size_t i = 0; i < n; i++)
                c += counts[i];
            if (c == 0)
                return 0;
            dl_value_t v = dl_value_int(c);
            return dl_emit(out, &v);
        }
        case DL_REDUCE_SUM:
        case DL_REDUCE_AVG: {
            int64_t si = 0, c = 0;
            double sd = 0;
            bool dbl = r->spec.kind == DL_REDUCE_AVG;
            for (size_t i = 0; i < n; i++) {
                const dl_value_t *x = vals + i * va + col;
                c += counts[i];
                if (x->type == DL_T_DOUBLE) {
                    dbl = true;
                    sd += x->as.d * (double)counts[i];
                } else {
                    si += x->as.i * counts[i];
                    sd += (double)x->as.i * (double)counts[i];
                }
            }
            dl_value_t v;
            if (r->spec.kind == DL_REDUCE_AVG) {
                if (c == 0)
                    return 0;
                v = dl_value_double(sd / (double)c);
            } else {
                v = dbl ? dl_value_double(sd) : dl_value_int(si);
            }
            return dl_emit(out, &v);
        }
        case DL_REDUCE_MIN:
        case DL_REDUCE_MAX: {
            const dl_value_t *best = NULL;
            for (size_t i = 0; i < n; i++) {
                if (counts[i] <= 0)
                    continue;
                const dl_value_t *x = vals + i * va + col;
                int c = best ? dl__batch_vcmp(x, best) : 0;
                if (!best || (r->spec.kind == DL_REDUCE_MIN ? c < 0 : c > 0))
                    best = x;
            }
            return best ? dl_emit(out, best) : 0;
        }
        case DL_REDUCE_DISTINCT:
            for (size_t i = 0; i < n; i++)
                if (counts[i] > 0) {
                    int rc = dl_emit(out, vals + i * va);
                    if (rc)
                        return rc;
                }
            return 0;
        case DL_REDUCE_THRESHOLD:
            for (size_t i = 0; i < n; i++) {
                dl_value_t row[DL_ARITY_MAX];
                memcpy(row, key, r->ka * sizeof *row);
                memcpy(row + r->ka, vals + i * va, va * sizeof *row);
                int64_t c = r->spec.thresh_fn(r->spec.ctx, row, counts[i]);
                if (c != 0) {
                    int rc = dl_emit_diff(out, vals + i * va, c);
                    if (rc)
                        return rc;
                }
            }
            return 0;
        case DL_REDUCE_GENERAL:
            return r->spec.general_fn(r->spec.ctx, key, vals, counts, n, out);
        case DL_REDUCE_LINEAR:
            break; /* linear_eval */
    }
    return DL_EINTERNAL;
}

/* ---- per-key evaluation ---------------------------------------------------------------- */

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *q = dl_realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

/* Collects the updates of `key` in every batch of spine s into *out. */
/* Keys are visited in increasing order within a step, so each batch keeps a cursor
 * (pos[b]) and seeks gallop forward from it. */
static int gather(const dl_spine_t *s, const dl_value_t *key, size_t *pos, const size_t *hint,
                  entry_t **out, size_t *n, size_t *cap) {
    *n = 0;
    for (size_t b = 0; b < s->n; b++) {
        const dl_ubuf_t *u = &s->batches[b]->u;
        size_t from = hint && hint[b] > pos[b] ? hint[b] : pos[b];
        size_t p = dl__spine_seek(s->batches[b], s->ka, key, from);
        pos[b] = p;
        for (; p < u->n && dl__batch_rcmp(dl__ub_row(u, p), key, s->ka) == 0; p++) {
            if (!grow((void **)out, cap, *n + 1, sizeof **out))
                return DL_ENOMEM;
            (*out)[(*n)++] =
                (entry_t){dl__ub_row(u, p) + s->ka, dl__ub_time(u, p), *dl__ub_diff(u, p)};
        }
    }
    return 0;
}

static void sort_entries(entry_t *e, entry_t *tmp, size_t n, size_t va) {
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            entry_t x = e[i];
            size_t j = i;
            while (j > 0 && dl__batch_rcmp(e[j - 1].v, x.v, va) > 0) {
                e[j] = e[j - 1];
                j--;
            }
            e[j] = x;
        }
        return;
    }
    size_t h = n / 2, i = 0, j = h, k = 0;
    sort_entries(e, tmp, h, va);
    sort_entries(e + h, tmp, n - h, va);
    while (i < h && j < n)
        tmp[k++] = dl__batch_rcmp(e[i].v, e[j].v, va) <= 0 ? e[i++] : e[j++];
    while (i < h)
        tmp[k++] = e[i++];
    while (j < n)
        tmp[k++] = e[j++];
    memcpy(e, tmp, n * sizeof *e);
}

/* Sorts acc[0..n) by value and sums equal values in place; returns the distinct count. */
static size_t accumulate(scratch_t *sc, size_t n, size_t va) {
    sort_entries(sc->acc, sc->tmp, n, va);
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        int64_t d = sc->acc[i].d;
        size_t j = i + 1;
        while (j < n && dl__batch_rcmp(sc->acc[i].v, sc->acc[j].v, va) == 0)
            d += sc->acc[j++].d;
        if (d != 0) {
            sc->acc[w] = sc->acc[i];
            sc->acc[w].d = d;
            w++;
        }
        i = j;
    }
    return w;
}

static bool add_time(uint64_t **arr, size_t *n, size_t *cap, const uint64_t *t, size_t dim) {
    if (!grow((void **)arr, cap, (*n + 1) * dim, sizeof(uint64_t)))
        return false;
    memcpy(*arr + *n * dim, t, dim * sizeof(uint64_t));
    (*n)++;
    return true;
}

/* Notes 5-6: the output values of a LINEAR reduce from a key's slot sums: 1 and res filled
 * when the key has a row (nonzero count), 0 when not, or an error. */
static int linear_row(const dl_reduce_state_t *r, const uint64_t *acc, dl_value_t *res) {
    int64_t c = (int64_t)acc[0];
    if (c == 0)
        return 0;
    for (size_t k = 0; k < r->spec.n_aggs; k++) {
        if (r->aggs[k].op == DL_LINEAR_COUNT) {
            res[k] = dl_value_int(c);
            continue;
        }
        size_t j = r->agg_sum[k];
        int64_t hi = (int64_t)acc[1 + 2 * j], lo = (int64_t)acc[2 + 2 * j];
        hi += lo >> 32; /* normalize 0 <= lo < 2^32 (lo can be negative under retractions) */
        lo &= 0xffffffff;
        if (r->aggs[k].op == DL_LINEAR_AVG) {
            res[k] = dl_value_double(((double)hi * 4294967296.0 + (double)lo) / (double)c);
            continue;
        }
        int64_t x, v;
        if (__builtin_mul_overflow(hi, (int64_t)1 << 32, &x) || __builtin_add_overflow(x, lo, &v))
            return DL_ERANGE;
        res[k] = dl_value_int(v);
    }
    return 1;
}

/* Note 5: desired output of a LINEAR reduce at t from the key's accumulator records. */
static int linear_eval(dl_reduce_state_t *r, const scratch_t *sc, const uint64_t *t,
                       dl_emitter_t *out) {
    uint64_t acc[1 + 2 * DL_ARITY_MAX];
    size_t ns = 1 + 2 * r->n_sum;
    memset(acc, 0, ns * sizeof *acc);
    for (size_t i = 0; i < sc->n_inp; i++)
        if (dl_time_le(sc->inp[i].t, t, r->dim)) {
            int64_t slot = sc->inp[i].v->as.i;
            if (slot < 0 || (size_t)slot >= ns)
                return DL_EINTERNAL;
            acc[slot] += (uint64_t)sc->inp[i].d; /* modular: exact while the sum fits */
        }
    dl_value_t res[DL_ARITY_MAX];
    int rc = linear_row(r, acc, res);
    return rc > 0 ? dl_emit(out, res) : rc;
}

/* Processes one key at its complete times sc->times (sorted), emitting into o. */
static int process_key(dl_coll_t *n, scratch_t *sc, const dl_value_t *key,
                       const dl_antichain_t *fin, dl_ubuf_t *o) {
    dl_reduce_state_t *r = n->red;
    size_t dim = r->dim, vi = r->va_in, vo = r->va_out;
    int rc =
        gather(input_spine(n), key, sc->pos_in, sc->cur_in, &sc->inp, &sc->n_inp, &sc->cap_inp);
    if (!rc)
        rc = gather(&n->arr->spine, key, sc->pos_out, sc->cur_out, &sc->outp, &sc->n_outp,
                    &sc->cap_outp);
    if (rc)
        return rc;
    r->touched += sc->n_inp + sc->n_outp;
    /* History: the distinct times of the key's input and output updates (note 3-4). */
    sc->n_hist = 0;
    for (size_t i = 0; i < sc->n_inp; i++)
        if (!add_time(&sc->hist, &sc->n_hist, &sc->cap_hist, sc->inp[i].t, dim))
            return DL_ENOMEM;
    for (size_t i = 0; i < sc->n_outp; i++)
        if (!add_time(&sc->hist, &sc->n_hist, &sc->cap_hist, sc->outp[i].t, dim))
            return DL_ENOMEM;
    sc->newo.n = 0;
    size_t need = sc->n_inp + sc->n_outp + 16;
    uint64_t t[DL_TIME_MAX_DIM], j[DL_TIME_MAX_DIM];
    for (size_t ti = 0; ti < sc->n_times; ti++) {
        memcpy(t, sc->times + ti * dim, dim * sizeof(uint64_t));
        /* desired = f(input accumulated at t) */
        if (!grow((void **)&sc->acc, &sc->cap_acc, need + sc->newo.n, sizeof *sc->acc) ||
            !grow((void **)&sc->tmp, &sc->cap_tmp, need + sc->newo.n, sizeof *sc->tmp))
            return DL_ENOMEM;
        sc->des.n = 0;
        size_t na = 0;
        if (r->spec.kind == DL_REDUCE_LINEAR) {
            dl_emitter_t e = {&sc->des, t, 1, NULL, 0, (uint32_t)vo, 0};
            rc = linear_eval(r, sc, t, &e);
            if (rc)
                return rc;
        } else {
            for (size_t i = 0; i < sc->n_inp; i++)
                if (dl_time_le(sc->inp[i].t, t, dim))
                    sc->acc[na++] = sc->inp[i];
            na = accumulate(sc, na, vi);
        }
        if (na > 0) {
            if (!grow((void **)&sc->vals, &sc->cap_vals, na * (vi ? vi : 1), sizeof *sc->vals) ||
                !grow((void **)&sc->counts, &sc->cap_counts, na, sizeof *sc->counts))
                return DL_ENOMEM;
            for (size_t i = 0; i < na; i++) {
                if (vi)
                    memcpy(sc->vals + i * vi, sc->acc[i].v, vi * sizeof(dl_value_t));
                sc->counts[i] = sc->acc[i].d;
            }
            dl_emitter_t e = {&sc->des, t, 1, NULL, 0, (uint32_t)vo, 0};
            rc = reduce_builtin(r, key, sc->vals, sc->counts, na, &e);
            if (rc)
                return rc;
        }
        /* current = output accumulated at t; difference = desired - current. */
        na = 0;
        for (size_t i = 0; i < sc->n_outp; i++)
            if (dl_time_le(sc->outp[i].t, t, dim))
                sc->acc[na++] = (entry_t){sc->outp[i].v, NULL, -sc->outp[i].d};
        for (size_t i = 0; i < sc->newo.n; i++)
            if (dl_time_le(dl__ub_time(&sc->newo, i), t, dim))
                sc->acc[na++] =
                    (entry_t){dl__ub_row(&sc->newo, i), NULL, -*dl__ub_diff(&sc->newo, i)};
        if (!grow((void **)&sc->acc, &sc->cap_acc, na + sc->des.n + 1, sizeof *sc->acc) ||
            !grow((void **)&sc->tmp, &sc->cap_tmp, na + sc->des.n + 1, sizeof *sc->tmp))
            return DL_ENOMEM;
        for (size_t i = 0; i < sc->des.n; i++)
            sc->acc[na++] = (entry_t){dl__ub_row(&sc->des, i), NULL, *dl__ub_diff(&sc->des, i)};
        na = accumulate(sc, na, vo);
        if (na) {
            /* Copy the differences out first: acc may point into newo. */
            dl_ubuf_t diffs;
            dl__batch_ubuf_init(&diffs, vo, dim);
            for (size_t i = 0; i < na && !rc; i++)
                if (!dl__batch_ubuf_push(&diffs, sc->acc[i].v, t, sc->acc[i].d))
                    rc = DL_ENOMEM;
            for (size_t i = 0; i < diffs.n && !rc; i++) {
                const dl_value_t *v = dl__ub_row(&diffs, i);
                int64_t d = *dl__ub_diff(&diffs, i);
                if (!dl__batch_ubuf_push(&sc->newo, v, t, d)) {
                    rc = DL_ENOMEM;
                    break;
                }
                size_t k = dl__batch_ubuf_alloc(o);
                if (k == SIZE_MAX) {
                    rc = DL_ENOMEM;
                    break;
                }
                dl_value_t *row = dl__ub_row(o, k);
                memcpy(row, key, r->ka * sizeof *row);
                if (vo)
                    memcpy(row + r->ka, v, vo * sizeof *row);
                memcpy(dl__ub_time(o, k), t, dim * sizeof(uint64_t));
                *dl__ub_diff(o, k) = d;
            }
            dl__batch_ubuf_fini(&diffs);
            if (rc)
                return rc;
            if (!add_time(&sc->hist, &sc->n_hist, &sc->cap_hist, t, dim))
                return DL_ENOMEM;
        }
        /* Note 3: joins of t with the history are interesting. */
        for (size_t h = 0; h < sc->n_hist; h++) {
            const uint64_t *ht = sc->hist + h * dim;
            if (dl_time_le(ht, t, dim))
                continue;
            dl_time_join(t, ht, dim, j);
            if (dl_antichain_less_equal(fin, j)) {
                rc = pending_add(r, key, j);
                if (rc)
                    return rc;
                continue;
            }
            /* Insert into the sorted remainder of times unless present. */
            size_t pos = ti + 1;
            while (pos < sc->n_times && dl_time_cmp(sc->times + pos * dim, j, dim) < 0)
                pos++;
            if (pos < sc->n_times && dl_time_cmp(sc->times + pos * dim, j, dim) == 0)
                continue;
            if (!add_time(&sc->times, &sc->n_times, &sc->cap_times, j, dim))
                return DL_ENOMEM;
            memmove(sc->times + (pos + 1) * dim, sc->times + pos * dim,
                    (sc->n_times - 1 - pos) * dim * sizeof(uint64_t));
            memcpy(sc->times + pos * dim, j, dim * sizeof(uint64_t));
        }
    }
    return 0;
}

/* Consolidates a step's output o and delivers it to the reduce's output arrangement (when
 * rc, the step's status, is 0); frees o. Returns the new status. */
static int deliver_output(dl_coll_t *n, dl_ubuf_t *o, int rc) {
    if (!rc && !dl__batch_consolidate(o))
        rc = DL_ENOMEM;
    if (!rc && o->n) {
        dl_batch_t *b = dl__batch_new(o, true);
        if (!b)
            rc = DL_ENOMEM;
        else {
            rc = dl__ops_arr_deliver(n->arr, b);
            dl__batch_unref(b);
        }
    }
    dl__batch_ubuf_fini(o);
    return rc;
}

/* Appends key ++ vals at time t with diff d to o. */
static bool push_out(dl_ubuf_t *o, const dl_value_t *key, size_t ka, const dl_value_t *vals,
                     size_t va, uint64_t t, int64_t d) {
    size_t k = dl__batch_ubuf_alloc(o);
    if (k == SIZE_MAX)
        return false;
    dl_value_t *row = dl__ub_row(o, k);
    memcpy(row, key, ka * sizeof *row);
    memcpy(row + ka, vals, va * sizeof *row);
    *dl__ub_time(o, k) = t;
    *dl__ub_diff(o, k) = d;
    return true;
}

/* Note 6: adds the updates ord[0..n) of u, all at time t, to their keys' sums and emits each
 * touched key's change of output into o. */
static int total_apply(dl_reduce_state_t *r, const dl_ubuf_t *u, const uint32_t *ord, size_t n,
                       uint64_t t, dl_ubuf_t *o) {
    dl_groups_t *g = &r->groups;
    size_t ns = g->ns, nt = 0;
    if (++r->run == 0) { /* the stamps wrapped: none may look current */
        memset(g->stamp, 0, g->n_ids * sizeof *g->stamp);
        r->run = 1;
    }
    for (size_t x = 0; x < n; x++) {
        size_t i = ord ? ord[x] : x;
        const dl_value_t *row = dl__ub_row(u, i);
        int64_t d = *dl__ub_diff(u, i);
        size_t id = dl__groups_get(g, row);
        if (id == SIZE_MAX)
            return DL_ENOMEM;
        if (g->stamp[id] != r->run) {
            if (nt == r->cap_tids) {
                size_t c = r->cap_tids ? 2 * r->cap_tids : 256;
                uint32_t *ti = dl_realloc(r->tids, c * sizeof *ti);
                if (!ti)
                    return DL_ENOMEM;
                r->tids = ti;
                uint64_t *ol = dl_realloc(r->old, c * ns * sizeof *ol);
                if (!ol)
                    return DL_ENOMEM;
                r->old = ol;
                r->cap_tids = c;
            }
            g->stamp[id] = r->run;
            r->tids[nt] = (uint32_t)id;
            memcpy(r->old + nt * ns, g->acc + id * ns, ns * sizeof *r->old);
            nt++;
        }
        uint64_t *acc = g->acc + id * ns;
        acc[0] += (uint64_t)d; /* modular, as in the spine's sums (note 5) */
        for (size_t j = 0; j < r->n_sum; j++) {
            int64_t dh, dlo;
            int rc = split_weight(row + r->ka + j, d, &dh, &dlo);
            if (rc)
                return rc;
            acc[1 + 2 * j] += (uint64_t)dh;
            acc[2 + 2 * j] += (uint64_t)dlo;
        }
    }
    r->touched += n + nt;
    size_t va = r->va_out;
    for (size_t k = 0; k < nt; k++) {
        size_t id = r->tids[k];
        const uint64_t *acc = g->acc + id * ns;
        const dl_value_t *key = g->keys + id * g->ka;
        dl_value_t was[DL_ARITY_MAX], now[DL_ARITY_MAX];
        int ho = linear_row(r, r->old + k * ns, was), hn = linear_row(r, acc, now);
        if (ho < 0 || hn < 0)
            return ho < 0 ? ho : hn;
        if (!(ho && hn && dl__batch_rcmp(was, now, va) == 0) &&
            ((ho && !push_out(o, key, r->ka, was, va, t, -1)) ||
             (hn && !push_out(o, key, r->ka, now, va, t, 1))))
            return DL_ENOMEM;
        bool empty = true;
        for (size_t j = 0; j < ns && empty; j++)
            empty = acc[j] == 0;
        if (empty)
            dl__groups_drop(g, id);
    }
    return 0;
}

typedef struct timed {
    uint64_t t;
    uint32_t i; /* index in fut */
} timed_t;

static int by_time(const void *a, const void *b) {
    const timed_t *x = a, *y = b;
    return x->t < y->t ? -1 : x->t > y->t ? 1 : (x->i > y->i) - (x->i < y->i);
}

/* Note 6: evaluates the waiting updates whose times are complete, in time order. */
static int total_step(dl_coll_t *n, const dl_antichain_t *fin, bool *out_worked) {
    dl_reduce_state_t *r = n->red;
    dl_ubuf_t *f = &r->fut;
    /* ord: the complete updates, by time; NULL when they are all of f at one time. */
    size_t n_now = 0;
    bool one_time = true;
    for (size_t i = 0; i < f->n; i++)
        if (!dl_antichain_less_equal(fin, dl__ub_time(f, i))) {
            one_time &= *dl__ub_time(f, i) == r->fut_min;
            n_now++;
        }
    if (n_now == 0)
        return 0;
    *out_worked = true;
    uint32_t *ord = NULL;
    if (n_now < f->n || !one_time) {
        timed_t *tm = dl_malloc(n_now * sizeof *tm);
        ord = tm ? dl_malloc(n_now * sizeof *ord) : NULL;
        if (!ord) {
            dl_free(tm);
            return DL_ENOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; i < f->n; i++)
            if (!dl_antichain_less_equal(fin, dl__ub_time(f, i)))
                tm[k++] = (timed_t){*dl__ub_time(f, i), (uint32_t)i};
        qsort(tm, n_now, sizeof *tm, by_time);
        for (size_t x = 0; x < n_now; x++)
            ord[x] = tm[x].i;
        dl_free(tm);
    }
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, n->arity, r->dim);
    int rc = 0;
    for (size_t x = 0; x < n_now && !rc;) {
        uint64_t t = *dl__ub_time(f, ord ? ord[x] : x);
        size_t y = x + 1;
        while (y < n_now && *dl__ub_time(f, ord ? ord[y] : y) == t)
            y++;
        rc = total_apply(r, f, ord ? ord + x : NULL, y - x, t, &o);
        x = y;
    }
    /* Keep the updates not evaluated (their times are not complete). */
    if (!rc) {
        size_t w = 0;
        for (size_t i = 0; i < f->n; i++) {
            const uint64_t *t = dl__ub_time(f, i);
            if (!dl_antichain_less_equal(fin, t))
                continue;
            if (w != i) {
                memcpy(dl__ub_row(f, w), dl__ub_row(f, i), f->arity * sizeof(dl_value_t));
                *dl__ub_time(f, w) = *t;
                *dl__ub_diff(f, w) = *dl__ub_diff(f, i);
            }
            if (w == 0 || *t < r->fut_min)
                r->fut_min = *t;
            w++;
        }
        f->n = w;
        if (f->cap > 4096 && f->n < f->cap / 8)
            dl__batch_ubuf_shrink(f);
    }
    dl_free(ord);
    rc = deliver_output(n, &o, rc);
    return rc;
}

int dl__reduce_step(dl_coll_t *n, const dl_antichain_t *fin, bool *out_worked) {
    dl_reduce_state_t *r = n->red;
    *out_worked = false;
    if (r->total)
        return total_step(n, fin, out_worked);
    if (r->pending.n == 0)
        return 0;
    /* Split pending into complete (processed now) and the rest (kept). */
    dl_ubuf_t now, keep;
    dl__batch_ubuf_init(&now, r->ka, r->dim);
    dl__batch_ubuf_init(&keep, r->ka, r->dim);
    int rc = 0;
    for (size_t i = 0; i < r->pending.n && !rc; i++) {
        const uint64_t *t = dl__ub_time(&r->pending, i);
        dl_ubuf_t *dst = dl_antichain_less_equal(fin, t) ? &keep : &now;
        if (!dl__batch_ubuf_push(dst, dl__ub_row(&r->pending, i), t, 1))
            rc = DL_ENOMEM;
    }
    if (rc || now.n == 0) {
        dl__batch_ubuf_fini(&now);
        dl__batch_ubuf_fini(&keep);
        return rc;
    }
    *out_worked = true;
    dl__batch_ubuf_fini(&r->pending);
    r->pending = keep;
    rc = pending_rehash(r, r->pending.n + 1);
    if (!rc && !dl__batch_consolidate(&now)) /* sorts by (key, time); diffs stay nonzero */
        rc = DL_ENOMEM;
    scratch_t sc = r->sc;
    sc.n_inp = sc.n_outp = sc.n_times = sc.n_hist = 0;
    sc.des.n = sc.newo.n = 0;
    const dl_spine_t *ins = input_spine(n);
    size_t n_pos = (ins->n > n->arr->spine.n ? ins->n : n->arr->spine.n) + 1;
    if (!grow((void **)&sc.pos_in, &sc.cap_pos, n_pos, sizeof *sc.pos_in) ||
        !grow((void **)&sc.pos_out, &sc.cap_pos_out, n_pos, sizeof *sc.pos_out))
        rc = DL_ENOMEM;
    else {
        memset(sc.pos_in, 0, n_pos * sizeof *sc.pos_in);
        memset(sc.pos_out, 0, n_pos * sizeof *sc.pos_out);
    }
    size_t nb_in = ins->n, nb_out = n->arr->spine.n;
    if (!rc &&
        (!grow((void **)&sc.hint_in, &sc.cap_hint_in, HINT_RING * nb_in + 1, sizeof *sc.hint_in) ||
         !grow((void **)&sc.hint_out, &sc.cap_hint_out, HINT_RING * nb_out + 1,
               sizeof *sc.hint_out)))
        rc = DL_ENOMEM;
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, n->arity, r->dim);
    size_t ahead = 0; /* the next record of `now` whose key was prefetched */
    for (size_t i = 0; i < now.n && !rc;) {
        const dl_value_t *key = dl__ub_row(&now, i);
        /* Prefetch the spines' records for keys a few records ahead. */
        if (ahead < i)
            ahead = i;
        while (ahead < now.n && ahead < i + 8) {
            const dl_value_t *ak = dl__ub_row(&now, ahead);
            size_t *hi = sc.hint_in + (ahead % HINT_RING) * nb_in;
            size_t *ho = sc.hint_out + (ahead % HINT_RING) * nb_out;
            for (size_t b = 0; b < nb_in; b++)
                hi[b] = dl__spine_prefetch(ins->batches[b], ak, sc.pos_in[b]);
            for (size_t b = 0; b < nb_out; b++)
                ho[b] = dl__spine_prefetch(n->arr->spine.batches[b], ak, sc.pos_out[b]);
            ahead++;
        }
        sc.cur_in = sc.hint_in + (i % HINT_RING) * nb_in;
        sc.cur_out = sc.hint_out + (i % HINT_RING) * nb_out;
        sc.n_times = 0;
        size_t k = i;
        while (k < now.n && dl__batch_rcmp(dl__ub_row(&now, k), key, r->ka) == 0) {
            if (!add_time(&sc.times, &sc.n_times, &sc.cap_times, dl__ub_time(&now, k), r->dim))
                rc = DL_ENOMEM;
            k++;
        }
        if (!rc)
            rc = process_key(n, &sc, key, fin, &o);
        i = k;
    }
    r->sc = sc;
    if (sc.cap_inp + sc.cap_outp + sc.cap_acc + sc.cap_tmp > SCRATCH_KEEP)
        scratch_free(&r->sc); /* a big group passed: do not hold its memory */
    dl__batch_ubuf_fini(&now);
    rc = deliver_output(n, &o, rc);
    /* Note 5: every later evaluation time is beyond fin, so the accumulator compacts to it
     * (applied by the spine's merges). */
    if (!rc && r->spec.kind == DL_REDUCE_LINEAR)
        rc = dl__spine_set_since(&r->acc, fin);
    return rc;
}
