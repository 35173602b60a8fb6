/*
 * test_livedb.c: dl_live_db_t (include/deltalog/live.h, runtime/livedb.c): transactions
 * reach callback subscriptions on the committing thread before the transact call returns,
 * and channel subscriptions for a consumer thread; a bad query and a bad transaction fail
 * with a clear error and lose nothing (the database and every subscription go on); equal
 * queries share one dataflow and unsubscribing releases it; a durable database reopened
 * from its directory gives the same snapshot; commits made on the store directly (an
 * advance, the JSON form) are delivered too; a subscription watching [tx, dimension]; the
 * pipelined mode (delivery on the database's own thread, dl_live_db_sync).
 * Every accumulated result is checked against the one-shot query (dl_query_run).
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "tests/runtime/rt_helpers.h"

#include <deltalog/datalog.h>
#include <deltalog/live.h>
#include <deltalog/store.h>
#include <pthread.h>
#include <string.h>

#if DL_HAVE_SUBS

static const char *schema =
    "[{:db/ident :p/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :p/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :time/valid :db/timeDimension true}]";
static const char *q_adults = "[:find ?n ?a :in $ ?min :where [?e :p/name ?n] [?e :p/age ?a]"
                              " [(>= ?a ?min)]]";

/* A subscriber's accumulated result, the thread its callbacks ran on, and its messages. */
typedef struct view {
    dl_delta_t *acc; /* unsealed sum of the DATA deltas */
    pthread_t thread;
    int calls, data, frontiers, ends, end_code;
    uint64_t last_tx;
    bool snapshot_first;
    int disorder; /* DATA messages whose tx did not increase */
} view_t;

static void view_apply(view_t *v, const dl_delta_t *d) {
    v->calls++;
    v->thread = pthread_self();
    if (dl_delta_kind(d) == DL_DELTA_END) {
        v->ends++;
        v->end_code = dl_delta_code(d);
        return;
    }
    if (dl_delta_kind(d) == DL_DELTA_FRONTIER) {
        v->frontiers++;
        return;
    }
    if (v->data++ == 0)
        v->snapshot_first = dl_delta_is_snapshot(d);
    size_t nd;
    const uint64_t *t = dl_delta_time(d, &nd);
    v->disorder += v->data > 1 && t[0] <= v->last_tx;
    v->last_tx = t[0];
    if (!v->acc) {
        uint64_t zero[4] = {0};
        assert_int_equal(dl_delta_new(DL_DELTA_DATA, dl_delta_arity(d), zero, nd, &v->acc, NULL),
                         0);
    }
    for (size_t i = 0; i < dl_delta_len(d); i++)
        assert_int_equal(dl_delta_add(v->acc, dl_delta_row(d, i), dl_delta_diff(d, i), NULL), 0);
}

static void on_view(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    view_apply(udata, d);
}

/* The view's rows as canonical EDN (a sorted vector of rows; every multiplicity 1). */
static char *view_text(view_t *v) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_putc(&b, '[');
    if (v->acc) {
        dl_delta_t *c = v->acc; /* unsealed: sorted in place */
        assert_int_equal(dl_delta_sort(c, NULL), 0);
        for (size_t i = 0; i < dl_delta_len(c); i++) {
            assert_int_equal(dl_delta_diff(c, i), 1);
            if (i)
                dl__buf_putc(&b, ' ');
            dl__buf_putc(&b, '[');
            for (size_t k = 0; k < dl_delta_arity(c); k++) {
                if (k)
                    dl__buf_putc(&b, ' ');
                dl__edn_print_value(dl_delta_row(c, i)[k], &b);
            }
            dl__buf_putc(&b, ']');
        }
    }
    dl__buf_putc(&b, ']');
    return dl__buf_take(&b);
}

/* The one-shot result of q with args on the database's current state (new: dl_free). */
static char *oneshot(dl_live_db_t *db, const char *q, const char *args) {
    dl_db_t *now = dl_store_db(dl_live_db_store(db));
    dl_query_t *pq = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_query_parse(q, strlen(q), NULL, 0, now, &pq, &err), 0);
    dl_query_result_t *r = NULL;
    if (dl_query_run(pq, now, args, args ? strlen(args) : 0, &r, &err))
        fail_msg("one-shot: %s", err.message);
    char *t = dl_query_result_to_edn(r);
    dl_query_result_free(r);
    dl_query_free(pq);
    dl_db_unref(now);
    return t;
}

static void expect_view(dl_live_db_t *db, view_t *v, const char *q, const char *args) {
    char *a = view_text(v), *b = oneshot(db, q, args);
    if (strcmp(a, b) != 0)
        fail_msg("accumulated %s, one-shot %s", a, b);
    dl_free(a);
    dl_free(b);
}

