/*
 * test_cli.c: the `deltalog` command line: the default status on the embedded data
 * directory, --help for the program and every command, exit codes for usage errors and
 * for commands whose module is not built, and the output formats.
 */
#include "tests/harness/dl_test.h"

#include "tests/runtime/rt_helpers.h"

#define DL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void test_cli_default_status(void **state) {
    (void)state;
    char *dir = rt_tempdir();
    char *out = NULL, *err = NULL;
    const char *none[] = {NULL};
    assert_int_equal(rt_run(dir, none, NULL, &out, &err), 0);
    assert_true(strncmp(out, "deltalog 0.", 11) == 0);
    assert_non_null(strstr(out, "data .deltalog/data (created)"));
    /* Exactly two lines: version, status. */
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2);
    char path[600];
    snprintf(path, sizeof path, "%s/.deltalog/data", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    free(out);
    free(err);
    /* A second run finds it; `status` is the same command. */
    const char *status[] = {"status", NULL};
    assert_int_equal(rt_run(dir, status, NULL, &out, NULL), 0);
    assert_non_null(strstr(out, "data .deltalog/data (ok)"));
    free(out);
    /* --format json is one JSON object. */
    const char *js[] = {"status", "--format", "json", NULL};
    assert_int_equal(rt_run(dir, js, NULL, &out, NULL), 0);
    json_t *j = rt_json(out);
    assert_string_equal(json_string_value(json_object_get(j, "data")), ".deltalog/data");
    assert_false(json_is_true(json_object_get(j, "created")));
    json_decref(j);
    free(out);
    /* --memory creates nothing. */
    const char *mem[] = {"--memory", NULL};
    assert_int_equal(rt_run(dir, mem, NULL, &out, NULL), 0);
    assert_non_null(strstr(out, ":memory"));
    free(out);
    rt_rmrf(dir);
    free(dir);
}

static void test_cli_help(void **state) {
    (void)state;
    char *out = NULL;
    const char *help[] = {"--help", NULL};
    assert_int_equal(rt_run(NULL, help, NULL, &out, NULL), 0);
    static const char *const cmds[] = {"status",     "serve",   "query",   "transact", "subscribe",
                                       "import",     "export",  "explain", "stats",    "fsck",
                                       "checkpoint", "version", "request"};
    for (size_t i = 0; i < DL_ARRAY_LEN(cmds); i++) {
        char needle[40];
        snprintf(needle, sizeof needle, "  %s ", cmds[i]);
        if (!strstr(out, needle))
            fail_msg("--help does not list %s", cmds[i]);
    }
    assert_non_null(strstr(out, "Exit codes:"));
    free(out);
    for (size_t i = 0; i < DL_ARRAY_LEN(cmds); i++) {
        const char *args[] = {cmds[i], "--help", NULL};
        assert_int_equal(rt_run(NULL, args, NULL, &out, NULL), 0);
        char want[64];
        snprintf(want, sizeof want, "Usage: deltalog %s", cmds[i]);
        if (strncmp(out, want, strlen(want)) != 0)
            fail_msg("%s --help: %s", cmds[i], out);
        assert_non_null(strstr(out, "Exit codes:"));
        free(out);
    }
}

static void test_cli_usage_errors(void **state) {
    (void)state;
    char *err = NULL;
    const char *unknown[] = {"frobnicate", NULL};
    assert_int_equal(rt_run(NULL, unknown, NULL, NULL, &err), 2);
    assert_non_null(strstr(err, "unknown command"));
    free(err);
    const char *badopt[] = {"stats", "--frob", NULL};
    assert_int_equal(rt_run(NULL, badopt, NULL, NULL, &err), 2);
    free(err);
    const char *both[] = {"stats", "--memory", "--data", "/tmp/x", NULL};
    assert_int_equal(rt_run(NULL, both, NULL, NULL, &err), 2);
    free(err);
    const char *fmt[] = {"stats", "--memory", "--format", "xml", NULL};
    assert_int_equal(rt_run(NULL, fmt, NULL, NULL, &err), 2);
    free(err);
    const char *noq[] = {"query", "--memory", NULL};
    assert_int_equal(rt_run(NULL, noq, NULL, NULL, &err), 2);
    free(err);
    /* Connecting to a port nobody listens on: exit 5 (port 1 is privileged and unused). */
    const char *conn[] = {"stats", "--connect", "127.0.0.1:1", NULL};
    assert_int_equal(rt_run(NULL, conn, NULL, NULL, &err), 5);
    free(err);
}

/* Commands whose module is not built say so in one line and exit 3. */
static void test_cli_not_available(void **state) {
    (void)state;
    char *err = NULL, *out = NULL;
    /* subscribe needs a server: --memory is a usage error, in every build. */
    const char *sub[] = {"subscribe", "--memory", "[:find ?e :where [?e :a/b]]", NULL};
    assert_int_equal(rt_run(NULL, sub, NULL, &out, &err), 2);
    assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err)); /* one line */
    free(err);
    free(out);
#if !DL_HAVE_DATALOG
    const char *q[] = {"query", "--memory", "[:find ?e :where [?e :a/b]]", NULL};
    assert_int_equal(rt_run(NULL, q, NULL, &out, &err), 3);
    assert_non_null(strstr(err, "not available yet"));
    free(err);
    free(out);
