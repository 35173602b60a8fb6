/*
 * event-sourcing.c: account deposits and withdrawals as an append-only stream of events
 * (one transaction each, on a durable store), and two projections kept current by a live
 * Datalog subscription: the balance per account and the overdraft alert list. Then the
 * store is closed and reopened from its checkpoint and log, and the projections are
 * rebuilt twice, by subscribing again and by replaying the transaction log into a fresh
 * store with the subscription attached from the start; all must be identical to the ones computed
 * before the restart, and to the compiled engine's one-shot result (the program exits 1 otherwise).
 *
 * The overdraft list is derived by the subscriber from the balance diffs: Datalog cannot
 * filter on an aggregate's value (no subqueries), so "accounts whose sum is < 0" is not one
 * query. Usage: event-sourcing [WORKDIR] (default: a fresh folder under /tmp).
 */
#include <deltalog/datalog.h>
#include <deltalog/deltalog.h>
#include <deltalog/store.h>
#include <deltalog/subscribe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ACCOUNTS 16

static const char *schema =
    "[{:db/ident :event/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :event/account :db/valueType :db.type/string"
    "  :db/cardinality :db.cardinality/one :db/index true}"
    " {:db/ident :event/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]";

/* The projection: balance per account, from which the overdraft list follows. */
static const char *q_balance = "[:find ?account (sum ?amount) :with ?ev"
                               " :where [?ev :event/account ?account] [?ev :event/amount ?amount]]";

typedef struct projection {
    const char *name[MAX_ACCOUNTS]; /* interned strings (immortal) */
    int64_t balance[MAX_ACCOUNTS];
    int present[MAX_ACCOUNTS];
    int n;
    int quiet; /* do not print changes (while a snapshot is loaded) */
    int bad;   /* a delta that does not fit the projection */
} projection_t;

typedef struct app {
    dl_store_t *st;
    dl_db_t *db;
    dl_qsrcs_t *qs;
    dl_registry_t *reg;
    dl_sub_t *sub;
    projection_t proj;
} app_t;

static dl_error_t err;

static void check(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "event-sourcing: %s: %s (%s)\n", what, err.message, dl_err_name(rc));
        exit(1);
    }
}

static int account_index(projection_t *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->name[i], name) == 0)
            return i;
    if (p->n == MAX_ACCOUNTS)
        return -1;
    p->name[p->n] = name;
    return p->n++;
}

/* Applies one delta of the balance query: the old row of an account is retracted, the new
 * one asserted (retractions are applied first, since rows come in no particular order). */
static void projection_apply(projection_t *p, const dl_delta_t *d) {
    int64_t before[MAX_ACCOUNTS];
    int was[MAX_ACCOUNTS];
    memcpy(before, p->balance, sizeof before);
    memcpy(was, p->present, sizeof was);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < dl_delta_len(d); i++) {
            int64_t diff = dl_delta_diff(d, i);
            const dl_value_t *row = dl_delta_row(d, i);
            if ((diff < 0) != (pass == 0))
                continue;
            int a = account_index(p, dl_value_str(row[0], NULL));
            if (a < 0 || (diff != 1 && diff != -1) || p->present[a] == (diff > 0)) {
                p->bad++;
                continue;
            }
            p->present[a] = diff > 0;
            p->balance[a] = row[1].as.i;
        }
    if (p->quiet)
        return;
    for (int a = 0; a < p->n; a++) {
        int64_t old = was[a] ? before[a] : 0, now = p->present[a] ? p->balance[a] : 0;
        if (was[a] == p->present[a] && old == now)
            continue;
        printf("  balance %-6s %5lld -> %5lld", p->name[a], (long long)old, (long long)now);
        if (old >= 0 && now < 0)
            printf("   ALERT: %s is overdrawn", p->name[a]);
        else if (old < 0 && now >= 0)
            printf("   cleared: %s is back in credit", p->name[a]);
        printf("\n");
    }
}

static void on_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    (void)sub;
    if (dl_delta_kind(d) == DL_DELTA_DATA)
        projection_apply(udata, d);
}

/* The projection as text: balances sorted by account, then the overdraft list. */
static void projection_text(const projection_t *p, char *out, size_t cap) {
    int order[MAX_ACCOUNTS], n = 0;
    for (int a = 0; a < p->n; a++)
        if (p->present[a]) {
            int j = n++;
            while (j > 0 && strcmp(p->name[order[j - 1]], p->name[a]) > 0) {
                order[j] = order[j - 1];
                j--;
            }
            order[j] = a;
        }
    size_t len = 0;
    len += (size_t)snprintf(out + len, cap - len, "balances:");
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, " %s=%lld", p->name[order[i]],
                                (long long)p->balance[order[i]]);
    if (len < cap)
        len += (size_t)snprintf(out + len, cap - len, "  overdraft:");
    for (int i = 0; i < n && len < cap; i++)
        if (p->balance[order[i]] < 0)
            len += (size_t)snprintf(out + len, cap - len, " %s", p->name[order[i]]);
}

