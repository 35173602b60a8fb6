/*
 * format.c: how the command line prints replies: for people, aligned tables with values
 * shown as EDN; for programs, the reply as one JSON line (the wire bytes) or as EDN.
 * Does not: decide what a command shows (main.c picks the columns), or talk to stores.
 * Values arrive in the wire encoding of docs/values.md and are converted back with
 * dl__json_to_value, so a keyword prints as :ns/name and an instant as #inst "...".
 */
#include "runtime/runtime.h"

#include <string.h>

/* True when j is the one-key object form of a non-JSON value (values.md). */
static bool tagged_value(const json_t *j, dl_value_t *out) {
    if (!json_is_object(j) || json_object_size(j) != 1)
        return false;
    const char *k = json_object_iter_key(json_object_iter((json_t *)j));
    if (strcmp(k, "kw") && strcmp(k, "ref") && strcmp(k, "inst") && strcmp(k, "uuid") &&
        strcmp(k, "double"))
        return false;
    return dl__json_to_value(j, out, NULL) == DL_OK;
}

void dl__format_edn(const json_t *j, dl_buf_t *out) {
    dl_value_t v;
    switch (json_typeof(j)) {
        case JSON_ARRAY: {
            dl__buf_putc(out, '[');
            for (size_t i = 0; i < json_array_size(j); i++) {
                if (i)
                    dl__buf_putc(out, ' ');
                dl__format_edn(json_array_get(j, i), out);
            }
            dl__buf_putc(out, ']');
            return;
        }
        case JSON_OBJECT: {
            if (tagged_value(j, &v)) {
                if (v.type == DL_T_REF) /* refs print as their entity id */
                    dl__buf_printf(out, "%lld", (long long)v.as.i);
                else
                    dl__edn_print_value(v, out);
                return;
            }
            dl__buf_putc(out, '{');
            const char *k;
            json_t *val;
            bool first = true;
            json_object_foreach((json_t *)j, k, val) {
                if (!first)
                    dl__buf_puts(out, ", ");
                first = false;
                dl__buf_printf(out, ":%s ", k);
                dl__format_edn(val, out);
            }
            dl__buf_putc(out, '}');
            return;
        }
        default:
            if (dl__json_to_value(j, &v, NULL) == DL_OK)
                dl__edn_print_value(v, out);
            else
                dl__buf_puts(out, "?");
            return;
    }
}

/* EDN form of a query result -> JSON in the wire encoding (values.md): vectors, lists and
 * sets become arrays, maps (from :keys/:strs/:syms) objects keyed by the bare name. */
json_t *dl__format_edn_to_json(const dl_edn_t *f) {
    switch (f->kind) {
        case DL_EDN_VALUE:
            return dl__json_from_value(f->value);
        case DL_EDN_VECTOR:
        case DL_EDN_LIST:
        case DL_EDN_SET: {
            json_t *a = json_array();
            for (size_t i = 0; i < f->n; i++)
                json_array_append_new(a, dl__format_edn_to_json(f->items[i]));
            return a;
        }
        case DL_EDN_MAP: {
            json_t *o = json_object();
            for (size_t i = 0; i + 1 < f->n; i += 2) {
                const dl_edn_t *k = f->items[i];
                dl_buf_t b;
                dl__buf_init(&b);
                if (k->kind == DL_EDN_SYMBOL)
                    dl__buf_put(&b, k->sym->bytes, k->sym->len);
                else if (k->kind == DL_EDN_VALUE &&
                         (k->value.type == DL_T_KEYWORD || k->value.type == DL_T_STRING))
                    dl__buf_put(&b, k->value.as.s->bytes, k->value.as.s->len);
                else
                    dl__edn_print(k, &b);
                if (!b.oom && b.data)
                    json_object_set_new(o, b.data, dl__format_edn_to_json(f->items[i + 1]));
                dl__buf_fini(&b);
            }
            return o;
        }
        case DL_EDN_SYMBOL:
            return json_stringn(f->sym->bytes, f->sym->len);
        default: {
            dl_buf_t b;
            dl__buf_init(&b);
            dl__edn_print(f, &b);
            json_t *s = b.oom ? NULL : json_stringn(b.data ? b.data : "", b.len);
            dl__buf_fini(&b);
            return s;
        }
    }
}

/* Display width of UTF-8 text: code points (good enough for aligned columns). */
static size_t width(const char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            w++;
    return w;
}

/* The text of one cell: strings bare, everything else as EDN. new (dl_free). */
static char *cell_text(const json_t *j) {
    if (json_is_string(j))
        return dl_strndup(json_string_value(j), json_string_length(j));
    dl_buf_t b;
    dl__buf_init(&b);
    dl__format_edn(j, &b);
    return dl__buf_take(&b);
}

