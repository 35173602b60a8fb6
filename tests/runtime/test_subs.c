/*
 * test_subs.c: subscriptions over the wire (docs/protocol.md "Subscriptions"), against the
 * built `deltalog` binary over a loopback socket and over stdio: the reply and snapshot,
 * diffs after transactions from another connection, unsubscribe, a closed connection
 * releasing its subscriptions, a shared dataflow across connections, each backpressure
 * policy with a client that stops reading (coalesce converges when it resumes while the
 * server's held bytes stay bounded; drop ends "lagged"; block slows the writer, then ends
 * "timeout"), the end message at shutdown, and 100 concurrent clients transacting and
 * subscribing (every acknowledged transaction visible; every subscriber's accumulated
 * diffs equal the one-shot result), and subscriptions watching a time dimension ("dims":
 * coordinates, frontiers, a retroactive correction, a shared dataflow, refused dims).
 * Synchronization waits on messages only (replies, stats answers, subscription lines);
 * rt_helpers' deadline is a failsafe against hangs, never a sleep.
 * Every case needs the store, Datalog and subscriptions (DL_HAVE_SUBS); otherwise the
 * "unsupported" answers are checked by test_server.c's corpus.
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "tests/runtime/rt_helpers.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static const char *const schema_line =
    "{\"op\":\"transact\",\"tx\":\"[{:db/ident :o/id :db/valueType :db.type/long "
    ":db/cardinality :db.cardinality/one :db/unique :db.unique/identity} {:db/ident :o/note "
    ":db/valueType :db.type/string :db/cardinality :db.cardinality/one}]\"}\n";

static const char *const q_ids = "[:find ?i :where [?e :o/id ?i]]";
static const char *const q_notes = "[:find ?i ?n :where [?e :o/id ?i] [?e :o/note ?n]]";

static void stop_server(rt_proc_t *p) {
    kill(p->pid, SIGTERM);
    assert_int_equal(rt_wait(p), 0); /* graceful stop, no leaks under ASan */
}

static json_t *recv_json(rt_conn_t *c) {
    char *line = rt_recv_line(c);
    if (!line)
        fail_msg("no line from the server");
    json_t *j = rt_json(line);
    free(line);
    return j;
}

/* Sends a request and returns its (successful) reply. Only for connections without
 * subscriptions, where the next line is the reply. */
static json_t *call_ok(rt_conn_t *c, const char *line) {
    rt_send_str(c, line);
    json_t *j = recv_json(c);
    if (rt_error_code(j))
        fail_msg("request %s failed: %s", line, json_dumps(j, 0));
    return j;
}

static long long tx_ok(rt_conn_t *c, const char *line) {
    json_t *j = call_ok(c, line);
    long long t = json_integer_value(json_object_get(j, "t"));
    json_decref(j);
    return t;
}

static char *str_printf(const char *fmt, ...) DL_PRINTF(1, 2);
static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A transaction adding order i with a note of `note_len` characters. */
static char *order_tx(long long i, size_t note_len, char fill) {
    char *note = malloc(note_len + 1);
    memset(note, fill, note_len);
    note[note_len] = 0;
    char *s =
        str_printf("{\"op\":\"transact\",\"tx\":\"[{:o/id %lld :o/note \\\"%s\\\"}]\"}\n", i, note);
    free(note);
    return s;
}

/* ---- a subscriber's accumulated result ----------------------------------------------------- */

typedef struct acc {
    json_t *rows; /* object: compact JSON of the row -> accumulated diff */
    long long sub, last_t;
    int msgs;
    bool snapshot_seen, ended;
    char end_code[32];
} acc_t;

static void acc_init(acc_t *a, long long sub) {
    memset(a, 0, sizeof *a);
    a->rows = json_object();
    a->sub = sub;
    a->last_t = -1;
}

/* Applies one subscription message (checks its shape and order). */
static void acc_apply(acc_t *a, const json_t *m) {
    assert_int_equal(json_integer_value(json_object_get(m, "sub")), a->sub);
    assert_false(a->ended);
    if (json_is_true(json_object_get(m, "end"))) {
        a->ended = true;
        const char *code = json_string_value(json_object_get(json_object_get(m, "error"), "code"));
        snprintf(a->end_code, sizeof a->end_code, "%s", code ? code : "");
        return;
    }
    bool snap = json_is_true(json_object_get(m, "snapshot"));
    assert_true(snap == !a->snapshot_seen); /* the first message, and only it, is the snapshot */
    a->snapshot_seen = true;
    long long t = json_integer_value(json_object_get(m, "t"));
    assert_true(t > a->last_t); /* times strictly increase */
    assert_int_equal(json_integer_value(json_array_get(json_object_get(m, "time"), 0)), t);
    a->last_t = t;
    a->msgs++;
    const json_t *diff = json_object_get(m, "diff");
    assert_true(json_is_array(diff));
    for (size_t i = 0; i < json_array_size(diff); i++) {
        const json_t *pair = json_array_get(diff, i);
        char *key = json_dumps(json_array_get(pair, 0), JSON_COMPACT);
        long long d = json_integer_value(json_array_get(pair, 1));
        assert_true(d != 0);
        if (snap)
            assert_true(d > 0);
        long long now = json_integer_value(json_object_get(a->rows, key)) + d;
        if (now == 0)
            json_object_del(a->rows, key);
        else
            json_object_set_new(a->rows, key, json_integer(now));
        free(key);
    }
}

