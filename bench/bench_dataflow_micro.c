/*
 * bench_dataflow_micro.c: the dataflow engine's hot paths in updates per second:
 * consolidation (sort + sum + drop zeros of a buffer of updates), a map -> filter chain,
 * a join against an arranged side, and a count reduce. Each measurement is one JSON line
 * (bench/harness.h); the medians of --reps repetitions are reported.
 * Usage: bench_dataflow_micro [--n N] [--reps R] [--only NAME]
 */
#include "bench/harness.h"

#include "dataflow/dataflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 42;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

static void emit(const char *name, long n, double per_s) {
    bench_emit(json_pack("{s:s,s:{s:I},s:f,s:f}", "bench", name, "params", "n", (json_int_t)n,
                         "throughput_per_s", per_s, "peak_rss_mb", bench_peak_rss_mb()));
}

static double bench_consolidate(long n) {
    dl_ubuf_t b;
    dl__batch_ubuf_init(&b, 2, 1);
    for (long i = 0; i < n; i++) {
        dl_value_t row[2] = {dl_value_int((int64_t)(rnd() % (uint64_t)(n / 4 + 1))),
                             dl_value_int((int64_t)(rnd() % 4))};
        uint64_t t[1] = {rnd() % 4};
        if (!dl__batch_ubuf_push(&b, row, t, (rnd() & 1) ? 1 : -1))
            abort();
    }
    uint64_t a = bench_now_ns();
    if (!dl__batch_consolidate(&b))
        abort();
    double s = (bench_now_ns() - a) / 1e9;
    dl__batch_ubuf_fini(&b);
    return n / s;
}

static int swap_fn(void *ctx, const dl_value_t *row, dl_emitter_t *out) {
    (void)ctx;
    dl_value_t r[2] = {row[1], row[0]};
    return dl_emit(out, r);
}
static bool even_fn(void *ctx, const dl_value_t *row) {
    (void)ctx;
    return (row[0].as.i & 1) == 0;
}

/* Runs graph g after staging n updates into `in` with the given row generator. */
static double timed_run(dl_graph_t *g, dl_input_t *in, long n, uint64_t t, int64_t keys) {
    dl_error_t err = {0};
    uint64_t tt[1] = {t};
    for (long i = 0; i < n; i++) {
        dl_value_t row[2] = {dl_value_int((int64_t)(rnd() % (uint64_t)keys)),
                             dl_value_int((int64_t)i)};
        if (dl_input_update(in, row, 2, tt, 1, &err))
            abort();
    }
    tt[0] = t + 1;
    if (dl_input_advance_to(in, tt, &err))
        abort();
    uint64_t a = bench_now_ns();
    if (dl_graph_run(g, &err)) {
        fprintf(stderr, "run: %s\n", err.message);
        abort();
    }
    return (bench_now_ns() - a) / 1e9;
}

static double bench_map_filter(long n) {
    dl_graph_t *g = dl_graph_new(1, NULL);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, NULL);
    dl_coll_t *m = dl_map(dl_input_coll(in), 2, swap_fn, NULL, NULL);
    dl_coll_t *f = dl_filter(m, even_fn, NULL, NULL);
    (void)f; /* no consumer: the filter's output is dropped, measuring the two operators */
    double s = timed_run(g, in, n, 0, 1 << 30);
    dl_graph_free(g);
    return n / s;
}

static double bench_join(long n) {
    dl_graph_t *g = dl_graph_new(1, NULL);
    dl_input_t *l = dl_input_new(dl_graph_root(g), 2, NULL);
    dl_input_t *r = dl_input_new(dl_graph_root(g), 2, NULL);
    static const uint32_t k0[1] = {0}, v1[1] = {1};
    dl_arr_t *la = dl_arrange(dl_input_coll(l), k0, 1, v1, 1, NULL);
    dl_arr_t *ra = dl_arrange(dl_input_coll(r), k0, 1, v1, 1, NULL);
    dl_join_col_t jc[2] = {{DL_JOIN_LEFT, 0}, {DL_JOIN_RIGHT, 0}};
    dl_coll_t *j = dl_join(la, ra, jc, 2, NULL);
    if (!j)
        abort();
    /* The right side: one row per key, loaded first (not timed). */
    dl_error_t err = {0};
    uint64_t t0[1] = {0};
    for (long i = 0; i < n; i++) {
        dl_value_t row[2] = {dl_value_int(i), dl_value_int(i)};
        if (dl_input_update(r, row, 2, t0, 1, &err))
            abort();
    }
    uint64_t t1[1] = {1};
    if (dl_input_advance_to(r, t1, &err) || dl_input_advance_to(l, t1, &err) ||
        dl_graph_run(g, &err))
        abort();
    /* The left side's n updates, each matching one right row. */
    double s = timed_run(g, l, n, 1, n);
    dl_graph_free(g);
    return n / s;
}

static double bench_count(long n) {
    dl_graph_t *g = dl_graph_new(1, NULL);
    dl_input_t *in = dl_input_new(dl_graph_root(g), 2, NULL);
    static const uint32_t k0[1] = {0};
    dl_coll_t *c = dl_count(dl_input_coll(in), k0, 1, NULL);
    if (!c)
        abort();
    double s = timed_run(g, in, n, 0, n / 10 + 1);
    dl_graph_free(g);
    return n / s;
}

int main(int argc, char **argv) {
    long n = atol(bench_arg(argc, argv, "n", "1000000"));
    int reps = atoi(bench_arg(argc, argv, "reps", "5"));
    if (reps < 1 || reps > 64)
        reps = 5;
    struct {
        const char *name;
        double (*fn)(long);
    } cases[] = {{"df_consolidate", bench_consolidate},
                 {"df_map_filter", bench_map_filter},
                 {"df_join", bench_join},
                 {"df_count", bench_count}};
    const char *only = bench_arg(argc, argv, "only", NULL);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (only && strcmp(only, cases[c].name) != 0)
            continue;
        double v[64];
        for (int r = 0; r < reps; r++)
            v[r] = cases[c].fn(n);
        emit(cases[c].name, n, median(v, reps));
    }
    return 0;
}
