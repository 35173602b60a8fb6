/*
 * test_uv.c: issue 5's scenario 9: channel delivery consumed from a libuv loop. An engine
 * thread commits transactions (its commit listener applies them to the live queries and
 * pumps the registry); the main thread runs a libuv loop that consumes two subscriptions
 * through dl_sub_uv_start: a coalescing one and a blocking one with a tiny queue (so the
 * engine waits for the loop whenever the loop falls two messages behind: how often
 * depends on scheduling and is only reported). At every message the loop thread checks the
 * invariant against the one-shot engine at the message's time, while the engine keeps
 * committing. When the engine frees the registry, both subscriptions end normally, the
 * watchers close themselves and uv_run returns.
 *
 * Not here: the runtime's TCP relay (the runtime issue). Follows docs/subscribe.md
 * "Delivery".
 */
#include "tests/integration/integ.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/status :db/valueType :db.type/keyword"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]";

typedef struct engine {
    ienv_t *e;
    int n_tx;
    int failed;
} engine_t;

static void *engine_main(void *arg) {
    engine_t *g = arg;
    for (int i = 0; i < g->n_tx; i++) {
        char t[160];
        static const char *statuses[] = {"pending", "shipped", "cancelled"};
        snprintf(t, sizeof t, "[{:order/id %d :order/status :%s :order/amount %d}]", i % 9,
                 statuses[(i + i / 9) % 3], (i * 7) % 50);
        if (ienv_try_tx(g->e, t) || g->e->apply_rc || g->e->pump_rc)
            g->failed++;
    }
    /* The engine shuts down: every subscription ends with code 0. */
    dl_registry_t *reg = g->e->reg;
    g->e->reg = NULL;
    dl_registry_free(reg);
    return NULL;
}

typedef struct consumer {
    ienv_t *e;
    iview_t *v;
    uv_thread_t loop_thread;
    int wrong_thread, messages, checks;
} consumer_t;

static void on_message(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    consumer_t *c = udata;
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &c->loop_thread))
        c->wrong_thread++;
    c->messages++;
    iview_apply(c->v, d);
    /* The invariant at this message's time, while the engine keeps committing. */
    if (dl_delta_kind(d) == DL_DELTA_DATA && c->messages % 4 == 1) {
        iview_check(c->e, c->v, false);
        c->checks++;
    }
}

static void test_uv_loop(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    static iview_t shipped, counts;
    iview_sub(&e, &shipped,
              "[:find ?id ?amt :where [?o :order/status :shipped] [?o :order/id ?id]"
              " [?o :order/amount ?amt]]",
              NULL, 0, NULL, NULL);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.policy = DL_SUB_BLOCK;
    o.max_queued = 2;
    o.block_timeout_ms = 60000; /* a failure rather than a hang */
    iview_sub(&e, &counts, "[:find ?s (count ?o) :where [?o :order/status ?s]]", NULL, 0, NULL, &o);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    static consumer_t c1, c2;
    c1 = (consumer_t){&e, &shipped, uv_thread_self(), 0, 0, 0};
    c2 = (consumer_t){&e, &counts, uv_thread_self(), 0, 0, 0};
    dl_sub_uv_t *w1, *w2;
    assert_int_equal(dl_sub_uv_start(&loop, shipped.sub, on_message, &c1, &w1, NULL), 0);
    assert_int_equal(dl_sub_uv_start(&loop, counts.sub, on_message, &c2, &w2, NULL), 0);
    static engine_t g;
    g = (engine_t){&e, (int)dl_prop_iters(150), 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, engine_main, &g), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* returns once both ENDs arrived */
    pthread_join(th, NULL);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(g.failed, 0);
    assert_int_equal(c1.wrong_thread + c2.wrong_thread, 0);
    assert_true(shipped.ended && counts.ended);
    assert_int_equal(shipped.end_code, 0);
    assert_int_equal(counts.end_code, 0);
    /* After the last transaction, both equal the one-shot result on the final database. */
    iview_check_current(&e, &shipped, true);
    iview_check_current(&e, &counts, true);
    /* The blocking one received every change (one delta per transaction that changed the
     * counts): nothing coalesced, nothing dropped. */
    dl_sub_stats_t st;
    dl_sub_stats(counts.sub, &st);
    assert_int_equal(st.coalesced, 0);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.delivered, counts.n_log + 1); /* the DATA deltas and the END */
    print_message("libuv: %d and %d messages, %d + %d checks during the run; the engine waited "
                  "%llu times for the loop\n",
                  c1.messages, c2.messages, c1.checks, c2.checks, (unsigned long long)st.blocked);
    iview_free(&e, &shipped); /* the registry is gone: releases the reference */
    iview_free(&e, &counts);
    ienv_close(&e);
}

DL_TEST_GROUP(uv, cmocka_unit_test(test_uv_loop));
