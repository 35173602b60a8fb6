/*
 * test_oracle.c: random operator graphs fed random update streams (retractions, 1-, 2- and
 * 3-dimensional times arriving out of order, frontiers advanced in random steps), every
 * node captured, compared at every time of a small grid with a naive evaluator that
 * recomputes each operator's meaning from accumulated multisets (DESIGN-NOTES §1-2).
 * Covers map, filter, project, concat, negate, consolidate, join, reduce (count, sum,
 * min, distinct), iterate (enter, variable, leave) and the scheduler's completeness.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "dataflow/dataflow.h" /* one test looks at the spine's layout */

#include <deltalog/dataflow.h>
#include <stdio.h>
#include <stdlib.h>

#define MAXR  256 /* rows in an oracle multiset */
#define GRID  3   /* grid coordinates 0..GRID-1 */
#define MAXN  16  /* nodes in a random graph */
#define MAXUP 512 /* updates per case */

/* ---- oracle multisets of (a, b) rows ---------------------------------------------------- */
typedef struct ms {
    int64_t r[MAXR][2];
    int64_t c[MAXR];
    int n;
} ms_t;

static void ms_add(ms_t *m, int64_t a, int64_t b, int64_t c) {
    if (c == 0)
        return;
    for (int i = 0; i < m->n; i++)
        if (m->r[i][0] == a && m->r[i][1] == b) {
            m->c[i] += c;
            if (m->c[i] == 0) {
                m->n--;
                m->r[i][0] = m->r[m->n][0];
                m->r[i][1] = m->r[m->n][1];
                m->c[i] = m->c[m->n];
            }
            return;
        }
    assert_true(m->n < MAXR);
    m->r[m->n][0] = a;
    m->r[m->n][1] = b;
    m->c[m->n] = c;
    m->n++;
}

static bool ms_eq(const ms_t *x, const ms_t *y) {
    if (x->n != y->n)
        return false;
    for (int i = 0; i < x->n; i++) {
        bool found = false;
        for (int j = 0; j < y->n && !found; j++)
            found = x->r[i][0] == y->r[j][0] && x->r[i][1] == y->r[j][1] && x->c[i] == y->c[j];
        if (!found)
            return false;
    }
    return true;
}

static void ms_print(const char *what, const ms_t *m) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < m->n; i++)
        fprintf(stderr, " (%lld,%lld)x%lld", (long long)m->r[i][0], (long long)m->r[i][1],
                (long long)m->c[i]);
    fprintf(stderr, "\n");
}

/* ---- graphs ---------------------------------------------------------------------------- */
typedef enum kind {
    K_INPUT,
    K_SWAP,
    K_INC,
    K_FILTER,
    K_PROJ,
    K_CONCAT,
    K_NEGATE,
    K_CONSOL,
    K_JOIN,
    K_COUNT,
    K_SUM,
    K_MIN,
    K_DISTINCT,
    K_ITER,
    K__N
} kind_t;

typedef struct gnode {
    kind_t k;
    int a, b; /* inputs */
} gnode_t;

typedef struct upd {
    int input;
    int64_t r[2];
    uint64_t t[3];
    int64_t d;
} upd_t;

typedef struct gcase {
    int dim;
    int n;
    gnode_t nodes[MAXN];
    upd_t ups[MAXUP];
    int n_ups;
} gcase_t;

static bool le(const uint64_t *a, const uint64_t *b, int dim) {
    for (int i = 0; i < dim; i++)
        if (a[i] > b[i])
            return false;
    return true;
}

