/*
 * store_test_util.h: helpers the store's test files share: transacting EDN with an
 * expected result, dumping every index (current and history) of a snapshot to text so
 * that "the database is byte-for-byte unchanged" is one string comparison.
 */
#ifndef DL_STORE_TEST_UTIL_H
#define DL_STORE_TEST_UTIL_H

#include "tests/harness/dl_test.h"

#include "base/base.h"
#include <deltalog/store.h>

#include <stdio.h>
#include <string.h>

/* Every datom of every index of db, current view then history view, as text. new. */
static inline char *st_dump_db(const dl_db_t *db) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl_db_t *h = dl_db_history(db);
    for (int view = 0; view < 2; view++) {
        const dl_db_t *d = view ? h : db;
        for (int idx = 0; idx < 4; idx++) {
            dl_iter_t *it;
            if (dl_db_datoms(d, (dl_index_t)idx, NULL, 0, NULL, &it, NULL) != 0)
                continue;
            dl__buf_printf(&b, "#%d/%d\n", view, idx);
            dl_datom_t x;
            while (dl_iter_next(it, &x)) {
                dl__buf_printf(&b, "%lld %lld ", (long long)x.e, (long long)x.a);
                dl__edn_print_value(x.v, &b);
                dl__buf_printf(&b, " %lld %d\n", (long long)x.tx, x.added);
            }
            dl_iter_free(it);
        }
    }
    dl_db_unref(h);
    dl__buf_printf(&b, "basis %llu\n", (unsigned long long)dl_db_basis_tx(db));
    return dl__buf_take(&b);
}

static inline char *st_dump(dl_store_t *s) {
    dl_db_t *db = dl_store_db(s);
    char *r = st_dump_db(db);
    dl_db_unref(db);
    return r;
}

/* Transacts EDN and checks the return code; on mismatch prints the error. */
static inline int st_tx(dl_store_t *s, const char *edn, int want, dl_tx_report_t *rep,
                        dl_error_t *out_err) {
    dl_error_t err = {0};
    int rc = dl_store_transact_edn(s, edn, strlen(edn), rep, &err);
    if (rc != want)
        print_error("transact %s: want %s got %s: %s\n", edn, dl_err_name(want), dl_err_name(rc),
                    err.message);
    if (out_err)
        *out_err = err;
    return rc;
}

/* The entity id of a tempid in a report, or 0. */
static inline int64_t st_tempid(const dl_tx_report_t *r, const char *t) {
    for (size_t i = 0; i < r->n_tempids; i++)
        if (strcmp(r->tempids[i].tempid, t) == 0)
            return r->tempids[i].id;
    return 0;
}

#endif
