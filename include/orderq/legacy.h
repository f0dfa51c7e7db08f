/* legacy.h - the legacy bridge: a Magento coupon_queue table relayed to the broker
 *
 * A shop that still writes events into its queue table (sql/legacy/
 * coupon_queue.sql) keeps doing so; the bridge takes rows with
 * is_executed = 0 in id order, decodes the PHP-serialized event_data into
 * the JSON envelope, publishes with confirms to the shop exchange (routing
 * key = event_code, so the seed's codes reach their alias bindings) and only
 * then sets is_executed = 1, executed_at and execute_result.
 *
 * A row that cannot become an event (malformed event_data, no code or
 * identifier) or that no queue takes gets an execute_result starting
 * "orderq: " with the reason and stays unexecuted; the bridge skips such
 * rows until someone clears execute_result. Rows are taken FOR UPDATE SKIP
 * LOCKED: two bridges share a table without doubling a row.
 */
#ifndef ORDERQ_LEGACY_H
#define ORDERQ_LEGACY_H

#include <signal.h>

#include "orderq/common.h"

struct oq_config;

struct oq_legacy_progress {
    long long published; /* rows published and marked executed */
    long long refused;   /* rows given an "orderq: " reason and left */
    long long total;     /* rows waiting when the run started (for a progress bar) */
    void (*update)(const struct oq_legacy_progress *p, int final); /* may be NULL */
};

/* Is name a table name the bridge accepts ([A-Za-z0-9_]{1,64})? */
int oq_legacy_table_name_ok(const char *name);

/* Relay rows of table until *stop, or with once until none is left.
 * Returns 0; OQ_EBROKER / OQ_EDB with once after a failure (err says why). */
OQ_WUR int oq_legacy_relay_run(const struct oq_config *cfg, const char *table,
                               volatile sig_atomic_t *stop, int once,
                               struct oq_legacy_progress *progress, char *err, size_t errlen);

#endif
