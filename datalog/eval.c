/*
 * eval.c: the naive reference evaluator of Datalog queries: the ORACLE the compiled,
 * incremental dataflow plans are tested against. It is not the product engine and must
 * stay obviously correct rather than fast: relations are plain sets of rows, clauses are
 * nested loops over materialized datom scans, not / or / non-recursive rule calls are
 * evaluated row by row, and recursive rules are materialized bottom-up per strongly
 * connected component with a naive fixpoint (re-derive everything until nothing new
 * appears), SCCs in dependency order (stratified negation: analyze.c rejects negation
 * through recursion).
 *
 * It reads the store only through its public snapshot API (dl_db_datoms, dl_db_attr*,
 * dl_db_ident, dl_db_lookup), so it also serves as a check of that API. Semantics:
 * docs/datalog.md; clause order: analyze.c's schedule.
 */
#include "datalog/datalog.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- relations: sets of rows over named columns ----------------------------------------- */

/* Invariant: rows holds n distinct rows of `arity` values; slots is an open-addressing
 * table (size a power of two, > 2n) of row index + 1, 0 meaning empty. */
typedef struct rel {
    size_t arity;
    int *cols; /* arity variable indices */
    dl_value_t *rows;
    size_t n, cap;
    uint32_t *slots;
    size_t n_slots;
} rel_t;

typedef struct ectx {
    const dl_query_t *q;
    const dl_db_t **dbs; /* per q->srcs entry; NULL when not supplied */
    rel_t **rule_rel;    /* n_rules * n_srcs materialized recursive rules */
    dl_error_t *err;
    uint64_t *entity_vars; /* dl__analyze_entity_vars: longs bound to them become refs */
} ectx_t;

static int oom(ectx_t *c) { return dl_error_set(c->err, DL_ENOMEM, "out of memory"); }

static int rel_init(rel_t *r, size_t arity, const int *cols) {
    memset(r, 0, sizeof *r);
    r->arity = arity;
    r->cols = dl_malloc((arity ? arity : 1) * sizeof(int));
    if (!r->cols)
        return DL_ENOMEM;
    if (arity)
        memcpy(r->cols, cols, arity * sizeof(int));
    return 0;
}

static void rel_fini(rel_t *r) {
    if (!r)
        return;
    dl_free(r->cols);
    dl_free(r->rows);
    dl_free(r->slots);
    memset(r, 0, sizeof *r);
}

static int rel_col(const rel_t *r, int var) {
    for (size_t i = 0; i < r->arity; i++)
        if (r->cols[i] == var)
            return (int)i;
    return -1;
}

static const dl_value_t *rel_row(const rel_t *r, size_t i) { return r->rows + i * r->arity; }

static int rel_rehash(rel_t *r, size_t n_slots) {
    uint32_t *s = dl_calloc(n_slots, sizeof(uint32_t));
    if (!s)
        return DL_ENOMEM;
    for (size_t i = 0; i < r->n; i++) {
        size_t h = (size_t)dl_row_hash(rel_row(r, i), r->arity) & (n_slots - 1);
        while (s[h])
            h = (h + 1) & (n_slots - 1);
        s[h] = (uint32_t)(i + 1);
    }
    dl_free(r->slots);
    r->slots = s;
    r->n_slots = n_slots;
    return 0;
}

/* Adds row unless present. *added (may be NULL) tells which. */
static int rel_add(rel_t *r, const dl_value_t *row, bool *added) {
    if (2 * (r->n + 1) >= r->n_slots && rel_rehash(r, r->n_slots ? 2 * r->n_slots : 16))
        return DL_ENOMEM;
    size_t h = (size_t)dl_row_hash(row, r->arity) & (r->n_slots - 1);
    while (r->slots[h]) {
        if (dl_row_eq(rel_row(r, r->slots[h] - 1), row, r->arity)) {
            if (added)
                *added = false;
            return 0;
        }
        h = (h + 1) & (r->n_slots - 1);
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        dl_value_t *rows = dl_realloc(r->rows, cap * (r->arity ? r->arity : 1) * sizeof *rows);
        if (!rows)
            return DL_ENOMEM;
        r->rows = rows;
        r->cap = cap;
    }
    if (r->arity)
        memcpy(r->rows + r->n * r->arity, row, r->arity * sizeof *row);
    r->slots[h] = (uint32_t)(r->n + 1);
    r->n++;
    if (added)
        *added = true;
    return 0;
}

/* The relation with one empty row: the neutral element of join. */
static int rel_unit(rel_t *r) {
    int rc = rel_init(r, 0, NULL);
    return rc ? rc : rel_add(r, NULL, NULL);
}

/* ---- value matching --------------------------------------------------------------------- */

/* Entity ids may be written as longs (Datomic's convention) or refs: they match. */
static bool loose_eq(dl_value_t a, dl_value_t b) {
    if (dl_value_eq(a, b))
        return true;
    if ((a.type == DL_T_REF && b.type == DL_T_INT) || (a.type == DL_T_INT && b.type == DL_T_REF))
        return a.as.i == b.as.i;
    return false;
}

static int entity_of(ectx_t *c, const dl_db_t *db, dl_value_t v, const dl_edn_t *form, int64_t *out,
                     bool *found);

/* The value of a constant term as an entity id (e position, v of a ref attribute):
 * longs and refs as is, keywords by :db/ident, lookup refs by their unique attribute. */
static int entity_of(ectx_t *c, const dl_db_t *db, dl_value_t v, const dl_edn_t *form, int64_t *out,
                     bool *found) {
    *found = false;
    dl_error_t tmp = {0};
    if (form) {
        if (form->kind != DL_EDN_VECTOR || form->n != 2 || form->items[0]->kind != DL_EDN_VALUE ||
            form->items[0]->value.type != DL_T_KEYWORD || form->items[1]->kind != DL_EDN_VALUE)
            return dl_error_set(c->err, DL_EINVAL, "a lookup ref is [:attribute value]");
        dl_attr_info_t ai;
        int rc = dl_db_attr(db, dl_value_str(form->items[0]->value, NULL), &ai, &tmp);
        if (rc)
            return dl_error_set(c->err, DL_EUNKNOWN_ATTR, "lookup ref: unknown attribute :%s",
                                dl_value_str(form->items[0]->value, NULL));
        if (!ai.unique)
            return dl_error_set(c->err, DL_EINVAL, "lookup ref: :%s is not a unique attribute",
                                ai.ident);
        rc = dl_db_lookup(db, ai.id, form->items[1]->value, out, &tmp);
        if (rc == 0)
            *found = true;
        return rc == DL_ENOTFOUND ? 0 : rc ? dl_error_set(c->err, rc, "%s", tmp.message) : 0;
    }
    if (v.type == DL_T_INT || v.type == DL_T_REF) {
        *out = v.as.i;
        *found = true;
        return 0;
    }
    if (v.type == DL_T_KEYWORD) {
        int rc = dl_db_ident(db, dl_value_str(v, NULL), out, &tmp);
        if (rc == 0)
            *found = true;
        return rc == DL_ENOTFOUND ? 0 : rc ? dl_error_set(c->err, rc, "%s", tmp.message) : 0;
    }
    return 0;
}