static void oracle_unary(kind_t k, const ms_t *x, ms_t *out) {
    out->n = 0;
    switch (k) {
        case K_SWAP:
            for (int i = 0; i < x->n; i++)
                ms_add(out, x->r[i][1], x->r[i][0], x->c[i]);
            break;
        case K_INC:
            for (int i = 0; i < x->n; i++)
                ms_add(out, (x->r[i][0] + 1) % 4, x->r[i][1], x->c[i]);
            break;
        case K_FILTER:
            for (int i = 0; i < x->n; i++)
                if (x->r[i][0] <= x->r[i][1])
                    ms_add(out, x->r[i][0], x->r[i][1], x->c[i]);
            break;
        case K_PROJ:
            for (int i = 0; i < x->n; i++)
                ms_add(out, x->r[i][0], x->r[i][0], x->c[i]);
            break;
        case K_NEGATE:
            for (int i = 0; i < x->n; i++)
                ms_add(out, x->r[i][0], x->r[i][1], -x->c[i]);
            break;
        case K_CONSOL:
            *out = *x;
            break;
        case K_DISTINCT:
            for (int i = 0; i < x->n; i++)
                if (x->c[i] > 0)
                    ms_add(out, x->r[i][0], x->r[i][1], 1);
            break;
        case K_COUNT:
        case K_SUM:
        case K_MIN: {
            /* Group by column 0. */
            for (int i = 0; i < x->n; i++) {
                int64_t key = x->r[i][0];
                bool seen = false;
                for (int j = 0; j < i; j++)
                    seen |= x->r[j][0] == key;
                if (seen)
                    continue;
                int64_t cnt = 0, sum = 0, mn = INT64_MAX;
                for (int j = i; j < x->n; j++) {
                    if (x->r[j][0] != key)
                        continue;
                    cnt += x->c[j];
                    sum += x->r[j][1] * x->c[j];
                    if (x->c[j] > 0 && x->r[j][1] < mn)
                        mn = x->r[j][1];
                }
                if (k == K_COUNT && cnt != 0)
                    ms_add(out, key, cnt, 1);
                if (k == K_SUM)
                    ms_add(out, key, sum, 1);
                if (k == K_MIN && mn != INT64_MAX)
                    ms_add(out, key, mn, 1);
            }
            break;
        }
        default:
            fail_msg("bad unary kind %d", k);
    }
}

/* Contents of node i at time t, from every update (design: only updates <= t count). */
static void oracle_eval(const gcase_t *c, int i, const uint64_t *t, ms_t *memo, bool *done) {
    if (done[i])
        return;
    const gnode_t *g = &c->nodes[i];
    ms_t *out = &memo[i];
    out->n = 0;
    if (g->k == K_INPUT) {
        for (int u = 0; u < c->n_ups; u++)
            if (c->ups[u].input == i && le(c->ups[u].t, t, c->dim))
                ms_add(out, c->ups[u].r[0], c->ups[u].r[1], c->ups[u].d);
        done[i] = true;
        return;
    }
    oracle_eval(c, g->a, t, memo, done);
    if (g->k == K_CONCAT || g->k == K_JOIN)
        oracle_eval(c, g->b, t, memo, done);
    const ms_t *x = &memo[g->a], *y = &memo[g->b];
    switch (g->k) {
        case K_CONCAT:
            for (int k = 0; k < x->n; k++)
                ms_add(out, x->r[k][0], x->r[k][1], x->c[k]);
            for (int k = 0; k < y->n; k++)
                ms_add(out, y->r[k][0], y->r[k][1], y->c[k]);
            break;
        case K_JOIN:
            for (int p = 0; p < x->n; p++)
                for (int q = 0; q < y->n; q++)
                    if (x->r[p][0] == y->r[q][0])
                        ms_add(out, x->r[p][1], y->r[q][1], x->c[p] * y->c[q]);
            break;
        case K_ITER: {
            /* v0 = x; v(i+1) = distinct(v(i) + inc(v(i))); the output is the limit. */
            static ms_t v, incv, cat;
            v = *x;
            for (int it = 0; it < 64; it++) {
                oracle_unary(K_INC, &v, &incv);
                cat = v;
                for (int k = 0; k < incv.n; k++)
                    ms_add(&cat, incv.r[k][0], incv.r[k][1], incv.c[k]);
                oracle_unary(K_DISTINCT, &cat, out);
                if (ms_eq(out, &v))
                    break;
                v = *out;
            }
            break;
        }
        default:
            oracle_unary(g->k, x, out);
    }
    done[i] = true;
}

/* ---- engine side ----------------------------------------------------------------------- */
static int swap_fn(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    (void)ctx;
    dl_value_t r[2] = {row[1], row[0]};
    return dl_emit(out, r);
}
static int inc_fn(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    (void)ctx;
    dl_value_t r[2] = {dl_value_int((row[0].as.i + 1) % 4), row[1]};
    return dl_emit(out, r);
}
static bool le_fn(void *ctx, const dl_value_t *row) {
    (void)ctx;
    return row[0].as.i <= row[1].as.i;
}

typedef struct cap_log {
    int dim;
    int n;
    uint64_t t[4096][3];
    int64_t r[4096][2];
    int64_t d[4096];
    uint64_t last[3]; /* last delivered time, to check lexicographic order per run */
    bool any;
} cap_log_t;

