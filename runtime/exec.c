/*
 * exec.c: the request executor. It owns the store and runs one decoded request at a
 * time against it, producing the reply line (docs/protocol.md, "Operations"). The
 * engine thread (engine.c) and the command line (main.c, embedded mode) both use it, so
 * a request gives the same reply bytes whether it came over TCP, stdio or the CLI.
 *
 * Does not: decode lines (proto.c), own threads or sockets, or handle hello/ping and
 * the per-connection auth state (server.c does, since they concern the connection).
 * Modules that are not built are reported honestly: an op whose backing module is
 * missing answers code "unsupported" with "not available yet: <reason>".
 * Follows ../shared/DESIGN-NOTES.md §3 (transactions all or nothing, acknowledged means
 * durable: the store is opened with DL_SYNC_EVERY unless the caller asks otherwise).
 */
#include "runtime/runtime.h"

#include <ck_pr.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#if DL_HAVE_STORE
#include <deltalog/store.h>
#endif
#if DL_HAVE_DATALOG
#include <deltalog/datalog.h>
#endif
#if DL_HAVE_SUBS
#include <deltalog/subscribe.h>

/* One registry (and its Datalog sources) per distinct "rules" text: a dl_qsrcs_t binds one
 * rule set, and subscriptions share a live query only when their rules are equal too. */
typedef struct subreg {
    struct subreg *next;
    char *rules; /* NULL: no rules */
    dl_qsrcs_t *qs;
    dl_registry_t *reg;
} subreg_t;
#endif

struct dl_exec {
    dl_exec_options_t opt;
    char *data_dir; /* owned copy of opt.data_dir */
    const dl_server_counters_t *counters;
    uint64_t started_ms;
    uint64_t n_requests;
#if DL_HAVE_STORE
    dl_store_t *store;
#endif
#if DL_HAVE_SUBS
    subreg_t *subregs;
    int listen_id;     /* the store listener feeding the live queries; 0 before */
    dl_db_t *sub_db;   /* the snapshot live queries open on (current_db) */
    bool sub_db_stale; /* a commit happened since sub_db was taken */
    uint64_t next_sub; /* wire numbers of subscriptions: 1, 2, ... */
    uint64_t subs_total;
    int listen_rc;        /* first dl_qsrcs_apply failure (out of memory), reported in stats */
    uint64_t pump_errors; /* sources that failed (their subscribers were ended) */
#endif
};
#if DL_HAVE_SUBS
static void subs_close(dl_exec_t *x);
static json_t *subs_stats_json(dl_exec_t *x);
#endif

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool dl__exec_has_store(void) { return DL_HAVE_STORE != 0; }
bool dl__exec_has_datalog(void) { return DL_HAVE_DATALOG != 0; }

/* mkdir -p: creates each missing component of path. */
static int make_dirs(const char *path, dl_error_t *err) {
    char *p = dl_strdup(path);
    if (!p)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    int rc = DL_OK;
    for (char *q = p + 1;; q++) {
        if (*q == '/' || *q == 0) {
            char c = *q;
            *q = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                rc =
                    dl_error_set(err, DL_EIO, "cannot create directory %s: %s", p, strerror(errno));
                break;
            }
            *q = c;
            if (c == 0)
                break;
        }
    }
    dl_free(p);
    if (rc == DL_OK) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            rc = dl_error_set(err, DL_EIO, "%s is not a directory", path);
    }
    return rc;
}

int dl__exec_open(const dl_exec_options_t *opt, dl_exec_t **out, dl_error_t *err) {
    *out = NULL;
    dl_exec_t *x = dl_calloc(1, sizeof *x);
    if (!x)
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    x->opt = *opt;
    x->started_ms = now_ms();
    int rc = DL_OK;
    if (!opt->memory) {
        if (!opt->data_dir) {
            rc = dl_error_set(err, DL_EINVAL, "no data directory given");
            goto fail;
        }
        x->data_dir = dl_strdup(opt->data_dir);
        if (!x->data_dir) {
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
            goto fail;
        }
        x->opt.data_dir = x->data_dir;
        struct stat st;
        if (stat(x->data_dir, &st) != 0) {
            if (!opt->create) {
                rc = dl_error_set(err, DL_ENOTFOUND, "data directory %s does not exist",
                                  x->data_dir);
                goto fail;
            }
            if ((rc = make_dirs(x->data_dir, err)) != DL_OK)
                goto fail;
        } else if (!S_ISDIR(st.st_mode)) {
            rc = dl_error_set(err, DL_EIO, "%s is not a directory", x->data_dir);
            goto fail;
        }
    }
#if DL_HAVE_STORE
    if (opt->memory) {
        rc = dl_store_open_memory(&x->store, err);
    } else {
        dl_store_options_t so;
        memset(&so, 0, sizeof so);
        so.sync_mode = opt->sync_mode;
        rc = dl_store_open(x->data_dir, &so, &x->store, err);
    }
    if (rc != DL_OK) {
        dl_error_prefix(err, "cannot open the store");
        goto fail;
    }
#endif
    *out = x;
    return DL_OK;
fail:
    dl__exec_close(x);
    return rc;
}

void dl__exec_close(dl_exec_t *x) {
    if (!x)
        return;
#if DL_HAVE_SUBS
    subs_close(x);
#endif
#if DL_HAVE_STORE
    dl_store_close(x->store);
#endif
    dl_free(x->data_dir);
    dl_free(x);
}

#if DL_HAVE_STORE
struct dl_store *dl__exec_store(dl_exec_t *x) {
    return x->store;
}
#else
struct dl_store *dl__exec_store(dl_exec_t *x) {
    return NULL;
}
#endif

void dl__exec_set_counters(dl_exec_t *x, const dl_server_counters_t *c) { x->counters = c; }

#define SET(obj, key, val) json_object_set_new((obj), (key), (val))

static json_t *alloc_stats_json(void) {
    dl_alloc_stats_t a;
    dl_alloc_stats(&a);
    int64_t n_sym = 0, sym_bytes = 0;
    dl__sym_stats(&n_sym, &sym_bytes);
    json_t *m = json_object();
    SET(m, "live_bytes", json_integer(a.live_bytes));
    SET(m, "peak_bytes", json_integer(a.peak_bytes));
    SET(m, "live_blocks", json_integer(a.live_blocks));
    SET(m, "symbols", json_integer(n_sym));
    SET(m, "symbol_bytes", json_integer(sym_bytes));
    return m;
}

