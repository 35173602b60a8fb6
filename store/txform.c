/*
 * txform.c: reads transaction data in its EDN form (Datomic's) and in its JSON form (the
 * wire protocol's) into dl_txdata_t: a flat list of list-form operations, each with the
 * position of the form it came from (docs/storage.md "Transaction data", "JSON
 * transaction data"). Map forms become one :db/add per attribute; nested maps become
 * entities of their own (an implicit tempid unless they carry :db/id) referenced from the
 * parent; a reverse attribute :ns/_name turns the assertion around. It checks shape only:
 * attributes, types and entities are resolved by tx.c.
 */
#include "store/store.h"

#include <jansson.h>
#include <string.h>

int dl__txdata_push(dl_txdata_t *d, const dl_tx_op_t *op, const dl_opsrc_t *src) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        dl_tx_op_t *o = dl_realloc(d->ops, cap * sizeof *o);
        if (!o)
            return DL_ENOMEM;
        d->ops = o;
        dl_opsrc_t *s = dl_realloc(d->src, cap * sizeof *s);
        if (!s)
            return DL_ENOMEM;
        d->src = s;
        d->cap = cap;
    }
    d->ops[d->n] = *op;
    d->src[d->n] = *src;
    d->n++;
    return 0;
}

void dl__txdata_fini(dl_txdata_t *d) {
    if (!d)
        return;
    dl_free(d->ops);
    dl_free(d->src);
    dl_free(d->coords);
    if (d->arena) {
        dl__arena_fini(d->arena);
        dl_free(d->arena);
    }
    memset(d, 0, sizeof *d);
}

/* An implicit tempid for a nested map or a map without :db/id: an INT marked in the
 * reserved byte, so it never equals a user's tempid. */
static dl_value_t gen_tempid(dl_txdata_t *d) {
    dl_value_t v = dl_value_int(-(int64_t)++d->gen_tempids);
    v.reserved[0] = 1;
    return v;
}

/* A reverse attribute in a map form, :ns/_name (Datomic's): the map's entity is the value
 * of :ns/name on the entity given as the map value. *out_fwd receives :ns/name. */
static bool reverse_attr(dl_value_t a, dl_value_t *out_fwd) {
    if (a.type != DL_T_KEYWORD)
        return false;
    size_t n;
    const char *s = dl_value_str(a, &n);
    const char *slash = memchr(s, '/', n);
    if (!slash || (size_t)(slash - s) + 2 > n || slash[1] != '_')
        return false;
    char buf[512];
    size_t ns = (size_t)(slash - s) + 1, rest = n - ns - 1;
    if (n > sizeof buf)
        return false;
    memcpy(buf, s, ns);
    memcpy(buf + ns, slash + 2, rest);
    return dl_value_text(DL_T_KEYWORD, buf, ns + rest, out_fwd, NULL) == 0;
}

/* Pushes an op from a map form, turning a reverse attribute around. */
static int push_map_op(dl_txdata_t *d, dl_tx_op_t *op, const dl_opsrc_t *src) {
    dl_value_t fwd;
    if (reverse_attr(op->a, &fwd)) {
        dl_tx_op_t r = *op;
        r.e = op->v;
        r.e_lookup = op->v_lookup;
        r.v = op->e;
        r.v_lookup = op->e_lookup;
        r.a = fwd;
        return dl__txdata_push(d, &r, src);
    }
    return dl__txdata_push(d, op, src);
}

/* ---- EDN ------------------------------------------------------------------------------------ */

typedef struct ednctx {
    dl_txdata_t *d;
    const char *text;
    size_t len;
    size_t index; /* current top-level item */
    dl_error_t *err;
} ednctx_t;

static int edn_err(ednctx_t *c, const dl_edn_t *f, int code, const char *msg) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl__edn_print(f, &b);
    if (b.len > 80) {
        b.data[77] = b.data[78] = b.data[79] = '.';
        b.data[80] = 0;
    }
    int rc = dl__edn_error_at(c->err, code, c->text, c->len, f->offset, f->line, f->column,
                              "%s (transaction item %zu: %s)", msg, c->index, b.oom ? "?" : b.data);
    dl__buf_fini(&b);
    return rc;
}

static dl_opsrc_t src_of(const ednctx_t *c, const dl_edn_t *f) {
    dl_opsrc_t s = {c->text, c->len, f->offset, f->line, f->column, c->index, 0, 0};
    return s;
}

