/*
 * integ.c: the harness of the integration tests (see integ.h): an engine wired as an
 * embedding application wires it, subscriber views with their accumulated results and
 * delta logs, and the invariant check against the one-shot engines at the time of a
 * view's latest delta. It uses the public API only (the headers in include/deltalog), like an
 * application. It does not drive threads itself. Follows docs/subscribe.md.
 */
#include "tests/integration/integ.h"

#include <deltalog/alloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable string -------------------------------------------------------------------- */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf_t;

static void sb_putn(sbuf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = dl_realloc(b->p, cap);
        assert_non_null(p);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sbuf_t *b, const char *s) { sb_putn(b, s, strlen(s)); }
static char *sb_take(sbuf_t *b) {
    if (!b->p)
        sb_putn(b, "", 0);
    return b->p;
}
static void sb_value(sbuf_t *b, dl_value_t v) {
    char *t = dl_value_to_edn(v);
    assert_non_null(t);
    sb_puts(b, t);
    dl_free(t);
}
static void sb_row(sbuf_t *b, const dl_value_t *row, size_t arity) {
    sb_puts(b, "[");
    for (size_t c = 0; c < arity; c++) {
        if (c)
            sb_puts(b, " ");
        sb_value(b, row[c]);
    }
    sb_puts(b, "]");
}

/* Indices of d's pairs sorted by row (insertion sort: deltas here are small). */
static size_t *sorted_pairs(const dl_delta_t *d) {
    size_t n = dl_delta_len(d), arity = dl_delta_arity(d);
    size_t *ix = dl_malloc((n ? n : 1) * sizeof *ix);
    assert_non_null(ix);
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        while (j > 0 && dl_row_cmp(dl_delta_row(d, ix[j - 1]), dl_delta_row(d, i), arity) > 0) {
            ix[j] = ix[j - 1];
            j--;
        }
        ix[j] = i;
    }
    return ix;
}

static char *delta_text(const dl_delta_t *d) {
    sbuf_t b = {0};
    size_t *ix = sorted_pairs(d);
    for (size_t k = 0; k < dl_delta_len(d); k++) {
        int64_t diff = dl_delta_diff(d, ix[k]);
        char head[32];
        if (diff == 1 || diff == -1)
            snprintf(head, sizeof head, "%s%c", k ? " " : "", diff > 0 ? '+' : '-');
        else
            snprintf(head, sizeof head, "%s%+lld", k ? " " : "", (long long)diff);
        sb_puts(&b, head);
        sb_row(&b, dl_delta_row(d, ix[k]), dl_delta_arity(d));
    }
    dl_free(ix);
    return sb_take(&b);
}

/* ---- the engine --------------------------------------------------------------------------- */
static int current_db(void *ctx, const struct dl_db **out_db, uint64_t *out_time,
                      size_t *out_n_time, dl_error_t *err) {
    (void)err;
    ienv_t *e = ctx;
    dl_db_unref(e->db);
    e->db = dl_store_db(e->st);
    *out_db = e->db;
    uint64_t basis = dl_db_basis_tx(e->db);
    size_t n = basis ? dl_db_tx_time(e->db, basis, out_time, DL_DELTA_MAX_DIM) : 0;
    if (n == 0) {
        out_time[0] = basis;
        n = 1;
    }
    *out_n_time = n > DL_DELTA_MAX_DIM ? DL_DELTA_MAX_DIM : n;
    return 0;
}

/* The commit listener: the engine step of an embedding application. */
static void on_commit(void *ctx, const dl_commit_t *c) {
    ienv_t *e = ctx;
    e->commits++;
    e->last_n_time = c->n_time < DL_DELTA_MAX_DIM ? c->n_time : DL_DELTA_MAX_DIM;
    memcpy(e->last_time, c->time, e->last_n_time * sizeof *c->time);
    int rc = dl_qsrcs_apply(e->qs, c, NULL);
    if (rc && !e->apply_rc)
        e->apply_rc = rc;
    if (e->pump_in_commit && e->reg) {
        rc = dl_registry_pump(e->reg, NULL);
        if (rc && !e->pump_rc)
            e->pump_rc = rc;
    }
}

