/*
 * graph.c: graphs, scopes and nodes; the building functions of the public API; and the
 * scheduler: moving staged input in, draining operator queues, progress tracking
 * (frontiers), driving reduces over completed times, delivering captures, compaction
 * and maintenance. Follows DESIGN-NOTES §1 (completeness), §6 (per-worker state: every
 * piece of mutable state hangs off a dl_graph_t) and docs/dataflow.md "Progress".
 * Operator semantics live in ops.c, reduce.c and output.c.
 *
 * Design notes (progress).
 * 1. Pointstamps: an input's frontier, and a reduce's pending (not yet complete) times.
 *    Every other operator processes what it receives at once, so when all queues are
 *    empty these are the only places future updates can come from.
 * 2. A node's frontier (node->frontier) is the antichain of the least times at which its
 *    output may still change: its own pointstamps and its inputs' frontiers mapped by
 *    the edge summaries (enter pads a 0, leave drops the loop coordinate, the variable's
 *    feedback adds 1 to it, everything else is the identity; join's output time is the
 *    join of input times, hence >= either). node->scratch holds the input frontier.
 * 3. Frontiers are computed as a fixpoint from the empty antichain, iterating nodes in
 *    id order until nothing changes; the loop summary strictly increases the loop
 *    coordinate, so a cycle adds only dominated times and the iteration ends.
 * 4. run() alternates: drain queues; compute frontiers; let every reduce process its
 *    complete pending times (which may queue new updates); until no reduce works.
 * 5. Nodes may be added between runs. A consumer of an arranged node gets the spine's
 *    batches queued at creation; a join of two arrangements holding data snapshots their
 *    batches and emits their join at the next run; a reduce notes its input's contents.
 *    Unarranged collections keep no history (docs/dataflow.md "Attaching later").
 */
#include "dataflow/dataflow.h"

#include <stdlib.h>

static dl_coll_t *fail_null(dl_error_t *err, int code, const char *msg) {
    dl_error_set(err, code, "%s", msg);
    return NULL;
}

dl_graph_t *dl_graph_new(size_t dim, dl_error_t *err) {
    if (dim < 1 || dim > DL_TIME_MAX_ROOT_DIM) {
        dl_error_set(err, DL_EINVAL, "graph time dim %zu not in 1..%d", dim, DL_TIME_MAX_ROOT_DIM);
        return NULL;
    }
    dl_graph_t *g = dl_calloc(1, sizeof *g);
    if (!g) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    g->root.g = g;
    g->root.dim = (uint32_t)dim;
    dl_antichain_init(&g->sa, 1);
    dl_antichain_init(&g->sb, 1);
    return g;
}

static void node_free(dl_coll_t *n) {
    for (size_t i = 0; i < n->q_n; i++)
        dl__batch_unref(n->q[i].b);
    dl_free(n->q);
    dl_free(n->ins);
    dl_free(n->outs);
    dl_free(n->cols);
    dl_free(n->jcols);
    dl_free(n->arrs);
    for (size_t i = 0; i < n->n_init_l; i++)
        dl__batch_unref(n->init_l[i]);
    for (size_t i = 0; i < n->n_init_r; i++)
        dl__batch_unref(n->init_r[i]);
    dl_free(n->init_l);
    dl_free(n->init_r);
    dl_antichain_fini(&n->frontier);
    dl_antichain_fini(&n->scratch);
    if (n->red)
        dl__reduce_free(n->red);
    if (n->input) {
        dl__batch_ubuf_fini(&n->input->staged);
        for (size_t i = 0; i < n->input->n_sealed; i++)
            dl__batch_unref(n->input->sealed[i]);
        dl_free(n->input->sealed);
        dl_antichain_fini(&n->input->frontier);
        dl_free(n->input);
    }
    dl_free(n->var);
    if (n->cap)
        dl__output_capture_free(n->cap);
    dl_free(n);
}

static void arr_free(dl_arr_t *a) {
    dl__spine_fini(&a->spine);
    for (size_t i = 0; i < a->n_readers; i++)
        if (a->readers[i].kind == RD_TRACE)
            a->readers[i].trace->arr = NULL; /* dangling traces become inert */
    dl_free(a->readers);
    dl_free(a->key_cols);
    dl_free(a->val_cols);
    dl_free(a);
}

void dl_graph_free(dl_graph_t *g) {
    if (!g)
        return;
    for (size_t i = 0; i < g->n_nodes; i++)
        node_free(g->nodes[i]);
    dl_free(g->nodes);
    for (size_t i = 0; i < g->n_arrs; i++)
        arr_free(g->arrs[i]);
    dl_free(g->arrs);
    for (size_t i = 0; i < g->n_scopes; i++)
        dl_free(g->scopes[i]);
    dl_free(g->scopes);
    dl_antichain_fini(&g->sa);
    dl_antichain_fini(&g->sb);
    dl_free(g);
}

dl_scope_t *dl_graph_root(dl_graph_t *g) { return g ? &g->root : NULL; }
size_t dl_scope_dim(const dl_scope_t *s) { return s->dim; }
size_t dl_coll_arity(const dl_coll_t *c) { return c->arity; }
dl_scope_t *dl_coll_scope(const dl_coll_t *c) { return c->scope; }

static bool push_ptr(void **arr, size_t *n, size_t *cap, size_t elem, const void *x) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 4;
        void *p = dl_realloc(*arr, nc * elem);
        if (!p)
            return false;
        *arr = p;
        *cap = nc;
    }
    memcpy((char *)*arr + *n * elem, x, elem);
    (*n)++;
    return true;
}

void *dl__graph_no_history(dl_error_t *err, const dl_arr_t *a) {
    dl_error_set(err, DL_ESTATE,
                 "arrangement of node %u keeps no history (only linear reduces read it, and "
                 "data has passed): attach readers before data flows",
                 a->node ? a->node->id : 0);
    return NULL;
}

