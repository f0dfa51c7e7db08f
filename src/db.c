/* db.c - MariaDB/MySQL connection, prepared statements, error classes */
#include "orderq/db.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/url.h"

/* A prepared statement kept for its SQL text: a batch of the same shape
 * runs again without a prepare round trip, and the server parses it once.
 * Few per connection, since the server counts every statement kept open
 * against max_prepared_stmt_count (16,382 by default) across all clients. */
#define STMT_CACHE 8

struct cached_stmt {
    char *sql; /* NULL: the slot is free */
    size_t len;
    MYSQL_STMT *st;
    uint64_t used; /* the db's tick when last taken: the least recent goes first */
    int busy;      /* taken and not yet released: an on_row callback may run another
                    * statement, which must neither replace nor re-run this one */
};

struct oq_db {
    MYSQL *my;
    struct cached_stmt cache[STMT_CACHE];
    uint64_t tick;
    /* Parameter bindings, grown to the largest statement and reused rather
     * than allocated per statement: a full batch's claim binds 1,750 (about
     * 200 KB). */
    MYSQL_BIND *bind;
    size_t bind_cap;
    unsigned err_no; /* of the last call only: cleared when a call starts */
    char err[OQ_ERRLEN];
    int broken;           /* the connection was found dead: every later call fails at once */
    int galera;           /* the server is a Galera node (wsrep_on) */
    size_t host, n_hosts; /* which host of mysql_url this is connected to, of how many */
};

/* The host of mysql_url to try first: the last that answered, moved on
 * past one whose connection was found dead. One for the process, so every
 * worker's reconnect starts where another's worked. */
static atomic_size_t first_host;

/* A failure that makes this host useless until something outside orderq
 * changes: the connection is dead, or the host is a Galera node that is not
 * ready (1047: joining, or cut off from the primary component). Reopening
 * must then start at the next host of mysql_url, not come back here. */
static int host_unusable(unsigned err_no)
{
    return oq_db_classify(err_no) == OQ_DB_GONE || err_no == ER_UNKNOWN_COM_ERROR;
}

static int fail(struct oq_db *db, MYSQL_STMT *st)
{
    db->err_no = st ? mysql_stmt_errno(st) : mysql_errno(db->my);
    snprintf(db->err, sizeof(db->err), "%s", st ? mysql_stmt_error(st) : mysql_error(db->my));
    if (db->err_no == 0) /* the client gave no number: never leave a stale class behind */
        db->err_no = CR_UNKNOWN_ERROR;
    /* Counted so an operator sees how often Galera's certification (or
     * InnoDB) made orderq redo a transaction. */
    if (db->err_no == ER_LOCK_DEADLOCK)
        oq_metric_add(OQ_M_DB_CONFLICTS, 1);
    if (host_unusable(db->err_no) && !db->broken) {
        size_t dead = db->host;
        db->broken = 1;
        atomic_compare_exchange_strong(&first_host, &dead, (db->host + 1) % db->n_hosts);
    }
    return OQ_EDB;
}

/* Every call starts here: the error of an earlier call must not decide
 * what this one's failure means. A connection once found dead is not
 * used again, so its caller sees OQ_DB_GONE until it opens a new one. */
static int begin(struct oq_db *db)
{
    db->err[0] = '\0';
    db->err_no = 0;
    if (!db->broken)
        return 0;
    db->err_no = CR_SERVER_GONE_ERROR;
    snprintf(db->err, sizeof(db->err),
             "the MySQL connection was lost earlier; it must be reopened");
    return OQ_EDB;
}

/* ssl= of the URL as Connector/C options. With a CA file the library
 * checks the chain (SSL_VERIFY_PEER); VERIFY_SERVER_CERT adds the host
 * name (X509_check_host / X509_check_ip_asc). Without ssl_ca, the verify
 * modes trust the system's CAs, named explicitly since only a CA option
 * makes the library check the chain. */
