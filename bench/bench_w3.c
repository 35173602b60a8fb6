/*
 * bench_w3.c: the shared W3 workload (../shared/bench/README.md, "W3 — event sourcing")
 * end to end in process: every event becomes a transaction (or a batch of events one
 * transaction) on a store (in memory, or durable with batched sync), and the balance
 * projection is a live Datalog subscription
 *     [:find ?acct (sum ?amt) :with ?ev :where [?ev :event/account ?acct] [?ev :event/amount ?amt]]
 * fed by the store's commit listener (dl_qsrcs_apply) and the registry (dl_registry_pump),
 * delivered by callback to a subscriber that keeps the balance per account and the set of
 * accounts below zero. The projection is current after every transaction: each one is
 * applied, run to completion and delivered before the next is submitted.
 *
 * The negative-balance set is a second subscriber to the same query (the registry shares
 * one live source between the two): it keeps, per account, how many of the account's rows
 * present in the result have a negative balance, which is order-independent within a
 * delta. It is not a second Datalog query because Datalog (Datomic's dialect, as deltalog
 * implements it) cannot filter on an aggregate's result (no subqueries or HAVING). The
 * final state of both is checked against the generator's expected checksums and against
 * the compiled engine's one-shot result (dl_query_run).
 *
 * Measures, per run (JSON lines via bench/harness.h): sustained events/s with the
 * projection current (batched, and one event per transaction), and the latency from
 * submitting a transaction to the projection's diff arriving at the subscriber
 * (p50/p99; this includes the commit itself).
 *
 * --via server: the same events through a `deltalog serve` process over TCP
 * (docs/protocol.md; bench/server_client.c starts and talks to it): the schema, then a
 * `subscribe` to the balance query, then one `transact` request per transaction (JSON
 * transaction data, one map per event), pipelined with `--window` requests in flight.
 * The client keeps the projection from the subscription's diffs (read by a small
 * scanner of the two line shapes; anything else through jansson), checks that times
 * increase and that every retraction matches the row it removes, and stops the clock when
 * the diff of the last transaction that changes the result has arrived (which
 * transactions change it follows from the events: a first event of an account, or a
 * nonzero net amount for one). The final projection is checked against the generator's
 * checksums and against a one-shot `query` over the wire. Latency: from a transaction's
 * send to the diff carrying its t (only transactions that change the result; with
 * `window` transactions in flight, so it includes the queueing). CPU seconds of the
 * client and of the server are reported apart.
 *
 * Per line, "store_share" is the part of the run spent in the store's transaction path
 * (dl_store_transact minus the commit listener's run of the live query, which is
 * "apply_share"; "pump_share" is the delivery to the subscribers).
 *
 * Usage: bench_w3 --data DIR [--via inprocess|server] [--batch N] [--durable DIR2]
 *                 [--events K] [--single-events K] [--only batched|single] [--store-only]
 *                 [--window W] [--server PATH] [--pipelined]
 *   DIR: the folder gen.py wrote (w3.events.jsonl, w3.meta.json) or a parent with w3/.
 *   --batch N: events per transaction in the batched run (default 1000).
 *   --durable DIR2: run both on a durable store (sync batched) in a fresh folder under DIR2
 *                   instead of in memory
 *     (sync mode batched: commits are written to the OS, fsynced within 10 ms).
 *   --events K: every run stops after the first K events; --single-events K: only the
 *     one-event-per-transaction run does (default: all events; a partial run is checked
 *     against the sums of the events it read instead of the generator's checksums).
 *   --store-only: no live query and no subscriber (runs "w3_store_*"): the store's
 *     transaction path alone; the checksum is then that of a one-shot query at the end.
 *   --window W (--via server): transactions in flight (default 16 batched, 256 single);
 *   --server PATH: the deltalog binary (default: the one next to this program). With
 *     --durable the server runs `--data DIR2/... --sync batched`.
 *   --pipelined: the live queries are fed on a thread of their own (dl_live_db_t with
 *     `pipelined`, include/deltalog/live.h), so the store commits the next transaction
 *     while the dataflow and the delivery work on the last one; transactions are
 *     submitted back to back (at most 4 wait), the clock stops when every diff has been
 *     delivered (dl_live_db_sync), and the latency is from a transaction's submission to
 *     its balance diff on the delivery thread. No store/apply/pump shares then.
 * Lines are named w3_[server_][store_][pipelined_][durable_]batched|single.
 */
#include "bench/harness.h"
#include "bench/server_client.h"

#include "base/base.h"
#include <deltalog/datalog.h>
#include <deltalog/deltalog.h>
#include <deltalog/live.h>
#include <deltalog/store.h>
#include <deltalog/subscribe.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *schema =
    "[{:db/ident :event/account :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :event/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]";
static const char *q_balance = "[:find ?acct (sum ?amt) :with ?ev"
                               " :where [?ev :event/account ?acct] [?ev :event/amount ?amt]]";

/* The events, loaded before any timing. */
typedef struct events {
    int64_t *account, *amount;
    size_t n, cap;
    int64_t max_account;
} events_t;

/* The balance subscriber's projection: balance per account (accounts are 0..max_account)
 * and which accounts have a row, updated from each delta. */
typedef struct proj {
    int64_t *balance;
    unsigned char *present;
    size_t n_accounts;
    int64_t rows;
    uint64_t deltas, diff_rows;
    uint64_t last_cb_ns; /* when the last DATA delta arrived */
    int bad;             /* a row that breaks the projection's invariants */
    /* Pipelined (--pipelined): when the delta of transaction tx_base + k arrived, in
     * cb_ns[k] (the callbacks run on the live database's thread, after the commit call
     * has returned or not). */
    uint64_t *cb_ns, tx_base;
    size_t n_cb;
} proj_t;

/* The overdraft subscriber's projection: per account, the number of its result rows with
 * a negative balance (0 or 1 once a delta is applied); the account is in the set when 1. */
typedef struct negset {
    int32_t *neg_rows;
    size_t n_accounts;
    int64_t n_negative;
    uint64_t changes;    /* accounts entering or leaving the set */
    uint64_t last_cb_ns; /* when the last DATA delta arrived */
    int bad;
} negset_t;

typedef struct env {
    dl_live_db_t *live; /* --pipelined: the store and the wiring below are its */
    dl_store_t *st;
    dl_db_t *db;
    dl_qsrcs_t *qs;
    dl_registry_t *reg;
    int apply_rc;
    uint64_t apply_ns; /* time inside dl_qsrcs_apply (the live query's run) */
} env_t;

