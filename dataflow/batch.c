/*
 * batch.c: update buffers (fixed-stride records row, time, diff), sealed reference-counted
 * batches, and consolidation: sort by (row, time), add diffs of equal pairs, drop zeros.
 * Consolidation is the hot primitive (DESIGN-NOTES §1): records are ordered through an
 * index of (64-bit order-preserving prefix of the first column, record number) pairs,
 * radix-sorted on the prefix, with the full comparison only inside runs of equal prefix;
 * the records are then gathered once into a new buffer. Does not know about keys or
 * arrangements (spine.c) or operators.
 */
#include "dataflow/dataflow.h"

#include <stdlib.h>

void dl__batch_ubuf_init(dl_ubuf_t *b, size_t arity, size_t dim) {
    b->arity = (uint32_t)arity;
    b->dim = (uint32_t)dim;
    b->stride = arity * sizeof(dl_value_t) + dim * sizeof(uint64_t) + sizeof(int64_t);
    b->narrow = 0;
    b->n = 0;
    b->cap = 0;
    b->data = NULL;
}

void dl__batch_ubuf_fini(dl_ubuf_t *b) {
    dl_free(b->data);
    dl__batch_ubuf_init(b, b->arity, b->dim); /* empty and wide again */
}

bool dl__batch_ubuf_reserve(dl_ubuf_t *b, size_t extra) {
    if (DL_UNLIKELY(b->narrow))
        return dl__batch_widen(b, b->n + extra);
    if (b->n + extra <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 8;
    while (cap < b->n + extra)
        cap *= 2;
    uint8_t *d = dl_realloc(b->data, cap * b->stride);
    if (!d)
        return false;
    b->data = d;
    b->cap = cap;
    return true;
}

void dl__batch_ubuf_shrink(dl_ubuf_t *b) {
    if (b->n == 0) {
        dl__batch_ubuf_fini(b);
        return;
    }
    if (b->n == b->cap)
        return;
    uint8_t *d = dl_realloc(b->data, b->n * b->stride);
    if (d) { /* on failure the larger buffer stays: still valid */
        b->data = d;
        b->cap = b->n;
    }
}

size_t dl__batch_ubuf_alloc(dl_ubuf_t *b) {
    if ((b->n == b->cap || b->narrow) && !dl__batch_ubuf_reserve(b, 1))
        return SIZE_MAX;
    return b->n++;
}

bool dl__batch_ubuf_push(dl_ubuf_t *b, const dl_value_t *row, const uint64_t *t, int64_t diff) {
    size_t i = dl__batch_ubuf_alloc(b);
    if (i == SIZE_MAX)
        return false;
    if (b->arity)
        memcpy(dl__ub_row(b, i), row, b->arity * sizeof(dl_value_t));
    memcpy(dl__ub_time(b, i), t, b->dim * sizeof(uint64_t));
    *dl__ub_diff(b, i) = diff;
    return true;
}

/* ---- narrow batches ------------------------------------------------------------------ */
static size_t wide_stride(const dl_ubuf_t *b) {
    return (size_t)b->arity * sizeof(dl_value_t) + b->dim * sizeof(uint64_t) + sizeof(int64_t);
}

/* Copies n bytes (a multiple of 8: records are made of 8-byte words) word by word: the
 * sizes here are a few words, where a call to memcpy would cost more than the copy. */
static inline void copy_words(uint8_t *dst, const uint8_t *src, size_t n) {
    for (size_t k = 0; k < n; k += 8) {
        uint64_t w;
        memcpy(&w, src + k, 8);
        memcpy(dst + k, &w, 8);
    }
}

/* Moves every record from layout `from` to layout `to` (flags), in the buffer. Records go
 * front to back when they shrink and back to front when they grow, so a record is read
 * before anything overwrites it; each passes through a scratch copy, since the two
 * positions of one record may overlap. */
static void relayout(dl_ubuf_t *b, unsigned from, unsigned to) {
    size_t ar = (size_t)b->arity * sizeof(dl_value_t), tb = b->dim * sizeof(uint64_t);
    size_t os = ar + (from & DL_UB_SHARED_TIME ? 0 : tb) + (from & DL_UB_SHARED_DIFF ? 0 : 8);
    size_t ns = ar + (to & DL_UB_SHARED_TIME ? 0 : tb) + (to & DL_UB_SHARED_DIFF ? 0 : 8);
    const uint8_t *st = (const uint8_t *)b->shared;
    const uint8_t *sd = (const uint8_t *)&b->shared[DL_TIME_MAX_DIM];
    uint8_t rec[DL_ARITY_MAX * sizeof(dl_value_t) + (DL_TIME_MAX_DIM + 1) * sizeof(uint64_t)];
    for (size_t x = 0; x < b->n; x++) {
        size_t i = ns < os ? x : b->n - 1 - x;
        const uint8_t *o = b->data + i * os;
        copy_words(rec, o, ar);
        size_t p = ar;
        if (!(to & DL_UB_SHARED_TIME)) {
            copy_words(rec + p, from & DL_UB_SHARED_TIME ? st : o + ar, tb);
            p += tb;
        }
        if (!(to & DL_UB_SHARED_DIFF))
            copy_words(rec + p, from & DL_UB_SHARED_DIFF ? sd : o + os - 8, 8);
        copy_words(b->data + i * ns, rec, ns);
    }
    b->stride = ns;
}

void dl__batch_narrow(dl_ubuf_t *b, size_t min) {
    /* Arity 0 would leave records of no bytes. */
    if (b->narrow || b->arity == 0 || b->n < min || b->n < 2)
        return;
    const uint64_t *t0 = dl__ub_time(b, 0);
    int64_t d0 = *dl__ub_diff(b, 0);
    bool st = true, sd = true;
    for (size_t i = 1; i < b->n && (st || sd); i++) {
        st = st && memcmp(dl__ub_time(b, i), t0, b->dim * sizeof *t0) == 0;
        sd = sd && *dl__ub_diff(b, i) == d0;
    }
    unsigned to = (st && b->dim ? DL_UB_SHARED_TIME : 0) | (sd ? DL_UB_SHARED_DIFF : 0);
    if (!to)
        return;
    memcpy(b->shared, t0, b->dim * sizeof *t0);
    b->shared[DL_TIME_MAX_DIM] = (uint64_t)d0;
    relayout(b, 0, to);
    b->narrow = to;
    b->cap = b->n; /* narrow buffers are never appended to */
    uint8_t *d = dl_realloc(b->data, b->n * b->stride);
    if (d) /* else the larger block stays: still valid */
        b->data = d;
}

bool dl__batch_widen(dl_ubuf_t *b, size_t cap) {
    if (cap < b->n)
        cap = b->n;
    size_t ws = wide_stride(b);
    if (!b->narrow) {
        if (cap <= b->cap)
            return true;
        uint8_t *d = dl_realloc(b->data, cap * ws);
        if (!d)
            return false;
        b->data = d;
        b->cap = cap;
        return true;
    }
    size_t bytes = cap * ws;
    if (bytes > b->cap * b->stride) {
        uint8_t *d = dl_realloc(b->data, bytes);
        if (!d)
            return false;
        b->data = d;
    }
    relayout(b, b->narrow, 0);
    b->narrow = 0;
    b->cap = bytes / ws;
    return true;
}

/* ---- consolidation --------------------------------------------------------------------- */
/* Records are sorted through items holding up to three 64-bit order-preserving "image"
 * words of the record's leading components (columns, then time coordinates) and the
 * record number. A key plan, computed per buffer, says how many words are meaningful and
 * whether they determine the order completely (then no record is ever touched while
 * sorting); otherwise ties fall back to the full comparison. */
typedef struct sort_item {
    uint64_t p[3];
    uint64_t idx;
} sort_item_t;

enum { IMG_EXACT, IMG_TEXT, IMG_RANK, IMG_TIME };

typedef struct key_plan {
    int n;         /* words used (1..3) */
    bool complete; /* the words decide the order and equality */
    int src[3];    /* column index, or arity + time coordinate */
    int kind[3];   /* IMG_... */
} key_plan_t;

/* The full order of two records: row, then time lexicographically. */
static int rec_cmp(const dl_ubuf_t *b, size_t i, size_t j) {
    int c = dl__batch_rcmp(dl__ub_row(b, i), dl__ub_row(b, j), b->arity);
    if (c)
        return c;
    return dl_time_cmp(dl__ub_time(b, i), dl__ub_time(b, j), b->dim);
}

/* An order-preserving 64-bit image of a value, valid among values of one type: signed
 * integers get their sign bit flipped, doubles the usual IEEE trick. */
static uint64_t value_image(const dl_value_t *v) {
    if (v->type == DL_T_DOUBLE) {
        uint64_t bits = v->as.bits;
        return (bits & 0x8000000000000000ull) ? ~bits : bits | 0x8000000000000000ull;
    }
    return (uint64_t)v->as.i ^ 0x8000000000000000ull;
}

/* The first 8 bytes, big-endian, zero padded: monotone in the byte order of text. */
static uint64_t text_image(const dl_value_t *v) {
    size_t len;
    const uint8_t *p =
        v->type == DL_T_UUID ? dl_value_uuid_bytes(*v) : (const uint8_t *)dl_value_str(*v, &len);
    if (v->type == DL_T_UUID)
        len = 16;
    uint64_t x = 0;
    for (size_t i = 0; i < 8; i++)
        x = (x << 8) | (i < len ? p[i] : 0);
    return x;
}

static key_plan_t plan_keys(const dl_ubuf_t *b) {
    key_plan_t kp = {0, true, {0}, {0}};
    size_t n = b->n;
    for (size_t c = 0; c < b->arity && kp.n < 3; c++) {
        uint8_t t0 = dl__ub_row(b, 0)[c].type;
        bool uniform = true;
        for (size_t i = 1; i < n && uniform; i++)
            uniform = dl__ub_row(b, i)[c].type == t0;
        kp.src[kp.n] = (int)c;
        if (!uniform) {
            kp.kind[kp.n++] = IMG_RANK;
            kp.complete = false;
            return kp;
        }
        if (t0 == DL_T_STRING || t0 == DL_T_KEYWORD || t0 == DL_T_UUID) {
            kp.kind[kp.n++] = IMG_TEXT;
            kp.complete = false;
            return kp;
        }
        kp.kind[kp.n++] = IMG_EXACT;
    }
    for (size_t d = 0; d < b->dim && kp.n < 3; d++) {
        kp.src[kp.n] = (int)(b->arity + d);
        kp.kind[kp.n++] = IMG_TIME;
    }
    if ((size_t)kp.n < b->arity + b->dim)
        kp.complete = false;
    if (kp.n == 0) { /* arity 0 and dim 0: nothing to order */
        kp.n = 1;
        kp.src[0] = 0;
        kp.kind[0] = IMG_TIME;
    }
    return kp;
}

static void fill_item(const dl_ubuf_t *b, const key_plan_t *kp, size_t i, sort_item_t *it) {
    const dl_value_t *row = dl__ub_row(b, i);
    it->idx = i;
    it->p[1] = it->p[2] = 0;
    for (int k = 0; k < kp->n; k++) {
        int s = kp->src[k];
        switch (kp->kind[k]) {
            case IMG_EXACT:
                it->p[k] = value_image(row + s);
                break;
            case IMG_TEXT:
                it->p[k] = text_image(row + s);
                break;
            case IMG_RANK:
                it->p[k] = (uint64_t)row[s].type << 56;
                break;
            default:
                it->p[k] = b->dim ? dl__ub_time(b, i)[s - (int)b->arity] : 0;
                break;
        }
    }
}

static inline int item_cmp(const dl_ubuf_t *b, const key_plan_t *kp, const sort_item_t *x,
                           const sort_item_t *y) {
    for (int k = 0; k < kp->n; k++)
        if (x->p[k] != y->p[k])
            return x->p[k] < y->p[k] ? -1 : 1;
    return kp->complete ? 0 : rec_cmp(b, x->idx, y->idx);
}

static void insertion_sort(const dl_ubuf_t *b, const key_plan_t *kp, sort_item_t *it, size_t n) {
    for (size_t i = 1; i < n; i++) {
        sort_item_t x = it[i];
        size_t j = i;
        while (j > 0 && item_cmp(b, kp, &it[j - 1], &x) > 0) {
            it[j] = it[j - 1];
            j--;
        }
        it[j] = x;
    }
}

/* Stable merge sort of items using tmp (n items). */
static void merge_sort(const dl_ubuf_t *b, const key_plan_t *kp, sort_item_t *it, sort_item_t *tmp,
                       size_t n) {
    if (n <= 24) {
        insertion_sort(b, kp, it, n);
        return;
    }
    size_t h = n / 2;
    merge_sort(b, kp, it, tmp, h);
    merge_sort(b, kp, it + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = item_cmp(b, kp, &it[i], &it[j]) <= 0 ? it[i++] : it[j++];
    while (i < h)
        tmp[k++] = it[i++];
    while (j < n)
        tmp[k++] = it[j++];
    memcpy(it, tmp, n * sizeof *it);
}

/* LSD radix sort on the first word (bytes where all items agree are skipped). */
static void radix_sort(sort_item_t *it, sort_item_t *tmp, size_t n) {
    uint64_t all_or = 0, all_and = ~0ull;
    for (size_t i = 0; i < n; i++) {
        all_or |= it[i].p[0];
        all_and &= it[i].p[0];
    }
    uint64_t varying = all_or ^ all_and;
    sort_item_t *src = it, *dst = tmp;
    for (int shift = 0; shift < 64; shift += 8) {
        if (((varying >> shift) & 0xff) == 0)
            continue;
        size_t count[256] = {0};
        for (size_t i = 0; i < n; i++)
            count[(src[i].p[0] >> shift) & 0xff]++;
        size_t sum = 0;
        for (int c = 0; c < 256; c++) {
            size_t x = count[c];
            count[c] = sum;
            sum += x;
        }
        for (size_t i = 0; i < n; i++)
            dst[count[(src[i].p[0] >> shift) & 0xff]++] = src[i];
        sort_item_t *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != it)
        memcpy(it, src, n * sizeof *it);
}

/* Moves records so that slot j (j < w) holds the record that was at it[j].idx, in place:
 * the sources are distinct, so the moves form paths (starting at a slot whose record
 * nobody needs) and cycles (closed with one saved record). Needs 4 bytes per record for
 * the inverse map instead of a second buffer of records. */
static bool permute_in_place(dl_ubuf_t *b, const sort_item_t *it, size_t w, size_t n) {
    const uint32_t NONE = UINT32_MAX, DONE = UINT32_MAX - 1;
    uint32_t *inv = dl_malloc((n ? n : 1) * sizeof *inv); /* slot -> target reading it */
    uint8_t *tmp = dl_malloc(b->stride);
    if (!inv || !tmp) {
        dl_free(inv);
        dl_free(tmp);
        return false;
    }
    for (size_t s = 0; s < n; s++)
        inv[s] = NONE;
    for (size_t j = 0; j < w; j++)
        inv[it[j].idx] = (uint32_t)j;
    size_t st = b->stride;
    uint8_t *d = b->data;
    /* Paths: a target slot whose own record no target needs can be overwritten first. */
    for (size_t j = 0; j < w; j++) {
        if (inv[j] != NONE)
            continue;
        size_t cur = j;
        while (cur < w) {
            size_t src = it[cur].idx;
            if (src != cur)
                memcpy(d + cur * st, d + src * st, st);
            inv[cur] = DONE; /* cur's old record has been consumed (or was not needed) */
            if (src == cur)
                break;
            cur = src;
        }
    }
    /* Cycles: every remaining target's record is needed by another remaining target. */
    for (size_t j = 0; j < w; j++) {
        if (inv[j] == DONE || inv[j] == NONE)
            continue;
        if (it[j].idx == j) {
            inv[j] = DONE;
            continue;
        }
        memcpy(tmp, d + j * st, st);
        size_t cur = j;
        for (;;) {
            size_t src = it[cur].idx;
            inv[cur] = DONE;
            if (src == j) {
                memcpy(d + cur * st, tmp, st);
                break;
            }
            memcpy(d + cur * st, d + src * st, st);
            cur = src;
        }
    }
    dl_free(inv);
    dl_free(tmp);
    return true;
}

bool dl__batch_consolidate(dl_ubuf_t *b) {
    if (b->narrow && !dl__batch_widen(b, b->n))
        return false;
    size_t n = b->n;
    if (n == 0)
        return true;
    if (n == 1) {
        if (*dl__ub_diff(b, 0) == 0)
            b->n = 0;
        return true;
    }
    /* Already sorted and consolidated (a scan of an index in its own order, a batch that
     * was consolidated before): nothing to do. Unsorted input fails the check within a few
     * records; sorted input saves the sort. */
    size_t ok = 1;
    while (ok < n && *dl__ub_diff(b, ok - 1) != 0 && rec_cmp(b, ok - 1, ok) < 0)
        ok++;
    if (ok == n && *dl__ub_diff(b, n - 1) != 0)
        return true;
    sort_item_t *it = dl_malloc(2 * n * sizeof *it);
    if (!it)
        return false;
    sort_item_t *tmp = it + n;
    key_plan_t kp = plan_keys(b);
    for (size_t i = 0; i < n; i++)
        fill_item(b, &kp, i, &it[i]);
    if (n > 64) {
        radix_sort(it, tmp, n);
        /* Sort runs of equal first word by the rest of the order. */
        size_t i = 0;
        while (i < n) {
            size_t j = i + 1;
            while (j < n && it[j].p[0] == it[i].p[0])
                j++;
            if (j - i > 1 && (kp.n > 1 || !kp.complete))
                merge_sort(b, &kp, it + i, tmp, j - i);
            i = j;
        }
    } else {
        insertion_sort(b, &kp, it, n);
    }
    /* Groups of equal (row, time): sum the diffs; keep (source record, sum) for the groups
     * whose sum is not zero, in sorted order, compacted into the front of `it`. */
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        if (i + 16 < n) /* diffs are read in sorted order, i.e. at random: prefetch */
            __builtin_prefetch(dl__ub_diff(b, it[i + 16].idx));
        size_t k = it[i].idx;
        int64_t d = *dl__ub_diff(b, k);
        size_t j = i + 1;
        while (j < n && item_cmp(b, &kp, &it[i], &it[j]) == 0) {
            d += *dl__ub_diff(b, it[j].idx);
            j++;
        }
        if (d != 0) {
            it[w].idx = k;
            it[w].p[0] = (uint64_t)d;
            w++;
        }
        i = j;
    }
    if (!permute_in_place(b, it, w, n)) {
        dl_free(it);
        return false;
    }
    for (size_t j = 0; j < w; j++)
        *dl__ub_diff(b, j) = (int64_t)it[j].p[0];
    dl_free(it);
    b->n = w;
    dl__batch_ubuf_shrink(b);
    return true;
}

bool dl__batch_check(const dl_ubuf_t *b) {
    for (size_t i = 0; i < b->n; i++) {
        if (*dl__ub_diff(b, i) == 0)
            return false;
        if (i > 0 && rec_cmp(b, i - 1, i) >= 0)
            return false;
    }
    return true;
}

/* ---- sealed batches -------------------------------------------------------------------- */
dl_batch_t *dl__batch_new(dl_ubuf_t *u, bool sorted) {
    dl_batch_t *b = dl_malloc(sizeof *b);
    if (!b)
        return NULL;
    b->refs = 1;
    b->sorted = sorted;
    b->since_gen = 0;
    b->kidx = NULL;
    b->n_kidx = 0;
    b->u = *u;
    u->data = NULL;
    u->n = u->cap = 0;
    return b;
}

void dl__batch_ref(dl_batch_t *b) { b->refs++; }

dl_batch_t *dl__batch_wide(dl_batch_t *b) {
    if (!b->u.narrow) {
        b->refs++;
        return b;
    }
    dl_ubuf_t o;
    dl__batch_ubuf_init(&o, b->u.arity, b->u.dim);
    if (!dl__batch_ubuf_reserve(&o, b->u.n))
        return NULL;
    for (size_t i = 0; i < b->u.n; i++)
        dl__ub_copy(&o, i, &b->u, i);
    o.n = b->u.n;
    dl_batch_t *w = dl__batch_new(&o, b->sorted);
    if (!w)
        dl__batch_ubuf_fini(&o);
    return w;
}

void dl__batch_unref(dl_batch_t *b) {
    if (b && --b->refs == 0) {
        dl__batch_ubuf_fini(&b->u);
        dl_free(b->kidx);
        dl_free(b);
    }
}