void ienv_open(ienv_t *e, const char *dir, const char *rules, const char *schema) {
    memset(e, 0, sizeof *e);
    e->rules = rules;
    e->pump_in_commit = true;
    dl_error_t err = {0};
    int rc;
    if (dir) {
        dl_store_options_t so = {0};
        so.sync_mode = DL_STORE_SYNC_NONE;
        rc = dl_store_open(dir, &so, &e->st, &err);
    } else {
        rc = dl_store_open_memory(&e->st, &err);
    }
    if (rc)
        fail_msg("open store: %s", err.message);
    dl_qsrc_env_t qe = {current_db, e, rules};
    assert_int_equal(dl_qsrcs_new(&qe, &e->qs, NULL), 0);
    assert_int_equal(dl_registry_new(dl_qsrcs_vtable(), e->qs, &e->reg, NULL), 0);
    assert_int_equal(dl_store_listen(e->st, on_commit, e, &e->listener, &err), 0);
    if (schema)
        ienv_tx(e, "%s", schema);
}

void ienv_close(ienv_t *e) {
    dl_registry_t *reg = e->reg;
    e->reg = NULL;
    dl_registry_free(reg);
    dl_store_unlisten(e->st, e->listener);
    dl_qsrcs_free(e->qs);
    dl_db_unref(e->db);
    dl_store_close(e->st);
    memset(e, 0, sizeof *e);
}

int ienv_try_tx(ienv_t *e, const char *text) {
    dl_error_t err = {0};
    return dl_store_transact_edn(e->st, text, strlen(text), NULL, &err);
}

uint64_t ienv_tx(ienv_t *e, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    dl_error_t err = {0};
    dl_tx_report_t rep;
    int rc = dl_store_transact_edn(e->st, buf, (size_t)n, &rep, &err);
    if (rc)
        fail_msg("transact %s: %s (%s)", buf, err.message, dl_err_name(rc));
    uint64_t tx = rep.tx;
    dl_tx_report_fini(&rep);
    assert_int_equal(e->apply_rc, 0);
    assert_int_equal(e->pump_rc, 0);
    return tx;
}

void ienv_pump(ienv_t *e) { assert_int_equal(dl_registry_pump(e->reg, NULL), 0); }

dl_value_t ikw(const char *name) {
    dl_value_t v;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, name, strlen(name), &v, NULL), 0);
    return v;
}

dl_value_t istr(const char *s) {
    dl_value_t v;
    assert_int_equal(dl_value_text(DL_T_STRING, s, strlen(s), &v, NULL), 0);
    return v;
}

/* ---- views -------------------------------------------------------------------------------- */
static void view_bad(iview_t *v, const char *msg) {
    if (!v->bad++)
        snprintf(v->bad_msg, sizeof v->bad_msg, "%s", msg);
}

