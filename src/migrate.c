/* migrate.c - apply the numbered sql/ files once, in order, under a lock */
#include "orderq/migrate.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysqld_error.h>

#include "orderq/db.h"
#include "orderq/log.h"

static const char create_table_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INT UNSIGNED NOT NULL PRIMARY KEY,"
    " name VARCHAR(255) NOT NULL,"
    " checksum CHAR(64) CHARACTER SET ascii NOT NULL COMMENT 'SHA-256 of the file',"
    " applied_at DATETIME(6) NOT NULL COMMENT 'UTC',"
    " applied_by VARCHAR(255) NOT NULL DEFAULT '',"
    " duration_ms INT UNSIGNED NOT NULL DEFAULT 0"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COMMENT='orderq: applied sql/ files'";

/* Per database: two databases on one server (staging and production, or
 * parallel tests) migrate independently. Lock names are at most 64 chars. */
#define LOCK_SQL "CONCAT('orderq.migrate:', LEFT(DATABASE(), 48))"

/* After a statement the server refused for want of a right: what migrate
 * needs, so an operator who ran it with the consumer's row-only user sees
 * which user to use instead. */
static const char *denied_hint(const struct oq_db *db)
{
    switch (oq_db_errno(db)) {
    case ER_DBACCESS_DENIED_ERROR:
    case ER_TABLEACCESS_DENIED_ERROR:
        return " (migrate changes the schema: mysql_url must name a user with CREATE, ALTER, "
               "INDEX, REFERENCES, SELECT, INSERT, UPDATE and DELETE on the database, such as "
               "the migration user of docs/operations.md; the consumer's needs the last four)";
    default:
        return "";
    }
}

static void sha256_hex(const char *text, size_t len, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    hex[0] = '\0';
    if (EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return;
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* One row of schema_migrations. */
struct applied {
    int version;
    char checksum[65];
    char applied_at[40];
    char applied_by[128];
    char name[128];
};

struct applied_list {
    struct applied *rows;
    size_t n;
    int oom;
};

static int on_applied(void *ctx, const char *const *v, unsigned cols)
{
    struct applied_list *l = ctx;
    if (cols < 5 || v[0] == NULL)
        return 0;
    struct applied *grown = realloc(l->rows, (l->n + 1) * sizeof(*grown));
    if (grown == NULL) {
        l->oom = 1;
        return 1;
    }
    l->rows = grown;
    struct applied *a = &l->rows[l->n++];
    a->version = (int)strtol(v[0], NULL, 10);
    snprintf(a->checksum, sizeof(a->checksum), "%s", v[1] ? v[1] : "");
    snprintf(a->applied_at, sizeof(a->applied_at), "%s", v[2] ? v[2] : "");
    snprintf(a->applied_by, sizeof(a->applied_by), "%s", v[3] ? v[3] : "");
    snprintf(a->name, sizeof(a->name), "%s", v[4] ? v[4] : "");
    return 0;
}

/* Is schema_migrations there? Looked up rather than created, so that
 * `consume` and `migrate --status` work for a user with row rights only. */
static int table_exists(struct oq_db *db, int *exists)
{
    long long n = 0;
    int is_null = 0;
    int rc =
        oq_db_query_int(db,
                        "SELECT COUNT(*) FROM information_schema.TABLES"
                        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'schema_migrations'",
                        NULL, 0, &n, &is_null);
    *exists = rc == 0 && !is_null && n > 0;
    return rc;
}

/* The applied migrations, by version; free l->rows. create: make the table
 * when it is missing (migrate), else a missing table means none applied. */
static int read_applied(struct oq_db *db, int create, struct applied_list *l, char *err,
                        size_t errlen)
{
    int exists = 1, rc;
    memset(l, 0, sizeof(*l));
    rc = create ? oq_db_exec(db, create_table_sql) : table_exists(db, &exists);
    if (rc == 0 && exists)
        rc = oq_db_query_rows(db,
                              "SELECT version, checksum, DATE_FORMAT(applied_at,"
                              " '%Y-%m-%dT%H:%i:%sZ'), applied_by, name FROM schema_migrations"
                              " ORDER BY version",
                              NULL, 0, on_applied, l);
    if (rc == 0 && !l->oom)
        return 0;
    if (l->oom)
        snprintf(err, errlen, "reading schema_migrations: out of memory");
    else
        snprintf(err, errlen, "reading schema_migrations: %s%s", oq_db_error(db), denied_hint(db));
    free(l->rows);
    l->rows = NULL;
    l->n = 0;
    return l->oom ? OQ_ENOMEM : OQ_EDB;
}

static const struct oq_migration *embedded(int version)
{
    for (size_t i = 0; i < oq_migration_count; i++)
        if (oq_migrations[i].version == version)
            return &oq_migrations[i];
    return NULL;
}

static int is_applied(const struct applied_list *l, int version)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->rows[i].version == version)
            return 1;
    return 0;
}

/* Refuse to go on over an applied file whose text changed since: its
 * effect and the file no longer agree, and a person must decide. Newer
 * migrations this binary lacks are only worth a warning. */
