/*
 * durable.c: the glue between the store and its durable log (store/log.h, written by the
 * log's owner): opening a directory, the payload of a committed transaction, recovery
 * (checkpoint, then the log's tail), checkpoints and fsck (docs/storage.md "Durability
 * glue", "Checkpoints"; the byte layouts are docs/storage-format.md "Checkpoint payload").
 *
 * Payload of one record (version 1), all integers LEB128 varints, signed ones zigzag:
 *   u8 version=1 | tx | u8 flags (1: advance) | next_id | n_time, time[n_time] |
 *   n_frontier, frontier[..] |
 *   n_changes, then per change: e(z, the difference from the previous change's e) a(z)
 *   value diff(u8: 1 assert, 0 retract)
 *   value = u8 type, then nothing (nil) | u8 (bool) | z (int, instant, ref) |
 *           8 bytes little-endian (double) | len + bytes (string, keyword) | 16 (uuid)
 * A checkpoint's payload (version 2) is a snapshot of the indices: the current and past
 * EAVT runs, the schema, statistics, frontiers, allocator and the transaction table
 * (encode_indices); recovery bulk-loads the eight B+trees bottom-up from it (load_indices:
 * no per-datom inserts) and replays only the log's tail. Version 1 payloads (transaction
 * records, replayed) are still read. Replay does not re-validate: records were validated
 * before they were logged.
 * It does not know the log's file format (log.c, checkpoint.c) nor how a transaction is
 * resolved (tx.c) or applied (store.c).
 */
#include "store/store.h"

#include "store/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* ---- checkpoint payload version 2: the indices ------------------------------------------------
 */

/* Interned values (strings, keywords, uuids) are written once, in a dictionary, and keys
 * refer to them by index: pointer identity is value identity for interned values. */
typedef struct vdict {
    const void **keys; /* sym pointers; NULL empty */
    uint8_t *types;
    uint32_t *idx;
    size_t cap, n;
    dl_value_t *list; /* in index order */
    size_t cap_list;
    bool oom;
} vdict_t;

static uint32_t vdict_index(vdict_t *d, dl_value_t v) {
    if (d->oom)
        return 0;
    if ((d->n + 1) * 2 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        const void **k = dl_calloc(cap, sizeof *k);
        uint8_t *t = dl_calloc(cap, 1);
        uint32_t *ix = dl_calloc(cap, sizeof *ix);
        if (!k || !t || !ix) {
            dl_free(k), dl_free(t), dl_free(ix);
            d->oom = true;
            return 0;
        }
        for (size_t i = 0; i < d->cap; i++) {
            if (!d->keys[i])
                continue;
            size_t h = (size_t)dl__hash_mix((uint64_t)(uintptr_t)d->keys[i]) & (cap - 1);
            while (k[h])
                h = (h + 1) & (cap - 1);
            k[h] = d->keys[i], t[h] = d->types[i], ix[h] = d->idx[i];
        }
        dl_free(d->keys), dl_free(d->types), dl_free(d->idx);
        d->keys = k, d->types = t, d->idx = ix, d->cap = cap;
    }
    const void *p = v.as.s;
    size_t h = (size_t)dl__hash_mix((uint64_t)(uintptr_t)p) & (d->cap - 1);
    for (; d->keys[h]; h = (h + 1) & (d->cap - 1))
        if (d->keys[h] == p && d->types[h] == v.type)
            return d->idx[h];
    if (d->n == d->cap_list) {
        size_t cap = d->cap_list ? d->cap_list * 2 : 256;
        dl_value_t *l = dl_realloc(d->list, cap * sizeof *l);
        if (!l) {
            d->oom = true;
            return 0;
        }
        d->list = l, d->cap_list = cap;
    }
    d->list[d->n] = v;
    d->keys[h] = p, d->types[h] = (uint8_t)v.type, d->idx[h] = (uint32_t)d->n;
    return (uint32_t)d->n++;
}

static void vdict_fini(vdict_t *d) {
    dl_free(d->keys), dl_free(d->types), dl_free(d->idx), dl_free(d->list);
}

static bool interned(dl_type_t t) {
    return t == DL_T_STRING || t == DL_T_KEYWORD || t == DL_T_UUID;
}

/* One key of an EAVT run, against the previous one (keys ascending). */
static void put_key(dl_buf_t *b, vdict_t *d, const dl_kd_t *prev, const dl_kd_t *k) {
    uint64_t de = (uint64_t)(k->e - prev->e);
    put_u(b, de);
    put_u(b, de == 0 ? (uint64_t)(k->a - prev->a) : (uint64_t)k->a);
    if (interned((dl_type_t)k->v.type)) {
        dl__buf_putc(b, (char)k->v.type);
        put_u(b, vdict_index(d, k->v));
    } else {
        put_value(b, k->v); /* type byte, then zigzag integers, 8-byte doubles, a bool */
    }
    put_z(b, (int64_t)(k->txop - prev->txop));
}

static void put_run(dl_buf_t *b, vdict_t *d, const dl_btree_t *t, uint32_t *per_tx,
                    uint64_t covers) {
    put_u(b, (uint64_t)t->count);
    dl_kd_t prev = {0};
    dl_btcur_t q;
    dl__btree_seek(&q, t, NULL, 0);
    for (const dl_kd_t *k; (k = dl__btree_cur_get(&q)); dl__btree_cur_next(&q)) {
        put_key(b, d, &prev, k);
        prev = *k;
        uint64_t tx = DL_KD_TX(k);
        if (tx <= covers)
            per_tx[2 * tx + (DL_KD_ADDED(k) ? 1 : 0)]++;
    }
}

