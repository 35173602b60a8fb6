/*
 * test_policy.c: each backpressure policy on its own, with real producer threads and
 * synchronization by condition variables (no sleeps): coalesce consolidates and keeps
 * memory bounded while 100,000 times pass; block slows the producer, then times out with
 * DL_ETIMEOUT; drop ends with DL_ELAGGED; callback delivery runs on the producer thread;
 * push rules; allocation failure ends a subscription with an END it can still deliver.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define AR 2

static dl_delta_t *make_delta(uint64_t t, const int64_t (*pairs)[2], size_t n) {
    uint64_t tm[2] = {t, 0};
    dl_delta_t *d;
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, tm, 2, &d, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        dl_value_t row[AR] = {dl_value_int(pairs[i][0]), dl_value_int(pairs[i][0] * 10)};
        assert_int_equal(dl_delta_add(d, row, pairs[i][1], NULL), 0);
    }
    return d;
}

static void push_ok(dl_sub_t *s, dl_delta_t *d) {
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl_sub_push(s, d, &err);
    if (rc)
        fail_msg("push: %s (%s)", dl_err_name(rc), err.message);
    dl_delta_unref(d);
}

static int64_t find(const dl_delta_t *d, int64_t k) {
    dl_value_t row[AR] = {dl_value_int(k), dl_value_int(k * 10)};
    return dl_delta_find(d, row);
}

static void test_coalesce_consolidates(void **state) {
    (void)state;
    dl_sub_t *s;
    assert_int_equal(dl_sub_new(NULL, AR, &s, NULL), 0);
    const int64_t snap[][2] = {{1, 1}, {2, 1}};
    dl_delta_t *d = make_delta(1, snap, 2);
    assert_int_equal(dl_delta_set_snapshot(d, true), 0);
    push_ok(s, d);
    const int64_t a[][2] = {{3, 1}, {1, -1}}, b[][2] = {{3, -1}, {4, 1}};
    push_ok(s, make_delta(2, a, 2));
    push_ok(s, make_delta(3, b, 2));
    dl_sub_stats_t st;
    dl_sub_stats(s, &st);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.coalesced, 2);
    assert_int_equal(st.lag_times, 3);
    dl_delta_t *got;
    assert_int_equal(dl_sub_next(s, 0, &got, NULL), 0);
    assert_non_null(got);
    /* One net delta tagged with the latest time: the snapshot plus both changes. */
    assert_true(dl_delta_is_snapshot(got));
    assert_int_equal(dl_delta_time(got, NULL)[0], 3);
    assert_int_equal(dl_delta_n_times(got), 3);
    assert_int_equal(dl_delta_len(got), 2);
    assert_int_equal(find(got, 2), 1);
    assert_int_equal(find(got, 4), 1);
    dl_delta_unref(got);
    dl_sub_stats(s, &st);
    assert_int_equal(st.lag_times, 0);
    /* (r,+1) then (r,-1) leaves nothing: no message at all. */
    const int64_t c[][2] = {{7, 1}}, e[][2] = {{7, -1}};
    push_ok(s, make_delta(4, c, 1));
    push_ok(s, make_delta(5, e, 1));
    assert_int_equal(dl_sub_next(s, 0, &got, NULL), 0);
    assert_null(got);
    /* Frontiers keep an antichain: 6 then 7 leaves only 7; 5 is implied by 7. */
    uint64_t t6[2] = {6, 0}, t7[2] = {7, 0}, t5[2] = {5, 0};
    dl_delta_t *f;
    assert_int_equal(dl_delta_new(DL_DELTA_FRONTIER, 0, t6, 2, &f, NULL), 0);
    push_ok(s, f);
    assert_int_equal(dl_delta_new(DL_DELTA_FRONTIER, 0, t7, 2, &f, NULL), 0);
    push_ok(s, f);
    assert_int_equal(dl_delta_new(DL_DELTA_FRONTIER, 0, t5, 2, &f, NULL), 0);
    push_ok(s, f);
    assert_int_equal(dl_sub_next(s, 0, &got, NULL), 0);
    assert_int_equal(dl_delta_kind(got), DL_DELTA_FRONTIER);
    assert_int_equal(dl_delta_time(got, NULL)[0], 7);
    dl_delta_unref(got);
    dl_sub_end(s, 0);
    assert_int_equal(dl_sub_next(s, -1, &got, NULL), 0);
    assert_int_equal(dl_delta_kind(got), DL_DELTA_END);
    assert_int_equal(dl_delta_code(got), 0);
    dl_delta_unref(got);
    assert_int_equal(dl_sub_next(s, 0, &got, NULL), DL_ECLOSED);
    dl_sub_unref(s);
}

