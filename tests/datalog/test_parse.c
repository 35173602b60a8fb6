/*
 * test_parse.c: the query parser and the analysis without a database: accepted forms
 * (vector and map form, every find spec, every :in binding), errors with their codes,
 * positions and carets, range restriction, rule arity and stratification, and the
 * builtins applied directly to values.
 */
#include "tests/harness/dl_test.h"

#include "datalog/datalog.h"

#include <stdio.h>
#include <string.h>

static dl_query_t *parse_ok(const char *text, const char *rules) {
    dl_query_t *q = NULL;
    dl_error_t err = {0};
    int rc = dl_query_parse(text, strlen(text), rules, rules ? strlen(rules) : 0, NULL, &q, &err);
    if (rc)
        fail_msg("'%s' failed: %s: %s", text, dl_err_name(rc), err.message);
    return q;
}

/* Expects code; line/column 0 means "do not check". Returns nothing; checks the message
 * contains `needle` when given. */
static void parse_err(const char *text, const char *rules, int code, int line, int column,
                      const char *needle) {
    dl_query_t *q = NULL;
    dl_error_t err = {0};
    int rc = dl_query_parse(text, strlen(text), rules, rules ? strlen(rules) : 0, NULL, &q, &err);
    if (rc != code)
        fail_msg("'%s': expected %s, got %s (%s)", text, dl_err_name(code), dl_err_name(rc),
                 err.message);
    assert_null(q);
    if (line) {
        if (err.line != line || err.column != column)
            fail_msg("'%s': expected position %d:%d, got %d:%d (%s)", text, line, column, err.line,
                     err.column, err.message);
        assert_non_null(strchr(err.message, '^'));
    }
    if (needle && !strstr(err.message, needle))
        fail_msg("'%s': message lacks '%s': %s", text, needle, err.message);
}

static void test_parse_forms(void **state) {
    (void)state;
    const char *ok[] = {
        "[:find ?e :where [?e :a/b 1]]",
        "[:find ?e ?v :in $ :where [?e :a/b ?v]]",
        "{:find [?e] :in [$ ?x] :where [[?e :a/b ?x]]}",
        "[:find [?v ...] :where [_ :a/b ?v]]",
        "[:find [?e ?v] :where [?e :a/b ?v]]",
        "[:find ?v . :where [_ :a/b ?v]]",
        "[:find ?e ?v :keys e v :where [?e :a/b ?v]]",
        "[:find ?e ?v :strs e v :where [?e :a/b ?v]]",
        "[:find (count ?e) (max 3 ?v) (distinct ?v) :with ?x :where [?e :a/b ?v] [?x :a/c ?e]]",
        "[:find ?e :in $ [?x ...] [?a ?b] [[?c ?d]] ?s :where [?e :a/b ?x] [?e :a/c ?a] "
        "[(+ ?b ?c ?d) ?s]]",
        "[:find ?e :in $db :where [$db ?e :a/b]]",
        "[:find ?e :where [?e :a/b ?v] (not [?e :a/c 1]) (not-join [?e] [?e :a/d ?z])]",
        "[:find ?e :where [?e :a/b ?v] (or [?e :a/c 1] [?e :a/d 2])]",
        "[:find ?e :where [?e :a/b ?v] (or-join [?e] [?e :a/c 1] (and [?e :a/d ?z] [(> ?z 1)]))]",
        "[:find ?e ?tx ?op :in $ :where [?e :a/b _ ?tx ?op]]",
        "[:find ?x :where [(ground [1 2 3]) [?x ...]]]",
        "[:find ?a ?b :where [(ground [[1 2] [3 4]]) [[?a ?b]]]]",
        "[:find ?v :where [?e :a/b ?s] [(str/starts-with? ?s \"x\")] [(clojure.string/lower-case "
        "?s) ?v]]",
        "[:find ?v :where [?e :a/b] [(get-else $ ?e :a/c 0) ?v]]",
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(ok); i++)
        dl_query_free(parse_ok(ok[i], NULL));
    dl_query_t *q = parse_ok("[:find ?v . :where [_ :a/b ?v]]", NULL);
    assert_int_equal(dl_query_find_kind(q), DL_FIND_SCALAR);
    dl_query_free(q);
    q = parse_ok("[:find ?e :in $ ?x [?y ...] % :where (r ?e ?x) [(= ?x ?y)]]",
                 "[[(r ?a ?b) [?a :a/b ?b]]]");
    assert_int_equal(dl_query_n_args(q), 2);
    dl_query_free(q);
}

