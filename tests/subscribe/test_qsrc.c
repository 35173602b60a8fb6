/*
 * test_qsrc.c: subscriptions to Datalog queries over a real store, end to end: the store's
 * commit listener feeds dl_qsrcs_apply, the registry pumps, and each subscriber's
 * accumulated result equals the reference evaluator's one-shot result on the current
 * database after every transaction. Covers the scenarios at this level: basic
 * updates (additions then retractions arrive as deltas), a filter (non-matching changes
 * deliver nothing), an aggregation (a count changes as retraction plus new row), a
 * parameterized query, sharing of one live query by equal subscriptions, and teardown.
 * qsrc_shared_engine: different queries share the engine's base arrangements (a second
 * query over indexed data allocates far less than the first, which indexed it), results
 * stay right for both, and closing every subscription returns the memory.
 * qsrc_dims_shared_engine: the same for subscriptions watching [tx, day] (n_dims 2): they
 * share the 2-coordinate engine (docs/subscribe.md "Multi-dimensional time"), including
 * after a retroactive day.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <deltalog/datalog.h>
#include <deltalog/store.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/status :db/valueType :db.type/keyword"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/customer :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one}]";

typedef struct env {
    dl_store_t *st;
    dl_db_t *db; /* the current snapshot, refreshed after every transaction */
    dl_qsrcs_t *qs;
    dl_registry_t *reg;
    int apply_rc;
} env_t;

static int current_db(void *ctx, const struct dl_db **out_db, uint64_t *out_time,
                      size_t *out_n_time, dl_error_t *err) {
    (void)err;
    env_t *e = ctx;
    *out_db = e->db;
    uint64_t basis = dl_db_basis_tx(e->db);
    size_t n = basis ? dl_db_tx_time(e->db, basis, out_time, DL_DELTA_MAX_DIM) : 0;
    if (n == 0) {
        out_time[0] = basis;
        n = 1;
    }
    *out_n_time = n > DL_DELTA_MAX_DIM ? DL_DELTA_MAX_DIM : n;
    return 0;
}

static void on_commit(void *ctx, const dl_commit_t *c) {
    env_t *e = ctx;
    dl_error_t err = {0};
    int rc = dl_qsrcs_apply(e->qs, c, &err);
    if (rc && !e->apply_rc)
        e->apply_rc = rc;
}

static void tx(env_t *e, const char *text) {
    dl_error_t err = {0};
    int rc = dl_store_transact_edn(e->st, text, strlen(text), NULL, &err);
    if (rc)
        fail_msg("transact %s: %s", text, err.message);
    dl_db_unref(e->db);
    e->db = dl_store_db(e->st);
    assert_int_equal(e->apply_rc, 0);
}

static void env_open(env_t *e) {
    memset(e, 0, sizeof *e);
    dl_error_t err = {0};
    assert_int_equal(dl_store_open_memory(&e->st, &err), 0);
    e->db = dl_store_db(e->st);
    tx(e, schema);
    dl_qsrc_env_t qe = {current_db, e, NULL};
    assert_int_equal(dl_qsrcs_new(&qe, &e->qs, NULL), 0);
    assert_int_equal(dl_registry_new(dl_qsrcs_vtable(), e->qs, &e->reg, NULL), 0);
    int id;
    assert_int_equal(dl_store_listen(e->st, on_commit, e, &id, &err), 0);
}

static void env_close(env_t *e) {
    dl_registry_free(e->reg);
    dl_qsrcs_free(e->qs);
    dl_db_unref(e->db);
    dl_store_close(e->st);
}

/* A subscriber's accumulated result, with the query text to check it against. */
typedef struct view {
    dl_sub_t *sub;
    const char *query;
    const char *args; /* EDN vector of the inputs, for the reference evaluator */
    dl_delta_t *acc;  /* unsealed, consolidating accumulator */
    int data_msgs;
    uint64_t last_time;
} view_t;

static void view_sub(env_t *e, view_t *v, const char *query, const dl_value_t *in, size_t n_in,
                     const char *args) {
    memset(v, 0, sizeof *v);
    v->query = query;
    v->args = args;
    dl_error_t err = {0};
    int rc = dl_subscribe(e->reg, query, in, n_in, NULL, &v->sub, &err);
    if (rc)
        fail_msg("subscribe %s: %s", query, err.message);
}

