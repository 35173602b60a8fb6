/*
 * test_crash.c: crash safety of the durable log (store/log.h), at the log level (records
 * are opaque payloads; the store-level version belongs to the store's own tests).
 *   - Simulated power loss through the in-memory I/O table: unsynced data dropped, torn
 *     tails, failed writes and fsyncs at every position; after each, the reopened log
 *     holds every acknowledged record intact and nothing partial.
 *   - Bit flips in segments and checkpoints: a precise DL_ECORRUPT naming file and
 *     offset, or (only for the header of the very last record) a truncation; never a
 *     crash and never silently different contents.
 *   - Real process crashes: a child appends with sync-every-commit and reports each
 *     acknowledged tx on a pipe; the parent SIGKILLs it at random moments (>= 100
 *     times) and checks the log after each.
 */
#include "tests/harness/dl_test.h"

#include "store/log.h"

#include <deltalog/alloc.h>

#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* The payload of tx: a W2-like order, sometimes padded (up to cap bytes). */
static size_t payload(uint64_t tx, uint8_t *buf, size_t cap) {
    dl_rng_t r = {tx * 104729 + 17};
    int n = snprintf((char *)buf, cap,
                     "{\"order\":%" PRIu64 ",\"customer\":%" PRIu64 ",\"amount\":%" PRIu64 "}", tx,
                     dl_rng_below(&r, 1000), dl_rng_below(&r, 100000));
    size_t len = (size_t)n, extra = dl_rng_below(&r, 8) == 0 ? dl_rng_below(&r, cap) : 20;
    if (len + extra > cap)
        extra = cap - len;
    for (size_t i = 0; i < extra; i++)
        buf[len + i] = (uint8_t)(dl_rng_below(&r, 4) == 0 ? dl_rng_next(&r) : 'x');
    return len + extra;
}

#define CAP 3000

/* The checkpoint blob for covers: its own number, repeated. */
static void ckpt_blob(uint64_t covers, uint64_t *blob, size_t n) {
    for (size_t i = 0; i < n; i++)
        blob[i] = covers * 1000003 + i;
}

/* Replay checker: records must be exactly from, from+1, ... with their payloads. */
typedef struct check {
    uint64_t next;
    uint8_t buf[CAP];
} check_t;

static int check_cb(void *ctx, uint64_t tx, const void *p, size_t n) {
    check_t *c = ctx;
    if (tx != c->next)
        return -1000;
    size_t want = payload(tx, c->buf, CAP);
    if (want != n || memcmp(p, c->buf, n) != 0)
        return -1001;
    c->next++;
    return 0;
}

/* Opens dir after a crash and verifies: the checkpoint (if any) is intact, the log after
 * it is contiguous with correct payloads, and reaches at least `acked`. Returns the last
 * tx present; the log is left open in *out. */
static uint64_t verify_reopen(const char *dir, const dl_log_options_t *opt, uint64_t acked,
                              dl_log_t **out) {
    dl_log_t *log = NULL;
    dl_error_t err = {0};
    int rc = dl__log_open(dir, opt, &log, &err);
    if (rc)
        dl_prop_fail("reopen after crash: %d %s", rc, err.message);
    uint64_t covers = 0;
    void *blob = NULL;
    size_t n = 0;
    rc = dl__log_checkpoint_read(log, &covers, &blob, &n, &err);
    if (rc == 0) {
        uint64_t want[64];
        ckpt_blob(covers, want, 64);
        if (n != sizeof want || memcmp(blob, want, n) != 0)
            dl_prop_fail("checkpoint %" PRIu64 " has different contents", covers);
        dl_free(blob);
    } else if (rc != DL_ENOTFOUND) {
        dl_prop_fail("checkpoint read: %d %s", rc, err.message);
    }
    check_t *c = dl_malloc(sizeof *c);
    c->next = covers + 1;
    rc = dl__log_replay(log, covers, check_cb, c, &err);
    if (rc)
        dl_prop_fail("replay after crash: rc %d (%s) at tx %" PRIu64, rc, err.message, c->next);
    uint64_t last = c->next - 1;
    dl_free(c);
    if (last < acked)
        dl_prop_fail("acknowledged tx %" PRIu64 " lost (log ends at %" PRIu64 ")", acked, last);
    dl_log_stats_t st;
    dl__log_stats(log, &st);
    if (st.last_tx != last)
        dl_prop_fail("stats.last_tx %" PRIu64 " but replay ends at %" PRIu64, st.last_tx, last);
    *out = log;
    return last;
}

