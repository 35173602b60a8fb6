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

/* dl_graph_run, or (odd cases) the same through dl_graph_step slices. */
static void run_or_step(dl_graph_t *g, long cs) {
    dl_error_t err = {0};
    if (cs % 2 == 0) {
        assert_int_equal(dl_graph_run(g, &err), 0);
        return;
    }
    bool done = false;
    int steps = 0;
    while (!done) {
        assert_int_equal(dl_graph_step(g, &done, &err), 0);
        assert_true(++steps < 10000);
    }
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
            run_or_step(g, cs);
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

/* Reachability with a 2-D outer time: edges change at times (r, s) arriving out of order;
 * at every complete grid time the result equals BFS over the edges accumulated there. */
static void test_iterate_reach_2d(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("iterate_reach_2d")};
    long cases = dl_prop_iters(60);
    for (long cs = 0; cs < cases; cs++) {
        int n = 2 + (int)dl_rng_below(&rng, 10);
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new(2, &err);
        dl_input_t *edges = dl_input_new(dl_graph_root(g), 2, &err);
        dl_input_t *roots = dl_input_new(dl_graph_root(g), 1, &err);
        dl_coll_t *out = build_reach(g, dl_input_coll(edges), dl_input_coll(roots));
        typedef struct {
            int a, b;
            uint64_t t[2];
            int64_t d;
        } eu_t;
        eu_t ups[64];
        int nu = 0;
        /* Captured diffs with times, to accumulate at any grid time. */
        static struct {
            int n;
            uint64_t t[4096][2];
            int64_t x[4096], d[4096];
        } lg;
        lg.n = 0;
        dl_capture_t *cap = dl_capture_new(out, NULL, NULL, &err);
        assert_non_null(cap);
        uint64_t t0[2] = {0, 0};
        dl_value_t zero = dl_value_int(0);
        assert_int_equal(dl_input_update(roots, &zero, 1, t0, 1, &err), 0);
        assert_int_equal(dl_input_close(roots, &err), 0);
        dl_antichain_t f;
        dl_antichain_init(&f, 2);
        assert_int_equal(dl_antichain_insert(&f, t0), 1);
        int rounds = 1 + (int)dl_rng_below(&rng, 5);
        for (int r = 0; r <= rounds; r++) {
            if (r < rounds) {
                int k = 1 + (int)dl_rng_below(&rng, (uint64_t)(2 * n));
                for (int i = 0; i < k && nu < 64; i++) {
                    eu_t *u = &ups[nu];
                    const uint64_t *base = f.elems + dl_rng_below(&rng, f.n) * 2;
                    u->a = (int)dl_rng_below(&rng, (uint64_t)n);
                    u->b = (int)dl_rng_below(&rng, (uint64_t)n);
                    u->t[0] = base[0] + dl_rng_below(&rng, 2);
                    u->t[1] = base[1] + dl_rng_below(&rng, 2);
                    /* Keep every accumulated count in {0, 1}: retract only edges present
                     * at every time >= u->t, i.e. added at a time <= u->t and not yet
                     * retracted. Simplest: random insert, or retract an earlier insert. */
                    u->d = 1;
                    for (int j = 0; j < nu; j++)
                        if (ups[j].a == u->a && ups[j].b == u->b) {
                            u->d = 0; /* an edge is inserted at most once, retracted once */
                            break;
                        }
                    if (u->d == 0) {
                        /* Retract the earlier insertion at a time >= it, if not yet. */
                        int ins = -1, del = -1;
                        for (int j = 0; j < nu; j++)
                            if (ups[j].a == u->a && ups[j].b == u->b)
                                *(ups[j].d > 0 ? &ins : &del) = j;
                        if (del >= 0 || ins < 0)
                            continue;
                        u->t[0] = DL_MAX(u->t[0], ups[ins].t[0]);
                        u->t[1] = DL_MAX(u->t[1], ups[ins].t[1]);
                        u->d = -1;
                    }
                    dl_value_t row[2] = {dl_value_int(u->a), dl_value_int(u->b)};
                    assert_int_equal(dl_input_update(edges, row, 2, u->t, u->d, &err), 0);
                    nu++;
                }
                dl_antichain_t nf;
                dl_antichain_init(&nf, 2);
                for (int e = 0; e < 2; e++) {
                    uint64_t t[2];
                    memcpy(t, f.elems + dl_rng_below(&rng, f.n) * 2, sizeof t);
                    t[dl_rng_below(&rng, 2)] += 1;
                    assert_true(dl_antichain_insert(&nf, t) >= 0);
                }
                assert_int_equal(dl_input_advance(edges, &nf, &err), 0);
                assert_int_equal(dl_antichain_copy(&f, &nf), 0);
                dl_antichain_fini(&nf);
            } else {
                assert_int_equal(dl_input_close(edges, &err), 0);
                dl_antichain_clear(&f);
            }
            assert_int_equal(dl_graph_run(g, &err), 0);
            dl_diff_t d;
            while (dl_capture_pop(cap, &d) == 1)
                for (size_t i = 0; i < d.n; i++) {
                    assert_true(lg.n < 4096);
                    memcpy(lg.t[lg.n], d.time, sizeof lg.t[0]);
                    lg.x[lg.n] = d.rows[i].as.i;
                    lg.d[lg.n] = d.diffs[i];
                    lg.n++;
                }
            for (uint64_t a = 0; a < 5; a++)
                for (uint64_t b = 0; b < 5; b++) {
                    uint64_t t[2] = {a, b};
                    if (dl_antichain_less_equal(&f, t))
                        continue;
                    bool adj[NMAX][NMAX] = {{0}};
                    for (int j = 0; j < nu; j++)
                        if (ups[j].t[0] <= a && ups[j].t[1] <= b)
                            adj[ups[j].a][ups[j].b] = ups[j].d > 0;
                    /* Recompute presence as the sum of diffs (0 or 1). */
                    for (int x = 0; x < n; x++)
                        for (int y = 0; y < n; y++) {
                            int64_t c = 0;
                            for (int j = 0; j < nu; j++)
                                if (ups[j].a == x && ups[j].b == y && ups[j].t[0] <= a &&
                                    ups[j].t[1] <= b)
                                    c += ups[j].d;
                            adj[x][y] = c > 0;
                        }
                    bool seen[NMAX];
                    bfs(adj, n, 0, seen);
                    int64_t got[NMAX] = {0};
                    for (int j = 0; j < lg.n; j++)
                        if (lg.t[j][0] <= a && lg.t[j][1] <= b)
                            got[lg.x[j]] += lg.d[j];
                    for (int x = 0; x < n; x++)
                        if (got[x] != (seen[x] ? 1 : 0))
                            dl_prop_fail("case %ld at (%llu,%llu): node %d count %lld, BFS %d", cs,
                                         (unsigned long long)a, (unsigned long long)b, x,
                                         (long long)got[x], seen[x]);
                }
        }
        dl_antichain_fini(&f);
        dl_graph_free(g);
    }
}

