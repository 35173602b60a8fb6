/*
 * base.h: what every module shares and the public API does not expose: growable
 * buffers, arenas, hashing, the symbol table's internals, and the EDN reader.
 * Layer: base/ depends on libc, concurrencykit and jansson only (STYLE.md "Layers";
 * jansson because the value type's JSON form is part of the value type).
 */
#ifndef DL_BASE_H
#define DL_BASE_H

#include <deltalog/alloc.h>
#include <deltalog/error.h>
#include <deltalog/value.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define DL_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define DL_MAX(a, b)    ((a) > (b) ? (a) : (b))
#define DL_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define DL_LIKELY(x)    __builtin_expect(!!(x), 1)

/* ---- hashing (base/hash.c) ------------------------------------------------------------- */
/* A fast 64-bit hash of bytes (not cryptographic; seedless, stable across runs). */
uint64_t dl__hash_bytes(const void *p, size_t n);
/* splitmix64's finalizer: a bijective mix of one word. The benchmark set checksum's mix. */
static inline uint64_t dl__hash_mix(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static inline uint64_t dl__hash_combine(uint64_t h, uint64_t x) {
    return dl__hash_mix(h ^ (x + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2)));
}

/* Row equality and a row hash for in-memory hash tables on hot paths: values compare by
 * type and word (text is interned, doubles canonical: dl_value_eq's meaning), and the
 * hash mixes those words once per row (not stable across processes: interned text
 * hashes by address). Inline where dl_row_eq/dl_row_hash are calls. */
static inline bool dl__row_same(const dl_value_t *a, const dl_value_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i].type != b[i].type || a[i].as.bits != b[i].as.bits)
            return false;
    return true;
}
static inline uint64_t dl__row_hash_fast(const dl_value_t *r, size_t n) {
    uint64_t h = 0x243F6A8885A308D3ull ^ n;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (r[i].as.bits + ((uint64_t)r[i].type << 56))) * 0x9E3779B97F4A7C15ull;
    return dl__hash_mix(h);
}

/* ---- little-endian fields of on-disk formats ------------------------------------------ */
static inline void dl__le_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void dl__le_put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t dl__le_get32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t dl__le_get64(const uint8_t *p) {
    return (uint64_t)dl__le_get32(p) | (uint64_t)dl__le_get32(p + 4) << 32;
}

/* ---- growable arrays ------------------------------------------------------------------- */
/* Ensures the array whose pointer is at arrp (a T **, of *cap elements of elem_size bytes)
 * holds at least need elements, doubling from `first`. Returns false on out of memory,
 * leaving the array and *cap unchanged. The pointer is read and written with memcpy, so any
 * element type may be passed without breaking strict aliasing. */
static inline bool dl__grow(void *arrp, size_t *cap, size_t need, size_t elem_size, size_t first) {
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : first;
    while (n < need)
        n *= 2;
    void *old;
    memcpy(&old, arrp, sizeof old);
    void *p = dl_realloc(old, n * elem_size);
    if (!p)
        return false;
    memcpy(arrp, &p, sizeof p);
    *cap = n;
    return true;
}

/* ---- symbols (base/sym.c) -------------------------------------------------------------- */
/* Invariant: a dl_sym_t is never freed or changed once published; equal bytes always
 * intern to the same pointer. */
struct dl_sym {
    uint64_t hash;     /* dl__hash_bytes of the bytes */
    uint64_t len;      /* number of bytes, excluding the terminating NUL */
    const char *bytes; /* len bytes then a NUL; points just past this header */
};
/* Interns bytes; *out is immortal. Thread-safe: lock-free lookups, one writer at a time. */
int dl__sym_intern(const void *bytes, size_t n, const dl_sym_t **out);
/* Number of interned symbols and their bytes (for stats). */
void dl__sym_stats(int64_t *out_count, int64_t *out_bytes);

/* ---- growable byte buffer (base/buf.c) ------------------------------------------------- */
/* Invariant: data[len] == 0 whenever data != NULL. After an allocation failure `oom` is
 * set and later appends do nothing, so a printer checks once at the end. */
typedef struct dl_buf {
    char *data;
    size_t len;
    size_t cap;
    bool oom;
} dl_buf_t;

void dl__buf_init(dl_buf_t *b);
void dl__buf_fini(dl_buf_t *b);
bool dl__buf_reserve(dl_buf_t *b, size_t extra);
void dl__buf_put(dl_buf_t *b, const void *p, size_t n);
void dl__buf_puts(dl_buf_t *b, const char *s);
void dl__buf_putc(dl_buf_t *b, char c);
void dl__buf_printf(dl_buf_t *b, const char *fmt, ...) DL_PRINTF(2, 3);
/* new: hands the bytes to the caller (dl_free); NULL if oom. The buffer is reset. */
char *dl__buf_take(dl_buf_t *b);

/* ---- arena (base/arena.c) -------------------------------------------------------------- */
/* Phase-scoped memory: many allocations, one release. Nothing may point into an arena
 * after dl__arena_fini/reset. */
typedef struct dl_arena_chunk dl_arena_chunk_t;
typedef struct dl_arena {
    dl_arena_chunk_t *head; /* current chunk; older chunks are linked behind it */
    size_t used;            /* bytes used in head */
    size_t chunk_size;      /* default size of new chunks */
} dl_arena_t;

