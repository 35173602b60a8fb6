/*
 * parse.c: the query parser: EDN forms (base/edn.c) to the arena AST of datalog.h, for
 * both the vector form [:find ... :in ... :with ... :where ...] and the map form, and
 * for rule sets (the value bound to % in :in).
 *
 * It checks syntax, names (functions, aggregates, rules) and arities; range restriction,
 * stratification and attributes are analyze.c's. Every error points at the offending
 * form with line, column and a caret (dl__edn_error_at). Follows docs/datalog.md
 * "Language".
 */
#include "datalog/datalog.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct pctx {
    dl_query_t *q;
    const char *text; /* the text forms currently parsed were read from */
    size_t len;
    int scope; /* 0 for the query, r+1 inside rule definition r */
    dl_error_t *err;
} pctx_t;

int dl__parse_error(dl_error_t *err, int code, const char *text, size_t len, const dl_edn_t *f,
                    const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!f || !text)
        return dl_error_set(err, code, "%s", msg);
    return dl__edn_error_at(err, code, text, len, f->offset, f->line, f->column, "%s", msg);
}

#define PERR(c, code, f, ...) dl__parse_error((c)->err, code, (c)->text, (c)->len, f, __VA_ARGS__)

const char *dl__parse_var_name(const dl_query_t *q, int var) {
    if (var < 0 || (size_t)var >= q->n_vars)
        return "_";
    return q->vars[var].name->bytes;
}

static bool sym_is(const dl_edn_t *f, const char *s) {
    return f && f->kind == DL_EDN_SYMBOL && strcmp(f->sym->bytes, s) == 0;
}
static bool is_var_sym(const dl_edn_t *f) {
    return f && f->kind == DL_EDN_SYMBOL && f->sym->bytes[0] == '?' && f->sym->len > 1;
}
static bool is_src_sym(const dl_edn_t *f) {
    return f && f->kind == DL_EDN_SYMBOL && f->sym->bytes[0] == '$';
}
static bool is_blank(const dl_edn_t *f) { return sym_is(f, "_"); }

static void *alloc_n(pctx_t *c, size_t n, size_t size) {
    void *p = dl__arena_calloc(&c->q->arena, (n ? n : 1) * size);
    if (!p)
        dl_error_set(c->err, DL_ENOMEM, "out of memory parsing the query");
    return p;
}

/* The index of variable `name` in the current scope, adding it if new; -1 on OOM. */
static int intern_var(pctx_t *c, const dl_sym_t *name) {
    dl_query_t *q = c->q;
    for (size_t i = 0; i < q->n_vars; i++)
        if (q->vars[i].name == name && q->vars[i].scope == c->scope)
            return (int)i;
    if (q->n_vars == q->cap_vars) {
        size_t cap = q->cap_vars ? 2 * q->cap_vars : 32;
        dl__var_t *v = alloc_n(c, cap, sizeof *v);
        if (!v)
            return -1;
        if (q->n_vars)
            memcpy(v, q->vars, q->n_vars * sizeof *v);
        q->vars = v;
        q->cap_vars = cap;
    }
    q->vars[q->n_vars].name = name;
    q->vars[q->n_vars].scope = c->scope;
    return (int)q->n_vars++;
}

static int intern_src(pctx_t *c, const dl_sym_t *name) {
    dl_query_t *q = c->q;
    for (size_t i = 0; i < q->n_srcs; i++)
        if (q->srcs[i] == name)
            return (int)i;
    const dl_sym_t **s = alloc_n(c, q->n_srcs + 1, sizeof *s);
    if (!s)
        return -1;
    if (q->n_srcs)
        memcpy(s, q->srcs, q->n_srcs * sizeof *s);
    s[q->n_srcs] = name;
    q->srcs = s;
    return (int)q->n_srcs++;
}

static int var_of(pctx_t *c, const dl_edn_t *f, int *out) {
    if (!is_var_sym(f))
        return PERR(c, DL_EPARSE, f, "expected a variable (?name)");
    int v = intern_var(c, f->sym);
    if (v < 0)
        return DL_ENOMEM;
    *out = v;
    return 0;
}

/* A term in a data pattern or in a rule call: variable, _, scalar constant, or (entity
 * and value positions) a lookup ref vector. */
