/*
 * test_recovery.c: the store (not only the log) survives SIGKILL. A child process
 * transacts transfers between accounts in a loop (sync every commit), reporting each
 * acknowledged transaction number through a pipe; the parent kills it at a random moment,
 * reopens the directory and checks: every acknowledged transaction is present, no partial
 * transaction is visible (the balances always sum to the same total, each account has
 * exactly one balance), the indices are consistent with each other, and the store accepts
 * new transactions. Repeated 100 times on one directory (with a checkpoint now and then),
 * so recovery also runs over checkpoints and earlier recoveries.
 */
#include "store_test_util.h"

#include "store/store.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define N_ACCT 5
#define TOTAL  (N_ACCT * 1000)

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

static int64_t acct_attr(dl_db_t *db) {
    dl_attr_info_t ai;
    return dl_db_attr(db, "acct/bal", &ai, NULL) == 0 ? ai.id : 0;
}

/* Checks the invariants; returns the number of accounts seen. */
static int check_db(dl_store_t *s, int64_t *ids, int64_t *bal) {
    dl_db_t *db = dl_store_db(s);
    int64_t a = acct_attr(db);
    int n = 0;
    int64_t total = 0;
    if (a) {
        dl_datom_t p = {.a = a};
        dl_iter_t *it;
        assert_int_equal(dl_db_datoms(db, DL_INDEX_AEVT, &p, 1, NULL, &it, NULL), 0);
        dl_datom_t d;
        int64_t last_e = 0;
        while (dl_iter_next(it, &d)) {
            assert_true(d.e != last_e); /* one balance per account */
            last_e = d.e;
            if (n < N_ACCT) {
                ids[n] = d.e;
                bal[n] = d.v.as.i;
            }
            n++;
            total += d.v.as.i;
        }
        dl_iter_free(it);
        if (n)
            assert_int_equal(total, TOTAL);
    }
    /* every tree keeps its invariants and EAVT/AEVT hold the same datoms */
    for (int i = 0; i < DL_N_TREES; i++)
        assert_true(dl__btree_check(&db->v->trees[i]) >= 0);
    assert_int_equal(db->v->trees[DL_T_CUR + DL_ORD_EAVT].count,
                     db->v->trees[DL_T_CUR + DL_ORD_AEVT].count);
    dl_db_unref(db);
    return n;
}

static void child(const char *dir, int fd, uint64_t seed) {
    dl_store_t *s;
    /* odd rounds also checkpoint in the background every few transactions, so that
     * kills land during background checkpoints (the parent counts the .tmp files left) */
    dl_store_options_t o = {.sync_mode = DL_STORE_SYNC_EVERY,
                            .segment_bytes = 16384,
                            .checkpoint_every = seed % 2 ? 3 + seed % 8 : 0};
    if (dl_store_open(dir, &o, &s, NULL) != 0)
        _exit(3);
    int64_t ids[N_ACCT], bal[N_ACCT];
    int n = check_db(s, ids, bal);
    if (n == 0) {
        char buf[512];
        int k = snprintf(buf, sizeof buf,
                         "[{:db/ident :acct/bal :db/valueType :db.type/long :db/cardinality "
                         ":db.cardinality/one}]");
        dl_tx_report_t r;
        if (dl_store_transact_edn(s, buf, (size_t)k, &r, NULL) != 0)
            _exit(4);
        dl_tx_report_fini(&r);
        k = snprintf(buf, sizeof buf, "[");
        for (int i = 0; i < N_ACCT; i++)
            k += snprintf(buf + k, sizeof buf - (size_t)k, "{:acct/bal %d}", TOTAL / N_ACCT);
        snprintf(buf + k, sizeof buf - (size_t)k, "]");
        if (dl_store_transact_edn(s, buf, strlen(buf), &r, NULL) != 0)
            _exit(5);
        uint64_t tx = r.tx;
        dl_tx_report_fini(&r);
        if (write(fd, &tx, sizeof tx) != sizeof tx)
            _exit(6);
        n = check_db(s, ids, bal);
    }
    dl_rng_t rng = {seed};
    for (;;) {
        int from = (int)dl_rng_below(&rng, N_ACCT), to = (from + 1) % N_ACCT;
        int64_t amt = (int64_t)dl_rng_below(&rng, 50);
        char buf[160];
        snprintf(buf, sizeof buf,
                 "[[:db/cas %lld :acct/bal %lld %lld] [:db/add %lld :acct/bal %lld]]",
                 (long long)ids[from], (long long)bal[from], (long long)(bal[from] - amt),
                 (long long)ids[to], (long long)(bal[to] + amt));
        dl_tx_report_t r;
        if (dl_store_transact_edn(s, buf, strlen(buf), &r, NULL) != 0)
            _exit(7);
        bal[from] -= amt;
        bal[to] += amt;
        uint64_t tx = r.tx;
        dl_tx_report_fini(&r);
        if (dl_rng_below(&rng, 40) == 0 && dl_store_checkpoint(s, NULL) != 0)
            _exit(8);
        /* acknowledged: report it */
        if (write(fd, &tx, sizeof tx) != sizeof tx)
            _exit(6);
    }
}