/* The version-2 blob of snapshot v (docs/storage-format.md "Checkpoint payload"). */
static int encode_indices(dl_store_t *s, const dl_version_t *v, dl_buf_t *out, dl_error_t *err) {
    uint64_t covers = v->basis_tx;
    const dl_schema_t *sc = v->schema;
    uint32_t *per_tx = dl_calloc(2 * (covers + 1), sizeof *per_tx); /* retractions, assertions */
    dl_buf_t keys;
    dl__buf_init(&keys);
    vdict_t d = {0};
    if (!per_tx)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    put_run(&keys, &d, &v->trees[DL_T_CUR + DL_ORD_EAVT], per_tx, covers);
    put_run(&keys, &d, &v->trees[DL_T_PAST + DL_ORD_EAVT], per_tx, covers);
    dl_buf_t *b = out;
    dl__buf_putc(b, 2);
    put_u(b, covers);
    put_z(b, v->next_id);
    put_u(b, (uint64_t)sc->n_dims + 1);
    for (int i = 0; i <= sc->n_dims; i++)
        put_u(b, v->frontier[i]);
    /* schema and statistics */
    put_u(b, sc->n_attrs);
    for (size_t i = 0; i < sc->n_attrs; i++) {
        const dl_attr_t *a = &sc->attrs[i];
        put_z(b, a->id);
        dl__buf_putc(b, (char)((a->ident ? 1 : 0) | (a->many << 1) | (a->indexed << 2) |
                               (a->component << 3) | (a->no_history << 4) | (a->is_attr << 5) |
                               (a->is_dim << 6)));
        dl__buf_putc(b, (char)a->type);
        dl__buf_putc(b, (char)a->unique);
        put_u(b, (uint64_t)a->dim);
        if (a->ident) {
            put_u(b, a->ident->len);
            dl__buf_put(b, a->ident->bytes, a->ident->len);
        }
        put_z(b, v->stats[i].datoms);
        put_z(b, v->stats[i].entities);
        put_z(b, v->stats[i].values);
    }
    /* the value dictionary, then the two EAVT runs */
    put_u(b, d.n);
    for (size_t i = 0; i < d.n; i++)
        put_value(b, d.list[i]);
    /* the transaction table */
    int64_t prev_next = DL_FIRST_USER_ID;
    int rc = 0;
    for (uint64_t tx = 1; tx <= covers; tx++) {
        const dl_txrec_t *r = dl__store_txrec(s, tx);
        if (!r) {
            rc = dl_error_set(err, DL_EINTERNAL, "checkpoint: transaction %" PRIu64 " missing", tx);
            break;
        }
        /* the indices hold a subset of the changes (:db/noHistory drops some): the same
         * count means the same changes; otherwise they are written out */
        uint32_t nr = per_tx[2 * tx], na = per_tx[2 * tx + 1];
        bool explicit_ = (size_t)nr + na != r->n_changes;
        dl__buf_putc(b, (char)((r->advance ? 1 : 0) | (explicit_ ? 2 : 0)));
        put_u(b, r->n_time);
        for (size_t i = 1; i < r->n_time; i++)
            put_u(b, r->time[i]);
        put_z(b, r->next_id - prev_next);
        prev_next = r->next_id;
        if (explicit_) {
            put_u(b, r->n_changes);
            int64_t pe = 0;
            for (size_t i = 0; i < r->n_changes; i++) {
                const dl_change_t *c = &r->changes[i];
                put_z(b, c->e - pe);
                pe = c->e;
                put_z(b, c->a);
                put_value(b, c->v);
                dl__buf_putc(b, (char)(c->diff > 0 ? 1 : 0));
            }
        } else {
            put_u(b, nr);
            put_u(b, na);
        }
    }
    /* the two EAVT runs last: recovery knows every transaction's place in the table
     * before it decodes them */
    dl__buf_put(b, keys.data, keys.len);
    if (rc == 0 && (b->oom || keys.oom || d.oom))
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    dl_free(per_tx);
    dl__buf_fini(&keys);
    vdict_fini(&d);
    return rc;
}

/* ---- loading a version-2 blob ---- */

static bool map_counted(const dl_attr_t *a) {
    return a && a->is_attr && !a->indexed && a->type != DL_T_REF;
}

static int cmp_avet4(const void *x, const void *y) { return dl__btree_cmp(DL_ORD_AVET, x, y, 4); }
static int cmp_vaet4(const void *x, const void *y) { return dl__btree_cmp(DL_ORD_VAET, x, y, 4); }

/* Sorts k[0..m) into order `ord` (AVET: keys of one attribute; VAET: any) given that they
 * are in AEVT order: then a STABLE sort by value alone is enough, since keys of equal value
 * keep their (a, e, tx) order. Integer-like values of one type are radix-sorted (LSD,
 * 8 bits a pass, only the passes the value range needs); anything else uses qsort with
 * the full comparator. tmp has room for m keys. */
