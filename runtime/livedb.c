/*
 * livedb.c: dl_live_db_t (include/deltalog/live.h), a store wired to live Datalog
 * subscriptions in one object: the store, a dl_qsrcs_t over it (live queries opened on the
 * current snapshot), a registry over those sources, and a store commit listener that
 * feeds every commit to the live queries and then pumps the registry, so that every
 * subscription has its diffs when the committing call returns. It is the embedding
 * counterpart of the server's engine thread (exec.c: subs_on_commit, dl__exec_pump).
 *
 * It does not compute anything (subscribe/, datalog/ and dataflow/ do) and does not speak
 * the protocol. Delivery happens on the committing thread, or, pipelined, on a thread of
 * its own (feed.c) so that the next commit overlaps the dataflow's work on the last one.
 * The subscribe module must not depend on the store, so this wiring lives in the runtime
 * module. docs/subscribe.md "A live database"; ../shared/DESIGN-NOTES.md §4.
 *
 * Design notes.
 * 1. `mu` serializes the registry and the live queries (single-threaded by contract):
 *    subscribe, unsubscribe, and the listener's apply + pump. The store calls listeners
 *    in commit order without holding its version lock, and current_db (called under `mu`
 *    by a subscribe) only takes a snapshot, so the lock order is store listener lock ->
 *    mu -> store version lock, never the reverse.
 * 2. The snapshot lent to the live queries (current_db) is released at every commit
 *    before the apply: one held across commits would pin every later version of the
 *    store. A query opened on snapshot B while commit B+1 waits for `mu` is at B; the
 *    apply of B+1 then brings it up to date (qsrc.c skips commits at or before a query's
 *    basis), so no change is missed or applied twice.
 * 3. A failed apply (out of memory) or source poll ends the affected subscriptions with
 *    its code at the pump (registry.c); the commit itself stands.
 * 4. Pipelined, the listener only queues a copy of the commit (feed.c) and the worker
 *    does what the listener did, under `mu`, in commit order. A subscribe first waits
 *    for the queue to drain, so its snapshot is normally the live queries' transaction
 *    and the query joins the shared engine (note 2 covers a commit racing it). If a
 *    copy cannot be queued (out of memory) the listener drains the queue and applies the
 *    commit itself, so order is kept and nothing is lost.
 */
#include "runtime/runtime.h"

#include <deltalog/live.h>
#include <pthread.h>
#include <string.h>

#if DL_HAVE_SUBS
#include <deltalog/datalog.h>
#include <deltalog/store.h>

/* Commits waiting for the pipelined feed at most: enough to overlap the store with the
 * dataflow, few enough that a diff trails its commit by a handful of transactions. */
#define DL_LIVE_DB_QUEUE 4

struct dl_live_db {
    dl_store_t *st;
    dl_qsrcs_t *qs;
    dl_registry_t *reg;
    int listener;    /* 0: not registered */
    dl_feed_t *feed; /* pipelined (note 4); NULL: delivery on the committing thread */
    pthread_mutex_t mu;
    dl_db_t *db;            /* lent to the live queries by current_db (design note 2); under mu */
    uint64_t feed_failures; /* applies and pumps that failed (note 3); under mu */
};

static int current_db(void *ctx, const struct dl_db **out_db, uint64_t *out_time,
                      size_t *out_n_time, dl_error_t *err) {
    dl_live_db_t *db = ctx;
    if (!db->db && !(db->db = dl_store_db(db->st)))
        return dl_error_set(err, DL_ENOMEM, "live db: out of memory");
    *out_db = db->db;
    uint64_t basis = dl_db_basis_tx(db->db);
    size_t n = basis ? dl_db_tx_time(db->db, basis, out_time, DL_DELTA_MAX_DIM) : 0;
    if (n == 0) {
        out_time[0] = basis;
        n = 1;
    }
    *out_n_time = n > DL_DELTA_MAX_DIM ? DL_DELTA_MAX_DIM : n;
    return DL_OK;
}

/* Feeds one commit to the live queries and pumps the registry (design notes 1-3): on the
 * committing thread, or pipelined on the feed's worker (note 4). */
static void deliver(void *ctx, const dl_commit_t *c) {
    dl_live_db_t *db = ctx;
    pthread_mutex_lock(&db->mu);
    dl_db_unref(db->db);
    db->db = NULL;
    /* Failures end the affected subscriptions with their code at the pump (note 3). */
    if (dl_qsrcs_apply(db->qs, c, NULL) != DL_OK)
        db->feed_failures++;
    if (dl_registry_pump(db->reg, NULL) != DL_OK)
        db->feed_failures++;
    pthread_mutex_unlock(&db->mu);
}

/* The store's listener, on the committing thread. */
static void on_commit(void *ctx, const dl_commit_t *c) {
    dl_live_db_t *db = ctx;
    if (db->feed && dl__feed_push(db->feed, c) == DL_OK)
        return;
    if (db->feed)
        dl__feed_sync(db->feed); /* no memory for the copy: in order, here (note 4) */
    deliver(db, c);
}

void dl_live_db_options_init(dl_live_db_options_t *o) { memset(o, 0, sizeof *o); }

