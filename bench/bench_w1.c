/*
 * bench_w1.c: the shared W1 workload (../shared/bench/README.md: live reachability from
 * node 0 under rounds of edge insertions and deletions), run through one of deltalog's
 * layers. Each "via" is one struct of function pointers below (load, round, read the
 * view), so the data loading, timing, checksums and output stay shared:
 * - `--via dataflow`: the reachability dataflow built by hand (iterate with join +
 *   distinct) on the dataflow API (include/deltalog/dataflow.h).
 * - `--via datalog`: nodes as entities of an in-memory store (:node/id long unique
 *   identity, :node/edge ref many), the W1 query and its recursive rule exactly as in the
 *   workload's README as a live query (dl_live_*, include/deltalog/datalog.h) fed by a
 *   store listener; a round is one transaction (adds then retracts; two transactions when
 *   an edge is added and deleted in the same round, which one transaction cannot hold).
 *   Latency: from submitting the transaction to its return, by which the listener has
 *   applied it to the live query (in-memory store: listeners run on the committing
 *   thread), and the view has taken the change.
 * - `--via server`: spawns `deltalog serve --memory --listen 127.0.0.1:0 --quiet
 *   --port-file F` (the binary next to this one, or --server PATH) and speaks protocol v1
 *   over TCP (docs/protocol.md): the schema, nodes and edges in batched transactions,
 *   then `subscribe` to the W1 query with its rules; each round is one `transact` (two
 *   when an edge is added and deleted in it) followed by a `stats` request. The protocol
 *   sends nothing for a transaction that does not change the view, and gives no barrier
 *   after which a diff can no longer come (subscription messages travel apart from
 *   replies: in practice every diff arrives after the `stats` reply). So each diff is
 *   attributed to its round by its t when it is read (during the next round's wait, or
 *   a `stats` round trip before each checkpoint), and a round's latency is from its send
 *   to its diff when one came, otherwise to its transaction's reply. The line reports
 *   both counts ("rounds_changed", "rounds_unchanged"), the changing rounds' latency
 *   alone ("changed_p50_us", ..) and "late_diffs" (diffs read after their round's
 *   `stats` reply). The view is a counted set kept client-side from the diffs, checked
 *   at the checkpoints; a diff still missing there makes the check fail, never pass.
 * Does not: compare vias with each other (each checks the generator's checksums).
 * Usage: bench_w1 --data DIR [--via dataflow|datalog|server] [--rounds R] [--server PATH]
 *                 [--verbose]
 * Output: {"bench":"w1","via":..,"params":{..},"init_ms":..,"p50_us":..,"p99_us":..,
 *          "peak_rss_mb":..,"checksum_ok":true|false} (+ via-specific fields)
 */
#include "bench/harness.h"
#include "bench/server_client.h"

#include "base/base.h"
#include <deltalog/alloc.h>
#include <deltalog/dataflow.h>
#include <deltalog/datalog.h>
#include <deltalog/store.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the workload's data --------------------------------------------------------------- */
typedef struct edges {
    int64_t *v; /* pairs */
    size_t n, cap;
} edges_t;

static void edges_push(edges_t *e, int64_t s, int64_t d) {
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 1024;
        e->v = realloc(e->v, e->cap * 2 * sizeof *e->v);
        if (!e->v)
            abort();
    }
    e->v[2 * e->n] = s;
    e->v[2 * e->n + 1] = d;
    e->n++;
}

typedef struct round {
    edges_t add, del;
} round_t;

typedef struct load {
    edges_t initial;
} load_t;

static int read_initial(json_t *line, void *ctx) {
    load_t *l = ctx;
    edges_push(&l->initial, json_integer_value(json_array_get(line, 0)),
               json_integer_value(json_array_get(line, 1)));
    return 0;
}

static void read_pairs(json_t *arr, edges_t *e) {
    size_t i;
    json_t *p;
    size_t n = json_array_size(arr);
    if (e->n + n > e->cap) {
        e->cap = e->n + n;
        e->v = realloc(e->v, e->cap * 2 * sizeof *e->v);
        if (!e->v)
            abort();
    }
    json_array_foreach(arr, i, p) {
        edges_push(e, json_integer_value(json_array_get(p, 0)),
                   json_integer_value(json_array_get(p, 1)));
    }
}

/* ---- the view: a counted set of node ids maintained from diffs -------------------------- */
/* Node ids of the workload are 0..nodes-1: those are counted in a dense array (4 bytes a
 * node, so the bench's own bookkeeping stays small beside the engine it measures); any
 * other id, which only a wrong engine would produce, goes to the hash table. */
typedef struct view {
    int64_t *keys;
    int64_t *counts;
    size_t cap; /* power of two */
    size_t n;
    int32_t *dense;
    size_t n_dense;
} view_t;

static int64_t workload_nodes;

