/*
 * bench_datalog.c: the Datalog front end.
 * - datalog_compile: parse + analyze, and compile to a dataflow graph (dl_live_new on a
 *   store holding only the schema), of a 20-clause query with 3 rules (target < 1 ms).
 * - datalog_w2_oneshot: the W2 dashboard query (../shared/bench/README.md) over a
 *   synthetic in-process order set of the W2 shape, one-shot through the compiled graph
 *   (dl_query_run) and through the reference evaluator, with the answers compared.
 * - datalog_w2_live: the same query live; per-transaction latency of one-order
 *   transactions (new order, status change) from commit to complete result.
 * - datalog_w1 (with --w1 DIR, data from ../shared/bench/gen.py w1): the W1 reachability
 *   query written in Datalog, live: initial time (compile + load + run) and per-round
 *   latency of dl_live_apply (the dataflow work, comparable with bench_w1 --via dataflow)
 *   and of the whole round (store transaction + apply); checksums against W.meta.json.
 * Usage: bench_datalog [--orders N (20000)] [--txs N (500)] [--reps N (200)] [--w1 DIR]
 *                      [--w2 DIR] [--warm-reps N (7)] [--cold-reps N (1)]
 *                      [--no-reference] (the reference runs only up to 50000 orders)
 * Without --w2 the data is generated here (splitmix64, seed 42), so the orders count is
 * free; the query and shapes are W2's. With --w2 DIR (gen.py w2 files) the data is the
 * shared one and the one-shot answer is checked against its w2.meta.json.
 * DL_BENCH_EXPLAIN=1 prints the plans (EXPLAIN ANALYZE for W2). The engine line reports
 * cold (first query: the base attributes are indexed), warm (they are kept: only the
 * query's own joins and reduces run) and peek (the same query kept live in the engine:
 * dl_engine_query reads its maintained result), in wall and CPU time.
 */
#include "bench/harness.h"

#include "base/base.h"
#include "datalog/compile.h" /* EXPLAIN output: the live query's graph statistics */
#include <deltalog/dataflow.h>
#include <deltalog/datalog.h>
#include <deltalog/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of n samples (sorted in place). */
static double pctl(double *v, int n, double p) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)(p / 100.0 * (n - 1) + 0.5);
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

/* CPU time of this process (less sensitive than wall time to other processes sharing
 * the machine; the benchmark is single-threaded). */
static uint64_t cpu_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

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
    uint64_t apply_ns; /* time inside dl_live_apply only */
} feed_t;

static int feed(void *ctx, const dl_commit_t *c) {
    feed_t *f = ctx;
    uint64_t t0 = bench_now_ns();
    int rc = dl_live_apply(f->l, c, &f->err);
    f->apply_ns += bench_now_ns() - t0;
    return rc;
}

static const char *statuses[] = {"open", "paid", "shipped", "cancelled"};

static int warm_reps = 7, cold_reps = 1;

/* The shared W2 files (gen.py w2): customers and orders, transacted in batches of 5000. */
typedef struct w2file {
    dl_buf_t tx;
    long n;
    dl_store_t *st;
    bool orders;
} w2file_t;

static void w2file_flush(w2file_t *f) {
    if (!f->tx.len)
        return;
    dl__buf_putc(&f->tx, ']');
    transact(f->st, f->tx.data, f->tx.len);
    dl__buf_fini(&f->tx);
    dl__buf_init(&f->tx);
}

static int w2file_line(json_t *line, void *ctx) {
    w2file_t *f = ctx;
    if (!f->tx.len)
        dl__buf_putc(&f->tx, '[');
    if (f->orders)
        dl__buf_printf(&f->tx,
                       "{:order/id %lld :order/customer [:customer/id %lld] :order/amount %lld "
                       ":order/status \"%s\"}",
                       (long long)json_integer_value(json_object_get(line, "order")),
                       (long long)json_integer_value(json_object_get(line, "customer")),
                       (long long)json_integer_value(json_object_get(line, "amount")),
                       json_string_value(json_object_get(line, "status")));
    else
        dl__buf_printf(&f->tx, "{:customer/id %lld :customer/region \"%s\"}",
                       (long long)json_integer_value(json_object_get(line, "customer")),
                       json_string_value(json_object_get(line, "region")));
    if (++f->n % 5000 == 0)
        w2file_flush(f);
    return 0;
}

