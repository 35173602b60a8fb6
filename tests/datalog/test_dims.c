/*
 * test_dims.c: multi-dimensional engines (dl_engine_new_dims; docs/datalog.md
 * "Multi-dimensional engines"): queries watching [tx, dim] share one graph and its base
 * arrangements, and compute exactly what standalone dl_live_new_dims queries compute.
 *
 * engine_dims_shares_base: a second, different query over the same attributes adds no
 * base arrangement and (almost) no arranged records to the engine, while the same query
 * alone in a fresh engine indexes both attributes (dl_engine_stats); the results equal the
 * standalone query's.
 * engine_dims_matches: random transaction streams with retroactive dimension coordinates
 * (below coordinates already seen, at or above the dimension's frontier) and frontier
 * advances; queries join the engine and leave it at random steps, each with a standalone
 * twin created at the same time. After every commit each engine query's change (rows,
 * times, diffs) equals its twin's exactly, its initial changes equal the twin's summed over
 * system time, and, when every datom's changes carry non-decreasing coordinates (the
 * condition under which docs/datalog.md promises it), the sum of its changes at each point
 * [now, D] equals the one-shot query on dl_db_as_of_point. Seeded (DL_SEED reproduces).
 * engine_dims_nomem: allocation failure at every point of adding a query that loads a new
 * attribute's history next to another query: ENOMEM or success, the other query keeps its
 * result unless the shared run failed (then the engine says so), nothing leaks (ASan).
 */
#include "tests/datalog/live_helpers.h"
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "datalog/datalog.h"

#include <deltalog/dataflow.h>
#include <deltalog/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dschema =
    "[{:db/ident :o/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :o/amt :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :o/ok :db/valueType :db.type/boolean :db/cardinality :db.cardinality/one}"
    " {:db/ident :time/d :db/timeDimension true}]";

static dl_query_t *parse(const char *text) {
    dl_query_t *q = NULL;
    dl_error_t err = {0};
    must(dl_query_parse(text, strlen(text), NULL, 0, NULL, &q, &err), &err, text);
    return q;
}

/* ---- change logs: (row text, time [tx, d], diff) ------------------------------------------ */

typedef struct chg {
    char row[64];
    uint64_t t[2];
    int64_t d;
} chg_t;

typedef struct clog {
    chg_t *v;
    size_t n, cap;
} clog_t;

static void row_text(const dl_value_t *row, size_t arity, char *out, size_t cap) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_putc(&b, '[');
    for (size_t c = 0; c < arity; c++) {
        if (c)
            dl__buf_putc(&b, ' ');
        dl__edn_print_value(row[c], &b);
    }
    dl__buf_putc(&b, ']');
    assert_false(b.oom);
    assert_true(b.len < cap);
    memcpy(out, b.data, b.len + 1);
    dl__buf_fini(&b);
}

static void clog_add(clog_t *g, const char *row, const uint64_t *t, int64_t d) {
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->v = realloc(g->v, g->cap * sizeof *g->v);
        assert_non_null(g->v);
    }
    chg_t *c = &g->v[g->n++];
    snprintf(c->row, sizeof c->row, "%s", row);
    c->t[0] = t[0];
    c->t[1] = t[1];
    c->d = d;
}

/* Appends l's last changes to g (system time 0 when no_tx: initial changes). */
static void take(const dl_live_t *l, size_t arity, clog_t *g, bool no_tx) {
    const dl_value_t *rows;
    const int64_t *diffs;
    size_t n = dl_live_changes(l, &rows, &diffs);
    const uint64_t *tm = dl_live_change_times(l);
    assert_int_equal(dl_live_dims(l), 2);
    assert_true(n == 0 || tm != NULL);
    for (size_t i = 0; i < n; i++) {
        char r[64];
        row_text(rows + i * arity, arity, r, sizeof r);
        uint64_t t[2] = {no_tx ? 0 : tm[2 * i], tm[2 * i + 1]};
        clog_add(g, r, t, diffs[i]);
    }
}

static int chg_cmp(const void *a, const void *b) {
    const chg_t *x = a, *y = b;
    for (int k = 0; k < 2; k++)
        if (x->t[k] != y->t[k])
            return x->t[k] < y->t[k] ? -1 : 1;
    return strcmp(x->row, y->row);
}