static void view_init(view_t *v) {
    v->cap = 1024;
    v->n = 0;
    v->keys = calloc(v->cap, sizeof(int64_t));
    v->counts = calloc(v->cap, sizeof(int64_t));
    v->n_dense = workload_nodes > 0 ? (size_t)workload_nodes : 0;
    v->dense = calloc(v->n_dense + 1, sizeof(int32_t));
    if (!v->keys || !v->counts || !v->dense)
        abort();
}

static void view_free(view_t *v) {
    free(v->keys);
    free(v->counts);
    free(v->dense);
}

static void view_add(view_t *v, int64_t key, int64_t d);

static void view_grow(view_t *v) {
    view_t nv = {calloc(v->cap * 2, sizeof(int64_t)),
                 calloc(v->cap * 2, sizeof(int64_t)),
                 v->cap * 2,
                 0,
                 v->dense,
                 v->n_dense};
    for (size_t i = 0; i < v->cap; i++)
        if (v->counts[i])
            view_add(&nv, v->keys[i] - 1, v->counts[i]);
    free(v->keys);
    free(v->counts);
    *v = nv;
}

/* Keys are stored as key+1 (0 marks an empty slot); a slot whose count returns to 0 stays
 * as a tombstone key. */
static void view_add(view_t *v, int64_t key, int64_t d) {
    if (key >= 0 && (uint64_t)key < v->n_dense) {
        v->dense[key] += (int32_t)d;
        return;
    }
    if ((v->n + 1) * 2 > v->cap)
        view_grow(v);
    size_t m = v->cap - 1, s = (size_t)((uint64_t)key * 0x9E3779B97F4A7C15ull >> 20) & m;
    while (v->keys[s] != 0 && v->keys[s] != key + 1)
        s = (s + 1) & m;
    if (v->keys[s] == 0) {
        v->keys[s] = key + 1;
        v->n++;
    }
    v->counts[s] += d;
}

static bench_checksum_t view_checksum(const view_t *v, bool *ok_sets) {
    bench_checksum_t c = {0, 0, 0};
    *ok_sets = true;
    for (size_t i = 0; i < v->n_dense; i++) {
        if (v->dense[i] == 0)
            continue;
        if (v->dense[i] != 1)
            *ok_sets = false;
        bench_checksum_add(&c, (int64_t)i);
    }
    for (size_t i = 0; i < v->cap; i++) {
        if (v->counts[i] == 0)
            continue;
        if (v->counts[i] != 1)
            *ok_sets = false; /* a set must have multiplicities 1 */
        bench_checksum_add(&c, v->keys[i] - 1);
    }
    return c;
}

/* ---- via dataflow ---------------------------------------------------------------------- */
typedef struct df {
    dl_graph_t *g;
    dl_input_t *edges, *roots;
    uint64_t time;
    view_t view;
} df_t;

static int df_capture(void *ctx, const dl_diff_t *d) {
    df_t *df = ctx;
    for (size_t i = 0; i < d->n; i++)
        view_add(&df->view, d->rows[i].as.i, d->diffs[i]);
    return 0;
}

static int df_build(df_t *df, dl_error_t *err) {
    df->g = dl_graph_new(1, err);
    if (!df->g)
        return err->code;
    dl_scope_t *root = dl_graph_root(df->g);
    df->edges = dl_input_new(root, 2, err);
    df->roots = dl_input_new(root, 1, err);
    if (!df->edges || !df->roots)
        return err->code;
    static const uint32_t k0[1] = {0}, v1[1] = {1};
    /* edges arranged by source, outside the loop; the loop reads it as entered. */
    dl_arr_t *e_arr = dl_arrange(dl_input_coll(df->edges), k0, 1, v1, 1, err);
    dl_scope_t *s = dl_iterate_begin(root, err);
    if (!e_arr || !s)
        return err->code;
    dl_coll_t *roots = dl_enter(s, dl_input_coll(df->roots), err);
    dl_var_t *v = dl_var_new(s, roots, err);
    if (!v)
        return err->code;
    dl_arr_t *v_arr = dl_arrange(dl_var_coll(v), k0, 1, NULL, 0, err);
    dl_join_col_t jc[1] = {{DL_JOIN_RIGHT, 0}};
    dl_coll_t *step = dl_join(v_arr, e_arr, jc, 1, err);
    if (!step)
        return err->code;
    dl_coll_t *parts[2] = {roots, step};
    dl_coll_t *cat = dl_concat(parts, 2, err);
    dl_coll_t *body = cat ? dl_distinct(cat, err) : NULL;
    if (!body)
        return err->code;
    int rc = dl_var_set(v, body, err);
    if (rc)
        return rc;
    dl_coll_t *out = dl_leave(body, err);
    if (!out || !dl_capture_new(out, df_capture, df, err))
        return err->code;
    view_init(&df->view);
    return 0;
}

