/*
 * test_capsrc.c: subscriptions fed by real dataflow graphs (dataflow/) through the capture
 * adapter and the registry: "(count-by-group)" (dl_count by column 0) and
 * "(filter-group)" with input G (dl_filter_eq). Random transactions; after each, the
 * graphs run and the registry pumps; every subscriber's accumulated result equals a naive
 * recomputation; an aggregate changes as retraction of the old row plus the new row; a
 * late subscriber's snapshot is current; the last unsubscribe frees the graph. And a 2-D
 * graph over [tx, day]: a late subscriber's snapshot per day (test_capsrc_two_coordinates).
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

/* ---- two time coordinates [tx, day] -------------------------------------------------------- */

/* A count by group over rows entered at [tx, day] (retroactive days included), in a 2-D
 * graph. An early subscriber (callback) receives every change at its time; a later one
 * receives, inside dl_subscribe, one snapshot message per day at [T, day] (before: one
 * message collapsed at the latest time, wrong at lower days). At every [T, D] from each
 * one's start, the sum of its messages at times <= [T, D] equals a naive count of the rows
 * whose changes up to [T, D] sum to 1. */
enum { MD_G = 3, MD_X = 5, MD_DAYS = 6, MD_TX = 40, MD_MAXLOG = 4096 };

typedef struct md_change {
    uint64_t tx, day;
    int g, x, diff;
} md_change_t;

typedef struct md_world {
    dl_graph_t *g;
    dl_input_t *in;
    dl_capsrc_t *cs;
    md_change_t ch[MD_TX * 3];
    int n_ch;
} md_world_t;

typedef struct md_rec {
    uint64_t t[MD_MAXLOG][2];
    int64_t g[MD_MAXLOG], n[MD_MAXLOG], diff[MD_MAXLOG];
    int len, msgs;
    bool snapshot_first;
} md_rec_t;

static int md_open(void *ctx, const char *text, const dl_value_t *inputs, size_t n_inputs,
                   size_t n_dims, void **out, size_t *out_arity, dl_error_t *err) {
    md_world_t *w = ctx;
    (void)text, (void)inputs, (void)n_inputs;
    if (n_dims != 2 || w->g)
        return dl_error_set(err, DL_EINVAL, "one 2-D source");
    uint64_t t0[2] = {0, 0};
    uint32_t key[1] = {0};
    w->g = dl_graph_new(2, err);
    dl_coll_t *c = NULL;
    if (w->g && (w->in = dl_input_new(dl_graph_root(w->g), 2, err)))
        c = dl_count(dl_input_coll(w->in), key, 1, err);
    dl_capture_t *cap = c ? dl_capture_new(c, NULL, NULL, err) : NULL;
    int rc = cap ? dl_capsrc_new(cap, 2, t0, 2, &w->cs, err) : DL_ENOMEM;
    if (rc)
        return rc;
    *out = w;
    *out_arity = 2;
    return 0;
}
static int md_snapshot(void *p, dl_delta_t **out, dl_error_t *err) {
    return dl_capsrc_snapshot(((md_world_t *)p)->cs, out, err);
}
static int md_poll(void *p, dl_delta_t **out, dl_error_t *err) {
    return dl_capsrc_poll(((md_world_t *)p)->cs, out, err);
}
static void md_close(void *p) {
    md_world_t *w = p;
    dl_capsrc_free(w->cs);
    dl_graph_free(w->g);
    w->cs = NULL;
    w->g = NULL;
}
static const dl_source_vtable_t md_vt = {md_open, md_snapshot, md_poll, md_close, NULL};

static void md_cb(dl_sub_t *s, const dl_delta_t *d, void *udata) {
    (void)s;
    md_rec_t *r = udata;
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return;
    if (r->msgs++ == 0)
        r->snapshot_first = dl_delta_is_snapshot(d);
    const uint64_t *t = dl_delta_time(d, NULL);
    for (size_t i = 0; i < dl_delta_len(d) && r->len < MD_MAXLOG; i++, r->len++) {
        r->t[r->len][0] = t[0];
        r->t[r->len][1] = t[1];
        r->g[r->len] = dl_delta_row(d, i)[0].as.i;
        r->n[r->len] = dl_delta_row(d, i)[1].as.i;
        r->diff[r->len] = dl_delta_diff(d, i);
    }
}

