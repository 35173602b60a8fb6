/*
 * bench_w1.c: the shared W1 workload (../shared/bench/README.md: live reachability from
 * node 0 under rounds of edge insertions and deletions), run through one of deltalog's
 * layers. `--via dataflow` builds the reachability dataflow by hand (iterate with join +
 * distinct) on the dataflow API (include/deltalog/dataflow.h). Later `--via datalog` and
 * `--via server` add the same workload through the Datalog layer and the server: each
 * "via" is one struct of function pointers below (load, round, read the view), so the
 * data loading, timing, checksums and output stay shared.
 * Usage: bench_w1 --data DIR [--via dataflow] [--rounds R]
 * Output: {"bench":"w1","via":..,"params":{..},"init_ms":..,"p50_us":..,"p99_us":..,
 *          "peak_rss_mb":..,"checksum_ok":true|false}
 */
#include "bench/harness.h"

#include <deltalog/alloc.h>
#include <deltalog/dataflow.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the workload's data --------------------------------------------------------------- */
typedef struct edges {
    int64_t *v; /* pairs */
    size_t n, cap;
} edges_t;

static void edges_push(edges_t *e, int64_t s, int64_t d) {
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 1024;
        e->v = realloc(e->v, e->cap * 2 * sizeof *e->v);
        if (!e->v)
            abort();
    }
    e->v[2 * e->n] = s;
    e->v[2 * e->n + 1] = d;
    e->n++;
}

typedef struct round {
    edges_t add, del;
} round_t;

typedef struct load {
    edges_t initial;
} load_t;

static int read_initial(json_t *line, void *ctx) {
    load_t *l = ctx;
    edges_push(&l->initial, json_integer_value(json_array_get(line, 0)),
               json_integer_value(json_array_get(line, 1)));
    return 0;
}

static void read_pairs(json_t *arr, edges_t *e) {
    size_t i;
    json_t *p;
    size_t n = json_array_size(arr);
    if (e->n + n > e->cap) {
        e->cap = e->n + n;
        e->v = realloc(e->v, e->cap * 2 * sizeof *e->v);
        if (!e->v)
            abort();
    }
    json_array_foreach(arr, i, p) {
        edges_push(e, json_integer_value(json_array_get(p, 0)),
                   json_integer_value(json_array_get(p, 1)));
    }
}

/* ---- the view: a counted set of node ids maintained from diffs -------------------------- */
typedef struct view {
    int64_t *keys;
    int64_t *counts;
    size_t cap; /* power of two */
    size_t n;
} view_t;

static void view_add(view_t *v, int64_t key, int64_t d);

static void view_grow(view_t *v) {
    view_t nv = {calloc(v->cap * 2, sizeof(int64_t)), calloc(v->cap * 2, sizeof(int64_t)),
                 v->cap * 2, 0};
    for (size_t i = 0; i < v->cap; i++)
        if (v->counts[i])
            view_add(&nv, v->keys[i] - 1, v->counts[i]);
    free(v->keys);
    free(v->counts);
    *v = nv;
}

/* Keys are stored as key+1 (0 marks an empty slot); a slot whose count returns to 0 stays
 * as a tombstone key. */
static void view_add(view_t *v, int64_t key, int64_t d) {
    if ((v->n + 1) * 2 > v->cap)
        view_grow(v);
    size_t m = v->cap - 1, s = (size_t)((uint64_t)key * 0x9E3779B97F4A7C15ull >> 20) & m;
    while (v->keys[s] != 0 && v->keys[s] != key + 1)
        s = (s + 1) & m;
    if (v->keys[s] == 0) {
        v->keys[s] = key + 1;
        v->n++;
    }
    v->counts[s] += d;
}

static bench_checksum_t view_checksum(const view_t *v, bool *ok_sets) {
    bench_checksum_t c = {0, 0, 0};
    *ok_sets = true;
    for (size_t i = 0; i < v->cap; i++) {
        if (v->counts[i] == 0)
            continue;
        if (v->counts[i] != 1)
            *ok_sets = false; /* a set must have multiplicities 1 */
        bench_checksum_add(&c, v->keys[i] - 1);
    }
    return c;
}

/* ---- via dataflow ---------------------------------------------------------------------- */
typedef struct df {
    dl_graph_t *g;
    dl_input_t *edges, *roots;
    uint64_t time;
    view_t view;
} df_t;

static int df_capture(void *ctx, const dl_diff_t *d) {
    df_t *df = ctx;
    for (size_t i = 0; i < d->n; i++)
        view_add(&df->view, d->rows[i].as.i, d->diffs[i]);
    return 0;
}

