/*
 * test_cases.c: the data-driven conformance suite of the Datalog front end. Each ctest
 * case datalog.cases_<area> runs every tests/datalog/cases/<area>/ file (*.edn).
 *
 * A file is one scenario: a schema and transactions applied through the store's public
 * transact API, then any number of cases querying it (format: tests/datalog/cases/README.md).
 * Results are compared canonically: relation and collection results as unordered
 * collections, sets unordered, everything else exactly (1 and 1.0 differ). A failure
 * prints the file, the case, the query, expected and actual results and their difference.
 * Every case runs through both engines: the reference evaluator (dl_query_eval_naive) and
 * the compiled dataflow engine (dl_query_run_sources).
 */
#include "tests/harness/dl_test.h"

#include "base/base.h"
#include "datalog/datalog.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef DL_CASES_DIR
#error "DL_CASES_DIR must be defined by tests/datalog/CMakeLists.txt"
#endif

typedef struct scenario {
    const char *path;
    const char *text;
    size_t len;
    dl_store_t *store;
    uint64_t tx_of[64]; /* tx number after the i-th (1-based) transaction of :tx */
    size_t n_tx;
    dl_tempid_t ids[256];
    char *id_names[256];
    size_t n_ids;
} scenario_t;

static char *slurp(const char *path, size_t *out_len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf)
        buf[n] = 0;
    fclose(f);
    *out_len = (size_t)n;
    return buf;
}

static const dl_edn_t *map_get(const dl_edn_t *m, const char *kw) {
    if (!m || m->kind != DL_EDN_MAP)
        return NULL;
    for (size_t i = 0; i + 1 < m->n; i += 2)
        if (dl__edn_is_keyword(m->items[i], kw))
            return m->items[i + 1];
    return NULL;
}

static char *form_text(const dl_edn_t *f) {
    dl_buf_t b;
    dl__buf_init(&b);
    dl__edn_print(f, &b);
    return dl__buf_take(&b);
}

/* ---- canonical text of a result form ---------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void canon(const scenario_t *s, const dl_edn_t *f, bool unordered, dl_buf_t *out);

static void canon_items(const scenario_t *s, const dl_edn_t *f, size_t step, bool sort,
                        dl_buf_t *out) {
    size_t n = f->n / step;
    char **parts = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        dl_buf_t b;
        dl__buf_init(&b);
        for (size_t k = 0; k < step; k++) {
            if (k)
                dl__buf_putc(&b, ' ');
            canon(s, f->items[i * step + k], false, &b);
        }
        parts[i] = dl__buf_take(&b);
    }
    if (sort)
        qsort(parts, n, sizeof *parts, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (i)
            dl__buf_putc(out, ' ');
        dl__buf_puts(out, parts[i] ? parts[i] : "?");
        dl_free(parts[i]);
    }
    free(parts);
}

/* #tempid "name" is the entity the named tempid resolved to (a ref), #eid "name" the same
 * id as a long (how Datomic users pass entity ids); #tx n the number of the n-th
 * transaction of :tx (1-based). */
