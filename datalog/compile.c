/*
 * compile.c: the planner and compiler from an analyzed query to a dataflow graph
 * (include/deltalog/dataflow.h): the product engine of live and one-shot queries.
 *
 * Plan shape (docs/datalog.md "Compilation"):
 * - Each (source, attribute) the query reads is one input collection of rows [e v], or
 *   [e v tx added] for patterns that bind tx or added; a pattern is one filter-and-project
 *   operator over it, built in the root scope (entered into iterate scopes), or in an
 *   engine a read of the by-value arrangement (lookup_by_value). Identical patterns share
 *   one relation (memo), and dl_arrange returns the existing arrangement for the same
 *   collection and key. A join's static side inside a loop is arranged in the root; a
 *   projection after a join is fused into it (project_fx).
 * - A variable attribute reads the union of the schema's attributes as [e a v].
 * - A conjunction is planned greedily: predicates and negations as soon as their
 *   variables are bound, then the clause of least fanout that shares a variable with what
 *   is bound (the store's attribute statistics; the first clause by the cost of the whole
 *   greedy plan it starts: plan_cost), a cross product only when no clause is connected
 *   (the query asked for it).
 * - not / not-join: R minus the rows of R that join the body's result (antijoin); the body
 *   is seeded with R's join columns, so it is evaluated only for relevant bindings.
 * - or / or-join and non-recursive rule calls: each branch seeded with R's bound join
 *   columns, unioned, made distinct, joined back.
 * - recursive rules: one iterate scope per strongly connected component and source, one
 *   variable per rule starting from its non-recursive definitions, distinct inside the
 *   loop (set semantics make the fixpoint finite), left once and shared by every call.
 * - missing? / get-else / get-some: antijoins and joins with the attribute's input.
 * - aggregates: a reduce keyed by the grouping variables over the distinct
 *   (find ++ with) rows (no distinct when functional dependencies rule duplicates out;
 *   text keys as interned codes: keycode_t); count/sum grouped through one
 *   cardinality-one attribute are aggregated per entity first (eager aggregation).
 * Relations are sets: every projection that may create duplicates is followed by distinct
 * (unless a distinct follows anyway). docs/datalog.md "Performance" says why each of
 * these is there and what it saves.
 *
 * Not compiled (DL_EUNSUPPORTED; the reference evaluator handles them): a variable
 * attribute with tx / added, get-some on cardinality-many attributes or into bound
 * variables, the database functions on a constant entity, a recursive rule calling itself
 * on another source. Collection-valued aggregates (distinct, (min n ?x), (max n ?x)) are
 * compiled as one string value per group (the EDN text of the collection, interned).
 */
#include "datalog/compile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXC DL_ARITY_MAX

/* A relation of the plan: a collection of the current scope and its column variables. */
typedef struct prel {
    dl_coll_t *coll;
    size_t arity;
    int vars[MAXC]; /* column -> variable; -1 for a dummy column */
    double est;     /* estimated rows */
} prel_t;

typedef struct cctx {
    dl_live_t *L;
    const dl_query_t *q;
    const dl_db_t *db;
    dl_scope_t *scope;   /* where new operators go */
    int cur_scc;         /* the SCC being built in `scope`, or -1 */
    dl_coll_t **rule_in; /* per rule: its variable's collection while its SCC is built */
    int src;             /* the source of clauses that name none (inside ($x not ...)) */
    dl_error_t *err;
    int depth;               /* explain indentation */
    struct jlast *last_join; /* the join built last (project_ex may fuse a projection) */
    /* One-shot plans: the collection made last by a snapshot scan or lookup, and the
     * variable its rows come in the order of (lookups probe in that order for free). */
    dl_coll_t *order_coll;
    int order_var;
    struct llast *last_lookup; /* the lookup join built last (its output may be narrowed) */
} cctx_t;

/* A lookup join's input, parameters and output columns, kept so that a consumer that
 * reads only some columns of its output can have it rebuilt emitting just those. */
typedef struct llast {
    dl_coll_t *coll; /* the lookup's output; NULL once replaced */
    dl_coll_t *in;
    dl_lookup_spec_t spec;
    uint32_t kc[2];
    uint64_t t0[DL_TIME_MAX_DIM];
    size_t n;
    dl_join_col_t jc[MAXC];
} llast_t;

/* A join's operands and output columns, kept so that a projection of its output that
 * follows can be fused into it (`project_ex`). */
typedef struct jlast {
    dl_coll_t *coll; /* the join's output; NULL once replaced */
    dl_arr_t *A, *B;
    size_t n;
    dl_join_col_t jc[MAXC];
} jlast_t;

static int cfail(cctx_t *c) {
    if (c->err && c->err->code)
        return c->err->code;
    return dl_error_set(c->err, DL_EINTERNAL, "dataflow construction failed");
}

/* Appends an EXPLAIN line; returns its index (or -1 on out of memory: EXPLAIN is then
 * incomplete, which does not affect the plan). */
static int explain(cctx_t *c, const char *fmt, ...) DL_PRINTF(2, 3);
static int explain(cctx_t *c, const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dl_live_t *L = c->L;
    if (L->n_lines == L->cap_lines) {
        size_t cap = L->cap_lines ? 2 * L->cap_lines : 32;
        void *p = dl_realloc(L->lines, cap * sizeof *L->lines);
        if (!p)
            return -1;
        L->lines = p;
        L->cap_lines = cap;
    }
    dl__live_line_t *ln = &L->lines[L->n_lines];
    memset(ln, 0, sizeof *ln);
    ln->text = dl__arena_strndup(&L->arena, line, strlen(line));
    if (!ln->text)
        return -1;
    ln->depth = c->depth;
    return (int)L->n_lines++;
}

/* Ties EXPLAIN line idx to the collection it produced. */
static void mark(cctx_t *c, int idx, dl_coll_t *coll) {
    if (idx >= 0 && (size_t)idx < c->L->n_lines)
        c->L->lines[idx].coll = coll;
}

static void vars_text(const dl_query_t *q, const int *vars, size_t n, char *out, size_t cap) {
    size_t k = (size_t)snprintf(out, cap, "[");
    for (size_t i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? " " : "",
                              vars[i] < 0 ? "_" : dl__parse_var_name(q, vars[i]));
    if (k < cap)
        snprintf(out + k, cap - k, "]");
}

static void *keep(cctx_t *c, size_t size) {
    void *p = dl__arena_calloc(&c->L->arena, size);
    if (!p)
        dl_error_set(c->err, DL_ENOMEM, "out of memory");
    return p;
}

static int col_of(const prel_t *r, int var) {
    for (size_t i = 0; i < r->arity; i++)
        if (r->vars[i] == var && var != -1)
            return (int)i;
    return -1;
}

/* Unit-shaped: one dummy column and no variable. Either the unit relation itself or an
 * existence test (a clause without variables), which may be EMPTY: only the unit relation
 * is the identity of join (is_the_unit). */
static bool is_unit(const prel_t *r) { return r->arity == 1 && r->vars[0] == -1; }

/* True when r is the unit relation (one row) in the current scope: joining it is the
 * identity. An existence test is unit-shaped too but must be joined (a cross product with
 * an empty relation is empty). */
static bool is_the_unit(const cctx_t *c, const prel_t *r) {
    const dl_live_t *L = c->L;
    if (!is_unit(r) || !L->unit)
        return false;
    if (r->coll == L->unit)
        return true;
    for (size_t i = 0; i < L->n_entered; i++)
        if (L->entered[i].scope == c->scope && L->entered[i].from == L->unit)
            return r->coll == L->entered[i].coll;
    return false;
}

/* ---- bringing collections into the current scope ----------------------------------------- */

