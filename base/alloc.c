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
 * which kind a block is; a big block's header also holds its mapping's length. A few freed
 * mappings (at most 1/64 of the live bytes) are kept for reuse, so short-lived large
 * batches do not pay a page fault per page each time. Sanitizer builds keep everything
 * on malloc, which they watch.
 */
#include "base/base.h"

#include <pthread.h>
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

/* A big block's header holds its size and then the length of its mapping (which may be
 * longer: reused mappings, page rounding). */
static size_t map_len(const char *base) {
    size_t len;
    memcpy(&len, base + sizeof(size_t), sizeof len);
    return len;
}
static void set_map_len(char *base, size_t len) { memcpy(base + sizeof(size_t), &len, sizeof len); }

/* Freed mappings kept for reuse: fresh pages cost a page fault and zeroing each on first
 * touch, which for short-lived large batches (a one-shot query's, a bulk load's) costs
 * as much as the work on them. The cache is bounded by a fraction of the live bytes, so
 * the memory it holds back stays proportional to what the process really uses. */
#define CACHE_SLOTS 8
#ifndef DL_ALLOC_CACHE_DIV
#define DL_ALLOC_CACHE_DIV 64 /* the cache holds at most live bytes / this */
#endif
static struct {
    char *p;
    size_t len;
} cache[CACHE_SLOTS];
static size_t cache_n, cache_bytes;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int64_t live_bytes, live_blocks, peak_bytes, total_allocs;

static size_t page_round(size_t n) {
    size_t pg = 4096;
    return (n + pg - 1) & ~(pg - 1);
}

/* A mapping of at least total bytes; *fresh tells whether it is new (and so zero). */
static char *big_map(size_t total, bool *fresh) {
    size_t len = page_round(total);
    char *p = NULL;
    pthread_mutex_lock(&cache_lock);
    /* Best fit among mappings no more than twice the need. */
    size_t best = CACHE_SLOTS;
    for (size_t i = 0; i < cache_n; i++)
        if (cache[i].len >= len && cache[i].len <= 2 * len &&
            (best == CACHE_SLOTS || cache[i].len < cache[best].len))
            best = i;
    if (best != CACHE_SLOTS) {
        p = cache[best].p;
        len = cache[best].len;
        cache_bytes -= len;
        cache[best] = cache[--cache_n];
    }
    pthread_mutex_unlock(&cache_lock);
    if (fresh)
        *fresh = !p;
    if (!p) {
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        p = m;
    }
    set_map_len(p, len);
    return p;
}

static void big_unmap(char *base) {
    size_t len = map_len(base);
    int64_t live = atomic_load_explicit(&live_bytes, memory_order_relaxed);
    size_t limit = live > 0 ? (size_t)live / DL_ALLOC_CACHE_DIV : 0;
    pthread_mutex_lock(&cache_lock);
    if (cache_n < CACHE_SLOTS && cache_bytes + len <= limit) {
        cache[cache_n].p = base;
        cache[cache_n].len = len;
        cache_n++;
        cache_bytes += len;
        base = NULL;
    }
    /* Shrink the cache when the live bytes it is measured against went down. */
    char *drop[CACHE_SLOTS];
    size_t drop_len[CACHE_SLOTS], nd = 0;
    while (cache_n && cache_bytes > limit) {
        cache_n--;
        drop[nd] = cache[cache_n].p;
        drop_len[nd++] = cache[cache_n].len;
        cache_bytes -= cache[cache_n].len;
    }
    pthread_mutex_unlock(&cache_lock);
    for (size_t i = 0; i < nd; i++)
        munmap(drop[i], drop_len[i]);
    if (base)
        munmap(base, len);
}

/* The raw block of `size` user bytes at base (header included), of either kind. */
static void raw_free(char *base, size_t size) {
    if (is_big(size))
        big_unmap(base);
    else
        free(base);
}

static char *raw_alloc(size_t size, bool *fresh) {
    if (fresh)
        *fresh = false;
    return is_big(size) ? big_map(size + HDR, fresh) : malloc(size + HDR);
}

static char *raw_realloc(char *base, size_t old, size_t size) {
    if (!is_big(old) && !is_big(size))
        return realloc(base, size + HDR);
    if (is_big(old) && is_big(size)) {
        size_t len = map_len(base), need = page_round(size + HDR);
        if (need == len)
            return base; /* shrinking frees the tail's pages, growing may move: mremap */
        void *p = mremap(base, len, need, MREMAP_MAYMOVE);
        if (p == MAP_FAILED)
            return NULL;
        set_map_len(p, need);
        return p;
    }
    char *p = raw_alloc(size, NULL);
    if (!p)
        return NULL;
    size_t len = is_big(size) ? map_len(p) : 0;
    memcpy(p, base, HDR + (old < size ? old : size));
    if (is_big(size))
        set_map_len(p, len); /* the copy overwrote it */
    raw_free(base, old);
    return p;
}

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

static void *alloc_block(size_t size, bool *fresh) {
    if (should_fail() || size > SIZE_MAX - HDR)
        return NULL;
    char *p = raw_alloc(size, fresh);
    if (!p)
        return NULL;
    memcpy(p, &size, sizeof size);
    account((int64_t)size, 1);
    atomic_fetch_add_explicit(&total_allocs, 1, memory_order_relaxed);
    return p + HDR;
}

void *dl_malloc(size_t size) { return alloc_block(size, NULL); }

void *dl_calloc(size_t n, size_t size) {
    if (size && n > SIZE_MAX / size)
        return NULL;
    bool fresh;
    void *p = alloc_block(n * size, &fresh);
    if (p && !fresh) /* a fresh mapping is zero already: do not touch its pages */
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
