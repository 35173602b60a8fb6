/*
 * io.c: the two dl_io_t implementations: POSIX, and an in-memory file system that injects
 * faults and simulates power loss for the durability tests (store/io.h).
 *
 * The in-memory model (what a crash keeps):
 *   1. A file (inode) has a current image (what reads see) and a durable image (the
 *      current image at its last successful fsync).
 *   2. The file system has a current name table and a durable name table (path -> inode).
 *      fsync_dir(dir) copies the current entries under dir into the durable table.
 *   3. A crash replaces the current name table by the durable one and every inode's
 *      current image by its durable image (DROP), or by the durable image plus a random
 *      prefix of the bytes beyond it (TEAR: appended data reached the disk partially).
 * This is stricter than ext4 in ordered mode, which is the point: a log that survives it
 * fsyncs files and directories where POSIX says it must.
 *   4. TEAR also keeps a random subset of the name changes (creations, renames,
 *      unlinks) made since the last fsync_dir of their directory, applied in order; each
 *      rename stays atomic (old name or new name, never both or neither).
 * It does not model partial overwrites of durable bytes (the log never overwrites).
 */
#include "store/io.h"

#include "base/base.h"

#include <deltalog/alloc.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- POSIX -------------------------------------------------------------------------- */

typedef struct posix_file {
    dl_io_file_t base;
    int fd;
} posix_file_t;

static int os_error(dl_error_t *err, const char *op, const char *path, int e) {
    if (e == ENOENT)
        return dl_error_set(err, DL_ENOTFOUND, "%s %s: %s", op, path, strerror(e));
    if (e == EEXIST)
        return dl_error_set(err, DL_EEXISTS, "%s %s: %s", op, path, strerror(e));
    return dl_error_set(err, DL_EIO, "%s %s: %s", op, path, strerror(e));
}

static int posix_open(const dl_io_t *io, const char *path, int flags, dl_io_file_t **out,
                      dl_error_t *err) {
    int oflags = O_CLOEXEC | ((flags & DL_IO_WRITE) ? O_RDWR : O_RDONLY);
    if (flags & DL_IO_CREATE)
        oflags |= O_CREAT;
    if (flags & DL_IO_EXCL)
        oflags |= O_EXCL;
    int fd = open(path, oflags, 0644);
    if (fd < 0)
        return os_error(err, "open", path, errno);
    posix_file_t *f = dl_malloc(sizeof *f);
    if (!f) {
        close(fd);
        return dl_error_set(err, DL_ENOMEM, "open %s: out of memory", path);
    }
    f->base.io = io;
    f->fd = fd;
    *out = &f->base;
    return 0;
}

static int posix_pread(dl_io_file_t *file, void *buf, size_t n, uint64_t off, size_t *out_n,
                       dl_error_t *err) {
    posix_file_t *f = (posix_file_t *)file;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(f->fd, (char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return dl_error_set(err, DL_EIO, "pread: %s", strerror(errno));
        }
        if (r == 0)
            break;
        done += (size_t)r;
    }
    *out_n = done;
    return 0;
}

static int posix_pwrite(dl_io_file_t *file, const void *buf, size_t n, uint64_t off,
                        dl_error_t *err) {
    posix_file_t *f = (posix_file_t *)file;
    size_t done = 0;
    while (done < n) {
        ssize_t r = pwrite(f->fd, (const char *)buf + done, n - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return dl_error_set(err, DL_EIO, "pwrite: %s", strerror(errno));
        }
        done += (size_t)r;
    }
    return 0;
}

static int posix_fsync(dl_io_file_t *file, dl_error_t *err) {
    posix_file_t *f = (posix_file_t *)file;
    /* fdatasync also flushes the size change of an append (the metadata needed to read
     * the data back), which is all the log needs. */
    if (fdatasync(f->fd) != 0)
        return dl_error_set(err, DL_EIO, "fdatasync: %s", strerror(errno));
    return 0;
}

