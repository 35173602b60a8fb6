/*
 * registry.c: the subscription registry: subscribe(query, inputs, options) returns a
 * subscription; subscriptions to the same normalized query with equal inputs (and equal
 * watched dimensions) share one live source, reference counted; the last unsubscribe
 * closes the source and returns its memory. pump() fans each source's completed-time
 * deltas out to its subscribers.
 *
 * It does not compute anything: a source (dl_source_vtable_t) does: Datalog live queries
 * (qsrc.c), dataflow captures (capsrc.c), or the caller's own (tests use a filter over an
 * in-memory collection). Single-threaded: the engine thread calls every function here;
 * consumers may close their subscriptions from any thread (reaped at the next pump).
 * DESIGN-NOTES §4 ("identical queries share one dataflow"); docs/subscribe.md "Registry".
 *
 * Design notes.
 * 1. An entry is (normalized text, inputs, n_dims) -> (source, arity, subscribers[]). The
 *    registry holds one reference on each subscriber; entries with no subscriber do not
 *    exist (the source is closed when the last one leaves).
 * 2. Snapshot consistency: before a new subscriber of an existing source takes its
 *    snapshot, the source's ready deltas are pumped to the existing subscribers. The
 *    snapshot therefore reflects exactly the times already fanned out, and every later
 *    poll result is strictly newer: the new subscriber neither misses nor repeats a change.
 * 3. One sealed delta is shared by every subscriber of a source (reference counted); a
 *    coalescing subscriber copies it only when it must merge into it.
 * 4. A snapshot may be several messages (a source watching n_dims > 1 coordinates: one per
 *    distinct user coordinate, then the frontier, chained behind the snapshot's first
 *    message: dl__delta_chain, subscribe/subscribe.h). All of them are
 *    delivered inside dl_subscribe, so a new subscriber never waits for a pump to see
 *    the current result, and they are admitted whatever the policy's queue limits
 *    (dl__sub_push_initial).
 */
#include "subscribe/subscribe.h"

#include "base/base.h"

typedef struct entry entry_t;
struct entry {
    entry_t *next;
    uint64_t id;        /* shown in dl_sub_stats.source_id */
    uint64_t key_hash;  /* of the normalized text, inputs and n_dims */
    char *text;         /* normalized query text (heap) */
    dl_value_t *inputs; /* n_inputs values (heap; values are immortal) */
    size_t n_inputs;
    size_t n_dims;
    void *src; /* the source's state */
    size_t arity;
    dl_sub_t **subs; /* n_subs subscribers, one registry reference each */
    size_t n_subs, cap_subs;
};

struct dl_registry {
    dl_source_vtable_t vt;
    void *ctx;
    entry_t *entries;
    uint64_t next_id;
    dl_registry_stats_t st;
};

int dl_registry_new(const dl_source_vtable_t *vt, void *ctx, dl_registry_t **out, dl_error_t *err) {
    *out = NULL;
    if (!vt || !vt->open || !vt->snapshot || !vt->poll || !vt->close)
        return dl_error_set(err, DL_EINVAL,
                            "registry: the source table needs open, snapshot, "
                            "poll and close");
    dl_registry_t *r = dl_calloc(1, sizeof *r);
    if (!r)
        return dl_error_set(err, DL_ENOMEM, "registry: out of memory");
    r->vt = *vt;
    r->ctx = ctx;
    r->next_id = 1;
    *out = r;
    return 0;
}

static void entry_update_shares(entry_t *e) {
    for (size_t i = 0; i < e->n_subs; i++)
        dl__sub_set_source(e->subs[i], e->id, e->n_subs);
}

/* Closes the source and frees the entry; it must already be unlinked. Its subscribers are
 * ended with `code` and released. */
static void entry_free(dl_registry_t *r, entry_t *e, int code) {
    for (size_t i = 0; i < e->n_subs; i++) {
        dl_sub_end(e->subs[i], code);
        dl__sub_set_source(e->subs[i], e->id, 0);
        dl_sub_unref(e->subs[i]);
    }
    if (e->src) {
        r->vt.close(e->src);
        r->st.sources_closed++;
        r->st.n_sources--;
    }
    r->st.n_subs -= e->n_subs;
    dl_free(e->subs);
    dl_free(e->text);
    dl_free(e->inputs);
    dl_free(e);
}

static void entry_unlink(dl_registry_t *r, entry_t *e) {
    for (entry_t **p = &r->entries; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            return;
        }
}

void dl_registry_free(dl_registry_t *r) {
    if (!r)
        return;
    while (r->entries) {
        entry_t *e = r->entries;
        r->entries = e->next;
        entry_free(r, e, 0);
    }
    dl_free(r);
}

