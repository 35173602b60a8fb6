/*
 * test_random.c: the randomized test of issue 5's invariant, end to end: random
 * transaction streams (orders upserted, changed and retracted; graph edges added and
 * removed, in transactions of one to three operations, some of which fail and must change
 * nothing), random subscriptions drawn from a small query family (patterns, a predicate,
 * an input, aggregates, negation, a recursive rule with and without an input), random
 * consumers (callback; fast, slow and unsubscribing channel consumers) under all three
 * policies. After every step, every subscriber's accumulated result equals the one-shot
 * result at the time of its latest delta (compiled engine; the reference evaluator on a
 * sample of steps); delta times strictly increase; multiplicities stay 0 or 1; a
 * subscription ends only as its policy allows (block: timeout, drop: lagged, coalesce:
 * never). Seeded with dl_prop_seed (DL_SEED reproduces a run, DL_PROP_SCALE scales it).
 * Not here: durable stores (test_replay.c) and time dimensions (test_time.c).
 * Follows docs/subscribe-scenarios.md.
 */
#include "tests/integration/integ.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/status :db/valueType :db.type/keyword"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/customer :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/tags :db/valueType :db.type/keyword"
    "  :db/cardinality :db.cardinality/many}"
    " {:db/ident :node/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :node/next :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}]";

static const char *rules = "[[(reach ?x ?y) [?x :node/next ?y]]"
                           " [(reach ?x ?y) [?x :node/next ?z] (reach ?z ?y)]]";

enum { IN_NONE, IN_STATUS, IN_NODE };
static const struct {
    const char *text;
    int input;
} family[] = {
    {"[:find ?id ?amt :where [?o :order/id ?id] [?o :order/amount ?amt]]", IN_NONE},
    {"[:find ?id :where [?o :order/status :shipped] [?o :order/id ?id] [?o :order/amount ?a]"
     " [(> ?a 20)]]",
     IN_NONE},
    {"[:find ?id ?c :in $ ?st :where [?o :order/status ?st] [?o :order/id ?id]"
     " [?o :order/customer ?c]]",
     IN_STATUS},
    {"[:find ?c (count ?o) (sum ?a) :with ?o :where [?o :order/customer ?c]"
     " [?o :order/amount ?a]]",
     IN_NONE},
    {"[:find (count ?o) (max ?a) :where [?o :order/amount ?a]]", IN_NONE},
    {"[:find ?id :where [?o :order/id ?id] (not [?o :order/status :cancelled])]", IN_NONE},
    {"[:find ?a ?b :in $ % :where (reach ?x ?y) [?x :node/id ?a] [?y :node/id ?b]]", IN_NONE},
    {"[:find ?b :in $ % ?a :where [?x :node/id ?a] (reach ?x ?y) [?y :node/id ?b]]", IN_NODE},
    {"[:find ?id :where [?o :order/id ?id] (or-join [?o] [?o :order/status :shipped]"
     " (and [?o :order/amount ?a] [(>= ?a 40)]))]",
     IN_NONE},
    {"[:find ?id ?c :where [?o :order/id ?id] [(get-else $ ?o :order/customer \"none\") ?c]]",
     IN_NONE},
    {"[:find ?id :where [?o :order/id ?id] [(missing? $ ?o :order/amount)]]", IN_NONE},
    {"[:find ?s (min ?a) (avg ?a) (count-distinct ?c) :with ?o :where [?o :order/status ?s]"
     " [?o :order/amount ?a] [?o :order/customer ?c]]",
     IN_NONE},
    {"[:find ?id ?t :where [?o :order/tags ?t] [?o :order/id ?id]]", IN_NONE},
    {"[:find ?o ?t :where [?o :order/tags ?t]]", IN_NONE}, /* entity refs in the rows */
    {"[:find ?id ?s ?tx :where [?o :order/status ?s ?tx] [?o :order/id ?id]]", IN_NONE},
    {"[:find ?t (count ?o) :where [?o :order/tags ?t] (not [?o :order/status :cancelled])]",
     IN_NONE},
    {"[:find ?b :in $ % :where [?y :node/id ?b] (not-join [?y] [?x :node/id 1] (reach ?x ?y))]",
     IN_NONE},
    {"[:find ?id ?b :in $ % :where [?o :order/id ?id] [?x :node/id ?id] (reach ?x ?y)"
     " [?y :node/id ?b]]",
     IN_NONE},
};
enum { NQ = sizeof family / sizeof family[0] };

static const char *statuses[] = {"pending", "shipped", "cancelled"};
static const char *customers[] = {"ann", "bob", "cy"};

typedef enum consumer { C_CALLBACK, C_FAST, C_SLOW, C_UNSUB } consumer_t;

