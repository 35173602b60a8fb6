/*
 * test_groups.c: the per-key accumulator table of a linear reduce under totally ordered
 * time (dataflow/groups.c). A property test against a naive list: random gets (adding
 * groups), writes to their slots and drops, over key domains small enough that probe runs
 * collide and wrap, with keys of one and two columns and mixed value types; after every
 * operation each live key maps to its stable id and keeps its slots, and the table holds
 * exactly the live keys. Does not test the reduce itself (test_reduce_linear.c does).
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "dataflow/dataflow.h"

#include <stdlib.h>

#define MAXK 512

typedef struct naive {
    dl_value_t key[MAXK][2];
    size_t id[MAXK];
    uint64_t slot0[MAXK];
    size_t n;
} naive_t;

static size_t naive_find(const naive_t *m, const dl_value_t *k, size_t ka) {
    for (size_t i = 0; i < m->n; i++)
        if (dl_row_eq(m->key[i], k, ka))
            return i;
    return SIZE_MAX;
}

static dl_value_t rand_value(dl_rng_t *r, uint64_t dom) {
    uint64_t x = dl_rng_below(r, dom);
    return dl_rng_below(r, 4) ? dl_value_int((int64_t)x) : dl_value_ref((int64_t)x);
}

static void test_groups_oracle(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("groups.oracle");
    dl_rng_t r = {seed};
    long iters = dl_prop_iters(40);
    static naive_t m;
    for (long it = 0; it < iters; it++) {
        size_t ka = 1 + dl_rng_below(&r, 2), ns = 1 + dl_rng_below(&r, 5);
        uint64_t dom = 4 + dl_rng_below(&r, 300);
        dl_groups_t g;
        dl__groups_init(&g, ka, ns);
        m.n = 0;
        int ops = 200 + (int)dl_rng_below(&r, 3000);
        for (int op = 0; op < ops; op++) {
            dl_value_t k[2] = {rand_value(&r, dom), rand_value(&r, 3)};
            size_t at = naive_find(&m, k, ka);
            if (at != SIZE_MAX && dl_rng_below(&r, 3) == 0) { /* drop */
                dl__groups_drop(&g, m.id[at]);
                m.n--;
                memmove(m.key[at], m.key[m.n], sizeof m.key[at]);
                m.id[at] = m.id[m.n];
                m.slot0[at] = m.slot0[m.n];
            } else if (at != SIZE_MAX || m.n < MAXK) {
                size_t id = dl__groups_get(&g, k);
                assert_true(id != SIZE_MAX);
                if (at == SIZE_MAX) {
                    for (size_t j = 0; j < ns; j++)
                        assert_true(g.acc[id * ns + j] == 0); /* a new group starts at zero */
                    at = m.n++;
                    memcpy(m.key[at], k, sizeof m.key[at]);
                    m.id[at] = id;
                    m.slot0[at] = 0;
                } else if (id != m.id[at]) {
                    dl_prop_fail("iteration %ld op %d: key moved from id %zu to %zu", it, op,
                                 m.id[at], id);
                }
                m.slot0[at] += (uint64_t)op + 1;
                g.acc[id * ns + ns - 1] = m.slot0[at];
            }
            if (g.live != m.n)
                dl_prop_fail("iteration %ld op %d: %zu groups live, %zu expected", it, op, g.live,
                             m.n);
            if (op % 64 == 0 || op == ops - 1)
                for (size_t i = 0; i < m.n; i++) {
                    size_t id = dl__groups_get(&g, m.key[i]);
                    if (id != m.id[i] || g.acc[id * ns + ns - 1] != m.slot0[i])
                        dl_prop_fail("iteration %ld op %d: key %zu lost (id %zu, want %zu)", it, op,
                                     i, id, m.id[i]);
                }
        }
        dl__groups_fini(&g);
    }
}

DL_TEST_GROUP(groups, cmocka_unit_test(test_groups_oracle));
