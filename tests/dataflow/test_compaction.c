/*
 * test_compaction.c: logical compaction and physical merging of arrangements
 * (docs/dataflow.md "Compaction"): results are identical with and without aggressive
 * maintenance; memory stays bounded under churn (dl_alloc_stats live bytes and arranged
 * record counts); rows inserted and later deleted leave nothing behind once the frontier
 * passes; memory is reclaimed while idle through dl_graph_maintain; traces read the same
 * contents before and after compaction and hold compaction back to their frontier.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <deltalog/dataflow.h>
#include <stdio.h>
#include <stdlib.h>

static const uint32_t K0[1] = {0}, V1[1] = {1};

typedef struct pipe {
    dl_graph_t *g;
    dl_input_t *a, *b;
    dl_arr_t *arr_a;
    dl_capture_t *cap[3];
} pipe_t;

/* count by key of a, distinct of a, and a join of a with b on column 0. */
static void pipe_build(pipe_t *p) {
    dl_error_t err = {0};
    p->g = dl_graph_new(1, &err);
    p->a = dl_input_new(dl_graph_root(p->g), 2, &err);
    p->b = dl_input_new(dl_graph_root(p->g), 2, &err);
    dl_coll_t *ac = dl_input_coll(p->a), *bc = dl_input_coll(p->b);
    p->arr_a = dl_arrange(ac, K0, 1, V1, 1, &err);
    dl_reduce_spec_t spec = {.kind = DL_REDUCE_COUNT};
    dl_arr_t *cnt = dl_reduce(p->arr_a, &spec, &err);
    dl_coll_t *dis = dl_distinct(ac, &err);
    dl_arr_t *arr_b = dl_arrange(bc, K0, 1, V1, 1, &err);
    dl_join_col_t jc[2] = {{DL_JOIN_LEFT, 0}, {DL_JOIN_RIGHT, 0}};
    dl_coll_t *j = dl_join(p->arr_a, arr_b, jc, 2, &err);
    assert_non_null(cnt);
    assert_non_null(dis);
    assert_non_null(j);
    p->cap[0] = dl_capture_new(dl_arr_coll(cnt), NULL, NULL, &err);
    p->cap[1] = dl_capture_new(dis, NULL, NULL, &err);
    p->cap[2] = dl_capture_new(j, NULL, NULL, &err);
    assert_non_null(p->cap[2]);
}

static void pipe_advance(pipe_t *p, uint64_t t) {
    dl_error_t err = {0};
    uint64_t tt[1] = {t};
    assert_int_equal(dl_input_advance_to(p->a, tt, &err), 0);
    assert_int_equal(dl_input_advance_to(p->b, tt, &err), 0);
    assert_int_equal(dl_graph_run(p->g, &err), 0);
}

static void upd(dl_input_t *in, int64_t x, int64_t y, uint64_t t, int64_t d) {
    dl_error_t err = {0};
    dl_value_t row[2] = {dl_value_int(x), dl_value_int(y)};
    uint64_t tt[1] = {t};
    assert_int_equal(dl_input_update(in, row, 2, tt, d, &err), 0);
}

/* Fingerprint of a popped diff sequence. */
static uint64_t drain_hash(dl_capture_t *c) {
    uint64_t h = 1;
    dl_diff_t d;
    while (dl_capture_pop(c, &d) == 1) {
        h = dl__hash_combine(h, d.time[0]);
        for (size_t i = 0; i < d.n; i++) {
            for (size_t k = 0; k < d.arity; k++)
                h = dl__hash_combine(h, (uint64_t)d.rows[i * d.arity + k].as.i);
            h = dl__hash_combine(h, (uint64_t)d.diffs[i]);
        }
    }
    return h;
}

/* Two identical graphs, one maintained to a single compacted batch after every run:
 * every captured diff is the same. */