/* Appends tx with its payload and syncs; 0 when acknowledged. */
static int commit(dl_log_t *log, uint64_t tx, bool sync, dl_error_t *err) {
    uint8_t buf[CAP];
    size_t n = payload(tx, buf, CAP);
    uint64_t lsn = 0;
    int rc = dl__log_append(log, tx, buf, n, &lsn, err);
    if (!rc && sync)
        rc = dl__log_sync(log, lsn, err);
    return rc;
}

static void test_crash_drop_unsynced(void **state) {
    (void)state;
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    dl_log_options_t opt = {.io = io}; /* one segment: rotation would fsync */
    dl_log_t *log = NULL;
    assert_int_equal(dl__log_open("/db", &opt, &log, NULL), 0);
    for (uint64_t tx = 1; tx <= 100; tx++)
        assert_int_equal(commit(log, tx, true, NULL), 0);
    /* Appended but never synced: enough to be written to the OS, not fsynced. */
    dl_io_mem_stats_t before, after;
    dl__io_mem_stats(io, &before);
    for (uint64_t tx = 101; tx <= 3000; tx++)
        assert_int_equal(commit(log, tx, false, NULL), 0);
    dl__io_mem_stats(io, &after);
    assert_true(after.writes > before.writes);
    assert_int_equal(after.fsyncs, before.fsyncs);
    dl__log_abandon(log);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 0);
    uint64_t last = verify_reopen("/db", &opt, 100, &log);
    /* Everything not fsynced is gone: exactly the acknowledged records remain. */
    assert_int_equal(last, 100);
    dl__log_close(log);
    dl__io_mem_free(io);
}

static void test_crash_torn_tails_property(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("crash_torn_tails_property");
    dl_rng_t r = {seed};
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    dl_log_options_t opt = {.io = io, .segment_bytes = 16 << 10};
    uint64_t acked = 0, next = 1;
    long iters = dl_prop_iters(150);
    uint64_t truncations = 0, cuts = 0;
    for (long it = 0; it < iters; it++) {
        dl_log_t *log = NULL;
        uint64_t last = verify_reopen("/db", &opt, acked, &log);
        dl_log_stats_t st;
        dl__log_stats(log, &st);
        truncations += st.torn_chunks > 0;
        next = last + 1;
        /* Open makes what it recovered durable (it fsyncs the last segment), so every
         * record present now is promised from here on. */
        acked = last;
        /* Sessions in batched mode write to the OS without fsync (batch_ms is long):
         * their commits are not promised across a power loss, and their unsynced
         * written tails are what a TEAR crash tears. */
        bool batched = dl_rng_below(&r, 5) < 2;
        /* Half of the sessions use the store's retention (eager, one checkpoint kept),
         * and their checkpoints may cover everything appended (active segment rotated
         * and removed). */
        bool eager = dl_rng_below(&r, 2) == 0;
        if (batched || eager) {
            dl__log_close(log);
            dl_log_options_t bopt = opt;
            if (batched) {
                bopt.sync_mode = DL_SYNC_BATCHED;
                bopt.batch_ms = 100000;
            }
            bopt.eager_retention = eager;
            bopt.checkpoints_kept = eager ? 1 : 0;
            assert_int_equal(dl__log_open("/db", &bopt, &log, NULL), 0);
        }
        /* A third of the sessions end with a power cut in the middle of their work:
         * from a random change on, nothing more reaches the "disk". */
        bool cut = dl_rng_below(&r, 3) == 0;
        if (cut)
            dl__io_mem_halt_after(io, 1 + (int64_t)dl_rng_below(&r, 60));
        int ops = 1 + (int)dl_rng_below(&r, 40);
        for (int k = 0; k < ops; k++) {
            uint64_t what = dl_rng_below(&r, 10);
            int rc = 0;
            if (what < 6) {
                rc = commit(log, next, true, NULL);
                if (rc == 0 && !batched)
                    acked = next;
                next++;
            } else if (what < 9) {
                rc = commit(log, next++, false, NULL);
            } else {
                uint64_t blob[64];
                uint64_t covers = next - 1 - dl_rng_below(&r, 3);
                if ((eager || covers + 3 < next) && covers > 0 && covers < next) {
                    ckpt_blob(covers, blob, 64);
                    rc = dl__log_checkpoint_write(log, covers, blob, sizeof blob, NULL);
                    /* A checkpoint syncs the log first: everything so far is durable. */
                    if (rc == 0)
                        acked = next - 1;
                }
            }
            if (rc) {
                /* Only the power cut makes anything fail here. */
                if (!cut || rc != DL_EIO)
                    dl_prop_fail("session op failed without a power cut: %d", rc);
                cuts++;
                break;
            }
        }
        dl__log_abandon(log);
        dl__io_mem_crash(io, dl_rng_below(&r, 2) ? DL_IO_CRASH_TEAR : DL_IO_CRASH_DROP,
                         dl_rng_next(&r));
    }
    dl_log_t *log = NULL;
    verify_reopen("/db", &opt, acked, &log);
    dl__log_close(log);
    print_message("%ld crashes (%" PRIu64 " cutting an operation short), %" PRIu64
                  " torn chunks truncated\n",
                  iters, cuts, truncations);
    assert_true(truncations > 0);
    assert_true(cuts > 0);
    dl__io_mem_free(io);
}

