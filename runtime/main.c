/*
 * main.c: the `deltalog` command line (docs/protocol.md "Command line").
 *
 * Every command that reads or writes data builds a protocol v1 request and runs it
 * either in process against the data directory (the default: the executor of exec.c,
 * the very code the server runs) or, with --connect ADDR, against a running server over
 * TCP; so the CLI, TCP and stdio all give the same answers. Output is for people (aligned
 * tables) unless --format json|edn asks for the reply itself. Errors are one line on
 * stderr; exit codes are listed in usage() and in docs/protocol.md.
 * Does not: implement any operation itself (exec.c and the store do), or pretend: a
 * command whose module is not built exits with EXIT_UNAVAILABLE and says so.
 */
#include "runtime/http.h" /* dl__demo_main: the dashboard */
#include "runtime/runtime.h"

#include <deltalog/deltalog.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#if DL_HAVE_STORE
#include <deltalog/store.h>
#endif

enum {
    EXIT_OKAY = 0,        /* success */
    EXIT_FAILED = 1,      /* the request was answered with an error (rejected transaction,
                             bad query, not found, fsck found damage) */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_UNAVAILABLE = 3, /* not available yet: the module behind the command is not built */
    EXIT_STORE = 4,       /* the data directory or store cannot be opened (locked, corrupt) */
    EXIT_CONNECT = 5      /* cannot reach the server given by --connect, or it hung up */
};

#define DEFAULT_DATA_DIR ".deltalog/data"

typedef struct cli {
    const char *cmd;
    const char *data_dir;
    bool memory;
    dl_format_t fmt;
    const char *connect;
    const char *token;
    const char *file;
    bool json_input;
    bool history;
    bool as_tx;
    const char *rules;
    const char *policy; /* subscribe --policy */
    const char *dims;   /* subscribe --dims: comma-separated coordinates */
    /* serve */
    dl_server_options_t so;
    /* positional arguments */
    const char *pos[8];
    int n_pos;
    /* the in-process executor, opened lazily */
    dl_exec_t *exec;
    bool created;
    int sock;
    dl_buf_t rbuf;
} cli_t;

static const char *prog = "deltalog";

static void die_line(const char *code, const char *msg) {
    /* One line: only the first line of multi-line messages (EDN carets follow it). */
    const char *nl = strchr(msg, '\n');
    int n = nl ? (int)(nl - msg) : (int)strlen(msg);
    if (code)
        fprintf(stderr, "%s: %s: %.*s\n", prog, code, n, msg);
    else
        fprintf(stderr, "%s: %.*s\n", prog, n, msg);
}

/* ---- help ---------------------------------------------------------------------------------- */

static const char *const exit_help =
    "Exit codes:\n"
    "  0  success\n"
    "  1  the request failed (rejected transaction, bad query, not found, fsck damage)\n"
    "  2  usage error\n"
    "  3  not available yet (the module behind the command is not built)\n"
    "  4  the data directory or store cannot be opened (locked, corrupt, I/O)\n"
    "  5  cannot reach the server (--connect), or it hung up\n";

static const char *const common_help =
    "  --data DIR        data directory (default ./" DEFAULT_DATA_DIR ", created if missing)\n"
    "  --memory          use an in-memory store (nothing is written)\n"
    "  --connect ADDR    send the request to a running server (HOST:PORT) instead\n"
    "  --token TOKEN     token for a server that requires hello\n"
    "  --format FMT      table (default, for people), json or edn (for programs)\n"
    "  -h, --help        this help\n";

typedef struct command {
    const char *name;
    const char *args;
    const char *summary;
    int (*run)(cli_t *c);
} command_t;

static int cmd_status(cli_t *c);
static int cmd_version(cli_t *c);
static int cmd_serve(cli_t *c);
static int cmd_query(cli_t *c);
static int cmd_transact(cli_t *c);
static int cmd_subscribe(cli_t *c);
static int cmd_import(cli_t *c);
static int cmd_export(cli_t *c);
static int cmd_explain(cli_t *c);
static int cmd_stats(cli_t *c);
static int cmd_fsck(cli_t *c);
static int cmd_checkpoint(cli_t *c);
static int cmd_request(cli_t *c);

static const command_t commands[] = {
    {"status", "", "version and a one-line status of the data directory (the default)", cmd_status},
    {"serve", "[--listen ADDR | --stdio] [--token T] [limits]",
     "serve protocol v1 (JSON lines) over TCP or stdin/stdout", cmd_serve},
    {"query", "QUERY [ARG...]", "run a Datalog query (EDN) and print its rows", cmd_query},
    {"transact", "[TX | -f FILE | -] [--json]", "commit transaction data (EDN, or JSON form)",
     cmd_transact},
    {"subscribe", "QUERY", "subscribe to a query on a server and print diffs", cmd_subscribe},
    {"import", "FILE",
     "commit transactions from a file: .jsonl (JSON form, one per line) or "
     ".edn (one transaction vector per form)",
     cmd_import},
    {"export", "[--history | --tx]",
     "print every current datom (or the whole log) as JSON lines "
     "or EDN",
     cmd_export},
    {"explain", "QUERY", "show the dataflow plans of a query (live and one-shot)", cmd_explain},
    {"stats", "", "store, server and memory statistics", cmd_stats},
    {"fsck", "", "check a closed data directory: checksums, log rebuild, index structure",
     cmd_fsck},
    {"checkpoint", "", "write a checkpoint of a durable store now", cmd_checkpoint},
    {"request", "JSON", "send one raw protocol request and print the reply", cmd_request},
    {"version", "", "print the version", cmd_version},
    /* dashboard: runtime/demo.c parses its own options (main() hands it argv) */
    {"demo", "[--http ADDR] [--listen ADDR] [--rate N] [--memory]",
     "the live dashboard: sample data, a background writer, http://127.0.0.1:8080/", NULL},
};

