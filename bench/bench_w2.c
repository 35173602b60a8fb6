/*
 * bench_w2.c: the shared W2 workload (../shared/bench/README.md) end to end, in process:
 * customers and orders loaded through the store, the dashboard view (sum of amount and
 * count of open orders per region) as a live Datalog subscription, then the rounds of
 * churn, one order change per transaction. Reports the initial load and subscribe time,
 * the commit-to-dashboard-diff latency (from submitting a transaction until the
 * subscriber's callback has received the diff it caused), and whether the final view
 * equals the generator's expected.final.
 * Usage: bench_w2 --data DIR [--rounds R] [--dir PATH (durable store, sync batched)]
 *   DIR holds gen.py w2 output, or is a parent with a w2-1e6, w2-1e5 or w2 subfolder.
 * Not here: --via server (bench_server measures the same latency over the protocol).
 */
#include "bench/harness.h"

#include <deltalog/deltalog.h>
#include <deltalog/store.h>
#include <deltalog/subscribe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static dl_error_t err;
static dl_store_t *st;
static dl_db_t *lent;

static void die(const char *what) {
    fprintf(stderr, "bench_w2: %s: %s\n", what, err.message);
    exit(1);
}

static int current_db(void *ctx, const struct dl_db **out, uint64_t *t, size_t *n, dl_error_t *e) {
    (void)ctx, (void)e;
    dl_db_unref(lent);
    *out = lent = dl_store_db(st);
    t[0] = dl_db_basis_tx(lent), *n = 1;
    return 0;
}

static void on_commit(void *ctx, const dl_commit_t *c) {
    dl_db_unref(lent), lent = NULL; /* a lent snapshot held across commits pins versions */
    if (dl_qsrcs_apply(ctx, c, &err) != 0)
        die("live query");
}

/* The view as the subscriber sees it: rows [region sum count] with multiplicities. */
typedef struct view {
    json_t *rows; /* object: EDN text of the row -> multiplicity */
    uint64_t deltas;
} view_t;

static void on_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    (void)sub;
    view_t *v = udata;
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return;
    v->deltas++;
    for (size_t i = 0; i < dl_delta_len(d); i++) {
        const dl_value_t *r = dl_delta_row(d, i);
        size_t n;
        const char *region = dl_value_str(r[0], &n);
        char key[160];
        snprintf(key, sizeof key, "[\"%.*s\",%lld,%lld]", (int)n, region ? region : "?",
                 (long long)r[1].as.i, (long long)r[2].as.i);
        json_t *m = json_object_get(v->rows, key);
        json_int_t c = (m ? json_integer_value(m) : 0) + dl_delta_diff(d, i);
        if (c == 0)
            json_object_del(v->rows, key);
        else
            json_object_set_new(v->rows, key, json_integer(c));
    }
}

/* ---- loading -------------------------------------------------------------------------- */

typedef struct loader {
    json_t *batch; /* array of map forms */
    size_t max;
    long n;
} loader_t;

static void flush(loader_t *l) {
    if (json_array_size(l->batch) == 0)
        return;
    char *s = json_dumps(l->batch, JSON_COMPACT);
    if (dl_store_transact_json(st, s, strlen(s), NULL, &err) != 0)
        die("load transaction");
    free(s);
    json_array_clear(l->batch);
}

static int load_customer(json_t *line, void *ctx) {
    loader_t *l = ctx;
    json_array_append_new(l->batch,
                          json_pack("{s:O,s:O}", "customer/id", json_object_get(line, "customer"),
                                    "customer/region", json_object_get(line, "region")));
    if (json_array_size(l->batch) >= l->max)
        flush(l);
    l->n++;
    return 0;
}

static json_t *order_map(json_t *o) {
    return json_pack("{s:O,s:{s:[s,O]},s:O,s:O}", "order/id", json_object_get(o, "order"),
                     "order/customer", "lookup", "customer/id", json_object_get(o, "customer"),
                     "order/amount", json_object_get(o, "amount"), "order/status",
                     json_object_get(o, "status"));
}

static int load_order(json_t *line, void *ctx) {
    loader_t *l = ctx;
    json_array_append_new(l->batch, order_map(line));
    if (json_array_size(l->batch) >= l->max)
        flush(l);
    l->n++;
    return 0;
}

