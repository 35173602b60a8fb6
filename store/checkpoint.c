/*
 * checkpoint.c: the checkpoint file format: a snapshot blob cut into 1 MiB chunks, each an
 * independent zstd frame with its own CRC-32C, behind a versioned, checksummed header;
 * written atomically (temporary file, fsync, rename, directory fsync).
 *
 * It does not decide which checkpoints to keep or which segments a checkpoint retires
 * (dl__log_checkpoint_write in store/log.c does), and does not know what the blob holds
 * (the store does). Format: docs/storage-format.md "Checkpoint files".
 */
#include "store/log.h"

#include "base/base.h"

#include <deltalog/alloc.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zstd.h>

#define CKPT_MAGIC     "DLCKPT01"
#define CKPT_VERSION   1u  /* the format version of docs/storage-format.md */
#define CKPT_CODEC     1u  /* zstd */
#define CKPT_HDR       48u /* magic 8, version 4, codec 4, covers 8, raw 8, chunks 8, rsv 4, crc 4 */
#define CKPT_CHUNK_HDR 12u /* body_len 4, raw_len 4, crc 4 */
#define CKPT_CHUNK_RAW ((size_t)1 << 20)

static int corrupt(dl_error_t *err, const char *path, uint64_t off, const char *what) {
    return dl_error_set_at(err, DL_ECORRUPT, 0, 0, (int64_t)off, "%s: %s at offset %" PRIu64, path,
                           what, off);
}

void dl__checkpoint_name(char *out, size_t cap, const char *dir, uint64_t covers, bool tmp) {
    snprintf(out, cap, "%s/ckpt-%016" PRIx64 ".%s", dir, covers, tmp ? "tmp" : "dlck");
}

/* Compresses blob into the checkpoint format (header + chunks). *out is new. */
int dl__checkpoint_encode(uint64_t covers, const void *blob, size_t n, int level, uint8_t **out,
                          size_t *out_n, dl_error_t *err) {
    size_t chunks = (n + CKPT_CHUNK_RAW - 1) / CKPT_CHUNK_RAW;
    size_t cap = CKPT_HDR + chunks * (CKPT_CHUNK_HDR + ZSTD_compressBound(CKPT_CHUNK_RAW));
    uint8_t *buf = dl_malloc(cap);
    if (!buf)
        return dl_error_set(err, DL_ENOMEM, "checkpoint: out of memory");
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (!cctx) {
        dl_free(buf);
        return dl_error_set(err, DL_ENOMEM, "checkpoint: out of memory");
    }
    size_t off = CKPT_HDR;
    for (size_t i = 0; i < chunks; i++) {
        size_t raw =
            n - i * CKPT_CHUNK_RAW < CKPT_CHUNK_RAW ? n - i * CKPT_CHUNK_RAW : CKPT_CHUNK_RAW;
        size_t c = ZSTD_compressCCtx(cctx, buf + off + CKPT_CHUNK_HDR, cap - off - CKPT_CHUNK_HDR,
                                     (const uint8_t *)blob + i * CKPT_CHUNK_RAW, raw,
                                     level > 0 ? level : 3);
        if (ZSTD_isError(c)) {
            ZSTD_freeCCtx(cctx);
            dl_free(buf);
            return dl_error_set(err, DL_EINTERNAL, "checkpoint: zstd: %s", ZSTD_getErrorName(c));
        }
        dl__le_put32(buf + off, (uint32_t)c);
        dl__le_put32(buf + off + 4, (uint32_t)raw);
        uint32_t crc = dl__log_crc32c(0, buf + off, 8);
        dl__le_put32(buf + off + 8, dl__log_crc32c(crc, buf + off + CKPT_CHUNK_HDR, c));
        off += CKPT_CHUNK_HDR + c;
    }
    ZSTD_freeCCtx(cctx);
    memset(buf, 0, CKPT_HDR);
    memcpy(buf, CKPT_MAGIC, 8);
    dl__le_put32(buf + 8, CKPT_VERSION);
    dl__le_put32(buf + 12, CKPT_CODEC);
    dl__le_put64(buf + 16, covers);
    dl__le_put64(buf + 24, n);
    dl__le_put64(buf + 32, chunks);
    dl__le_put32(buf + CKPT_HDR - 4, dl__log_crc32c(0, buf, CKPT_HDR - 4));
    *out = buf;
    *out_n = off;
    return 0;
}