static dl_coll_t *in_scope(cctx_t *c, dl_coll_t *root_coll) {
    if (dl_coll_scope(root_coll) == c->scope)
        return root_coll;
    dl_live_t *L = c->L;
    for (size_t i = 0; i < L->n_entered; i++)
        if (L->entered[i].scope == c->scope && L->entered[i].from == root_coll)
            return L->entered[i].coll;
    dl_coll_t *e = dl_enter(c->scope, root_coll, c->err);
    if (!e)
        return NULL;
    if (!dl__grow(&L->entered, &L->cap_entered, L->n_entered + 1, sizeof *L->entered, 16)) {
        dl_error_set(c->err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    L->entered[L->n_entered].scope = c->scope;
    L->entered[L->n_entered].from = root_coll;
    L->entered[L->n_entered].coll = e;
    L->n_entered++;
    return e;
}

/* The root collection c was entered from (in_scope), or NULL when c is not an entered
 * one. A join arranges that root collection instead: the arrangement then lives outside
 * the loop (built once, read as entered, as a hand-built dataflow does) and, in an engine,
 * it is the shared base arrangement. */
static dl_coll_t *entered_from(const cctx_t *c, const dl_coll_t *coll) {
    const dl_live_t *L = c->L;
    for (size_t i = 0; i < L->n_entered; i++)
        if (L->entered[i].coll == coll)
            return L->entered[i].from;
    return NULL;
}

/* A root input holding fixed rows (loaded at time 0 and closed by dl__live_start). */
static dl_input_t *const_input(cctx_t *c, size_t arity) {
    dl_live_t *L = c->L;
    dl_input_t *in = dl_input_new(dl_graph_root(L->g), arity, c->err);
    if (!in)
        return NULL;
    if (!dl__grow(&L->consts, &L->cap_consts, L->n_consts + 1, sizeof *L->consts, 8)) {
        dl_error_set(c->err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    L->consts[L->n_consts++] = in;
    return in;
}

/* The unit relation (one row, no variables: a dummy nil column). */
static int unit_rel(cctx_t *c, prel_t *out) {
    dl_live_t *L = c->L;
    if (!L->unit) {
        dl_input_t *in = const_input(c, 1);
        dl_value_t nil = dl_value_nil();
        uint64_t t0[DL_TIME_MAX_ROOT_DIM] = {0};
        if (!in || dl_input_update(in, &nil, 1, t0, 1, c->err))
            return cfail(c);
        L->unit = dl_input_coll(in);
    }
    out->coll = in_scope(c, L->unit);
    if (!out->coll)
        return cfail(c);
    out->arity = 1;
    out->vars[0] = -1;
    out->est = 1;
    return 0;
}

/* The input of attribute `id` of source `src` in the current scope: [e v] rows, or with
 * `wide` [e v tx added]. A history source's narrow input is made distinct (the same (e, v)
 * is asserted and retracted many times; patterns are sets). */
static dl_coll_t *attr_coll(cctx_t *c, int src, int64_t id, const char *ident, bool wide) {
    dl_live_t *L = c->L;
    for (size_t i = 0; i < L->n_attrs; i++)
        if (L->attrs[i].id == id && L->attrs[i].src == src && L->attrs[i].wide == wide)
            return in_scope(c, L->attrs[i].coll);
    if (L->engine) {
        dl_coll_t *b = dl__engine_attr(L, id, ident, wide, c->err);
        return b ? in_scope(c, b) : NULL;
    }
    if (L->n_attrs == L->cap_attrs) {
        size_t cap = L->cap_attrs ? 2 * L->cap_attrs : 8;
        void *p = dl_realloc(L->attrs, cap * sizeof *L->attrs);
        if (!p) {
            dl_error_set(c->err, DL_ENOMEM, "out of memory");
            return NULL;
        }
        L->attrs = p;
        L->cap_attrs = cap;
    }
    dl_input_t *in = dl_input_new(dl_graph_root(L->g), wide ? 4 : 2, c->err);
    if (!in)
        return NULL;
    dl_coll_t *coll = dl_input_coll(in);
    if (!wide && L->src_kind[src] == DL_LIVE_HISTORY) {
        coll = dl_distinct(coll, c->err);
        if (!coll)
            return NULL;
    }
    dl__live_attr_t *a = &L->attrs[L->n_attrs++];
    memset(a, 0, sizeof *a);
    a->id = id;
    a->in = in;
    a->ident = ident;
    a->src = src;
    a->wide = wide;
    a->coll = coll;
    return in_scope(c, coll);
}

/* ---- relational helpers ------------------------------------------------------------------- */

static int distinct(cctx_t *c, prel_t *r) {
    dl_coll_t *d = dl_distinct(r->coll, c->err);
    if (!d)
        return cfail(c);
    r->coll = d;
    return 0;
}

/* Keeps the columns of `vars` (each must be in r), in that order; distinct when columns
 * were dropped (a projection of a set may have duplicates) unless the caller makes the
 * result distinct itself right after (dups_ok). */
static int project_fx(cctx_t *c, prel_t *r, const int *vars, size_t n, bool dups_ok, bool fuse) {
    uint32_t cols[MAXC];
    for (size_t i = 0; i < n; i++) {
        int k = col_of(r, vars[i]);
        if (k < 0)
            return dl_error_set(c->err, DL_EINTERNAL, "projection of an unbound variable");
        cols[i] = (uint32_t)k;
    }
    bool same = n == r->arity;
    for (size_t i = 0; same && i < n; i++)
        same = cols[i] == i;
    if (same)
        return 0;
    dl_coll_t *p;
    jlast_t *j = c->last_join;
    if (fuse && j && j->coll && j->coll == r->coll && j->n == r->arity) {
        /* r is the output of the join built last and nothing else reads it: the join
         * emits the projected columns itself (one operator less on every change), and
         * the unread join is collected after compilation. */
        dl_join_col_t jc[MAXC];
        for (size_t i = 0; i < n; i++)
            jc[i] = j->jc[cols[i]];
        p = dl_join(j->A, j->B, jc, n, c->err);
        if (!p)
            return cfail(c);
        for (size_t i = 0; i < c->L->n_lines; i++)
            if (c->L->lines[i].coll == j->coll)
                c->L->lines[i].coll = p;
        j->coll = NULL;
    } else {
        p = dl_project(r->coll, cols, n, c->err);
    }
    if (!p)
        return cfail(c);
    bool dropped = false;
    for (size_t k = 0; k < r->arity; k++) {
        bool kept = false;
        for (size_t i = 0; i < n; i++)
            kept |= cols[i] == k;
        dropped |= !kept && r->vars[k] != -1; /* dummy columns carry one value */
    }
    r->coll = p;
    r->arity = n;
    memcpy(r->vars, vars, n * sizeof(int));
    return dropped && !dups_ok ? distinct(c, r) : 0;
}

static int project_ex(cctx_t *c, prel_t *r, const int *vars, size_t n, bool dups_ok) {
    return project_fx(c, r, vars, n, dups_ok, false);
}

static int project(cctx_t *c, prel_t *r, const int *vars, size_t n) {
    return project_ex(c, r, vars, n, false);
}

static int map_append_nil(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    size_t arity = (size_t)(uintptr_t)ctx;
    dl_value_t buf[MAXC + 1];
    memcpy(buf, row, arity * sizeof *buf);
    buf[arity] = dl_value_nil();
    return dl_emit(out, buf);
}

/* Natural join of a and b on their shared variables (a cross product through a constant
 * key when they share none). Output: a's columns then b's new ones; dummy columns of b are
 * dropped. */
static int join(cctx_t *c, const prel_t *a, const prel_t *b, prel_t *out) {
    uint32_t ka[MAXC], kb[MAXC];
    size_t nk = 0;
    for (size_t i = 0; i < a->arity; i++) {
        int k = col_of(b, a->vars[i]);
        if (k >= 0) {
            ka[nk] = (uint32_t)i;
            kb[nk++] = (uint32_t)k;
        }
    }
    if (a->arity + b->arity > MAXC)
        return dl_error_set(c->err, DL_ELIMIT, "more than %d variables in one conjunction", MAXC);
    dl_coll_t *ca = a->coll, *cb = b->coll;
    size_t aa = a->arity, ba = b->arity;
    if (nk == 0) {
        ca = dl_map(ca, aa + 1, map_append_nil, (void *)(uintptr_t)aa, c->err);
        cb = ca ? dl_map(cb, ba + 1, map_append_nil, (void *)(uintptr_t)ba, c->err) : NULL;
        if (!ca || !cb)
            return cfail(c);
        ka[0] = (uint32_t)aa;
        kb[0] = (uint32_t)ba;
        nk = 1;
        if (!is_unit(a) && !is_unit(b))
            explain(c, "cross product (no shared variable), est %.0f x %.0f", a->est, b->est);
    }
    /* a's value columns are its non-key columns (so that a base relation [e v] joined on e
     * is arranged exactly as its shared by-entity arrangement); key columns come back
     * from the key. */
    uint32_t va[MAXC], vb[MAXC];
    int a_key[MAXC], a_val[MAXC];
    size_t nva = 0;
    for (size_t i = 0; i < aa; i++) {
        a_key[i] = -1;
        for (size_t k = 0; k < nk; k++)
            if (ka[k] == i) {
                a_key[i] = (int)k;
                break;
            }
        a_val[i] = (int)nva;
        if (a_key[i] < 0)
            va[nva++] = (uint32_t)i;
    }
    size_t nvb = 0;
    for (size_t i = 0; i < ba; i++)
        if (b->vars[i] != -1 && col_of(a, b->vars[i]) < 0)
            vb[nvb++] = (uint32_t)i;
    /* One side static (entered from the root) and the other of this scope: arrange the
     * static side in the root (the join reads it as entered; its output is of this
     * scope). */
    dl_coll_t *ra = entered_from(c, ca), *rb = entered_from(c, cb);
    if (ra && !rb)
        ca = ra;
    else if (rb && !ra)
        cb = rb;
    dl_arr_t *A = dl_arrange(ca, ka, nk, va, nva, c->err);
    dl_arr_t *B = A ? dl_arrange(cb, kb, nk, vb, nvb, c->err) : NULL;
    if (!A || !B)
        return cfail(c);
    if (c->L->engine &&
        (dl__engine_note_arr(c->L, ca, A, c->err) || dl__engine_note_arr(c->L, cb, B, c->err)))
        return cfail(c);
    dl_join_col_t jc[MAXC];
    size_t n = 0;
    out->arity = 0;
    for (size_t i = 0; i < aa; i++) {
        jc[n].src = a_key[i] >= 0 ? DL_JOIN_KEY : DL_JOIN_LEFT;
        jc[n++].col = (uint32_t)(a_key[i] >= 0 ? a_key[i] : a_val[i]);
        out->vars[out->arity++] = a->vars[i];
    }
    for (size_t i = 0; i < nvb; i++) {
        jc[n].src = DL_JOIN_RIGHT;
        jc[n++].col = (uint32_t)i;
        out->vars[out->arity++] = b->vars[vb[i]];
    }
    out->coll = dl_join(A, B, jc, n, c->err);
    if (!out->coll)
        return cfail(c);
    out->est = DL_MAX(1.0, DL_MAX(a->est, b->est));
    jlast_t *jl = keep(c, sizeof *jl);
    if (!jl)
        return DL_ENOMEM;
    jl->coll = out->coll;
    jl->A = A;
    jl->B = B;
    jl->n = n;
    memcpy(jl->jc, jc, n * sizeof *jc);
    c->last_join = jl;
    return 0;
}

/* r minus the rows of r that join b (b's variables are all r's). */
static int antijoin(cctx_t *c, prel_t *r, const prel_t *b) {
    prel_t j;
    int rc = join(c, r, b, &j);
    if (rc)
        return rc;
    if (j.arity != r->arity)
        return dl_error_set(c->err, DL_EINTERNAL, "antijoin adds columns");
    dl_coll_t *neg = dl_negate(j.coll, c->err);
    dl_coll_t *both[2] = {r->coll, neg};
    dl_coll_t *cat = neg ? dl_concat(both, 2, c->err) : NULL;
    if (!cat)
        return cfail(c);
    r->coll = cat;
    return 0;
}

/* ---- patterns ----------------------------------------------------------------------------- */

/* Resolves a constant in an entity position (e, or v of a ref attribute) at compile time:
 * longs and refs as is, keywords by :db/ident, lookup refs by their unique attribute
 * (docs/datalog.md "Compilation": resolved against the snapshot the query is compiled on). */
static int resolve_entity(cctx_t *c, const dl__clause_t *cl, const dl__term_t *t, bool *found,
                          dl_value_t *out) {
    *found = false;
    if (t->kind == DL__TERM_FORM) {
        const dl_edn_t *f = t->form;
        if (f->kind != DL_EDN_VECTOR || f->n != 2 || f->items[0]->kind != DL_EDN_VALUE ||
            f->items[0]->value.type != DL_T_KEYWORD || f->items[1]->kind != DL_EDN_VALUE)
            return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, f,
                                   "a lookup ref is [:attribute value]");
        dl_attr_info_t ai;
        if (dl_db_attr(c->db, dl_value_str(f->items[0]->value, NULL), &ai, NULL) || !ai.unique)
            return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, f,
                                   "a lookup ref needs a unique attribute");
        int64_t id;
        if (dl_db_lookup(c->db, ai.id, f->items[1]->value, &id, NULL) == 0) {
            *found = true;
            *out = dl_value_ref(id);
        }
        return 0;
    }
    if (t->value.type == DL_T_INT || t->value.type == DL_T_REF) {
        *found = true;
        *out = dl_value_ref(t->value.as.i);
    } else if (t->value.type == DL_T_KEYWORD) {
        int64_t id;
        if (dl_db_ident(c->db, dl_value_str(t->value, NULL), &id, NULL) == 0) {
            *found = true;
            *out = dl_value_ref(id);
        }
    }
    return 0;
}

static bool never(void *ctx, const dl_value_t *row) {
    (void)ctx;
    (void)row;
    return false;
}

static int map_to_nil(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    (void)ctx;
    (void)row;
    dl_value_t nil = dl_value_nil();
    return dl_emit(out, &nil);
}

static bool is_bound(const uint64_t *b, int v) { return v >= 0 && (b[v / 64] >> (v % 64)) & 1; }

static int pattern_attr(cctx_t *c, const dl__clause_t *cl, dl_attr_info_t *ai) {
    const dl__term_t *t = cl->args;
    if (t[1].kind != DL__TERM_CONST)
        return dl__parse_error(c->err, DL_EUNSUPPORTED, cl->text, cl->text_len, cl->form,
                               "compiled queries need a constant attribute");
    int rc = t[1].value.type == DL_T_KEYWORD
                 ? dl_db_attr(c->db, dl_value_str(t[1].value, NULL), ai, NULL)
                 : dl_db_attr_by_id(c->db, t[1].value.as.i, ai, NULL);
    if (rc)
        return dl__parse_error(c->err, DL_EUNKNOWN_ATTR, cl->text, cl->text_len, t[1].form,
                               "unknown attribute");
    return 0;
}

/* Expected rows of a pattern per binding of its bound variables (the store's statistics,
 * values assumed independent of entities): datoms, divided by the distinct entities when
 * the entity is bound or constant and by the distinct values when the value is. Below 1
 * when the pattern filters (a bound entity and a constant value: the chance the datom
 * exists). */
static double pattern_fanout(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound) {
    dl_attr_info_t ai;
    dl_attr_stats_t st = {0, 0, 0};
    dl_error_t tmp = {0};
    if (pattern_attr(c, cl, &ai) || dl_db_attr_stats(c->db, ai.id, &st, &tmp)) {
        if (c->err && c->err->code)
            dl_error_clear(c->err);
        return 1e9;
    }
    const dl__term_t *t = cl->args;
    double est = (double)DL_MAX(st.datoms, 1);
    bool ek = t[0].kind == DL__TERM_CONST || t[0].kind == DL__TERM_FORM ||
              (t[0].kind == DL__TERM_VAR && is_bound(bound, t[0].var));
    bool vk = t[2].kind == DL__TERM_CONST || t[2].kind == DL__TERM_FORM ||
              (t[2].kind == DL__TERM_VAR && is_bound(bound, t[2].var));
    if (ek)
        est /= (double)DL_MAX(st.distinct_entities, 1);
    if (vk)
        est /= (double)DL_MAX(st.distinct_values, 1);
    return est;
}

/* Estimated rows of a pattern given what is bound (at least 1; EXPLAIN shows it). */
static double pattern_est(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound) {
    return DL_MAX(pattern_fanout(c, cl, bound), 1.0);
}

static int map_insert_attr(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    const dl_value_t *kw = ctx;
    dl_value_t buf[3] = {row[0], *kw, row[1]};
    return dl_emit(out, buf);
}

/* A pattern whose attribute is a variable or _: the union over every attribute of the
 * schema the query is compiled on, as rows [e a v] (a: the attribute's keyword). Attributes
 * installed later are not seen by a live query (docs/datalog.md "Compilation"). */
static int var_attr_rel(cctx_t *c, const dl__clause_t *cl, prel_t *out) {
    const dl__term_t *t = cl->args;
    if (t[3].kind != DL__TERM_BLANK || t[4].kind != DL__TERM_BLANK)
        return dl__parse_error(c->err, DL_EUNSUPPORTED, cl->text, cl->text_len, cl->form,
                               "a variable attribute with tx or added is not compiled");
    int src = cl->src ? cl->src : c->src;
    size_t n = dl_db_attrs(c->db, NULL, 0);
    dl_attr_info_t *ai = dl_malloc(DL_MAX(n, 1) * sizeof *ai);
    dl_coll_t **parts = dl_malloc(DL_MAX(n, 1) * sizeof *parts);
    if (!ai || !parts) {
        dl_free(ai);
        dl_free(parts);
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    }
    n = DL_MIN(n, dl_db_attrs(c->db, ai, n));
    size_t k = 0;
    int rc = 0;
    double est = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (ai[i].time_dimension)
            continue;
        dl_coll_t *coll = attr_coll(c, src, ai[i].id, ai[i].ident, false);
        if (!coll) {
            rc = cfail(c);
            break;
        }
        dl_attr_stats_t st = {0, 0, 0};
        if (dl_db_attr_stats(c->db, ai[i].id, &st, NULL) == 0)
            est += (double)st.datoms;
        for (int pos = 0; pos <= 2 && coll; pos += 2) {
            const dl__term_t *x = &t[pos];
            if (x->kind != DL__TERM_CONST && x->kind != DL__TERM_FORM)
                continue;
            dl_value_t v = x->value;
            bool found = true;
            if (pos == 0 || ai[i].type == DL_T_REF) {
                rc = resolve_entity(c, cl, x, &found, &v);
            } else if (x->kind == DL__TERM_FORM) {
                found = false;
            }
            if (rc)
                break;
            coll = found ? dl_filter_eq(coll, (uint32_t)(pos / 2), v, c->err)
                         : dl_filter(coll, never, NULL, c->err);
        }
        if (rc)
            break;
        dl_value_t *kw = keep(c, sizeof *kw);
        if (!kw || dl_value_text(DL_T_KEYWORD, ai[i].ident, strlen(ai[i].ident), kw, c->err)) {
            rc = c->err && c->err->code ? c->err->code : DL_ENOMEM;
            break;
        }
        coll = coll ? dl_map(coll, 3, map_insert_attr, kw, c->err) : NULL;
        if (!coll)
            rc = cfail(c);
        else
            parts[k++] = coll;
    }
    if (!rc && k == 0)
        rc = dl_error_set(c->err, DL_EUNSUPPORTED, "no attributes to read");
    dl_coll_t *u = NULL;
    if (!rc) {
        u = k == 1 ? parts[0] : dl_concat(parts, k, c->err);
        if (!u)
            rc = cfail(c);
    }
    dl_free(ai);
    dl_free(parts);
    if (rc)
        return rc;
    explain(c, "scan every attribute (%zu) [e a v], est %.0f", k, est);
    out->coll = u;
    out->arity = 3;
    out->est = DL_MAX(est, 1.0);
    int vars[3];
    for (int i = 0; i < 3; i++)
        vars[i] = t[i].kind == DL__TERM_VAR ? t[i].var : -4 - i;
    /* Repeated variables compare their columns; keep each variable once. */
    int keepv[3];
    size_t nk = 0;
    for (int i = 0; i < 3; i++) {
        if (vars[i] < 0)
            continue;
        bool first = true;
        for (int j = 0; j < i; j++)
            if (vars[j] == vars[i]) {
                out->coll = dl_filter_cols_eq(out->coll, (uint32_t)j, (uint32_t)i, c->err);
                if (!out->coll)
                    return cfail(c);
                vars[i] = -7 - i;
                first = false;
                break;
            }
        if (first)
            keepv[nk++] = vars[i];
    }
    memcpy(out->vars, vars, sizeof vars);
    if (nk == 0) {
        out->coll = dl_map(out->coll, 1, map_to_nil, NULL, c->err);
        if (!out->coll)
            return cfail(c);
        out->arity = 1;
        out->vars[0] = -1;
        return distinct(c, out);
    }
    return project(c, out, keepv, nk);
}

/* The source a clause reads: its own, or the enclosing ($x not ...)'s, or $. */
static int clause_src(cctx_t *c, const dl__clause_t *cl, int *out) {
    int src = cl->src ? cl->src : c->src;
    if (src < 0 || (size_t)src >= c->q->n_srcs || c->L->src_kind[src] == DL__SRC_ABSENT)
        return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                               "no database was supplied for %s",
                               c->q->srcs[src < 0 ? 0 : src]->bytes);
    *out = src;
    return 0;
}

/* A pattern's filters and projection over its input's rows, in one operator. */
typedef struct scan {
    size_t n_eq, n_same, n_out;
    uint32_t eq_col[4], same_a[4], same_b[4], out_col[4];
    dl_value_t eq_val[4];
} scan_t;

static int scan_fn(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    const scan_t *sc = ctx;
    for (size_t i = 0; i < sc->n_eq; i++)
        if (dl_value_cmp(row[sc->eq_col[i]], sc->eq_val[i]) != 0)
            return 0;
    for (size_t i = 0; i < sc->n_same; i++)
        if (dl_value_cmp(row[sc->same_a[i]], row[sc->same_b[i]]) != 0)
            return 0;
    dl_value_t o[4];
    for (size_t i = 0; i < sc->n_out; i++)
        o[i] = row[sc->out_col[i]];
    if (sc->n_out == 0)
        o[0] = dl_value_nil();
    return dl_emit(out, o);
}

/* [?e :a v] in an engine, from the second such pattern over :a on (dl__engine_value_scan):
 * the entities of value v, read from the base collection's by-value arrangement (built
 * once, shared by every query: dl__engine_note_arr) by joining it with a one-row constant
 * relation [v], instead of filtering every datom of :a; later queries over the same data
 * touch only the matching rows. The first one filters: building the index costs about
 * what a few scans do, so a one-off query does not pay for it. */
static int lookup_by_value(cctx_t *c, prel_t *out, dl_value_t v, int var) {
    static const uint32_t K0[1] = {0}, K1[1] = {1};
    dl_input_t *ci = const_input(c, 1);
    uint64_t t0[DL_TIME_MAX_ROOT_DIM] = {0};
    if (!ci || dl_input_update(ci, &v, 1, t0, 1, c->err))
        return cfail(c);
    dl_arr_t *K = dl_arrange(dl_input_coll(ci), K0, 1, NULL, 0, c->err);
    dl_arr_t *B = K ? dl_arrange(out->coll, K1, 1, K0, 1, c->err) : NULL;
    if (!B || dl__engine_note_arr(c->L, out->coll, B, c->err))
        return cfail(c);
    dl_join_col_t jc[1] = {{DL_JOIN_RIGHT, 0}};
    out->coll = dl_join(K, B, jc, 1, c->err);
    if (!out->coll)
        return cfail(c);
    out->arity = 1;
    out->vars[0] = var;
    return 0;
}

/* ---- one-shot plans: reading the snapshot (snapshot.c) ------------------------------------
 * A one-shot graph runs once at its sources' snapshot (L->snap), which never changes: a
 * pattern may then read the snapshot's indexes instead of a whole attribute input. Alone
 * (nothing bound yet), it is the scan of its index range (AVET for a constant value of an
 * indexed attribute, VAET of a ref, AEVT otherwise) loaded into a constant input; joined
 * with a relation that binds its entity (or value, through AVET/VAET), it is a lookup join
 * (dl_lookup_join): each row of the relation probes the index, in key order, so only the
 * datoms that match are touched and nothing is arranged. Same rows as the arranged plan:
 * the pattern's relation is the range's datoms (a set), and joining a set with a set
 * through its key gives the same set. Not for history sources (every assertion and
 * retraction, and the tx/added positions) or several time coordinates. */

/* Fills sq for pattern cl of source src when the snapshot can serve it (bound: the
 * variables of the relation it joins, with their columns in cols; NULL for a scan):
 * false when it cannot (the usual plan then runs). *never: a constant that names no
 * entity (the pattern matches nothing). */
