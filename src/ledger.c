/* ledger.c - the dedup ledger (event_ledger): claim effects, exactly once */
#include "orderq/ledger.h"

#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/db.h"
#include "orderq/event.h" /* oq_utf8_valid */

#define CLAIM_COLUMNS 7
/* Rows per claim statement: MySQL takes at most 65,535 placeholders in one
 * (a batch_size of 10,000 needs 70,000). A batch of the usual size still
 * claims in one round trip. */
#define CLAIM_CHUNK (OQ_DB_MAX_PLACEHOLDERS / CLAIM_COLUMNS)

struct returned {
    struct oq_claim *claims; /* the chunk's */
    size_t n;
    size_t next;     /* RETURNING gives rows in the order inserted: look here first */
    size_t inserted; /* rows returned */
};

static int claim_is(const struct oq_claim *c, const char *const *v)
{
    return !c->claimed && strcmp(c->handler, v[0]) == 0 && strcmp(c->effect_key, v[1]) == 0;
}

/* Mark the first unclaimed claim with this (handler, key). */
static int on_returned(void *ctx, const char *const *v, unsigned cols)
{
    struct returned *r = ctx;
    if (cols < 2 || v[0] == NULL || v[1] == NULL)
        return 0;
    r->inserted++;
    for (size_t k = 0; k < r->n; k++) {
        size_t i = (r->next + k) % r->n;
        if (claim_is(&r->claims[i], v)) {
            r->claims[i].claimed = 1;
            r->next = i + 1;
            break;
        }
    }
    return 0;
}

/* text as a parameter, cut before a broken character at its end (a result
 * snprintf cut short): IGNORE would store it with a '?' and a warning. */
static struct oq_db_param text_param(const char *text)
{
    struct oq_db_param p = OQ_STR(text);
    p.len = oq_utf8_prefix(text, p.len);
    return p;
}

static int owner_fits(const char *owner, char *err, size_t errlen)
{
    size_t n = strlen(owner);
    if (n > OQ_LEDGER_OWNER_MAX) {
        snprintf(err, errlen,
                 "the ledger owner is %zu bytes; the owner column holds %d (instance_id too "
                 "long?)",
                 n, OQ_LEDGER_OWNER_MAX);
        return OQ_EINVAL;
    }
    if (!oq_utf8_valid(owner, n)) {
        snprintf(err, errlen, "the ledger owner is not valid UTF-8 (instance_id?)");
        return OQ_EINVAL;
    }
    return 0;
}

