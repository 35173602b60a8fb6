/*
 * tx.c: turns transaction data (dl_txdata_t: ops with their source positions) into a
 * validated plan (dl_txplan_t: the exact datoms to retract and to assert, the tempid
 * map, the time coordinates, the new schema), following Datomic's semantics as
 * docs/storage.md "Transactions" describes them:
 *  1. Every operation is resolved against the database as of before the transaction
 *     (the writer's committed trees; nothing here writes to them).
 *  2. Tempids (strings, negative ints, the implicit ones of nested maps) resolve
 *     consistently; a tempid with a :db.unique/identity value that exists upserts into
 *     that entity; tempids sharing a new identity value become one entity.
 *  3. The transaction is one set of changes at one time: contradictions (two values of
 *     one cardinality-one attribute on one entity, asserting and retracting one datom)
 *     are DL_ECONFLICT, never order-dependent outcomes.
 *  4. Assertions already true and retractions of absent datoms are no-ops; asserting a
 *     cardinality-one attribute retracts the previous value.
 * It does not apply the plan (store.c does) and does not parse text (txform.c).
 */
#include "store/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors --------------------------------------------------------------------------------- */

static const char *op_name(dl_op_kind_t k) {
    switch (k) {
        case DL_OP_ADD:
            return ":db/add";
        case DL_OP_RETRACT:
        case DL_OP_RETRACT_ATTR:
            return ":db/retract";
        case DL_OP_RETRACT_ENTITY:
            return ":db/retractEntity";
        default:
            return ":db/cas";
    }
}

static void print_pos(dl_buf_t *b, dl_value_t v, dl_value_t lk) {
    if (lk.type == DL_T_KEYWORD) {
        dl__buf_puts(b, "[");
        dl__edn_print_value(lk, b);
        dl__buf_puts(b, " ");
        dl__edn_print_value(v, b);
        dl__buf_puts(b, "]");
    } else if (v.type == DL_T_INT && v.reserved[0]) {
        dl__buf_printf(b, "<nested map %" PRId64 ">", v.as.i);
    } else {
        dl__edn_print_value(v, b);
    }
}

int dl__tx_error(dl_error_t *err, int code, const dl_txdata_t *d, size_t i, const char *fmt, ...) {
    if (!err || err->code)
        return code;
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dl_buf_t b;
    dl__buf_init(&b);
    const dl_tx_op_t *op = &d->ops[i];
    dl__buf_printf(&b, "[%s ", op_name(op->op));
    print_pos(&b, op->e, op->e_lookup);
    if (op->op != DL_OP_RETRACT_ENTITY) {
        dl__buf_puts(&b, " ");
        dl__edn_print_value(op->a, &b);
        if (op->op == DL_OP_CAS) {
            dl__buf_puts(&b, " ");
            print_pos(&b, op->old, op->old_lookup);
        }
        if (op->op != DL_OP_RETRACT_ATTR) {
            dl__buf_puts(&b, " ");
            print_pos(&b, op->v, op->v_lookup);
        }
    }
    dl__buf_puts(&b, "]");
    const char *form = b.oom ? "?" : b.data;
    const dl_opsrc_t *src = &d->src[i];
    if (src->text)
        dl__edn_error_at(err, code, src->text, src->len, src->offset, src->line, src->column,
                         "%s (transaction item %zu, %s)", msg, src->index, form);
    else
        dl_error_set(err, code, "%s (%s %zu, %s)", msg, src->json ? "transaction item" : "op",
                     src->index, form);
    dl__buf_fini(&b);
    return code;
}

/* ---- tempids -------------------------------------------------------------------------------- */

typedef struct tmp {
    dl_value_t key; /* STRING, INT (negative; reserved[0]=1 for generated) */
    int64_t id;     /* resolved entity id, 0 while unresolved */
    int rep;        /* representative tempid (union of shared identities) */
    bool as_entity; /* appears in entity position of an assertion */
    size_t first_op;
} tmp_t;

typedef struct tmptab {
    tmp_t *v;
    size_t n, cap;
    int32_t *h; /* hash slots: index+1, 0 empty */
    size_t cap_h;
} tmptab_t;

static bool key_eq(dl_value_t a, dl_value_t b) {
    return a.type == b.type && a.reserved[0] == b.reserved[0] && a.as.bits == b.as.bits;
}
static uint64_t key_hash(dl_value_t k) {
    return dl__hash_mix(k.as.bits ^ ((uint64_t)k.type << 56) ^ ((uint64_t)k.reserved[0] << 48));
}

static int tmp_find(tmptab_t *t, dl_value_t key, size_t op, bool add) {
    if (t->cap_h && t->cap_h > 0) {
        for (size_t i = key_hash(key) & (t->cap_h - 1);; i = (i + 1) & (t->cap_h - 1)) {
            if (!t->h[i])
                break;
            if (key_eq(t->v[t->h[i] - 1].key, key))
                return t->h[i] - 1;
        }
    }
    if (!add)
        return -1;
    if (t->n + 1 > t->cap_h / 2) {
        size_t cap = t->cap_h ? t->cap_h * 2 : 64;
        int32_t *h = dl_calloc(cap, sizeof *h);
        if (!h)
            return DL_ENOMEM;
        for (size_t j = 0; j < t->n; j++) {
            size_t i = key_hash(t->v[j].key) & (cap - 1);
            while (h[i])
                i = (i + 1) & (cap - 1);
            h[i] = (int32_t)j + 1;
        }
        dl_free(t->h);
        t->h = h;
        t->cap_h = cap;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        tmp_t *v = dl_realloc(t->v, cap * sizeof *v);
        if (!v)
            return DL_ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    tmp_t *x = &t->v[t->n];
    memset(x, 0, sizeof *x);
    x->key = key;
    x->rep = (int)t->n;
    x->first_op = op;
    size_t i = key_hash(key) & (t->cap_h - 1);
    while (t->h[i])
        i = (i + 1) & (t->cap_h - 1);
    t->h[i] = (int32_t)t->n + 1;
    return (int)t->n++;
}

static int tmp_rep(tmptab_t *t, int i) {
    while (t->v[i].rep != i)
        i = t->v[i].rep = t->v[t->v[i].rep].rep;
    return i;
}

/* ---- resolved operations -------------------------------------------------------------------- */

/* An entity position: a concrete id or a tempid. */
typedef struct epos {
    int64_t id;
    int tmp; /* -1: concrete */
} epos_t;

typedef struct rop {
    dl_op_kind_t kind;
    epos_t e;
    const dl_attr_t *a;
    dl_value_t v; /* non-ref values */
    epos_t ve;    /* ref values */
    dl_value_t old;
    epos_t olde;
    bool has_old;
} rop_t;

typedef struct ent {
    dl_kd_t k;
    uint32_t op;
    uint8_t why; /* 0 explicit, 1 implicit (card-one replacement) */
} ent_t;

typedef struct vec {
    ent_t *v;
    size_t n, cap;
} vec_t;

static int vec_push(vec_t *x, const dl_kd_t *k, size_t op, int why) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        ent_t *v = dl_realloc(x->v, cap * sizeof *v);
        if (!v)
            return DL_ENOMEM;
        x->v = v;
        x->cap = cap;
    }
    x->v[x->n].k = *k;
    x->v[x->n].op = (uint32_t)op;
    x->v[x->n].why = (uint8_t)why;
    x->n++;
    return 0;
}

