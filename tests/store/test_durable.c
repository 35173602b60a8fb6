/*
 * test_durable.c: the store over its durable log (store/durable.c with store/log.c):
 * everything committed is there after close and reopen (indices, history, schema, time
 * dimensions and frontiers, the entity allocator, the tx log), through the log alone and
 * through a checkpoint plus the log's tail; a rejected transaction never reaches the log;
 * four concurrent writers with group commit; a second process gets "locked by pid N".
 * Crash and fault injection of the log itself are the log's tests (test_crash.c).
 */
#include "store_test_util.h"

#include "store/store.h"

#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static char *tmpdir(void) {
    char *t = strdup("/tmp/dl-store-durable-XXXXXX");
    assert_non_null(mkdtemp(t));
    return t;
}

static dl_store_t *open_dir(const char *dir) {
    dl_store_t *s;
    dl_error_t err = {0};
    dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_NONE};
    int rc = dl_store_open(dir, &o, &s, &err);
    if (rc != 0)
        fail_msg("open %s: %s", dir, err.message);
    return s;
}

/* The dump plus the tx log's times, for comparing whole databases. */
static char *full_dump(dl_store_t *s) {
    char *d = st_dump(s);
    dl_db_t *db = dl_store_db(s);
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_puts(&b, d);
    dl_free(d);
    for (uint64_t tx = 1; tx <= dl_db_basis_tx(db); tx++) {
        uint64_t t[4] = {0};
        size_t n = dl_db_tx_time(db, tx, t, 4);
        dl__buf_printf(&b, "tx %llu:", (unsigned long long)tx);
        for (size_t i = 0; i < n && i < 4; i++)
            dl__buf_printf(&b, " %llu", (unsigned long long)t[i]);
        /* and its changes (the tx log), with the allocator after it */
        const dl_txrec_t *r = dl__store_txrec(s, tx);
        assert_non_null(r);
        dl__buf_printf(&b, " next %lld", (long long)r->next_id);
        for (size_t i = 0; i < r->n_changes; i++) {
            dl__buf_printf(&b, " [%lld %lld ", (long long)r->changes[i].e,
                           (long long)r->changes[i].a);
            dl__edn_print_value(r->changes[i].v, &b);
            dl__buf_printf(&b, " %lld]", (long long)r->changes[i].diff);
        }
        dl__buf_putc(&b, '\n');
    }
    uint64_t fr[4] = {0};
    size_t nf = dl_db_frontier(db, fr, 4);
    for (size_t i = 0; i < nf && i < 4; i++)
        dl__buf_printf(&b, "frontier %llu\n", (unsigned long long)fr[i]);
    dl_db_unref(db);
    return dl__buf_take(&b);
}

static void populate(dl_store_t *s) {
    assert_int_equal(st_tx(s,
                           "[{:db/ident :p/name :db/valueType :db.type/string :db/cardinality "
                           ":db.cardinality/one}"
                           " {:db/ident :p/email :db/valueType :db.type/string :db/cardinality "
                           ":db.cardinality/one :db/unique :db.unique/identity}"
                           " {:db/ident :p/tags :db/valueType :db.type/keyword :db/cardinality "
                           ":db.cardinality/many}"
                           " {:db/ident :p/score :db/valueType :db.type/double :db/cardinality "
                           ":db.cardinality/one :db/index true}"
                           " {:db/ident :p/friend :db/valueType :db.type/ref :db/cardinality "
                           ":db.cardinality/many}"
                           " {:db/ident :p/at :db/valueType :db.type/instant :db/cardinality "
                           ":db.cardinality/one}"
                           " {:db/ident :p/id :db/valueType :db.type/uuid :db/cardinality "
                           ":db.cardinality/one}"
                           " {:db/ident :p/ok :db/valueType :db.type/boolean :db/cardinality "
                           ":db.cardinality/one}"
                           " {:db/ident :time/shipped :db/timeDimension true}]",
                           0, NULL, NULL),
                     0);
    assert_int_equal(st_tx(s,
                           "[{:db/id \"a\" :p/name \"Ann\" :p/email \"a@x\" :p/tags #{:x :y} "
                           ":p/score 1.25 :p/at #inst \"2021-01-01T00:00:00Z\" :p/ok true "
                           ":p/id #uuid \"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\"}"
                           " {:db/id \"b\" :p/name \"Bob\" :p/friend \"a\"}"
                           " {:db/id \"datomic.tx\" :time/shipped 3}]",
                           0, NULL, NULL),
                     0);
    assert_int_equal(st_tx(s, "[[:db/add [:p/email \"a@x\"] :p/name \"Anna\"]]", 0, NULL, NULL), 0);
    uint64_t tx;
    dl_value_t dim;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "time/shipped", 12, &dim, NULL), 0);
    assert_int_equal(dl_store_advance(s, dim, 5, &tx, NULL), 0);
    assert_int_equal(st_tx(s, "[[:db/retract [:p/email \"a@x\"] :p/tags :x]]", 0, NULL, NULL), 0);
    assert_int_equal(st_tx(s, "[[:db/add :p/name :db/index true]]", 0, NULL, NULL), 0);
}

