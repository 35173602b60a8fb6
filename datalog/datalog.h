/*
 * datalog.h: the internal interface of the Datalog front end, shared by its files: the
 * query AST (arena-allocated), the parser, the analysis (safety, rules, stratification,
 * schema checks), the builtin functions and the naive reference evaluator.
 *
 * Not API: the public surface is include/deltalog/datalog.h. Nothing here knows about the
 * dataflow engine; the evaluator here is the ORACLE for differential tests, not the
 * product engine (docs/datalog.md "The reference evaluator").
 */
#ifndef DL_DATALOG_H
#define DL_DATALOG_H

#include "base/base.h"

#include <deltalog/datalog.h>
#include <deltalog/store.h>

/* Widths the parser accepts (DL_ELIMIT beyond): find elements, :with variables, rule
 * arguments, function arguments, binding-form variables. The evaluators' fixed buffers
 * rely on these bounds. */
#define DL__MAX_WIDTH 64

/* ---- terms ------------------------------------------------------------------------------ */

typedef enum dl__term_kind {
    DL__TERM_BLANK = 0, /* _ */
    DL__TERM_VAR,       /* ?x: .var */
    DL__TERM_CONST,     /* a scalar constant: .value */
    DL__TERM_FORM,      /* a constant collection (ground's argument, a lookup ref): .form */
    DL__TERM_SRC        /* $ or $name: .src */
} dl__term_kind_t;

typedef struct dl__term {
    dl__term_kind_t kind;
    int var;              /* VAR: index into dl_query.vars */
    int src;              /* SRC: index into dl_query.srcs */
    dl_value_t value;     /* CONST */
    const dl_edn_t *form; /* the source form (positions); FORM: the constant itself */
} dl__term_t;

/* A binding form: the target of a function clause or of an :in input. */
typedef enum dl__bind_kind {
    DL__BIND_SCALAR = 0, /* ?x */
    DL__BIND_TUPLE,      /* [?a ?b] */
    DL__BIND_COLL,       /* [?x ...] */
    DL__BIND_REL         /* [[?a ?b]] */
} dl__bind_kind_t;

typedef struct dl__bind {
    dl__bind_kind_t kind;
    size_t n;  /* number of variables (1 for SCALAR and COLL) */
    int *vars; /* n variable indices; -1 for _ */
    const dl_edn_t *form;
} dl__bind_t;

/* ---- clauses ---------------------------------------------------------------------------- */

typedef enum dl__clause_kind {
    DL__C_PATTERN = 0, /* [src? e a v tx? added?] */
    DL__C_PRED,        /* [(pred args...)] */
    DL__C_FN,          /* [(fn args...) binding] */
    DL__C_NOT,         /* (not clauses...): join vars are all its variables */
    DL__C_NOT_JOIN,    /* (not-join [vars] clauses...) */
    DL__C_OR,          /* (or branches...): branches use the same variables */
    DL__C_OR_JOIN,     /* (or-join [[req...] vars...] branches...) */
    DL__C_AND,         /* (and clauses...): only as a branch of or / or-join */
    DL__C_RULE         /* (name args...) */
} dl__clause_kind_t;

typedef struct dl__clause dl__clause_t;
struct dl__clause {
    dl__clause_kind_t kind;
    const dl_edn_t *form; /* for positions */
    const char *text;     /* the text the form was read from (query or rules) */
    size_t text_len;
    int src;       /* the source it reads (PATTERN, RULE, NOT*, OR*; 0 = $) */
    int fn;        /* PRED/FN: builtin id (dl__builtin_*); RULE: rule index */
    size_t n_args; /* PATTERN: 3..5 terms e a v tx added; PRED/FN/RULE: arguments */
    dl__term_t *args;
    dl__bind_t bind; /* FN */
    size_t n_join;   /* NOT/NOT_JOIN/OR/OR_JOIN: the join variables */
    int *join;
    size_t n_req;  /* OR_JOIN: the first n_req join variables must be bound */
    size_t n_body; /* NOT*, AND: clauses; OR*: branches (each a clause, often AND) */
    dl__clause_t **body;
};

/* ---- rules ------------------------------------------------------------------------------ */

typedef struct dl__rule_def {
    size_t arity;
    int *head; /* arity variable indices (in this definition's own scope) */
    size_t n_body;
    dl__clause_t **body;
    const dl_edn_t *form;
} dl__rule_def_t;

typedef struct dl__rule {
    const dl_sym_t *name;
    size_t arity;
    size_t n_req; /* the first n_req arguments are required-bound ([?a] head syntax) */
    size_t n_defs;
    dl__rule_def_t *defs;
    int scc;        /* strongly connected component (analysis); SCCs numbered bottom-up */
    bool recursive; /* part of a cycle (possibly a self-loop) */
    const dl_edn_t *form;
} dl__rule_t;

