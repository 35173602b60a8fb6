/*
 * server_client.c: starting, connecting to and talking with a `deltalog serve` process
 * for the benchmarks (server_client.h). The steps follow bench_w1.c's --via server:
 * the server is started on port 0 with --port-file (written by rename once it listens,
 * so it is complete when it exists); lines are JSON objects ending in "\n"
 * (docs/protocol.md "Framing"). Does not parse the lines.
 */
#include "bench/server_client.h"

#include <errno.h>
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

static const char *self_dir(char *out, size_t cap) {
    ssize_t n = readlink("/proc/self/exe", out, cap - 1);
    if (n <= 0)
        return NULL;
    out[n] = 0;
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = 0;
    return out;
}

static int spawn(bench_srv_t *s, const char *path, const char *const *args, char *address,
                 size_t cap, dl_error_t *err) {
    char exe[4096];
    if (!path) {
        if (!self_dir(exe, sizeof exe - 16))
            return dl_error_set(err, DL_EIO, "cannot find this program's directory");
        strcat(exe, "/deltalog");
        path = exe;
    }
    if (access(path, X_OK) != 0)
        return dl_error_set(err, DL_ENOTFOUND, "no server binary %s (use --server PATH)", path);
    snprintf(s->port_file, sizeof s->port_file, "/tmp/bench_srv.%ld.port", (long)getpid());
    unlink(s->port_file);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = path;
    argv[n++] = "serve";
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--quiet";
    argv[n++] = "--port-file";
    argv[n++] = s->port_file;
    for (size_t i = 0; args && args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    s->pid = fork();
    if (s->pid < 0) {
        s->pid = 0;
        return dl_error_set(err, DL_EIO, "fork failed");
    }
    if (s->pid == 0) {
        execv(path, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 3000; i++) {
        FILE *f = fopen(s->port_file, "r");
        if (f) {
            bool got = fgets(address, (int)cap, f) != NULL;
            fclose(f);
            unlink(s->port_file);
            if (got) {
                address[strcspn(address, "\r\n")] = 0;
                return 0;
            }
        }
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return dl_error_set(err, DL_EIO, "the server exited at start (status %d)", status);
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return dl_error_set(err, DL_EIO, "the server did not write its port file in 30 s");
}

static int connect_to(bench_srv_t *s, const char *address, dl_error_t *err) {
    char host[128];
    snprintf(host, sizeof host, "%s", address);
    char *colon = strrchr(host, ':');
    if (!colon)
        return dl_error_set(err, DL_EINVAL, "bad server address %s", address);
    *colon = 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return dl_error_set(err, DL_EINVAL, "bad server address %s", address);
    s->fd = socket(res->ai_family, SOCK_STREAM, 0);
    int bad = s->fd < 0 || connect(s->fd, res->ai_addr, res->ai_addrlen) != 0;
    freeaddrinfo(res);
    if (bad)
        return dl_error_set(err, DL_EIO, "cannot connect to %s", address);
    int one = 1;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

int bench_srv_start(bench_srv_t *s, const char *path, const char *const *args, dl_error_t *err) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    char address[128];
    int rc = spawn(s, path, args, address, sizeof address, err);
    if (rc == 0)
        rc = connect_to(s, address, err);
    return rc;
}

int bench_srv_send(bench_srv_t *s, const char *data, size_t len, dl_error_t *err) {
    while (len) {
        ssize_t k = send(s->fd, data, len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return dl_error_set(err, DL_EIO, "send to the server failed: %s", strerror(errno));
        data += k;
        len -= (size_t)k;
    }
    return 0;
}

bool bench_srv_has_line(const bench_srv_t *s) {
    return s->len > s->off && memchr(s->buf + s->off, '\n', s->len - s->off) != NULL;
}

long bench_srv_fill(bench_srv_t *s, int timeout_ms, dl_error_t *err) {
    if (s->off && s->off == s->len)
        s->off = s->len = 0;
    if (s->off > s->cap / 2) { /* keep the unread tail at the front */
        memmove(s->buf, s->buf + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
    }
    if (s->cap - s->len < 65536) {
        size_t cap = s->cap ? 2 * s->cap : 1 << 20;
        char *b = realloc(s->buf, cap);
        if (!b)
            return dl_error_set(err, DL_ENOMEM, "out of memory"), -1;
        s->buf = b;
        s->cap = cap;
    }
    struct pollfd pf = {s->fd, POLLIN, 0};
    int pr = poll(&pf, 1, timeout_ms);
    if (pr == 0)
        return 0;
    ssize_t k = pr > 0 ? recv(s->fd, s->buf + s->len, s->cap - s->len - 1, 0) : -1;
    if (k < 0 && errno == EINTR)
        return 0;
    if (k <= 0) {
        dl_error_set(err, DL_EIO, "the server hung up");
        return -1;
    }
    s->len += (size_t)k;
    return k;
}

char *bench_srv_line(bench_srv_t *s, size_t *len, int timeout_ms, dl_error_t *err) {
    for (;;) {
        char *start = s->buf + s->off;
        char *nl = s->len > s->off ? memchr(start, '\n', s->len - s->off) : NULL;
        if (nl) {
            *nl = 0;
            *len = (size_t)(nl - start);
            s->off += *len + 1;
            return start;
        }
        long k = bench_srv_fill(s, timeout_ms, err);
        if (k < 0)
            return NULL;
        if (k == 0) {
            dl_error_set(err, DL_EIO, "the server was silent for %d ms", timeout_ms);
            return NULL;
        }
    }
}

/* A number from /proc/PID/stat: field (1-based) after the command's closing paren. */
double bench_srv_cpu_seconds(const bench_srv_t *s) {
    if (s->pid <= 0)
        return 0;
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)s->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    if (!p)
        return 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return hz > 0 ? (double)(ut + st) / (double)hz : 0;
}

double bench_srv_peak_rss_mb(const bench_srv_t *s) {
    if (s->pid <= 0)
        return 0;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)s->pid);
    FILE *f = fopen(path, "r");
    double mb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            mb = atof(line + 6) / 1024.0;
    if (f)
        fclose(f);
    return mb;
}

int bench_srv_stop(bench_srv_t *s) {
    if (!s)
        return -1;
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    int status = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        if (waitpid(s->pid, &status, 0) != s->pid)
            status = -1;
        s->pid = 0;
    }
    free(s->buf);
    s->buf = NULL;
    s->off = s->len = s->cap = 0;
    return status;
}
