/*
 * bench_log.c: the durable log (store/log.h) on the real file system, one JSON line per
 * result (bench/harness.h):
 *   log_append      appends/s and MB/s, one writer, sync none / batched / every
 *   log_group       group commit: 4 writers, sync every commit (target >= 20,000/s)
 *   log_recovery    open (verifies every checksum) + replay of 1e6 records
 *   log_checkpoint  writing and reading a 64 MiB checkpoint
 * Payloads are W2-like: one order transaction as the JSON the shared generator writes
 * (../shared/bench/README.md, W2), synthesised with the same splitmix64 distribution, or
 * the lines of `--data DIR`/w2.orders.jsonl when given. The log sees opaque bytes, so this
 * measures framing, checksums, zstd and fsync, not the store's own encoding.
 * Flags: --dir PATH (scratch directory, default /tmp/dl-bench-log), --records N (1e6),
 * --quick (smaller sizes, for CI smoke runs).
 */
#include "bench/harness.h"

#include "store/log.h"

#include <deltalog/alloc.h>

#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- payloads --------------------------------------------------------------------- */

typedef struct payloads {
    char **v;
    size_t *len;
    size_t n;
    uint64_t bytes;
} payloads_t;

static uint64_t sm_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void payloads_add(payloads_t *p, const char *s, size_t n) {
    p->v[p->n] = malloc(n);
    memcpy(p->v[p->n], s, n);
    p->len[p->n] = n;
    p->bytes += n;
    p->n++;
}

/* W2 churn transactions: 50% new order, 30% status change, 20% delete. */
static void payloads_synth(payloads_t *p, size_t n) {
    static const char *status[] = {"open", "paid", "shipped", "cancelled"};
    uint64_t s = 42;
    char buf[256];
    for (size_t i = 0; i < n; i++) {
        uint64_t k = sm_next(&s) % 10;
        int len;
        if (k < 5)
            len = snprintf(buf, sizeof buf,
                           "{\"op\":\"new\",\"order\":%zu,\"customer\":%" PRIu64
                           ",\"amount\":%" PRIu64 ",\"status\":\"open\"}",
                           1000000 + i, sm_next(&s) % 100000, 1 + sm_next(&s) % 1000);
        else if (k < 8)
            len = snprintf(buf, sizeof buf,
                           "{\"op\":\"status\",\"order\":%" PRIu64 ",\"status\":\"%s\"}",
                           sm_next(&s) % 1000000, status[sm_next(&s) % 4]);
        else
            len = snprintf(buf, sizeof buf, "{\"op\":\"delete\",\"order\":%" PRIu64 "}",
                           sm_next(&s) % 1000000);
        payloads_add(p, buf, (size_t)len);
    }
}

typedef struct load_ctx {
    payloads_t *p;
    size_t max;
} load_ctx_t;

static int load_line(json_t *line, void *ctx) {
    load_ctx_t *c = ctx;
    char *s = json_dumps(line, JSON_COMPACT);
    payloads_add(c->p, s, strlen(s));
    free(s);
    return c->p->n >= c->max;
}

static void payloads_init(payloads_t *p, size_t n, const char *data) {
    memset(p, 0, sizeof *p);
    p->v = malloc(n * sizeof *p->v);
    p->len = malloc(n * sizeof *p->len);
    if (data) {
        char path[4096];
        snprintf(path, sizeof path, "%s/w2.orders.jsonl", data);
        load_ctx_t c = {p, n};
        if (bench_read_jsonl(path, load_line, &c) < 0)
            exit(1);
    }
    if (p->n < n)
        payloads_synth(p, n - p->n);
}

/* ---- helpers ---------------------------------------------------------------------- */

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static dl_log_t *open_or_die(const char *dir, const dl_log_options_t *opt) {
    dl_log_t *log = NULL;
    dl_error_t err = {0};
    if (dl__log_open(dir, opt, &log, &err)) {
        fprintf(stderr, "bench_log: open %s: %s\n", dir, err.message);
        exit(1);
    }
    return log;
}

static void die_on(int rc, const char *what, const dl_error_t *err) {
    if (rc) {
        fprintf(stderr, "bench_log: %s: %s\n", what, err->message);
        exit(1);
    }
}

static const char *mode_name(int m) {
    return m == DL_SYNC_NONE ? "none" : m == DL_SYNC_BATCHED ? "batched" : "every";
}

/* ---- one writer ------------------------------------------------------------------- */

