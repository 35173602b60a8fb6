/*
 * test_registry.c: the registry's sharing and reference counting against a test source:
 * "(filter-mod M)" with input R selects the rows [k, 10k] of an in-memory collection with
 * k mod M == R, incrementally (the filter of a change is the change of the filter). Equal
 * normalized queries with equal inputs share one source (visible in stats, and in the
 * deltas being the same objects); unsubscribing releases; the last subscriber closes the
 * source and every byte is returned; a randomized run checks refcounts and every
 * subscriber's accumulated result against a naive oracle.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <stdio.h>
#include <string.h>

#define AR   2
#define KEYS 48

typedef struct tsrc tsrc_t;

typedef struct world {
    int64_t state[KEYS];
    uint64_t time;
    tsrc_t *sources;
    int fail_poll; /* poll returns this code when nonzero */
} world_t;

struct tsrc {
    world_t *w;
    tsrc_t *next;
    int64_t mod, rem;
    int64_t acc[KEYS]; /* the sum of what poll has returned (plus the initial state) */
    uint64_t acc_time; /* the time of the last returned DATA delta */
    dl_delta_t **pending;
    size_t n_pending, cap_pending, head;
};

static int src_open(void *ctx, const char *text, const dl_value_t *inputs, size_t n_inputs,
                    size_t n_dims, void **out, size_t *out_arity, dl_error_t *err) {
    world_t *w = ctx;
    long long mod;
    if (sscanf(text, "(filter-mod %lld)", &mod) != 1 || mod <= 0)
        return dl_error_set(err, DL_ENOTFOUND, "unknown query %s", text);
    if (n_inputs != 1 || inputs[0].type != DL_T_INT || n_dims != 1)
        return dl_error_set(err, DL_EINVAL, "filter-mod takes one integer input");
    tsrc_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    s->w = w;
    s->mod = mod;
    s->rem = inputs[0].as.i;
    for (int k = 0; k < KEYS; k++)
        if (k % s->mod == s->rem)
            s->acc[k] = w->state[k];
    s->acc_time = w->time;
    s->next = w->sources;
    w->sources = s;
    *out = s;
    *out_arity = AR;
    return 0;
}

static void row_of(int64_t k, dl_value_t *row) {
    row[0] = dl_value_int(k);
    row[1] = dl_value_int(k * 10);
}

static int src_snapshot(void *p, dl_delta_t **out, dl_error_t *err) {
    tsrc_t *s = p;
    int rc = dl_delta_new(DL_DELTA_DATA, AR, &s->acc_time, 1, out, err);
    for (int k = 0; k < KEYS && !rc; k++)
        if (s->acc[k]) {
            dl_value_t row[AR];
            row_of(k, row);
            rc = dl_delta_add(*out, row, s->acc[k], err);
        }
    if (rc) {
        dl_delta_unref(*out);
        *out = NULL;
    }
    return rc;
}

static int src_poll(void *p, dl_delta_t **out, dl_error_t *err) {
    tsrc_t *s = p;
    *out = NULL;
    if (s->w->fail_poll)
        return dl_error_set(err, s->w->fail_poll, "test source: poll failure");
    if (s->head == s->n_pending)
        return 0;
    dl_delta_t *d = s->pending[s->head++];
    if (s->head == s->n_pending)
        s->head = s->n_pending = 0;
    if (dl_delta_kind(d) == DL_DELTA_DATA) {
        for (size_t i = 0; i < dl_delta_len(d); i++)
            s->acc[dl_delta_row(d, i)[0].as.i] += dl_delta_diff(d, i);
        s->acc_time = dl_delta_time(d, NULL)[0];
    }
    *out = d;
    return 0;
}

static void src_close(void *p) {
    tsrc_t *s = p;
    for (tsrc_t **q = &s->w->sources; *q; q = &(*q)->next)
        if (*q == s) {
            *q = s->next;
            break;
        }
    for (size_t i = s->head; i < s->n_pending; i++)
        dl_delta_unref(s->pending[i]);
    dl_free(s->pending);
    dl_free(s);
}

static const dl_source_vtable_t vt = {src_open, src_snapshot, src_poll, src_close, NULL};

