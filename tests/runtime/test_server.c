/*
 * test_server.c: the server as users meet it: the built `deltalog serve` binary over a
 * real loopback socket and over stdio. Every bad input of the corpus gets its error code
 * and the server still answers ping on the same connection; both transports give the same
 * bytes; limits (line size, connections, outbound buffer), auth, pipelining order,
 * half-close and graceful stop.
 */
#include "tests/harness/dl_test.h"

#include "tests/runtime/rt_helpers.h"

#define DL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#include <deltalog/deltalog.h>
#include <deltalog/runtime.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct corpus_case {
    const char *line; /* without '\n' */
    const char *code; /* expected error code */
} corpus_case_t;

/* The bad-input corpus (issue 6 "Tests"). Each line is followed by a ping in the tests. */
static const corpus_case_t corpus[] = {
    {"{", "parse"},
    {"{\"op\":\"ping\"", "parse"},
    {"{\"op\":\"ping\",\"id\":1", "parse"},
    {"not json at all", "parse"},
    {"{\"op\":\"ping\"} trailing", "parse"},
    {"{\"op\":\"ping\",\"op\":\"ping\"}", "parse"},
    {"{\"op\":\"\xff\xfe\"}", "utf8"},
    {"\xc3\x28", "utf8"},
    {"{\"op\":\"ping\",\"id\":\"\xed\xa0\x80\"}", "utf8"},
    {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
     "limit"},
    {"[]", "inval"},
    {"null", "inval"},
    {"{\"id\":9}", "inval"},
    {"{\"op\":42,\"id\":10}", "type"},
    {"{\"op\":\"launch\",\"id\":11}", "unknown_op"},
    {"{\"op\":\"ping\",\"id\":12,\"junk\":true}", "inval"},
    {"{\"op\":\"transact\",\"id\":13,\"tx\":17}", "type"},
    {"{\"op\":\"query\",\"id\":14,\"q\":\"[:find ?e]\",\"args\":{}}", "type"},
    {"{\"op\":\"entity\",\"id\":15}", "inval"},
    {"{\"op\":\"advance\",\"id\":16,\"dim\":\"t/x\",\"to\":-1.5}", "type"},
#if DL_HAVE_SUBS
    {"{\"op\":\"subscribe\",\"id\":17,\"q\":\"[:find ?e :where [?e :a/b]]\"}", "unknown_attr"},
    {"{\"op\":\"unsubscribe\",\"id\":18,\"sub\":1}", "notfound"},
    {"{\"op\":\"subscribe\",\"id\":19,\"q\":\"[:find ?e :where [?e :db/ident]]\","
     "\"policy\":\"sometimes\"}",
     "inval"},
    {"{\"op\":\"subscribe\",\"id\":20,\"q\":\"[:find ?e :where [?e :db/ident]]\","
     "\"dims\":[\"valid\"]}",
     "unknown_attr"}, /* no such time dimension */
    {"{\"op\":\"subscribe\",\"id\":21,\"q\":\"[:find ?e :where [?e :db/ident]]\","
     "\"limits\":{\"max_queued\":\"x\"}}",
     "type"},
    {"{\"op\":\"subscribe\",\"id\":22,\"q\":\"[:find ?e :where [?e :db/ident]]\","
     "\"policy\":7}",
     "type"},
#else
    {"{\"op\":\"subscribe\",\"id\":17,\"q\":\"[:find ?e :where [?e :a/b]]\"}", "unsupported"},
    {"{\"op\":\"unsubscribe\",\"id\":18,\"sub\":1}", "unsupported"},
#endif
};

static void expect_code(const char *line, const char *code, const char *context) {
    if (!line)
        fail_msg("%s: no reply", context);
    json_t *j = rt_json(line);
    const char *got = rt_error_code(j);
    if (!got || strcmp(got, code) != 0)
        fail_msg("%s: got %s, want %s (%s)", context, got ? got : "ok", code, line);
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    json_decref(j);
}

static void expect_ping(rt_conn_t *c, int id) {
    char req[64];
    snprintf(req, sizeof req, "{\"op\":\"ping\",\"id\":%d}\n", id);
    rt_send_str(c, req);
    char *line = rt_recv_line(c);
    char want[64];
    snprintf(want, sizeof want, "{\"id\":%d,\"ok\":true}", id);
    if (!line || strcmp(line, want) != 0)
        fail_msg("ping %d: got %s", id, line ? line : "(nothing)");
    free(line);
}