void dl__format_table(FILE *out, const char *const *header, size_t n_cols, const json_t *rows) {
    size_t n_rows = json_array_size(rows);
    char **cells = dl_calloc((n_rows + 1) * n_cols + 1, sizeof *cells);
    size_t *w = dl_calloc(n_cols + 1, sizeof *w);
    if (!cells || !w) {
        dl_free(cells);
        dl_free(w);
        fputs("deltalog: out of memory\n", stderr);
        return;
    }
    for (size_t c = 0; c < n_cols; c++) {
        cells[c] = dl_strdup(header[c]);
        w[c] = width(header[c], strlen(header[c]));
    }
    for (size_t r = 0; r < n_rows; r++) {
        const json_t *row = json_array_get(rows, r);
        for (size_t c = 0; c < n_cols; c++) {
            const json_t *v = json_is_array(row) ? json_array_get(row, c) : (c ? NULL : row);
            char *t = v ? cell_text(v) : dl_strdup("");
            cells[(r + 1) * n_cols + c] = t;
            if (t && width(t, strlen(t)) > w[c])
                w[c] = width(t, strlen(t));
        }
    }
    for (size_t r = 0; r <= n_rows; r++) {
        for (size_t c = 0; c < n_cols; c++) {
            const char *t = cells[r * n_cols + c] ? cells[r * n_cols + c] : "?";
            fputs(t, out);
            if (c + 1 < n_cols)
                for (size_t k = width(t, strlen(t)); k < w[c] + 2; k++)
                    fputc(' ', out);
        }
        fputc('\n', out);
        if (r == 0) {
            for (size_t c = 0; c < n_cols; c++) {
                for (size_t k = 0; k < w[c]; k++)
                    fputc('-', out);
                if (c + 1 < n_cols)
                    fputs("  ", out);
            }
            fputc('\n', out);
        }
    }
    for (size_t i = 0; i < (n_rows + 1) * n_cols; i++)
        dl_free(cells[i]);
    dl_free(cells);
    dl_free(w);
}

/* Objects for people: a two-column key/value table, nested objects flattened a.b. */
static void flatten(const json_t *j, const char *prefix, json_t *rows) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", k);
        dl_value_t tv;
        if (json_is_object(v) && !tagged_value(v, &tv)) {
            flatten(v, key, rows);
            continue;
        }
        json_t *row = json_array();
        json_array_append_new(row, json_string(key));
        json_array_append(row, v);
        json_array_append_new(rows, row);
    }
}

void dl__format_reply(FILE *out, dl_format_t fmt, const json_t *reply) {
    if (fmt == DL_FMT_JSON) {
        size_t len = 0;
        char *line = dl__proto_dump_line(reply, &len);
        if (line)
            fwrite(line, 1, len, out);
        dl_free(line);
        return;
    }
    if (fmt == DL_FMT_EDN) {
        dl_buf_t b;
        dl__buf_init(&b);
        dl__format_edn(reply, &b);
        dl__buf_putc(&b, '\n');
        if (!b.oom)
            fwrite(b.data, 1, b.len, out);
        dl__buf_fini(&b);
        return;
    }
    json_t *rows = json_array();
    if (json_is_object(reply))
        flatten(reply, "", rows);
    static const char *const hdr[] = {"field", "value"};
    dl__format_table(out, hdr, 2, rows);
    json_decref(rows);
}

/* ---- query columns and subscription messages --------------------------------------------- */

json_t *dl__format_find_columns(const char *q_text, size_t n_cols) {
    json_t *cols = json_array();
    if (!cols)
        return NULL;
    dl_arena_t ar;
    dl__arena_init(&ar, 1 << 12);
    dl_edn_t *q = NULL;
    if (q_text && dl__edn_read_one(q_text, strlen(q_text), &ar, &q, NULL) == DL_OK && q &&
        (q->kind == DL_EDN_VECTOR || q->kind == DL_EDN_MAP)) {
        dl_edn_t **items = q->items;
        size_t n = q->n, start = 0;
        if (q->kind == DL_EDN_MAP) { /* {:find [...] ...} */
            n = 0;
            for (size_t i = 0; i + 1 < q->n; i += 2)
                if (dl__edn_is_keyword(q->items[i], "find") &&
                    q->items[i + 1]->kind == DL_EDN_VECTOR) {
                    items = q->items[i + 1]->items;
                    n = q->items[i + 1]->n;
                }
        } else {
            while (start < n && !dl__edn_is_keyword(items[start], "find"))
                start++;
            start++;
        }
        for (size_t i = start; i < n; i++) {
            const dl_edn_t *e = items[i];
            if (e->kind == DL_EDN_VALUE && e->value.type == DL_T_KEYWORD)
                break; /* :in, :where, :keys, ... */
            if (dl__edn_is_symbol(e, "."))
                continue;
            size_t n_sub = e->kind == DL_EDN_VECTOR ? e->n : 1; /* [?a ...] or [?a ?b] */
            for (size_t k = 0; k < n_sub; k++) {
                const dl_edn_t *x = e->kind == DL_EDN_VECTOR ? e->items[k] : e;
                if (dl__edn_is_symbol(x, "..."))
                    continue;
                dl_buf_t b;
                dl__buf_init(&b);
                dl__edn_print(x, &b);
                json_array_append_new(cols, json_stringn(b.data ? b.data : "?", b.len));
                dl__buf_fini(&b);
            }
        }
    }
    dl__arena_fini(&ar);
    if (n_cols && json_array_size(cols) != n_cols) {
        json_array_clear(cols);
        for (size_t i = 0; i < n_cols; i++) {
            char name[32];
            snprintf(name, sizeof name, "%%%zu", i + 1);
            json_array_append_new(cols, json_string(name));
        }
    }
    return cols;
}

