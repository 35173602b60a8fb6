/*
 * query.c: the public query API of include/deltalog/datalog.h: parse + analyze into a
 * dl_query_t, one-shot reference evaluation, and results with their canonical EDN text.
 *
 * The heavy lifting is in parse.c, analyze.c and eval.c; this file owns lifetimes (the
 * query's arena, the result's cells). Not here: compilation to dataflow (not written yet,
 * see docs/datalog.md "Status").
 */
#include "datalog/datalog.h"

#include <string.h>

DL_API int dl_query_parse(const char *text, size_t len, const char *rules, size_t rules_len,
                          const struct dl_db *db, dl_query_t **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!text || !out)
        return dl_error_set(err, DL_EINVAL, "dl_query_parse: NULL argument");
    dl_query_t *q = dl_calloc(1, sizeof *q);
    if (!q)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    dl__arena_init(&q->arena, 8192);
    int rc = 0;
    q->text = dl__arena_strndup(&q->arena, text, len);
    q->text_len = len;
    if (rules) {
        q->rules_text = dl__arena_strndup(&q->arena, rules, rules_len);
        q->rules_len = rules_len;
    }
    if (!q->text || (rules && !q->rules_text))
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    if (!rc)
        rc = dl__parse_query(q, err);
    if (!rc)
        rc = dl__analyze(q, db, err);
    if (rc) {
        dl_query_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

DL_API void dl_query_free(dl_query_t *q) {
    if (!q)
        return;
    dl__arena_fini(&q->arena);
    dl_free(q);
}

DL_API dl_find_kind_t dl_query_find_kind(const dl_query_t *q) { return q->find_kind; }

DL_API size_t dl_query_n_args(const dl_query_t *q) {
    size_t n = 0;
    for (size_t i = 0; i < q->n_in; i++)
        n += q->in[i].kind == DL__IN_BIND;
    return n;
}

DL_API int dl_query_eval_naive(const dl_query_t *q, const dl_query_source_t *sources,
                               size_t n_sources, const char *args, size_t args_len,
                               dl_query_result_t **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!q || !out || (n_sources && !sources))
        return dl_error_set(err, DL_EINVAL, "dl_query_eval_naive: NULL argument");
    dl_query_result_t *r = dl_calloc(1, sizeof *r);
    if (!r)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    r->kind = q->find_kind;
    r->keys_kind = q->keys_kind;
    int rc = dl__eval_run(q, sources, n_sources, args, args ? args_len : 0, r, err);
    if (!rc && q->keys_kind != DL_KEYS_NONE) {
        r->col_names = dl_calloc(q->n_find, sizeof(char *));
        if (!r->col_names)
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        for (size_t i = 0; !rc && i < q->n_find; i++) {
            r->col_names[i] = dl_strdup(q->keys[i]->bytes);
            if (!r->col_names[i])
                rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        }
    }
    if (rc) {
        dl_query_result_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

DL_API void dl_query_result_free(dl_query_result_t *r) {
    if (!r)
        return;
    if (r->cells) {
        /* Cells past n_rows may hold collections too (TUPLE / SCALAR keep one row). */
        for (size_t i = 0; i < r->n_alloc_rows * r->n_cols; i++)
            dl_free(r->cells[i].items);
    }
    dl_free(r->cells);
    if (r->col_names)
        for (size_t i = 0; i < r->n_cols; i++)
            dl_free(r->col_names[i]);
    dl_free(r->col_names);
    dl_free(r);
}

/* ---- normalization ------------------------------------------------------------------------ */

typedef struct renamer {
    const dl_sym_t *names[256]; /* variables in order of first appearance */
    size_t n;
} renamer_t;

/* Prints f with every ?variable renamed ?v<k> by order of first appearance, maps with their
 * keys in a fixed order (the query's sections), and single spaces. */
static void print_normal(const dl_edn_t *f, renamer_t *rn, dl_buf_t *out) {
    switch (f->kind) {
        case DL_EDN_SYMBOL:
            if (f->sym->bytes[0] == '?' && f->sym->len > 1) {
                size_t k = 0;
                while (k < rn->n && rn->names[k] != f->sym)
                    k++;
                if (k == rn->n && rn->n < 256)
                    rn->names[rn->n++] = f->sym;
                if (k < 256) {
                    dl__buf_printf(out, "?v%zu", k);
                    return;
                }
            }
            dl__edn_print(f, out);
            return;
        case DL_EDN_LIST:
        case DL_EDN_VECTOR:
        case DL_EDN_SET: {
            dl__buf_puts(out, f->kind == DL_EDN_LIST ? "(" : f->kind == DL_EDN_VECTOR ? "[" : "#{");
            for (size_t i = 0; i < f->n; i++) {
                if (i)
                    dl__buf_putc(out, ' ');
                print_normal(f->items[i], rn, out);
            }
            dl__buf_putc(out, f->kind == DL_EDN_LIST ? ')' : f->kind == DL_EDN_VECTOR ? ']' : '}');
            return;
        }
        case DL_EDN_MAP: {
            /* The map form: sections in the vector form's order, so both forms of one
             * query normalize alike. */
            static const char *const order[] = {"find", "keys", "strs", "syms",
                                                "with", "in",   "where"};
            dl__buf_putc(out, '[');
            bool first = true;
            for (size_t o = 0; o < DL_ARRAY_LEN(order); o++)
                for (size_t i = 0; i + 1 < f->n; i += 2) {
                    if (!dl__edn_is_keyword(f->items[i], order[o]))
                        continue;
                    const dl_edn_t *v = f->items[i + 1];
                    dl__buf_printf(out, "%s:%s", first ? "" : " ", order[o]);
                    first = false;
                    for (size_t k = 0; v->kind == DL_EDN_VECTOR && k < v->n; k++) {
                        dl__buf_putc(out, ' ');
                        print_normal(v->items[k], rn, out);
                    }
                }
            dl__buf_putc(out, ']');
            return;
        }
        default:
            dl__edn_print(f, out);
            return;
    }
}

DL_API int dl_query_normalize(const char *text, size_t len, char **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!text || !out)
        return dl_error_set(err, DL_EINVAL, "dl_query_normalize: NULL argument");
    dl_arena_t a;
    dl__arena_init(&a, 4096);
    dl_edn_t *root = NULL;
    int rc = dl__edn_read_one(text, len, &a, &root, err);
    if (!rc) {
        renamer_t rn;
        rn.n = 0;
        dl_buf_t b;
        dl__buf_init(&b);
        print_normal(root, &rn, &b);
        if (b.oom || !b.data) {
            dl__buf_fini(&b);
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        } else {
            *out = dl__buf_take(&b);
        }
    }
    dl__arena_fini(&a);
    return rc;
}

DL_API size_t dl_query_result_rows(const dl_query_result_t *r) { return r ? r->n_rows : 0; }

DL_API size_t dl_query_result_cols(const dl_query_result_t *r) { return r ? r->n_cols : 0; }

DL_API int dl_query_result_value(const dl_query_result_t *r, size_t row, size_t col,
                                 dl_value_t *out, dl_error_t *err) {
    if (!r || !out || row >= r->n_rows || col >= r->n_cols)
        return dl_error_set(err, DL_ERANGE, "no cell (%zu, %zu)", row, col);
    const dl__cell_t *c = &r->cells[row * r->n_cols + col];
    if (c->is_coll)
        return dl_error_set(err, DL_ETYPE, "cell (%zu, %zu) is a collection", row, col);
    *out = c->v;
    return 0;
}

static void print_cell(const dl__cell_t *c, dl_buf_t *b) {
    if (!c->is_coll) {
        dl__edn_print_value(c->v, b);
        return;
    }
    dl__buf_puts(b, c->is_set ? "#{" : "[");
    for (size_t i = 0; i < c->n; i++) {
        if (i)
            dl__buf_putc(b, ' ');
        dl__edn_print_value(c->items[i], b);
    }
    dl__buf_putc(b, c->is_set ? '}' : ']');
}

static void print_row(const dl_query_result_t *r, size_t row, dl_buf_t *b) {
    const dl__cell_t *cells = r->cells + row * r->n_cols;
    if (r->keys_kind != DL_KEYS_NONE) {
        dl__buf_putc(b, '{');
        for (size_t i = 0; i < r->n_cols; i++) {
            if (i)
                dl__buf_putc(b, ' ');
            if (r->keys_kind == DL_KEYS_KEYS)
                dl__buf_printf(b, ":%s ", r->col_names[i]);
            else if (r->keys_kind == DL_KEYS_STRS)
                dl__buf_printf(b, "\"%s\" ", r->col_names[i]);
            else
                dl__buf_printf(b, "%s ", r->col_names[i]);
            print_cell(&cells[i], b);
        }
        dl__buf_putc(b, '}');
        return;
    }
    dl__buf_putc(b, '[');
    for (size_t i = 0; i < r->n_cols; i++) {
        if (i)
            dl__buf_putc(b, ' ');
        print_cell(&cells[i], b);
    }
    dl__buf_putc(b, ']');
}

DL_API char *dl_query_result_to_edn(const dl_query_result_t *r) {
    dl_buf_t b;
    dl__buf_init(&b);
    switch (r->kind) {
        case DL_FIND_REL:
            dl__buf_putc(&b, '[');
            for (size_t i = 0; i < r->n_rows; i++) {
                if (i)
                    dl__buf_putc(&b, ' ');
                print_row(r, i, &b);
            }
            dl__buf_putc(&b, ']');
            break;
        case DL_FIND_COLL:
            dl__buf_putc(&b, '[');
            for (size_t i = 0; i < r->n_rows; i++) {
                if (i)
                    dl__buf_putc(&b, ' ');
                print_cell(&r->cells[i * r->n_cols], &b);
            }
            dl__buf_putc(&b, ']');
            break;
        case DL_FIND_TUPLE:
            if (r->n_rows == 0)
                dl__buf_puts(&b, "nil");
            else
                print_row(r, 0, &b);
            break;
        case DL_FIND_SCALAR:
            if (r->n_rows == 0)
                dl__buf_puts(&b, "nil");
            else
                print_cell(&r->cells[0], &b);
            break;
    }
    if (b.oom || !b.data) {
        dl__buf_fini(&b);
        return NULL;
    }
    return dl__buf_take(&b);
}
