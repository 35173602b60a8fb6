/*
 * test_btree.c: the persistent B+tree (store/btree.c) against a sorted array: random
 * inserts and deletes in all four orders, full scans, prefix seeks and finds after every
 * batch; older roots (published snapshots) keep reading exactly what they held while the
 * writer path-copies; a discarded epoch leaves the published tree intact; the structural
 * validator holds throughout; memory is fully reclaimed.
 */
#include "tests/harness/dl_test.h"

#include "store/store.h"

#include <stdlib.h>

static int g_ord;
static int cmp_k(const void *x, const void *y) { return dl__btree_cmp(g_ord, x, y, 3); }

/* Keys over a small domain so that prefixes repeat. */
static dl_kd_t rand_key(dl_rng_t *r) {
    dl_kd_t k = {.e = (int64_t)dl_rng_below(r, 40), .a = (int64_t)dl_rng_below(r, 5)};
    k.v = dl_rng_below(r, 3) ? dl_value_int((int64_t)dl_rng_below(r, 30))
                             : dl_value_ref((int64_t)dl_rng_below(r, 40));
    k.txop = DL_TXOP(dl_rng_below(r, 100), true);
    return k;
}

typedef struct arr {
    dl_kd_t *v;
    size_t n;
} arr_t;

static long arr_find(const arr_t *a, const dl_kd_t *k) {
    for (size_t i = 0; i < a->n; i++)
        if (dl__btree_cmp(g_ord, &a->v[i], k, 3) == 0)
            return (long)i;
    return -1;
}

static void compare(const dl_btree_t *t, const arr_t *a, dl_rng_t *r) {
    assert_true(dl__btree_check(t) == (int64_t)a->n);
    dl_btcur_t c;
    dl__btree_seek(&c, t, NULL, 0);
    for (size_t i = 0; i < a->n; i++) {
        const dl_kd_t *g = dl__btree_cur_get(&c);
        assert_non_null(g);
        assert_int_equal(dl__btree_cmp(g_ord, g, &a->v[i], 3), 0);
        dl__btree_cur_next(&c);
    }
    assert_null(dl__btree_cur_get(&c));
    /* prefix seeks of every length */
    for (int q = 0; q < 20; q++) {
        dl_kd_t k = rand_key(r);
        int n = 1 + (int)dl_rng_below(r, 3);
        size_t i = 0;
        while (i < a->n && dl__btree_cmp(g_ord, &a->v[i], &k, n) < 0)
            i++;
        dl__btree_seek(&c, t, &k, n);
        for (; i < a->n && dl__btree_cmp(g_ord, &a->v[i], &k, n) == 0; i++) {
            const dl_kd_t *g = dl__btree_cur_get(&c);
            if (!g || dl__btree_cmp(g_ord, g, &a->v[i], 3) != 0)
                dl_prop_fail("seek order %d n %d: mismatch at %zu", g_ord, n, i);
            dl__btree_cur_next(&c);
        }
        const dl_kd_t *g = dl__btree_cur_get(&c);
        if (g && dl__btree_cmp(g_ord, g, &k, n) == 0)
            dl_prop_fail("seek order %d n %d: extra key", g_ord, n);
        bool found = dl__btree_find(t, &k, 3) != NULL;
        assert_int_equal(found, arr_find(a, &k) >= 0);
    }
}

