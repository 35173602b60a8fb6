/*
 * vcount.c: per-attribute counts of current values, for the attributes no index orders
 * by value (neither :db/index, :db/unique nor a ref), so that the planner's statistic
 * "distinct values" is kept incrementally for them too (docs/storage.md "Index
 * structure"). Writer-only state, not versioned: each version copies the resulting
 * number in its statistics. An attribute whose counts could not be kept (allocation
 * failure, an index dropped) is marked lost; its statistic is then computed on demand.
 * It does not know transactions: store.c applies and undoes a plan's deltas.
 */
#include "store/store.h"

#include <string.h>

typedef struct vslot {
    dl_value_t v;
    int64_t count; /* > 0 used; 0 empty; -1 tombstone */
} vslot_t;

struct dl_vcmap {
    int64_t attr;
    bool lost;
    vslot_t *slots;
    size_t cap, used, tombs; /* used: count > 0 */
};

/* Values other than doubles are equal exactly when type and bits are (strings, keywords
 * and uuids are interned: one pointer per content); doubles go through the value order's
 * equality (-0.0 and +0.0 differ, NaNs are one value). */
static inline bool veq(dl_value_t a, dl_value_t b) {
    if (a.type != b.type)
        return false;
    if (a.type == DL_T_DOUBLE)
        return dl_value_eq(a, b);
    return a.as.bits == b.as.bits;
}
static inline uint64_t vhash(dl_value_t v) {
    if (v.type == DL_T_DOUBLE)
        return dl_value_hash(v);
    return dl__hash_mix(v.as.bits ^ ((uint64_t)v.type << 56));
}

static int grow(struct dl_vcmap *m) {
    size_t cap = m->cap ? (m->used * 4 > m->cap ? m->cap * 2 : m->cap) : 16;
    vslot_t *s = dl_calloc(cap, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].count <= 0)
            continue;
        size_t j = (size_t)vhash(m->slots[i].v) & (cap - 1);
        while (s[j].count)
            j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    dl_free(m->slots);
    m->slots = s;
    m->cap = cap;
    m->tombs = 0;
    return 0;
}

struct dl_vcmap *dl__vcount_map(dl_vcount_t *vc, int64_t a, bool create) {
    size_t lo = 0, hi = vc->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (vc->maps[mid]->attr < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < vc->n && vc->maps[lo]->attr == a)
        return vc->maps[lo];
    if (!create)
        return NULL;
    if (vc->n == vc->cap) {
        size_t cap = vc->cap ? vc->cap * 2 : 16;
        struct dl_vcmap **x = dl_realloc(vc->maps, cap * sizeof *x);
        if (!x)
            return NULL;
        vc->maps = x;
        vc->cap = cap;
    }
    struct dl_vcmap *m = dl_calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->attr = a;
    memmove(&vc->maps[lo + 1], &vc->maps[lo], (vc->n - lo) * sizeof *vc->maps);
    vc->maps[lo] = m;
    vc->n++;
    return m;
}

/* Forgets the counts of map m (its attribute is then counted on demand). */
static void lose(struct dl_vcmap *m) {
    m->lost = true;
    dl_free(m->slots);
    m->slots = NULL;
    m->cap = m->used = m->tombs = 0;
}

int dl__vcount_add_in(dl_vcount_t *vc, struct dl_vcmap *m, dl_value_t v, int d,
                      int *out_transition) {
    (void)vc;
    *out_transition = 0;
    if (m->lost)
        return 0;
    if (d > 0 && (m->used + m->tombs + 1) * 10 > m->cap * 7 && grow(m) != 0) {
        lose(m);
        return DL_ENOMEM;
    }
    if (!m->cap) {
        if (d < 0)
            return 0;
        if (grow(m) != 0) {
            lose(m);
            return DL_ENOMEM;
        }
    }
    size_t i = (size_t)vhash(v) & (m->cap - 1), tomb = SIZE_MAX;
    for (;; i = (i + 1) & (m->cap - 1)) {
        vslot_t *s = &m->slots[i];
        if (s->count == 0)
            break;
        if (s->count < 0) {
            if (tomb == SIZE_MAX)
                tomb = i;
            continue;
        }
        if (veq(s->v, v)) {
            s->count += d;
            if (s->count == 0) {
                s->count = -1;
                m->used--;
                m->tombs++;
                *out_transition = -1;
            }
            return 0;
        }
    }
    if (d < 0)
        return 0; /* absent: nothing to remove (not expected) */
    if (tomb != SIZE_MAX) {
        i = tomb;
        m->tombs--;
    }
    m->slots[i].v = v;
    m->slots[i].count = d;
    m->used++;
    *out_transition = 1;
    return 0;
}

bool dl__vcount_map_lost(const dl_vcount_t *vc, const struct dl_vcmap *m) {
    return vc->oom || m->lost;
}

int dl__vcount_add(dl_vcount_t *vc, int64_t a, dl_value_t v, int d, int *out_transition) {
    *out_transition = 0;
    struct dl_vcmap *m = dl__vcount_map(vc, a, true);
    if (!m)
        return DL_ENOMEM;
    return dl__vcount_add_in(vc, m, v, d, out_transition);
}

void dl__vcount_lose(dl_vcount_t *vc, int64_t a) {
    struct dl_vcmap *m = dl__vcount_map(vc, a, true);
    if (!m) {
        vc->oom = true; /* cannot record it: every attribute now counts as lost */
        return;
    }
    lose(m);
}

bool dl__vcount_lost(dl_vcount_t *vc, int64_t a) {
    struct dl_vcmap *m = dl__vcount_map(vc, a, false);
    return vc->oom || (m && m->lost);
}

void dl__vcount_free(dl_vcount_t *vc) {
    for (size_t i = 0; i < vc->n; i++) {
        dl_free(vc->maps[i]->slots);
        dl_free(vc->maps[i]);
    }
    dl_free(vc->maps);
    memset(vc, 0, sizeof *vc);
}