void dl__arena_init(dl_arena_t *a, size_t chunk_size);
void dl__arena_fini(dl_arena_t *a);
void dl__arena_reset(dl_arena_t *a);
/* 16-byte aligned; NULL on out of memory. */
void *dl__arena_alloc(dl_arena_t *a, size_t n);
void *dl__arena_calloc(dl_arena_t *a, size_t n);
char *dl__arena_strndup(dl_arena_t *a, const char *s, size_t n);

/* ---- UTF-8 (base/utf8.c) --------------------------------------------------------------- */
bool dl__utf8_valid(const char *s, size_t n);
/* Encodes code point cp (<= 0x10FFFF, not a surrogate) into out; returns bytes written
 * (1..4) or 0 when cp is not a scalar value. */
int dl__utf8_encode(uint32_t cp, char out[4]);

/* ---- instants (base/value.c) ----------------------------------------------------------- */
/* RFC 3339 text of an instant in UTC with milliseconds ("2020-01-02T03:04:05.678Z"). */
void dl__instant_format(int64_t ms, dl_buf_t *out);
/* Parses RFC 3339 (date, optional time, fraction and offset); DL_EPARSE on bad text. */
int dl__instant_parse(const char *s, size_t n, int64_t *out_ms);
/* 8-4-4-4-12 hex text of a uuid, and its parser. */
void dl__uuid_format(const uint8_t b[16], dl_buf_t *out);
int dl__uuid_parse(const char *s, size_t n, uint8_t out[16]);

/* ---- the EDN reader (base/edn.c) ------------------------------------------------------- */
/* A parsed EDN form. Scalars that are dl_value types are held as values; symbols,
 * characters and the collections have their own kinds. Forms live in the arena given
 * to the reader; they are freed with it. */
typedef enum dl_edn_kind {
    DL_EDN_VALUE,  /* nil, bool, int, double, string, keyword, #inst, #uuid: see .value */
    DL_EDN_SYMBOL, /* .sym: "ns/name" or "name" */
    DL_EDN_CHAR,   /* .value is an INT holding the code point */
    DL_EDN_LIST,   /* ( ... ) */
    DL_EDN_VECTOR, /* [ ... ] */
    DL_EDN_MAP,    /* { k v ... }: items alternate key, value; n is even */
    DL_EDN_SET,    /* #{ ... } */
    DL_EDN_TAGGED  /* #tag form, other than #inst/#uuid: .sym is the tag, items[0] the form */
} dl_edn_kind_t;

typedef struct dl_edn dl_edn_t;
struct dl_edn {
    dl_edn_kind_t kind;
    int line, column;    /* 1-based position of the form's first character */
    int64_t offset;      /* byte offset of the form's first character */
    dl_value_t value;    /* DL_EDN_VALUE, DL_EDN_CHAR */
    const dl_sym_t *sym; /* DL_EDN_SYMBOL, DL_EDN_TAGGED */
    size_t n;            /* number of items */
    dl_edn_t **items;    /* collections: n items in order */
};

typedef struct dl_edn_reader {
    const char *text; /* borrowed input */
    size_t len;
    size_t pos;
    int line, column;
    int depth; /* current nesting, bounded by DL_EDN_MAX_DEPTH */
    dl_arena_t *arena;
} dl_edn_reader_t;

#define DL_EDN_MAX_DEPTH 512

void dl__edn_reader_init(dl_edn_reader_t *r, const char *text, size_t len, dl_arena_t *arena);
/* Reads the next form into *out (arena memory). Returns 0 and sets *out = NULL at the
 * end of input. Errors (DL_EPARSE, DL_ERANGE, DL_EUTF8, DL_ELIMIT, DL_ENOMEM) carry
 * line, column and offset, and a message that shows the line with a caret. */
int dl__edn_read(dl_edn_reader_t *r, dl_edn_t **out, dl_error_t *err) DL_WUR;
/* Reads exactly one form from text; trailing forms are an error. */
int dl__edn_read_one(const char *text, size_t len, dl_arena_t *arena, dl_edn_t **out,
                     dl_error_t *err) DL_WUR;
/* Appends the EDN text of a form / of a value. */
void dl__edn_print(const dl_edn_t *form, dl_buf_t *out);
void dl__edn_print_value(dl_value_t v, dl_buf_t *out);
/* Convenience predicates for consumers (datalog, store). */
bool dl__edn_is_symbol(const dl_edn_t *f, const char *name);
bool dl__edn_is_keyword(const dl_edn_t *f, const char *name);
/* Formats "msg\n<line>\n   ^" into err for a position in text (used by the reader and by
 * consumers that report errors against a form's position). */
int dl__edn_error_at(dl_error_t *err, int code, const char *text, size_t len, int64_t offset,
                     int line, int column, const char *fmt, ...) DL_PRINTF(8, 9);

/* ---- the value JSON form (base/json.c): docs/values.md --------------------------------- */
/* Forward-declared so base.h does not force <jansson.h> on every includer. */
struct json_t;
/* new reference (json_decref); NULL on out of memory. */
struct json_t *dl__json_from_value(dl_value_t v);
int dl__json_to_value(const struct json_t *j, dl_value_t *out, dl_error_t *err) DL_WUR;

#endif
