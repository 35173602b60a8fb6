/*
 * spine.c: the storage of an arrangement: immutable sorted batches of (key ++ val, time,
 * diff) records in a spine that merges them LSM-style, logical compaction (times advanced
 * by the `since` frontier while merging, then consolidated) and physical merging (idle
 * maintenance), plus galloping key seeks for cursors. Follows docs/dataflow.md "Spine".
 * Does not know about readers or operators (graph.c and ops.c set `since` and read).
 *
 * Design notes.
 * 1. Batches are ordered oldest first. After every insert, while the last batch is at
 *    least half the size of the one before it, the two are merged: sizes then decrease
 *    geometrically, a record is merged O(log n) times, there are O(log n) batches.
 * 2. A merge advances every time by `since` (dl_time_advance_by) and consolidates. A batch
 *    records the since generation it was compacted at; maintenance re-compacts stale
 *    batches and merges the rest into one, so memory is reclaimed while no updates come.
 * 3. Advancing by `since` never changes accumulations at times >= since (time.c), which
 *    is the only thing readers may ask for (their frontiers are >= since).
 * 4. Merges whose older batch only the spine references run in place, from the back
 *    (merge_in_place): a merge then costs memory for the smaller batch's records only.
 * 5. Merge outputs are narrowed (batch.c): compaction tends to leave a batch with one time
 *    and diffs of +1, which are then stored once. Merges read either layout.
 * 6. An inserted batch whose rows all sort after the newest batch's (keys that only grow:
 *    new entities, new events) is appended to it at once when only the spine holds it,
 *    whatever the sizes: a record is then copied once instead of once per layer, and an
 *    append-only arrangement stays one batch. Its buffer grows geometrically once it is
 *    large enough to be mapped (base/alloc.c), where untouched capacity is not resident.
 */
#include "dataflow/dataflow.h"

void dl__spine_init(dl_spine_t *s, size_t ka, size_t va, size_t dim) {
    memset(s, 0, sizeof *s);
    s->ka = (uint32_t)ka;
    s->va = (uint32_t)va;
    s->dim = (uint32_t)dim;
    s->narrow_min = DL_NARROW_MIN;
    dl_antichain_init(&s->since, dim);
    uint64_t zero[DL_TIME_MAX_DIM] = {0};
    if (dl_antichain_insert(&s->since, zero) < 0) {
        /* An empty since is the identity for advance_by: still correct, only less compact. */
    }
}

void dl__spine_fini(dl_spine_t *s) {
    for (size_t i = 0; i < s->n; i++)
        dl__batch_unref(s->batches[i]);
    dl_free(s->batches);
    dl_antichain_fini(&s->since);
    memset(s, 0, sizeof *s);
}

/* The order-preserving image of an integer-like first key column (the sparse key index,
 * below). */
static bool kimg_type(uint8_t t) { return t != DL_T_DOUBLE && (t < DL_T_STRING || t == DL_T_REF); }
static uint64_t kimg(const dl_value_t *v) { return (uint64_t)v->as.i ^ 0x8000000000000000ull; }

/* Sorts the records [lo, hi) of buffer u by time (a group of one row: small, insertion
 * sort) and consolidates them in place toward the high end. Returns the new low index. */
static size_t group_consolidate(dl_ubuf_t *u, size_t lo, size_t hi) {
    size_t st = u->stride, dim = u->dim;
    uint8_t tmp[DL_ARITY_MAX * sizeof(dl_value_t) + (DL_TIME_MAX_DIM + 1) * sizeof(uint64_t)];
    for (size_t x = lo + 1; x < hi; x++) {
        size_t y = x;
        if (dl_time_cmp(dl__ub_time(u, y - 1), dl__ub_time(u, y), dim) <= 0)
            continue;
        memcpy(tmp, u->data + x * st, st);
        const uint64_t *vt = (const uint64_t *)(tmp + (size_t)u->arity * sizeof(dl_value_t));
        while (y > lo && dl_time_cmp(dl__ub_time(u, y - 1), vt, dim) > 0) {
            memcpy(u->data + y * st, u->data + (y - 1) * st, st);
            y--;
        }
        memcpy(u->data + y * st, tmp, st);
    }
    /* Walk down from the top, so the consolidated records end up contiguous at hi. */
    size_t w = hi;
    for (size_t x = hi; x > lo;) {
        size_t y = x - 1;
        int64_t d = *dl__ub_diff(u, y);
        while (y > lo && dl_time_cmp(dl__ub_time(u, y - 1), dl__ub_time(u, x - 1), dim) == 0)
            d += *dl__ub_diff(u, --y);
        if (d != 0) {
            w--;
            if (w != x - 1)
                memcpy(u->data + w * st, u->data + (x - 1) * st, st);
            *dl__ub_diff(u, w) = d;
        }
        x = y;
    }
    return w;
}

