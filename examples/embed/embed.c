/* embed.c: deltalog inside a C program: an in-memory database, a live Datalog query whose
 * diffs a callback prints as transactions commit. See README.md. */
#include <deltalog/deltalog.h>
#include <deltalog/live.h>
#include <stdio.h>
#include <stdlib.h>

/* Called on the committing thread: the snapshot inside subscribe, then a diff per commit. */
static void on_delta(dl_sub_t *sub, const dl_delta_t *d, void *udata) {
    for (size_t i = 0; dl_delta_kind(d) == DL_DELTA_DATA && i < dl_delta_len(d); i++) {
        char *k = dl_value_to_edn(dl_delta_row(d, i)[0]),
             *v = dl_value_to_edn(dl_delta_row(d, i)[1]);
        printf("tx %llu: %c [%s %s]\n", (unsigned long long)dl_delta_time(d, NULL)[0],
               dl_delta_diff(d, i) > 0 ? '+' : '-', k, v);
        dl_free(k), dl_free(v), (void)sub, (void)udata;
    }
}

static dl_error_t err;
static void check(int rc) { /* every call returns 0 or a DL_E... code, with err filled */
    if (rc != 0)
        fprintf(stderr, "embed: %s\n", err.message), exit(1);
}

int main(void) {
    dl_live_db_t *db;
    dl_sub_t *sub;
    check(dl_live_db_open(NULL, &db, &err)); /* NULL options: in memory */
    check(dl_live_db_transact_edn(
        db,
        "[{:db/ident :task/title :db/valueType :db.type/string"
        " :db/cardinality :db.cardinality/one :db/unique :db.unique/identity}"
        " {:db/ident :task/status :db/valueType :db.type/keyword :db/cardinality "
        ":db.cardinality/one}]",
        NULL, &err));
    check(dl_live_db_transact_edn(
        db,
        "[{:task/title \"write docs\" :task/status :todo}"
        " {:task/title \"fix bug\" :task/status :todo} {:task/title \"ship\" :task/status :doing}]",
        NULL, &err));
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    o.on_delta = on_delta;
    check(dl_live_db_subscribe(db, "[:find ?status (count ?t) :where [?t :task/status ?status]]",
                               NULL, 0, &o, &sub, &err)); /* prints the snapshot */
    check(dl_live_db_transact_edn(db, "[[:db/add [:task/title \"fix bug\"] :task/status :done]]",
                                  NULL, &err)); /* prints the diff */
    check(dl_live_db_transact_edn(db, "[[:db/retractEntity [:task/title \"ship\"]]]", NULL, &err));
    dl_live_db_unsubscribe(db, sub);
    dl_live_db_free(db);
    return 0;
}