/* Sorts and consolidates g: one entry per (time, row), none with diff 0. */
static void clog_norm(clog_t *g) {
    if (g->n)
        qsort(g->v, g->n, sizeof *g->v, chg_cmp);
    size_t w = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (w && chg_cmp(&g->v[w - 1], &g->v[i]) == 0) {
            g->v[w - 1].d += g->v[i].d;
        } else {
            g->v[w++] = g->v[i];
        }
        if (g->v[w - 1].d == 0)
            w--;
    }
    g->n = w;
}

static void clog_expect_eq(clog_t *a, clog_t *b, const char *what, const char *query) {
    clog_norm(a);
    clog_norm(b);
    bool eq = a->n == b->n;
    for (size_t i = 0; eq && i < a->n; i++)
        eq = chg_cmp(&a->v[i], &b->v[i]) == 0 && a->v[i].d == b->v[i].d;
    if (eq)
        return;
    for (size_t i = 0; i < a->n; i++)
        fprintf(stderr, "  engine     %s @[%llu %llu] %+lld\n", a->v[i].row,
                (unsigned long long)a->v[i].t[0], (unsigned long long)a->v[i].t[1],
                (long long)a->v[i].d);
    for (size_t i = 0; i < b->n; i++)
        fprintf(stderr, "  standalone %s @[%llu %llu] %+lld\n", b->v[i].row,
                (unsigned long long)b->v[i].t[0], (unsigned long long)b->v[i].t[1],
                (long long)b->v[i].d);
    dl_prop_fail("%s: engine and standalone changes differ for %s", what, query);
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The rows of a log at point [any tx, D] (counts summed over changes with d <= D), each
 * with count 1, as a sorted, space-separated text; false when a count is not 0 or 1. */
static bool clog_at(const clog_t *g, uint64_t D, dl_buf_t *out) {
    clog_t s = {0};
    for (size_t i = 0; i < g->n; i++)
        if (g->v[i].t[1] <= D)
            clog_add(&s, g->v[i].row, (uint64_t[2]){0, 0}, g->v[i].d);
    clog_norm(&s);
    bool ok = true;
    for (size_t i = 0; i < s.n; i++) {
        ok = ok && s.v[i].d == 1;
        if (i)
            dl__buf_putc(out, ' ');
        dl__buf_puts(out, s.v[i].row);
    }
    free(s.v);
    return ok;
}

/* The one-shot result at point [T, D] in the same text. */
static void one_shot_at(dl_store_t *st, const dl_query_t *q, uint64_t T, uint64_t D,
                        dl_buf_t *out) {
    dl_db_t *now = dl_store_db(st);
    uint64_t p[2] = {T, D};
    dl_db_t *v = dl_db_as_of_point(now, p, 2);
    dl_query_result_t *r = NULL;
    dl_error_t err = {0};
    must(dl_query_run(q, v, NULL, 0, &r, &err), &err, "one-shot");
    size_t n = dl_query_result_rows(r), nc = dl_query_result_cols(r);
    char **rows = calloc(n ? n : 1, sizeof *rows);
    assert_non_null(rows);
    for (size_t i = 0; i < n; i++) {
        dl_value_t vals[4];
        assert_true(nc <= 4);
        for (size_t c = 0; c < nc; c++)
            assert_int_equal(dl_query_result_value(r, i, c, &vals[c], NULL), 0);
        rows[i] = malloc(64);
        assert_non_null(rows[i]);
        row_text(vals, nc, rows[i], 64);
    }
    qsort(rows, n, sizeof *rows, str_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i)
            dl__buf_putc(out, ' ');
        dl__buf_puts(out, rows[i]);
        free(rows[i]);
    }
    free(rows);
    dl_query_result_free(r);
    dl_db_unref(v);
    dl_db_unref(now);
}

/* ---- sharing ------------------------------------------------------------------------------ */