static bool snap_query(cctx_t *c, const dl__clause_t *cl, const prel_t *r, dl_attr_info_t *ai,
                       int *src, dl__snapq_t *sq, bool *never_m) {
    dl_live_t *L = c->L;
    const dl__term_t *t = cl->args;
    *never_m = false;
    if (!L->snap || L->dims != 1 || cl->kind != DL__C_PATTERN || t[1].kind != DL__TERM_CONST ||
        t[3].kind != DL__TERM_BLANK || t[4].kind != DL__TERM_BLANK || t[0].kind == DL__TERM_FORM ||
        t[2].kind == DL__TERM_FORM)
        return false;
    if (t[0].kind == DL__TERM_VAR && t[2].kind == DL__TERM_VAR && t[0].var == t[2].var)
        return false;
    dl_error_t tmp = {0};
    dl_error_t *saved = c->err;
    c->err = &tmp; /* errors are reported by the usual path */
    bool ok = pattern_attr(c, cl, ai) == 0 && clause_src(c, cl, src) == 0;
    c->err = saved;
    if (!ok || L->src_kind[*src] == DL_LIVE_HISTORY || !L->snap[*src])
        return false;
    memset(sq, 0, sizeof *sq);
    sq->a = ai->id;
    int ek = DL__SNAP_FREE, vk = DL__SNAP_FREE, ecol = -1, vcol = -1;
    if (t[0].kind == DL__TERM_VAR && r && (ecol = col_of(r, t[0].var)) >= 0)
        ek = DL__SNAP_KEY;
    if (t[2].kind == DL__TERM_VAR && r && (vcol = col_of(r, t[2].var)) >= 0)
        vk = DL__SNAP_KEY;
    if (r && ek != DL__SNAP_KEY && vk != DL__SNAP_KEY)
        return false; /* a lookup needs a key from the relation */
    if (t[0].kind == DL__TERM_CONST) {
        bool found = false;
        dl_value_t v;
        if (resolve_entity(c, cl, &t[0], &found, &v))
            return false;
        ek = DL__SNAP_CONST;
        sq->ec = v;
        *never_m |= !found;
    }
    if (t[2].kind == DL__TERM_CONST) {
        dl_value_t v = t[2].value;
        if (ai->type == DL_T_REF) {
            bool found = false;
            if (resolve_entity(c, cl, &t[2], &found, &v))
                return false;
            *never_m |= !found;
        }
        vk = DL__SNAP_CONST;
        sq->vc = v;
    }
    sq->e_kind = ek;
    sq->v_kind = vk;
    sq->yield_e = ek == DL__SNAP_FREE && t[0].kind == DL__TERM_VAR;
    sq->yield_v = vk == DL__SNAP_FREE && t[2].kind == DL__TERM_VAR;
    if (ek != DL__SNAP_FREE) {
        sq->idx = DL_INDEX_AEVT;
        sq->single = !ai->many; /* every view but history (not here) has one value */
    } else if (vk != DL__SNAP_FREE && ai->indexed) {
        sq->idx = DL_INDEX_AVET;
    } else if (vk != DL__SNAP_FREE && ai->type == DL_T_REF) {
        sq->idx = DL_INDEX_VAET;
    } else if (vk == DL__SNAP_CONST && !r) {
        sq->idx = DL_INDEX_AEVT; /* the whole attribute, filtered by the value */
        sq->v_filter = true;
    } else if (vk == DL__SNAP_FREE && !r) {
        sq->idx = DL_INDEX_AEVT;
    } else {
        return false;
    }
    if (!r && !sq->yield_e && !sq->yield_v)
        return false; /* only constants and blanks: the usual existence test */
    return true;
}

/* [e :a v] alone, one-shot: its index range of the snapshot as a constant input of its
 * variables' columns (e then v). */
static int snap_scan_rel(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound,
                         const dl_attr_info_t *ai, int src, const dl__snapq_t *sq, bool never_m,
                         prel_t *out) {
    static const char *idx_name[4] = {"EAVT", "AEVT", "AVET", "VAET"};
    const dl__term_t *t = cl->args;
    size_t arity = (size_t)sq->yield_e + (size_t)sq->yield_v;
    dl_input_t *in = const_input(c, arity);
    if (!in)
        return cfail(c);
    uint64_t t0[DL_TIME_MAX_ROOT_DIM] = {c->L->snap_tx};
    if (!never_m) {
        int rc = dl__snap_scan(c->L->snap[src], sq, in, t0, c->err);
        if (rc)
            return rc;
    }
    out->coll = dl_input_coll(in);
    out->arity = arity;
    out->est = pattern_est(c, cl, bound);
    size_t k = 0;
    if (sq->yield_e)
        out->vars[k++] = t[0].var;
    if (sq->yield_v)
        out->vars[k++] = t[2].var;
    /* AEVT ranges come by entity, and so do AVET and VAET ranges of one value. */
    if (sq->yield_e && (sq->idx == DL_INDEX_AEVT || sq->v_kind == DL__SNAP_CONST)) {
        c->order_coll = out->coll;
        c->order_var = t[0].var;
    }
    explain(c, "snapshot scan %s:%s (%s%s), est %.0f", src ? c->q->srcs[src]->bytes : "", ai->ident,
            idx_name[sq->idx], sq->v_filter ? ", value filtered" : "", out->est);
    /* [_ :a ?v]: a value of several entities comes once per entity; a pattern is a set. */
    return t[0].kind == DL__TERM_BLANK && sq->yield_v ? distinct(c, out) : 0;
}

/* r becomes o, the output of the lookup of pattern cl: the variables it yields (entity,
 * value) join r's, and its size is estimated. */
static int lookup_output(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound, prel_t *r,
                         const dl__snapq_t *sq, dl_coll_t *o) {
    const dl__term_t *t = cl->args;
    r->coll = o;
    if (sq->yield_e)
        r->vars[r->arity++] = t[0].var;
    if (sq->yield_v)
        r->vars[r->arity++] = t[2].var;
    r->est = DL_MAX(1.0, r->est * pattern_fanout(c, cl, bound));
    return 0;
}

/* [e :a v] joined with r, one-shot: a lookup join of r's rows into the snapshot's index
 * (r's columns, then the pattern's new variables). */
static int snap_lookup(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound, prel_t *r,
                       const dl_attr_info_t *ai, int src, dl__snapq_t *sq, bool never_m) {
    static const char *idx_name[4] = {"EAVT", "AEVT", "AVET", "VAET"};
    dl_live_t *L = c->L;
    const dl__term_t *t = cl->args;
    uint32_t kc[2];
    size_t nk = 0;
    if (sq->e_kind == DL__SNAP_KEY) {
        sq->e_col = (uint32_t)nk;
        kc[nk++] = (uint32_t)col_of(r, t[0].var);
    }
    if (sq->v_kind == DL__SNAP_KEY) {
        sq->v_col = (uint32_t)nk;
        kc[nk++] = (uint32_t)col_of(r, t[2].var);
    }
    size_t na = (size_t)sq->yield_e + (size_t)sq->yield_v;
    if (r->arity + na > MAXC)
        return dl_error_set(c->err, DL_ELIMIT, "more than %d variables in one conjunction", MAXC);
    if (!dl__grow(&L->probes, &L->cap_probes, L->n_probes + 1, sizeof *L->probes, 8))
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    dl__probe_t *p = NULL;
    int rc = dl__snap_probe_new(L->snap[src], sq, &p, c->err);
    if (rc)
        return rc;
    L->probes[L->n_probes++] = p;
    char kv[200];
    int kvars[2];
    for (size_t i = 0; i < nk; i++)
        kvars[i] = r->vars[kc[i]];
    vars_text(c->q, kvars, nk, kv, sizeof kv);
    /* r is the output of the lookup built last, nothing else reads it, and this pattern is
     * probed with the same entity key: one operator probes both (a chain of stages, one
     * output buffer and one pass instead of two); the first lookup is collected. */
    llast_t *pl = c->last_lookup;
    if (pl && pl->coll == r->coll && pl->n == r->arity && nk == 1 && sq->e_kind == DL__SNAP_KEY &&
        pl->spec.n_key == 1 && pl->spec.fn == dl__snap_probe_fn &&
        ((dl__probe_t *)pl->spec.ctx)->sq.e_kind == DL__SNAP_KEY &&
        pl->jc[kc[0]].src == DL_JOIN_LEFT && pl->jc[kc[0]].col == pl->kc[0] && !never_m &&
        pl->n + na <= MAXC) {
        dl__probe_t *tail = pl->spec.ctx;
        while (tail->then)
            tail = tail->then;
        tail->then = p;
        size_t va = pl->spec.val_arity;
        for (size_t i = 0; i < na; i++)
            pl->jc[pl->n + i] = (dl_join_col_t){DL_JOIN_RIGHT, (uint32_t)(va + i)};
        pl->spec.val_arity = va + na;
        dl_coll_t *o = dl_lookup_join(pl->in, &pl->spec, pl->jc, pl->n + na, c->err);
        if (!o)
            return cfail(c);
        for (size_t i = 0; i < L->n_lines; i++)
            if (L->lines[i].coll == pl->coll)
                L->lines[i].coll = o;
        mark(c,
             explain(c, "  and :%s on %s in the same lookup (%s of the snapshot), est %.0f",
                     ai->ident, kv, idx_name[sq->idx], pattern_est(c, cl, bound)),
             o);
        if (c->order_coll == pl->coll)
            c->order_coll = o;
        pl->coll = o;
        pl->n += na;
        return lookup_output(c, cl, bound, r, sq, o);
    }
    dl_join_col_t jc[MAXC];
    size_t n = 0;
    for (size_t i = 0; i < r->arity; i++)
        jc[n++] = (dl_join_col_t){DL_JOIN_LEFT, (uint32_t)i};
    for (size_t i = 0; i < na; i++)
        jc[n++] = (dl_join_col_t){DL_JOIN_RIGHT, (uint32_t)i};
    uint64_t t0[DL_TIME_MAX_DIM] = {L->snap_tx};
    dl_lookup_spec_t spec = {kc, nk, na, dl__snap_probe_fn, p, t0, true};
    dl_coll_t *in = r->coll;
    if (never_m && !(in = dl_filter(in, never, NULL, c->err)))
        return cfail(c);
    dl_coll_t *o = dl_lookup_join(in, &spec, jc, n, c->err);
    if (!o)
        return cfail(c);
    int ln = explain(c, "lookup %s:%s on %s (%s of the snapshot), est %.0f",
                     src ? c->q->srcs[src]->bytes : "", ai->ident, kv, idx_name[sq->idx],
                     pattern_est(c, cl, bound));
    mark(c, ln, o);
    llast_t *ll = keep(c, sizeof *ll);
    if (!ll)
        return DL_ENOMEM;
    ll->coll = o;
    ll->in = in;
    ll->spec = spec;
    memcpy(ll->kc, kc, sizeof kc);
    memcpy(ll->t0, t0, sizeof t0);
    ll->spec.key_cols = ll->kc;
    ll->spec.time = ll->t0;
    ll->n = n;
    memcpy(ll->jc, jc, n * sizeof *jc);
    c->last_lookup = ll;
    /* The rows come in probe order: by the entity key (ints and refs are sorted), else as
     * they came. */
    bool kept = c->order_coll == r->coll;
    c->order_coll = o;
    if (sq->e_kind == DL__SNAP_KEY)
        c->order_var = t[0].var;
    else if (!kept)
        c->order_var = -1;
    return lookup_output(c, cl, bound, r, sq, o);
}

/* The relation of a data pattern: its variables' columns, constants filtered. Positions
 * e, v (and tx, added for wide inputs) are the input's columns 0, 1 (2, 3). */
static int pattern_rel_build(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound,
                             const dl_attr_info_t *ai, int src, bool wide, prel_t *out) {
    const dl__term_t *t = cl->args;
    static const int pos_of_col[4] = {0, 2, 3, 4};
    size_t ncols = wide ? 4 : 2;
    dl__snapq_t sq;
    dl_attr_info_t sai;
    int ssrc;
    bool snap_never;
    if (snap_query(c, cl, NULL, &sai, &ssrc, &sq, &snap_never))
        return snap_scan_rel(c, cl, bound, &sai, ssrc, &sq, snap_never, out);
    dl_coll_t *base = attr_coll(c, src, ai->id, ai->ident, wide);
    if (!base)
        return cfail(c);
    out->coll = base;
    out->arity = ncols;
    out->est = pattern_est(c, cl, bound);
    bool ek = (t[0].kind == DL__TERM_VAR && is_bound(bound, t[0].var)) ||
              t[0].kind == DL__TERM_CONST || t[0].kind == DL__TERM_FORM;
    bool vk = (t[2].kind == DL__TERM_VAR && is_bound(bound, t[2].var)) ||
              t[2].kind == DL__TERM_CONST || t[2].kind == DL__TERM_FORM;
    explain(c, "scan %s:%s [e v%s]%s%s, est %.0f", src ? c->q->srcs[src]->bytes : "", ai->ident,
            wide ? " tx added" : "", ek ? " by entity" : "", vk ? " by value" : "", out->est);
    /* Constants filter, a repeated variable compares its columns, each variable is kept
     * once: all of it in one operator (scan_fn), or a plain projection. */
    scan_t *sc = keep(c, sizeof *sc);
    if (!sc)
        return DL_ENOMEM;
    int rc = 0;
    bool never_matches = false;
    for (size_t col = 0; col < ncols; col++) {
        const dl__term_t *x = &t[pos_of_col[col]];
        if (x->kind != DL__TERM_CONST && x->kind != DL__TERM_FORM)
            continue;
        dl_value_t v = x->value;
        bool found = true;
        if (col == 0 || (col == 1 && ai->type == DL_T_REF)) {
            rc = resolve_entity(c, cl, x, &found, &v);
            if (rc)
                return rc;
        } else if (x->kind == DL__TERM_FORM) {
            return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, x->form,
                                   "a collection is not a value");
        } else if (col == 2 && v.type == DL_T_REF) {
            v = dl_value_int(v.as.i); /* tx numbers are longs */
        }
        never_matches |= !found;
        sc->eq_col[sc->n_eq] = (uint32_t)col;
        sc->eq_val[sc->n_eq++] = v;
    }
    /* Dropping a column loses nothing (no distinct after the projection) when it holds a
     * constant, repeats a kept column, or is the blank value of a cardinality-one
     * attribute of a non-history source whose entity is kept (the entity determines it).
     * This needs the input to be a set at every time: with several time dimensions a
     * datom may have multiplicity -1 at some points (docs/datalog.md "Multi-dimensional
     * time"), which only a distinct maps to the store's view, so it is kept there. */
    int keepv[4];
    size_t nk = 0;
    bool lossy = c->L->dims > 1;
    for (size_t col = 0; col < ncols; col++) {
        const dl__term_t *x = &t[pos_of_col[col]];
        out->vars[col] = -4 - (int)col; /* a real column to drop */
        if (x->kind == DL__TERM_BLANK)
            lossy |= !(col == 1 && !ai->many && t[0].kind == DL__TERM_VAR &&
                       c->L->src_kind[src] != DL_LIVE_HISTORY);
        if (x->kind != DL__TERM_VAR)
            continue;
        int first = -1;
        for (size_t j = 0; j < col; j++)
            if (t[pos_of_col[j]].kind == DL__TERM_VAR && t[pos_of_col[j]].var == x->var) {
                first = (int)j;
                break;
            }
        if (first >= 0) {
            sc->same_a[sc->n_same] = (uint32_t)first;
            sc->same_b[sc->n_same++] = (uint32_t)col;
            continue;
        }
        out->vars[col] = x->var;
        sc->out_col[sc->n_out++] = (uint32_t)col;
        keepv[nk++] = x->var;
    }
    if (c->L->engine && ncols == 2 && t[0].kind == DL__TERM_VAR && sc->n_eq == 1 &&
        sc->eq_col[0] == 1 && !never_matches && dl__engine_value_scan(c->L, out->coll))
        return lookup_by_value(c, out, sc->eq_val[0], t[0].var);
    if (never_matches) {
        out->coll = dl_filter(out->coll, never, NULL, c->err);
        if (!out->coll)
            return cfail(c);
    }
    if (nk == 0) {
        /* Only constants and blanks: an existence test, one dummy row when anything
         * matches. */
        out->coll = dl_flat_map(out->coll, 1, scan_fn, sc, c->err);
        if (!out->coll)
            return cfail(c);
        out->arity = 1;
        out->vars[0] = -1;
        return distinct(c, out);
    }
    if (sc->n_eq == 0 && sc->n_same == 0)
        return project_ex(c, out, keepv, nk, !lossy);
    out->coll = dl_flat_map(out->coll, nk, scan_fn, sc, c->err);
    if (!out->coll)
        return cfail(c);
    out->arity = nk;
    memcpy(out->vars, keepv, nk * sizeof *keepv);
    return lossy ? distinct(c, out) : 0;
}

static int pattern_rel_at(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound, prel_t *out);

/* A pattern reads only base inputs: its relation (filters, projection) is built in the
 * root scope and entered into the current one, so that inside an iterate scope it costs
 * nothing per round and joins arrange it outside the loop (`join`). *root_coll: the root
 * collection (EXPLAIN ANALYZE counts it). */
static int pattern_rel(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound, prel_t *out,
                       dl_coll_t **root_coll) {
    dl_scope_t *saved = c->scope;
    c->scope = dl_graph_root(c->L->g);
    int rc = pattern_rel_at(c, cl, bound, out);
    c->scope = saved;
    *root_coll = rc ? NULL : out->coll;
    if (!rc && !(out->coll = in_scope(c, out->coll)))
        rc = cfail(c);
    return rc;
}

