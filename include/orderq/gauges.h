/* gauges.h - the database gauges of /metrics, read by one background thread
 *
 * The outbox backlog and its oldest row's age, ledger rows `sending` and
 * `unknown`, and dead letters by error_class cost a query each: one thread
 * per process reads them every metrics_db_interval_ms on a connection of
 * its own and stores them in the metrics atomics, so a scrape never touches
 * MySQL and many scrapers cannot load it.
 */
#ifndef ORDERQ_GAUGES_H
#define ORDERQ_GAUGES_H

#include "orderq/common.h"

struct oq_config;
struct oq_db;
struct oq_gauges; /* opaque */

/* Read every gauge once on db and store it. Returns 0 or OQ_EDB with the
 * reason in err (the gauges keep their last values). */
OQ_WUR int oq_gauges_read(struct oq_db *db, char *err, size_t errlen);

/* Start the reader (it connects, and reconnects, by itself): at once, then
 * every cfg->metrics_db_interval_ms. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_gauges_start(const struct oq_config *cfg, struct oq_gauges **out);

/* Stop and join it; NULL is fine. */
void oq_gauges_stop(struct oq_gauges *g);

#endif