/* Transitive closure: tc(x,z) <- edge(x,z); tc(x,z) <- tc(x,y), edge(y,z). */
static void test_iterate_transitive_closure(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("iterate_transitive_closure")};
    long cases = dl_prop_iters(80);
    for (long cs = 0; cs < cases; cs++) {
        int n = 2 + (int)dl_rng_below(&rng, 12);
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new(1, &err);
        dl_input_t *edges = dl_input_new(dl_graph_root(g), 2, &err);
        dl_coll_t *ec = dl_input_coll(edges);
        dl_arr_t *e_arr = dl_arrange(ec, K0, 1, V1, 1, &err);
        dl_scope_t *s = dl_iterate_begin(dl_graph_root(g), &err);
        dl_coll_t *ee = dl_enter(s, ec, &err);
        dl_var_t *v = dl_var_new(s, ee, &err);
        static const uint32_t K1[1] = {1}, V0[1] = {0};
        dl_arr_t *v_by_dst = dl_arrange(dl_var_coll(v), K1, 1, V0, 1, &err);
        dl_join_col_t jc[2] = {{DL_JOIN_LEFT, 0}, {DL_JOIN_RIGHT, 0}};
        dl_coll_t *step = dl_join(v_by_dst, e_arr, jc, 2, &err);
        dl_coll_t *parts[2] = {ee, step};
        dl_coll_t *body = dl_distinct(dl_concat(parts, 2, &err), &err);
        assert_non_null(body);
        assert_int_equal(dl_var_set(v, body, &err), 0);
        static view_t view;
        memset(&view, 0, sizeof view);
        assert_non_null(dl_capture_new(dl_leave(body, &err), view_cap, &view, &err));
        bool adj[NMAX][NMAX] = {{0}};
        uint64_t t[1] = {0};
        int rounds = 1 + (int)dl_rng_below(&rng, 8);
        for (int r = 0; r < rounds; r++) {
            int k = r == 0 ? 1 + (int)dl_rng_below(&rng, (uint64_t)(2 * n))
                           : 1 + (int)dl_rng_below(&rng, 3);
            for (int i = 0; i < k; i++)
                random_flip(&rng, adj, n, edges, t);
            t[0]++;
            assert_int_equal(dl_input_advance_to(edges, t, &err), 0);
            assert_int_equal(dl_graph_run(g, &err), 0);
            for (int x = 0; x < n; x++) {
                /* Nodes reachable from x by a path of length >= 1. */
                bool seen[NMAX] = {0};
                for (int y = 0; y < n; y++)
                    if (adj[x][y]) {
                        bool s2[NMAX];
                        bfs(adj, n, y, s2);
                        for (int z = 0; z < n; z++)
                            seen[z] |= s2[z];
                    }
                for (int z = 0; z < n; z++)
                    if (view.c[x][z] != (seen[z] ? 1 : 0))
                        dl_prop_fail("case %ld round %d: tc(%d,%d) count %lld, BFS %d", cs, r, x, z,
                                     (long long)view.c[x][z], seen[z]);
            }
        }
        dl_graph_free(g);
    }
}

