/*
 * test_store.c: the store-backed operations through the real server binary: transact
 * (EDN and JSON forms, time coordinates) and entity/history/schema round trips of every
 * value type, rejected transactions leaving nothing behind, many concurrent clients whose
 * acknowledged transactions are all visible afterwards, the CLI against a server, and a
 * server killed with SIGKILL during writes keeping every acknowledged transaction.
 * In builds without the store module each case checks the "unsupported" answer instead.
 */
#include "tests/harness/dl_test.h"

#include "tests/runtime/rt_helpers.h"

#define DL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mem_args[] = {"--memory", "--listen", "127.0.0.1:0", NULL};

static const char *const schema_edn =
    "[{:db/ident :p/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one "
    ":db/unique :db.unique/identity}"
    " {:db/ident :p/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
    " {:db/ident :p/x :db/valueType :db.type/double :db/cardinality :db.cardinality/one}"
    " {:db/ident :p/k :db/valueType :db.type/keyword :db/cardinality :db.cardinality/one}"
    " {:db/ident :p/at :db/valueType :db.type/instant :db/cardinality :db.cardinality/one}"
    " {:db/ident :p/u :db/valueType :db.type/uuid :db/cardinality :db.cardinality/one}"
    " {:db/ident :p/ok :db/valueType :db.type/boolean :db/cardinality :db.cardinality/one}"
    " {:db/ident :p/friend :db/valueType :db.type/ref :db/cardinality :db.cardinality/many}"
    " {:db/ident :time/shipped :db/timeDimension true}]";

/* Sends one request object (taken) and returns the reply (new). */
static json_t *call(rt_conn_t *c, json_t *req) {
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    rt_send_str(c, s);
    rt_send_str(c, "\n");
    free(s);
    char *line = rt_recv_line(c);
    json_t *j = rt_json(line);
    free(line);
    return j;
}

static json_t *call_ok(rt_conn_t *c, json_t *req) {
    json_t *r = call(c, req);
    if (rt_error_code(r)) {
        char *s = json_dumps(r, 0);
        fail_msg("request failed: %s", s);
    }
    return r;
}

static void stop_server(rt_proc_t *p) {
    kill(p->pid, SIGTERM);
    assert_int_equal(rt_wait(p), 0);
}

static bool have_store(rt_conn_t *c) {
    json_t *r = call(c, json_pack("{s:s}", "op", "schema"));
    const char *code = rt_error_code(r);
    bool ok = code == NULL;
    if (!ok)
        assert_string_equal(code, "unsupported");
    json_decref(r);
#if DL_HAVE_STORE
    assert_true(ok);
#else
    assert_false(ok);
#endif
    return ok;
}