static const dl_db_t *db_of(ectx_t *c, int src, const dl__clause_t *cl) {
    const dl_db_t *db = (src >= 0 && (size_t)src < c->q->n_srcs) ? c->dbs[src] : NULL;
    if (!db)
        dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                        "no database was supplied for %s", c->q->srcs[src]->bytes);
    return db;
}

/* ---- data patterns ---------------------------------------------------------------------- */

/* One datom as five values: e (REF), a (KEYWORD ident), v, tx (INT), added (BOOL). */
typedef struct dvals {
    dl_value_t x[5];
} dvals_t;

static int attr_ident(ectx_t *c, const dl_db_t *db, int64_t a, dl_value_t *out, bool *is_ref) {
    dl_attr_info_t ai;
    dl_error_t tmp = {0};
    int rc = dl_db_attr_by_id(db, a, &ai, &tmp);
    if (rc)
        return dl_error_set(c->err, rc, "%s", tmp.message);
    *is_ref = ai.type == DL_T_REF;
    return dl_value_text(DL_T_KEYWORD, ai.ident, strlen(ai.ident), out, c->err);
}

/* Every datom of db matching the clause's constants. *out new (dl_free). */
static int scan(ectx_t *c, const dl__clause_t *cl, const dl_db_t *db, dvals_t **out,
                size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    const dl__term_t *t = cl->args;
    dl_error_t tmp = {0};
    dl_datom_t prefix;
    memset(&prefix, 0, sizeof prefix);
    dl_index_t idx = DL_INDEX_EAVT;
    int n_comp = 0;
    if (t[1].kind == DL__TERM_CONST) {
        dl_attr_info_t ai;
        int rc;
        if (t[1].value.type == DL_T_KEYWORD)
            rc = dl_db_attr(db, dl_value_str(t[1].value, NULL), &ai, &tmp);
        else
            rc = dl_db_attr_by_id(db, t[1].value.as.i, &ai, &tmp);
        if (rc == DL_EUNKNOWN_ATTR || rc == DL_ENOTFOUND)
            return dl__parse_error(
                c->err, DL_EUNKNOWN_ATTR, cl->text, cl->text_len, t[1].form,
                "unknown attribute %s%s", t[1].value.type == DL_T_KEYWORD ? ":" : "#",
                t[1].value.type == DL_T_KEYWORD ? dl_value_str(t[1].value, NULL) : "id");
        if (rc)
            return dl_error_set(c->err, rc, "%s", tmp.message);
        idx = DL_INDEX_AEVT;
        prefix.a = ai.id;
        n_comp = 1;
    }
    /* Constant entity: resolved once. */
    bool e_const = t[0].kind == DL__TERM_CONST || t[0].kind == DL__TERM_FORM;
    int64_t e_id = 0;
    if (e_const) {
        bool found;
        int rc = entity_of(c, db, t[0].value, t[0].kind == DL__TERM_FORM ? t[0].form : NULL, &e_id,
                           &found);
        if (rc)
            return rc;
        if (!found)
            return 0; /* an ident or lookup ref that names nothing matches nothing */
    }
    dl_iter_t *it = NULL;
    int rc = dl_db_datoms(db, idx, &prefix, n_comp, NULL, &it, &tmp);
    if (rc)
        return dl_error_set(c->err, rc, "%s", tmp.message);
    dvals_t *arr = NULL;
    size_t n = 0, cap = 0;
    dl_datom_t d;
    int64_t last_a = INT64_MIN;
    dl_value_t a_kw = dl_value_nil();
    bool a_ref = false;
    /* v constant as an entity (for ref attributes), resolved lazily once. */
    int v_state = 0; /* 0 unresolved, 1 resolved found, 2 none */
    int64_t v_id = 0;
    while (dl_iter_next(it, &d)) {
        if (e_const && d.e != e_id)
            continue;
        if (d.a != last_a) {
            rc = attr_ident(c, db, d.a, &a_kw, &a_ref);
            if (rc)
                break;
            last_a = d.a;
        }
        dvals_t dv;
        dv.x[0] = dl_value_ref(d.e);
        dv.x[1] = a_kw;
        dv.x[2] = d.v;
        dv.x[3] = dl_value_int(d.tx);
        dv.x[4] = dl_value_bool(d.added);
        if (t[1].kind == DL__TERM_CONST && t[1].value.type != DL_T_KEYWORD &&
            t[1].value.as.i != d.a)
            continue;
        if (t[2].kind == DL__TERM_CONST || t[2].kind == DL__TERM_FORM) {
            bool ok = t[2].kind == DL__TERM_CONST && loose_eq(t[2].value, d.v);
            if (!ok && a_ref && d.v.type == DL_T_REF) {
                if (v_state == 0) {
                    bool found;
                    rc = entity_of(c, db, t[2].value, t[2].kind == DL__TERM_FORM ? t[2].form : NULL,
                                   &v_id, &found);
                    if (rc)
                        break;
                    v_state = found ? 1 : 2;
                }
                ok = v_state == 1 && v_id == d.v.as.i;
            }
            if (!ok)
                continue;
        }
        if (t[3].kind == DL__TERM_CONST && !loose_eq(t[3].value, dv.x[3]))
            continue;
        if (t[4].kind == DL__TERM_CONST && !dl_value_eq(t[4].value, dv.x[4]))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            dvals_t *na = dl_realloc(arr, cap * sizeof *arr);
            if (!na) {
                rc = oom(c);
                break;
            }
            arr = na;
        }
        arr[n++] = dv;
    }
    dl_iter_free(it);
    if (rc) {
        dl_free(arr);
        return rc;
    }
    *out = arr;
    *out_n = n;
    return 0;
}

/* Joins rel with the clause's datoms: out gets rel's columns plus the new variables. */
static int eval_pattern(ectx_t *c, const dl__clause_t *cl, int src, const rel_t *in, rel_t *out) {
    const dl_db_t *db = db_of(c, cl->src ? cl->src : src, cl);
    if (!db)
        return DL_EINVAL;
    dvals_t *ds;
    size_t n_ds;
    int rc = scan(c, cl, db, &ds, &n_ds);
    if (rc)
        return rc;
    /* Columns: in's, then each new variable once. pos_col[i]: the column that term i reads
     * or writes (-1 for blanks and constants); writes[i]: term i binds that column. */
    int cols[64 + 5];
    size_t arity = in->arity;
    if (arity > 64) {
        dl_free(ds);
        return dl_error_set(c->err, DL_ELIMIT, "too many variables in one conjunction");
    }
    memcpy(cols, in->cols, arity * sizeof(int));
    int pos_col[5];
    bool first_write[5]; /* position i is the first to bind its (new) column */
    for (int i = 0; i < 5; i++) {
        pos_col[i] = -1;
        first_write[i] = false;
        if (cl->args[i].kind != DL__TERM_VAR)
            continue;
        int v = cl->args[i].var;
        int k = -1;
        for (size_t j = 0; j < arity; j++)
            if (cols[j] == v)
                k = (int)j;
        if (k < 0) {
            k = (int)arity;
            cols[arity++] = v;
            first_write[i] = true;
        }
        pos_col[i] = k;
    }
    rc = rel_init(out, arity, cols);
    dl_value_t row[64 + 5];
    for (size_t r = 0; r < in->n && !rc; r++) {
        const dl_value_t *ir = rel_row(in, r);
        for (size_t d = 0; d < n_ds && !rc; d++) {
            memcpy(row, ir, in->arity * sizeof *row);
            bool ok = true;
            for (int i = 0; i < 5 && ok; i++) {
                if (pos_col[i] < 0)
                    continue;
                if (first_write[i])
                    row[pos_col[i]] = ds[d].x[i];
                else
                    ok = loose_eq(row[pos_col[i]], ds[d].x[i]);
            }
            if (ok)
                rc = rel_add(out, row, NULL);
        }
    }
    dl_free(ds);
    if (rc == DL_ENOMEM)
        oom(c);
    return rc;
}

