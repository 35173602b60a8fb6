/*
 * test_pipeline.c: committing without waiting (dl_store_transact_*_begin,
 * dl_store_advance_begin) and waiting once (dl_store_wait_durable), store.c design note 7:
 * a rejected transaction in the middle of a batch changes nothing and leaves the others;
 * later transactions resolve against earlier, not yet durable ones; snapshots and
 * listeners see a transaction only once it is durable, in commit order; one log sync
 * covers a batch (counted on the in-memory file system); a failed fsync fails every
 * unacknowledged transaction of the batch and closes the store for writing while every
 * acknowledged one survives a power loss; a randomized property test against a naive
 * model; concurrent blocking writers mixed with a batching one.
 * Does not test the log's own fault handling (test_crash.c) or the server (tests/runtime).
 */
#include "store_test_util.h"

#include "store/io.h"
#include "store/store.h"

#include <pthread.h>
#include <stdlib.h>

static const char *SCHEMA =
    "[{:db/ident :order/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    "  :db/unique :db.unique/identity}"
    " {:db/ident :order/amount :db/valueType :db.type/long"
    "  :db/cardinality :db.cardinality/one}"
    " {:db/ident :time/shipped :db/timeDimension true}]";

/* Records every commit the listener sees. */
typedef struct seen {
    pthread_mutex_t mu;
    uint64_t tx[4096];
    size_t n;
} seen_t;

static void on_commit(void *ctx, const dl_commit_t *c) {
    seen_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    if (s->n < DL_ARRAY_LEN(s->tx))
        s->tx[s->n++] = c->tx;
    pthread_mutex_unlock(&s->mu);
}

static uint64_t begin_edn(dl_store_t *s, const char *edn, int want) {
    uint64_t tx = 0;
    dl_error_t err = {0};
    int rc = dl_store_transact_edn_begin(s, edn, strlen(edn), NULL, &tx, &err);
    if (rc != want)
        fail_msg("begin %s: want %s got %s: %s", edn, dl_err_name(want), dl_err_name(rc),
                 err.message);
    return tx;
}

static uint64_t basis(dl_store_t *s) {
    dl_db_t *db = dl_store_db(s);
    uint64_t b = dl_db_basis_tx(db);
    dl_db_unref(db);
    return b;
}

/* The amount of order id in the current snapshot, or -1 when there is no such order. */
static int64_t amount_of(dl_store_t *s, int64_t id) {
    dl_db_t *db = dl_store_db(s);
    dl_attr_info_t ai, aa;
    assert_int_equal(dl_db_attr(db, "order/id", &ai, NULL), 0);
    assert_int_equal(dl_db_attr(db, "order/amount", &aa, NULL), 0);
    int64_t e = 0, out = -1;
    if (dl_db_lookup(db, ai.id, dl_value_int(id), &e, NULL) == 0) {
        dl_datom_t *ds = NULL;
        size_t n = 0;
        assert_int_equal(dl_db_entity(db, e, &ds, &n, NULL), 0);
        for (size_t i = 0; i < n; i++)
            if (ds[i].a == aa.id)
                out = ds[i].v.as.i;
        dl_free(ds);
    }
    dl_db_unref(db);
    return out;
}

static dl_io_t *mem_io(void) {
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    return io;
}

static dl_store_t *open_mem_durable(dl_io_t *io) {
    dl_store_t *s = NULL;
    dl_error_t err = {0};
    dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_EVERY, .segment_bytes = 64 << 20};
    if (dl__store_open_io("/pipe", &o, io, &s, &err) != 0)
        fail_msg("open: %s", err.message);
    return s;
}

/* A batch with a rejected transaction in the middle, on an in-memory and on a durable
 * store: the others commit, in order, with consecutive numbers; a later one resolves
 * against an earlier one that is not yet durable; nothing shows before the wait. */