typedef struct slot {
    bool live;
    consumer_t kind;
    dl_sub_policy_t policy;
    iview_t v;
} slot_t;

enum { NV = 10 };

/* Subscribes s to a random query of the family (with a random input when it takes one)
 * with options o. */
static void sub_query(ienv_t *e, dl_rng_t *r, slot_t *s, const dl_sub_options_t *o) {
    int q = (int)dl_rng_below(r, NQ);
    dl_value_t in;
    char args[64] = "";
    size_t n_in = 0;
    if (family[q].input == IN_STATUS) {
        const char *st = statuses[dl_rng_below(r, 3)];
        in = ikw(st);
        snprintf(args, sizeof args, "[:%s]", st);
        n_in = 1;
    } else if (family[q].input == IN_NODE) {
        int n = 1 + (int)dl_rng_below(r, 6);
        in = dl_value_int(n);
        snprintf(args, sizeof args, "[%d]", n);
        n_in = 1;
    }
    iview_sub(e, &s->v, family[q].text, n_in ? &in : NULL, n_in, args, o);
    s->live = true;
}

/* A random consumer kind and policy (single-threaded: BLOCK with timeout 0, so a full
 * queue ends the subscription at once rather than waiting for a consumer that cannot run). */
static void sub_random(ienv_t *e, dl_rng_t *r, slot_t *s, int *counts) {
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    static const consumer_t kinds[] = {C_CALLBACK, C_CALLBACK, C_FAST, C_FAST,  C_FAST, C_SLOW,
                                       C_SLOW,     C_SLOW,     C_SLOW, C_UNSUB, C_UNSUB};
    s->kind = kinds[dl_rng_below(r, sizeof kinds / sizeof kinds[0])];
    s->policy = (dl_sub_policy_t)dl_rng_below(r, 3);
    o.policy = s->policy;
    o.max_queued = 2 + dl_rng_below(r, 3);
    o.block_timeout_ms = 0;
    if (s->kind == C_CALLBACK)
        o.on_delta = iview_cb;
    sub_query(e, r, s, &o);
    counts[s->kind]++;
}

/* The EDN of one random transaction of one to three operations into t (1024 bytes). */
static void tx_text(dl_rng_t *r, char *t) {
    enum { CAP = 1024 };
    size_t n = (size_t)snprintf(t, CAP, "[");
    int ops = 1 + (int)dl_rng_below(r, 3);
    for (int k = 0; k < ops; k++) {
        int id = 1 + (int)dl_rng_below(r, 8);
        int a = 1 + (int)dl_rng_below(r, 6), b = 1 + (int)dl_rng_below(r, 6);
        switch (dl_rng_below(r, 9)) {
            case 0:
            case 1:
                n += (size_t)snprintf(
                    t + n, CAP - n,
                    "{:order/id %d :order/status :%s :order/customer \"%s\" :order/amount %d}", id,
                    statuses[dl_rng_below(r, 3)], customers[dl_rng_below(r, 3)],
                    (int)dl_rng_below(r, 6) * 10);
                break;
            case 2:
                n += (size_t)snprintf(t + n, CAP - n, "{:order/id %d :order/status :%s}", id,
                                      statuses[dl_rng_below(r, 3)]);
                break;
            case 3:
                n += (size_t)snprintf(t + n, CAP - n, "[:db/retractEntity [:order/id %d]]", id);
                break;
            case 4:
            case 5:
                n += (size_t)snprintf(t + n, CAP - n,
                                      "[:db/add [:node/id %d] :node/next [:node/id %d]]", a, b);
                break;
            case 6:
                n += (size_t)snprintf(t + n, CAP - n,
                                      "[:db/retract [:node/id %d] :node/next [:node/id %d]]", a, b);
                break;
            case 7:
                n += (size_t)snprintf(t + n, CAP - n, "{:order/id %d :order/tags :t%d}", id, a % 3);
                break;
            default:
                n += (size_t)snprintf(t + n, CAP - n,
                                      "[:db/retract [:order/id %d] :order/tags :t%d]", id, a % 3);
                break;
        }
    }
    snprintf(t + n, CAP - n, "]");
}

/* A refused transaction may only be a retractEntity of a missing order (notfound) or two
 * values for one attribute in one transaction (conflict). */
static bool refusal_ok(int rc) { return rc == 0 || rc == DL_ENOTFOUND || rc == DL_ECONFLICT; }