static void sort_by_value(dl_kd_t *k, dl_kd_t *tmp, size_t m, int ord) {
    bool sorted = true;
    for (size_t i = 1; i < m && sorted; i++)
        sorted = dl__btree_cmp(ord, &k[i - 1], &k[i], 4) < 0;
    if (sorted || m < 2)
        return;
    uint8_t ty = k[0].v.type;
    bool ints = ty == DL_T_INT || ty == DL_T_REF || ty == DL_T_INSTANT;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t i = 0; i < m && ints; i++) {
        if (k[i].v.type != ty) {
            ints = false;
            break;
        }
        uint64_t u = (uint64_t)k[i].v.as.i ^ (1ull << 63); /* order-preserving */
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    if (!ints) {
        qsort(k, m, sizeof *k, ord == DL_ORD_AVET ? cmp_avet4 : cmp_vaet4);
        return;
    }
    uint64_t range = hi - lo;
    dl_kd_t *src = k, *dst = tmp;
    for (int shift = 0; shift < 64 && (range >> shift); shift += 8) {
        size_t cnt[257] = {0};
        for (size_t i = 0; i < m; i++)
            cnt[((((uint64_t)src[i].v.as.i ^ (1ull << 63)) - lo) >> shift & 0xff) + 1]++;
        for (int b = 0; b < 256; b++)
            cnt[b + 1] += cnt[b];
        for (size_t i = 0; i < m; i++)
            dst[cnt[(((uint64_t)src[i].v.as.i ^ (1ull << 63)) - lo) >> shift & 0xff]++] = src[i];
        dl_kd_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != k)
        memcpy(k, src, m * sizeof *k);
}

/* Attribute id -> slot, by a direct table when the ids are dense enough. */
typedef struct slotmap {
    const dl_schema_t *sc;
    int64_t base;
    size_t n;
    int32_t *tab;
} slotmap_t;

static void slotmap_init(slotmap_t *m, const dl_schema_t *sc) {
    memset(m, 0, sizeof *m);
    m->sc = sc;
    if (!sc->n_attrs)
        return;
    int64_t lo = sc->attrs[0].id, hi = sc->attrs[sc->n_attrs - 1].id;
    if (hi - lo >= (1 << 20) || !(m->tab = dl_malloc((size_t)(hi - lo + 1) * sizeof *m->tab)))
        return;
    m->base = lo;
    m->n = (size_t)(hi - lo + 1);
    for (size_t i = 0; i < m->n; i++)
        m->tab[i] = -1;
    for (size_t i = 0; i < sc->n_attrs; i++)
        m->tab[sc->attrs[i].id - lo] = (int32_t)i;
}

static inline long slotmap_get(const slotmap_t *m, int64_t a) {
    if (m->tab)
        return a >= m->base && (uint64_t)(a - m->base) < m->n ? m->tab[a - m->base] : -1;
    return dl__schema_slot(m->sc, a);
}

/* A sequential writer into a bulk build: key after key from a position. */
typedef struct bw {
    dl_bbuild_t *b;
    size_t pos, room;
    dl_kd_t *d;
} bw_t;

static inline dl_kd_t *bw_next(bw_t *w) {
    if (!w->room)
        w->d = dl__btree_build_at(w->b, w->pos, &w->room);
    w->pos++;
    w->room--;
    return w->d++;
}

/* Decodes one EAVT run into a bulk build of tree t (checking the order), counting keys per
 * attribute slot and per transaction (retractions / assertions). */
/* Where the changes of each transaction go in the table's block (load_txtable): write
 * cursors for retractions and assertions and their ends; flags: 1 changes written out in
 * the blob (the runs do not fill them), 2 the current run gave assertions, 4 the past run
 * too (the group is two sorted runs: sorted after). */
typedef struct txpos {
    dl_change_t *all;
    uint32_t *rcur, *rend, *acur, *aend;
    uint32_t *split; /* the assertion cursor after the current run */
    uint8_t *flags;
} txpos_t;

static int load_run(dl_store_t *s, rd_t *r, const dl_value_t *dict, size_t n_dict, dl_btree_t *t,
                    const slotmap_t *sm, size_t *per_slot, txpos_t *tp, bool past, uint64_t covers,
                    const char **why) {
    uint64_t n = get_u(r);
    if (r->bad || n > (uint64_t)(r->end - r->p)) {
        *why = "bad key count";
        return DL_ECORRUPT;
    }
    dl_bbuild_t bb;
    if (dl__btree_build_begin(&s->ctx, &bb, (size_t)n) != 0)
        return DL_ENOMEM;
    dl_kd_t prev = {0};
    bw_t w = {&bb, 0, 0, NULL};
    for (size_t i = 0; i < n; i++) {
        dl_kd_t k;
        uint64_t de = get_u(r);
        k.e = prev.e + (int64_t)de;
        uint64_t a = get_u(r);
        k.a = de == 0 ? prev.a + (int64_t)a : (int64_t)a;
        uint8_t ty = r->p < r->end ? *r->p : 0xff;
        if (ty < DL_T__COUNT && interned((dl_type_t)ty)) {
            r->p++;
            uint64_t ix = get_u(r);
            if (ix >= n_dict || dict[ix].type != ty) {
                r->bad = true;
                break;
            }
            k.v = dict[ix];
        } else if (ty == DL_T_INT || ty == DL_T_INSTANT || ty == DL_T_REF) {
            r->p++;
            k.v = dl_value_of((dl_type_t)ty, get_z(r));
        } else {
            k.v = get_value(r);
        }
        k.txop = prev.txop + (uint64_t)get_z(r);
        long slot = slotmap_get(sm, k.a);
        uint64_t tx = DL_KD_TX(&k);
        /* strictly ascending (the cheap cases first) */
        bool ordered = i == 0 || k.e > prev.e || (k.e == prev.e && k.a > prev.a) ||
                       dl__btree_cmp(DL_ORD_EAVT, &prev, &k, t->ncmp) < 0;
        if (r->bad || slot < 0 || tx > covers || !ordered) {
            r->bad = true;
            break;
        }
        per_slot[slot]++;
        if (tx > 0 && !(tp->flags[tx] & 1)) {
            /* the change in its transaction's record: retractions, then assertions */
            bool add = DL_KD_ADDED(&k);
            uint32_t at = add ? tp->acur[tx]++ : tp->rcur[tx]++;
            if (at >= (add ? tp->aend[tx] : tp->rend[tx])) {
                r->bad = true;
                break;
            }
            tp->all[at] = (dl_change_t){k.e, k.a, k.v, add ? 1 : -1};
            if (add)
                tp->flags[tx] |= past ? 4 : 2;
        }
        *bw_next(&w) = k;
        prev = k;
    }
    if (r->bad) {
        dl__btree_build_abort(&bb);
        *why = "bad or unordered key";
        return DL_ECORRUPT;
    }
    return dl__btree_build_end(&bb, t);
}

