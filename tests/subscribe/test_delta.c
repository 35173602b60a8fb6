/*
 * test_delta.c: dl_delta_t, the consolidating container, against a naive oracle (a plain
 * array of (row, count) searched linearly): random additions and cancellations, merge,
 * clone, sort, memory give-back, fault injection and the mutation rules.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <stdio.h>
#include <stdlib.h>
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

/* ---- unindexed deltas (dl__delta_add_rows) and the sorted-runs accumulator ---------------- */

/* Rows over mixed types: nil, booleans, ints, refs, doubles (with -0.0 and +0.0, which are
 * distinct), strings; column 1 an int. */
static void mixed_row(dl_rng_t *r, dl_value_t *row, uint64_t universe) {
    uint64_t k = dl_rng_below(r, universe);
    switch (k % 6) {
        case 0:
            row[0] = dl_value_nil();
            break;
        case 1:
            row[0] = dl_value_bool(k % 12 == 1);
            break;
        case 2:
            row[0] = dl_value_int((int64_t)(k / 6) - 20);
            break;
        case 3:
            row[0] = dl_value_ref((int64_t)(k / 6));
            break;
        case 4: {
            static const double ds[] = {-0.0, 0.0, 1.5, -2.25, 1e300};
            row[0] = dl_value_double(ds[(k / 6) % 5]);
            break;
        }
        default: {
            char buf[16];
            int n = snprintf(buf, sizeof buf, "k%llu", (unsigned long long)(k / 6 % 50));
            assert_int_equal(dl_value_text(DL_T_STRING, buf, (size_t)n, &row[0], NULL), 0);
        }
    }
    row[1] = dl_value_int((int64_t)(k % 7));
}

static int row_cmp_ar(const void *a, const void *b) { return dl_row_cmp(a, b, AR); }

/* n distinct rows (strictly ascending in dl_row_cmp's order) with nonzero diffs. */
static size_t sorted_rows(dl_rng_t *r, dl_value_t (*rows)[AR], int64_t *diffs, size_t n,
                          uint64_t universe) {
    for (size_t i = 0; i < n; i++)
        mixed_row(r, rows[i], universe);
    qsort(rows, n, sizeof rows[0], row_cmp_ar);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || !dl_row_eq(rows[m - 1], rows[i], AR))
            memcpy(rows[m++], rows[i], sizeof rows[0]);
    for (size_t i = 0; i < m; i++)
        diffs[i] = dl_rng_below(r, 2) ? 1 + (int64_t)dl_rng_below(r, 3) : -1;
    return m;
}

/* The same pairs added one by one (dl_delta_add): an indexed delta, for comparisons. */
static dl_delta_t *indexed_copy(dl_value_t (*rows)[AR], const int64_t *diffs, size_t n) {
    uint64_t t[1] = {1};
    dl_delta_t *d;
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t, 1, &d, NULL), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(dl_delta_add(d, rows[i], diffs[i], NULL), 0);
    return d;
}

/* dl__delta_add_rows: sorted distinct rows are taken without an index (fewer bytes than the
 * same pairs added one by one), anything else falls back to consolidation; either way the
 * delta equals the oracle, and later additions, merges, clones and sorts keep it equal. */