/* ---- conjunctions ----------------------------------------------------------------------- */

static int eval_conj(ectx_t *c, dl__clause_t *const *cl, size_t n, int src, const rel_t *in,
                     rel_t *out);

/* Values of the term in a row of rel (a VAR must be bound there). */
static dl_value_t term_value(const rel_t *r, const dl_value_t *row, const dl__term_t *t) {
    if (t->kind == DL__TERM_VAR) {
        int k = rel_col(r, t->var);
        return k >= 0 ? row[k] : dl_value_nil();
    }
    return t->value;
}

/* Extends `row` of `in` by unifying the new values `vals` with variables `vars` (-1: _)
 * and adds the result to out (whose columns are in's plus the new variables). */
static int extend(const ectx_t *c, const rel_t *in, const dl_value_t *row, const int *vars,
                  const dl_value_t *vals, size_t n, rel_t *out) {
    dl_value_t buf[128];
    if (out->arity > 128)
        return DL_ELIMIT;
    memcpy(buf, row, in->arity * sizeof *buf);
    bool set[128] = {false};
    for (size_t i = 0; i < in->arity; i++)
        set[i] = true;
    for (size_t i = 0; i < n; i++) {
        if (vars[i] < 0)
            continue;
        int k = rel_col(out, vars[i]);
        if (k < 0)
            continue;
        dl_value_t v = vals[i];
        if (v.type == DL_T_INT && c->entity_vars &&
            (c->entity_vars[vars[i] / 64] >> (vars[i] % 64)) & 1)
            v = dl_value_ref(v.as.i);
        if (set[k]) {
            if (!loose_eq(buf[k], v))
                return 0;
        } else {
            buf[k] = v;
            set[k] = true;
        }
    }
    return rel_add(out, buf, NULL);
}

/* out's columns: in's plus those of vars (n) not already there. */
static int init_extended(rel_t *out, const rel_t *in, const int *vars, size_t n) {
    int cols[128];
    size_t a = in->arity;
    if (a + n > 128)
        return DL_ELIMIT;
    memcpy(cols, in->cols, a * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if (vars[i] < 0)
            continue;
        bool have = false;
        for (size_t j = 0; j < a; j++)
            have |= cols[j] == vars[i];
        if (!have)
            cols[a++] = vars[i];
    }
    return rel_init(out, a, cols);
}

static int ground_value(ectx_t *c, const dl__clause_t *cl, const dl_edn_t *f, dl__fnval_t *out) {
    memset(out, 0, sizeof *out);
    if (f->kind == DL_EDN_VALUE) {
        out->v = f->value;
        return 0;
    }
    if (f->kind != DL_EDN_VECTOR && f->kind != DL_EDN_LIST && f->kind != DL_EDN_SET)
        return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, f,
                               "ground takes a value or a collection of values");
    bool nested = f->n > 0 && f->items[0]->kind == DL_EDN_VECTOR;
    size_t arity = nested ? f->items[0]->n : 1;
    out->kind = nested ? 2 : 1;
    out->arity = arity;
    out->n = f->n;
    out->items = dl_malloc(DL_MAX(f->n * arity, 1) * sizeof(dl_value_t));
    if (!out->items)
        return oom(c);
    for (size_t i = 0; i < f->n; i++) {
        const dl_edn_t *it = f->items[i];
        if (nested) {
            if (it->kind != DL_EDN_VECTOR || it->n != arity)
                return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, it,
                                       "every tuple of the relation needs %zu values", arity);
            for (size_t k = 0; k < arity; k++) {
                if (it->items[k]->kind != DL_EDN_VALUE)
                    return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, it->items[k],
                                           "expected a scalar value");
                out->items[i * arity + k] = it->items[k]->value;
            }
        } else {
            if (it->kind != DL_EDN_VALUE)
                return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, it,
                                       "expected a scalar value");
            out->items[i] = it->value;
        }
    }
    return 0;
}

/* get-else, get-some, missing?: the values of attribute `a` on entity `e`. */
static int entity_values(ectx_t *c, const dl__clause_t *cl, const dl_db_t *db, dl_value_t e,
                         dl_value_t a, dl_attr_info_t *ai, dl_value_t *vals, size_t cap,
                         size_t *out_n) {
    dl_error_t tmp = {0};
    *out_n = 0;
    if (a.type != DL_T_KEYWORD)
        return dl__parse_error(c->err, DL_ETYPE, cl->text, cl->text_len, cl->form,
                               "%s takes an attribute keyword", dl__builtin_get(cl->fn)->name);
    int rc = dl_db_attr(db, dl_value_str(a, NULL), ai, &tmp);
    if (rc)
        return dl__parse_error(c->err, DL_EUNKNOWN_ATTR, cl->text, cl->text_len, cl->form,
                               "unknown attribute :%s", dl_value_str(a, NULL));
    if (e.type != DL_T_REF && e.type != DL_T_INT)
        return 0; /* not an entity id: it has no values (docs/datalog.md "Functions") */
    dl_datom_t prefix;
    memset(&prefix, 0, sizeof prefix);
    prefix.e = e.as.i;
    prefix.a = ai->id;
    dl_iter_t *it;
    rc = dl_db_datoms(db, DL_INDEX_EAVT, &prefix, 2, NULL, &it, &tmp);
    if (rc)
        return dl_error_set(c->err, rc, "%s", tmp.message);
    dl_datom_t d;
    while (dl_iter_next(it, &d))
        if (d.added && *out_n < cap)
            vals[(*out_n)++] = d.v;
    dl_iter_free(it);
    return 0;
}