static void batch_with_rejection(dl_store_t *s) {
    seen_t seen = {.mu = PTHREAD_MUTEX_INITIALIZER};
    int id = 0;
    assert_int_equal(st_tx(s, SCHEMA, 0, NULL, NULL), 0);
    assert_int_equal(dl_store_listen(s, on_commit, &seen, &id, NULL), 0);
    uint64_t b0 = basis(s);
    char *before = st_dump(s);
    uint64_t t1 = begin_edn(s, "[{:order/id 1 :order/amount 10}]", 0);
    uint64_t t2 = begin_edn(s, "[{:order/id 2 :order/amount 20}]", 0);
    begin_edn(s, "[{:order/id 3 :order/nope 30}]", DL_EUNKNOWN_ATTR);
    begin_edn(s, "[{:order/id 4 :order/amount \"x\"}]", DL_ETYPE);
    /* resolves against t1 (not durable yet): a lookup ref and an upsert */
    uint64_t t3 = begin_edn(s, "[[:db/add [:order/id 1] :order/amount 11]]", 0);
    uint64_t t4 = begin_edn(s, "[{:order/id 2 :order/amount 21}]", 0);
    uint64_t t5 = 0;
    dl_value_t dim;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "time/shipped", 12, &dim, NULL), 0);
    assert_int_equal(dl_store_advance_begin(s, dim, 5, &t5, NULL), 0);
    assert_int_equal(t1, b0 + 1);
    assert_int_equal(t2, b0 + 2);
    assert_int_equal(t3, b0 + 3);
    assert_int_equal(t4, b0 + 4);
    assert_int_equal(t5, b0 + 5);
    /* nothing acknowledged yet: snapshots and listeners do not see the batch */
    assert_int_equal(basis(s), b0);
    char *mid = st_dump(s);
    assert_string_equal(before, mid);
    assert_int_equal(seen.n, 0);
    assert_int_equal(dl_store_wait_durable(s, t5, NULL), 0);
    assert_int_equal(basis(s), t5);
    assert_int_equal(seen.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(seen.tx[i], b0 + 1 + i);
    assert_int_equal(amount_of(s, 1), 11);
    assert_int_equal(amount_of(s, 2), 21);
    assert_int_equal(amount_of(s, 3), -1);
    assert_int_equal(amount_of(s, 4), -1);
    /* waiting again, or for an earlier one, answers at once; an unknown one is EINVAL */
    assert_int_equal(dl_store_wait_durable(s, t2, NULL), 0);
    assert_int_equal(dl_store_wait_durable(s, t5 + 7, NULL), DL_EINVAL);
    dl_store_unlisten(s, id);
    dl_free(before);
    dl_free(mid);
}

static void test_pipeline_rejected_in_the_middle(void **state) {
    (void)state;
    dl_store_t *s = NULL;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    batch_with_rejection(s);
    dl_store_close(s);

    dl_io_t *io = mem_io();
    s = open_mem_durable(io);
    batch_with_rejection(s);
    char *d1 = st_dump(s);
    dl_store_close(s);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 0); /* acknowledged: survives a power loss */
    s = open_mem_durable(io);
    char *d2 = st_dump(s);
    assert_string_equal(d1, d2);
    dl_free(d1);
    dl_free(d2);
    dl_store_close(s);
    dl__io_mem_free(io);
}

/* Publication follows the waits, in order: waiting for the middle of a batch publishes
 * its prefix only; one sync covers a whole batch (group commit on one thread). */
