/*
 * bench_server.c: the server end to end over loopback TCP with the shared W2 workload
 * (../shared/bench/README.md): the customers are imported, then every order is sent as
 * its own one-order `transact` request, pipelined with a bounded window, and each
 * acknowledgement is timed from the request's send to its reply. The result is proven
 * by asking the server afterwards: the store must hold exactly the expected number of
 * datoms, and the set checksum of acknowledged order ids must equal that of the file.
 * The server runs in this process through the public embedding API
 * (include/deltalog/runtime.h) on its own thread; the client is a plain socket.
 * Then, on the same server, the commit-to-receive latency of subscribers' diffs with 1 and
 * with 100 subscribed clients (see "commit-to-receive latency" below).
 * Usage: bench_server --data DIR [--orders N] [--window W] [--dir PATH] [--sync MODE]
 *                     [--lat-txs M]
 *   DIR holds w2.customers.jsonl and w2.orders.jsonl (gen.py w2 --out DIR).
 *   --dir PATH: a durable store in PATH (default: in memory).
 *   --lat-txs M: one-order transactions per latency run (default 500; 0 skips them).
 */
#include "bench/harness.h"

#include <deltalog/deltalog.h>
#include <deltalog/runtime.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct order {
    int64_t id, customer, amount;
    char status[16];
} order_t;

typedef struct load {
    int64_t *customers; /* customer id */
    char (*regions)[24];
    size_t n_cust, cap_cust;
    order_t *orders;
    size_t n_orders, cap_orders, limit;
} load_t;

static int on_customer(json_t *j, void *ctx) {
    load_t *l = ctx;
    if (l->n_cust == l->cap_cust) {
        l->cap_cust = l->cap_cust ? l->cap_cust * 2 : 1024;
        l->customers = realloc(l->customers, l->cap_cust * sizeof *l->customers);
        l->regions = realloc(l->regions, l->cap_cust * sizeof *l->regions);
    }
    l->customers[l->n_cust] = json_integer_value(json_object_get(j, "customer"));
    snprintf(l->regions[l->n_cust], sizeof l->regions[0], "%s",
             json_string_value(json_object_get(j, "region")));
    l->n_cust++;
    return 0;
}

static int on_order(json_t *j, void *ctx) {
    load_t *l = ctx;
    if (l->limit && l->n_orders >= l->limit)
        return 1;
    if (l->n_orders == l->cap_orders) {
        l->cap_orders = l->cap_orders ? l->cap_orders * 2 : 4096;
        l->orders = realloc(l->orders, l->cap_orders * sizeof *l->orders);
    }
    order_t *o = &l->orders[l->n_orders++];
    o->id = json_integer_value(json_object_get(j, "order"));
    o->customer = json_integer_value(json_object_get(j, "customer"));
    o->amount = json_integer_value(json_object_get(j, "amount"));
    snprintf(o->status, sizeof o->status, "%s", json_string_value(json_object_get(j, "status")));
    return 0;
}

/* ---- the client connection ------------------------------------------------------------- */

typedef struct client {
    int fd;
    char buf[1 << 16];
    size_t len;
} client_t;

static void send_all(client_t *c, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) {
            fprintf(stderr, "bench_server: send failed\n");
            exit(1);
        }
        p += k;
        n -= (size_t)k;
    }
}

/* Next reply line (malloc'd, NUL-terminated, no '\n'); exits on EOF. */
static char *recv_line(client_t *c) {
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->buf);
            char *s = malloc(n + 1);
            memcpy(s, c->buf, n);
            s[n] = 0;
            memmove(c->buf, nl + 1, c->len - n - 1);
            c->len -= n + 1;
            return s;
        }
        if (c->len == sizeof c->buf) {
            fprintf(stderr, "bench_server: reply line too long\n");
            exit(1);
        }
        ssize_t k = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (k <= 0) {
            fprintf(stderr, "bench_server: server closed the connection\n");
            exit(1);
        }
        c->len += (size_t)k;
    }
}

static json_t *call(client_t *c, json_t *req) {
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    send_all(c, s, strlen(s));
    send_all(c, "\n", 1);
    free(s);
    char *line = recv_line(c);
    json_t *r = json_loads(line, 0, NULL);
    if (!r || !json_is_true(json_object_get(r, "ok"))) {
        fprintf(stderr, "bench_server: request failed: %s\n", line);
        exit(1);
    }
    free(line);
    return r;
}

/* ---- the pipelined run ------------------------------------------------------------------- */

