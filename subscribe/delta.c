/*
 * delta.c: dl_delta_t, the message a subscriber receives: a consolidated set of
 * (row, diff) pairs tagged with a time and a kind (DATA, FRONTIER, END).
 *
 * It does not compute diffs (the dataflow does) nor queue them (sub.c does); it is the
 * consolidating container both use. DESIGN-NOTES §1 ("consolidation is the central
 * primitive") and §4; docs/subscribe.md "Deltas".
 *
 * Design notes.
 * 1. Rows live densely: rows[0 .. len*arity) and diffs[0 .. len). No diff is 0 and no two
 *    rows are equal (consolidated). Order is insertion order perturbed by removals (a
 *    removal moves the last pair into the hole), so iteration is dense and O(len).
 * 2. index[] is an open-addressing table (linear probing) of pair positions + 1 (0 =
 *    empty), index_cap a power of two >= cap * 4/3, so its load stays <= 3/4. Hashes are
 *    not stored (memory is what a coalescing queue is judged by): they are recomputed
 *    with dl__row_hash_fast (base.h: dl_row_eq's meaning, inline, one multiply per value)
 *    when a probe or a backward-shift deletion needs a home slot.
 * 3. cap grows by 1.5x and shrinks by half when len < cap/4, so the memory of a delta is
 *    within a small factor of its content, also after a burst of cancellations.
 * 4. A delta is mutable until sealed; sealed deltas are immutable and shared between
 *    threads by an atomic reference count.
 * 5. A delta filled from rows already known to be distinct needs no index: when the rows
 *    given to dl__delta_add_rows (a completed time's diff, which the dataflow hands out
 *    consolidated and sorted) are strictly ascending in key order (key_cmp: dl_row_cmp's
 *    order, ties broken by the value's bits, so that "equal in key order" is exactly
 *    dl_row_eq), they are distinct and are copied in bulk; the delta is then *unindexed*
 *    (index NULL, index_cap 0, len > 0) and stays sorted. Its index is built (every row
 *    hashed) only when a pair is added to it (add_pair); dl_delta_find on it is a binary
 *    search, so a sealed delta shared between threads is never mutated to build one. Most
 *    deltas are only iterated by their subscribers and merged *from*: they are never hashed.
 * 6. dl__dacc_t accumulates the deltas a source hands out (its snapshot) as a stack of
 *    sorted runs, merged pairwise as they grow (a run at most half the size of the one
 *    below it; binary-counter amortization): a handed-out sorted delta enters by reference,
 *    without a copy or a hash, and the merges are sequential passes (galloping over long
 *    stretches of one run), in place in the lower run's arrays when the accumulator is its
 *    only holder (merge_in_place: fresh pages cost as much as the merge). Hashing every changed row
 * into one big accumulated delta (random probes, backward-shift deletions that rehash their
 * cluster) was the delivery path's largest cost in W3 (10,000 rows, 1,900 changed per delta: 3x
 * cheaper). But the bottom run is rewritten whenever the runs above it reach half its size, a pause
 *    proportional to the whole result: so once the sum outgrows big_rows rows (32768: a
 *    merge of at most ~50,000 rows, about a millisecond) the bottom becomes a private
 *    indexed delta into which later deltas are hashed (as before: no per-commit cost
 *    proportional to the result, only the index's growth by 1.5x).
 */
#include "subscribe/subscribe.h"

#include "base/base.h"

#include <stdatomic.h>
#include <stdlib.h>

struct dl_delta {
    atomic_uint refs;
    dl_delta_kind_t kind;
    bool sealed;      /* immutable once set */
    bool snapshot;    /* DATA: the full result as additions */
    bool pinned;      /* capacity is not given back (a fold in progress: dacc_fold) */
    int code;         /* END: the reason, 0 for a normal end */
    size_t arity;     /* columns per row */
    size_t n_dims;    /* coordinates in time[] */
    uint64_t n_times; /* producer times this delta stands for */
    uint64_t time[DL_DELTA_MAX_DIM];
    size_t len;       /* pairs held */
    size_t cap;       /* pairs the dense arrays can hold */
    dl_value_t *rows; /* cap * arity values; NULL when arity == 0 or cap == 0 */
    int64_t *diffs;   /* cap diffs */
    uint32_t *index;  /* index_cap slots: pair position + 1, 0 = empty */
    size_t index_cap; /* power of two, or 0 when cap == 0 or unindexed (note 5) */
    dl_delta_t *next; /* a snapshot's following messages (dl__delta_chain), owned */
};

static const dl_value_t empty_row[1];

/* dl_delta_row, inlined (the exported function may be interposed, so calls stay calls). */
static inline const dl_value_t *row_at(const dl_delta_t *d, size_t i) {
    return d->arity ? d->rows + i * d->arity : empty_row;
}

/* ---- times -------------------------------------------------------------------------------- */

int dl__delta_time_cmp(const uint64_t *a, const uint64_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

bool dl__delta_time_le(const uint64_t *a, const uint64_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] > b[i])
            return false;
    return true;
}

/* ---- construction ------------------------------------------------------------------------- */

int dl_delta_new(dl_delta_kind_t kind, size_t arity, const uint64_t *time, size_t n_dims,
                 dl_delta_t **out, dl_error_t *err) {
    if (!out)
        return dl_error_set(err, DL_EINVAL, "delta: NULL out");
    *out = NULL;
    if (kind != DL_DELTA_DATA && kind != DL_DELTA_FRONTIER && kind != DL_DELTA_END)
        return dl_error_set(err, DL_EINVAL, "delta: unknown kind %d", (int)kind);
    if (n_dims < 1 || n_dims > DL_DELTA_MAX_DIM || !time)
        return dl_error_set(err, DL_EINVAL, "delta: a time needs 1..%d coordinates, got %zu",
                            DL_DELTA_MAX_DIM, n_dims);
    if (arity > 4096)
        return dl_error_set(err, DL_EINVAL, "delta: arity %zu too large", arity);
    dl_delta_t *d = dl_calloc(1, sizeof *d);
    if (!d)
        return dl_error_set(err, DL_ENOMEM, "delta: out of memory");
    atomic_init(&d->refs, 1);
    d->kind = kind;
    d->arity = kind == DL_DELTA_DATA ? arity : 0;
    d->n_dims = n_dims;
    d->n_times = kind == DL_DELTA_DATA ? 1 : 0;
    memcpy(d->time, time, n_dims * sizeof *time);
    *out = d;
    return 0;
}