json_t *dl__exec_status(dl_exec_t *x) {
    json_t *s = json_object();
    if (!s)
        return NULL;
    SET(s, "version", json_string(dl_version()));
    SET(s, "data", x->opt.memory ? json_string(":memory") : json_string(x->data_dir));
#if DL_HAVE_STORE
    dl_store_stats_t st;
    memset(&st, 0, sizeof st);
    dl_store_stats(x->store, &st);
    SET(s, "t", json_integer((json_int_t)st.last_tx));
    SET(s, "datoms", json_integer(st.datoms));
    dl_db_t *db = dl_store_db(x->store);
    if (db) {
        size_t n = dl_db_attrs(db, NULL, 0);
        dl_attr_info_t *attrs = n ? dl_calloc(n, sizeof *attrs) : NULL;
        int64_t user_attrs = 0, dims = 0;
        if (attrs) {
            n = dl_db_attrs(db, attrs, n);
            for (size_t i = 0; i < n; i++) {
                bool builtin = strncmp(attrs[i].ident, "db/", 3) == 0 ||
                               strncmp(attrs[i].ident, "db.", 3) == 0;
                if (attrs[i].time_dimension)
                    dims++;
                else if (!builtin)
                    user_attrs++;
            }
            dl_free(attrs);
        }
        SET(s, "attributes", json_integer(user_attrs));
        SET(s, "dimensions", json_integer(dims));
        dl_db_unref(db);
    }
    SET(s, "history_datoms", json_integer(st.history_datoms));
    if (!x->opt.memory) {
        SET(s, "log_records", json_integer((json_int_t)st.log_records));
        SET(s, "log_stored_bytes", json_integer((json_int_t)st.log_stored_bytes));
        SET(s, "compression_ratio", json_real(st.compression_ratio));
        SET(s, "checkpoint_tx", json_integer((json_int_t)st.checkpoint_tx));
        SET(s, "bytes_on_disk", json_integer((json_int_t)st.bytes_on_disk));
        SET(s, "fsyncs", json_integer((json_int_t)st.fsyncs));
        SET(s, "group_commits", json_integer((json_int_t)st.group_commits));
    }
#else
    SET(s, "store", json_string("not available yet: the store module (store/) is not built"));
#endif
    return s;
}

/* ---- helpers for store-backed ops ------------------------------------------------------ */

typedef struct result {
    int rc;
    dl_error_t err;
    json_t *body; /* success body, new */
} result_t;

#define FAIL(res, code, ...) (dl_error_set(&(res)->err, (code), __VA_ARGS__), (res)->rc = (code))

#if DL_HAVE_STORE

/* An attribute or dimension name in a request: "ns/name", ":ns/name" or {"kw":"ns/name"}.
 * Returns the ident without colon (borrowed from j) or NULL. */
static const char *ident_of(const json_t *j) {
    const char *s = NULL;
    if (json_is_string(j))
        s = json_string_value(j);
    else if (json_is_object(j) && json_object_size(j) == 1 &&
             json_is_string(json_object_get(j, "kw")))
        s = json_string_value(json_object_get(j, "kw"));
    if (s && s[0] == ':')
        s++;
    return s && *s ? s : NULL;
}

/* Resolves the "e" field: an entity id, {"ref":N}, an ident, or a lookup ref [attr, v]. */
static int resolve_entity(const dl_db_t *db, const json_t *e, int64_t *out, dl_error_t *err) {
    if (json_is_integer(e)) {
        *out = json_integer_value(e);
        return DL_OK;
    }
    if (json_is_object(e) && json_is_integer(json_object_get(e, "ref")) &&
        json_object_size(e) == 1) {
        *out = json_integer_value(json_object_get(e, "ref"));
        return DL_OK;
    }
    if (json_is_array(e)) {
        if (json_array_size(e) != 2)
            return dl_error_set(err, DL_EINVAL, "a lookup ref is [attribute, value]");
        const char *a = ident_of(json_array_get(e, 0));
        if (!a)
            return dl_error_set(err, DL_ETYPE, "a lookup ref's attribute must be a keyword");
        dl_attr_info_t info;
        int rc = dl_db_attr(db, a, &info, err);
        if (rc != DL_OK)
            return rc;
        dl_value_t v;
        if ((rc = dl__json_to_value(json_array_get(e, 1), &v, err)) != DL_OK)
            return rc;
        if (info.type == DL_T_REF && v.type == DL_T_INT)
            v = dl_value_ref(v.as.i);
        return dl_db_lookup(db, info.id, v, out, err);
    }
    const char *ident = ident_of(e);
    if (!ident)
        return dl_error_set(err, DL_ETYPE,
                            "\"e\" must be an entity id, {\"ref\":id}, an ident or a lookup ref");
    return dl_db_ident(db, ident, out, err);
}

/* The ident of attribute id, or its decimal id when unknown (printed into buf). */
static const char *attr_name(const dl_db_t *db, int64_t a, dl_attr_info_t *info, char *buf,
                             size_t cap) {
    if (dl_db_attr_by_id(db, a, info, NULL) == DL_OK && info->ident)
        return info->ident;
    memset(info, 0, sizeof *info);
    snprintf(buf, cap, "%lld", (long long)a);
    return buf;
}

static json_t *value_json(dl_value_t v) { return dl__json_from_value(v); }

static json_t *tx_time_json(const uint64_t *t, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((json_int_t)t[i]));
    return a;
}

/* Appends {:db/id "datomic.tx" :dim t ...} built from the "time" object to EDN tx data. */
static int edn_with_time(const char *text, size_t len, const json_t *time, dl_buf_t *out,
                         dl_error_t *err) {
    dl_arena_t ar;
    dl__arena_init(&ar, 4096);
    dl_edn_t *form = NULL;
    int rc = dl__edn_read_one(text, len, &ar, &form, err);
    if (rc == DL_OK && (!form || form->kind != DL_EDN_VECTOR))
        rc = dl_error_set(err, DL_EPARSE, "transaction data must be a vector");
    if (rc == DL_OK) {
        dl__buf_putc(out, '[');
        for (size_t i = 0; i < form->n; i++) {
            dl__edn_print(form->items[i], out);
            dl__buf_putc(out, ' ');
        }
        dl__buf_puts(out, "{:db/id \"datomic.tx\"");
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)time, k, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                rc = dl_error_set(err, DL_ETYPE,
                                  "time coordinate \"%s\" must be a "
                                  "non-negative integer",
                                  k);
                break;
            }
            dl__buf_printf(out, " :%s %lld", k[0] == ':' ? k + 1 : k,
                           (long long)json_integer_value(v));
        }
        dl__buf_puts(out, "}]");
        if (out->oom && rc == DL_OK)
            rc = dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    dl__arena_fini(&ar);
    return rc;
}

