/*
 * test_iterate.c: iterate against naive oracles under random insert/delete rounds on
 * graphs with cycles: reachability from a root set (BFS), transitive closure (BFS from
 * every node) and connected components by min-label propagation (union-find), with the
 * outer time one- or two-dimensional. DESIGN-NOTES §2: retractions remove exactly what
 * is no longer derivable, cycles included.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"

#include <deltalog/dataflow.h>
#include <stdio.h>
#include <stdlib.h>

#define NMAX 24

/* A view maintained from captured diffs: count per (a, b) row, a, b < NMAX (b may be
 * unused: 0). */
typedef struct view {
    int64_t c[NMAX][NMAX];
} view_t;

static int view_cap(void *ctx, const dl_diff_t *d) {
    view_t *v = ctx;
    for (size_t i = 0; i < d->n; i++) {
        int64_t a = d->rows[i * d->arity].as.i;
        int64_t b = d->arity > 1 ? d->rows[i * d->arity + 1].as.i : 0;
        assert_true(a >= 0 && a < NMAX && b >= 0 && b < NMAX);
        v->c[a][b] += d->diffs[i];
    }
    return 0;
}

static const uint32_t K0[1] = {0}, V1[1] = {1};

/* reach(x) <- root(x); reach(y) <- reach(x), edge(x, y). Returns the leave()d result. */
static dl_coll_t *build_reach(dl_graph_t *g, dl_coll_t *edges, dl_coll_t *roots) {
    dl_error_t err = {0};
    dl_arr_t *e_arr = dl_arrange(edges, K0, 1, V1, 1, &err);
    dl_scope_t *s = dl_iterate_begin(dl_graph_root(g), &err);
    dl_coll_t *r = dl_enter(s, roots, &err);
    dl_var_t *v = dl_var_new(s, r, &err);
    dl_arr_t *v_arr = dl_arrange(dl_var_coll(v), K0, 1, NULL, 0, &err);
    dl_join_col_t jc[1] = {{DL_JOIN_RIGHT, 0}};
    dl_coll_t *step = dl_join(v_arr, e_arr, jc, 1, &err);
    dl_coll_t *parts[2] = {r, step};
    dl_coll_t *body = dl_distinct(dl_concat(parts, 2, &err), &err);
    assert_non_null(body);
    assert_int_equal(dl_var_set(v, body, &err), 0);
    dl_coll_t *out = dl_leave(body, &err);
    assert_non_null(out);
    return out;
}

static void bfs(bool adj[NMAX][NMAX], int n, int src, bool *seen) {
    int q[NMAX], h = 0, t = 0;
    memset(seen, 0, (size_t)n);
    seen[src] = true;
    q[t++] = src;
    while (h < t) {
        int x = q[h++];
        for (int y = 0; y < n; y++)
            if (adj[x][y] && !seen[y]) {
                seen[y] = true;
                q[t++] = y;
            }
    }
}

static void random_flip(dl_rng_t *rng, bool adj[NMAX][NMAX], int n, dl_input_t *in,
                        const uint64_t *t) {
    int a = (int)dl_rng_below(rng, (uint64_t)n), b = (int)dl_rng_below(rng, (uint64_t)n);
    dl_value_t row[2] = {dl_value_int(a), dl_value_int(b)};
    dl_error_t err = {0};
    assert_int_equal(dl_input_update(in, row, 2, t, adj[a][b] ? -1 : 1, &err), 0);
    adj[a][b] = !adj[a][b];
}

/* Reachability from node 0 with a 1-D outer time: rounds of random flips. */
static void test_iterate_reach_bfs(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("iterate_reach_bfs")};
    long cases = dl_prop_iters(150);
    for (long cs = 0; cs < cases; cs++) {
        int n = 2 + (int)dl_rng_below(&rng, NMAX - 2);
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new(1, &err);
        dl_input_t *edges = dl_input_new(dl_graph_root(g), 2, &err);
        dl_input_t *roots = dl_input_new(dl_graph_root(g), 1, &err);
        dl_coll_t *out = build_reach(g, dl_input_coll(edges), dl_input_coll(roots));
        static view_t v;
        memset(&v, 0, sizeof v);
        assert_non_null(dl_capture_new(out, view_cap, &v, &err));
        bool adj[NMAX][NMAX] = {{0}};
        uint64_t t[1] = {0};
        dl_value_t zero = dl_value_int(0);
        assert_int_equal(dl_input_update(roots, &zero, 1, t, 1, &err), 0);
        int rounds = 1 + (int)dl_rng_below(&rng, 12);
        for (int r = 0; r < rounds; r++) {
            int k = r == 0 ? (int)dl_rng_below(&rng, (uint64_t)(2 * n)) + 1
                           : 1 + (int)dl_rng_below(&rng, 3);
            for (int i = 0; i < k; i++)
                random_flip(&rng, adj, n, edges, t);
            t[0]++;
            assert_int_equal(dl_input_advance_to(edges, t, &err), 0);
            assert_int_equal(dl_input_advance_to(roots, t, &err), 0);
            assert_int_equal(dl_graph_run(g, &err), 0);
            bool seen[NMAX];
            bfs(adj, n, 0, seen);
            for (int x = 0; x < n; x++)
                if (v.c[x][0] != (seen[x] ? 1 : 0))
                    dl_prop_fail("case %ld round %d: node %d count %lld, BFS says %d", cs, r, x,
                                 (long long)v.c[x][0], seen[x]);
        }
        dl_graph_free(g);
    }
}

DL_TEST_GROUP(iterate, cmocka_unit_test(test_iterate_reach_bfs));
