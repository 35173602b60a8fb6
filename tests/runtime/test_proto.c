/*
 * test_proto.c: the protocol v1 decoder and reply encoder (runtime/proto.c), without
 * sockets: every decode error code, the exact reply bytes, and a seeded mutation property
 * (any byte string decodes to success or a documented code, and the error reply is valid
 * JSON echoing the id).
 */
#include "tests/harness/dl_test.h"

#include "runtime/runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const dl_proto_limits_t lim = {1024, 16};

/* Decodes text and returns the wire code ("ok" on success). */
static const char *decode_code(const char *text, size_t len, dl_req_op_t *out_op) {
    dl_request_t req;
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl__proto_decode(text, len, &lim, &req, &err);
    if (out_op)
        *out_op = req.op;
    if (rc != DL_OK) {
        assert_int_equal(err.code, rc);
        assert_true(strlen(err.message) > 0);
    }
    dl__proto_request_fini(&req);
    return rc == DL_OK ? "ok" : dl__proto_code_name(rc);
}

static void test_proto_decodes_every_op(void **state) {
    (void)state;
    static const struct {
        const char *line;
        dl_req_op_t op;
    } cases[] = {
        {"{\"op\":\"hello\",\"token\":\"t\",\"client\":\"c\",\"protocol\":1}", DL_REQ_HELLO},
        {"{\"op\":\"ping\",\"id\":1}", DL_REQ_PING},
        {"{\"op\":\"stats\"}", DL_REQ_STATS},
        {"{\"op\":\"transact\",\"tx\":\"[]\"}", DL_REQ_TRANSACT},
        {"{\"op\":\"transact\",\"tx\":[[\"add\",-1,\"a/b\",1]],\"time\":{\"t/x\":3}}",
         DL_REQ_TRANSACT},
        {"{\"op\":\"entity\",\"e\":42,\"as_of\":3}", DL_REQ_ENTITY},
        {"{\"op\":\"entity\",\"e\":[\"user/email\",\"a@b\"]}", DL_REQ_ENTITY},
        {"{\"op\":\"history\",\"e\":{\"ref\":5},\"a\":\"user/name\"}", DL_REQ_HISTORY},
        {"{\"op\":\"schema\"}", DL_REQ_SCHEMA},
        {"{\"op\":\"advance\",\"dim\":\"time/shipped\",\"to\":9}", DL_REQ_ADVANCE},
        {"{\"op\":\"query\",\"q\":\"[:find ?e :where [?e :a]]\",\"args\":[],\"as_of\":2}",
         DL_REQ_QUERY},
        {"{\"op\":\"explain\",\"q\":\"[:find ?e]\"}", DL_REQ_EXPLAIN},
        {"{\"op\":\"subscribe\",\"q\":\"[]\",\"policy\":\"block\",\"dims\":[]}", DL_REQ_SUBSCRIBE},
        {"{\"op\":\"unsubscribe\",\"sub\":3}\r", DL_REQ_UNSUBSCRIBE},
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(cases); i++) {
        dl_req_op_t op = DL_REQ__COUNT;
        const char *code = decode_code(cases[i].line, strlen(cases[i].line), &op);
        if (strcmp(code, "ok") != 0)
            fail_msg("case %zu (%s): %s", i, cases[i].line, code);
        assert_int_equal(op, cases[i].op);
    }
}

