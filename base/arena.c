/*
 * arena.c: phase-scoped bump allocation (a query's parse and plan, one transaction).
 * Chunks come from dl_malloc; an allocation larger than the chunk size gets a chunk of
 * its own. Does not support freeing single allocations.
 */
#include "base/base.h"

#include <string.h>

struct dl_arena_chunk {
    dl_arena_chunk_t *next; /* older chunk */
    size_t size;            /* usable bytes in data */
    _Alignas(16) unsigned char data[];
};

void dl__arena_init(dl_arena_t *a, size_t chunk_size) {
    a->head = NULL;
    a->used = 0;
    a->chunk_size = chunk_size ? chunk_size : 16384;
}

void dl__arena_fini(dl_arena_t *a) {
    dl_arena_chunk_t *c = a->head;
    while (c) {
        dl_arena_chunk_t *next = c->next;
        dl_free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}

void dl__arena_reset(dl_arena_t *a) {
    /* Keep the newest chunk for reuse: phases tend to need similar amounts. */
    if (!a->head)
        return;
    dl_arena_chunk_t *keep = a->head, *c = keep->next;
    while (c) {
        dl_arena_chunk_t *next = c->next;
        dl_free(c);
        c = next;
    }
    keep->next = NULL;
    a->used = 0;
}

void *dl__arena_alloc(dl_arena_t *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    if (!a->head || a->used + n > a->head->size) {
        size_t size = n > a->chunk_size ? n : a->chunk_size;
        dl_arena_chunk_t *c = dl_malloc(sizeof *c + size);
        if (!c)
            return NULL;
        c->size = size;
        if (a->head && n > a->chunk_size) {
            /* A big allocation goes behind the current chunk so its free space is kept. */
            c->next = a->head->next;
            a->head->next = c;
            return c->data;
        }
        c->next = a->head;
        a->head = c;
        a->used = 0;
    }
    void *p = a->head->data + a->used;
    a->used += n;
    return p;
}

void *dl__arena_calloc(dl_arena_t *a, size_t n) {
    void *p = dl__arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *dl__arena_strndup(dl_arena_t *a, const char *s, size_t n) {
    char *p = dl__arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}
