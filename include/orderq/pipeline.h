/* pipeline.h - the consumer: deliveries in batches, one transaction each, acks last
 *
 * Two threads. The broker thread owns the AMQP connection: it reads every
 * frame (so heartbeats keep flowing), gathers deliveries into batches (up to
 * batch_size, or batch_window_ms after the first), publishes dead letters
 * with confirms, and acks. The database worker decodes each batch, claims
 * its effects in the ledger and applies them in one MySQL transaction,
 * reconnecting and redoing it when MySQL goes away. A batch is acked, with
 * one multiple-ack, only after its transaction committed and its dead
 * letters were confirmed; batches are acked in delivery order.
 */
#ifndef ORDERQ_PIPELINE_H
#define ORDERQ_PIPELINE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"

struct oq_config;

/* Consume queues[0..n) until *stop is set, then finish and ack the batches
 * in hand within shutdown_timeout_ms and return 0. Broker and MySQL
 * failures are retried forever with backoff; only bad configuration
 * returns early (OQ_ECONFIG, with the reason in err). wake_relay (may be
 * NULL) is called after each commit that may have written outbox rows. */
OQ_WUR int oq_pipeline_run(const struct oq_config *cfg, const char *const *queues, size_t n,
                           volatile sig_atomic_t *stop, void (*wake_relay)(void *), void *relay,
                           char *err, size_t errlen);

#endif