static const command_t *find_command(const char *name) {
    for (size_t i = 0; i < DL_ARRAY_LEN(commands); i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void usage(FILE *out) {
    fprintf(out,
            "deltalog %s: live Datalog queries over an EAVT store\n\n"
            "Usage: %s [COMMAND] [OPTIONS]\n"
            "Without a command, `status` runs on the default data directory "
            "(./" DEFAULT_DATA_DIR ").\n\nCommands:\n",
            dl_version(), prog);
    for (size_t i = 0; i < DL_ARRAY_LEN(commands); i++)
        fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nCommon options:\n%s\n%s\nRun `%s COMMAND --help` for a command's options; "
            "the protocol is in docs/protocol.md.\n",
            common_help, exit_help, prog);
}

static void command_usage(const command_t *cmd, FILE *out) {
    fprintf(out, "Usage: %s %s %s\n%s.\n\nOptions:\n%s", prog, cmd->name, cmd->args, cmd->summary,
            common_help);
    if (cmd->run == cmd_serve)
        fprintf(out,
                "  --listen ADDR     TCP address HOST:PORT (default %s; port 0: any free port)\n"
                "  --stdio           serve one connection on stdin/stdout instead of TCP\n"
                "  --token TOKEN     require {\"op\":\"hello\",\"token\":TOKEN} first "
                "(mandatory when\n"
                "                    ADDR is not loopback)\n"
                "  --port-file FILE  write the bound HOST:PORT to FILE once listening\n"
                "  --max-line BYTES  longest request line (default %u)\n"
                "  --max-connections N  (default %d)\n"
                "  --max-outbuf BYTES   reply bytes queued per connection before reading "
                "pauses (default %u)\n"
                "  --sync MODE       every (default: fsync each transaction), batched, none\n"
                "  --quiet           no log lines on stderr\n",
                DL_SERVER_DEFAULT_LISTEN, DL_SERVER_DEFAULT_MAX_LINE, DL_SERVER_DEFAULT_MAX_CONN,
                DL_SERVER_DEFAULT_MAX_OUT);
    if (cmd->run == cmd_transact)
        fprintf(out, "  -f FILE           read the transaction from FILE ('-': stdin)\n"
                     "  --json            the transaction is in the JSON form "
                     "(docs/storage.md)\n");
    if (cmd->run == cmd_query || cmd->run == cmd_explain)
        fprintf(out, "  --rules RULES     the EDN vector of rules bound to %% in :in\n"
                     "  ARG...            one EDN form per :in input after $ and %%\n");
    if (cmd->run == cmd_subscribe)
        fprintf(out,
                "  --connect ADDR    the server (default %s)\n"
                "  --policy P        coalesce (default), block or drop: what the server\n"
                "                    does when this client reads slower than diffs come\n"
                "  --dims D,...      the time coordinates watched: tx, then declared time\n"
                "                    dimensions (e.g. --dims tx,:time/shipped); default tx\n"
                "  --rules RULES     the EDN vector of rules bound to %% in :in\n"
                "  ARG...            one EDN form per :in input after $ and %%\n"
                "Prints the current result, then each change as +1/-1 and the row,\n"
                "until the subscription ends or SIGINT.\n",
                DL_SERVER_DEFAULT_LISTEN);
    if (cmd->run == cmd_export)
        fprintf(out, "  --history         every transaction's changes, not only current "
                     "datoms\n"
                     "  --tx              the current state as transaction data that `import`\n"
                     "                    replays into an empty store (EDN; JSON form with\n"
                     "                    --format json): the schema, then every entity\n");
    fprintf(out, "\n%s", exit_help);
}

/* ---- argument parsing ------------------------------------------------------------------------ */

static int parse_args(cli_t *c, const command_t *cmd, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        char name[64];
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a) : strlen(a);
            if (n >= sizeof name)
                n = sizeof name - 1;
            memcpy(name, a, n);
            name[n] = 0;
            if (eq)
                val = eq + 1;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "-h") == 0) {
            snprintf(name, sizeof name, "%s", a);
        } else {
            if (c->n_pos >= (int)DL_ARRAY_LEN(c->pos)) {
                fprintf(stderr, "%s: %s: too many arguments\n", prog, cmd->name);
                return EXIT_USAGE;
            }
            c->pos[c->n_pos++] = a;
            continue;
        }
#define FLAG(s) (strcmp(name, s) == 0)
#define NEED_VAL()                                                                                 \
    do {                                                                                           \
        if (!val) {                                                                                \
            if (i + 1 >= argc) {                                                                   \
                fprintf(stderr, "%s: %s: option %s needs a value\n", prog, cmd->name, name);       \
                return EXIT_USAGE;                                                                 \
            }                                                                                      \
            val = argv[++i];                                                                       \
        }                                                                                          \
    } while (0)
        if (FLAG("--help") || FLAG("-h")) {
            command_usage(cmd, stdout);
            exit(EXIT_OKAY);
        } else if (FLAG("--data")) {
            NEED_VAL();
            c->data_dir = val;
        } else if (FLAG("--memory")) {
            c->memory = true;
        } else if (FLAG("--format")) {
            NEED_VAL();
            if (strcmp(val, "table") == 0)
                c->fmt = DL_FMT_TABLE;
            else if (strcmp(val, "json") == 0)
                c->fmt = DL_FMT_JSON;
            else if (strcmp(val, "edn") == 0)
                c->fmt = DL_FMT_EDN;
            else {
                fprintf(stderr, "%s: --format must be table, json or edn\n", prog);
                return EXIT_USAGE;
            }
        } else if (FLAG("--connect")) {
            NEED_VAL();
            c->connect = val;
        } else if (FLAG("--token")) {
            NEED_VAL();
            c->token = val;
            c->so.token = val;
        } else if (FLAG("-f") || FLAG("--file")) {
            NEED_VAL();
            c->file = val;
        } else if (FLAG("--json")) {
            c->json_input = true;
        } else if (FLAG("--history")) {
            c->history = true;
        } else if (FLAG("--tx")) {
            c->as_tx = true;
        } else if (FLAG("--rules")) {
            NEED_VAL();
            c->rules = val;
        } else if (cmd->run == cmd_subscribe && FLAG("--policy")) {
            NEED_VAL();
            c->policy = val;
        } else if (cmd->run == cmd_subscribe && FLAG("--dims")) {
            NEED_VAL();
            c->dims = val;
        } else if (cmd->run == cmd_serve && FLAG("--listen")) {
            NEED_VAL();
            c->so.listen = val;
        } else if (cmd->run == cmd_serve && FLAG("--stdio")) {
            c->so.use_stdio = true;
        } else if (cmd->run == cmd_serve && FLAG("--port-file")) {
            NEED_VAL();
            c->so.port_file = val;
        } else if (cmd->run == cmd_serve && FLAG("--quiet")) {
            c->so.quiet = true;
        } else if (cmd->run == cmd_serve &&
                   (FLAG("--max-line") || FLAG("--max-connections") || FLAG("--max-outbuf"))) {
            NEED_VAL();
            char *end;
            long long v = strtoll(val, &end, 10);
            if (*end || v <= 0 || v > (1ll << 40)) {
                fprintf(stderr, "%s: %s needs a positive number\n", prog, name);
                return EXIT_USAGE;
            }
            if (FLAG("--max-line"))
                c->so.max_line = (size_t)v;
            else if (FLAG("--max-outbuf"))
                c->so.max_outbuf = (size_t)v;
            else
                c->so.max_connections = (int)DL_MIN(v, 1 << 20);
        } else if (cmd->run == cmd_serve && FLAG("--sync")) {
            NEED_VAL();
#if DL_HAVE_STORE
            if (strcmp(val, "every") == 0)
                c->so.sync_mode = DL_STORE_SYNC_EVERY;
            else if (strcmp(val, "batched") == 0)
                c->so.sync_mode = DL_STORE_SYNC_BATCHED;
            else if (strcmp(val, "none") == 0)
                c->so.sync_mode = DL_STORE_SYNC_NONE;
            else {
                fprintf(stderr, "%s: --sync must be every, batched or none\n", prog);
                return EXIT_USAGE;
            }
#endif
        } else {
            fprintf(stderr, "%s: %s: unknown option %s (see %s %s --help)\n", prog, cmd->name, name,
                    prog, cmd->name);
            return EXIT_USAGE;
        }
