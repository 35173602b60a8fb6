/*
 * lock.c: the one-writer-process-per-directory lock of the durable store (POSIX).
 *
 * The lock is flock(LOCK_EX | LOCK_NB) on "<dir>/LOCK". flock locks belong to the open
 * file description, so a second open in the same process conflicts just as one from
 * another process does (fcntl record locks would not), and the kernel drops the lock
 * when the holder dies, even by SIGKILL: no stale lock files. The holder writes its pid
 * into the file so that the loser can say "locked by pid N".
 * It does not lock across NFS hosts (flock over NFS is emulated; documented as
 * unsupported in docs/storage-format.md).
 */
#include "store/io.h"

#include <deltalog/alloc.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

typedef struct posix_lock {
    int fd;
} posix_lock_t;

/* Reads the pid the holder wrote; 0 when it is not (yet) there. */
static long read_holder_pid(int fd) {
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return strtol(buf, NULL, 10);
}

int dl__lock_acquire(const char *dir, void **out_lock, dl_error_t *err) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/LOCK", dir) >= (int)sizeof path)
        return dl_error_set(err, DL_EINVAL, "%s: path too long", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return dl_error_set(err, DL_EIO, "open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            /* The holder writes its pid right after locking; a loser that races that
             * window retries the read a few times before reporting it unknown. */
            long pid = 0;
            for (int i = 0; i < 100 && pid == 0; i++) {
                pid = read_holder_pid(fd);
                if (pid == 0)
                    usleep(1000);
            }
            close(fd);
            if (pid > 0)
                return dl_error_set(err, DL_ELOCKED, "%s: locked by pid %ld", dir, pid);
            return dl_error_set(err, DL_ELOCKED, "%s: locked by pid unknown", dir);
        }
        close(fd);
        return dl_error_set(err, DL_EIO, "flock %s: %s", path, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return dl_error_set(err, DL_EIO, "write %s: %s", path, strerror(e));
    }
    posix_lock_t *l = dl_malloc(sizeof *l);
    if (!l) {
        close(fd);
        return dl_error_set(err, DL_ENOMEM, "lock: out of memory");
    }
    l->fd = fd;
    *out_lock = l;
    return 0;
}

void dl__lock_release(void *lock) {
    if (!lock)
        return;
    posix_lock_t *l = lock;
    /* The pid stays in the file: harmless, the next holder overwrites it. Closing the
     * descriptor releases the flock. */
    close(l->fd);
    dl_free(l);
}
