/*
 * test_invariant.c: the subscription invariant (DESIGN-NOTES §4) under every policy, as a
 * randomized property test. A producer thread runs a random stream of times (random rows,
 * insertions and retractions, frontier messages); subscribers join at random times with a
 * snapshot, under a random policy, with random consumers: fast, slow (reading in bursts
 * that the producer's progress paces), unsubscribing mid-way, or callbacks on the producer
 * thread. Every consumer checks, at every DATA message, that the sum of everything it
 * received equals the producer's accumulated collection at that message's time (nothing
 * lost, duplicated or out of order), and, when the stream ended normally, that it equals
 * the final collection exactly. Synchronization is by mutexes and condition variables.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define AR       2
#define UNIVERSE 64
#define MAX_CONS 8

enum { C_FAST, C_SLOW, C_UNSUB, C_CALLBACK, C__N };

typedef struct world world_t;

typedef struct consumer {
    world_t *w;
    int idx;
    int kind;
    dl_sub_options_t o;
    uint64_t start;    /* the producer creates the subscription before time `start` */
    int slow_k, burst; /* C_SLOW pacing */
    int unsub_after;   /* C_UNSUB: messages read before closing */
    dl_sub_t *sub;     /* handed over by the producer (under w->mu) */
    bool handed;
    pthread_t th;
    /* verification state (consumer thread, or producer thread for callbacks) */
    int64_t acc[UNIVERSE];
    uint64_t acc_hash;
    bool seen_data;
    uint64_t last_data, last_frontier, last_u;
    int n_read;
    int end_code; /* -1000 while no END was seen */
    char failure[256];
} consumer_t;

struct world {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t progress;    /* the last completed time */
    uint64_t block_epoch; /* bumped before a push that may block */
    bool done;
    uint64_t n_times;
    uint64_t *hist; /* hist[t]: multiset hash of the collection at time t */
    int64_t state[UNIVERSE];
    int n_cons;
    consumer_t cons[MAX_CONS];
    uint64_t seed;
    int lagged, timed_out, closed, completed;
};

static uint64_t row_mix(int id) { return dl__hash_mix((uint64_t)id + 1); }

static void row_of(int id, dl_value_t *row) {
    row[0] = dl_value_int(id % 8);
    row[1] = dl_value_int(id / 8);
}

static int id_of(const dl_value_t *row) { return (int)(row[1].as.i * 8 + row[0].as.i); }

static void failf(consumer_t *c, const char *fmt, uint64_t a, uint64_t b) {
    if (!c->failure[0])
        snprintf(c->failure, sizeof c->failure, fmt, (unsigned long long)a, (unsigned long long)b);
}

/* Applies and checks one received message (DESIGN-NOTES §4). `complete`: the consumer
 * holds every change pushed up to this message's time, so its sum must be the collection
 * there. That is every message except under COALESCE with several user coordinates
 * queued (sub.c design note 9): the changes of one time may then be spread over several
 * messages, and the consumer checks when it has caught up (nothing queued). With this
 * producer's user coordinate t / 3 never decreasing, every queued slot is absorbed by the
 * next push, so the message taken last is at the latest pushed time. */
