/*
 * store.h: the EAVT store: schema as data, Datomic-style transactions, four indices over
 * current state and full history, immutable snapshots, multi-dimensional time, and the
 * change stream that feeds the dataflow side.
 *
 * The semantics are those of docs/storage.md (data model, transactions, the JSON form of
 * transaction data, time dimensions, snapshots) and ../shared/DESIGN-NOTES.md §1 and §3.
 * This header does not expose the dataflow: the store only emits, for each committed
 * transaction in commit order, its datom changes (e, a, v, time vector, +1/-1).
 *
 * Threads: one writer at a time (dl_store_transact and dl_store_advance serialize on the
 * store's writer lock); any number of readers, each holding a dl_db_t snapshot, which is
 * immutable and never blocks the writer (taking or releasing a snapshot is a few
 * instructions under a short mutex; reading takes no lock at all).
 */
#ifndef DELTALOG_STORE_H
#define DELTALOG_STORE_H

#include <deltalog/common.h>
#include <deltalog/error.h>
#include <deltalog/value.h>
#include <stdbool.h>

DL_BEGIN_DECLS

typedef struct dl_store dl_store_t; /* the database: writer state, log, listeners */
typedef struct dl_db dl_db_t;       /* an immutable snapshot, possibly filtered in time */
typedef struct dl_iter dl_iter_t;   /* a cursor over datoms of one index of one dl_db_t */

/* ---- opening ------------------------------------------------------------------------------ */

/* Sync modes (the same values as the log's DL_SYNC_* modes). */
enum { DL_STORE_SYNC_EVERY = 0, DL_STORE_SYNC_BATCHED = 1, DL_STORE_SYNC_NONE = 2 };

/* Caller-allocated; zero means "default" for every field. */
typedef struct dl_store_options {
    int sync_mode;             /* DL_STORE_SYNC_EVERY (default), _BATCHED, _NONE */
    int batch_ms;              /* DL_STORE_SYNC_BATCHED: bound on the wait for the fsync, ms */
    size_t segment_bytes;      /* log segment size; 0: the log's default */
    int checkpoints_kept;      /* checkpoints kept on disk; 0: 1 (the previous checkpoint is
                                * removed once the new one is written and verified); 2 keeps
                                * one fallback (and the log after it); segments older than the
                                * oldest kept one are removed */
    uint64_t checkpoint_every; /* write a checkpoint in the background after this many
                                * transactions; 0: only on dl_store_checkpoint */
    int keep_log;              /* 1: keep the log segments until checkpoints_kept checkpoints
                                * exist (the first checkpoint then has the whole log as its
                                * fallback); 0 (default): segments covered by the oldest kept
                                * checkpoint are removed once it is verified */
} dl_store_options_t;

/* new: an in-memory store (no files). Free with dl_store_close. */
DL_API int dl_store_open_memory(dl_store_t **out, dl_error_t *err) DL_WUR;
/* new: a durable store in directory `dir` (created if missing), recovered from its
 * checkpoint and log (docs/storage.md "Durability glue"). A transaction is acknowledged
 * (its transact call returns) only once its record is durable per the sync mode.
 * DL_ELOCKED ("locked by pid N") when another process has it open; DL_ECORRUPT naming
 * file and offset on a bad record; DL_EVERSION for an unknown format. opts may be NULL. */
DL_API int dl_store_open(const char *dir, const dl_store_options_t *opts, dl_store_t **out,
                         dl_error_t *err) DL_WUR;
/* Waits for in-flight transactions, closes the log and frees the store. Snapshots still
 * held stay valid until dl_db_unref (they keep what they need alive). NULL-safe. */
DL_API void dl_store_close(dl_store_t *s);
/* Writes a checkpoint now (durable stores; DL_EUNSUPPORTED in memory). */
DL_API int dl_store_checkpoint(dl_store_t *s, dl_error_t *err) DL_WUR;

/* Counters of a store (durable fields are 0 in memory). */
typedef struct dl_store_stats {
    uint64_t last_tx;               /* the last committed transaction */
    int64_t datoms;                 /* current datoms (all attributes, built-ins included) */
    int64_t history_datoms;         /* entries of the past (retracted assertions, retractions) */
    uint64_t log_records;           /* records in the log's segments */
    uint64_t log_raw_bytes;         /* their payload bytes before compression */
    uint64_t log_stored_bytes;      /* the same after compression, with framing */
    double compression_ratio;       /* raw / stored (0 when empty) */
    uint64_t checkpoint_bytes;      /* bytes of checkpoint files */
    uint64_t bytes_on_disk;         /* segments + checkpoints */
    uint64_t checkpoint_tx;         /* covers_tx of the newest checkpoint */
    uint64_t fsyncs, group_commits; /* fsyncs issued; syncs satisfied by another's fsync */
} dl_store_stats_t;
DL_API void dl_store_stats(dl_store_t *s, dl_store_stats_t *out);