char *dl__format_sub_end(uint64_t sub, int code, const char *message, size_t *out_len) {
    json_t *m = json_object();
    if (!m)
        return NULL;
    json_object_set_new(m, "sub", json_integer((json_int_t)sub));
    json_object_set_new(m, "end", json_true());
    if (code != 0) {
        json_t *e = json_object();
        json_object_set_new(e, "code", json_string(dl__proto_code_name(code)));
        json_object_set_new(e, "message", json_string(message ? message : dl_strerror(code)));
        json_object_set_new(m, "error", e);
    }
    char *line = dl__proto_dump_line(m, out_len);
    json_decref(m);
    return line;
}

#if DL_HAVE_SUBS
#include <deltalog/subscribe.h>

char *dl__format_sub_message(uint64_t sub, const void *delta, const char *end_message,
                             size_t *out_len) {
    const dl_delta_t *d = delta;
    if (dl_delta_kind(d) == DL_DELTA_END) {
        int code = dl_delta_code(d);
        const char *msg = end_message;
        if (!msg) {
            switch (code) {
                case DL_ELAGGED:
                    msg = "the client did not read fast enough for policy drop: its queue "
                          "overflowed";
                    break;
                case DL_ETIMEOUT:
                    msg = "the client did not read within the block timeout";
                    break;
                default:
                    msg = NULL;
            }
        }
        return dl__format_sub_end(sub, code, msg, out_len);
    }
    if (dl_delta_kind(d) == DL_DELTA_FRONTIER) {
        /* {"sub":N,"frontier":[5,null]}: no further data at times <= this point, null
         * standing for "any value" of that coordinate (docs/protocol.md). */
        size_t n_dims = 0;
        const uint64_t *t = dl_delta_time(d, &n_dims);
        json_t *m = json_object(), *f = json_array();
        if (!m || !f) {
            json_decref(m);
            json_decref(f);
            return NULL;
        }
        for (size_t i = 0; i < n_dims; i++)
            json_array_append_new(f, t[i] == UINT64_MAX ? json_null()
                                                        : json_integer((json_int_t)t[i]));
        if (sub != UINT64_MAX)
            json_object_set_new(m, "sub", json_integer((json_int_t)sub));
        json_object_set_new(m, "frontier", f);
        char *line = dl__proto_dump_line(m, out_len);
        json_decref(m);
        return line;
    }
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return NULL;
    json_t *m = json_object();
    json_t *time = json_array();
    json_t *diff = json_array();
    if (!m || !time || !diff) {
        json_decref(m);
        json_decref(time);
        json_decref(diff);
        return NULL;
    }
    size_t n_dims = 0;
    const uint64_t *t = dl_delta_time(d, &n_dims);
    for (size_t i = 0; i < n_dims; i++)
        json_array_append_new(time, json_integer((json_int_t)t[i]));
    size_t arity = dl_delta_arity(d);
    for (size_t i = 0; i < dl_delta_len(d); i++) {
        const dl_value_t *row = dl_delta_row(d, i);
        json_t *r = json_array();
        for (size_t k = 0; k < arity; k++)
            json_array_append_new(r, dl__json_from_value(row[k]));
        json_array_append_new(diff, json_pack("[oI]", r, (json_int_t)dl_delta_diff(d, i)));
    }
    if (sub != UINT64_MAX)
        json_object_set_new(m, "sub", json_integer((json_int_t)sub));
    json_object_set_new(m, "t", json_integer((json_int_t)(n_dims ? t[0] : 0)));
    json_object_set_new(m, "time", time);
    json_object_set_new(m, "diff", diff);
    if (dl_delta_is_snapshot(d))
        json_object_set_new(m, "snapshot", json_true());
    char *line = dl__proto_dump_line(m, out_len);
    json_decref(m);
    return line;
}

char *dl__format_sub_body(const void *delta, size_t *out_len) {
    if (dl_delta_kind(delta) != DL_DELTA_DATA)
        return NULL;
    return dl__format_sub_message(UINT64_MAX, delta, NULL, out_len);
}
#else
char *dl__format_sub_body(const void *delta, size_t *out_len) {
    (void)delta;
    (void)out_len;
    return NULL;
}
char *dl__format_sub_message(uint64_t sub, const void *delta, const char *end_message,
                             size_t *out_len) {
    (void)sub;
    (void)delta;
    (void)end_message;
    (void)out_len;
    return NULL;
}
#endif