static int pattern_rel_at(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound, prel_t *out) {
    const dl__term_t *t = cl->args;
    if (t[1].kind == DL__TERM_VAR || t[1].kind == DL__TERM_BLANK)
        return var_attr_rel(c, cl, out);
    dl_attr_info_t ai;
    int src = 0;
    int rc = pattern_attr(c, cl, &ai);
    if (!rc)
        rc = clause_src(c, cl, &src);
    if (rc)
        return rc;
    bool wide = t[3].kind != DL__TERM_BLANK || t[4].kind != DL__TERM_BLANK;
    bool memo_ok = !wide && t[0].kind != DL__TERM_FORM && t[2].kind != DL__TERM_FORM;
    bool same = t[0].kind == DL__TERM_VAR && t[2].kind == DL__TERM_VAR && t[0].var == t[2].var;
    dl_live_t *L = c->L;
    for (size_t i = 0; memo_ok && i < L->n_memo; i++) {
        const dl__live_memo_t *m = &L->memo[i];
        if (m->scope != c->scope || m->src != src || m->attr != ai.id || m->ek != t[0].kind ||
            m->vk != t[2].kind || m->same != same ||
            (t[0].kind == DL__TERM_CONST && !dl_value_eq(m->ec, t[0].value)) ||
            (t[2].kind == DL__TERM_CONST && !dl_value_eq(m->vc, t[2].value)))
            continue;
        out->coll = m->coll;
        out->est = pattern_est(c, cl, bound);
        out->arity = 0;
        if (t[0].kind == DL__TERM_VAR)
            out->vars[out->arity++] = t[0].var;
        if (t[2].kind == DL__TERM_VAR && !same)
            out->vars[out->arity++] = t[2].var;
        if (out->arity == 0) {
            out->arity = 1;
            out->vars[0] = -1;
        }
        explain(c, "reuse :%s (an identical pattern's relation)", ai.ident);
        return 0;
    }
    rc = pattern_rel_build(c, cl, bound, &ai, src, wide, out);
    if (rc || !memo_ok)
        return rc;
    if (L->n_memo == L->cap_memo) {
        size_t cap = L->cap_memo ? 2 * L->cap_memo : 16;
        void *p = dl_realloc(L->memo, cap * sizeof *L->memo);
        if (!p)
            return dl_error_set(c->err, DL_ENOMEM, "out of memory");
        L->memo = p;
        L->cap_memo = cap;
    }
    dl__live_memo_t *m = &L->memo[L->n_memo++];
    m->scope = c->scope;
    m->src = src;
    m->attr = ai.id;
    m->ek = (uint8_t)t[0].kind;
    m->vk = (uint8_t)t[2].kind;
    m->same = same;
    m->ec = t[0].value;
    m->vc = t[2].value;
    m->coll = out->coll;
    return 0;
}

/* ---- expression clauses ------------------------------------------------------------------- */

typedef struct fnctx {
    const dl__clause_t *cl;
    size_t in_arity;
    int arg_col[64];       /* per argument: input column, or -1 for a constant */
    dl_value_t consts[64]; /* per argument constant */
    int bind_col[MAXC];    /* per binding variable: existing column (unify), -1 new, -2 _ */
    bool to_ref[MAXC];     /* per binding variable: an entity variable (long -> ref) */
    dl__fnval_t ground;    /* ground's constant result (items in the live's arena) */
    bool is_ground;
    dl_live_t *L;
} fnctx_t;

/* A builtin's error (type, range) in an engine query fails that query only: the engine's
 * graph is shared, so the run goes on (the row is dropped, deterministically, so later
 * retractions stay consistent) and the query is marked failed. Out of memory aborts. */
static int soft_fail(dl_live_t *L, int rc) {
    if (!rc || !L->engine || rc == DL_ENOMEM)
        return rc;
    if (!L->failed)
        L->failed = rc;
    return 0;
}

static int fn_apply_hard(void *ctx, const dl_value_t *row, dl_emitter_t *out);
static int fn_apply(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    return soft_fail(((fnctx_t *)ctx)->L, fn_apply_hard(ctx, row, out));
}

static int fn_apply_hard(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    fnctx_t *f = ctx;
    const dl__clause_t *cl = f->cl;
    dl_value_t args[64];
    for (size_t i = 0; i < cl->n_args; i++)
        args[i] = f->arg_col[i] >= 0 ? row[f->arg_col[i]] : f->consts[i];
    bool ok = false;
    dl__fnval_t res;
    memset(&res, 0, sizeof res);
    int rc = 0;
    if (f->is_ground) {
        res = f->ground;
        ok = true;
    } else {
        rc = dl__builtin_call(cl->fn, args, cl->n_args, &ok, &res, NULL);
        if (rc)
            return rc; /* a type error fails the run, as it fails the query */
    }
    if (cl->kind == DL__C_PRED)
        return ok ? dl_emit(out, row) : 0;
    dl_value_t buf[MAXC];
    memcpy(buf, row, f->in_arity * sizeof *buf);
    const dl__bind_t *b = &cl->bind;
    size_t rows = 1, width = b->n;
    const dl_value_t *items = &res.v;
    if (res.kind == 0) {
        if (res.v.type == DL_T_NIL)
            return 0;
        if (b->kind != DL__BIND_SCALAR)
            rc = DL_ETYPE;
    } else {
        items = res.items;
        if (b->kind == DL__BIND_SCALAR)
            rc = DL_ETYPE;
        else if (b->kind == DL__BIND_TUPLE)
            rc = res.kind == 1 && res.n >= b->n ? 0 : DL_ETYPE;
        else if (b->kind == DL__BIND_COLL) {
            rc = res.kind == 1 ? 0 : DL_ETYPE;
            rows = res.n;
            width = 1;
        } else {
            rc = res.kind == 2 && res.arity == b->n ? 0 : DL_ETYPE;
            rows = res.n;
        }
    }
    for (size_t r = 0; r < rows && !rc; r++) {
        size_t k = f->in_arity;
        bool ok2 = true;
        for (size_t i = 0; i < width && ok2; i++) {
            dl_value_t v = items[r * width + i], raw = v;
            if (f->bind_col[i] == -2)
                continue;
            if (f->to_ref[i] && v.type == DL_T_INT)
                v = dl_value_ref(v.as.i);
            /* A variable already bound may hold the long itself (a value position): an
             * entity id and its long are one value (Datomic has no separate ref type). */
            if (f->bind_col[i] >= 0)
                ok2 = dl_value_eq(buf[f->bind_col[i]], v) || dl_value_eq(buf[f->bind_col[i]], raw);
            else
                buf[k++] = v;
        }
        if (ok2)
            rc = dl_emit(out, buf);
    }
    if (!f->is_ground)
        dl_free(res.items);
    return rc;
}

static int db_clause(cctx_t *c, const dl__clause_t *cl, prel_t *r);

static int expr_clause(cctx_t *c, const dl__clause_t *cl, prel_t *r) {
    const dl__builtin_t *bi = dl__builtin_get(cl->fn);
    if (bi->flags & DL__BI_DB)
        return db_clause(c, cl, r);
    if (cl->n_args > 64)
        return dl_error_set(c->err, DL_ELIMIT, "too many arguments");
    fnctx_t *f = keep(c, sizeof *f);
    if (f)
        f->L = c->L;
    if (!f)
        return DL_ENOMEM;
    f->cl = cl;
    f->in_arity = r->arity;
    for (size_t i = 0; i < cl->n_args; i++) {
        const dl__term_t *t = &cl->args[i];
        f->arg_col[i] = t->kind == DL__TERM_VAR ? col_of(r, t->var) : -1;
        f->consts[i] = t->value;
    }
    if (cl->fn == dl__builtin_id_ground() && cl->args[0].kind != DL__TERM_VAR) {
        /* A constant: computed once here. (ground ?x) is the identity, as a builtin.) */
        f->is_ground = true;
        const dl__term_t *t = &cl->args[0];
        if (t->kind == DL__TERM_FORM) {
            const dl_edn_t *fm = t->form;
            bool nested = fm->n > 0 && fm->items[0]->kind == DL_EDN_VECTOR;
            size_t arity = nested ? fm->items[0]->n : 1;
            f->ground.kind = nested ? 2 : 1;
            f->ground.arity = arity;
            f->ground.n = fm->n;
            f->ground.items = keep(c, DL_MAX(fm->n * arity, 1) * sizeof(dl_value_t));
            if (!f->ground.items)
                return DL_ENOMEM;
            for (size_t i = 0; i < fm->n; i++) {
                if (nested && (fm->items[i]->kind != DL_EDN_VECTOR || fm->items[i]->n != arity))
                    return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, fm->items[i],
                                           "every tuple needs %zu values", arity);
                for (size_t k = 0; k < arity; k++) {
                    const dl_edn_t *it = nested ? fm->items[i]->items[k] : fm->items[i];
                    if (it->kind != DL_EDN_VALUE)
                        return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, it,
                                               "ground takes scalar values");
                    f->ground.items[i * arity + k] = it->value;
                }
            }
        } else {
            f->ground.v = t->value;
        }
    }
    size_t new_arity = r->arity;
    int new_vars[MAXC];
    memcpy(new_vars, r->vars, r->arity * sizeof(int));
    if (cl->kind == DL__C_FN) {
        int newpos[MAXC]; /* per binding position: the output column it creates, or -1 */
        for (size_t i = 0; i < cl->bind.n; i++) {
            int v = cl->bind.vars[i];
            int k = v < 0 ? -2 : col_of(r, v);
            newpos[i] = -1;
            /* [?x ?x]: the later value must equal the earlier one, already in the row. */
            for (size_t j = 0; j < i && k == -1; j++)
                if (v >= 0 && cl->bind.vars[j] == v && newpos[j] >= 0)
                    k = newpos[j];
            if (k == -1)
                newpos[i] = (int)new_arity;
            f->bind_col[i] = k;
            f->to_ref[i] = v >= 0 && (c->L->entity_vars[v / 64] >> (v % 64)) & 1;
            if (k == -1) {
                if (new_arity >= MAXC)
                    return dl_error_set(c->err, DL_ELIMIT, "too many variables");
                new_vars[new_arity++] = v;
            }
        }
    }
    dl_coll_t *o = dl_flat_map(r->coll, new_arity, fn_apply, f, c->err);
    if (!o)
        return cfail(c);
    r->coll = o;
    r->arity = new_arity;
    memcpy(r->vars, new_vars, new_arity * sizeof(int));
    int ln = explain(c, "%s (%s ...)", cl->kind == DL__C_PRED ? "filter" : "map", bi->name);
    int rc = 0;
    if (cl->kind == DL__C_FN && (cl->bind.kind == DL__BIND_COLL || cl->bind.kind == DL__BIND_REL))
        rc = distinct(c, r); /* a collection may repeat values */
    mark(c, ln, r->coll);
    return rc;
}

/* ---- conjunctions ------------------------------------------------------------------------- */

static int compile_conj(cctx_t *c, dl__clause_t *const *cl, size_t n, prel_t *r);

/* seed: the distinct values of r's columns for those of `vars` that r binds. */
static int seed_of(cctx_t *c, const prel_t *r, const int *vars, size_t n, prel_t *out) {
    int keepv[MAXC];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (col_of(r, vars[i]) >= 0)
            keepv[k++] = vars[i];
    if (k == 0)
        return unit_rel(c, out);
    *out = *r;
    return project(c, out, keepv, k);
}

static int compile_not(cctx_t *c, const dl__clause_t *cl, prel_t *r) {
    prel_t seed;
    int ln = explain(c, "antijoin on %zu variable%s (%s), body seeded with them:", cl->n_join,
                     cl->n_join == 1 ? "" : "s", cl->kind == DL__C_NOT ? "not" : "not-join");
    c->depth++;
    int saved_src = c->src;
    if (cl->src)
        c->src = cl->src; /* ($x not ...): the body reads $x */
    int rc = seed_of(c, r, cl->join, cl->n_join, &seed);
    if (!rc)
        rc = compile_conj(c, cl->body, cl->n_body, &seed);
    if (!rc)
        rc = project(c, &seed, cl->join, cl->n_join);
    c->src = saved_src;
    c->depth--;
    if (!rc)
        rc = antijoin(c, r, &seed);
    if (!rc)
        mark(c, ln, r->coll);
    return rc;
}

/* A branch of a union: a conjunction seeded with r's columns from_vars renamed to
 * seed_vars (the branch's own variables), whose result columns are res_vars. */
typedef struct branch {
    dl__clause_t *const *cl;
    size_t n;
    const int *seed_vars;
    const int *from_vars;
    size_t n_seed;
    const int *res_vars;
} branch_t;

static int compile_union(cctx_t *c, const prel_t *r, const branch_t *br, size_t n_br,
                         const int *out_vars, size_t n_out, prel_t *res) {
    dl_coll_t *parts[64];
    if (n_br > 64)
        return dl_error_set(c->err, DL_ELIMIT, "too many branches");
    for (size_t b = 0; b < n_br; b++) {
        prel_t seed;
        int rc = seed_of(c, r, br[b].from_vars, br[b].n_seed, &seed);
        if (rc)
            return rc;
        for (size_t i = 0; i < seed.arity; i++)
            for (size_t k = 0; k < br[b].n_seed; k++)
                if (seed.vars[i] == br[b].from_vars[k] && seed.vars[i] != -1) {
                    seed.vars[i] = br[b].seed_vars[k];
                    break;
                }
        c->depth++;
        explain(c, "branch %zu:", b + 1);
        c->depth++;
        rc = compile_conj(c, br[b].cl, br[b].n, &seed);
        c->depth -= 2;
        if (!rc) /* the union below is made distinct */
            rc = project_fx(c, &seed, br[b].res_vars, n_out, true, true);
        if (rc)
            return rc;
        parts[b] = seed.coll;
    }
    dl_coll_t *u = n_br == 1 ? parts[0] : dl_concat(parts, n_br, c->err);
    if (!u)
        return cfail(c);
    res->coll = u;
    res->arity = n_out;
    memcpy(res->vars, out_vars, n_out * sizeof(int));
    res->est = r->est;
    return distinct(c, res);
}

static int compile_or(cctx_t *c, const dl__clause_t *cl, prel_t *r) {
    branch_t br[64];
    if (cl->n_body > 64)
        return dl_error_set(c->err, DL_ELIMIT, "too many branches");
    int ln = explain(c, "union of %zu branches (%s), joined back:", cl->n_body,
                     cl->kind == DL__C_OR ? "or" : "or-join");
    for (size_t b = 0; b < cl->n_body; b++) {
        const dl__clause_t *x = cl->body[b];
        br[b].cl = x->kind == DL__C_AND ? x->body : (dl__clause_t *const *)&cl->body[b];
        br[b].n = x->kind == DL__C_AND ? x->n_body : 1;
        br[b].seed_vars = cl->join;
        br[b].from_vars = cl->join;
        br[b].n_seed = cl->n_join;
        br[b].res_vars = cl->join;
    }
    prel_t u, j;
    int saved_src = c->src;
    if (cl->src)
        c->src = cl->src; /* ($x or ...): the branches read $x */
    int rc = compile_union(c, r, br, cl->n_body, cl->join, cl->n_join, &u);
    c->src = saved_src;
    if (!rc)
        rc = join(c, r, &u, &j);
    if (!rc) {
        *r = j;
        mark(c, ln, j.coll);
    }
    return rc;
}

static int materialize_scc(cctx_t *c, int scc, int src);

#define ARGV(i) (-100 - (int)(i)) /* pseudo-variable of rule argument position i */

/* Whether argument i of the rule is an entity position in some definition (a long
 * constant passed there names an entity: it is taken as a ref, as the reference evaluator
 * matches it). */
static dl_value_t rule_const(const cctx_t *c, const dl__rule_t *rule, size_t i, dl_value_t v) {
    if (v.type != DL_T_INT)
        return v;
    for (size_t d = 0; d < rule->n_defs; d++) {
        int h = rule->defs[d].head[i];
        if ((c->L->entity_vars[h / 64] >> (h % 64)) & 1)
            return dl_value_ref(v.as.i);
    }
    return v;
}

/* m has one column per argument position (ARGV(i)): filters constant arguments, unifies
 * repeated variables, renames to the call's variables and joins into r. */
static int join_call(cctx_t *c, const dl__clause_t *cl, prel_t *r, prel_t *m) {
    int keepv[MAXC] = {0};
    size_t k = 0;
    for (size_t i = 0; i < cl->n_args; i++) {
        const dl__term_t *t = &cl->args[i];
        if (t->kind == DL__TERM_CONST) {
            int col = col_of(m, ARGV(i));
            m->coll = dl_filter_eq(m->coll, (uint32_t)col,
                                   rule_const(c, &c->q->rules[cl->fn], i, t->value), c->err);
            if (!m->coll)
                return cfail(c);
        } else if (t->kind == DL__TERM_VAR) {
            bool first = true;
            for (size_t j = 0; j < i && first; j++)
                if (cl->args[j].kind == DL__TERM_VAR && cl->args[j].var == t->var) {
                    m->coll = dl_filter_cols_eq(m->coll, (uint32_t)col_of(m, ARGV(j)),
                                                (uint32_t)col_of(m, ARGV(i)), c->err);
                    if (!m->coll)
                        return cfail(c);
                    first = false;
                }
            if (first)
                keepv[k++] = ARGV(i);
        }
    }
    int rc = project(c, m, keepv, k);
    if (rc)
        return rc;
    if (k == 0) {
        /* Nothing to bind: an existence test. */
        m->coll = dl_map(m->coll, 1, map_to_nil, NULL, c->err);
        if (!m->coll)
            return cfail(c);
        m->arity = 1;
        m->vars[0] = -1;
        if ((rc = distinct(c, m)))
            return rc;
    } else {
        for (size_t i = 0; i < m->arity; i++)
            m->vars[i] = cl->args[-100 - m->vars[i]].var;
    }
    prel_t j;
    rc = join(c, r, m, &j);
    if (!rc)
        *r = j;
    return rc;
}