static int posix_ftruncate(dl_io_file_t *file, uint64_t size, dl_error_t *err) {
    posix_file_t *f = (posix_file_t *)file;
    if (ftruncate(f->fd, (off_t)size) != 0)
        return dl_error_set(err, DL_EIO, "ftruncate: %s", strerror(errno));
    return 0;
}

static int posix_size(dl_io_file_t *file, uint64_t *out, dl_error_t *err) {
    posix_file_t *f = (posix_file_t *)file;
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return dl_error_set(err, DL_EIO, "fstat: %s", strerror(errno));
    *out = (uint64_t)st.st_size;
    return 0;
}

static void posix_close(dl_io_file_t *file) {
    if (!file)
        return;
    posix_file_t *f = (posix_file_t *)file;
    close(f->fd);
    dl_free(f);
}

static int posix_rename(const dl_io_t *io, const char *from, const char *to, dl_error_t *err) {
    if (rename(from, to) != 0)
        return os_error(err, "rename", from, errno);
    return 0;
}

static int posix_unlink(const dl_io_t *io, const char *path, dl_error_t *err) {
    if (unlink(path) != 0)
        return os_error(err, "unlink", path, errno);
    return 0;
}

static int posix_mkdir(const dl_io_t *io, const char *dir, dl_error_t *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return os_error(err, "mkdir", dir, errno);
    return 0;
}

static int posix_fsync_dir(const dl_io_t *io, const char *dir, dl_error_t *err) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return os_error(err, "open directory", dir, errno);
    int rc = 0;
    if (fsync(fd) != 0)
        rc = os_error(err, "fsync directory", dir, errno);
    close(fd);
    return rc;
}

static int posix_list(const dl_io_t *io, const char *dir, int (*fn)(void *ctx, const char *name),
                      void *ctx, dl_error_t *err) {
    DIR *d = opendir(dir);
    if (!d)
        return os_error(err, "opendir", dir, errno);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN)
            continue;
        rc = fn(ctx, e->d_name);
        if (rc)
            break;
    }
    closedir(d);
    return rc;
}

static int posix_lock(const dl_io_t *io, const char *dir, void **out_lock, dl_error_t *err) {
    return dl__lock_acquire(dir, out_lock, err);
}

static void posix_unlock(const dl_io_t *io, void *lock) { dl__lock_release(lock); }

static const dl_io_t posix_io = {
    .name = "posix",
    .ctx = NULL,
    .open = posix_open,
    .pread = posix_pread,
    .pwrite = posix_pwrite,
    .fsync = posix_fsync,
    .ftruncate = posix_ftruncate,
    .size = posix_size,
    .close = posix_close,
    .rename = posix_rename,
    .unlink = posix_unlink,
    .mkdir = posix_mkdir,
    .fsync_dir = posix_fsync_dir,
    .list = posix_list,
    .lock = posix_lock,
    .unlock = posix_unlock,
};

const dl_io_t *dl__io_posix(void) { return &posix_io; }

/* ---- in-memory file system with fault injection ------------------------------------- */

typedef struct mem_image {
    uint8_t *data;
    size_t len, cap;
} mem_image_t;

/* Invariant: an inode is referenced by at most one current and one durable entry (the
 * name tables), or by none once both are gone; it is freed only with the file system. */
typedef struct mem_inode {
    mem_image_t cur, dur;
    struct mem_inode *next_all; /* list of every inode, for freeing */
} mem_inode_t;

typedef struct mem_entry {
    char *path;
    mem_inode_t *ino;
} mem_entry_t;

typedef struct mem_table {
    mem_entry_t *v;
    size_t n, cap;
} mem_table_t;

/* A name change not yet made durable by fsync_dir (model rule 4). */
typedef struct mem_op {
    int kind; /* OP_CREATE, OP_RENAME, OP_UNLINK */
    char *path, *to;
    mem_inode_t *ino;
} mem_op_t;