/* Commits with the store's blocking call, or, when pending is non-NULL, with its _begin
 * call: *pending then receives the transaction number to wait for (0: nothing pending). */
static int store_transact(dl_exec_t *x, bool edn, const char *text, size_t len, dl_tx_report_t *rep,
                          uint64_t *pending, dl_error_t *err) {
    if (pending)
        return edn ? dl_store_transact_edn_begin(x->store, text, len, rep, pending, err)
                   : dl_store_transact_json_begin(x->store, text, len, rep, pending, err);
    return edn ? dl_store_transact_edn(x->store, text, len, rep, err)
               : dl_store_transact_json(x->store, text, len, rep, err);
}

static void op_transact(dl_exec_t *x, const json_t *msg, result_t *res, uint64_t *pending) {
    const json_t *tx = json_object_get(msg, "tx");
    const json_t *time = json_object_get(msg, "time");
    dl_tx_report_t rep;
    memset(&rep, 0, sizeof rep);
    int rc;
    if (json_is_string(tx)) {
        const char *text = json_string_value(tx);
        size_t len = json_string_length(tx);
        if (time && json_object_size(time)) {
            dl_buf_t b;
            dl__buf_init(&b);
            rc = edn_with_time(text, len, time, &b, &res->err);
            if (rc == DL_OK)
                rc = store_transact(x, true, b.data, b.len, &rep, pending, &res->err);
            dl__buf_fini(&b);
        } else {
            rc = store_transact(x, true, text, len, &rep, pending, &res->err);
        }
    } else if (!(time && json_object_size(time))) {
        /* The JSON form, decoded once: the store reads the value the request carried. */
        rc = pending ? dl_store_transact_json_value_begin(x->store, tx, &rep, pending, &res->err)
                     : dl_store_transact_json_value(x->store, tx, &rep, &res->err);
    } else {
        json_t *data = json_deep_copy(tx);
        if (data) {
            json_t *m = json_object();
            json_object_set_new(m, "db/id", json_string("datomic.tx"));
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)time, k, v)
                json_object_set(m, k[0] == ':' ? k + 1 : k, v);
            json_array_append_new(data, m);
        }
        char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
        json_decref(data);
        if (!text) {
            FAIL(res, DL_ENOMEM, "out of memory");
            return;
        }
        rc = store_transact(x, false, text, strlen(text), &rep, pending, &res->err);
        free(text);
    }
    if (rc != DL_OK) {
        res->rc = rc;
        return;
    }
    json_t *b = json_object();
    SET(b, "t", json_integer((json_int_t)rep.tx));
    SET(b, "time", tx_time_json(rep.time, rep.n_time));
    json_t *tids = json_object();
    for (size_t i = 0; i < rep.n_tempids; i++)
        SET(tids, rep.tempids[i].tempid, json_integer(rep.tempids[i].id));
    SET(b, "tempids", tids);
    SET(b, "datoms", json_integer((json_int_t)rep.n_datoms));
    dl_tx_report_fini(&rep);
    res->body = b;
}

static void op_entity(dl_db_t *snap, const json_t *msg, result_t *res) {
    dl_db_t *db = snap;
    if (!db) {
        FAIL(res, DL_ENOMEM, "out of memory");
        return;
    }
    const json_t *as_of = json_object_get(msg, "as_of");
    if (as_of) {
        dl_db_t *v = dl_db_as_of(db, (uint64_t)json_integer_value(as_of));
        dl_db_unref(db);
        db = v;
        if (!db) {
            FAIL(res, DL_ENOMEM, "out of memory");
            return;
        }
    }
    int64_t e = 0;
    dl_datom_t *ds = NULL;
    size_t n = 0;
    int rc = resolve_entity(db, json_object_get(msg, "e"), &e, &res->err);
    if (rc == DL_OK)
        rc = dl_db_entity(db, e, &ds, &n, &res->err);
    if (rc != DL_OK) {
        res->rc = rc;
        dl_db_unref(db);
        return;
    }
    json_t *ent = json_object();
    SET(ent, "db/id", json_integer(e));
    for (size_t i = 0; i < n; i++) {
        dl_attr_info_t info;
        char buf[32];
        const char *name = attr_name(db, ds[i].a, &info, buf, sizeof buf);
        json_t *v = value_json(ds[i].v);
        if (info.many) {
            json_t *arr = json_object_get(ent, name);
            if (!arr) {
                arr = json_array();
                SET(ent, name, arr);
            }
            json_array_append_new(arr, v);
        } else {
            SET(ent, name, v);
        }
    }
    dl_free(ds);
    json_t *b = json_object();
    SET(b, "e", json_integer(e));
    SET(b, "t",
        as_of ? json_integer(json_integer_value(as_of))
              : json_integer((json_int_t)dl_db_basis_tx(db)));
    SET(b, "entity", ent);
    res->body = b;
    dl_db_unref(db);
}

static void op_history(dl_db_t *snap, const json_t *msg, result_t *res) {
    dl_db_t *cur = snap;
    dl_db_t *db = cur ? dl_db_history(cur) : NULL;
    dl_db_unref(cur);
    if (!db) {
        FAIL(res, DL_ENOMEM, "out of memory");
        return;
    }
    int64_t e = 0;
    int rc = resolve_entity(db, json_object_get(msg, "e"), &e, &res->err);
    dl_datom_t prefix;
    memset(&prefix, 0, sizeof prefix);
    prefix.e = e;
    int n_comp = 1;
    const json_t *a = json_object_get(msg, "a");
    if (rc == DL_OK && a) {
        const char *ident = ident_of(a);
        dl_attr_info_t info;
        if (!ident)
            rc = dl_error_set(&res->err, DL_ETYPE, "\"a\" must be an attribute keyword");
        else if ((rc = dl_db_attr(db, ident, &info, &res->err)) == DL_OK) {
            prefix.a = info.id;
            n_comp = 2;
        }
    }
    dl_iter_t *it = NULL;
    if (rc == DL_OK)
        rc = dl_db_datoms(db, DL_INDEX_EAVT, &prefix, n_comp, NULL, &it, &res->err);
    if (rc != DL_OK) {
        res->rc = rc;
        dl_db_unref(db);
        return;
    }
    json_t *rows = json_array();
    dl_datom_t d;
    while (dl_iter_next(it, &d)) {
        dl_attr_info_t info;
        char buf[32];
        json_t *row = json_array();
        json_array_append_new(row, json_integer(d.e));
        json_array_append_new(row, json_string(attr_name(db, d.a, &info, buf, sizeof buf)));
        json_array_append_new(row, value_json(d.v));
        json_array_append_new(row, json_integer(d.tx));
        json_array_append_new(row, json_boolean(d.added));
        json_array_append_new(rows, row);
    }
    dl_iter_free(it);
    dl_db_unref(db);
    json_t *b = json_object();
    SET(b, "e", json_integer(e));
    SET(b, "datoms", rows);
    res->body = b;
}

