/*
 * proto.c: protocol v1's request decoder and reply encoder (docs/protocol.md).
 *
 * A request is one line of UTF-8 JSON holding one object. Decoding checks, in order:
 * UTF-8 validity, nesting depth (before jansson sees the text, so a hostile line cannot
 * make the parser recurse deeply), JSON syntax, that it is an object, the "id", the
 * "op", and then every field against the op's table (known name, JSON type, required
 * fields present). Each failure has its own stable wire code. Replies are compact JSON
 * with "id" first, then "ok", then the body's fields, so the same request always gives
 * the same bytes whatever the transport (DESIGN-NOTES §5).
 * Does not: frame lines (server.c does, including the line-length limit), run requests
 * (exec.c), or know anything about the store.
 */
#include "runtime/runtime.h"

#include <string.h>

/* ---- field tables -------------------------------------------------------------------- */

#define T_OBJ  (1u << JSON_OBJECT)
#define T_ARR  (1u << JSON_ARRAY)
#define T_STR  (1u << JSON_STRING)
#define T_INT  (1u << JSON_INTEGER)
#define T_REAL (1u << JSON_REAL)
#define T_BOOL ((1u << JSON_TRUE) | (1u << JSON_FALSE))
#define T_NULL (1u << JSON_NULL)

typedef struct field {
    const char *name;
    unsigned types; /* mask of allowed jansson types */
    bool required;
} field_t;

typedef struct op_spec {
    const char *name;
    field_t fields[8]; /* terminated by name == NULL */
} op_spec_t;

/* The order follows dl_req_op_t. "op" and "id" are common to every op and checked apart. */
static const op_spec_t ops[DL_REQ__COUNT] = {
    [DL_REQ_HELLO] =
        {"hello", {{"token", T_STR, false}, {"client", T_STR, false}, {"protocol", T_INT, false}}},
    [DL_REQ_PING] = {"ping", {{0}}},
    [DL_REQ_STATS] = {"stats", {{0}}},
    [DL_REQ_TRANSACT] = {"transact", {{"tx", T_STR | T_ARR, true}, {"time", T_OBJ, false}}},
    [DL_REQ_ENTITY] = {"entity",
                       {{"e", T_INT | T_ARR | T_OBJ | T_STR, true}, {"as_of", T_INT, false}}},
    [DL_REQ_HISTORY] = {"history",
                        {{"e", T_INT | T_ARR | T_OBJ | T_STR, true}, {"a", T_STR | T_OBJ, false}}},
    [DL_REQ_SCHEMA] = {"schema", {{0}}},
    [DL_REQ_ADVANCE] = {"advance", {{"dim", T_STR | T_OBJ, true}, {"to", T_INT, true}}},
    [DL_REQ_QUERY] = {"query",
                      {{"q", T_STR, true},
                       {"args", T_ARR, false},
                       {"rules", T_STR, false},
                       {"as_of", T_INT, false}}},
    [DL_REQ_EXPLAIN] = {"explain",
                        {{"q", T_STR, true}, {"args", T_ARR, false}, {"rules", T_STR, false}}},
    [DL_REQ_SUBSCRIBE] = {"subscribe",
                          {{"q", T_STR, true},
                           {"args", T_ARR, false},
                           {"rules", T_STR, false},
                           {"policy", T_STR, false},
                           {"limits", T_OBJ, false},
                           {"dims", T_ARR, false}}},
    [DL_REQ_UNSUBSCRIBE] = {"unsubscribe", {{"sub", T_INT, true}}},
};

const char *dl__proto_op_name(dl_req_op_t op) {
    return (unsigned)op < DL_REQ__COUNT ? ops[op].name : "?";
}

const char *dl__proto_code_name(int code) {
    if (code == DL_PROTO_EUNKNOWN_OP)
        return "unknown_op";
    return dl_err_name(code);
}

