/*
 * builtin.c: the builtin predicates and functions of :where expression clauses, applied
 * to values. Names and behaviour follow Datomic's query reference (Clojure semantics);
 * the deviations are listed in docs/datalog.md "Builtins": no ratios (/ of two longs that
 * do not divide is a double), string lengths and indices count code points, compare
 * returns -1/0/1, no tuple values (tuple, untuple are DL_EUNSUPPORTED).
 *
 * Type errors follow Datomic, where a builtin applied to the wrong type throws and the
 * whole query fails: DL_ETYPE naming the function and the values. Database functions
 * (get-else, get-some, missing?) and ground are evaluated by eval.c; this file only names
 * them.
 */
#include "datalog/datalog.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum {
    B_EQ,
    B_NUMEQ,
    B_NE,
    B_NE2,
    B_LT,
    B_GT,
    B_LE,
    B_GE,
    B_ZERO,
    B_POS,
    B_NEG,
    B_EVEN,
    B_ODD,
    B_NILP,
    B_SOMEP,
    B_TRUEP,
    B_FALSEP,
    B_STARTS,
    B_ENDS,
    B_INCLUDES,
    B_BLANK,
    B_ADD,
    B_SUB,
    B_MUL,
    B_DIV,
    B_QUOT,
    B_REM,
    B_MOD,
    B_INC,
    B_DEC,
    B_MAX,
    B_MIN,
    B_STR,
    B_SUBS,
    B_COUNT,
    B_IDENTITY,
    B_COMPARE,
    B_KEYWORD,
    B_NAME,
    B_NAMESPACE,
    B_UPPER,
    B_LOWER,
    B_GROUND,
    B_GET_ELSE,
    B_GET_SOME,
    B_MISSING,
    B_TUPLE,
    B_UNTUPLE,
    B__COUNT
};

#define PF (DL__BI_PRED | DL__BI_FN)
static const dl__builtin_t table[B__COUNT] = {
    [B_EQ] = {"=", PF, 1, -1},
    [B_NUMEQ] = {"==", PF, 1, -1},
    [B_NE] = {"not=", PF, 1, -1},
    [B_NE2] = {"!=", PF, 1, -1},
    [B_LT] = {"<", PF, 1, -1},
    [B_GT] = {">", PF, 1, -1},
    [B_LE] = {"<=", PF, 1, -1},
    [B_GE] = {">=", PF, 1, -1},
    [B_ZERO] = {"zero?", PF, 1, 1},
    [B_POS] = {"pos?", PF, 1, 1},
    [B_NEG] = {"neg?", PF, 1, 1},
    [B_EVEN] = {"even?", PF, 1, 1},
    [B_ODD] = {"odd?", PF, 1, 1},
    [B_NILP] = {"nil?", PF, 1, 1},
    [B_SOMEP] = {"some?", PF, 1, 1},
    [B_TRUEP] = {"true?", PF, 1, 1},
    [B_FALSEP] = {"false?", PF, 1, 1},
    [B_STARTS] = {"clojure.string/starts-with?", PF, 2, 2},
    [B_ENDS] = {"clojure.string/ends-with?", PF, 2, 2},
    [B_INCLUDES] = {"clojure.string/includes?", PF, 2, 2},
    [B_BLANK] = {"clojure.string/blank?", PF, 1, 1},
    [B_ADD] = {"+", PF, 0, -1},
    [B_SUB] = {"-", PF, 1, -1},
    [B_MUL] = {"*", PF, 0, -1},
    [B_DIV] = {"/", PF, 1, -1},
    [B_QUOT] = {"quot", PF, 2, 2},
    [B_REM] = {"rem", PF, 2, 2},
    [B_MOD] = {"mod", PF, 2, 2},
    [B_INC] = {"inc", PF, 1, 1},
    [B_DEC] = {"dec", PF, 1, 1},
    [B_MAX] = {"max", PF, 1, -1},
    [B_MIN] = {"min", PF, 1, -1},
    [B_STR] = {"str", PF, 0, -1},
    [B_SUBS] = {"subs", PF, 2, 3},
    [B_COUNT] = {"count", PF, 1, 1},
    [B_IDENTITY] = {"identity", PF, 1, 1},
    [B_COMPARE] = {"compare", PF, 2, 2},
    [B_KEYWORD] = {"keyword", PF, 1, 2},
    [B_NAME] = {"name", PF, 1, 1},
    [B_NAMESPACE] = {"namespace", PF, 1, 1},
    [B_UPPER] = {"clojure.string/upper-case", PF, 1, 1},
    [B_LOWER] = {"clojure.string/lower-case", PF, 1, 1},
    [B_GROUND] = {"ground", DL__BI_FN | DL__BI_GROUND, 1, 1},
    [B_GET_ELSE] = {"get-else", DL__BI_FN | DL__BI_DB, 4, 4},
    [B_GET_SOME] = {"get-some", DL__BI_FN | DL__BI_DB, 3, -1},
    [B_MISSING] = {"missing?", DL__BI_PRED | DL__BI_DB, 3, 3},
    [B_TUPLE] = {"tuple", DL__BI_FN | DL__BI_UNSUPPORTED, 1, -1},
    [B_UNTUPLE] = {"untuple", DL__BI_FN | DL__BI_UNSUPPORTED, 1, 1},
};

