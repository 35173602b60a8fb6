/*
 * live_helpers.h: what the live-query tests of tests/datalog share: failing a property
 * test with the error's code and message, and committing EDN transaction text.
 */
#ifndef DL_TESTS_DATALOG_LIVE_HELPERS_H
#define DL_TESTS_DATALOG_LIVE_HELPERS_H

#include "tests/harness/dl_test.h"

#include <deltalog/store.h>
#include <string.h>

static inline void must(int rc, const dl_error_t *err, const char *what) {
    if (rc)
        dl_prop_fail("%s: %s: %s", what, dl_err_name(rc), err->message);
}

static inline void transact(dl_store_t *st, const char *tx) {
    dl_error_t err = {0};
    must(dl_store_transact_edn(st, tx, strlen(tx), NULL, &err), &err, tx);
}

#endif
