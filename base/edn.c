/*
 * edn.c: a complete EDN reader producing dl_edn_t trees in an arena, and the EDN
 * printer of forms and values. Used by the store (transaction data) and by datalog
 * (queries), so it lives in base/.
 *
 * Follows the EDN specification (github.com/edn-format/edn) plus the two reader tags
 * every Clojure reader knows (#inst, #uuid), ##NaN/##Inf/##-Inf, and deltalog's own
 * #dl/ref tag so refs print and read back as refs (docs/values.md). Deliberately not
 * supported: arbitrary-precision integers and decimals beyond what int64 and double
 * hold (a number with N that does not fit int64 is a range error; M reads as double),
 * ratios, and namespaced-map syntax.
 * Every error carries line, column and offset, and its message shows the line with a
 * caret under the offending character.
 */
#include "base/base.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---------------------------------------------------------------------------- */

int dl__edn_error_at(dl_error_t *err, int code, const char *text, size_t len, int64_t offset,
                     int line, int column, const char *fmt, ...) {
    if (!err || err->code)
        return code;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The offending line, clipped to 120 bytes around the column, and a caret. */
    size_t off = offset < 0 ? 0 : (size_t)offset > len ? len : (size_t)offset;
    size_t ls = off, le = off;
    while (ls > 0 && text[ls - 1] != '\n')
        ls--;
    while (le < len && text[le] != '\n')
        le++;
    size_t caret = off - ls;
    if (caret > 80) {
        ls += caret - 80;
        caret = 80;
    }
    if (le - ls > 120)
        le = ls + 120;
    char shown[128], mark[96];
    size_t k = 0;
    for (size_t i = ls; i < le && k < sizeof shown - 1; i++)
        shown[k++] = (text[i] == '\t') ? ' ' : text[i];
    shown[k] = 0;
    size_t m = 0;
    for (; m < caret && m < sizeof mark - 2; m++)
        mark[m] = ' ';
    mark[m++] = '^';
    mark[m] = 0;
    return dl_error_set_at(err, code, line, column, offset, "%s at line %d, column %d\n%s\n%s", msg,
                           line, column, shown, mark);
}

#define FAIL(r, code, ...)                                                                         \
    dl__edn_error_at(err, code, (r)->text, (r)->len, (int64_t)(r)->pos, (r)->line, (r)->column,    \
                     __VA_ARGS__)

/* ---- scanning -------------------------------------------------------------------------- */

void dl__edn_reader_init(dl_edn_reader_t *r, const char *text, size_t len, dl_arena_t *arena) {
    r->text = text;
    r->len = len;
    r->pos = 0;
    r->line = 1;
    r->column = 1;
    r->depth = 0;
    r->arena = arena;
}

static int peek(const dl_edn_reader_t *r) {
    return r->pos < r->len ? (unsigned char)r->text[r->pos] : -1;
}

static int peek_at(const dl_edn_reader_t *r, size_t k) {
    return r->pos + k < r->len ? (unsigned char)r->text[r->pos + k] : -1;
}

static void advance(dl_edn_reader_t *r) {
    if (r->pos >= r->len)
        return;
    unsigned char c = (unsigned char)r->text[r->pos++];
    if (c == '\n') {
        r->line++;
        r->column = 1;
    } else if ((c & 0xC0) != 0x80) {
        r->column++; /* columns count code points, not bytes */
    }
}

static void skip_ws(dl_edn_reader_t *r) {
    for (;;) {
        int c = peek(r);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '\f') {
            advance(r);
        } else if (c == ';') {
            while (peek(r) != -1 && peek(r) != '\n')
                advance(r);
        } else {
            return;
        }
    }
}

static bool is_delim(int c) {
    return c == -1 || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '\f' ||
           c == '(' || c == ')' || c == '[' || c == ']' || c == '{' || c == '}' || c == '"' ||
           c == ';';
}

static bool is_sym_char(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr(".*+!-_?$%&=<>/:#'", c) != NULL || c >= 0x80;
}

