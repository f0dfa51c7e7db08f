/* cmd_relay.c - `orderq relay`: publish the outbox, standalone */
#include <signal.h>
#include <string.h>

#include "cli.h"
#include "orderq/log.h"
#include "orderq/relay.h"

static int run(struct cli_cmd_ctx *ctx)
{
    char err[OQ_ERRLEN];
    long long published = 0;
    cli_catch_stop_signals();
    int once = cli_opt(ctx, "--once") != NULL;
    int rc = oq_relay_run(ctx->cfg, &cli_stop_signal, once, &published, err, sizeof(err));
    if (rc != 0) {
        cli_fail("relay: %s", err);
        return cli_exit_code(rc);
    }
    if (once)
        printf("published %lld outbox events\n", published);
    return EX_OK;
}

static const struct cli_opt opts[] = {
    {"--once", NULL, "publish what the outbox holds now, then exit", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_relay = {
    .name = "relay",
    .summary = "Publish outbox events with confirms (also runs inside consume)",
    .usage = "relay [--once]",
    .details = "Takes unpublished outbox rows (FOR UPDATE SKIP LOCKED: several relays share\n"
               "the work), publishes them with publisher confirms, and marks them published\n"
               "only once the broker confirmed them and a queue took them.\n",
    .opts = opts,
    .run = run,
};
