/*
 * analyze.c: static analysis of a parsed query: the join variables of not / or, the
 * rules' strongly connected components and stratification, range restriction and safety
 * (which also yields the evaluation order of every conjunction), and the schema check of
 * constant attributes.
 *
 * Clause order does not matter in deltalog (docs/datalog.md "Binding and clause order"):
 * a clause runs once the variables it needs are bound by some other clause of its
 * conjunction, in any position. A query Datomic accepts is accepted with the same result;
 * some queries Datomic rejects for clause order are accepted. What can never be bound is
 * an error (DL_EUNBOUND) naming the variable and the clause.
 */
#include "datalog/datalog.h"

#include <stdio.h>
#include <string.h>

size_t dl__analyze_words(const dl_query_t *q) { return (q->n_vars + 63) / 64 + 1; }

static inline void set_add(uint64_t *s, int v) {
    if (v >= 0)
        s[v / 64] |= 1ull << (v % 64);
}
static inline bool set_has(const uint64_t *s, int v) {
    return v >= 0 && (s[v / 64] >> (v % 64)) & 1;
}

static void term_vars(const dl__term_t *t, size_t n, uint64_t *set) {
    for (size_t i = 0; i < n; i++)
        if (t[i].kind == DL__TERM_VAR)
            set_add(set, t[i].var);
}

void dl__analyze_clause_vars(const dl_query_t *q, const dl__clause_t *c, uint64_t *set) {
    switch (c->kind) {
        case DL__C_PATTERN:
        case DL__C_PRED:
        case DL__C_RULE:
            term_vars(c->args, c->n_args, set);
            break;
        case DL__C_FN:
            term_vars(c->args, c->n_args, set);
            for (size_t i = 0; i < c->bind.n; i++)
                set_add(set, c->bind.vars[i]);
            break;
        case DL__C_NOT_JOIN:
        case DL__C_OR_JOIN:
            for (size_t i = 0; i < c->n_join; i++)
                set_add(set, c->join[i]);
            break;
        case DL__C_NOT:
        case DL__C_OR:
        case DL__C_AND:
            for (size_t i = 0; i < c->n_body; i++)
                dl__analyze_clause_vars(q, c->body[i], set);
            break;
    }
}

#define CERR(cl, code, f, ...)                                                                     \
    dl__parse_error(err, code, (cl)->text, (cl)->text_len, (f) ? (f) : (cl)->form, __VA_ARGS__)

/* ---- join variables of not / or --------------------------------------------------------- */

/* For each clause of a conjunction, `outer` is what the rest of the query can see: the
 * context (variables bound on entry, find / with / rule head) and the other clauses. */
static int resolve_joins(dl_query_t *q, dl__clause_t **cl, size_t n, const uint64_t *context,
                         dl_error_t *err);

