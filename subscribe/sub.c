/*
 * sub.c: dl_sub_t, one subscriber's endpoint: a queue of deltas between one producer
 * thread (the engine) and one consumer thread, the three backpressure policies, channel
 * delivery (blocking pull with a deadline, non-blocking pull, an eventfd), callback
 * delivery, and per-subscription statistics.
 *
 * It does not know where deltas come from (registry.c and its sources do) nor how they are
 * computed (the dataflow does). DESIGN-NOTES §4; docs/subscribe.md "Policies", "Threads".
 *
 * Design notes.
 * 1. Every field below `mu` is guarded by `mu`, a pthread mutex (the queue is tiny and
 *    coalescing mutates its tail in place, which a lock-free ring cannot express; the lock
 *    is held for O(size of the incoming delta)). Condition variables (CLOCK_MONOTONIC
 *    deadlines): `nonempty` wakes the consumer, `room` wakes a producer blocked by BLOCK,
 *    `changed` serves the test hook dl__sub_wait_producer_blocked.
 * 2. The eventfd is readable iff q_len > 0: set when the queue becomes non-empty, drained
 *    when it becomes empty, both under `mu`, so the invariant holds whenever `mu` is free.
 * 3. States: OPEN -> ENDED (END queued: by dl_sub_end, BLOCK timeout, DROP overflow, or
 *    allocation failure) -> END_TAKEN (the consumer took it); OPEN/ENDED -> CLOSED
 *    (dl_sub_close by the consumer). Pushes are refused once ENDED or CLOSED.
 * 4. The END message is allocated at creation and one ring slot is always kept free for
 *    it, so ending never allocates and an END can always be delivered.
 * 5. COALESCE (one time coordinate; note 9 for more) keeps at most one DATA message queued. A new
 * DATA delta merges into it (copy-on-write: a queued delta shared with other subscribers is cloned
 * once, then merged into privately), so the queued delta is the net change since the last delivery,
 * tagged with the latest time. If it cancels out it is removed (unless it is the snapshot, which is
 * always delivered). FRONTIER messages keep an antichain: a frontier at or below a queued one is
 * redundant, queued ones below a new one are removed.
 * 6. BLOCK and DROP queue every message up to max_queued messages and max_bytes bytes
 *    (a message larger than max_bytes is still admitted into an empty queue). BLOCK waits
 *    for room up to block_timeout_ms, then ends with DL_ETIMEOUT keeping the backlog; DROP
 *    ends with DL_ELAGGED at once and discards the backlog (it frees the memory and tells
 *    the consumer to resubscribe without making it read stale data first).
 * 7. Invariant (DESIGN-NOTES §4), per policy: the consumer receives, in order, deltas whose
 *    sum up to any DATA message equals the producer's accumulation at that message's time:
 *    coalescing only adds adjacent undelivered deltas; BLOCK/DROP never reorder or lose a
 *    queued message except by ending the subscription.
 * 8. Callback delivery calls on_delta on the producer's thread with `mu` released and
 *    `in_callback` set; dl_sub_close waits for a call in flight on another thread, so once
 *    it returns the callback is not running and will not run again (the user may free
 *    udata). Closing from inside the callback returns at once.
 * 9. COALESCE over n > 1 time coordinates ([tx, u], u the user dimensions) cannot merge
 *    everything into one message at the latest time: that would move changes to a later
 *    u and lose the sums at lower points of the product order. It advances undelivered
 *    changes in system time only, as the 1-D policy does: a DATA delta at [tx, u] absorbs
 *    every queued DATA slot of an earlier transaction at u' <= u, retagged [tx, u'] (the
 *    one at u itself takes its pairs). Slots at u' > u keep their time, since the same
 *    transaction may still bring data at a u'' between u and u'; so delivered times still
 *    strictly increase. Hence at most one DATA slot per distinct u is queued, each the
 *    net change at u (bounded by the result at u); a stream whose u never decreases
 *    keeps one slot, as in 1-D. FRONTIER slots move behind the DATA slots (a frontier
 *    delivered later is still true; no DATA slot moves behind one). The snapshot flag
 *    stays on the first DATA slot. What a consumer that has read everything queued holds is
 *    the latest-knowledge result at every u: for every point p with p[0] >= the latest
 *    transaction pushed (which a source closes with FRONTIER [tx, MAX ..]), the sum of its
 *    DATA at times <= p is the result as of p. (Its latest DATA may be older: changes
 *    that cancel out in the queue leave nothing. The states of the skipped transactions
 *    are not reconstructible, as in 1-D.)
 * 10. The snapshot of a source watching n > 1 coordinates is several messages (one per
 *    u, then frontiers: registry.c); dl__sub_push_initial admits them whatever the BLOCK
 *    or DROP limits, since the consumer cannot have read anything yet.
 */
