/* subscribe.c - the consumer's subscriptions: prefetch per queue, consuming a cancelled queue again
 */
#include "orderq/subscribe.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/handler.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/topology.h"

struct sub {
    const char *queue;
    uint16_t prefetch;
    /* The broker cancelled it (its queue was deleted): when to try to
     * consume it again, and how many tries failed. */
    int64_t retry_at; /* 0: consuming */
    int failures;
};

struct oq_subscriptions {
    struct sub *subs;
    size_t n, active;
    struct oq_broker *b; /* the connection of the last start */
    amqp_channel_t consume, declare;
    int declare_open;
};

/* A work queue's handler: the queue is <prefix>.<event code or queue>. */
static const struct oq_handler *handler_of(const struct oq_config *cfg, const char *queue,
                                           const struct oq_handler *handlers, size_t n)
{
    size_t len = strlen(cfg->queue_prefix);
    if (strncmp(queue, cfg->queue_prefix, len) != 0 || queue[len] != '.')
        return NULL;
    return oq_handler_find(handlers, n, queue + len + 1, queue + len + 1);
}

/* Each queue's prefetch. A queue whose handler calls out takes at most
 * as many deliveries as the effect workers finish, at their slowest,
 * within half of consumer_timeout_ms: a delivery waiting for a worker
 * longer than RabbitMQ's consumer_timeout gets the channel closed, and
 * everything in flight comes back. */
static int plan_prefetch(struct oq_subscriptions *s, const struct oq_config *cfg,
                         const struct oq_handler *handlers, size_t n_handlers, char *err,
                         size_t errlen)
{
    size_t n_effect = 0;
    int64_t slowest = 1;
    for (size_t i = 0; i < s->n; i++) {
        const struct oq_handler *h = handler_of(cfg, s->subs[i].queue, handlers, n_handlers);
        s->subs[i].prefetch = (uint16_t)cfg->prefetch;
        if (h == NULL || h->perform == NULL)
            continue;
        s->subs[i].prefetch = 0; /* set below */
        n_effect++;
        if (h->call_timeout_ms > slowest)
            slowest = h->call_timeout_ms;
    }
    if (n_effect == 0)
        return 0;
    int64_t fits =
        (cfg->consumer_timeout_ms / 2 / slowest) * cfg->effect_workers / (int64_t)n_effect;
    if (fits < 1) {
        snprintf(err, errlen,
                 "consumer_timeout_ms (%s) is %lld: half of it does not hold one call of %lld ms "
                 "(smtp_timeout_ms or a webhook's timeout_ms) for each of %zu queues that call "
                 "out with effect_workers %lld; raise RabbitMQ's consumer_timeout and "
                 "consumer_timeout_ms, add effect workers or shorten the timeouts",
                 oq_config_origin(cfg, "consumer_timeout_ms"), (long long)cfg->consumer_timeout_ms,
                 (long long)slowest, n_effect, (long long)cfg->effect_workers);
        return OQ_ECONFIG;
    }
    if (cfg->effect_prefetch > fits) {
        snprintf(err, errlen,
                 "effect_prefetch (%s) is %lld, but only %lld deliveries per queue that calls out "
                 "are sure to be acked within half of consumer_timeout_ms (%lld ms) by %lld effect "
                 "workers whose slowest call may take %lld ms; lower it (or 0: derived)",
                 oq_config_origin(cfg, "effect_prefetch"), (long long)cfg->effect_prefetch,
                 (long long)fits, (long long)cfg->consumer_timeout_ms,
                 (long long)cfg->effect_workers, (long long)slowest);
        return OQ_ECONFIG;
    }
    int64_t each = cfg->effect_prefetch ? cfg->effect_prefetch : fits;
    if (each > cfg->prefetch)
        each = cfg->prefetch;
    for (size_t i = 0; i < s->n; i++)
        if (s->subs[i].prefetch == 0)
            s->subs[i].prefetch = (uint16_t)each;
    oq_info("queues that call out take %lld deliveries each (effect_workers %lld, slowest call "
            "%lld ms, consumer_timeout_ms %lld)",
            (long long)each, (long long)cfg->effect_workers, (long long)slowest,
            (long long)cfg->consumer_timeout_ms);
    return 0;
}

