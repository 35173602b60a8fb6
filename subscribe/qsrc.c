/*
 * qsrc.c: Datalog live queries as registry sources: the dl_source_vtable_t whose open
 * parses, compiles and loads a query with the Datalog layer (dl_query_parse, dl_live_new),
 * whose poll hands out, one DATA delta per committed transaction that changed the result,
 * what dl_live_apply computed, and whose snapshot is the sum of what poll handed out.
 *
 * It does not compute results (datalog/ and dataflow/ do), does not read the store (the
 * environment hands it the current database), and does not listen to commits (the engine
 * thread calls dl_qsrcs_apply). DESIGN-NOTES §4; docs/subscribe.md "Registry and sources".
 *
 * Subscriptions watching the same number of time coordinates share one Datalog engine
 * (dl_engine_t; one per n_dims, created at the first open): one dataflow graph whose base
 * attribute arrangements are shared by every query, so that opening a query over existing
 * data does not re-index it and a commit is applied once, at a cost proportional to the
 * change (docs/datalog.md "Engine", "Multi-dimensional engines"). A query the engine cannot
 * take (several sources, a transaction binding with dimensions, or opened while the engine
 * is at another transaction than the database handed to open) gets its own standalone
 * live query (dl_live_new, dl_live_new_dims), as before.
 *
 * Multi-dimensional time (n_dims > 1; docs/subscribe.md "Multi-dimensional time"): the
 * query computes what dl_live_new_dims does (in the n_dims engine). Its result is kept per
 * user coordinate u = time[1 ..] (acc_u: the history summed over system time), so the
 * snapshot is one DATA message per u at [T, u] (T the latest transaction, the first one at
 * [T, 0 ...] carrying the snapshot flag, possibly empty) followed by the FRONTIER messages
 * (chained behind the first: dl__delta_chain, dl__uacc_t), all delivered at subscribe time; every
 * commit's changes are queued as one DATA delta per time (the product order's differences), then
 * FRONTIER messages for the maximal complete times.
 *
 * Invariant (as capsrc.c): acc = the initial result + every delta returned by poll,
 * tagged with the latest of their times (n_dims > 1: the same per u in acc_u), so a snapshot
 * followed by later polls never repeats or misses a change (registry.c design note 2).
 */
#include "subscribe/subscribe.h"

#include "base/base.h"
#include "datalog/datalog.h"

#include <deltalog/dataflow.h>
#include <deltalog/datalog.h>
#include <deltalog/store.h>
#include <stdio.h>

typedef struct qsrc qsrc_t;
struct qsrc {
    dl_qsrcs_t *owner;
    qsrc_t *next;
    dl_query_t *q;
    dl_live_t *live;
    struct qengine *eng; /* the owner's engine live belongs to, or NULL (standalone) */
    size_t arity, n_dims;
    uint64_t last_f[DL_DELTA_MAX_DIM]; /* n_dims > 1: the frontier of the last FRONTIERs */
    /* n_dims > 1 (the invariant below, per user coordinate u = time[1 ..]): the sum of
     * everything handed out at each u. */
    dl__uacc_t acc_u;
    uint64_t polled_tx;                  /* the latest transaction of a DATA handed out */
    uint64_t polled_done;                /* the latest [tx, MAX..] FRONTIER handed out */
    uint64_t polled_f[DL_DELTA_MAX_DIM]; /* dimension frontiers handed out (k >= 1) */
    uint64_t last_tx;  /* the last transaction reflected (the basis, then applied ones) */
    int failed;        /* a run failed: the code poll reports */
    char failure[160]; /* its message */
    dl__dacc_t acc;    /* n_dims == 1: the invariant above (sorted runs, delta.c note 6) */
    dl_delta_t **pending;
    size_t head, n_pending, cap_pending;
};

/* The engine shared by the subscriptions watching n_dims coordinates. */
typedef struct qengine {
    dl_engine_t *e; /* created at the first open */
    size_t n;       /* open subscriptions in it */
    bool failed;    /* a run failed (out of memory, time behind the frontier): no new queries */
} qengine_t;

