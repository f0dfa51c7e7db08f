/* webhook.h - which events are POSTed where: the webhooks file
 *
 *   [{"event_code": "order.shipped", "url": "https://erp.example/hooks/orders",
 *     "timeout_ms": 5000, "secret_env": "ERP_HOOK_SECRET"}]
 *
 * Each entry sends every event of event_code to url as JSON, with
 * Idempotency-Key (the effect key), X-Orderq-Event and, with a secret,
 * X-Orderq-Timestamp and X-Orderq-Signature over both (see http_effect.h).
 * The secret comes from the environment variable named by secret_env, or
 * from the file named by secret_file (its first line); never from the
 * webhooks file itself, which is configuration and gets copied around.
 * timeout_ms defaults to 5000. "signature": "sha256-body" (with a secret)
 * keeps the form before v1, X-Orderq-Signature: sha256=<HMAC of the body>
 * and no timestamp, for a receiver not yet updated (docs/webhooks.md,
 * "Upgrading from sha256="); "v1" is the default.
 */
#ifndef ORDERQ_WEBHOOK_H
#define ORDERQ_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"
#include "orderq/http_effect.h"

/* <queue_prefix>.webhook: the queue of every hooked event, whatever its code. */
#define OQ_WEBHOOK_QUEUE "webhook"

struct oq_webhook {
    char *event_code;
    char *url;       /* used only to connect: it may hold tokens */
    char *url_shown; /* "https://host[:port]/...": the only form written to text */
    int64_t timeout_ms;
    char *secret;                       /* NULL: bodies are not signed */
    enum oq_signature_scheme signature; /* "signature": v1 unless a receiver needs sha256-body */
};

/* Read and check json (len bytes; what names it in errors). Every fault is
 * OQ_EINVAL naming the entry and field. Free with oq_webhooks_free. */
OQ_WUR int oq_webhooks_parse(const char *json, size_t len, const char *what,
                             struct oq_webhook **hooks, size_t *n, char *err, size_t errlen);

/* The same from a file; OQ_EIO when it cannot be read. */
OQ_WUR int oq_webhooks_load(const char *path, struct oq_webhook **hooks, size_t *n, char *err,
                            size_t errlen);

void oq_webhooks_free(struct oq_webhook *hooks, size_t n);

/* The endpoint for event_code (there is at most one), or NULL. */
const struct oq_webhook *oq_webhook_find(const struct oq_webhook *hooks, size_t n,
                                         const char *event_code);

/* ---- sending ------------------------------------------------------------- */

struct oq_webhook_sender; /* opaque: one curl handle, its connections kept */

OQ_WUR int oq_webhook_sender_new(struct oq_webhook_sender **out);
void oq_webhook_sender_free(struct oq_webhook_sender *s);

/* POST body (JSON, len bytes) to h->url with Content-Type application/json,
 * Idempotency-Key: effect_key, X-Orderq-Event: event_code and, when h has a
 * secret, X-Orderq-Signature (with X-Orderq-Timestamp under v1). why names
 * the endpoint by its event code and url_shown. Returns the outcome
 * (http_effect.h); *status gets the HTTP status (0 if none), *retry_after_ms
 * the receiver's Retry-After (-1 if none); why says what happened, for the
 * ledger or the dead letter. */
enum oq_http_outcome oq_webhook_post(struct oq_webhook_sender *s, const struct oq_webhook *h,
                                     const char *event_code, const char *effect_key,
                                     const char *body, size_t len, long *status,
                                     int64_t *retry_after_ms, char *why, size_t whylen);

#endif
