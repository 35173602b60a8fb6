/*
 * test_dashboard.c: issue 5's scenario 10 with a concurrent reader: an engine thread
 * commits a seeded stream of order events while the dashboard's aggregate views are kept
 * current by callbacks (on the engine thread, under the dashboard's mutex); the main thread
 * reads one view's state at arbitrary moments (whenever it gets the mutex) and checks it
 * against the one-shot query at the time of the view's latest delta, while the engine
 * keeps committing. After the engine finished, every view equals the one-shot query on
 * the current database. No sleeps: the mutex orders the reads with the updates.
 *
 * The single-threaded dashboard (every view checked after every transaction) is
 * scenarios.dashboard in test_scenarios.c. Not here: channel views read from other threads
 * (uv_loop, random_threaded). Follows docs/subscribe-scenarios.md.
 */
#include "tests/integration/integ.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/status :db/valueType :db.type/keyword"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/customer :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one}]";

static const char *queries[] = {
    "[:find ?s (count ?o) :where [?o :order/status ?s]]",
    "[:find ?c (sum ?a) (max ?a) :with ?o :where [?o :order/customer ?c] [?o :order/amount ?a]]",
    "[:find (count ?o) (sum ?a) :with ?o :where [?o :order/amount ?a]]",
    "[:find ?s ?c (count ?o) :where [?o :order/status ?s] [?o :order/customer ?c]]",
};
enum { NQ = sizeof queries / sizeof queries[0] };

typedef struct dash {
    ienv_t *e;
    pthread_mutex_t mu; /* guards the views and done */
    iview_t views[NQ];
    bool done;
    long n_tx;
    uint64_t seed;
    int failed;
} dash_t;

static void *engine_main(void *arg) {
    dash_t *g = arg;
    static const char *statuses[] = {"pending", "paid", "shipped", "returned"};
    static const char *customers[] = {"ann", "bob", "cy"};
    dl_rng_t r = {g->seed};
    for (long k = 0; k < g->n_tx; k++) {
        char t[256];
        int id = 1 + (int)dl_rng_below(&r, 15);
        if (dl_rng_below(&r, 5) == 0)
            snprintf(t, sizeof t, "[[:db/retractEntity [:order/id %d]]]", id);
        else
            snprintf(t, sizeof t,
                     "[{:order/id %d :order/status :%s :order/customer \"%s\" :order/amount %d}]",
                     id, statuses[dl_rng_below(&r, 4)], customers[dl_rng_below(&r, 3)],
                     (int)dl_rng_below(&r, 20) * 5);
        int rc = ienv_try_tx(g->e, t);
        if ((rc && rc != DL_ENOTFOUND) || g->e->apply_rc || g->e->pump_rc)
            g->failed++;
    }
    pthread_mutex_lock(&g->mu);
    g->done = true;
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static void test_dashboard_concurrent(void **state) {
    (void)state;
    static ienv_t e;
    ienv_open(&e, NULL, NULL, schema);
    static dash_t g;
    memset(&g, 0, sizeof g);
    g.e = &e;
    g.n_tx = dl_prop_iters(200);
    g.seed = dl_prop_seed("integration_dashboard_concurrent");
    pthread_mutex_init(&g.mu, NULL);
    for (int i = 0; i < NQ; i++) {
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        o.on_delta = iview_cb;
        g.views[i].lock = &g.mu;
        iview_sub(&e, &g.views[i], queries[i], NULL, 0, NULL, &o);
    }
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, engine_main, &g), 0);
    long reads = 0, during = 0;
    for (;;) {
        int i = (int)(reads % NQ);
        pthread_mutex_lock(&g.mu);
        bool done = g.done;
        char *got = iview_text(&g.views[i]);
        uint64_t t = g.views[i].time[0];
        int bad = g.views[i].bad;
        pthread_mutex_unlock(&g.mu);
        assert_int_equal(bad, 0);
        /* The view's state at this moment = the one-shot query at its latest delta. */
        char *want = iview_oracle(&e, &g.views[i], t, false);
        if (strcmp(got, want) != 0)
            fail_msg("%s read at tx %llu:\nview     %s\none-shot %s", queries[i],
                     (unsigned long long)t, got, want);
        dl_free(got);
        dl_free(want);
        reads++;
        if (!done)
            during++;
        else
            break; /* the final states are checked below */
    }
    pthread_join(th, NULL);
    assert_int_equal(g.failed, 0);
    for (int i = 0; i < NQ; i++) {
        iview_check_current(&e, &g.views[i], true);
        assert_true(g.views[i].n_log > 1);
    }
    print_message("dashboard: %ld transactions, %ld reads while the engine ran, %ld in all\n",
                  g.n_tx, during, reads);
    for (int i = 0; i < NQ; i++)
        iview_free(&e, &g.views[i]);
    pthread_mutex_destroy(&g.mu);
    ienv_close(&e);
}

DL_TEST_GROUP(dashboard, cmocka_unit_test(test_dashboard_concurrent));
