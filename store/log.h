/*
 * log.h: the durable, compressed, checksummed transaction log of the store, with group
 * commit, checkpoints, crash recovery and fsck (store/log.c).
 *
 * Records are opaque payloads tagged with the caller's transaction number; the log does
 * not know datoms. The on-disk format is docs/storage-format.md. All file I/O goes
 * through a dl_io_t (store/io.h).
 *
 * Threading contract:
 *   - dl__log_append is called by one thread at a time (the store's writer lock).
 *   - dl__log_sync may be called concurrently by any number of committing threads,
 *     outside the writer lock; concurrent callers share one fsync (group commit).
 *   - dl__log_checkpoint_write may run on a background thread while appends and syncs
 *     continue; it takes the log mutex only to snapshot and edit the segment list.
 *   - dl__log_replay, dl__log_checkpoint_read: after open, before appends (recovery).
 *   - dl__log_close: once, after every other call has returned.
 */
#ifndef DL_STORE_LOG_H
#define DL_STORE_LOG_H

#include "store/io.h"

#include <deltalog/error.h>

#include <stddef.h>
#include <stdint.h>

typedef struct dl_log dl_log_t;

/* Sync modes. */
enum {
    DL_SYNC_EVERY = 0,   /* dl__log_sync returns once the record is fsynced (default) */
    DL_SYNC_BATCHED = 1, /* dl__log_sync returns once the record is written to the OS
                            (survives a process crash); a flusher thread fsyncs at most
                            batch_ms after the first unsynced append, so a power loss
                            loses at most the last batch_ms of acknowledged commits */
    DL_SYNC_NONE = 2,    /* no fsync until close or checkpoint (tests, bulk loads) */
};

/* Caller-allocated; zero-initialised means every default. */
typedef struct dl_log_options {
    int sync_mode;        /* DL_SYNC_*; default DL_SYNC_EVERY */
    int batch_ms;         /* DL_SYNC_BATCHED bound; 0 -> 10 ms */
    size_t segment_bytes; /* rotate after this many bytes; 0 -> 64 MiB */
    const dl_io_t *io;    /* borrowed, outlives the log; NULL -> dl__io_posix() */
    int zstd_level;       /* 0 -> 1 (fast); negative -> store records uncompressed */
    int checkpoints_kept; /* 0 -> 2 (newest + one fallback); 1 keeps only the newest */
    int group_commit_us;  /* longest wait of a group-commit leader for its group; 0 ->
                             100 us; negative -> never wait (see gather() in log.c) */
    int eager_retention;  /* 1: segments covered by the oldest kept checkpoint go as soon as
                             it is verified, even while fewer than checkpoints_kept exist,
                             and a fully covered active segment is rotated so that it can
                             go too (the store's default); 0: segments stay until
                             checkpoints_kept checkpoints exist */
} dl_log_options_t;

typedef struct dl_log_stats {
    uint64_t records;              /* records in the log files (since the oldest segment) */
    uint64_t raw_bytes;            /* payload bytes of those records before compression */
    uint64_t stored_bytes;         /* their compressed bodies plus record headers */
    double compression_ratio;      /* raw_bytes / stored_bytes (0 when empty) */
    uint64_t segment_bytes;        /* bytes of every segment file */
    uint64_t checkpoint_bytes;     /* bytes of every checkpoint file */
    uint64_t bytes_on_disk;        /* segment_bytes + checkpoint_bytes */
    uint64_t segments;             /* segment files */
    uint64_t fsyncs;               /* fsyncs of log files issued by this handle */
    uint64_t group_commits;        /* dl__log_sync calls satisfied by another thread's fsync */
    uint64_t truncated_bytes;      /* torn tail removed by recovery at open (including the
                                      preallocated zeros of a crashed sync-every log) */
    uint64_t torn_chunks;          /* 1 when that tail held part of a chunk, not only zeros */
    uint64_t last_lsn;             /* last appended lsn (0 = none) */
    uint64_t durable_lsn;          /* every lsn <= this is durable per the sync mode */
    uint64_t synced_lsn;           /* every lsn <= this was fsynced (any sync mode) */
    uint64_t last_tx;              /* tx of the last record (0 = none) */
    uint64_t checkpoint_tx;        /* covers_tx of the newest checkpoint (0 = none) */
    uint64_t checkpoint_fallbacks; /* reads that skipped a corrupt newest checkpoint */
} dl_log_stats_t;