/* fsck of a closed durable store: verifies every checksum of the log and the checkpoints,
 * rebuilds the indices from the log alone and compares them with the checkpoint (when the
 * log still reaches back to transaction 1), recovers checkpoint + tail and checks every
 * index's structure. Returns 0 when clean, DL_ECORRUPT with the first problem otherwise
 * (and DL_ELOCKED while the store is open elsewhere). out may be NULL. */
typedef struct dl_store_fsck {
    int problems;
    char first_problem[512];
    bool compared; /* a rebuild was compared with the checkpoint's indices (see rebuilt_from) */
    char rebuilt_from[32]; /* "log": the log alone reaches back to transaction 1;
                            * "checkpoint-records": the checkpoint's own transaction
                            * records, re-applied datom by datom; "" when not compared */
    uint64_t log_first_tx, log_last_tx, checkpoint_tx, last_tx;
    int64_t datoms, history_datoms;
    double compression_ratio;
} dl_store_fsck_t;
DL_API int dl_store_fsck(const char *dir, dl_store_fsck_t *out, dl_error_t *err) DL_WUR;

/* ---- transactions ------------------------------------------------------------------------- */

/* The operations of transaction data as C structs (the EDN and JSON forms are parsed into
 * these). Entity positions (e, and v of a ref attribute, and old for cas) are values:
 *   REF or positive INT:  an entity id;
 *   negative INT, STRING: a tempid (the string "datomic.tx" names the transaction);
 *   KEYWORD:              the entity whose :db/ident is that keyword;
 * and a lookup ref [attr value] when the matching *_lookup field is a non-nil KEYWORD
 * (the attribute) — then e (or v, old) is the looked-up value.
 * Attributes (a) are KEYWORD idents ("order/id", no colon) or REF/INT attribute ids. */
typedef enum dl_op_kind {
    DL_OP_ADD = 0,            /* [:db/add e a v] */
    DL_OP_RETRACT = 1,        /* [:db/retract e a v] */
    DL_OP_RETRACT_ATTR = 2,   /* [:db/retract e a]: every value of a on e */
    DL_OP_RETRACT_ENTITY = 3, /* [:db/retractEntity e]: cascades to components */
    DL_OP_CAS = 4             /* [:db/cas e a old new]; old nil: "a has no value on e" */
} dl_op_kind_t;

typedef struct dl_tx_op {
    dl_op_kind_t op;
    dl_value_t e, e_lookup;     /* e_lookup: nil, or the attribute of a lookup ref */
    dl_value_t a;               /* unused for RETRACT_ENTITY */
    dl_value_t v, v_lookup;     /* ADD/RETRACT/CAS(new) */
    dl_value_t old, old_lookup; /* CAS only */
} dl_tx_op_t;

/* A transaction may give a coordinate for each declared time dimension (docs/storage.md
 * "Time dimensions"); dimensions it does not mention use their current frontier. In EDN
 * and JSON the same is written as assertions on the transaction's tempid "datomic.tx",
 * e.g. [:db/add "datomic.tx" :time/shipped 17] or {:db/id "datomic.tx" :time/shipped 17}. */
typedef struct dl_tx_coord {
    dl_value_t dim; /* KEYWORD ident of the dimension, or its entity id */
    uint64_t t;     /* must be >= the dimension's frontier (DL_ETIME otherwise) */
} dl_tx_coord_t;

/* One datom. In history reads `added` tells assertion from retraction. */
typedef struct dl_datom {
    int64_t e;
    int64_t a;
    dl_value_t v;
    int64_t tx;
    bool added;
} dl_datom_t;

/* A tempid and the entity id it resolved to. */
typedef struct dl_tempid {
    const char *tempid; /* the string tempid, or the decimal text of a negative int */
    int64_t id;
} dl_tempid_t;