static void test_push_rules(void **state) {
    (void)state;
    dl_sub_t *s;
    assert_int_equal(dl_sub_new(NULL, AR, &s, NULL), 0);
    const int64_t a[][2] = {{1, 1}};
    push_ok(s, make_delta(5, a, 1));
    dl_delta_t *d = make_delta(5, a, 1);
    assert_int_equal(dl_sub_push(s, d, NULL), DL_ETIME); /* not strictly later */
    dl_delta_unref(d);
    uint64_t t[2] = {6, 0};
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, 3, t, 2, &d, NULL), 0);
    assert_int_equal(dl_sub_push(s, d, NULL), DL_EARITY);
    dl_delta_unref(d);
    assert_int_equal(dl_delta_new(DL_DELTA_END, 0, t, 2, &d, NULL), 0);
    assert_int_equal(dl_sub_push(s, d, NULL), DL_EINVAL);
    dl_delta_unref(d);
    assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, t, 1, &d, NULL), 0);
    assert_int_equal(dl_sub_push(s, d, NULL), DL_EINVAL); /* wrong number of coordinates */
    dl_delta_unref(d);
    /* An empty DATA delta is not delivered; an empty snapshot is. */
    push_ok(s, make_delta(6, NULL, 0));
    dl_sub_stats_t st;
    dl_sub_stats(s, &st);
    assert_int_equal(st.queued, 1);
    dl_sub_t *s2;
    assert_int_equal(dl_sub_new(NULL, AR, &s2, NULL), 0);
    d = make_delta(1, NULL, 0);
    assert_int_equal(dl_delta_set_snapshot(d, true), 0);
    push_ok(s2, d);
    dl_sub_stats(s2, &st);
    assert_int_equal(st.queued, 1);
    dl_sub_unref(s2);
    /* Closed: pushes are refused. */
    dl_sub_ref(s);
    dl_sub_close(s);
    d = make_delta(9, a, 1);
    assert_int_equal(dl_sub_push(s, d, NULL), DL_ECLOSED);
    dl_delta_unref(d);
    assert_true(dl_sub_is_done(s));
    dl_sub_unref(s);
}

/* ---- coalesce memory bound -------------------------------------------------------------- */

#define MEM_UNIVERSE 4000
#define MEM_TIMES    100000

typedef struct mem_ctx {
    dl_sub_t *sub;
    uint64_t seed;
    uint8_t present[MEM_UNIVERSE];
    size_t n_present;
    uint64_t worst_ratio_x100; /* max over times of queued_bytes*100 / result bytes */
    bool bound_broken;
    uint64_t broken_at, broken_bytes, broken_result;
    int64_t live_base;
    int64_t worst_live_over;
} mem_ctx_t;

static size_t result_bytes(size_t rows) { return rows * (AR * sizeof(dl_value_t) + 8); }

