/*
 * test_tx.c: every transaction form and every rejection of the store (docs/storage.md
 * "Transactions"): list and map forms, tempids, lookup refs, upserts, cas,
 * retractEntity with components, cardinality-one replacement, no-ops, schema changes,
 * the JSON form, the C op form; after each rejection the database is unchanged (every
 * index, current and history, and the transaction count).
 */
#include "store_test_util.h"

#include <jansson.h>

#define SCHEMA                                                                                     \
    "[{:db/ident :person/name :db/valueType :db.type/string :db/cardinality :db.cardinality/one}"  \
    " {:db/ident :person/email :db/valueType :db.type/string :db/cardinality "                     \
    ":db.cardinality/one :db/unique :db.unique/identity}"                                          \
    " {:db/ident :person/ssn :db/valueType :db.type/string :db/cardinality :db.cardinality/one "   \
    ":db/unique :db.unique/value}"                                                                 \
    " {:db/ident :person/age :db/valueType :db.type/long :db/cardinality :db.cardinality/one "     \
    ":db/index true}"                                                                              \
    " {:db/ident :person/tag :db/valueType :db.type/keyword :db/cardinality "                      \
    ":db.cardinality/many}"                                                                        \
    " {:db/ident :person/friend :db/valueType :db.type/ref :db/cardinality "                       \
    ":db.cardinality/many}"                                                                        \
    " {:db/ident :person/address :db/valueType :db.type/ref :db/cardinality "                      \
    ":db.cardinality/one :db/isComponent true}"                                                    \
    " {:db/ident :address/city :db/valueType :db.type/string :db/cardinality "                     \
    ":db.cardinality/one}"                                                                         \
    " {:db/ident :person/score :db/valueType :db.type/double :db/cardinality "                     \
    ":db.cardinality/one}"                                                                         \
    " {:db/ident :person/born :db/valueType :db.type/instant :db/cardinality "                     \
    ":db.cardinality/one}"                                                                         \
    " {:db/ident :person/active :db/valueType :db.type/boolean :db/cardinality "                   \
    ":db.cardinality/one}"                                                                         \
    " {:db/ident :person/uuid :db/valueType :db.type/uuid :db/cardinality "                        \
    ":db.cardinality/one}"                                                                         \
    " {:db/ident :person/session :db/valueType :db.type/string :db/cardinality "                   \
    ":db.cardinality/one :db/noHistory true}]"

static dl_store_t *open_schema(void) {
    dl_store_t *s;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    assert_int_equal(st_tx(s, SCHEMA, 0, NULL, NULL), 0);
    return s;
}

/* Current values of (e, attr ident) as EDN text joined by spaces. */
static char *vals(dl_store_t *s, int64_t e, const char *attr) {
    dl_db_t *db = dl_store_db(s);
    dl_attr_info_t ai;
    dl_buf_t b;
    dl__buf_init(&b);
    if (dl_db_attr(db, attr, &ai, NULL) == 0) {
        dl_datom_t p = {.e = e, .a = ai.id};
        dl_iter_t *it;
        assert_int_equal(dl_db_datoms(db, DL_INDEX_EAVT, &p, 2, NULL, &it, NULL), 0);
        dl_datom_t d;
        bool first = true;
        while (dl_iter_next(it, &d)) {
            if (!first)
                dl__buf_putc(&b, ' ');
            first = false;
            dl__edn_print_value(d.v, &b);
        }
        dl_iter_free(it);
    }
    dl_db_unref(db);
    dl__buf_putc(&b, 0);
    return dl__buf_take(&b);
}

#define ASSERT_VALS(s, e, attr, want)                                                              \
    do {                                                                                           \
        char *got_ = vals(s, e, attr);                                                             \
        assert_string_equal(got_, want);                                                           \
        dl_free(got_);                                                                             \
    } while (0)

static int64_t ident(dl_store_t *s, const char *kw) {
    dl_db_t *db = dl_store_db(s);
    int64_t id = 0;
    if (dl_db_ident(db, kw, &id, NULL) != 0)
        id = 0;
    dl_db_unref(db);
    return id;
}

static int64_t lookup(dl_store_t *s, const char *attr, dl_value_t v) {
    dl_db_t *db = dl_store_db(s);
    dl_attr_info_t ai;
    int64_t id = 0;
    if (dl_db_attr(db, attr, &ai, NULL) == 0)
        if (dl_db_lookup(db, ai.id, v, &id, NULL) != 0)
            id = 0;
    dl_db_unref(db);
    return id;
}

static dl_value_t str(const char *s) {
    dl_value_t v;
    assert_int_equal(dl_value_text(DL_T_STRING, s, strlen(s), &v, NULL), 0);
    return v;
}

/* Expects the transaction to be rejected with `code` and the database unchanged. */
static void reject(dl_store_t *s, const char *edn, int code, const char *msg_part) {
    char *before = st_dump(s);
    dl_error_t err = {0};
    assert_int_equal(st_tx(s, edn, code, NULL, &err), code);
    assert_int_equal(err.code, code);
    if (msg_part && !strstr(err.message, msg_part))
        fail_msg("message lacks \"%s\": %s", msg_part, err.message);
    char *after = st_dump(s);
    assert_string_equal(before, after);
    dl_free(before);
    dl_free(after);
}

