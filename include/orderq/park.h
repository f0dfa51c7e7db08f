/* park.h - retries and dead letters, republished on a connection of their own
 *
 * A delivery that failed is "parked": republished, body and properties as
 * delivered, with orderq's x-orderq-* headers and orderq's own user_id
 * (the proof it published them, trust.h), to its delay tier (a retry)
 * or to the dead-letter exchange, and acked only once the broker confirms
 * the copy. The copies go out on a connection of their own, never on the
 * consuming one: during a memory or disk alarm RabbitMQ blocks every
 * connection that publishes, and a consuming connection that is blocked
 * can no longer ack, so the consumer would stall on its own backlog. Here
 * only the parked copies wait while the alarm lasts; everything else is
 * acked as usual.
 *
 * One thread uses a parker (the consumer's broker thread). Nothing blocks:
 * oq_park says "not now" while the connection is down, blocked or its
 * window is full, and oq_parker_poll, called from the consumer's loop,
 * connects (with backoff), reads confirms and keeps heartbeats going.
 */
#ifndef ORDERQ_PARK_H
#define ORDERQ_PARK_H

#include <amqp.h>
#include <stdint.h>

#include "orderq/common.h"
#include "orderq/retry.h"

struct oq_config;
struct oq_parker; /* opaque */

/* What to park. Strings and bytes are borrowed for the call. */
struct oq_park {
    const amqp_message_t *msg; /* as delivered */
    const char *queue;         /* the work queue: a retry's routing key */
    const char *tier;          /* the delay tier's name (a retry), or NULL (a dead letter) */
    int64_t attempt;           /* the attempt that failed */
    enum oq_error_class error_class;
    const char *reason;
    /* Kept from the first delivery (orderq's headers), or empty. */
    amqp_bytes_t first_failed_at, original_exchange, original_routing_key;
    amqp_bytes_t original_user_id; /* the shop's user_id: a header on the copy */
    int force_resend; /* a person's "send it again", kept for the retries */
};

/* Called once per parked message: parked = 1 when the broker confirmed it
 * into a queue; 0 when it was refused, reached no queue, or its connection
 * was lost first (the delivery must then come back: nack it with requeue). */
typedef void (*oq_park_settled_fn)(void *ctx, uint64_t seq, int parked);

/* A parker for cfg; it connects on the first poll. Returns 0, OQ_EINVAL
 * (amqp_url does not parse) or OQ_ENOMEM. */
OQ_WUR int oq_parker_new(const struct oq_config *cfg, const char *host, oq_park_settled_fn settled,
                         void *ctx, struct oq_parker **out);
/* Close the connection and free. Unsettled copies are reported unparked. */
void oq_parker_free(struct oq_parker *p);

/* Publish one copy; *seq gets its number (unique for the parker's life).
 * Returns 0; OQ_ETIMEOUT when it cannot be published now (no connection,
 * blocked by an alarm, window full: try again after a poll); OQ_ENOMEM. */
OQ_WUR int oq_park(struct oq_parker *p, const struct oq_park *what, uint64_t *seq);

/* Connect when due, read what the broker sent (confirms, returns,
 * blocked / unblocked), send heartbeats. Never waits. */
void oq_parker_poll(struct oq_parker *p);

/* Copies published and not yet settled. */
size_t oq_parker_in_flight(const struct oq_parker *p);

#endif