void dl_registry_stats(const dl_registry_t *r, dl_registry_stats_t *out) { *out = r->st; }

/* The canonical text of a query: the source's normalize, or the EDN form re-printed. */
static int normalize(dl_registry_t *r, const char *query, char **out, dl_error_t *err) {
    *out = NULL;
    if (r->vt.normalize)
        return r->vt.normalize(r->ctx, query, out, err);
    dl_arena_t ar;
    dl__arena_init(&ar, 4096);
    dl_edn_t *form = NULL;
    int rc = dl__edn_read_one(query, strlen(query), &ar, &form, err);
    if (rc) {
        dl__arena_fini(&ar);
        return rc;
    }
    dl_buf_t b;
    dl__buf_init(&b);
    dl__edn_print(form, &b);
    dl__arena_fini(&ar);
    *out = dl__buf_take(&b);
    return *out ? 0 : dl_error_set(err, DL_ENOMEM, "registry: out of memory");
}

static uint64_t key_hash(const char *text, const dl_value_t *inputs, size_t n, size_t n_dims) {
    uint64_t h = dl__hash_bytes(text, strlen(text));
    h = dl__hash_combine(h, dl_row_hash(inputs, n));
    return dl__hash_combine(h, n_dims);
}

static entry_t *find_entry(dl_registry_t *r, uint64_t h, const char *text, const dl_value_t *inputs,
                           size_t n, size_t n_dims) {
    for (entry_t *e = r->entries; e; e = e->next)
        if (e->key_hash == h && e->n_inputs == n && e->n_dims == n_dims &&
            strcmp(e->text, text) == 0 && dl_row_eq(e->inputs, inputs, n))
            return e;
    return NULL;
}

/* Removes subscriber i from e (releasing the registry's reference). */
static void entry_remove_sub(dl_registry_t *r, entry_t *e, size_t i) {
    dl__sub_set_source(e->subs[i], e->id, 0);
    dl_sub_unref(e->subs[i]);
    e->subs[i] = e->subs[--e->n_subs];
    r->st.n_subs--;
}

/* Fans e's ready deltas out (design note 3), then reaps finished subscribers. Returns the
 * source's poll error, if any (the caller ends and frees the entry). */
static int entry_pump(dl_registry_t *r, entry_t *e, dl_error_t *err) {
    for (;;) {
        dl_delta_t *d = NULL;
        int rc = r->vt.poll(e->src, &d, err);
        if (rc)
            return rc;
        if (!d)
            break;
        for (size_t i = 0; i < e->n_subs; i++) {
            /* Errors end that subscriber only (it is reaped below); a delta that breaks the
             * push rules is a source bug: it ends the subscriber with that code. */
            int prc = dl_sub_push(e->subs[i], d, NULL);
            if (prc && prc != DL_ECLOSED && !dl_sub_is_done(e->subs[i]))
                dl_sub_end(e->subs[i], prc);
        }
        dl_delta_unref(d);
    }
    size_t before = e->n_subs;
    for (size_t i = 0; i < e->n_subs;) {
        if (dl_sub_is_done(e->subs[i]))
            entry_remove_sub(r, e, i);
        else
            i++;
    }
    if (e->n_subs != before)
        entry_update_shares(e);
    return 0;
}

int dl_registry_pump(dl_registry_t *r, dl_error_t *err) {
    int first = 0;
    for (entry_t **p = &r->entries; *p;) {
        entry_t *e = *p;
        int rc = entry_pump(r, e, first ? NULL : err);
        if (rc || e->n_subs == 0) {
            if (rc && !first)
                first = rc;
            *p = e->next;
            entry_free(r, e, rc);
        } else {
            p = &e->next;
        }
    }
    return first;
}