/* One INSERT IGNORE ... RETURNING for claims[0..n), n <= CLAIM_CHUNK. */
static int claim_chunk(struct oq_db *db, const char *owner, struct oq_claim *claims, size_t n,
                       char *err, size_t errlen)
{
    static const char head[] =
        "INSERT IGNORE INTO event_ledger (handler, effect_key,"
        " event_identifier, event_code, owner, result, attempts, state, executed_at)"
        " VALUES ";
    static const char row[] = "(?, ?, ?, ?, ?, ?, ?, 'done', NOW(6))";
    static const char tail[] = " RETURNING handler, effect_key";
    char *sql = oq_db_repeat_sql(head, row, ",", n, tail);
    struct oq_db_param *p = calloc(n * CLAIM_COLUMNS + 1, sizeof(*p));
    struct returned r = {claims, n, 0, 0};
    int rc = OQ_ENOMEM;

    if (sql == NULL || p == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    struct oq_db_param own = OQ_STR(owner);
    for (size_t i = 0; i < n; i++) {
        struct oq_claim *c = &claims[i];
        c->claimed = 0;
        p[i * CLAIM_COLUMNS + 0] = OQ_STR(c->handler);
        p[i * CLAIM_COLUMNS + 1] = OQ_STR(c->effect_key);
        p[i * CLAIM_COLUMNS + 2] = OQ_STR(c->event_identifier);
        p[i * CLAIM_COLUMNS + 3] = OQ_STR(c->event_code);
        p[i * CLAIM_COLUMNS + 4] = own;
        p[i * CLAIM_COLUMNS + 5] = text_param(c->result ? c->result : "");
        p[i * CLAIM_COLUMNS + 6] = OQ_INT(c->attempts > 0 ? c->attempts : 1);
    }
    rc = oq_db_query_rows(db, sql, p, n * CLAIM_COLUMNS, on_returned, &r);
    if (rc == 0)
        rc = oq_db_check_ignored(db, n, r.inserted);
    if (rc != 0)
        snprintf(err, errlen, "claiming %zu effects in event_ledger: %s", n, oq_db_error(db));
out:
    free(sql);
    free(p);
    return rc;
}

int oq_ledger_claim(struct oq_db *db, const char *owner, struct oq_claim *claims, size_t n,
                    char *err, size_t errlen)
{
    int rc = n > 0 ? owner_fits(owner, err, errlen) : 0;
    for (size_t at = 0; rc == 0 && at < n; at += CLAIM_CHUNK)
        rc = claim_chunk(db, owner, claims + at, n - at < CLAIM_CHUNK ? n - at : CLAIM_CHUNK, err,
                         errlen);
    return rc;
}

int oq_ledger_unclaim(struct oq_db *db, const char *handler, const char *effect_key, char *err,
                      size_t errlen)
{
    struct oq_db_param p[] = {OQ_STR(handler), OQ_STR(effect_key)};
    if (oq_db_execute(db, "DELETE FROM event_ledger WHERE handler = ? AND effect_key = ?", p, 2,
                      NULL) != 0) {
        snprintf(err, errlen, "withdrawing a claim: %s", oq_db_error(db));
        return OQ_EDB;
    }
    return 0;
}

/* A row's state and a yes/no column asked with it (its lease is live;
 * its owner is the one asked about). */
struct lease_row {
    char state[16];
    int flag;
    int found;
};

static int on_lease_row(void *ctx, const char *const *v, unsigned n)
{
    struct lease_row *r = ctx;
    if (n >= 2) {
        snprintf(r->state, sizeof(r->state), "%s", v[0] ? v[0] : "");
        r->flag = v[1] != NULL && strcmp(v[1], "1") == 0;
        r->found = 1;
    }
    return 0;
}

int oq_ledger_lease(struct oq_db *db, const struct oq_claim *c, const char *owner, int64_t lease_ms,
                    enum oq_lease *out, char *err, size_t errlen)
{
    struct oq_db_param p[] = {OQ_STR(c->handler),
                              OQ_STR(c->effect_key),
                              OQ_STR(c->event_identifier),
                              OQ_STR(c->event_code),
                              OQ_STR(owner),
                              OQ_INT(lease_ms * 1000),
                              OQ_INT(c->attempts > 0 ? c->attempts : 1)};
    if (owner_fits(owner, err, errlen) != 0)
        return OQ_EINVAL;
    /* The row another claimer holds may be released (deleted) between the
     * INSERT and the SELECT: then the claim is tried again, never read as
     * done. Three rounds of that in a row: report it held, so it comes
     * back through a delay tier. */
    for (int round = 0; round < 3; round++) {
        uint64_t inserted = 0;
        /* In a transaction of its own, so that a row IGNORE altered (a key
         * cut or turned into '?') is rolled back, not left as a lease. */
        if (oq_db_exec(db, "START TRANSACTION") != 0 ||
            oq_db_execute_ignore(
                db,
                "INSERT IGNORE INTO event_ledger (handler, effect_key, event_identifier,"
                " event_code, owner, state, lease_until, attempts) VALUES (?, ?, ?, ?,"
                " ?, 'sending', NOW(6) + INTERVAL ? MICROSECOND, ?)",
                p, 7, 1, &inserted) != 0 ||
            oq_db_exec(db, "COMMIT") != 0) {
            unsigned no = oq_db_errno(db);
            oq_db_rollback(db);
            if (no == ER_LOCK_DEADLOCK)
                continue; /* rolled back already: ask again at once */
            if (no != ER_LOCK_WAIT_TIMEOUT)
                goto fail;
            snprintf(err, errlen, "leasing %s/%s: %s", c->handler, c->effect_key, oq_db_error(db));
            *out = OQ_LEASE_LOCKED;
            return 0;
        }
        if (inserted == 1) {
            *out = OQ_LEASE_NEW;
            return 0;
        }
        struct lease_row row = {"", 0, 0};
        if (oq_db_query_rows(db,
                             "SELECT state, lease_until > NOW(6) FROM event_ledger"
                             " WHERE handler = ? AND effect_key = ?",
                             p, 2, on_lease_row, &row) != 0)
            goto fail;
        if (!row.found)
            continue;
        if (strcmp(row.state, "done") == 0 || strcmp(row.state, "sent") == 0)
            *out = OQ_LEASE_DONE;
        else if (strcmp(row.state, "sending") == 0)
            *out = row.flag ? OQ_LEASE_HELD : OQ_LEASE_EXPIRED;
        else
            *out = OQ_LEASE_UNKNOWN;
        return 0;
    }
    *out = OQ_LEASE_HELD;
    return 0;
fail:
    snprintf(err, errlen, "leasing %s/%s: %s", c->handler, c->effect_key, oq_db_error(db));
    return OQ_EDB;
}

int oq_ledger_is_owned(struct oq_db *db, const char *handler, const char *effect_key,
                       const char *owner, const char *state, int *owned, char *err, size_t errlen)
{
    struct oq_db_param p[] = {OQ_STR(owner), OQ_STR(handler), OQ_STR(effect_key)};
    struct lease_row row = {"", 0, 0}; /* flag: the owner is the one asked about */
    *owned = 0;
    if (oq_db_query_rows(db,
                         "SELECT state, owner = ? FROM event_ledger WHERE handler = ? AND"
                         " effect_key = ?",
                         p, 3, on_lease_row, &row) != 0) {
        snprintf(err, errlen, "reading %s/%s: %s", handler, effect_key, oq_db_error(db));
        return OQ_EDB;
    }
    *owned = row.found && row.flag && strcmp(row.state, state) == 0;
    return 0;
}

int oq_ledger_take_over(struct oq_db *db, const char *handler, const char *effect_key,
                        const char *owner, int64_t lease_ms, int from_unknown, char *err,
                        size_t errlen)
{
    uint64_t changed = 0;
    struct oq_db_param p[] = {OQ_STR(owner), OQ_INT(lease_ms * 1000), OQ_STR(handler),
                              OQ_STR(effect_key), OQ_INT(from_unknown != 0)};
    if (oq_db_execute(db,
                      "UPDATE event_ledger SET owner = ?, state = 'sending', lease_until = NOW(6)"
                      " + INTERVAL ? MICROSECOND, attempts = attempts + 1 WHERE handler = ? AND"
                      " effect_key = ? AND ((state = 'sending' AND lease_until <= NOW(6))"
                      " OR (state = 'unknown' AND ? = 1))",
                      p, 5, &changed) != 0) {
        snprintf(err, errlen, "taking over %s/%s: %s", handler, effect_key, oq_db_error(db));
        return OQ_EDB;
    }
    return changed == 1 ? 0 : OQ_ENOTFOUND;
}

int oq_ledger_release(struct oq_db *db, const char *handler, const char *effect_key,
                      const char *owner, char *err, size_t errlen)
{
    struct oq_db_param p[] = {OQ_STR(handler), OQ_STR(effect_key), OQ_STR(owner)};
    if (oq_db_execute(db,
                      "DELETE FROM event_ledger WHERE handler = ? AND effect_key = ? AND owner = ?"
                      " AND state = 'sending'",
                      p, 3, NULL) != 0) {
        snprintf(err, errlen, "releasing %s/%s: %s", handler, effect_key, oq_db_error(db));
        return OQ_EDB;
    }
    return 0;
}

int oq_ledger_finish(struct oq_db *db, const char *handler, const char *effect_key,
                     const char *owner, const char *state, const char *result, char *err,
                     size_t errlen)
{
    uint64_t changed = 0;
    struct oq_db_param p[] = {OQ_STR(state),   OQ_STR(result),
                              OQ_STR(handler), OQ_STR(effect_key),
                              OQ_STR(owner),   OQ_INT(strcmp(state, "sent") == 0)};
    if (strcmp(state, "sent") != 0 && strcmp(state, "unknown") != 0) {
        snprintf(err, errlen, "a lease finishes as sent or unknown, not %s", state);
        return OQ_EINVAL;
    }
    if (oq_db_execute(db,
                      "UPDATE event_ledger SET state = ?, result = ?, executed_at = NOW(6),"
                      " lease_until = NULL WHERE handler = ? AND effect_key = ? AND owner = ?"
                      " AND (state = 'sending' OR (state = 'unknown' AND ? = 1))",
                      p, 6, &changed) != 0) {
        snprintf(err, errlen, "finishing %s/%s: %s", handler, effect_key, oq_db_error(db));
        return OQ_EDB;
    }
    return changed == 1 ? 0 : OQ_ENOTFOUND;
}

/* ---- many leases and `sent` marks in one statement -------------------------- */

struct marked {
    struct oq_ledger_mark *marks;
    size_t n;
    uint64_t rows; /* rows returned */
};

/* The row whose owner is v[0] is the mark's of that owner: owners are
 * unique to one lease, so no other mark can have it. */
static int on_marked(void *ctx, const char *const *v, unsigned cols)
{
    struct marked *m = ctx;
    if (cols < 1 || v[0] == NULL)
        return 0;
    m->rows++;
    for (size_t i = 0; i < m->n; i++)
        if (!m->marks[i].done && strcmp(m->marks[i].owner, v[0]) == 0) {
            m->marks[i].done = 1;
            break;
        }
    return 0;
}

static int group_fits(struct oq_ledger_mark *marks, size_t n, int owners, char *err, size_t errlen)
{
    if (n > OQ_LEDGER_GROUP_MAX) {
        snprintf(err, errlen, "%zu ledger rows in one group; at most %d", n, OQ_LEDGER_GROUP_MAX);
        return OQ_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        marks[i].done = 0;
        if (owners && owner_fits(marks[i].owner, err, errlen) != 0)
            return OQ_EINVAL;
    }
    return 0;
}

#define LEASE_COLUMNS 7

int oq_ledger_lease_many(struct oq_db *db, struct oq_ledger_mark *marks, size_t n, int64_t lease_ms,
                         char *err, size_t errlen)
{
    struct oq_db_param p[OQ_LEDGER_GROUP_MAX * LEASE_COLUMNS];
    struct marked m = {marks, n, 0};
    char *sql = NULL;
    int rc = group_fits(marks, n, 1, err, errlen);
    if (rc != 0 || n == 0)
        return rc;
    sql = oq_db_repeat_sql("INSERT IGNORE INTO event_ledger (handler, effect_key, event_identifier,"
                           " event_code, owner, state, lease_until, attempts) VALUES ",
                           "(?, ?, ?, ?, ?, 'sending', NOW(6) + INTERVAL ? MICROSECOND, ?)", ",", n,
                           " RETURNING owner");
    if (sql == NULL) {
        snprintf(err, errlen, "out of memory");
        return OQ_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct oq_ledger_mark *k = &marks[i];
        struct oq_db_param *q = &p[i * LEASE_COLUMNS];
        q[0] = OQ_STR(k->handler);
        q[1] = OQ_STR(k->effect_key);
        q[2] = OQ_STR(k->event_identifier);
        q[3] = OQ_STR(k->event_code);
        q[4] = OQ_STR(k->owner);
        q[5] = OQ_INT(lease_ms * 1000);
        q[6] = OQ_INT(k->attempts > 0 ? k->attempts : 1);
    }
    rc = oq_db_query_rows(db, sql, p, n * LEASE_COLUMNS, on_marked, &m);
    if (rc == 0)
        rc = oq_db_check_ignored(db, n, m.rows);
    if (rc != 0) {
        snprintf(err, errlen, "leasing %zu effects in event_ledger: %s", n, oq_db_error(db));
        rc = OQ_EDB;
    }
    free(sql);
    return rc;
}

#define FINISH_COLUMNS 3
/* One mark's row, as a range on the primary key the optimizer always sees:
 * MariaDB 10.11 does not range-scan `(handler, effect_key, owner) IN
 * ((?, ?, ?))` in an UPDATE when it holds one row; it read every `sending`
 * row, or the whole table, instead. */
#define ROW_BY_KEY "(handler = ? AND effect_key = ? AND owner = ?)"

/* After an UPDATE that changed fewer rows than asked: which marks are
 * `sent` under their own owner now (no other writer sets that). */
static int read_finished(struct oq_db *db, struct oq_ledger_mark *marks, size_t n,
                         const struct oq_db_param *keys, char *err, size_t errlen)
{
    struct marked m = {marks, n, 0};
    char *sql = oq_db_repeat_sql("SELECT owner FROM event_ledger WHERE state = 'sent' AND (",
                                 ROW_BY_KEY, " OR ", n, ")");
    int rc = OQ_ENOMEM;
    if (sql == NULL)
        snprintf(err, errlen, "out of memory");
    else if ((rc = oq_db_query_rows(db, sql, keys, n * FINISH_COLUMNS, on_marked, &m)) != 0)
        snprintf(err, errlen, "reading %zu finished effects: %s", n, oq_db_error(db));
    free(sql);
    return rc;
}

int oq_ledger_finish_many(struct oq_db *db, struct oq_ledger_mark *marks, size_t n, char *err,
                          size_t errlen)
{
    /* result for each owner (the CASE), then each row's key and owner */
    struct oq_db_param p[OQ_LEDGER_GROUP_MAX * (2 + FINISH_COLUMNS)];
    struct oq_db_param *keys = &p[2 * n];
    char *sql = NULL;
    uint64_t changed = 0;
    int rc = group_fits(marks, n, 0, err, errlen);
    if (rc != 0 || n == 0)
        return rc;
    /* A row changes only while it is the mark's owner's, as in
     * oq_ledger_finish. */
    sql = oq_db_repeat_sql("UPDATE event_ledger SET state = 'sent', executed_at = NOW(6),"
                           " lease_until = NULL, result = CASE owner",
                           " WHEN ? THEN ?", "", n,
                           " ELSE result END WHERE state IN ('sending', 'unknown') AND (");
    char *rows = sql ? oq_db_repeat_sql(sql, ROW_BY_KEY, " OR ", n, ")") : NULL;
    free(sql);
    if (rows == NULL) {
        snprintf(err, errlen, "out of memory");
        return OQ_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        p[2 * i] = OQ_STR(marks[i].owner);
        p[2 * i + 1] = text_param(marks[i].result ? marks[i].result : "");
        keys[i * FINISH_COLUMNS + 0] = OQ_STR(marks[i].handler);
        keys[i * FINISH_COLUMNS + 1] = OQ_STR(marks[i].effect_key);
        keys[i * FINISH_COLUMNS + 2] = OQ_STR(marks[i].owner);
    }
    if (oq_db_execute(db, rows, p, n * (2 + FINISH_COLUMNS), &changed) != 0) {
        snprintf(err, errlen, "finishing %zu effects in event_ledger: %s", n, oq_db_error(db));
        rc = OQ_EDB;
    } else if (changed == n) {
        for (size_t i = 0; i < n; i++)
            marks[i].done = 1;
    } else {
        rc = read_finished(db, marks, n, keys, err, errlen);
    }
    free(rows);
    return rc;
}

/* ---- abandoned leases ------------------------------------------------------ */

struct abandoned_rows {
    struct oq_lease_row *rows;
    size_t max, n;
};

static int on_abandoned_row(void *ctx, const char *const *v, unsigned cols)
{
    struct abandoned_rows *r = ctx;
    if (cols < 8 || r->n == r->max)
        return 0;
    struct oq_lease_row *row = &r->rows[r->n++];
    memset(row, 0, sizeof(*row));
    snprintf(row->handler, sizeof(row->handler), "%s", v[0] ? v[0] : "");
    snprintf(row->effect_key, sizeof(row->effect_key), "%s", v[1] ? v[1] : "");
    snprintf(row->event_identifier, sizeof(row->event_identifier), "%s", v[2] ? v[2] : "");
    snprintf(row->event_code, sizeof(row->event_code), "%s", v[3] ? v[3] : "");
    snprintf(row->owner, sizeof(row->owner), "%s", v[4] ? v[4] : "");
    snprintf(row->lease_until, sizeof(row->lease_until), "%s", v[5] ? v[5] : "");
    row->attempts = v[6] ? strtoll(v[6], NULL, 10) : 0;
    row->expired_ms = v[7] ? strtoll(v[7], NULL, 10) : 0;
    return 0;
}

int oq_ledger_abandoned(struct oq_db *db, int64_t grace_ms, struct oq_lease_row *rows, size_t max,
                        size_t *n, char *err, size_t errlen)
{
    struct oq_db_param p[] = {OQ_INT(grace_ms * 1000), OQ_INT(max)};
    struct abandoned_rows r = {rows, max, 0};
    *n = 0;
    /* idx_event_ledger_state_lease (state, lease_until) serves the range
     * and the order; lease_until is read as text to the microsecond, so
     * oq_ledger_abandon can ask for exactly the lease it saw. */
    if (oq_db_query_rows(db,
                         "SELECT handler, effect_key, event_identifier, event_code, owner,"
                         " DATE_FORMAT(lease_until, '%Y-%m-%d %H:%i:%s.%f'), attempts,"
                         " TIMESTAMPDIFF(MICROSECOND, lease_until, NOW(6)) DIV 1000"
                         " FROM event_ledger WHERE state = 'sending'"
                         " AND lease_until < NOW(6) - INTERVAL ? MICROSECOND"
                         " ORDER BY lease_until LIMIT ?",
                         p, 2, on_abandoned_row, &r) != 0) {
        snprintf(err, errlen, "reading expired leases: %s", oq_db_error(db));
        return OQ_EDB;
    }
    *n = r.n;
    return 0;
}

int oq_ledger_abandon(struct oq_db *db, const struct oq_lease_row *row, int64_t grace_ms,
                      const char *result, char *err, size_t errlen)
{
    uint64_t changed = 0;
    struct oq_db_param p[] = {OQ_STR(result),           OQ_STR(row->handler),
                              OQ_STR(row->effect_key),  OQ_STR(row->owner),
                              OQ_STR(row->lease_until), OQ_INT(grace_ms * 1000)};
    /* The owner keeps its name: `ledger show` then says whose lease it was. */
    if (oq_db_execute(db,
                      "UPDATE event_ledger SET state = 'unknown', result = ?,"
                      " executed_at = NOW(6), lease_until = NULL WHERE handler = ? AND"
                      " effect_key = ? AND state = 'sending' AND owner = ? AND lease_until = ?"
                      " AND lease_until < NOW(6) - INTERVAL ? MICROSECOND",
                      p, 6, &changed) != 0) {
        snprintf(err, errlen, "marking %s/%s unknown: %s", row->handler, row->effect_key,
                 oq_db_error(db));
        return OQ_EDB;
    }
    return changed == 1 ? 0 : OQ_ENOTFOUND;
}

static int on_counts_row(void *ctx, const char *const *v, unsigned cols)
{
    struct oq_lease_counts *c = ctx;
    if (cols >= 3) {
        c->expired = v[0] ? strtoll(v[0], NULL, 10) : 0;
        c->abandoned = v[1] ? strtoll(v[1], NULL, 10) : 0;
        c->unknown = v[2] ? strtoll(v[2], NULL, 10) : 0;
    }
    return 0;
}

int oq_ledger_lease_counts(struct oq_db *db, int64_t grace_ms, struct oq_lease_counts *out,
                           char *err, size_t errlen)
{
    struct oq_db_param p[] = {OQ_INT(grace_ms * 1000)};
    memset(out, 0, sizeof(*out));
    if (oq_db_query_rows(db,
                         "SELECT COALESCE(SUM(state = 'sending' AND lease_until < NOW(6)), 0),"
                         " COALESCE(SUM(state = 'sending' AND lease_until < NOW(6) - INTERVAL ?"
                         " MICROSECOND), 0), COALESCE(SUM(state = 'unknown'), 0)"
                         " FROM event_ledger WHERE state IN ('sending', 'unknown')",
                         p, 1, on_counts_row, out) != 0) {
        snprintf(err, errlen, "counting leases: %s", oq_db_error(db));
        return OQ_EDB;
    }
    return 0;
}