static bool is_kw(const dl_edn_t *f) {
    return f->kind == DL_EDN_VALUE && f->value.type == DL_T_KEYWORD;
}

/* An entity position: a scalar, or a lookup ref [attr value]. */
static int edn_pos(ednctx_t *c, const dl_edn_t *f, dl_value_t *v, dl_value_t *lk) {
    *lk = dl_value_nil();
    if (f->kind == DL_EDN_VALUE) {
        *v = f->value;
        return 0;
    }
    if (f->kind == DL_EDN_VECTOR && f->n == 2 && is_kw(f->items[0]) &&
        f->items[1]->kind == DL_EDN_VALUE) {
        *lk = f->items[0]->value;
        *v = f->items[1]->value;
        return 0;
    }
    return edn_err(c, f, DL_EPARSE, "expected an entity id, tempid, ident or lookup ref");
}

static int edn_value(ednctx_t *c, const dl_edn_t *f, dl_value_t *v, dl_value_t *lk) {
    if (f->kind == DL_EDN_VALUE || f->kind == DL_EDN_VECTOR)
        return edn_pos(c, f, v, lk);
    return edn_err(c, f, DL_EPARSE, "expected a value");
}

static int edn_map(ednctx_t *c, const dl_edn_t *m, dl_value_t *out_e, dl_value_t *out_lk);

/* One attribute value of a map form: scalars, lookup refs, nested maps, and collections
 * of those (cardinality many). */
static int edn_map_value(ednctx_t *c, dl_value_t e, dl_value_t elk, dl_value_t a,
                         const dl_edn_t *key, const dl_edn_t *f, bool in_coll) {
    dl_tx_op_t op = {.op = DL_OP_ADD, .e = e, .e_lookup = elk, .a = a};
    int rc;
    if (f->kind == DL_EDN_MAP) {
        if ((rc = edn_map(c, f, &op.v, &op.v_lookup)) != 0)
            return rc;
    } else if ((f->kind == DL_EDN_SET || f->kind == DL_EDN_LIST ||
                (f->kind == DL_EDN_VECTOR &&
                 !(f->n == 2 && is_kw(f->items[0]) && f->items[1]->kind == DL_EDN_VALUE))) &&
               !in_coll) {
        for (size_t i = 0; i < f->n; i++)
            if ((rc = edn_map_value(c, e, elk, a, key, f->items[i], true)) != 0)
                return rc;
        return 0;
    } else if ((rc = edn_value(c, f, &op.v, &op.v_lookup)) != 0) {
        return rc;
    }
    dl_opsrc_t s = src_of(c, key);
    s.pair = !in_coll && f->kind == DL_EDN_VECTOR && op.v_lookup.type == DL_T_KEYWORD;
    if (push_map_op(c->d, &op, &s) != 0)
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    return 0;
}

/* A map form; out_e and out_lk receive its entity position (for a parent's reference). */
static int edn_map(ednctx_t *c, const dl_edn_t *m, dl_value_t *out_e, dl_value_t *out_lk) {
    dl_value_t e = dl_value_nil(), elk = dl_value_nil();
    bool have_id = false;
    for (size_t i = 0; i < m->n; i += 2) {
        const dl_edn_t *k = m->items[i];
        if (!is_kw(k))
            return edn_err(c, k, DL_EPARSE, "a map form's keys must be keywords");
        if (dl__edn_is_keyword(k, "db/id")) {
            int rc = edn_pos(c, m->items[i + 1], &e, &elk);
            if (rc != 0)
                return rc;
            have_id = true;
        }
    }
    if (!have_id)
        e = gen_tempid(c->d);
    if (m->n == 0 || (have_id && m->n == 2))
        return edn_err(c, m, DL_EPARSE, "a map form needs at least one attribute");
    for (size_t i = 0; i < m->n; i += 2) {
        const dl_edn_t *k = m->items[i];
        if (dl__edn_is_keyword(k, "db/id"))
            continue;
        int rc = edn_map_value(c, e, elk, k->value, k, m->items[i + 1], false);
        if (rc != 0)
            return rc;
    }
    *out_e = e;
    *out_lk = elk;
    return 0;
}

