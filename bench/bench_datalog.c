/*
 * bench_datalog.c: the Datalog front end.
 * - datalog_compile: parse + analyze, and compile to a dataflow graph (dl_live_new on a
 *   store holding only the schema), of a 20-clause query with 3 rules (target < 1 ms).
 * - datalog_w2_oneshot: the W2 dashboard query (../shared/bench/README.md) over a
 *   synthetic in-process order set of the W2 shape, one-shot through the compiled graph
 *   (dl_query_run) and through the reference evaluator, with the answers compared.
 * - datalog_w2_live: the same query live; per-transaction latency of one-order
 *   transactions (new order, status change) from commit to complete result.
 * Usage: bench_datalog [--orders N (20000)] [--txs N (500)] [--reps N (200)]
 *                      [--no-reference] (the reference runs only up to 50000 orders)
 * The data is generated here (splitmix64, seed 42) rather than read from gen.py's files,
 * so the orders count is free; the query and shapes are W2's.
 */
#include "bench/harness.h"

#include "base/base.h"
#include <deltalog/datalog.h>
#include <deltalog/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 42;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void die(const char *what, const dl_error_t *err) {
    fprintf(stderr, "bench_datalog: %s: %s\n", what, err->message);
    exit(1);
}

static void transact(dl_store_t *st, const char *text, size_t len) {
    dl_error_t err = {0};
    if (dl_store_transact_edn(st, text, len, NULL, &err))
        die("transact", &err);
}

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one "
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/customer :db/valueType :db.type/ref :db/cardinality "
    ":db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/status :db/valueType :db.type/string :db/cardinality "
    ":db.cardinality/one :db/index true}"
    " {:db/ident :customer/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one "
    "  :db/unique :db.unique/identity}"
    " {:db/ident :customer/region :db/valueType :db.type/string :db/cardinality "
    ":db.cardinality/one}"
    " {:db/ident :customer/name :db/valueType :db.type/string :db/cardinality "
    ":db.cardinality/one}"
    " {:db/ident :customer/friend :db/valueType :db.type/ref :db/cardinality "
    ":db.cardinality/many}]";

static const char *w2_query = "[:find ?region (sum ?amount) (count ?o) :with ?o"
                              " :where [?o :order/status \"open\"] [?o :order/customer ?c]"
                              " [?c :customer/region ?region] [?o :order/amount ?amount]]";

/* 20 clauses, 3 rules (one recursive). */
static const char *big_query =
    "[:find ?r (count ?o) (sum ?a) :with ?o :in $ % ?min"
    " :where [?o :order/status ?s] [?o :order/customer ?c] [?o :order/amount ?a]"
    " [(>= ?a ?min)] [?c :customer/region ?r] [?c :customer/name ?n]"
    " [(str/starts-with? ?n \"c\")] (not [?o :order/status \"cancelled\"])"
    " (or [?o :order/status \"open\"] [?o :order/status \"paid\"])"
    " (big ?o) (linked ?c ?c2) [?c2 :customer/region ?r2] [(!= ?r ?r2)]"
    " (regional ?c ?r) [?o :order/id ?oid] [(+ ?oid 1) ?next] [(> ?next 0)]"
    " [(count ?n) ?len] [(< ?len 100)] (not-join [?c] [?c :customer/id -1])]";
static const char *big_rules = "[[(big ?o) [?o :order/amount ?a] [(> ?a 10)]]"
                               " [(linked ?a ?b) [?a :customer/friend ?b]]"
                               " [(linked ?a ?b) [?a :customer/friend ?x] (linked ?x ?b)]"
                               " [(regional ?c ?r) [?c :customer/region ?r]]]";