static dl_edn_t *new_form(dl_edn_reader_t *r, dl_edn_kind_t kind, int line, int col, size_t off) {
    dl_edn_t *f = dl__arena_calloc(r->arena, sizeof *f);
    if (f) {
        f->kind = kind;
        f->line = line;
        f->column = col;
        f->offset = (int64_t)off;
        f->value = dl_value_nil();
    }
    return f;
}

/* ---- tokens ---------------------------------------------------------------------------- */

static int read_token(dl_edn_reader_t *r, const char **out, size_t *out_len) {
    size_t start = r->pos;
    while (!is_delim(peek(r)))
        advance(r);
    *out = r->text + start;
    *out_len = r->pos - start;
    return 0;
}

static int read_number(dl_edn_reader_t *r, dl_edn_t *f, dl_error_t *err) {
    const char *t;
    size_t n;
    size_t start = r->pos;
    int line = r->line, col = r->column;
    read_token(r, &t, &n);
    char buf[128];
    if (n >= sizeof buf)
        return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, (int64_t)start, line, col,
                                "number too long");
    memcpy(buf, t, n);
    buf[n] = 0;
    bool is_float = false, big = false, dec = false;
    size_t end = n;
    if (end > 0 && buf[end - 1] == 'N') {
        big = true;
        buf[--end] = 0;
    } else if (end > 0 && buf[end - 1] == 'M') {
        dec = true;
        buf[--end] = 0;
    }
    size_t i = 0;
    if (buf[i] == '+' || buf[i] == '-')
        i++;
    size_t digits_start = i;
    while (buf[i] >= '0' && buf[i] <= '9')
        i++;
    bool ok = i > digits_start;
    /* EDN forbids leading zeros on integers with more than one digit ("01"). */
    if (ok && buf[digits_start] == '0' && i - digits_start > 1)
        ok = false;
    if (ok && buf[i] == '.') {
        is_float = true;
        i++;
        while (buf[i] >= '0' && buf[i] <= '9')
            i++;
    }
    if (ok && (buf[i] == 'e' || buf[i] == 'E')) {
        is_float = true;
        i++;
        if (buf[i] == '+' || buf[i] == '-')
            i++;
        size_t es = i;
        while (buf[i] >= '0' && buf[i] <= '9')
            i++;
        if (i == es)
            ok = false;
    }
    if (!ok || i != end || (big && is_float))
        return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, (int64_t)start, line, col,
                                "invalid number '%.*s'", (int)DL_MIN(n, 60), t);
    errno = 0;
    if (is_float || dec) {
        double d = strtod(buf, NULL);
        if (errno == ERANGE && isinf(d))
            return dl__edn_error_at(err, DL_ERANGE, r->text, r->len, (int64_t)start, line, col,
                                    "number '%.*s' out of double range", (int)DL_MIN(n, 60), t);
        f->value = dl_value_double(d);
    } else {
        long long v = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            return dl__edn_error_at(err, DL_ERANGE, r->text, r->len, (int64_t)start, line, col,
                                    "integer '%.*s' does not fit in 64 bits", (int)DL_MIN(n, 60),
                                    t);
        f->value = dl_value_int(v);
    }
    return DL_OK;
}

static int hex4(dl_edn_reader_t *r, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int c = peek(r);
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0)
            return -1;
        v = v * 16 + (uint32_t)d;
        advance(r);
    }
    *out = v;
    return 0;
}