/* Fails the n-th write (or fsync) of a session of commits and checks what survives. */
static void fault_run(bool fsync_fault, int64_t n, size_t torn, uint64_t seed) {
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    dl_log_options_t opt = {.io = io, .segment_bytes = 8 << 10};
    dl_log_t *log = NULL;
    assert_int_equal(dl__log_open("/db", &opt, &log, NULL), 0);
    for (uint64_t tx = 1; tx <= 20; tx++)
        assert_int_equal(commit(log, tx, true, NULL), 0);
    uint64_t acked = 20, tx = 21;
    if (fsync_fault)
        dl__io_mem_fail_fsync(io, n);
    else
        dl__io_mem_fail_write(io, n, torn);
    dl_error_t err = {0};
    int rc = 0;
    for (; tx < 200 && rc == 0; tx++) {
        rc = commit(log, tx, true, &err);
        if (rc == 0)
            acked = tx;
    }
    assert_int_equal(rc, DL_EIO);
    assert_non_null(strstr(err.message, "injected"));
    /* The handle stays failed: nothing more is accepted. */
    dl_error_clear(&err);
    assert_int_equal(commit(log, tx, true, &err), DL_EIO);
    assert_non_null(strstr(err.message, "reopen"));
    dl__log_abandon(log);
    dl__io_mem_crash(io, DL_IO_CRASH_TEAR, seed);
    uint64_t last = verify_reopen("/db", &opt, acked, &log);
    /* And the log works again after recovery. */
    assert_int_equal(commit(log, last + 1, true, NULL), 0);
    dl__log_close(log);
    dl__io_mem_free(io);
}

static void test_crash_failed_writes(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("crash_failed_writes");
    for (int64_t n = 1; n <= 40; n++)
        fault_run(false, n, (size_t)(n % 3) * 50, seed + (uint64_t)n);
}

static void test_crash_failed_fsyncs(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("crash_failed_fsyncs");
    for (int64_t n = 1; n <= 40; n++)
        fault_run(true, n, 0, seed + (uint64_t)n);
}

/* ---- torn last record, bit flips ---------------------------------------------------- */

typedef struct names {
    char v[64][64];
    int n;
} names_t;

static int names_cb(void *ctx, const char *name) {
    names_t *ns = ctx;
    if (ns->n < 64 && (strstr(name, ".dlog") || strstr(name, ".dlck")))
        snprintf(ns->v[ns->n++], 64, "%s", name);
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(a, b); }

static void list_files(dl_io_t *io, const char *dir, names_t *ns) {
    ns->n = 0;
    assert_int_equal(io->list(io, dir, names_cb, ns, NULL), 0);
    qsort(ns->v, (size_t)ns->n, sizeof ns->v[0], cmp_names);
}

/* Chunk start offsets of a segment image (walking the documented framing: hcrc 4,
 * bcrc 4, varint body_len, then four more varints, then the body). */
static int chunk_offsets(dl_io_t *io, const char *path, uint64_t *offs, int cap) {
    dl_io_file_t *f = NULL;
    assert_int_equal(io->open(io, path, DL_IO_READ, &f, NULL), 0);
    uint64_t size = 0, off = 32;
    assert_int_equal(io->size(f, &size, NULL), 0);
    int n = 0;
    while (off + 13 <= size && n < cap) {
        uint8_t h[64];
        size_t got, pos = 8;
        assert_int_equal(io->pread(f, h, sizeof h, off, &got, NULL), 0);
        uint64_t v[5] = {0};
        for (int k = 0; k < 5; k++)
            for (int shift = 0; pos < got; shift += 7) {
                v[k] |= (uint64_t)(h[pos] & 0x7f) << shift;
                if (!(h[pos++] & 0x80))
                    break;
            }
        offs[n++] = off;
        off += pos + v[0];
    }
    io->close(f);
    return n;
}