static void test_pipeline_wait_publishes_prefix_with_one_sync(void **state) {
    (void)state;
    dl_io_t *io = mem_io();
    dl_store_t *s = open_mem_durable(io);
    seen_t seen = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(st_tx(s, SCHEMA, 0, NULL, NULL), 0);
    assert_int_equal(dl_store_listen(s, on_commit, &seen, NULL, NULL), 0);
    uint64_t b0 = basis(s), tx[64];
    char buf[128];
    for (int i = 0; i < 64; i++) {
        snprintf(buf, sizeof buf, "[{:order/id %d :order/amount %d}]", 100 + i, i);
        tx[i] = begin_edn(s, buf, 0);
    }
    assert_int_equal(basis(s), b0);
    assert_int_equal(dl_store_wait_durable(s, tx[9], NULL), 0);
    assert_int_equal(basis(s), tx[9]);
    assert_int_equal(seen.n, 10);
    assert_int_equal(amount_of(s, 109), 9);
    assert_int_equal(amount_of(s, 110), -1);
    dl_io_mem_stats_t st0, st1;
    dl__io_mem_stats(io, &st0);
    assert_int_equal(dl_store_wait_durable(s, tx[63], NULL), 0);
    dl__io_mem_stats(io, &st1);
    /* the rest of the batch: at most one fsync (the first wait's may have covered it) */
    assert_true(st1.fsyncs - st0.fsyncs <= 1);
    assert_int_equal(seen.n, 64);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(seen.tx[i], b0 + 1 + i);
    /* a blocking transaction after begun ones publishes them too (no deadlock) */
    uint64_t tb = begin_edn(s, "[{:order/id 500 :order/amount 5}]", 0);
    dl_tx_report_t rep;
    assert_int_equal(st_tx(s, "[{:order/id 501 :order/amount 6}]", 0, &rep, NULL), 0);
    assert_int_equal(rep.tx, tb + 1);
    dl_tx_report_fini(&rep);
    assert_int_equal(basis(s), tb + 1);
    /* close makes begun transactions durable */
    uint64_t tc = begin_edn(s, "[{:order/id 502 :order/amount 7}]", 0);
    dl_store_close(s);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 0);
    s = open_mem_durable(io);
    assert_int_equal(basis(s), tc);
    assert_int_equal(amount_of(s, 502), 7);
    dl_store_close(s);
    dl__io_mem_free(io);
}

/* An fsync failure during a batch's wait fails every transaction of the batch (none was
 * acknowledged), publishes none of them and closes the store for writing; after a power
 * loss every acknowledged transaction is there and each failed one is all or nothing. */
static void test_pipeline_fsync_failure_fails_the_batch(void **state) {
    (void)state;
    dl_io_t *io = mem_io();
    dl_store_t *s = open_mem_durable(io);
    seen_t seen = {.mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(st_tx(s, SCHEMA, 0, NULL, NULL), 0);
    assert_int_equal(dl_store_listen(s, on_commit, &seen, NULL, NULL), 0);
    char buf[128];
    for (int i = 0; i < 3; i++) { /* acknowledged */
        snprintf(buf, sizeof buf, "[{:order/id %d :order/amount %d}]", i, i);
        assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    }
    uint64_t acked = basis(s);
    char *acked_dump = st_dump(s);
    uint64_t tx[8];
    for (int i = 0; i < 8; i++) {
        snprintf(buf, sizeof buf, "[{:order/id %d :order/amount %d}]", 10 + i, i);
        tx[i] = begin_edn(s, buf, 0);
    }
    dl__io_mem_fail_fsync(io, 1);
    dl_error_t err = {0};
    assert_int_equal(dl_store_wait_durable(s, tx[7], &err), DL_EIO);
    for (int i = 0; i < 8; i++)
        assert_int_equal(dl_store_wait_durable(s, tx[i], NULL), DL_EIO);
    assert_int_equal(seen.n, 3);
    assert_int_equal(basis(s), acked);
    char *now = st_dump(s);
    assert_string_equal(acked_dump, now);
    dl_free(now);
    /* closed for writing */
    assert_int_equal(st_tx(s, "[{:order/id 99 :order/amount 1}]", DL_EIO, NULL, NULL), DL_EIO);
    begin_edn(s, "[{:order/id 98 :order/amount 1}]", DL_EIO);
    dl_store_close(s);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 0);
    s = open_mem_durable(io);
    for (int i = 0; i < 3; i++)
        assert_int_equal(amount_of(s, i), i);
    uint64_t b = basis(s);
    assert_true(b >= acked && b <= tx[7]);
    for (int i = 0; i < 8; i++) /* in doubt: present (whole) exactly when within basis */
        assert_int_equal(amount_of(s, 10 + i), tx[i] <= b ? i : -1);
    dl_store_close(s);
    dl__io_mem_free(io);
    dl_free(acked_dump);
}