static void die(const char *what, const dl_error_t *err) {
    fprintf(stderr, "bench_w3: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

static int read_event(json_t *line, void *ctx) {
    events_t *ev = ctx;
    if (ev->n == ev->cap) {
        ev->cap = ev->cap ? ev->cap * 2 : 1 << 16;
        ev->account = realloc(ev->account, ev->cap * sizeof *ev->account);
        ev->amount = realloc(ev->amount, ev->cap * sizeof *ev->amount);
        if (!ev->account || !ev->amount)
            die("out of memory", NULL);
    }
    json_t *a = json_object_get(line, "account"), *x = json_object_get(line, "amount");
    if (!json_is_integer(a) || !json_is_integer(x) || json_integer_value(a) < 0)
        return 1;
    ev->account[ev->n] = json_integer_value(a);
    ev->amount[ev->n] = json_integer_value(x);
    if (ev->account[ev->n] > ev->max_account)
        ev->max_account = ev->account[ev->n];
    ev->n++;
    return 0;
}

static int current_db(void *ctx, const struct dl_db **out_db, uint64_t *out_time,
                      size_t *out_n_time, dl_error_t *err) {
    (void)err;
    env_t *e = ctx;
    dl_db_unref(e->db);
    e->db = dl_store_db(e->st);
    *out_db = e->db;
    out_time[0] = dl_db_basis_tx(e->db);
    *out_n_time = 1;
    return 0;
}

/* Releases the snapshot current_db lent (it is only needed while a query is opened; a
 * snapshot held across commits pins every B-tree node the store replaces after it), then
 * feeds the commit to the live queries. */
static void on_commit(void *ctx, const dl_commit_t *c) {
    env_t *e = ctx;
    uint64_t t = bench_now_ns();
    dl_db_unref(e->db);
    e->db = NULL;
    if (dl_qsrcs_apply(e->qs, c, NULL) && !e->apply_rc)
        e->apply_rc = -1;
    e->apply_ns += bench_now_ns() - t;
}

/* One row (account, balance) with its diff into the projection: a set of one row per
 * account, so a retraction must remove the row there and an addition find none. */
static void proj_apply(proj_t *p, int64_t acct, int64_t bal, int64_t diff) {
    if (acct < 0 || (size_t)acct >= p->n_accounts || (diff != 1 && diff != -1)) {
        p->bad++;
        return;
    }
    size_t a = (size_t)acct;
    if (diff < 0) {
        if (!p->present[a] || p->balance[a] != bal)
            p->bad++;
        p->present[a] = 0;
        p->rows--;
    } else {
        if (p->present[a])
            p->bad++;
        p->present[a] = 1;
        p->balance[a] = bal;
        p->rows++;
    }
}

static void on_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    (void)sub;
    proj_t *p = udata;
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return;
    p->deltas++;
    size_t n = dl_delta_len(d);
    p->diff_rows += n;
    /* Retractions first, so that an account's old row is gone before its new one lands. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            int64_t diff = dl_delta_diff(d, i);
            if ((pass == 0) != (diff < 0))
                continue;
            const dl_value_t *row = dl_delta_row(d, i);
            if (row[0].type != DL_T_INT || row[1].type != DL_T_INT)
                p->bad++;
            else
                proj_apply(p, row[0].as.i, row[1].as.i, diff);
        }
    }
    p->last_cb_ns = bench_now_ns();
    if (p->cb_ns) {
        size_t nd;
        uint64_t tx = dl_delta_time(d, &nd)[0];
        if (tx >= p->tx_base && tx - p->tx_base < p->n_cb)
            p->cb_ns[tx - p->tx_base] = p->last_cb_ns;
    }
}

static void on_negative_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    (void)sub;
    negset_t *ns = udata;
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return;
    for (size_t i = 0; i < dl_delta_len(d); i++) {
        const dl_value_t *row = dl_delta_row(d, i);
        if (row[0].type != DL_T_INT || row[1].type != DL_T_INT || row[0].as.i < 0 ||
            (size_t)row[0].as.i >= ns->n_accounts) {
            ns->bad++;
            continue;
        }
        if (row[1].as.i >= 0)
            continue;
        size_t a = (size_t)row[0].as.i;
        int was = ns->neg_rows[a] > 0;
        ns->neg_rows[a] += (int32_t)dl_delta_diff(d, i);
        int is = ns->neg_rows[a] > 0;
        if (was != is) {
            ns->n_negative += is ? 1 : -1;
            ns->changes++;
        }
    }
    ns->last_cb_ns = bench_now_ns();
}

static uint64_t mix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The workload's checksums of a projection (balance per present account). */
typedef struct sums {
    int64_t accounts, total;
    uint64_t balances_xor;
    bench_checksum_t negative;
} sums_t;

static void sums_of(const int64_t *balance, const unsigned char *present, size_t n, sums_t *s) {
    memset(s, 0, sizeof *s);
    for (size_t a = 0; a < n; a++) {
        if (!present[a])
            continue;
        s->accounts++;
        s->total += balance[a];
        s->balances_xor ^= mix64(mix64((uint64_t)a) ^ (uint64_t)balance[a]);
        if (balance[a] < 0)
            bench_checksum_add(&s->negative, (int64_t)a);
    }
}

static bool sums_eq(const sums_t *x, const sums_t *y) {
    return x->accounts == y->accounts && x->total == y->total &&
           x->balances_xor == y->balances_xor && x->negative.count == y->negative.count &&
           x->negative.sum == y->negative.sum && x->negative.xor_ == y->negative.xor_;
}

static bool sums_match_expected(const sums_t *s, const json_t *exp) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)s->balances_xor);
    json_t *acc = json_object_get(exp, "accounts"), *tot = json_object_get(exp, "total"),
           *bx = json_object_get(exp, "balances_xor"), *neg = json_object_get(exp, "negative");
    return json_is_integer(acc) && json_integer_value(acc) == s->accounts && json_is_integer(tot) &&
           json_integer_value(tot) == s->total && json_is_string(bx) &&
           strcmp(json_string_value(bx), hex) == 0 && neg &&
           bench_checksum_matches(&s->negative, neg);
}

/* The one-shot compiled result of the balance query on the store's current state, as sums
 * (checks the live projection against a fresh evaluation). */