static int check_applied(const struct applied_list *l, char *err, size_t errlen)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct applied *row = &l->rows[i];
        int version = row->version;
        const struct oq_migration *m = embedded(version);
        char sum[65];
        if (m == NULL) {
            oq_warn("the database has migration %04d_%s, which this orderq does not know: a "
                    "newer orderq applied it",
                    version, row->name);
            continue;
        }
        sha256_hex(m->sql, m->len, sum);
        if (strcmp(sum, row->checksum) != 0) {
            snprintf(err, errlen,
                     "migration %04d_%s was edited after it was applied here (its SHA-256 "
                     "differs); applied migrations must not change: revert the edit and add a "
                     "new numbered file",
                     version, m->name);
            return OQ_EINVAL;
        }
    }
    return 0;
}

static int apply_one(struct oq_db *db, const struct oq_migration *m, const char *applied_by,
                     char *err, size_t errlen)
{
    char sum[65];
    int64_t started = oq_now_ms();
    oq_info("applying migration %04d_%s", m->version, m->name);
    if (oq_db_exec_script(db, m->sql, m->len) != 0) {
        snprintf(err, errlen,
                 "migration %04d_%s failed: %s%s (MySQL DDL is not transactional: statements "
                 "before the failing one stay applied; fix the cause and run migrate again)",
                 m->version, m->name, oq_db_error(db), denied_hint(db));
        return OQ_EDB;
    }
    sha256_hex(m->sql, m->len, sum);
    struct oq_db_param p[] = {OQ_INT(m->version), OQ_STR(m->name), OQ_STR(sum), OQ_STR(applied_by),
                              OQ_INT(oq_now_ms() - started)};
    if (oq_db_execute(db,
                      "INSERT INTO schema_migrations (version, name, checksum, applied_at,"
                      " applied_by, duration_ms) VALUES (?, ?, ?, UTC_TIMESTAMP(6), ?, ?)",
                      p, 5, NULL) != 0) {
        snprintf(err, errlen, "recording migration %04d_%s: %s", m->version, m->name,
                 oq_db_error(db));
        return OQ_EDB;
    }
    return 0;
}

int oq_migrate_apply(struct oq_db *db, const char *applied_by, int lock_wait_s, int *applied,
                     char *err, size_t errlen)
{
    long long got = 0;
    int is_null = 0, rc, locked = 0;
    struct applied_list done = {NULL, 0, 0};
    struct oq_db_param wait[] = {OQ_INT(lock_wait_s)};

    *applied = 0;
    rc = oq_db_query_int(db, "SELECT GET_LOCK(" LOCK_SQL ", ?)", wait, 1, &got, &is_null);
    if (rc != 0) {
        snprintf(err, errlen, "taking the migration lock: %s", oq_db_error(db));
        return OQ_EDB;
    }
    if (is_null || got != 1) {
        snprintf(err, errlen,
                 "another orderq migrate of this database has held the lock "
                 "orderq.migrate:<database> for over %d s; try again when it has finished",
                 lock_wait_s);
        return OQ_ETIMEOUT;
    }
    locked = 1;
    rc = read_applied(db, 1, &done, err, errlen);
    if (rc == 0)
        rc = check_applied(&done, err, errlen);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < oq_migration_count; i++) {
        if (is_applied(&done, oq_migrations[i].version))
            continue;
        rc = apply_one(db, &oq_migrations[i], applied_by, err, errlen);
        if (rc != 0)
            goto out;
        (*applied)++;
    }
out:
    free(done.rows);
    if (locked &&
        oq_db_query_int(db, "SELECT RELEASE_LOCK(" LOCK_SQL ")", NULL, 0, &got, &is_null) != 0)
        oq_warn("releasing the migration lock: %s", oq_db_error(db));
    return rc;
}

static int by_version(const void *a, const void *b)
{
    const struct oq_migration_status *x = a, *y = b;
    return (x->version > y->version) - (x->version < y->version);
}

int oq_migrate_status(struct oq_db *db, struct oq_migration_status **out, size_t *n, char *err,
                      size_t errlen)
{
    struct applied_list done;
    struct oq_migration_status *list = NULL;
    size_t count = 0;
    int rc = read_applied(db, 0, &done, err, errlen);

    *out = NULL;
    *n = 0;
    if (rc != 0)
        return rc;
    list = calloc(oq_migration_count + done.n + 1, sizeof(*list));
    if (list == NULL) {
        rc = OQ_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < oq_migration_count; i++) {
        const struct oq_migration *m = &oq_migrations[i];
        list[count].version = m->version;
        snprintf(list[count].name, sizeof(list[count].name), "%s", m->name);
        list[count].state = OQ_MIG_PENDING;
        count++;
    }
    for (size_t r = 0; r < done.n; r++) {
        const struct applied *row = &done.rows[r];
        int version = row->version;
        struct oq_migration_status *s = NULL;
        for (size_t i = 0; i < oq_migration_count; i++)
            if (list[i].version == version)
                s = &list[i];
        if (s == NULL) {
            s = &list[count++];
            s->version = version;
            snprintf(s->name, sizeof(s->name), "%s", row->name);
            s->state = OQ_MIG_UNKNOWN;
        } else {
            char sum[65];
            const struct oq_migration *m = &oq_migrations[s - list];
            sha256_hex(m->sql, m->len, sum);
            s->state = strcmp(sum, row->checksum) == 0 ? OQ_MIG_APPLIED : OQ_MIG_CHANGED;
        }
        snprintf(s->applied_at, sizeof(s->applied_at), "%s", row->applied_at);
        snprintf(s->applied_by, sizeof(s->applied_by), "%s", row->applied_by);
    }
    qsort(list, count, sizeof(*list), by_version);
    *out = list;
    *n = count;
    list = NULL;
out:
    free(list);
    free(done.rows);
    return rc;
}
