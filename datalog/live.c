/*
 * live.c: live and one-shot compiled queries: building a query's dataflow graph
 * (compile.c), loading a snapshot into its attribute inputs, feeding it committed
 * transactions, accumulating the result and its per-transaction changes.
 *
 * Time: the graph has one coordinate, the store's transaction number (DESIGN-NOTES §1);
 * the snapshot is loaded at its basis transaction, every later commit at its own number,
 * and after each the inputs advance past it, so the result for that transaction is
 * complete when dl_live_apply returns. A query built by dl_live_new_dims instead has the
 * store's first n_dims coordinates [tx, dim1, ...]: its snapshot is the history at each
 * transaction's time vector, its commits enter at their time vectors and advance to their
 * frontier vectors, and every change carries its time (docs/datalog.md "Multi-dimensional
 * time"). An engine (below) has either one coordinate or, made by dl_engine_new_dims, the
 * same n_dims coordinates: its base inputs then hold the history at time vectors, exactly
 * what a standalone dl_live_new_dims query loads, so queries with the same dimensions share
 * them (docs/datalog.md "Multi-dimensional engines").
 * A standalone live query (dl_live_new) owns its graph: arrangements are shared within the
 * query only. Engine queries (dl_engine_live_new, at the end of this file) share one graph
 * and its base arrangements (docs/datalog.md "Engine"); an engine one-shot of a query the
 * engine keeps live reads that query's result (engine_peek; docs/datalog.md
 * "Performance"). Operators compilation left unread are collected before the first run.
 */
#include "datalog/compile.h"

#include <deltalog/store.h>
#include <stdlib.h>
#include <string.h>

/* ---- the accumulated result --------------------------------------------------------------- */

static int acc_rehash(dl_live_t *L, size_t n_slots) {
    uint32_t *s = dl_calloc(n_slots, sizeof *s);
    if (!s)
        return DL_ENOMEM;
    for (size_t i = 0; i < L->n_rows; i++) {
        size_t h = (size_t)dl__row_hash_fast(L->rows + i * L->arity, L->arity) & (n_slots - 1);
        while (s[h])
            h = (h + 1) & (n_slots - 1);
        s[h] = (uint32_t)(i + 1);
    }
    dl_free(L->slots);
    L->slots = s;
    L->n_slots = n_slots;
    return 0;
}

/* Drops the rows whose count is 0 (packing rows and counts), before a rehash. */
static void acc_purge(dl_live_t *L) {
    size_t w = 0;
    for (size_t i = 0; i < L->n_rows; i++) {
        if (L->counts[i] == 0)
            continue;
        if (w != i) {
            memcpy(L->rows + w * L->arity, L->rows + i * L->arity, L->arity * sizeof *L->rows);
            L->counts[w] = L->counts[i];
        }
        w++;
    }
    L->n_rows = w;
}

/* Adds diff to row's count. A row whose count drops to 0 stays until the table would
 * grow: then such rows are dropped first (a result that keeps changing, such as running
 * balances, would otherwise keep every value it ever had). */
static int acc_add(dl_live_t *L, const dl_value_t *row, int64_t diff) {
    if (2 * (L->n_rows + 1) >= L->n_slots) {
        acc_purge(L);
        size_t ns = L->n_slots ? L->n_slots : 64;
        while (4 * (L->n_rows + 1) > ns) /* a quarter full: ns/4 more inserts before the next */
            ns *= 2;
        if (acc_rehash(L, ns))
            return DL_ENOMEM;
    }
    size_t a = DL_MAX(L->arity, 1);
    size_t h = (size_t)dl__row_hash_fast(row, L->arity) & (L->n_slots - 1);
    while (L->slots[h]) {
        size_t i = L->slots[h] - 1;
        if (dl__row_same(L->rows + i * L->arity, row, L->arity)) {
            L->counts[i] += diff;
            return 0;
        }
        h = (h + 1) & (L->n_slots - 1);
    }
    if (L->n_rows == L->cap_rows) {
        size_t cap = L->cap_rows ? 2 * L->cap_rows : 64;
        dl_value_t *r = dl_realloc(L->rows, cap * a * sizeof *r);
        if (!r)
            return DL_ENOMEM;
        L->rows = r;
        int64_t *c = dl_realloc(L->counts, cap * sizeof *c);
        if (!c)
            return DL_ENOMEM;
        L->counts = c;
        L->cap_rows = cap;
    }
    memcpy(L->rows + L->n_rows * L->arity, row, L->arity * sizeof *row);
    L->counts[L->n_rows] = diff;
    L->slots[h] = (uint32_t)(++L->n_rows);
    return 0;
}

static int on_diff(void *ctx, const dl_diff_t *d) {
    dl_live_t *L = ctx;
    for (size_t i = 0; i < d->n; i++) {
        const dl_value_t *row = d->rows + i * d->arity;
        int rc = L->no_result ? 0 : acc_add(L, row, d->diffs[i]);
        if (rc)
            return rc;
        if (L->n_ch == L->cap_ch) {
            size_t cap = L->cap_ch ? 2 * L->cap_ch : 64;
            dl_value_t *r = dl_realloc(L->ch_rows, cap * DL_MAX(L->arity, 1) * sizeof *r);
            if (!r)
                return DL_ENOMEM;
            L->ch_rows = r;
            int64_t *df = dl_realloc(L->ch_diffs, cap * sizeof *df);
            if (!df)
                return DL_ENOMEM;
            L->ch_diffs = df;
            if (L->dims > 1) {
                uint64_t *tm = dl_realloc(L->ch_times, cap * L->dims * sizeof *tm);
                if (!tm)
                    return DL_ENOMEM;
                L->ch_times = tm;
            }
            L->cap_ch = cap;
        }
        if (L->dims > 1)
            memcpy(L->ch_times + L->n_ch * L->dims, d->time, L->dims * sizeof *d->time);
        memcpy(L->ch_rows + L->n_ch * L->arity, row, L->arity * sizeof *row);
        L->ch_diffs[L->n_ch++] = d->diffs[i];
    }
    return 0;
}

static void txmap_fini(dl__txmap_t *m);

/* ---- building and loading ----------------------------------------------------------------- */

DL_API void dl_live_free(dl_live_t *l) {
    if (!l)
        return;
    if (l->engine)
        dl__engine_release(l); /* its operators leave the engine's graph */
    else
        dl_graph_free(l->g);
    dl__arena_fini(&l->arena);
    dl_free(l->lines);
    for (size_t i = 0; i < l->n_attrs; i++)
        txmap_fini(&l->attrs[i].txmap);
    dl_free(l->src_kind);
    dl_free(l->memo);
    dl_free(l->attrs);
    dl_free(l->consts);
    dl_free(l->entered);
    dl_free(l->rule_out);
    dl_free(l->rows);
    dl_free(l->counts);
    dl_free(l->slots);
    dl_free(l->ch_rows);
    dl_free(l->ch_diffs);
    dl_free(l->ch_times);
    dl_free(l->args_text);
    for (size_t i = 0; i < l->n_probes; i++)
        dl__snap_probe_free(l->probes[i]);
    dl_free(l->probes);
    dl_free(l);
}

static bool is_entity_var(const dl_live_t *L, int v) {
    return v >= 0 && v < 64 * 64 && (L->entity_vars[v / 64] >> (v % 64)) & 1;
}