static int read_string(dl_edn_reader_t *r, dl_edn_t *f, dl_error_t *err) {
    dl_buf_t b;
    dl__buf_init(&b);
    advance(r); /* opening quote */
    int rc = DL_OK;
    for (;;) {
        int c = peek(r);
        if (c == -1) {
            rc = FAIL(r, DL_EPARSE, "unterminated string (started at line %d, column %d)", f->line,
                      f->column);
            goto out;
        }
        if (c == '"') {
            advance(r);
            break;
        }
        if (c != '\\') {
            dl__buf_putc(&b, (char)c);
            advance(r);
            continue;
        }
        advance(r);
        c = peek(r);
        char ch;
        switch (c) {
            case 't':
                ch = '\t';
                break;
            case 'r':
                ch = '\r';
                break;
            case 'n':
                ch = '\n';
                break;
            case 'b':
                ch = '\b';
                break;
            case 'f':
                ch = '\f';
                break;
            case '\\':
                ch = '\\';
                break;
            case '"':
                ch = '"';
                break;
            case 'u': {
                advance(r);
                uint32_t cp, lo;
                if (hex4(r, &cp) < 0) {
                    rc = FAIL(r, DL_EPARSE, "invalid \\u escape: need four hex digits");
                    goto out;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF && peek(r) == '\\' && peek_at(r, 1) == 'u') {
                    advance(r);
                    advance(r);
                    if (hex4(r, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                        rc = FAIL(r, DL_EUTF8, "invalid low surrogate in \\u escape");
                        goto out;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                char enc[4];
                int k = dl__utf8_encode(cp, enc);
                if (k == 0) {
                    rc = FAIL(r, DL_EUTF8, "\\u escape is a lone surrogate");
                    goto out;
                }
                dl__buf_put(&b, enc, (size_t)k);
                continue;
            }
            default:
                rc = FAIL(r, DL_EPARSE, "invalid escape '\\%c' in string", c == -1 ? ' ' : c);
                goto out;
        }
        dl__buf_putc(&b, ch);
        advance(r);
    }
    if (b.oom) {
        rc = dl_error_set(err, DL_ENOMEM, "out of memory reading a string");
        goto out;
    }
    if (!dl__utf8_valid(b.data ? b.data : "", b.len)) {
        rc = dl__edn_error_at(err, DL_EUTF8, r->text, r->len, f->offset, f->line, f->column,
                              "string is not valid UTF-8");
        goto out;
    }
    rc = dl_value_text(DL_T_STRING, b.data ? b.data : "", b.len, &f->value, err);
out:
    dl__buf_fini(&b);
    return rc;
}

static int read_char(dl_edn_reader_t *r, dl_edn_t *f, dl_error_t *err) {
    advance(r); /* backslash */
    size_t start = r->pos;
    /* A character literal is at least one character, even a delimiter: "\(" is '('. */
    if (peek(r) == -1)
        return FAIL(r, DL_EPARSE, "character literal at end of input");
    advance(r);
    while ((peek(r) & 0xC0) == 0x80)
        advance(r);
    while (!is_delim(peek(r)))
        advance(r);
    const char *t = r->text + start;
    size_t n = r->pos - start;
    static const struct {
        const char *name;
        uint32_t cp;
    } named[] = {{"newline", '\n'}, {"space", ' '},     {"tab", '\t'},
                 {"return", '\r'},  {"formfeed", '\f'}, {"backspace", '\b'}};
    uint32_t cp = 0;
    bool found = false;
    for (size_t i = 0; i < DL_ARRAY_LEN(named); i++)
        if (strlen(named[i].name) == n && memcmp(named[i].name, t, n) == 0)
            cp = named[i].cp, found = true;
    if (!found && n == 5 && t[0] == 'u') {
        dl_edn_reader_t sub = *r;
        sub.pos = start + 1;
        if (hex4(&sub, &cp) == 0 && !(cp >= 0xD800 && cp <= 0xDFFF))
            found = true;
    }
    if (!found && dl__utf8_valid(t, n)) {
        /* exactly one code point */
        unsigned char c0 = (unsigned char)t[0];
        size_t len1 = c0 < 0x80 ? 1 : (c0 & 0xE0) == 0xC0 ? 2 : (c0 & 0xF0) == 0xE0 ? 3 : 4;
        if (len1 == n) {
            cp = c0 < 0x80 ? c0 : c0 & (0x3F >> (len1 - 1));
            for (size_t i = 1; i < n; i++)
                cp = (cp << 6) | ((unsigned char)t[i] & 0x3F);
            found = true;
        }
    }
    if (!found)
        return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, f->offset, f->line, f->column,
                                "invalid character literal '\\%.*s'", (int)DL_MIN(n, 40), t);
    f->value = dl_value_int(cp);
    return DL_OK;
}

/* Symbols and keywords: validates the EDN rules that matter for round-tripping: a
 * non-empty name, at most one '/', neither part empty (except the symbol "/"). */
static bool valid_name(const char *t, size_t n, bool keyword) {
    if (n == 0)
        return false;
    if (!keyword && n == 1 && t[0] == '/')
        return true;
    const char *slash = memchr(t, '/', n);
    if (slash) {
        if (slash == t || slash == t + n - 1 || memchr(slash + 1, '/', n - (size_t)(slash - t) - 1))
            return false;
    }
    if ((t[0] >= '0' && t[0] <= '9') || t[0] == ':' || t[0] == '#')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_sym_char((unsigned char)t[i]))
            return false;
    return true;
}

static int read_form(dl_edn_reader_t *r, dl_edn_t **out, dl_error_t *err);

static int read_seq(dl_edn_reader_t *r, dl_edn_t *f, int close, dl_error_t *err) {
    if (++r->depth > DL_EDN_MAX_DEPTH)
        return FAIL(r, DL_ELIMIT, "nesting deeper than %d", DL_EDN_MAX_DEPTH);
    size_t cap = 0;
    for (;;) {
        skip_ws(r);
        int c = peek(r);
        if (c == -1)
            return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, f->offset, f->line, f->column,
                                    "unclosed '%c' (expected '%c' before the end)",
                                    f->kind == DL_EDN_LIST     ? '('
                                    : f->kind == DL_EDN_VECTOR ? '['
                                                               : '{',
                                    close);
        if (c == close) {
            advance(r);
            break;
        }
        if (c == ')' || c == ']' || c == '}')
            return FAIL(r, DL_EPARSE, "unexpected '%c' (expected '%c')", c, close);
        dl_edn_t *item;
        int rc = read_form(r, &item, err);
        if (rc)
            return rc;
        if (!item) /* a discarded form right before the closing delimiter */
            continue;
        if (f->n == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            dl_edn_t **items = dl__arena_alloc(r->arena, ncap * sizeof *items);
            if (!items)
                return dl_error_set(err, DL_ENOMEM, "out of memory reading EDN");
            if (f->n)
                memcpy(items, f->items, f->n * sizeof *items);
            f->items = items;
            cap = ncap;
        }
        f->items[f->n++] = item;
    }
    r->depth--;
    if (f->kind == DL_EDN_MAP && f->n % 2)
        return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, f->offset, f->line, f->column,
                                "map literal must contain an even number of forms");
    return DL_OK;
}

