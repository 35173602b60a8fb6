/*
 * dl_test.h: the test harness every module's test executable uses (cmocka underneath).
 *
 * A test file defines static cases `static void test_<case>(void **state)` and ends with
 *     DL_TEST_GROUP(<topic>, cmocka_unit_test(test_a), cmocka_unit_test(test_b));
 * dl_test_module() in cmake/Deltalog.cmake scans the sources, generates main(), and
 * registers each case as the ctest entry <module>.<case>, run as `test_<module> <case>`.
 * Keep each cmocka_unit_test(...) on the group line or its own line: the scan is textual.
 *
 * Property tests: dl_prop_seed("name") returns the seed for this run (DL_SEED in the
 * environment reproduces one; otherwise it is taken from the clock) and prints it;
 * DL_PROP_ITERS scales iteration counts (dl_prop_iters(default)). On failure, the
 * printed seed is what reproduces the run: DL_SEED=<seed> ./test_<module> <case>.
 */
#ifndef DL_TEST_H
#define DL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the headers above first. */
#include <cmocka.h>

typedef struct dl_test_group {
    const char *name;
    const struct CMUnitTest *tests;
    size_t n;
} dl_test_group_t;

#define DL_TEST_GROUP(topic, ...)                                                                  \
    static const struct CMUnitTest dl_test_cases_##topic[] = {__VA_ARGS__};                        \
    const dl_test_group_t dl_test_group_##topic = {#topic, dl_test_cases_##topic,                  \
                                                   sizeof(dl_test_cases_##topic) /                 \
                                                       sizeof(dl_test_cases_##topic[0])}

int dl_test_main(const char *module, const dl_test_group_t *const *groups, int argc, char **argv);

/* ---- property-test helpers ------------------------------------------------------------- */
typedef struct dl_rng {
    uint64_t s;
} dl_rng_t;

/* splitmix64: the same generator as ../shared/bench/gen.py. */
static inline uint64_t dl_rng_next(dl_rng_t *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [0, n); n > 0. */
static inline uint64_t dl_rng_below(dl_rng_t *r, uint64_t n) { return dl_rng_next(r) % n; }

/* The seed for a property test named `name`, printed to stderr. */
uint64_t dl_prop_seed(const char *name);
/* Iteration count: `dflt` scaled by DL_PROP_SCALE (a float, default 1). */
long dl_prop_iters(long dflt);
/* The last seed handed out, for messages: fail_msg("... seed %llu", dl_prop_last_seed()). */
unsigned long long dl_prop_last_seed(void);

/* Fails the current test with a message that includes the property seed. */
#define dl_prop_fail(...)                                                                          \
    do {                                                                                           \
        print_error("property failed (reproduce with DL_SEED=%llu): ", dl_prop_last_seed());       \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)

#endif