static int df_load(void *self, edges_t *initial, dl_error_t *err) {
    df_t *df = self;
    int rc = df_build(df, err);
    if (rc)
        return rc;
    uint64_t t[1] = {0};
    dl_value_t zero = dl_value_int(0);
    rc = dl_input_update(df->roots, &zero, 1, t, 1, err);
    for (size_t i = 0; i < initial->n && !rc; i++) {
        dl_value_t row[2] = {dl_value_int(initial->v[2 * i]), dl_value_int(initial->v[2 * i + 1])};
        rc = dl_input_update(df->edges, row, 2, t, 1, err);
    }
    free(initial->v); /* the input holds its own copy: do not count the bench's twice */
    initial->v = NULL;
    df->time = 1;
    t[0] = df->time;
    if (!rc)
        rc = dl_input_advance_to(df->edges, t, err);
    if (!rc)
        rc = dl_input_advance_to(df->roots, t, err);
    if (!rc)
        rc = dl_graph_run(df->g, err);
    return rc;
}

static int df_round(void *self, const round_t *r, dl_error_t *err) {
    df_t *df = self;
    uint64_t t[1] = {df->time};
    int rc = 0;
    for (size_t i = 0; i < r->add.n && !rc; i++) {
        dl_value_t row[2] = {dl_value_int(r->add.v[2 * i]), dl_value_int(r->add.v[2 * i + 1])};
        rc = dl_input_update(df->edges, row, 2, t, 1, err);
    }
    for (size_t i = 0; i < r->del.n && !rc; i++) {
        dl_value_t row[2] = {dl_value_int(r->del.v[2 * i]), dl_value_int(r->del.v[2 * i + 1])};
        rc = dl_input_update(df->edges, row, 2, t, -1, err);
    }
    df->time++;
    t[0] = df->time;
    if (!rc)
        rc = dl_input_advance_to(df->edges, t, err);
    if (!rc)
        rc = dl_input_advance_to(df->roots, t, err);
    if (!rc)
        rc = dl_graph_run(df->g, err);
    return rc;
}

static const view_t *df_view(void *self) { return &((df_t *)self)->view; }

static void df_stats(void *self) {
    dl_graph_stats_t st;
    dl_graph_stats(((df_t *)self)->g, &st);
    fprintf(stderr, "bench_w1: %zu arranged updates in %zu batches, %zu pending times\n",
            st.arranged_updates, st.arranged_batches, st.pending_times);
}

static void df_free(void *self) {
    df_t *df = self;
    dl_graph_free(df->g);
    view_free(&df->view);
}

/* ---- via datalog ----------------------------------------------------------------------- */
static const char W1_SCHEMA[] =
    "[{:db/ident :node/id :db/valueType :db.type/long :db/cardinality :db.cardinality/one"
    " :db/unique :db.unique/identity}"
    " {:db/ident :node/edge :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}]";
static const char W1_QUERY[] = "[:find ?id :in $ % :where (reach ?n) [?n :node/id ?id]]";
static const char W1_RULES[] = "[[(reach ?n) [?n :node/id 0]]"
                               " [(reach ?n) (reach ?m) [?m :node/edge ?n]]]";
enum { LOAD_BATCH = 5000 }; /* entities or edges per initial-load transaction */

/* Appends the EDN of edges e[from, to) as :db/add (add) or :db/retract items. */
static void edn_edges(dl_buf_t *b, const edges_t *e, size_t from, size_t to, bool add) {
    for (size_t i = from; i < to; i++)
        dl__buf_printf(b, "[%s [:node/id %lld] :node/edge [:node/id %lld]]",
                       add ? ":db/add" : ":db/retract", (long long)e->v[2 * i],
                       (long long)e->v[2 * i + 1]);
}

/* workload_nodes (above) is params.nodes of the workload (ids are 0..nodes-1), at least
 * one more than the largest id of the initial edges; every node entity exists before the
 * edges that name it (rounds name nodes by lookup ref). */
static int64_t max_node(const edges_t *e) {
    int64_t m = workload_nodes - 1;
    for (size_t i = 0; i < 2 * e->n; i++)
        if (e->v[i] > m)
            m = e->v[i];
    return m;
}

/* True when some edge is both added and deleted in the round (the store rejects that
 * in one transaction). */
static bool round_overlaps(const round_t *r) {
    for (size_t i = 0; i < r->add.n; i++)
        for (size_t j = 0; j < r->del.n; j++)
            if (r->add.v[2 * i] == r->del.v[2 * j] && r->add.v[2 * i + 1] == r->del.v[2 * j + 1])
                return true;
    return false;
}

typedef struct dlv {
    dl_store_t *st;
    dl_query_t *q;
    dl_live_t *l;
    int listener;
    int rc;          /* the first failure inside the listener */
    dl_error_t lerr; /* ...and its message */
    double live_ms;  /* dl_live_new alone (compile + load the query's attributes + run) */
    size_t txs;      /* round transactions */
    view_t view;
} dlv_t;

static void dlv_take_changes(dlv_t *d) {
    const dl_value_t *rows;
    const int64_t *diffs;
    size_t n = dl_live_changes(d->l, &rows, &diffs);
    for (size_t i = 0; i < n; i++)
        view_add(&d->view, rows[i].as.i, diffs[i]);
}

