/*
 * dl_test.c: main() of every module's test executable (see dl_test.h) and the
 * property-test seed helpers.
 */
#include "tests/harness/dl_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static unsigned long long last_seed;

uint64_t dl_prop_seed(const char *name) {
    const char *env = getenv("DL_SEED");
    uint64_t seed;
    if (env && *env) {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    }
    last_seed = seed;
    fprintf(stderr, "[ seed     ] %s: DL_SEED=%llu\n", name, (unsigned long long)seed);
    return seed;
}

unsigned long long dl_prop_last_seed(void) { return last_seed; }

long dl_prop_iters(long dflt) {
    const char *env = getenv("DL_PROP_SCALE");
    double scale = env && *env ? atof(env) : 1.0;
    long n = (long)(dflt * scale);
    return n < 1 ? 1 : n;
}

static const char *case_name(const struct CMUnitTest *t) {
    return strncmp(t->name, "test_", 5) == 0 ? t->name + 5 : t->name;
}

int dl_test_main(const char *module, const dl_test_group_t *const *groups, int argc, char **argv) {
    if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
        fprintf(stderr, "usage: %s [case]   (runs every case of module %s, or one)\n", argv[0],
                module);
        return 2;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t g = 0; groups[g]; g++)
            for (size_t i = 0; i < groups[g]->n; i++)
                printf("%s.%s\n", module, case_name(&groups[g]->tests[i]));
        return 0;
    }
    int failed = 0;
    for (size_t g = 0; groups[g]; g++) {
        const dl_test_group_t *grp = groups[g];
        if (argc == 2) {
            for (size_t i = 0; i < grp->n; i++) {
                if (strcmp(case_name(&grp->tests[i]), argv[1]) == 0) {
                    char name[256];
                    snprintf(name, sizeof name, "%s.%s", module, grp->name);
                    return _cmocka_run_group_tests(name, &grp->tests[i], 1, NULL, NULL);
                }
            }
            continue;
        }
        char name[256];
        snprintf(name, sizeof name, "%s.%s", module, grp->name);
        failed += _cmocka_run_group_tests(name, grp->tests, grp->n, NULL, NULL);
    }
    if (argc == 2) {
        fprintf(stderr, "%s: no test case named '%s' in module %s\n", argv[0], argv[1], module);
        return 1;
    }
    return failed ? 1 : 0;
}