static void test_store_roundtrip_all_types(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    if (!have_store(&c)) {
        rt_disconnect(&c);
        stop_server(&p);
        return;
    }
    json_t *r =
        call_ok(&c, json_pack("{s:s,s:s,s:i}", "op", "transact", "tx", schema_edn, "id", 1));
    json_int_t t1 = json_integer_value(json_object_get(r, "t"));
    assert_true(t1 > 0);
    json_decref(r);
    r = call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx",
                              "[{:db/id \"a\" :p/name \"Ann \\u00e9\\\"q\\\"\" "
                              ":p/n 9007199254740993 :p/x -0.5 :p/k :color/red "
                              ":p/at #inst \"2024-02-29T12:34:56.789Z\" "
                              ":p/u #uuid \"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\" :p/ok true} "
                              "{:db/id \"b\" :p/name \"Bob\" :p/friend \"a\"}]"));
    json_int_t t2 = json_integer_value(json_object_get(r, "t"));
    assert_true(t2 > t1);
    json_int_t ea = json_integer_value(json_object_get(json_object_get(r, "tempids"), "a"));
    json_int_t eb = json_integer_value(json_object_get(json_object_get(r, "tempids"), "b"));
    assert_true(ea > 0 && eb > 0 && ea != eb);
    json_decref(r);
    /* entity by id, by lookup ref; every type in the values.md encoding. */
    r = call_ok(&c, json_pack("{s:s,s:I}", "op", "entity", "e", (json_int_t)ea));
    json_t *ent = json_object_get(r, "entity");
    json_t *want = json_loads(
        "{\"p/name\":\"Ann \u00e9\\\"q\\\"\",\"p/n\":9007199254740993,\"p/x\":-0.5,"
        "\"p/k\":{\"kw\":\"color/red\"},\"p/at\":{\"inst\":\"2024-02-29T12:34:56.789Z\"},"
        "\"p/u\":{\"uuid\":\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\"},\"p/ok\":true}",
        0, NULL);
    assert_non_null(want);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v) {
        if (!json_equal(json_object_get(ent, k), v)) {
            char *s = json_dumps(ent, 0);
            fail_msg("attribute %s differs: %s", k, s);
        }
    }
    json_decref(want);
    json_decref(r);
    r = call_ok(&c, json_loads("{\"op\":\"entity\",\"e\":[\"p/name\",\"Bob\"]}", 0, NULL));
    json_t *friends = json_object_get(json_object_get(r, "entity"), "p/friend");
    assert_int_equal(json_array_size(friends), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(friends, 0), "ref")), ea);
    json_decref(r);
    /* JSON form: a retraction and a new value; history shows both. */
    r = call_ok(&c, json_pack("{s:s,s:[[s,I,s,i]]}", "op", "transact", "tx", "add", (json_int_t)ea,
                              "p/n", 7));
    json_decref(r);
    r = call_ok(&c, json_pack("{s:s,s:I,s:s}", "op", "history", "e", (json_int_t)ea, "a", "p/n"));
    json_t *ds = json_object_get(r, "datoms");
    assert_int_equal(json_array_size(ds), 3); /* +big, -big, +7 */
    json_decref(r);
    /* as_of the second transaction still sees the old value. */
    r = call_ok(&c, json_pack("{s:s,s:I,s:I}", "op", "entity", "e", (json_int_t)ea, "as_of",
                              (json_int_t)t2));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "entity"), "p/n")),
                     9007199254740993ll);
    json_decref(r);
    /* Time coordinates: a declared dimension, via "time" and via advance. */
    r = call_ok(&c, json_pack("{s:s,s:s,s:{s:i}}", "op", "transact", "tx",
                              "[[:db/add \"c\" :p/name \"Cy\"]]", "time", "time/shipped", 5));
    json_t *time = json_object_get(r, "time");
    assert_int_equal(json_array_size(time), 2);
    assert_int_equal(json_integer_value(json_array_get(time, 1)), 5);
    json_decref(r);
    r = call_ok(&c, json_pack("{s:s,s:s,s:i}", "op", "advance", "dim", ":time/shipped", "to", 9));
    assert_true(json_integer_value(json_object_get(r, "t")) > 0);
    json_decref(r);
    r = call(&c, json_pack("{s:s,s:s,s:i}", "op", "advance", "dim", "time/shipped", "to", 3));
    assert_string_equal(rt_error_code(r), "time");
    json_decref(r);
    /* schema lists the user attributes. */
    r = call_ok(&c, json_pack("{s:s}", "op", "schema"));
    bool found = false;
    json_t *attrs = json_object_get(r, "attrs");
    for (size_t i = 0; i < json_array_size(attrs); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(attrs, i), "ident")),
                   "p/friend") == 0) {
            found = true;
            assert_string_equal(
                json_string_value(json_object_get(json_array_get(attrs, i), "cardinality")),
                "many");
        }
    assert_true(found);
    json_decref(r);
    rt_disconnect(&c);
    stop_server(&p);
}

static void test_store_rejections_change_nothing(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    if (!have_store(&c)) {
        rt_disconnect(&c);
        stop_server(&p);
        return;
    }
    json_decref(call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx", schema_edn)));
    json_t *r = call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx",
                                      "[{:db/id \"a\" :p/name \"Ann\" :p/n 1}]"));
    json_int_t t = json_integer_value(json_object_get(r, "t"));
    json_decref(r);
    static const struct {
        const char *tx, *code;
    } bad[] = {
        {"[[:db/add \"x\" :p/nope 1]]", "unknown_attr"},
        {"[[:db/add \"x\" :p/n \"not a number\"]]", "type"},
        {"[[:db/add", "parse"},
        {"{:not :a-vector}", "parse"},
        {"[{:db/id \"z\" :p/name \"Zed\" :p/n 2} [:db/add \"x\" :p/nope 1]]", "unknown_attr"},
        {"[[:db/cas [:p/name \"Ann\"] :p/n 5 6]]", "cas"},
        {"[[:db/add [:p/name \"Nobody\"] :p/n 1]]", "notfound"},
        {"[[:db/add \"x\" :p/n 1] [:db/add \"x\" :p/n 2]]", "conflict"},
        {"[{:db/id :p/name :db/valueType :db.type/long}]", "schema"},
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(bad); i++) {
        r = call(
            &c, json_pack("{s:s,s:s,s:I}", "op", "transact", "tx", bad[i].tx, "id", (json_int_t)i));
        const char *code = rt_error_code(r);
        if (!code || strcmp(code, bad[i].code) != 0)
            fail_msg("tx %zu: got %s, want %s", i, code ? code : "ok", bad[i].code);
        assert_int_equal(json_integer_value(json_object_get(r, "id")), (json_int_t)i);
        json_decref(r);
    }
    r = call(&c, json_loads("{\"op\":\"advance\",\"dim\":\"time/shipped\",\"to\":-3}", 0, NULL));
    assert_string_equal(rt_error_code(r), "range");
    json_decref(r);
    /* JSON-form errors too. */
    r = call(&c, json_loads("{\"op\":\"transact\",\"tx\":[[\"frob\",1]]}", 0, NULL));
    assert_non_null(rt_error_code(r));
    json_decref(r);
    /* Nothing changed: the basis is the same and Zed does not exist. */
    r = call_ok(&c, json_pack("{s:s}", "op", "stats"));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "store"), "t")), t);
    json_decref(r);
    r = call(&c, json_loads("{\"op\":\"entity\",\"e\":[\"p/name\",\"Zed\"]}", 0, NULL));
    assert_string_equal(rt_error_code(r), "notfound");
    json_decref(r);
    rt_disconnect(&c);
    stop_server(&p);
}