typedef struct run {
    client_t *c;
    const load_t *l;
    size_t window;
    uint64_t *sent_ns; /* per order */
    bench_samples_t lat;
    bench_checksum_t acked;
    size_t n_acked, n_failed;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t outstanding;
} run_t;

static void *reader_main(void *arg) {
    run_t *r = arg;
    for (size_t i = 0; i < r->l->n_orders; i++) {
        char *line = recv_line(r->c);
        uint64_t now = bench_now_ns();
        json_t *j = json_loads(line, 0, NULL);
        json_int_t id = json_integer_value(json_object_get(j, "id"));
        if (j && json_is_true(json_object_get(j, "ok")) && id == (json_int_t)i) {
            bench_samples_add(&r->lat, now - r->sent_ns[i]);
            bench_checksum_add(&r->acked, r->l->orders[i].id);
            r->n_acked++;
        } else {
            if (r->n_failed++ < 3)
                fprintf(stderr, "bench_server: order %zu: %s\n", i, line);
        }
        json_decref(j);
        free(line);
        pthread_mutex_lock(&r->mu);
        r->outstanding--;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

/* ---- commit-to-receive latency of subscribers' diffs ----------------------------------------
 * S connections subscribe to the same query (one shared dataflow on the server): the orders
 * with status "lat", empty at first. A writer connection then sends M one-order
 * transactions with that status, one at a time; each is timed from the moment its request
 * is sent (so the commit itself is inside the measure) to the moment each subscriber has
 * read the diff carrying that order. The next transaction waits until every subscriber got
 * the previous one (waiting on the messages), so samples do not queue behind each other.
 * Proof: every subscriber received every order exactly once, as an addition. */

static client_t *client_connect(const char *address) {
    char host[96];
    snprintf(host, sizeof host, "%s", address);
    char *colon = strrchr(host, ':');
    *colon = 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        fprintf(stderr, "bench_server: bad address %s\n", address);
        exit(1);
    }
    client_t *c = calloc(1, sizeof *c);
    c->fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (connect(c->fd, res->ai_addr, res->ai_addrlen) != 0) {
        fprintf(stderr, "bench_server: connect failed\n");
        exit(1);
    }
    freeaddrinfo(res);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return c;
}

typedef struct latrun {
    client_t **subs;
    size_t n_subs, n_tx;
    int64_t id_base;
    uint64_t *sent_ns; /* per transaction, set before its send */
    unsigned *got;     /* per transaction: subscribers that received it */
    size_t bad;        /* unexpected messages or diffs */
    bench_samples_t lat;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} latrun_t;

/* Reads every subscriber's messages with poll() until each has received n_tx orders. */
static void *lat_reader(void *arg) {
    latrun_t *r = arg;
    struct pollfd *pf = calloc(r->n_subs, sizeof *pf);
    size_t *have = calloc(r->n_subs, sizeof *have);
    size_t done = 0;
    while (done < r->n_subs) {
        for (size_t i = 0; i < r->n_subs; i++)
            pf[i] = (struct pollfd){r->subs[i]->fd, have[i] < r->n_tx ? POLLIN : 0, 0};
        if (poll(pf, (nfds_t)r->n_subs, 10000) <= 0) {
            fprintf(stderr, "bench_server: subscribers silent for 10 s\n");
            exit(1);
        }
        for (size_t i = 0; i < r->n_subs; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            client_t *c = r->subs[i];
            ssize_t k = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
            if (k <= 0) {
                fprintf(stderr, "bench_server: subscriber connection closed\n");
                exit(1);
            }
            c->len += (size_t)k;
            uint64_t now = bench_now_ns();
            char *nl;
            while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
                size_t n = (size_t)(nl - c->buf);
                json_t *m = json_loadb(c->buf, n, 0, NULL);
                memmove(c->buf, nl + 1, c->len - n - 1);
                c->len -= n + 1;
                json_t *diff = json_object_get(m, "diff");
                pthread_mutex_lock(&r->mu);
                if (!diff)
                    r->bad++;
                for (size_t d = 0; d < json_array_size(diff); d++) {
                    json_t *pair = json_array_get(diff, d);
                    int64_t id = json_integer_value(json_array_get(json_array_get(pair, 0), 0));
                    int64_t k2 = id - r->id_base;
                    if (k2 < 0 || (size_t)k2 >= r->n_tx ||
                        json_integer_value(json_array_get(pair, 1)) != 1) {
                        r->bad++;
                        continue;
                    }
                    bench_samples_add(&r->lat, now - r->sent_ns[k2]);
                    r->got[k2]++;
                    if (++have[i] == r->n_tx)
                        done++;
                }
                pthread_cond_broadcast(&r->cv);
                pthread_mutex_unlock(&r->mu);
                json_decref(m);
            }
        }
    }
    free(pf);
    free(have);
    return NULL;
}

