/*
 * test_time.c: issue 5's scenario 5, multi-dimensional time (system time plus a declared
 * :time/shipped dimension, with retroactive corrections), tested for what the engine does
 * today:
 * - the store's change stream carries each commit's full time vector [tx, shipped-day];
 *   a transaction that names no day takes the dimension's frontier;
 * - a subscription watching two coordinates (n_dims = 2) receives its deltas tagged with
 *   the commit's [tx, day], and its accumulated result equals the one-shot result at the
 *   system time of its latest delta (the latest-knowledge state, over every day);
 * - "as known at tx T, shipped by day D" is answered by one-shot queries over vector as-of
 *   points (dl_db_as_of_point), compiled engine = reference evaluator = a direct model of
 *   the product order, at every point of a grid, before and after the corrections;
 * - advancing the dimension's frontier refuses a later correction behind it (DL_ETIME).
 *
 * What it does NOT test, because the live path does not do it yet (see
 * docs/subscribe-scenarios.md, scenario 5, and repro_multidim_time.c.txt): live queries
 * run on system time only, so a retroactive correction is delivered as an ordinary change
 * at its transaction; the deltas' [tx, day] tags are not differences in the product order
 * (summing the deltas at or below a point [T, D] does not give the as-of-point result for
 * aggregates); no per-day result is maintained live; no FRONTIER message is produced.
 */
#include "tests/integration/integ.h"

#include <stdio.h>
#include <string.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/shipped :db/valueType :db.type/boolean"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :time/shipped :db/timeDimension true}]";

static const char *q_shipped = "[:find ?id :where [?o :order/shipped true] [?o :order/id ?id]]";
static const char *q_revenue = "[:find (sum ?amount) :with ?o"
                               " :where [?o :order/shipped true] [?o :order/amount ?amount]]";

enum { N_ORDERS = 4, N_DAYS = 5, MAX_CHANGES = 16 };
static const int amount[N_ORDERS + 1] = {0, 100, 200, 300, 400};

/* The model: every change of :order/shipped with its time vector. */
typedef struct change {
    uint64_t tx, day;
    int order, diff;
} change_t;
static change_t model[MAX_CHANGES];
static int n_model;
static uint64_t orders_tx; /* the transaction that created the orders (day 0) */

/* The model's answers at point [T, D]: the shipped ids and the revenue, as EDN. */
static void model_at(uint64_t T, uint64_t D, char *ids, char *revenue, size_t cap) {
    long long sum = 0;
    bool any = false;
    size_t n = (size_t)snprintf(ids, cap, "[");
    for (int o = 1; o <= N_ORDERS; o++) {
        int seen = 0;
        for (int i = 0; i < n_model; i++)
            if (model[i].order == o && model[i].tx <= T && model[i].day <= D)
                seen += model[i].diff;
        if (seen > 0 && T >= orders_tx) {
            n += (size_t)snprintf(ids + n, cap - n, "%s[%d]", any ? " " : "", o);
            sum += amount[o];
            any = true;
        }
    }
    snprintf(ids + n, cap - n, "]");
    if (any)
        snprintf(revenue, cap, "[[%lld]]", sum);
    else
        snprintf(revenue, cap, "[]");
}

/* A one-shot query at vector point [T, D], compiled and reference; returns the compiled
 * result's text (new: dl_free) after checking that both engines agree. */