static void canon(const scenario_t *s, const dl_edn_t *f, bool unordered, dl_buf_t *out) {
    switch (f->kind) {
        case DL_EDN_VECTOR:
        case DL_EDN_LIST: {
            bool list = f->kind == DL_EDN_LIST && !unordered;
            dl__buf_putc(out, unordered ? '<' : list ? '(' : '[');
            canon_items(s, f, 1, unordered, out);
            dl__buf_putc(out, unordered ? '>' : list ? ')' : ']');
            return;
        }
        case DL_EDN_SET:
            dl__buf_puts(out, unordered ? "<" : "#{");
            canon_items(s, f, 1, true, out);
            dl__buf_putc(out, unordered ? '>' : '}');
            return;
        case DL_EDN_MAP:
            dl__buf_putc(out, '{');
            canon_items(s, f, 2, true, out);
            dl__buf_putc(out, '}');
            return;
        case DL_EDN_TAGGED: {
            const dl_edn_t *a = f->items[0];
            bool eid = strcmp(f->sym->bytes, "eid") == 0; /* the entity id as a long */
            if ((eid || strcmp(f->sym->bytes, "tempid") == 0) && a->kind == DL_EDN_VALUE &&
                a->value.type == DL_T_STRING) {
                for (size_t i = 0; i < s->n_ids; i++)
                    if (strcmp(s->id_names[i], dl_value_str(a->value, NULL)) == 0) {
                        dl__edn_print_value(
                            eid ? dl_value_int(s->ids[i].id) : dl_value_ref(s->ids[i].id), out);
                        return;
                    }
                dl__buf_printf(out, "#unknown-tempid \"%s\"", dl_value_str(a->value, NULL));
                return;
            }
            if (strcmp(f->sym->bytes, "tx") == 0 && a->kind == DL_EDN_VALUE &&
                a->value.type == DL_T_INT && a->value.as.i >= 1 &&
                (size_t)a->value.as.i <= s->n_tx) {
                dl__edn_print_value(dl_value_int((int64_t)s->tx_of[a->value.as.i]), out);
                return;
            }
            dl__edn_print(f, out);
            return;
        }
        default:
            dl__edn_print(f, out);
            return;
    }
}

/* Replaces #tempid / #tx tags in input text (arguments) by plain values. */
static char *resolve_text(const scenario_t *s, const dl_edn_t *f) {
    dl_buf_t b;
    dl__buf_init(&b);
    canon(s, f, false, &b);
    /* canon sorts sets and maps, which is harmless for arguments. */
    return dl__buf_take(&b);
}

/* ---- running ------------------------------------------------------------------------------ */

static int transact(scenario_t *s, const dl_edn_t *txf, dl_error_t *err) {
    char *txt = form_text(txf);
    dl_tx_report_t rep;
    memset(&rep, 0, sizeof rep);
    int rc = dl_store_transact_edn(s->store, txt, strlen(txt), &rep, err);
    dl_free(txt);
    if (rc)
        return rc;
    for (size_t i = 0; i < rep.n_tempids && s->n_ids < 256; i++) {
        s->id_names[s->n_ids] = dl_strdup(rep.tempids[i].tempid);
        s->ids[s->n_ids] = rep.tempids[i];
        s->ids[s->n_ids].tempid = s->id_names[s->n_ids];
        s->n_ids++;
    }
    if (s->n_tx < 63)
        s->tx_of[++s->n_tx] = rep.tx;
    dl_tx_report_fini(&rep);
    return 0;
}

/* The source named by a {:as-of n :since n :history true} spec. new: dl_db_unref. */
static dl_db_t *source_db(const scenario_t *s, const dl_edn_t *spec) {
    dl_db_t *db = dl_store_db(s->store);
    const dl_edn_t *asof = map_get(spec, "as-of");
    const dl_edn_t *since = map_get(spec, "since");
    const dl_edn_t *hist = map_get(spec, "history");
    if (asof && asof->kind == DL_EDN_VALUE && asof->value.as.i >= 0 &&
        (size_t)asof->value.as.i <= s->n_tx) {
        dl_db_t *v = dl_db_as_of(db, asof->value.as.i ? s->tx_of[asof->value.as.i] : 0);
        dl_db_unref(db);
        db = v;
    }
    if (since && since->kind == DL_EDN_VALUE && (size_t)since->value.as.i <= s->n_tx) {
        dl_db_t *v = dl_db_since(db, since->value.as.i ? s->tx_of[since->value.as.i] : 0);
        dl_db_unref(db);
        db = v;
    }
    /* :as-of-point [n d1 d2 ...]: transaction n of :tx (0: none), then raw coordinates of
     * the declared time dimensions (docs/storage.md "Time dimensions"). */
    const dl_edn_t *point = map_get(spec, "as-of-point");
    if (point && point->kind == DL_EDN_VECTOR && point->n >= 1 && point->n <= 8) {
        uint64_t pt[8];
        bool ok = true;
        for (size_t i = 0; i < point->n; i++) {
            const dl_edn_t *x = point->items[i];
            ok &= x->kind == DL_EDN_VALUE && x->value.type == DL_T_INT && x->value.as.i >= 0;
            if (!ok)
                break;
            pt[i] = (uint64_t)x->value.as.i;
        }
        if (ok && pt[0] <= s->n_tx) {
            pt[0] = pt[0] ? s->tx_of[pt[0]] : 0;
            dl_db_t *v = dl_db_as_of_point(db, pt, point->n);
            dl_db_unref(db);
            db = v;
        }
    }
    if (hist && hist->kind == DL_EDN_VALUE && hist->value.type == DL_T_BOOL && hist->value.as.i) {
        dl_db_t *v = dl_db_history(db);
        dl_db_unref(db);
        db = v;
    }
    return db;
}

