/* topology.h - what orderq needs on the broker: plan, declare, verify, export
 *
 * A plan is built from the configuration alone (ARCHITECTURE.md "Names on
 * the broker"): work queues <queue_prefix>.<event_code> bound to the shop
 * exchange by their event codes and aliases; the delay exchange with one
 * queue per retry tier; the dead-letter exchange and queue. The same plan is
 * declared over AMQP, compared with what the management API reports, and
 * written out as a definitions file for `rabbitmqctl import_definitions`.
 */
#ifndef ORDERQ_TOPOLOGY_H
#define ORDERQ_TOPOLOGY_H

#include <amqp.h>
#include <stdint.h>
#include <stdio.h>

#include "orderq/common.h"
#include "orderq/event.h" /* oq_event_routes: what the work queues carry */

struct oq_intake;

struct oq_config;
struct oq_broker;

#define OQ_TOPO_MAX_ARGS 8

struct oq_topo_arg {
    const char *key;
    const char *str; /* NULL: the value is num */
    int64_t num;
};

struct oq_topo_exchange {
    char *name;
    const char *type; /* "topic", "headers", "fanout" */
    int shops;        /* the shop's own: checked passively unless asked */
};

struct oq_topo_queue {
    char *name;
    const char *event_code; /* work queues: the code it carries, else NULL */
    struct oq_topo_arg args[OQ_TOPO_MAX_ARGS];
    size_t nargs;
    /* > 0: an older orderq declared this queue with only its first
     * nargs_legacy arguments; such a queue is taken as it is, with a
     * warning (a queue's arguments cannot change on a broker). */
    size_t nargs_legacy;
};

struct oq_topo_binding {
    char *exchange;
    char *queue;
    char *routing_key;
    struct oq_topo_arg args[2];
    size_t nargs;
};

struct oq_topology {
    struct oq_topo_exchange *exchanges;
    size_t n_exchanges;
    struct oq_topo_queue *queues;
    size_t n_queues;
    struct oq_topo_binding *bindings;
    size_t n_bindings;
    char *strings[64]; /* owned argument strings */
    size_t n_strings;
    /* The intake setting, parsed once: it binds the shop's own codes here,
     * and the consumer reads each queue's messages by it. */
    struct oq_intake *intake;
};

/* Build the plan for cfg (with a <prefix>.webhook queue when webhooks_file
 * is set). Returns 0, OQ_ENOMEM, or OQ_ECONFIG / OQ_EIO when the webhooks
 * file is wrong or unreadable; err says. */
OQ_WUR int oq_topology_plan(const struct oq_config *cfg, struct oq_topology **out, char *err,
                            size_t errlen);
void oq_topology_free(struct oq_topology *t);

/* Declare everything in the plan; running it twice changes nothing. The
 * shop exchange is only checked (passive) unless create_shop_exchange.
 * Every problem is logged; the first one's text is in err.
 * Returns 0, OQ_ENOTFOUND (shop exchange missing), OQ_EMISMATCH (something
 * exists with other arguments) or OQ_EBROKER. */
OQ_WUR int oq_topology_declare(struct oq_broker *b, const struct oq_topology *t,
                               int create_shop_exchange, char *err, size_t errlen);

/* Declare one queue of the plan and its bindings again, on channel (open,
 * and not one that consumes: a refusal closes it). For a work queue the
 * broker deleted under a running consumer. Returns as oq_topology_declare,
 * or OQ_ENOTFOUND when the plan has no such queue. */
OQ_WUR int oq_topology_declare_queue(struct oq_broker *b, amqp_channel_t channel,
                                     const struct oq_topology *t, const char *queue, char *err,
                                     size_t errlen);

/* 1 when the plan declares queue with a dead-letter exchange
 * (x-dead-letter-exchange), so that a message rejected without requeue is
 * dead-lettered, not dropped; 0 for any other queue (not in the plan, or
 * without one). t may be NULL (0). */
int oq_topology_dead_letters(const struct oq_topology *t, const char *queue);

/* Whether queue, on the broker now, dead-letters as the plan says, so
 * that a message rejected from it without requeue is dead-lettered, not
 * dropped: the plan gives it a dead-letter exchange; a declare with
 * exactly the plan's arguments (never the legacy ones) succeeds, quietly,
 * and binds it as planned (a queue an older orderq declared without them
 * refuses it); and when it dead-letters through the default exchange, the
 * queue named by its x-dead-letter-routing-key exists (a passive declare).
 * A refusal closes channel, which is opened again: call it before
 * basic.qos or basic.consume on that channel. t may be NULL (0).
 * Returns 1, 0 or OQ_EBROKER (the connection broke). */
OQ_WUR int oq_topology_dead_letters_on_broker(struct oq_broker *b, amqp_channel_t channel,
                                              const struct oq_topology *t, const char *queue);

/* Compare the plan with what the management API at cfg->amqp_mgmt_url
 * reports for vhost. Each difference is one line (or one JSON object per
 * line when json) on out; *differences counts them.
 * Returns 0 (even with differences) or OQ_EHTTP when the API cannot be
 * read, with the reason in err. */
OQ_WUR int oq_topology_verify(const struct oq_config *cfg, const struct oq_topology *t,
                              const char *vhost, FILE *out, int json, int *differences, char *err,
                              size_t errlen);

/* One planned queue as the management API reports it. Quorum queue
 * figures there are seconds late (ARCHITECTURE.md). */
struct oq_queue_counts {
    const char *name; /* the plan's, borrowed */
    int exists;       /* 0: the broker has no such queue */
    /* -1: not reported (missing, or no statistics emitted yet) */
    int64_t ready, unacked, consumers;
};

/* Read messages ready, unacknowledged and consumers of every queue in the
 * plan from the management API at cfg->amqp_mgmt_url, in one request for
 * the whole vhost. out has t->n_queues entries, in the plan's order.
 * Returns 0 (missing queues included), OQ_ECONFIG (amqp_url unusable),
 * OQ_ENOMEM or OQ_EHTTP when the API cannot be read; err says why, with
 * the URL redacted. */
OQ_WUR int oq_topology_queue_counts(const struct oq_config *cfg, const struct oq_topology *t,
                                    const char *vhost, struct oq_queue_counts *out, char *err,
                                    size_t errlen);

/* Write the plan as a RabbitMQ definitions file (JSON) for vhost. */
OQ_WUR int oq_topology_write_definitions(const struct oq_topology *t, const char *vhost, FILE *out);

#endif