#include "subscribe/subscribe.h"

#include "base/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

typedef struct slot {
    dl_delta_t *d; /* one reference owned by the queue */
    uint64_t seq;  /* DATA: the producer time sequence number of its latest time */
    bool priv;     /* d is this queue's private, unsealed copy (COALESCE) */
} slot_t;

enum { ST_OPEN, ST_ENDED, ST_END_TAKEN, ST_CLOSED };

struct dl_sub {
    atomic_uint refs;
    dl_sub_options_t o;
    size_t arity;
    int efd;             /* eventfd, readable iff q_len > 0 (design note 2) */
    dl_delta_t *end_msg; /* preallocated END (design note 4) */
    pthread_mutex_t mu;
    pthread_cond_t nonempty, room, changed;
    /* ---- guarded by mu ---- */
    int state; /* ST_* */
    int end_code;
    bool efd_set; /* the eventfd counter is nonzero */
    bool producer_waiting;
    bool in_callback; /* callback delivery: a call is running on cb_thread */
    pthread_t cb_thread;
    slot_t *q; /* ring of q_cap slots */
    size_t q_head, q_len, q_cap;
    size_t q_data; /* DATA messages queued */
    bool has_last; /* last_time holds the latest pushed DATA time */
    size_t last_dims;
    uint64_t last_time[DL_DELTA_MAX_DIM];
    uint64_t seq; /* DATA times pushed */
    uint64_t delivered_seq, delivered_tx;
    uint64_t queued_rows, queued_bytes;
    dl_sub_stats_t st; /* counters; the queue-derived fields are filled in by dl_sub_stats */
};

/* ---- time -------------------------------------------------------------------------------- */

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static struct timespec deadline_after(uint64_t now_ns, int64_t ms) {
    uint64_t t = now_ns + (uint64_t)ms * 1000000ull;
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull),
                          .tv_nsec = (long)(t % 1000000000ull)};
    return ts;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

void dl_sub_options_init(dl_sub_options_t *o) {
    memset(o, 0, sizeof *o);
    o->policy = DL_SUB_COALESCE;
    o->max_queued = 64;
    o->max_bytes = 0;
    o->block_timeout_ms = 5000;
    o->n_dims = 1;
}

int dl_sub_new(const dl_sub_options_t *opts, size_t arity, dl_sub_t **out, dl_error_t *err) {
    if (!out)
        return dl_error_set(err, DL_EINVAL, "subscribe: NULL out");
    *out = NULL;
    dl_sub_options_t o;
    if (opts)
        o = *opts;
    else
        dl_sub_options_init(&o);
    if (o.policy != DL_SUB_COALESCE && o.policy != DL_SUB_BLOCK && o.policy != DL_SUB_DROP)
        return dl_error_set(err, DL_EINVAL, "subscribe: unknown policy %d", (int)o.policy);
    if (o.max_queued == 0)
        return dl_error_set(err, DL_EINVAL, "subscribe: max_queued must be at least 1");
    if (o.n_dims < 1 || o.n_dims > DL_DELTA_MAX_DIM)
        return dl_error_set(err, DL_EINVAL, "subscribe: n_dims must be 1..%d", DL_DELTA_MAX_DIM);
    dl_sub_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return dl_error_set(err, DL_ENOMEM, "subscribe: out of memory");
    s->o = o;
    s->arity = arity;
    s->efd = -1;
    s->q_cap = 4;
    s->q = dl_calloc(s->q_cap, sizeof *s->q);
    uint64_t zero[1] = {0};
    int rc = s->q ? dl_delta_new(DL_DELTA_END, 0, zero, 1, &s->end_msg, NULL) : DL_ENOMEM;
    if (rc) {
        dl_free(s->q);
        dl_free(s);
        return dl_error_set(err, DL_ENOMEM, "subscribe: out of memory");
    }
    dl_delta_seal(s->end_msg);
    if (!o.on_delta) {
        s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->efd < 0) {
            int e = errno;
            dl_delta_unref(s->end_msg);
            dl_free(s->q);
            dl_free(s);
            return dl_error_set(err, DL_EIO, "subscribe: eventfd: %s", strerror(e));
        }
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->nonempty, &ca);
    pthread_cond_init(&s->room, &ca);
    pthread_cond_init(&s->changed, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->refs, 1);
    s->state = ST_OPEN;
    s->st.policy = o.policy;
    s->st.callback = o.on_delta != NULL;
    *out = s;
    return 0;
}

