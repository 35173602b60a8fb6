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
 * - the live path in the product order (docs/subscribe.md "Multi-dimensional time"): a
 *   subscription watching [tx, day] runs a 2-D dataflow; a retroactive fact yields the
 *   corrections it implies at later days; the sum of the DATA deltas at times <= [T, D]
 *   equals the one-shot result on dl_db_as_of_point at [T, D] at every grid point from the
 *   subscription's first transaction on (test_time_dimension, test_time_repro: the former
 *   repro_multidim_time.c.txt); FRONTIER messages say which times are complete and no
 *   DATA delta arrives at a time a frontier already closed;
 * - the snapshot of a subscription opened over existing history, as the first subscriber
 *   or as a later one of a shared source: one message per day at [T, day], delivered
 *   inside dl_subscribe, then the frontier (test_time_late_snapshot);
 * - the coalesce policy over [tx, day]: a consumer that reads nothing while corrections
 *   pass holds one message per day, and once it reads them, the sums at [T, D] equal the
 *   one-shot results at every day D (test_time_coalesce);
 * - test_time_random: random transaction streams (random day per transaction, random
 *   advances of the day frontier, subscriptions opened at the start and midway, slow
 *   coalescing channel consumers), the sums at every grid point against the one-shot
 *   as-of-point results.
 *
 * The definition tested: as-of-point [T, D] = the changes whose [tx, day] <= [T, D], and the
 * live sums are the Z-set sums of the same changes. The two agree when every datom's
 * successive changes carry non-decreasing days (then the visible changes of a datom are a
 * prefix of its alternating +/- history: count 0 or 1). The random streams keep to that
 * condition; otherwise (say an assertion at day 4 then its retraction at day 2) a point
 * [T, 3] sees the retraction and not the assertion: the dataflow then holds multiplicity -1
 * for the datom while the store's view simply omits it, and the two are not comparable.
 */
#include "tests/integration/integ.h"

#include <stdio.h>
#include <stdlib.h>
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

/* ---- a recorder: every DATA delta with its time, and the frontiers ---------------------- */

enum { REC_MAX = 4096 };
typedef struct rec {
    const char *query;
    dl_delta_t *got[REC_MAX];
    int n_got;
    uint64_t fr[REC_MAX][2]; /* FRONTIER times received */
    int n_fr;
    char bad[200]; /* a protocol violation seen in the callback */
    dl_sub_t *sub;
    bool channel;          /* channel delivery (rec_drain takes the messages) */
    uint64_t last_data[2]; /* time of the latest DATA delta */
} rec_t;

static void rec_cb(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    rec_t *r = udata;
    size_t nd = 0;
    const uint64_t *t = dl_delta_time(d, &nd);
    if (nd != 2 && !r->bad[0])
        snprintf(r->bad, sizeof r->bad, "a delta with %zu coordinates", nd);
    if (dl_delta_kind(d) == DL_DELTA_FRONTIER && r->n_fr < REC_MAX) {
        r->fr[r->n_fr][0] = t[0];
        r->fr[r->n_fr++][1] = t[1];
    } else if (dl_delta_kind(d) == DL_DELTA_DATA && r->n_got < REC_MAX) {
        /* completeness: no data at a time a frontier already closed */
        for (int i = 0; i < r->n_fr && !r->bad[0]; i++)
            if (t[0] <= r->fr[i][0] && t[1] <= r->fr[i][1])
                snprintf(r->bad, sizeof r->bad, "data at [%llu %llu] after frontier [%llu %llu]",
                         (unsigned long long)t[0], (unsigned long long)t[1],
                         (unsigned long long)r->fr[i][0], (unsigned long long)r->fr[i][1]);
        if (r->n_got > 0 && dl_delta_is_snapshot(d) && !r->bad[0])
            snprintf(r->bad, sizeof r->bad, "a second snapshot");
        if (r->n_got == 0 && !dl_delta_is_snapshot(d) && !r->bad[0])
            snprintf(r->bad, sizeof r->bad, "the first DATA delta is not the snapshot");
        if (r->n_got > 0 && !r->bad[0] &&
            (t[0] < r->last_data[0] || (t[0] == r->last_data[0] && t[1] <= r->last_data[1])))
            snprintf(r->bad, sizeof r->bad, "data at [%llu %llu] after [%llu %llu]",
                     (unsigned long long)t[0], (unsigned long long)t[1],
                     (unsigned long long)r->last_data[0], (unsigned long long)r->last_data[1]);
        r->last_data[0] = t[0];
        r->last_data[1] = t[1];
        r->got[r->n_got++] = dl_delta_ref((dl_delta_t *)d);
    }
}