enum { OP_CREATE, OP_RENAME, OP_UNLINK };

typedef struct mem_fs {
    pthread_mutex_t mu;
    mem_table_t cur, dur; /* current and durable name tables */
    mem_op_t *ops;        /* unsynced name changes, in order */
    size_t n_ops, cap_ops;
    mem_inode_t *all;
    char **dirs; /* existing directories (never removed) */
    size_t n_dirs;
    char **locked; /* directories whose lock is held */
    size_t n_locked;
    int64_t fail_write_in, fail_fsync_in; /* countdowns, 0 = disarmed */
    int64_t halt_in;                      /* countdown to the simulated power cut */
    bool halted;                          /* after it: every change fails */
    size_t torn_bytes;
    dl_io_mem_stats_t stats;
} mem_fs_t;

typedef struct mem_file {
    dl_io_file_t base;
    mem_fs_t *fs;
    mem_inode_t *ino;
    bool writable;
} mem_file_t;

static int image_reserve(mem_image_t *im, size_t len) {
    if (len <= im->cap)
        return 0;
    size_t cap = im->cap ? im->cap : 256;
    while (cap < len)
        cap *= 2;
    uint8_t *d = dl_realloc(im->data, cap);
    if (!d)
        return DL_ENOMEM;
    im->data = d;
    im->cap = cap;
    return 0;
}

static int image_copy(mem_image_t *dst, const mem_image_t *src) {
    if (image_reserve(dst, src->len))
        return DL_ENOMEM;
    if (src->len)
        memcpy(dst->data, src->data, src->len);
    dst->len = src->len;
    return 0;
}

static mem_entry_t *table_find(mem_table_t *t, const char *path) {
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].path, path) == 0)
            return &t->v[i];
    return NULL;
}

static int table_put(mem_table_t *t, const char *path, mem_inode_t *ino) {
    mem_entry_t *e = table_find(t, path);
    if (e) {
        e->ino = ino;
        return 0;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        mem_entry_t *v = dl_realloc(t->v, cap * sizeof *v);
        if (!v)
            return DL_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    char *p = dl_strdup(path);
    if (!p)
        return DL_ENOMEM;
    t->v[t->n].path = p;
    t->v[t->n].ino = ino;
    t->n++;
    return 0;
}

static void table_del(mem_table_t *t, const char *path) {
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].path, path) == 0) {
            dl_free(t->v[i].path);
            t->v[i] = t->v[--t->n];
            return;
        }
    }
}

static void table_fini(mem_table_t *t) {
    for (size_t i = 0; i < t->n; i++)
        dl_free(t->v[i].path);
    dl_free(t->v);
    memset(t, 0, sizeof *t);
}

/* True when `path` is directly inside `dir`. */
static bool in_dir(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && path[n] == '/' && strchr(path + n + 1, '/') == NULL;
}

static void op_free(mem_op_t *op) {
    dl_free(op->path);
    dl_free(op->to);
}

/* Records a name change for the crash model; best effort (on allocation failure the
 * change simply cannot survive a TEAR crash unsynced). */
static void op_push(mem_fs_t *fs, int kind, const char *path, const char *to, mem_inode_t *ino) {
    if (fs->n_ops == fs->cap_ops) {
        size_t cap = fs->cap_ops ? fs->cap_ops * 2 : 16;
        mem_op_t *v = dl_realloc(fs->ops, cap * sizeof *v);
        if (!v)
            return;
        fs->ops = v;
        fs->cap_ops = cap;
    }
    mem_op_t op = {kind, dl_strdup(path), to ? dl_strdup(to) : NULL, ino};
    if (!op.path || (to && !op.to)) {
        op_free(&op);
        return;
    }
    fs->ops[fs->n_ops++] = op;
}

static bool has_dir(mem_fs_t *fs, const char *dir) {
    for (size_t i = 0; i < fs->n_dirs; i++)
        if (strcmp(fs->dirs[i], dir) == 0)
            return true;
    return false;
}

