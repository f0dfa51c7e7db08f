/* cmd_shop.c - `orderq shop order ID`: do the shop API settings work, and what does it answer? */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "orderq/shopapi.h"

static const char *const outcome_names[] = {"found", "transient", "permanent"};

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_shopapi *api = NULL;
    char err[OQ_ERRLEN], why[OQ_ERRLEN] = "", *data = NULL;
    if (ctx->npos != 2 || strcmp(ctx->pos[0], "order") != 0) {
        fprintf(stderr, "Usage: orderq %s\n", ctx->cmd->usage);
        return EX_USAGE;
    }
    int rc = oq_shopapi_new(ctx->cfg, &api, err, sizeof(err));
    if (rc != 0) {
        cli_fail("shop: %s", err);
        return cli_exit_code(rc);
    }
    enum oq_http_outcome outcome = oq_shopapi_order(api, ctx->pos[1], &data, why, sizeof(why));
    oq_shopapi_free(api);
    if (cli_opt(ctx, "--json") != NULL) {
        printf("{\"outcome\": \"%s\", ", outcome_names[outcome]);
        if (data != NULL) {
            printf("\"event_data\": %s}\n", data);
        } else {
            printf("\"error\": ");
            oq_json_fputs(stdout, why);
            printf("}\n");
        }
    } else if (data != NULL) {
        printf("%s\n", data);
    } else {
        printf("%s: %s\n", outcome_names[outcome], why);
    }
    free(data);
    switch (outcome) {
    case OQ_HTTP_DONE:
        return EX_OK;
    case OQ_HTTP_PERMANENT:
        return EX_DATAERR;
    default:
        return EX_TEMPFAIL;
    }
}

static const struct cli_opt opts[] = {
    {"--json", NULL, "print the outcome and the event_data as JSON", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_shop = {
    .name = "shop",
    .summary = "Look an order up in the shop's REST API, as the handlers do",
    .usage = "shop order ORDER_ID [--json]",
    .details = "GET {shop_api_url}/rest/V1/orders/ORDER_ID with the bearer token from\n"
               "shop_api_token or shop_api_token_file, within shop_api_timeout_ms, and prints\n"
               "the order as the event_data the handlers would use (sku, qty, price and\n"
               "original_price per line; child lines of configurable products left out).\n"
               "Exit 0 found, 65 permanent (404, other 4xx, an answer that is not an order),\n"
               "75 transient (no connection, timeout, 408, 429, 5xx), 78 a setting is wrong.\n",
    .opts = opts,
    .run = run,
};