/* The latest transaction T a FRONTIER [T MAX] closed (0: none). A coalescing consumer
 * that has read everything holds the result as of [T, D] for every day D (the latest
 * DATA's transaction may be older: undelivered changes that cancel out leave nothing). */
static uint64_t rec_done_tx(const rec_t *r) {
    uint64_t t = 0;
    for (int i = 0; i < r->n_fr; i++)
        if (r->fr[i][0] != UINT64_MAX && r->fr[i][0] > t)
            t = r->fr[i][0];
    return t;
}

/* Channel recs: takes every waiting message. */
static void rec_drain(rec_t *r) {
    dl_delta_t *d = NULL;
    while (dl_sub_next(r->sub, 0, &d, NULL) == 0 && d) {
        rec_cb(r->sub, d, r);
        dl_delta_unref(d);
    }
}

/* A callback rec, or with `channel` a COALESCE channel rec (rec_drain reads it). */
static void rec_sub_ex(ienv_t *e, rec_t *r, const char *query, bool channel) {
    memset(r, 0, sizeof *r);
    r->query = query;
    r->channel = channel;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.n_dims = 2;
    o.policy = DL_SUB_COALESCE;
    o.on_delta = channel ? NULL : rec_cb;
    o.udata = r;
    dl_error_t err = {0};
    if (dl_subscribe(e->reg, query, NULL, 0, &o, &r->sub, &err))
        fail_msg("subscribe %s: %s", query, err.message);
}

static void rec_sub(ienv_t *e, rec_t *r, const char *query) { rec_sub_ex(e, r, query, false); }

static void rec_free(ienv_t *e, rec_t *r) {
    for (int i = 0; i < r->n_got; i++)
        dl_delta_unref(r->got[i]);
    dl_unsubscribe(e->reg, r->sub);
    r->n_got = 0;
}

/* The sum of the recorded DATA deltas at times <= [T, D], as canonical EDN (new: dl_free;
 * fails the test on a multiplicity other than 1). */
static char *rec_sum_at(rec_t *r, uint64_t T, uint64_t D) {
    iview_t v;
    memset(&v, 0, sizeof v);
    v.query = r->query;
    v.arity = r->n_got ? dl_delta_arity(r->got[0]) : 0;
    uint64_t t0[2] = {0, 0};
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, v.arity, t0, 2, &v.acc, NULL), 0);
    for (int i = 0; i < r->n_got; i++) {
        const uint64_t *t = dl_delta_time(r->got[i], NULL);
        if (t[0] <= T && t[1] <= D)
            for (size_t k = 0; k < dl_delta_len(r->got[i]); k++)
                assert_int_equal(dl_delta_add(v.acc, dl_delta_row(r->got[i], k),
                                              dl_delta_diff(r->got[i], k), NULL),
                                 0);
    }
    char *text = iview_text(&v);
    dl_delta_unref(v.acc);
    return text;
}

static char *one_shot_point(ienv_t *e, const char *query, uint64_t T, uint64_t D) {
    dl_db_t *now = dl_store_db(e->st);
    uint64_t point[2] = {T, D};
    dl_db_t *view = dl_db_as_of_point(now, point, 2);
    assert_non_null(view);
    dl_query_t *q = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_query_parse(query, strlen(query), NULL, 0, NULL, &q, &err), 0);
    dl_query_result_t *res = NULL;
    if (dl_query_run(q, view, NULL, 0, &res, &err))
        fail_msg("one-shot at [%llu %llu]: %s", (unsigned long long)T, (unsigned long long)D,
                 err.message);
    char *t = dl_query_result_to_edn(res);
    dl_query_result_free(res);
    dl_query_free(q);
    dl_db_unref(view);
    dl_db_unref(now);
    return t;
}

