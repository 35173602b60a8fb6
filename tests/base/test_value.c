/*
 * test_value.c: the value type's order, equality and hash (property tests over random
 * values of every type), rows, and concurrent interning.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* A random value of any type, drawn from small domains so that ties are common. */
static dl_value_t random_value(dl_rng_t *r) {
    static const double doubles[] = {0.0,      -0.0,      1.5, -1.5, 1e300,  -1e300,
                                     INFINITY, -INFINITY, NAN, 3.0,  1e-300, 2.5};
    static const char *const strs[] = {"", "a", "ab", "b", "é", "日本", "a\"b", "zz", "A"};
    dl_value_t v;
    switch (dl_rng_below(r, DL_T__COUNT)) {
        case DL_T_NIL:
            return dl_value_nil();
        case DL_T_BOOL:
            return dl_value_bool(dl_rng_below(r, 2));
        case DL_T_INT: {
            static const int64_t ints[] = {INT64_MIN, INT64_MAX, 0, -1, 1, 42, (1ll << 53) + 1};
            return dl_value_int(dl_rng_below(r, 2) ? ints[dl_rng_below(r, 7)]
                                                   : (int64_t)dl_rng_below(r, 10) - 5);
        }
        case DL_T_DOUBLE:
            return dl_value_double(doubles[dl_rng_below(r, 12)]);
        case DL_T_INSTANT:
            return dl_value_instant((int64_t)dl_rng_below(r, 5) * 86400000 - 1);
        case DL_T_STRING: {
            const char *s = strs[dl_rng_below(r, 9)];
            assert_int_equal(dl_value_text(DL_T_STRING, s, strlen(s), &v, NULL), 0);
        }
            return v;
        case DL_T_KEYWORD: {
            const char *s = strs[1 + dl_rng_below(r, 8)];
            assert_int_equal(dl_value_text(DL_T_KEYWORD, s, strlen(s), &v, NULL), 0);
            return v;
        }
        case DL_T_REF:
            return dl_value_ref((int64_t)dl_rng_below(r, 4));
        default: {
            uint8_t b[16] = {0};
            b[15] = (uint8_t)dl_rng_below(r, 3);
            assert_int_equal(dl_value_uuid(b, &v, NULL), 0);
            return v;
        }
    }
}

static void test_value_is_16_bytes(void **state) {
    (void)state;
    assert_int_equal(sizeof(dl_value_t), 16);
}

/* Total order: antisymmetric, transitive, consistent with equality and hashing. */
static void test_value_total_order_property(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("value_total_order_property")};
    long iters = dl_prop_iters(200000);
    for (long i = 0; i < iters; i++) {
        dl_value_t a = random_value(&r), b = random_value(&r), c = random_value(&r);
        int ab = dl_value_cmp(a, b), ba = dl_value_cmp(b, a), bc = dl_value_cmp(b, c),
            ac = dl_value_cmp(a, c);
        if ((ab > 0) - (ab < 0) != -((ba > 0) - (ba < 0)))
            dl_prop_fail("antisymmetry fails at iteration %ld", i);
        if (ab <= 0 && bc <= 0 && ac > 0)
            dl_prop_fail("transitivity fails at iteration %ld", i);
        if ((ab == 0) != dl_value_eq(a, b))
            dl_prop_fail("cmp==0 disagrees with eq at iteration %ld", i);
        if (ab == 0 && dl_value_hash(a) != dl_value_hash(b))
            dl_prop_fail("equal values hash differently at iteration %ld", i);
        if (dl_value_cmp(a, a) != 0 || !dl_value_eq(a, a))
            dl_prop_fail("reflexivity fails at iteration %ld", i);
    }
}

static void test_value_type_rank_first(void **state) {
    (void)state;
    dl_value_t s;
    assert_int_equal(dl_value_text(DL_T_STRING, "", 0, &s, NULL), 0);
    assert_true(dl_value_cmp(dl_value_nil(), dl_value_bool(false)) < 0);
    assert_true(dl_value_cmp(dl_value_int(INT64_MAX), dl_value_double(-INFINITY)) < 0);
    assert_true(dl_value_cmp(dl_value_double(NAN), s) < 0);
    assert_true(dl_value_cmp(dl_value_int(5), dl_value_ref(1)) < 0);
}