static size_t n_compiled, n_not_compiled;

/* The same case through the compiled dataflow engine (dl_query_run): the same result, or
 * the same error code, or DL_EUNSUPPORTED (counted, reported in the summary). */
static bool run_compiled(scenario_t *s, const dl_query_t *q, const dl_live_source_t *srcs,
                         size_t n_srcs, const char *atext, const dl_edn_t *expect,
                         const char *want_err, char *why, size_t cap) {
    dl_error_t err = {0};
    dl_query_result_t *res = NULL;
    int rc = dl_query_run_sources(q, srcs, n_srcs, atext, atext ? strlen(atext) : 0, &res, &err);
    bool pass = true;
    if (rc == DL_EUNSUPPORTED) {
        n_not_compiled++;
        return true;
    }
    n_compiled++;
    if (want_err) {
        if (rc == 0 || strcmp(dl_err_name(rc), want_err) != 0) {
            /* Errors raised while evaluating may depend on which rows reach a builtin,
             * which depends on the plan (as in Datomic, where clause order decides):
             * only a result where an error was expected is a failure. */
            pass = rc != 0;
            if (!pass)
                snprintf(why, cap, "compiled engine: expected error :%s, got a result", want_err);
        }
    } else if (rc) {
        pass = false;
        snprintf(why, cap, "compiled engine: unexpected error :%s: %s", dl_err_name(rc),
                 err.message);
    } else {
        char *got_text = dl_query_result_to_edn(res);
        dl_arena_t a;
        dl__arena_init(&a, 0);
        dl_edn_t *got = NULL;
        if (!got_text || dl__edn_read_one(got_text, strlen(got_text), &a, &got, NULL)) {
            pass = false;
            snprintf(why, cap, "compiled engine: result does not read back");
        } else {
            bool unordered =
                dl_query_find_kind(q) == DL_FIND_REL || dl_query_find_kind(q) == DL_FIND_COLL;
            dl_buf_t bw, bg;
            dl__buf_init(&bw);
            dl__buf_init(&bg);
            canon(s, expect, unordered, &bw);
            canon(s, got, unordered, &bg);
            pass = bw.data && bg.data && strcmp(bw.data, bg.data) == 0;
            if (!pass)
                snprintf(why, cap, "compiled engine:\n  expected: %s\n  actual:   %s",
                         bw.data ? bw.data : "", bg.data ? bg.data : "");
            dl__buf_fini(&bw);
            dl__buf_fini(&bg);
        }
        dl__arena_fini(&a);
        dl_free(got_text);
    }
    dl_query_result_free(res);
    return pass;
}