/* Builds /db with 60 records over several segments and two checkpoints. */
static dl_io_t *build_db(dl_log_options_t *opt) {
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    /* Sync every commit: one chunk per record. */
    *opt = (dl_log_options_t){.io = io, .segment_bytes = 4 << 10};
    dl_log_t *log = NULL;
    assert_int_equal(dl__log_open("/db", opt, &log, NULL), 0);
    uint64_t blob[64];
    for (uint64_t tx = 1; tx <= 60; tx++) {
        assert_int_equal(commit(log, tx, true, NULL), 0);
        if (tx == 20 || tx == 30) {
            ckpt_blob(tx, blob, 64);
            assert_int_equal(dl__log_checkpoint_write(log, tx, blob, sizeof blob, NULL), 0);
        }
    }
    dl__log_close(log);
    return io;
}

static void test_crash_torn_last_record(void **state) {
    (void)state;
    dl_log_options_t opt;
    dl_io_t *io = build_db(&opt);
    names_t ns;
    list_files(io, "/db", &ns);
    char last[128];
    snprintf(last, sizeof last, "/db/%s", ns.v[ns.n - 1]); /* log-* sort after ckpt-* */
    uint64_t offs[256];
    int n = chunk_offsets(io, last, offs, 256);
    assert_true(n >= 2);
    uint64_t size = 0;
    assert_int_equal(dl__io_mem_file_size(io, last, &size), 0);
    /* Cut the last record in the middle, durably (a torn append that reached disk). */
    dl_io_file_t *f = NULL;
    uint64_t cut = offs[n - 1] + (size - offs[n - 1]) / 2;
    assert_int_equal(io->open(io, last, DL_IO_WRITE, &f, NULL), 0);
    assert_int_equal(io->ftruncate(f, cut, NULL), 0);
    assert_int_equal(io->fsync(f, NULL), 0);
    io->close(f);
    dl_log_fsck_t r;
    assert_int_equal(dl__log_fsck("/db", io, &r, NULL), 0);
    assert_int_equal(r.torn_tail_bytes, cut - offs[n - 1]);
    dl_log_t *log = NULL;
    uint64_t got = verify_reopen("/db", &opt, 59, &log);
    assert_int_equal(got, 59);
    dl_log_stats_t st;
    dl__log_stats(log, &st);
    assert_int_equal(st.truncated_bytes, cut - offs[n - 1]);
    assert_int_equal(st.torn_chunks, 1);
    dl__log_close(log);
    /* The truncation was durable: a crash now changes nothing. */
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 0);
    assert_int_equal(verify_reopen("/db", &opt, 59, &log), 59);
    dl__log_close(log);
    dl__io_mem_free(io);
}

static void test_crash_bitflip_segment(void **state) {
    (void)state;
    dl_log_options_t opt;
    dl_io_t *io = build_db(&opt);
    names_t ns;
    list_files(io, "/db", &ns);
    /* A middle segment and the last one (with records after the flip). */
    int targets[2] = {ns.n - 2, ns.n - 1};
    for (int t = 0; t < 2; t++) {
        char path[128];
        snprintf(path, sizeof path, "/db/%s", ns.v[targets[t]]);
        assert_non_null(strstr(path, ".dlog"));
        uint64_t offs[256];
        int n = chunk_offsets(io, path, offs, 256);
        assert_true(n >= 3);
        uint64_t rec = offs[n / 2], flip = offs[n / 2 + 1] - 3; /* inside a chunk body */
        assert_int_equal(dl__io_mem_flip(io, path, flip, 5), 0);
        dl_error_t err = {0};
        dl_log_t *log = NULL;
        assert_int_equal(dl__log_open("/db", &opt, &log, &err), DL_ECORRUPT);
        assert_non_null(strstr(err.message, ns.v[targets[t]]));
        assert_int_equal(err.offset, (int64_t)rec);
        char at[64];
        snprintf(at, sizeof at, "offset %" PRIu64, rec);
        assert_non_null(strstr(err.message, at));
        dl_log_fsck_t r;
        dl_error_clear(&err);
        assert_int_equal(dl__log_fsck("/db", io, &r, &err), DL_ECORRUPT);
        assert_int_equal(r.problems, 1);
        assert_int_equal(err.offset, (int64_t)rec);
        assert_non_null(strstr(r.first_problem, ns.v[targets[t]]));
        /* A flip in the header of a chunk in the middle is no torn tail either. */
        assert_int_equal(dl__io_mem_flip(io, path, flip, 5), 0);
        assert_int_equal(dl__io_mem_flip(io, path, rec + 5, 1), 0);
        dl_error_clear(&err);
        assert_int_equal(dl__log_open("/db", &opt, &log, &err), DL_ECORRUPT);
        assert_int_equal(err.offset, (int64_t)rec);
        assert_int_equal(dl__io_mem_flip(io, path, rec + 5, 1), 0);
    }
    dl_log_t *log = NULL;
    assert_int_equal(verify_reopen("/db", &opt, 60, &log), 60);
    dl__log_close(log);
    dl__io_mem_free(io);
}

