/*
 * rt_helpers.c: process spawning, deadline-bounded line reading and a TCP client for the
 * runtime tests (see rt_helpers.h).
 */
#include "tests/runtime/rt_helpers.h"

#include "tests/harness/dl_test.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rt_spawn(rt_proc_t *p, const char *cwd, const char *const *args) {
    memset(p, 0, sizeof *p);
    int pin[2], pout[2], perr[2];
    assert_int_equal(pipe(pin), 0);
    assert_int_equal(pipe(pout), 0);
    assert_int_equal(pipe(perr), 0);
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[0]);
        close(pin[1]);
        close(pout[0]);
        close(pout[1]);
        close(perr[0]);
        close(perr[1]);
        if (cwd && chdir(cwd) != 0)
            _exit(126);
        const char *argv[64];
        int n = 0;
        argv[n++] = DL_CLI_PATH;
        for (int i = 0; args && args[i] && n < 63; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(DL_CLI_PATH, (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    p->pid = pid;
    p->in = pin[1];
    p->out = pout[0];
    p->err = perr[0];
}

/* Reads a line from fd through buf; NULL at EOF/deadline. */
static char *read_line_fd(int fd, char *buf, size_t cap, size_t *len) {
    long long deadline = now_ms() + RT_DEADLINE_MS;
    for (;;) {
        char *nl = *len ? memchr(buf, '\n', *len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - buf);
            char *s = malloc(n + 1);
            memcpy(s, buf, n);
            s[n] = 0;
            memmove(buf, nl + 1, *len - n - 1);
            *len -= n + 1;
            return s;
        }
        if (*len == cap)
            fail_msg("line longer than %zu bytes", cap);
        long long left = deadline - now_ms();
        if (left <= 0) {
            print_error("rt: no line within %d ms\n", RT_DEADLINE_MS);
            return NULL;
        }
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        ssize_t k = read(fd, buf + *len, cap - *len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return NULL;
        *len += (size_t)k;
    }
}

char *rt_read_line(rt_proc_t *p) { return read_line_fd(p->out, p->obuf, sizeof p->obuf, &p->olen); }
char *rt_read_err_line(rt_proc_t *p) {
    return read_line_fd(p->err, p->ebuf, sizeof p->ebuf, &p->elen);
}

void rt_write(rt_proc_t *p, const char *s, size_t n) {
    while (n) {
        ssize_t k = write(p->in, s, n);
        if (k < 0 && errno == EINTR)
            continue;
        assert_true(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

void rt_close_in(rt_proc_t *p) {
    if (p->in >= 0)
        close(p->in);
    p->in = -1;
}

int rt_wait(rt_proc_t *p) {
    rt_close_in(p);
    int st = 0;
    /* Blocking: ctest's per-test TIMEOUT is the failsafe against a hung server. */
    while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
        ;
    close(p->out);
    close(p->err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *drain(int fd, size_t *out_len) {
    size_t cap = 4096, len = 0;
    char *s = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            s = realloc(s, cap *= 2);
        ssize_t k = read(fd, s + len, cap - len - 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    s[len] = 0;
    if (out_len)
        *out_len = len;
    return s;
}

char *rt_read_all(rt_proc_t *p, size_t *out_len) {
    size_t n = 0;
    char *rest = drain(p->out, &n);
    char *s = malloc(p->olen + n + 1);
    memcpy(s, p->obuf, p->olen);
    memcpy(s + p->olen, rest, n);
    s[p->olen + n] = 0;
    if (out_len)
        *out_len = p->olen + n;
    p->olen = 0;
    free(rest);
    return s;
}

int rt_run(const char *cwd, const char *const *args, const char *stdin_text, char **out,
           char **err) {
    rt_proc_t *p = calloc(1, sizeof *p);
    rt_spawn(p, cwd, args);
    if (stdin_text)
        rt_write(p, stdin_text, strlen(stdin_text));
    rt_close_in(p);
    /* Outputs of these commands are small: read stdout fully, then stderr. */
    char *o = rt_read_all(p, NULL);
    char *e = drain(p->err, NULL);
    int rc = rt_wait(p);
    if (out)
        *out = o;
    else
        free(o);
    if (err)
        *err = e;
    else
        free(e);
    free(p);
    return rc;
}

void rt_start_server(rt_proc_t *p, const char *cwd, const char *const *extra, char *addr,
                     size_t cap) {
    const char *args[40];
    int n = 0;
    args[n++] = "serve";
    for (int i = 0; extra && extra[i] && n < 38; i++)
        args[n++] = extra[i];
    args[n++] = NULL;
    rt_spawn(p, cwd, args);
    for (;;) {
        char *line = rt_read_err_line(p);
        if (!line)
            fail_msg("server did not report its address");
        const char *on = strstr(line, "serving protocol 1 on ");
        if (on) {
            snprintf(addr, cap, "%s", on + strlen("serving protocol 1 on "));
            free(line);
            return;
        }
        free(line);
    }
}

bool rt_connect(rt_conn_t *c, const char *addr) {
    memset(c, 0, sizeof *c);
    char host[64];
    const char *colon = strrchr(addr, ':');
    assert_non_null(colon);
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr), addr);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    assert_int_equal(getaddrinfo(host, colon + 1, &hints, &res), 0);
    c->fd = socket(res->ai_family, SOCK_STREAM, 0);
    bool ok = c->fd >= 0 && connect(c->fd, res->ai_addr, res->ai_addrlen) == 0;
    freeaddrinfo(res);
    /* Requests are often written in two pieces (line, then newline): without NODELAY,
     * Nagle plus the peer's delayed ACK would add 40 ms to every round trip. */
    int one = 1;
    if (ok)
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return ok;
}

void rt_send(rt_conn_t *c, const char *s, size_t n) {
    while (n) {
        ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        assert_true(k > 0);
        s += k;
        n -= (size_t)k;
    }
}

void rt_send_str(rt_conn_t *c, const char *s) { rt_send(c, s, strlen(s)); }

char *rt_recv_line(rt_conn_t *c) { return read_line_fd(c->fd, c->buf, sizeof c->buf, &c->len); }

void rt_shutdown_write(rt_conn_t *c) { shutdown(c->fd, SHUT_WR); }

void rt_disconnect(rt_conn_t *c) {
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

json_t *rt_json(const char *line) {
    assert_non_null(line);
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    if (!j || !json_is_object(j))
        fail_msg("reply is not a JSON object: %s", line);
    return j;
}

const char *rt_error_code(const json_t *j) {
    if (json_is_true(json_object_get(j, "ok")))
        return NULL;
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    assert_non_null(code);
    return code;
}

char *rt_tempdir(void) {
    char tmpl[] = "/tmp/dl_rt_XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

void rt_rmrf(const char *path) {
    const char *args[] = {"rm", "-rf", path, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execvp("rm", (char *const *)args);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
}