/* Random batches of valid and invalid transactions, waited for at random points, against
 * a naive model (order id -> amount); every acknowledged prefix agrees, listeners see
 * consecutive numbers, and a reopen after a power loss gives the same database. */
static void test_pipeline_random_batches_match_model(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("pipeline_random_batches");
    dl_rng_t r = {seed};
    long rounds = dl_prop_iters(60);
    enum { IDS = 40 };
    int64_t model[IDS], pending_model[IDS];
    for (int i = 0; i < IDS; i++)
        model[i] = pending_model[i] = -1;
    dl_io_t *io = mem_io();
    dl_store_t *s = open_mem_durable(io);
    seen_t *seen = calloc(1, sizeof *seen);
    pthread_mutex_init(&seen->mu, NULL);
    assert_int_equal(st_tx(s, SCHEMA, 0, NULL, NULL), 0);
    assert_int_equal(dl_store_listen(s, on_commit, seen, NULL, NULL), 0);
    uint64_t next_tx = basis(s) + 1, first = next_tx;
    char buf[256];
    for (long round = 0; round < rounds; round++) {
        int n = 1 + (int)dl_rng_below(&r, 24);
        uint64_t last = 0;
        for (int k = 0; k < n; k++) {
            int id = (int)dl_rng_below(&r, IDS);
            int64_t amt = (int64_t)dl_rng_below(&r, 1000);
            int kind = (int)dl_rng_below(&r, 10);
            if (kind == 0) { /* rejected: unknown attribute */
                snprintf(buf, sizeof buf, "[{:order/id %d :order/zzz 1}]", id);
                begin_edn(s, buf, DL_EUNKNOWN_ATTR);
            } else if (kind == 1) { /* rejected: cas against the pending state */
                snprintf(buf, sizeof buf, "[[:db/cas [:order/id %d] :order/amount %lld 1]]", id,
                         (long long)pending_model[id] + 1);
                begin_edn(s, buf, pending_model[id] < 0 ? DL_ENOTFOUND : DL_ECAS);
            } else if (kind == 2 && pending_model[id] >= 0) { /* retract the entity */
                snprintf(buf, sizeof buf, "[[:db/retractEntity [:order/id %d]]]", id);
                last = begin_edn(s, buf, 0);
                assert_int_equal(last, next_tx++);
                pending_model[id] = -1;
            } else if (kind == 3 && pending_model[id] >= 0) { /* cas on the pending state */
                snprintf(buf, sizeof buf, "[[:db/cas [:order/id %d] :order/amount %lld %lld]]", id,
                         (long long)pending_model[id], (long long)amt);
                last = begin_edn(s, buf, 0); /* the same value: no change, still a tx */
                assert_int_equal(last, next_tx++);
                pending_model[id] = amt;
            } else { /* upsert */
                snprintf(buf, sizeof buf, "[{:order/id %d :order/amount %lld}]", id,
                         (long long)amt);
                last = begin_edn(s, buf, 0);
                assert_int_equal(last, next_tx++);
                pending_model[id] = amt;
            }
            /* not acknowledged: the snapshot still shows the model */
            if (dl_rng_below(&r, 8) == 0) {
                int q = (int)dl_rng_below(&r, IDS);
                if (amount_of(s, q) != model[q])
                    dl_prop_fail("round %ld: order %d shows %lld before its wait, model %lld",
                                 round, q, (long long)amount_of(s, q), (long long)model[q]);
            }
        }
        if (last) {
            assert_int_equal(dl_store_wait_durable(s, last, NULL), 0);
            memcpy(model, pending_model, sizeof model);
        }
        for (int q = 0; q < IDS; q++)
            if (amount_of(s, q) != model[q])
                dl_prop_fail("round %ld: order %d is %lld, model %lld", round, q,
                             (long long)amount_of(s, q), (long long)model[q]);
        assert_int_equal(basis(s), next_tx - 1);
    }
    assert_int_equal(seen->n, next_tx - first);
    for (size_t i = 0; i < seen->n; i++)
        assert_int_equal(seen->tx[i], first + i);
    char *d1 = st_dump(s);
    dl_store_close(s);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 0);
    s = open_mem_durable(io);
    char *d2 = st_dump(s);
    assert_string_equal(d1, d2);
    dl_free(d1);
    dl_free(d2);
    dl_store_close(s);
    dl__io_mem_free(io);
    pthread_mutex_destroy(&seen->mu);
    free(seen);
}

