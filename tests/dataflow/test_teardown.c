/*
 * test_teardown.c: subgraph teardown (dl_capture_release, dl_graph_collect) and sharing
 * of arrangements between subgraphs added to a running graph (docs/dataflow.md
 * "Teardown"): a second consumer of an existing arrangement does not re-index it; releasing
 * a consumer frees its operators and the arrangements only it used while the other keeps
 * producing correct results (checked against a naive count); releasing everything and
 * closing the input returns the graph to its empty allocation (dl_alloc_stats).
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <deltalog/dataflow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t K0[1] = {0}, V1[1] = {1}, K1[1] = {1}, V0[1] = {0};

#define NK 13
#define NV 7

/* Naive model: multiset of [k v] rows as counts. */
typedef struct model {
    int64_t c[NK][NV];
} model_t;

typedef struct acc {
    int64_t c[NK][NV]; /* for the by-value count: c[v][0] = count of v */
} acc_t;

static int on_count_v(void *ctx, const dl_diff_t *d) {
    acc_t *a = ctx;
    for (size_t i = 0; i < d->n; i++) {
        const dl_value_t *r = d->rows + i * d->arity; /* [v count] */
        int64_t v = r[0].as.i, cnt = r[1].as.i;
        a->c[v][0] += d->diffs[i] > 0 ? cnt : -cnt;
    }
    return 0;
}

static int on_pairs(void *ctx, const dl_diff_t *d) {
    int64_t *n = ctx;
    for (size_t i = 0; i < d->n; i++)
        *n += d->diffs[i];
    return 0;
}

static void feed(dl_input_t *in, dl_rng_t *r, model_t *m, uint64_t t, int n) {
    dl_error_t err = {0};
    uint64_t tt[1] = {t};
    for (int i = 0; i < n; i++) {
        int k = (int)dl_rng_below(r, NK), v = (int)dl_rng_below(r, NV);
        int64_t d = (m->c[k][v] > 0 && dl_rng_below(r, 3) == 0) ? -1 : 1;
        dl_value_t row[2] = {dl_value_int(k), dl_value_int(v)};
        assert_int_equal(dl_input_update(in, row, 2, tt, d, &err), 0);
        m->c[k][v] += d;
    }
    uint64_t nx[1] = {t + 1};
    assert_int_equal(dl_input_advance_to(in, nx, &err), 0);
}

static void test_teardown_shared_and_returned(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("teardown_shared_and_returned")};
    dl_error_t err = {0};
    dl_alloc_stats_t a0, a1;
    dl_alloc_stats(&a0);
    dl_graph_t *g = dl_graph_new(1, &err);
    assert_non_null(g);
    dl_alloc_stats(&a1); /* baseline: the empty graph */
    (void)a0;
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    dl_arr_t *A = dl_arrange(dl_input_coll(in), K0, 1, V1, 1, &err);
    assert_non_null(A);
    model_t m;
    memset(&m, 0, sizeof m);
    uint64_t t = 1;
    feed(in, &r, &m, t++, 500);
    assert_int_equal(dl_graph_run(g, &err), 0);
    dl_graph_stats_t s0, s1, s2;
    dl_graph_stats(g, &s0);

    /* Consumer 1 (added later): pairs of rows with the same key (a self join of A). The
     * arrangement of A's own collection by its key is A itself: no re-indexing. */
    dl_arr_t *A2 = dl_arrange(dl_arr_coll(A), K0, 1, V1, 1, &err);
    assert_ptr_equal(A2, A);
    dl_join_col_t jc[2] = {{DL_JOIN_LEFT, 0}, {DL_JOIN_RIGHT, 0}};
    dl_coll_t *pairs = dl_join(A, A2, jc, 2, &err);
    int64_t n_pairs = 0;
    dl_capture_t *c1 = dl_capture_new(pairs, on_pairs, &n_pairs, &err);
    assert_non_null(c1);
    assert_int_equal(dl_graph_run(g, &err), 0);
    dl_graph_stats(g, &s1);
    assert_int_equal(s1.arranged_updates, s0.arranged_updates); /* nothing re-indexed */

    /* Consumer 2: count by value (a new arrangement by column 1, then a reduce). */
    dl_arr_t *Av = dl_arrange(dl_arr_coll(A), K1, 1, V0, 1, &err);
    dl_reduce_spec_t spec = {.kind = DL_REDUCE_COUNT};
    dl_arr_t *cnt = dl_reduce(Av, &spec, &err);
    acc_t acc;
    memset(&acc, 0, sizeof acc);
    dl_capture_t *c2 = dl_capture_new(dl_arr_coll(cnt), on_count_v, &acc, &err);
    assert_non_null(c2);
    assert_int_equal(dl_graph_run(g, &err), 0);
    dl_graph_stats(g, &s2);
    assert_true(s2.arranged_updates > s1.arranged_updates);

    for (int round = 0; round < 6; round++) {
        feed(in, &r, &m, t++, 40);
        assert_int_equal(dl_graph_run(g, &err), 0);
        if (round == 2) {
            /* Release consumer 1: its join goes, A stays (consumer 2 reads it). */
            size_t before = s2.n_ops, removed = 0;
            dl_graph_stats(g, &s2);
            before = s2.n_ops;
            dl_capture_release(c1);
            assert_int_equal(dl_graph_collect(g, &removed, &err), 0);
            dl_graph_stats(g, &s2);
            assert_int_equal(removed, 2); /* the join and its capture */
            assert_int_equal(s2.n_ops, before - 2);
        }
        int64_t want_pairs = 0;
        for (int v = 0; v < NV; v++) {
            int64_t cv = 0;
            for (int k = 0; k < NK; k++)
                cv += m.c[k][v];
            if (acc.c[v][0] != cv)
                dl_prop_fail("round %d: count of value %d is %lld, want %lld", round, v,
                             (long long)acc.c[v][0], (long long)cv);
        }
        for (int k = 0; k < NK; k++) {
            int64_t ck = 0;
            for (int v = 0; v < NV; v++)
                ck += m.c[k][v];
            want_pairs += ck * ck;
        }
        if (round < 2 && n_pairs != want_pairs)
            dl_prop_fail("round %d: %lld pairs, want %lld", round, (long long)n_pairs,
                         (long long)want_pairs);
    }
    /* Release consumer 2: its arrangements, and A (nothing reads it), go; the open input
     * stays. Closing the input lets it go too: the graph is empty again. */
    dl_capture_release(c2);
    size_t removed = 0;
    assert_int_equal(dl_graph_collect(g, &removed, &err), 0);
    dl_graph_stats(g, &s2);
    assert_int_equal(s2.n_ops, 1);
    assert_int_equal(s2.n_arrangements, 0);
    assert_int_equal(s2.arranged_updates, 0);
    assert_int_equal(dl_input_close(in, &err), 0);
    assert_int_equal(dl_graph_collect(g, &removed, &err), 0);
    assert_int_equal(removed, 1);
    dl_alloc_stats_t a2;
    dl_alloc_stats(&a2);
    assert_int_equal(a2.live_bytes, a1.live_bytes);
    assert_int_equal(a2.live_blocks, a1.live_blocks);
    dl_graph_free(g);
}

