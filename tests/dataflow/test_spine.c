/*
 * test_spine.c: the spine and consolidation primitives against plain arrays: random
 * buffers consolidate to the brute-force multiset (mixed value types included); random
 * batch sequences keep the spine invariant (dl__spine_check) and the layer rule, with and
 * without compaction, and hold the same accumulated contents as a naive list; seeks (with
 * and without the sparse key index) find the same positions as a linear scan.
 */
#include "tests/harness/dl_test.h"

#include "dataflow/dataflow.h"

#include <stdio.h>
#include <stdlib.h>

/* A random value of a small domain; mostly ints, sometimes other types. */
static dl_value_t rv(dl_rng_t *r, bool mixed, int dom) {
    if (mixed && dl_rng_below(r, 5) == 0) {
        static const char *strs[] = {"a", "b", "ab", ""};
        dl_value_t v;
        const char *s = strs[dl_rng_below(r, 4)];
        assert_int_equal(dl_value_text(DL_T_STRING, s, strlen(s), &v, NULL), 0);
        return dl_rng_below(r, 2) ? v : dl_value_double((double)dl_rng_below(r, 3) - 1.0);
    }
    return dl_value_int((int64_t)dl_rng_below(r, (uint64_t)dom) - dom / 4);
}

static void test_spine_consolidate_property(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("spine_consolidate_property")};
    long iters = dl_prop_iters(300);
    for (long it = 0; it < iters; it++) {
        size_t arity = dl_rng_below(&r, 3), dim = 1 + dl_rng_below(&r, 3);
        size_t n = dl_rng_below(&r, 2) ? dl_rng_below(&r, 40) : dl_rng_below(&r, 1200);
        bool mixed = dl_rng_below(&r, 3) == 0;
        dl_ubuf_t b, copy;
        dl__batch_ubuf_init(&b, arity, dim);
        dl__batch_ubuf_init(&copy, arity, dim);
        for (size_t i = 0; i < n; i++) {
            dl_value_t row[3];
            uint64_t t[3];
            for (size_t c = 0; c < arity; c++)
                row[c] = rv(&r, mixed, 8);
            for (size_t d = 0; d < dim; d++)
                t[d] = dl_rng_below(&r, 3);
            int64_t diff = (int64_t)dl_rng_below(&r, 5) - 2;
            assert_true(dl__batch_ubuf_push(&b, row, t, diff));
            assert_true(dl__batch_ubuf_push(&copy, row, t, diff));
        }
        assert_true(dl__batch_consolidate(&b));
        assert_true(dl__batch_check(&b));
        /* Every consolidated record's diff is the brute-force sum of its (row, time). */
        size_t covered = 0;
        for (size_t i = 0; i < b.n; i++) {
            int64_t sum = 0;
            for (size_t k = 0; k < copy.n; k++)
                if (dl_row_eq(dl__ub_row(&copy, k), dl__ub_row(&b, i), arity) &&
                    dl_time_cmp(dl__ub_time(&copy, k), dl__ub_time(&b, i), dim) == 0) {
                    sum += *dl__ub_diff(&copy, k);
                    covered++;
                }
            if (sum != *dl__ub_diff(&b, i))
                dl_prop_fail("iteration %ld: record %zu diff %lld, brute force %lld", it, i,
                             (long long)*dl__ub_diff(&b, i), (long long)sum);
        }
        /* And nothing is missing: the (row, time) groups with a nonzero sum are exactly
         * as many as the consolidated records (which are distinct: strictly sorted). */
        size_t groups = 0;
        for (size_t k = 0; k < copy.n; k++) {
            bool first = true;
            int64_t sum = 0;
            for (size_t j = 0; j < copy.n; j++) {
                bool same = dl_row_eq(dl__ub_row(&copy, j), dl__ub_row(&copy, k), arity) &&
                            dl_time_cmp(dl__ub_time(&copy, j), dl__ub_time(&copy, k), dim) == 0;
                if (same && j < k) {
                    first = false;
                    break;
                }
                if (same)
                    sum += *dl__ub_diff(&copy, j);
            }
            if (first && sum != 0)
                groups++;
        }
        assert_int_equal(groups, b.n);
        (void)covered;
        dl__batch_ubuf_fini(&b);
        dl__batch_ubuf_fini(&copy);
    }
}

/* Uniform batches (one time, diffs +1) are what compaction produces in practice, and what
 * merges store narrow. */