static int df_build(df_t *df, dl_error_t *err) {
    df->g = dl_graph_new(1, err);
    if (!df->g)
        return err->code;
    dl_scope_t *root = dl_graph_root(df->g);
    df->edges = dl_input_new(root, 2, err);
    df->roots = dl_input_new(root, 1, err);
    if (!df->edges || !df->roots)
        return err->code;
    static const uint32_t k0[1] = {0}, v1[1] = {1};
    /* edges arranged by source, outside the loop; the loop reads it as entered. */
    dl_arr_t *e_arr = dl_arrange(dl_input_coll(df->edges), k0, 1, v1, 1, err);
    dl_scope_t *s = dl_iterate_begin(root, err);
    if (!e_arr || !s)
        return err->code;
    dl_coll_t *roots = dl_enter(s, dl_input_coll(df->roots), err);
    dl_var_t *v = dl_var_new(s, roots, err);
    if (!v)
        return err->code;
    dl_arr_t *v_arr = dl_arrange(dl_var_coll(v), k0, 1, NULL, 0, err);
    dl_join_col_t jc[1] = {{DL_JOIN_RIGHT, 0}};
    dl_coll_t *step = dl_join(v_arr, e_arr, jc, 1, err);
    if (!step)
        return err->code;
    dl_coll_t *parts[2] = {roots, step};
    dl_coll_t *cat = dl_concat(parts, 2, err);
    dl_coll_t *body = cat ? dl_distinct(cat, err) : NULL;
    if (!body)
        return err->code;
    int rc = dl_var_set(v, body, err);
    if (rc)
        return rc;
    dl_coll_t *out = dl_leave(body, err);
    if (!out || !dl_capture_new(out, df_capture, df, err))
        return err->code;
    df->view.cap = 1024;
    df->view.keys = calloc(df->view.cap, sizeof(int64_t));
    df->view.counts = calloc(df->view.cap, sizeof(int64_t));
    return 0;
}

static int df_load(void *self, const edges_t *initial, dl_error_t *err) {
    df_t *df = self;
    int rc = df_build(df, err);
    if (rc)
        return rc;
    uint64_t t[1] = {0};
    dl_value_t zero = dl_value_int(0);
    rc = dl_input_update(df->roots, &zero, 1, t, 1, err);
    for (size_t i = 0; i < initial->n && !rc; i++) {
        dl_value_t row[2] = {dl_value_int(initial->v[2 * i]), dl_value_int(initial->v[2 * i + 1])};
        rc = dl_input_update(df->edges, row, 2, t, 1, err);
    }
    df->time = 1;
    t[0] = df->time;
    if (!rc)
        rc = dl_input_advance_to(df->edges, t, err);
    if (!rc)
        rc = dl_input_advance_to(df->roots, t, err);
    if (!rc)
        rc = dl_graph_run(df->g, err);
    return rc;
}

static int df_round(void *self, const round_t *r, dl_error_t *err) {
    df_t *df = self;
    uint64_t t[1] = {df->time};
    int rc = 0;
    for (size_t i = 0; i < r->add.n && !rc; i++) {
        dl_value_t row[2] = {dl_value_int(r->add.v[2 * i]), dl_value_int(r->add.v[2 * i + 1])};
        rc = dl_input_update(df->edges, row, 2, t, 1, err);
    }
    for (size_t i = 0; i < r->del.n && !rc; i++) {
        dl_value_t row[2] = {dl_value_int(r->del.v[2 * i]), dl_value_int(r->del.v[2 * i + 1])};
        rc = dl_input_update(df->edges, row, 2, t, -1, err);
    }
    df->time++;
    t[0] = df->time;
    if (!rc)
        rc = dl_input_advance_to(df->edges, t, err);
    if (!rc)
        rc = dl_input_advance_to(df->roots, t, err);
    if (!rc)
        rc = dl_graph_run(df->g, err);
    return rc;
}

static const view_t *df_view(void *self) { return &((df_t *)self)->view; }

static void df_stats(void *self) {
    dl_graph_stats_t st;
    dl_graph_stats(((df_t *)self)->g, &st);
    fprintf(stderr, "bench_w1: %zu arranged updates in %zu batches, %zu pending times\n",
            st.arranged_updates, st.arranged_batches, st.pending_times);
}

static void df_free(void *self) {
    df_t *df = self;
    dl_graph_free(df->g);
    free(df->view.keys);
    free(df->view.counts);
}

/* ---- the driver ------------------------------------------------------------------------ */
typedef struct via {
    const char *name;
    int (*load)(void *self, const edges_t *initial, dl_error_t *err);
    int (*round)(void *self, const round_t *r, dl_error_t *err);
    const view_t *(*view)(void *self);
    void (*stats)(void *self); /* --verbose: internal sizes on stderr */
    void (*free)(void *self);
} via_t;

static const via_t VIAS[] = {{"dataflow", df_load, df_round, df_view, df_stats, df_free}};

typedef struct rounds_ctx {
    const via_t *via;
    void *self;
    dl_error_t *err;
    bench_samples_t lat;
    json_t *exp_rounds; /* expected.rounds: checkpoints */
    long max_rounds;    /* -1: all */
    size_t done;        /* rounds applied */
    size_t checked;     /* checkpoints compared */
    size_t batch;       /* additions in the first round */
    bool ok, failed;
    round_t r; /* reused buffers */
} rounds_ctx_t;

