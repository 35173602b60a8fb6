/*
 * btree.c: the persistent B+tree every index of the store is made of (docs/storage.md
 * "Index structure"). Keys are datom keys (dl_kd_t) compared in one of four component
 * orders; seeks and range scans are O(log n).
 *
 * Design notes.
 *  1. Epochs. Every node records the writer epoch that created it. The writer bumps its
 *     epoch each time it publishes a version; nodes of the current epoch are private to
 *     the writer and are changed in place, older nodes are shared with published
 *     versions and are copied first (path copying: the root-to-leaf path of a change).
 *  2. Reclamation. A node replaced or dropped by the writer while older than the current
 *     epoch is retired with the current epoch: it is reachable only from versions whose
 *     epoch is below that (and not below its own). It is freed once the oldest live
 *     version's epoch reaches it (dl__btctx_reclaim), or, when an old snapshot holds the
 *     list back, once no live version falls in its range (dl__btctx_reclaim_live). Nodes of
 *     the current epoch are freed at once.
 *  3. Abandoning. A failed transaction frees the writer's private nodes
 *     (dl__btree_discard) and the caller restores the roots of the last published
 *     version and pops the retire entries of the epoch; nothing published was touched.
 *  4. Shape. Leaves hold 1..LCAP keys (a root leaf may be empty); internal nodes hold
 *     2..ICAP children (the root) or ICAP/4..ICAP; separator key[i] (i >= 1) is greater
 *     than every key of kid[i-1] and at most every key of kid[i]; key[0] is unused.
 *  5. Recycling. Nodes the writer frees (reclaimed, dropped, discarded) go to a pool in
 *     its context (dl_btctx_t.pool, up to POOL_MAX per kind) that path copies and splits
 *     take from; a copy moves only the entries in use. The bulk builds (recovery, two
 *     threads) neither take from nor give to it. ASan builds keep no pool.
 * It does not know what the keys mean: the store decides which trees hold what.
 */
#include "store/store.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#define LCAP 32
#define ICAP 64
#define LMIN (LCAP / 4)
#define IMIN (ICAP / 4)

struct dl_bnode {
    uint64_t epoch;
    uint32_t n;
    uint32_t leaf;
};
typedef struct leaf {
    dl_bnode_t h;
    dl_kd_t d[LCAP];
} leaf_t;
typedef struct inode {
    dl_bnode_t h;
    dl_kd_t key[ICAP];
    dl_bnode_t *kid[ICAP];
} inode_t;

#define LEAF(n)  ((leaf_t *)(n))
#define INODE(n) ((inode_t *)(n))

/* ---- comparison ----------------------------------------------------------------------------- */

/* kcmp: the header's inline comparison (store.h dl__btree_cmp), always inlined so that
 * the searches below get one specialised copy per order. */
#define kcmp dl__btree_cmp

/* ---- allocation, retirement --------------------------------------------------------------- */

/* Nodes kept per kind in the writer's pool (dl_btctx_t.pool): enough for the path copies
 * and splits of a few transactions; more go back to malloc. Sanitizer builds keep none,
 * so that a use after free stays visible to ASan. */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_MAX 0
#endif
#endif
#ifndef POOL_MAX
#define POOL_MAX 512
#endif

static size_t node_size(bool leaf) { return leaf ? sizeof(leaf_t) : sizeof(inode_t); }

/* A node from the writer's pool, or a new one; not from the pool when pooled is false
 * (the bulk builds, which run on two threads). */
static dl_bnode_t *node_alloc(dl_btctx_t *c, bool leaf, bool pooled) {
    dl_bnode_t *n;
    int k = leaf ? 0 : 1;
    if (pooled && c->pool[k]) {
        n = c->pool[k];
        memcpy(&c->pool[k], n, sizeof(void *));
        c->n_pool[k]--;
    } else if (!(n = dl_malloc(node_size(leaf)))) {
        return NULL;
    }
    n->epoch = c->epoch;
    n->n = 0;
    n->leaf = leaf;
    return n;
}

static dl_bnode_t *node_new(dl_btctx_t *c, bool leaf) { return node_alloc(c, leaf, true); }

/* Frees a node the writer no longer needs: into the pool while it has room. */
static void node_free(dl_btctx_t *c, dl_bnode_t *n) {
#if POOL_MAX == 0
    (void)c;
    dl_free(n);
#else
    int k = n->leaf ? 0 : 1;
    if (c->n_pool[k] >= POOL_MAX) {
        dl_free(n);
        return;
    }
    memcpy(n, &c->pool[k], sizeof(void *));
    c->pool[k] = n;
    c->n_pool[k]++;
#endif
}