static void dlv_listener(void *ctx, const dl_commit_t *c) {
    dlv_t *d = ctx;
    if (d->rc)
        return;
    d->rc = dl_live_apply(d->l, c, &d->lerr);
    if (!d->rc)
        dlv_take_changes(d);
}

static int dlv_transact(dlv_t *d, const dl_buf_t *b, dl_error_t *err) {
    int rc = dl_store_transact_edn(d->st, b->data, b->len, NULL, err);
    if (!rc && d->rc) {
        *err = d->lerr;
        rc = d->rc;
    }
    return rc;
}

static int dlv_load(void *self, edges_t *initial, dl_error_t *err) {
    dlv_t *d = self;
    view_init(&d->view);
    int rc = dl_store_open_memory(&d->st, err);
    if (!rc)
        rc = dl_store_transact_edn(d->st, W1_SCHEMA, sizeof W1_SCHEMA - 1, NULL, err);
    int64_t nodes = max_node(initial) + 1;
    for (int64_t n0 = 0; n0 < nodes && !rc; n0 += LOAD_BATCH) {
        dl_buf_t b;
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        for (int64_t n = n0; n < nodes && n < n0 + LOAD_BATCH; n++)
            dl__buf_printf(&b, "{:node/id %lld}", (long long)n);
        dl__buf_putc(&b, ']');
        rc = dl_store_transact_edn(d->st, b.data, b.len, NULL, err);
        dl__buf_fini(&b);
    }
    for (size_t i0 = 0; i0 < initial->n && !rc; i0 += LOAD_BATCH) {
        dl_buf_t b;
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        edn_edges(&b, initial, i0, i0 + LOAD_BATCH < initial->n ? i0 + LOAD_BATCH : initial->n,
                  true);
        dl__buf_putc(&b, ']');
        rc = dl_store_transact_edn(d->st, b.data, b.len, NULL, err);
        dl__buf_fini(&b);
    }
    if (rc)
        return rc;
    uint64_t t0 = bench_now_ns();
    dl_db_t *db = dl_store_db(d->st);
    rc = dl_query_parse(W1_QUERY, sizeof W1_QUERY - 1, W1_RULES, sizeof W1_RULES - 1, db, &d->q,
                        err);
    if (!rc)
        rc = dl_live_new(d->q, db, NULL, 0, &d->l, err);
    dl_db_unref(db);
    if (rc)
        return rc;
    d->live_ms = (double)(bench_now_ns() - t0) / 1e6;
    dlv_take_changes(d); /* the initial result */
    return dl_store_listen(d->st, dlv_listener, d, &d->listener, err);
}

static int dlv_round(void *self, const round_t *r, dl_error_t *err) {
    dlv_t *d = self;
    bool split = round_overlaps(r);
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_putc(&b, '[');
    edn_edges(&b, &r->add, 0, r->add.n, true);
    if (split) {
        dl__buf_putc(&b, ']');
        int rc = dlv_transact(d, &b, err);
        d->txs++;
        dl__buf_fini(&b);
        if (rc)
            return rc;
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
    }
    edn_edges(&b, &r->del, 0, r->del.n, false);
    dl__buf_putc(&b, ']');
    int rc = dlv_transact(d, &b, err);
    d->txs++;
    dl__buf_fini(&b);
    return rc;
}

static const view_t *dlv_view(void *self) { return &((dlv_t *)self)->view; }

static void dlv_stats(void *self) {
    char *plan = dl_live_explain(((dlv_t *)self)->l);
    fprintf(stderr, "bench_w1: plan:\n%s\n", plan ? plan : "(none)");
    dl_free(plan);
}

static void dlv_extra(void *self, json_t *out) {
    dlv_t *d = self;
    json_object_set_new(out, "live_new_ms", json_real(d->live_ms));
    json_object_set_new(out, "round_txs", json_integer((json_int_t)d->txs));
}

static void dlv_free(void *self) {
    dlv_t *d = self;
    if (d->listener > 0)
        dl_store_unlisten(d->st, d->listener);
    dl_live_free(d->l);
    dl_query_free(d->q);
    dl_store_close(d->st);
    view_free(&d->view);
}

/* ---- via server ------------------------------------------------------------------------ */
typedef struct srv {
    const char *server_path; /* the deltalog binary (NULL: the one next to this program) */
    bench_srv_t c;           /* the process and the connection (server_client.c) */
    int64_t next_id;
    int64_t sub; /* the subscription's number */
    view_t view;
    struct srv_rec {                         /* per round: its transactions' t range and times */
        int64_t first_t, last_t;             /* -1 until the replies came */
        uint64_t send_ns, reply_ns, diff_ns; /* diff_ns 0: no diff seen */
        bool settled;                        /* its barrier's reply came */
    } * recs;
    size_t n_recs, cap_recs;
    int64_t acked_t; /* the latest t acknowledged */
    size_t late_diffs, round_txs;
    int64_t last_t; /* t of the last transaction sent and acknowledged */
    double server_rss_mb;
} srv_t;

/* Reads one line (without its newline) into a jansson object; NULL with err set when
 * the server hung up, said something that is not JSON, or was silent for 20 s. */