/* query and explain over the wire: every find shape, :keys, args, rules, as_of, errors.
 * Without the Datalog module the answer is "unsupported". */
static void test_store_query_roundtrip(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    if (!have_store(&c)) {
        rt_disconnect(&c);
        stop_server(&p);
        return;
    }
    json_t *r = call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx", schema_edn));
    json_int_t t1 = json_integer_value(json_object_get(r, "t"));
    json_decref(r);
    json_decref(call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx",
                                      "[{:db/id \"a\" :p/name \"Ann\" :p/n 31 :p/k :k/x} "
                                      "{:db/id \"b\" :p/name \"Bob\" :p/n 40 :p/friend \"a\"} "
                                      "{:db/id \"c\" :p/name \"Cy\" :p/n 25}]")));
    r = call(&c, json_pack("{s:s,s:s}", "op", "query", "q",
                           "[:find ?n ?a :where [?e :p/name ?n] [?e :p/n ?a]]"));
#if !DL_HAVE_DATALOG
    assert_string_equal(rt_error_code(r), "unsupported");
    json_decref(r);
    rt_disconnect(&c);
    stop_server(&p);
    return;
#endif
    assert_null(rt_error_code(r));
    json_t *want = json_loads("[[\"Ann\",31],[\"Bob\",40],[\"Cy\",25]]", 0, NULL);
    json_t *rows = json_object_get(r, "rows");
    /* Set semantics: compare as sets (sorted by the canonical result order anyway). */
    assert_int_equal(json_array_size(rows), 3);
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t k = 0; k < 3; k++)
            found |= json_equal(json_array_get(rows, i), json_array_get(want, k));
        if (!found)
            fail_msg("unexpected row %zu", i);
    }
    assert_string_equal(json_string_value(json_object_get(r, "find")), "rel");
    json_decref(want);
    json_decref(r);
    static const struct {
        const char *req, *rows, *result;
    } cases[] = {
        {"{\"op\":\"query\",\"q\":\"[:find [?n ...] :in $ ?min :where [?e :p/n ?a] [(>= ?a "
         "?min)] [?e :p/name ?n]]\",\"args\":[30]}",
         "[[\"Ann\"],[\"Bob\"]]", "[\"Ann\",\"Bob\"]"},
        {"{\"op\":\"query\",\"q\":\"[:find (sum ?a) . :where [_ :p/n ?a]]\"}", "[[96]]", "96"},
        {"{\"op\":\"query\",\"q\":\"[:find ?a . :where [?e :p/name \\\"Nobody\\\"] [?e :p/n "
         "?a]]\"}",
         "[]", "null"},
        {"{\"op\":\"query\",\"q\":\"[:find ?n ?a :keys name age :where [?e :p/name ?n] [?e "
         ":p/n ?a] [(< ?a 30)]]\"}",
         "[{\"name\":\"Cy\",\"age\":25}]", "[{\"name\":\"Cy\",\"age\":25}]"},
        {"{\"op\":\"query\",\"q\":\"[:find ?k :where [_ :p/k ?k]]\"}", "[[{\"kw\":\"k/x\"}]]",
         "[[{\"kw\":\"k/x\"}]]"},
        {"{\"op\":\"query\",\"q\":\"[:find ?fn :where [?b :p/name \\\"Bob\\\"] [?b :p/friend "
         "?f] [?f :p/name ?fn]]\"}",
         "[[\"Ann\"]]", "[[\"Ann\"]]"},
        {"{\"op\":\"query\",\"q\":\"[:find ?n :in $ % :where (old ?n)]\",\"rules\":\"[[(old "
         "?n) [?e :p/name ?n] [?e :p/n ?a] [(> ?a 35)]]]\"}",
         "[[\"Bob\"]]", "[[\"Bob\"]]"},
        {"{\"op\":\"query\",\"q\":\"[:find ?n :where [?e :p/name ?n]]\",\"as_of\":1}", "[]", "[]"},
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(cases); i++) {
        r = call(&c, json_loads(cases[i].req, 0, NULL));
        if (rt_error_code(r))
            fail_msg("case %zu: %s", i, json_dumps(r, 0));
        json_t *wr = json_loads(cases[i].rows, JSON_DECODE_ANY, NULL);
        json_t *wres = json_loads(cases[i].result, JSON_DECODE_ANY, NULL);
        if (!json_equal(json_object_get(r, "rows"), wr) ||
            !json_equal(json_object_get(r, "result"), wres))
            fail_msg("case %zu: %s", i, json_dumps(r, 0));
        json_decref(wr);
        json_decref(wres);
        json_decref(r);
    }
    (void)t1;
    static const struct {
        const char *req, *code;
    } bad[] = {
        {"{\"op\":\"query\",\"q\":\"[:find ?x :where [?e :p/nope ?x]]\"}", "unknown_attr"},
        {"{\"op\":\"query\",\"q\":\"[:find ?x :where [?e\"}", "parse"},
        {"{\"op\":\"query\",\"q\":\"[:find ?x :where [?e :p/n ?y]]\"}", "unbound"},
        {"{\"op\":\"query\",\"q\":\"[:find ?x :in $ ?x :where [?e :p/n ?x]]\"}", "inval"},
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(bad); i++) {
        r = call(&c, json_loads(bad[i].req, 0, NULL));
        const char *code = rt_error_code(r);
        if (!code || strcmp(code, bad[i].code) != 0)
            fail_msg("bad %zu: got %s, want %s", i, code ? code : "ok", bad[i].code);
        json_decref(r);
    }
    r = call(&c, json_loads("{\"op\":\"explain\",\"q\":\"[:find ?n :where [?e :p/name ?n]]\"}", 0,
                            NULL));