static int resolve_clause(dl_query_t *q, dl__clause_t *c, const uint64_t *outer, dl_error_t *err) {
    size_t w = dl__analyze_words(q);
    uint64_t *tmp = dl_calloc(2 * w, sizeof(uint64_t));
    if (!tmp)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    uint64_t *inner = tmp, *ctx = tmp + w;
    int rc = 0;
    switch (c->kind) {
        case DL__C_NOT: {
            for (size_t i = 0; i < c->n_body; i++)
                dl__analyze_clause_vars(q, c->body[i], inner);
            size_t k = 0;
            for (size_t v = 0; v < q->n_vars; v++)
                if (set_has(inner, (int)v) && set_has(outer, (int)v))
                    k++;
            c->join = dl__arena_alloc(&q->arena, (k ? k : 1) * sizeof(int));
            if (!c->join) {
                rc = dl_error_set(err, DL_ENOMEM, "out of memory");
                break;
            }
            c->n_join = 0;
            for (size_t v = 0; v < q->n_vars; v++)
                if (set_has(inner, (int)v) && set_has(outer, (int)v)) {
                    c->join[c->n_join++] = (int)v;
                    set_add(ctx, (int)v);
                }
            if (c->n_join == 0) {
                rc = CERR(c, DL_EUNBOUND, NULL,
                          "not shares no variable with the rest of the query, so it cannot be "
                          "joined");
                break;
            }
            rc = resolve_joins(q, c->body, c->n_body, ctx, err);
            break;
        }
        case DL__C_NOT_JOIN:
            for (size_t i = 0; i < c->n_join; i++)
                set_add(ctx, c->join[i]);
            rc = resolve_joins(q, c->body, c->n_body, ctx, err);
            break;
        case DL__C_OR: {
            /* Datomic: every branch of or uses the same set of variables. */
            dl__analyze_clause_vars(q, c->body[0], inner);
            for (size_t b = 1; b < c->n_body && !rc; b++) {
                memset(ctx, 0, w * sizeof(uint64_t));
                dl__analyze_clause_vars(q, c->body[b], ctx);
                for (size_t v = 0; v < q->n_vars; v++)
                    if (set_has(inner, (int)v) != set_has(ctx, (int)v)) {
                        rc = CERR(c, DL_EUNBOUND, c->body[b]->form,
                                  "all branches of or must use the same variables; %s is not in "
                                  "every branch (use or-join)",
                                  dl__parse_var_name(q, (int)v));
                        break;
                    }
            }
            if (rc)
                break;
            size_t k = 0;
            for (size_t v = 0; v < q->n_vars; v++)
                k += set_has(inner, (int)v);
            c->join = dl__arena_alloc(&q->arena, (k ? k : 1) * sizeof(int));
            if (!c->join) {
                rc = dl_error_set(err, DL_ENOMEM, "out of memory");
                break;
            }
            c->n_join = 0;
            for (size_t v = 0; v < q->n_vars; v++)
                if (set_has(inner, (int)v))
                    c->join[c->n_join++] = (int)v;
            for (size_t b = 0; b < c->n_body && !rc; b++)
                rc = resolve_clause(q, c->body[b], inner, err);
            break;
        }
        case DL__C_OR_JOIN:
            for (size_t i = 0; i < c->n_join; i++)
                set_add(ctx, c->join[i]);
            for (size_t b = 0; b < c->n_body && !rc; b++)
                rc = resolve_clause(q, c->body[b], ctx, err);
            break;
        case DL__C_AND:
            rc = resolve_joins(q, c->body, c->n_body, outer, err);
            break;
        default:
            break;
    }
    dl_free(tmp);
    return rc;
}

static int resolve_joins(dl_query_t *q, dl__clause_t **cl, size_t n, const uint64_t *context,
                         dl_error_t *err) {
    size_t w = dl__analyze_words(q);
    uint64_t *outer = dl_calloc(w, sizeof(uint64_t));
    if (!outer)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        memcpy(outer, context, w * sizeof(uint64_t));
        for (size_t j = 0; j < n; j++)
            if (j != i)
                dl__analyze_clause_vars(q, cl[j], outer);
        rc = resolve_clause(q, cl[i], outer, err);
    }
    dl_free(outer);
    return rc;
}

/* ---- scheduling (range restriction) ----------------------------------------------------- */

static bool term_bound(const dl__term_t *t, const uint64_t *bound) {
    return t->kind != DL__TERM_VAR || set_has(bound, t->var);
}

static int schedule(const dl_query_t *q, dl__clause_t *const *cl, size_t n, uint64_t *bound,
                    size_t *order, dl_error_t *err);

/* Whether a conjunction can run with `bound` and then binds every variable of `need`
 * (need may be NULL). On failure with err set, err says why. */
static int conj_ok(const dl_query_t *q, dl__clause_t *const *cl, size_t n, const uint64_t *bound,
                   const int *need, size_t n_need, const dl__clause_t *owner, dl_error_t *err) {
    size_t w = dl__analyze_words(q);
    uint64_t *b = dl_malloc(w * sizeof(uint64_t));
    size_t *order = dl_malloc((n ? n : 1) * sizeof(size_t));
    int rc = 0;
    if (!b || !order) {
        rc = err ? dl_error_set(err, DL_ENOMEM, "out of memory") : DL_ENOMEM;
    } else {
        memcpy(b, bound, w * sizeof(uint64_t));
        rc = schedule(q, cl, n, b, order, err);
        for (size_t i = 0; !rc && i < n_need; i++)
            if (!set_has(b, need[i]))
                rc = err ? CERR(owner, DL_EUNBOUND, NULL, "%s is not bound by every branch",
                                dl__parse_var_name(q, need[i]))
                         : DL_EUNBOUND;
    }
    dl_free(b);
    dl_free(order);
    return rc;
}

