/* cmd_ledger.c - `orderq ledger show|stats|prune|sweep`: look into the dedup ledger */
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "orderq/db.h"
#include "orderq/ledger.h"
#include "orderq/sweeper.h"

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

/* The table by handler and state, then (text) a line on expired `sending`
 * leases; JSON has them as two more fields of each row, so it stays an
 * array of rows. */
static int stats(struct oq_db *db, const struct oq_config *cfg, int json)
{
    static const char *const names[] = {
        "handler", "state", "total", "last_hour", "last_day", "expired_leases", "abandoned_leases"};
    struct printer p = {json, 0, names, 31u << 2}; /* the counts */
    struct oq_db_param prm[] = {OQ_INT(cfg->sweep_after_ms * 1000)};
    char err[OQ_ERRLEN], grace[32];
    if (json)
        return print_query(
            db, "stats",
            "SELECT handler, state, COUNT(*), SUM(created_at >= NOW(6) - INTERVAL 1 HOUR),"
            " SUM(created_at >= NOW(6) - INTERVAL 1 DAY),"
            " COALESCE(SUM(state = 'sending' AND lease_until < NOW(6)), 0),"
            " COALESCE(SUM(state = 'sending' AND lease_until < NOW(6) - INTERVAL ? MICROSECOND),"
            " 0) FROM event_ledger GROUP BY handler, state ORDER BY handler, state",
            prm, 1, &p, 7);
    int code = print_query(
        db, "stats",
        "SELECT handler, state, COUNT(*),"
        " SUM(created_at >= NOW(6) - INTERVAL 1 HOUR), SUM(created_at >= NOW(6) - INTERVAL 1 DAY)"
        " FROM event_ledger GROUP BY handler, state ORDER BY handler, state",
        NULL, 0, &p, 5);
    if (code != EX_OK)
        return code;
    struct oq_lease_counts c;
    if (oq_ledger_lease_counts(db, cfg->sweep_after_ms, &c, err, sizeof(err)) != 0) {
        cli_fail("ledger stats: %s", err);
        return EX_UNAVAILABLE;
    }
    oq_duration_format(cfg->sweep_after_ms, grace, sizeof(grace));
    printf("\nexpired sending leases: %lld (%lld of them ran out more than sweep_after_ms = %s "
           "ago: abandoned, the lease sweeper marks them unknown)\n",
           (long long)c.expired, (long long)c.abandoned, grace);
    return EX_OK;
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

struct sweep_out {
    int json, dry_run, rows;
};

static void print_swept(void *ctx, const struct oq_lease_row *row)
{
    struct sweep_out *o = ctx;
    if (o->json) {
        fputs(o->rows ? ",\n  {" : "\n  {", stdout);
        const char *keys[] = {"handler",    "effect_key", "event_identifier",
                              "event_code", "owner",      "lease_until"};
        const char *vals[] = {row->handler,    row->effect_key, row->event_identifier,
                              row->event_code, row->owner,      row->lease_until};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            printf("%s\"%s\": ", i ? ", " : "", keys[i]);
            oq_json_fputs(stdout, vals[i]);
        }
        printf(", \"attempts\": %lld, \"expired_ms\": %lld}", (long long)row->attempts,
               (long long)row->expired_ms);
    } else {
        printf("%s %s/%s (event %s): the lease of %s ran out at %s UTC, %lld s ago\n",
               o->dry_run ? "would sweep" : "swept", row->handler, row->effect_key,
               row->event_identifier, row->owner, row->lease_until,
               (long long)(row->expired_ms / 1000));
    }
    o->rows++;
}

/* Settle the abandoned leases now (what every consumer's sweeper does on
 * its own), or with --dry-run list them. */