static bool sub_latency(const char *address, size_t n_subs, size_t n_tx, int64_t id_base,
                        int64_t customer, const char *store) {
    static const char *const q = "[:find ?id :where [?e :order/status \"lat\"] [?e :order/id ?id]]";
    latrun_t r;
    memset(&r, 0, sizeof r);
    r.n_subs = n_subs;
    r.n_tx = n_tx;
    r.id_base = id_base;
    r.subs = calloc(n_subs, sizeof *r.subs);
    r.sent_ns = calloc(n_tx, sizeof *r.sent_ns);
    r.got = calloc(n_tx, sizeof *r.got);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    json_int_t shared = 0;
    for (size_t i = 0; i < n_subs; i++) {
        r.subs[i] = client_connect(address);
        json_t *rep = call(
            r.subs[i], json_pack("{s:s,s:s,s:s}", "op", "subscribe", "q", q, "policy", "coalesce"));
        shared = json_integer_value(json_object_get(rep, "shared_with"));
        json_decref(rep);
        char *snap = recv_line(r.subs[i]); /* the (empty) snapshot */
        free(snap);
    }
    client_t *w = client_connect(address);
    pthread_t th;
    pthread_create(&th, NULL, lat_reader, &r);
    char line[512];
    for (size_t k = 0; k < n_tx; k++) {
        int n = snprintf(line, sizeof line,
                         "{\"op\":\"transact\",\"tx\":[{\"db/id\":\"o\",\"order/id\":%lld,"
                         "\"order/customer\":{\"lookup\":[\"customer/id\",%lld]},"
                         "\"order/amount\":1,\"order/status\":\"lat\"}]}\n",
                         (long long)(id_base + (int64_t)k), (long long)customer);
        pthread_mutex_lock(&r.mu);
        r.sent_ns[k] = bench_now_ns();
        pthread_mutex_unlock(&r.mu);
        send_all(w, line, (size_t)n);
        char *ack = recv_line(w);
        if (!strstr(ack, "\"ok\":true")) {
            fprintf(stderr, "bench_server: latency write failed: %s\n", ack);
            exit(1);
        }
        free(ack);
        pthread_mutex_lock(&r.mu);
        while (r.got[k] < n_subs)
            pthread_cond_wait(&r.cv, &r.mu);
        pthread_mutex_unlock(&r.mu);
    }
    pthread_join(th, NULL);
    bool ok = r.bad == 0 && shared == (json_int_t)n_subs;
    for (size_t k = 0; k < n_tx; k++)
        ok = ok && r.got[k] == n_subs;
    if (!ok)
        fprintf(stderr, "bench_server: WRONG latency run: %zu bad messages, shared_with %lld\n",
                r.bad, (long long)shared);
    json_t *params = json_pack("{s:I,s:I,s:s}", "subscribers", (json_int_t)n_subs, "txs",
                               (json_int_t)n_tx, "store", store);
    bench_emit(json_pack("{s:s,s:o,s:f,s:f,s:f,s:I,s:b}", "bench", "server_sub_commit_to_receive",
                         "params", params, "p50_us", bench_samples_pct_us(&r.lat, 0.5), "p99_us",
                         bench_samples_pct_us(&r.lat, 0.99), "max_us",
                         bench_samples_pct_us(&r.lat, 1.0), "samples", (json_int_t)(n_subs * n_tx),
                         "ok", ok));
    for (size_t i = 0; i < n_subs; i++) {
        close(r.subs[i]->fd);
        free(r.subs[i]);
    }
    close(w->fd);
    free(w);
    free(r.subs);
    free(r.sent_ns);
    free(r.got);
    bench_samples_free(&r.lat);
    return ok;
}

static void *server_main(void *arg) {
    dl_error_t err;
    dl_error_clear(&err);
    if (dl_server_run(arg, &err) != DL_OK)
        fprintf(stderr, "bench_server: server: %s\n", err.message);
    return NULL;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_server --data DIR [--orders N] [--window W] [--dir PATH] "
                    "[--sync every|batched|none]\n  DIR: output of gen.py w2\n");
}