static int arg_value(const dl_live_t *L, int var, const dl_edn_t *f, const char *text, size_t len,
                     dl_value_t *out, dl_error_t *err) {
    if (f->kind != DL_EDN_VALUE)
        return dl__parse_error(err, DL_EINVAL, text, len, f, "expected a scalar value");
    *out = f->value;
    if (out->type == DL_T_INT && is_entity_var(L, var))
        *out = dl_value_ref(out->as.i);
    return 0;
}

/* Loads the rows of each :in binding into its constant input at time 0. */
static int load_args(dl_live_t *L, const char *args, size_t len, dl_error_t *err) {
    const dl_query_t *q = L->q;
    size_t n_bind = dl_query_n_args(q);
    dl_arena_t a;
    dl__arena_init(&a, 1024);
    const dl_edn_t *argv = NULL;
    int rc = 0;
    uint64_t t0[DL_TIME_MAX_ROOT_DIM] = {0};
    if (args && len) {
        rc = dl__edn_read_one(args, len, &a, (dl_edn_t **)&argv, err);
        if (!rc && argv->kind != DL_EDN_VECTOR)
            rc = dl_error_set(err, DL_EINVAL, "query arguments are a vector, one per :in binding");
    }
    if (!rc && (argv ? argv->n : 0) != n_bind)
        rc = dl_error_set(err, DL_EINVAL, "the query takes %zu argument%s, %zu given", n_bind,
                          n_bind == 1 ? "" : "s", argv ? argv->n : 0);
    for (size_t i = 0, k = 0; i < q->n_in && !rc; i++) {
        if (q->in[i].kind != DL__IN_BIND)
            continue;
        const dl__bind_t *b = &q->in[i].bind;
        const dl_edn_t *f = argv->items[k];
        dl_input_t *in = L->arg_in[k++];
        dl_value_t row[64];
        if (b->kind == DL__BIND_SCALAR) {
            rc = arg_value(L, b->vars[0], f, args, len, &row[0], err);
            if (!rc)
                rc = dl_input_update(in, row, 1, t0, 1, err);
            continue;
        }
        bool coll_ok = f->kind == DL_EDN_VECTOR || f->kind == DL_EDN_LIST ||
                       (f->kind == DL_EDN_SET && b->kind != DL__BIND_TUPLE);
        if (!coll_ok) {
            rc = dl__parse_error(err, DL_EINVAL, args, len, f, "expected a collection argument");
            break;
        }
        if (b->kind == DL__BIND_TUPLE) {
            if (f->n != b->n) {
                rc = dl__parse_error(err, DL_EINVAL, args, len, f,
                                     "tuple input needs %zu values, got %zu", b->n, f->n);
                break;
            }
            for (size_t j = 0; j < b->n && !rc; j++)
                rc = arg_value(L, b->vars[j], f->items[j], args, len, &row[j], err);
            if (!rc)
                rc = dl_input_update(in, row, b->n, t0, 1, err);
            continue;
        }
        /* Collections and relations may repeat a row: load each distinct row once. */
        dl_value_t *seen = dl_malloc(DL_MAX(f->n * b->n, 1) * sizeof *seen);
        size_t n_seen = 0;
        if (!seen) {
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
            break;
        }
        for (size_t j = 0; j < f->n && !rc; j++) {
            const dl_edn_t *it = f->items[j];
            if (b->kind == DL__BIND_COLL) {
                rc = arg_value(L, b->vars[0], it, args, len, &row[0], err);
            } else if ((it->kind != DL_EDN_VECTOR && it->kind != DL_EDN_LIST) || it->n != b->n) {
                rc = dl__parse_error(err, DL_EINVAL, args, len, it,
                                     "each tuple of the relation needs %zu values", b->n);
            } else {
                for (size_t t = 0; t < b->n && !rc; t++)
                    rc = arg_value(L, b->vars[t], it->items[t], args, len, &row[t], err);
            }
            bool dup = false;
            for (size_t s = 0; s < n_seen && !rc && !dup; s++)
                dup = dl_row_eq(seen + s * b->n, row, b->n);
            if (!rc && !dup) {
                memcpy(seen + n_seen++ * b->n, row, b->n * sizeof *row);
                rc = dl_input_update(in, row, b->n, t0, 1, err);
            }
        }
        dl_free(seen);
    }
    dl__arena_fini(&a);
    return rc;
}

/* ---- (e, v) -> asserting transaction, for the tx column of current sources ------------- */

static size_t txmap_find(const dl__txmap_t *m, const dl_value_t *key, bool *found) {
    size_t h = (size_t)dl_row_hash(key, 2) & (m->n_slots - 1), tomb = SIZE_MAX;
    *found = false;
    while (m->state[h]) {
        if (m->state[h] == 1 && dl_row_eq(m->keys + 2 * h, key, 2)) {
            *found = true;
            return h;
        }
        if (m->state[h] == 2 && tomb == SIZE_MAX)
            tomb = h;
        h = (h + 1) & (m->n_slots - 1);
    }
    return tomb != SIZE_MAX ? tomb : h;
}

static int txmap_grow(dl__txmap_t *m) {
    dl__txmap_t n;
    n.n_slots = m->n_slots ? 2 * m->n_slots : 64;
    n.n_used = 0;
    n.keys = dl_malloc(n.n_slots * 2 * sizeof *n.keys);
    n.tx = dl_malloc(n.n_slots * sizeof *n.tx);
    n.state = dl_calloc(n.n_slots, 1);
    if (!n.keys || !n.tx || !n.state) {
        dl_free(n.keys);
        dl_free(n.tx);
        dl_free(n.state);
        return DL_ENOMEM;
    }
    for (size_t i = 0; i < m->n_slots; i++) {
        if (m->state[i] != 1)
            continue;
        bool f;
        size_t h = txmap_find(&n, m->keys + 2 * i, &f);
        memcpy(n.keys + 2 * h, m->keys + 2 * i, 2 * sizeof *n.keys);
        n.tx[h] = m->tx[i];
        n.state[h] = 1;
        n.n_used++;
    }
    dl_free(m->keys);
    dl_free(m->tx);
    dl_free(m->state);
    *m = n;
    return 0;
}

static int txmap_put(dl__txmap_t *m, const dl_value_t *key, int64_t tx) {
    if (4 * (m->n_used + 1) >= 3 * m->n_slots && txmap_grow(m))
        return DL_ENOMEM;
    bool f;
    size_t h = txmap_find(m, key, &f);
    memcpy(m->keys + 2 * h, key, 2 * sizeof *key);
    m->tx[h] = tx;
    if (!f) {
        m->state[h] = 1;
        m->n_used++;
    }
    return 0;
}

/* Removes key; its transaction into *tx (false when absent). */
static bool txmap_take(dl__txmap_t *m, const dl_value_t *key, int64_t *tx) {
    if (!m->n_slots)
        return false;
    bool f;
    size_t h = txmap_find(m, key, &f);
    if (!f)
        return false;
    *tx = m->tx[h];
    m->state[h] = 2;
    m->n_used--;
    return true;
}

static void txmap_fini(dl__txmap_t *m) {
    dl_free(m->keys);
    dl_free(m->tx);
    dl_free(m->state);
    memset(m, 0, sizeof *m);
}

/* Loads each input from its source's snapshot at time [basis]: current and fixed sources
 * their current datoms, history sources every assertion and retraction. */
