/*
 * test_backpressure.c: issue 5's scenario 7: a deliberately slow consumer of a Datalog
 * subscription under each policy, with the engine wired as an application wires it (the
 * commit listener applies and pumps, so delivery happens inside the commit):
 * - block: a writer thread commits while the consumer takes one message at a time; the
 *   writer is shown to wait (the subscription's producer-blocked hook, a condition
 *   variable) and never to get more than max_queued transactions ahead of the consumer.
 *   No timing is measured. With a short timeout and a consumer that never reads, the
 *   subscription ends with DL_ETIMEOUT after the backlog, and the commits still succeed.
 * - coalesce: a consumer that reads nothing while hundreds of transactions pass holds one
 *   queued message whose size (queued rows and bytes from the statistics) stays bounded
 *   by the result set, not by the number of transactions; it converges to the right state.
 * - drop: a consumer that falls behind max_queued ends with DL_ELAGGED (the backlog is
 *   discarded); subscribing again gives a fresh snapshot; a consumer that keeps up never
 *   lags.
 * The invariant is checked at every message taken. Not here: callback delivery (it has no
 * queue, so no policy applies) and byte limits (max_bytes). Follows docs/subscribe.md
 * "Policies".
 */
#include "tests/integration/integ.h"

#include "subscribe/subscribe.h" /* dl__sub_wait_producer_blocked: a test hook */

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]";

static const char *q_amounts = "[:find ?id ?amt :where [?o :order/id ?id] [?o :order/amount ?amt]]";

/* ---- block ---------------------------------------------------------------------------- */
typedef struct writer {
    ienv_t *e;
    int n_tx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int committed; /* transactions whose transact call returned */
    int failed;
} writer_t;

