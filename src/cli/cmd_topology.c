/* cmd_topology.c - `orderq topology declare|verify|definitions` */
#include <string.h>

#include "cli.h"
#include "orderq/broker.h"
#include "orderq/topology.h"
#include "orderq/url.h"

static int declare(struct cli_cmd_ctx *ctx, const struct oq_topology *t)
{
    struct oq_broker *b = NULL;
    char err[OQ_ERRLEN * 2];
    int rc = oq_broker_connect(ctx->cfg, "topology", &b, err, sizeof(err));
    if (rc != 0) {
        cli_fail("topology declare: %s", err);
        return cli_exit_code(rc);
    }
    rc =
        oq_topology_declare(b, t, cli_opt(ctx, "--create-shop-exchange") != NULL, err, sizeof(err));
    if (rc == 0)
        printf("declared on vhost %s: %zu exchanges, %zu queues, %zu bindings\n",
               oq_broker_vhost(b), t->n_exchanges, t->n_queues, t->n_bindings);
    else
        cli_fail("topology declare: %s", err);
    oq_broker_close(b);
    return cli_exit_code(rc);
}

static int vhost_of(const struct oq_config *cfg, char *buf, size_t len)
{
    struct oq_amqp_url u;
    char err[OQ_ERRLEN];
    if (oq_amqp_url_parse(cfg->amqp_url, &u, err, sizeof(err)) != 0) {
        cli_fail("amqp_url: %s", err);
        return EX_CONFIG;
    }
    snprintf(buf, len, "%s", u.vhost);
    oq_amqp_url_clear(&u);
    return EX_OK;
}

static int verify(struct cli_cmd_ctx *ctx, const struct oq_topology *t)
{
    char err[OQ_ERRLEN * 2], vhost[256];
    int differences = 0, json = cli_opt(ctx, "--json") != NULL;
    int code = vhost_of(ctx->cfg, vhost, sizeof(vhost));
    if (code != EX_OK)
        return code;
    int rc = oq_topology_verify(ctx->cfg, t, vhost, stdout, json, &differences, err, sizeof(err));
    if (rc != 0) {
        cli_fail("topology verify: %s", err);
        return cli_exit_code(rc);
    }
    if (!json) {
        if (differences == 0)
            printf("vhost %s matches the configuration: %zu exchanges, %zu queues, %zu "
                   "bindings\n",
                   vhost, t->n_exchanges, t->n_queues, t->n_bindings);
        else
            printf("%d difference%s on vhost %s\n", differences, differences == 1 ? "" : "s",
                   vhost);
    }
    return differences == 0 ? EX_OK : 1; /* like diff(1): 1 means "they differ" */
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_topology *t = NULL;
    int code = EX_USAGE;
    const char *sub = ctx->npos == 1 ? ctx->pos[0] : NULL;

    if (sub == NULL || (strcmp(sub, "declare") != 0 && strcmp(sub, "verify") != 0 &&
                        strcmp(sub, "definitions") != 0)) {
        fprintf(stderr, "orderq: topology: expected declare, verify or definitions\n");
        cli_print_cmd_help(ctx->cmd, stderr);
        return EX_USAGE;
    }
    char err[OQ_ERRLEN];
    int rc = oq_topology_plan(ctx->cfg, &t, err, sizeof(err));
    if (rc != 0) {
        cli_fail("topology: %s", err);
        return cli_exit_code(rc);
    }
    if (strcmp(sub, "declare") == 0) {
        code = declare(ctx, t);
    } else if (strcmp(sub, "verify") == 0) {
        code = verify(ctx, t);
    } else {
        char vhost[256];
        const char *given = cli_opt(ctx, "--vhost");
        code = given ? EX_OK : vhost_of(ctx->cfg, vhost, sizeof(vhost));
        if (code == EX_OK)
            code = cli_exit_code(oq_topology_write_definitions(t, given ? given : vhost, stdout));
        fputc('\n', stdout);
    }
    oq_topology_free(t);
    return code;
}

static const struct cli_opt opts[] = {
    {"--create-shop-exchange", NULL,
     "declare: create the shop exchange (topic) if missing, for local use", 0},
    {"--json", NULL, "verify: one JSON object per difference", 0},
    {"--vhost", "VHOST", "definitions: the vhost to write (default: amqp_url's)", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_topology = {
    .name = "topology",
    .summary = "Declare or verify the exchanges, queues and bindings orderq needs",
    .usage = "topology declare|verify|definitions [options]",
    .details = "declare      declare every exchange, queue and binding (safe to repeat); the shop\n"
               "             exchange is only checked unless --create-shop-exchange\n"
               "verify       compare the broker with the configuration through the management API\n"
               "             (amqp_mgmt_url) and list each difference; exit 1 when any\n"
               "definitions  print the topology as a RabbitMQ definitions file\n"
               "             (deploy/rabbitmq/definitions.json is this output for vhost /)\n",
    .opts = opts,
    .run = run,
};