static int edn_list(ednctx_t *c, const dl_edn_t *f) {
    if (f->n == 0 || !is_kw(f->items[0]))
        return edn_err(c, f, DL_EPARSE, "a list form starts with an operation keyword");
    const dl_edn_t *k = f->items[0];
    dl_tx_op_t op;
    memset(&op, 0, sizeof op);
    size_t want;
    if (dl__edn_is_keyword(k, "db/add")) {
        op.op = DL_OP_ADD;
        want = 4;
    } else if (dl__edn_is_keyword(k, "db/retract")) {
        op.op = f->n == 3 ? DL_OP_RETRACT_ATTR : DL_OP_RETRACT;
        want = f->n == 3 ? 3 : 4;
    } else if (dl__edn_is_keyword(k, "db/retractEntity") ||
               dl__edn_is_keyword(k, "db.fn/retractEntity")) {
        op.op = DL_OP_RETRACT_ENTITY;
        want = 2;
    } else if (dl__edn_is_keyword(k, "db/cas") || dl__edn_is_keyword(k, "db.fn/cas")) {
        op.op = DL_OP_CAS;
        want = 5;
    } else {
        return edn_err(c, k, DL_EPARSE, "unknown operation");
    }
    if (f->n != want)
        return edn_err(c, f, DL_EPARSE, "wrong number of arguments");
    int rc = edn_pos(c, f->items[1], &op.e, &op.e_lookup);
    if (rc != 0)
        return rc;
    if (op.op != DL_OP_RETRACT_ENTITY) {
        if (!is_kw(f->items[2]) &&
            !(f->items[2]->kind == DL_EDN_VALUE && f->items[2]->value.type == DL_T_INT))
            return edn_err(c, f->items[2], DL_EPARSE, "an attribute must be a keyword");
        op.a = f->items[2]->value;
    }
    if (op.op == DL_OP_ADD || op.op == DL_OP_RETRACT) {
        if (f->items[3]->kind == DL_EDN_MAP && op.op == DL_OP_ADD)
            rc = edn_map(c, f->items[3], &op.v, &op.v_lookup);
        else
            rc = edn_value(c, f->items[3], &op.v, &op.v_lookup);
    } else if (op.op == DL_OP_CAS) {
        rc = edn_value(c, f->items[3], &op.old, &op.old_lookup);
        if (rc == 0)
            rc = edn_value(c, f->items[4], &op.v, &op.v_lookup);
    }
    if (rc != 0)
        return rc;
    dl_opsrc_t s = src_of(c, f);
    if (dl__txdata_push(c->d, &op, &s) != 0)
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    return 0;
}

int dl__txform_edn(const char *text, size_t len, dl_txdata_t *d, dl_error_t *err) {
    memset(d, 0, sizeof *d);
    d->arena = dl_malloc(sizeof *d->arena);
    if (!d->arena)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    dl__arena_init(d->arena, 1 << 16);
    dl_edn_t *top;
    int rc = dl__edn_read_one(text, len, d->arena, &top, err);
    if (rc != 0)
        return rc;
    ednctx_t c = {d, text, len, 0, err};
    if (!top || (top->kind != DL_EDN_VECTOR && top->kind != DL_EDN_LIST))
        return top ? edn_err(&c, top, DL_EPARSE, "transaction data must be a vector")
                   : dl_error_set(err, DL_EPARSE, "empty transaction data");
    for (size_t i = 0; i < top->n && rc == 0; i++) {
        const dl_edn_t *f = top->items[i];
        c.index = i;
        if (f->kind == DL_EDN_VECTOR || f->kind == DL_EDN_LIST) {
            rc = edn_list(&c, f);
        } else if (f->kind == DL_EDN_MAP) {
            dl_value_t e, lk;
            rc = edn_map(&c, f, &e, &lk);
        } else {
            rc = edn_err(&c, f, DL_EPARSE, "expected a list form or a map form");
        }
    }
    /* The arena holds only the parsed forms; values are interned, so it can go now. */
    dl__arena_fini(d->arena);
    dl_free(d->arena);
    d->arena = NULL;
    return rc;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

typedef struct jctx {
    dl_txdata_t *d;
    size_t index;
    dl_error_t *err;
} jctx_t;

static int jerr(jctx_t *c, int code, const char *msg) {
    return dl_error_set(c->err, code, "%s (transaction item %zu)", msg, c->index);
}

/* "order/id", ":order/id" or {"kw": "order/id"} as a keyword. */
static int j_attr(jctx_t *c, const json_t *j, dl_value_t *out) {
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j);
        if (n && s[0] == ':') {
            s++;
            n--;
        }
        if (!n)
            return jerr(c, DL_EPARSE, "empty attribute name");
        return dl_value_text(DL_T_KEYWORD, s, n, out, c->err);
    }
    if (json_is_integer(j)) {
        *out = dl_value_int(json_integer_value(j));
        return 0;
    }
    int rc = dl__json_to_value(j, out, c->err);
    if (rc != 0)
        return rc;
    if (out->type != DL_T_KEYWORD)
        return jerr(c, DL_EPARSE, "an attribute must be a string or {\"kw\": ...}");
    return 0;
}