static int oneshot_sums(env_t *e, size_t n_accounts, sums_t *out) {
    dl_error_t err = {0};
    dl_db_t *db = dl_store_db(e->st);
    dl_query_t *q = NULL;
    dl_query_result_t *res = NULL;
    if (dl_query_parse(q_balance, strlen(q_balance), NULL, 0, db, &q, &err) ||
        dl_query_run(q, db, NULL, 0, &res, &err))
        die("one-shot query", &err);
    /* The result's canonical EDN: [[acct balance] ...]. Parse it back with jansson-free
     * scanning: pairs of integers inside brackets. */
    char *edn = dl_query_result_to_edn(res);
    int64_t *bal = calloc(n_accounts, sizeof *bal);
    unsigned char *present = calloc(n_accounts, 1);
    int rc = 0;
    const char *p = edn;
    while (p && *p) {
        long long a, b;
        int used = 0;
        if (sscanf(p, " [%lld %lld]%n", &a, &b, &used) == 2 && used > 0) {
            if (a < 0 || (size_t)a >= n_accounts || present[a])
                rc = -1;
            else {
                present[a] = 1;
                bal[a] = b;
            }
            p += used;
        } else
            p++;
    }
    sums_of(bal, present, n_accounts, out);
    free(bal);
    free(present);
    dl_free(edn);
    dl_query_result_free(res);
    dl_query_free(q);
    dl_db_unref(db);
    return rc;
}

/* CPU seconds (user + system) of this process so far: the machine is shared, so the
 * benchmark also reports events per CPU second, which other load does not dilute. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

typedef struct run_opts {
    const char *name; /* "w3_batched" ... */
    const char *durable_dir;
    size_t batch;
    size_t max_events;
    bool store_only; /* no listener, no subscription: the store's transaction path alone */
    /* The live queries fed on a thread of their own (dl_live_db_t pipelined): the store
     * commits the next transaction while the dataflow works on the last one. */
    bool pipelined;
} run_opts_t;

