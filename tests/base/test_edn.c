/*
 * test_edn.c: the EDN reader: every syntax element, positions and caret messages in
 * errors, nesting limits, and print/read round trips of whole forms.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <string.h>

static dl_edn_t *read1(dl_arena_t *a, const char *text) {
    dl_edn_t *f = NULL;
    dl_error_t err = {0};
    if (dl__edn_read_one(text, strlen(text), a, &f, &err) != 0)
        fail_msg("'%s' failed: %s", text, err.message);
    return f;
}

static char *print(const dl_edn_t *f) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl__edn_print(f, &b);
    return dl__buf_take(&b);
}

static void same_print(const char *in, const char *want) {
    dl_arena_t a;
    dl__arena_init(&a, 0);
    char *s = print(read1(&a, in));
    assert_string_equal(s, want);
    dl_free(s);
    dl__arena_fini(&a);
}

static void test_edn_syntax(void **state) {
    (void)state;
    same_print("nil", "nil");
    same_print("  [1 -2 +3 4N 1.5 2.5M 1e3 -0.0] ", "[1 -2 3 4 1.5 2.5 1000.0 -0.0]");
    same_print("(a ns/b :k :ns/k \"s\\t\\u00e9\")", "(a ns/b :k :ns/k \"s\\té\")");
    same_print("{:a 1, :b [2 3]}", "{:a 1 :b [2 3]}");
    same_print("#{1 2}", "#{1 2}");
    same_print("[\\a \\newline \\u0041 \\space]", "[\\a \\newline \\A \\space]");
    same_print("[1 #_ 2 3 #_(x y)]", "[1 3]");
    same_print("; comment\n[true false] ; more", "[true false]");
    same_print("#inst \"2020-01-01\"", "#inst \"2020-01-01T00:00:00.000Z\"");
    same_print("#uuid \"00000000-0000-0000-0000-000000000001\"",
               "#uuid \"00000000-0000-0000-0000-000000000001\"");
    same_print("#my/tag [1]", "#my/tag [1]");
    same_print("[##NaN ##Inf ##-Inf]", "[##NaN ##Inf ##-Inf]");
    same_print("[/ + - ... -a ?x _ $ %]", "[/ + - ... -a ?x _ $ %]");
    same_print("#dl/ref 12", "#dl/ref 12");
}

static void expect_error(const char *text, int code, int line, int column) {
    dl_arena_t a;
    dl__arena_init(&a, 0);
    dl_edn_t *f;
    dl_error_t err = {0};
    int rc = dl__edn_read_one(text, strlen(text), &a, &f, &err);
    if (rc != code)
        fail_msg("'%s': expected %s, got %s (%s)", text, dl_err_name(code), dl_err_name(rc),
                 err.message);
    assert_int_equal(err.line, line);
    assert_int_equal(err.column, column);
    assert_non_null(strchr(err.message, '^'));
    dl__arena_fini(&a);
}

static void test_edn_errors_with_position(void **state) {
    (void)state;
    expect_error("[1 2", DL_EPARSE, 1, 1);
    expect_error("[1\n 2)", DL_EPARSE, 2, 3);
    expect_error("\"abc", DL_EPARSE, 1, 5);
    expect_error("{:a}", DL_EPARSE, 1, 1);
    expect_error("99999999999999999999", DL_ERANGE, 1, 1);
    expect_error("[1 2] 3", DL_EPARSE, 1, 7);
    expect_error("", DL_EPARSE, 1, 1);
    expect_error("#inst \"nope\"", DL_EPARSE, 1, 7);
    expect_error("\"\\q\"", DL_EPARSE, 1, 3);
    expect_error("01", DL_EPARSE, 1, 1);
    expect_error("::a", DL_EPARSE, 1, 1);
    expect_error("#_", DL_EPARSE, 1, 1);
    expect_error("\"\xc3\x28\"", DL_EUTF8, 1, 1);
}

static void test_edn_depth_limit(void **state) {
    (void)state;
    size_t n = 100000;
    char *deep = dl_malloc(n + 1);
    memset(deep, '[', n);
    deep[n] = 0;
    dl_arena_t a;
    dl__arena_init(&a, 0);
    dl_edn_t *f;
    dl_error_t err = {0};
    assert_int_equal(dl__edn_read_one(deep, n, &a, &f, &err), DL_ELIMIT);
    dl__arena_fini(&a);
    dl_free(deep);
}

static void test_edn_reads_many_forms(void **state) {
    (void)state;
    const char *text = "1 :a [x] #_ignored \"s\"";
    dl_arena_t a;
    dl__arena_init(&a, 0);
    dl_edn_reader_t r;
    dl__edn_reader_init(&r, text, strlen(text), &a);
    int count = 0;
    dl_edn_t *f;
    while (dl__edn_read(&r, &f, NULL) == 0 && f)
        count++;
    assert_int_equal(count, 4);
    dl__arena_fini(&a);
}

DL_TEST_GROUP(edn, cmocka_unit_test(test_edn_syntax),
              cmocka_unit_test(test_edn_errors_with_position),
              cmocka_unit_test(test_edn_depth_limit), cmocka_unit_test(test_edn_reads_many_forms));
