/*
 * bench_store.c: the store with the shared W2 workload (../shared/bench/README.md):
 * bulk import (datoms/s), small one-order transactions (tx/s, latency), entity reads
 * as-of a past time (p50/p99), and the view's answer recomputed from the store to prove
 * the import and the rounds were right (expected.initial / expected.final).
 * Usage: bench_store --data DIR [--batch N] [--dir PATH (durable)] [--sync every|batched|none]
 *        [--segment-mb N] [--ckpt-kept N] [--writer-txs N] [--tail-txs N] [--reopens N]
 *        [--pipe-batch N] (durable: 4 x writer-txs transactions from one thread, N per wait)
 *        bench_store --recover-only DIR [--reopens N]   (recovery of an existing directory)
 * Recovery (store_recovery): a checkpoint, then --tail-txs (default 2000) one-order
 * transactions after it, close, and --reopens (default 3) timed opens: checkpoint load +
 * replay of the tail; median wall and CPU time.
 * Prints one JSON line per measurement.
 */
#include "bench/harness.h"

#include "base/base.h"
#include <deltalog/store.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct order {
    int64_t id, customer, amount;
    int status; /* index into statuses */
} order_t;

static const char *statuses[4] = {"open", "paid", "shipped", "cancelled"};

typedef struct load {
    int64_t *cust_region; /* region index per customer */
    size_t n_cust, cap_cust;
    order_t *orders;
    size_t n_orders, cap_orders;
    int n_regions;
} load_t;

static int status_of(const char *s) {
    for (int i = 0; i < 4; i++)
        if (strcmp(s, statuses[i]) == 0)
            return i;
    return 0;
}

static int on_customer(json_t *j, void *ctx) {
    load_t *l = ctx;
    int64_t c = json_integer_value(json_object_get(j, "customer"));
    const char *r = json_string_value(json_object_get(j, "region"));
    int region = r ? atoi(r + 7) : 0;
    if ((size_t)c >= l->cap_cust) {
        size_t cap = l->cap_cust ? l->cap_cust * 2 : 1024;
        while (cap <= (size_t)c)
            cap *= 2;
        l->cust_region = realloc(l->cust_region, cap * sizeof *l->cust_region);
        l->cap_cust = cap;
    }
    l->cust_region[c] = region;
    if ((size_t)c + 1 > l->n_cust)
        l->n_cust = (size_t)c + 1;
    if (region + 1 > l->n_regions)
        l->n_regions = region + 1;
    return 0;
}

static int on_order(json_t *j, void *ctx) {
    load_t *l = ctx;
    if (l->n_orders == l->cap_orders) {
        l->cap_orders = l->cap_orders ? l->cap_orders * 2 : 1 << 16;
        l->orders = realloc(l->orders, l->cap_orders * sizeof *l->orders);
    }
    order_t *o = &l->orders[l->n_orders++];
    o->id = json_integer_value(json_object_get(j, "order"));
    o->customer = json_integer_value(json_object_get(j, "customer"));
    o->amount = json_integer_value(json_object_get(j, "amount"));
    o->status = status_of(json_string_value(json_object_get(j, "status")));
    return 0;
}

static dl_value_t kw(const char *s) {
    dl_value_t v;
    if (dl_value_text(DL_T_KEYWORD, s, strlen(s), &v, NULL) != 0)
        abort();
    return v;
}
static dl_value_t str(const char *s) {
    dl_value_t v;
    if (dl_value_text(DL_T_STRING, s, strlen(s), &v, NULL) != 0)
        abort();
    return v;
}

static int die(const char *what, const dl_error_t *err) {
    fprintf(stderr, "bench_store: %s: %s\n", what, err->message);
    exit(1);
}