/* 0 when clause c can run now; otherwise DL_EUNBOUND (with err set when err != NULL). */
static int ready(const dl_query_t *q, const dl__clause_t *c, const uint64_t *bound,
                 dl_error_t *err) {
    switch (c->kind) {
        case DL__C_PATTERN:
            return 0;
        case DL__C_PRED:
        case DL__C_FN:
            for (size_t i = 0; i < c->n_args; i++)
                if (!term_bound(&c->args[i], bound))
                    return err ? CERR(c, DL_EUNBOUND, c->args[i].form,
                                      "variable %s is not bound where %s needs it",
                                      dl__parse_var_name(q, c->args[i].var),
                                      dl__builtin_get(c->fn)->name)
                               : DL_EUNBOUND;
            return 0;
        case DL__C_NOT:
        case DL__C_NOT_JOIN: {
            for (size_t i = 0; i < c->n_join; i++)
                if (!set_has(bound, c->join[i]))
                    return err ? CERR(c, DL_EUNBOUND, NULL,
                                      "variable %s must be bound by other clauses before %s",
                                      dl__parse_var_name(q, c->join[i]),
                                      c->kind == DL__C_NOT ? "not" : "not-join")
                               : DL_EUNBOUND;
            size_t w = dl__analyze_words(q);
            uint64_t *b = dl_calloc(w, sizeof(uint64_t));
            if (!b)
                return err ? dl_error_set(err, DL_ENOMEM, "out of memory") : DL_ENOMEM;
            for (size_t i = 0; i < c->n_join; i++)
                set_add(b, c->join[i]);
            int rc = conj_ok(q, c->body, c->n_body, b, NULL, 0, c, err);
            dl_free(b);
            return rc;
        }
        case DL__C_OR:
        case DL__C_OR_JOIN: {
            for (size_t i = 0; i < c->n_req; i++)
                if (!set_has(bound, c->join[i]))
                    return err ? CERR(c, DL_EUNBOUND, NULL,
                                      "variable %s is required bound by or-join",
                                      dl__parse_var_name(q, c->join[i]))
                               : DL_EUNBOUND;
            size_t w = dl__analyze_words(q);
            uint64_t *b = dl_calloc(w, sizeof(uint64_t));
            if (!b)
                return err ? dl_error_set(err, DL_ENOMEM, "out of memory") : DL_ENOMEM;
            for (size_t i = 0; i < c->n_join; i++)
                if (set_has(bound, c->join[i]))
                    set_add(b, c->join[i]);
            int rc = 0;
            for (size_t k = 0; k < c->n_body && !rc; k++) {
                const dl__clause_t *br = c->body[k];
                if (br->kind == DL__C_AND)
                    rc = conj_ok(q, br->body, br->n_body, b, c->join, c->n_join, c, err);
                else
                    rc = conj_ok(q, (dl__clause_t *const *)&c->body[k], 1, b, c->join, c->n_join, c,
                                 err);
            }
            dl_free(b);
            return rc;
        }
        case DL__C_RULE: {
            const dl__rule_t *r = &q->rules[c->fn];
            for (size_t i = 0; i < r->n_req; i++)
                if (!term_bound(&c->args[i], bound))
                    return err ? CERR(c, DL_EUNBOUND, c->args[i].form,
                                      "rule %s requires argument %zu bound; %s is not",
                                      r->name->bytes, i + 1, dl__parse_var_name(q, c->args[i].var))
                               : DL_EUNBOUND;
            if (r->recursive)
                return 0; /* materialized bottom-up; its definitions were checked alone */
            size_t w = dl__analyze_words(q);
            uint64_t *b = dl_calloc(w, sizeof(uint64_t));
            if (!b)
                return err ? dl_error_set(err, DL_ENOMEM, "out of memory") : DL_ENOMEM;
            int rc = 0;
            for (size_t d = 0; d < r->n_defs && !rc; d++) {
                const dl__rule_def_t *def = &r->defs[d];
                memset(b, 0, w * sizeof(uint64_t));
                for (size_t i = 0; i < def->arity; i++)
                    if (c->args[i].kind != DL__TERM_BLANK && term_bound(&c->args[i], bound))
                        set_add(b, def->head[i]);
                rc =
                    conj_ok(q, def->body, def->n_body, b, def->head, def->arity, def->body[0], err);
                if (rc && err)
                    dl_error_prefix(err, "in rule %s called here with these bindings",
                                    r->name->bytes);
            }
            dl_free(b);
            return rc;
        }
        case DL__C_AND:
            return conj_ok(q, c->body, c->n_body, bound, NULL, 0, c, err);
    }
    return DL_EINTERNAL;
}

