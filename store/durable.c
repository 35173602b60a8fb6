/*
 * durable.c: the glue between the store and its durable log (store/log.h, written by the
 * log's owner): opening a directory, the payload of a committed transaction, recovery
 * (checkpoint, then the log's tail) and checkpoints (docs/storage.md "Durability glue";
 * the log's own format is docs/storage-format.md).
 *
 * Payload of one record (version 1), all integers LEB128 varints, signed ones zigzag:
 *   u8 version=1 | tx | u8 flags (1: advance) | next_id | n_time, time[n_time] |
 *   n_frontier, frontier[..] |
 *   n_changes, then per change: e(z, the difference from the previous change's e) a(z)
 *   value diff(u8: 1 assert, 0 retract)
 *   value = u8 type, then nothing (nil) | u8 (bool) | z (int, instant, ref) |
 *           8 bytes little-endian (double) | len + bytes (string, keyword) | 16 (uuid)
 * A checkpoint blob is u8 version=1 | covers_tx | n_records, then n_records payloads each
 * preceded by its length: the transactions 1..covers_tx. Recovery applies them exactly as
 * the log's records are applied. It does not re-validate: records were validated before
 * they were logged.
 */
#include "store/store.h"

#include "store/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- encoding ------------------------------------------------------------------------------- */

static void put_u(dl_buf_t *b, uint64_t x) {
    char tmp[10];
    size_t n = 0;
    do {
        uint8_t c = x & 0x7f;
        x >>= 7;
        tmp[n++] = (char)(c | (x ? 0x80 : 0));
    } while (x);
    dl__buf_put(b, tmp, n);
}
static void put_z(dl_buf_t *b, int64_t x) { put_u(b, ((uint64_t)x << 1) ^ (uint64_t)(x >> 63)); }

static void put_value(dl_buf_t *b, dl_value_t v) {
    dl__buf_putc(b, (char)v.type);
    switch ((dl_type_t)v.type) {
        case DL_T_NIL:
            break;
        case DL_T_BOOL:
            dl__buf_putc(b, (char)(v.as.i ? 1 : 0));
            break;
        case DL_T_INT:
        case DL_T_INSTANT:
        case DL_T_REF:
            put_z(b, v.as.i);
            break;
        case DL_T_DOUBLE: {
            uint8_t d[8];
            for (int i = 0; i < 8; i++)
                d[i] = (uint8_t)(v.as.bits >> (8 * i));
            dl__buf_put(b, d, 8);
            break;
        }
        case DL_T_UUID:
            dl__buf_put(b, v.as.s->bytes, 16);
            break;
        default:
            put_u(b, v.as.s->len);
            dl__buf_put(b, v.as.s->bytes, v.as.s->len);
            break;
    }
}

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd_t;