static void test_tx_list_forms(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    assert_int_equal(st_tx(s,
                           "[[:db/add \"a\" :person/name \"Ann\"] [:db/add \"a\" :person/age 30]"
                           " [:db/add \"a\" :person/tag :x] [:db/add \"a\" :person/tag :y]]",
                           0, &r, NULL),
                     0);
    int64_t a = st_tempid(&r, "a");
    assert_true(a >= 1000);
    assert_int_equal(r.n_datoms, 4);
    assert_int_equal(r.n_time, 1);
    assert_int_equal(r.time[0], r.tx);
    dl_tx_report_fini(&r);
    ASSERT_VALS(s, a, "person/name", "\"Ann\"");
    ASSERT_VALS(s, a, "person/tag", ":x :y");
    char buf[256];
    /* cardinality-one replacement: one retraction and one assertion */
    snprintf(buf, sizeof buf, "[[:db/add %lld :person/name \"Anna\"]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, &r, NULL), 0);
    assert_int_equal(r.n_datoms, 2);
    assert_false(r.datoms[0].added);
    assert_true(r.datoms[1].added);
    dl_tx_report_fini(&r);
    ASSERT_VALS(s, a, "person/name", "\"Anna\"");
    /* asserting what is true is a no-op: no datoms */
    assert_int_equal(st_tx(s, buf, 0, &r, NULL), 0);
    assert_int_equal(r.n_datoms, 0);
    dl_tx_report_fini(&r);
    /* retract a value, then a whole attribute */
    snprintf(buf, sizeof buf, "[[:db/retract %lld :person/tag :x]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    ASSERT_VALS(s, a, "person/tag", ":y");
    snprintf(buf, sizeof buf, "[[:db/retract %lld :person/tag :nope]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, &r, NULL), 0);
    assert_int_equal(r.n_datoms, 0); /* retracting what is absent is a no-op */
    dl_tx_report_fini(&r);
    snprintf(buf, sizeof buf, "[[:db/add %lld :person/tag :z] (:db/retract %lld :person/name)]",
             (long long)a, (long long)a);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    ASSERT_VALS(s, a, "person/name", "");
    ASSERT_VALS(s, a, "person/tag", ":y :z");
    snprintf(buf, sizeof buf, "[[:db/retract %lld :person/tag]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    ASSERT_VALS(s, a, "person/tag", "");
    dl_store_close(s);
}

static void test_tx_value_types(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    assert_int_equal(st_tx(s,
                           "[{:db/id \"p\" :person/score 1.5 :person/born "
                           "#inst \"2020-01-02T03:04:05.678Z\" :person/active false "
                           ":person/uuid #uuid \"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\"}]",
                           0, &r, NULL),
                     0);
    int64_t p = st_tempid(&r, "p");
    dl_tx_report_fini(&r);
    ASSERT_VALS(s, p, "person/score", "1.5");
    ASSERT_VALS(s, p, "person/active", "false");
    ASSERT_VALS(s, p, "person/born", "#inst \"2020-01-02T03:04:05.678Z\"");
    ASSERT_VALS(s, p, "person/uuid", "#uuid \"f81d4fae-7dec-11d0-a765-00a0c91e6bf6\"");
    reject(s, "[[:db/add \"q\" :person/age \"old\"]]", DL_ETYPE, "person/age");
    reject(s, "[[:db/add \"q\" :person/score 1]]", DL_ETYPE, "double");
    reject(s, "[[:db/add \"q\" :person/active 1]]", DL_ETYPE, NULL);
    reject(s, "[[:db/add \"q\" :person/name nil]]", DL_ETYPE, NULL);
    dl_store_close(s);
}

static void test_tx_map_forms_nested(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    assert_int_equal(
        st_tx(s,
              "[{:db/id \"a\" :person/name \"Ann\" :person/tag #{:p :q}"
              "  :person/address {:address/city \"Oslo\"}"
              "  :person/friend [{:person/name \"Bob\"} {:db/id \"c\" :person/name \"Cy\"}]}]",
              0, &r, NULL),
        0);
    int64_t a = st_tempid(&r, "a"), c = st_tempid(&r, "c");
    assert_true(a && c && a != c);
    assert_int_equal(r.n_tempids, 2); /* implicit tempids are not reported */
    dl_tx_report_fini(&r);
    ASSERT_VALS(s, a, "person/tag", ":p :q");
    char *f = vals(s, a, "person/friend");
    assert_non_null(strstr(f, "#dl/ref"));
    dl_free(f);
    /* a map without :db/id is a new entity */
    assert_int_equal(st_tx(s, "[{:person/name \"Dee\"}]", 0, &r, NULL), 0);
    assert_int_equal(r.n_datoms, 1);
    assert_true(r.datoms[0].e > c);
    dl_tx_report_fini(&r);
    /* a reverse attribute: the map's entity is the value of :person/friend on Bob */
    assert_int_equal(st_tx(s,
                           "[{:db/id \"bob\" :person/name \"Bob2\"}"
                           " {:db/id \"eve\" :person/name \"Eve\" :person/_friend \"bob\"}]",
                           0, &r, NULL),
                     0);
    int64_t bob = st_tempid(&r, "bob"), eve = st_tempid(&r, "eve");
    dl_tx_report_fini(&r);
    char want[64];
    snprintf(want, sizeof want, "#dl/ref %lld", (long long)eve);
    ASSERT_VALS(s, bob, "person/friend", want);
    const char *jr = "[{\"db/id\": \"z\", \"person/name\": \"Zed\", \"person/_friend\": "
                     "{\"lookup\": [\"person/name\", \"x\"]}}]";
    dl_error_t jerr = {0};
    assert_int_equal(dl_store_transact_json(s, jr, strlen(jr), NULL, &jerr), DL_ESCHEMA);
    reject(s, "[{:db/id \"x\"}]", DL_EPARSE, "at least one attribute");
    reject(s, "[{\"k\" 1}]", DL_EPARSE, "keywords");
    dl_store_close(s);
}

static void test_tx_tempids(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    /* string and negative-int tempids resolve consistently; refs between them */
    assert_int_equal(st_tx(s,
                           "[[:db/add -1 :person/name \"One\"] [:db/add \"two\" :person/name "
                           "\"Two\"] [:db/add -1 :person/friend \"two\"] [:db/add \"two\" "
                           ":person/friend -1]]",
                           0, &r, NULL),
                     0);
    int64_t one = st_tempid(&r, "-1"), two = st_tempid(&r, "two");
    assert_true(one && two && one != two);
    dl_tx_report_fini(&r);
    char want[64];
    snprintf(want, sizeof want, "#dl/ref %lld", (long long)two);
    ASSERT_VALS(s, one, "person/friend", want);
    /* a tempid used only as a value is an error */
    reject(s, "[[:db/add -1 :person/friend \"ghost\"] [:db/add -1 :person/name \"x\"]]",
           DL_ENOTFOUND, "only as a value");
    dl_store_close(s);
}

static void test_tx_lookup_refs_and_idents(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    assert_int_equal(st_tx(s,
                           "[{:person/email \"a@x\" :person/name \"A\"} {:person/email \"b@x\" "
                           ":person/name \"B\"}]",
                           0, NULL, NULL),
                     0);
    int64_t a = lookup(s, "person/email", str("a@x")), b = lookup(s, "person/email", str("b@x"));
    assert_true(a && b);
    assert_int_equal(st_tx(s,
                           "[[:db/add [:person/email \"a@x\"] :person/friend [:person/email "
                           "\"b@x\"]] {:db/id [:person/email \"b@x\"] :person/age 5}]",
                           0, NULL, NULL),
                     0);
    char want[64];
    snprintf(want, sizeof want, "#dl/ref %lld", (long long)b);
    ASSERT_VALS(s, a, "person/friend", want);
    ASSERT_VALS(s, b, "person/age", "5");
    /* an ident names its entity wherever an entity is expected */
    assert_int_equal(st_tx(s, "[{:db/ident :me :person/name \"Me\"}]", 0, NULL, NULL), 0);
    int64_t me = ident(s, "me");
    assert_true(me);
    assert_int_equal(st_tx(s, "[[:db/add :me :person/age 7]]", 0, NULL, NULL), 0);
    ASSERT_VALS(s, me, "person/age", "7");
    reject(s, "[[:db/add [:person/email \"nobody\"] :person/age 1]]", DL_ENOTFOUND, "lookup ref");
    reject(s, "[[:db/add \"x\" :person/friend [:person/email \"nobody\"]]]", DL_ENOTFOUND,
           "lookup ref");
    reject(s, "[[:db/add [:person/name \"A\"] :person/age 1]]", DL_ESCHEMA, "not unique");
    reject(s, "[[:db/add :nobody :person/age 1]]", DL_ENOTFOUND, "ident");
    reject(s, "[[:db/add 999999 :person/age 1]]", DL_ENOTFOUND, "does not exist");
    reject(s, "[[:db/add \"x\" :person/friend 999999]]", DL_ENOTFOUND, "does not exist");
    dl_store_close(s);
}

static void test_tx_upsert(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    assert_int_equal(
        st_tx(s, "[{:db/id \"a\" :person/email \"a@x\" :person/name \"A\"}]", 0, &r, NULL), 0);
    int64_t a = st_tempid(&r, "a");
    dl_tx_report_fini(&r);
    /* a tempid with an existing identity value resolves to that entity */
    assert_int_equal(st_tx(s, "[{:db/id \"t\" :person/email \"a@x\" :person/age 40}]", 0, &r, NULL),
                     0);
    assert_int_equal(st_tempid(&r, "t"), a);
    dl_tx_report_fini(&r);
    ASSERT_VALS(s, a, "person/age", "40");
    /* two tempids sharing a new identity value are one entity */
    assert_int_equal(st_tx(s,
                           "[{:db/id \"u\" :person/email \"n@x\" :person/age 1} {:db/id \"v\" "
                           ":person/email \"n@x\" :person/name \"N\"}]",
                           0, &r, NULL),
                     0);
    assert_int_equal(st_tempid(&r, "u"), st_tempid(&r, "v"));
    dl_tx_report_fini(&r);
    /* two tempids upserting into one entity with conflicting values */
    reject(s,
           "[{:db/id \"p\" :person/email \"a@x\" :person/age 1} {:db/id \"q\" :person/email "
           "\"a@x\" :person/age 2}]",
           DL_ECONFLICT, "two values");
    /* one tempid with identity values of two different entities */
    reject(s, "[{:db/id \"p\" :person/email \"a@x\"} [:db/add \"p\" :person/email \"n@x\"]]",
           DL_EUNIQUE, NULL);
    /* unique value (not identity): a second entity with the value is a conflict */
    assert_int_equal(st_tx(s, "[{:person/ssn \"1\" :person/name \"S\"}]", 0, NULL, NULL), 0);
    reject(s, "[{:person/ssn \"1\" :person/name \"T\"}]", DL_EUNIQUE, "already belongs");
    reject(s, "[{:person/ssn \"2\"} {:person/ssn \"2\"}]", DL_EUNIQUE, "two entities");
    /* explicit ids with an identity value held by another entity */
    char buf[128];
    snprintf(buf, sizeof buf, "[[:db/add %lld :person/email \"n@x\"]]", (long long)a);
    reject(s, buf, DL_EUNIQUE, "already belongs");
    /* moving a unique value in one transaction is fine (retract + assert) */
    int64_t n = lookup(s, "person/email", str("n@x"));
    snprintf(buf, sizeof buf,
             "[[:db/retract %lld :person/email \"n@x\"] [:db/add %lld :person/email \"n@x\"]"
             " [:db/add %lld :person/email \"moved@x\"]]",
             (long long)n, (long long)a, (long long)n);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    assert_int_equal(lookup(s, "person/email", str("n@x")), a);
    dl_store_close(s);
}

static void test_tx_cas(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    assert_int_equal(st_tx(s, "[{:db/id \"a\" :person/age 1}]", 0, &r, NULL), 0);
    int64_t a = st_tempid(&r, "a");
    dl_tx_report_fini(&r);
    char buf[160];
    snprintf(buf, sizeof buf, "[[:db/cas %lld :person/age 1 2]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    ASSERT_VALS(s, a, "person/age", "2");
    reject(s, buf, DL_ECAS, "cas");
    snprintf(buf, sizeof buf, "[[:db/cas %lld :person/name nil \"first\"]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    reject(s, buf, DL_ECAS, "cas");
    snprintf(buf, sizeof buf, "[[:db/cas %lld :person/tag :a :b]]", (long long)a);
    reject(s, buf, DL_ESCHEMA, "cardinality-one");
    dl_store_close(s);
}

static void test_tx_retract_entity(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    assert_int_equal(st_tx(s,
                           "[{:db/id \"a\" :person/name \"A\" :person/address {:db/id \"addr\" "
                           ":address/city \"Rome\"}} {:db/id \"b\" :person/name \"B\" "
                           ":person/friend \"a\"}]",
                           0, &r, NULL),
                     0);
    int64_t a = st_tempid(&r, "a"), b = st_tempid(&r, "b"), addr = st_tempid(&r, "addr");
    dl_tx_report_fini(&r);
    char buf[128];
    snprintf(buf, sizeof buf, "[[:db/retractEntity %lld]]", (long long)a);
    assert_int_equal(st_tx(s, buf, 0, &r, NULL), 0);
    /* a's two datoms, the component's city, and b's reference to a */
    assert_int_equal(r.n_datoms, 4);
    dl_tx_report_fini(&r);
    ASSERT_VALS(s, a, "person/name", "");
    ASSERT_VALS(s, addr, "address/city", "");
    ASSERT_VALS(s, b, "person/friend", "");
    ASSERT_VALS(s, b, "person/name", "\"B\"");
    /* :db.fn/retractEntity is the same */
    snprintf(buf, sizeof buf, "[[:db.fn/retractEntity %lld]]", (long long)b);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    ASSERT_VALS(s, b, "person/name", "");
    dl_store_close(s);
}

static void test_tx_contradictions(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    assert_int_equal(st_tx(s, "[{:db/id \"a\" :person/name \"A\" :person/tag :t}]", 0, &r, NULL),
                     0);
    int64_t a = st_tempid(&r, "a");
    dl_tx_report_fini(&r);
    char buf[200];
    snprintf(buf, sizeof buf,
             "[[:db/add %lld :person/name \"X\"] [:db/add %lld :person/name \"Y\"]]", (long long)a,
             (long long)a);
    reject(s, buf, DL_ECONFLICT, "two values");
    snprintf(buf, sizeof buf, "[[:db/add %lld :person/tag :u] [:db/retract %lld :person/tag :u]]",
             (long long)a, (long long)a);
    reject(s, buf, DL_ECONFLICT, "both asserted and retracted");
    snprintf(buf, sizeof buf, "[[:db/retract %lld :person/tag :t] [:db/add %lld :person/tag :t]]",
             (long long)a, (long long)a);
    reject(s, buf, DL_ECONFLICT, "both asserted and retracted");
    /* order does not matter and duplicates are harmless */
    snprintf(buf, sizeof buf,
             "[[:db/add %lld :person/name \"Z\"] [:db/add %lld :person/name \"Z\"]]", (long long)a,
             (long long)a);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    ASSERT_VALS(s, a, "person/name", "\"Z\"");
    /* Everything is resolved against the database before the transaction: a retraction of
     * a value asserted by the same transaction does not see it. */
    snprintf(buf, sizeof buf, "[[:db/add %lld :person/tag :new] [:db/retract %lld :person/tag]]",
             (long long)a, (long long)a);
    assert_int_equal(st_tx(s, buf, 0, NULL, NULL), 0);
    ASSERT_VALS(s, a, "person/tag", ":new");
    dl_store_close(s);
}

static void test_tx_rejections_are_positioned(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_error_t err = {0};
    assert_int_equal(st_tx(s, "[[:db/add \"a\" :person/name \"A\"]\n [:db/add \"a\" :no/such 1]]",
                           DL_EUNKNOWN_ATTR, NULL, &err),
                     DL_EUNKNOWN_ATTR);
    assert_int_equal(err.line, 2);
    assert_int_equal(err.column, 2);
    assert_non_null(strstr(err.message, "no/such"));
    assert_non_null(strstr(err.message, "transaction item 1"));
    reject(s, "[[:db/add \"a\" :person/name]]", DL_EPARSE, "arguments");
    reject(s, "[[:db/frob 1 2 3]]", DL_EPARSE, "unknown operation");
    reject(s, "[[:db/add \"a\" :person/name \"A\"]", DL_EPARSE, NULL);
    reject(s, "{:a 1}", DL_EPARSE, "vector");
    reject(s, "[42]", DL_EPARSE, "list form");
    reject(s, "[[:db/add \"a\" \"person/name\" 1]]", DL_EPARSE, "keyword");
    reject(s, "[[:db/retract \"tmp\" :person/name \"A\"]]", DL_ENOTFOUND, "tempid");
    dl_store_close(s);
}

static void test_tx_schema_changes(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    /* an attribute cannot be used in the transaction that installs it */
    reject(s,
           "[{:db/ident :x/y :db/valueType :db.type/long :db/cardinality :db.cardinality/one}"
           " [:db/add \"e\" :x/y 1]]",
           DL_EUNKNOWN_ATTR, "x/y");
    reject(s, "[{:db/ident :x/y :db/valueType :db.type/long}]", DL_ESCHEMA, "cardinality");
    reject(s, "[{:db/ident :x/y :db/valueType :db.type/nope :db/cardinality :db.cardinality/one}]",
           DL_ENOTFOUND, "db.type/nope");
    reject(s,
           "[{:db/ident :x/y :db/valueType :db.type/long :db/cardinality :db.cardinality/one "
           ":db/isComponent true}]",
           DL_ESCHEMA, "isComponent");
    reject(s,
           "[{:db/ident :x/y :db/valueType :db.type/long :db/cardinality :db.cardinality/many "
           ":db/unique :db.unique/value}]",
           DL_ESCHEMA, "cardinality one");
    /* ident clash: :db/ident is unique */
    reject(s,
           "[{:db/ident :person/name :db/valueType :db.type/long :db/cardinality "
           ":db.cardinality/one}]",
           DL_ESCHEMA, "valueType cannot change");
    reject(s,
           "[[:db/add \"n\" :db/ident :person/name] [:db/add \"n\" :db/valueType :db.type/long]"
           " [:db/add \"n\" :db/cardinality :db.cardinality/one]]",
           DL_ESCHEMA, "valueType cannot change");
    reject(s, "[[:db/add :person/age :db/ident :person/name]]", DL_EUNIQUE, "person/name");
    /* the built-in schema is fixed */
    reject(s, "[[:db/add :db/ident :db/cardinality :db.cardinality/many]]", DL_ESCHEMA, "built-in");
    /* changing the value type is refused */
    reject(s, "[[:db/add :person/age :db/valueType :db.type/string]]", DL_ESCHEMA, "valueType");
    /* making an attribute unique fails with the offending value when duplicates exist */
    assert_int_equal(st_tx(s,
                           "[{:person/name \"dup\"} {:person/name \"dup\"} {:person/name \"u\"}]",
                           0, NULL, NULL),
                     0);
    reject(s, "[[:db/add :person/name :db/unique :db.unique/value]]", DL_ESCHEMA, "\"dup\"");
    /* many -> one with an entity holding two values fails; without, it works */
    assert_int_equal(st_tx(s, "[{:person/tag [:a :b]}]", 0, NULL, NULL), 0);
    reject(s, "[[:db/add :person/tag :db/cardinality :db.cardinality/one]]", DL_ESCHEMA,
           "several values");
    /* adding an index builds AVET for existing data; a unique attribute gets lookups */
    assert_int_equal(st_tx(s, "[{:person/name \"solo\"}]", 0, NULL, NULL), 0);
    assert_int_equal(st_tx(s, "[[:db/add :person/name :db/index true]]", 0, NULL, NULL), 0);
    dl_db_t *db = dl_store_db(s);
    dl_attr_info_t ai;
    assert_int_equal(dl_db_attr(db, "person/name", &ai, NULL), 0);
    assert_true(ai.indexed);
    dl_datom_t p = {.a = ai.id, .v = str("solo")};
    dl_iter_t *it;
    assert_int_equal(dl_db_datoms(db, DL_INDEX_AVET, &p, 2, NULL, &it, NULL), 0);
    dl_datom_t d;
    assert_true(dl_iter_next(it, &d));
    assert_false(dl_iter_next(it, &d));
    dl_iter_free(it);
    dl_attr_stats_t st;
    assert_int_equal(dl_db_attr_stats(db, ai.id, &st, NULL), 0);
    assert_int_equal(st.datoms, 4);
    assert_int_equal(st.distinct_values, 3);
    dl_db_unref(db);
    /* dropping the index drops its AVET entries; uniqueness without duplicates works */
    assert_int_equal(st_tx(s, "[[:db/retract :person/name :db/index true]]", 0, NULL, NULL), 0);
    db = dl_store_db(s);
    assert_int_equal(dl_db_attr(db, "person/name", &ai, NULL), 0);
    assert_false(ai.indexed);
    assert_int_equal(dl_db_datoms(db, DL_INDEX_AVET, &p, 1, NULL, &it, NULL), 0);
    assert_false(dl_iter_next(it, &d));
    dl_iter_free(it);
    dl_db_unref(db);
    assert_int_equal(st_tx(s, "[[:db/add :person/age :db/unique :db.unique/value]]", 0, NULL, NULL),
                     0);
    db = dl_store_db(s);
    assert_int_equal(dl_db_attr(db, "person/age", &ai, NULL), 0);
    assert_int_equal(ai.unique, DL_UNIQUE_VALUE);
    assert_true(ai.indexed);
    dl_db_unref(db);
    /* a prefix of all four components selects one transaction's datom */
    dl_tx_report_t r4;
    assert_int_equal(st_tx(s, "[{:db/id \"q\" :person/tag :k4}]", 0, &r4, NULL), 0);
    db = dl_store_db(s);
    dl_datom_t p4 = r4.datoms[0];
    assert_int_equal(dl_db_datoms(db, DL_INDEX_EAVT, &p4, 4, NULL, &it, NULL), 0);
    assert_true(dl_iter_next(it, &d));
    assert_int_equal(d.tx, (int64_t)r4.tx);
    assert_false(dl_iter_next(it, &d));
    dl_iter_free(it);
    p4.tx = (int64_t)r4.tx - 1;
    assert_int_equal(dl_db_datoms(db, DL_INDEX_EAVT, &p4, 4, NULL, &it, NULL), 0);
    assert_false(dl_iter_next(it, &d));
    dl_iter_free(it);
    dl_db_unref(db);
    dl_tx_report_fini(&r4);
    /* a renamed attribute keeps its data */
    assert_int_equal(st_tx(s, "[[:db/add :person/name :db/ident :person/fullName]]", 0, NULL, NULL),
                     0);
    db = dl_store_db(s);
    assert_int_equal(dl_db_attr(db, "person/fullName", &ai, NULL), 0);
    assert_int_equal(dl_db_attr(db, "person/name", &ai, NULL), DL_EUNKNOWN_ATTR);
    dl_db_unref(db);
    dl_store_close(s);
}

static void test_tx_json_form(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_tx_report_t r;
    const char *j =
        "[[\"add\", \"a\", \"person/name\", \"Ann\"],"
        " {\"db/id\": \"b\", \"person/email\": \"b@x\", \"person/tag\": [{\"kw\":\"p\"},"
        " {\"kw\":\"q\"}], \"person/friend\": \"a\","
        " \"person/address\": {\"address/city\": \"Oslo\"}},"
        " [\":db/add\", \"a\", \":person/age\", 12345678901234567]]";
    dl_error_t err = {0};
    int rc = dl_store_transact_json(s, j, strlen(j), &r, &err);
    if (rc)
        fail_msg("%s", err.message);
    int64_t a = st_tempid(&r, "a"), b = st_tempid(&r, "b");
    dl_tx_report_fini(&r);
    ASSERT_VALS(s, a, "person/age", "12345678901234567");
    ASSERT_VALS(s, b, "person/tag", ":p :q");
    const char *j2 = "[[\"retract\", [\"person/email\", \"b@x\"], \"person/tag\", {\"kw\":\"p\"}],"
                     " [\"cas\", {\"lookup\": [\"person/email\", \"b@x\"]}, \"person/email\","
                     " \"b@x\", \"c@x\"]]";
    assert_int_equal(dl_store_transact_json(s, j2, strlen(j2), NULL, &err), 0);
    ASSERT_VALS(s, b, "person/tag", ":q");
    ASSERT_VALS(s, b, "person/email", "\"c@x\"");
    const char *j3 = "[[\"retractEntity\", {\"ref\": 999999}]]";
    char *before = st_dump(s);
    dl_error_clear(&err);
    assert_int_equal(dl_store_transact_json(s, j3, strlen(j3), NULL, &err), DL_ENOTFOUND);
    assert_non_null(strstr(err.message, "transaction item 0"));
    const char *bad[] = {"{}",
                         "[1]",
                         "[[\"frob\", 1]]",
                         "[[\"add\", \"a\"]]",
                         "[",
                         "[[\"add\", \"a\", \"no/attr\", 1]]"};
    for (size_t i = 0; i < DL_ARRAY_LEN(bad); i++) {
        dl_error_clear(&err);
        assert_true(dl_store_transact_json(s, bad[i], strlen(bad[i]), NULL, &err) < 0);
    }
    char *after = st_dump(s);
    assert_string_equal(before, after);
    dl_free(before);
    dl_free(after);
    dl_store_close(s);
}

/* dl_store_transact_json_value(_begin) on decoded JSON behaves exactly like the text
 * form: the same database after each transaction, the same code and message for each
 * rejection, nothing changed by a rejection. */
static void test_tx_json_value(void **state) {
    (void)state;
    dl_store_t *a = open_schema(), *b = open_schema();
    const char *txs[] = {
        "[[\"add\", \"a\", \"person/name\", \"Ann\"], {\"db/id\": \"b\", \"person/email\": "
        "\"b@x\", \"person/tag\": [{\"kw\":\"p\"}, {\"kw\":\"q\"}], \"person/friend\": \"a\","
        " \"person/address\": {\"address/city\": \"Oslo\"}}]",
        "[{\"person/email\": \"c@x\", \"person/age\": 40}, {\"person/email\": \"d@x\"}]",
        "[[\"retract\", [\"person/email\", \"b@x\"], \"person/tag\", {\"kw\":\"p\"}]]",
        "[[\"add\", \"x\", \"no/attr\", 1]]",
        "[{\"person/email\": \"c@x\", \"person/age\": \"old\"}]",
        "{\"not\": \"an array\"}",
        "[17]",
        "[[\"cas\", [\"person/email\", \"c@x\"], \"person/age\", 41, 42]]",
        "[[\"cas\", [\"person/email\", \"c@x\"], \"person/age\", 40, 42]]",
        "[[\"retractEntity\", [\"person/email\", \"d@x\"]]]",
    };
    for (size_t i = 0; i < DL_ARRAY_LEN(txs); i++) {
        json_error_t je;
        json_t *v = json_loads(txs[i], 0, &je);
        assert_non_null(v);
        dl_error_t ea = {0}, eb = {0};
        dl_tx_report_t ra, rb;
        char *before = st_dump(b);
        int rca = dl_store_transact_json(a, txs[i], strlen(txs[i]), &ra, &ea);
        int rcb;
        if (i % 2) {
            rcb = dl_store_transact_json_value(b, v, &rb, &eb);
        } else {
            uint64_t tx = 0;
            rcb = dl_store_transact_json_value_begin(b, v, &rb, &tx, &eb);
            if (rcb == 0)
                rcb = dl_store_wait_durable(b, tx, &eb);
        }
        json_decref(v);
        assert_int_equal(rca, rcb);
        assert_string_equal(ea.message, eb.message);
        char *da = st_dump(a), *db = st_dump(b);
        assert_string_equal(da, db);
        if (rcb != 0)
            assert_string_equal(before, db); /* a rejection changes nothing */
        if (rca == 0) {
            assert_int_equal(ra.tx, rb.tx);
            assert_int_equal(ra.n_tempids, rb.n_tempids);
            assert_int_equal(ra.n_datoms, rb.n_datoms);
            dl_tx_report_fini(&ra);
            dl_tx_report_fini(&rb);
        }
        dl_free(before);
        dl_free(da);
        dl_free(db);
    }
    uint64_t tx = 7;
    dl_error_t err = {0};
    assert_int_equal(dl_store_transact_json_value(b, NULL, NULL, &err), DL_EINVAL);
    assert_int_equal(dl_store_transact_json_value_begin(b, NULL, NULL, &tx, NULL), DL_EINVAL);
    assert_int_equal(tx, 0);
    dl_store_close(a);
    dl_store_close(b);
}

static void test_tx_c_ops(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    dl_value_t name, email, t;
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "person/name", 11, &name, NULL), 0);
    assert_int_equal(dl_value_text(DL_T_KEYWORD, "person/email", 12, &email, NULL), 0);
    t = str("t");
    dl_tx_op_t ops[2] = {{.op = DL_OP_ADD, .e = t, .a = name, .v = str("C")},
                         {.op = DL_OP_ADD, .e = t, .a = email, .v = str("c@x")}};
    dl_tx_report_t r;
    assert_int_equal(dl_store_transact(s, ops, 2, NULL, 0, &r, NULL), 0);
    int64_t c = st_tempid(&r, "t");
    dl_tx_report_fini(&r);
    dl_tx_op_t op = {
        .op = DL_OP_ADD, .e = str("c@x"), .e_lookup = email, .a = name, .v = str("C2")};
    assert_int_equal(dl_store_transact(s, &op, 1, NULL, 0, NULL, NULL), 0);
    ASSERT_VALS(s, c, "person/name", "\"C2\"");
    dl_error_t err = {0};
    op.a = dl_value_int(424242);
    assert_int_equal(dl_store_transact(s, &op, 1, NULL, 0, NULL, &err), DL_EUNKNOWN_ATTR);
    assert_non_null(strstr(err.message, "op 0"));
    dl_store_close(s);
}

/* Mutated transaction text (EDN and JSON) never crashes the store: each one commits or is
 * rejected, and a rejection changes nothing. */
static void test_tx_mutated_text_is_safe(void **state) {
    (void)state;
    dl_store_t *s = open_schema();
    static const char *seeds[] = {
        "[{:db/id \"a\" :person/name \"A\" :person/email \"a@x\" :person/tag #{:x :y} "
        ":person/address {:address/city \"Oslo\"} :person/friend [{:person/name \"F\"}]}"
        " [:db/add \"a\" :person/age 3] [:db/retract [:person/email \"a@x\"] :person/tag :x]"
        " [:db/cas [:person/email \"a@x\"] :person/age 3 4] [:db/retractEntity \"a\"]]",
        "[[\"add\", \"a\", \"person/name\", \"A\"], {\"db/id\": \"b\", \"person/email\": "
        "\"b@x\", \"person/tag\": [{\"kw\": \"p\"}]}, [\"retract\", [\"person/email\", "
        "\"b@x\"], \"person/tag\"], [\"cas\", {\"lookup\": [\"person/email\", \"b@x\"]}, "
        "\"person/age\", null, 5]]"};
    dl_rng_t rng = {dl_prop_seed("store.tx_mutated_text_is_safe")};
    const char alphabet[] = "[]{}()\":#/ -0123456789abcdexyz,\\";
    long n = dl_prop_iters(1500), committed = 0;
    for (long i = 0; i < n; i++) {
        int which = (int)dl_rng_below(&rng, 2);
        char buf[1024];
        size_t len = strlen(seeds[which]);
        memcpy(buf, seeds[which], len);
        int muts = 1 + (int)dl_rng_below(&rng, 4);
        for (int m = 0; m < muts && len > 0; m++) {
            size_t at = dl_rng_below(&rng, len);
            switch (dl_rng_below(&rng, 3)) {
                case 0:
                    buf[at] = alphabet[dl_rng_below(&rng, sizeof alphabet - 1)];
                    break;
                case 1:
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                    break;
                default:
                    if (len + 1 < sizeof buf) {
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = alphabet[dl_rng_below(&rng, sizeof alphabet - 1)];
                        len++;
                    }
            }
        }
        dl_db_t *db = dl_store_db(s);
        uint64_t basis = dl_db_basis_tx(db);
        dl_db_unref(db);
        dl_store_stats_t before, after;
        dl_store_stats(s, &before);
        dl_error_t err = {0};
        int rc = which ? dl_store_transact_json(s, buf, len, NULL, &err)
                       : dl_store_transact_edn(s, buf, len, NULL, &err);
        dl_store_stats(s, &after);
        if (rc == 0) {
            committed++;
            continue;
        }
        assert_true(err.code == rc && err.message[0]);
        assert_int_equal(after.last_tx, basis);
        assert_int_equal(after.datoms, before.datoms);
        assert_int_equal(after.history_datoms, before.history_datoms);
    }
    (void)committed;
    dl_store_close(s);
}

/* dl_iter_seek: a cursor moved to prefix after prefix (ascending runs, as a lookup join
 * probes, and random jumps back and forth) yields what a fresh dl_db_datoms cursor on
 * that prefix yields, in the current, history and as-of views, for the AEVT, AVET, VAET
 * and EAVT prefixes a lookup uses. Enough datoms for many B+tree leaves. */
static void test_tx_iter_seek(void **state) {
    (void)state;
    dl_rng_t rng = {dl_prop_seed("store.tx_iter_seek")};
    dl_store_t *s = NULL;
    assert_int_equal(dl_store_open_memory(&s, NULL), 0);
    st_tx(s,
          "[{:db/ident :k/n :db/valueType :db.type/long :db/cardinality :db.cardinality/one "
          ":db/index true} {:db/ident :k/r :db/valueType :db.type/ref :db/cardinality "
          ":db.cardinality/many}]",
          0, NULL, NULL);
    enum { NE = 1500 };
    dl_buf_t b;
    for (int round = 0; round < 4; round++) {
        dl__buf_init(&b);
        dl__buf_puts(&b, "[");
        for (int i = 0; i < NE; i++) {
            if (round && dl_rng_below(&rng, 3))
                continue;
            dl__buf_printf(&b, "{:db/id \"e%d\" :k/n %d}", i, (int)dl_rng_below(&rng, 50));
        }
        dl__buf_puts(&b, "]");
        st_tx(s, b.data, 0, NULL, NULL);
        dl__buf_fini(&b);
    }
    dl_db_t *db = dl_store_db(s);
    int64_t ids[NE];
    size_t n_ids = 0;
    {
        dl_iter_t *it;
        dl_datom_t pre = {0};
        dl_attr_info_t ai;
        assert_int_equal(dl_db_attr(db, "k/n", &ai, NULL), 0);
        pre.a = ai.id;
        assert_int_equal(dl_db_datoms(db, DL_INDEX_AEVT, &pre, 1, NULL, &it, NULL), 0);
        dl_datom_t d;
        while (n_ids < NE && dl_iter_next(it, &d))
            ids[n_ids++] = d.e;
        dl_iter_free(it);
    }
    assert_true(n_ids > 100);
    dl__buf_init(&b);
    dl__buf_puts(&b, "[");
    for (int i = 0; i < 2000; i++)
        dl__buf_printf(&b, "[:db/add %lld :k/r %lld]", (long long)ids[dl_rng_below(&rng, n_ids)],
                       (long long)ids[dl_rng_below(&rng, n_ids)]);
    dl__buf_puts(&b, "]");
    st_tx(s, b.data, 0, NULL, NULL);
    dl__buf_fini(&b);
    dl_db_unref(db);
    db = dl_store_db(s);
    dl_attr_info_t an, ar;
    assert_int_equal(dl_db_attr(db, "k/n", &an, NULL), 0);
    assert_int_equal(dl_db_attr(db, "k/r", &ar, NULL), 0);
    dl_db_t *views[3] = {db, dl_db_history(db), dl_db_as_of(db, dl_db_basis_tx(db) - 2)};
    long probes = 0;
    for (int v = 0; v < 3; v++) {
        for (int kind = 0; kind < 5; kind++) {
            static const dl_index_t idx[5] = {DL_INDEX_AEVT, DL_INDEX_AEVT, DL_INDEX_AVET,
                                              DL_INDEX_VAET, DL_INDEX_EAVT};
            dl_datom_t pre = {0};
            pre.a = kind == 1 || kind == 3 ? ar.id : an.id;
            dl_iter_t *it = NULL;
            assert_int_equal(
                dl_db_datoms(views[v], idx[kind], &pre, kind >= 3 ? 0 : 1, NULL, &it, NULL), 0);
            int64_t at = 0;
            for (int p = 0; p < 600; p++) {
                /* mostly ascending steps, sometimes a jump anywhere */
                if (dl_rng_below(&rng, 8) == 0)
                    at = (int64_t)dl_rng_below(&rng, n_ids);
                else
                    at = (at + (int64_t)dl_rng_below(&rng, 4)) % (int64_t)n_ids;
                int n = kind == 4 ? 1 : 2;
                if (kind == 0 || kind == 1 || kind == 4) {
                    pre.e = ids[at];
                } else if (kind == 2) {
                    pre.v = dl_value_int(at % 50);
                } else {
                    pre.v = dl_value_ref(ids[at]);
                }
                assert_int_equal(dl_iter_seek(it, &pre, n), 0);
                dl_iter_t *fresh = NULL;
                assert_int_equal(dl_db_datoms(views[v], idx[kind], &pre, n, NULL, &fresh, NULL), 0);
                dl_datom_t x, y;
                for (;;) {
                    bool a = dl_iter_next(it, &x), c = dl_iter_next(fresh, &y);
                    assert_int_equal(a, c);
                    if (!a)
                        break;
                    assert_int_equal(x.e, y.e);
                    assert_int_equal(x.a, y.a);
                    assert_true(dl_value_eq(x.v, y.v));
                    assert_int_equal(x.tx, y.tx);
                    assert_int_equal(x.added, y.added);
                }
                dl_iter_free(fresh);
                probes++;
            }
            dl_iter_free(it);
        }
    }
    assert_int_equal(dl_iter_seek(NULL, NULL, 1), DL_EINVAL);
    assert_true(probes == 3 * 5 * 600);
    for (int v = 0; v < 3; v++)
        dl_db_unref(views[v]);
    dl_store_close(s);
}

DL_TEST_GROUP(tx, cmocka_unit_test(test_tx_mutated_text_is_safe),
              cmocka_unit_test(test_tx_list_forms), cmocka_unit_test(test_tx_value_types),
              cmocka_unit_test(test_tx_map_forms_nested), cmocka_unit_test(test_tx_tempids),
              cmocka_unit_test(test_tx_lookup_refs_and_idents), cmocka_unit_test(test_tx_upsert),
              cmocka_unit_test(test_tx_cas), cmocka_unit_test(test_tx_retract_entity),
              cmocka_unit_test(test_tx_contradictions),
              cmocka_unit_test(test_tx_rejections_are_positioned),
              cmocka_unit_test(test_tx_schema_changes), cmocka_unit_test(test_tx_json_form),
              cmocka_unit_test(test_tx_c_ops), cmocka_unit_test(test_tx_json_value),
              cmocka_unit_test(test_tx_iter_seek));
