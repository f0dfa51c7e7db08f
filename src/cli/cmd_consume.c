/* cmd_consume.c - `orderq consume`: the service: consume, apply once, ack, relay */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "orderq/gauges.h"
#include "orderq/handler.h"
#include "orderq/db.h"
#include "orderq/deadletter.h"
#include "orderq/log.h"
#include "orderq/migrate.h"
#include "orderq/metrics.h"
#include "orderq/pipeline.h"
#include "orderq/relay.h"
#include "orderq/sweeper.h"

/* The queues to consume: --queue NAMEs (checked), else one per handler. */
static int pick_queues(struct cli_cmd_ctx *ctx, const char **names, size_t max, size_t *n,
                       char (*built)[256])
{
    const char **given = NULL;
    int ngiven = cli_opt_all(ctx, "--queue", &given);
    *n = 0;
    for (int i = 0; i < ngiven && *n < max; i++) {
        char why[300];
        if (oq_amqp_name_check(given[i], why, sizeof(why)) != 0) {
            fprintf(stderr, "orderq: consume: --queue: %s\n", why);
            return EX_USAGE;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(given[i], given[j]) == 0) {
                fprintf(stderr, "orderq: consume: --queue %s given twice\n", given[i]);
                return EX_USAGE;
            }
        names[(*n)++] = given[i];
    }
    if (*n > 0)
        return EX_OK;
    struct oq_handler *handlers = NULL;
    size_t nh = 0;
    char err[OQ_ERRLEN];
    int rc = oq_handlers_new(ctx->cfg, &handlers, &nh, err, sizeof(err));
    if (rc != 0) {
        cli_fail("consume: %s", err);
        return cli_exit_code(rc);
    }
    for (size_t i = 0; i < nh && *n < max; i++) {
        snprintf(built[*n], 256, "%s.%s", ctx->cfg->queue_prefix,
                 handlers[i].queue ? handlers[i].queue : handlers[i].event_code);
        names[*n] = built[*n];
        (*n)++;
    }
    oq_handlers_free(handlers, nh);
    return EX_OK;
}

/* Refuse to start against a schema this binary is ahead of. A database
 * that cannot be reached now is not refused: the pipeline waits for it. */
static int check_schema(const struct oq_config *cfg)
{
    struct oq_db *db = NULL;
    struct oq_migration_status *list = NULL;
    size_t n = 0, pending = 0;
    char err[OQ_ERRLEN];
    if (oq_db_open(cfg->mysql_url, cfg->connect_timeout_ms, 0, &db, err, sizeof(err)) != 0) {
        oq_warn("%s; starting anyway, the consumer waits for MySQL", err);
        return EX_OK;
    }
    int rc = oq_migrate_status(db, &list, &n, err, sizeof(err));
    for (size_t i = 0; rc == 0 && i < n; i++)
        pending += list[i].state == OQ_MIG_PENDING;
    free(list);
    oq_db_close(db);
    if (rc == 0 && pending > 0) {
        cli_fail("consume: the database has %zu migration%s to apply: run `orderq migrate`",
                 pending, pending == 1 ? "" : "s");
        return EX_UNAVAILABLE;
    }
    return EX_OK;
}