/* Derives the AEVT tree of one kind (DL_T_CUR or DL_T_PAST) from its EAVT tree in one
 * pass: AEVT is the EAVT order partitioned (stably) by attribute, so each attribute's keys
 * are written sequentially from its offset. */
static int derive_aevt(dl_store_t *s, int base, const size_t *per_slot, const slotmap_t *sm) {
    size_t na = s->schema->n_attrs, n = (size_t)s->trees[base + DL_ORD_EAVT].count;
    bw_t *w = dl_calloc(na + 1, sizeof *w);
    if (!w)
        return DL_ENOMEM;
    dl_bbuild_t bb;
    int rc = dl__btree_build_begin(&s->ctx, &bb, n);
    if (rc != 0) {
        dl_free(w);
        return rc;
    }
    for (size_t i = 0, at = 0; i < na; at += per_slot[i], i++)
        w[i] = (bw_t){&bb, at, 0, NULL};
    dl_btcur_t q;
    dl__btree_seek(&q, &s->trees[base + DL_ORD_EAVT], NULL, 0);
    for (const dl_kd_t *k; (k = dl__btree_cur_get(&q)); dl__btree_cur_next(&q))
        *bw_next(&w[slotmap_get(sm, k->a)]) = *k;
    dl_free(w);
    return dl__btree_build_end(&bb, &s->trees[base + DL_ORD_AEVT]);
}

/* Derives the AVET (indexed attributes) and VAET (refs) trees of one kind from its EAVT
 * tree: the subsets are gathered in AEVT order (each attribute from its offset), sorted by
 * value (sort_by_value) and built. Reads only the EAVT tree and the schema, so it runs
 * on a second thread while derive_aevt runs. */
static int derive_value_trees(dl_store_t *s, int base, const size_t *per_slot,
                              const slotmap_t *sm) {
    const dl_schema_t *sc = s->schema;
    size_t na = sc->n_attrs;
    size_t *pos = dl_calloc(2 * (na + 1), sizeof *pos);
    if (!pos)
        return DL_ENOMEM;
    size_t *apos = pos, *vpos = pos + (na + 1);
    size_t n_avet = 0, n_vaet = 0;
    for (size_t i = 0; i < na; i++) {
        apos[i] = n_avet;
        vpos[i] = n_vaet;
        if (sc->attrs[i].indexed)
            n_avet += per_slot[i];
        if (sc->attrs[i].type == DL_T_REF)
            n_vaet += per_slot[i];
    }
    dl_kd_t *av = dl_malloc((2 * n_avet + 1) * sizeof *av);
    dl_kd_t *va = dl_malloc((2 * n_vaet + 1) * sizeof *va);
    int rc = av && va ? 0 : DL_ENOMEM;
    if (rc == 0 && (n_avet || n_vaet)) {
        dl_btcur_t q;
        dl__btree_seek(&q, &s->trees[base + DL_ORD_EAVT], NULL, 0);
        for (const dl_kd_t *k; (k = dl__btree_cur_get(&q)); dl__btree_cur_next(&q)) {
            long sl = slotmap_get(sm, k->a);
            const dl_attr_t *a = &sc->attrs[sl];
            if (a->indexed)
                av[apos[sl]++] = *k;
            if (a->type == DL_T_REF)
                va[vpos[sl]++] = *k;
        }
        /* AVET: each indexed attribute's slice sorted by value; VAET: all of it */
        for (size_t i = 0, at = 0; i < na; i++)
            if (sc->attrs[i].indexed) {
                sort_by_value(av + at, av + n_avet, per_slot[i], DL_ORD_AVET);
                at += per_slot[i];
            }
        sort_by_value(va, va + n_vaet, n_vaet, DL_ORD_VAET);
    }
    for (int ord = DL_ORD_AVET; ord <= DL_ORD_VAET && rc == 0; ord++) {
        size_t m = ord == DL_ORD_AVET ? n_avet : n_vaet;
        const dl_kd_t *src = ord == DL_ORD_AVET ? av : va;
        dl_bbuild_t bb;
        if ((rc = dl__btree_build_begin(&s->ctx, &bb, m)) != 0)
            break;
        bw_t ww = {&bb, 0, 0, NULL};
        for (size_t i = 0; i < m; i++)
            *bw_next(&ww) = src[i];
        rc = dl__btree_build_end(&bb, &s->trees[base + ord]);
    }
    dl_free(pos), dl_free(av), dl_free(va);
    return rc;
}

