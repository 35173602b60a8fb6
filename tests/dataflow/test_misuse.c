/*
 * test_misuse.c: misuse returns an error code with a message, never a crash: arity
 * mismatches, updates not beyond the frontier, frontiers moving backward, feedback
 * outside an iterate scope, unset variables, bad columns, callback errors; allocation
 * failure at every point of a small workload (dl_alloc_fail_after) returns DL_ENOMEM
 * and leaks nothing. Also the time and antichain primitives.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <deltalog/dataflow.h>
#include <stdio.h>

static void test_misuse_time_and_antichain(void **state) {
    (void)state;
    uint64_t a[3] = {1, 0, 2}, b[3] = {0, 1, 2}, j[3], m[3];
    assert_false(dl_time_le(a, b, 3));
    assert_false(dl_time_le(b, a, 3));
    dl_time_join(a, b, 3, j);
    dl_time_meet(a, b, 3, m);
    assert_true(j[0] == 1 && j[1] == 1 && j[2] == 2);
    assert_true(m[0] == 0 && m[1] == 0 && m[2] == 2);
    assert_true(dl_time_cmp(a, b, 3) > 0);
    dl_antichain_t f;
    dl_antichain_init(&f, 3);
    assert_int_equal(dl_antichain_insert(&f, a), 1);
    assert_int_equal(dl_antichain_insert(&f, b), 1);
    assert_int_equal(dl_antichain_insert(&f, j), 0); /* dominated */
    assert_int_equal(f.n, 2);
    assert_true(dl_antichain_less_equal(&f, j));
    assert_false(dl_antichain_less_equal(&f, m));
    /* advance_by: (0,0,0) advanced by {a, b} is meet(join(t,a), join(t,b)) = (0,0,2). */
    uint64_t t0[3] = {0, 0, 0}, adv[3];
    dl_time_advance_by(t0, &f, adv);
    assert_true(adv[0] == 0 && adv[1] == 0 && adv[2] == 2);
    /* Inserting m removes both (m <= a, m <= b). */
    assert_int_equal(dl_antichain_insert(&f, m), 1);
    assert_int_equal(f.n, 1);
    dl_antichain_fini(&f);
}

static int failing_map(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    (void)ctx;
    (void)row;
    (void)out;
    return DL_ERANGE;
}