#if DL_HAVE_QUERY_RUN
    assert_null(rt_error_code(r));
    assert_true(json_string_length(json_object_get(r, "plan")) > 0);
    assert_non_null(strstr(json_string_value(json_object_get(r, "oneshot_plan")), "scan"));
#else
    assert_string_equal(rt_error_code(r), "unsupported");
#endif
    json_decref(r);
    rt_disconnect(&c);
    stop_server(&p);
}

/* ---- concurrent clients --------------------------------------------------------------------- */

enum { N_CLIENTS = 100, N_TX = 10 };

typedef struct client_arg {
    const char *addr;
    int idx;
    long long acked_t[N_TX];
    int n_acked;
    char failure[256];
} client_arg_t;

static void *client_main(void *arg) {
    client_arg_t *a = arg;
    rt_conn_t *c = calloc(1, sizeof *c);
    if (!rt_connect(c, a->addr)) {
        snprintf(a->failure, sizeof a->failure, "connect failed");
        free(c);
        return NULL;
    }
    /* Pipelined: all requests first, then all replies (in order). After each transaction
     * the same connection reads it back (entity; odd clients also query): reads run on
     * other threads, on a snapshot pinned in request order, so they must see it. */
    char line[512];
    for (int i = 0; i < N_TX; i++) {
        int k = snprintf(line, sizeof line,
                         "{\"op\":\"transact\",\"id\":%d,\"tx\":\"[{:db/id \\\"o\\\" :p/name "
                         "\\\"c%d-%d\\\" :p/n %d}]\"}\n",
                         2 * i, a->idx, i, a->idx * 1000 + i);
        rt_send(c, line, (size_t)k);
        if (a->idx % 2 == 0 || !DL_HAVE_DATALOG)
            k = snprintf(line, sizeof line,
                         "{\"op\":\"entity\",\"id\":%d,\"e\":[\"p/name\",\"c%d-%d\"]}\n", 2 * i + 1,
                         a->idx, i);
        else
            k = snprintf(line, sizeof line,
                         "{\"op\":\"query\",\"id\":%d,\"q\":\"[:find ?n . :in $ ?name :where "
                         "[?e :p/name ?name] [?e :p/n ?n]]\",\"args\":[\"c%d-%d\"]}\n",
                         2 * i + 1, a->idx, i);
        rt_send(c, line, (size_t)k);
    }
    for (int i = 0; i < 2 * N_TX; i++) {
        char *r = rt_recv_line(c);
        json_t *j = r ? json_loads(r, 0, NULL) : NULL;
        bool ok = j && json_is_true(json_object_get(j, "ok")) &&
                  json_integer_value(json_object_get(j, "id")) == i;
        if (ok && i % 2 == 1) {
            json_t *n = json_object_get(j, "result");
            if (!n)
                n = json_object_get(json_object_get(j, "entity"), "p/n");
            ok = json_integer_value(n) == a->idx * 1000 + i / 2;
        }
        if (!ok) {
            snprintf(a->failure, sizeof a->failure, "reply %d: %s", i, r ? r : "none");
            json_decref(j);
            free(r);
            break;
        }
        if (i % 2 == 0)
            a->acked_t[a->n_acked++] = json_integer_value(json_object_get(j, "t"));
        json_decref(j);
        free(r);
    }
    rt_disconnect(c);
    free(c);
    return NULL;
}

