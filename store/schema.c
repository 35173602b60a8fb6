/*
 * schema.c: the attribute table derived from schema datoms (docs/storage.md "Schema
 * attributes", "Time dimensions"). Schema is data: an entity with :db/ident,
 * :db/valueType and :db/cardinality is an attribute; an entity with :db/ident and
 * :db/timeDimension true is a time dimension. This file turns those entity records into
 * an immutable, reference-counted dl_schema_t and checks the rules a schema entity must
 * satisfy on its own. It does not look at the data the schema governs: validating
 * existing datoms against a schema change (uniqueness, cardinality) is in tx.c.
 */
#include "store/store.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int64_t id;
    const char *ident;
    dl_type_t type; /* DL_T__COUNT: not an attribute */
    int unique;
} builtins[] = {
    {DL_A_IDENT, "db/ident", DL_T_KEYWORD, DL_UNIQUE_IDENTITY},
    {DL_A_VALUETYPE, "db/valueType", DL_T_REF, 0},
    {DL_A_CARDINALITY, "db/cardinality", DL_T_REF, 0},
    {DL_A_UNIQUE, "db/unique", DL_T_REF, 0},
    {DL_A_INDEX, "db/index", DL_T_BOOL, 0},
    {DL_A_ISCOMPONENT, "db/isComponent", DL_T_BOOL, 0},
    {DL_A_NOHISTORY, "db/noHistory", DL_T_BOOL, 0},
    {DL_A_DOC, "db/doc", DL_T_STRING, 0},
    {DL_A_TIMEDIM, "db/timeDimension", DL_T_BOOL, 0},
    {DL_E_TYPE_STRING, "db.type/string", DL_T__COUNT, 0},
    {DL_E_TYPE_KEYWORD, "db.type/keyword", DL_T__COUNT, 0},
    {DL_E_TYPE_LONG, "db.type/long", DL_T__COUNT, 0},
    {DL_E_TYPE_DOUBLE, "db.type/double", DL_T__COUNT, 0},
    {DL_E_TYPE_BOOLEAN, "db.type/boolean", DL_T__COUNT, 0},
    {DL_E_TYPE_INSTANT, "db.type/instant", DL_T__COUNT, 0},
    {DL_E_TYPE_REF, "db.type/ref", DL_T__COUNT, 0},
    {DL_E_TYPE_UUID, "db.type/uuid", DL_T__COUNT, 0},
    {DL_E_CARD_ONE, "db.cardinality/one", DL_T__COUNT, 0},
    {DL_E_CARD_MANY, "db.cardinality/many", DL_T__COUNT, 0},
    {DL_E_UNIQUE_IDENTITY, "db.unique/identity", DL_T__COUNT, 0},
    {DL_E_UNIQUE_VALUE, "db.unique/value", DL_T__COUNT, 0},
};

static int64_t type_enum(dl_type_t t) {
    switch (t) {
        case DL_T_STRING:
            return DL_E_TYPE_STRING;
        case DL_T_KEYWORD:
            return DL_E_TYPE_KEYWORD;
        case DL_T_INT:
            return DL_E_TYPE_LONG;
        case DL_T_DOUBLE:
            return DL_E_TYPE_DOUBLE;
        case DL_T_BOOL:
            return DL_E_TYPE_BOOLEAN;
        case DL_T_INSTANT:
            return DL_E_TYPE_INSTANT;
        case DL_T_REF:
            return DL_E_TYPE_REF;
        default:
            return DL_E_TYPE_UUID;
    }
}

static const dl_type_t enum_types[] = {DL_T_STRING, DL_T_KEYWORD, DL_T_INT, DL_T_DOUBLE,
                                       DL_T_BOOL,   DL_T_INSTANT, DL_T_REF, DL_T_UUID};

size_t dl__schema_builtin_datoms(dl_kd_t *out, size_t cap) {
    size_t n = 0;
#define PUT(E, A, V)                                                                               \
    do {                                                                                           \
        if (n < cap) {                                                                             \
            out[n].e = (E);                                                                        \
            out[n].a = (A);                                                                        \
            out[n].v = (V);                                                                        \
            out[n].txop = DL_TXOP(0, true);                                                        \
        }                                                                                          \
        n++;                                                                                       \
    } while (0)
    for (size_t i = 0; i < DL_ARRAY_LEN(builtins); i++) {
        dl_value_t kw;
        const char *id = builtins[i].ident;
        if (dl_value_text(DL_T_KEYWORD, id, strlen(id), &kw, NULL) != 0)
            return 0;
        PUT(builtins[i].id, DL_A_IDENT, kw);
        if (builtins[i].type != DL_T__COUNT) {
            PUT(builtins[i].id, DL_A_VALUETYPE, dl_value_ref(type_enum(builtins[i].type)));
            PUT(builtins[i].id, DL_A_CARDINALITY, dl_value_ref(DL_E_CARD_ONE));
            if (builtins[i].unique)
                PUT(builtins[i].id, DL_A_UNIQUE, dl_value_ref(DL_E_UNIQUE_IDENTITY));
        }
    }
#undef PUT
    return n;
}

