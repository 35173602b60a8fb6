/*
 * sym.c: the process-wide symbol table that interns strings, keywords and uuids.
 *
 * Invariants:
 *  1. A published dl_sym_t is immutable and never freed; equal bytes map to one pointer.
 *  2. Lookups are lock-free (concurrencykit's ck_hs in single-writer/many-reader mode);
 *     insertions take `write_lock`, so any thread may intern.
 *  3. Bucket arrays that ck_hs retires when it grows may still be read by a concurrent
 *     lookup, so they are kept on `retired` instead of freed. Growth doubles, so the
 *     retired arrays together are smaller than the live one.
 * Symbols are carved from large slabs under the write lock: one allocation per 64 KiB.
 * Deliberately not done: reclaiming symbols nobody uses any more (a server that sees an
 * unbounded stream of distinct strings grows; see docs/values.md).
 */
#include "base/base.h"

#include <ck_hs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define SLAB_SIZE (64 * 1024)

/* ThreadSanitizer cannot see the fences ck_hs publishes entries with, so it reports the
 * lock-free lookup as a race with the insertion. Under TSan every lookup takes the write
 * lock instead: slower, equally correct, and TSan then checks everything else. */
#if defined(__SANITIZE_THREAD__)
#define DL_SYM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DL_SYM_TSAN 1
#endif
#endif
#ifndef DL_SYM_TSAN
#define DL_SYM_TSAN 0
#endif

typedef struct retired {
    struct retired *next;
} retired_t;

static ck_hs_t table;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic bool ready; /* table initialized; set once under write_lock */
static char *slab;         /* current slab, under write_lock */
static size_t slab_left;   /* bytes left in slab */
static retired_t *retired; /* retired bucket arrays (invariant 3) */
static int64_t n_syms, n_bytes;

static void *hs_malloc(size_t n) {
    /* Room for a retired_t link in front of every block handed to ck_hs. */
    char *p = dl_malloc(n + 16);
    return p ? p + 16 : NULL;
}

static void hs_free(void *p, size_t n, bool defer) {
    (void)n;
    if (!p)
        return;
    retired_t *r = (retired_t *)((char *)p - 16);
    if (defer) {
        r->next = retired;
        retired = r;
    } else {
        dl_free(r);
    }
}

static void *hs_realloc(void *p, size_t old, size_t n, bool defer) {
    void *q = hs_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    hs_free(p, old, defer);
    return q;
}

static struct ck_malloc allocator = {hs_malloc, hs_realloc, hs_free};

static unsigned long hs_hash(const void *key, unsigned long seed) {
    (void)seed;
    return (unsigned long)((const dl_sym_t *)key)->hash;
}

/* ck_hs compares a stored symbol with a probe of the same layout whose bytes may be
 * outside the table (a lookup) or a new symbol (an insertion). */
static bool hs_compare(const void *stored, const void *probe) {
    const dl_sym_t *a = stored, *b = probe;
    return a->hash == b->hash && a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

/* Lazily initialized, and retried if it failed (allocation failure must not poison the
 * table for the rest of the process, so no pthread_once). */
static bool init_table(void) {
    if (atomic_load_explicit(&ready, memory_order_acquire))
        return true;
    pthread_mutex_lock(&write_lock);
    if (!atomic_load_explicit(&ready, memory_order_relaxed) &&
        ck_hs_init(&table, CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT, hs_hash, hs_compare, &allocator,
                   1024, 0))
        atomic_store_explicit(&ready, true, memory_order_release);
    pthread_mutex_unlock(&write_lock);
    return atomic_load_explicit(&ready, memory_order_acquire);
}

int dl__sym_intern(const void *bytes, size_t n, const dl_sym_t **out) {
    if (!init_table())
        return DL_ENOMEM;
    if (n > UINT32_MAX)
        return DL_ELIMIT;
    dl_sym_t probe = {dl__hash_bytes(bytes, n), n, bytes};
#if !DL_SYM_TSAN
    const dl_sym_t *found = ck_hs_get(&table, (unsigned long)probe.hash, &probe);
    if (found) {
        *out = found;
        return DL_OK;
    }
#else
    const dl_sym_t *found;
#endif
    int rc = DL_OK;
    pthread_mutex_lock(&write_lock);
    found = ck_hs_get(&table, (unsigned long)probe.hash, &probe);
    if (found) {
        *out = found;
        goto done;
    }
    size_t need = (sizeof(dl_sym_t) + n + 1 + 15) & ~(size_t)15;
    bool own_block = need > SLAB_SIZE / 4; /* large symbols do not waste a slab's tail */
    char *mem;
    if (own_block) {
        mem = dl_malloc(need);
    } else {
        if (need > slab_left) {
            char *s = dl_malloc(SLAB_SIZE);
            if (s) {
                slab = s;
                slab_left = SLAB_SIZE;
            }
        }
        mem = need <= slab_left ? slab : NULL;
    }
    if (!mem) {
        rc = DL_ENOMEM;
        goto done;
    }
    dl_sym_t *sym = (dl_sym_t *)mem;
    char *b = mem + sizeof(dl_sym_t);
    memcpy(b, bytes, n);
    b[n] = 0;
    sym->hash = probe.hash;
    sym->len = n;
    sym->bytes = b;
    /* ck_hs_put publishes with the needed fences: readers see the bytes written above. */
    if (!ck_hs_put(&table, (unsigned long)sym->hash, sym)) {
        if (own_block)
            dl_free(mem);
        rc = DL_ENOMEM;
        goto done;
    }
    if (!own_block) {
        slab += need;
        slab_left -= need;
    }
    n_syms++;
    n_bytes += (int64_t)n;
    *out = sym;
done:
    pthread_mutex_unlock(&write_lock);
    return rc;
}

void dl__sym_stats(int64_t *out_count, int64_t *out_bytes) {
    pthread_mutex_lock(&write_lock);
    *out_count = n_syms;
    *out_bytes = n_bytes;
    pthread_mutex_unlock(&write_lock);
}