static int load_snapshot(dl_live_t *L, const dl_db_t *const *dbs, uint64_t basis, dl_error_t *err) {
    uint64_t t[DL_TIME_MAX_ROOT_DIM] = {basis};
    for (size_t i = 0; i < L->n_attrs; i++) {
        dl__live_attr_t *a = &L->attrs[i];
        int kind = L->src_kind[a->src];
        dl_datom_t prefix;
        memset(&prefix, 0, sizeof prefix);
        prefix.a = a->id;
        dl_iter_t *it;
        int rc = dl_db_datoms(dbs[a->src], DL_INDEX_AEVT, &prefix, 1, NULL, &it, err);
        if (rc)
            return rc;
        dl_datom_t d;
        while (!rc && dl_iter_next(it, &d)) {
            if (!d.added && kind != DL_LIVE_HISTORY)
                continue;
            dl_value_t row[4] = {dl_value_ref(d.e), d.v, dl_value_int(d.tx),
                                 dl_value_bool(d.added)};
            rc = dl_input_update(a->in, row, a->wide ? 4 : 2, t, 1, err);
            if (!rc && a->wide && kind == DL_LIVE_CURRENT && txmap_put(&a->txmap, row, d.tx))
                rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        }
        dl_iter_free(it);
        if (rc)
            return rc;
    }
    return 0;
}

/* A multi-dimensional query's snapshot (L->dims > 1): every assertion and retraction of
 * db's history, each at its transaction's full time vector (dl_db_tx_time), so that the
 * sum of the inputs at times <= a point is the datoms of dl_db_as_of_point at that point
 * (for datoms whose changes carry non-decreasing coordinates: docs/datalog.md "Multi-
 * dimensional time"). Only current-database sources of attributes without a transaction
 * column (checked by the caller). */
/* Every assertion and retraction of attribute attr in history h (of db) into input in,
 * each at its transaction's first `dims` time coordinates (dl_db_tx_time). */
static int load_attr_history(const dl_db_t *db, const dl_db_t *h, int64_t attr, size_t dims,
                             dl_input_t *in, dl_error_t *err) {
    dl_datom_t prefix;
    memset(&prefix, 0, sizeof prefix);
    prefix.a = attr;
    dl_iter_t *it = NULL;
    int rc = dl_db_datoms(h, DL_INDEX_AEVT, &prefix, 1, NULL, &it, err);
    dl_datom_t d;
    while (!rc && dl_iter_next(it, &d)) {
        uint64_t t[DL_TIME_MAX_ROOT_DIM] = {0};
        if (dl_db_tx_time(db, (uint64_t)d.tx, t, dims) == 0) {
            rc = dl_error_set(err, DL_EINTERNAL, "no time vector for transaction %lld",
                              (long long)d.tx);
            break;
        }
        dl_value_t row[2] = {dl_value_ref(d.e), d.v};
        rc = dl_input_update(in, row, 2, t, d.added ? 1 : -1, err);
    }
    dl_iter_free(it);
    return rc;
}

static int load_snapshot_dims(dl_live_t *L, const dl_db_t *db, dl_error_t *err) {
    dl_db_t *h = dl_db_history(db);
    if (!h)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < L->n_attrs && !rc; i++)
        rc = load_attr_history(db, h, L->attrs[i].id, L->dims, L->attrs[i].in, err);
    dl_db_unref(h);
    return rc;
}

/* One change of a commit into input a (at time t). */
static int apply_change(dl_live_t *L, dl__live_attr_t *a, const dl_change_t *ch, uint64_t tx,
                        const uint64_t *t, dl_error_t *err) {
    int kind = L->src_kind[a->src];
    if (kind == DL_LIVE_FIXED)
        return 0;
    dl_value_t row[4] = {dl_value_ref(ch->e), ch->v, dl_value_int((int64_t)tx),
                         dl_value_bool(ch->diff > 0)};
    if (kind == DL_LIVE_HISTORY) /* history only grows: every change is a new datom */
        return dl_input_update(a->in, row, a->wide ? 4 : 2, t, 1, err);
    if (!a->wide)
        return dl_input_update(a->in, row, 2, t, ch->diff, err);
    if (ch->diff > 0) {
        if (txmap_put(&a->txmap, row, (int64_t)tx))
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        return dl_input_update(a->in, row, 4, t, 1, err);
    }
    int64_t asserted;
    if (!txmap_take(&a->txmap, row, &asserted))
        return dl_error_set(err, DL_EINTERNAL, "retraction of a datom this query never saw");
    row[2] = dl_value_int(asserted);
    row[3] = dl_value_bool(true);
    return dl_input_update(a->in, row, 4, t, -1, err);
}

/* Advances every attribute input to the time vector next (L->dims coordinates) and runs. */
static int advance_and_run(dl_live_t *L, const uint64_t *t, dl_error_t *err) {
    for (size_t i = 0; i < L->n_attrs; i++) {
        int rc = dl_input_advance_to(L->attrs[i].in, t, err);
        if (rc)
            return rc;
    }
    L->n_ch = 0;
    return dl_graph_run(L->g, err);
}

typedef struct counter {
    dl_live_t *L;
    size_t line;
} counter_t;

/* EXPLAIN ANALYZE: the rows of a plan line's collection (sum of its diffs). */
static int count_rows(void *ctx, const dl_diff_t *d) {
    counter_t *k = ctx;
    dl__live_line_t *ln = &k->L->lines[k->line];
    for (size_t i = 0; i < d->n; i++)
        ln->actual += d->diffs[i];
    return 0;
}

/* Attaches a counting capture to every plan line whose collection is in the root scope
 * (collections inside iterate scopes cannot be captured; their lines show no count). */
static int attach_counters(dl_live_t *L, dl_error_t *err) {
    for (size_t i = 0; i < L->n_lines; i++) {
        dl__live_line_t *ln = &L->lines[i];
        if (!ln->coll || dl_coll_scope(ln->coll) != dl_graph_root(L->g))
            continue;
        counter_t *k = dl__arena_alloc(&L->arena, sizeof *k);
        if (!k)
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        k->L = L;
        k->line = i;
        if (!dl_capture_new(ln->coll, count_rows, k, err))
            return err && err->code ? err->code : DL_ENOMEM;
        ln->counted = true;
    }
    return 0;
}