static void tx_ok(dl_live_db_t *db, const char *edn, uint64_t *tx) {
    dl_error_t err = {0};
    if (dl_live_db_transact_edn(db, edn, tx, &err))
        fail_msg("transact %s: %s", edn, err.message);
}

/* Callbacks on the committing thread; bad input; sharing and release. */
static void test_livedb_callbacks(void **state) {
    (void)state;
    dl_live_db_t *db = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_live_db_open(NULL, &db, &err), 0);
    uint64_t t1 = 0;
    tx_ok(db, schema, NULL);
    tx_ok(db, "[{:p/name \"ann\" :p/age 31} {:p/name \"bob\" :p/age 17}]", &t1);
    assert_true(t1 > 0);

    static view_t v, w;
    memset(&v, 0, sizeof v);
    memset(&w, 0, sizeof w);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_view;
    o.udata = &v;
    dl_value_t min = dl_value_int(18);
    dl_sub_t *sv = NULL, *sw = NULL;
    assert_int_equal(dl_live_db_subscribe(db, q_adults, &min, 1, &o, &sv, &err), 0);
    /* the snapshot, called back on this thread inside subscribe */
    assert_int_equal(v.calls, 1);
    assert_true(v.snapshot_first);
    assert_true(pthread_equal(v.thread, pthread_self()));
    assert_int_equal(v.last_tx, t1);
    expect_view(db, &v, q_adults, "[18]");

    /* a diff per transaction, delivered before transact returns */
    uint64_t t2 = 0;
    tx_ok(db, "[{:p/name \"bob\" :p/age 18}]", &t2);
    assert_int_equal(v.calls, 2);
    assert_int_equal(v.last_tx, t2);
    expect_view(db, &v, q_adults, "[18]");

    /* Bad transaction: a clear error, nothing committed, nothing delivered. */
    uint64_t bad_tx = 99;
    int rc = dl_live_db_transact_edn(db, "[{:p/name \"cy\" :p/age \"old\"}]", &bad_tx, &err);
    assert_int_equal(rc, DL_ETYPE);
    assert_non_null(strstr(err.message, ":p/age"));
    assert_int_equal(bad_tx, 0);
    rc = dl_live_db_transact_edn(db, "[{:p/name \"cy\" :p/age", NULL, &err);
    assert_int_equal(rc, DL_EPARSE);
    assert_int_equal(v.calls, 2);
    /* Bad queries: the error names the problem; no dataflow is left behind. */
    dl_sub_t *bad = (dl_sub_t *)&v;
    rc = dl_live_db_subscribe(db, "[:find ?n :where [?e :p/name ?n]", NULL, 0, &o, &bad, &err);
    assert_int_equal(rc, DL_EPARSE);
    assert_null(bad);
    rc = dl_live_db_subscribe(db, "[:find ?n :where [?e :p/nope ?n]]", NULL, 0, &o, &bad, &err);
    assert_int_equal(rc, DL_EUNKNOWN_ATTR);
    rc = dl_live_db_subscribe(db, q_adults, NULL, 0, &o, &bad, &err); /* its input missing */
    assert_int_equal(rc, DL_EINVAL);
    dl_registry_stats_t rs;
    dl_live_db_stats(db, &rs);
    assert_int_equal(rs.n_sources, 1);
    assert_int_equal(rs.n_subs, 1);
    /* ... and everything goes on. */
    uint64_t t3 = 0;
    tx_ok(db, "[{:p/name \"cy\" :p/age 40}]", &t3);
    assert_int_equal(v.last_tx, t3);
    expect_view(db, &v, q_adults, "[18]");

    /* An equal query (other spacing) with an equal input shares the dataflow. */
    o.udata = &w;
    assert_int_equal(dl_live_db_subscribe(db, q_adults, &min, 1, &o, &sw, &err), 0);
    dl_live_db_stats(db, &rs);
    assert_int_equal(rs.n_sources, 1);
    assert_int_equal(rs.n_subs, 2);
    tx_ok(db, "[[:db/retractEntity [:p/name \"ann\"]]]", NULL);
    expect_view(db, &v, q_adults, "[18]");
    expect_view(db, &w, q_adults, "[18]");
    /* Unsubscribing releases; the dataflow goes with the last subscriber. */
    dl_live_db_unsubscribe(db, sv);
    dl_live_db_stats(db, &rs);
    assert_int_equal(rs.n_sources, 1);
    dl_live_db_unsubscribe(db, sw);
    dl_live_db_stats(db, &rs);
    assert_int_equal(rs.n_sources, 0);
    assert_int_equal(rs.n_subs, 0);
    dl_delta_unref(v.acc);
    dl_delta_unref(w.acc);
    dl_live_db_free(db);
}

