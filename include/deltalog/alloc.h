/*
 * alloc.h: the allocator every deltalog allocation goes through.
 *
 * Counted (live bytes and blocks are reported in stats) and replaceable. Tests use
 * dl_alloc_fail_after() to make the Nth allocation fail, to prove that allocation
 * failure is an error like any other (STYLE.md "Errors").
 */
#ifndef DELTALOG_ALLOC_H
#define DELTALOG_ALLOC_H

#include <deltalog/common.h>

DL_BEGIN_DECLS

DL_API void *dl_malloc(size_t size);
DL_API void *dl_calloc(size_t n, size_t size);
DL_API void *dl_realloc(void *ptr, size_t size);
DL_API void dl_free(void *ptr);
DL_API char *dl_strdup(const char *s);
DL_API char *dl_strndup(const char *s, size_t n);

typedef struct dl_alloc_stats {
    int64_t live_bytes;  /* bytes currently allocated */
    int64_t live_blocks; /* blocks currently allocated */
    int64_t peak_bytes;  /* high-water mark of live_bytes */
    int64_t total_allocs;
} dl_alloc_stats_t;

DL_API void dl_alloc_stats(dl_alloc_stats_t *out);

/* Test hook: after n more successful allocations, every allocation fails until
 * dl_alloc_fail_after(-1). Process-wide; not for production use. */
DL_API void dl_alloc_fail_after(int64_t n);

DL_END_DECLS
#endif