static const char *unique_name(int u) {
    return u == DL_UNIQUE_IDENTITY ? "identity" : u == DL_UNIQUE_VALUE ? "value" : NULL;
}

static void op_schema(dl_db_t *snap, result_t *res) {
    dl_db_t *db = snap;
    if (!db) {
        FAIL(res, DL_ENOMEM, "out of memory");
        return;
    }
    size_t n = dl_db_attrs(db, NULL, 0);
    dl_attr_info_t *attrs = dl_calloc(n ? n : 1, sizeof *attrs);
    if (!attrs) {
        dl_db_unref(db);
        FAIL(res, DL_ENOMEM, "out of memory");
        return;
    }
    n = dl_db_attrs(db, attrs, n);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        const dl_attr_info_t *a = &attrs[i];
        json_t *o = json_object();
        SET(o, "ident", json_string(a->ident));
        SET(o, "id", json_integer(a->id));
        SET(o, "type", json_string(a->type == DL_T_REF ? "ref" : dl_type_name(a->type)));
        SET(o, "cardinality", json_string(a->many ? "many" : "one"));
        SET(o, "unique",
            unique_name(a->unique) ? json_string(unique_name(a->unique)) : json_null());
        SET(o, "index", json_boolean(a->indexed));
        SET(o, "component", json_boolean(a->component));
        SET(o, "no_history", json_boolean(a->no_history));
        SET(o, "time_dimension", json_boolean(a->time_dimension));
        json_array_append_new(arr, o);
    }
    dl_free(attrs);
    json_t *b = json_object();
    SET(b, "t", json_integer((json_int_t)dl_db_basis_tx(db)));
    SET(b, "attrs", arr);
    dl_db_unref(db);
    res->body = b;
}

static void op_advance(dl_exec_t *x, const json_t *msg, result_t *res, uint64_t *pending) {
    const char *ident = ident_of(json_object_get(msg, "dim"));
    json_int_t to = json_integer_value(json_object_get(msg, "to"));
    if (!ident) {
        FAIL(res, DL_ETYPE, "\"dim\" must be a dimension keyword");
        return;
    }
    if (to < 0) {
        FAIL(res, DL_ERANGE, "\"to\" must be non-negative");
        return;
    }
    dl_value_t dim;
    int rc = dl_value_text(DL_T_KEYWORD, ident, strlen(ident), &dim, &res->err);
    uint64_t tx = 0;
    if (rc == DL_OK)
        rc = pending ? dl_store_advance_begin(x->store, dim, (uint64_t)to, pending, &res->err)
                     : dl_store_advance(x->store, dim, (uint64_t)to, &tx, &res->err);
    if (pending)
        tx = *pending;
    if (rc != DL_OK) {
        res->rc = rc;
        return;
    }
    json_t *b = json_object();
    SET(b, "t", json_integer((json_int_t)tx));
    res->body = b;
}
#endif /* DL_HAVE_STORE */

#if DL_HAVE_DATALOG
static const char *find_name(dl_find_kind_t k) {
    switch (k) {
        case DL_FIND_COLL:
            return "coll";
        case DL_FIND_TUPLE:
            return "tuple";
        case DL_FIND_SCALAR:
            return "scalar";
        default:
            return "rel";
    }
}

/* The EDN text "[a1 a2 ...]" of the "args" array (values in the wire encoding). */
static int args_edn(const json_t *args, dl_buf_t *out, dl_error_t *err) {
    dl__buf_putc(out, '[');
    for (size_t i = 0; args && i < json_array_size(args); i++) {
        if (i)
            dl__buf_putc(out, ' ');
        dl__format_edn(json_array_get(args, i), out);
    }
    dl__buf_putc(out, ']');
    return out->oom ? dl_error_set(err, DL_ENOMEM, "out of memory") : DL_OK;
}

