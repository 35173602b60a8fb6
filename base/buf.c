/*
 * buf.c: the growable byte buffer printers append to. Growth doubles; an allocation
 * failure sets `oom` and later appends are ignored, so callers check once at the end.
 */
#include "base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void dl__buf_init(dl_buf_t *b) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = false;
}

void dl__buf_fini(dl_buf_t *b) {
    dl_free(b->data);
    dl__buf_init(b);
}

bool dl__buf_reserve(dl_buf_t *b, size_t extra) {
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = dl_realloc(b->data, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->data = p;
    b->cap = cap;
    return true;
}

void dl__buf_put(dl_buf_t *b, const void *p, size_t n) {
    if (!dl__buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void dl__buf_puts(dl_buf_t *b, const char *s) { dl__buf_put(b, s, strlen(s)); }

void dl__buf_putc(dl_buf_t *b, char c) { dl__buf_put(b, &c, 1); }

void dl__buf_printf(dl_buf_t *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        dl__buf_put(b, small, (size_t)n);
        return;
    }
    if (!dl__buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *dl__buf_take(dl_buf_t *b) {
    if (b->oom) {
        dl__buf_fini(b);
        return NULL;
    }
    if (!b->data && !dl__buf_reserve(b, 0))
        return NULL;
    if (!b->data)
        return NULL;
    b->data[b->len] = 0;
    char *p = b->data;
    dl__buf_init(b);
    return p;
}