static int read_tagged(dl_edn_reader_t *r, dl_edn_t *f, dl_error_t *err) {
    const char *t;
    size_t n;
    read_token(r, &t, &n);
    if (!valid_name(t, n, false) || !((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z')))
        return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, f->offset, f->line, f->column,
                                "invalid tag '#%.*s'", (int)DL_MIN(n, 40), t);
    skip_ws(r);
    dl_edn_t *arg;
    int rc = read_form(r, &arg, err);
    if (rc)
        return rc;
    if (!arg)
        return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, f->offset, f->line, f->column,
                                "tag '#%.*s' without a form", (int)DL_MIN(n, 40), t);
    bool is_inst = n == 4 && memcmp(t, "inst", 4) == 0;
    bool is_uuid = n == 4 && memcmp(t, "uuid", 4) == 0;
    bool is_ref = n == 6 && memcmp(t, "dl/ref", 6) == 0;
    if (is_inst || is_uuid) {
        if (arg->kind != DL_EDN_VALUE || arg->value.type != DL_T_STRING)
            return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, arg->offset, arg->line,
                                    arg->column, "#%s needs a string", is_inst ? "inst" : "uuid");
        size_t sl;
        const char *s = dl_value_str(arg->value, &sl);
        f->kind = DL_EDN_VALUE;
        if (is_inst) {
            int64_t ms;
            rc = dl__instant_parse(s, sl, &ms);
            if (rc)
                return dl__edn_error_at(err, rc, r->text, r->len, arg->offset, arg->line,
                                        arg->column, "invalid #inst \"%.*s\" (want RFC 3339)",
                                        (int)DL_MIN(sl, 60), s);
            f->value = dl_value_instant(ms);
            return DL_OK;
        }
        uint8_t b[16];
        if (dl__uuid_parse(s, sl, b))
            return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, arg->offset, arg->line,
                                    arg->column, "invalid #uuid \"%.*s\"", (int)DL_MIN(sl, 60), s);
        return dl_value_uuid(b, &f->value, err);
    }
    if (is_ref) {
        if (arg->kind != DL_EDN_VALUE || arg->value.type != DL_T_INT)
            return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, arg->offset, arg->line,
                                    arg->column, "#dl/ref needs an integer entity id");
        f->kind = DL_EDN_VALUE;
        f->value = dl_value_ref(arg->value.as.i);
        return DL_OK;
    }
    int rc2 = dl__sym_intern(t, n, &f->sym);
    if (rc2)
        return dl_error_set(err, rc2, "out of memory reading EDN");
    f->kind = DL_EDN_TAGGED;
    f->items = dl__arena_alloc(r->arena, sizeof *f->items);
    if (!f->items)
        return dl_error_set(err, DL_ENOMEM, "out of memory reading EDN");
    f->items[0] = arg;
    f->n = 1;
    return DL_OK;
}