/* At every [T, D] with T in t_lo..t_hi and D in 0..d_hi: the recorded sums equal the
 * one-shot result as of the point; and the callback saw no protocol violation. */
static void rec_check_grid(ienv_t *e, rec_t *r, uint64_t t_lo, uint64_t t_hi, uint64_t d_hi) {
    if (r->bad[0])
        fail_msg("%s: %s", r->query, r->bad);
    for (uint64_t T = t_lo; T <= t_hi; T++)
        for (uint64_t D = 0; D <= d_hi; D++) {
            char *a = rec_sum_at(r, T, D), *b = one_shot_point(e, r->query, T, D);
            if (strcmp(a, b) != 0)
                fail_msg("%s (%s) at [%llu %llu]: sum of live diffs %s, as-of-point one-shot %s",
                         r->query, r->channel ? "coalescing channel" : "callback",
                         (unsigned long long)T, (unsigned long long)D, a, b);
            dl_free(a);
            dl_free(b);
        }
}

/* Whether a FRONTIER message at exactly [t0, t1] was recorded. */
static bool rec_has_frontier(const rec_t *r, uint64_t t0, uint64_t t1) {
    for (int i = 0; i < r->n_fr; i++)
        if (r->fr[i][0] == t0 && r->fr[i][1] == t1)
            return true;
    return false;
}

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
    /* BLOCK (a bounded queue): every delta as it comes, which the steps below check one
     * by one (COALESCE over [tx, day]: test_time_coalesce). */
    o.policy = DL_SUB_BLOCK;
    static iview_t ids, rev, ids1;
    static rec_t rrev, rids;
    iview_sub(&e, &ids, q_shipped, NULL, 0, NULL, &o);
    iview_sub(&e, &rev, q_revenue, NULL, 0, NULL, &o);
    iview_sub(&e, &ids1, q_shipped, NULL, 0, NULL, NULL); /* system time only */
    rec_sub(&e, &rrev, q_revenue);                        /* shares rev's source */
    rec_sub(&e, &rids, q_shipped);
    /* Watching two coordinates: the snapshot is at [T 0] (T the current transaction),
     * one message per day with a result (here: nothing is shipped yet, so one empty
     * message), then the frontier. */
    iview_expect(&ids, "");
    assert_int_equal(ids.time[0], orders_tx);
    assert_int_equal(ids.time[1], 0);
    assert_true(rec_has_frontier(&rrev, orders_tx, UINT64_MAX));
    iview_expect(&rev, "");
    iview_expect(&ids1, "");
    /* The frontier: every time of a transaction up to orders_tx is complete. */
    assert_true(rev.n_frontier > 0);
    /* Watching a different number of coordinates is a different source. */
    dl_sub_stats_t st;
    dl_sub_stats(ids1.sub, &st);
    assert_int_equal(st.shared_with, 1);
    dl_sub_stats(rev.sub, &st);
    assert_int_equal(st.shared_with, 2);
    /* Each step: the DATA deltas of the 2-D revenue view, at days rev_days (0: none). */
    struct {
        int order;
        uint64_t day;
        int diff;
        const char *want_ids, *want_rev[2];
        uint64_t rev_days[2];
    } steps[] = {
        {1, 1, +1, "+[1]", {"+[100]", NULL}, {1, 0}},
        {2, 2, +1, "+[2]", {"-[100] +[300]", NULL}, {2, 0}},
        {4, 4, +1, "+[4]", {"-[300] +[700]", NULL}, {4, 0}},
        /* retroactive: order 3 had shipped on day 2, recorded after the day-4 fact: the
         * revenue by day 2 becomes 600, and by day 4 1000 (the correction at day 4 takes
         * back what days 2 and 4 had each added: +300 -600 -700 +1000) */
        {3, 2, +1, "+[3]", {"-[300] +[600]", "+[300] -[600] -[700] +[1000]"}, {2, 4}},
        /* order 4 shipped on day 3, not 4: withdrawn on day 4, asserted on day 3 */
        {4, 4, -1, "-[4]", {"+[600] -[1000]", NULL}, {4, 0}},
        {4, 3, +1, "+[4]", {"-[600] +[1000]", NULL}, {3, 0}},
    };
    uint64_t before_corrections = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        uint64_t tx = ship(&e, steps[i].order, steps[i].day, steps[i].diff);
        if (i == 2)
            before_corrections = tx;
        iview_expect(&ids, steps[i].want_ids);
        /* The deltas carry their coordinates [tx, day] (n_dims 2) or [tx]. */
        assert_int_equal(ids.time[0], tx);
        assert_int_equal(ids.time[1], steps[i].day);
        for (int k = 0; k < 2 && steps[i].want_rev[k]; k++) {
            iview_expect(&rev, steps[i].want_rev[k]);
            assert_int_equal(rev.log_tx[rev.taken - 1], tx);
        }
        iview_expect_none(&rev);
        assert_int_equal(rev.time[0], tx);
        assert_int_equal(rev.time[1], steps[i].rev_days[steps[i].want_rev[1] ? 1 : 0]);
        iview_expect(&ids1, steps[i].want_ids);
        assert_int_equal(ids1.time[0], tx);
        assert_true(rec_has_frontier(&rrev, tx, UINT64_MAX));
        /* The sum over every time is the latest knowledge at system time tx. */
        iview_check(&e, &ids, true);
        iview_check(&e, &rev, true);
        iview_check(&e, &ids1, false);
        /* The product order: the sums at or below every point are the as-of-point results. */
        rec_check_grid(&e, &rrev, orders_tx - 1, tx, N_DAYS);
        rec_check_grid(&e, &rids, orders_tx - 1, tx, N_DAYS);
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
    /* ... but FRONTIER messages: every day before 3 is complete, and the advance's tx. */
    assert_true(rec_has_frontier(&rrev, UINT64_MAX, 2));
    assert_true(rec_has_frontier(&rrev, adv_tx, UINT64_MAX));
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
    rec_check_grid(&e, &rrev, orders_tx - 1, tx, N_DAYS);
    rec_check_grid(&e, &rids, orders_tx - 1, tx, N_DAYS);
    rec_free(&e, &rrev);
    rec_free(&e, &rids);
    iview_free(&e, &ids);
    iview_free(&e, &rev);
    iview_free(&e, &ids1);
    ienv_close(&e);
}