/* Merges (or, with b NULL, re-compacts) batches into a new sorted batch, advancing times
 * by s->since. *out is NULL when everything cancelled. */
static int merge(dl_spine_t *s, const dl_batch_t *a, const dl_batch_t *b, dl_batch_t **out) {
    const dl_ubuf_t *ua = &a->u, *ub = b ? &b->u : NULL;
    size_t rs = (size_t)s->ka + s->va, na = ua->n, nb = ub ? ub->n : 0, i = 0, j = 0;
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, rs, s->dim);
    if (!dl__batch_ubuf_reserve(&o, na + nb))
        return DL_ENOMEM;
    size_t st = o.stride;
    bool advance = s->since.n > 0;
    while (i < na || j < nb) {
        int c = i >= na   ? 1
                : j >= nb ? -1
                          : dl__batch_rcmp(dl__ub_row(ua, i), dl__ub_row(ub, j), rs);
        /* The group of records with this row, from one input or both, copied to the
         * output (reserved above: it does not move) and consolidated there. */
        size_t k0 = o.n;
        if (c <= 0)
            dl__ub_copy(&o, o.n++, ua, i++);
        else
            dl__ub_copy(&o, o.n++, ub, j++);
        const dl_value_t *row = dl__ub_row(&o, k0);
        while (c <= 0 && i < na && dl__batch_rcmp(dl__ub_row(ua, i), row, rs) == 0)
            dl__ub_copy(&o, o.n++, ua, i++);
        while (c >= 0 && j < nb && dl__batch_rcmp(dl__ub_row(ub, j), row, rs) == 0)
            dl__ub_copy(&o, o.n++, ub, j++);
        if (advance)
            for (size_t x = k0; x < o.n; x++)
                dl_time_advance_by(dl__ub_time(&o, x), &s->since, dl__ub_time(&o, x));
        if (o.n - k0 > 1) {
            size_t w = group_consolidate(&o, k0, o.n), m = o.n - w;
            if (w != k0 && m)
                memmove(o.data + k0 * st, o.data + w * st, m * st);
            o.n = k0 + m;
        }
    }
    if (o.n == 0) {
        dl__batch_ubuf_fini(&o);
        *out = NULL;
        return 0;
    }
    dl__batch_narrow(&o, s->narrow_min);
    dl__batch_ubuf_shrink(&o);
    dl_batch_t *nb2 = dl__batch_new(&o, true);
    if (!nb2) {
        dl__batch_ubuf_fini(&o);
        return DL_ENOMEM;
    }
    nb2->since_gen = s->since_gen;
    dl__spine_index(nb2, s->ka);
    *out = nb2;
    return 0;
}

/* Blocks from this size on are mapped (base/alloc.c): an appended batch's buffer grows with
 * slack there (design note 6), which costs no resident memory until it is written. */
#define APPEND_SLACK_MIN ((size_t)1 << 19)

/* The append case of merge_in_place: every row of b sorts after every row of a (keys that
 * only grow: new entities, new events). a's records stay where they are and b's are copied
 * after them, so the merge costs b's size, not a's. Times are not advanced here (the
 * older since generation of the two is kept, and maintenance compacts later) except a
 * shared time, which advances in O(1): a row appears once in such a batch (b's rows are
 * checked), so nothing can collapse. A narrow a takes b only when b fits its shared
 * parts. Returns 1 when done, 0 when the case does not apply (nothing changed), or
 * DL_ENOMEM (nothing changed). */