static const char *type_word(const json_t *j) {
    switch (json_typeof(j)) {
        case JSON_OBJECT:
            return "an object";
        case JSON_ARRAY:
            return "an array";
        case JSON_STRING:
            return "a string";
        case JSON_INTEGER:
            return "an integer";
        case JSON_REAL:
            return "a real number";
        case JSON_TRUE:
        case JSON_FALSE:
            return "a boolean";
        case JSON_NULL:
            return "null";
    }
    return "?";
}

static void types_text(unsigned mask, char *out, size_t cap) {
    static const struct {
        unsigned bit;
        const char *word;
    } words[] = {{T_STR, "string"}, {T_INT, "integer"}, {T_ARR, "array"},
                 {T_OBJ, "object"}, {T_REAL, "real"},   {T_BOOL, "boolean"}};
    out[0] = 0;
    size_t used = 0;
    for (size_t i = 0; i < DL_ARRAY_LEN(words); i++) {
        if (!(mask & words[i].bit))
            continue;
        int w = snprintf(out + used, cap - used, "%s%s", used ? " or " : "", words[i].word);
        if (w < 0 || (size_t)w >= cap - used)
            return;
        used += (size_t)w;
    }
}

bool dl__proto_line_blank(const char *line, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return false;
    return true;
}

/* Maximum nesting of [ and { outside strings. Stops counting at limit + 1. */
static int nesting_depth(const char *s, size_t n, int limit) {
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '[' || c == '{') {
            if (++depth > max) {
                max = depth;
                if (max > limit)
                    return max;
            }
        } else if (c == ']' || c == '}')
            depth--;
    }
    return max;
}

void dl__proto_request_fini(dl_request_t *req) {
    if (!req)
        return;
    json_decref(req->msg);
    req->msg = NULL;
    req->id = NULL;
}

int dl__proto_decode(const char *line, size_t len, const dl_proto_limits_t *lim, dl_request_t *out,
                     dl_error_t *err) {
    memset(out, 0, sizeof *out);
    out->op = DL_REQ__COUNT;
    if (len && line[len - 1] == '\r')
        len--;
    if (lim->max_line && len > lim->max_line)
        return dl_error_set(err, DL_ELIMIT, "request line of %zu bytes is over the limit of %zu",
                            len, lim->max_line);
    if (!dl__utf8_valid(line, len))
        return dl_error_set(err, DL_EUTF8, "request line is not valid UTF-8");
    if (memchr(line, 0, len))
        return dl_error_set(err, DL_EPARSE, "request line contains a NUL byte");
    int depth = nesting_depth(line, len, lim->max_depth);
    if (depth > lim->max_depth)
        return dl_error_set(err, DL_ELIMIT, "request nests deeper than the limit of %d",
                            lim->max_depth);
    json_error_t jerr;
    json_t *msg = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!msg) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return dl_error_set(err, DL_ENOMEM, "out of memory parsing the request");
        return dl_error_set_at(err, DL_EPARSE, 1, jerr.column, jerr.position,
                               "malformed JSON at column %d: %s", jerr.column, jerr.text);
    }
    if (!json_is_object(msg)) {
        const char *what = type_word(msg);
        json_decref(msg);
        return dl_error_set(err, DL_EINVAL, "a request must be a JSON object, not %s", what);
    }
    out->msg = msg;
    json_t *id = json_object_get(msg, "id");
    if (id) {
        if (json_is_object(id) || json_is_array(id))
            return dl_error_set(err, DL_ETYPE,
                                "field \"id\" must be a string, number or null, "
                                "not %s",
                                type_word(id));
        out->id = id;
    }
    json_t *op = json_object_get(msg, "op");
    if (!op)
        return dl_error_set(err, DL_EINVAL, "missing field \"op\"");
    if (!json_is_string(op))
        return dl_error_set(err, DL_ETYPE, "field \"op\" must be a string, not %s", type_word(op));
    const char *name = json_string_value(op);
    size_t name_len = json_string_length(op);
    int k = -1;
    for (int i = 0; i < DL_REQ__COUNT; i++)
        if (strlen(ops[i].name) == name_len && memcmp(ops[i].name, name, name_len) == 0)
            k = i;
    if (k < 0)
        return dl_error_set(err, DL_PROTO_EUNKNOWN_OP, "unknown op \"%.64s\"", name);
    out->op = (dl_req_op_t)k;
    const op_spec_t *spec = &ops[k];
    const char *key;
    json_t *val;
    json_object_foreach(msg, key, val) {
        if (strcmp(key, "op") == 0 || strcmp(key, "id") == 0)
            continue;
        const field_t *f = NULL;
        for (const field_t *g = spec->fields; g->name; g++)
            if (strcmp(g->name, key) == 0)
                f = g;
        if (!f)
            return dl_error_set(err, DL_EINVAL, "unknown field \"%.64s\" for op %s", key,
                                spec->name);
        if (!(f->types & (1u << json_typeof(val)))) {
            char want[96];
            types_text(f->types, want, sizeof want);
            return dl_error_set(err, DL_ETYPE, "field \"%s\" of op %s must be %s, not %s", f->name,
                                spec->name, want, type_word(val));
        }
    }
    for (const field_t *g = spec->fields; g->name; g++)
        if (g->required && !json_object_get(msg, g->name))
            return dl_error_set(err, DL_EINVAL, "missing field \"%s\" for op %s", g->name,
                                spec->name);
    return DL_OK;
}