typedef struct appc {
    size_t arity; /* input row width */
    size_t n;
    dl_value_t v[MAXC];
} appc_t;

static int map_append_consts(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    appc_t *ac = ctx;
    dl_value_t buf[MAXC];
    memcpy(buf, row, ac->arity * sizeof *buf);
    memcpy(buf + ac->arity, ac->v, ac->n * sizeof *buf);
    return dl_emit(out, buf);
}

/* missing? and get-else, the database builtins, as relational operators:
 *   [(missing? $ ?e :a)]        r antijoin (the entities that have :a)
 *   [(get-else $ ?e :a d) ?v]   (r join [?e ?v] of :a) + (r antijoin entities of :a, ?v = d)
 * get-some is not compiled. */
/* [(get-some $ ?e :a1 :a2 ...) [?attr ?v]]: for each attribute in turn, the rows of r whose
 * entity has no value of an earlier one, joined with this attribute's values, with the
 * attribute's keyword; the union of those. Cardinality-many attributes are not compiled
 * (get-some returns one of their values). */
static int get_some_clause(cctx_t *c, const dl__clause_t *cl, int src, prel_t *r) {
    const dl__term_t *e = &cl->args[1];
    const dl__bind_t *b = &cl->bind;
    if (e->kind != DL__TERM_VAR || b->kind != DL__BIND_TUPLE || b->n != 2 ||
        (b->vars[0] >= 0 && col_of(r, b->vars[0]) >= 0) ||
        (b->vars[1] >= 0 && col_of(r, b->vars[1]) >= 0) ||
        (b->vars[0] >= 0 && b->vars[0] == b->vars[1]) || cl->n_args - 2 > 64)
        return dl__parse_error(c->err, DL_EUNSUPPORTED, cl->text, cl->text_len, cl->form,
                               "this form of get-some is not compiled");
    int ln = explain(c, "get-some over %zu attributes (join + antijoin each)", cl->n_args - 2);
    dl_coll_t *parts[64];
    size_t k = 0;
    prel_t rest = *r; /* rows whose entity had no value of the attributes so far */
    prel_t first;
    memset(&first, 0, sizeof first);
    for (size_t i = 2; i < cl->n_args; i++) {
        const dl__term_t *a = &cl->args[i];
        dl_attr_info_t ai;
        if (a->kind != DL__TERM_CONST || a->value.type != DL_T_KEYWORD)
            return dl__parse_error(c->err, DL_EUNSUPPORTED, cl->text, cl->text_len, cl->form,
                                   "get-some takes constant attributes when compiled");
        if (dl_db_attr(c->db, dl_value_str(a->value, NULL), &ai, NULL))
            return dl__parse_error(c->err, DL_EUNKNOWN_ATTR, cl->text, cl->text_len, a->form,
                                   "unknown attribute :%s", dl_value_str(a->value, NULL));
        if (ai.many)
            return dl__parse_error(c->err, DL_EUNSUPPORTED, cl->text, cl->text_len, a->form,
                                   "get-some on a cardinality-many attribute is not compiled");
        dl_coll_t *base = attr_coll(c, src, ai.id, ai.ident, false);
        if (!base)
            return cfail(c);
        prel_t vals, part, has;
        vals.coll = base;
        vals.arity = 2;
        vals.vars[0] = e->var;
        vals.vars[1] = b->vars[1] >= 0 ? b->vars[1] : -5;
        vals.est = r->est;
        int rc = join(c, &rest, &vals, &part);
        if (rc)
            return rc;
        if (b->vars[1] < 0 && part.arity > rest.arity) {
            /* _ for the value: drop its column (the entity has one value: no duplicates). */
            uint32_t cols[MAXC];
            for (size_t j = 0; j < rest.arity; j++)
                cols[j] = (uint32_t)j;
            part.coll = dl_project(part.coll, cols, rest.arity, c->err);
            part.arity = rest.arity;
            if (!part.coll)
                return cfail(c);
        }
        if (b->vars[0] >= 0) {
            appc_t *ac = keep(c, sizeof *ac);
            if (!ac)
                return DL_ENOMEM;
            ac->arity = part.arity;
            ac->n = 1;
            ac->v[0] = a->value;
            part.coll = dl_map(part.coll, part.arity + 1, map_append_consts, ac, c->err);
            if (!part.coll)
                return cfail(c);
            part.vars[part.arity++] = b->vars[0];
        }
        if (k == 0)
            first = part;
        parts[k++] = part.coll;
        /* The next attribute only for entities without a value of this one. */
        has.coll = base;
        has.arity = 2;
        has.vars[0] = e->var;
        has.vars[1] = -4;
        has.est = r->est;
        rc = project(c, &has, &e->var, 1);
        if (!rc)
            rc = antijoin(c, &rest, &has);
        if (rc)
            return rc;
    }
    dl_coll_t *u = k == 1 ? parts[0] : dl_concat(parts, k, c->err);
    if (!u)
        return cfail(c);
    *r = first;
    r->coll = u;
    mark(c, ln, u);
    return 0;
}

static int db_clause(cctx_t *c, const dl__clause_t *cl, prel_t *r) {
    bool missing = cl->fn == dl__builtin_id_missing();
    bool get_else = cl->fn == dl__builtin_id_get_else();
    const dl__term_t *e = &cl->args[1], *a = &cl->args[2];
    int src = cl->src;
    if (src < 0 || (size_t)src >= c->q->n_srcs || c->L->src_kind[src] == DL__SRC_ABSENT)
        return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                               "no database was supplied for this source");
    if (cl->fn == dl__builtin_id_get_some())
        return get_some_clause(c, cl, src, r);
    if ((!missing && !get_else) || e->kind != DL__TERM_VAR || a->kind != DL__TERM_CONST ||
        a->value.type != DL_T_KEYWORD ||
        (get_else && (cl->args[3].kind != DL__TERM_CONST || cl->bind.kind != DL__BIND_SCALAR ||
                      cl->bind.vars[0] < 0)))
        return dl__parse_error(c->err, DL_EUNSUPPORTED, cl->text, cl->text_len, cl->form,
                               "this form of %s is not compiled", dl__builtin_get(cl->fn)->name);
    dl_attr_info_t ai;
    if (dl_db_attr(c->db, dl_value_str(a->value, NULL), &ai, NULL))
        return dl__parse_error(c->err, DL_EUNKNOWN_ATTR, cl->text, cl->text_len, a->form,
                               "unknown attribute :%s", dl_value_str(a->value, NULL));
    if (get_else && ai.many)
        return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                               "get-else is not supported for cardinality-many attributes");
    if (get_else && cl->args[3].value.type == DL_T_NIL)
        return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                               "get-else: the default cannot be nil");
    dl_coll_t *base = attr_coll(c, src, ai.id, ai.ident, false);
    if (!base)
        return cfail(c);
    prel_t has; /* entities with a value of :a */
    has.coll = base;
    has.arity = 2;
    has.vars[0] = e->var;
    has.vars[1] = -4;
    has.est = r->est;
    int rc = project(c, &has, &e->var, 1);
    if (rc)
        return rc;
    int ln = explain(c, "%s :%s", missing ? "missing? (antijoin)" : "get-else (join + antijoin)",
                     ai.ident);
    if (missing) {
        rc = antijoin(c, r, &has);
        if (!rc)
            mark(c, ln, r->coll);
        return rc;
    }
    int v = cl->bind.vars[0];
    prel_t vals, found, absent = *r;
    vals.coll = base;
    vals.arity = 2;
    vals.vars[0] = e->var;
    vals.vars[1] = v;
    vals.est = r->est;
    if (v == e->var) {
        /* [(get-else $ ?x :a d) ?x]: the value must be the entity itself. */
        vals.coll = dl_filter_cols_eq(base, 0, 1, c->err);
        vals.vars[1] = -4;
        rc = vals.coll ? project(c, &vals, &e->var, 1) : cfail(c);
        if (rc)
            return rc;
    }
    rc = join(c, r, &vals, &found);
    if (!rc)
        rc = antijoin(c, &absent, &has);
    if (rc)
        return rc;
    int vcol = col_of(r, v);
    dl_value_t dflt = cl->args[3].value;
    bool entity_long = dflt.type == DL_T_INT && (c->L->entity_vars[v / 64] >> (v % 64)) & 1;
    if (entity_long)
        dflt = dl_value_ref(dflt.as.i); /* an entity variable: the long names an entity */
    if (vcol >= 0 && entity_long) {
        /* ?v already bound, to a ref or to the same number as a long (a value read in a
         * pattern's value position): either equals the default, as in the reference
         * evaluator's loose equality. */
        dl_coll_t *eq[2] = {dl_filter_eq(absent.coll, (uint32_t)vcol, dflt, c->err),
                            dl_filter_eq(absent.coll, (uint32_t)vcol, cl->args[3].value, c->err)};
        absent.coll = eq[0] && eq[1] ? dl_concat(eq, 2, c->err) : NULL;
    } else if (vcol >= 0) {
        /* ?v already bound: the default must equal it. */
        absent.coll = dl_filter_eq(absent.coll, (uint32_t)vcol, dflt, c->err);
    } else {
        appc_t *ac = keep(c, sizeof *ac);
        if (!ac)
            return DL_ENOMEM;
        ac->arity = absent.arity;
        ac->n = 1;
        ac->v[0] = dflt;
        absent.coll = dl_map(absent.coll, absent.arity + 1, map_append_consts, ac, c->err);
        absent.vars[absent.arity++] = v;
    }
    if (!absent.coll || found.arity != absent.arity)
        return absent.coll ? dl_error_set(c->err, DL_EINTERNAL, "get-else: column mismatch")
                           : cfail(c);
    dl_coll_t *both[2] = {found.coll, absent.coll};
    dl_coll_t *u = dl_concat(both, 2, c->err);
    if (!u)
        return cfail(c);
    *r = found;
    r->coll = u;
    mark(c, ln, u);
    return 0;
}

static int compile_rule_call(cctx_t *c, const dl__clause_t *cl, prel_t *r) {
    const dl_query_t *q = c->q;
    const dl__rule_t *rule = &q->rules[cl->fn];
    int src = cl->src ? cl->src : c->src; /* ($h rule ...): the rule's clauses read $h */
    if ((size_t)src >= c->q->n_srcs || c->L->src_kind[src] == DL__SRC_ABSENT)
        return dl__parse_error(c->err, DL_EINVAL, cl->text, cl->text_len, cl->form,
                               "no database was supplied for %s", c->q->srcs[src]->bytes);
    if (rule->arity > MAXC || rule->n_defs > 64)
        return dl_error_set(c->err, DL_ELIMIT, "rule too large");
    prel_t m;
    m.arity = rule->arity;
    for (size_t i = 0; i < rule->arity; i++)
        m.vars[i] = ARGV(i);
    m.est = DL_MAX(r->est, 100.0);
    if (rule->recursive) {
        int ln;
        if (rule->scc == c->cur_scc && src != c->src)
            return dl__parse_error(c->err, DL_EUNSUPPORTED, cl->text, cl->text_len, cl->form,
                                   "a recursive rule calling itself on another source is not "
                                   "compiled");
        if (rule->scc == c->cur_scc) {
            m.coll = c->rule_in[cl->fn];
            ln = explain(c, "recursive call (%s ...): the loop variable", rule->name->bytes);
        } else {
            int rc = materialize_scc(c, rule->scc, src);
            if (rc)
                return rc;
            m.coll = in_scope(c, c->L->rule_out[(size_t)cl->fn * c->q->n_srcs + (size_t)src]);
            if (!m.coll)
                return cfail(c);
            ln = explain(c, "call (%s ...): its fixpoint, built once, joined", rule->name->bytes);
        }
        int rc = join_call(c, cl, r, &m);
        if (!rc)
            mark(c, ln, r->coll);
        return rc;
    }
    /* Non-recursive: the definitions inlined as a union seeded with the bound arguments
     * (constant arguments are appended to the seed as columns of pseudo-variables). */
    int ln = explain(c, "inline rule %s (%zu definition%s), joined:", rule->name->bytes,
                     rule->n_defs, rule->n_defs == 1 ? "" : "s");
    prel_t rr = *r;
    const int cbase = -1000;
    appc_t *ac = NULL;
    for (size_t i = 0; i < cl->n_args; i++) {
        if (cl->args[i].kind != DL__TERM_CONST)
            continue;
        if (!ac) {
            ac = keep(c, sizeof *ac);
            if (!ac)
                return DL_ENOMEM;
            ac->arity = rr.arity;
        }
        if (rr.arity >= MAXC)
            return dl_error_set(c->err, DL_ELIMIT, "too many columns");
        ac->v[ac->n++] = rule_const(c, rule, i, cl->args[i].value);
        rr.vars[rr.arity++] = cbase - (int)i;
    }
    if (ac) {
        rr.coll = dl_map(rr.coll, rr.arity, map_append_consts, ac, c->err);
        if (!rr.coll)
            return cfail(c);
    }
    /* Per call (rule calls nest while their branches compile): in the live's arena. */
    int(*seedv)[MAXC] = keep(c, rule->n_defs * sizeof *seedv);
    int(*fromv)[MAXC] = keep(c, rule->n_defs * sizeof *fromv);
    if (!seedv || !fromv)
        return DL_ENOMEM;
    branch_t br[64];
    int resv[MAXC];
    for (size_t d = 0; d < rule->n_defs; d++) {
        const dl__rule_def_t *def = &rule->defs[d];
        size_t ns = 0;
        for (size_t i = 0; i < cl->n_args; i++) {
            const dl__term_t *t = &cl->args[i];
            int from = t->kind == DL__TERM_VAR     ? t->var
                       : t->kind == DL__TERM_CONST ? cbase - (int)i
                                                   : -1;
            if (from == -1 || col_of(&rr, from) < 0)
                continue;
            bool dup = false;
            for (size_t k = 0; k < ns; k++)
                dup |= fromv[d][k] == from;
            if (dup)
                continue; /* repeated argument: join_call unifies */
            seedv[d][ns] = def->head[i];
            fromv[d][ns++] = from;
        }
        br[d].cl = def->body;
        br[d].n = def->n_body;
        br[d].seed_vars = seedv[d];
        br[d].from_vars = fromv[d];
        br[d].n_seed = ns;
        br[d].res_vars = def->head;
    }
    for (size_t i = 0; i < rule->arity; i++)
        resv[i] = ARGV(i);
    int saved_src = c->src;
    c->src = src;
    int rc = compile_union(c, &rr, br, rule->n_defs, resv, rule->arity, &m);
    c->src = saved_src;
    if (!rc)
        rc = join_call(c, cl, r, &m);
    if (!rc)
        mark(c, ln, r->coll);
    return rc;
}

/* Whether a clause (nested bodies included) calls a rule of SCC scc. */
static bool calls_scc(const dl_query_t *q, const dl__clause_t *cl, int scc) {
    if (cl->kind == DL__C_RULE && q->rules[cl->fn].scc == scc)
        return true;
    for (size_t i = 0; i < cl->n_body; i++)
        if (calls_scc(q, cl->body[i], scc))
            return true;
    return false;
}

static bool def_calls_scc(const dl_query_t *q, const dl__rule_def_t *def, int scc) {
    for (size_t i = 0; i < def->n_body; i++)
        if (calls_scc(q, def->body[i], scc))
            return true;
    return false;
}

/* Compiles definition d of rule r in sub's scope: its relation over the head variables
 * (duplicates allowed: the union of the definitions is made distinct). */
static int compile_def(cctx_t *c, cctx_t *sub, const dl__rule_t *rule, size_t d, dl_coll_t **out) {
    prel_t body;
    sub->depth = c->depth + 1;
    explain(sub, "%s, definition %zu:", rule->name->bytes, d + 1);
    sub->depth++;
    int rc = unit_rel(sub, &body);
    if (!rc)
        rc = compile_conj(sub, rule->defs[d].body, rule->defs[d].n_body, &body);
    if (!rc)
        rc = project_fx(sub, &body, rule->defs[d].head, rule->arity, true, true);
    *out = body.coll;
    return rc;
}

/* Builds the iterate scope of a recursive SCC over source src once;
 * L->rule_out[r * n_srcs + src] is rule r's fixpoint (root scope). Each rule is one loop
 * variable whose value at iteration 0 is the union of its non-recursive definitions (the
 * definitions that call no rule of the SCC: compiled first), and at i + 1 the distinct
 * union of all its definitions over the variables at i. Starting from the non-recursive
 * part rather than from the empty relation reaches the same fixpoint (it lies below it),
 * one iteration sooner and without an empty input. */