/* ---- rounds --------------------------------------------------------------------------- */

typedef struct rounds {
    dl_registry_t *reg;
    view_t *view;
    bench_samples_t changed, all;
    long limit, done;
} rounds_t;

static int run_round(json_t *line, void *ctx) {
    rounds_t *r = ctx;
    json_t *txs = json_object_get(line, "txs"), *tx;
    size_t i;
    json_array_foreach(txs, i, tx) {
        const char *op = json_string_value(json_object_get(tx, "op"));
        json_t *data;
        if (strcmp(op, "new") == 0)
            data = json_pack("[o]", order_map(tx));
        else if (strcmp(op, "status") == 0)
            data = json_pack("[[s,[s,O],s,O]]", "add", "order/id", json_object_get(tx, "order"),
                             "order/status", json_object_get(tx, "status"));
        else
            data =
                json_pack("[[s,[s,O]]]", "retractEntity", "order/id", json_object_get(tx, "order"));
        char *s = json_dumps(data, JSON_COMPACT);
        json_decref(data);
        uint64_t before = r->view->deltas, t0 = bench_now_ns();
        if (dl_store_transact_json(st, s, strlen(s), NULL, &err) != 0)
            die("round transaction");
        if (dl_registry_pump(r->reg, &err) != 0)
            die("pump");
        uint64_t dt = bench_now_ns() - t0;
        free(s);
        bench_samples_add(&r->all, dt);
        if (r->view->deltas != before)
            bench_samples_add(&r->changed, dt);
    }
    return ++r->done >= r->limit;
}