static void enqueue(tsrc_t *s, dl_delta_t *d) {
    if (s->n_pending == s->cap_pending) {
        s->cap_pending = s->cap_pending ? 2 * s->cap_pending : 8;
        s->pending = dl_realloc(s->pending, s->cap_pending * sizeof *s->pending);
        assert_non_null(s->pending);
    }
    s->pending[s->n_pending++] = d;
}

/* A transaction: changes (k, diff) at the next time; every source gets its filtered
 * change (when not empty) and a frontier. */
static void commit(world_t *w, const int64_t (*ch)[2], size_t n) {
    w->time++;
    for (size_t i = 0; i < n; i++)
        w->state[ch[i][0]] += ch[i][1];
    for (tsrc_t *s = w->sources; s; s = s->next) {
        dl_delta_t *d;
        assert_int_equal(dl_delta_new(DL_DELTA_DATA, AR, &w->time, 1, &d, NULL), 0);
        for (size_t i = 0; i < n; i++)
            if (ch[i][0] % s->mod == s->rem) {
                dl_value_t row[AR];
                row_of(ch[i][0], row);
                assert_int_equal(dl_delta_add(d, row, ch[i][1], NULL), 0);
            }
        if (dl_delta_len(d))
            enqueue(s, d);
        else
            dl_delta_unref(d);
        dl_delta_t *f;
        assert_int_equal(dl_delta_new(DL_DELTA_FRONTIER, 0, &w->time, 1, &f, NULL), 0);
        enqueue(s, f);
    }
}

/* A subscriber's view: reads everything waiting and accumulates it. */
typedef struct view {
    dl_sub_t *sub;
    int64_t acc[KEYS];
    int64_t mod, rem;
    int data_msgs;
    int end_code; /* -1000 while no END was seen */
} view_t;

static void drain(view_t *v) {
    for (;;) {
        dl_delta_t *d;
        int rc = dl_sub_next(v->sub, 0, &d, NULL);
        if (rc == DL_ECLOSED)
            return;
        assert_int_equal(rc, 0);
        if (!d)
            return;
        if (dl_delta_kind(d) == DL_DELTA_DATA) {
            v->data_msgs++;
            for (size_t i = 0; i < dl_delta_len(d); i++)
                v->acc[dl_delta_row(d, i)[0].as.i] += dl_delta_diff(d, i);
        } else if (dl_delta_kind(d) == DL_DELTA_END) {
            v->end_code = dl_delta_code(d);
        }
        dl_delta_unref(d);
    }
}

static void assert_view_current(const view_t *v, const world_t *w) {
    for (int k = 0; k < KEYS; k++) {
        int64_t want = k % v->mod == v->rem ? w->state[k] : 0;
        if (v->acc[k] != want)
            fail_msg("view mod %lld rem %lld: key %d has %lld, want %lld", (long long)v->mod,
                     (long long)v->rem, k, (long long)v->acc[k], (long long)want);
    }
}

static void subscribe_view(dl_registry_t *r, view_t *v, const char *q, int64_t mod, int64_t rem) {
    memset(v, 0, sizeof *v);
    v->mod = mod;
    v->rem = rem;
    v->end_code = -1000;
    dl_value_t in[1] = {dl_value_int(rem)};
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl_subscribe(r, q, in, 1, NULL, &v->sub, &err);
    if (rc)
        fail_msg("subscribe: %s", err.message);
}