static int cmp_ll(const void *x, const void *y) {
    long long a = *(const long long *)x, b = *(const long long *)y;
    return (a > b) - (a < b);
}

static void test_store_concurrent_clients(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    if (!have_store(&c)) {
        rt_disconnect(&c);
        stop_server(&p);
        return;
    }
    json_decref(call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx", schema_edn)));
    client_arg_t *args = calloc(N_CLIENTS, sizeof *args);
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        args[i].addr = addr;
        args[i].idx = i;
        assert_int_equal(pthread_create(&th[i], NULL, client_main, &args[i]), 0);
    }
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_join(th[i], NULL);
    long long all[N_CLIENTS * N_TX];
    int n = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        if (args[i].failure[0])
            fail_msg("client %d: %s", i, args[i].failure);
        for (int k = 0; k < args[i].n_acked; k++)
            all[n++] = args[i].acked_t[k];
    }
    assert_int_equal(n, N_CLIENTS * N_TX);
    /* Every acknowledged transaction has its own number... */
    qsort(all, (size_t)n, sizeof all[0], cmp_ll);
    for (int i = 1; i < n; i++)
        assert_true(all[i] > all[i - 1]);
    /* ...and its data is visible afterwards. */
    for (int i = 0; i < N_CLIENTS; i++)
        for (int k = 0; k < N_TX; k += 3) {
            char name[32];
            snprintf(name, sizeof name, "c%d-%d", i, k);
            json_t *r =
                call_ok(&c, json_pack("{s:s,s:[s,s]}", "op", "entity", "e", "p/name", name));
            assert_int_equal(
                json_integer_value(json_object_get(json_object_get(r, "entity"), "p/n")),
                i * 1000 + k);
            json_decref(r);
        }
    free(args);
    rt_disconnect(&c);
    stop_server(&p);
}

/* The CLI against a running server: transact, import (JSON lines and EDN), status. */
static void test_store_cli_against_server(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    bool store = have_store(&c);
    rt_disconnect(&c);
    char *out = NULL, *err = NULL;
    const char *tx[] = {"transact", "--connect", addr, schema_edn, NULL};
    int rc = rt_run(NULL, tx, NULL, &out, &err);
    if (!store) {
        assert_int_equal(rc, 3);
        free(out);
        free(err);
        stop_server(&p);
        return;
    }
    assert_int_equal(rc, 0);
    assert_true(strncmp(out, "committed t ", 12) == 0);
    free(out);
    free(err);
    char *dir = rt_tempdir();
    char path[512], epath[512];
    snprintf(path, sizeof path, "%s/data.jsonl", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "[{\"db/id\":\"x\",\"p/name\":\"J1\"}]\n\n[[\"add\",\"y\",\"p/name\",\"J2\"]]\n");
    fclose(f);
    snprintf(epath, sizeof epath, "%s/data.edn", dir);
    f = fopen(epath, "w");
    fprintf(f, "[{:db/id \"x\" :p/name \"E1\"}]\n;; a comment\n[[:db/add \"y\" :p/name \"E2\"]]\n");
    fclose(f);
    const char *imp[] = {"import", "--connect", addr, path, NULL};
    assert_int_equal(rt_run(NULL, imp, NULL, &out, NULL), 0);
    assert_non_null(strstr(out, "imported 2 transactions"));
    free(out);
    const char *imp2[] = {"import", "--connect", addr, "--format", "json", epath, NULL};
    assert_int_equal(rt_run(NULL, imp2, NULL, &out, NULL), 0);
    json_t *j = rt_json(out);
    assert_int_equal(json_integer_value(json_object_get(j, "transactions")), 2);
    json_decref(j);
    free(out);
    /* A rejected transaction: exit 1, one line naming the code. */
    const char *badtx[] = {"transact", "--connect", addr, "[[:db/add \"q\" :p/zzz 1]]", NULL};
    assert_int_equal(rt_run(NULL, badtx, NULL, &out, &err), 1);
    assert_true(strncmp(err, "deltalog: unknown_attr: ", 24) == 0);
    assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err));
    free(out);
    free(err);
    const char *st[] = {"status", "--connect", addr, "--format", "json", NULL};
    assert_int_equal(rt_run(NULL, st, NULL, &out, NULL), 0);
    j = rt_json(out);
    assert_int_equal(json_integer_value(json_object_get(j, "t")), 5);
    assert_int_equal(json_integer_value(json_object_get(j, "attributes")), 8);
    json_decref(j);
    free(out);
    rt_rmrf(dir);
    free(dir);
    stop_server(&p);
}

