/*
 * test_channel.c: channel delivery: the eventfd is readable exactly while a message
 * waits; blocking pulls with and without a deadline against a producer thread; and the
 * issue's scenario 9: a libuv loop consuming a subscription fed by a producer thread
 * through dl_sub_uv_start, ending by itself after the END message.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define AR 1

static bool fd_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static dl_delta_t *delta_at(uint64_t t, int64_t key, int64_t diff) {
    dl_delta_t *d;
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, &t, 1, &d, NULL), 0);
    dl_value_t row[AR] = {dl_value_int(key)};
    assert_int_equal(dl_delta_add(d, row, diff, NULL), 0);
    return d;
}

static void push(dl_sub_t *s, dl_delta_t *d) {
    assert_int_equal(dl_sub_push(s, d, NULL), 0);
    dl_delta_unref(d);
}

static void test_channel_fd_level(void **state) {
    (void)state;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    dl_sub_t *s;
    assert_int_equal(dl_sub_new(&o, AR, &s, NULL), 0);
    int fd = dl_sub_fd(s);
    assert_true(fd >= 0);
    assert_false(fd_readable(fd));
    push(s, delta_at(1, 1, 1));
    assert_true(fd_readable(fd));
    push(s, delta_at(2, 2, 1));
    dl_delta_t *d;
    assert_int_equal(dl_sub_next(s, 0, &d, NULL), 0);
    dl_delta_unref(d);
    assert_true(fd_readable(fd)); /* one still waiting */
    assert_int_equal(dl_sub_next(s, 0, &d, NULL), 0);
    dl_delta_unref(d);
    assert_false(fd_readable(fd));
    assert_int_equal(dl_sub_next(s, 0, &d, NULL), 0);
    assert_null(d);
    dl_sub_end(s, 0);
    assert_true(fd_readable(fd));
    assert_int_equal(dl_sub_next(s, 0, &d, NULL), 0);
    assert_int_equal(dl_delta_kind(d), DL_DELTA_END);
    dl_delta_unref(d);
    assert_false(fd_readable(fd));
    dl_sub_unref(s);
}

typedef struct prod {
    dl_sub_t *sub;
    int n;
    int64_t final[16];
} prod_t;

static void *producer(void *arg) {
    prod_t *p = arg;
    dl_rng_t r = {dl_prop_last_seed()};
    for (int t = 1; t <= p->n; t++) {
        int key = (int)dl_rng_below(&r, 16);
        int64_t diff = p->final[key] > 0 && dl_rng_below(&r, 2) ? -1 : 1;
        p->final[key] += diff;
        uint64_t tm = (uint64_t)t;
        dl_delta_t *d;
        if (dl_delta_new(DL_DELTA_DATA, AR, &tm, 1, &d, NULL))
            return "new";
        dl_value_t row[AR] = {dl_value_int(key)};
        if (dl_delta_add(d, row, diff, NULL) || dl_sub_push(p->sub, d, NULL))
            return "push";
        dl_delta_unref(d);
    }
    dl_sub_end(p->sub, 0);
    return NULL;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void test_channel_blocking_pull(void **state) {
    (void)state;
    (void)dl_prop_seed("channel_blocking_pull");
    dl_sub_t *s;
    assert_int_equal(dl_sub_new(NULL, AR, &s, NULL), 0);
    /* A deadline with nothing arriving: NULL after at least the timeout. */
    uint64_t t0 = now_ns();
    dl_delta_t *d;
    assert_int_equal(dl_sub_next(s, 30, &d, NULL), 0);
    assert_null(d);
    assert_true(now_ns() - t0 >= 30 * 1000000ull);
    /* Blocking pulls against a producer thread: everything arrives, in order. */
    prod_t p = {.sub = s, .n = 5000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, &p), 0);
    int64_t acc[16] = {0};
    uint64_t last = 0;
    for (;;) {
        assert_int_equal(dl_sub_next(s, -1, &d, NULL), 0);
        assert_non_null(d);
        if (dl_delta_kind(d) == DL_DELTA_END) {
            dl_delta_unref(d);
            break;
        }
        uint64_t t = dl_delta_time(d, NULL)[0];
        assert_true(t > last);
        last = t;
        for (size_t i = 0; i < dl_delta_len(d); i++)
            acc[dl_delta_row(d, i)[0].as.i] += dl_delta_diff(d, i);
        dl_delta_unref(d);
    }
    void *res;
    pthread_join(th, &res);
    assert_null(res);
    assert_memory_equal(acc, p.final, sizeof acc);
    assert_int_equal(dl_sub_next(s, -1, &d, NULL), DL_ECLOSED);
    dl_sub_unref(s);
}

