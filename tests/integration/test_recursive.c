/*
 * test_recursive.c: issue 5's scenario 4: a recursive query (ancestors, through a rule
 * set bound to %) subscribed live. Parent edges are added and removed, including a removal
 * where another derivation of the same ancestor survives, a cycle being closed and opened
 * again, and a self-loop. Exact deltas are asserted, and after every transaction each
 * subscriber's accumulated result equals the one-shot result (compiled engine and
 * reference evaluator) at the time of its latest delta.
 *
 * Not here: the other scenarios (test_scenarios.c and neighbours). Follows
 * docs/subscribe-scenarios.md.
 */
#include "tests/integration/integ.h"

#include <string.h>

static const char *schema =
    "[{:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :person/parent :db/valueType :db.type/ref"
    "  :db/cardinality :db.cardinality/many}]";

static const char *rules = "[[(anc ?x ?a) [?x :person/parent ?a]]"
                           " [(anc ?x ?a) [?x :person/parent ?p] (anc ?p ?a)]]";

static const char *q_all = "[:find ?n ?an :in $ % :where (anc ?x ?a) [?x :person/name ?n]"
                           " [?a :person/name ?an]]";
static const char *q_of = "[:find ?an :in $ % ?name :where [?x :person/name ?name] (anc ?x ?a)"
                          " [?a :person/name ?an]]";

/* [:db/add [:person/name child] :person/parent [:person/name parent]] or its retraction. */
static void edge(ienv_t *e, const char *op, const char *child, const char *parent) {
    ienv_tx(e, "[[%s [:person/name \"%s\"] :person/parent [:person/name \"%s\"]]]", op, child,
            parent);
}

static void test_recursive_ancestors(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, rules, schema);
    ienv_tx(&e, "[{:person/name \"a\"} {:person/name \"b\"} {:person/name \"c\"}"
                " {:person/name \"d\"}]");
    static iview_t all, of_d, of_a;
    iview_sub(&e, &all, q_all, NULL, 0, NULL, NULL);
    dl_value_t d = istr("d"), a = istr("a");
    iview_sub(&e, &of_d, q_of, &d, 1, "[\"d\"]", NULL);
    iview_sub(&e, &of_a, q_of, &a, 1, "[\"a\"]", NULL);
    iview_expect(&all, ""); /* the empty snapshot */
    iview_expect(&of_d, "");
    iview_expect(&of_a, "");
    struct {
        const char *op, *child, *parent;
        const char *want_all, *want_d, *want_a; /* NULL: no delta */
    } steps[] = {
        {":db/add", "b", "a", "+[\"b\" \"a\"]", NULL, NULL},
        {":db/add", "c", "b", "+[\"c\" \"a\"] +[\"c\" \"b\"]", NULL, NULL},
        {":db/add", "d", "c", "+[\"d\" \"a\"] +[\"d\" \"b\"] +[\"d\" \"c\"]",
         "+[\"a\"] +[\"b\"] +[\"c\"]", NULL},
        /* a second derivation of d -> a: the result does not change */
        {":db/add", "d", "a", NULL, NULL, NULL},
        /* c loses b and a; d loses b but keeps a through its direct edge */
        {":db/retract", "c", "b", "-[\"c\" \"a\"] -[\"c\" \"b\"] -[\"d\" \"b\"]", "-[\"b\"]", NULL},
        /* closing a cycle a -> d -> a: everyone on it reaches itself */
        {":db/add", "a", "d",
         "+[\"a\" \"a\"] +[\"a\" \"c\"] +[\"a\" \"d\"] +[\"b\" \"c\"] +[\"b\" \"d\"]"
         " +[\"d\" \"d\"]",
         "+[\"d\"]", "+[\"a\"] +[\"c\"] +[\"d\"]"},
        /* opening it again removes exactly what only the cycle derived */
        {":db/retract", "a", "d",
         "-[\"a\" \"a\"] -[\"a\" \"c\"] -[\"a\" \"d\"] -[\"b\" \"c\"] -[\"b\" \"d\"]"
         " -[\"d\" \"d\"]",
         "-[\"d\"]", "-[\"a\"] -[\"c\"] -[\"d\"]"},
        /* the cycle back, and the edge that made d reach a removed in one step each */
        {":db/add", "a", "d",
         "+[\"a\" \"a\"] +[\"a\" \"c\"] +[\"a\" \"d\"] +[\"b\" \"c\"] +[\"b\" \"d\"]"
         " +[\"d\" \"d\"]",
         "+[\"d\"]", "+[\"a\"] +[\"c\"] +[\"d\"]"},
        /* b keeps a through its own edge; a and d lose what went through d -> a */
        {":db/retract", "d", "a", "-[\"a\" \"a\"] -[\"d\" \"a\"] -[\"d\" \"d\"]",
         "-[\"a\"] -[\"d\"]", "-[\"a\"]"},
        /* a self-loop: only c itself gains a row (a, b and d reach c already) */
        {":db/add", "c", "c", "+[\"c\" \"c\"]", NULL, NULL},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        edge(&e, steps[i].op, steps[i].child, steps[i].parent);
        iview_t *vs[] = {&all, &of_d, &of_a};
        const char *w[] = {steps[i].want_all, steps[i].want_d, steps[i].want_a};
        for (int k = 0; k < 3; k++) {
            if (w[k] && w[k][0])
                iview_expect(vs[k], w[k]);
            else
                iview_expect_none(vs[k]);
            iview_check(&e, vs[k], true);
        }
    }
    /* Removing a person removes the edges that point at it (retractEntity retracts the
     * references to the entity too) and every path through it. */
    ienv_tx(&e, "[[:db/retractEntity [:person/name \"c\"]]]");
    iview_drain(&all);
    iview_check(&e, &all, true);
    iview_check(&e, &of_d, true);
    iview_check(&e, &of_a, true);
    iview_free(&e, &all);
    iview_free(&e, &of_d);
    iview_free(&e, &of_a);
    ienv_close(&e);
}

/* A longer chain and a ring: n people in a ring; cutting one edge turns the full closure
 * (n * n rows) into the chain's (n * (n-1) / 2); every step checked against both engines. */
static void test_recursive_ring(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, rules, schema);
    enum { N = 8 };
    for (int i = 0; i < N; i++)
        ienv_tx(&e, "[{:person/name \"p%d\"}]", i);
    static iview_t all;
    iview_sub(&e, &all, q_all, NULL, 0, NULL, NULL);
    iview_expect(&all, ""); /* the empty snapshot */
    for (int i = 0; i < N; i++) {
        ienv_tx(&e, "[[:db/add [:person/name \"p%d\"] :person/parent [:person/name \"p%d\"]]]", i,
                (i + 1) % N);
        iview_drain(&all);
        iview_check(&e, &all, i % 3 == 0);
    }
    assert_int_equal(dl_delta_len(all.acc), N * N);
    assert_int_equal(all.n_log, N + 1); /* the snapshot and one delta per edge */
    ienv_tx(&e, "[[:db/retract [:person/name \"p%d\"] :person/parent [:person/name \"p0\"]]]",
            N - 1);
    iview_drain(&all);
    iview_check(&e, &all, true);
    assert_int_equal(dl_delta_len(all.acc), N * (N - 1) / 2);
    iview_free(&e, &all);
    ienv_close(&e);
}

DL_TEST_GROUP(recursive, cmocka_unit_test(test_recursive_ancestors),
              cmocka_unit_test(test_recursive_ring));