static bool parent_exists(mem_fs_t *fs, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        return true;
    for (size_t i = 0; i < fs->n_dirs; i++)
        if (strlen(fs->dirs[i]) == (size_t)(slash - path) &&
            strncmp(fs->dirs[i], path, (size_t)(slash - path)) == 0)
            return true;
    return false;
}

/* The power cut (dl__io_mem_halt_after): true when this change must fail and do
 * nothing, because the machine is "off". Caller holds mu. */
static bool halt_due(mem_fs_t *fs) {
    if (!fs->halted && fs->halt_in > 0 && --fs->halt_in == 0)
        fs->halted = true;
    return fs->halted;
}

static int halted_error(dl_error_t *err, const char *op) {
    return dl_error_set(err, DL_EIO, "%s: injected power cut", op);
}

/* Counts down a fault; true when this call must fail. */
static bool fault_due(int64_t *countdown) {
    if (*countdown <= 0)
        return false;
    return --*countdown == 0;
}

static int mem_open(const dl_io_t *io, const char *path, int flags, dl_io_file_t **out,
                    dl_error_t *err) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    mem_entry_t *e = table_find(&fs->cur, path);
    mem_inode_t *ino = e ? e->ino : NULL;
    if (ino && (flags & DL_IO_CREATE) && (flags & DL_IO_EXCL)) {
        rc = dl_error_set(err, DL_EEXISTS, "open %s: file exists", path);
        goto out;
    }
    if (!ino) {
        if (!(flags & DL_IO_CREATE) || !parent_exists(fs, path)) {
            rc = dl_error_set(err, DL_ENOTFOUND, "open %s: no such file", path);
            goto out;
        }
        if (halt_due(fs)) {
            rc = halted_error(err, "open");
            goto out;
        }
        ino = dl_calloc(1, sizeof *ino);
        if (!ino || table_put(&fs->cur, path, ino)) {
            dl_free(ino);
            rc = dl_error_set(err, DL_ENOMEM, "open %s: out of memory", path);
            goto out;
        }
        ino->next_all = fs->all;
        fs->all = ino;
        fs->stats.files++;
        op_push(fs, OP_CREATE, path, NULL, ino);
    }
    mem_file_t *f = dl_calloc(1, sizeof *f);
    if (!f) {
        rc = dl_error_set(err, DL_ENOMEM, "open %s: out of memory", path);
        goto out;
    }
    f->base.io = io;
    f->fs = fs;
    f->ino = ino;
    f->writable = (flags & DL_IO_WRITE) != 0;
    *out = &f->base;
out:
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static int mem_pread(dl_io_file_t *file, void *buf, size_t n, uint64_t off, size_t *out_n,
                     dl_error_t *err) {
    mem_file_t *f = (mem_file_t *)file;
    pthread_mutex_lock(&f->fs->mu);
    mem_image_t *im = &f->ino->cur;
    size_t got = 0;
    if (off < im->len) {
        got = im->len - (size_t)off;
        if (got > n)
            got = n;
        memcpy(buf, im->data + off, got);
    }
    pthread_mutex_unlock(&f->fs->mu);
    *out_n = got;
    return 0;
}

static int mem_write_at(mem_image_t *im, const void *buf, size_t n, uint64_t off) {
    size_t end = (size_t)off + n;
    if (image_reserve(im, end))
        return DL_ENOMEM;
    if (off > im->len)
        memset(im->data + im->len, 0, (size_t)off - im->len);
    memcpy(im->data + off, buf, n);
    if (end > im->len)
        im->len = end;
    return 0;
}

