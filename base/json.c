/*
 * json.c: the JSON form of values (docs/values.md), through jansson.
 * nil, booleans, int64 and strings are plain JSON; doubles are JSON reals (a number
 * with a '.' or exponent) except NaN and the infinities; the other types are one-key
 * objects: {"kw":"ns/name"}, {"ref":42}, {"inst":"RFC 3339"}, {"uuid":"8-4-4-4-12"},
 * {"double":"NaN"|"Infinity"|"-Infinity"}. The mapping is a bijection, so every value
 * round-trips exactly (jansson keeps JSON integers as int64).
 */
#include "base/base.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static json_t *tagged(const char *key, json_t *val) {
    if (!val)
        return NULL;
    json_t *o = json_object();
    if (!o || json_object_set_new(o, key, val) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *dl__json_from_value(dl_value_t v) {
    switch ((dl_type_t)v.type) {
        case DL_T_NIL:
            return json_null();
        case DL_T_BOOL:
            return json_boolean(v.as.i);
        case DL_T_INT:
            return json_integer(v.as.i);
        case DL_T_DOUBLE:
            if (isnan(v.as.d))
                return tagged("double", json_string("NaN"));
            if (isinf(v.as.d))
                return tagged("double", json_string(v.as.d > 0 ? "Infinity" : "-Infinity"));
            return json_real(v.as.d);
        case DL_T_STRING:
            return json_stringn(v.as.s->bytes, v.as.s->len);
        case DL_T_KEYWORD:
            return tagged("kw", json_stringn(v.as.s->bytes, v.as.s->len));
        case DL_T_REF:
            return tagged("ref", json_integer(v.as.i));
        case DL_T_INSTANT: {
            dl_buf_t b;
            dl__buf_init(&b);
            dl__instant_format(v.as.i, &b);
            json_t *s = b.oom ? NULL : json_stringn(b.data, b.len);
            dl__buf_fini(&b);
            return tagged("inst", s);
        }
        case DL_T_UUID: {
            dl_buf_t b;
            dl__buf_init(&b);
            dl__uuid_format((const uint8_t *)v.as.s->bytes, &b);
            json_t *s = b.oom ? NULL : json_stringn(b.data, b.len);
            dl__buf_fini(&b);
            return tagged("uuid", s);
        }
        default:
            return NULL;
    }
}

static int bad(dl_error_t *err, const char *what) {
    return dl_error_set(err, DL_ETYPE, "not a deltalog value in JSON form: %s", what);
}

int dl__json_to_value(const json_t *j, dl_value_t *out, dl_error_t *err) {
    switch (json_typeof(j)) {
        case JSON_NULL:
            *out = dl_value_nil();
            return DL_OK;
        case JSON_TRUE:
        case JSON_FALSE:
            *out = dl_value_bool(json_is_true(j));
            return DL_OK;
        case JSON_INTEGER:
            *out = dl_value_int(json_integer_value(j));
            return DL_OK;
        case JSON_REAL:
            *out = dl_value_double(json_real_value(j));
            return DL_OK;
        case JSON_STRING:
            return dl_value_text(DL_T_STRING, json_string_value(j), json_string_length(j), out,
                                 err);
        case JSON_ARRAY:
            return bad(err, "an array");
        case JSON_OBJECT:
            break;
    }
    if (json_object_size(j) != 1)
        return bad(err, "an object must have exactly one of the keys kw, ref, inst, uuid, "
                        "double");
    const char *key = json_object_iter_key(json_object_iter((json_t *)j));
    const json_t *val = json_object_iter_value(json_object_iter((json_t *)j));
    if (strcmp(key, "ref") == 0) {
        if (!json_is_integer(val))
            return bad(err, "\"ref\" needs an integer entity id");
        *out = dl_value_ref(json_integer_value(val));
        return DL_OK;
    }
    if (!json_is_string(val))
        return dl_error_set(err, DL_ETYPE,
                            "not a deltalog value in JSON form: \"%s\" needs a "
                            "string",
                            key);
    const char *s = json_string_value(val);
    size_t n = json_string_length(val);
    if (strcmp(key, "kw") == 0) {
        if (n == 0)
            return bad(err, "empty keyword");
        return dl_value_text(DL_T_KEYWORD, s, n, out, err);
    }
    if (strcmp(key, "inst") == 0) {
        int64_t ms;
        if (dl__instant_parse(s, n, &ms) != DL_OK)
            return dl_error_set(err, DL_EPARSE, "invalid instant \"%.*s\" (want RFC 3339)",
                                (int)DL_MIN(n, 64), s);
        *out = dl_value_instant(ms);
        return DL_OK;
    }
    if (strcmp(key, "uuid") == 0) {
        uint8_t b[16];
        if (dl__uuid_parse(s, n, b) != DL_OK)
            return dl_error_set(err, DL_EPARSE, "invalid uuid \"%.*s\"", (int)DL_MIN(n, 64), s);
        return dl_value_uuid(b, out, err);
    }
    if (strcmp(key, "double") == 0) {
        if (strcmp(s, "NaN") == 0)
            *out = dl_value_double(NAN);
        else if (strcmp(s, "Infinity") == 0)
            *out = dl_value_double(INFINITY);
        else if (strcmp(s, "-Infinity") == 0)
            *out = dl_value_double(-INFINITY);
        else
            return bad(err, "\"double\" must be NaN, Infinity or -Infinity");
        return DL_OK;
    }
    return dl_error_set(err, DL_ETYPE, "not a deltalog value in JSON form: unknown tag \"%s\"",
                        key);
}
