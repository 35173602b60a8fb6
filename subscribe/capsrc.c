/*
 * capsrc.c: a live source over a dataflow capture: converts each completed time's
 * consolidated diff (dl_diff_t, popped from a queue-mode dl_capture_t) into a dl_delta_t,
 * and keeps the accumulated result of everything it handed out, which is the snapshot a
 * new subscriber receives. The glue between dataflow/ and the registry.
 *
 * It does not build, feed or run graphs (their owner does: the Datalog layer or the
 * runtime) and does not project times to fewer coordinates. With several coordinates
 * [tx, u] the accumulated result is kept per user coordinate u (dl__uacc_t) and the
 * snapshot is one message per u at the latest transaction (docs/subscribe.md
 * "Multi-dimensional time"); it does not produce FRONTIER messages (the capture gives none).
 * DESIGN-NOTES §1 (contents at t = the sum of diffs at times <= t) and §4; docs/subscribe.md
 * "Registry and sources".
 *
 * Invariant: acc = the sum of every delta returned by dl_capsrc_poll, tagged with the
 * latest of their times, so a snapshot followed by later polls never repeats or misses a
 * change (registry.c design note 2).
 */
#include "subscribe/subscribe.h"

#include "base/base.h"

#include <deltalog/dataflow.h>

struct dl_capsrc {
    dl_capture_t *cap; /* borrowed: owned by its graph */
    size_t arity;
    size_t n_dims;
    dl_delta_t *acc; /* private, unsealed: the accumulated result (see the invariant) */
    /* n_dims > 1: the same per user coordinate u = time[1 ..], and the latest polled
     * transaction (time[0]), which the snapshot's messages [tx, u] carry. */
    dl__uacc_t acc_u;
    uint64_t latest_tx;
};

int dl_capsrc_new(dl_capture_t *cap, size_t arity, const uint64_t *t0, size_t n_dims,
                  dl_capsrc_t **out, dl_error_t *err) {
    *out = NULL;
    if (!cap || !t0 || n_dims < 1 || n_dims > DL_DELTA_MAX_DIM)
        return dl_error_set(err, DL_EINVAL,
                            "capsrc: needs a capture and a time of 1..%d "
                            "coordinates",
                            DL_DELTA_MAX_DIM);
    dl_capsrc_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return dl_error_set(err, DL_ENOMEM, "capsrc: out of memory");
    int rc = dl_delta_new(DL_DELTA_DATA, arity, t0, n_dims, &s->acc, err);
    if (rc) {
        dl_free(s);
        return rc;
    }
    s->cap = cap;
    s->arity = arity;
    s->n_dims = n_dims;
    dl__uacc_init(&s->acc_u, arity, n_dims);
    s->latest_tx = t0[0];
    *out = s;
    return 0;
}

void dl_capsrc_free(dl_capsrc_t *s) {
    if (!s)
        return;
    dl_delta_unref(s->acc);
    dl__uacc_fini(&s->acc_u);
    dl_free(s);
}

size_t dl_capsrc_rows(const dl_capsrc_t *s) {
    if (s->n_dims == 1)
        return dl_delta_len(s->acc);
    size_t n = 0;
    for (size_t i = 0; i < s->acc_u.n; i++)
        n += dl_delta_len(s->acc_u.v[i]);
    return n;
}

int dl_capsrc_poll(dl_capsrc_t *s, dl_delta_t **out, dl_error_t *err) {
    *out = NULL;
    dl_diff_t df;
    int got = dl_capture_pop(s->cap, &df);
    if (got < 0)
        return dl_error_set(err, got, "capsrc: %s", dl_strerror(got));
    if (got == 0)
        return 0;
    if (df.dim != s->n_dims || df.arity != s->arity)
        return dl_error_set(err, DL_EINVAL,
                            "capsrc: the capture yields %zu columns at %zu coordinates, "
                            "expected %zu at %zu",
                            df.arity, df.dim, s->arity, s->n_dims);
    dl_delta_t *d = NULL;
    int rc = dl_delta_new(DL_DELTA_DATA, s->arity, df.time, df.dim, &d, err);
    if (!rc) /* consolidated and sorted: copied without hashing (dl__delta_add_rows) */
        rc = dl__delta_add_rows(d, df.rows, df.diffs, df.n, err);
    /* The accumulated result advances with what is handed out (the invariant). A failure
     * here leaves acc partly merged: the source is then unusable and the registry closes
     * it on this error. */
    if (!rc && s->n_dims == 1) {
        rc = dl__delta_merge(s->acc, d);
    } else if (!rc) {
        rc = dl__uacc_add_delta(&s->acc_u, d);
        s->latest_tx = df.time[0];
    }
    if (rc) {
        dl_delta_unref(d);
        return dl_error_set(err, rc, "capsrc: %s", dl_strerror(rc));
    }
    *out = d;
    return 0;
}

int dl_capsrc_snapshot(dl_capsrc_t *s, dl_delta_t **out, dl_error_t *err) {
    *out = NULL;
    if (s->n_dims > 1) {
        /* One message per u at [latest tx, u], the first flagged, chained (registry.c
         * design note 4): what a later subscriber needs at every point of the product
         * order from the latest transaction on. */
        int rc = dl__uacc_snapshot(&s->acc_u, s->latest_tx, out);
        return rc ? dl_error_set(err, rc, "capsrc: out of memory") : 0;
    }
    dl_delta_t *c = NULL;
    int rc = dl__delta_clone(s->acc, &c);
    if (rc)
        return dl_error_set(err, rc, "capsrc: out of memory");
    rc = dl_delta_set_snapshot(c, true);
    if (rc) {
        dl_delta_unref(c);
        return dl_error_set(err, DL_EINTERNAL, "capsrc: snapshot flag");
    }
    *out = c;
    return 0;
}