/* ---- find and inputs -------------------------------------------------------------------- */

typedef enum dl__agg {
    DL__AGG_NONE = 0,
    DL__AGG_COUNT,
    DL__AGG_COUNT_DISTINCT,
    DL__AGG_SUM,
    DL__AGG_AVG,
    DL__AGG_MEDIAN,
    DL__AGG_VARIANCE,
    DL__AGG_STDDEV,
    DL__AGG_MIN,
    DL__AGG_MAX,
    DL__AGG_MIN_N,
    DL__AGG_MAX_N,
    DL__AGG_DISTINCT
} dl__agg_t;

typedef struct dl__find {
    int var;       /* the variable read */
    dl__agg_t agg; /* NONE for a plain variable */
    int64_t n;     /* MIN_N / MAX_N: how many */
    const dl_edn_t *form;
} dl__find_t;

typedef enum dl__in_kind {
    DL__IN_SRC = 0, /* $ or $name: .src */
    DL__IN_RULES,   /* % */
    DL__IN_BIND     /* a binding form: .bind */
} dl__in_kind_t;

typedef struct dl__input {
    dl__in_kind_t kind;
    int src;
    dl__bind_t bind;
    const dl_edn_t *form;
} dl__input_t;

typedef struct dl__var {
    const dl_sym_t *name; /* "?x" */
    int scope;            /* 0: the query; r+1: rule definition r (numbered in parse order) */
} dl__var_t;

/* The parsed and analyzed query. Invariant after dl__parse_query + dl__analyze: every
 * variable index is < n_vars, every rule call names an existing rule with its arity,
 * the rules' SCCs are numbered so callees come first, and the query is safe. */
struct dl_query {
    dl_arena_t arena;
    char *text; /* copy of the query text (arena); errors point into it */
    size_t text_len;
    char *rules_text; /* copy of the rules text, or NULL */
    size_t rules_len;
    const dl_edn_t *root;

    dl_find_kind_t find_kind;
    size_t n_find;
    dl__find_t *find;
    dl_keys_kind_t keys_kind; /* DL_KEYS_NONE or the :keys/:strs/:syms flavour */
    const dl_sym_t **keys;    /* n_find names when keys_kind != NONE */
    size_t n_with;
    int *with;
    size_t n_in;
    dl__input_t *in;
    size_t n_where;
    dl__clause_t **where;

    size_t n_srcs; /* source names; srcs[0] is "$" */
    const dl_sym_t **srcs;
    size_t n_vars, cap_vars;
    dl__var_t *vars;
    size_t n_rules;
    dl__rule_t *rules;
    int n_sccs;
    bool has_agg;
    bool uses_rules; /* :in has % */
};

/* ---- parse.c ---------------------------------------------------------------------------- */
/* Builds q's AST from q->text (and q->rules_text). DL_EPARSE with position and caret for
 * malformed queries, DL_ENOTFOUND for unknown functions and rules, DL_EARITY for wrong
 * rule and function arities, DL_EUNSUPPORTED for Datomic features deltalog lacks (pull). */
int dl__parse_query(dl_query_t *q, dl_error_t *err) DL_WUR;
/* Records an error at a form's position in the given text (caret message). */
int dl__parse_error(dl_error_t *err, int code, const char *text, size_t len, const dl_edn_t *f,
                    const char *fmt, ...) DL_PRINTF(6, 7);
/* The variable's name, for messages. */
const char *dl__parse_var_name(const dl_query_t *q, int var);

/* ---- analyze.c -------------------------------------------------------------------------- */
/* Rule SCCs and stratification (DL_ESTRATIFY naming the cycle), range restriction and
 * safety (DL_EUNBOUND naming the variable and the clause), and, when db is not NULL,
 * attributes of data patterns (DL_EUNKNOWN_ATTR). */
int dl__analyze(dl_query_t *q, const dl_db_t *db, dl_error_t *err) DL_WUR;
/* Only the schema part: DL_EUNKNOWN_ATTR for a constant attribute db does not have. */
int dl__analyze_check_schema(const dl_query_t *q, const dl_db_t *db, dl_error_t *err) DL_WUR;

/* A bitset over variable indices, sized for one query. */
typedef struct dl__varset {
    size_t n_words;
    uint64_t *w;
} dl__varset_t;

/* The evaluation order of a conjunction given the variables bound on entry: fills
 * order[0..n) with clause indices such that each clause's inputs are bound when it runs
 * (patterns and rule calls first in text order when ready, then the rest as they become
 * ready). On entry `bound` holds the bound variables; on success it holds those bound at
 * the end. DL_EUNBOUND naming the first variable nothing binds. */