static void op_query(dl_db_t *snap, const json_t *msg, bool explain, result_t *res) {
    const json_t *q = json_object_get(msg, "q");
    const json_t *rules = json_object_get(msg, "rules");
    const json_t *as_of = json_object_get(msg, "as_of");
    dl_db_t *db = snap;
    if (db && as_of) {
        dl_db_t *v = dl_db_as_of(db, (uint64_t)json_integer_value(as_of));
        dl_db_unref(db);
        db = v;
    }
    if (!db) {
        FAIL(res, DL_ENOMEM, "out of memory");
        return;
    }
    dl_query_t *query = NULL;
    dl_query_result_t *qr = NULL;
    dl_buf_t a;
    dl__buf_init(&a);
    int rc = dl_query_parse(json_string_value(q), json_string_length(q),
                            rules ? json_string_value(rules) : NULL,
                            rules ? json_string_length(rules) : 0, db, &query, &res->err);
    if (rc == DL_OK)
        rc = args_edn(json_object_get(msg, "args"), &a, &res->err);
    const char *engine = "compiled";
#if DL_HAVE_QUERY_RUN
    if (rc == DL_OK && explain) {
        /* The plan a subscription keeps, and the one a one-shot `query` runs. */
        dl_live_t *live = NULL;
        char *once = NULL;
        rc = dl_live_new(query, db, a.data, a.len, &live, &res->err);
        char *plan = rc == DL_OK ? dl_live_explain(live) : NULL;
        if (rc == DL_OK && !plan)
            rc = FAIL(res, DL_ENOMEM, "out of memory");
        if (rc == DL_OK)
            rc = dl_query_explain_oneshot(query, db, a.data, a.len, false, &once, &res->err);
        if (rc == DL_OK) {
            json_t *b = json_object();
            SET(b, "plan", json_string(plan));
            SET(b, "oneshot_plan", json_string(once));
            res->body = b;
        }
        dl_free(plan);
        dl_free(once);
        dl_live_free(live);
    } else if (rc == DL_OK) {
        rc = dl_query_run(query, db, a.data, a.len, &qr, &res->err);
        if (rc == DL_EUNSUPPORTED) {
            /* The compiler does not handle this construct yet; the reference evaluator
             * does, and a one-shot answer is the same either way. Said in "engine". */
            dl_error_clear(&res->err);
            engine = "reference";
            rc = dl_query_eval_naive(query, &(dl_query_source_t){"$", db}, 1, a.data, a.len, &qr,
                                     &res->err);
        }
    }
#else
    if (rc == DL_OK && explain)
        rc = FAIL(res, DL_EUNSUPPORTED,
                  "not available yet: explain needs the Datalog-to-dataflow compiler, which "
                  "this build does not include");
    else if (rc == DL_OK) {
        engine = "reference";
        rc = dl_query_eval_naive(query, &(dl_query_source_t){"$", db}, 1, a.data, a.len, &qr,
                                 &res->err);
    }
#endif
    if (rc == DL_OK && qr) {
        char *text = dl_query_result_to_edn(qr);
        dl_arena_t ar;
        dl__arena_init(&ar, 1 << 14);
        dl_edn_t *form = NULL;
        if (!text)
            rc = FAIL(res, DL_ENOMEM, "out of memory");
        else if ((rc = dl__edn_read_one(text, strlen(text), &ar, &form, &res->err)) != DL_OK)
            dl_error_prefix(&res->err, "internal: reading the query result back");
        if (rc == DL_OK) {
            dl_find_kind_t kind = dl_query_find_kind(query);
            json_t *result = dl__format_edn_to_json(form);
            json_t *rows = json_array();
            if (kind == DL_FIND_REL) {
                json_array_extend(rows, result);
            } else if (kind == DL_FIND_COLL) {
                for (size_t i = 0; i < json_array_size(result); i++)
                    json_array_append_new(rows, json_pack("[O]", json_array_get(result, i)));
            } else if (!json_is_null(result)) {
                json_array_append_new(rows, kind == DL_FIND_TUPLE ? json_incref(result)
                                                                  : json_pack("[O]", result));
            }
            json_t *b = json_object();
            SET(b, "find", json_string(find_name(kind)));
            SET(b, "rows", rows);
            SET(b, "result", result);
            SET(b, "t",
                json_integer((json_int_t)(as_of ? json_integer_value(as_of)
                                                : (json_int_t)dl_db_basis_tx(db))));
            SET(b, "engine", json_string(engine));
            res->body = b;
        }
        dl__arena_fini(&ar);
        dl_free(text);
    }
    if (rc != DL_OK)
        res->rc = rc;
    dl_query_result_free(qr);
    dl_query_free(query);
    dl__buf_fini(&a);
    dl_db_unref(db);
}
#endif /* DL_HAVE_DATALOG */

static void op_stats(dl_exec_t *x, result_t *res) {
    json_t *b = json_object();
    json_t *srv = json_object();
    SET(srv, "uptime_ms", json_integer((json_int_t)(now_ms() - x->started_ms)));
    SET(srv, "requests_executed", json_integer((json_int_t)x->n_requests));
    if (x->counters) {
        dl_server_counters_t *c = (dl_server_counters_t *)x->counters;
        SET(srv, "connections", json_integer((json_int_t)ck_pr_load_64(&c->connections)));
        SET(srv, "connections_total",
            json_integer((json_int_t)ck_pr_load_64(&c->connections_total)));
        SET(srv, "requests", json_integer((json_int_t)ck_pr_load_64(&c->requests)));
        SET(srv, "errors", json_integer((json_int_t)ck_pr_load_64(&c->errors)));
        SET(srv, "bytes_in", json_integer((json_int_t)ck_pr_load_64(&c->bytes_in)));
        SET(srv, "bytes_out", json_integer((json_int_t)ck_pr_load_64(&c->bytes_out)));
        SET(srv, "out_queued", json_integer((json_int_t)ck_pr_load_64(&c->out_queued)));
        SET(srv, "out_queued_peak", json_integer((json_int_t)ck_pr_load_64(&c->out_queued_peak)));
        SET(srv, "sub_messages", json_integer((json_int_t)ck_pr_load_64(&c->sub_messages)));
    }
    SET(b, "store", dl__exec_status(x));
    SET(b, "server", srv);
    SET(b, "memory", alloc_stats_json());
#if DL_HAVE_SUBS
    SET(b, "subscriptions", subs_stats_json(x));
#endif
    res->body = b;
}

/* Builds the reply line of a finished op. */
static char *finish(result_t *res, const dl_request_t *req, size_t *out_len, bool *out_failed) {
    if (res->rc == DL_OK && !res->body)
        FAIL(res, DL_ENOMEM, "out of memory building the reply");
    if (out_failed)
        *out_failed = res->rc != DL_OK;
    if (res->rc != DL_OK) {
        json_decref(res->body);
        return dl__proto_reply_error(req->id, res->rc, res->err.message, out_len);
    }
    return dl__proto_reply_ok(req->id, res->body, out_len);
}

/* ---- subscriptions (engine thread) -------------------------------------------------------- */

bool dl__exec_has_subs(void) { return DL_HAVE_SUBS != 0; }

#if DL_HAVE_SUBS
/* dl_qsrc_env_t.current_db: the latest snapshot, retaken only after a commit, so the
 * pointer handed out stays valid until the next dl_qsrcs_apply (subscribe.h). */
static int subs_current_db(void *ctx, const struct dl_db **out_db, uint64_t *out_time,
                           size_t *out_n_time, dl_error_t *err) {
    dl_exec_t *x = ctx;
    if (!x->sub_db || x->sub_db_stale) {
        dl_db_t *db = dl_store_db(x->store);
        if (!db)
            return dl_error_set(err, DL_ENOMEM, "out of memory");
        dl_db_unref(x->sub_db);
        x->sub_db = db;
        x->sub_db_stale = false;
    }
    *out_db = x->sub_db;
    uint64_t basis = dl_db_basis_tx(x->sub_db);
    size_t n = basis ? dl_db_tx_time(x->sub_db, basis, out_time, DL_DELTA_MAX_DIM) : 0;
    if (n == 0) {
        out_time[0] = basis;
        n = 1;
    }
    *out_n_time = n > DL_DELTA_MAX_DIM ? DL_DELTA_MAX_DIM : n;
    return DL_OK;
}