static void outputs(const dl_query_t *q, const dl__clause_t *c, uint64_t *bound) {
    switch (c->kind) {
        case DL__C_PATTERN:
        case DL__C_RULE:
            term_vars(c->args, c->n_args, bound);
            break;
        case DL__C_FN:
            for (size_t i = 0; i < c->bind.n; i++)
                set_add(bound, c->bind.vars[i]);
            break;
        case DL__C_OR:
        case DL__C_OR_JOIN:
            for (size_t i = 0; i < c->n_join; i++)
                set_add(bound, c->join[i]);
            break;
        case DL__C_AND:
            for (size_t i = 0; i < c->n_body; i++)
                outputs(q, c->body[i], bound);
            break;
        default:
            break;
    }
}

static int schedule(const dl_query_t *q, dl__clause_t *const *cl, size_t n, uint64_t *bound,
                    size_t *order, dl_error_t *err) {
    bool *done = dl_calloc(n ? n : 1, sizeof(bool));
    if (!done)
        return err ? dl_error_set(err, DL_ENOMEM, "out of memory") : DL_ENOMEM;
    size_t k = 0;
    int rc = 0;
    while (k < n) {
        size_t pick = n;
        for (size_t i = 0; i < n && pick == n; i++) {
            if (done[i])
                continue;
            int r = ready(q, cl[i], bound, NULL);
            if (r == DL_ENOMEM) {
                rc = err ? dl_error_set(err, DL_ENOMEM, "out of memory") : DL_ENOMEM;
                goto out;
            }
            if (r == 0)
                pick = i;
        }
        if (pick == n) {
            /* Stuck: report why the first remaining clause cannot run. */
            for (size_t i = 0; i < n; i++)
                if (!done[i]) {
                    rc = err ? ready(q, cl[i], bound, err) : DL_EUNBOUND;
                    if (rc == 0)
                        rc = DL_EINTERNAL;
                    break;
                }
            goto out;
        }
        done[pick] = true;
        order[k++] = pick;
        outputs(q, cl[pick], bound);
    }
out:
    dl_free(done);
    return rc;
}

int dl__analyze_ready(const dl_query_t *q, const dl__clause_t *c, const uint64_t *bound) {
    return ready(q, c, bound, NULL);
}

int dl__analyze_schedule(const dl_query_t *q, dl__clause_t *const *clauses, size_t n,
                         uint64_t *bound, size_t *order, dl_error_t *err) {
    return schedule(q, clauses, n, bound, order, err);
}

/* ---- rules: call graph, SCCs, stratification -------------------------------------------- */

typedef struct graph {
    size_t n;
    bool *edge;     /* n*n: edge[a*n+b] rule a's bodies call rule b */
    bool *neg_edge; /* n*n: ... inside not / not-join */
} graph_t;

static void collect_calls(const dl__clause_t *c, size_t from, bool negated, graph_t *g) {
    if (c->kind == DL__C_RULE) {
        g->edge[from * g->n + (size_t)c->fn] = true;
        if (negated)
            g->neg_edge[from * g->n + (size_t)c->fn] = true;
    }
    bool neg = negated || c->kind == DL__C_NOT || c->kind == DL__C_NOT_JOIN;
    for (size_t i = 0; i < c->n_body; i++)
        collect_calls(c->body[i], from, neg, g);
}

typedef struct tarjan {
    graph_t *g;
    int *index, *low, *stack, *comp;
    bool *on;
    int next, sp, n_comp;
} tarjan_t;

static void strongconnect(tarjan_t *t, int v) {
    t->index[v] = t->low[v] = t->next++;
    t->stack[t->sp++] = v;
    t->on[v] = true;
    for (size_t w = 0; w < t->g->n; w++) {
        if (!t->g->edge[(size_t)v * t->g->n + w])
            continue;
        if (t->index[w] < 0) {
            strongconnect(t, (int)w);
            t->low[v] = DL_MIN(t->low[v], t->low[w]);
        } else if (t->on[w]) {
            t->low[v] = DL_MIN(t->low[v], t->index[w]);
        }
    }
    if (t->low[v] == t->index[v]) {
        int w;
        do {
            w = t->stack[--t->sp];
            t->on[w] = false;
            t->comp[w] = t->n_comp;
        } while (w != v);
        t->n_comp++; /* Tarjan completes callees first: SCC numbers are bottom-up. */
    }
}