static void test_recovery_sigkill_loop(void **state) {
    (void)state;
    char dir[] = "/tmp/dl-store-recovery-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint64_t seed = dl_prop_seed("store.recovery_sigkill_loop");
    dl_rng_t rng = {seed};
    long rounds = dl_prop_iters(100);
    uint64_t acked = 0;
    bool accounts = false;  /* the accounts' creation was acknowledged or seen */
    long kills_in_ckpt = 0; /* kills that left a checkpoint half written */
    for (long round = 0; round < rounds; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            child(dir, fds[1], seed + (uint64_t)round);
        }
        close(fds[1]);
        /* let it run for a random while, then kill it without warning */
        struct timespec ts = {0, (long)(5 + dl_rng_below(&rng, 40)) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            dl_prop_fail("round %ld: child exited with %d before the kill", round,
                         WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        DIR *dd = opendir(dir);
        for (struct dirent *e; dd && (e = readdir(dd)) != NULL;)
            kills_in_ckpt += strstr(e->d_name, ".tmp") != NULL;
        if (dd)
            closedir(dd);
        uint64_t tx;
        while (read(fds[0], &tx, sizeof tx) == sizeof tx) {
            accounts = true; /* every reported tx comes after the accounts */
            if (tx > acked)
                acked = tx;
        }
        close(fds[0]);
        /* reopen: everything acknowledged is there, nothing half */
        dl_store_t *s;
        dl_error_t err = {0};
        if (dl_store_open(dir, NULL, &s, &err) != 0)
            dl_prop_fail("round %ld: reopen: %s", round, err.message);
        dl_db_t *db = dl_store_db(s);
        uint64_t basis = dl_db_basis_tx(db);
        dl_db_unref(db);
        if (basis < acked)
            dl_prop_fail("round %ld: acknowledged tx %llu lost (basis %llu)", round,
                         (unsigned long long)acked, (unsigned long long)basis);
        int64_t ids[N_ACCT], bal[N_ACCT];
        int n = check_db(s, ids, bal);
        if (accounts && n != N_ACCT)
            dl_prop_fail("round %ld: %d accounts after recovery (acked %llu, basis %llu)", round, n,
                         (unsigned long long)acked, (unsigned long long)basis);
        if (n != 0 && n != N_ACCT)
            dl_prop_fail("round %ld: %d accounts: half a transaction", round, n);
        accounts |= n == N_ACCT;
        dl_store_close(s);
        acked = basis; /* a transaction in doubt that survived is now the floor */
    }
    fprintf(stderr,
            "recovery: %ld kills (%ld during a checkpoint write), %llu transactions survived\n",
            rounds, kills_in_ckpt, (unsigned long long)acked);
    assert_true(accounts && acked > (uint64_t)rounds); /* the children did make progress */
    rm_rf(dir);
}

DL_TEST_GROUP(recovery, cmocka_unit_test(test_recovery_sigkill_loop));