static int merge_append(dl_spine_t *s, dl_batch_t *a, const dl_batch_t *b) {
    dl_ubuf_t *u = &a->u;
    const dl_ubuf_t *ub = &b->u;
    size_t na = u->n, nb = ub->n, rs = (size_t)s->ka + s->va, dim = s->dim;
    if (rs == 0 || na == 0 || nb == 0 ||
        dl__batch_rcmp(dl__ub_row(ub, 0), dl__ub_row(u, na - 1), rs) <= 0)
        return 0;
    bool advance = s->since.n > 0;
    uint64_t ta[DL_TIME_MAX_DIM], t[DL_TIME_MAX_DIM];
    if (u->narrow & DL_UB_SHARED_TIME) {
        if (advance)
            dl_time_advance_by(u->shared, &s->since, ta);
        else
            memcpy(ta, u->shared, dim * sizeof *ta);
        for (size_t j = 0; j < nb; j++) {
            if (advance)
                dl_time_advance_by(dl__ub_time(ub, j), &s->since, t);
            else
                memcpy(t, dl__ub_time(ub, j), dim * sizeof *t);
            if (memcmp(t, ta, dim * sizeof *t) != 0 ||
                (j > 0 && dl__batch_rcmp(dl__ub_row(ub, j), dl__ub_row(ub, j - 1), rs) == 0))
                return 0;
        }
    }
    if (u->narrow & DL_UB_SHARED_DIFF)
        for (size_t j = 0; j < nb; j++)
            if (*dl__ub_diff(ub, j) != (int64_t)u->shared[DL_TIME_MAX_DIM])
                return 0;
    if (na + nb > u->cap) { /* not dl__batch_ubuf_reserve: that would widen a narrow a */
        size_t cap = na + nb;
        if (na * u->stride >= APPEND_SLACK_MIN && cap < na + na / 4)
            cap = na + na / 4; /* design note 6 */
        uint8_t *d = dl_realloc(u->data, cap * u->stride);
        if (!d)
            return DL_ENOMEM;
        u->data = d;
        u->cap = cap;
    }
    for (size_t j = 0; j < nb; j++) {
        size_t k = na + j;
        memcpy(dl__ub_row(u, k), dl__ub_row(ub, j), rs * sizeof(dl_value_t));
        if (!(u->narrow & DL_UB_SHARED_TIME)) /* as they are: advancing could collapse two */
            memcpy(dl__ub_time(u, k), dl__ub_time(ub, j), dim * sizeof(uint64_t));
        if (!(u->narrow & DL_UB_SHARED_DIFF))
            *dl__ub_diff(u, k) = *dl__ub_diff(ub, j);
    }
    u->n = na + nb;
    if (u->narrow & DL_UB_SHARED_TIME) {
        memcpy(u->shared, ta, dim * sizeof *ta);
        a->since_gen = s->since_gen;
    } else if (b->since_gen < a->since_gen) {
        a->since_gen = b->since_gen; /* compacted only as far as both were */
    }
    /* The key index: records did not move, so only b's part is new. */
    if (a->kidx) {
        uint8_t t0 = dl__ub_row(u, 0)->type;
        size_t nk = (u->n + DL_KIDX_STEP - 1) / DL_KIDX_STEP;
        uint64_t *k =
            dl__ub_row(u, u->n - 1)->type == t0 ? dl_realloc(a->kidx, nk * sizeof *k) : NULL;
        if (!k) { /* mixed key types now, or no memory: the index is an optimization */
            dl_free(a->kidx);
            a->kidx = NULL;
            a->n_kidx = 0;
        } else {
            for (size_t x = a->n_kidx; x < nk; x++)
                k[x] = kimg(dl__ub_row(u, x * DL_KIDX_STEP));
            a->kidx = k;
            a->n_kidx = nk;
        }
    } else {
        dl__spine_index(a, s->ka);
    }
    return 1;
}

/* The in-place variant of merge (design note 4), for an older batch a that only the spine
 * references: a's buffer grows to |a| + |b| records and the merge runs from the back, so
 * no second buffer of the merged size ever exists (merges of the largest batches were the
 * peak of memory). Output written so far never exceeds input consumed, so every record is
 * written at or above the last unread record of a. A group of records with one row is
 * copied into that free space and consolidated there: once the buffer has grown nothing
 * can fail, and a batch is never left half-merged. Returns a itself (or NULL when
 * everything cancelled; a is then empty). */
