/*
 * test_dashboard.c: the live dashboard (`deltalog demo`, runtime/demo.c and http.c,
 * examples/dashboard/README.md) through the built binary:
 *  - HTTP: the page and its files are served, a missing file is a 404, nothing outside
 *    the web directory is served;
 *  - WebSocket: protocol v1 over WebSocket gives the same reply bytes as TCP, in request
 *    order, one message per reply; errors stay on the connection; subscriptions push
 *    their messages over it;
 *  - the demo: loads the W2 sample once (a second start on the same directory does not
 *    load again) and its background writer keeps committing;
 *  - the page in headless Chromium (dashboard_check.py): numbers change after a
 *    transaction, a typed query shows its live result, a screenshot is saved under the
 *    build directory.
 * The WebSocket client below is a small RFC 6455 client for the test only (the server
 * side is libwebsockets). Waits are bounded by deadlines, never sleeps.
 */
#include "tests/harness/dl_test.h"
#include "tests/runtime/rt_helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef DL_DASH_CHECK
#define DL_DASH_CHECK "tests/runtime/dashboard_check.py"
#endif
#ifndef DL_DASH_SHOT
#define DL_DASH_SHOT "dashboard.png"
#endif

/* The demo a case started, stopped by the teardown when the case failed before stopping it. */
static pid_t running_demo = -1;

typedef struct demo {
    rt_proc_t p;
    char http[96]; /* HOST:PORT */
    char proto[96];
    long orders;
} demo_t;

/* Starts `deltalog demo` on free ports; waits for its "ready" line (sample loaded).
 * gen: --gen FILE (a missing FILE: the built-in generator), NULL: the default. */
static void demo_start_gen(demo_t *d, const char *data, const char *rate, const char *orders,
                           const char *gen) {
    memset(d, 0, sizeof *d);
    const char *args[] = {"demo",
                          data ? "--data" : "--memory",
                          data ? data : "--quiet",
                          "--http",
                          "127.0.0.1:0",
                          "--listen",
                          "127.0.0.1:0",
                          "--rate",
                          rate,
                          "--orders",
                          orders,
                          "--quiet",
                          gen ? "--gen" : NULL,
                          gen,
                          NULL};
    rt_spawn(&d->p, NULL, args);
    running_demo = d->p.pid;
    for (;;) {
        char *line = rt_read_line(&d->p);
        assert_non_null(line);
        if (strncmp(line, "dashboard: http://", 18) == 0) {
            snprintf(d->http, sizeof d->http, "%s", line + 18);
            char *slash = strchr(d->http, '/');
            if (slash)
                *slash = 0;
        } else if (strncmp(line, "protocol: ", 10) == 0) {
            snprintf(d->proto, sizeof d->proto, "%s", line + 10);
            char *sp = strchr(d->proto, ' ');
            if (sp)
                *sp = 0;
        } else if (strncmp(line, "ready: ", 7) == 0) {
            d->orders = strtol(line + 7, NULL, 10);
            free(line);
            break;
        }
        free(line);
    }
    assert_true(d->http[0] && d->proto[0]);
}

static void demo_start(demo_t *d, const char *data, const char *rate, const char *orders) {
    demo_start_gen(d, data, rate, orders, NULL);
}

/* SIGINT: the demo stops gracefully and exits 0. */
static void demo_stop(demo_t *d) {
    kill(d->p.pid, SIGINT);
    running_demo = -1;
    assert_int_equal(rt_wait(&d->p), 0);
}

