/*
 * value.c: dl_value_t construction, the total order, equality, hashing, rows, and the
 * text of instants and uuids. The EDN and JSON forms are in edn.c and json.c; this file
 * only offers the public wrappers. Semantics: include/deltalog/value.h, docs/values.md.
 */
#include "base/base.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const type_names[] = {"nil",    "boolean", "long", "double", "instant",
                                         "string", "keyword", "ref",  "uuid"};

const char *dl_type_name(dl_type_t t) {
    return (unsigned)t < DL_T__COUNT ? type_names[t] : "invalid";
}

dl_value_t dl_value_double(double d) {
    dl_value_t v = dl_value_nil();
    v.type = DL_T_DOUBLE;
    v.as.d = isnan(d) ? NAN : d;
    if (isnan(d)) /* one bit pattern for every NaN, whatever its sign or payload */
        v.as.bits = 0x7ff8000000000000ull;
    return v;
}

int dl_value_text(dl_type_t type, const char *bytes, size_t n, dl_value_t *out, dl_error_t *err) {
    if (type != DL_T_STRING && type != DL_T_KEYWORD)
        return dl_error_set(err, DL_EINVAL, "dl_value_text: type must be string or keyword");
    if (!dl__utf8_valid(bytes, n))
        return dl_error_set(err, DL_EUTF8, "%s is not valid UTF-8", dl_type_name(type));
    const dl_sym_t *s;
    int rc = dl__sym_intern(bytes, n, &s);
    if (rc)
        return dl_error_set(err, rc, "interning a %s of %zu bytes: %s", dl_type_name(type), n,
                            dl_strerror(rc));
    *out = dl_value_nil();
    out->type = (uint8_t)type;
    out->as.s = s;
    return DL_OK;
}

int dl_value_uuid(const uint8_t bytes[16], dl_value_t *out, dl_error_t *err) {
    const dl_sym_t *s;
    int rc = dl__sym_intern(bytes, 16, &s);
    if (rc)
        return dl_error_set(err, rc, "interning a uuid: %s", dl_strerror(rc));
    *out = dl_value_nil();
    out->type = DL_T_UUID;
    out->as.s = s;
    return DL_OK;
}

const char *dl_value_str(dl_value_t v, size_t *out_len) {
    if (v.type != DL_T_STRING && v.type != DL_T_KEYWORD) {
        if (out_len)
            *out_len = 0;
        return NULL;
    }
    if (out_len)
        *out_len = v.as.s->len;
    return v.as.s->bytes;
}

const uint8_t *dl_value_uuid_bytes(dl_value_t v) {
    return v.type == DL_T_UUID ? (const uint8_t *)v.as.s->bytes : NULL;
}

/* ---- order ---------------------------------------------------------------------------- */

static int cmp_i64(int64_t a, int64_t b) { return (a > b) - (a < b); }

/* NaN above everything; -0.0 below +0.0; otherwise IEEE order. */
static int cmp_double(double a, double b) {
    int na = isnan(a), nb = isnan(b);
    if (na || nb)
        return (na != 0) - (nb != 0);
    if (a < b)
        return -1;
    if (a > b)
        return 1;
    return (signbit(b) != 0) - (signbit(a) != 0);
}

static int cmp_sym(const dl_sym_t *a, const dl_sym_t *b) {
    if (a == b)
        return 0;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->bytes, b->bytes, n);
    if (c)
        return c < 0 ? -1 : 1;
    return cmp_i64((int64_t)a->len, (int64_t)b->len);
}

int dl_value_cmp(dl_value_t a, dl_value_t b) {
    if (a.type != b.type)
        return a.type < b.type ? -1 : 1;
    switch (a.type) {
        case DL_T_NIL:
            return 0;
        case DL_T_DOUBLE:
            return cmp_double(a.as.d, b.as.d);
        case DL_T_STRING:
        case DL_T_KEYWORD:
        case DL_T_UUID:
            return cmp_sym(a.as.s, b.as.s);
        default:
            return cmp_i64(a.as.i, b.as.i);
    }
}