/* Reads lines from c into a until its latest time reaches t (or it ends). Lines that are
 * not this subscription's messages are returned through `other` (may be NULL: fail). */
static void acc_until(acc_t *a, rt_conn_t *c, long long t) {
    while (a->last_t < t && !a->ended) {
        json_t *m = recv_json(c);
        if (!json_object_get(m, "sub") || json_object_get(m, "ok"))
            fail_msg("unexpected line %s", json_dumps(m, 0));
        acc_apply(a, m);
        json_decref(m);
    }
}

/* The one-shot result of q as the same kind of object (each row once). */
static json_t *oneshot(rt_conn_t *c, const char *q, long long *out_t) {
    json_t *req = json_pack("{s:s,s:s}", "op", "query", "q", q);
    char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *nl = str_printf("%s\n", line);
    free(line);
    json_t *r = call_ok(c, nl);
    free(nl);
    json_t *set = json_object();
    const json_t *rows = json_object_get(r, "rows");
    for (size_t i = 0; i < json_array_size(rows); i++) {
        char *key = json_dumps(json_array_get(rows, i), JSON_COMPACT);
        json_object_set_new(set, key, json_integer(1));
        free(key);
    }
    if (out_t)
        *out_t = json_integer_value(json_object_get(r, "t"));
    json_decref(r);
    return set;
}