static int merge_in_place(dl_spine_t *s, dl_batch_t *a, const dl_batch_t *b, dl_batch_t **out) {
    dl_ubuf_t *u = &a->u;
    const dl_ubuf_t *ub = b ? &b->u : NULL;
    size_t na = u->n, nb = ub ? ub->n : 0, total = na + nb, rs = (size_t)s->ka + s->va;
    if (b) {
        int rc = merge_append(s, a, b);
        if (rc) {
            *out = a;
            return rc < 0 ? rc : 0;
        }
    }
    if (!dl__batch_widen(u, total))
        return DL_ENOMEM;
    size_t st = u->stride;
    dl_free(a->kidx); /* rebuilt below: records move */
    a->kidx = NULL;
    a->n_kidx = 0;
    bool advance = s->since.n > 0;
    size_t i = na, j = nb, w = total; /* unread: a[0, i), b[0, j); output: [w, total) */
    while (i > 0 || j > 0) {
        int c = i == 0   ? -1
                : j == 0 ? 1
                         : dl__batch_rcmp(dl__ub_row(u, i - 1), dl__ub_row(ub, j - 1), rs);
        size_t top = w;
        if (c >= 0) {
            if (--w != --i)
                memcpy(u->data + w * st, u->data + i * st, st);
        } else {
            w--;
            dl__ub_copy(u, w, ub, --j);
        }
        const dl_value_t *row = dl__ub_row(u, top - 1); /* stays put while the group grows */
        while (c >= 0 && i > 0 && dl__batch_rcmp(dl__ub_row(u, i - 1), row, rs) == 0)
            if (--w != --i)
                memcpy(u->data + w * st, u->data + i * st, st);
        while (c <= 0 && j > 0 && dl__batch_rcmp(dl__ub_row(ub, j - 1), row, rs) == 0) {
            w--;
            dl__ub_copy(u, w, ub, --j);
        }
        if (advance)
            for (size_t x = w; x < top; x++)
                dl_time_advance_by(dl__ub_time(u, x), &s->since, dl__ub_time(u, x));
        if (top - w > 1)
            w = group_consolidate(u, w, top);
    }
    u->n = total - w;
    if (w > 0 && u->n > 0)
        memmove(u->data, u->data + w * st, u->n * st);
    if (u->n == 0) {
        *out = NULL;
        return 0;
    }
    dl__batch_narrow(u, s->narrow_min);
    dl__batch_ubuf_shrink(u);
    a->since_gen = s->since_gen;
    dl__spine_index(a, s->ka);
    *out = a;
    return 0;
}

/* Replaces batches [k, k+1] (or [k] alone when two is false) with their merge. */
static int merge_at(dl_spine_t *s, size_t k, bool two) {
    dl_batch_t *m = NULL, *a = s->batches[k], *b = two ? s->batches[k + 1] : NULL;
    size_t before = a->u.n + (b ? b->u.n : 0);
    int rc = a->refs == 1 ? merge_in_place(s, a, b, &m) : merge(s, a, b, &m);
    if (rc)
        return rc;
    size_t removed = two ? 2 : 1;
    s->records -= before;
    if (m != a)
        dl__batch_unref(a);
    if (two)
        dl__batch_unref(s->batches[k + 1]);
    size_t put = 0;
    if (m) {
        s->batches[k] = m;
        s->records += m->u.n;
        put = 1;
    }
    memmove(s->batches + k + put, s->batches + k + removed,
            (s->n - k - removed) * sizeof *s->batches);
    s->n -= removed - put;
    return 0;
}