static void *mem_producer(void *arg) {
    mem_ctx_t *c = arg;
    dl_rng_t r = {c->seed};
    for (uint64_t t = 1; t <= MEM_TIMES; t++) {
        /* One user coordinate value: the multi-coordinate path keeps one DATA slot, as
         * with system time alone (several values: test_coalesce_per_coordinate). */
        uint64_t tm[2] = {t, 0};
        dl_delta_t *d;
        if (dl_delta_new(DL_DELTA_DATA, AR, tm, 2, &d, NULL))
            return "alloc";
        if (t == 1 && dl_delta_set_snapshot(d, true))
            return "snapshot";
        int n = 1 + (int)dl_rng_below(&r, 5);
        for (int i = 0; i < n; i++) {
            uint64_t k = dl_rng_below(&r, MEM_UNIVERSE);
            if (dl_delta_find(
                    d, (dl_value_t[AR]){dl_value_int((int64_t)k), dl_value_int((int64_t)k * 10)}))
                continue; /* one change per row and time */
            dl_value_t row[AR] = {dl_value_int((int64_t)k), dl_value_int((int64_t)k * 10)};
            int64_t diff = c->present[k] ? -1 : 1;
            if (dl_delta_add(d, row, diff, NULL))
                return "add";
            c->present[k] ^= 1;
            c->n_present += diff > 0 ? 1 : (size_t)-1;
        }
        if (dl_sub_push(c->sub, d, NULL))
            return "push";
        dl_delta_unref(d);
        dl_sub_stats_t st;
        dl_sub_stats(c->sub, &st);
        uint64_t rb = result_bytes(c->n_present);
        /* The bound: twice the result set, plus one small fixed header. */
        if (st.queued_bytes > 2 * rb + 4096 && !c->bound_broken) {
            c->bound_broken = true;
            c->broken_at = t;
            c->broken_bytes = st.queued_bytes;
            c->broken_result = rb;
        }
        if (rb > 8192 && st.queued_bytes * 100 / rb > c->worst_ratio_x100)
            c->worst_ratio_x100 = st.queued_bytes * 100 / rb;
        if (t % 1000 == 0) {
            dl_alloc_stats_t as;
            dl_alloc_stats(&as);
            int64_t over = as.live_bytes - c->live_base - (int64_t)(2 * rb);
            if (over > c->worst_live_over)
                c->worst_live_over = over;
        }
    }
    return NULL;
}

static void test_coalesce_memory_bound(void **state) {
    (void)state;
    static mem_ctx_t c;
    memset(&c, 0, sizeof c);
    c.seed = dl_prop_seed("coalesce_memory_bound");
    dl_alloc_stats_t as;
    dl_alloc_stats(&as);
    c.live_base = as.live_bytes;
    assert_int_equal(dl_sub_new(NULL, AR, &c.sub, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, mem_producer, &c), 0);
    void *res;
    pthread_join(th, &res); /* the consumer (this thread) reads nothing meanwhile */
    if (res)
        fail_msg("producer failed: %s", (const char *)res);
    print_message("coalesce: %d times, result %zu rows, worst queued/result = %.2f, worst "
                  "live-bytes excess over 2x result = %lld\n",
                  MEM_TIMES, c.n_present, (double)c.worst_ratio_x100 / 100,
                  (long long)c.worst_live_over);
    if (c.bound_broken)
        fail_msg("queued %llu bytes > 2 x %llu + 4096 at time %llu",
                 (unsigned long long)c.broken_bytes, (unsigned long long)c.broken_result,
                 (unsigned long long)c.broken_at);
    assert_true(c.worst_live_over <= 16384);
    /* Catching up: one message, the correct state at the latest time. */
    dl_delta_t *got;
    assert_int_equal(dl_sub_next(c.sub, 0, &got, NULL), 0);
    assert_non_null(got);
    assert_int_equal(dl_delta_time(got, NULL)[0], MEM_TIMES);
    assert_int_equal(dl_delta_n_times(got), MEM_TIMES);
    assert_int_equal(dl_delta_len(got), c.n_present);
    for (int64_t k = 0; k < MEM_UNIVERSE; k++)
        assert_int_equal(find(got, k), c.present[k]);
    dl_delta_unref(got);
    assert_int_equal(dl_sub_next(c.sub, 0, &got, NULL), 0);
    assert_null(got);
    dl_sub_unref(c.sub);
}

/* COALESCE over [tx, u] with several values of u (sub.c design note 9): a consumer that
 * reads nothing holds exactly the net change at each u since it last read (one DATA slot
 * per u, whatever the number of transactions), retroactive changes included; delivered
 * times strictly increase; and once it reads, the sums at every point [T, U] with T the
 * latest transaction equal the producer's. Randomized against a per-u model. */
