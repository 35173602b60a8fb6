/*
 * test_io.c: the store's I/O layer (store/io.h): the POSIX table, the in-memory table's
 * crash model (unsynced writes and directory changes are lost; torn tails), its fault
 * injection, and the directory lock (in one process and across fork).
 */
#include "tests/harness/dl_test.h"

#include "store/io.h"

#include <deltalog/alloc.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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

static void write_file(const dl_io_t *io, const char *path, const char *text, bool sync) {
    dl_io_file_t *f = NULL;
    assert_int_equal(io->open(io, path, DL_IO_WRITE | DL_IO_CREATE, &f, NULL), 0);
    uint64_t size = 0;
    assert_int_equal(io->size(f, &size, NULL), 0);
    assert_int_equal(io->pwrite(f, text, strlen(text), size, NULL), 0);
    if (sync)
        assert_int_equal(io->fsync(f, NULL), 0);
    io->close(f);
}

/* Reads the whole file as a string; returns NULL when it does not exist. */
static char *read_all(const dl_io_t *io, const char *path) {
    dl_io_file_t *f = NULL;
    if (io->open(io, path, DL_IO_READ, &f, NULL) != 0)
        return NULL;
    uint64_t size = 0;
    assert_int_equal(io->size(f, &size, NULL), 0);
    char *s = dl_malloc(size + 1);
    assert_non_null(s);
    size_t got = 0;
    assert_int_equal(io->pread(f, s, size, 0, &got, NULL), 0);
    assert_int_equal(got, size);
    s[size] = 0;
    io->close(f);
    return s;
}

static int count_cb(void *ctx, const char *name) {
    (void)name;
    (*(int *)ctx)++;
    return 0;
}

static void test_io_posix_roundtrip(void **state) {
    (void)state;
    char dir[] = "/tmp/dl-io-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const dl_io_t *io = dl__io_posix();
    char a[4200], b[4200];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    write_file(io, a, "hello ", true);
    write_file(io, a, "world", true);
    assert_int_equal(io->fsync_dir(io, dir, NULL), 0);
    char *s = read_all(io, a);
    assert_string_equal(s, "hello world");
    dl_free(s);
    dl_error_t err = {0};
    dl_io_file_t *f = NULL;
    assert_int_equal(io->open(io, b, DL_IO_READ, &f, &err), DL_ENOTFOUND);
    assert_int_equal(io->rename(io, a, b, NULL), 0);
    s = read_all(io, b);
    assert_string_equal(s, "hello world");
    dl_free(s);
    assert_int_equal(io->open(io, b, DL_IO_WRITE, &f, NULL), 0);
    assert_int_equal(io->ftruncate(f, 5, NULL), 0);
    io->close(f);
    s = read_all(io, b);
    assert_string_equal(s, "hello");
    dl_free(s);
    int n = 0;
    assert_int_equal(io->list(io, dir, count_cb, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_int_equal(io->unlink(io, b, NULL), 0);
    n = 0;
    assert_int_equal(io->list(io, dir, count_cb, &n, NULL), 0);
    assert_int_equal(n, 0);
    rm_tree(dir);
}

static void test_io_mem_crash_drops_unsynced(void **state) {
    (void)state;
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    assert_int_equal(io->mkdir(io, "/d", NULL), 0);
    write_file(io, "/d/new", "abc", true);
    /* A durable name with synced and unsynced data. */
    write_file(io, "/d/f", "synced;", true);
    assert_int_equal(io->fsync_dir(io, "/d", NULL), 0);
    write_file(io, "/d/f", "unsynced", false);
    write_file(io, "/d/new", "", false);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 1);
    char *s = read_all(io, "/d/f");
    assert_string_equal(s, "synced;");
    dl_free(s);
    /* Synced data in a file whose name was never made durable is lost with the name. */
    write_file(io, "/d/later", "x", true);
    assert_int_equal(io->rename(io, "/d/f", "/d/g", NULL), 0);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 2);
    assert_null(read_all(io, "/d/later"));
    assert_null(read_all(io, "/d/g"));
    s = read_all(io, "/d/f");
    assert_string_equal(s, "synced;");
    dl_free(s);
    /* An unlink not made durable comes back. */
    assert_int_equal(io->unlink(io, "/d/f", NULL), 0);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 3);
    s = read_all(io, "/d/f");
    assert_non_null(s);
    dl_free(s);
    dl__io_mem_free(io);
}

static void test_io_mem_crash_tears_tail(void **state) {
    (void)state;
    uint64_t seed = dl_prop_seed("io_mem_crash_tears_tail");
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    assert_int_equal(io->mkdir(io, "/d", NULL), 0);
    write_file(io, "/d/f", "0123456789", true);
    assert_int_equal(io->fsync_dir(io, "/d", NULL), 0);
    bool saw_partial = false;
    for (int i = 0; i < 50; i++) {
        write_file(io, "/d/f", "abcdefghij", false);
        dl__io_mem_crash(io, DL_IO_CRASH_TEAR, seed + (uint64_t)i);
        char *s = read_all(io, "/d/f");
        size_t n = strlen(s);
        /* The durable part is intact; whatever survived beyond it is a prefix. */
        assert_true(n >= 10 && n <= 20);
        assert_memory_equal(s, "0123456789", 10);
        if (n > 10 && n < 20)
            saw_partial = true;
        if (n > 10)
            assert_memory_equal(s + 10, "abcdefghij", n - 10);
        dl_free(s);
        dl_io_file_t *f = NULL;
        assert_int_equal(io->open(io, "/d/f", DL_IO_WRITE, &f, NULL), 0);
        assert_int_equal(io->ftruncate(f, 10, NULL), 0);
        assert_int_equal(io->fsync(f, NULL), 0);
        io->close(f);
    }
    assert_true(saw_partial);
    dl__io_mem_free(io);
}

