/*
 * datalog.h: the Datalog query language of deltalog (Datomic's dialect): parsing and
 * analysis of queries and rules, compilation to dataflow for one-shot and live queries,
 * EXPLAIN, and the reference evaluator the compiled engine is tested against.
 *
 * The language, its deviations from Datomic and its error behaviour are documented in
 * docs/datalog.md. The evaluator behind dl_query_eval_naive is deliberately naive
 * (bottom-up, nested loops, naive fixpoint): it is the ORACLE that the incremental
 * dataflow compilation is tested against, not the product engine. It reads the store only
 * through its public snapshot API (include/deltalog/store.h).
 *
 * The product engine compiles a query to a dataflow graph (include/deltalog/dataflow.h):
 * dl_live_new builds and loads it, dl_live_apply feeds it each committed transaction,
 * and dl_query_run is the same graph run once. The compiler covers most of the language;
 * what it does not cover yet is DL_EUNSUPPORTED there (docs/datalog.md "Compilation").
 */
#ifndef DELTALOG_DATALOG_H
#define DELTALOG_DATALOG_H

#include <deltalog/common.h>
#include <deltalog/error.h>
#include <deltalog/value.h>
#include <stdbool.h>

DL_BEGIN_DECLS

struct dl_db; /* include/deltalog/store.h */

typedef struct dl_query dl_query_t;               /* a parsed and analyzed query */
typedef struct dl_query_result dl_query_result_t; /* the result of one evaluation */

/* The shape of the :find spec. */
typedef enum dl_find_kind {
    DL_FIND_REL = 0,   /* :find ?a ?b          a set of tuples */
    DL_FIND_COLL = 1,  /* :find [?a ...]       a collection of values */
    DL_FIND_TUPLE = 2, /* :find [?a ?b]        one tuple (or nothing) */
    DL_FIND_SCALAR = 3 /* :find ?a .           one value (or nothing) */
} dl_find_kind_t;

/* :keys / :strs / :syms turn each relation tuple into a map. */
typedef enum dl_keys_kind {
    DL_KEYS_NONE = 0,
    DL_KEYS_KEYS = 1, /* keyword keys */
    DL_KEYS_STRS = 2, /* string keys */
    DL_KEYS_SYMS = 3  /* symbol keys */
} dl_keys_kind_t;

/* Parses and analyzes a query (vector or map form, EDN text) and optionally a rule set
 * (the EDN vector of rules bound to % in :in; NULL when the query uses no rules).
 * When db is not NULL, data patterns with constant attributes are checked against its
 * schema (DL_EUNKNOWN_ATTR); otherwise that check happens at evaluation.
 * Errors: DL_EPARSE (syntax, with line, column and a caret under the offending form),
 * DL_ENOTFOUND (unknown function or rule), DL_EARITY (wrong number of arguments to a
 * rule or function), DL_EUNBOUND (a variable nothing binds, where it is required),
 * DL_ESTRATIFY (negation through recursion, naming the cycle), DL_EUNKNOWN_ATTR,
 * DL_EUNSUPPORTED (Datomic features deltalog lacks, e.g. pull), DL_ENOMEM.
 * *out is new: free with dl_query_free. */
DL_API int dl_query_parse(const char *text, size_t len, const char *rules, size_t rules_len,
                          const struct dl_db *db, dl_query_t **out, dl_error_t *err) DL_WUR;
DL_API void dl_query_free(dl_query_t *q);

DL_API dl_find_kind_t dl_query_find_kind(const dl_query_t *q);
/* The canonical text of a query, so that equal queries can share one live dataflow
 * (DESIGN-NOTES §4): variables renamed ?v0, ?v1, ... in order of first appearance,
 * the map form printed as the vector form, whitespace, commas and comments normalized.
 * Clause order is kept (reordering could change which errors a query raises). Only the
 * syntax is read (DL_EPARSE for malformed EDN). *out new: dl_free. */
DL_API int dl_query_normalize(const char *text, size_t len, char **out, dl_error_t *err) DL_WUR;
/* The number of :in arguments the caller supplies values for (everything but sources and
 * %), in :in order. */
DL_API size_t dl_query_n_args(const dl_query_t *q);

/* A database argument of a query: which :in source name it binds and the snapshot. */
typedef struct dl_query_source {
    const char *name;       /* "$" or "$name" as written in :in */
    const struct dl_db *db; /* borrowed for the call; filtered views (as-of, history) OK */
} dl_query_source_t;