int main(int argc, char **argv) {
    const char *data = bench_arg(argc, argv, "data", NULL);
    if (!data || bench_flag(argc, argv, "help")) {
        usage();
        return 2;
    }
    load_t l;
    memset(&l, 0, sizeof l);
    l.limit = (size_t)atol(bench_arg(argc, argv, "orders", "0"));
    size_t window = (size_t)atol(bench_arg(argc, argv, "window", "256"));
    const char *dir = bench_arg(argc, argv, "dir", NULL);
    const char *sync = bench_arg(argc, argv, "sync", "every");
    char path[1024];
    snprintf(path, sizeof path, "%s/w2.customers.jsonl", data);
    if (bench_read_jsonl(path, on_customer, &l) < 0) {
        fprintf(stderr,
                "bench_server: generate the data with: python3 ../shared/bench/gen.py "
                "w2 --orders 100000 --rounds 1 --batch 1 --out %s\n",
                data);
        return 1;
    }
    snprintf(path, sizeof path, "%s/w2.orders.jsonl", data);
    if (bench_read_jsonl(path, on_order, &l) < 0)
        return 1;
    if (window < 1)
        window = 1;

    /* The server, on its own thread. */
    dl_server_options_t so;
    dl_server_options_init(&so);
    so.listen = "127.0.0.1:0";
    so.memory = dir == NULL;
    so.data_dir = dir;
    so.sync_mode = strcmp(sync, "batched") == 0 ? 1 : strcmp(sync, "none") == 0 ? 2 : 0;
    so.handle_signals = false;
    so.quiet = true;
    so.max_inflight = (int)(window * 2 + 16);
    dl_server_t *srv = NULL;
    dl_error_t err;
    dl_error_clear(&err);
    if (dl_server_new(&so, &srv, &err) != DL_OK) {
        fprintf(stderr, "bench_server: %s\n", err.message);
        return 1;
    }
    char addr[96];
    snprintf(addr, sizeof addr, "%s", dl_server_address(srv));
    pthread_t st;
    pthread_create(&st, NULL, server_main, srv);

    client_t *c = calloc(1, sizeof *c);
    char *colon = strrchr(addr, ':');
    *colon = 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(addr, colon + 1, &hints, &res) != 0) {
        fprintf(stderr, "bench_server: bad address\n");
        return 1;
    }
    c->fd = socket(res->ai_family, SOCK_STREAM, 0);
    if (connect(c->fd, res->ai_addr, res->ai_addrlen) != 0) {
        fprintf(stderr, "bench_server: connect failed\n");
        return 1;
    }
    freeaddrinfo(res);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    /* Schema and customers (1000 per transaction): the setup, timed as init_ms. */
    uint64_t t0 = bench_now_ns();
    json_decref(
        call(c, json_pack("{s:s,s:s}", "op", "transact", "tx",
                          "[{:db/ident :customer/id :db/valueType :db.type/long "
                          ":db/cardinality :db.cardinality/one :db/unique :db.unique/identity}"
                          " {:db/ident :customer/region :db/valueType :db.type/string "
                          ":db/cardinality :db.cardinality/one}"
                          " {:db/ident :order/id :db/valueType :db.type/long "
                          ":db/cardinality :db.cardinality/one :db/unique :db.unique/identity}"
                          " {:db/ident :order/customer :db/valueType :db.type/ref "
                          ":db/cardinality :db.cardinality/one}"
                          " {:db/ident :order/amount :db/valueType :db.type/long "
                          ":db/cardinality :db.cardinality/one}"
                          " {:db/ident :order/status :db/valueType :db.type/string "
                          ":db/cardinality :db.cardinality/one}]")));
    json_t *r0 = call(c, json_pack("{s:s}", "op", "stats"));
    json_int_t base_datoms =
        json_integer_value(json_object_get(json_object_get(r0, "store"), "datoms"));
    json_decref(r0);
    for (size_t i = 0; i < l.n_cust; i += 1000) {
        json_t *tx = json_array();
        for (size_t k = i; k < l.n_cust && k < i + 1000; k++)
            json_array_append_new(tx, json_pack("{s:s,s:I,s:s}", "db/id", "c", "customer/id",
                                                (json_int_t)l.customers[k], "customer/region",
                                                l.regions[k]));
        /* Tempids are per transaction: give each map its own. */
        for (size_t k = 0; k < json_array_size(tx); k++) {
            char name[32];
            snprintf(name, sizeof name, "c%zu", k);
            json_object_set_new(json_array_get(tx, k), "db/id", json_string(name));
        }
        json_decref(call(c, json_pack("{s:s,s:o}", "op", "transact", "tx", tx)));
    }
    double init_ms = (double)(bench_now_ns() - t0) / 1e6;

    /* The measured part: one order per transaction, pipelined. */
    run_t r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.l = &l;
    r.window = window;
    r.sent_ns = calloc(l.n_orders ? l.n_orders : 1, sizeof *r.sent_ns);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    pthread_t rt;
    pthread_create(&rt, NULL, reader_main, &r);
    uint64_t t1 = bench_now_ns();
    char *out = malloc(1 << 16);
    size_t out_len = 0;
    for (size_t i = 0; i < l.n_orders; i++) {
        pthread_mutex_lock(&r.mu);
        if (r.outstanding >= window && out_len) {
            pthread_mutex_unlock(&r.mu);
            send_all(c, out, out_len);
            out_len = 0;
            pthread_mutex_lock(&r.mu);
        }
        while (r.outstanding >= window)
            pthread_cond_wait(&r.cv, &r.mu);
        r.outstanding++;
        pthread_mutex_unlock(&r.mu);
        const order_t *o = &l.orders[i];
        r.sent_ns[i] = bench_now_ns();
        out_len += (size_t)snprintf(
            out + out_len, (1 << 16) - out_len,
            "{\"op\":\"transact\",\"id\":%zu,\"tx\":[{\"db/id\":\"o\",\"order/id\":%lld,"
            "\"order/customer\":{\"lookup\":[\"customer/id\",%lld]},\"order/amount\":%lld,"
            "\"order/status\":\"%s\"}]}\n",
            i, (long long)o->id, (long long)o->customer, (long long)o->amount, o->status);
        if (out_len > (1 << 16) - 512 || i + 1 == l.n_orders) {
            send_all(c, out, out_len);
            out_len = 0;
        }
    }
    pthread_join(rt, NULL);
    double secs = (double)(bench_now_ns() - t1) / 1e9;
    free(out);

    /* Proof: every order acknowledged, and the store holds exactly what was sent. */
    json_t *rs = call(c, json_pack("{s:s}", "op", "stats"));
    json_int_t datoms = json_integer_value(json_object_get(json_object_get(rs, "store"), "datoms"));
    json_decref(rs);
    json_int_t want = base_datoms + (json_int_t)l.n_cust * 2 + (json_int_t)l.n_orders * 4;
    bench_checksum_t expect;
    memset(&expect, 0, sizeof expect);
    for (size_t i = 0; i < l.n_orders; i++)
        bench_checksum_add(&expect, l.orders[i].id);
    bool ok = r.n_failed == 0 && datoms == want && expect.count == r.acked.count &&
              expect.sum == r.acked.sum && expect.xor_ == r.acked.xor_;
    if (!ok)
        fprintf(stderr, "bench_server: WRONG RESULT: %zu failed, datoms %lld want %lld\n",
                r.n_failed, (long long)datoms, (long long)want);
    /* Commit-to-receive latency with 1 and 100 subscribers (ids above every W2 order). */
    size_t lat_txs = (size_t)atol(bench_arg(argc, argv, "lat-txs", "500"));
    bool lat_ok = true;
    int64_t id_base = 1;
    for (size_t i = 0; i < l.n_orders; i++)
        if (l.orders[i].id >= id_base)
            id_base = l.orders[i].id + 1;
    static const size_t lat_subs[] = {1, 100};
    for (size_t i = 0; lat_txs && l.n_cust && i < sizeof lat_subs / sizeof lat_subs[0]; i++) {
        lat_ok = sub_latency(dl_server_address(srv), lat_subs[i], lat_txs, id_base, l.customers[0],
                             dir ? "durable" : "memory") &&
                 lat_ok;
        id_base += (int64_t)lat_txs;
    }
    close(c->fd);
    dl_server_stop(srv);
    pthread_join(st, NULL);
    dl_server_free(srv);

    json_t *params = json_pack("{s:I,s:I,s:I,s:s,s:s}", "orders", (json_int_t)l.n_orders,
                               "customers", (json_int_t)l.n_cust, "window", (json_int_t)window,
                               "store", dir ? "durable" : "memory", "sync", sync);
    bench_emit(json_pack("{s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:s,s:b}", "bench",
                         "server_pipelined_order_tx", "params", params, "init_ms", init_ms,
                         "p50_us", bench_samples_pct_us(&r.lat, 0.5), "p99_us",
                         bench_samples_pct_us(&r.lat, 0.99), "throughput_per_s",
                         secs > 0 ? (double)r.n_acked / secs : 0.0, "peak_rss_mb",
                         bench_peak_rss_mb(), "checksum", bench_checksum_str(&r.acked), "ok", ok));
    bench_samples_free(&r.lat);
    free(r.sent_ns);
    free(c);
    free(l.customers);
    free(l.regions);
    free(l.orders);
    return ok && lat_ok ? 0 : 1;
}