/* The former repro_multidim_time.c.txt: a subscription opened before the shipments, the
 * revenue sums at every [T, D] against the as-of-point one-shots. The first delta at or
 * below [6 2] used to sum to a negative multiplicity. */
static void test_time_repro(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    uint64_t first =
        ienv_tx(&e, "[{:order/id 1 :order/amount 100} {:order/id 2 :order/amount 200}"
                    " {:order/id 3 :order/amount 300} {:order/id 4 :order/amount 400}]");
    static rec_t r;
    rec_sub(&e, &r, q_revenue);
    const struct {
        int order, day;
        const char *op;
    } ev[] = {{1, 1, ":db/add"}, {2, 2, ":db/add"},     {4, 4, ":db/add"},
              {3, 2, ":db/add"}, {4, 4, ":db/retract"}, {4, 3, ":db/add"}};
    uint64_t last = 0;
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++)
        last = ienv_tx(&e,
                       "[[%s [:order/id %d] :order/shipped true]"
                       " [:db/add \"datomic.tx\" :time/shipped %d]]",
                       ev[i].op, ev[i].order, ev[i].day);
    rec_check_grid(&e, &r, first - 1, last, 5);
    char *a = rec_sum_at(&r, first + 6, 2);
    assert_string_equal(a, "[[600]]");
    dl_free(a);
    rec_free(&e, &r);
    ienv_close(&e);
}

/* A subscription opened over existing history: as the first subscriber of a new source
 * and as a later subscriber of a shared one, it receives inside dl_subscribe (no pump) the
 * current result per day, [T D] for every day D with a result, then the frontier; the
 * sums at [T, D] are the as-of-point results at every day, and they stay so as commits
 * and a retroactive correction pass. */