/* SIGTERM while a client pipelines transactions: the server stops reading, answers every
 * request it had read (in order, all acknowledged), closes the store and exits 0. */
static void test_store_sigterm_mid_pipeline(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    if (!have_store(&c)) {
        rt_disconnect(&c);
        stop_server(&p);
        return;
    }
    json_decref(call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx", schema_edn)));
    enum { N = 3000 };
    size_t cap = (size_t)N * 128, len = 0;
    char *batch = malloc(cap);
    for (int i = 0; i < N; i++)
        len += (size_t)snprintf(batch + len, cap - len,
                                "{\"op\":\"transact\",\"id\":%d,\"tx\":\"[[:db/add \\\"x\\\" "
                                ":p/name \\\"s%d\\\"]]\"}\n",
                                i, i);
    rt_send(&c, batch, len);
    free(batch);
    json_int_t last_t = 0;
    int got = 0;
    for (;; got++) {
        if (got == 10)
            kill(p.pid, SIGTERM);
        char *line = rt_recv_line(&c);
        if (!line)
            break;
        json_t *j = rt_json(line);
        if (rt_error_code(j) || json_integer_value(json_object_get(j, "id")) != got)
            fail_msg("reply %d: %s", got, line);
        json_int_t t = json_integer_value(json_object_get(j, "t"));
        if (last_t && t != last_t + 1)
            fail_msg("reply %d: t %lld after %lld", got, (long long)t, (long long)last_t);
        last_t = t;
        json_decref(j);
        free(line);
    }
    assert_true(got >= 10);
    assert_true(got <= N);
    print_message("%d of %d pipelined transactions answered before the stop\n", got, N);
    rt_disconnect(&c);
    assert_int_equal(rt_wait(&p), 0);
}

/* The command line on a durable data directory: transact, status, export (current and
 * history), checkpoint, fsck; and a directory held by a running server is refused with
 * exit 4 ("locked"), while --connect reaches the server. */
static void test_store_cli_durable(void **state) {
    (void)state;
#if !DL_HAVE_STORE
    skip();
#endif
    char *dir = rt_tempdir();
    char data[512];
    snprintf(data, sizeof data, "%s/d", dir);
    char *out = NULL, *err = NULL;
    const char *tx1[] = {"transact", "--data", data, schema_edn, NULL};
    assert_int_equal(rt_run(NULL, tx1, NULL, &out, NULL), 0);
    free(out);
    const char *tx2[] = {"transact", "--data", data, "-", NULL};
    assert_int_equal(rt_run(NULL, tx2, "[{:db/id \"a\" :p/name \"Ann\" :p/n 1}]", &out, NULL), 0);
    free(out);
    const char *tx3[] = {
        "transact", "--data", data, "--json", "[[\"add\",[\"p/name\",\"Ann\"],\"p/n\",2]]", NULL};
    assert_int_equal(rt_run(NULL, tx3, NULL, &out, NULL), 0);
    free(out);
    const char *st[] = {"status", "--data", data, "--format", "json", NULL};
    assert_int_equal(rt_run(NULL, st, NULL, &out, NULL), 0);
    json_t *j = rt_json(out);
    assert_int_equal(json_integer_value(json_object_get(j, "t")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "attributes")), 8);
    json_decref(j);
    free(out);
    /* export: the current p/n of Ann is 2; history has 1 added, 1 retracted, 2 added. */
    const char *ex[] = {"export", "--data", data, NULL};
    assert_int_equal(rt_run(NULL, ex, NULL, &out, NULL), 0);
    assert_non_null(strstr(out, "{\"kw\":\"p/n\"},2,3]"));
    assert_null(strstr(out, "{\"kw\":\"p/n\"},1,"));
    free(out);
    const char *exh[] = {"export", "--data", data, "--history", "--format", "edn", NULL};
    assert_int_equal(rt_run(NULL, exh, NULL, &out, NULL), 0);
    assert_non_null(strstr(out, ":p/n 1 2 true]"));
    assert_non_null(strstr(out, ":p/n 1 3 false]"));
    assert_non_null(strstr(out, ":p/n 2 3 true]"));
    free(out);
    const char *ck[] = {"checkpoint", "--data", data, NULL};
    assert_int_equal(rt_run(NULL, ck, NULL, &out, NULL), 0);
    free(out);
    const char *fs[] = {"fsck", "--data", data, "--format", "json", NULL};
    assert_int_equal(rt_run(NULL, fs, NULL, &out, NULL), 0);
    j = rt_json(out);
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_int_equal(json_integer_value(json_object_get(j, "t")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "checkpoint_tx")), 3);
    json_decref(j);
    free(out);
    /* A server holds the directory: in-process commands are refused, --connect works. */
    rt_proc_t p;
    char addr[80];
    const char *sargs[] = {"--data", data, "--listen", "127.0.0.1:0", NULL};
    rt_start_server(&p, NULL, sargs, addr, sizeof addr);
    const char *st2[] = {"status", "--data", data, NULL};
    assert_int_equal(rt_run(NULL, st2, NULL, &out, &err), 4);
    assert_non_null(strstr(err, "locked"));
    free(out);
    free(err);
    const char *st3[] = {"status", "--connect", addr, "--format", "json", NULL};
    assert_int_equal(rt_run(NULL, st3, NULL, &out, NULL), 0);
    j = rt_json(out);
    assert_int_equal(json_integer_value(json_object_get(j, "t")), 3);
    json_decref(j);
    free(out);
    stop_server(&p);
    rt_rmrf(dir);
    free(dir);
}

