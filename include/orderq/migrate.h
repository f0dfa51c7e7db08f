/* migrate.h - apply the numbered sql/ files once, in order, under a lock
 *
 * The files are compiled into the binary (cmake/embed_sql.cmake), so a
 * deployed orderq needs no checkout. Applied versions are kept in
 * schema_migrations with a SHA-256 of the text: `migrate` refuses to run
 * over an applied file that was edited since. A named lock per database
 * (GET_LOCK 'orderq.migrate:<database>') makes two processes at once safe:
 * the second waits and then finds nothing left to do.
 */
#ifndef ORDERQ_MIGRATE_H
#define ORDERQ_MIGRATE_H

#include <stddef.h>

#include "orderq/common.h"

struct oq_db;

struct oq_migration {
    int version;
    const char *name;
    const char *sql;
    size_t len;
};

/* The embedded migrations, by version; terminated by a NULL name. */
extern const struct oq_migration oq_migrations[];
extern const size_t oq_migration_count;

enum oq_migration_state {
    OQ_MIG_PENDING = 0,
    OQ_MIG_APPLIED,
    OQ_MIG_CHANGED, /* applied, but the file's text has changed since */
    OQ_MIG_UNKNOWN, /* applied by another (newer) orderq; not in this binary */
};

struct oq_migration_status {
    int version;
    char name[128];
    enum oq_migration_state state;
    char applied_at[40]; /* UTC, "" when pending */
    char applied_by[128];
};

/* Apply every pending migration. lock_wait_s: how long to wait for another
 * process' run to finish. *applied gets how many this call applied.
 * Returns 0, OQ_ETIMEOUT (lock not had), OQ_EINVAL (an applied file was
 * edited since) or OQ_EDB, with the reason in err. */
OQ_WUR int oq_migrate_apply(struct oq_db *db, const char *applied_by, int lock_wait_s, int *applied,
                            char *err, size_t errlen);

/* Every migration known here or applied there, by version. The caller
 * frees *out. Returns 0, OQ_ENOMEM or OQ_EDB. */
OQ_WUR int oq_migrate_status(struct oq_db *db, struct oq_migration_status **out, size_t *n,
                             char *err, size_t errlen);

#endif