/* Opens (creating dir if needed) the log in dir, takes the directory lock and recovers:
 * verifies every record of every segment, truncates a torn last record of the last
 * segment (stats.truncated_bytes), deletes leftover temporary files.
 * Errors: DL_ELOCKED "locked by pid N"; DL_ECORRUPT naming file and offset (err->offset)
 * for a checksum failure that is not a torn tail; DL_EVERSION for an unknown format
 * version; DL_EIO. opt may be NULL. *out is new: dl__log_close. */
int dl__log_open(const char *dir, const dl_log_options_t *opt, dl_log_t **out,
                 dl_error_t *err) DL_WUR;

/* Appends one record (payload borrowed, n <= DL_LOG_MAX_RECORD); tx must be >= the tx
 * of the previous record. *out_lsn (optional) receives its log sequence number, to pass
 * to dl__log_sync. The record is not acknowledged until dl__log_sync returns 0.
 * The record is buffered: it is written (as part of a chunk) by the next dl__log_sync,
 * or here once 256 KiB are pending. After a failed write or fsync (reported by whichever
 * call performed it) every call fails with DL_EIO until the log is closed and reopened:
 * the kernel may have dropped dirty pages, so only recovery knows what is on disk.
 * Records appended but not acknowledged are in doubt: present or not after recovery. */
int dl__log_append(dl_log_t *log, uint64_t tx, const void *payload, size_t n, uint64_t *out_lsn,
                   dl_error_t *err) DL_WUR;
#define DL_LOG_MAX_RECORD ((size_t)256 << 20)

/* Returns when lsn is durable per the sync mode (see DL_SYNC_*). Concurrent callers share
 * fsyncs: the first becomes the leader and syncs everything appended so far; the others
 * wait on a condition variable. DL_EIO when the fsync failed. */
int dl__log_sync(dl_log_t *log, uint64_t lsn, dl_error_t *err) DL_WUR;

/* Calls fn(ctx, tx, payload, n) for every record with tx > after_tx in log order; payload
 * is borrowed for the call. A nonzero return from fn stops the replay and is returned.
 * Verifies checksums again: DL_ECORRUPT with file and offset. */
int dl__log_replay(dl_log_t *log, uint64_t after_tx,
                   int (*fn)(void *ctx, uint64_t tx, const void *payload, size_t n), void *ctx,
                   dl_error_t *err) DL_WUR;

/* Writes a checkpoint: blob (borrowed) must reflect exactly the records with tx <=
 * covers_tx. Compressed and checksummed into a temporary file, fsynced, renamed into
 * place, directory fsynced; only then are older checkpoints beyond checkpoints_kept and
 * the segments covered by the oldest kept checkpoint removed. covers_tx must not exceed
 * the last appended tx. Safe on a background thread while appends continue. */
int dl__log_checkpoint_write(dl_log_t *log, uint64_t covers_tx, const void *blob, size_t n,
                             dl_error_t *err) DL_WUR;

/* Reads the newest checkpoint: *out_blob is new (dl_free). DL_ENOTFOUND when there is
 * none. When the newest is corrupt and an older one is kept and intact, the older one is
 * returned (the log still holds every record after it) and stats.checkpoint_fallbacks
 * counts it; when none is intact, DL_ECORRUPT naming the newest file and offset. */
int dl__log_checkpoint_read(dl_log_t *log, uint64_t *out_covers_tx, void **out_blob, size_t *out_n,
                            dl_error_t *err) DL_WUR;

/* Closes: flushes and fsyncs what was appended (in every sync mode), releases the lock.
 * NULL-safe. */
