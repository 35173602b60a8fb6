/*
 * alloc.c: the counted, replaceable allocator behind dl_malloc and friends.
 * Each block carries a 16-byte header holding its size, so live bytes can be reported
 * without asking libc, and alignment stays that of malloc (16 on x86-64).
 * Fault injection (dl_alloc_fail_after) is a process-wide countdown used by tests.
 *
 * Blocks of DL_ALLOC_BIG bytes or more (the dataflow's batches and spines) are mapped
 * directly: freeing one returns its pages to the system at once, and growing one remaps
 * pages instead of copying them. Through malloc they would come from the heap once glibc
 * has raised its mmap threshold, and the holes they leave when freed stay resident, which
 * under a bulk load cost as much memory as the data itself. The size in the header tells
 * which kind a block is. Sanitizer builds keep everything on malloc, which they watch.
 */
#include "base/base.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HDR 16

#if defined(__SANITIZE_ADDRESS__)
#define DL_ALLOC_BIG SIZE_MAX
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define DL_ALLOC_BIG SIZE_MAX
#endif
#endif
#ifndef DL_ALLOC_BIG
#define DL_ALLOC_BIG ((size_t)1 << 19)
#endif

static bool is_big(size_t size) { return size >= DL_ALLOC_BIG; }

static char *big_map(size_t total) {
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The raw block of `size` user bytes at base (header included), of either kind. */
static void raw_free(char *base, size_t size) {
    if (is_big(size))
        munmap(base, size + HDR);
    else
        free(base);
}

static char *raw_alloc(size_t size) {
    return is_big(size) ? big_map(size + HDR) : malloc(size + HDR);
}

static char *raw_realloc(char *base, size_t old, size_t size) {
    if (!is_big(old) && !is_big(size))
        return realloc(base, size + HDR);
    if (is_big(old) && is_big(size)) {
        void *p = mremap(base, old + HDR, size + HDR, MREMAP_MAYMOVE);
        return p == MAP_FAILED ? NULL : p;
    }
    char *p = raw_alloc(size);
    if (!p)
        return NULL;
    memcpy(p, base, HDR + (old < size ? old : size));
    raw_free(base, old);
    return p;
}

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
    char *p = raw_alloc(size);
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
    if (p && !is_big(n * size)) /* fresh mappings are zero: do not touch their pages */
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
    char *p = raw_realloc(base, old, size);
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
    raw_free(base, old);
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