static void test_parse_errors(void **state) {
    (void)state;
    parse_err("[:find ?e :where [?e :a/b 1]", NULL, DL_EPARSE, 1, 1, NULL);
    parse_err("[:find ?e\n :where\n [?e :a/b 1 2 3 4]]", NULL, DL_EPARSE, 3, 17, "at most 5");
    parse_err("[:find ?e :where [?e foo 1]]", NULL, DL_EPARSE, 1, 22, "unexpected symbol");
    parse_err("[:where [?e :a/b 1]]", NULL, DL_EPARSE, 1, 2, "starts with :find");
    parse_err("[:find ?e]", NULL, DL_EPARSE, 0, 0, ":where");
    parse_err("[:find ?e :where [(frob ?e)] [?e :a/b]]", NULL, DL_ENOTFOUND, 1, 20, "frob");
    parse_err("[:find ?e :where [?e :a/b] [(subs ?e)]]", NULL, DL_EARITY, 1, 29, "subs");
    parse_err("[:find ?e :where [?e :a/b] (frob ?e)]", NULL, DL_ENOTFOUND, 1, 29, "unknown rule");
    parse_err("[:find (pull ?e [*]) :where [?e :a/b]]", NULL, DL_EUNSUPPORTED, 1, 8, "pull");
    parse_err("[:find (frob ?e) :where [?e :a/b]]", NULL, DL_ENOTFOUND, 1, 9, "aggregate");
    parse_err("[:find ?e ?v :keys e :where [?e :a/b ?v]]", NULL, DL_EARITY, 0, 0, "key");
    parse_err("[:find ?e :where [?e :a/b ?v] (and [?e :a/c 1])]", NULL, DL_EPARSE, 1, 31,
              "only allowed");
    parse_err("[:find ?e :where [$x ?e :a/b]]", NULL, DL_EPARSE, 0, 0, "not declared");
    parse_err("[:find ?e :in $ % :where (r ?e)]", "[[(r ?a ?b) [?a :a/b ?b]]]", DL_EARITY, 1, 26,
              "takes 2");
    parse_err("[:find ?e :in $ % :where (r ?e)]", "[[(r ?a) [?a :a/b]] [(r ?a ?b) [?a :a/b ?b]]]",
              DL_EARITY, 1, 22, "defined with");
    parse_err("[:find ?e :where [?e :a/b] [(tuple ?e 1) ?t]]", NULL, DL_EUNSUPPORTED, 0, 0,
              "tuple");
    /* Widths beyond the evaluators' bounds are DL_ELIMIT, not overflows. */
    {
        char rule[2048], query[2048];
        size_t k = (size_t)snprintf(rule, sizeof rule, "[[(wide");
        for (int i = 0; i < 70; i++)
            k += (size_t)snprintf(rule + k, sizeof rule - k, " ?v%d", i);
        snprintf(rule + k, sizeof rule - k, ") [?v0 :a/b]]]");
        parse_err("[:find ?e :in $ % :where [?e :a/b]]", rule, DL_ELIMIT, 0, 0, "at most");
        k = (size_t)snprintf(query, sizeof query, "[:find ?e :where [?e :a/b] [(+");
        for (int i = 0; i < 70; i++)
            k += (size_t)snprintf(query + k, sizeof query - k, " 1");
        snprintf(query + k, sizeof query - k, ") ?x]]");
        parse_err(query, NULL, DL_ELIMIT, 0, 0, "at most");
    }
}

static void test_analysis_unbound(void **state) {
    (void)state;
    parse_err("[:find ?x :where [?e :a/b ?v]]", NULL, DL_EUNBOUND, 1, 8, "?x in :find");
    parse_err("[:find ?e :where [?e :a/b ?v] [(< ?w 3)]]", NULL, DL_EUNBOUND, 1, 35, "?w");
    parse_err("[:find ?e :where [?e :a/b ?v] [(+ ?w 1) ?z]]", NULL, DL_EUNBOUND, 1, 35, "?w");
    parse_err("[:find ?e :where (not [?x :a/b 1])]", NULL, DL_EUNBOUND, 0, 0, NULL);
    parse_err("[:find ?e :where [?e :a/b ?v] (not-join [?e ?q] [?e :a/c ?q])]", NULL, DL_EUNBOUND,
              0, 0, "?q");
    parse_err("[:find ?e :where [?e :a/b ?v] (or [?e :a/c 1] [?x :a/d 2])]", NULL, DL_EUNBOUND, 0,
              0, "same variables");
    parse_err("[:find ?e :where (or-join [[?e]] [?e :a/c 1])]", NULL, DL_EUNBOUND, 0, 0,
              "required");
    parse_err("[:find ?e :with ?q :where [?e :a/b ?v]]", NULL, DL_EUNBOUND, 0, 0, ":with");
    /* Clause order does not matter: a predicate before the pattern that binds it is fine. */
    dl_query_free(parse_ok("[:find ?e :where [(< ?v 3)] [?e :a/b ?v]]", NULL));
    /* A not whose variables are all local shares nothing: an error, not a cross product. */
    parse_err("[:find ?e :where [?e :a/b] (not [?x :a/c 1])]", NULL, DL_EUNBOUND, 0, 0,
              "shares no variable");
    /* A rule whose body cannot bind a required-free argument. */
    parse_err("[:find ?e :in $ % :where [?e :a/b] (big ?e ?n)]", "[[(big ?x ?n) [(> ?n 3)]]]",
              DL_EUNBOUND, 0, 0, "?n");
    /* ...but with the argument bound at the call site it is fine. */
    dl_query_free(parse_ok("[:find ?e :in $ % :where [?e :a/b ?n] (big ?e ?n)]",
                           "[[(big ?x ?n) [(> ?n 3)]]]"));
}