static void test_crash_bitflip_checkpoint(void **state) {
    (void)state;
    dl_log_options_t opt;
    dl_io_t *io = build_db(&opt);
    const char *newest = "/db/ckpt-000000000000001e.dlck"; /* covers 30 */
    uint64_t size = 0;
    assert_int_equal(dl__io_mem_file_size(io, newest, &size), 0);
    assert_int_equal(dl__io_mem_flip(io, newest, size - 3, 2), 0);
    /* Two checkpoints kept: fall back to the older one and the longer log. */
    dl_log_t *log = NULL;
    assert_int_equal(dl__log_open("/db", &opt, &log, NULL), 0);
    uint64_t covers = 0;
    void *blob = NULL;
    size_t n = 0;
    assert_int_equal(dl__log_checkpoint_read(log, &covers, &blob, &n, NULL), 0);
    assert_int_equal(covers, 20);
    uint64_t want[64];
    ckpt_blob(20, want, 64);
    assert_memory_equal(blob, want, sizeof want);
    dl_free(blob);
    dl_log_stats_t st;
    dl__log_stats(log, &st);
    assert_int_equal(st.checkpoint_fallbacks, 1);
    dl__log_close(log);
    /* Both corrupt: a precise error naming the newest file and the chunk offset (48). */
    assert_int_equal(dl__io_mem_flip(io, "/db/ckpt-0000000000000014.dlck", 50, 0), 0);
    assert_int_equal(dl__log_open("/db", &opt, &log, NULL), 0);
    dl_error_t err = {0};
    assert_int_equal(dl__log_checkpoint_read(log, &covers, &blob, &n, &err), DL_ECORRUPT);
    assert_non_null(strstr(err.message, "ckpt-000000000000001e.dlck"));
    assert_int_equal(err.offset, 48);
    dl__log_close(log);
    dl_log_fsck_t r;
    assert_int_equal(dl__log_fsck("/db", io, &r, NULL), DL_ECORRUPT);
    assert_int_equal(r.problems, 2);
    dl__io_mem_free(io);
}

/* Every bit flip anywhere in any file: an error naming that file, or contents identical
 * to the original (a checkpoint fallback), or, only for the last record's header, a
 * truncation of that record. Never a crash, never different contents. */
static void test_crash_bitflip_anywhere(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("crash_bitflip_anywhere");
    dl_rng_t r = {seed};
    long iters = dl_prop_iters(300);
    int errors = 0, fallbacks = 0, truncations = 0;
    for (long it = 0; it < iters; it++) {
        dl_log_options_t opt;
        dl_io_t *io = build_db(&opt);
        names_t ns;
        list_files(io, "/db", &ns);
        int fi = (int)dl_rng_below(&r, (uint64_t)ns.n);
        char path[128];
        snprintf(path, sizeof path, "/db/%s", ns.v[fi]);
        uint64_t size = 0;
        assert_int_equal(dl__io_mem_file_size(io, path, &size), 0);
        uint64_t off = dl_rng_below(&r, size);
        assert_int_equal(dl__io_mem_flip(io, path, off, (int)dl_rng_below(&r, 8)), 0);
        dl_log_t *log = NULL;
        dl_error_t err = {0};
        int rc = dl__log_open("/db", &opt, &log, &err);
        if (rc) {
            if (rc != DL_ECORRUPT || !strstr(err.message, ns.v[fi]))
                dl_prop_fail("flip %s@%" PRIu64 ": open %d %s", path, off, rc, err.message);
            errors++;
            dl__io_mem_free(io);
            continue;
        }
        uint64_t covers = 0;
        void *blob = NULL;
        size_t n = 0;
        rc = dl__log_checkpoint_read(log, &covers, &blob, &n, &err);
        if (rc) {
            if (rc != DL_ECORRUPT || !strstr(ns.v[fi], "ckpt") || !strstr(err.message, "ckpt"))
                dl_prop_fail("flip %s@%" PRIu64 ": checkpoint %d %s", path, off, rc, err.message);
            errors++;
        } else {
            uint64_t want[64];
            ckpt_blob(covers, want, 64);
            if (n != sizeof want || memcmp(blob, want, n) != 0)
                dl_prop_fail("flip %s@%" PRIu64 ": checkpoint contents differ", path, off);
            dl_free(blob);
            fallbacks += covers == 20;
        }
        check_t *c = dl_malloc(sizeof *c);
        c->next = 21;
        rc = dl__log_replay(log, 20, check_cb, c, &err);
        uint64_t last = c->next - 1;
        dl_free(c);
        dl_log_stats_t st;
        dl__log_stats(log, &st);
        if (rc)
            dl_prop_fail("flip %s@%" PRIu64 ": replay %d %s", path, off, rc, err.message);
        if (last != 60) {
            if (!(last == 59 && st.truncated_bytes > 0 && fi == ns.n - 1))
                dl_prop_fail("flip %s@%" PRIu64 ": log ends at %" PRIu64, path, off, last);
            truncations++;
        }
        dl__log_close(log);
        dl__io_mem_free(io);
    }
    print_message("%ld flips: %d errors, %d checkpoint fallbacks, %d last-record truncations\n",
                  iters, errors, fallbacks, truncations);
    assert_true(errors > 0);
}