static int sweep(struct oq_db *db, const struct oq_config *cfg, int dry_run, int json)
{
    enum { DRY_RUN_ROWS = 1000 };
    struct sweep_out o = {json, dry_run, 0};
    struct oq_sweep_stats st;
    char who[256], err[OQ_ERRLEN], grace[32];
    snprintf(who, sizeof(who), "%s/ledger-sweep", cfg->instance_id);
    oq_duration_format(cfg->sweep_after_ms, grace, sizeof(grace));
    if (json)
        printf("{\"dry_run\": %s, \"sweep_after_ms\": %lld, \"rows\": [",
               dry_run ? "true" : "false", (long long)cfg->sweep_after_ms);
    cli_catch_stop_signals();
    int rc = oq_sweep(db, cfg, who, dry_run, DRY_RUN_ROWS, print_swept, &o, &cli_stop_signal, &st,
                      err, sizeof(err));
    if (json) {
        printf("%s], \"%s\": %lld, \"letters\": %lld, \"lost\": %lld", o.rows ? "\n" : "",
               dry_run ? "would_sweep" : "swept", (long long)st.swept, (long long)st.letters,
               (long long)st.lost);
        if (rc == 0)
            printf(", \"expired_leases\": %lld, \"abandoned_leases\": %lld, \"unknown\": %lld",
                   (long long)st.after.expired, (long long)st.after.abandoned,
                   (long long)st.after.unknown);
        printf(", \"interrupted\": %s}\n", cli_stop_signal ? "true" : "false");
    }
    if (rc != 0) {
        cli_fail("ledger sweep: %s (%lld rows swept before)", err, (long long)st.swept);
        return cli_exit_code(rc);
    }
    if (!json && dry_run) {
        printf("would sweep %lld abandoned lease%s (sending, the lease run out more than "
               "sweep_after_ms = %s ago); dry run: nothing changed\n",
               (long long)st.after.abandoned, st.after.abandoned == 1 ? "" : "s", grace);
        if (st.after.abandoned > st.swept)
            printf("(%lld listed)\n", (long long)st.swept);
    } else if (!json) {
        printf("swept %lld abandoned lease%s: marked unknown, %lld dead letter%s of class "
               "ambiguous stored (orderq dlq list --error-like 'no delivery came back')\n",
               (long long)st.swept, st.swept == 1 ? "" : "s", (long long)st.letters,
               st.letters == 1 ? "" : "s");
        if (st.lost > 0)
            printf("%lld settled or taken over by another process meanwhile\n", (long long)st.lost);
    }
    if (!json)
        printf("expired sending leases left: %lld (within sweep_after_ms = %s: a delivery may "
               "still come back for them); unknown rows: %lld\n",
               (long long)(st.after.expired - st.after.abandoned), grace,
               (long long)st.after.unknown);
    if (cli_stop_signal) {
        if (!json)
            printf("stopped by signal %d: the rest were not swept\n", (int)cli_stop_signal);
        return 128 + (int)cli_stop_signal;
    }
    return EX_OK;
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_db *db = NULL;
    char err[OQ_ERRLEN];
    const char *sub = ctx->npos > 0 ? ctx->pos[0] : "";
    int json = cli_opt(ctx, "--json") != NULL, code;
    int ok =
        (strcmp(sub, "show") == 0 && ctx->npos == 2) ||
        ((strcmp(sub, "stats") == 0 || strcmp(sub, "prune") == 0 || strcmp(sub, "sweep") == 0) &&
         ctx->npos == 1);
    if (ok && cli_opt(ctx, "--dry-run") != NULL && strcmp(sub, "sweep") != 0) {
        fprintf(stderr, "orderq: ledger %s: --dry-run is for sweep\n", sub);
        return EX_USAGE;
    }
    if (!ok) {
        fprintf(stderr,
                "orderq: ledger: expected show EVENT_IDENTIFIER, stats, prune or sweep\n"
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
        code = stats(db, ctx->cfg, json);
    else if (strcmp(sub, "sweep") == 0)
        code = sweep(db, ctx->cfg, cli_opt(ctx, "--dry-run") != NULL, json);
    else
        code = prune(db, cli_opt(ctx, "--older-than"), json);
    oq_db_close(db);
    return code;
}

static const struct cli_opt opts[] = {
    {"--json", NULL, "print JSON", 0},
    {"--older-than", "DURATION", "prune: delete finished rows older than this (e.g. 180d)", 0},
    {"--dry-run", NULL, "sweep: list the abandoned leases, change nothing", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_ledger = {
    .name = "ledger",
    .summary = "Inspect or prune the dedup ledger",
    .usage = "ledger show EVENT_IDENTIFIER | ledger stats | ledger prune --older-than 180d |\n"
             "       ledger sweep [--dry-run] [--json]",
    .details = "show   every handler's row for an event (or an effect key such as invoice:501);\n"
               "       exit 1 when there is none\n"
               "stats  rows by handler and state: in all, in the last hour, in the last day;\n"
               "       then the `sending` rows whose lease ran out, and how many of them ran\n"
               "       out more than sweep_after_ms ago (abandoned)\n"
               "prune  delete finished rows (done, sent) older than --older-than, 1000 at a\n"
               "       time. A pruned event that is delivered again takes effect again: keep\n"
               "       rows longer than any redelivery or replay can come.\n"
               "sweep  settle the abandoned leases now, as each consumer's lease sweeper does\n"
               "       every few seconds: `sending` rows whose lease ran out more than\n"
               "       sweep_after_ms ago (no delivery is left to come back for them) become\n"
               "       `unknown`, each with one dead letter of class ambiguous for a person\n"
               "       (docs/consumer.md, \"Abandoned leases\"). Nothing is sent. Safe beside\n"
               "       running consumers and other sweeps: a row is settled once.\n"
               "       --dry-run lists them (at most 1000) and changes nothing.\n",
    .opts = opts,
    .run = run,
};