static json_t *srv_line(srv_t *s, dl_error_t *err) {
    size_t n;
    const char *line = bench_srv_line(&s->c, &n, 20000, err);
    if (!line)
        return NULL;
    json_error_t je;
    json_t *j = json_loadb(line, n, 0, &je);
    if (!j)
        dl_error_set(err, DL_EPARSE, "server sent a line that is not JSON: %s", je.text);
    return j;
}

static int srv_send(srv_t *s, const char *data, size_t len, dl_error_t *err) {
    return bench_srv_send(&s->c, data, len, err);
}

/* Sends {"op":"transact","id":ID,"tx":EDN}; returns the id. */
static int srv_transact(srv_t *s, const dl_buf_t *edn, int64_t *id, dl_error_t *err) {
    json_t *req = json_pack("{s:s,s:I,s:s%}", "op", "transact", "id", (json_int_t)s->next_id, "tx",
                            edn->data, edn->len);
    char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!line)
        return dl_error_set(err, DL_ENOMEM, "encoding a request");
    size_t n = strlen(line);
    line[n] = '\n'; /* the terminator becomes the newline; sent without it */
    int rc = srv_send(s, line, n + 1, err);
    free(line);
    *id = s->next_id++;
    return rc;
}

static int srv_send_stats(srv_t *s, int64_t *id, dl_error_t *err) {
    char line[64];
    int n = snprintf(line, sizeof line, "{\"op\":\"stats\",\"id\":%lld}\n", (long long)s->next_id);
    *id = s->next_id++;
    return srv_send(s, line, (size_t)n, err);
}

/* A reply's error as err; 0 for ok:true. */
static int srv_reply_ok(json_t *j, dl_error_t *err) {
    if (json_is_true(json_object_get(j, "ok")))
        return 0;
    json_t *e = json_object_get(j, "error");
    return dl_error_set(err, DL_EIO, "server error %s: %s",
                        json_string_value(json_object_get(e, "code")),
                        json_string_value(json_object_get(e, "message")));
}

/* A subscription message: adds its diff to the view; returns its t (-1: the end). */
static int64_t srv_take_diff(srv_t *s, json_t *j, dl_error_t *err) {
    if (json_object_get(j, "end")) {
        json_t *e = json_object_get(j, "error");
        dl_error_set(err, DL_EIO, "subscription ended: %s: %s",
                     json_string_value(json_object_get(e, "code")),
                     json_string_value(json_object_get(e, "message")));
        return -1;
    }
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(j, "diff"), i, d) {
        view_add(&s->view, json_integer_value(json_array_get(json_array_get(d, 0), 0)),
                 json_integer_value(json_array_get(d, 1)));
    }
    int64_t t = json_integer_value(json_object_get(j, "t"));
    /* Attribute the diff to its round: the one in flight when t is past every t
     * acknowledged so far (the diff may overtake the transaction's reply), otherwise the
     * round whose t range holds t. */
    struct srv_rec *rec = NULL;
    if (s->n_recs && t > s->acked_t)
        rec = &s->recs[s->n_recs - 1];
    for (size_t k = s->n_recs; !rec && k-- > 0;)
        if (s->recs[k].first_t <= t && t <= s->recs[k].last_t)
            rec = &s->recs[k];
    if (rec && !rec->diff_ns) {
        rec->diff_ns = bench_now_ns();
        if (rec->settled)
            s->late_diffs++; /* came after its round's barrier */
    }
    return t;
}

/* Reads lines until the reply with `id`: subscription messages on the way go to the
 * view and are attributed to their round (srv_take_diff). */
static json_t *srv_wait_reply(srv_t *s, int64_t id, dl_error_t *err) {
    for (;;) {
        json_t *j = srv_line(s, err);
        if (!j)
            return NULL;
        if (!json_object_get(j, "ok")) { /* a subscription message (replies have "ok") */
            int64_t t = srv_take_diff(s, j, err);
            json_decref(j);
            if (t < 0)
                return NULL;
            continue;
        }
        if (json_integer_value(json_object_get(j, "id")) == id)
            return j;
        json_decref(j);
        dl_error_set(err, DL_EIO, "reply out of order (waiting for id %lld)", (long long)id);
        return NULL;
    }
}

/* Sends the transaction edn and reads its reply (the initial load). */
static int srv_transact_wait(srv_t *s, const dl_buf_t *edn, dl_error_t *err) {
    int64_t id;
    int rc = srv_transact(s, edn, &id, err);
    json_t *j = rc ? NULL : srv_wait_reply(s, id, err);
    if (!j)
        return err->code ? err->code : DL_EIO;
    rc = srv_reply_ok(j, err);
    json_decref(j);
    return rc;
}

