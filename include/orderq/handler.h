/* handler.h - what an event kind's handler provides to the batch pipeline
 *
 * A handler works in two steps so that a batch needs a few round trips, not
 * several per message:
 *   prepare  per event, without the database: decode event_data, decide the
 *            effects, or fail permanently with a reason (the event is
 *            dead-lettered, its neighbours go on);
 *   apply    per batch, inside its transaction, for the events whose ledger
 *            claim succeeded: write every staged row in bulk.
 * Follow-up events are outbox rows written by apply, so they commit with
 * the effect that causes them.
 *
 * A handler whose effect is outside the database (a mail, a webhook) has
 * perform instead of apply: it runs on an effect worker (effects.h), never
 * on the broker thread, between a committed `sending` lease and the
 * commit of `sent`. prepare builds everything perform needs (the rendered
 * mail, the request body), so perform only talks to the outside.
 */
#ifndef ORDERQ_HANDLER_H
#define ORDERQ_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"

struct oq_config;
struct oq_db;
struct oq_event;

#define OQ_RESULT_LEN 256

/* What perform says about the outside call. */
enum oq_effect_outcome {
    OQ_EFFECT_DONE = 0,  /* accepted (SMTP 250, HTTP 2xx) */
    OQ_EFFECT_TRANSIENT, /* not done; may work later (SMTP 4xx, HTTP 5xx, no connection) */
    OQ_EFFECT_PERMANENT, /* not done; never will (SMTP 5xx, HTTP 4xx) */
    OQ_EFFECT_AMBIGUOUS, /* sent, no answer: it may or may not have been done */
};

/* What a handler does when the outcome of a send is unknown: an expired
 * lease (a process died mid-send) or an answer that never came. */
enum oq_ambiguous_policy {
    OQ_AMBIGUOUS_PARK = 0, /* mark the ledger row `unknown`, dead-letter it (class ambiguous) */
    OQ_AMBIGUOUS_RESEND,   /* send again, same Message-ID / Idempotency-Key */
};

/* The effect perform is asked to carry out. */
struct oq_effect {
    const char *handler;    /* ledger handler name */
    const char *effect_key; /* the Message-ID / Idempotency-Key is derived from it */
    const char *event_identifier;
    const char *event_code;
};

struct oq_handler {
    const char *name;       /* the ledger's handler column */
    const char *event_code; /* canonical code it handles */
    void *state;            /* the handler's own (e.g. a rules cache) */

    /* Decide this event's effects. attempt: 1 on the first delivery, n
     * on the n-th try through the delay tiers. *plan may stay NULL
     * (nothing to do). effect_key: where to write the ledger key (default:
     * the event's identifier, left empty). result: a short text for the
     * ledger. Returns 0; OQ_EINVAL with the reason in err (permanent: the
     * event is dead-lettered); any other code with the reason in err is
     * transient: the event comes back through the next delay tier. */
    int (*prepare)(void *state, const struct oq_event *ev, int64_t attempt, void **plan,
                   char *effect_key, size_t keylen, char *result, size_t resultlen, char *err,
                   size_t errlen);

    /* Write the plans of claimed events (NULL plans skipped) inside the
     * open transaction. Returns 0 or OQ_EDB (the batch is redone). NULL
     * for a handler with perform. */
    int (*apply)(void *state, struct oq_db *db, void *const *plans, size_t n, char *err,
                 size_t errlen);

    /* Carry out plan's outside effect (never called with a NULL plan).
     * result: the peer's answer (SMTP reply line, HTTP status) on success,
     * else why it failed. *retry_after_ms: how long the peer asked us to
     * wait (-1: no say). NULL for handlers whose effects are rows. */
    enum oq_effect_outcome (*perform)(void *state, const void *plan, const struct oq_effect *e,
                                      char *result, size_t resultlen, int64_t *retry_after_ms);
    enum oq_ambiguous_policy ambiguous;
    /* The longest one perform may take (its timeout): with effect_workers
     * it bounds how many deliveries of its queue one consumer may hold
     * before RabbitMQ's consumer_timeout would close the channel. */
    int64_t call_timeout_ms;
    /* Deliveries from this queue suffix (<queue_prefix>.<queue>) go to this
     * handler whatever their event code; NULL: chosen by event_code. */
    const char *queue;

    void (*free_plan)(void *plan);

    /* 1 when prepare would have to call outside orderq for ev (the coupon
     * rules completing an order from the shop API). Such an event is
     * prepared and committed alone on an effect worker, so a slow peer
     * never holds a database worker's batch. May be NULL. */
    int (*prepare_calls_out)(void *state, const struct oq_event *ev);

    /* Bring cached state up to date (called before each batch; cheap when
     * nothing changed). May be NULL. Returns 0 or OQ_EDB. */
    int (*refresh)(void *state, struct oq_db *db, char *err, size_t errlen);

    void (*free_state)(void *state);
};

/* The coupon-rules handler for order.processing (handler_coupon.c). */
OQ_WUR int oq_handler_coupon_new(const struct oq_config *cfg, struct oq_handler *out, char *err,
                                 size_t errlen);

/* The probe handler (handler_probe.c): a synthetic event that fails as
 * its event_data says, to rehearse retries and dead letters end to end. */
OQ_WUR int oq_handler_probe_new(struct oq_handler *out);

/* Every handler this build has, for cfg (the webhook handler only when
 * webhooks_file is set), always in the same order. *n gets how many. Free
 * with oq_handlers_free. Returns 0, OQ_ENOMEM or OQ_ECONFIG (err says). */
OQ_WUR int oq_handlers_new(const struct oq_config *cfg, struct oq_handler **handlers, size_t *n,
                           char *err, size_t errlen);
void oq_handlers_free(struct oq_handler *handlers, size_t n);

/* The mail handlers (handler_mail.c): coupon.email, and invoice.created /
 * invoice.updated sharing one ledger name so one invoice gets one mail.
 * Templates are read from cfg's template_dir now: a missing file or an
 * unknown placeholder is OQ_ECONFIG with err saying which. */
OQ_WUR int oq_handler_coupon_mail_new(const struct oq_config *cfg, struct oq_handler *out,
                                      char *err, size_t errlen);
OQ_WUR int oq_handler_invoice_mail_new(const struct oq_config *cfg, const char *event_code,
                                       struct oq_handler *out, char *err, size_t errlen);

/* The webhook handler (handler_webhook.c) for the <prefix>.webhook queue:
 * every event there is POSTed to the endpoint its code has in
 * cfg->webhooks_file. OQ_ECONFIG when that file is wrong. */
OQ_WUR int oq_handler_webhook_new(const struct oq_config *cfg, struct oq_handler *out, char *err,
                                  size_t errlen);

/* The handler for a delivery from queue (its name without the prefix and
 * dot) with canonical event_code, or NULL. */
const struct oq_handler *oq_handler_find(const struct oq_handler *handlers, size_t n,
                                         const char *queue, const char *event_code);

#endif
