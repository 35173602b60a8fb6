/*
 * test_text.c: EDN and JSON forms of values: exact round trips of every type (int64
 * extremes, NaN, -0.0, unicode, embedded quotes), the documented JSON encoding, and
 * rejection of bad text with a clear error.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <math.h>
#include <string.h>

static dl_value_t str(dl_type_t t, const char *s) {
    dl_value_t v;
    assert_int_equal(dl_value_text(t, s, strlen(s), &v, NULL), 0);
    return v;
}

static dl_value_t uuid(void) {
    uint8_t b[16];
    for (int i = 0; i < 16; i++)
        b[i] = (uint8_t)(i * 17 + 3);
    dl_value_t v;
    assert_int_equal(dl_value_uuid(b, &v, NULL), 0);
    return v;
}

static void roundtrip(dl_value_t v) {
    char *e = dl_value_to_edn(v), *j = dl_value_to_json(v);
    assert_non_null(e);
    assert_non_null(j);
    dl_value_t back;
    dl_error_t err = {0};
    if (dl_value_parse_edn(e, strlen(e), &back, &err) != 0)
        fail_msg("EDN %s does not parse: %s", e, err.message);
    if (!dl_value_eq(v, back))
        fail_msg("EDN round trip changed %s", e);
    if (dl_value_parse_json(j, strlen(j), &back, &err) != 0)
        fail_msg("JSON %s does not parse: %s", j, err.message);
    if (!dl_value_eq(v, back))
        fail_msg("JSON round trip changed %s", j);
    dl_free(e);
    dl_free(j);
}

static void test_text_roundtrip_every_type(void **state) {
    (void)state;
    dl_value_t vals[] = {dl_value_nil(),
                         dl_value_bool(true),
                         dl_value_bool(false),
                         dl_value_int(0),
                         dl_value_int(INT64_MAX),
                         dl_value_int(INT64_MIN),
                         dl_value_int((1ll << 53) + 1),
                         dl_value_double(0.1),
                         dl_value_double(-0.0),
                         dl_value_double(0.0),
                         dl_value_double(NAN),
                         dl_value_double(INFINITY),
                         dl_value_double(-INFINITY),
                         dl_value_double(1e300),
                         dl_value_double(5e-324),
                         dl_value_double(3.0),
                         dl_value_double(-123456.789e10),
                         dl_value_instant(0),
                         dl_value_instant(-1),
                         dl_value_instant(1700000000123),
                         dl_value_instant(-62135596800001),
                         dl_value_instant(253402300800000),
                         dl_value_ref(0),
                         dl_value_ref(INT64_MAX),
                         str(DL_T_STRING, ""),
                         str(DL_T_STRING, "plain"),
                         str(DL_T_STRING, "quote \" and \\ backslash"),
                         str(DL_T_STRING, "line\nbreak\ttab\x01"),
                         str(DL_T_STRING, "unicode: é 日本 😀"),
                         str(DL_T_KEYWORD, "db/ident"),
                         str(DL_T_KEYWORD, "simple"),
                         str(DL_T_KEYWORD, "time/shipped"),
                         uuid()};
    for (size_t i = 0; i < DL_ARRAY_LEN(vals); i++)
        roundtrip(vals[i]);
}

static void expect_json(dl_value_t v, const char *want) {
    char *j = dl_value_to_json(v);
    assert_non_null(j);
    assert_string_equal(j, want);
    dl_free(j);
}

static void expect_edn(dl_value_t v, const char *want) {
    char *e = dl_value_to_edn(v);
    assert_non_null(e);
    assert_string_equal(e, want);
    dl_free(e);
}

static void test_text_documented_forms(void **state) {
    (void)state;
    expect_json(dl_value_int(9007199254740993ll), "9007199254740993");
    expect_json(str(DL_T_STRING, "a\"b"), "\"a\\\"b\"");
    expect_json(str(DL_T_KEYWORD, "order/status"), "{\"kw\":\"order/status\"}");
    expect_json(dl_value_ref(42), "{\"ref\":42}");
    expect_json(dl_value_instant(86400000 + 1), "{\"inst\":\"1970-01-02T00:00:00.001Z\"}");
    expect_json(dl_value_double(NAN), "{\"double\":\"NaN\"}");
    expect_json(dl_value_double(2.0), "2.0");
    expect_json(dl_value_nil(), "null");
    expect_edn(dl_value_double(2.0), "2.0");
    expect_edn(dl_value_double(-0.0), "-0.0");
    expect_edn(dl_value_double(-INFINITY), "##-Inf");
    expect_edn(dl_value_ref(7), "#dl/ref 7");
    expect_edn(str(DL_T_KEYWORD, "a/b"), ":a/b");
    expect_edn(dl_value_instant(0), "#inst \"1970-01-01T00:00:00.000Z\"");
    expect_edn(uuid(), "#uuid \"03142536-4758-697a-8b9c-adbecfe0f102\"");
}

static void expect_bad_json(const char *text, int code) {
    dl_value_t v;
    dl_error_t err = {0};
    assert_int_equal(dl_value_parse_json(text, strlen(text), &v, &err), code);
    assert_int_equal(err.code, code);
    assert_true(strlen(err.message) > 0);
}

static void test_text_bad_json_rejected(void **state) {
    (void)state;
    expect_bad_json("{\"kw\":1}", DL_ETYPE);
    expect_bad_json("{\"ref\":\"x\"}", DL_ETYPE);
    expect_bad_json("{\"inst\":\"2020-13-01\"}", DL_EPARSE);
    expect_bad_json("{\"uuid\":\"nope\"}", DL_EPARSE);
    expect_bad_json("{\"what\":1}", DL_ETYPE);
    expect_bad_json("[1,2]", DL_ETYPE);
    expect_bad_json("{\"kw\":\"a\",\"ref\":1}", DL_ETYPE);
    expect_bad_json("\"unterminated", DL_EPARSE);
    expect_bad_json("", DL_EPARSE);
}

static void test_text_instant_parsing(void **state) {
    (void)state;
    int64_t ms;
    assert_int_equal(dl__instant_parse("2020-01-01T00:00:00Z", 20, &ms), 0);
    assert_int_equal(ms, 1577836800000ll);
    assert_int_equal(dl__instant_parse("2020-01-01T01:00:00+01:00", 25, &ms), 0);
    assert_int_equal(ms, 1577836800000ll);
    assert_int_equal(dl__instant_parse("2020", 4, &ms), 0);
    assert_int_equal(ms, 1577836800000ll);
    assert_int_equal(dl__instant_parse("2019-02-29", 10, &ms), DL_EPARSE);
    assert_int_equal(dl__instant_parse("2020-02-29T12:00:00.5Z", 22, &ms), 0);
    assert_int_equal(ms % 1000, 500);
}

DL_TEST_GROUP(text, cmocka_unit_test(test_text_roundtrip_every_type),
              cmocka_unit_test(test_text_documented_forms),
              cmocka_unit_test(test_text_bad_json_rejected),
              cmocka_unit_test(test_text_instant_parsing));
