/*
 * engine.c: the engine thread. It owns the executor (and through it the store writer;
 * later the dataflow) and exchanges jobs with the loop thread through two single-
 * producer single-consumer concurrencykit rings, woken by uv_async handles:
 *
 *   loop thread --submit--> [request ring] --uv_async--> engine thread (runs the job)
 *   loop thread <--poll---- [reply ring]   <--notify---- engine thread
 *
 * Invariants:
 *  1. Each ring has exactly one producer and one consumer thread (spsc).
 *  2. A job is owned by exactly one thread at a time: the loop thread until submit
 *     returns true, the engine until it is enqueued on the reply ring, then the loop.
 *  3. The loop thread keeps at most ring_size - 1 jobs outside its hands (in either
 *     ring or executing), so the reply ring can never be full when the engine pushes.
 *     (server.c counts jobs in flight and holds the rest in its overflow list.)
 *  4. Writes (and stats, advance) run in submission order on the engine thread only: it
 *     is the store's single writer.
 *  5. Reads (entity, history, schema, query, explain) run on libuv's thread pool, each
 *     on a snapshot the engine thread takes when the job's turn comes, so a read sees
 *     exactly the writes submitted before it (a connection reads its own writes) and a
 *     long query never delays a transaction. Replies may then finish out of submission
 *     order; server.c restores each connection's order with its reply slots.
 *  6. The engine loop ends only after every read job has finished (pending uv_work
 *     requests keep it alive), so the executor is closed after the last read.
 * Why a separate thread: a transaction waits for fsync; the loop thread keeps reading,
 * framing and answering other connections meanwhile (DESIGN-NOTES §6).
 * 7. Subscriptions: subscribe runs here (the registry is single-threaded); after each
 *    write the engine pumps the registry, which pushes deltas into each subscription's
 *    queue; the connection's loop thread takes them from the queue (its eventfd).
 * 8. Group commit: writes (transact, advance) waiting back to back on the request ring are
 *    committed one after the other without waiting for durability (each resolves against
 *    the ones before; a rejected one changes nothing), up to DL_ENGINE_BATCH or until the
 *    ring is empty or a non-write comes; then the engine waits once for the last one's
 *    log sync (which covers the group) and hands every reply back in order. Nothing is
 *    acknowledged before it is durable, and a read or subscribe after a write is only
 *    pinned once that write is acknowledged (note 5 still holds). A lone write is
 *    committed and synced at once, as before. DESIGN-NOTES §3, docs/protocol.md.
 * Does not: know about connections (the job carries opaque routing pointers).
 */
#include "runtime/runtime.h"

#include <ck_pr.h>
#include <ck_ring.h>
#include <uv.h>

/* ThreadSanitizer does not see concurrencykit's fences (inline assembly) and reports the
 * slot copies inside ck_ring as races. TSan builds (DL_TSAN=ON) therefore also take a
 * mutex around each ring operation, so the checker sees the ordering the fences provide
 * and can still check everything else (jobs, replies, jansson objects crossing threads).
 * Other builds are lock-free. */
#if defined(__SANITIZE_THREAD__)
#define DL_RING_LOCKED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define DL_RING_LOCKED 1
#endif
#endif
#ifdef DL_RING_LOCKED
#include <pthread.h>
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
#define RING_LOCK()   pthread_mutex_lock(&ring_lock)
#define RING_UNLOCK() pthread_mutex_unlock(&ring_lock)
#else
#define RING_LOCK()   ((void)0)
#define RING_UNLOCK() ((void)0)
#endif

static bool ring_put(ck_ring_t *r, ck_ring_buffer_t *buf, void *p) {
    RING_LOCK();
    bool ok = ck_ring_enqueue_spsc(r, buf, p);
    RING_UNLOCK();
    return ok;
}

static void *ring_take(ck_ring_t *r, ck_ring_buffer_t *buf) {
    void *p = NULL;
    RING_LOCK();
    bool ok = ck_ring_dequeue_spsc(r, buf, &p);
    RING_UNLOCK();
    return ok ? p : NULL;
}