int oq_subscriptions_new(const struct oq_config *cfg, const char *const *queues, size_t n,
                         const struct oq_handler *handlers, size_t n_handlers,
                         struct oq_subscriptions **out, char *err, size_t errlen)
{
    struct oq_subscriptions *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (s == NULL || (s->subs = calloc(n + 1, sizeof(*s->subs))) == NULL) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return OQ_ENOMEM;
    }
    s->n = n;
    for (size_t i = 0; i < n; i++)
        s->subs[i].queue = queues[i];
    int rc = plan_prefetch(s, cfg, handlers, n_handlers, err, errlen);
    if (rc != 0) {
        oq_subscriptions_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void oq_subscriptions_free(struct oq_subscriptions *s)
{
    if (s == NULL)
        return;
    free(s->subs);
    free(s);
}

/* basic.qos then basic.consume (global = 0: the prefetch is the new
 * consumer's own). Returns oq_broker_check's answer. */
static int subscribe(struct oq_subscriptions *s, struct sub *q)
{
    amqp_connection_state_t conn = oq_broker_conn(s->b);
    char what[300];
    amqp_basic_qos(conn, s->consume, 0, q->prefetch, 0);
    int rc = oq_broker_check(s->b, s->consume, "basic.qos");
    if (rc != 0)
        return rc;
    snprintf(what, sizeof(what), "basic.consume %s", q->queue);
    amqp_basic_consume(conn, s->consume, amqp_cstring_bytes(q->queue), amqp_cstring_bytes(q->queue),
                       0, 0, 0, amqp_empty_table);
    if ((rc = oq_broker_check(s->b, s->consume, what)) != 0)
        return rc;
    q->retry_at = 0;
    q->failures = 0;
    oq_metric_set(OQ_M_CONSUMERS, (int64_t)++s->active);
    return 0;
}

/* Whether q exists, asked on the declaring channel (opened when first
 * needed): a basic.consume of a missing queue would close the consuming
 * channel, every queue's. Returns 0, OQ_ENOTFOUND or OQ_EBROKER. */
static int exists(struct oq_subscriptions *s, const struct sub *q)
{
    amqp_connection_state_t conn = oq_broker_conn(s->b);
    if (!s->declare_open) {
        amqp_channel_open(conn, s->declare);
        if (oq_broker_check(s->b, s->declare, "channel.open") != 0)
            return OQ_EBROKER;
        s->declare_open = 1;
    }
    amqp_queue_declare(conn, s->declare, amqp_cstring_bytes(q->queue), 1, 0, 0, 0,
                       amqp_empty_table);
    int rc = oq_broker_check(s->b, s->declare, "queue.declare (passive)");
    return rc == 0 || rc == OQ_EBROKER ? rc : OQ_ENOTFOUND;
}

/* q is not consumed now: try again after a backoff. */
static void later(struct sub *q, const char *why)
{
    int64_t wait = oq_backoff_ms(++q->failures);
    q->retry_at = oq_now_ms() + wait;
    oq_log(OQ_LOG_WARN, (&(struct oq_log_fields){.queue = q->queue}),
           "%s; consuming it again in %lld ms", why, (long long)wait);
}

int oq_subscriptions_start(struct oq_subscriptions *s, struct oq_broker *b, amqp_channel_t consume,
                           amqp_channel_t declare, char *err, size_t errlen)
{
    size_t missing = 0;
    s->b = b;
    s->consume = consume;
    s->declare = declare;
    s->declare_open = 0;
    s->active = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct sub *q = &s->subs[i];
        char why[300];
        q->retry_at = 0;
        int rc = exists(s, q);
        if (rc == OQ_ENOTFOUND) {
            /* the others are consumed meanwhile */
            snprintf(why, sizeof(why), "queue %s does not exist (run `orderq topology declare`)",
                     q->queue);
            later(q, why);
            missing++;
            continue;
        }
        if (rc == 0)
            rc = subscribe(s, q);
        if (rc != 0) {
            snprintf(err, errlen, "%s", oq_broker_error(b));
            return OQ_EBROKER;
        }
        oq_log(OQ_LOG_INFO, (&(struct oq_log_fields){.queue = q->queue}), "consuming");
    }
    if (missing > 0 && missing == s->n) {
        snprintf(err, errlen, "none of the %zu queues exists: run `orderq topology declare`", s->n);
        return OQ_ENOTFOUND;
    }
    return 0;
}