/* The value counts of the attributes no index orders by value, from the current EAVT
 * tree (lost attributes, statistic -1, stay lost: counted on demand). */
static void rebuild_vcounts(dl_store_t *s, const slotmap_t *sm) {
    const dl_schema_t *sc = s->schema;
    size_t na = sc->n_attrs;
    bool *counted = dl_calloc(na + 1, sizeof *counted);
    for (size_t i = 0; i < na; i++) {
        if (!map_counted(&sc->attrs[i]))
            continue;
        if (s->stats[i].values < 0 || !counted)
            dl__vcount_lose(&s->vc, sc->attrs[i].id);
        else
            counted[i] = true;
    }
    if (!counted)
        return;
    dl_btcur_t q;
    dl__btree_seek(&q, &s->trees[DL_T_CUR + DL_ORD_EAVT], NULL, 0);
    for (const dl_kd_t *k; (k = dl__btree_cur_get(&q)); dl__btree_cur_next(&q)) {
        long sl = slotmap_get(sm, k->a);
        int t;
        if (counted[sl] && dl__vcount_add(&s->vc, k->a, k->v, 1, &t) != 0) {
            s->stats[sl].values = -1; /* counted on demand from here on */
            counted[sl] = false;
        }
    }
    dl_free(counted);
}

typedef struct side {
    dl_store_t *s;
    const size_t *per_slot; /* 2 kinds */
    size_t stride;
    const slotmap_t *sm;
    int rc;
} side_t;

/* The second thread of a load: AVET and VAET of both kinds, then the value counts. */
static void *side_main(void *p) {
    side_t *x = p;
    x->rc = derive_value_trees(x->s, DL_T_CUR, x->per_slot, x->sm);
    if (x->rc == 0)
        x->rc = derive_value_trees(x->s, DL_T_PAST, x->per_slot + x->stride, x->sm);
    if (x->rc == 0)
        rebuild_vcounts(x->s, x->sm);
    return NULL;
}

/* The transaction table of a version-2 blob (before the runs): time vectors, allocator,
 * advance flags into the records; the changes of a transaction the indices hold all of
 * are only counted (retractions, assertions): their places in one block are set up in tp
 * for load_run to fill; the others' changes are decoded here. */
static int load_txtable(dl_store_t *s, rd_t *r, uint64_t covers, size_t n_fr, txpos_t *tp,
                        const char **why) {
    *why = "bad transaction table";
    size_t total_time = 0, total_changes = 0;
    const uint8_t *tx_start = r->p;
    for (uint64_t tx = 1; tx <= covers; tx++) {
        if (r->p >= r->end)
            return DL_ECORRUPT;
        uint8_t f = *r->p++;
        uint64_t nt = get_u(r);
        if (r->bad || nt == 0 || nt > n_fr)
            return DL_ECORRUPT;
        for (size_t i = 1; i < nt; i++)
            (void)get_u(r);
        (void)get_z(r);
        total_time += nt;
        if (f & 2) {
            uint64_t nc = get_u(r);
            if (r->bad || nc > (uint64_t)(r->end - r->p))
                return DL_ECORRUPT;
            for (size_t i = 0; i < nc && !r->bad; i++) {
                (void)get_z(r), (void)get_z(r), (void)get_value(r);
                if (r->p >= r->end || *r->p > 1)
                    r->bad = true;
                else
                    r->p++;
            }
            total_changes += nc;
        } else {
            uint64_t nr = get_u(r), na = get_u(r);
            if (r->bad || nr > (uint64_t)(r->end - r->p) || na > (uint64_t)(r->end - r->p))
                return DL_ECORRUPT;
            total_changes += nr + na;
        }
        if (total_changes >= UINT32_MAX)
            return DL_ECORRUPT;
    }
    if (r->bad)
        return DL_ECORRUPT;
    const uint8_t *runs = r->p;
    uint8_t *blk =
        dl_malloc(total_time * sizeof(uint64_t) + total_changes * sizeof(dl_change_t) + 1);
    if (!blk || dl__store_keep_bulk(s, blk) != 0)
        return DL_ENOMEM;
    dl_change_t *chg = (dl_change_t *)blk;
    tp->all = chg;
    uint64_t *tim = (uint64_t *)(blk + total_changes * sizeof(dl_change_t));
    r->p = tx_start;
    int64_t prev_next = DL_FIRST_USER_ID;
    for (uint64_t tx = 1; tx <= covers; tx++) {
        dl_txrec_t *rec = dl__store_txrec_slot(s, tx);
        if (!rec)
            return DL_ENOMEM;
        uint8_t f = *r->p++;
        rec->bulk = true;
        rec->advance = f & 1;
        rec->n_time = (size_t)get_u(r);
        rec->time = tim;
        tim += rec->n_time;
        rec->time[0] = tx;
        for (size_t i = 1; i < rec->n_time; i++)
            rec->time[i] = get_u(r);
        prev_next += get_z(r);
        rec->next_id = prev_next;
        rec->changes = chg;
        if (f & 2) {
            rec->n_changes = (size_t)get_u(r);
            int64_t pe = 0;
            for (size_t i = 0; i < rec->n_changes; i++) {
                pe += get_z(r);
                int64_t a = get_z(r);
                dl_value_t v = get_value(r);
                chg[i] = (dl_change_t){pe, a, v, *r->p++ ? 1 : -1};
            }
            tp->flags[tx] = 1;
        } else {
            uint32_t nr = (uint32_t)get_u(r), na = (uint32_t)get_u(r);
            rec->n_changes = (size_t)nr + na;
            tp->rcur[tx] = (uint32_t)(chg - tp->all);
            tp->rend[tx] = tp->acur[tx] = tp->rcur[tx] + nr;
            tp->aend[tx] = tp->acur[tx] + na;
        }
        chg += rec->n_changes;
    }
    r->p = runs;
    return 0;
}