static char *at_point(ienv_t *e, const char *query, uint64_t T, uint64_t D) {
    dl_db_t *now = dl_store_db(e->st);
    uint64_t point[2] = {T, D};
    dl_db_t *view = dl_db_as_of_point(now, point, 2);
    assert_non_null(view);
    dl_query_t *q = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_query_parse(query, strlen(query), NULL, 0, NULL, &q, &err), 0);
    dl_query_result_t *a = NULL, *b = NULL;
    if (dl_query_run(q, view, NULL, 0, &a, &err))
        fail_msg("compiled at [%llu %llu]: %s", (unsigned long long)T, (unsigned long long)D,
                 err.message);
    dl_query_source_t src = {"$", view};
    if (dl_query_eval_naive(q, &src, 1, NULL, 0, &b, &err))
        fail_msg("reference at [%llu %llu]: %s", (unsigned long long)T, (unsigned long long)D,
                 err.message);
    char *ta = dl_query_result_to_edn(a), *tb = dl_query_result_to_edn(b);
    if (strcmp(ta, tb) != 0)
        fail_msg("%s at [%llu %llu]: compiled %s, reference %s", query, (unsigned long long)T,
                 (unsigned long long)D, ta, tb);
    dl_free(tb);
    dl_query_result_free(a);
    dl_query_result_free(b);
    dl_query_free(q);
    dl_db_unref(view);
    dl_db_unref(now);
    return ta;
}

/* Every point [T, D] with T up to the current transaction and D in 0..N_DAYS: one-shot
 * results equal the model. */
static void check_grid(ienv_t *e, uint64_t upto) {
    for (uint64_t T = orders_tx - 1; T <= upto; T++)
        for (uint64_t D = 0; D <= N_DAYS; D++) {
            char ids[128], rev[64];
            model_at(T, D, ids, rev, sizeof ids);
            char *got_ids = at_point(e, q_shipped, T, D), *got_rev = at_point(e, q_revenue, T, D);
            if (strcmp(got_ids, ids) != 0 || strcmp(got_rev, rev) != 0)
                fail_msg("at [%llu %llu]: shipped %s revenue %s, model %s %s",
                         (unsigned long long)T, (unsigned long long)D, got_ids, got_rev, ids, rev);
            dl_free(got_ids);
            dl_free(got_rev);
        }
}

/* Ships (diff +1) or withdraws (diff -1) `order` on `day`: one transaction whose
 * :time/shipped coordinate is the day. Checks the change stream's time vector. */
static uint64_t ship(ienv_t *e, int order, uint64_t day, int diff) {
    uint64_t tx = ienv_tx(
        e, "[[%s [:order/id %d] :order/shipped true] [:db/add \"datomic.tx\" :time/shipped %llu]]",
        diff > 0 ? ":db/add" : ":db/retract", order, (unsigned long long)day);
    assert_int_equal(e->last_n_time, 2);
    assert_int_equal(e->last_time[0], tx);
    assert_int_equal(e->last_time[1], day);
    model[n_model++] = (change_t){tx, day, order, diff};
    return tx;
}