/* The report of a committed transaction. Everything is owned by the report. */
typedef struct dl_tx_report {
    uint64_t tx;          /* the transaction number: coordinate 0 of time */
    uint64_t *time;       /* n_time coordinates: [tx, dim1, dim2, ...] */
    size_t n_time;        /* 1 + number of declared dimensions at commit */
    dl_tempid_t *tempids; /* n_tempids entries, in order of first appearance */
    size_t n_tempids;
    dl_datom_t *datoms; /* the changes: added ones (added=true) and retracted ones */
    size_t n_datoms;
} dl_tx_report_t;

/* Frees what a report owns (not the struct itself). NULL-safe. */
DL_API void dl_tx_report_fini(dl_tx_report_t *r);

/* Transacts EDN transaction data: a vector of list forms and map forms, as in Datomic.
 * All or nothing: on error nothing changes, err names the offending form, its index in
 * the data and its line/column. Codes: DL_EPARSE (malformed text or form),
 * DL_EUNKNOWN_ATTR, DL_ETYPE (value of the wrong type), DL_EUNIQUE, DL_ECAS,
 * DL_ECONFLICT (contradiction within the transaction), DL_ESCHEMA (invalid schema change),
 * DL_ENOTFOUND (dangling lookup ref or ident), DL_ETIME (coordinate behind its frontier),
 * DL_EIO (the log failed: the store is then closed for writing). report may be NULL;
 * otherwise it is filled on success (free with dl_tx_report_fini). */
DL_API int dl_store_transact_edn(dl_store_t *s, const char *text, size_t len,
                                 dl_tx_report_t *report, dl_error_t *err) DL_WUR;
/* The same for the JSON form of transaction data (docs/storage.md "JSON transaction
 * data"): an array whose items are ["add", e, a, v], ["retract", e, a, v],
 * ["retract", e, a], ["retractEntity", e], ["cas", e, a, old, new] or map objects
 * {"db/id": e, "attr": value, ...}; values use the value JSON form (docs/values.md). */
DL_API int dl_store_transact_json(dl_store_t *s, const char *text, size_t len,
                                  dl_tx_report_t *report, dl_error_t *err) DL_WUR;
/* The same for JSON transaction data already decoded by jansson (a json_t array, only
 * read): for a server that has decoded a request, this skips printing the data back to
 * text and parsing it again. Error messages name the item's index as for the text form. */
struct json_t;
DL_API int dl_store_transact_json_value(dl_store_t *s, const struct json_t *data,
                                        dl_tx_report_t *report, dl_error_t *err) DL_WUR;
/* The same for a C array of operations and optional coordinates (coords may be NULL). */
DL_API int dl_store_transact(dl_store_t *s, const dl_tx_op_t *ops, size_t n_ops,
                             const dl_tx_coord_t *coords, size_t n_coords, dl_tx_report_t *report,
                             dl_error_t *err) DL_WUR;

/* Moves the frontier of time dimension `dim` (KEYWORD ident or entity id) to t. Going
 * backward is DL_ETIME; t equal to the frontier is a no-op. An advance is logged and
 * consumes a transaction number (a transaction with no datoms), so listeners see it in
 * commit order; out_tx (may be NULL) receives that number (0 for a no-op). */
DL_API int dl_store_advance(dl_store_t *s, dl_value_t dim, uint64_t t, uint64_t *out_tx,
                            dl_error_t *err) DL_WUR;

/* Committing without waiting for durability (group commit from one thread). The _begin
 * calls plan, apply and log the transaction exactly like the calls above and return its
 * number in *out_tx (and fill report), but do not wait for the log sync: the transaction
 * is committed for the writer (later transactions resolve against it) yet NOT
 * acknowledged: snapshots do not show it and listeners are not called until it is
 * durable. A rejected transaction changes nothing and does not affect the others begun
 * before or after it. dl_store_wait_durable(s, tx) returns once tx is durable and
 * published (listeners called, in commit order, for it and every transaction before
 * it): one log sync covers every transaction begun before it, so a caller can begin a
 * batch and wait once, for the last one. It returns DL_EIO when the log failed before tx
 * became durable: every transaction not yet durable then fails (waiting for any of them
 * returns DL_EIO), the store refuses further writes, and such transactions are in doubt
 * (present or not after a reopen). Waiting for a transaction already published returns
 * its outcome at once; DL_EINVAL for a number that was never committed. dl_store_close
 * makes begun transactions durable before closing. */
DL_API int dl_store_transact_edn_begin(dl_store_t *s, const char *text, size_t len,
                                       dl_tx_report_t *report, uint64_t *out_tx,
                                       dl_error_t *err) DL_WUR;
