/* db.h - MariaDB/MySQL connection, prepared statements, error classes */
#ifndef ORDERQ_DB_H
#define ORDERQ_DB_H

#include <mysql.h>
#include <stdint.h>
#include <string.h>

#include "orderq/common.h"

struct oq_db; /* opaque: one connection */

/* What a failure means for the caller. */
enum oq_db_class {
    OQ_DB_OTHER = 0,
    OQ_DB_DUPLICATE,   /* unique key: the effect is already claimed */
    OQ_DB_RETRY,       /* deadlock or lock wait timeout: redo the transaction */
    OQ_DB_GONE,        /* connection lost or refused: reconnect, then redo */
    OQ_DB_UNAVAILABLE, /* the server refuses work for now (read_only in a failover, Galera
                        * not ready, disk full, query killed): wait, reconnect, redo; no
                        * message is to blame, so none spends an attempt */
};

/* A failure no message is to blame for: the caller waits, reopens the
 * connection and tries again, and counts it against no delivery. */
static inline int oq_db_class_is_outage(enum oq_db_class c)
{
    return c == OQ_DB_GONE || c == OQ_DB_UNAVAILABLE;
}

enum oq_db_param_type { OQ_PARAM_STR, OQ_PARAM_INT, OQ_PARAM_NULL, OQ_PARAM_BLOB };

/* One bound parameter; strings are not copied. */
struct oq_db_param {
    enum oq_db_param_type type;
    const char *str;
    size_t len; /* of str */
    long long num;
};

#define OQ_STR(s)     ((struct oq_db_param){OQ_PARAM_STR, (s), strlen(s), 0})
#define OQ_INT(n)     ((struct oq_db_param){OQ_PARAM_INT, NULL, 0, (long long)(n)})
#define OQ_BLOB(p, n) ((struct oq_db_param){OQ_PARAM_BLOB, (const char *)(p), (n), 0})
#define OQ_NULL       ((struct oq_db_param){OQ_PARAM_NULL, NULL, 0, 0})

#define OQ_DB_MULTI_STATEMENTS 0x1u /* for migration files only */

/* Connect to the server a mysql:// URL names. Returns 0, OQ_ECONFIG (bad
 * URL) or OQ_EDB with the server's message in err. */
OQ_WUR int oq_db_open(const char *url, int64_t timeout_ms, unsigned flags, struct oq_db **out,
                      char *err, size_t errlen);
void oq_db_close(struct oq_db *db);

/* oq_db_open for a thread that keeps one connection and opens it again
 * when it is lost (every thread of orderq consume and relay): *tries
 * counts its attempts, and every attempt after the first counts once in
 * orderq_reconnects_total{peer="database"}. Returns as oq_db_open. */
OQ_WUR int oq_db_reopen(const char *url, int64_t timeout_ms, unsigned *tries, struct oq_db **out,
                        char *err, size_t errlen);

/* Run a statement that has no data in it (DDL, SET, COMMIT).
 * Returns 0 or OQ_EDB; oq_db_error() says why. */
OQ_WUR int oq_db_exec(struct oq_db *db, const char *sql);

/* Roll the open transaction back. A failure is ignored on purpose: the
 * caller already holds the error that matters, and a connection that
 * cannot roll back is one the server rolls back when it drops it. */
void oq_db_rollback(struct oq_db *db);

/* Run every statement of a script (needs OQ_DB_MULTI_STATEMENTS), reading
 * and dropping any result sets. Returns 0 or OQ_EDB. */
OQ_WUR int oq_db_exec_script(struct oq_db *db, const char *sql, size_t len);

/* Statements are prepared once per connection and kept by their SQL text
 * (a few, the least recently used replaced), so a statement run again,
 * such as a full batch's multi-row INSERT, is execute-only. A statement
 * that fails is closed and prepared anew next time; oq_db_close closes
 * them all, so a reopened connection starts with none. */

/* How many statements db keeps prepared (for tests). */
size_t oq_db_cached_statements(const struct oq_db *db);