struct dl_qsrcs {
    dl_qsrc_env_t env;
    char *rules; /* copy of env.rules */
    qsrc_t *open;
    size_t n_open;
    qengine_t eng[DL_TIME_MAX_ROOT_DIM + 1]; /* by n_dims (index 0 unused) */
};

int dl_qsrcs_new(const dl_qsrc_env_t *env, dl_qsrcs_t **out, dl_error_t *err) {
    if (!out || !env || !env->current_db)
        return dl_error_set(err, DL_EINVAL, "qsrcs: needs an environment with current_db");
    *out = NULL;
    dl_qsrcs_t *qs = dl_calloc(1, sizeof *qs);
    if (!qs || (env->rules && !(qs->rules = dl_strdup(env->rules)))) {
        dl_free(qs);
        return dl_error_set(err, DL_ENOMEM, "qsrcs: out of memory");
    }
    qs->env = *env;
    qs->env.rules = qs->rules;
    *out = qs;
    return 0;
}

static void qsrc_close(void *p) {
    qsrc_t *s = p;
    for (qsrc_t **q = &s->owner->open; *q; q = &(*q)->next)
        if (*q == s) {
            *q = s->next;
            s->owner->n_open--;
            break;
        }
    for (size_t i = s->head; i < s->n_pending; i++)
        dl_delta_unref(s->pending[i]);
    dl_free(s->pending);
    dl__dacc_fini(&s->acc);
    dl__uacc_fini(&s->acc_u);
    dl_live_free(s->live);
    if (s->eng)
        s->eng->n--;
    dl_query_free(s->q);
    dl_free(s);
}

void dl_qsrcs_free(dl_qsrcs_t *qs) {
    if (!qs)
        return;
    while (qs->open)
        qsrc_close(qs->open);
    for (size_t k = 0; k < DL_ARRAY_LEN(qs->eng); k++)
        dl_engine_free(qs->eng[k].e);
    dl_free(qs->rules);
    dl_free(qs);
}

size_t dl_qsrcs_count(const dl_qsrcs_t *qs) { return qs->n_open; }

/* Appends d to s's pending messages (taking it). */
static int push_pending(qsrc_t *s, dl_delta_t *d) {
    if (s->n_pending == s->cap_pending) {
        size_t nc = s->cap_pending ? 2 * s->cap_pending : 4;
        dl_delta_t **np = dl_realloc(s->pending, nc * sizeof *np);
        if (!np) {
            dl_delta_unref(d);
            return DL_ENOMEM;
        }
        s->pending = np;
        s->cap_pending = nc;
    }
    s->pending[s->n_pending++] = d;
    return 0;
}

/* A multi-dimensional source (n_dims > 1): the live query's last changes, one DATA delta
 * per distinct time (they come consolidated per time, in lexicographic order), queued. */
static int queue_dim_changes(qsrc_t *s, dl_error_t *err) {
    const dl_value_t *rows;
    const int64_t *diffs;
    size_t n = dl_live_changes(s->live, &rows, &diffs);
    const uint64_t *times = dl_live_change_times(s->live);
    size_t nd = s->n_dims;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && memcmp(times + j * nd, times + i * nd, nd * sizeof *times) == 0)
            j++;
        dl_delta_t *d = NULL;
        int rc = dl_delta_new(DL_DELTA_DATA, s->arity, times + i * nd, nd, &d, err);
        if (!rc)
            rc = dl__delta_add_rows(d, rows + i * s->arity, diffs + i, j - i, err);
        if (!rc && dl_delta_len(d) == 0) {
            dl_delta_unref(d); /* the time's changes cancelled out */
            d = NULL;
        }
        if (!rc && d && (rc = push_pending(s, d)))
            dl_error_set(err, rc, "qsrcs: out of memory");
        if (rc) {
            dl_delta_unref(d);
            return rc;
        }
        i = j;
    }
    return 0;
}