/* The most writes committed as one group before waiting for their sync (a build may set
 * it, e.g. to 1 to measure without group commit). */
#ifndef DL_ENGINE_BATCH
#define DL_ENGINE_BATCH 256
#endif

struct dl_engine {
    dl_exec_t *exec;
    uv_thread_t thread;
    uv_loop_t loop; /* the engine thread's own loop: its wake-up handle and read jobs */
    uv_async_t wake;
    ck_ring_t req_ring, rep_ring;
    ck_ring_buffer_t *req_buf, *rep_buf;
    unsigned size;
    int stop; /* set by the loop thread (ck_pr), read by the engine */
    dl_engine_notify_fn notify;
    void *notify_ctx;
    unsigned n_reading;               /* read jobs on the thread pool (engine thread only) */
    dl_job_t *batch[DL_ENGINE_BATCH]; /* writes committed, not yet durable (note 8) */
    size_t n_batch;
};

/* A read job on libuv's thread pool (design note 5). */
typedef struct read_work {
    uv_work_t w;
    dl_engine_t *e;
    dl_job_t *job;
    void *snap; /* taken by dl__exec_run_read */
} read_work_t;

static void hand_back(dl_engine_t *e, dl_job_t *job) {
    dl__proto_request_fini(&job->req);
    /* Invariant 3: there is always room. Should it ever be violated, spinning here is
     * the only safe option: dropping a reply would lose an acknowledgement. */
    while (!ring_put(&e->rep_ring, e->rep_buf, job))
        ck_pr_stall();
    e->notify(e->notify_ctx);
}

static void read_run(uv_work_t *w) {
    read_work_t *rw = w->data;
    dl_job_t *job = rw->job;
    job->reply = dl__exec_run_read(&job->req, rw->snap, &job->reply_len, &job->failed);
}

static void read_done(uv_work_t *w, int status) {
    read_work_t *rw = w->data;
    dl_engine_t *e = rw->e;
    dl_job_t *job = rw->job;
    if (status != 0) { /* cancelled: never happens (nothing cancels), but stay correct */
        dl__exec_snapshot_release(rw->snap);
        job->reply = dl__proto_reply_error(job->req.id, DL_ECLOSED, "cancelled", &job->reply_len);
        job->failed = true;
    }
    dl_free(rw);
    e->n_reading--;
    hand_back(e, job);
}

/* Design note 8: the writes waiting back to back on the ring, committed as one group. */
static void flush_writes(dl_engine_t *e) {
    if (!e->n_batch)
        return;
    dl__exec_run_writes(e->exec, e->batch, e->n_batch);
    for (size_t i = 0; i < e->n_batch; i++)
        hand_back(e, e->batch[i]);
    e->n_batch = 0;
    /* After the acknowledgements: subscribers get what the writes changed. A BLOCK
     * subscriber whose connection does not read makes this wait (its timeout), which
     * slows the writer, as the policy says. */
    dl__exec_pump(e->exec);
}

static void run_pending(dl_engine_t *e) {
    dl_job_t *job;
    for (;;) {
        job = ring_take(&e->req_ring, e->req_buf);
        if (!job) {
            flush_writes(e); /* the ring is empty: wait once for the group */
            /* jobs that arrived during the sync form the next group */
            if ((job = ring_take(&e->req_ring, e->req_buf)) == NULL)
                break;
        }
        if (dl__exec_is_write(job->req.op)) {
            e->batch[e->n_batch++] = job;
            if (e->n_batch == DL_ENGINE_BATCH)
                flush_writes(e);
            continue;
        }
        /* Anything else sees every write before it, acknowledged (design note 5). */
        flush_writes(e);
        if (dl__exec_is_read(job->req.op)) {
            /* Pinned here, in request order, so the read sees every write before it. */
            read_work_t *rw = dl_calloc(1, sizeof *rw);
            void *snap = dl__exec_snapshot(e->exec);
            if (rw && snap) {
                rw->w.data = rw;
                rw->e = e;
                rw->job = job;
                rw->snap = snap;
                if (uv_queue_work(&e->loop, &rw->w, read_run, read_done) == 0) {
                    e->n_reading++;
                    continue;
                }
            }
            dl_free(rw);
            /* No pool: run it here, on the snapshot (or report the allocation failure). */
            job->reply = dl__exec_run_read(&job->req, snap, &job->reply_len, &job->failed);
        } else if (job->req.op == DL_REQ_SUBSCRIBE) {
            job->reply = dl__exec_subscribe(e->exec, &job->req, &job->reply_len, &job->failed,
                                            &job->sub, &job->sub_id);
        } else {
            job->reply = dl__exec_run(e->exec, &job->req, &job->reply_len, &job->failed);
        }
        hand_back(e, job);
    }
}