DL_API int dl_store_transact_json_begin(dl_store_t *s, const char *text, size_t len,
                                        dl_tx_report_t *report, uint64_t *out_tx,
                                        dl_error_t *err) DL_WUR;
DL_API int dl_store_transact_begin(dl_store_t *s, const dl_tx_op_t *ops, size_t n_ops,
                                   const dl_tx_coord_t *coords, size_t n_coords,
                                   dl_tx_report_t *report, uint64_t *out_tx,
                                   dl_error_t *err) DL_WUR;
DL_API int dl_store_transact_json_value_begin(dl_store_t *s, const struct json_t *data,
                                              dl_tx_report_t *report, uint64_t *out_tx,
                                              dl_error_t *err) DL_WUR;
/* dl_store_advance without waiting; *out_tx is 0 for a no-op (nothing to wait for). */
DL_API int dl_store_advance_begin(dl_store_t *s, dl_value_t dim, uint64_t t, uint64_t *out_tx,
                                  dl_error_t *err) DL_WUR;
DL_API int dl_store_wait_durable(dl_store_t *s, uint64_t tx, dl_error_t *err) DL_WUR;

/* ---- the change stream -------------------------------------------------------------------- */

typedef struct dl_change {
    int64_t e;
    int64_t a;
    dl_value_t v;
    int64_t diff; /* +1 assertion, -1 retraction */
} dl_change_t;

/* One committed transaction as the dataflow side sees it. Borrowed for the call only. */
typedef struct dl_commit {
    uint64_t tx;
    const uint64_t *time; /* n_time coordinates, [tx, dim1, ...] */
    size_t n_time;
    const uint64_t *frontier; /* n_time coordinates: every later commit's time is >= this;
                               * NULL in dl_db_tx_range */
    const dl_change_t *changes;
    size_t n_changes; /* 0 for an advance */
} dl_commit_t;

typedef void (*dl_store_listener_fn)(void *ctx, const dl_commit_t *commit);

/* Registers fn, called for every transaction committed after registration, in commit
 * order, once the transaction is durable and visible to new snapshots, on the committing
 * thread (so it must not transact). Returns a listener id > 0 in *out_id. */
DL_API int dl_store_listen(dl_store_t *s, dl_store_listener_fn fn, void *ctx, int *out_id,
                           dl_error_t *err) DL_WUR;
DL_API void dl_store_unlisten(dl_store_t *s, int id);

/* ---- snapshots and time ------------------------------------------------------------------- */

/* new: the current database (the latest committed transaction). Release with dl_db_unref. */
DL_API dl_db_t *dl_store_db(dl_store_t *s);
DL_API void dl_db_unref(dl_db_t *db);
/* The number of the last transaction this snapshot contains (0: empty database). */
DL_API uint64_t dl_db_basis_tx(const dl_db_t *db);
/* The time vector of transaction tx (tx <= basis); returns its length (0 if tx unknown).
 * Copies at most n coordinates into out. */
DL_API size_t dl_db_tx_time(const dl_db_t *db, uint64_t tx, uint64_t *out, size_t n);
/* The frontier of each dimension at this snapshot, coordinate 0 being basis_tx + 1. */
DL_API size_t dl_db_frontier(const dl_db_t *db, uint64_t *out, size_t n);

/* Filtered views (new; dl_db_unref). The filters compose the way Datomic's do: history
 * shows assertions and retractions; as-of keeps changes whose time is <= the point; since
 * keeps changes whose transaction number is > t. A point is a time vector compared in the
 * product order; missing coordinates are unconstrained. */
DL_API dl_db_t *dl_db_as_of(const dl_db_t *db, uint64_t tx);
DL_API dl_db_t *dl_db_as_of_point(const dl_db_t *db, const uint64_t *point, size_t n);
DL_API dl_db_t *dl_db_since(const dl_db_t *db, uint64_t tx);
DL_API dl_db_t *dl_db_history(const dl_db_t *db);

/* ---- reads -------------------------------------------------------------------------------- */

typedef enum dl_index {
    DL_INDEX_EAVT = 0,
    DL_INDEX_AEVT = 1,
    DL_INDEX_AVET = 2, /* attributes with :db/index true or :db/unique */
    DL_INDEX_VAET = 3  /* attributes of :db.type/ref */
} dl_index_t;