/* Checks r's sums at [T, D] against the naive count, for every group. */
static void md_check(const md_world_t *w, const md_rec_t *r, uint64_t T, uint64_t D,
                     const char *who) {
    for (int g = 0; g < MD_G; g++) {
        int64_t want = 0;
        for (int x = 0; x < MD_X; x++) {
            int64_t m = 0;
            for (int i = 0; i < w->n_ch; i++)
                if (w->ch[i].g == g && w->ch[i].x == x && w->ch[i].tx <= T && w->ch[i].day <= D)
                    m += w->ch[i].diff;
            assert_true(m == 0 || m == 1);
            want += m;
        }
        int64_t rows[MD_G * MD_X + 2] = {0}; /* multiplicity of [g, n] for n = 0.. */
        for (int i = 0; i < r->len; i++)
            if (r->g[i] == g && r->t[i][0] <= T && r->t[i][1] <= D)
                rows[r->n[i]] += r->diff[i];
        for (int64_t n = 0; n < MD_G * MD_X + 2; n++) {
            int64_t expect = want > 0 && n == want ? 1 : 0;
            if (rows[n] != expect)
                fail_msg("%s at [%llu %llu]: row [%d %lld] has %lld, want %lld", who,
                         (unsigned long long)T, (unsigned long long)D, g, (long long)n,
                         (long long)rows[n], (long long)expect);
        }
    }
}

static void test_capsrc_two_coordinates(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("capsrc_two_coordinates");
    dl_rng_t rng = {seed};
    static md_world_t w;
    memset(&w, 0, sizeof w);
    dl_registry_t *reg = NULL;
    assert_int_equal(dl_registry_new(&md_vt, &w, &reg, NULL), 0);
    static md_rec_t early, late;
    memset(&early, 0, sizeof early);
    memset(&late, 0, sizeof late);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.n_dims = 2;
    o.on_delta = md_cb;
    o.udata = &early;
    dl_sub_t *se = NULL, *sl = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl_subscribe(reg, "(count)", NULL, 0, &o, &se, &err), 0);
    bool present[MD_G][MD_X] = {{false}};
    uint64_t lastday[MD_G][MD_X] = {{0}};
    uint64_t tx = 0;
    for (int step = 0; step < MD_TX; step++) {
        tx++;
        uint64_t day = dl_rng_below(&rng, MD_DAYS);
        bool touched[MD_G][MD_X] = {{false}};
        for (int k = 0; k < 1 + (int)dl_rng_below(&rng, 3); k++) {
            int g = (int)dl_rng_below(&rng, MD_G), x = (int)dl_rng_below(&rng, MD_X);
            if (touched[g][x] || lastday[g][x] > day)
                continue; /* one change per row and tx; each row's days never decrease */
            touched[g][x] = true;
            int diff = present[g][x] ? -1 : 1;
            present[g][x] = !present[g][x];
            lastday[g][x] = day;
            w.ch[w.n_ch++] = (md_change_t){tx, day, g, x, diff};
            dl_value_t row[2] = {dl_value_int(g), dl_value_int(x)};
            uint64_t t[2] = {tx, day};
            assert_int_equal(dl_input_update(w.in, row, 2, t, diff, &err), 0);
        }
        uint64_t next[2] = {tx + 1, 0};
        assert_int_equal(dl_input_advance_to(w.in, next, &err), 0);
        assert_int_equal(dl_graph_run(w.g, &err), 0);
        assert_int_equal(dl_registry_pump(reg, &err), 0);
    }
    /* The late subscriber: its whole snapshot inside dl_subscribe, one message per day. */
    o.udata = &late;
    assert_int_equal(dl_subscribe(reg, "(count)", NULL, 0, &o, &sl, &err), 0);
    assert_true(late.snapshot_first);
    assert_true(late.msgs >= 1 && late.msgs <= MD_DAYS);
    assert_true(early.snapshot_first);
    for (uint64_t D = 0; D <= MD_DAYS; D++) {
        md_check(&w, &late, tx, D, "late");
        for (uint64_t T = 1; T <= tx; T++)
            md_check(&w, &early, T, D, "early");
    }
    dl_unsubscribe(reg, se);
    dl_unsubscribe(reg, sl);
    dl_registry_stats_t st;
    dl_registry_stats(reg, &st);
    assert_int_equal(st.n_sources, 0);
    dl_registry_free(reg);
}

DL_TEST_GROUP(capsrc, cmocka_unit_test(test_capsrc_dataflow_queries),
              cmocka_unit_test(test_capsrc_two_coordinates));
