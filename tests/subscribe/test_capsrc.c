/*
 * test_capsrc.c: subscriptions fed by real dataflow graphs (dataflow/) through the capture
 * adapter and the registry: "(count-by-group)" (dl_count by column 0) and
 * "(filter-group)" with input G (dl_filter_eq). Random transactions; after each, the
 * graphs run and the registry pumps; every subscriber's accumulated result equals a naive
 * recomputation; an aggregate changes as retraction of the old row plus the new row; a
 * late subscriber's snapshot is current; the last unsubscribe frees the graph.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "subscribe/subscribe.h"

#include <deltalog/dataflow.h>
#include <stdio.h>
#include <string.h>

#define GROUPS 5
#define XS     12

typedef struct gsrc gsrc_t;

typedef struct gworld {
    int64_t state[GROUPS][XS]; /* multiplicity of row [g, x] */
    uint64_t time;
    gsrc_t *sources;
} gworld_t;

struct gsrc {
    gworld_t *w;
    gsrc_t *next;
    dl_graph_t *g;
    dl_input_t *in;
    dl_capsrc_t *cs;
};

static int feed(gsrc_t *s, uint64_t t, const int64_t (*ch)[3], size_t n, dl_error_t *err) {
    for (size_t i = 0; i < n; i++) {
        dl_value_t row[2] = {dl_value_int(ch[i][0]), dl_value_int(ch[i][1])};
        int rc = dl_input_update(s->in, row, 2, &t, ch[i][2], err);
        if (rc)
            return rc;
    }
    uint64_t next = t + 1;
    int rc = dl_input_advance_to(s->in, &next, err);
    return rc ? rc : dl_graph_run(s->g, err);
}

static void gsrc_close(void *p) {
    gsrc_t *s = p;
    for (gsrc_t **q = &s->w->sources; *q; q = &(*q)->next)
        if (*q == s) {
            *q = s->next;
            break;
        }
    dl_capsrc_free(s->cs);
    dl_graph_free(s->g);
    dl_free(s);
}

static int gsrc_open(void *ctx, const char *text, const dl_value_t *inputs, size_t n_inputs,
                     size_t n_dims, void **out, size_t *out_arity, dl_error_t *err) {
    gworld_t *w = ctx;
    bool count = strcmp(text, "(count-by-group)") == 0;
    if (!count && strcmp(text, "(filter-group)") != 0)
        return dl_error_set(err, DL_ENOTFOUND, "unknown query %s", text);
    if (n_dims != 1 || (!count && (n_inputs != 1 || inputs[0].type != DL_T_INT)))
        return dl_error_set(err, DL_EINVAL, "bad inputs");
    gsrc_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    s->w = w;
    int rc = DL_ENOMEM;
    dl_coll_t *outc = NULL;
    s->g = dl_graph_new(1, err);
    if (s->g && (s->in = dl_input_new(dl_graph_root(s->g), 2, err))) {
        uint32_t key[1] = {0};
        outc = count ? dl_count(dl_input_coll(s->in), key, 1, err)
                     : dl_filter_eq(dl_input_coll(s->in), 0, inputs[0], err);
    }
    dl_capture_t *cap = outc ? dl_capture_new(outc, NULL, NULL, err) : NULL;
    if (cap)
        rc = dl_capsrc_new(cap, 2, &w->time, 1, &s->cs, err);
    /* Load the current state at the current time, run, and absorb it into the
     * accumulated result: the registry's snapshot comes next. */
    if (!rc) {
        for (int g = 0; g < GROUPS && !rc; g++)
            for (int x = 0; x < XS && !rc; x++)
                if (w->state[g][x]) {
                    const int64_t ch[1][3] = {{g, x, w->state[g][x]}};
                    dl_value_t row[2] = {dl_value_int(ch[0][0]), dl_value_int(ch[0][1])};
                    rc = dl_input_update(s->in, row, 2, &w->time, ch[0][2], err);
                }
        uint64_t next = w->time + 1;
        if (!rc)
            rc = dl_input_advance_to(s->in, &next, err);
        if (!rc)
            rc = dl_graph_run(s->g, err);
        for (;;) {
            dl_delta_t *d = NULL;
            if (rc || (rc = dl_capsrc_poll(s->cs, &d, err)) || !d)
                break;
            dl_delta_unref(d);
        }
    }
    if (rc) {
        s->next = NULL;
        dl_capsrc_free(s->cs);
        dl_graph_free(s->g);
        dl_free(s);
        return rc;
    }
    s->next = w->sources;
    w->sources = s;
    *out = s;
    *out_arity = 2;
    return 0;
}