static void test_delta_add_rows_like_oracle(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("delta_add_rows_like_oracle")};
    static oracle_t o;
    static dl_value_t rows[2048][AR];
    static int64_t diffs[2048];
    int unindexed_seen = 0, fallback_seen = 0;
    for (long it = 0; it < dl_prop_iters(60); it++) {
        memset(&o, 0, sizeof o);
        uint64_t universe = 1 + dl_rng_below(&r, 3000);
        size_t n = sorted_rows(&r, rows, diffs, 1 + dl_rng_below(&r, 1500), universe);
        int shape = (int)dl_rng_below(&r, 4); /* 0, 1: sorted; 2: one swap; 3: a repeat */
        if (shape == 2 && n >= 2) {
            size_t i = dl_rng_below(&r, n - 1);
            dl_value_t tmp[AR];
            memcpy(tmp, rows[i], sizeof tmp);
            memcpy(rows[i], rows[i + 1], sizeof tmp);
            memcpy(rows[i + 1], tmp, sizeof tmp);
        } else if (shape == 3 && n >= 2) {
            size_t i = 1 + dl_rng_below(&r, n - 1);
            memcpy(rows[i], rows[i - 1], sizeof rows[0]);
        }
        if (n >= 3 && dl_rng_below(&r, 3) == 0)
            diffs[dl_rng_below(&r, n)] = 0; /* skipped */
        for (size_t i = 0; i < n; i++)
            oracle_add(&o, rows[i], diffs[i]);
        uint64_t t[1] = {3};
        dl_delta_t *d;
        assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t, 1, &d, NULL), 0);
        assert_int_equal(dl__delta_add_rows(d, &rows[0][0], diffs, n, NULL), 0);
        assert_matches(d, &o);
        dl_delta_t *ix = indexed_copy(rows, diffs, n);
        if (shape <= 1 && dl_delta_len(d) > 0) {
            assert_true(dl_delta_bytes(d) < dl_delta_bytes(ix)); /* no index */
            for (size_t i = 1; i < dl_delta_len(d); i++)
                assert_true(dl_row_cmp(dl_delta_row(d, i - 1), dl_delta_row(d, i), AR) < 0);
            unindexed_seen++;
        } else if (shape >= 2 && n >= 2) {
            fallback_seen++;
        }
        /* clones of both kinds */
        dl_delta_t *c1, *c2;
        assert_int_equal(dl__delta_clone(d, &c1), 0);
        assert_int_equal(dl__delta_clone(ix, &c2), 0);
        assert_matches(c1, &o);
        assert_matches(c2, &o);
        /* merge a sealed one into a copy, then keep adding by hand: the index is built */
        dl_delta_seal(d);
        assert_int_equal(dl__delta_merge(c2, d), 0);
        for (size_t i = 0; i < n; i++)
            oracle_add(&o, rows[i], diffs[i]);
        assert_matches(c2, &o);
        for (int k = 0; k < 200; k++) {
            dl_value_t row[AR];
            mixed_row(&r, row, universe);
            int64_t df = (int64_t)dl_rng_below(&r, 5) - 2;
            assert_int_equal(dl_delta_add(c1, row, df, NULL), 0);
            assert_int_equal(dl_delta_add(c2, row, df, NULL), 0);
            oracle_add(&o, row, df);
        }
        assert_matches(c2, &o);
        assert_int_equal(dl__delta_merge(c1, d), 0); /* c1 = d + additions + d */
        assert_matches(c1, &o);
        assert_int_equal(dl_delta_sort(c1, NULL), 0);
        assert_matches(c1, &o);
        dl_delta_unref(d);
        dl_delta_unref(ix);
        dl_delta_unref(c1);
        dl_delta_unref(c2);
    }
    assert_true(unindexed_seen > 0 && fallback_seen > 0);
    /* Arity 0: one pair at most, whatever is given. */
    uint64_t t[1] = {1};
    dl_delta_t *d;
    int64_t df[3] = {2, 0, 3};
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, 0, t, 1, &d, NULL), 0);
    assert_int_equal(dl__delta_add_rows(d, NULL, df, 3, NULL), 0);
    assert_int_equal(dl_delta_len(d), 1);
    assert_int_equal(dl_delta_find(d, NULL), 5);
    assert_true(dl__delta_check(d));
    dl_delta_seal(d);
    assert_int_equal(dl__delta_add_rows(d, NULL, df, 3, NULL), DL_ESTATE);
    dl_delta_unref(d);
}

/* dl__dacc_t: a stream of deltas (sorted ones, unsorted ones, cancellations) sums like
 * the oracle at every snapshot, which is sorted and carries the latest time and the
 * n_times sum; sorted deltas are kept by reference (sealed), and the runs stay few. */
static void test_dacc_sums_like_oracle(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("dacc_sums_like_oracle")};
    static oracle_t o;
    static dl_value_t rows[512][AR];
    static int64_t diffs[512];
    int big_seen = 0;
    for (long it = 0; it < dl_prop_iters(20); it++) {
        memset(&o, 0, sizeof o);
        uint64_t t0[1] = {7};
        dl__dacc_t a;
        dl__dacc_init(&a, AR, t0, 1);
        bool small = it % 2; /* small thresholds: the hashed bottom and its folds */
        if (small) {
            a.big_rows = 1 + dl_rng_below(&r, 300);
            a.fold_rows = 1 + dl_rng_below(&r, 100);
        }
        uint64_t universe = 1 + dl_rng_below(&r, 2000), n_times = 0, tx = 7;
        size_t added_rows = 0;
        long steps = 1 + (long)dl_rng_below(&r, 120);
        for (long k = 0; k < steps; k++) {
            uint64_t t[1] = {++tx};
            dl_delta_t *d;
            assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t, 1, &d, NULL), 0);
            size_t n = sorted_rows(&r, rows, diffs, dl_rng_below(&r, 400), universe);
            bool by_hand = dl_rng_below(&r, 3) == 0;
            if (by_hand) {
                /* cancel some of what is accumulated (as a retraction would) */
                for (size_t i = 0; i < o.n && n < 512; i++)
                    if (o.cnt[i] && dl_rng_below(&r, 4) == 0) {
                        memcpy(rows[n], o.rows[i], sizeof rows[0]);
                        diffs[n++] = -o.cnt[i];
                    }
                for (size_t i = 0; i < n; i++)
                    assert_int_equal(dl_delta_add(d, rows[i], diffs[i], NULL), 0);
            } else {
                assert_int_equal(dl__delta_add_rows(d, &rows[0][0], diffs, n, NULL), 0);
            }
            for (size_t i = 0; i < dl_delta_len(d); i++)
                oracle_add(&o, dl_delta_row(d, i), dl_delta_diff(d, i));
            added_rows += dl_delta_len(d);
            n_times += dl_delta_n_times(d);
            assert_int_equal(dl__dacc_add(&a, d), 0);
            dl_value_t probe[AR] = {dl_value_int(1), dl_value_int(1)};
            if (dl_delta_len(d) && !by_hand) /* sorted: kept by reference, hence sealed */
                assert_int_equal(dl_delta_add(d, probe, 1, NULL), DL_ESTATE);
            dl_delta_unref(d);
            size_t bound = 2, top = 0;
            for (size_t x = added_rows; x > 1; x /= 2)
                bound++;
            assert_true(a.n <= bound);
            for (size_t i = 0; i < a.n; i++)
                top += dl_delta_len(a.runs[i]);
            if (a.big)
                assert_true(small && top < a.fold_rows && dl__delta_check(a.big));
            else if (a.n)
                assert_true(dl_delta_len(a.runs[0]) <= a.big_rows);
            if (dl_rng_below(&r, 10) == 0 || k == steps - 1) {
                dl_delta_t *s;
                assert_int_equal(dl__dacc_snapshot(&a, &s), 0);
                assert_matches(s, &o);
                for (size_t i = 1; i < dl_delta_len(s) && !a.big; i++)
                    assert_true(dl_row_cmp(dl_delta_row(s, i - 1), dl_delta_row(s, i), AR) < 0);
                assert_int_equal(dl_delta_time(s, NULL)[0], tx);
                assert_int_equal(dl_delta_n_times(s), n_times);
                assert_true(a.big ? a.n == 0 : a.n <= 1);
                big_seen += a.big != NULL;
                dl_delta_unref(s);
            }
        }
        dl__dacc_fini(&a);
    }
    assert_true(big_seen > 0);
    /* Mismatched arity is refused. */
    uint64_t t[1] = {1};
    dl__dacc_t a;
    dl__dacc_init(&a, AR, t, 1);
    dl_delta_t *d;
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, 1, t, 1, &d, NULL), 0);
    assert_int_equal(dl__dacc_add(&a, d), DL_EINVAL);
    dl_delta_unref(d);
    dl__dacc_fini(&a);
}