/* A multi-dimensional source's FRONTIER messages for the frontier vector f (n_dims
 * coordinates: every later change has a time >= f): the maximal complete times: for each
 * dimension k whose frontier moved since the last message, [MAX, .., fk - 1, .., MAX],
 * then [f0 - 1, MAX, ...] (every earlier transaction, any coordinates), which is thus the
 * last message of each commit. */
static int queue_frontiers(qsrc_t *s, const uint64_t *f, uint64_t *last_f, dl_error_t *err) {
    size_t nd = s->n_dims;
    for (size_t j = 1; j <= nd; j++) {
        size_t k = j % nd; /* the dimensions first, [tx, MAX ..] last: it closes the commit */
        if (f[k] == 0 || (k > 0 && f[k] == last_f[k]))
            continue;
        uint64_t t[DL_DELTA_MAX_DIM];
        for (size_t i = 0; i < nd; i++)
            t[i] = i == k ? f[k] - 1 : UINT64_MAX;
        dl_delta_t *d = NULL;
        int rc = dl_delta_new(DL_DELTA_FRONTIER, s->arity, t, nd, &d, err);
        if (!rc && (rc = push_pending(s, d)))
            return dl_error_set(err, rc, "qsrcs: out of memory");
        if (rc)
            return rc;
        last_f[k] = f[k];
    }
    return 0;
}

/* The live query's last change as a new DATA delta at time t (a consolidated diff, sorted
 * as the capture delivers it, is copied without hashing: dl__delta_add_rows). */
static int change_delta(qsrc_t *s, const uint64_t *t, dl_delta_t **out, dl_error_t *err) {
    const dl_value_t *rows;
    const int64_t *diffs;
    size_t n = dl_live_changes(s->live, &rows, &diffs);
    int rc = dl_delta_new(DL_DELTA_DATA, s->arity, t, s->n_dims, out, err);
    if (!rc)
        rc = dl__delta_add_rows(*out, rows, diffs, n, err);
    if (rc) {
        dl_delta_unref(*out);
        *out = NULL;
    }
    return rc;
}