static int call_db_fn(ectx_t *c, const dl__clause_t *cl, int src, const dl_value_t *args, bool *ok,
                      dl__fnval_t *res) {
    memset(res, 0, sizeof *res);
    const dl_db_t *db = db_of(c, cl->src ? cl->src : src, cl);
    if (!db)
        return DL_EINVAL;
    dl_attr_info_t ai;
    dl_value_t vals[2];
    size_t nv;
    int rc;
    if (cl->fn == dl__builtin_id_missing()) {
        rc = entity_values(c, cl, db, args[1], args[2], &ai, vals, 1, &nv);
        *ok = nv == 0;
        return rc;
    }
    if (cl->fn == dl__builtin_id_get_else()) {
        rc = entity_values(c, cl, db, args[1], args[2], &ai, vals, 1, &nv);
        if (rc)
            return rc;
        if (ai.many)
            return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                                   "get-else is not supported for cardinality-many attributes");
        if (args[3].type == DL_T_NIL)
            return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                                   "get-else: the default cannot be nil");
        res->v = nv ? vals[0] : args[3];
        *ok = true;
        return 0;
    }
    /* get-some: [attr value] of the first attribute that has a value. */
    for (size_t i = 2; i < cl->n_args; i++) {
        rc = entity_values(c, cl, db, args[1], args[i], &ai, vals, 1, &nv);
        if (rc)
            return rc;
        if (nv) {
            res->kind = 1;
            res->n = 2;
            res->items = dl_malloc(2 * sizeof(dl_value_t));
            if (!res->items)
                return oom(c);
            res->items[0] = args[i];
            res->items[1] = vals[0];
            *ok = true;
            return 0;
        }
    }
    res->v = dl_value_nil();
    *ok = false;
    return 0;
}

static int eval_call(ectx_t *c, const dl__clause_t *cl, int src, const rel_t *in, rel_t *out) {
    const dl__builtin_t *bi = dl__builtin_get(cl->fn);
    bool is_fn = cl->kind == DL__C_FN;
    int rc = is_fn ? init_extended(out, in, cl->bind.vars, cl->bind.n)
                   : rel_init(out, in->arity, in->cols);
    if (rc)
        return rc == DL_ELIMIT ? dl_error_set(c->err, rc, "too many variables") : oom(c);
    dl_value_t args[64];
    if (cl->n_args > 64)
        return dl_error_set(c->err, DL_ELIMIT, "too many arguments");
    for (size_t r = 0; r < in->n && !rc; r++) {
        const dl_value_t *row = rel_row(in, r);
        bool ok = false;
        dl__fnval_t res;
        memset(&res, 0, sizeof res);
        if (cl->fn == dl__builtin_id_ground()) {
            const dl__term_t *t = &cl->args[0];
            if (t->kind == DL__TERM_FORM)
                rc = ground_value(c, cl, t->form, &res);
            else
                res.v = term_value(in, row, t);
            ok = true;
        } else {
            for (size_t i = 0; i < cl->n_args; i++)
                args[i] = cl->args[i].kind == DL__TERM_SRC ? dl_value_nil()
                                                           : term_value(in, row, &cl->args[i]);
            if (bi->flags & DL__BI_DB)
                rc = call_db_fn(c, cl, src, args, &ok, &res);
            else
                rc = dl__builtin_call(cl->fn, args, cl->n_args, &ok, &res, c->err);
            if (rc)
                dl_error_prefix(c->err, "%s",
                                cl->form && cl->text ? "in an expression clause" : "builtin");
        }
        if (rc) {
            dl_free(res.items);
            break;
        }
        if (!is_fn) {
            if (ok)
                rc = rel_add(out, row, NULL);
            continue;
        }
        const dl__bind_t *b = &cl->bind;
        if (res.kind == 0) {
            /* A nil result fails the binding (Datomic). */
            if (res.v.type == DL_T_NIL)
                continue;
            if (b->kind != DL__BIND_SCALAR) {
                rc = dl__parse_error(c->err, DL_ETYPE, cl->text, cl->text_len, b->form,
                                     "%s returned a single value; this binding needs a collection",
                                     bi->name);
                break;
            }
            rc = extend(c, in, row, b->vars, &res.v, 1, out);
        } else if (b->kind == DL__BIND_SCALAR) {
            rc = dl__parse_error(c->err, DL_ETYPE, cl->text, cl->text_len, b->form,
                                 "%s returned a collection; bind it with [?x ...] or [?a ?b]",
                                 bi->name);
        } else if (b->kind == DL__BIND_TUPLE) {
            if (res.kind != 1 || res.n < b->n)
                rc = dl__parse_error(c->err, DL_ETYPE, cl->text, cl->text_len, b->form,
                                     "tuple binding of %zu variables needs %zu values", b->n, b->n);
            else
                rc = extend(c, in, row, b->vars, res.items, b->n, out);
        } else if (b->kind == DL__BIND_COLL) {
            if (res.kind != 1)
                rc = dl__parse_error(c->err, DL_ETYPE, cl->text, cl->text_len, b->form,
                                     "collection binding needs a collection of values");
            for (size_t i = 0; i < res.n && !rc; i++)
                rc = extend(c, in, row, b->vars, &res.items[i], 1, out);
        } else {
            if (res.kind != 2 || res.arity != b->n)
                rc = dl__parse_error(c->err, DL_ETYPE, cl->text, cl->text_len, b->form,
                                     "relation binding needs tuples of %zu values", b->n);
            for (size_t i = 0; i < res.n && !rc; i++)
                rc = extend(c, in, row, b->vars, &res.items[i * res.arity], b->n, out);
        }
        dl_free(res.items);
    }
    if (rc == DL_ENOMEM)
        oom(c);
    return rc;
}

/* A relation with one row: the values of `vars` in row `row` of `in` (those bound there). */
static int seed_from_row(const rel_t *in, const dl_value_t *row, const int *vars, size_t n,
                         rel_t *out) {
    int cols[128];
    dl_value_t vals[128];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 128; i++) {
        int col = rel_col(in, vars[i]);
        if (col < 0)
            continue;
        cols[k] = vars[i];
        vals[k++] = row[col];
    }
    int rc = rel_init(out, k, cols);
    return rc ? rc : rel_add(out, vals, NULL);
}

static int eval_not(ectx_t *c, const dl__clause_t *cl, int src, const rel_t *in, rel_t *out) {
    int rc = rel_init(out, in->arity, in->cols);
    if (rc)
        return oom(c);
    int sub_src = cl->src ? cl->src : src;
    for (size_t r = 0; r < in->n && !rc; r++) {
        const dl_value_t *row = rel_row(in, r);
        rel_t seed, res;
        rc = seed_from_row(in, row, cl->join, cl->n_join, &seed);
        if (rc) {
            rel_fini(&seed);
            return oom(c);
        }
        rc = eval_conj(c, cl->body, cl->n_body, sub_src, &seed, &res);
        rel_fini(&seed);
        if (rc == 0 && res.n == 0)
            rc = rel_add(out, row, NULL);
        rel_fini(&res);
    }
    if (rc == DL_ENOMEM)
        oom(c);
    return rc;
}