static void test_analysis_stratify(void **state) {
    (void)state;
    const char *rules = "[[(p ?x) [?x :a/b 1] (not (q ?x))]"
                        " [(q ?x) [?x :a/c 1] (p ?x)]]";
    parse_err("[:find ?x :in $ % :where (p ?x)]", rules, DL_ESTRATIFY, 0, 0, "p -> q -> p");
    /* Negation of a lower stratum is fine, recursion without negation too. */
    dl_query_free(parse_ok("[:find ?x :in $ % :where (p ?x)]",
                           "[[(p ?x) [?x :a/b 1] (not (q ?x))] [(q ?x) [?x :a/c 1]]"
                           " [(q ?x) [?x :a/d ?y] (q ?y)]]"));
    parse_err("[:find ?x :in $ % :where (p ?x)]", "[[(p ?x) [?x :a/b 1] (not (p ?x))]]",
              DL_ESTRATIFY, 0, 0, "p -> p");
}

static bool pred(int id, dl_value_t a, dl_value_t b) {
    dl_value_t args[2] = {a, b};
    bool ok = false;
    dl_error_t err = {0};
    int rc = dl__builtin_call(id, args, 2, &ok, NULL, &err);
    if (rc)
        fail_msg("builtin failed: %s", err.message);
    return ok;
}

static void test_builtins(void **state) {
    (void)state;
    int lt = dl__builtin_find("<", 1), eq = dl__builtin_find("=", 1);
    int starts = dl__builtin_find("str/starts-with?", 16);
    assert_true(lt >= 0 && eq >= 0 && starts >= 0);
    assert_int_equal(starts, dl__builtin_find("clojure.string/starts-with?", 27));
    assert_true(pred(lt, dl_value_int(1), dl_value_double(1.5)));
    assert_false(pred(lt, dl_value_double(2.0), dl_value_int(1)));
    assert_false(pred(eq, dl_value_int(1), dl_value_double(1.0)));
    dl_value_t a, b;
    assert_int_equal(dl_value_text(DL_T_STRING, "abc", 3, &a, NULL), 0);
    assert_int_equal(dl_value_text(DL_T_STRING, "ab", 2, &b, NULL), 0);
    assert_true(pred(starts, a, b));
    assert_false(pred(starts, b, a));
    /* Wrong types fail the query (DL_ETYPE); overflow and division by zero DL_ERANGE. */
    dl_value_t args[2] = {a, dl_value_int(1)};
    dl__fnval_t out;
    dl_error_t err = {0};
    assert_int_equal(dl__builtin_call(dl__builtin_find("+", 1), args, 2, NULL, &out, &err),
                     DL_ETYPE);
    dl_value_t big[2] = {dl_value_int(INT64_MAX), dl_value_int(1)};
    dl_error_clear(&err);
    assert_int_equal(dl__builtin_call(dl__builtin_find("+", 1), big, 2, NULL, &out, &err),
                     DL_ERANGE);
    dl_value_t z[2] = {dl_value_int(1), dl_value_int(0)};
    dl_error_clear(&err);
    assert_int_equal(dl__builtin_call(dl__builtin_find("quot", 4), z, 2, NULL, &out, &err),
                     DL_ERANGE);
    dl_value_t d[2] = {dl_value_int(7), dl_value_int(2)};
    assert_int_equal(dl__builtin_call(dl__builtin_find("/", 1), d, 2, NULL, &out, &err), 0);
    assert_int_equal(out.v.type, DL_T_DOUBLE);
    dl_value_t m[2] = {dl_value_int(-7), dl_value_int(2)};
    assert_int_equal(dl__builtin_call(dl__builtin_find("mod", 3), m, 2, NULL, &out, &err), 0);
    assert_int_equal(out.v.as.i, 1);
    assert_int_equal(dl__builtin_call(dl__builtin_find("rem", 3), m, 2, NULL, &out, &err), 0);
    assert_int_equal(out.v.as.i, -1);
}

