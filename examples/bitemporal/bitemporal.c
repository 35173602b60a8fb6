/*
 * bitemporal.c: orders with two times: system time (the transaction number: when the
 * database learned a fact) and a declared time dimension :time/shipped (the business day a
 * shipment happened). Shipments are recorded with their day; two retroactive corrections
 * follow: a shipment recorded late (day 2, recorded after day 4's) and a wrong day moved
 * (order 4 shipped on day 3, not 4). The program then answers "revenue shipped by day D,
 * as known at transaction T" for every D and two T (before and after the corrections)
 * with one-shot queries over vector as-of points (dl_db_as_of_point), through both the
 * compiled engine and the reference evaluator, and checks both against a direct model of
 * the product-order semantics. It also shows the store's change stream with full time
 * vectors, a live subscription, and the dimension's frontier refusing a correction behind
 * it. Exits 1 on any mismatch.
 *
 * What is NOT live (docs/datalog.md, docs/subscribe.md): compiled live queries run on
 * system time only. A subscription sees a retroactive correction as an ordinary change at
 * its transaction (its deltas can carry the commit's full time vector); per-day ("as of
 * day D") results are answered by one-shot queries here, not maintained incrementally,
 * and no FRONTIER messages ("day D is final") are produced yet.
 * Usage: bitemporal (no arguments).
 */
#include <deltalog/datalog.h>
#include <deltalog/deltalog.h>
#include <deltalog/store.h>
#include <deltalog/subscribe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ORDERS   4
#define N_DAYS     5
#define MAX_EVENTS 16

static const char *schema =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/amount :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :order/shipped :db/valueType :db.type/boolean"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :time/shipped :db/timeDimension true}]";
static const char *q_revenue = "[:find (sum ?amount) :with ?o"
                               " :where [?o :order/shipped true] [?o :order/amount ?amount]]";
static const char *q_shipped = "[:find ?id :where [?o :order/shipped true] [?o :order/id ?id]]";

static const int amount[N_ORDERS + 1] = {0, 100, 200, 300, 400};

/* The model: every change of :order/shipped with its time vector (tx, day). A point
 * (T, D) sees a change when tx <= T and day <= D; an order counts as shipped at the point
 * when the sum of the diffs it sees is positive. */
typedef struct change {
    uint64_t tx, day;
    int order, diff;
} change_t;
static change_t model[MAX_EVENTS];
static int n_model;

static dl_error_t err;
static dl_store_t *st;
static dl_db_t *db;
static dl_qsrcs_t *qs;
static dl_registry_t *reg;
static int failures;

static void check(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "bitemporal: %s: %s (%s)\n", what, err.message, dl_err_name(rc));
        exit(1);
    }
}

static int current_db(void *ctx, const struct dl_db **out, uint64_t *t, size_t *n, dl_error_t *e) {
    (void)ctx, (void)e;
    dl_db_unref(db);
    *out = db = dl_store_db(st);
    uint64_t basis = dl_db_basis_tx(db);
    *n = basis ? dl_db_tx_time(db, basis, t, DL_DELTA_MAX_DIM) : 0;
    if (*n == 0)
        t[0] = basis, *n = 1;
    if (*n > DL_DELTA_MAX_DIM)
        *n = DL_DELTA_MAX_DIM;
    return 0;
}

/* The change stream: every commit with its full time vector, then to the live queries. */
/* Releases the snapshot lent by current_db (one held across commits would pin every
 * later version of the store), then feeds the commit to the live queries. */
static void on_commit(void *ctx, const dl_commit_t *c) {
    (void)ctx;
    dl_db_unref(db);
    db = NULL;
    printf("  commit tx %llu, time [", (unsigned long long)c->tx);
    for (size_t i = 0; i < c->n_time; i++)
        printf("%s%llu", i ? " " : "", (unsigned long long)c->time[i]);
    printf("], %zu change%s\n", c->n_changes, c->n_changes == 1 ? "" : "s");
    if (dl_qsrcs_apply(qs, c, NULL) != 0)
        fprintf(stderr, "a live query failed at tx %llu\n", (unsigned long long)c->tx);
}

