/*
 * io.h: the file-system interface of the store (a small VFS in the manner of SQLite's).
 *
 * Every byte the durable log and the checkpoints read or write goes through a dl_io_t, a
 * table of function pointers. Two implementations live in store/io.c:
 *   - dl__io_posix(): plain POSIX calls (open/pread/pwrite/fdatasync/rename/...). The
 *     synchronous store path uses POSIX directly rather than libuv's fs functions: the
 *     log runs on the committing threads (not on an event loop) and libuv's synchronous
 *     mode would only add a layer. The runtime may still wrap it.
 *   - dl__io_mem_new(): an in-memory file system for tests that models what a power loss
 *     may keep. Each file has a "current" image and a "durable" image (what fsync saved);
 *     each directory has a current and a durable name table (what fsync_dir saved). It
 *     injects faults: fail the Nth write or fsync (optionally writing a torn prefix
 *     first), simulate a crash (drop everything not fsynced, or keep a torn prefix of the
 *     unsynced tail of each file), flip a bit.
 * It does not buffer, cache or retry: callers see every error. Paths are full paths built
 * by the caller ("dir/name"); directories are flat (the log keeps one directory).
 * Follows docs/storage-format.md (section "I/O layer") and STYLE.md "Layers".
 */
#ifndef DL_STORE_IO_H
#define DL_STORE_IO_H

#include <deltalog/error.h>

#include <stdbool.h>
#include <stdint.h>

typedef struct dl_io dl_io_t;
typedef struct dl_io_file dl_io_file_t;

/* Open flags. */
enum {
    DL_IO_READ = 0,   /* read only */
    DL_IO_WRITE = 1,  /* read and write */
    DL_IO_CREATE = 2, /* create if missing (with DL_IO_WRITE) */
    DL_IO_EXCL = 4,   /* with DL_IO_CREATE: fail with DL_EEXISTS if present */
};

/* An open file. Implementations embed this as their first member. */
struct dl_io_file {
    const dl_io_t *io; /* the table that opened it */
};

/* The table. Every function returns 0 or a negative DL_E... code and fills err.
 * A missing file is DL_ENOTFOUND; any other OS failure is DL_EIO with errno's text. */
struct dl_io {
    const char *name; /* "posix", "mem" */
    void *ctx;        /* implementation state */
    int (*open)(const dl_io_t *io, const char *path, int flags, dl_io_file_t **out,
                dl_error_t *err);
    /* Reads up to n bytes at off; *out_n < n only at end of file. */
    int (*pread)(dl_io_file_t *f, void *buf, size_t n, uint64_t off, size_t *out_n,
                 dl_error_t *err);
    /* Writes all n bytes at off (extending the file), or fails. A failed write may have
     * written a prefix: callers truncate back before continuing. */
    int (*pwrite)(dl_io_file_t *f, const void *buf, size_t n, uint64_t off, dl_error_t *err);
    /* Makes the file's data (and size) durable. */
    int (*fsync)(dl_io_file_t *f, dl_error_t *err);
    int (*ftruncate)(dl_io_file_t *f, uint64_t size, dl_error_t *err);
    int (*size)(dl_io_file_t *f, uint64_t *out, dl_error_t *err);
    void (*close)(dl_io_file_t *f); /* NULL-safe */
    /* Atomically replaces `to` with `from` (same directory). */
    int (*rename)(const dl_io_t *io, const char *from, const char *to, dl_error_t *err);
    int (*unlink)(const dl_io_t *io, const char *path, dl_error_t *err);
    /* Creates the directory if missing (parents must exist). */
    int (*mkdir)(const dl_io_t *io, const char *dir, dl_error_t *err);
    /* Makes the directory's entries (creations, renames, unlinks) durable. */
    int (*fsync_dir)(const dl_io_t *io, const char *dir, dl_error_t *err);
    /* Calls fn(ctx, name) for every regular file in dir, in no particular order; a
     * nonzero return from fn stops the listing and is returned. */
    int (*list)(const dl_io_t *io, const char *dir, int (*fn)(void *ctx, const char *name),
                void *ctx, dl_error_t *err);
    /* Takes the exclusive writer lock of dir (one process per directory; a second
     * holder, even in the same process, fails with DL_ELOCKED "locked by pid N").
     * *out_lock is new: release with unlock. */
    int (*lock)(const dl_io_t *io, const char *dir, void **out_lock, dl_error_t *err);
    void (*unlock)(const dl_io_t *io, void *lock); /* NULL-safe */
};

