/*
 * alloc.c: the counted, replaceable allocator behind dl_malloc and friends.
 * Each block carries a 16-byte header holding its size, so live bytes can be reported
 * without asking libc, and alignment stays that of malloc (16 on x86-64).
 * Fault injection (dl_alloc_fail_after) is a process-wide countdown used by tests.
 */
#include "base/base.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16

static _Atomic int64_t live_bytes, live_blocks, peak_bytes, total_allocs;
static _Atomic int64_t fail_countdown = -1; /* <0: never fail */

static bool should_fail(void) {
    int64_t c = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (DL_LIKELY(c < 0))
        return false;
    if (c == 0)
        return true;
    atomic_fetch_sub_explicit(&fail_countdown, 1, memory_order_relaxed);
    return false;
}

static void account(int64_t bytes, int64_t blocks) {
    int64_t now = atomic_fetch_add_explicit(&live_bytes, bytes, memory_order_relaxed) + bytes;
    atomic_fetch_add_explicit(&live_blocks, blocks, memory_order_relaxed);
    int64_t peak = atomic_load_explicit(&peak_bytes, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(
                             &peak_bytes, &peak, now, memory_order_relaxed, memory_order_relaxed))
        ;
}

void *dl_malloc(size_t size) {
    if (should_fail() || size > SIZE_MAX - HDR)
        return NULL;
    char *p = malloc(size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    account((int64_t)size, 1);
    atomic_fetch_add_explicit(&total_allocs, 1, memory_order_relaxed);
    return p + HDR;
}

void *dl_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = dl_malloc(n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

void *dl_realloc(void *ptr, size_t size) {
    if (!ptr)
        return dl_malloc(size);
    if (should_fail() || size > SIZE_MAX - HDR)
        return NULL;
    char *base = (char *)ptr - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    char *p = realloc(base, size + HDR);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    account((int64_t)size - (int64_t)old, 0);
    return p + HDR;
}

void dl_free(void *ptr) {
    if (!ptr)
        return;
    char *base = (char *)ptr - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    account(-(int64_t)old, -1);
    free(base);
}

char *dl_strndup(const char *s, size_t n) {
    char *p = dl_malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

char *dl_strdup(const char *s) { return dl_strndup(s, strlen(s)); }

void dl_alloc_stats(dl_alloc_stats_t *out) {
    out->live_bytes = atomic_load(&live_bytes);
    out->live_blocks = atomic_load(&live_blocks);
    out->peak_bytes = atomic_load(&peak_bytes);
    out->total_allocs = atomic_load(&total_allocs);
}

void dl_alloc_fail_after(int64_t n) { atomic_store(&fail_countdown, n); }