/* The W2 view from the store: per region, sum of amount and count of open orders. */
static json_t *view(dl_store_t *s, int n_regions, const int64_t *cust_region_by_entity,
                    int64_t min_cust_e, size_t n_cust_e) {
    dl_db_t *db = dl_store_db(s);
    dl_attr_info_t st, cu, am;
    dl_error_t err = {0};
    if (dl_db_attr(db, "order/status", &st, &err) || dl_db_attr(db, "order/customer", &cu, &err) ||
        dl_db_attr(db, "order/amount", &am, &err))
        die("schema", &err);
    int64_t *sum = calloc((size_t)n_regions, sizeof *sum), *cnt = calloc((size_t)n_regions, 8);
    dl_datom_t p = {.a = st.id};
    dl_iter_t *it;
    if (dl_db_datoms(db, DL_INDEX_AEVT, &p, 1, NULL, &it, &err) != 0)
        die("scan", &err);
    dl_value_t open = str("open");
    dl_datom_t d;
    while (dl_iter_next(it, &d)) {
        if (!dl_value_eq(d.v, open))
            continue;
        dl_datom_t *ds;
        size_t nd;
        if (dl_db_entity(db, d.e, &ds, &nd, &err) != 0)
            die("entity", &err);
        int64_t c = -1, amount = 0;
        for (size_t i = 0; i < nd; i++) {
            if (ds[i].a == cu.id)
                c = ds[i].v.as.i;
            if (ds[i].a == am.id)
                amount = ds[i].v.as.i;
        }
        dl_free(ds);
        if (c < min_cust_e || (size_t)(c - min_cust_e) >= n_cust_e)
            continue;
        int64_t r = cust_region_by_entity[c - min_cust_e];
        sum[r] += amount;
        cnt[r]++;
    }
    dl_iter_free(it);
    dl_db_unref(db);
    json_t *rows = json_array();
    for (int r = 0; r < n_regions; r++) {
        if (!cnt[r])
            continue;
        char name[32];
        snprintf(name, sizeof name, "region-%d", r);
        json_array_append_new(rows,
                              json_pack("[s,I,I]", name, (json_int_t)sum[r], (json_int_t)cnt[r]));
    }
    free(sum);
    free(cnt);
    return rows;
}

typedef struct rctx {
    dl_store_t *s;
    bench_samples_t lat;
    long n_tx, n_datoms;
    int64_t min_cust_e;
    dl_value_t a_oid, a_cust, a_amount, a_status;
    dl_value_t status_v[4];
} rctx_t;

static int on_round(json_t *j, void *ctx) {
    rctx_t *c = ctx;
    json_t *txs = json_object_get(j, "txs");
    for (size_t i = 0; i < json_array_size(txs); i++) {
        json_t *t = json_array_get(txs, i);
        const char *op = json_string_value(json_object_get(t, "op"));
        int64_t oid = json_integer_value(json_object_get(t, "order"));
        dl_tx_op_t ops[4];
        size_t n = 0;
        memset(ops, 0, sizeof ops);
        if (strcmp(op, "new") == 0) {
            dl_value_t e = dl_value_int(-1);
            int64_t cust = json_integer_value(json_object_get(t, "customer"));
            ops[n++] = (dl_tx_op_t){.op = DL_OP_ADD, .e = e, .a = c->a_oid, .v = dl_value_int(oid)};
            ops[n++] = (dl_tx_op_t){
                .op = DL_OP_ADD, .e = e, .a = c->a_cust, .v = dl_value_ref(c->min_cust_e + cust)};
            ops[n++] =
                (dl_tx_op_t){.op = DL_OP_ADD,
                             .e = e,
                             .a = c->a_amount,
                             .v = dl_value_int(json_integer_value(json_object_get(t, "amount")))};
            ops[n++] = (dl_tx_op_t){
                .op = DL_OP_ADD,
                .e = e,
                .a = c->a_status,
                .v = c->status_v[status_of(json_string_value(json_object_get(t, "status")))]};
        } else if (strcmp(op, "status") == 0) {
            ops[n++] = (dl_tx_op_t){
                .op = DL_OP_ADD,
                .e = dl_value_int(oid),
                .e_lookup = c->a_oid,
                .a = c->a_status,
                .v = c->status_v[status_of(json_string_value(json_object_get(t, "status")))]};
        } else {
            ops[n++] = (dl_tx_op_t){
                .op = DL_OP_RETRACT_ENTITY, .e = dl_value_int(oid), .e_lookup = c->a_oid};
        }
        dl_error_t err = {0};
        dl_tx_report_t rep;
        uint64_t t0 = bench_now_ns();
        if (dl_store_transact(c->s, ops, n, NULL, 0, &rep, &err) != 0)
            die("round tx", &err);
        bench_samples_add(&c->lat, bench_now_ns() - t0);
        c->n_tx++;
        c->n_datoms += (long)rep.n_datoms;
        dl_tx_report_fini(&rep);
    }
    return 0;
}