#undef FLAG
#undef NEED_VAL
    }
    if (c->memory && c->data_dir) {
        fprintf(stderr, "%s: --data and --memory exclude each other\n", prog);
        return EXIT_USAGE;
    }
    if (!c->data_dir)
        c->data_dir = DEFAULT_DATA_DIR;
    return EXIT_OKAY;
}

/* ---- running requests --------------------------------------------------------------------------
 */

static int open_exec_q(cli_t *c, bool quiet_unsupported) {
    if (c->exec)
        return EXIT_OKAY;
    struct stat st;
    c->created = !c->memory && stat(c->data_dir, &st) != 0;
    dl_exec_options_t xo;
    memset(&xo, 0, sizeof xo);
    xo.data_dir = c->data_dir;
    xo.memory = c->memory;
    xo.create = true;
    dl_error_t err;
    dl_error_clear(&err);
    if (dl__exec_open(&xo, &c->exec, &err) != DL_OK) {
        if (err.code == DL_EUNSUPPORTED) {
            if (!quiet_unsupported)
                fprintf(stderr, "%s: not available yet: %s (try --memory)\n", prog, err.message);
            return EXIT_UNAVAILABLE;
        }
        die_line(dl_err_name(err.code), err.message);
        return EXIT_STORE;
    }
    return EXIT_OKAY;
}

static int connect_to(cli_t *c) {
    char host[256];
    const char *colon = strrchr(c->connect, ':');
    if (!colon || colon == c->connect || (size_t)(colon - c->connect) >= sizeof host) {
        fprintf(stderr, "%s: --connect needs HOST:PORT\n", prog);
        return EXIT_USAGE;
    }
    memcpy(host, c->connect, (size_t)(colon - c->connect));
    host[colon - c->connect] = 0;
    if (host[0] == '[') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(host, colon + 1, &hints, &res);
    if (g != 0) {
        fprintf(stderr, "%s: cannot resolve %s: %s\n", prog, c->connect, gai_strerror(g));
        return EXIT_CONNECT;
    }
    c->sock = -1;
    for (struct addrinfo *ai = res; ai && c->sock < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            c->sock = fd;
        else
            close(fd);
    }
    freeaddrinfo(res);
    if (c->sock < 0) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n", prog, c->connect, strerror(errno));
        return EXIT_CONNECT;
    }
    int one = 1; /* one request, then its reply: never wait for Nagle */
    setsockopt(c->sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    dl__buf_init(&c->rbuf);
    return EXIT_OKAY;
}

static int open_exec(cli_t *c) { return open_exec_q(c, false); }

/* Sends one line and reads one reply line over the connection; new JSON or NULL. */
static json_t *wire_roundtrip(cli_t *c, const char *line, size_t len) {
    for (size_t off = 0; off < len;) {
        ssize_t k = send(c->sock, line + off, len - off, MSG_NOSIGNAL);
        if (k <= 0)
            return NULL;
        off += (size_t)k;
    }
    for (;;) {
        char *nl = c->rbuf.len ? memchr(c->rbuf.data, '\n', c->rbuf.len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - c->rbuf.data);
            json_t *j = json_loadb(c->rbuf.data, n, 0, NULL);
            memmove(c->rbuf.data, nl + 1, c->rbuf.len - n - 1);
            c->rbuf.len -= n + 1;
            return j;
        }
        char buf[65536];
        ssize_t k = recv(c->sock, buf, sizeof buf, 0);
        if (k <= 0)
            return NULL;
        dl__buf_put(&c->rbuf, buf, (size_t)k);
        if (c->rbuf.oom)
            return NULL;
    }
}

/* Runs one request (taken) and returns the parsed reply (new), or NULL after printing why
 * with *out_exit set. */
