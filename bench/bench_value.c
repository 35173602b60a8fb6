/*
 * bench_value.c: the value type's hot paths: row comparison, row hashing and interning.
 * Prints one JSON line per measurement. Usage: bench_value [--n N]
 */
#include "bench/harness.h"

#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>

static int cmp_rows(const void *a, const void *b) {
    return dl_row_cmp((const dl_value_t *)a, (const dl_value_t *)b, 3);
}

int main(int argc, char **argv) {
    long n = atol(bench_arg(argc, argv, "n", "1000000"));
    dl_value_t *rows = malloc((size_t)n * 3 * sizeof *rows);
    uint64_t x = 42;
    for (long i = 0; i < n * 3; i++) {
        x = dl__hash_mix(x);
        rows[i] = dl_value_int((int64_t)(x % 100000));
    }
    uint64_t t0 = bench_now_ns();
    qsort(rows, (size_t)n, 3 * sizeof *rows, cmp_rows);
    uint64_t t1 = bench_now_ns();
    uint64_t h = 0;
    for (long i = 0; i < n; i++)
        h ^= dl_row_hash(rows + 3 * i, 3);
    uint64_t t2 = bench_now_ns();
    long n_intern = n / 4;
    for (long i = 0; i < n_intern; i++) {
        char s[32];
        int len = snprintf(s, sizeof s, "sym-%ld", i % 50000);
        dl_value_t v;
        if (dl_value_text(DL_T_STRING, s, (size_t)len, &v, NULL) != 0)
            return 1;
    }
    uint64_t t3 = bench_now_ns();
    json_t *p = json_pack("{s:I}", "n", (json_int_t)n);
    bench_emit(json_pack("{s:s,s:o,s:f,s:f}", "bench", "row_sort", "params", json_deep_copy(p),
                         "throughput_per_s", n / ((t1 - t0) / 1e9), "peak_rss_mb",
                         bench_peak_rss_mb()));
    char cs[20];
    snprintf(cs, sizeof cs, "%016llx", (unsigned long long)h);
    bench_emit(json_pack("{s:s,s:o,s:f,s:s}", "bench", "row_hash", "params", json_deep_copy(p),
                         "throughput_per_s", n / ((t2 - t1) / 1e9), "checksum", cs));
    bench_emit(json_pack("{s:s,s:o,s:f}", "bench", "intern", "params", p, "throughput_per_s",
                         n_intern / ((t3 - t2) / 1e9)));
    free(rows);
    return 0;
}