int dl__builtin_find(const char *name, size_t len) {
    /* clojure.string/x is also accepted as str/x and as plain x for the string functions
     * Datomic users commonly alias. */
    char buf[64];
    for (int pass = 0; pass < 2; pass++) {
        const char *n = name;
        size_t l = len;
        if (pass == 1) {
            if (len > 4 && memcmp(name, "str/", 4) == 0) {
                n = name + 4;
                l = len - 4;
            }
            if (l + 15 >= sizeof buf)
                return -1;
            memcpy(buf, "clojure.string/", 15);
            memcpy(buf + 15, n, l);
            n = buf;
            l += 15;
        }
        for (int i = 0; i < B__COUNT; i++)
            if (strlen(table[i].name) == l && memcmp(table[i].name, n, l) == 0)
                return i;
        if (!(len > 4 && memcmp(name, "str/", 4) == 0))
            break;
    }
    return -1;
}

const dl__builtin_t *dl__builtin_get(int id) { return &table[id]; }

int dl__builtin_id_get_else(void) { return B_GET_ELSE; }
int dl__builtin_id_get_some(void) { return B_GET_SOME; }
int dl__builtin_id_missing(void) { return B_MISSING; }
int dl__builtin_id_ground(void) { return B_GROUND; }

static bool is_num(dl_value_t v) { return v.type == DL_T_INT || v.type == DL_T_DOUBLE; }
static double num_d(dl_value_t v) { return v.type == DL_T_INT ? (double)v.as.i : v.as.d; }

int dl__builtin_compare(dl_value_t a, dl_value_t b) {
    if (is_num(a) && is_num(b) && a.type != b.type) {
        double x = num_d(a), y = num_d(b);
        if (isnan(x) || isnan(y))
            return isnan(x) ? (isnan(y) ? 0 : 1) : -1;
        return x < y ? -1 : x > y ? 1 : 0;
    }
    int c = dl_value_cmp(a, b);
    return c < 0 ? -1 : c > 0 ? 1 : 0;
}

static int type_error(dl_error_t *err, int id, const dl_value_t *args, size_t n) {
    char shown[200];
    size_t k = 0;
    shown[0] = 0;
    for (size_t i = 0; i < n && k < sizeof shown - 40; i++) {
        char *e = dl_value_to_edn(args[i]);
        k += (size_t)snprintf(shown + k, sizeof shown - k, "%s%.40s", i ? " " : "", e ? e : "?");
        dl_free(e);
    }
    return dl_error_set(err, DL_ETYPE, "%s cannot be applied to (%s)", table[id].name, shown);
}

static size_t utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}

/* Byte offset of code point index cp in s (n bytes); n when cp is the length. */
static size_t utf8_offset(const char *s, size_t n, size_t cp) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (c == cp)
                return i;
            c++;
        }
    }
    return n;
}

/* Clojure's str of one value. */
static void str_of(dl_value_t v, dl_buf_t *b) {
    size_t n;
    const char *s;
    switch ((dl_type_t)v.type) {
        case DL_T_NIL:
            break;
        case DL_T_STRING:
            s = dl_value_str(v, &n);
            dl__buf_put(b, s, n);
            break;
        case DL_T_KEYWORD:
            s = dl_value_str(v, &n);
            dl__buf_putc(b, ':');
            dl__buf_put(b, s, n);
            break;
        case DL_T_REF:
            dl__buf_printf(b, "%lld", (long long)v.as.i);
            break;
        case DL_T_INSTANT:
            dl__instant_format(v.as.i, b);
            break;
        case DL_T_UUID:
            dl__uuid_format(dl_value_uuid_bytes(v), b);
            break;
        default:
            dl__edn_print_value(v, b);
            break;
    }
}

static int make_text(dl_type_t t, const char *s, size_t n, dl__fnval_t *out, dl_error_t *err) {
    out->kind = 0;
    return dl_value_text(t, s, n, &out->v, err);
}

