/*
 * test_groupcommit.c: group commit on the engine thread (engine.c design note 8) through
 * the real server binary with a durable store and --sync every: pipelined transactions are
 * all acknowledged, in request order, with consecutive transaction numbers, a rejected one
 * in the middle changes nothing and does not disturb the others, reads pipelined after a
 * write see it (a client reads its own writes), and far fewer fsyncs than transactions
 * happen; a server killed with SIGKILL during pipelined writes from several connections
 * keeps, after a restart, every transaction it acknowledged, each whole.
 * Does not test the store's batch API itself (tests/store/test_pipeline.c).
 */
#include "tests/harness/dl_test.h"

#include "tests/runtime/rt_helpers.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const schema_edn =
    "[{:db/ident :p/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one "
    ":db/unique :db.unique/identity}"
    " {:db/ident :p/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one}]";

static json_t *call(rt_conn_t *c, json_t *req) {
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    rt_send_str(c, s);
    rt_send_str(c, "\n");
    free(s);
    char *line = rt_recv_line(c);
    assert_non_null(line);
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

/* Starts a durable server on dir with --sync every; false (test skipped) when the build
 * has no durable store. */
static bool start_durable(rt_proc_t *p, const char *data, char *addr, size_t cap) {
    rt_spawn(p, NULL,
             (const char *const[]){"serve", "--data", data, "--sync", "every", "--listen",
                                   "127.0.0.1:0", NULL});
    char *line = rt_read_err_line(p);
    assert_non_null(line);
    if (!strstr(line, "serving protocol 1 on ")) {
        assert_non_null(strstr(line, "not available yet"));
        free(line);
        assert_int_equal(rt_wait(p), 3);
        return false;
    }
    snprintf(addr, cap, "%s", strstr(line, " on ") + 4);
    free(line);
    return true;
}

static void stop_server(rt_proc_t *p) {
    kill(p->pid, SIGTERM);
    assert_int_equal(rt_wait(p), 0);
}

static json_int_t stats_int(rt_conn_t *c, const char *key) {
    json_t *r = call_ok(c, json_pack("{s:s}", "op", "stats"));
    json_t *v = json_object_get(r, key);
    if (!v)
        v = json_object_get(json_object_get(r, "store"), key);
    if (!json_is_integer(v)) {
        char *s = json_dumps(r, 0);
        fail_msg("stats has no integer %s: %s", key, s);
    }
    json_int_t n = json_integer_value(v);
    json_decref(r);
    return n;
}

/* Pipelined writes with reads and rejected transactions among them. */
static void test_groupcommit_pipelined_sync_every(void **state) {
    (void)state;
    char *dir = rt_tempdir();
    char data[512], addr[80];
    snprintf(data, sizeof data, "%s/data", dir);
    rt_proc_t p;
    if (!start_durable(&p, data, addr, sizeof addr)) {
        rt_rmrf(dir);
        free(dir);
        skip();
    }
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    json_decref(call_ok(&c, json_pack("{s:s,s:s}", "op", "transact", "tx", schema_edn)));
    json_int_t fsyncs0 = stats_int(&c, "fsyncs");
    /* request i: every 7th a rejected transaction (unknown attribute), every 11th an
     * entity read of the order written just before it, otherwise a transaction */
    enum { N = 1500 };
    size_t cap = (size_t)N * 160, len = 0;
    char *batch = malloc(cap);
    int last_written = -1, n_tx = 0;
    int wrote_before[N];
    for (int i = 0; i < N; i++) {
        wrote_before[i] = last_written;
        if (i % 7 == 3) {
            len += (size_t)snprintf(batch + len, cap - len,
                                    "{\"op\":\"transact\",\"id\":%d,\"tx\":\"[{:p/name "
                                    "\\\"bad%d\\\" :p/nope 1}]\"}\n",
                                    i, i);
        } else if (i % 11 == 5 && last_written >= 0) {
            len += (size_t)snprintf(batch + len, cap - len,
                                    "{\"op\":\"entity\",\"id\":%d,\"e\":[\"p/name\",\"k%d\"]}\n", i,
                                    last_written);
        } else {
            len += (size_t)snprintf(batch + len, cap - len,
                                    "{\"op\":\"transact\",\"id\":%d,\"tx\":\"[{:p/name "
                                    "\\\"k%d\\\" :p/n %d}]\"}\n",
                                    i, i, i);
            last_written = i;
            n_tx++;
        }
    }
    rt_send(&c, batch, len);
    json_int_t prev_t = -1;
    for (int i = 0; i < N; i++) {
        char *line = rt_recv_line(&c);
        assert_non_null(line);
        json_t *j = rt_json(line);
        if (json_integer_value(json_object_get(j, "id")) != i)
            fail_msg("reply %d out of order: %s", i, line);
        if (i % 7 == 3) {
            const char *code = rt_error_code(j);
            if (!code || strcmp(code, "unknown_attr") != 0)
                fail_msg("request %d should be rejected: %s", i, line);
        } else if (i % 11 == 5 && wrote_before[i] >= 0) {
            if (rt_error_code(j))
                fail_msg("read %d failed: %s", i, line);
            json_t *n = json_object_get(json_object_get(j, "entity"), "p/n");
            if (json_integer_value(n) != wrote_before[i])
                fail_msg("read %d does not see its own write k%d: %s", i, wrote_before[i], line);
        } else {
            if (rt_error_code(j))
                fail_msg("transaction %d failed: %s", i, line);
            json_int_t t = json_integer_value(json_object_get(j, "t"));
            if (prev_t >= 0 && t != prev_t + 1)
                fail_msg("transaction %d has t %lld after %lld", i, (long long)t,
                         (long long)prev_t);
            prev_t = t;
        }
        json_decref(j);
        free(line);
    }
    free(batch);
    json_int_t fsyncs = stats_int(&c, "fsyncs") - fsyncs0;
    print_message("%d pipelined transactions, %lld fsyncs\n", n_tx, (long long)fsyncs);
    /* group commit: each read after a write closes a group, so at most about one group
     * per read; without batching there would be one fsync per transaction */
    assert_true(fsyncs > 0);
    assert_true(fsyncs < n_tx / 2);
    rt_disconnect(&c);
    stop_server(&p);
    /* and all of it is on disk */
    assert_true(start_durable(&p, data, addr, sizeof addr));
    assert_true(rt_connect(&c, addr));
    for (int i = 0; i < N; i += 37) {
        if (i % 7 == 3 || (i % 11 == 5 && wrote_before[i] >= 0))
            continue;
        char name[32];
        snprintf(name, sizeof name, "k%d", i);
        json_t *r = call_ok(&c, json_pack("{s:s,s:[s,s]}", "op", "entity", "e", "p/name", name));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "entity"), "p/n")),
                         i);
        json_decref(r);
    }
    rt_disconnect(&c);
    stop_server(&p);
    rt_rmrf(dir);
    free(dir);
}

