/* cmd_config.c - `orderq config show`: the effective configuration */
#include <string.h>

#include "cli.h"

static int run(struct cli_cmd_ctx *ctx)
{
    if (ctx->npos == 1 && strcmp(ctx->pos[0], "show") == 0) {
        int rc = oq_config_show(ctx->cfg, stdout, cli_opt(ctx, "--json") != NULL);
        return cli_exit_code(rc);
    }
    if (ctx->npos == 0) {
        cli_print_cmd_help(ctx->cmd, stderr);
        return EX_USAGE;
    }
    fprintf(stderr, "orderq: config: unknown subcommand \"%s\"\nUsage: orderq %s\n", ctx->pos[0],
            ctx->cmd->usage);
    return EX_USAGE;
}

static const struct cli_opt opts[] = {
    {"--json", NULL, "print JSON: {setting: {value, source}}", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_config = {
    .name = "config",
    .summary = "Show the effective configuration, secrets redacted",
    .usage = "config show [--json]",
    .details = "Each value comes from the first of: a flag, ORDERQ_<SETTING> in the environment,\n"
               "the JSON file (--config FILE or ORDERQ_CONFIG; comments allowed), the default.\n"
               "`show` prints every setting with where its value came from. Passwords, also\n"
               "inside URLs, are printed as ***.\n",
    .opts = opts,
    .run = run,
    .extra_help = oq_config_print_help,
};