static void set_tls(MYSQL *my, const struct oq_mysql_url *u)
{
    my_bool on = 1;
    if (u->ssl == OQ_MYSQL_SSL_DISABLED)
        return;
    mysql_options(my, MYSQL_OPT_SSL_ENFORCE, &on);
    if (u->ssl >= OQ_MYSQL_SSL_VERIFY_CA)
        mysql_options(my, MYSQL_OPT_SSL_CA, u->ssl_ca ? u->ssl_ca : OQ_SYSTEM_CA_FILE);
    if (u->ssl == OQ_MYSQL_SSL_VERIFY_IDENTITY)
        mysql_options(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
}

/* Connecting failed: a TLS failure says what the certificate was checked
 * against, and which part of mysql_url sets that. */
static void describe_connect_failure(MYSQL *my, const struct oq_mysql_url *u, char *err,
                                     size_t errlen)
{
    char hint[600] = "";
    if (mysql_errno(my) == CR_SSL_CONNECTION_ERROR && u->ssl >= OQ_MYSQL_SSL_VERIFY_CA) {
        int identity = u->ssl == OQ_MYSQL_SSL_VERIFY_IDENTITY;
        snprintf(hint, sizeof(hint), "; ssl=%s: the server's certificate must chain to %s%s%s%s",
                 identity ? "verify_identity" : "verify_ca",
                 u->ssl_ca ? "mysql_url's ssl_ca " : "the system's CAs (mysql_url has no ssl_ca)",
                 u->ssl_ca ? u->ssl_ca : "", identity ? " and name " : "",
                 identity ? (u->socket ? "localhost" : u->host) : "");
    }
    snprintf(err, errlen, "cannot connect to MySQL at %s%s (database %s): %s%s",
             u->socket ? "socket " : "", u->socket ? u->socket : u->host, u->database,
             mysql_error(my), hint);
}

/* The first column-2 value of a SHOW statement's single row, or "" when it
 * has no row (the variable does not exist on this server). Returns 0 or
 * OQ_EDB with the reason in err. */
static int show_value(MYSQL *my, const char *sql, char *value, size_t len, char *err, size_t errlen)
{
    MYSQL_RES *res = NULL;
    if (mysql_query(my, sql) != 0 || (res = mysql_store_result(my)) == NULL) {
        snprintf(err, errlen, "MySQL: %s: %s", sql, mysql_error(my));
        return OQ_EDB;
    }
    MYSQL_ROW row = mysql_fetch_row(res);
    snprintf(value, len, "%s", row != NULL && row[1] != NULL ? row[1] : "");
    mysql_free_result(res);
    return 0;
}

static void drop_cached(struct cached_stmt *c)
{
    if (c->st != NULL)
        mysql_stmt_close(c->st);
    free(c->sql);
    memset(c, 0, sizeof(*c));
}

/* A Galera node that is not ready (still joining, or cut off from the
 * primary component) takes the connection and SET, then answers every
 * statement with 1047; refusing it here makes the caller try the next host.
 * A server without wsrep (or with it off) reports wsrep_ready OFF too, so
 * wsrep_on decides whether it is a Galera node at all. SHOW needs no
 * privilege and is answered by a node that is not ready. */
static int check_galera_ready(struct oq_db *db, const struct oq_mysql_url *u, char *err,
                              size_t errlen)
{
    MYSQL *my = db->my;
    char on[16], ready[16];
    if (show_value(my, "SHOW VARIABLES LIKE 'wsrep_on'", on, sizeof(on), err, errlen) != 0)
        return OQ_EDB;
    db->galera = strcmp(on, "ON") == 0;
    if (!db->galera)
        return 0;
    if (show_value(my, "SHOW STATUS LIKE 'wsrep_ready'", ready, sizeof(ready), err, errlen) != 0)
        return OQ_EDB;
    if (strcmp(ready, "ON") == 0)
        return 0;
    snprintf(err, errlen,
             "MySQL at %s%s (database %s) is a Galera node that is not ready (wsrep_ready %s, "
             "expected ON): it is joining the cluster or not in its primary component",
             u->socket ? "socket " : "", u->socket ? u->socket : u->host, u->database,
             ready[0] ? ready : "missing");
    return OQ_EDB;
}

/* Open db->my on one host and set the session up. Returns 0, OQ_ENOMEM or
 * OQ_EDB with the reason in err. */
static int connect_host(struct oq_db *db, const struct oq_mysql_url *u, int64_t timeout_ms,
                        unsigned flags, char *err, size_t errlen)
{
    unsigned timeout_s = (unsigned)((timeout_ms + 999) / 1000);
    unsigned long client_flags = CLIENT_FOUND_ROWS;

    if ((db->my = mysql_init(NULL)) == NULL)
        return OQ_ENOMEM;
    mysql_options(db->my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
    /* A server that stops answering must not hang a worker forever; longer
     * than InnoDB's default 50 s lock wait, which is a normal wait. */
    unsigned io_timeout_s = 120;
    mysql_options(db->my, MYSQL_OPT_READ_TIMEOUT, &io_timeout_s);
    mysql_options(db->my, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout_s);
    mysql_options(db->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    set_tls(db->my, u);
    if (flags & OQ_DB_MULTI_STATEMENTS)
        client_flags |= CLIENT_MULTI_STATEMENTS;
    /* With a socket the host must be "localhost" for libmariadb to use it. */
    const char *host = u->socket ? "localhost" : u->host;
    if (mysql_real_connect(db->my, host, u->user, u->password, u->database, u->port, u->socket,
                           client_flags) == NULL) {
        describe_connect_failure(db->my, u, err, errlen);
        return OQ_EDB;
    }
    /* Record locks only, no gap locks: relays and consumers insert into and
     * update the same tables at once; the unique keys, not the isolation
     * level, are what keep every effect single. */
    if (mysql_query(db->my, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED") != 0) {
        snprintf(err, errlen, "MySQL: setting READ COMMITTED: %s", mysql_error(db->my));
        return OQ_EDB;
    }
    /* Every time orderq writes or compares is UTC, whatever the server's
     * zone: hosts in several zones share one ledger and dead-letter store. */
    if (mysql_query(db->my, "SET SESSION time_zone = '+00:00'") != 0) {
        snprintf(err, errlen, "MySQL: setting time_zone to UTC: %s", mysql_error(db->my));
        return OQ_EDB;
    }
    return check_galera_ready(db, u, err, errlen);
}

int oq_db_open(const char *url, int64_t timeout_ms, unsigned flags, struct oq_db **out, char *err,
               size_t errlen)
{
    struct oq_mysql_hosts hosts;
    struct oq_db *db = NULL;
    int rc = OQ_EDB;
    char why[OQ_ERRLEN];

    *out = NULL;
    if (oq_mysql_hosts_parse(url, &hosts, err, errlen) != 0)
        return OQ_ECONFIG;
    size_t start = atomic_load(&first_host) % hosts.n;
    if (errlen > 0)
        err[0] = '\0';
    /* Each host in turn, from the one that last worked. */
    for (size_t i = 0; i < hosts.n && rc == OQ_EDB; i++) {
        size_t k = (start + i) % hosts.n;
        oq_db_close(db);
        if ((db = calloc(1, sizeof(*db))) == NULL) {
            rc = OQ_ENOMEM;
            break;
        }
        db->host = k;
        db->n_hosts = hosts.n;
        rc = connect_host(db, &hosts.host[k], timeout_ms, flags, why, sizeof(why));
        if (rc == OQ_EDB && hosts.n > 1) {
            size_t used = strlen(err);
            if (used + 1 < errlen)
                snprintf(err + used, errlen - used, "%shost %zu of %zu: %s", used ? "; " : "",
                         k + 1, hosts.n, why);
            atomic_compare_exchange_strong(&first_host, &k, (k + 1) % hosts.n);
        } else if (rc == OQ_EDB)
            snprintf(err, errlen, "%s", why);
    }
    if (rc == 0 && errlen > 0 && err[0] != '\0') /* hosts were passed over: say which and why */
        oq_warn("MySQL: connected to host %zu of %zu after passing over: %s", db->host + 1, hosts.n,
                err);
    if (rc == 0) {
        atomic_store(&first_host, db->host);
        *out = db;
        db = NULL;
    }
    if (rc == OQ_ENOMEM)
        snprintf(err, errlen, "out of memory");
    oq_db_close(db);
    oq_mysql_hosts_clear(&hosts);
    return rc;
}

void oq_db_close(struct oq_db *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < STMT_CACHE; i++)
        drop_cached(&db->cache[i]);
    free(db->bind);
    if (db->my != NULL)
        mysql_close(db->my);
    free(db);
}

int oq_db_reopen(const char *url, int64_t timeout_ms, unsigned *tries, struct oq_db **out,
                 char *err, size_t errlen)
{
    if ((*tries)++ > 0) /* the first is the thread's start, not a reconnect */
        oq_metrics_reconnect(OQ_PEER_DATABASE);
    return oq_db_open(url, timeout_ms, 0, out, err, errlen);
}

int oq_db_exec(struct oq_db *db, const char *sql)
{
    if (begin(db) != 0)
        return OQ_EDB;
    if (mysql_real_query(db->my, sql, strlen(sql)) != 0)
        return fail(db, NULL);
    MYSQL_RES *res = mysql_store_result(db->my);
    mysql_free_result(res);
    return mysql_errno(db->my) ? fail(db, NULL) : 0;
}

void oq_db_rollback(struct oq_db *db)
{
    if (!db->broken)
        (void)mysql_real_query(db->my, "ROLLBACK", 8);
}

int oq_db_exec_script(struct oq_db *db, const char *sql, size_t len)
{
    if (begin(db) != 0)
        return OQ_EDB;
    if (mysql_real_query(db->my, sql, len) != 0)
        return fail(db, NULL);
    for (;;) {
        MYSQL_RES *res = mysql_store_result(db->my);
        mysql_free_result(res);
        int next = mysql_next_result(db->my);
        if (next > 0)
            return fail(db, NULL); /* a later statement failed */
        if (next < 0)
            return 0;
    }
}

/* The cache slot holding st, or NULL. */
static struct cached_stmt *slot_of(struct oq_db *db, const MYSQL_STMT *st)
{
    for (size_t i = 0; i < STMT_CACHE; i++)
        if (db->cache[i].st == st)
            return &db->cache[i];
    return NULL;
}

/* A statement that failed is closed and not kept: whatever went wrong (the
 * connection lost, the server dropping it) must not come back with it. */
static void discard_stmt(struct oq_db *db, MYSQL_STMT *st)
{
    struct cached_stmt *c = slot_of(db, st);
    if (c != NULL)
        drop_cached(c);
    else
        mysql_stmt_close(st);
}

/* A statement done with: one kept in the cache has its result set freed
 * for the next execution; any other is closed. */
static void release_stmt(struct oq_db *db, MYSQL_STMT *st)
{
    struct cached_stmt *c = slot_of(db, st);
    if (c != NULL) {
        (void)mysql_stmt_free_result(st);
        c->busy = 0;
    } else
        mysql_stmt_close(st);
}

/* Put st (prepared from sql, and taken) in the free or least recently
 * used slot that is not in use. With none, or without memory for the
 * text, it is simply not kept. */
static void keep_stmt(struct oq_db *db, const char *sql, size_t len, MYSQL_STMT *st)
{
    struct cached_stmt *c = NULL;
    for (size_t i = 0; i < STMT_CACHE && (c == NULL || c->sql != NULL); i++)
        if (!db->cache[i].busy &&
            (c == NULL || db->cache[i].sql == NULL || db->cache[i].used < c->used))
            c = &db->cache[i];
    char *copy = c != NULL ? malloc(len + 1) : NULL;
    if (copy == NULL)
        return;
    drop_cached(c);
    memcpy(copy, sql, len + 1);
    *c = (struct cached_stmt){copy, len, st, ++db->tick, 1};
}

/* The statement for sql: the kept one, or one prepared now (kept once its
 * placeholders are known to match). NULL on failure, with the reason on db. */
static MYSQL_STMT *get_stmt(struct oq_db *db, const char *sql, size_t len)
{
    for (size_t i = 0; i < STMT_CACHE; i++) {
        struct cached_stmt *c = &db->cache[i];
        if (c->sql != NULL && !c->busy && c->len == len && memcmp(c->sql, sql, len) == 0) {
            c->used = ++db->tick;
            c->busy = 1;
            return c->st;
        }
    }
    MYSQL_STMT *st = mysql_stmt_init(db->my);
    if (st == NULL) {
        fail(db, NULL);
        return NULL;
    }
    if (mysql_stmt_prepare(st, sql, len) != 0) {
        fail(db, st);
        mysql_stmt_close(st);
        return NULL;
    }
    return st;
}

size_t oq_db_cached_statements(const struct oq_db *db)
{
    size_t n = 0;
    for (size_t i = 0; i < STMT_CACHE; i++)
        n += db->cache[i].sql != NULL;
    return n;
}

char *oq_db_repeat_sql(const char *head, const char *row, const char *sep, size_t n,
                       const char *tail)
{
    size_t h = strlen(head), r = strlen(row), s = strlen(sep), t = strlen(tail);
    char *sql = malloc(h + n * (r + s) + t + 1);
    if (sql == NULL)
        return NULL;
    char *at = sql;
    memcpy(at, head, h);
    at += h;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            memcpy(at, sep, s);
            at += s;
        }
        memcpy(at, row, r);
        at += r;
    }
    memcpy(at, tail, t + 1);
    return sql;
}

/* db->bind with room for n, zeroed; NULL without memory. */
static MYSQL_BIND *bindings(struct oq_db *db, size_t n)
{
    if (n > db->bind_cap) {
        MYSQL_BIND *more = realloc(db->bind, n * sizeof(*more));
        if (more == NULL)
            return NULL;
        db->bind = more;
        db->bind_cap = n;
    }
    memset(db->bind, 0, n * sizeof(*db->bind));
    return db->bind;
}

static MYSQL_STMT *prepare_bound(struct oq_db *db, const char *sql,
                                 const struct oq_db_param *params, size_t n)
{
    MYSQL_BIND *bind = NULL;
    if (begin(db) != 0)
        return NULL;
    size_t len = strlen(sql);
    MYSQL_STMT *st = get_stmt(db, sql, len);
    if (st == NULL)
        return NULL;
    if (mysql_stmt_param_count(st) != n) { /* a bug in the caller: say so, run nothing */
        db->err_no = 0;
        snprintf(db->err, sizeof(db->err), "statement has %lu placeholders, %zu values given",
                 mysql_stmt_param_count(st), n);
        discard_stmt(db, st);
        return NULL;
    }
    /* Kept before it runs: replacing another closes that one, which must not
     * come between this one's execution and the reading of its rows. */
    if (slot_of(db, st) == NULL)
        keep_stmt(db, sql, len, st);
    if (n > 0) {
        if ((bind = bindings(db, n)) == NULL) {
            db->err_no = 0;
            snprintf(db->err, sizeof(db->err), "out of memory binding %zu parameters", n);
            discard_stmt(db, st);
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            switch (params[i].type) {
            case OQ_PARAM_STR:
                bind[i].buffer_type = MYSQL_TYPE_STRING;
                bind[i].buffer = (void *)(uintptr_t)params[i].str;
                bind[i].buffer_length = params[i].len;
                break;
            case OQ_PARAM_BLOB: /* bytes, not text: no character set applies */
                bind[i].buffer_type = MYSQL_TYPE_BLOB;
                bind[i].buffer = (void *)(uintptr_t)params[i].str;
                bind[i].buffer_length = params[i].len;
                break;
            case OQ_PARAM_INT:
                bind[i].buffer_type = MYSQL_TYPE_LONGLONG;
                bind[i].buffer = (void *)(uintptr_t)&params[i].num;
                break;
            case OQ_PARAM_NULL:
                bind[i].buffer_type = MYSQL_TYPE_NULL;
                break;
            }
        }
        if (mysql_stmt_bind_param(st, bind) != 0)
            goto fail;
    }
    if (mysql_stmt_execute(st) != 0)
        goto fail;
    return st;
fail:
    fail(db, st);
    discard_stmt(db, st);
    return NULL;
}

int oq_db_query_rows(struct oq_db *db, const char *sql, const struct oq_db_param *params, size_t n,
                     oq_db_row_fn on_row, void *ctx)
{
    enum { MAX_COLS = 16, COL_LEN = 1024 };
    MYSQL_BIND out[MAX_COLS];
    char bufs[MAX_COLS][COL_LEN];
    unsigned long lens[MAX_COLS];
    my_bool nulls[MAX_COLS];
    const char *values[MAX_COLS];
    int rc = OQ_EDB;
    MYSQL_STMT *st = prepare_bound(db, sql, params, n);
    if (st == NULL)
        return OQ_EDB;
    unsigned cols = mysql_stmt_field_count(st);
    if (cols > MAX_COLS) {
        snprintf(db->err, sizeof(db->err), "%u columns; at most %d", cols, MAX_COLS);
        goto out;
    }
    memset(out, 0, sizeof(out));
    for (unsigned c = 0; c < cols; c++) {
        out[c].buffer_type = MYSQL_TYPE_STRING;
        out[c].buffer = bufs[c];
        out[c].buffer_length = COL_LEN - 1;
        out[c].length = &lens[c];
        out[c].is_null = &nulls[c];
    }
    if (cols > 0 && (mysql_stmt_bind_result(st, out) != 0 || mysql_stmt_store_result(st) != 0)) {
        fail(db, st);
        goto out;
    }
    for (;;) {
        int f = cols > 0 ? mysql_stmt_fetch(st) : MYSQL_NO_DATA;
        if (f == MYSQL_NO_DATA)
            break;
        if (f != 0 && f != MYSQL_DATA_TRUNCATED) {
            fail(db, st);
            goto out;
        }
        char *big[MAX_COLS] = {NULL};
        int stop = 0, fetch_failed = 0;
        for (unsigned c = 0; c < cols; c++) {
            values[c] = nulls[c] ? NULL : bufs[c];
            if (nulls[c])
                continue; /* the client library sets no length for a NULL */
            if (lens[c] < COL_LEN) {
                bufs[c][lens[c]] = '\0';
                continue;
            }
            /* A long value (an outbox body): fetch this column whole. */
            MYSQL_BIND one;
            memset(&one, 0, sizeof(one));
            one.buffer_type = MYSQL_TYPE_STRING;
            one.buffer = big[c] = malloc(lens[c] + 1);
            one.buffer_length = lens[c] + 1;
            if (big[c] == NULL || mysql_stmt_fetch_column(st, &one, c, 0) != 0) {
                fetch_failed = 1;
                break;
            }
            big[c][lens[c]] = '\0';
            values[c] = big[c];
        }
        if (!fetch_failed)
            stop = on_row(ctx, values, cols) != 0;
        for (unsigned c = 0; c < cols; c++)
            free(big[c]);
        if (fetch_failed) {
            snprintf(db->err, sizeof(db->err), "reading a long column failed");
            goto out;
        }
        if (stop) {
            rc = OQ_EINTR;
            goto out;
        }
    }
    rc = 0;
out:
    if (rc == OQ_EDB)
        discard_stmt(db, st);
    else
        release_stmt(db, st);
    return rc;
}

int oq_db_execute(struct oq_db *db, const char *sql, const struct oq_db_param *params, size_t n,
                  uint64_t *affected)
{
    MYSQL_STMT *st = prepare_bound(db, sql, params, n);
    if (st == NULL)
        return OQ_EDB;
    if (affected != NULL)
        *affected = (uint64_t)mysql_stmt_affected_rows(st);
    release_stmt(db, st);
    return 0;
}

int oq_db_query_int(struct oq_db *db, const char *sql, const struct oq_db_param *params, size_t n,
                    long long *value, int *is_null)
{
    MYSQL_BIND out;
    my_bool null_flag = 0;
    int rc = OQ_EDB;
    MYSQL_STMT *st = prepare_bound(db, sql, params, n);
    if (st == NULL)
        return OQ_EDB;
    memset(&out, 0, sizeof(out));
    out.buffer_type = MYSQL_TYPE_LONGLONG;
    out.buffer = value;
    out.is_null = &null_flag;
    if (mysql_stmt_bind_result(st, &out) != 0) {
        fail(db, st);
        goto out;
    }
    int f = mysql_stmt_fetch(st);
    if (f == MYSQL_NO_DATA)
        rc = OQ_ENOTFOUND;
    else if (f == 0) {
        *is_null = null_flag != 0;
        rc = 0;
    } else
        fail(db, st);
out:
    if (rc == OQ_EDB)
        discard_stmt(db, st);
    else
        release_stmt(db, st);
    return rc;
}

const char *oq_db_error(const struct oq_db *db)
{
    return db->err;
}

unsigned oq_db_errno(const struct oq_db *db)
{
    return db->err_no;
}

int oq_db_is_galera(const struct oq_db *db)
{
    return db->galera;
}

enum oq_db_class oq_db_last_class(const struct oq_db *db)
{
    return oq_db_classify(db->err_no);
}

enum oq_db_class oq_db_classify(unsigned e)
{
    switch (e) {
    case ER_DUP_ENTRY:
        return OQ_DB_DUPLICATE;
    case ER_LOCK_DEADLOCK:
    case ER_LOCK_WAIT_TIMEOUT:
        return OQ_DB_RETRY;
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_COMMANDS_OUT_OF_SYNC:
    case CR_UNKNOWN_ERROR:
    case ER_CONNECTION_KILLED:
    case ER_SERVER_SHUTDOWN:
    case ER_NEW_ABORTING_CONNECTION:
    case 4031: /* ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8): idle past wait_timeout */
        return OQ_DB_GONE;
    case ER_OPTION_PREVENTS_STATEMENT: /* read_only: a failover under way */
    case ER_UNKNOWN_COM_ERROR:         /* Galera: "WSREP has not yet prepared node" */
    case ER_RECORD_FILE_FULL:          /* a table or the disk is full */
    case ER_DISK_FULL:
    case ER_QUERY_INTERRUPTED: /* KILL QUERY, or max_statement_time */
    case ER_CON_COUNT_ERROR:   /* too many connections */
    case ER_OUT_OF_RESOURCES:
    case ER_OUTOFMEMORY:
        return OQ_DB_UNAVAILABLE;
    default:
        return OQ_DB_OTHER;
    }
}

/* ---- statements whose IGNORE must not hide anything but duplicates ------- */

int oq_db_check_ignored(struct oq_db *db, uint64_t rows, uint64_t inserted)
{
    unsigned count = mysql_warning_count(db->my);
    uint64_t duplicates = rows > inserted ? rows - inserted : 0;
    MYSQL_RES *res = NULL;
    MYSQL_ROW w;
    int rc = OQ_EDB;

    /* Every row IGNORE left out gave one duplicate-key warning (the tables
     * orderq ignores into have no foreign keys or partitions, the other
     * reasons IGNORE skips a row), and any other warning comes on top: as
     * many warnings as rows left out are all duplicates, with no round
     * trip to read them. This is every batch of the duplicate path. */
    if (count == 0 || count == duplicates)
        return 0;
    /* The list, not the count: a duplicate key (1062) is the answer IGNORE
     * is there for; anything else (a string cut to its column, bytes
     * stored as '?') means the row written is not the row sent. */
    if (mysql_query(db->my, "SHOW WARNINGS") != 0 || (res = mysql_store_result(db->my)) == NULL) {
        fail(db, NULL);
        snprintf(db->err, sizeof(db->err), "reading the warnings of an INSERT IGNORE: %s",
                 mysql_error(db->my));
        return OQ_EDB;
    }
    while ((w = mysql_fetch_row(res)) != NULL) {
        unsigned long code = w[1] ? strtoul(w[1], NULL, 10) : 0;
        if (code == ER_DUP_ENTRY)
            continue;
        db->err_no = (unsigned)code;
        snprintf(db->err, sizeof(db->err), "warning %lu, treated as an error: %s", code,
                 w[2] ? w[2] : "");
        goto out;
    }
    /* Only duplicates listed: the server lists at most max_error_count
     * (64 by default), so the count must match the rows left out too. */
    if (count > duplicates) {
        db->err_no = 0;
        snprintf(db->err, sizeof(db->err),
                 "%u warnings for %llu rows left out as duplicate keys; the others are not "
                 "listed (max_error_count) and treated as an error",
                 count, (unsigned long long)duplicates);
        goto out;
    }
    rc = 0;
out:
    mysql_free_result(res);
    return rc;
}

int oq_db_execute_ignore(struct oq_db *db, const char *sql, const struct oq_db_param *params,
                         size_t n, uint64_t rows, uint64_t *inserted)
{
    uint64_t affected = 0;
    int rc = oq_db_execute(db, sql, params, n, &affected);
    if (rc == 0)
        rc = oq_db_check_ignored(db, rows, affected);
    if (inserted != NULL)
        *inserted = affected;
    return rc;
}