int dl_live_db_open(const dl_live_db_options_t *o, dl_live_db_t **out, dl_error_t *err) {
    if (!out)
        return dl_error_set(err, DL_EINVAL, "live db: NULL out");
    *out = NULL;
    dl_live_db_options_t opt;
    if (o)
        opt = *o;
    else
        dl_live_db_options_init(&opt);
    dl_live_db_t *db = dl_calloc(1, sizeof *db);
    if (!db)
        return dl_error_set(err, DL_ENOMEM, "live db: out of memory");
    pthread_mutex_init(&db->mu, NULL);
    int rc;
    if (opt.dir) {
        dl_store_options_t so;
        memset(&so, 0, sizeof so);
        so.sync_mode = opt.sync_mode;
        rc = dl_store_open(opt.dir, &so, &db->st, err);
    } else {
        rc = dl_store_open_memory(&db->st, err);
    }
    dl_qsrc_env_t env = {current_db, db, opt.rules};
    if (!rc)
        rc = dl_qsrcs_new(&env, &db->qs, err);
    if (!rc)
        rc = dl_registry_new(dl_qsrcs_vtable(), db->qs, &db->reg, err);
    if (!rc && opt.pipelined)
        rc = dl__feed_new(deliver, db, DL_LIVE_DB_QUEUE, &db->feed, err);
    if (!rc)
        rc = dl_store_listen(db->st, on_commit, db, &db->listener, err);
    if (rc) {
        dl_live_db_free(db);
        return rc;
    }
    *out = db;
    return DL_OK;
}

void dl_live_db_free(dl_live_db_t *db) {
    if (!db)
        return;
    if (db->listener > 0)
        dl_store_unlisten(db->st, db->listener);
    dl__feed_free(db->feed); /* delivers what is queued first */
    db->feed = NULL;
    pthread_mutex_lock(&db->mu);
    dl_registry_free(db->reg); /* an END (code 0) to every subscription */
    dl_qsrcs_free(db->qs);
    dl_db_unref(db->db);
    db->reg = NULL;
    db->qs = NULL;
    db->db = NULL;
    pthread_mutex_unlock(&db->mu);
    dl_store_close(db->st);
    pthread_mutex_destroy(&db->mu);
    dl_free(db);
}

int dl_live_db_transact_edn(dl_live_db_t *db, const char *edn, uint64_t *out_tx, dl_error_t *err) {
    if (out_tx)
        *out_tx = 0;
    if (!db || !edn)
        return dl_error_set(err, DL_EINVAL, "live db: NULL database or transaction data");
    dl_tx_report_t rep;
    int rc = dl_store_transact_edn(db->st, edn, strlen(edn), out_tx ? &rep : NULL, err);
    if (rc == DL_OK && out_tx) {
        *out_tx = rep.tx;
        dl_tx_report_fini(&rep);
    }
    /* The listener has fed and pumped the subscriptions before the store returned, or,
     * pipelined, queued the commit for the worker. */
    return rc;
}

void dl_live_db_sync(dl_live_db_t *db) {
    if (db && db->feed)
        dl__feed_sync(db->feed);
}

int dl_live_db_subscribe(dl_live_db_t *db, const char *query, const dl_value_t *inputs,
                         size_t n_inputs, const dl_sub_options_t *o, dl_sub_t **out,
                         dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!db || !query || !out)
        return dl_error_set(err, DL_EINVAL, "live db: NULL database, query or out");
    dl_live_db_sync(db); /* note 4 */
    pthread_mutex_lock(&db->mu);
    int rc = dl_subscribe(db->reg, query, inputs, n_inputs, o, out, err);
    pthread_mutex_unlock(&db->mu);
    return rc;
}

void dl_live_db_unsubscribe(dl_live_db_t *db, dl_sub_t *s) {
    if (!s)
        return;
    if (!db) {
        dl_sub_close(s);
        return;
    }
    pthread_mutex_lock(&db->mu);
    dl_unsubscribe(db->reg, s);
    pthread_mutex_unlock(&db->mu);
}

struct dl_store *dl_live_db_store(dl_live_db_t *db) {
    return db ? db->st : NULL;
}

void dl_live_db_stats(dl_live_db_t *db, dl_registry_stats_t *out) {
    memset(out, 0, sizeof *out);
    if (!db)
        return;
    pthread_mutex_lock(&db->mu);
    dl_registry_stats(db->reg, out);
    pthread_mutex_unlock(&db->mu);
}

#else /* a build without the store, Datalog or subscriptions */

void dl_live_db_options_init(dl_live_db_options_t *o) { memset(o, 0, sizeof *o); }
int dl_live_db_open(const dl_live_db_options_t *o, dl_live_db_t **out, dl_error_t *err) {
    (void)o;
    if (out)
        *out = NULL;
    return dl_error_set(err, DL_EUNSUPPORTED,
                        "not available yet: a live database needs the store, datalog, "
                        "dataflow and subscribe modules, which this build does not include");
}
void dl_live_db_free(dl_live_db_t *db) { (void)db; }
int dl_live_db_transact_edn(dl_live_db_t *db, const char *edn, uint64_t *out_tx, dl_error_t *err) {
    (void)db, (void)edn, (void)out_tx;
    return dl_error_set(err, DL_EUNSUPPORTED, "not available yet: no live database");
}
int dl_live_db_subscribe(dl_live_db_t *db, const char *query, const dl_value_t *inputs,
                         size_t n_inputs, const dl_sub_options_t *o, dl_sub_t **out,
                         dl_error_t *err) {
    (void)db, (void)query, (void)inputs, (void)n_inputs, (void)o;
    if (out)
        *out = NULL;
    return dl_error_set(err, DL_EUNSUPPORTED, "not available yet: no live database");
}
void dl_live_db_unsubscribe(dl_live_db_t *db, dl_sub_t *s) { (void)db, (void)s; }
void dl_live_db_sync(dl_live_db_t *db) { (void)db; }
struct dl_store *dl_live_db_store(dl_live_db_t *db) {
    (void)db;
    return NULL;
}
void dl_live_db_stats(dl_live_db_t *db, dl_registry_stats_t *out) {
    (void)db;
    memset(out, 0, sizeof *out);
}
#endif