static void stop_server(rt_proc_t *p) {
    kill(p->pid, SIGTERM);
    int rc = rt_wait(p);
    assert_int_equal(rc, 0); /* graceful stop, and no leaks reported under ASan */
}

static const char *const mem_args[] = {"--memory", "--listen", "127.0.0.1:0", NULL};

static void test_server_ping_and_ids(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    static const struct {
        const char *req, *reply;
    } cases[] = {
        {"{\"op\":\"ping\",\"id\":1}", "{\"id\":1,\"ok\":true}"},
        {"{\"id\":\"abc\",\"op\":\"ping\"}", "{\"id\":\"abc\",\"ok\":true}"},
        {"{\"op\":\"ping\",\"id\":null}", "{\"id\":null,\"ok\":true}"},
        {"{\"op\":\"ping\"}", "{\"ok\":true}"},
        {"{\"op\":\"ping\",\"id\":9007199254740993}", "{\"id\":9007199254740993,\"ok\":true}"},
        {"  {\"op\":\"ping\",\"id\":2}\r", "{\"id\":2,\"ok\":true}"},
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(cases); i++) {
        rt_send_str(&c, cases[i].req);
        rt_send_str(&c, "\n");
        char *line = rt_recv_line(&c);
        if (!line || strcmp(line, cases[i].reply) != 0)
            fail_msg("case %zu: got %s, want %s", i, line, cases[i].reply);
        free(line);
    }
    /* Blank lines are skipped without a reply. */
    rt_send_str(&c, "\n  \n");
    expect_ping(&c, 3);
    rt_disconnect(&c);
    stop_server(&p);
}

static void test_server_bad_input_corpus(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    for (size_t i = 0; i < DL_ARRAY_LEN(corpus); i++) {
        rt_send_str(&c, corpus[i].line);
        rt_send_str(&c, "\n");
        char *line = rt_recv_line(&c);
        char ctx[64];
        snprintf(ctx, sizeof ctx, "corpus case %zu", i);
        expect_code(line, corpus[i].code, ctx);
        free(line);
        expect_ping(&c, (int)i + 100);
    }
    /* Ids are echoed in error replies when the line was an object. */
    rt_send_str(&c, "{\"op\":\"nope\",\"id\":\"x7\"}\n");
    char *line = rt_recv_line(&c);
    json_t *j = rt_json(line);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "x7");
    json_decref(j);
    free(line);
    /* A second connection is unaffected by all of the above. */
    rt_conn_t c2;
    assert_true(rt_connect(&c2, addr));
    expect_ping(&c2, 1);
    rt_disconnect(&c2);
    rt_disconnect(&c);
    stop_server(&p);
}

/* Builds the corpus session: each bad line then a ping. */
static char *corpus_session(size_t *out_len) {
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    for (size_t i = 0; i < DL_ARRAY_LEN(corpus); i++)
        len += (size_t)snprintf(s + len, cap - len, "%s\n{\"op\":\"ping\",\"id\":%zu}\n",
                                corpus[i].line, i);
    *out_len = len;
    return s;
}

static void test_server_stdio_same_bytes_as_tcp(void **state) {
    (void)state;
    size_t n = 0;
    char *session = corpus_session(&n);
    /* stdio */
    rt_proc_t sp;
    const char *args[] = {"serve", "--stdio", "--memory", "--quiet", NULL};
    rt_spawn(&sp, NULL, args);
    rt_write(&sp, session, n);
    rt_close_in(&sp);
    size_t slen = 0;
    char *sout = rt_read_all(&sp, &slen);
    assert_int_equal(rt_wait(&sp), 0);
    /* TCP */
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    rt_send(&c, session, n);
    rt_shutdown_write(&c);
    size_t cap = slen + 1024, tlen = 0;
    char *tout = malloc(cap);
    for (;;) {
        char *line = rt_recv_line(&c);
        if (!line)
            break;
        tlen += (size_t)snprintf(tout + tlen, cap - tlen, "%s\n", line);
        free(line);
    }
    rt_disconnect(&c);
    stop_server(&p);
    if (slen != tlen || memcmp(sout, tout, slen) != 0)
        fail_msg("stdio and TCP differ:\n--- stdio\n%s\n--- tcp\n%s", sout, tout);
    /* And the replies are the expected ones, two per case. */
    size_t lines = 0;
    for (size_t i = 0; i < slen; i++)
        lines += sout[i] == '\n';
    assert_int_equal(lines, 2 * DL_ARRAY_LEN(corpus));
    free(session);
    free(sout);
    free(tout);
}