/* Takes everything waiting; returns the number of DATA messages taken. */
static int view_drain(view_t *v) {
    int n = 0;
    for (;;) {
        dl_delta_t *d;
        assert_int_equal(dl_sub_next(v->sub, 0, &d, NULL), 0);
        if (!d)
            return n;
        assert_int_equal(dl_delta_kind(d), DL_DELTA_DATA);
        if (!v->acc) {
            assert_true(dl_delta_is_snapshot(d));
            uint64_t t0 = 0;
            assert_int_equal(dl_delta_new(DL_DELTA_DATA, dl_delta_arity(d), &t0, 1, &v->acc, NULL),
                             0);
        }
        for (size_t i = 0; i < dl_delta_len(d); i++)
            assert_int_equal(dl_delta_add(v->acc, dl_delta_row(d, i), dl_delta_diff(d, i), NULL),
                             0);
        assert_true(dl_delta_time(d, NULL)[0] >= v->last_time);
        v->last_time = dl_delta_time(d, NULL)[0];
        dl_delta_unref(d);
        n++;
        v->data_msgs++;
    }
}

/* The accumulated set in the reference evaluator's canonical text (a sorted vector of rows). */
static char *view_text(view_t *v) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_putc(&b, '[');
    if (v->acc) {
        assert_int_equal(dl_delta_sort(v->acc, NULL), 0);
        for (size_t i = 0; i < dl_delta_len(v->acc); i++) {
            assert_int_equal(dl_delta_diff(v->acc, i), 1); /* set semantics */
            if (i)
                dl__buf_putc(&b, ' ');
            dl__buf_putc(&b, '[');
            for (size_t c = 0; c < dl_delta_arity(v->acc); c++) {
                if (c)
                    dl__buf_putc(&b, ' ');
                dl__edn_print_value(dl_delta_row(v->acc, i)[c], &b);
            }
            dl__buf_putc(&b, ']');
        }
    }
    dl__buf_putc(&b, ']');
    return dl__buf_take(&b);
}

static char *oracle_text(env_t *e, const view_t *v) {
    dl_query_t *q = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_query_parse(v->query, strlen(v->query), NULL, 0, NULL, &q, &err), 0);
    dl_query_source_t src = {"$", e->db};
    dl_query_result_t *res = NULL;
    int rc = dl_query_eval_naive(q, &src, 1, v->args, v->args ? strlen(v->args) : 0, &res, &err);
    if (rc)
        fail_msg("oracle: %s", err.message);
    char *t = dl_query_result_to_edn(res);
    dl_query_result_free(res);
    dl_query_free(q);
    return t;
}

static void view_check(env_t *e, view_t *v) {
    view_drain(v);
    char *got = view_text(v), *want = oracle_text(e, v);
    if (strcmp(got, want) != 0)
        fail_msg("%s\nsubscriber: %s\none-shot:   %s", v->query, got, want);
    dl_free(got);
    dl_free(want);
}

static void view_free(env_t *e, view_t *v) {
    dl_unsubscribe(e->reg, v->sub);
    dl_delta_unref(v->acc);
}

static const char *q_shipped = "[:find ?id ?amt :where [?o :order/status :shipped]"
                               " [?o :order/id ?id] [?o :order/amount ?amt]]";
static const char *q_count = "[:find ?c (count ?o) :where [?o :order/customer ?c]]";
static const char *q_status =
    "[:find ?id :in $ ?st :where [?o :order/status ?st] [?o :order/id ?id]]";

