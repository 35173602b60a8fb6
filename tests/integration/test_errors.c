/*
 * test_errors.c: how subscriptions fail, end to end: a query that does not parse, names an
 * unknown attribute, uses a construct the compiled engine does not support, or gets the
 * wrong number of inputs is refused by dl_subscribe with the Datalog layer's code and
 * leaves the registry as it was; a query that fails while running (a builtin applied to a
 * value of the wrong type, arriving in a later transaction) ends its subscribers with that
 * code after the deltas they already had, closes its source, and leaves every other
 * subscription and the commit itself untouched.
 * Also: teardown returns memory, and allocation failure along a transaction's path. Not
 * here: the error codes of the subscription queues themselves (tests/subscribe).
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
        {"[:find ?t :where [?o :order/amount ?a] [(tuple ?a ?a) ?t]]", 0, DL_EUNSUPPORTED},
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

/* Teardown returns memory: after a warm-up round (interned symbols and keywords are
 * immortal), subscribing several queries (their live dataflows are built and loaded) and
 * unsubscribing them all leaves the allocator's live bytes and blocks where they were. */
static void test_teardown_memory(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    for (int i = 1; i <= 30; i++)
        ienv_tx(&e, "[{:order/id %d :order/amount %d :order/note \"n%d\"}]", i, i * 3, i % 4);
    static const char *qs[] = {
        "[:find ?id ?a :where [?o :order/id ?id] [?o :order/amount ?a]]",
        "[:find ?n (count ?o) (sum ?a) :with ?o :where [?o :order/note ?n] [?o :order/amount ?a]]",
        "[:find ?id :where [?o :order/id ?id] [?o :order/amount ?a] [(> ?a 40)]]",
    };
    static iview_t v[6];
    dl_alloc_stats_t before = {0}, after;
    for (int round = 0; round < 3; round++) {
        if (round == 2)
            dl_alloc_stats(&before);
        for (int i = 0; i < 6; i++) {
            dl_sub_options_t o;
            dl_sub_options_init(&o);
            if (i % 2)
                o.on_delta = iview_cb;
            iview_sub(&e, &v[i], qs[i % 3], NULL, 0, NULL, &o);
        }
        dl_registry_stats_t rs;
        dl_registry_stats(e.reg, &rs);
        assert_int_equal(rs.n_sources, 3);
        for (int i = 0; i < 6; i++)
            iview_free(&e, &v[i]);
        assert_int_equal(dl_qsrcs_count(e.qs), 0);
    }
    dl_alloc_stats(&after);
    if (after.live_bytes != before.live_bytes || after.live_blocks != before.live_blocks)
        fail_msg("after teardown: %lld bytes in %lld blocks, before: %lld in %lld",
                 (long long)after.live_bytes, (long long)after.live_blocks,
                 (long long)before.live_bytes, (long long)before.live_blocks);
    ienv_close(&e);
}

/* Allocation failure anywhere on the path of a transaction (store, live queries,
 * registry, queues): the n-th allocation after the subscriptions exist fails, for every n
 * until the transaction needs fewer (channel subscribers only: a callback runs inside the
 * failing window, and this harness's own bookkeeping allocates). Each time: the transaction commits
 * or fails as a whole; a subscriber either still satisfies the invariant or has ended with
 * DL_ENOMEM; once memory is back, the next transaction and a new subscription work. ASan checks
 * that nothing leaks. */
static void test_nomem(void **state) {
    (void)state;
    const char *q_sum =
        "[:find ?n (sum ?a) :with ?o :where [?o :order/note ?n] [?o :order/amount ?a]]";
    const char *q_ids = "[:find ?id :where [?o :order/id ?id] [?o :order/amount ?a] [(> ?a 5)]]";
    int n_ok = 0, n_failed_tx = 0, n_ended = 0;
    int64_t n;
    for (n = 0;; n++) {
        static ienv_t e;
        ienv_open(&e, NULL, NULL, schema);
        ienv_tx(&e, "[{:order/id 1 :order/amount 10 :order/note \"a\"}]");
        static iview_t v[3];
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        iview_sub(&e, &v[0], q_sum, NULL, 0, NULL, &o);
        o.policy = DL_SUB_DROP; /* channels only: the harness itself allocates */
        iview_sub(&e, &v[1], q_ids, NULL, 0, NULL, &o);
        dl_sub_options_init(&o);
        o.policy = DL_SUB_BLOCK;
        o.block_timeout_ms = 0;
        iview_sub(&e, &v[2], q_ids, NULL, 0, NULL, &o);
        for (int i = 0; i < 3; i++)
            iview_drain(&v[i]);
        dl_alloc_fail_after(n);
        int rc = ienv_try_tx(&e, "[{:order/id 1 :order/amount 20} {:order/id 2 :order/amount 30"
                                 " :order/note \"a\"} {:order/id 3 :order/amount 1}]");
        dl_alloc_fail_after(-1);
        bool injected = rc != 0 || e.apply_rc || e.pump_rc;
        if (rc)
            assert_int_equal(rc, DL_ENOMEM);
        if (e.apply_rc)
            assert_int_equal(e.apply_rc, DL_ENOMEM);
        if (e.pump_rc)
            assert_int_equal(e.pump_rc, DL_ENOMEM);
        e.apply_rc = e.pump_rc = 0;
        n_failed_tx += rc != 0;
        ienv_pump(&e);
        /* The next transaction, with memory. */
        ienv_tx(&e, "[{:order/id 4 :order/amount 40 :order/note \"b\"}]");
        for (int i = 0; i < 3; i++) {
            iview_drain(&v[i]);
            if (v[i].ended) {
                if (v[i].end_code != DL_ENOMEM)
                    fail_msg("n=%lld: %s ended with %s", (long long)n, v[i].query,
                             dl_err_name(v[i].end_code));
                n_ended++;
                injected = true;
            } else {
                iview_check(&e, &v[i], true);
                iview_check_current(&e, &v[i], false);
            }
            iview_free(&e, &v[i]);
        }
        /* A new subscription works. */
        iview_sub(&e, &v[0], q_sum, NULL, 0, NULL, NULL);
        iview_drain(&v[0]);
        iview_check_current(&e, &v[0], true);
        iview_free(&e, &v[0]);
        ienv_close(&e);
        if (!injected) {
            n_ok++;
            if (n_ok == 3) /* the path needs fewer than n allocations: done */
                break;
        } else {
            n_ok = 0;
        }
        assert_true(n < 100000);
    }
    print_message("nomem: failure injected at each of %lld allocations: %d transactions failed "
                  "whole, %d subscriptions ended with nomem\n",
                  (long long)n - 2, n_failed_tx, n_ended);
}

DL_TEST_GROUP(errors, cmocka_unit_test(test_errors_refused), cmocka_unit_test(test_errors_runtime),
              cmocka_unit_test(test_teardown_memory), cmocka_unit_test(test_nomem));