/* The operator repair: damage in the last segment (as a power loss that kept a later
 * unsynced chunk but not an earlier one would leave) is cut off; damage in an earlier
 * segment is refused and changes nothing. */
static void test_crash_repair_last_segment(void **state) {
    (void)state;
    dl_log_options_t opt;
    dl_io_t *io = build_db(&opt);
    names_t ns;
    list_files(io, "/db", &ns);
    char last[128], prev[128];
    snprintf(last, sizeof last, "/db/%s", ns.v[ns.n - 1]);
    snprintf(prev, sizeof prev, "/db/%s", ns.v[ns.n - 2]);
    uint64_t offs[256];
    int n = chunk_offsets(io, last, offs, 256);
    assert_true(n >= 3);
    uint64_t dropped = 0;
    assert_int_equal(dl__log_repair("/db", io, &dropped, NULL), 0);
    assert_int_equal(dropped, 0);
    /* Damage in the middle of the last segment: open refuses, repair cuts it off. */
    assert_int_equal(dl__io_mem_flip(io, last, offs[1] + 2, 4), 0);
    dl_log_t *log = NULL;
    dl_error_t err = {0};
    assert_int_equal(dl__log_open("/db", &opt, &log, &err), DL_ECORRUPT);
    uint64_t size = 0;
    assert_int_equal(dl__io_mem_file_size(io, last, &size), 0);
    assert_int_equal(dl__log_repair("/db", io, &dropped, NULL), 0);
    assert_int_equal(dropped, size - offs[1]);
    /* The records before the damaged chunk remain: 60 minus the chunks cut off. */
    uint64_t got = verify_reopen("/db", &opt, 0, &log);
    assert_int_equal(got, 60 - (uint64_t)(n - 1));
    dl__log_close(log);
    /* Damage in an earlier segment: refused, nothing changed. */
    list_files(io, "/db", &ns);
    uint64_t poffs[256];
    int pn = chunk_offsets(io, prev, poffs, 256);
    assert_true(pn >= 2);
    assert_int_equal(dl__io_mem_flip(io, prev, poffs[1] + 2, 4), 0);
    uint64_t before = 0, after = 0;
    assert_int_equal(dl__io_mem_file_size(io, prev, &before), 0);
    dl_error_clear(&err);
    assert_int_equal(dl__log_repair("/db", io, &dropped, &err), DL_ECORRUPT);
    assert_non_null(strstr(err.message, "repair refused"));
    assert_int_equal(dl__io_mem_file_size(io, prev, &after), 0);
    assert_int_equal(after, before);
    dl__io_mem_free(io);
}

/* A power cut at every point of a checkpoint that retires many segments (temporary
 * file, fsync, rename, directory fsync, each unlink and its directory fsync), with
 * several random survivals of the unsynced name changes: the log always reopens with
 * every record and an intact checkpoint (invariant 6 of store/log.c). */
/* eager: the store's retention (eager_retention, one checkpoint kept): the checkpoint at
 * 200 covers the active segment too, which is rotated and removed with the others. */