static void test_qsrc_scenarios(void **state) {
    (void)state;
    static env_t e;
    env_open(&e);
    tx(&e, "[{:order/id 1 :order/status :pending :order/amount 10 :order/customer \"ann\"}]");
    view_t shipped, count, count2, pend;
    view_sub(&e, &shipped, q_shipped, NULL, 0, NULL);
    view_sub(&e, &count, q_count, NULL, 0, NULL);
    /* The same query spelled otherwise shares the live query. */
    view_sub(&e, &count2, "[:find ?c (count ?o)\n :where [?o :order/customer ?c]] ; same", NULL, 0,
             NULL);
    dl_value_t kw;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "pending", 7, &kw, NULL), 0);
    view_sub(&e, &pend, q_status, &kw, 1, "[:pending]");
    assert_int_equal(dl_qsrcs_count(e.qs), 3);
    dl_sub_stats_t st;
    dl_sub_stats(count2.sub, &st);
    assert_int_equal(st.shared_with, 2);
    view_check(&e, &shipped);
    view_check(&e, &count);
    view_check(&e, &count2);
    view_check(&e, &pend);
    /* Scenario 2: a change the filter does not match delivers nothing. */
    tx(&e, "[{:order/id 2 :order/status :pending :order/amount 20 :order/customer \"bob\"}]");
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    assert_int_equal(view_drain(&shipped), 0);
    view_check(&e, &pend);
    /* Scenario 1: an addition arrives as a delta... */
    tx(&e, "[[:db/add [:order/id 1] :order/status :shipped]]");
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    dl_delta_t *d;
    assert_int_equal(dl_sub_next(shipped.sub, 0, &d, NULL), 0);
    assert_non_null(d);
    assert_int_equal(dl_delta_len(d), 1);
    assert_int_equal(dl_delta_diff(d, 0), 1);
    assert_int_equal(dl_delta_row(d, 0)[0].as.i, 1);
    assert_int_equal(dl_delta_row(d, 0)[1].as.i, 10);
    assert_int_equal(dl_delta_add(shipped.acc, dl_delta_row(d, 0), 1, NULL), 0);
    dl_delta_unref(d);
    view_check(&e, &shipped);
    view_check(&e, &pend); /* order 1 left :pending */
    /* ...and a retraction as a negative one. */
    tx(&e, "[[:db/retract [:order/id 1] :order/amount 10]]");
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    assert_int_equal(dl_sub_next(shipped.sub, 0, &d, NULL), 0);
    assert_non_null(d);
    assert_int_equal(dl_delta_len(d), 1);
    assert_int_equal(dl_delta_diff(d, 0), -1);
    assert_int_equal(dl_delta_add(shipped.acc, dl_delta_row(d, 0), -1, NULL), 0);
    dl_delta_unref(d);
    view_check(&e, &shipped);
    /* Scenario 3: a count changes as retraction of the old row plus the new row. */
    view_check(&e, &count);
    tx(&e, "[{:order/id 3 :order/customer \"ann\"}]");
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    assert_int_equal(dl_sub_next(count.sub, 0, &d, NULL), 0);
    assert_non_null(d);
    dl_value_t ann;
    assert_int_equal(dl_value_text(DL_T_STRING, "ann", 3, &ann, NULL), 0);
    dl_value_t old_row[2] = {ann, dl_value_int(1)}, new_row[2] = {ann, dl_value_int(2)};
    assert_int_equal(dl_delta_len(d), 2);
    assert_int_equal(dl_delta_find(d, old_row), -1);
    assert_int_equal(dl_delta_find(d, new_row), 1);
    for (size_t i = 0; i < dl_delta_len(d); i++)
        assert_int_equal(dl_delta_add(count.acc, dl_delta_row(d, i), dl_delta_diff(d, i), NULL), 0);
    dl_delta_unref(d);
    view_check(&e, &count);
    view_check(&e, &count2); /* read late: the same changes, coalesced */
    /* Teardown: the last subscriber of each query frees its live query. */
    view_free(&e, &count);
    assert_int_equal(dl_qsrcs_count(e.qs), 3);
    view_free(&e, &count2);
    assert_int_equal(dl_qsrcs_count(e.qs), 2);
    view_free(&e, &shipped);
    view_free(&e, &pend);
    assert_int_equal(dl_qsrcs_count(e.qs), 0);
    env_close(&e);
}

/* Randomized: random orders, status changes, retractions; random subscribe/unsubscribe of a
 * few queries (one parameterized); after every transaction and pump, every subscriber
 * equals the reference evaluator on the current database. */