dl_sub_t *dl_sub_ref(dl_sub_t *s) {
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

static void discard_queue(dl_sub_t *s);

void dl_sub_unref(dl_sub_t *s) {
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    discard_queue(s);
    dl_free(s->q);
    dl_delta_unref(s->end_msg);
    if (s->efd >= 0)
        close(s->efd);
    pthread_cond_destroy(&s->nonempty);
    pthread_cond_destroy(&s->room);
    pthread_cond_destroy(&s->changed);
    pthread_mutex_destroy(&s->mu);
    dl_free(s);
}

size_t dl__sub_arity(const dl_sub_t *s) { return s->arity; }
size_t dl__sub_n_dims(const dl_sub_t *s) { return s->o.n_dims; }
int dl_sub_fd(const dl_sub_t *s) { return s->efd; }

/* ---- the queue (mu held) ----------------------------------------------------------------- */

static void efd_update(dl_sub_t *s) {
    if (s->efd < 0)
        return;
    if (s->q_len > 0 && !s->efd_set) {
        uint64_t one = 1;
        ssize_t n = write(s->efd, &one, sizeof one);
        (void)n; /* cannot fail: the counter is 0 and the fd is ours */
        s->efd_set = true;
    } else if (s->q_len == 0 && s->efd_set) {
        uint64_t v;
        ssize_t n = read(s->efd, &v, sizeof v);
        (void)n;
        s->efd_set = false;
    }
}

static slot_t *q_at(dl_sub_t *s, size_t i) { return &s->q[(s->q_head + i) % s->q_cap]; }

/* Makes room for one more message while keeping one slot spare for END (design note 4). */
static int q_reserve(dl_sub_t *s) {
    if (s->q_len + 2 <= s->q_cap)
        return 0;
    size_t nc = s->q_cap * 2;
    slot_t *nq = dl_calloc(nc, sizeof *nq);
    if (!nq)
        return DL_ENOMEM;
    for (size_t i = 0; i < s->q_len; i++)
        nq[i] = *q_at(s, i);
    dl_free(s->q);
    s->q = nq;
    s->q_cap = nc;
    s->q_head = 0;
    return 0;
}

static void account(dl_sub_t *s, const dl_delta_t *d, int sign) {
    uint64_t rows = dl_delta_len(d), bytes = dl_delta_bytes(d);
    if (sign > 0) {
        s->queued_rows += rows;
        s->queued_bytes += bytes;
        if (s->queued_bytes > s->st.peak_queued_bytes)
            s->st.peak_queued_bytes = s->queued_bytes;
    } else {
        s->queued_rows -= rows;
        s->queued_bytes -= bytes;
    }
}

/* Appends a slot (the caller made room with q_reserve, or it is the END slot). */
static void q_push(dl_sub_t *s, slot_t sl) {
    *q_at(s, s->q_len) = sl;
    s->q_len++;
    if (dl_delta_kind(sl.d) == DL_DELTA_DATA)
        s->q_data++;
    account(s, sl.d, +1);
    efd_update(s);
    pthread_cond_signal(&s->nonempty);
}

/* Removes the slot at position i (0 = head), keeping the order of the others. */
static slot_t q_remove(dl_sub_t *s, size_t i) {
    slot_t sl = *q_at(s, i);
    if (i == 0) {
        s->q_head = (s->q_head + 1) % s->q_cap; /* the common case: O(1) */
    } else {
        for (size_t j = i; j + 1 < s->q_len; j++)
            *q_at(s, j) = *q_at(s, j + 1);
    }
    s->q_len--;
    if (s->q_len == 0)
        s->q_head = 0;
    if (dl_delta_kind(sl.d) == DL_DELTA_DATA)
        s->q_data--;
    account(s, sl.d, -1);
    efd_update(s);
    pthread_cond_signal(&s->room);
    return sl;
}

static void discard_queue(dl_sub_t *s) {
    while (s->q_len) {
        slot_t sl = q_remove(s, s->q_len - 1);
        dl_delta_unref(sl.d);
    }
}

/* Ends the subscription with code (design note 3). `drop_backlog`: discard what is queued
 * first (DROP overflow, allocation failure). Never allocates. */
static void end_locked(dl_sub_t *s, int code, bool drop_backlog) {
    if (s->state != ST_OPEN)
        return;
    if (drop_backlog) {
        s->st.dropped += s->q_len;
        discard_queue(s);
    }
    s->state = ST_ENDED;
    s->end_code = code;
    dl__delta_set_code(s->end_msg, code);
    if (!s->o.on_delta)
        q_push(s, (slot_t){dl_delta_ref(s->end_msg), 0, false});
    pthread_cond_broadcast(&s->room);
    pthread_cond_broadcast(&s->changed);
}

/* ---- producer ---------------------------------------------------------------------------- */

static bool is_full(const dl_sub_t *s, size_t incoming_bytes) {
    if (s->q_len >= s->o.max_queued)
        return true;
    return s->o.max_bytes && s->q_len > 0 && s->queued_bytes + incoming_bytes > s->o.max_bytes;
}

/* Makes sl's delta this queue's private, unsealed copy (copy-on-write). mu held. */
static int make_private(dl_sub_t *s, slot_t *sl) {
    if (sl->priv)
        return 0;
    dl_delta_t *c;
    int rc = dl__delta_clone(sl->d, &c);
    if (rc)
        return rc;
    account(s, sl->d, -1);
    dl_delta_unref(sl->d);
    sl->d = c;
    sl->priv = true;
    account(s, sl->d, +1);
    return 0;
}

/* Lexicographic comparison of the user coordinates (time[1 ..]) of two DATA deltas. */
static int user_cmp(const dl_delta_t *a, const dl_delta_t *b) {
    size_t n;
    const uint64_t *ta = dl_delta_time(a, &n), *tb = dl_delta_time(b, NULL);
    return dl__delta_time_cmp(ta + 1, tb + 1, n - 1);
}

/* COALESCE of a DATA delta d at [tx, u] over n > 1 coordinates (design note 9): d absorbs
 * every queued DATA slot of an earlier transaction at user coordinates u' <= u, retagged
 * [tx, u'] (the one at u itself takes d's pairs). The queue becomes: the other DATA
 * slots in their order, the absorbed ones sorted by u', d (unless merged), then the
 * FRONTIER slots in their order; the snapshot flag stays on the first DATA slot.
 * mu held; d sealed. */
static int push_coalesce_md(dl_sub_t *s, dl_delta_t *d) {
    size_t nd;
    const uint64_t *td = dl_delta_time(d, &nd);
    uint64_t tx = td[0];
    size_t n = s->q_len, n_abs = 0;
    for (size_t i = 0; i < n; i++) {
        const dl_delta_t *q = q_at(s, i)->d;
        n_abs += dl_delta_kind(q) == DL_DELTA_DATA && dl_delta_time(q, NULL)[0] < tx &&
                 user_cmp(q, d) <= 0;
    }
    if (q_reserve(s))
        return DL_ENOMEM;
    if (n_abs == 0) {
        q_push(s, (slot_t){dl_delta_ref(d), s->seq, false});
        return 0;
    }
    /* Private copies first: a failure here leaves the queue as it was. */
    for (size_t i = 0; i < n; i++) {
        slot_t *sl = q_at(s, i);
        if (dl_delta_kind(sl->d) == DL_DELTA_DATA && dl_delta_time(sl->d, NULL)[0] < tx &&
            user_cmp(sl->d, d) <= 0 && make_private(s, sl))
            return DL_ENOMEM;
    }
    slot_t *buf = dl_malloc(3 * n * sizeof *buf);
    if (!buf)
        return DL_ENOMEM;
    slot_t *keep = buf, *abs = buf + n, *fr = buf + 2 * n;
    size_t nk = 0, na = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        slot_t sl = *q_at(s, i);
        account(s, sl.d, -1);
        if (dl_delta_kind(sl.d) != DL_DELTA_DATA)
            fr[nf++] = sl;
        else if (dl_delta_time(sl.d, NULL)[0] < tx && user_cmp(sl.d, d) <= 0)
            abs[na++] = sl;
        else
            keep[nk++] = sl;
    }
    for (size_t i = 1; i < na; i++) /* sort by u' (insertion sort: at most one per u') */
        for (size_t j = i; j > 0 && user_cmp(abs[j - 1].d, abs[j].d) > 0; j--) {
            slot_t t = abs[j];
            abs[j] = abs[j - 1];
            abs[j - 1] = t;
        }
    int rc = 0;
    bool merged = false;
    for (size_t i = 0; i < na; i++) {
        uint64_t nt[DL_DELTA_MAX_DIM];
        memcpy(nt, dl_delta_time(abs[i].d, NULL), nd * sizeof *nt);
        nt[0] = tx;
        if (i == na - 1 && user_cmp(abs[i].d, d) == 0) {
            rc = dl__delta_merge(abs[i].d, d); /* takes d's pairs and time */
            merged = true;
        }
        (void)dl__delta_set_time(abs[i].d, nt); /* private, hence unsealed */
        abs[i].seq = s->seq;
        s->st.coalesced++;
    }
    /* Rebuild the ring from position 0 (every slot is in buf now; q_reserve made room). */
    s->q_head = 0;
    size_t m = 0;
    for (size_t i = 0; i < nk; i++)
        s->q[m++] = keep[i];
    for (size_t i = 0; i < na; i++) {
        if (!rc && dl_delta_len(abs[i].d) == 0 && !dl_delta_is_snapshot(abs[i].d))
            dl_delta_unref(abs[i].d); /* the undelivered changes at u' cancel out */
        else
            s->q[m++] = abs[i];
    }
    if (!merged)
        s->q[m++] = (slot_t){dl_delta_ref(d), s->seq, false};
    size_t n_data = m;
    for (size_t i = 0; i < nf; i++)
        s->q[m++] = fr[i];
    dl_free(buf);
    s->q_len = m;
    s->q_data = n_data;
    for (size_t k = 0; k < m; k++)
        account(s, s->q[k].d, +1);
    /* The snapshot flag stays on the first DATA message the consumer will take. */
    for (size_t k = 1; !rc && k < n_data; k++) {
        if (!dl_delta_is_snapshot(s->q[k].d))
            continue;
        if (make_private(s, &s->q[0]) || make_private(s, &s->q[k])) {
            rc = DL_ENOMEM;
            break;
        }
        if (dl_delta_set_snapshot(s->q[0].d, true) || dl_delta_set_snapshot(s->q[k].d, false))
            rc = DL_EINTERNAL; /* both are private, hence unsealed: cannot happen */
        else if (dl_delta_len(s->q[k].d) == 0)
            dl_delta_unref(q_remove(s, k).d);
        break;
    }
    if (s->q_data == 0) { /* everything undelivered cancelled out: the consumer is current */
        s->delivered_seq = s->seq;
        s->delivered_tx = tx;
    }
    efd_update(s);
    return rc;
}

