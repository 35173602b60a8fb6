/*
 * test_reduce_linear.c: the LINEAR reduce (count, sum, avg of int64 columns through a
 * per-key accumulator; dataflow/reduce.c notes 5-6, docs/reduce-linear.md). Oracle property
 * tests over random update streams with 1-, 2- and 3-D times arriving out of order
 * (retractions to zero, values of every magnitude, frontiers advanced in random steps so
 * the accumulator compacts), compared at every complete grid time with a naive evaluator
 * and with a GENERAL reduce computing the same aggregates in the same graph; a group that
 * grows large; the cost of one change measured by the reduce_touched counter (it must not
 * grow with the group, unlike GENERAL's); the errors (DL_ETYPE, DL_ERANGE, bad specs).
 * Does not test the Datalog compiler's choice of LINEAR (tests/datalog does).
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <deltalog/dataflow.h>
#include <stdio.h>
#include <stdlib.h>

#define GRIDC 4 /* grid coordinates 0..GRIDC-1 */

typedef struct upd {
    int64_t key, val, d;
    uint64_t t[3];
} upd_t;

/* Captured output: rows (key, count, sum, avg). */
typedef struct clog {
    size_t n, cap;
    uint64_t (*t)[3];
    dl_value_t (*row)[4];
    int64_t *d;
} clog_t;

static void clog_pop(dl_capture_t *c, clog_t *l) {
    dl_diff_t d;
    while (dl_capture_pop(c, &d) == 1) {
        for (size_t i = 0; i < d.n; i++) {
            if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 256;
                l->t = realloc(l->t, l->cap * sizeof *l->t);
                l->row = realloc(l->row, l->cap * sizeof *l->row);
                l->d = realloc(l->d, l->cap * sizeof *l->d);
                assert_true(l->t && l->row && l->d);
            }
            assert_int_equal(d.arity, 4);
            memset(l->t[l->n], 0, sizeof l->t[l->n]);
            memcpy(l->t[l->n], d.time, d.dim * sizeof(uint64_t));
            memcpy(l->row[l->n], d.rows + i * 4, 4 * sizeof(dl_value_t));
            l->d[l->n] = d.diffs[i];
            l->n++;
        }
    }
}

static void clog_free(clog_t *l) {
    free(l->t);
    free(l->row);
    free(l->d);
}

static bool tle(const uint64_t *a, const uint64_t *b, int dim) {
    for (int i = 0; i < dim; i++)
        if (a[i] > b[i])
            return false;
    return true;
}

/* A multiset of output rows accumulated at a time. */
#define MAXK    160 /* keys */
#define MAXROWS 1024
typedef struct acc {
    dl_value_t row[MAXROWS][4];
    int64_t c[MAXROWS];
    int n;
} acc_t;

static bool row_eq(const dl_value_t *a, const dl_value_t *b) {
    for (int i = 0; i < 4; i++)
        if (!dl_value_eq(a[i], b[i]))
            return false;
    return true;
}

static void acc_add(acc_t *a, const dl_value_t *row, int64_t c) {
    for (int i = 0; i < a->n; i++)
        if (row_eq(a->row[i], row)) {
            a->c[i] += c;
            if (a->c[i] == 0) {
                a->n--;
                memcpy(a->row[i], a->row[a->n], sizeof a->row[i]);
                a->c[i] = a->c[a->n];
            }
            return;
        }
    assert_true(a->n < MAXROWS);
    memcpy(a->row[a->n], row, sizeof a->row[a->n]);
    a->c[a->n++] = c;
}

static bool acc_eq(const acc_t *x, const acc_t *y) {
    if (x->n != y->n)
        return false;
    for (int i = 0; i < x->n; i++) {
        bool found = false;
        for (int j = 0; j < y->n && !found; j++)
            found = row_eq(x->row[i], y->row[j]) && x->c[i] == y->c[j];
        if (!found)
            return false;
    }
    return true;
}

static void acc_print(const char *what, const acc_t *a) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < a->n; i++)
        fprintf(stderr, " (%lld,%lld,%lld,%.17g)x%lld", (long long)a->row[i][0].as.i,
                (long long)a->row[i][1].as.i, (long long)a->row[i][2].as.i, a->row[i][3].as.d,
                (long long)a->c[i]);
    fprintf(stderr, "\n");
}