static void test_durable_reopen_is_identical(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s = open_dir(dir);
    populate(s);
    /* a rejected transaction must not reach the log */
    assert_int_equal(st_tx(s, "[[:db/add \"z\" :p/nope 1]]", DL_EUNKNOWN_ATTR, NULL, NULL),
                     DL_EUNKNOWN_ATTR);
    char *before = full_dump(s);
    dl_store_close(s);
    s = open_dir(dir);
    char *after = full_dump(s);
    assert_string_equal(before, after);
    /* the allocator continues: a new entity gets a fresh id */
    dl_tx_report_t r;
    assert_int_equal(st_tx(s, "[{:db/id \"c\" :p/name \"Cy\"}]", 0, &r, NULL), 0);
    int64_t c = st_tempid(&r, "c");
    dl_tx_report_fini(&r);
    dl_db_t *db = dl_store_db(s);
    dl_datom_t *ds;
    size_t nd;
    assert_int_equal(dl_db_entity(db, c, &ds, &nd, NULL), 0);
    assert_int_equal(nd, 1);
    dl_free(ds);
    dl_db_unref(db);
    /* and upserts still find the recovered identities */
    assert_int_equal(st_tx(s, "[{:p/email \"a@x\" :p/name \"Ann3\"}]", 0, &r, NULL), 0);
    assert_int_equal(r.n_datoms, 2);
    dl_tx_report_fini(&r);
    dl_free(before);
    dl_free(after);
    before = full_dump(s);
    dl_store_close(s);
    s = open_dir(dir);
    after = full_dump(s);
    assert_string_equal(before, after);
    dl_store_close(s);
    dl_free(before);
    dl_free(after);
    rm_rf(dir);
    free(dir);
}

static void test_durable_checkpoint_and_tail(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s = open_dir(dir);
    populate(s);
    dl_error_t err = {0};
    if (dl_store_checkpoint(s, &err) != 0)
        fail_msg("checkpoint: %s", err.message);
    assert_int_equal(st_tx(s, "[{:p/name \"after checkpoint\"}]", 0, NULL, NULL), 0);
    char *before = full_dump(s);
    dl_store_close(s);
    s = open_dir(dir);
    char *after = full_dump(s);
    assert_string_equal(before, after);
    /* a second checkpoint over a recovered store, then only the checkpoint */
    assert_int_equal(dl_store_checkpoint(s, &err), 0);
    dl_free(before);
    before = full_dump(s);
    dl_store_close(s);
    s = open_dir(dir);
    dl_free(after);
    after = full_dump(s);
    assert_string_equal(before, after);
    dl_store_close(s);
    dl_free(before);
    dl_free(after);
    /* in memory there is nothing to checkpoint */
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    assert_int_equal(dl_store_checkpoint(s, NULL), DL_EUNSUPPORTED);
    dl_store_close(s);
    rm_rf(dir);
    free(dir);
}

typedef struct wctx {
    dl_store_t *s;
    int id, n;
    int failures;
} wctx_t;

static void *writer(void *p) {
    wctx_t *w = p;
    for (int i = 0; i < w->n; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "[{:p/email \"w%d-%d@x\" :p/name \"n\"}]", w->id, i);
        if (dl_store_transact_edn(w->s, buf, strlen(buf), NULL, NULL) != 0)
            w->failures++;
    }
    return NULL;
}

static void test_durable_concurrent_writers_group_commit(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s;
    dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_EVERY};
    assert_int_equal(dl_store_open(dir, &o, &s, NULL), 0);
    populate(s);
    pthread_t th[4];
    wctx_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (wctx_t){s, i, 50, 0};
        pthread_create(&th[i], NULL, writer, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    char *before = full_dump(s);
    dl_store_close(s);
    s = open_dir(dir);
    char *after = full_dump(s);
    assert_string_equal(before, after);
    dl_db_t *db = dl_store_db(s);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 50; k += 7) {
            char em[32];
            snprintf(em, sizeof em, "w%d-%d@x", i, k);
            dl_value_t v;
            assert_int_equal(dl_value_text(DL_T_STRING, em, strlen(em), &v, NULL), 0);
            dl_attr_info_t ai;
            assert_int_equal(dl_db_attr(db, "p/email", &ai, NULL), 0);
            int64_t e;
            assert_int_equal(dl_db_lookup(db, ai.id, v, &e, NULL), 0);
        }
    dl_db_unref(db);
    dl_store_close(s);
    dl_free(before);
    dl_free(after);
    rm_rf(dir);
    free(dir);
}