/* Evaluates q once with the reference evaluator. sources: one per source in :in (a query
 * without :in reads the single source "$"). args: the EDN text of a vector holding one
 * form per non-source :in argument, in order (NULL or "[]" when there are none).
 * Errors: DL_EINVAL (missing source or wrong argument shape), DL_EUNKNOWN_ATTR,
 * DL_ETYPE (a builtin applied to a value of the wrong type: the query fails, as in
 * Datomic), DL_ERANGE (overflow, division by zero), DL_ENOMEM.
 * *out is new: free with dl_query_result_free. */
DL_API int dl_query_eval_naive(const dl_query_t *q, const dl_query_source_t *sources,
                               size_t n_sources, const char *args, size_t args_len,
                               dl_query_result_t **out, dl_error_t *err) DL_WUR;

DL_API void dl_query_result_free(dl_query_result_t *r);
/* Number of rows (tuples); 0 or 1 for TUPLE and SCALAR finds. */
DL_API size_t dl_query_result_rows(const dl_query_result_t *r);
/* Number of columns: the :find elements. */
DL_API size_t dl_query_result_cols(const dl_query_result_t *r);
/* The value in row `row`, column `col` (rows sorted by the value order). DL_ERANGE outside
 * the result, DL_ETYPE for a collection cell (distinct, (min n ?x), (max n ?x): read those
 * with dl_query_result_to_edn). */
DL_API int dl_query_result_value(const dl_query_result_t *r, size_t row, size_t col,
                                 dl_value_t *out, dl_error_t *err) DL_WUR;
/* The canonical EDN text of the result (new: dl_free): REL as a sorted vector of
 * vectors (of maps with :keys), COLL as a sorted vector, TUPLE as a vector or nil,
 * SCALAR as a value or nil; distinct aggregates print as sets. NULL on out of memory. */
DL_API char *dl_query_result_to_edn(const dl_query_result_t *r);

/* ---- compiled queries: one-shot and live ------------------------------------------------- */

struct dl_commit; /* include/deltalog/store.h */

typedef struct dl_live dl_live_t; /* a query compiled to its own dataflow graph */

/* Compiles q against db's schema and statistics (join order, lookup refs and idents are
 * resolved on db), loads db's current contents of every attribute the query reads at
 * db's basis transaction, runs to completion. args: as for dl_query_eval_naive.
 * q is borrowed and must outlive the live query. Errors: those of evaluation, plus
 * DL_EUNSUPPORTED for constructs the compiler does not handle yet (the reference
 * evaluator does). *out is new: dl_live_free. */
DL_API int dl_live_new(const dl_query_t *q, const struct dl_db *db, const char *args,
                       size_t args_len, dl_live_t **out, dl_error_t *err) DL_WUR;
DL_API void dl_live_free(dl_live_t *l);
/* Feeds one committed transaction (as delivered by dl_store_listen or dl_db_tx_range):
 * its changes to the attributes the query reads, at time [tx]; then runs until the
 * transaction is complete. Transactions at or before the last one applied (or the basis
 * loaded) are ignored. A failed run (e.g. DL_ETYPE from a builtin) leaves the live query
 * failed: every later call returns that code. */
DL_API int dl_live_apply(dl_live_t *l, const struct dl_commit *c, dl_error_t *err) DL_WUR;
/* The change the last dl_live_new / dl_live_apply made to the result: n rows of the
 * :find arity with nonzero diffs (borrowed until the next apply; empty after an apply of
 * a transaction that was already applied). */
DL_API size_t dl_live_changes(const dl_live_t *l, const dl_value_t **rows, const int64_t **diffs);

/* Multi-dimensional time (issue 5; docs/datalog.md "Multi-dimensional time"): a standalone
 * live query over one current database whose dataflow has n_dims time coordinates, the
 * first n_dims of the store's time vector [tx, dim1, ...] (1..DL_TIME_MAX_ROOT_DIM; 1 is
 * dl_live_new). The snapshot enters as db's history, each assertion and retraction at its
 * transaction's time vector; dl_live_apply enters each change at the commit's time vector
 * and advances to its frontier vector. Every dl_live_changes row then has a time: n_dims
 * coordinates at dl_live_change_times()[i * n_dims], the changes at one time consolidated,
 * times in lexicographic order; a retroactive commit yields changes at several times (the
 * corrections at later coordinates). The sum of the changes at times <= a point p equals
 * dl_query_run on dl_db_as_of_point(db, p) when each datom's changes carry non-decreasing
 * coordinates. dl_engine_new_dims shares base arrangements among such queries; DL_EUNSUPPORTED
 * for queries that bind a
 * transaction (a tx or added column). dl_live_result is the sum over all times. */