/* Runs one case; returns true when it passes, printing why otherwise. */
static bool run_case(scenario_t *s, const dl_edn_t *cs, size_t index) {
    const dl_edn_t *name = map_get(cs, "name");
    const char *cname = name && name->kind == DL_EDN_VALUE && name->value.type == DL_T_STRING
                            ? dl_value_str(name->value, NULL)
                            : "?";
    const dl_edn_t *query = map_get(cs, "query");
    const dl_edn_t *rules = map_get(cs, "rules");
    const dl_edn_t *args = map_get(cs, "args");
    const dl_edn_t *sources = map_get(cs, "sources");
    const dl_edn_t *expect = map_get(cs, "result");
    const dl_edn_t *expect_err = map_get(cs, "error");
    const dl_edn_t *expect_msg = map_get(cs, "message");
    const dl_edn_t *expect_at = map_get(cs, "at"); /* [line column] of the error */
    char *qtext = query ? resolve_text(s, query) : NULL;
    char *rtext = rules ? form_text(rules) : NULL;
    char *atext = args ? resolve_text(s, args) : NULL;
    bool pass = false;
    char why[4096];
    why[0] = 0;
    dl_error_t err = {0};
    dl_query_t *q = NULL;
    dl_query_result_t *res = NULL;
    dl_query_source_t srcv[8];
    dl_live_source_t lsrc[8]; /* the same sources for the compiled engine */
    dl_db_t *dbs[8] = {0};
    size_t n_src = 0;
    dl_db_t *cur = dl_store_db(s->store);
    int rc;
    if (!qtext || (!expect && !expect_err)) {
        snprintf(why, sizeof why, "case needs :query and :result or :error");
        goto report;
    }
    rc = dl_query_parse(qtext, strlen(qtext), rtext, rtext ? strlen(rtext) : 0, cur, &q, &err);
    if (!rc) {
        if (sources && sources->kind == DL_EDN_MAP) {
            for (size_t i = 0; i + 1 < sources->n && n_src < 8; i += 2) {
                const dl_edn_t *spec = sources->items[i + 1];
                dbs[n_src] = source_db(s, spec);
                srcv[n_src].name = sources->items[i]->sym ? sources->items[i]->sym->bytes : "$";
                srcv[n_src].db = dbs[n_src];
                /* history views are HISTORY; as-of, since and point views never change */
                lsrc[n_src].name = srcv[n_src].name;
                lsrc[n_src].db = dbs[n_src];
                lsrc[n_src].kind = map_get(spec, "history")              ? DL_LIVE_HISTORY
                                   : spec->kind == DL_EDN_MAP && spec->n ? DL_LIVE_FIXED
                                                                         : DL_LIVE_CURRENT;
                n_src++;
            }
        } else {
            dbs[0] = dl_store_db(s->store);
            srcv[0].name = "$";
            srcv[0].db = dbs[0];
            lsrc[0].name = "$";
            lsrc[0].db = dbs[0];
            lsrc[0].kind = DL_LIVE_CURRENT;
            n_src = 1;
        }
        rc = dl_query_eval_naive(q, srcv, n_src, atext, atext ? strlen(atext) : 0, &res, &err);
    }
    if (expect_err) {
        const char *want =
            expect_err->kind == DL_EDN_VALUE ? dl_value_str(expect_err->value, NULL) : "?";
        if (rc == 0) {
            char *got = dl_query_result_to_edn(res);
            snprintf(why, sizeof why, "expected error :%s, got result %s", want, got ? got : "?");
            dl_free(got);
        } else if (strcmp(dl_err_name(rc), want) != 0) {
            snprintf(why, sizeof why, "expected error :%s, got :%s: %s", want, dl_err_name(rc),
                     err.message);
        } else if (expect_at && expect_at->n == 2 &&
                   (err.line != expect_at->items[0]->value.as.i ||
                    err.column != expect_at->items[1]->value.as.i)) {
            snprintf(why, sizeof why, "expected the error at %lld:%lld, got %d:%d: %s",
                     (long long)expect_at->items[0]->value.as.i,
                     (long long)expect_at->items[1]->value.as.i, err.line, err.column, err.message);
        } else if (expect_msg && !strstr(err.message, dl_value_str(expect_msg->value, NULL))) {
            snprintf(why, sizeof why, "error message lacks \"%s\":\n%s",
                     dl_value_str(expect_msg->value, NULL), err.message);
        } else {
            pass = true;
        }
        if (pass && q)
            pass = run_compiled(s, q, lsrc, n_src, atext, NULL, want, why, sizeof why);
        goto report;
    }
    if (rc) {
        snprintf(why, sizeof why, "unexpected error :%s: %s", dl_err_name(rc), err.message);
        goto report;
    }
    {
        char *got_text = dl_query_result_to_edn(res);
        dl_arena_t a;
        dl__arena_init(&a, 0);
        dl_edn_t *got = NULL;
        dl_error_t e2 = {0};
        if (!got_text || dl__edn_read_one(got_text, strlen(got_text), &a, &got, &e2)) {
            snprintf(why, sizeof why, "result does not read back: %s", e2.message);
        } else {
            bool unordered =
                dl_query_find_kind(q) == DL_FIND_REL || dl_query_find_kind(q) == DL_FIND_COLL;
            dl_buf_t bw, bg;
            dl__buf_init(&bw);
            dl__buf_init(&bg);
            canon(s, expect, unordered, &bw);
            canon(s, got, unordered, &bg);
            pass = bw.data && bg.data && strcmp(bw.data, bg.data) == 0;
            if (!pass) {
                size_t k = (size_t)snprintf(why, sizeof why, "expected: %s\n  actual:   %s",
                                            bw.data ? bw.data : "", bg.data ? bg.data : "");
                /* The difference, item by item, for unordered results. */
                if (unordered && got &&
                    (expect->kind == DL_EDN_VECTOR || expect->kind == DL_EDN_SET)) {
                    for (int side = 0; side < 2; side++) {
                        const dl_edn_t *from = side ? got : expect, *other = side ? expect : got;
                        for (size_t i = 0; i < from->n && k < sizeof why - 200; i++) {
                            dl_buf_t x;
                            dl__buf_init(&x);
                            canon(s, from->items[i], false, &x);
                            bool found = false;
                            for (size_t j = 0; j < other->n && !found; j++) {
                                dl_buf_t y;
                                dl__buf_init(&y);
                                canon(s, other->items[j], false, &y);
                                found = x.data && y.data && strcmp(x.data, y.data) == 0;
                                dl__buf_fini(&y);
                            }
                            if (!found)
                                k += (size_t)snprintf(
                                    why + k, sizeof why - k, "\n  %s %s",
                                    side ? "+ extra:  " : "- missing:", x.data ? x.data : "");
                            dl__buf_fini(&x);
                        }
                    }
                }
            }
            dl__buf_fini(&bw);
            dl__buf_fini(&bg);
        }
        dl__arena_fini(&a);
        dl_free(got_text);
    }
    if (pass)
        pass = run_compiled(s, q, lsrc, n_src, atext, expect, NULL, why, sizeof why);
report:
    if (!pass)
        fprintf(stderr, "FAIL %s case #%zu \"%s\"\n  query: %s\n  %s\n", s->path, index, cname,
                qtext ? qtext : "?", why);
    dl_query_result_free(res);
    dl_query_free(q);
    for (size_t i = 0; i < n_src; i++)
        dl_db_unref(dbs[i]);
    dl_db_unref(cur);
    dl_free(qtext);
    dl_free(rtext);
    dl_free(atext);
    return pass;
}