static int cap_fn(void *ctx, const dl_diff_t *d) {
    cap_log_t *l = ctx;
    assert_int_equal(d->arity, 2);
    assert_true(d->n > 0);
    for (size_t i = 0; i < d->n; i++) {
        assert_true(l->n < 4096);
        memcpy(l->t[l->n], d->time, d->dim * sizeof(uint64_t));
        l->r[l->n][0] = d->rows[2 * i].as.i;
        l->r[l->n][1] = d->rows[2 * i + 1].as.i;
        assert_int_not_equal(d->diffs[i], 0);
        l->d[l->n] = d->diffs[i];
        l->n++;
    }
    return 0;
}

static dl_coll_t *build(dl_graph_t *g, const gnode_t *gn, dl_coll_t **colls, dl_input_t **ins,
                        int i) {
    dl_error_t err = {0};
    dl_coll_t *x = i > 0 && gn->k != K_INPUT ? colls[gn->a] : NULL;
    dl_coll_t *y = gn->k == K_CONCAT || gn->k == K_JOIN ? colls[gn->b] : NULL;
    static const uint32_t proj[2] = {0, 0}, key0[1] = {0}, val1[1] = {1};
    dl_coll_t *r = NULL;
    switch (gn->k) {
        case K_INPUT:
            ins[i] = dl_input_new(dl_graph_root(g), 2, &err);
            r = dl_input_coll(ins[i]);
            break;
        case K_SWAP:
            r = dl_map(x, 2, swap_fn, NULL, &err);
            break;
        case K_INC:
            r = dl_map(x, 2, inc_fn, NULL, &err);
            break;
        case K_FILTER:
            r = dl_filter(x, le_fn, NULL, &err);
            break;
        case K_PROJ:
            r = dl_project(x, proj, 2, &err);
            break;
        case K_CONCAT: {
            dl_coll_t *xs[2] = {x, y};
            r = dl_concat(xs, 2, &err);
            break;
        }
        case K_NEGATE:
            r = dl_negate(x, &err);
            break;
        case K_CONSOL:
            r = dl_consolidate(x, &err);
            break;
        case K_JOIN: {
            dl_arr_t *ax = dl_arrange(x, key0, 1, val1, 1, &err);
            dl_arr_t *ay = dl_arrange(y, key0, 1, val1, 1, &err);
            dl_join_col_t jc[2] = {{DL_JOIN_LEFT, 0}, {DL_JOIN_RIGHT, 0}};
            r = dl_join(ax, ay, jc, 2, &err);
            break;
        }
        case K_COUNT:
        case K_SUM:
        case K_MIN: {
            dl_arr_t *ax = dl_arrange(x, key0, 1, val1, 1, &err);
            dl_reduce_spec_t spec = {.kind = gn->k == K_COUNT ? DL_REDUCE_COUNT
                                             : gn->k == K_SUM ? DL_REDUCE_SUM
                                                              : DL_REDUCE_MIN,
                                     .col = 0};
            dl_arr_t *ra = dl_reduce(ax, &spec, &err);
            r = dl_arr_coll(ra);
            break;
        }
        case K_DISTINCT:
            r = dl_distinct(x, &err);
            break;
        case K_ITER: {
            dl_scope_t *s = dl_iterate_begin(dl_graph_root(g), &err);
            dl_coll_t *xe = dl_enter(s, x, &err);
            dl_var_t *v = dl_var_new(s, xe, &err);
            dl_coll_t *vc = dl_var_coll(v);
            dl_coll_t *inc = dl_map(vc, 2, inc_fn, NULL, &err);
            dl_coll_t *xs[2] = {vc, inc};
            dl_coll_t *cat = dl_concat(xs, 2, &err);
            dl_coll_t *body = dl_distinct(cat, &err);
            assert_int_equal(dl_var_set(v, body, &err), 0);
            r = dl_leave(body, &err);
            break;
        }
        default:
            break;
    }
    if (!r)
        fail_msg("build node %d kind %d: %s", i, gn->k, err.message);
    return r;
}

static void random_case(dl_rng_t *rng, gcase_t *c) {
    memset(c, 0, sizeof *c);
    c->dim = 1 + (int)dl_rng_below(rng, 3);
    int n_in = 1 + (int)dl_rng_below(rng, 2);
    c->n = n_in + 1 + (int)dl_rng_below(rng, MAXN - n_in - 1);
    for (int i = 0; i < c->n; i++) {
        gnode_t *g = &c->nodes[i];
        if (i < n_in) {
            g->k = K_INPUT;
            continue;
        }
        g->k = (kind_t)(1 + dl_rng_below(rng, K__N - 1));
        /* Prefer recent nodes so graphs get deep. */
        g->a = i - 1 - (int)dl_rng_below(rng, (uint64_t)(i < 3 ? i : 3));
        g->b = (int)dl_rng_below(rng, (uint64_t)i);
        /* Joins of joins blow up counts: join only nodes without upstream reduce/joins is
         * not needed; the multiset sizes stay bounded by the value domains. */
    }
}