static int qsrc_open(void *ctx, const char *text, const dl_value_t *inputs, size_t n_inputs,
                     size_t n_dims, void **out, size_t *out_arity, dl_error_t *err) {
    dl_qsrcs_t *qs = ctx;
    const dl_db_t *db = NULL;
    uint64_t t[DL_DELTA_MAX_DIM] = {0};
    size_t n_time = 0;
    int rc = qs->env.current_db(qs->env.ctx, &db, t, &n_time, err);
    if (rc)
        return rc;
    if (!db || n_time < 1 || n_time > DL_DELTA_MAX_DIM)
        return dl_error_set(err, DL_EINVAL, "qsrcs: current_db gave no database or time");
    if (n_dims > n_time)
        return dl_error_set(err, DL_EINVAL,
                            "subscribe: %zu time coordinates watched, the database has %zu", n_dims,
                            n_time);
    qsrc_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return dl_error_set(err, DL_ENOMEM, "qsrcs: out of memory");
    s->owner = qs;
    s->n_dims = n_dims;
    s->last_tx = t[0];
    dl_buf_t args;
    dl__buf_init(&args);
    rc = dl_query_parse(text, strlen(text), qs->rules, qs->rules ? strlen(qs->rules) : 0, db, &s->q,
                        err);
    if (!rc && dl_query_n_args(s->q) != n_inputs)
        rc = dl_error_set(err, DL_EINVAL, "subscribe: the query takes %zu inputs, %zu given",
                          dl_query_n_args(s->q), n_inputs);
    if (!rc) {
        /* The inputs as the EDN vector dl_live_new takes. */
        dl__buf_putc(&args, '[');
        for (size_t i = 0; i < n_inputs; i++) {
            if (i)
                dl__buf_putc(&args, ' ');
            dl__edn_print_value(inputs[i], &args);
        }
        dl__buf_putc(&args, ']');
        if (args.oom)
            rc = dl_error_set(err, DL_ENOMEM, "qsrcs: out of memory");
    }
    if (!rc) {
        /* The shared engine of n_dims coordinates when it is at the database's
         * transaction (an engine without queries is simply restarted there); otherwise a
         * standalone live query. */
        qengine_t *ge = n_dims < DL_ARRAY_LEN(qs->eng) ? &qs->eng[n_dims] : NULL;
        if (ge && ge->e && ge->n == 0 &&
            (ge->failed || dl_engine_tx(ge->e) != dl_db_basis_tx(db))) {
            dl_engine_free(ge->e);
            ge->e = NULL;
            ge->failed = false;
        }
        dl_error_t e2;
        dl_error_clear(&e2);
        if (ge && !ge->e && dl_engine_new_dims(db, n_dims, &ge->e, &e2))
            ge->e = NULL;
        int erc = DL_EUNSUPPORTED;
        if (ge && ge->e && !ge->failed && dl_engine_tx(ge->e) == dl_db_basis_tx(db))
            erc = dl_engine_live_new(ge->e, s->q, db, args.data, args.len, &s->live, &e2);
        if (!erc) {
            s->eng = ge;
            ge->n++;
        } else if (erc == DL_EUNSUPPORTED || erc == DL_ESTATE || erc == DL_ENOMEM) {
            /* the standalone query reports what the engine could not take in its words */
            rc = n_dims > 1 ? dl_live_new_dims(s->q, db, args.data, args.len, n_dims, &s->live, err)
                            : dl_live_new(s->q, db, args.data, args.len, &s->live, err);
        } else {
            rc = err ? dl_error_set(err, erc, "%s", e2.message) : erc;
        }
    }
    dl__buf_fini(&args);
    if (!rc) {
        s->arity = s->q->n_find;
        if (n_dims > 1) {
            /* The initial result: the database's history (one change per time) summed
             * per user coordinate u, at the basis transaction: the snapshot's messages
             * are [basis, u] (docs/subscribe.md "Multi-dimensional time"). */
            const dl_value_t *rows;
            const int64_t *diffs;
            size_t n = dl_live_changes(s->live, &rows, &diffs);
            const uint64_t *times = dl_live_change_times(s->live);
            dl__uacc_init(&s->acc_u, s->arity, n_dims);
            for (size_t i = 0; i < n && !rc; i++)
                rc = dl__uacc_add(&s->acc_u, times + i * n_dims, rows + i * s->arity, diffs[i]);
            if (rc)
                rc = dl_error_set(err, rc, "qsrcs: out of memory");
            uint64_t f[DL_DELTA_MAX_DIM] = {0};
            dl_db_frontier(db, f, n_dims);
            for (size_t k = 1; k < n_dims; k++)
                s->last_f[k] = s->polled_f[k] = f[k];
            s->last_f[0] = f[0];
            s->polled_tx = s->polled_done = t[0];
        } else {
            /* The initial result, as the accumulated result at the basis time. */
            dl_delta_t *d = NULL;
            dl__dacc_init(&s->acc, s->arity, t, n_dims);
            rc = change_delta(s, t, &d, err);
            if (!rc && (rc = dl__dacc_add(&s->acc, d)) != 0)
                rc = dl_error_set(err, rc, "qsrcs: %s", dl_strerror(rc));
            dl_delta_unref(d);
        }
    }
    if (rc) {
        s->owner = NULL;
        for (size_t i = 0; i < s->n_pending; i++)
            dl_delta_unref(s->pending[i]);
        dl_free(s->pending);
        dl__dacc_fini(&s->acc);
        dl__uacc_fini(&s->acc_u);
        dl_live_free(s->live);
        if (s->eng)
            s->eng->n--;
        dl_query_free(s->q);
        dl_free(s);
        return rc;
    }
    /* The source keeps the accumulated result itself (acc, acc_u): the live query need
     * not keep a second copy (that was a hash-table update per changed row). */
    dl_live_drop_result(s->live);
    s->next = qs->open;
    qs->open = s;
    qs->n_open++;
    *out = s;
    *out_arity = s->arity;
    return 0;
}