static json_t *run_request(cli_t *c, json_t *msg, int *out_exit) {
    size_t len = 0;
    char *line = dl__proto_dump_line(msg, &len);
    json_decref(msg);
    if (!line) {
        die_line(NULL, "out of memory");
        *out_exit = EXIT_FAILED;
        return NULL;
    }
    json_t *reply = NULL;
    if (c->connect) {
        if (!c->sock || c->sock < 0) {
            int rc = connect_to(c);
            if (rc != EXIT_OKAY) {
                dl_free(line);
                *out_exit = rc;
                return NULL;
            }
            if (c->token) {
                json_t *h = json_pack("{s:s,s:s}", "op", "hello", "token", c->token);
                size_t hl = 0;
                char *hline = dl__proto_dump_line(h, &hl);
                json_decref(h);
                json_t *hr = hline ? wire_roundtrip(c, hline, hl) : NULL;
                dl_free(hline);
                if (!hr || !json_is_true(json_object_get(hr, "ok"))) {
                    json_decref(hr);
                    dl_free(line);
                    die_line("auth", "the server refused the token");
                    *out_exit = EXIT_FAILED;
                    return NULL;
                }
                json_decref(hr);
            }
        }
        reply = wire_roundtrip(c, line, len);
        if (!reply) {
            dl_free(line);
            fprintf(stderr, "%s: the server at %s hung up\n", prog, c->connect);
            *out_exit = EXIT_CONNECT;
            return NULL;
        }
    } else {
        int rc = open_exec(c);
        if (rc != EXIT_OKAY) {
            dl_free(line);
            *out_exit = rc;
            return NULL;
        }
        dl_request_t req;
        dl_error_t err;
        dl_error_clear(&err);
        dl_proto_limits_t lim = {SIZE_MAX, DL_SERVER_DEFAULT_DEPTH};
        char *rline;
        size_t rlen = 0;
        if (dl__proto_decode(line, len - 1, &lim, &req, &err) != DL_OK)
            rline = dl__proto_reply_error(req.id, err.code, err.message, &rlen);
        else
            rline = dl__exec_run(c->exec, &req, &rlen, NULL);
        dl__proto_request_fini(&req);
        reply = rline ? json_loadb(rline, rlen, 0, NULL) : NULL;
        dl_free(rline);
    }
    dl_free(line);
    if (!reply) {
        die_line(NULL, "out of memory");
        *out_exit = EXIT_FAILED;
        return NULL;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        json_t *e = json_object_get(reply, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *m = json_string_value(json_object_get(e, "message"));
        die_line(code ? code : "error", m ? m : "request failed");
        *out_exit = code && strcmp(code, "unsupported") == 0 ? EXIT_UNAVAILABLE : EXIT_FAILED;
        json_decref(reply);
        return NULL;
    }
    *out_exit = EXIT_OKAY;
    return reply;
}

/* Drops "id" and "ok" for printing. */
static void strip(json_t *reply) {
    json_object_del(reply, "id");
    json_object_del(reply, "ok");
}

static int not_available(const char *what) {
    fprintf(stderr, "%s: not available yet: %s\n", prog, what);
    return EXIT_UNAVAILABLE;
}

/* ---- commands
 * ------------------------------------------------------------------------------------ */

static int cmd_version(cli_t *c) {
    if (c->fmt != DL_FMT_TABLE) {
        json_t *v =
            json_pack("{s:s,s:i,s:b,s:b}", "version", dl_version(), "protocol", DL_PROTO_VERSION,
                      "store", dl__exec_has_store(), "datalog", dl__exec_has_datalog());
        dl__format_reply(stdout, c->fmt, v);
        json_decref(v);
        return EXIT_OKAY;
    }
    printf("deltalog %s (protocol %d; modules: base%s%s, runtime)\n", dl_version(),
           DL_PROTO_VERSION, dl__exec_has_store() ? ", store" : "",
           dl__exec_has_datalog() ? ", datalog" : "");
    return EXIT_OKAY;
}

static int cmd_status(cli_t *c) {
    if (c->connect) {
        int rc;
        json_t *r = run_request(c, json_pack("{s:s}", "op", "stats"), &rc);
        if (!r)
            return rc;
        json_t *st = json_object_get(r, "store");
        json_object_set_new(st, "server", json_string(c->connect));
        json_incref(st);
        json_decref(r);
        r = st;
        if (c->fmt != DL_FMT_TABLE)
            dl__format_reply(stdout, c->fmt, r);
        else {
            printf("deltalog %s\n", dl_version());
            printf("server %s  data %s  t %lld  datoms %lld  attributes %lld\n", c->connect,
                   json_string_value(json_object_get(r, "data")),
                   (long long)json_integer_value(json_object_get(r, "t")),
                   (long long)json_integer_value(json_object_get(r, "datoms")),
                   (long long)json_integer_value(json_object_get(r, "attributes")));
        }
        json_decref(r);
        return EXIT_OKAY;
    }
    bool existed = c->memory || stat(c->data_dir, &(struct stat){0}) == 0;
    int rc = open_exec_q(c, true);
    if (rc == EXIT_UNAVAILABLE && !c->memory) {
        /* The directory is there (open_exec created it) but this build's store cannot
         * open it durably yet: report exactly that, which is this command's job. */
        if (c->fmt != DL_FMT_TABLE) {
            json_t *o =
                json_pack("{s:s,s:s,s:b,s:s}", "version", dl_version(), "data", c->data_dir,
                          "created", !existed, "store", "not available yet: durable stores");
            dl__format_reply(stdout, c->fmt, o);
            json_decref(o);
        } else {
            printf("deltalog %s\n", dl_version());
            printf("data %s (%s)  store: not available yet (durable stores; --memory works)\n",
                   c->data_dir, existed ? "ok" : "created");
        }
        return EXIT_OKAY;
    }
    if (rc != EXIT_OKAY)
        return rc;
    json_t *st = dl__exec_status(c->exec);
    if (!st) {
        die_line(NULL, "out of memory");
        return EXIT_FAILED;
    }
    json_object_set_new(st, "created", json_boolean(c->created));
    if (c->fmt != DL_FMT_TABLE) {
        dl__format_reply(stdout, c->fmt, st);
    } else {
        printf("deltalog %s\n", dl_version());
        printf("data %s (%s)", c->memory ? ":memory" : c->data_dir,
               c->memory    ? "in memory"
               : c->created ? "created"
                            : "ok");
        if (dl__exec_has_store()) {
            printf("  t %lld  datoms %lld  attributes %lld  dimensions %lld\n",
                   (long long)json_integer_value(json_object_get(st, "t")),
                   (long long)json_integer_value(json_object_get(st, "datoms")),
                   (long long)json_integer_value(json_object_get(st, "attributes")),
                   (long long)json_integer_value(json_object_get(st, "dimensions")));
        } else {
            printf("  store: not available yet (store/ is not built)\n");
        }
    }
    json_decref(st);
    return EXIT_OKAY;
}

static int cmd_serve(cli_t *c) {
    if (c->connect) {
        fprintf(stderr, "%s: serve does not take --connect\n", prog);
        return EXIT_USAGE;
    }
    c->so.data_dir = c->data_dir;
    c->so.memory = c->memory;
    c->so.handle_signals = true;
    dl_server_t *s = NULL;
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl_server_new(&c->so, &s, &err);
    if (rc == DL_EUNSUPPORTED) {
        fprintf(stderr, "%s: not available yet: %s (try --memory)\n", prog, err.message);
        return EXIT_UNAVAILABLE;
    }
    if (rc != DL_OK) {
        die_line(dl_err_name(rc), err.message);
        return rc == DL_EINVAL || rc == DL_EAUTH ? EXIT_USAGE : EXIT_STORE;
    }
    rc = dl_server_run(s, &err);
    dl_server_free(s);
    if (rc != DL_OK) {
        die_line(dl_err_name(rc), err.message);
        return EXIT_FAILED;
    }
    return EXIT_OKAY;
}

/* Reads a whole file ('-': stdin) into a new NUL-terminated buffer. */
static char *slurp(const char *path, size_t *out_len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open %s: %s\n", prog, path, strerror(errno));
        return NULL;
    }
    dl_buf_t b;
    dl__buf_init(&b);
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0)
        dl__buf_put(&b, tmp, k);
    if (f != stdin)
        fclose(f);
    dl__buf_putc(&b, 0);
    *out_len = b.len ? b.len - 1 : 0;
    char *s = dl__buf_take(&b);
    if (!s)
        fprintf(stderr, "%s: out of memory reading %s\n", prog, path);
    return s;
}

/* Adds the query's inputs (positional arguments after the query, one EDN form each:
 * scalars, or vectors for collection/tuple bindings) to the request as "args". Returns 0,
 * or -1 after printing the parse error. */
static int add_query_args(const cli_t *c, json_t *msg) {
    if (c->n_pos <= 1)
        return 0;
    dl_arena_t ar;
    dl__arena_init(&ar, 4096);
    json_t *args = json_array();
    int rc = 0;
    for (int i = 1; i < c->n_pos && rc == 0; i++) {
        dl_edn_t *form = NULL;
        dl_error_t err;
        dl_error_clear(&err);
        if (dl__edn_read_one(c->pos[i], strlen(c->pos[i]), &ar, &form, &err) != DL_OK || !form) {
            die_line("parse", err.message);
            rc = -1;
        } else {
            json_array_append_new(args, dl__format_edn_to_json(form));
        }
    }
    if (rc == 0)
        json_object_set_new(msg, "args", args);
    else
        json_decref(args);
    dl__arena_fini(&ar);
    return rc;
}

/* Column names for people: the :find elements as written ("?n", "(sum ?a)"), or the
 * :keys names when rows are objects; numbered %1, %2... when the text is not understood.
 * Fills hdr (borrowed from owned, rows or literals) and owned (dl_free each); returns the
 * number of columns (<= 32). */