/* Loads dir's customers and orders into st; *n_orders, *n_cust; returns the expected
 * initial answer as the EDN text dl_query_result_to_edn prints (new: free). */
static char *w2_load_files(dl_store_t *st, const char *dir, long *n_orders, long *n_cust) {
    char path[1024];
    snprintf(path, sizeof path, "%s/w2.meta.json", dir);
    json_t *meta = bench_load_json(path);
    if (!meta)
        exit(1);
    w2file_t f = {{0}, 0, st, false};
    dl__buf_init(&f.tx);
    snprintf(path, sizeof path, "%s/w2.customers.jsonl", dir);
    if (bench_read_jsonl(path, w2file_line, &f) < 0)
        exit(1);
    w2file_flush(&f);
    *n_cust = f.n;
    f.n = 0;
    f.orders = true;
    snprintf(path, sizeof path, "%s/w2.orders.jsonl", dir);
    if (bench_read_jsonl(path, w2file_line, &f) < 0)
        exit(1);
    w2file_flush(&f);
    dl__buf_fini(&f.tx);
    *n_orders = f.n;
    dl_buf_t e;
    dl__buf_init(&e);
    dl__buf_putc(&e, '[');
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(json_object_get(meta, "expected"), "initial"), i, row) {
        dl__buf_printf(&e, "%s[\"%s\" %lld %lld]", i ? " " : "",
                       json_string_value(json_array_get(row, 0)),
                       (long long)json_integer_value(json_array_get(row, 1)),
                       (long long)json_integer_value(json_array_get(row, 2)));
    }
    dl__buf_putc(&e, ']');
    json_decref(meta);
    return dl__buf_take(&e);
}

