/*
 * test_events.c: issue 5's scenario 11, event sourcing: events (deposits and withdrawals)
 * arrive as transactions on a durable store (a fresh mkdtemp directory), projections are
 * subscriptions (balances, event counts per kind, the list of large withdrawals), by
 * callback and by channel. Then:
 * 1. the engine is closed and the directory reopened (checkpoint + log tail recovered);
 *    subscribing again yields projection states identical to those before the restart;
 * 2. the recovered log (dl_db_tx_range) is replayed, transaction by transaction, into a
 *    fresh engine whose projections were subscribed while it was empty: after every
 *    replayed event each projection equals the one-shot result on the recovered store at
 *    the original transaction, and at the end it is identical to the live projections.
 * Not here: retractions in the log and entity translation (test_replay.c), crash recovery
 * (tests/store). Follows docs/subscribe-scenarios.md; storage semantics in docs/storage.md.
 */
#define _XOPEN_SOURCE 700
#include "tests/integration/integ.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *schema =
    "[{:db/ident :event/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :event/account :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one :db/index true}"
    " {:db/ident :event/kind :db/valueType :db.type/keyword :db/cardinality :db.cardinality/one}"
    " {:db/ident :event/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]";

enum { NP = 3 };
static const char *projections[NP] = {
    "[:find ?acc (sum ?amt) (count ?ev) :with ?ev :where [?ev :event/account ?acc]"
    " [?ev :event/amount ?amt]]",
    "[:find ?acc ?k (count ?ev) :where [?ev :event/account ?acc] [?ev :event/kind ?k]]",
    "[:find ?id ?acc ?amt :where [?ev :event/kind :withdrawal] [?ev :event/amount ?amt]"
    " [(< ?amt -200)] [?ev :event/id ?id] [?ev :event/account ?acc]]",
};

static void subscribe_all(ienv_t *e, iview_t *v) {
    for (int i = 0; i < NP; i++) {
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        if (i == 0)
            o.on_delta = iview_cb; /* the balance projection by callback */
        iview_sub(e, &v[i], projections[i], NULL, 0, NULL, &o);
        iview_drain(&v[i]);
    }
}