bool dl_value_eq(dl_value_t a, dl_value_t b) {
    /* Interning makes symbol equality pointer equality; canonical NaN and distinct
     * -0.0 make double equality bit equality. So every type compares its word. */
    return a.type == b.type && a.as.bits == b.as.bits;
}

uint64_t dl_value_hash(dl_value_t v) {
    uint64_t w;
    switch (v.type) {
        case DL_T_STRING:
        case DL_T_KEYWORD:
        case DL_T_UUID:
            w = v.as.s->hash;
            break;
        case DL_T_NIL:
            w = 0;
            break;
        default:
            w = v.as.bits;
    }
    return dl__hash_mix(w ^ ((uint64_t)v.type << 59));
}

int dl_row_cmp(const dl_value_t *a, const dl_value_t *b, size_t arity) {
    for (size_t i = 0; i < arity; i++) {
        int c = dl_value_cmp(a[i], b[i]);
        if (c)
            return c;
    }
    return 0;
}

bool dl_row_eq(const dl_value_t *a, const dl_value_t *b, size_t arity) {
    for (size_t i = 0; i < arity; i++)
        if (!dl_value_eq(a[i], b[i]))
            return false;
    return true;
}

uint64_t dl_row_hash(const dl_value_t *row, size_t arity) {
    uint64_t h = 0x51ed27fa3c1b9d57ull ^ arity;
    for (size_t i = 0; i < arity; i++)
        h = dl__hash_combine(h, dl_value_hash(row[i]));
    return h;
}

/* ---- instants -------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (the standard
 * era-based civil calendar conversion). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

void dl__instant_format(int64_t ms, dl_buf_t *out) {
    int64_t days = floor_div(ms, 86400000);
    int64_t rem = ms - days * 86400000;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    unsigned h = (unsigned)(rem / 3600000), mi = (unsigned)(rem / 60000 % 60),
             s = (unsigned)(rem / 1000 % 60), f = (unsigned)(rem % 1000);
    /* ISO 8601 expanded years (a sign and more digits) outside 0000..9999. */
    if (y >= 0 && y <= 9999)
        dl__buf_printf(out, "%04lld", (long long)y);
    else
        dl__buf_printf(out, "%+05lld", (long long)y);
    dl__buf_printf(out, "-%02u-%02uT%02u:%02u:%02u.%03uZ", m, d, h, mi, s, f);
}

static bool digits(const char *s, size_t n, size_t *pos, size_t count, int64_t *out) {
    int64_t v = 0;
    for (size_t i = 0; i < count; i++) {
        if (*pos >= n || s[*pos] < '0' || s[*pos] > '9')
            return false;
        v = v * 10 + (s[(*pos)++] - '0');
    }
    *out = v;
    return true;
}