/* COALESCE (design note 5). mu held; d sealed. */
static int push_coalesce(dl_sub_t *s, dl_delta_t *d) {
    if (dl_delta_kind(d) == DL_DELTA_FRONTIER) {
        size_t n;
        const uint64_t *t = dl_delta_time(d, &n);
        for (size_t i = 0; i < s->q_len; i++) {
            const dl_delta_t *q = q_at(s, i)->d;
            if (dl_delta_kind(q) == DL_DELTA_FRONTIER &&
                dl__delta_time_le(t, dl_delta_time(q, NULL), n)) {
                s->st.coalesced++; /* already implied by a queued frontier */
                return 0;
            }
        }
        for (size_t i = 0; i < s->q_len;) {
            const dl_delta_t *q = q_at(s, i)->d;
            if (dl_delta_kind(q) == DL_DELTA_FRONTIER &&
                dl__delta_time_le(dl_delta_time(q, NULL), t, n)) {
                dl_delta_unref(q_remove(s, i).d);
                s->st.coalesced++;
            } else {
                i++;
            }
        }
        if (q_reserve(s))
            return DL_ENOMEM;
        q_push(s, (slot_t){dl_delta_ref(d), 0, false});
        return 0;
    }
    size_t n_dims;
    (void)dl_delta_time(d, &n_dims);
    if (n_dims > 1)
        return push_coalesce_md(s, d);
    size_t at = s->q_len;
    for (size_t i = 0; i < s->q_len; i++)
        if (dl_delta_kind(q_at(s, i)->d) == DL_DELTA_DATA)
            at = i;
    if (at == s->q_len) {
        if (q_reserve(s))
            return DL_ENOMEM;
        q_push(s, (slot_t){dl_delta_ref(d), s->seq, false});
        return 0;
    }
    slot_t *sl = q_at(s, at);
    account(s, sl->d, -1);
    if (!sl->priv) {
        dl_delta_t *c;
        if (dl__delta_clone(sl->d, &c)) {
            account(s, sl->d, +1);
            return DL_ENOMEM;
        }
        dl_delta_unref(sl->d);
        sl->d = c;
        sl->priv = true;
    }
    int rc = dl__delta_merge(sl->d, d);
    sl->seq = s->seq;
    account(s, sl->d, +1);
    if (rc)
        return rc;
    s->st.coalesced++;
    if (dl_delta_len(sl->d) == 0 && !dl_delta_is_snapshot(sl->d)) {
        /* The undelivered changes cancel out: the consumer's state is current. */
        dl_delta_unref(q_remove(s, at).d);
        s->delivered_seq = s->seq;
        s->delivered_tx = s->last_time[0];
    }
    return 0;
}