static void run(const events_t *ev, const json_t *expected, const run_opts_t *ro) {
    dl_error_t err = {0};
    env_t e = {0};
    char dir[4096] = "";
    if (ro->durable_dir) {
        snprintf(dir, sizeof dir, "%s/bench_w3.%ld", ro->durable_dir, (long)getpid());
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    if (ro->pipelined) {
        dl_live_db_options_t lo;
        dl_live_db_options_init(&lo);
        lo.dir = dir[0] ? dir : NULL;
        lo.sync_mode = DL_STORE_SYNC_BATCHED;
        lo.pipelined = true;
        if (dl_live_db_open(&lo, &e.live, &err))
            die("open live database", &err);
        e.st = dl_live_db_store(e.live);
    } else if (ro->durable_dir) {
        dl_store_options_t so = {0};
        so.sync_mode = DL_STORE_SYNC_BATCHED;
        if (dl_store_open(dir, &so, &e.st, &err))
            die("open durable store", &err);
    } else if (dl_store_open_memory(&e.st, &err))
        die("open store", &err);
    if (dl_store_transact_edn(e.st, schema, strlen(schema), NULL, &err))
        die("schema", &err);
    dl_attr_info_t ai_acct, ai_amt;
    e.db = dl_store_db(e.st);
    if (dl_db_attr(e.db, "event/account", &ai_acct, &err) ||
        dl_db_attr(e.db, "event/amount", &ai_amt, &err))
        die("schema lookup", &err);
    /* a snapshot held across commits pins every node the store replaces after it */
    dl_db_unref(e.db);
    e.db = NULL;
    dl_qsrc_env_t qe = {current_db, &e, NULL};
    if (!e.live &&
        (dl_qsrcs_new(&qe, &e.qs, &err) || dl_registry_new(dl_qsrcs_vtable(), e.qs, &e.reg, &err)))
        die("registry", &err);
    int lid;
    if (!e.live && !ro->store_only && dl_store_listen(e.st, on_commit, &e, &lid, &err))
        die("listen", &err);

    proj_t p = {0};
    p.n_accounts = (size_t)ev->max_account + 1;
    p.balance = calloc(p.n_accounts, sizeof *p.balance);
    p.present = calloc(p.n_accounts, 1);
    negset_t ns = {0};
    ns.n_accounts = p.n_accounts;
    ns.neg_rows = calloc(ns.n_accounts, sizeof *ns.neg_rows);
    if (!p.balance || !p.present || !ns.neg_rows)
        die("out of memory", NULL);
    dl_sub_options_t so;
    dl_sub_options_init(&so);
    so.on_delta = on_delta;
    so.udata = &p;
    dl_sub_t *sub = NULL, *sub_neg = NULL;
    uint64_t t_init = bench_now_ns();
    if (!ro->store_only) {
        if (e.live ? dl_live_db_subscribe(e.live, q_balance, NULL, 0, &so, &sub, &err)
                   : dl_subscribe(e.reg, q_balance, NULL, 0, &so, &sub, &err))
            die("subscribe", &err);
        so.on_delta = on_negative_delta;
        so.udata = &ns;
        if (e.live ? dl_live_db_subscribe(e.live, q_balance, NULL, 0, &so, &sub_neg, &err)
                   : dl_subscribe(e.reg, q_balance, NULL, 0, &so, &sub_neg, &err))
            die("subscribe", &err);
        dl_sub_stats_t sst;
        dl_sub_stats(sub_neg, &sst);
        if (sst.shared_with != 2)
            die("the two projections do not share one live query", NULL);
    }
    double init_ms = (double)(bench_now_ns() - t_init) / 1e6;

    size_t n = ro->max_events && ro->max_events < ev->n ? ro->max_events : ev->n;
    size_t batch = ro->batch ? ro->batch : 1;
    dl_tx_op_t *ops = calloc(2 * batch, sizeof *ops);
    /* Pipelined: per transaction, when it was submitted (tx_of[k]: its number) and when
     * its diff arrived (p.cb_ns, indexed from the first one's number). */
    size_t n_batches = (n + batch - 1) / batch;
    uint64_t *submit_ns = NULL, *tx_of = NULL;
    if (e.live) {
        dl_db_t *now = dl_store_db(e.st);
        p.tx_base = dl_db_basis_tx(now) + 1;
        dl_db_unref(now);
        p.n_cb = n_batches;
        p.cb_ns = calloc(n_batches + 1, sizeof *p.cb_ns);
        submit_ns = calloc(n_batches + 1, sizeof *submit_ns);
        tx_of = calloc(n_batches + 1, sizeof *tx_of);
        if (!p.cb_ns || !submit_ns || !tx_of)
            die("out of memory", NULL);
    }
    bench_samples_t lat = {0};
    uint64_t n_tx = 0, no_diff = 0;
    e.apply_ns = 0;
    uint64_t pump_ns = 0, store_ns = 0;
    dl_alloc_stats_t mem0;
    dl_alloc_stats(&mem0);
    double cpu0 = cpu_seconds();
    uint64_t t0 = bench_now_ns();
    /* Throughput per tenth of the events: shows whether the cost grows with the state. */
    double tenth_rate[10] = {0};
    size_t tenth = 0, tenth_start_i = 0;
    uint64_t tenth_start_ns = t0;
    for (size_t i = 0; i < n; i += batch) {
        size_t k = n - i < batch ? n - i : batch;
        for (size_t j = 0; j < k; j++) {
            dl_tx_op_t *o = &ops[2 * j];
            o[0].op = o[1].op = DL_OP_ADD;
            o[0].e = o[1].e = dl_value_int(-(int64_t)(j + 1)); /* the event's tempid */
            o[0].a = dl_value_int(ai_acct.id);
            o[0].v = dl_value_int(ev->account[i + j]);
            o[1].a = dl_value_int(ai_amt.id);
            o[1].v = dl_value_int(ev->amount[i + j]);
        }
        uint64_t ts = bench_now_ns(), apply0 = e.apply_ns;
        if (e.live) { /* the diffs arrive on the live database's thread, later */
            dl_tx_report_t rep;
            submit_ns[n_tx] = ts;
            if (dl_store_transact(e.st, ops, 2 * k, NULL, 0, &rep, &err))
                die("transact", &err);
            tx_of[n_tx++] = rep.tx;
            dl_tx_report_fini(&rep);
            continue;
        }
        p.last_cb_ns = ns.last_cb_ns = 0;
        if (dl_store_transact(e.st, ops, 2 * k, NULL, 0, NULL, &err))
            die("transact", &err);
        uint64_t tp = bench_now_ns();
        /* the store's part: the transaction minus the listener's run of the live query */
        store_ns += (tp - ts) - (e.apply_ns - apply0);
        if (!ro->store_only && dl_registry_pump(e.reg, &err))
            die("pump", &err);
        pump_ns += bench_now_ns() - tp;
        if (e.apply_rc)
            die("live query apply failed", NULL);
        uint64_t last = p.last_cb_ns > ns.last_cb_ns ? p.last_cb_ns : ns.last_cb_ns;
        if (ro->store_only)
            bench_samples_add(&lat, tp - ts); /* no projection: the commit alone */
        else if (last)
            bench_samples_add(&lat, last - ts);
        else
            no_diff++;
        n_tx++;
        size_t done = i + k;
        if (tenth < 10 && done * 10 >= (tenth + 1) * n) {
            uint64_t now = bench_now_ns();
            tenth_rate[tenth++] =
                (double)(done - tenth_start_i) / ((double)(now - tenth_start_ns) / 1e9);
            tenth_start_i = done;
            tenth_start_ns = now;
        }
    }
    if (e.live) {
        dl_live_db_sync(e.live); /* the projection is current: every diff delivered */
        for (size_t k = 0; k < n_tx; k++) {
            uint64_t at = tx_of[k] >= p.tx_base && tx_of[k] - p.tx_base < p.n_cb
                              ? p.cb_ns[tx_of[k] - p.tx_base]
                              : 0;
            if (at)
                bench_samples_add(&lat, at - submit_ns[k]);
            else
                no_diff++;
        }
    }
    uint64_t t1 = bench_now_ns();
    double secs = (double)(t1 - t0) / 1e9, cpu = cpu_seconds() - cpu0;
    dl_alloc_stats_t mem;
    dl_alloc_stats(&mem); /* the library's live heap with the projection current */

    /* Checks: the subscriber's projection against the generator's checksums (a full run)
     * or the events' own sums (a partial run), and against the one-shot compiled result.
     * A store-only run has no projection: the one-shot result over the store is checked. */
    sums_t got, want, once;
    bool oneshot_ok = oneshot_sums(&e, p.n_accounts, &once) == 0;
    if (ro->store_only)
        got = once;
    else
        sums_of(p.balance, p.present, p.n_accounts, &got);
    oneshot_ok = oneshot_ok && sums_eq(&got, &once);
    bool checksum_ok;
    if (n == ev->n) {
        checksum_ok = sums_match_expected(&got, expected);
    } else {
        int64_t *b = calloc(p.n_accounts, sizeof *b);
        unsigned char *pr = calloc(p.n_accounts, 1);
        for (size_t i = 0; i < n; i++) {
            b[ev->account[i]] += ev->amount[i];
            pr[ev->account[i]] = 1;
        }
        sums_of(b, pr, p.n_accounts, &want);
        checksum_ok = sums_eq(&got, &want);
        free(b);
        free(pr);
    }
    /* The overdraft subscriber's set must be the accounts whose projected balance is < 0;
     * the negative checksum reported (and compared with the generator's) is its own. */
    bool negative_ok = p.bad == 0 && ns.bad == 0;
    bench_checksum_t negck = {0};
    for (size_t a = 0; a < ns.n_accounts; a++) {
        if ((ns.neg_rows[a] > 0) != (p.present[a] && p.balance[a] < 0) || ns.neg_rows[a] < 0 ||
            ns.neg_rows[a] > 1)
            negative_ok = false;
        if (ns.neg_rows[a] > 0)
            bench_checksum_add(&negck, (int64_t)a);
    }
    negative_ok = negative_ok && (uint64_t)ns.n_negative == negck.count &&
                  negck.count == got.negative.count && negck.sum == got.negative.sum &&
                  negck.xor_ == got.negative.xor_;
    if (ro->store_only)
        negative_ok = true; /* no subscriber: nothing to compare */

    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)got.balances_xor);
    json_t *params = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b}", "via",
                               ro->pipelined ? "inprocess pipelined" : "inprocess", "store",
                               ro->durable_dir ? "durable (sync batched)" : "memory", "events",
                               (json_int_t)n, "batch", (json_int_t)batch, "accounts",
                               (json_int_t)got.accounts, "full_run", n == ev->n);
    json_t *out = json_pack(
        "{s:s, s:o, s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:f, s:I, s:I, s:I, s:f, s:f, s:{s:I, "
        "s:I, s:s, s:s}, s:b, s:b, s:b}",
        "bench", ro->name, "params", params, "init_ms", init_ms, "p50_us",
        bench_samples_pct_us(&lat, 0.5), "p99_us", bench_samples_pct_us(&lat, 0.99),
        "throughput_per_s", (double)n / secs, "tx_per_s", (double)n_tx / secs, "transactions",
        (json_int_t)n_tx, "seconds", secs, "apply_share", (double)e.apply_ns / (double)(t1 - t0),
        "pump_share", (double)pump_ns / (double)(t1 - t0), "deltas", (json_int_t)p.deltas,
        "diff_rows", (json_int_t)p.diff_rows, "tx_without_diff", (json_int_t)no_diff, "peak_rss_mb",
        bench_peak_rss_mb(), "live_heap_mb", (double)mem.live_bytes / 1048576.0, "checksum",
        "accounts", (json_int_t)got.accounts, "total", (json_int_t)got.total, "balances_xor", hex,
        "negative", bench_checksum_str(&got.negative), "checksum_ok", checksum_ok, "oneshot_equal",
        oneshot_ok, "negative_set_ok", negative_ok);
    json_t *tenths = json_array();
    for (size_t t = 0; t < tenth; t++)
        json_array_append_new(tenths, json_real(tenth_rate[t]));
    json_object_set_new(out, "throughput_by_tenth", tenths);
    json_object_set_new(out, "store_share", json_real((double)store_ns / (double)(t1 - t0)));
    json_object_set_new(out, "store_us_per_tx",
                        json_real(n_tx ? (double)store_ns / 1e3 / (double)n_tx : 0));
    json_object_set_new(out, "store_events_per_s",
                        json_real(store_ns ? (double)n / ((double)store_ns / 1e9) : 0));
    /* library allocations per transaction (store, live query and delivery together) */
    json_object_set_new(
        out, "allocs_per_tx",
        json_real(n_tx ? (double)(mem.total_allocs - mem0.total_allocs) / (double)n_tx : 0));
    if (ro->store_only)
        json_object_set_new(out, "projection",
                            json_string("none: the store alone (checksum of a one-shot query)"));
    json_object_set_new(out, "cpu_seconds", json_real(cpu));
    json_object_set_new(out, "events_per_cpu_s", json_real(cpu > 0 ? (double)n / cpu : 0));
    bench_emit(out);

    if (e.live) {
        dl_live_db_unsubscribe(e.live, sub);
        dl_live_db_unsubscribe(e.live, sub_neg);
        dl_live_db_free(e.live); /* and its store */
    } else {
        if (sub)
            dl_unsubscribe(e.reg, sub);
        if (sub_neg)
            dl_unsubscribe(e.reg, sub_neg);
        dl_registry_free(e.reg);
        dl_qsrcs_free(e.qs);
        dl_db_unref(e.db);
        dl_store_close(e.st);
    }
    free(p.cb_ns);
    free(submit_ns);
    free(tx_of);
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    bench_samples_free(&lat);
    free(ops);
    free(p.balance);
    free(p.present);
    free(ns.neg_rows);
    if (!checksum_ok || !oneshot_ok || !negative_ok) {
        fprintf(stderr,
                "bench_w3: %s: the projection does not match (checksum_ok %d, "
                "oneshot_equal %d, negative_set_ok %d)\n",
                ro->name, checksum_ok, oneshot_ok, negative_ok);
        exit(1);
    }
}