enum { PD_U = 6, PD_ROWS = 24, PD_TIMES = 3000 };

static void test_coalesce_per_coordinate(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("coalesce_per_coordinate");
    dl_rng_t r = {seed};
    dl_sub_t *s;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.n_dims = 2;
    assert_int_equal(dl_sub_new(&o, AR, &s, NULL), 0);
    static int64_t net[PD_U][PD_ROWS];   /* producer: sum of every change at (u, row) */
    static int64_t undel[PD_U][PD_ROWS]; /* what the consumer has not received yet */
    static int64_t got[PD_U][PD_ROWS];   /* consumer: the sum of what it received per u */
    memset(net, 0, sizeof net);
    memset(undel, 0, sizeof undel);
    memset(got, 0, sizeof got);
    uint64_t last_t[2] = {0, 0}, last_tx = 0;
    bool have = false, first = true;
    for (uint64_t tx = 1; tx <= PD_TIMES; tx++) {
        /* one transaction: changes at 1..3 increasing values of u (retroactive ones too) */
        int n_u = 1 + (int)dl_rng_below(&r, 3);
        uint64_t u = dl_rng_below(&r, PD_U);
        for (int k = 0; k < n_u && u < PD_U; k++, u += 1 + dl_rng_below(&r, 2)) {
            uint64_t tm[2] = {tx, u};
            dl_delta_t *d;
            assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, tm, 2, &d, NULL), 0);
            if (first)
                assert_int_equal(dl_delta_set_snapshot(d, true), 0);
            int rows = first ? 0 : 1 + (int)dl_rng_below(&r, 3);
            for (int i = 0; i < rows; i++) {
                int64_t row = (int64_t)dl_rng_below(&r, PD_ROWS);
                dl_value_t v[AR] = {dl_value_int(row), dl_value_int(row * 10)};
                if (dl_delta_find(d, v))
                    continue;
                int64_t diff = dl_rng_below(&r, 2) ? 1 : -1;
                assert_int_equal(dl_delta_add(d, v, diff, NULL), 0);
                net[u][row] += diff;
                undel[u][row] += diff;
            }
            first = false;
            push_ok(s, d);
            last_tx = tx;
        }
        /* The queue holds one DATA slot per u with a nonzero net change, and exactly it. */
        uint64_t want_rows = 0;
        for (int uu = 0; uu < PD_U; uu++)
            for (int row = 0; row < PD_ROWS; row++)
                want_rows += undel[uu][row] != 0;
        dl_sub_stats_t st;
        dl_sub_stats(s, &st);
        if (st.queued_rows != want_rows)
            fail_msg("seed %llu tx %llu: %llu pairs queued, the net change has %llu",
                     (unsigned long long)seed, (unsigned long long)tx,
                     (unsigned long long)st.queued_rows, (unsigned long long)want_rows);
        assert_true(st.queued <= PD_U + 1);
        if (dl_rng_below(&r, 50) != 0)
            continue;
        /* Read everything: in order, and then the sums per u are the producer's. */
        dl_delta_t *m;
        while (dl_sub_next(s, 0, &m, NULL) == 0 && m) {
            size_t nd;
            const uint64_t *t = dl_delta_time(m, &nd);
            assert_int_equal(nd, 2);
            assert_int_equal(dl_delta_kind(m), DL_DELTA_DATA);
            if (have && (t[0] < last_t[0] || (t[0] == last_t[0] && t[1] <= last_t[1])))
                fail_msg("seed %llu: [%llu %llu] after [%llu %llu]", (unsigned long long)seed,
                         (unsigned long long)t[0], (unsigned long long)t[1],
                         (unsigned long long)last_t[0], (unsigned long long)last_t[1]);
            have = true;
            last_t[0] = t[0];
            last_t[1] = t[1];
            for (size_t i = 0; i < dl_delta_len(m); i++) {
                int64_t row = dl_delta_row(m, i)[0].as.i;
                got[t[1]][row] += dl_delta_diff(m, i);
                undel[t[1]][row] -= dl_delta_diff(m, i);
            }
            dl_delta_unref(m);
        }
        assert_int_equal(last_t[0], last_tx);
        for (int uu = 0; uu < PD_U; uu++)
            for (int row = 0; row < PD_ROWS; row++)
                if (got[uu][row] != net[uu][row] || undel[uu][row] != 0)
                    fail_msg("seed %llu: at u %d row %d received %lld, produced %lld",
                             (unsigned long long)seed, uu, row, (long long)got[uu][row],
                             (long long)net[uu][row]);
    }
    dl_sub_unref(s);
}

