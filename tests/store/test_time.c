/*
 * test_time.c: time dimensions declared as data, coordinates per transaction (EDN, JSON,
 * C), frontier advances (forward only), vector as-of points; the change stream (order,
 * contents, frontiers, no call for a rejected transaction); history, as-of, since and the
 * tx log; :db/noHistory; snapshots read by other threads while the writer commits
 * (never half a transaction, no use after free under ASan).
 */
#include "store_test_util.h"

#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

static dl_value_t kw(const char *s) {
    dl_value_t v;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, s, strlen(s), &v, NULL), 0);
    return v;
}

typedef struct rec {
    uint64_t tx[64];
    size_t n_changes[64];
    uint64_t time1[64], frontier1[64];
    int64_t net[64];
    int n;
} rec_t;

static void listener(void *ctx, const dl_commit_t *c) {
    rec_t *r = ctx;
    if (r->n >= 64)
        return;
    r->tx[r->n] = c->tx;
    r->n_changes[r->n] = c->n_changes;
    r->time1[r->n] = c->n_time > 1 ? c->time[1] : 0;
    r->frontier1[r->n] = c->n_time > 1 ? c->frontier[1] : 0;
    int64_t net = 0;
    for (size_t i = 0; i < c->n_changes; i++)
        net += c->changes[i].diff;
    r->net[r->n] = net;
    assert_int_equal(c->time[0], c->tx);
    assert_int_equal(c->frontier[0], c->tx + 1);
    r->n++;
}