static void test_durable_second_process_is_locked_out(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s = open_dir(dir);
    pid_t pid = fork();
    if (pid == 0) {
        dl_store_t *t;
        dl_error_t err = {0};
        int rc = dl_store_open(dir, NULL, &t, &err);
        _exit(rc == DL_ELOCKED && strstr(err.message, "locked by pid") ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    dl_store_close(s);
    rm_rf(dir);
    free(dir);
}

/* Background checkpoints at an interval: one appears while commits continue, and recovery
 * from it (plus the tail) is exact; with checkpoints_kept = 1 covered segments go away. */
static void test_durable_background_checkpoints(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s;
    dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_NONE,
                            .checkpoint_every = 5,
                            .checkpoints_kept = 1,
                            .segment_bytes = 4096};
    assert_int_equal(dl_store_open(dir, &o, &s, NULL), 0);
    populate(s);
    for (int i = 0; i < 40; i++) {
        char buf[320];
        snprintf(buf, sizeof buf, "[{:p/email \"bg%d@x\" :p/name \"%0200d\"}]", i, i);
        assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    }
    /* wait (bounded) for the checkpointer: an asynchronous effect, not a race to win */
    dl_store_stats_t st;
    for (int i = 0; i < 2000; i++) {
        dl_store_stats(s, &st);
        if (st.checkpoint_tx >= 20)
            break;
        usleep(5000);
    }
    assert_true(st.checkpoint_tx >= 20);
    char *before = full_dump(s);
    dl_store_close(s);
    s = open_dir(dir);
    char *after = full_dump(s);
    assert_string_equal(before, after);
    dl_store_close(s);
    dl_free(before);
    dl_free(after);
    rm_rf(dir);
    free(dir);
}

/* fsck: clean after checkpoints and a tail; the log-only rebuild matches the checkpoint;
 * a flipped byte in a segment is reported with its file. */
static void test_durable_fsck(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s = open_dir(dir);
    populate(s);
    assert_int_equal(dl_store_checkpoint(s, NULL), 0);
    assert_int_equal(st_tx(s, "[{:p/name \"tail\"}]", 0, NULL, NULL), 0);
    dl_store_stats_t st;
    dl_store_stats(s, &st);
    dl_error_t err = {0};
    /* while open, fsck is locked out */
    assert_int_equal(dl_store_fsck(dir, NULL, &err), DL_ELOCKED);
    dl_store_close(s);
    dl_store_fsck_t f;
    dl_error_clear(&err);
    if (dl_store_fsck(dir, &f, &err) != 0)
        fail_msg("fsck: %s", err.message);
    assert_int_equal(f.problems, 0);
    assert_true(f.compared);
    assert_int_equal(f.last_tx, st.last_tx);
    assert_int_equal(f.datoms, st.datoms);
    /* flip a byte in the middle of the first segment */
    DIR *d = opendir(dir);
    struct dirent *e;
    char seg[4096] = "";
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "log-", 4) == 0 && !seg[0])
            snprintf(seg, sizeof seg, "%s/%s", dir, e->d_name);
    closedir(d);
    assert_true(seg[0]);
    FILE *fp = fopen(seg, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, size / 2, SEEK_SET);
    int c = fgetc(fp);
    fseek(fp, size / 2, SEEK_SET);
    fputc(c ^ 0x10, fp);
    fclose(fp);
    dl_error_clear(&err);
    assert_int_equal(dl_store_fsck(dir, &f, &err), DL_ECORRUPT);
    assert_true(f.problems > 0);
    assert_non_null(strstr(f.first_problem, "log-"));
    rm_rf(dir);
    free(dir);
}

/* The checkpoint's path with the highest (newest = 1) or lowest (newest = 0) covers tx in
 * dir, into out; false when there is none. */
static bool ckpt_path(const char *dir, bool newest, char *out, size_t cap) {
    DIR *d = opendir(dir);
    char best[256] = "";
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        if (!strstr(e->d_name, ".dlck"))
            continue;
        if (!best[0] || (newest ? strcmp(e->d_name, best) > 0 : strcmp(e->d_name, best) < 0))
            snprintf(best, sizeof best, "%s", e->d_name);
    }
    if (d)
        closedir(d);
    if (!best[0])
        return false;
    snprintf(out, cap, "%s/%s", dir, best);
    return true;
}