/* ---- block ------------------------------------------------------------------------------- */

typedef struct block_ctx {
    dl_sub_t *sub;
    int n;
    int rc_last;
    int pushed_ok;
    uint64_t elapsed_ns;
} block_ctx_t;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *block_producer(void *arg) {
    block_ctx_t *c = arg;
    uint64_t start = now_ns();
    for (int i = 1; i <= c->n; i++) {
        const int64_t p[][2] = {{i, 1}};
        dl_delta_t *d = make_delta((uint64_t)i, p, 1);
        c->rc_last = dl_sub_push(c->sub, d, NULL);
        dl_delta_unref(d);
        if (c->rc_last)
            break;
        c->pushed_ok++;
    }
    if (!c->rc_last)
        dl_sub_end(c->sub, 0);
    c->elapsed_ns = now_ns() - start;
    return NULL;
}

static void test_block_slows_producer(void **state) {
    (void)state;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    o.max_queued = 4;
    o.block_timeout_ms = 30000;
    block_ctx_t c = {.n = 40};
    assert_int_equal(dl_sub_new(&o, AR, &c.sub, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_producer, &c), 0);
    int expect = 1;
    for (;;) {
        /* Let the producer fill the queue and wait for room, then take one message: the
         * writer can never run more than max_queued messages ahead of the reader. */
        if (expect <= c.n - 4)
            assert_int_equal(dl__sub_wait_producer_blocked(c.sub, 30000), 0);
        dl_sub_stats_t st;
        dl_sub_stats(c.sub, &st);
        assert_true(st.queued <= 4u + st.ended);
        assert_true(st.pushed - st.delivered <= 4 + 1); /* + the one it waits with */
        dl_delta_t *d;
        assert_int_equal(dl_sub_next(c.sub, -1, &d, NULL), 0);
        if (dl_delta_kind(d) == DL_DELTA_END) {
            assert_int_equal(dl_delta_code(d), 0);
            dl_delta_unref(d);
            break;
        }
        assert_int_equal(dl_delta_time(d, NULL)[0], expect);
        assert_int_equal(find(d, expect), 1);
        expect++;
        dl_delta_unref(d);
    }
    pthread_join(th, NULL);
    assert_int_equal(c.rc_last, 0);
    assert_int_equal(expect, c.n + 1);
    dl_sub_stats_t st;
    dl_sub_stats(c.sub, &st);
    assert_true(st.blocked >= 1);
    assert_true(st.blocked_ns > 0);
    assert_int_equal(st.delivered, c.n + 1);
    dl_sub_unref(c.sub);
}