static void bench_w2(long n_orders, int n_txs, bool with_ref, const char *dir) {
    dl_store_t *st = NULL;
    dl_error_t err = {0};
    if (dl_store_open_memory(&st, &err))
        die("open", &err);
    transact(st, schema, strlen(schema));
    long n_cust = n_orders / 10 > 0 ? n_orders / 10 : 1;
    uint64_t t_load = bench_now_ns();
    char *expected = dir ? w2_load_files(st, dir, &n_orders, &n_cust) : NULL;
    dl_buf_t b;
    for (long c0 = 0; !dir && c0 < n_cust; c0 += 5000) {
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        for (long c = c0; c < n_cust && c < c0 + 5000; c++)
            dl__buf_printf(&b, "{:customer/id %ld :customer/region \"region-%d\"}", c,
                           (int)(rnd() % 10));
        dl__buf_putc(&b, ']');
        transact(st, b.data, b.len);
        dl__buf_fini(&b);
    }
    for (long o0 = 0; !dir && o0 < n_orders; o0 += 5000) {
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
    if (getenv("DL_BENCH_EXPLAIN")) {
        char *plan = NULL;
        if (dl_query_explain(q, db, NULL, 0, true, &plan, &err))
            die("explain", &err);
        fprintf(stderr, "live plan:\n%s", plan);
        dl_free(plan);
        /* the plan dl_query_run and dl_engine_query run (one-shot: snapshot reads) */
        dl_live_source_t src1 = {"$", db, DL_LIVE_CURRENT};
        if (dl__query_explain_sources(q, &src1, 1, NULL, 0, true, true, &plan, &err))
            die("explain", &err);
        fprintf(stderr, "one-shot plan:\n%s", plan);
        dl_free(plan);
    }
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
    if (expected) { /* the shared data's expected answer (W.meta.json) */
        same = same && a && strcmp(a, expected) == 0;
        if (!same)
            fprintf(stderr, "bench_datalog: W2 answer differs from w2.meta.json:\n%s\n%s\n", a,
                    expected);
        dl_free(expected);
    }
    json_t *params =
        json_pack("{s:I,s:I}", "orders", (json_int_t)n_orders, "customers", (json_int_t)n_cust);
    bench_emit(json_pack("{s:s,s:O,s:f,s:f,s:f,s:f,s:b}", "bench", "datalog_w2_oneshot", "params",
                         params, "load_ms", load_ms, "compiled_ms", (double)(t1 - t0) / 1e6,
                         "reference_ms", (double)(t2 - t1) / 1e6, "peak_rss_mb",
                         bench_peak_rss_mb(), "answers_equal", same));
    if (!same)
        fprintf(stderr, "bench_datalog: compiled and reference answers differ:\n%s\n%s\n", a, r);
    /* The shared engine (dl_engine_t, base arrangements kept): the same one-shot query
     * cold (the engine indexes the attributes it reads), warm (it holds them: only the
     * query's own joins and reduce run), and read from a live query of the engine that
     * maintains it (dl_engine_query peeks its result); a point query bound by an indexed
     * attribute, warm. Wall and CPU time (the machine is shared). Answers compared with
     * dl_query_run's. */
    {
        dl_engine_t *eng = NULL;
        if (dl_engine_new(db, &eng, &err))
            die("engine", &err);
        dl_engine_keep_base(eng, true);
        dl_query_result_t *ec = NULL, *ew = NULL, *ep = NULL;
        /* Cold: --cold-reps fresh engines (each indexes the base attributes anew); the
         * last one stays for the warm and peek runs. */
        double *cold = calloc((size_t)cold_reps, sizeof *cold);
        double *cold_cpu = calloc((size_t)cold_reps, sizeof *cold_cpu);
        if (!cold || !cold_cpu)
            abort();
        for (int k = 0; k < cold_reps; k++) {
            if (k > 0) {
                dl_query_result_free(ec);
                ec = NULL;
                dl_engine_free(eng);
                eng = NULL;
                if (dl_engine_new(db, &eng, &err))
                    die("engine", &err);
                dl_engine_keep_base(eng, true);
            }
            uint64_t e0 = bench_now_ns(), c0 = cpu_now_ns();
            if (dl_engine_query(eng, q, db, NULL, 0, &ec, &err))
                die("engine cold", &err);
            cold[k] = (double)(bench_now_ns() - e0) / 1e6;
            cold_cpu[k] = (double)(cpu_now_ns() - c0) / 1e6;
        }
        double *warm = calloc((size_t)warm_reps, sizeof *warm);
        double *warm_cpu = calloc((size_t)warm_reps, sizeof *warm_cpu);
        if (!warm || !warm_cpu)
            abort();
        for (int k = 0; k < warm_reps; k++) {
            uint64_t w0 = bench_now_ns(), wc0 = cpu_now_ns();
            dl_query_result_free(ew);
            ew = NULL;
            if (dl_engine_query(eng, q, db, NULL, 0, &ew, &err))
                die("engine warm", &err);
            warm[k] = (double)(bench_now_ns() - w0) / 1e6;
            warm_cpu[k] = (double)(cpu_now_ns() - wc0) / 1e6;
        }
        /* The same query kept live in the engine: one-shots read its result. */
        dl_live_t *kept = NULL;
        uint64_t l0 = bench_now_ns();
        if (dl_engine_live_new(eng, q, db, NULL, 0, &kept, &err))
            die("engine live", &err);
        double live_add_ms = (double)(bench_now_ns() - l0) / 1e6;
        double peek[51];
        for (int k = 0; k < 51; k++) {
            uint64_t p0 = bench_now_ns();
            dl_query_result_free(ep);
            ep = NULL;
            if (dl_engine_query(eng, q, db, NULL, 0, &ep, &err))
                die("engine peek", &err);
            peek[k] = (double)(bench_now_ns() - p0) / 1e6;
        }
        dl_live_free(kept);
        char *ac = dl_query_result_to_edn(ec), *aw = dl_query_result_to_edn(ew),
             *ap = dl_query_result_to_edn(ep);
        bool esame = a && ac && aw && ap && !strcmp(a, ac) && !strcmp(a, aw) && !strcmp(a, ap);
        dl_graph_stats_t gs;
        dl_engine_stats(eng, &gs);
        /* Point query: one order by its unique id (warm after the first). */
        const char *pq = "[:find ?amount . :in $ ?id :where [?o :order/id ?id]"
                         " [?o :order/amount ?amount]]";
        dl_query_t *qp = NULL;
        if (dl_query_parse(pq, strlen(pq), NULL, 0, db, &qp, &err))
            die("parse point", &err);
        double pt[51];
        bool pok = true;
        for (int k = 0; k < 51; k++) {
            char args[48];
            int n = snprintf(args, sizeof args, "[%ld]", (long)(rnd() % (uint64_t)n_orders));
            dl_query_result_t *pr = NULL;
            uint64_t p0 = bench_now_ns();
            if (dl_engine_query(eng, qp, db, args, (size_t)n, &pr, &err))
                die("point", &err);
            pt[k] = (double)(bench_now_ns() - p0) / 1e6;
            pok &= dl_query_result_rows(pr) == 1;
            dl_query_result_free(pr);
        }
        json_t *o = json_object();
        json_object_set_new(o, "bench", json_string("datalog_w2_engine"));
        json_object_set_new(o, "orders", json_integer(n_orders));
        json_object_set_new(o, "cold_reps", json_integer(cold_reps));
        json_object_set_new(o, "cold_p50_ms", json_real(pctl(cold, cold_reps, 50)));
        json_object_set_new(o, "cold_cpu_p50_ms", json_real(pctl(cold_cpu, cold_reps, 50)));
        json_object_set_new(o, "warm_reps", json_integer(warm_reps));
        json_object_set_new(o, "warm_p50_ms", json_real(pctl(warm, warm_reps, 50)));
        json_object_set_new(o, "warm_cpu_p50_ms", json_real(pctl(warm_cpu, warm_reps, 50)));
        json_object_set_new(o, "warm_min_ms", json_real(pctl(warm, warm_reps, 0)));
        json_object_set_new(o, "live_add_ms", json_real(live_add_ms));
        json_object_set_new(o, "peek_p50_ms", json_real(pctl(peek, 51, 50)));
        json_object_set_new(o, "dl_query_run_ms", json_real((double)(t1 - t0) / 1e6));
        json_object_set_new(o, "arranged_records", json_integer((json_int_t)gs.arranged_updates));
        json_object_set_new(o, "answers_equal", json_boolean(esame));
        json_object_set_new(o, "point_first_ms", json_real(pt[0]));
        json_object_set_new(o, "point_warm_p50_ms", json_real(pctl(pt + 1, 50, 50)));
        json_object_set_new(o, "point_ok", json_boolean(pok));
        bench_emit(o);
        if (!esame)
            fprintf(stderr, "bench_datalog: engine answers differ:\n%s\n%s\n%s\n%s\n", a, ac, aw,
                    ap);
        free(cold);
        free(cold_cpu);
        free(warm);
        free(warm_cpu);
        dl_free(ac);
        dl_free(aw);
        dl_free(ap);
        dl_query_result_free(ec);
        dl_query_result_free(ew);
        dl_query_result_free(ep);
        dl_query_free(qp);
        if (dl_engine_trim(eng, &err))
            die("trim", &err);
        dl_engine_free(eng);
    }
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
    bench_samples_t lat = {0}, apply = {0};
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
        feed_t f = {l, {0}, 0};
        if (dl_db_tx_range(now, rep.tx, rep.tx + 1, feed, &f))
            die("apply", &f.err);
        bench_samples_add(&lat, bench_now_ns() - s0);
        bench_samples_add(&apply, f.apply_ns);
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
    /* p50/p99: dl_live_apply only; tx_*: the store transaction, reading the commit back
     * and applying it. */
    bench_emit(
        json_pack("{s:s,s:O,s:f,s:f,s:f,s:f,s:f,s:f,s:b}", "bench", "datalog_w2_live", "params",
                  params, "init_ms", init_ms, "p50_us", bench_samples_pct_us(&apply, 0.5), "p99_us",
                  bench_samples_pct_us(&apply, 0.99), "tx_p50_us", bench_samples_pct_us(&lat, 0.5),
                  "tx_p99_us", bench_samples_pct_us(&lat, 0.99), "peak_rss_mb", bench_peak_rss_mb(),
                  "answers_equal", same));
    bench_samples_free(&apply);
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

/* ---- W1 ------------------------------------------------------------------------------------ */

typedef struct pairs {
    int64_t *v;
    size_t n, cap;
} pairs_t;

static void pairs_push(pairs_t *p, int64_t a, int64_t b) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 1024;
        p->v = realloc(p->v, p->cap * 2 * sizeof *p->v);
        if (!p->v)
            abort();
    }
    p->v[2 * p->n] = a;
    p->v[2 * p->n + 1] = b;
    p->n++;
}