static uint64_t get_u(rd_t *r) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->bad = true;
            return 0;
        }
        uint8_t c = *r->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return x;
    }
    r->bad = true;
    return 0;
}
static int64_t get_z(rd_t *r) {
    uint64_t u = get_u(r);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static dl_value_t get_value(rd_t *r) {
    if (r->p >= r->end) {
        r->bad = true;
        return dl_value_nil();
    }
    uint8_t t = *r->p++;
    switch ((dl_type_t)t) {
        case DL_T_NIL:
            return dl_value_nil();
        case DL_T_BOOL:
            if (r->p >= r->end) {
                r->bad = true;
                return dl_value_nil();
            }
            return dl_value_bool(*r->p++ != 0);
        case DL_T_INT:
        case DL_T_INSTANT:
        case DL_T_REF:
            return dl_value_of((dl_type_t)t, get_z(r));
        case DL_T_DOUBLE: {
            if (r->end - r->p < 8) {
                r->bad = true;
                return dl_value_nil();
            }
            dl_value_t v = dl_value_nil();
            v.type = DL_T_DOUBLE;
            for (int i = 0; i < 8; i++)
                v.as.bits |= (uint64_t)r->p[i] << (8 * i);
            r->p += 8;
            return v;
        }
        case DL_T_UUID: {
            dl_value_t v = dl_value_nil();
            if (r->end - r->p < 16 || dl_value_uuid(r->p, &v, NULL) != 0)
                r->bad = true;
            r->p += 16;
            return v;
        }
        case DL_T_STRING:
        case DL_T_KEYWORD: {
            uint64_t n = get_u(r);
            dl_value_t v = dl_value_nil();
            if (r->bad || (uint64_t)(r->end - r->p) < n ||
                dl_value_text((dl_type_t)t, (const char *)r->p, (size_t)n, &v, NULL) != 0) {
                r->bad = true;
                return dl_value_nil();
            }
            r->p += n;
            return v;
        }
        default:
            r->bad = true;
            return dl_value_nil();
    }
}

/* The payload of transaction tx (its record rec) with the writer's state after it. */
static void encode_tx(const dl_store_t *s, uint64_t tx, const dl_txrec_t *rec, int64_t next_id,
                      const uint64_t *frontier, size_t n_frontier, dl_buf_t *b) {
    (void)s;
    dl__buf_putc(b, 1);
    put_u(b, tx);
    dl__buf_putc(b, (char)(rec->advance ? 1 : 0));
    put_z(b, next_id);
    put_u(b, rec->n_time);
    for (size_t i = 0; i < rec->n_time; i++)
        put_u(b, rec->time[i]);
    put_u(b, n_frontier);
    for (size_t i = 0; i < n_frontier; i++)
        put_u(b, frontier[i]);
    put_u(b, rec->n_changes);
    int64_t prev_e = 0;
    for (size_t i = 0; i < rec->n_changes; i++) {
        const dl_change_t *c = &rec->changes[i];
        put_z(b, c->e - prev_e); /* changes are sorted by entity: deltas are small */
        prev_e = c->e;
        put_z(b, c->a);
        put_value(b, c->v);
        dl__buf_putc(b, (char)(c->diff > 0 ? 1 : 0));
    }
}

/* ---- hooks called by store.c ---------------------------------------------------------------- */

int dl__log_hook_append(dl_store_t *s, uint64_t tx, const dl_txrec_t *rec, uint64_t *out_lsn,
                        dl_error_t *err) {
    dl_buf_t b;
    dl__buf_init(&b);
    encode_tx(s, tx, rec, s->next_id, s->frontier, (size_t)s->schema->n_dims + 1, &b);
    if (b.oom) {
        dl__buf_fini(&b);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    int rc = dl__log_append((dl_log_t *)s->log, tx, b.data, b.len, out_lsn, err);
    dl__buf_fini(&b);
    return rc;
}

int dl__log_hook_sync(dl_store_t *s, uint64_t lsn, dl_error_t *err) {
    return s->log ? dl__log_sync((dl_log_t *)s->log, lsn, err) : 0;
}

/* ---- background checkpoints ----------------------------------------------------------------- */

/* The checkpointer: one thread per durable store with checkpoint_every > 0; it sleeps until
 * the committing threads have passed the interval, then writes a checkpoint from a
 * snapshot (readers never block the writer, so commits continue meanwhile). */
struct dl_durable {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t every, last_ckpt_tx, want_tx;
    bool stop, running;
    int failures;
};

static void *checkpointer(void *p) {
    dl_store_t *s = p;
    struct dl_durable *d = s->durable;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->stop && d->want_tx < d->last_ckpt_tx + d->every)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->stop)
            break;
        uint64_t want = d->want_tx;
        pthread_mutex_unlock(&d->mu);
        int rc = dl_store_checkpoint(s, NULL);
        pthread_mutex_lock(&d->mu);
        if (rc == 0)
            d->last_ckpt_tx = want;
        else
            d->failures++, d->last_ckpt_tx = want; /* retry at the next interval */
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

void dl__durable_after_commit(dl_store_t *s, uint64_t tx) {
    struct dl_durable *d = s->durable;
    pthread_mutex_lock(&d->mu);
    if (tx > d->want_tx)
        d->want_tx = tx;
    if (d->want_tx >= d->last_ckpt_tx + d->every)
        pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void durable_stop(dl_store_t *s) {
    struct dl_durable *d = s->durable;
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (d->running)
        pthread_join(d->thread, NULL);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    dl_free(d);
    s->durable = NULL;
}

void dl__store_close_log(dl_store_t *s) {
    durable_stop(s);
    if (s->log) {
        dl__log_close((dl_log_t *)s->log);
        s->log = NULL;
    }
}

/* ---- recovery ------------------------------------------------------------------------------- */

/* Re-applies one logged transaction. */
static int replay_one(dl_store_t *s, uint64_t tx, const void *payload, size_t n, dl_error_t *err) {
    rd_t r = {payload, (const uint8_t *)payload + n, false};
    if (n == 0 || *r.p++ != 1)
        return dl_error_set(err, DL_EVERSION, "transaction %" PRIu64 ": unknown payload version",
                            tx);
    uint64_t rtx = get_u(&r);
    bool advance = r.p < r.end && (*r.p++ & 1);
    int64_t next_id = get_z(&r);
    size_t n_time = (size_t)get_u(&r);
    if (r.bad || rtx != tx || rtx != s->last_tx + 1 || n_time > 4096)
        return dl_error_set(err, DL_ECORRUPT,
                            "transaction %" PRIu64 ": payload does not follow transaction %" PRIu64,
                            tx, s->last_tx);
    dl_txplan_t p = {0};
    int rc = 0;
    p.time = dl_calloc(n_time + 1, sizeof *p.time);
    p.n_time = n_time;
    for (size_t i = 0; p.time && i < n_time; i++)
        p.time[i] = get_u(&r);
    size_t n_fr = (size_t)get_u(&r);
    uint64_t *fr = dl_calloc(n_fr + 1, sizeof *fr);
    for (size_t i = 0; fr && i < n_fr; i++)
        fr[i] = get_u(&r);
    size_t nc = (size_t)get_u(&r);
    if (r.bad || nc > n) {
        rc = dl_error_set(err, DL_ECORRUPT, "transaction %" PRIu64 ": bad payload", tx);
        goto out;
    }
    p.retract = dl_malloc((nc + 1) * sizeof *p.retract);
    p.assert = dl_malloc((nc + 1) * sizeof *p.assert);
    if (!p.time || !fr || !p.retract || !p.assert) {
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        goto out;
    }
    int64_t prev_e = 0;
    for (size_t i = 0; i < nc && !r.bad; i++) {
        prev_e += get_z(&r);
        dl_kd_t k = {.e = prev_e, .a = get_z(&r)};
        k.v = get_value(&r);
        if (r.p >= r.end) {
            r.bad = true;
            break;
        }
        bool add = *r.p++ != 0;
        if (add) {
            p.assert[p.n_assert++] = k;
        } else {
            /* the retracted datom's key carries the tx that asserted it */
            const dl_kd_t *g = dl__btree_find(&s->trees[DL_T_CUR + DL_ORD_EAVT], &k, 3);
            if (!g) {
                r.bad = true;
                break;
            }
            p.retract[p.n_retract++] = *g;
        }
    }
    if (r.bad) {
        rc = dl_error_set(err, DL_ECORRUPT,
                          "transaction %" PRIu64 ": payload does not match the database", tx);
        goto out;
    }
    p.next_id = next_id;
    p.advance = advance;
    /* A schema change is recomputed from the datoms, exactly as when it was committed. */
    dl_schema_ent_t *ents = NULL;
    size_t n_ents = 0;
    rc = dl__tx_schema_entities(s, &p, &ents, &n_ents, err);
    if (rc == 0 && n_ents)
        rc = dl__schema_derive(s->schema, ents, n_ents, &p.new_schema, err);
    dl_free(ents);
    if (rc != 0)
        goto out;
    /* An advance moves a frontier; a transaction leaves them as they were. */
    for (size_t i = 1; i < n_fr && i <= (size_t)s->schema->n_dims; i++)
        s->frontier[i] = fr[i];
    rc = dl__store_apply_replayed(s, &p, tx, err);
out:
    dl_free(fr);
    dl__txplan_fini(&p);
    return rc;
}

typedef struct rctx {
    dl_store_t *s;
    dl_error_t *err;
    uint64_t stop_after; /* 0: replay everything */
} rctx_t;

#define REPLAY_STOPPED 1 /* replay_cb's "enough" (positive: not an error code) */

static int replay_cb(void *ctx, uint64_t tx, const void *payload, size_t n) {
    rctx_t *c = ctx;
    if (tx <= c->s->last_tx)
        return 0; /* covered by the checkpoint */
    if (c->stop_after && tx > c->stop_after)
        return REPLAY_STOPPED;
    return replay_one(c->s, tx, payload, n, c->err);
}

static int load_checkpoint(dl_store_t *s, dl_log_t *log, uint64_t *out_covers, dl_error_t *err) {
    uint64_t covers;
    void *blob;
    size_t n;
    *out_covers = 0;
    int rc = dl__log_checkpoint_read(log, &covers, &blob, &n, err);
    if (rc == DL_ENOTFOUND) {
        dl_error_clear(err);
        return 0;
    }
    *out_covers = covers;
    if (rc != 0)
        return rc;
    rd_t r = {blob, (const uint8_t *)blob + n, false};
    if (n == 0 || *r.p++ != 1) {
        dl_free(blob);
        return dl_error_set(err, DL_EVERSION, "checkpoint: unknown blob version");
    }
    uint64_t bcovers = get_u(&r), nrec = get_u(&r);
    if (r.bad || bcovers != covers) {
        dl_free(blob);
        return dl_error_set(err, DL_ECORRUPT, "checkpoint: header does not match the log");
    }
    for (uint64_t i = 0; i < nrec && rc == 0; i++) {
        uint64_t len = get_u(&r);
        if (r.bad || (uint64_t)(r.end - r.p) < len) {
            rc = dl_error_set(err, DL_ECORRUPT, "checkpoint: truncated record %" PRIu64, i);
            break;
        }
        rd_t peek = {r.p + 1, r.p + len, false};
        uint64_t tx = get_u(&peek);
        rc = replay_one(s, tx, r.p, (size_t)len, err);
        r.p += len;
    }
    dl_free(blob);
    if (rc == 0 && s->last_tx != covers)
        rc = dl_error_set(err, DL_ECORRUPT, "checkpoint covers %" PRIu64 " but holds %" PRIu64,
                          covers, s->last_tx);
    return rc;
}

int dl_store_open(const char *dir, const dl_store_options_t *opts, dl_store_t **out,
                  dl_error_t *err) {
    if (!dir || !out)
        return dl_error_set(err, DL_EINVAL, "dl_store_open: NULL argument");
    *out = NULL;
    dl_log_options_t lo;
    memset(&lo, 0, sizeof lo);
    if (opts) {
        lo.sync_mode = opts->sync_mode;
        lo.batch_ms = opts->batch_ms;
        lo.segment_bytes = opts->segment_bytes;
        lo.checkpoints_kept = opts->checkpoints_kept;
    }
    dl_log_t *log;
    int rc = dl__log_open(dir, &lo, &log, err);
    if (rc != 0)
        return rc;
    dl_store_t *s;
    if ((rc = dl__store_new(&s, err)) != 0) {
        dl__log_close(log);
        return rc;
    }
    uint64_t covers;
    dl__store_recovery_begin(s);
    rc = load_checkpoint(s, log, &covers, err);
    if (rc == 0) {
        rctx_t c = {s, err, 0};
        rc = dl__log_replay(log, s->last_tx, replay_cb, &c, err);
    }
    if (rc == 0)
        rc = dl__store_recovery_end(s, err);
    if (rc != 0) {
        dl_error_prefix(err, "opening %s", dir);
        dl_store_close(s);
        dl__log_close(log);
        return rc;
    }
    s->log = log;
    if (opts && opts->checkpoint_every) {
        struct dl_durable *d = dl_calloc(1, sizeof *d);
        if (!d) {
            dl_store_close(s);
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        }
        pthread_mutex_init(&d->mu, NULL);
        pthread_cond_init(&d->cv, NULL);
        d->every = opts->checkpoint_every;
        d->last_ckpt_tx = d->want_tx = s->last_tx;
        s->durable = d;
        if (pthread_create(&d->thread, NULL, checkpointer, s) != 0) {
            dl_store_close(s);
            return dl_error_set(err, DL_EIO, "cannot start the checkpoint thread");
        }
        d->running = true;
    }
    *out = s;
    return 0;
}

int dl_store_checkpoint(dl_store_t *s, dl_error_t *err) {
    if (!s)
        return dl_error_set(err, DL_EINVAL, "dl_store_checkpoint: NULL store");
    if (!s->log)
        return dl_error_set(err, DL_EUNSUPPORTED, "checkpoints need a durable store");
    /* A snapshot: the writer keeps going while the blob is built and written. */
    dl_db_t *db = dl_store_db(s);
    if (!db)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    uint64_t covers = dl_db_basis_tx(db);
    dl_buf_t b, rec;
    dl__buf_init(&b);
    dl__buf_init(&rec);
    dl__buf_putc(&b, 1);
    put_u(&b, covers);
    put_u(&b, covers);
    /* The frontier after each transaction: it moves only at advances, whose time vector
     * is the new frontier. */
    uint64_t *fr = dl_calloc(4096, sizeof *fr);
    int rc = fr ? 0 : DL_ENOMEM;
    size_t n_fr = 1;
    for (uint64_t tx = 1; tx <= covers && rc == 0; tx++) {
        const dl_txrec_t *r = dl__store_txrec(s, tx);
        if (!r || r->n_time > 4096) {
            rc = dl_error_set(err, DL_EINTERNAL, "checkpoint: transaction %" PRIu64 " missing", tx);
            break;
        }
        if (r->n_time > n_fr)
            n_fr = r->n_time;
        if (r->advance)
            for (size_t i = 1; i < r->n_time; i++)
                fr[i] = r->time[i];
        fr[0] = tx + 1;
        rec.len = 0;
        encode_tx(s, tx, r, r->next_id, fr, n_fr, &rec);
        put_u(&b, rec.len);
        dl__buf_put(&b, rec.data, rec.len);
    }
    if (rc == 0 && (b.oom || rec.oom))
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    if (rc == 0)
        rc = dl__log_checkpoint_write((dl_log_t *)s->log, covers, b.data, b.len, err);
    dl_free(fr);
    dl__buf_fini(&b);
    dl__buf_fini(&rec);
    dl_db_unref(db);
    return rc;
}

void dl_store_stats(dl_store_t *s, dl_store_stats_t *out) {
    memset(out, 0, sizeof *out);
    if (!s)
        return;
    dl_db_t *db = dl_store_db(s);
    if (db) {
        out->last_tx = dl_db_basis_tx(db);
        out->datoms = db->v->trees[DL_T_CUR + DL_ORD_EAVT].count;
        out->history_datoms = db->v->trees[DL_T_PAST + DL_ORD_EAVT].count;
        dl_db_unref(db);
    }
    if (s->log) {
        dl_log_stats_t ls;
        dl__log_stats((dl_log_t *)s->log, &ls);
        out->log_records = ls.records;
        out->log_raw_bytes = ls.raw_bytes;
        out->log_stored_bytes = ls.stored_bytes;
        out->compression_ratio = ls.compression_ratio;
        out->checkpoint_bytes = ls.checkpoint_bytes;
        out->bytes_on_disk = ls.bytes_on_disk;
        out->checkpoint_tx = ls.checkpoint_tx;
        out->fsyncs = ls.fsyncs;
        out->group_commits = ls.group_commits;
    }
}

/* ---- fsck ----------------------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t x) { return dl__hash_combine(h, x); }

/* A digest of a store's whole state: every key of the eight trees, every transaction's
 * record, the schema's attributes, the frontier and the allocator. */
static uint64_t state_digest(dl_store_t *s) {
    uint64_t h = 0;
    for (int t = 0; t < DL_N_TREES; t++) {
        dl_btcur_t q;
        dl__btree_seek(&q, &s->trees[t], NULL, 0);
        h = mix(h, (uint64_t)s->trees[t].count);
        for (const dl_kd_t *k; (k = dl__btree_cur_get(&q)); dl__btree_cur_next(&q))
            h = mix(mix(mix(mix(h, (uint64_t)k->e), (uint64_t)k->a), dl_value_hash(k->v)), k->txop);
    }
    for (uint64_t tx = 0; tx <= s->last_tx; tx++) {
        const dl_txrec_t *r = dl__store_txrec(s, tx);
        if (!r)
            continue;
        h = mix(h, tx);
        for (size_t i = 0; i < r->n_time; i++)
            h = mix(h, r->time[i]);
        for (size_t i = 0; i < r->n_changes; i++)
            h = mix(mix(mix(mix(h, (uint64_t)r->changes[i].e), (uint64_t)r->changes[i].a),
                        dl_value_hash(r->changes[i].v)),
                    (uint64_t)r->changes[i].diff);
    }
    for (size_t i = 0; i < s->schema->n_attrs; i++) {
        const dl_attr_t *a = &s->schema->attrs[i];
        h = mix(h, (uint64_t)a->id ^ ((uint64_t)a->type << 40) ^ ((uint64_t)a->many << 48) ^
                       ((uint64_t)a->unique << 50) ^ ((uint64_t)a->indexed << 52) ^
                       ((uint64_t)a->is_dim << 54));
    }
    for (int i = 0; i <= s->schema->n_dims; i++)
        h = mix(h, s->frontier[i]);
    return mix(h, (uint64_t)s->next_id);
}

static void problem(dl_store_fsck_t *out, const char *fmt, ...) DL_PRINTF(2, 3);
static void problem(dl_store_fsck_t *out, const char *fmt, ...) {
    if (out->problems++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(out->first_problem, sizeof out->first_problem, fmt, ap);
        va_end(ap);
    }
}

int dl_store_fsck(const char *dir, dl_store_fsck_t *out, dl_error_t *err) {
    dl_store_fsck_t local;
    if (!out)
        out = &local;
    memset(out, 0, sizeof *out);
    if (!dir)
        return dl_error_set(err, DL_EINVAL, "dl_store_fsck: NULL dir");
    /* 1. every checksum of every segment and checkpoint */
    dl_log_fsck_t lf;
    dl_error_t lerr = {0};
    if (dl__log_fsck(dir, NULL, &lf, &lerr) != 0)
        problem(out, "%s", lf.first_problem[0] ? lf.first_problem : lerr.message);
    out->log_first_tx = lf.first_tx;
    out->log_last_tx = lf.last_tx;
    out->checkpoint_tx = lf.newest_checkpoint_tx;
    out->compression_ratio = lf.compression_ratio;
    /* 2. the database from the checkpoint and from the log alone, compared at the
     * checkpoint; then the whole database (checkpoint + tail) */
    dl_log_t *log;
    int rc = dl__log_open(dir, NULL, &log, err);
    if (rc != 0)
        return rc;
    dl_store_t *a = NULL, *b = NULL;
    if ((rc = dl__store_new(&a, err)) == 0)
        rc = dl__store_new(&b, err);
    if (rc == 0) {
        dl__store_recovery_begin(a);
        dl__store_recovery_begin(b);
    }
    uint64_t covers = 0;
    dl_error_t e1 = {0}, e2 = {0};
    if (rc == 0 && load_checkpoint(a, log, &covers, &e1) != 0) {
        problem(out, "checkpoint: %s", e1.message);
        covers = 0;
    }
    if (rc == 0 && covers && lf.first_tx <= 1) {
        rctx_t c = {b, &e2, covers};
        int r2 = dl__log_replay(log, 0, replay_cb, &c, &e2);
        if (r2 < 0)
            problem(out, "log: %s", e2.message);
        else if (b->last_tx != covers)
            problem(out, "the log holds transactions up to %llu, the checkpoint covers %llu",
                    (unsigned long long)b->last_tx, (unsigned long long)covers);
        else if (state_digest(a) != state_digest(b))
            problem(out,
                    "the indices rebuilt from the log differ from the checkpoint at "
                    "transaction %llu",
                    (unsigned long long)covers);
        out->compared = true;
    }
    if (rc == 0) {
        dl_error_t e3 = {0};
        rctx_t c = {a, &e3, 0};
        int r3 = dl__log_replay(log, a->last_tx, replay_cb, &c, &e3);
        if (r3 < 0)
            problem(out, "log tail: %s", e3.message);
        out->last_tx = a->last_tx;
        out->datoms = a->trees[DL_T_CUR + DL_ORD_EAVT].count;
        out->history_datoms = a->trees[DL_T_PAST + DL_ORD_EAVT].count;
        for (int t = 0; t < DL_N_TREES; t++)
            if (dl__btree_check(&a->trees[t]) < 0)
                problem(out, "index %d fails its structural check", t);
    }
    dl_store_close(a);
    dl_store_close(b);
    dl__log_close(log);
    if (rc != 0)
        return rc;
    if (out->problems)
        return dl_error_set(err, DL_ECORRUPT, "fsck %s: %d problem(s); first: %s", dir,
                            out->problems, out->first_problem);
    return 0;
}