/* ---- replies ------------------------------------------------------------------------- */

static int dump_cb(const char *buffer, size_t size, void *data) {
    dl__buf_put((dl_buf_t *)data, buffer, size);
    return ((dl_buf_t *)data)->oom ? -1 : 0;
}

char *dl__proto_dump_line(const json_t *j, size_t *out_len) {
    dl_buf_t b;
    dl__buf_init(&b);
    if (json_dump_callback(j, dump_cb, &b, JSON_COMPACT | JSON_ENCODE_ANY) != 0) {
        dl__buf_fini(&b);
        return NULL;
    }
    dl__buf_putc(&b, '\n');
    size_t n = b.len;
    char *s = dl__buf_take(&b);
    if (s && out_len)
        *out_len = n;
    return s;
}

/* Builds {"id":..,"ok":ok, ...body}; takes body. */
static char *reply(const json_t *id, bool with_id, bool ok, json_t *body, size_t *out_len) {
    json_t *r = json_object();
    char *line = NULL;
    if (!r)
        goto done;
    if (with_id && json_object_set_new(r, "id", id ? json_deep_copy(id) : json_null()) != 0)
        goto done;
    if (json_object_set_new(r, "ok", json_boolean(ok)) != 0)
        goto done;
    if (body) {
        const char *key;
        json_t *val;
        json_object_foreach(body, key, val) {
            if (strcmp(key, "id") == 0 || strcmp(key, "ok") == 0)
                continue;
            if (json_object_set(r, key, val) != 0)
                goto done;
        }
    }
    line = dl__proto_dump_line(r, out_len);
done:
    json_decref(r);
    json_decref(body);
    return line;
}

char *dl__proto_reply_ok(const json_t *id, json_t *body, size_t *out_len) {
    return reply(id, id != NULL, true, body, out_len);
}

char *dl__proto_reply_error(const json_t *id, int code, const char *message, size_t *out_len) {
    json_t *e = json_object();
    json_t *body = json_object();
    if (!e || !body) {
        json_decref(e);
        json_decref(body);
        return NULL;
    }
    /* Messages come from dl_error_t and are UTF-8 in practice; a message that is not
     * (an error quoting invalid input) is replaced rather than dropping the reply. */
    json_t *m = json_string(message ? message : dl_strerror(code));
    if (!m)
        m = json_string(dl_strerror(code));
    json_object_set_new(e, "code", json_string(dl__proto_code_name(code)));
    json_object_set_new(e, "message", m);
    json_object_set_new(body, "error", e);
    return reply(id, true, false, body, out_len);
}