static size_t query_header(const char *q_text, const json_t *rows, const char **hdr, char **owned) {
    size_t n_cols = 0;
    memset(owned, 0, 32 * sizeof *owned);
    const json_t *first = json_array_get(rows, 0);
    if (json_is_object(first)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)first, k, v) {
            if (n_cols < 32)
                hdr[n_cols++] = k;
        }
        return n_cols;
    }
    /* The :find elements as the protocol's subscribe reply names them (format.c). */
    json_t *cols = dl__format_find_columns(q_text, first ? json_array_size(first) : 0);
    for (size_t i = 0; cols && i < json_array_size(cols) && n_cols < 32; i++) {
        owned[n_cols] = dl_strdup(json_string_value(json_array_get(cols, i)));
        hdr[n_cols] = owned[n_cols] ? owned[n_cols] : "?";
        n_cols++;
    }
    json_decref(cols);
    if (n_cols == 0) {
        owned[0] = dl_strdup("%1");
        hdr[0] = owned[0] ? owned[0] : "?";
        n_cols = 1;
    }
    return n_cols;
}

/* Rows as arrays in header order (objects from :keys are reordered); new reference. */
static json_t *table_rows(const json_t *rows, const char *const *hdr, size_t n_cols) {
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(rows); i++) {
        const json_t *row = json_array_get(rows, i);
        if (!json_is_object(row)) {
            json_array_append(out, (json_t *)row);
            continue;
        }
        json_t *arr = json_array();
        for (size_t k = 0; k < n_cols; k++)
            json_array_append(arr, json_object_get(row, hdr[k]));
        json_array_append_new(out, arr);
    }
    return out;
}

static int query_like(cli_t *c, const char *op) {
    if (c->n_pos < 1) {
        fprintf(stderr, "%s: %s needs a query (see %s %s --help)\n", prog, op, prog, op);
        return EXIT_USAGE;
    }
    if (!c->connect && !dl__exec_has_datalog())
        return not_available("queries need the Datalog front end (datalog/), which this build "
                             "does not include");
    json_t *msg = json_pack("{s:s,s:s}", "op", op, "q", c->pos[0]);
    if (add_query_args(c, msg) != 0) {
        json_decref(msg);
        return EXIT_USAGE;
    }
    if (c->rules)
        json_object_set_new(msg, "rules", json_string(c->rules));
    int rc;
    json_t *r = run_request(c, msg, &rc);
    if (!r) {
        return rc;
    }
    if (strcmp(op, "explain") == 0) {
        strip(r);
        if (c->fmt == DL_FMT_TABLE) {
            const char *once = json_string_value(json_object_get(r, "oneshot_plan"));
            if (once)
                fputs("live plan (subscriptions):\n", stdout);
            fputs(json_string_value(json_object_get(r, "plan")), stdout);
            if (once) {
                fputs("one-shot plan (query):\n", stdout);
                fputs(once, stdout);
            }
        } else
            dl__format_reply(stdout, c->fmt, r);
        json_decref(r);
        return EXIT_OKAY;
    }
    strip(r);
    if (c->fmt != DL_FMT_TABLE) {
        dl__format_reply(stdout, c->fmt, r);
    } else {
        char *owned[32];
        const char *hdr[32];
        size_t n_cols = query_header(c->pos[0], json_object_get(r, "rows"), hdr, owned);
        json_t *table = table_rows(json_object_get(r, "rows"), hdr, n_cols);
        dl__format_table(stdout, hdr, n_cols, table);
        json_decref(table);
        for (size_t i = 0; i < 32; i++)
            dl_free(owned[i]);
    }
    json_decref(r);
    return EXIT_OKAY;
}

static int cmd_query(cli_t *c) { return query_like(c, "query"); }
static int cmd_explain(cli_t *c) { return query_like(c, "explain"); }

static volatile sig_atomic_t sub_interrupted;
static void on_sub_signal(int sig) {
    (void)sig;
    sub_interrupted = 1;
}

/* `subscribe`: one subscription on a running server (docs/protocol.md "Subscriptions"):
 * prints each message as it comes: for people one line per changed row ("+1" or "-1",
 * then the row as EDN, after a header naming the columns), for programs the wire line.
 * Ends on the subscription's end message (exit 0 for a normal end or the server's
 * shutdown, 1 when the server ended it with an error such as lagged) or on SIGINT/SIGTERM
 * (exit 0). */
static int cmd_subscribe(cli_t *c) {
    if (c->n_pos < 1) {
        fprintf(stderr, "%s: subscribe needs a query (see %s subscribe --help)\n", prog, prog);
        return EXIT_USAGE;
    }
    if (c->memory) {
        fprintf(stderr,
                "%s: subscribe talks to a running server (--connect HOST:PORT), not to "
                "--memory\n",
                prog);
        return EXIT_USAGE;
    }
    if (!c->connect)
        c->connect = DL_SERVER_DEFAULT_LISTEN;
    json_t *msg = json_pack("{s:s,s:s}", "op", "subscribe", "q", c->pos[0]);
    if (add_query_args(c, msg) != 0) {
        json_decref(msg);
        return EXIT_USAGE;
    }
    if (c->rules)
        json_object_set_new(msg, "rules", json_string(c->rules));
    if (c->policy)
        json_object_set_new(msg, "policy", json_string(c->policy));
    if (c->dims) { /* the server checks the names: a bad one is its error, with its code */
        json_t *dims = json_array();
        for (const char *p = c->dims; *p;) {
            size_t n = strcspn(p, ",");
            json_array_append_new(dims, json_stringn(p, n));
            p += n + (p[n] == ',');
        }
        json_object_set_new(msg, "dims", dims);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sub_signal; /* no SA_RESTART: a blocked recv returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int rc;
    json_t *r = run_request(c, msg, &rc);
    if (!r)
        return sub_interrupted ? EXIT_OKAY : rc;
    json_int_t sub = json_integer_value(json_object_get(r, "sub"));
    json_t *cols = json_object_get(r, "columns");
    if (c->fmt == DL_FMT_TABLE) {
        printf("subscription %lld:", (long long)sub);
        for (size_t i = 0; i < json_array_size(cols); i++)
            printf(" %s", json_string_value(json_array_get(cols, i)));
        printf("\n");
    } else {
        strip(r);
        dl__format_reply(stdout, c->fmt, r);
    }
    fflush(stdout);
    json_decref(r);
    int exit_code = EXIT_OKAY;
    dl_buf_t b;
    dl__buf_init(&b);
    while (!sub_interrupted) {
        json_t *m = wire_roundtrip(c, "", 0); /* reads the next line */
        if (!m) {
            if (!sub_interrupted) {
                fprintf(stderr, "%s: the server at %s hung up\n", prog, c->connect);
                exit_code = EXIT_CONNECT;
            }
            break;
        }
        if (json_integer_value(json_object_get(m, "sub")) != sub) {
            json_decref(m); /* not ours (cannot happen on this connection) */
            continue;
        }
        bool end = json_is_true(json_object_get(m, "end"));
        if (c->fmt != DL_FMT_TABLE) {
            dl__format_reply(stdout, c->fmt, m);
        } else if (json_object_get(m, "frontier")) {
            b.len = 0;
            dl__format_edn(json_object_get(m, "frontier"), &b);
            printf("-- final through %.*s\n", (int)b.len, b.data ? b.data : "");
        } else if (!end) {
            json_t *diff = json_object_get(m, "diff");
            json_t *time = json_object_get(m, "time");
            b.len = 0;
            if (json_array_size(time) > 1) /* several coordinates: [tx day ...] */
                dl__format_edn(time, &b);
            else
                dl__buf_printf(&b, "%lld", (long long)json_integer_value(json_object_get(m, "t")));
            printf("-- t %.*s%s\n", (int)b.len, b.data,
                   json_is_true(json_object_get(m, "snapshot")) ? " (snapshot)" : "");
            for (size_t i = 0; i < json_array_size(diff); i++) {
                json_t *pair = json_array_get(diff, i);
                json_t *row = json_array_get(pair, 0);
                b.len = 0;
                for (size_t k = 0; k < json_array_size(row); k++) {
                    dl__buf_putc(&b, k ? ' ' : '\t');
                    dl__format_edn(json_array_get(row, k), &b);
                }
                printf("%+lld%.*s\n", (long long)json_integer_value(json_array_get(pair, 1)),
                       (int)b.len, b.data ? b.data : "");
            }
        }
        fflush(stdout);
        if (end) {
            json_t *e = json_object_get(m, "error");
            const char *code = json_string_value(json_object_get(e, "code"));
            const char *text = json_string_value(json_object_get(e, "message"));
            if (c->fmt == DL_FMT_TABLE)
                printf("-- end%s%s\n", text ? ": " : "", text ? text : "");
            if (code && strcmp(code, "closed") != 0) {
                die_line(code, text ? text : "subscription ended");
                exit_code = EXIT_FAILED;
            }
            json_decref(m);
            break;
        }
        json_decref(m);
    }
    dl__buf_fini(&b);
    return exit_code;
}