static void test_time_dimensions_and_stream(void **state) {
    (void)state;
    dl_store_t *s;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    rec_t rec = {0};
    int lid;
    assert_int_equal(dl_store_listen(s, listener, &rec, &lid, NULL), 0);
    assert_int_equal(st_tx(s,
                           "[{:db/ident :time/shipped :db/timeDimension true}"
                           " {:db/ident :o/n :db/valueType :db.type/long :db/cardinality "
                           ":db.cardinality/one}]",
                           0, NULL, NULL),
                     0);
    dl_db_t *db = dl_store_db(s);
    dl_attr_info_t ai;
    assert_int_equal(dl_db_attr(db, "time/shipped", &ai, NULL), 0);
    assert_true(ai.time_dimension);
    assert_int_equal(ai.dim, 1);
    uint64_t fr[4];
    assert_int_equal(dl_db_frontier(db, fr, 4), 2);
    assert_int_equal(fr[1], 0);
    dl_db_unref(db);
    dl_tx_report_t r;
    /* no coordinate: the frontier (0) */
    assert_int_equal(st_tx(s, "[{:db/id \"a\" :o/n 1}]", 0, &r, NULL), 0);
    assert_int_equal(r.n_time, 2);
    assert_int_equal(r.time[1], 0);
    int64_t a = st_tempid(&r, "a");
    uint64_t tx_a = r.tx;
    dl_tx_report_fini(&r);
    /* a coordinate given as data */
    char buf[200];
    snprintf(buf, sizeof buf, "[[:db/add %lld :o/n 2] {:db/id \"datomic.tx\" :time/shipped 7}]",
             (long long)a);
    assert_int_equal(st_tx(s, buf, 0, &r, NULL), 0);
    assert_int_equal(r.time[1], 7);
    uint64_t tx_b = r.tx;
    dl_tx_report_fini(&r);
    /* advance forward, then backward is an error, equal is a no-op */
    uint64_t adv_tx = 0;
    assert_int_equal(dl_store_advance(s, kw("time/shipped"), 10, &adv_tx, NULL), 0);
    assert_int_equal(adv_tx, tx_b + 1);
    dl_error_t err = {0};
    assert_int_equal(dl_store_advance(s, kw("time/shipped"), 9, NULL, &err), DL_ETIME);
    assert_non_null(strstr(err.message, "backward"));
    uint64_t noop = 99;
    assert_int_equal(dl_store_advance(s, kw("time/shipped"), 10, &noop, NULL), 0);
    assert_int_equal(noop, 0);
    assert_int_equal(dl_store_advance(s, kw("o/n"), 10, NULL, NULL), DL_EUNKNOWN_ATTR);
    /* a coordinate behind the frontier is rejected; no coordinate takes the frontier */
    snprintf(buf, sizeof buf, "[[:db/add %lld :o/n 3] [:db/add \"datomic.tx\" :time/shipped 8]]",
             (long long)a);
    char *before = st_dump(s);
    assert_int_equal(st_tx(s, buf, DL_ETIME, NULL, &err), DL_ETIME);
    char *after = st_dump(s);
    assert_string_equal(before, after);
    dl_free(before);
    dl_free(after);
    snprintf(buf, sizeof buf, "[[:db/add %lld :o/n 3]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, &r, NULL), 0);
    assert_int_equal(r.time[1], 10);
    uint64_t tx_c = r.tx;
    dl_tx_report_fini(&r);
    /* coordinates through the C API; two different ones conflict */
    dl_tx_op_t op = {.op = DL_OP_ADD, .e = dl_value_ref(a), .a = kw("o/n"), .v = dl_value_int(4)};
    dl_tx_coord_t co[2] = {{kw("time/shipped"), 12}, {kw("time/shipped"), 13}};
    assert_int_equal(dl_store_transact(s, &op, 1, co, 2, NULL, NULL), DL_ECONFLICT);
    assert_int_equal(dl_store_transact(s, &op, 1, co, 1, &r, NULL), 0);
    assert_int_equal(r.time[1], 12);
    dl_tx_report_fini(&r);
    /* JSON form */
    const char *j = "[{\"db/id\": \"datomic.tx\", \"time/shipped\": 15}]";
    assert_int_equal(dl_store_transact_json(s, j, strlen(j), &r, NULL), 0);
    assert_int_equal(r.time[1], 15);
    assert_int_equal(r.n_datoms, 0);
    dl_tx_report_fini(&r);
    /* only dimensions may be asserted on the transaction */
    assert_int_equal(st_tx(s, "[[:db/add \"datomic.tx\" :o/n 1]]", DL_EUNSUPPORTED, NULL, NULL),
                     DL_EUNSUPPORTED);
    /* as-of a vector point: system time unbounded, shipped <= 7 sees :o/n 2 (tx_b) */
    db = dl_store_db(s);
    uint64_t pt[2] = {UINT64_MAX, 7};
    dl_db_t *p7 = dl_db_as_of_point(db, pt, 2);
    dl_datom_t *ds;
    size_t nd;
    assert_int_equal(dl_db_entity(p7, a, &ds, &nd, NULL), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(ds[0].v.as.i, 2);
    assert_int_equal((uint64_t)ds[0].tx, tx_b);
    dl_free(ds);
    dl_db_unref(p7);
    /* shipped <= 0: only the first value */
    pt[1] = 0;
    p7 = dl_db_as_of_point(db, pt, 2);
    assert_int_equal(dl_db_entity(p7, a, &ds, &nd, NULL), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(ds[0].v.as.i, 1);
    assert_int_equal((uint64_t)ds[0].tx, tx_a);
    dl_free(ds);
    dl_db_unref(p7);
    /* as-of a number, since, history */
    dl_db_t *v = dl_db_as_of(db, tx_c);
    assert_int_equal(dl_db_entity(v, a, &ds, &nd, NULL), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(ds[0].v.as.i, 3);
    dl_free(ds);
    dl_db_t *h = dl_db_history(v);
    assert_int_equal(dl_db_entity(h, a, &ds, &nd, NULL), 0);
    assert_int_equal(nd, 5); /* +1, -1 +2, -2 +3 */
    dl_free(ds);
    dl_db_unref(h);
    dl_db_unref(v);
    v = dl_db_since(db, tx_c);
    assert_int_equal(dl_db_entity(v, a, &ds, &nd, NULL), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(ds[0].v.as.i, 4);
    dl_free(ds);
    dl_db_unref(v);
    uint64_t tt[3];
    assert_int_equal(dl_db_tx_time(db, tx_b, tt, 3), 2);
    assert_int_equal(tt[1], 7);
    dl_db_unref(db);
    /* a second dimension widens every later time vector */
    assert_int_equal(st_tx(s, "[{:db/ident :time/valid :db/timeDimension true}]", 0, &r, NULL), 0);
    dl_tx_report_fini(&r);
    assert_int_equal(st_tx(s, "[{:o/n 9}]", 0, &r, NULL), 0);
    assert_int_equal(r.n_time, 3);
    dl_tx_report_fini(&r);
    /* a dimension cannot be removed nor be an attribute */
    assert_int_equal(
        st_tx(s, "[[:db/retract :time/valid :db/timeDimension true]]", DL_ESCHEMA, NULL, NULL),
        DL_ESCHEMA);
    assert_int_equal(st_tx(s,
                           "[{:db/ident :time/x :db/timeDimension true :db/valueType "
                           ":db.type/long :db/cardinality :db.cardinality/one}]",
                           DL_ESCHEMA, NULL, NULL),
                     DL_ESCHEMA);
    /* the stream: every commit in order, the advance with no changes */
    dl_store_unlisten(s, lid);
    assert_int_equal(st_tx(s, "[{:o/n 10}]", 0, NULL, NULL), 0);
    assert_int_equal(rec.n, 9); /* the rejected ones and the no-op advance are absent */
    for (int i = 1; i < rec.n; i++)
        assert_int_equal(rec.tx[i], rec.tx[i - 1] + 1);
    assert_int_equal(rec.tx[3], adv_tx);
    assert_int_equal(rec.n_changes[3], 0);
    assert_int_equal(rec.frontier1[3], 10);
    assert_int_equal(rec.time1[2], 7);
    assert_int_equal(rec.net[4], 0); /* replacement: -1 +1 */
    dl_store_close(s);
}

static int count_commits(void *ctx, const dl_commit_t *c) {
    size_t *n = ctx;
    *n += c->n_changes;
    return 0;
}

static void test_time_tx_log_and_no_history(void **state) {
    (void)state;
    dl_store_t *s;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    assert_int_equal(st_tx(s,
                           "[{:db/ident :s/tok :db/valueType :db.type/string :db/cardinality "
                           ":db.cardinality/one :db/noHistory true}"
                           " {:db/ident :s/n :db/valueType :db.type/long :db/cardinality "
                           ":db.cardinality/one}]",
                           0, NULL, NULL),
                     0);
    dl_tx_report_t r;
    assert_int_equal(st_tx(s, "[{:db/id \"x\" :s/tok \"a\" :s/n 1}]", 0, &r, NULL), 0);
    int64_t x = st_tempid(&r, "x");
    uint64_t first = r.tx;
    dl_tx_report_fini(&r);
    char buf[128];
    snprintf(buf, sizeof buf, "[[:db/add %lld :s/tok \"b\"] [:db/add %lld :s/n 2]]", (long long)x,
             (long long)x);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    dl_db_t *db = dl_store_db(s);
    dl_db_t *h = dl_db_history(db);
    dl_datom_t *ds;
    size_t nd;
    assert_int_equal(dl_db_entity(h, x, &ds, &nd, NULL), 0);
    /* :s/n: +1 -1 +2; :s/tok: only the current "b" */
    assert_int_equal(nd, 4);
    dl_free(ds);
    size_t n = 0;
    assert_int_equal(dl_db_tx_range(h, first, 0, count_commits, &n), 0);
    assert_int_equal(n, 2 + 4);
    n = 0;
    assert_int_equal(dl_db_tx_range(h, first, first + 1, count_commits, &n), 0);
    assert_int_equal(n, 2);
    dl_db_unref(h);
    dl_db_unref(db);
    dl_store_close(s);
}

/* ---- readers while the writer commits -------------------------------------------------- */

typedef struct shared {
    dl_store_t *s;
    int64_t acct[4];
    int64_t attr;
    atomic_int stop;
    atomic_long reads;
    atomic_int bad;
} shared_t;

static void *reader(void *p) {
    shared_t *sh = p;
    while (!sh->stop) {
        dl_db_t *db = dl_store_db(sh->s);
        int64_t total = 0;
        for (int i = 0; i < 4; i++) {
            dl_datom_t q = {.e = sh->acct[i], .a = sh->attr};
            dl_iter_t *it;
            if (dl_db_datoms(db, DL_INDEX_EAVT, &q, 2, NULL, &it, NULL) != 0) {
                sh->bad++;
                break;
            }
            dl_datom_t d;
            int k = 0;
            while (dl_iter_next(it, &d)) {
                total += d.v.as.i;
                k++;
            }
            if (k != 1)
                sh->bad++;
            dl_iter_free(it);
        }
        if (total != 400)
            sh->bad++;
        /* an older view too */
        dl_db_t *old = dl_db_as_of(db, dl_db_basis_tx(db) / 2 + 2);
        dl_db_unref(old);
        dl_db_unref(db);
        sh->reads++;
    }
    return NULL;
}

static void test_time_readers_never_see_half_a_transaction(void **state) {
    (void)state;
    shared_t sh = {0};
    assert_int_equal(dl_store_open_memory(&sh.s, NULL), 0);
    assert_int_equal(st_tx(sh.s,
                           "[{:db/ident :acct/bal :db/valueType :db.type/long :db/cardinality "
                           ":db.cardinality/one}]",
                           0, NULL, NULL),
                     0);
    dl_tx_report_t r;
    assert_int_equal(st_tx(sh.s,
                           "[{:db/id \"a\" :acct/bal 100} {:db/id \"b\" :acct/bal 100} {:db/id "
                           "\"c\" :acct/bal 100} {:db/id \"d\" :acct/bal 100}]",
                           0, &r, NULL),
                     0);
    const char *names[4] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        sh.acct[i] = st_tempid(&r, names[i]);
    dl_tx_report_fini(&r);
    dl_db_t *db = dl_store_db(sh.s);
    dl_attr_info_t ai;
    assert_int_equal(dl_db_attr(db, "acct/bal", &ai, NULL), 0);
    sh.attr = ai.id;
    dl_db_unref(db);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, reader, &sh);
    int64_t bal[4] = {100, 100, 100, 100};
    dl_rng_t rng = {dl_prop_seed("store.time_readers_never_see_half_a_transaction")};
    for (int step = 0; step < 1500; step++) {
        int from = (int)dl_rng_below(&rng, 4), to = (from + 1 + (int)dl_rng_below(&rng, 3)) % 4;
        int64_t amt = (int64_t)dl_rng_below(&rng, 10);
        bal[from] -= amt;
        bal[to] += amt;
        char buf[200];
        snprintf(buf, sizeof buf, "[[:db/add %lld :acct/bal %lld] [:db/add %lld :acct/bal %lld]]",
                 (long long)sh.acct[from], (long long)bal[from], (long long)sh.acct[to],
                 (long long)bal[to]);
        assert_int_equal(st_tx(sh.s, buf, 0, NULL, NULL), 0);
    }
    sh.stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(sh.bad, 0);
    assert_true(sh.reads > 0);
    dl_store_close(sh.s);
}

/* A snapshot outlives the store's close. */
static void test_time_snapshot_outlives_close(void **state) {
    (void)state;
    dl_store_t *s;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    assert_int_equal(st_tx(s,
                           "[{:db/ident :k/v :db/valueType :db.type/long :db/cardinality "
                           ":db.cardinality/one}]",
                           0, NULL, NULL),
                     0);
    assert_int_equal(st_tx(s, "[{:k/v 1}]", 0, NULL, NULL), 0);
    dl_db_t *db = dl_store_db(s);
    char *before = st_dump_db(db);
    dl_store_close(s);
    char *after = st_dump_db(db);
    assert_string_equal(before, after);
    dl_free(before);
    dl_free(after);
    dl_db_unref(db);
}

/* An old snapshot held across many commits keeps reading what it held, and does not pin
 * every node the writer retires after it (the precise reclamation of btree.c). */
static void test_time_old_snapshot_does_not_pin_memory(void **state) {
    (void)state;
    dl_store_t *s;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    assert_int_equal(st_tx(s,
                           "[{:db/ident :k/n :db/valueType :db.type/long :db/cardinality "
                           ":db.cardinality/one :db/index true}]",
                           0, NULL, NULL),
                     0);
    for (int i = 0; i < 300; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "[{:db/id \"x\" :k/n %d}]", i);
        assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    }
    dl_db_t *old = dl_store_db(s);
    char *before = st_dump_db(old);
    dl_tx_report_t r;
    assert_int_equal(st_tx(s, "[{:db/id \"y\" :k/n -1}]", 0, &r, NULL), 0);
    int64_t y = r.datoms[0].e;
    dl_tx_report_fini(&r);
    for (int i = 0; i < 4000; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "[[:db/add %lld :k/n %d]]", (long long)y, 1000 + i);
        assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    }
    /* each commit retires a root-to-leaf path in several trees: without the precise
     * reclamation the list would hold tens of thousands of nodes */
    assert_true(s->ctx.n_ret < 12000);
    char *after = st_dump_db(old);
    assert_string_equal(before, after);
    dl_free(before);
    dl_free(after);
    dl_db_unref(old);
    dl_store_close(s);
}

DL_TEST_GROUP(time, cmocka_unit_test(test_time_old_snapshot_does_not_pin_memory),
              cmocka_unit_test(test_time_dimensions_and_stream),
              cmocka_unit_test(test_time_tx_log_and_no_history),
              cmocka_unit_test(test_time_readers_never_see_half_a_transaction),
              cmocka_unit_test(test_time_snapshot_outlives_close));