static void test_compaction_identical_results(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("compaction_identical_results")};
    long cases = dl_prop_iters(40);
    for (long cs = 0; cs < cases; cs++) {
        pipe_t p, q;
        pipe_build(&p);
        pipe_build(&q);
        bool present[16][4] = {{0}};
        for (uint64_t t = 0; t < 30; t++) {
            int k = 1 + (int)dl_rng_below(&rng, 6);
            for (int i = 0; i < k; i++) {
                int x = (int)dl_rng_below(&rng, 16), y = (int)dl_rng_below(&rng, 4);
                int64_t d = present[x][y] ? -1 : 1;
                present[x][y] = !present[x][y];
                bool to_b = dl_rng_below(&rng, 3) == 0;
                upd(to_b ? p.b : p.a, x, y, t, d);
                upd(to_b ? q.b : q.a, x, y, t, d);
            }
            pipe_advance(&p, t + 1);
            pipe_advance(&q, t + 1);
            dl_error_t err = {0};
            while (dl_graph_maintain(q.g, 1u << 20, &err) == 1) {
            }
            for (int c = 0; c < 3; c++)
                assert_int_equal(drain_hash(p.cap[c]), drain_hash(q.cap[c]));
        }
        dl_graph_stats_t sp, sq;
        dl_graph_stats(p.g, &sp);
        dl_graph_stats(q.g, &sq);
        assert_true(sq.arranged_batches <= sp.arranged_batches);
        dl_graph_free(p.g);
        dl_graph_free(q.g);
    }
}

/* The same rows inserted and deleted over and over while the frontier advances: live
 * memory and arranged records stay bounded. */
static void test_compaction_bounded_under_churn(void **state) {
    (void)state;
    pipe_t p;
    pipe_build(&p);
    dl_alloc_stats_t st;
    int64_t live_early = 0, max_records = 0;
    for (uint64_t t = 0; t < 3000; t++) {
        for (int i = 0; i < 20; i++) {
            upd(p.a, i, (int64_t)((t / 2) % 3), t, (t % 2) ? -1 : 1);
            upd(p.b, i, 7, t, (t % 2) ? -1 : 1);
        }
        pipe_advance(&p, t + 1);
        for (int c = 0; c < 3; c++)
            (void)drain_hash(p.cap[c]);
        dl_graph_stats_t s;
        dl_graph_stats(p.g, &s);
        if (t >= 100 && (int64_t)s.arranged_updates > max_records)
            max_records = (int64_t)s.arranged_updates;
        if (t == 300) {
            dl_alloc_stats(&st);
            live_early = st.live_bytes;
        }
    }
    dl_alloc_stats(&st);
    /* 20 keys churned: records in all arrangements never exceed a small multiple. */
    assert_true(max_records < 20 * 40);
    assert_true(st.live_bytes < live_early + 64 * 1024);
    dl_graph_free(p.g);
}

/* Inserted at t, deleted at t+1: once the frontier passes t+1 nothing remains. */
static void test_compaction_insert_delete_leaves_nothing(void **state) {
    (void)state;
    pipe_t p;
    dl_alloc_stats_t before, after;
    dl_alloc_stats(&before);
    pipe_build(&p);
    for (int i = 0; i < 500; i++) {
        upd(p.a, i, 1, 0, 1);
        upd(p.b, i, 2, 0, 1);
    }
    pipe_advance(&p, 1);
    for (int i = 0; i < 500; i++) {
        upd(p.a, i, 1, 1, -1);
        upd(p.b, i, 2, 1, -1);
    }
    pipe_advance(&p, 2);
    pipe_advance(&p, 3); /* an idle run: readers' frontiers move past 1 */
    dl_error_t err = {0};
    while (dl_graph_maintain(p.g, 1u << 20, &err) == 1) {
    }
    dl_graph_stats_t s;
    dl_graph_stats(p.g, &s);
    assert_int_equal(s.arranged_updates, 0);
    assert_int_equal(s.arranged_batches, 0);
    assert_int_equal(s.pending_times, 0);
    for (int c = 0; c < 3; c++)
        (void)drain_hash(p.cap[c]);
    dl_graph_free(p.g);
    dl_alloc_stats(&after);
    assert_int_equal(after.live_bytes, before.live_bytes);
}

/* A big batch then a smaller batch of deletions: the spine's size rule does not merge
 * them, so the deletions sit beside the rows until idle maintenance reclaims both. */