/* export --tx then import into empty directories (EDN and JSON form) reproduces the
 * current state: same datom count, same answers (refs, many, enums, instants). */
static void test_store_export_import_roundtrip(void **state) {
    (void)state;
#if !DL_HAVE_STORE
    skip();
#endif
    char *dir = rt_tempdir();
    char a[512], b[512], cdir[512], edn[512], jsonl[512];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(cdir, sizeof cdir, "%s/c", dir);
    snprintf(edn, sizeof edn, "%s/dump.edn", dir);
    snprintf(jsonl, sizeof jsonl, "%s/dump.jsonl", dir);
    char *out = NULL;
    const char *t1[] = {"transact", "--data", a, schema_edn, NULL};
    assert_int_equal(rt_run(NULL, t1, NULL, &out, NULL), 0);
    free(out);
    const char *t2[] = {"transact", "--data", a, "[{:db/ident :color/red} {:db/ident :color/blue}]",
                        NULL};
    assert_int_equal(rt_run(NULL, t2, NULL, &out, NULL), 0);
    free(out);
    const char *t3[] = {"transact", "--data", a,
                        "[{:db/id \"a\" :p/name \"Ann\" :p/k :k/x :p/n 9007199254740993 "
                        ":p/at #inst \"2020-01-01T00:00:00Z\" :p/x 0.5} "
                        "{:db/id \"b\" :p/name \"Bob\" :p/friend [\"a\" \"c\"] :p/ok false} "
                        "{:db/id \"c\" :p/name \"Cy\" :p/u #uuid "
                        "\"0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\"}]",
                        NULL};
    assert_int_equal(rt_run(NULL, t3, NULL, &out, NULL), 0);
    free(out);
    /* Dump both ways (through the shell's redirection), import each into a new directory. */
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s export --tx --data %s > %s && %s export --tx --format json "
             "--data %s > %s",
             DL_CLI_PATH, a, edn, DL_CLI_PATH, a, jsonl);
    assert_int_equal(system(cmd), 0);
    const char *i1[] = {"import", "--data", b, edn, NULL};
    assert_int_equal(rt_run(NULL, i1, NULL, &out, NULL), 0);
    assert_non_null(strstr(out, "imported 2 transactions"));
    free(out);
    const char *i2[] = {"import", "--data", cdir, jsonl, NULL};
    assert_int_equal(rt_run(NULL, i2, NULL, &out, NULL), 0);
    free(out);
    const char *dirs[3] = {a, b, cdir};
    char *answers[3];
    json_int_t datoms[3];
    for (int k = 0; k < 3; k++) {
        const char *st[] = {"status", "--data", dirs[k], "--format", "json", NULL};
        assert_int_equal(rt_run(NULL, st, NULL, &out, NULL), 0);
        json_t *j = rt_json(out);
        datoms[k] = json_integer_value(json_object_get(j, "datoms"));
        assert_int_equal(datoms[k], datoms[0]);
        json_decref(j);
        free(out);
        const char *q[] = {"query",
                           "--data",
                           dirs[k],
                           "--format",
                           "json",
                           "[:find ?n ?fn ?k ?big ?at ?x ?u :where [?e :p/name ?n] "
                           "[?e :p/friend ?f] [?f :p/name ?fn] [?a :p/name \"Ann\"] [?a :p/k ?k] "
                           "[?a :p/n ?big] [?a :p/at ?at] [?a :p/x ?x] [?c :p/name \"Cy\"] "
                           "[?c :p/u ?u]]",
                           NULL};
        assert_int_equal(rt_run(NULL, q, NULL, &answers[k], NULL), 0);
        json_t *j2 = rt_json(answers[k]);
        free(answers[k]);
        answers[k] = json_dumps(json_object_get(j2, "result"), JSON_COMPACT);
        json_decref(j2);
    }
    assert_non_null(strstr(answers[0], "[\"Bob\",\"Ann\",{\"kw\":\"k/x\"},9007199254740993"));
    assert_string_equal(answers[0], answers[1]);
    assert_string_equal(answers[0], answers[2]);
    for (int k = 0; k < 3; k++)
        free(answers[k]);
    rt_rmrf(dir);
    free(dir);
}