int dl__btctx_retire(dl_btctx_t *c, void *p) {
    if (c->n_ret == c->cap_ret) {
        size_t cap = c->cap_ret ? c->cap_ret * 2 : 256;
        dl_retired_t *r = dl_realloc(c->ret, cap * sizeof *r);
        if (!r)
            return DL_ENOMEM;
        c->ret = r;
        c->cap_ret = cap;
    }
    c->ret[c->n_ret].p = p;
    c->ret[c->n_ret].epoch = c->epoch;
    c->n_ret++;
    return 0;
}

void dl__btctx_reclaim(dl_btctx_t *c, uint64_t upto) {
    size_t i = 0;
    while (i < c->n_ret && c->ret[i].epoch <= upto)
        node_free(c, c->ret[i++].p);
    if (i) {
        memmove(c->ret, c->ret + i, (c->n_ret - i) * sizeof *c->ret);
        c->n_ret -= i;
    }
}

void dl__btctx_reclaim_live(dl_btctx_t *c, const uint64_t *live, size_t n_live) {
    size_t w = 0;
    for (size_t i = 0; i < c->n_ret; i++) {
        /* a node created at epoch e0 and retired at epoch r is in the versions of epochs
         * e0 .. r-1 only: free it when no live version falls in that range */
        uint64_t e0 = ((const dl_bnode_t *)c->ret[i].p)->epoch, r = c->ret[i].epoch;
        size_t lo = 0, hi = n_live;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (live[mid] < e0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < n_live && live[lo] < r)
            c->ret[w++] = c->ret[i];
        else
            node_free(c, c->ret[i].p);
    }
    c->n_ret = w;
}

void dl__btctx_fini(dl_btctx_t *c) {
    for (size_t i = 0; i < c->n_ret; i++)
        dl_free(c->ret[i].p);
    dl_free(c->ret);
    c->ret = NULL;
    c->n_ret = c->cap_ret = 0;
    for (int k = 0; k < 2; k++) {
        while (c->pool[k]) {
            void *n = c->pool[k];
            memcpy(&c->pool[k], n, sizeof(void *));
            dl_free(n);
        }
        c->n_pool[k] = 0;
    }
}

/* Drops a node the tree no longer references (design note 2). */
static int drop(dl_btctx_t *c, dl_bnode_t *n) {
    if (n->epoch == c->epoch) {
        node_free(c, n);
        return 0;
    }
    return dl__btctx_retire(c, n);
}

/* Makes *np writable by the writer, copying it when shared (design note 1). */
static dl_bnode_t *own(dl_btctx_t *c, dl_bnode_t **np) {
    dl_bnode_t *n = *np;
    if (n->epoch == c->epoch)
        return n;
    dl_bnode_t *m = node_alloc(c, n->leaf, true);
    if (!m)
        return NULL;
    /* only the entries in use: a node is often far from full */
    if (n->leaf) {
        memcpy(m, n, offsetof(leaf_t, d) + n->n * sizeof(dl_kd_t));
    } else {
        memcpy(m, n, offsetof(inode_t, key) + n->n * sizeof(dl_kd_t));
        memcpy(INODE(m)->kid, INODE(n)->kid, n->n * sizeof(dl_bnode_t *));
    }
    m->epoch = c->epoch;
    if (dl__btctx_retire(c, n) != 0) {
        node_free(c, m);
        return NULL;
    }
    *np = m;
    return m;
}

int dl__btree_init(dl_btctx_t *c, dl_btree_t *t, int order, int ncmp) {
    t->root = node_new(c, true);
    if (!t->root)
        return DL_ENOMEM;
    t->order = (uint8_t)order;
    t->ncmp = (uint8_t)ncmp;
    t->count = 0;
    return 0;
}

/* ---- search --------------------------------------------------------------------------------- */