static void assert_acc_equals(const acc_t *a, const json_t *set) {
    if (!json_equal(a->rows, (json_t *)set)) {
        char *x = json_dumps(a->rows, JSON_COMPACT | JSON_SORT_KEYS);
        char *y = json_dumps(set, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("accumulated diffs %s != one-shot result %s", x, y);
    }
}

/* Subscribes on c (which must have nothing else in flight) and returns the sub number;
 * the reply's columns and shared_with are checked when given. */
static long long subscribe(rt_conn_t *c, const char *q, const char *extra, long long *shared) {
    json_t *req = json_pack("{s:s,s:s}", "op", "subscribe", "q", q);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    body[strlen(body) - 1] = 0; /* drop '}' to append extra fields */
    char *line = str_printf("%s%s}\n", body, extra ? extra : "");
    free(body);
    rt_send_str(c, line);
    free(line);
    json_t *r = recv_json(c);
    if (rt_error_code(r))
        fail_msg("subscribe failed: %s", json_dumps(r, 0));
    long long sub = json_integer_value(json_object_get(r, "sub"));
    assert_true(sub > 0);
    assert_true(json_is_array(json_object_get(r, "columns")));
    if (shared)
        *shared = json_integer_value(json_object_get(r, "shared_with"));
    json_decref(r);
    return sub;
}

/* The "subscriptions" object of a stats reply (new). */
static json_t *sub_stats(rt_conn_t *c) {
    json_t *r = call_ok(c, "{\"op\":\"stats\"}\n");
    json_t *s = json_incref(json_object_get(r, "subscriptions"));
    assert_non_null(s);
    json_object_set(s, "server", json_object_get(r, "server"));
    json_decref(r);
    return s;
}

static long long stat_of(const json_t *s, const char *k) {
    return json_integer_value(json_object_get(s, k));
}

/* Asks for stats until the registry counts `want` subscriptions (bounded; the release of a
 * closed connection's subscriptions is asynchronous: this waits on the server's answers). */
static void wait_subs(rt_conn_t *c, long long want) {
    for (int i = 0; i < 20000; i++) {
        json_t *s = sub_stats(c);
        long long n = stat_of(s, "subscriptions");
        json_decref(s);
        if (n == want)
            return;
    }
    fail_msg("the server never counted %lld subscriptions", want);
}

static const char *const mem_args[] = {"--memory", "--listen", "127.0.0.1:0", NULL};

/* ---- cases ---------------------------------------------------------------------------------- */

/* Snapshot, diffs from another connection's writes, unsubscribe, release on close,
 * sharing across connections. */
static void test_subs_tcp_basic(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_true(rt_connect(a, addr));
    assert_true(rt_connect(b, addr));
    tx_ok(b, schema_line);
    char *tx = order_tx(1, 3, 'x');
    long long t1 = tx_ok(b, tx);
    free(tx);

    long long sub = subscribe(a, q_notes, NULL, NULL);
    acc_t acc;
    acc_init(&acc, sub);
    json_t *m = recv_json(a);
    assert_true(json_is_true(json_object_get(m, "snapshot")));
    assert_int_equal(json_integer_value(json_object_get(m, "t")), t1);
    acc_apply(&acc, m);
    json_decref(m);
    json_t *set = oneshot(b, q_notes, NULL);
    assert_acc_equals(&acc, set);
    json_decref(set);

    /* Writes from b arrive at a as diffs tagged with their transaction. */
    tx = order_tx(2, 4, 'y');
    long long t2 = tx_ok(b, tx);
    free(tx);
    m = recv_json(a);
    assert_int_equal(json_integer_value(json_object_get(m, "t")), t2);
    char *dtext = json_dumps(json_object_get(m, "diff"), JSON_COMPACT);
    assert_string_equal(dtext, "[[[2,\"yyyy\"],1]]");
    free(dtext);
    acc_apply(&acc, m);
    json_decref(m);
    long long t3 =
        tx_ok(b, "{\"op\":\"transact\",\"tx\":\"[[:db/add [:o/id 1] :o/note \\\"z\\\"]]\"}\n");
    acc_until(&acc, a, t3);
    set = oneshot(b, q_notes, NULL);
    assert_acc_equals(&acc, set);
    json_decref(set);

    /* A second connection subscribing to the same query (written differently) shares its
     * dataflow; a third one, to another query, gets its own. */
    rt_conn_t *c2 = calloc(1, sizeof *c2), *c3 = calloc(1, sizeof *c3);
    assert_true(rt_connect(c2, addr));
    assert_true(rt_connect(c3, addr));
    long long shared = 0;
    long long sub2 =
        subscribe(c2, "[:find ?i ?n\n :where [?e :o/id ?i] [?e :o/note ?n]]", NULL, &shared);
    assert_int_equal(shared, 2);
    assert_true(sub2 != sub);
    subscribe(c3, q_ids, NULL, NULL);
    json_t *s = sub_stats(b);
    assert_int_equal(stat_of(s, "subscriptions"), 3);
    assert_int_equal(stat_of(s, "dataflows"), 2);
    json_decref(s);

    /* Closing a connection releases its subscriptions (and an unused dataflow). */
    rt_disconnect(c3);
    wait_subs(b, 2);
    s = sub_stats(b);
    assert_int_equal(stat_of(s, "dataflows"), 1);
    json_decref(s);
    rt_disconnect(c2);
    wait_subs(b, 1);

    /* unsubscribe: its reply, then the end message; a second one is "notfound". */
    char *un = str_printf("{\"op\":\"unsubscribe\",\"id\":7,\"sub\":%lld}\n", sub);
    rt_send_str(a, un);
    m = recv_json(a);
    assert_true(json_is_true(json_object_get(m, "ok")));
    assert_int_equal(json_integer_value(json_object_get(m, "id")), 7);
    json_decref(m);
    m = recv_json(a);
    acc_apply(&acc, m);
    json_decref(m);
    assert_true(acc.ended);
    assert_string_equal(acc.end_code, "closed");
    rt_send_str(a, un);
    m = recv_json(a);
    assert_string_equal(rt_error_code(m), "notfound");
    json_decref(m);
    free(un);
    s = sub_stats(b);
    assert_int_equal(stat_of(s, "subscriptions"), 0);
    assert_int_equal(stat_of(s, "dataflows"), 0);
    json_decref(s);
    json_decref(acc.rows);

    rt_disconnect(a);
    rt_disconnect(b);
    free(a);
    free(b);
    free(c2);
    free(c3);
    stop_server(&p);
}

/* The same bytes over stdio: a subscription's messages follow the replies in order. */
static void test_subs_stdio(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    const char *args[] = {"serve", "--memory", "--stdio", NULL};
    rt_spawn(&p, NULL, args);
    rt_write(&p, schema_line, strlen(schema_line));
    char *tx = order_tx(1, 2, 'a');
    rt_write(&p, tx, strlen(tx));
    free(tx);
    /* Pipelined: the snapshot comes right after its reply, before the next write's reply.
     * Policy block keeps every time apart (coalesce could merge the snapshot with the
     * next write when the engine runs it before this loop takes the snapshot). */
    const char *sub =
        "{\"op\":\"subscribe\",\"id\":\"s\",\"q\":\"[:find ?i :where [?e :o/id ?i]]\","
        "\"policy\":\"block\",\"dims\":[\"tx\"]}\n";
    rt_write(&p, sub, strlen(sub));
    tx = order_tx(2, 2, 'b');
    rt_write(&p, tx, strlen(tx));
    free(tx);
    static const char *const want[] = {
        "{\"ok\":true,\"t\":1,",
        "{\"ok\":true,\"t\":2,",
        "{\"id\":\"s\",\"ok\":true,\"sub\":1,\"columns\":[\"?i\"],\"policy\":\"block\","
        "\"shared_with\":1}",
        "{\"sub\":1,\"t\":2,\"time\":[2],\"diff\":[[[1],1]],\"snapshot\":true}",
        "{\"ok\":true,\"t\":3,",
        "{\"sub\":1,\"t\":3,\"time\":[3],\"diff\":[[[2],1]]}",
        "{\"id\":\"u\",\"ok\":true}",
        "{\"sub\":1,\"end\":true,\"error\":{\"code\":\"closed\",\"message\":\"unsubscribed\"}}",
    };
    const char *un = "{\"op\":\"unsubscribe\",\"id\":\"u\",\"sub\":1}\n";
    for (size_t i = 0; i < DL_ARRAY_LEN(want); i++) {
        if (i == 6) /* a sub number is known from its reply: unsubscribe after reading it */
            rt_write(&p, un, strlen(un));
        char *line = rt_read_line(&p);
        assert_non_null(line);
        if (strncmp(line, want[i], strlen(want[i])) != 0)
            fail_msg("line %zu: %s, want %s...", i, line, want[i]);
        free(line);
    }
    /* Pipelined: an unsubscribe sent before its subscribe's reply waits for it (a fresh
     * server numbers subscriptions 1, 2, ...); an unknown number is notfound. */
    const char *pipe =
        "{\"op\":\"subscribe\",\"id\":\"s2\",\"q\":\"[:find ?i :where [?e :o/id ?i]]\"}\n"
        "{\"op\":\"unsubscribe\",\"id\":\"u9\",\"sub\":9}\n"
        "{\"op\":\"unsubscribe\",\"id\":\"u2\",\"sub\":2}\n"
        "{\"op\":\"ping\",\"id\":\"p\"}\n";
    rt_write(&p, pipe, strlen(pipe));
    static const char *const want2[] = {
        "{\"id\":\"s2\",\"ok\":true,\"sub\":2,",
        "{\"sub\":2,\"t\":3,\"time\":[3],\"diff\":[[[1],1],[[2],1]],\"snapshot\":true}",
        "{\"id\":\"u9\",\"ok\":false,\"error\":{\"code\":\"notfound\"",
        "{\"id\":\"u2\",\"ok\":true}",
        "{\"sub\":2,\"end\":true,\"error\":{\"code\":\"closed\",\"message\":\"unsubscribed\"}}",
        "{\"id\":\"p\",\"ok\":true}",
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(want2); i++) {
        char *line = rt_read_line(&p);
        assert_non_null(line);
        if (strncmp(line, want2[i], strlen(want2[i])) != 0)
            fail_msg("pipelined line %zu: %s, want %s...", i, line, want2[i]);
        free(line);
    }
    rt_close_in(&p);
    assert_null(rt_read_line(&p));
    assert_int_equal(rt_wait(&p), 0);
}

/* A server with a small outbound buffer, for the policy cases. */
static const char *const small_args[] = {"--memory",     "--listen", "127.0.0.1:0",
                                         "--max-outbuf", "65536",    NULL};
#define BIG_NOTE 8000 /* characters per note: every diff line is this big */

/* coalesce: a client that stops reading while 1000 writes change one order's note holds
 * the server at a bounded number of bytes (its outbuf, plus one coalesced delta); when it
 * reads again it converges to the one-shot result. */
static void test_subs_coalesce_bounded(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, small_args, addr, sizeof addr);
    rt_conn_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_true(rt_connect(a, addr));
    assert_true(rt_connect(b, addr));
    tx_ok(b, schema_line);
    long long sub = subscribe(a, q_notes, NULL, NULL);
    acc_t acc;
    acc_init(&acc, sub);
    long long t = 0;
    const int n = 1000;           /* ~16 MB of diffs: more than loopback socket buffers hold */
    for (int i = 0; i < n; i++) { /* a reads nothing meanwhile */
        char *tx = order_tx(1 + i % 3, BIG_NOTE, (char)('a' + i % 26));
        t = tx_ok(b, tx);
        free(tx);
    }
    json_t *s = sub_stats(b);
    long long peak = stat_of(json_object_get(s, "server"), "out_queued_peak");
    print_message("coalesce: %d writes of %d bytes, server held at most %lld bytes\n", n, BIG_NOTE,
                  peak);
    /* Bounded: far below the ~16 MB written; the outbuf (64 KiB) plus the last message,
     * and the replies to b. */
    assert_true(peak < 65536 + 4 * (BIG_NOTE + 200));
    assert_int_equal(stat_of(s, "subscriptions"), 1);
    json_decref(s);
    acc_until(&acc, a, t);
    assert_false(acc.ended);
    assert_true(acc.msgs < n); /* some times were coalesced */
    json_t *set = oneshot(b, q_notes, NULL);
    assert_acc_equals(&acc, set);
    json_decref(set);
    json_decref(acc.rows);
    rt_disconnect(a);
    rt_disconnect(b);
    free(a);
    free(b);
    stop_server(&p);
}