static void test_engine_dims_shares_base(void **state) {
    (void)state;
    dl_store_t *st = NULL;
    dl_error_t err = {0};
    must(dl_store_open_memory(&st, &err), &err, "open");
    transact(st, dschema);
    const int N = 2000;
    /* Four transactions at days 5, 2 (retroactive), 7 and 3 (retroactive), then changes
     * and retractions on day 6. */
    static const int days[4] = {5, 2, 7, 3};
    for (int k = 0; k < 4; k++) {
        dl_buf_t b;
        dl__buf_init(&b);
        dl__buf_puts(&b, "[");
        for (int i = k; i < N; i += 4)
            dl__buf_printf(&b, "{:o/id %d :o/amt %d}", i, i % 100);
        dl__buf_printf(&b, "[:db/add \"datomic.tx\" :time/d %d]]", days[k]);
        transact(st, b.data);
        dl__buf_fini(&b);
    }
    transact(st, "[[:db/add [:o/id 1] :o/amt 0] [:db/retract [:o/id 2] :o/amt 2]"
                 " [:db/add \"datomic.tx\" :time/d 6]]");
    dl_db_t *db = dl_store_db(st);
    dl_engine_t *e = NULL, *alone = NULL;
    assert_int_equal(dl_engine_new_dims(db, 0, &e, NULL), DL_EINVAL);
    assert_int_equal(dl_engine_new_dims(db, DL_TIME_MAX_ROOT_DIM + 1, &e, NULL), DL_EINVAL);
    must(dl_engine_new_dims(db, 2, &e, &err), &err, "engine");
    assert_int_equal(dl_engine_dims(e), 2);
    const char *t1 = "[:find ?n ?a :where [?o :o/id ?n] [?o :o/amt ?a]]";
    const char *t2 = "[:find ?a ?n :where [?o :o/amt ?a] [?o :o/id ?n] [(< ?a 2)]]";
    const char *ttx = "[:find ?o ?tx :where [?o :o/amt 3 ?tx]]";
    dl_query_t *q1 = parse(t1), *q2 = parse(t2), *qtx = parse(ttx);
    dl_live_t *l1 = NULL, *l2 = NULL, *la = NULL, *s2 = NULL, *ltx = NULL;
    must(dl_engine_live_new(e, q1, db, NULL, 0, &l1, &err), &err, t1);
    assert_int_equal(dl_live_dims(l1), 2);
    dl_graph_stats_t g1, g2, ga;
    dl_engine_stats(e, &g1);
    must(dl_engine_live_new(e, q2, db, NULL, 0, &l2, &err), &err, t2);
    dl_engine_stats(e, &g2);
    must(dl_engine_new_dims(db, 2, &alone, &err), &err, "engine");
    must(dl_engine_live_new(alone, q2, db, NULL, 0, &la, &err), &err, t2);
    dl_engine_stats(alone, &ga);
    fprintf(stderr,
            "[ dims     ] arrangements/records: first query %zu/%zu, with the second %zu/%zu; "
            "the second alone %zu/%zu\n",
            g1.n_arrangements, g1.arranged_updates, g2.n_arrangements, g2.arranged_updates,
            ga.n_arrangements, ga.arranged_updates);
    /* The first query indexed both attributes (2N datoms and more: the history); the
     * second, a different query over them, adds no base arrangement and few records;
     * alone, it indexes both again. */
    assert_true(g1.arranged_updates >= (size_t)(2 * N));
    assert_true(g2.n_arrangements <= g1.n_arrangements + (ga.n_arrangements - 2));
    assert_true(g2.arranged_updates < g1.arranged_updates + (size_t)N / 10);
    assert_true(ga.arranged_updates >= (size_t)(2 * N));
    /* A query binding the transaction is not taken (as dl_live_new_dims); the engine goes on. */
    assert_int_equal(dl_engine_live_new(e, qtx, db, NULL, 0, &ltx, NULL), DL_EUNSUPPORTED);
    /* The shared query's changes are the standalone one's, per day. */
    must(dl_live_new_dims(q2, db, NULL, 0, 2, &s2, &err), &err, "standalone");
    clog_t a = {0}, b = {0}, c = {0};
    take(l2, 2, &a, true);
    take(s2, 2, &b, true);
    take(la, 2, &c, true);
    clog_t a2 = {0};
    for (size_t i = 0; i < a.n; i++)
        clog_add(&a2, a.v[i].row, a.v[i].t, a.v[i].d);
    clog_expect_eq(&a, &b, "snapshot", t2);
    clog_expect_eq(&c, &a2, "snapshot (alone)", t2);
    assert_true(a.n > 0);
    dl_live_free(ltx);
    dl_live_free(la);
    dl_live_free(s2);
    dl_live_free(l2);
    dl_live_free(l1);
    dl_graph_stats_t g3;
    dl_engine_stats(e, &g3);
    assert_int_equal(g3.n_ops, 0);
    assert_int_equal(g3.n_arrangements, 0);
    free(a.v);
    free(a2.v);
    free(b.v);
    free(c.v);
    dl_query_free(q1);
    dl_query_free(q2);
    dl_query_free(qtx);
    dl_engine_free(alone);
    dl_engine_free(e);
    dl_db_unref(db);
    dl_store_close(st);
}