/* One random transaction; returns its code. */
static int tx_random(ienv_t *e, dl_rng_t *r) {
    char t[1024];
    tx_text(r, t);
    uint64_t commits = e->commits;
    int rc = ienv_try_tx(e, t);
    /* A refused transaction changes nothing and reaches no listener. */
    if (!refusal_ok(rc))
        fail_msg("transact %s: %s", t, dl_err_name(rc));
    if (rc)
        assert_int_equal(e->commits, commits);
    assert_int_equal(e->apply_rc, 0);
    assert_int_equal(e->pump_rc, 0);
    return rc;
}

static void test_random_invariant(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("integration_random")};
    static ienv_t e;
    ienv_open(&e, NULL, rules, schema);
    ienv_tx(&e, "[{:node/id 1} {:node/id 2} {:node/id 3} {:node/id 4} {:node/id 5}"
                " {:node/id 6}]");
    static slot_t slots[NV];
    memset(slots, 0, sizeof slots);
    int counts[4] = {0}, ends[3] = {0}, refused = 0, closes = 0;
    long steps = dl_prop_iters(400);
    int deferred_pumps = 0;
    for (long step = 0; step < steps; step++) {
        /* Sometimes the engine pumps inside each commit, sometimes later, after several
         * commits (subscribing to a source with undelivered deltas included). */
        if (dl_rng_below(&r, 10) == 0)
            e.pump_in_commit = !e.pump_in_commit;
        int op = (int)dl_rng_below(&r, 100);
        slot_t *s = &slots[dl_rng_below(&r, NV)];
        if (op < 55) {
            refused += tx_random(&e, &r) != 0;
        } else if (op < 80) {
            if (!s->live)
                sub_random(&e, &r, s, counts);
        } else if (op < 92) {
            if (s->live && (s->kind == C_UNSUB || dl_rng_below(&r, 2) == 0)) {
                if (dl_rng_below(&r, 2)) { /* from the engine side */
                    iview_free(&e, &s->v);
                } else { /* from the consumer side: reaped at the next pump */
                    dl_sub_close(s->v.sub);
                    s->v.sub = NULL;
                    iview_free(&e, &s->v);
                    ienv_pump(&e);
                }
                s->live = false;
                closes++;
            }
        }
        if (!e.pump_in_commit && dl_rng_below(&r, 3) == 0) {
            ienv_pump(&e);
            deferred_pumps++;
        }
        bool naive = step % 5 == 0 || getenv("DL_INTEG_NAIVE");
        for (int i = 0; i < NV; i++) {
            slot_t *x = &slots[i];
            if (!x->live)
                continue;
            switch (x->kind) {
                case C_FAST:
                case C_UNSUB:
                    iview_drain(&x->v);
                    break;
                case C_SLOW:
                    if (dl_rng_below(&r, 12) == 0)
                        iview_drain(&x->v);
                    else if (dl_rng_below(&r, 5) == 0)
                        iview_step(&x->v);
                    break;
                case C_CALLBACK:
                    break;
            }
            if (x->v.have_time)
                iview_check(&e, &x->v, naive);
            if (x->v.ended) {
                /* Only the policy's own ending; a callback has no queue and never ends. */
                if (x->kind == C_CALLBACK || x->policy == DL_SUB_COALESCE)
                    fail_msg("%s: a %s subscription ended with %s", x->v.query,
                             x->kind == C_CALLBACK ? "callback" : "coalescing",
                             dl_err_name(x->v.end_code));
                assert_int_equal(x->v.end_code,
                                 x->policy == DL_SUB_BLOCK ? DL_ETIMEOUT : DL_ELAGGED);
                ends[x->policy]++;
                iview_free(&e, &x->v); /* the client would subscribe again */
                x->live = false;
            }
        }
    }
    /* Everyone catches up: every live subscriber equals the current one-shot result. */
    ienv_pump(&e);
    for (int i = 0; i < NV; i++)
        if (slots[i].live) {
            iview_drain(&slots[i].v);
            if (!slots[i].v.ended)
                iview_check_current(&e, &slots[i].v, true);
            iview_free(&e, &slots[i].v);
        }
    dl_registry_stats_t rs;
    dl_registry_stats(e.reg, &rs);
    assert_int_equal(rs.n_subs, 0);
    assert_int_equal(rs.n_sources, 0);
    assert_int_equal(rs.sources_opened, rs.sources_closed);
    assert_int_equal(dl_qsrcs_count(e.qs), 0);
    print_message("random: %ld steps, %d deferred pumps, %d refused transactions; subscribers: %d "
                  "callback, %d fast,"
                  " %d slow, %d unsubscribing; %d closed early; ended: %d timeout, %d lagged;"
                  " %llu sources opened\n",
                  steps, deferred_pumps, refused, counts[C_CALLBACK], counts[C_FAST],
                  counts[C_SLOW], counts[C_UNSUB], closes, ends[DL_SUB_BLOCK], ends[DL_SUB_DROP],
                  (unsigned long long)rs.sources_opened);
    ienv_close(&e);
}

