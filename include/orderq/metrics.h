/* metrics.h - counters, gauges and histograms; /metrics, /healthz, /readyz over HTTP
 *
 * Every value is a process-wide atomic, so any thread records without a
 * lock: a counter or gauge is one atomic add or store, a histogram one add
 * to a bucket and one to its sum. Label values are a bounded set fixed at
 * start: the enums below, and the queue and handler names registered once
 * (oq_metrics_register_*) before the threads that record them start, so
 * recording is an array index, never a string compare or an allocation.
 * The names, labels and buckets are the contract in docs/metrics.md. The
 * HTTP server (libmicrohttpd) runs on its own thread.
 */
#ifndef ORDERQ_METRICS_H
#define ORDERQ_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"

/* Unlabelled counters and gauges. */
enum oq_metric {
    OQ_M_BROKER_CONNECTS = 0, /* counter: successful broker connections */
    OQ_M_ARCHIVED,            /* counter: dead letters archived into dead_letter */
    OQ_M_ARCHIVE_HELD,        /* gauge: dead letters the archiver cannot store (too big, refused) */
    OQ_M_BATCHES,             /* counter: batches settled */
    OQ_M_OUTBOX_PUBLISHED,    /* counter: outbox events published and confirmed */
    OQ_M_CONSUMERS,           /* gauge: queues being consumed */
    OQ_M_READY,               /* gauge: 1 when consuming; a relay: its last pass worked */
    OQ_M_LEASES_EXPIRED,      /* gauge: ledger rows `sending` whose lease ran out (sweeper) */
    OQ_M_SWEPT,               /* counter: abandoned leases the sweeper marked unknown */
    OQ_M_FOREIGN_HEADERS,     /* counter: deliveries whose x-orderq-* headers were ignored */
    OQ_M_DB_CONFLICTS,        /* counter: deadlocks, Galera certification conflicts (1213) */
    OQ_M_IN_FLIGHT,           /* gauge: deliveries received and not yet settled */
    OQ_M_OUTBOX_BACKLOG,      /* gauge: outbox rows not yet published (gauge reader) */
    OQ_M_OUTBOX_OLDEST_AGE,   /* gauge: seconds since the oldest of them was written */
    OQ_M_COUNT
};

/* orderq_outcomes_total{outcome}: how a settled delivery ended. */
enum oq_outcome_label {
    OQ_OUTCOME_DONE = 0,
    OQ_OUTCOME_DUPLICATE,
    OQ_OUTCOME_RETRIED,
    OQ_OUTCOME_DEAD,    /* permanent failure or attempts spent */
    OQ_OUTCOME_INVALID, /* dead-lettered: not readable as an event */
    OQ_OUTCOME_COUNT
};

/* orderq_sends_total{result}. */
enum oq_send_result { OQ_SEND_SENT = 0, OQ_SEND_FAILED, OQ_SEND_AMBIGUOUS, OQ_SEND_RESULT_COUNT };

/* orderq_reconnects_total{peer}. */
enum oq_peer { OQ_PEER_BROKER = 0, OQ_PEER_DATABASE, OQ_PEER_COUNT };

/* orderq_send_duration_seconds{protocol}. */
enum oq_protocol { OQ_PROTO_SMTP = 0, OQ_PROTO_HTTP, OQ_PROTO_COUNT };

/* orderq_ledger_rows{state}. */
enum oq_ledger_state_label { OQ_LEDGER_SENDING = 0, OQ_LEDGER_UNKNOWN, OQ_LEDGER_STATE_COUNT };

/* Unlabelled histograms. Durations are observed in microseconds, sizes as
 * counts; they render in seconds and counts. */
enum oq_histogram {
    OQ_H_BATCH_SIZE = 0, /* deliveries per settled batch */
    OQ_H_COMMIT,         /* the batch's COMMIT, microseconds */
    OQ_H_EVENT_AGE,      /* now minus the event's time at commit, microseconds */
    OQ_H_COUNT
};

#define OQ_METRICS_MAX_QUEUES   64 /* queue label values; more are not recorded */
#define OQ_METRICS_MAX_HANDLERS 16 /* handler registry entries */

void oq_metric_add(enum oq_metric m, int64_t n);
void oq_metric_set(enum oq_metric m, int64_t value);
int64_t oq_metric_get(enum oq_metric m);

/* Label values. Call before the threads that record them start (the
 * consumer does, before its workers); a scrape may run meanwhile. Names are
 * copied; a queue registered twice keeps its first index. Queues past
 * OQ_METRICS_MAX_QUEUES get no index. Handlers: the registry's list, in its
 * order (oq_handlers_new), names may repeat (one series per name). */
void oq_metrics_register_queues(const char *const *names, size_t n);
void oq_metrics_register_handlers(const char *const *names, size_t n);

/* The index of a registered queue, or -1 (recording with -1 does nothing). */
int oq_metrics_queue_index(const char *name);

void oq_metrics_delivery(int queue);
void oq_metrics_outcome(int queue, enum oq_outcome_label outcome);
void oq_metrics_send(size_t handler, enum oq_send_result result);
void oq_metrics_reconnect(enum oq_peer peer);
void oq_metrics_observe(enum oq_histogram h, int64_t value);
void oq_metrics_handler_duration(size_t handler, int64_t us);
void oq_metrics_send_duration(enum oq_protocol protocol, int64_t us);

/* Gauges of the background reader (gauges.c). */
void oq_metrics_set_ledger_rows(enum oq_ledger_state_label state, int64_t n);
/* Dead letters by class as one read found them: counts[i] of classes[i]
 * (a dead-letter class name, retry.h; any other name adds up under
 * "other"); a class not named has none. Each gauge moves from its last
 * value to the new one, never through 0. */
void oq_metrics_set_dead_letters(const char *const *classes, const int64_t *counts, size_t n);
/* Every database gauge was read now. Until the first call they have no
 * sample: a 0 at start would read as a drop, then a rise, to an alert. */
void oq_metrics_db_gauges_read(void);

/* Microseconds on the monotonic clock, for durations. */
int64_t oq_metrics_now_us(void);

/* The Prometheus text exposition (0.0.4) of every family, malloc'd and
 * NUL-terminated (*len without the NUL); NULL when out of memory. */
char *oq_metrics_render(size_t *len);

/* Append s to out (at most outlen bytes with the NUL) escaped as a label
 * value: backslash, double quote and newline. Returns the length it needs. */
size_t oq_metrics_escape_label(const char *s, char *out, size_t outlen);

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

#endif