/* One full case: random graph, random stream, checks after every run. */
static void run_case(dl_rng_t *rng, long iter) {
    static gcase_t c;
    random_case(rng, &c);
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new((size_t)c.dim, &err);
    assert_non_null(g);
    dl_coll_t *colls[MAXN];
    dl_input_t *ins[MAXN] = {0};
    static cap_log_t logs[MAXN];
    for (int i = 0; i < c.n; i++) {
        colls[i] = build(g, &c.nodes[i], colls, ins, i);
        memset(&logs[i], 0, sizeof logs[i]);
        logs[i].dim = c.dim;
        assert_non_null(dl_capture_new(colls[i], cap_fn, &logs[i], &err));
    }
    int dim = c.dim;
    /* The frontier: a small antichain shared by all inputs. */
    dl_antichain_t f;
    dl_antichain_init(&f, (size_t)dim);
    uint64_t zero[3] = {0, 0, 0};
    assert_int_equal(dl_antichain_insert(&f, zero), 1);
    int rounds = 2 + (int)dl_rng_below(rng, 5);
    c.n_ups = 0;
    /* checked[t] for grid times: once complete, contents at t must match forever. */
    for (int round = 0; round <= rounds; round++) {
        bool last = round == rounds;
        if (!last) {
            int k = 1 + (int)dl_rng_below(rng, 12);
            for (int u = 0; u < k && c.n_ups < MAXUP; u++) {
                upd_t *up = &c.ups[c.n_ups];
                int n_inputs = 0;
                while (n_inputs < c.n && c.nodes[n_inputs].k == K_INPUT)
                    n_inputs++;
                up->input = (int)dl_rng_below(rng, (uint64_t)n_inputs);
                up->r[0] = (int64_t)dl_rng_below(rng, 4);
                up->r[1] = (int64_t)dl_rng_below(rng, 4);
                up->d = dl_rng_below(rng, 3) ? 1 : -1;
                const uint64_t *base = f.elems + dl_rng_below(rng, f.n) * (size_t)dim;
                memset(up->t, 0, sizeof up->t);
                for (int d = 0; d < dim; d++)
                    up->t[d] = base[d] + dl_rng_below(rng, 3);
                dl_value_t row[2] = {dl_value_int(up->r[0]), dl_value_int(up->r[1])};
                assert_int_equal(dl_input_update(ins[up->input], row, 2, up->t, up->d, &err), 0);
                c.n_ups++;
                /* Sometimes retract it again at a later time. */
                if (dl_rng_below(rng, 4) == 0 && c.n_ups < MAXUP) {
                    upd_t *r2 = &c.ups[c.n_ups];
                    *r2 = *up;
                    r2->d = -up->d;
                    r2->t[dl_rng_below(rng, (uint64_t)dim)]++;
                    assert_int_equal(dl_input_update(ins[up->input], row, 2, r2->t, r2->d, &err),
                                     0);
                    c.n_ups++;
                }
            }
            /* Advance: each new element is an old one bumped in a random coordinate. */
            dl_antichain_t nf;
            dl_antichain_init(&nf, (size_t)dim);
            int m = 1 + (int)dl_rng_below(rng, 3);
            for (int e = 0; e < m; e++) {
                uint64_t t[3] = {0, 0, 0};
                memcpy(t, f.elems + dl_rng_below(rng, f.n) * (size_t)dim, (size_t)dim * 8);
                t[dl_rng_below(rng, (uint64_t)dim)] += dl_rng_below(rng, 2);
                assert_true(dl_antichain_insert(&nf, t) >= 0);
            }
            for (int i = 0; i < c.n; i++)
                if (c.nodes[i].k == K_INPUT)
                    assert_int_equal(dl_input_advance(ins[i], &nf, &err), 0);
            assert_int_equal(dl_antichain_copy(&f, &nf), 0);
            dl_antichain_fini(&nf);
        } else {
            for (int i = 0; i < c.n; i++)
                if (c.nodes[i].k == K_INPUT)
                    assert_int_equal(dl_input_close(ins[i], &err), 0);
            dl_antichain_clear(&f);
        }
        if (dl_graph_run(g, &err) != 0)
            dl_prop_fail("run failed: %s", err.message);
        /* Check every grid time complete for the inputs. */
        uint64_t t[3] = {0, 0, 0};
        int total = 1;
        for (int d = 0; d < dim; d++)
            total *= GRID;
        for (int gi = 0; gi < total; gi++) {
            int x = gi;
            for (int d = 0; d < dim; d++) {
                t[d] = (uint64_t)(x % GRID);
                x /= GRID;
            }
            if (dl_antichain_less_equal(&f, t))
                continue; /* not complete yet */
            static ms_t memo[MAXN];
            bool done[MAXN] = {0};
            for (int i = 0; i < c.n; i++) {
                oracle_eval(&c, i, t, memo, done);
                static ms_t got;
                got.n = 0;
                for (int k = 0; k < logs[i].n; k++)
                    if (le(logs[i].t[k], t, dim))
                        ms_add(&got, logs[i].r[k][0], logs[i].r[k][1], logs[i].d[k]);
                if (!ms_eq(&got, &memo[i])) {
                    fprintf(stderr, "case %ld dim %d round %d node %d kind %d (a=%d b=%d) time",
                            iter, dim, round, i, c.nodes[i].k, c.nodes[i].a, c.nodes[i].b);
                    for (int d = 0; d < dim; d++)
                        fprintf(stderr, " %llu", (unsigned long long)t[d]);
                    fprintf(stderr, "\n");
                    for (int j = 0; j < c.n; j++)
                        fprintf(stderr, "  node %d kind %d a %d b %d\n", j, c.nodes[j].k,
                                c.nodes[j].a, c.nodes[j].b);
                    ms_print("expected", &memo[i]);
                    ms_print("got", &got);
                    dl_prop_fail("engine and oracle disagree");
                }
            }
        }
    }
    dl_antichain_fini(&f);
    dl_graph_free(g);
}

