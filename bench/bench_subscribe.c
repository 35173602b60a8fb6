/*
 * bench_subscribe.c: the subscription layer's costs, independent of how diffs are
 * computed (a synthetic incremental filter source stands in for compiled queries):
 *  - coalesce_slow_consumer: a consumer that reads nothing while 100,000 times pass under
 *    the coalesce policy: queued memory against the result set's size, push latency;
 *  - fanout_callback: 1,000 callback subscriptions over 100 distinct parameterized queries
 *    (10 per query, sharing sources through the registry); a one-row transaction per
 *    step; commit-to-last-callback latency p50/p99, and memory per extra subscriber of an
 *    existing query beyond its snapshot;
 *  - fanout_channel: the same with channel subscriptions consumed by one consumer thread
 *    through epoll on the 1,000 eventfds: commit-to-last-message latency.
 * Flags: --times N (slow consumer), --steps N (fan-out transactions).
 * It does not measure the dataflow (bench_w1) or the network relay (runtime).
 */
#include "bench/harness.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

/* ---- a synthetic source: rows [k, 10k] of a collection with k mod M == R ----------------- */

typedef struct src src_t;
typedef struct world {
    uint8_t *present; /* n_keys flags */
    int64_t n_keys;
    uint64_t time;
    src_t **by_rem; /* M slots: the open source for each remainder (one query shape) */
    int64_t mod;
} world_t;

struct src {
    world_t *w;
    int64_t rem;
    uint64_t acc_time;
    dl_delta_t *pending; /* at most one completed time waiting (one per commit) */
};

static int src_open(void *ctx, const char *text, const dl_value_t *in, size_t n_in, size_t dims,
                    void **out, size_t *arity, dl_error_t *err) {
    world_t *w = ctx;
    (void)text;
    if (n_in != 1 || dims != 1)
        return dl_error_set(err, DL_EINVAL, "bad inputs");
    src_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    s->w = w;
    s->rem = in[0].as.i;
    s->acc_time = w->time;
    w->by_rem[s->rem] = s;
    *out = s;
    *arity = 2;
    return 0;
}

static int src_snapshot(void *p, dl_delta_t **out, dl_error_t *err) {
    src_t *s = p;
    int rc = dl_delta_new(DL_DELTA_DATA, 2, &s->acc_time, 1, out, err);
    for (int64_t k = s->rem; k < s->w->n_keys && !rc; k += s->w->mod)
        if (s->w->present[k])
            rc = dl_delta_add(*out, (dl_value_t[2]){dl_value_int(k), dl_value_int(10 * k)}, 1, err);
    return rc;
}

static int src_poll(void *p, dl_delta_t **out, dl_error_t *err) {
    src_t *s = p;
    (void)err;
    *out = s->pending;
    if (s->pending)
        s->acc_time = dl_delta_time(s->pending, NULL)[0];
    s->pending = NULL;
    return 0;
}

static void src_close(void *p) {
    src_t *s = p;
    s->w->by_rem[s->rem] = NULL;
    dl_delta_unref(s->pending);
    dl_free(s);
}

static const dl_source_vtable_t vt = {src_open, src_snapshot, src_poll, src_close, NULL};

