/*
 * bench_subscribe_w2.c: subscriptions end to end on the shared W2 workload
 * (../shared/bench/README.md): an in-memory store, Datalog live queries as registry
 * sources (subscribe/qsrc.c), callback subscribers. Measures
 *  - w2_fanout: Q distinct parameterized queries (open orders of customer ?cid, cid < Q),
 *    S subscribers each, plus the W2 dashboard view; one transaction per W2 round op:
 *    commit-to-last-callback latency p50/p99 (transact + live query runs + fan-out), and
 *    memory per extra subscriber of an existing query (callback delivery keeps no snapshot),
 *    and the split: apply (the live queries' runs, inside the commit) and pump (fan-out);
 *  - the dashboard's accumulated result, checked against the workload's expected final
 *    answer (the benchmark fails otherwise).
 * Usage: python3 ../shared/bench/gen.py w2 --orders 2000 --rounds 1000 --batch 1 --out DIR;
 *        bench_subscribe_w2 --data DIR [--queries 100] [--per-query 10] [--rounds N]
 * It does not measure network relay (runtime) or the queues alone (bench_subscribe).
 */
#include "bench/harness.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <deltalog/datalog.h>
#include <deltalog/store.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *schema =
    "[{:db/ident :customer/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :customer/region :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/customer :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/status :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one}]";

static const char *q_customer = "[:find ?o ?amount :in $ ?cid :where [?c :customer/id ?cid]"
                                " [?o :order/customer ?c] [?o :order/status \"open\"]"
                                " [?o :order/amount ?amount]]";
static const char *q_dashboard = "[:find ?region (sum ?amount) (count ?o) :with ?o"
                                 " :where [?o :order/status \"open\"] [?o :order/customer ?c]"
                                 " [?c :customer/region ?region] [?o :order/amount ?amount]]";

typedef struct env {
    dl_store_t *st;
    dl_db_t *db;
    dl_qsrcs_t *qs;
    dl_buf_t batch; /* EDN of the transaction being built */
    int n_batch;
    int apply_rc;
    uint64_t apply_ns; /* time spent in dl_qsrcs_apply for the last commit */
} env_t;