/* An entity position: id, tempid, {"kw":..} ident, {"ref":..}, [attr, value] or
 * {"lookup": [attr, value]}. */
static int j_pos(jctx_t *c, const json_t *j, dl_value_t *v, dl_value_t *lk) {
    *lk = dl_value_nil();
    const json_t *pair = json_is_array(j) ? j
                         : json_is_object(j) && json_object_get(j, "lookup")
                             ? json_object_get(j, "lookup")
                             : NULL;
    if (pair) {
        if (!json_is_array(pair) || json_array_size(pair) != 2)
            return jerr(c, DL_EPARSE, "a lookup ref is [attribute, value]");
        int rc = j_attr(c, json_array_get(pair, 0), lk);
        if (rc == 0)
            rc = dl__json_to_value(json_array_get(pair, 1), v, c->err);
        return rc;
    }
    return dl__json_to_value(j, v, c->err);
}

static int j_map(jctx_t *c, const json_t *m, dl_value_t *out_e, dl_value_t *out_lk);

static int j_map_value(jctx_t *c, dl_value_t e, dl_value_t elk, dl_value_t a, const json_t *j,
                       bool in_coll) {
    dl_tx_op_t op = {.op = DL_OP_ADD, .e = e, .e_lookup = elk, .a = a};
    int rc;
    if (json_is_array(j) && !in_coll) {
        for (size_t i = 0; i < json_array_size(j); i++)
            if ((rc = j_map_value(c, e, elk, a, json_array_get(j, i), true)) != 0)
                return rc;
        return 0;
    }
    if (json_is_object(j) && json_object_get(j, "lookup"))
        rc = j_pos(c, j, &op.v, &op.v_lookup);
    else if (json_is_object(j) && json_object_size(j) != 1)
        rc = j_map(c, j, &op.v, &op.v_lookup);
    else if (json_is_object(j) && (json_object_get(j, "db/id") || json_object_get(j, ":db/id")))
        rc = jerr(c, DL_EPARSE, "a nested map needs at least one attribute");
    else if (json_is_object(j)) {
        /* a one-key object is a tagged value ({"kw":..}) unless its key is an attribute */
        const char *key = json_object_iter_key(json_object_iter((json_t *)j));
        if (strchr(key, '/'))
            rc = j_map(c, j, &op.v, &op.v_lookup);
        else
            rc = dl__json_to_value(j, &op.v, c->err);
    } else
        rc = dl__json_to_value(j, &op.v, c->err);
    if (rc != 0)
        return rc;
    dl_opsrc_t s = {NULL, 0, -1, 0, 0, c->index, 1, 0};
    if (push_map_op(c->d, &op, &s) != 0)
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    return 0;
}

static int j_map(jctx_t *c, const json_t *m, dl_value_t *out_e, dl_value_t *out_lk) {
    dl_value_t e = dl_value_nil(), elk = dl_value_nil();
    const json_t *id = json_object_get(m, "db/id");
    if (!id)
        id = json_object_get(m, ":db/id");
    int rc;
    if (id) {
        if ((rc = j_pos(c, id, &e, &elk)) != 0)
            return rc;
    } else {
        e = gen_tempid(c->d);
    }
    if (json_object_size(m) <= (id ? 1u : 0u))
        return jerr(c, DL_EPARSE, "a map form needs at least one attribute");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)m, key, val) {
        if (strcmp(key, "db/id") == 0 || strcmp(key, ":db/id") == 0)
            continue;
        dl_value_t a;
        const char *kn = key[0] == ':' ? key + 1 : key;
        rc = *kn ? dl_value_text(DL_T_KEYWORD, kn, strlen(kn), &a, c->err)
                 : jerr(c, DL_EPARSE, "empty attribute name");
        if (rc == 0)
            rc = j_map_value(c, e, elk, a, val, false);
        if (rc != 0)
            return rc;
    }
    *out_e = e;
    *out_lk = elk;
    return 0;
}

