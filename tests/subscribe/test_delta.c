/*
 * test_delta.c: dl_delta_t, the consolidating container, against a naive oracle (a plain
 * array of (row, count) searched linearly): random additions and cancellations, merge,
 * clone, sort, memory give-back, fault injection and the mutation rules.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <stdio.h>
#include <string.h>

#define AR 2

typedef struct oracle {
    dl_value_t rows[4096][AR];
    int64_t cnt[4096];
    size_t n;
} oracle_t;

static void oracle_add(oracle_t *o, const dl_value_t *row, int64_t d) {
    for (size_t i = 0; i < o->n; i++)
        if (dl_row_eq(o->rows[i], row, AR)) {
            o->cnt[i] += d;
            return;
        }
    memcpy(o->rows[o->n], row, sizeof o->rows[0]);
    o->cnt[o->n++] = d;
}

static size_t oracle_nonzero(const oracle_t *o) {
    size_t n = 0;
    for (size_t i = 0; i < o->n; i++)
        n += o->cnt[i] != 0;
    return n;
}

static void random_row(dl_rng_t *r, dl_value_t *row, uint64_t universe) {
    uint64_t k = dl_rng_below(r, universe);
    row[0] = dl_value_int((int64_t)(k % 37));
    if (k % 3 == 0) {
        dl_value_t v;
        char buf[16];
        int n = snprintf(buf, sizeof buf, "s%llu", (unsigned long long)(k / 37));
        assert_int_equal(dl_value_text(DL_T_STRING, buf, (size_t)n, &v, NULL), 0);
        row[1] = v;
    } else {
        row[1] = dl_value_ref((int64_t)(k / 37));
    }
}

/* The delta equals the oracle: same nonzero pairs, nothing else. */
static void assert_matches(const dl_delta_t *d, const oracle_t *o) {
    assert_true(dl__delta_check(d));
    assert_int_equal(dl_delta_len(d), oracle_nonzero(o));
    for (size_t i = 0; i < o->n; i++)
        if (dl_delta_find(d, o->rows[i]) != o->cnt[i])
            dl_prop_fail("row %zu: delta has %lld, oracle %lld", i,
                         (long long)dl_delta_find(d, o->rows[i]), (long long)o->cnt[i]);
}

static void test_delta_consolidates_like_oracle(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("delta_consolidates_like_oracle")};
    static oracle_t o;
    long iters = dl_prop_iters(40);
    for (long it = 0; it < iters; it++) {
        memset(&o, 0, sizeof o);
        uint64_t t0[2] = {1, 2};
        dl_delta_t *d;
        assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t0, 2, &d, NULL), 0);
        uint64_t universe = 1 + dl_rng_below(&r, 1500);
        long ops = 1 + (long)dl_rng_below(&r, 3000);
        for (long k = 0; k < ops; k++) {
            dl_value_t row[AR];
            random_row(&r, row, universe);
            int64_t diff = (int64_t)dl_rng_below(&r, 5) - 2;
            assert_int_equal(dl_delta_add(d, row, diff, NULL), 0);
            oracle_add(&o, row, diff);
            if (k % 97 == 0)
                assert_matches(d, &o);
        }
        assert_matches(d, &o);
        /* Cancel everything: the delta becomes empty and gives memory back. */
        size_t big = dl_delta_bytes(d);
        for (size_t i = 0; i < o.n; i++)
            if (o.cnt[i])
                assert_int_equal(dl_delta_add(d, o.rows[i], -o.cnt[i], NULL), 0);
        assert_int_equal(dl_delta_len(d), 0);
        assert_true(dl__delta_check(d));
        if (big > 4096)
            assert_true(dl_delta_bytes(d) < big / 2);
        dl_delta_unref(d);
    }
}