/* ---- --via server ------------------------------------------------------------------------ */

/* One diff row of the balance subscription: [[account, balance], diff]. */
typedef struct srow {
    int64_t acct, bal, diff;
} srow_t;

typedef struct srows {
    srow_t *v;
    size_t n, cap;
} srows_t;

static void srows_push(srows_t *r, int64_t acct, int64_t bal, int64_t diff) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 1024;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            die("out of memory", NULL);
    }
    r->v[r->n++] = (srow_t){acct, bal, diff};
}

/* Parses a decimal int64 at *p (optional '-'); false when there is none. */
static bool scan_i64(const char **p, int64_t *out) {
    const char *q = *p;
    bool neg = *q == '-';
    if (neg)
        q++;
    if (*q < '0' || *q > '9')
        return false;
    uint64_t x = 0;
    while (*q >= '0' && *q <= '9')
        x = x * 10 + (uint64_t)(*q++ - '0');
    *out = neg ? -(int64_t)x : (int64_t)x;
    *p = q;
    return true;
}

static bool scan_lit(const char **p, const char *lit) {
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/* The two kinds of lines this benchmark gets, read by hand (the shapes are fixed by
 * docs/protocol.md; anything else goes through jansson):
 *   {"id":I,"ok":true,"t":T,...}                          a transaction's reply
 *   {"sub":S,"t":T,"time":[T],"diff":[[[A,B],D],...]...}  a subscription message */
static bool fast_reply(const char *line, int64_t *id, int64_t *t) {
    const char *p = line;
    return scan_lit(&p, "{\"id\":") && scan_i64(&p, id) && scan_lit(&p, ",\"ok\":true,\"t\":") &&
           scan_i64(&p, t);
}

static bool fast_diff(const char *line, int64_t sub, int64_t *t, srows_t *rows) {
    const char *p = line;
    int64_t s, t2;
    if (!scan_lit(&p, "{\"sub\":") || !scan_i64(&p, &s) || s != sub || !scan_lit(&p, ",\"t\":") ||
        !scan_i64(&p, t) || !scan_lit(&p, ",\"time\":[") || !scan_i64(&p, &t2) || t2 != *t ||
        !scan_lit(&p, "],\"diff\":["))
        return false;
    size_t n0 = rows->n;
    if (*p == ']')
        return true;
    for (;;) {
        int64_t a, b, d;
        if (!scan_lit(&p, "[[") || !scan_i64(&p, &a) || !scan_lit(&p, ",") || !scan_i64(&p, &b) ||
            !scan_lit(&p, "],") || !scan_i64(&p, &d) || !scan_lit(&p, "]")) {
            rows->n = n0;
            return false;
        }
        srows_push(rows, a, b, d);
        if (*p == ']')
            return true;
        if (*p++ != ',') {
            rows->n = n0;
            return false;
        }
    }
}

/* The client's side of one run: the projection kept from the diffs, and per transaction
 * its send time, its t (from the reply) and whether it must change the result. */
typedef struct sclient {
    bench_srv_t srv;
    int64_t sub;
    proj_t p;
    srows_t rows;
    uint64_t *send_ns;
    int64_t *t_of;
    unsigned char *changes;
    size_t n_sent, n_replied, n_settled;
    int64_t last_diff_t;
    uint64_t diff_msgs;
    bench_samples_t lat;
} sclient_t;

static void sclient_die(sclient_t *c, const char *what, const dl_error_t *err) {
    fprintf(stderr, "bench_w3: %s: %s\n", what, err ? err->message : "");
    bench_srv_stop(&c->srv);
    exit(1);
}

/* Applies the rows of one subscription message to the projection (retractions first, as
 * on_delta does), then settles every replied transaction whose t it covers. */
static void sclient_take_diff(sclient_t *c, int64_t t) {
    proj_t *p = &c->p;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < c->rows.n; i++) {
            const srow_t *r = &c->rows.v[i];
            if ((pass == 0) != (r->diff < 0))
                continue;
            proj_apply(p, r->acct, r->bal, r->diff);
        }
    p->diff_rows += c->rows.n;
    p->deltas++;
    c->rows.n = 0;
    if (t <= c->last_diff_t)
        p->bad++; /* times strictly increase */
    c->last_diff_t = t;
    uint64_t now = bench_now_ns();
    while (c->n_settled < c->n_replied && c->t_of[c->n_settled] <= t) {
        if (c->changes[c->n_settled])
            bench_samples_add(&c->lat, now - c->send_ns[c->n_settled]);
        c->n_settled++;
    }
}

