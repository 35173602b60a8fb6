/*
 * demo.c: `deltalog demo`, the README's first command. It opens the data directory (or an
 * in-memory store), serves protocol v1 over TCP, serves the dashboard page and protocol v1
 * over WebSocket (http.c), loads the W2 sample dataset once (customers and orders, from the
 * shared generator ../shared/bench/gen.py, or a deterministic built-in generator with the
 * same schema when it is missing), and runs a background writer that keeps transacting
 * realistic changes: new orders, status changes, cancellations and deletions.
 *
 * The loader and the writer are a protocol connection of their own (an external transport
 * of server.c, runtime/http.h): they send the same `schema`, `query` and `transact`
 * requests a client would, through the same engine path, in order. Nothing here touches the
 * store directly.
 *
 * Does not: compute any view (the page subscribes to queries), or write faster than one
 * transaction per tick (--rate is transactions per second, 0 stops the writer).
 * Follows docs/protocol.md and /work/shared/bench/README.md (W2's schema and data).
 */
#include "runtime/http.h"
#include "runtime/runtime.h"

#include <deltalog/deltalog.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if DL_HAVE_STORE
#include <deltalog/store.h>
#endif

#ifndef DL_WEB_DIR
#define DL_WEB_DIR "runtime/web"
#endif
#ifndef DL_SOURCE_DIR
#define DL_SOURCE_DIR "."
#endif

#define LOAD_BATCH 1000 /* entities per loading transaction */

enum { ID_SCHEMA = 1, ID_SCHEMA_TX, ID_COUNT, ID_ORDERS, ID_CUSTOMERS };
#define ID_LOAD   1000LL
#define ID_WRITER 1000000000LL

static const char schema_tx[] =
    "[{:db/ident :customer/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one "
    ":db/unique :db.unique/identity}"
    " {:db/ident :customer/region :db/valueType :db.type/string :db/cardinality "
    ":db.cardinality/one}"
    " {:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one "
    ":db/unique :db.unique/identity}"
    " {:db/ident :order/customer :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/status :db/valueType :db.type/string :db/cardinality "
    ":db.cardinality/one}]";

typedef struct pending {
    struct pending *next;
    void *token;
    const uv_buf_t *bufs;
    unsigned n;
} pending_t;

typedef struct demo {
    dl_server_t *srv;
    void *conn; /* our protocol connection; NULL once closed */
    bool closing, handles_on;
    uv_async_t wake; /* processes replies outside the server's call stack */
    uv_timer_t timer;
    pending_t *ph, *pt;
    /* options */
    long orders;
    double rate;
    const char *gen;
    bool quiet;
    /* loading */
    long load_outstanding;
    bool got_orders, got_customers;
    /* the writer's picture of the data: live order ids (it is the only writer of orders
     * besides clients, whose deletions make some of its changes fail: counted, not fatal) */
    int64_t *live;
    size_t n_live, cap_live;
    int64_t next_order, n_customers;
    uint64_t rng;
    uint64_t n_tx, n_err;
    bool failed; /* loading failed: the demo stopped, exit 1 */
} demo_t;