static void test_time_late_snapshot(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    uint64_t first =
        ienv_tx(&e, "[{:order/id 1 :order/amount 100} {:order/id 2 :order/amount 200}"
                    " {:order/id 3 :order/amount 300} {:order/id 4 :order/amount 400}]");
    static rec_t early, fresh, second;
    rec_sub(&e, &early, q_revenue); /* opens the source before the history */
    const struct {
        int order, day;
        const char *op;
    } ev[] = {{1, 1, ":db/add"}, {2, 2, ":db/add"},     {4, 4, ":db/add"},
              {3, 2, ":db/add"}, {4, 4, ":db/retract"}, {4, 3, ":db/add"}};
    uint64_t last = 0;
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++)
        last = ienv_tx(&e,
                       "[[%s [:order/id %d] :order/shipped true]"
                       " [:db/add \"datomic.tx\" :time/shipped %d]]",
                       ev[i].op, ev[i].order, ev[i].day);
    /* A fresh source (another query text, same result) and a second subscriber of the
     * early one's source: both snapshots arrive before dl_subscribe returns. */
    rec_sub(&e, &fresh,
            "[:find (sum ?amount) :with ?o :where [?o :order/amount ?amount]"
            " [?o :order/shipped true]]");
    rec_sub(&e, &second, q_revenue);
    dl_sub_stats_t st;
    dl_sub_stats(second.sub, &st);
    assert_int_equal(st.shared_with, 2);
    rec_t *late[2] = {&fresh, &second};
    for (int k = 0; k < 2; k++) {
        rec_t *r = late[k];
        /* revenue by day: 100 from day 1, 600 from day 2, 1000 from day 3: the flagged
         * (empty) message at [last 0], then days 1, 2 and 3 */
        assert_int_equal(r->n_got, 4);
        assert_true(dl_delta_is_snapshot(r->got[0]));
        for (int i = 0; i < 4; i++) {
            assert_int_equal(dl_delta_time(r->got[i], NULL)[0], last);
            assert_int_equal(dl_delta_time(r->got[i], NULL)[1], (uint64_t)i);
        }
        assert_true(rec_has_frontier(r, last, UINT64_MAX));
        rec_check_grid(&e, r, last, last, 5);
    }
    rec_check_grid(&e, &early, first - 1, last, 5);
    /* Later commits, a retroactive one included, reach all three alike. */
    uint64_t tx = ienv_tx(&e, "[[:db/retract [:order/id 1] :order/shipped true]"
                              " [:db/add \"datomic.tx\" :time/shipped 2]]");
    tx = ienv_tx(&e, "[[:db/add [:order/id 1] :order/shipped true]"
                     " [:db/add \"datomic.tx\" :time/shipped 5]]");
    for (int k = 0; k < 2; k++)
        rec_check_grid(&e, late[k], last, tx, 6);
    rec_check_grid(&e, &early, first - 1, tx, 6);
    /* The frontier of the day dimension reaches a new subscriber too. */
    uint64_t atx = 0;
    dl_error_t err = {0};
    assert_int_equal(dl_store_advance(e.st, ikw("time/shipped"), 4, &atx, &err), 0);
    static rec_t third;
    rec_sub(&e, &third, q_revenue);
    assert_true(rec_has_frontier(&third, UINT64_MAX, 3));
    assert_true(rec_has_frontier(&third, atx, UINT64_MAX));
    rec_check_grid(&e, &third, atx, atx, 6);
    rec_free(&e, &early);
    rec_free(&e, &fresh);
    rec_free(&e, &second);
    rec_free(&e, &third);
    ienv_close(&e);
}

/* COALESCE over [tx, day]: a channel consumer that reads nothing while the shipments and
 * corrections pass holds at most one message per day (plus the newest transaction's), and
 * when it reads them the sums at [T, D] equal the as-of-point results at every day D; a
 * consumer reading after every commit sees every transaction. */