/* A multi-row statement's text: head, n copies of row with sep between
 * them, tail. Returns a string the caller frees, or NULL without memory. */
char *oq_db_repeat_sql(const char *head, const char *row, const char *sep, size_t n,
                       const char *tail);

/* Prepare (or take the kept statement), bind, execute. *affected (may be NULL) gets the affected
 * rows. Returns 0 or OQ_EDB. */
OQ_WUR int oq_db_execute(struct oq_db *db, const char *sql, const struct oq_db_param *params,
                         size_t n, uint64_t *affected);

/* A statement returning one integer in one row (SELECT GET_LOCK(...)).
 * *is_null is set for SQL NULL. Returns 0, OQ_ENOTFOUND (no row) or OQ_EDB. */
OQ_WUR int oq_db_query_int(struct oq_db *db, const char *sql, const struct oq_db_param *params,
                           size_t n, long long *value, int *is_null);

/* Called for each row of oq_db_query_rows: the columns as NUL-terminated
 * text (NULL for SQL NULL), valid during the call. Non-zero stops. */
typedef int (*oq_db_row_fn)(void *ctx, const char *const *values, unsigned n);

/* Run a prepared statement that returns rows (SELECT, INSERT ... RETURNING)
 * and hand each to on_row. Returns 0, OQ_EINTR (on_row stopped it) or
 * OQ_EDB. */
OQ_WUR int oq_db_query_rows(struct oq_db *db, const char *sql, const struct oq_db_param *params,
                            size_t n, oq_db_row_fn on_row, void *ctx);

/* The last call's failure: its text, its number (0 when it succeeded)
 * and what it means. Every call clears them when it starts. A connection
 * found dead (OQ_DB_GONE) stays dead: each later call fails at once with
 * OQ_DB_GONE, so the caller closes it and opens a new one. */
const char *oq_db_error(const struct oq_db *db);
unsigned oq_db_errno(const struct oq_db *db);
enum oq_db_class oq_db_last_class(const struct oq_db *db);
enum oq_db_class oq_db_classify(unsigned mysql_errno);

/* Whether the server is a Galera node (wsrep_on): row locks taken there
 * hold on that node only, so a caller that relies on them across nodes
 * must commit a claim instead. */
int oq_db_is_galera(const struct oq_db *db);

/* ---- INSERT IGNORE: duplicates are an answer, every other warning an error ----
 *
 * IGNORE turns a duplicate key into a warning (1062), which is what a claim
 * wants; but it also turns a value too long for its column, or bytes that
 * are not utf8mb4, into a warning and writes a cut or '?'-filled row. */

/* MySQL's limit of placeholders in one prepared statement: multi-row
 * statements are split to stay under it. */
#define OQ_DB_MAX_PLACEHOLDERS 65535

/* Call right after an INSERT IGNORE of rows rows, of which inserted were
 * written (affected rows, or the rows RETURNING gave), on the same
 * connection, into a table without foreign keys or partitions (there
 * IGNORE leaves a row out only for a duplicate key, with one warning).
 * As many warnings as rows left out are those duplicates. More: it reads
 * them (SHOW WARNINGS), and any other than a duplicate key (1062), or
 * more than the list shows, fails it. Returns 0, or OQ_EDB with the first such
 * warning's code as oq_db_errno() (class OQ_DB_OTHER) and its text in
 * oq_db_error(). The caller rolls back its transaction. */
OQ_WUR int oq_db_check_ignored(struct oq_db *db, uint64_t rows, uint64_t inserted);

/* oq_db_execute for an INSERT IGNORE of rows rows, then
 * oq_db_check_ignored. *inserted (may be NULL) gets the rows written.
 * Returns 0 or OQ_EDB. */
OQ_WUR int oq_db_execute_ignore(struct oq_db *db, const char *sql, const struct oq_db_param *params,
                                size_t n, uint64_t rows, uint64_t *inserted);

#endif