static int eval_or(ectx_t *c, const dl__clause_t *cl, int src, const rel_t *in, rel_t *out) {
    int rc = init_extended(out, in, cl->join, cl->n_join);
    if (rc)
        return oom(c);
    int sub_src = cl->src ? cl->src : src;
    dl_value_t vals[128];
    if (cl->n_join > 128)
        return dl_error_set(c->err, DL_ELIMIT, "too many variables");
    for (size_t r = 0; r < in->n && !rc; r++) {
        const dl_value_t *row = rel_row(in, r);
        for (size_t b = 0; b < cl->n_body && !rc; b++) {
            const dl__clause_t *br = cl->body[b];
            rel_t seed, res;
            rc = seed_from_row(in, row, cl->join, cl->n_join, &seed);
            if (rc) {
                rel_fini(&seed);
                return oom(c);
            }
            if (br->kind == DL__C_AND)
                rc = eval_conj(c, br->body, br->n_body, sub_src, &seed, &res);
            else
                rc = eval_conj(c, (dl__clause_t *const *)&cl->body[b], 1, sub_src, &seed, &res);
            rel_fini(&seed);
            for (size_t i = 0; i < res.n && !rc; i++) {
                for (size_t k = 0; k < cl->n_join; k++) {
                    int col = rel_col(&res, cl->join[k]);
                    vals[k] = col >= 0 ? rel_row(&res, i)[col] : dl_value_nil();
                }
                rc = extend(c, in, row, cl->join, vals, cl->n_join, out);
            }
            rel_fini(&res);
        }
    }
    if (rc == DL_ENOMEM)
        oom(c);
    return rc;
}

static int materialize_scc(ectx_t *c, int scc, int src);

/* The rows of rule r's definitions evaluated with the head seeded from `seed` (columns
 * are head variables of each definition... per definition), projected to the head
 * (arity columns in argument order), added to out. */
static int eval_rule_defs(ectx_t *c, const dl__rule_t *r, int src, const dl_value_t *seed_vals,
                          const bool *seed_has, rel_t *out) {
    int rc = 0;
    dl_value_t vals[128];
    for (size_t d = 0; d < r->n_defs && !rc; d++) {
        const dl__rule_def_t *def = &r->defs[d];
        int cols[128];
        dl_value_t sv[128];
        size_t k = 0;
        for (size_t i = 0; i < def->arity; i++)
            if (seed_has && seed_has[i]) {
                int h = def->head[i];
                cols[k] = h;
                sv[k] = seed_vals[i];
                if (sv[k].type == DL_T_INT && c->entity_vars &&
                    (c->entity_vars[h / 64] >> (h % 64)) & 1)
                    sv[k] = dl_value_ref(sv[k].as.i); /* as extend() does */
                k++;
            }
        rel_t seed, res;
        rc = rel_init(&seed, k, cols);
        if (!rc)
            rc = rel_add(&seed, sv, NULL);
        if (rc) {
            rel_fini(&seed);
            return oom(c);
        }
        rc = eval_conj(c, def->body, def->n_body, src, &seed, &res);
        rel_fini(&seed);
        for (size_t i = 0; i < res.n && !rc; i++) {
            for (size_t a = 0; a < def->arity; a++) {
                int col = rel_col(&res, def->head[a]);
                vals[a] = col >= 0 ? rel_row(&res, i)[col] : dl_value_nil();
            }
            rc = rel_add(out, vals, NULL);
        }
        rel_fini(&res);
    }
    if (rc == DL_ENOMEM)
        oom(c);
    return rc;
}

static int eval_rule_call(ectx_t *c, const dl__clause_t *cl, int src, const rel_t *in, rel_t *out) {
    const dl_query_t *q = c->q;
    const dl__rule_t *r = &q->rules[cl->fn];
    int call_src = cl->src ? cl->src : src;
    int vars[128];
    if (cl->n_args > 128)
        return dl_error_set(c->err, DL_ELIMIT, "too many rule arguments");
    for (size_t i = 0; i < cl->n_args; i++)
        vars[i] = cl->args[i].kind == DL__TERM_VAR ? cl->args[i].var : -1;
    int rc = init_extended(out, in, vars, cl->n_args);
    if (rc)
        return oom(c);
    const rel_t *mat = NULL;
    if (r->recursive) {
        rc = materialize_scc(c, r->scc, call_src);
        if (rc)
            return rc;
        mat = c->rule_rel[(size_t)cl->fn * q->n_srcs + (size_t)call_src];
    }
    dl_value_t seed_vals[128];
    bool seed_has[128];
    for (size_t rr = 0; rr < in->n && !rc; rr++) {
        const dl_value_t *row = rel_row(in, rr);
        rel_t tmp;
        const rel_t *cand = mat;
        if (!mat) {
            for (size_t i = 0; i < cl->n_args; i++) {
                const dl__term_t *t = &cl->args[i];
                seed_has[i] = t->kind == DL__TERM_CONST ||
                              (t->kind == DL__TERM_VAR && rel_col(in, t->var) >= 0);
                seed_vals[i] = seed_has[i] ? term_value(in, row, t) : dl_value_nil();
            }
            int cols[128];
            for (size_t i = 0; i < r->arity; i++)
                cols[i] = (int)i;
            rc = rel_init(&tmp, r->arity, cols);
            if (rc)
                return oom(c);
            rc = eval_rule_defs(c, r, call_src, seed_vals, seed_has, &tmp);
            cand = &tmp;
        }
        for (size_t i = 0; i < cand->n && !rc; i++) {
            const dl_value_t *m = rel_row(cand, i);
            bool ok = true;
            for (size_t a = 0; a < cl->n_args && ok; a++)
                if (cl->args[a].kind == DL__TERM_CONST)
                    ok = loose_eq(cl->args[a].value, m[a]);
            if (ok)
                rc = extend(c, in, row, vars, m, cl->n_args, out);
        }
        if (!mat)
            rel_fini(&tmp);
    }
    if (rc == DL_ENOMEM)
        oom(c);
    return rc;
}

/* Naive fixpoint of every recursive rule of SCC `scc` over source src. */
static int materialize_scc(ectx_t *c, int scc, int src) {
    const dl_query_t *q = c->q;
    bool any_missing = false;
    for (size_t r = 0; r < q->n_rules; r++)
        if (q->rules[r].scc == scc && !c->rule_rel[r * q->n_srcs + (size_t)src])
            any_missing = true;
    if (!any_missing)
        return 0; /* done, or in progress (a call from inside the fixpoint reads the
                   * current approximation) */
    int cols[128];
    for (size_t i = 0; i < 128; i++)
        cols[i] = (int)i;
    for (size_t r = 0; r < q->n_rules; r++) {
        if (q->rules[r].scc != scc)
            continue;
        rel_t *m = dl_calloc(1, sizeof *m);
        if (!m || rel_init(m, q->rules[r].arity, cols)) {
            dl_free(m);
            return oom(c);
        }
        c->rule_rel[r * q->n_srcs + (size_t)src] = m;
    }
    bool changed = true;
    int rc = 0;
    while (changed && !rc) {
        changed = false;
        for (size_t r = 0; r < q->n_rules && !rc; r++) {
            if (q->rules[r].scc != scc)
                continue;
            rel_t *m = c->rule_rel[r * q->n_srcs + (size_t)src];
            rel_t derived;
            rc = rel_init(&derived, m->arity, cols);
            if (rc)
                return oom(c);
            rc = eval_rule_defs(c, &q->rules[r], src, NULL, NULL, &derived);
            for (size_t i = 0; i < derived.n && !rc; i++) {
                bool added = false;
                rc = rel_add(m, rel_row(&derived, i), &added);
                changed |= added;
            }
            rel_fini(&derived);
        }
    }
    if (rc == DL_ENOMEM)
        oom(c);
    return rc;
}