/* Reads and handles one line: a reply (to the oldest unanswered transaction) or a
 * subscription message. */
static void sclient_read_one(sclient_t *c, int timeout_ms) {
    dl_error_t err = {0};
    size_t len;
    char *line = bench_srv_line(&c->srv, &len, timeout_ms, &err);
    if (!line)
        sclient_die(c, "reading from the server", &err);
    int64_t id, t;
    if (fast_reply(line, &id, &t)) {
        if (id != (int64_t)c->n_replied)
            sclient_die(c, "a reply out of order", NULL);
        c->t_of[c->n_replied++] = t;
        return;
    }
    if (fast_diff(line, c->sub, &t, &c->rows)) {
        c->diff_msgs++;
        sclient_take_diff(c, t);
        return;
    }
    /* anything else: an error reply, an end message, or a shape the scanner missed */
    json_error_t je;
    json_t *j = json_loadb(line, len, 0, &je);
    if (!j)
        sclient_die(c, "the server sent a line that is not JSON", NULL);
    if (json_object_get(j, "ok")) {
        if (!json_is_true(json_object_get(j, "ok"))) {
            json_t *e = json_object_get(j, "error");
            fprintf(stderr, "bench_w3: transaction %lld rejected: %s: %s\n",
                    (long long)json_integer_value(json_object_get(j, "id")),
                    json_string_value(json_object_get(e, "code")),
                    json_string_value(json_object_get(e, "message")));
            json_decref(j);
            sclient_die(c, "the server rejected a transaction", NULL);
        }
        if (json_integer_value(json_object_get(j, "id")) != (int64_t)c->n_replied)
            sclient_die(c, "a reply out of order", NULL);
        c->t_of[c->n_replied++] = json_integer_value(json_object_get(j, "t"));
    } else if (json_object_get(j, "end")) {
        json_decref(j);
        sclient_die(c, "the subscription ended", NULL);
    } else {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(j, "diff"), i, d) {
            json_t *row = json_array_get(d, 0);
            srows_push(&c->rows, json_integer_value(json_array_get(row, 0)),
                       json_integer_value(json_array_get(row, 1)),
                       json_integer_value(json_array_get(d, 1)));
        }
        c->diff_msgs++;
        sclient_take_diff(c, json_integer_value(json_object_get(j, "t")));
    }
    json_decref(j);
}

/* Sends a request line built by jansson and returns its reply (subscription lines that
 * come first are handled). Only for the setup requests, whose ids are negative. */
static json_t *sclient_request(sclient_t *c, json_t *req) {
    dl_error_t err = {0};
    char *line = json_dumps(req, JSON_COMPACT);
    json_int_t id = json_integer_value(json_object_get(req, "id"));
    json_decref(req);
    if (!line)
        sclient_die(c, "encoding a request", NULL);
    size_t n = strlen(line);
    line[n] = '\n';
    if (bench_srv_send(&c->srv, line, n + 1, &err))
        sclient_die(c, "send", &err);
    free(line);
    for (;;) {
        size_t len;
        char *l = bench_srv_line(&c->srv, &len, 60000, &err);
        if (!l)
            sclient_die(c, "reading a reply", &err);
        json_error_t je;
        json_t *j = json_loadb(l, len, 0, &je);
        if (!j)
            sclient_die(c, "the server sent a line that is not JSON", NULL);
        if (json_integer_value(json_object_get(j, "id")) == id && json_object_get(j, "ok")) {
            if (!json_is_true(json_object_get(j, "ok"))) {
                json_t *e = json_object_get(j, "error");
                fprintf(stderr, "bench_w3: request %lld failed: %s\n", (long long)id,
                        json_string_value(json_object_get(e, "message")));
                sclient_die(c, "a setup request failed", NULL);
            }
            return j;
        }
        json_decref(j); /* e.g. the snapshot of an earlier subscription */
    }
}

/* The one-shot result of the balance query over the wire, as sums. */
static int server_oneshot(sclient_t *c, sums_t *out) {
    json_t *j =
        sclient_request(c, json_pack("{s:s, s:i, s:s}", "op", "query", "id", -3, "q", q_balance));
    size_t n = c->p.n_accounts, i;
    int64_t *bal = calloc(n, sizeof *bal);
    unsigned char *present = calloc(n, 1);
    int rc = 0;
    json_t *row;
    json_array_foreach(json_object_get(j, "rows"), i, row) {
        int64_t a = json_integer_value(json_array_get(row, 0));
        if (a < 0 || (size_t)a >= n || present[a]) {
            rc = -1;
            continue;
        }
        present[a] = 1;
        bal[a] = json_integer_value(json_array_get(row, 1));
    }
    sums_of(bal, present, n, out);
    free(bal);
    free(present);
    json_decref(j);
    return rc;
}

typedef struct srv_opts {
    const char *path; /* the deltalog binary (NULL: next to this one) */
    size_t window;    /* transactions in flight */
    bool edn;         /* transaction data as EDN text (else the JSON form) */
} srv_opts_t;