/* Blocking writers on other threads while this thread begins batches and waits: every
 * transaction is published once, in order, and each caller's wait returns success. */
typedef struct writer {
    dl_store_t *s;
    int base, n;
} writer_t;

static void *blocking_writer(void *p) {
    writer_t *w = p;
    char buf[128];
    for (int i = 0; i < w->n; i++) {
        snprintf(buf, sizeof buf, "[{:order/id %d :order/amount %d}]", w->base + i, i);
        if (dl_store_transact_edn(w->s, buf, strlen(buf), NULL, NULL) != 0)
            return (void *)1;
    }
    return NULL;
}

static void test_pipeline_concurrent_blocking_and_batches(void **state) {
    (void)state;
    dl_io_t *io = mem_io();
    dl_store_t *s = open_mem_durable(io);
    seen_t *seen = calloc(1, sizeof *seen);
    pthread_mutex_init(&seen->mu, NULL);
    assert_int_equal(st_tx(s, SCHEMA, 0, NULL, NULL), 0);
    assert_int_equal(dl_store_listen(s, on_commit, seen, NULL, NULL), 0);
    uint64_t b0 = basis(s);
    enum { W = 3, PER = 60, BATCHES = 12, BSIZE = 10 };
    pthread_t th[W];
    writer_t w[W];
    for (int i = 0; i < W; i++) {
        w[i] = (writer_t){s, 1000 * (i + 1), PER};
        assert_int_equal(pthread_create(&th[i], NULL, blocking_writer, &w[i]), 0);
    }
    char buf[128];
    for (int b = 0; b < BATCHES; b++) {
        uint64_t last = 0;
        for (int k = 0; k < BSIZE; k++) {
            snprintf(buf, sizeof buf, "[{:order/id %d :order/amount %d}]", 10000 + b * BSIZE + k,
                     k);
            last = begin_edn(s, buf, 0);
        }
        assert_int_equal(dl_store_wait_durable(s, last, NULL), 0);
        assert_true(basis(s) >= last);
    }
    for (int i = 0; i < W; i++) {
        void *rv = NULL;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    uint64_t total = W * PER + BATCHES * BSIZE;
    assert_int_equal(basis(s), b0 + total);
    assert_int_equal(seen->n, total);
    for (size_t i = 0; i < seen->n; i++)
        assert_int_equal(seen->tx[i], b0 + 1 + i);
    assert_int_equal(amount_of(s, 1000 + PER - 1), PER - 1);
    assert_int_equal(amount_of(s, 10000 + BATCHES * BSIZE - 1), BSIZE - 1);
    dl_store_close(s);
    dl__io_mem_free(io);
    pthread_mutex_destroy(&seen->mu);
    free(seen);
}

DL_TEST_GROUP(pipeline, cmocka_unit_test(test_pipeline_rejected_in_the_middle),
              cmocka_unit_test(test_pipeline_wait_publishes_prefix_with_one_sync),
              cmocka_unit_test(test_pipeline_fsync_failure_fails_the_batch),
              cmocka_unit_test(test_pipeline_random_batches_match_model),
              cmocka_unit_test(test_pipeline_concurrent_blocking_and_batches));