dl_coll_t *dl__graph_node_new(dl_scope_t *s, dl_op_t op, size_t arity, dl_coll_t *const *ins,
                              size_t n_ins, dl_error_t *err) {
    dl_graph_t *g = s->g;
    if (arity > DL_ARITY_MAX)
        return fail_null(err, DL_EARITY, "arity exceeds DL_ARITY_MAX");
    for (size_t i = 0; i < n_ins; i++) /* a consumer would need the replay of a history */
        if (ins[i]->arr && ins[i]->arr->dropped)
            return dl__graph_no_history(err, ins[i]->arr);
    dl_coll_t *n = dl_calloc(1, sizeof *n);
    if (!n)
        return fail_null(err, DL_ENOMEM, "out of memory");
    n->g = g;
    n->scope = s;
    n->op = op;
    n->arity = (uint32_t)arity;
    n->dim = s->dim;
    dl_antichain_init(&n->frontier, s->dim);
    dl_antichain_init(&n->scratch, s->dim);
    if (n_ins) {
        n->ins = dl_malloc(n_ins * sizeof *n->ins);
        if (!n->ins) {
            node_free(n);
            return fail_null(err, DL_ENOMEM, "out of memory");
        }
        memcpy(n->ins, ins, n_ins * sizeof *ins);
        n->n_ins = n_ins;
    }
    size_t cap = g->cap_nodes;
    if (!push_ptr((void **)&g->nodes, &g->n_nodes, &cap, sizeof n, &n)) {
        node_free(n);
        return fail_null(err, DL_ENOMEM, "out of memory");
    }
    g->cap_nodes = cap;
    n->id = (uint32_t)(g->n_nodes - 1);
    for (size_t i = 0; i < n_ins; i++) {
        dl_edge_t e = {n, (uint32_t)i};
        if (!push_ptr((void **)&ins[i]->outs, &ins[i]->n_outs, &ins[i]->cap_outs, sizeof e, &e)) {
            /* Leave the node in the graph (harmless: its other edges are consistent). */
            return fail_null(err, DL_ENOMEM, "out of memory");
        }
        /* A consumer attached to an arranged collection that already holds data gets the
         * arrangement's contents replayed (docs "Attaching later"). */
        const dl_arr_t *a = ins[i]->arr;
        for (size_t b = 0; a && b < a->spine.n; b++) {
            dl_qitem_t it = {dl__batch_wide(a->spine.batches[b]), (uint32_t)i};
            if (!it.b || !push_ptr((void **)&n->q, &n->q_n, &n->q_cap, sizeof it, &it)) {
                dl__batch_unref(it.b);
                return fail_null(err, DL_ENOMEM, "out of memory");
            }
        }
    }
    return n;
}

/* ---- inputs ---------------------------------------------------------------------------- */
dl_input_t *dl_input_new(dl_scope_t *s, size_t arity, dl_error_t *err) {
    if (!s) {
        dl_error_set(err, DL_EINVAL, "NULL scope");
        return NULL;
    }
    dl_input_t *in = dl_calloc(1, sizeof *in);
    if (!in) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    dl_coll_t *n = dl__graph_node_new(s, OP_INPUT, arity, NULL, 0, err);
    if (!n) {
        dl_free(in);
        return NULL;
    }
    n->input = in;
    in->node = n;
    dl__batch_ubuf_init(&in->staged, arity, s->dim);
    dl_antichain_init(&in->frontier, s->dim);
    uint64_t zero[DL_TIME_MAX_DIM] = {0};
    if (dl_antichain_insert(&in->frontier, zero) < 0) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL; /* the node stays, owning `in` */
    }
    return in;
}

dl_coll_t *dl_input_coll(dl_input_t *in) { return in ? in->node : NULL; }

int dl_input_update(dl_input_t *in, const dl_value_t *row, size_t n_cols, const uint64_t *t,
                    int64_t diff, dl_error_t *err) {
    if (!in || (!row && n_cols) || !t)
        return dl_error_set(err, DL_EINVAL, "NULL argument");
    if (in->closed)
        return dl_error_set(err, DL_ESTATE, "input is closed");
    if (n_cols != in->node->arity)
        return dl_error_set(err, DL_EARITY, "row has %zu columns, input arity is %u", n_cols,
                            in->node->arity);
    if (!dl_antichain_less_equal(&in->frontier, t))
        return dl_error_set(err, DL_ETIME, "update time is not beyond the input frontier");
    if (diff == 0)
        return 0;
    if (!dl__batch_ubuf_push(&in->staged, row, t, diff))
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    if (in->staged.n >= DL_INPUT_CHUNK) {
        if (in->n_sealed == in->cap_sealed) {
            size_t cap = in->cap_sealed ? 2 * in->cap_sealed : 8;
            dl_batch_t **ns = dl_realloc(in->sealed, cap * sizeof *ns);
            if (!ns)
                return 0; /* keep staging into the open buffer; sealing is an optimization */
            in->sealed = ns;
            in->cap_sealed = cap;
        }
        dl_batch_t *b = dl__batch_new(&in->staged, false);
        if (b) {
            in->sealed[in->n_sealed++] = b;
            dl__batch_ubuf_init(&in->staged, in->node->arity, in->node->dim);
        }
    }
    return 0;
}

int dl_input_advance(dl_input_t *in, const dl_antichain_t *f, dl_error_t *err) {
    if (!in || !f)
        return dl_error_set(err, DL_EINVAL, "NULL argument");
    if (in->closed)
        return dl_error_set(err, DL_ESTATE, "input is closed");
    if (f->dim != in->node->dim)
        return dl_error_set(err, DL_EINVAL, "frontier dim %u, input dim %u", f->dim, in->node->dim);
    if (!dl_antichain_le(&in->frontier, f))
        return dl_error_set(err, DL_ETIME, "frontier would move backward");
    int rc = dl_antichain_copy(&in->frontier, f);
    if (rc)
        return dl_error_set(err, rc, "out of memory");
    if (f->n == 0)
        in->closed = true;
    return 0;
}

int dl_input_advance_to(dl_input_t *in, const uint64_t *t, dl_error_t *err) {
    if (!in || !t)
        return dl_error_set(err, DL_EINVAL, "NULL argument");
    uint64_t buf[DL_TIME_MAX_DIM];
    dl_antichain_t f = dl__antichain_one(buf, t, in->node->dim);
    return dl_input_advance(in, &f, err);
}

int dl_input_close(dl_input_t *in, dl_error_t *err) {
    if (!in)
        return dl_error_set(err, DL_EINVAL, "NULL argument");
    dl_antichain_clear(&in->frontier);
    in->closed = true;
    return 0;
}

/* ---- per-row operators ----------------------------------------------------------------- */
static dl_coll_t *unary(dl_coll_t *in, dl_op_t op, size_t arity, dl_error_t *err) {
    if (!in)
        return fail_null(err, DL_EINVAL, "NULL collection");
    return dl__graph_node_new(in->scope, op, arity, &in, 1, err);
}

dl_coll_t *dl_map(dl_coll_t *in, size_t out_arity, dl_map_fn fn, void *ctx, dl_error_t *err) {
    if (!fn)
        return fail_null(err, DL_EINVAL, "NULL map function");
    dl_coll_t *n = unary(in, OP_MAP, out_arity, err);
    if (n) {
        n->fn = (void *)fn;
        n->ctx = ctx;
    }
    return n;
}