/* Decimal text of x at p; returns the end. */
static char *put_i64(char *p, int64_t x) {
    char tmp[24];
    int n = 0;
    uint64_t u = x < 0 ? 0 - (uint64_t)x : (uint64_t)x;
    do
        tmp[n++] = (char)('0' + u % 10);
    while (u /= 10);
    if (x < 0)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* Appends a transact request for events [i, i+k) to b: one map per event, a new entity
 * each, as JSON transaction data ({"event/account":A,"event/amount":X}) or, with edn, as
 * an EDN string ({:event/account A :event/amount X}). */
static void put_request(dl_buf_t *b, int64_t id, const events_t *ev, size_t i, size_t k, bool edn) {
    static const char jpre[] = "{\"event/account\":", jmid[] = ",\"event/amount\":";
    static const char epre[] = "{:event/account ", emid[] = " :event/amount ";
    const char *pre = edn ? epre : jpre, *mid = edn ? emid : jmid;
    size_t npre = edn ? sizeof epre - 1 : sizeof jpre - 1,
           nmid = edn ? sizeof emid - 1 : sizeof jmid - 1;
    if (!dl__buf_reserve(b, 64 + k * (npre + nmid + 48)))
        return;
    char *p = b->data + b->len;
    p += sprintf(p, "{\"op\":\"transact\",\"id\":%lld,\"tx\":%s", (long long)id, edn ? "\"[" : "[");
    for (size_t j = 0; j < k; j++) {
        if (j)
            *p++ = edn ? ' ' : ',';
        memcpy(p, pre, npre);
        p = put_i64(p + npre, ev->account[i + j]);
        memcpy(p, mid, nmid);
        p = put_i64(p + nmid, ev->amount[i + j]);
        *p++ = '}';
    }
    if (edn)
        *p++ = ']', *p++ = '"';
    else
        *p++ = ']';
    memcpy(p, "}\n", 2);
    b->len = (size_t)(p + 2 - b->data);
}

static void run_server(const events_t *ev, const json_t *expected, const run_opts_t *ro,
                       const srv_opts_t *so) {
    dl_error_t err = {0};
    sclient_t c;
    memset(&c, 0, sizeof c);
    c.last_diff_t = -1;
    char dir[4096] = "";
    const char *args[8] = {"--memory", NULL};
    if (ro->durable_dir) {
        snprintf(dir, sizeof dir, "%s/bench_w3_srv.%ld", ro->durable_dir, (long)getpid());
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        args[0] = "--data";
        args[1] = dir;
        args[2] = "--sync";
        args[3] = "batched";
        args[4] = NULL;
    }
    uint64_t t_init = bench_now_ns();
    if (bench_srv_start(&c.srv, so->path, args, &err))
        sclient_die(&c, "starting the server", &err);
    json_decref(sclient_request(
        &c, json_pack("{s:s, s:i, s:s}", "op", "transact", "id", -1, "tx", schema)));
    json_t *j = sclient_request(
        &c, json_pack("{s:s, s:i, s:s}", "op", "subscribe", "id", -2, "q", q_balance));
    c.sub = json_integer_value(json_object_get(j, "sub"));
    json_decref(j);
    double init_ms = (double)(bench_now_ns() - t_init) / 1e6;

    size_t n = ro->max_events && ro->max_events < ev->n ? ro->max_events : ev->n;
    size_t batch = ro->batch ? ro->batch : 1;
    size_t n_tx = (n + batch - 1) / batch;
    c.p.n_accounts = (size_t)ev->max_account + 1;
    c.p.balance = calloc(c.p.n_accounts, sizeof *c.p.balance);
    c.p.present = calloc(c.p.n_accounts, 1);
    c.send_ns = calloc(n_tx + 1, sizeof *c.send_ns);
    c.t_of = calloc(n_tx + 1, sizeof *c.t_of);
    c.changes = calloc(n_tx + 1, 1);
    /* Which transactions must change the result: one that gives an account its first
     * event (a new row), or changes some account's sum. Computed from the events. */
    unsigned char *seen = calloc(c.p.n_accounts, 1);
    int64_t *net = calloc(c.p.n_accounts, sizeof *net);
    if (!c.p.balance || !c.p.present || !c.send_ns || !c.t_of || !c.changes || !seen || !net)
        die("out of memory", NULL);
    size_t last_changing = SIZE_MAX;
    for (size_t x = 0; x < n_tx; x++) {
        size_t i0 = x * batch, i1 = i0 + batch < n ? i0 + batch : n;
        bool ch = false;
        for (size_t i = i0; i < i1; i++) {
            ch = ch || !seen[ev->account[i]];
            seen[ev->account[i]] = 1;
            net[ev->account[i]] += ev->amount[i];
        }
        for (size_t i = i0; i < i1; i++) {
            ch = ch || net[ev->account[i]] != 0;
            net[ev->account[i]] = 0;
        }
        c.changes[x] = ch;
        if (ch)
            last_changing = x;
    }
    free(seen);
    free(net);

    /* Before the timed part: the snapshot of the empty result. */
    while (c.last_diff_t < 0)
        sclient_read_one(&c, 60000);
    c.p.deltas = c.p.diff_rows = 0;
    c.diff_msgs = 0;

    dl_buf_t b;
    dl__buf_init(&b);
    size_t window = so->window ? so->window : 1;
    double cpu0 = cpu_seconds(), scpu0 = bench_srv_cpu_seconds(&c.srv);
    uint64_t t0 = bench_now_ns();
    for (size_t x = 0; x < n_tx; x++) {
        size_t i0 = x * batch, k = n - i0 < batch ? n - i0 : batch;
        b.len = 0;
        put_request(&b, (int64_t)x, ev, i0, k, so->edn);
        if (b.oom)
            die("out of memory", NULL);
        c.send_ns[x] = bench_now_ns();
        if (bench_srv_send(&c.srv, b.data, b.len, &err))
            sclient_die(&c, "send", &err);
        c.n_sent++;
        /* keep at most `window` unanswered; take whatever already came without waiting */
        while (c.n_sent - c.n_replied >= window || bench_srv_has_line(&c.srv))
            sclient_read_one(&c, 60000);
        if (c.n_sent - c.n_replied > 0 && bench_srv_fill(&c.srv, 0, &err) < 0)
            sclient_die(&c, "reading", &err);
    }
    /* every reply, then the diff of the last transaction that changes the result */
    while (c.n_replied < n_tx)
        sclient_read_one(&c, 60000);
    while (last_changing != SIZE_MAX && c.last_diff_t < c.t_of[last_changing])
        sclient_read_one(&c, 60000);
    uint64_t t1 = bench_now_ns();
    double secs = (double)(t1 - t0) / 1e9, cpu = cpu_seconds() - cpu0,
           scpu = bench_srv_cpu_seconds(&c.srv) - scpu0;
    dl__buf_fini(&b);

    sums_t got, want, once;
    sums_of(c.p.balance, c.p.present, c.p.n_accounts, &got);
    bool checksum_ok;
    if (n == ev->n) {
        checksum_ok = sums_match_expected(&got, expected);
    } else {
        int64_t *bb = calloc(c.p.n_accounts, sizeof *bb);
        unsigned char *pr = calloc(c.p.n_accounts, 1);
        for (size_t i = 0; i < n; i++) {
            bb[ev->account[i]] += ev->amount[i];
            pr[ev->account[i]] = 1;
        }
        sums_of(bb, pr, c.p.n_accounts, &want);
        checksum_ok = sums_eq(&got, &want);
        free(bb);
        free(pr);
    }
    bool oneshot_ok = server_oneshot(&c, &once) == 0 && sums_eq(&got, &once);
    bool diffs_ok = c.p.bad == 0;
    double srv_rss = bench_srv_peak_rss_mb(&c.srv);

    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)got.balances_xor);
    json_t *params =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "via", "server", "tx_form",
                  so->edn ? "edn" : "json", "store",
                  ro->durable_dir ? "durable (serve --sync batched)" : "memory", "events",
                  (json_int_t)n, "batch", (json_int_t)batch, "window", (json_int_t)window,
                  "accounts", (json_int_t)got.accounts, "full_run", n == ev->n);
    json_t *out = json_pack(
        "{s:s, s:o, s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:I, s:I, s:f, s:{s:I, s:I, s:s, s:s}, "
        "s:b, s:b, s:b}",
        "bench", ro->name, "params", params, "init_ms", init_ms, "p50_us",
        bench_samples_pct_us(&c.lat, 0.5), "p99_us", bench_samples_pct_us(&c.lat, 0.99),
        "throughput_per_s", (double)n / secs, "tx_per_s", (double)n_tx / secs, "transactions",
        (json_int_t)n_tx, "seconds", secs, "diff_messages", (json_int_t)c.diff_msgs, "diff_rows",
        (json_int_t)c.p.diff_rows, "server_peak_rss_mb", srv_rss, "checksum", "accounts",
        (json_int_t)got.accounts, "total", (json_int_t)got.total, "balances_xor", hex, "negative",
        bench_checksum_str(&got.negative), "checksum_ok", checksum_ok, "oneshot_equal", oneshot_ok,
        "diffs_consistent", diffs_ok);
    json_object_set_new(out, "latency",
                        json_string("send of a transaction to the diff carrying its t, with "
                                    "`window` transactions in flight"));
    json_object_set_new(out, "peak_rss_mb", json_real(bench_peak_rss_mb())); /* the client's */
    json_object_set_new(out, "cpu_seconds", json_real(cpu));
    json_object_set_new(out, "server_cpu_seconds", json_real(scpu));
    json_object_set_new(out, "events_per_cpu_s",
                        json_real(cpu + scpu > 0 ? (double)n / (cpu + scpu) : 0));
    bench_emit(out);

    int status = bench_srv_stop(&c.srv);
    if (dir[0])
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(c.p.balance);
    free(c.p.present);
    free(c.send_ns);
    free(c.t_of);
    free(c.changes);
    free(c.rows.v);
    bench_samples_free(&c.lat);
    if (!checksum_ok || !oneshot_ok || !diffs_ok || status != 0) {
        fprintf(stderr,
                "bench_w3: %s: the projection does not match (checksum_ok %d, oneshot_equal %d, "
                "diffs_consistent %d, server exit status %d)\n",
                ro->name, checksum_ok, oneshot_ok, diffs_ok, status);
        exit(1);
    }
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