static void run_file(const char *path, size_t *n_cases, size_t *n_failed) {
    scenario_t s;
    memset(&s, 0, sizeof s);
    s.path = path;
    char *text = slurp(path, &s.len);
    if (!text) {
        fprintf(stderr, "FAIL %s: cannot read\n", path);
        (*n_failed)++;
        return;
    }
    s.text = text;
    dl_arena_t a;
    dl__arena_init(&a, 0);
    dl_edn_t *root = NULL;
    dl_error_t err = {0};
    int rc = dl__edn_read_one(text, s.len, &a, &root, &err);
    if (rc || root->kind != DL_EDN_MAP) {
        fprintf(stderr, "FAIL %s: not an EDN map: %s\n", path, err.message);
        (*n_failed)++;
        goto out;
    }
    rc = dl_store_open_memory(&s.store, &err);
    if (rc) {
        fprintf(stderr, "FAIL %s: store: %s\n", path, err.message);
        (*n_failed)++;
        goto out;
    }
    const dl_edn_t *schema = map_get(root, "schema");
    if (schema && schema->n) {
        rc = transact(&s, schema, &err);
        s.n_tx = 0; /* the schema transaction is not numbered */
        if (rc) {
            fprintf(stderr, "FAIL %s: schema: %s\n", path, err.message);
            (*n_failed)++;
            goto out;
        }
    }
    const dl_edn_t *txs = map_get(root, "tx");
    for (size_t i = 0; txs && i < txs->n; i++) {
        rc = transact(&s, txs->items[i], &err);
        if (rc) {
            fprintf(stderr, "FAIL %s: transaction %zu: %s\n", path, i + 1, err.message);
            (*n_failed)++;
            goto out;
        }
    }
    const dl_edn_t *cases = map_get(root, "cases");
    for (size_t i = 0; cases && i < cases->n; i++) {
        (*n_cases)++;
        if (!run_case(&s, cases->items[i], i + 1))
            (*n_failed)++;
    }
out:
    dl_store_close(s.store);
    for (size_t i = 0; i < s.n_ids; i++)
        dl_free(s.id_names[i]);
    dl__arena_fini(&a);
    free(text);
}