/* Adds to set (dl__analyze_words words) the variables used in entity positions: e of a
 * pattern, v of a pattern whose constant attribute is a ref (by db's schema; db may be
 * NULL). A long bound to such a variable from an input or a function is taken as the
 * entity id it names (Datomic passes entity ids as longs): both engines turn it into a ref.
 */
void dl__analyze_entity_vars(const dl_query_t *q, const dl_db_t *db, uint64_t *set);
/* 0 when clause c can run with the variables of `bound`, else DL_EUNBOUND. */
int dl__analyze_ready(const dl_query_t *q, const dl__clause_t *c, const uint64_t *bound);
int dl__analyze_schedule(const dl_query_t *q, dl__clause_t *const *clauses, size_t n,
                         uint64_t *bound, size_t *order, dl_error_t *err) DL_WUR;
/* Adds the variables a clause mentions (all of them, nested too) to set. */
void dl__analyze_clause_vars(const dl_query_t *q, const dl__clause_t *c, uint64_t *set);
size_t dl__analyze_words(const dl_query_t *q);

/* ---- builtin.c -------------------------------------------------------------------------- */

typedef enum dl__builtin_kind {
    DL__BI_PRED = 1,        /* usable as a predicate */
    DL__BI_FN = 2,          /* usable as a function */
    DL__BI_DB = 4,          /* first argument is a source ($): get-else, get-some, missing? */
    DL__BI_GROUND = 8,      /* arguments may be constant collections: ground */
    DL__BI_UNSUPPORTED = 16 /* a Datomic builtin deltalog does not have (tuple values) */
} dl__builtin_kind_t;

typedef struct dl__builtin {
    const char *name;
    int flags;
    int min_args, max_args; /* max_args -1: variadic */
} dl__builtin_t;

/* The builtin named `name` (also under clojure.string/ and str/ aliases); -1 if none. */
int dl__builtin_find(const char *name, size_t len);
const dl__builtin_t *dl__builtin_get(int id);
/* Ids of the builtins eval.c evaluates itself. */
int dl__builtin_id_get_else(void);
int dl__builtin_id_get_some(void);
int dl__builtin_id_missing(void);
int dl__builtin_id_ground(void);

/* A function's result: a scalar, or a collection (list of values), or a relation. */
typedef struct dl__fnval {
    int kind; /* 0 scalar, 1 collection, 2 relation (rows of `arity`) */
    dl_value_t v;
    size_t n, arity;
    dl_value_t *items; /* heap (dl_free) for collections and relations */
} dl__fnval_t;

/* Applies a pure builtin (no database argument) to values. For predicates *out_ok says
 * whether it holds; for functions *out is the result (out->kind 0 with a NIL value means
 * "no result": the binding fails, as Datomic's does for a nil return). DL_ETYPE for a
 * value of the wrong type, DL_ERANGE for overflow and division by zero. */
int dl__builtin_call(int id, const dl_value_t *args, size_t n, bool *out_ok, dl__fnval_t *out,
                     dl_error_t *err) DL_WUR;
/* Numeric-aware comparison used by the comparison predicates: longs and doubles compare
 * by numeric value, everything else by the value total order. */
int dl__builtin_compare(dl_value_t a, dl_value_t b);

/* ---- eval.c (the reference evaluator) --------------------------------------------------- */

/* The result of a query: rows of cells. A cell is a value or a collection (distinct,
 * (min n ?x), (max n ?x)). */
typedef struct dl__cell {
    dl_value_t v;
    bool is_coll;
    bool is_set; /* distinct: a set; min/max n: a vector */
    size_t n;
    dl_value_t *items; /* heap, owned by the result */
} dl__cell_t;

struct dl_query_result {
    dl_find_kind_t kind;
    dl_keys_kind_t keys_kind;
    size_t n_cols;
    char **col_names; /* n_cols names (:keys) or NULL */
    size_t n_rows;
    size_t n_alloc_rows; /* rows allocated in cells (>= n_rows: TUPLE / SCALAR keep one) */
    dl__cell_t *cells;   /* n_rows * n_cols, rows sorted by the value order */
};

/* One aggregate over a bag of values (shared by the evaluator and the compiled reduce);
 * out->items is heap for collection results. */
int dl__eval_aggregate(const dl__find_t *f, dl_value_t *vals, size_t n, dl__cell_t *out,
                       dl_error_t *err) DL_WUR;

/* Evaluates q (see dl_query_eval_naive) into res (zeroed by the caller). */
int dl__eval_run(const dl_query_t *q, const dl_query_source_t *sources, size_t n_sources,
                 const char *args, size_t args_len, dl_query_result_t *res, dl_error_t *err) DL_WUR;

/* ---- live.c: multi-dimensional engines (not yet public API) ----------------------------- */

#endif