static int arith(int id, const dl_value_t *a, size_t n, dl_value_t *out, dl_error_t *err) {
    for (size_t i = 0; i < n; i++)
        if (!is_num(a[i]))
            return type_error(err, id, a, n);
    bool dbl = false;
    for (size_t i = 0; i < n; i++)
        dbl |= a[i].type == DL_T_DOUBLE;
    if (id == B_DIV) {
        if (n == 1) {
            dl_value_t one = dl_value_int(1), args2[2] = {one, a[0]};
            return arith(B_DIV, args2, 2, out, err);
        }
        if (!dbl) {
            int64_t x = a[0].as.i;
            for (size_t i = 1; i < n; i++) {
                int64_t y = a[i].as.i;
                if (y == 0)
                    return dl_error_set(err, DL_ERANGE, "/: divide by zero");
                if (x % y != 0 || (x == INT64_MIN && y == -1)) {
                    /* Not exact: continue in doubles (deltalog has no ratios). */
                    double d = (double)x;
                    for (size_t j = i; j < n; j++)
                        d /= num_d(a[j]);
                    *out = dl_value_double(d);
                    return 0;
                }
                x /= y;
            }
            *out = dl_value_int(x);
            return 0;
        }
        double d = num_d(a[0]);
        for (size_t i = 1; i < n; i++)
            d /= num_d(a[i]);
        *out = dl_value_double(d);
        return 0;
    }
    if (id == B_SUB && n == 1) {
        if (dbl) {
            *out = dl_value_double(-a[0].as.d);
            return 0;
        }
        if (a[0].as.i == INT64_MIN)
            return dl_error_set(err, DL_ERANGE, "-: integer overflow");
        *out = dl_value_int(-a[0].as.i);
        return 0;
    }
    if (dbl) {
        double d = n ? num_d(a[0]) : (id == B_MUL ? 1.0 : 0.0);
        for (size_t i = 1; i < n; i++)
            d = id == B_ADD ? d + num_d(a[i]) : id == B_SUB ? d - num_d(a[i]) : d * num_d(a[i]);
        *out = dl_value_double(d);
        return 0;
    }
    int64_t x = n ? a[0].as.i : (id == B_MUL ? 1 : 0);
    for (size_t i = 1; i < n; i++) {
        bool ovf = id == B_ADD   ? __builtin_add_overflow(x, a[i].as.i, &x)
                   : id == B_SUB ? __builtin_sub_overflow(x, a[i].as.i, &x)
                                 : __builtin_mul_overflow(x, a[i].as.i, &x);
        if (ovf)
            return dl_error_set(err, DL_ERANGE, "%s: integer overflow", table[id].name);
    }
    *out = dl_value_int(x);
    return 0;
}

static bool truthy(dl_value_t v) {
    return !(v.type == DL_T_NIL || (v.type == DL_T_BOOL && v.as.i == 0));
}

