/* cmd_status.c - `orderq status`: one screen for the operator */
#include "cli.h"
#include "orderq/status.h"

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_status *st = NULL;
    int json = cli_opt(ctx, "--json") != NULL;
    int rc = oq_status_collect(ctx->cfg, &st);
    if (st == NULL) {
        cli_fail("status: out of memory");
        return EX_OSERR;
    }
    if (json) {
        if (oq_status_print_json(st, stdout) != 0)
            rc = OQ_EIO;
        /* The JSON holds the errors too; stderr says it to a script's log. */
        if (!st->broker_ok)
            cli_fail("status: %s", st->broker_error);
        if (!st->db_ok)
            cli_fail("status: %s", st->db_error);
    } else {
        oq_status_print_text(st, stdout);
    }
    oq_status_free(st);
    if (fflush(stdout) != 0 && rc == 0)
        rc = OQ_EIO;
    /* A source that could not be read: the screen is partial (69). */
    return rc == 0 ? EX_OK : (rc == OQ_ENOMEM || rc == OQ_EIO) ? cli_exit_code(rc) : EX_UNAVAILABLE;
}

static const struct cli_opt opts[] = {
    {"--json", NULL, "print one JSON object (docs/operations.md, \"Status\")", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_status = {
    .name = "status",
    .summary = "Show queues, ledger, dead letters and outbox on one screen",
    .usage = "status [--json]",
    .details = "Reads the RabbitMQ management API (amqp_mgmt_url) for each queue of the\n"
               "topology: messages ready, unacked, consumers (quorum queue figures there are\n"
               "a few seconds late); and the database (mysql_url): ledger rows by handler and\n"
               "state, `sending` rows with an expired lease, `unknown` rows, dead letters not\n"
               "replayed by class and the commonest fingerprints, the outbox backlog and the\n"
               "age of its oldest row. Reads only; safe beside running consumers.\n"
               "Exit 0 when both were read; 69 when one could not be: what the other says is\n"
               "still shown, and the failing source is named.\n",
    .opts = opts,
    .run = run,
};