/* Connected components by min-label propagation over symmetric edges:
 * label(x, x) for every node; label(y, l) <- label(x, l), edge(x, y); min by node. */
static void test_iterate_connected_components(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("iterate_connected_components")};
    long cases = dl_prop_iters(80);
    for (long cs = 0; cs < cases; cs++) {
        int n = 2 + (int)dl_rng_below(&rng, NMAX - 2);
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new(1, &err);
        dl_input_t *edges = dl_input_new(dl_graph_root(g), 2, &err);
        dl_input_t *nodes = dl_input_new(dl_graph_root(g), 2, &err);
        dl_coll_t *ec = dl_input_coll(edges);
        static const uint32_t SW[2] = {1, 0};
        dl_coll_t *both[2] = {ec, dl_project(ec, SW, 2, &err)};
        dl_coll_t *sym = dl_concat(both, 2, &err);
        dl_arr_t *e_arr = dl_arrange(sym, K0, 1, V1, 1, &err);
        dl_scope_t *s = dl_iterate_begin(dl_graph_root(g), &err);
        dl_coll_t *init = dl_enter(s, dl_input_coll(nodes), &err);
        dl_var_t *v = dl_var_new(s, init, &err);
        dl_arr_t *l_arr = dl_arrange(dl_var_coll(v), K0, 1, V1, 1, &err);
        dl_join_col_t jc[2] = {{DL_JOIN_RIGHT, 0}, {DL_JOIN_LEFT, 0}};
        dl_coll_t *prop = dl_join(l_arr, e_arr, jc, 2, &err);
        dl_coll_t *parts[2] = {init, prop};
        dl_arr_t *cand = dl_arrange(dl_concat(parts, 2, &err), K0, 1, V1, 1, &err);
        dl_reduce_spec_t spec = {.kind = DL_REDUCE_MIN, .col = 0};
        dl_arr_t *mins = dl_reduce(cand, &spec, &err);
        assert_non_null(mins);
        assert_int_equal(dl_var_set(v, dl_arr_coll(mins), &err), 0);
        static view_t view;
        memset(&view, 0, sizeof view);
        assert_non_null(dl_capture_new(dl_leave(dl_arr_coll(mins), &err), view_cap, &view, &err));
        uint64_t t[1] = {0};
        for (int x = 0; x < n; x++) {
            dl_value_t row[2] = {dl_value_int(x), dl_value_int(x)};
            assert_int_equal(dl_input_update(nodes, row, 2, t, 1, &err), 0);
        }
        bool adj[NMAX][NMAX] = {{0}};
        int rounds = 1 + (int)dl_rng_below(&rng, 8);
        for (int r = 0; r < rounds; r++) {
            int k =
                r == 0 ? (int)dl_rng_below(&rng, (uint64_t)n) + 1 : 1 + (int)dl_rng_below(&rng, 3);
            for (int i = 0; i < k; i++)
                random_flip(&rng, adj, n, edges, t);
            t[0]++;
            assert_int_equal(dl_input_advance_to(edges, t, &err), 0);
            assert_int_equal(dl_input_advance_to(nodes, t, &err), 0);
            assert_int_equal(dl_graph_run(g, &err), 0);
            /* Union-find oracle: label = smallest node of the component. */
            int parent[NMAX];
            for (int x = 0; x < n; x++)
                parent[x] = x;
            for (int x = 0; x < n; x++)
                for (int y = 0; y < n; y++)
                    if (adj[x][y]) {
                        int a = x, b = y;
                        while (parent[a] != a)
                            a = parent[a];
                        while (parent[b] != b)
                            b = parent[b];
                        if (a != b)
                            parent[a > b ? a : b] = a < b ? a : b;
                    }
            for (int x = 0; x < n; x++) {
                int root = x;
                while (parent[root] != root)
                    root = parent[root];
                for (int l = 0; l < n; l++)
                    if (view.c[x][l] != (l == root ? 1 : 0))
                        dl_prop_fail("case %ld round %d: label(%d,%d) count %lld, want %d", cs, r,
                                     x, l, (long long)view.c[x][l], root);
            }
        }
        dl_graph_free(g);
    }
}