static void bench_compile(int reps) {
    dl_store_t *st = NULL;
    dl_error_t err = {0};
    if (dl_store_open_memory(&st, &err))
        die("open", &err);
    transact(st, schema, strlen(schema));
    dl_db_t *db = dl_store_db(st);
    bench_samples_t parse = {0}, compile = {0};
    for (int i = 0; i < reps; i++) {
        uint64_t t0 = bench_now_ns();
        dl_query_t *q = NULL;
        if (dl_query_parse(big_query, strlen(big_query), big_rules, strlen(big_rules), db, &q,
                           &err))
            die("parse", &err);
        uint64_t t1 = bench_now_ns();
        dl_live_t *l = NULL;
        if (dl_live_new(q, db, "[5]", 3, &l, &err))
            die("compile", &err);
        uint64_t t2 = bench_now_ns();
        bench_samples_add(&parse, t1 - t0);
        bench_samples_add(&compile, t2 - t1);
        dl_live_free(l);
        dl_query_free(q);
    }
    json_t *params = json_pack("{s:i,s:i,s:i}", "clauses", 20, "rules", 3, "reps", reps);
    bench_emit(json_pack("{s:s,s:O,s:f,s:f,s:f}", "bench", "datalog_parse_analyze", "params",
                         params, "p50_us", bench_samples_pct_us(&parse, 0.5), "p99_us",
                         bench_samples_pct_us(&parse, 0.99), "peak_rss_mb", bench_peak_rss_mb()));
    bench_emit(json_pack("{s:s,s:o,s:f,s:f,s:f}", "bench", "datalog_compile", "params", params,
                         "p50_us", bench_samples_pct_us(&compile, 0.5), "p99_us",
                         bench_samples_pct_us(&compile, 0.99), "peak_rss_mb", bench_peak_rss_mb()));
    bench_samples_free(&parse);
    bench_samples_free(&compile);
    dl_db_unref(db);
    dl_store_close(st);
}

typedef struct feed {
    dl_live_t *l;
    dl_error_t err;
} feed_t;

static int feed(void *ctx, const dl_commit_t *c) {
    feed_t *f = ctx;
    return dl_live_apply(f->l, c, &f->err);
}

static const char *statuses[] = {"open", "paid", "shipped", "cancelled"};

