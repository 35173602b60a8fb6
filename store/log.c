/*
 * log.c: the durable transaction log: segment files of chunks (length-framed, CRC-32C
 * checked, zstd-compressed groups of records); group commit; checkpoints; recovery at
 * open; fsck.
 *
 * It does not interpret payloads (the store encodes transactions) and does not decide
 * when to checkpoint (the store does). Format: docs/storage-format.md. Issue 3
 * "Durability"; STYLE.md "Errors" (a failed step leaves no partial state).
 *
 * Design notes (invariants and states):
 *   1. LSNs are dense: the records of a segment whose header says first_lsn = F have
 *      lsns F, F+1, ... in file order, and each segment starts at the previous segment's
 *      last lsn + 1. Transaction numbers never decrease along the log.
 *   2. Records are written in chunks: the records appended since the last write (one
 *      commit, a commit group, or up to 256 KiB in bulk) are encoded, compressed and
 *      written as one chunk with its own header and checksums. Each segment holds one
 *      zstd stream, flushed (ZSTD_e_flush) at the end of every chunk, so a chunk decodes
 *      once the chunks before it in the segment were decoded, and small records compress
 *      against their predecessors. Hence a segment is only ever appended to by the handle
 *      that created it: every open starts a new segment (or reuses an empty last one).
 *   3. written_lsn <= appended (next_lsn - 1): records after written_lsn sit in praw, in
 *      memory. durable_lsn <= written_lsn: records up to durable_lsn were fsynced. A
 *      record is acknowledged only when dl__log_sync(lsn) returned 0.
 *   4. At most one thread fsyncs the active segment at a time (`syncing`, the group
 *      commit leader), outside the mutex; rotation waits for it to finish before
 *      closing the file. Followers wait on `cond` and re-check durable_lsn. Writing a
 *      chunk (under the mutex) may overlap the leader's fsync of the same file.
 *   5. A failed write or fsync poisons the handle (`failed`): every later call returns
 *      DL_EIO. After a failed fsync the kernel may have dropped dirty pages, so nothing
 *      written since the last good fsync can be trusted; reopening runs recovery.
 *   6. Segments are removed only after a checkpoint covering all their records is
 *      durable (file fsynced, renamed, directory fsynced), and only as a prefix of the
 *      segment list; the active segment is never removed.
 *   7. Recovery: a chunk of the last segment that cannot be read completely (short or
 *      unparsable header, header checksum failure, body beyond end of file) is a torn
 *      tail iff no valid chunk follows it in that file; it is truncated, and the last
 *      segment is fsynced. Any other checksum failure, in any segment, is DL_ECORRUPT
 *      with file and offset. A torn chunk loses only unacknowledged records: a chunk is
 *      acknowledged only after it was written whole and fsynced.
 *   8. DL_SYNC_EVERY preallocates: the active file is zero-filled (written, not
 *      fallocated) up to prealloc_end >= active_off, ahead of the chunks, so a commit's
 *      fdatasync overwrites allocated blocks without a size change and skips the
 *      journal commit (3-8x cheaper on ext4). The zeros never parse as a chunk
 *      (n_records = 0), so after a crash they are a torn tail (invariant 7); rotation and
 *      close trim them (ftruncate to active_off) before the final fsync.
 * Transitions: open (recover, new active segment) -> append* / sync* / checkpoint* ->
 * close (flush, fsync) | abandon (tests: drop). Any write/fsync error -> failed.
 */
#include "store/log.h"

#include "base/base.h"

#include <deltalog/alloc.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#define SEG_MAGIC      "DLLOGSEG"
#define FORMAT_VERSION 1u
#define SEG_HDR        32u /* magic 8, version 4, codec 4, first_lsn 8, reserved 4, crc 4 */
#define CHUNK_FIXED    8u  /* hcrc 4, bcrc 4, then five varints */
#define CHUNK_HDR_MAX  (CHUNK_FIXED + 5u * 10u)
#define CODEC_RAW      0u
#define CODEC_ZSTD     1u
#define PENDING_FLUSH  ((size_t)256 << 10) /* raw bytes that trigger writing a chunk */
#define MAX_CHUNK_RAW  (2 * (uint64_t)DL_LOG_MAX_RECORD)

