/*
 * test_scenarios.c: issue 5's scenarios 1, 2, 3, 6, 8 and 10 end to end through the public
 * API, as an embedding application uses it: an in-memory store whose commit listener feeds
 * the live queries (dl_qsrcs_apply) and pumps the registry; subscribers by channel and by
 * callback. Every case asserts the exact deltas delivered and, after every transaction,
 * the invariant: a subscriber's accumulated result equals the one-shot result (compiled
 * engine and reference evaluator) at the time of its latest delta.
 *
 * Not here: recursion (test_recursive.c), time dimensions (test_time.c), backpressure
 * (test_backpressure.c), libuv (test_uv.c), durable replay (test_events.c), randomized
 * streams (test_random.c). Scenario list: docs/subscribe-scenarios.md.
 */
#include "tests/integration/integ.h"

#include <stdio.h>
#include <string.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/status :db/valueType :db.type/keyword"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/qty :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/price :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/customer :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one}]";

/* Scenario 1: additions, then retractions, arrive as deltas; a transaction that does not
 * touch the result delivers nothing. One channel and one callback subscriber. */
static void test_basic_updates(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    ienv_tx(&e, "[{:order/id 1 :order/amount 10 :order/status :pending}]");
    const char *q = "[:find ?id ?amt :where [?o :order/id ?id] [?o :order/amount ?amt]]";
    static iview_t ch, cb;
    iview_sub(&e, &ch, q, NULL, 0, NULL, NULL);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = iview_cb; /* callback delivery into the view */
    iview_sub(&e, &cb, q, NULL, 0, NULL, &o);
    iview_t *views[] = {&ch, &cb};
    struct {
        const char *tx, *want; /* want NULL: no delta */
    } steps[] = {
        {NULL, "+[1 10]"}, /* the snapshot */
        {"[{:order/id 2 :order/amount 20} {:order/id 3 :order/amount 30}]", "+[2 20] +[3 30]"},
        {"[{:order/id 1 :order/amount 15}]", "-[1 10] +[1 15]"},
        {"[{:order/id 1 :order/status :shipped}]", NULL},
        {"[[:db/retract [:order/id 2] :order/amount 20]]", "-[2 20]"},
        {"[[:db/retractEntity [:order/id 3]]]", "-[3 30]"},
        {"[{:order/id 2 :order/amount 20} [:db/retractEntity [:order/id 1]]]", "-[1 15] +[2 20]"},
        {"[[:db/retractEntity [:order/id 2]]]", "-[2 20]"},
        {"[{:order/id 4 :order/amount 40}]", "+[4 40]"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (steps[i].tx)
            ienv_tx(&e, "%s", steps[i].tx);
        for (int k = 0; k < 2; k++) {
            if (steps[i].want)
                iview_expect(views[k], steps[i].want);
            else
                iview_expect_none(views[k]);
            iview_check(&e, views[k], true);
            iview_check_current(&e, views[k], false);
        }
    }
    assert_int_equal(ch.n_log, cb.n_log);
    for (size_t i = 0; i < ch.n_log; i++) {
        assert_string_equal(ch.log[i], cb.log[i]);
        assert_int_equal(ch.log_tx[i], cb.log_tx[i]);
    }
    iview_free(&e, &ch);
    iview_free(&e, &cb);
    ienv_close(&e);
}

/* Scenario 2: a predicate and a constant filter: only matching changes arrive. */
static void test_filter_predicate(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    const char *q = "[:find ?id ?amt :where [?o :order/status :shipped] [?o :order/id ?id]"
                    " [?o :order/amount ?amt] [(>= ?amt 100)]]";
    static iview_t v;
    ienv_tx(&e, "[{:order/id 1 :order/amount 500 :order/status :shipped}"
                " {:order/id 2 :order/amount 50 :order/status :shipped}]");
    iview_sub(&e, &v, q, NULL, 0, NULL, NULL);
    iview_expect(&v, "+[1 500]");
    struct {
        const char *tx, *want;
    } steps[] = {
        {"[{:order/id 3 :order/amount 10 :order/status :shipped}]", NULL},  /* too small */
        {"[{:order/id 4 :order/amount 900 :order/status :pending}]", NULL}, /* not shipped */
        {"[{:order/id 4 :order/status :shipped}]", "+[4 900]"},
        {"[{:order/id 2 :order/amount 99}]", NULL}, /* 50 -> 99: still filtered out */
        {"[{:order/id 2 :order/amount 100}]", "+[2 100]"},
        {"[{:order/id 1 :order/amount 80}]", "-[1 500]"},
        {"[{:order/id 4 :order/amount 950}]", "-[4 900] +[4 950]"},
        {"[{:order/id 4 :order/status :cancelled} {:order/id 3 :order/amount 20}]", "-[4 950]"},
        {"[{:order/id 5 :order/amount 100 :order/status :pending}]", NULL},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        ienv_tx(&e, "%s", steps[i].tx);
        if (steps[i].want)
            iview_expect(&v, steps[i].want);
        else
            iview_expect_none(&v);
        iview_check(&e, &v, true);
        iview_check_current(&e, &v, false);
    }
    dl_sub_stats_t st;
    dl_sub_stats(v.sub, &st);
    assert_int_equal(st.delivered, 6); /* the snapshot and 5 changes: nothing else */
    iview_free(&e, &v);
    ienv_close(&e);
}

/* Scenario 3: a count and a sum per customer change as retraction of the old row plus
 * the new row; a group that empties disappears. */
static void test_aggregation(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    const char *q = "[:find ?c (count ?o) (sum ?amt) :with ?o"
                    " :where [?o :order/customer ?c] [?o :order/amount ?amt]]";
    static iview_t v;
    ienv_tx(&e, "[{:order/id 1 :order/customer \"ann\" :order/amount 10}]");
    iview_sub(&e, &v, q, NULL, 0, NULL, NULL);
    iview_expect(&v, "+[\"ann\" 1 10]");
    struct {
        const char *tx, *want;
    } steps[] = {
        {"[{:order/id 2 :order/customer \"ann\" :order/amount 20}]",
         "-[\"ann\" 1 10] +[\"ann\" 2 30]"},
        {"[{:order/id 3 :order/customer \"bob\" :order/amount 5}]", "+[\"bob\" 1 5]"},
        /* a sum changes, the count does not */
        {"[{:order/id 2 :order/amount 25}]", "-[\"ann\" 2 30] +[\"ann\" 2 35]"},
        /* equal amounts on two orders count twice (:with ?o) */
        {"[{:order/id 4 :order/customer \"bob\" :order/amount 5}]",
         "-[\"bob\" 1 5] +[\"bob\" 2 10]"},
        /* an order moves from one customer to another: both groups change */
        {"[{:order/id 4 :order/customer \"ann\"}]",
         "-[\"ann\" 2 35] +[\"ann\" 3 40] +[\"bob\" 1 5] -[\"bob\" 2 10]"},
        {"[[:db/retractEntity [:order/id 3]]]", "-[\"bob\" 1 5]"},
        {"[{:order/id 9 :order/status :pending}]", NULL},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        ienv_tx(&e, "%s", steps[i].tx);
        if (steps[i].want)
            iview_expect(&v, steps[i].want);
        else
            iview_expect_none(&v);
        iview_check(&e, &v, true);
    }
    iview_free(&e, &v);
    ienv_close(&e);
}

/* Scenario 6: function expressions in :where (upper-case, str, *, a predicate on a
 * computed value) bind the variables :find delivers, and an aggregate over a computed
 * value. (Datomic's :find takes variables and aggregates, not function calls: rows are
 * shaped in :where.) */
static void test_transformation(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    const char *q_lines =
        "[:find ?who ?label ?total :where [?o :order/customer ?c] [?o :order/id ?id]"
        " [?o :order/qty ?n] [?o :order/price ?p] [(* ?n ?p) ?total] [(> ?total 50)]"
        " [(clojure.string/upper-case ?c) ?who] [(str ?c \"#\" ?id) ?label]]";
    const char *q_totals = "[:find ?who (sum ?total) :with ?o :where [?o :order/customer ?c]"
                           " [(str/upper-case ?c) ?who] [?o :order/qty ?n] [?o :order/price ?p]"
                           " [(* ?n ?p) ?total]]";
    static iview_t lines, totals;
    ienv_tx(&e, "[{:order/id 1 :order/customer \"ann\" :order/qty 3 :order/price 20}"
                " {:order/id 2 :order/customer \"bob\" :order/qty 1 :order/price 20}]");
    iview_sub(&e, &lines, q_lines, NULL, 0, NULL, NULL);
    iview_sub(&e, &totals, q_totals, NULL, 0, NULL, NULL);
    iview_expect(&lines, "+[\"ANN\" \"ann#1\" 60]");
    iview_expect(&totals, "+[\"ANN\" 60] +[\"BOB\" 20]");
    struct {
        const char *tx, *want_lines, *want_totals;
    } steps[] = {
        /* bob's order becomes 3 x 20: it crosses the threshold */
        {"[{:order/id 2 :order/qty 3}]", "+[\"BOB\" \"bob#2\" 60]", "-[\"BOB\" 20] +[\"BOB\" 60]"},
        /* a price change: the computed column changes */
        {"[{:order/id 1 :order/price 30}]", "-[\"ANN\" \"ann#1\" 60] +[\"ANN\" \"ann#1\" 90]",
         "-[\"ANN\" 60] +[\"ANN\" 90]"},
        /* renaming the customer changes both derived strings */
        {"[{:order/id 2 :order/customer \"cy\"}]", "-[\"BOB\" \"bob#2\" 60] +[\"CY\" \"cy#2\" 60]",
         "-[\"BOB\" 60] +[\"CY\" 60]"},
        /* a new order below the threshold only reaches the totals */
        {"[{:order/id 3 :order/customer \"ann\" :order/qty 1 :order/price 5}]", NULL,
         "-[\"ANN\" 90] +[\"ANN\" 95]"},
        {"[[:db/retract [:order/id 1] :order/qty 3]]", "-[\"ANN\" \"ann#1\" 90]",
         "+[\"ANN\" 5] -[\"ANN\" 95]"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        ienv_tx(&e, "%s", steps[i].tx);
        if (steps[i].want_lines)
            iview_expect(&lines, steps[i].want_lines);
        else
            iview_expect_none(&lines);
        iview_expect(&totals, steps[i].want_totals);
        iview_check(&e, &lines, true);
        iview_check(&e, &totals, true);
    }
    iview_free(&e, &lines);
    iview_free(&e, &totals);
    ienv_close(&e);
}

/* Scenario 8: several subscribers of one query (spelled three ways, channel and callback)
 * share one live source: the registry's and the subscriptions' statistics show one
 * dataflow; every subscriber receives every delta (identical logs); a late subscriber's
 * snapshot equals the shared state and it then receives the same deltas; the source is
 * torn down with its last subscriber. */
static void test_shared_dataflow(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    const char *spellings[] = {
        "[:find ?id ?amt :where [?o :order/id ?id] [?o :order/amount ?amt]]",
        "[:find ?id ?amt\n :where [?o :order/id ?id]\n        [?o :order/amount ?amt]]",
        "[:find ?id ?amt, :where [?o :order/id ?id] [?o :order/amount ?amt]] ; same query",
    };
    ienv_tx(&e, "[{:order/id 1 :order/amount 10}]");
    enum { N = 6 };
    static iview_t v[N + 1];
    for (int i = 0; i < N; i++) {
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        if (i % 2)
            o.on_delta = iview_cb;
        iview_sub(&e, &v[i], spellings[i % 3], NULL, 0, NULL, &o);
        /* Channel views take their snapshot now: otherwise it would coalesce with the
         * first change (correct, but then the logs differ from the callbacks'). */
        iview_drain(&v[i]);
        assert_int_equal(v[i].n_log, 1);
    }
    /* A different query: a second source. */
    static iview_t other;
    iview_sub(&e, &other, "[:find ?id :where [?o :order/id ?id]]", NULL, 0, NULL, NULL);
    dl_registry_stats_t rs;
    dl_registry_stats(e.reg, &rs);
    assert_int_equal(rs.n_sources, 2);
    assert_int_equal(rs.n_subs, N + 1);
    assert_int_equal(rs.sources_opened, 2);
    assert_int_equal(dl_qsrcs_count(e.qs), 2);
    dl_sub_stats_t st0, st;
    dl_sub_stats(v[0].sub, &st0);
    assert_int_equal(st0.shared_with, N);
    assert_true(st0.source_id != 0);
    for (int i = 1; i < N; i++) {
        dl_sub_stats(v[i].sub, &st);
        assert_int_equal(st.shared_with, N);
        assert_int_equal(st.source_id, st0.source_id);
    }
    dl_sub_stats(other.sub, &st);
    assert_int_equal(st.shared_with, 1);
    assert_true(st.source_id != st0.source_id);
    for (int k = 2; k <= 12; k++) {
        if (k == 7) { /* a late subscriber joins the shared source */
            iview_sub(&e, &v[N], spellings[0], NULL, 0, NULL, NULL);
            assert_int_equal(iview_drain(&v[N]), 1);
            dl_registry_stats(e.reg, &rs);
            assert_int_equal(rs.sources_opened, 2);
            iview_check(&e, &v[N], true);
        }
        if (k % 4 == 0)
            ienv_tx(&e, "[[:db/retractEntity [:order/id %d]]]", k - 2);
        else
            ienv_tx(&e, "[{:order/id %d :order/amount %d} {:order/id 1 :order/amount %d}]", k,
                    k * 10, k);
        for (int i = 0; i <= N; i++)
            if (v[i].sub) {
                iview_drain(&v[i]);
                iview_check(&e, &v[i], i == 0);
            }
    }
    /* Every subscriber received every delta: identical logs. */
    assert_int_equal(v[0].n_log, 12);
    for (int i = 1; i < N; i++) {
        assert_int_equal(v[i].n_log, v[0].n_log);
        for (size_t j = 0; j < v[0].n_log; j++) {
            assert_string_equal(v[i].log[j], v[0].log[j]);
            assert_int_equal(v[i].log_tx[j], v[0].log_tx[j]);
        }
    }
    /* The late one: its snapshot, then exactly the others' later deltas. */
    size_t late = v[0].n_log - (v[N].n_log - 1);
    for (size_t j = 1; j < v[N].n_log; j++)
        assert_string_equal(v[N].log[j], v[0].log[late + j - 1]);
    dl_sub_stats(v[0].sub, &st);
    assert_int_equal(st.shared_with, N + 1);
    assert_int_equal(st.delivered, v[0].n_log);
    /* Teardown: the source lives until its last subscriber leaves. */
    for (int i = 0; i <= N; i++) {
        iview_free(&e, &v[i]);
        dl_registry_stats(e.reg, &rs);
        assert_int_equal(rs.n_sources, i < N ? 2 : 1);
    }
    assert_int_equal(dl_qsrcs_count(e.qs), 1);
    iview_free(&e, &other);
    dl_registry_stats(e.reg, &rs);
    assert_int_equal(rs.n_sources, 0);
    /* A parameterized query: equal inputs share a source, different inputs do not. */
    const char *q_status = "[:find ?id :in $ ?st :where [?o :order/status ?st] [?o :order/id ?id]]";
    static iview_t p1, p2, p3;
    dl_value_t pending = ikw("pending"), shipped = ikw("shipped");
    iview_sub(&e, &p1, q_status, &pending, 1, "[:pending]", NULL);
    iview_sub(&e, &p2, q_status, &pending, 1, "[:pending]", NULL);
    iview_sub(&e, &p3, q_status, &shipped, 1, "[:shipped]", NULL);
    dl_registry_stats(e.reg, &rs);
    assert_int_equal(rs.n_sources, 2);
    dl_sub_stats(p1.sub, &st0);
    dl_sub_stats(p2.sub, &st);
    assert_int_equal(st0.source_id, st.source_id);
    assert_int_equal(st.shared_with, 2);
    dl_sub_stats(p3.sub, &st);
    assert_true(st.source_id != st0.source_id);
    assert_int_equal(st.shared_with, 1);
    iview_expect(&p1, ""); /* snapshots */
    iview_expect(&p2, "");
    iview_expect(&p3, "");
    ienv_tx(&e, "[{:order/id 1 :order/status :pending} {:order/id 7 :order/status :shipped}]");
    iview_expect(&p1, "+[1]");
    iview_expect(&p2, "+[1]");
    iview_expect(&p3, "+[7]");
    iview_check(&e, &p1, true);
    iview_check(&e, &p3, true);
    iview_free(&e, &p1);
    iview_free(&e, &p2);
    iview_free(&e, &p3);
    dl_registry_stats(e.reg, &rs);
    assert_int_equal(rs.n_sources, 0);
    assert_int_equal(rs.n_subs, 0);
    assert_int_equal(rs.sources_closed, rs.sources_opened);
    assert_int_equal(dl_qsrcs_count(e.qs), 0);
    ienv_close(&e);
}

/* Scenario 10: a dashboard of several aggregate views kept current by callbacks (and one
 * channel view read only now and then). At every moment, reading a view's current state
 * gives the one-shot result. A deterministic stream of order events (new orders, status
 * changes, amount corrections, cancellations by retraction). */
static void test_dashboard(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    static const char *queries[] = {
        "[:find ?s (count ?o) :where [?o :order/status ?s]]",
        "[:find ?c (sum ?a) (max ?a) (min ?a) :with ?o :where [?o :order/customer ?c]"
        " [?o :order/amount ?a]]",
        "[:find (count ?o) (sum ?a) :with ?o :where [?o :order/amount ?a]]",
        "[:find ?s (avg ?a) (count-distinct ?c) :with ?o :where [?o :order/status ?s]"
        " [?o :order/amount ?a] [?o :order/customer ?c]]",
    };
    enum { NQ = 4 };
    static iview_t cb[NQ], ch;
    for (int i = 0; i < NQ; i++) {
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        o.on_delta = iview_cb;
        iview_sub(&e, &cb[i], queries[i], NULL, 0, NULL, &o);
    }
    iview_sub(&e, &ch, queries[1], NULL, 0, NULL, NULL); /* coalesce, read every 5 tx */
    static const char *statuses[] = {"pending", "paid", "shipped"};
    static const char *customers[] = {"ann", "bob", "cy", "dee"};
    dl_rng_t r = {dl_prop_seed("integration_dashboard")};
    long steps = dl_prop_iters(60);
    for (long k = 0; k < steps; k++) {
        int id = 1 + (int)dl_rng_below(&r, 12);
        switch (dl_rng_below(&r, 4)) {
            case 0:
            case 1:
                ienv_tx(&e,
                        "[{:order/id %d :order/status :%s :order/customer \"%s\""
                        " :order/amount %d}]",
                        id, statuses[dl_rng_below(&r, 3)], customers[dl_rng_below(&r, 4)],
                        (int)dl_rng_below(&r, 9) * 5);
                break;
            case 2:
                ienv_tx(&e, "[{:order/id %d :order/status :%s}]", id,
                        statuses[dl_rng_below(&r, 3)]);
                break;
            default: {
                char t[96];
                snprintf(t, sizeof t, "[[:db/retractEntity [:order/id %d]]]", id);
                int rc = ienv_try_tx(&e, t); /* notfound when the order does not exist */
                assert_true(rc == 0 || rc == DL_ENOTFOUND);
                break;
            }
        }
        /* The dashboard reads its views now: each equals the one-shot query. */
        for (int i = 0; i < NQ; i++) {
            iview_check(&e, &cb[i], k % 10 == 0);
            iview_check_current(&e, &cb[i], false);
        }
        if (k % 5 == 4) {
            assert_true(iview_drain(&ch) <= 1); /* coalesced: at most one net delta */
            iview_check_current(&e, &ch, false);
        }
    }
    for (int i = 0; i < NQ; i++)
        iview_free(&e, &cb[i]);
    iview_free(&e, &ch);
    ienv_close(&e);
}

DL_TEST_GROUP(scenarios, cmocka_unit_test(test_basic_updates),
              cmocka_unit_test(test_filter_predicate), cmocka_unit_test(test_aggregation),
              cmocka_unit_test(test_transformation), cmocka_unit_test(test_shared_dataflow),
              cmocka_unit_test(test_dashboard));