/* ---- scenario 9: channel delivery consumed from a libuv loop ----------------------------- */

typedef struct loop_ctx {
    int64_t acc[16];
    uint64_t last;
    int messages, ends, out_of_order;
    uv_thread_t loop_thread;
    int wrong_thread;
} loop_ctx_t;

static void on_loop_delta(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    loop_ctx_t *c = udata;
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &c->loop_thread))
        c->wrong_thread++;
    c->messages++;
    if (dl_delta_kind(d) == DL_DELTA_END) {
        c->ends++;
        return;
    }
    uint64_t t = dl_delta_time(d, NULL)[0];
    if (t <= c->last)
        c->out_of_order++;
    c->last = t;
    for (size_t i = 0; i < dl_delta_len(d); i++)
        c->acc[dl_delta_row(d, i)[0].as.i] += dl_delta_diff(d, i);
}

static void run_loop_scenario(dl_sub_policy_t policy) {
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = policy;
    o.max_queued = 8;
    o.block_timeout_ms = 60000;
    dl_sub_t *s;
    assert_int_equal(dl_sub_new(&o, AR, &s, NULL), 0);
    loop_ctx_t c = {0};
    c.loop_thread = uv_thread_self();
    dl_sub_uv_t *w;
    assert_int_equal(dl_sub_uv_start(&loop, s, on_loop_delta, &c, &w, NULL), 0);
    prod_t p = {.sub = s, .n = 20000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, producer, &p), 0);
    /* Returns once the watcher has seen END and closed itself: no other handle is active. */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    void *res;
    pthread_join(th, &res);
    assert_null(res);
    assert_int_equal(c.ends, 1);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(c.wrong_thread, 0);
    assert_true(c.last <= (uint64_t)p.n);
    assert_memory_equal(c.acc, p.final, sizeof c.acc);
    if (policy == DL_SUB_BLOCK)
        assert_int_equal(c.messages, p.n + 1); /* nothing merged: every time arrives */
    else
        assert_true(c.messages <= p.n + 1);
    print_message("loop (policy %d): %d times delivered as %d messages\n", (int)policy, p.n,
                  c.messages);
    assert_int_equal(uv_loop_close(&loop), 0);
    dl_sub_unref(s);
}

static void test_channel_libuv_loop(void **state) {
    (void)state;
    (void)dl_prop_seed("channel_libuv_loop");
    run_loop_scenario(DL_SUB_COALESCE);
    run_loop_scenario(DL_SUB_BLOCK);
}

static void test_channel_libuv_stop(void **state) {
    (void)state;
    dl_alloc_stats_t before, after;
    dl_alloc_stats(&before);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    dl_sub_t *s;
    assert_int_equal(dl_sub_new(NULL, AR, &s, NULL), 0);
    loop_ctx_t c = {0};
    c.loop_thread = uv_thread_self();
    dl_sub_uv_t *w;
    assert_int_equal(dl_sub_uv_start(&loop, s, on_loop_delta, &c, &w, NULL), 0);
    push(s, delta_at(1, 3, 1));
    assert_int_equal(uv_run(&loop, UV_RUN_NOWAIT), 1); /* delivered, still watching */
    assert_int_equal(c.messages, 1);
    dl_sub_uv_stop(w);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    dl_sub_close(s);
    dl_alloc_stats(&after);
    assert_int_equal(after.live_bytes, before.live_bytes);
    /* Callback subscriptions have no fd to watch. */
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_loop_delta;
    o.udata = &c;
    assert_int_equal(dl_sub_new(&o, AR, &s, NULL), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(dl_sub_uv_start(&loop, s, on_loop_delta, &c, &w, NULL), DL_EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
    dl_sub_unref(s);
}

DL_TEST_GROUP(channel, cmocka_unit_test(test_channel_fd_level),
              cmocka_unit_test(test_channel_blocking_pull),
              cmocka_unit_test(test_channel_libuv_loop), cmocka_unit_test(test_channel_libuv_stop));