static int j_list(jctx_t *c, const json_t *f) {
    size_t n = json_array_size(f);
    const char *name = n ? json_string_value(json_array_get(f, 0)) : NULL;
    if (!name)
        return jerr(c, DL_EPARSE, "a list form starts with an operation name");
    if (name[0] == ':')
        name++;
    if (strncmp(name, "db/", 3) == 0)
        name += 3;
    else if (strncmp(name, "db.fn/", 6) == 0)
        name += 6;
    dl_tx_op_t op;
    memset(&op, 0, sizeof op);
    size_t want;
    if (strcmp(name, "add") == 0) {
        op.op = DL_OP_ADD;
        want = 4;
    } else if (strcmp(name, "retract") == 0) {
        op.op = n == 3 ? DL_OP_RETRACT_ATTR : DL_OP_RETRACT;
        want = n == 3 ? 3 : 4;
    } else if (strcmp(name, "retractEntity") == 0) {
        op.op = DL_OP_RETRACT_ENTITY;
        want = 2;
    } else if (strcmp(name, "cas") == 0) {
        op.op = DL_OP_CAS;
        want = 5;
    } else {
        return jerr(c, DL_EPARSE, "unknown operation");
    }
    if (n != want)
        return jerr(c, DL_EPARSE, "wrong number of arguments");
    int rc = j_pos(c, json_array_get(f, 1), &op.e, &op.e_lookup);
    if (rc == 0 && op.op != DL_OP_RETRACT_ENTITY)
        rc = j_attr(c, json_array_get(f, 2), &op.a);
    if (rc == 0 && (op.op == DL_OP_ADD || op.op == DL_OP_RETRACT)) {
        const json_t *v = json_array_get(f, 3);
        if (op.op == DL_OP_ADD && json_is_object(v) && json_object_size(v) > 1 &&
            !json_object_get(v, "lookup"))
            rc = j_map(c, v, &op.v, &op.v_lookup);
        else
            rc = j_pos(c, v, &op.v, &op.v_lookup);
    } else if (rc == 0 && op.op == DL_OP_CAS) {
        rc = j_pos(c, json_array_get(f, 3), &op.old, &op.old_lookup);
        if (rc == 0)
            rc = j_pos(c, json_array_get(f, 4), &op.v, &op.v_lookup);
    }
    if (rc != 0)
        return rc;
    dl_opsrc_t s = {NULL, 0, -1, 0, 0, c->index, 1, 0};
    if (dl__txdata_push(c->d, &op, &s) != 0)
        return dl_error_set(c->err, DL_ENOMEM, "out of memory");
    return 0;
}

int dl__txform_json_value(const json_t *top, dl_txdata_t *d, dl_error_t *err) {
    memset(d, 0, sizeof *d);
    int rc = 0;
    jctx_t c = {d, 0, err};
    if (!json_is_array(top))
        rc = dl_error_set(err, DL_EPARSE, "transaction data must be a JSON array");
    for (size_t i = 0; rc == 0 && i < json_array_size(top); i++) {
        const json_t *f = json_array_get(top, i);
        c.index = i;
        if (json_is_array(f)) {
            rc = j_list(&c, f);
        } else if (json_is_object(f)) {
            dl_value_t e, lk;
            rc = j_map(&c, f, &e, &lk);
        } else {
            rc = jerr(&c, DL_EPARSE, "expected a list form (array) or a map form (object)");
        }
    }
    return rc;
}

int dl__txform_json(const char *text, size_t len, dl_txdata_t *d, dl_error_t *err) {
    memset(d, 0, sizeof *d);
    json_error_t je;
    json_t *top = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!top)
        return dl_error_set_at(err, DL_EPARSE, je.line, je.column, je.position,
                               "transaction JSON: %s", je.text);
    int rc = dl__txform_json_value(top, d, err);
    json_decref(top);
    return rc;
}