static void test_server_stdio_from_file(void **state) {
    (void)state;
    /* stdin and stdout redirected to files (the uv_fs path): replies must still come in
     * request order although engine ops (stats) finish later than pings, and file writes
     * go through the thread pool. */
    char *dir = rt_tempdir();
    char path[512];
    snprintf(path, sizeof path, "%s/in", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    enum { N = 300 };
    for (int i = 0; i < N; i++)
        fprintf(f, "{\"op\":\"stats\",\"id\":%d}\n{\"op\":\"ping\",\"id\":%d}\n", 2 * i, 2 * i + 1);
    fprintf(f, "{\"op\":\"nope\"}\n{\"op\":\"ping\",\"id\":-1}"); /* no final newline */
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s serve --stdio --memory --quiet < %s/in > %s/out", DL_CLI_PATH,
             dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/out", dir);
    f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    for (int i = 0; i < 2 * N; i++) {
        assert_non_null(fgets(line, sizeof line, f));
        json_t *j = rt_json(line);
        if (json_integer_value(json_object_get(j, "id")) != i)
            fail_msg("reply %d out of order: %s", i, line);
        assert_null(rt_error_code(j));
        json_decref(j);
    }
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"unknown_op\","
                              "\"message\":\"unknown op \\\"nope\\\"\"}}\n");
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "{\"id\":-1,\"ok\":true}\n");
    assert_null(fgets(line, sizeof line, f));
    fclose(f);
    rt_rmrf(dir);
    free(dir);
}