static int mem_pwrite(dl_io_file_t *file, const void *buf, size_t n, uint64_t off,
                      dl_error_t *err) {
    mem_file_t *f = (mem_file_t *)file;
    mem_fs_t *fs = f->fs;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    if (!f->writable) {
        rc = dl_error_set(err, DL_EIO, "pwrite: file not open for writing");
        goto out;
    }
    fs->stats.writes++;
    if (halt_due(fs)) {
        rc = halted_error(err, "pwrite");
        goto out;
    }
    if (fault_due(&fs->fail_write_in)) {
        size_t torn = fs->torn_bytes < n ? fs->torn_bytes : n;
        if (torn)
            (void)mem_write_at(&f->ino->cur, buf, torn, off);
        rc = dl_error_set(err, DL_EIO, "pwrite: injected write failure");
        goto out;
    }
    if (mem_write_at(&f->ino->cur, buf, n, off))
        rc = dl_error_set(err, DL_EIO, "pwrite: out of memory (no space)");
out:
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static int mem_fsync(dl_io_file_t *file, dl_error_t *err) {
    mem_file_t *f = (mem_file_t *)file;
    mem_fs_t *fs = f->fs;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    fs->stats.fsyncs++;
    if (halt_due(fs))
        rc = halted_error(err, "fsync");
    else if (fault_due(&fs->fail_fsync_in))
        rc = dl_error_set(err, DL_EIO, "fsync: injected fsync failure");
    else if (image_copy(&f->ino->dur, &f->ino->cur))
        rc = dl_error_set(err, DL_EIO, "fsync: out of memory");
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static int mem_ftruncate(dl_io_file_t *file, uint64_t size, dl_error_t *err) {
    mem_file_t *f = (mem_file_t *)file;
    int rc = 0;
    pthread_mutex_lock(&f->fs->mu);
    mem_image_t *im = &f->ino->cur;
    if (halt_due(f->fs)) {
        rc = halted_error(err, "ftruncate");
    } else if (size <= im->len) {
        im->len = (size_t)size;
    } else if (image_reserve(im, (size_t)size)) {
        rc = dl_error_set(err, DL_EIO, "ftruncate: out of memory");
    } else {
        memset(im->data + im->len, 0, (size_t)size - im->len);
        im->len = (size_t)size;
    }
    pthread_mutex_unlock(&f->fs->mu);
    return rc;
}

static int mem_size(dl_io_file_t *file, uint64_t *out, dl_error_t *err) {
    mem_file_t *f = (mem_file_t *)file;
    pthread_mutex_lock(&f->fs->mu);
    *out = f->ino->cur.len;
    pthread_mutex_unlock(&f->fs->mu);
    return 0;
}

static void mem_close(dl_io_file_t *file) { dl_free(file); }

static int mem_rename(const dl_io_t *io, const char *from, const char *to, dl_error_t *err) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    mem_entry_t *e = table_find(&fs->cur, from);
    if (!e) {
        rc = dl_error_set(err, DL_ENOTFOUND, "rename %s: no such file", from);
    } else if (halt_due(fs)) {
        rc = halted_error(err, "rename");
    } else {
        mem_inode_t *ino = e->ino;
        table_del(&fs->cur, from);
        if (table_put(&fs->cur, to, ino))
            rc = dl_error_set(err, DL_ENOMEM, "rename: out of memory");
        else
            op_push(fs, OP_RENAME, from, to, ino);
    }
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static int mem_unlink(const dl_io_t *io, const char *path, dl_error_t *err) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    if (!table_find(&fs->cur, path))
        rc = dl_error_set(err, DL_ENOTFOUND, "unlink %s: no such file", path);
    else if (halt_due(fs))
        rc = halted_error(err, "unlink");
    else {
        table_del(&fs->cur, path);
        op_push(fs, OP_UNLINK, path, NULL, NULL);
    }
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static int mem_mkdir(const dl_io_t *io, const char *dir, dl_error_t *err) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    if (!has_dir(fs, dir)) {
        char **v = dl_realloc(fs->dirs, (fs->n_dirs + 1) * sizeof *v);
        char *d = dl_strdup(dir);
        if (v)
            fs->dirs = v;
        if (!v || !d) {
            dl_free(d);
            rc = dl_error_set(err, DL_ENOMEM, "mkdir: out of memory");
        } else {
            fs->dirs[fs->n_dirs++] = d;
        }
    }
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static int mem_fsync_dir(const dl_io_t *io, const char *dir, dl_error_t *err) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    fs->stats.dir_fsyncs++;
    if (halt_due(fs)) {
        rc = halted_error(err, "fsync directory");
        goto out;
    }
    if (fault_due(&fs->fail_fsync_in)) {
        rc = dl_error_set(err, DL_EIO, "fsync directory %s: injected fsync failure", dir);
        goto out;
    }
    /* Durable entries under dir := current entries under dir. */
    for (size_t i = 0; i < fs->dur.n;) {
        if (in_dir(fs->dur.v[i].path, dir) && !table_find(&fs->cur, fs->dur.v[i].path)) {
            dl_free(fs->dur.v[i].path);
            fs->dur.v[i] = fs->dur.v[--fs->dur.n];
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < fs->cur.n; i++) {
        if (in_dir(fs->cur.v[i].path, dir) &&
            table_put(&fs->dur, fs->cur.v[i].path, fs->cur.v[i].ino)) {
            rc = dl_error_set(err, DL_EIO, "fsync directory: out of memory");
            break;
        }
    }
    /* The changes under dir are durable now: drop them from the pending list. */
    size_t k = 0;
    for (size_t i = 0; i < fs->n_ops; i++) {
        if (in_dir(fs->ops[i].path, dir))
            op_free(&fs->ops[i]);
        else
            fs->ops[k++] = fs->ops[i];
    }
    fs->n_ops = k;
out:
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static int mem_list(const dl_io_t *io, const char *dir, int (*fn)(void *ctx, const char *name),
                    void *ctx, dl_error_t *err) {
    mem_fs_t *fs = io->ctx;
    /* Copy the names first: fn may call back into the file system. */
    pthread_mutex_lock(&fs->mu);
    if (!has_dir(fs, dir)) {
        pthread_mutex_unlock(&fs->mu);
        return dl_error_set(err, DL_ENOTFOUND, "opendir %s: no such directory", dir);
    }
    size_t n = 0;
    char **names = dl_malloc((fs->cur.n + 1) * sizeof *names);
    if (!names) {
        pthread_mutex_unlock(&fs->mu);
        return dl_error_set(err, DL_ENOMEM, "list: out of memory");
    }
    for (size_t i = 0; i < fs->cur.n; i++)
        if (in_dir(fs->cur.v[i].path, dir))
            names[n++] = dl_strdup(fs->cur.v[i].path + strlen(dir) + 1);
    pthread_mutex_unlock(&fs->mu);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] && !rc)
            rc = dl_error_set(err, DL_ENOMEM, "list: out of memory");
        if (!rc && names[i])
            rc = fn(ctx, names[i]);
        dl_free(names[i]);
    }
    dl_free(names);
    return rc;
}