/* n_dims > 1: the system time of the snapshot's messages: the last transaction applied
 * when everything was handed out (the registry pumps before a snapshot), else the latest
 * handed out. */
static uint64_t snap_tx(const qsrc_t *s) {
    return s->head == s->n_pending ? s->last_tx : s->polled_tx;
}

/* n_dims > 1: the FRONTIER messages that end a snapshot, of what was handed out:
 * [MAX .., f_k - 1, .. MAX] for each dimension whose frontier f_k is above 0, then
 * [T', MAX ...] (T' the last complete transaction), chained behind first. */
static int chain_frontiers(qsrc_t *s, dl_delta_t *first, dl_error_t *err) {
    bool all_done = s->head == s->n_pending;
    for (size_t j = 1; j <= s->n_dims; j++) {
        size_t k = j % s->n_dims; /* [T, MAX ..] last, as after a commit */
        uint64_t t[DL_DELTA_MAX_DIM];
        for (size_t i = 0; i < s->n_dims; i++)
            t[i] = UINT64_MAX;
        if (k == 0)
            t[0] = all_done ? s->last_tx : s->polled_done;
        else if (s->polled_f[k] > 0)
            t[k] = s->polled_f[k] - 1;
        else
            continue;
        if (k == 0 && t[0] == 0)
            continue;
        dl_delta_t *f = NULL;
        int rc = dl_delta_new(DL_DELTA_FRONTIER, s->arity, t, s->n_dims, &f, err);
        if (rc)
            return rc;
        dl__delta_chain(first, f);
    }
    return 0;
}

static int qsrc_snapshot(void *p, dl_delta_t **out, dl_error_t *err) {
    qsrc_t *s = p;
    *out = NULL;
    if (s->n_dims > 1) {
        /* One message per u at [T, u], the first flagged, then the frontier, chained. */
        int rc = dl__uacc_snapshot(&s->acc_u, snap_tx(s), out);
        if (rc)
            return dl_error_set(err, rc, "qsrcs: out of memory");
        rc = chain_frontiers(s, *out, err);
        if (rc) {
            dl_delta_unref(*out);
            *out = NULL;
        }
        return rc;
    }
    dl_delta_t *c = NULL;
    int rc = dl__dacc_snapshot(&s->acc, &c);
    if (rc)
        return dl_error_set(err, rc, "qsrcs: %s", dl_strerror(rc));
    if (dl_delta_set_snapshot(c, true)) {
        dl_delta_unref(c);
        return dl_error_set(err, DL_EINTERNAL, "qsrcs: snapshot flag");
    }
    *out = c;
    return 0;
}

/* n_dims > 1: what poll hands out enters the accumulation per u and the frontiers. */
static int md_handed_out(qsrc_t *s, const dl_delta_t *d) {
    size_t nd;
    const uint64_t *t = dl_delta_time(d, &nd);
    if (dl_delta_kind(d) == DL_DELTA_FRONTIER) {
        if (t[0] != UINT64_MAX) {
            s->polled_done = t[0];
        } else {
            for (size_t k = 1; k < nd; k++)
                if (t[k] != UINT64_MAX)
                    s->polled_f[k] = t[k] + 1;
        }
        return 0;
    }
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return 0;
    s->polled_tx = t[0];
    return dl__uacc_add_delta(&s->acc_u, d);
}

static int qsrc_poll(void *p, dl_delta_t **out, dl_error_t *err) {
    qsrc_t *s = p;
    *out = NULL;
    if (s->head < s->n_pending) {
        dl_delta_t *d = s->pending[s->head++];
        if (s->head == s->n_pending)
            s->head = s->n_pending = 0;
        int rc = s->n_dims > 1                       ? md_handed_out(s, d)
                 : dl_delta_kind(d) == DL_DELTA_DATA ? dl__dacc_add(&s->acc, d)
                                                     : 0;
        if (rc) {
            dl_delta_unref(d);
            return dl_error_set(err, rc, "qsrcs: %s", dl_strerror(rc));
        }
        *out = d;
        return 0;
    }
    if (s->failed)
        return dl_error_set(err, s->failed, "%s", s->failure);
    return 0;
}