/* Writes big orders from b until the registry has no subscription left (the one of the
 * non-reading client ended); returns the number of writes (bounded). */
static int write_until_ended(rt_conn_t *b, int max) {
    for (int i = 0; i < max; i++) {
        char *tx = order_tx(1000 + i, BIG_NOTE, 'q');
        tx_ok(b, tx);
        free(tx);
        json_t *s = sub_stats(b);
        long long n = stat_of(s, "subscriptions");
        json_decref(s);
        if (n == 0)
            return i + 1;
    }
    fail_msg("the subscription never ended after %d writes", max);
    return max;
}

/* Reads a's lines until its end message; returns the code. */
static void read_to_end(acc_t *acc, rt_conn_t *a) {
    while (!acc->ended) {
        json_t *m = recv_json(a);
        acc_apply(acc, m);
        json_decref(m);
    }
}

/* drop: a client that does not read is ended with "lagged" (its queue overflowed). */
static void test_subs_drop_lagged(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, small_args, addr, sizeof addr);
    rt_conn_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_true(rt_connect(a, addr));
    assert_true(rt_connect(b, addr));
    tx_ok(b, schema_line);
    long long sub =
        subscribe(a, q_notes, ",\"policy\":\"drop\",\"limits\":{\"max_queued\":4}", NULL);
    acc_t acc;
    acc_init(&acc, sub);
    int n = write_until_ended(b, 20000);
    print_message("drop: ended after %d writes\n", n);
    read_to_end(&acc, a);
    assert_string_equal(acc.end_code, "lagged");
    assert_true(acc.msgs < n + 1); /* it did not get every write */
    json_decref(acc.rows);
    rt_disconnect(a);
    rt_disconnect(b);
    free(a);
    free(b);
    stop_server(&p);
}