typedef struct wctx {
    dl_store_t *s;
    int64_t first_order, n, cust_e0, n_cust;
    dl_value_t a_oid, a_cust, a_amount, a_status, open;
    bench_samples_t lat;
    int failed;
} wctx_t;

/* One of four concurrent writers: n one-order transactions. */
static void *writer(void *p) {
    wctx_t *w = p;
    for (int64_t i = 0; i < w->n; i++) {
        dl_value_t e = dl_value_int(-1);
        dl_tx_op_t ops[4] = {
            {.op = DL_OP_ADD, .e = e, .a = w->a_oid, .v = dl_value_int(w->first_order + i)},
            {.op = DL_OP_ADD,
             .e = e,
             .a = w->a_cust,
             .v = dl_value_ref(w->cust_e0 + (w->first_order + i) % w->n_cust)},
            {.op = DL_OP_ADD, .e = e, .a = w->a_amount, .v = dl_value_int(i % 100)},
            {.op = DL_OP_ADD, .e = e, .a = w->a_status, .v = w->open}};
        uint64_t t0 = bench_now_ns();
        if (dl_store_transact(w->s, ops, 4, NULL, 0, NULL, NULL) != 0)
            w->failed++;
        bench_samples_add(&w->lat, bench_now_ns() - t0);
    }
    return NULL;
}

/* CPU time of this process (user + system), ns: on a shared machine the single-threaded
 * import's CPU time is what it would take alone. */
static uint64_t cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static uint64_t file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n > 0 ? (uint64_t)n : 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Opens dir `runs` times (closing in between): median wall and CPU ms of the open. */
static void time_reopens(const char *dir, const dl_store_options_t *o, int runs, double *wall_ms,
                         double *cpu_ms, dl_store_stats_t *st) {
    uint64_t w[16], c[16];
    if (runs < 1)
        runs = 1;
    if (runs > 16)
        runs = 16;
    for (int i = 0; i < runs; i++) {
        dl_store_t *s;
        dl_error_t err = {0};
        uint64_t c0 = cpu_ns(), r0 = bench_now_ns();
        if (dl_store_open(dir, o, &s, &err) != 0) {
            fprintf(stderr, "reopen: %s\n", err.message);
            exit(1);
        }
        w[i] = bench_now_ns() - r0;
        c[i] = cpu_ns() - c0;
        if (st)
            dl_store_stats(s, st);
        dl_store_close(s);
    }
    qsort(w, (size_t)runs, sizeof *w, cmp_u64);
    qsort(c, (size_t)runs, sizeof *c, cmp_u64);
    *wall_ms = w[runs / 2] / 1e6;
    *cpu_ms = c[runs / 2] / 1e6;
}