static int cmp_eavt(const void *x, const void *y) {
    return dl__btree_cmp(DL_ORD_EAVT, &((const ent_t *)x)->k, &((const ent_t *)y)->k, 3);
}
static int cmp_avet(const void *x, const void *y) {
    return dl__btree_cmp(DL_ORD_AVET, &((const ent_t *)x)->k, &((const ent_t *)y)->k, 3);
}
/* Binary search in an EAVT-sorted vector; the index or -1. */
static long vec_find(const vec_t *x, const dl_kd_t *k, int n) {
    size_t lo = 0, hi = x->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (dl__btree_cmp(DL_ORD_EAVT, &x->v[mid].k, k, n) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < x->n && dl__btree_cmp(DL_ORD_EAVT, &x->v[lo].k, k, n) == 0 ? (long)lo : -1;
}

/* Buffers kept by the store between transactions (the writer's), so a stream of
 * transactions does not allocate and fault in fresh pages for each one. */
struct dl_txscratch {
    tmptab_t tmps;
    rop_t *rops;
    size_t cap_rops;
    vec_t A, R, RX, U;
    dl_kd_t *kr, *ka;
    size_t cap_kr, cap_ka;
    uint64_t *time; /* the plan's coordinates and which were given (cap_time each) */
    bool *time_given;
    size_t cap_time;
};

void dl__tx_scratch_free(struct dl_txscratch *x) {
    if (!x)
        return;
    dl_free(x->tmps.v);
    dl_free(x->tmps.h);
    dl_free(x->rops);
    dl_free(x->A.v);
    dl_free(x->R.v);
    dl_free(x->RX.v);
    dl_free(x->U.v);
    dl_free(x->kr);
    dl_free(x->ka);
    dl_free(x->time);
    dl_free(x->time_given);
    dl_free(x);
}

typedef struct txc {
    dl_store_t *s;
    struct dl_txscratch *sc;
    dl_txdata_t *d;
    dl_error_t *err;
    const dl_schema_t *schema;
    tmptab_t tmps;
    rop_t *rops;
    vec_t A, R, RX; /* assertions, retractions (present datoms), explicit retractions */
    int64_t next_id;
} txc_t;

/* ---- lookups in the committed state --------------------------------------------------------- */

static const dl_btree_t *cur(const txc_t *c, int ord) { return &c->s->trees[DL_T_CUR + ord]; }

/* The entity holding unique attribute a with value v now, or 0. */
static int64_t avet_entity(const txc_t *c, int64_t a, dl_value_t v) {
    dl_kd_t k = {.a = a, .v = v};
    dl_btcur_t q;
    dl__btree_seek(&q, cur(c, DL_ORD_AVET), &k, 2);
    const dl_kd_t *g = dl__btree_cur_get(&q);
    return g && g->a == a && dl_value_eq(g->v, v) ? g->e : 0;
}

static bool id_exists(const txc_t *c, int64_t id) {
    return (id > 0 && id < DL_E_BUILTIN_END) || (id >= DL_FIRST_USER_ID && id < c->s->next_id);
}

/* Resolves an entity position (docs/storage.md "Entity positions"). With allow_tmp false,
 * tempids are an error. */
static int resolve_pos(txc_t *c, size_t i, dl_value_t v, dl_value_t lk, epos_t *out, bool allow_tmp,
                       const char *what) {
    out->tmp = -1;
    out->id = 0;
    if (lk.type == DL_T_KEYWORD) {
        const dl_attr_t *la = dl__schema_by_ident(c->schema, lk.as.s->bytes, lk.as.s->len);
        if (!la || !la->is_attr)
            return dl__tx_error(c->err, DL_EUNKNOWN_ATTR, c->d, i,
                                "lookup ref for %s: unknown attribute :%s", what, lk.as.s->bytes);
        if (!la->unique)
            return dl__tx_error(c->err, DL_ESCHEMA, c->d, i,
                                "lookup ref for %s: attribute :%s is not unique", what,
                                lk.as.s->bytes);
        dl_value_t lv = v;
        if (la->type == DL_T_REF && (v.type == DL_T_INT && v.as.i > 0))
            lv = dl_value_ref(v.as.i);
        if (lv.type != la->type)
            return dl__tx_error(c->err, DL_ETYPE, c->d, i,
                                "lookup ref for %s: value is not of type %s", what,
                                dl_type_name(la->type));
        int64_t e = avet_entity(c, la->id, lv);
        if (!e)
            return dl__tx_error(c->err, DL_ENOTFOUND, c->d, i,
                                "lookup ref for %s matches no entity", what);
        out->id = e;
        return 0;
    }
    switch (v.type) {
        case DL_T_REF:
        case DL_T_INT:
            if (v.type == DL_T_INT && (v.as.i < 0 || v.reserved[0]))
                goto tempid;
            if (!id_exists(c, v.as.i))
                return dl__tx_error(c->err, DL_ENOTFOUND, c->d, i,
                                    "%s: entity %" PRId64 " does not exist", what, v.as.i);
            out->id = v.as.i;
            return 0;
        case DL_T_STRING:
            goto tempid;
        case DL_T_KEYWORD: {
            int64_t e = avet_entity(c, DL_A_IDENT, v);
            if (!e)
                return dl__tx_error(c->err, DL_ENOTFOUND, c->d, i, "%s: no entity has ident :%s",
                                    what, v.as.s->bytes);
            out->id = e;
            return 0;
        }
        default:
            return dl__tx_error(c->err, DL_ETYPE, c->d, i,
                                "%s must be an entity id, tempid, ident or lookup ref", what);
    }
tempid:
    if (!allow_tmp)
        return dl__tx_error(c->err, DL_ENOTFOUND, c->d, i,
                            "%s: a tempid cannot be used in a retraction or as cas's old value",
                            what);
    {
        int t = tmp_find(&c->tmps, v, i, true);
        if (t < 0)
            return dl__tx_error(c->err, DL_ENOMEM, c->d, i, "out of memory");
        out->tmp = t;
    }
    return 0;
}

static int resolve_attr(txc_t *c, size_t i, dl_value_t a, const dl_attr_t **out) {
    const dl_attr_t *x = NULL;
    if (a.type == DL_T_KEYWORD)
        x = dl__schema_by_ident(c->schema, a.as.s->bytes, a.as.s->len);
    else if (a.type == DL_T_REF || a.type == DL_T_INT)
        x = dl__schema_by_id(c->schema, a.as.i);
    else
        return dl__tx_error(c->err, DL_ETYPE, c->d, i, "the attribute must be a keyword");
    if (!x || !x->is_attr) {
        if (a.type == DL_T_KEYWORD)
            return dl__tx_error(c->err, DL_EUNKNOWN_ATTR, c->d, i, "unknown attribute :%s",
                                a.as.s->bytes);
        return dl__tx_error(c->err, DL_EUNKNOWN_ATTR, c->d, i, "unknown attribute %" PRId64,
                            a.as.i);
    }
    *out = x;
    return 0;
}

/* Resolves a value of attribute a: entity positions for refs, a type check otherwise. */
static int resolve_value(txc_t *c, size_t i, const dl_attr_t *a, dl_value_t v, dl_value_t lk,
                         dl_value_t *out_v, epos_t *out_e, bool allow_tmp, const char *what) {
    if (a->type == DL_T_REF) {
        if (v.type == DL_T_NIL && lk.type != DL_T_KEYWORD)
            return dl__tx_error(c->err, DL_ETYPE, c->d, i, "%s of :%s must not be nil", what,
                                a->ident->bytes);
        return resolve_pos(c, i, v, lk, out_e, allow_tmp, what);
    }
    out_e->tmp = -1;
    out_e->id = 0;
    if (lk.type != DL_T_NIL)
        return dl__tx_error(c->err, DL_ETYPE, c->d, i, "a lookup ref is not a value of :%s",
                            a->ident->bytes);
    if (v.type != a->type)
        return dl__tx_error(c->err, DL_ETYPE, c->d, i, "%s of :%s must be of type %s, not %s", what,
                            a->ident->bytes, dl_type_name(a->type),
                            dl_type_name((dl_type_t)v.type));
    *out_v = v;
    return 0;
}

static bool is_tx_tempid(dl_value_t v) {
    size_t n;
    return v.type == DL_T_STRING && strcmp(dl_value_str(v, &n), "datomic.tx") == 0;
}

/* Records a coordinate given for dimension dim; checks it against the frontier. */
static int set_coord(txc_t *c, dl_txplan_t *p, size_t i, const dl_attr_t *dim, uint64_t t) {
    uint64_t fr = c->s->frontier[dim->dim];
    if (t < fr) {
        if (i == SIZE_MAX)
            return dl_error_set(c->err, DL_ETIME,
                                "coordinate %" PRIu64 " of :%s is behind its frontier %" PRIu64, t,
                                dim->ident->bytes, fr);
        return dl__tx_error(c->err, DL_ETIME, c->d, i,
                            "coordinate %" PRIu64 " of :%s is behind its frontier %" PRIu64, t,
                            dim->ident->bytes, fr);
    }
    if (p->time_given[dim->dim] && p->time[dim->dim] != t) {
        if (i == SIZE_MAX)
            return dl_error_set(c->err, DL_ECONFLICT, "two coordinates for dimension :%s",
                                dim->ident->bytes);
        return dl__tx_error(c->err, DL_ECONFLICT, c->d, i, "two coordinates for dimension :%s",
                            dim->ident->bytes);
    }
    p->time[dim->dim] = t;
    p->time_given[dim->dim] = true;
    return 0;
}

/* ---- phase 1: resolution -------------------------------------------------------------------- */

static int resolve_ops(txc_t *c, dl_txplan_t *p) {
    dl_txdata_t *d = c->d;
    for (size_t i = 0; i < d->n; i++) {
        const dl_tx_op_t *op = &d->ops[i];
        rop_t *r = &c->rops[i];
        memset(r, 0, sizeof *r);
        r->kind = op->op;
        r->e.tmp = r->ve.tmp = r->olde.tmp = -1;
        int rc;
        if (op->op > DL_OP_CAS)
            return dl__tx_error(c->err, DL_EPARSE, d, i, "unknown operation");
        if (op->op == DL_OP_ADD && op->e_lookup.type == DL_T_NIL && is_tx_tempid(op->e)) {
            /* [:db/add "datomic.tx" :time/dim t]: a coordinate of this transaction */
            const dl_attr_t *dim = NULL;
            if (op->a.type == DL_T_KEYWORD)
                dim = dl__schema_by_ident(c->schema, op->a.as.s->bytes, op->a.as.s->len);
            if (!dim || !dim->is_dim)
                return dl__tx_error(c->err, DL_EUNSUPPORTED, d, i,
                                    "only time dimension coordinates may be asserted on "
                                    "\"datomic.tx\"");
            int64_t t;
            if (op->v.type == DL_T_INT || op->v.type == DL_T_INSTANT)
                t = op->v.as.i;
            else
                return dl__tx_error(c->err, DL_ETYPE, d, i,
                                    "a time coordinate must be a long or an instant");
            if (t < 0)
                return dl__tx_error(c->err, DL_ERANGE, d, i,
                                    "a time coordinate must not be negative");
            if ((rc = set_coord(c, p, i, dim, (uint64_t)t)) != 0)
                return rc;
            r->kind = (dl_op_kind_t)-1; /* consumed */
            continue;
        }
        bool tmp_ok = op->op == DL_OP_ADD || op->op == DL_OP_CAS;
        if (op->op != DL_OP_RETRACT_ENTITY && (rc = resolve_attr(c, i, op->a, &r->a)) != 0)
            return rc;
        if ((rc = resolve_pos(c, i, op->e, op->e_lookup, &r->e, tmp_ok, "the entity")) != 0)
            return rc;
        if (r->e.tmp >= 0 && op->op == DL_OP_ADD)
            c->tmps.v[r->e.tmp].as_entity = true;
        if (r->e.tmp >= 0 && op->op == DL_OP_CAS)
            return dl__tx_error(c->err, DL_ENOTFOUND, d, i,
                                ":db/cas needs an existing entity, not a tempid");
        if (op->op == DL_OP_ADD || op->op == DL_OP_RETRACT || op->op == DL_OP_CAS) {
            if ((rc = resolve_value(c, i, r->a, op->v, op->v_lookup, &r->v, &r->ve, tmp_ok,
                                    "the value")) != 0)
                return rc;
        }
        if (op->op == DL_OP_CAS) {
            if (r->a->many)
                return dl__tx_error(c->err, DL_ESCHEMA, d, i,
                                    ":db/cas needs a cardinality-one attribute");
            r->has_old = !(op->old.type == DL_T_NIL && op->old_lookup.type == DL_T_NIL);
            if (r->has_old && (rc = resolve_value(c, i, r->a, op->old, op->old_lookup, &r->old,
                                                  &r->olde, false, "the old value")) != 0)
                return rc;
        }
    }
    return 0;
}

/* ---- phase 2: tempids ----------------------------------------------------------------------- */

static int resolve_tempids(txc_t *c, dl_txplan_t *p) {
    dl_txdata_t *d = c->d;
    tmptab_t *T = &c->tmps;
    /* Upsert: repeat until no tempid changes (an identity value may itself be a tempid that
     * resolves in an earlier round). */
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < d->n; i++) {
            rop_t *r = &c->rops[i];
            if (r->kind != DL_OP_ADD || r->e.tmp < 0 || r->a->unique != DL_UNIQUE_IDENTITY)
                continue;
            dl_value_t v = r->v;
            if (r->a->type == DL_T_REF) {
                if (r->ve.tmp >= 0) {
                    int64_t id = T->v[tmp_rep(T, r->ve.tmp)].id;
                    if (!id)
                        continue;
                    v = dl_value_ref(id);
                } else {
                    v = dl_value_ref(r->ve.id);
                }
            }
            int64_t e = avet_entity(c, r->a->id, v);
            if (!e)
                continue;
            tmp_t *t = &T->v[tmp_rep(T, r->e.tmp)];
            if (t->id && t->id != e)
                return dl__tx_error(
                    c->err, DL_EUNIQUE, d, i,
                    "tempid upserts into two entities (%" PRId64 " and %" PRId64 ")", t->id, e);
            if (!t->id) {
                t->id = e;
                changed = true;
            }
        }
    }
    /* Tempids sharing a new identity value are one entity: union them. Sorting the
     * (attr, value, tempid) triples groups them. */
    vec_t U = c->sc->U;
    U.n = 0;
    for (size_t i = 0; i < d->n; i++) {
        rop_t *r = &c->rops[i];
        if (r->kind != DL_OP_ADD || r->e.tmp < 0 || r->a->unique != DL_UNIQUE_IDENTITY ||
            r->a->type == DL_T_REF)
            continue;
        if (T->v[tmp_rep(T, r->e.tmp)].id)
            continue;
        dl_kd_t k = {.e = r->e.tmp, .a = r->a->id, .v = r->v};
        if (vec_push(&U, &k, i, 0) != 0) {
            c->sc->U = U;
            return dl_error_set(c->err, DL_ENOMEM, "out of memory");
        }
    }
    if (U.n > 1)
        qsort(U.v, U.n, sizeof *U.v, cmp_avet);
    for (size_t i = 1; i < U.n; i++)
        if (U.v[i].k.a == U.v[i - 1].k.a && dl_value_eq(U.v[i].k.v, U.v[i - 1].k.v)) {
            int x = tmp_rep(T, (int)U.v[i].k.e), y = tmp_rep(T, (int)U.v[i - 1].k.e);
            if (x != y)
                T->v[x].rep = y;
        }
    c->sc->U = U;
    /* New entities, in order of first appearance. */
    for (size_t i = 0; i < T->n; i++) {
        int rp = tmp_rep(T, (int)i);
        if (T->v[rp].as_entity || T->v[i].as_entity)
            T->v[rp].as_entity = true;
    }
    for (size_t i = 0; i < T->n; i++) {
        tmp_t *t = &T->v[tmp_rep(T, (int)i)];
        if (!t->as_entity)
            return dl__tx_error(c->err, DL_ENOTFOUND, d, T->v[i].first_op,
                                "tempid is used only as a value, never as an entity");
        if (!t->id)
            t->id = c->next_id++;
        T->v[i].id = t->id;
    }
    /* Fill every position. */
    for (size_t i = 0; i < d->n; i++) {
        rop_t *r = &c->rops[i];
        if ((int)r->kind < 0)
            continue;
        if (r->e.tmp >= 0)
            r->e.id = T->v[r->e.tmp].id;
        if (r->ve.tmp >= 0)
            r->ve.id = T->v[r->ve.tmp].id;
        if (r->a && r->a->type == DL_T_REF && r->kind != DL_OP_RETRACT_ATTR &&
            r->kind != DL_OP_RETRACT_ENTITY)
            r->v = dl_value_ref(r->ve.id);
        if (r->a && r->a->type == DL_T_REF && r->has_old)
            r->old = dl_value_ref(r->olde.id);
    }
    /* The report's map (only when a report was asked for). */
    if (!d->want_tempids)
        return 0;
    size_t n_pub = 0;
    for (size_t i = 0; i < T->n; i++)
        n_pub += !T->v[i].key.reserved[0];
    p->tempids = n_pub ? dl_calloc(n_pub, sizeof *p->tempids) : NULL;
    if (n_pub && !p->tempids)
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    for (size_t i = 0; i < T->n; i++) {
        if (T->v[i].key.reserved[0])
            continue;
        dl_tempid_t *o = &p->tempids[p->n_tempids++];
        o->id = T->v[i].id;
        if (T->v[i].key.type == DL_T_STRING) {
            size_t n;
            o->tempid = dl_strdup(dl_value_str(T->v[i].key, &n));
        } else {
            char num[32];
            snprintf(num, sizeof num, "%" PRId64, T->v[i].key.as.i);
            o->tempid = dl_strdup(num);
        }
        if (!o->tempid)
            return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- phase 3: expansion into datoms --------------------------------------------------------- */

static int retract_prefix(txc_t *c, int64_t e, int64_t a, int n, size_t op) {
    dl_kd_t k = {.e = e, .a = a};
    dl_btcur_t q;
    dl__btree_seek(&q, cur(c, DL_ORD_EAVT), &k, n);
    for (const dl_kd_t *g; (g = dl__btree_cur_get(&q)) && dl__btree_cmp(DL_ORD_EAVT, g, &k, n) == 0;
         dl__btree_cur_next(&q))
        if (vec_push(&c->R, g, op, 0) != 0)
            return DL_ENOMEM;
    return 0;
}

/* [:db/retractEntity e]: every datom of e, every reference to e, and recursively the
 * entities e holds through component attributes. */
static int retract_entity(txc_t *c, int64_t e0, size_t op) {
    int64_t *stack = dl_malloc(16 * sizeof *stack), *seen = NULL;
    size_t n = 0, cap = 16, n_seen = 0, cap_seen = 0;
    int rc = 0;
    if (!stack)
        return DL_ENOMEM;
    stack[n++] = e0;
    while (n && rc == 0) {
        int64_t e = stack[--n];
        bool dup = false;
        for (size_t i = 0; i < n_seen && !dup; i++)
            dup = seen[i] == e;
        if (dup)
            continue;
        if (n_seen == cap_seen) {
            cap_seen = cap_seen ? cap_seen * 2 : 16;
            int64_t *x = dl_realloc(seen, cap_seen * sizeof *x);
            if (!x) {
                rc = DL_ENOMEM;
                break;
            }
            seen = x;
        }
        seen[n_seen++] = e;
        dl_kd_t k = {.e = e};
        dl_btcur_t q;
        dl__btree_seek(&q, cur(c, DL_ORD_EAVT), &k, 1);
        for (const dl_kd_t *g; rc == 0 && (g = dl__btree_cur_get(&q)) && g->e == e;
             dl__btree_cur_next(&q)) {
            if ((rc = vec_push(&c->R, g, op, 0)) != 0)
                break;
            const dl_attr_t *a = dl__schema_by_id(c->schema, g->a);
            if (a && a->component && g->v.type == DL_T_REF) {
                if (n == cap) {
                    cap *= 2;
                    int64_t *x = dl_realloc(stack, cap * sizeof *x);
                    if (!x) {
                        rc = DL_ENOMEM;
                        break;
                    }
                    stack = x;
                }
                stack[n++] = g->v.as.i;
            }
        }
        dl_kd_t r = {.v = dl_value_ref(e)};
        dl__btree_seek(&q, cur(c, DL_ORD_VAET), &r, 1);
        for (const dl_kd_t *g;
             rc == 0 && (g = dl__btree_cur_get(&q)) && g->v.type == DL_T_REF && g->v.as.i == e;
             dl__btree_cur_next(&q))
            rc = vec_push(&c->R, g, op, 0);
    }
    dl_free(stack);
    dl_free(seen);
    return rc;
}

static int expand(txc_t *c) {
    dl_txdata_t *d = c->d;
    for (size_t i = 0; i < d->n; i++) {
        rop_t *r = &c->rops[i];
        int rc = 0;
        dl_kd_t k = {.e = r->e.id, .a = r->a ? r->a->id : 0, .v = r->v};
        switch ((int)r->kind) {
            case DL_OP_ADD:
                rc = vec_push(&c->A, &k, i, 0);
                break;
            case DL_OP_RETRACT: {
                const dl_kd_t *g = dl__btree_find(cur(c, DL_ORD_EAVT), &k, 3);
                rc = vec_push(&c->RX, &k, i, 0);
                if (rc == 0 && g)
                    rc = vec_push(&c->R, g, i, 0);
                break;
            }
            case DL_OP_RETRACT_ATTR:
                rc = retract_prefix(c, r->e.id, r->a->id, 2, i);
                break;
            case DL_OP_RETRACT_ENTITY:
                rc = retract_entity(c, r->e.id, i);
                break;
            case DL_OP_CAS: {
                dl_kd_t q = {.e = r->e.id, .a = r->a->id};
                dl_btcur_t cq;
                dl__btree_seek(&cq, cur(c, DL_ORD_EAVT), &q, 2);
                const dl_kd_t *g = dl__btree_cur_get(&cq);
                bool has = g && g->e == q.e && g->a == q.a;
                if (has != r->has_old || (has && !dl_value_eq(g->v, r->old)))
                    return dl__tx_error(c->err, DL_ECAS, d, i,
                                        ":db/cas failed: the current value is %s",
                                        has ? "different" : "absent");
                rc = vec_push(&c->A, &k, i, 0);
                break;
            }
            default:
                break;
        }
        if (rc != 0)
            return dl_error_set(c->err, rc, "out of memory");
    }
    return 0;
}

/* Sorts and removes duplicate datoms (keeping the first op for messages). */
static void sort_unique(vec_t *x) {
    if (!x->n)
        return;
    /* Operations usually come in entity order already (one pass checks it). */
    bool sorted = true;
    for (size_t i = 1; i < x->n && sorted; i++)
        sorted = cmp_eavt(&x->v[i - 1], &x->v[i]) <= 0;
    if (!sorted)
        qsort(x->v, x->n, sizeof *x->v, cmp_eavt);
    size_t w = 1;
    for (size_t i = 1; i < x->n; i++)
        if (cmp_eavt(&x->v[i], &x->v[w - 1]) != 0)
            x->v[w++] = x->v[i];
    x->n = w;
}

/* ---- phase 4: the set of changes ------------------------------------------------------------ */

static int settle(txc_t *c) {
    dl_txdata_t *d = c->d;
    sort_unique(&c->A);
    sort_unique(&c->R);
    sort_unique(&c->RX);
    /* Contradictions: asserting and retracting one datom; two values of a card-one attr. */
    for (size_t i = 0; i < c->A.n; i++) {
        const ent_t *x = &c->A.v[i];
        long j = vec_find(&c->RX, &x->k, 3);
        if (j < 0)
            j = vec_find(&c->R, &x->k, 3);
        if (j >= 0) {
            const vec_t *src = vec_find(&c->RX, &x->k, 3) >= 0 ? &c->RX : &c->R;
            return dl__tx_error(c->err, DL_ECONFLICT, d, x->op,
                                "the datom is both asserted and retracted (by transaction item "
                                "%zu)",
                                d->src[src->v[j].op].index);
        }
        const dl_attr_t *a = dl__schema_by_id(c->schema, x->k.a);
        if (i > 0 && !a->many && c->A.v[i - 1].k.e == x->k.e && c->A.v[i - 1].k.a == x->k.a)
            return dl__tx_error(c->err, DL_ECONFLICT, d, x->op,
                                "two values for cardinality-one attribute :%s of entity %" PRId64
                                " (the other from transaction item %zu)",
                                a->ident->bytes, x->k.e, d->src[c->A.v[i - 1].op].index);
    }
    /* No-ops and cardinality-one replacement. Entities allocated by this transaction have
     * no datoms yet: nothing to look up for them. */
    size_t w = 0, n_r = c->R.n;
    int64_t first_new = c->s->next_id;
    for (size_t i = 0; i < c->A.n; i++) {
        ent_t x = c->A.v[i];
        if (x.k.e >= first_new) {
            c->A.v[w++] = x;
            continue;
        }
        if (dl__btree_find(cur(c, DL_ORD_EAVT), &x.k, 3))
            continue; /* already true */
        const dl_attr_t *a = dl__schema_by_id(c->schema, x.k.a);
        if (!a->many) {
            dl_kd_t q = {.e = x.k.e, .a = x.k.a};
            dl_btcur_t cq;
            dl__btree_seek(&cq, cur(c, DL_ORD_EAVT), &q, 2);
            const dl_kd_t *g = dl__btree_cur_get(&cq);
            if (g && g->e == q.e && g->a == q.a && vec_find(&c->R, g, 3) < 0)
                if (vec_push(&c->R, g, x.op, 1) != 0)
                    return dl_error_set(c->err, DL_ENOMEM, "out of memory");
        }
        c->A.v[w++] = x;
    }
    c->A.n = w;
    if (c->R.n != n_r)
        sort_unique(&c->R);
    /* Uniqueness: within the transaction, then against the database. */
    size_t n_unique = 0;
    for (size_t i = 0; i < c->A.n; i++)
        n_unique += dl__schema_by_id(c->schema, c->A.v[i].k.a)->unique != 0;
    if (n_unique == 0)
        return 0;
    ent_t *byav = dl_malloc((n_unique + 1) * sizeof *byav);
    if (!byav)
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    size_t nu = 0;
    for (size_t i = 0; i < c->A.n; i++)
        if (dl__schema_by_id(c->schema, c->A.v[i].k.a)->unique)
            byav[nu++] = c->A.v[i];
    if (nu > 1)
        qsort(byav, nu, sizeof *byav, cmp_avet);
    int rc = 0;
    for (size_t i = 0; i < nu && rc == 0; i++) {
        const ent_t *x = &byav[i];
        const dl_attr_t *a = dl__schema_by_id(c->schema, x->k.a);
        char *vs = dl_value_to_edn(x->k.v);
        if (i > 0 && byav[i - 1].k.a == x->k.a && dl_value_eq(byav[i - 1].k.v, x->k.v))
            rc = dl__tx_error(c->err, DL_EUNIQUE, d, x->op,
                              "unique attribute :%s value %s asserted for two entities (%" PRId64
                              " and %" PRId64 ")",
                              a->ident->bytes, vs ? vs : "?", byav[i - 1].k.e, x->k.e);
        /* A new entity holding an identity value: tempid resolution found no owner. */
        bool known_free =
            x->k.e >= c->s->next_id && a->unique == DL_UNIQUE_IDENTITY && a->type != DL_T_REF;
        if (rc == 0 && !known_free) {
            int64_t owner = avet_entity(c, x->k.a, x->k.v);
            dl_kd_t ok = {.e = owner, .a = x->k.a, .v = x->k.v};
            if (owner && owner != x->k.e && vec_find(&c->R, &ok, 3) < 0)
                rc = dl__tx_error(c->err, DL_EUNIQUE, d, x->op,
                                  "unique attribute :%s value %s already belongs to entity "
                                  "%" PRId64,
                                  a->ident->bytes, vs ? vs : "?", owner);
        }
        dl_free(vs);
    }
    dl_free(byav);
    return rc;
}

/* ---- phase 5: schema ------------------------------------------------------------------------ */

static bool schema_attr(int64_t a) { return a >= DL_A_IDENT && a <= DL_A_TIMEDIM; }

static void ent_apply(dl_schema_ent_t *s, const dl_kd_t *k, bool add) {
    switch (k->a) {
        case DL_A_IDENT:
            s->has_ident = add;
            s->ident = add ? k->v.as.s : NULL;
            break;
        case DL_A_VALUETYPE:
            s->valuetype = add ? k->v.as.i : 0;
            break;
        case DL_A_CARDINALITY:
            s->cardinality = add ? k->v.as.i : 0;
            break;
        case DL_A_UNIQUE:
            s->unique = add ? k->v.as.i : 0;
            break;
        case DL_A_INDEX:
            s->index = add && k->v.as.i;
            break;
        case DL_A_ISCOMPONENT:
            s->component = add && k->v.as.i;
            break;
        case DL_A_NOHISTORY:
            s->no_history = add && k->v.as.i;
            break;
        case DL_A_TIMEDIM:
            s->timedim = add && k->v.as.i;
            break;
        default:
            break;
    }
}

static int cmp_i64p(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* Builds the post-transaction schema records of the entities whose schema attributes the
 * plan touches (sorted by id). */
static int schema_entities(const dl_store_t *s, const vec_t *A, const vec_t *R,
                           dl_schema_ent_t **out, size_t *out_n) {
    int64_t *ids = dl_malloc((A->n + R->n + 1) * sizeof *ids);
    if (!ids)
        return DL_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < A->n; i++)
        if (schema_attr(A->v[i].k.a))
            ids[n++] = A->v[i].k.e;
    for (size_t i = 0; i < R->n; i++)
        if (schema_attr(R->v[i].k.a))
            ids[n++] = R->v[i].k.e;
    if (n > 1)
        qsort(ids, n, sizeof *ids, cmp_i64p);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!m || ids[m - 1] != ids[i])
            ids[m++] = ids[i];
    dl_schema_ent_t *ents = dl_calloc(m + 1, sizeof *ents);
    if (!ents) {
        dl_free(ids);
        return DL_ENOMEM;
    }
    for (size_t j = 0; j < m; j++) {
        dl_schema_ent_t *se = &ents[j];
        se->id = ids[j];
        dl_kd_t k = {.e = ids[j]};
        dl_btcur_t q;
        dl__btree_seek(&q, &s->trees[DL_T_CUR + DL_ORD_EAVT], &k, 1);
        for (const dl_kd_t *g; (g = dl__btree_cur_get(&q)) && g->e == k.e; dl__btree_cur_next(&q))
            if (schema_attr(g->a) && vec_find(R, g, 3) < 0)
                ent_apply(se, g, true);
        for (size_t i = 0; i < A->n; i++)
            if (A->v[i].k.e == k.e && schema_attr(A->v[i].k.a))
                ent_apply(se, &A->v[i].k, true);
    }
    dl_free(ids);
    *out = ents;
    *out_n = m;
    return 0;
}