static void die(const char *what, const dl_error_t *err) {
    fprintf(stderr, "bench_subscribe_w2: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

static int current_db(void *ctx, const struct dl_db **out_db, uint64_t *out_time,
                      size_t *out_n_time, dl_error_t *err) {
    (void)err;
    env_t *e = ctx;
    *out_db = e->db;
    uint64_t basis = dl_db_basis_tx(e->db);
    size_t n = basis ? dl_db_tx_time(e->db, basis, out_time, DL_DELTA_MAX_DIM) : 0;
    if (n == 0) {
        out_time[0] = basis;
        n = 1;
    }
    *out_n_time = n > DL_DELTA_MAX_DIM ? DL_DELTA_MAX_DIM : n;
    return 0;
}

static void on_commit(void *ctx, const dl_commit_t *c) {
    env_t *e = ctx;
    uint64_t t = bench_now_ns();
    if (e->qs && dl_qsrcs_apply(e->qs, c, NULL) && !e->apply_rc)
        e->apply_rc = -1;
    e->apply_ns = bench_now_ns() - t;
}

static void transact(env_t *e, const char *text, size_t len) {
    dl_error_t err = {0};
    if (dl_store_transact_edn(e->st, text, len, NULL, &err))
        die(text, &err);
    dl_db_unref(e->db);
    e->db = dl_store_db(e->st);
}

static void flush(env_t *e) {
    if (!e->n_batch)
        return;
    dl__buf_putc(&e->batch, ']');
    transact(e, e->batch.data, e->batch.len);
    dl__buf_fini(&e->batch);
    e->n_batch = 0;
}

static void add_entity(env_t *e, const char *fmt_done) {
    if (e->n_batch == 0) {
        dl__buf_init(&e->batch);
        dl__buf_putc(&e->batch, '[');
    }
    dl__buf_puts(&e->batch, fmt_done);
    if (++e->n_batch == 500)
        flush(e);
}

static int load_customer(json_t *l, void *ctx) {
    char t[128];
    snprintf(t, sizeof t, "{:customer/id %lld :customer/region \"%s\"}",
             (long long)json_integer_value(json_object_get(l, "customer")),
             json_string_value(json_object_get(l, "region")));
    add_entity(ctx, t);
    return 0;
}

static int load_order(json_t *l, void *ctx) {
    char t[192];
    snprintf(t, sizeof t,
             "{:order/id %lld :order/customer [:customer/id %lld] :order/amount %lld"
             " :order/status \"%s\"}",
             (long long)json_integer_value(json_object_get(l, "order")),
             (long long)json_integer_value(json_object_get(l, "customer")),
             (long long)json_integer_value(json_object_get(l, "amount")),
             json_string_value(json_object_get(l, "status")));
    add_entity(ctx, t);
    return 0;
}

/* The round operations, as EDN transactions. */
typedef struct ops {
    char **tx;
    size_t n, cap;
} ops_t;

static int load_round(json_t *l, void *ctx) {
    ops_t *o = ctx;
    json_t *txs = json_object_get(l, "txs");
    for (size_t i = 0; i < json_array_size(txs); i++) {
        json_t *x = json_array_get(txs, i);
        const char *op = json_string_value(json_object_get(x, "op"));
        long long id = (long long)json_integer_value(json_object_get(x, "order"));
        char t[256];
        if (strcmp(op, "new") == 0)
            snprintf(t, sizeof t,
                     "[{:order/id %lld :order/customer [:customer/id %lld] :order/amount %lld"
                     " :order/status \"%s\"}]",
                     id, (long long)json_integer_value(json_object_get(x, "customer")),
                     (long long)json_integer_value(json_object_get(x, "amount")),
                     json_string_value(json_object_get(x, "status")));
        else if (strcmp(op, "status") == 0)
            snprintf(t, sizeof t, "[[:db/add [:order/id %lld] :order/status \"%s\"]]", id,
                     json_string_value(json_object_get(x, "status")));
        else
            snprintf(t, sizeof t, "[[:db/retractEntity [:order/id %lld]]]", id);
        if (o->n == o->cap) {
            o->cap = o->cap ? 2 * o->cap : 1024;
            o->tx = realloc(o->tx, o->cap * sizeof *o->tx);
        }
        o->tx[o->n++] = strdup(t);
    }
    return 0;
}

typedef struct cbstate {
    uint64_t last_ns;
    uint64_t calls;
} cbstate_t;

static void on_delta(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    (void)d;
    cbstate_t *c = udata;
    c->calls++;
    c->last_ns = bench_now_ns();
}

/* The dashboard subscriber keeps its accumulated result. */
static void on_dash(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    dl_delta_t *acc = udata;
    for (size_t i = 0; i < dl_delta_len(d); i++)
        if (dl_delta_add(acc, dl_delta_row(d, i), dl_delta_diff(d, i), NULL))
            exit(1);
}

int main(int argc, char **argv) {
    const char *dir = bench_arg(argc, argv, "data", NULL);
    if (!dir) {
        fprintf(stderr, "usage: bench_subscribe_w2 --data DIR (gen.py w2 output)\n");
        return 2;
    }
    /* scripts/bench passes its scratch directory: look for the W2 files there or in w2/. */
    char path[2048], sub[1024];
    snprintf(path, sizeof path, "%s/w2.meta.json", dir);
    if (access(path, R_OK) != 0) {
        snprintf(sub, sizeof sub, "%.1000s/w2", dir);
        snprintf(path, sizeof path, "%s/w2.meta.json", sub);
        if (access(path, R_OK) != 0) {
            printf("{\"bench\":\"w2_fanout\",\"skipped\":\"no W2 data in %s: python3 "
                   "../shared/bench/gen.py w2 --orders 2000 --rounds 1000 --batch 1 --out "
                   "%s/w2\"}\n",
                   dir, dir);
            return 0;
        }
        dir = sub;
    }
    int n_q = atoi(bench_arg(argc, argv, "queries", "100"));
    int per_q = atoi(bench_arg(argc, argv, "per-query", "10"));
    long max_rounds = atol(bench_arg(argc, argv, "rounds", "-1"));
    static env_t e;
    dl_error_t err = {0};
    uint64_t t_init = bench_now_ns();
    if (dl_store_open_memory(&e.st, &err))
        die("open", &err);
    e.db = dl_store_db(e.st);
    transact(&e, schema, strlen(schema));
    snprintf(path, sizeof path, "%s/w2.customers.jsonl", dir);
    if (bench_read_jsonl(path, load_customer, &e) < 0)
        return 1;
    flush(&e);
    snprintf(path, sizeof path, "%s/w2.orders.jsonl", dir);
    if (bench_read_jsonl(path, load_order, &e) < 0)
        return 1;
    flush(&e);
    ops_t ops = {0};
    snprintf(path, sizeof path, "%s/w2.rounds.jsonl", dir);
    if (bench_read_jsonl(path, load_round, &ops) < 0)
        return 1;
    snprintf(path, sizeof path, "%s/w2.meta.json", dir);
    json_t *meta = bench_load_json(path);
    if (!meta)
        return 1;
    double load_ms = (bench_now_ns() - t_init) / 1e6;

    dl_qsrc_env_t qe = {current_db, &e, NULL};
    dl_registry_t *reg;
    if (dl_qsrcs_new(&qe, &e.qs, &err) || dl_registry_new(dl_qsrcs_vtable(), e.qs, &reg, &err))
        die("registry", &err);
    int id;
    if (dl_store_listen(e.st, on_commit, &e, &id, &err))
        die("listen", &err);
    cbstate_t cb = {0};
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    o.udata = &cb;
    size_t n_subs = (size_t)n_q * (size_t)per_q;
    dl_sub_t **subs = calloc(n_subs + (size_t)n_q, sizeof *subs);
    uint64_t t_sub = bench_now_ns();
    for (size_t i = 0; i < n_subs; i++) {
        dl_value_t in[1] = {dl_value_int((int64_t)(i % (size_t)n_q))};
        if (dl_subscribe(reg, q_customer, in, 1, &o, &subs[i], &err))
            die("subscribe", &err);
    }
    double subscribe_ms = (bench_now_ns() - t_sub) / 1e6;
    /* Memory per extra subscriber of an existing query. */
    dl_alloc_stats_t a0, a1;
    dl_alloc_stats(&a0);
    for (int q = 0; q < n_q; q++) {
        dl_value_t in[1] = {dl_value_int(q)};
        if (dl_subscribe(reg, q_customer, in, 1, &o, &subs[n_subs + (size_t)q], &err))
            die("subscribe", &err);
    }
    dl_alloc_stats(&a1);
    double per_extra = (double)(a1.live_bytes - a0.live_bytes) / n_q;
    /* The dashboard. */
    uint64_t t0 = 0;
    dl_delta_t *dash_acc;
    if (dl_delta_new(DL_DELTA_DATA, 3, &t0, 1, &dash_acc, NULL))
        return 1;
    dl_sub_options_t od;
    dl_sub_options_init(&od);
    od.on_delta = on_dash;
    od.udata = dash_acc;
    dl_sub_t *dash;
    if (dl_subscribe(reg, q_dashboard, NULL, 0, &od, &dash, &err))
        die("dashboard", &err);
    dl_registry_stats_t rs;
    dl_registry_stats(reg, &rs);

    bench_samples_t all = {0}, hit = {0}, apply = {0}, pump = {0};
    size_t n_ops = ops.n;
    if (max_rounds >= 0 && (size_t)max_rounds < n_ops)
        n_ops = (size_t)max_rounds;
    uint64_t calls0 = cb.calls, t_run = bench_now_ns();
    for (size_t i = 0; i < n_ops; i++) {
        uint64_t before = cb.calls, c0 = bench_now_ns();
        transact(&e, ops.tx[i], strlen(ops.tx[i]));
        uint64_t p0 = bench_now_ns();
        if (dl_registry_pump(reg, &err) || e.apply_rc)
            die("pump", &err);
        uint64_t end = bench_now_ns();
        bench_samples_add(&apply, e.apply_ns);
        bench_samples_add(&pump, end - p0);
        bench_samples_add(&all, end - c0);
        if (cb.calls > before)
            bench_samples_add(&hit, cb.last_ns - c0);
    }
    double run_s = (bench_now_ns() - t_run) / 1e9;
    /* Check the dashboard against the workload's answer. */
    json_t *want =
        json_object_get(json_object_get(meta, "expected"),
                        max_rounds < 0 || (size_t)max_rounds >= ops.n ? "final" : "none");
    const char *verdict = "unchecked";
    if (want) {
        bool ok = dl_delta_len(dash_acc) == json_array_size(want);
        for (size_t i = 0; ok && i < json_array_size(want); i++) {
            json_t *w = json_array_get(want, i);
            dl_value_t row[3];
            const char *reg_s = json_string_value(json_array_get(w, 0));
            if (dl_value_text(DL_T_STRING, reg_s, strlen(reg_s), &row[0], NULL))
                return 1;
            row[1] = dl_value_int((int64_t)json_integer_value(json_array_get(w, 1)));
            row[2] = dl_value_int((int64_t)json_integer_value(json_array_get(w, 2)));
            ok = dl_delta_find(dash_acc, row) == 1;
        }
        verdict = ok ? "ok" : "WRONG";
    }
    json_t *p = json_pack("{s:I,s:I,s:I,s:I,s:I,s:s}", "queries", (json_int_t)n_q, "per_query",
                          (json_int_t)per_q, "subscriptions", (json_int_t)n_subs, "live_queries",
                          (json_int_t)rs.n_sources, "transactions", (json_int_t)n_ops, "data", dir);
    bench_emit(json_pack(
        "{s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:s}", "bench", "w2_fanout",
        "params", p, "apply_p50_us", bench_samples_pct_us(&apply, 0.5), "pump_p50_us",
        bench_samples_pct_us(&pump, 0.5), "init_ms", load_ms, "subscribe_ms", subscribe_ms,
        "p50_us", bench_samples_pct_us(&hit, 0.5), "p99_us", bench_samples_pct_us(&hit, 0.99),
        "all_tx_p50_us", bench_samples_pct_us(&all, 0.5), "all_tx_p99_us",
        bench_samples_pct_us(&all, 0.99), "throughput_per_s", n_ops / run_s, "peak_rss_mb",
        bench_peak_rss_mb(), "bytes_per_extra_subscriber", per_extra, "callbacks",
        (json_int_t)(cb.calls - calls0), "dashboard", verdict));
    bench_samples_free(&all);
    bench_samples_free(&hit);
    bench_samples_free(&apply);
    bench_samples_free(&pump);
    for (size_t i = 0; i < n_subs + (size_t)n_q; i++)
        dl_unsubscribe(reg, subs[i]);
    dl_unsubscribe(reg, dash);
    dl_delta_unref(dash_acc);
    dl_registry_free(reg);
    dl_qsrcs_free(e.qs);
    e.qs = NULL;
    dl_db_unref(e.db);
    dl_store_close(e.st);
    for (size_t i = 0; i < ops.n; i++)
        free(ops.tx[i]);
    free(ops.tx);
    free(subs);
    json_decref(meta);
    return strcmp(verdict, "WRONG") == 0;
}
