/* cmd_migrate.c - `orderq migrate [--status]`: bring the schema up to date */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "orderq/db.h"
#include "orderq/log.h"
#include "orderq/migrate.h"

static const char *state_name(enum oq_migration_state s)
{
    switch (s) {
    case OQ_MIG_PENDING:
        return "pending";
    case OQ_MIG_APPLIED:
        return "applied";
    case OQ_MIG_CHANGED:
        return "changed";
    case OQ_MIG_UNKNOWN:
        return "unknown";
    }
    return "?";
}

static int print_status(struct oq_db *db, int json)
{
    struct oq_migration_status *list = NULL;
    size_t n = 0;
    char err[OQ_ERRLEN];
    int pending = 0, changed = 0;
    int rc = oq_migrate_status(db, &list, &n, err, sizeof(err));
    if (rc != 0) {
        cli_fail("migrate --status: %s", err);
        return cli_exit_code(rc);
    }
    if (json)
        fputs("[", stdout);
    else
        printf("%-8s %-28s %-8s %-21s %s\n", "VERSION", "NAME", "STATE", "APPLIED AT (UTC)",
               "APPLIED BY");
    for (size_t i = 0; i < n; i++) {
        pending += list[i].state == OQ_MIG_PENDING;
        changed += list[i].state == OQ_MIG_CHANGED;
        if (json) {
            printf("%s{\"version\": %d, \"name\": ", i ? ", " : "", list[i].version);
            oq_json_fputs(stdout, list[i].name);
            printf(", \"state\": \"%s\", \"applied_at\": ", state_name(list[i].state));
            if (list[i].applied_at[0])
                oq_json_fputs(stdout, list[i].applied_at);
            else
                fputs("null", stdout);
            fputs(", \"applied_by\": ", stdout);
            oq_json_fputs(stdout, list[i].applied_by);
            fputs("}", stdout);
        } else {
            printf("%04d     %-28s %-8s %-21s %s\n", list[i].version, list[i].name,
                   state_name(list[i].state), list[i].applied_at[0] ? list[i].applied_at : "-",
                   list[i].applied_by[0] ? list[i].applied_by : "-");
        }
    }
    if (json)
        fputs("]\n", stdout);
    else
        printf("\n%zu migrations: %zu applied, %d pending%s\n", n, n - (size_t)pending, pending,
               changed ? "; WARNING: a file marked changed was edited after it was applied" : "");
    free(list);
    return EX_OK;
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_db *db = NULL;
    char err[OQ_ERRLEN], who[300], host[256] = "?";
    int applied = 0, rc, code;
    long lock_wait = 60;
    const char *wait_text = cli_opt(ctx, "--lock-wait");

    if (ctx->npos != 0) {
        fprintf(stderr, "orderq: migrate takes no arguments\nUsage: orderq %s\n", ctx->cmd->usage);
        return EX_USAGE;
    }
    if (wait_text != NULL) {
        char *end = NULL;
        errno = 0;
        lock_wait = strtol(wait_text, &end, 10);
        if (errno || end == wait_text || *end || lock_wait < 0 || lock_wait > 86400) {
            fprintf(stderr, "orderq: --lock-wait: expected seconds from 0 to 86400, got \"%s\"\n",
                    wait_text);
            return EX_USAGE;
        }
    }
    rc = oq_db_open(ctx->cfg->mysql_url, ctx->cfg->connect_timeout_ms, OQ_DB_MULTI_STATEMENTS, &db,
                    err, sizeof(err));
    if (rc != 0) {
        cli_fail("migrate: %s", err);
        return cli_exit_code(rc);
    }
    if (cli_opt(ctx, "--status") != NULL) {
        code = print_status(db, cli_opt(ctx, "--json") != NULL);
        goto out;
    }
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(who, sizeof(who), "%s@%s", getenv("USER") ? getenv("USER") : "?", host);
    rc = oq_migrate_apply(db, who, (int)lock_wait, &applied, err, sizeof(err));
    if (rc != 0) {
        cli_fail("migrate: %s", err);
        code = cli_exit_code(rc);
        goto out;
    }
    if (cli_opt(ctx, "--json") != NULL)
        printf("{\"applied\": %d}\n", applied);
    else if (applied == 0)
        printf("schema is up to date (%zu migrations)\n", oq_migration_count);
    else
        printf("applied %d migration%s; schema is up to date (%zu migrations)\n", applied,
               applied == 1 ? "" : "s", oq_migration_count);
    code = EX_OK;
out:
    oq_db_close(db);
    return code;
}

static const struct cli_opt opts[] = {
    {"--status", NULL, "list applied and pending migrations, change nothing", 0},
    {"--json", NULL, "print JSON", 0},
    {"--lock-wait", "SECONDS", "wait this long for another migrate to finish (default 60)", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_migrate = {
    .name = "migrate",
    .summary = "Apply the database migrations that are not applied yet",
    .usage = "migrate [--status] [--json] [--lock-wait SECONDS]",
    .details = "The sql/NNNN_*.sql files are built into orderq. Each is applied once, in order,\n"
               "and recorded in schema_migrations with its SHA-256. A named lock (GET_LOCK\n"
               "'orderq.migrate') makes concurrent runs safe: the second waits, then finds\n"
               "nothing to do. Needs CREATE, ALTER, INDEX, REFERENCES and row rights on the\n"
               "database in mysql_url: run it as a migration user of its own, e.g.\n"
               "ORDERQ_MYSQL_URL='mysql://orderq_migrate:...@host/orderq' orderq migrate,\n"
               "and keep the consumer's user to SELECT, INSERT, UPDATE, DELETE\n"
               "(docs/operations.md). --status needs only SELECT.\n",
    .opts = opts,
    .run = run,
};