static void test_registry_shares_one_source(void **state) {
    (void)state;
    static world_t w;
    memset(&w, 0, sizeof w);
    const int64_t c0[][2] = {{1, 1}, {4, 1}, {5, 1}};
    commit(&w, c0, 3);
    dl_registry_t *r;
    assert_int_equal(dl_registry_new(&vt, &w, &r, NULL), 0);
    view_t a, b, c;
    /* Warm-up: normalizing interns the query's symbols, which are immortal by design. */
    subscribe_view(r, &a, "(filter-mod 3)", 3, 1);
    dl_unsubscribe(r, a.sub);
    dl_alloc_stats_t base;
    dl_alloc_stats(&base);
    subscribe_view(r, &a, "(filter-mod 3)", 3, 1);
    subscribe_view(r, &b, "( filter-mod ,\n 3 ) ; the same query, spelled otherwise", 3, 1);
    subscribe_view(r, &c, "(filter-mod 3)", 3, 2);
    dl_registry_stats_t rs;
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_sources, 2);
    assert_int_equal(rs.n_subs, 3);
    dl_sub_stats_t sa, sb, sc;
    dl_sub_stats(a.sub, &sa);
    dl_sub_stats(b.sub, &sb);
    dl_sub_stats(c.sub, &sc);
    assert_int_equal(sa.shared_with, 2);
    assert_int_equal(sb.shared_with, 2);
    assert_int_equal(sa.source_id, sb.source_id);
    assert_int_equal(sc.shared_with, 1);
    assert_true(sc.source_id != sa.source_id);
    drain(&a);
    drain(&b);
    drain(&c);
    assert_view_current(&a, &w);
    assert_view_current(&c, &w);
    /* One change fans out as one shared delta object. */
    const int64_t c1[][2] = {{7, 1}, {1, -1}};
    commit(&w, c1, 2);
    assert_int_equal(dl_registry_pump(r, NULL), 0);
    dl_delta_t *da, *db;
    assert_int_equal(dl_sub_next(a.sub, 0, &da, NULL), 0);
    assert_int_equal(dl_sub_next(b.sub, 0, &db, NULL), 0);
    assert_ptr_equal(da, db);
    assert_int_equal(dl_delta_len(da), 2);
    for (size_t i = 0; i < dl_delta_len(da); i++) {
        a.acc[dl_delta_row(da, i)[0].as.i] += dl_delta_diff(da, i);
        b.acc[dl_delta_row(db, i)[0].as.i] += dl_delta_diff(db, i);
    }
    dl_delta_unref(da);
    dl_delta_unref(db);
    drain(&a);
    drain(&b);
    drain(&c);
    assert_view_current(&a, &w);
    assert_view_current(&b, &w);
    assert_view_current(&c, &w);
    /* A late subscriber gets the current result, then the same changes. */
    const int64_t c2[][2] = {{10, 2}};
    commit(&w, c2, 1); /* not pumped yet: the late subscription must not miss or repeat it */
    view_t d;
    subscribe_view(r, &d, "(filter-mod 3)", 3, 1);
    drain(&d);
    assert_view_current(&d, &w);
    drain(&a);
    assert_view_current(&a, &w);
    dl_sub_stats(d.sub, &sa);
    assert_int_equal(sa.shared_with, 3);
    /* Unsubscribing releases; the last one closes the source. */
    dl_unsubscribe(r, a.sub);
    dl_sub_stats(b.sub, &sb);
    assert_int_equal(sb.shared_with, 2);
    dl_sub_close(b.sub); /* from the consumer side: reaped at the next pump */
    assert_int_equal(dl_registry_pump(r, NULL), 0);
    dl_sub_stats(d.sub, &sa);
    assert_int_equal(sa.shared_with, 1);
    dl_unsubscribe(r, d.sub);
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_sources, 1);
    assert_int_equal(rs.sources_closed, 2); /* the warm-up's and this one */
    dl_unsubscribe(r, c.sub);
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_sources, 0);
    assert_int_equal(rs.n_subs, 0);
    assert_null(w.sources);
    dl_alloc_stats_t after;
    dl_alloc_stats(&after);
    assert_int_equal(after.live_bytes, base.live_bytes); /* every byte returned */
    dl_registry_free(r);
}