static void delta_free(dl_delta_t *d) {
    dl_delta_unref(d->next);
    dl_free(d->rows);
    dl_free(d->diffs);
    dl_free(d->index);
    dl_free(d);
}

dl_delta_t *dl_delta_ref(dl_delta_t *d) {
    atomic_fetch_add_explicit(&d->refs, 1, memory_order_relaxed);
    return d;
}

void dl_delta_unref(dl_delta_t *d) {
    if (d && atomic_fetch_sub_explicit(&d->refs, 1, memory_order_acq_rel) == 1)
        delta_free(d);
}

void dl_delta_seal(dl_delta_t *d) { d->sealed = true; }

int dl_delta_set_snapshot(dl_delta_t *d, bool snapshot) {
    if (d->sealed || d->kind != DL_DELTA_DATA)
        return DL_ESTATE;
    d->snapshot = snapshot;
    return 0;
}

void dl__delta_set_code(dl_delta_t *d, int code) { d->code = code; }

void dl__delta_chain(dl_delta_t *d, dl_delta_t *next) {
    dl_delta_t *last = d;
    while (last->next)
        last = last->next;
    last->next = next;
}

dl_delta_t *dl__delta_unchain(dl_delta_t *d) {
    dl_delta_t *n = d->next;
    d->next = NULL;
    return n;
}

int dl__delta_set_time(dl_delta_t *d, const uint64_t *time) {
    if (d->sealed)
        return DL_ESTATE;
    memcpy(d->time, time, d->n_dims * sizeof *time);
    return 0;
}

/* ---- accessors ---------------------------------------------------------------------------- */

dl_delta_kind_t dl_delta_kind(const dl_delta_t *d) { return d->kind; }
size_t dl_delta_arity(const dl_delta_t *d) { return d->arity; }
const uint64_t *dl_delta_time(const dl_delta_t *d, size_t *out_n_dims) {
    if (out_n_dims)
        *out_n_dims = d->n_dims;
    return d->time;
}
size_t dl_delta_len(const dl_delta_t *d) { return d->len; }
const dl_value_t *dl_delta_row(const dl_delta_t *d, size_t i) { return row_at(d, i); }
int64_t dl_delta_diff(const dl_delta_t *d, size_t i) { return d->diffs[i]; }
bool dl_delta_is_snapshot(const dl_delta_t *d) { return d->snapshot; }
int dl_delta_code(const dl_delta_t *d) { return d->code; }
uint64_t dl_delta_n_times(const dl_delta_t *d) { return d->n_times; }

size_t dl_delta_bytes(const dl_delta_t *d) {
    return sizeof *d + d->cap * (d->arity * sizeof(dl_value_t) + sizeof(int64_t)) +
           d->index_cap * sizeof(uint32_t);
}

/* ---- key order (design note 5) -------------------------------------------------------------- */

/* dl_value_cmp's order (type, then value), ties broken by the value's bits: a total order in
 * which 0 means dl_value_eq exactly (dl_value_cmp alone calls any two nils equal, whatever
 * their bits). For canonical values it is dl_value_cmp's order, the dataflow's batch order. */
static inline int vkey_cmp(const dl_value_t *a, const dl_value_t *b) {
    if (a->type != b->type)
        return a->type < b->type ? -1 : 1;
    int c = 0;
    switch (a->type) {
        case DL_T_BOOL:
        case DL_T_INT:
        case DL_T_INSTANT:
        case DL_T_REF:
            return (a->as.i > b->as.i) - (a->as.i < b->as.i); /* equal values, equal bits */
        case DL_T_NIL:
            break;
        default:
            c = dl_value_cmp(*a, *b);
    }
    return c ? c : (a->as.bits > b->as.bits) - (a->as.bits < b->as.bits);
}

static inline int key_cmp(const dl_value_t *a, const dl_value_t *b, size_t arity) {
    for (size_t i = 0; i < arity; i++) {
        int c = vkey_cmp(a + i, b + i);
        if (c)
            return c;
    }
    return 0;
}

/* ---- the index ---------------------------------------------------------------------------- */

static uint64_t pair_hash(const dl_delta_t *d, size_t i) {
    return dl__row_hash_fast(row_at(d, i), d->arity);
}

/* The slot holding pair position i (which must be indexed), found by probing from its home. */
static size_t slot_of(const dl_delta_t *d, size_t i) {
    size_t mask = d->index_cap - 1;
    size_t s = (size_t)pair_hash(d, i) & mask;
    while (d->index[s] != (uint32_t)(i + 1))
        s = (s + 1) & mask;
    return s;
}

/* Probes for row: returns its slot when present (*found = true) or the empty slot where it
 * would go. index_cap must be > 0. */
static size_t probe(const dl_delta_t *d, const dl_value_t *row, uint64_t h, bool *found) {
    size_t mask = d->index_cap - 1;
    size_t s = (size_t)h & mask;
    for (;;) {
        uint32_t v = d->index[s];
        if (v == 0) {
            *found = false;
            return s;
        }
        if (dl__row_same(row_at(d, v - 1), row, d->arity)) {
            *found = true;
            return s;
        }
        s = (s + 1) & mask;
    }
}

static size_t index_cap_for(size_t cap) {
    size_t n = 8;
    while (n * 3 < cap * 4)
        n *= 2;
    return n;
}

/* Resizes the dense arrays to new_cap (>= len) and rebuilds the index. On failure the
 * delta is unchanged. */