/* Pipelined: diffs arrive on the database's thread, in order, and after dl_live_db_sync
 * every view equals the one-shot; a subscribe made while commits are queued still starts
 * at the right place; bad transactions lose nothing; closing with commits queued delivers
 * them all before the END. */
static void test_livedb_pipelined(void **state) {
    (void)state;
    dl_live_db_options_t opt;
    dl_live_db_options_init(&opt);
    opt.pipelined = true;
    dl_live_db_t *db = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_live_db_open(&opt, &db, &err), 0);
    tx_ok(db, schema, NULL);
    tx_ok(db, "[{:p/name \"p0\" :p/age 30}]", NULL);
    static view_t v, w;
    memset(&v, 0, sizeof v);
    memset(&w, 0, sizeof w);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_view;
    o.udata = &v;
    dl_value_t min = dl_value_int(18);
    dl_sub_t *sv = NULL, *sw = NULL;
    assert_int_equal(dl_live_db_subscribe(db, q_adults, &min, 1, &o, &sv, &err), 0);
    assert_int_equal(v.calls, 1); /* the snapshot, inside subscribe, on this thread */
    assert_true(pthread_equal(v.thread, pthread_self()));
    dl_rng_t r = {dl_prop_seed("livedb.pipelined")};
    uint64_t last = 0;
    bool alive[40] = {true};
    for (int i = 0; i < 400; i++) {
        char tx[128];
        int who = (int)dl_rng_below(&r, 40), age = 10 + (int)dl_rng_below(&r, 20);
        if (alive[who] && dl_rng_below(&r, 6) == 0)
            snprintf(tx, sizeof tx, "[[:db/retractEntity [:p/name \"p%d\"]]]", who);
        else
            snprintf(tx, sizeof tx, "[{:p/name \"p%d\" :p/age %d}]", who, age);
        uint64_t prev = last;
        tx_ok(db, tx, &last);
        assert_true(last > prev);
        alive[who] = !strstr(tx, "retract");
        if (i % 50 == 7) /* a bad one: an error, nothing committed */
            assert_int_equal(dl_live_db_transact_edn(db, "[{:p/age \"x\"}]", NULL, &err), DL_ETYPE);
        if (i == 200) { /* commits are queued now: the new view must start where they end */
            o.udata = &w;
            assert_int_equal(dl_live_db_subscribe(db, q_adults, &min, 1, &o, &sw, &err), 0);
            expect_view(db, &w, q_adults, "[18]");
        }
        if (i % 97 == 0) {
            dl_live_db_sync(db);
            expect_view(db, &v, q_adults, "[18]");
        }
    }
    dl_live_db_sync(db);
    assert_true(last > 0);
    assert_int_equal(v.disorder + w.disorder, 0);
    assert_false(pthread_equal(v.thread, pthread_self())); /* delivered on the feed's thread */
    expect_view(db, &v, q_adults, "[18]");
    expect_view(db, &w, q_adults, "[18]");
    dl_registry_stats_t rs;
    dl_live_db_stats(db, &rs);
    assert_int_equal(rs.n_sources, 1); /* the late subscriber shares the dataflow */
    /* Closing with commits queued: all of them reach w before its END. */
    for (int i = 0; i < 60; i++) {
        char tx[96];
        snprintf(tx, sizeof tx, "[{:p/name \"q%d\" :p/age %d}]", i, 18 + i % 5);
        tx_ok(db, tx, NULL);
    }
    char *want = oneshot(db, q_adults, "[18]");
    dl_live_db_unsubscribe(db, sv);
    dl_live_db_free(db);
    assert_int_equal(w.ends, 1);
    assert_int_equal(w.end_code, 0);
    dl_sub_unref(sw);
    char *got = view_text(&w);
    if (strcmp(got, want) != 0)
        fail_msg("after close: accumulated %s, one-shot before close %s", got, want);
    dl_free(got);
    dl_free(want);
    dl_delta_unref(v.acc);
    dl_delta_unref(w.acc);
}

/* A channel subscription consumed by another thread while this one transacts; closing
 * the database ends it with code 0. */
typedef struct consumer {
    dl_sub_t *sub;
    view_t v;
} consumer_t;

static void *consume(void *arg) {
    consumer_t *c = arg;
    for (;;) {
        dl_delta_t *d = NULL;
        if (dl_sub_next(c->sub, 20000, &d, NULL) != 0 || !d)
            break;
        view_apply(&c->v, d);
        bool end = dl_delta_kind(d) == DL_DELTA_END;
        dl_delta_unref(d);
        if (end)
            break;
    }
    return NULL;
}