/* A durable server killed with SIGKILL while clients write; after a restart every
 * acknowledged transaction is there. */
static void test_store_sigkill_keeps_acknowledged(void **state) {
    (void)state;
    char *dir = rt_tempdir();
    char data[512];
    snprintf(data, sizeof data, "%s/data", dir);
    const char *args[] = {"--data", data, "--listen", "127.0.0.1:0", NULL};
    rt_proc_t p;
    rt_spawn(&p, NULL,
             (const char *const[]){"serve", "--data", data, "--listen", "127.0.0.1:0", NULL});
    char *line = rt_read_err_line(&p);
    assert_non_null(line);
    if (!strstr(line, "serving protocol 1 on ")) {
        /* This build's store has no durable mode yet: the server must say so and exit. */
        assert_non_null(strstr(line, "not available yet"));
        free(line);
        assert_int_equal(rt_wait(&p), 3);
        rt_rmrf(dir);
        free(dir);
        skip();
    }
    char addr[80];
    snprintf(addr, sizeof addr, "%s", strstr(line, " on ") + 4);
    free(line);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    json_decref(call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx", schema_edn)));
    /* Pipeline many writes, read some acknowledgements, then kill mid-stream. */
    enum { N = 400 };
    char req[256];
    for (int i = 0; i < N; i++) {
        int k = snprintf(req, sizeof req,
                         "{\"op\":\"transact\",\"id\":%d,\"tx\":\"[{:db/id \\\"o\\\" :p/name "
                         "\\\"k%d\\\" :p/n %d}]\"}\n",
                         i, i, i);
        rt_send(&c, req, (size_t)k);
    }
    int acked = 0;
    for (; acked < N / 4; acked++) {
        char *r = rt_recv_line(&c);
        json_t *j = rt_json(r);
        assert_null(rt_error_code(j));
        json_decref(j);
        free(r);
    }
    kill(p.pid, SIGKILL);
    assert_int_equal(rt_wait(&p), 128 + SIGKILL);
    /* Replies already in our socket buffer are acknowledgements too. */
    for (;;) {
        char *r = rt_recv_line(&c);
        if (!r)
            break;
        json_t *j = rt_json(r);
        if (!rt_error_code(j))
            acked++;
        json_decref(j);
        free(r);
    }
    rt_disconnect(&c);
    rt_proc_t q;
    char addr2[80];
    rt_start_server(&q, NULL, args, addr2, sizeof addr2);
    assert_true(rt_connect(&c, addr2));
    for (int i = 0; i < acked; i++) {
        char name[32];
        snprintf(name, sizeof name, "k%d", i);
        json_t *r = call_ok(&c, json_pack("{s:s,s:[s,s]}", "op", "entity", "e", "p/name", name));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "entity"), "p/n")),
                         i);
        json_decref(r);
    }
    rt_disconnect(&c);
    stop_server(&q);
    rt_rmrf(dir);
    free(dir);
}

DL_TEST_GROUP(store, cmocka_unit_test(test_store_roundtrip_all_types),
              cmocka_unit_test(test_store_rejections_change_nothing),
              cmocka_unit_test(test_store_query_roundtrip),
              cmocka_unit_test(test_store_concurrent_clients),
              cmocka_unit_test(test_store_cli_against_server),
              cmocka_unit_test(test_store_sigterm_mid_pipeline),
              cmocka_unit_test(test_store_cli_durable),
              cmocka_unit_test(test_store_export_import_roundtrip),
              cmocka_unit_test(test_store_sigkill_keeps_acknowledged));