static void bench_w2(long n_orders, int n_txs, bool with_ref) {
    dl_store_t *st = NULL;
    dl_error_t err = {0};
    if (dl_store_open_memory(&st, &err))
        die("open", &err);
    transact(st, schema, strlen(schema));
    long n_cust = n_orders / 10 > 0 ? n_orders / 10 : 1;
    uint64_t t_load = bench_now_ns();
    dl_buf_t b;
    for (long c0 = 0; c0 < n_cust; c0 += 5000) {
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        for (long c = c0; c < n_cust && c < c0 + 5000; c++)
            dl__buf_printf(&b, "{:customer/id %ld :customer/region \"region-%d\"}", c,
                           (int)(rnd() % 10));
        dl__buf_putc(&b, ']');
        transact(st, b.data, b.len);
        dl__buf_fini(&b);
    }
    for (long o0 = 0; o0 < n_orders; o0 += 5000) {
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        for (long o = o0; o < n_orders && o < o0 + 5000; o++)
            dl__buf_printf(&b,
                           "{:order/id %ld :order/customer [:customer/id %ld] :order/amount %d "
                           ":order/status \"%s\"}",
                           o, (long)(rnd() % (uint64_t)n_cust), (int)(1 + rnd() % 1000),
                           statuses[rnd() % 4]);
        dl__buf_putc(&b, ']');
        transact(st, b.data, b.len);
        dl__buf_fini(&b);
    }
    double load_ms = (double)(bench_now_ns() - t_load) / 1e6;
    dl_query_t *q = NULL;
    dl_db_t *db = dl_store_db(st);
    if (dl_query_parse(w2_query, strlen(w2_query), NULL, 0, db, &q, &err))
        die("parse", &err);
    /* One-shot: compiled and reference, answers compared. */
    uint64_t t0 = bench_now_ns();
    dl_query_result_t *res = NULL;
    if (dl_query_run(q, db, NULL, 0, &res, &err))
        die("run", &err);
    uint64_t t1 = bench_now_ns();
    dl_query_source_t src = {"$", db};
    dl_query_result_t *ref = NULL;
    if (with_ref && dl_query_eval_naive(q, &src, 1, NULL, 0, &ref, &err))
        die("naive", &err);
    uint64_t t2 = bench_now_ns();
    char *a = dl_query_result_to_edn(res), *r = ref ? dl_query_result_to_edn(ref) : NULL;
    bool same = !with_ref || (a && r && strcmp(a, r) == 0);
    json_t *params =
        json_pack("{s:I,s:I}", "orders", (json_int_t)n_orders, "customers", (json_int_t)n_cust);
    bench_emit(json_pack("{s:s,s:O,s:f,s:f,s:f,s:f,s:b}", "bench", "datalog_w2_oneshot", "params",
                         params, "load_ms", load_ms, "compiled_ms", (double)(t1 - t0) / 1e6,
                         "reference_ms", (double)(t2 - t1) / 1e6, "peak_rss_mb",
                         bench_peak_rss_mb(), "answers_equal", same));
    if (!same)
        fprintf(stderr, "bench_datalog: compiled and reference answers differ:\n%s\n%s\n", a, r);
    dl_free(a);
    dl_free(r);
    dl_query_result_free(res);
    dl_query_result_free(ref);
    /* Live: one-order transactions. */
    uint64_t t3 = bench_now_ns();
    dl_live_t *l = NULL;
    if (dl_live_new(q, db, NULL, 0, &l, &err))
        die("live", &err);
    double init_ms = (double)(bench_now_ns() - t3) / 1e6;
    dl_db_unref(db);
    bench_samples_t lat = {0};
    for (int i = 0; i < n_txs; i++) {
        dl__buf_init(&b);
        if (i % 2 == 0)
            dl__buf_printf(&b,
                           "[{:order/id %ld :order/customer [:customer/id %ld] :order/amount %d "
                           ":order/status \"open\"}]",
                           n_orders + i, (long)(rnd() % (uint64_t)n_cust), (int)(1 + rnd() % 1000));
        else
            dl__buf_printf(&b, "[[:db/add [:order/id %ld] :order/status \"%s\"]]",
                           (long)(rnd() % (uint64_t)n_orders), statuses[rnd() % 4]);
        uint64_t s0 = bench_now_ns();
        dl_tx_report_t rep;
        memset(&rep, 0, sizeof rep);
        if (dl_store_transact_edn(st, b.data, b.len, &rep, &err))
            die("tx", &err);
        dl_db_t *now = dl_store_db(st);
        feed_t f = {l, {0}};
        if (dl_db_tx_range(now, rep.tx, rep.tx + 1, feed, &f))
            die("apply", &f.err);
        bench_samples_add(&lat, bench_now_ns() - s0);
        dl_db_unref(now);
        dl_tx_report_fini(&rep);
        dl__buf_fini(&b);
    }
    /* The live answer equals the reference after the stream. */
    dl_db_t *fin = dl_store_db(st);
    /* The final check uses the compiled one-shot when the reference is too slow: a fresh
     * graph loaded from the final snapshot must agree with the incrementally kept one. */
    dl_query_source_t src2 = {"$", fin};
    if (dl_live_result(l, &res, &err) ||
        (with_ref ? dl_query_eval_naive(q, &src2, 1, NULL, 0, &ref, &err)
                  : dl_query_run(q, fin, NULL, 0, &ref, &err)))
        die("final", &err);
    a = dl_query_result_to_edn(res);
    r = dl_query_result_to_edn(ref);
    same = a && r && strcmp(a, r) == 0;
    bench_emit(json_pack("{s:s,s:O,s:f,s:f,s:f,s:f,s:b}", "bench", "datalog_w2_live", "params",
                         params, "init_ms", init_ms, "p50_us", bench_samples_pct_us(&lat, 0.5),
                         "p99_us", bench_samples_pct_us(&lat, 0.99), "peak_rss_mb",
                         bench_peak_rss_mb(), "answers_equal", same));
    json_decref(params);
    dl_free(a);
    dl_free(r);
    dl_query_result_free(res);
    dl_query_result_free(ref);
    bench_samples_free(&lat);
    dl_db_unref(fin);
    dl_live_free(l);
    dl_query_free(q);
    dl_store_close(st);
}

int main(int argc, char **argv) {
    long orders = atol(bench_arg(argc, argv, "orders", "20000"));
    int txs = atoi(bench_arg(argc, argv, "txs", "500"));
    int reps = atoi(bench_arg(argc, argv, "reps", "200"));
    bench_compile(reps);
    /* The reference evaluator is quadratic in the orders: only for small runs. */
    bench_w2(orders, txs, orders <= 50000 && !bench_flag(argc, argv, "no-reference"));
    return 0;
}
