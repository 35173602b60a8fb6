/*
 * feed.c: a worker thread that hands store commits, in commit order, to a function (the
 * live queries' apply and the registry's pump), so that the next transaction can commit
 * while the dataflow works on the last one: a two-stage pipeline over the two cores,
 * throughput the slower stage's instead of the sum. Used by dl_live_db_t in pipelined
 * mode (runtime/livedb.c); docs/subscribe.md "A live database".
 *
 * It does not know what the function does, nor the store (it copies the borrowed
 * dl_commit_t it is given). Not a general task queue: one producer at a time (the store
 * calls listeners one commit at a time, in order) and one consumer.
 *
 * Design notes.
 * 1. A mutex-protected FIFO of copied commits; the worker takes the whole list at once,
 *    so under load it locks once per batch, not per commit. A commit's copy is one
 *    allocation (header, time, frontier, changes).
 * 2. Backpressure: push waits while `max_queued` commits wait, so memory stays bounded
 *    when the dataflow is slower than the store; it never waits on the worker's function.
 * 3. `pushed` and `applied` count commits; sync waits for applied >= pushed as seen on
 *    entry, so it does not wait for commits made after it was called.
 * 4. Free drains: every commit pushed is applied before the thread ends, so subscribers
 *    miss nothing that was acknowledged.
 */
#include "runtime/runtime.h"

#include <pthread.h>
#include <string.h>

#if DL_HAVE_SUBS
#include <deltalog/store.h>

typedef struct item {
    struct item *next;
    dl_commit_t c; /* its arrays point into this allocation */
} item_t;

struct dl_feed {
    dl__feed_fn fn;
    void *ctx;
    size_t max_queued;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t nonempty, space, done;
    item_t *head, *tail;
    size_t queued;
    uint64_t pushed, applied;
    bool closing;
};

static void *worker(void *arg) {
    dl_feed_t *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (!f->head && !f->closing)
            pthread_cond_wait(&f->nonempty, &f->mu);
        if (!f->head)
            break; /* closing and drained (note 4) */
        item_t *it = f->head;
        size_t n = f->queued;
        f->head = f->tail = NULL;
        f->queued = 0;
        pthread_cond_broadcast(&f->space);
        pthread_mutex_unlock(&f->mu);
        while (it) {
            item_t *next = it->next;
            f->fn(f->ctx, &it->c);
            dl_free(it);
            it = next;
        }
        pthread_mutex_lock(&f->mu);
        f->applied += n;
        pthread_cond_broadcast(&f->done);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

int dl__feed_new(dl__feed_fn fn, void *ctx, size_t max_queued, dl_feed_t **out, dl_error_t *err) {
    *out = NULL;
    dl_feed_t *f = dl_calloc(1, sizeof *f);
    if (!f)
        return dl_error_set(err, DL_ENOMEM, "feed: out of memory");
    f->fn = fn;
    f->ctx = ctx;
    f->max_queued = max_queued ? max_queued : 1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->nonempty, NULL);
    pthread_cond_init(&f->space, NULL);
    pthread_cond_init(&f->done, NULL);
    if (pthread_create(&f->thread, NULL, worker, f) != 0) {
        pthread_cond_destroy(&f->nonempty);
        pthread_cond_destroy(&f->space);
        pthread_cond_destroy(&f->done);
        pthread_mutex_destroy(&f->mu);
        dl_free(f);
        return dl_error_set(err, DL_EIO, "feed: cannot start its thread");
    }
    *out = f;
    return DL_OK;
}

int dl__feed_push(dl_feed_t *f, const dl_commit_t *c) {
    size_t nt = c->n_time, nf = c->frontier ? c->n_time : 0;
    size_t bytes = sizeof(item_t) + (nt + nf) * sizeof(uint64_t) +
                   c->n_changes * sizeof(dl_change_t) + sizeof(dl_change_t);
    item_t *it = dl_malloc(bytes);
    if (!it)
        return DL_ENOMEM;
    /* Changes first after the header: dl_change_t holds values (16-byte alignment). */
    dl_change_t *ch = (dl_change_t *)(((uintptr_t)(it + 1) + 15) & ~(uintptr_t)15);
    uint64_t *t = (uint64_t *)(ch + c->n_changes);
    memcpy(ch, c->changes, c->n_changes * sizeof *ch);
    memcpy(t, c->time, nt * sizeof *t);
    if (nf)
        memcpy(t + nt, c->frontier, nf * sizeof *t);
    it->next = NULL;
    it->c = *c;
    it->c.changes = ch;
    it->c.time = t;
    it->c.frontier = nf ? t + nt : NULL;
    pthread_mutex_lock(&f->mu);
    while (f->queued >= f->max_queued && !f->closing) /* note 2 */
        pthread_cond_wait(&f->space, &f->mu);
    if (f->tail)
        f->tail->next = it;
    else
        f->head = it;
    f->tail = it;
    f->queued++;
    f->pushed++;
    pthread_cond_signal(&f->nonempty);
    pthread_mutex_unlock(&f->mu);
    return DL_OK;
}

void dl__feed_sync(dl_feed_t *f) {
    pthread_mutex_lock(&f->mu);
    uint64_t want = f->pushed; /* note 3 */
    while (f->applied < want)
        pthread_cond_wait(&f->done, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

void dl__feed_free(dl_feed_t *f) {
    if (!f)
        return;
    pthread_mutex_lock(&f->mu);
    f->closing = true;
    pthread_cond_signal(&f->nonempty);
    pthread_cond_broadcast(&f->space);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->nonempty);
    pthread_cond_destroy(&f->space);
    pthread_cond_destroy(&f->done);
    pthread_mutex_destroy(&f->mu);
    dl_free(f);
}
#endif