static int srv_load(void *self, edges_t *initial, dl_error_t *err) {
    srv_t *s = self;
    s->next_id = 1;
    view_init(&s->view);
    static const char *const args[] = {"--memory", NULL};
    int rc = bench_srv_start(&s->c, s->server_path, args, err);
    if (rc)
        return rc;
    dl_buf_t b;
    dl__buf_init(&b);
    dl__buf_puts(&b, W1_SCHEMA);
    rc = srv_transact_wait(s, &b, err);
    dl__buf_fini(&b);
    int64_t nodes = max_node(initial) + 1;
    for (int64_t n0 = 0; n0 < nodes && !rc; n0 += LOAD_BATCH) {
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        for (int64_t n = n0; n < nodes && n < n0 + LOAD_BATCH; n++)
            dl__buf_printf(&b, "{:node/id %lld}", (long long)n);
        dl__buf_putc(&b, ']');
        rc = srv_transact_wait(s, &b, err);
        dl__buf_fini(&b);
    }
    for (size_t i0 = 0; i0 < initial->n && !rc; i0 += LOAD_BATCH) {
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        edn_edges(&b, initial, i0, i0 + LOAD_BATCH < initial->n ? i0 + LOAD_BATCH : initial->n,
                  true);
        dl__buf_putc(&b, ']');
        rc = srv_transact_wait(s, &b, err);
        dl__buf_fini(&b);
    }
    if (rc)
        return rc;
    /* subscribe: the reply, then the snapshot as additions */
    json_t *req = json_pack("{s:s,s:I,s:s,s:s}", "op", "subscribe", "id", (json_int_t)s->next_id,
                            "q", W1_QUERY, "rules", W1_RULES);
    char *line = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!line)
        return dl_error_set(err, DL_ENOMEM, "encoding subscribe");
    size_t n = strlen(line);
    line[n] = '\n';
    rc = srv_send(s, line, n + 1, err);
    free(line);
    json_t *j = rc ? NULL : srv_wait_reply(s, s->next_id++, err);
    if (!j)
        return err->code ? err->code : DL_EIO;
    rc = srv_reply_ok(j, err);
    s->sub = json_integer_value(json_object_get(j, "sub"));
    json_decref(j);
    if (rc)
        return rc;
    j = srv_line(s, err);
    if (!j)
        return err->code;
    if (!json_is_true(json_object_get(j, "snapshot")) ||
        json_integer_value(json_object_get(j, "sub")) != s->sub) {
        json_decref(j);
        return dl_error_set(err, DL_EIO, "expected the subscription's snapshot");
    }
    s->last_t = srv_take_diff(s, j, err);
    json_decref(j);
    return s->last_t < 0 ? err->code : 0;
}

static int srv_round(void *self, const round_t *r, dl_error_t *err) {
    srv_t *s = self;
    if (s->n_recs == s->cap_recs) {
        s->cap_recs = s->cap_recs ? 2 * s->cap_recs : 1024;
        s->recs = realloc(s->recs, s->cap_recs * sizeof *s->recs);
        if (!s->recs)
            abort();
    }
    struct srv_rec *rec = &s->recs[s->n_recs++];
    *rec = (struct srv_rec){-1, -1, bench_now_ns(), 0, 0, false};
    bool split = round_overlaps(r);
    int64_t ids[2], n_ids = 0, barrier;
    dl_buf_t b;
    int rc = 0;
    for (int part = split ? 0 : 1; part < 2 && !rc; part++) {
        dl__buf_init(&b);
        dl__buf_putc(&b, '[');
        if (part == 0 || !split)
            edn_edges(&b, &r->add, 0, r->add.n, true);
        if (part == 1)
            edn_edges(&b, &r->del, 0, r->del.n, false);
        dl__buf_putc(&b, ']');
        rc = srv_transact(s, &b, &ids[n_ids++], err);
        dl__buf_fini(&b);
    }
    if (!rc)
        rc = srv_send_stats(s, &barrier, err);
    if (rc)
        return rc;
    s->round_txs += (size_t)n_ids;
    for (int64_t k = 0; k < n_ids; k++) {
        json_t *j = srv_wait_reply(s, ids[k], err);
        if (!j)
            return err->code ? err->code : DL_EIO;
        rc = srv_reply_ok(j, err);
        int64_t t = json_integer_value(json_object_get(j, "t"));
        json_decref(j);
        if (rc)
            return rc;
        rec = &s->recs[s->n_recs - 1];
        if (rec->first_t < 0)
            rec->first_t = t;
        rec->last_t = t;
        s->acked_t = t;
        rec->reply_ns = bench_now_ns();
    }
    json_t *j = srv_wait_reply(s, barrier, err);
    if (!j)
        return err->code ? err->code : DL_EIO;
    json_decref(j);
    s->recs[s->n_recs - 1].settled = true;
    return 0;
}

/* Before a checkpoint's comparison: one more engine round trip (a `stats`), so a diff
 * still on its way is very likely read (the protocol gives no way to know that a t
 * produced none; a diff later still makes the comparison fail, it is never hidden). */
static void srv_settle(void *self) {
    srv_t *s = self;
    dl_error_t err = {0};
    int64_t id;
    if (srv_send_stats(s, &id, &err) == 0)
        json_decref(srv_wait_reply(s, id, &err));
}

