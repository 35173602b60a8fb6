/*
 * reachability.c: live graph reachability with a recursive Datalog rule. Nodes and edges
 * are entities and refs in an in-memory store; a subscription to "the nodes reachable from
 * node 0" receives, for each transaction that adds or removes edges, the nodes that became
 * reachable (+) or unreachable (-). After every step the program checks the subscriber's
 * accumulated set against a breadth-first search over its own copy of the edges and
 * against the compiled engine's one-shot result, and exits 1 on a difference.
 * The interesting steps: removing an edge on a cycle while the cycle is still entered
 * (nothing changes), removing the only entry into a cycle (the whole cycle goes, though
 * each of its nodes still has an incoming edge), and removing an edge where another path
 * survives. Usage: reachability (no arguments).
 */
#include <deltalog/datalog.h>
#include <deltalog/deltalog.h>
#include <deltalog/store.h>
#include <deltalog/subscribe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 10 /* nodes 0..N-1 */

static const char *schema =
    "[{:db/ident :node/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :node/edge :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}]";
static const char *rules = "[[(reach ?n) [?n :node/id 0]]"
                           " [(reach ?n) (reach ?m) [?m :node/edge ?n]]]";
static const char *query = "[:find ?id :in $ % :where (reach ?n) [?n :node/id ?id]]";

static dl_error_t err;
static dl_store_t *st;
static dl_db_t *db;
static dl_qsrcs_t *qs;
static dl_registry_t *reg;
static bool edge[N][N]; /* the program's own copy of the graph, for the BFS */
static bool reached[N]; /* the subscriber's accumulated result */
static int failures;
static bool subscribed; /* reached[] is only meaningful once subscribed */

static void check(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "reachability: %s: %s (%s)\n", what, err.message, dl_err_name(rc));
        exit(1);
    }
}

static int current_db(void *ctx, const struct dl_db **out, uint64_t *t, size_t *n, dl_error_t *e) {
    (void)ctx, (void)e;
    dl_db_unref(db);
    *out = db = dl_store_db(st);
    t[0] = dl_db_basis_tx(db);
    *n = 1;
    return 0;
}

/* Releases the snapshot lent by current_db (one held across commits would pin every
 * later version of the store), then feeds the commit to the live queries. */
static void on_commit(void *ctx, const dl_commit_t *c) {
    (void)ctx;
    dl_db_unref(db);
    db = NULL;
    if (dl_qsrcs_apply(qs, c, NULL) != 0)
        fprintf(stderr, "the live query failed at tx %llu\n", (unsigned long long)c->tx);
}

/* Prints a delta as "+3 +4 -7" (sorted by node) and folds it into `reached`. */
static void on_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    (void)sub, (void)udata;
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return;
    int64_t diff_of[N] = {0};
    for (size_t i = 0; i < dl_delta_len(d); i++) {
        int64_t id = dl_delta_row(d, i)[0].as.i;
        if (id < 0 || id >= N) {
            failures++;
            continue;
        }
        diff_of[id] = dl_delta_diff(d, i);
    }
    printf("  %s", dl_delta_is_snapshot(d) ? "snapshot:" : "diff:");
    for (int id = 0; id < N; id++) {
        if (diff_of[id] == 0)
            continue;
        printf(" %c%d", diff_of[id] > 0 ? '+' : '-', id);
        if ((diff_of[id] > 0) == reached[id] || (diff_of[id] != 1 && diff_of[id] != -1))
            failures++; /* a set gains only what it lacks and loses only what it has */
        reached[id] = diff_of[id] > 0;
    }
    printf("\n");
}

/* The obviously-correct answer: breadth-first search from node 0 over `edge`. */
static void bfs(bool out[N]) {
    int queue[N], head = 0, tail = 0;
    memset(out, 0, N * sizeof *out);
    out[0] = true;
    queue[tail++] = 0;
    while (head < tail) {
        int m = queue[head++];
        for (int n = 0; n < N; n++)
            if (edge[m][n] && !out[n]) {
                out[n] = true;
                queue[tail++] = n;
            }
    }
}

