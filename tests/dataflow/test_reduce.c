/*
 * test_reduce.c: reduce under partially ordered times (DESIGN-NOTES §2, docs/dataflow.md
 * "Reduce and interesting times"): the 2-D case where evaluating only at arriving times
 * is wrong, the 3-D case where pairwise joins are not enough, each fed in every arrival
 * order and with frontiers advanced in steps, compared at every time of a grid with the
 * reducer applied to the accumulated input; plus the built-in reducers' meanings.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <deltalog/dataflow.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct rupd {
    int64_t key, val;
    uint64_t t[3];
    int64_t d;
} rupd_t;

typedef struct log {
    size_t n;
    uint64_t t[512][3];
    int64_t key[512], val[512], d[512];
} log_t;

static int log_cap(void *ctx, const dl_diff_t *d) {
    log_t *l = ctx;
    for (size_t i = 0; i < d->n; i++) {
        assert_true(l->n < 512);
        memset(l->t[l->n], 0, sizeof l->t[l->n]);
        memcpy(l->t[l->n], d->time, d->dim * sizeof(uint64_t));
        l->key[l->n] = d->rows[i * d->arity].as.i;
        l->val[l->n] = d->arity > 1 ? d->rows[i * d->arity + 1].as.i : 0;
        l->d[l->n] = d->diffs[i];
        l->n++;
    }
    return 0;
}

static bool tle(const uint64_t *a, const uint64_t *b, int dim) {
    for (int i = 0; i < dim; i++)
        if (a[i] > b[i])
            return false;
    return true;
}

/* The reducers under test, applied naively to key 0's accumulated (val -> count). */
typedef enum rk { RK_COUNT, RK_DISTINCT, RK_MIN, RK_SUM } rk_t;

/* Expected output multiset at t: fills vals/counts; returns the number of rows. */
static int naive(rk_t k, const rupd_t *u, int n, const uint64_t *t, int dim, int64_t *ov,
                 int64_t *oc) {
    int64_t acc[8] = {0}; /* vals 0..7 */
    for (int i = 0; i < n; i++)
        if (tle(u[i].t, t, dim))
            acc[u[i].val] += u[i].d;
    int m = 0;
    int64_t cnt = 0, sum = 0, mn = INT64_MAX;
    bool any = false;
    for (int v = 0; v < 8; v++) {
        if (acc[v] == 0)
            continue;
        any = true;
        cnt += acc[v];
        sum += v * acc[v];
        if (acc[v] > 0 && v < mn)
            mn = v;
        if (k == RK_DISTINCT && acc[v] > 0) {
            ov[m] = v;
            oc[m++] = 1;
        }
    }
    if (k == RK_COUNT && cnt != 0) {
        ov[m] = cnt;
        oc[m++] = 1;
    }
    if (k == RK_SUM && any) {
        ov[m] = sum;
        oc[m++] = 1;
    }
    if (k == RK_MIN && mn != INT64_MAX) {
        ov[m] = mn;
        oc[m++] = 1;
    }
    return m;
}

/* Runs reducer k over updates u (fed in the order given by perm), advancing the frontier
 * after each update to the meet of the remaining updates' times when `steps`, and checks
 * every grid time 0..2 per coordinate once complete. */
static void run_reduce(rk_t k, const rupd_t *u, int n, int dim, const int *perm, bool steps) {
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new((size_t)dim, &err);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    dl_arr_t *a = dl_arrange(dl_input_coll(in), K0, 1, V1, 1, &err);
    dl_reduce_spec_t spec = {.kind = k == RK_COUNT      ? DL_REDUCE_COUNT
                                     : k == RK_DISTINCT ? DL_REDUCE_DISTINCT
                                     : k == RK_MIN      ? DL_REDUCE_MIN
                                                        : DL_REDUCE_SUM,
                             .col = 0};
    dl_arr_t *r = dl_reduce(a, &spec, &err);
    assert_non_null(r);
    static log_t l;
    memset(&l, 0, sizeof l);
    assert_non_null(dl_capture_new(dl_arr_coll(r), log_cap, &l, &err));
    dl_antichain_t f;
    dl_antichain_init(&f, (size_t)dim);
    for (int s = 0; s < n; s++) {
        const rupd_t *x = &u[perm[s]];
        dl_value_t row[2] = {dl_value_int(x->key), dl_value_int(x->val)};
        assert_int_equal(dl_input_update(in, row, 2, x->t, x->d, &err), 0);
        if (steps || s == n - 1) {
            /* Frontier: the antichain of the remaining updates' times (or closed). */
            dl_antichain_clear(&f);
            for (int j = s + 1; j < n; j++)
                assert_true(dl_antichain_insert(&f, u[perm[j]].t) >= 0);
            if (f.n)
                assert_int_equal(dl_input_advance(in, &f, &err), 0);
            else
                assert_int_equal(dl_input_close(in, &err), 0);
            assert_int_equal(dl_graph_run(g, &err), 0);
            /* Check every complete grid time. */
            int total = dim == 1 ? 3 : dim == 2 ? 9 : 27;
            for (int gi = 0; gi < total; gi++) {
                uint64_t t[3] = {0, 0, 0};
                int xx = gi;
                for (int d = 0; d < dim; d++, xx /= 3)
                    t[d] = (uint64_t)(xx % 3);
                if (dl_antichain_less_equal(&f, t))
                    continue;
                int64_t ov[16], oc[16];
                int m = naive(k, u, n, t, dim, ov, oc);
                int64_t got[64] = {0}; /* by value + 32 */
                for (size_t i = 0; i < l.n; i++)
                    if (tle(l.t[i], t, dim)) {
                        assert_true(l.val[i] + 32 >= 0 && l.val[i] + 32 < 64);
                        got[l.val[i] + 32] += l.d[i];
                    }
                for (int i = 0; i < m; i++)
                    got[ov[i] + 32] -= oc[i];
                for (int v = 0; v < 64; v++)
                    if (got[v] != 0)
                        fail_msg("reducer %d dim %d: at (%llu,%llu,%llu) value %d off by %lld", k,
                                 dim, (unsigned long long)t[0], (unsigned long long)t[1],
                                 (unsigned long long)t[2], v - 32, (long long)got[v]);
            }
        }
    }
    dl_antichain_fini(&f);
    dl_graph_free(g);
}