static const char *find_data(const char *dir) {
    static char path[4096];
    static const char *const subs[] = {"", "/w2-1e6", "/w2-1e5", "/w2"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        struct stat sb;
        snprintf(path, sizeof path, "%s%s/w2.meta.json", dir, subs[i]);
        if (stat(path, &sb) == 0) {
            snprintf(path, sizeof path, "%s%s", dir, subs[i]);
            return path;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *arg = bench_arg(argc, argv, "data", NULL);
    const char *dir = arg ? find_data(arg) : NULL;
    if (!dir) {
        bench_emit(json_pack("{s:s,s:s}", "bench", "w2", "skipped",
                             "no W2 data: python3 ../shared/bench/gen.py w2 --orders 1000000 "
                             "--rounds 1000 --batch 1 --out DIR, then bench_w2 --data DIR"));
        return 0;
    }
    long limit = atol(bench_arg(argc, argv, "rounds", "1000000000"));
    const char *durable = bench_arg(argc, argv, "dir", NULL);
    char p[4200];
    snprintf(p, sizeof p, "%s/w2.meta.json", dir);
    json_t *meta = bench_load_json(p);
    if (!meta)
        return 1;

    uint64_t t0 = bench_now_ns();
    if (durable) {
        dl_store_options_t o;
        memset(&o, 0, sizeof o);
        o.sync_mode = DL_STORE_SYNC_BATCHED;
        if (dl_store_open(durable, &o, &st, &err) != 0)
            die("open");
    } else if (dl_store_open_memory(&st, &err) != 0) {
        die("open");
    }
    static const char *schema =
        "[{:db/ident :customer/id :db/valueType :db.type/long :db/cardinality "
        ":db.cardinality/one :db/unique :db.unique/identity}"
        " {:db/ident :customer/region :db/valueType :db.type/string :db/cardinality "
        ":db.cardinality/one}"
        " {:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one "
        ":db/unique :db.unique/identity}"
        " {:db/ident :order/customer :db/valueType :db.type/ref :db/cardinality "
        ":db.cardinality/one}"
        " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality "
        ":db.cardinality/one}"
        " {:db/ident :order/status :db/valueType :db.type/string :db/cardinality "
        ":db.cardinality/one :db/index true}]";
    if (dl_store_transact_edn(st, schema, strlen(schema), NULL, &err) != 0)
        die("schema");
    loader_t l = {json_array(), 10000, 0};
    snprintf(p, sizeof p, "%s/w2.customers.jsonl", dir);
    if (bench_read_jsonl(p, load_customer, &l) < 0)
        return 1;
    flush(&l);
    long customers = l.n;
    l.n = 0;
    snprintf(p, sizeof p, "%s/w2.orders.jsonl", dir);
    if (bench_read_jsonl(p, load_order, &l) < 0)
        return 1;
    flush(&l);
    long orders = l.n;
    uint64_t t_loaded = bench_now_ns();

    dl_qsrcs_t *qs;
    dl_registry_t *reg;
    dl_sub_t *sub;
    dl_qsrc_env_t env = {current_db, NULL, NULL};
    int listener;
    if (dl_qsrcs_new(&env, &qs, &err) || dl_registry_new(dl_qsrcs_vtable(), qs, &reg, &err) ||
        dl_store_listen(st, on_commit, qs, &listener, &err))
        die("wiring");
    view_t view = {json_object(), 0};
    dl_sub_options_t so;
    dl_sub_options_init(&so);
    so.on_delta = on_delta;
    so.udata = &view;
    const char *q = "[:find ?region (sum ?amount) (count ?o) :with ?o"
                    " :where [?o :order/status \"open\"] [?o :order/customer ?c]"
                    " [?c :customer/region ?region] [?o :order/amount ?amount]]";
    if (dl_subscribe(reg, q, NULL, 0, &so, &sub, &err) != 0)
        die("subscribe");
    uint64_t t_sub = bench_now_ns();
    bool initial_ok = true;
    {
        json_t *e = json_object_get(json_object_get(meta, "expected"), "initial"), *row;
        size_t i;
        json_array_foreach(e, i, row) {
            char *k = json_dumps(row, JSON_COMPACT);
            json_t *m = json_object_get(view.rows, k);
            initial_ok &= m && json_integer_value(m) == 1;
            free(k);
        }
        initial_ok &= json_object_size(view.rows) == json_array_size(e);
    }

    rounds_t r = {reg, &view, {0}, {0}, limit, 0};
    snprintf(p, sizeof p, "%s/w2.rounds.jsonl", dir);
    if (bench_read_jsonl(p, run_round, &r) < 0)
        return 1;
    bool final_ok = false;
    if (r.done == json_integer_value(json_object_get(json_object_get(meta, "params"), "rounds"))) {
        json_t *e = json_object_get(json_object_get(meta, "expected"), "final"), *row;
        size_t i;
        final_ok = json_object_size(view.rows) == json_array_size(e);
        json_array_foreach(e, i, row) {
            char *k = json_dumps(row, JSON_COMPACT);
            json_t *m = json_object_get(view.rows, k);
            final_ok &= m && json_integer_value(m) == 1;
            free(k);
        }
    }
    json_t *params = json_pack("{s:I,s:I,s:I,s:s}", "orders", (json_int_t)orders, "customers",
                               (json_int_t)customers, "rounds", (json_int_t)r.done, "store",
                               durable ? "durable, sync batched" : "memory");
    size_t n_changed = r.changed.n, n_all = r.all.n;
    bench_emit(json_pack("{s:s,s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:b,s:b}", "bench", "w2",
                         "via", "inprocess", "params", params, "load_ms", (t_loaded - t0) / 1e6,
                         "init_ms", (t_sub - t0) / 1e6, "subscribe_ms", (t_sub - t_loaded) / 1e6,
                         "p50_us", bench_samples_pct_us(&r.changed, 0.5), "p99_us",
                         bench_samples_pct_us(&r.changed, 0.99), "all_tx_p50_us",
                         bench_samples_pct_us(&r.all, 0.5), "txs", (json_int_t)n_all,
                         "txs_changing_view", (json_int_t)n_changed, "peak_rss_mb",
                         bench_peak_rss_mb(), "initial_ok", initial_ok, "checksum_ok", final_ok));
    dl_unsubscribe(reg, sub);
    dl_registry_free(reg);
    dl_qsrcs_free(qs);
    dl_db_unref(lent);
    dl_store_close(st);
    json_decref(view.rows);
    json_decref(meta);
    bench_samples_free(&r.changed);
    bench_samples_free(&r.all);
    return final_ok && initial_ok ? 0 : 1;
}