/* Iterate scopes: a released loop (its feedback cycle included) is collected whole. */
static void test_teardown_iterate(void **state) {
    (void)state;
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_alloc_stats_t a1, a2;
    dl_alloc_stats(&a1);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    dl_coll_t *edges = dl_input_coll(in);
    uint64_t t0[1] = {0};
    for (int i = 0; i < 20; i++) {
        dl_value_t row[2] = {dl_value_int(i), dl_value_int(i + 1)};
        assert_int_equal(dl_input_update(in, row, 2, t0, 1, &err), 0);
    }
    /* reach(x, y) :- edge(x, y); reach(x, z) :- reach(x, y), edge(y, z) */
    dl_scope_t *s = dl_iterate_begin(dl_graph_root(g), &err);
    dl_coll_t *e_in = dl_enter(s, edges, &err);
    dl_var_t *v = dl_var_new(s, e_in, &err);
    dl_arr_t *rv = dl_arrange(dl_var_coll(v), K1, 1, V0, 1, &err);
    dl_arr_t *ev = dl_arrange(e_in, K0, 1, V1, 1, &err);
    dl_join_col_t jc[2] = {{DL_JOIN_LEFT, 0}, {DL_JOIN_RIGHT, 0}};
    dl_coll_t *step = dl_join(rv, ev, jc, 2, &err);
    dl_coll_t *both[2] = {e_in, step};
    dl_coll_t *next = dl_distinct(dl_concat(both, 2, &err), &err);
    assert_int_equal(dl_var_set(v, next, &err), 0);
    dl_coll_t *out = dl_leave(next, &err);
    int64_t n = 0;
    dl_capture_t *c = dl_capture_new(out, on_pairs, &n, &err);
    assert_non_null(c);
    assert_int_equal(dl_input_close(in, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    assert_int_equal(n, 20 * 21 / 2);
    dl_capture_release(c);
    size_t removed = 0;
    assert_int_equal(dl_graph_collect(g, &removed, &err), 0);
    dl_graph_stats_t st;
    dl_graph_stats(g, &st);
    assert_int_equal(st.n_ops, 0);
    dl_alloc_stats(&a2);
    assert_int_equal(a2.live_bytes, a1.live_bytes);
    dl_graph_free(g);
}

DL_TEST_GROUP(teardown, cmocka_unit_test(test_teardown_shared_and_returned),
              cmocka_unit_test(test_teardown_iterate));