/* Checks the data of attribute `a` (post-transaction) against its new schema: no two
 * entities share a value when it becomes unique, no entity has two values when it
 * becomes cardinality one. */
static int validate_attr_data(txc_t *c, const dl_attr_t *o, const dl_attr_t *n) {
    bool need_unique = n->unique && !o->unique, need_one = o->many && !n->many;
    if (!need_unique && !need_one)
        return 0;
    vec_t V = {0};
    dl_kd_t k = {.a = n->id};
    dl_btcur_t q;
    dl__btree_seek(&q, cur(c, DL_ORD_AEVT), &k, 1);
    int rc = 0;
    for (const dl_kd_t *g; rc == 0 && (g = dl__btree_cur_get(&q)) && g->a == k.a;
         dl__btree_cur_next(&q))
        if (vec_find(&c->R, g, 3) < 0)
            rc = vec_push(&V, g, 0, 0);
    for (size_t i = 0; rc == 0 && i < c->A.n; i++)
        if (c->A.v[i].k.a == n->id)
            rc = vec_push(&V, &c->A.v[i].k, 0, 0);
    if (rc != 0) {
        dl_free(V.v);
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    }
    if (need_one) {
        if (V.n > 1)
            qsort(V.v, V.n, sizeof *V.v, cmp_eavt);
        for (size_t i = 1; i < V.n && rc == 0; i++)
            if (V.v[i].k.e == V.v[i - 1].k.e)
                rc = dl_error_set(c->err, DL_ESCHEMA,
                                  "attribute :%s cannot become cardinality one: entity %" PRId64
                                  " has several values",
                                  n->ident->bytes, V.v[i].k.e);
    }
    if (need_unique && rc == 0) {
        if (V.n > 1)
            qsort(V.v, V.n, sizeof *V.v, cmp_avet);
        for (size_t i = 1; i < V.n && rc == 0; i++)
            if (dl_value_eq(V.v[i].k.v, V.v[i - 1].k.v)) {
                char *vs = dl_value_to_edn(V.v[i].k.v);
                rc = dl_error_set(c->err, DL_ESCHEMA,
                                  "attribute :%s cannot become unique: value %s is held by "
                                  "entities %" PRId64 " and %" PRId64,
                                  n->ident->bytes, vs ? vs : "?", V.v[i - 1].k.e, V.v[i].k.e);
                dl_free(vs);
            }
    }
    dl_free(V.v);
    return rc;
}