/* The rounds' latencies: to the diff of the round's t when one came, else to the
 * transaction's reply (the view did not change). */
static void srv_latencies(void *self, bench_samples_t *all) {
    srv_t *s = self;
    all->n = 0;
    for (size_t k = 0; k < s->n_recs; k++) {
        const struct srv_rec *rec = &s->recs[k];
        bench_samples_add(all, (rec->diff_ns ? rec->diff_ns : rec->reply_ns) - rec->send_ns);
    }
}

static const view_t *srv_view(void *self) { return &((srv_t *)self)->view; }

static void srv_stats(void *self) {
    srv_t *s = self;
    size_t changed = 0;
    for (size_t k = 0; k < s->n_recs; k++)
        changed += s->recs[k].diff_ns != 0;
    fprintf(stderr, "bench_w1: %zu rounds changed the view, %zu did not, %zu late diffs\n", changed,
            s->n_recs - changed, s->late_diffs);
}

static void srv_extra(void *self, json_t *out) {
    srv_t *s = self;
    if (s->c.pid > 0)
        s->server_rss_mb = bench_srv_peak_rss_mb(&s->c);
    json_object_set_new(out, "server_peak_rss_mb", json_real(s->server_rss_mb));
    json_object_set_new(out, "round_txs", json_integer((json_int_t)s->round_txs));
    bench_samples_t changed = {0};
    for (size_t k = 0; k < s->n_recs; k++)
        if (s->recs[k].diff_ns)
            bench_samples_add(&changed, s->recs[k].diff_ns - s->recs[k].send_ns);
    json_object_set_new(out, "rounds_changed", json_integer((json_int_t)changed.n));
    json_object_set_new(out, "rounds_unchanged", json_integer((json_int_t)(s->n_recs - changed.n)));
    json_object_set_new(out, "changed_p50_us", json_real(bench_samples_pct_us(&changed, 0.5)));
    json_object_set_new(out, "changed_p99_us", json_real(bench_samples_pct_us(&changed, 0.99)));
    bench_samples_free(&changed);
    json_object_set_new(out, "late_diffs", json_integer((json_int_t)s->late_diffs));
}

static void srv_free(void *self) {
    srv_t *s = self;
    bench_srv_stop(&s->c); /* closing unsubscribes */
    view_free(&s->view);
    free(s->recs);
}

/* ---- the driver ------------------------------------------------------------------------ */
typedef struct via {
    const char *name;
    int (*load)(void *self, edges_t *initial, dl_error_t *err);
    int (*round)(void *self, const round_t *r, dl_error_t *err);
    const view_t *(*view)(void *self);
    void (*stats)(void *self); /* --verbose: internal sizes on stderr */
    void (*free)(void *self);
    void (*extra)(void *self, json_t *out); /* via-specific output fields, or NULL */
    void (*settle)(void *self);             /* before a checkpoint's comparison, or NULL */
    /* Replaces the driver's per-round samples (send to round's return), or NULL */
    void (*latencies)(void *self, bench_samples_t *all);
} via_t;

static const via_t VIAS[] = {
    {"dataflow", df_load, df_round, df_view, df_stats, df_free, NULL, NULL, NULL},
    {"datalog", dlv_load, dlv_round, dlv_view, dlv_stats, dlv_free, dlv_extra, NULL, NULL},
    {"server", srv_load, srv_round, srv_view, srv_stats, srv_free, srv_extra, srv_settle,
     srv_latencies}};

typedef struct rounds_ctx {
    const via_t *via;
    void *self;
    dl_error_t *err;
    bench_samples_t lat;
    json_t *exp_rounds; /* expected.rounds: checkpoints */
    long max_rounds;    /* -1: all */
    size_t done;        /* rounds applied */
    size_t checked;     /* checkpoints compared */
    size_t batch;       /* additions in the first round */
    bool ok, failed;
    round_t r; /* reused buffers */
} rounds_ctx_t;