static void bench_append(const char *dir, const payloads_t *p, int mode, size_t n) {
    rm_tree(dir);
    dl_log_options_t opt = {.sync_mode = mode, .batch_ms = 10};
    uint64_t t0 = bench_now_ns();
    dl_log_t *log = open_or_die(dir, &opt);
    uint64_t t1 = bench_now_ns();
    bench_samples_t lat = {0};
    uint64_t raw = 0;
    dl_error_t err = {0};
    for (size_t i = 0; i < n; i++) {
        const size_t k = i % p->n;
        uint64_t a = bench_now_ns(), lsn = 0;
        die_on(dl__log_append(log, i + 1, p->v[k], p->len[k], &lsn, &err), "append", &err);
        die_on(dl__log_sync(log, lsn, &err), "sync", &err);
        bench_samples_add(&lat, bench_now_ns() - a);
        raw += p->len[k];
    }
    dl__log_close(log); /* included: none/batched pay their final fsync here */
    uint64_t t2 = bench_now_ns();
    log = open_or_die(dir, &opt);
    dl_log_stats_t st;
    dl__log_stats(log, &st);
    dl__log_close(log);
    double secs = (double)(t2 - t1) / 1e9;
    json_t *params = json_pack("{s:s,s:I,s:f}", "sync", mode_name(mode), "records", (json_int_t)n,
                               "payload_avg_bytes", (double)raw / (double)n);
    bench_emit(json_pack(
        "{s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:f}", "bench", "log_append", "params", params,
        "init_ms", (double)(t1 - t0) / 1e6, "p50_us", bench_samples_pct_us(&lat, 0.5), "p99_us",
        bench_samples_pct_us(&lat, 0.99), "throughput_per_s", (double)n / secs, "mb_per_s",
        (double)raw / secs / 1e6, "compression_ratio", st.compression_ratio, "bytes_on_disk",
        (json_int_t)st.bytes_on_disk, "raw_bytes", (json_int_t)st.raw_bytes, "peak_rss_mb",
        bench_peak_rss_mb()));
    bench_samples_free(&lat);
}

/* ---- group commit ----------------------------------------------------------------- */

typedef struct group {
    dl_log_t *log;
    const payloads_t *p;
    pthread_mutex_t writer; /* the store's writer lock */
    uint64_t next_tx;
    size_t per_thread;
    bench_samples_t lat[4];
} group_t;

typedef struct worker {
    group_t *g;
    int id;
} worker_t;

static void *group_worker(void *arg) {
    worker_t *w = arg;
    group_t *g = w->g;
    dl_error_t err = {0};
    for (size_t i = 0; i < g->per_thread; i++) {
        uint64_t a = bench_now_ns(), lsn = 0;
        pthread_mutex_lock(&g->writer);
        uint64_t tx = g->next_tx++;
        size_t k = tx % g->p->n;
        int rc = dl__log_append(g->log, tx, g->p->v[k], g->p->len[k], &lsn, &err);
        pthread_mutex_unlock(&g->writer);
        die_on(rc, "append", &err);
        die_on(dl__log_sync(g->log, lsn, &err), "sync", &err);
        bench_samples_add(&g->lat[w->id], bench_now_ns() - a);
    }
    return NULL;
}

static void bench_group(const char *dir, const payloads_t *p, size_t total) {
    rm_tree(dir);
    dl_log_options_t opt = {.sync_mode = DL_SYNC_EVERY};
    group_t g = {.p = p, .next_tx = 1, .per_thread = total / 4};
    pthread_mutex_init(&g.writer, NULL);
    g.log = open_or_die(dir, &opt);
    dl_log_stats_t st0, st;
    dl__log_stats(g.log, &st0);
    pthread_t th[4];
    worker_t w[4];
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){&g, i};
        pthread_create(&th[i], NULL, group_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    uint64_t t1 = bench_now_ns();
    dl__log_stats(g.log, &st);
    dl__log_close(g.log);
    bench_samples_t all = {0};
    for (int i = 0; i < 4; i++) {
        for (size_t k = 0; k < g.lat[i].n; k++)
            bench_samples_add(&all, g.lat[i].v[k]);
        bench_samples_free(&g.lat[i]);
    }
    size_t n = g.per_thread * 4;
    uint64_t fsyncs = st.fsyncs - st0.fsyncs;
    json_t *params =
        json_pack("{s:s,s:i,s:I}", "sync", "every", "writers", 4, "records", (json_int_t)n);
    bench_emit(json_pack("{s:s,s:o,s:f,s:f,s:f,s:I,s:f,s:f}", "bench", "log_group_commit", "params",
                         params, "p50_us", bench_samples_pct_us(&all, 0.5), "p99_us",
                         bench_samples_pct_us(&all, 0.99), "throughput_per_s",
                         (double)n / ((double)(t1 - t0) / 1e9), "fsyncs", (json_int_t)fsyncs,
                         "records_per_fsync", fsyncs ? (double)n / (double)fsyncs : 0.0,
                         "peak_rss_mb", bench_peak_rss_mb()));
    bench_samples_free(&all);
    pthread_mutex_destroy(&g.writer);
}

/* ---- recovery --------------------------------------------------------------------- */

typedef struct replay_ctx {
    uint64_t count, bytes;
    bench_checksum_t sum;
} replay_ctx_t;

static int replay_cb(void *ctx, uint64_t tx, const void *payload, size_t n) {
    replay_ctx_t *c = ctx;
    c->count++;
    c->bytes += n;
    bench_checksum_add(&c->sum, (int64_t)tx);
    return 0;
}

