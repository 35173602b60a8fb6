/*
 * durable.c: the glue between the store and its durable log (store/log.h): opening a
 * directory, the payload of a committed transaction, replay and checkpoints
 * (docs/storage.md "Durability glue"). Until the log is wired in, dl_store_open reports
 * DL_EUNSUPPORTED and the hooks are never reached (s->log stays NULL).
 */
#include "store/store.h"

int dl__log_hook_append(dl_store_t *s, uint64_t tx, const dl_txrec_t *rec, uint64_t *out_lsn,
                        dl_error_t *err) {
    (void)s;
    (void)tx;
    (void)rec;
    *out_lsn = 0;
    return dl_error_set(err, DL_EUNSUPPORTED, "no durable log in this build");
}

int dl__log_hook_sync(dl_store_t *s, uint64_t lsn, dl_error_t *err) {
    (void)s;
    (void)lsn;
    (void)err;
    return 0;
}

void dl__store_close_log(dl_store_t *s) { (void)s; }

int dl_store_open(const char *dir, const dl_store_options_t *opts, dl_store_t **out,
                  dl_error_t *err) {
    (void)dir;
    (void)opts;
    if (out)
        *out = NULL;
    return dl_error_set(err, DL_EUNSUPPORTED, "durable stores are not available yet");
}

int dl_store_checkpoint(dl_store_t *s, dl_error_t *err) {
    (void)s;
    return dl_error_set(err, DL_EUNSUPPORTED, "checkpoints need a durable store");
}