static void consume(consumer_t *c, const dl_delta_t *d, bool complete) {
    c->n_read++;
    switch (dl_delta_kind(d)) {
        case DL_DELTA_DATA: {
            size_t nd;
            const uint64_t *tv = dl_delta_time(d, &nd);
            uint64_t t = tv[0];
            if (dl_delta_is_snapshot(d) != !c->seen_data)
                failf(c, "message %llu at time %llu: snapshot flag wrong", (uint64_t)c->n_read, t);
            /* strictly increasing times, lexicographically (coordinate 0, then u) */
            if (c->seen_data && (t < c->last_data || (t == c->last_data && nd == 1)))
                failf(c, "data time %llu after %llu: out of order", t, c->last_data);
            if (c->seen_data && nd > 1 && t == c->last_data && tv[1] <= c->last_u)
                failf(c, "data at user coordinate %llu after %llu: out of order", tv[1], c->last_u);
            if (t <= c->last_frontier && c->last_frontier)
                failf(c, "data time %llu after frontier %llu", t, c->last_frontier);
            for (size_t i = 0; i < dl_delta_len(d); i++) {
                int id = id_of(dl_delta_row(d, i));
                int64_t diff = dl_delta_diff(d, i);
                c->acc[id] += diff;
                c->acc_hash += (uint64_t)diff * row_mix(id);
            }
            c->last_u = nd > 1 ? tv[1] : 0;
            if (complete && c->acc_hash != c->w->hist[t])
                failf(c,
                      "sum of received deltas differs from the collection at time %llu "
                      "(message %llu)",
                      t, (uint64_t)c->n_read);
            c->seen_data = true;
            c->last_data = t;
            break;
        }
        case DL_DELTA_FRONTIER: {
            uint64_t t = dl_delta_time(d, NULL)[0];
            if (t <= c->last_frontier && c->last_frontier)
                failf(c, "frontier %llu after frontier %llu", t, c->last_frontier);
            c->last_frontier = t;
            break;
        }
        case DL_DELTA_END:
            c->end_code = dl_delta_code(d);
            break;
    }
}

static void on_cb(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    consume(udata, d, true);
}

static void *consumer_main(void *arg) {
    consumer_t *c = arg;
    world_t *w = c->w;
    pthread_mutex_lock(&w->mu);
    while (!c->handed)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    dl_sub_t *s = c->sub;
    for (;;) {
        pthread_mutex_lock(&w->mu);
        uint64_t p0 = w->progress, e0 = w->block_epoch;
        pthread_mutex_unlock(&w->mu);
        int burst = c->kind == C_SLOW ? c->burst : 1 << 30;
        bool ended = false;
        for (int b = 0; b < burst; b++) {
            dl_delta_t *d = NULL;
            int rc = dl_sub_next(s, b == 0 ? -1 : 0, &d, NULL);
            if (rc) {
                failf(c, "next failed %llu at message %llu", (uint64_t)-rc, (uint64_t)c->n_read);
                ended = true;
                break;
            }
            if (!d)
                break;
            bool complete = c->o.policy != DL_SUB_COALESCE;
            if (!complete) {
                dl_sub_stats_t st;
                dl_sub_stats(s, &st);
                complete = st.queued_rows == 0; /* caught up (see consume) */
            }
            consume(c, d, complete);
            bool end = dl_delta_kind(d) == DL_DELTA_END;
            dl_delta_unref(d);
            if (end) {
                ended = true;
                break;
            }
            if (c->kind == C_UNSUB && c->n_read >= c->unsub_after) {
                dl_sub_close(s);
                return NULL;
            }
        }
        if (ended)
            break;
        if (c->kind == C_SLOW) {
            /* Slow: wait for the producer to move k times ahead, or to warn that it may
             * block on a full queue, or to finish. No sleeps. */
            pthread_mutex_lock(&w->mu);
            while (w->progress < p0 + (uint64_t)c->slow_k && w->block_epoch == e0 && !w->done)
                pthread_cond_wait(&w->cv, &w->mu);
            pthread_mutex_unlock(&w->mu);
        }
    }
    dl_sub_unref(s);
    return NULL;
}

/* The snapshot of the collection at time t (after applying t), as additions. */
static dl_delta_t *snapshot(world_t *w, uint64_t t) {
    uint64_t tm[2] = {t, t / 3};
    dl_delta_t *d;
    if (dl_delta_new(DL_DELTA_DATA, AR, tm, 2, &d, NULL))
        return NULL;
    if (dl_delta_set_snapshot(d, true)) {
        dl_delta_unref(d);
        return NULL;
    }
    for (int id = 0; id < UNIVERSE; id++)
        if (w->state[id]) {
            dl_value_t row[AR];
            row_of(id, row);
            if (dl_delta_add(d, row, w->state[id], NULL)) {
                dl_delta_unref(d);
                return NULL;
            }
        }
    return d;
}

static uint64_t state_hash(const world_t *w) {
    uint64_t h = 0;
    for (int id = 0; id < UNIVERSE; id++)
        h += (uint64_t)w->state[id] * row_mix(id);
    return h;
}