static int parse_term(pctx_t *c, const dl_edn_t *f, bool allow_form, bool allow_src,
                      dl__term_t *t) {
    memset(t, 0, sizeof *t);
    t->form = f;
    switch (f->kind) {
        case DL_EDN_SYMBOL:
            if (is_blank(f)) {
                t->kind = DL__TERM_BLANK;
                return 0;
            }
            if (is_var_sym(f)) {
                t->kind = DL__TERM_VAR;
                return var_of(c, f, &t->var);
            }
            if (is_src_sym(f) && allow_src) {
                t->kind = DL__TERM_SRC;
                t->src = intern_src(c, f->sym);
                return t->src < 0 ? DL_ENOMEM : 0;
            }
            return PERR(c, DL_EPARSE, f, "unexpected symbol %s (variables start with ?)",
                        f->sym->bytes);
        case DL_EDN_VALUE:
            t->kind = DL__TERM_CONST;
            t->value = f->value;
            return 0;
        case DL_EDN_CHAR:
            return PERR(c, DL_EPARSE, f, "characters are not values in deltalog");
        default:
            if (allow_form && f->kind != DL_EDN_TAGGED) {
                t->kind = DL__TERM_FORM;
                return 0;
            }
            return PERR(c, DL_EPARSE, f, "expected a variable, _ or a constant");
    }
}

/* [vars] with no duplicates, for not-join, or-join and rule heads. */
static int parse_var_vector(pctx_t *c, const dl_edn_t *f, size_t *out_n, int **out_vars) {
    if (f->kind != DL_EDN_VECTOR)
        return PERR(c, DL_EPARSE, f, "expected a vector of variables");
    int *vars = alloc_n(c, f->n, sizeof *vars);
    if (!vars)
        return DL_ENOMEM;
    for (size_t i = 0; i < f->n; i++) {
        int rc = var_of(c, f->items[i], &vars[i]);
        if (rc)
            return rc;
        for (size_t j = 0; j < i; j++)
            if (vars[j] == vars[i])
                return PERR(c, DL_EPARSE, f->items[i], "variable %s appears twice",
                            f->items[i]->sym->bytes);
    }
    *out_n = f->n;
    *out_vars = vars;
    return 0;
}

