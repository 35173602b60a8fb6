/*
 * value.h: dl_value_t, the vocabulary of every module, and rows (fixed-arity tuples).
 *
 * A value is 16 bytes, copied by value. Strings, keywords and uuids point to interned,
 * immortal byte sequences (a process-wide symbol table; see docs/values.md), so two
 * equal strings are the same pointer and copying a value never allocates.
 *
 * Total order: type rank first (the order of dl_type_t below), then by value:
 * booleans false < true; integers, instants and refs as signed int64; doubles by
 * IEEE value except that -0.0 < +0.0 and NaN (all NaNs are one value) is greater than
 * every other double; strings and keywords by bytes (UTF-8, so code point order);
 * uuids by bytes. Equality and hashing agree with the order.
 */
#ifndef DELTALOG_VALUE_H
#define DELTALOG_VALUE_H

#include <deltalog/common.h>
#include <deltalog/error.h>
#include <stdbool.h>
#include <string.h>

DL_BEGIN_DECLS

/* The order of the enumerators is the type rank of the total order: never reorder. */
typedef enum dl_type {
    DL_T_NIL = 0,
    DL_T_BOOL = 1,
    DL_T_INT = 2,     /* int64 ("long" in Datomic) */
    DL_T_DOUBLE = 3,  /* IEEE binary64 */
    DL_T_INSTANT = 4, /* int64 milliseconds since 1970-01-01T00:00:00Z */
    DL_T_STRING = 5,  /* UTF-8 bytes, interned */
    DL_T_KEYWORD = 6, /* "ns/name" without the leading colon, interned */
    DL_T_REF = 7,     /* entity id, int64 */
    DL_T_UUID = 8,    /* 16 bytes, interned */
    DL_T__COUNT
} dl_type_t;

/* An interned byte sequence: immortal, immutable, readable from any thread. */
typedef struct dl_sym dl_sym_t;

typedef struct dl_value {
    uint8_t type;        /* dl_type_t */
    uint8_t reserved[7]; /* always zero, so values can be hashed or compared bytewise */
    union {
        int64_t i;         /* BOOL (0/1), INT, INSTANT, REF */
        double d;          /* DOUBLE; NaN is canonical (see dl_value_double) */
        const dl_sym_t *s; /* STRING, KEYWORD, UUID */
        uint64_t bits;
    } as;
} dl_value_t;

/* ---- constructors that cannot fail ---------------------------------------------------- */
static inline dl_value_t dl_value_nil(void) {
    dl_value_t v;
    memset(&v, 0, sizeof v);
    return v;
}
static inline dl_value_t dl_value_of(dl_type_t t, int64_t i) {
    dl_value_t v = dl_value_nil();
    v.type = (uint8_t)t;
    v.as.i = i;
    return v;
}
static inline dl_value_t dl_value_bool(bool b) { return dl_value_of(DL_T_BOOL, b ? 1 : 0); }
static inline dl_value_t dl_value_int(int64_t i) { return dl_value_of(DL_T_INT, i); }
static inline dl_value_t dl_value_instant(int64_t ms) { return dl_value_of(DL_T_INSTANT, ms); }
static inline dl_value_t dl_value_ref(int64_t e) { return dl_value_of(DL_T_REF, e); }
/* Every NaN becomes one canonical NaN, so NaN equals itself and round-trips exactly. */
DL_API dl_value_t dl_value_double(double d);

/* ---- interned constructors (allocate on first sight of the bytes) -------------------- */
/* type is DL_T_STRING or DL_T_KEYWORD; bytes need not be NUL-terminated. Strings must be
 * valid UTF-8 (DL_EUTF8 otherwise). Thread-safe. */
DL_API int dl_value_text(dl_type_t type, const char *bytes, size_t n, dl_value_t *out,
                         dl_error_t *err) DL_WUR;
DL_API int dl_value_uuid(const uint8_t bytes[16], dl_value_t *out, dl_error_t *err) DL_WUR;

/* ---- accessors ------------------------------------------------------------------------- */
/* STRING/KEYWORD: the bytes (NUL-terminated) and length; borrowed, immortal. */
DL_API const char *dl_value_str(dl_value_t v, size_t *out_len);
/* UUID: the 16 bytes; borrowed, immortal. */
DL_API const uint8_t *dl_value_uuid_bytes(dl_value_t v);
DL_API const char *dl_type_name(dl_type_t t);

/* ---- order, equality, hash ------------------------------------------------------------- */
DL_API int dl_value_cmp(dl_value_t a, dl_value_t b);
DL_API bool dl_value_eq(dl_value_t a, dl_value_t b);
DL_API uint64_t dl_value_hash(dl_value_t v);

/* Rows: `arity` values stored contiguously. */
DL_API int dl_row_cmp(const dl_value_t *a, const dl_value_t *b, size_t arity);
DL_API bool dl_row_eq(const dl_value_t *a, const dl_value_t *b, size_t arity);
DL_API uint64_t dl_row_hash(const dl_value_t *row, size_t arity);

/* ---- text forms (docs/values.md) ------------------------------------------------------- */
/* new: a NUL-terminated string the caller frees with dl_free; NULL on out of memory. */
DL_API char *dl_value_to_edn(dl_value_t v);
DL_API char *dl_value_to_json(dl_value_t v);
/* Parse exactly one value (surrounding whitespace allowed). */
DL_API int dl_value_parse_edn(const char *text, size_t n, dl_value_t *out, dl_error_t *err) DL_WUR;
DL_API int dl_value_parse_json(const char *text, size_t n, dl_value_t *out, dl_error_t *err) DL_WUR;

DL_END_DECLS
#endif