/* ---- the table ------------------------------------------------------------------------------ */

static int build_hash(dl_schema_t *s) {
    size_t cap = 16;
    while (cap < s->n_attrs * 2 + 2)
        cap *= 2;
    s->hkeys = dl_calloc(cap, sizeof *s->hkeys);
    s->hvals = dl_calloc(cap, sizeof *s->hvals);
    s->dim_ids = dl_calloc(s->n_attrs + 1, sizeof *s->dim_ids);
    s->hid = dl_calloc(cap, sizeof *s->hid);
    if (!s->hkeys || !s->hvals || !s->dim_ids || !s->hid)
        return DL_ENOMEM;
    s->cap_h = cap;
    int bits = 0;
    while (((size_t)1 << bits) < cap)
        bits++;
    s->hid_shift = 64 - bits;
    s->n_dims = 0;
    for (size_t i = 0; i < s->n_attrs; i++) {
        const dl_attr_t *a = &s->attrs[i];
        if (a->is_dim) {
            s->dim_ids[a->dim - 1] = a->id;
            if (a->dim > s->n_dims)
                s->n_dims = a->dim;
        }
        size_t j = (size_t)(((uint64_t)a->id * 0x9E3779B97F4A7C15ull) >> s->hid_shift);
        while (s->hid[j])
            j = (j + 1) & (cap - 1);
        s->hid[j] = (int32_t)i + 1;
        if (!a->ident)
            continue;
        size_t h = (size_t)a->ident->hash & (cap - 1);
        while (s->hkeys[h])
            h = (h + 1) & (cap - 1);
        s->hkeys[h] = a->ident;
        s->hvals[h] = (uint32_t)i;
    }
    return 0;
}

static void schema_free(dl_schema_t *s) {
    if (!s)
        return;
    dl_free(s->attrs);
    dl_free(s->hkeys);
    dl_free(s->hvals);
    dl_free(s->dim_ids);
    dl_free(s->hid);
    dl_free(s);
}

dl_schema_t *dl__schema_ref(dl_schema_t *s) {
    atomic_fetch_add_explicit((_Atomic int *)&s->refs, 1, memory_order_relaxed);
    return s;
}

void dl__schema_unref(dl_schema_t *s) {
    if (s && atomic_fetch_sub_explicit((_Atomic int *)&s->refs, 1, memory_order_acq_rel) == 1)
        schema_free(s);
}

int dl__schema_bootstrap(dl_schema_t **out) {
    dl_schema_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    s->refs = 1;
    s->attrs = dl_calloc(DL_ARRAY_LEN(builtins), sizeof *s->attrs);
    if (!s->attrs) {
        schema_free(s);
        return DL_ENOMEM;
    }
    for (size_t i = 0; i < DL_ARRAY_LEN(builtins); i++) {
        if (builtins[i].type == DL_T__COUNT)
            continue;
        dl_attr_t *a = &s->attrs[s->n_attrs++];
        dl_value_t kw;
        if (dl_value_text(DL_T_KEYWORD, builtins[i].ident, strlen(builtins[i].ident), &kw, NULL) !=
            0) {
            schema_free(s);
            return DL_ENOMEM;
        }
        a->id = builtins[i].id;
        a->ident = kw.as.s;
        a->type = builtins[i].type;
        a->unique = builtins[i].unique;
        a->indexed = a->unique != 0;
        a->is_attr = true;
    }
    if (build_hash(s) != 0) {
        schema_free(s);
        return DL_ENOMEM;
    }
    *out = s;
    return 0;
}

const dl_attr_t *dl__schema_by_id(const dl_schema_t *s, int64_t id) {
    long i = dl__schema_slot(s, id);
    return i < 0 ? NULL : &s->attrs[i];
}

const dl_attr_t *dl__schema_by_ident(const dl_schema_t *s, const char *ident, size_t n) {
    if (n && ident[0] == ':') {
        ident++;
        n--;
    }
    uint64_t h = dl__hash_bytes(ident, n);
    for (size_t i = (size_t)h & (s->cap_h - 1);; i = (i + 1) & (s->cap_h - 1)) {
        const dl_sym_t *k = s->hkeys[i];
        if (!k)
            return NULL;
        if (k->hash == h && k->len == n && memcmp(k->bytes, ident, n) == 0)
            return &s->attrs[s->hvals[i]];
    }
}

static int cmp_attr(const void *x, const void *y) {
    const dl_attr_t *a = x, *b = y;
    return (a->id > b->id) - (a->id < b->id);
}

/* Checks one schema entity on its own and fills *a. Returns 0, or 1 when the entity is
 * not an attribute nor a dimension (it is then left out of the table). */