static long long now_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* block: the writer is slowed (the engine waits for the non-reading client's queue up to
 * its timeout), then the subscription ends with "timeout". */
static void test_subs_block_timeout(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, small_args, addr, sizeof addr);
    rt_conn_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_true(rt_connect(a, addr));
    assert_true(rt_connect(b, addr));
    tx_ok(b, schema_line);
    long long sub = subscribe(
        a, q_notes, ",\"policy\":\"block\",\"limits\":{\"max_queued\":2,\"timeout_ms\":300}", NULL);
    acc_t acc;
    acc_init(&acc, sub);
    long long t0 = now_ms();
    int n = write_until_ended(b, 20000);
    long long took = now_ms() - t0;
    print_message("block: ended after %d writes, %lld ms\n", n, took);
    /* The engine waited the whole timeout before giving up: a lower bound, not a race. */
    assert_true(took >= 300);
    read_to_end(&acc, a);
    assert_string_equal(acc.end_code, "timeout");
    json_decref(acc.rows);
    rt_disconnect(a);
    rt_disconnect(b);
    free(a);
    free(b);
    stop_server(&p);
}

/* SIGTERM: every subscriber gets its end message ("closed"), then the connection closes. */
static void test_subs_shutdown(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t *a = calloc(1, sizeof *a);
    assert_true(rt_connect(a, addr));
    tx_ok(a, schema_line);
    long long s1 = subscribe(a, q_ids, NULL, NULL);
    json_t *m = recv_json(a); /* snapshot */
    json_decref(m);
    long long s2 = subscribe(a, q_notes, NULL, NULL);
    m = recv_json(a);
    json_decref(m);
    kill(p.pid, SIGTERM);
    bool got1 = false, got2 = false;
    for (int i = 0; i < 2; i++) {
        m = recv_json(a);
        assert_true(json_is_true(json_object_get(m, "end")));
        assert_string_equal(json_string_value(json_object_get(json_object_get(m, "error"), "code")),
                            "closed");
        long long sub = json_integer_value(json_object_get(m, "sub"));
        got1 |= sub == s1;
        got2 |= sub == s2;
        json_decref(m);
    }
    assert_true(got1 && got2);
    assert_null(rt_recv_line(a)); /* then closed */
    assert_int_equal(rt_wait(&p), 0);
    rt_disconnect(a);
    free(a);
}

/* 100 concurrent clients, each subscribed and each writing 5 orders, all pipelined: every
 * acknowledged transaction is in the result afterwards, and every subscriber's
 * accumulated diffs equal the one-shot result. */
static void test_subs_concurrent_clients(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    enum { N = 100, K = 5 };
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t *cs = calloc(N + 1, sizeof *cs);
    acc_t *acc = calloc(N, sizeof *acc);
    assert_true(rt_connect(&cs[N], addr));
    tx_ok(&cs[N], schema_line);
    for (int i = 0; i < N; i++) {
        assert_true(rt_connect(&cs[i], addr));
        char *q = i % 2 ? "[:find ?i :where [?e :o/id ?i]]" : "[:find ?i\n :where [?e :o/id ?i]]";
        acc_init(&acc[i], subscribe(&cs[i], q, NULL, NULL));
    }
    json_t *s = sub_stats(&cs[N]);
    assert_int_equal(stat_of(s, "subscriptions"), N);
    assert_int_equal(stat_of(s, "dataflows"), 1); /* all share one */
    json_decref(s);
    /* Every client sends its K writes before anyone reads a reply. */
    for (int i = 0; i < N; i++)
        for (int k = 0; k < K; k++) {
            char *tx = str_printf("{\"op\":\"transact\",\"id\":%d,\"tx\":\"[{:o/id %d}]\"}\n", k,
                                  i * K + k);
            rt_send_str(&cs[i], tx);
            free(tx);
        }
    long long max_t = 0;
    for (int i = 0; i < N; i++) {
        int acks = 0;
        while (acks < K) {
            json_t *m = recv_json(&cs[i]);
            if (json_object_get(m, "ok")) {
                assert_null(rt_error_code(m));
                long long t = json_integer_value(json_object_get(m, "t"));
                if (t > max_t)
                    max_t = t;
                assert_int_equal(json_integer_value(json_object_get(m, "id")), acks);
                acks++;
            } else {
                acc_apply(&acc[i], m);
            }
            json_decref(m);
        }
    }
    long long t_one = 0;
    json_t *set = oneshot(&cs[N], q_ids, &t_one);
    assert_int_equal(t_one, max_t);
    assert_int_equal(json_object_size(set), N * K); /* every acknowledged write is there */
    for (int i = 0; i < N; i++) {
        acc_until(&acc[i], &cs[i], max_t);
        assert_int_equal(acc[i].last_t, max_t);
        assert_acc_equals(&acc[i], set);
        json_decref(acc[i].rows);
        rt_disconnect(&cs[i]);
    }
    json_decref(set);
    wait_subs(&cs[N], 0);
    rt_disconnect(&cs[N]);
    free(cs);
    free(acc);
    stop_server(&p);
}