static void all_orders(rk_t k, const rupd_t *u, int n, int dim) {
    int perm[6];
    for (int i = 0; i < n; i++)
        perm[i] = i;
    /* Every permutation (n <= 5), in one run and stepwise. */
    for (;;) {
        run_reduce(k, u, n, dim, perm, false);
        run_reduce(k, u, n, dim, perm, true);
        int i = n - 2;
        while (i >= 0 && perm[i] > perm[i + 1])
            i--;
        if (i < 0)
            break;
        int j = n - 1;
        while (perm[j] < perm[i])
            j--;
        int tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
        for (int a = i + 1, b = n - 1; a < b; a++, b--) {
            tmp = perm[a];
            perm[a] = perm[b];
            perm[b] = tmp;
        }
    }
}

/* 2-D: updates at (1,0) and (0,1). Evaluating only at arriving times leaves the count at
 * (1,1) as two rows [1] instead of one row [2]. */
static void test_reduce_2d_needs_joined_time(void **state) {
    (void)state;
    rupd_t u[2] = {{0, 1, {1, 0, 0}, 1}, {0, 2, {0, 1, 0}, 1}};
    all_orders(RK_COUNT, u, 2, 2);
    all_orders(RK_MIN, u, 2, 2);
    all_orders(RK_SUM, u, 2, 2);
    rupd_t w[3] = {{0, 1, {0, 0, 0}, 1}, {0, 1, {1, 0, 0}, -1}, {0, 2, {0, 1, 0}, 1}};
    all_orders(RK_DISTINCT, w, 3, 2);
    all_orders(RK_MIN, w, 3, 2);
}

/* 3-D: updates at (1,0,0), (0,1,0), (0,0,1) and a retraction at (1,1,0). Pairwise joins
 * reach (1,1,0), (1,0,1), (0,1,1) but (1,1,1) is needed too: without it distinct's
 * accumulated output there is -1 instead of 1 (and count's is wrong as well). */
static void test_reduce_3d_needs_closure(void **state) {
    (void)state;
    rupd_t u[4] = {
        {0, 3, {1, 0, 0}, 1}, {0, 3, {0, 1, 0}, 1}, {0, 3, {0, 0, 1}, 1}, {0, 3, {1, 1, 0}, -2}};
    all_orders(RK_DISTINCT, u, 4, 3);
    all_orders(RK_COUNT, u, 3, 3);
    all_orders(RK_COUNT, u, 4, 3);
    rupd_t w[4] = {
        {0, 3, {1, 0, 0}, 1}, {0, 1, {0, 1, 0}, 1}, {0, 2, {0, 0, 1}, 1}, {0, 1, {1, 1, 0}, -1}};
    all_orders(RK_MIN, w, 4, 3);
    all_orders(RK_SUM, w, 4, 3);
}

/* Random keys/values/times over 3 dims, random arrival orders. */
static void test_reduce_random_3d(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("reduce_random_3d")};
    long iters = dl_prop_iters(300);
    for (long it = 0; it < iters; it++) {
        int dim = 2 + (int)dl_rng_below(&rng, 2), n = 1 + (int)dl_rng_below(&rng, 6);
        rupd_t u[6];
        for (int i = 0; i < n; i++) {
            u[i].key = 0;
            u[i].val = (int64_t)dl_rng_below(&rng, 4);
            memset(u[i].t, 0, sizeof u[i].t);
            for (int d = 0; d < dim; d++)
                u[i].t[d] = dl_rng_below(&rng, 3);
            u[i].d = dl_rng_below(&rng, 3) ? 1 : -1;
        }
        int perm[6];
        for (int i = 0; i < n; i++)
            perm[i] = i;
        for (int i = n - 1; i > 0; i--) {
            int j = (int)dl_rng_below(&rng, (uint64_t)(i + 1)), x = perm[i];
            perm[i] = perm[j];
            perm[j] = x;
        }
        rk_t k = (rk_t)dl_rng_below(&rng, 4);
        run_reduce(k, u, n, dim, perm, dl_rng_below(&rng, 2));
    }
}