static int eval_conj(ectx_t *c, dl__clause_t *const *cl, size_t n, int src, const rel_t *in,
                     rel_t *out) {
    const dl_query_t *q = c->q;
    size_t w = dl__analyze_words(q);
    uint64_t *bound = dl_calloc(w, sizeof(uint64_t));
    size_t *order = dl_malloc((n ? n : 1) * sizeof(size_t));
    int rc = 0;
    memset(out, 0, sizeof *out);
    if (!bound || !order) {
        dl_free(bound);
        dl_free(order);
        return oom(c);
    }
    for (size_t i = 0; i < in->arity; i++)
        bound[in->cols[i] / 64] |= 1ull << (in->cols[i] % 64);
    rc = dl__analyze_schedule(q, cl, n, bound, order, c->err);
    dl_free(bound);
    if (rc) {
        dl_free(order);
        return rc;
    }
    rel_t cur;
    rc = rel_init(&cur, in->arity, in->cols);
    for (size_t i = 0; i < in->n && !rc; i++)
        rc = rel_add(&cur, rel_row(in, i), NULL);
    if (rc) {
        rel_fini(&cur);
        dl_free(order);
        return oom(c);
    }
    for (size_t k = 0; k < n && !rc; k++) {
        const dl__clause_t *x = cl[order[k]];
        rel_t next;
        memset(&next, 0, sizeof next);
        switch (x->kind) {
            case DL__C_PATTERN:
                rc = eval_pattern(c, x, src, &cur, &next);
                break;
            case DL__C_PRED:
            case DL__C_FN:
                rc = eval_call(c, x, src, &cur, &next);
                break;
            case DL__C_NOT:
            case DL__C_NOT_JOIN:
                rc = eval_not(c, x, src, &cur, &next);
                break;
            case DL__C_OR:
            case DL__C_OR_JOIN:
                rc = eval_or(c, x, src, &cur, &next);
                break;
            case DL__C_AND:
                rc = eval_conj(c, x->body, x->n_body, src, &cur, &next);
                break;
            case DL__C_RULE:
                rc = eval_rule_call(c, x, src, &cur, &next);
                break;
        }
        rel_fini(&cur);
        cur = next;
    }
    dl_free(order);
    if (rc) {
        rel_fini(&cur);
        return rc;
    }
    *out = cur;
    return 0;
}

/* ---- inputs ------------------------------------------------------------------------------ */

static int value_of_form(ectx_t *c, const char *text, size_t len, const dl_edn_t *f,
                         dl_value_t *out) {
    if (f->kind != DL_EDN_VALUE)
        return dl__parse_error(c->err, DL_EINVAL, text, len, f, "expected a scalar value");
    *out = f->value;
    return 0;
}

/* Cross product of `cur` with the rows of one input binding. */
static int bind_input(ectx_t *c, const dl__bind_t *b, const char *text, size_t len,
                      const dl_edn_t *f, rel_t *cur) {
    dl_value_t vals[128];
    rel_t add;
    if (b->n > 128)
        return dl_error_set(c->err, DL_ELIMIT, "too many variables");
    int rc = rel_init(&add, b->n, b->vars);
    if (rc)
        return oom(c);
    if (b->kind == DL__BIND_SCALAR) {
        rc = value_of_form(c, text, len, f, &vals[0]);
        if (!rc)
            rc = rel_add(&add, vals, NULL);
    } else if (b->kind == DL__BIND_TUPLE) {
        if (f->kind != DL_EDN_VECTOR && f->kind != DL_EDN_LIST)
            rc = dl__parse_error(c->err, DL_EINVAL, text, len, f, "a tuple input is a vector");
        else if (f->n != b->n)
            rc = dl__parse_error(c->err, DL_EINVAL, text, len, f,
                                 "tuple input needs %zu values, got %zu", b->n, f->n);
        for (size_t i = 0; i < b->n && !rc; i++)
            rc = value_of_form(c, text, len, f->items[i], &vals[i]);
        if (!rc)
            rc = rel_add(&add, vals, NULL);
    } else if (b->kind == DL__BIND_COLL) {
        if (f->kind != DL_EDN_VECTOR && f->kind != DL_EDN_LIST && f->kind != DL_EDN_SET)
            rc = dl__parse_error(c->err, DL_EINVAL, text, len, f,
                                 "a collection input is a vector, list or set");
        for (size_t i = 0; i < f->n && !rc; i++) {
            rc = value_of_form(c, text, len, f->items[i], &vals[0]);
            if (!rc)
                rc = rel_add(&add, vals, NULL);
        }
    } else {
        if (f->kind != DL_EDN_VECTOR && f->kind != DL_EDN_LIST && f->kind != DL_EDN_SET)
            rc = dl__parse_error(c->err, DL_EINVAL, text, len, f,
                                 "a relation input is a collection of tuples");
        for (size_t i = 0; i < f->n && !rc; i++) {
            const dl_edn_t *t = f->items[i];
            if ((t->kind != DL_EDN_VECTOR && t->kind != DL_EDN_LIST) || t->n != b->n) {
                rc = dl__parse_error(c->err, DL_EINVAL, text, len, t,
                                     "each tuple of the relation needs %zu values", b->n);
                break;
            }
            for (size_t k = 0; k < b->n && !rc; k++)
                rc = value_of_form(c, text, len, t->items[k], &vals[k]);
            if (!rc)
                rc = rel_add(&add, vals, NULL);
        }
    }
    if (rc) {
        rel_fini(&add);
        return rc == DL_ENOMEM ? oom(c) : rc;
    }
    /* cur x add, with _ columns dropped and repeated variables unified. */
    rel_t out;
    rc = init_extended(&out, cur, b->vars, b->n);
    for (size_t i = 0; i < cur->n && !rc; i++)
        for (size_t j = 0; j < add.n && !rc; j++)
            rc = extend(c, cur, rel_row(cur, i), b->vars, rel_row(&add, j), b->n, &out);
    rel_fini(&add);
    rel_fini(cur);
    *cur = out;
    return rc == DL_ENOMEM ? oom(c) : rc;
}

/* ---- aggregation and the result ---------------------------------------------------------- */

static int cmp_num_first(const void *a, const void *b) {
    return dl__builtin_compare(*(const dl_value_t *)a, *(const dl_value_t *)b);
}