static long file_len(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Damaged index checkpoints (payload version 2): a bit flip in, or a torn end of, the
 * newest checkpoint falls back to the older one plus the log (the same database); with
 * no intact checkpoint the open fails with DL_ECORRUPT naming the file. A noHistory
 * attribute makes some transactions' changes absent from the indices: the checkpoint
 * carries them (explicit records) and the reopened tx log has them. */
static void test_durable_checkpoint_damage(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s;
    dl_store_options_t o2 = {.sync_mode = DL_STORE_SYNC_NONE, .checkpoints_kept = 2};
    assert_int_equal(dl_store_open(dir, &o2, &s, NULL), 0);
    populate(s);
    assert_int_equal(st_tx(s,
                           "[{:db/ident :p/seen :db/valueType :db.type/long :db/cardinality "
                           ":db.cardinality/one :db/noHistory true}]",
                           0, NULL, NULL),
                     0);
    assert_int_equal(st_tx(s, "[[:db/add [:p/email \"a@x\"] :p/seen 1]]", 0, NULL, NULL), 0);
    assert_int_equal(st_tx(s, "[[:db/add [:p/email \"a@x\"] :p/seen 2]]", 0, NULL, NULL), 0);
    assert_int_equal(dl_store_checkpoint(s, NULL), 0);
    assert_int_equal(
        st_tx(s, "[[:db/add [:p/email \"a@x\"] :p/seen 3] {:p/name \"Cy\"}]", 0, NULL, NULL), 0);
    assert_int_equal(dl_store_checkpoint(s, NULL), 0);
    char *before = full_dump(s);
    dl_store_close(s);
    char newest[512], oldest[512];
    assert_true(ckpt_path(dir, true, newest, sizeof newest));
    assert_true(ckpt_path(dir, false, oldest, sizeof oldest));
    assert_string_not_equal(newest, oldest);
    /* keep the intact newest to restore it between cases */
    long n = file_len(newest);
    uint8_t *orig = malloc((size_t)n);
    FILE *f = fopen(newest, "rb");
    assert_int_equal(fread(orig, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    for (int c = 0; c < 3; c++) {
        f = fopen(newest, "wb");
        if (c == 0) { /* a bit flip in the body */
            uint8_t *m = malloc((size_t)n);
            memcpy(m, orig, (size_t)n);
            m[48 + (n - 48) / 2] ^= 0x10;
            assert_int_equal(fwrite(m, 1, (size_t)n, f), (size_t)n);
            free(m);
        } else if (c == 1) { /* torn: only the first half reached the disk */
            assert_int_equal(fwrite(orig, 1, (size_t)n / 2, f), (size_t)n / 2);
        } else { /* intact */
            assert_int_equal(fwrite(orig, 1, (size_t)n, f), (size_t)n);
        }
        fclose(f);
        assert_int_equal(dl_store_open(dir, &o2, &s, NULL), 0);
        char *after = full_dump(s);
        assert_string_equal(before, after);
        dl_free(after);
        dl_store_close(s);
    }
    /* both damaged: a precise error naming the newest file */
    f = fopen(newest, "wb");
    assert_int_equal(fwrite(orig, 1, (size_t)n / 3, f), (size_t)n / 3);
    fclose(f);
    assert_int_equal(unlink(oldest), 0);
    dl_store_t *s2 = NULL;
    dl_error_t err = {0};
    dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_NONE};
    assert_int_equal(dl_store_open(dir, &o, &s2, &err), DL_ECORRUPT);
    assert_non_null(strstr(err.message, strrchr(newest, '/') + 1));
    free(orig);
    dl_free(before);
    rm_rf(dir);
    free(dir);
}

/* Default retention: one checkpoint, the previous one and the covered segments removed
 * once the new one is verified; the reopened database is the same. */
static void test_durable_default_retention(void **state) {
    (void)state;
    char *dir = tmpdir();
    dl_store_t *s = open_dir(dir);
    populate(s);
    assert_int_equal(dl_store_checkpoint(s, NULL), 0);
    assert_int_equal(st_tx(s, "[{:p/name \"Cy\"}]", 0, NULL, NULL), 0);
    assert_int_equal(dl_store_checkpoint(s, NULL), 0);
    assert_int_equal(st_tx(s, "[{:p/name \"Di\"}]", 0, NULL, NULL), 0);
    dl_store_stats_t st;
    dl_store_stats(s, &st);
    char *before = full_dump(s);
    dl_store_close(s);
    int n_ckpt = 0, n_seg = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        n_ckpt += strstr(e->d_name, ".dlck") != NULL;
        n_seg += strstr(e->d_name, ".dlog") != NULL;
    }
    closedir(d);
    assert_int_equal(n_ckpt, 1);
    assert_int_equal(n_seg, 1); /* only the segment after the checkpoint (the tail) */
    assert_int_equal(st.checkpoint_tx + 1, st.last_tx);
    s = open_dir(dir);
    char *after = full_dump(s);
    assert_string_equal(before, after);
    dl_store_close(s);
    dl_free(before);
    dl_free(after);
    rm_rf(dir);
    free(dir);
}

/* The version-2 payload decoder against mutated payloads (bit flips, truncations, random
 * bytes; the file checksums would normally stop these first): every load returns 0 or an
 * error, never crashes or leaks (ASan), and a successful load yields valid trees. The
 * intact payload loads into the same database. */
static void test_durable_checkpoint_payload_mutations(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("store.durable_checkpoint_payload_mutations");
    dl_rng_t rng = {seed};
    dl_store_t *s;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    populate(s);
    assert_int_equal(st_tx(s,
                           "[{:db/ident :p/seen :db/valueType :db.type/long :db/cardinality "
                           ":db.cardinality/one :db/noHistory true}]",
                           0, NULL, NULL),
                     0);
    for (int i = 0; i < 20; i++) {
        char tx[160];
        snprintf(tx, sizeof tx, "[[:db/add [:p/email \"a@x\"] :p/seen %d] {:p/name \"n%d\"}]", i,
                 i % 7);
        assert_int_equal(st_tx(s, tx, 0, NULL, NULL), 0);
    }
    void *blob;
    size_t n;
    assert_int_equal(dl__durable_encode_indices(s, &blob, &n, NULL), 0);
    dl_store_stats_t st;
    dl_store_stats(s, &st);
    dl_store_t *t;
    assert_int_equal(dl__store_new(&t, NULL), 0);
    dl_error_t err = {0};
    if (dl__durable_load_indices(t, st.last_tx, blob, n, &err) != 0)
        fail_msg("intact payload: %s", err.message);
    char *a = full_dump(s), *b = full_dump(t);
    assert_string_equal(a, b);
    dl_free(a);
    dl_free(b);
    dl_store_close(t);
    long iters = dl_prop_iters(300), ok = 0, corrupt = 0;
    uint8_t *m = malloc(n);
    for (long it = 0; it < iters; it++) {
        memcpy(m, blob, n);
        size_t len = n;
        switch (dl_rng_below(&rng, 3)) {
            case 0:
                for (int k = 0, f = 1 + (int)dl_rng_below(&rng, 3); k < f; k++)
                    m[1 + dl_rng_below(&rng, n - 1)] ^= (uint8_t)(1u << dl_rng_below(&rng, 8));
                break;
            case 1:
                len = 1 + dl_rng_below(&rng, n - 1);
                break;
            default:
                m[1 + dl_rng_below(&rng, n - 1)] = (uint8_t)dl_rng_next(&rng);
                break;
        }
        assert_int_equal(dl__store_new(&t, NULL), 0);
        dl_error_t e = {0};
        int rc = dl__durable_load_indices(t, st.last_tx, m, len, &e);
        if (rc == 0) {
            ok++;
            for (int i = 0; i < DL_N_TREES; i++)
                assert_true(dl__btree_check(&t->trees[i]) >= 0);
        } else {
            if (rc != DL_ECORRUPT)
                fail_msg("mutation %ld: %s (%s)", it, dl_err_name(rc), e.message);
            corrupt++;
        }
        dl_store_close(t);
    }
    print_message("%ld mutations: %ld loaded, %ld DL_ECORRUPT\n", iters, ok, corrupt);
    assert_true(corrupt > iters / 2);
    free(m);
    dl_free(blob);
    dl_store_close(s);
}

DL_TEST_GROUP(durable, cmocka_unit_test(test_durable_checkpoint_payload_mutations),
              cmocka_unit_test(test_durable_default_retention),
              cmocka_unit_test(test_durable_checkpoint_damage), cmocka_unit_test(test_durable_fsck),
              cmocka_unit_test(test_durable_background_checkpoints),
              cmocka_unit_test(test_durable_reopen_is_identical),
              cmocka_unit_test(test_durable_checkpoint_and_tail),
              cmocka_unit_test(test_durable_concurrent_writers_group_commit),
              cmocka_unit_test(test_durable_second_process_is_locked_out));