/* The store listener: every commit feeds every live query; deltas go out at the pump. */
static void subs_on_commit(void *ctx, const dl_commit_t *c) {
    dl_exec_t *x = ctx;
    /* Let go of the old snapshot now: holding it would keep the tree nodes this commit
     * replaced alive until the next subscribe. */
    dl_db_unref(x->sub_db);
    x->sub_db = NULL;
    x->sub_db_stale = true;
    for (subreg_t *r = x->subregs; r; r = r->next) {
        int rc = dl_qsrcs_apply(r->qs, c, NULL);
        if (rc && !x->listen_rc)
            x->listen_rc = rc;
    }
}

static void subreg_free(subreg_t *r) {
    dl_registry_free(r->reg); /* ends every subscription (code 0) */
    dl_qsrcs_free(r->qs);
    dl_free(r->rules);
    dl_free(r);
}

static void subs_close(dl_exec_t *x) {
    if (x->listen_id > 0)
        dl_store_unlisten(x->store, x->listen_id);
    x->listen_id = 0;
    while (x->subregs) {
        subreg_t *r = x->subregs;
        x->subregs = r->next;
        subreg_free(r);
    }
    dl_db_unref(x->sub_db);
    x->sub_db = NULL;
}

/* The registry for a rule set (rules NULL: none), created on first use. */
static subreg_t *subs_registry(dl_exec_t *x, const char *rules, dl_error_t *err) {
    for (subreg_t *r = x->subregs; r; r = r->next)
        if ((!rules && !r->rules) || (rules && r->rules && strcmp(rules, r->rules) == 0))
            return r;
    if (x->listen_id == 0 && dl_store_listen(x->store, subs_on_commit, x, &x->listen_id, err))
        return NULL;
    subreg_t *r = dl_calloc(1, sizeof *r);
    if (!r || (rules && !(r->rules = dl_strdup(rules)))) {
        dl_free(r);
        dl_error_set(err, DL_ENOMEM, "out of memory");
        return NULL;
    }
    dl_qsrc_env_t env = {subs_current_db, x, rules};
    if (dl_qsrcs_new(&env, &r->qs, err) ||
        dl_registry_new(dl_qsrcs_vtable(), r->qs, &r->reg, err)) {
        dl_qsrcs_free(r->qs);
        dl_free(r->rules);
        dl_free(r);
        return NULL;
    }
    r->next = x->subregs;
    x->subregs = r;
    return r;
}

void dl__exec_pump(dl_exec_t *x) {
    for (subreg_t **p = &x->subregs; *p;) {
        subreg_t *r = *p;
        /* A source's failure ends its own subscribers with its code (registry); nothing
         * else to do with the error here. */
        if (dl_registry_pump(r->reg, NULL) != DL_OK)
            x->pump_errors++;
        dl_registry_stats_t st;
        dl_registry_stats(r->reg, &st);
        if (st.n_sources == 0 && r->rules) { /* an unused rule set: let it go */
            *p = r->next;
            subreg_free(r);
        } else {
            p = &r->next;
        }
    }
}

static json_t *subs_stats_json(dl_exec_t *x) {
    dl__exec_pump(x); /* reaps closed subscriptions first, so the counts are current */
    size_t n_sources = 0, n_subs = 0, n_queries = 0;
    uint64_t opened = 0, closed = 0;
    for (subreg_t *r = x->subregs; r; r = r->next) {
        dl_registry_stats_t st;
        dl_registry_stats(r->reg, &st);
        n_sources += st.n_sources;
        n_subs += st.n_subs;
        opened += st.sources_opened;
        closed += st.sources_closed;
        n_queries += dl_qsrcs_count(r->qs);
    }
    json_t *j = json_object();
    SET(j, "subscriptions", json_integer((json_int_t)n_subs));
    SET(j, "dataflows", json_integer((json_int_t)n_sources));
    SET(j, "live_queries", json_integer((json_int_t)n_queries));
    SET(j, "dataflows_opened", json_integer((json_int_t)opened));
    SET(j, "dataflows_closed", json_integer((json_int_t)closed));
    SET(j, "subscriptions_total", json_integer((json_int_t)x->subs_total));
    SET(j, "failed_dataflows", json_integer((json_int_t)x->pump_errors));
    if (x->listen_rc)
        SET(j, "feed_error", json_string(dl_err_name(x->listen_rc)));
    return j;
}

static int parse_policy(const json_t *msg, dl_sub_options_t *o, dl_error_t *err) {
    const json_t *p = json_object_get(msg, "policy");
    if (p) {
        const char *s = json_string_value(p);
        if (strcmp(s, "coalesce") == 0)
            o->policy = DL_SUB_COALESCE;
        else if (strcmp(s, "block") == 0)
            o->policy = DL_SUB_BLOCK;
        else if (strcmp(s, "drop") == 0)
            o->policy = DL_SUB_DROP;
        else
            return dl_error_set(err, DL_EINVAL,
                                "field \"policy\" must be \"coalesce\", \"block\" or \"drop\", "
                                "not \"%.64s\"",
                                s);
    }
    const json_t *lim = json_object_get(msg, "limits");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)lim, k, v) {
        if (!json_is_integer(v))
            return dl_error_set(err, DL_ETYPE, "limits.%.64s must be an integer", k);
        json_int_t n = json_integer_value(v);
        if (strcmp(k, "max_queued") == 0 && n >= 1)
            o->max_queued = (size_t)n;
        else if (strcmp(k, "max_bytes") == 0 && n >= 0)
            o->max_bytes = (size_t)n;
        else if (strcmp(k, "timeout_ms") == 0)
            o->block_timeout_ms = n;
        else
            return dl_error_set(err, DL_EINVAL,
                                "limits.%.64s: unknown limit or out of range (max_queued >= 1, "
                                "max_bytes >= 0, timeout_ms)",
                                k);
    }
    return DL_OK;
}

/* "dims": the time coordinates a subscription watches, a prefix of the store's time vector
 * [tx, dim1, dim2, ...] (subscribe/ watches the first n_dims coordinates): "tx" (also
 * "system" or "db/tx") for coordinate 0, which is implied when not given first, then the
 * declared dimensions in their order, by ident (":time/shipped" or "time/shipped").
 * Sets o->n_dims and *out_names (new: the coordinates' names, for the reply). */