static inline int cmp_change_eavt(const dl_change_t *a, const dl_change_t *b) {
    if (a->e != b->e)
        return a->e < b->e ? -1 : 1;
    if (a->a != b->a)
        return a->a < b->a ? -1 : 1;
    dl_kd_t p = {.e = a->e, .a = a->a, .v = a->v}, q = {.e = b->e, .a = b->a, .v = b->v};
    return dl__btree_cmp(DL_ORD_EAVT, &p, &q, 3);
}

/* After the runs: every implicit transaction got exactly its counted changes; an
 * assertion group filled by both runs (assertions later retracted next to ones still
 * current) is two sorted runs [rend, split) and [split, aend): merged from the back
 * through a copy of the second (usually the short one). */
static int finish_txtable(uint64_t covers, txpos_t *tp) {
    dl_change_t *tmp = NULL;
    size_t cap = 0;
    int rc = 0;
    for (uint64_t tx = 1; tx <= covers && rc == 0; tx++) {
        if (tp->flags[tx] & 1)
            continue;
        if (tp->rcur[tx] != tp->rend[tx] || tp->acur[tx] != tp->aend[tx]) {
            rc = DL_ECORRUPT;
            break;
        }
        if ((tp->flags[tx] & 6) != 6)
            continue;
        dl_change_t *g = tp->all;
        size_t lo = tp->rend[tx], mid = tp->split[tx], hi = tp->aend[tx], m = hi - mid;
        if (m > cap) {
            dl_change_t *t = dl_realloc(tmp, m * sizeof *t);
            if (!t) {
                rc = DL_ENOMEM;
                break;
            }
            tmp = t, cap = m;
        }
        memcpy(tmp, g + mid, m * sizeof *tmp);
        size_t i = mid, j = m, w = hi;
        while (j > 0) {
            if (i > lo && cmp_change_eavt(&g[i - 1], &tmp[j - 1]) > 0)
                g[--w] = g[--i];
            else
                g[--w] = tmp[--j];
        }
    }
    dl_free(tmp);
    return rc;
}

/* Loads a version-2 blob into the fresh store s (recovery mode): bulk-builds the eight
 * trees, restores schema, statistics, frontier, allocator and the transaction table. */