/* A path from rule `from` to rule `to` inside one SCC, printed "a -> b -> ...". */
static void cycle_path(const dl_query_t *q, const graph_t *g, int from, int to, char *out,
                       size_t cap) {
    size_t n = g->n;
    int *prev = dl_malloc(n * sizeof(int));
    int *queue = dl_malloc(n * sizeof(int));
    if (!prev || !queue) {
        snprintf(out, cap, "%s -> ... -> %s", q->rules[from].name->bytes, q->rules[to].name->bytes);
        dl_free(prev);
        dl_free(queue);
        return;
    }
    for (size_t i = 0; i < n; i++)
        prev[i] = -2;
    int head = 0, tail = 0;
    queue[tail++] = from;
    prev[from] = -1;
    while (head < tail && prev[to] == -2) {
        int v = queue[head++];
        for (size_t w = 0; w < n; w++)
            if (g->edge[(size_t)v * n + w] && prev[w] == -2 &&
                q->rules[w].scc == q->rules[from].scc) {
                prev[w] = v;
                queue[tail++] = (int)w;
            }
    }
    /* Walk back from `to`, then print forward. */
    int path[64], len = 0;
    for (int v = to; v != -1 && len < 64; v = prev[v]) {
        path[len++] = v;
        if (v == from && len > 1)
            break;
    }
    size_t k = 0;
    out[0] = 0;
    for (int i = len - 1; i >= 0 && k < cap; i--)
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i == len - 1 ? "" : " -> ",
                              q->rules[path[i]].name->bytes);
    dl_free(prev);
    dl_free(queue);
}

static int analyze_rules(dl_query_t *q, dl_error_t *err) {
    size_t n = q->n_rules;
    if (n == 0)
        return 0;
    graph_t g = {n, dl_calloc(n * n, 1), dl_calloc(n * n, 1)};
    tarjan_t t = {&g,
                  dl_malloc(n * sizeof(int)),
                  dl_malloc(n * sizeof(int)),
                  dl_malloc(n * sizeof(int)),
                  dl_malloc(n * sizeof(int)),
                  dl_calloc(n, sizeof(bool)),
                  0,
                  0,
                  0};
    int rc = 0;
    if (!g.edge || !g.neg_edge || !t.index || !t.low || !t.stack || !t.comp || !t.on) {
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t r = 0; r < n; r++)
        for (size_t d = 0; d < q->rules[r].n_defs; d++)
            for (size_t i = 0; i < q->rules[r].defs[d].n_body; i++)
                collect_calls(q->rules[r].defs[d].body[i], r, false, &g);
    for (size_t i = 0; i < n; i++)
        t.index[i] = -1;
    for (size_t i = 0; i < n; i++)
        if (t.index[i] < 0)
            strongconnect(&t, (int)i);
    q->n_sccs = t.n_comp;
    for (size_t r = 0; r < n; r++)
        q->rules[r].scc = t.comp[r];
    for (size_t r = 0; r < n; r++) {
        bool rec = g.edge[r * n + r];
        for (size_t s = 0; s < n && !rec; s++)
            rec = s != r && t.comp[s] == t.comp[r];
        q->rules[r].recursive = rec;
    }
    /* DESIGN: negation must not go through a recursive cycle (stratified negation). */
    for (size_t a = 0; a < n; a++)
        for (size_t b = 0; b < n; b++)
            if (g.neg_edge[a * n + b] && t.comp[a] == t.comp[b]) {
                char path[400];
                cycle_path(q, &g, (int)b, (int)a, path, sizeof path);
                rc = dl__parse_error(err, DL_ESTRATIFY, q->rules_text, q->rules_len,
                                     q->rules[a].form,
                                     "rule %s negates %s, which depends on it: cycle %s -> %s "
                                     "(negation through recursion is not stratifiable)",
                                     q->rules[a].name->bytes, q->rules[b].name->bytes,
                                     q->rules[a].name->bytes, path);
                goto out;
            }
out:
    dl_free(g.edge);
    dl_free(g.neg_edge);
    dl_free(t.index);
    dl_free(t.low);
    dl_free(t.stack);
    dl_free(t.comp);
    dl_free(t.on);
    return rc;
}