/* The naive meaning: per key, count = sum of d, sum = sum of d * val (exact: the test's
 * values keep it inside int64), avg = sum / count; a row when count != 0. */
static void naive(const upd_t *u, int n, const uint64_t *t, int dim, acc_t *out) {
    int64_t cnt[MAXK] = {0}, sum[MAXK] = {0};
    for (int i = 0; i < n; i++)
        if (tle(u[i].t, t, dim)) {
            cnt[u[i].key] += u[i].d;
            sum[u[i].key] += u[i].d * u[i].val;
        }
    memset(out, 0, sizeof *out);
    for (int k = 0; k < MAXK; k++)
        if (cnt[k] != 0) {
            dl_value_t row[4] = {dl_value_int(k), dl_value_int(cnt[k]), dl_value_int(sum[k]),
                                 dl_value_double((double)sum[k] / (double)cnt[k])};
            acc_add(out, row, 1);
        }
}

static void got_at(const clog_t *l, const uint64_t *t, int dim, acc_t *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < l->n; i++)
        if (tle(l->t[i], t, dim))
            acc_add(out, l->row[i], l->d[i]);
}

/* The same aggregates as a GENERAL reducer (the reference the compiler used before). */
static int general_fn(void *ctx, const dl_value_t *key, const dl_value_t *vals,
                      const int64_t *counts, size_t n, dl_emitter_t *out) {
    (void)ctx;
    (void)key;
    int64_t c = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        c += counts[i];
        s += counts[i] * vals[i].as.i;
    }
    if (c == 0)
        return 0;
    dl_value_t r[3] = {dl_value_int(c), dl_value_int(s), dl_value_double((double)s / (double)c)};
    return dl_emit(out, r);
}

static const dl_linear_agg_t AGGS[3] = {
    {DL_LINEAR_COUNT, 0}, {DL_LINEAR_SUM, 0}, {DL_LINEAR_AVG, 0}};

typedef struct rig {
    dl_graph_t *g;
    dl_input_t *in;
    dl_capture_t *cl, *cg;
    dl_arr_t *lin;
} rig_t;

static void rig_new(rig_t *r, int dim, bool with_general) {
    dl_error_t err = {0};
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    r->g = dl_graph_new((size_t)dim, &err);
    assert_non_null(r->g);
    r->in = dl_input_new(dl_graph_root(r->g), 2, &err);
    dl_arr_t *a = dl_arrange(dl_input_coll(r->in), K0, 1, V1, 1, &err);
    assert_non_null(a);
    dl_reduce_spec_t ls = {.kind = DL_REDUCE_LINEAR, .aggs = AGGS, .n_aggs = 3};
    r->lin = dl_reduce(a, &ls, &err);
    assert_non_null(r->lin);
    r->cl = dl_capture_new(dl_arr_coll(r->lin), NULL, NULL, &err);
    assert_non_null(r->cl);
    r->cg = NULL;
    if (with_general) {
        dl_reduce_spec_t gs = {.kind = DL_REDUCE_GENERAL, .out_arity = 3, .general_fn = general_fn};
        dl_arr_t *ga = dl_reduce(a, &gs, &err);
        assert_non_null(ga);
        r->cg = dl_capture_new(dl_arr_coll(ga), NULL, NULL, &err);
        assert_non_null(r->cg);
    }
}

static int64_t rand_val(dl_rng_t *rng) {
    switch (dl_rng_below(rng, 4)) {
        case 0:
            return (int64_t)dl_rng_below(rng, 10);
        case 1:
            return -(int64_t)dl_rng_below(rng, 1000);
        case 2: /* crosses the 2^32 halves, both signs */
            return ((int64_t)dl_rng_below(rng, 1u << 20) << 24) - ((int64_t)1 << 42);
        default:
            return (int64_t)dl_rng_below(rng, 1ull << 40) + ((int64_t)1 << 40);
    }
}

/* One random case: updates on up to `nk` keys, `n` updates (retractions of earlier ones
 * included), fed in random order with frontiers advanced after random chunks. */