/* ---- threaded: an engine thread, and consumers on the main thread polling fds --------- */
typedef struct engine {
    ienv_t *e;
    long n_tx;
    uint64_t seed;
    int failed;
} engine_t;

static void *engine_main(void *arg) {
    engine_t *g = arg;
    dl_rng_t r = {g->seed};
    for (long k = 0; k < g->n_tx; k++) {
        char t[1024];
        tx_text(&r, t);
        if (!refusal_ok(ienv_try_tx(g->e, t)) || g->e->apply_rc || g->e->pump_rc)
            g->failed++;
    }
    dl_registry_t *reg = g->e->reg; /* shutdown: every subscription ends with code 0 */
    g->e->reg = NULL;
    dl_registry_free(reg);
    return NULL;
}

/* The same invariant with real threads: the engine commits a random stream on its own
 * thread (delivering inside its commits, so BLOCK subscribers make it wait for real);
 * the main thread consumes channel subscriptions under all three policies, waiting with
 * poll() on their fds and taking one message or everything at random, and checks each
 * subscriber at its latest delta while the engine keeps committing. When the engine shuts
 * the registry down, every subscription ends: normally, or lagged (drop). */
static void test_random_threaded(void **state) {
    (void)state;
    dl_rng_t r = {dl_prop_seed("integration_random_threaded")};
    static ienv_t e;
    ienv_open(&e, NULL, rules, schema);
    ienv_tx(&e, "[{:node/id 1} {:node/id 2} {:node/id 3} {:node/id 4} {:node/id 5}"
                " {:node/id 6}]");
    enum { K = 8 };
    static slot_t slots[K];
    memset(slots, 0, sizeof slots);
    for (int i = 0; i < K; i++) {
        /* Channel consumers on this thread; BLOCK waits for them for real (the timeout is
         * a failure rather than a hang). */
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        slots[i].kind = C_SLOW;
        slots[i].policy = o.policy = (dl_sub_policy_t)(i % 3);
        o.max_queued = 2 + dl_rng_below(&r, 3);
        o.block_timeout_ms = 60000;
        sub_query(&e, &r, &slots[i], &o);
    }
    static engine_t g;
    g = (engine_t){&e, dl_prop_iters(200), r.s ^ 0x5eed, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, engine_main, &g), 0);
    long checks = 0;
    int ends[3] = {0};
    for (;;) {
        struct pollfd fds[K];
        int map[K], n = 0;
        for (int i = 0; i < K; i++)
            if (!slots[i].v.ended) {
                fds[n] = (struct pollfd){.fd = dl_sub_fd(slots[i].v.sub), .events = POLLIN};
                map[n++] = i;
            }
        if (n == 0)
            break;
        assert_true(poll(fds, (nfds_t)n, -1) > 0);
        for (int j = 0; j < n; j++) {
            if (!(fds[j].revents & POLLIN) || dl_rng_below(&r, 3) == 0)
                continue; /* a slow consumer: leave it for later */
            iview_t *v = &slots[map[j]].v;
            if (dl_rng_below(&r, 2))
                iview_step(v);
            else
                iview_drain(v);
            if (v->have_time) {
                iview_check(&e, v, false);
                checks++;
            }
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(g.failed, 0);
    uint64_t waits = 0;
    int lagged = 0;
    for (int i = 0; i < K; i++) {
        slot_t *x = &slots[i];
        dl_sub_stats_t st;
        dl_sub_stats(x->v.sub, &st);
        waits += st.blocked;
        lagged += x->v.end_code == DL_ELAGGED;
        ends[x->policy]++;
        if (x->v.end_code == 0) /* a normal end: it saw everything */
            iview_check_current(&e, &x->v, true);
        else if (x->policy != DL_SUB_DROP || x->v.end_code != DL_ELAGGED)
            fail_msg("%s: a %d-policy subscription ended with %s", x->v.query, (int)x->policy,
                     dl_err_name(x->v.end_code));
        iview_free(&e, &x->v);
    }
    print_message("random threaded: %ld transactions, %ld checks while the engine ran; "
                  "%d coalesce, %d block, %d drop consumers; the engine waited %llu times; "
                  "%d lagged\n",
                  g.n_tx, checks, ends[DL_SUB_COALESCE], ends[DL_SUB_BLOCK], ends[DL_SUB_DROP],
                  (unsigned long long)waits, lagged);
    ienv_close(&e);
}

DL_TEST_GROUP(random, cmocka_unit_test(test_random_invariant),
              cmocka_unit_test(test_random_threaded));