/* Reads one form; *out is NULL when the form was discarded (#_) or input ended. */
static int read_form(dl_edn_reader_t *r, dl_edn_t **out, dl_error_t *err) {
    *out = NULL;
    skip_ws(r);
    int c = peek(r);
    if (c == -1)
        return DL_OK;
    int line = r->line, col = r->column;
    size_t off = r->pos;
    dl_edn_t *f = new_form(r, DL_EDN_VALUE, line, col, off);
    if (!f)
        return dl_error_set(err, DL_ENOMEM, "out of memory reading EDN");
    int rc = DL_OK;
    switch (c) {
        case '(':
        case '[':
        case '{':
            f->kind = c == '(' ? DL_EDN_LIST : c == '[' ? DL_EDN_VECTOR : DL_EDN_MAP;
            advance(r);
            rc = read_seq(r, f, c == '(' ? ')' : c == '[' ? ']' : '}', err);
            break;
        case ')':
        case ']':
        case '}':
            return FAIL(r, DL_EPARSE, "unexpected '%c'", c);
        case '"':
            rc = read_string(r, f, err);
            break;
        case '\\':
            f->kind = DL_EDN_CHAR;
            rc = read_char(r, f, err);
            break;
        case '#': {
            int c1 = peek_at(r, 1);
            if (c1 == '{') {
                advance(r);
                advance(r);
                f->kind = DL_EDN_SET;
                rc = read_seq(r, f, '}', err);
            } else if (c1 == '_') {
                advance(r);
                advance(r);
                dl_edn_t *discard;
                rc = read_form(r, &discard, err);
                if (rc)
                    return rc;
                if (!discard)
                    return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, (int64_t)off, line,
                                            col, "#_ without a form to discard");
                return DL_OK; /* *out stays NULL: callers skip discarded forms */
            } else if (c1 == '#') {
                advance(r);
                advance(r);
                const char *t;
                size_t n;
                read_token(r, &t, &n);
                if (n == 3 && memcmp(t, "NaN", 3) == 0)
                    f->value = dl_value_double(NAN);
                else if (n == 3 && memcmp(t, "Inf", 3) == 0)
                    f->value = dl_value_double(INFINITY);
                else if (n == 4 && memcmp(t, "-Inf", 4) == 0)
                    f->value = dl_value_double(-INFINITY);
                else
                    return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, (int64_t)off, line,
                                            col, "unknown symbolic value '##%.*s'",
                                            (int)DL_MIN(n, 40), t);
            } else if ((c1 >= 'a' && c1 <= 'z') || (c1 >= 'A' && c1 <= 'Z')) {
                advance(r);
                rc = read_tagged(r, f, err);
            } else {
                return FAIL(r, DL_EPARSE, "invalid dispatch '#%c'", c1 == -1 ? ' ' : c1);
            }
            break;
        }
        default: {
            int c1 = peek_at(r, 1);
            if ((c >= '0' && c <= '9') || ((c == '+' || c == '-') && c1 >= '0' && c1 <= '9')) {
                rc = read_number(r, f, err);
                break;
            }
            const char *t;
            size_t n;
            bool kw = c == ':';
            if (kw)
                advance(r);
            read_token(r, &t, &n);
            if (!valid_name(t, n, kw))
                return dl__edn_error_at(err, DL_EPARSE, r->text, r->len, (int64_t)off, line, col,
                                        "invalid %s '%s%.*s'", kw ? "keyword" : "symbol",
                                        kw ? ":" : "", (int)DL_MIN(n, 60), t);
            if (!dl__utf8_valid(t, n))
                return dl__edn_error_at(err, DL_EUTF8, r->text, r->len, (int64_t)off, line, col,
                                        "invalid UTF-8 in %s", kw ? "keyword" : "symbol");
            if (kw) {
                rc = dl_value_text(DL_T_KEYWORD, t, n, &f->value, err);
            } else if (n == 3 && memcmp(t, "nil", 3) == 0) {
                f->value = dl_value_nil();
            } else if (n == 4 && memcmp(t, "true", 4) == 0) {
                f->value = dl_value_bool(true);
            } else if (n == 5 && memcmp(t, "false", 5) == 0) {
                f->value = dl_value_bool(false);
            } else {
                f->kind = DL_EDN_SYMBOL;
                rc = dl__sym_intern(t, n, &f->sym);
                if (rc)
                    rc = dl_error_set(err, rc, "out of memory reading EDN");
            }
        }
    }
    if (rc)
        return rc;
    *out = f;
    return DL_OK;
}