static void test_misuse_errors(void **state) {
    (void)state;
    dl_error_t err = {0};
    assert_null(dl_graph_new(0, &err));
    assert_int_equal(err.code, DL_EINVAL);
    dl_error_clear(&err);
    assert_null(dl_graph_new(DL_TIME_MAX_ROOT_DIM + 1, &err));
    dl_graph_free(NULL);
    dl_trace_free(NULL);

    dl_graph_t *g = dl_graph_new(2, NULL);
    dl_scope_t *root = dl_graph_root(g);
    dl_input_t *in = dl_input_new(root, 2, NULL);
    dl_input_t *in1 = dl_input_new(root, 1, NULL);
    dl_value_t row[2] = {dl_value_int(1), dl_value_int(2)};
    uint64_t t00[2] = {0, 0}, t10[2] = {1, 0}, t01[2] = {0, 1}, t11[2] = {1, 1};

#define EXPECT(want, call)                                                                         \
    do {                                                                                           \
        dl_error_clear(&err);                                                                      \
        int rc_ = (call);                                                                          \
        assert_int_equal(rc_, want);                                                               \
        assert_int_equal(err.code, want);                                                          \
        assert_true(err.message[0] != 0);                                                          \
    } while (0)
#define EXPECT_NULL(want, call)                                                                    \
    do {                                                                                           \
        dl_error_clear(&err);                                                                      \
        assert_null(call);                                                                         \
        assert_int_equal(err.code, want);                                                          \
        assert_true(err.message[0] != 0);                                                          \
    } while (0)

    EXPECT(DL_EARITY, dl_input_update(in, row, 1, t00, 1, &err));
    /* A 2-D frontier {(1,0), (0,1)}: (0,0) is behind it, (1,1) beyond. */
    dl_antichain_t f;
    dl_antichain_init(&f, 2);
    assert_int_equal(dl_antichain_insert(&f, t10), 1);
    assert_int_equal(dl_antichain_insert(&f, t01), 1);
    assert_int_equal(dl_input_advance(in, &f, &err), 0);
    EXPECT(DL_ETIME, dl_input_update(in, row, 2, t00, 1, &err));
    assert_int_equal(dl_input_update(in, row, 2, t11, 1, &err), 0);
    assert_int_equal(dl_input_update(in, row, 2, t10, 1, &err), 0);
    /* Backward: {(0,0)} is behind {(1,0),(0,1)}. */
    EXPECT(DL_ETIME, dl_input_advance_to(in, t00, &err));
    dl_antichain_t f1;
    dl_antichain_init(&f1, 1);
    EXPECT(DL_EINVAL, dl_input_advance(in, &f1, &err));

    /* Feedback outside an iterate scope. */
    EXPECT_NULL(DL_ECYCLE, dl_var_new(root, dl_input_coll(in), &err));
    dl_scope_t *s = dl_iterate_begin(root, NULL);
    dl_coll_t *inner = dl_enter(s, dl_input_coll(in), NULL);
    dl_var_t *v = dl_var_new(s, inner, NULL);
    assert_non_null(v);
    EXPECT(DL_ECYCLE, dl_var_set(v, dl_input_coll(in), &err));
    EXPECT_NULL(DL_EINVAL, dl_enter(s, inner, &err));
    EXPECT_NULL(DL_EINVAL, dl_leave(dl_input_coll(in), &err));
    dl_coll_t *mixed[2] = {inner, dl_input_coll(in)};
    EXPECT_NULL(DL_EINVAL, dl_concat(mixed, 2, &err));
    dl_coll_t *ar[2] = {dl_input_coll(in), dl_input_coll(in1)};
    EXPECT_NULL(DL_EARITY, dl_concat(ar, 2, &err));
    EXPECT(DL_ESTATE, dl_graph_run(g, &err)); /* the variable was never set */
    dl_coll_t *proj1 = dl_project(dl_var_coll(v), (const uint32_t[]){0}, 1, NULL);
    EXPECT(DL_EARITY, dl_var_set(v, proj1, &err));
    EXPECT(DL_EINVAL, dl_var_set(v, dl_var_coll(v), &err));
    dl_coll_t *body = dl_distinct(dl_var_coll(v), NULL);
    assert_int_equal(dl_var_set(v, body, NULL), 0);
    EXPECT(DL_ESTATE, dl_var_set(v, body, &err));

    /* Columns. */
    EXPECT_NULL(DL_EARITY, dl_project(dl_input_coll(in), (const uint32_t[]){2}, 1, &err));
    EXPECT_NULL(DL_EARITY, dl_arrange(dl_input_coll(in), (const uint32_t[]){5}, 1, NULL, 0, &err));
    dl_arr_t *a2 = dl_arrange(dl_input_coll(in), (const uint32_t[]){0, 1}, 2, NULL, 0, NULL);
    dl_arr_t *a1 = dl_arrange(dl_input_coll(in), (const uint32_t[]){0}, 1, NULL, 0, NULL);
    assert_ptr_equal(a1, dl_arrange(dl_input_coll(in), (const uint32_t[]){0}, 1, NULL, 0, NULL));
    dl_join_col_t jc[1] = {{DL_JOIN_RIGHT, 3}};
    EXPECT_NULL(DL_EARITY, dl_join(a1, a2, jc, 1, &err));
    EXPECT_NULL(DL_EARITY, dl_join(a1, a1, jc, 1, &err));
    dl_reduce_spec_t bad = {.kind = DL_REDUCE_SUM, .col = 4};
    EXPECT_NULL(DL_EARITY, dl_reduce(a1, &bad, &err));
    dl_reduce_spec_t nofn = {.kind = DL_REDUCE_THRESHOLD};
    EXPECT_NULL(DL_EINVAL, dl_reduce(a1, &nofn, &err));

    /* A callback's error aborts the run and is returned. */
    dl_coll_t *fm = dl_map(dl_input_coll(in), 2, failing_map, NULL, NULL);
    assert_non_null(dl_capture_new(fm, NULL, NULL, NULL));
    EXPECT(DL_ERANGE, dl_graph_run(g, &err));
    dl_graph_free(g);

    /* Closed inputs refuse updates. */
    g = dl_graph_new(1, NULL);
    in = dl_input_new(dl_graph_root(g), 2, NULL);
    assert_int_equal(dl_input_close(in, NULL), 0);
    uint64_t t5[1] = {5};
    EXPECT(DL_ESTATE, dl_input_update(in, row, 2, t5, 1, &err));
    dl_graph_free(g);
    dl_antichain_fini(&f);
    dl_antichain_fini(&f1);
}