static void test_block_times_out(void **state) {
    (void)state;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    o.max_queued = 4;
    o.block_timeout_ms = 50;
    block_ctx_t c = {.n = 10};
    assert_int_equal(dl_sub_new(&o, AR, &c.sub, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_producer, &c), 0);
    pthread_join(th, NULL); /* the consumer reads nothing: the writer must not stall forever */
    assert_int_equal(c.rc_last, DL_ETIMEOUT);
    assert_int_equal(c.pushed_ok, 4);
    assert_true(c.elapsed_ns >= 50 * 1000000ull);
    dl_sub_stats_t st;
    dl_sub_stats(c.sub, &st);
    assert_true(st.ended);
    assert_int_equal(st.end_code, DL_ETIMEOUT);
    assert_int_equal(st.blocked, 1);
    assert_true(st.blocked_ns >= 50 * 1000000ull);
    /* The backlog is still delivered, in order, then the END with the reason. */
    for (int i = 1; i <= 4; i++) {
        dl_delta_t *d;
        assert_int_equal(dl_sub_next(c.sub, 0, &d, NULL), 0);
        assert_int_equal(dl_delta_time(d, NULL)[0], i);
        dl_delta_unref(d);
    }
    dl_delta_t *d;
    assert_int_equal(dl_sub_next(c.sub, 0, &d, NULL), 0);
    assert_int_equal(dl_delta_kind(d), DL_DELTA_END);
    assert_int_equal(dl_delta_code(d), DL_ETIMEOUT);
    dl_delta_unref(d);
    assert_int_equal(dl_sub_next(c.sub, 0, &d, NULL), DL_ECLOSED);
    const int64_t p[][2] = {{99, 1}};
    d = make_delta(99, p, 1);
    assert_int_equal(dl_sub_push(c.sub, d, NULL), DL_ECLOSED);
    dl_delta_unref(d);
    dl_sub_unref(c.sub);
}

static void test_block_close_wakes_producer(void **state) {
    (void)state;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    o.max_queued = 2;
    o.block_timeout_ms = -1; /* forever: only the close can release it */
    block_ctx_t c = {.n = 10};
    assert_int_equal(dl_sub_new(&o, AR, &c.sub, NULL), 0);
    dl_sub_ref(c.sub); /* the producer's reference */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_producer, &c), 0);
    assert_int_equal(dl__sub_wait_producer_blocked(c.sub, 30000), 0);
    dl_sub_close(c.sub);
    pthread_join(th, NULL);
    assert_int_equal(c.rc_last, DL_ECLOSED);
    assert_int_equal(c.pushed_ok, 2);
    dl_sub_unref(c.sub);
}

/* ---- drop -------------------------------------------------------------------------------- */

static void test_drop_ends_lagged(void **state) {
    (void)state;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_DROP;
    o.max_queued = 4;
    block_ctx_t c = {.n = 10};
    assert_int_equal(dl_sub_new(&o, AR, &c.sub, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, block_producer, &c), 0);
    pthread_join(th, NULL);
    assert_int_equal(c.rc_last, DL_ELAGGED);
    assert_int_equal(c.pushed_ok, 4);
    dl_sub_stats_t st;
    dl_sub_stats(c.sub, &st);
    assert_int_equal(st.end_code, DL_ELAGGED);
    assert_int_equal(st.dropped, 5);
    assert_int_equal(st.queued, 1); /* only the END */
    assert_int_equal(st.queued_rows, 0);
    dl_delta_t *d;
    assert_int_equal(dl_sub_next(c.sub, 0, &d, NULL), 0);
    assert_int_equal(dl_delta_kind(d), DL_DELTA_END);
    assert_int_equal(dl_delta_code(d), DL_ELAGGED);
    assert_string_equal(dl_err_name(dl_delta_code(d)), "lagged");
    dl_delta_unref(d);
    assert_int_equal(dl_sub_next(c.sub, 0, &d, NULL), DL_ECLOSED);
    dl_sub_unref(c.sub);
    /* The client subscribes again and reads at its pace: no overflow now. */
    assert_int_equal(dl_sub_new(&o, AR, &c.sub, NULL), 0);
    for (int i = 1; i <= 10; i++) {
        const int64_t p[][2] = {{i, 1}};
        push_ok(c.sub, make_delta((uint64_t)i, p, 1));
        assert_int_equal(dl_sub_next(c.sub, 0, &d, NULL), 0);
        assert_int_equal(dl_delta_time(d, NULL)[0], i);
        dl_delta_unref(d);
    }
    dl_sub_unref(c.sub);
}