static void run_area(const char *area, size_t min_cases) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", DL_CASES_DIR, area);
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".edn") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    size_t n_cases = 0, n_failed = 0;
    n_compiled = n_not_compiled = 0;
    for (size_t i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        run_file(path, &n_cases, &n_failed);
        free(names[i]);
    }
    fprintf(stderr,
            "[ cases    ] %s: %zu files, %zu cases, %zu failed; compiled engine: %zu run, %zu "
            "not compilable\n",
            area, n, n_cases, n_failed, n_compiled, n_not_compiled);
    if (n_failed)
        fail_msg("%zu of %zu %s cases failed (see above)", n_failed, n_cases, area);
    if (n_cases < min_cases)
        fail_msg("only %zu %s cases (expected at least %zu)", n_cases, area, min_cases);
}

static void test_cases_patterns(void **state) {
    (void)state;
    run_area("patterns", 1);
}
static void test_cases_predicates(void **state) {
    (void)state;
    run_area("predicates", 1);
}
static void test_cases_functions(void **state) {
    (void)state;
    run_area("functions", 1);
}
static void test_cases_not_or(void **state) {
    (void)state;
    run_area("not-or", 1);
}
static void test_cases_rules_recursion(void **state) {
    (void)state;
    run_area("rules-recursion", 1);
}
static void test_cases_aggregates(void **state) {
    (void)state;
    run_area("aggregates", 1);
}
static void test_cases_find_specs(void **state) {
    (void)state;
    run_area("find-specs", 1);
}
static void test_cases_inputs(void **state) {
    (void)state;
    run_area("inputs", 1);
}
static void test_cases_asof_history(void **state) {
    (void)state;
    run_area("asof-history", 1);
}
static void test_cases_errors(void **state) {
    (void)state;
    run_area("errors", 1);
}

DL_TEST_GROUP(cases, cmocka_unit_test(test_cases_patterns), cmocka_unit_test(test_cases_predicates),
              cmocka_unit_test(test_cases_functions), cmocka_unit_test(test_cases_not_or),
              cmocka_unit_test(test_cases_rules_recursion), cmocka_unit_test(test_cases_aggregates),
              cmocka_unit_test(test_cases_find_specs), cmocka_unit_test(test_cases_inputs),
              cmocka_unit_test(test_cases_asof_history), cmocka_unit_test(test_cases_errors));