dl_coll_t *dl_flat_map(dl_coll_t *in, size_t out_arity, dl_map_fn fn, void *ctx, dl_error_t *err) {
    if (!fn)
        return fail_null(err, DL_EINVAL, "NULL flat_map function");
    dl_coll_t *n = unary(in, OP_FLAT_MAP, out_arity, err);
    if (n) {
        n->fn = (void *)fn;
        n->ctx = ctx;
    }
    return n;
}

dl_coll_t *dl_filter(dl_coll_t *in, dl_filter_fn fn, void *ctx, dl_error_t *err) {
    if (!fn)
        return fail_null(err, DL_EINVAL, "NULL filter function");
    dl_coll_t *n = unary(in, OP_FILTER, in ? in->arity : 0, err);
    if (n) {
        n->fn = (void *)fn;
        n->ctx = ctx;
    }
    return n;
}

static uint32_t *copy_cols(const uint32_t *cols, size_t n, size_t arity, dl_error_t *err) {
    uint32_t *c = dl_malloc((n ? n : 1) * sizeof *c);
    if (!c) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (cols[i] >= arity) {
            dl_error_set(err, DL_EARITY, "column %u out of range (arity %zu)", cols[i], arity);
            dl_free(c);
            return NULL;
        }
        c[i] = cols[i];
    }
    return c;
}

dl_coll_t *dl_project(dl_coll_t *in, const uint32_t *cols, size_t n_cols, dl_error_t *err) {
    if (!in || (!cols && n_cols))
        return fail_null(err, DL_EINVAL, "NULL argument");
    uint32_t *c = copy_cols(cols, n_cols, in->arity, err);
    if (!c)
        return NULL;
    dl_coll_t *n = unary(in, OP_PROJECT, n_cols, err);
    if (!n) {
        dl_free(c);
        return NULL;
    }
    n->cols = c;
    n->n_cols = n_cols;
    return n;
}

dl_coll_t *dl_filter_eq(dl_coll_t *in, uint32_t col, dl_value_t v, dl_error_t *err) {
    if (!in)
        return fail_null(err, DL_EINVAL, "NULL collection");
    if (col >= in->arity)
        return fail_null(err, DL_EARITY, "filter column out of range");
    dl_coll_t *n = unary(in, OP_FILTER_EQ, in->arity, err);
    if (n) {
        n->n_cols = col;
        n->val = v;
    }
    return n;
}

dl_coll_t *dl_filter_cols_eq(dl_coll_t *in, uint32_t a, uint32_t b, dl_error_t *err) {
    if (!in)
        return fail_null(err, DL_EINVAL, "NULL collection");
    if (a >= in->arity || b >= in->arity)
        return fail_null(err, DL_EARITY, "filter column out of range");
    dl_coll_t *n = unary(in, OP_FILTER_COLS, in->arity, err);
    if (n) {
        uint32_t c[2] = {a, b};
        n->cols = copy_cols(c, 2, in->arity, err);
        if (!n->cols)
            return NULL;
        n->n_cols = 2;
    }
    return n;
}

dl_coll_t *dl_concat(dl_coll_t *const *ins, size_t n, dl_error_t *err) {
    if (!ins || n == 0)
        return fail_null(err, DL_EINVAL, "concat of no collections");
    for (size_t i = 0; i < n; i++) {
        if (!ins[i])
            return fail_null(err, DL_EINVAL, "NULL collection");
        if (ins[i]->scope != ins[0]->scope)
            return fail_null(err, DL_EINVAL, "concat across scopes (use dl_enter/dl_leave)");
        if (ins[i]->arity != ins[0]->arity)
            return fail_null(err, DL_EARITY, "concat of collections of different arity");
    }
    return dl__graph_node_new(ins[0]->scope, OP_CONCAT, ins[0]->arity, ins, n, err);
}

dl_coll_t *dl_negate(dl_coll_t *in, dl_error_t *err) {
    return unary(in, OP_NEGATE, in ? in->arity : 0, err);
}

dl_coll_t *dl_consolidate(dl_coll_t *in, dl_error_t *err) {
    return unary(in, OP_CONSOLIDATE, in ? in->arity : 0, err);
}