/* SIGKILL during pipelined writes from several connections: every acknowledged
 * transaction is there after a restart; an unacknowledged one is whole or absent. */
static void test_groupcommit_sigkill_pipelined(void **state) {
    (void)state;
    char *dir = rt_tempdir();
    char data[512], addr[80];
    snprintf(data, sizeof data, "%s/data", dir);
    rt_proc_t p;
    if (!start_durable(&p, data, addr, sizeof addr)) {
        rt_rmrf(dir);
        free(dir);
        skip();
    }
    enum { C = 3, N = 600 };
    rt_conn_t *c = calloc(C, sizeof *c);
    for (int k = 0; k < C; k++)
        assert_true(rt_connect(&c[k], addr));
    json_decref(call_ok(&c[0], json_pack("{s:s,s:s}", "op", "transact", "tx", schema_edn)));
    char req[256];
    for (int i = 0; i < N; i++)
        for (int k = 0; k < C; k++) {
            int n = snprintf(req, sizeof req,
                             "{\"op\":\"transact\",\"id\":%d,\"tx\":\"[{:p/name \\\"c%dk%d\\\" "
                             ":p/n %d}]\"}\n",
                             i, k, i, i);
            rt_send(&c[k], req, (size_t)n);
        }
    /* read some acknowledgements from each connection, then kill mid-stream */
    int acked[C];
    for (int k = 0; k < C; k++) {
        acked[k] = 0;
        for (; acked[k] < N / 5; acked[k]++) {
            char *r = rt_recv_line(&c[k]);
            assert_non_null(r);
            json_t *j = rt_json(r);
            assert_null(rt_error_code(j));
            assert_int_equal(json_integer_value(json_object_get(j, "id")), acked[k]);
            json_decref(j);
            free(r);
        }
    }
    kill(p.pid, SIGKILL);
    assert_int_equal(rt_wait(&p), 128 + SIGKILL);
    /* replies already in the socket buffers are acknowledgements too (in order) */
    for (int k = 0; k < C; k++) {
        for (;;) {
            char *r = rt_recv_line(&c[k]);
            if (!r)
                break;
            json_t *j = rt_json(r);
            if (!rt_error_code(j)) {
                assert_int_equal(json_integer_value(json_object_get(j, "id")), acked[k]);
                acked[k]++;
            }
            json_decref(j);
            free(r);
        }
        rt_disconnect(&c[k]);
    }
    assert_true(start_durable(&p, data, addr, sizeof addr));
    assert_true(rt_connect(&c[0], addr));
    int present_unacked = 0;
    for (int k = 0; k < C; k++)
        for (int i = 0; i < N; i++) {
            if (i >= acked[k] && i % 5 != 0 && i != acked[k])
                continue; /* sample the unacknowledged ones */
            char name[32];
            snprintf(name, sizeof name, "c%dk%d", k, i);
            json_t *r =
                call(&c[0], json_pack("{s:s,s:[s,s]}", "op", "entity", "e", "p/name", name));
            const char *code = rt_error_code(r);
            if (i < acked[k] && code)
                fail_msg("acknowledged transaction %s is missing (%s)", name, code);
            if (!code) {
                json_t *n = json_object_get(json_object_get(r, "entity"), "p/n");
                assert_int_equal(json_integer_value(n), i); /* whole */
                present_unacked += i >= acked[k];
            }
            json_decref(r);
        }
    print_message("acknowledged %d/%d/%d of %d each; %d sampled unacknowledged present\n", acked[0],
                  acked[1], acked[2], N, present_unacked);
    rt_disconnect(&c[0]);
    stop_server(&p);
    free(c);
    rt_rmrf(dir);
    free(dir);
}

DL_TEST_GROUP(groupcommit, cmocka_unit_test(test_groupcommit_pipelined_sync_every),
              cmocka_unit_test(test_groupcommit_sigkill_pipelined));