static void test_registry_errors(void **state) {
    (void)state;
    static world_t w;
    memset(&w, 0, sizeof w);
    dl_registry_t *r;
    dl_source_vtable_t bad = vt;
    bad.poll = NULL;
    assert_int_equal(dl_registry_new(&bad, &w, &r, NULL), DL_EINVAL);
    assert_int_equal(dl_registry_new(&vt, &w, &r, NULL), 0);
    dl_value_t in[1] = {dl_value_int(0)};
    dl_sub_t *s;
    dl_error_t err;
    dl_error_clear(&err);
    assert_int_equal(dl_subscribe(r, "(filter-mod 3", in, 1, NULL, &s, &err), DL_EPARSE);
    assert_int_equal(dl_subscribe(r, "(no-such-query)", in, 1, NULL, &s, NULL), DL_ENOTFOUND);
    dl_registry_stats_t rs;
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_sources, 0);
    /* A failing source ends its subscribers with its code and is closed. */
    view_t a;
    subscribe_view(r, &a, "(filter-mod 2)", 2, 0);
    w.fail_poll = DL_EIO;
    assert_int_equal(dl_registry_pump(r, NULL), DL_EIO);
    w.fail_poll = 0;
    drain(&a);
    assert_int_equal(a.end_code, DL_EIO);
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_sources, 0);
    assert_int_equal(rs.sources_closed, 1);
    dl_unsubscribe(r, a.sub); /* already reaped: releases the reference only */
    /* Freeing the registry ends live subscriptions normally. */
    subscribe_view(r, &a, "(filter-mod 2)", 2, 1);
    dl_registry_free(r);
    drain(&a);
    assert_int_equal(a.end_code, 0);
    dl_sub_close(a.sub);
}

/* Randomized: subscribe, unsubscribe (both ways), commit and pump at random; refcounts
 * match a naive count per (query, input) and every view equals the filtered state. */
static void test_registry_random(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("registry_random")};
    static world_t w;
    for (long it = 0; it < dl_prop_iters(20); it++) {
        memset(&w, 0, sizeof w);
        dl_registry_t *r;
        assert_int_equal(dl_registry_new(&vt, &w, &r, NULL), 0);
        view_t warm;
        subscribe_view(r, &warm, "(filter-mod 2)", 2, 0); /* interns the symbols */
        dl_unsubscribe(r, warm.sub);
        dl_alloc_stats_t base;
        dl_alloc_stats(&base);
        enum { MAXV = 40 };
        static view_t views[MAXV];
        bool live[MAXV] = {0};
        int n_live = 0;
        for (int step = 0; step < 400; step++) {
            int op = (int)dl_rng_below(&rng, 10);
            if (op < 3 && n_live < MAXV) {
                int i = 0;
                while (live[i])
                    i++;
                int64_t mod = 2 + (int64_t)dl_rng_below(&rng, 2);
                int64_t rem = (int64_t)dl_rng_below(&rng, (uint64_t)mod);
                char q[64];
                snprintf(q, sizeof q,
                         dl_rng_below(&rng, 2) ? "(filter-mod %lld)" : "(filter-mod  %lld ,)",
                         (long long)mod);
                subscribe_view(r, &views[i], q, mod, rem);
                live[i] = true;
                n_live++;
            } else if (op < 5 && n_live > 0) {
                int i = (int)dl_rng_below(&rng, MAXV);
                while (!live[i])
                    i = (i + 1) % MAXV;
                if (dl_rng_below(&rng, 2))
                    dl_unsubscribe(r, views[i].sub);
                else
                    dl_sub_close(views[i].sub);
                live[i] = false;
                n_live--;
            } else if (op < 8) {
                int64_t ch[4][2];
                int n = 1 + (int)dl_rng_below(&rng, 4);
                for (int k = 0; k < n; k++) {
                    ch[k][0] = (int64_t)dl_rng_below(&rng, KEYS);
                    ch[k][1] = w.state[ch[k][0]] > 0 && dl_rng_below(&rng, 2) ? -1 : 1;
                }
                commit(&w, (const int64_t(*)[2])ch, (size_t)n);
            } else {
                assert_int_equal(dl_registry_pump(r, NULL), 0);
                for (int i = 0; i < MAXV; i++)
                    if (live[i]) {
                        drain(&views[i]);
                        assert_view_current(&views[i], &w);
                        /* Naive refcount: live views with the same (mod, rem). */
                        uint64_t same = 0;
                        for (int j = 0; j < MAXV; j++)
                            same += live[j] && views[j].mod == views[i].mod &&
                                    views[j].rem == views[i].rem;
                        dl_sub_stats_t st;
                        dl_sub_stats(views[i].sub, &st);
                        if (st.shared_with != same)
                            dl_prop_fail("view %d shared_with %llu, expected %llu", i,
                                         (unsigned long long)st.shared_with,
                                         (unsigned long long)same);
                    }
                dl_registry_stats_t rs;
                dl_registry_stats(r, &rs);
                assert_int_equal(rs.n_subs, (size_t)n_live);
            }
        }
        for (int i = 0; i < MAXV; i++)
            if (live[i])
                dl_unsubscribe(r, views[i].sub);
        assert_int_equal(dl_registry_pump(r, NULL), 0);
        dl_registry_stats_t rs;
        dl_registry_stats(r, &rs);
        assert_int_equal(rs.n_sources, 0);
        assert_int_equal(rs.sources_opened, rs.sources_closed);
        dl_alloc_stats_t after;
        dl_alloc_stats(&after);
        assert_int_equal(after.live_bytes, base.live_bytes);
        dl_registry_free(r);
    }
}