int dl__builtin_call(int id, const dl_value_t *a, size_t n, bool *out_ok, dl__fnval_t *out,
                     dl_error_t *err) {
    dl__fnval_t tmp;
    if (!out)
        out = &tmp;
    memset(out, 0, sizeof *out);
    bool ok = false;
    bool pred = true; /* the result is the boolean `ok` */
    int rc = 0;
    switch (id) {
        case B_EQ:
        case B_NE:
        case B_NE2: {
            bool all = true;
            for (size_t i = 1; i < n; i++)
                all &= dl_value_eq(a[0], a[i]);
            ok = id == B_EQ ? all : !all;
            break;
        }
        case B_NUMEQ:
            for (size_t i = 0; i < n; i++)
                if (!is_num(a[i]))
                    return type_error(err, id, a, n);
            ok = true;
            for (size_t i = 1; i < n; i++)
                ok &= num_d(a[i - 1]) == num_d(a[i]);
            break;
        case B_LT:
        case B_GT:
        case B_LE:
        case B_GE:
            ok = true;
            for (size_t i = 1; i < n && ok; i++) {
                int c = dl__builtin_compare(a[i - 1], a[i]);
                ok = id == B_LT ? c < 0 : id == B_GT ? c > 0 : id == B_LE ? c <= 0 : c >= 0;
            }
            break;
        case B_ZERO:
        case B_POS:
        case B_NEG:
            if (!is_num(a[0]))
                return type_error(err, id, a, n);
            ok = id == B_ZERO ? num_d(a[0]) == 0 : id == B_POS ? num_d(a[0]) > 0 : num_d(a[0]) < 0;
            break;
        case B_EVEN:
        case B_ODD:
            if (a[0].type != DL_T_INT)
                return type_error(err, id, a, n);
            ok = (a[0].as.i % 2 == 0) == (id == B_EVEN);
            break;
        case B_NILP:
            ok = a[0].type == DL_T_NIL;
            break;
        case B_SOMEP:
            ok = a[0].type != DL_T_NIL;
            break;
        case B_TRUEP:
        case B_FALSEP:
            ok = a[0].type == DL_T_BOOL && a[0].as.i == (id == B_TRUEP);
            break;
        case B_STARTS:
        case B_ENDS:
        case B_INCLUDES: {
            if (a[0].type != DL_T_STRING || a[1].type != DL_T_STRING)
                return type_error(err, id, a, n);
            size_t ls, lt;
            const char *s = dl_value_str(a[0], &ls), *t = dl_value_str(a[1], &lt);
            if (id == B_STARTS)
                ok = lt <= ls && memcmp(s, t, lt) == 0;
            else if (id == B_ENDS)
                ok = lt <= ls && memcmp(s + ls - lt, t, lt) == 0;
            else
                ok = lt == 0 || memmem(s, ls, t, lt) != NULL;
            break;
        }
        case B_BLANK: {
            if (a[0].type == DL_T_NIL) {
                ok = true;
                break;
            }
            if (a[0].type != DL_T_STRING)
                return type_error(err, id, a, n);
            size_t ls;
            const char *s = dl_value_str(a[0], &ls);
            ok = true;
            for (size_t i = 0; i < ls; i++)
                if (!strchr(" \t\n\r\f\v", s[i]))
                    ok = false;
            break;
        }
        default:
            pred = false;
            break;
    }
    if (pred) {
        if (out_ok)
            *out_ok = ok;
        out->v = dl_value_bool(ok);
        return 0;
    }
    dl_value_t r = dl_value_nil();
    switch (id) {
        case B_ADD:
        case B_SUB:
        case B_MUL:
        case B_DIV:
            rc = arith(id, a, n, &r, err);
            break;
        case B_INC:
        case B_DEC: {
            dl_value_t args2[2] = {a[0], dl_value_int(1)};
            rc = arith(id == B_INC ? B_ADD : B_SUB, args2, 2, &r, err);
            if (rc == DL_ETYPE || rc == DL_ERANGE) {
                dl_error_clear(err);
                rc = a[0].type == DL_T_INT || a[0].type == DL_T_DOUBLE
                         ? dl_error_set(err, DL_ERANGE, "%s: integer overflow", table[id].name)
                         : type_error(err, id, a, n);
            }
            break;
        }
        case B_QUOT:
        case B_REM:
        case B_MOD:
            if (!is_num(a[0]) || !is_num(a[1]))
                return type_error(err, id, a, n);
            if (a[0].type == DL_T_INT && a[1].type == DL_T_INT) {
                int64_t x = a[0].as.i, y = a[1].as.i;
                if (y == 0)
                    return dl_error_set(err, DL_ERANGE, "%s: divide by zero", table[id].name);
                if (x == INT64_MIN && y == -1) {
                    if (id == B_QUOT)
                        return dl_error_set(err, DL_ERANGE, "quot: integer overflow");
                    r = dl_value_int(0);
                    break;
                }
                int64_t m = x % y;
                if (id == B_QUOT)
                    r = dl_value_int(x / y);
                else if (id == B_REM)
                    r = dl_value_int(m);
                else
                    r = dl_value_int(m != 0 && ((m < 0) != (y < 0)) ? m + y : m);
            } else {
                double x = num_d(a[0]), y = num_d(a[1]);
                if (y == 0)
                    return dl_error_set(err, DL_ERANGE, "%s: divide by zero", table[id].name);
                double q = trunc(x / y), m = fmod(x, y);
                if (id == B_QUOT)
                    r = dl_value_double(q);
                else if (id == B_REM)
                    r = dl_value_double(m);
                else
                    r = dl_value_double(m != 0 && ((m < 0) != (y < 0)) ? m + y : m);
            }
            break;
        case B_MAX:
        case B_MIN:
            for (size_t i = 0; i < n; i++)
                if (!is_num(a[i]))
                    return type_error(err, id, a, n);
            r = a[0];
            for (size_t i = 1; i < n; i++) {
                int c = dl__builtin_compare(a[i], r);
                if (id == B_MAX ? c > 0 : c < 0)
                    r = a[i];
            }
            break;
        case B_STR: {
            dl_buf_t b;
            dl__buf_init(&b);
            for (size_t i = 0; i < n; i++)
                str_of(a[i], &b);
            if (b.oom) {
                dl__buf_fini(&b);
                return dl_error_set(err, DL_ENOMEM, "out of memory");
            }
            rc = make_text(DL_T_STRING, b.data ? b.data : "", b.len, out, err);
            dl__buf_fini(&b);
            return rc;
        }
        case B_SUBS: {
            if (a[0].type != DL_T_STRING || a[1].type != DL_T_INT ||
                (n == 3 && a[2].type != DL_T_INT))
                return type_error(err, id, a, n);
            size_t ls;
            const char *s = dl_value_str(a[0], &ls);
            int64_t len = (int64_t)utf8_count(s, ls);
            int64_t from = a[1].as.i, to = n == 3 ? a[2].as.i : len;
            if (from < 0 || to > len || from > to)
                return dl_error_set(err, DL_ERANGE, "subs: index out of range [%lld, %lld) of %lld",
                                    (long long)from, (long long)to, (long long)len);
            size_t bf = utf8_offset(s, ls, (size_t)from), bt = utf8_offset(s, ls, (size_t)to);
            return make_text(DL_T_STRING, s + bf, bt - bf, out, err);
        }
        case B_COUNT:
            if (a[0].type == DL_T_NIL) {
                r = dl_value_int(0);
                break;
            }
            if (a[0].type != DL_T_STRING)
                return type_error(err, id, a, n);
            {
                size_t ls;
                const char *s = dl_value_str(a[0], &ls);
                r = dl_value_int((int64_t)utf8_count(s, ls));
            }
            break;
        case B_IDENTITY:
        case B_GROUND:
            r = a[0];
            break;
        case B_COMPARE:
            r = dl_value_int(dl__builtin_compare(a[0], a[1]));
            break;
        case B_KEYWORD: {
            size_t l0, l1 = 0;
            if (n == 1 && a[0].type == DL_T_KEYWORD) {
                r = a[0];
                break;
            }
            for (size_t i = 0; i < n; i++)
                if (a[i].type != DL_T_STRING)
                    return type_error(err, id, a, n);
            const char *s0 = dl_value_str(a[0], &l0);
            if (n == 1)
                return make_text(DL_T_KEYWORD, s0, l0, out, err);
            const char *s1 = dl_value_str(a[1], &l1);
            dl_buf_t b;
            dl__buf_init(&b);
            dl__buf_put(&b, s0, l0);
            dl__buf_putc(&b, '/');
            dl__buf_put(&b, s1, l1);
            rc = b.oom ? dl_error_set(err, DL_ENOMEM, "out of memory")
                       : make_text(DL_T_KEYWORD, b.data, b.len, out, err);
            dl__buf_fini(&b);
            return rc;
        }
        case B_NAME:
        case B_NAMESPACE: {
            if (a[0].type == DL_T_STRING && id == B_NAME) {
                r = a[0];
                break;
            }
            if (a[0].type != DL_T_KEYWORD)
                return type_error(err, id, a, n);
            size_t l;
            const char *s = dl_value_str(a[0], &l);
            const char *slash = l > 1 ? memchr(s, '/', l - 1) : NULL;
            if (id == B_NAME)
                return slash ? make_text(DL_T_STRING, slash + 1, l - (size_t)(slash + 1 - s), out,
                                         err)
                             : make_text(DL_T_STRING, s, l, out, err);
            if (!slash) {
                r = dl_value_nil();
                break;
            }
            return make_text(DL_T_STRING, s, (size_t)(slash - s), out, err);
        }
        case B_UPPER:
        case B_LOWER: {
            if (a[0].type != DL_T_STRING)
                return type_error(err, id, a, n);
            size_t l;
            const char *s = dl_value_str(a[0], &l);
            char *t = dl_malloc(l + 1);
            if (!t)
                return dl_error_set(err, DL_ENOMEM, "out of memory");
            for (size_t i = 0; i < l; i++) {
                char ch = s[i];
                if (id == B_UPPER && ch >= 'a' && ch <= 'z')
                    ch = (char)(ch - 32);
                if (id == B_LOWER && ch >= 'A' && ch <= 'Z')
                    ch = (char)(ch + 32);
                t[i] = ch;
            }
            rc = make_text(DL_T_STRING, t, l, out, err);
            dl_free(t);
            return rc;
        }
        default:
            return dl_error_set(err, DL_EINTERNAL, "%s is evaluated by the evaluator",
                                table[id].name);
    }
    if (rc)
        return rc;
    out->kind = 0;
    out->v = r;
    if (out_ok)
        *out_ok = truthy(r);
    return 0;
}