static void event(ienv_t *e, dl_rng_t *r, int id) {
    static const char *accounts[] = {"acme", "bolt", "cog"};
    int amt = 1 + (int)dl_rng_below(r, 300);
    bool dep = dl_rng_below(r, 2) == 0;
    ienv_tx(e, "[{:event/id %d :event/account \"%s\" :event/kind :%s :event/amount %d}]", id,
            accounts[dl_rng_below(r, 3)], dep ? "deposit" : "withdrawal", dep ? amt : -amt);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Replays the recovered log into a fresh engine. */
typedef struct replay {
    ienv_t *from; /* the recovered engine */
    const dl_db_t *db;
    ienv_t *to;
    iview_t *views; /* the fresh engine's projections */
    int n_tx;
} replay_t;

static int replay_one(void *ctx, const dl_commit_t *c) {
    replay_t *r = ctx;
    enum { MAXOPS = 8 };
    dl_tx_op_t ops[MAXOPS];
    assert_true(c->n_changes <= MAXOPS);
    for (size_t i = 0; i < c->n_changes; i++) {
        const dl_change_t *ch = &c->changes[i];
        assert_int_equal(ch->diff, 1); /* an event log is append-only */
        dl_attr_info_t ai;
        assert_int_equal(dl_db_attr_by_id(r->db, ch->a, &ai, NULL), 0);
        memset(&ops[i], 0, sizeof ops[i]);
        ops[i].op = DL_OP_ADD;
        ops[i].e = dl_value_int(-ch->e); /* one tempid per original entity */
        ops[i].a = ikw(ai.ident);
        ops[i].v = ch->v;
    }
    dl_error_t err = {0};
    if (dl_store_transact(r->to->st, ops, c->n_changes, NULL, 0, NULL, &err))
        fail_msg("replay of tx %llu: %s", (unsigned long long)c->tx, err.message);
    r->n_tx++;
    /* After every replayed event, each projection equals the recovered store's one-shot
     * result at the original transaction. */
    for (int i = 0; i < NP; i++) {
        iview_drain(&r->views[i]);
        char *got = iview_text(&r->views[i]),
             *want = iview_oracle(r->from, &r->views[i], c->tx, false);
        if (strcmp(got, want) != 0)
            fail_msg("replayed tx %llu, %s:\nfresh     %s\noriginal  %s", (unsigned long long)c->tx,
                     projections[i], got, want);
        dl_free(got);
        dl_free(want);
    }
    return 0;
}

static void test_event_sourcing(void **state) {
    (void)state;
    char dir[] = "/tmp/dl-integ-events-XXXXXX";
    assert_non_null(mkdtemp(dir));
    dl_rng_t r = {dl_prop_seed("integration_events")};
    int n_events = (int)dl_prop_iters(60);
    static ienv_t e;
    static iview_t live[NP];
    ienv_open(&e, dir, NULL, schema);
    uint64_t schema_tx = e.last_time[0];
    subscribe_all(&e, live);
    for (int id = 1; id <= n_events; id++) {
        event(&e, &r, id);
        if (id == n_events / 2)
            assert_int_equal(dl_store_checkpoint(e.st, NULL), 0);
        iview_check(&e, &live[0], id % 10 == 0);
        if (id % 7 == 0)
            for (int i = 1; i < NP; i++) {
                iview_drain(&live[i]);
                iview_check(&e, &live[i], false);
            }
    }
    char *before[NP];
    for (int i = 0; i < NP; i++) {
        iview_drain(&live[i]);
        iview_check_current(&e, &live[i], true);
        before[i] = iview_text(&live[i]);
        print_message("projection %d: %s\n", i, before[i]);
        iview_free(&e, &live[i]);
    }
    assert_true(strlen(before[0]) > 2 && strlen(before[1]) > 2);
    dl_store_stats_t ss;
    dl_store_stats(e.st, &ss);
    uint64_t last_tx = ss.last_tx;
    ienv_close(&e);

    /* 1. Reopen: the recovered store, a new engine, the projections subscribed again. */
    ienv_open(&e, dir, NULL, NULL);
    dl_store_stats(e.st, &ss);
    assert_int_equal(ss.last_tx, last_tx);
    assert_true(ss.checkpoint_tx > 0 && ss.checkpoint_tx < last_tx); /* checkpoint + tail */
    subscribe_all(&e, live);
    for (int i = 0; i < NP; i++) {
        char *after = iview_text(&live[i]);
        if (strcmp(after, before[i]) != 0)
            fail_msg("%s after reopening:\n%s\nbefore:\n%s", projections[i], after, before[i]);
        dl_free(after);
    }

    /* 2. Replay the log into a fresh engine subscribed from the start. */
    static ienv_t fresh;
    static iview_t rebuilt[NP];
    ienv_open(&fresh, NULL, NULL, schema);
    subscribe_all(&fresh, rebuilt);
    for (int i = 0; i < NP; i++)
        assert_int_equal(dl_delta_len(rebuilt[i].acc), 0);
    dl_db_t *db = dl_store_db(e.st);
    replay_t rp = {&e, db, &fresh, rebuilt, 0};
    assert_int_equal(dl_db_tx_range(db, schema_tx + 1, 0, replay_one, &rp), 0);
    dl_db_unref(db);
    assert_int_equal(rp.n_tx, n_events);
    for (int i = 0; i < NP; i++) {
        char *t = iview_text(&rebuilt[i]);
        assert_string_equal(t, before[i]);
        dl_free(t);
    }

    /* The recovered engine keeps projecting new events, like the fresh one. */
    for (int id = n_events + 1; id <= n_events + 5; id++) {
        dl_rng_t r2 = r;
        event(&e, &r, id);
        event(&fresh, &r2, id);
    }
    for (int i = 0; i < NP; i++) {
        iview_drain(&live[i]);
        iview_drain(&rebuilt[i]);
        iview_check_current(&e, &live[i], false);
        iview_check_current(&fresh, &rebuilt[i], false);
        char *a = iview_text(&live[i]), *b = iview_text(&rebuilt[i]);
        assert_string_equal(a, b);
        dl_free(a);
        dl_free(b);
        dl_free(before[i]);
        iview_free(&e, &live[i]);
        iview_free(&fresh, &rebuilt[i]);
    }
    ienv_close(&fresh);
    ienv_close(&e);
    assert_int_equal(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

DL_TEST_GROUP(events, cmocka_unit_test(test_event_sourcing));