/* Builds the "tx" field: EDN text, or the parsed JSON form with --json. */
static json_t *tx_field(cli_t *c, const char *text, size_t len, int *out_exit) {
    if (!c->json_input)
        return json_stringn(text, len);
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    if (!j || !json_is_array(j)) {
        fprintf(stderr, "%s: --json transaction data must be a JSON array (%s)\n", prog,
                j ? "not an array" : je.text);
        json_decref(j);
        *out_exit = EXIT_FAILED;
        return NULL;
    }
    return j;
}

static void print_tx(cli_t *c, json_t *r) {
    strip(r);
    if (c->fmt != DL_FMT_TABLE) {
        dl__format_reply(stdout, c->fmt, r);
        return;
    }
    printf("committed t %lld (%lld datoms)\n",
           (long long)json_integer_value(json_object_get(r, "t")),
           (long long)json_integer_value(json_object_get(r, "datoms")));
    json_t *tids = json_object_get(r, "tempids");
    if (json_object_size(tids)) {
        json_t *rows = json_array();
        const char *k;
        json_t *v;
        json_object_foreach(tids, k, v) json_array_append_new(rows, json_pack("[sO]", k, v));
        static const char *const hdr[] = {"tempid", "entity"};
        dl__format_table(stdout, hdr, 2, rows);
        json_decref(rows);
    }
}

static int cmd_transact(cli_t *c) {
    char *owned = NULL;
    const char *text;
    size_t len;
    if (c->file || (c->n_pos == 1 && strcmp(c->pos[0], "-") == 0)) {
        owned = slurp(c->file ? c->file : "-", &len);
        if (!owned)
            return EXIT_FAILED;
        text = owned;
    } else if (c->n_pos == 1) {
        text = c->pos[0];
        len = strlen(text);
    } else {
        fprintf(stderr, "%s: transact needs transaction data, -f FILE or - (see --help)\n", prog);
        return EXIT_USAGE;
    }
    int rc = EXIT_OKAY;
    json_t *tx = tx_field(c, text, len, &rc);
    dl_free(owned);
    if (!tx)
        return rc;
    json_t *msg = json_pack("{s:s,s:o}", "op", "transact", "tx", tx);
    json_t *r = run_request(c, msg, &rc);
    if (!r)
        return rc;
    print_tx(c, r);
    json_decref(r);
    return EXIT_OKAY;
}

static int cmd_import(cli_t *c) {
    const char *path = c->file ? c->file : c->n_pos == 1 ? c->pos[0] : NULL;
    if (!path) {
        fprintf(stderr, "%s: import needs a FILE (.jsonl or .edn)\n", prog);
        return EXIT_USAGE;
    }
    size_t plen = strlen(path);
    bool edn = plen > 4 && strcmp(path + plen - 4, ".edn") == 0;
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        return EXIT_FAILED;
    long n_tx = 0, t_last = 0;
    int rc = EXIT_OKAY;
    if (edn) {
        /* One transaction vector per top-level form; each is sent as its own EDN text. */
        dl_arena_t ar;
        dl__arena_init(&ar, 1 << 16);
        dl_edn_reader_t rd;
        dl__edn_reader_init(&rd, text, len, &ar);
        for (;;) {
            dl_edn_t *form = NULL;
            dl_error_t err;
            dl_error_clear(&err);
            size_t start = rd.pos;
            if (dl__edn_read(&rd, &form, &err) != DL_OK) {
                die_line("parse", err.message);
                rc = EXIT_FAILED;
                break;
            }
            if (!form)
                break;
            json_t *msg =
                json_pack("{s:s,s:s%}", "op", "transact", "tx", text + start, rd.pos - start);
            json_t *r = run_request(c, msg, &rc);
            if (!r) {
                fprintf(stderr, "%s: import stopped at transaction %ld (line %d)\n", prog, n_tx + 1,
                        form->line);
                break;
            }
            n_tx++;
            t_last = (long)json_integer_value(json_object_get(r, "t"));
            json_decref(r);
        }
        dl__arena_fini(&ar);
    } else {
        int line_no = 0;
        for (char *p = text, *end = text + len; p < end && rc == EXIT_OKAY;) {
            char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
            line_no++;
            if (!dl__proto_line_blank(p, n)) {
                json_error_t je;
                json_t *tx = json_loadb(p, n, 0, &je);
                if (!tx || !json_is_array(tx)) {
                    fprintf(stderr,
                            "%s: %s:%d: each line must be a JSON array of "
                            "transaction data\n",
                            prog, path, line_no);
                    json_decref(tx);
                    rc = EXIT_FAILED;
                    break;
                }
                json_t *r = run_request(c, json_pack("{s:s,s:o}", "op", "transact", "tx", tx), &rc);
                if (!r) {
                    fprintf(stderr, "%s: import stopped at %s:%d\n", prog, path, line_no);
                    break;
                }
                n_tx++;
                t_last = (long)json_integer_value(json_object_get(r, "t"));
                json_decref(r);
            }
            p += n + 1;
        }
    }
    dl_free(text);
    if (c->fmt == DL_FMT_TABLE)
        printf("imported %ld transactions%s", n_tx, n_tx ? "" : "\n");
    if (c->fmt == DL_FMT_TABLE && n_tx)
        printf(" (last t %ld)\n", t_last);
    else if (c->fmt != DL_FMT_TABLE) {
        json_t *o =
            json_pack("{s:i,s:i}", "transactions", (json_int_t)n_tx, "t", (json_int_t)t_last);
        dl__format_reply(stdout, c->fmt, o);
        json_decref(o);
    }
    return rc;
}