static void cut_during_checkpoint(bool eager) {
    int reopened = 0;
    for (int64_t n = 1;; n++) {
        dl_io_t *io = NULL;
        assert_int_equal(dl__io_mem_new(&io, NULL), 0);
        dl_log_options_t opt = {.io = io,
                                .segment_bytes = 2 << 10,
                                .eager_retention = eager,
                                .checkpoints_kept = eager ? 1 : 0};
        dl_log_t *log = NULL;
        assert_int_equal(dl__log_open("/db", &opt, &log, NULL), 0);
        uint64_t blob[64];
        for (uint64_t tx = 1; tx <= 200; tx++) {
            assert_int_equal(commit(log, tx, true, NULL), 0);
            if (tx == 100) {
                ckpt_blob(tx, blob, 64);
                assert_int_equal(dl__log_checkpoint_write(log, tx, blob, sizeof blob, NULL), 0);
            }
        }
        dl_log_stats_t before;
        dl__log_stats(log, &before);
        dl__io_mem_halt_after(io, n);
        ckpt_blob(200, blob, 64);
        int rc = dl__log_checkpoint_write(log, 200, blob, sizeof blob, NULL);
        dl_log_stats_t after;
        dl__log_stats(log, &after);
        dl__log_abandon(log);
        if (rc == 0) {
            /* The cut came after the last change: every point was covered. */
            assert_true(after.segments + 5 <= before.segments);
            if (eager)
                assert_int_equal(after.segments, 1); /* only the new, empty active one */
            dl__io_mem_free(io);
            break;
        }
        assert_int_equal(rc, DL_EIO);
        /* Several crashes of the same cut: different unsynced name changes survive. */
        dl__io_mem_crash(io, DL_IO_CRASH_TEAR, (uint64_t)n * 7919);
        dl_log_t *back = NULL;
        assert_int_equal(verify_reopen("/db", &opt, 200, &back), 200);
        dl__log_close(back);
        reopened++;
        dl__io_mem_free(io);
    }
    print_message("%d cut points inside the checkpoint%s\n", reopened,
                  eager ? " (eager retention)" : "");
    assert_true(reopened > 10);
}

static void test_crash_cut_during_checkpoint(void **state) {
    (void)state;
    cut_during_checkpoint(false);
    cut_during_checkpoint(true);
}

/* The workload of test_crash_cut_anywhere: commits (sync every) over several segment
 * rotations, a checkpoint, more commits, unsynced appends. Returns the last tx whose
 * commit returned 0 (acknowledged), stopping at the first failure. */
static uint64_t cut_workload(dl_log_t *log) {
    uint64_t acked = 0, blob[64];
    for (uint64_t tx = 1; tx <= 40; tx++) {
        if (commit(log, tx, true, NULL))
            return acked;
        acked = tx;
        if (tx == 25) {
            ckpt_blob(tx, blob, 64);
            if (dl__log_checkpoint_write(log, tx, blob, sizeof blob, NULL))
                return acked;
        }
    }
    for (uint64_t tx = 41; tx <= 50; tx++)
        if (commit(log, tx, false, NULL))
            break;
    return acked;
}

/* A power cut at every change of a session (segment creation, rotation, commit writes
 * and fsyncs, checkpoint), each followed by a TEAR crash; then a second cut at every
 * change of the recovery that follows (truncating a torn tail, fsyncing, starting a
 * segment). After each, the log reopens holding every acknowledged record intact. */
static void test_crash_cut_anywhere(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("crash_cut_anywhere");
    int points = 0, recovery_points = 0;
    for (int64_t n = 1;; n++) {
        dl_io_t *io = NULL;
        assert_int_equal(dl__io_mem_new(&io, NULL), 0);
        dl_log_options_t opt = {.io = io, .segment_bytes = 3 << 10};
        dl__io_mem_halt_after(io, n);
        dl_log_t *log = NULL;
        uint64_t acked = 0;
        int rc = dl__log_open("/db", &opt, &log, NULL);
        bool finished = false;
        if (rc == 0) {
            acked = cut_workload(log);
            finished = acked == 40;
            dl__log_abandon(log);
        }
        if (finished) {
            dl__io_mem_free(io);
            break;
        }
        points++;
        dl__io_mem_crash(io, DL_IO_CRASH_TEAR, seed + (uint64_t)n);
        /* Cut the recovery too, at its m-th change, then recover for real. */
        for (int64_t m = 1; m <= 8; m++) {
            dl__io_mem_halt_after(io, m);
            rc = dl__log_open("/db", &opt, &log, NULL);
            if (rc == 0) {
                dl__log_abandon(log);
                dl__io_mem_crash(io, DL_IO_CRASH_TEAR, seed + (uint64_t)(n * 31 + m));
                break;
            }
            assert_int_equal(rc, DL_EIO);
            recovery_points++;
            dl__io_mem_crash(io, DL_IO_CRASH_TEAR, seed + (uint64_t)(n * 31 + m));
        }
        dl__io_mem_halt_after(io, 0);
        uint64_t last = verify_reopen("/db", &opt, acked, &log);
        /* Recovered logs accept work again. */
        assert_int_equal(commit(log, last + 1, true, NULL), 0);
        dl__log_close(log);
        dl__io_mem_free(io);
    }
    print_message("%d cut points in the session, %d in recoveries\n", points, recovery_points);
    assert_true(points > 50);
}

