/*
 * groups.c: a hash table from a reduce key to a fixed number of 64-bit accumulator slots,
 * the state of a linear reduce under totally ordered time (reduce.c, note 6). It exists so
 * that such a reduce costs a hash probe per input update instead of merging an
 * accumulator spine (DD's count_total plays the same trick for counts).
 *
 * Keys are rows of dl_value_t, compared bytewise (values are canonical and text is
 * interned and immortal, so a stored key never dangles). Open addressing with linear
 * probing; deletion shifts later entries back (no tombstones), so a table whose keys
 * come and go keeps short probes. Group ids are stable while the group lives and freed
 * ids are reused, so the arrays stay as large as the peak number of live groups.
 * Not thread-safe; owned by one reduce.
 */
#include "dataflow/dataflow.h"

void dl__groups_init(dl_groups_t *g, size_t ka, size_t ns) {
    memset(g, 0, sizeof *g);
    g->ka = ka;
    g->ns = ns;
}

void dl__groups_fini(dl_groups_t *g) {
    dl_free(g->slots);
    dl_free(g->keys);
    dl_free(g->acc);
    dl_free(g->stamp);
    dl_free(g->free_ids);
    dl__groups_init(g, g->ka, g->ns);
}

/* Rebuilds the slot array at n_slots (a power of two) from the old one. */
static int rehash(dl_groups_t *g, size_t n_slots) {
    uint32_t *s = dl_calloc(n_slots, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    size_t m = n_slots - 1;
    for (size_t i = 0; i < g->n_slots; i++) {
        uint32_t id1 = g->slots[i];
        if (!id1)
            continue;
        size_t p = dl__row_hash_fast(g->keys + (size_t)(id1 - 1) * g->ka, g->ka) & m;
        while (s[p])
            p = (p + 1) & m;
        s[p] = id1;
    }
    dl_free(g->slots);
    g->slots = s;
    g->n_slots = n_slots;
    return 0;
}

/* A fresh group id: a freed one, else the next one (growing the arrays). */
static size_t new_id(dl_groups_t *g) {
    if (g->n_free)
        return g->free_ids[--g->n_free];
    if (g->n_ids == g->cap_ids) {
        size_t c = g->cap_ids ? 2 * g->cap_ids : 64;
        if (c > UINT32_MAX - 1)
            return SIZE_MAX;
        dl_value_t *k = dl_realloc(g->keys, c * (g->ka ? g->ka : 1) * sizeof *k);
        if (!k)
            return SIZE_MAX;
        g->keys = k;
        uint64_t *a = dl_realloc(g->acc, c * g->ns * sizeof *a);
        if (!a)
            return SIZE_MAX;
        g->acc = a;
        uint32_t *st = dl_realloc(g->stamp, c * sizeof *st);
        if (!st)
            return SIZE_MAX;
        g->stamp = st;
        uint32_t *f = dl_realloc(g->free_ids, c * sizeof *f);
        if (!f)
            return SIZE_MAX;
        g->free_ids = f;
        g->cap_ids = c;
    }
    return g->n_ids++;
}

size_t dl__groups_get(dl_groups_t *g, const dl_value_t *key) {
    if ((g->live + 1) * 2 > g->n_slots && rehash(g, g->n_slots ? 2 * g->n_slots : 64))
        return SIZE_MAX;
    size_t m = g->n_slots - 1, p = dl__row_hash_fast(key, g->ka) & m;
    while (g->slots[p]) {
        size_t id = g->slots[p] - 1;
        if (dl__row_same(g->keys + id * g->ka, key, g->ka))
            return id;
        p = (p + 1) & m;
    }
    size_t id = new_id(g);
    if (id == SIZE_MAX)
        return SIZE_MAX;
    memcpy(g->keys + id * g->ka, key, g->ka * sizeof *key);
    memset(g->acc + id * g->ns, 0, g->ns * sizeof *g->acc);
    g->stamp[id] = 0;
    g->slots[p] = (uint32_t)(id + 1);
    g->live++;
    return id;
}

void dl__groups_drop(dl_groups_t *g, size_t id) {
    size_t m = g->n_slots - 1, p = dl__row_hash_fast(g->keys + id * g->ka, g->ka) & m;
    while (g->slots[p] != id + 1)
        p = (p + 1) & m;
    /* Backward shift: move later entries of the probe run into the hole when their home
     * position does not lie cyclically in (hole, their slot]. */
    size_t hole = p;
    for (size_t q = (p + 1) & m; g->slots[q]; q = (q + 1) & m) {
        size_t home = dl__row_hash_fast(g->keys + (size_t)(g->slots[q] - 1) * g->ka, g->ka) & m;
        bool stays = hole <= q ? (hole < home && home <= q) : (hole < home || home <= q);
        if (!stays) {
            g->slots[hole] = g->slots[q];
            hole = q;
        }
    }
    g->slots[hole] = 0;
    g->free_ids[g->n_free++] = (uint32_t)id;
    g->live--;
}