static int gsrc_snapshot(void *p, dl_delta_t **out, dl_error_t *err) {
    return dl_capsrc_snapshot(((gsrc_t *)p)->cs, out, err);
}
static int gsrc_poll(void *p, dl_delta_t **out, dl_error_t *err) {
    return dl_capsrc_poll(((gsrc_t *)p)->cs, out, err);
}

static const dl_source_vtable_t gvt = {gsrc_open, gsrc_snapshot, gsrc_poll, gsrc_close, NULL};

static void gcommit(gworld_t *w, const int64_t (*ch)[3], size_t n) {
    w->time++;
    for (size_t i = 0; i < n; i++)
        w->state[ch[i][0]][ch[i][1]] += ch[i][2];
    for (gsrc_t *s = w->sources; s; s = s->next) {
        dl_error_t err;
        dl_error_clear(&err);
        int rc = feed(s, w->time, ch, n, &err);
        if (rc)
            fail_msg("graph: %s", err.message);
    }
}

/* A subscriber's accumulated view: rows [a, b] -> multiplicity. */
typedef struct gview {
    dl_sub_t *sub;
    bool count;
    int64_t group;
    int64_t acc[GROUPS][64]; /* [g][b]: b is x (filter) or a count (count), < 64 */
    int data_msgs;
} gview_t;

static void gdrain(gview_t *v) {
    for (;;) {
        dl_delta_t *d;
        int rc = dl_sub_next(v->sub, 0, &d, NULL);
        assert_int_equal(rc, 0);
        if (!d)
            return;
        assert_int_equal(dl_delta_kind(d), DL_DELTA_DATA);
        v->data_msgs++;
        for (size_t i = 0; i < dl_delta_len(d); i++) {
            const dl_value_t *r = dl_delta_row(d, i);
            assert_true(r[0].as.i >= 0 && r[0].as.i < GROUPS && r[1].as.i >= 0 && r[1].as.i < 64);
            v->acc[r[0].as.i][r[1].as.i] += dl_delta_diff(d, i);
        }
        dl_delta_unref(d);
    }
}

/* The naive one-shot result, compared with the view. */
static void gcheck(const gview_t *v, const gworld_t *w) {
    for (int g = 0; g < GROUPS; g++) {
        int64_t cnt = 0;
        for (int x = 0; x < XS; x++)
            cnt += w->state[g][x];
        for (int b = 0; b < 64; b++) {
            int64_t want;
            if (v->count)
                want = cnt != 0 && b == cnt ? 1 : 0;
            else
                want = g == v->group && b < XS ? w->state[g][b] : 0;
            if (v->acc[g][b] != want)
                dl_prop_fail("%s view: row [%d %d] has %lld, want %lld",
                             v->count ? "count" : "filter", g, b, (long long)v->acc[g][b],
                             (long long)want);
        }
    }
}

static void gsubscribe(dl_registry_t *r, gview_t *v, bool count, int64_t group) {
    memset(v, 0, sizeof *v);
    v->count = count;
    v->group = group;
    dl_value_t in[1] = {dl_value_int(group)};
    dl_error_t err;
    dl_error_clear(&err);
    if (dl_subscribe(r, count ? "(count-by-group)" : "(filter-group)", in, count ? 0 : 1, NULL,
                     &v->sub, &err))
        fail_msg("subscribe: %s", err.message);
}