static int schema_phase(txc_t *c, dl_txplan_t *p) {
    /* most transactions touch no schema attribute: nothing to derive */
    bool any = false;
    for (size_t i = 0; i < c->A.n && !any; i++)
        any = schema_attr(c->A.v[i].k.a);
    for (size_t i = 0; i < c->R.n && !any; i++)
        any = schema_attr(c->R.v[i].k.a);
    if (!any)
        return 0;
    dl_schema_ent_t *ents;
    size_t n;
    if (schema_entities(c->s, &c->A, &c->R, &ents, &n) != 0)
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    if (n == 0) {
        dl_free(ents);
        return 0;
    }
    int rc = dl__schema_derive(c->schema, ents, n, &p->new_schema, c->err);
    dl_free(ents);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < p->new_schema->n_attrs && rc == 0; i++) {
        const dl_attr_t *na = &p->new_schema->attrs[i];
        const dl_attr_t *oa = dl__schema_by_id(c->schema, na->id);
        if (oa && oa->is_attr && na->is_attr)
            rc = validate_attr_data(c, oa, na);
    }
    /* An attribute removed from the schema (its ident retracted) must hold no data. */
    for (size_t i = 0; i < c->schema->n_attrs && rc == 0; i++) {
        const dl_attr_t *oa = &c->schema->attrs[i];
        if (oa->is_attr && !dl__schema_by_id(p->new_schema, oa->id))
            rc = dl_error_set(c->err, DL_ESCHEMA, "attribute :%s cannot be uninstalled",
                              oa->ident->bytes);
    }
    return rc;
}