#if DL_HAVE_STORE
static void print_datom(cli_t *c, const dl_db_t *db, const dl_datom_t *d, bool with_added) {
    dl_attr_info_t info;
    const char *a = NULL;
    char buf[32];
    if (dl_db_attr_by_id(db, d->a, &info, NULL) == DL_OK)
        a = info.ident;
    else {
        snprintf(buf, sizeof buf, "%lld", (long long)d->a);
        a = buf;
    }
    json_t *row = json_array();
    json_array_append_new(row, json_integer(d->e));
    json_array_append_new(row, json_pack("{s:s}", "kw", a));
    json_array_append_new(row, dl__json_from_value(d->v));
    json_array_append_new(row, json_integer(d->tx));
    if (with_added)
        json_array_append_new(row, json_boolean(d->added));
    dl__format_reply(stdout, c->fmt == DL_FMT_EDN ? DL_FMT_EDN : DL_FMT_JSON, row);
    json_decref(row);
}

typedef struct export_ctx {
    cli_t *c;
    const dl_db_t *db;
} export_ctx_t;

static int export_commit(void *ctx, const dl_commit_t *cm) {
    export_ctx_t *x = ctx;
    for (size_t i = 0; i < cm->n_changes; i++) {
        dl_datom_t d = {cm->changes[i].e, cm->changes[i].a, cm->changes[i].v, (int64_t)cm->tx,
                        cm->changes[i].diff > 0};
        print_datom(x->c, x->db, &d, true);
    }
    return 0;
}
#endif

/* Store-level commands need the store in process. */
static int store_cmd_prelude(cli_t *c, const char *name) {
    if (c->connect) {
        fprintf(stderr, "%s: %s works on a data directory, not over --connect\n", prog, name);
        return EXIT_USAGE;
    }
    if (!dl__exec_has_store())
        return not_available("the store module (store/) is not part of this build");
    return open_exec(c);
}

#if DL_HAVE_STORE
/* True for the built-in schema every store starts with (idents in the db namespaces). */
static bool builtin_ident(const char *ident) {
    return ident && (strncmp(ident, "db/", 3) == 0 || strncmp(ident, "db.", 3) == 0);
}

/* The ident of entity e in db, or NULL. */
static const char *entity_ident(const dl_db_t *db, int64_t e) {
    dl_attr_info_t info;
    if (dl_db_attr_by_id(db, e, &info, NULL) == DL_OK)
        return info.ident;
    /* Not an attribute: look for a :db/ident datom. */
    dl_datom_t *ds = NULL;
    size_t n = 0;
    const char *ident = NULL;
    if (dl_db_entity(db, e, &ds, &n, NULL) == DL_OK) {
        for (size_t i = 0; i < n; i++) {
            dl_attr_info_t a;
            if (dl_db_attr_by_id(db, ds[i].a, &a, NULL) == DL_OK &&
                strcmp(a.ident, "db/ident") == 0 && ds[i].v.type == DL_T_KEYWORD)
                ident = dl_value_str(ds[i].v, NULL);
        }
    }
    dl_free(ds);
    return ident;
}

/* export --tx: the current state as (at most) two transactions that `import` replays into
 * an empty store: the entities with an ident (schema, enum values), then every other, each entity
 * as a map form whose tempid is "e<old id>"; refs become that tempid, or the target's ident. Entity
 * ids are renumbered by the new store; history and time coordinates are not carried. */
static int export_tx(cli_t *c, const dl_db_t *db) {
    json_t *schema = json_array(), *data = json_array();
    json_t *cur = NULL;
    int64_t cur_e = 0;
    bool cur_schema = false, cur_builtin = false;
    long skipped = 0;
    dl_iter_t *it = NULL;
    dl_error_t err;
    dl_error_clear(&err);
    if (dl_db_datoms(db, DL_INDEX_EAVT, NULL, 0, NULL, &it, &err) != DL_OK) {
        die_line(dl_err_name(err.code), err.message);
        return EXIT_FAILED;
    }
    dl_datom_t d;
    bool more = dl_iter_next(it, &d);
    while (more || cur) {
        if (cur && (!more || d.e != cur_e)) { /* flush the finished entity */
            if (!cur_builtin && json_object_size(cur) > 1)
                json_array_append(cur_schema ? schema : data, cur);
            json_decref(cur);
            cur = NULL;
        }
        if (!more)
            break;
        if (!cur) {
            char tid[32];
            snprintf(tid, sizeof tid, "e%lld", (long long)d.e);
            cur = json_pack("{s:s}", "db/id", tid);
            cur_e = d.e;
            /* Entities with an ident (attributes, dimensions, enum values) go first, so
             * the data can refer to them by ident. */
            const char *ident = entity_ident(db, d.e);
            cur_builtin = builtin_ident(ident);
            cur_schema = ident != NULL;
        }
        dl_attr_info_t a;
        if (dl_db_attr_by_id(db, d.a, &a, NULL) != DL_OK) {
            skipped++;
        } else {
            json_t *v = NULL;
            if (a.type == DL_T_REF && (d.v.type == DL_T_REF || d.v.type == DL_T_INT)) {
                const char *ident = entity_ident(db, d.v.as.i);
                dl_datom_t *ts = NULL;
                size_t n_ts = 0;
                if (ident)
                    v = json_pack("{s:s}", "kw", ident);
                else if (dl_db_entity(db, d.v.as.i, &ts, &n_ts, NULL) == DL_OK && n_ts) {
                    char tid[32];
                    snprintf(tid, sizeof tid, "e%lld", (long long)d.v.as.i);
                    v = json_string(tid);
                }
                dl_free(ts);
            } else {
                v = dl__json_from_value(d.v);
            }
            if (!v) {
                skipped++; /* a ref to an entity without datoms: nothing to point to */
            } else if (a.many) {
                json_t *arr = json_object_get(cur, a.ident);
                if (!arr) {
                    arr = json_array();
                    json_object_set_new(cur, a.ident, arr);
                }
                json_array_append_new(arr, v);
            } else {
                json_object_set_new(cur, a.ident, v);
            }
        }
        more = dl_iter_next(it, &d);
    }
    dl_iter_free(it);
    json_t *txs[2] = {schema, data};
    for (int i = 0; i < 2; i++) {
        if (!json_array_size(txs[i]))
            continue;
        if (c->fmt == DL_FMT_JSON) {
            dl__format_reply(stdout, DL_FMT_JSON, txs[i]);
        } else {
            dl_buf_t b;
            dl__buf_init(&b);
            dl__format_edn(txs[i], &b);
            dl__buf_putc(&b, '\n');
            if (!b.oom)
                fwrite(b.data, 1, b.len, stdout);
            dl__buf_fini(&b);
        }
    }
    json_decref(schema);
    json_decref(data);
    if (skipped)
        fprintf(stderr, "%s: export: %ld datoms skipped (refs to entities without datoms)\n", prog,
                skipped);
    return EXIT_OKAY;
}
#endif

