/* relay.h - the outbox relay: publish outbox rows with confirms, then mark them
 *
 * Rows are taken with SELECT ... FOR UPDATE SKIP LOCKED, so several relays
 * (in several consumers, or `orderq relay`) share the work without waiting
 * on each other. A row is marked published only after the broker confirmed
 * it and a queue took it; a crash in between republishes it, and the
 * consumer's ledger drops the duplicate.
 */
#ifndef ORDERQ_RELAY_H
#define ORDERQ_RELAY_H

#include <signal.h>

#include "orderq/common.h"

struct oq_config;
struct oq_db;
struct oq_relay; /* opaque: a relay running on its own thread */

/* Start a relay thread with its own RabbitMQ and MySQL connections. It
 * polls every second and at once when woken. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_relay_start(const struct oq_config *cfg, struct oq_relay **out);

/* Wake it: a commit may have written outbox rows. Any thread; relay may be NULL. */
void oq_relay_wake(void *relay);

/* Stop the thread (after the batch in hand) and free. NULL is fine. */
void oq_relay_stop(struct oq_relay *r);

/* Relay in the calling thread until *stop (or, with once, until the outbox
 * has nothing left). *published counts rows. Sets the orderq_ready gauge
 * after each pass: 1 when it reached RabbitMQ and MySQL, else 0. Returns 0; with once,
 * OQ_EBROKER after the first failure (reason in err). */
OQ_WUR int oq_relay_run(const struct oq_config *cfg, volatile sig_atomic_t *stop, int once,
                        long long *published, char *err, size_t errlen);

/* The outbox rows not yet published and the age in seconds of the oldest
 * (0 when none), by idx_outbox_pending: the backlog's index entries and
 * the oldest as the lowest id (ids and created_at rise together), so a
 * large backlog is not read row by row. Returns 0 or OQ_EDB. */
OQ_WUR int oq_outbox_backlog(struct oq_db *db, int64_t *rows, int64_t *oldest_s);

#endif