int dl__spine_insert(dl_spine_t *s, dl_batch_t *b) {
    if (b->u.n == 0) {
        dl__batch_unref(b);
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        dl_batch_t **nb = dl_realloc(s->batches, cap * sizeof *nb);
        if (!nb) {
            dl__batch_unref(b);
            return DL_ENOMEM;
        }
        s->batches = nb;
        s->cap = cap;
    }
    /* An inserted batch's times are not yet advanced: mark it stale unless since is the
     * initial frontier (generation 0). */
    b->since_gen = s->since_gen ? s->since_gen - 1 : 0;
    s->records += b->u.n;
    /* Design note 6 (out of memory there: b is kept as a batch of its own). */
    if (s->n > 0 && s->batches[s->n - 1]->refs == 1 &&
        merge_append(s, s->batches[s->n - 1], b) == 1) {
        dl__batch_unref(b);
    } else {
        dl__spine_index(b, s->ka);
        s->batches[s->n++] = b;
    }
    while (s->n >= 2 && s->batches[s->n - 2]->u.n <= 2 * s->batches[s->n - 1]->u.n) {
        int rc = merge_at(s, s->n - 2, true);
        if (rc)
            return rc;
    }
    return 0;
}

int dl__spine_set_since(dl_spine_t *s, const dl_antichain_t *f) {
    if (f->dim != s->dim || !dl_antichain_le(&s->since, f))
        return 0;
    if (dl_antichain_le(f, &s->since))
        return 0; /* equal */
    int rc = dl_antichain_copy(&s->since, f);
    if (rc)
        return rc;
    s->since_gen++;
    return 0;
}

int dl__spine_maintain(dl_spine_t *s, size_t *fuel_used) {
    if (s->n >= 2) {
        /* Merge the two smallest (newest) batches: the cheapest step toward one batch. */
        size_t moved = s->batches[s->n - 2]->u.n + s->batches[s->n - 1]->u.n;
        int rc = merge_at(s, s->n - 2, true);
        if (rc)
            return rc;
        *fuel_used += moved;
        /* Restore the layer rule (design note 1) at the new tail. */
        while (s->n >= 2 && s->batches[s->n - 2]->u.n <= 2 * s->batches[s->n - 1]->u.n) {
            *fuel_used += s->batches[s->n - 2]->u.n + s->batches[s->n - 1]->u.n;
            if ((rc = merge_at(s, s->n - 2, true)))
                return rc;
        }
        return 1;
    }
    if (s->n == 1 && s->batches[0]->since_gen != s->since_gen) {
        size_t moved = s->batches[0]->u.n;
        int rc = merge_at(s, 0, false);
        if (rc)
            return rc;
        *fuel_used += moved;
        return 1;
    }
    return 0;
}

/* The sparse key index: when every record's first key column has one integer-like type,
 * kidx[j] is the order-preserving image of that column in record j*DL_KIDX_STEP. A seek
 * for a far key binary-searches this dense array (8 images per cache line) instead of the
 * records, then finishes inside at most a few blocks. */

void dl__spine_index(dl_batch_t *b, size_t ka) {
    const dl_ubuf_t *u = &b->u;
    if (b->kidx || ka == 0 || u->n < 64)
        return;
    uint8_t t0 = dl__ub_row(u, 0)->type;
    if (!kimg_type(t0) || dl__ub_row(u, u->n - 1)->type != t0)
        return; /* sorted by type rank first: equal first and last types mean uniform */
    size_t nk = (u->n + DL_KIDX_STEP - 1) / DL_KIDX_STEP;
    uint64_t *k = dl_malloc(nk * sizeof *k);
    if (!k)
        return; /* the index is an optimization only */
    for (size_t j = 0; j < nk; j++)
        k[j] = kimg(dl__ub_row(u, j * DL_KIDX_STEP));
    b->kidx = k;
    b->n_kidx = nk;
}

