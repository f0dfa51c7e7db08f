/* metrics.h - counters and gauges; /metrics, /healthz, /readyz over HTTP
 *
 * Counters are process-wide atomics, so any thread may bump them without a
 * lock. The HTTP server (libmicrohttpd) runs on its own thread.
 */
#ifndef ORDERQ_METRICS_H
#define ORDERQ_METRICS_H

#include <stdint.h>

#include "orderq/common.h"

enum oq_metric {
    OQ_M_BROKER_CONNECTS = 0, /* counter: successful broker connections */
    OQ_M_BROKER_DISCONNECTS,  /* counter: connections lost */
    OQ_M_DELIVERIES,          /* counter: deliveries received */
    OQ_M_EFFECTS,             /* counter: events whose effects were committed */
    OQ_M_DUPLICATES,          /* counter: deliveries the ledger had seen */
    OQ_M_DEAD_LETTERED,       /* counter: deliveries parked as dead letters */
    OQ_M_RETRIED,             /* counter: deliveries sent to a delay tier */
    OQ_M_ARCHIVED,            /* counter: dead letters archived into dead_letter */
    OQ_M_ARCHIVE_HELD,        /* gauge: dead letters the archiver cannot store (too big, refused) */
    OQ_M_BATCHES,             /* counter: batches settled */
    OQ_M_OUTBOX_PUBLISHED,    /* counter: outbox events published and confirmed */
    OQ_M_SENDS,               /* counter: mails and webhook calls the peer accepted */
    OQ_M_SEND_FAILURES,       /* counter: mails and webhook calls that failed */
    OQ_M_AMBIGUOUS,           /* counter: sends whose outcome is unknown */
    OQ_M_CONSUMERS,           /* gauge: queues being consumed */
    OQ_M_READY,               /* gauge: 1 when connected and consuming */
    OQ_M_LEASES_EXPIRED,      /* gauge: ledger rows `sending` whose lease ran out (sweeper) */
    OQ_M_LEDGER_UNKNOWN,      /* gauge: ledger rows `unknown`, for a person (sweeper) */
    OQ_M_SWEPT,               /* counter: abandoned leases the sweeper marked unknown */
    OQ_M_FOREIGN_HEADERS,     /* counter: deliveries whose x-orderq-* headers were ignored */
    OQ_M_DB_CONFLICTS,        /* counter: deadlocks, Galera certification conflicts (1213) */
    OQ_M_COUNT
};

void oq_metric_add(enum oq_metric m, int64_t n);
void oq_metric_set(enum oq_metric m, int64_t value);
int64_t oq_metric_get(enum oq_metric m);

struct oq_metrics_server; /* opaque */

struct oq_config;

/* Serve on cfg->http_addr, "host:port" (empty: no server; *out stays NULL),
 * with at most http_max_connections open (http_max_connections_per_ip from
 * one address), each closed after http_timeout_ms of silence: slow or many
 * clients cannot take the files the process needs for RabbitMQ and MySQL.
 * Returns 0, OQ_ECONFIG (bad address, limits that do not fit each other or
 * the open-files limit) or OQ_EIO (cannot bind) with the reason. */
OQ_WUR int oq_metrics_start(const struct oq_config *cfg, struct oq_metrics_server **out, char *err,
                            size_t errlen);
void oq_metrics_stop(struct oq_metrics_server *s);

/* The Prometheus text for /metrics, NUL-terminated in buf. */
void oq_metrics_render(char *buf, size_t len);

#endif