static int parse_dims(dl_exec_t *x, const json_t *msg, dl_sub_options_t *o, json_t **out_names,
                      dl_error_t *err) {
    *out_names = NULL;
    const json_t *dims = json_object_get(msg, "dims");
    size_t n = json_array_size(dims);
    if (n == 0)
        return DL_OK;
    json_t *names = json_array();
    json_array_append_new(names, json_string("tx"));
    dl_db_t *db = dl_store_db(x->store);
    if (!db) {
        json_decref(names);
        return dl_error_set(err, DL_ENOMEM, "out of memory");
    }
    int rc = DL_OK;
    size_t next = 1; /* the coordinate the next dimension must be */
    for (size_t i = 0; i < n && rc == DL_OK; i++) {
        const char *d = json_string_value(json_array_get(dims, i));
        if (!d) {
            rc = dl_error_set(err, DL_ETYPE, "dims[%zu] must be a string", i);
            break;
        }
        if (strcmp(d, "tx") == 0 || strcmp(d, "system") == 0 || strcmp(d, "db/tx") == 0 ||
            strcmp(d, ":db/tx") == 0) {
            if (i != 0)
                rc = dl_error_set(err, DL_EINVAL,
                                  "dims: system time (\"tx\") is coordinate 0: list it first "
                                  "or not at all");
            continue;
        }
        const char *ident = d[0] == ':' ? d + 1 : d;
        dl_attr_info_t info;
        dl_error_t e2;
        dl_error_clear(&e2);
        if (dl_db_attr(db, ident, &info, &e2) != DL_OK) {
            rc = dl_error_set(err, DL_EUNKNOWN_ATTR, "dims[%zu]: no time dimension :%.100s", i,
                              ident);
        } else if (!info.time_dimension || info.dim < 1) {
            rc = dl_error_set(err, DL_EINVAL,
                              "dims[%zu]: :%.100s is an attribute, not a time dimension "
                              "(:db/timeDimension true)",
                              i, ident);
        } else if ((size_t)info.dim != next) {
            rc = dl_error_set(err, DL_EUNSUPPORTED,
                              "dims[%zu]: :%.100s is coordinate %d of the time vector; a "
                              "subscription watches a prefix of it (tx, then the dimensions "
                              "in the order they were declared), so list the %d before it",
                              i, ident, info.dim, info.dim - 1);
        } else if (next >= DL_DELTA_MAX_DIM) {
            rc = dl_error_set(err, DL_EUNSUPPORTED, "dims: at most %d coordinates can be watched",
                              DL_DELTA_MAX_DIM);
        } else {
            next++;
            json_array_append_new(names, json_string(ident));
        }
    }
    dl_db_unref(db);
    if (rc != DL_OK) {
        json_decref(names);
        return rc;
    }
    o->n_dims = next;
    *out_names = names;
    return DL_OK;
}
#endif

char *dl__exec_subscribe(dl_exec_t *x, const dl_request_t *req, size_t *out_len, bool *out_failed,
                         void **out_sub, uint64_t *out_sub_id) {
    result_t res;
    memset(&res, 0, sizeof res);
    dl_error_clear(&res.err);
    *out_sub = NULL;
    *out_sub_id = 0;
    x->n_requests++;
#if DL_HAVE_SUBS
    const json_t *msg = req->msg;
    const char *q = json_string_value(json_object_get(msg, "q"));
    const json_t *rules = json_object_get(msg, "rules");
    const json_t *args = json_object_get(msg, "args");
    dl_sub_options_t o;
    dl_sub_options_init(&o);
    size_t n_in = json_array_size(args);
    dl_value_t *in = n_in ? dl_calloc(n_in, sizeof *in) : NULL;
    int rc = (n_in && !in) ? FAIL(&res, DL_ENOMEM, "out of memory") : DL_OK;
    json_t *dim_names = NULL;
    if (rc == DL_OK)
        rc = res.rc = parse_policy(msg, &o, &res.err);
    if (rc == DL_OK)
        rc = res.rc = parse_dims(x, msg, &o, &dim_names, &res.err);
    for (size_t i = 0; rc == DL_OK && i < n_in; i++) {
        /* "args" hold values in the wire encoding (values.md), like query's. */
        if ((rc = dl__json_to_value(json_array_get(args, i), &in[i], &res.err)) != DL_OK) {
            dl_error_prefix(&res.err, "args[%zu]", i);
            res.rc = rc;
        }
    }
    subreg_t *r = NULL;
    if (rc == DL_OK && !(r = subs_registry(x, rules ? json_string_value(rules) : NULL, &res.err)))
        rc = res.rc = res.err.code ? res.err.code : DL_ENOMEM;
    dl_sub_t *sub = NULL;
    if (rc == DL_OK && (rc = dl_subscribe(r->reg, q, in, n_in, &o, &sub, &res.err)) != DL_OK)
        res.rc = rc;
    if (rc == DL_OK) {
        dl_sub_stats_t st;
        dl_sub_stats(sub, &st);
        /* Columns come from the query text's :find (the snapshot, which knows the arity,
         * is already queued for the connection). */
        json_t *b = json_object();
        uint64_t id = ++x->next_sub;
        x->subs_total++;
        SET(b, "sub", json_integer((json_int_t)id));
        SET(b, "columns", dl__format_find_columns(q, 0));
        SET(b, "policy",
            json_string(o.policy == DL_SUB_BLOCK  ? "block"
                        : o.policy == DL_SUB_DROP ? "drop"
                                                  : "coalesce"));
        SET(b, "shared_with", json_integer((json_int_t)st.shared_with));
        if (dim_names && json_array_size(dim_names) > 1) /* "time" and "frontier" coords */
            SET(b, "dims", json_incref(dim_names));
        res.body = b;
        *out_sub = sub;
        *out_sub_id = id;
    }
    json_decref(dim_names);
    dl_free(in);
#else
    (void)x;
    FAIL(&res, DL_EUNSUPPORTED,
         "not available yet: op subscribe needs live queries (subscribe/, datalog/ and "
         "dataflow/), which this build does not include");
#endif
    return finish(&res, req, out_len, out_failed);
}

#if !DL_HAVE_SUBS
void dl__exec_pump(dl_exec_t *x) { (void)x; }
#endif

bool dl__exec_is_read(dl_req_op_t op) {
#if DL_HAVE_STORE
    return op == DL_REQ_ENTITY || op == DL_REQ_HISTORY || op == DL_REQ_SCHEMA ||
           (DL_HAVE_DATALOG && (op == DL_REQ_QUERY || op == DL_REQ_EXPLAIN));
#else
    (void)op;
    return false;
#endif
}

void *dl__exec_snapshot(dl_exec_t *x) {
    x->n_requests++;
#if DL_HAVE_STORE
    return dl_store_db(x->store);
#else
    return NULL;
#endif
}

