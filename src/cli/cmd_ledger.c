/* cmd_ledger.c - `orderq ledger show|stats|prune`: look into the dedup ledger */
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "orderq/db.h"

struct printer {
    int json;
    int rows;
    const char *const *names; /* column names, for JSON */
    unsigned numeric;         /* bit i: column i is a number in JSON */
};

static int print_row(void *ctx, const char *const *v, unsigned n)
{
    struct printer *p = ctx;
    if (p->json) {
        fputs(p->rows ? ",\n {" : "[{", stdout);
        for (unsigned i = 0; i < n; i++) {
            printf("%s\"%s\": ", i ? ", " : "", p->names[i]);
            if (v[i] == NULL)
                fputs("null", stdout);
            else if (p->numeric & (1u << i))
                fputs(v[i], stdout);
            else
                oq_json_fputs(stdout, v[i]);
        }
        fputs("}", stdout);
    } else {
        for (unsigned i = 0; i < n; i++)
            printf("%-*s%s", i + 1 < n ? 20 : 0, v[i] ? v[i] : "-", i + 1 < n ? " " : "\n");
    }
    p->rows++;
    return 0;
}

/* Run a query and print its rows: a table under a header of the column
 * names, or a JSON array. *rows gets how many. Returns an exit code. */
static int print_query(struct oq_db *db, const char *what, const char *sql,
                       const struct oq_db_param *prm, size_t nprm, struct printer *p,
                       unsigned ncols)
{
    if (!p->json)
        for (unsigned i = 0; i < ncols; i++)
            printf("%-*s%s", i + 1 < ncols ? 20 : 0, p->names[i], i + 1 < ncols ? " " : "\n");
    int rc = oq_db_query_rows(db, sql, prm, nprm, print_row, p);
    if (rc != 0) {
        cli_fail("ledger %s: %s", what, oq_db_error(db));
        return cli_exit_code(rc);
    }
    if (p->json)
        fputs(p->rows ? "]\n" : "[]\n", stdout);
    return EX_OK;
}

static int show(struct oq_db *db, const char *id, int json)
{
    static const char *const names[] = {
        "handler", "effect_key",  "event_identifier", "event_code", "state",      "attempts",
        "owner",   "lease_until", "result",           "created_at", "executed_at"};
    struct printer p = {json, 0, names, 1u << 5}; /* attempts */
    struct oq_db_param prm[] = {OQ_STR(id), OQ_STR(id)};
    int code = print_query(db, "show",
                           "SELECT handler, effect_key, event_identifier, event_code, state,"
                           " attempts, owner, lease_until, result, created_at, executed_at"
                           " FROM event_ledger WHERE event_identifier = ? OR effect_key = ?"
                           " ORDER BY handler",
                           prm, 2, &p, 11);
    if (code != EX_OK)
        return code;
    if (!json && p.rows == 0)
        printf("(no ledger row for \"%s\")\n", id);
    return p.rows ? EX_OK : 1;
}

static int stats(struct oq_db *db, int json)
{
    static const char *const names[] = {"handler", "state", "total", "last_hour", "last_day"};
    struct printer p = {json, 0, names, 7u << 2}; /* the three counts */
    return print_query(
        db, "stats",
        "SELECT handler, state, COUNT(*),"
        " SUM(created_at >= NOW(6) - INTERVAL 1 HOUR), SUM(created_at >= NOW(6) - INTERVAL 1 DAY)"
        " FROM event_ledger GROUP BY handler, state ORDER BY handler, state",
        NULL, 0, &p, 5);
}

/* Delete finished rows older than the cut-off in chunks of 1000, each its
 * own short transaction, so the table is never locked for long. */
static int prune(struct oq_db *db, const char *older_than, int json)
{
    int64_t ms = 0;
    uint64_t total = 0, n = 0;
    if (older_than == NULL || oq_duration_parse(older_than, &ms) != 0 || ms < 3600000) {
        fprintf(stderr,
                "orderq: ledger prune: --older-than: expected a duration of at least 1h "
                "(as 180d), got \"%s\"\n",
                older_than ? older_than : "");
        return EX_USAGE;
    }
    struct oq_db_param prm[] = {OQ_INT(ms / 1000)};
    int tty = isatty(STDERR_FILENO);
    do {
        if (oq_db_execute(db,
                          "DELETE FROM event_ledger WHERE created_at < NOW(6) - INTERVAL ? SECOND"
                          " AND state IN ('done', 'sent') LIMIT 1000",
                          prm, 1, &n) != 0) {
            cli_fail("ledger prune: %s (%llu rows deleted before)", oq_db_error(db),
                     (unsigned long long)total);
            return EX_UNAVAILABLE;
        }
        total += n;
        if (tty)
            fprintf(stderr, "\rdeleted %llu", (unsigned long long)total);
    } while (n > 0);
    if (tty)
        fputc('\n', stderr);
    printf(json ? "{\"deleted\": %llu}\n" : "deleted %llu ledger rows\n",
           (unsigned long long)total);
    return EX_OK;
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_db *db = NULL;
    char err[OQ_ERRLEN];
    const char *sub = ctx->npos > 0 ? ctx->pos[0] : "";
    int json = cli_opt(ctx, "--json") != NULL, code;
    int ok = (strcmp(sub, "show") == 0 && ctx->npos == 2) ||
             ((strcmp(sub, "stats") == 0 || strcmp(sub, "prune") == 0) && ctx->npos == 1);
    if (!ok) {
        fprintf(stderr,
                "orderq: ledger: expected show EVENT_IDENTIFIER, stats or prune\n"
                "Usage: orderq %s\n",
                ctx->cmd->usage);
        return EX_USAGE;
    }
    int rc =
        oq_db_open(ctx->cfg->mysql_url, ctx->cfg->connect_timeout_ms, 0, &db, err, sizeof(err));
    if (rc != 0) {
        cli_fail("ledger: %s", err);
        return cli_exit_code(rc);
    }
    if (strcmp(sub, "show") == 0)
        code = show(db, ctx->pos[1], json);
    else if (strcmp(sub, "stats") == 0)
        code = stats(db, json);
    else
        code = prune(db, cli_opt(ctx, "--older-than"), json);
    oq_db_close(db);
    return code;
}

static const struct cli_opt opts[] = {
    {"--json", NULL, "print JSON", 0},
    {"--older-than", "DURATION", "prune: delete finished rows older than this (e.g. 180d)", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_ledger = {
    .name = "ledger",
    .summary = "Inspect or prune the dedup ledger",
    .usage = "ledger show EVENT_IDENTIFIER | ledger stats | ledger prune --older-than 180d",
    .details = "show   every handler's row for an event (or an effect key such as invoice:501);\n"
               "       exit 1 when there is none\n"
               "stats  rows by handler and state: in all, in the last hour, in the last day\n"
               "prune  delete finished rows (done, sent) older than --older-than, 1000 at a\n"
               "       time. A pruned event that is delivered again takes effect again: keep\n"
               "       rows longer than any redelivery or replay can come.\n",
    .opts = opts,
    .run = run,
};