static void say(const demo_t *d, const char *fmt, ...) DL_PRINTF(2, 3);
static void say(const demo_t *d, const char *fmt, ...) {
    if (d->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("deltalog demo: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t rnd(demo_t *d) { /* splitmix64: deterministic for a given --seed */
    uint64_t z = (d->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t below(demo_t *d, uint64_t n) { return n ? rnd(d) % n : 0; }

/* ---- requests ------------------------------------------------------------------------------ */

/* Sends one request (taken) on our connection. */
static void send_req(demo_t *d, json_t *req) {
    if (!req)
        return;
    size_t len = 0;
    char *line = d->conn && !d->closing ? dl__proto_dump_line(req, &len) : NULL;
    json_decref(req);
    if (!line)
        return;
    dl__server_ext_input(d->conn, line, len);
    dl_free(line);
}

static json_t *query_req(long long id, const char *q) {
    return json_pack("{s:s,s:I,s:s}", "op", "query", "id", (json_int_t)id, "q", q);
}

static json_t *tx_req(long long id, json_t *tx /* taken */) {
    return json_pack("{s:s,s:I,s:o}", "op", "transact", "id", (json_int_t)id, "tx", tx);
}

static void fatal(demo_t *d, const json_t *reply, const char *what) {
    const json_t *e = json_object_get(reply, "error");
    fprintf(stderr, "deltalog demo: %s failed: %s: %s\n", what,
            json_string_value(json_object_get(e, "code")) ?: "?",
            json_string_value(json_object_get(e, "message")) ?: "?");
    d->failed = true;
    dl_server_stop(d->srv);
}

static void live_add(demo_t *d, int64_t id) {
    if (d->n_live == d->cap_live) {
        size_t cap = d->cap_live ? 2 * d->cap_live : 1024;
        int64_t *p = dl_realloc(d->live, cap * sizeof *p);
        if (!p)
            return; /* the writer then simply never touches this order */
        d->live = p;
        d->cap_live = cap;
    }
    d->live[d->n_live++] = id;
}

/* ---- loading the W2 sample ------------------------------------------------------------------ */

static json_t *customer_item(long id, const char *region) {
    return json_pack("{s:I,s:s}", "customer/id", (json_int_t)id, "customer/region", region);
}

static json_t *order_item(long id, long cust, long amount, const char *status) {
    return json_pack("{s:I,s:{s:[s,I]},s:I,s:s}", "order/id", (json_int_t)id, "order/customer",
                     "lookup", "customer/id", (json_int_t)cust, "order/amount", (json_int_t)amount,
                     "order/status", status);
}

/* Appends item (taken) to the batch; sends the batch when full (or when item is NULL). */
static void batch_add(demo_t *d, json_t **batch, json_t *item) {
    if (item) {
        if (!*batch)
            *batch = json_array();
        json_array_append_new(*batch, item);
    }
    if (*batch && (!item || json_array_size(*batch) >= LOAD_BATCH)) {
        send_req(d, tx_req(ID_LOAD + d->load_outstanding, *batch));
        d->load_outstanding++;
        *batch = NULL;
    }
}

/* Reads the generator's JSON lines; false when the file cannot be read. */
static bool load_file(demo_t *d, const char *path, bool customers) {
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[512];
    json_t *batch = NULL;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        if (!j)
            continue;
        json_t *item;
        if (customers)
            item = customer_item((long)json_integer_value(json_object_get(j, "customer")),
                                 json_string_value(json_object_get(j, "region")) ?: "region-0");
        else
            item = order_item((long)json_integer_value(json_object_get(j, "order")),
                              (long)json_integer_value(json_object_get(j, "customer")),
                              (long)json_integer_value(json_object_get(j, "amount")),
                              json_string_value(json_object_get(j, "status")) ?: "open");
        json_decref(j);
        batch_add(d, &batch, item);
    }
    batch_add(d, &batch, NULL);
    fclose(f);
    return true;
}

/* The shared generator when it is there: gen.py w2 into a scratch directory. */
static bool load_generated(demo_t *d) {
    char gen[4096];
    const char *cands[] = {d->gen, DL_SOURCE_DIR "/../shared/bench/gen.py",
                           "../shared/bench/gen.py"};
    gen[0] = 0;
    /* --gen FILE: that generator only (a missing FILE selects the built-in one). */
    for (size_t i = 0; i < (d->gen ? 1 : DL_ARRAY_LEN(cands)); i++)
        if (cands[i] && access(cands[i], R_OK) == 0) {
            snprintf(gen, sizeof gen, "%s", cands[i]);
            break;
        }
    if (!gen[0] || strchr(gen, '\''))
        return false;
    char dir[] = "/tmp/deltalog-demo-XXXXXX";
    if (!mkdtemp(dir))
        return false;
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "python3 '%s' w2 --orders %ld --rounds 1 --batch 1 --out '%s' >/dev/null 2>&1", gen,
             d->orders, dir);
    bool ok = system(cmd) == 0;
    char cpath[128], opath[128], path[160];
    snprintf(cpath, sizeof cpath, "%s/w2.customers.jsonl", dir);
    snprintf(opath, sizeof opath, "%s/w2.orders.jsonl", dir);
    if (ok) {
        say(d, "loading the W2 sample from %s (%ld orders)", gen, d->orders);
        ok = load_file(d, cpath, true) && load_file(d, opath, false);
    }
    const char *files[] = {"w2.customers.jsonl", "w2.orders.jsonl", "w2.rounds.jsonl",
                           "w2.meta.json"};
    for (size_t i = 0; i < DL_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
    return ok;
}

/* The fallback: the same schema and shape as gen.py w2 (customers = orders/10, 10 regions,
 * amounts 1..1000, the four statuses), from a fixed seed. */
static void load_builtin(demo_t *d) {
    say(d,
        "no shared generator (../shared/bench/gen.py): loading the built-in W2-shaped sample "
        "(%ld orders)",
        d->orders);
    static const char *const statuses[] = {"open", "paid", "shipped", "cancelled"};
    uint64_t saved = d->rng;
    d->rng = 20240229;
    long n_c = d->orders / 10 > 0 ? d->orders / 10 : 1;
    json_t *batch = NULL;
    char region[32];
    for (long i = 0; i < n_c; i++) {
        snprintf(region, sizeof region, "region-%d", (int)below(d, 10));
        batch_add(d, &batch, customer_item(i, region));
    }
    batch_add(d, &batch, NULL);
    for (long i = 0; i < d->orders; i++)
        batch_add(d, &batch,
                  order_item(i, (long)below(d, (uint64_t)n_c), 1 + (long)below(d, 1000),
                             statuses[below(d, 4)]));
    batch_add(d, &batch, NULL);
    d->rng = saved;
}

static void ask_state(demo_t *d) {
    d->got_orders = d->got_customers = false;
    send_req(d, query_req(ID_ORDERS, "[:find ?id :where [_ :order/id ?id]]"));
    send_req(d, query_req(ID_CUSTOMERS, "[:find (max ?id) . :where [_ :customer/id ?id]]"));
}

/* ---- the writer ------------------------------------------------------------------------------ */

static void write_one(demo_t *d) {
    static const char *const moves[] = {"paid", "shipped", "paid", "shipped", "open"};
    long long id = ID_WRITER + (long long)(d->n_tx + d->n_err);
    uint64_t k = below(d, 100);
    json_t *tx;
    if (k < 50 || d->n_live == 0) { /* a new open order */
        int64_t oid = d->next_order++;
        tx = json_pack("[o]", order_item((long)oid, (long)below(d, (uint64_t)d->n_customers),
                                         1 + (long)below(d, 1000), "open"));
        live_add(d, oid);
    } else {
        size_t i = (size_t)below(d, d->n_live);
        int64_t oid = d->live[i];
        if (k < 75) /* paid, shipped (or back to open) */
            tx = json_pack("[[s,[s,I],s,s]]", "add", "order/id", (json_int_t)oid, "order/status",
                           moves[below(d, DL_ARRAY_LEN(moves))]);
        else if (k < 85) /* a cancellation */
            tx = json_pack("[[s,[s,I],s,s]]", "add", "order/id", (json_int_t)oid, "order/status",
                           "cancelled");
        else { /* the order is retracted */
            tx = json_pack("[[s,[s,I]]]", "retractEntity", "order/id", (json_int_t)oid);
            d->live[i] = d->live[--d->n_live];
        }
    }
    send_req(d, tx_req(id, tx));
}

static void on_tick(uv_timer_t *t) {
    demo_t *d = t->data;
    if (d->closing || !d->conn)
        return;
    write_one(d);
}

static void start_writer(demo_t *d) {
    /* On stdout (the addresses are there too): a script can wait for it. */
    printf("ready: %zu orders, %lld customers\n", d->n_live, (long long)d->n_customers);
    fflush(stdout);
    if (d->rate <= 0 || d->n_customers <= 0) {
        say(d, "writer off (%s)", d->rate <= 0 ? "--rate 0" : "no customers in the store");
        return;
    }
    uint64_t ms = (uint64_t)(1000.0 / d->rate);
    if (ms < 1)
        ms = 1;
    say(d,
        "writer: one transaction every %llu ms (new orders, status changes, cancellations, "
        "deletions)",
        (unsigned long long)ms);
    uv_timer_start(&d->timer, on_tick, ms, ms);
}

/* ---- replies ----------------------------------------------------------------------------------
 */

static void on_reply(demo_t *d, json_t *r) {
    json_int_t id = json_integer_value(json_object_get(r, "id"));
    bool ok = json_is_true(json_object_get(r, "ok"));
    if (id >= ID_WRITER) {
        if (ok) {
            d->n_tx++;
        } else if (d->n_err++ < 5) {
            const json_t *e = json_object_get(r, "error");
            say(d, "writer: a transaction was refused (%s: %s)",
                json_string_value(json_object_get(e, "code")) ?: "?",
                json_string_value(json_object_get(e, "message")) ?: "?");
        }
        return;
    }
    if (id >= ID_LOAD) {
        if (!ok)
            return fatal(d, r, "loading the sample");
        if (--d->load_outstanding == 0) {
            say(d, "sample loaded");
            ask_state(d);
        }
        return;
    }
    if (!ok && id != ID_CUSTOMERS)
        return fatal(d, r, id == ID_SCHEMA_TX ? "the schema transaction" : "a startup query");
    switch (id) {
        case ID_SCHEMA: {
            bool have = false;
            size_t i;
            json_t *a;
            json_array_foreach(json_object_get(r, "attrs"), i, a) {
                const char *ident = json_string_value(json_object_get(a, "ident"));
                if (ident && strcmp(ident, "order/id") == 0)
                    have = true;
            }
            if (!have) {
                say(d, "creating the W2 schema");
                send_req(d, json_pack("{s:s,s:i,s:s}", "op", "transact", "id", ID_SCHEMA_TX, "tx",
                                      schema_tx));
            }
            send_req(d, query_req(ID_COUNT, "[:find (count ?o) . :where [?o :order/id _]]"));
            break;
        }
        case ID_COUNT: {
            json_int_t n = json_integer_value(json_object_get(r, "result"));
            if (n > 0) {
                say(d, "the store already holds %lld orders: not loading the sample", (long long)n);
                ask_state(d);
            } else {
                if (!load_generated(d))
                    load_builtin(d);
                if (d->load_outstanding == 0)
                    ask_state(d);
            }
            break;
        }
        case ID_ORDERS: {
            size_t i;
            json_t *row;
            d->n_live = 0;
            d->next_order = 0;
            json_array_foreach(json_object_get(r, "rows"), i, row) {
                int64_t oid = json_integer_value(json_array_get(row, 0));
                live_add(d, oid);
                if (oid >= d->next_order)
                    d->next_order = oid + 1;
            }
            d->got_orders = true;
            if (d->got_customers)
                start_writer(d);
            break;
        }
        case ID_CUSTOMERS: {
            const json_t *m = json_object_get(r, "result");
            d->n_customers = json_is_integer(m) ? json_integer_value(m) + 1 : 0;
            d->got_customers = true;
            if (d->got_orders)
                start_writer(d);
            break;
        }
        default:
            break;
    }
}

/* ---- our connection's transport ------------------------------------------------------------ */

static void tr_write(void *ctx, const uv_buf_t *bufs, unsigned n, void *token) {
    demo_t *d = ctx;
    pending_t *p = dl_calloc(1, sizeof *p);
    if (!p) { /* safe now: our handle is open, so the connection cannot be freed here */
        dl__server_ext_written(token, UV_ENOMEM);
        return;
    }
    p->token = token;
    p->bufs = bufs;
    p->n = n;
    if (d->pt)
        d->pt->next = p;
    else
        d->ph = p;
    d->pt = p;
    uv_async_send(&d->wake);
}

static void tr_flow(void *ctx, bool reading) {
    (void)ctx;
    (void)reading; /* we never have more than one load's worth of requests in flight */
}

static void tr_close(void *ctx) {
    demo_t *d = ctx;
    d->closing = true;
    uv_timer_stop(&d->timer);
    uv_async_send(&d->wake);
}

static const dl_server_ext_ops_t demo_ops = {tr_write, tr_flow, tr_close};

static void on_wake(uv_async_t *h) {
    demo_t *d = h->data;
    while (d->ph) {
        pending_t *p = d->ph;
        d->ph = p->next;
        if (!d->ph)
            d->pt = NULL;
        for (unsigned i = 0; i < p->n && !d->closing; i++) {
            const char *s = p->bufs[i].base, *e = s + p->bufs[i].len;
            while (s < e) {
                const char *nl = memchr(s, '\n', (size_t)(e - s));
                size_t len = nl ? (size_t)(nl - s) : (size_t)(e - s);
                json_t *r = json_loadb(s, len, 0, NULL);
                if (r) {
                    on_reply(d, r);
                    json_decref(r);
                }
                s += len + (nl ? 1 : 0);
            }
        }
        void *token = p->token;
        dl_free(p);
        dl__server_ext_written(token, d->closing ? UV_ECANCELED : 0);
    }
    if (d->closing && d->conn) {
        void *c = d->conn;
        d->conn = NULL;
        dl__server_ext_closed(c);
    }
}

static void demo_stop(void *ctx) {
    demo_t *d = ctx;
    if (d->handles_on) {
        d->handles_on = false;
        uv_close((uv_handle_t *)&d->timer, NULL);
        uv_close((uv_handle_t *)&d->wake, NULL);
    }
}

/* ---- the command ------------------------------------------------------------------------------
 */

static void demo_usage(FILE *out) {
    fprintf(out,
            "Usage: deltalog demo [OPTIONS]\n"
            "The live dashboard: serves protocol v1 over TCP, the dashboard page and protocol v1\n"
            "over WebSocket, loads the W2 sample (customers and orders) once, and keeps\n"
            "transacting changes in the background.\n\n"
            "Options:\n"
            "  --data DIR        data directory (default ./.deltalog/data, created if missing)\n"
            "  --memory          in-memory store (nothing is written)\n"
            "  --http ADDR       dashboard HOST:PORT (default 127.0.0.1:8080; port 0: any)\n"
            "  --listen ADDR     protocol HOST:PORT (default %s; port 0: any)\n"
            "  --rate N          writer transactions per second (default 10; 0: no writer)\n"
            "  --orders N        orders in the sample (default 20000)\n"
            "  --seed N          the writer's random seed (default 1)\n"
            "  --web DIR         the page's files (default: $DELTALOG_WEB, the installed\n"
            "                    share/deltalog/web, or the source tree's runtime/web)\n"
            "  --gen FILE        the shared generator (default ../shared/bench/gen.py; a\n"
            "                    missing FILE selects the built-in generator)\n"
            "  --quiet           no log lines on stderr\n"
            "Prints `dashboard: http://HOST:PORT/` and `protocol: HOST:PORT` on stdout.\n",
            DL_SERVER_DEFAULT_LISTEN);
}

/* The page's directory: --web, $DELTALOG_WEB, <exe>/../share/deltalog/web, the source tree. */
static const char *web_dir(const char *opt, char *buf, size_t cap) {
    if (opt)
        return opt;
    const char *env = getenv("DELTALOG_WEB");
    if (env && *env)
        return env;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char idx[4200]; /* exe holds at most 4095 characters: this cannot truncate */
            snprintf(idx, sizeof idx, "%s/../share/deltalog/web/index.html", exe);
            int w = snprintf(buf, cap, "%s/../share/deltalog/web", exe);
            if (w > 0 && (size_t)w < cap && access(idx, R_OK) == 0)
                return buf;
        }
    }
    return DL_WEB_DIR;
}

static bool is_loopback_host(const char *addr) {
    return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "localhost:", 10) == 0 ||
           strncmp(addr, "[::1]:", 6) == 0 || addr[0] == ':';
}