static dl_batch_t *random_sorted_batch(dl_rng_t *r, size_t n, size_t dim, int dom, bool mixed,
                                       bool uniform, int64_t base, dl_ubuf_t *log) {
    dl_ubuf_t u;
    dl__batch_ubuf_init(&u, 2, dim);
    uint64_t t0[2] = {dl_rng_below(r, 4), dl_rng_below(r, 4)};
    for (size_t i = 0; i < n; i++) {
        dl_value_t row[2] = {rv(r, mixed, dom), dl_value_int((int64_t)dl_rng_below(r, 3))};
        if (row[0].type == DL_T_INT) /* ascending keys: each batch after the last */
            row[0].as.i += base;
        uint64_t t[2] = {dl_rng_below(r, 4), dl_rng_below(r, 4)};
        int64_t d = dl_rng_below(r, 2) ? 1 : -1;
        if (uniform) {
            memcpy(t, t0, sizeof t);
            d = 1;
        }
        assert_true(dl__batch_ubuf_push(&u, row, t, d));
        assert_true(dl__batch_ubuf_push(log, row, t, d));
    }
    assert_true(dl__batch_consolidate(&u));
    dl_batch_t *b = dl__batch_new(&u, true);
    assert_non_null(b);
    return b;
}

/* Accumulated count of (row) at time t: in the spine vs in the log. */
static int64_t acc_spine(const dl_spine_t *s, const dl_value_t *row, const uint64_t *t) {
    int64_t c = 0;
    for (size_t i = 0; i < s->n; i++) {
        const dl_ubuf_t *u = &s->batches[i]->u;
        for (size_t k = 0; k < u->n; k++)
            if (dl_row_eq(dl__ub_row(u, k), row, 2) && dl_time_le(dl__ub_time(u, k), t, s->dim))
                c += *dl__ub_diff(u, k);
    }
    return c;
}

static void test_spine_layers_compaction_and_seek(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("spine_layers_compaction_and_seek")};
    long iters = dl_prop_iters(40);
    for (long it = 0; it < iters; it++) {
        size_t dim = 1 + dl_rng_below(&r, 2);
        bool mixed = dl_rng_below(&r, 4) == 0;
        int dom = dl_rng_below(&r, 2) ? 50 : 5000;
        bool uniform = dl_rng_below(&r, 2) == 0;
        bool ascending = dl_rng_below(&r, 3) == 0; /* the append path of merges */
        dl_spine_t s;
        dl__spine_init(&s, 1, 1, dim);
        s.narrow_min = 64; /* the layout on small data */
        dl_ubuf_t log;
        dl__batch_ubuf_init(&log, 2, dim);
        dl_antichain_t since;
        dl_antichain_init(&since, dim);
        uint64_t zero[2] = {0, 0};
        assert_int_equal(dl_antichain_insert(&since, zero), 1);
        int rounds = 1 + (int)dl_rng_below(&r, 12);
        for (int k = 0; k < rounds; k++) {
            size_t n = dl_rng_below(&r, 3) ? dl_rng_below(&r, 100) : 200 + dl_rng_below(&r, 4000);
            assert_int_equal(
                dl__spine_insert(&s, random_sorted_batch(&r, n, dim, dom, mixed, uniform,
                                                         ascending ? (int64_t)k * dom : 0, &log)),
                0);
            assert_true(dl__spine_check(&s));
            for (size_t i = 0; i + 1 < s.n; i++)
                assert_true(s.batches[i]->u.n > 2 * s.batches[i + 1]->u.n);
            if (dl_rng_below(&r, 2)) {
                /* Advance since (monotonically) and maybe maintain. */
                uint64_t t[2];
                memcpy(t, since.elems, sizeof(uint64_t) * dim);
                t[dl_rng_below(&r, dim)]++;
                dl_antichain_clear(&since);
                assert_int_equal(dl_antichain_insert(&since, t), 1);
                assert_int_equal(dl__spine_set_since(&s, &since), 0);
                size_t used = 0;
                while (dl_rng_below(&r, 2) && dl__spine_maintain(&s, &used) == 1)
                    assert_true(dl__spine_check(&s));
            }
        }
        /* Accumulations at times beyond since agree with the log. */
        for (int q = 0; q < 30 && log.n; q++) {
            size_t k = dl_rng_below(&r, log.n);
            uint64_t t[2] = {since.elems[0] + dl_rng_below(&r, 3),
                             dim > 1 ? since.elems[1] + dl_rng_below(&r, 3) : 0};
            int64_t want = 0;
            for (size_t j = 0; j < log.n; j++)
                if (dl_row_eq(dl__ub_row(&log, j), dl__ub_row(&log, k), 2) &&
                    dl_time_le(dl__ub_time(&log, j), t, dim))
                    want += *dl__ub_diff(&log, j);
            assert_int_equal(acc_spine(&s, dl__ub_row(&log, k), t), want);
        }
        /* Seeks in increasing key order agree with a linear scan, index or not. */
        for (size_t bi = 0; bi < s.n; bi++) {
            const dl_batch_t *b = s.batches[bi];
            size_t pos = 0;
            for (int q = 0; q < 60; q++) {
                dl_value_t key = dl_value_int((int64_t)(q * dom / 60) - dom / 4);
                if (mixed && q % 10 == 9)
                    key = dl_value_double(0.5);
                size_t lin = 0;
                while (lin < b->u.n && dl__batch_rcmp(dl__ub_row(&b->u, lin), &key, 1) < 0)
                    lin++;
                if (lin < pos)
                    continue; /* keys must be visited in increasing order */
                /* The prefetch's hint is a valid start: nothing before it is >= key. */
                size_t hint = dl__spine_prefetch(b, &key, pos);
                if (hint < pos || hint > lin)
                    dl_prop_fail("iteration %ld batch %zu: hint %zu, from %zu, linear %zu", it, bi,
                                 hint, pos, lin);
                size_t got = dl__spine_seek(b, 1, &key, hint);
                if (got != lin)
                    dl_prop_fail("iteration %ld batch %zu: seek %zu, linear %zu", it, bi, got, lin);
                pos = got;
            }
        }
        dl_antichain_fini(&since);
        dl__batch_ubuf_fini(&log);
        dl__spine_fini(&s);
    }
}