static void test_livedb_channel(void **state) {
    (void)state;
    dl_live_db_t *db = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_live_db_open(NULL, &db, &err), 0);
    tx_ok(db, schema, NULL);
    static consumer_t c;
    memset(&c, 0, sizeof c);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    o.max_queued = 4;
    o.block_timeout_ms = 20000;
    assert_int_equal(
        dl_live_db_subscribe(db, "[:find ?n :where [?e :p/name ?n]]", NULL, 0, &o, &c.sub, &err),
        0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, consume, &c), 0);
    enum { N = 200 };
    for (int i = 0; i < N; i++) {
        char t[96];
        snprintf(t, sizeof t, "[{:p/name \"p%d\" :p/age %d}]", i, i);
        tx_ok(db, t, NULL);
    }
    /* Also commits made on the store directly reach the subscriptions. */
    const char *json = "[{\"p/name\":\"json\",\"p/age\":1}]";
    assert_int_equal(dl_store_transact_json(dl_live_db_store(db), json, strlen(json), NULL, &err),
                     0);
    char *want = oneshot(db, "[:find ?n :where [?e :p/name ?n]]", NULL);
    dl_live_db_free(db); /* ends the subscription (END, code 0) after the backlog */
    pthread_join(th, NULL);
    assert_int_equal(c.v.ends, 1);
    assert_int_equal(c.v.end_code, 0);
    assert_int_equal(c.v.data, N + 2); /* the snapshot, one diff per commit */
    char *got = view_text(&c.v);
    assert_string_equal(got, want);
    dl_free(got);
    dl_free(want);
    dl_delta_unref(c.v.acc);
    dl_sub_unref(c.sub);
}

/* A durable database: reopened from its directory, a new subscription's snapshot is the
 * state before; a subscription watching [tx, :time/valid] gets coordinates and frontiers,
 * and an advance made on the store reaches it. */
static void test_livedb_durable_dims(void **state) {
    (void)state;
    char *dir = rt_tempdir();
    dl_live_db_options_t lo;
    dl_live_db_options_init(&lo);
    lo.dir = dir;
    lo.sync_mode = DL_STORE_SYNC_NONE;
    dl_live_db_t *db = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_live_db_open(&lo, &db, &err), 0);
    tx_ok(db, schema, NULL);
    tx_ok(db, "[{:p/name \"ann\" :p/age 31} [:db/add \"datomic.tx\" :time/valid 5]]", NULL);
    dl_live_db_free(db);

    assert_int_equal(dl_live_db_open(&lo, &db, &err), 0);
    static view_t v;
    memset(&v, 0, sizeof v);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_view;
    o.udata = &v;
    o.n_dims = 2;
    dl_sub_t *s = NULL;
    const char *q = "[:find ?n :where [?e :p/name ?n]]";
    assert_int_equal(dl_live_db_subscribe(db, q, NULL, 0, &o, &s, &err), 0);
    expect_view(db, &v, q, NULL);
    assert_int_equal(v.data, 2); /* [T 0] (flagged, empty), then [T 5] with ann */
    assert_true(v.frontiers >= 1);
    int fr = v.frontiers;
    uint64_t atx = 0;
    dl_value_t dim;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "time/valid", 10, &dim, NULL), 0);
    assert_int_equal(dl_store_advance(dl_live_db_store(db), dim, 7, &atx, &err), 0);
    assert_true(v.frontiers >= fr + 2); /* [MAX 6], then [atx MAX] */
    tx_ok(db, "[{:p/name \"bob\" :p/age 2}]", NULL);
    assert_int_equal(v.data, 3);
    expect_view(db, &v, q, NULL);
    dl_live_db_unsubscribe(db, s);
    dl_live_db_free(db);
    dl_delta_unref(v.acc);
    /* A directory that cannot be a store: a clear error, no leak. */
    lo.dir = "/proc/version/x";
    assert_true(dl_live_db_open(&lo, &db, &err) != 0);
    assert_null(db);
    assert_true(err.message[0] != 0);
    rt_rmrf(dir);
    free(dir);
}

#else
static void test_livedb_callbacks(void **state) {
    (void)state;
    skip();
}
static void test_livedb_channel(void **state) {
    (void)state;
    skip();
}
static void test_livedb_durable_dims(void **state) {
    (void)state;
    skip();
}
static void test_livedb_pipelined(void **state) {
    (void)state;
    skip();
}
#endif

// clang-format off
DL_TEST_GROUP(livedb, cmocka_unit_test(test_livedb_callbacks), cmocka_unit_test(test_livedb_channel),
              cmocka_unit_test(test_livedb_durable_dims), cmocka_unit_test(test_livedb_pipelined));
// clang-format on