/* `deltalog subscribe`: JSON lines for programs (until SIGINT: exit 0), a table for people
 * (until the server's shutdown end message: exit 0). */
static void test_subs_cli(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t *b = calloc(1, sizeof *b);
    assert_true(rt_connect(b, addr));
    tx_ok(b, schema_line);
    char *tx = order_tx(1, 2, 'a');
    tx_ok(b, tx);
    free(tx);
    rt_proc_t js, tab;
    const char *jargs[] = {"subscribe", "--connect", addr, "--format", "json", q_ids, NULL};
    const char *targs[] = {"subscribe", "--connect", addr, "--policy", "drop", q_notes, NULL};
    rt_spawn(&js, NULL, jargs);
    rt_spawn(&tab, NULL, targs);
    char *line = rt_read_line(&js);
    assert_non_null(line);
    json_t *j = rt_json(line);
    assert_true(json_integer_value(json_object_get(j, "sub")) > 0);
    json_decref(j);
    free(line);
    line = rt_read_line(&js);
    assert_non_null(strstr(line, "\"diff\":[[[1],1]],\"snapshot\":true"));
    free(line);
    static const char *const want_tab[] = {"subscription ", "-- t 2 (snapshot)", "+1\t1 \"aa\"",
                                           "-- t 3", "+1\t2 \"bb\""};
    for (size_t i = 0; i < 3; i++) {
        line = rt_read_line(&tab);
        assert_non_null(line);
        if (strncmp(line, want_tab[i], strlen(want_tab[i])) != 0)
            fail_msg("table line %zu: %s, want %s", i, line, want_tab[i]);
        free(line);
    }
    tx = order_tx(2, 2, 'b');
    long long t = tx_ok(b, tx);
    free(tx);
    assert_int_equal(t, 3);
    line = rt_read_line(&js);
    assert_non_null(strstr(line, "\"t\":3,\"time\":[3],\"diff\":[[[2],1]]"));
    free(line);
    for (size_t i = 3; i < DL_ARRAY_LEN(want_tab); i++) {
        line = rt_read_line(&tab);
        assert_non_null(line);
        if (strncmp(line, want_tab[i], strlen(want_tab[i])) != 0)
            fail_msg("table line %zu: %s, want %s", i, line, want_tab[i]);
        free(line);
    }
    kill(js.pid, SIGINT);
    assert_int_equal(rt_wait(&js), 0);
    rt_disconnect(b);
    free(b);
    stop_server(&p);
    line = rt_read_line(&tab);
    assert_string_equal(line, "-- end: the server is shutting down");
    free(line);
    assert_int_equal(rt_wait(&tab), 0);
}

/* ---- multi-dimensional time over the wire ("dims") ------------------------------------- */

/* The DATA messages of one subscription at two coordinates [tx, day], and its frontiers. */
typedef struct dacc {
    long long sub;
    json_t *data;      /* array of [tx, day, row-json, diff] */
    json_t *frontiers; /* array of [tx|null, day|null] */
    long long last_tx, last_day;
    bool snapshot_seen;
} dacc_t;

static void dacc_init(dacc_t *a, long long sub) {
    memset(a, 0, sizeof *a);
    a->sub = sub;
    a->data = json_array();
    a->frontiers = json_array();
    a->last_tx = a->last_day = -1;
}

static void dacc_apply(dacc_t *a, const json_t *m) {
    assert_int_equal(json_integer_value(json_object_get(m, "sub")), a->sub);
    const json_t *f = json_object_get(m, "frontier");
    if (f) {
        assert_int_equal(json_array_size(f), 2);
        json_array_append(a->frontiers, (json_t *)f);
        return;
    }
    const json_t *time = json_object_get(m, "time");
    assert_int_equal(json_array_size(time), 2);
    long long tx = json_integer_value(json_array_get(time, 0));
    long long day = json_integer_value(json_array_get(time, 1));
    assert_int_equal(json_integer_value(json_object_get(m, "t")), tx);
    bool snap = json_is_true(json_object_get(m, "snapshot"));
    assert_true(snap == !a->snapshot_seen);
    a->snapshot_seen = true;
    /* strictly increasing [tx, day], and never at or below a frontier received */
    assert_true(tx > a->last_tx || (tx == a->last_tx && day > a->last_day));
    for (size_t i = 0; i < json_array_size(a->frontiers); i++) {
        const json_t *fr = json_array_get(a->frontiers, i);
        const json_t *f0 = json_array_get(fr, 0), *f1 = json_array_get(fr, 1);
        bool below = (json_is_null(f0) || tx <= json_integer_value(f0)) &&
                     (json_is_null(f1) || day <= json_integer_value(f1));
        if (below)
            fail_msg("data at [%lld %lld] after frontier %s", tx, day, json_dumps(fr, 0));
    }
    a->last_tx = tx;
    a->last_day = day;
    const json_t *diff = json_object_get(m, "diff");
    for (size_t i = 0; i < json_array_size(diff); i++) {
        const json_t *pair = json_array_get(diff, i);
        json_array_append_new(a->data, json_pack("[IIOO]", tx, day, json_array_get(pair, 0),
                                                 json_array_get(pair, 1)));
    }
}