static int mem_lock(const dl_io_t *io, const char *dir, void **out_lock, dl_error_t *err) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    for (size_t i = 0; i < fs->n_locked; i++) {
        if (strcmp(fs->locked[i], dir) == 0) {
            rc = dl_error_set(err, DL_ELOCKED, "%s: locked by pid %ld", dir, (long)getpid());
            goto out;
        }
    }
    char **v = dl_realloc(fs->locked, (fs->n_locked + 1) * sizeof *v);
    char *d = dl_strdup(dir);
    if (v)
        fs->locked = v;
    if (!v || !d) {
        dl_free(d);
        rc = dl_error_set(err, DL_ENOMEM, "lock: out of memory");
        goto out;
    }
    fs->locked[fs->n_locked++] = d;
    *out_lock = d;
out:
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

static void mem_unlock(const dl_io_t *io, void *lock) {
    if (!lock)
        return;
    mem_fs_t *fs = io->ctx;
    pthread_mutex_lock(&fs->mu);
    for (size_t i = 0; i < fs->n_locked; i++) {
        if (fs->locked[i] == lock) {
            dl_free(fs->locked[i]);
            fs->locked[i] = fs->locked[--fs->n_locked];
            break;
        }
    }
    pthread_mutex_unlock(&fs->mu);
}