static void test_proto_error_codes(void **state) {
    (void)state;
    char deep[64];
    memset(deep, '[', 17);
    memset(deep + 17, ']', 17);
    deep[34] = 0;
    char deep_obj[200];
    snprintf(deep_obj, sizeof deep_obj, "{\"op\":\"query\",\"q\":\"x\",\"args\":%s}", deep);
    char longline[1100];
    memset(longline, ' ', sizeof longline - 1);
    longline[sizeof longline - 1] = 0;
    static const char *const nonstatic_placeholder = "";
    (void)nonstatic_placeholder;
    const struct {
        const char *line;
        size_t len; /* 0: strlen */
        const char *code;
    } cases[] = {
        {"{", 0, "parse"},
        {"{\"op\":\"ping\"", 0, "parse"},
        {"{\"op\":\"ping\"}}", 0, "parse"},
        {"{\"op\":\"ping\",}", 0, "parse"},
        {"{'op':'ping'}", 0, "parse"},
        {"{\"op\":\"ping\",\"op\":\"stats\"}", 0, "parse"}, /* duplicate key */
        {"{\"op\":\"p\\u0000ing\"}", 0, "parse"},           /* NUL inside a string */
        {"{\"op\":\"ping\"}\0x", 15, "parse"},              /* raw NUL byte */
        {"{\"op\":\"\xff\"}", 0, "utf8"},
        {"{\"op\":\"\xc0\xaf\"}", 0, "utf8"},     /* overlong */
        {"{\"op\":\"\xed\xa0\x80\"}", 0, "utf8"}, /* surrogate */
        {"{\"op\":\"\xe2\x82\"}", 0, "utf8"},     /* truncated sequence */
        {deep, 0, "limit"},
        {deep_obj, 0, "limit"},
        {longline, 0, "limit"},
        {"[1,2]", 0, "inval"},
        {"\"ping\"", 0, "inval"},
        {"42", 0, "inval"},
        {"{}", 0, "inval"},
        {"{\"id\":1}", 0, "inval"},
        {"{\"op\":7}", 0, "type"},
        {"{\"op\":null}", 0, "type"},
        {"{\"op\":\"ping\",\"id\":[1]}", 0, "type"},
        {"{\"op\":\"ping\",\"id\":{}}", 0, "type"},
        {"{\"op\":\"PING\"}", 0, "unknown_op"},
        {"{\"op\":\"\"}", 0, "unknown_op"},
        {"{\"op\":\"drop_database\"}", 0, "unknown_op"},
        {"{\"op\":\"ping\",\"extra\":1}", 0, "inval"},
        {"{\"op\":\"transact\"}", 0, "inval"},
        {"{\"op\":\"transact\",\"tx\":5}", 0, "type"},
        {"{\"op\":\"transact\",\"tx\":{}}", 0, "type"},
        {"{\"op\":\"transact\",\"tx\":\"[]\",\"time\":[1]}", 0, "type"},
        {"{\"op\":\"query\"}", 0, "inval"},
        {"{\"op\":\"query\",\"q\":[1]}", 0, "type"},
        {"{\"op\":\"query\",\"q\":\"x\",\"args\":\"y\"}", 0, "type"},
        {"{\"op\":\"query\",\"q\":\"x\",\"as_of\":1.5}", 0, "type"},
        {"{\"op\":\"entity\"}", 0, "inval"},
        {"{\"op\":\"entity\",\"e\":true}", 0, "type"},
        {"{\"op\":\"advance\",\"dim\":\"t/x\"}", 0, "inval"},
        {"{\"op\":\"advance\",\"dim\":\"t/x\",\"to\":\"9\"}", 0, "type"},
        {"{\"op\":\"unsubscribe\",\"sub\":\"1\"}", 0, "type"},
        {"{\"op\":\"hello\",\"token\":1}", 0, "type"},
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(cases); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].line);
        const char *code = decode_code(cases[i].line, len, NULL);
        if (strcmp(code, cases[i].code) != 0)
            fail_msg("case %zu (%.60s): got %s, want %s", i, cases[i].line, code, cases[i].code);
    }
}

static void test_proto_reply_bytes(void **state) {
    (void)state;
    json_t *id = json_integer(5);
    size_t len = 0;
    char *line = dl__proto_reply_ok(id, json_pack("{s:i}", "t", 3), &len);
    assert_string_equal(line, "{\"id\":5,\"ok\":true,\"t\":3}\n");
    assert_int_equal(len, strlen(line));
    dl_free(line);
    line = dl__proto_reply_ok(NULL, json_object(), &len);
    assert_string_equal(line, "{\"ok\":true}\n");
    dl_free(line);
    line = dl__proto_reply_error(id, DL_EPARSE, "bad \"x\"\nline 2", &len);
    assert_string_equal(line, "{\"id\":5,\"ok\":false,\"error\":{\"code\":\"parse\","
                              "\"message\":\"bad \\\"x\\\"\\nline 2\"}}\n");
    dl_free(line);
    line = dl__proto_reply_error(NULL, DL_PROTO_EUNKNOWN_OP, "no", &len);
    assert_string_equal(line, "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"unknown_op\","
                              "\"message\":\"no\"}}\n");
    dl_free(line);
    /* A body cannot override "id" or "ok". */
    line = dl__proto_reply_ok(id, json_pack("{s:b,s:i}", "ok", 0, "id", 9), &len);
    assert_string_equal(line, "{\"id\":5,\"ok\":true}\n");
    dl_free(line);
    json_decref(id);
}

static void test_proto_blank_lines(void **state) {
    (void)state;
    assert_true(dl__proto_line_blank("", 0));
    assert_true(dl__proto_line_blank(" \t\r", 3));
    assert_false(dl__proto_line_blank(" x", 2));
}

static bool known_code(const char *c) {
    static const char *const codes[] = {"parse", "utf8",       "limit", "inval",
                                        "type",  "unknown_op", "nomem"};
    for (size_t i = 0; i < DL_ARRAY_LEN(codes); i++)
        if (strcmp(c, codes[i]) == 0)
            return true;
    return false;
}

/* Property: mutated requests (byte flips, truncations, splices) always decode to success
 * or one of the decoder's documented codes; the error reply is one line of valid JSON that
 * echoes the id exactly when the line was an object with a scalar id. */