static void test_capsrc_dataflow_queries(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("capsrc_dataflow_queries")};
    static gworld_t w;
    memset(&w, 0, sizeof w);
    dl_registry_t *r;
    assert_int_equal(dl_registry_new(&gvt, &w, &r, NULL), 0);
    static gview_t warm;
    gsubscribe(r, &warm, true, 0); /* interns the query symbols (immortal) */
    dl_unsubscribe(r, warm.sub);
    dl_alloc_stats_t base;
    dl_alloc_stats(&base);
    static gview_t a, b, f, late;
    gsubscribe(r, &a, true, 0);
    gsubscribe(r, &b, true, 0);
    gsubscribe(r, &f, false, 1);
    dl_registry_stats_t rs;
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_sources, 2); /* a and b share one graph */
    dl_sub_stats_t st;
    dl_sub_stats(b.sub, &st);
    assert_int_equal(st.shared_with, 2);
    /* Aggregation: a count changes as retraction of the old row plus the new row. */
    const int64_t c1[][3] = {{2, 0, 1}, {2, 1, 1}};
    gcommit(&w, c1, 2);
    assert_int_equal(dl_registry_pump(r, NULL), 0);
    gdrain(&a);
    const int64_t c2[][3] = {{2, 5, 1}};
    gcommit(&w, c2, 1);
    assert_int_equal(dl_registry_pump(r, NULL), 0);
    dl_delta_t *d;
    assert_int_equal(dl_sub_next(a.sub, 0, &d, NULL), 0);
    assert_non_null(d);
    assert_int_equal(dl_delta_len(d), 2);
    dl_value_t old_row[2] = {dl_value_int(2), dl_value_int(2)};
    dl_value_t new_row[2] = {dl_value_int(2), dl_value_int(3)};
    assert_int_equal(dl_delta_find(d, old_row), -1);
    assert_int_equal(dl_delta_find(d, new_row), 1);
    assert_int_equal(dl_delta_time(d, NULL)[0], w.time);
    a.acc[2][2] -= 1;
    a.acc[2][3] += 1;
    dl_delta_unref(d);
    /* Random transactions. */
    long steps = dl_prop_iters(300);
    for (long i = 0; i < steps; i++) {
        int64_t ch[4][3];
        int n = 1 + (int)dl_rng_below(&rng, 4);
        for (int k = 0; k < n; k++) {
            int g = (int)dl_rng_below(&rng, GROUPS), x = (int)dl_rng_below(&rng, XS);
            bool dup = false;
            for (int j = 0; j < k; j++)
                dup |= ch[j][0] == g && ch[j][1] == x;
            if (dup) {
                n = k;
                break;
            }
            ch[k][0] = g;
            ch[k][1] = x;
            /* Multiplicities stay within 0..3, so counts stay below 64 (the view's width). */
            ch[k][2] = w.state[g][x] > 0 && (w.state[g][x] >= 3 || dl_rng_below(&rng, 2)) ? -1 : 1;
        }
        gcommit(&w, (const int64_t(*)[3])ch, (size_t)n);
        if (dl_rng_below(&rng, 3) == 0)
            continue; /* several transactions before the next pump */
        assert_int_equal(dl_registry_pump(r, NULL), 0);
        gdrain(&a);
        gdrain(&f);
        gcheck(&a, &w);
        gcheck(&f, &w);
        if (i >= steps / 2 && !late.sub)
            gsubscribe(r, &late, true, 0); /* joins the existing graph mid-stream */
        if (late.sub) {
            gdrain(&late);
            gcheck(&late, &w);
        }
    }
    assert_int_equal(dl_registry_pump(r, NULL), 0);
    gdrain(&b); /* b read nothing until now: coalesced into one current delta */
    gcheck(&b, &w);
    assert_int_equal(b.data_msgs, 1);
    dl_sub_stats(late.sub, &st);
    assert_int_equal(st.shared_with, 3);
    dl_unsubscribe(r, a.sub);
    dl_unsubscribe(r, b.sub);
    dl_unsubscribe(r, late.sub);
    dl_unsubscribe(r, f.sub);
    dl_registry_stats(r, &rs);
    assert_int_equal(rs.n_sources, 0);
    assert_null(w.sources);
    dl_alloc_stats_t after;
    dl_alloc_stats(&after);
    assert_int_equal(after.live_bytes, base.live_bytes); /* graphs torn down, memory back */
    dl_registry_free(r);
}

DL_TEST_GROUP(capsrc, cmocka_unit_test(test_capsrc_dataflow_queries));