static int derive_one(const dl_attr_t *old, const dl_schema_ent_t *e, dl_attr_t *a,
                      dl_error_t *err) {
    const char *name = e->ident ? e->ident->bytes : "?";
    bool attrish =
        e->valuetype || e->cardinality || e->unique || e->index || e->component || e->no_history;
    if (e->id < DL_E_BUILTIN_END)
        return dl_error_set(err, DL_ESCHEMA, "entity %lld is part of the built-in schema",
                            (long long)e->id);
    if (old && old->is_dim && !e->timedim)
        return dl_error_set(err, DL_ESCHEMA, "time dimension :%s cannot be removed", name);
    if (e->timedim) {
        if (!e->has_ident)
            return dl_error_set(err, DL_ESCHEMA, "a time dimension (entity %lld) needs a :db/ident",
                                (long long)e->id);
        if (attrish || (old && old->is_attr))
            return dl_error_set(err, DL_ESCHEMA, "time dimension :%s cannot also be an attribute",
                                name);
        memset(a, 0, sizeof *a);
        a->id = e->id;
        a->ident = e->ident;
        a->is_dim = true;
        a->type = DL_T_INT;
        a->dim = old ? old->dim : 0;
        return 0;
    }
    if (!attrish && !(old && old->is_attr))
        return 1;
    if (!e->has_ident || !e->valuetype || !e->cardinality)
        return dl_error_set(err, DL_ESCHEMA,
                            "attribute %s%s (entity %lld) needs :db/ident, :db/valueType and "
                            ":db/cardinality",
                            e->has_ident ? ":" : "", e->has_ident ? name : "", (long long)e->id);
    if (e->valuetype < DL_E_TYPE_STRING || e->valuetype > DL_E_TYPE_UUID)
        return dl_error_set(err, DL_ESCHEMA, "attribute :%s: :db/valueType is not a db.type", name);
    if (e->cardinality != DL_E_CARD_ONE && e->cardinality != DL_E_CARD_MANY)
        return dl_error_set(err, DL_ESCHEMA,
                            "attribute :%s: :db/cardinality must be :db.cardinality/one or "
                            ":db.cardinality/many",
                            name);
    if (e->unique && e->unique != DL_E_UNIQUE_IDENTITY && e->unique != DL_E_UNIQUE_VALUE)
        return dl_error_set(err, DL_ESCHEMA,
                            "attribute :%s: :db/unique must be :db.unique/identity or "
                            ":db.unique/value",
                            name);
    memset(a, 0, sizeof *a);
    a->id = e->id;
    a->ident = e->ident;
    a->type = enum_types[e->valuetype - DL_E_TYPE_STRING];
    if (old && old->is_attr && old->type != a->type)
        return dl_error_set(err, DL_ESCHEMA, "attribute :%s: :db/valueType cannot change", name);
    a->many = e->cardinality == DL_E_CARD_MANY;
    a->unique = e->unique == DL_E_UNIQUE_IDENTITY ? DL_UNIQUE_IDENTITY
                : e->unique == DL_E_UNIQUE_VALUE  ? DL_UNIQUE_VALUE
                                                  : 0;
    if (a->unique && a->many)
        return dl_error_set(err, DL_ESCHEMA,
                            "attribute :%s: a unique attribute must be cardinality one", name);
    a->indexed = e->index || a->unique;
    a->component = e->component;
    if (a->component && a->type != DL_T_REF)
        return dl_error_set(err, DL_ESCHEMA, "attribute :%s: :db/isComponent needs :db.type/ref",
                            name);
    a->no_history = e->no_history;
    a->is_attr = true;
    return 0;
}

int dl__schema_derive(const dl_schema_t *old, const dl_schema_ent_t *ents, size_t n,
                      dl_schema_t **out, dl_error_t *err) {
    dl_schema_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    s->refs = 1;
    s->attrs = dl_malloc((old->n_attrs + n + 1) * sizeof *s->attrs);
    if (!s->attrs) {
        schema_free(s);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    memcpy(s->attrs, old->attrs, old->n_attrs * sizeof *s->attrs);
    s->n_attrs = old->n_attrs;
    int n_dims = old->n_dims;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        long slot = dl__schema_slot(old, ents[i].id);
        const dl_attr_t *o = slot >= 0 ? &old->attrs[slot] : NULL;
        dl_attr_t a;
        int r = derive_one(o, &ents[i], &a, err);
        if (r < 0) {
            rc = r;
            break;
        }
        if (r == 1)
            continue;
        if (a.is_dim && !a.dim)
            a.dim = ++n_dims; /* assigned in order of entity ids within one transaction */
        if (o)
            s->attrs[slot] = a;
        else
            s->attrs[s->n_attrs++] = a;
    }
    if (rc == 0) {
        qsort(s->attrs, s->n_attrs, sizeof *s->attrs, cmp_attr);
        if (build_hash(s) != 0)
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    if (rc != 0) {
        schema_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int dl__schema_from_attrs(const dl_attr_t *attrs, size_t n, dl_schema_t **out) {
    dl_schema_t *s = dl_calloc(1, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    s->refs = 1;
    s->attrs = dl_malloc((n + 1) * sizeof *s->attrs);
    if (!s->attrs) {
        schema_free(s);
        return DL_ENOMEM;
    }
    memcpy(s->attrs, attrs, n * sizeof *s->attrs);
    s->n_attrs = n;
    qsort(s->attrs, s->n_attrs, sizeof *s->attrs, cmp_attr);
    if (build_hash(s) != 0) {
        schema_free(s);
        return DL_ENOMEM;
    }
    *out = s;
    return 0;
}