static void on_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    (void)sub, (void)udata;
    if (dl_delta_kind(d) != DL_DELTA_DATA)
        return;
    size_t n_dims;
    const uint64_t *t = dl_delta_time(d, &n_dims);
    printf("  live shipped-orders delta at [");
    for (size_t i = 0; i < n_dims; i++)
        printf("%s%llu", i ? " " : "", (unsigned long long)t[i]);
    printf("]:");
    for (size_t i = 0; i < dl_delta_len(d); i++)
        printf(" %c%lld", dl_delta_diff(d, i) > 0 ? '+' : '-',
               (long long)dl_delta_row(d, i)[0].as.i);
    printf("%s\n", dl_delta_is_snapshot(d) ? " (snapshot)" : "");
}

/* Sets order `order`'s shipped flag on day `day` (diff +1) or withdraws it (diff -1), in
 * one transaction whose :time/shipped coordinate is the day. */
static uint64_t ship(int order, uint64_t day, int diff, const char *why) {
    char tx[256];
    snprintf(
        tx, sizeof tx,
        "[[%s [:order/id %d] :order/shipped true] [:db/add \"datomic.tx\" :time/shipped %llu]]",
        diff > 0 ? ":db/add" : ":db/retract", order, (unsigned long long)day);
    printf("%s\n", why);
    dl_tx_report_t rep;
    check(dl_store_transact_edn(st, tx, strlen(tx), &rep, &err), "transact");
    check(dl_registry_pump(reg, &err), "pump");
    model[n_model++] = (change_t){rep.tx, day, order, diff};
    uint64_t t = rep.tx;
    dl_tx_report_fini(&rep);
    return t;
}

/* The model's revenue at point (T, D), and whether anything shipped. */
static long long model_revenue(uint64_t T, uint64_t D, bool *any) {
    long long sum = 0;
    *any = false;
    for (int o = 1; o <= N_ORDERS; o++) {
        int seen = 0;
        for (int i = 0; i < n_model; i++)
            if (model[i].order == o && model[i].tx <= T && model[i].day <= D)
                seen += model[i].diff;
        if (seen > 0) {
            sum += amount[o];
            *any = true;
        }
    }
    return sum;
}

/* Revenue at point (T, D) by both engines, checked against the model; returns the text. */
static void revenue_at(uint64_t T, uint64_t D, char *out, size_t cap) {
    dl_db_t *now = dl_store_db(st);
    uint64_t point[2] = {T, D};
    dl_db_t *view = dl_db_as_of_point(now, point, 2);
    dl_query_t *q;
    dl_query_result_t *compiled, *naive;
    check(dl_query_parse(q_revenue, strlen(q_revenue), NULL, 0, view, &q, &err), "parse");
    check(dl_query_run(q, view, NULL, 0, &compiled, &err), "compiled one-shot");
    dl_query_source_t src = {"$", view};
    check(dl_query_eval_naive(q, &src, 1, NULL, 0, &naive, &err), "reference evaluator");
    char *a = dl_query_result_to_edn(compiled), *b = dl_query_result_to_edn(naive), want[64];
    bool any;
    long long m = model_revenue(T, D, &any);
    if (any)
        snprintf(want, sizeof want, "[[%lld]]", m);
    else
        snprintf(want, sizeof want, "[]");
    if (strcmp(a, want) != 0 || strcmp(b, want) != 0) {
        printf("MISMATCH at [%llu %llu]: compiled %s, reference %s, model %s\n",
               (unsigned long long)T, (unsigned long long)D, a, b, want);
        failures++;
    }
    snprintf(out, cap, "%s", any ? want + 2 : "-");
    if (any)
        out[strlen(out) - 2] = 0;
    dl_free(a);
    dl_free(b);
    dl_query_result_free(compiled);
    dl_query_result_free(naive);
    dl_query_free(q);
    dl_db_unref(view);
    dl_db_unref(now);
}