static void test_proto_mutation_property(void **state) {
    (void)state;
    static const char *const seeds[] = {
        "{\"op\":\"ping\",\"id\":1}",
        "{\"op\":\"transact\",\"id\":\"a\",\"tx\":\"[[:db/add -1 :a/b \\\"\\u00e9\\\"]]\"}",
        "{\"op\":\"query\",\"q\":\"[:find ?e :where [?e :a/b 1]]\",\"args\":[{\"kw\":\"x\"}]}",
        "{\"op\":\"entity\",\"e\":[\"a/b\",{\"inst\":\"2020-01-01T00:00:00Z\"}],\"id\":null}",
    };
    dl_rng_t rng = {dl_prop_seed("proto_mutation")};
    long iters = dl_prop_iters(20000);
    char buf[512];
    for (long it = 0; it < iters; it++) {
        const char *s = seeds[dl_rng_below(&rng, DL_ARRAY_LEN(seeds))];
        size_t n = strlen(s);
        memcpy(buf, s, n);
        int muts = 1 + (int)dl_rng_below(&rng, 4);
        for (int m = 0; m < muts; m++) {
            switch (dl_rng_below(&rng, 4)) {
                case 0: /* flip a byte */
                    buf[dl_rng_below(&rng, n)] = (char)dl_rng_next(&rng);
                    break;
                case 1: /* truncate */
                    n = dl_rng_below(&rng, n) + 1;
                    break;
                case 2: /* insert a structural character */
                    if (n + 1 < sizeof buf) {
                        size_t at = dl_rng_below(&rng, n + 1);
                        memmove(buf + at + 1, buf + at, n - at);
                        buf[at] = "{}[]\",:\\"[dl_rng_below(&rng, 8)];
                        n++;
                    }
                    break;
                default: /* duplicate a chunk */
                    if (n * 2 < sizeof buf) {
                        size_t a = dl_rng_below(&rng, n);
                        size_t k = dl_rng_below(&rng, n - a) + 1;
                        memcpy(buf + n, buf + a, k);
                        n += k;
                    }
                    break;
            }
        }
        dl_request_t req;
        dl_error_t err;
        dl_error_clear(&err);
        int rc = dl__proto_decode(buf, n, &lim, &req, &err);
        if (rc == DL_OK) {
            if (!json_is_object(req.msg) || req.op >= DL_REQ__COUNT)
                dl_prop_fail("decoded without a valid op: %.*s", (int)n, buf);
        } else {
            if (!known_code(dl__proto_code_name(rc)))
                dl_prop_fail("code %s for %.*s", dl__proto_code_name(rc), (int)n, buf);
            size_t len = 0;
            char *line = dl__proto_reply_error(req.id, rc, err.message, &len);
            assert_non_null(line);
            assert_int_equal(line[len - 1], '\n');
            assert_null(memchr(line, '\n', len - 1));
            json_t *j = json_loadb(line, len - 1, 0, NULL);
            if (!j)
                dl_prop_fail("error reply is not JSON: %s", line);
            json_t *id = json_object_get(j, "id");
            if (req.id ? !json_equal(id, req.id) : !json_is_null(id))
                dl_prop_fail("id not echoed: %s", line);
            json_decref(j);
            dl_free(line);
        }
        dl__proto_request_fini(&req);
    }
}

/* Allocation failure anywhere in decoding or encoding is an error, never a crash: fail the
 * Nth allocation for every N until a run needs no failing allocation at all. */
static void test_proto_allocation_failures(void **state) {
    (void)state;
    static const char *const lines[] = {
        "{\"op\":\"transact\",\"id\":\"abc\",\"tx\":\"[[:db/add -1 :a/b 1]]\"}",
        "{\"op\":\"nope\",\"id\":3}",
        "{\"op\":\"ping\",\"id\":[1]}",
        "{\"op\":\"query\",\"q\":\"[:find ?e]\",\"args\":[1,{\"kw\":\"a/b\"}],\"junk\":1}",
    };
    for (size_t k = 0; k < DL_ARRAY_LEN(lines); k++) {
        bool completed = false;
        for (int64_t n = 0; n < 200 && !completed; n++) {
            dl_alloc_fail_after(n);
            dl_request_t req;
            dl_error_t err;
            dl_error_clear(&err);
            int rc = dl__proto_decode(lines[k], strlen(lines[k]), &lim, &req, &err);
            size_t len = 0;
            char *line = rc == DL_OK ? dl__proto_reply_ok(req.id, json_object(), &len)
                                     : dl__proto_reply_error(req.id, rc, err.message, &len);
            dl_alloc_fail_after(-1);
            if (line) {
                assert_int_equal(line[len - 1], '\n');
                completed = true; /* this n allowed every allocation the run needed */
                dl_free(line);
            }
            dl__proto_request_fini(&req);
        }
        assert_true(completed);
    }
}

DL_TEST_GROUP(proto, cmocka_unit_test(test_proto_decodes_every_op),
              cmocka_unit_test(test_proto_error_codes), cmocka_unit_test(test_proto_reply_bytes),
              cmocka_unit_test(test_proto_blank_lines),
              cmocka_unit_test(test_proto_mutation_property),
              cmocka_unit_test(test_proto_allocation_failures));