/* One line of w1.rounds.jsonl: apply the round (timed), then compare checkpoints. */
static int on_round(json_t *line, void *ctx) {
    rounds_ctx_t *rc = ctx;
    if (rc->max_rounds >= 0 && rc->done >= (size_t)rc->max_rounds)
        return 1;
    rc->r.add.n = rc->r.del.n = 0;
    read_pairs(json_object_get(line, "add"), &rc->r.add);
    read_pairs(json_object_get(line, "del"), &rc->r.del);
    if (rc->done == 0)
        rc->batch = rc->r.add.n;
    size_t r = rc->done;
    uint64_t a = bench_now_ns();
    if (rc->via->round(rc->self, &rc->r, rc->err)) {
        fprintf(stderr, "bench_w1: round %zu failed: %s\n", r, rc->err->message);
        rc->failed = true;
        return 1;
    }
    bench_samples_add(&rc->lat, bench_now_ns() - a);
    rc->done++;
    size_t k;
    json_t *e;
    json_array_foreach(rc->exp_rounds, k, e) {
        if ((size_t)json_integer_value(json_object_get(e, "after_round")) != r)
            continue;
        bool sets_ok;
        bench_checksum_t c = view_checksum(rc->via->view(rc->self), &sets_ok);
        rc->checked++;
        if (!sets_ok || !bench_checksum_matches(&c, e)) {
            fprintf(stderr, "bench_w1: checksum mismatch after round %zu: got %s\n", r,
                    bench_checksum_str(&c));
            rc->ok = false;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = bench_arg(argc, argv, "data", NULL);
    const char *via_name = bench_arg(argc, argv, "via", "dataflow");
    if (!dir) {
        fprintf(stderr, "usage: bench_w1 --data DIR [--via dataflow] [--rounds R]\n");
        return 2;
    }
    const via_t *via = NULL;
    for (size_t i = 0; i < sizeof VIAS / sizeof VIAS[0]; i++)
        if (!strcmp(VIAS[i].name, via_name))
            via = &VIAS[i];
    if (!via) {
        fprintf(stderr, "bench_w1: --via %s is not available in this build\n", via_name);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/w1.meta.json", dir);
    json_t *meta = bench_load_json(path);
    if (!meta)
        return 1;
    load_t l = {0};
    snprintf(path, sizeof path, "%s/w1.initial.jsonl", dir);
    if (bench_read_jsonl(path, read_initial, &l) < 0)
        return 1;
    long max_rounds = atol(bench_arg(argc, argv, "rounds", "-1"));
    json_t *expected = json_object_get(meta, "expected");

    df_t df_state;
    memset(&df_state, 0, sizeof df_state);
    void *self = &df_state;
    dl_error_t err = {0};
    bool ok = true;
    uint64_t t0 = bench_now_ns();
    if (via->load(self, &l.initial, &err)) {
        fprintf(stderr, "bench_w1: load failed: %s\n", err.message);
        return 1;
    }
    uint64_t t1 = bench_now_ns();
    size_t n_initial = l.initial.n;
    free(l.initial.v); /* the engine holds its own copy */
    l.initial.v = NULL;
    bool sets_ok;
    bench_checksum_t c = view_checksum(via->view(self), &sets_ok);
    if (!sets_ok || !bench_checksum_matches(&c, json_object_get(expected, "initial"))) {
        fprintf(stderr, "bench_w1: initial checksum mismatch: got %s\n", bench_checksum_str(&c));
        ok = false;
    }
    /* Rounds are read one line at a time (parsing is not timed), so the process does not
     * hold the whole workload in memory. */
    rounds_ctx_t rc = {via,        self,      &err, {0}, json_object_get(expected, "rounds"),
                       max_rounds, 0,         0,    0,   ok,
                       false,      {{0}, {0}}};
    snprintf(path, sizeof path, "%s/w1.rounds.jsonl", dir);
    long lines = bench_read_jsonl(path, on_round, &rc);
    if (lines < 0 || rc.failed)
        return 1;
    ok = rc.ok;
    size_t n_rounds = rc.done;
    bench_samples_t lat = rc.lat;
    if (bench_flag(argc, argv, "verbose"))
        via->stats(self);
    if (max_rounds < 0 && rc.checked == 0)
        ok = false; /* the final checkpoint must have been compared */
    dl_alloc_stats_t st;
    dl_alloc_stats(&st);
    json_t *params = json_pack(
        "{s:I,s:I,s:I,s:I}", "nodes",
        json_integer_value(json_object_get(json_object_get(meta, "params"), "nodes")), "edges",
        (json_int_t)n_initial, "rounds", (json_int_t)n_rounds, "batch", (json_int_t)rc.batch);
    bench_emit(json_pack("{s:s,s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:b}", "bench", "w1", "via", via->name,
                         "params", params, "init_ms", (t1 - t0) / 1e6, "p50_us",
                         bench_samples_pct_us(&lat, 0.5), "p99_us",
                         bench_samples_pct_us(&lat, 0.99), "peak_rss_mb", bench_peak_rss_mb(),
                         "live_mb", st.live_bytes / 1048576.0, "checksum_ok", ok));
    via->free(self);
    bench_samples_free(&lat);
    free(rc.r.add.v);
    free(rc.r.del.v);
    json_decref(meta);
    return ok ? 0 : 1;
}