static void test_oracle_random_graphs(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("oracle_random_graphs")};
    long iters = dl_prop_iters(1500);
    for (long i = 0; i < iters; i++)
        run_case(&rng, i);
}

/* A smoke test with known numbers: map, filter and count over one dimension. */
static void test_oracle_smoke(void **state) {
    (void)state;
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    uint32_t key0[1] = {0};
    dl_coll_t *cnt = dl_count(dl_input_coll(in), key0, 1, &err);
    assert_non_null(cnt);
    static cap_log_t log;
    memset(&log, 0, sizeof log);
    assert_non_null(dl_capture_new(cnt, cap_fn, &log, &err));
    uint64_t t0[1] = {0}, t1[1] = {1}, t2[1] = {2};
    dl_value_t r1[2] = {dl_value_int(1), dl_value_int(10)};
    dl_value_t r2[2] = {dl_value_int(1), dl_value_int(11)};
    assert_int_equal(dl_input_update(in, r1, 2, t0, 1, &err), 0);
    assert_int_equal(dl_input_update(in, r2, 2, t0, 1, &err), 0);
    assert_int_equal(dl_input_advance_to(in, t1, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    assert_int_equal(log.n, 1);
    assert_int_equal(log.r[0][0], 1);
    assert_int_equal(log.r[0][1], 2);
    assert_int_equal(log.d[0], 1);
    assert_int_equal(dl_input_update(in, r1, 2, t1, -1, &err), 0);
    assert_int_equal(dl_input_advance_to(in, t2, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    assert_int_equal(log.n, 3); /* (1,2) -1 and (1,1) +1 at time 1 */
    dl_graph_free(g);
}

/* ---- attaching operators to arrangements that already hold data ------------------------ */
typedef struct late {
    dl_graph_t *g;
    dl_input_t *a, *b;
    dl_arr_t *aa, *ab;
    cap_log_t *logs; /* 5 captures */
} late_t;

static void late_attach(late_t *l) {
    dl_error_t err = {0};
    static const uint32_t K0[1] = {0};
    dl_reduce_spec_t cnt = {.kind = DL_REDUCE_COUNT};
    dl_join_col_t jc[2] = {{DL_JOIN_LEFT, 0}, {DL_JOIN_RIGHT, 0}};
    dl_coll_t *outs[5] = {
        dl_arr_coll(dl_reduce(l->aa, &cnt, &err)),
        dl_join(l->aa, l->ab, jc, 2, &err),
        dl_join(l->aa, l->aa, jc, 2, &err),
        dl_map(dl_arr_coll(l->ab), 2, swap_fn, NULL, &err),
        dl_distinct(dl_project(dl_arr_coll(l->aa), (const uint32_t[]){1, 0}, 2, &err), &err),
    };
    (void)K0;
    for (int i = 0; i < 5; i++) {
        assert_non_null(outs[i]);
        assert_non_null(dl_capture_new(outs[i], cap_fn, &l->logs[i], &err));
    }
}

static void late_build(late_t *l, cap_log_t *logs, bool attach_now) {
    dl_error_t err = {0};
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    l->g = dl_graph_new(1, &err);
    l->a = dl_input_new(dl_graph_root(l->g), 2, &err);
    l->b = dl_input_new(dl_graph_root(l->g), 2, &err);
    l->aa = dl_arrange(dl_input_coll(l->a), K0, 1, V1, 1, &err);
    l->ab = dl_arrange(dl_input_coll(l->b), K0, 1, V1, 1, &err);
    l->logs = logs;
    memset(logs, 0, 5 * sizeof *logs);
    if (attach_now)
        late_attach(l);
}

/* A graph whose count, joins, map and distinct are attached after data arrived (and was
 * compacted) produces the same contents, at every time from the attach on, as a graph
 * built up front: consumers of arrangements get the contents replayed. */
static void test_oracle_attach_later(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("oracle_attach_later")};
    long cases = dl_prop_iters(60);
    static cap_log_t la[5], lb[5];
    for (long cs = 0; cs < cases; cs++) {
        late_t early, late;
        late_build(&early, la, true);
        late_build(&late, lb, false);
        int attach_at = 1 + (int)dl_rng_below(&rng, 4), rounds = attach_at + 3;
        dl_error_t err = {0};
        for (int t = 0; t < rounds; t++) {
            if (t == attach_at)
                late_attach(&late);
            int k = 1 + (int)dl_rng_below(&rng, 8);
            for (int i = 0; i < k; i++) {
                dl_value_t row[2] = {dl_value_int((int64_t)dl_rng_below(&rng, 4)),
                                     dl_value_int((int64_t)dl_rng_below(&rng, 4))};
                bool to_a = dl_rng_below(&rng, 2);
                int64_t d = dl_rng_below(&rng, 3) ? 1 : -1;
                uint64_t tt[1] = {(uint64_t)t};
                assert_int_equal(dl_input_update(to_a ? early.a : early.b, row, 2, tt, d, &err), 0);
                assert_int_equal(dl_input_update(to_a ? late.a : late.b, row, 2, tt, d, &err), 0);
            }
            uint64_t nt[1] = {(uint64_t)t + 1};
            late_t *gs[2] = {&early, &late};
            for (int x = 0; x < 2; x++) {
                assert_int_equal(dl_input_advance_to(gs[x]->a, nt, &err), 0);
                assert_int_equal(dl_input_advance_to(gs[x]->b, nt, &err), 0);
                assert_int_equal(dl_graph_run(gs[x]->g, &err), 0);
                while (dl_graph_maintain(gs[x]->g, 1u << 16, &err) == 1) {
                }
            }
            /* Compare accumulations at every complete time from the attach on. */
            for (uint64_t q = (uint64_t)attach_at; q <= (uint64_t)t && t >= attach_at; q++)
                for (int c = 0; c < 5; c++) {
                    static ms_t x, y;
                    x.n = y.n = 0;
                    for (int i = 0; i < la[c].n; i++)
                        if (la[c].t[i][0] <= q)
                            ms_add(&x, la[c].r[i][0], la[c].r[i][1], la[c].d[i]);
                    for (int i = 0; i < lb[c].n; i++)
                        if (lb[c].t[i][0] <= q)
                            ms_add(&y, lb[c].r[i][0], lb[c].r[i][1], lb[c].d[i]);
                    if (!ms_eq(&x, &y)) {
                        ms_print("built up front", &x);
                        ms_print("attached later", &y);
                        dl_prop_fail("case %ld output %d at time %llu (attached at %d)", cs, c,
                                     (unsigned long long)q, attach_at);
                    }
                }
        }
        dl_graph_free(early.g);
        dl_graph_free(late.g);
    }
}

/* More updates than one input chunk (DL_INPUT_CHUNK): they are sealed in chunks and all
 * arrive, across map, filter and count. */
static void test_oracle_large_input_chunks(void **state) {
    (void)state;
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    dl_coll_t *f = dl_filter(dl_map(dl_input_coll(in), 2, swap_fn, NULL, &err), le_fn, NULL, &err);
    static const uint32_t K0[1] = {0};
    dl_coll_t *c = dl_count(f, K0, 1, &err);
    static cap_log_t log;
    memset(&log, 0, sizeof log);
    assert_non_null(dl_capture_new(c, cap_fn, &log, &err));
    uint64_t t[1] = {0};
    long n = 200000;
    for (long i = 0; i < n; i++) {
        /* swap gives (i % 3, i % 4 + 1); the filter keeps col0 <= col1. */
        dl_value_t row[2] = {dl_value_int(i % 4 + 1), dl_value_int(i % 3)};
        assert_int_equal(dl_input_update(in, row, 2, t, 1, &err), 0);
    }
    t[0] = 1;
    assert_int_equal(dl_input_advance_to(in, t, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    int64_t want[3] = {0, 0, 0};
    for (long i = 0; i < n; i++)
        if (i % 3 <= i % 4 + 1)
            want[i % 3]++;
    int64_t got[3] = {0, 0, 0};
    for (int k = 0; k < log.n; k++) {
        assert_true(log.r[k][0] >= 0 && log.r[k][0] < 3);
        assert_int_equal(log.d[k], 1);
        got[log.r[k][0]] = log.r[k][1];
    }
    for (int k = 0; k < 3; k++)
        assert_int_equal(got[k], want[k]);
    dl_graph_free(g);
}

static int dup_fn(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    (void)ctx;
    /* (a, b) -> (a, b) x2 and (b, a) x1 when a != b. */
    int rc = dl_emit_diff(out, row, 2);
    if (!rc && row[0].as.i != row[1].as.i) {
        dl_value_t r[2] = {row[1], row[0]};
        rc = dl_emit(out, r);
    }
    return rc;
}

static int jmap_fn(void *ctx, const dl_value_t *key, const dl_value_t *lv, const dl_value_t *rv,
                   dl_emitter_t *out) {
    (void)ctx;
    dl_value_t r[2] = {dl_value_int(key[0].as.i * 100 + lv[0].as.i), rv[0]};
    return dl_emit(out, r);
}

/* flat_map with multiplicities, filter_eq, filter_cols_eq and join_map on a fixed input,
 * against the multisets computed by hand (via the oracle's ms_t). */
static void test_oracle_row_ops(void **state) {
    (void)state;
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, &err);
    dl_coll_t *c = dl_input_coll(in);
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    dl_arr_t *a = dl_arrange(c, K0, 1, V1, 1, &err);
    dl_coll_t *outs[4] = {
        dl_flat_map(c, 2, dup_fn, NULL, &err), dl_filter_eq(c, 1, dl_value_int(3), &err),
        dl_filter_cols_eq(c, 0, 1, &err), dl_join_map(a, a, 2, jmap_fn, NULL, &err)};
    static cap_log_t logs[4];
    memset(logs, 0, sizeof logs);
    for (int i = 0; i < 4; i++) {
        assert_non_null(outs[i]);
        assert_non_null(dl_capture_new(outs[i], cap_fn, &logs[i], &err));
    }
    int64_t rows[5][2] = {{1, 3}, {2, 2}, {1, 4}, {3, 3}, {2, 3}};
    uint64_t t[1] = {0};
    for (int i = 0; i < 5; i++) {
        dl_value_t r[2] = {dl_value_int(rows[i][0]), dl_value_int(rows[i][1])};
        assert_int_equal(dl_input_update(in, r, 2, t, 1, &err), 0);
    }
    assert_int_equal(dl_input_close(in, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    static ms_t want[4], got;
    memset(want, 0, sizeof want);
    for (int i = 0; i < 5; i++) {
        int64_t x = rows[i][0], y = rows[i][1];
        ms_add(&want[0], x, y, 2);
        if (x != y)
            ms_add(&want[0], y, x, 1);
        if (y == 3)
            ms_add(&want[1], x, y, 1);
        if (x == y)
            ms_add(&want[2], x, y, 1);
        for (int j = 0; j < 5; j++)
            if (rows[j][0] == x)
                ms_add(&want[3], x * 100 + y, rows[j][1], 1);
    }
    for (int i = 0; i < 4; i++) {
        got.n = 0;
        for (int k = 0; k < logs[i].n; k++)
            ms_add(&got, logs[i].r[k][0], logs[i].r[k][1], logs[i].d[k]);
        if (!ms_eq(&got, &want[i])) {
            ms_print("expected", &want[i]);
            ms_print("got", &got);
            fail_msg("operator %d disagrees", i);
        }
    }
    dl_graph_free(g);
}

/* Sums a capture's diffs per (first column, second column) into counts[k*8+v]. */
static int narrow_cap(void *ctx, const dl_diff_t *d) {
    int64_t *counts = ctx;
    for (size_t i = 0; i < d->n; i++) {
        int64_t k = d->rows[i * d->arity].as.i, v = d->rows[i * d->arity + 1].as.i;
        counts[k * 8 + v] += d->diffs[i];
    }
    return 0;
}

/* Consumers attached after an arrangement's data was merged into narrow batches (one time,
 * diffs +1: stored once) get the same contents as if attached up front: the replay to a
 * map and a join's initial contents read the narrow layout; later updates (retractions)
 * merge into it. */
static void test_oracle_attach_later_narrow(void **state) {
    (void)state;
    enum { N = 70000 };
    dl_error_t err = {0};
    static const uint32_t K0[1] = {0}, V1[1] = {1};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *a = dl_input_new(dl_graph_root(g), 2, &err);
    dl_input_t *b = dl_input_new(dl_graph_root(g), 2, &err);
    dl_arr_t *aa = dl_arrange(dl_input_coll(a), K0, 1, V1, 1, &err);
    dl_arr_t *ab = dl_arrange(dl_input_coll(b), K0, 1, V1, 1, &err);
    assert_non_null(aa);
    assert_non_null(ab);
    uint64_t t[1] = {0};
    for (int64_t k = 0; k < N; k++) {
        dl_value_t row[2] = {dl_value_int(k), dl_value_int(k % 7)};
        assert_int_equal(dl_input_update(a, row, 2, t, 1, &err), 0);
    }
    dl_value_t brow[2] = {dl_value_int(5), dl_value_int(1)};
    assert_int_equal(dl_input_update(b, brow, 2, t, 1, &err), 0);
    t[0] = 1;
    assert_int_equal(dl_input_advance_to(a, t, &err), 0);
    assert_int_equal(dl_input_advance_to(b, t, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    while (dl_graph_maintain(g, 1u << 20, &err) == 1) {
    }
    /* The merged batch is narrow (that is what this test is about). */
    const dl_spine_t *sp = &aa->spine;
    bool narrow = false;
    for (size_t i = 0; i < sp->n; i++)
        narrow |= sp->batches[i]->u.narrow != 0;
    assert_true(narrow);
    /* Attach: a copy of the arranged collection, and a join with b. */
    static int64_t copy[N * 8];
    memset(copy, 0, sizeof copy);
    dl_coll_t *id = dl_concat((dl_coll_t *[]){dl_arr_coll(aa)}, 1, &err);
    assert_non_null(id);
    assert_non_null(dl_capture_new(id, narrow_cap, copy, &err));
    dl_join_col_t jc[2] = {{DL_JOIN_KEY, 0}, {DL_JOIN_LEFT, 0}};
    dl_coll_t *j = dl_join(aa, ab, jc, 2, &err);
    assert_non_null(j);
    static int64_t joined[N * 8];
    memset(joined, 0, sizeof joined);
    assert_non_null(dl_capture_new(j, narrow_cap, joined, &err));
    /* Retract the even keys at time 1. */
    for (int64_t k = 0; k < N; k += 2) {
        dl_value_t row[2] = {dl_value_int(k), dl_value_int(k % 7)};
        assert_int_equal(dl_input_update(a, row, 2, t, -1, &err), 0);
    }
    t[0] = 2;
    assert_int_equal(dl_input_advance_to(a, t, &err), 0);
    assert_int_equal(dl_input_advance_to(b, t, &err), 0);
    assert_int_equal(dl_graph_run(g, &err), 0);
    while (dl_graph_maintain(g, 1u << 20, &err) == 1) {
    }
    for (int64_t k = 0; k < N; k++)
        for (int64_t v = 0; v < 7; v++)
            assert_int_equal(copy[k * 8 + v], k % 2 == 1 && v == k % 7 ? 1 : 0);
    for (int64_t k = 0; k < N; k++)
        for (int64_t v = 0; v < 7; v++)
            assert_int_equal(joined[k * 8 + v], k == 5 && v == 5 ? 1 : 0);
    dl_graph_free(g);
}

DL_TEST_GROUP(oracle, cmocka_unit_test(test_oracle_row_ops),
              cmocka_unit_test(test_oracle_attach_later_narrow),
              cmocka_unit_test(test_oracle_large_input_chunks), cmocka_unit_test(test_oracle_smoke),
              cmocka_unit_test(test_oracle_attach_later),
              cmocka_unit_test(test_oracle_random_graphs));