int dl__edn_read(dl_edn_reader_t *r, dl_edn_t **out, dl_error_t *err) {
    for (;;) {
        skip_ws(r);
        if (peek(r) == -1) {
            *out = NULL;
            return DL_OK;
        }
        int rc = read_form(r, out, err);
        if (rc || *out)
            return rc;
        /* a top-level #_ discard: keep reading */
    }
}

int dl__edn_read_one(const char *text, size_t len, dl_arena_t *arena, dl_edn_t **out,
                     dl_error_t *err) {
    dl_edn_reader_t r;
    dl__edn_reader_init(&r, text, len, arena);
    int rc = dl__edn_read(&r, out, err);
    if (rc)
        return rc;
    if (!*out)
        return dl__edn_error_at(err, DL_EPARSE, text, len, (int64_t)len, r.line, r.column,
                                "expected a form, found the end of input");
    dl_edn_t *extra;
    size_t at = r.pos;
    int line = r.line, col = r.column;
    rc = dl__edn_read(&r, &extra, err);
    if (rc)
        return rc;
    if (extra)
        return dl__edn_error_at(err, DL_EPARSE, text, len, extra->offset, extra->line,
                                extra->column, "unexpected form after the end of the first one");
    (void)at, (void)line, (void)col;
    return DL_OK;
}

bool dl__edn_is_symbol(const dl_edn_t *f, const char *name) {
    return f && f->kind == DL_EDN_SYMBOL && strcmp(f->sym->bytes, name) == 0;
}

bool dl__edn_is_keyword(const dl_edn_t *f, const char *name) {
    return f && f->kind == DL_EDN_VALUE && f->value.type == DL_T_KEYWORD &&
           strcmp(f->value.as.s->bytes, name) == 0;
}

/* ---- printing -------------------------------------------------------------------------- */

static void print_double(double d, dl_buf_t *out) {
    if (isnan(d)) {
        dl__buf_puts(out, "##NaN");
        return;
    }
    if (isinf(d)) {
        dl__buf_puts(out, d > 0 ? "##Inf" : "##-Inf");
        return;
    }
    /* The shortest of %.15g..%.17g that reads back to the same bits. */
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, d);
        if (strtod(s, NULL) == d)
            break;
    }
    dl__buf_puts(out, s);
    if (!strpbrk(s, ".eEn"))
        dl__buf_puts(out, ".0");
}