static void test_qsrc_random(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("qsrc_random")};
    static env_t e;
    env_open(&e);
    static const char *statuses[] = {"pending", "shipped", "cancelled"};
    static const char *customers[] = {"ann", "bob", "cy"};
    enum { NV = 8 };
    static view_t views[NV];
    bool live[NV] = {0};
    dl_value_t kws[3];
    char args[3][32];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(
            dl_value_text(DL_T_KEYWORD, statuses[i], strlen(statuses[i]), &kws[i], NULL), 0);
        snprintf(args[i], sizeof args[i], "[:%s]", statuses[i]);
    }
    long steps = dl_prop_iters(120);
    for (long step = 0; step < steps; step++) {
        int op = (int)dl_rng_below(&r, 10);
        if (op < 2) {
            int i = (int)dl_rng_below(&r, NV);
            if (live[i]) {
                view_free(&e, &views[i]);
                live[i] = false;
            } else {
                int k = (int)dl_rng_below(&r, 3);
                if (k == 0)
                    view_sub(&e, &views[i], q_shipped, NULL, 0, NULL);
                else if (k == 1)
                    view_sub(&e, &views[i], q_count, NULL, 0, NULL);
                else {
                    int s = (int)dl_rng_below(&r, 3);
                    view_sub(&e, &views[i], q_status, &kws[s], 1, args[s]);
                }
                live[i] = true;
            }
        } else {
            char t[256];
            int id = 1 + (int)dl_rng_below(&r, 6);
            switch (dl_rng_below(&r, 4)) {
                case 0:
                case 1:
                    snprintf(t, sizeof t,
                             "[{:order/id %d :order/status :%s :order/amount %d :order/customer "
                             "\"%s\"}]",
                             id, statuses[dl_rng_below(&r, 3)], (int)dl_rng_below(&r, 5) * 10,
                             customers[dl_rng_below(&r, 3)]);
                    break;
                case 2:
                    snprintf(t, sizeof t, "[{:order/id %d :order/status :%s}]", id,
                             statuses[dl_rng_below(&r, 3)]);
                    break;
                default:
                    snprintf(t, sizeof t, "[[:db/retractEntity [:order/id %d]]]", id);
                    break;
            }
            dl_error_t err = {0};
            if (dl_store_transact_edn(e.st, t, strlen(t), NULL, &err) == 0) {
                dl_db_unref(e.db);
                e.db = dl_store_db(e.st);
            }
            assert_int_equal(e.apply_rc, 0);
        }
        assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
        for (int i = 0; i < NV; i++)
            if (live[i])
                view_check(&e, &views[i]);
    }
    for (int i = 0; i < NV; i++)
        if (live[i])
            view_free(&e, &views[i]);
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    assert_int_equal(dl_qsrcs_count(e.qs), 0);
    env_close(&e);
}

/* Scenario 9 end to end: an engine thread commits transactions and pumps the registry;
 * the main thread consumes a Datalog subscription's channel from a libuv loop. When the
 * engine frees the registry the subscription ends normally, the watcher closes itself and
 * the loop returns; the accumulated result equals the one-shot result. */
typedef struct engine_run {
    env_t *e;
    int n_tx;
    const char *fail;
} engine_run_t;

static void *engine_main(void *arg) {
    engine_run_t *r = arg;
    for (int i = 0; i < r->n_tx; i++) {
        char t[200];
        snprintf(t, sizeof t,
                 "[{:order/id %d :order/status :%s :order/amount %d :order/customer \"c%d\"}]",
                 i % 7, i % 3 ? "shipped" : "pending", i * 10, i % 4);
        dl_error_t err = {0};
        if (dl_store_transact_edn(r->e->st, t, strlen(t), NULL, &err)) {
            r->fail = "transact";
            break;
        }
        dl_db_unref(r->e->db);
        r->e->db = dl_store_db(r->e->st);
        if (dl_registry_pump(r->e->reg, NULL)) {
            r->fail = "pump";
            break;
        }
    }
    dl_registry_free(r->e->reg); /* ends every subscription (code 0) */
    r->e->reg = NULL;
    return NULL;
}

typedef struct loop_view {
    dl_delta_t *acc;
    int ends, end_code, data;
    uv_thread_t loop_thread;
    int wrong_thread;
} loop_view_t;

static void on_loop(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    loop_view_t *v = udata;
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &v->loop_thread))
        v->wrong_thread++;
    if (dl_delta_kind(d) == DL_DELTA_END) {
        v->ends++;
        v->end_code = dl_delta_code(d);
        return;
    }
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return;
    v->data++;
    for (size_t i = 0; i < dl_delta_len(d); i++)
        if (dl_delta_add(v->acc, dl_delta_row(d, i), dl_delta_diff(d, i), NULL))
            v->wrong_thread += 1000;
}

static void test_qsrc_libuv_loop(void **state) {
    (void)state;
    static env_t e;
    env_open(&e);
    view_t v;
    view_sub(&e, &v, q_shipped, NULL, 0, NULL); /* channel delivery, coalesce */
    loop_view_t lv = {0};
    uint64_t t0 = 0;
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, 2, &t0, 1, &lv.acc, NULL), 0);
    lv.loop_thread = uv_thread_self();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    dl_sub_uv_t *w;
    assert_int_equal(dl_sub_uv_start(&loop, v.sub, on_loop, &lv, &w, NULL), 0);
    engine_run_t run = {&e, 200, NULL};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, engine_main, &run), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    assert_null(run.fail);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(lv.ends, 1);
    assert_int_equal(lv.end_code, 0);
    assert_int_equal(lv.wrong_thread, 0);
    assert_true(lv.data >= 1);
    /* The accumulated result equals the one-shot result on the final database. */
    v.acc = lv.acc;
    char *got = view_text(&v), *want = oracle_text(&e, &v);
    assert_string_equal(got, want);
    assert_true(strlen(want) > 2);
    print_message("libuv consumer: 200 transactions arrived as %d messages\n", lv.data);
    dl_free(got);
    dl_free(want);
    dl_delta_unref(lv.acc);
    dl_sub_close(v.sub);
    dl_qsrcs_free(e.qs);
    dl_db_unref(e.db);
    dl_store_close(e.st);
}