static void one_case(dl_rng_t *rng, int dim, int nk, int n, uint64_t seed, int ci) {
    upd_t *u = calloc((size_t)n, sizeof *u);
    assert_non_null(u);
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < dim; d++)
            u[i].t[d] = dl_rng_below(rng, GRIDC);
        if (i > 0 && dl_rng_below(rng, 3) == 0) {
            /* Retract an earlier update (possibly at an incomparable time). */
            const upd_t *p = &u[dl_rng_below(rng, (uint64_t)i)];
            u[i].key = p->key;
            u[i].val = p->val;
            u[i].d = -p->d;
        } else {
            u[i].key = (int64_t)dl_rng_below(rng, (uint64_t)nk);
            u[i].val = rand_val(rng);
            u[i].d = dl_rng_below(rng, 4) == 0 ? 2 : 1;
        }
    }
    /* Feed order: random, but each update must be beyond the frontier when fed: the
     * frontier is the antichain of the times not yet fed. */
    int *perm = malloc((size_t)n * sizeof *perm);
    assert_non_null(perm);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)dl_rng_below(rng, (uint64_t)i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    rig_t r;
    rig_new(&r, dim, true);
    clog_t ll = {0}, lg = {0};
    dl_error_t err = {0};
    dl_antichain_t f;
    dl_antichain_init(&f, (size_t)dim);
    for (int s = 0; s < n; s++) {
        const upd_t *x = &u[perm[s]];
        dl_value_t row[2] = {dl_value_int(x->key), dl_value_int(x->val)};
        assert_int_equal(dl_input_update(r.in, row, 2, x->t, x->d, &err), 0);
        if (s < n - 1 && dl_rng_below(rng, 4) != 0)
            continue;
        dl_antichain_clear(&f);
        for (int j = s + 1; j < n; j++)
            assert_true(dl_antichain_insert(&f, u[perm[j]].t) >= 0);
        if (f.n)
            assert_int_equal(dl_input_advance(r.in, &f, &err), 0);
        else
            assert_int_equal(dl_input_close(r.in, &err), 0);
        assert_int_equal(dl_graph_run(r.g, &err), 0);
        clog_pop(r.cl, &ll);
        clog_pop(r.cg, &lg);
        int total = dim == 1 ? GRIDC : dim == 2 ? GRIDC * GRIDC : GRIDC * GRIDC * GRIDC;
        for (int gi = 0; gi < total; gi++) {
            uint64_t t[3] = {0, 0, 0};
            int xx = gi;
            for (int d = 0; d < dim; d++, xx /= GRIDC)
                t[d] = (uint64_t)(xx % GRIDC);
            if (dl_antichain_less_equal(&f, t))
                continue; /* not complete */
            static acc_t want, gl, gg;
            naive(u, n, t, dim, &want);
            got_at(&ll, t, dim, &gl);
            got_at(&lg, t, dim, &gg);
            if (!acc_eq(&want, &gl) || !acc_eq(&want, &gg)) {
                fprintf(stderr, "case %d (seed %llu) dim %d at (%llu,%llu,%llu):\n", ci,
                        (unsigned long long)seed, dim, (unsigned long long)t[0],
                        (unsigned long long)t[1], (unsigned long long)t[2]);
                acc_print("naive", &want);
                acc_print("linear", &gl);
                acc_print("general", &gg);
                dl_prop_fail("linear reduce differs from the oracle");
            }
        }
    }
    dl_antichain_fini(&f);
    clog_free(&ll);
    clog_free(&lg);
    dl_graph_free(r.g);
    free(perm);
    free(u);
}

static void test_reduce_linear_oracle(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("reduce_linear.oracle");
    dl_rng_t rng = {seed};
    int iters = (int)dl_prop_iters(300);
    for (int ci = 0; ci < iters; ci++) {
        int dim = 1 + ci % 3;
        int nk = 1 + (int)dl_rng_below(&rng, 4);
        int n = 4 + (int)dl_rng_below(&rng, 40);
        one_case(&rng, dim, nk, n, seed, ci);
    }
}

/* Groups that grow large (hundreds of rows per key) with retractions, 1- and 2-D. */
static void test_reduce_linear_large_groups(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("reduce_linear.large");
    dl_rng_t rng = {seed};
    int iters = (int)dl_prop_iters(6);
    for (int ci = 0; ci < iters; ci++)
        one_case(&rng, 1 + ci % 2, 2, 400, seed, ci);
}

/* Many keys under 1-D time (the hash table of note 6: growth, and groups emptied by
 * retractions and re-added), and 2-D for contrast. */