DL_API int dl_live_new_dims(const dl_query_t *q, const struct dl_db *db, const char *args,
                            size_t args_len, size_t n_dims, dl_live_t **out,
                            dl_error_t *err) DL_WUR;
/* The number of time coordinates of l's graph (1 for dl_live_new; an engine query has its
 * engine's). */
DL_API size_t dl_live_dims(const dl_live_t *l);
/* The times of the last dl_live_changes, dl_live_dims coordinates each (NULL when 1). */
DL_API const uint64_t *dl_live_change_times(const dl_live_t *l);
/* The current result (new: dl_query_result_free). DL_EINTERNAL if a row's multiplicity is
 * not 1 (set semantics are an invariant). */
DL_API int dl_live_result(const dl_live_t *l, dl_query_result_t **out, dl_error_t *err) DL_WUR;
/* Stops keeping the accumulated result (kept by default), for an owner that keeps it itself
 * from dl_live_changes, as a subscription source does: a change then costs no update of the
 * result's hash table. Afterwards dl_live_result fails with DL_ESTATE, and an equal one-shot
 * query of the engine (dl_engine_query) is run instead of read from this one. Irreversible.
 * NULL-safe. */
DL_API void dl_live_drop_result(dl_live_t *l);
/* EXPLAIN: the plan, one operator per line with its keys and estimated sizes (new:
 * dl_free; NULL on out of memory). */
DL_API char *dl_live_explain(const dl_live_t *l);
/* EXPLAIN of q compiled against db; with analyze, the graph is also loaded and run and
 * each line of the root scope shows the actual number of rows of its output
 * ("[actual N]"; lines inside iterate scopes have none). *out new: dl_free. */
DL_API int dl_query_explain(const dl_query_t *q, const struct dl_db *db, const char *args,
                            size_t args_len, bool analyze, char **out, dl_error_t *err) DL_WUR;
/* The same for the plan a one-shot runs (dl_query_run): it reads db's indexes directly
 * (range scans, lookup joins, combined aggregates; docs/datalog.md "One-shot plans"),
 * where the plan above is the one a live query keeps. */
DL_API int dl_query_explain_oneshot(const dl_query_t *q, const struct dl_db *db, const char *args,
                                    size_t args_len, bool analyze, char **out,
                                    dl_error_t *err) DL_WUR;
/* One-shot evaluation with the compiled engine: dl_live_new, read, free. */
DL_API int dl_query_run(const dl_query_t *q, const struct dl_db *db, const char *args,
                        size_t args_len, dl_query_result_t **out, dl_error_t *err) DL_WUR;

/* Several sources (:in $ $h ...), each following the store in its own way:
 *   CURRENT  the latest state: loaded from db, then every applied change;
 *   HISTORY  every assertion and retraction (db a dl_db_history view): loaded, then every
 *            applied change is added (history only grows);
 *   FIXED    a snapshot that never changes (an as-of or since view): loaded once.
 * The schema and statistics come from the source named "$" (else the first). */
typedef enum dl_live_src_kind {
    DL_LIVE_CURRENT = 0,
    DL_LIVE_HISTORY = 1,
    DL_LIVE_FIXED = 2
} dl_live_src_kind_t;
typedef struct dl_live_source {
    const char *name;       /* as in :in */
    const struct dl_db *db; /* borrowed for the call */
    dl_live_src_kind_t kind;
} dl_live_source_t;
DL_API int dl_live_new_sources(const dl_query_t *q, const dl_live_source_t *sources,
                               size_t n_sources, const char *args, size_t args_len, dl_live_t **out,
                               dl_error_t *err) DL_WUR;
DL_API int dl_query_run_sources(const dl_query_t *q, const dl_live_source_t *sources,
                                size_t n_sources, const char *args, size_t args_len,
                                dl_query_result_t **out, dl_error_t *err) DL_WUR;