/* The POSIX implementation (static; never freed). */
const dl_io_t *dl__io_posix(void);

/* ---- the in-memory, fault-injecting implementation (tests) ---------------------------- */

/* Crash modes for dl__io_mem_crash. */
enum {
    DL_IO_CRASH_DROP = 0, /* every unsynced write and unsynced directory change is lost */
    DL_IO_CRASH_TEAR = 1, /* as DROP, but each file keeps a random-length prefix of the
                             bytes appended since its last fsync (a torn tail), or all
                             of them (a quarter of the time) */
};

/* new: an empty in-memory file system; free with dl__io_mem_free (after closing every
 * file and log that uses it). Not thread-safe by itself: it takes an internal mutex per
 * call so a log with a background flusher may use it. */
int dl__io_mem_new(dl_io_t **out, dl_error_t *err);
void dl__io_mem_free(dl_io_t *io);
/* The next n-th write (n = 1: the very next) fails with DL_EIO; when torn_bytes > 0 that
 * failing write first stores its first min(torn_bytes, len) bytes. n = 0 disarms. */
void dl__io_mem_fail_write(dl_io_t *io, int64_t n, size_t torn_bytes);
/* Simulated power cut in the middle of work: the n-th change from now (a write,
 * fsync, directory fsync, truncation, creation, rename or unlink; n = 1: the next) and
 * every change after it fail with DL_EIO and do nothing, until dl__io_mem_crash.
 * n = 0 disarms. */
void dl__io_mem_halt_after(dl_io_t *io, int64_t n);
/* The next n-th fsync (file or directory) fails with DL_EIO and saves nothing. */
void dl__io_mem_fail_fsync(dl_io_t *io, int64_t n);
/* Simulates a power loss: every file's current image becomes its durable image (DROP) or
 * the durable image plus a prefix of the unsynced tail chosen with `seed` (TEAR); name
 * tables revert to their durable state; locks are released. Open handles must have been
 * abandoned: the caller closes its logs with dl__log_abandon first. */
void dl__io_mem_crash(dl_io_t *io, int mode, uint64_t seed);
/* Flips bit `bit` (0-7) of byte `off` of `path` in both images. DL_ENOTFOUND / DL_ERANGE. */
int dl__io_mem_flip(dl_io_t *io, const char *path, uint64_t off, int bit);
/* Test inspection: size of the current image; DL_ENOTFOUND when missing. */
int dl__io_mem_file_size(dl_io_t *io, const char *path, uint64_t *out);
/* Counters since creation. */
typedef struct dl_io_mem_stats {
    int64_t writes, fsyncs, dir_fsyncs, files;
} dl_io_mem_stats_t;
void dl__io_mem_stats(dl_io_t *io, dl_io_mem_stats_t *out);

/* ---- helpers over any dl_io_t ------------------------------------------------------- */

/* Reads exactly n bytes at off; a short read is DL_ECORRUPT naming path and offset. */
int dl__io_read_exact(dl_io_file_t *f, const char *path, void *buf, size_t n, uint64_t off,
                      dl_error_t *err) DL_WUR;

/* The POSIX lock helpers (store/lock.c), used by the POSIX table. */
int dl__lock_acquire(const char *dir, void **out_lock, dl_error_t *err) DL_WUR;
void dl__lock_release(void *lock);

#endif