/* ---- the plan ------------------------------------------------------------------------------- */

void dl__txplan_fini(dl_txplan_t *p) {
    if (!p)
        return;
    if (!p->borrowed) {
        dl_free(p->retract);
        dl_free(p->assert);
    }
    for (size_t i = 0; i < p->n_tempids; i++)
        dl_free((char *)p->tempids[i].tempid);
    dl_free(p->tempids);
    if (!p->time_borrowed) {
        dl_free(p->time);
        dl_free(p->time_given);
    }
    if (p->new_schema)
        dl__schema_unref(p->new_schema);
    memset(p, 0, sizeof *p);
}

/* A map value [kw x] was read as a lookup ref; for a cardinality-many attribute that is
 * not a ref it is two values (Datomic reads a collection there). Rewrites d's ops (they
 * belong to d: only EDN data carries the flag). */
static int split_pairs(const dl_schema_t *sc, dl_txdata_t *d) {
    size_t extra = 0;
    for (size_t i = 0; i < d->n; i++) {
        const dl_tx_op_t *op = &d->ops[i];
        if (!d->src[i].pair || op->a.type != DL_T_KEYWORD)
            continue;
        const dl_attr_t *a = dl__schema_by_ident(sc, op->a.as.s->bytes, op->a.as.s->len);
        d->src[i].pair = a && a->is_attr && a->many && a->type != DL_T_REF ? 2 : 0;
        extra += d->src[i].pair == 2;
    }
    if (!extra)
        return 0;
    dl_tx_op_t *ops = dl_malloc((d->n + extra) * sizeof *ops);
    dl_opsrc_t *src = dl_malloc((d->n + extra) * sizeof *src);
    if (!ops || !src) {
        dl_free(ops);
        dl_free(src);
        return DL_ENOMEM;
    }
    size_t w = 0;
    for (size_t i = 0; i < d->n; i++) {
        ops[w] = d->ops[i];
        src[w] = d->src[i];
        if (d->src[i].pair == 2) {
            ops[w].v = d->ops[i].v_lookup;
            ops[w].v_lookup = dl_value_nil();
            w++;
            ops[w] = d->ops[i];
            src[w] = d->src[i];
            ops[w].v_lookup = dl_value_nil();
        }
        w++;
    }
    dl_free(d->ops);
    dl_free(d->src);
    d->ops = ops;
    d->src = src;
    d->n = d->cap = w;
    return 0;
}