static int resize(dl_delta_t *d, size_t new_cap) {
    size_t icap = index_cap_for(new_cap);
    uint32_t *index = dl_calloc(icap, sizeof *index);
    if (!index)
        return DL_ENOMEM;
    if (d->arity) {
        dl_value_t *rows = dl_realloc(d->rows, new_cap * d->arity * sizeof *rows);
        if (!rows) {
            dl_free(index);
            return DL_ENOMEM;
        }
        d->rows = rows;
    }
    int64_t *diffs = dl_realloc(d->diffs, new_cap * sizeof *diffs);
    if (!diffs) {
        /* rows was resized already: both arrays still hold min(cap, new_cap) >= len pairs,
         * and the old index stays valid (it holds positions, not capacities). */
        d->cap = DL_MIN(d->cap, new_cap);
        dl_free(index);
        return DL_ENOMEM;
    }
    d->diffs = diffs;
    d->cap = new_cap;
    dl_free(d->index);
    d->index = index;
    d->index_cap = icap;
    size_t mask = icap - 1;
    for (size_t i = 0; i < d->len; i++) {
        size_t s = (size_t)pair_hash(d, i) & mask;
        while (index[s])
            s = (s + 1) & mask;
        index[s] = (uint32_t)(i + 1);
    }
    return 0;
}