static int live_new(const dl_query_t *q, const dl_live_source_t *srcs, size_t n_srcs,
                    const char *args, size_t args_len, bool analyze, size_t dims, bool oneshot,
                    dl_live_t **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!q || !srcs || !out)
        return dl_error_set(err, DL_EINVAL, "dl_live_new: NULL argument");
    if (dims < 1 || dims > DL_TIME_MAX_ROOT_DIM)
        return dl_error_set(err, DL_EINVAL, "dl_live_new_dims: %zu time coordinates (1..%d)", dims,
                            (int)DL_TIME_MAX_ROOT_DIM);
    if (dims > 1 && (n_srcs != 1 || srcs[0].kind != DL_LIVE_CURRENT))
        return dl_error_set(err, DL_EUNSUPPORTED,
                            "multi-dimensional live queries take one current database");
    dl_live_t *L = dl_calloc(1, sizeof *L);
    const dl_db_t **dbs = dl_calloc(q->n_srcs, sizeof *dbs);
    if (L)
        L->src_kind = dl_malloc(q->n_srcs * sizeof *L->src_kind);
    if (!L || !dbs || !L->src_kind) {
        dl_free(dbs);
        dl_live_free(L);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    L->q = q;
    L->arity = q->n_find;
    L->analyze = analyze;
    L->dims = dims;
    dl__arena_init(&L->arena, 4096);
    int rc = 0;
    /* Sources by :in name; the schema comes from $ (else the first supplied). */
    const dl_db_t *schema = NULL;
    uint64_t basis = 0;
    for (size_t i = 0; i < q->n_srcs; i++) {
        L->src_kind[i] = DL__SRC_ABSENT;
        for (size_t k = 0; k < n_srcs; k++)
            if (srcs[k].name && srcs[k].db && strcmp(srcs[k].name, q->srcs[i]->bytes) == 0) {
                dbs[i] = srcs[k].db;
                L->src_kind[i] = (int)srcs[k].kind;
            }
        if (!dbs[i])
            continue;
        if (!schema || i == 0)
            schema = dbs[i];
        basis = DL_MAX(basis, dl_db_basis_tx(dbs[i]));
    }
    for (size_t i = 0; i < q->n_in && !rc; i++)
        if (q->in[i].kind == DL__IN_SRC && !dbs[q->in[i].src])
            rc = dl_error_set(err, DL_EINVAL, "no database supplied for %s",
                              q->srcs[q->in[i].src]->bytes);
    if (!rc && !schema)
        rc = dl_error_set(err, DL_EINVAL, "no database supplied");
    if (!rc) {
        L->g = dl_graph_new(dims, err);
        if (!L->g)
            rc = err && err->code ? err->code : DL_ENOMEM;
    }
    if (!rc && oneshot && dims == 1) {
        L->snap = dbs; /* one-shot: patterns may read the snapshots (compile.c) */
        L->snap_tx = basis;
    }
    if (!rc)
        rc = dl__compile_query(L, q, schema, err);
    L->snap = NULL;
    for (size_t i = 0; i < L->n_attrs && !rc && dims > 1; i++)
        if (L->attrs[i].wide)
            rc = dl_error_set(err, DL_EUNSUPPORTED,
                              "multi-dimensional live queries do not bind transactions");
    if (!rc) {
        L->cap = dl_capture_new(L->out, on_diff, L, err);
        if (!L->cap)
            rc = err && err->code ? err->code : DL_ENOMEM;
    }
    if (!rc)
        rc = load_args(L, args, args ? args_len : 0, err);
    for (size_t i = 0; i < L->n_consts && !rc; i++)
        rc = dl_input_close(L->consts[i], err);
    if (!rc && analyze)
        rc = attach_counters(L, err);
    /* Operators nothing reads (a fused join's original, compile.c project_fx; an unused
     * unit relation) go before the first run: each would cost every step. The collections
     * the compiler still points at (plan lines, memo) are not used after this. */
    if (!rc) {
        rc = dl_graph_collect(L->g, NULL, err);
        L->n_consts = 0; /* closed, and those nothing read are gone */
    }
    if (!rc)
        rc = dims > 1 ? load_snapshot_dims(L, schema, err) : load_snapshot(L, dbs, basis, err);
    uint64_t next[DL_TIME_MAX_ROOT_DIM] = {basis + 1};
    if (!rc && dims > 1)
        dl_db_frontier(schema, next, dims);
    if (!rc)
        rc = advance_and_run(L, next, err);
    if (!rc && dims > 1)
        memcpy(L->dim_frontier, next, dims * sizeof *next);
    dl_free(dbs);
    if (rc) {
        dl_live_free(L);
        return rc;
    }
    L->last_tx = basis;
    *out = L;
    return 0;
}

DL_API int dl_live_new_sources(const dl_query_t *q, const dl_live_source_t *sources,
                               size_t n_sources, const char *args, size_t args_len, dl_live_t **out,
                               dl_error_t *err) {
    dl_error_t local;
    dl_error_clear(&local);
    return live_new(q, sources, n_sources, args, args_len, false, 1, false, out,
                    err ? err : &local);
}

DL_API int dl_live_new_dims(const dl_query_t *q, const struct dl_db *db, const char *args,
                            size_t args_len, size_t n_dims, dl_live_t **out, dl_error_t *err) {
    dl_error_t local;
    dl_error_clear(&local);
    dl_live_source_t src = {"$", db, DL_LIVE_CURRENT};
    return live_new(q, &src, db ? 1 : 0, args, args_len, false, n_dims, false, out,
                    err ? err : &local);
}

DL_API size_t dl_live_dims(const dl_live_t *l) { return l ? l->dims : 0; }

DL_API const uint64_t *dl_live_change_times(const dl_live_t *l) {
    return l && l->dims > 1 ? l->ch_times : NULL;
}

DL_API int dl_query_run_sources(const dl_query_t *q, const dl_live_source_t *sources,
                                size_t n_sources, const char *args, size_t args_len,
                                dl_query_result_t **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    dl_error_t local;
    dl_error_clear(&local);
    dl_live_t *l = NULL;
    /* One-shot: the graph may read the snapshots directly (compile.c "one-shot plans"). */
    int rc =
        live_new(q, sources, n_sources, args, args_len, false, 1, true, &l, err ? err : &local);
    if (!rc)
        rc = dl_live_result(l, out, err);
    dl_live_free(l);
    return rc;
}

DL_API int dl_live_new(const dl_query_t *q, const struct dl_db *db, const char *args,
                       size_t args_len, dl_live_t **out, dl_error_t *err) {
    dl_live_source_t src = {"$", db, DL_LIVE_CURRENT};
    return dl_live_new_sources(q, &src, db ? 1 : 0, args, args_len, out, err);
}

DL_API int dl_live_apply(dl_live_t *l, const struct dl_commit *c, dl_error_t *err) {
    dl_error_t local;
    dl_error_clear(&local);
    if (!err)
        err = &local;
    if (!l || !c)
        return dl_error_set(err, DL_EINVAL, "dl_live_apply: NULL argument");
    if (l->engine) {
        if (c->tx > l->engine->last_tx) {
            int rc = dl_engine_apply(l->engine, c, err);
            if (rc)
                return rc;
        }
        if (l->failed)
            return dl_error_set(err, l->failed, "this live query failed (%s)",
                                dl_err_name(l->failed));
        return 0; /* the engine applied it (now or for another of its queries) */
    }
    if (l->failed)
        return dl_error_set(err, l->failed, "this live query failed earlier (%s)",
                            dl_err_name(l->failed));
    if (c->tx <= l->last_tx) {
        l->n_ch = 0; /* already applied (or loaded): it changes nothing now */
        return 0;
    }
    uint64_t t[DL_TIME_MAX_ROOT_DIM] = {c->tx}, next[DL_TIME_MAX_ROOT_DIM] = {c->tx + 1};
    int rc = 0;
    if (l->dims > 1) {
        /* The commit's full time vector; the inputs advance to its frontier vector. A
         * commit without vectors (a dimension-less store) leaves the other coordinates 0. */
        for (size_t k = 1; k < l->dims; k++) {
            t[k] = c->time && k < c->n_time ? c->time[k] : 0;
            /* without a frontier vector (dl_db_tx_range), the dimensions stay where they are */
            next[k] = c->frontier && k < c->n_time ? c->frontier[k] : l->dim_frontier[k];
            if (next[k] < l->dim_frontier[k] || t[k] < l->dim_frontier[k])
                return dl_error_set(err, DL_ETIME, "dl_live_apply: time behind the frontier");
        }
        next[0] = c->tx + 1;
    }
    for (size_t i = 0; i < c->n_changes && !rc; i++) {
        const dl_change_t *ch = &c->changes[i];
        for (size_t k = 0; k < l->n_attrs && !rc; k++)
            if (l->attrs[k].id == ch->a)
                rc = apply_change(l, &l->attrs[k], ch, c->tx, t, err);
    }
    if (!rc)
        rc = advance_and_run(l, next, err);
    if (!rc && l->dims > 1)
        memcpy(l->dim_frontier, next, l->dims * sizeof *next);
    if (rc) {
        l->failed = rc;
        return rc;
    }
    l->last_tx = c->tx;
    return 0;
}