/* BLOCK (design note 6). mu held. */
static int push_block(dl_sub_t *s, dl_delta_t *d, bool initial, dl_error_t *err) {
    size_t bytes = dl_delta_bytes(d);
    if (!initial && is_full(s, bytes)) {
        uint64_t start = mono_ns();
        struct timespec dl = deadline_after(start, s->o.block_timeout_ms);
        s->st.blocked++;
        s->producer_waiting = true;
        pthread_cond_broadcast(&s->changed);
        int wrc = 0;
        while (s->state == ST_OPEN && is_full(s, bytes) && wrc != ETIMEDOUT) {
            if (s->o.block_timeout_ms < 0)
                pthread_cond_wait(&s->room, &s->mu);
            else
                wrc = pthread_cond_timedwait(&s->room, &s->mu, &dl);
        }
        s->producer_waiting = false;
        s->st.blocked_ns += mono_ns() - start;
        if (s->state != ST_OPEN)
            return dl_error_set(err, DL_ECLOSED, "subscription closed while the producer waited");
        if (is_full(s, bytes)) {
            end_locked(s, DL_ETIMEOUT, false);
            return dl_error_set(err, DL_ETIMEOUT,
                                "subscriber did not make room within %lld ms: subscription ended",
                                (long long)s->o.block_timeout_ms);
        }
    }
    if (q_reserve(s))
        return DL_ENOMEM;
    q_push(s, (slot_t){dl_delta_ref(d), s->seq, false});
    return 0;
}