static int materialize_scc(cctx_t *c, int scc, int src) {
    dl_live_t *L = c->L;
    const dl_query_t *q = c->q;
    size_t ns = q->n_srcs;
    for (size_t r = 0; r < q->n_rules; r++)
        if (q->rules[r].scc == scc && L->rule_out[r * ns + (size_t)src])
            return 0;
    cctx_t sub = *c;
    sub.src = src;
    sub.scope = dl_iterate_begin(dl_graph_root(L->g), c->err);
    if (!sub.scope)
        return cfail(c);
    sub.cur_scc = scc;
    dl_var_t **vars = dl_calloc(DL_MAX(q->n_rules, 1), sizeof *vars);
    dl_coll_t **parts = dl_calloc(DL_MAX(q->n_rules, 1) * 64, sizeof *parts);
    size_t *n_parts = dl_calloc(DL_MAX(q->n_rules, 1), sizeof *n_parts);
    if (!vars || !parts || !n_parts) {
        dl_free(vars);
        dl_free(parts);
        dl_free(n_parts);
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    }
    char names[256];
    size_t k = 0;
    names[0] = 0;
    int rc = 0;
    for (size_t r = 0; r < q->n_rules; r++)
        if (q->rules[r].scc == scc && k < sizeof names - 40)
            k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", k ? " " : "",
                                  q->rules[r].name->bytes);
    int ln = explain(c,
                     "iterate {%s}: one loop variable per rule (from its non-recursive "
                     "definitions), distinct per round:",
                     names);
    /* 1. Non-recursive definitions, and the variables starting from them. */
    for (size_t r = 0; r < q->n_rules && !rc; r++) {
        const dl__rule_t *rule = &q->rules[r];
        if (rule->scc != scc)
            continue;
        if (rule->n_defs > 64) {
            rc = dl_error_set(c->err, DL_ELIMIT, "too many definitions");
            break;
        }
        for (size_t d = 0; d < rule->n_defs && !rc; d++)
            if (!def_calls_scc(q, &rule->defs[d], scc))
                rc = compile_def(c, &sub, rule, d, &parts[r * 64 + n_parts[r]++]);
        if (rc)
            break;
        dl_coll_t *init;
        if (n_parts[r] == 0) {
            dl_input_t *empty = const_input(c, rule->arity);
            init = empty ? in_scope(&sub, dl_input_coll(empty)) : NULL;
        } else {
            init = n_parts[r] == 1 ? parts[r * 64] : dl_concat(&parts[r * 64], n_parts[r], c->err);
        }
        vars[r] = init ? dl_var_new(sub.scope, init, c->err) : NULL;
        if (!vars[r]) {
            rc = cfail(c);
            break;
        }
        c->rule_in[r] = dl_var_coll(vars[r]);
    }
    /* 2. The recursive definitions over the variables; each rule's union, distinct. */
    for (size_t r = 0; r < q->n_rules && !rc; r++) {
        const dl__rule_t *rule = &q->rules[r];
        if (rule->scc != scc)
            continue;
        for (size_t d = 0; d < rule->n_defs && !rc; d++)
            if (def_calls_scc(q, &rule->defs[d], scc))
                rc = compile_def(c, &sub, rule, d, &parts[r * 64 + n_parts[r]++]);
        if (rc)
            break;
        dl_coll_t *u =
            n_parts[r] == 1 ? parts[r * 64] : dl_concat(&parts[r * 64], n_parts[r], c->err);
        dl_coll_t *dd = u ? dl_distinct(u, c->err) : NULL;
        if (!dd || dl_var_set(vars[r], dd, c->err)) {
            rc = cfail(c);
            break;
        }
        dl_coll_t **slot = &L->rule_out[r * ns + (size_t)src];
        *slot = dl_leave(dd, c->err);
        if (!*slot)
            rc = cfail(c);
        else if (ln >= 0 && !L->lines[ln].coll)
            mark(c, ln, *slot); /* the first rule's fixpoint */
    }
    for (size_t r = 0; r < q->n_rules; r++)
        if (q->rules[r].scc == scc)
            c->rule_in[r] = NULL;
    dl_free(vars);
    dl_free(parts);
    dl_free(n_parts);
    return rc;
}

static int compile_clause(cctx_t *c, const dl__clause_t *cl, const uint64_t *bound, prel_t *r) {
    switch (cl->kind) {
        case DL__C_PATTERN: {
            prel_t p, j;
            dl__snapq_t sq;
            dl_attr_info_t sai;
            int ssrc;
            bool snap_never;
            if (!is_the_unit(c, r) && snap_query(c, cl, r, &sai, &ssrc, &sq, &snap_never))
                return snap_lookup(c, cl, bound, r, &sai, ssrc, &sq, snap_never);
            int scan_line = (int)c->L->n_lines;
            dl_coll_t *root_coll = NULL;
            int rc = pattern_rel(c, cl, bound, &p, &root_coll);
            if (rc)
                return rc;
            mark(c, scan_line, root_coll);
            if (is_the_unit(c, r)) {
                *r = p; /* joining the unit relation is the identity */
                return 0;
            }
            int sv[MAXC];
            size_t ns = 0;
            for (size_t i = 0; i < p.arity; i++)
                if (col_of(r, p.vars[i]) >= 0)
                    sv[ns++] = p.vars[i];
            char kv[200];
            vars_text(c->q, sv, ns, kv, sizeof kv);
            int jl = explain(c, "join on %s", kv);
            rc = join(c, r, &p, &j);
            if (!rc) {
                *r = j;
                mark(c, jl, j.coll);
            }
            return rc;
        }
        case DL__C_PRED:
        case DL__C_FN:
            return expr_clause(c, cl, r);
        case DL__C_NOT:
        case DL__C_NOT_JOIN:
            return compile_not(c, cl, r);
        case DL__C_OR:
        case DL__C_OR_JOIN:
            return compile_or(c, cl, r);
        case DL__C_AND:
            return compile_conj(c, cl->body, cl->n_body, r);
        case DL__C_RULE:
            return compile_rule_call(c, cl, r);
    }
    return DL_EINTERNAL;
}

/* How many of the clause's variables are bound (a connected clause joins, not crosses). */
static size_t shared(const dl_query_t *q, const dl__clause_t *cl, const uint64_t *bound) {
    uint64_t vs[64];
    size_t w = dl__analyze_words(q);
    memset(vs, 0, w * sizeof(uint64_t));
    dl__analyze_clause_vars(q, cl, vs);
    size_t n = 0;
    for (size_t i = 0; i < w; i++)
        n += (size_t)__builtin_popcountll(vs[i] & bound[i]);
    return n;
}

/* The estimated cost of planning the data patterns of a conjunction greedily from
 * pattern `start` (nothing else bound but `bound`): the sum of the estimated sizes of the
 * intermediate relations, each step joining the connected pattern of least fanout.
 * Patterns that never connect are left out (they cost the same from any start). */
static double plan_cost(cctx_t *c, dl__clause_t *const *cl, size_t n, const bool *done,
                        const uint64_t *bound, size_t start) {
    size_t w = dl__analyze_words(c->q);
    uint64_t b[64];
    bool used[256];
    memcpy(b, bound, w * sizeof *b);
    memcpy(used, done, n * sizeof *used);
    double cur = DL_MAX(pattern_fanout(c, cl[start], b), 1.0), total = cur;
    dl__analyze_clause_vars(c->q, cl[start], b);
    used[start] = true;
    for (;;) {
        size_t pick = n;
        double best = 0;
        for (size_t i = 0; i < n; i++) {
            if (used[i] || cl[i]->kind != DL__C_PATTERN || shared(c->q, cl[i], b) == 0)
                continue;
            double f = pattern_fanout(c, cl[i], b);
            if (pick == n || f < best) {
                pick = i;
                best = f;
            }
        }
        if (pick == n)
            return total;
        cur = DL_MAX(cur * best, 1.0);
        total += cur;
        dl__analyze_clause_vars(c->q, cl[pick], b);
        used[pick] = true;
    }
}

/* Greedy planning of a conjunction, starting from r (its columns are bound). */
static int compile_conj(cctx_t *c, dl__clause_t *const *cl, size_t n, prel_t *r) {
    const dl_query_t *q = c->q;
    size_t w = dl__analyze_words(q);
    uint64_t bound[64];
    bool done[256];
    if (w > 64 || n > 256)
        return dl_error_set(c->err, DL_ELIMIT, "query too large to compile");
    memset(bound, 0, sizeof bound);
    memset(done, 0, sizeof done);
    for (size_t i = 0; i < r->arity; i++)
        if (r->vars[i] >= 0)
            bound[r->vars[i] / 64] |= 1ull << (r->vars[i] % 64);
    for (size_t step = 0; step < n; step++) {
        size_t pick = n;
        /* 1. Filters first: ready clauses that bind nothing (predicates, negation). */
        for (size_t i = 0; i < n && pick == n; i++) {
            if (done[i] || (cl[i]->kind != DL__C_PRED && cl[i]->kind != DL__C_NOT &&
                            cl[i]->kind != DL__C_NOT_JOIN))
                continue;
            int rd = dl__analyze_ready(q, cl[i], bound);
            if (rd == DL_ENOMEM)
                return dl_error_set(c->err, DL_ENOMEM, "out of memory");
            if (rd == 0)
                pick = i;
        }
        /* 2. The cheapest ready clause connected to what is bound; 3. else the cheapest
         * (a cross product the query asked for). Non-patterns rank after patterns. */
        for (int pass = 0; pass < 2 && pick == n; pass++) {
            double best = 0;
            for (size_t i = 0; i < n; i++) {
                if (done[i])
                    continue;
                int rd = dl__analyze_ready(q, cl[i], bound);
                if (rd == DL_ENOMEM)
                    return dl_error_set(c->err, DL_ENOMEM, "out of memory");
                if (rd != 0)
                    continue;
                if (pass == 0 && !is_unit(r) && shared(q, cl[i], bound) == 0)
                    continue;
                /* Patterns rank by their fanout; the first one (nothing bound yet) by
                 * the cost of the whole greedy plan it starts. */
                double est = cl[i]->kind != DL__C_PATTERN ? 1e12
                             : is_unit(r)                 ? plan_cost(c, cl, n, done, bound, i)
                                                          : pattern_fanout(c, cl[i], bound);
                /* One-shot, equal estimates: the lookup keyed by the variable the rows
                 * are already ordered by (it need not sort them). */
                bool tie_win =
                    pick != n && est == best && c->L->snap && c->order_coll == r->coll &&
                    c->order_var >= 0 && cl[i]->kind == DL__C_PATTERN &&
                    cl[i]->args[0].kind == DL__TERM_VAR && cl[i]->args[0].var == c->order_var &&
                    !(cl[pick]->kind == DL__C_PATTERN && cl[pick]->args[0].kind == DL__TERM_VAR &&
                      cl[pick]->args[0].var == c->order_var);
                if (pick == n || est < best || tie_win) {
                    pick = i;
                    best = est;
                }
            }
        }
        if (pick == n)
            return dl_error_set(c->err, DL_EUNBOUND, "no clause can run (unbound variables)");
        int rc = compile_clause(c, cl[pick], bound, r);
        if (rc)
            return rc;
        done[pick] = true;
        for (size_t i = 0; i < r->arity; i++)
            if (r->vars[i] >= 0)
                bound[r->vars[i] / 64] |= 1ull << (r->vars[i] % 64);
    }
    return 0;
}

/* ---- the whole query ------------------------------------------------------------------------ */

typedef struct aggctx {
    const dl_query_t *q;
    size_t n_out;       /* aggregates, in find order */
    size_t val_arity;   /* columns of the reduce input's val */
    int agg_find[MAXC]; /* per aggregate: its find index */
    int val_col[MAXC];  /* per aggregate: its column in val */
    dl_live_t *L;
} aggctx_t;

static int agg_reduce(void *ctx, const dl_value_t *key, const dl_value_t *vals,
                      const int64_t *counts, size_t n, dl_emitter_t *out) {
    (void)key;
    aggctx_t *a = ctx;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += counts[i] > 0 ? (size_t)counts[i] : 0;
    dl_value_t *bag = dl_malloc(DL_MAX(total, 1) * sizeof *bag);
    if (!bag)
        return DL_ENOMEM;
    dl_value_t res[MAXC];
    int rc = 0;
    for (size_t k = 0; k < a->n_out && !rc; k++) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            for (int64_t t = 0; t < counts[i]; t++)
                bag[m++] = vals[i * a->val_arity + (size_t)a->val_col[k]];
        dl__cell_t cell;
        memset(&cell, 0, sizeof cell);
        rc = dl__eval_aggregate(&a->q->find[a->agg_find[k]], bag, m, &cell, NULL);
        res[k] = cell.v;
        if (!rc && cell.is_coll) {
            dl_buf_t b;
            dl__buf_init(&b);
            dl__buf_puts(&b, cell.is_set ? "#{" : "[");
            for (size_t i = 0; i < cell.n; i++) {
                if (i)
                    dl__buf_putc(&b, ' ');
                dl__edn_print_value(cell.items[i], &b);
            }
            dl__buf_puts(&b, cell.is_set ? "}" : "]");
            rc = b.oom ? DL_ENOMEM : dl_value_text(DL_T_STRING, b.data, b.len, &res[k], NULL);
            dl__buf_fini(&b);
        }
        dl_free(cell.items);
    }
    dl_free(bag);
    return rc ? soft_fail(a->L, rc) : dl_emit(out, res);
}

/* Whether the variables `vars` (the :find variables, or the find ++ with variables of an
 * aggregate) determine every variable of r, through functional dependencies of the
 * top-level clauses: [?e :a ?v] on a current or fixed source gives
 * ?v -> ?e when :a is unique and ?e -> ?v when :a is cardinality-one; a function clause
 * gives its arguments -> its scalar output. Then projecting the set r onto `vars` cannot
 * create duplicates, and the distinct after it is not needed. */
static bool vars_determine_all(cctx_t *c, const prel_t *r, const int *vars, size_t n) {
    const dl_query_t *q = c->q;
    uint64_t k[64];
    memset(k, 0, sizeof k);
    for (size_t i = 0; i < n; i++)
        k[vars[i] / 64] |= 1ull << (vars[i] % 64);
    bool grew = true;
    while (grew) {
        grew = false;
        for (size_t i = 0; i < q->n_where; i++) {
            const dl__clause_t *cl = q->where[i];
            int from = -1, to = -1, from2 = -1, to2 = -1;
            if (cl->kind == DL__C_PATTERN) {
                const dl__term_t *t = cl->args;
                dl_attr_info_t ai;
                int src = cl->src;
                if (t[0].kind != DL__TERM_VAR || t[2].kind != DL__TERM_VAR ||
                    t[1].kind != DL__TERM_CONST || t[1].value.type != DL_T_KEYWORD ||
                    c->L->src_kind[src] == DL_LIVE_HISTORY ||
                    dl_db_attr(c->db, dl_value_str(t[1].value, NULL), &ai, NULL))
                    continue;
                if (ai.unique) {
                    from = t[2].var;
                    to = t[0].var;
                }
                if (!ai.many) {
                    from2 = t[0].var;
                    to2 = t[2].var;
                }
            } else if (cl->kind == DL__C_FN && cl->bind.kind == DL__BIND_SCALAR &&
                       cl->bind.vars[0] >= 0) {
                bool all = true;
                for (size_t a = 0; a < cl->n_args; a++)
                    if (cl->args[a].kind == DL__TERM_VAR && !is_bound(k, cl->args[a].var))
                        all = false;
                if (all && !is_bound(k, cl->bind.vars[0])) {
                    k[cl->bind.vars[0] / 64] |= 1ull << (cl->bind.vars[0] % 64);
                    grew = true;
                }
                continue;
            } else {
                continue;
            }
            if (from >= 0 && is_bound(k, from) && !is_bound(k, to)) {
                k[to / 64] |= 1ull << (to % 64);
                grew = true;
            }
            if (from2 >= 0 && is_bound(k, from2) && !is_bound(k, to2)) {
                k[to2 / 64] |= 1ull << (to2 % 64);
                grew = true;
            }
        }
    }
    for (size_t i = 0; i < r->arity; i++)
        if (r->vars[i] >= 0 && !is_bound(k, r->vars[i]))
            return false;
    return true;
}

static bool find_determines_all(cctx_t *c, const prel_t *r) {
    int vars[MAXC];
    for (size_t i = 0; i < c->q->n_find; i++)
        vars[i] = c->q->find[i].var;
    return vars_determine_all(c, r, vars, c->q->n_find);
}

/* Whether variable v is bound by a top-level data pattern's value position on an
 * attribute of value type long: every row then holds a long in v's column. */