/* ---- real process crashes ----------------------------------------------------------- */

/* The child: recovers, then commits tx after tx with sync-every-commit, reporting each
 * acknowledged tx on the pipe, checkpointing now and then, until it is killed. */
static void crash_child(const char *dir, int fd) {
    dl_log_options_t opt = {.segment_bytes = 32 << 10};
    dl_log_t *log = NULL;
    if (dl__log_open(dir, &opt, &log, NULL))
        _exit(3);
    dl_log_stats_t st;
    dl__log_stats(log, &st);
    uint64_t tx = st.last_tx + 1;
    for (;; tx++) {
        if (commit(log, tx, true, NULL))
            _exit(4);
        if (write(fd, &tx, sizeof tx) != sizeof tx)
            _exit(5);
        if (tx % 53 == 0) {
            uint64_t blob[64];
            ckpt_blob(tx, blob, 64);
            if (dl__log_checkpoint_write(log, tx, blob, sizeof blob, NULL))
                _exit(6);
        }
    }
}

static uint64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void test_crash_sigkill_loop(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("crash_sigkill_loop");
    dl_rng_t r = {seed};
    char dir[] = "/tmp/dl-crash-XXXXXX";
    assert_non_null(mkdtemp(dir));
    uint64_t acked = 0, t_start = mono_us();
    int kills = 0, mid_recovery = 0;
    long want_kills = dl_prop_iters(120);
    while (kills < want_kills && mono_us() - t_start < 50u * 1000000u) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            crash_child(dir, fds[1]);
            _exit(0);
        }
        close(fds[1]);
        /* Kill after a random number of acknowledgements (0: possibly during recovery),
         * plus a random spin, so the kill lands anywhere in append/fsync/checkpoint. */
        uint64_t want = dl_rng_below(&r, 25), got = 0, spin = dl_rng_below(&r, 400);
        while (got < want) {
            uint64_t tx;
            if (read(fds[0], &tx, sizeof tx) != sizeof tx)
                break;
            if (tx > acked)
                acked = tx;
            got++;
        }
        for (uint64_t t0 = mono_us(); mono_us() - t0 < spin;)
            ;
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFSIGNALED(status))
            fail_msg("child exited with %d instead of being killed",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        /* Acknowledgements written before the kill are still in the pipe. */
        uint64_t tx;
        while (read(fds[0], &tx, sizeof tx) == sizeof tx)
            if (tx > acked)
                acked = tx;
        close(fds[0]);
        mid_recovery += want == 0;
        kills++;
        dl_log_options_t opt = {.segment_bytes = 32 << 10};
        dl_log_t *log = NULL;
        verify_reopen(dir, &opt, acked, &log);
        dl__log_close(log);
    }
    dl_log_fsck_t rep;
    dl_error_t err = {0};
    if (dl__log_fsck(dir, NULL, &rep, &err))
        fail_msg("fsck: %s", err.message);
    print_message("%d kills (%d early), %" PRIu64 " acknowledged, %" PRIu64 " segments, %" PRIu64
                  " checkpoints\n",
                  kills, mid_recovery, acked, rep.segments, rep.checkpoints);
    assert_true(kills >= 100 || want_kills < 100);
    assert_true(acked > 100);
    rm_tree(dir);
}

/* clang-format off: dl_test_module() scans this block line by line. */
// clang-format off
DL_TEST_GROUP(crash,
              cmocka_unit_test(test_crash_drop_unsynced),
              cmocka_unit_test(test_crash_torn_tails_property),
              cmocka_unit_test(test_crash_failed_writes),
              cmocka_unit_test(test_crash_failed_fsyncs),
              cmocka_unit_test(test_crash_torn_last_record),
              cmocka_unit_test(test_crash_bitflip_segment),
              cmocka_unit_test(test_crash_bitflip_checkpoint),
              cmocka_unit_test(test_crash_bitflip_anywhere),
              cmocka_unit_test(test_crash_repair_last_segment),
              cmocka_unit_test(test_crash_cut_during_checkpoint),
              cmocka_unit_test(test_crash_cut_anywhere),
              cmocka_unit_test(test_crash_sigkill_loop));
// clang-format on
