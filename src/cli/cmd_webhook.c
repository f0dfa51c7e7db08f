/* cmd_webhook.c - `orderq webhook test`: POST a test event to an event code's endpoint */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "cli.h"
#include "orderq/json.h"
#include "orderq/webhook.h"

static const char *const outcome_names[] = {"done", "transient", "permanent"};

/* The test event: {"event_code", "event_identifier", "created_at", "event_data": {"test": true}} */
static char *test_event(const char *code, const char *id)
{
    char now[32];
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    oq_utc_now_iso(now, sizeof(now));
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "event_code", code);
    oq_json_gen_kv(g, "event_identifier", id);
    oq_json_gen_kv(g, "created_at", now);
    oq_json_gen_str(g, "event_data");
    yajl_gen_map_open(g);
    oq_json_gen_str(g, "test");
    yajl_gen_bool(g, 1);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    return oq_json_gen_finish(g);
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_webhook *hooks = NULL;
    struct oq_webhook_sender *sender = NULL;
    size_t n = 0;
    char err[OQ_ERRLEN], why[OQ_ERRLEN];
    if (ctx->npos != 2 || strcmp(ctx->pos[0], "test") != 0) {
        fprintf(stderr, "Usage: orderq %s\n", ctx->cmd->usage);
        return EX_USAGE;
    }
    const char *event_code = ctx->pos[1];
    const char *id = cli_opt(ctx, "--id") ? cli_opt(ctx, "--id") : "orderq-webhook-test";
    if (ctx->cfg->webhooks_file[0] == '\0') {
        cli_fail("webhook: webhooks_file is not set: name the JSON file of webhooks");
        return EX_CONFIG;
    }
    int rc = oq_webhooks_load(ctx->cfg->webhooks_file, &hooks, &n, err, sizeof(err));
    if (rc != 0) {
        cli_fail("webhook: %s", err);
        return rc == OQ_EIO ? EX_NOINPUT : EX_CONFIG;
    }
    const struct oq_webhook *h = oq_webhook_find(hooks, n, event_code);
    if (h == NULL) {
        cli_fail("webhook: no webhook in %s is for event code %s", ctx->cfg->webhooks_file,
                 event_code);
        oq_webhooks_free(hooks, n);
        return EX_DATAERR;
    }
    char *body = test_event(event_code, id);
    if (body == NULL || oq_webhook_sender_new(&sender) != 0) {
        free(body);
        oq_webhooks_free(hooks, n);
        cli_fail("webhook: out of memory");
        return EX_OSERR;
    }
    long status;
    int64_t retry_after;
    enum oq_http_outcome o = oq_webhook_post(sender, h, event_code, id, body, strlen(body), &status,
                                             &retry_after, why, sizeof(why));
    if (cli_opt(ctx, "--json") != NULL) {
        printf("{\"url\": ");
        oq_json_fputs(stdout, h->url_shown);
        printf(", \"outcome\": \"%s\", \"status\": %ld, \"retry_after_ms\": %lld, "
               "\"signed\": %s, \"detail\": ",
               outcome_names[o], status, (long long)retry_after, h->secret ? "true" : "false");
        oq_json_fputs(stdout, why);
        printf("}\n");
    } else {
        printf("%-9s %s%s\n", outcome_names[o], why, h->secret ? " (signed)" : "");
    }
    free(body);
    oq_webhook_sender_free(sender);
    oq_webhooks_free(hooks, n);
    return o == OQ_HTTP_DONE ? EX_OK : o == OQ_HTTP_PERMANENT ? EX_DATAERR : EX_TEMPFAIL;
}

static const struct cli_opt opts[] = {
    {"--id", "KEY", "event identifier and Idempotency-Key (default: orderq-webhook-test)", 0},
    {"--json", NULL, "print the outcome as one JSON line", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_webhook = {
    .name = "webhook",
    .summary = "POST a test event to an event code's webhook and say what it answered",
    .usage = "webhook test EVENT_CODE [--id KEY] [--json]",
    .details = "Reads webhooks_file, and POSTs {\"event_code\": EVENT_CODE, \"event_identifier\":\n"
               "KEY, \"event_data\": {\"test\": true}} to the endpoint listed for EVENT_CODE,\n"
               "the way the webhook handler does (Idempotency-Key, X-Orderq-Event, and\n"
               "X-Orderq-Timestamp and X-Orderq-Signature when the entry has a secret).\n"
               "Prints the outcome: done\n"
               "(2xx), transient (no answer, 408, 429, 5xx), permanent (any other status).\n"
               "Exit 0 done, 75 transient, 65 permanent or no endpoint for the code.\n",
    .opts = opts,
    .run = run,
};