int dl__io_mem_new(dl_io_t **out, dl_error_t *err) {
    dl_io_t *io = dl_calloc(1, sizeof *io);
    mem_fs_t *fs = dl_calloc(1, sizeof *fs);
    if (!io || !fs) {
        dl_free(io);
        dl_free(fs);
        return dl_error_set(err, DL_ENOMEM, "io_mem_new: out of memory");
    }
    pthread_mutex_init(&fs->mu, NULL);
    *io = posix_io;
    io->name = "mem";
    io->ctx = fs;
    io->open = mem_open;
    io->pread = mem_pread;
    io->pwrite = mem_pwrite;
    io->fsync = mem_fsync;
    io->ftruncate = mem_ftruncate;
    io->size = mem_size;
    io->close = mem_close;
    io->rename = mem_rename;
    io->unlink = mem_unlink;
    io->mkdir = mem_mkdir;
    io->fsync_dir = mem_fsync_dir;
    io->list = mem_list;
    io->lock = mem_lock;
    io->unlock = mem_unlock;
    *out = io;
    return 0;
}

void dl__io_mem_free(dl_io_t *io) {
    if (!io)
        return;
    mem_fs_t *fs = io->ctx;
    table_fini(&fs->cur);
    table_fini(&fs->dur);
    for (size_t i = 0; i < fs->n_ops; i++)
        op_free(&fs->ops[i]);
    dl_free(fs->ops);
    for (mem_inode_t *ino = fs->all, *next; ino; ino = next) {
        next = ino->next_all;
        dl_free(ino->cur.data);
        dl_free(ino->dur.data);
        dl_free(ino);
    }
    for (size_t i = 0; i < fs->n_dirs; i++)
        dl_free(fs->dirs[i]);
    dl_free(fs->dirs);
    for (size_t i = 0; i < fs->n_locked; i++)
        dl_free(fs->locked[i]);
    dl_free(fs->locked);
    pthread_mutex_destroy(&fs->mu);
    dl_free(fs);
    dl_free(io);
}

void dl__io_mem_fail_write(dl_io_t *io, int64_t n, size_t torn_bytes) {
    mem_fs_t *fs = io->ctx;
    pthread_mutex_lock(&fs->mu);
    fs->fail_write_in = n;
    fs->torn_bytes = torn_bytes;
    pthread_mutex_unlock(&fs->mu);
}

void dl__io_mem_halt_after(dl_io_t *io, int64_t n) {
    mem_fs_t *fs = io->ctx;
    pthread_mutex_lock(&fs->mu);
    fs->halt_in = n;
    fs->halted = false;
    pthread_mutex_unlock(&fs->mu);
}

void dl__io_mem_fail_fsync(dl_io_t *io, int64_t n) {
    mem_fs_t *fs = io->ctx;
    pthread_mutex_lock(&fs->mu);
    fs->fail_fsync_in = n;
    pthread_mutex_unlock(&fs->mu);
}