static void test_time_coalesce(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    uint64_t first =
        ienv_tx(&e, "[{:order/id 1 :order/amount 100} {:order/id 2 :order/amount 200}"
                    " {:order/id 3 :order/amount 300} {:order/id 4 :order/amount 400}]");
    static rec_t slow, fast, slow_ids;
    rec_sub_ex(&e, &slow, q_revenue, true);
    rec_sub_ex(&e, &fast, q_revenue, true);
    rec_sub_ex(&e, &slow_ids, q_shipped, true);
    const struct {
        int order, day;
        const char *op;
    } ev[] = {{1, 1, ":db/add"},     {2, 2, ":db/add"},     {4, 4, ":db/add"},
              {3, 2, ":db/add"},     {4, 4, ":db/retract"}, {4, 3, ":db/add"},
              {1, 1, ":db/retract"}, {1, 5, ":db/add"},     {2, 2, ":db/retract"}};
    uint64_t last = 0;
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
        last = ienv_tx(&e,
                       "[[%s [:order/id %d] :order/shipped true]"
                       " [:db/add \"datomic.tx\" :time/shipped %d]]",
                       ev[i].op, ev[i].order, ev[i].day);
        rec_drain(&fast);
        rec_check_grid(&e, &fast, first - 1, last, 6);
        dl_sub_stats_t st;
        dl_sub_stats(slow.sub, &st);
        /* days 0..5 at most, plus the newest transaction's messages and frontiers */
        assert_true(st.queued <= 6 + 3 + 2);
    }
    rec_drain(&slow);
    rec_drain(&slow_ids);
    /* Caught up: correct at the latest transaction for every day. */
    assert_int_equal(rec_done_tx(&slow), last);
    assert_int_equal(rec_done_tx(&slow_ids), last);
    rec_check_grid(&e, &slow, last, last, 6);
    rec_check_grid(&e, &slow_ids, last, last, 6);
    dl_sub_stats_t st;
    dl_sub_stats(slow.sub, &st);
    assert_true(st.coalesced > 0);
    assert_true(rec_has_frontier(&slow, last, UINT64_MAX));
    rec_free(&e, &slow);
    rec_free(&e, &fast);
    rec_free(&e, &slow_ids);
    ienv_close(&e);
}

/* ---- randomized: random streams, random days and advances, the grid ---------------------- */

static const char *rschema =
    "[{:db/ident :r/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :r/x :db/valueType :db.type/long :db/cardinality :db.cardinality/many}"
    " {:db/ident :r/y :db/valueType :db.type/long :db/cardinality :db.cardinality/many}"
    " {:db/ident :time/d :db/timeDimension true}]";
static const char *rqueries[] = {
    "[:find ?e ?x :where [?e :r/x ?x]]",
    "[:find ?x ?y :where [?e :r/x ?x] [?e :r/y ?y]]",
    "[:find ?e (count ?x) :where [?e :r/x ?x]]",
    "[:find (sum ?x) :with ?e :where [?e :r/x ?x] [?e :r/y 1]]",
    /* opened midway (fresh sources: their history loads at its time vectors) */
    "[:find ?y (count ?e) :where [?e :r/y ?y]]",
    "[:find ?e ?x ?y :where [?e :r/x ?x] [?e :r/y ?y] [(< ?x ?y)]]",
};
enum { R_ENT = 4, R_VAL = 3, R_TX = 14 };