/* new: a cursor over the datoms of index idx whose leading n_components components
 * (in the index's order; 0..4, the 4th being tx) equal those of `prefix`, starting at the
 * first datom >= `start` (may be NULL: the start of the prefix). Datoms come in index
 * order; in a history view every assertion and retraction, ordered by tx within one
 * (e,a,v). AVET on an unindexed attribute or VAET on a non-ref attribute yields nothing.
 * The cursor keeps db alive. */
DL_API int dl_db_datoms(const dl_db_t *db, dl_index_t idx, const dl_datom_t *prefix,
                        int n_components, const dl_datom_t *start, dl_iter_t **out,
                        dl_error_t *err) DL_WUR;
/* Restarts cursor it on the datoms whose leading n_components (1..3) components equal
 * those of prefix, as dl_db_datoms(db, idx, prefix, n_components, NULL) would on the
 * cursor's view and index. It moves the existing cursor: cheap when the new prefix lies a
 * little ahead of its position (probing keys in increasing order costs about a merge
 * join), a descent from the root otherwise. DL_EINVAL for a bad argument (it unchanged). */
DL_API int dl_iter_seek(dl_iter_t *it, const dl_datom_t *prefix, int n_components) DL_WUR;
/* Next datom into *out; false at the end. */
DL_API bool dl_iter_next(dl_iter_t *it, dl_datom_t *out);
DL_API void dl_iter_free(dl_iter_t *it);

/* new: the datoms of entity e in this view (EAVT order) as an array freed with dl_free. */
DL_API int dl_db_entity(const dl_db_t *db, int64_t e, dl_datom_t **out, size_t *out_n,
                        dl_error_t *err) DL_WUR;
/* The entity with :db/ident ident, or a unique-attribute lookup [a v]; DL_ENOTFOUND. */
DL_API int dl_db_ident(const dl_db_t *db, const char *ident, int64_t *out_id,
                       dl_error_t *err) DL_WUR;
DL_API int dl_db_lookup(const dl_db_t *db, int64_t a, dl_value_t v, int64_t *out_id,
                        dl_error_t *err) DL_WUR;

/* The transaction log: calls fn for each transaction with from <= tx < to (to 0: no upper
 * bound) up to this snapshot's basis, in order, with its changes. A nonzero return from fn
 * stops the walk and is returned. */
DL_API int dl_db_tx_range(const dl_db_t *db, uint64_t from, uint64_t to,
                          int (*fn)(void *ctx, const dl_commit_t *c), void *ctx);

/* ---- schema and statistics ---------------------------------------------------------------- */

typedef struct dl_attr_info {
    int64_t id;
    const char *ident;   /* "order/id" (immortal, interned) */
    dl_type_t type;      /* value type (DL_T_REF for :db.type/ref) */
    bool many;           /* :db.cardinality/many */
    int unique;          /* 0, DL_UNIQUE_IDENTITY or DL_UNIQUE_VALUE */
    bool indexed;        /* :db/index true, or unique (AVET is kept) */
    bool component;      /* :db/isComponent */
    bool no_history;     /* :db/noHistory */
    bool time_dimension; /* :db/timeDimension true: a declared time dimension */
    int dim;             /* the dimension's coordinate index (1..), 0 when not a dimension */
} dl_attr_info_t;

enum { DL_UNIQUE_IDENTITY = 1, DL_UNIQUE_VALUE = 2 };

/* Schema lookup in a snapshot. DL_EUNKNOWN_ATTR when there is no such attribute (an ident
 * of a time dimension is found too, with time_dimension set). */
DL_API int dl_db_attr(const dl_db_t *db, const char *ident, dl_attr_info_t *out,
                      dl_error_t *err) DL_WUR;
DL_API int dl_db_attr_by_id(const dl_db_t *db, int64_t id, dl_attr_info_t *out,
                            dl_error_t *err) DL_WUR;
/* Every installed attribute and dimension (including the built-in :db/ ones): copies up to
 * n into out, returns the count. */
DL_API size_t dl_db_attrs(const dl_db_t *db, dl_attr_info_t *out, size_t n);

/* Statistics of the current state of attribute a, for a query planner. */
typedef struct dl_attr_stats {
    int64_t datoms;            /* current datoms of a */
    int64_t distinct_entities; /* entities with at least one value of a */
    int64_t distinct_values;   /* distinct values of a */
} dl_attr_stats_t;
DL_API int dl_db_attr_stats(const dl_db_t *db, int64_t a, dl_attr_stats_t *out,
                            dl_error_t *err) DL_WUR;

DL_END_DECLS
#endif
