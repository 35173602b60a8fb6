/*
 * test_errors.c: how subscriptions fail, end to end: a query that does not parse, names an
 * unknown attribute, uses a construct the compiled engine does not support, or gets the
 * wrong number of inputs is refused by dl_subscribe with the Datalog layer's code and
 * leaves the registry as it was; a query that fails while running (a builtin applied to a
 * value of the wrong type, arriving in a later transaction) ends its subscribers with that
 * code after the deltas they already had, closes its source, and leaves every other
 * subscription and the commit itself untouched.
 * Follows docs/subscribe.md ("Registry and sources") and docs/datalog.md ("Errors").
 */
#include "tests/integration/integ.h"

#include <string.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/note :db/valueType :db.type/string :db/cardinality :db.cardinality/one}]";

static void test_errors_refused(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    ienv_tx(&e, "[{:order/id 1 :order/amount 10}]");
    static iview_t v;
    static const struct {
        const char *query;
        int n_inputs;
        int code;
    } bad[] = {
        {"[:find ?id :where [?o :order/id ?id]", 0, DL_EPARSE},
        {"[:find ?id :where [?o :order/nope ?id]]", 0, DL_EUNKNOWN_ATTR},
        {"[:find (distinct ?a) :where [?o :order/amount ?a]]", 0, DL_EUNSUPPORTED},
        {"[:find ?id :in $ ?min :where [?o :order/id ?id] [?o :order/amount ?a] [(> ?a ?min)]]", 0,
         DL_EINVAL},
        {"[:find ?x :where [?o :order/id ?id]]", 0, DL_EUNBOUND},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = iview_try_sub(&e, &v, bad[i].query, NULL, 0, NULL, NULL);
        if (rc != bad[i].code)
            fail_msg("%s: %s, expected %s", bad[i].query, dl_err_name(rc),
                     dl_err_name(bad[i].code));
        assert_null(v.sub);
        dl_registry_stats_t rs;
        dl_registry_stats(e.reg, &rs);
        assert_int_equal(rs.n_sources, 0);
        assert_int_equal(rs.n_subs, 0);
        assert_int_equal(dl_qsrcs_count(e.qs), 0);
    }
    ienv_close(&e);
}

static void test_errors_runtime(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    ienv_tx(&e, "[{:order/id 1 :order/amount 10 :order/note \"7\"}]");
    /* (inc ?n) over a string note fails with DL_ETYPE; while no order passes the amount
     * filter, no note reaches it. */
    const char *q_bad = "[:find ?id ?m :where [?o :order/id ?id] [?o :order/note ?n]"
                        " [?o :order/amount ?a] [(> ?a 100)] [(inc ?n) ?m]]";
    const char *q_ok = "[:find ?id ?a :where [?o :order/id ?id] [?o :order/amount ?a]]";
    static iview_t bad, bad_cb, ok;
    iview_sub(&e, &bad, q_bad, NULL, 0, NULL, NULL);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = iview_cb;
    iview_sub(&e, &bad_cb, q_bad, NULL, 0, NULL, &o);
    iview_sub(&e, &ok, q_ok, NULL, 0, NULL, NULL);
    iview_expect(&bad, "");
    iview_expect(&ok, "+[1 10]");
    /* The failing transaction commits; the failing query's subscribers end with DL_ETYPE;
     * the registry's pump reports the source's error (to the engine that pumps). */
    int rc = ienv_try_tx(&e, "[{:order/id 2 :order/amount 500 :order/note \"x\"}]");
    assert_int_equal(rc, 0);
    assert_int_equal(e.apply_rc, 0);
    assert_int_equal(e.pump_rc, DL_ETYPE);
    e.pump_rc = 0;
    iview_expect_none(&bad);
    assert_true(bad.ended);
    assert_int_equal(bad.end_code, DL_ETYPE);
    assert_true(bad_cb.ended);
    assert_int_equal(bad_cb.end_code, DL_ETYPE);
    /* The other subscription saw the transaction. */
    iview_expect(&ok, "+[2 500]");
    iview_check(&e, &ok, true);
    dl_registry_stats_t rs;
    dl_registry_stats(e.reg, &rs);
    assert_int_equal(rs.n_sources, 1);
    assert_int_equal(dl_qsrcs_count(e.qs), 1);
    /* Subscribing again fails at once: the one-shot fails the same way. */
    static iview_t again;
    assert_int_equal(iview_try_sub(&e, &again, q_bad, NULL, 0, NULL, NULL), DL_ETYPE);
    /* Life goes on for the rest. */
    ienv_tx(&e, "[[:db/retractEntity [:order/id 1]]]");
    iview_expect(&ok, "-[1 10]");
    iview_check(&e, &ok, true);
    iview_free(&e, &bad);
    iview_free(&e, &bad_cb);
    iview_free(&e, &ok);
    ienv_close(&e);
}

DL_TEST_GROUP(errors, cmocka_unit_test(test_errors_refused), cmocka_unit_test(test_errors_runtime));