int dl__demo_main(int argc, char **argv) {
    demo_t d;
    memset(&d, 0, sizeof d);
    d.orders = 20000;
    d.rate = 10;
    d.rng = 1;
    const char *data = NULL, *http = "127.0.0.1:8080", *listen = DL_SERVER_DEFAULT_LISTEN;
    const char *web = NULL;
    bool memory = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKES(name) (strcmp(a, name) == 0 && (v ? (i++, true) : (missing = name, false)))
        const char *missing = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            demo_usage(stdout);
            return 0;
        } else if (strcmp(a, "--memory") == 0) {
            memory = true;
        } else if (strcmp(a, "--quiet") == 0) {
            d.quiet = true;
        } else if (TAKES("--data")) {
            data = v;
        } else if (TAKES("--http")) {
            http = v;
        } else if (TAKES("--listen")) {
            listen = v;
        } else if (TAKES("--web")) {
            web = v;
        } else if (TAKES("--gen")) {
            d.gen = v;
        } else if (TAKES("--rate") || TAKES("--orders") || TAKES("--seed")) {
            char *end;
            double x = strtod(v, &end);
            if (*end || x < 0 || x > 1e9) {
                fprintf(stderr, "deltalog: demo: %s needs a non-negative number\n", a);
                return 2;
            }
            if (strcmp(a, "--rate") == 0)
                d.rate = x;
            else if (strcmp(a, "--orders") == 0)
                d.orders = (long)x;
            else
                d.rng = (uint64_t)x;
        } else {
            if (missing)
                fprintf(stderr, "deltalog: demo: option %s needs a value\n", missing);
            else
                fprintf(stderr, "deltalog: demo: unknown option %s (see deltalog demo --help)\n",
                        a);
            return 2;
        }