/* Removes the index entry at slot s by backward-shift deletion (linear probing). */
static void index_delete(dl_delta_t *d, size_t s) {
    size_t mask = d->index_cap - 1;
    size_t i = s, j = s;
    d->index[i] = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (!d->index[j])
            return;
        size_t k = (size_t)pair_hash(d, d->index[j] - 1) & mask;
        /* The entry at j may stay when its home k lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays)
            continue;
        d->index[i] = d->index[j];
        d->index[j] = 0;
        i = j;
    }
}

/* Removes pair position i found at slot s; moves the last pair into its place. */
static void remove_pair(dl_delta_t *d, size_t i, size_t s) {
    index_delete(d, s);
    size_t last = d->len - 1;
    if (i != last) {
        size_t ls = slot_of(d, last);
        if (d->arity)
            memcpy(d->rows + i * d->arity, d->rows + last * d->arity,
                   d->arity * sizeof(dl_value_t));
        d->diffs[i] = d->diffs[last];
        d->index[ls] = (uint32_t)(i + 1);
    }
    d->len--;
    /* Design note 3: give memory back after cancellations; failure to shrink is harmless. */
    if (d->cap > 16 && d->len < d->cap / 4 && !d->pinned)
        (void)resize(d, d->cap / 2);
}

static int add_pair(dl_delta_t *d, const dl_value_t *row, int64_t diff) {
    if (diff == 0)
        return 0;
    if (!d->index_cap && d->cap) {
        /* Design note 5: an unindexed delta gets its index at its first addition. */
        int rc = resize(d, d->cap);
        if (rc)
            return rc;
    }
    uint64_t h = dl__row_hash_fast(row, d->arity);
    bool found = false;
    size_t s = 0;
    if (d->index_cap)
        s = probe(d, row, h, &found);
    if (found) {
        size_t i = d->index[s] - 1;
        int64_t sum;
        if (__builtin_add_overflow(d->diffs[i], diff, &sum))
            return DL_ERANGE;
        if (sum == 0)
            remove_pair(d, i, s);
        else
            d->diffs[i] = sum;
        return 0;
    }
    if (d->len == d->cap) {
        if (d->len >= UINT32_MAX - 1)
            return DL_ELIMIT;
        size_t nc = d->cap < 8 ? 8 : d->cap + d->cap / 2;
        int rc = resize(d, nc);
        if (rc)
            return rc;
        s = probe(d, row, h, &found);
    }
    size_t i = d->len++;
    if (d->arity)
        memcpy(d->rows + i * d->arity, row, d->arity * sizeof(dl_value_t));
    d->diffs[i] = diff;
    d->index[s] = (uint32_t)(i + 1);
    return 0;
}

int dl_delta_add(dl_delta_t *d, const dl_value_t *row, int64_t diff, dl_error_t *err) {
    if (!d)
        return dl_error_set(err, DL_EINVAL, "delta: NULL delta");
    if (d->sealed || d->kind != DL_DELTA_DATA)
        return dl_error_set(err, DL_ESTATE, "delta: add to a sealed or non-data delta");
    if (!row && d->arity)
        return dl_error_set(err, DL_EINVAL, "delta: NULL row");
    int rc = add_pair(d, d->arity ? row : empty_row, diff);
    if (rc == DL_ERANGE)
        return dl_error_set(err, rc, "delta: diff overflows int64");
    if (rc == DL_ELIMIT)
        return dl_error_set(err, rc, "delta: too many rows");
    if (rc)
        return dl_error_set(err, rc, "delta: out of memory");
    return 0;
}

/* Appends pairs [from, n) of rows/diffs to d while they are strictly ascending in key order
 * after d's last pair (d unindexed or empty, and sorted): *at is where it stopped. */
static int append_sorted(dl_delta_t *d, const dl_value_t *rows, const int64_t *diffs, size_t n,
                         size_t *at) {
    size_t ar = d->arity, i = *at;
    const dl_value_t *prev = d->len ? row_at(d, d->len - 1) : NULL;
    for (; i < n; i++) {
        if (diffs[i] == 0)
            continue;
        const dl_value_t *r = ar ? rows + i * ar : empty_row;
        if (prev && (ar == 0 || key_cmp(prev, r, ar) >= 0))
            break;
        if (d->len == d->cap) {
            if (d->len >= UINT32_MAX - 1)
                break;                    /* add_pair reports DL_ELIMIT */
            size_t nc = d->cap + (n - i); /* what is left, at most: one allocation */
            if (ar) {
                dl_value_t *nr = dl_realloc(d->rows, nc * ar * sizeof *nr);
                if (!nr)
                    return DL_ENOMEM;
                d->rows = nr;
            }
            int64_t *nd = dl_realloc(d->diffs, nc * sizeof *nd);
            if (!nd) {
                d->cap = DL_MIN(d->cap, nc); /* as in resize: rows grew, diffs did not */
                return DL_ENOMEM;
            }
            d->diffs = nd;
            d->cap = nc;
        }
        if (ar)
            memcpy(d->rows + d->len * ar, r, ar * sizeof *r);
        d->diffs[d->len++] = diffs[i];
        prev = row_at(d, d->len - 1);
    }
    *at = i;
    return 0;
}

int dl__delta_add_rows(dl_delta_t *d, const dl_value_t *rows, const int64_t *diffs, size_t n,
                       dl_error_t *err) {
    if (!d)
        return dl_error_set(err, DL_EINVAL, "delta: NULL delta");
    if (d->sealed || d->kind != DL_DELTA_DATA)
        return dl_error_set(err, DL_ESTATE, "delta: add to a sealed or non-data delta");
    if (n && !diffs)
        return dl_error_set(err, DL_EINVAL, "delta: NULL diffs");
    if (n && !rows && d->arity)
        return dl_error_set(err, DL_EINVAL, "delta: NULL rows");
    size_t i = 0;
    if (!d->index_cap) { /* empty, or unindexed (sorted): design note 5 */
        int rc = append_sorted(d, rows, diffs, n, &i);
        if (rc)
            return dl_error_set(err, rc, "delta: out of memory");
    }
    for (; i < n; i++) {
        int rc = dl_delta_add(d, d->arity ? rows + i * d->arity : NULL, diffs[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

int64_t dl_delta_find(const dl_delta_t *d, const dl_value_t *row) {
    if (d->kind != DL_DELTA_DATA || !d->len)
        return 0;
    const dl_value_t *r = d->arity ? row : empty_row;
    if (!d->index_cap) { /* unindexed, hence sorted in key order: a binary search */
        size_t lo = 0, hi = d->len;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = key_cmp(row_at(d, mid), r, d->arity);
            if (c == 0)
                return d->diffs[mid];
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        return 0;
    }
    bool found;
    size_t s = probe(d, r, dl__row_hash_fast(r, d->arity), &found);
    return found ? d->diffs[d->index[s] - 1] : 0;
}

/* ---- merging, cloning, sorting ------------------------------------------------------------ */

/* Allocates c's dense arrays for exactly n pairs (c empty, unindexed). */
static int alloc_pairs(dl_delta_t *c, size_t n) {
    if (c->arity && !(c->rows = dl_malloc(n * c->arity * sizeof *c->rows)))
        return DL_ENOMEM;
    if (!(c->diffs = dl_malloc(n * sizeof *c->diffs)))
        return DL_ENOMEM; /* rows are freed with c */
    c->cap = n;
    return 0;
}

/* The pairs are copied as they are (no hashing): an indexed delta's index is copied when
 * the copy's capacity (its length, or d's capacity with keep_cap) gives the same table
 * size, else rebuilt. */
static int clone_impl(const dl_delta_t *d, bool keep_cap, dl_delta_t **out) {
    dl_delta_t *c = NULL;
    int rc = dl_delta_new(d->kind, d->arity, d->time, d->n_dims, &c, NULL);
    if (rc)
        return rc;
    c->snapshot = d->snapshot;
    c->code = d->code;
    c->n_times = d->n_times;
    if (d->len) {
        size_t cap = keep_cap ? d->cap : d->len;
        rc = alloc_pairs(c, cap);
        if (!rc && d->index_cap && index_cap_for(cap) == d->index_cap) {
            if (!(c->index = dl_malloc(d->index_cap * sizeof *c->index)))
                rc = DL_ENOMEM;
            else {
                memcpy(c->index, d->index, d->index_cap * sizeof *c->index);
                c->index_cap = d->index_cap;
            }
        }
        if (rc) {
            dl_delta_unref(c);
            return rc;
        }
        if (d->arity)
            memcpy(c->rows, d->rows, d->len * d->arity * sizeof *c->rows);
        memcpy(c->diffs, d->diffs, d->len * sizeof *c->diffs);
        c->len = d->len;
        if (d->index_cap && !c->index_cap && (rc = resize(c, c->cap)) != 0) {
            dl_delta_unref(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

int dl__delta_clone(const dl_delta_t *d, dl_delta_t **out) { return clone_impl(d, false, out); }

int dl__delta_merge(dl_delta_t *into, const dl_delta_t *from) {
    if (into->sealed || into->kind != DL_DELTA_DATA || from->arity != into->arity ||
        from->n_dims != into->n_dims)
        return DL_ESTATE;
    size_t i = 0;
    if (!into->index_cap && from->len) { /* into empty or unindexed: design note 5 */
        int rc = append_sorted(into, from->rows, from->diffs, from->len, &i);
        if (rc)
            return rc;
    }
    for (; i < from->len; i++) {
        int rc = add_pair(into, row_at(from, i), from->diffs[i]);
        if (rc)
            return rc;
    }
    memcpy(into->time, from->time, from->n_dims * sizeof(uint64_t));
    into->n_times += from->n_times;
    return 0;
}

static int cmp_pos(const void *a, const void *b, void *ctx) {
    const dl_delta_t *d = ctx;
    return dl_row_cmp(row_at(d, *(const size_t *)a), row_at(d, *(const size_t *)b), d->arity);
}

int dl_delta_sort(dl_delta_t *d, dl_error_t *err) {
    if (d->sealed)
        return dl_error_set(err, DL_ESTATE, "delta: sort of a sealed delta");
    if (d->len < 2 || !d->index_cap)
        return 0; /* an unindexed delta is sorted (design note 5) */
    size_t *perm = dl_malloc(d->len * sizeof *perm);
    dl_value_t *rows = d->arity ? dl_malloc(d->len * d->arity * sizeof *rows) : NULL;
    int64_t *diffs = dl_malloc(d->len * sizeof *diffs);
    if (!perm || !diffs || (d->arity && !rows)) {
        dl_free(perm);
        dl_free(rows);
        dl_free(diffs);
        return dl_error_set(err, DL_ENOMEM, "delta: out of memory");
    }
    for (size_t i = 0; i < d->len; i++)
        perm[i] = i;
    qsort_r(perm, d->len, sizeof *perm, cmp_pos, d);
    for (size_t i = 0; i < d->len; i++) {
        if (d->arity)
            memcpy(rows + i * d->arity, row_at(d, perm[i]), d->arity * sizeof *rows);
        diffs[i] = d->diffs[perm[i]];
    }
    if (d->arity)
        memcpy(d->rows, rows, d->len * d->arity * sizeof *rows);
    memcpy(d->diffs, diffs, d->len * sizeof *diffs);
    dl_free(perm);
    dl_free(rows);
    dl_free(diffs);
    /* Rebuild the index in place: positions changed, the table size did not. */
    memset(d->index, 0, d->index_cap * sizeof *d->index);
    size_t mask = d->index_cap - 1;
    for (size_t i = 0; i < d->len; i++) {
        size_t s = (size_t)pair_hash(d, i) & mask;
        while (d->index[s])
            s = (s + 1) & mask;
        d->index[s] = (uint32_t)(i + 1);
    }
    return 0;
}

bool dl__delta_check(const dl_delta_t *d) {
    if (d->len > d->cap)
        return false;
    if (!d->index_cap) { /* unindexed: no zero diff, strictly ascending (design note 5) */
        if (d->index)
            return false;
        for (size_t i = 0; i < d->len; i++)
            if (d->diffs[i] == 0 ||
                (i && (d->arity == 0 || key_cmp(row_at(d, i - 1), row_at(d, i), d->arity) >= 0)))
                return false;
        return true;
    }
    size_t used = 0;
    for (size_t s = 0; s < d->index_cap; s++)
        if (d->index[s]) {
            if (d->index[s] > d->len)
                return false;
            used++;
        }
    if (used != d->len)
        return false;
    for (size_t i = 0; i < d->len; i++) {
        if (d->diffs[i] == 0)
            return false;
        bool found;
        size_t s = probe(d, row_at(d, i), pair_hash(d, i), &found);
        if (!found || d->index[s] != i + 1)
            return false; /* a repeated row would be found at its first position */
    }
    return true;
}

/* ---- accumulation as sorted runs (design note 6) ------------------------------------------ */

void dl__dacc_init(dl__dacc_t *a, size_t arity, const uint64_t *time, size_t n_dims) {
    memset(a, 0, sizeof *a);
    a->arity = arity;
    a->n_dims = n_dims;
    a->big_rows = 32768;
    a->fold_rows = 1;
    memcpy(a->time, time, n_dims * sizeof *time);
}

void dl__dacc_fini(dl__dacc_t *a) {
    for (size_t i = 0; i < a->n; i++)
        dl_delta_unref(a->runs[i]);
    dl_free(a->runs);
    dl_delta_unref(a->big);
    a->runs = NULL;
    a->big = NULL;
    a->n = a->cap = 0;
}

static bool is_key_sorted(const dl_delta_t *d) {
    if (!d->index_cap)
        return true;
    for (size_t i = 1; i < d->len; i++)
        if (d->arity == 0 || key_cmp(row_at(d, i - 1), row_at(d, i), d->arity) >= 0)
            return false;
    return true;
}

static int cmp_key_pos(const void *a, const void *b, void *ctx) {
    const dl_delta_t *d = ctx;
    return key_cmp(row_at(d, *(const size_t *)a), row_at(d, *(const size_t *)b), d->arity);
}

/* new: d's pairs as an unindexed delta sorted in key order (d's pairs are distinct). */
static int sorted_copy(const dl_delta_t *d, dl_delta_t **out) {
    *out = NULL;
    size_t *perm = dl_malloc(d->len * sizeof *perm);
    dl_delta_t *c = NULL;
    int rc = perm ? dl_delta_new(DL_DELTA_DATA, d->arity, d->time, d->n_dims, &c, NULL) : DL_ENOMEM;
    if (!rc)
        rc = alloc_pairs(c, d->len);
    if (rc) {
        dl_free(perm);
        dl_delta_unref(c);
        return rc;
    }
    for (size_t i = 0; i < d->len; i++)
        perm[i] = i;
    qsort_r(perm, d->len, sizeof *perm, cmp_key_pos, (void *)d);
    for (size_t i = 0; i < d->len; i++) {
        if (d->arity)
            memcpy(c->rows + i * d->arity, row_at(d, perm[i]), d->arity * sizeof *c->rows);
        c->diffs[i] = d->diffs[perm[i]];
    }
    c->len = d->len;
    dl_free(perm);
    *out = c;
    return 0;
}

/* A row's values, copied without a call for the usual small arities. */
static inline void copy_row(dl_value_t *dst, const dl_value_t *src, size_t ar) {
    switch (ar) {
        case 4:
            dst[3] = src[3];
            /* fallthrough */
        case 3:
            dst[2] = src[2];
            /* fallthrough */
        case 2:
            dst[1] = src[1];
            /* fallthrough */
        case 1:
            dst[0] = src[0];
            /* fallthrough */
        case 0:
            break;
        default:
            memcpy(dst, src, ar * sizeof *dst);
    }
}

/* Pairs [from, from + n) of the sorted run r to position k of m, in one copy. */
static void copy_block(dl_delta_t *m, size_t k, const dl_delta_t *r, size_t from, size_t n) {
    if (!n)
        return;
    if (m->arity)
        memcpy(m->rows + k * m->arity, r->rows + from * m->arity, n * m->arity * sizeof *m->rows);
    memcpy(m->diffs + k, r->diffs + from, n * sizeof *m->diffs);
}

/* The first position e > i of the sorted run r whose row is not below key (r's row i is):
 * an exponential then a binary search, O(log(e - i)) comparisons. */
static size_t gallop(const dl_delta_t *r, size_t i, const dl_value_t *key) {
    size_t lo = i, step = 1, hi; /* row lo < key; the answer is in (lo, hi] */
    for (;;) {
        hi = i + step;
        if (hi >= r->len) {
            hi = r->len;
            break;
        }
        if (key_cmp(row_at(r, hi), key, r->arity) >= 0)
            break;
        lo = hi;
        step *= 2;
    }
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(row_at(r, mid), key, r->arity) < 0)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* Shrinks m's arrays to nc rows of arity ar (ar 0: rows unused). A failed realloc keeps
 * the larger array, which is harmless: cap is then the smaller of the two capacities. */
static void shrink_to(dl_delta_t *m, size_t nc, size_t ar) {
    bool shrunk = false;
    dl_value_t *nr = ar ? dl_realloc(m->rows, nc * ar * sizeof *nr) : NULL;
    if (nr) {
        m->rows = nr;
        shrunk = true;
    }
    int64_t *nd = dl_realloc(m->diffs, nc * sizeof *nd);
    if (nd) {
        m->diffs = nd;
        shrunk = true;
    }
    if (shrunk)
        m->cap = nc;
}

/* Consecutive pairs taken from one run before the merge looks for the end of the stretch
 * (timsort's galloping): a large run merged with a small one costs O(small * log) compares
 * and block copies, not a comparison per row of the large one. */
#define GALLOP_AFTER 8

/* new: the consolidated sum of the sorted runs x and y, sorted and unindexed. DL_ENOMEM,
 * DL_ERANGE (a diff overflows). */
static int merge_runs(const dl_delta_t *x, const dl_delta_t *y, dl_delta_t **out) {
    *out = NULL;
    size_t ar = x->arity, n = x->len + y->len;
    dl_delta_t *m = NULL;
    int rc = dl_delta_new(DL_DELTA_DATA, ar, y->time, y->n_dims, &m, NULL);
    if (!rc)
        rc = alloc_pairs(m, n);
    if (rc) {
        dl_delta_unref(m);
        return rc;
    }
    const int64_t *xd = x->diffs, *yd = y->diffs;
    int64_t *md = m->diffs;
    size_t i = 0, j = 0, k = 0, nx = x->len, ny = y->len, wins_x = 0, wins_y = 0;
    while (i < nx && j < ny) {
        const dl_value_t *rx = row_at(x, i), *ry = row_at(y, j);
        int c = key_cmp(rx, ry, ar);
        if (c < 0) {
            wins_y = 0;
            if (++wins_x >= GALLOP_AFTER) { /* a long stretch of x: find its end, copy it */
                size_t e = gallop(x, i, ry);
                copy_block(m, k, x, i, e - i);
                k += e - i;
                i = e;
                wins_x = 0;
                continue;
            }
            if (ar)
                copy_row(m->rows + k * ar, rx, ar);
            md[k++] = xd[i++];
        } else if (c > 0) {
            wins_x = 0;
            if (++wins_y >= GALLOP_AFTER) {
                size_t e = gallop(y, j, rx);
                copy_block(m, k, y, j, e - j);
                k += e - j;
                j = e;
                wins_y = 0;
                continue;
            }
            if (ar)
                copy_row(m->rows + k * ar, ry, ar);
            md[k++] = yd[j++];
        } else {
            wins_x = wins_y = 0;
            int64_t diff;
            if (__builtin_add_overflow(xd[i++], yd[j++], &diff)) {
                dl_delta_unref(m);
                return DL_ERANGE;
            }
            if (diff == 0)
                continue;
            if (ar)
                copy_row(m->rows + k * ar, rx, ar);
            md[k++] = diff;
        }
    }
    /* the rest of one run, in one copy */
    const dl_delta_t *rest = i < nx ? x : y;
    size_t from = i < nx ? i : j, left = rest->len - from;
    copy_block(m, k, rest, from, left);
    k += left;
    m->len = k;
    if (k < n) /* give back what the cancellations freed */
        shrink_to(m, DL_MAX(k, 1), ar);
    *out = m;
    return 0;
}

/* The first position s < i of the sorted rows [0, i) (row i - 1 above key) from which every
 * row is above key: gallop's mirror image, for merging from the back. */
static size_t gallop_back(const dl_value_t *rows, size_t ar, size_t i, const dl_value_t *key) {
    size_t hi = i - 1, step = 1, lo = 0; /* row hi > key; rows below lo are <= key */
    for (;;) {
        if (step > hi)
            break;
        size_t p = hi - step;
        if (key_cmp(rows + p * ar, key, ar) <= 0) {
            lo = p + 1;
            break;
        }
        hi = p;
        step *= 2;
    }
    while (lo < hi) { /* the first row above key in [lo, hi] */
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(rows + mid * ar, key, ar) > 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* merge_runs into x's own arrays, when the accumulator is x's only holder (arity > 0):
 * grown to fit (by 1.5x, keeping room for later merges), merged from the back (a write
 * never overtakes an unread row of x: the gap ahead of it is at least the rows of y left),
 * then moved to the front when cancellations left a gap. Reusing the bottom run's memory
 * avoids what fresh pages cost (page faults were ~40% of a fresh merge in W3). The arrays
 * move to the new run m and x is left empty, so DL_ERANGE loses x's rows (the sum is then
 * unspecified, as documented); DL_ENOMEM leaves x as it was. */
static int merge_in_place(dl_delta_t *x, const dl_delta_t *y, dl_delta_t **out) {
    *out = NULL;
    size_t ar = x->arity, nx = x->len, ny = y->len, n = nx + ny;
    dl_delta_t *m = NULL;
    int rc = dl_delta_new(DL_DELTA_DATA, ar, y->time, y->n_dims, &m, NULL);
    if (rc)
        return rc;
    if (x->cap < n) {
        size_t nc = n + n / 2;
        dl_value_t *nr = dl_realloc(x->rows, nc * ar * sizeof *nr);
        if (!nr) {
            dl_delta_unref(m);
            return DL_ENOMEM;
        }
        x->rows = nr; /* x->cap stays the smaller capacity until diffs grow too */
        int64_t *nd = dl_realloc(x->diffs, nc * sizeof *nd);
        if (!nd) {
            dl_delta_unref(m);
            return DL_ENOMEM;
        }
        x->diffs = nd;
        x->cap = nc;
    }
    dl_value_t *r = x->rows;
    int64_t *df = x->diffs;
    const int64_t *yd = y->diffs;
    m->rows = r;
    m->diffs = df;
    m->cap = x->cap;
    x->rows = NULL;
    x->diffs = NULL;
    x->cap = x->len = 0;
    size_t i = nx, j = ny, w = n, wins_x = 0, wins_y = 0;
    while (i && j) {
        const dl_value_t *rx = r + (i - 1) * ar, *ry = y->rows + (j - 1) * ar;
        int c = key_cmp(rx, ry, ar);
        if (c > 0) {
            wins_y = 0;
            if (++wins_x >= GALLOP_AFTER) { /* a long stretch of x above ry: one move */
                size_t st = gallop_back(r, ar, i, ry), cnt = i - st;
                memmove(r + (w - cnt) * ar, r + st * ar, cnt * ar * sizeof *r);
                memmove(df + w - cnt, df + st, cnt * sizeof *df);
                w -= cnt;
                i = st;
                wins_x = 0;
                continue;
            }
            w--;
            i--;
            if (w != i) {
                copy_row(r + w * ar, r + i * ar, ar);
                df[w] = df[i];
            }
        } else if (c < 0) {
            wins_x = 0;
            if (++wins_y >= GALLOP_AFTER) {
                size_t st = gallop_back(y->rows, ar, j, rx), cnt = j - st;
                memcpy(r + (w - cnt) * ar, y->rows + st * ar, cnt * ar * sizeof *r);
                memcpy(df + w - cnt, yd + st, cnt * sizeof *df);
                w -= cnt;
                j = st;
                wins_y = 0;
                continue;
            }
            w--;
            j--;
            copy_row(r + w * ar, ry, ar);
            df[w] = yd[j];
        } else {
            wins_x = wins_y = 0;
            i--;
            j--;
            int64_t sum;
            if (__builtin_add_overflow(df[i], yd[j], &sum)) {
                dl_delta_unref(m);
                return DL_ERANGE;
            }
            if (sum == 0)
                continue;
            w--;
            if (w != i)
                copy_row(r + w * ar, r + i * ar, ar);
            df[w] = sum;
        }
    }
    if (j) { /* the lowest rows of y (then i == 0) */
        w -= j;
        memcpy(r + w * ar, y->rows, j * ar * sizeof *r);
        memcpy(df + w, yd, j * sizeof *df);
    } else if (i && w != i) { /* the lowest rows of x, moved up to meet the rest */
        memmove(r + (w - i) * ar, r, i * ar * sizeof *r);
        memmove(df + w - i, df, i * sizeof *df);
        w -= i;
    } else {
        w -= i;
    }
    size_t k = n - w;
    if (w && k) {
        memmove(r, r + w * ar, k * ar * sizeof *r);
        memmove(df, df + w, k * sizeof *df);
    }
    m->len = k;
    if (m->cap > 16 && k < m->cap / 4) /* design note 3 */
        shrink_to(m, DL_MAX(k + k / 2, 1), ar);
    *out = m;
    return 0;
}

/* Merges the two newest runs into one (dropped when it cancels out). On failure the runs
 * are unchanged (but see merge_in_place on DL_ERANGE). */
static int dacc_merge_top(dl__dacc_t *a) {
    dl_delta_t *m = NULL, *x = a->runs[a->n - 2];
    int rc = x->arity && atomic_load_explicit(&x->refs, memory_order_acquire) == 1
                 ? merge_in_place(x, a->runs[a->n - 1], &m)
                 : merge_runs(x, a->runs[a->n - 1], &m);
    if (rc)
        return rc;
    dl_delta_unref(a->runs[a->n - 1]);
    dl_delta_unref(a->runs[a->n - 2]);
    a->n--;
    if (m->len) {
        dl_delta_seal(m);
        a->runs[a->n - 1] = m;
    } else {
        dl_delta_unref(m);
        a->n--;
    }
    return 0;
}

/* Adds every run into the hashed bottom (design note 6), then drops them. Room for every
 * pair is reserved first, so DL_ENOMEM leaves the sum unchanged; DL_ERANGE (a diff
 * overflows) leaves it partly folded. */
static int dacc_fold(dl__dacc_t *a) {
    dl_delta_t *b = a->big;
    size_t top = 0;
    for (size_t i = 0; i < a->n; i++)
        top += a->runs[i]->len;
    if (b->len + top > b->cap) {
        if (b->len + top >= UINT32_MAX - 1)
            return DL_ELIMIT;
        int rc = resize(b, DL_MAX(b->len + top, b->cap + b->cap / 2));
        if (rc)
            return rc;
    }
    b->pinned = true; /* no shrinking (and growing again) half-way: the room stays reserved */
    int rc = 0;
    while (a->n && !rc) {
        const dl_delta_t *r = a->runs[a->n - 1];
        for (size_t i = 0; i < r->len && !rc; i++)
            rc = add_pair(b, row_at(r, i), r->diffs[i]);
        if (!rc)
            dl_delta_unref(a->runs[--a->n]);
    }
    b->pinned = false;
    while (b->cap > 16 && b->len < b->cap / 4 && !resize(b, b->cap / 2)) {
    }
    return rc;
}

/* The sum outgrew big_rows: its bottom run becomes the hashed bottom (a private indexed
 * copy; hashing it is a one-time cost), and the other runs are folded into it. */
static int dacc_go_big(dl__dacc_t *a) {
    dl_delta_t *b = NULL;
    int rc = dl__delta_clone(a->runs[0], &b);
    if (!rc) /* hashed once, with the room a growing result needs next (as add_pair grows) */
        rc = resize(b, b->len + b->len / 2);
    if (rc) {
        dl_delta_unref(b);
        return rc;
    }
    dl_delta_unref(a->runs[0]);
    memmove(a->runs, a->runs + 1, (a->n - 1) * sizeof *a->runs);
    a->n--;
    a->big = b;
    return dacc_fold(a);
}

int dl__dacc_add(dl__dacc_t *a, dl_delta_t *d) {
    if (d->kind != DL_DELTA_DATA || d->arity != a->arity || d->n_dims != a->n_dims)
        return DL_EINVAL;
    if (d->len) {
        if (a->n == a->cap) {
            size_t nc = a->cap ? 2 * a->cap : 8;
            dl_delta_t **nr = dl_realloc(a->runs, nc * sizeof *nr);
            if (!nr)
                return DL_ENOMEM;
            a->runs = nr;
            a->cap = nc;
        }
        dl_delta_t *run = NULL;
        if (is_key_sorted(d)) {
            dl_delta_seal(d); /* shared from now on: it must not change */
            run = dl_delta_ref(d);
        } else {
            int rc = sorted_copy(d, &run);
            if (rc)
                return rc;
            dl_delta_seal(run);
        }
        a->runs[a->n++] = run;
    }
    memcpy(a->time, d->time, a->n_dims * sizeof *a->time);
    a->n_times += d->n_times;
    /* Binary-counter merging: each run more than twice the size of the one above it, so
     * there are O(log rows) runs and a pair is copied O(log) times overall. A failed merge
     * leaves the (correct) runs as they are. */
    while (a->n >= 2 && a->runs[a->n - 2]->len <= 2 * a->runs[a->n - 1]->len) {
        int rc = dacc_merge_top(a);
        if (rc)
            return rc;
    }
    if (!a->big && a->n && a->runs[0]->len > a->big_rows)
        return dacc_go_big(a);
    size_t top = 0;
    for (size_t i = 0; a->big && i < a->n; i++)
        top += a->runs[i]->len;
    return a->big && top >= a->fold_rows ? dacc_fold(a) : 0;
}

int dl__dacc_compact(dl__dacc_t *a) {
    if (a->big)
        return dacc_fold(a);
    while (a->n >= 2) {
        int rc = dacc_merge_top(a);
        if (rc)
            return rc;
    }
    return 0;
}

int dl__dacc_snapshot(dl__dacc_t *a, dl_delta_t **out) {
    *out = NULL;
    int rc = dl__dacc_compact(a);
    if (rc)
        return rc;
    dl_delta_t *c = NULL;
    if (a->big) /* its capacity kept, so its index is copied, not rebuilt */
        rc = clone_impl(a->big, true, &c);
    else if (a->n)
        rc = dl__delta_clone(a->runs[0], &c);
    else
        rc = dl_delta_new(DL_DELTA_DATA, a->arity, a->time, a->n_dims, &c, NULL);
    if (rc)
        return rc;
    memcpy(c->time, a->time, a->n_dims * sizeof *a->time);
    c->n_times = a->n_times;
    *out = c;
    return 0;
}

/* ---- accumulation per user coordinate (n_dims > 1) ---------------------------------------- */

void dl__uacc_init(dl__uacc_t *a, size_t arity, size_t n_dims) {
    memset(a, 0, sizeof *a);
    a->arity = arity;
    a->n_dims = n_dims;
}

void dl__uacc_fini(dl__uacc_t *a) {
    for (size_t i = 0; i < a->n; i++)
        dl_delta_unref(a->v[i]);
    dl_free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

/* The accumulation at time's user coordinates, created when missing; *at its position. */
static int uacc_at(dl__uacc_t *a, const uint64_t *time, size_t *at, dl_delta_t **out) {
    size_t lo = 0, hi = a->n, nu = a->n_dims - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = dl__delta_time_cmp(a->v[mid]->time + 1, time + 1, nu);
        if (c == 0) {
            *at = mid;
            *out = a->v[mid];
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (a->n == a->cap) {
        size_t nc = a->cap ? 2 * a->cap : 4;
        dl_delta_t **nv = dl_realloc(a->v, nc * sizeof *nv);
        if (!nv)
            return DL_ENOMEM;
        a->v = nv;
        a->cap = nc;
    }
    dl_delta_t *d = NULL;
    int rc = dl_delta_new(DL_DELTA_DATA, a->arity, time, a->n_dims, &d, NULL);
    if (rc)
        return rc;
    memmove(a->v + lo + 1, a->v + lo, (a->n - lo) * sizeof *a->v);
    a->v[lo] = d;
    a->n++;
    *at = lo;
    *out = d;
    return 0;
}

/* Drops the accumulation at position at when it cancelled out. */
static void uacc_trim(dl__uacc_t *a, size_t at) {
    if (a->v[at]->len)
        return;
    dl_delta_unref(a->v[at]);
    memmove(a->v + at, a->v + at + 1, (a->n - at - 1) * sizeof *a->v);
    a->n--;
}

int dl__uacc_add(dl__uacc_t *a, const uint64_t *time, const dl_value_t *row, int64_t diff) {
    size_t at;
    dl_delta_t *d;
    int rc = uacc_at(a, time, &at, &d);
    if (!rc)
        rc = add_pair(d, row, diff);
    if (!rc)
        uacc_trim(a, at);
    return rc;
}

int dl__uacc_add_delta(dl__uacc_t *a, const dl_delta_t *from) {
    if (from->kind != DL_DELTA_DATA || from->len == 0)
        return 0;
    if (from->arity != a->arity || from->n_dims != a->n_dims)
        return DL_EINVAL;
    size_t at;
    dl_delta_t *d;
    int rc = uacc_at(a, from->time, &at, &d);
    for (size_t i = 0; i < from->len && !rc; i++)
        rc = add_pair(d, row_at(from, i), from->diffs[i]);
    if (!rc)
        uacc_trim(a, at);
    return rc;
}

/* A new unsealed copy of accumulation d at time [tx, its u]. */
static int uacc_copy(const dl_delta_t *d, uint64_t tx, dl_delta_t **out) {
    int rc = dl__delta_clone(d, out);
    if (!rc)
        (*out)->time[0] = tx;
    return rc;
}

int dl__uacc_snapshot(const dl__uacc_t *a, uint64_t tx, dl_delta_t **out) {
    *out = NULL;
    bool zero_first = a->n > 0;
    for (size_t k = 1; zero_first && k < a->n_dims; k++)
        zero_first = a->v[0]->time[k] == 0;
    uint64_t t[DL_DELTA_MAX_DIM] = {tx};
    int rc = zero_first ? uacc_copy(a->v[0], tx, out)
                        : dl_delta_new(DL_DELTA_DATA, a->arity, t, a->n_dims, out, NULL);
    if (rc)
        return rc;
    (*out)->snapshot = true;
    for (size_t i = zero_first ? 1 : 0; i < a->n; i++) {
        dl_delta_t *c = NULL;
        if ((rc = uacc_copy(a->v[i], tx, &c)) != 0) {
            dl_delta_unref(*out); /* frees the chain built so far */
            *out = NULL;
            return rc;
        }
        dl__delta_chain(*out, c);
    }
    return 0;
}