/* A one-row transaction: toggles key k; the one source it concerns gets the change. */
static void commit(world_t *w, int64_t k) {
    w->time++;
    int64_t diff = w->present[k] ? -1 : 1;
    w->present[k] ^= 1;
    src_t *s = w->by_rem[k % w->mod];
    if (!s)
        return;
    dl_delta_t *d;
    if (dl_delta_new(DL_DELTA_DATA, 2, &w->time, 1, &d, NULL) ||
        dl_delta_add(d, (dl_value_t[2]){dl_value_int(k), dl_value_int(10 * k)}, diff, NULL)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    dl_delta_unref(s->pending); /* not reached: pumped after every commit */
    s->pending = d;
}

/* ---- coalesce: a slow consumer ------------------------------------------------------------ */

static void bench_coalesce(long times) {
    uint64_t t_init = bench_now_ns();
    dl_sub_t *sub;
    if (dl_sub_new(NULL, 2, &sub, NULL))
        exit(1);
    enum { UNIVERSE = 4000 };
    static uint8_t present[UNIVERSE];
    size_t n_present = 0;
    uint64_t rng = 42;
    bench_samples_t lat = {0};
    double worst_ratio = 0, sum_ratio = 0;
    long n_ratio = 0;
    uint64_t peak_queued = 0;
    double init_ms = (bench_now_ns() - t_init) / 1e6;
    uint64_t t0 = bench_now_ns();
    for (long t = 1; t <= times; t++) {
        uint64_t tm = (uint64_t)t;
        dl_delta_t *d;
        if (dl_delta_new(DL_DELTA_DATA, 2, &tm, 1, &d, NULL))
            exit(1);
        if (t == 1 && dl_delta_set_snapshot(d, true))
            exit(1);
        for (int i = 0; i < 3; i++) {
            rng = dl__hash_mix(rng);
            int64_t k = (int64_t)(rng % UNIVERSE);
            dl_value_t row[2] = {dl_value_int(k), dl_value_int(10 * k)};
            if (dl_delta_find(d, row))
                continue;
            if (dl_delta_add(d, row, present[k] ? -1 : 1, NULL))
                exit(1);
            n_present += present[k] ? (size_t)-1 : 1;
            present[k] ^= 1;
        }
        uint64_t a = bench_now_ns();
        if (dl_sub_push(sub, d, NULL))
            exit(1);
        bench_samples_add(&lat, bench_now_ns() - a);
        dl_delta_unref(d);
        dl_sub_stats_t st;
        dl_sub_stats(sub, &st);
        double rb = (double)n_present * (2 * sizeof(dl_value_t) + 8);
        if (st.queued_bytes > peak_queued)
            peak_queued = st.queued_bytes;
        if (n_present >= 500) {
            double ratio = st.queued_bytes / rb;
            if (ratio > worst_ratio)
                worst_ratio = ratio;
            sum_ratio += ratio;
            n_ratio++;
        }
    }
    uint64_t t1 = bench_now_ns();
    dl_sub_stats_t st;
    dl_sub_stats(sub, &st);
    json_t *p = json_pack("{s:I,s:I,s:s}", "times", (json_int_t)times, "universe",
                          (json_int_t)UNIVERSE, "policy", "coalesce");
    bench_emit(json_pack(
        "{s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:I,s:I,s:f,s:f,s:I}", "bench", "coalesce_slow_consumer",
        "params", p, "init_ms", init_ms, "p50_us", bench_samples_pct_us(&lat, 0.5), "p99_us",
        bench_samples_pct_us(&lat, 0.99), "throughput_per_s", times / ((t1 - t0) / 1e9),
        "peak_rss_mb", bench_peak_rss_mb(), "queued_bytes", (json_int_t)st.queued_bytes,
        "result_bytes", (json_int_t)(n_present * (2 * sizeof(dl_value_t) + 8)),
        "worst_queued_over_result", worst_ratio, "mean_queued_over_result",
        n_ratio ? sum_ratio / n_ratio : 0.0, "queued_messages", (json_int_t)st.queued));
    bench_samples_free(&lat);
    dl_sub_unref(sub);
}

/* ---- fan-out ------------------------------------------------------------------------------ */

#define N_QUERIES 100
#define PER_QUERY 10
#define N_SUBS    (N_QUERIES * PER_QUERY)

typedef struct fan {
    uint64_t last_ns; /* time of the latest delivery */
    uint64_t msgs;
} fan_t;

static void on_delta(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    (void)d;
    fan_t *f = udata;
    f->msgs++;
    f->last_ns = bench_now_ns();
}

static void setup_world(world_t *w, int64_t n_keys, int n_queries) {
    memset(w, 0, sizeof *w);
    w->n_keys = n_keys;
    w->mod = n_queries;
    w->present = calloc((size_t)n_keys, 1);
    w->by_rem = calloc((size_t)n_queries, sizeof *w->by_rem);
    for (int64_t k = 0; k < n_keys; k += 2)
        w->present[k] = 1; /* half of the keys present: 50 rows per query at 10,000 keys */
}

/* n_queries distinct queries (N_SUBS / n_queries subscribers each): 100 models the issue's
 * parameterized queries; 1 makes every change reach all 1,000 subscribers. */
static void bench_fanout_callback(long steps, int n_queries) {
    static world_t w;
    setup_world(&w, n_queries == 1 ? 200 : 10000, n_queries);
    char qtext[64];
    snprintf(qtext, sizeof qtext, "(filter-mod %d)", n_queries);
    dl_registry_t *r;
    if (dl_registry_new(&vt, &w, &r, NULL))
        exit(1);
    fan_t f = {0};
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    o.udata = &f;
    static dl_sub_t *subs[N_SUBS + N_QUERIES];
    uint64_t t_init = bench_now_ns();
    for (int i = 0; i < N_SUBS; i++) {
        dl_value_t in[1] = {dl_value_int(i % n_queries)};
        if (dl_subscribe(r, qtext, in, 1, &o, &subs[i], NULL))
            exit(1);
    }
    double init_ms = (bench_now_ns() - t_init) / 1e6;
    /* Memory per extra subscriber of an existing query (callback delivery: the snapshot is
     * handed over, not kept). */
    dl_alloc_stats_t a0, a1;
    dl_alloc_stats(&a0);
    for (int q = 0; q < N_QUERIES; q++) {
        dl_value_t in[1] = {dl_value_int(q % n_queries)};
        if (dl_subscribe(r, qtext, in, 1, &o, &subs[N_SUBS + q], NULL))
            exit(1);
    }
    dl_alloc_stats(&a1);
    double per_extra = (double)(a1.live_bytes - a0.live_bytes) / N_QUERIES;
    dl_registry_stats_t rs;
    dl_registry_stats(r, &rs);
    bench_samples_t lat = {0};
    uint64_t rng = 7, msgs0 = f.msgs;
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < steps; i++) {
        rng = dl__hash_mix(rng);
        uint64_t c = bench_now_ns();
        commit(&w, (int64_t)(rng % (uint64_t)w.n_keys));
        if (dl_registry_pump(r, NULL))
            exit(1);
        bench_samples_add(&lat, f.last_ns - c);
    }
    uint64_t t1 = bench_now_ns();
    json_t *p = json_pack("{s:I,s:I,s:I,s:I,s:s}", "subscriptions", (json_int_t)(N_SUBS), "queries",
                          (json_int_t)n_queries, "sources", (json_int_t)rs.n_sources, "steps",
                          (json_int_t)steps, "delivery", "callback");
    bench_emit(json_pack("{s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:I}", "bench", "fanout_callback",
                         "params", p, "init_ms", init_ms, "p50_us", bench_samples_pct_us(&lat, 0.5),
                         "p99_us", bench_samples_pct_us(&lat, 0.99), "throughput_per_s",
                         steps / ((t1 - t0) / 1e9), "peak_rss_mb", bench_peak_rss_mb(),
                         "bytes_per_extra_subscriber", per_extra, "messages",
                         (json_int_t)(f.msgs - msgs0)));
    bench_samples_free(&lat);
    for (int i = 0; i < N_SUBS + N_QUERIES; i++)
        dl_unsubscribe(r, subs[i]);
    dl_registry_free(r);
    free(w.present);
    free(w.by_rem);
}