/* Keys [from, to) step `step` as (key, 0) rows at time t with diff d: a sorted batch. */
static dl_batch_t *key_range(int64_t from, int64_t to, int64_t step, uint64_t t, int64_t d) {
    dl_ubuf_t u;
    dl__batch_ubuf_init(&u, 2, 1);
    for (int64_t k = from; k < to; k += step) {
        dl_value_t row[2] = {dl_value_int(k), dl_value_int(0)};
        assert_true(dl__batch_ubuf_push(&u, row, &t, d));
    }
    dl_batch_t *b = dl__batch_new(&u, true);
    assert_non_null(b);
    return b;
}

static void set_since(dl_spine_t *s, uint64_t t) {
    dl_antichain_t f;
    dl_antichain_init(&f, 1);
    assert_int_equal(dl_antichain_insert(&f, &t), 1);
    assert_int_equal(dl__spine_set_since(s, &f), 0);
    dl_antichain_fini(&f);
}

/* Live keys of the spine at a late time: key -> accumulated count must be 0 or 1 and the
 * set must be exactly [from, to) step `step` plus [from2, to2). */
static void expect_keys(const dl_spine_t *s, int64_t from, int64_t to, int64_t step, int64_t from2,
                        int64_t to2) {
    uint64_t late = 100;
    size_t live = 0;
    for (int64_t k = 0; k < 10000; k++) {
        dl_value_t row[2] = {dl_value_int(k), dl_value_int(0)};
        int64_t c = acc_spine(s, row, &late);
        bool want = (k >= from && k < to && (k - from) % step == 0) || (k >= from2 && k < to2);
        assert_int_equal(c, want ? 1 : 0);
        live += (size_t)c;
    }
    assert_int_equal(s->records, live);
}

/* The narrow layout through every kind of merge, deterministically: a general merge that
 * compacts to one time and diff narrows its output; an append to a narrow batch keeps it
 * narrow (shared time advanced in O(1)); a general merge into a narrow batch widens it,
 * cancels, and narrows again. */