/* ---- schema ----------------------------------------------------------------------------- */

static int check_attr(const dl__clause_t *c, const dl__term_t *t, const dl_db_t *db,
                      dl_error_t *err) {
    if (t->kind != DL__TERM_CONST || t->value.type != DL_T_KEYWORD)
        return 0;
    dl_attr_info_t info;
    dl_error_t tmp = {0};
    int rc = dl_db_attr(db, dl_value_str(t->value, NULL), &info, &tmp);
    if (rc == DL_EUNKNOWN_ATTR || rc == DL_ENOTFOUND)
        return CERR(c, DL_EUNKNOWN_ATTR, t->form, "unknown attribute :%s",
                    dl_value_str(t->value, NULL));
    if (rc)
        return dl_error_set(err, rc, "%s", tmp.message);
    return 0;
}

static int check_attrs(const dl__clause_t *c, const dl_db_t *db, dl_error_t *err) {
    int rc = 0;
    if (c->kind == DL__C_PATTERN)
        rc = check_attr(c, &c->args[1], db, err);
    else if ((c->kind == DL__C_PRED || c->kind == DL__C_FN) &&
             (dl__builtin_get(c->fn)->flags & DL__BI_DB))
        for (size_t i = 2; i < c->n_args && !rc; i++)
            if (i == 2 || c->fn == dl__builtin_id_get_some()) /* get-else's 4th: default */
                rc = check_attr(c, &c->args[i], db, err);
    for (size_t i = 0; i < c->n_body && !rc; i++)
        rc = check_attrs(c->body[i], db, err);
    return rc;
}

int dl__analyze_check_schema(const dl_query_t *q, const dl_db_t *db, dl_error_t *err) {
    int rc = 0;
    for (size_t i = 0; i < q->n_where && !rc; i++)
        rc = check_attrs(q->where[i], db, err);
    for (size_t r = 0; r < q->n_rules && !rc; r++)
        for (size_t d = 0; d < q->rules[r].n_defs && !rc; d++)
            for (size_t i = 0; i < q->rules[r].defs[d].n_body && !rc; i++)
                rc = check_attrs(q->rules[r].defs[d].body[i], db, err);
    return rc;
}

/* ---- entity variables ---------------------------------------------------------------------- */

static void entity_vars_of(const dl__clause_t *c, const dl_db_t *db, uint64_t *set) {
    if (c->kind == DL__C_PATTERN) {
        const dl__term_t *t = c->args;
        if (t[0].kind == DL__TERM_VAR)
            set_add(set, t[0].var);
        dl_attr_info_t ai;
        if (db && t[2].kind == DL__TERM_VAR && t[1].kind == DL__TERM_CONST &&
            t[1].value.type == DL_T_KEYWORD &&
            dl_db_attr(db, dl_value_str(t[1].value, NULL), &ai, NULL) == 0 && ai.type == DL_T_REF)
            set_add(set, t[2].var);
    }
    for (size_t i = 0; i < c->n_body; i++)
        entity_vars_of(c->body[i], db, set);
}

void dl__analyze_entity_vars(const dl_query_t *q, const dl_db_t *db, uint64_t *set) {
    for (size_t i = 0; i < q->n_where; i++)
        entity_vars_of(q->where[i], db, set);
    for (size_t r = 0; r < q->n_rules; r++)
        for (size_t d = 0; d < q->rules[r].n_defs; d++)
            for (size_t i = 0; i < q->rules[r].defs[d].n_body; i++)
                entity_vars_of(q->rules[r].defs[d].body[i], db, set);
}

/* ---- the whole analysis ----------------------------------------------------------------- */

static bool src_declared(const dl_query_t *q, int src) {
    for (size_t j = 0; j < q->n_in; j++)
        if (q->in[j].kind == DL__IN_SRC && q->in[j].src == src)
            return true;
    return false;
}