static void test_btree_against_sorted_array(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("store.btree_against_sorted_array");
    dl_alloc_stats_t st0;
    dl_alloc_stats(&st0);
    for (int ord = 0; ord < 4; ord++) {
        dl_rng_t r = {seed + (uint64_t)ord};
        g_ord = ord;
        dl_btctx_t ctx = {.epoch = 1};
        dl_btree_t t;
        assert_int_equal(dl__btree_init(&ctx, &t, ord, 3), 0);
        arr_t a = {calloc(4096, sizeof(dl_kd_t)), 0};
        /* a published snapshot: its root and its expected contents */
        dl_btree_t snap = t;
        arr_t snap_a = {calloc(4096, sizeof(dl_kd_t)), 0};
        ctx.epoch++; /* publishing the empty tree: later changes copy its nodes */
        long rounds = dl_prop_iters(60);
        for (long round = 0; round < rounds; round++) {
            int batch = 1 + (int)dl_rng_below(&r, 80);
            bool grow = dl_rng_below(&r, 3) != 0 || a.n < 100;
            for (int i = 0; i < batch; i++) {
                dl_kd_t k = rand_key(&r);
                long at = arr_find(&a, &k);
                if (grow || dl_rng_below(&r, 2)) {
                    int rc = dl__btree_insert(&ctx, &t, &k);
                    assert_int_equal(rc, at >= 0 ? 1 : 0);
                    if (at < 0 && a.n < 4000)
                        a.v[a.n++] = k;
                    else if (at < 0)
                        assert_int_equal(dl__btree_delete(&ctx, &t, &k), 0);
                } else {
                    if (a.n && dl_rng_below(&r, 2)) {
                        k = a.v[dl_rng_below(&r, a.n)];
                        at = arr_find(&a, &k);
                    }
                    int rc = dl__btree_delete(&ctx, &t, &k);
                    assert_int_equal(rc, at >= 0 ? 0 : 1);
                    if (at >= 0)
                        a.v[at] = a.v[--a.n];
                }
            }
            if (a.n > 1)
                qsort(a.v, a.n, sizeof *a.v, cmp_k);
            compare(&t, &a, &r);
            /* the snapshot still reads what it held */
            compare(&snap, &snap_a, &r);
            if (dl_rng_below(&r, 4) == 0) {
                /* publish: the current tree becomes the snapshot; older ones retire */
                snap = t;
                memcpy(snap_a.v, a.v, a.n * sizeof *a.v);
                snap_a.n = a.n;
                ctx.epoch++;
                dl__btctx_reclaim(&ctx, ctx.epoch - 1);
            } else if (dl_rng_below(&r, 5) == 0) {
                /* abandon the writer's private changes since the snapshot */
                dl__btree_discard(&ctx, t.root);
                while (ctx.n_ret && ctx.ret[ctx.n_ret - 1].epoch == ctx.epoch)
                    ctx.n_ret--;
                t = snap;
                memcpy(a.v, snap_a.v, snap_a.n * sizeof *a.v);
                a.n = snap_a.n;
                compare(&t, &a, &r);
            }
        }
        /* tear down: the writer's tree and the retired nodes are everything */
        if (snap.root != t.root) {
            ctx.epoch++;
        }
        dl__btree_free_all(t.root, 0);
        dl__btctx_fini(&ctx);
        free(a.v);
        free(snap_a.v);
    }
    dl_alloc_stats_t st1;
    dl_alloc_stats(&st1);
    assert_int_equal(st1.live_blocks, st0.live_blocks);
}

/* Sequential appends fill leaves (the uneven split), and deep trees stay valid. */
static void test_btree_bulk_sequential(void **state) {
    (void)state;
    dl_btctx_t ctx = {.epoch = 1};
    dl_btree_t t;
    assert_int_equal(dl__btree_init(&ctx, &t, DL_ORD_EAVT, 3), 0);
    for (int64_t i = 0; i < 200000; i++) {
        dl_kd_t k = {.e = i, .a = 1, .v = dl_value_int(i), .txop = DL_TXOP(1, true)};
        assert_int_equal(dl__btree_insert(&ctx, &t, &k), 0);
    }
    assert_int_equal(dl__btree_check(&t), 200000);
    for (int64_t i = 0; i < 200000; i += 2) {
        dl_kd_t k = {.e = i, .a = 1, .v = dl_value_int(i)};
        assert_int_equal(dl__btree_delete(&ctx, &t, &k), 0);
    }
    assert_int_equal(dl__btree_check(&t), 100000);
    dl_btcur_t c;
    dl_kd_t k = {.e = 777};
    dl__btree_seek(&c, &t, &k, 1);
    assert_int_equal(dl__btree_cur_get(&c)->e, 777);
    dl__btree_free_all(t.root, 0);
    dl__btctx_fini(&ctx);
}

DL_TEST_GROUP(btree, cmocka_unit_test(test_btree_against_sorted_array),
              cmocka_unit_test(test_btree_bulk_sequential));