/* The projection's balances in the canonical EDN of a query result, for comparing with
 * the one-shot result. */
static void projection_edn(const projection_t *p, char *out, size_t cap) {
    char text[1024];
    projection_text(p, text, sizeof text);
    /* text is "balances: a=1 b=2  overdraft: ..."; rewrite the balances as [["a" 1] ...]. */
    size_t len = (size_t)snprintf(out, cap, "[");
    const char *s = text + strlen("balances:");
    int first = 1;
    char name[64];
    long long v;
    int used;
    while (sscanf(s, " %63[^= ]=%lld%n", name, &v, &used) == 2) {
        len += (size_t)snprintf(out + len, cap - len, "%s[\"%s\" %lld]", first ? "" : " ", name, v);
        first = 0;
        s += used;
    }
    snprintf(out + len, cap - len, "]");
}

static int current_db(void *ctx, const struct dl_db **out, uint64_t *t, size_t *n, dl_error_t *e) {
    (void)e;
    app_t *app = ctx;
    dl_db_unref(app->db);
    *out = app->db = dl_store_db(app->st);
    t[0] = dl_db_basis_tx(app->db);
    *n = 1;
    return 0;
}

/* Feeds a commit to the live queries, after releasing the snapshot lent by current_db
 * (a snapshot held across commits would pin every version of the store after it). */
static void on_commit(void *ctx, const dl_commit_t *c) {
    app_t *app = ctx;
    dl_db_unref(app->db);
    app->db = NULL;
    if (dl_qsrcs_apply(app->qs, c, NULL) != 0)
        fprintf(stderr, "a live query failed at tx %llu\n", (unsigned long long)c->tx);
}

/* Opens (or recovers) the store in dir (NULL: in memory) and its live-query registry. */
static void app_open(app_t *app, const char *dir) {
    memset(app, 0, sizeof *app);
    dl_store_options_t so = {0};
    so.sync_mode = DL_STORE_SYNC_EVERY; /* every event is on disk before it is acknowledged */
    if (dir)
        check(dl_store_open(dir, &so, &app->st, &err), "open store");
    else
        check(dl_store_open_memory(&app->st, &err), "open in-memory store");
    dl_qsrc_env_t env = {current_db, app, NULL};
    check(dl_qsrcs_new(&env, &app->qs, &err), "live queries");
    check(dl_registry_new(dl_qsrcs_vtable(), app->qs, &app->reg, &err), "registry");
    int id;
    check(dl_store_listen(app->st, on_commit, app, &id, &err), "listen");
}

static void app_subscribe(app_t *app) {
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    o.udata = &app->proj;
    app->proj.quiet = 1; /* the snapshot: the projection as of now */
    check(dl_subscribe(app->reg, q_balance, NULL, 0, &o, &app->sub, &err), "subscribe");
    app->proj.quiet = 0;
}

static void app_close(app_t *app) {
    dl_unsubscribe(app->reg, app->sub);
    dl_registry_free(app->reg);
    dl_qsrcs_free(app->qs);
    dl_db_unref(app->db);
    dl_store_close(app->st);
}

static void event(app_t *app, int id, const char *account, int amount) {
    char tx[256];
    snprintf(tx, sizeof tx, "[{:event/id %d :event/account \"%s\" :event/amount %d}]", id, account,
             amount);
    printf("event %d: %s %s %d\n", id, amount >= 0 ? "deposit to" : "withdrawal from", account,
           amount >= 0 ? amount : -amount);
    check(dl_store_transact_edn(app->st, tx, strlen(tx), NULL, &err), "transact");
    check(dl_registry_pump(app->reg, &err), "pump");
}

/* The one-shot compiled result of the balance query on the store's current state. */
static char *oneshot(app_t *app) {
    dl_db_t *db = dl_store_db(app->st);
    dl_query_t *q;
    dl_query_result_t *res;
    check(dl_query_parse(q_balance, strlen(q_balance), NULL, 0, db, &q, &err), "parse");
    check(dl_query_run(q, db, NULL, 0, &res, &err), "one-shot query");
    char *edn = dl_query_result_to_edn(res);
    dl_query_result_free(res);
    dl_query_free(q);
    dl_db_unref(db);
    return edn;
}

/* Rebuild by replay: a fresh in-memory store with the same schema and the projection
 * subscribed while it is empty; every event transaction of the recovered store's log
 * (dl_db_tx_range) is transacted into it again, in order, and the subscription folds the
 * diffs. Events are append-only, so the log holds assertions only. */
typedef struct replay {
    const dl_db_t *from; /* the recovered store's snapshot (schema lookups) */
    app_t *to;
    uint64_t n_tx;
} replay_t;