/* DROP (design note 6). mu held. */
static int push_drop(dl_sub_t *s, dl_delta_t *d, bool initial, dl_error_t *err) {
    if (!initial && is_full(s, dl_delta_bytes(d))) {
        s->st.dropped++; /* the incoming message */
        end_locked(s, DL_ELAGGED, true);
        return dl_error_set(err, DL_ELAGGED,
                            "subscriber lagged beyond %zu messages: subscription ended",
                            s->o.max_queued);
    }
    if (q_reserve(s))
        return DL_ENOMEM;
    q_push(s, (slot_t){dl_delta_ref(d), s->seq, false});
    return 0;
}

/* Checks d against the subscription's rules (mu held); 0 or an error code. */
static int validate(dl_sub_t *s, const dl_delta_t *d, dl_error_t *err) {
    dl_delta_kind_t k = dl_delta_kind(d);
    if (k == DL_DELTA_END)
        return dl_error_set(err, DL_EINVAL, "push: END deltas are sent with dl_sub_end");
    size_t n;
    const uint64_t *t = dl_delta_time(d, &n);
    if (s->has_last && n != s->last_dims)
        return dl_error_set(err, DL_EINVAL, "push: time has %zu coordinates, expected %zu", n,
                            s->last_dims);
    if (k != DL_DELTA_DATA)
        return 0;
    if (dl_delta_arity(d) != s->arity)
        return dl_error_set(err, DL_EARITY, "push: rows of arity %zu, subscription has %zu",
                            dl_delta_arity(d), s->arity);
    if (s->has_last && dl__delta_time_cmp(t, s->last_time, n) <= 0)
        return dl_error_set(err, DL_ETIME, "push: data times must strictly increase");
    return 0;
}