typedef struct w1 {
    pairs_t initial;
    pairs_t *add, *del; /* per round */
    size_t n_rounds, cap_rounds;
} w1_t;

static int w1_initial(json_t *line, void *ctx) {
    w1_t *w = ctx;
    pairs_push(&w->initial, json_integer_value(json_array_get(line, 0)),
               json_integer_value(json_array_get(line, 1)));
    return 0;
}

static int w1_round(json_t *line, void *ctx) {
    w1_t *w = ctx;
    if (w->n_rounds == w->cap_rounds) {
        w->cap_rounds = w->cap_rounds ? 2 * w->cap_rounds : 256;
        w->add = realloc(w->add, w->cap_rounds * sizeof *w->add);
        w->del = realloc(w->del, w->cap_rounds * sizeof *w->del);
        if (!w->add || !w->del)
            abort();
    }
    pairs_t *a = &w->add[w->n_rounds], *d = &w->del[w->n_rounds];
    memset(a, 0, sizeof *a);
    memset(d, 0, sizeof *d);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(line, "add"), i, p) pairs_push(
        a, json_integer_value(json_array_get(p, 0)), json_integer_value(json_array_get(p, 1)));
    json_array_foreach(json_object_get(line, "del"), i, p) pairs_push(
        d, json_integer_value(json_array_get(p, 0)), json_integer_value(json_array_get(p, 1)));
    w->n_rounds++;
    return 0;
}