/* ---- arrangements ---------------------------------------------------------------------- */
static dl_arr_t *arr_new(dl_graph_t *g, dl_coll_t *node, size_t ka, size_t va, dl_error_t *err) {
    dl_arr_t *a = dl_calloc(1, sizeof *a);
    if (!a) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    a->g = g;
    a->node = node;
    a->ka = (uint32_t)ka;
    a->va = (uint32_t)va;
    dl__spine_init(&a->spine, ka, va, node->dim);
    size_t cap = g->n_arrs;
    if (!push_ptr((void **)&g->arrs, &g->n_arrs, &cap, sizeof a, &a)) {
        dl__spine_fini(&a->spine);
        dl_free(a);
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    node->arr = a;
    return a;
}

int dl__graph_arr_add_reader(dl_arr_t *a, dl_reader_kind_t kind, dl_coll_t *node,
                             dl_trace_t *trace) {
    if (a->dropped)
        return DL_ESTATE;
    dl_reader_t r = {kind, node, trace, false};
    if (!push_ptr((void **)&a->readers, &a->n_readers, &a->cap_readers, sizeof r, &r))
        return DL_ENOMEM;
    return 0;
}

bool dl__graph_arr_keeps(const dl_arr_t *a) {
    for (size_t i = 0; i < a->n_readers; i++)
        if (!a->readers[i].deltas_only)
            return true;
    return a->n_readers == 0;
}

dl_arr_t *dl_arrange(dl_coll_t *in, const uint32_t *key_cols, size_t n_key,
                     const uint32_t *val_cols, size_t n_val, dl_error_t *err) {
    if (!in || (!key_cols && n_key)) {
        dl_error_set(err, DL_EINVAL, "NULL argument");
        return NULL;
    }
    uint32_t vdefault[DL_ARITY_MAX];
    if (!val_cols) {
        n_val = 0;
        for (uint32_t c = 0; c < in->arity; c++) {
            bool is_key = false;
            for (size_t k = 0; k < n_key; k++)
                is_key |= key_cols[k] == c;
            if (!is_key)
                vdefault[n_val++] = c;
        }
        val_cols = vdefault;
    }
    if (n_key + n_val > DL_ARITY_MAX) {
        dl_error_set(err, DL_EARITY, "arrangement row too wide");
        return NULL;
    }
    /* An arrangement's own collection arranged the way it already is: the arrangement. */
    if (in->op == OP_ARRANGE && in->arr && in->arr->ka == n_key && n_key + n_val == in->arity) {
        bool same = true;
        for (size_t k = 0; k < n_key && same; k++)
            same = key_cols[k] == k;
        for (size_t k = 0; k < n_val && same; k++)
            same = val_cols[k] == n_key + k;
        if (same)
            return in->arr;
    }
    /* Share: the same collection arranged by the same columns is one arrangement. */
    for (size_t i = 0; i < in->n_arrs; i++) {
        dl_arr_t *a = in->arrs[i];
        if (a->ka == n_key && a->va == n_val &&
            (n_key == 0 || !memcmp(a->key_cols, key_cols, n_key * sizeof *key_cols)) &&
            (n_val == 0 || !memcmp(a->val_cols, val_cols, n_val * sizeof *val_cols)))
            return a;
    }
    uint32_t *kc = copy_cols(key_cols, n_key, in->arity, err);
    if (!kc)
        return NULL;
    uint32_t *vc = copy_cols(val_cols, n_val, in->arity, err);
    if (!vc) {
        dl_free(kc);
        return NULL;
    }
    dl_coll_t *n = unary(in, OP_ARRANGE, n_key + n_val, err);
    if (!n) {
        dl_free(kc);
        dl_free(vc);
        return NULL;
    }
    dl_arr_t *a = arr_new(in->g, n, n_key, n_val, err);
    if (!a) {
        dl_free(kc);
        dl_free(vc);
        return NULL;
    }
    a->src = in;
    a->key_cols = kc;
    a->val_cols = vc;
    size_t cap = in->n_arrs;
    if (!push_ptr((void **)&in->arrs, &in->n_arrs, &cap, sizeof a, &a)) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    return a;
}

size_t dl_arr_key_arity(const dl_arr_t *a) { return a->ka; }
size_t dl_arr_val_arity(const dl_arr_t *a) { return a->va; }
dl_coll_t *dl_arr_coll(dl_arr_t *a) { return a ? a->node : NULL; }

/* True when scope a is s or an ancestor of s. */
static bool scope_encloses(const dl_scope_t *a, const dl_scope_t *s) {
    for (; s; s = s->parent)
        if (s == a)
            return true;
    return false;
}

static dl_coll_t *join_node(dl_arr_t *l, dl_arr_t *r, size_t out_arity, dl_error_t *err) {
    if (!l || !r)
        return fail_null(err, DL_EINVAL, "NULL arrangement");
    if (l->ka != r->ka)
        return fail_null(err, DL_EARITY, "join of arrangements with different key arity");
    dl_scope_t *sl = l->node->scope, *sr = r->node->scope, *s;
    if (scope_encloses(sl, sr))
        s = sr;
    else if (scope_encloses(sr, sl))
        s = sl;
    else
        return fail_null(err, DL_EINVAL, "join of arrangements of unrelated scopes");
    if (l->dropped || r->dropped)
        return dl__graph_no_history(err, l->dropped ? l : r);
    dl_coll_t *n = dl__graph_node_new(s, OP_JOIN, out_arity, NULL, 0, err);
    if (!n)
        return NULL;
    n->jl = l;
    n->jr = r;
    if (dl__graph_arr_add_reader(l, RD_JOIN_LEFT, n, NULL) ||
        dl__graph_arr_add_reader(r, RD_JOIN_RIGHT, n, NULL))
        return fail_null(err, DL_ENOMEM, "out of memory");
    /* Both sides already hold data: snapshot their batches; their join is emitted at the
     * next run (later deltas are joined as they come, against everything). */
    if (l->spine.n > 0 && r->spine.n > 0) {
        n->init_l = dl_malloc(l->spine.n * sizeof *n->init_l);
        n->init_r = dl_malloc(r->spine.n * sizeof *n->init_r);
        if (!n->init_l || !n->init_r)
            return fail_null(err, DL_ENOMEM, "out of memory");
        for (size_t b = 0; b < l->spine.n; b++)
            dl__batch_ref(n->init_l[n->n_init_l++] = l->spine.batches[b]);
        for (size_t b = 0; b < r->spine.n; b++)
            dl__batch_ref(n->init_r[n->n_init_r++] = r->spine.batches[b]);
        n->join_init = true;
    }
    return n;
}

dl_coll_t *dl_join(dl_arr_t *left, dl_arr_t *right, const dl_join_col_t *cols, size_t n_cols,
                   dl_error_t *err) {
    if (!left || !right || (!cols && n_cols))
        return fail_null(err, DL_EINVAL, "NULL argument");
    for (size_t i = 0; i < n_cols; i++) {
        size_t lim = cols[i].src == DL_JOIN_KEY     ? left->ka
                     : cols[i].src == DL_JOIN_LEFT  ? left->va
                     : cols[i].src == DL_JOIN_RIGHT ? right->va
                                                    : 0;
        if (cols[i].src > DL_JOIN_RIGHT || cols[i].col >= lim)
            return fail_null(err, DL_EARITY, "join output column out of range");
    }
    dl_join_col_t *jc = dl_malloc((n_cols ? n_cols : 1) * sizeof *jc);
    if (!jc)
        return fail_null(err, DL_ENOMEM, "out of memory");
    if (n_cols)
        memcpy(jc, cols, n_cols * sizeof *cols);
    dl_coll_t *n = join_node(left, right, n_cols, err);
    if (!n) {
        dl_free(jc);
        return NULL;
    }
    n->jcols = jc;
    n->n_cols = n_cols;
    return n;
}

dl_coll_t *dl_join_map(dl_arr_t *left, dl_arr_t *right, size_t out_arity, dl_join_fn fn, void *ctx,
                       dl_error_t *err) {
    if (!fn)
        return fail_null(err, DL_EINVAL, "NULL join function");
    dl_coll_t *n = join_node(left, right, out_arity, err);
    if (n) {
        n->fn = (void *)fn;
        n->ctx = ctx;
    }
    return n;
}

/* ---- reduce ---------------------------------------------------------------------------- */
dl_arr_t *dl_reduce(dl_arr_t *in, const dl_reduce_spec_t *spec, dl_error_t *err) {
    if (!in || !spec) {
        dl_error_set(err, DL_EINVAL, "NULL argument");
        return NULL;
    }
    size_t out_va;
    switch (spec->kind) {
        case DL_REDUCE_COUNT:
            out_va = 1;
            break;
        case DL_REDUCE_SUM:
        case DL_REDUCE_MIN:
        case DL_REDUCE_MAX:
        case DL_REDUCE_AVG:
            if (spec->col >= in->va) {
                dl_error_set(err, DL_EARITY, "reduce column %u out of range", spec->col);
                return NULL;
            }
            out_va = 1;
            break;
        case DL_REDUCE_DISTINCT:
            out_va = in->va;
            break;
        case DL_REDUCE_THRESHOLD:
            if (!spec->thresh_fn) {
                dl_error_set(err, DL_EINVAL, "threshold without function");
                return NULL;
            }
            out_va = in->va;
            break;
        case DL_REDUCE_GENERAL:
            if (!spec->general_fn) {
                dl_error_set(err, DL_EINVAL, "general reduce without function");
                return NULL;
            }
            out_va = spec->out_arity;
            break;
        case DL_REDUCE_LINEAR:
            if (!spec->aggs || spec->n_aggs == 0) {
                dl_error_set(err, DL_EINVAL, "linear reduce without aggregates");
                return NULL;
            }
            for (size_t i = 0; i < spec->n_aggs; i++)
                if ((unsigned)spec->aggs[i].op > DL_LINEAR_AVG ||
                    (spec->aggs[i].op != DL_LINEAR_COUNT && spec->aggs[i].col >= in->va)) {
                    dl_error_set(err, DL_EARITY, "linear aggregate %zu: bad op or column", i);
                    return NULL;
                }
            out_va = spec->n_aggs;
            break;
        default:
            dl_error_set(err, DL_EINVAL, "unknown reduce kind");
            return NULL;
    }
    if (in->ka + out_va > DL_ARITY_MAX) {
        dl_error_set(err, DL_EARITY, "reduce output too wide");
        return NULL;
    }
    if (in->dropped)
        return dl__graph_no_history(err, in);
    dl_coll_t *n = dl__graph_node_new(in->node->scope, OP_REDUCE, in->ka + out_va, NULL, 0, err);
    if (!n)
        return NULL;
    n->jl = in;
    if (dl__reduce_init(n, spec, err))
        return NULL;
    dl_arr_t *a = arr_new(n->g, n, in->ka, out_va, err);
    if (!a)
        return NULL;
    if (dl__graph_arr_add_reader(in, RD_REDUCE, n, NULL) ||
        dl__graph_arr_add_reader(a, RD_REDUCE, n, NULL)) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    /* A linear reduce reads its input's deltas only (it keeps its own accumulator). */
    if (spec->kind == DL_REDUCE_LINEAR)
        in->readers[in->n_readers - 1].deltas_only = true;
    /* Under one time coordinate it does not read its output's history either. */
    if (dl__reduce_total(n))
        a->readers[a->n_readers - 1].deltas_only = true;
    /* An input arrangement that already holds data: all of it is pending work. */
    for (size_t b = 0; b < in->spine.n; b++) {
        int nrc = dl__reduce_note(n, in->spine.batches[b]);
        if (nrc) {
            dl_error_set(err, nrc, "reduce over existing data: %s", dl_strerror(nrc));
            return NULL;
        }
    }
    return a;
}

dl_coll_t *dl_distinct(dl_coll_t *in, dl_error_t *err) {
    if (!in)
        return fail_null(err, DL_EINVAL, "NULL collection");
    uint32_t cols[DL_ARITY_MAX];
    for (uint32_t i = 0; i < in->arity; i++)
        cols[i] = i;
    dl_arr_t *a = dl_arrange(in, cols, in->arity, NULL, 0, err);
    if (!a)
        return NULL;
    dl_reduce_spec_t spec = {.kind = DL_REDUCE_DISTINCT};
    dl_arr_t *r = dl_reduce(a, &spec, err);
    return r ? r->node : NULL;
}

dl_coll_t *dl_count(dl_coll_t *in, const uint32_t *key_cols, size_t n_key, dl_error_t *err) {
    if (!in)
        return fail_null(err, DL_EINVAL, "NULL collection");
    dl_arr_t *a = dl_arrange(in, key_cols, n_key, NULL, 0, err);
    if (!a)
        return NULL;
    dl_reduce_spec_t spec = {.kind = DL_REDUCE_COUNT};
    dl_arr_t *r = dl_reduce(a, &spec, err);
    return r ? r->node : NULL;
}

/* ---- iterate --------------------------------------------------------------------------- */
dl_scope_t *dl_iterate_begin(dl_scope_t *parent, dl_error_t *err) {
    if (!parent) {
        dl_error_set(err, DL_EINVAL, "NULL scope");
        return NULL;
    }
    if (parent->dim + 1 > DL_TIME_MAX_DIM) {
        dl_error_set(err, DL_ELIMIT, "iterate nesting exceeds DL_TIME_MAX_DIM coordinates");
        return NULL;
    }
    dl_graph_t *g = parent->g;
    dl_scope_t *s = dl_calloc(1, sizeof *s);
    if (!s) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    s->g = g;
    s->parent = parent;
    s->dim = parent->dim + 1;
    s->depth = parent->depth + 1;
    size_t cap = g->n_scopes;
    if (!push_ptr((void **)&g->scopes, &g->n_scopes, &cap, sizeof s, &s)) {
        dl_free(s);
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    return s;
}

dl_coll_t *dl_enter(dl_scope_t *s, dl_coll_t *c, dl_error_t *err) {
    if (!s || !c)
        return fail_null(err, DL_EINVAL, "NULL argument");
    if (s->parent != c->scope)
        return fail_null(err, DL_EINVAL, "dl_enter: collection is not of the parent scope");
    return dl__graph_node_new(s, OP_ENTER, c->arity, &c, 1, err);
}

dl_coll_t *dl_leave(dl_coll_t *c, dl_error_t *err) {
    if (!c)
        return fail_null(err, DL_EINVAL, "NULL collection");
    if (!c->scope->parent)
        return fail_null(err, DL_EINVAL, "dl_leave: collection is in the root scope");
    return dl__graph_node_new(c->scope->parent, OP_LEAVE, c->arity, &c, 1, err);
}

dl_var_t *dl_var_new(dl_scope_t *s, dl_coll_t *init, dl_error_t *err) {
    if (!s || !init) {
        dl_error_set(err, DL_EINVAL, "NULL argument");
        return NULL;
    }
    if (!s->parent) {
        dl_error_set(err, DL_ECYCLE, "variables (feedback) exist only inside an iterate scope");
        return NULL;
    }
    if (init->scope != s) {
        dl_error_set(err, DL_EINVAL, "variable's initial collection must be of its scope");
        return NULL;
    }
    dl_var_t *v = dl_calloc(1, sizeof *v);
    if (!v) {
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    dl_coll_t *n = dl__graph_node_new(s, OP_VAR, init->arity, &init, 1, err);
    if (!n) {
        dl_free(v);
        return NULL;
    }
    n->var = v;
    v->node = n;
    return v;
}

dl_coll_t *dl_var_coll(dl_var_t *v) { return v ? v->node : NULL; }

int dl_var_set(dl_var_t *v, dl_coll_t *result, dl_error_t *err) {
    if (!v || !result)
        return dl_error_set(err, DL_EINVAL, "NULL argument");
    if (v->set)
        return dl_error_set(err, DL_ESTATE, "variable already set");
    dl_coll_t *n = v->node;
    if (result->scope != n->scope)
        return dl_error_set(err, DL_ECYCLE, "feedback must come from the variable's own scope");
    if (result == n)
        return dl_error_set(err, DL_EINVAL, "a variable cannot be its own result");
    if (result->arity != n->arity)
        return dl_error_set(err, DL_EARITY, "variable arity %u, result arity %u", n->arity,
                            result->arity);
    dl_coll_t **ins = dl_realloc(n->ins, 2 * sizeof *ins);
    if (!ins)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    n->ins = ins;
    dl_edge_t e = {n, 1};
    if (!push_ptr((void **)&result->outs, &result->n_outs, &result->cap_outs, sizeof e, &e))
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    ins[1] = result;
    n->n_ins = 2;
    v->set = true;
    return 0;
}

/* ---- message passing ------------------------------------------------------------------- */
int dl__graph_emit(dl_coll_t *n, dl_batch_t *b) {
    if (b->u.n == 0)
        return 0;
    for (size_t i = 0; i < n->n_outs; i++) {
        dl_coll_t *to = n->outs[i].to;
        dl_qitem_t it = {b, n->outs[i].port};
        if (!push_ptr((void **)&to->q, &to->q_n, &to->q_cap, sizeof it, &it))
            return DL_ENOMEM;
        dl__batch_ref(b);
    }
    return 0;
}

int dl__graph_emit_buf(dl_coll_t *n, dl_ubuf_t *u) {
    if (u->n == 0 || n->n_outs == 0) {
        u->n = 0;
        return 0;
    }
    dl_batch_t *b = dl__batch_new(u, false);
    if (!b)
        return DL_ENOMEM;
    int rc = dl__graph_emit(n, b);
    dl__batch_unref(b);
    return rc;
}

/* ---- progress -------------------------------------------------------------------------- */
/* Inserts src's times into dst mapped by the summary from a dim-sd scope into dst's dim:
 * pad with zeros (entering) or drop trailing coordinates (leaving); `bump` adds 1 to the
 * last coordinate (the loop feedback). */
static int insert_mapped(dl_antichain_t *dst, const dl_antichain_t *src, bool bump) {
    uint64_t t[DL_TIME_MAX_DIM];
    size_t dd = dst->dim, sd = src->dim;
    for (size_t i = 0; i < src->n; i++) {
        for (size_t k = 0; k < dd; k++)
            t[k] = k < sd ? src->elems[i * sd + k] : 0;
        if (bump)
            t[dd - 1]++;
        int rc = dl_antichain_insert(dst, t);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static bool antichain_eq(const dl_antichain_t *a, const dl_antichain_t *b) {
    return a->n == b->n && dl_antichain_le(a, b) && dl_antichain_le(b, a);
}

/* Empties a scratch antichain for elements of `dim` coordinates, keeping its buffer when
 * the dim is unchanged (compute_frontiers runs at every step over every node: no
 * allocation per node). */
static void scratch_reset(dl_antichain_t *a, size_t dim) {
    if (a->dim == dim) {
        dl_antichain_clear(a);
        return;
    }
    dl_antichain_fini(a);
    dl_antichain_init(a, dim);
}

/* Computes node->scratch (input frontier) and node->frontier for every node (design
 * note 2-3). */
static int compute_frontiers(dl_graph_t *g) {
    for (size_t i = 0; i < g->n_nodes; i++) {
        dl_antichain_clear(&g->nodes[i]->frontier);
        dl_antichain_clear(&g->nodes[i]->scratch);
    }
    dl_antichain_t in = g->sa, out = g->sb; /* the graph's scratch, handed back below */
    int rc = 0;
    bool changed = true, cyclic = false;
    while (changed && rc == 0) {
        changed = false;
        for (size_t i = 0; i < g->n_nodes && rc == 0; i++) {
            dl_coll_t *n = g->nodes[i];
            cyclic |= n->op == OP_VAR;
            scratch_reset(&in, n->dim);
            switch (n->op) {
                case OP_INPUT: {
                    /* Updates staged during a stepped run enter at the next run: until
                     * then their times hold the frontier back. */
                    const dl_input_t *inp = n->input;
                    rc = insert_mapped(&in, &inp->frontier, false);
                    for (size_t k = 0; k < inp->staged.n && rc >= 0; k++)
                        rc = dl_antichain_insert(&in, dl__ub_time(&inp->staged, k));
                    for (size_t b = 0; b < inp->n_sealed && rc >= 0; b++)
                        for (size_t k = 0; k < inp->sealed[b]->u.n && rc >= 0; k++)
                            rc = dl_antichain_insert(&in, dl__ub_time(&inp->sealed[b]->u, k));
                    rc = rc < 0 ? rc : 0;
                    break;
                }
                case OP_JOIN:
                    rc = insert_mapped(&in, &n->jl->node->frontier, false);
                    if (!rc)
                        rc = insert_mapped(&in, &n->jr->node->frontier, false);
                    break;
                case OP_REDUCE:
                    rc = insert_mapped(&in, &n->jl->node->frontier, false);
                    break;
                case OP_VAR:
                    rc = insert_mapped(&in, &n->ins[0]->frontier, false);
                    if (!rc && n->n_ins > 1)
                        rc = insert_mapped(&in, &n->ins[1]->frontier, true);
                    break;
                default:
                    for (size_t k = 0; k < n->n_ins && !rc; k++)
                        rc = insert_mapped(&in, &n->ins[k]->frontier, false);
                    break;
            }
            if (rc)
                break;
            scratch_reset(&out, n->dim);
            rc = insert_mapped(&out, &in, false);
            if (!rc && n->op == OP_REDUCE)
                rc = dl__reduce_caps(n, &out);
            if (rc)
                break;
            if (!antichain_eq(&out, &n->frontier)) {
                changed = true;
                rc = dl_antichain_copy(&n->frontier, &out);
            }
            if (!rc && !antichain_eq(&in, &n->scratch))
                rc = dl_antichain_copy(&n->scratch, &in);
        }
        /* Without iterate feedback every edge goes from a lower to a higher node index
         * (a node's inputs are created before it, and dl_graph_collect keeps the order),
         * so one pass in index order is the fixpoint. */
        if (!cyclic)
            break;
    }
    g->sa = in;
    g->sb = out;
    return rc;
}

int dl_coll_frontier(const dl_coll_t *c, dl_antichain_t *out) {
    if (!c || !out)
        return DL_EINVAL;
    return dl_antichain_copy(out, &c->frontier);
}

/* ---- scheduling ------------------------------------------------------------------------ */
/* Processes queued batches until every queue is empty. */
static int drain(dl_graph_t *g) {
    bool any = true;
    while (any) {
        any = false;
        for (size_t i = 0; i < g->n_nodes; i++) {
            dl_coll_t *n = g->nodes[i];
            while (n->q_n) {
                /* Detach the queue: processing may queue more here (iterate feedback). */
                dl_qitem_t *q = n->q;
                size_t qn = n->q_n, qcap = n->q_cap;
                n->q = NULL;
                n->q_n = n->q_cap = 0;
                any = true;
                int rc = 0;
                for (size_t k = 0; k < qn; k++) {
                    if (!rc)
                        rc = dl__ops_process(n, q[k].b, q[k].port);
                    g->work += q[k].b->u.n;
                    dl__batch_unref(q[k].b);
                }
                if (!n->q && qcap <= 64) { /* nothing new came: keep the array for next time */
                    n->q = q;
                    n->q_cap = qcap;
                } else {
                    dl_free(q);
                }
                if (rc)
                    return rc;
            }
        }
    }
    return 0;
}

/* Sets every arrangement's since to the meet of its readers' frontiers (design: docs
 * "Compaction"). A reader frontier: a join side reads up to the other side's frontier; a
 * reduce up to its input frontier; a trace up to its own. */
static int compact(dl_graph_t *g) {
    dl_antichain_t f = g->sa, tmp = g->sb; /* the graph's scratch, handed back below */
    int rc = 0;
    for (size_t i = 0; i < g->n_arrs && !rc; i++) {
        dl_arr_t *a = g->arrs[i];
        scratch_reset(&f, a->spine.dim);
        if (a->n_readers == 0)
            rc = insert_mapped(&f, &a->node->frontier, false);
        for (size_t r = 0; r < a->n_readers && !rc; r++) {
            const dl_reader_t *rd = &a->readers[r];
            const dl_antichain_t *src = NULL;
            switch (rd->kind) {
                case RD_JOIN_LEFT:
                    src = &rd->node->jr->node->frontier;
                    break;
                case RD_JOIN_RIGHT:
                    src = &rd->node->jl->node->frontier;
                    break;
                case RD_REDUCE:
                    src = &rd->node->scratch;
                    break;
                case RD_TRACE:
                    src = &rd->trace->frontier;
                    break;
            }
            /* Project to the arrangement's dim (a reader in a nested scope drops its loop
             * coordinates; see docs "Compaction"). */
            rc = dl__time_project(src, a->spine.dim, &tmp);
            for (size_t k = 0; k < tmp.n && !rc; k++) {
                int x = dl_antichain_insert(&f, tmp.elems + k * tmp.dim);
                rc = x < 0 ? x : 0;
            }
        }
        if (!rc)
            rc = dl__spine_set_since(&a->spine, &f);
    }
    g->sa = f;
    g->sb = tmp;
    return rc;
}

/* Spends up to `fuel` record moves on spine maintenance; a step larger than the fuel left
 * is skipped (so a run never pays for a huge merge), except that `force` lets the first
 * step of each spine exceed it (explicit maintenance always progresses). */
static int maintain(dl_graph_t *g, size_t fuel, bool force, bool *out_more) {
    size_t used = 0;
    bool more = false;
    for (size_t i = 0; i < g->n_arrs; i++) {
        dl_spine_t *s = &g->arrs[i]->spine;
        for (;;) {
            /* Only take a step that fits in the fuel left. */
            size_t next = s->n >= 2 ? s->batches[s->n - 2]->u.n + s->batches[s->n - 1]->u.n
                          : s->n == 1 && s->batches[0]->since_gen != s->since_gen
                              ? s->batches[0]->u.n
                              : 0;
            if (next == 0)
                break;
            if (used + next > fuel && !(force && used == 0)) {
                more = true;
                break;
            }
            int rc = dl__spine_maintain(s, &used);
            if (rc < 0)
                return rc;
            if (rc == 0)
                break;
        }
    }
    if (out_more)
        *out_more = more;
    return 0;
}

/* Starts a run: checks variables, joins contents for joins created over loaded
 * arrangements, moves staged input in. */
static int run_begin(dl_graph_t *g, dl_error_t *err) {
    for (size_t i = 0; i < g->n_nodes; i++) {
        dl_coll_t *n = g->nodes[i];
        if (n->op == OP_VAR && (!n->var || !n->var->set))
            return dl_error_set(err, DL_ESTATE, "iterate variable %u was never set", n->id);
    }
    g->work = 0;
    int rc = 0;
    /* Joins created over two arrangements that already held data: join the contents as
     * they were at creation (everything since arrived as deltas and was joined then). */
    for (size_t i = 0; i < g->n_nodes && !rc; i++) {
        dl_coll_t *n = g->nodes[i];
        if (n->op == OP_JOIN && n->join_init) {
            rc = dl__ops_join_init(n);
            n->join_init = false;
        }
    }
    /* Staged input enters. */
    for (size_t i = 0; i < g->n_nodes && !rc; i++) {
        dl_coll_t *n = g->nodes[i];
        if (n->op != OP_INPUT)
            continue;
        dl_input_t *in = n->input;
        for (size_t k = 0; k < in->n_sealed; k++) {
            g->work += in->sealed[k]->u.n;
            if (!rc)
                rc = dl__graph_emit(n, in->sealed[k]);
            dl__batch_unref(in->sealed[k]);
        }
        in->n_sealed = 0;
        if (!rc && in->staged.n) {
            g->work += in->staged.n;
            rc = dl__graph_emit_buf(n, &in->staged);
        }
    }
    if (rc)
        return dl_error_set(err, rc, "dataflow run failed: %s", dl_strerror(rc));
    g->running = true;
    return 0;
}

/* One scheduling round (design note 4); *out_worked when a reduce processed anything. */
static int run_round(dl_graph_t *g, bool *out_worked) {
    *out_worked = false;
    int rc = drain(g);
    if (!rc)
        rc = compute_frontiers(g);
    for (size_t i = 0; i < g->n_nodes && !rc; i++) {
        dl_coll_t *n = g->nodes[i];
        if (n->op == OP_REDUCE) {
            bool w = false;
            rc = dl__reduce_step(n, &n->scratch, &w);
            *out_worked |= w;
        }
    }
    return rc;
}

/* Ends a run: captures get their completed times, arrangements compact and merge. */
static int run_end(dl_graph_t *g) {
    int rc = 0;
    for (size_t i = 0; i < g->n_nodes && !rc; i++) {
        dl_coll_t *n = g->nodes[i];
        if (n->op == OP_CAPTURE && n->cap)
            rc = dl__output_capture_step(n->cap, &n->scratch);
    }
    if (!rc)
        rc = compact(g);
    if (!rc)
        rc = maintain(g, 4 * g->work, false, NULL); /* idle merging: dl_graph_maintain */
    g->running = false;
    return rc;
}

int dl_graph_step(dl_graph_t *g, bool *out_done, dl_error_t *err) {
    if (out_done)
        *out_done = false;
    if (!g)
        return dl_error_set(err, DL_EINVAL, "NULL graph");
    int rc;
    if (!g->running && (rc = run_begin(g, err)))
        return rc;
    bool worked = false;
    rc = run_round(g, &worked);
    if (!rc && !worked) {
        rc = run_end(g);
        if (!rc && out_done)
            *out_done = true;
    }
    if (rc) {
        g->running = false;
        return dl_error_set(err, rc, "dataflow run failed: %s", dl_strerror(rc));
    }
    return 0;
}

int dl_graph_run(dl_graph_t *g, dl_error_t *err) {
    bool done = false;
    while (!done) {
        int rc = dl_graph_step(g, &done, err);
        if (rc)
            return rc;
    }
    return 0;
}

int dl_graph_maintain(dl_graph_t *g, size_t fuel, dl_error_t *err) {
    if (!g)
        return dl_error_set(err, DL_EINVAL, "NULL graph");
    bool more = false;
    int rc = maintain(g, fuel, true, &more);
    if (rc)
        return dl_error_set(err, rc, "maintenance failed");
    return more ? 1 : 0;
}

void dl_graph_stats(const dl_graph_t *g, dl_graph_stats_t *out) {
    memset(out, 0, sizeof *out);
    if (!g)
        return;
    out->n_ops = g->n_nodes;
    out->n_arrangements = g->n_arrs;
    for (size_t i = 0; i < g->n_arrs; i++) {
        out->arranged_updates += g->arrs[i]->spine.records;
        out->arranged_batches += g->arrs[i]->spine.n;
    }
    for (size_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_REDUCE) {
            out->pending_times += dl__reduce_pending(g->nodes[i]);
            out->reduce_touched += dl__reduce_touched(g->nodes[i]);
        }
}

/* ---- teardown of subgraphs (dl_graph_collect) -------------------------------------------- */

void dl_capture_release(dl_capture_t *c) {
    if (c) {
        c->released = true;
        c->fn = NULL;
    }
}

static bool is_root(const dl_coll_t *n) {
    if (n->op == OP_CAPTURE) /* no cap: dl_capture_new failed half-way (an orphan) */
        return n->cap && !n->cap->released;
    if (n->op == OP_INPUT)
        return !n->input->closed;
    if (n->arr)
        for (size_t i = 0; i < n->arr->n_readers; i++)
            if (n->arr->readers[i].kind == RD_TRACE)
                return true;
    return false;
}

int dl_graph_collect(dl_graph_t *g, size_t *out_removed, dl_error_t *err) {
    if (out_removed)
        *out_removed = 0;
    if (!g)
        return dl_error_set(err, DL_EINVAL, "NULL graph");
    if (g->running)
        return dl_error_set(err, DL_ESTATE, "dl_graph_collect between the steps of a run");
    /* The step scratch grows again when needed: a collected graph holds only its nodes. */
    dl_antichain_fini(&g->sa);
    dl_antichain_fini(&g->sb);
    /* Backward reachability without allocating (collection must work when memory is
     * short: it is how failed builds are cleaned up): every edge goes from a lower to a
     * higher node index except iterate feedback, so passes in decreasing index order reach
     * a fixpoint in a few rounds (one more per feedback edge on a path). */
    size_t nn = g->n_nodes;
    for (size_t i = 0; i < nn; i++) {
        g->nodes[i]->id = (uint32_t)i; /* positions: the sweep order below */
        g->nodes[i]->gc_mark = is_root(g->nodes[i]);
    }
    bool grew = true;
    while (grew) {
        grew = false;
        for (size_t i = nn; i-- > 0;) {
            dl_coll_t *n = g->nodes[i];
            if (!n->gc_mark)
                continue;
            dl_coll_t *up[2];
            size_t nu = 0;
            if (n->jl)
                up[nu++] = n->jl->node;
            if (n->jr)
                up[nu++] = n->jr->node;
            for (size_t k = 0; k < n->n_ins + nu; k++) {
                dl_coll_t *m = k < n->n_ins ? n->ins[k] : up[k - n->n_ins];
                if (!m->gc_mark) {
                    m->gc_mark = true;
                    grew |= m->id >= n->id; /* marked behind the sweep: another pass */
                }
            }
        }
    }
    /* Survivors forget what goes away: edges, arrangement lists, readers. */
    for (size_t i = 0; i < nn; i++) {
        dl_coll_t *n = g->nodes[i];
        if (!n->gc_mark)
            continue;
        size_t w = 0;
        for (size_t k = 0; k < n->n_outs; k++)
            if (n->outs[k].to->gc_mark)
                n->outs[w++] = n->outs[k];
        n->n_outs = w;
        w = 0;
        for (size_t k = 0; k < n->n_arrs; k++)
            if (n->arrs[k]->node->gc_mark)
                n->arrs[w++] = n->arrs[k];
        n->n_arrs = w;
        if (n->arr) {
            dl_arr_t *a = n->arr;
            w = 0;
            for (size_t k = 0; k < a->n_readers; k++)
                if (a->readers[k].kind == RD_TRACE || a->readers[k].node->gc_mark)
                    a->readers[w++] = a->readers[k];
            a->n_readers = w;
        }
    }
    /* Free the rest (an arrangement belongs to the node that produces it). */
    size_t w = 0, removed = 0;
    for (size_t i = 0; i < g->n_arrs; i++) {
        dl_arr_t *a = g->arrs[i];
        if (a->node->gc_mark)
            g->arrs[w++] = a;
        else
            arr_free(a);
    }
    g->n_arrs = w;
    w = 0;
    for (size_t i = 0; i < nn; i++) {
        dl_coll_t *n = g->nodes[i];
        if (n->gc_mark) {
            n->id = (uint32_t)w;
            g->nodes[w++] = n;
        } else {
            node_free(n);
            removed++;
        }
    }
    g->n_nodes = w;
    /* Iterate scopes without operators (a scope's children are freed with it only when
     * they are empty too, so check nesting). */
    w = 0;
    for (size_t i = 0; i < g->n_scopes; i++) {
        dl_scope_t *s = g->scopes[i];
        bool used = false;
        for (size_t k = 0; k < g->n_nodes && !used; k++)
            for (const dl_scope_t *x = g->nodes[k]->scope; x && !used; x = x->parent)
                used = x == s;
        if (used)
            g->scopes[w++] = s;
        else
            dl_free(s);
    }
    g->n_scopes = w;
    if (!g->n_nodes) {
        dl_free(g->nodes);
        g->nodes = NULL;
        g->cap_nodes = 0;
    }
    if (!g->n_arrs) {
        dl_free(g->arrs);
        g->arrs = NULL;
    }
    if (!g->n_scopes) {
        dl_free(g->scopes);
        g->scopes = NULL;
    }
    if (out_removed)
        *out_removed = removed;
    return 0;
}