/* ---- CRC-32C, slicing-by-8 ---------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#define HAVE_CRC_HW 1
/* The SSE4.2 crc32 instruction computes exactly CRC-32C; used when the CPU has it. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p,
                                                            size_t n) {
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
static bool crc_hw;
#endif

static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
#ifdef HAVE_CRC_HW
    crc_hw = __builtin_cpu_supports("sse4.2") && !getenv("DL_CRC_SOFTWARE");
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t dl__log_crc32c(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
#ifdef HAVE_CRC_HW
    if (crc_hw)
        return crc32c_hw(crc, data, n);
#endif
    return dl__log_crc32c_sw(crc, data, n);
}

uint32_t dl__log_crc32c_sw(uint32_t crc, const void *data, size_t n) {
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
        n--;
    }
    while (n >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

/* LEB128: 7 bits per byte, low groups first, high bit = more. */
static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint at *pos (< n); false when truncated or longer than 10 bytes. */
static bool get_varint(const uint8_t *p, size_t n, size_t *pos, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && *pos < n; shift += 7) {
        uint8_t b = p[(*pos)++];
        if (shift == 63 && b > 1)
            return false;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* ---- the handle --------------------------------------------------------------------- */

/* One segment file. Invariant: last_lsn = first_lsn + records - 1. */
typedef struct seg {
    uint64_t first_lsn, last_lsn;
    uint64_t records, raw_bytes, stored_bytes;
    uint64_t min_tx, max_tx; /* 0, 0 when empty */
    uint64_t bytes;          /* file size (valid part) */
} seg_t;

typedef struct ckpt {
    uint64_t covers_tx;
    uint64_t bytes;
} ckpt_t;

struct dl_log {
    char *dir;
    dl_log_options_t opt;
    const dl_io_t *io;
    void *lock;
    pthread_mutex_t mu;      /* guards everything below except ckpt_mu's work */
    pthread_cond_t cond;     /* sync finished / state changed */
    pthread_cond_t fcond;    /* wakes the batched flusher */
    pthread_cond_t gcond;    /* wakes a gathering leader when a record is appended */
    pthread_mutex_t ckpt_mu; /* serialises checkpoint writers */
    pthread_t flusher;
    bool flusher_running, stopping;

    seg_t *segs; /* sorted by first_lsn; the last one is active */
    size_t n_segs, cap_segs;
    ckpt_t *ckpts; /* sorted by covers_tx */
    size_t n_ckpts, cap_ckpts;

    dl_io_file_t *active;  /* the last segment, open for writing */
    uint64_t active_off;   /* bytes of the active file written to the OS */
    uint64_t prealloc_end; /* the active file is zero-filled up to here (invariant 8) */
    int codec;             /* of the active segment */
    ZSTD_CCtx *cctx;
    uint8_t *praw; /* records not yet written (invariant 3), encoded as in a chunk body */
    size_t plen, pcap;
    uint64_t p_records, p_first_tx, p_last_tx; /* of praw */
    uint8_t *wbuf;                             /* scratch: one framed, compressed chunk */
    size_t wcap;

    uint64_t next_lsn, last_tx;
    uint64_t written_lsn, durable_lsn;
    uint64_t unsynced_since_ns; /* batched: when the first unsynced record was appended */
    bool syncing;               /* a leader is fsyncing the active file (invariant 4) */
    bool gathering;             /* the leader waits for the rest of its group */
    uint64_t last_group;        /* records made durable by the last group fsync */
    int failed;                 /* 0, or the code that poisoned the handle (invariant 5) */
    char failed_msg[DL_ERROR_MSG_MAX];

    uint64_t fsyncs, group_commits, truncated_bytes, torn_chunks, ckpt_fallbacks;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void seg_name(char *out, size_t cap, const char *dir, uint64_t first_lsn) {
    snprintf(out, cap, "%s/log-%016" PRIx64 ".dlog", dir, first_lsn);
}

static int poison(dl_log_t *log, int rc, const dl_error_t *cause) {
    if (!log->failed) {
        log->failed = rc ? rc : DL_EIO;
        snprintf(log->failed_msg, sizeof log->failed_msg, "%s",
                 cause && cause->code ? cause->message : "I/O error");
    }
    return log->failed;
}

static int failed_error(dl_log_t *log, dl_error_t *err) {
    return dl_error_set(err, DL_EIO, "%s: log unusable after an earlier failure (%s); reopen",
                        log->dir, log->failed_msg);
}

static int push_seg(dl_log_t *log, const seg_t *s) {
    if (log->n_segs == log->cap_segs) {
        size_t cap = log->cap_segs ? log->cap_segs * 2 : 8;
        seg_t *v = dl_realloc(log->segs, cap * sizeof *v);
        if (!v)
            return DL_ENOMEM;
        log->segs = v;
        log->cap_segs = cap;
    }
    log->segs[log->n_segs++] = *s;
    return 0;
}

static int push_ckpt(dl_log_t *log, uint64_t covers, uint64_t bytes) {
    for (size_t i = 0; i < log->n_ckpts; i++) {
        if (log->ckpts[i].covers_tx == covers) {
            log->ckpts[i].bytes = bytes;
            return 0;
        }
    }
    if (log->n_ckpts == log->cap_ckpts) {
        size_t cap = log->cap_ckpts ? log->cap_ckpts * 2 : 4;
        ckpt_t *v = dl_realloc(log->ckpts, cap * sizeof *v);
        if (!v)
            return DL_ENOMEM;
        log->ckpts = v;
        log->cap_ckpts = cap;
    }
    size_t i = log->n_ckpts++;
    while (i > 0 && log->ckpts[i - 1].covers_tx > covers) {
        log->ckpts[i] = log->ckpts[i - 1];
        i--;
    }
    log->ckpts[i].covers_tx = covers;
    log->ckpts[i].bytes = bytes;
    return 0;
}

/* ---- reading a whole file ----------------------------------------------------------- */

/* Reads path completely. *out is new (dl_free). */
static int read_file(const dl_io_t *io, const char *path, uint8_t **out, size_t *out_n,
                     dl_error_t *err) {
    dl_io_file_t *f = NULL;
    int rc = io->open(io, path, DL_IO_READ, &f, err);
    if (rc)
        return rc;
    uint64_t size = 0;
    rc = io->size(f, &size, err);
    uint8_t *buf = NULL;
    if (!rc) {
        buf = dl_malloc(size ? (size_t)size : 1);
        if (!buf)
            rc = dl_error_set(err, DL_ENOMEM, "%s: out of memory reading %" PRIu64 " bytes", path,
                              size);
    }
    if (!rc)
        rc = dl__io_read_exact(f, path, buf, (size_t)size, 0, err);
    io->close(f);
    if (rc) {
        dl_free(buf);
        return rc;
    }
    *out = buf;
    *out_n = (size_t)size;
    return 0;
}

/* ---- scanning a segment ------------------------------------------------------------- */

typedef int (*record_fn)(void *ctx, uint64_t tx, const void *payload, size_t n);

typedef struct scan {
    seg_t seg;
    int codec;
    uint64_t torn_bytes; /* bytes after the valid part (last segment only) */
    bool torn_chunk;     /* those bytes are not only preallocated zeros (invariant 8) */
    bool short_header;   /* the file is shorter than a segment header */
} scan_t;

static int corrupt(dl_error_t *err, const char *path, uint64_t off, const char *what) {
    return dl_error_set_at(err, DL_ECORRUPT, 0, 0, (int64_t)off, "%s: %s at offset %" PRIu64, path,
                           what, off);
}

/* A parsed chunk header (docs/storage-format.md "Chunks"). */
typedef struct chunk_hdr {
    uint64_t body_len, raw_len, n_records, first_tx, tx_span;
    size_t hdr_len;
    uint32_t bcrc;
} chunk_hdr_t;

/* True when a chunk header at off parses, its checksum holds and its body lies inside
 * the file. */
static bool chunk_header_ok(const uint8_t *buf, size_t size, size_t off, chunk_hdr_t *h) {
    if (off >= size || size - off < CHUNK_FIXED + 5)
        return false;
    const uint8_t *p = buf + off;
    size_t avail = size - off, pos = CHUNK_FIXED;
    uint64_t v[5];
    for (int i = 0; i < 5; i++)
        if (!get_varint(p, avail, &pos, &v[i]))
            return false;
    /* Structure first (cheap; rejects preallocated zeros at once), then the checksum. */
    if (v[0] > avail - pos || v[1] > MAX_CHUNK_RAW || v[2] == 0 || v[2] > v[1] / 2)
        return false;
    if (dl__le_get32(p) != dl__log_crc32c(0, p + 4, pos - 4))
        return false;
    h->body_len = v[0];
    h->raw_len = v[1];
    h->n_records = v[2];
    h->first_tx = v[3];
    h->tx_span = v[4];
    h->hdr_len = pos;
    h->bcrc = dl__le_get32(p + 4);
    return true;
}

/* Invariant 7: is there a complete, checksummed chunk anywhere after `from`? */
static bool valid_chunk_after(const uint8_t *buf, size_t size, size_t from) {
    chunk_hdr_t h;
    for (size_t p = from + 1; p + CHUNK_FIXED + 5 <= size; p++) {
        if (chunk_header_ok(buf, size, p, &h) &&
            dl__log_crc32c(0, buf + p + h.hdr_len, (size_t)h.body_len) == h.bcrc)
            return true;
    }
    return false;
}

/* Decodes one body into *raw (grown as needed). */
static int decode_body(ZSTD_DCtx *dctx, int codec, const uint8_t *body, size_t body_len,
                       size_t raw_len, uint8_t **raw, size_t *raw_cap, const char *path,
                       uint64_t off, dl_error_t *err) {
    if (*raw_cap < raw_len || !*raw) {
        size_t cap = raw_len ? raw_len : 1;
        uint8_t *r = dl_realloc(*raw, cap);
        if (!r)
            return dl_error_set(err, DL_ENOMEM, "%s: out of memory", path);
        *raw = r;
        *raw_cap = cap;
    }
    if (codec == CODEC_RAW) {
        if (body_len != raw_len)
            return corrupt(err, path, off, "stored chunk length mismatch");
        memcpy(*raw, body, raw_len);
        return 0;
    }
    ZSTD_inBuffer in = {body, body_len, 0};
    ZSTD_outBuffer out = {*raw, raw_len, 0};
    for (;;) {
        size_t before_in = in.pos, before_out = out.pos;
        size_t r = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(r))
            return corrupt(err, path, off, ZSTD_getErrorName(r));
        if (in.pos == in.size && out.pos == out.size)
            break;
        if (in.pos == before_in && out.pos == before_out)
            return corrupt(err, path, off, "compressed chunk does not decode to its length");
    }
    return 0;
}

/* Verifies (and, when fn is set, decodes and delivers records with tx > after_tx of) the
 * segment `path`. For the last segment a torn tail is reported in scan->torn_bytes rather
 * than as an error (invariant 7). */
static int scan_segment(const dl_io_t *io, const char *path, bool is_last, record_fn fn, void *ctx,
                        uint64_t after_tx, scan_t *scan, dl_error_t *err) {
    memset(scan, 0, sizeof *scan);
    uint8_t *buf = NULL;
    size_t size = 0;
    int rc = read_file(io, path, &buf, &size, err);
    if (rc)
        return rc;
    ZSTD_DCtx *dctx = NULL;
    uint8_t *raw = NULL;
    size_t raw_cap = 0;
    if (size < SEG_HDR) {
        scan->short_header = true;
        scan->torn_bytes = size;
        if (!is_last)
            rc = corrupt(err, path, 0, "segment shorter than its header");
        goto out;
    }
    if (memcmp(buf, SEG_MAGIC, 8) != 0) {
        rc = corrupt(err, path, 0, "bad segment magic");
        goto out;
    }
    if (dl__le_get32(buf + SEG_HDR - 4) != dl__log_crc32c(0, buf, SEG_HDR - 4)) {
        rc = corrupt(err, path, 0, "segment header checksum mismatch");
        goto out;
    }
    if (dl__le_get32(buf + 8) != FORMAT_VERSION) {
        rc = dl_error_set_at(err, DL_EVERSION, 0, 0, 0,
                             "%s: segment format version %u, this build reads version %u", path,
                             dl__le_get32(buf + 8), FORMAT_VERSION);
        goto out;
    }
    scan->codec = (int)dl__le_get32(buf + 12);
    if (scan->codec != CODEC_RAW && scan->codec != CODEC_ZSTD) {
        rc = corrupt(err, path, 12, "unknown segment codec");
        goto out;
    }
    scan->seg.first_lsn = dl__le_get64(buf + 16);
    scan->seg.last_lsn = scan->seg.first_lsn - 1;
    if (fn && scan->codec == CODEC_ZSTD) {
        dctx = ZSTD_createDCtx();
        if (!dctx) {
            rc = dl_error_set(err, DL_ENOMEM, "%s: out of memory", path);
            goto out;
        }
    }
    size_t off = SEG_HDR;
    uint64_t prev_tx = 0;
    while (off < size) {
        chunk_hdr_t h;
        if (!chunk_header_ok(buf, size, off, &h)) {
            if (is_last && !valid_chunk_after(buf, size, off)) {
                scan->torn_bytes = size - off;
                for (size_t q = off; q < size && !scan->torn_chunk; q++)
                    scan->torn_chunk = buf[q] != 0;
                break;
            }
            rc = corrupt(err, path, off, "chunk header checksum mismatch");
            goto out;
        }
        const uint8_t *body = buf + off + h.hdr_len;
        if (dl__log_crc32c(0, body, (size_t)h.body_len) != h.bcrc) {
            rc = corrupt(err, path, off, "chunk checksum mismatch");
            goto out;
        }
        if (h.first_tx < prev_tx || h.tx_span > UINT64_MAX - h.first_tx) {
            rc = corrupt(err, path, off, "transaction number goes backwards");
            goto out;
        }
        uint64_t last_tx = h.first_tx + h.tx_span;
        if (fn) {
            rc = decode_body(dctx, scan->codec, body, (size_t)h.body_len, (size_t)h.raw_len, &raw,
                             &raw_cap, path, off, err);
            if (rc)
                goto out;
            /* The records: (varint length, varint tx delta, payload)*, deltas from first_tx. */
            size_t q = 0, rl = (size_t)h.raw_len;
            uint64_t tx = h.first_tx;
            for (uint64_t k = 0; k < h.n_records; k++) {
                uint64_t len, delta;
                if (!get_varint(raw, rl, &q, &len) || !get_varint(raw, rl, &q, &delta) ||
                    len > rl - q || delta > last_tx - tx || (k == 0 && delta)) {
                    rc = corrupt(err, path, off, "chunk contents malformed");
                    goto out;
                }
                tx += delta;
                if (tx > after_tx) {
                    rc = fn(ctx, tx, raw + q, (size_t)len);
                    if (rc)
                        goto out;
                }
                q += (size_t)len;
            }
            if (q != rl || tx != last_tx) {
                rc = corrupt(err, path, off, "chunk contents malformed");
                goto out;
            }
        }
        prev_tx = last_tx;
        seg_t *s = &scan->seg;
        if (s->records == 0)
            s->min_tx = h.first_tx;
        s->max_tx = last_tx;
        s->records += h.n_records;
        s->last_lsn += h.n_records;
        s->raw_bytes += h.raw_len;
        s->stored_bytes += h.hdr_len + h.body_len;
        off += h.hdr_len + (size_t)h.body_len;
    }
    scan->seg.bytes = size - scan->torn_bytes;
out:
    ZSTD_freeDCtx(dctx);
    dl_free(raw);
    dl_free(buf);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------ */

static bool grow(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 64 << 10;
    while (c < need)
        c *= 2;
    uint8_t *b = dl_realloc(*buf, c);
    if (!b)
        return false;
    *buf = b;
    *cap = c;
    return true;
}

/* Compresses the pending records into one chunk and writes it to the active file
 * (invariants 2 and 3). Caller holds mu. Any failure poisons the handle. */
static int flush_pending(dl_log_t *log, dl_error_t *err) {
    if (log->plen == 0)
        return 0;
    size_t bound = log->codec == CODEC_ZSTD ? ZSTD_compressBound(log->plen) + 64 : log->plen;
    if (!grow(&log->wbuf, &log->wcap, CHUNK_HDR_MAX + bound)) {
        poison(log, DL_ENOMEM, NULL);
        return dl_error_set(err, DL_ENOMEM, "%s: out of memory writing the log", log->dir);
    }
    size_t body_len = log->plen;
    if (log->codec == CODEC_ZSTD) {
        ZSTD_inBuffer in = {log->praw, log->plen, 0};
        ZSTD_outBuffer o = {log->wbuf + CHUNK_HDR_MAX, log->wcap - CHUNK_HDR_MAX, 0};
        for (;;) {
            size_t r = ZSTD_compressStream2(log->cctx, &o, &in, ZSTD_e_flush);
            if (ZSTD_isError(r)) {
                /* The stream state is unknown now: invariant 2 forbids more appends. */
                poison(log, DL_EINTERNAL, NULL);
                return dl_error_set(err, DL_EINTERNAL, "%s: zstd: %s", log->dir,
                                    ZSTD_getErrorName(r));
            }
            if (r == 0)
                break;
            if (!grow(&log->wbuf, &log->wcap, CHUNK_HDR_MAX + o.pos + r + 64)) {
                poison(log, DL_ENOMEM, NULL);
                return dl_error_set(err, DL_ENOMEM, "%s: out of memory writing the log", log->dir);
            }
            o.dst = log->wbuf + CHUNK_HDR_MAX;
            o.size = log->wcap - CHUNK_HDR_MAX;
        }
        body_len = o.pos;
    } else {
        memcpy(log->wbuf + CHUNK_HDR_MAX, log->praw, log->plen);
    }
    uint8_t hdr[CHUNK_HDR_MAX];
    size_t hl = CHUNK_FIXED;
    hl += put_varint(hdr + hl, body_len);
    hl += put_varint(hdr + hl, log->plen);
    hl += put_varint(hdr + hl, log->p_records);
    hl += put_varint(hdr + hl, log->p_first_tx);
    hl += put_varint(hdr + hl, log->p_last_tx - log->p_first_tx);
    dl__le_put32(hdr + 4, dl__log_crc32c(0, log->wbuf + CHUNK_HDR_MAX, body_len));
    dl__le_put32(hdr, dl__log_crc32c(0, hdr + 4, hl - 4));
    uint8_t *start = log->wbuf + CHUNK_HDR_MAX - hl;
    memcpy(start, hdr, hl);
    dl_error_t e = {0};
    int rc = 0;
    uint64_t end = log->active_off + hl + body_len;
    if (log->opt.sync_mode == DL_SYNC_EVERY && end > log->prealloc_end) {
        /* Invariant 8: zeros ahead of the chunks, in steps of up to 1 MiB. */
        static const uint8_t zeros[64 << 10];
        uint64_t step = log->opt.segment_bytes < ((uint64_t)1 << 20) ? log->opt.segment_bytes
                                                                     : ((uint64_t)1 << 20);
        uint64_t from = log->prealloc_end > log->active_off ? log->prealloc_end : log->active_off;
        uint64_t to = end + step;
        for (uint64_t off = from; off < to && !rc; off += sizeof zeros) {
            size_t len = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
            rc = log->io->pwrite(log->active, zeros, len, off, &e);
        }
        if (!rc)
            log->prealloc_end = to;
    }
    if (!rc)
        rc = log->io->pwrite(log->active, start, hl + body_len, log->active_off, &e);
    if (rc) {
        poison(log, rc, &e);
        return dl_error_set(err, DL_EIO, "%s: writing the log: %s", log->dir, e.message);
    }
    log->active_off += hl + body_len;
    seg_t *s = &log->segs[log->n_segs - 1];
    s->bytes = log->active_off;
    s->stored_bytes += hl + body_len;
    log->plen = 0;
    log->p_records = 0;
    log->written_lsn = log->next_lsn - 1;
    return 0;
}

/* Fsyncs the active file with mu held (used at rotation, close, checkpoint). */
static int sync_locked(dl_log_t *log, bool trim, dl_error_t *err) {
    while (log->syncing)
        pthread_cond_wait(&log->cond, &log->mu);
    if (log->failed)
        return failed_error(log, err);
    int rc = flush_pending(log, err);
    if (rc)
        return rc;
    dl_error_t e = {0};
    bool trimmed = false;
    if (trim && log->prealloc_end > log->active_off) {
        /* Invariant 8: a finished segment ends at its last chunk. */
        rc = log->io->ftruncate(log->active, log->active_off, &e);
        if (rc) {
            poison(log, rc, &e);
            return dl_error_set(err, DL_EIO, "%s: truncating the log: %s", log->dir, e.message);
        }
        log->prealloc_end = log->active_off;
        trimmed = true;
    }
    if (log->durable_lsn >= log->written_lsn && !trimmed)
        return 0;
    rc = log->io->fsync(log->active, &e);
    log->fsyncs++;
    if (rc) {
        poison(log, rc, &e);
        return dl_error_set(err, DL_EIO, "%s: fsync: %s", log->dir, e.message);
    }
    log->durable_lsn = log->written_lsn;
    pthread_cond_broadcast(&log->cond);
    return 0;
}

/* Creates segment first_lsn, writes and fsyncs its header, fsyncs the directory, and
 * makes it the active segment. Caller holds mu (or is open); the previous active file
 * is closed by the caller. */
static int start_segment(dl_log_t *log, dl_error_t *err) {
    char path[4096];
    seg_name(path, sizeof path, log->dir, log->next_lsn);
    dl_io_file_t *f = NULL;
    int rc = log->io->open(log->io, path, DL_IO_WRITE | DL_IO_CREATE, &f, err);
    if (rc)
        return rc;
    uint8_t h[SEG_HDR] = {0};
    memcpy(h, SEG_MAGIC, 8);
    dl__le_put32(h + 8, FORMAT_VERSION);
    dl__le_put32(h + 12, (uint32_t)log->codec);
    dl__le_put64(h + 16, log->next_lsn);
    dl__le_put32(h + SEG_HDR - 4, dl__log_crc32c(0, h, SEG_HDR - 4));
    seg_t s = {.first_lsn = log->next_lsn, .last_lsn = log->next_lsn - 1, .bytes = SEG_HDR};
    if ((rc = log->io->ftruncate(f, 0, err)) || (rc = log->io->pwrite(f, h, SEG_HDR, 0, err)) ||
        (rc = log->io->fsync(f, err)) || (rc = log->io->fsync_dir(log->io, log->dir, err))) {
        log->io->close(f);
        return rc;
    }
    log->fsyncs += 2;
    if (push_seg(log, &s)) {
        log->io->close(f);
        return dl_error_set(err, DL_ENOMEM, "%s: out of memory", log->dir);
    }
    log->active = f;
    log->active_off = SEG_HDR;
    log->prealloc_end = SEG_HDR;
    if (log->cctx)
        ZSTD_CCtx_reset(log->cctx, ZSTD_reset_session_only);
    return 0;
}

/* Invariant 2 and 4: finish the active segment (flush, fsync) and start the next. */
static int rotate(dl_log_t *log, dl_error_t *err) {
    int rc = sync_locked(log, true, err);
    if (rc)
        return rc;
    dl_io_file_t *old = log->active;
    log->active = NULL;
    rc = start_segment(log, err);
    if (rc) {
        log->active = old;
        poison(log, rc, err);
        return rc;
    }
    log->io->close(old);
    return 0;
}

int dl__log_append(dl_log_t *log, uint64_t tx, const void *payload, size_t n, uint64_t *out_lsn,
                   dl_error_t *err) {
    if (!log || (!payload && n))
        return dl_error_set(err, DL_EINVAL, "log_append: invalid argument");
    if (n > DL_LOG_MAX_RECORD)
        return dl_error_set(err, DL_ELIMIT, "log_append: record of %zu bytes exceeds %zu", n,
                            DL_LOG_MAX_RECORD);
    pthread_mutex_lock(&log->mu);
    int rc = 0;
    if (log->failed) {
        rc = failed_error(log, err);
        goto out;
    }
    if (tx < log->last_tx) {
        rc = dl_error_set(err, DL_EINVAL, "log_append: tx %" PRIu64 " after tx %" PRIu64, tx,
                          log->last_tx);
        goto out;
    }
    seg_t *s = &log->segs[log->n_segs - 1];
    if (s->records > 0 && log->active_off + log->plen >= log->opt.segment_bytes) {
        rc = rotate(log, err);
        if (rc)
            goto out;
        s = &log->segs[log->n_segs - 1];
    }
    /* Encode the record into the pending chunk body; compression happens when the
     * chunk is written (flush_pending), so a group of commits shares one chunk. */
    if (!grow(&log->praw, &log->pcap, log->plen + 20 + n)) {
        rc = dl_error_set(err, DL_ENOMEM, "log_append: out of memory");
        goto out;
    }
    if (log->p_records == 0)
        log->p_first_tx = log->p_last_tx = tx;
    size_t before = log->plen;
    log->plen += put_varint(log->praw + log->plen, n);
    log->plen += put_varint(log->praw + log->plen, tx - log->p_last_tx);
    if (n)
        memcpy(log->praw + log->plen, payload, n);
    log->plen += n;
    log->p_records++;
    log->p_last_tx = tx;
    uint64_t lsn = log->next_lsn++;
    if (s->records == 0)
        s->min_tx = tx;
    s->max_tx = tx;
    s->records++;
    s->last_lsn = lsn;
    s->raw_bytes += log->plen - before;
    log->last_tx = tx;
    if (log->gathering)
        pthread_cond_signal(&log->gcond);
    if (log->opt.sync_mode == DL_SYNC_BATCHED && log->unsynced_since_ns == 0) {
        log->unsynced_since_ns = now_ns();
        pthread_cond_signal(&log->fcond);
    }
    if (out_lsn)
        *out_lsn = lsn;
    if (log->plen >= PENDING_FLUSH)
        rc = flush_pending(log, err); /* on failure the handle is poisoned (invariant 5) */
out:
    pthread_mutex_unlock(&log->mu);
    return rc;
}

/* The leader's gathering window (like PostgreSQL's commit_delay, but adaptive): when the
 * previous fsync covered a group of k > 1 commits, other committers are active, and the
 * ones that just returned are about to append again; the leader waits until k records
 * are pending or group_commit_us passed, whichever is first. A lone committer
 * (k == 1) never waits. Caller holds mu and has set `syncing`. */
static void gather(dl_log_t *log) {
    if (log->opt.group_commit_us <= 0 || log->last_group <= 1)
        return;
    uint64_t deadline = now_ns() + (uint64_t)log->opt.group_commit_us * 1000u;
    log->gathering = true;
    while (log->next_lsn - 1 - log->durable_lsn < log->last_group && !log->failed) {
        uint64_t now = now_ns();
        if (now >= deadline)
            break;
        struct timespec ts = {(time_t)(deadline / 1000000000u), (long)(deadline % 1000000000u)};
        pthread_cond_timedwait(&log->gcond, &log->mu, &ts);
    }
    log->gathering = false;
}

/* Group commit (invariant 4): the first caller that finds no sync in progress writes
 * everything appended so far and fsyncs it outside the mutex; callers that arrive
 * meanwhile wait and are usually covered by that fsync or the next one. */
static int sync_every(dl_log_t *log, uint64_t lsn, dl_error_t *err) {
    bool led = false, waited = false;
    while (log->durable_lsn < lsn && !log->failed) {
        if (log->syncing) {
            waited = true;
            pthread_cond_wait(&log->cond, &log->mu);
            continue;
        }
        log->syncing = true;
        led = true;
        gather(log);
        int rc = flush_pending(log, err);
        if (rc) {
            log->syncing = false;
            pthread_cond_broadcast(&log->cond);
            return rc;
        }
        uint64_t target = log->written_lsn;
        dl_io_file_t *f = log->active;
        pthread_mutex_unlock(&log->mu);
        dl_error_t e = {0};
        rc = log->io->fsync(f, &e);
        pthread_mutex_lock(&log->mu);
        log->syncing = false;
        log->fsyncs++;
        if (rc)
            poison(log, rc, &e);
        else if (target > log->durable_lsn) {
            log->last_group = target - log->durable_lsn;
            log->durable_lsn = target;
        }
        pthread_cond_broadcast(&log->cond);
    }
    if (log->durable_lsn >= lsn) {
        if (waited && !led)
            log->group_commits++;
        return 0;
    }
    return failed_error(log, err);
}

int dl__log_sync(dl_log_t *log, uint64_t lsn, dl_error_t *err) {
    if (!log)
        return dl_error_set(err, DL_EINVAL, "log_sync: invalid argument");
    pthread_mutex_lock(&log->mu);
    int rc = 0;
    if (lsn >= log->next_lsn) {
        rc = dl_error_set(err, DL_EINVAL, "log_sync: lsn %" PRIu64 " not appended", lsn);
    } else if (log->durable_lsn >= lsn) {
        rc = 0;
    } else if (log->failed) {
        rc = failed_error(log, err);
    } else if (log->opt.sync_mode == DL_SYNC_NONE) {
        rc = 0;
    } else if (log->opt.sync_mode == DL_SYNC_BATCHED) {
        /* Writing to the OS may overlap a leader's fsync of the same file: the file
         * stays open while `syncing` (invariant 4). */
        if (log->written_lsn < lsn)
            rc = flush_pending(log, err);
    } else {
        rc = sync_every(log, lsn, err);
    }
    pthread_mutex_unlock(&log->mu);
    return rc;
}

/* DL_SYNC_BATCHED: fsyncs within batch_ms of the first unsynced append. */
static void *flusher_main(void *arg) {
    dl_log_t *log = arg;
    pthread_mutex_lock(&log->mu);
    while (!log->stopping) {
        if (log->unsynced_since_ns == 0 || log->failed) {
            pthread_cond_wait(&log->fcond, &log->mu);
            continue;
        }
        uint64_t deadline = log->unsynced_since_ns + (uint64_t)log->opt.batch_ms * 1000000ull;
        uint64_t now = now_ns();
        if (now < deadline) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t wake =
                (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + (deadline - now);
            ts.tv_sec = (time_t)(wake / 1000000000ull);
            ts.tv_nsec = (long)(wake % 1000000000ull);
            pthread_cond_timedwait(&log->fcond, &log->mu, &ts);
            continue;
        }
        log->unsynced_since_ns = 0;
        uint64_t last = log->next_lsn - 1;
        if (last > log->durable_lsn)
            (void)sync_every(log, last, NULL); /* failure poisons the handle */
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------- */

typedef struct listing {
    uint64_t *segs;
    size_t n_segs, cap_segs;
    uint64_t *ckpts;
    size_t n_ckpts, cap_ckpts;
    char **tmps;
    size_t n_tmps, cap_tmps;
} listing_t;

static int push_u64(uint64_t **v, size_t *n, size_t *cap, uint64_t x) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        uint64_t *nv = dl_realloc(*v, c * sizeof *nv);
        if (!nv)
            return DL_ENOMEM;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return 0;
}

static bool parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *out) {
    size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(name);
    if (n != pl + 16 + sl || strncmp(name, prefix, pl) != 0 || strcmp(name + pl + 16, suffix))
        return false;
    uint64_t v = 0;
    for (size_t i = pl; i < pl + 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return true;
}

static int list_cb(void *ctx, const char *name) {
    listing_t *l = ctx;
    uint64_t v;
    if (parse_name(name, "log-", ".dlog", &v))
        return push_u64(&l->segs, &l->n_segs, &l->cap_segs, v);
    if (parse_name(name, "ckpt-", ".dlck", &v))
        return push_u64(&l->ckpts, &l->n_ckpts, &l->cap_ckpts, v);
    if (parse_name(name, "ckpt-", ".tmp", &v)) {
        if (l->n_tmps == l->cap_tmps) {
            size_t c = l->cap_tmps ? l->cap_tmps * 2 : 4;
            char **nv = dl_realloc(l->tmps, c * sizeof *nv);
            if (!nv)
                return DL_ENOMEM;
            l->tmps = nv;
            l->cap_tmps = c;
        }
        l->tmps[l->n_tmps] = dl_strdup(name);
        if (!l->tmps[l->n_tmps])
            return DL_ENOMEM;
        l->n_tmps++;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void listing_fini(listing_t *l) {
    dl_free(l->segs);
    dl_free(l->ckpts);
    for (size_t i = 0; i < l->n_tmps; i++)
        dl_free(l->tmps[i]);
    dl_free(l->tmps);
}

static int list_dir(const dl_io_t *io, const char *dir, listing_t *l, dl_error_t *err) {
    memset(l, 0, sizeof *l);
    int rc = io->list(io, dir, list_cb, l, err);
    if (rc == DL_ENOMEM)
        rc = dl_error_set(err, DL_ENOMEM, "%s: out of memory listing", dir);
    if (rc) {
        listing_fini(l);
        return rc;
    }
    if (l->n_segs)
        qsort(l->segs, l->n_segs, sizeof *l->segs, cmp_u64);
    if (l->n_ckpts)
        qsort(l->ckpts, l->n_ckpts, sizeof *l->ckpts, cmp_u64);
    return 0;
}

static uint64_t file_size(const dl_io_t *io, const char *path) {
    dl_io_file_t *f = NULL;
    uint64_t size = 0;
    if (io->open(io, path, DL_IO_READ, &f, NULL) == 0) {
        (void)io->size(f, &size, NULL);
        io->close(f);
    }
    return size;
}

/* Truncates path to size (when `truncate`) and fsyncs it (recovery of the last segment). */
static int truncate_file(const dl_io_t *io, const char *path, uint64_t size, bool truncate,
                         dl_error_t *err) {
    dl_io_file_t *f = NULL;
    int rc = io->open(io, path, DL_IO_WRITE, &f, err);
    if (rc)
        return rc;
    if (!truncate || !(rc = io->ftruncate(f, size, err)))
        rc = io->fsync(f, err);
    io->close(f);
    return rc;
}

/* Recovery (invariant 7) over the listed segments. */
static int recover(dl_log_t *log, listing_t *l, dl_error_t *err) {
    char path[4096];
    for (size_t i = 0; i < l->n_segs; i++) {
        bool is_last = i + 1 == l->n_segs;
        seg_name(path, sizeof path, log->dir, l->segs[i]);
        scan_t sc;
        int rc = scan_segment(log->io, path, is_last, NULL, NULL, 0, &sc, err);
        if (rc)
            return rc;
        if (sc.short_header) {
            /* A segment whose creation was cut short: it never held a record. */
            if ((rc = log->io->unlink(log->io, path, err)) ||
                (rc = log->io->fsync_dir(log->io, log->dir, err)))
                return rc;
            log->truncated_bytes += sc.torn_bytes;
            continue;
        }
        if (sc.seg.first_lsn != l->segs[i])
            return corrupt(err, path, 16, "segment header names a different first lsn");
        if (log->n_segs > 0) {
            seg_t *prev = &log->segs[log->n_segs - 1];
            if (sc.seg.first_lsn != prev->last_lsn + 1)
                return corrupt(err, path, 0, "segment does not continue the previous one");
            if (sc.seg.records && prev->records && sc.seg.min_tx < prev->max_tx)
                return corrupt(err, path, SEG_HDR, "transaction number goes backwards");
        }
        if (is_last) {
            /* Truncate a torn tail, and fsync the last segment in any case: records that
             * survived a crash without having been fsynced must not vanish in the next
             * crash once later records (in a new segment) are durable (invariant 1). */
            rc = truncate_file(log->io, path, sc.seg.bytes, sc.torn_bytes > 0, err);
            if (rc)
                return rc;
            log->truncated_bytes += sc.torn_bytes;
            log->torn_chunks += sc.torn_chunk;
            log->fsyncs++;
        }
        log->codec = sc.codec;
        if (push_seg(log, &sc.seg))
            return dl_error_set(err, DL_ENOMEM, "%s: out of memory", log->dir);
    }
    return 0;
}

static void log_free(dl_log_t *log) {
    if (log->flusher_running) {
        pthread_mutex_lock(&log->mu);
        log->stopping = true;
        pthread_cond_broadcast(&log->fcond);
        pthread_mutex_unlock(&log->mu);
        pthread_join(log->flusher, NULL);
    }
    if (log->active)
        log->io->close(log->active);
    if (log->lock)
        log->io->unlock(log->io, log->lock);
    ZSTD_freeCCtx(log->cctx);
    pthread_mutex_destroy(&log->mu);
    pthread_mutex_destroy(&log->ckpt_mu);
    pthread_cond_destroy(&log->cond);
    pthread_cond_destroy(&log->fcond);
    pthread_cond_destroy(&log->gcond);
    dl_free(log->segs);
    dl_free(log->ckpts);
    dl_free(log->wbuf);
    dl_free(log->praw);
    dl_free(log->dir);
    dl_free(log);
}

int dl__log_open(const char *dir, const dl_log_options_t *opt, dl_log_t **out, dl_error_t *err) {
    if (!dir || !*dir || !out)
        return dl_error_set(err, DL_EINVAL, "log_open: invalid argument");
    if (strlen(dir) > 3000)
        return dl_error_set(err, DL_EINVAL, "log_open: directory path too long");
    dl_log_t *log = dl_calloc(1, sizeof *log);
    if (!log || !(log->dir = dl_strdup(dir))) {
        dl_free(log);
        return dl_error_set(err, DL_ENOMEM, "log_open: out of memory");
    }
    pthread_mutex_init(&log->mu, NULL);
    pthread_mutex_init(&log->ckpt_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&log->cond, NULL);
    pthread_cond_init(&log->fcond, &ca);
    pthread_cond_init(&log->gcond, &ca);
    pthread_condattr_destroy(&ca);
    if (opt)
        log->opt = *opt;
    if (log->opt.sync_mode < DL_SYNC_EVERY || log->opt.sync_mode > DL_SYNC_NONE) {
        log_free(log);
        return dl_error_set(err, DL_EINVAL, "log_open: unknown sync mode %d", opt->sync_mode);
    }
    if (log->opt.batch_ms <= 0)
        log->opt.batch_ms = 10;
    if (log->opt.segment_bytes == 0)
        log->opt.segment_bytes = (size_t)64 << 20;
    if (log->opt.zstd_level == 0)
        log->opt.zstd_level = 1;
    if (log->opt.group_commit_us == 0)
        log->opt.group_commit_us = 100;
    if (log->opt.checkpoints_kept <= 0)
        log->opt.checkpoints_kept = 2;
    log->io = log->opt.io ? log->opt.io : dl__io_posix();
    log->opt.io = log->io;

    listing_t l = {0};
    char path[4096];
    int rc = log->io->mkdir(log->io, dir, err);
    if (!rc)
        rc = log->io->lock(log->io, dir, &log->lock, err);
    if (!rc)
        rc = list_dir(log->io, dir, &l, err);
    if (rc)
        goto fail;
    for (size_t i = 0; i < l.n_tmps; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, l.tmps[i]);
        if ((rc = log->io->unlink(log->io, path, err)))
            goto fail;
    }
    for (size_t i = 0; i < l.n_ckpts; i++) {
        dl__checkpoint_name(path, sizeof path, dir, l.ckpts[i], false);
        if (push_ckpt(log, l.ckpts[i], file_size(log->io, path))) {
            rc = dl_error_set(err, DL_ENOMEM, "log_open: out of memory");
            goto fail;
        }
    }
    if ((rc = recover(log, &l, err)))
        goto fail;

    /* The new active segment (invariant 2). */
    seg_t *last = log->n_segs ? &log->segs[log->n_segs - 1] : NULL;
    log->next_lsn = last ? last->last_lsn + 1 : 1;
    for (size_t i = 0; i < log->n_segs; i++)
        if (log->segs[i].records)
            log->last_tx = log->segs[i].max_tx;
    /* Segments a checkpoint retired may have held the last records. */
    if (log->n_ckpts && log->ckpts[log->n_ckpts - 1].covers_tx > log->last_tx)
        log->last_tx = log->ckpts[log->n_ckpts - 1].covers_tx;
    log->written_lsn = log->durable_lsn = log->next_lsn - 1;
    int want_codec = log->opt.zstd_level < 0 ? CODEC_RAW : CODEC_ZSTD;
    if (want_codec == CODEC_ZSTD) {
        log->cctx = ZSTD_createCCtx();
        if (!log->cctx || ZSTD_isError(ZSTD_CCtx_setParameter(log->cctx, ZSTD_c_compressionLevel,
                                                              log->opt.zstd_level))) {
            rc = dl_error_set(err, DL_ENOMEM, "log_open: cannot create a zstd context");
            goto fail;
        }
    }
    if (last && last->records == 0 && log->codec != want_codec) {
        /* An empty segment of another codec: start_segment rewrites the same name. */
        log->n_segs--;
        last = NULL;
    }
    if (last && last->records == 0) {
        seg_name(path, sizeof path, dir, last->first_lsn);
        if ((rc = log->io->open(log->io, path, DL_IO_WRITE, &log->active, err)))
            goto fail;
        log->active_off = log->prealloc_end = last->bytes;
    } else {
        log->codec = want_codec;
        if ((rc = start_segment(log, err)))
            goto fail;
    }
    if (log->opt.sync_mode == DL_SYNC_BATCHED) {
        if (pthread_create(&log->flusher, NULL, flusher_main, log) != 0) {
            rc = dl_error_set(err, DL_EINTERNAL, "log_open: cannot start the flusher thread");
            goto fail;
        }
        log->flusher_running = true;
    }
    listing_fini(&l);
    *out = log;
    return 0;
fail:
    listing_fini(&l);
    log_free(log);
    return rc;
}

void dl__log_close(dl_log_t *log) {
    if (!log)
        return;
    pthread_mutex_lock(&log->mu);
    if (!log->failed && log->active)
        (void)sync_locked(log, true, NULL); /* on failure, recovery at the next open */
    pthread_mutex_unlock(&log->mu);
    log_free(log);
}

void dl__log_abandon(dl_log_t *log) {
    if (!log)
        return;
    log->plen = 0;
    log_free(log);
}

void dl__log_stats(dl_log_t *log, dl_log_stats_t *out) {
    memset(out, 0, sizeof *out);
    if (!log)
        return;
    pthread_mutex_lock(&log->mu);
    for (size_t i = 0; i < log->n_segs; i++) {
        const seg_t *s = &log->segs[i];
        out->records += s->records;
        out->raw_bytes += s->raw_bytes;
        out->stored_bytes += s->stored_bytes;
        out->segment_bytes += s->bytes;
    }
    out->segment_bytes += log->plen;
    out->segments = log->n_segs;
    for (size_t i = 0; i < log->n_ckpts; i++)
        out->checkpoint_bytes += log->ckpts[i].bytes;
    out->bytes_on_disk = out->segment_bytes + out->checkpoint_bytes;
    out->compression_ratio =
        out->stored_bytes ? (double)out->raw_bytes / (double)out->stored_bytes : 0.0;
    out->fsyncs = log->fsyncs;
    out->group_commits = log->group_commits;
    out->truncated_bytes = log->truncated_bytes;
    out->torn_chunks = log->torn_chunks;
    out->last_lsn = log->next_lsn - 1;
    out->durable_lsn = log->opt.sync_mode == DL_SYNC_EVERY ? log->durable_lsn : log->written_lsn;
    out->synced_lsn = log->durable_lsn;
    out->last_tx = log->last_tx;
    out->checkpoint_tx = log->n_ckpts ? log->ckpts[log->n_ckpts - 1].covers_tx : 0;
    out->checkpoint_fallbacks = log->ckpt_fallbacks;
    pthread_mutex_unlock(&log->mu);
}

/* ---- replay ------------------------------------------------------------------------- */

int dl__log_replay(dl_log_t *log, uint64_t after_tx,
                   int (*fn)(void *ctx, uint64_t tx, const void *payload, size_t n), void *ctx,
                   dl_error_t *err) {
    if (!log || !fn)
        return dl_error_set(err, DL_EINVAL, "log_replay: invalid argument");
    pthread_mutex_lock(&log->mu);
    int rc = log->failed ? failed_error(log, err) : flush_pending(log, err);
    size_t n = log->n_segs;
    seg_t *segs = rc ? NULL : dl_malloc((n ? n : 1) * sizeof *segs);
    if (!rc && !segs)
        rc = dl_error_set(err, DL_ENOMEM, "log_replay: out of memory");
    if (!rc && n)
        memcpy(segs, log->segs, n * sizeof *segs);
    pthread_mutex_unlock(&log->mu);
    if (rc)
        return rc;
    char path[4096];
    for (size_t i = 0; i < n && !rc; i++) {
        if (segs[i].records == 0 || segs[i].max_tx <= after_tx)
            continue;
        seg_name(path, sizeof path, log->dir, segs[i].first_lsn);
        scan_t sc;
        rc = scan_segment(log->io, path, i + 1 == n, fn, ctx, after_tx, &sc, err);
        if (!rc && sc.seg.records != segs[i].records)
            rc = corrupt(err, path, sc.seg.bytes, "segment changed since it was opened");
    }
    dl_free(segs);
    return rc;
}

/* ---- checkpoints (the file format is store/checkpoint.c) ---------------------------- */

int dl__log_checkpoint_write(dl_log_t *log, uint64_t covers_tx, const void *blob, size_t n,
                             dl_error_t *err) {
    if (!log || (!blob && n))
        return dl_error_set(err, DL_EINVAL, "checkpoint_write: invalid argument");
    pthread_mutex_lock(&log->ckpt_mu);
    pthread_mutex_lock(&log->mu);
    int rc = 0;
    if (covers_tx > log->last_tx)
        rc = dl_error_set(err, DL_EINVAL,
                          "checkpoint_write: covers tx %" PRIu64 " beyond the log (tx %" PRIu64 ")",
                          covers_tx, log->last_tx);
    /* The log is made at least as durable as the checkpoint, so that a recovered
     * checkpoint never runs ahead of a log that lost its tail. */
    else
        rc = sync_locked(log, false, err);
    pthread_mutex_unlock(&log->mu);
    if (rc) {
        pthread_mutex_unlock(&log->ckpt_mu);
        return rc;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    rc = dl__checkpoint_encode(covers_tx, blob, n, log->opt.zstd_level, &buf, &len, err);
    if (!rc)
        rc = dl__checkpoint_write_file(log->io, log->dir, covers_tx, buf, len, err);
    dl_free(buf);
    if (!rc) {
        /* Verified before anything older is removed: read back, every chunk checksum and
         * zstd frame checked. A checkpoint that does not read back is removed again. */
        char cpath[4096];
        uint8_t *rb = NULL;
        size_t rn = 0;
        uint64_t got = 0;
        dl__checkpoint_name(cpath, sizeof cpath, log->dir, covers_tx, false);
        rc = read_file(log->io, cpath, &rb, &rn, err);
        if (!rc)
            rc = dl__checkpoint_decode(cpath, rb, rn, &got, NULL, NULL, err);
        if (!rc && got != covers_tx)
            rc = corrupt(err, cpath, 16, "checkpoint header names a different transaction");
        dl_free(rb);
        if (rc == DL_ECORRUPT) {
            dl_error_t e2 = {0};
            if (log->io->unlink(log->io, cpath, &e2) == 0)
                (void)log->io->fsync_dir(log->io, log->dir, &e2);
        }
    }
    if (rc) {
        pthread_mutex_unlock(&log->ckpt_mu);
        return rc;
    }

    /* Invariant 6: retire checkpoints beyond checkpoints_kept, then segments covered by
     * the oldest kept checkpoint. Names are collected under mu, unlinked outside. */
    uint64_t *old_ckpts = NULL, *old_segs = NULL;
    size_t n_old_ckpts = 0, n_old_segs = 0;
    pthread_mutex_lock(&log->mu);
    if (push_ckpt(log, covers_tx, len))
        rc = dl_error_set(err, DL_ENOMEM, "checkpoint_write: out of memory");
    size_t keep = (size_t)log->opt.checkpoints_kept;
    if (!rc && log->n_ckpts > keep) {
        n_old_ckpts = log->n_ckpts - keep;
        old_ckpts = dl_malloc(n_old_ckpts * sizeof *old_ckpts);
        if (old_ckpts) {
            for (size_t i = 0; i < n_old_ckpts; i++)
                old_ckpts[i] = log->ckpts[i].covers_tx;
            memmove(log->ckpts, log->ckpts + n_old_ckpts, keep * sizeof *log->ckpts);
            log->n_ckpts = keep;
        } else {
            n_old_ckpts = 0;
        }
    }
    /* Eager retention: the oldest kept checkpoint covers the segments below it even while
     * fewer than `keep` checkpoints exist (a fallback needs an older checkpoint, and there
     * is none to fall back to yet, so nothing is lost). */
    uint64_t floor_tx =
        log->n_ckpts >= (log->opt.eager_retention ? 1 : keep) ? log->ckpts[0].covers_tx : 0;
    /* When it covers the active segment too (no append since), the segment is finished
     * (rotation: trimmed, fsynced) so that it can go as well. */
    if (!rc && floor_tx > 0 && log->opt.eager_retention && !log->failed && log->n_segs &&
        log->segs[log->n_segs - 1].records > 0 && log->segs[log->n_segs - 1].max_tx <= floor_tx &&
        log->p_records == 0 && log->last_tx <= floor_tx)
        rc = rotate(log, err);
    if (!rc && floor_tx > 0) {
        size_t k = 0;
        while (k + 1 < log->n_segs && log->segs[k].max_tx <= floor_tx)
            k++;
        if (k > 0 && (old_segs = dl_malloc(k * sizeof *old_segs))) {
            for (size_t i = 0; i < k; i++)
                old_segs[i] = log->segs[i].first_lsn;
            n_old_segs = k;
            memmove(log->segs, log->segs + k, (log->n_segs - k) * sizeof *log->segs);
            log->n_segs -= k;
        }
    }
    pthread_mutex_unlock(&log->mu);
    char path[4096];
    for (size_t i = 0; i < n_old_ckpts && !rc; i++) {
        dl__checkpoint_name(path, sizeof path, log->dir, old_ckpts[i], false);
        rc = log->io->unlink(log->io, path, err);
    }
    if (!rc && n_old_ckpts)
        rc = log->io->fsync_dir(log->io, log->dir, err);
    /* Oldest first, each removal made durable before the next: whatever a crash keeps,
     * the removed segments are a prefix and the rest still continue each other. */
    for (size_t i = 0; i < n_old_segs && !rc; i++) {
        seg_name(path, sizeof path, log->dir, old_segs[i]);
        rc = log->io->unlink(log->io, path, err);
        if (!rc)
            rc = log->io->fsync_dir(log->io, log->dir, err);
    }
    dl_free(old_ckpts);
    dl_free(old_segs);
    pthread_mutex_unlock(&log->ckpt_mu);
    return rc;
}

int dl__log_checkpoint_read(dl_log_t *log, uint64_t *out_covers_tx, void **out_blob, size_t *out_n,
                            dl_error_t *err) {
    if (!log || !out_covers_tx || !out_blob || !out_n)
        return dl_error_set(err, DL_EINVAL, "checkpoint_read: invalid argument");
    pthread_mutex_lock(&log->ckpt_mu);
    pthread_mutex_lock(&log->mu);
    size_t n = log->n_ckpts;
    uint64_t covers[16];
    if (n > 16)
        n = 16;
    for (size_t i = 0; i < n; i++)
        covers[i] = log->ckpts[log->n_ckpts - 1 - i].covers_tx; /* newest first */
    pthread_mutex_unlock(&log->mu);
    int rc = DL_ENOTFOUND;
    dl_error_t first = {0};
    char path[4096];
    for (size_t i = 0; i < n; i++) {
        dl__checkpoint_name(path, sizeof path, log->dir, covers[i], false);
        dl_error_t e = {0};
        uint8_t *buf = NULL;
        size_t size = 0;
        rc = read_file(log->io, path, &buf, &size, &e);
        uint64_t got = 0;
        if (!rc)
            rc = dl__checkpoint_decode(path, buf, size, &got, out_blob, out_n, &e);
        dl_free(buf);
        if (!rc && got != covers[i])
            rc = corrupt(&e, path, 16, "checkpoint header names a different transaction");
        if (!rc) {
            *out_covers_tx = got;
            if (i > 0) {
                pthread_mutex_lock(&log->mu);
                log->ckpt_fallbacks++;
                pthread_mutex_unlock(&log->mu);
            }
            break;
        }
        if (i == 0)
            first = e;
        if (rc != DL_ECORRUPT && rc != DL_EVERSION)
            break;
    }
    pthread_mutex_unlock(&log->ckpt_mu);
    if (rc == DL_ENOTFOUND && n == 0)
        return dl_error_set(err, DL_ENOTFOUND, "%s: no checkpoint", log->dir);
    if (rc) {
        if (err && !err->code && first.code)
            *err = first;
        return first.code ? first.code : rc;
    }
    return 0;
}

/* ---- fsck --------------------------------------------------------------------------- */

static int fsck_noop(void *ctx, uint64_t tx, const void *payload, size_t n) { return 0; }

static void fsck_problem(dl_log_fsck_t *r, dl_error_t *first, const dl_error_t *e) {
    r->problems++;
    if (!r->first_problem[0]) {
        snprintf(r->first_problem, sizeof r->first_problem, "%s", e->message);
        *first = *e;
    }
}

int dl__log_fsck(const char *dir, const dl_io_t *io, dl_log_fsck_t *out, dl_error_t *err) {
    dl_log_fsck_t r;
    memset(&r, 0, sizeof r);
    if (!dir)
        return dl_error_set(err, DL_EINVAL, "fsck: invalid argument");
    if (!io)
        io = dl__io_posix();
    listing_t l;
    int rc = list_dir(io, dir, &l, err);
    if (rc)
        return rc;
    dl_error_t first = {0};
    char path[4096];
    uint64_t prev_last = 0;
    for (size_t i = 0; i < l.n_segs; i++) {
        seg_name(path, sizeof path, dir, l.segs[i]);
        scan_t sc;
        dl_error_t e = {0};
        /* Decoding every record checks the zstd streams, not only the checksums. */
        rc = scan_segment(io, path, i + 1 == l.n_segs, fsck_noop, NULL, 0, &sc, &e);
        if (rc == DL_ENOMEM || rc == DL_EIO) {
            listing_fini(&l);
            return dl_error_set(err, rc, "%s", e.message);
        }
        if (rc) {
            fsck_problem(&r, &first, &e);
            continue;
        }
        if (i > 0 && prev_last && sc.seg.first_lsn != prev_last + 1 && !sc.short_header) {
            dl_error_t g = {0};
            corrupt(&g, path, 0, "segment does not continue the previous one");
            fsck_problem(&r, &first, &g);
        }
        prev_last = sc.seg.last_lsn;
        r.segments++;
        r.records += sc.seg.records;
        r.raw_bytes += sc.seg.raw_bytes;
        r.stored_bytes += sc.seg.stored_bytes;
        r.segment_bytes += sc.seg.bytes + sc.torn_bytes;
        r.torn_tail_bytes += sc.torn_bytes;
        if (sc.seg.records) {
            if (!r.first_tx)
                r.first_tx = sc.seg.min_tx;
            r.last_tx = sc.seg.max_tx;
        }
    }
    for (size_t i = 0; i < l.n_ckpts; i++) {
        dl__checkpoint_name(path, sizeof path, dir, l.ckpts[i], false);
        dl_error_t e = {0};
        uint8_t *buf = NULL;
        size_t size = 0;
        rc = read_file(io, path, &buf, &size, &e);
        uint64_t covers = 0;
        size_t raw = 0;
        if (!rc)
            rc = dl__checkpoint_decode(path, buf, size, &covers, NULL, &raw, &e);
        r.checkpoint_raw_bytes += raw;
        dl_free(buf);
        r.checkpoints++;
        r.checkpoint_bytes += size;
        if (rc) {
            fsck_problem(&r, &first, &e);
            continue;
        }
        if (covers > r.newest_checkpoint_tx)
            r.newest_checkpoint_tx = covers;
    }
    listing_fini(&l);
    r.compression_ratio = r.stored_bytes ? (double)r.raw_bytes / (double)r.stored_bytes : 0.0;
    if (out)
        *out = r;
    if (r.problems) {
        if (err && !err->code)
            *err = first;
        return first.code;
    }
    return 0;
}

/* ---- repair ------------------------------------------------------------------------- */

int dl__log_repair(const char *dir, const dl_io_t *io, uint64_t *out_dropped, dl_error_t *err) {
    if (out_dropped)
        *out_dropped = 0;
    if (!dir)
        return dl_error_set(err, DL_EINVAL, "repair: invalid argument");
    if (!io)
        io = dl__io_posix();
    void *lock = NULL;
    int rc = io->lock(io, dir, &lock, err);
    if (rc)
        return rc;
    listing_t l;
    rc = list_dir(io, dir, &l, err);
    if (rc) {
        io->unlock(io, lock);
        return rc;
    }
    char path[4096];
    for (size_t i = 0; i < l.n_segs && !rc; i++) {
        bool is_last = i + 1 == l.n_segs;
        seg_name(path, sizeof path, dir, l.segs[i]);
        scan_t sc;
        dl_error_t e = {0};
        rc = scan_segment(io, path, is_last, NULL, NULL, 0, &sc, &e);
        if (rc == DL_ECORRUPT && is_last && e.offset >= (int64_t)SEG_HDR) {
            uint64_t size = file_size(io, path);
            rc = truncate_file(io, path, (uint64_t)e.offset, true, err);
            if (!rc && out_dropped)
                *out_dropped = size - (uint64_t)e.offset;
        } else if (rc) {
            if (err && !err->code)
                *err = e;
            dl_error_prefix(err, "repair refused");
        }
    }
    listing_fini(&l);
    io->unlock(io, lock);
    return rc;
}