DL_API size_t dl_live_changes(const dl_live_t *l, const dl_value_t **rows, const int64_t **diffs) {
    if (rows)
        *rows = l->ch_rows;
    if (diffs)
        *diffs = l->ch_diffs;
    return l->n_ch;
}

static int row_order(const void *a, const void *b, void *ctx) {
    return dl_row_cmp(a, b, *(const size_t *)ctx);
}

DL_API int dl_live_status(const dl_live_t *l) { return l ? l->failed : DL_EINVAL; }

DL_API void dl_live_drop_result(dl_live_t *l) {
    if (!l || l->no_result)
        return;
    l->no_result = true;
    dl_free(l->rows);
    dl_free(l->counts);
    dl_free(l->slots);
    l->rows = NULL;
    l->counts = NULL;
    l->slots = NULL;
    l->n_rows = l->cap_rows = l->n_slots = 0;
}

DL_API int dl_live_result(const dl_live_t *l, dl_query_result_t **out, dl_error_t *err) {
    *out = NULL;
    if (l->no_result)
        return dl_error_set(err, DL_ESTATE,
                            "this live query does not keep its result (dl_live_drop_result)");
    if (l->engine && l->failed)
        return dl_error_set(err, l->failed, "this live query failed (%s)", dl_err_name(l->failed));
    const dl_query_t *q = l->q;
    size_t n = 0;
    for (size_t i = 0; i < l->n_rows; i++) {
        if (l->counts[i] == 0)
            continue;
        if (l->counts[i] != 1)
            return dl_error_set(err, DL_EINTERNAL,
                                "compiled result has a row with multiplicity %lld",
                                (long long)l->counts[i]);
        n++;
    }
    size_t a = DL_MAX(l->arity, 1);
    dl_value_t *rows = dl_malloc(DL_MAX(n, 1) * a * sizeof *rows);
    dl_query_result_t *r = dl_calloc(1, sizeof *r);
    if (r)
        r->cells = dl_calloc(DL_MAX(n * l->arity, 1), sizeof(dl__cell_t));
    if (!rows || !r || !r->cells) {
        dl_free(rows);
        dl_query_result_free(r);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < l->n_rows; i++)
        if (l->counts[i] == 1)
            memcpy(rows + k++ * l->arity, l->rows + i * l->arity, l->arity * sizeof *rows);
    size_t arity = l->arity;
    qsort_r(rows, n, arity * sizeof *rows, row_order, &arity);
    r->kind = q->find_kind;
    r->keys_kind = q->keys_kind;
    r->n_cols = l->arity;
    r->n_rows = n;
    r->n_alloc_rows = n;
    for (size_t i = 0; i < n * l->arity; i++)
        r->cells[i].v = rows[i];
    dl_free(rows);
    /* Collection aggregates: the EDN text back into collection cells. */
    for (size_t i = 0; l->coll_cols && i < n * l->arity; i++) {
        size_t col = i % l->arity;
        if (col >= 64 || !((l->coll_cols >> col) & 1) || r->cells[i].v.type != DL_T_STRING)
            continue;
        size_t len;
        const char *text = dl_value_str(r->cells[i].v, &len);
        dl_arena_t ar;
        dl__arena_init(&ar, 256);
        dl_edn_t *f = NULL;
        int rc = dl__edn_read_one(text, len, &ar, &f, err);
        dl__cell_t *c = &r->cells[i];
        if (!rc && f->kind != DL_EDN_SET && f->kind != DL_EDN_VECTOR)
            rc = dl_error_set(err, DL_EINTERNAL, "collection aggregate text");
        if (!rc) {
            c->items = dl_malloc((f->n ? f->n : 1) * sizeof *c->items);
            if (!c->items)
                rc = dl_error_set(err, DL_ENOMEM, "out of memory");
        }
        for (size_t j = 0; !rc && j < f->n; j++) {
            if (f->items[j]->kind != DL_EDN_VALUE)
                rc = dl_error_set(err, DL_EINTERNAL, "collection aggregate item");
            else
                c->items[j] = f->items[j]->value;
        }
        if (!rc) {
            c->is_coll = true;
            c->is_set = f->kind == DL_EDN_SET;
            c->n = f->n;
            c->v = dl_value_nil();
        }
        dl__arena_fini(&ar);
        if (rc) {
            dl_query_result_free(r);
            return rc;
        }
    }
    if ((q->find_kind == DL_FIND_TUPLE || q->find_kind == DL_FIND_SCALAR) && r->n_rows > 1)
        r->n_rows = 1;
    if (q->keys_kind != DL_KEYS_NONE) {
        r->col_names = dl_calloc(l->arity, sizeof(char *));
        for (size_t i = 0; r->col_names && i < l->arity; i++)
            r->col_names[i] = dl_strdup(q->keys[i]->bytes);
        bool ok = r->col_names != NULL;
        for (size_t i = 0; ok && i < l->arity; i++)
            ok = r->col_names[i] != NULL;
        if (!ok) {
            dl_query_result_free(r);
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        }
    }
    *out = r;
    return 0;
}

DL_API char *dl_live_explain(const dl_live_t *l) {
    if (!l)
        return NULL;
    dl_buf_t b;
    dl__buf_init(&b);
    for (size_t i = 0; i < l->n_lines; i++) {
        const dl__live_line_t *ln = &l->lines[i];
        for (int d = 0; d < ln->depth; d++)
            dl__buf_puts(&b, "  ");
        dl__buf_puts(&b, ln->text);
        if (ln->counted)
            dl__buf_printf(&b, "  [actual %lld]", (long long)ln->actual);
        dl__buf_putc(&b, '\n');
    }
    if (b.oom) {
        dl__buf_fini(&b);
        return NULL;
    }
    return b.data ? dl__buf_take(&b) : dl_strdup("");
}

/* EXPLAIN of the live plan, or (oneshot) of the plan dl_query_run_sources runs. */
int dl__query_explain_sources(const dl_query_t *q, const dl_live_source_t *srcs, size_t n_srcs,
                              const char *args, size_t args_len, bool analyze, bool oneshot,
                              char **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!out)
        return dl_error_set(err, DL_EINVAL, "dl_query_explain: NULL argument");
    dl_live_t *l = NULL;
    int rc = live_new(q, srcs, n_srcs, args, args_len, analyze, 1, oneshot, &l, err);
    if (!rc) {
        *out = dl_live_explain(l);
        if (!*out)
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    dl_live_free(l);
    return rc;
}

DL_API int dl_query_explain(const dl_query_t *q, const struct dl_db *db, const char *args,
                            size_t args_len, bool analyze, char **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!out)
        return dl_error_set(err, DL_EINVAL, "dl_query_explain: NULL argument");
    dl_live_t *l = NULL;
    dl_live_source_t src = {"$", db, DL_LIVE_CURRENT};
    int rc = live_new(q, &src, db ? 1 : 0, args, args_len, analyze, 1, false, &l, err);
    if (!rc) {
        *out = dl_live_explain(l);
        if (!*out)
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    dl_live_free(l);
    return rc;
}

DL_API int dl_query_explain_oneshot(const dl_query_t *q, const struct dl_db *db, const char *args,
                                    size_t args_len, bool analyze, char **out, dl_error_t *err) {
    dl_live_source_t src = {"$", db, DL_LIVE_CURRENT};
    return dl__query_explain_sources(q, &src, db ? 1 : 0, args, args_len, analyze, true, out, err);
}