static void test_server_long_lines(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    const char *args[] = {"--memory", "--listen", "127.0.0.1:0", "--max-line", "1000", NULL};
    rt_start_server(&p, NULL, args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    /* A line exactly at the limit is decoded (here: a valid ping padded with spaces). */
    char line[300000];
    const char *ping = "{\"op\":\"ping\",\"id\":5}";
    memset(line, ' ', 1000);
    memcpy(line, ping, strlen(ping));
    line[1000] = '\n';
    rt_send(&c, line, 1001);
    char *r = rt_recv_line(&c);
    assert_string_equal(r, "{\"id\":5,\"ok\":true}");
    free(r);
    /* One byte over: limit error, the connection stays usable. */
    memset(line, 'x', 1001);
    line[1001] = '\n';
    rt_send(&c, line, 1002);
    r = rt_recv_line(&c);
    expect_code(r, "limit", "1001-byte line");
    free(r);
    expect_ping(&c, 6);
    /* A huge line sent in pieces gets one error, and what follows it still works. */
    memset(line, 'y', sizeof line);
    for (int i = 0; i < 4; i++)
        rt_send(&c, line, sizeof line);
    rt_send_str(&c, "\n");
    r = rt_recv_line(&c);
    expect_code(r, "limit", "1.2 MB line");
    free(r);
    expect_ping(&c, 7);
    rt_disconnect(&c);
    stop_server(&p);
}

/* Asks for "stats" over c until the server counts `want` open connections (bounded). */
static void wait_connections(rt_conn_t *c, long long want) {
    for (int i = 0; i < 20000; i++) {
        rt_send_str(c, "{\"op\":\"stats\",\"id\":\"w\"}\n");
        char *line = rt_recv_line(c);
        assert_non_null(line);
        json_t *j = rt_json(line);
        free(line);
        long long n =
            json_integer_value(json_object_get(json_object_get(j, "server"), "connections"));
        json_decref(j);
        if (n == want)
            return;
    }
    fail_msg("the server never counted %lld connections", want);
}

static void test_server_max_connections(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    const char *args[] = {"--memory", "--listen", "127.0.0.1:0", "--max-connections", "2", NULL};
    rt_start_server(&p, NULL, args, addr, sizeof addr);
    rt_conn_t a, b, c;
    assert_true(rt_connect(&a, addr));
    expect_ping(&a, 1);
    assert_true(rt_connect(&b, addr));
    expect_ping(&b, 2);
    assert_true(rt_connect(&c, addr));
    char *line = rt_recv_line(&c);
    expect_code(line, "limit", "third connection");
    free(line);
    assert_null(rt_recv_line(&c)); /* then closed */
    rt_disconnect(&c);
    /* The first two are unaffected; after one leaves, a new one is accepted. */
    expect_ping(&a, 3);
    rt_disconnect(&b);
    /* Wait until the server has released b: its own count, asked over a (each stats reply is
     * a message to wait on, no sleeping); then d is accepted for sure. */
    wait_connections(&a, 1);
    rt_conn_t d;
    assert_true(rt_connect(&d, addr));
    expect_ping(&d, 4);
    rt_disconnect(&d);
    rt_disconnect(&a);
    stop_server(&p);
}

static void test_server_token_hello(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    const char *args[] = {"--memory", "--listen", "127.0.0.1:0", "--token", "s3cret", NULL};
    rt_start_server(&p, NULL, args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    rt_send_str(&c, "{\"op\":\"ping\",\"id\":1}\n");
    char *line = rt_recv_line(&c);
    expect_code(line, "auth", "ping before hello");
    free(line);
    rt_send_str(&c, "{\"op\":\"hello\",\"id\":2,\"token\":\"wrong\"}\n");
    line = rt_recv_line(&c);
    expect_code(line, "auth", "wrong token");
    free(line);
    rt_send_str(&c, "{\"op\":\"hello\",\"id\":3}\n");
    line = rt_recv_line(&c);
    expect_code(line, "auth", "missing token");
    free(line);
    rt_send_str(&c, "{\"op\":\"hello\",\"id\":4,\"token\":\"s3cret\",\"protocol\":2}\n");
    line = rt_recv_line(&c);
    expect_code(line, "version", "protocol 2");
    free(line);
    rt_send_str(&c, "{\"op\":\"hello\",\"id\":5,\"token\":\"s3cret\",\"client\":\"test\"}\n");
    line = rt_recv_line(&c);
    json_t *j = rt_json(line);
    assert_null(rt_error_code(j));
    assert_int_equal(json_integer_value(json_object_get(j, "protocol")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "server")), "deltalog");
    json_decref(j);
    free(line);
    expect_ping(&c, 6);
    rt_disconnect(&c);
    stop_server(&p);
    /* Binding beyond loopback without a token is refused at start (usage error). */
    const char *bad[] = {"serve", "--memory", "--listen", "0.0.0.0:0", NULL};
    char *err = NULL;
    assert_int_equal(rt_run(NULL, bad, NULL, NULL, &err), 2);
    assert_non_null(strstr(err, "token"));
    free(err);
}

/* Many requests in one write, alternating I/O-thread ops (ping) and engine ops (stats,
 * and a failing transact), come back in request order. */
static void test_server_pipelined_order(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    enum { N = 3000 };
    size_t cap = N * 64, len = 0;
    char *batch = malloc(cap);
    for (int i = 0; i < N; i++) {
        const char *op = i % 3 == 0 ? "ping" : i % 3 == 1 ? "stats" : "schema";
        len += (size_t)snprintf(batch + len, cap - len, "{\"op\":\"%s\",\"id\":%d}\n", op, i);
    }
    rt_send(&c, batch, len);
    for (int i = 0; i < N; i++) {
        char *line = rt_recv_line(&c);
        assert_non_null(line);
        json_t *j = rt_json(line);
        if (json_integer_value(json_object_get(j, "id")) != i)
            fail_msg("reply %d out of order: %s", i, line);
        json_decref(j);
        free(line);
    }
    free(batch);
    rt_disconnect(&c);
    stop_server(&p);
}

/* A client that writes much and reads nothing: the server stops reading it (bounded
 * outbound buffer), stays responsive to others, and delivers everything once it reads. */
static void test_server_backpressure(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    const char *args[] = {"--memory", "--listen", "127.0.0.1:0", "--max-outbuf", "4096", NULL};
    rt_start_server(&p, NULL, args, addr, sizeof addr);
    rt_conn_t slow, other;
    assert_true(rt_connect(&slow, addr));
    enum { N = 100000 };
    /* Write from a child so this thread can check the other connection meanwhile. */
    pid_t w = fork();
    if (w == 0) {
        char line[64];
        for (int i = 0; i < N; i++) {
            int k = snprintf(line, sizeof line, "{\"op\":\"ping\",\"id\":%d}\n", i);
            rt_send(&slow, line, (size_t)k);
        }
        _exit(0);
    }
    assert_true(rt_connect(&other, addr));
    expect_ping(&other, -1);
    for (int i = 0; i < N; i++) {
        char *line = rt_recv_line(&slow);
        assert_non_null(line);
        char want[64];
        snprintf(want, sizeof want, "{\"id\":%d,\"ok\":true}", i);
        if (strcmp(line, want) != 0)
            fail_msg("reply %d: %s", i, line);
        free(line);
    }
    int st;
    waitpid(w, &st, 0);
    expect_ping(&other, -2);
    rt_disconnect(&other);
    rt_disconnect(&slow);
    stop_server(&p);
}

static void test_server_half_close_and_stop(void **state) {
    (void)state;
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    /* The last request has no newline: end of input ends it. */
    rt_send_str(
        &c, "{\"op\":\"ping\",\"id\":1}\n{\"op\":\"stats\",\"id\":2}\n{\"op\":\"ping\",\"id\":3}");
    rt_shutdown_write(&c);
    for (int i = 1; i <= 3; i++) {
        char *line = rt_recv_line(&c);
        json_t *j = rt_json(line);
        assert_int_equal(json_integer_value(json_object_get(j, "id")), i);
        assert_null(rt_error_code(j));
        json_decref(j);
        free(line);
    }
    assert_null(rt_recv_line(&c)); /* and the server closes */
    rt_disconnect(&c);
    /* SIGINT stops it like SIGTERM, exit status 0. */
    kill(p.pid, SIGINT);
    assert_int_equal(rt_wait(&p), 0);
}

static void *embedded_run(void *arg) {
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl_server_run(arg, &err);
    return (void *)(intptr_t)rc;
}

/* The embedding API in this process: new, run on a thread, serve, stop from another
 * thread, free (ASan checks that nothing leaks). */
static void test_server_embedded_api(void **state) {
    (void)state;
    dl_server_options_t o;
    dl_server_options_init(&o);
    o.memory = true;
    o.listen = "127.0.0.1:0";
    o.handle_signals = false;
    o.quiet = true;
    dl_server_t *s = NULL;
    dl_error_t err;
    dl_error_clear(&err);
    assert_int_equal(dl_server_new(&o, &s, &err), 0);
    const char *addr = dl_server_address(s);
    assert_non_null(strstr(addr, "127.0.0.1:"));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, embedded_run, s), 0);
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    expect_ping(&c, 1);
    rt_send_str(&c, "{\"op\":\"stats\",\"id\":2}\n");
    char *line = rt_recv_line(&c);
    json_t *j = rt_json(line);
    assert_null(rt_error_code(j));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "server"), "connections")), 1);
    json_decref(j);
    free(line);
    dl_server_stop(s);
    void *rc = NULL;
    pthread_join(th, &rc);
    assert_int_equal((intptr_t)rc, 0);
    assert_null(rt_recv_line(&c)); /* the server closed the connection */
    rt_disconnect(&c);
    dl_server_free(s);
    /* A listen address that cannot be used fails cleanly in dl_server_new. */
    o.listen = "256.1.1.1:80";
    s = NULL;
    dl_error_clear(&err);
    assert_int_equal(dl_server_new(&o, &s, &err), DL_EINVAL);
    assert_null(s);
    o.listen = "10.1.2.3:0"; /* not loopback and no token */
    dl_error_clear(&err);
    assert_int_equal(dl_server_new(&o, &s, &err), DL_EAUTH);
}

/* The test scan in cmake/Deltalog.cmake needs the group macro and its topic on one line. */
// clang-format off
DL_TEST_GROUP(server, cmocka_unit_test(test_server_ping_and_ids),
              cmocka_unit_test(test_server_bad_input_corpus),
              cmocka_unit_test(test_server_stdio_same_bytes_as_tcp),
              cmocka_unit_test(test_server_stdio_from_file),
              cmocka_unit_test(test_server_long_lines),
              cmocka_unit_test(test_server_max_connections),
              cmocka_unit_test(test_server_token_hello),
              cmocka_unit_test(test_server_pipelined_order),
              cmocka_unit_test(test_server_backpressure),
              cmocka_unit_test(test_server_half_close_and_stop),
              cmocka_unit_test(test_server_embedded_api));
// clang-format on