/* Reads c's lines into a until the frontier [tx, null] (transaction tx complete). */
static void dacc_until_done(dacc_t *a, rt_conn_t *c, long long tx) {
    for (;;) {
        json_t *m = recv_json(c);
        if (!json_object_get(m, "sub") || json_object_get(m, "ok"))
            fail_msg("unexpected line %s", json_dumps(m, 0));
        dacc_apply(a, m);
        const json_t *f = json_object_get(m, "frontier");
        bool done = f && json_integer_value(json_array_get(f, 0)) == tx &&
                    json_is_null(json_array_get(f, 1));
        json_decref(m);
        if (done)
            return;
    }
}

/* The rows whose accumulated diff at times <= [tx, day] is nonzero, as compact JSON of an
 * object row -> sum (new: free). */
static char *dacc_at(const dacc_t *a, long long tx, long long day) {
    json_t *set = json_object();
    for (size_t i = 0; i < json_array_size(a->data); i++) {
        const json_t *e = json_array_get(a->data, i);
        if (json_integer_value(json_array_get(e, 0)) > tx ||
            json_integer_value(json_array_get(e, 1)) > day)
            continue;
        char *key = json_dumps(json_array_get(e, 2), JSON_COMPACT);
        long long now = json_integer_value(json_object_get(set, key)) +
                        json_integer_value(json_array_get(e, 3));
        if (now)
            json_object_set_new(set, key, json_integer(now));
        else
            json_object_del(set, key);
        free(key);
    }
    char *t = json_dumps(set, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(set);
    return t;
}

static void dacc_expect(const dacc_t *a, long long tx, long long day, const char *want) {
    char *got = dacc_at(a, tx, day);
    if (strcmp(got, want) != 0)
        fail_msg("sum at [%lld %lld]: %s, expected %s", tx, day, got, want);
    free(got);
}

static bool dacc_has_frontier(const dacc_t *a, const char *want) {
    for (size_t i = 0; i < json_array_size(a->frontiers); i++) {
        char *t = json_dumps(json_array_get(a->frontiers, i), JSON_COMPACT);
        bool eq = strcmp(t, want) == 0;
        free(t);
        if (eq)
            return true;
    }
    return false;
}

static void dacc_fini(dacc_t *a) {
    json_decref(a->data);
    json_decref(a->frontiers);
}

/* A subscription watching [tx, :time/shipped] over TCP: the reply names the coordinates,
 * the snapshot is one message per day at [T, day] then the frontier; a shipment and a
 * retroactive one from another connection arrive with their coordinates, each
 * transaction closed by its frontier; the sums at [T, D] are the revenue by day D known
 * at T; a later subscriber of the shared dataflow gets the same sums in its snapshot; an
 * advance of the dimension arrives as a frontier [null, day]; bad "dims" are refused. */
static void test_subs_dims(void **state) {
    (void)state;
#if !DL_HAVE_SUBS
    skip();
#endif
    rt_proc_t p;
    char addr[80];
    rt_start_server(&p, NULL, mem_args, addr, sizeof addr);
    rt_conn_t *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b), *c = calloc(1, sizeof *c);
    assert_true(rt_connect(a, addr));
    assert_true(rt_connect(b, addr));
    assert_true(rt_connect(c, addr));
    tx_ok(b, "{\"op\":\"transact\",\"tx\":\"[{:db/ident :o/id :db/valueType :db.type/long "
             ":db/cardinality :db.cardinality/one :db/unique :db.unique/identity} "
             "{:db/ident :o/amt :db/valueType :db.type/long :db/cardinality "
             ":db.cardinality/one} {:db/ident :o/shipped :db/valueType :db.type/boolean "
             ":db/cardinality :db.cardinality/one} {:db/ident :time/shipped "
             ":db/timeDimension true} {:db/ident :time/billed :db/timeDimension true}]\"}\n");
    long long t0 = tx_ok(b, "{\"op\":\"transact\",\"tx\":\"[{:o/id 1 :o/amt 100} "
                            "{:o/id 2 :o/amt 200}]\"}\n");
    const char *q = "[:find (sum ?a) :with ?o :where [?o :o/shipped true] [?o :o/amt ?a]]";

    /* Refused dims: not a dimension, a dimension without the ones before it, unknown,
     * tx not first. */
    static const struct {
        const char *dims, *code;
    } bad[] = {{"[\":o/amt\"]", "inval"},
               {"[\"tx\",\":time/billed\"]", "unsupported"},
               {"[\":time/nope\"]", "unknown_attr"},
               {"[\":time/shipped\",\"tx\"]", "inval"},
               {"[3]", "type"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *line =
            str_printf("{\"op\":\"subscribe\",\"q\":\"%s\",\"dims\":%s}\n", q, bad[i].dims);
        rt_send_str(a, line);
        free(line);
        json_t *r = recv_json(a);
        const char *code = rt_error_code(r);
        if (!code || strcmp(code, bad[i].code) != 0)
            fail_msg("dims %s: %s, expected %s", bad[i].dims, json_dumps(r, 0), bad[i].code);
        json_decref(r);
    }

    /* The subscription: reply, snapshot at [t0 0] (nothing shipped), frontier [t0 null]. */
    char *line =
        str_printf("{\"op\":\"subscribe\",\"q\":\"%s\",\"dims\":[\"tx\",\":time/shipped\"]}\n", q);
    rt_send_str(a, line);
    free(line);
    json_t *r = recv_json(a);
    if (rt_error_code(r))
        fail_msg("subscribe failed: %s", json_dumps(r, 0));
    char *dims = json_dumps(json_object_get(r, "dims"), JSON_COMPACT);
    assert_string_equal(dims, "[\"tx\",\"time/shipped\"]");
    free(dims);
    dacc_t da;
    dacc_init(&da, json_integer_value(json_object_get(r, "sub")));
    json_decref(r);
    dacc_until_done(&da, a, t0);
    assert_int_equal(da.last_tx, t0);
    assert_int_equal(da.last_day, 0);
    dacc_expect(&da, t0, 9, "{}");

    /* Order 1 shipped on day 3; then order 2, recorded later, on day 1 (retroactive). */
    long long t1 = tx_ok(b, "{\"op\":\"transact\",\"tx\":\"[[:db/add [:o/id 1] :o/shipped "
                            "true]]\",\"time\":{\"time/shipped\":3}}\n");
    dacc_until_done(&da, a, t1);
    long long t2 = tx_ok(b, "{\"op\":\"transact\",\"tx\":\"[[:db/add [:o/id 2] :o/shipped "
                            "true]]\",\"time\":{\"time/shipped\":1}}\n");
    dacc_until_done(&da, a, t2);
    for (long long day = 0; day <= 5; day++) {
        const char *at_t1 = day < 3 ? "{}" : "{\"[100]\":1}";
        const char *at_t2 = day < 1 ? "{}" : day < 3 ? "{\"[200]\":1}" : "{\"[300]\":1}";
        dacc_expect(&da, t1, day, at_t1);
        dacc_expect(&da, t2, day, at_t2);
    }
    assert_int_equal(da.last_tx, t2);
    assert_int_equal(da.last_day, 3); /* the correction at day 3 came after day 1's change */

    /* A second subscriber (another connection, same query and dims): shares the dataflow;
     * its snapshot gives the same sums at t2 for every day. */
    line = str_printf("{\"op\":\"subscribe\",\"q\":\"%s\",\"dims\":[\":time/shipped\"]}\n", q);
    rt_send_str(c, line);
    free(line);
    r = recv_json(c);
    if (rt_error_code(r))
        fail_msg("subscribe failed: %s", json_dumps(r, 0));
    assert_int_equal(json_integer_value(json_object_get(r, "shared_with")), 2);
    dacc_t dc;
    dacc_init(&dc, json_integer_value(json_object_get(r, "sub")));
    json_decref(r);
    dacc_until_done(&dc, c, t2);
    for (long long day = 0; day <= 5; day++)
        dacc_expect(&dc, t2, day, day < 1 ? "{}" : day < 3 ? "{\"[200]\":1}" : "{\"[300]\":1}");

    /* Days before 2 are closed: a frontier [null 1] to both; the advance's transaction
     * changes nothing, so only frontiers come. */
    long long t3 = tx_ok(b, "{\"op\":\"advance\",\"dim\":\"time/shipped\",\"to\":2}\n");
    dacc_until_done(&da, a, t3);
    dacc_until_done(&dc, c, t3);
    assert_true(dacc_has_frontier(&da, "[null,1]"));
    assert_true(dacc_has_frontier(&dc, "[null,1]"));
    assert_int_equal(da.last_tx, t2);

    dacc_fini(&da);
    dacc_fini(&dc);
    rt_disconnect(a);
    rt_disconnect(b);
    rt_disconnect(c);
    free(a);
    free(b);
    free(c);
    stop_server(&p);
}

/* The test scan in cmake/Deltalog.cmake needs the group macro and its topic on one line. */
// clang-format off
DL_TEST_GROUP(subs, cmocka_unit_test(test_subs_tcp_basic),
              cmocka_unit_test(test_subs_stdio),
              cmocka_unit_test(test_subs_coalesce_bounded),
              cmocka_unit_test(test_subs_drop_lagged),
              cmocka_unit_test(test_subs_block_timeout),
              cmocka_unit_test(test_subs_shutdown),
              cmocka_unit_test(test_subs_concurrent_clients),
              cmocka_unit_test(test_subs_cli),
              cmocka_unit_test(test_subs_dims));
// clang-format on