int dl__tx_plan(dl_store_t *s, dl_txdata_t *d, dl_txplan_t *p, dl_error_t *err) {
    memset(p, 0, sizeof *p);
    if (split_pairs(s->schema, d) != 0)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    txc_t c = {.s = s, .d = d, .err = err, .schema = s->schema, .next_id = s->next_id};
    int rc = 0;
    if (!s->scratch && !(s->scratch = dl_calloc(1, sizeof *s->scratch)))
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    struct dl_txscratch *sc = s->scratch;
    c.sc = sc;
    c.tmps = sc->tmps;
    c.A = sc->A;
    c.R = sc->R;
    c.RX = sc->RX;
    c.A.n = c.R.n = c.RX.n = 0;
    if (sc->cap_rops < d->n + 1) {
        dl_free(sc->rops);
        sc->cap_rops = d->n + 1;
        if (!(sc->rops = dl_malloc(sc->cap_rops * sizeof *sc->rops)))
            sc->cap_rops = 0;
    }
    c.rops = sc->rops;
    size_t nt = (size_t)s->schema->n_dims + 1;
    if (sc->cap_time < nt) {
        dl_free(sc->time);
        dl_free(sc->time_given);
        sc->time = dl_malloc(nt * sizeof *sc->time);
        sc->time_given = dl_malloc(nt * sizeof *sc->time_given);
        sc->cap_time = sc->time && sc->time_given ? nt : 0;
    }
    if (sc->cap_time >= nt) {
        memset(sc->time, 0, nt * sizeof *sc->time);
        memset(sc->time_given, 0, nt * sizeof *sc->time_given);
        p->time = sc->time;
        p->time_given = sc->time_given;
        p->time_borrowed = true;
    }
    if (!p->time || !p->time_given || !c.rops) {
        rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        goto out;
    }
    p->n_time = nt;
    for (size_t i = 0; i < d->n_coords && rc == 0; i++) {
        const dl_attr_t *dim = NULL;
        dl_value_t dv = d->coords[i].dim;
        if (dv.type == DL_T_KEYWORD)
            dim = dl__schema_by_ident(s->schema, dv.as.s->bytes, dv.as.s->len);
        else if (dv.type == DL_T_REF || dv.type == DL_T_INT)
            dim = dl__schema_by_id(s->schema, dv.as.i);
        if (!dim || !dim->is_dim)
            rc = dl_error_set(err, DL_EUNKNOWN_ATTR, "coordinate %zu: not a time dimension", i);
        else
            rc = set_coord(&c, p, SIZE_MAX, dim, d->coords[i].t);
    }
    if (rc == 0)
        rc = resolve_ops(&c, p);
    if (rc == 0)
        rc = resolve_tempids(&c, p);
    if (rc == 0)
        rc = expand(&c);
    if (rc == 0)
        rc = settle(&c);
    if (rc == 0)
        rc = schema_phase(&c, p);
    if (rc == 0) {
        for (size_t k = 1; k < nt; k++)
            if (!p->time_given[k])
                p->time[k] = s->frontier[k];
        if (sc->cap_kr < c.R.n + 1) {
            dl_free(sc->kr);
            sc->cap_kr = c.R.n + 1;
            if (!(sc->kr = dl_malloc(sc->cap_kr * sizeof *sc->kr)))
                sc->cap_kr = 0;
        }
        if (sc->cap_ka < c.A.n + 1) {
            dl_free(sc->ka);
            sc->cap_ka = c.A.n + 1;
            if (!(sc->ka = dl_malloc(sc->cap_ka * sizeof *sc->ka)))
                sc->cap_ka = 0;
        }
        p->retract = sc->kr;
        p->assert = sc->ka;
        p->borrowed = true;
        if (!p->retract || !p->assert) {
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        } else {
            for (size_t i = 0; i < c.R.n; i++)
                p->retract[i] = c.R.v[i].k;
            for (size_t i = 0; i < c.A.n; i++)
                p->assert[i] = c.A.v[i].k;
            p->n_retract = c.R.n;
            p->n_assert = c.A.n;
            p->next_id = c.next_id;
        }
    }
out:
    /* Keep the buffers; empty the tempid table (clearing only the slots in use). */
    for (size_t j = 0; j < c.tmps.n; j++)
        for (size_t i = key_hash(c.tmps.v[j].key) & (c.tmps.cap_h - 1);;
             i = (i + 1) & (c.tmps.cap_h - 1))
            if (c.tmps.h[i] == (int32_t)j + 1) {
                c.tmps.h[i] = 0;
                break;
            }
    c.tmps.n = 0;
    sc->tmps = c.tmps;
    sc->A = c.A;
    sc->R = c.R;
    sc->RX = c.RX;
    if (rc != 0)
        dl__txplan_fini(p);
    return rc;
}

int dl__tx_schema_entities(dl_store_t *s, const dl_txplan_t *p, dl_schema_ent_t **out,
                           size_t *out_n, dl_error_t *err) {
    /* most transactions touch no schema attribute: say so without copying anything */
    bool any = false;
    for (size_t i = 0; i < p->n_assert && !any; i++)
        any = schema_attr(p->assert[i].a);
    for (size_t i = 0; i < p->n_retract && !any; i++)
        any = schema_attr(p->retract[i].a);
    if (!any) {
        *out = NULL;
        *out_n = 0;
        return 0;
    }
    vec_t A = {0}, R = {0};
    int rc = 0;
    for (size_t i = 0; i < p->n_assert && rc == 0; i++)
        rc = vec_push(&A, &p->assert[i], 0, 0);
    for (size_t i = 0; i < p->n_retract && rc == 0; i++)
        rc = vec_push(&R, &p->retract[i], 0, 0);
    if (rc == 0) {
        sort_unique(&R);
        rc = schema_entities(s, &A, &R, out, out_n);
    }
    dl_free(A.v);
    dl_free(R.v);
    return rc ? dl_error_set(err, rc, "out of memory") : 0;
}