static void *writer_main(void *arg) {
    writer_t *w = arg;
    for (int i = 1; i <= w->n_tx; i++) {
        char t[128];
        snprintf(t, sizeof t, "[{:order/id %d :order/amount %d}]", i % 5, i);
        int rc = ienv_try_tx(w->e, t);
        pthread_mutex_lock(&w->mu);
        if (rc || w->e->apply_rc || w->e->pump_rc)
            w->failed++;
        w->committed = i;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    return NULL;
}

/* Waits until the writer has returned from at least n transactions. */
static int writer_wait(writer_t *w, int n) {
    pthread_mutex_lock(&w->mu);
    while (w->committed < n)
        pthread_cond_wait(&w->cv, &w->mu);
    int c = w->committed;
    pthread_mutex_unlock(&w->mu);
    return c;
}

static void test_backpressure_block(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    enum { MAXQ = 2, NTX = 24 };
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    o.max_queued = MAXQ;
    o.block_timeout_ms = 60000; /* a failure, not a hang, if the consumer were never seen */
    static iview_t v;
    iview_sub(&e, &v, q_amounts, NULL, 0, NULL, &o);
    assert_int_equal(iview_drain(&v), 1); /* the snapshot: the queue is empty now */
    static writer_t w;
    memset(&w, 0, sizeof w);
    w.e = &e;
    w.n_tx = NTX;
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
    /* Every transaction changes the result, so each is one message. The writer fills the
     * queue (MAXQ messages) and then waits inside its next commit until the consumer takes
     * one: it is always exactly MAXQ transactions ahead. */
    int taken = 0, waits = 0;
    while (taken + MAXQ < NTX) {
        writer_wait(&w, taken + MAXQ); /* it got as far as the queue allows... */
        assert_int_equal(dl__sub_wait_producer_blocked(v.sub, 60000), 0); /* ...and waits */
        waits++;
        pthread_mutex_lock(&w.mu);
        int c = w.committed;
        pthread_mutex_unlock(&w.mu);
        assert_int_equal(c, taken + MAXQ); /* not one transaction further */
        dl_sub_stats_t st;
        dl_sub_stats(v.sub, &st);
        assert_int_equal(st.queued, MAXQ);
        assert_int_equal(iview_step(&v), 1); /* take one: room for the writer */
        taken++;
        iview_check(&e, &v, false);
    }
    writer_wait(&w, NTX);
    pthread_join(th, NULL);
    assert_int_equal(w.failed, 0);
    taken += iview_drain(&v);
    assert_int_equal(taken, NTX);
    iview_check(&e, &v, true);
    iview_check_current(&e, &v, false);
    dl_sub_stats_t st;
    dl_sub_stats(v.sub, &st);
    assert_int_equal(st.blocked, (uint64_t)waits);
    assert_int_equal(st.delivered, NTX + 1);
    assert_false(st.ended);
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    iview_free(&e, &v);
    ienv_close(&e);
}

/* BLOCK with a short timeout and a consumer that reads nothing: the backlog is kept, the
 * subscription ends with DL_ETIMEOUT, the commits are not failed by it; subscribing again
 * gives a fresh snapshot. Single-threaded: the commit waits for the timeout once. */
static void test_backpressure_block_timeout(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    o.max_queued = 3;
    o.block_timeout_ms = 1;
    static iview_t v;
    iview_sub(&e, &v, q_amounts, NULL, 0, NULL, &o); /* the snapshot takes one slot */
    for (int i = 1; i <= 5; i++)
        ienv_tx(&e, "[{:order/id %d :order/amount %d}]", i, i * 10);
    dl_sub_stats_t st;
    dl_sub_stats(v.sub, &st);
    assert_true(st.ended);
    assert_int_equal(st.end_code, DL_ETIMEOUT);
    assert_int_equal(st.blocked, 1);
    /* The consumer still receives the backlog, in order, then the END. */
    iview_expect(&v, "");
    iview_expect(&v, "+[1 10]");
    iview_expect(&v, "+[2 20]");
    iview_expect_none(&v);
    assert_true(v.ended);
    assert_int_equal(v.end_code, DL_ETIMEOUT);
    iview_check(&e, &v, true); /* the invariant at its latest delta (tx of order 2) */
    iview_free(&e, &v);
    iview_sub(&e, &v, q_amounts, NULL, 0, NULL, &o);
    iview_expect(&v, "+[1 10] +[2 20] +[3 30] +[4 40] +[5 50]");
    iview_check_current(&e, &v, true);
    iview_free(&e, &v);
    ienv_close(&e);
}

/* ---- coalesce ------------------------------------------------------------------------- */
static void test_backpressure_coalesce(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    enum { KEYS = 40, ARITY = 2 };
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof big, "[");
    for (int k = 0; k < KEYS; k++)
        n += (size_t)snprintf(big + n, sizeof big - n, "{:order/id %d :order/amount 0}", k);
    snprintf(big + n, sizeof big - n, "]");
    ienv_tx(&e, "%s", big);
    static iview_t v;
    iview_sub(&e, &v, q_amounts, NULL, 0, NULL, NULL); /* coalesce is the default */
    assert_int_equal(iview_drain(&v), 1);
    assert_int_equal(dl_delta_len(v.acc), KEYS);
    /* Each transaction changes one order's amount: without coalescing every one would be
     * a queued message. The net change since the last delivery is at most the old and the
     * new row of every key: 2 * KEYS rows. */
    const uint64_t row_bytes = ARITY * 16 + 8;
    const uint64_t bound = 2 * (2 * KEYS * row_bytes) + 2048;
    dl_rng_t r = {dl_prop_seed("integration_coalesce")};
    long steps = dl_prop_iters(400);
    uint64_t peak_early = 0;
    for (long i = 0; i < steps; i++) {
        /* a new amount every time: every transaction changes the result */
        ienv_tx(&e, "[{:order/id %d :order/amount %ld}]", (int)dl_rng_below(&r, KEYS), i + 1);
        dl_sub_stats_t st;
        dl_sub_stats(v.sub, &st);
        assert_int_equal(st.queued, 1);
        assert_true(st.queued_rows <= 2 * KEYS);
        if (st.queued_bytes > bound)
            fail_msg("queued %llu bytes after %ld transactions (bound %llu)",
                     (unsigned long long)st.queued_bytes, i + 1, (unsigned long long)bound);
        assert_int_equal(st.lag_times, (uint64_t)(i + 1));
        if (i == steps / 4)
            peak_early = st.peak_queued_bytes;
    }
    dl_sub_stats_t st;
    dl_sub_stats(v.sub, &st);
    assert_int_equal(st.pushed, (uint64_t)steps + 1);
    assert_int_equal(st.coalesced, (uint64_t)steps - 1);
    /* Memory did not grow with the number of transactions once every key had changed. */
    assert_true(st.peak_queued_bytes <= bound);
    print_message("coalesce: %ld transactions, 1 queued message, peak %llu bytes (after a "
                  "quarter: %llu; result %d rows of %llu bytes)\n",
                  steps, (unsigned long long)st.peak_queued_bytes, (unsigned long long)peak_early,
                  KEYS, (unsigned long long)row_bytes);
    /* Catching up: one net delta, and the right state. */
    assert_int_equal(iview_drain(&v), 1);
    assert_true(dl_delta_len(v.acc) == KEYS);
    iview_check(&e, &v, true);
    iview_check_current(&e, &v, false);
    dl_sub_stats(v.sub, &st);
    assert_int_equal(st.queued_bytes, 0);
    assert_int_equal(st.lag_times, 0);
    /* And it keeps following. */
    ienv_tx(&e, "[[:db/retractEntity [:order/id 0]]]");
    assert_int_equal(iview_drain(&v), 1);
    iview_check(&e, &v, true);
    iview_free(&e, &v);
    ienv_close(&e);
}

