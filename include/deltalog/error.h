/*
 * error.h: the one error convention of deltalog.
 *
 * A fallible function returns int: 0 (DL_OK) or a negative DL_E... code. Details go
 * into an optional caller-owned dl_error_t (pass NULL when you do not need them). The
 * struct has fixed buffers, so even out-of-memory can be described; the first error
 * recorded wins, later ones are ignored until dl_error_clear().
 * Codes are only ever added at the end of DL_ERRNO_MAP, never renumbered: their
 * names (dl_err_name) are the stable codes of the wire protocol.
 */
#ifndef DELTALOG_ERROR_H
#define DELTALOG_ERROR_H

#include <deltalog/common.h>
#include <stdarg.h>

DL_BEGIN_DECLS

/* X(name, value, description). The wire code is the lower-case name. */
#define DL_ERRNO_MAP(X)                                                                            \
    X(OK, 0, "success")                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(PARSE, -3, "syntax error")                                                                   \
    X(TYPE, -4, "wrong type")                                                                      \
    X(RANGE, -5, "value out of range")                                                             \
    X(NOTFOUND, -6, "not found")                                                                   \
    X(EXISTS, -7, "already exists")                                                                \
    X(IO, -8, "input/output error")                                                                \
    X(CORRUPT, -9, "corrupt data")                                                                 \
    X(LOCKED, -10, "locked by another process")                                                    \
    X(ARITY, -11, "wrong arity")                                                                   \
    X(TIME, -12, "time not beyond frontier")                                                       \
    X(CYCLE, -13, "cycle outside an iterate scope")                                                \
    X(UNBOUND, -14, "unbound variable")                                                            \
    X(UNKNOWN_ATTR, -15, "unknown attribute")                                                      \
    X(UNIQUE, -16, "uniqueness conflict")                                                          \
    X(CAS, -17, "compare-and-swap mismatch")                                                       \
    X(CONFLICT, -18, "conflicting operations in one transaction")                                  \
    X(SCHEMA, -19, "invalid schema change")                                                        \
    X(STRATIFY, -20, "negation or aggregation through recursion")                                  \
    X(LIMIT, -21, "limit exceeded")                                                                \
    X(LAGGED, -22, "subscriber lagged")                                                            \
    X(TIMEOUT, -23, "timed out")                                                                   \
    X(CLOSED, -24, "closed")                                                                       \
    X(UNSUPPORTED, -25, "not supported")                                                           \
    X(STATE, -26, "operation not valid in this state")                                             \
    X(UTF8, -27, "invalid UTF-8")                                                                  \
    X(VERSION, -28, "unsupported format version")                                                  \
    X(AUTH, -29, "not authorized")                                                                 \
    X(INTERNAL, -30, "internal error")

enum {
#define DL__ERRNO_ENUM(name, value, desc) DL_E##name = (value),
    DL_ERRNO_MAP(DL__ERRNO_ENUM)
#undef DL__ERRNO_ENUM
};
#define DL_OK DL_EOK

#define DL_ERROR_MSG_MAX 512

/* Caller-allocated; zero-initialize or dl_error_clear() before use. */
typedef struct dl_error {
    int code;                       /* 0 while no error has been recorded */
    int line;                       /* 1-based line in the input, 0 when not relevant */
    int column;                     /* 1-based column, 0 when not relevant */
    int64_t offset;                 /* byte offset (input text or file), -1 when unknown */
    char message[DL_ERROR_MSG_MAX]; /* human message, NUL-terminated */
} dl_error_t;

/* The stable lower-case name of a code ("nomem", "parse", ...); "unknown" otherwise. */
DL_API const char *dl_err_name(int code);
/* The generic description of a code. */
DL_API const char *dl_strerror(int code);

DL_API void dl_error_clear(dl_error_t *err);
/* Records code and message unless err is NULL or already holds an error; returns code,
 * so a failing path can `return dl_error_set(err, DL_EINVAL, "...")`. */
DL_API int dl_error_set(dl_error_t *err, int code, const char *fmt, ...) DL_PRINTF(3, 4);
DL_API int dl_error_vset(dl_error_t *err, int code, const char *fmt, va_list ap);
/* As dl_error_set, also recording a position (line, column, byte offset). */
DL_API int dl_error_set_at(dl_error_t *err, int code, int line, int column, int64_t offset,
                           const char *fmt, ...) DL_PRINTF(6, 7);
/* Prefixes the recorded message with "context: " (for wrapping a lower layer's error). */
DL_API void dl_error_prefix(dl_error_t *err, const char *fmt, ...) DL_PRINTF(2, 3);

DL_END_DECLS
#endif
