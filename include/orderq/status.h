/* status.h - one look at a running orderq: queues, ledger, dead letters, outbox
 *
 * `orderq status` reads two sources and prints what they say, as a screen
 * for a person or as one JSON object (docs/operations.md, "Status"):
 * - the RabbitMQ management API (amqp_mgmt_url): ready, unacked and
 *   consumers of each queue in the topology plan (topology.h);
 * - the database (mysql_url): ledger rows by handler and state, dead
 *   letters not replayed by class and by fingerprint, the outbox backlog.
 * A source that cannot be read leaves its sections empty with the reason in
 * that source's error; the other source is still read and shown.
 */
#ifndef ORDERQ_STATUS_H
#define ORDERQ_STATUS_H

#include <stdint.h>
#include <stdio.h>

#include "orderq/common.h"

struct oq_config;

#define OQ_STATUS_TOP_FINGERPRINTS 5
#define OQ_STATUS_N_STATES         5 /* event_ledger.state: done sending sent unknown failed */

/* The ledger states in the order they are shown. */
extern const char *const oq_status_states[OQ_STATUS_N_STATES];

struct oq_status_queue {
    char *name;
    const char *kind; /* "work", "delay" or "dead" */
    int exists;
    int64_t ready, unacked, consumers; /* -1: not reported */
};

struct oq_status_handler {
    char *handler;
    int64_t rows[OQ_STATUS_N_STATES]; /* by oq_status_states */
};

struct oq_status_class {
    char *error_class;
    int64_t count;
};

struct oq_status_fingerprint {
    char *fingerprint, *error_class;
    char *queues; /* the work queues it failed in, comma-separated */
    char *newest; /* the newest one's dead_at, "YYYY-MM-DDTHH:MM:SSZ" */
    int64_t count;
};

struct oq_status {
    char vhost[256];
    char at[32]; /* when it was read, UTC, ISO 8601 */

    int broker_ok; /* 0: broker_error says why, queues is empty */
    char broker_error[OQ_ERRLEN * 2];
    struct oq_status_queue *queues;
    size_t n_queues;

    int db_ok; /* 0: db_error says why, the database sections are empty */
    char db_error[OQ_ERRLEN * 2];
    struct oq_status_handler *handlers;
    size_t n_handlers;
    int64_t sending, sending_expired, unknown;
    struct oq_status_class *classes;
    size_t n_classes;
    int64_t dead_letters; /* not replayed */
    struct oq_status_fingerprint top[OQ_STATUS_TOP_FINGERPRINTS];
    size_t n_top;
    int64_t outbox_backlog, outbox_oldest_s; /* 0 when the outbox is empty */
};

/* Read both sources for cfg into a new *out (free with oq_status_free).
 * Returns 0 when both were read, OQ_EHTTP / OQ_EDB / OQ_ECONFIG when one
 * (or both) could not be (the first failure; *out still holds the rest and
 * each source's error), OQ_ENOMEM with *out NULL. */
OQ_WUR int oq_status_collect(const struct oq_config *cfg, struct oq_status **out);
void oq_status_free(struct oq_status *st);

/* The screen for a person: short sections, aligned columns, at most 80
 * columns wide. */
void oq_status_print_text(const struct oq_status *st, FILE *out);

/* One JSON object on one line, with stable keys (docs/operations.md).
 * Returns 0 or OQ_ENOMEM / OQ_EIO. */
OQ_WUR int oq_status_print_json(const struct oq_status *st, FILE *out);

/* ---- formatting helpers (exposed for the unit tests) ---- */

/* n with a comma every three digits ("1,234,567"); "-" for n < 0 (not
 * reported). Always NUL-terminates buf; returns buf. */
const char *oq_status_count(int64_t n, char *buf, size_t buflen);

/* An age in seconds as two units at most: "45s", "3m 05s", "2h 07m",
 * "4d 03h". Returns buf. */
const char *oq_status_age(int64_t seconds, char *buf, size_t buflen);

/* text for a cell of the screen: cut to at most width bytes, ending in
 * "..." when cut, never inside a UTF-8 sequence; control characters (C0,
 * DEL, C1) replaced by spaces. Returns buf. */
const char *oq_status_fit(const char *text, size_t width, char *buf, size_t buflen);

#endif
