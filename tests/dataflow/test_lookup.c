/*
 * test_lookup.c: the one-shot operators of dataflow/lookup.c and dataflow/combine.c.
 * Lookup join: random static tables read through the callback, random input streams with
 * retractions at 1- and 2-D times fed with random frontier steps, probing sorted and
 * unsorted, the static side at time 0 or later; at every complete grid time the
 * accumulated output equals a naive join of the input accumulated there with the table.
 * Combine: a grouped count and sum through dl_combine and a LINEAR reduce summing its
 * columns (rows of count 0 dropped, as its readers must) equals a naive count and sum per
 * key at every complete time; a non-int summed value fails the run with DL_ETYPE.
 * Does not test the Datalog compiler's use of them (tests/datalog does).
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <deltalog/dataflow.h>
#include <stdlib.h>
#include <string.h>

#define GRID  4  /* time coordinates 0..GRID-1 */
#define NKEYS 12 /* input keys 0..NKEYS-1 (the table may miss some) */
#define MAXV  3  /* values per key in the table */

typedef struct upd {
    int64_t k, x, d;
    uint64_t t[2];
} upd_t;

/* The static side: vals[k][0..n[k]). */
typedef struct table {
    int64_t vals[NKEYS][MAXV];
    int n[NKEYS];
    int calls;
} table_t;

static int table_fn(void *ctx, const dl_value_t *key, dl_lookup_sink_t *out) {
    table_t *tb = ctx;
    tb->calls++;
    if (key[0].type != DL_T_INT || key[0].as.i < 0 || key[0].as.i >= NKEYS)
        return 0;
    for (int i = 0; i < tb->n[key[0].as.i]; i++) {
        dl_value_t v = dl_value_int(tb->vals[key[0].as.i][i]);
        int rc = dl_lookup_yield(out, &v);
        if (rc)
            return rc;
    }
    return 0;
}

static bool tle(const uint64_t *a, const uint64_t *b, int dim) {
    for (int i = 0; i < dim; i++)
        if (a[i] > b[i])
            return false;
    return true;
}

/* Accumulated rows of three ints: a small multiset. */
typedef struct bag {
    int64_t row[512][3];
    int64_t c[512];
    int n;
} bag_t;

static void bag_add(bag_t *b, int64_t x, int64_t y, int64_t z, int64_t c) {
    for (int i = 0; i < b->n; i++)
        if (b->row[i][0] == x && b->row[i][1] == y && b->row[i][2] == z) {
            b->c[i] += c;
            if (b->c[i] == 0) {
                b->n--;
                memcpy(b->row[i], b->row[b->n], sizeof b->row[i]);
                b->c[i] = b->c[b->n];
            }
            return;
        }
    assert_true(b->n < 512);
    b->row[b->n][0] = x;
    b->row[b->n][1] = y;
    b->row[b->n][2] = z;
    b->c[b->n++] = c;
}

static bool bag_eq(const bag_t *a, const bag_t *b) {
    if (a->n != b->n)
        return false;
    for (int i = 0; i < a->n; i++) {
        bool found = false;
        for (int j = 0; j < b->n && !found; j++)
            found = !memcmp(a->row[i], b->row[j], sizeof a->row[i]) && a->c[i] == b->c[j];
        if (!found)
            return false;
    }
    return true;
}

/* Captured output rows with their times. */
typedef struct clog {
    int64_t (*row)[3];
    uint64_t (*t)[2];
    int64_t *d;
    size_t n, cap;
} clog_t;

static void clog_pop(dl_capture_t *c, clog_t *l) {
    dl_diff_t d;
    while (dl_capture_pop(c, &d) == 1)
        for (size_t i = 0; i < d.n; i++) {
            if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 256;
                l->row = realloc(l->row, l->cap * sizeof *l->row);
                l->t = realloc(l->t, l->cap * sizeof *l->t);
                l->d = realloc(l->d, l->cap * sizeof *l->d);
                assert_true(l->row && l->t && l->d);
            }
            assert_int_equal(d.arity, 3);
            for (int k = 0; k < 3; k++)
                l->row[l->n][k] = d.rows[i * 3 + k].as.i;
            memset(l->t[l->n], 0, sizeof l->t[l->n]);
            memcpy(l->t[l->n], d.time, d.dim * sizeof(uint64_t));
            l->d[l->n++] = d.diffs[i];
        }
}

/* Feeds u in random order, advancing the frontier (the antichain of the times not yet fed)
 * after random chunks and running; after every run, check(ctx, frontier) compares. */