/* Verifies and decodes a checkpoint file image. *out_blob new when out_blob != NULL. */
int dl__checkpoint_decode(const char *path, const uint8_t *buf, size_t size, uint64_t *out_covers,
                          void **out_blob, size_t *out_n, dl_error_t *err) {
    if (size < CKPT_HDR)
        return corrupt(err, path, size, "checkpoint shorter than its header");
    if (memcmp(buf, CKPT_MAGIC, 8) != 0)
        return corrupt(err, path, 0, "bad checkpoint magic");
    if (dl__le_get32(buf + CKPT_HDR - 4) != dl__log_crc32c(0, buf, CKPT_HDR - 4))
        return corrupt(err, path, 0, "checkpoint header checksum mismatch");
    if (dl__le_get32(buf + 8) != CKPT_VERSION)
        return dl_error_set_at(err, DL_EVERSION, 0, 0, 0,
                               "%s: checkpoint format version %u, this build reads version %u",
                               path, dl__le_get32(buf + 8), CKPT_VERSION);
    uint64_t covers = dl__le_get64(buf + 16), raw_total = dl__le_get64(buf + 24),
             chunks = dl__le_get64(buf + 32);
    if (raw_total > ((uint64_t)1 << 40) ||
        chunks != (raw_total + CKPT_CHUNK_RAW - 1) / CKPT_CHUNK_RAW)
        return corrupt(err, path, 24, "checkpoint header sizes inconsistent");
    uint8_t *blob = NULL;
    if (out_blob) {
        blob = dl_malloc(raw_total ? (size_t)raw_total : 1);
        if (!blob)
            return dl_error_set(err, DL_ENOMEM, "%s: out of memory", path);
    }
    size_t off = CKPT_HDR, pos = 0;
    int rc = 0;
    uint8_t *scratch = NULL;
    for (uint64_t i = 0; i < chunks && !rc; i++) {
        if (size - off < CKPT_CHUNK_HDR) {
            rc = corrupt(err, path, off, "checkpoint truncated");
            break;
        }
        uint32_t c = dl__le_get32(buf + off), raw = dl__le_get32(buf + off + 4);
        if (c > size - off - CKPT_CHUNK_HDR || raw > CKPT_CHUNK_RAW || pos + raw > raw_total) {
            rc = corrupt(err, path, off, "checkpoint chunk header invalid");
            break;
        }
        uint32_t crc = dl__log_crc32c(0, buf + off, 8);
        if (dl__log_crc32c(crc, buf + off + CKPT_CHUNK_HDR, c) != dl__le_get32(buf + off + 8)) {
            rc = corrupt(err, path, off, "checkpoint chunk checksum mismatch");
            break;
        }
        uint8_t *dst = blob ? blob + pos : NULL;
        if (!dst) {
            if (!scratch && !(scratch = dl_malloc(CKPT_CHUNK_RAW))) {
                rc = dl_error_set(err, DL_ENOMEM, "%s: out of memory", path);
                break;
            }
            dst = scratch;
        }
        size_t d = ZSTD_decompress(dst, raw, buf + off + CKPT_CHUNK_HDR, c);
        if (ZSTD_isError(d) || d != raw) {
            rc = corrupt(err, path, off, "checkpoint chunk does not decompress");
            break;
        }
        pos += raw;
        off += CKPT_CHUNK_HDR + c;
    }
    if (!rc && (pos != raw_total || off != size))
        rc = corrupt(err, path, off, "checkpoint length mismatch");
    dl_free(scratch);
    if (rc) {
        dl_free(blob);
        return rc;
    }
    *out_covers = covers;
    if (out_blob)
        *out_blob = blob;
    if (out_n)
        *out_n = (size_t)raw_total;
    return 0;
}

/* Writes path atomically: tmp file, fsync, rename, fsync dir. */
int dl__checkpoint_write_file(const dl_io_t *io, const char *dir, uint64_t covers,
                              const uint8_t *buf, size_t n, dl_error_t *err) {
    char tmp[4096], final[4096];
    dl__checkpoint_name(tmp, sizeof tmp, dir, covers, true);
    dl__checkpoint_name(final, sizeof final, dir, covers, false);
    dl_io_file_t *f = NULL;
    int rc = io->open(io, tmp, DL_IO_WRITE | DL_IO_CREATE, &f, err);
    if (rc)
        return rc;
    if ((rc = io->ftruncate(f, 0, err)) || (rc = io->pwrite(f, buf, n, 0, err)) ||
        (rc = io->fsync(f, err))) {
        io->close(f);
        (void)io->unlink(io, tmp, NULL);
        return rc;
    }
    io->close(f);
    if ((rc = io->rename(io, tmp, final, err))) {
        (void)io->unlink(io, tmp, NULL);
        return rc;
    }
    return io->fsync_dir(io, dir, err);
}