static void test_drop_byte_limit(void **state) {
    (void)state;
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_DROP;
    o.max_queued = 1000;
    o.max_bytes = 4096;
    dl_sub_t *s;
    assert_int_equal(dl_sub_new(&o, AR, &s, NULL), 0);
    int rc = 0, i;
    for (i = 1; i < 1000 && !rc; i++) {
        int64_t p[8][2];
        for (int k = 0; k < 8; k++)
            p[k][0] = i * 8 + k, p[k][1] = 1;
        dl_delta_t *d = make_delta((uint64_t)i, (const int64_t(*)[2])p, 8);
        rc = dl_sub_push(s, d, NULL);
        dl_delta_unref(d);
        dl_sub_stats_t st;
        dl_sub_stats(s, &st);
        if (!rc)
            assert_true(st.queued_bytes <= 4096);
    }
    assert_int_equal(rc, DL_ELAGGED);
    assert_true(i > 2);
    dl_sub_unref(s);
}

/* ---- callback ---------------------------------------------------------------------------- */

typedef struct cb_ctx {
    pthread_t producer;
    int calls, wrong_thread, ends;
    int64_t sum;
} cb_ctx_t;

static void on_delta(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    cb_ctx_t *c = udata;
    c->calls++;
    if (!pthread_equal(pthread_self(), c->producer))
        c->wrong_thread++;
    if (dl_delta_kind(d) == DL_DELTA_END)
        c->ends++;
    for (size_t i = 0; i < dl_delta_len(d); i++)
        c->sum += dl_delta_diff(d, i);
}

typedef struct cb_run {
    dl_sub_t *sub;
    cb_ctx_t *ctx;
} cb_run_t;

static void *cb_producer(void *arg) {
    cb_run_t *r = arg;
    r->ctx->producer = pthread_self();
    for (int i = 1; i <= 100; i++) {
        const int64_t p[][2] = {{i, 1}, {i - 1, -1}};
        dl_delta_t *d = make_delta((uint64_t)i, p, i == 1 ? 1 : 2);
        if (dl_sub_push(r->sub, d, NULL))
            return "push";
        dl_delta_unref(d);
    }
    dl_sub_end(r->sub, 0);
    dl_sub_end(r->sub, DL_EIO); /* the first end wins */
    return NULL;
}

static void test_callback_on_producer_thread(void **state) {
    (void)state;
    cb_ctx_t ctx = {0};
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    o.udata = &ctx;
    o.policy = DL_SUB_BLOCK; /* ignored by callback delivery */
    cb_run_t run;
    assert_int_equal(dl_sub_new(&o, AR, &run.sub, NULL), 0);
    run.ctx = &ctx;
    assert_int_equal(dl_sub_fd(run.sub), -1);
    dl_delta_t *d;
    assert_int_equal(dl_sub_next(run.sub, 0, &d, NULL), DL_EINVAL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cb_producer, &run), 0);
    void *res;
    pthread_join(th, &res);
    assert_null(res);
    assert_int_equal(ctx.calls, 101);
    assert_int_equal(ctx.wrong_thread, 0);
    assert_int_equal(ctx.ends, 1);
    assert_int_equal(ctx.sum, 1);
    dl_sub_stats_t st;
    dl_sub_stats(run.sub, &st);
    assert_true(st.callback);
    assert_int_equal(st.delivered, 101);
    assert_int_equal(st.queued, 0);
    dl_sub_unref(run.sub);
}

/* dl_sub_close on another thread waits for a callback in flight: once it returns, the
 * callback is not running (udata may be freed). Many rounds, so that close often arrives
 * while the callback runs. */
typedef struct inflight {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, release, finished, closing;
    dl_sub_t *sub;
    bool finished_when_close_returned;
} inflight_t;

static void slow_cb(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    (void)d;
    inflight_t *f = udata;
    pthread_mutex_lock(&f->mu);
    f->entered = true;
    pthread_cond_broadcast(&f->cv);
    while (!f->release)
        pthread_cond_wait(&f->cv, &f->mu);
    f->finished = true;
    pthread_mutex_unlock(&f->mu);
}

static void *inflight_producer(void *arg) {
    inflight_t *f = arg;
    const int64_t p[][2] = {{1, 1}};
    dl_delta_t *d = make_delta(1, p, 1);
    int rc = dl_sub_push(f->sub, d, NULL);
    dl_delta_unref(d);
    dl_sub_unref(f->sub); /* the producer's reference */
    return rc ? "push" : NULL;
}