static void verify(const char *step) {
    bool want[N];
    bfs(want);
    /* The one-shot compiled result, read back from its canonical EDN [[0] [1] ...]. */
    dl_db_t *now = dl_store_db(st);
    dl_query_t *q;
    dl_query_result_t *res;
    check(dl_query_parse(query, strlen(query), rules, strlen(rules), now, &q, &err), "parse");
    check(dl_query_run(q, now, NULL, 0, &res, &err), "one-shot query");
    char *edn = dl_query_result_to_edn(res), expect[256];
    size_t len = (size_t)snprintf(expect, sizeof expect, "[");
    for (int n = 0; n < N; n++)
        if (want[n])
            len += (size_t)snprintf(expect + len, sizeof expect - len, "%s[%d]", len > 1 ? " " : "",
                                    n);
    snprintf(expect + len, sizeof expect - len, "]");
    bool ok = strcmp(edn, expect) == 0;
    for (int n = 0; n < N && subscribed; n++)
        ok = ok && reached[n] == want[n];
    printf("  %s: reachable %s (BFS %s)\n", ok ? "ok" : "MISMATCH", edn, expect);
    if (!ok) {
        fprintf(stderr, "reachability: %s: subscriber, one-shot and BFS differ\n", step);
        failures++;
    }
    dl_free(edn);
    dl_query_result_free(res);
    dl_query_free(q);
    dl_db_unref(now);
}

/* One transaction adding and removing edges: adds is "a b a b ..." pairs, -1 ends. */
static void step(const char *title, const int *adds, const int *dels) {
    char tx[2048];
    size_t len = (size_t)snprintf(tx, sizeof tx, "[");
    printf("%s\n", title);
    for (int pass = 0; pass < 2; pass++)
        for (const int *p = pass ? dels : adds; p && p[0] >= 0; p += 2) {
            len += (size_t)snprintf(tx + len, sizeof tx - len,
                                    "[%s [:node/id %d] :node/edge [:node/id %d]]",
                                    pass ? ":db/retract" : ":db/add", p[0], p[1]);
            edge[p[0]][p[1]] = !pass;
        }
    snprintf(tx + len, sizeof tx - len, "]");
    check(dl_store_transact_edn(st, tx, strlen(tx), NULL, &err), "transact");
    check(dl_registry_pump(reg, &err), "pump");
    verify(title);
}

int main(void) {
    check(dl_store_open_memory(&st, &err), "open");
    dl_qsrc_env_t env = {current_db, NULL, rules};
    check(dl_qsrcs_new(&env, &qs, &err), "live queries");
    check(dl_registry_new(dl_qsrcs_vtable(), qs, &reg, &err), "registry");
    int id;
    check(dl_store_listen(st, on_commit, NULL, &id, &err), "listen");
    check(dl_store_transact_edn(st, schema, strlen(schema), NULL, &err), "schema");
    char nodes[512];
    size_t len = (size_t)snprintf(nodes, sizeof nodes, "[");
    for (int n = 0; n < N; n++)
        len += (size_t)snprintf(nodes + len, sizeof nodes - len, "{:node/id %d}", n);
    snprintf(nodes + len, sizeof nodes - len, "]");
    check(dl_store_transact_edn(st, nodes, strlen(nodes), NULL, &err), "nodes");

    /* 0 -> 1 -> 2 -> 3 -> 1 is a cycle entered from 0; 4 is reached through 3 and through
     * 0 -> 5 -> 6 -> 4; 7 -> 8 is an island. */
    step("initial graph: 0-1 1-2 2-3 3-1 3-4 0-5 5-6 6-4 7-8",
         (int[]){0, 1, 1, 2, 2, 3, 3, 1, 3, 4, 0, 5, 5, 6, 6, 4, 7, 8, -1}, NULL);
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    dl_sub_t *sub;
    printf("subscribe to the nodes reachable from 0\n");
    check(dl_subscribe(reg, query, NULL, 0, &o, &sub, &err), "subscribe");
    subscribed = true;
    verify("subscribe");
    step("add 4-7: the island becomes reachable", (int[]){4, 7, -1}, NULL);
    step("remove 5-6: 6 goes, 4 stays (another path survives: 0-1-2-3-4)", NULL, (int[]){5, 6, -1});
    step("remove 3-1, an edge on the cycle: nothing changes (0-1 still enters it)", NULL,
         (int[]){3, 1, -1});
    step("add 3-1 back", (int[]){3, 1, -1}, NULL);
    step("remove 0-1, the only entry into the cycle: the cycle and all behind it go", NULL,
         (int[]){0, 1, -1});
    step("add 5-2 and remove 7-8 in one transaction: the cycle comes back, 8 does not",
         (int[]){5, 2, -1}, (int[]){7, 8, -1});
    step("add 9-9 (a self-loop) and 6-9: 6 is unreachable, nothing changes",
         (int[]){9, 9, 6, 9, -1}, NULL);
    step("add 5-6 back: 6 and 9 (through 6-9) become reachable", (int[]){5, 6, -1}, NULL);

    dl_unsubscribe(reg, sub);
    dl_registry_free(reg);
    dl_qsrcs_free(qs);
    dl_db_unref(db);
    dl_store_close(st);
    printf(failures ? "FAILED\n" : "every step: subscriber = one-shot = BFS\n");
    return failures ? 1 : 0;
}