/* The three policies behind one shared source, consumers that read nothing while five
 * transactions pass: coalesce holds one current delta; drop ends with lagged (and the
 * client subscribes again to a fresh snapshot); block makes the pump (the writer) wait,
 * then ends with timeout; the ended ones are reaped and the source serves on. */
static void test_registry_policies(void **state) {
    (void)state;
    static world_t w;
    memset(&w, 0, sizeof w);
    dl_registry_t *r;
    assert_int_equal(dl_registry_new(&vt, &w, &r, NULL), 0);
    dl_value_t in[1] = {dl_value_int(0)};
    dl_sub_options_t oc, od, ob;
    dl_sub_options_init(&oc);
    dl_sub_options_init(&od);
    od.policy = DL_SUB_DROP;
    od.max_queued = 2;
    dl_sub_options_init(&ob);
    ob.policy = DL_SUB_BLOCK;
    ob.max_queued = 2;
    ob.block_timeout_ms = 20;
    view_t vc, vd, vb;
    subscribe_view(r, &vc, "(filter-mod 2)", 2, 0);
    memset(&vd, 0, sizeof vd);
    memset(&vb, 0, sizeof vb);
    vd.mod = vb.mod = 2;
    vd.end_code = vb.end_code = -1000;
    assert_int_equal(dl_subscribe(r, "(filter-mod 2)", in, 1, &od, &vd.sub, NULL), 0);
    assert_int_equal(dl_subscribe(r, "(filter-mod 2)", in, 1, &ob, &vb.sub, NULL), 0);
    for (int i = 0; i < 5; i++) {
        const int64_t c[][2] = {{2 * i, 1}};
        commit(&w, c, 1);
        assert_int_equal(dl_registry_pump(r, NULL), 0);
    }
    dl_sub_stats_t st;
    dl_sub_stats(vc.sub, &st);
    assert_int_equal(st.queued, 2); /* one net delta and the latest frontier */
    assert_true(st.coalesced >= 8);
    assert_int_equal(st.lag_times, 6); /* the snapshot and five transactions */
    dl_sub_stats(vb.sub, &st);
    assert_int_equal(st.end_code, DL_ETIMEOUT);
    assert_true(st.blocked_ns >= 20 * 1000000ull);
    dl_sub_stats(vd.sub, &st);
    assert_int_equal(st.end_code, DL_ELAGGED);
    dl_registry_stats_t rs;
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_subs, 1); /* the ended ones were reaped */
    assert_int_equal(rs.n_sources, 1);
    drain(&vc);
    assert_view_current(&vc, &w);
    drain(&vd);
    assert_int_equal(vd.end_code, DL_ELAGGED);
    drain(&vb);
    assert_int_equal(vb.end_code, DL_ETIMEOUT);
    dl_sub_close(vd.sub);
    dl_sub_close(vb.sub);
    /* Subscribing again: a fresh snapshot, current. */
    view_t again;
    subscribe_view(r, &again, "(filter-mod 2)", 2, 0);
    drain(&again);
    assert_view_current(&again, &w);
    dl_sub_stats(again.sub, &st);
    assert_int_equal(st.shared_with, 2);
    dl_unsubscribe(r, again.sub);
    dl_unsubscribe(r, vc.sub);
    dl_registry_free(r);
}

/* Allocation failure at every point of subscribe (new and shared source) and of a pump's
 * fan-out: each call fails cleanly (DL_ENOMEM, nothing half-registered) or succeeds; a
 * subscriber whose queueing failed ends with END(nomem); no memory is lost. */