typedef void (*check_fn)(void *ctx, const dl_antichain_t *f);
static void feed(dl_rng_t *r, dl_graph_t *g, dl_input_t *in, upd_t *u, int n, int dim,
                 check_fn check, void *ctx) {
    int *perm = malloc((size_t)n * sizeof *perm);
    assert_non_null(perm);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)dl_rng_below(r, (uint64_t)i + 1), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    dl_error_t err = {0};
    dl_antichain_t f;
    dl_antichain_init(&f, (size_t)dim);
    for (int s = 0; s < n; s++) {
        const upd_t *x = &u[perm[s]];
        dl_value_t row[2] = {dl_value_int(x->k), dl_value_int(x->x)};
        assert_int_equal(dl_input_update(in, row, 2, x->t, x->d, &err), 0);
        if (s < n - 1 && dl_rng_below(r, 3) != 0)
            continue;
        dl_antichain_clear(&f);
        for (int j = s + 1; j < n; j++)
            assert_true(dl_antichain_insert(&f, u[perm[j]].t) >= 0);
        if (f.n)
            assert_int_equal(dl_input_advance(in, &f, &err), 0);
        else
            assert_int_equal(dl_input_close(in, &err), 0);
        assert_int_equal(dl_graph_run(g, &err), 0);
        check(ctx, &f);
    }
    dl_antichain_fini(&f);
    free(perm);
}

static void random_updates(dl_rng_t *r, upd_t *u, int n, int dim) {
    for (int i = 0; i < n; i++) {
        memset(u[i].t, 0, sizeof u[i].t);
        for (int d = 0; d < dim; d++)
            u[i].t[d] = dl_rng_below(r, GRID);
        if (i > 0 && dl_rng_below(r, 3) == 0) { /* retract an earlier one */
            const upd_t *p = &u[dl_rng_below(r, (uint64_t)i)];
            u[i].k = p->k;
            u[i].x = p->x;
            u[i].d = -p->d;
        } else {
            u[i].k = (int64_t)dl_rng_below(r, NKEYS);
            u[i].x = (int64_t)dl_rng_below(r, 1000) - 300;
            u[i].d = dl_rng_below(r, 4) == 0 ? 2 : 1;
        }
    }
}

/* ---- lookup join ------------------------------------------------------------------------ */
typedef struct lk_case {
    const upd_t *u;
    int n, dim;
    const table_t *tb;
    uint64_t st[2]; /* the static side's time */
    dl_capture_t *cap;
    clog_t log;
    uint64_t seed;
} lk_case_t;

static void lk_check(void *ctx, const dl_antichain_t *f) {
    lk_case_t *c = ctx;
    clog_pop(c->cap, &c->log);
    int total = c->dim == 1 ? GRID : GRID * GRID;
    for (int gi = 0; gi < total; gi++) {
        uint64_t t[2] = {(uint64_t)(gi % GRID), (uint64_t)(gi / GRID)};
        if (dl_antichain_less_equal(f, t))
            continue; /* not complete */
        static bag_t want, got;
        memset(&want, 0, sizeof want);
        memset(&got, 0, sizeof got);
        if (tle(c->st, t, c->dim)) /* before the static time nothing joins */
            for (int i = 0; i < c->n; i++)
                if (tle(c->u[i].t, t, c->dim))
                    for (int v = 0; v < c->tb->n[c->u[i].k]; v++)
                        bag_add(&want, c->u[i].k, c->u[i].x, c->tb->vals[c->u[i].k][v], c->u[i].d);
        for (size_t i = 0; i < c->log.n; i++)
            if (tle(c->log.t[i], t, c->dim))
                bag_add(&got, c->log.row[i][0], c->log.row[i][1], c->log.row[i][2], c->log.d[i]);
        if (!bag_eq(&want, &got))
            dl_prop_fail("lookup join (seed %llu, dim %d) differs from the naive join at "
                         "(%llu,%llu): %d rows wanted, %d got",
                         (unsigned long long)c->seed, c->dim, (unsigned long long)t[0],
                         (unsigned long long)t[1], want.n, got.n);
    }
}

static void test_lookup_join_oracle(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("lookup_join.oracle");
    dl_rng_t r = {seed};
    int iters = (int)dl_prop_iters(200);
    for (int it = 0; it < iters; it++) {
        int dim = 1 + it % 2, n = 5 + (int)dl_rng_below(&r, 60);
        static table_t tb;
        memset(&tb, 0, sizeof tb);
        for (int k = 0; k < NKEYS; k++) {
            tb.n[k] = (int)dl_rng_below(&r, MAXV + 1); /* 0: the key is absent */
            for (int v = 0; v < tb.n[k]; v++)
                tb.vals[k][v] = k * 100 + v; /* distinct: a set, as the contract says */
        }
        upd_t u[64];
        random_updates(&r, u, n, dim);
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new((size_t)dim, &err);
        dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
        assert_non_null(in);
        static const uint32_t K0[1] = {0};
        lk_case_t c = {u, n, dim, &tb, {0, 0}, NULL, {0}, seed};
        if (dl_rng_below(&r, 3) == 0)
            c.st[dl_rng_below(&r, (uint64_t)dim)] = 1; /* the static side appears later */
        dl_lookup_spec_t spec = {K0, 1, 1, table_fn, &tb, c.st, dl_rng_below(&r, 2) == 0};
        dl_join_col_t cols[3] = {{DL_JOIN_KEY, 0}, {DL_JOIN_LEFT, 1}, {DL_JOIN_RIGHT, 0}};
        dl_coll_t *j = dl_lookup_join(dl_input_coll(in), &spec, cols, 3, &err);
        assert_non_null(j);
        c.cap = dl_capture_new(j, NULL, NULL, &err);
        assert_non_null(c.cap);
        feed(&r, g, in, u, n, dim, lk_check, &c);
        assert_true(tb.calls > 0 || n == 0);
        free(c.log.row);
        free(c.log.t);
        free(c.log.d);
        dl_graph_free(g);
    }
}