static void table(const char *title, uint64_t T) {
    printf("%s (as known at tx %llu):\n  day     ", title, (unsigned long long)T);
    for (uint64_t D = 1; D <= N_DAYS; D++)
        printf("%6llu", (unsigned long long)D);
    printf("\n  revenue ");
    for (uint64_t D = 1; D <= N_DAYS; D++) {
        char cell[32];
        revenue_at(T, D, cell, sizeof cell);
        printf("%6s", cell);
    }
    printf("\n");
}

int main(void) {
    check(dl_store_open_memory(&st, &err), "open");
    dl_qsrc_env_t env = {current_db, NULL, NULL};
    check(dl_qsrcs_new(&env, &qs, &err), "live queries");
    check(dl_registry_new(dl_qsrcs_vtable(), qs, &reg, &err), "registry");
    int id;
    check(dl_store_listen(st, on_commit, NULL, &id, &err), "listen");
    printf("schema with the time dimension :time/shipped\n");
    check(dl_store_transact_edn(st, schema, strlen(schema), NULL, &err), "schema");
    printf("four orders (amounts 100 200 300 400)\n");
    const char *orders = "[{:order/id 1 :order/amount 100} {:order/id 2 :order/amount 200}"
                         " {:order/id 3 :order/amount 300} {:order/id 4 :order/amount 400}]";
    check(dl_store_transact_edn(st, orders, strlen(orders), NULL, &err), "orders");

    /* A live subscription watching two coordinates: its deltas carry [tx shipped-day]. */
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    o.n_dims = 2;
    dl_sub_t *sub;
    check(dl_subscribe(reg, q_shipped, NULL, 0, &o, &sub, &err), "subscribe");

    ship(1, 1, +1, "order 1 ships on day 1");
    ship(2, 2, +1, "order 2 ships on day 2");
    uint64_t before = ship(4, 4, +1, "order 4 ships on day 4");
    ship(3, 2, +1, "correction: order 3 had shipped on day 2 (recorded late)");
    ship(4, 4, -1, "correction: order 4 did not ship on day 4 ...");
    uint64_t after = ship(4, 3, +1, "... it shipped on day 3");

    table("revenue shipped by each day, before the corrections", before);
    table("revenue shipped by each day, after the corrections", after);

    /* The live result is the current state (every day, latest knowledge). */
    char now[64];
    revenue_at(after, UINT64_MAX, now, sizeof now);
    printf("current revenue shipped: %s\n", now);

    /* Closing days: the frontier moves to day 3, and a correction behind it is refused. */
    uint64_t adv_tx;
    dl_value_t dim;
    check(dl_value_text(DL_T_KEYWORD, "time/shipped", 12, &dim, &err), "keyword");
    printf("advance :time/shipped to day 3 (days before 3 are closed)\n");
    check(dl_store_advance(st, dim, 3, &adv_tx, &err), "advance");
    const char *late = "[[:db/retract [:order/id 2] :order/shipped true]"
                       " [:db/add \"datomic.tx\" :time/shipped 2]]";
    dl_error_t e2 = {0};
    int rc = dl_store_transact_edn(st, late, strlen(late), NULL, &e2);
    printf("a correction on day 2 is now refused: %s\n", rc == DL_ETIME ? "time" : "NOT REFUSED");
    if (rc != DL_ETIME)
        failures++;

    dl_unsubscribe(reg, sub);
    dl_registry_free(reg);
    dl_qsrcs_free(qs);
    dl_db_unref(db);
    dl_store_close(st);
    printf(failures ? "FAILED\n" : "every as-of point: compiled = reference = model\n");
    return failures ? 1 : 0;
}