static int cmd_export(cli_t *c) {
    int rc = store_cmd_prelude(c, "export");
    if (rc != EXIT_OKAY)
        return rc;
#if DL_HAVE_STORE
    dl_store_t *st = dl__exec_store(c->exec);
    dl_db_t *db = dl_store_db(st);
    if (!db) {
        die_line(NULL, "out of memory");
        return EXIT_FAILED;
    }
    if (c->as_tx) {
        int xrc = export_tx(c, db);
        dl_db_unref(db);
        return xrc;
    }
    if (c->history) {
        export_ctx_t x = {c, db};
        dl_db_tx_range(db, 1, 0, export_commit, &x);
    } else {
        dl_iter_t *it = NULL;
        dl_error_t err;
        dl_error_clear(&err);
        if (dl_db_datoms(db, DL_INDEX_EAVT, NULL, 0, NULL, &it, &err) != DL_OK) {
            die_line(dl_err_name(err.code), err.message);
            dl_db_unref(db);
            return EXIT_FAILED;
        }
        dl_datom_t d;
        while (dl_iter_next(it, &d))
            print_datom(c, db, &d, false);
        dl_iter_free(it);
    }
    dl_db_unref(db);
#endif
    return EXIT_OKAY;
}

static int cmd_fsck(cli_t *c) {
    if (c->connect || c->memory) {
        fprintf(stderr, "%s: fsck checks a data directory (--data DIR), not %s\n", prog,
                c->connect ? "a server" : "a memory store");
        return EXIT_USAGE;
    }
    if (!dl__exec_has_store())
        return not_available("the store module (store/) is not part of this build");
#if DL_HAVE_STORE
    /* The store's own fsck, on the closed directory: every checksum, a log-only rebuild
     * compared with the checkpoint, recovery, and the structure of every index. */
    struct stat st;
    if (stat(c->data_dir, &st) != 0) {
        fprintf(stderr, "%s: fsck: %s does not exist\n", prog, c->data_dir);
        return EXIT_STORE;
    }
    dl_store_fsck_t f;
    memset(&f, 0, sizeof f);
    dl_error_t err;
    dl_error_clear(&err);
    int rc = dl_store_fsck(c->data_dir, &f, &err);
    if (rc != DL_OK && rc != DL_ECORRUPT) {
        die_line(dl_err_name(rc), err.message);
        return rc == DL_EUNSUPPORTED ? EXIT_UNAVAILABLE : EXIT_STORE;
    }
    if (c->fmt != DL_FMT_TABLE) {
        json_t *o = json_pack(
            "{s:b,s:i,s:s,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "ok", rc == DL_OK, "problems",
            f.problems, "first_problem", f.first_problem, "compared_with_checkpoint", f.compared,
            "log_first_tx", (json_int_t)f.log_first_tx, "log_last_tx", (json_int_t)f.log_last_tx,
            "checkpoint_tx", (json_int_t)f.checkpoint_tx, "t", (json_int_t)f.last_tx, "datoms",
            (json_int_t)f.datoms, "history_datoms", (json_int_t)f.history_datoms,
            "compression_ratio", f.compression_ratio);
        dl__format_reply(stdout, c->fmt, o);
        json_decref(o);
    } else if (rc == DL_OK) {
        printf("ok: t %llu, %lld datoms (%lld in history), log %llu..%llu, checkpoint %llu%s\n",
               (unsigned long long)f.last_tx, (long long)f.datoms, (long long)f.history_datoms,
               (unsigned long long)f.log_first_tx, (unsigned long long)f.log_last_tx,
               (unsigned long long)f.checkpoint_tx,
               f.compared ? ", log rebuild matches the checkpoint" : "");
    }
    if (rc != DL_OK)
        fprintf(stderr, "%s: fsck: %d problem(s); first: %s\n", prog, f.problems,
                f.first_problem[0] ? f.first_problem : err.message);
    return rc == DL_OK ? EXIT_OKAY : EXIT_FAILED;
#else
    return EXIT_OKAY;
#endif
}

static int cmd_checkpoint(cli_t *c) {
    int rc = store_cmd_prelude(c, "checkpoint");
    if (rc != EXIT_OKAY)
        return rc;
#if DL_HAVE_STORE
    dl_error_t err;
    dl_error_clear(&err);
    if (dl_store_checkpoint(dl__exec_store(c->exec), &err) != DL_OK) {
        die_line(dl_err_name(err.code), err.message);
        return err.code == DL_EUNSUPPORTED ? EXIT_UNAVAILABLE : EXIT_FAILED;
    }
    if (c->fmt == DL_FMT_TABLE)
        printf("checkpoint written\n");
#endif
    return EXIT_OKAY;
}

static int cmd_stats(cli_t *c) {
    int rc;
    json_t *r = run_request(c, json_pack("{s:s}", "op", "stats"), &rc);
    if (!r)
        return rc;
    strip(r);
    dl__format_reply(stdout, c->fmt, r);
    json_decref(r);
    return EXIT_OKAY;
}

static int cmd_request(cli_t *c) {
    if (c->n_pos != 1) {
        fprintf(stderr, "%s: request needs one JSON request object\n", prog);
        return EXIT_USAGE;
    }
    json_error_t je;
    json_t *msg = json_loads(c->pos[0], 0, &je);
    if (!msg) {
        fprintf(stderr, "%s: request: malformed JSON: %s\n", prog, je.text);
        return EXIT_USAGE;
    }
    int rc;
    json_t *r = run_request(c, msg, &rc);
    if (!r)
        return rc;
    dl__format_reply(stdout, c->fmt == DL_FMT_TABLE ? DL_FMT_JSON : c->fmt, r);
    json_decref(r);
    return EXIT_OKAY;
}

int main(int argc, char **argv) {
    cli_t c;
    memset(&c, 0, sizeof c);
    dl_server_options_init(&c.so);
    const command_t *cmd = NULL;
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') {
        cmd = find_command(argv[1]);
        if (!cmd) {
            fprintf(stderr, "%s: unknown command %s (see %s --help)\n", prog, argv[1], prog);
            return EXIT_USAGE;
        }
        first = 2;
        if (!cmd->run) /* demo (runtime/demo.c) */
            return dl__demo_main(argc - 1, argv + 1);
    } else if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return EXIT_OKAY;
    } else if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        cmd = find_command("version");
        first = 2;
    } else {
        cmd = find_command("status");
    }
    c.cmd = cmd->name;
    int rc = parse_args(&c, cmd, argc - first, argv + first);
    if (rc == EXIT_OKAY)
        rc = cmd->run(&c);
    dl__exec_close(c.exec);
    if (c.sock > 0)
        close(c.sock);
    dl__buf_fini(&c.rbuf);
    fflush(stdout);
    return rc;
}