static void test_io_mem_faults(void **state) {
    (void)state;
    dl_io_t *io = NULL;
    assert_int_equal(dl__io_mem_new(&io, NULL), 0);
    assert_int_equal(io->mkdir(io, "/d", NULL), 0);
    dl_io_file_t *f = NULL;
    assert_int_equal(io->open(io, "/d/f", DL_IO_WRITE | DL_IO_CREATE, &f, NULL), 0);
    dl__io_mem_fail_write(io, 2, 3);
    assert_int_equal(io->pwrite(f, "aaaa", 4, 0, NULL), 0);
    dl_error_t err = {0};
    assert_int_equal(io->pwrite(f, "bbbbbb", 6, 4, &err), DL_EIO);
    assert_non_null(strstr(err.message, "injected"));
    uint64_t size = 0;
    assert_int_equal(io->size(f, &size, NULL), 0);
    assert_int_equal(size, 7); /* the torn prefix "bbb" was stored */
    assert_int_equal(io->pwrite(f, "c", 1, 7, NULL), 0);
    dl__io_mem_fail_fsync(io, 1);
    assert_int_equal(io->fsync(f, NULL), DL_EIO);
    assert_int_equal(io->fsync(f, NULL), 0);
    assert_int_equal(io->fsync_dir(io, "/d", NULL), 0);
    /* Flip a bit: both images change. */
    assert_int_equal(dl__io_mem_flip(io, "/d/f", 0, 0), 0);
    assert_int_equal(dl__io_mem_flip(io, "/d/f", 100, 0), DL_ERANGE);
    assert_int_equal(dl__io_mem_flip(io, "/d/none", 0, 0), DL_ENOTFOUND);
    io->close(f);
    dl__io_mem_crash(io, DL_IO_CRASH_DROP, 0);
    char *s = read_all(io, "/d/f");
    assert_string_equal(s, "`aaabbbc");
    dl_free(s);
    dl_io_mem_stats_t st;
    dl__io_mem_stats(io, &st);
    assert_int_equal(st.writes, 3);
    assert_int_equal(st.fsyncs, 2);
    dl__io_mem_free(io);
}

static void test_io_lock_in_process(void **state) {
    (void)state;
    char dir[] = "/tmp/dl-io-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const dl_io_t *io = dl__io_posix();
    void *l1 = NULL, *l2 = NULL;
    assert_int_equal(io->lock(io, dir, &l1, NULL), 0);
    dl_error_t err = {0};
    assert_int_equal(io->lock(io, dir, &l2, &err), DL_ELOCKED);
    char want[64];
    snprintf(want, sizeof want, "locked by pid %ld", (long)getpid());
    assert_non_null(strstr(err.message, want));
    io->unlock(io, l1);
    assert_int_equal(io->lock(io, dir, &l2, NULL), 0);
    io->unlock(io, l2);
    /* The in-memory table follows the same rule. */
    dl_io_t *mem = NULL;
    assert_int_equal(dl__io_mem_new(&mem, NULL), 0);
    assert_int_equal(mem->lock(mem, "/d", &l1, NULL), 0);
    assert_int_equal(mem->lock(mem, "/d", &l2, NULL), DL_ELOCKED);
    mem->unlock(mem, l1);
    dl__io_mem_free(mem);
    rm_tree(dir);
}

static void test_io_lock_across_fork(void **state) {
    (void)state;
    char dir[] = "/tmp/dl-io-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const dl_io_t *io = dl__io_posix();
    void *l = NULL;
    assert_int_equal(io->lock(io, dir, &l, NULL), 0);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child inherits the parent's descriptor; it opens the lock afresh. */
        dl_error_t err = {0};
        void *cl = NULL;
        int rc = io->lock(io, dir, &cl, &err);
        char msg[600];
        int n = snprintf(msg, sizeof msg, "%d %s", rc, err.message);
        (void)!write(fds[1], msg, (size_t)n);
        _exit(0);
    }
    close(fds[1]);
    char buf[600] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    assert_true(n > 0);
    char want[128];
    snprintf(want, sizeof want, "%d %s: locked by pid %ld", DL_ELOCKED, dir, (long)getpid());
    assert_string_equal(buf, want);
    io->unlock(io, l);
    rm_tree(dir);
}

DL_TEST_GROUP(io, cmocka_unit_test(test_io_posix_roundtrip),
              cmocka_unit_test(test_io_mem_crash_drops_unsynced),
              cmocka_unit_test(test_io_mem_crash_tears_tail), cmocka_unit_test(test_io_mem_faults),
              cmocka_unit_test(test_io_lock_in_process),
              cmocka_unit_test(test_io_lock_across_fork));
