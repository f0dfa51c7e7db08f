/* handler_webhook.c - any event in webhooks_file, POSTed once to its endpoint
 *
 * Deliveries come from <queue_prefix>.webhook, bound to every event code
 * in the file. The body is the event's envelope as it was published; the
 * effect key (the event identifier) is sent as Idempotency-Key, so a receiver can
 * drop the copy that a resend after an unknown outcome produces: that is
 * why ambiguous_webhook defaults to resend.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/config.h"
#include "orderq/event.h"
#include "orderq/handler.h"
#include "orderq/log.h"
#include "orderq/url.h"
#include "orderq/webhook.h"

struct webhook_state {
    struct oq_webhook *hooks;
    size_t n;
    struct oq_webhook_sender *sender; /* used only by the thread owning this state */
};

struct webhook_plan {
    size_t hook;      /* index: perform runs on another handler instance (an effect worker's) */
    const char *body; /* the delivery's, which outlives the plan */
    size_t len;
};

static void free_plan(void *p)
{
    free(p);
}

static void free_state(void *p)
{
    struct webhook_state *st = p;
    if (st == NULL)
        return;
    oq_webhooks_free(st->hooks, st->n);
    oq_webhook_sender_free(st->sender);
    free(st);
}

static int prepare(void *state, const struct oq_event *ev, int64_t attempt, void **plan,
                   char *effect_key, size_t keylen, char *result, size_t resultlen, char *err,
                   size_t errlen)
{
    const struct webhook_state *st = state;
    (void)attempt;
    (void)effect_key; /* the event identifier */
    (void)keylen;
    *plan = NULL;
    const struct oq_webhook *hook = oq_webhook_find(st->hooks, st->n, ev->code);
    if (hook == NULL) /* listed under the canonical name of an alias */
        hook = oq_webhook_find(st->hooks, st->n, ev->canonical_code);
    if (hook == NULL) {
        snprintf(err, errlen,
                 "no webhook for event code \"%s\" in webhooks_file (the queue is still bound "
                 "to it: run `orderq topology declare` after changing the file)",
                 ev->code);
        return OQ_EINVAL;
    }
    struct webhook_plan *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return OQ_ENOMEM;
    p->hook = (size_t)(hook - st->hooks);
    p->body = ev->body; /* as published: what the signature covers */
    p->len = ev->body_len;
    /* the ledger's result: no tokens, and which endpoint */
    snprintf(result, resultlen, "POST %s (webhook for %s)", hook->url_shown, hook->event_code);
    *plan = p;
    return 0;
}

static enum oq_effect_outcome perform(void *state, const void *p, const struct oq_effect *e,
                                      char *result, size_t resultlen, int64_t *retry_after_ms)
{
    struct webhook_state *st = state;
    const struct webhook_plan *plan = p;
    long status = 0;
    switch (oq_webhook_post(st->sender, &st->hooks[plan->hook], e->event_code, e->effect_key,
                            plan->body, plan->len, &status, retry_after_ms, result, resultlen)) {
    case OQ_HTTP_DONE:
        return OQ_EFFECT_DONE;
    case OQ_HTTP_PERMANENT:
        return OQ_EFFECT_PERMANENT;
    case OQ_HTTP_TRANSIENT:
        break;
    }
    return OQ_EFFECT_TRANSIENT;
}

/* http:// off loopback: the body (customer data) and its signature cross
 * the network in clear. Allowed, but said at start; the URL is not
 * printed, since it may carry a token. */
static void warn_cleartext_hooks(const struct webhook_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        if (oq_url_is_cleartext_remote(st->hooks[i].url, "http"))
            oq_warn("webhooks_file: webhook %zu (%s) is http:// to a host that is not loopback: "
                    "events cross the network in clear; expected https://",
                    i + 1, st->hooks[i].event_code);
}

/* sha256-body signs the body alone: anyone who saw one call can send it
 * again, at any time. Kept for receivers not yet updated; said at start so
 * it does not stay forever. */
static void warn_unstamped_hooks(const struct webhook_state *st)
{
    for (size_t i = 0; i < st->n; i++)
        if (st->hooks[i].secret != NULL && st->hooks[i].signature == OQ_SIGNATURE_SHA256_BODY)
            oq_warn("webhooks_file: webhook %zu (%s, %s) is signed \"sha256-body\", over the body "
                    "only: a captured call can be replayed at any time; update the receiver to "
                    "check v1 (docs/webhooks.md, \"Upgrading from sha256=\"), then remove "
                    "\"signature\"",
                    i + 1, st->hooks[i].event_code, st->hooks[i].url_shown);
}

int oq_handler_webhook_new(const struct oq_config *cfg, struct oq_handler *out, char *err,
                           size_t errlen)
{
    struct webhook_state *st = calloc(1, sizeof(*st));
    char why[OQ_ERRLEN];
    if (st == NULL)
        return OQ_ENOMEM;
    int rc = oq_webhooks_load(cfg->webhooks_file, &st->hooks, &st->n, why, sizeof(why));
    if (rc != 0) {
        snprintf(err, errlen, "webhooks_file: %s", why);
        free_state(st);
        return rc == OQ_ENOMEM ? rc : OQ_ECONFIG;
    }
    for (size_t i = 0; i < st->n; i++)
        if (st->hooks[i].timeout_ms >= cfg->effect_lease_ms) {
            snprintf(err, errlen,
                     "webhooks_file: webhook %zu (%s): timeout_ms %lld is not shorter than "
                     "effect_lease_ms %lld; a slow call would look abandoned and be sent again",
                     i + 1, st->hooks[i].event_code, (long long)st->hooks[i].timeout_ms,
                     (long long)cfg->effect_lease_ms);
            free_state(st);
            return OQ_ECONFIG;
        }
    warn_cleartext_hooks(st);
    warn_unstamped_hooks(st);
    if ((rc = oq_webhook_sender_new(&st->sender)) != 0) {
        free_state(st);
        return rc;
    }
    int64_t slowest = 0;
    for (size_t i = 0; i < st->n; i++)
        if (st->hooks[i].timeout_ms > slowest)
            slowest = st->hooks[i].timeout_ms;
    *out = (struct oq_handler){
        .name = "webhook",
        .event_code = "*",
        .queue = OQ_WEBHOOK_QUEUE,
        .state = st,
        .prepare = prepare,
        .perform = perform,
        .ambiguous = (enum oq_ambiguous_policy)cfg->ambiguous_webhook,
        .call_timeout_ms = slowest,
        .free_plan = free_plan,
        .free_state = free_state,
    };
    return 0;
}