/* A small iterate + reduce workload; returns the first error code. */
static int small_workload(void) {
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    if (!g)
        return err.code;
    int rc = 0;
    dl_input_t *e = dl_input_new(dl_graph_root(g), 2, &err);
    dl_input_t *r = e ? dl_input_new(dl_graph_root(g), 1, &err) : NULL;
    dl_arr_t *ea = r ? dl_arrange(dl_input_coll(e), (const uint32_t[]){0}, 1, NULL, 0, &err) : NULL;
    dl_scope_t *s = ea ? dl_iterate_begin(dl_graph_root(g), &err) : NULL;
    dl_coll_t *re = s ? dl_enter(s, dl_input_coll(r), &err) : NULL;
    dl_var_t *v = re ? dl_var_new(s, re, &err) : NULL;
    dl_arr_t *va = v ? dl_arrange(dl_var_coll(v), (const uint32_t[]){0}, 1, NULL, 0, &err) : NULL;
    dl_join_col_t jc[1] = {{DL_JOIN_RIGHT, 0}};
    dl_coll_t *j = va ? dl_join(va, ea, jc, 1, &err) : NULL;
    dl_coll_t *parts[2] = {re, j};
    dl_coll_t *cat = j ? dl_concat(parts, 2, &err) : NULL;
    dl_coll_t *body = cat ? dl_distinct(cat, &err) : NULL;
    if (!body) {
        rc = err.code;
        goto out;
    }
    if ((rc = dl_var_set(v, body, &err)))
        goto out;
    dl_coll_t *lv = dl_leave(body, &err);
    if (!lv || !dl_capture_new(lv, NULL, NULL, &err)) {
        rc = err.code;
        goto out;
    }
    uint64_t t[1] = {0};
    dl_value_t z = dl_value_int(0);
    if ((rc = dl_input_update(r, &z, 1, t, 1, &err)))
        goto out;
    for (int round = 0; round < 3 && !rc; round++) {
        for (int i = 0; i < 12 && !rc; i++) {
            dl_value_t row[2] = {dl_value_int(i % 6), dl_value_int((i * 5 + round) % 6)};
            rc = dl_input_update(e, row, 2, t, round == 2 && i < 4 ? -1 : 1, &err);
        }
        t[0]++;
        if (!rc)
            rc = dl_input_advance_to(e, t, &err);
        if (!rc)
            rc = dl_input_advance_to(r, t, &err);
        if (!rc)
            rc = dl_graph_run(g, &err);
        if (!rc)
            rc = dl_graph_maintain(g, 1000, &err) < 0 ? err.code : 0;
    }
out:
    dl_graph_free(g);
    return rc;
}

static void test_misuse_alloc_failure(void **state) {
    (void)state;
    assert_int_equal(small_workload(), 0);
    int failures = 0;
    for (int64_t n = 0; n < 4000; n++) {
        dl_alloc_stats_t before, after;
        dl_alloc_stats(&before);
        dl_alloc_fail_after(n);
        int rc = small_workload();
        dl_alloc_fail_after(-1);
        dl_alloc_stats(&after);
        assert_int_equal(after.live_bytes, before.live_bytes);
        if (rc == 0)
            break;
        assert_int_equal(rc, DL_ENOMEM);
        failures++;
    }
    assert_true(failures > 50);
}

/* dl_capture_new failing at each of its allocations leaves a graph that still runs and
 * collects (a failure after the node joined the graph once left an orphan capture node
 * that crashed the next run and dl_graph_collect). */
static void test_misuse_capture_new_failure(void **state) {
    (void)state;
    for (int64_t n = 0; n < 12; n++) {
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new(1, &err);
        assert_non_null(g);
        dl_input_t *in = dl_input_new(dl_graph_root(g), 1, &err);
        assert_non_null(in);
        dl_alloc_fail_after(n);
        dl_capture_t *c1 = dl_capture_new(dl_input_coll(in), NULL, NULL, &err);
        dl_alloc_fail_after(-1);
        dl_capture_t *c2 = dl_capture_new(dl_input_coll(in), NULL, NULL, &err);
        assert_non_null(c2);
        uint64_t t[1] = {0};
        dl_value_t v = dl_value_int(7);
        assert_int_equal(dl_input_update(in, &v, 1, t, 1, &err), 0);
        t[0] = 1;
        assert_int_equal(dl_input_advance_to(in, t, &err), 0);
        assert_int_equal(dl_graph_run(g, &err), 0);
        dl_diff_t d;
        assert_int_equal(dl_capture_pop(c2, &d), 1);
        assert_int_equal(d.n, 1);
        assert_int_equal(d.rows[0].as.i, 7);
        if (c1)
            assert_int_equal(dl_capture_pop(c1, &d), 1);
        size_t removed = 0;
        assert_int_equal(dl_graph_collect(g, &removed, &err), 0);
        assert_int_equal(dl_graph_run(g, &err), 0);
        dl_graph_free(g);
    }
}

DL_TEST_GROUP(misuse, cmocka_unit_test(test_misuse_time_and_antichain),
              cmocka_unit_test(test_misuse_capture_new_failure),
              cmocka_unit_test(test_misuse_errors), cmocka_unit_test(test_misuse_alloc_failure));
