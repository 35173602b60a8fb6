/*
 * harness.c: implementation of bench/harness.h. Benchmarks only: not part of the library.
 */
#include "bench/harness.h"

#include "base/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double bench_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* Linux reports KiB */
}

void bench_samples_add(bench_samples_t *s, uint64_t ns) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
    }
    s->v[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

double bench_samples_pct_us(bench_samples_t *s, double q) {
    if (!s->n)
        return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp_u64);
    size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return (double)s->v[i] / 1000.0;
}

void bench_samples_free(bench_samples_t *s) {
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

void bench_checksum_add(bench_checksum_t *c, int64_t x) {
    c->count++;
    c->sum += (uint64_t)x;
    c->xor_ ^= dl__hash_mix((uint64_t)x);
}

bool bench_checksum_matches(const bench_checksum_t *c, const json_t *e) {
    const json_t *count = json_object_get(e, "count"), *sum = json_object_get(e, "sum"),
                 *x = json_object_get(e, "xor");
    if (!json_is_integer(count) || !json_is_integer(sum) || !json_is_string(x))
        return false;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)c->xor_);
    return (uint64_t)json_integer_value(count) == c->count &&
           (uint64_t)json_integer_value(sum) == c->sum && strcmp(json_string_value(x), hex) == 0;
}

const char *bench_checksum_str(const bench_checksum_t *c) {
    static char s[96];
    snprintf(s, sizeof s, "%llu/%llu/%016llx", (unsigned long long)c->count,
             (unsigned long long)c->sum, (unsigned long long)c->xor_);
    return s;
}

long bench_read_jsonl(const char *path, int (*fn)(json_t *line, void *ctx), void *ctx) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench: cannot open %s\n", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long count = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)n, 0, &jerr);
        if (!j) {
            fprintf(stderr, "bench: %s:%ld: %s\n", path, count + 1, jerr.text);
            count = -1;
            break;
        }
        int stop = fn(j, ctx);
        json_decref(j);
        count++;
        if (stop)
            break;
    }
    free(line);
    fclose(f);
    return count;
}

json_t *bench_load_json(const char *path) {
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j)
        fprintf(stderr, "bench: %s: %s\n", path, jerr.text);
    return j;
}

void bench_emit(json_t *result) {
    char *s = json_dumps(result, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        fflush(stdout);
        free(s);
    }
    json_decref(result);
}

const char *bench_arg(int argc, char **argv, const char *name, const char *dflt) {
    for (int i = 1; i + 1 < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, name) == 0)
            return argv[i + 1];
    return dflt;
}

bool bench_flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i] + 2, name) == 0)
            return true;
    return false;
}