/* ---- differential: engine vs standalone vs one-shot --------------------------------------- */

#define N_ENT 6
#define MAXP  8

static const char *dqueries[] = {
    "[:find ?n ?a :where [?o :o/id ?n] [?o :o/amt ?a]]",
    "[:find ?n :where [?o :o/ok true] [?o :o/id ?n] [?o :o/amt ?a] [(> ?a 100)]]",
    "[:find (sum ?a) :with ?o :where [?o :o/ok true] [?o :o/amt ?a]]",
    "[:find ?a (count ?o) :where [?o :o/amt ?a]]",
    "[:find ?n :where [?o :o/amt 100] [?o :o/id ?n]]",
    "[:find ?o :where [?o :o/amt 100]]",
    "[:find ?a :where [?o :o/amt ?a] (not [?o :o/ok true])]",
};
#define N_DQ (sizeof dqueries / sizeof dqueries[0])

typedef struct pair {
    const char *text;
    dl_query_t *q;
    size_t arity;
    dl_live_t *eng, *alone;
    clog_t all; /* every change of the engine query (initial ones at system time 0) */
} pair_t;

typedef struct dctx {
    dl_engine_t *e;
    pair_t p[MAXP];
    int rc;
    dl_error_t err;
} dctx_t;

static void dims_listen(void *ctx, const dl_commit_t *c) {
    dctx_t *k = ctx;
    if (k->rc)
        return;
    k->rc = dl_engine_apply(k->e, c, &k->err);
    for (int i = 0; i < MAXP && !k->rc; i++)
        if (k->p[i].alone)
            k->rc = dl_live_apply(k->p[i].alone, c, &k->err);
}

static void pair_open(dctx_t *k, pair_t *p, const char *text, dl_db_t *db) {
    dl_error_t err = {0};
    memset(p, 0, sizeof *p);
    p->text = text;
    p->q = parse(text);
    p->arity = p->q->n_find;
    must(dl_engine_live_new(k->e, p->q, db, NULL, 0, &p->eng, &err), &err, text);
    must(dl_live_new_dims(p->q, db, NULL, 0, 2, &p->alone, &err), &err, text);
    clog_t a = {0}, b = {0};
    take(p->eng, p->arity, &a, true);
    take(p->alone, p->arity, &b, true);
    for (size_t i = 0; i < a.n; i++)
        clog_add(&p->all, a.v[i].row, a.v[i].t, a.v[i].d);
    clog_expect_eq(&a, &b, "initial changes", text);
    free(a.v);
    free(b.v);
}

static void pair_close(pair_t *p) {
    dl_live_free(p->eng);
    dl_live_free(p->alone);
    dl_query_free(p->q);
    free(p->all.v);
    memset(p, 0, sizeof *p);
}