/* Transacts the edges of p (adds or retracts) in batches; applies each commit to l (when
 * not NULL) and adds the time spent in dl_live_apply to *apply_ns. */
/* Transacts one batch of edge additions and retractions (one transaction per 5000 edges)
 * and applies each commit to l (when not NULL), adding the time spent in dl_live_apply to
 * *apply_ns. */
static void w1_tx(dl_store_t *st, const pairs_t *add, const pairs_t *del, dl_live_t *l,
                  uint64_t *apply_ns) {
    size_t n = add->n + (del ? del->n : 0);
    for (size_t i0 = 0; i0 < n; i0 += 5000) {
        dl_buf_t b;
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        for (size_t i = i0; i < n && i < i0 + 5000; i++) {
            bool is_add = i < add->n;
            const int64_t *e = is_add ? &add->v[2 * i] : &del->v[2 * (i - add->n)];
            dl__buf_printf(&b, "[%s [:node/id %lld] :node/edge [:node/id %lld]]",
                           is_add ? ":db/add" : ":db/retract", (long long)e[0], (long long)e[1]);
        }
        dl__buf_putc(&b, ']');
        dl_tx_report_t rep;
        memset(&rep, 0, sizeof rep);
        dl_error_t err = {0};
        if (dl_store_transact_edn(st, b.data, b.len, &rep, &err))
            die("w1 transact", &err);
        if (l) {
            dl_db_t *now = dl_store_db(st);
            feed_t f = {l, {0}, 0};
            if (dl_db_tx_range(now, rep.tx, rep.tx + 1, feed, &f))
                die("w1 apply", &f.err);
            *apply_ns += f.apply_ns;
            dl_db_unref(now);
        }
        dl_tx_report_fini(&rep);
        dl__buf_fini(&b);
    }
}

