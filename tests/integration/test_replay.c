/*
 * test_replay.c: scenario 11 generalized to a stream that is not append-only: a seeded
 * random stream of upserts, cardinality-one replacements, retractions, retractEntity
 * (which also retracts the references to the entity) and graph edges (refs), on a durable
 * store with a checkpoint at a random point; subscriptions to an aggregate, a negation, a
 * recursive rule and a join with refs in the rows. Then:
 * 1. close, reopen the directory, subscribe again: every snapshot equals the state the
 *    subscribers had accumulated before the restart (refs included: entity ids survive);
 * 2. replay the recovered log (dl_db_tx_range, assertions and retractions) into a fresh
 *    engine, translating entity ids through the tempids of each replayed transaction;
 *    after every replayed transaction each subscription of the fresh engine equals the
 *    recovered store's one-shot result at the original transaction (for the queries whose
 *    rows hold no entity ids: those differ between the two stores by construction), and at
 *    the end the ref-free projections are identical.
 * Not here: crash recovery and torn logs (tests/store). Follows docs/subscribe-scenarios.md
 * and docs/storage.md.
 */
#define _XOPEN_SOURCE 700
#include "tests/integration/integ.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/status :db/valueType :db.type/keyword"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/node :db/valueType :db.type/ref :db/cardinality :db.cardinality/one}"
    " {:db/ident :node/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :node/next :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}]";

static const char *rules = "[[(reach ?x ?y) [?x :node/next ?y]]"
                           " [(reach ?x ?y) [?x :node/next ?z] (reach ?z ?y)]]";

enum { NP = 5 };
static const struct {
    const char *text;
    bool refs; /* rows hold entity ids */
} projections[NP] = {
    {"[:find ?s (count ?o) (sum ?a) :with ?o :where [?o :order/status ?s] [?o :order/amount ?a]]",
     false},
    {"[:find ?id :where [?o :order/id ?id] (not [?o :order/status :cancelled])]", false},
    {"[:find ?a ?b :in $ % :where (reach ?x ?y) [?x :node/id ?a] [?y :node/id ?b]]", false},
    {"[:find ?id ?n ?m :in $ % :where [?o :order/id ?id] [?o :order/node ?x] [?x :node/id ?n]"
     " (reach ?x ?y) [?y :node/id ?m]]",
     false},
    {"[:find ?o ?x :where [?o :order/node ?x]]", true},
};

static void subscribe_all(ienv_t *e, iview_t *v) {
    for (int i = 0; i < NP; i++) {
        dl_sub_options_t o;
        dl_sub_options_init(&o);
        if (i % 2)
            o.on_delta = iview_cb;
        iview_sub(e, &v[i], projections[i].text, NULL, 0, NULL, &o);
        iview_drain(&v[i]);
    }
}

