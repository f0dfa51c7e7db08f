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
     * open transaction. Returns 0 or OQ_EDB (the batch is redone). */
    int (*apply)(void *state, struct oq_db *db, void *const *plans, size_t n, char *err,
                 size_t errlen);

    void (*free_plan)(void *plan);

    /* Bring cached state up to date (called before each batch; cheap when
     * nothing changed). May be NULL. Returns 0 or OQ_EDB. */
    int (*refresh)(void *state, struct oq_db *db, char *err, size_t errlen);

    void (*free_state)(void *state);
};

/* The coupon-rules handler for order.processing (handler_coupon.c). */
OQ_WUR int oq_handler_coupon_new(const struct oq_config *cfg, struct oq_handler *out);

/* The probe handler (handler_probe.c): a synthetic event that fails as
 * its event_data says, to rehearse retries and dead letters end to end. */
OQ_WUR int oq_handler_probe_new(struct oq_handler *out);

/* Every handler this build has, for cfg. *n gets how many. Free with
 * oq_handlers_free. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_handlers_new(const struct oq_config *cfg, struct oq_handler **handlers, size_t *n);
void oq_handlers_free(struct oq_handler *handlers, size_t n);

/* The handler for a canonical event code, or NULL. */
const struct oq_handler *oq_handler_find(const struct oq_handler *handlers, size_t n,
                                         const char *event_code);

#endif