static void test_time_dimension(void **state) {
    (void)state;
    static ienv_t e;
    n_model = 0;
    ienv_open(&e, NULL, NULL, schema);
    orders_tx = ienv_tx(&e, "[{:order/id 1 :order/amount 100} {:order/id 2 :order/amount 200}"
                            " {:order/id 3 :order/amount 300} {:order/id 4 :order/amount 400}]");
    /* No coordinate given: the dimension's frontier (0: nothing advanced it yet). */
    assert_int_equal(e.last_n_time, 2);
    assert_int_equal(e.last_time[1], 0);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.n_dims = 2;
    static iview_t ids, rev, ids1;
    iview_sub(&e, &ids, q_shipped, NULL, 0, NULL, &o);
    iview_sub(&e, &rev, q_revenue, NULL, 0, NULL, &o);
    iview_sub(&e, &ids1, q_shipped, NULL, 0, NULL, NULL); /* system time only */
    iview_expect(&ids, "");
    assert_int_equal(ids.time[0], orders_tx);
    assert_int_equal(ids.time[1], 0);
    iview_expect(&rev, "");
    iview_expect(&ids1, "");
    /* Watching a different number of coordinates is a different source. */
    dl_sub_stats_t st;
    dl_sub_stats(ids1.sub, &st);
    assert_int_equal(st.shared_with, 1);
    struct {
        int order;
        uint64_t day;
        int diff;
        const char *want_ids, *want_rev;
    } steps[] = {
        {1, 1, +1, "+[1]", "+[100]"},
        {2, 2, +1, "+[2]", "-[100] +[300]"},
        {4, 4, +1, "+[4]", "-[300] +[700]"},
        /* retroactive: order 3 had shipped on day 2, recorded after the day-4 fact */
        {3, 2, +1, "+[3]", "-[700] +[1000]"},
        /* order 4 shipped on day 3, not 4: withdrawn on day 4, asserted on day 3 */
        {4, 4, -1, "-[4]", "+[600] -[1000]"},
        {4, 3, +1, "+[4]", "-[600] +[1000]"},
    };
    uint64_t before_corrections = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        uint64_t tx = ship(&e, steps[i].order, steps[i].day, steps[i].diff);
        if (i == 2)
            before_corrections = tx;
        iview_expect(&ids, steps[i].want_ids);
        iview_expect(&rev, steps[i].want_rev);
        iview_expect(&ids1, steps[i].want_ids);
        /* The deltas carry the commit's coordinates: [tx, day] (n_dims 2) or [tx]. */
        assert_int_equal(ids.time[0], tx);
        assert_int_equal(ids.time[1], steps[i].day);
        assert_int_equal(rev.time[1], steps[i].day);
        assert_int_equal(ids1.time[0], tx);
        /* The live result is the latest knowledge (every day) at system time tx. */
        iview_check(&e, &ids, true);
        iview_check(&e, &rev, true);
        iview_check(&e, &ids1, false);
    }
    /* As-of-point one-shots at every [T, D]: before the corrections (T up to
     * before_corrections) the grid shows day 4's revenue 700; after, 1000 from day 3. */
    check_grid(&e, ids.time[0]);
    char *r = at_point(&e, q_revenue, before_corrections, 3);
    assert_string_equal(r, "[[300]]");
    dl_free(r);
    r = at_point(&e, q_revenue, ids.time[0], 3);
    assert_string_equal(r, "[[1000]]");
    dl_free(r);
    r = at_point(&e, q_revenue, ids.time[0], 2);
    assert_string_equal(r, "[[600]]");
    dl_free(r);

    /* The frontier: days before 3 are closed. The advance reaches the change stream as a
     * commit without changes and delivers no DATA delta (the result did not change). */
    uint64_t adv_tx = 0, commits = e.commits;
    dl_error_t err = {0};
    assert_int_equal(dl_store_advance(e.st, ikw("time/shipped"), 3, &adv_tx, &err), 0);
    assert_int_equal(e.commits, commits + 1);
    assert_int_equal(e.last_time[0], adv_tx);
    iview_expect_none(&ids);
    iview_expect_none(&rev);
    /* A correction behind the frontier is refused and changes nothing. */
    assert_int_equal(ienv_try_tx(&e, "[[:db/retract [:order/id 2] :order/shipped true]"
                                     " [:db/add \"datomic.tx\" :time/shipped 2]]"),
                     DL_ETIME);
    assert_int_equal(e.commits, commits + 1);
    iview_expect_none(&ids);
    /* A transaction naming no day takes the frontier (3). */
    uint64_t tx = ienv_tx(&e, "[[:db/retract [:order/id 2] :order/shipped true]]");
    assert_int_equal(e.last_time[1], 3);
    model[n_model++] = (change_t){tx, 3, 2, -1};
    iview_expect(&ids, "-[2]");
    iview_expect(&rev, "+[800] -[1000]");
    assert_int_equal(ids.time[1], 3);
    iview_check(&e, &ids, true);
    iview_check(&e, &rev, true);
    check_grid(&e, tx);
    iview_free(&e, &ids);
    iview_free(&e, &rev);
    iview_free(&e, &ids1);
    ienv_close(&e);
}

DL_TEST_GROUP(time, cmocka_unit_test(test_time_dimension));
