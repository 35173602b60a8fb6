/* embed.c: deltalog embedded in a C program: an in-memory database, a live Datalog
 * subscription delivered to a callback, and the diffs it prints as transactions commit.
 * Uses only the public headers; error handling is kept to one check macro. See README.md. */
#include <deltalog/deltalog.h>
#include <deltalog/store.h>
#include <deltalog/subscribe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        if ((call) != 0) {                                                                         \
            fprintf(stderr, "%s\n", err.message);                                                  \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
static dl_error_t err;
static dl_store_t *st;
static dl_db_t *db;
static dl_qsrcs_t *qs;

/* The live queries load from the current snapshot (asked for when a query is opened). */
static int current_db(void *ctx, const struct dl_db **out, uint64_t *t, size_t *n, dl_error_t *e) {
    (void)ctx, (void)e;
    dl_db_unref(db);
    *out = db = dl_store_db(st);
    t[0] = dl_db_basis_tx(db), *n = 1;
    return 0;
}
/* Every commit goes to the live queries (on the committing thread); a query that fails
 * ends its subscribers with the error at the next pump. The snapshot lent above is
 * released first: one held across commits would pin every version after it. */
static void on_commit(void *ctx, const dl_commit_t *c) {
    dl_db_unref(db), db = NULL;
    if (dl_qsrcs_apply(ctx, c, NULL) != 0)
        fprintf(stderr, "a live query failed at tx %llu\n", (unsigned long long)c->tx);
}

/* The subscriber: one line per diff. */
static void on_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    (void)sub, (void)udata;
    for (size_t i = 0; dl_delta_kind(d) == DL_DELTA_DATA && i < dl_delta_len(d); i++) {
        char *k = dl_value_to_edn(dl_delta_row(d, i)[0]),
             *v = dl_value_to_edn(dl_delta_row(d, i)[1]);
        printf("tx %llu: %c [%s %s]\n", (unsigned long long)dl_delta_time(d, NULL)[0],
               dl_delta_diff(d, i) > 0 ? '+' : '-', k, v);
        dl_free(k), dl_free(v);
    }
}

static void transact(dl_registry_t *reg, const char *edn) {
    CHECK(dl_store_transact_edn(st, edn, strlen(edn), NULL, &err));
    CHECK(dl_registry_pump(reg, &err)); /* deliver what the commit changed */
}

int main(void) {
    dl_registry_t *reg;
    dl_sub_t *sub;
    CHECK(dl_store_open_memory(&st, &err));
    dl_qsrc_env_t env = {current_db, NULL, NULL};
    CHECK(dl_qsrcs_new(&env, &qs, &err));
    CHECK(dl_registry_new(dl_qsrcs_vtable(), qs, &reg, &err));
    int listener;
    CHECK(dl_store_listen(st, on_commit, qs, &listener, &err));

    transact(reg, "[{:db/ident :task/title :db/valueType :db.type/string"
                  "  :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}"
                  " {:db/ident :task/status :db/valueType :db.type/keyword"
                  "  :db/cardinality :db.cardinality/one}]");
    transact(reg, "[{:task/title \"write docs\" :task/status :todo}"
                  " {:task/title \"fix bug\" :task/status :todo}"
                  " {:task/title \"ship\" :task/status :doing}]");

    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    const char *q = "[:find ?status (count ?t) :where [?t :task/status ?status]]";
    CHECK(dl_subscribe(reg, q, NULL, 0, &o, &sub, &err)); /* prints the snapshot */

    transact(reg, "[[:db/add [:task/title \"fix bug\"] :task/status :done]]");
    transact(reg, "[[:db/retractEntity [:task/title \"ship\"]]]");

    dl_unsubscribe(reg, sub);
    dl_registry_free(reg);
    dl_qsrcs_free(qs);
    dl_db_unref(db);
    dl_store_close(st);
    return 0;
}