void dl__exec_snapshot_release(void *snap) {
#if DL_HAVE_STORE
    dl_db_unref(snap);
#endif
}

char *dl__exec_run_read(const dl_request_t *req, void *snap, size_t *out_len, bool *out_failed) {
    result_t res;
    memset(&res, 0, sizeof res);
    dl_error_clear(&res.err);
#if DL_HAVE_STORE
    /* The op takes the snapshot reference (views are built on it and released). */
    if (!snap)
        FAIL(&res, DL_ENOMEM, "out of memory");
    else if (req->op == DL_REQ_ENTITY)
        op_entity(snap, req->msg, &res);
    else if (req->op == DL_REQ_HISTORY)
        op_history(snap, req->msg, &res);
    else if (req->op == DL_REQ_SCHEMA)
        op_schema(snap, &res);
#if DL_HAVE_DATALOG
    else if (req->op == DL_REQ_QUERY || req->op == DL_REQ_EXPLAIN)
        op_query(snap, req->msg, req->op == DL_REQ_EXPLAIN, &res);
#endif
    else {
        dl_db_unref(snap);
        FAIL(&res, DL_EINTERNAL, "op %s is not a read", dl__proto_op_name(req->op));
    }
#else
    (void)snap;
    FAIL(&res, DL_EINTERNAL, "no reads without the store");
#endif
    return finish(&res, req, out_len, out_failed);
}

char *dl__exec_run(dl_exec_t *x, const dl_request_t *req, size_t *out_len, bool *out_failed) {
    if (dl__exec_is_read(req->op))
        return dl__exec_run_read(req, dl__exec_snapshot(x), out_len, out_failed);
    result_t res;
    memset(&res, 0, sizeof res);
    dl_error_clear(&res.err);
    x->n_requests++;
    switch (req->op) {
        case DL_REQ_PING:
            res.body = json_object();
            break;
        case DL_REQ_STATS:
            op_stats(x, &res);
            break;
#if DL_HAVE_STORE
        case DL_REQ_TRANSACT:
            op_transact(x, req->msg, &res, NULL);
            break;
        case DL_REQ_ADVANCE:
            op_advance(x, req->msg, &res, NULL);
            break;
#else
        case DL_REQ_TRANSACT:
        case DL_REQ_ENTITY:
        case DL_REQ_HISTORY:
        case DL_REQ_SCHEMA:
        case DL_REQ_ADVANCE:
            FAIL(&res, DL_EUNSUPPORTED,
                 "not available yet: op %s needs the store module (store/), which this build "
                 "does not include",
                 dl__proto_op_name(req->op));
            break;
#endif
#if !DL_HAVE_DATALOG
        case DL_REQ_QUERY:
        case DL_REQ_EXPLAIN:
            FAIL(&res, DL_EUNSUPPORTED,
                 "not available yet: op %s needs the Datalog front end (datalog/), which this "
                 "build does not include",
                 dl__proto_op_name(req->op));
            break;
#endif
        case DL_REQ_SUBSCRIBE:
        case DL_REQ_UNSUBSCRIBE:
            /* The server routes subscribe to dl__exec_subscribe and answers unsubscribe on
             * the connection's thread; a subscription needs a connection to live on. */
            FAIL(&res, DL_EUNSUPPORTED,
                 "op %s needs a connection to a server (deltalog subscribe --connect)",
                 dl__proto_op_name(req->op));
            break;
        case DL_REQ_HELLO:
            /* hello is the connection's business; reaching here means no auth is needed. */
            res.body = json_object();
            break;
        default:
            FAIL(&res, DL_EINTERNAL, "op %s reached the executor", dl__proto_op_name(req->op));
            break;
    }
    return finish(&res, req, out_len, out_failed);
}

bool dl__exec_is_write(dl_req_op_t op) {
    return DL_HAVE_STORE && (op == DL_REQ_TRANSACT || op == DL_REQ_ADVANCE);
}

void dl__exec_run_writes(dl_exec_t *x, dl_job_t **jobs, size_t n) {
#if DL_HAVE_STORE
    result_t *res = dl_calloc(n + 1, sizeof *res);
    uint64_t *txs = dl_calloc(n + 1, sizeof *txs);
    if (!res || !txs) {
        dl_free(res);
        dl_free(txs);
        /* no room to batch: one at a time, each waiting for its own sync */
        for (size_t i = 0; i < n; i++)
            jobs[i]->reply = dl__exec_run(x, &jobs[i]->req, &jobs[i]->reply_len, &jobs[i]->failed);
        return;
    }
    /* Commit every write without waiting, each against the ones before it... */
    uint64_t last = 0;
    for (size_t i = 0; i < n; i++) {
        const dl_request_t *req = &jobs[i]->req;
        dl_error_clear(&res[i].err);
        x->n_requests++;
        if (req->op == DL_REQ_TRANSACT)
            op_transact(x, req->msg, &res[i], &txs[i]);
        else if (req->op == DL_REQ_ADVANCE)
            op_advance(x, req->msg, &res[i], &txs[i]);
        else
            FAIL(&res[i], DL_EINTERNAL, "op %s is not a write", dl__proto_op_name(req->op));
        if (res[i].rc == DL_OK && txs[i] > last)
            last = txs[i];
    }
    /* ...then wait once: one log sync covers them all and publishes them in order. */
    dl_error_t werr;
    dl_error_clear(&werr);
    int wrc = last ? dl_store_wait_durable(x->store, last, &werr) : DL_OK;
    for (size_t i = 0; i < n; i++) {
        /* after a failed sync, each learns its own outcome (published ones stay acknowledged) */
        if (res[i].rc == DL_OK && txs[i] && wrc != DL_OK) {
            dl_error_t e;
            dl_error_clear(&e);
            int rc = dl_store_wait_durable(x->store, txs[i], &e);
            if (rc != DL_OK) {
                json_decref(res[i].body);
                res[i].body = NULL;
                res[i].rc = rc;
                res[i].err = werr.code ? werr : e;
            }
        }
        jobs[i]->reply = finish(&res[i], &jobs[i]->req, &jobs[i]->reply_len, &jobs[i]->failed);
    }
    dl_free(res);
    dl_free(txs);
#else
    for (size_t i = 0; i < n; i++)
        jobs[i]->reply = dl__exec_run(x, &jobs[i]->req, &jobs[i]->reply_len, &jobs[i]->failed);
#endif
}
