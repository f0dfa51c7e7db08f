/* cmd_webhook.c - `orderq webhook test`: POST a test event to the endpoints of an event code */
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
    size_t n = 0, matched = 0;
    char err[OQ_ERRLEN], id[96];
    int json = cli_opt(ctx, "--json") != NULL, code = EX_OK;
    if (ctx->npos != 2 || strcmp(ctx->pos[0], "test") != 0) {
        fprintf(stderr, "Usage: orderq %s\n", ctx->cmd->usage);
        return EX_USAGE;
    }
    const char *event_code = ctx->pos[1];
    if (ctx->cfg->webhooks_file[0] == '\0') {
        cli_fail("webhook: webhooks_file is not set: name the JSON file of webhooks");
        return EX_CONFIG;
    }
    int rc = oq_webhooks_load(ctx->cfg->webhooks_file, &hooks, &n, err, sizeof(err));
    if (rc != 0) {
        cli_fail("webhook: %s", err);
        return rc == OQ_EIO ? EX_NOINPUT : EX_CONFIG;
    }
    snprintf(id, sizeof(id), "%s",
             cli_opt(ctx, "--id") ? cli_opt(ctx, "--id") : "orderq-webhook-test");
    char *body = test_event(event_code, id);
    if (body == NULL || oq_webhook_sender_new(&sender) != 0) {
        free(body);
        oq_webhooks_free(hooks, n);
        cli_fail("webhook: out of memory");
        return EX_OSERR;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(hooks[i].event_code, event_code) != 0)
            continue;
        long status;
        int64_t retry_after;
        char why[OQ_ERRLEN];
        enum oq_http_outcome o =
            oq_webhook_post(sender, &hooks[i], event_code, id, body, strlen(body), &status,
                            &retry_after, why, sizeof(why));
        matched++;
        if (json) {
            printf("{\"url\": ");
            oq_json_fputs(stdout, hooks[i].url);
            printf(", \"outcome\": \"%s\", \"status\": %ld, \"retry_after_ms\": %lld, "
                   "\"signed\": %s, \"detail\": ",
                   outcome_names[o], status, (long long)retry_after,
                   hooks[i].secret ? "true" : "false");
            oq_json_fputs(stdout, why);
            printf("}\n");
        } else {
            printf("%-9s %s%s\n", outcome_names[o], why, hooks[i].secret ? " (signed)" : "");
        }
        if (o == OQ_HTTP_PERMANENT)
            code = EX_DATAERR;
        else if (o == OQ_HTTP_TRANSIENT && code == EX_OK)
            code = EX_TEMPFAIL;
    }
    free(body);
    oq_webhook_sender_free(sender);
    oq_webhooks_free(hooks, n);
    if (matched == 0) {
        cli_fail("webhook: no webhook in %s is for event code %s", ctx->cfg->webhooks_file,
                 event_code);
        return EX_DATAERR;
    }
    return code;
}

static const struct cli_opt opts[] = {
    {"--id", "KEY", "event identifier and Idempotency-Key (default: orderq-webhook-test)", 0},
    {"--json", NULL, "one JSON line per endpoint", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_webhook = {
    .name = "webhook",
    .summary = "POST a test event to the webhooks of an event code and say what they answered",
    .usage = "webhook test EVENT_CODE [--id KEY] [--json]",
    .details = "Reads webhooks_file, and POSTs {\"event_code\": EVENT_CODE, \"event_identifier\":\n"
               "KEY, \"event_data\": {\"test\": true}} to every endpoint listed for EVENT_CODE,\n"
               "the way the webhook handler does (Idempotency-Key, X-Orderq-Event, and\n"
               "X-Orderq-Signature when the entry has a secret). Prints each outcome: done\n"
               "(2xx), transient (no answer, 408, 429, 5xx), permanent (any other status).\n"
               "Exit 0 all done, 75 some transient, 65 some permanent or none listed.\n",
    .opts = opts,
    .run = run,
};
