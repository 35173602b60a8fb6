/*
 * error.c: error codes, their stable names, and filling a dl_error_t.
 * Follows include/deltalog/error.h: the first recorded error wins; messages are
 * truncated to the fixed buffer rather than allocated, so out-of-memory can be reported.
 */
#include "base/base.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *upper;
    const char *desc;
} codes[] = {
#define DL__ERR_ROW(name, value, desc) {(value), #name, (desc)},
    DL_ERRNO_MAP(DL__ERR_ROW)
#undef DL__ERR_ROW
};

#define N_CODES DL_ARRAY_LEN(codes)
static char lower_names[N_CODES][32];
static pthread_once_t lower_once = PTHREAD_ONCE_INIT;

/* The wire names are the X-macro names in lower case; computed once. */
static void make_lower_names(void) {
    for (size_t i = 0; i < N_CODES; i++) {
        size_t j = 0;
        for (; codes[i].upper[j] && j + 1 < sizeof lower_names[i]; j++)
            lower_names[i][j] = (char)tolower((unsigned char)codes[i].upper[j]);
        lower_names[i][j] = 0;
    }
}

const char *dl_err_name(int code) {
    pthread_once(&lower_once, make_lower_names);
    for (size_t i = 0; i < N_CODES; i++)
        if (codes[i].code == code)
            return lower_names[i];
    return "unknown";
}

const char *dl_strerror(int code) {
    for (size_t i = 0; i < N_CODES; i++)
        if (codes[i].code == code)
            return codes[i].desc;
    return "unknown error";
}

void dl_error_clear(dl_error_t *err) {
    if (!err)
        return;
    err->code = 0;
    err->line = 0;
    err->column = 0;
    err->offset = -1;
    err->message[0] = 0;
}

int dl_error_vset(dl_error_t *err, int code, const char *fmt, va_list ap) {
    if (!err || err->code != 0)
        return code;
    err->code = code;
    err->line = 0;
    err->column = 0;
    err->offset = -1;
    if (fmt)
        vsnprintf(err->message, sizeof err->message, fmt, ap);
    else
        snprintf(err->message, sizeof err->message, "%s", dl_strerror(code));
    return code;
}

int dl_error_set(dl_error_t *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    dl_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int dl_error_set_at(dl_error_t *err, int code, int line, int column, int64_t offset,
                    const char *fmt, ...) {
    if (!err || err->code != 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    dl_error_vset(err, code, fmt, ap);
    va_end(ap);
    err->line = line;
    err->column = column;
    err->offset = offset;
    return code;
}

void dl_error_prefix(dl_error_t *err, const char *fmt, ...) {
    if (!err || err->code == 0)
        return;
    char prefix[DL_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[DL_ERROR_MSG_MAX];
    memcpy(old, err->message, sizeof old);
    /* Built by hand: both parts may fill the buffer, and truncation is intended. */
    size_t cap = sizeof err->message - 1, k = 0;
    for (const char *p = prefix; *p && k < cap; p++)
        err->message[k++] = *p;
    for (const char *p = ": "; *p && k < cap; p++)
        err->message[k++] = *p;
    for (const char *p = old; *p && k < cap; p++)
        err->message[k++] = *p;
    err->message[k] = 0;
}