static int time_cmp(const uint64_t *a, const uint64_t *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

void iview_apply(iview_t *v, const dl_delta_t *d) {
    if (v->ended) {
        view_bad(v, "a message after END");
        return;
    }
    switch (dl_delta_kind(d)) {
        case DL_DELTA_END:
            v->ended = true;
            v->end_code = dl_delta_code(d);
            return;
        case DL_DELTA_FRONTIER:
            v->n_frontier++;
            return;
        case DL_DELTA_DATA:
            break;
    }
    size_t n_dims;
    const uint64_t *t = dl_delta_time(d, &n_dims);
    if (n_dims != v->n_dims)
        view_bad(v, "a delta with the wrong number of time coordinates");
    if (!v->acc) {
        if (!dl_delta_is_snapshot(d))
            view_bad(v, "the first DATA delta is not the snapshot");
        v->arity = dl_delta_arity(d);
        uint64_t t0 = 0;
        if (dl_delta_new(DL_DELTA_DATA, v->arity, &t0, 1, &v->acc, NULL)) {
            view_bad(v, "out of memory");
            return;
        }
    } else {
        if (dl_delta_is_snapshot(d))
            view_bad(v, "a second snapshot");
        if (time_cmp(t, v->time, n_dims < v->n_dims ? n_dims : v->n_dims) <= 0)
            view_bad(v, "DATA times do not strictly increase");
        if (dl_delta_len(d) == 0)
            view_bad(v, "an empty DATA delta after the snapshot");
    }
    if (dl_delta_arity(d) != v->arity)
        view_bad(v, "a delta of the wrong arity");
    for (size_t i = 0; i < dl_delta_len(d); i++) {
        if (dl_delta_diff(d, i) == 0)
            view_bad(v, "a zero diff");
        if (dl_delta_add(v->acc, dl_delta_row(d, i), dl_delta_diff(d, i), NULL))
            view_bad(v, "accumulating failed");
    }
    memcpy(v->time, t, (n_dims < DL_DELTA_MAX_DIM ? n_dims : DL_DELTA_MAX_DIM) * sizeof *t);
    v->have_time = true;
    if (v->n_log == v->cap_log) {
        size_t cap = v->cap_log ? v->cap_log * 2 : 16;
        char **log = dl_realloc(v->log, cap * sizeof *log);
        uint64_t *ltx = dl_realloc(v->log_tx, cap * sizeof *ltx);
        if (log)
            v->log = log;
        if (ltx)
            v->log_tx = ltx;
        if (!log || !ltx) {
            view_bad(v, "out of memory");
            return;
        }
        v->cap_log = cap;
    }
    v->log[v->n_log] = delta_text(d);
    v->log_tx[v->n_log] = t[0];
    v->n_log++;
}

void iview_cb(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    iview_t *v = udata;
    if (v->lock)
        pthread_mutex_lock(v->lock);
    iview_apply(v, d);
    if (v->lock)
        pthread_mutex_unlock(v->lock);
}

int iview_try_sub(ienv_t *e, iview_t *v, const char *query, const dl_value_t *inputs,
                  size_t n_inputs, const char *args, const dl_sub_options_t *o) {
    iview_t nv;
    memset(&nv, 0, sizeof nv);
    nv.query = query;
    nv.lock = v->lock;
    snprintf(nv.args, sizeof nv.args, "%s", args ? args : "");
    dl_sub_options_t so;
    if (o)
        so = *o;
    else
        dl_sub_options_init(&so);
    nv.n_dims = so.n_dims;
    if (so.on_delta) {
        so.on_delta = iview_cb;
        nv.callback = true;
    }
    /* The callback's udata must be the view's final address: build it in place. */
    *v = nv;
    so.udata = v;
    dl_error_t err = {0};
    int rc = dl_subscribe(e->reg, query, inputs, n_inputs, &so, &v->sub, &err);
    if (rc) {
        print_message("subscribe %s: %s\n", query, err.message);
        memset(v, 0, sizeof *v);
    }
    return rc;
}

void iview_sub(ienv_t *e, iview_t *v, const char *query, const dl_value_t *inputs, size_t n_inputs,
               const char *args, const dl_sub_options_t *o) {
    int rc = iview_try_sub(e, v, query, inputs, n_inputs, args, o);
    if (rc)
        fail_msg("subscribe %s: %s", query, dl_err_name(rc));
}

static void assert_good(const iview_t *v) {
    if (v->bad)
        fail_msg("%s: %d protocol violation(s), first: %s", v->query, v->bad, v->bad_msg);
}

int iview_step(iview_t *v) {
    if (v->callback || v->ended)
        return 0;
    dl_delta_t *d = NULL;
    assert_int_equal(dl_sub_next(v->sub, 0, &d, NULL), 0);
    if (!d)
        return 0;
    iview_apply(v, d);
    dl_delta_unref(d);
    assert_good(v);
    return 1;
}

int iview_drain(iview_t *v) {
    size_t before = v->n_log;
    while (iview_step(v))
        ;
    assert_good(v);
    return (int)(v->n_log - before);
}

const char *iview_take(iview_t *v) {
    iview_drain(v);
    if (v->taken == v->n_log)
        return NULL;
    return v->log[v->taken++];
}

void iview_expect(iview_t *v, const char *want) {
    const char *got = iview_take(v);
    if (!got)
        fail_msg("%s: expected delta %s, nothing arrived", v->query, want);
    if (strcmp(got, want) != 0)
        fail_msg("%s:\nexpected delta %s\ngot            %s", v->query, want, got);
}

void iview_expect_none(iview_t *v) {
    const char *got = iview_take(v);
    if (got)
        fail_msg("%s: expected no delta, got %s", v->query, got);
}

char *iview_text(iview_t *v) {
    sbuf_t b = {0};
    sb_puts(&b, "[");
    if (v->acc) {
        size_t *ix = sorted_pairs(v->acc);
        for (size_t k = 0; k < dl_delta_len(v->acc); k++) {
            if (dl_delta_diff(v->acc, ix[k]) != 1) {
                sbuf_t r = {0};
                sb_row(&r, dl_delta_row(v->acc, ix[k]), v->arity);
                fail_msg("%s: accumulated multiplicity %lld for %s (set semantics broken)",
                         v->query, (long long)dl_delta_diff(v->acc, ix[k]), r.p);
            }
            if (k)
                sb_puts(&b, " ");
            sb_row(&b, dl_delta_row(v->acc, ix[k]), v->arity);
        }
        dl_free(ix);
    }
    sb_puts(&b, "]");
    return sb_take(&b);
}

char *iview_oracle(ienv_t *e, const iview_t *v, uint64_t tx, bool naive) {
    const char *rules = strchr(v->query, '%') ? e->rules : NULL;
    dl_query_t *q = NULL;
    dl_error_t err = {0};
    int rc = dl_query_parse(v->query, strlen(v->query), rules, rules ? strlen(rules) : 0, NULL, &q,
                            &err);
    if (rc)
        fail_msg("parse %s: %s", v->query, err.message);
    dl_db_t *now = dl_store_db(e->st);
    dl_db_t *at = dl_db_as_of(now, tx);
    size_t alen = strlen(v->args);
    dl_query_result_t *res = NULL;
    rc = dl_query_run(q, at, alen ? v->args : NULL, alen, &res, &err);
    if (rc)
        fail_msg("one-shot %s: %s", v->query, err.message);
    char *text = dl_query_result_to_edn(res);
    assert_non_null(text);
    dl_query_result_free(res);
    if (naive) {
        dl_query_source_t src = {"$", at};
        rc = dl_query_eval_naive(q, &src, 1, alen ? v->args : NULL, alen, &res, &err);
        if (rc)
            fail_msg("reference %s: %s", v->query, err.message);
        char *ref = dl_query_result_to_edn(res);
        dl_query_result_free(res);
        if (strcmp(ref, text) != 0)
            fail_msg("%s at tx %llu:\ncompiled  %s\nreference %s", v->query, (unsigned long long)tx,
                     text, ref);
        dl_free(ref);
    }
    dl_db_unref(at);
    dl_db_unref(now);
    dl_query_free(q);
    return text;
}

void iview_check(ienv_t *e, iview_t *v, bool naive) {
    assert_good(v);
    if (!v->have_time)
        fail_msg("%s: no snapshot received", v->query);
    char *got = iview_text(v), *want = iview_oracle(e, v, v->time[0], naive);
    if (strcmp(got, want) != 0)
        fail_msg("%s (latest delta at tx %llu):\nsubscriber %s\none-shot   %s", v->query,
                 (unsigned long long)v->time[0], got, want);
    dl_free(got);
    dl_free(want);
}

void iview_check_current(ienv_t *e, iview_t *v, bool naive) {
    assert_good(v);
    dl_db_t *now = dl_store_db(e->st);
    uint64_t basis = dl_db_basis_tx(now);
    dl_db_unref(now);
    char *got = iview_text(v), *want = iview_oracle(e, v, basis, naive);
    if (strcmp(got, want) != 0)
        fail_msg("%s (current, tx %llu):\nsubscriber %s\none-shot   %s", v->query,
                 (unsigned long long)basis, got, want);
    dl_free(got);
    dl_free(want);
}

void iview_free(ienv_t *e, iview_t *v) {
    if (v->sub) {
        if (e && e->reg)
            dl_unsubscribe(e->reg, v->sub);
        else
            dl_sub_close(v->sub);
    }
    dl_delta_unref(v->acc);
    for (size_t i = 0; i < v->n_log; i++)
        dl_free(v->log[i]);
    dl_free(v->log);
    dl_free(v->log_tx);
    memset(v, 0, sizeof *v);
}