static bool equals_oracle(const dl_delta_t *d, const oracle_t *o) {
    if (dl_delta_len(d) != oracle_nonzero(o))
        return false;
    for (size_t i = 0; i < o->n; i++)
        if (dl_delta_find(d, o->rows[i]) != o->cnt[i])
            return false;
    return true;
}

/* Allocation failures inside dl__dacc_add leave a valid accumulator whose sum includes the
 * failed delta or not (the callers fail their source on any error). */
static void test_dacc_alloc_failure(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("dacc_alloc_failure")};
    static oracle_t with, without;
    static dl_value_t rows[256][AR];
    static int64_t diffs[256];
    int failures = 0;
    for (int mode = 0; mode < 2; mode++)
        for (int64_t fail_at = 0; fail_at < 60; fail_at++) {
            memset(&with, 0, sizeof with);
            uint64_t t[1] = {1};
            dl__dacc_t a;
            dl__dacc_init(&a, AR, t, 1);
            if (mode) { /* the hashed bottom from the second delta on, folding the last one */
                a.big_rows = 100;
                a.fold_rows = 1;
            }
            bool failed = false;
            for (int k = 0; k < 13 && !failed; k++) {
                dl_delta_t *d;
                assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t, 1, &d, NULL), 0);
                size_t n = sorted_rows(&r, rows, diffs, 1 + dl_rng_below(&r, 200), 400);
                if (k % 2)
                    assert_int_equal(dl__delta_add_rows(d, &rows[0][0], diffs, n, NULL), 0);
                else /* by hand, in reverse: not sorted, so it enters as a sorted copy */
                    for (size_t i = n; i-- > 0;)
                        assert_int_equal(dl_delta_add(d, rows[i], diffs[i], NULL), 0);
                memcpy(&without, &with, sizeof with);
                for (size_t i = 0; i < dl_delta_len(d); i++)
                    oracle_add(&with, dl_delta_row(d, i), dl_delta_diff(d, i));
                if (k == 12) /* unsorted (k even), over the runs of the first twelve */
                    dl_alloc_fail_after(fail_at);
                int rc = dl__dacc_add(&a, d);
                dl_alloc_fail_after(-1);
                if (rc) {
                    assert_int_equal(rc, DL_ENOMEM);
                    failed = true;
                    failures++;
                }
                dl_delta_unref(d);
            }
            dl_delta_t *s;
            assert_int_equal(dl__dacc_snapshot(&a, &s), 0);
            assert_true(dl__delta_check(s));
            bool is_with = equals_oracle(s, &with);
            assert_true(is_with || (failed && equals_oracle(s, &without)));
            dl_delta_unref(s);
            dl__dacc_fini(&a);
            if (!failed)
                break;
        }
    assert_true(failures >= 2);
}

DL_TEST_GROUP(delta, cmocka_unit_test(test_delta_consolidates_like_oracle),
              cmocka_unit_test(test_delta_merge_clone_sort), cmocka_unit_test(test_delta_rules),
              cmocka_unit_test(test_delta_alloc_failure),
              cmocka_unit_test(test_delta_add_rows_like_oracle),
              cmocka_unit_test(test_dacc_sums_like_oracle),
              cmocka_unit_test(test_dacc_alloc_failure));