static int run(struct cli_cmd_ctx *ctx)
{
    static char built[32][256];
    const char *queues[32];
    size_t n = 0;
    struct oq_metrics_server *metrics = NULL;
    struct oq_relay *relay = NULL;
    struct oq_archiver *archiver = NULL;
    struct oq_sweeper *sweeper = NULL;
    struct oq_gauges *gauges = NULL;
    char err[OQ_ERRLEN * 2];
    int code;

    if (ctx->npos != 0) {
        fprintf(stderr, "orderq: consume takes no arguments\nUsage: orderq %s\n", ctx->cmd->usage);
        return EX_USAGE;
    }
    if ((code = pick_queues(ctx, queues, 32, &n, built)) != EX_OK)
        return code;
    if ((code = check_schema(ctx->cfg)) != EX_OK)
        return code;
    cli_catch_stop_signals();
    int rc = oq_metrics_start(ctx->cfg, &metrics, err, sizeof(err));
    if (rc != 0) {
        cli_fail("consume: %s", err);
        return cli_exit_code(rc);
    }
    if (metrics != NULL)
        oq_info("metrics on http://%s/metrics", ctx->cfg->http_addr);
    oq_info("orderq %s consume starting as %s", ORDERQ_VERSION, ctx->cfg->instance_id);
    if (cli_opt(ctx, "--no-relay") == NULL && oq_relay_start(ctx->cfg, &relay) != 0) {
        cli_fail("consume: cannot start the outbox relay");
        oq_metrics_stop(metrics);
        return EX_OSERR;
    }
    if (cli_opt(ctx, "--no-archive") == NULL && oq_archiver_start(ctx->cfg, &archiver) != 0) {
        cli_fail("consume: cannot start the dead-letter archiver");
        oq_relay_stop(relay);
        oq_metrics_stop(metrics);
        return EX_OSERR;
    }
    if (cli_opt(ctx, "--no-sweep") == NULL && oq_sweeper_start(ctx->cfg, &sweeper) != 0) {
        cli_fail("consume: cannot start the lease sweeper");
        oq_archiver_stop(archiver);
        oq_relay_stop(relay);
        oq_metrics_stop(metrics);
        return EX_OSERR;
    }
    if (metrics != NULL && oq_gauges_start(ctx->cfg, &gauges) != 0)
        oq_warn("consume: cannot start the metrics gauge reader: out of memory");
    rc = oq_pipeline_run(ctx->cfg, queues, n, &cli_stop_signal, oq_relay_wake, relay, err,
                         sizeof(err));
    oq_gauges_stop(gauges);
    oq_sweeper_stop(sweeper);
    oq_archiver_stop(archiver);
    oq_relay_stop(relay);
    if (rc != 0)
        cli_fail("consume: %s", err);
    else if (cli_stop_signal)
        oq_info("stopped by signal %d", (int)cli_stop_signal);
    oq_metrics_stop(metrics);
    return cli_exit_code(rc);
}

static const struct cli_opt opts[] = {
    {"--queue", "NAME", "consume only this queue (default: each queue with a handler)", 1},
    {"--no-relay", NULL, "do not run the outbox relay in this process", 0},
    {"--no-archive", NULL, "do not archive the dead-letter queue into dead_letter here", 0},
    {"--no-sweep", NULL, "do not run the lease sweeper here (abandoned `sending` leases)", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_consume = {
    .name = "consume",
    .summary = "Run the consumer service (foreground; stops cleanly on SIGTERM or SIGINT)",
    .usage = "consume [--queue NAME]... [--instance-id ID] [--prefetch N] [--batch-size N]",
    .details =
        "Consumes the work queues of every registered handler (<queue_prefix>.<event_code>:\n"
        "order.processing (coupon rules), coupon.email, invoice.created, invoice.updated\n"
        "(customer mail), probe (the drill event), and <queue_prefix>.webhook when\n"
        "webhooks_file is set) in batches of batch_size deliveries or batch_window_ms, one\n"
        "MySQL transaction per batch: each effect is claimed in the ledger first, so\n"
        "however often an event arrives it takes effect once. Mail and webhooks are sent\n"
        "by effect_workers threads under a lease (docs/mail.md), never on the thread that\n"
        "talks to RabbitMQ. Acks come last. A transient failure comes back through the delay\n"
        "tiers (retry_tiers, up to max_attempts); bad input, permanent failures and spent\n"
        "retries are dead-lettered with a reason. Inside run the outbox relay and the\n"
        "archiver, which stores the dead-letter queue in dead_letter (`orderq dlq`), and the\n"
        "lease sweeper, which marks `sending` rows whose lease ran out more than\n"
        "sweep_after_ms ago unknown and dead-letters them as ambiguous (docs/consumer.md).\n"
        "Reconnects to RabbitMQ and MySQL with jittered exponential backoff. Serves\n"
        "/metrics, /healthz, /readyz on http_addr. SIGTERM or SIGINT: finish and ack the\n"
        "batches in hand (shutdown_timeout_ms), exit 0; a second signal exits at once.\n",
    .opts = opts,
    .run = run,
};