/* Offers d to every live subscription; a refusal retires it (and records why). */
static void fan_out(world_t *w, dl_sub_t **live, dl_delta_t *d) {
    for (int i = 0; i < w->n_cons; i++) {
        if (!live[i])
            continue;
        consumer_t *c = &w->cons[i];
        if (c->o.policy == DL_SUB_BLOCK && !c->o.on_delta) {
            dl_sub_stats_t st;
            dl_sub_stats(live[i], &st);
            if (st.queued >= c->o.max_queued) {
                pthread_mutex_lock(&w->mu);
                w->block_epoch++;
                pthread_cond_broadcast(&w->cv);
                pthread_mutex_unlock(&w->mu);
            }
        }
        int rc = dl_sub_push(live[i], d, NULL);
        if (rc) {
            if (rc == DL_ELAGGED)
                w->lagged++;
            else if (rc == DL_ETIMEOUT)
                w->timed_out++;
            else if (rc == DL_ECLOSED)
                w->closed++;
            else
                failf(c, "push failed with %llu%llu", (uint64_t)-rc, 0);
            dl_sub_unref(live[i]);
            live[i] = NULL;
        }
    }
}

static void *producer_main(void *arg) {
    world_t *w = arg;
    dl_rng_t r = {w->seed ^ 0x5eed};
    dl_sub_t *live[MAX_CONS] = {0};
    w->hist[0] = 0;
    for (uint64_t t = 1; t <= w->n_times; t++) {
        /* Subscribers joining now get the collection at t-1. */
        for (int i = 0; i < w->n_cons; i++) {
            consumer_t *c = &w->cons[i];
            if (c->start != t)
                continue;
            dl_sub_t *s;
            if (dl_sub_new(&c->o, AR, &s, NULL))
                return "sub_new";
            dl_delta_t *snap = snapshot(w, t - 1);
            if (!snap || dl_sub_push(s, snap, NULL))
                return "snapshot";
            dl_delta_unref(snap);
            live[i] = s;
            pthread_mutex_lock(&w->mu);
            c->sub = c->kind == C_CALLBACK ? NULL : dl_sub_ref(s);
            c->handed = true;
            pthread_cond_broadcast(&w->cv);
            pthread_mutex_unlock(&w->mu);
        }
        uint64_t tm[2] = {t, t / 3};
        dl_delta_t *d;
        if (dl_delta_new(DL_DELTA_DATA, AR, tm, 2, &d, NULL))
            return "delta_new";
        int n = (int)dl_rng_below(&r, 7); /* 0: an empty time, not delivered */
        for (int k = 0; k < n; k++) {
            int id = (int)dl_rng_below(&r, UNIVERSE);
            int64_t diff =
                w->state[id] > 0 && dl_rng_below(&r, 2) ? -1 : 1 + (int)dl_rng_below(&r, 2);
            dl_value_t row[AR];
            row_of(id, row);
            if (dl_delta_add(d, row, diff, NULL))
                return "add";
            w->state[id] += diff;
        }
        w->hist[t] = state_hash(w);
        fan_out(w, live, d);
        dl_delta_unref(d);
        if (dl_rng_below(&r, 3) == 0) {
            dl_delta_t *f;
            if (dl_delta_new(DL_DELTA_FRONTIER, 0, tm, 2, &f, NULL))
                return "frontier";
            fan_out(w, live, f);
            dl_delta_unref(f);
        }
        pthread_mutex_lock(&w->mu);
        w->progress = t;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    for (int i = 0; i < w->n_cons; i++)
        if (live[i]) {
            dl_sub_end(live[i], 0);
            w->completed++;
            dl_sub_unref(live[i]);
        }
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void run_world(world_t *w, dl_rng_t *r, int forced_policy) {
    w->n_times = 50 + dl_rng_below(r, 1200);
    w->hist = dl_calloc(w->n_times + 1, sizeof *w->hist);
    assert_non_null(w->hist);
    w->n_cons = 3 + (int)dl_rng_below(r, MAX_CONS - 2);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    for (int i = 0; i < w->n_cons; i++) {
        consumer_t *c = &w->cons[i];
        c->w = w;
        c->idx = i;
        c->end_code = -1000;
        c->kind = (int)dl_rng_below(r, C__N);
        dl_sub_options_init(&c->o);
        c->o.policy = forced_policy >= 0 ? (dl_sub_policy_t)forced_policy
                                         : (dl_sub_policy_t)dl_rng_below(r, 3);
        c->o.max_queued = 1 + dl_rng_below(r, 16);
        c->o.block_timeout_ms = 60000;
        c->o.n_dims = 2;
        c->start = 1 + dl_rng_below(r, w->n_times);
        c->slow_k = 1 + (int)dl_rng_below(r, 30);
        c->burst = 1 + (int)dl_rng_below(r, 3);
        c->unsub_after = 1 + (int)dl_rng_below(r, 40);
        if (c->kind == C_CALLBACK) {
            c->o.on_delta = on_cb;
            c->o.udata = c;
        }
    }
    for (int i = 0; i < w->n_cons; i++)
        if (w->cons[i].kind != C_CALLBACK)
            assert_int_equal(pthread_create(&w->cons[i].th, NULL, consumer_main, &w->cons[i]), 0);
    pthread_t prod;
    assert_int_equal(pthread_create(&prod, NULL, producer_main, w), 0);
    void *res;
    pthread_join(prod, &res);
    if (res)
        dl_prop_fail("producer failed: %s", (const char *)res);
    for (int i = 0; i < w->n_cons; i++)
        if (w->cons[i].kind != C_CALLBACK)
            pthread_join(w->cons[i].th, NULL);
    for (int i = 0; i < w->n_cons; i++) {
        consumer_t *c = &w->cons[i];
        if (c->failure[0])
            dl_prop_fail("consumer %d (kind %d, policy %d, max %zu): %s", i, c->kind,
                         (int)c->o.policy, c->o.max_queued, c->failure);
        if (!c->seen_data && c->kind != C_UNSUB && c->end_code != DL_ELAGGED)
            dl_prop_fail("consumer %d received no snapshot", i);
        if (c->end_code == 0) {
            /* Ended normally: it holds exactly the final collection. */
            for (int id = 0; id < UNIVERSE; id++)
                if (c->acc[id] != w->state[id])
                    dl_prop_fail("consumer %d: row %d: %lld received, %lld final", i, id,
                                 (long long)c->acc[id], (long long)w->state[id]);
        } else if (c->kind != C_UNSUB) {
            if (c->end_code != DL_ELAGGED)
                dl_prop_fail("consumer %d ended with %d", i, c->end_code);
            if (c->o.policy != DL_SUB_DROP)
                dl_prop_fail("consumer %d lagged under policy %d", i, (int)c->o.policy);
        }
    }
    dl_free(w->hist);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

static void run_many(const char *name, int policy) {
    dl_rng_t r = {dl_prop_seed(name)};
    static world_t w;
    long iters = dl_prop_iters(10);
    int lagged = 0, closed = 0, completed = 0;
    for (long it = 0; it < iters; it++) {
        memset(&w, 0, sizeof w);
        w.seed = dl_rng_next(&r);
        run_world(&w, &r, policy);
        lagged += w.lagged;
        closed += w.closed;
        completed += w.completed;
        if (w.timed_out)
            dl_prop_fail("a blocked producer timed out: a consumer stalled");
    }
    print_message("%s: %ld runs, %d completed, %d lagged, %d unsubscribed\n", name, iters,
                  completed, lagged, closed);
}

static void test_invariant_coalesce(void **state) {
    (void)state;
    run_many("invariant_coalesce", DL_SUB_COALESCE);
}
static void test_invariant_block(void **state) {
    (void)state;
    run_many("invariant_block", DL_SUB_BLOCK);
}
static void test_invariant_drop(void **state) {
    (void)state;
    run_many("invariant_drop", DL_SUB_DROP);
}
static void test_invariant_mixed(void **state) {
    (void)state;
    run_many("invariant_mixed", -1);
}

DL_TEST_GROUP(invariant, cmocka_unit_test(test_invariant_coalesce),
              cmocka_unit_test(test_invariant_block), cmocka_unit_test(test_invariant_drop),
              cmocka_unit_test(test_invariant_mixed));