/* ---- drop ----------------------------------------------------------------------------- */
static void test_backpressure_drop(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_DROP;
    o.max_queued = 4;
    static iview_t slow, fast;
    iview_sub(&e, &slow, q_amounts, NULL, 0, NULL, &o);
    iview_sub(&e, &fast, q_amounts, NULL, 0, NULL, &o);
    dl_registry_stats_t rs;
    for (int i = 1; i <= 10; i++) {
        ienv_tx(&e, "[{:order/id %d :order/amount %d}]", i, i);
        iview_drain(&fast); /* keeps up: never lags */
        iview_check(&e, &fast, i % 5 == 0);
        dl_sub_stats_t st;
        dl_sub_stats(slow.sub, &st);
        /* The snapshot and 3 deltas fill 4 slots; the 4th transaction overflows. */
        assert_int_equal(st.ended, i >= 4);
        if (i == 4) {
            assert_int_equal(st.end_code, DL_ELAGGED);
            assert_int_equal(st.queued, 1); /* the backlog was discarded: only END waits */
            assert_true(st.dropped >= 1);
        }
    }
    /* The slow consumer reads the END at once: no stale data first. */
    iview_expect_none(&slow);
    assert_true(slow.ended);
    assert_int_equal(slow.end_code, DL_ELAGGED);
    assert_null(slow.acc);
    dl_registry_stats(e.reg, &rs);
    assert_int_equal(rs.n_subs, 1); /* the ended subscription was reaped */
    assert_int_equal(rs.n_sources, 1);
    iview_free(&e, &slow);
    /* Subscribing again: a fresh snapshot of the current state, then live again. */
    iview_sub(&e, &slow, q_amounts, NULL, 0, NULL, &o);
    assert_non_null(iview_take(&slow));
    iview_check_current(&e, &slow, true);
    assert_int_equal(dl_delta_len(slow.acc), 10);
    fast.taken = fast.n_log; /* what it read so far was checked above */
    ienv_tx(&e, "[[:db/retractEntity [:order/id 3]]]");
    iview_expect(&slow, "-[3 3]");
    iview_expect(&fast, "-[3 3]");
    iview_check(&e, &slow, true);
    dl_sub_stats_t st;
    dl_sub_stats(fast.sub, &st);
    assert_false(st.ended);
    assert_int_equal(st.delivered, 12);
    iview_free(&e, &slow);
    iview_free(&e, &fast);
    ienv_close(&e);
}

DL_TEST_GROUP(backpressure, cmocka_unit_test(test_backpressure_block),
              cmocka_unit_test(test_backpressure_block_timeout),
              cmocka_unit_test(test_backpressure_coalesce),
              cmocka_unit_test(test_backpressure_drop));