/* First index in leaf with key >= k (n components). */
static inline __attribute__((always_inline)) uint32_t lb_impl(const leaf_t *l, int order,
                                                              const dl_kd_t *k, int n) {
    /* appends (sequential ids, a new attribute run) land past the last key: one compare */
    if (l->h.n && kcmp(order, &l->d[l->h.n - 1], k, n) < 0)
        return l->h.n;
    uint32_t lo = 0, hi = l->h.n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (kcmp(order, &l->d[mid], k, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static uint32_t leaf_lb(const leaf_t *l, int order, const dl_kd_t *k, int n) {
    switch (order) {
        case DL_ORD_EAVT:
            return lb_impl(l, DL_ORD_EAVT, k, n);
        case DL_ORD_AEVT:
            return lb_impl(l, DL_ORD_AEVT, k, n);
        case DL_ORD_AVET:
            return lb_impl(l, DL_ORD_AVET, k, n);
        default:
            return lb_impl(l, DL_ORD_VAET, k, n);
    }
}

/* The child to descend into for the lower bound of k: the last i >= 1 with key[i] < k, or
 * 0. With strict=false (exact insert/delete positioning in full comparison) the last i with
 * key[i] <= k. */
static inline __attribute__((always_inline)) uint32_t
pick_impl(const inode_t *in, int order, const dl_kd_t *k, int n, bool strict) {
    /* the rightmost child, for appends: one compare */
    int c0 = kcmp(order, &in->key[in->h.n - 1], k, n);
    if (c0 < 0 || (!strict && c0 == 0))
        return in->h.n - 1;
    uint32_t lo = 1, hi = in->h.n; /* find first i in [1,n) with key[i] >(=) k */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        int c = kcmp(order, &in->key[mid], k, n);
        if (c < 0 || (!strict && c == 0))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo - 1;
}

static uint32_t inode_pick(const inode_t *in, int order, const dl_kd_t *k, int n, bool strict) {
    switch (order) {
        case DL_ORD_EAVT:
            return pick_impl(in, DL_ORD_EAVT, k, n, strict);
        case DL_ORD_AEVT:
            return pick_impl(in, DL_ORD_AEVT, k, n, strict);
        case DL_ORD_AVET:
            return pick_impl(in, DL_ORD_AVET, k, n, strict);
        default:
            return pick_impl(in, DL_ORD_VAET, k, n, strict);
    }
}

void dl__btree_seek(dl_btcur_t *cur, const dl_btree_t *t, const dl_kd_t *k, int n) {
    cur->order = t->order;
    cur->depth = 0;
    const dl_bnode_t *x = t->root;
    while (!x->leaf) {
        uint32_t i = n ? inode_pick(INODE(x), t->order, k, n, true) : 0;
        cur->st[cur->depth].n = x;
        cur->st[cur->depth].i = i;
        cur->depth++;
        x = INODE(x)->kid[i];
    }
    cur->st[cur->depth].n = x;
    cur->st[cur->depth].i = n ? leaf_lb(LEAF(x), t->order, k, n) : 0;
    cur->valid = true;
    if (cur->st[cur->depth].i >= x->n) {
        cur->st[cur->depth].i = x->n ? x->n - 1 : 0;
        if (x->n == 0) {
            cur->valid = false;
            /* an empty leaf occurs only as an empty root */
            return;
        }
        dl__btree_cur_next(cur);
    }
}

/* A seek that reuses the cursor's position, for probes in increasing key order (a lookup
 * join's): a few steps forward in the cursor's leaf for a near key, a binary search of the
 * leaf when the key is further in it, the next leaf when it is just past it; else a
 * descent from the root. Specialized per order (the comparison inlined), as leaf_lb is. */
static inline __attribute__((always_inline)) void
cur_seek_impl(dl_btcur_t *cur, const dl_btree_t *t, int order, const dl_kd_t *k, int n) {
    if (cur->valid && n && cur->order == order) {
        int dp = cur->depth;
        const leaf_t *l = LEAF(cur->st[dp].n);
        uint32_t m = l->h.n, i = cur->st[dp].i;
        if (i < m && kcmp(order, &l->d[i], k, n) < 0) {
            uint32_t j = i + 1, lim = i + 8 < m ? i + 8 : m;
            while (j < lim && kcmp(order, &l->d[j], k, n) < 0)
                j++;
            if (j < lim) {
                cur->st[dp].i = j;
                return;
            }
            if (j < m && kcmp(order, &l->d[m - 1], k, n) >= 0) {
                cur->st[dp].i = lb_impl(l, order, k, n);
                return;
            }
            /* past this leaf: the next one (sparse forward probes), walked forward from
             * its start like this one (its lines were requested on entry, in order) */
            cur->st[dp].i = m - 1;
            dl__btree_cur_next(cur);
            if (cur->valid) {
                const leaf_t *x = LEAF(cur->st[cur->depth].n);
                uint32_t mx = x->h.n, lx = mx < 8 ? mx : 8;
                j = 0;
                while (j < lx && kcmp(order, &x->d[j], k, n) < 0)
                    j++;
                if (j < lx) {
                    cur->st[cur->depth].i = j; /* every key before it, in this leaf or the
                                                  last one, is < k */
                    return;
                }
                if (mx && kcmp(order, &x->d[mx - 1], k, n) >= 0) {
                    cur->st[cur->depth].i = lb_impl(x, order, k, n);
                    return;
                }
            }
        } else if (i < m && i > 0 && kcmp(order, &l->d[i - 1], k, n) < 0) {
            return; /* d[i-1] < k <= d[i]: already there */
        } else if (m && kcmp(order, &l->d[0], k, n) < 0 && kcmp(order, &l->d[m - 1], k, n) >= 0) {
            cur->st[dp].i = lb_impl(l, order, k, n);
            return;
        }
    }
    dl__btree_seek(cur, t, k, n);
}

void dl__btree_cur_seek(dl_btcur_t *cur, const dl_btree_t *t, const dl_kd_t *k, int n) {
    switch (t->order) {
        case DL_ORD_EAVT:
            cur_seek_impl(cur, t, DL_ORD_EAVT, k, n);
            break;
        case DL_ORD_AEVT:
            cur_seek_impl(cur, t, DL_ORD_AEVT, k, n);
            break;
        case DL_ORD_AVET:
            cur_seek_impl(cur, t, DL_ORD_AVET, k, n);
            break;
        default:
            cur_seek_impl(cur, t, DL_ORD_VAET, k, n);
            break;
    }
}

const dl_kd_t *dl__btree_cur_get(const dl_btcur_t *cur) {
    if (!cur->valid)
        return NULL;
    return &LEAF(cur->st[cur->depth].n)->d[cur->st[cur->depth].i];
}

void dl__btree_cur_next(dl_btcur_t *cur) {
    if (!cur->valid)
        return;
    int d = cur->depth;
    if (++cur->st[d].i < cur->st[d].n->n)
        return;
    /* climb to the first ancestor with a next child, then descend leftmost */
    int up = d - 1;
    while (up >= 0 && cur->st[up].i + 1 >= cur->st[up].n->n)
        up--;
    if (up < 0) {
        cur->valid = false;
        return;
    }
    cur->st[up].i++;
    const dl_bnode_t *x = INODE(cur->st[up].n)->kid[cur->st[up].i];
    for (int k = up + 1; k <= d; k++) {
        cur->st[k].n = x;
        cur->st[k].i = 0;
        if (!x->leaf)
            x = INODE(x)->kid[0];
    }
    /* The walk reads on through the new leaf (a scan, or probes in key order), and leaves
     * lie anywhere in memory (each allocated on its own): its lines are requested at once,
     * and the next leaf's first line, so that their cache misses overlap instead of coming
     * one by one as the walk reaches them. Measured: sorted lookups into two 1e6-datom AEVT
     * ranges (one per open order, W2) took half the time, and a range scan a third less. */
    const char *lp = (const char *)cur->st[d].n;
    for (size_t off = 64; off < sizeof(leaf_t); off += 64)
        __builtin_prefetch(lp + off);
    if (d > 0 && cur->st[d - 1].i + 1 < cur->st[d - 1].n->n)
        __builtin_prefetch(INODE(cur->st[d - 1].n)->kid[cur->st[d - 1].i + 1]);
}

const dl_kd_t *dl__btree_find(const dl_btree_t *t, const dl_kd_t *k, int n) {
    const dl_bnode_t *x = t->root;
    while (!x->leaf)
        x = INODE(x)->kid[inode_pick(INODE(x), t->order, k, n, true)];
    /* the lower bound may sit in the next leaf; walk through the cursor for that case */
    uint32_t i = leaf_lb(LEAF(x), t->order, k, n);
    if (i < x->n)
        return dl__btree_cmp(t->order, &LEAF(x)->d[i], k, n) == 0 ? &LEAF(x)->d[i] : NULL;
    dl_btcur_t cur;
    dl__btree_seek(&cur, t, k, n);
    const dl_kd_t *g = dl__btree_cur_get(&cur);
    return g && dl__btree_cmp(t->order, g, k, n) == 0 ? g : NULL;
}

/* ---- insert --------------------------------------------------------------------------------- */

/* Inserts into the subtree at *np. On a split, *split receives the new right sibling and
 * *sep its separator. */
/* Where an insert landed when nothing split: the (writer-owned) leaf holding the key and
 * the separator bounding it from above (NULL: the tree's last leaf). leaf is NULL after
 * a split (separators moved: a caller wanting the leaf descends again). */
typedef struct landing {
    leaf_t *leaf;
    const dl_kd_t *hi;
} landing_t;

static int ins(dl_btctx_t *c, const dl_btree_t *t, dl_bnode_t **np, const dl_kd_t *k,
               dl_bnode_t **split, dl_kd_t *sep, const dl_kd_t *hi, landing_t *land) {
    *split = NULL;
    dl_bnode_t *x = *np;
    if (x->leaf) {
        uint32_t pos = leaf_lb(LEAF(x), t->order, k, t->ncmp);
        if (pos < x->n && dl__btree_cmp(t->order, &LEAF(x)->d[pos], k, t->ncmp) == 0)
            return 1;
        if (!(x = own(c, np)))
            return DL_ENOMEM;
        leaf_t *l = LEAF(x);
        if (x->n < LCAP) {
            memmove(&l->d[pos + 1], &l->d[pos], (x->n - pos) * sizeof(dl_kd_t));
            l->d[pos] = *k;
            x->n++;
            land->leaf = l;
            land->hi = hi;
            return 0;
        }
        land->leaf = NULL;
        leaf_t *r = (leaf_t *)node_new(c, true);
        if (!r)
            return DL_ENOMEM;
        /* Appends at the end split unevenly, so sequential loads fill leaves. */
        uint32_t keep = pos == LCAP ? LCAP - 1 : LCAP / 2;
        r->h.n = LCAP - keep;
        memcpy(r->d, &l->d[keep], r->h.n * sizeof(dl_kd_t));
        l->h.n = keep;
        leaf_t *dst = pos <= keep && pos != LCAP ? l : r;
        if (dst == r)
            pos -= keep;
        memmove(&dst->d[pos + 1], &dst->d[pos], (dst->h.n - pos) * sizeof(dl_kd_t));
        dst->d[pos] = *k;
        dst->h.n++;
        *split = &r->h;
        *sep = r->d[0];
        return 0;
    }
    uint32_t i = inode_pick(INODE(x), t->order, k, t->ncmp, false);
    if (!(x = own(c, np)))
        return DL_ENOMEM;
    inode_t *in = INODE(x);
    dl_bnode_t *cs;
    dl_kd_t csep;
    int rc = ins(c, t, &in->kid[i], k, &cs, &csep, i + 1 < x->n ? &in->key[i + 1] : hi, land);
    if (rc != 0 || !cs)
        return rc;
    if (x->n < ICAP) {
        memmove(&in->key[i + 2], &in->key[i + 1], (x->n - i - 1) * sizeof(dl_kd_t));
        memmove(&in->kid[i + 2], &in->kid[i + 1], (x->n - i - 1) * sizeof(dl_bnode_t *));
        in->key[i + 1] = csep;
        in->kid[i + 1] = cs;
        x->n++;
        return 0;
    }
    inode_t *r = (inode_t *)node_new(c, false);
    if (!r) {
        /* keep the tree valid: the child split is lost only if we drop it, so undo by
         * failing the transaction; the writer discards private nodes */
        dl__btree_discard(c, cs);
        return DL_ENOMEM;
    }
    /* Build the ICAP+1 entries virtually and split them in two halves. */
    uint32_t total = ICAP + 1, keep = i + 1 == ICAP ? ICAP - 1 : total / 2;
    dl_kd_t keys[ICAP + 1];
    dl_bnode_t *kids[ICAP + 1];
    memcpy(keys, in->key, (i + 1) * sizeof(dl_kd_t));
    memcpy(kids, in->kid, (i + 1) * sizeof(dl_bnode_t *));
    keys[i + 1] = csep;
    kids[i + 1] = cs;
    memcpy(&keys[i + 2], &in->key[i + 1], (ICAP - i - 1) * sizeof(dl_kd_t));
    memcpy(&kids[i + 2], &in->kid[i + 1], (ICAP - i - 1) * sizeof(dl_bnode_t *));
    memcpy(in->key, keys, keep * sizeof(dl_kd_t));
    memcpy(in->kid, kids, keep * sizeof(dl_bnode_t *));
    in->h.n = keep;
    r->h.n = total - keep;
    memcpy(r->key, &keys[keep], r->h.n * sizeof(dl_kd_t));
    memcpy(r->kid, &kids[keep], r->h.n * sizeof(dl_bnode_t *));
    *split = &r->h;
    *sep = keys[keep];
    return 0;
}

int dl__btree_insert(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) {
    /* probe first: a duplicate changes nothing and copies no path */
    if (dl__btree_find(t, k, t->ncmp))
        return 1;
    return dl__btree_insert_new(c, t, k);
}

static int insert_one(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k, landing_t *land) {
    dl_bnode_t *split;
    dl_kd_t sep;
    int rc = ins(c, t, &t->root, k, &split, &sep, NULL, land);
    if (rc != 0)
        return rc;
    if (split) {
        inode_t *r = (inode_t *)node_new(c, false);
        if (!r) {
            dl__btree_discard(c, split);
            return DL_ENOMEM; /* the caller discards the transaction's private nodes */
        }
        r->h.n = 2;
        r->kid[0] = t->root;
        r->kid[1] = split;
        r->key[1] = sep;
        r->key[0] = sep; /* unused */
        t->root = &r->h;
    }
    t->count++;
    return 0;
}

int dl__btree_insert_new(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) {
    landing_t land;
    return insert_one(c, t, k, &land);
}

/* Inserts a run of keys, ascending in the tree's order and all absent (the transaction
 * plan guarantees both). After a key is inserted from the root, the following keys that
 * fall in the same leaf (below the leaf's upper separator) go straight into it while it
 * has room: a sequential run costs about one descent per leaf instead of one per key. */
int dl__btree_insert_run(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *keys, size_t n) {
    size_t i = 0;
    while (i < n) {
        landing_t land = {NULL, NULL};
        int rc = insert_one(c, t, &keys[i], &land);
        if (rc != 0)
            return rc < 0 ? rc : DL_EINTERNAL;
        i++;
        if (i == n)
            break;
        if (!land.leaf) {
            /* a split moved things: find the leaf now holding keys[i-1] and its bound */
            dl_bnode_t *x = t->root;
            while (!x->leaf) {
                uint32_t k = inode_pick(INODE(x), t->order, &keys[i - 1], t->ncmp, false);
                if (k + 1 < x->n)
                    land.hi = &INODE(x)->key[k + 1];
                x = INODE(x)->kid[k];
            }
            if (x->epoch != c->epoch)
                continue;
            land.leaf = LEAF(x);
        }
        leaf_t *l = land.leaf;
        dl_bnode_t *x = &l->h;
        const dl_kd_t *hi = land.hi;
        while (i < n && x->n < LCAP &&
               (!hi || dl__btree_cmp(t->order, &keys[i], hi, t->ncmp) < 0)) {
            uint32_t pos = leaf_lb(l, t->order, &keys[i], t->ncmp);
            if (pos < x->n && dl__btree_cmp(t->order, &l->d[pos], &keys[i], t->ncmp) == 0)
                return DL_EINTERNAL; /* the caller promised absence */
            memmove(&l->d[pos + 1], &l->d[pos], (x->n - pos) * sizeof(dl_kd_t));
            l->d[pos] = keys[i];
            x->n++;
            t->count++;
            i++;
        }
    }
    return 0;
}

/* ---- delete --------------------------------------------------------------------------------- */

/* Rebalances kid i of in (owned) after it fell below its minimum: merges it with a
 * neighbour or moves entries over. */
static int rebalance(dl_btctx_t *c, inode_t *in, uint32_t i) {
    if (in->h.n < 2)
        return 0;
    uint32_t li = i > 0 ? i - 1 : i, ri = li + 1;
    dl_bnode_t *L = own(c, &in->kid[li]);
    if (!L)
        return DL_ENOMEM;
    dl_bnode_t *R = own(c, &in->kid[ri]);
    if (!R)
        return DL_ENOMEM;
    if (L->leaf) {
        leaf_t *l = LEAF(L), *r = LEAF(R);
        uint32_t tot = L->n + R->n;
        if (tot <= LCAP) {
            memcpy(&l->d[L->n], r->d, R->n * sizeof(dl_kd_t));
            L->n = tot;
            goto remove_right;
        }
        dl_kd_t tmp[2 * LCAP];
        memcpy(tmp, l->d, L->n * sizeof(dl_kd_t));
        memcpy(&tmp[L->n], r->d, R->n * sizeof(dl_kd_t));
        uint32_t half = tot / 2;
        memcpy(l->d, tmp, half * sizeof(dl_kd_t));
        memcpy(r->d, &tmp[half], (tot - half) * sizeof(dl_kd_t));
        L->n = half;
        R->n = tot - half;
        in->key[ri] = r->d[0];
        return 0;
    }
    inode_t *l = INODE(L), *r = INODE(R);
    uint32_t tot = L->n + R->n;
    dl_kd_t keys[2 * ICAP];
    dl_bnode_t *kids[2 * ICAP];
    memcpy(keys, l->key, L->n * sizeof(dl_kd_t));
    memcpy(kids, l->kid, L->n * sizeof(dl_bnode_t *));
    memcpy(&keys[L->n], r->key, R->n * sizeof(dl_kd_t));
    memcpy(&kids[L->n], r->kid, R->n * sizeof(dl_bnode_t *));
    keys[L->n] = in->key[ri]; /* the parent's separator bounds r's first child */
    if (tot <= ICAP) {
        memcpy(l->key, keys, tot * sizeof(dl_kd_t));
        memcpy(l->kid, kids, tot * sizeof(dl_bnode_t *));
        L->n = tot;
        goto remove_right;
    }
    uint32_t half = tot / 2;
    memcpy(l->key, keys, half * sizeof(dl_kd_t));
    memcpy(l->kid, kids, half * sizeof(dl_bnode_t *));
    memcpy(r->key, &keys[half], (tot - half) * sizeof(dl_kd_t));
    memcpy(r->kid, &kids[half], (tot - half) * sizeof(dl_bnode_t *));
    L->n = half;
    R->n = tot - half;
    in->key[ri] = keys[half];
    return 0;
remove_right:
    memmove(&in->key[ri], &in->key[ri + 1], (in->h.n - ri - 1) * sizeof(dl_kd_t));
    memmove(&in->kid[ri], &in->kid[ri + 1], (in->h.n - ri - 1) * sizeof(dl_bnode_t *));
    in->h.n--;
    return drop(c, R);
}

static int del(dl_btctx_t *c, const dl_btree_t *t, dl_bnode_t **np, const dl_kd_t *k) {
    dl_bnode_t *x = *np;
    if (x->leaf) {
        uint32_t pos = leaf_lb(LEAF(x), t->order, k, t->ncmp);
        if (pos >= x->n || dl__btree_cmp(t->order, &LEAF(x)->d[pos], k, t->ncmp) != 0)
            return 1;
        if (!(x = own(c, np)))
            return DL_ENOMEM;
        memmove(&LEAF(x)->d[pos], &LEAF(x)->d[pos + 1], (x->n - pos - 1) * sizeof(dl_kd_t));
        x->n--;
        return 0;
    }
    uint32_t i = inode_pick(INODE(x), t->order, k, t->ncmp, false);
    if (!(x = own(c, np)))
        return DL_ENOMEM;
    int rc = del(c, t, &INODE(x)->kid[i], k);
    if (rc != 0)
        return rc;
    dl_bnode_t *kid = INODE(x)->kid[i];
    if (kid->n < (kid->leaf ? LMIN : IMIN))
        return rebalance(c, INODE(x), i);
    return 0;
}

int dl__btree_delete(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) {
    /* probe first: an absent key changes nothing and copies no path */
    if (!dl__btree_find(t, k, t->ncmp))
        return 1;
    return dl__btree_delete_present(c, t, k);
}

int dl__btree_delete_present(dl_btctx_t *c, dl_btree_t *t, const dl_kd_t *k) {
    int rc = del(c, t, &t->root, k);
    if (rc != 0)
        return rc;
    t->count--;
    while (!t->root->leaf && t->root->n == 1) {
        dl_bnode_t *old = t->root;
        t->root = INODE(old)->kid[0];
        if ((rc = drop(c, old)) != 0)
            return rc;
    }
    return 0;
}

/* ---- teardown and checks ------------------------------------------------------------------ */

void dl__btree_discard(dl_btctx_t *c, dl_bnode_t *root) {
    if (!root || root->epoch != c->epoch)
        return;
    if (!root->leaf)
        for (uint32_t i = 0; i < root->n; i++)
            dl__btree_discard(c, INODE(root)->kid[i]);
    node_free(c, root);
}

void dl__btree_free_all(dl_bnode_t *root, uint64_t min_epoch) {
    if (!root || root->epoch < min_epoch)
        return;
    if (!root->leaf)
        for (uint32_t i = 0; i < root->n; i++)
            dl__btree_free_all(INODE(root)->kid[i], min_epoch);
    dl_free(root);
}

/* Reports why the validator failed (stderr: it is a debugging aid for tests). */
static int64_t bad(const char *why, int depth) {
    fprintf(stderr, "dl__btree_check: %s at depth %d\n", why, depth);
    return -1;
}

static int64_t check(const dl_btree_t *t, const dl_bnode_t *x, const dl_kd_t *lo, const dl_kd_t *hi,
                     bool root, int depth, int *leaf_depth) {
    if (x->leaf) {
        if (*leaf_depth < 0)
            *leaf_depth = depth;
        if (*leaf_depth != depth)
            return bad("leaves at different depths", depth);
        if ((!root && x->n == 0) || x->n > LCAP)
            return bad("leaf fill", depth);
        for (uint32_t i = 0; i < x->n; i++) {
            const dl_kd_t *k = &LEAF(x)->d[i];
            if (i && dl__btree_cmp(t->order, &LEAF(x)->d[i - 1], k, t->ncmp) >= 0)
                return bad("leaf keys out of order", depth);
            if ((lo && dl__btree_cmp(t->order, k, lo, t->ncmp) < 0) ||
                (hi && dl__btree_cmp(t->order, k, hi, t->ncmp) >= 0))
                return bad("key outside its separators", depth);
        }
        return x->n;
    }
    if (x->n < 2 || x->n > ICAP)
        return bad("internal fill", depth);
    int64_t sum = 0;
    for (uint32_t i = 0; i < x->n; i++) {
        const dl_kd_t *l = i ? &INODE(x)->key[i] : lo;
        const dl_kd_t *h = i + 1 < x->n ? &INODE(x)->key[i + 1] : hi;
        int64_t r = check(t, INODE(x)->kid[i], l, h, false, depth + 1, leaf_depth);
        if (r < 0)
            return -1;
        sum += r;
    }
    return sum;
}

int64_t dl__btree_check(const dl_btree_t *t) {
    int leaf_depth = -1;
    int64_t n = check(t, t->root, NULL, NULL, true, 0, &leaf_depth);
    if (n >= 0 && n != t->count)
        return bad("count differs from the keys", 0);
    return n;
}

/* ---- bulk loading (recovery from a checkpoint) ------------------------------------------ */

/* The leaf holding key pos of a build: leaves 0..r-1 hold q+1 keys, the others q. */
static size_t build_leaf_of(const dl_bbuild_t *b, size_t pos, size_t *slot) {
    size_t big = b->r * (b->q + 1);
    size_t li = pos < big ? pos / (b->q + 1) : b->r + (pos - big) / b->q;
    *slot = pos < big ? pos % (b->q + 1) : (pos - big) % b->q;
    return li;
}

int dl__btree_build_begin(dl_btctx_t *c, dl_bbuild_t *b, size_t n) {
    memset(b, 0, sizeof *b);
    b->c = c;
    b->n = n;
    if (n == 0)
        return 0;
    b->n_leaves = (n + LCAP - 1) / LCAP;
    b->q = n / b->n_leaves;
    b->r = n % b->n_leaves;
    b->nodes = dl_calloc(b->n_leaves, sizeof *b->nodes);
    if (!b->nodes)
        return DL_ENOMEM;
    for (size_t i = 0; i < b->n_leaves; i++) {
        if (!(b->nodes[i] = node_alloc(c, true, false))) {
            dl__btree_build_abort(b);
            return DL_ENOMEM;
        }
        b->nodes[i]->n = (uint32_t)(b->q + (i < b->r ? 1 : 0));
    }
    return 0;
}

dl_kd_t *dl__btree_build_slot(dl_bbuild_t *b, size_t pos) {
    size_t slot, li = build_leaf_of(b, pos, &slot);
    return &LEAF(b->nodes[li])->d[slot];
}

dl_kd_t *dl__btree_build_at(dl_bbuild_t *b, size_t pos, size_t *room) {
    size_t slot, li = build_leaf_of(b, pos, &slot);
    *room = b->nodes[li]->n - slot;
    return &LEAF(b->nodes[li])->d[slot];
}

void dl__btree_build_abort(dl_bbuild_t *b) {
    for (size_t i = 0; b->nodes && i < b->n_leaves; i++)
        dl_free(b->nodes[i]);
    dl_free(b->nodes);
    memset(b, 0, sizeof *b);
}

static const dl_kd_t *min_key(const dl_bnode_t *x) {
    while (!x->leaf)
        x = INODE(x)->kid[0];
    return &LEAF(x)->d[0];
}

/* Builds the internal levels bottom-up over the leaves (every leaf written through
 * build_slot, in the tree's order): each level is split evenly into nodes of at most ICAP
 * children (so at least ICAP/2 when there are several), the separator of a child being
 * its smallest key. Frees t's previous nodes: the caller guarantees that no version can
 * read them any more (recovery, before the first version is published). */
int dl__btree_build_end(dl_bbuild_t *b, dl_btree_t *t) {
    if (b->n == 0) {
        dl_btctx_t *c = b->c;
        dl__btree_build_abort(b);
        dl_bnode_t *x = node_alloc(c, true, false);
        if (!x)
            return DL_ENOMEM;
        dl__btree_free_all(t->root, 0);
        t->root = x;
        t->count = 0;
        return 0;
    }
    size_t m = b->n_leaves;
    dl_bnode_t **lv = b->nodes;
    while (m > 1) {
        size_t k = (m + ICAP - 1) / ICAP, q = m / k, r = m % k, at = 0;
        dl_bnode_t **up = dl_calloc(k, sizeof *up);
        if (!up)
            goto oom;
        for (size_t i = 0; i < k; i++) {
            inode_t *in = (inode_t *)node_alloc(b->c, false, false);
            if (!in) {
                for (size_t j = 0; j < i; j++)
                    dl_free(up[j]);
                dl_free(up);
                goto oom;
            }
            size_t cnt = q + (i < r ? 1 : 0);
            for (size_t j = 0; j < cnt; j++, at++) {
                in->kid[j] = lv[at];
                if (j)
                    in->key[j] = *min_key(lv[at]);
            }
            memset(&in->key[0], 0, sizeof in->key[0]);
            in->h.n = (uint32_t)cnt;
            up[i] = &in->h;
        }
        if (lv != b->nodes)
            dl_free(lv);
        lv = up;
        m = k;
    }
    dl_bnode_t *old = t->root;
    t->root = lv[0];
    t->count = (int64_t)b->n;
    if (lv != b->nodes)
        dl_free(lv);
    dl_free(b->nodes);
    memset(b, 0, sizeof *b);
    dl__btree_free_all(old, 0);
    return 0;
oom:
    /* free the built internal levels reachable from lv, then the leaves */
    if (lv != b->nodes) {
        for (size_t i = 0; i < m; i++)
            if (!lv[i]->leaf) {
                /* internal nodes only: the leaves are freed below */
                dl_bnode_t *stack[DL_BT_MAXDEPTH * ICAP];
                size_t sp = 0;
                stack[sp++] = lv[i];
                while (sp) {
                    dl_bnode_t *x = stack[--sp];
                    if (x->leaf)
                        continue;
                    for (uint32_t j = 0; j < x->n; j++)
                        if (!INODE(x)->kid[j]->leaf)
                            stack[sp++] = INODE(x)->kid[j];
                    dl_free(x);
                }
            }
        dl_free(lv);
    }
    dl__btree_build_abort(b);
    return DL_ENOMEM;
}