/* Callback delivery (design note 8): mu held on entry and on return, released for the call. */
static void call_back(dl_sub_t *s, const dl_delta_t *d) {
    s->in_callback = true;
    s->cb_thread = pthread_self();
    pthread_mutex_unlock(&s->mu);
    s->o.on_delta(s, d, s->o.udata);
    pthread_mutex_lock(&s->mu);
    s->in_callback = false;
    pthread_cond_broadcast(&s->changed);
}

static int push_impl(dl_sub_t *s, dl_delta_t *d, bool initial, dl_error_t *err);

int dl_sub_push(dl_sub_t *s, dl_delta_t *d, dl_error_t *err) { return push_impl(s, d, false, err); }

int dl__sub_push_initial(dl_sub_t *s, dl_delta_t *d, dl_error_t *err) {
    return push_impl(s, d, true, err);
}

static int push_impl(dl_sub_t *s, dl_delta_t *d, bool initial, dl_error_t *err) {
    if (!s || !d)
        return dl_error_set(err, DL_EINVAL, "push: NULL subscription or delta");
    dl_delta_seal(d);
    pthread_mutex_lock(&s->mu);
    if (s->state != ST_OPEN) {
        pthread_mutex_unlock(&s->mu);
        return dl_error_set(err, DL_ECLOSED, "subscription has ended");
    }
    int rc = validate(s, d, err);
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    s->st.pushed++;
    bool data = dl_delta_kind(d) == DL_DELTA_DATA;
    if (data) {
        size_t n;
        const uint64_t *t = dl_delta_time(d, &n);
        memcpy(s->last_time, t, n * sizeof *t);
        s->last_dims = n;
        s->has_last = true;
        s->seq++;
        if (dl_delta_len(d) == 0 && !dl_delta_is_snapshot(d)) {
            /* DESIGN-NOTES §4: empty diffs are not delivered. */
            if (s->q_data == 0) {
                s->delivered_seq = s->seq;
                s->delivered_tx = t[0];
            }
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
    }
    if (s->o.on_delta) {
        s->st.delivered++;
        s->st.delivered_rows += dl_delta_len(d);
        if (data) {
            s->delivered_seq = s->seq;
            s->delivered_tx = s->last_time[0];
        }
        call_back(s, d);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    switch (s->o.policy) {
        case DL_SUB_COALESCE:
            rc = push_coalesce(s, d);
            break;
        case DL_SUB_BLOCK:
            rc = push_block(s, d, initial, err);
            break;
        case DL_SUB_DROP:
            rc = push_drop(s, d, initial, err);
            break;
    }
    if (rc == DL_ENOMEM || rc == DL_ERANGE) {
        /* Design note 4: the subscription cannot continue correctly, but it can end. */
        end_locked(s, rc, true);
        rc = dl_error_set(err, rc, "subscription ended: %s while queueing", dl_strerror(rc));
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void dl_sub_end(dl_sub_t *s, int code) {
    pthread_mutex_lock(&s->mu);
    bool was_open = s->state == ST_OPEN;
    end_locked(s, code, false);
    if (was_open && s->o.on_delta) {
        s->st.delivered++;
        s->state = ST_END_TAKEN;
        call_back(s, s->end_msg);
    }
    pthread_mutex_unlock(&s->mu);
}

bool dl_sub_is_done(dl_sub_t *s) {
    pthread_mutex_lock(&s->mu);
    bool done = s->state != ST_OPEN;
    pthread_mutex_unlock(&s->mu);
    return done;
}

/* ---- consumer ---------------------------------------------------------------------------- */

int dl_sub_next(dl_sub_t *s, int64_t timeout_ms, dl_delta_t **out, dl_error_t *err) {
    if (!s || !out)
        return dl_error_set(err, DL_EINVAL, "dl_sub_next: NULL subscription or out");
    *out = NULL;
    if (s->o.on_delta)
        return dl_error_set(err, DL_EINVAL, "dl_sub_next on a callback subscription");
    pthread_mutex_lock(&s->mu);
    struct timespec dl = {0, 0};
    if (timeout_ms > 0)
        dl = deadline_after(mono_ns(), timeout_ms);
    int wrc = 0;
    for (;;) {
        if (s->q_len > 0) {
            slot_t sl = q_remove(s, 0);
            s->st.delivered++;
            s->st.delivered_rows += dl_delta_len(sl.d);
            dl_delta_kind_t k = dl_delta_kind(sl.d);
            if (k == DL_DELTA_DATA) {
                s->delivered_seq = sl.seq;
                s->delivered_tx = dl_delta_time(sl.d, NULL)[0];
            } else if (k == DL_DELTA_END) {
                s->state = ST_END_TAKEN;
            }
            if (sl.priv)
                dl_delta_seal(sl.d);
            pthread_mutex_unlock(&s->mu);
            *out = sl.d;
            return 0;
        }
        if (s->state == ST_END_TAKEN || s->state == ST_CLOSED) {
            pthread_mutex_unlock(&s->mu);
            return dl_error_set(err, DL_ECLOSED, "subscription has ended");
        }
        if (timeout_ms == 0 || wrc == ETIMEDOUT)
            break;
        if (timeout_ms < 0)
            pthread_cond_wait(&s->nonempty, &s->mu);
        else
            wrc = pthread_cond_timedwait(&s->nonempty, &s->mu, &dl);
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void dl_sub_close(dl_sub_t *s) {
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->state != ST_CLOSED) {
        discard_queue(s);
        s->state = ST_CLOSED;
    }
    /* Design note 8: a callback in flight on another thread finishes before we return. */
    while (s->in_callback && !pthread_equal(s->cb_thread, pthread_self()))
        pthread_cond_wait(&s->changed, &s->mu);
    pthread_cond_broadcast(&s->room);
    pthread_cond_broadcast(&s->nonempty);
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->mu);
    dl_sub_unref(s);
}

void dl_sub_stats(dl_sub_t *s, dl_sub_stats_t *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->ended = s->state == ST_ENDED || s->state == ST_END_TAKEN;
    out->end_code = out->ended ? s->end_code : 0;
    out->queued = s->q_len;
    out->queued_rows = s->queued_rows;
    out->queued_bytes = s->queued_bytes;
    out->lag_times = s->q_data ? s->seq - s->delivered_seq : 0;
    out->lag_tx =
        s->q_data && s->last_time[0] > s->delivered_tx ? s->last_time[0] - s->delivered_tx : 0;
    pthread_mutex_unlock(&s->mu);
}

void dl__sub_set_source(dl_sub_t *s, uint64_t source_id, uint64_t shared_with) {
    pthread_mutex_lock(&s->mu);
    s->st.source_id = source_id;
    s->st.shared_with = shared_with;
    pthread_mutex_unlock(&s->mu);
}

int dl__sub_wait_producer_blocked(dl_sub_t *s, int64_t timeout_ms) {
    pthread_mutex_lock(&s->mu);
    struct timespec dl = deadline_after(mono_ns(), timeout_ms);
    int wrc = 0;
    while (!s->producer_waiting && wrc != ETIMEDOUT)
        wrc = pthread_cond_timedwait(&s->changed, &s->mu, &dl);
    bool ok = s->producer_waiting;
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : DL_ETIMEOUT;
}