static void test_engine_dims_matches(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("engine_dims_matches")};
    long iters = dl_prop_iters(12);
    dl_value_t dim;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "time/d", 6, &dim, NULL), 0);
    size_t checks = 0;
    for (long it = 0; it < iters; it++) {
        /* monotone: each datom's changes carry non-decreasing day coordinates (the
         * one-shot comparison holds); otherwise only engine == standalone is checked. */
        bool monotone = it % 3 != 2;
        dl_store_t *st = NULL;
        dl_error_t err = {0};
        must(dl_store_open_memory(&st, &err), &err, "open");
        transact(st, dschema);
        transact(st, "[{:o/id 0} {:o/id 1} {:o/id 2} {:o/id 3} {:o/id 4} {:o/id 5}]");
        int64_t amt[N_ENT];
        bool ok[N_ENT];
        uint64_t last_d[N_ENT][2];
        memset(last_d, 0, sizeof last_d);
        for (int i = 0; i < N_ENT; i++) {
            amt[i] = -1;
            ok[i] = false;
        }
        uint64_t frontier = 0, max_d = 0;
        static dctx_t k;
        memset(&k, 0, sizeof k);
        int listen_id = -1;
        int n_pre = (int)dl_rng_below(&r, 6), n_steps = 24;
        for (int step = -n_pre; step < n_steps; step++) {
            if (step == 0) {
                /* The engine and the first queries, over the history so far. */
                dl_db_t *db = dl_store_db(st);
                must(dl_engine_new_dims(db, 2, &k.e, &err), &err, "engine");
                for (int i = 0; i < 3; i++)
                    pair_open(&k, &k.p[i], dqueries[dl_rng_below(&r, N_DQ)], db);
                dl_db_unref(db);
                must(dl_store_listen(st, dims_listen, &k, &listen_id, &err), &err, "listen");
            } else if (step > 0 && dl_rng_below(&r, 4) == 0) {
                /* A query joins (reading the shared, compacted base) or one leaves. */
                int i = (int)dl_rng_below(&r, MAXP);
                if (k.p[i].q) {
                    pair_close(&k.p[i]);
                } else {
                    dl_db_t *db = dl_store_db(st);
                    pair_open(&k, &k.p[i], dqueries[dl_rng_below(&r, N_DQ)], db);
                    dl_db_unref(db);
                }
            }
            bool committed = true;
            if (dl_rng_below(&r, 6) == 0) {
                uint64_t to = frontier + 1 + dl_rng_below(&r, 2), atx = 0;
                must(dl_store_advance(st, dim, to, &atx, &err), &err, "advance");
                frontier = to;
                max_d = DL_MAX(max_d, frontier);
            } else {
                /* A day at or above the frontier, often below the latest seen. */
                uint64_t d = frontier + dl_rng_below(&r, max_d + 3 - frontier);
                dl_buf_t b;
                dl__buf_init(&b);
                dl__buf_puts(&b, "[");
                int n_ops = 0;
                bool used[N_ENT][2] = {{false}};
                for (int o = 0; o < 3; o++) {
                    int ent = (int)dl_rng_below(&r, N_ENT), at = (int)dl_rng_below(&r, 2);
                    /* one change per entity and attribute per transaction */
                    if (used[ent][at] || (monotone && last_d[ent][at] > d))
                        continue;
                    used[ent][at] = true;
                    if (at == 0) {
                        int64_t v = 50 * (int64_t)dl_rng_below(&r, 5);
                        if (amt[ent] >= 0 && dl_rng_below(&r, 3) == 0) {
                            dl__buf_printf(&b, "[:db/retract [:o/id %d] :o/amt %lld]", ent,
                                           (long long)amt[ent]);
                            amt[ent] = -1;
                        } else {
                            dl__buf_printf(&b, "[:db/add [:o/id %d] :o/amt %lld]", ent,
                                           (long long)v);
                            amt[ent] = v;
                        }
                    } else {
                        dl__buf_printf(&b, "[:db/%s [:o/id %d] :o/ok true]",
                                       ok[ent] ? "retract" : "add", ent);
                        ok[ent] = !ok[ent];
                    }
                    last_d[ent][at] = DL_MAX(last_d[ent][at], d);
                    n_ops++;
                }
                dl__buf_printf(&b, " [:db/add \"datomic.tx\" :time/d %llu]]",
                               (unsigned long long)d);
                if (n_ops)
                    transact(st, b.data);
                committed = n_ops > 0;
                dl__buf_fini(&b);
                max_d = DL_MAX(max_d, d);
            }
            if (step < 0 || !committed)
                continue; /* (the last changes are the last commit's, already taken) */
            if (k.rc)
                dl_prop_fail("apply: %s", k.err.message);
            dl_db_t *now = dl_store_db(st);
            uint64_t T = dl_db_basis_tx(now);
            dl_db_unref(now);
            assert_int_equal(dl_engine_tx(k.e), T);
            for (int i = 0; i < MAXP; i++) {
                pair_t *p = &k.p[i];
                if (!p->q)
                    continue;
                assert_int_equal(dl_live_status(p->eng), 0);
                clog_t a = {0}, b = {0};
                take(p->eng, p->arity, &a, false);
                take(p->alone, p->arity, &b, false);
                for (size_t j = 0; j < a.n; j++) {
                    assert_int_equal(a.v[j].t[0], T); /* the commit's changes, at its tx */
                    clog_add(&p->all, a.v[j].row, a.v[j].t, a.v[j].d);
                }
                clog_expect_eq(&a, &b, "after a commit", p->text);
                free(a.v);
                free(b.v);
                if (!monotone)
                    continue;
                for (uint64_t D = 0; D <= max_d + 1; D++) {
                    dl_buf_t got, want;
                    dl__buf_init(&got);
                    dl__buf_init(&want);
                    bool set = clog_at(&p->all, D, &got);
                    one_shot_at(st, p->q, T, D, &want);
                    dl__buf_putc(&got, 0);
                    dl__buf_putc(&want, 0);
                    if (!set || strcmp(got.data, want.data) != 0)
                        dl_prop_fail("%s at [%llu %llu]: engine %s (%s), one-shot %s", p->text,
                                     (unsigned long long)T, (unsigned long long)D, got.data,
                                     set ? "a set" : "not a set", want.data);
                    dl__buf_fini(&got);
                    dl__buf_fini(&want);
                    checks++;
                }
            }
        }
        dl_store_unlisten(st, listen_id);
        for (int i = 0; i < MAXP; i++)
            if (k.p[i].q)
                pair_close(&k.p[i]);
        dl_graph_stats_t gs;
        dl_engine_stats(k.e, &gs);
        assert_int_equal(gs.n_ops, 0); /* the last query took every operator with it */
        dl_engine_free(k.e);
        dl_store_close(st);
    }
    fprintf(stderr, "[ dims     ] %zu one-shot comparisons\n", checks);
    assert_true(checks > 0);
}