/* Channel fan-out: one consumer thread waits on all eventfds with epoll. */
typedef struct chan {
    dl_sub_t **subs;
    int n;
    int ep;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t received; /* messages taken, guarded by mu */
    uint64_t last_ns;
    bool stop;
} chan_t;

static void *consumer(void *arg) {
    chan_t *c = arg;
    struct epoll_event ev[64];
    for (;;) {
        int n = epoll_wait(c->ep, ev, 64, -1);
        uint64_t got = 0;
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 == UINT32_MAX) {
                return NULL; /* the stop fd */
            }
            dl_sub_t *s = c->subs[ev[i].data.u32];
            dl_delta_t *d;
            while (dl_sub_next(s, 0, &d, NULL) == 0 && d) {
                got++;
                dl_delta_unref(d);
            }
        }
        if (got) {
            pthread_mutex_lock(&c->mu);
            c->received += got;
            c->last_ns = bench_now_ns();
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
        }
    }
}

static void bench_fanout_channel(long steps) {
    static world_t w;
    setup_world(&w, 10000, N_QUERIES);
    dl_registry_t *r;
    if (dl_registry_new(&vt, &w, &r, NULL))
        exit(1);
    static dl_sub_t *subs[N_SUBS];
    chan_t c = {.subs = subs, .n = N_SUBS};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    c.ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t t_init = bench_now_ns();
    for (int i = 0; i < N_SUBS; i++) {
        dl_value_t in[1] = {dl_value_int(i % N_QUERIES)};
        if (dl_subscribe(r, "(filter-mod 100)", in, 1, NULL, &subs[i], NULL))
            exit(1);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(c.ep, EPOLL_CTL_ADD, dl_sub_fd(subs[i]), &ev);
    }
    double init_ms = (bench_now_ns() - t_init) / 1e6;
    /* The snapshots are waiting: a stop fd made of one more subscription ended later. */
    dl_sub_t *stop;
    if (dl_sub_new(NULL, 2, &stop, NULL))
        exit(1);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(c.ep, EPOLL_CTL_ADD, dl_sub_fd(stop), &sev);
    pthread_t th;
    pthread_create(&th, NULL, consumer, &c);
    pthread_mutex_lock(&c.mu);
    while (c.received < N_SUBS)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    bench_samples_t lat = {0};
    uint64_t rng = 7;
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < steps; i++) {
        rng = dl__hash_mix(rng);
        pthread_mutex_lock(&c.mu);
        uint64_t want = c.received + PER_QUERY; /* each transaction reaches one query */
        pthread_mutex_unlock(&c.mu);
        uint64_t t = bench_now_ns();
        commit(&w, (int64_t)(rng % (uint64_t)w.n_keys));
        if (dl_registry_pump(r, NULL))
            exit(1);
        pthread_mutex_lock(&c.mu);
        while (c.received < want)
            pthread_cond_wait(&c.cv, &c.mu);
        uint64_t last = c.last_ns;
        pthread_mutex_unlock(&c.mu);
        bench_samples_add(&lat, last - t);
    }
    uint64_t t1 = bench_now_ns();
    dl_sub_end(stop, 0);
    pthread_join(th, NULL);
    json_t *p = json_pack("{s:I,s:I,s:I,s:s}", "subscriptions", (json_int_t)N_SUBS, "queries",
                          (json_int_t)N_QUERIES, "steps", (json_int_t)steps, "delivery",
                          "channel+epoll, 1 consumer thread");
    bench_emit(json_pack("{s:s,s:o,s:f,s:f,s:f,s:f,s:f}", "bench", "fanout_channel", "params", p,
                         "init_ms", init_ms, "p50_us", bench_samples_pct_us(&lat, 0.5), "p99_us",
                         bench_samples_pct_us(&lat, 0.99), "throughput_per_s",
                         steps / ((t1 - t0) / 1e9), "peak_rss_mb", bench_peak_rss_mb()));
    bench_samples_free(&lat);
    dl_sub_unref(stop);
    for (int i = 0; i < N_SUBS; i++)
        dl_unsubscribe(r, subs[i]);
    dl_registry_free(r);
    close(c.ep);
    free(w.present);
    free(w.by_rem);
}

int main(int argc, char **argv) {
    long times = atol(bench_arg(argc, argv, "times", "100000"));
    long steps = atol(bench_arg(argc, argv, "steps", "20000"));
    bench_coalesce(times);
    bench_fanout_callback(steps, N_QUERIES);
    bench_fanout_callback(steps, 1);
    bench_fanout_channel(steps);
    return 0;
}