static int check_sources(const dl_query_t *q, const dl__clause_t *c, dl_error_t *err) {
    bool reads = c->kind == DL__C_PATTERN || c->kind == DL__C_RULE ||
                 ((c->kind == DL__C_PRED || c->kind == DL__C_FN) &&
                  (dl__builtin_get(c->fn)->flags & DL__BI_DB));
    if (reads && !src_declared(q, c->src))
        return CERR(c, DL_EPARSE, NULL, "this clause reads %s, which :in does not declare",
                    q->srcs[c->src]->bytes);
    for (size_t i = 0; i < c->n_body; i++) {
        int rc = check_sources(q, c->body[i], err);
        if (rc)
            return rc;
    }
    return 0;
}

int dl__analyze(dl_query_t *q, const dl_db_t *db, dl_error_t *err) {
    int rc = analyze_rules(q, err);
    if (rc)
        return rc;
    size_t w = dl__analyze_words(q);
    uint64_t *ctx = dl_calloc(w, sizeof(uint64_t));
    size_t *order = dl_malloc((q->n_where ? q->n_where : 1) * sizeof(size_t));
    if (!ctx || !order) {
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        goto out;
    }
    /* Rule bodies: joins are resolved against the head. */
    for (size_t r = 0; r < q->n_rules && !rc; r++)
        for (size_t d = 0; d < q->rules[r].n_defs && !rc; d++) {
            dl__rule_def_t *def = &q->rules[r].defs[d];
            memset(ctx, 0, w * sizeof(uint64_t));
            for (size_t i = 0; i < def->arity; i++)
                set_add(ctx, def->head[i]);
            rc = resolve_joins(q, def->body, def->n_body, ctx, err);
        }
    if (rc)
        goto out;
    /* The query: the context is the inputs, :find and :with. */
    memset(ctx, 0, w * sizeof(uint64_t));
    for (size_t i = 0; i < q->n_find; i++)
        set_add(ctx, q->find[i].var);
    for (size_t i = 0; i < q->n_with; i++)
        set_add(ctx, q->with[i]);
    for (size_t i = 0; i < q->n_in; i++)
        if (q->in[i].kind == DL__IN_BIND)
            for (size_t k = 0; k < q->in[i].bind.n; k++)
                set_add(ctx, q->in[i].bind.vars[k]);
    rc = resolve_joins(q, q->where, q->n_where, ctx, err);
    if (rc)
        goto out;
    for (size_t i = 0; i < q->n_where && !rc; i++)
        rc = check_sources(q, q->where[i], err);
    if (rc)
        goto out;
    /* Recursive rules are materialized bottom-up: each definition must bind its whole head
     * from nothing (docs/datalog.md "Rules"). */
    for (size_t r = 0; r < q->n_rules && !rc; r++) {
        if (!q->rules[r].recursive)
            continue;
        for (size_t d = 0; d < q->rules[r].n_defs && !rc; d++) {
            const dl__rule_def_t *def = &q->rules[r].defs[d];
            memset(ctx, 0, w * sizeof(uint64_t));
            rc = conj_ok(q, def->body, def->n_body, ctx, def->head, def->arity, def->body[0], err);
            if (rc)
                dl_error_prefix(err, "recursive rule %s (its body must bind every argument)",
                                q->rules[r].name->bytes);
        }
    }
    if (rc)
        goto out;
    /* Range restriction of the query itself. */
    memset(ctx, 0, w * sizeof(uint64_t));
    for (size_t i = 0; i < q->n_in; i++)
        if (q->in[i].kind == DL__IN_BIND)
            for (size_t k = 0; k < q->in[i].bind.n; k++)
                set_add(ctx, q->in[i].bind.vars[k]);
    rc = schedule(q, q->where, q->n_where, ctx, order, err);
    if (rc)
        goto out;
    for (size_t i = 0; i < q->n_find && !rc; i++)
        if (!set_has(ctx, q->find[i].var))
            rc = dl__parse_error(err, DL_EUNBOUND, q->text, q->text_len, q->find[i].form,
                                 "variable %s in :find is not bound by :where or :in",
                                 dl__parse_var_name(q, q->find[i].var));
    for (size_t i = 0; i < q->n_with && !rc; i++)
        if (!set_has(ctx, q->with[i]))
            rc = dl_error_set(err, DL_EUNBOUND, "variable %s in :with is not bound by :where",
                              dl__parse_var_name(q, q->with[i]));
    if (!rc && db)
        rc = dl__analyze_check_schema(q, db, err);
out:
    dl_free(ctx);
    dl_free(order);
    return rc;
}