DL_API int dl_query_run(const dl_query_t *q, const struct dl_db *db, const char *args,
                        size_t args_len, dl_query_result_t **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    dl_live_source_t src = {"$", db, DL_LIVE_CURRENT};
    return dl_query_run_sources(q, &src, db ? 1 : 0, args, args_len, out, err);
}

/* ---- the engine: one graph, shared base arrangements ---------------------------------------- */

int dl_engine_new_dims(const struct dl_db *db, size_t n_dims, dl_engine_t **out, dl_error_t *err) {
    if (out)
        *out = NULL;
    if (!db || !out)
        return dl_error_set(err, DL_EINVAL, "dl_engine_new: NULL argument");
    if (n_dims < 1 || n_dims > DL_TIME_MAX_ROOT_DIM)
        return dl_error_set(err, DL_EINVAL, "dl_engine_new: %zu time coordinates (1..%d)", n_dims,
                            (int)DL_TIME_MAX_ROOT_DIM);
    dl_engine_t *e = dl_calloc(1, sizeof *e);
    if (!e)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    e->g = dl_graph_new(n_dims, err);
    if (!e->g) {
        dl_free(e);
        return err && err->code ? err->code : DL_ENOMEM;
    }
    e->dims = n_dims;
    e->last_tx = dl_db_basis_tx(db);
    if (n_dims > 1)
        dl_db_frontier(db, e->frontier, n_dims);
    e->frontier[0] = e->last_tx + 1;
    *out = e;
    return 0;
}

DL_API int dl_engine_new(const struct dl_db *db, dl_engine_t **out, dl_error_t *err) {
    return dl_engine_new_dims(db, 1, out, err);
}

size_t dl_engine_dims(const dl_engine_t *e) { return e ? e->dims : 0; }

static void eattr_free(dl__eattr_t *a) {
    for (size_t i = 0; i < a->n_arrs; i++)
        dl_trace_free(a->traces[i]);
    txmap_fini(&a->txmap);
    dl_free(a);
}

DL_API void dl_engine_free(dl_engine_t *e) {
    if (!e)
        return;
    for (size_t i = 0; i < e->n_lives; i++)
        e->lives[i]->engine = NULL; /* misuse: freed before its queries; they become inert */
    for (size_t i = 0; i < e->n_attrs; i++)
        eattr_free(e->attrs[i]);
    dl_free(e->attrs);
    dl_free(e->lives);
    dl_graph_free(e->g);
    dl_free(e);
}

DL_API void dl_engine_keep_base(dl_engine_t *e, bool keep) {
    if (e)
        e->keep_base = keep;
}

DL_API uint64_t dl_engine_tx(const dl_engine_t *e) { return e ? e->last_tx : 0; }

DL_API void dl_engine_stats(const dl_engine_t *e, struct dl_graph_stats *out) {
    memset(out, 0, sizeof *out);
    if (e)
        dl_graph_stats(e->g, out);
}

/* Drops base attributes without readers; then the graph's unreachable operators go. A
 * failed engine is left alone (dl_engine_free frees everything). */
static int engine_trim(dl_engine_t *e, bool all_unused, dl_error_t *err) {
    if (e->failed)
        return dl_error_set(err, e->failed, "the engine failed earlier (%s)",
                            dl_err_name(e->failed));
    size_t w = 0;
    int rc = 0;
    for (size_t i = 0; i < e->n_attrs; i++) {
        dl__eattr_t *a = e->attrs[i];
        if (a->refs || (!all_unused && e->keep_base)) {
            e->attrs[w++] = a;
            continue;
        }
        int x = dl_input_close(a->in, err);
        rc = rc ? rc : x;
        eattr_free(a);
    }
    e->n_attrs = w;
    if (!e->n_attrs) {
        dl_free(e->attrs);
        e->attrs = NULL;
        e->cap_attrs = 0;
    }
    if (!e->n_lives) {
        dl_free(e->lives);
        e->lives = NULL;
        e->cap_lives = 0;
    }
    int x = dl_graph_collect(e->g, NULL, err);
    return rc ? rc : x;
}

DL_API int dl_engine_trim(dl_engine_t *e, dl_error_t *err) {
    if (!e)
        return dl_error_set(err, DL_EINVAL, "dl_engine_trim: NULL engine");
    return engine_trim(e, true, err);
}

/* Lets trace t compact system time up to tx: its frontier [tx, 0 ...]. The dimension
 * coordinates are never compacted: a query added later reads the base at every point
 * [T, u] with T >= tx, for each user coordinate u (its per-u results; docs/datalog.md
 * "Multi-dimensional engines"). */
static int trace_at(dl_trace_t *t, uint64_t tx, dl_error_t *err) {
    uint64_t t1[DL_TIME_MAX_ROOT_DIM] = {tx}; /* the dimension coordinates stay 0 */
    return dl_trace_advance_to(t, t1, err);
}

/* A new base input of a 1-D engine: db's current datoms of a->id, at the engine's
 * transaction. */