/* Every prefix of a valid query, and every single-byte corruption of it, parses or fails
 * cleanly (no crash, no leak: ASan). */
static void test_parse_garbage(void **state) {
    (void)state;
    const char *base = "[:find ?e (count ?v) :in $ % [?x ...] :where [?e :a/b ?v] "
                       "(not [?e :a/c 1]) (or-join [?e] [?e :a/d 2] (and [?e :a/e ?z] "
                       "[(> ?z 1)])) (r ?e ?x) [(str ?v \"x\") ?s]]";
    const char *rules = "[[(r ?a ?b) [?a :a/f ?b]] [(r ?a ?b) [?a :a/g ?c] (r ?c ?b)]]";
    size_t n = strlen(base);
    char *buf = dl_malloc(n + 1);
    const char junk[] = "[](){}?_ $%:.\"#";
    dl_rng_t rng = {dl_prop_seed("parse_garbage")};
    for (size_t cut = 0; cut <= n; cut++) {
        dl_query_t *q = NULL;
        int rc = dl_query_parse(base, cut, rules, strlen(rules), NULL, &q, NULL);
        assert_true(rc <= 0);
        dl_query_free(q);
    }
    for (long it = 0; it < dl_prop_iters(3000); it++) {
        memcpy(buf, base, n + 1);
        int k = 1 + (int)dl_rng_below(&rng, 3);
        for (int j = 0; j < k; j++)
            buf[dl_rng_below(&rng, n)] = junk[dl_rng_below(&rng, sizeof junk - 1)];
        dl_query_t *q = NULL;
        dl_error_t err = {0};
        int rc = dl_query_parse(buf, n, rules, strlen(rules), NULL, &q, &err);
        if (rc == 0 && q == NULL)
            dl_prop_fail("success without a query for '%s'", buf);
        dl_query_free(q);
    }
    dl_free(buf);
}

/* Allocation failure anywhere in parse + analysis is DL_ENOMEM, never a crash or leak. */
static void test_parse_nomem(void **state) {
    (void)state;
    const char *text = "[:find ?e (count ?v) :in $ % :where [?e :a/b ?v] (not [?e :a/c 1]) "
                       "(or [?e :a/d 2] [?e :a/e 3]) (r ?e ?v)]";
    const char *rules = "[[(r ?a ?b) [?a :a/f ?b]] [(r ?a ?b) [?a :a/g ?c] (r ?c ?b)]]";
    for (int64_t n = 0; n < 2000; n++) {
        dl_alloc_fail_after(n);
        dl_query_t *q = NULL;
        int rc = dl_query_parse(text, strlen(text), rules, strlen(rules), NULL, &q, NULL);
        dl_alloc_fail_after(-1);
        if (rc == 0) {
            dl_query_free(q);
            return;
        }
        assert_int_equal(rc, DL_ENOMEM);
    }
    fail_msg("parse never succeeded");
}

static char *norm(const char *text) {
    char *out = NULL;
    dl_error_t err = {0};
    if (dl_query_normalize(text, strlen(text), &out, &err))
        fail_msg("normalize '%s': %s", text, err.message);
    return out;
}

static void test_normalize(void **state) {
    (void)state;
    char *a = norm("[:find ?name :in $ ?min :where [?e :p/age ?a] [(>= ?a ?min)] "
                   "[?e :p/name ?name]]");
    char *b = norm("{:where [[?x :p/age ?y] [(>= ?y ?lim)]\n [?x :p/name ?n]], :find [?n], "
                   ":in [$ ?lim]} ; comment");
    char *c = norm("[:find ?n :in $ ?lim :where [?x :p/age ?y] [(> ?y ?lim)] [?x :p/name ?n]]");
    assert_string_equal(a, "[:find ?v0 :in $ ?v1 :where [?v2 :p/age ?v3] [(>= ?v3 ?v1)] "
                           "[?v2 :p/name ?v0]]");
    assert_string_equal(a, b);      /* renamed variables, map form, comments: equal */
    assert_true(strcmp(a, c) != 0); /* a different predicate: different */
    dl_free(a);
    dl_free(b);
    dl_free(c);
    char *out = NULL;
    assert_int_equal(dl_query_normalize("[:find", 6, &out, NULL), DL_EPARSE);
    assert_null(out);
}

DL_TEST_GROUP(parse, cmocka_unit_test(test_parse_forms), cmocka_unit_test(test_parse_errors),
              cmocka_unit_test(test_analysis_unbound), cmocka_unit_test(test_analysis_stratify),
              cmocka_unit_test(test_builtins), cmocka_unit_test(test_parse_garbage),
              cmocka_unit_test(test_parse_nomem), cmocka_unit_test(test_normalize));
