/* cmd_relay.c - `orderq relay`: publish the outbox, or a legacy queue table, standalone */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "orderq/gauges.h"
#include "orderq/legacy.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/relay.h"

static struct cli_progress legacy_bar;

static void draw_legacy(const struct oq_legacy_progress *p, int final)
{
    if (legacy_bar.start_ms == 0)
        cli_progress_start(&legacy_bar, p->total);
    cli_progress_draw(&legacy_bar, p->published + p->refused, final);
}

static int run_legacy(struct cli_cmd_ctx *ctx, const char *table, int once)
{
    char err[OQ_ERRLEN];
    struct oq_legacy_progress progress = {0};
    if (!oq_legacy_table_name_ok(table)) {
        cli_fail("relay: --legacy-table: \"%s\" is not a table name (letters, digits and _, "
                 "at most 64)",
                 table);
        return EX_USAGE;
    }
    if (once && isatty(STDERR_FILENO))
        progress.update = draw_legacy;
    int rc =
        oq_legacy_relay_run(ctx->cfg, table, &cli_stop_signal, once, &progress, err, sizeof(err));
    if (rc != 0) {
        cli_fail("relay: %s", err);
        return cli_exit_code(rc);
    }
    if (once)
        printf("published %lld rows of %s; %lld left unexecuted with a reason in "
               "execute_result\n",
               progress.published, table, progress.refused);
    return EX_OK;
}

static int relay(struct cli_cmd_ctx *ctx, const char *legacy, int once)
{
    char err[OQ_ERRLEN];
    long long published = 0;
    if (legacy != NULL)
        return run_legacy(ctx, legacy, once);
    int rc = oq_relay_run(ctx->cfg, &cli_stop_signal, once, &published, err, sizeof(err));
    if (rc != 0) {
        cli_fail("relay: %s", err);
        return cli_exit_code(rc);
    }
    if (once)
        printf("published %lld outbox events\n", published);
    return EX_OK;
}

/* A long-running relay is a service like consume: probes and a scrape
 * target on http_addr (the outbox relay with the database gauges, which
 * are its own lag); --once is a command, it serves nothing. */
static int run(struct cli_cmd_ctx *ctx)
{
    char err[OQ_ERRLEN * 2];
    struct oq_metrics_server *metrics = NULL;
    struct oq_gauges *gauges = NULL;
    const char *legacy = cli_opt(ctx, "--legacy-table");
    int once = cli_opt(ctx, "--once") != NULL;
    cli_catch_stop_signals();
    if (!once) {
        int rc = oq_metrics_start(ctx->cfg, &metrics, err, sizeof(err));
        if (rc != 0) {
            cli_fail("relay: %s", err);
            return cli_exit_code(rc);
        }
        if (metrics != NULL)
            oq_info("relay metrics on http://%s/metrics", ctx->cfg->http_addr);
        /* The outbox gauges are the outbox relay's lag; the legacy bridge's
         * database may have no outbox at all. */
        if (metrics != NULL && legacy == NULL) {
            if (oq_gauges_start(ctx->cfg, &gauges) != 0)
                oq_warn("relay: cannot start the metrics gauge reader: out of memory");
        }
    }
    int code = relay(ctx, legacy, once);
    oq_gauges_stop(gauges);
    oq_metrics_stop(metrics);
    return code;
}

static const struct cli_opt opts[] = {
    {"--once", NULL, "publish what is waiting now, then exit", 0},
    {"--legacy-table", "NAME",
     "relay a Magento-style queue table (coupon_queue) instead of the outbox", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_relay = {
    .name = "relay",
    .summary = "Publish outbox events with confirms (also runs inside consume)",
    .usage = "relay [--once] [--legacy-table NAME]",
    .details = "Takes unpublished outbox rows (FOR UPDATE SKIP LOCKED: several relays share\n"
               "the work), publishes them with publisher confirms, and marks them published\n"
               "only once the broker confirmed them and a queue took them.\n"
               "\n"
               "--legacy-table NAME relays a table shaped like sql/legacy/coupon_queue.sql:\n"
               "rows with is_executed = 0 in id order, event_data decoded from PHP serialize()\n"
               "into the JSON envelope, published to shop_exchange with routing key =\n"
               "event_code; after the confirm is_executed = 1, executed_at and execute_result\n"
               "are set. A row that cannot be decoded or that no queue takes gets\n"
               "execute_result \"orderq: <reason>\", stays unexecuted and is skipped until\n"
               "execute_result is cleared. A progress bar with --once on a terminal.\n"
               "\n"
               "Without --once it serves /metrics, /healthz and /readyz on http_addr, as consume\n"
               "does: /readyz is 200 while its last pass reached RabbitMQ and MySQL, 503 after\n"
               "a pass failed on either. Give it a port of its own beside consumers on one\n"
               "host, the legacy bridge too (--http-addr 127.0.0.1:9465; docs/deploy.md).\n",
    .opts = opts,
    .run = run,
};