void dl__io_mem_crash(dl_io_t *io, int mode, uint64_t seed) {
    mem_fs_t *fs = io->ctx;
    pthread_mutex_lock(&fs->mu);
    uint64_t s = seed;
    for (mem_inode_t *ino = fs->all; ino; ino = ino->next_all) {
        size_t keep = ino->dur.len;
        if (mode == DL_IO_CRASH_TEAR && ino->cur.len > ino->dur.len &&
            (ino->dur.len == 0 || memcmp(ino->cur.data, ino->dur.data, ino->dur.len) == 0)) {
            /* splitmix64 step: a random prefix of the unsynced tail survives. */
            uint64_t z = (s += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            /* A quarter of the time the whole tail reached the disk (write-back got to
             * it), otherwise a random prefix of it did. */
            size_t tail = ino->cur.len - ino->dur.len;
            keep = ino->dur.len + ((z >> 32) % 4 == 0 ? tail : (size_t)(z % (tail + 1)));
        }
        if (keep > ino->dur.len) {
            ino->cur.len = keep; /* cur already holds dur as its prefix */
        } else {
            (void)image_copy(&ino->cur, &ino->dur);
        }
    }
    /* Names revert to the durable table, plus (TEAR) a random subset of the unsynced
     * name changes, in order (model rule 4). */
    for (size_t i = 0; i < fs->n_ops; i++) {
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        mem_op_t *op = &fs->ops[i];
        if (mode == DL_IO_CRASH_TEAR && ((z ^ (z >> 31)) & 1)) {
            if (op->kind == OP_CREATE) {
                (void)table_put(&fs->dur, op->path, op->ino);
            } else if (op->kind == OP_RENAME) {
                mem_entry_t *e = table_find(&fs->dur, op->path);
                if (e) {
                    mem_inode_t *ino = e->ino;
                    table_del(&fs->dur, op->path);
                    (void)table_put(&fs->dur, op->to, ino);
                }
            } else {
                table_del(&fs->dur, op->path);
            }
        }
        op_free(op);
    }
    fs->n_ops = 0;
    table_fini(&fs->cur);
    for (size_t i = 0; i < fs->dur.n; i++)
        (void)table_put(&fs->cur, fs->dur.v[i].path, fs->dur.v[i].ino);
    for (size_t i = 0; i < fs->n_locked; i++)
        dl_free(fs->locked[i]);
    fs->n_locked = 0;
    fs->fail_write_in = fs->fail_fsync_in = 0;
    fs->halt_in = 0;
    fs->halted = false;
    pthread_mutex_unlock(&fs->mu);
}

int dl__io_mem_flip(dl_io_t *io, const char *path, uint64_t off, int bit) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    mem_entry_t *e = table_find(&fs->cur, path);
    if (!e)
        rc = DL_ENOTFOUND;
    else if (off >= e->ino->cur.len)
        rc = DL_ERANGE;
    else {
        e->ino->cur.data[off] ^= (uint8_t)(1u << (bit & 7));
        if (off < e->ino->dur.len)
            e->ino->dur.data[off] ^= (uint8_t)(1u << (bit & 7));
    }
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

int dl__io_mem_file_size(dl_io_t *io, const char *path, uint64_t *out) {
    mem_fs_t *fs = io->ctx;
    int rc = 0;
    pthread_mutex_lock(&fs->mu);
    mem_entry_t *e = table_find(&fs->cur, path);
    if (!e)
        rc = DL_ENOTFOUND;
    else
        *out = e->ino->cur.len;
    pthread_mutex_unlock(&fs->mu);
    return rc;
}

void dl__io_mem_stats(dl_io_t *io, dl_io_mem_stats_t *out) {
    mem_fs_t *fs = io->ctx;
    pthread_mutex_lock(&fs->mu);
    *out = fs->stats;
    pthread_mutex_unlock(&fs->mu);
}

/* ---- helpers ------------------------------------------------------------------------ */

int dl__io_read_exact(dl_io_file_t *f, const char *path, void *buf, size_t n, uint64_t off,
                      dl_error_t *err) {
    size_t got = 0;
    int rc = f->io->pread(f, buf, n, off, &got, err);
    if (rc)
        return rc;
    if (got != n)
        return dl_error_set_at(err, DL_ECORRUPT, 0, 0, (int64_t)(off + got),
                               "%s: unexpected end of file at offset %llu (wanted %zu bytes)", path,
                               (unsigned long long)(off + got), n);
    return 0;
}