static void test_delta_merge_clone_sort(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("delta_merge_clone_sort")};
    static oracle_t o;
    for (long it = 0; it < dl_prop_iters(30); it++) {
        memset(&o, 0, sizeof o);
        uint64_t t1[1] = {1}, t2[1] = {2};
        dl_delta_t *a, *b;
        assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t1, 1, &a, NULL), 0);
        assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t2, 1, &b, NULL), 0);
        for (int k = 0; k < 300; k++) {
            dl_value_t row[AR];
            random_row(&r, row, 200);
            dl_delta_t *x = k % 2 ? a : b;
            int64_t diff = dl_rng_below(&r, 2) ? 1 : -1;
            assert_int_equal(dl_delta_add(x, row, diff, NULL), 0);
            oracle_add(&o, row, diff);
        }
        dl_delta_seal(b);
        dl_delta_t *c;
        assert_int_equal(dl__delta_clone(a, &c), 0);
        assert_int_equal(dl__delta_merge(c, b), 0);
        assert_matches(c, &o);
        assert_int_equal(dl_delta_time(c, NULL)[0], 2);
        assert_int_equal(dl_delta_n_times(c), 2);
        assert_int_equal(dl_delta_sort(c, NULL), 0);
        assert_matches(c, &o);
        for (size_t i = 1; i < dl_delta_len(c); i++)
            assert_true(dl_row_cmp(dl_delta_row(c, i - 1), dl_delta_row(c, i), AR) < 0);
        dl_delta_unref(a);
        dl_delta_unref(b);
        dl_delta_unref(c);
    }
}

static void test_delta_rules(void **state) {
    (void)state;
    uint64_t t[1] = {5};
    dl_delta_t *d;
    dl_error_t err;
    dl_error_clear(&err);
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, 1, t, 0, &d, &err), DL_EINVAL);
    assert_int_equal(dl_delta_new((dl_delta_kind_t)7, 1, t, 1, &d, NULL), DL_EINVAL);
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, 1, t, 1, &d, NULL), 0);
    dl_value_t row[1] = {dl_value_int(1)};
    assert_int_equal(dl_delta_add(d, row, INT64_MAX, NULL), 0);
    assert_int_equal(dl_delta_add(d, row, 1, NULL), DL_ERANGE);
    assert_int_equal(dl_delta_find(d, row), INT64_MAX);
    assert_int_equal(dl_delta_add(d, row, 0, NULL), 0);
    dl_delta_seal(d);
    assert_int_equal(dl_delta_add(d, row, 1, NULL), DL_ESTATE);
    assert_int_equal(dl_delta_set_snapshot(d, true), DL_ESTATE);
    assert_int_equal(dl_delta_sort(d, NULL), DL_ESTATE);
    dl_delta_unref(d);
    /* Arity 0: every row is the empty row. */
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, 0, t, 1, &d, NULL), 0);
    assert_int_equal(dl_delta_add(d, NULL, 2, NULL), 0);
    assert_int_equal(dl_delta_add(d, NULL, 3, NULL), 0);
    assert_int_equal(dl_delta_len(d), 1);
    assert_int_equal(dl_delta_diff(d, 0), 5);
    dl_delta_unref(d);
    /* FRONTIER and END carry no rows. */
    assert_int_equal(dl_delta_new(DL_DELTA_FRONTIER, 3, t, 1, &d, NULL), 0);
    assert_int_equal(dl_delta_add(d, row, 1, NULL), DL_ESTATE);
    assert_int_equal(dl_delta_arity(d), 0);
    dl_delta_unref(d);
    dl_delta_unref(NULL);
}

/* Allocation failure at every point of a growing delta leaves it unchanged and valid. */
static void test_delta_alloc_failure(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("delta_alloc_failure")};
    static oracle_t o;
    int runs_with_failures = 0;
    for (int64_t fail_at = 0; fail_at < 40; fail_at++) {
        memset(&o, 0, sizeof o);
        uint64_t t[1] = {1};
        dl_delta_t *d = NULL;
        dl_alloc_fail_after(fail_at);
        int rc = dl_delta_new(DL_DELTA_DATA, AR, t, 1, &d, NULL);
        if (rc) {
            dl_alloc_fail_after(-1);
            assert_int_equal(rc, DL_ENOMEM);
            continue;
        }
        int failures = 0;
        for (int k = 0; k < 400; k++) {
            dl_value_t row[AR] = {dl_value_int((int64_t)dl_rng_below(&r, 1000)),
                                  dl_value_int(k % 3)};
            rc = dl_delta_add(d, row, 1, NULL);
            if (rc == 0)
                oracle_add(&o, row, 1);
            else {
                assert_int_equal(rc, DL_ENOMEM);
                failures++;
            }
        }
        dl_alloc_fail_after(-1);
        runs_with_failures += failures > 0;
        assert_matches(d, &o);
        dl_delta_unref(d);
        if (failures == 0)
            break; /* every allocation point of this workload has been failed once */
    }
    assert_true(runs_with_failures >= 10);
}

DL_TEST_GROUP(delta, cmocka_unit_test(test_delta_consolidates_like_oracle),
              cmocka_unit_test(test_delta_merge_clone_sort), cmocka_unit_test(test_delta_rules),
              cmocka_unit_test(test_delta_alloc_failure));