/* ---- combine -------------------------------------------------------------------------- */
typedef struct cb_case {
    const upd_t *u;
    int n, dim;
    dl_capture_t *cap;
    clog_t log;
    uint64_t seed;
} cb_case_t;

static void cb_check(void *ctx, const dl_antichain_t *f) {
    cb_case_t *c = ctx;
    clog_pop(c->cap, &c->log);
    int total = c->dim == 1 ? GRID : GRID * GRID;
    for (int gi = 0; gi < total; gi++) {
        uint64_t t[2] = {(uint64_t)(gi % GRID), (uint64_t)(gi / GRID)};
        if (dl_antichain_less_equal(f, t))
            continue;
        int64_t cnt[NKEYS] = {0}, sum[NKEYS] = {0};
        for (int i = 0; i < c->n; i++)
            if (tle(c->u[i].t, t, c->dim)) {
                cnt[c->u[i].k] += c->u[i].d;
                sum[c->u[i].k] += c->u[i].d * c->u[i].x;
            }
        static bag_t want, got;
        memset(&want, 0, sizeof want);
        memset(&got, 0, sizeof got);
        for (int k = 0; k < NKEYS; k++)
            if (cnt[k] != 0)
                bag_add(&want, k, cnt[k], sum[k], 1);
        for (size_t i = 0; i < c->log.n; i++)
            if (tle(c->log.t[i], t, c->dim) && c->log.row[i][1] != 0) /* count 0: no group */
                bag_add(&got, c->log.row[i][0], c->log.row[i][1], c->log.row[i][2], c->log.d[i]);
        if (!bag_eq(&want, &got))
            dl_prop_fail("combine + linear sum (seed %llu, dim %d) differs from the naive "
                         "count and sum at (%llu,%llu): %d groups wanted, %d got",
                         (unsigned long long)c->seed, c->dim, (unsigned long long)t[0],
                         (unsigned long long)t[1], want.n, got.n);
    }
}

static const dl_linear_agg_t SUMS[2] = {{DL_LINEAR_SUM, 0}, {DL_LINEAR_SUM, 1}};

/* input (k, x) -> combine by k summing x -> arrange by k -> LINEAR sums of its columns. */
static dl_capture_t *combine_graph(dl_graph_t *g, dl_input_t *in, dl_error_t *err) {
    static const uint32_t K0[1] = {0}, S1[1] = {1}, V12[2] = {1, 2};
    dl_coll_t *cb = dl_combine(dl_input_coll(in), K0, 1, S1, 1, err);
    dl_arr_t *a = cb ? dl_arrange(cb, K0, 1, V12, 2, err) : NULL;
    dl_reduce_spec_t rs = {.kind = DL_REDUCE_LINEAR, .aggs = SUMS, .n_aggs = 2};
    dl_arr_t *red = a ? dl_reduce(a, &rs, err) : NULL;
    (void)g;
    return red ? dl_capture_new(dl_arr_coll(red), NULL, NULL, err) : NULL;
}

static void test_combine_oracle(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("combine.oracle");
    dl_rng_t r = {seed};
    int iters = (int)dl_prop_iters(200);
    for (int it = 0; it < iters; it++) {
        int dim = 1 + it % 2, n = 5 + (int)dl_rng_below(&r, 60);
        upd_t u[64];
        random_updates(&r, u, n, dim);
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new((size_t)dim, &err);
        dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
        cb_case_t c = {u, n, dim, NULL, {0}, seed};
        c.cap = combine_graph(g, in, &err);
        assert_non_null(c.cap);
        feed(&r, g, in, u, n, dim, cb_check, &c);
        free(c.log.row);
        free(c.log.t);
        free(c.log.d);
        dl_graph_free(g);
    }
}

static void test_combine_errors(void **state) {
    (void)state;
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    assert_non_null(combine_graph(g, in, &err));
    uint64_t t = 0, t1 = 1;
    dl_value_t row[2] = {dl_value_int(1), dl_value_double(0.5)};
    assert_int_equal(dl_input_update(in, row, 2, &t, 1, &err), 0);
    assert_int_equal(dl_input_advance_to(in, &t1, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), DL_ETYPE);
    dl_graph_free(g);
    /* bad arguments */
    g = dl_graph_new(1, &err);
    in = dl_input_new(dl_graph_root(g), 2, &err);
    static const uint32_t K9[1] = {9}, S1[1] = {1};
    memset(&err, 0, sizeof err);
    assert_null(dl_combine(dl_input_coll(in), K9, 1, S1, 1, &err));
    assert_int_not_equal(err.code, 0);
    dl_graph_free(g);
}

DL_TEST_GROUP(lookup, cmocka_unit_test(test_lookup_join_oracle),
              cmocka_unit_test(test_combine_oracle), cmocka_unit_test(test_combine_errors));