static void test_qsrc_shared_engine(void **state) {
    (void)state;
    static env_t e;
    env_open(&e);
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_puts(&b, "[");
    for (int i = 0; i < 3000; i++)
        dl__buf_printf(&b, "{:order/id %d :order/amount %d :order/status :%s}", i, i % 97,
                       i % 3 ? "open" : "shipped");
    dl__buf_puts(&b, "]");
    tx(&e, b.data);
    dl__buf_fini(&b);
    static const char *q_a = "[:find ?id ?amt :where [?o :order/id ?id] [?o :order/amount ?amt]]";
    static const char *q_b = "[:find ?amt ?id :where [?o :order/amount ?amt] [?o :order/id ?id]"
                             " [(< ?amt 3)]]";
    dl_alloc_stats_t s0, s1, s2, s3;
    dl_alloc_stats(&s0);
    view_t a, bb;
    view_sub(&e, &a, q_a, NULL, 0, NULL);
    dl_alloc_stats(&s1);
    view_sub(&e, &bb, q_b, NULL, 0, NULL);
    dl_alloc_stats(&s2);
    int64_t first = s1.live_bytes - s0.live_bytes, second = s2.live_bytes - s1.live_bytes;
    fprintf(stderr,
            "[ qsrc     ] bytes: first query %lld (indexes :order/id, :order/amount), "
            "second query over them %lld\n",
            (long long)first, (long long)second);
    /* The first indexed 6,000 datoms; the second reads the same arrangements (its own state
     * is its small result and operators). */
    assert_true(second * 4 < first);
    view_check(&e, &a);
    view_check(&e, &bb);
    tx(&e, "[[:db/add [:order/id 5] :order/amount 1] [:db/retract [:order/id 1] :order/amount 1]]");
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    view_check(&e, &a);
    view_check(&e, &bb);
    view_free(&e, &bb);
    view_free(&e, &a);
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    dl_alloc_stats(&s3);
    fprintf(stderr, "[ qsrc     ] after closing both: %lld bytes above the start\n",
            (long long)(s3.live_bytes - s0.live_bytes));
    /* What stays: the store's transaction, and the registry's and engine's bookkeeping. */
    assert_true(s3.live_bytes - s0.live_bytes < first / 4);
    env_close(&e);
}

/* A subscription watching [tx, day]: every DATA message summed (FRONTIER messages
 * skipped), which is the result at the latest knowledge, the current database's. */
static void dview_sub(env_t *e, view_t *v, const char *query) {
    memset(v, 0, sizeof *v);
    v->query = query;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.n_dims = 2;
    dl_error_t err = {0};
    if (dl_subscribe(e->reg, query, NULL, 0, &o, &v->sub, &err))
        fail_msg("subscribe %s: %s", query, err.message);
}

static void dview_check(env_t *e, view_t *v) {
    for (;;) {
        dl_delta_t *d;
        assert_int_equal(dl_sub_next(v->sub, 0, &d, NULL), 0);
        if (!d)
            break;
        size_t nd = 0;
        const uint64_t *t = dl_delta_time(d, &nd);
        assert_int_equal(nd, 2);
        if (dl_delta_kind(d) == DL_DELTA_DATA) {
            if (!v->acc) {
                assert_true(dl_delta_is_snapshot(d));
                uint64_t t0 = 0;
                assert_int_equal(
                    dl_delta_new(DL_DELTA_DATA, dl_delta_arity(d), &t0, 1, &v->acc, NULL), 0);
            }
            for (size_t i = 0; i < dl_delta_len(d); i++)
                assert_int_equal(
                    dl_delta_add(v->acc, dl_delta_row(d, i), dl_delta_diff(d, i), NULL), 0);
            assert_true(t[0] >= v->last_time);
            v->last_time = t[0];
            v->data_msgs++;
        } else {
            assert_int_equal(dl_delta_kind(d), DL_DELTA_FRONTIER);
        }
        dl_delta_unref(d);
    }
    char *got = view_text(v), *want = oracle_text(e, v);
    if (strcmp(got, want) != 0)
        fail_msg("%s\nsubscriber: %s\none-shot:   %s", v->query, got, want);
    dl_free(got);
    dl_free(want);
}