/* Nested iterate: reachability as an outer loop whose body runs an inner loop (times gain
 * two loop coordinates), reading the edges arranged two scopes out. */
static void test_iterate_nested_reach(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("iterate_nested_reach")};
    long cases = dl_prop_iters(40);
    for (long cs = 0; cs < cases; cs++) {
        int n = 2 + (int)dl_rng_below(&rng, 14);
        dl_error_t err = {0};
        dl_graph_t *g = dl_graph_new(1, &err);
        dl_input_t *edges = dl_input_new(dl_graph_root(g), 2, &err);
        dl_input_t *roots = dl_input_new(dl_graph_root(g), 1, &err);
        dl_arr_t *e_arr = dl_arrange(dl_input_coll(edges), K0, 1, V1, 1, &err);
        dl_scope_t *s1 = dl_iterate_begin(dl_graph_root(g), &err);
        dl_coll_t *r1 = dl_enter(s1, dl_input_coll(roots), &err);
        dl_var_t *v1 = dl_var_new(s1, r1, &err);
        dl_scope_t *s2 = dl_iterate_begin(s1, &err);
        dl_coll_t *r2 = dl_enter(s2, dl_var_coll(v1), &err);
        dl_var_t *v2 = dl_var_new(s2, r2, &err);
        dl_arr_t *v2_arr = dl_arrange(dl_var_coll(v2), K0, 1, NULL, 0, &err);
        dl_join_col_t jc[1] = {{DL_JOIN_RIGHT, 0}};
        dl_coll_t *step = dl_join(v2_arr, e_arr, jc, 1, &err);
        dl_coll_t *p2[2] = {r2, step};
        dl_coll_t *body2 = dl_distinct(dl_concat(p2, 2, &err), &err);
        assert_non_null(body2);
        assert_int_equal(dl_var_set(v2, body2, &err), 0);
        dl_coll_t *inner = dl_leave(body2, &err);
        dl_coll_t *p1[2] = {r1, inner};
        dl_coll_t *body1 = dl_distinct(dl_concat(p1, 2, &err), &err);
        assert_non_null(body1);
        assert_int_equal(dl_var_set(v1, body1, &err), 0);
        static view_t v;
        memset(&v, 0, sizeof v);
        assert_non_null(dl_capture_new(dl_leave(body1, &err), view_cap, &v, &err));
        bool adj[NMAX][NMAX] = {{0}};
        uint64_t t[1] = {0};
        dl_value_t zero = dl_value_int(0);
        assert_int_equal(dl_input_update(roots, &zero, 1, t, 1, &err), 0);
        int rounds = 1 + (int)dl_rng_below(&rng, 8);
        for (int r = 0; r < rounds; r++) {
            int k = r == 0 ? 1 + (int)dl_rng_below(&rng, (uint64_t)(2 * n))
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

/* Updates staged and frontiers advanced between the steps of a run are not lost or
 * overtaken: the staged times hold the frontier back until the next run brings them in. */
static void test_iterate_step_with_staging(void **state) {
    (void)state;
    dl_error_t err = {0};
    dl_graph_t *g = dl_graph_new(1, &err);
    dl_input_t *edges = dl_input_new(dl_graph_root(g), 2, &err);
    dl_input_t *roots = dl_input_new(dl_graph_root(g), 1, &err);
    dl_coll_t *out = build_reach(g, dl_input_coll(edges), dl_input_coll(roots));
    static view_t v;
    memset(&v, 0, sizeof v);
    assert_non_null(dl_capture_new(out, view_cap, &v, &err));
    uint64_t t[1] = {0};
    dl_value_t zero = dl_value_int(0);
    assert_int_equal(dl_input_update(roots, &zero, 1, t, 1, &err), 0);
    for (int i = 0; i < 5; i++) {
        dl_value_t e[2] = {dl_value_int(i), dl_value_int(i + 1)};
        assert_int_equal(dl_input_update(edges, e, 2, t, 1, &err), 0);
    }
    t[0] = 1;
    assert_int_equal(dl_input_advance_to(edges, t, &err), 0);
    assert_int_equal(dl_input_advance_to(roots, t, &err), 0);
    bool done = false;
    assert_int_equal(dl_graph_step(g, &done, &err), 0);
    /* Mid-run: delete edge 2->3 at time 1 and advance to 2. */
    dl_value_t e23[2] = {dl_value_int(2), dl_value_int(3)};
    assert_int_equal(dl_input_update(edges, e23, 2, t, -1, &err), 0);
    uint64_t t2[1] = {2};
    assert_int_equal(dl_input_advance_to(edges, t2, &err), 0);
    assert_int_equal(dl_input_advance_to(roots, t2, &err), 0);
    while (!done)
        assert_int_equal(dl_graph_step(g, &done, &err), 0);
    /* Time 0 is complete: 0..5 reachable. Time 1 is not complete yet (staged deletion). */
    for (int x = 0; x <= 5; x++)
        assert_int_equal(v.c[x][0], 1);
    dl_antichain_t f;
    dl_antichain_init(&f, 1);
    assert_int_equal(dl_coll_frontier(out, &f), 0);
    assert_true(dl_antichain_less_equal(&f, t));
    dl_antichain_fini(&f);
    assert_int_equal(dl_graph_run(g, &err), 0);
    for (int x = 0; x <= 5; x++)
        assert_int_equal(v.c[x][0], x <= 2 ? 1 : 0);
    dl_graph_free(g);
}

DL_TEST_GROUP(iterate, cmocka_unit_test(test_iterate_step_with_staging),
              cmocka_unit_test(test_iterate_nested_reach), cmocka_unit_test(test_iterate_reach_bfs),
              cmocka_unit_test(test_iterate_reach_2d),
              cmocka_unit_test(test_iterate_transitive_closure),
              cmocka_unit_test(test_iterate_connected_components));