#undef TAKES
    }
    if (memory && data) {
        fprintf(stderr, "deltalog: --data and --memory exclude each other\n");
        return 2;
    }
    if (!is_loopback_host(http)) {
        fprintf(stderr, "deltalog: demo: --http must be a loopback address (the page has no "
                        "authentication)\n");
        return 2;
    }
    dl_server_options_t so;
    dl_server_options_init(&so);
    so.data_dir = data ? data : ".deltalog/data";
    so.memory = memory;
    so.listen = listen;
    so.quiet = d.quiet;
#if DL_HAVE_STORE
    so.sync_mode = DL_STORE_SYNC_BATCHED; /* a demo: survive a crash of deltalog, not of the OS */
#endif
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl_server_new(&so, &d.srv, &err);
    if (rc != DL_OK) {
        fprintf(stderr, "deltalog: %s: %s\n", dl_err_name(rc), err.message);
        return rc == DL_EUNSUPPORTED ? 3 : rc == DL_EINVAL || rc == DL_EAUTH ? 2 : 4;
    }
    char wbuf[4200], haddr[96];
    const char *wdir = web_dir(web, wbuf, sizeof wbuf);
    dl_http_t *h = NULL;
    uv_loop_t *loop = dl__server_loop(d.srv);
    if ((rc = dl__http_start(d.srv, http, wdir, &h, haddr, sizeof haddr, &err)) != DL_OK ||
        uv_async_init(loop, &d.wake, on_wake) != 0) {
        fprintf(stderr, "deltalog: %s: %s\n", dl_err_name(rc ? rc : DL_EIO), err.message);
        dl_server_free(d.srv);
        return rc == DL_EINVAL ? 2 : 4;
    }
    uv_timer_init(loop, &d.timer);
    d.wake.data = d.timer.data = &d;
    d.handles_on = true;
    if (dl__server_on_stop(d.srv, demo_stop, &d) != DL_OK ||
        !(d.conn = dl__server_ext_open(d.srv, &demo_ops, &d, "demo writer"))) {
        fprintf(stderr, "deltalog: demo: cannot open the writer's connection\n");
        dl_server_stop(d.srv);
    } else {
        send_req(&d, json_pack("{s:s,s:i}", "op", "schema", "id", ID_SCHEMA));
    }
    printf("dashboard: http://%s/\nprotocol: %s (JSON lines over TCP; the same over WebSocket at "
           "ws://%s/ws)\nweb files: %s\n",
           haddr, dl_server_address(d.srv), haddr, wdir);
    fflush(stdout);
    rc = dl_server_run(d.srv, &err);
    say(&d, "writer: %llu transactions, %llu refused", (unsigned long long)d.n_tx,
        (unsigned long long)d.n_err);
    dl__http_free(h); /* after the loop ran: finishes libwebsockets' foreign-loop teardown */
    dl_server_free(d.srv);
    while (d.ph) {
        pending_t *p = d.ph;
        d.ph = p->next;
        dl_free(p);
    }
    dl_free(d.live);
    return rc == DL_OK && !d.failed ? 0 : 1;
}