static bool w1_overlap(const pairs_t *a, const pairs_t *d) {
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < d->n; j++)
            if (a->v[2 * i] == d->v[2 * j] && a->v[2 * i + 1] == d->v[2 * j + 1])
                return true;
    return false;
}

static bench_checksum_t w1_checksum(const dl_live_t *l) {
    dl_query_result_t *res = NULL;
    dl_error_t err = {0};
    if (dl_live_result(l, &res, &err))
        die("w1 result", &err);
    char *t = dl_query_result_to_edn(res); /* [[id] ...]: read it back as values */
    bench_checksum_t c = {0, 0, 0};
    for (const char *p = t; p && *p; p++)
        if (*p == '[' && p[1] != '[' && p[1] != ']')
            bench_checksum_add(&c, strtoll(p + 1, NULL, 10));
    dl_free(t);
    dl_query_result_free(res);
    return c;
}

static void bench_w1(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/w1.meta.json", dir);
    json_t *meta = bench_load_json(path);
    if (!meta)
        exit(1);
    w1_t w;
    memset(&w, 0, sizeof w);
    snprintf(path, sizeof path, "%s/w1.initial.jsonl", dir);
    if (bench_read_jsonl(path, w1_initial, &w) < 0)
        exit(1);
    snprintf(path, sizeof path, "%s/w1.rounds.jsonl", dir);
    if (bench_read_jsonl(path, w1_round, &w) < 0)
        exit(1);
    json_t *params = json_object_get(meta, "params");
    long nodes = (long)json_integer_value(json_object_get(params, "nodes"));
    json_t *expected = json_object_get(meta, "expected");
    dl_store_t *st = NULL;
    dl_error_t err = {0};
    if (dl_store_open_memory(&st, &err))
        die("open", &err);
    const char *sch = "[{:db/ident :node/id :db/valueType :db.type/long :db/cardinality "
                      ":db.cardinality/one :db/unique :db.unique/identity}"
                      " {:db/ident :node/edge :db/valueType :db.type/ref :db/cardinality "
                      ":db.cardinality/many}]";
    transact(st, sch, strlen(sch));
    for (long n0 = 0; n0 < nodes; n0 += 5000) {
        dl_buf_t b;
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        for (long n = n0; n < nodes && n < n0 + 5000; n++)
            dl__buf_printf(&b, "{:node/id %ld}", n);
        dl__buf_putc(&b, ']');
        transact(st, b.data, b.len);
        dl__buf_fini(&b);
    }
    w1_tx(st, &w.initial, NULL, NULL, NULL);
    const char *query = "[:find ?id :in $ % :where (reach ?n) [?n :node/id ?id]]";
    const char *rules = "[[(reach ?n) [?n :node/id 0]] [(reach ?n) (reach ?m) [?m :node/edge ?n]]]";
    dl_db_t *db = dl_store_db(st);
    uint64_t t0 = bench_now_ns();
    dl_query_t *q = NULL;
    if (dl_query_parse(query, strlen(query), rules, strlen(rules), db, &q, &err))
        die("w1 parse", &err);
    dl_live_t *l = NULL;
    if (dl_live_new(q, db, NULL, 0, &l, &err))
        die("w1 live", &err);
    double init_ms = (double)(bench_now_ns() - t0) / 1e6;
    dl_db_unref(db);
    if (getenv("DL_BENCH_EXPLAIN")) {
        char *plan = dl_live_explain(l);
        dl_graph_stats_t gs;
        dl_graph_stats(l->g, &gs);
        fprintf(stderr, "%s(%zu operators, %zu arrangements)\n", plan ? plan : "", gs.n_ops,
                gs.n_arrangements);
        dl_free(plan);
    }
    bench_checksum_t c = w1_checksum(l);
    bool ok = bench_checksum_matches(&c, json_object_get(expected, "initial"));
    if (!ok)
        fprintf(stderr, "bench_datalog: w1 initial checksum mismatch: %s\n",
                bench_checksum_str(&c));
    bench_samples_t apply = {0}, whole = {0};
    json_t *exp_rounds = json_object_get(expected, "rounds");
    size_t checked = 0;
    for (size_t r = 0; r < w.n_rounds; r++) {
        uint64_t ns = 0, a = bench_now_ns();
        /* One transaction per round; an edge added and deleted in the same round needs
         * two (additions first), as the store rejects both in one transaction. */
        if (w1_overlap(&w.add[r], &w.del[r])) {
            pairs_t none = {NULL, 0, 0};
            w1_tx(st, &w.add[r], NULL, l, &ns);
            w1_tx(st, &none, &w.del[r], l, &ns);
        } else {
            w1_tx(st, &w.add[r], &w.del[r], l, &ns);
        }
        bench_samples_add(&whole, bench_now_ns() - a);
        bench_samples_add(&apply, ns);
        size_t k;
        json_t *e;
        json_array_foreach(exp_rounds, k, e) {
            if ((size_t)json_integer_value(json_object_get(e, "after_round")) != r)
                continue;
            c = w1_checksum(l);
            checked++;
            if (!bench_checksum_matches(&c, e)) {
                fprintf(stderr, "bench_datalog: w1 checksum mismatch after round %zu: %s\n", r,
                        bench_checksum_str(&c));
                ok = false;
            }
        }
    }
    ok = ok && checked > 0;
    json_t *p = json_pack("{s:I,s:I,s:I}", "nodes", (json_int_t)nodes, "edges",
                          (json_int_t)w.initial.n, "rounds", (json_int_t)w.n_rounds);
    bench_emit(json_pack(
        "{s:s,s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:b}", "bench", "w1", "via", "datalog", "params", p,
        "init_ms", init_ms, "p50_us", bench_samples_pct_us(&apply, 0.5), "p99_us",
        bench_samples_pct_us(&apply, 0.99), "round_with_store_p50_us",
        bench_samples_pct_us(&whole, 0.5), "round_with_store_p99_us",
        bench_samples_pct_us(&whole, 0.99), "peak_rss_mb", bench_peak_rss_mb(), "checksum_ok", ok));
    bench_samples_free(&apply);
    bench_samples_free(&whole);
    dl_live_free(l);
    dl_query_free(q);
    dl_store_close(st);
    json_decref(meta);
    free(w.initial.v);
    for (size_t r = 0; r < w.n_rounds; r++) {
        free(w.add[r].v);
        free(w.del[r].v);
    }
    free(w.add);
    free(w.del);
}

int main(int argc, char **argv) {
    const char *w1dir = bench_arg(argc, argv, "w1", NULL);
    if (w1dir) {
        bench_w1(w1dir);
        return 0;
    }
    const char *w2dir = bench_arg(argc, argv, "w2", NULL);
    long orders = atol(bench_arg(argc, argv, "orders", "20000"));
    int txs = atoi(bench_arg(argc, argv, "txs", "500"));
    int reps = atoi(bench_arg(argc, argv, "reps", "200"));
    warm_reps = atoi(bench_arg(argc, argv, "warm-reps", "7"));
    if (warm_reps < 1)
        warm_reps = 1;
    cold_reps = atoi(bench_arg(argc, argv, "cold-reps", "1"));
    if (cold_reps < 1)
        cold_reps = 1;
    bench_compile(reps);
    /* The reference evaluator is quadratic in the orders: only for small runs. */
    bench_w2(orders, txs, !w2dir && orders <= 50000 && !bench_flag(argc, argv, "no-reference"),
             w2dir);
    return 0;
}