static void print_string(const char *s, size_t n, dl_buf_t *out) {
    dl__buf_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
            case '"':
                dl__buf_puts(out, "\\\"");
                break;
            case '\\':
                dl__buf_puts(out, "\\\\");
                break;
            case '\n':
                dl__buf_puts(out, "\\n");
                break;
            case '\t':
                dl__buf_puts(out, "\\t");
                break;
            case '\r':
                dl__buf_puts(out, "\\r");
                break;
            case '\b':
                dl__buf_puts(out, "\\b");
                break;
            case '\f':
                dl__buf_puts(out, "\\f");
                break;
            default:
                if (c < 0x20)
                    dl__buf_printf(out, "\\u%04x", c);
                else
                    dl__buf_putc(out, (char)c);
        }
    }
    dl__buf_putc(out, '"');
}

void dl__edn_print_value(dl_value_t v, dl_buf_t *out) {
    switch ((dl_type_t)v.type) {
        case DL_T_NIL:
            dl__buf_puts(out, "nil");
            break;
        case DL_T_BOOL:
            dl__buf_puts(out, v.as.i ? "true" : "false");
            break;
        case DL_T_INT:
            dl__buf_printf(out, "%lld", (long long)v.as.i);
            break;
        case DL_T_DOUBLE:
            print_double(v.as.d, out);
            break;
        case DL_T_STRING:
            print_string(v.as.s->bytes, v.as.s->len, out);
            break;
        case DL_T_KEYWORD:
            dl__buf_putc(out, ':');
            dl__buf_put(out, v.as.s->bytes, v.as.s->len);
            break;
        case DL_T_REF:
            dl__buf_printf(out, "#dl/ref %lld", (long long)v.as.i);
            break;
        case DL_T_INSTANT:
            dl__buf_puts(out, "#inst \"");
            dl__instant_format(v.as.i, out);
            dl__buf_putc(out, '"');
            break;
        case DL_T_UUID:
            dl__buf_puts(out, "#uuid \"");
            dl__uuid_format((const uint8_t *)v.as.s->bytes, out);
            dl__buf_putc(out, '"');
            break;
        default:
            dl__buf_puts(out, "#dl/invalid nil");
    }
}

void dl__edn_print(const dl_edn_t *f, dl_buf_t *out) {
    const char *open = "", *close = "";
    switch (f->kind) {
        case DL_EDN_VALUE:
            dl__edn_print_value(f->value, out);
            return;
        case DL_EDN_SYMBOL:
            dl__buf_put(out, f->sym->bytes, f->sym->len);
            return;
        case DL_EDN_CHAR: {
            uint32_t cp = (uint32_t)f->value.as.i;
            if (cp == '\n')
                dl__buf_puts(out, "\\newline");
            else if (cp == ' ')
                dl__buf_puts(out, "\\space");
            else if (cp == '\t')
                dl__buf_puts(out, "\\tab");
            else if (cp == '\r')
                dl__buf_puts(out, "\\return");
            else if (cp == '\f')
                dl__buf_puts(out, "\\formfeed");
            else if (cp == '\b')
                dl__buf_puts(out, "\\backspace");
            else if (cp < 0x20)
                dl__buf_printf(out, "\\u%04x", cp);
            else {
                char enc[4];
                int k = dl__utf8_encode(cp, enc);
                dl__buf_putc(out, '\\');
                dl__buf_put(out, enc, (size_t)k);
            }
            return;
        }
        case DL_EDN_TAGGED:
            dl__buf_putc(out, '#');
            dl__buf_put(out, f->sym->bytes, f->sym->len);
            dl__buf_putc(out, ' ');
            dl__edn_print(f->items[0], out);
            return;
        case DL_EDN_LIST:
            open = "(", close = ")";
            break;
        case DL_EDN_VECTOR:
            open = "[", close = "]";
            break;
        case DL_EDN_MAP:
            open = "{", close = "}";
            break;
        case DL_EDN_SET:
            open = "#{", close = "}";
            break;
    }
    dl__buf_puts(out, open);
    for (size_t i = 0; i < f->n; i++) {
        if (i)
            dl__buf_putc(out, ' ');
        dl__edn_print(f->items[i], out);
    }
    dl__buf_puts(out, close);
}