void oq_subscriptions_cancelled(struct oq_subscriptions *s, const amqp_basic_cancel_t *m)
{
    for (size_t i = 0; i < s->n; i++) {
        struct sub *q = &s->subs[i];
        if (q->retry_at != 0 || strlen(q->queue) != m->consumer_tag.len ||
            memcmp(q->queue, m->consumer_tag.bytes, m->consumer_tag.len) != 0)
            continue;
        char why[300];
        oq_metric_set(OQ_M_CONSUMERS, (int64_t)--s->active);
        snprintf(why, sizeof(why), "the broker cancelled the consumer of %s (queue deleted?)",
                 q->queue);
        later(q, why);
        return;
    }
}

/* Declare q again as the topology says, on the declaring channel (a
 * refusal closes only that one), then check it is there: a basic.consume
 * of a missing queue would close the consuming channel, every queue's.
 * Returns 0, OQ_ENOTFOUND (still missing) or OQ_EBROKER. */
static int redeclare(struct oq_subscriptions *s, const struct oq_topology *topology,
                     const struct sub *q)
{
    char why[OQ_ERRLEN] = "";
    int rc =
        exists(s, q); /* opens the declaring channel, and a queue or its bindings may be gone */
    if (rc == OQ_EBROKER || topology == NULL)
        return rc;
    rc = oq_topology_declare_queue(s->b, s->declare, topology, q->queue, why, sizeof(why));
    if (rc == OQ_EBROKER)
        return rc;
    if (rc != 0 && rc != OQ_ENOTFOUND) /* e.g. no configure permission */
        oq_log(OQ_LOG_WARN, (&(struct oq_log_fields){.queue = q->queue}), "redeclaring %s: %s",
               q->queue, why);
    return exists(s, q);
}

int oq_subscriptions_retry(struct oq_subscriptions *s, const struct oq_topology *topology)
{
    int64_t now = oq_now_ms();
    for (size_t i = 0; i < s->n; i++) {
        struct sub *q = &s->subs[i];
        if (q->retry_at == 0 || now < q->retry_at)
            continue;
        struct oq_log_fields f = {.queue = q->queue};
        int rc = redeclare(s, topology, q);
        if (rc == OQ_EBROKER)
            return rc;
        if (rc != 0) {
            char why[300];
            snprintf(why, sizeof(why), "queue %s is still missing", q->queue);
            later(q, why);
            continue;
        }
        if (subscribe(s, q) != 0)
            return OQ_EBROKER; /* the consuming channel is gone: start afresh */
        oq_log(OQ_LOG_INFO, &f, "consuming %s again", q->queue);
    }
    return 0;
}

void oq_subscriptions_cancel_all(struct oq_subscriptions *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->subs[i].retry_at == 0)
            amqp_basic_cancel(oq_broker_conn(s->b), s->consume,
                              amqp_cstring_bytes(s->subs[i].queue));
}

size_t oq_subscriptions_active(const struct oq_subscriptions *s)
{
    return s->active;
}
