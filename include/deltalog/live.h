/*
 * live.h: a live database in one object: a store (in memory or in a directory) wired to
 * live Datalog subscriptions, for programs that embed deltalog. It is the same wiring the
 * server's engine thread does (a store commit listener feeding the live queries,
 * include/deltalog/subscribe.h's dl_qsrcs_t and registry, pumped after every commit),
 * packaged so that opening a database, transacting and subscribing are one call each.
 *
 * Threads. Callback subscriptions (dl_sub_options_t.on_delta) are called on the thread
 * that commits: inside dl_live_db_transact_edn (or any transaction or advance made on
 * dl_live_db_store's store), once the transaction is durable and visible, before that call
 * returns; the snapshot (and, watching several time coordinates, its other messages) is
 * called back inside dl_live_db_subscribe, on its caller's thread. Channel subscriptions
 * are filled at the same moments and read from any thread (dl_sub_next, dl_sub_fd,
 * dl_sub_uv_start). The object may be used from several threads: subscribing,
 * unsubscribing and the delivery after each commit are serialized by an internal lock,
 * which a callback holds while it runs, so a callback must not call dl_live_db_* nor
 * transact (close its own subscription with dl_sub_close instead: it is reaped after the
 * next commit). docs/subscribe.md "A live database"; examples/embed/.
 *
 * Pipelined (dl_live_db_options_t.pipelined): a commit is queued for a thread of the
 * database's own, which feeds the live queries and calls the callbacks, in commit order,
 * while the next transaction commits (on two cores the dataflow and the store overlap).
 * A transact call then returns once its transaction is durable and visible, usually
 * before its diffs are delivered; dl_live_db_sync waits for them. Callbacks run on that
 * thread (one at a time, in order); the snapshot of a new subscription is still delivered
 * inside dl_live_db_subscribe, after the commits before it. At most 4 commits wait:
 * beyond, committing waits for the dataflow.
 */
#ifndef DELTALOG_LIVE_H
#define DELTALOG_LIVE_H

#include <deltalog/common.h>
#include <deltalog/error.h>
#include <deltalog/subscribe.h>
#include <deltalog/value.h>
#include <stdint.h>

DL_BEGIN_DECLS

struct dl_store;
typedef struct dl_live_db dl_live_db_t;

typedef struct dl_live_db_options {
    const char *dir;   /* the store's directory (created if missing); NULL: in memory */
    int sync_mode;     /* a durable store's DL_STORE_SYNC_* mode (0: fsync every commit) */
    const char *rules; /* the rule set bound to % in subscribed queries (EDN), or NULL */
    bool pipelined;    /* deliver on a thread of its own (see "Pipelined" above) */
} dl_live_db_options_t;

DL_API void dl_live_db_options_init(dl_live_db_options_t *o);
/* new: opens the store (o NULL: in memory) and its live queries. Errors: those of
 * dl_store_open / dl_store_open_memory, DL_ENOMEM, DL_EUNSUPPORTED in a build without
 * the store, Datalog and subscription modules. Free with dl_live_db_free. */
DL_API int dl_live_db_open(const dl_live_db_options_t *o, dl_live_db_t **out,
                           dl_error_t *err) DL_WUR;
/* Ends every subscription (an END message with code 0 to each), closes the store. NULL-safe. */
DL_API void dl_live_db_free(dl_live_db_t *db);
/* Transacts EDN transaction data (NUL-terminated; as dl_store_transact_edn: all or
 * nothing). On success the subscriptions it changed have received their diffs when this
 * returns (callbacks have run on this thread); *out_tx (may be NULL) is its number.
 * On error nothing was committed and no subscription is affected; err says why. */
DL_API int dl_live_db_transact_edn(dl_live_db_t *db, const char *edn, uint64_t *out_tx,
                                   dl_error_t *err) DL_WUR;
/* Subscribes to a Datalog query (EDN) with its non-source :in inputs (values, in order;
 * an entity may be given as an int): dl_subscribe on the database's registry, so equal
 * queries with equal inputs share one live dataflow. o NULL: defaults (channel delivery,
 * coalesce). The snapshot is delivered (called back or queued) before this returns. *out
 * is the caller's reference: dl_live_db_unsubscribe, or dl_sub_close from any thread.
 * Errors: those of the query (DL_EPARSE with the position, DL_EUNKNOWN_ATTR, DL_EUNBOUND,
 * ...), DL_EINVAL (wrong number of inputs, bad options), DL_ENOMEM. */
DL_API int dl_live_db_subscribe(dl_live_db_t *db, const char *query, const dl_value_t *inputs,
                                size_t n_inputs, const dl_sub_options_t *o, dl_sub_t **out,
                                dl_error_t *err) DL_WUR;
/* Unsubscribes and releases the caller's reference (not from inside a callback: use
 * dl_sub_close there). NULL is a no-op. */
DL_API void dl_live_db_unsubscribe(dl_live_db_t *db, dl_sub_t *s);
/* Pipelined: waits until every transaction committed before the call has been delivered
 * to the subscriptions (callbacks returned, channels filled). Not from a callback. Without
 * pipelining (or NULL) it returns at once: delivery is already done. */
DL_API void dl_live_db_sync(dl_live_db_t *db);
/* The store (borrowed; for reads, queries, advances and the other transaction forms:
 * commits made on it reach the subscriptions too). */
DL_API struct dl_store *dl_live_db_store(dl_live_db_t *db);
/* The registry's counters (shared dataflows, subscriptions). */
DL_API void dl_live_db_stats(dl_live_db_t *db, dl_registry_stats_t *out);

DL_END_DECLS
#endif