static int replay_one(void *ctx, const dl_commit_t *c) {
    replay_t *r = ctx;
    dl_tx_op_t ops[8];
    size_t n = 0;
    for (size_t i = 0; i < c->n_changes && n < 8; i++, n++) {
        const dl_change_t *ch = &c->changes[i];
        dl_attr_info_t ai;
        if (ch->diff < 0)
            return DL_EUNSUPPORTED; /* not an append-only event log */
        check(dl_db_attr_by_id(r->from, ch->a, &ai, &err), "attribute");
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].op = DL_OP_ADD;
        ops[n].e = dl_value_int(-ch->e); /* a tempid per original entity */
        check(dl_value_text(DL_T_KEYWORD, ai.ident, strlen(ai.ident), &ops[n].a, &err), "ident");
        ops[n].v = ch->v;
    }
    check(dl_store_transact(r->to->st, ops, n, NULL, 0, NULL, &err), "replay transact");
    check(dl_registry_pump(r->to->reg, &err), "pump");
    r->n_tx++;
    return 0;
}

static void rebuild(app_t *app, app_t *fresh, uint64_t schema_tx, uint64_t *out_n_tx) {
    app_open(fresh, NULL);
    check(dl_store_transact_edn(fresh->st, schema, strlen(schema), NULL, &err), "schema");
    app_subscribe(fresh);
    fresh->proj.quiet = 1;
    dl_db_t *db = dl_store_db(app->st);
    replay_t r = {db, fresh, 0};
    check(dl_db_tx_range(db, schema_tx + 1, 0, replay_one, &r), "replay");
    dl_db_unref(db);
    *out_n_tx = r.n_tx;
}

int main(int argc, char **argv) {
    char dir[512];
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s/accounts.db", argv[1]);
    else
        snprintf(dir, sizeof dir, "/tmp/deltalog-event-sourcing.%d", (int)getpid());
    int failures = 0;
    app_t app;
    app_open(&app, dir);
    dl_tx_report_t rep;
    check(dl_store_transact_edn(app.st, schema, strlen(schema), &rep, &err), "schema");
    uint64_t schema_tx = rep.tx;
    dl_tx_report_fini(&rep);
    app_subscribe(&app);

    event(&app, 1, "alice", 100);
    event(&app, 2, "bob", 50);
    event(&app, 3, "alice", -30);
    event(&app, 4, "bob", -80);
    event(&app, 5, "carol", 20);
    event(&app, 6, "carol", -50);
    check(dl_store_checkpoint(app.st, &err), "checkpoint");
    printf("checkpoint written\n");
    event(&app, 7, "bob", 40);
    event(&app, 8, "alice", -100);
    event(&app, 9, "carol", 30);

    char before[1024], edn_live[1024];
    projection_text(&app.proj, before, sizeof before);
    projection_edn(&app.proj, edn_live, sizeof edn_live);
    char *once = oneshot(&app);
    printf("projection before restart: %s\n", before);
    if (strcmp(edn_live, once) != 0 || app.proj.bad) {
        printf("MISMATCH: live %s, one-shot %s\n", edn_live, once);
        failures++;
    }
    dl_free(once);
    app_close(&app);

    /* Restart: recover from the checkpoint and the log's tail, subscribe again. */
    app_open(&app, dir);
    dl_store_stats_t stats;
    dl_store_stats(app.st, &stats);
    printf("reopened: last tx %llu, checkpoint covers tx %llu, the rest replayed from the log\n",
           (unsigned long long)stats.last_tx, (unsigned long long)stats.checkpoint_tx);
    app_subscribe(&app);
    char after[1024];
    projection_text(&app.proj, after, sizeof after);
    printf("projection after restart:  %s\n", after);
    if (strcmp(before, after) != 0 || app.proj.bad) {
        printf("MISMATCH after restart\n");
        failures++;
    }
    uint64_t n_tx = 0;
    app_t fresh;
    rebuild(&app, &fresh, schema_tx, &n_tx);
    char rebuilt[1024];
    projection_text(&fresh.proj, rebuilt, sizeof rebuilt);
    printf("rebuilt by replaying %llu logged events into a fresh store: %s\n",
           (unsigned long long)n_tx, rebuilt);
    if (strcmp(rebuilt, before) != 0 || fresh.proj.bad) {
        printf("MISMATCH: replayed projection differs\n");
        failures++;
    }
    app_close(&fresh);

    /* The stream goes on after the restart: the projection keeps up. */
    event(&app, 10, "alice", 50);
    once = oneshot(&app);
    projection_edn(&app.proj, edn_live, sizeof edn_live);
    if (strcmp(edn_live, once) != 0 || app.proj.bad) {
        printf("MISMATCH after restart: live %s, one-shot %s\n", edn_live, once);
        failures++;
    }
    dl_free(once);
    app_close(&app);
    printf(failures ? "FAILED\n" : "projections identical before and after the restart\n");
    return failures ? 1 : 0;
}