static bool var_is_type(cctx_t *c, int v, dl_type_t type) {
    for (size_t i = 0; i < c->q->n_where; i++) {
        const dl__clause_t *cl = c->q->where[i];
        const dl__term_t *t = cl->args;
        dl_attr_info_t ai;
        if (cl->kind != DL__C_PATTERN || cl->n_args < 3 || t[2].kind != DL__TERM_VAR ||
            t[2].var != v || t[1].kind != DL__TERM_CONST || cl->src < 0 ||
            (size_t)cl->src >= c->q->n_srcs || c->L->src_kind[cl->src] == DL__SRC_ABSENT)
            continue;
        int rc = t[1].value.type == DL_T_KEYWORD
                     ? dl_db_attr(c->db, dl_value_str(t[1].value, NULL), &ai, NULL)
                     : dl_db_attr_by_id(c->db, t[1].value.as.i, &ai, NULL);
        if (rc == 0 && ai.type == type && !ai.time_dimension)
            return true;
    }
    return false;
}

static bool var_is_long(cctx_t *c, int v) { return var_is_type(c, v, DL_T_INT); }

/* Grouping keys of an interned type (strings, keywords, uuids) travel through the reduce
 * as longs holding the interned pointer (equal values are the same pointer; docs/values.md:
 * interned and immortal), so that sorting and consolidating them compares integers rather
 * than text; the reduce's output is decoded back. Used only for a variable whose every row
 * holds that type (var_is_type), so no long of the column can be confused with a code. */
typedef struct keycode {
    size_t arity;           /* encode: row width; decode: output width */
    uint8_t type[MAXC];     /* per column: the interned type to encode / decode, or 0 */
    uint32_t cols[MAXC];    /* decode: the reduce output column of each output column */
    dl_join_col_t jc[MAXC]; /* join_encode: the join's output columns */
} keycode_t;

static int map_encode(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    const keycode_t *k = ctx;
    dl_value_t o[MAXC];
    for (size_t i = 0; i < k->arity; i++) {
        o[i] = row[i];
        if (!k->type[i])
            continue;
        if (row[i].type != k->type[i])
            return DL_EINTERNAL; /* var_is_type promised the type */
        o[i] = dl_value_int((int64_t)row[i].as.bits);
    }
    return dl_emit(out, o);
}

/* A join's output columns (k->jc), encoded: a projection and map_encode in one. */
static int join_encode(void *ctx, const dl_value_t *key, const dl_value_t *lval,
                       const dl_value_t *rval, dl_emitter_t *out) {
    const keycode_t *k = ctx;
    dl_value_t o[MAXC];
    for (size_t i = 0; i < k->arity; i++) {
        const dl_value_t *src = k->jc[i].src == DL_JOIN_KEY    ? key
                                : k->jc[i].src == DL_JOIN_LEFT ? lval
                                                               : rval;
        o[i] = src[k->jc[i].col];
        if (!k->type[i])
            continue;
        if (o[i].type != k->type[i])
            return DL_EINTERNAL; /* var_is_type promised the type */
        o[i] = dl_value_int((int64_t)o[i].as.bits);
    }
    return dl_emit(out, o);
}

static int map_decode(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    const keycode_t *k = ctx;
    dl_value_t o[MAXC];
    for (size_t i = 0; i < k->arity; i++) {
        o[i] = row[k->cols[i]];
        if (k->type[i]) {
            uint64_t bits = (uint64_t)o[i].as.i;
            o[i] = dl_value_nil();
            o[i].type = k->type[i];
            o[i].as.bits = bits;
        }
    }
    return dl_emit(out, o);
}

/* The LINEAR reduce (work per change independent of the group, dataflow.h) computes the
 * aggregates when each is count, or sum/avg of a variable known to hold longs (its
 * results: count and sum long, avg double, as Datomic's). Fills lin; else false. */
static bool linear_aggs(cctx_t *c, const aggctx_t *a, dl_linear_agg_t *lin) {
    for (size_t k = 0; k < a->n_out; k++) {
        const dl__find_t *f = &c->q->find[a->agg_find[k]];
        lin[k].col = (uint32_t)a->val_col[k];
        if (f->agg == DL__AGG_COUNT)
            lin[k].op = DL_LINEAR_COUNT;
        else if ((f->agg == DL__AGG_SUM || f->agg == DL__AGG_AVG) && var_is_long(c, f->var))
            lin[k].op = f->agg == DL__AGG_SUM ? DL_LINEAR_SUM : DL_LINEAR_AVG;
        else
            return false;
    }
    return true;
}

/* The combined aggregate's output: the reduce's rows [keys, count, sums...] to :find
 * order; a key whose count summed to 0 has no rows (dl_combine: its zero totals stay). */
typedef struct combout {
    size_t ng, n_find;
    int src[MAXC]; /* per find column: its column in the reduce's row */
} combout_t;

static int map_combout(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    const combout_t *m = ctx;
    if (row[m->ng].type == DL_T_INT && row[m->ng].as.i == 0)
        return 0;
    dl_value_t o[MAXC];
    for (size_t i = 0; i < m->n_find; i++)
        o[i] = row[m->src[i]];
    return dl_emit(out, o);
}

/* One-shot grouped count/sum (of longs) whose (find ++ with) rows are r's rows (no
 * distinct needed): r is folded per group by dl_combine (a hash probe per row, no sort of
 * the rows), and a linear reduce adds up the few partial rows per group. 1 when the query
 * is not of that shape (compile_find's usual plan then runs). */
static int compile_find_combined(cctx_t *c, prel_t *r, const int *cv, size_t ng) {
    const dl_query_t *q = c->q;
    uint32_t kc[MAXC], sc[MAXC];
    int svar[MAXC];
    size_t ns = 0;
    combout_t *m = keep(c, sizeof *m);
    if (!m)
        return DL_ENOMEM;
    m->ng = ng;
    m->n_find = q->n_find;
    for (size_t i = 0; i < ng; i++) {
        int k = col_of(r, cv[i]);
        if (k < 0)
            return 1;
        kc[i] = (uint32_t)k;
    }
    for (size_t i = 0; i < q->n_find; i++) {
        const dl__find_t *f = &q->find[i];
        if (f->agg == DL__AGG_NONE) {
            size_t g = 0;
            while (g < ng && cv[g] != f->var)
                g++;
            if (g == ng)
                return 1;
            m->src[i] = (int)g;
            continue;
        }
        for (size_t g = 0; g < ng; g++)
            if (cv[g] == f->var)
                return 1; /* aggregating a grouping variable */
        if (col_of(r, f->var) < 0)
            return 1;
        if (f->agg == DL__AGG_COUNT) {
            m->src[i] = (int)ng;
        } else if (f->agg == DL__AGG_SUM && var_is_long(c, f->var)) {
            size_t s = 0;
            while (s < ns && svar[s] != f->var)
                s++;
            if (s == ns) {
                svar[ns] = f->var;
                sc[ns++] = (uint32_t)col_of(r, f->var);
            }
            m->src[i] = (int)(ng + 1 + s);
        } else {
            return 1;
        }
    }
    dl_coll_t *src = r->coll;
    llast_t *ll = c->last_lookup;
    if (ll && ll->coll == r->coll && ll->n == r->arity) {
        /* r is the output of the lookup built last and nothing else reads it: it emits
         * only the grouping and summed columns (a bag of them: the combiner adds rows, it
         * never needs them distinct), a narrower buffer; the wide lookup is collected. */
        dl_join_col_t jc[MAXC];
        for (size_t i = 0; i < ng; i++)
            jc[i] = ll->jc[kc[i]];
        for (size_t i = 0; i < ns; i++)
            jc[ng + i] = ll->jc[sc[i]];
        src = dl_lookup_join(ll->in, &ll->spec, jc, ng + ns, c->err);
        if (!src)
            return cfail(c);
        for (size_t i = 0; i < c->L->n_lines; i++)
            if (c->L->lines[i].coll == ll->coll)
                c->L->lines[i].coll = src;
        ll->coll = NULL;
        for (size_t i = 0; i < ng; i++)
            kc[i] = (uint32_t)i;
        for (size_t i = 0; i < ns; i++)
            sc[i] = (uint32_t)(ng + i);
    }
    dl_coll_t *cb = dl_combine(src, kc, ng, sc, ns, c->err);
    uint32_t k2[MAXC], v2[MAXC];
    dl_linear_agg_t lin[MAXC];
    for (size_t i = 0; i < ng; i++)
        k2[i] = (uint32_t)i;
    for (size_t i = 0; i <= ns; i++) {
        v2[i] = (uint32_t)(ng + i);
        lin[i].op = DL_LINEAR_SUM;
        lin[i].col = (uint32_t)i;
    }
    dl_reduce_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = DL_REDUCE_LINEAR;
    spec.aggs = lin;
    spec.n_aggs = ns + 1;
    dl_arr_t *A = cb ? dl_arrange(cb, k2, ng, v2, ns + 1, c->err) : NULL;
    dl_arr_t *R = A ? dl_reduce(A, &spec, c->err) : NULL;
    dl_coll_t *rc_coll = R ? dl_arr_coll(R) : NULL;
    c->L->out = rc_coll ? dl_flat_map(rc_coll, q->n_find, map_combout, m, c->err) : NULL;
    if (!c->L->out)
        return cfail(c);
    mark(c,
         explain(c,
                 "combine by %zu grouping variable%s (count and sums per group and batch), "
                 "linear reduce of the partial sums",
                 ng, ng == 1 ? "" : "s"),
         c->L->out);
    return 0;
}

static int compile_find(cctx_t *c, prel_t *r) {
    const dl_query_t *q = c->q;
    dl_live_t *L = c->L;
    if (q->n_find + q->n_with > MAXC)
        return dl_error_set(c->err, DL_ELIMIT, "too many find variables");
    if (!q->has_agg) {
        int fv[MAXC];
        for (size_t i = 0; i < q->n_find; i++)
            fv[i] = q->find[i].var;
        prel_t p = *r;
        int rc = project_fx(c, &p, fv, q->n_find, true, true);
        if (rc)
            return rc;
        if (find_determines_all(c, r)) {
            L->out = p.coll;
            mark(c, explain(c, "project to :find (it determines every variable: no distinct)"),
                 p.coll);
            return 0;
        }
        L->out = dl_distinct(p.coll, c->err);
        mark(c, explain(c, "project to :find, distinct"), L->out);
        return L->out ? 0 : cfail(c);
    }
    /* Group variables, then the other find and with variables: a set of such rows. */
    int cv[MAXC];
    size_t nc = 0, ng;
    for (int pass = 0; pass < 3; pass++) {
        size_t lim = pass == 2 ? q->n_with : q->n_find;
        for (size_t i = 0; i < lim; i++) {
            int v = pass == 2 ? q->with[i] : q->find[i].var;
            if (pass == 0 && q->find[i].agg != DL__AGG_NONE)
                continue;
            bool dup = false;
            for (size_t k = 0; k < nc; k++)
                dup |= cv[k] == v;
            if (!dup)
                cv[nc++] = v;
        }
        if (pass == 0)
            ng = nc;
    }
    /* The (find ++ with) rows must be a set; when those variables determine every
     * other column of r (functional dependencies, as for the final projection) the
     * projection of the set r has no duplicates and needs no distinct. */
    prel_t p = *r;
    bool injective = c->L->dims == 1 && vars_determine_all(c, r, cv, nc);
    if (c->L->snap && injective && ng > 0) {
        int crc = compile_find_combined(c, r, cv, ng);
        if (crc <= 0)
            return crc;
    }
    /* Interned grouping keys are encoded as longs (keycode_t). */
    keycode_t *enc = keep(c, sizeof *enc), *dec = keep(c, sizeof *dec);
    if (!enc || !dec)
        return DL_ENOMEM;
    bool encoded = false;
    enc->arity = nc;
    for (size_t i = 0; i < ng && c->L->dims == 1; i++) {
        static const dl_type_t interned[3] = {DL_T_STRING, DL_T_KEYWORD, DL_T_UUID};
        for (size_t t = 0; t < 3 && !enc->type[i]; t++)
            if (var_is_type(c, cv[i], interned[t]))
                enc->type[i] = (uint8_t)interned[t];
        encoded |= enc->type[i] != 0;
    }
    int rc = 0;
    jlast_t *j = c->last_join;
    if (encoded && j && j->coll && j->coll == r->coll && j->n == r->arity) {
        /* The join that made r emits the (find ++ with) columns, encoded, itself. */
        for (size_t i = 0; i < nc; i++) {
            int k = col_of(r, cv[i]);
            if (k < 0)
                return dl_error_set(c->err, DL_EINTERNAL, "projection of an unbound variable");
            enc->jc[i] = j->jc[k];
        }
        p.coll = dl_join_map(j->A, j->B, nc, join_encode, enc, c->err);
        if (!p.coll)
            return cfail(c);
        for (size_t i = 0; i < L->n_lines; i++)
            if (L->lines[i].coll == j->coll)
                L->lines[i].coll = p.coll;
        j->coll = NULL;
        p.arity = nc;
        memcpy(p.vars, cv, nc * sizeof *cv);
        if (!injective)
            rc = distinct(c, &p);
    } else {
        rc = project_fx(c, &p, cv, nc, injective, true);
        if (!rc && encoded && !(p.coll = dl_map(p.coll, nc, map_encode, enc, c->err)))
            rc = cfail(c);
    }
    if (rc)
        return rc;
    aggctx_t *a = keep(c, sizeof *a);
    if (a)
        a->L = c->L;
    if (!a)
        return DL_ENOMEM;
    a->q = q;
    for (size_t i = 0; i < q->n_find; i++) {
        if (q->find[i].agg == DL__AGG_NONE)
            continue;
        int col = -1;
        for (size_t k = ng; k < nc; k++)
            if (cv[k] == q->find[i].var)
                col = (int)(k - ng);
        if (col < 0)
            return dl__parse_error(c->err, DL_EUNSUPPORTED, q->text, q->text_len, q->find[i].form,
                                   "aggregating a grouping variable is not compiled");
        a->agg_find[a->n_out] = (int)i;
        a->val_col[a->n_out++] = col;
    }
    /* With no grouping variable the key is a constant column. */
    dl_coll_t *src = p.coll;
    uint32_t kc[MAXC], vc[MAXC];
    size_t nk = 0, nv = 0;
    if (ng == 0) {
        src = dl_map(p.coll, nc + 1, map_append_nil, (void *)(uintptr_t)nc, c->err);
        if (!src)
            return cfail(c);
        kc[nk++] = (uint32_t)nc;
    }
    for (size_t i = 0; i < ng; i++)
        kc[nk++] = (uint32_t)i;
    for (size_t i = ng; i < nc; i++)
        vc[nv++] = (uint32_t)i;
    a->val_arity = nv;
    dl_arr_t *A = dl_arrange(src, kc, nk, vc, nv, c->err);
    dl_reduce_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = DL_REDUCE_GENERAL;
    spec.out_arity = a->n_out;
    spec.general_fn = agg_reduce;
    spec.ctx = a;
    dl_linear_agg_t lin[MAXC];
    bool linear = linear_aggs(c, a, lin);
    if (linear) {
        spec.kind = DL_REDUCE_LINEAR;
        spec.aggs = lin;
        spec.n_aggs = a->n_out;
    }
    dl_arr_t *R = A ? dl_reduce(A, &spec, c->err) : NULL;
    dl_coll_t *rc_coll = R ? dl_arr_coll(R) : NULL;
    if (!rc_coll)
        return cfail(c);
    uint32_t *oc = dec->cols;
    size_t ag = 0;
    dec->arity = q->n_find;
    for (size_t i = 0; i < q->n_find; i++) {
        if (q->find[i].agg != DL__AGG_NONE) {
            oc[i] = (uint32_t)(nk + ag++);
            continue;
        }
        for (size_t k = 0; k < ng; k++)
            if (cv[k] == q->find[i].var) {
                oc[i] = (uint32_t)(ng == 0 ? k + 1 : k);
                dec->type[i] = enc->type[k];
            }
    }
    L->out = encoded ? dl_map(rc_coll, q->n_find, map_decode, dec, c->err)
                     : dl_project(rc_coll, oc, q->n_find, c->err);
    int ln = explain(c,
                     "%sreduce by %zu grouping variable%s%s over the %s(find ++ with) rows: "
                     "%zu aggregate%s",
                     linear ? "linear " : "", ng, ng == 1 ? "" : "s",
                     encoded ? " (text keys as their interned codes)" : "",
                     injective ? "" : "distinct ", a->n_out, a->n_out == 1 ? "" : "s");
    mark(c, ln, L->out);
    return L->out ? 0 : cfail(c);
}