int main(int argc, char **argv) {
    const char *only = bench_arg(argc, argv, "recover-only", NULL);
    if (only) {
        dl_store_options_t o = {0};
        double wm, cm;
        dl_store_stats_t st;
        time_reopens(only, &o, atoi(bench_arg(argc, argv, "reopens", "3")), &wm, &cm, &st);
        bench_emit(json_pack("{s:s,s:f,s:f,s:I,s:I,s:I}", "bench", "store_recovery_only",
                             "init_ms_median", wm, "cpu_ms_median", cm, "datoms",
                             (json_int_t)st.datoms, "last_tx", (json_int_t)st.last_tx,
                             "bytes_on_disk", (json_int_t)st.bytes_on_disk));
        return 0;
    }
    const char *data = bench_arg(argc, argv, "data", NULL);
    long batch = atol(bench_arg(argc, argv, "batch", "10000"));
    const char *dir = bench_arg(argc, argv, "dir", NULL);
    const char *sync = bench_arg(argc, argv, "sync", "batched");
    if (!data) {
        fprintf(stderr, "usage: bench_store --data DIR [--batch N] [--dir PATH] [--sync M]\n");
        return 2;
    }
    char path[4096];
    load_t l = {0};
    snprintf(path, sizeof path, "%s/w2.customers.jsonl", data);
    if (bench_read_jsonl(path, on_customer, &l) < 0)
        return 1;
    snprintf(path, sizeof path, "%s/w2.orders.jsonl", data);
    if (bench_read_jsonl(path, on_order, &l) < 0)
        return 1;
    snprintf(path, sizeof path, "%s/w2.meta.json", data);
    json_t *meta = bench_load_json(path);
    if (!meta)
        return 1;

    dl_store_t *s;
    dl_error_t err = {0};
    const char *mode = "memory";
    if (dir) {
        dl_store_options_t o = {0};
        o.sync_mode = strcmp(sync, "every") == 0  ? DL_STORE_SYNC_EVERY
                      : strcmp(sync, "none") == 0 ? DL_STORE_SYNC_NONE
                                                  : DL_STORE_SYNC_BATCHED;
        o.segment_bytes = (size_t)atol(bench_arg(argc, argv, "segment-mb", "0")) << 20;
        o.checkpoints_kept = atoi(bench_arg(argc, argv, "ckpt-kept", "0"));
        if (dl_store_open(dir, &o, &s, &err) != 0)
            die("open", &err);
        mode = "durable";
    } else if (dl_store_open_memory(&s, &err) != 0) {
        die("open", &err);
    }
    const char *schema =
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
        ":db.cardinality/one}]";
    if (dl_store_transact_edn(s, schema, strlen(schema), NULL, &err) != 0)
        die("schema", &err);
    dl_value_t a_cid = kw("customer/id"), a_region = kw("customer/region"), a_oid = kw("order/id"),
               a_cust = kw("order/customer"), a_amount = kw("order/amount"),
               a_status = kw("order/status");
    dl_value_t status_v[4], region_v[64];
    for (int i = 0; i < 4; i++)
        status_v[i] = str(statuses[i]);
    for (int i = 0; i < l.n_regions && i < 64; i++) {
        char name[32];
        snprintf(name, sizeof name, "region-%d", i);
        region_v[i] = str(name);
    }

    /* ---- bulk import: customers, then orders, `batch` entities per transaction ---- */
    dl_tx_op_t *ops = malloc((size_t)batch * 4 * sizeof *ops);
    uint64_t t0 = bench_now_ns(), cpu0 = cpu_ns();
    long n_datoms = 0, n_tx = 0;
    int64_t *cust_e = calloc(l.n_cust + 1, sizeof *cust_e);
    for (size_t i = 0; i < l.n_cust;) {
        size_t n = 0, first = i;
        for (; i < l.n_cust && n < (size_t)batch * 2; i++) {
            dl_value_t e = dl_value_int(-(int64_t)(i - first) - 1);
            ops[n++] =
                (dl_tx_op_t){.op = DL_OP_ADD, .e = e, .a = a_cid, .v = dl_value_int((int64_t)i)};
            ops[n++] = (dl_tx_op_t){
                .op = DL_OP_ADD, .e = e, .a = a_region, .v = region_v[l.cust_region[i]]};
        }
        dl_tx_report_t rep;
        if (dl_store_transact(s, ops, n, NULL, 0, &rep, &err) != 0)
            die("import customers", &err);
        for (size_t k = 0; k < rep.n_tempids; k++)
            cust_e[first + (size_t)(-atoll(rep.tempids[k].tempid)) - 1] = rep.tempids[k].id;
        n_datoms += (long)rep.n_datoms;
        n_tx++;
        dl_tx_report_fini(&rep);
    }
    /* entity ids are allocated in order, so customer i is cust_e[0] + i */
    int64_t min_cust_e = cust_e[0];
    for (size_t i = 0; i < l.n_cust; i++)
        if (cust_e[i] != min_cust_e + (int64_t)i) {
            fprintf(stderr, "bench_store: customer ids not dense\n");
            return 1;
        }
    for (size_t i = 0; i < l.n_orders;) {
        size_t n = 0, first = i;
        for (; i < l.n_orders && n < (size_t)batch * 4; i++) {
            const order_t *o = &l.orders[i];
            dl_value_t e = dl_value_int(-(int64_t)(i - first) - 1);
            ops[n++] = (dl_tx_op_t){.op = DL_OP_ADD, .e = e, .a = a_oid, .v = dl_value_int(o->id)};
            ops[n++] = (dl_tx_op_t){
                .op = DL_OP_ADD, .e = e, .a = a_cust, .v = dl_value_ref(min_cust_e + o->customer)};
            ops[n++] =
                (dl_tx_op_t){.op = DL_OP_ADD, .e = e, .a = a_amount, .v = dl_value_int(o->amount)};
            ops[n++] =
                (dl_tx_op_t){.op = DL_OP_ADD, .e = e, .a = a_status, .v = status_v[o->status]};
        }
        /* no report: an import does not need the tempid map */
        if (dl_store_transact(s, ops, n, NULL, 0, NULL, &err) != 0)
            die("import orders", &err);
        n_datoms += (long)n;
        n_tx++;
    }
    uint64_t t1 = bench_now_ns(), cpu1 = cpu_ns();
    double import_s = (t1 - t0) / 1e9, import_cpu_s = (cpu1 - cpu0) / 1e9;
    {
        /* the datoms the store holds must be the datoms sent */
        dl_db_t *db = dl_store_db(s);
        const char *attrs[] = {"customer/id",    "customer/region", "order/id",
                               "order/customer", "order/amount",    "order/status"};
        long held = 0;
        for (size_t i = 0; i < 6; i++) {
            dl_attr_info_t ai;
            dl_attr_stats_t st;
            if (dl_db_attr(db, attrs[i], &ai, &err) || dl_db_attr_stats(db, ai.id, &st, &err))
                die("stats", &err);
            held += (long)st.datoms;
        }
        dl_db_unref(db);
        if (held != n_datoms) {
            fprintf(stderr, "bench_store: %ld datoms sent, %ld held\n", n_datoms, held);
            return 1;
        }
    }
    json_t *initial = view(s, l.n_regions, l.cust_region, min_cust_e, l.n_cust);
    bool ok_initial =
        json_equal(initial, json_object_get(json_object_get(meta, "expected"), "initial"));
    json_decref(initial);
    json_t *params =
        json_pack("{s:I,s:I,s:s,s:s,s:I}", "orders", (json_int_t)l.n_orders, "batch",
                  (json_int_t)batch, "mode", mode, "sync", dir ? sync : "-", "segment_mb",
                  (json_int_t)atol(bench_arg(argc, argv, "segment-mb", "0")));
    json_object_set_new(params, "ckpt_kept",
                        json_integer(atoi(bench_arg(argc, argv, "ckpt-kept", "0"))));
    bench_emit(json_pack("{s:s,s:O,s:f,s:f,s:I,s:f,s:f,s:f,s:s}", "bench", "store_bulk_import",
                         "params", params, "init_ms", import_s * 1e3, "cpu_ms", import_cpu_s * 1e3,
                         "datoms", (json_int_t)n_datoms, "throughput_per_s", n_datoms / import_s,
                         "throughput_per_cpu_s", n_datoms / import_cpu_s, "peak_rss_mb",
                         bench_peak_rss_mb(), "checksum", ok_initial ? "ok" : "MISMATCH"));
    uint64_t basis_after_import = (uint64_t)n_tx + 1;

    /* ---- small transactions: one W2 round operation each ---- */
    rctx_t rc = {.s = s,
                 .min_cust_e = min_cust_e,
                 .a_oid = a_oid,
                 .a_cust = a_cust,
                 .a_amount = a_amount,
                 .a_status = a_status};
    memcpy(rc.status_v, status_v, sizeof status_v);
    snprintf(path, sizeof path, "%s/w2.rounds.jsonl", data);
    uint64_t t2 = bench_now_ns();
    if (bench_read_jsonl(path, on_round, &rc) < 0)
        return 1;
    uint64_t t3 = bench_now_ns();
    json_t *final = view(s, l.n_regions, l.cust_region, min_cust_e, l.n_cust);
    bool ok_final = json_equal(final, json_object_get(json_object_get(meta, "expected"), "final"));
    json_decref(final);
    bench_emit(json_pack("{s:s,s:O,s:I,s:f,s:f,s:f,s:s}", "bench", "store_small_tx", "params",
                         params, "txs", (json_int_t)rc.n_tx, "throughput_per_s",
                         rc.n_tx / ((t3 - t2) / 1e9), "p50_us", bench_samples_pct_us(&rc.lat, 0.5),
                         "p99_us", bench_samples_pct_us(&rc.lat, 0.99), "checksum",
                         ok_final ? "ok" : "MISMATCH"));

    /* ---- entity state as-of a past time ---- */
    bench_samples_t lat = {0};
    dl_db_t *db = dl_store_db(s);
    uint64_t basis = dl_db_basis_tx(db), x = 7;
    long found = 0;
    for (int i = 0; i < 20000; i++) {
        x = dl__hash_mix(x);
        /* an order entity, and a time between the end of the import and now */
        int64_t e = min_cust_e + (int64_t)l.n_cust + (int64_t)(x % l.n_orders);
        uint64_t t = basis_after_import + (x >> 32) % (basis - basis_after_import + 1);
        uint64_t q0 = bench_now_ns();
        dl_db_t *past = dl_db_as_of(db, t);
        dl_datom_t *ds;
        size_t nd;
        if (dl_db_entity(past, e, &ds, &nd, &err) != 0)
            die("entity", &err);
        found += nd > 0;
        dl_free(ds);
        dl_db_unref(past);
        bench_samples_add(&lat, bench_now_ns() - q0);
    }
    dl_db_unref(db);
    bench_emit(json_pack("{s:s,s:O,s:f,s:f,s:I}", "bench", "store_entity_as_of", "params", params,
                         "p50_us", bench_samples_pct_us(&lat, 0.5), "p99_us",
                         bench_samples_pct_us(&lat, 0.99), "found", (json_int_t)found));
    bool ok_recovered = true;
    if (dir) {
        /* ---- durable: four concurrent writers sharing fsyncs (group commit) ---- */
        pthread_t th[4];
        wctx_t w[4];
        long per = atol(bench_arg(argc, argv, "writer-txs", "5000"));
        dl_store_stats_t st0, st1;
        dl_store_stats(s, &st0);
        uint64_t c0 = bench_now_ns();
        for (int i = 0; i < 4; i++) {
            w[i] = (wctx_t){s,
                            10000000 + i * per,
                            per,
                            min_cust_e,
                            (int64_t)l.n_cust,
                            a_oid,
                            a_cust,
                            a_amount,
                            a_status,
                            status_v[0],
                            {0},
                            0};
            pthread_create(&th[i], NULL, writer, &w[i]);
        }
        bench_samples_t all = {0};
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            for (size_t k = 0; k < w[i].lat.n; k++)
                bench_samples_add(&all, w[i].lat.v[k]);
            bench_samples_free(&w[i].lat);
            if (w[i].failed)
                die("concurrent writer", &err);
        }
        uint64_t c1 = bench_now_ns();
        dl_store_stats(s, &st1);
        bench_emit(json_pack(
            "{s:s,s:O,s:I,s:f,s:f,s:f,s:I,s:I}", "bench", "store_concurrent_tx", "params", params,
            "writers", (json_int_t)4, "throughput_per_s", 4.0 * per / ((c1 - c0) / 1e9), "p50_us",
            bench_samples_pct_us(&all, 0.5), "p99_us", bench_samples_pct_us(&all, 0.99), "fsyncs",
            (json_int_t)(st1.fsyncs - st0.fsyncs), "group_commits",
            (json_int_t)(st1.group_commits - st0.group_commits)));
        bench_samples_free(&all);
        /* ---- durable: one thread pipelining (commit without waiting, one wait per batch of
         * --pipe-batch), the engine thread's pattern (store.c design note 7) ---- */
        {
            long n_pipe = 4 * per, pb = atol(bench_arg(argc, argv, "pipe-batch", "256"));
            if (pb < 1)
                pb = 1;
            uint64_t *began = malloc((size_t)pb * sizeof *began);
            bench_samples_t plat = {0};
            dl_store_stats(s, &st0);
            uint64_t p0 = bench_now_ns();
            for (long i = 0; i < n_pipe;) {
                long k = 0;
                uint64_t last = 0;
                for (; k < pb && i < n_pipe; k++, i++) {
                    int64_t oid = 30000000 + i;
                    dl_value_t e = dl_value_int(-1);
                    dl_tx_op_t pops[4] = {
                        {.op = DL_OP_ADD, .e = e, .a = a_oid, .v = dl_value_int(oid)},
                        {.op = DL_OP_ADD,
                         .e = e,
                         .a = a_cust,
                         .v = dl_value_ref(min_cust_e + oid % (int64_t)l.n_cust)},
                        {.op = DL_OP_ADD, .e = e, .a = a_amount, .v = dl_value_int(i % 100)},
                        {.op = DL_OP_ADD, .e = e, .a = a_status, .v = status_v[0]}};
                    began[k] = bench_now_ns();
                    if (dl_store_transact_begin(s, pops, 4, NULL, 0, NULL, &last, &err) != 0)
                        die("pipelined transaction", &err);
                }
                if (dl_store_wait_durable(s, last, &err) != 0)
                    die("wait durable", &err);
                uint64_t done = bench_now_ns();
                for (long j = 0; j < k; j++)
                    bench_samples_add(&plat, done - began[j]);
            }
            uint64_t p1 = bench_now_ns();
            dl_store_stats(s, &st1);
            bench_emit(json_pack("{s:s,s:O,s:I,s:I,s:f,s:f,s:f,s:I}", "bench", "store_pipelined_tx",
                                 "params", params, "batch", (json_int_t)pb, "txs",
                                 (json_int_t)n_pipe, "throughput_per_s", n_pipe / ((p1 - p0) / 1e9),
                                 "p50_us", bench_samples_pct_us(&plat, 0.5), "p99_us",
                                 bench_samples_pct_us(&plat, 0.99), "fsyncs",
                                 (json_int_t)(st1.fsyncs - st0.fsyncs)));
            bench_samples_free(&plat);
            free(began);
        }
        /* ---- a checkpoint, the bytes on disk, recovery ---- */
        uint64_t k0 = bench_now_ns();
        if (dl_store_checkpoint(s, &err) != 0)
            die("checkpoint", &err);
        uint64_t k1 = bench_now_ns();
        /* the tail: one-order transactions after the checkpoint, replayed by recovery */
        long tail = atol(bench_arg(argc, argv, "tail-txs", "2000"));
        {
            wctx_t tw = {s,     20000000, tail,     min_cust_e, (int64_t)l.n_cust,
                         a_oid, a_cust,   a_amount, a_status,   status_v[0],
                         {0},   0};
            writer(&tw);
            bench_samples_free(&tw.lat);
            if (tw.failed)
                die("tail", &err);
        }
        dl_store_stats(s, &st1);
        uint64_t json_bytes = 0;
        const char *files[] = {"w2.customers.jsonl", "w2.orders.jsonl", "w2.rounds.jsonl"};
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "%s/%s", data, files[i]);
            json_bytes += file_size(path);
        }
        dl_store_close(s);
        dl_store_options_t o = {0};
        o.sync_mode = strcmp(sync, "every") == 0  ? DL_STORE_SYNC_EVERY
                      : strcmp(sync, "none") == 0 ? DL_STORE_SYNC_NONE
                                                  : DL_STORE_SYNC_BATCHED;
        o.checkpoints_kept = atoi(bench_arg(argc, argv, "ckpt-kept", "0"));
        double rec_ms, rec_cpu_ms;
        time_reopens(dir, &o, atoi(bench_arg(argc, argv, "reopens", "3")), &rec_ms, &rec_cpu_ms,
                     NULL);
        if (dl_store_open(dir, &o, &s, &err) != 0)
            die("reopen", &err);
        dl_store_stats_t st2;
        dl_store_stats(s, &st2);
        /* the recovered database answers the same (the writers' orders are open too) */
        json_t *again = view(s, l.n_regions, l.cust_region, min_cust_e, l.n_cust);
        ok_recovered = st2.last_tx == st1.last_tx && st2.datoms == st1.datoms &&
                       st2.history_datoms == st1.history_datoms;
        json_decref(again);
        bench_emit(json_pack("{s:s,s:O,s:f,s:I,s:f,s:f,s:I,s:I,s:f,s:f,s:s}", "bench",
                             "store_recovery", "params", params, "checkpoint_ms", (k1 - k0) / 1e6,
                             "tail_txs", (json_int_t)tail, "init_ms", rec_ms, "init_cpu_ms",
                             rec_cpu_ms, "bytes_on_disk", (json_int_t)st1.bytes_on_disk,
                             "json_bytes", (json_int_t)json_bytes, "disk_vs_json",
                             json_bytes ? (double)st1.bytes_on_disk / (double)json_bytes : 0.0,
                             "log_compression_ratio", st1.compression_ratio, "checksum",
                             ok_recovered ? "ok" : "MISMATCH"));
    }
    json_decref(params);
    bench_samples_free(&lat);
    bench_samples_free(&rc.lat);
    dl_store_close(s);
    json_decref(meta);
    free(ops);
    free(cust_e);
    free(l.orders);
    free(l.cust_region);
    return ok_initial && ok_final && ok_recovered ? 0 : 1;
}