static void bench_recovery(const char *dir, const payloads_t *p, size_t n) {
    rm_tree(dir);
    dl_log_options_t opt = {.sync_mode = DL_SYNC_NONE};
    dl_log_t *log = open_or_die(dir, &opt);
    dl_error_t err = {0};
    bench_checksum_t want = {0};
    for (size_t i = 0; i < n; i++) {
        size_t k = i % p->n;
        die_on(dl__log_append(log, i + 1, p->v[k], p->len[k], NULL, &err), "append", &err);
        bench_checksum_add(&want, (int64_t)(i + 1));
    }
    dl__log_close(log);
    /* Cold-ish: the files are in the page cache (same machine, just written). */
    uint64_t t0 = bench_now_ns();
    log = open_or_die(dir, &opt);
    uint64_t t1 = bench_now_ns();
    replay_ctx_t c = {0};
    die_on(dl__log_replay(log, 0, replay_cb, &c, &err), "replay", &err);
    uint64_t t2 = bench_now_ns();
    dl_log_stats_t st;
    dl__log_stats(log, &st);
    dl__log_close(log);
    if (c.count != n || c.sum.sum != want.sum || c.sum.xor_ != want.xor_) {
        fprintf(stderr, "bench_log: replay returned %" PRIu64 " records, wanted %zu\n", c.count, n);
        exit(1);
    }
    json_t *params = json_pack("{s:I}", "records", (json_int_t)n);
    bench_emit(json_pack(
        "{s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:s,s:f}", "bench", "log_recovery", "params", params,
        "open_ms", (double)(t1 - t0) / 1e6, "replay_ms", (double)(t2 - t1) / 1e6, "init_ms",
        (double)(t2 - t0) / 1e6, "throughput_per_s", (double)n / ((double)(t2 - t0) / 1e9),
        "compression_ratio", st.compression_ratio, "bytes_on_disk", (json_int_t)st.bytes_on_disk,
        "raw_bytes", (json_int_t)st.raw_bytes, "checksum", bench_checksum_str(&c.sum),
        "peak_rss_mb", bench_peak_rss_mb()));
}

/* ---- checkpoint ------------------------------------------------------------------- */

static void bench_checkpoint(const char *dir, const payloads_t *p, size_t bytes) {
    rm_tree(dir);
    dl_log_options_t opt = {.sync_mode = DL_SYNC_NONE};
    dl_log_t *log = open_or_die(dir, &opt);
    dl_error_t err = {0};
    die_on(dl__log_append(log, 1, "x", 1, NULL, &err), "append", &err);
    /* A blob of concatenated payloads: compressible like a snapshot of W2 datoms. */
    char *blob = malloc(bytes);
    size_t off = 0;
    for (size_t i = 0; off < bytes; i++) {
        size_t k = i % p->n, m = p->len[k] < bytes - off ? p->len[k] : bytes - off;
        memcpy(blob + off, p->v[k], m);
        off += m;
    }
    uint64_t t0 = bench_now_ns();
    die_on(dl__log_checkpoint_write(log, 1, blob, bytes, &err), "checkpoint", &err);
    uint64_t t1 = bench_now_ns();
    void *back = NULL;
    size_t n = 0;
    uint64_t covers = 0;
    die_on(dl__log_checkpoint_read(log, &covers, &back, &n, &err), "checkpoint read", &err);
    uint64_t t2 = bench_now_ns();
    if (n != bytes || memcmp(back, blob, n) != 0) {
        fprintf(stderr, "bench_log: checkpoint read back differs\n");
        exit(1);
    }
    dl_log_stats_t st;
    dl__log_stats(log, &st);
    dl__log_close(log);
    json_t *params = json_pack("{s:I}", "bytes", (json_int_t)bytes);
    bench_emit(json_pack("{s:s,s:o,s:f,s:f,s:f,s:f,s:I}", "bench", "log_checkpoint", "params",
                         params, "write_ms", (double)(t1 - t0) / 1e6, "read_ms",
                         (double)(t2 - t1) / 1e6, "write_mb_per_s",
                         (double)bytes / ((double)(t1 - t0) / 1e9) / 1e6, "compression_ratio",
                         (double)bytes / (double)st.checkpoint_bytes, "checkpoint_bytes",
                         (json_int_t)st.checkpoint_bytes));
    dl_free(back);
    free(blob);
}

int main(int argc, char **argv) {
    const char *dir = bench_arg(argc, argv, "dir", "/tmp/dl-bench-log");
    const char *data = bench_arg(argc, argv, "data", NULL);
    bool quick = bench_flag(argc, argv, "quick");
    size_t records = (size_t)atol(bench_arg(argc, argv, "records", quick ? "100000" : "1000000"));
    payloads_t p;
    payloads_init(&p, 100000, data);
    bench_append(dir, &p, DL_SYNC_NONE, records);
    bench_append(dir, &p, DL_SYNC_BATCHED, records);
    bench_append(dir, &p, DL_SYNC_EVERY, quick ? 2000 : 10000);
    bench_group(dir, &p, quick ? 8000 : 80000);
    bench_recovery(dir, &p, records);
    bench_checkpoint(dir, &p, quick ? (size_t)8 << 20 : (size_t)64 << 20);
    rm_tree(dir);
    for (size_t i = 0; i < p.n; i++)
        free(p.v[i]);
    free(p.v);
    free(p.len);
    return 0;
}
