/*
 * time.c: times as vectors of uint64 coordinates under the product partial order, their
 * lattice operations, and antichains (frontiers) with insert, less_equal and advance_by.
 * Follows DESIGN-NOTES §1 and docs/dataflow.md "Time". Does not know about scopes: a
 * caller passes the dim it means.
 */
#include "dataflow/dataflow.h"

bool dl_time_le(const uint64_t *a, const uint64_t *b, size_t dim) {
    for (size_t i = 0; i < dim; i++)
        if (a[i] > b[i])
            return false;
    return true;
}

int dl_time_cmp(const uint64_t *a, const uint64_t *b, size_t dim) {
    for (size_t i = 0; i < dim; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

void dl_time_join(const uint64_t *a, const uint64_t *b, size_t dim, uint64_t *out) {
    for (size_t i = 0; i < dim; i++)
        out[i] = a[i] > b[i] ? a[i] : b[i];
}

void dl_time_meet(const uint64_t *a, const uint64_t *b, size_t dim, uint64_t *out) {
    for (size_t i = 0; i < dim; i++)
        out[i] = a[i] < b[i] ? a[i] : b[i];
}

void dl_antichain_init(dl_antichain_t *a, size_t dim) {
    a->dim = (uint32_t)dim;
    a->n = 0;
    a->cap = 0;
    a->elems = NULL;
}

void dl_antichain_fini(dl_antichain_t *a) {
    if (!a)
        return;
    dl_free(a->elems);
    a->elems = NULL;
    a->n = a->cap = 0;
}

void dl_antichain_clear(dl_antichain_t *a) { a->n = 0; }

int dl_antichain_insert(dl_antichain_t *a, const uint64_t *t) {
    size_t d = a->dim;
    for (size_t i = 0; i < a->n; i++)
        if (dl_time_le(a->elems + i * d, t, d))
            return 0;
    /* Remove the elements t dominates (t <= e), compacting in place. */
    size_t w = 0;
    for (size_t i = 0; i < a->n; i++) {
        if (dl_time_le(t, a->elems + i * d, d))
            continue;
        if (w != i)
            memmove(a->elems + w * d, a->elems + i * d, d * sizeof(uint64_t));
        w++;
    }
    a->n = (uint32_t)w;
    if (a->n == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 2;
        uint64_t *e = dl_realloc(a->elems, (size_t)cap * (d ? d : 1) * sizeof(uint64_t));
        if (!e)
            return DL_ENOMEM;
        a->elems = e;
        a->cap = cap;
    }
    if (d)
        memcpy(a->elems + (size_t)a->n * d, t, d * sizeof(uint64_t));
    a->n++;
    return 1;
}

bool dl_antichain_less_equal(const dl_antichain_t *a, const uint64_t *t) {
    size_t d = a->dim;
    for (size_t i = 0; i < a->n; i++)
        if (dl_time_le(a->elems + i * d, t, d))
            return true;
    return false;
}

bool dl_antichain_le(const dl_antichain_t *a, const dl_antichain_t *b) {
    for (size_t i = 0; i < b->n; i++)
        if (!dl_antichain_less_equal(a, b->elems + i * (size_t)b->dim))
            return false;
    return true;
}

int dl_antichain_copy(dl_antichain_t *dst, const dl_antichain_t *src) {
    size_t need = (size_t)src->n * src->dim;
    if (dst->dim != src->dim) {
        dl_free(dst->elems);
        dst->elems = NULL;
        dst->cap = 0;
    }
    if (src->n > dst->cap) {
        size_t cap = src->n ? src->n : 1;
        uint64_t *e = dl_realloc(dst->elems, cap * (src->dim ? src->dim : 1) * sizeof(uint64_t));
        if (!e)
            return DL_ENOMEM;
        dst->elems = e;
        dst->cap = (uint32_t)cap;
    }
    dst->dim = src->dim;
    dst->n = src->n;
    if (need)
        memcpy(dst->elems, src->elems, need * sizeof(uint64_t));
    return 0;
}

void dl_time_advance_by(const uint64_t *t, const dl_antichain_t *f, uint64_t *out) {
    size_t d = f->dim;
    if (f->n == 0) {
        if (out != t)
            memmove(out, t, d * sizeof(uint64_t));
        return;
    }
    uint64_t acc[DL_TIME_MAX_DIM], j[DL_TIME_MAX_DIM];
    dl_time_join(t, f->elems, d, acc);
    for (size_t i = 1; i < f->n; i++) {
        dl_time_join(t, f->elems + i * d, d, j);
        dl_time_meet(acc, j, d, acc);
    }
    memcpy(out, acc, d * sizeof(uint64_t));
}

int dl__time_project(const dl_antichain_t *src, size_t dim, dl_antichain_t *out) {
    uint64_t t[DL_TIME_MAX_DIM];
    if (out->dim != dim) {
        dl_free(out->elems);
        out->elems = NULL;
        out->cap = 0;
        out->dim = (uint32_t)dim;
    }
    out->n = 0;
    for (size_t i = 0; i < src->n; i++) {
        for (size_t k = 0; k < dim; k++)
            t[k] = k < src->dim ? src->elems[i * src->dim + k] : 0;
        int rc = dl_antichain_insert(out, t);
        if (rc < 0)
            return rc;
    }
    return 0;
}
