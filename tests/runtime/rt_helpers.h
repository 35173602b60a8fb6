/*
 * rt_helpers.h: what the runtime tests share: spawning the built `deltalog` binary with
 * pipes, reading its lines with a deadline (a failsafe against hangs, never a sleep that
 * makes a race pass), and a small line-oriented TCP client.
 * The binary's path comes from CMake as DL_CLI_PATH ($<TARGET_FILE:deltalog_cli>).
 */
#ifndef DL_TESTS_RT_HELPERS_H
#define DL_TESTS_RT_HELPERS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define RT_DEADLINE_MS 20000

typedef struct rt_proc {
    pid_t pid;
    int in;  /* its stdin (write end), -1 when closed */
    int out; /* its stdout (read end) */
    int err; /* its stderr (read end) */
    char obuf[1 << 16];
    size_t olen;
    char ebuf[4096];
    size_t elen;
} rt_proc_t;

/* Spawns DL_CLI_PATH with args (NULL-terminated, without argv[0]) in directory cwd
 * (NULL: the current one). */
void rt_spawn(rt_proc_t *p, const char *cwd, const char *const *args);
/* Reads one line (without '\n') from its stdout into a new malloc'd string; NULL at EOF
 * or after the deadline. */
char *rt_read_line(rt_proc_t *p);
/* The same for stderr. */
char *rt_read_err_line(rt_proc_t *p);
/* Writes all bytes to its stdin. */
void rt_write(rt_proc_t *p, const char *s, size_t n);
void rt_close_in(rt_proc_t *p);
/* Waits for exit; returns the exit status (128+signal when killed). */
int rt_wait(rt_proc_t *p);
/* Reads everything left on stdout until EOF into a malloc'd string. */
char *rt_read_all(rt_proc_t *p, size_t *out_len);

/* Runs the binary to completion; stdout/stderr captured (malloc'd, may be NULL). */
int rt_run(const char *cwd, const char *const *args, const char *stdin_text, char **out,
           char **err);

/* Starts `deltalog serve --listen 127.0.0.1:0 --quiet`-like servers: extra args appended;
 * reads the bound address from the "serving ... on ADDR" log line into addr. */
void rt_start_server(rt_proc_t *p, const char *cwd, const char *const *extra, char *addr,
                     size_t cap);

/* A TCP client. */
typedef struct rt_conn {
    int fd;
    char buf[1 << 16];
    size_t len;
} rt_conn_t;
bool rt_connect(rt_conn_t *c, const char *addr);
void rt_send(rt_conn_t *c, const char *s, size_t n);
void rt_send_str(rt_conn_t *c, const char *s);
/* One reply line (malloc'd, no '\n'), NULL at EOF or deadline. */
char *rt_recv_line(rt_conn_t *c);
void rt_shutdown_write(rt_conn_t *c);
void rt_disconnect(rt_conn_t *c);

/* Parses a reply line; fails the test when it is not a JSON object. */
json_t *rt_json(const char *line);
/* The error code of an error reply, or NULL for success. Borrowed from j. */
const char *rt_error_code(const json_t *j);
/* A fresh empty temporary directory (malloc'd path). */
char *rt_tempdir(void);
void rt_rmrf(const char *path);

#endif