static void test_spine_narrow_merges(void **state) {
    (void)state;
    dl_spine_t s;
    dl__spine_init(&s, 1, 1, 1);
    s.narrow_min = 2048; /* the layout on small data */
    assert_int_equal(dl__spine_insert(&s, key_range(0, 3000, 1, 0, 1)), 0);
    assert_int_equal(dl__spine_insert(&s, key_range(3000, 6000, 1, 0, 1)), 0); /* append */
    assert_int_equal(s.n, 1);
    assert_int_equal(s.batches[0]->u.narrow, 0); /* appends do not narrow */
    set_since(&s, 1);
    assert_int_equal(dl__spine_insert(&s, key_range(0, 6000, 2, 1, -1)), 0); /* general */
    assert_true(dl__spine_check(&s));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.batches[0]->u.narrow, DL_UB_SHARED_TIME | DL_UB_SHARED_DIFF);
    expect_keys(&s, 1, 6000, 2, 0, 0);
    assert_int_equal(dl__spine_insert(&s, key_range(6000, 9000, 1, 1, 1)), 0); /* append */
    assert_true(dl__spine_check(&s));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.batches[0]->u.narrow, DL_UB_SHARED_TIME | DL_UB_SHARED_DIFF);
    expect_keys(&s, 1, 6000, 2, 6000, 9000);
    set_since(&s, 2);
    assert_int_equal(dl__spine_insert(&s, key_range(1, 6000, 2, 2, -1)), 0); /* widen */
    assert_true(dl__spine_check(&s));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.batches[0]->u.narrow, DL_UB_SHARED_TIME | DL_UB_SHARED_DIFF);
    assert_int_equal(*dl__ub_time(&s.batches[0]->u, 0), 2);
    expect_keys(&s, 0, 0, 1, 6000, 9000);
    dl__spine_fini(&s);
}

/* Narrowing stores a shared time and/or diff once; the accessors read the same records,
 * widening gives back the original bytes, and appending to a narrow buffer widens it. */
static void test_spine_narrow_round_trip(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("spine_narrow_round_trip")};
    long iters = dl_prop_iters(200);
    int kinds[4] = {0};
    for (long it = 0; it < iters; it++) {
        size_t arity = dl_rng_below(&r, 3), dim = dl_rng_below(&r, 3);
        size_t n = dl_rng_below(&r, 2) ? dl_rng_below(&r, 70) : 2000 + dl_rng_below(&r, 500);
        bool same_t = dl_rng_below(&r, 2), same_d = dl_rng_below(&r, 2);
        dl_ubuf_t a, orig;
        dl__batch_ubuf_init(&a, arity, dim);
        dl__batch_ubuf_init(&orig, arity, dim);
        uint64_t t0[2] = {dl_rng_below(&r, 5), dl_rng_below(&r, 5)};
        for (size_t i = 0; i < n; i++) {
            dl_value_t row[2] = {rv(&r, true, 100), rv(&r, false, 100)};
            uint64_t t[2] = {dl_rng_below(&r, 5), dl_rng_below(&r, 5)};
            int64_t d = same_d ? -3 : (int64_t)dl_rng_below(&r, 9) - 4;
            assert_true(dl__batch_ubuf_push(&a, row, same_t ? t0 : t, d));
            assert_true(dl__batch_ubuf_push(&orig, row, same_t ? t0 : t, d));
        }
        dl__batch_narrow(&a, 64);
        kinds[a.narrow]++;
        assert_int_equal(a.n, n);
        for (size_t i = 0; i < n; i++) {
            assert_true(dl_row_eq(dl__ub_row(&a, i), dl__ub_row(&orig, i), arity));
            assert_memory_equal(dl__ub_time(&a, i), dl__ub_time(&orig, i), dim * 8);
            assert_int_equal(*dl__ub_diff(&a, i), *dl__ub_diff(&orig, i));
        }
        if (dl_rng_below(&r, 2)) {
            dl_value_t row[2] = {dl_value_int(7), dl_value_int(8)};
            uint64_t t[2] = {9, 9};
            assert_true(dl__batch_ubuf_push(&a, row, t, 5));
            assert_true(dl__batch_ubuf_push(&orig, row, t, 5));
            assert_int_equal(a.narrow, 0);
        } else {
            assert_true(dl__batch_widen(&a, a.n));
        }
        assert_int_equal(a.stride, orig.stride);
        assert_int_equal(a.n, orig.n);
        if (orig.n)
            assert_memory_equal(a.data, orig.data, orig.n * orig.stride);
        dl__batch_ubuf_fini(&a);
        dl__batch_ubuf_fini(&orig);
    }
    if (iters >= 200) /* every layout was exercised */
        for (int k = 0; k < 4; k++)
            assert_true(kinds[k] > 0);
}

DL_TEST_GROUP(spine, cmocka_unit_test(test_spine_consolidate_property),
              cmocka_unit_test(test_spine_layers_compaction_and_seek),
              cmocka_unit_test(test_spine_narrow_round_trip),
              cmocka_unit_test(test_spine_narrow_merges));