static int load_indices(dl_store_t *s, uint64_t covers, const uint8_t *blob, size_t n,
                        dl_error_t *err) {
    rd_t r = {blob + 1, blob + n, false};
    const char *why = "truncated header";
    int rc = 0;
    dl_attr_t *attrs = NULL;
    dl_stat_t *stats = NULL;
    uint64_t *fr = NULL;
    dl_value_t *dict = NULL;
    size_t *per_slot = NULL;
    txpos_t tp = {0};
    uint32_t *tpmem = NULL;
    dl_schema_t *sc = NULL;
    slotmap_t sm = {0};
    uint64_t bcovers = get_u(&r);
    int64_t next_id = get_z(&r);
    uint64_t n_fr = get_u(&r);
    if (r.bad || bcovers != covers || n_fr == 0 || n_fr > 4096)
        goto corrupt;
    fr = dl_calloc(n_fr, sizeof *fr);
    if (!fr)
        goto oom;
    for (size_t i = 0; i < n_fr; i++)
        fr[i] = get_u(&r);
    uint64_t na = get_u(&r);
    if (r.bad || na > (uint64_t)(r.end - r.p)) {
        why = "bad schema";
        goto corrupt;
    }
    attrs = dl_calloc(na + 1, sizeof *attrs);
    stats = dl_calloc(na + 1, sizeof *stats);
    if (!attrs || !stats)
        goto oom;
    why = "bad schema";
    for (size_t i = 0; i < na; i++) {
        dl_attr_t *a = &attrs[i];
        a->id = get_z(&r);
        if (r.end - r.p < 3)
            goto corrupt;
        uint8_t f = r.p[0];
        a->type = (dl_type_t)r.p[1];
        a->unique = r.p[2];
        r.p += 3;
        a->dim = (int)get_u(&r);
        a->many = f & 2, a->indexed = f & 4, a->component = f & 8, a->no_history = f & 16;
        a->is_attr = f & 32, a->is_dim = f & 64;
        if (f & 1) {
            uint64_t len = get_u(&r);
            dl_value_t kw;
            if (r.bad || len > (uint64_t)(r.end - r.p) ||
                dl_value_text(DL_T_KEYWORD, (const char *)r.p, (size_t)len, &kw, NULL) != 0)
                goto corrupt;
            r.p += len;
            a->ident = kw.as.s;
        }
        stats[i].datoms = get_z(&r);
        stats[i].entities = get_z(&r);
        stats[i].values = get_z(&r);
        if (r.bad || a->type >= DL_T__COUNT || a->unique > 2 || a->dim < 0 ||
            ((a->is_attr || a->is_dim) && !a->ident) || (a->is_attr && a->is_dim) ||
            (a->is_dim && (a->dim < 1 || (uint64_t)a->dim > na || (uint64_t)a->dim >= n_fr)) ||
            (i && attrs[i - 1].id >= a->id))
            goto corrupt;
    }
    if (dl__schema_from_attrs(attrs, (size_t)na, &sc) != 0)
        goto oom;
    if ((uint64_t)sc->n_dims + 1 != n_fr)
        goto corrupt;
    dl__schema_unref(s->schema);
    s->schema = sc;
    sc = NULL;
    dl_free(s->stats);
    s->stats = stats;
    stats = NULL;
    dl_free(s->frontier);
    s->frontier = fr;
    s->frontier[0] = 0; /* the writer's coordinate 0 is unused (versions set basis + 1) */
    fr = NULL;
    /* the value dictionary */
    why = "bad value dictionary";
    uint64_t nd = get_u(&r);
    if (r.bad || nd > (uint64_t)(r.end - r.p))
        goto corrupt;
    dict = dl_malloc((nd + 1) * sizeof *dict);
    per_slot = dl_calloc(2 * (na + 1), sizeof *per_slot);
    tpmem = dl_calloc(5 * (covers + 1), sizeof *tpmem);
    tp.flags = dl_calloc(covers + 1, 1);
    if (!dict || !per_slot || !tpmem || !tp.flags)
        goto oom;
    tp.rcur = tpmem, tp.rend = tpmem + (covers + 1), tp.acur = tpmem + 2 * (covers + 1);
    tp.aend = tpmem + 3 * (covers + 1), tp.split = tpmem + 4 * (covers + 1);
    for (size_t i = 0; i < nd; i++) {
        dict[i] = get_value(&r);
        if (r.bad || !interned((dl_type_t)dict[i].type))
            goto corrupt;
    }
    /* the transaction table, then the EAVT runs (filling its changes); then, on two
     * threads, the derived trees and the value counts */
    rc = load_txtable(s, &r, covers, (size_t)n_fr, &tp, &why);
    if (rc == DL_ECORRUPT)
        goto corrupt;
    if (rc != 0)
        goto oom;
    slotmap_init(&sm, s->schema);
    for (int k = 0; k < 2; k++) {
        int base = k ? DL_T_PAST : DL_T_CUR;
        rc = load_run(s, &r, dict, (size_t)nd, &s->trees[base + DL_ORD_EAVT], &sm,
                      per_slot + k * (na + 1), &tp, k == 1, covers, &why);
        if (rc == DL_ECORRUPT)
            goto corrupt;
        if (rc != 0)
            goto oom;
        if (k == 0)
            memcpy(tp.split, tp.acur, (covers + 1) * sizeof *tp.split);
    }
    why = "the transaction table does not match the indices";
    if (r.p != r.end)
        goto corrupt;
    rc = finish_txtable(covers, &tp);
    if (rc == DL_ECORRUPT)
        goto corrupt;
    if (rc != 0)
        goto oom;
    side_t sd = {s, per_slot, (size_t)na + 1, &sm, 0};
    pthread_t th;
    bool threaded = pthread_create(&th, NULL, side_main, &sd) == 0;
    if (!threaded)
        side_main(&sd);
    rc = derive_aevt(s, DL_T_CUR, per_slot, &sm);
    if (rc == 0)
        rc = derive_aevt(s, DL_T_PAST, per_slot + na + 1, &sm);
    if (threaded)
        pthread_join(th, NULL);
    if (rc != 0 || sd.rc != 0)
        goto oom;
    s->next_id = next_id;
    s->last_tx = covers;
    rc = 0;
    goto out;
corrupt:
    rc = dl_error_set(err, DL_ECORRUPT, "checkpoint %" PRIu64 ": %s at byte %zu of its payload",
                      covers, why, (size_t)(r.p - blob));
    goto out;
oom:
    rc = dl_error_set(err, DL_ENOMEM, "out of memory");
out:
    dl__schema_unref(sc);
    dl_free(attrs);
    dl_free(stats);
    dl_free(fr);
    dl_free(dict);
    dl_free(per_slot);
    dl_free(tpmem);
    dl_free(tp.flags);
    dl_free(sm.tab);
    return rc;
}

/* Test hooks (store.h): the version-2 payload of the current database, and loading one
 * into a fresh store (recovery mode) without a log. */
int dl__durable_encode_indices(dl_store_t *s, void **out, size_t *out_n, dl_error_t *err) {
    dl_db_t *db = dl_store_db(s);
    if (!db)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    dl_buf_t b;
    dl__buf_init(&b);
    int rc = encode_indices(s, db->v, &b, err);
    dl_db_unref(db);
    if (rc != 0) {
        dl__buf_fini(&b);
        return rc;
    }
    *out_n = b.len;
    *out = dl__buf_take(&b);
    return *out ? 0 : dl_error_set(err, DL_ENOMEM, "out of memory");
}

