/*
 * integ.h: the shared harness of the integration tests (tests/integration): an engine
 * wired the way an embedding application wires it (a store, a commit listener that feeds
 * dl_qsrcs_apply and pumps the registry, a registry over Datalog live queries), and a
 * "view": one subscriber with its accumulated result, the log of every DATA delta it
 * received (canonical text), and the check of the subscription invariant against the
 * one-shot engines (dl_query_run and the reference evaluator dl_query_eval_naive) at the
 * time of the subscriber's latest delta.
 *
 * It does not synchronize threads for the tests (each test that uses threads does so
 * with its own condition variables); the engine side is single-threaded like the
 * registry. Follows docs/subscribe.md, docs/subscribe-scenarios.md.
 */
#ifndef DL_TESTS_INTEG_H
#define DL_TESTS_INTEG_H

#include "tests/harness/dl_test.h"

#include <deltalog/alloc.h>
#include <deltalog/datalog.h>
#include <deltalog/store.h>
#include <deltalog/subscribe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* The engine: a store (in memory, or durable in `dir`), the live queries and the
 * registry. The commit listener applies each commit to the live queries and, when
 * `pump_in_commit` is set (the default), pumps the registry on the committing thread,
 * so a BLOCK subscriber that is full makes the commit wait. */
typedef struct ienv {
    dl_store_t *st;
    dl_db_t *db; /* the snapshot handed to dl_qsrcs (refreshed by current_db) */
    dl_qsrcs_t *qs;
    dl_registry_t *reg;
    const char *rules; /* the rule set bound to % (NULL: none) */
    bool pump_in_commit;
    int apply_rc, pump_rc; /* first failure seen in the listener */
    int listener;
    uint64_t commits;                     /* commits seen by the listener */
    uint64_t last_time[DL_DELTA_MAX_DIM]; /* the last commit's time vector */
    size_t last_n_time;
} ienv_t;

/* Opens an engine over an in-memory store (dir NULL) or a durable one in dir, and
 * transacts `schema` (may be NULL). */
void ienv_open(ienv_t *e, const char *dir, const char *rules, const char *schema);
/* Frees the registry (ending every subscription with code 0), the live queries and the
 * store. */
void ienv_close(ienv_t *e);
/* Transacts EDN; fails the test unless it commits. Returns the transaction number. */
uint64_t ienv_tx(ienv_t *e, const char *fmt, ...) DL_PRINTF(2, 3);
/* Transacts EDN and returns its code (0 or DL_E...). */
int ienv_try_tx(ienv_t *e, const char *text);
void ienv_pump(ienv_t *e);

/* One subscriber. */
typedef struct iview {
    const char *query;
    char args[128]; /* the inputs as an EDN vector, for the one-shot engines ("" none) */
    dl_sub_t *sub;
    bool callback;
    size_t n_dims;
    dl_delta_t *acc; /* unsealed: the sum of every DATA delta received */
    size_t arity;
    uint64_t time[DL_DELTA_MAX_DIM]; /* time of the latest DATA delta */
    bool have_time;
    char **log; /* canonical text of each DATA delta, in order of arrival */
    uint64_t *log_tx;
    size_t n_log, cap_log, taken; /* taken: entries already consumed by iview_take */
    bool ended;
    int end_code;
    int n_frontier;
    int bad;               /* protocol violations seen in the callback (checked by iview_check) */
    pthread_mutex_t *lock; /* when set (before iview_sub; kept by it), iview_cb holds it */
    char bad_msg[256];
} iview_t;

/* The views' callback: set o.on_delta = iview_cb for callback delivery (udata is set by
 * iview_sub). */
void iview_cb(dl_sub_t *s, const dl_delta_t *d, void *udata);
/* Subscribes (channel delivery unless o->on_delta is set: then iview_cb). inputs/n_inputs as for
 * dl_subscribe; args is their EDN vector text. */
void iview_sub(ienv_t *e, iview_t *v, const char *query, const dl_value_t *inputs, size_t n_inputs,
               const char *args, const dl_sub_options_t *o);
/* Same, returning the code instead of failing (the view is untouched on error). */
int iview_try_sub(ienv_t *e, iview_t *v, const char *query, const dl_value_t *inputs,
                  size_t n_inputs, const char *args, const dl_sub_options_t *o);
/* Channel views: takes every waiting message into the accumulator and log; returns the
 * number of DATA messages taken. */
int iview_drain(iview_t *v);
/* Takes at most one message (channel views). Returns 1 if one was taken. */
int iview_step(iview_t *v);
/* Applies one message to the view (callback views call it from their callback). */
void iview_apply(iview_t *v, const dl_delta_t *d);
/* The next DATA delta's text not yet taken (drains first), or NULL. Borrowed. */
const char *iview_take(iview_t *v);
/* Asserts the next DATA delta is exactly `want` and that it is the last one waiting when
 * `last` is set. Delta text: the pairs sorted by row, "+[1 10]" or "-[\"ann\" 1]" (a
 * multiplicity other than 1 is written "+3[...]"), separated by one space. */
void iview_expect(iview_t *v, const char *want);
/* Asserts no DATA delta is waiting (drains first). */
void iview_expect_none(iview_t *v);
/* The accumulated result as canonical EDN (a sorted vector of rows), new: dl_free. Fails
 * the test unless every accumulated multiplicity is 1 (set semantics). */
char *iview_text(iview_t *v);
/* The one-shot result of the view's query as canonical EDN at system time tx (the
 * current database as of tx), by the compiled engine, and also by the reference evaluator
 * when `naive` (they must agree). new: dl_free. */
char *iview_oracle(ienv_t *e, const iview_t *v, uint64_t tx, bool naive);
/* The invariant: the accumulated result equals the one-shot result at the time of the
 * latest DATA delta (compiled engine; plus the reference evaluator when naive). */
void iview_check(ienv_t *e, iview_t *v, bool naive);
/* The accumulated result equals the one-shot result on the current database (for a view
 * that has taken everything: nothing changed after its latest delta). */
void iview_check_current(ienv_t *e, iview_t *v, bool naive);
/* Unsubscribes (through the registry) and frees the view's memory. */
void iview_free(ienv_t *e, iview_t *v);

/* A keyword value ("ns/name", no colon). */
dl_value_t ikw(const char *name);
dl_value_t istr(const char *s);

#endif