/* ---- eager aggregation ---------------------------------------------------------------------
 * [:find ?g (sum ?x) (count ?y) ... :with ... :where ...rest... [?c :a ?g]] where the one
 * grouping variable ?g is bound only by a pattern [?c :a ?g] on a cardinality-one
 * attribute of a current source (so ?c determines ?g), ?c is not a :find or :with
 * variable, and every aggregate is count or a sum of longs: the rows of `rest` are
 * aggregated per ?c first (a linear reduce keyed by an entity), the per-?c counts and
 * sums are joined with [?c :a ?g], and a second linear reduce adds them up per ?g. The
 * join with :a then sees one row per ?c instead of one per row, and the reduce keyed by
 * ?g one row per ?c. Valid when the (find ++ with) variables determine every variable
 * of the rows (checked after `rest` is compiled, as for the distinct-free projection):
 * then the aggregated bag is the rows themselves, and a sum (count) over the rows of a
 * group is the sum over its ?c of their per-?c sums (counts); a ?c without an :a value
 * drops out in either plan. When the check fails the pattern is joined last and the
 * usual reduce follows. One difference at the edge: a per-?c sum outside int64 is a
 * range error even if the group's total would fit. */
typedef struct eager {
    bool done;   /* compile_eager produced L->out */
    size_t post; /* the index of [?c :a ?g] in q->where */
    int cvar, gvar;
} eager_t;

static bool eager_candidate(cctx_t *c, eager_t *eg) {
    const dl_query_t *q = c->q;
    memset(eg, 0, sizeof *eg);
    /* One-shot plans aggregate through dl_combine instead (compile_find_combined), after
     * lookups of the grouping attribute: cheaper than a per-entity reduce over rows that
     * arrive all at once. */
    if (c->L->snap)
        return false;
    if (!q->has_agg || c->L->dims != 1 || q->n_where < 2 || q->n_where > 256 ||
        q->n_find + q->n_with > MAXC)
        return false;
    int g = -1;
    for (size_t i = 0; i < q->n_find; i++) {
        const dl__find_t *f = &q->find[i];
        if (f->agg == DL__AGG_NONE) {
            if (g >= 0)
                return false; /* one grouping variable */
            g = f->var;
        } else if (f->agg != DL__AGG_COUNT && !(f->agg == DL__AGG_SUM && var_is_long(c, f->var))) {
            return false;
        }
    }
    if (g < 0)
        return false;
    size_t w = dl__analyze_words(q), post = q->n_where;
    for (size_t i = 0; i < q->n_where; i++) {
        uint64_t vs[64];
        memset(vs, 0, w * sizeof *vs);
        dl__analyze_clause_vars(q, q->where[i], vs);
        if (!is_bound(vs, g))
            continue;
        if (post < q->n_where)
            return false; /* ?g in two clauses */
        post = i;
    }
    if (post == q->n_where)
        return false;
    const dl__clause_t *pc = q->where[post];
    const dl__term_t *t = pc->args;
    dl_attr_info_t ai;
    if (pc->kind != DL__C_PATTERN || t[0].kind != DL__TERM_VAR || t[1].kind != DL__TERM_CONST ||
        t[2].kind != DL__TERM_VAR || t[2].var != g || t[0].var == g ||
        t[3].kind != DL__TERM_BLANK || t[4].kind != DL__TERM_BLANK || pc->src < 0 ||
        (size_t)pc->src >= q->n_srcs || c->L->src_kind[pc->src] == DL_LIVE_HISTORY ||
        c->L->src_kind[pc->src] == DL__SRC_ABSENT)
        return false;
    int rc = t[1].value.type == DL_T_KEYWORD
                 ? dl_db_attr(c->db, dl_value_str(t[1].value, NULL), &ai, NULL)
                 : dl_db_attr_by_id(c->db, t[1].value.as.i, &ai, NULL);
    if (rc || ai.many)
        return false;
    int cv = t[0].var;
    for (size_t i = 0; i < q->n_find; i++)
        if (q->find[i].var == cv)
            return false;
    for (size_t i = 0; i < q->n_with; i++)
        if (q->with[i] == cv || q->with[i] == g)
            return false;
    /* ?c must come from another top-level pattern (patterns always bind their variables). */
    bool bound_elsewhere = false;
    for (size_t i = 0; i < q->n_where && !bound_elsewhere; i++) {
        const dl__clause_t *o = q->where[i];
        if (i == post || o->kind != DL__C_PATTERN)
            continue;
        for (size_t k = 0; k < 5; k++)
            bound_elsewhere |= o->args[k].kind == DL__TERM_VAR && o->args[k].var == cv;
    }
    if (!bound_elsewhere)
        return false;
    eg->post = post;
    eg->cvar = cv;
    eg->gvar = g;
    return true;
}

/* The per-?c aggregates (a general reduce: a ?c has few rows, so re-reading its group on
 * a change is cheap, and one-shot it avoids the linear kind's per-row accumulator
 * updates): per aggregate, the count of the rows or the sum of a long column. */
typedef struct eagerr {
    size_t n_aggs, val_arity;
    dl_linear_agg_t aggs[MAXC];
    dl_live_t *L;
} eagerr_t;

static int eager_reduce(void *ctx, const dl_value_t *key, const dl_value_t *vals,
                        const int64_t *counts, size_t n, dl_emitter_t *out) {
    (void)key;
    const eagerr_t *e = ctx;
    dl_value_t o[MAXC];
    for (size_t k = 0; k < e->n_aggs; k++) {
        int64_t acc = 0;
        bool bad = false;
        for (size_t i = 0; i < n && !bad; i++) {
            int64_t x = counts[i];
            if (e->aggs[k].op == DL_LINEAR_SUM) {
                const dl_value_t *v = &vals[i * e->val_arity + e->aggs[k].col];
                if (v->type != DL_T_INT)
                    return soft_fail(e->L, DL_ETYPE);
                bad = __builtin_mul_overflow(counts[i], v->as.i, &x);
            }
            bad = bad || __builtin_add_overflow(acc, x, &acc);
        }
        if (bad)
            return soft_fail(e->L, DL_ERANGE);
        o[k] = dl_value_int(acc);
    }
    return dl_emit(out, o);
}

typedef struct eagerj {
    size_t n_aggs;
    uint8_t type; /* ?g's interned type to encode, or 0 */
} eagerj_t;

/* (per-?c aggregates) joined with [?c ?g]: [?g (encoded), aggregates...]. */
static int eager_join(void *ctx, const dl_value_t *key, const dl_value_t *lval,
                      const dl_value_t *rval, dl_emitter_t *out) {
    (void)key;
    const eagerj_t *e = ctx;
    dl_value_t o[MAXC];
    o[0] = rval[0];
    if (e->type) {
        if (o[0].type != e->type)
            return DL_EINTERNAL; /* var_is_type promised the type */
        o[0] = dl_value_int((int64_t)o[0].as.bits);
    }
    memcpy(o + 1, lval, e->n_aggs * sizeof *o);
    return dl_emit(out, o);
}

static int compile_eager(cctx_t *c, prel_t *r, eager_t *eg) {
    const dl_query_t *q = c->q;
    dl_live_t *L = c->L;
    dl__clause_t *rest[256];
    size_t nr = 0;
    for (size_t i = 0; i < q->n_where; i++)
        if (i != eg->post)
            rest[nr++] = q->where[i];
    int rc = compile_conj(c, rest, nr, r);
    if (rc)
        return rc;
    /* The check that the bag is the rows, on the rows with ?g. */
    int cv[MAXC];
    size_t nc = 0;
    for (size_t i = 0; i < q->n_find; i++)
        cv[nc++] = q->find[i].var;
    for (size_t i = 0; i < q->n_with; i++)
        cv[nc++] = q->with[i];
    prel_t full = *r;
    bool fits = col_of(r, eg->cvar) >= 0 && r->arity < MAXC;
    if (fits)
        full.vars[full.arity++] = eg->gvar;
    if (!fits || !vars_determine_all(c, &full, cv, nc)) {
        uint64_t bound[64];
        memset(bound, 0, sizeof bound);
        for (size_t i = 0; i < r->arity; i++)
            if (r->vars[i] >= 0)
                bound[r->vars[i] / 64] |= 1ull << (r->vars[i] % 64);
        return compile_clause(c, q->where[eg->post], bound, r); /* then compile_find */
    }
    /* 1. Per ?c: count and the sums of the rows (a bag: one row per row of r). */
    int pv[MAXC];
    size_t np = 0;
    pv[np++] = eg->cvar;
    dl_linear_agg_t lin1[MAXC], lin2[MAXC];
    size_t na = 0;
    for (size_t i = 0; i < q->n_find; i++) {
        const dl__find_t *f = &q->find[i];
        if (f->agg == DL__AGG_NONE)
            continue;
        lin1[na].op = f->agg == DL__AGG_COUNT ? DL_LINEAR_COUNT : DL_LINEAR_SUM;
        lin1[na].col = 0;
        if (f->agg == DL__AGG_SUM) {
            size_t k = 1;
            while (k < np && pv[k] != f->var)
                k++;
            if (k == np)
                pv[np++] = f->var;
            lin1[na].col = (uint32_t)(k - 1);
        }
        lin2[na].op = DL_LINEAR_SUM; /* 2. the group's total of the per-?c values */
        lin2[na].col = (uint32_t)na;
        na++;
    }
    prel_t p = *r;
    rc = project_fx(c, &p, pv, np, true, true);
    if (rc)
        return rc;
    static const uint32_t K0[1] = {0};
    uint32_t vc[MAXC];
    for (size_t i = 1; i < np; i++)
        vc[i - 1] = (uint32_t)i;
    eagerr_t *er = keep(c, sizeof *er);
    if (!er)
        return DL_ENOMEM;
    er->n_aggs = na;
    er->val_arity = np - 1;
    memcpy(er->aggs, lin1, na * sizeof *lin1);
    er->L = L;
    dl_reduce_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = DL_REDUCE_GENERAL;
    spec.out_arity = na;
    spec.general_fn = eager_reduce;
    spec.ctx = er;
    dl_arr_t *A1 = dl_arrange(p.coll, K0, 1, vc, np - 1, c->err);
    dl_arr_t *R1 = A1 ? dl_reduce(A1, &spec, c->err) : NULL;
    if (!R1)
        return cfail(c);
    explain(c, "eager aggregation: reduce by %s (count and sums per %s)",
            dl__parse_var_name(q, eg->cvar), dl__parse_var_name(q, eg->cvar));
    /* 3. Joined with [?c :a ?g] (its by-entity arrangement: shared in an engine). */
    uint64_t cb[64];
    memset(cb, 0, sizeof cb);
    cb[eg->cvar / 64] |= 1ull << (eg->cvar % 64);
    prel_t pp;
    dl_coll_t *root_coll = NULL;
    int scan_line = (int)L->n_lines;
    rc = pattern_rel(c, q->where[eg->post], cb, &pp, &root_coll);
    if (rc)
        return rc;
    mark(c, scan_line, root_coll);
    if (pp.arity != 2 || pp.vars[0] != eg->cvar || pp.vars[1] != eg->gvar)
        return dl_error_set(c->err, DL_EINTERNAL, "eager aggregation: pattern shape");
    static const uint32_t K1[1] = {1};
    dl_arr_t *P = dl_arrange(pp.coll, K0, 1, K1, 1, c->err);
    if (!P || (L->engine && dl__engine_note_arr(L, pp.coll, P, c->err)))
        return cfail(c);
    eagerj_t *ej = keep(c, sizeof *ej);
    keycode_t *dec = keep(c, sizeof *dec);
    if (!ej || !dec)
        return DL_ENOMEM;
    ej->n_aggs = na;
    static const dl_type_t interned[3] = {DL_T_STRING, DL_T_KEYWORD, DL_T_UUID};
    for (size_t t = 0; t < 3 && !ej->type; t++)
        if (var_is_type(c, eg->gvar, interned[t]))
            ej->type = (uint8_t)interned[t];
    dl_coll_t *J = dl_join_map(R1, P, 1 + na, eager_join, ej, c->err);
    int jl = explain(c, "join on [%s]", dl__parse_var_name(q, eg->cvar));
    mark(c, jl, J);
    /* 4. Per ?g: the totals. */
    for (size_t i = 0; i < na; i++)
        vc[i] = (uint32_t)(1 + i);
    memset(&spec, 0, sizeof spec);
    spec.kind = DL_REDUCE_LINEAR;
    spec.aggs = lin2;
    spec.n_aggs = na;
    dl_arr_t *A2 = J ? dl_arrange(J, K0, 1, vc, na, c->err) : NULL;
    dl_arr_t *R2 = A2 ? dl_reduce(A2, &spec, c->err) : NULL;
    dl_coll_t *rc_coll = R2 ? dl_arr_coll(R2) : NULL;
    if (!rc_coll)
        return cfail(c);
    dec->arity = q->n_find;
    size_t ag = 0;
    for (size_t i = 0; i < q->n_find; i++) {
        if (q->find[i].agg == DL__AGG_NONE) {
            dec->cols[i] = 0;
            dec->type[i] = ej->type;
        } else {
            dec->cols[i] = (uint32_t)(1 + ag++);
        }
    }
    L->out = dl_map(rc_coll, q->n_find, map_decode, dec, c->err);
    mark(c,
         explain(c, "linear reduce by %s%s: the totals of the per-%s aggregates",
                 dl__parse_var_name(q, eg->gvar),
                 ej->type ? " (text keys as their interned codes)" : "",
                 dl__parse_var_name(q, eg->cvar)),
         L->out);
    if (!L->out)
        return cfail(c);
    eg->done = true;
    return 0;
}

int dl__compile_query(dl_live_t *L, const dl_query_t *q, const dl_db_t *db, dl_error_t *err) {
    cctx_t c = {L, q, db, dl_graph_root(L->g), -1, NULL, 0, err, 0, NULL, NULL, -1, NULL};
    if (q->n_vars > 64 * 64)
        return dl_error_set(err, DL_ELIMIT, "query too large to compile");
    c.rule_in = dl_calloc(DL_MAX(q->n_rules, 1), sizeof *c.rule_in);
    L->rule_out = dl_calloc(DL_MAX(q->n_rules * q->n_srcs, 1), sizeof *L->rule_out);
    if (!c.rule_in || !L->rule_out) {
        dl_free(c.rule_in);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    int rc = 0;
    /* Collection-valued aggregates (distinct, (min n ?x), (max n ?x)) travel through the
     * graph as one value: the canonical EDN text of the collection as an interned string
     * (agg_reduce); dl_live_result reads the marked columns back into collection cells. */
    for (size_t i = 0; i < q->n_find && !rc; i++)
        if (q->find[i].agg == DL__AGG_DISTINCT || q->find[i].agg == DL__AGG_MIN_N ||
            q->find[i].agg == DL__AGG_MAX_N) {
            if (i >= 64)
                rc = dl_error_set(err, DL_ELIMIT, "collection aggregate beyond column 64");
            else
                L->coll_cols |= 1ull << i;
        }
    dl__analyze_entity_vars(q, db, L->entity_vars);
    prel_t r;
    if (!rc)
        rc = unit_rel(&c, &r);
    /* Arguments: one constant relation per binding (rows loaded by dl_live_new). */
    for (size_t i = 0; i < q->n_in && !rc; i++) {
        if (q->in[i].kind != DL__IN_BIND)
            continue;
        const dl__bind_t *b = &q->in[i].bind;
        dl_input_t *in = const_input(&c, b->n);
        if (!in) {
            rc = cfail(&c);
            break;
        }
        L->arg_in[L->n_arg_in++] = in;
        prel_t a, j;
        a.coll = dl_input_coll(in);
        a.arity = b->n;
        a.est = 10;
        int keepv[MAXC];
        size_t nk = 0;
        for (size_t k = 0; k < b->n && !rc; k++) {
            a.vars[k] = b->vars[k] >= 0 ? b->vars[k] : -4 - (int)k;
            if (b->vars[k] < 0)
                continue;
            int first = -1;
            for (size_t t = 0; t < k && first < 0; t++)
                if (b->vars[t] == b->vars[k])
                    first = (int)t;
            if (first < 0) {
                keepv[nk++] = b->vars[k];
                continue;
            }
            /* [?x ?x]: the two values must be equal (the reference evaluator unifies). */
            a.coll = dl_filter_cols_eq(a.coll, (uint32_t)first, (uint32_t)k, err);
            if (!a.coll)
                rc = cfail(&c);
            a.vars[k] = -4 - (int)k;
        }
        if (rc)
            break;
        if (nk < b->n)
            rc = project(&c, &a, keepv, nk); /* drops _ and repeated columns */
        int aln = explain(&c, "argument %s",
                          b->n == 1 && b->vars[0] >= 0 ? dl__parse_var_name(q, b->vars[0])
                                                       : "(tuple, collection or relation)");
        if (rc)
            break;
        mark(&c, aln, a.coll);
        if (is_the_unit(&c, &r)) {
            r = a;
        } else {
            rc = join(&c, &r, &a, &j);
            if (!rc)
                r = j;
        }
    }
    eager_t eg = {0};
    if (!rc && eager_candidate(&c, &eg))
        rc = compile_eager(&c, &r, &eg);
    else if (!rc)
        rc = compile_conj(&c, q->where, q->n_where, &r);
    if (!rc && !eg.done)
        rc = compile_find(&c, &r);
    dl_free(c.rule_in);
    return rc;
}