/* First index in [lo, hi) whose row is >= key (hi if none). */
static size_t lower_bound(const dl_ubuf_t *u, size_t ka, const dl_value_t *key, size_t lo,
                          size_t hi) {
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dl__batch_rcmp(dl__ub_row(u, mid), key, ka) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

size_t dl__spine_prefetch(const dl_batch_t *bt, const dl_value_t *key, size_t from) {
    const dl_ubuf_t *b = &bt->u;
    if (!bt->kidx || from >= b->n || key[0].type != dl__ub_row(b, 0)->type)
        return from;
    uint64_t v = kimg(key);
    if (kimg(dl__ub_row(b, b->n - 1)) < v)
        return b->n; /* past the last key: the seek will not touch the records */
    const uint64_t *k = bt->kidx;
    size_t nk = bt->n_kidx, lo = from / DL_KIDX_STEP, step = 1, hi = lo + 1;
    while (hi < nk && k[hi] < v) { /* gallop: keys ahead are usually near */
        lo = hi;
        step *= 2;
        hi = lo + step;
    }
    if (hi > nk)
        hi = nk;
    while (lo < hi) {
        size_t m = lo + (hi - lo) / 2;
        if (k[m] < v)
            lo = m + 1;
        else
            hi = m;
    }
    size_t r = (lo > 0 ? lo - 1 : 0) * DL_KIDX_STEP;
    const char *p = (const char *)dl__ub_row(b, r);
    size_t bytes = DL_KIDX_STEP * b->stride, end = (b->n - r) * b->stride;
    if (bytes > end)
        bytes = end;
    for (size_t off = 0; off < bytes; off += 64)
        __builtin_prefetch(p + off);
    /* Record r's key image is below v, so it and every record before it sort before key. */
    return lo > 0 && r + 1 > from ? r + 1 : from;
}

size_t dl__spine_seek(const dl_batch_t *bt, size_t ka, const dl_value_t *key, size_t from) {
    const dl_ubuf_t *b = &bt->u;
    size_t n = b->n;
    if (from >= n || dl__batch_rcmp(dl__ub_row(b, from), key, ka) >= 0)
        return from;
    /* Past the batch's last key: keys that only grow (new entities, events) look up keys
     * no older batch holds, and find that here at once. */
    if (dl__batch_rcmp(dl__ub_row(b, n - 1), key, ka) < 0)
        return n;
    if (bt->kidx && key[0].type == dl__ub_row(b, 0)->type) {
        /* With the index: gallop over the images from from's block (dense, in cache), to
         * the blocks [a-1, c) that can hold the key, then search those records. */
        uint64_t v = kimg(key);
        const uint64_t *k = bt->kidx;
        size_t nk = bt->n_kidx, lo = from / DL_KIDX_STEP, step = 1, hi = lo + 1;
        while (hi < nk && k[hi] < v) {
            lo = hi;
            step *= 2;
            hi = lo + step;
        }
        if (hi > nk)
            hi = nk;
        while (lo < hi) { /* first block in [lo, hi) with image >= v, else hi */
            size_t m = lo + (hi - lo) / 2;
            if (k[m] < v)
                lo = m + 1;
            else
                hi = m;
        }
        size_t a = lo, c = a;
        while (c < nk && k[c] <= v)
            c++; /* blocks starting with an equal image: one key spans few blocks */
        size_t l = a > 0 ? (a - 1) * DL_KIDX_STEP : 0;
        size_t h = c * DL_KIDX_STEP < n ? c * DL_KIDX_STEP : n;
        if (l < from + 1)
            l = from + 1;
        if (h < l)
            h = l;
        if (h - l <= 4 * DL_KIDX_STEP) {
            /* A few adjacent records: a forward scan streams through their cache lines
             * instead of taking dependent misses. */
            while (l < h && dl__batch_rcmp(dl__ub_row(b, l), key, ka) < 0)
                l++;
            return l;
        }
        return lower_bound(b, ka, key, l, h);
    }
    /* Gallop: invariant row(lo) < key. */
    size_t lo = from, step = 1, hi = from + 1;
    while (hi < n && dl__batch_rcmp(dl__ub_row(b, hi), key, ka) < 0) {
        lo = hi;
        step *= 2;
        hi = lo + step;
    }
    if (hi > n)
        hi = n;
    return lower_bound(b, ka, key, lo + 1, hi);
}

bool dl__spine_check(const dl_spine_t *s) {
    size_t total = 0;
    for (size_t i = 0; i < s->n; i++) {
        const dl_batch_t *b = s->batches[i];
        if (b->u.n == 0 || !dl__batch_check(&b->u))
            return false;
        if (b->u.arity != s->ka + s->va || b->u.dim != s->dim)
            return false;
        if (b->kidx) {
            if (b->n_kidx != (b->u.n + DL_KIDX_STEP - 1) / DL_KIDX_STEP)
                return false;
            for (size_t j = 0; j < b->n_kidx; j++)
                if (b->kidx[j] != kimg(dl__ub_row(&b->u, j * DL_KIDX_STEP)))
                    return false;
        }
        total += b->u.n;
    }
    return total == s->records;
}