static char *result_text(const dl_live_t *l) {
    dl_query_result_t *res = NULL;
    dl_error_t err = {0};
    must(dl_live_result(l, &res, &err), &err, "result");
    char *t = dl_query_result_to_edn(res);
    dl_query_result_free(res);
    assert_non_null(t);
    return t;
}

static void test_engine_dims_nomem(void **state) {
    (void)state;
    dl_store_t *st = NULL;
    dl_error_t err = {0};
    must(dl_store_open_memory(&st, &err), &err, "open");
    transact(st, dschema);
    transact(st, "[{:o/id 1 :o/amt 100} {:o/id 2 :o/amt 200} [:db/add \"datomic.tx\" :time/d 4]]");
    transact(st, "[[:db/add [:o/id 1] :o/ok true] [:db/add \"datomic.tx\" :time/d 2]]");
    transact(st, "[[:db/retract [:o/id 1] :o/ok true] [:db/add [:o/id 2] :o/ok true]"
                 " [:db/add \"datomic.tx\" :time/d 5]]");
    const char *t1 = "[:find ?n ?a :where [?o :o/id ?n] [?o :o/amt ?a]]";
    const char *t2 = "[:find (sum ?a) :with ?o :where [?o :o/ok true] [?o :o/amt ?a]]";
    dl_query_t *q1 = parse(t1), *q2 = parse(t2);
    dl_db_t *db = dl_store_db(st);
    dl_engine_t *e = NULL;
    dl_live_t *l1 = NULL;
    must(dl_engine_new_dims(db, 2, &e, &err), &err, "engine");
    must(dl_engine_live_new(e, q1, db, NULL, 0, &l1, &err), &err, t1);
    char *want1 = result_text(l1);
    long ok = 0, failed = 0;
    for (int64_t n = 0; n < 100000; n += n < 256 ? 1 : 1 + n / 32) {
        dl_live_t *l2 = NULL;
        dl_error_t lerr = {0};
        dl_alloc_fail_after(n);
        int rc = dl_engine_live_new(e, q2, db, NULL, 0, &l2, &lerr);
        dl_alloc_fail_after(-1);
        if (rc != 0 && rc != DL_ENOMEM)
            fail_msg("add with allocation %lld failing: %s: %s", (long long)n, dl_err_name(rc),
                     lerr.message);
        if (rc == DL_ENOMEM && dl_live_status(l1)) {
            /* the shared run failed: the engine is failed for everyone; a new one */
            failed++;
            dl_live_free(l1);
            dl_engine_free(e);
            must(dl_engine_new_dims(db, 2, &e, &err), &err, "engine");
            must(dl_engine_live_new(e, q1, db, NULL, 0, &l1, &err), &err, t1);
            continue;
        }
        char *got1 = result_text(l1);
        assert_string_equal(got1, want1);
        dl_free(got1);
        if (rc == 0) {
            char *got2 = result_text(l2);
            assert_string_equal(got2, "[[200]]");
            dl_free(got2);
            dl_live_free(l2);
            ok++;
            if (n > 256)
                break;
        }
    }
    fprintf(stderr, "[ dims     ] nomem: %ld failed shared runs, %ld successes\n", failed, ok);
    assert_true(ok > 0);
    dl_free(want1);
    dl_live_free(l1);
    dl_engine_free(e);
    dl_query_free(q1);
    dl_query_free(q2);
    dl_db_unref(db);
    dl_store_close(st);
}

DL_TEST_GROUP(dims, cmocka_unit_test(test_engine_dims_shares_base),
              cmocka_unit_test(test_engine_dims_matches), cmocka_unit_test(test_engine_dims_nomem));