static int aggregate(ectx_t *c, const dl__find_t *f, dl_value_t *vals, size_t n, dl__cell_t *out) {
    memset(out, 0, sizeof *out);
    const char *name = "aggregate";
    switch (f->agg) {
        case DL__AGG_COUNT:
            out->v = dl_value_int((int64_t)n);
            return 0;
        case DL__AGG_COUNT_DISTINCT:
        case DL__AGG_DISTINCT: {
            qsort(vals, n, sizeof *vals, cmp_num_first);
            size_t k = 0;
            for (size_t i = 0; i < n; i++)
                if (k == 0 || !dl_value_eq(vals[k - 1], vals[i]))
                    vals[k++] = vals[i];
            if (f->agg == DL__AGG_COUNT_DISTINCT) {
                out->v = dl_value_int((int64_t)k);
                return 0;
            }
            out->is_coll = out->is_set = true;
            out->n = k;
            out->items = dl_malloc((k ? k : 1) * sizeof(dl_value_t));
            if (!out->items)
                return oom(c);
            memcpy(out->items, vals, k * sizeof(dl_value_t));
            return 0;
        }
        case DL__AGG_MIN:
        case DL__AGG_MAX: {
            dl_value_t best = vals[0];
            for (size_t i = 1; i < n; i++) {
                int k = dl__builtin_compare(vals[i], best);
                if (f->agg == DL__AGG_MIN ? k < 0 : k > 0)
                    best = vals[i];
            }
            out->v = best;
            return 0;
        }
        case DL__AGG_MIN_N:
        case DL__AGG_MAX_N: {
            qsort(vals, n, sizeof *vals, cmp_num_first);
            size_t k = (size_t)f->n < n ? (size_t)f->n : n;
            out->is_coll = true;
            out->n = k;
            out->items = dl_malloc((k ? k : 1) * sizeof(dl_value_t));
            if (!out->items)
                return oom(c);
            for (size_t i = 0; i < k; i++)
                out->items[i] = f->agg == DL__AGG_MIN_N ? vals[i] : vals[n - 1 - i];
            return 0;
        }
        default:
            break;
    }
    /* Numeric aggregates. */
    bool all_int = true;
    for (size_t i = 0; i < n; i++) {
        if (vals[i].type != DL_T_INT && vals[i].type != DL_T_DOUBLE) {
            char *e = dl_value_to_edn(vals[i]);
            name = f->agg == DL__AGG_SUM        ? "sum"
                   : f->agg == DL__AGG_AVG      ? "avg"
                   : f->agg == DL__AGG_MEDIAN   ? "median"
                   : f->agg == DL__AGG_VARIANCE ? "variance"
                                                : "stddev";
            int rc = dl_error_set(c->err, DL_ETYPE, "%s of a non-number: %s", name, e ? e : "?");
            dl_free(e);
            return rc;
        }
        all_int &= vals[i].type == DL_T_INT;
    }
    if (f->agg == DL__AGG_SUM && all_int) {
        int64_t s = 0;
        for (size_t i = 0; i < n; i++)
            if (__builtin_add_overflow(s, vals[i].as.i, &s))
                return dl_error_set(c->err, DL_ERANGE, "sum: integer overflow");
        out->v = dl_value_int(s);
        return 0;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += vals[i].type == DL_T_INT ? (double)vals[i].as.i : vals[i].as.d;
    double mean = sum / (double)n;
    if (f->agg == DL__AGG_SUM) {
        out->v = dl_value_double(sum);
    } else if (f->agg == DL__AGG_AVG) {
        out->v = dl_value_double(mean);
    } else if (f->agg == DL__AGG_MEDIAN) {
        qsort(vals, n, sizeof *vals, cmp_num_first);
        if (n % 2) {
            out->v = vals[n / 2];
        } else {
            dl_value_t a = vals[n / 2 - 1], b = vals[n / 2];
            if (a.type == DL_T_INT && b.type == DL_T_INT &&
                ((a.as.i % 2 == 0) == (b.as.i % 2 == 0)))
                out->v = dl_value_int(a.as.i / 2 + b.as.i / 2 + (a.as.i % 2 + b.as.i % 2) / 2);
            else
                out->v = dl_value_double(((a.type == DL_T_INT ? (double)a.as.i : a.as.d) +
                                          (b.type == DL_T_INT ? (double)b.as.i : b.as.d)) /
                                         2.0);
        }
    } else {
        double ss = 0;
        for (size_t i = 0; i < n; i++) {
            double x = vals[i].type == DL_T_INT ? (double)vals[i].as.i : vals[i].as.d;
            ss += (x - mean) * (x - mean);
        }
        double var = ss / (double)n;
        out->v = dl_value_double(f->agg == DL__AGG_VARIANCE ? var : sqrt(var));
    }
    return 0;
}

static int cell_cmp(const dl__cell_t *a, const dl__cell_t *b) {
    if (a->is_coll != b->is_coll)
        return a->is_coll ? 1 : -1;
    if (!a->is_coll)
        return dl_value_cmp(a->v, b->v);
    size_t n = DL_MIN(a->n, b->n);
    for (size_t i = 0; i < n; i++) {
        int k = dl_value_cmp(a->items[i], b->items[i]);
        if (k)
            return k;
    }
    return a->n < b->n ? -1 : a->n > b->n ? 1 : 0;
}

/* qsort_r comparator (glibc: _GNU_SOURCE): rows of *(size_t *)ctx cells. No global
 * state, so evaluations may run on several threads. */
static int row_cmp(const void *a, const void *b, void *ctx) {
    const dl__cell_t *x = a, *y = b;
    size_t n = *(const size_t *)ctx;
    for (size_t i = 0; i < n; i++) {
        int k = cell_cmp(&x[i], &y[i]);
        if (k)
            return k;
    }
    return 0;
}

static int build_result(ectx_t *c, const rel_t *all, dl_query_result_t *res) {
    const dl_query_t *q = c->q;
    size_t nf = q->n_find;
    /* The set of (find vars, with vars) tuples: bag semantics for aggregates come from
     * :with (Datomic). */
    int cols[128] = {0};
    size_t k = 0;
    if (nf + q->n_with > 128)
        return dl_error_set(c->err, DL_ELIMIT, "too many find variables");
    for (size_t i = 0; i < nf; i++) {
        bool dup = false;
        for (size_t j = 0; j < k; j++)
            dup |= cols[j] == q->find[i].var;
        if (!dup)
            cols[k++] = q->find[i].var;
    }
    for (size_t i = 0; i < q->n_with; i++) {
        bool dup = false;
        for (size_t j = 0; j < k; j++)
            dup |= cols[j] == q->with[i];
        if (!dup)
            cols[k++] = q->with[i];
    }
    rel_t proj;
    int rc = rel_init(&proj, k, cols);
    int map[128];
    for (size_t i = 0; i < k; i++)
        map[i] = rel_col(all, cols[i]);
    dl_value_t row[128];
    for (size_t r = 0; r < all->n && !rc; r++) {
        for (size_t i = 0; i < k; i++)
            row[i] = rel_row(all, r)[map[i]];
        rc = rel_add(&proj, row, NULL);
    }
    if (rc) {
        rel_fini(&proj);
        return oom(c);
    }
    res->n_cols = nf;
    if (!q->has_agg) {
        res->n_rows = proj.n;
        res->cells = dl_calloc(DL_MAX(proj.n * nf, 1), sizeof(dl__cell_t));
        if (!res->cells) {
            rel_fini(&proj);
            return oom(c);
        }
        for (size_t r = 0; r < proj.n; r++)
            for (size_t i = 0; i < nf; i++)
                res->cells[r * nf + i].v = rel_row(&proj, r)[rel_col(&proj, q->find[i].var)];
    } else {
        /* Group by the non-aggregate find variables. */
        int gcols[128];
        size_t ng = 0;
        for (size_t i = 0; i < nf; i++)
            if (q->find[i].agg == DL__AGG_NONE) {
                bool dup = false;
                for (size_t j = 0; j < ng; j++)
                    dup |= gcols[j] == q->find[i].var;
                if (!dup)
                    gcols[ng++] = q->find[i].var;
            }
        rel_t groups;
        rc = rel_init(&groups, ng, gcols);
        for (size_t r = 0; r < proj.n && !rc; r++) {
            for (size_t i = 0; i < ng; i++)
                row[i] = rel_row(&proj, r)[rel_col(&proj, gcols[i])];
            rc = rel_add(&groups, row, NULL);
        }
        res->n_rows = groups.n;
        res->n_alloc_rows = groups.n;
        res->cells = dl_calloc(DL_MAX(groups.n * nf, 1), sizeof(dl__cell_t));
        dl_value_t *vals = dl_malloc((proj.n ? proj.n : 1) * sizeof(dl_value_t));
        if (rc || !res->cells || !vals) {
            rc = oom(c);
        }
        for (size_t g = 0; g < groups.n && !rc; g++) {
            const dl_value_t *grow = rel_row(&groups, g);
            for (size_t i = 0; i < nf && !rc; i++) {
                const dl__find_t *f = &q->find[i];
                dl__cell_t *cell = &res->cells[g * nf + i];
                if (f->agg == DL__AGG_NONE) {
                    cell->v = grow[rel_col(&groups, f->var)];
                    continue;
                }
                size_t nv = 0;
                int vcol = rel_col(&proj, f->var);
                for (size_t r = 0; r < proj.n; r++) {
                    const dl_value_t *pr = rel_row(&proj, r);
                    bool match = true;
                    for (size_t j = 0; j < ng && match; j++)
                        match = dl_value_eq(pr[rel_col(&proj, gcols[j])], grow[j]);
                    if (match)
                        vals[nv++] = pr[vcol];
                }
                rc = aggregate(c, f, vals, nv, cell);
            }
        }
        dl_free(vals);
        rel_fini(&groups);
    }
    rel_fini(&proj);
    if (rc)
        return rc;
    res->n_alloc_rows = res->n_rows;
    qsort_r(res->cells, res->n_rows, nf * sizeof(dl__cell_t), row_cmp, &nf);
    if ((q->find_kind == DL_FIND_TUPLE || q->find_kind == DL_FIND_SCALAR) && res->n_rows > 1)
        res->n_rows = 1; /* Datomic returns one (unspecified) tuple: here the least. */
    return 0;
}

int dl__eval_aggregate(const dl__find_t *f, dl_value_t *vals, size_t n, dl__cell_t *out,
                       dl_error_t *err) {
    ectx_t c = {NULL, NULL, NULL, err, NULL};
    return aggregate(&c, f, vals, n, out);
}

int dl__eval_run(const dl_query_t *q, const dl_query_source_t *sources, size_t n_sources,
                 const char *args, size_t args_len, dl_query_result_t *res, dl_error_t *err) {
    ectx_t c = {q, NULL, NULL, err, NULL};
    int rc = 0;
    dl_arena_t arena;
    dl__arena_init(&arena, 4096);
    rel_t cur;
    memset(&cur, 0, sizeof cur);
    c.dbs = dl_calloc(q->n_srcs, sizeof *c.dbs);
    c.rule_rel = dl_calloc(DL_MAX(q->n_rules * q->n_srcs, 1), sizeof *c.rule_rel);
    if (!c.dbs || !c.rule_rel) {
        rc = oom(&c);
        goto out;
    }
    for (size_t i = 0; i < q->n_in; i++) {
        if (q->in[i].kind != DL__IN_SRC)
            continue;
        const char *name = q->srcs[q->in[i].src]->bytes;
        for (size_t s = 0; s < n_sources; s++)
            if (sources[s].name && strcmp(sources[s].name, name) == 0)
                c.dbs[q->in[i].src] = sources[s].db;
        if (!c.dbs[q->in[i].src]) {
            rc = dl_error_set(err, DL_EINVAL, "no database supplied for %s", name);
            goto out;
        }
        rc = dl__analyze_check_schema(q, c.dbs[q->in[i].src], err);
        if (rc)
            goto out;
    }
    c.entity_vars = dl_calloc(dl__analyze_words(q), sizeof(uint64_t));
    if (!c.entity_vars) {
        rc = oom(&c);
        goto out;
    }
    dl__analyze_entity_vars(q, c.dbs[0], c.entity_vars);
    rc = rel_unit(&cur);
    if (rc) {
        rc = oom(&c);
        goto out;
    }
    size_t n_bind = dl_query_n_args(q);
    const dl_edn_t *argv = NULL;
    if (args && args_len) {
        rc = dl__edn_read_one(args, args_len, &arena, (dl_edn_t **)&argv, err);
        if (rc) {
            dl_error_prefix(err, "query arguments");
            goto out;
        }
        if (argv->kind != DL_EDN_VECTOR) {
            rc = dl_error_set(err, DL_EINVAL, "query arguments are a vector, one per :in binding");
            goto out;
        }
    }
    if ((argv ? argv->n : 0) != n_bind) {
        rc = dl_error_set(err, DL_EINVAL, "the query takes %zu argument%s, %zu given", n_bind,
                          n_bind == 1 ? "" : "s", argv ? argv->n : 0);
        goto out;
    }
    for (size_t i = 0, k = 0; i < q->n_in && !rc; i++)
        if (q->in[i].kind == DL__IN_BIND)
            rc = bind_input(&c, &q->in[i].bind, args, args_len, argv->items[k++], &cur);
    if (rc)
        goto out;
    rel_t all;
    rc = eval_conj(&c, q->where, q->n_where, 0, &cur, &all);
    if (rc)
        goto out;
    rc = build_result(&c, &all, res);
    rel_fini(&all);
out:
    rel_fini(&cur);
    if (c.rule_rel)
        for (size_t i = 0; i < q->n_rules * q->n_srcs; i++) {
            rel_fini(c.rule_rel[i]);
            dl_free(c.rule_rel[i]);
        }
    dl_free(c.rule_rel);
    dl_free(c.dbs);
    dl_free(c.entity_vars);
    dl__arena_fini(&arena);
    return rc;
}