/* The general reducer: emits (sum of vals, number of distinct vals) with diff 1. */
static int general_fn(void *ctx, const dl_value_t *key, const dl_value_t *vals,
                      const int64_t *counts, size_t n, dl_emitter_t *out) {
    (void)ctx;
    (void)key;
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(dl_value_cmp(vals[i - 1], vals[i]) < 0); /* sorted, distinct */
        assert_int_not_equal(counts[i], 0);
        sum += vals[i].as.i * counts[i];
    }
    dl_value_t row[2] = {dl_value_int(sum), dl_value_int((int64_t)n)};
    return dl_emit(out, row);
}

/* threshold: keep rows seen at least twice, once. */
static int64_t thresh_fn(void *ctx, const dl_value_t *row, int64_t count) {
    (void)ctx;
    (void)row;
    return count >= 2 ? 1 : 0;
}

typedef struct acc {
    dl_value_t rows[32][3];
    int64_t d[32];
    int n;
    size_t arity;
} acc_t;

static int acc_cap(void *ctx, const dl_diff_t *d) {
    acc_t *a = ctx;
    a->arity = d->arity;
    for (size_t i = 0; i < d->n; i++) {
        int k;
        for (k = 0; k < a->n; k++)
            if (dl_row_eq(a->rows[k], d->rows + i * d->arity, d->arity))
                break;
        if (k == a->n) {
            assert_true(a->n < 32);
            memcpy(a->rows[a->n], d->rows + i * d->arity, d->arity * sizeof(dl_value_t));
            a->d[a->n++] = 0;
        }
        a->d[k] += d->diffs[i];
    }
    return 0;
}

/* Exactly one row (key, v...) with count 1 and nothing else. */
static void expect_one(const acc_t *a, const dl_value_t *row) {
    int found = 0;
    for (int k = 0; k < a->n; k++) {
        if (a->d[k] == 0)
            continue;
        assert_int_equal(a->d[k], 1);
        assert_true(dl_row_eq(a->rows[k], row, a->arity));
        found++;
    }
    assert_int_equal(found, 1);
}

/* Every built-in reducer's meaning on one key: vals {2 x2, 5, 9 (retracted later)}. */
static void test_reduce_builtin_meanings(void **state) {
    (void)state;
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    dl_arr_t *a = dl_arrange(dl_input_coll(in), K0, 1, V1, 1, &err);
    dl_reduce_spec_t specs[7] = {
        {.kind = DL_REDUCE_COUNT},
        {.kind = DL_REDUCE_SUM, .col = 0},
        {.kind = DL_REDUCE_MIN, .col = 0},
        {.kind = DL_REDUCE_MAX, .col = 0},
        {.kind = DL_REDUCE_AVG, .col = 0},
        {.kind = DL_REDUCE_THRESHOLD, .thresh_fn = thresh_fn},
        {.kind = DL_REDUCE_GENERAL, .general_fn = general_fn, .out_arity = 2},
    };
    static acc_t accs[7];
    memset(accs, 0, sizeof accs);
    for (int i = 0; i < 7; i++) {
        dl_arr_t *r = dl_reduce(a, &specs[i], &err);
        assert_non_null(r);
        assert_non_null(dl_capture_new(dl_arr_coll(r), acc_cap, &accs[i], &err));
    }
    uint64_t t0[1] = {0}, t1[1] = {1}, t2[1] = {2};
    int64_t vals[4] = {2, 2, 5, 9};
    for (int i = 0; i < 4; i++) {
        dl_value_t row[2] = {dl_value_int(7), dl_value_int(vals[i])};
        assert_int_equal(dl_input_update(in, row, 2, t0, 1, &err), 0);
    }
    dl_value_t nine[2] = {dl_value_int(7), dl_value_int(9)};
    assert_int_equal(dl_input_update(in, nine, 2, t1, -1, &err), 0);
    assert_int_equal(dl_input_advance_to(in, t2, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    /* At time 1: {2, 2, 5}. */
    dl_value_t k = dl_value_int(7);
    expect_one(&accs[0], (dl_value_t[]){k, dl_value_int(3)});
    expect_one(&accs[1], (dl_value_t[]){k, dl_value_int(9)});
    expect_one(&accs[2], (dl_value_t[]){k, dl_value_int(2)});
    expect_one(&accs[3], (dl_value_t[]){k, dl_value_int(5)});
    expect_one(&accs[4], (dl_value_t[]){k, dl_value_double(3.0)});
    expect_one(&accs[5], (dl_value_t[]){k, dl_value_int(2)});
    expect_one(&accs[6], (dl_value_t[]){k, dl_value_int(9), dl_value_int(2)});
    dl_graph_free(g);
}

DL_TEST_GROUP(reduce, cmocka_unit_test(test_reduce_builtin_meanings),
              cmocka_unit_test(test_reduce_2d_needs_joined_time),
              cmocka_unit_test(test_reduce_3d_needs_closure),
              cmocka_unit_test(test_reduce_random_3d));