void dl__log_close(dl_log_t *log);
/* Test hook for simulated crashes: frees the handle and releases the lock without
 * writing or syncing anything more. */
void dl__log_abandon(dl_log_t *log);

void dl__log_stats(dl_log_t *log, dl_log_stats_t *out);

/* fsck report. */
typedef struct dl_log_fsck {
    uint64_t segments, records, raw_bytes, stored_bytes, segment_bytes;
    uint64_t checkpoints, checkpoint_bytes, checkpoint_raw_bytes;
    double compression_ratio;   /* raw / stored over segments */
    uint64_t torn_tail_bytes;   /* unverifiable tail of the last segment (not an error) */
    uint64_t first_tx, last_tx; /* tx range in the log (0 when empty) */
    uint64_t newest_checkpoint_tx;
    int problems;            /* count of corrupt files */
    char first_problem[512]; /* "" when clean; otherwise file, offset and reason */
} dl_log_fsck_t;

/* Verifies, without the lock and without changing anything, every record checksum and
 * zstd stream of every segment and every checkpoint in dir. Fills *out (when not NULL)
 * and returns 0 when clean, DL_ECORRUPT (with the first problem, err->offset) otherwise.
 * io may be NULL (POSIX). */
int dl__log_fsck(const char *dir, const dl_io_t *io, dl_log_fsck_t *out, dl_error_t *err) DL_WUR;

/* Operator repair, never automatic: when the open fails with DL_ECORRUPT because of a
 * damaged chunk in the LAST segment, truncates that segment at the damaged chunk (and
 * fsyncs it), dropping that chunk and every later one of the segment; *out_dropped
 * (optional) receives the bytes removed. For the case the log cannot tell from
 * corruption (docs/storage-format.md "Known limitations": a power loss that kept a
 * later unsynced chunk but not an earlier one). Takes the directory lock. Refuses
 * (DL_ECORRUPT, nothing changed) when an earlier segment or a segment header is
 * damaged: that would drop records in the middle of the log. 0 and *out_dropped = 0
 * when there is nothing to repair. */
int dl__log_repair(const char *dir, const dl_io_t *io, uint64_t *out_dropped,
                   dl_error_t *err) DL_WUR;

/* ---- the checkpoint file format (store/checkpoint.c), used by log.c --------------- */

/* "<dir>/ckpt-<16 hex covers>.dlck", or ".tmp" while being written. */
void dl__checkpoint_name(char *out, size_t cap, const char *dir, uint64_t covers, bool tmp);
/* Encodes blob (borrowed) as a checkpoint file image; *out is new (dl_free). level <= 0
 * means zstd level 3. */
int dl__checkpoint_encode(uint64_t covers, const void *blob, size_t n, int level, uint8_t **out,
                          size_t *out_n, dl_error_t *err) DL_WUR;
/* Verifies and decodes a file image read from path (for messages). *out_blob is new when
 * out_blob is not NULL (NULL: verify only); *out_n (optional) gets the blob's length.
 * DL_ECORRUPT with the offset of the damaged chunk; DL_EVERSION. */
int dl__checkpoint_decode(const char *path, const uint8_t *buf, size_t size, uint64_t *out_covers,
                          void **out_blob, size_t *out_n, dl_error_t *err) DL_WUR;
/* Writes the image atomically: temporary file, fsync, rename, directory fsync. */
int dl__checkpoint_write_file(const dl_io_t *io, const char *dir, uint64_t covers,
                              const uint8_t *buf, size_t n, dl_error_t *err) DL_WUR;

/* CRC-32C (Castagnoli), shared by log and checkpoints: the SSE4.2 instruction when the
 * CPU has it (unless DL_CRC_SOFTWARE is set in the environment), else software
 * slicing-by-8. crc is the value of the preceding bytes (0 to start). */
uint32_t dl__log_crc32c(uint32_t crc, const void *p, size_t n);
/* The software path alone (tests compare the two). */
uint32_t dl__log_crc32c_sw(uint32_t crc, const void *p, size_t n);

#endif