static void test_qsrc_dims_shared_engine(void **state) {
    (void)state;
    static env_t e;
    env_open(&e);
    tx(&e, "[{:db/ident :time/day :db/timeDimension true}]");
    /* 3,000 orders in three transactions at days 4, 2 (retroactive) and 6. */
    static const int days[3] = {4, 2, 6};
    for (int k = 0; k < 3; k++) {
        dl_buf_t b;
        dl__buf_init(&b);
        dl__buf_puts(&b, "[");
        for (int i = k; i < 3000; i += 3)
            dl__buf_printf(&b, "{:order/id %d :order/amount %d :order/status :%s}", i, i % 97,
                           i % 3 ? "open" : "shipped");
        dl__buf_printf(&b, "[:db/add \"datomic.tx\" :time/day %d]]", days[k]);
        tx(&e, b.data);
        dl__buf_fini(&b);
    }
    static const char *q_a = "[:find ?id ?amt :where [?o :order/id ?id] [?o :order/amount ?amt]]";
    static const char *q_b = "[:find ?amt ?id :where [?o :order/amount ?amt] [?o :order/id ?id]"
                             " [(< ?amt 3)]]";
    dl_alloc_stats_t s0, s1, s2, s3;
    dl_alloc_stats(&s0);
    view_t a, bb;
    dview_sub(&e, &a, q_a);
    dl_alloc_stats(&s1);
    dview_sub(&e, &bb, q_b);
    dl_alloc_stats(&s2);
    int64_t first = s1.live_bytes - s0.live_bytes, second = s2.live_bytes - s1.live_bytes;
    fprintf(stderr,
            "[ qsrc     ] n_dims 2, bytes: first query %lld (indexes :order/id, "
            ":order/amount), second query over them %lld\n",
            (long long)first, (long long)second);
    /* What the second query costs standalone (dl_live_new_dims: it indexes the two
     * attributes' history again). */
    dl_query_t *qb = NULL;
    dl_live_t *lb = NULL;
    dl_alloc_stats_t l0, l1;
    dl_alloc_stats(&l0);
    assert_int_equal(dl_query_parse(q_b, strlen(q_b), NULL, 0, e.db, &qb, NULL), 0);
    assert_int_equal(dl_live_new_dims(qb, e.db, NULL, 0, 2, &lb, NULL), 0);
    dl_alloc_stats(&l1);
    dl_live_free(lb);
    dl_query_free(qb);
    int64_t alone = l1.live_bytes - l0.live_bytes;
    fprintf(stderr, "[ qsrc     ] the second query standalone: %lld bytes\n", (long long)alone);
    /* The first indexed the 6,000 datoms' history; the second reads the same arrangements
     * in the same engine. */
    assert_true(second * 4 < first);
    assert_true(second * 2 < alone);
    dview_check(&e, &a);
    dview_check(&e, &bb);
    /* A retroactive correction (day 3, below day 6) and a change on a later day. */
    tx(&e, "[[:db/add [:order/id 5] :order/amount 1] [:db/retract [:order/id 1] :order/amount 1]"
           " [:db/add \"datomic.tx\" :time/day 3]]");
    tx(&e, "[[:db/add [:order/id 7] :order/amount 2] [:db/add \"datomic.tx\" :time/day 8]]");
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    dview_check(&e, &a);
    dview_check(&e, &bb);
    assert_true(bb.data_msgs >= 3); /* the snapshot, then one per commit at least */
    view_free(&e, &bb);
    view_free(&e, &a);
    assert_int_equal(dl_registry_pump(e.reg, NULL), 0);
    dl_alloc_stats(&s3);
    fprintf(stderr, "[ qsrc     ] after closing both: %lld bytes above the start\n",
            (long long)(s3.live_bytes - s0.live_bytes));
    assert_true(s3.live_bytes - s0.live_bytes < first / 4);
    env_close(&e);
}

DL_TEST_GROUP(qsrc, cmocka_unit_test(test_qsrc_scenarios), cmocka_unit_test(test_qsrc_random),
              cmocka_unit_test(test_qsrc_libuv_loop), cmocka_unit_test(test_qsrc_shared_engine),
              cmocka_unit_test(test_qsrc_dims_shared_engine));