#endif
#if !DL_HAVE_STORE
    const char *tx[] = {"transact", "--memory", "[]", NULL};
    assert_int_equal(rt_run(NULL, tx, NULL, &out, &err), 3);
    assert_non_null(strstr(err, "not available yet"));
    free(err);
    free(out);
    const char *fsck[] = {"fsck", "--memory", NULL};
    assert_int_equal(rt_run(NULL, fsck, NULL, &out, &err), 3);
    free(err);
    free(out);
#endif
}

static void test_cli_request_and_formats(void **state) {
    (void)state;
    char *out = NULL;
    const char *req[] = {"request", "--memory", "{\"op\":\"ping\",\"id\":\"q\"}", NULL};
    assert_int_equal(rt_run(NULL, req, NULL, &out, NULL), 0);
    assert_string_equal(out, "{\"id\":\"q\",\"ok\":true}\n");
    free(out);
    /* The CLI decodes requests exactly like the server. */
    char *err = NULL;
    const char *bad[] = {"request", "--memory", "{\"op\":\"ping\",\"x\":1}", NULL};
    assert_int_equal(rt_run(NULL, bad, NULL, &out, &err), 1);
    assert_non_null(strstr(err, "inval: unknown field \"x\""));
    free(out);
    free(err);
    const char *ver[] = {"version", "--format", "edn", NULL};
    assert_int_equal(rt_run(NULL, ver, NULL, &out, NULL), 0);
    assert_true(strncmp(out, "{:version \"", 11) == 0);
    free(out);
    const char *stats[] = {"stats", "--memory", NULL};
    assert_int_equal(rt_run(NULL, stats, NULL, &out, NULL), 0);
    assert_true(strncmp(out, "field", 5) == 0);
    assert_non_null(strstr(out, "memory.live_bytes"));
    free(out);
}

/* A transaction over a TCP connection; fails the test unless it is committed. */
static void cli_tx(rt_conn_t *c, const char *line) {
    rt_send_str(c, line);
    char *r = rt_recv_line(c);
    assert_non_null(r);
    json_t *j = rt_json(r);
    if (rt_error_code(j))
        fail_msg("transaction failed: %s", r);
    json_decref(j);
    free(r);
}

/* `deltalog subscribe --dims`: the coordinates of each diff and the frontier lines, and a
 * bad dimension name ends with the server's error and a failure exit code. */
static void test_cli_subscribe_dims(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t srv;
    char addr[80];
    const char *mem[] = {"--memory", "--listen", "127.0.0.1:0", NULL};
    rt_start_server(&srv, NULL, mem, addr, sizeof addr);
    rt_conn_t *c = calloc(1, sizeof *c);
    assert_true(rt_connect(c, addr));
    cli_tx(c, "{\"op\":\"transact\",\"tx\":\"[{:db/ident :o/amt :db/valueType "
              ":db.type/long :db/cardinality :db.cardinality/one} {:db/ident :time/shipped "
              ":db/timeDimension true}]\"}\n");
    const char *q = "[:find (sum ?a) :with ?o :where [?o :o/amt ?a]]";
    const char *args[] = {"subscribe", "--connect", addr, "--dims", "tx,:time/shipped", q, NULL};
    rt_proc_t sub;
    rt_spawn(&sub, NULL, args);
    char *line = rt_read_line(&sub);
    assert_non_null(line);
    assert_string_equal(line, "subscription 1: (sum ?a)");
    free(line);
    line = rt_read_line(&sub);
    assert_non_null(line);
    assert_string_equal(line, "-- t [1 0] (snapshot)");
    free(line);
    line = rt_read_line(&sub);
    assert_non_null(line);
    assert_string_equal(line, "-- final through [1 nil]");
    free(line);
    cli_tx(c, "{\"op\":\"transact\",\"tx\":\"[{:o/amt 100}]\",\"time\":{\"time/shipped\":3}}\n");
    /* The diff at [t=2, shipped day 3], then the frontier of its transaction. */
    char *want[] = {"-- t [2 3]", "+1\t100", "-- final through [2 nil]"};
    for (size_t i = 0; i < 3; i++) {
        line = rt_read_line(&sub);
        assert_non_null(line);
        assert_string_equal(line, want[i]);
        free(line);
    }
    kill(sub.pid, SIGINT);
    assert_int_equal(rt_wait(&sub), 0);

    const char *bad[] = {"subscribe", "--connect", addr, "--dims", "tx,:no/such", q, NULL};
    char *out = NULL, *err = NULL;
    assert_int_equal(rt_run(NULL, bad, NULL, &out, &err), 1);
    assert_non_null(strstr(err, "unknown_attr"));
    free(out);
    free(err);
    rt_disconnect(c);
    free(c);
    kill(srv.pid, SIGTERM);
    rt_wait(&srv);
}

DL_TEST_GROUP(cli, cmocka_unit_test(test_cli_default_status), cmocka_unit_test(test_cli_help),
              cmocka_unit_test(test_cli_usage_errors), cmocka_unit_test(test_cli_not_available),
              cmocka_unit_test(test_cli_request_and_formats),
              cmocka_unit_test(test_cli_subscribe_dims));