static void test_time_random(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("integration.time_random");
    for (int round = 0; round < 3; round++) {
        srand((unsigned)(seed + (uint64_t)round * 7919u));
        static ienv_t e;
        ienv_open(&e, NULL, NULL, rschema);
        uint64_t first = ienv_tx(&e, "[{:r/id 0} {:r/id 1} {:r/id 2} {:r/id 3}]");
        /* present[a][e][v] and the day of each datom's last change (kept non-decreasing) */
        bool present[2][R_ENT][R_VAL] = {{{false}}};
        uint64_t lastday[2][R_ENT][R_VAL] = {{{0}}};
        uint64_t frontier = 0, maxday = 0;
        static rec_t r[6], cr[6]; /* callbacks; coalescing channels read now and then */
        uint64_t join[6] = {0};
        memset(r, 0, sizeof r);
        memset(cr, 0, sizeof cr);
        for (int q = 0; q < 4; q++) {
            rec_sub(&e, &r[q], rqueries[q]);
            rec_sub_ex(&e, &cr[q], rqueries[q], true);
            join[q] = first;
        }
        uint64_t last = first;
        for (int step = 0; step < R_TX; step++) {
            if (step == R_TX / 2)
                for (int q = 4; q < 6; q++) {
                    rec_sub(&e, &r[q], rqueries[q]);
                    rec_sub_ex(&e, &cr[q], rqueries[q], true);
                    join[q] = last;
                }
            for (int q = 0; q < 6; q++)
                if (cr[q].sub && rand() % 3 == 0) {
                    /* caught up: right at the latest transaction, for every day */
                    rec_drain(&cr[q]);
                    assert_int_equal(rec_done_tx(&cr[q]), last);
                    rec_check_grid(&e, &cr[q], last, last, maxday + 1);
                }
            if (rand() % 6 == 0) { /* advance the day frontier */
                uint64_t to = frontier + 1 + (uint64_t)(rand() % 2), atx = 0;
                dl_error_t err = {0};
                assert_int_equal(dl_store_advance(e.st, ikw("time/d"), to, &atx, &err), 0);
                frontier = to;
                maxday = maxday > to ? maxday : to;
                last = atx;
                for (int q = 0; q < 6; q++)
                    if (r[q].sub && !rec_has_frontier(&r[q], UINT64_MAX, to - 1))
                        fail_msg("%s: no FRONTIER [MAX %llu] after the advance", r[q].query,
                                 (unsigned long long)(to - 1));
                continue;
            }
            /* the day: anywhere from the frontier to 4 past it (retroactive when below
             * days already seen) */
            uint64_t day = frontier + (uint64_t)(rand() % 5);
            char txt[1024];
            size_t n = (size_t)snprintf(txt, sizeof txt, "[");
            int ops = 0;
            bool touched[2][R_ENT][R_VAL] = {{{false}}}; /* one change per datom per tx */
            for (int k = 0; k < 1 + rand() % 3; k++) {
                int a = rand() % 2, en = rand() % R_ENT, v = rand() % R_VAL;
                if (lastday[a][en][v] > day || touched[a][en][v])
                    continue; /* keeps each datom's days non-decreasing (see the top) */
                n += (size_t)snprintf(txt + n, sizeof txt - n, "[%s [:r/id %d] :r/%s %d] ",
                                      present[a][en][v] ? ":db/retract" : ":db/add", en,
                                      a ? "y" : "x", v);
                present[a][en][v] = !present[a][en][v];
                lastday[a][en][v] = day;
                touched[a][en][v] = true;
                ops++;
            }
            if (!ops)
                continue;
            snprintf(txt + n, sizeof txt - n, "[:db/add \"datomic.tx\" :time/d %llu]]",
                     (unsigned long long)day);
            last = ienv_tx(&e, "%s", txt);
            assert_int_equal(e.last_time[1], day);
            maxday = maxday > day ? maxday : day;
            for (int q = 0; q < 6; q++)
                if (r[q].sub && !rec_has_frontier(&r[q], last, UINT64_MAX))
                    fail_msg("%s: no FRONTIER [%llu MAX]", r[q].query, (unsigned long long)last);
        }
        ienv_pump(&e);
        assert_true(r[0].n_got > 0);
        for (int q = 0; q < 6; q++)
            if (r[q].sub) {
                /* from the transaction it joined at (its snapshot's) */
                rec_check_grid(&e, &r[q], join[q] == first ? first - 1 : join[q], last, maxday + 1);
                rec_free(&e, &r[q]);
                rec_drain(&cr[q]);
                assert_int_equal(rec_done_tx(&cr[q]), last);
                rec_check_grid(&e, &cr[q], last, last, maxday + 1);
                rec_free(&e, &cr[q]);
            }
        ienv_close(&e);
    }
}

DL_TEST_GROUP(time, cmocka_unit_test(test_time_dimension), cmocka_unit_test(test_time_repro),
              cmocka_unit_test(test_time_late_snapshot), cmocka_unit_test(test_time_coalesce),
              cmocka_unit_test(test_time_random));