int main(int argc, char **argv) {
    const char *data = bench_arg(argc, argv, "data", NULL);
    const char *via = bench_arg(argc, argv, "via", "inprocess");
    const char *durable = bench_arg(argc, argv, "durable", NULL);
    const char *only = bench_arg(argc, argv, "only", NULL);
    bool store_only = bench_flag(argc, argv, "store-only");
    bool pipelined = bench_flag(argc, argv, "pipelined");
    size_t batch = (size_t)strtoull(bench_arg(argc, argv, "batch", "1000"), NULL, 10);
    size_t single = (size_t)strtoull(bench_arg(argc, argv, "single-events", "0"), NULL, 10);
    size_t limit = (size_t)strtoull(bench_arg(argc, argv, "events", "0"), NULL, 10);
    if (limit && (!single || single > limit))
        single = limit;
    const char *gen = "python3 ../shared/bench/gen.py w3 --events 1000000 --accounts 10000 "
                      "--out /tmp/w3; bench_w3 --data /tmp/w3";
    bool server = strcmp(via, "server") == 0;
    if (!server && strcmp(via, "inprocess") != 0) {
        fprintf(stderr, "bench_w3: --via inprocess or --via server\n");
        return 2;
    }
    if (server && (store_only || pipelined)) {
        fprintf(stderr, "bench_w3: --store-only and --pipelined are for --via inprocess\n");
        return 2;
    }
    if (store_only && pipelined) {
        fprintf(stderr, "bench_w3: --store-only has no live queries to pipeline\n");
        return 2;
    }
    srv_opts_t sopt = {bench_arg(argc, argv, "server", NULL), 0,
                       strcmp(bench_arg(argc, argv, "tx-form", "json"), "edn") == 0};
    size_t window = (size_t)strtoull(bench_arg(argc, argv, "window", "0"), NULL, 10);
    char events_path[4096] = "", meta_path[4096] = "";
    if (data) {
        const char *sub[] = {"", "/w3"};
        for (int i = 0; i < 2 && !events_path[0]; i++) {
            snprintf(events_path, sizeof events_path, "%s%s/w3.events.jsonl", data, sub[i]);
            snprintf(meta_path, sizeof meta_path, "%s%s/w3.meta.json", data, sub[i]);
            if (!file_exists(events_path) || !file_exists(meta_path))
                events_path[0] = 0;
        }
    }
    if (!events_path[0]) {
        char msg[512];
        snprintf(msg, sizeof msg,
                 "no W3 data (w3.events.jsonl and w3.meta.json) under --data; "
                 "make it with: %s",
                 gen);
        bench_emit(json_pack("{s:s, s:s}", "bench", "w3", "skipped", msg));
        return 0;
    }
    json_t *meta = bench_load_json(meta_path);
    json_t *expected = meta ? json_object_get(meta, "expected") : NULL;
    if (!expected)
        die("w3.meta.json has no \"expected\"", NULL);
    events_t ev = {0};
    if (bench_read_jsonl(events_path, read_event, &ev) < 0 || ev.n == 0)
        die("cannot read the events", NULL);
    if (batch == 0)
        batch = 1;

    for (int d = durable ? 1 : 0; d < (durable ? 2 : 1); d++) { /* --durable: only those runs */
        const char *dd = d ? durable : NULL;
        for (int single_run = 0; single_run < 2; single_run++) {
            const char *kind = single_run ? "single" : "batched";
            if (only && strcmp(only, kind) != 0)
                continue;
            char name[64];
            snprintf(name, sizeof name, "w3_%s%s%s%s%s", server ? "server_" : "",
                     store_only ? "store_" : "", pipelined ? "pipelined_" : "", d ? "durable_" : "",
                     kind);
            run_opts_t ro = {
                name,       dd,       single_run ? 1 : batch, single_run ? single : limit,
                store_only, pipelined};
            if (server) {
                sopt.window = window ? window : single_run ? 256 : 16;
                run_server(&ev, expected, &ro, &sopt);
            } else {
                run(&ev, expected, &ro);
            }
        }
    }
    json_decref(meta);
    free(ev.account);
    free(ev.amount);
    return 0;
}