static const dl_source_vtable_t qsrc_vt = {qsrc_open, qsrc_snapshot, qsrc_poll, qsrc_close, NULL};

const dl_source_vtable_t *dl_qsrcs_vtable(void) { return &qsrc_vt; }

static void fail(qsrc_t *s, int code, const dl_error_t *e) {
    s->failed = code;
    snprintf(s->failure, sizeof s->failure, "live query failed: %.130s",
             e && e->code ? e->message : dl_strerror(code));
}

int dl_qsrcs_apply(dl_qsrcs_t *qs, const dl_commit_t *c, dl_error_t *err) {
    if (!qs || !c)
        return dl_error_set(err, DL_EINVAL, "dl_qsrcs_apply: NULL argument");
    int first = 0;
    /* The shared engines first: each once for every subscription in it (an engine
     * failure, out of memory, fails each of them below through dl_live_status). */
    dl_error_t ee[DL_TIME_MAX_ROOT_DIM + 1];
    for (size_t k = 0; k < DL_ARRAY_LEN(qs->eng); k++) {
        qengine_t *ge = &qs->eng[k];
        dl_error_clear(&ee[k]);
        if (!ge->e || !dl_engine_apply(ge->e, c, &ee[k]))
            continue;
        ge->failed = true; /* its queries fail below; new ones go standalone */
        if (!ge->n) {
            dl_engine_free(ge->e); /* nobody uses it: start afresh at the next open */
            ge->e = NULL;
            ge->failed = false;
        }
    }
    for (qsrc_t *s = qs->open; s; s = s->next) {
        /* dl_live_apply ignores old transactions without resetting its last change. */
        if (s->failed || c->tx <= s->last_tx)
            continue;
        dl_error_t e;
        dl_error_clear(&e);
        int rc;
        if (s->eng) {
            const dl_error_t *ge = &ee[s->eng - qs->eng];
            rc = dl_live_status(s->live);
            if (rc)
                dl_error_set(&e, rc, "%s", ge->code ? ge->message : dl_strerror(rc));
        } else {
            rc = dl_live_apply(s->live, c, &e);
        }
        if (rc) {
            fail(s, rc, &e);
            continue;
        }
        s->last_tx = c->tx;
        if (s->n_dims > 1) {
            uint64_t f[DL_DELTA_MAX_DIM] = {c->tx + 1};
            for (size_t i = 1; i < s->n_dims; i++)
                f[i] = c->frontier && i < c->n_time ? c->frontier[i] : s->last_f[i];
            rc = queue_dim_changes(s, &e);
            if (!rc)
                rc = queue_frontiers(s, f, s->last_f, &e);
            if (rc) {
                fail(s, rc, &e);
                if (!first)
                    first = dl_error_set(err, rc, "qsrcs: a change could not be queued");
            }
            continue;
        }
        uint64_t t[DL_DELTA_MAX_DIM] = {0};
        for (size_t i = 0; i < s->n_dims && c->time && i < c->n_time; i++)
            t[i] = c->time[i];
        t[0] = c->tx;
        dl_delta_t *d = NULL;
        rc = change_delta(s, t, &d, &e);
        if (!rc && dl_delta_len(d) == 0) {
            dl_delta_unref(d); /* DESIGN-NOTES §4: times that change nothing deliver nothing */
            continue;
        }
        if (!rc && s->n_pending == s->cap_pending) {
            size_t nc = s->cap_pending ? 2 * s->cap_pending : 4;
            dl_delta_t **np = dl_realloc(s->pending, nc * sizeof *np);
            if (np) {
                s->pending = np;
                s->cap_pending = nc;
            } else {
                rc = DL_ENOMEM;
            }
        }
        if (rc) {
            dl_delta_unref(d);
            fail(s, rc, &e);
            if (!first)
                first = dl_error_set(err, rc, "qsrcs: a change could not be queued");
            continue;
        }
        s->pending[s->n_pending++] = d;
    }
    return first;
}
