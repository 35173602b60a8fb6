/*
 * test_alloc.c: the counted allocator, fault injection, arenas, buffers and the error
 * convention.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <stdio.h>
#include <string.h>

static void test_alloc_counts_and_fails(void **state) {
    (void)state;
    dl_alloc_stats_t before, after;
    dl_alloc_stats(&before);
    void *p = dl_malloc(1000);
    assert_non_null(p);
    p = dl_realloc(p, 5000);
    assert_non_null(p);
    dl_alloc_stats(&after);
    assert_int_equal(after.live_bytes - before.live_bytes, 5000);
    dl_free(p);
    dl_alloc_stats(&after);
    assert_int_equal(after.live_bytes, before.live_bytes);
    dl_alloc_fail_after(1);
    void *a = dl_malloc(8), *b = dl_malloc(8);
    dl_alloc_fail_after(-1);
    assert_non_null(a);
    assert_null(b);
    dl_free(a);
}

/* Blocks cross the size at which the allocator maps pages directly (512 KiB in optimized
 * builds), in both directions: contents survive, calloc is zero, the counts stay exact. */
static void test_alloc_big_blocks(void **state) {
    (void)state;
    dl_alloc_stats_t before, after;
    dl_alloc_stats(&before);
    size_t sizes[] = {4096, (1u << 19) - 16, 1u << 19, 3u << 20, 64u << 20, 1u << 19, 100, 7};
    size_t n = sizes[0];
    unsigned char *p = dl_malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31 + 7);
    for (size_t k = 1; k < sizeof sizes / sizeof *sizes; k++) {
        size_t m = sizes[k];
        p = dl_realloc(p, m);
        assert_non_null(p);
        size_t keep = n < m ? n : m;
        for (size_t i = 0; i < keep; i += 997)
            assert_int_equal(p[i], (unsigned char)(i * 31 + 7));
        assert_int_equal(p[keep - 1], (unsigned char)((keep - 1) * 31 + 7));
        for (size_t i = keep; i < m; i++)
            p[i] = (unsigned char)(i * 31 + 7);
        assert_int_equal((uintptr_t)p % 16, 0);
        dl_alloc_stats(&after);
        assert_int_equal(after.live_bytes - before.live_bytes, (int64_t)m);
        n = m;
    }
    dl_free(p);
    size_t big = 5u << 20;
    unsigned char *z = dl_calloc(big, 1);
    assert_non_null(z);
    for (size_t i = 0; i < big; i += 4096)
        assert_int_equal(z[i], 0);
    assert_int_equal(z[big - 1], 0);
    dl_free(z);
    /* Freed mappings are reused while the live bytes are large enough to keep a few (a
     * ballast of 64 MiB, never touched): a reused block from calloc is still zero, and a
     * reused block is whole (its tail can be written). */
    void *ballast = dl_malloc(256u << 20);
    assert_non_null(ballast);
    for (int round = 0; round < 3; round++) {
        unsigned char *x = dl_malloc(2u << 20);
        assert_non_null(x);
        memset(x, 0xab, 2u << 20);
        dl_free(x);
        unsigned char *y = dl_calloc((3u << 20) / 2, 1);
        assert_non_null(y);
        for (size_t i = 0; i < (3u << 20) / 2; i += 512)
            assert_int_equal(y[i], 0);
        unsigned char *w = dl_malloc((3u << 20) / 2 + 4096);
        assert_non_null(w);
        memset(w, 0xcd, (3u << 20) / 2 + 4096);
        w = dl_realloc(w, 5u << 20);
        assert_non_null(w);
        assert_int_equal(w[(3u << 20) / 2 + 4095], 0xcd);
        memset(w, 0xef, 5u << 20);
        dl_free(w);
        dl_free(y);
    }
    dl_free(ballast);
    dl_alloc_stats(&after);
    assert_int_equal(after.live_bytes, before.live_bytes);
}

static void test_alloc_arena(void **state) {
    (void)state;
    dl_arena_t ar;
    dl__arena_init(&ar, 256);
    for (int i = 0; i < 1000; i++) {
        char *s = dl__arena_alloc(&ar, (size_t)(i % 300) + 1);
        assert_non_null(s);
        assert_int_equal((uintptr_t)s % 16, 0);
        memset(s, 'x', (size_t)(i % 300) + 1);
    }
    dl__arena_reset(&ar);
    assert_non_null(dl__arena_strndup(&ar, "abc", 3));
    dl__arena_fini(&ar);
}

static void test_alloc_buffer_and_oom(void **state) {
    (void)state;
    dl_buf_t b;
    dl__buf_init(&b);
    for (int i = 0; i < 1000; i++)
        dl__buf_printf(&b, "%d,", i);
    assert_false(b.oom);
    assert_memory_equal(b.data, "0,1,2,", 6);
    char *s = dl__buf_take(&b);
    assert_non_null(s);
    dl_free(s);
    dl_alloc_fail_after(0);
    dl__buf_puts(&b, "x");
    dl_alloc_fail_after(-1);
    assert_true(b.oom);
    assert_null(dl__buf_take(&b));
}

static void test_alloc_error_convention(void **state) {
    (void)state;
    dl_error_t err;
    dl_error_clear(&err);
    assert_int_equal(dl_error_set(&err, DL_EINVAL, "first %d", 1), DL_EINVAL);
    assert_int_equal(dl_error_set(&err, DL_EPARSE, "second"), DL_EPARSE);
    assert_int_equal(err.code, DL_EINVAL); /* the first error wins */
    assert_string_equal(err.message, "first 1");
    dl_error_prefix(&err, "ctx");
    assert_string_equal(err.message, "ctx: first 1");
    assert_int_equal(dl_error_set(NULL, DL_EIO, "ignored"), DL_EIO);
    assert_string_equal(dl_err_name(DL_EUNKNOWN_ATTR), "unknown_attr");
    assert_string_equal(dl_err_name(12345), "unknown");
}

/* Interning under allocation failure reports DL_ENOMEM and leaves the table usable. */
static void test_alloc_intern_under_failure(void **state) {
    (void)state;
    for (int n = 0; n < 4; n++) {
        char s[64];
        int len = snprintf(s, sizeof s, "fault-injected-symbol-%d-%s", n,
                           "padding-to-make-it-long-enough");
        dl_value_t v;
        dl_error_t err = {0};
        dl_alloc_fail_after(n);
        int rc = dl_value_text(DL_T_STRING, s, (size_t)len, &v, &err);
        dl_alloc_fail_after(-1);
        assert_true(rc == DL_OK || rc == DL_ENOMEM);
        assert_int_equal(dl_value_text(DL_T_STRING, s, (size_t)len, &v, NULL), 0);
        assert_string_equal(dl_value_str(v, NULL), s);
    }
}

DL_TEST_GROUP(alloc, cmocka_unit_test(test_alloc_counts_and_fails),
              cmocka_unit_test(test_alloc_big_blocks), cmocka_unit_test(test_alloc_arena),
              cmocka_unit_test(test_alloc_buffer_and_oom),
              cmocka_unit_test(test_alloc_error_convention),
              cmocka_unit_test(test_alloc_intern_under_failure));