static void test_reduce_linear_many_keys(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("reduce_linear.many_keys");
    dl_rng_t rng = {seed};
    int iters = (int)dl_prop_iters(8);
    for (int ci = 0; ci < iters; ci++)
        one_case(&rng, 1 + (ci % 4 == 3), 20 + (int)dl_rng_below(&rng, MAXK - 20), 500, seed, ci);
}

/* Inserts `n` rows of one key, one per run at times 0..n-1 (the W3 pattern). */
static void grow_group(dl_input_t *in, dl_graph_t *g, int64_t from, int64_t to) {
    dl_error_t err = {0};
    for (int64_t i = from; i < to; i++) {
        dl_value_t row[2] = {dl_value_int(7), dl_value_int(i * 3 + 1)};
        uint64_t t = (uint64_t)i, nt = t + 1;
        assert_int_equal(dl_input_update(in, row, 2, &t, 1, &err), 0);
        assert_int_equal(dl_input_advance_to(in, &nt, &err), 0);
        assert_int_equal(dl_graph_run(g, &err), 0);
    }
}

/* Records touched by one insert and one retraction into a group of size `size`. */
static size_t touched_per_change(bool linear, int64_t size) {
    dl_error_t err = {0};
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    dl_arr_t *a = dl_arrange(dl_input_coll(in), K0, 1, V1, 1, &err);
    dl_reduce_spec_t ls = {.kind = DL_REDUCE_LINEAR, .aggs = AGGS, .n_aggs = 3};
    dl_reduce_spec_t gs = {.kind = DL_REDUCE_GENERAL, .out_arity = 3, .general_fn = general_fn};
    dl_arr_t *r = dl_reduce(a, linear ? &ls : &gs, &err);
    assert_non_null(r);
    assert_non_null(dl_capture_new(dl_arr_coll(r), NULL, NULL, &err));
    grow_group(in, g, 0, size);
    dl_graph_stats_t s0, s1;
    memset(&s0, 0, sizeof s0);
    memset(&s1, 0, sizeof s1);
    dl_graph_stats(g, &s0);
    grow_group(in, g, size, size + 1); /* one insert */
    dl_value_t row[2] = {dl_value_int(7), dl_value_int(1)};
    uint64_t t = (uint64_t)size + 1, nt = t + 1;
    assert_int_equal(dl_input_update(in, row, 2, &t, -1, &err), 0); /* one retraction */
    assert_int_equal(dl_input_advance_to(in, &nt, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    dl_graph_stats(g, &s1);
    dl_graph_free(g);
    return s1.reduce_touched - s0.reduce_touched;
}

static void test_reduce_linear_work_per_change(void **state) {
    (void)state;
    size_t ls = touched_per_change(true, 64), ll = touched_per_change(true, 2048);
    size_t gs = touched_per_change(false, 64), gl = touched_per_change(false, 2048);
    fprintf(stderr, "touched per change: linear %zu (64) %zu (2048); general %zu (64) %zu (2048)\n",
            ls, ll, gs, gl);
    /* The counter does measure group reads: GENERAL re-reads the whole group. */
    assert_true(gl >= 2048);
    assert_true(gl > 20 * gs);
    /* LINEAR: a few accumulator records per spine batch, not the group: 32x more rows
     * may cost at most the spine's extra levels. */
    assert_true(ll <= 2 * ls + 16);
    assert_true(ll < 200);
}

static int run_expect(dl_graph_t *g, int want) {
    dl_error_t err = {0};
    int rc = dl_graph_run(g, &err);
    assert_int_equal(rc, want);
    if (rc)
        assert_true(err.message[0] != 0);
    return rc;
}

static void test_reduce_linear_errors(void **state) {
    (void)state;
    dl_error_t err = {0};
    uint64_t t0 = 0, t1 = 1;
    /* A non-int value in a summed column: DL_ETYPE from the run. */
    rig_t r;
    rig_new(&r, 1, false);
    dl_value_t bad[2] = {dl_value_int(1), dl_value_double(1.5)};
    assert_int_equal(dl_input_update(r.in, bad, 2, &t0, 1, &err), 0);
    assert_int_equal(dl_input_advance_to(r.in, &t1, &err), 0);
    run_expect(r.g, DL_ETYPE);
    dl_graph_free(r.g);
    /* A sum outside int64: DL_ERANGE; the average of the same rows is fine. */
    rig_new(&r, 1, false);
    dl_value_t big1[2] = {dl_value_int(1), dl_value_int(INT64_MAX - 5)};
    dl_value_t big2[2] = {dl_value_int(1), dl_value_int(INT64_MAX - 6)};
    assert_int_equal(dl_input_update(r.in, big1, 2, &t0, 1, &err), 0);
    assert_int_equal(dl_input_update(r.in, big2, 2, &t0, 1, &err), 0);
    assert_int_equal(dl_input_advance_to(r.in, &t1, &err), 0);
    run_expect(r.g, DL_ERANGE);
    dl_graph_free(r.g);
    /* AVG only: no overflow, and exact to the double. */
    {
        static const uint32_t K0[1] = {0}, V1[1] = {1};
        dl_graph_t *g = dl_graph_new(1, &err);
        dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
        dl_arr_t *a = dl_arrange(dl_input_coll(in), K0, 1, V1, 1, &err);
        static const dl_linear_agg_t avg[1] = {{DL_LINEAR_AVG, 0}};
        dl_reduce_spec_t s = {.kind = DL_REDUCE_LINEAR, .aggs = avg, .n_aggs = 1};
        dl_capture_t *c = dl_capture_new(dl_arr_coll(dl_reduce(a, &s, &err)), NULL, NULL, &err);
        assert_non_null(c);
        assert_int_equal(dl_input_update(in, big1, 2, &t0, 1, &err), 0);
        assert_int_equal(dl_input_update(in, big2, 2, &t0, 1, &err), 0);
        assert_int_equal(dl_input_advance_to(in, &t1, &err), 0);
        assert_int_equal(dl_graph_run(g, &err), 0);
        dl_diff_t d;
        assert_int_equal(dl_capture_pop(c, &d), 1);
        assert_int_equal(d.n, 1);
        assert_true(d.rows[1].type == DL_T_DOUBLE);
        assert_true(d.rows[1].as.d == (double)INT64_MAX - 5.5);
        dl_graph_free(g);
    }
    /* A sum that overflows only transiently (retracted later) is fine at the end time. */
    rig_new(&r, 1, false);
    assert_int_equal(dl_input_update(r.in, big1, 2, &t0, 1, &err), 0);
    assert_int_equal(dl_input_advance_to(r.in, &t1, &err), 0);
    assert_int_equal(dl_graph_run(r.g, &err), 0);
    uint64_t t2 = 2;
    assert_int_equal(dl_input_update(r.in, big1, 2, &t1, -1, &err), 0);
    assert_int_equal(dl_input_update(r.in, big2, 2, &t1, 1, &err), 0);
    assert_int_equal(dl_input_advance_to(r.in, &t2, &err), 0);
    assert_int_equal(dl_graph_run(r.g, &err), 0);
    dl_graph_free(r.g);
    /* Bad specs. */
    {
        static const uint32_t K0[1] = {0}, V1[1] = {1};
        dl_graph_t *g = dl_graph_new(1, &err);
        dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
        dl_arr_t *a = dl_arrange(dl_input_coll(in), K0, 1, V1, 1, &err);
        dl_reduce_spec_t s = {.kind = DL_REDUCE_LINEAR, .aggs = AGGS, .n_aggs = 0};
        assert_null(dl_reduce(a, &s, &err));
        assert_int_equal(err.code, DL_EINVAL);
        static const dl_linear_agg_t col1[1] = {{DL_LINEAR_SUM, 1}};
        s.aggs = col1;
        s.n_aggs = 1;
        memset(&err, 0, sizeof err);
        assert_null(dl_reduce(a, &s, &err));
        assert_int_equal(err.code, DL_EARITY);
        dl_graph_free(g);
    }
}

/* An arrangement read only by a linear reduce stores nothing (the reduce keeps its own
 * accumulator), results stay right under random inserts and retractions, and readers that
 * would need the dropped history are refused with DL_ESTATE while the graph keeps working;
 * with a join reading it too, the arrangement keeps its history. */
static void test_reduce_linear_input_not_stored(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("reduce_linear_input_not_stored")};
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    for (int with_join = 0; with_join < 2; with_join++) {
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new(1, &err);
        dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
        dl_arr_t *a = dl_arrange(dl_input_coll(in), K0, 1, V1, 1, &err);
        dl_reduce_spec_t s = {.kind = DL_REDUCE_LINEAR, .aggs = AGGS, .n_aggs = 2};
        dl_arr_t *r = dl_reduce(a, &s, &err);
        assert_non_null(r);
        dl_capture_t *c = dl_capture_new(dl_arr_coll(r), NULL, NULL, &err);
        assert_non_null(c);
        dl_trace_t *tr = NULL;
        if (with_join) {
            dl_join_col_t jc[1] = {{DL_JOIN_KEY, 0}};
            assert_non_null(dl_join(a, a, jc, 1, &err));
            /* a reader of the output attached before data: the output is kept for it */
            assert_non_null(tr = dl_trace_new(r, &err));
        }
        int64_t count[8] = {0}, sum[8] = {0};
        int64_t got_count[8] = {0}, got_sum[8] = {0};
        int64_t present[8][16] = {{0}};
        for (uint64_t t = 0; t < 30; t++) {
            for (int u = 0; u < 20; u++) {
                int64_t k = (int64_t)dl_rng_below(&rng, 8), v = (int64_t)dl_rng_below(&rng, 16);
                int64_t d = present[k][v] && dl_rng_below(&rng, 2) ? -1 : 1;
                present[k][v] += d;
                count[k] += d;
                sum[k] += d * v;
                dl_value_t row[2] = {dl_value_int(k), dl_value_int(v)};
                assert_int_equal(dl_input_update(in, row, 2, &t, d, &err), 0);
            }
            uint64_t nt = t + 1;
            assert_int_equal(dl_input_advance_to(in, &nt, &err), 0);
            assert_int_equal(dl_graph_run(g, &err), 0);
            dl_diff_t d;
            while (dl_capture_pop(c, &d) == 1)
                for (size_t i = 0; i < d.n; i++) {
                    int64_t k = d.rows[i * 3].as.i;
                    got_count[k] += d.diffs[i] * d.rows[i * 3 + 1].as.i;
                    got_sum[k] += d.diffs[i] * d.rows[i * 3 + 2].as.i;
                }
            for (int k = 0; k < 8; k++) {
                assert_int_equal(got_count[k], count[k]);
                assert_int_equal(got_sum[k], sum[k]);
            }
        }
        dl_graph_stats_t st;
        dl_graph_stats(g, &st);
        if (!with_join) {
            /* Nothing of the input is stored: only the accumulator and the output. */
            assert_true(st.arranged_updates < 8 * 3 * 4 + 8 * 4);
            memset(&err, 0, sizeof err);
            dl_join_col_t jc[1] = {{DL_JOIN_KEY, 0}};
            assert_null(dl_join(a, a, jc, 1, &err));
            assert_int_equal(err.code, DL_ESTATE);
            assert_non_null(strstr(err.message, "no history"));
            memset(&err, 0, sizeof err);
            assert_null(dl_trace_new(a, &err));
            assert_int_equal(err.code, DL_ESTATE);
            memset(&err, 0, sizeof err);
            assert_null(dl_concat((dl_coll_t *[]){dl_arr_coll(a)}, 1, &err));
            assert_int_equal(err.code, DL_ESTATE);
            /* Under one time coordinate the output's history is not kept either (note 6). */
            memset(&err, 0, sizeof err);
            assert_null(dl_trace_new(r, &err));
            assert_int_equal(err.code, DL_ESTATE);
            uint64_t t = 30, nt = 31;
            dl_value_t row[2] = {dl_value_int(1), dl_value_int(1)};
            assert_int_equal(dl_input_update(in, row, 2, &t, 1, &err), 0);
            assert_int_equal(dl_input_advance_to(in, &nt, &err), 0);
            assert_int_equal(dl_graph_run(g, &err), 0); /* still runs */
        } else {
            assert_true(st.arranged_updates >= 8 * 16 / 2); /* the input is kept */
            dl_trace_free(tr);
        }
        dl_graph_free(g);
    }
}

DL_TEST_GROUP(reduce_linear, cmocka_unit_test(test_reduce_linear_oracle),
              cmocka_unit_test(test_reduce_linear_input_not_stored),
              cmocka_unit_test(test_reduce_linear_large_groups),
              cmocka_unit_test(test_reduce_linear_many_keys),
              cmocka_unit_test(test_reduce_linear_work_per_change),
              cmocka_unit_test(test_reduce_linear_errors));