static void test_registry_alloc_failure(void **state) {
    (void)state;
    static world_t w;
    memset(&w, 0, sizeof w);
    const int64_t c0[][2] = {{1, 1}, {4, 1}, {7, 1}};
    commit(&w, c0, 3);
    dl_registry_t *r;
    assert_int_equal(dl_registry_new(&vt, &w, &r, NULL), 0);
    view_t warm;
    subscribe_view(r, &warm, "(filter-mod 3)", 3, 1);
    dl_unsubscribe(r, warm.sub);
    dl_alloc_stats_t base;
    dl_alloc_stats(&base);
    int failed_new = 0, failed_shared = 0, ended_nomem = 0;
    for (int64_t fail_at = 0; fail_at < 40; fail_at++) {
        dl_value_t in[1] = {dl_value_int(1)};
        static view_t a, b, c;
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        memset(&c, 0, sizeof c);
        a.mod = b.mod = c.mod = 3;
        a.rem = b.rem = c.rem = 1;
        a.end_code = b.end_code = c.end_code = -1000;
        dl_registry_stats_t rs;
        /* A new source. */
        dl_alloc_fail_after(fail_at);
        int rc = dl_subscribe(r, "(filter-mod 3)", in, 1, NULL, &a.sub, NULL);
        dl_alloc_fail_after(-1);
        dl_registry_stats(r, &rs);
        if (rc) {
            assert_int_equal(rc, DL_ENOMEM);
            assert_null(a.sub);
            assert_int_equal(rs.n_sources, 0);
            assert_int_equal(rs.n_subs, 0);
            failed_new++;
        }
        /* A subscriber of an existing source. */
        assert_int_equal(dl_subscribe(r, "(filter-mod 3)", in, 1, NULL, &b.sub, NULL), 0);
        dl_alloc_fail_after(fail_at);
        rc = dl_subscribe(r, "(filter-mod 3)", in, 1, NULL, &c.sub, NULL);
        dl_alloc_fail_after(-1);
        dl_registry_stats(r, &rs);
        assert_int_equal(rs.n_sources, 1);
        assert_int_equal(rs.n_subs, 1u + (a.sub != NULL) + (c.sub != NULL));
        if (rc) {
            assert_int_equal(rc, DL_ENOMEM);
            failed_shared++;
        }
        /* A pump whose fan-out may fail for some subscribers. */
        const int64_t c1[][2] = {{10, 1}, {1, -1}};
        commit(&w, c1, 2);
        const int64_t c2[][2] = {{13, 1}};
        commit(&w, c2, 1);
        dl_alloc_fail_after(fail_at / 4);
        rc = dl_registry_pump(r, NULL);
        dl_alloc_fail_after(-1);
        assert_int_equal(rc, 0); /* the source itself did not fail */
        view_t *vs[3] = {&a, &b, &c};
        for (int i = 0; i < 3; i++) {
            if (!vs[i]->sub)
                continue;
            drain(vs[i]);
            if (vs[i]->end_code == DL_ENOMEM)
                ended_nomem++;
            else
                assert_view_current(vs[i], &w);
            dl_unsubscribe(r, vs[i]->sub);
        }
        assert_int_equal(dl_registry_pump(r, NULL), 0);
        dl_registry_stats(r, &rs);
        assert_int_equal(rs.n_sources, 0);
        const int64_t undo[][2] = {{10, -1}, {1, 1}, {13, -1}};
        commit(&w, undo, 3); /* back to the initial collection (no source is open) */
        dl_alloc_stats_t after;
        dl_alloc_stats(&after);
        assert_int_equal(after.live_bytes, base.live_bytes);
    }
    print_message("failed: %d new, %d shared; %d subscribers ended with nomem\n", failed_new,
                  failed_shared, ended_nomem);
    assert_true(failed_new > 0 && failed_shared > 0 && ended_nomem > 0);
    dl_registry_free(r);
}

DL_TEST_GROUP(registry, cmocka_unit_test(test_registry_shares_one_source),
              cmocka_unit_test(test_registry_errors), cmocka_unit_test(test_registry_random),
              cmocka_unit_test(test_registry_alloc_failure),
              cmocka_unit_test(test_registry_policies));