static void *inflight_closer(void *arg) {
    inflight_t *f = arg;
    pthread_mutex_lock(&f->mu);
    f->closing = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    dl_sub_close(f->sub);
    pthread_mutex_lock(&f->mu);
    f->finished_when_close_returned = f->finished;
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void test_callback_close_waits_for_call(void **state) {
    (void)state;
    for (int round = 0; round < 50; round++) {
        static inflight_t f;
        memset(&f, 0, sizeof f);
        pthread_mutex_init(&f.mu, NULL);
        pthread_cond_init(&f.cv, NULL);
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        o.on_delta = slow_cb;
        o.udata = &f;
        assert_int_equal(dl_sub_new(&o, AR, &f.sub, NULL), 0);
        dl_sub_ref(f.sub);
        pthread_t prod, closer;
        assert_int_equal(pthread_create(&prod, NULL, inflight_producer, &f), 0);
        pthread_mutex_lock(&f.mu);
        while (!f.entered)
            pthread_cond_wait(&f.cv, &f.mu);
        pthread_mutex_unlock(&f.mu);
        assert_int_equal(pthread_create(&closer, NULL, inflight_closer, &f), 0);
        pthread_mutex_lock(&f.mu);
        while (!f.closing)
            pthread_cond_wait(&f.cv, &f.mu);
        f.release = true;
        pthread_cond_broadcast(&f.cv);
        pthread_mutex_unlock(&f.mu);
        pthread_join(closer, NULL);
        void *res;
        pthread_join(prod, &res);
        assert_null(res);
        assert_true(f.finished_when_close_returned);
        pthread_cond_destroy(&f.cv);
        pthread_mutex_destroy(&f.mu);
    }
}

/* ---- allocation failure ------------------------------------------------------------------ */

static void test_alloc_failure_ends_subscription(void **state) {
    (void)state;
    /* For every allocation of a coalescing push, failing it ends the subscription with an
     * END(nomem) the consumer still receives; the producer is told. */
    for (int64_t fail_at = 0; fail_at < 12; fail_at++) {
        dl_sub_t *s;
        assert_int_equal(dl_sub_new(NULL, AR, &s, NULL), 0);
        const int64_t a[][2] = {{1, 1}, {2, 1}}, b[][2] = {{3, 1}, {4, 1}, {5, 1}};
        push_ok(s, make_delta(1, a, 2));
        dl_delta_t *d = make_delta(2, b, 3);
        dl_alloc_fail_after(fail_at);
        int rc = dl_sub_push(s, d, NULL);
        dl_alloc_fail_after(-1);
        dl_delta_unref(d);
        dl_delta_t *got;
        assert_int_equal(dl_sub_next(s, 0, &got, NULL), 0);
        if (rc == 0) {
            assert_int_equal(dl_delta_len(got), 5);
        } else {
            assert_int_equal(rc, DL_ENOMEM);
            assert_int_equal(dl_delta_kind(got), DL_DELTA_END);
            assert_int_equal(dl_delta_code(got), DL_ENOMEM);
        }
        dl_delta_unref(got);
        dl_sub_unref(s);
    }
}

DL_TEST_GROUP(policy, cmocka_unit_test(test_coalesce_consolidates),
              cmocka_unit_test(test_push_rules), cmocka_unit_test(test_coalesce_memory_bound),
              cmocka_unit_test(test_coalesce_per_coordinate),
              cmocka_unit_test(test_block_slows_producer), cmocka_unit_test(test_block_times_out),
              cmocka_unit_test(test_block_close_wakes_producer),
              cmocka_unit_test(test_drop_ends_lagged), cmocka_unit_test(test_drop_byte_limit),
              cmocka_unit_test(test_callback_on_producer_thread),
              cmocka_unit_test(test_callback_close_waits_for_call),
              cmocka_unit_test(test_alloc_failure_ends_subscription));