/* One line of w1.rounds.jsonl: apply the round (timed), then compare checkpoints. */
static int on_round(json_t *line, void *ctx) {
    rounds_ctx_t *rc = ctx;
    if (rc->max_rounds >= 0 && rc->done >= (size_t)rc->max_rounds)
        return 1;
    rc->r.add.n = rc->r.del.n = 0;
    read_pairs(json_object_get(line, "add"), &rc->r.add);
    read_pairs(json_object_get(line, "del"), &rc->r.del);
    if (rc->done == 0)
        rc->batch = rc->r.add.n;
    size_t r = rc->done;
    uint64_t a = bench_now_ns();
    if (rc->via->round(rc->self, &rc->r, rc->err)) {
        fprintf(stderr, "bench_w1: round %zu failed: %s\n", r, rc->err->message);
        rc->failed = true;
        return 1;
    }
    bench_samples_add(&rc->lat, bench_now_ns() - a);
    rc->done++;
    size_t k;
    json_t *e;
    json_array_foreach(rc->exp_rounds, k, e) {
        if ((size_t)json_integer_value(json_object_get(e, "after_round")) != r)
            continue;
        if (rc->via->settle)
            rc->via->settle(rc->self);
        bool sets_ok;
        bench_checksum_t c = view_checksum(rc->via->view(rc->self), &sets_ok);
        rc->checked++;
        if (!sets_ok || !bench_checksum_matches(&c, e)) {
            fprintf(stderr, "bench_w1: checksum mismatch after round %zu: got %s\n", r,
                    bench_checksum_str(&c));
            rc->ok = false;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = bench_arg(argc, argv, "data", NULL);
    const char *via_name = bench_arg(argc, argv, "via", "dataflow");
    if (!dir) {
        fprintf(stderr, "usage: bench_w1 --data DIR [--via dataflow|datalog|server] [--rounds R]"
                        " [--server PATH] [--verbose]\n");
        return 2;
    }
    const via_t *via = NULL;
    for (size_t i = 0; i < sizeof VIAS / sizeof VIAS[0]; i++)
        if (!strcmp(VIAS[i].name, via_name))
            via = &VIAS[i];
    if (!via) {
        fprintf(stderr, "bench_w1: --via %s is not available in this build\n", via_name);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/w1.meta.json", dir);
    json_t *meta = bench_load_json(path);
    if (!meta)
        return 1;
    load_t l = {0};
    snprintf(path, sizeof path, "%s/w1.initial.jsonl", dir);
    if (bench_read_jsonl(path, read_initial, &l) < 0)
        return 1;
    long max_rounds = atol(bench_arg(argc, argv, "rounds", "-1"));
    workload_nodes = json_integer_value(json_object_get(json_object_get(meta, "params"), "nodes"));
    json_t *expected = json_object_get(meta, "expected");

    union {
        df_t df;
        dlv_t dlv;
        srv_t srv;
    } state;
    memset(&state, 0, sizeof state);
    void *self = &state;
    state.srv.server_path = bench_arg(argc, argv, "server", NULL);
    dl_error_t err = {0};
    bool ok = true;
    uint64_t t0 = bench_now_ns();
    if (via->load(self, &l.initial, &err)) {
        fprintf(stderr, "bench_w1: load failed: %s\n", err.message);
        via->free(self);
        free(l.initial.v);
        json_decref(meta);
        return 1;
    }
    uint64_t t1 = bench_now_ns();
    size_t n_initial = l.initial.n;
    free(l.initial.v); /* the engine holds its own copy */
    l.initial.v = NULL;
    bool sets_ok;
    bench_checksum_t c = view_checksum(via->view(self), &sets_ok);
    if (!sets_ok || !bench_checksum_matches(&c, json_object_get(expected, "initial"))) {
        fprintf(stderr, "bench_w1: initial checksum mismatch: got %s\n", bench_checksum_str(&c));
        ok = false;
    }
    /* Rounds are read one line at a time (parsing is not timed), so the process does not
     * hold the whole workload in memory. */
    rounds_ctx_t rc = {via,        self,      &err, {0}, json_object_get(expected, "rounds"),
                       max_rounds, 0,         0,    0,   ok,
                       false,      {{0}, {0}}};
    snprintf(path, sizeof path, "%s/w1.rounds.jsonl", dir);
    long lines = bench_read_jsonl(path, on_round, &rc);
    if (lines < 0 || rc.failed) {
        via->free(self);
        bench_samples_free(&rc.lat);
        free(rc.r.add.v);
        free(rc.r.del.v);
        json_decref(meta);
        return 1;
    }
    ok = rc.ok;
    size_t n_rounds = rc.done;
    bench_samples_t lat = rc.lat;
    if (via->latencies)
        via->latencies(self, &lat);
    if (bench_flag(argc, argv, "verbose"))
        via->stats(self);
    if (max_rounds < 0 && rc.checked == 0)
        ok = false; /* the final checkpoint must have been compared */
    dl_alloc_stats_t st;
    dl_alloc_stats(&st);
    json_t *params = json_pack(
        "{s:I,s:I,s:I,s:I}", "nodes",
        json_integer_value(json_object_get(json_object_get(meta, "params"), "nodes")), "edges",
        (json_int_t)n_initial, "rounds", (json_int_t)n_rounds, "batch", (json_int_t)rc.batch);
    json_t *out = json_pack(
        "{s:s,s:s,s:o,s:f,s:f,s:f,s:f,s:f,s:f,s:b}", "bench", "w1", "via", via->name, "params",
        params, "init_ms", (t1 - t0) / 1e6, "p50_us", bench_samples_pct_us(&lat, 0.5), "p99_us",
        bench_samples_pct_us(&lat, 0.99), "peak_rss_mb", bench_peak_rss_mb(), "live_mb",
        st.live_bytes / 1048576.0, "peak_alloc_mb", st.peak_bytes / 1048576.0, "checksum_ok", ok);
    if (via->extra)
        via->extra(self, out);
    bench_emit(out);
    via->free(self);
    bench_samples_free(&lat);
    free(rc.r.add.v);
    free(rc.r.del.v);
    json_decref(meta);
    return ok ? 0 : 1;
}