static void test_compaction_reclaims_while_idle(void **state) {
    (void)state;
    pipe_t p;
    pipe_build(&p);
    for (int i = 0; i < 50000; i++)
        upd(p.a, i, 1, 0, 1);
    pipe_advance(&p, 1);
    for (int i = 0; i < 1000; i++)
        upd(p.a, i, 1, 1, -1);
    pipe_advance(&p, 2);
    pipe_advance(&p, 3);
    dl_graph_stats_t s0, s1;
    dl_graph_stats(p.g, &s0);
    dl_alloc_stats_t m0, m1;
    dl_alloc_stats(&m0);
    dl_error_t err = {0};
    int more, steps = 0;
    while ((more = dl_graph_maintain(p.g, 65536, &err)) == 1)
        steps++;
    assert_int_equal(more, 0);
    dl_graph_stats(p.g, &s1);
    dl_alloc_stats(&m1);
    /* The input arrangement, distinct's arrangement and the two reduce outputs hold
     * 49000 rows each after compaction; before, the 1000 deletions and the rows they
     * cancel were still there (the runs' own maintenance fuel, proportional to their
     * work, does not pay for merging 51000 records). */
    assert_true(s1.arranged_updates < s0.arranged_updates);
    assert_int_equal(s1.arranged_updates, 4 * 49000);
    assert_true(m1.live_bytes < m0.live_bytes);
    for (int c = 0; c < 3; c++)
        (void)drain_hash(p.cap[c]);
    dl_graph_free(p.g);
}

typedef struct rd {
    int64_t sum;
    size_t n;
} rd_t;

static int rd_fn(void *ctx, const dl_value_t *key, const dl_value_t *val, int64_t count) {
    rd_t *r = ctx;
    r->sum += key[0].as.i * 1000 + val[0].as.i * count;
    r->n++;
    return 0;
}

/* A trace reads identical contents before and after compaction, and keeps compaction
 * from passing its frontier (so a time it may still read stays distinguishable). */
static void test_compaction_trace_reads(void **state) {
    (void)state;
    pipe_t p;
    pipe_build(&p);
    dl_error_t err = {0};
    dl_trace_t *tr = dl_trace_new(p.arr_a, &err);
    assert_non_null(tr);
    for (uint64_t t = 0; t < 10; t++) {
        upd(p.a, (int64_t)t, (int64_t)t, t, 1);
        if (t > 0)
            upd(p.a, (int64_t)t - 1, (int64_t)t - 1, t, -1);
        pipe_advance(&p, t + 1);
    }
    /* The trace still holds frontier {0}: reading at 3 sees only row (3,3). */
    uint64_t t3[1] = {3}, t9[1] = {9};
    rd_t r = {0, 0};
    assert_int_equal(dl_trace_read(tr, t3, rd_fn, &r, &err), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.sum, 3003);
    while (dl_graph_maintain(p.g, 1u << 20, &err) == 1) {
    }
    rd_t r2 = {0, 0};
    assert_int_equal(dl_trace_read(tr, t3, rd_fn, &r2, &err), 0);
    assert_int_equal(r2.n, r.n);
    assert_int_equal(r2.sum, r.sum);
    /* Advance the trace to 9: compaction may now collapse history; reading at 9 works,
     * reading at 3 is refused. */
    dl_antichain_t f;
    dl_antichain_init(&f, 1);
    assert_int_equal(dl_antichain_insert(&f, t9), 1);
    assert_int_equal(dl_trace_advance(tr, &f, &err), 0);
    pipe_advance(&p, 11);
    while (dl_graph_maintain(p.g, 1u << 20, &err) == 1) {
    }
    rd_t r3 = {0, 0};
    assert_int_equal(dl_trace_read(tr, t9, rd_fn, &r3, &err), 0);
    assert_int_equal(r3.n, 1);
    assert_int_equal(r3.sum, 9009);
    dl_error_t e2 = {0};
    assert_int_equal(dl_trace_read(tr, t3, rd_fn, &r3, &e2), DL_ETIME);
    dl_graph_stats_t s;
    dl_graph_stats(p.g, &s);
    assert_true(s.arranged_updates <= 4 * 2);
    dl_antichain_fini(&f);
    for (int c = 0; c < 3; c++)
        (void)drain_hash(p.cap[c]);
    dl_trace_free(tr);
    dl_graph_free(p.g);
}

DL_TEST_GROUP(compaction, cmocka_unit_test(test_compaction_identical_results),
              cmocka_unit_test(test_compaction_bounded_under_churn),
              cmocka_unit_test(test_compaction_insert_delete_leaves_nothing),
              cmocka_unit_test(test_compaction_reclaims_while_idle),
              cmocka_unit_test(test_compaction_trace_reads));