static void on_wake(uv_async_t *h) {
    dl_engine_t *e = h->data;
    run_pending(e);
    if (ck_pr_load_int(&e->stop)) {
        run_pending(e);
        uv_close((uv_handle_t *)&e->wake, NULL);
    }
}

static void engine_main(void *arg) {
    dl_engine_t *e = arg;
    uv_run(&e->loop, UV_RUN_DEFAULT);
    /* DESIGN-NOTES §3: everything acknowledged is durable; closing flushes the rest. */
    dl__exec_close(e->exec);
    e->exec = NULL;
}

int dl__engine_start(dl_exec_t *x, unsigned ring_size, dl_engine_notify_fn notify, void *ctx,
                     dl_engine_t **out, dl_error_t *err) {
    *out = NULL;
    unsigned size = 2;
    while (size < ring_size && size < (1u << 30))
        size <<= 1;
    dl_engine_t *e = dl_calloc(1, sizeof *e);
    if (!e) {
        dl__exec_close(x);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    e->exec = x;
    e->size = size;
    e->notify = notify;
    e->notify_ctx = ctx;
    e->req_buf = dl_calloc(size, sizeof *e->req_buf);
    e->rep_buf = dl_calloc(size, sizeof *e->rep_buf);
    int rc = DL_OK;
    if (!e->req_buf || !e->rep_buf) {
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        goto fail;
    }
    ck_ring_init(&e->req_ring, size);
    ck_ring_init(&e->rep_ring, size);
    int uvrc = uv_loop_init(&e->loop);
    if (uvrc != 0) {
        rc = dl_error_set(err, DL_EIO, "engine loop: %s", uv_strerror(uvrc));
        goto fail;
    }
    if ((uvrc = uv_async_init(&e->loop, &e->wake, on_wake)) != 0) {
        uv_loop_close(&e->loop);
        rc = dl_error_set(err, DL_EIO, "engine wake-up: %s", uv_strerror(uvrc));
        goto fail;
    }
    e->wake.data = e;
    if ((uvrc = uv_thread_create(&e->thread, engine_main, e)) != 0) {
        uv_close((uv_handle_t *)&e->wake, NULL);
        uv_run(&e->loop, UV_RUN_DEFAULT);
        uv_loop_close(&e->loop);
        rc = dl_error_set(err, DL_EIO, "engine thread: %s", uv_strerror(uvrc));
        goto fail;
    }
    *out = e;
    return DL_OK;
fail:
    dl__exec_close(e->exec);
    dl_free(e->req_buf);
    dl_free(e->rep_buf);
    dl_free(e);
    return rc;
}

bool dl__engine_submit(dl_engine_t *e, dl_job_t *job) {
    if (!ring_put(&e->req_ring, e->req_buf, job))
        return false;
    uv_async_send(&e->wake);
    return true;
}

dl_job_t *dl__engine_poll(dl_engine_t *e) { return ring_take(&e->rep_ring, e->rep_buf); }

void dl__engine_stop(dl_engine_t *e, void (*drain)(dl_job_t *job, void *ctx), void *ctx) {
    if (!e)
        return;
    ck_pr_store_int(&e->stop, 1);
    uv_async_send(&e->wake);
    uv_thread_join(&e->thread);
    uv_loop_close(&e->loop);
    dl_job_t *job;
    while ((job = dl__engine_poll(e)) != NULL)
        drain(job, ctx);
    dl_free(e->req_buf);
    dl_free(e->rep_buf);
    dl_free(e);
}
