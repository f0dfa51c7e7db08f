/* subscribe.h - the consumer's subscriptions: which queues, at what
 * prefetch, and consuming again a queue the broker cancelled
 *
 * All on one channel of the consuming connection, used by the broker
 * thread only. Each queue has its own prefetch (basic.qos with global = 0
 * before its basic.consume): a queue whose handler calls out (mail,
 * webhooks) takes no more deliveries than the effect workers can finish
 * within half of consumer_timeout_ms, because RabbitMQ closes the channel
 * on a delivery left unacked longer than its consumer_timeout. A consumer
 * the broker cancels (its queue was deleted) is subscribed again, with
 * backoff, after the queue is declared again as the topology says; the
 * other queues go on meanwhile.
 */
#ifndef ORDERQ_SUBSCRIBE_H
#define ORDERQ_SUBSCRIBE_H

#include <amqp.h>
#include <stddef.h>

#include "orderq/common.h"

struct oq_broker;
struct oq_config;
struct oq_handler;
struct oq_topology;
struct oq_subscriptions; /* opaque */

/* Subscriptions to queues[0..n) (borrowed, as is cfg), each queue's
 * prefetch chosen from its handler in handlers. Returns 0, OQ_ENOMEM, or
 * OQ_ECONFIG when effect_prefetch, the call timeouts, effect_workers and
 * consumer_timeout_ms cannot hold together (err names them). */
OQ_WUR int oq_subscriptions_new(const struct oq_config *cfg, const char *const *queues, size_t n,
                                const struct oq_handler *handlers, size_t n_handlers,
                                struct oq_subscriptions **out, char *err, size_t errlen);
void oq_subscriptions_free(struct oq_subscriptions *s);

/* Consume every queue on b's channel `consume` (a new connection), using
 * channel `declare` (not yet open) for redeclaring. Returns 0,
 * OQ_ENOTFOUND (a queue is missing: err says what to run) or OQ_EBROKER. */
OQ_WUR int oq_subscriptions_start(struct oq_subscriptions *s, struct oq_broker *b,
                                  amqp_channel_t consume, amqp_channel_t declare, char *err,
                                  size_t errlen);

/* The broker's basic.cancel for one of ours: consumed again later. */
void oq_subscriptions_cancelled(struct oq_subscriptions *s, const amqp_basic_cancel_t *m);

/* Subscribe again each cancelled queue whose time has come, declaring it
 * (and its bindings) from topology first when one is given. Returns 0, or
 * OQ_EBROKER when the connection or the consuming channel is lost. */
OQ_WUR int oq_subscriptions_retry(struct oq_subscriptions *s, const struct oq_topology *topology);

/* basic.cancel for every queue being consumed (stopping). */
void oq_subscriptions_cancel_all(struct oq_subscriptions *s);

/* Queues being consumed now. */
size_t oq_subscriptions_active(const struct oq_subscriptions *s);

#endif