static void test_value_double_special_cases(void **state) {
    (void)state;
    dl_value_t nz = dl_value_double(-0.0), pz = dl_value_double(0.0);
    dl_value_t n1 = dl_value_double(NAN), n2 = dl_value_double(-NAN);
    assert_true(dl_value_cmp(nz, pz) < 0);
    assert_false(dl_value_eq(nz, pz));
    assert_true(dl_value_eq(n1, n2));
    assert_int_equal(dl_value_hash(n1), dl_value_hash(n2));
    assert_true(dl_value_cmp(dl_value_double(INFINITY), n1) < 0);
    assert_true(dl_value_cmp(dl_value_double(-INFINITY), nz) < 0);
}

static void test_value_strings_interned(void **state) {
    (void)state;
    dl_value_t a, b, k;
    char buf[8] = "hello";
    assert_int_equal(dl_value_text(DL_T_STRING, "hello", 5, &a, NULL), 0);
    assert_int_equal(dl_value_text(DL_T_STRING, buf, 5, &b, NULL), 0);
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "hello", 5, &k, NULL), 0);
    assert_ptr_equal(a.as.s, b.as.s);
    assert_true(dl_value_eq(a, b));
    assert_false(dl_value_eq(a, k)); /* same bytes, different type */
    size_t n;
    assert_string_equal(dl_value_str(a, &n), "hello");
    assert_int_equal(n, 5);
    dl_error_t err = {0};
    assert_int_equal(dl_value_text(DL_T_STRING, "\xff", 1, &a, &err), DL_EUTF8);
    assert_int_equal(err.code, DL_EUTF8);
    assert_string_equal(dl_err_name(DL_EUTF8), "utf8");
}

static void test_row_compare_and_hash(void **state) {
    (void)state;
    dl_value_t a[3] = {dl_value_int(1), dl_value_int(2), dl_value_int(3)};
    dl_value_t b[3] = {dl_value_int(1), dl_value_int(2), dl_value_int(4)};
    assert_true(dl_row_cmp(a, b, 3) < 0);
    assert_int_equal(dl_row_cmp(a, b, 2), 0);
    assert_true(dl_row_eq(a, b, 2));
    assert_int_equal(dl_row_hash(a, 2), dl_row_hash(b, 2));
    assert_int_not_equal(dl_row_hash(a, 3), dl_row_hash(b, 3));
}

/* Two threads intern overlapping sets of strings at once; every string maps to one
 * pointer, whichever thread made it. Run under the sanitizer build too (and TSan). */
#define INTERN_N 20000
typedef struct {
    int offset;
    const dl_sym_t **out;
} intern_job_t;

static void *intern_worker(void *arg) {
    intern_job_t *job = arg;
    for (int i = 0; i < INTERN_N; i++) {
        char s[32];
        int k = (i * 7 + job->offset) % INTERN_N;
        int n = snprintf(s, sizeof s, "concurrent-%d", k);
        dl_value_t v;
        if (dl_value_text(DL_T_STRING, s, (size_t)n, &v, NULL) != 0)
            return (void *)1;
        job->out[k] = v.as.s;
    }
    return NULL;
}

static void test_value_intern_two_threads(void **state) {
    (void)state;
    static const dl_sym_t *out1[INTERN_N], *out2[INTERN_N];
    intern_job_t j1 = {0, out1}, j2 = {INTERN_N / 2, out2};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, intern_worker, &j1), 0);
    assert_int_equal(pthread_create(&t2, NULL, intern_worker, &j2), 0);
    void *r1, *r2;
    pthread_join(t1, &r1);
    pthread_join(t2, &r2);
    assert_null(r1);
    assert_null(r2);
    for (int i = 0; i < INTERN_N; i++) {
        assert_ptr_equal(out1[i], out2[i]);
        char s[32];
        snprintf(s, sizeof s, "concurrent-%d", i);
        assert_string_equal(out1[i]->bytes, s);
    }
}

DL_TEST_GROUP(value, cmocka_unit_test(test_value_is_16_bytes),
              cmocka_unit_test(test_value_total_order_property),
              cmocka_unit_test(test_value_type_rank_first),
              cmocka_unit_test(test_value_double_special_cases),
              cmocka_unit_test(test_value_strings_interned),
              cmocka_unit_test(test_row_compare_and_hash),
              cmocka_unit_test(test_value_intern_two_threads));