int dl__durable_load_indices(dl_store_t *s, uint64_t covers, const void *blob, size_t n,
                             dl_error_t *err) {
    if (n == 0 || *(const uint8_t *)blob != 2)
        return dl_error_set(err, DL_EVERSION, "not a version-2 payload");
    dl__store_recovery_begin(s);
    int rc = load_indices(s, covers, blob, n, err);
    if (rc == 0)
        rc = dl__store_recovery_end(s, err);
    return rc;
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
    if (n > 0 && *r.p == 2) {
        rc = load_indices(s, covers, blob, n, err);
        dl_free(blob);
        return rc;
    }
    if (n == 0 || *r.p++ != 1) {
        int v = n ? *r.p : -1;
        dl_free(blob);
        return dl_error_set(err, DL_EVERSION,
                            "checkpoint %" PRIu64 ": payload version %d (this build reads 1 and 2)",
                            covers, v);
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
    return dl__store_open_io(dir, opts, NULL, out, err);
}

int dl__store_open_io(const char *dir, const dl_store_options_t *opts, const dl_io_t *io,
                      dl_store_t **out, dl_error_t *err) {
    if (!dir || !out)
        return dl_error_set(err, DL_EINVAL, "dl_store_open: NULL argument");
    *out = NULL;
    dl_log_options_t lo;
    memset(&lo, 0, sizeof lo);
    lo.io = io;
    if (opts) {
        lo.sync_mode = opts->sync_mode;
        lo.batch_ms = opts->batch_ms;
        lo.segment_bytes = opts->segment_bytes;
        lo.checkpoints_kept = opts->checkpoints_kept;
        lo.eager_retention = opts->keep_log ? 0 : 1;
    } else {
        lo.eager_retention = 1;
    }
    /* The store's default keeps one checkpoint: the previous one goes once the new one is
     * verified (docs/storage.md "Checkpoints"). */
    if (lo.checkpoints_kept <= 0)
        lo.checkpoints_kept = 1;
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
    dl_buf_t b;
    dl__buf_init(&b);
    int rc = encode_indices(s, db->v, &b, err);
    if (rc == 0)
        rc = dl__log_checkpoint_write((dl_log_t *)s->log, db->v->basis_tx, b.data, b.len, err);
    dl__buf_fini(&b);
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
    bool dbg = getenv("DL_FSCK_DEBUG") != NULL;
    for (int t = 0; t < DL_N_TREES; t++) {
        dl_btcur_t q;
        dl__btree_seek(&q, &s->trees[t], NULL, 0);
        h = mix(h, (uint64_t)s->trees[t].count);
        for (const dl_kd_t *k; (k = dl__btree_cur_get(&q)); dl__btree_cur_next(&q))
            h = mix(mix(mix(mix(h, (uint64_t)k->e), (uint64_t)k->a), dl_value_hash(k->v)), k->txop);
        if (dbg)
            fprintf(stderr, "tree %d: %llx\n", t, (unsigned long long)h);
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
        if (dbg)
            fprintf(stderr, "tx %llu: %llx\n", (unsigned long long)tx, (unsigned long long)h);
    }
    for (size_t i = 0; i < s->schema->n_attrs; i++) {
        const dl_attr_t *a = &s->schema->attrs[i];
        h = mix(h, (uint64_t)a->id ^ ((uint64_t)a->type << 40) ^ ((uint64_t)a->many << 48) ^
                       ((uint64_t)a->unique << 50) ^ ((uint64_t)a->indexed << 52) ^
                       ((uint64_t)a->is_dim << 54));
    }
    for (size_t i = 0; i < s->schema->n_attrs; i++)
        h = mix(mix(mix(h, (uint64_t)s->stats[i].datoms), (uint64_t)s->stats[i].entities),
                (uint64_t)s->stats[i].values);
    for (int i = 0; i <= s->schema->n_dims; i++)
        h = mix(h, s->frontier[i]);
    return mix(h, (uint64_t)s->next_id);
}

/* Re-applies the transaction records of store a (1..covers), datom by datom through the
 * normal replay path, into the fresh store b: an independent rebuild of every index, the
 * schema, statistics and frontiers from the changes alone. */
static int rebuild_from_records(dl_store_t *a, uint64_t covers, dl_store_t *b, dl_error_t *err) {
    uint64_t fr[4096] = {0};
    size_t n_fr = 1;
    dl_buf_t rec;
    dl__buf_init(&rec);
    int rc = 0;
    for (uint64_t tx = 1; tx <= covers && rc == 0; tx++) {
        const dl_txrec_t *r = dl__store_txrec(a, tx);
        if (!r || r->n_time > 4096) {
            rc = dl_error_set(err, DL_ECORRUPT, "transaction %" PRIu64 " missing", tx);
            break;
        }
        if (r->n_time > n_fr)
            n_fr = r->n_time;
        if (r->advance)
            for (size_t i = 1; i < r->n_time; i++)
                fr[i] = r->time[i];
        rec.len = 0;
        encode_tx(a, tx, r, r->next_id, fr, n_fr, &rec);
        rc = rec.oom ? dl_error_set(err, DL_ENOMEM, "out of memory")
                     : replay_one(b, tx, rec.data, rec.len, err);
    }
    dl__buf_fini(&rec);
    return rc;
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
    if (rc == 0 && covers && lf.first_tx == 1) {
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
        snprintf(out->rebuilt_from, sizeof out->rebuilt_from, "log");
    } else if (rc == 0 && covers) {
        /* the log no longer reaches back: rebuild from the checkpoint's records */
        int r2 = rebuild_from_records(a, covers, b, &e2);
        if (r2 != 0)
            problem(out, "checkpoint records: %s", e2.message);
        else if (state_digest(a) != state_digest(b))
            problem(out,
                    "the indices rebuilt from the checkpoint's transaction records differ from "
                    "its indices at transaction %llu",
                    (unsigned long long)covers);
        out->compared = true;
        snprintf(out->rebuilt_from, sizeof out->rebuilt_from, "checkpoint-records");
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