static int eattr_load(const dl_engine_t *e, dl__eattr_t *a, const dl_db_t *db, dl_error_t *err) {
    uint64_t t[1] = {e->last_tx};
    dl_datom_t prefix;
    memset(&prefix, 0, sizeof prefix);
    prefix.a = a->id;
    dl_iter_t *it = NULL;
    int rc = dl_db_datoms(db, DL_INDEX_AEVT, &prefix, 1, NULL, &it, err);
    dl_datom_t d;
    while (!rc && dl_iter_next(it, &d)) {
        if (!d.added)
            continue;
        dl_value_t row[4] = {dl_value_ref(d.e), d.v, dl_value_int(d.tx), dl_value_bool(true)};
        rc = dl_input_update(a->in, row, a->wide ? 4 : 2, t, 1, err);
        if (!rc && a->wide && txmap_put(&a->txmap, row, d.tx))
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    dl_iter_free(it);
    return rc;
}

/* A new base input of a multi-dimensional engine (narrow): every assertion and
 * retraction of a->id in db's history at its transaction's time vector, as
 * load_snapshot_dims loads a standalone query's. */
static int eattr_load_dims(const dl_engine_t *e, dl__eattr_t *a, const dl_db_t *db,
                           dl_error_t *err) {
    dl_db_t *h = dl_db_history(db);
    if (!h)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    int rc = load_attr_history(db, h, a->id, e->dims, a->in, err);
    dl_db_unref(h);
    return rc;
}

dl_coll_t *dl__engine_attr(dl_live_t *L, int64_t id, const char *ident, bool wide,
                           dl_error_t *err) {
    dl_engine_t *e = L->engine;
    if (wide && e->dims > 1) {
        dl_error_set(err, DL_EUNSUPPORTED,
                     "multi-dimensional live queries do not bind transactions");
        return NULL;
    }
    dl__eattr_t *a = NULL;
    for (size_t i = 0; i < e->n_attrs && !a; i++)
        if (e->attrs[i]->id == id && e->attrs[i]->wide == wide)
            a = e->attrs[i];
    if (L->n_attrs == L->cap_attrs) {
        size_t cap = L->cap_attrs ? 2 * L->cap_attrs : 8;
        void *p = dl_realloc(L->attrs, cap * sizeof *L->attrs);
        if (!p) {
            dl_error_set(err, DL_ENOMEM, "out of memory");
            return NULL;
        }
        L->attrs = p;
        L->cap_attrs = cap;
    }
    if (!a) {
        /* First use: an input loaded with the current datoms at the engine's transaction
         * (with dimensions: the history at its time vectors), arranged by entity. */
        if (e->n_attrs == e->cap_attrs) {
            size_t cap = e->cap_attrs ? 2 * e->cap_attrs : 16;
            void *p = dl_realloc(e->attrs, cap * sizeof *e->attrs);
            if (!p) {
                dl_error_set(err, DL_ENOMEM, "out of memory");
                return NULL;
            }
            e->attrs = p;
            e->cap_attrs = cap;
        }
        a = dl_calloc(1, sizeof *a);
        if (!a) {
            dl_error_set(err, DL_ENOMEM, "out of memory");
            return NULL;
        }
        a->id = id;
        a->ident = ident;
        a->wide = wide;
        size_t arity = wide ? 4 : 2;
        static const uint32_t K0[1] = {0}, VW[3] = {1, 2, 3};
        int rc = 0;
        a->in = dl_input_new(dl_graph_root(e->g), arity, err);
        a->arr_e = a->in ? dl_arrange(dl_input_coll(a->in), K0, 1, VW, arity - 1, err) : NULL;
        a->traces[0] = a->arr_e ? dl_trace_new(a->arr_e, err) : NULL;
        if (!a->traces[0]) {
            rc = err && err->code ? err->code : DL_ENOMEM;
        } else {
            a->arrs[0] = a->arr_e;
            a->n_arrs = 1;
            a->coll = dl_arr_coll(a->arr_e);
            e->attrs[e->n_attrs++] = a; /* from here on, trim cleans up */
        }
        if (!rc)
            rc = e->dims > 1 ? eattr_load_dims(e, a, L->edb, err) : eattr_load(e, a, L->edb, err);
        if (!rc)
            rc = dl_input_advance_to(a->in, e->frontier, err);
        if (!rc)
            rc = trace_at(a->traces[0], e->last_tx, err);
        if (rc) {
            if (!a->coll) { /* never registered */
                if (a->traces[0])
                    dl_trace_free(a->traces[0]);
                else if (a->in && dl_input_close(a->in, NULL))
                    a->in = NULL; /* cannot fail on an open input */
                dl_free(a);
            }
            return NULL;
        }
    }
    dl__live_attr_t *la = &L->attrs[L->n_attrs++];
    memset(la, 0, sizeof *la);
    la->id = id;
    la->ident = ident;
    la->src = 0;
    la->wide = wide;
    la->coll = a->coll;
    la->ea = a;
    a->refs++;
    return a->coll;
}

int dl__engine_note_arr(dl_live_t *L, dl_coll_t *src, dl_arr_t *arr, dl_error_t *err) {
    dl_engine_t *e = L->engine;
    for (size_t i = 0; i < e->n_attrs; i++) {
        dl__eattr_t *a = e->attrs[i];
        if (a->coll != src)
            continue;
        for (size_t k = 0; k < a->n_arrs; k++)
            if (a->arrs[k] == arr)
                return 0;
        if (a->n_arrs == DL_ARRAY_LEN(a->arrs))
            return 0; /* unusual layouts stay private to the query */
        dl_trace_t *t = dl_trace_new(arr, err);
        if (!t)
            return err && err->code ? err->code : DL_ENOMEM;
        int rc = trace_at(t, e->last_tx, err);
        if (rc) {
            dl_trace_free(t);
            return rc;
        }
        a->arrs[a->n_arrs] = arr;
        a->traces[a->n_arrs++] = t;
        return 0;
    }
    return 0;
}

bool dl__engine_value_scan(dl_live_t *L, dl_coll_t *src) {
    dl_engine_t *e = L->engine;
    /* Not with dimensions: a datom may count -1 at some points there, which the scan's
     * distinct maps to the store's view and the by-value join would not. */
    if (e->dims > 1)
        return false;
    for (size_t i = 0; i < e->n_attrs; i++)
        if (e->attrs[i]->coll == src)
            return e->attrs[i]->value_scans++ > 0;
    return false;
}

void dl__engine_release(dl_live_t *L) {
    dl_engine_t *e = L->engine;
    if (L->cap)
        dl_capture_release(L->cap);
    L->cap = NULL;
    for (size_t i = 0; i < L->n_attrs; i++)
        if (L->attrs[i].ea)
            L->attrs[i].ea->refs--;
    for (size_t i = 0; i < e->n_lives; i++)
        if (e->lives[i] == L) {
            e->lives[i] = e->lives[--e->n_lives];
            break;
        }
    /* Constant inputs were closed when the query started (dl_engine_live_new closes them
     * on its failure paths too), so they go with the rest. Collection fails only between the steps
     * of a run (never here) or on out of memory (the operators then stay until the next release or
     * trim collects them). A failed engine keeps them until dl_engine_free. */
    if (engine_trim(e, false, NULL))
        return;
}

DL_API int dl_engine_apply(dl_engine_t *e, const struct dl_commit *c, dl_error_t *err) {
    dl_error_t local;
    dl_error_clear(&local);
    if (!err)
        err = &local;
    if (!e || !c)
        return dl_error_set(err, DL_EINVAL, "dl_engine_apply: NULL argument");
    if (e->failed)
        return dl_error_set(err, e->failed, "the engine failed earlier (%s)",
                            dl_err_name(e->failed));
    if (c->tx <= e->last_tx)
        return 0;
    uint64_t t[DL_TIME_MAX_ROOT_DIM] = {c->tx}, nx[DL_TIME_MAX_ROOT_DIM] = {c->tx + 1};
    int rc = 0;
    /* Dimensions: the commit's time vector, the inputs advance to its frontier vector (as
     * dl_live_apply does for a standalone query). */
    for (size_t k = 1; k < e->dims && !rc; k++) {
        t[k] = c->time && k < c->n_time ? c->time[k] : 0;
        nx[k] = c->frontier && k < c->n_time ? c->frontier[k] : e->frontier[k];
        if (nx[k] < e->frontier[k] || t[k] < e->frontier[k])
            rc = dl_error_set(err, DL_ETIME, "dl_engine_apply: time behind the frontier");
    }
    for (size_t i = 0; i < c->n_changes && !rc; i++) {
        const dl_change_t *ch = &c->changes[i];
        for (size_t k = 0; k < e->n_attrs && !rc; k++) {
            dl__eattr_t *a = e->attrs[k];
            if (a->id != ch->a)
                continue;
            dl_value_t row[4] = {dl_value_ref(ch->e), ch->v, dl_value_int((int64_t)c->tx),
                                 dl_value_bool(true)};
            if (!a->wide) {
                rc = dl_input_update(a->in, row, 2, t, ch->diff, err);
            } else if (ch->diff > 0) {
                if (txmap_put(&a->txmap, row, (int64_t)c->tx))
                    rc = dl_error_set(err, DL_ENOMEM, "out of memory");
                else
                    rc = dl_input_update(a->in, row, 4, t, 1, err);
            } else {
                int64_t asserted;
                if (!txmap_take(&a->txmap, row, &asserted)) {
                    rc = dl_error_set(err, DL_EINTERNAL, "retraction of a datom never seen");
                } else {
                    row[2] = dl_value_int(asserted);
                    rc = dl_input_update(a->in, row, 4, t, -1, err);
                }
            }
        }
    }
    for (size_t k = 0; k < e->n_attrs && !rc; k++) {
        dl__eattr_t *a = e->attrs[k];
        rc = dl_input_advance_to(a->in, nx, err);
        for (size_t i = 0; i < a->n_arrs && !rc; i++)
            rc = trace_at(a->traces[i], c->tx, err);
    }
    for (size_t i = 0; i < e->n_lives; i++)
        e->lives[i]->n_ch = 0;
    if (!rc)
        rc = dl_graph_run(e->g, err);
    if (rc) {
        e->failed = rc;
        for (size_t i = 0; i < e->n_lives; i++)
            if (!e->lives[i]->failed)
                e->lives[i]->failed = rc;
        return rc;
    }
    e->last_tx = c->tx;
    memcpy(e->frontier, nx, e->dims * sizeof *nx);
    for (size_t i = 0; i < e->n_lives; i++)
        e->lives[i]->last_tx = c->tx;
    return 0;
}

/* dl_engine_live_new; oneshot: the query is run once and read (dl_engine_query), so its
 * patterns may read db's snapshot directly instead of the engine's base inputs. */
static int engine_live_new(dl_engine_t *e, const dl_query_t *q, const struct dl_db *db,
                           const char *args, size_t args_len, bool oneshot, dl_live_t **out,
                           dl_error_t *err) {
    dl_error_t local;
    dl_error_clear(&local);
    if (!err)
        err = &local;
    if (out)
        *out = NULL;
    if (!e || !q || !db || !out)
        return dl_error_set(err, DL_EINVAL, "dl_engine_live_new: NULL argument");
    if (e->failed)
        return dl_error_set(err, e->failed, "the engine failed earlier (%s)",
                            dl_err_name(e->failed));
    if (dl_db_basis_tx(db) != e->last_tx)
        return dl_error_set(err, DL_ESTATE,
                            "the database is at transaction %llu, the engine at %llu",
                            (unsigned long long)dl_db_basis_tx(db), (unsigned long long)e->last_tx);
    if (q->n_srcs != 1)
        return dl_error_set(err, DL_EUNSUPPORTED,
                            "engine queries read one current source ($); use dl_live_new_sources");
    if (e->n_lives == e->cap_lives) {
        size_t cap = e->cap_lives ? 2 * e->cap_lives : 16;
        void *p = dl_realloc(e->lives, cap * sizeof *e->lives);
        if (!p)
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        e->lives = p;
        e->cap_lives = cap;
    }
    dl_live_t *L = dl_calloc(1, sizeof *L);
    if (L) {
        L->src_kind = dl_malloc(sizeof *L->src_kind);
        L->dims = e->dims;
    }
    if (!L || !L->src_kind) {
        dl_free(L);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    L->src_kind[0] = DL_LIVE_CURRENT;
    L->q = q;
    L->arity = q->n_find;
    L->engine = e;
    L->args_len = args ? args_len : 0;
    L->args_text = dl_malloc(L->args_len + 1);
    if (!L->args_text) {
        dl_free(L->src_kind);
        dl_free(L);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    if (L->args_len)
        memcpy(L->args_text, args, L->args_len);
    L->args_text[L->args_len] = 0;
    L->g = e->g;
    L->edb = db;
    dl__arena_init(&L->arena, 4096);
    e->lives[e->n_lives++] = L;
    const dl_db_t *snap[1] = {db};
    if (oneshot && e->dims == 1) {
        L->snap = snap;
        L->snap_tx = e->last_tx;
    }
    int rc = dl__compile_query(L, q, db, err);
    L->snap = NULL;
    if (!rc) {
        L->cap = dl_capture_new(L->out, on_diff, L, err);
        if (!L->cap) {
            /* The dataflow may leave a half-attached capture node behind (its input's
             * consumer list could not grow), which a later dl_graph_collect cannot walk:
             * the engine is failed (no more collection; dl_engine_free frees it all). */
            rc = err && err->code ? err->code : DL_ENOMEM;
            e->failed = rc;
            for (size_t i = 0; i < e->n_lives; i++)
                if (!e->lives[i]->failed)
                    e->lives[i]->failed = rc;
        }
    }
    if (!rc)
        rc = load_args(L, args, args ? args_len : 0, err);
    for (size_t i = 0; i < L->n_consts && !rc; i++)
        rc = dl_input_close(L->consts[i], err);
    /* Operators this query's compilation left unread (a fused join's original, compile.c
     * project_fx; an unused unit relation) go before the run. */
    if (!rc) {
        rc = dl_graph_collect(e->g, NULL, err);
        L->n_consts = 0; /* closed, and those nothing read are gone */
    }
    L->edb = NULL;
    if (!rc) {
        rc = dl_graph_run(e->g, err);
        if (rc) {
            e->failed = rc; /* the shared graph is in an unspecified state */
            for (size_t i = 0; i < e->n_lives; i++)
                if (!e->lives[i]->failed)
                    e->lives[i]->failed = rc;
        }
    }
    if (!rc && L->failed)
        rc = dl_error_set(err, L->failed, "the query failed (%s)", dl_err_name(L->failed));
    if (rc) {
        for (size_t i = 0; i < L->n_consts; i++)
            if (dl_input_close(L->consts[i], NULL))
                continue; /* already closed */
        dl_live_free(L);
        return rc;
    }
    L->last_tx = e->last_tx;
    *out = L;
    return 0;
}

DL_API int dl_engine_live_new(dl_engine_t *e, const dl_query_t *q, const struct dl_db *db,
                              const char *args, size_t args_len, dl_live_t **out, dl_error_t *err) {
    return engine_live_new(e, q, db, args, args_len, false, out, err);
}

static bool same_text(const char *a, size_t na, const char *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na));
}

/* A live query of e that computes what (q, args) asks, is healthy and current: its
 * accumulated result is the one-shot's answer at the engine's transaction. The same
 * query is the same query, rules and arguments text, byte for byte (a cheap test: this
 * runs for every one-shot of an engine that has live queries). */
static dl_live_t *engine_peek(dl_engine_t *e, const dl_query_t *q, const char *args,
                              size_t args_len) {
    if (!args)
        args_len = 0;
    for (size_t i = 0; i < e->n_lives; i++) {
        dl_live_t *L = e->lives[i];
        if (L->failed || !L->cap || L->no_result || L->last_tx != e->last_tx)
            continue;
        const dl_query_t *lq = L->q;
        if (lq == q || (same_text(lq->text, lq->text_len, q->text, q->text_len) &&
                        same_text(lq->rules_text, lq->rules_text ? lq->rules_len : 0, q->rules_text,
                                  q->rules_text ? q->rules_len : 0)))
            if (same_text(L->args_text, L->args_len, args, args_len))
                return L;
    }
    return NULL;
}

DL_API int dl_engine_query(dl_engine_t *e, const dl_query_t *q, const struct dl_db *db,
                           const char *args, size_t args_len, dl_query_result_t **out,
                           dl_error_t *err) {
    if (out)
        *out = NULL;
    /* A live query of the engine already maintains this result (the same query text,
     * rules and arguments, at the same transaction): read it, as a peek of an indexed
     * view. Otherwise the query is added, run, read and released. */
    if (e && q && db && out && !e->failed && dl_db_basis_tx(db) == e->last_tx) {
        dl_live_t *m = engine_peek(e, q, args, args_len);
        if (m)
            return dl_live_result(m, out, err);
    }
    dl_live_t *l = NULL;
    dl_error_t local;
    dl_error_clear(&local);
    int rc = engine_live_new(e, q, db, args, args_len, true, &l, err ? err : &local);
    if (!rc)
        rc = dl_live_result(l, out, err);
    dl_live_free(l);
    return rc;
}