static int tx_random(ienv_t *e, dl_rng_t *r) {
    static const char *statuses[] = {"pending", "shipped", "cancelled"};
    char t[512];
    int id = 1 + (int)dl_rng_below(r, 10), a = 1 + (int)dl_rng_below(r, 6),
        b = 1 + (int)dl_rng_below(r, 6);
    switch (dl_rng_below(r, 7)) {
        case 0:
        case 1:
            snprintf(t, sizeof t,
                     "[{:order/id %d :order/status :%s :order/amount %d"
                     " :order/node [:node/id %d]}]",
                     id, statuses[dl_rng_below(r, 3)], (int)dl_rng_below(r, 10) * 10, a);
            break;
        case 2:
            snprintf(t, sizeof t, "[{:order/id %d :order/status :%s}]", id,
                     statuses[dl_rng_below(r, 3)]);
            break;
        case 3:
            snprintf(t, sizeof t, "[[:db/retractEntity [:order/id %d]]]", id);
            break;
        case 4:
            snprintf(t, sizeof t, "[[:db/add [:node/id %d] :node/next [:node/id %d]]]", a, b);
            break;
        case 5:
            snprintf(t, sizeof t, "[[:db/retract [:node/id %d] :node/next [:node/id %d]]]", a, b);
            break;
        default:
            if (dl_rng_below(r, 3)) /* (re)creates the node, or changes nothing */
                snprintf(t, sizeof t, "[{:node/id %d}]", a);
            else /* the node disappears: the edges and order refs to it go with it */
                snprintf(t, sizeof t, "[[:db/retractEntity [:node/id %d]]]", a);
            break;
    }
    int rc = ienv_try_tx(e, t);
    if (rc && rc != DL_ENOTFOUND)
        fail_msg("transact %s: %s", t, dl_err_name(rc));
    assert_int_equal(e->apply_rc, 0);
    assert_int_equal(e->pump_rc, 0);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Replay with entity ids translated: original id -> fresh id. */
enum { MAXE = 512 };
typedef struct replay {
    ienv_t *from;
    const dl_db_t *db;
    ienv_t *to;
    iview_t *views;
    int64_t orig[MAXE], fresh[MAXE];
    int n_map;
    int n_tx;
} replay_t;

static int64_t mapped(const replay_t *r, int64_t e) {
    for (int i = 0; i < r->n_map; i++)
        if (r->orig[i] == e)
            return r->fresh[i];
    return 0;
}

/* An entity position: the fresh id, or the tempid "t<orig>" for an entity not seen yet. */
static dl_value_t entity(const replay_t *r, int64_t e, char (*names)[24], int *n_names) {
    int64_t f = mapped(r, e);
    if (f)
        return dl_value_ref(f);
    char *name = names[(*n_names)++];
    snprintf(name, 24, "t%lld", (long long)e);
    return istr(name);
}

static int replay_one(void *ctx, const dl_commit_t *c) {
    replay_t *r = ctx;
    enum { MAXOPS = 64 };
    dl_tx_op_t ops[MAXOPS];
    char names[2 * MAXOPS][24];
    int n_names = 0;
    assert_true(c->n_changes <= MAXOPS);
    for (size_t i = 0; i < c->n_changes; i++) {
        const dl_change_t *ch = &c->changes[i];
        dl_attr_info_t ai;
        assert_int_equal(dl_db_attr_by_id(r->db, ch->a, &ai, NULL), 0);
        memset(&ops[i], 0, sizeof ops[i]);
        ops[i].op = ch->diff > 0 ? DL_OP_ADD : DL_OP_RETRACT;
        ops[i].e = entity(r, ch->e, names, &n_names);
        ops[i].a = ikw(ai.ident);
        ops[i].v = ai.type == DL_T_REF ? entity(r, ch->v.as.i, names, &n_names) : ch->v;
    }
    r->n_tx++;
    if (c->n_changes == 0)
        return 0; /* a transaction that changed nothing */
    dl_error_t err = {0};
    dl_tx_report_t rep;
    if (dl_store_transact(r->to->st, ops, c->n_changes, NULL, 0, &rep, &err))
        fail_msg("replay of tx %llu: %s", (unsigned long long)c->tx, err.message);
    for (size_t i = 0; i < rep.n_tempids; i++) {
        long long orig;
        assert_int_equal(sscanf(rep.tempids[i].tempid, "t%lld", &orig), 1);
        assert_true(r->n_map < MAXE);
        r->orig[r->n_map] = orig;
        r->fresh[r->n_map++] = rep.tempids[i].id;
    }
    dl_tx_report_fini(&rep);
    for (int i = 0; i < NP; i++) {
        iview_drain(&r->views[i]);
        if (projections[i].refs)
            continue;
        char *got = iview_text(&r->views[i]),
             *want = iview_oracle(r->from, &r->views[i], c->tx, false);
        if (strcmp(got, want) != 0)
            fail_msg("replayed tx %llu, %s:\nfresh     %s\noriginal  %s", (unsigned long long)c->tx,
                     projections[i].text, got, want);
        dl_free(got);
        dl_free(want);
    }
    return 0;
}

static void test_replay_random(void **state) {
    (void)state;
    char dir[] = "/tmp/dl-integ-replay-XXXXXX";
    assert_non_null(mkdtemp(dir));
    dl_rng_t r = {dl_prop_seed("integration_replay")};
    long n_tx = dl_prop_iters(150);
    long checkpoint_at = 1 + (long)dl_rng_below(&r, (uint64_t)n_tx - 1);
    static ienv_t e;
    static iview_t live[NP];
    ienv_open(&e, dir, rules, schema);
    uint64_t schema_tx = e.last_time[0];
    ienv_tx(&e, "[{:node/id 1} {:node/id 2} {:node/id 3} {:node/id 4} {:node/id 5}"
                " {:node/id 6}]");
    subscribe_all(&e, live);
    int refused = 0;
    for (long k = 0; k < n_tx; k++) {
        refused += tx_random(&e, &r) != 0;
        if (k == checkpoint_at)
            assert_int_equal(dl_store_checkpoint(e.st, NULL), 0);
        for (int i = 0; i < NP; i++) {
            iview_drain(&live[i]);
            if (k % 10 == 0)
                iview_check(&e, &live[i], k % 30 == 0);
        }
    }
    char *before[NP];
    for (int i = 0; i < NP; i++) {
        iview_check_current(&e, &live[i], true);
        before[i] = iview_text(&live[i]);
        iview_free(&e, &live[i]);
    }
    ienv_close(&e);

    /* 1. Reopen and resubscribe: the same states, entity ids included. */
    ienv_open(&e, dir, rules, NULL);
    subscribe_all(&e, live);
    for (int i = 0; i < NP; i++) {
        char *after = iview_text(&live[i]);
        if (strcmp(after, before[i]) != 0)
            fail_msg("%s after reopening:\n%s\nbefore:\n%s", projections[i].text, after, before[i]);
        dl_free(after);
    }

    /* 2. Replay into a fresh engine subscribed from the start. */
    static ienv_t fresh;
    static iview_t rebuilt[NP];
    ienv_open(&fresh, NULL, rules, schema);
    subscribe_all(&fresh, rebuilt);
    static replay_t rp;
    memset(&rp, 0, sizeof rp);
    dl_db_t *db = dl_store_db(e.st);
    rp.from = &e;
    rp.db = db;
    rp.to = &fresh;
    rp.views = rebuilt;
    assert_int_equal(dl_db_tx_range(db, schema_tx + 1, 0, replay_one, &rp), 0);
    dl_db_unref(db);
    assert_int_equal(rp.n_tx, 1 + n_tx - refused);
    for (int i = 0; i < NP; i++) {
        char *t = iview_text(&rebuilt[i]);
        if (!projections[i].refs)
            assert_string_equal(t, before[i]);
        else /* as many rows, under other entity ids */
            assert_int_equal(dl_delta_len(rebuilt[i].acc), dl_delta_len(live[i].acc));
        dl_free(t);
        dl_free(before[i]);
        iview_free(&e, &live[i]);
        iview_free(&fresh, &rebuilt[i]);
    }
    print_message("replay: %ld transactions (%d refused), checkpoint after %ld, %d entities "
                  "translated\n",
                  n_tx, refused, checkpoint_at + 1, rp.n_map);
    ienv_close(&fresh);
    ienv_close(&e);
    assert_int_equal(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
}

DL_TEST_GROUP(replay, cmocka_unit_test(test_replay_random));