static int tcp_to(const char *addr) {
    char host[64];
    const char *colon = strrchr(addr, ':');
    assert_non_null(colon);
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    assert_int_equal(inet_pton(AF_INET, host, &sa.sin_addr), 1);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n) {
    const char *s = p;
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        assert_true(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

/* Reads exactly n bytes (deadline-bounded). */
static void recv_exact(int fd, void *p, size_t n) {
    char *s = p;
    while (n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        assert_true(poll(&pfd, 1, RT_DEADLINE_MS) == 1);
        ssize_t k = recv(fd, s, n, 0);
        assert_true(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

/* One HTTP/1.0 GET: the whole response (malloc'd), read until the server closes. */
static char *http_get(const char *addr, const char *path) {
    int fd = tcp_to(addr);
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path, addr);
    send_all(fd, req, (size_t)n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        assert_true(poll(&pfd, 1, RT_DEADLINE_MS) == 1);
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + len, cap - len - 1, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
        /* HTTP/1.0 without keep-alive: lws closes after the body; also stop once the
         * advertised body is complete (some builds keep the connection open). */
        buf[len] = 0;
        char *hdr_end = strstr(buf, "\r\n\r\n");
        char *cl = strcasestr(buf, "content-length:");
        if (hdr_end && cl && cl < hdr_end &&
            len >= (size_t)(hdr_end + 4 - buf) + strtoul(cl + 15, NULL, 10))
            break;
    }
    buf[len] = 0;
    close(fd);
    return buf;
}

/* ---- a minimal WebSocket client (RFC 6455) -------------------------------------------------- */

static int ws_open(const char *addr) {
    int fd = tcp_to(addr);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     addr);
    send_all(fd, req, (size_t)n);
    char head[2048];
    size_t len = 0;
    while (len < 4 || memcmp(head + len - 4, "\r\n\r\n", 4) != 0) {
        assert_true(len < sizeof head - 1);
        recv_exact(fd, head + len, 1);
        len++;
    }
    head[len] = 0;
    assert_non_null(strstr(head, " 101 "));
    /* The RFC's example key has this accept value. */
    assert_non_null(strcasestr(head, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    return fd;
}

static void ws_send(int fd, const char *text) {
    size_t n = strlen(text);
    unsigned char hdr[14];
    size_t h = 0;
    hdr[h++] = 0x81;
    if (n < 126) {
        hdr[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (unsigned char)(n >> 8);
        hdr[h++] = (unsigned char)n;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (unsigned char)(n >> (8 * i));
    }
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(hdr + h, mask, 4);
    h += 4;
    char *body = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)(text[i] ^ mask[i % 4]);
    send_all(fd, hdr, h);
    send_all(fd, body, n);
    free(body);
}

/* The next text message (malloc'd, NUL-terminated); fails on close or deadline. */
static char *ws_recv(int fd) {
    unsigned char h[2];
    recv_exact(fd, h, 2);
    assert_int_equal(h[0] & 0x0f, 1); /* text */
    assert_true(h[0] & 0x80);         /* the server sends each reply unfragmented */
    assert_false(h[1] & 0x80);        /* and unmasked */
    uint64_t n = h[1] & 0x7f;
    if (n == 126) {
        unsigned char e[2];
        recv_exact(fd, e, 2);
        n = ((uint64_t)e[0] << 8) | e[1];
    } else if (n == 127) {
        unsigned char e[8];
        recv_exact(fd, e, 8);
        n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | e[i];
    }
    char *s = malloc(n + 1);
    recv_exact(fd, s, n);
    s[n] = 0;
    return s;
}

/* The TCP reply line to one request, for comparing bytes. */
static char *tcp_reply(const char *addr, const char *req) {
    rt_conn_t c;
    assert_true(rt_connect(&c, addr));
    rt_send_str(&c, req);
    rt_send_str(&c, "\n");
    char *line = rt_recv_line(&c);
    assert_non_null(line);
    rt_disconnect(&c);
    return line;
}

/* ---- cases ------------------------------------------------------------------------------------
 */

static void test_dashboard_http(void **state) {
    (void)state;
    demo_t d;
    /* The built-in generator (what a checkout without ../shared uses). */
    demo_start_gen(&d, NULL, "0", "300", "/nonexistent/gen.py");
    assert_int_equal(d.orders, 300);
    char *r = http_get(d.http, "/");
    assert_true(strncmp(r, "HTTP/1.", 7) == 0 && strstr(r, " 200 ") == strchr(r, ' '));
    assert_non_null(strcasestr(r, "content-type: text/html"));
    assert_non_null(strstr(r, "<script src=\"app.js\"></script>"));
    free(r);
    r = http_get(d.http, "/app.js");
    assert_non_null(strstr(r, " 200 "));
    assert_non_null(strcasestr(r, "javascript"));
    assert_non_null(strstr(r, "'subscribe'"));
    free(r);
    r = http_get(d.http, "/style.css");
    assert_non_null(strstr(r, " 200 "));
    assert_non_null(strcasestr(r, "text/css"));
    free(r);
    r = http_get(d.http, "/no-such-file.html");
    assert_non_null(strstr(r, " 404 "));
    free(r);
    /* Nothing outside the web directory is served. */
    const char *escapes[] = {"/../../../../../../etc/passwd", "/..%2f..%2f..%2f..%2fetc%2fpasswd"};
    for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
        r = http_get(d.http, escapes[i]);
        assert_null(strstr(r, " 200 "));
        assert_null(strstr(r, "root:"));
        free(r);
    }
    demo_stop(&d);
}

static void test_dashboard_websocket(void **state) {
    (void)state;
    demo_t d;
    demo_start(&d, NULL, "0", "300");
    int ws = ws_open(d.http);
    /* ping, pipelined with a query, a decoding error and a request spanning lines: the
     * replies come one per message, in request order, with the TCP bytes. */
    const char *q = "{\"op\":\"query\",\"id\":2,\"q\":\"[:find ?s (count ?o) :where [?o "
                    ":order/status ?s]]\"}";
    ws_send(ws, "{\"op\":\"ping\",\"id\":1}");
    ws_send(ws, q);
    ws_send(ws, "{\"op\":\"ping\",\"id\":3");
    ws_send(ws, "{\"op\":\"ping\",\n\"id\":4}");
    char *m = ws_recv(ws);
    assert_string_equal(m, "{\"id\":1,\"ok\":true}");
    free(m);
    m = ws_recv(ws);
    char *t = tcp_reply(d.proto, q);
    assert_string_equal(m, t);
    json_t *j = rt_json(m);
    assert_int_equal(json_array_size(json_object_get(j, "rows")), 4); /* four statuses */
    json_decref(j);
    free(m);
    free(t);
    m = ws_recv(ws);
    j = rt_json(m);
    assert_string_equal(rt_error_code(j), "parse");
    json_decref(j);
    free(m);
    m = ws_recv(ws);
    assert_string_equal(m, "{\"id\":4,\"ok\":true}");
    free(m);

    /* A message larger than libwebsockets' 64 KiB receive buffer arrives in pieces and is
     * still one request (here 300 KB of JSON whitespace inside the object). */
    size_t big_n = 300000;
    char *big = malloc(big_n + 64);
    int off = snprintf(big, 64, "{\"op\":\"ping\",");
    memset(big + off, ' ', big_n);
    snprintf(big + off + big_n, 64, "\"id\":6}");
    ws_send(ws, big);
    free(big);
    m = ws_recv(ws);
    assert_string_equal(m, "{\"id\":6,\"ok\":true}");
    free(m);

    /* A subscription over the WebSocket: its reply, then its messages as they come. */
    ws_send(ws, "{\"op\":\"subscribe\",\"id\":5,\"q\":\"[:find ?id ?a :where [?o :order/id ?id] "
                "[?o :order/amount ?a] [(> ?a 5000)]]\"}");
    m = ws_recv(ws);
    j = rt_json(m);
    if (rt_error_code(j) && strcmp(rt_error_code(j), "unsupported") == 0) {
        /* subscriptions are not in this build's runtime yet: the error reply must still
         * come over the WebSocket, which it did */
        json_decref(j);
        free(m);
    } else {
        assert_null(rt_error_code(j));
        json_int_t sub = json_integer_value(json_object_get(j, "sub"));
        json_decref(j);
        free(m);
        /* A transaction over TCP shows up as a diff on the WebSocket. */
        char *tx = tcp_reply(d.proto, "{\"op\":\"transact\",\"tx\":[{\"order/id\":777777,"
                                      "\"order/amount\":6000,\"order/status\":\"open\"}]}");
        json_t *tj = rt_json(tx);
        assert_null(rt_error_code(tj));
        json_int_t tx_t = json_integer_value(json_object_get(tj, "t"));
        json_decref(tj);
        free(tx);
        bool seen = false;
        while (!seen) {
            m = ws_recv(ws);
            j = rt_json(m);
            assert_int_equal(json_integer_value(json_object_get(j, "sub")), sub);
            const json_t *diff = json_object_get(j, "diff");
            if (json_integer_value(json_object_get(j, "t")) == tx_t) {
                assert_int_equal(json_array_size(diff), 1);
                const json_t *row = json_array_get(json_array_get(diff, 0), 0);
                assert_int_equal(json_integer_value(json_array_get(row, 0)), 777777);
                assert_int_equal(json_integer_value(json_array_get(json_array_get(diff, 0), 1)), 1);
                seen = true;
            }
            json_decref(j);
            free(m);
        }
    }
    /* The demo stops cleanly with the WebSocket still open. */
    demo_stop(&d);
    close(ws);
}

static json_int_t tcp_t(const char *addr) {
    char *r = tcp_reply(addr, "{\"op\":\"stats\"}");
    json_t *j = rt_json(r);
    json_int_t t = json_integer_value(json_object_get(json_object_get(j, "store"), "t"));
    json_decref(j);
    free(r);
    return t;
}

static json_int_t count_orders(const char *addr) {
    char *r = tcp_reply(addr, "{\"op\":\"query\",\"q\":\"[:find (count ?o) . :where [?o "
                              ":order/id _]]\"}");
    json_t *j = rt_json(r);
    json_int_t n = json_integer_value(json_object_get(j, "result"));
    json_decref(j);
    free(r);
    return n;
}

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_dashboard_writer_and_reload(void **state) {
    (void)state;
    char *dir = rt_tempdir();
    char data[512];
    snprintf(data, sizeof data, "%s/data", dir);
    demo_t d;
    demo_start(&d, data, "200", "500");
    assert_int_equal(d.orders, 500);
    json_int_t t0 = tcp_t(d.proto);
    /* The writer commits on its own: wait (bounded) until t moved several times. */
    long long end = mono_ms() + RT_DEADLINE_MS;
    json_int_t t1 = t0;
    while (t1 < t0 + 5 && mono_ms() < end) {
        struct pollfd none;
        poll(&none, 0, 20); /* pacing the probe only; the deadline bounds the wait */
        t1 = tcp_t(d.proto);
    }
    assert_true(t1 >= t0 + 5);
    demo_stop(&d);
    /* A second start on the same directory does not load the sample again. */
    demo_start(&d, data, "0", "500");
    json_int_t n = count_orders(d.proto);
    assert_int_equal(d.orders, n);
    assert_true(n >= 250 && n < 1000); /* the writer's changes, not a second load */
    demo_stop(&d);
    rt_rmrf(dir);
    free(dir);
}

static void test_dashboard_chromium(void **state) {
    (void)state;
    demo_t d;
    demo_start(&d, NULL, "0", "2000");
    char url[160];
    snprintf(url, sizeof url, "http://%s/", d.http);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("python3", "python3", DL_DASH_CHECK, "--url", url, "--proto", d.proto, "--shot",
               DL_DASH_SHOT, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(access(DL_DASH_SHOT, R_OK), 0);
    demo_stop(&d);
}

static int stop_leftover(void **state) {
    (void)state;
    if (running_demo > 0) {
        kill(running_demo, SIGKILL);
        waitpid(running_demo, NULL, 0);
        running_demo = -1;
    }
    return 0;
}

DL_TEST_GROUP(dashboard, cmocka_unit_test_setup_teardown(test_dashboard_http, NULL, stop_leftover),
              cmocka_unit_test_setup_teardown(test_dashboard_websocket, NULL, stop_leftover),
              cmocka_unit_test_setup_teardown(test_dashboard_writer_and_reload, NULL,
                                              stop_leftover),
              cmocka_unit_test_setup_teardown(test_dashboard_chromium, NULL, stop_leftover));