/* Binding forms: ?x, _, [?a ?b], [?x ...], [[?a ?b]]. */
static int parse_bind(pctx_t *c, const dl_edn_t *f, dl__bind_t *b) {
    memset(b, 0, sizeof *b);
    b->form = f;
    const dl_edn_t *vars = NULL;
    if (f->kind == DL_EDN_SYMBOL) {
        b->kind = DL__BIND_SCALAR;
        b->n = 1;
        b->vars = alloc_n(c, 1, sizeof(int));
        if (!b->vars)
            return DL_ENOMEM;
        if (is_blank(f)) {
            b->vars[0] = -1;
            return 0;
        }
        return var_of(c, f, &b->vars[0]);
    }
    if (f->kind != DL_EDN_VECTOR || f->n == 0)
        return PERR(c, DL_EPARSE, f, "expected a binding form: ?x, [?a ?b], [?x ...] or [[?a ?b]]");
    if (f->n == 2 && sym_is(f->items[1], "...")) {
        b->kind = DL__BIND_COLL;
        b->n = 1;
        vars = f;
        b->vars = alloc_n(c, 1, sizeof(int));
        if (!b->vars)
            return DL_ENOMEM;
        if (is_blank(f->items[0])) {
            b->vars[0] = -1;
            return 0;
        }
        return var_of(c, f->items[0], &b->vars[0]);
    }
    if (f->n == 1 && f->items[0]->kind == DL_EDN_VECTOR) {
        b->kind = DL__BIND_REL;
        vars = f->items[0];
        if (vars->n == 0)
            return PERR(c, DL_EPARSE, vars, "a relation binding needs at least one variable");
    } else {
        b->kind = DL__BIND_TUPLE;
        vars = f;
    }
    b->n = vars->n;
    if (b->n > DL__MAX_WIDTH)
        return PERR(c, DL_ELIMIT, f, "a binding form has at most %d variables", DL__MAX_WIDTH);
    b->vars = alloc_n(c, b->n, sizeof(int));
    if (!b->vars)
        return DL_ENOMEM;
    for (size_t i = 0; i < vars->n; i++) {
        if (is_blank(vars->items[i])) {
            b->vars[i] = -1;
            continue;
        }
        int rc = var_of(c, vars->items[i], &b->vars[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static int rule_index(const dl_query_t *q, const dl_sym_t *name) {
    for (size_t i = 0; i < q->n_rules; i++)
        if (q->rules[i].name == name)
            return (int)i;
    return -1;
}

static int parse_clause(pctx_t *c, const dl_edn_t *f, bool allow_and, dl__clause_t **out);

static int parse_body(pctx_t *c, const dl_edn_t *const *items, size_t n, size_t *out_n,
                      dl__clause_t ***out) {
    dl__clause_t **body = alloc_n(c, n, sizeof *body);
    if (!body)
        return DL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = parse_clause(c, items[i], false, &body[i]);
        if (rc)
            return rc;
    }
    *out_n = n;
    *out = body;
    return 0;
}

static int parse_call(pctx_t *c, const dl_edn_t *call, const dl_edn_t *bind, dl__clause_t *cl) {
    if (call->n == 0 || call->items[0]->kind != DL_EDN_SYMBOL)
        return PERR(c, DL_EPARSE, call, "expected (function args...)");
    const dl_edn_t *head = call->items[0];
    int id = dl__builtin_find(head->sym->bytes, head->sym->len);
    if (id < 0)
        return PERR(c, DL_ENOTFOUND, head, "unknown function %s", head->sym->bytes);
    const dl__builtin_t *bi = dl__builtin_get(id);
    if (bi->flags & DL__BI_UNSUPPORTED)
        return PERR(c, DL_EUNSUPPORTED, head, "%s is not supported (deltalog has no tuple values)",
                    bi->name);
    size_t n = call->n - 1;
    if ((int)n < bi->min_args || (bi->max_args >= 0 && (int)n > bi->max_args)) {
        char want[48];
        if (bi->max_args < 0)
            snprintf(want, sizeof want, "at least %d", bi->min_args);
        else if (bi->max_args == bi->min_args)
            snprintf(want, sizeof want, "%d", bi->min_args);
        else
            snprintf(want, sizeof want, "%d to %d", bi->min_args, bi->max_args);
        return PERR(c, DL_EARITY, call, "%s takes %s argument%s, got %zu", bi->name, want,
                    bi->max_args == 1 ? "" : "s", n);
    }
    if (n > DL__MAX_WIDTH)
        return PERR(c, DL_ELIMIT, call, "at most %d arguments", DL__MAX_WIDTH);
    cl->fn = id;
    cl->n_args = n;
    cl->args = alloc_n(c, n, sizeof *cl->args);
    if (!cl->args)
        return DL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const dl_edn_t *a = call->items[i + 1];
        bool want_src = (bi->flags & DL__BI_DB) && i == 0;
        if (want_src && !is_src_sym(a))
            return PERR(c, DL_EPARSE, a, "%s takes a source ($) as its first argument", bi->name);
        if (!want_src && is_src_sym(a))
            return PERR(c, DL_EPARSE, a, "a source is not a value");
        if (is_blank(a))
            return PERR(c, DL_EPARSE, a, "_ is not allowed as a function argument");
        int rc = parse_term(c, a, (bi->flags & DL__BI_GROUND) != 0, want_src, &cl->args[i]);
        if (rc)
            return rc;
        if (want_src)
            cl->src = cl->args[i].src;
    }
    if (!bind) {
        cl->kind = DL__C_PRED;
        return 0;
    }
    cl->kind = DL__C_FN;
    return parse_bind(c, bind, &cl->bind);
}

static int parse_clause(pctx_t *c, const dl_edn_t *f, bool allow_and, dl__clause_t **out) {
    dl__clause_t *cl = alloc_n(c, 1, sizeof *cl);
    if (!cl)
        return DL_ENOMEM;
    *out = cl;
    cl->form = f;
    cl->text = c->text;
    cl->text_len = c->len;
    if (f->kind == DL_EDN_VECTOR) {
        if (f->n == 0)
            return PERR(c, DL_EPARSE, f, "empty clause");
        if (f->items[0]->kind == DL_EDN_LIST) {
            if (f->n > 2)
                return PERR(c, DL_EPARSE, f->items[2],
                            "a function clause has one binding form after the call");
            return parse_call(c, f->items[0], f->n == 2 ? f->items[1] : NULL, cl);
        }
        size_t start = 0;
        cl->kind = DL__C_PATTERN;
        if (is_src_sym(f->items[0])) {
            cl->src = intern_src(c, f->items[0]->sym);
            if (cl->src < 0)
                return DL_ENOMEM;
            start = 1;
        }
        size_t n = f->n - start;
        if (n == 0)
            return PERR(c, DL_EPARSE, f, "a data pattern needs at least an entity");
        if (n > 5)
            return PERR(c, DL_EPARSE, f->items[start + 5],
                        "a data pattern has at most 5 positions [e a v tx added]");
        cl->n_args = 5;
        cl->args = alloc_n(c, 5, sizeof *cl->args);
        if (!cl->args)
            return DL_ENOMEM;
        for (size_t i = 0; i < 5; i++) {
            if (i >= n) {
                cl->args[i].kind = DL__TERM_BLANK;
                continue;
            }
            int rc = parse_term(c, f->items[start + i], i == 0 || i == 2, false, &cl->args[i]);
            if (rc)
                return rc;
        }
        if (cl->args[1].kind == DL__TERM_CONST && cl->args[1].value.type != DL_T_KEYWORD &&
            cl->args[1].value.type != DL_T_INT && cl->args[1].value.type != DL_T_REF)
            return PERR(c, DL_EPARSE, cl->args[1].form,
                        "the attribute position takes a keyword or a variable");
        return 0;
    }
    if (f->kind != DL_EDN_LIST || f->n == 0)
        return PERR(c, DL_EPARSE, f, "a clause is a vector [...] or a list (...)");
    size_t k = 0;
    cl->src = 0;
    if (is_src_sym(f->items[0])) {
        cl->src = intern_src(c, f->items[0]->sym);
        if (cl->src < 0)
            return DL_ENOMEM;
        k = 1;
        if (f->n < 2)
            return PERR(c, DL_EPARSE, f, "expected a clause after the source");
    }
    const dl_edn_t *head = f->items[k];
    if (head->kind != DL_EDN_SYMBOL)
        return PERR(c, DL_EPARSE, head, "expected not, not-join, or, or-join, and or a rule name");
    const char *h = head->sym->bytes;
    const dl_edn_t *const *rest = (const dl_edn_t *const *)f->items + k + 1;
    size_t n_rest = f->n - k - 1;
    if (strcmp(h, "not") == 0) {
        cl->kind = DL__C_NOT;
        if (n_rest == 0)
            return PERR(c, DL_EPARSE, f, "not needs at least one clause");
        return parse_body(c, rest, n_rest, &cl->n_body, &cl->body);
    }
    if (strcmp(h, "not-join") == 0) {
        cl->kind = DL__C_NOT_JOIN;
        if (n_rest < 2)
            return PERR(c, DL_EPARSE, f, "not-join needs [vars] and at least one clause");
        int rc = parse_var_vector(c, rest[0], &cl->n_join, &cl->join);
        if (rc)
            return rc;
        return parse_body(c, rest + 1, n_rest - 1, &cl->n_body, &cl->body);
    }
    if (strcmp(h, "or") == 0 || strcmp(h, "or-join") == 0) {
        bool join = h[2] == '-';
        cl->kind = join ? DL__C_OR_JOIN : DL__C_OR;
        if (join) {
            if (n_rest < 2)
                return PERR(c, DL_EPARSE, f, "or-join needs [vars] and at least one branch");
            const dl_edn_t *jv = rest[0];
            if (jv->kind != DL_EDN_VECTOR)
                return PERR(c, DL_EPARSE, jv, "expected a vector of variables");
            size_t n_req = 0, n_req_vars = 0;
            int *req = NULL, *others = NULL;
            size_t n_others = 0;
            if (jv->n > 0 && jv->items[0]->kind == DL_EDN_VECTOR) {
                int rc = parse_var_vector(c, jv->items[0], &n_req_vars, &req);
                if (rc)
                    return rc;
                n_req = 1;
            }
            /* The remaining variables, as a vector view without the [required] part. */
            dl_edn_t tmp = *jv;
            tmp.items = jv->items + n_req;
            tmp.n = jv->n - n_req;
            int rc = parse_var_vector(c, &tmp, &n_others, &others);
            if (rc)
                return rc;
            cl->n_join = n_req_vars + n_others;
            cl->join = alloc_n(c, cl->n_join, sizeof(int));
            if (!cl->join)
                return DL_ENOMEM;
            if (n_req_vars)
                memcpy(cl->join, req, n_req_vars * sizeof(int));
            if (n_others)
                memcpy(cl->join + n_req_vars, others, n_others * sizeof(int));
            cl->n_req = n_req_vars;
            rest++;
            n_rest--;
        } else if (n_rest == 0) {
            return PERR(c, DL_EPARSE, f, "or needs at least one branch");
        }
        cl->n_body = n_rest;
        cl->body = alloc_n(c, n_rest, sizeof *cl->body);
        if (!cl->body)
            return DL_ENOMEM;
        for (size_t i = 0; i < n_rest; i++) {
            int rc = parse_clause(c, rest[i], true, &cl->body[i]);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (strcmp(h, "and") == 0) {
        if (!allow_and)
            return PERR(c, DL_EPARSE, f, "and is only allowed as a branch of or / or-join");
        cl->kind = DL__C_AND;
        if (n_rest == 0)
            return PERR(c, DL_EPARSE, f, "and needs at least one clause");
        return parse_body(c, rest, n_rest, &cl->n_body, &cl->body);
    }
    /* A rule invocation. */
    int r = rule_index(c->q, head->sym);
    if (r < 0) {
        if (dl__builtin_find(h, head->sym->len) >= 0)
            return PERR(c, DL_EPARSE, f, "function calls are written in a vector: [(%s ...)]", h);
        return PERR(c, DL_ENOTFOUND, head, "unknown rule %s%s", h,
                    c->q->uses_rules ? "" : " (no rules: add % to :in)");
    }
    const dl__rule_t *rule = &c->q->rules[r];
    if (n_rest != rule->arity)
        return PERR(c, DL_EARITY, f, "rule %s takes %zu argument%s, got %zu", h, rule->arity,
                    rule->arity == 1 ? "" : "s", n_rest);
    cl->kind = DL__C_RULE;
    cl->fn = r;
    cl->n_args = n_rest;
    cl->args = alloc_n(c, n_rest, sizeof *cl->args);
    if (!cl->args)
        return DL_ENOMEM;
    for (size_t i = 0; i < n_rest; i++) {
        int rc = parse_term(c, rest[i], false, false, &cl->args[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- rules ------------------------------------------------------------------------------ */

/* Pass 1: names, arities and required arguments of every rule; pass 2: bodies. */
static int parse_rules(pctx_t *c) {
    dl_query_t *q = c->q;
    c->text = q->rules_text;
    c->len = q->rules_len;
    dl_edn_t *root = NULL;
    int rc = dl__edn_read_one(q->rules_text, q->rules_len, &q->arena, &root, c->err);
    if (rc) {
        dl_error_prefix(c->err, "rules");
        return rc;
    }
    if (root->kind != DL_EDN_VECTOR)
        return PERR(c, DL_EPARSE, root, "rules are a vector of [(name args...) clauses...]");
    q->rules = alloc_n(c, root->n, sizeof *q->rules);
    if (!q->rules)
        return DL_ENOMEM;
    for (size_t i = 0; i < root->n; i++) {
        const dl_edn_t *rf = root->items[i];
        if (rf->kind != DL_EDN_VECTOR || rf->n < 2 || rf->items[0]->kind != DL_EDN_LIST ||
            rf->items[0]->n == 0 || rf->items[0]->items[0]->kind != DL_EDN_SYMBOL)
            return PERR(c, DL_EPARSE, rf, "a rule is [(name args...) clause ...]");
        const dl_edn_t *head = rf->items[0];
        const dl_edn_t *name = head->items[0];
        if (is_var_sym(name) || is_src_sym(name) || is_blank(name))
            return PERR(c, DL_EPARSE, name, "invalid rule name %s", name->sym->bytes);
        static const char *reserved[] = {"not", "not-join", "or", "or-join", "and"};
        for (size_t k = 0; k < DL_ARRAY_LEN(reserved); k++)
            if (strcmp(name->sym->bytes, reserved[k]) == 0)
                return PERR(c, DL_EPARSE, name, "%s cannot name a rule", reserved[k]);
        size_t n_req = 0, arity = head->n - 1;
        if (head->n > 1 && head->items[1]->kind == DL_EDN_VECTOR) {
            n_req = head->items[1]->n;
            arity = n_req + head->n - 2;
            if (n_req == 0)
                return PERR(c, DL_EPARSE, head->items[1], "empty required-variables vector");
        }
        if (arity > DL__MAX_WIDTH)
            return PERR(c, DL_ELIMIT, head, "a rule takes at most %d arguments", DL__MAX_WIDTH);
        if (arity == 0)
            return PERR(c, DL_EPARSE, head, "a rule needs at least one argument");
        int r = rule_index(q, name->sym);
        if (r < 0) {
            r = (int)q->n_rules++;
            q->rules[r].name = name->sym;
            q->rules[r].arity = arity;
            q->rules[r].n_req = n_req;
            q->rules[r].form = rf;
        } else if (q->rules[r].arity != arity || q->rules[r].n_req != n_req) {
            return PERR(c, DL_EARITY, head,
                        "rule %s is defined with %zu argument%s (%zu required) here but %zu "
                        "(%zu required) before",
                        name->sym->bytes, arity, arity == 1 ? "" : "s", n_req, q->rules[r].arity,
                        q->rules[r].n_req);
        }
        q->rules[r].n_defs++;
    }
    for (size_t r = 0; r < q->n_rules; r++) {
        q->rules[r].defs = alloc_n(c, q->rules[r].n_defs, sizeof(dl__rule_def_t));
        if (!q->rules[r].defs)
            return DL_ENOMEM;
        q->rules[r].n_defs = 0;
    }
    for (size_t i = 0; i < root->n; i++) {
        const dl_edn_t *rf = root->items[i];
        const dl_edn_t *head = rf->items[0];
        dl__rule_t *rule = &q->rules[rule_index(q, head->items[0]->sym)];
        dl__rule_def_t *d = &rule->defs[rule->n_defs++];
        c->scope = (int)i + 1;
        d->form = rf;
        d->arity = rule->arity;
        d->head = alloc_n(c, d->arity, sizeof(int));
        if (!d->head)
            return DL_ENOMEM;
        size_t k = 0;
        for (size_t j = 1; j < head->n; j++) {
            const dl_edn_t *a = head->items[j];
            size_t m = 1;
            const dl_edn_t *const *vs = (const dl_edn_t *const *)&head->items[j];
            if (a->kind == DL_EDN_VECTOR && j == 1) {
                m = a->n;
                vs = (const dl_edn_t *const *)a->items;
            }
            for (size_t t = 0; t < m; t++) {
                rc = var_of(c, vs[t], &d->head[k]);
                if (rc)
                    return rc;
                for (size_t u = 0; u < k; u++)
                    if (d->head[u] == d->head[k])
                        return PERR(c, DL_EPARSE, vs[t], "variable %s appears twice in a rule head",
                                    vs[t]->sym->bytes);
                k++;
            }
        }
        rc = parse_body(c, (const dl_edn_t *const *)rf->items + 1, rf->n - 1, &d->n_body, &d->body);
        if (rc)
            return rc;
    }
    c->scope = 0;
    c->text = q->text;
    c->len = q->text_len;
    return 0;
}

/* ---- find, with, in --------------------------------------------------------------------- */

static const struct {
    const char *name;
    dl__agg_t agg, agg_n;
} aggs[] = {
    {"count", DL__AGG_COUNT, DL__AGG_NONE},
    {"count-distinct", DL__AGG_COUNT_DISTINCT, DL__AGG_NONE},
    {"sum", DL__AGG_SUM, DL__AGG_NONE},
    {"avg", DL__AGG_AVG, DL__AGG_NONE},
    {"median", DL__AGG_MEDIAN, DL__AGG_NONE},
    {"variance", DL__AGG_VARIANCE, DL__AGG_NONE},
    {"stddev", DL__AGG_STDDEV, DL__AGG_NONE},
    {"min", DL__AGG_MIN, DL__AGG_MIN_N},
    {"max", DL__AGG_MAX, DL__AGG_MAX_N},
    {"distinct", DL__AGG_DISTINCT, DL__AGG_NONE},
};

static int parse_find_elem(pctx_t *c, const dl_edn_t *f, dl__find_t *out) {
    memset(out, 0, sizeof *out);
    out->form = f;
    if (f->kind == DL_EDN_SYMBOL)
        return var_of(c, f, &out->var);
    if (f->kind != DL_EDN_LIST || f->n == 0 || f->items[0]->kind != DL_EDN_SYMBOL)
        return PERR(c, DL_EPARSE, f, "a find element is a variable or an aggregate (fn ?x)");
    const char *h = f->items[0]->sym->bytes;
    if (strcmp(h, "pull") == 0)
        return PERR(c, DL_EUNSUPPORTED, f, "pull expressions are not supported");
    if (strcmp(h, "rand") == 0 || strcmp(h, "sample") == 0)
        return PERR(c, DL_EUNSUPPORTED, f,
                    "%s is not supported (results must be deterministic for live queries)", h);
    for (size_t i = 0; i < DL_ARRAY_LEN(aggs); i++) {
        if (strcmp(h, aggs[i].name) != 0)
            continue;
        if (f->n == 2) {
            out->agg = aggs[i].agg;
            return var_of(c, f->items[1], &out->var);
        }
        if (f->n == 3 && aggs[i].agg_n != DL__AGG_NONE) {
            const dl_edn_t *n = f->items[1];
            if (n->kind != DL_EDN_VALUE || n->value.type != DL_T_INT || n->value.as.i < 1)
                return PERR(c, DL_EPARSE, n, "(%s n ?x) takes a positive integer n", h);
            out->agg = aggs[i].agg_n;
            out->n = n->value.as.i;
            return var_of(c, f->items[2], &out->var);
        }
        return PERR(c, DL_EARITY, f, "wrong number of arguments to aggregate %s", h);
    }
    return PERR(c, DL_ENOTFOUND, f->items[0], "unknown aggregate %s", h);
}

static int parse_find(pctx_t *c, const dl_edn_t *const *items, size_t n, const dl_edn_t *at) {
    dl_query_t *q = c->q;
    if (n == 0)
        return PERR(c, DL_EPARSE, at, ":find needs at least one element");
    const dl_edn_t *const *elems = items;
    size_t m = n;
    q->find_kind = DL_FIND_REL;
    if (n == 2 && sym_is(items[1], ".")) {
        q->find_kind = DL_FIND_SCALAR;
        m = 1;
    } else if (n == 1 && items[0]->kind == DL_EDN_VECTOR) {
        const dl_edn_t *v = items[0];
        if (v->n == 2 && sym_is(v->items[1], "...")) {
            q->find_kind = DL_FIND_COLL;
            m = 1;
        } else {
            q->find_kind = DL_FIND_TUPLE;
            m = v->n;
            if (m == 0)
                return PERR(c, DL_EPARSE, v, "an empty tuple find spec");
        }
        elems = (const dl_edn_t *const *)v->items;
    }
    for (size_t i = 0; i < m; i++)
        if (sym_is(elems[i], ".") || sym_is(elems[i], "..."))
            return PERR(c, DL_EPARSE, elems[i], "misplaced %s in :find", elems[i]->sym->bytes);
    if (m > DL__MAX_WIDTH)
        return PERR(c, DL_ELIMIT, at, "at most %d find elements", DL__MAX_WIDTH);
    q->n_find = m;
    q->find = alloc_n(c, m, sizeof *q->find);
    if (!q->find)
        return DL_ENOMEM;
    for (size_t i = 0; i < m; i++) {
        int rc = parse_find_elem(c, elems[i], &q->find[i]);
        if (rc)
            return rc;
        if (q->find[i].agg != DL__AGG_NONE)
            q->has_agg = true;
    }
    return 0;
}

static int parse_keys(pctx_t *c, dl_keys_kind_t kind, const dl_edn_t *const *items, size_t n,
                      const dl_edn_t *at) {
    dl_query_t *q = c->q;
    if (q->keys_kind != DL_KEYS_NONE)
        return PERR(c, DL_EPARSE, at, "only one of :keys, :strs, :syms");
    q->keys_kind = kind;
    q->keys = alloc_n(c, n, sizeof *q->keys);
    if (!q->keys)
        return DL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (items[i]->kind != DL_EDN_SYMBOL)
            return PERR(c, DL_EPARSE, items[i], "keys are symbols");
        q->keys[i] = items[i]->sym;
    }
    if (n != q->n_find || q->find_kind != DL_FIND_REL)
        return PERR(c, DL_EARITY, at, "%zu key%s for %zu find element%s%s", n, n == 1 ? "" : "s",
                    q->n_find, q->n_find == 1 ? "" : "s",
                    q->find_kind != DL_FIND_REL ? " (keys need a relation find spec)" : "");
    return 0;
}

static int parse_in(pctx_t *c, const dl_edn_t *const *items, size_t n) {
    dl_query_t *q = c->q;
    q->n_in = n;
    q->in = alloc_n(c, n, sizeof *q->in);
    if (!q->in)
        return DL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const dl_edn_t *f = items[i];
        dl__input_t *in = &q->in[i];
        in->form = f;
        if (is_src_sym(f)) {
            in->kind = DL__IN_SRC;
            in->src = intern_src(c, f->sym);
            if (in->src < 0)
                return DL_ENOMEM;
            for (size_t j = 0; j < i; j++)
                if (q->in[j].kind == DL__IN_SRC && q->in[j].src == in->src)
                    return PERR(c, DL_EPARSE, f, "source %s appears twice in :in", f->sym->bytes);
        } else if (sym_is(f, "%")) {
            in->kind = DL__IN_RULES;
        } else {
            in->kind = DL__IN_BIND;
            int rc = parse_bind(c, f, &in->bind);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Splits the vector form into sections: name → items. */
typedef struct section {
    const char *name;
    const dl_edn_t *at;
    const dl_edn_t *const *items;
    size_t n;
} section_t;

static const char *const section_names[] = {":find", ":with", ":in",  ":where",
                                            ":keys", ":strs", ":syms"};

static int sections_of(pctx_t *c, const dl_edn_t *root, section_t *s) {
    if (root->kind == DL_EDN_VECTOR) {
        size_t i = 0;
        if (root->n == 0)
            return PERR(c, DL_EPARSE, root, "empty query");
        while (i < root->n) {
            const dl_edn_t *k = root->items[i];
            int which = -1;
            if (k->kind == DL_EDN_VALUE && k->value.type == DL_T_KEYWORD)
                for (size_t j = 0; j < DL_ARRAY_LEN(section_names); j++)
                    if (dl__edn_is_keyword(k, section_names[j] + 1))
                        which = (int)j;
            if (which < 0 || (i == 0 && which != 0))
                return PERR(c, DL_EPARSE, k,
                            i == 0 ? "a query starts with :find"
                                   : "expected :find, :with, :in, :where, :keys, :strs or :syms");
            if (s[which].at)
                return PERR(c, DL_EPARSE, k, "%s appears twice", section_names[which]);
            size_t j = i + 1;
            while (j < root->n) {
                const dl_edn_t *x = root->items[j];
                if (x->kind == DL_EDN_VALUE && x->value.type == DL_T_KEYWORD) {
                    bool is_sec = false;
                    for (size_t t = 0; t < DL_ARRAY_LEN(section_names); t++)
                        if (dl__edn_is_keyword(x, section_names[t] + 1))
                            is_sec = true;
                    if (is_sec)
                        break;
                }
                j++;
            }
            s[which].at = k;
            s[which].items = (const dl_edn_t *const *)root->items + i + 1;
            s[which].n = j - i - 1;
            i = j;
        }
        return 0;
    }
    if (root->kind == DL_EDN_MAP) {
        for (size_t i = 0; i + 1 < root->n; i += 2) {
            const dl_edn_t *k = root->items[i], *v = root->items[i + 1];
            int which = -1;
            for (size_t j = 0; j < DL_ARRAY_LEN(section_names); j++)
                if (dl__edn_is_keyword(k, section_names[j] + 1))
                    which = (int)j;
            if (which < 0)
                return PERR(c, DL_EPARSE, k, "unknown query key");
            if (v->kind != DL_EDN_VECTOR)
                return PERR(c, DL_EPARSE, v, "%s takes a vector", section_names[which]);
            s[which].at = k;
            s[which].items = (const dl_edn_t *const *)v->items;
            s[which].n = v->n;
        }
        return 0;
    }
    return PERR(c, DL_EPARSE, root, "a query is a vector [:find ...] or a map {:find [...]}");
}

int dl__parse_query(dl_query_t *q, dl_error_t *err) {
    pctx_t c = {q, q->text, q->text_len, 0, err};
    int rc = dl__edn_read_one(q->text, q->text_len, &q->arena, (dl_edn_t **)&q->root, err);
    if (rc)
        return rc;
    section_t s[DL_ARRAY_LEN(section_names)];
    memset(s, 0, sizeof s);
    rc = sections_of(&c, q->root, s);
    if (rc)
        return rc;
    if (!s[0].at)
        return PERR(&c, DL_EPARSE, q->root, "a query needs :find");
    /* srcs[0] is always $. */
    const dl_sym_t *dollar = NULL;
    if (dl__sym_intern("$", 1, &dollar) || intern_src(&c, dollar) != 0)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    if (s[2].at) {
        rc = parse_in(&c, s[2].items, s[2].n);
        if (rc)
            return rc;
    } else {
        q->n_in = 1;
        q->in = alloc_n(&c, 1, sizeof *q->in);
        if (!q->in)
            return DL_ENOMEM;
        q->in[0].kind = DL__IN_SRC;
        q->in[0].src = 0;
    }
    size_t n_rules_in = 0;
    for (size_t i = 0; i < q->n_in; i++)
        if (q->in[i].kind == DL__IN_RULES) {
            if (n_rules_in++)
                return PERR(&c, DL_EPARSE, q->in[i].form, "%% appears twice in :in");
            q->uses_rules = true;
        }
    if (q->uses_rules) {
        if (!q->rules_text)
            return dl_error_set(err, DL_EINVAL, ":in has %% but no rules were supplied");
        rc = parse_rules(&c);
        if (rc)
            return rc;
    }
    rc = parse_find(&c, s[0].items, s[0].n, s[0].at);
    if (rc)
        return rc;
    for (int k = 4; k <= 6; k++)
        if (s[k].at) {
            rc = parse_keys(&c, (dl_keys_kind_t)(k - 3), s[k].items, s[k].n, s[k].at);
            if (rc)
                return rc;
        }
    if (s[1].at) {
        if (s[1].n > DL__MAX_WIDTH)
            return PERR(&c, DL_ELIMIT, s[1].at, "at most %d :with variables", DL__MAX_WIDTH);
        q->n_with = s[1].n;
        q->with = alloc_n(&c, s[1].n, sizeof(int));
        if (!q->with)
            return DL_ENOMEM;
        for (size_t i = 0; i < s[1].n; i++) {
            rc = var_of(&c, s[1].items[i], &q->with[i]);
            if (rc)
                return rc;
        }
    }
    if (!s[3].at || s[3].n == 0)
        return PERR(&c, DL_EPARSE, s[3].at ? s[3].at : q->root, "a query needs :where clauses");
    rc = parse_body(&c, s[3].items, s[3].n, &q->n_where, &q->where);
    if (rc)
        return rc;
    /* Sources used in clauses must be declared in :in. */
    for (size_t i = 0; i < q->n_srcs; i++) {
        bool declared = false;
        for (size_t j = 0; j < q->n_in; j++)
            if (q->in[j].kind == DL__IN_SRC && q->in[j].src == (int)i)
                declared = true;
        if (!declared && i > 0)
            return dl_error_set(err, DL_EPARSE, "source %s is not declared in :in",
                                q->srcs[i]->bytes);
    }
    return 0;
}