int dl__instant_parse(const char *s, size_t n, int64_t *out_ms) {
    size_t p = 0;
    int sign = 1;
    int64_t y = 0, mo = 1, d = 1, h = 0, mi = 0, sec = 0, ms = 0, off = 0;
    if (p < n && (s[p] == '+' || s[p] == '-')) {
        sign = s[p] == '-' ? -1 : 1;
        p++;
        size_t start = p;
        while (p < n && s[p] >= '0' && s[p] <= '9' && p - start < 12)
            y = y * 10 + (s[p++] - '0');
        if (p - start < 4)
            return DL_EPARSE;
        y *= sign;
    } else if (!digits(s, n, &p, 4, &y)) {
        return DL_EPARSE;
    }
    if (p < n && s[p] == '-') {
        p++;
        if (!digits(s, n, &p, 2, &mo))
            return DL_EPARSE;
        if (p < n && s[p] == '-') {
            p++;
            if (!digits(s, n, &p, 2, &d))
                return DL_EPARSE;
            if (p < n && (s[p] == 'T' || s[p] == 't')) {
                p++;
                if (!digits(s, n, &p, 2, &h) || p >= n || s[p++] != ':' ||
                    !digits(s, n, &p, 2, &mi))
                    return DL_EPARSE;
                if (p < n && s[p] == ':') {
                    p++;
                    if (!digits(s, n, &p, 2, &sec))
                        return DL_EPARSE;
                    if (p < n && s[p] == '.') {
                        p++;
                        size_t start = p;
                        int64_t scale = 100;
                        while (p < n && s[p] >= '0' && s[p] <= '9') {
                            ms += (s[p] - '0') * scale; /* digits past ms truncate */
                            scale /= 10;
                            p++;
                        }
                        if (p == start)
                            return DL_EPARSE;
                    }
                }
                if (p < n && (s[p] == 'Z' || s[p] == 'z')) {
                    p++;
                } else if (p < n && (s[p] == '+' || s[p] == '-')) {
                    int osign = s[p++] == '-' ? -1 : 1;
                    int64_t oh, om;
                    if (!digits(s, n, &p, 2, &oh) || p >= n || s[p++] != ':' ||
                        !digits(s, n, &p, 2, &om) || oh > 23 || om > 59)
                        return DL_EPARSE;
                    off = osign * (oh * 60 + om);
                }
            }
        }
    }
    if (p != n)
        return DL_EPARSE;
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return DL_EPARSE;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return DL_EPARSE;
    if (y > 292000000 || y < -292000000)
        return DL_ERANGE;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out_ms = ((days * 24 + h) * 60 + mi - off) * 60000 + sec * 1000 + ms;
    return DL_OK;
}

void dl__uuid_format(const uint8_t b[16], dl_buf_t *out) {
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            dl__buf_putc(out, '-');
        dl__buf_printf(out, "%02x", b[i]);
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int dl__uuid_parse(const char *s, size_t n, uint8_t out[16]) {
    if (n != 36)
        return DL_EPARSE;
    size_t p = 0;
    for (int i = 0; i < 16; i++) {
        if (p == 8 || p == 13 || p == 18 || p == 23) {
            if (s[p] != '-')
                return DL_EPARSE;
            p++;
        }
        int hi = hexval(s[p]), lo = hexval(s[p + 1]);
        if (hi < 0 || lo < 0)
            return DL_EPARSE;
        out[i] = (uint8_t)(hi << 4 | lo);
        p += 2;
    }
    return DL_OK;
}

/* ---- public text wrappers -------------------------------------------------------------- */

char *dl_value_to_edn(dl_value_t v) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl__edn_print_value(v, &b);
    return dl__buf_take(&b);
}

char *dl_value_to_json(dl_value_t v) {
    json_t *j = dl__json_from_value(v);
    if (!j)
        return NULL;
    /* JSON_ENCODE_ANY: a bare scalar is a complete document here. */
    char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    if (!s)
        return NULL;
    char *copy = dl_strdup(s);
    free(s);
    return copy;
}

int dl_value_parse_edn(const char *text, size_t n, dl_value_t *out, dl_error_t *err) {
    dl_arena_t arena;
    dl__arena_init(&arena, 1024);
    dl_edn_t *form;
    int rc = dl__edn_read_one(text, n, &arena, &form, err);
    if (rc == DL_OK) {
        if (form->kind == DL_EDN_VALUE)
            *out = form->value;
        else
            rc = dl_error_set_at(err, DL_ETYPE, form->line, form->column, form->offset,
                                 "expected a value (nil, boolean, number, string, keyword, "
                                 "#inst or #uuid), found a %s",
                                 form->kind == DL_EDN_SYMBOL ? "symbol" : "collection or tag");
    }
    dl__arena_fini(&arena);
    return rc;
}

int dl_value_parse_json(const char *text, size_t n, dl_value_t *out, dl_error_t *err) {
    json_error_t jerr;
    json_t *j = json_loadb(text, n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return dl_error_set_at(err, DL_EPARSE, jerr.line, jerr.column, jerr.position,
                               "invalid JSON: %s", jerr.text);
    int rc = dl__json_to_value(j, out, err);
    json_decref(j);
    return rc;
}
