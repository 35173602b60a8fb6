/*
 * harness.h: what every benchmark program shares: a monotonic clock, latency samples
 * with percentiles, peak RSS, the shared workload's set checksum, JSON-lines input
 * (../shared/bench/ output) and the one-JSON-object-per-result output line.
 * Output format (issue "Foundation"): {"bench":..,"params":{..},"init_ms":..,
 * "p50_us":..,"p99_us":..,"throughput_per_s":..,"peak_rss_mb":..,"checksum":..}.
 */
#ifndef DL_BENCH_HARNESS_H
#define DL_BENCH_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic nanoseconds. */
uint64_t bench_now_ns(void);
/* Peak resident set size of this process in MiB. */
double bench_peak_rss_mb(void);

/* A growable array of latency samples in nanoseconds. */
typedef struct bench_samples {
    uint64_t *v;
    size_t n, cap;
} bench_samples_t;
void bench_samples_add(bench_samples_t *s, uint64_t ns);
/* q in [0,1]; sorts in place; microseconds. 0 when empty. */
double bench_samples_pct_us(bench_samples_t *s, double q);
void bench_samples_free(bench_samples_t *s);

/* The shared set checksum (../shared/bench/README.md). */
typedef struct bench_checksum {
    uint64_t count, sum, xor_;
} bench_checksum_t;
void bench_checksum_add(bench_checksum_t *c, int64_t x);
/* True when c equals the JSON object {"count":..,"sum":..,"xor":"hex"}. */
bool bench_checksum_matches(const bench_checksum_t *c, const json_t *expected);
/* "count/sum/xor" text, static buffer. */
const char *bench_checksum_str(const bench_checksum_t *c);

/* Calls fn(line_json, ctx) for every line of a JSON-lines file; returns lines read or
 * -1 with a message on stderr. A nonzero return from fn stops the read. */
long bench_read_jsonl(const char *path, int (*fn)(json_t *line, void *ctx), void *ctx);
/* Loads a whole JSON file (e.g. W.meta.json); NULL with a message on stderr. */
json_t *bench_load_json(const char *path);

/* Prints one result line to stdout and flushes. Takes ownership of `result`. */
void bench_emit(json_t *result);

/* The directory of generated data: `--data DIR` from argv, or NULL. Generic flag
 * lookup: returns the value after `--name`, or dflt. */
const char *bench_arg(int argc, char **argv, const char *name, const char *dflt);
bool bench_flag(int argc, char **argv, const char *name);

#endif