int dl_subscribe(dl_registry_t *r, const char *query, const dl_value_t *inputs, size_t n_inputs,
                 const dl_sub_options_t *opts, dl_sub_t **out, dl_error_t *err) {
    if (!r || !out)
        return dl_error_set(err, DL_EINVAL, "subscribe: NULL registry or out");
    *out = NULL;
    dl_sub_options_t o;
    if (opts)
        o = *opts;
    else
        dl_sub_options_init(&o);
    if (!query || (n_inputs && !inputs))
        return dl_error_set(err, DL_EINVAL, "subscribe: NULL query or inputs");
    if (o.n_dims < 1 || o.n_dims > DL_DELTA_MAX_DIM)
        return dl_error_set(err, DL_EINVAL, "subscribe: n_dims must be 1..%d", DL_DELTA_MAX_DIM);
    char *text = NULL;
    int rc = normalize(r, query, &text, err);
    if (rc)
        return rc;
    uint64_t h = key_hash(text, inputs, n_inputs, o.n_dims);
    entry_t *e = find_entry(r, h, text, inputs, n_inputs, o.n_dims);
    bool fresh = e == NULL;
    if (fresh) {
        e = dl_calloc(1, sizeof *e);
        if (!e || (n_inputs && !(e->inputs = dl_malloc(n_inputs * sizeof *inputs)))) {
            dl_free(e);
            dl_free(text);
            return dl_error_set(err, DL_ENOMEM, "subscribe: out of memory");
        }
        if (n_inputs)
            memcpy(e->inputs, inputs, n_inputs * sizeof *inputs);
        e->n_inputs = n_inputs;
        e->n_dims = o.n_dims;
        e->text = text;
        e->key_hash = h;
        e->id = r->next_id++;
        rc = r->vt.open(r->ctx, text, inputs, n_inputs, o.n_dims, &e->src, &e->arity, err);
        if (rc) {
            e->src = NULL;
            entry_free(r, e, rc);
            return rc;
        }
        r->st.n_sources++;
        r->st.sources_opened++;
        e->next = r->entries;
        r->entries = e;
    } else {
        dl_free(text);
        /* Design note 2: bring the existing subscribers up to the snapshot's time. */
        rc = entry_pump(r, e, err);
        if (rc) {
            entry_unlink(r, e);
            entry_free(r, e, rc);
            return rc;
        }
    }
    dl_sub_t *s = NULL;
    dl_delta_t *snap = NULL;
    if (e->n_subs == e->cap_subs) {
        size_t nc = e->cap_subs ? e->cap_subs * 2 : 4;
        dl_sub_t **ns = dl_realloc(e->subs, nc * sizeof *ns);
        if (!ns) {
            rc = dl_error_set(err, DL_ENOMEM, "subscribe: out of memory");
            goto fail;
        }
        e->subs = ns;
        e->cap_subs = nc;
    }
    rc = dl_sub_new(&o, e->arity, &s, err);
    if (rc)
        goto fail;
    rc = r->vt.snapshot(e->src, &snap, err);
    if (rc)
        goto fail;
    if (dl_delta_kind(snap) != DL_DELTA_DATA || dl_delta_arity(snap) != e->arity) {
        rc = dl_error_set(err, DL_EINTERNAL,
                          "subscribe: the source's snapshot is not a DATA "
                          "delta of its arity");
        goto fail;
    }
    if (!dl_delta_is_snapshot(snap)) {
        if (dl_delta_set_snapshot(snap, true)) {
            /* A sealed snapshot without the flag: copy it (and move its chain). */
            dl_delta_t *c = NULL;
            if (dl__delta_clone(snap, &c)) {
                rc = dl_error_set(err, DL_ENOMEM, "subscribe: out of memory");
                goto fail;
            }
            dl__delta_chain(c, dl__delta_unchain(snap));
            dl_delta_unref(snap);
            snap = c;
            if (dl_delta_set_snapshot(snap, true)) { /* c is unsealed: cannot fail */
                rc = dl_error_set(err, DL_EINTERNAL, "subscribe: snapshot flag");
                goto fail;
            }
        }
    }
    /* The snapshot's message and those chained behind it (design note 4). */
    while (snap) {
        dl_delta_t *next = dl__delta_unchain(snap);
        rc = dl__sub_push_initial(s, snap, err);
        dl_delta_unref(snap);
        snap = next;
        if (rc)
            goto fail;
    }
    e->subs[e->n_subs++] = dl_sub_ref(s);
    r->st.n_subs++;
    entry_update_shares(e);
    *out = s;
    return 0;
fail:
    dl_delta_unref(snap);
    dl_sub_unref(s);
    if (e->n_subs == 0) {
        entry_unlink(r, e);
        entry_free(r, e, rc);
    }
    return rc;
}

void dl_unsubscribe(dl_registry_t *r, dl_sub_t *s) {
    if (!s)
        return;
    for (entry_t *e = r->entries; e; e = e->next)
        for (size_t i = 0; i < e->n_subs; i++)
            if (e->subs[i] == s) {
                dl_sub_close(s); /* the caller's reference */
                entry_remove_sub(r, e, i);
                if (e->n_subs == 0) {
                    entry_unlink(r, e);
                    entry_free(r, e, 0);
                } else {
                    entry_update_shares(e);
                }
                return;
            }
    dl_sub_close(s); /* already reaped: still release the caller's reference */
}