/* ---- the engine: one dataflow graph per store, shared by every query ---------------------
 * One graph; one input per (attribute, shape) read by any query, arranged by entity, and
 * by value on first use by a join; these base arrangements are shared by every query that
 * reads them (a query added over existing data does not re-index it) and refcounted.
 * A commit is applied once (dl_engine_apply): its changes go to the inputs of the
 * attributes it touches, then one run updates every query. Queries are added to the
 * running graph and removed when freed (their operators and the arrangements only they
 * used are returned to the allocator; a base attribute no query reads is dropped unless
 * dl_engine_keep_base). Engine queries read one current source ($); as-of and history
 * queries use the standalone calls above. docs/datalog.md "Engine". */
typedef struct dl_engine dl_engine_t;

/* new: an empty engine at db's basis transaction (db borrowed for the call). */
DL_API int dl_engine_new(const struct dl_db *db, dl_engine_t **out, dl_error_t *err) DL_WUR;
/* An empty engine (dl_engine_t) at db's basis transaction whose graph has n_dims time
 * coordinates (1..DL_TIME_MAX_ROOT_DIM), the store's first n_dims [tx, dim1, ...]: its
 * queries (dl_engine_live_new) are what dl_live_new_dims computes, and queries of one
 * engine share its base arrangements. n_dims 1 is dl_engine_new. Commits
 * (dl_engine_apply) enter at their time vectors and advance the inputs to their frontier
 * vectors; a commit behind that frontier fails the engine (DL_ETIME). docs/datalog.md
 * "Multi-dimensional engines". */
DL_API int dl_engine_new_dims(const struct dl_db *db, size_t n_dims, dl_engine_t **out,
                              dl_error_t *err) DL_WUR;
/* The time coordinates of e's graph (0 for NULL). */
DL_API size_t dl_engine_dims(const dl_engine_t *e);
/* Frees the engine. Its live queries must have been freed (dl_live_free) first. */
DL_API void dl_engine_free(dl_engine_t *e);
/* Keep base attributes that no query reads any longer (a cache for one-shot queries). */
DL_API void dl_engine_keep_base(dl_engine_t *e, bool keep);
/* Drops the base attributes no live query reads (with their arrangements). */
DL_API int dl_engine_trim(dl_engine_t *e, dl_error_t *err) DL_WUR;
/* Applies one committed transaction (in order, as dl_live_apply) to every query of the
 * engine; transactions at or before the last one applied are ignored. A query whose
 * builtin fails (DL_ETYPE, DL_ERANGE) fails alone (dl_live_status); an engine run that
 * fails otherwise (DL_ENOMEM) fails the engine: every later call returns that code. */
DL_API int dl_engine_apply(dl_engine_t *e, const struct dl_commit *c, dl_error_t *err) DL_WUR;
/* The last transaction applied (or the basis). */
DL_API uint64_t dl_engine_tx(const dl_engine_t *e);
/* A live query in the engine: compiled against db (which must be at the engine's last
 * transaction: DL_ESTATE otherwise) and added to the running graph; its initial result is
 * its first dl_live_changes. DL_EUNSUPPORTED for queries with several sources. Read it with
 * dl_live_result / dl_live_changes / dl_live_explain; dl_live_apply on it applies the
 * commit to the whole engine (once: later calls for the same transaction only report);
 * dl_live_free removes it from the engine. */
DL_API int dl_engine_live_new(dl_engine_t *e, const dl_query_t *q, const struct dl_db *db,
                              const char *args, size_t args_len, dl_live_t **out,
                              dl_error_t *err) DL_WUR;
/* One-shot query over the engine's current state: dl_engine_live_new, read, free. With
 * dl_engine_keep_base, later queries find the base arrangements built. */
DL_API int dl_engine_query(dl_engine_t *e, const dl_query_t *q, const struct dl_db *db,
                           const char *args, size_t args_len, dl_query_result_t **out,
                           dl_error_t *err) DL_WUR;
/* The statistics of the engine's graph (operators, arrangements, arranged records). */
struct dl_graph_stats;
DL_API void dl_engine_stats(const dl_engine_t *e, struct dl_graph_stats *out);
/* 0, or the code with which the live query failed (a builtin's error at some commit). */
DL_API int dl_live_status(const dl_live_t *l);

DL_END_DECLS
#endif
