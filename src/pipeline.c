/* pipeline.c - the consumer: deliveries in batches, one transaction each, acks last */
#include "orderq/pipeline.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/deadletter.h"
#include "orderq/effects.h"
#include "orderq/event.h"
#include "orderq/handler.h"
#include "orderq/intake.h"
#include "orderq/ledger.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/park.h"
#include "orderq/retry.h"
#include "orderq/subscribe.h"
#include "orderq/topology.h"
#include "orderq/trust.h"
#include "orderq/webhook.h"

#define CONSUME_CHANNEL 1
#define DECLARE_CHANNEL 2 /* redeclaring a deleted queue: a refusal closes only this one */

enum outcome {
    PENDING = 0,
    DONE,      /* effect committed now */
    DUPLICATE, /* the ledger had it: no effect */
    DEAD,      /* cannot succeed: to the dead-letter exchange, then ack */
    RETRY,     /* failed for now: to a delay tier, then ack */
    REQUEUE,   /* not parked (no memory, a publish refused): nack with requeue */
};

struct delivery {
    uint64_t tag;
    int queue_index; /* its queue's metrics label, or -1 */
    char *queue, *exchange, *routing_key, *message_id, *type;
    amqp_message_t msg; /* properties and body as delivered, republished as they are */
    int has_msg;
    /* From orderq's own headers only when orderq published it (trust.h). */
    int64_t attempt;  /* x-orderq-attempt: 1 on the first delivery */
    int force_resend; /* x-orderq-force-resend: a person said "send it again" */
    int calls_out;    /* prepared on an effect worker (its handler must call out) */
    /* Kept across retries in orderq's headers (else the delivery's own). */
    amqp_bytes_t original_exchange, original_routing_key, first_failed_at;
    amqp_bytes_t original_user_id; /* the publisher's user_id, or empty */
    struct oq_event ev;
    const struct oq_handler *handler;
    void *plan;
    char effect_key[OQ_EVENT_ID_MAX + 1];
    char result[OQ_RESULT_LEN];
    enum outcome outcome;
    char reason[512];
    enum oq_error_class error_class;
    char tier[32];            /* RETRY: the delay tier's name */
    uint64_t park_seq;        /* confirm sequence of its retry or dead letter; 0 before */
    struct oq_effect_job job; /* a handler with perform: on an effect worker */
    /* An earlier delivery of this batch with the same effect: this one's
     * job waits for that one's outcome (a duplicate once it is done, its
     * own chance if it failed). */
    struct delivery *leader;
};

struct batch {
    struct batch *next;      /* in the broker thread's in-flight list */
    struct batch *next_todo; /* in the worker's queue */
    uint64_t gen;            /* connection generation its tags belong to */
    size_t n, cap;
    struct delivery *d;
    int processed;       /* set by the worker, under the mutex */
    size_t effects_left; /* jobs on effect workers; under the mutex */
    size_t park_pending; /* retries and dead letters not yet confirmed */
    int parked;          /* all of them published */
    int64_t requeue_at;  /* a batch with deliveries to requeue waits until then */
};

struct pipeline {
    const struct oq_config *cfg;
    char *own_user; /* orderq's broker user: whose x-orderq-* headers count */
    volatile sig_atomic_t *stop;
    void (*wake_relay)(void *);
    void *relay;

    struct worker *workers;
    size_t n_workers;
    struct oq_effect_pool *effects;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct batch *todo_head, *todo_tail;
    size_t idle_workers; /* waiting for a batch */
    int worker_exit;
    int wake_fd; /* eventfd: a batch is processed (the broker thread sleeps in poll) */
    _Atomic uint64_t gen;

    /* broker thread only */
    struct batch *inflight_head, *inflight_tail;
    struct batch *orphans;    /* from a lost connection, freed once processed */
    struct oq_parker *parker; /* retries and dead letters, on a connection of its own */
    struct oq_broker *b;
    struct oq_topology *topology; /* redeclared at each connect */
    struct oq_subscriptions *subs;
    int requeue_streak;        /* batches in a row that had to requeue */
    int held_up;               /* a processed batch waits (parking, requeue backoff) */
    int unreadable;            /* the connection ended on a delivery it cannot read */
    const char *const *queues; /* consumed, borrowed */
    size_t n_queues;
    unsigned char *dead_letters; /* per queue: it has the plan's dead-letter exchange (checked
                                  * at each connect) */
    uint64_t settled;            /* batches acked, ever: a connection that acks one is healthy */
};

/* ---- batches -------------------------------------------------------------- */

static void delivery_clear(struct delivery *d)
{
    free(d->queue);
    free(d->exchange);
    free(d->routing_key);
    free(d->message_id);
    free(d->type);
    if (d->has_msg)
        amqp_destroy_message(&d->msg);
    if (d->handler && d->plan)
        d->handler->free_plan(d->plan);
    oq_event_clear(&d->ev);
}

static void batch_free(struct batch *bt)
{
    if (bt == NULL)
        return;
    oq_metric_add(OQ_M_IN_FLIGHT, -(int64_t)bt->n); /* settled, or to come back */
    for (size_t i = 0; i < bt->n; i++)
        delivery_clear(&bt->d[i]);
    free(bt->d);
    free(bt);
}

static char *bytes_dup(amqp_bytes_t b)
{
    char *s = malloc(b.len + 1);
    if (s != NULL) {
        memcpy(s, b.bytes, b.len);
        s[b.len] = '\0';
    }
    return s;
}

/* A failed attempt: to the next delay tier when the failure is transient
 * and attempts are left, else to the dead letters. */
static void set_failed_after(const struct oq_config *cfg, struct delivery *d,
                             enum oq_error_class error_class, const char *reason,
                             int64_t min_delay_ms)
{
    struct oq_retry_decision next;
    oq_retry_decide(cfg, error_class, d->attempt, &next);
    oq_retry_wait_at_least(cfg, min_delay_ms, &next);
    d->error_class = error_class;
    if (next.retry) {
        d->outcome = RETRY;
        snprintf(d->tier, sizeof(d->tier), "%s", next.tier_name);
        snprintf(d->reason, sizeof(d->reason), "%s", reason);
    } else {
        d->outcome = DEAD;
        if (error_class == OQ_ERR_TRANSIENT)
            snprintf(d->reason, sizeof(d->reason), "gave up after %lld attempts: %s",
                     (long long)d->attempt, reason);
        else
            snprintf(d->reason, sizeof(d->reason), "%s", reason);
    }
}

static void set_failed(const struct oq_config *cfg, struct delivery *d,
                       enum oq_error_class error_class, const char *reason)
{
    set_failed_after(cfg, d, error_class, reason, -1);
}

/* ---- the database worker --------------------------------------------------- */

/* One database worker: its own connection and its own handlers (their
 * caches are refreshed without locks). */
struct worker {
    struct pipeline *pl;
    pthread_t thread;
    struct oq_db *db;
    int db_failures;
    unsigned db_tries; /* oq_db_reopen counts the reconnects */
    struct oq_handler *handlers;
    size_t n_handlers;
};

static int stale(struct pipeline *pl, const struct batch *bt)
{
    return atomic_load(&pl->gen) != bt->gen;
}

/* Wait ms, or less once the batch went stale (a lost connection, or
 * shutdown): a worker never sleeps through a stop. */
static void worker_nap(struct worker *w, const struct batch *bt, int64_t ms)
{
    for (; ms > 0 && !stale(w->pl, bt); ms -= 50)
        oq_nap(ms < 50 ? ms : 50, NULL);
}

/* Connect (again) to MySQL, waiting with backoff; 0, or -1 when stopping or
 * the batch went stale meanwhile. */
static int ensure_db(struct worker *w, const struct batch *bt)
{
    char err[OQ_ERRLEN];
    while (w->db == NULL) {
        if (stale(w->pl, bt))
            return -1;
        int rc = oq_db_reopen(w->pl->cfg->mysql_url, w->pl->cfg->connect_timeout_ms, &w->db_tries,
                              &w->db, err, sizeof(err));
        if (rc == 0) {
            if (w->db_failures > 0)
                oq_info("MySQL is back after %d failed attempts", w->db_failures);
            w->db_failures = 0;
            break;
        }
        int64_t wait = oq_backoff_ms(++w->db_failures);
        oq_error("%s; retrying in %lld ms", err, (long long)wait);
        worker_nap(w, bt, wait);
    }
    return 0;
}

static void drop_db(struct worker *w)
{
    oq_db_close(w->db);
    w->db = NULL;
}

/* A work queue's name without "<queue_prefix>.", or NULL. */
static const char *queue_suffix(const struct pipeline *pl, const char *queue)
{
    size_t n = strlen(pl->cfg->queue_prefix);
    if (queue == NULL || strncmp(queue, pl->cfg->queue_prefix, n) != 0 || queue[n] != '.')
        return NULL;
    return queue + n + 1;
}

/* The body as the queue's intake rule reads it (intake.h), or as the
 * envelope. The routing key is the shop's: on a retry, the original one
 * orderq kept in its headers, not the work queue's name. */
static int decode_delivery(const struct pipeline *pl, struct delivery *d, char *err, size_t errlen)
{
    const struct oq_intake *intake = pl->topology->intake;
    char *key = bytes_dup(d->original_routing_key);
    if (key == NULL) {
        snprintf(err, errlen, "out of memory decoding the body");
        return OQ_ENOMEM;
    }
    /* Through the default exchange to this very queue: its routing key is
     * the queue's name, not a code the shop chose. */
    int direct = d->original_exchange.len == 0 && d->queue != NULL && strcmp(key, d->queue) == 0;
    const char *suffix = queue_suffix(pl, d->queue);
    /* The webhook queue takes every hooked event: the shop's routing key
     * says whose mapping reads it. */
    const struct oq_intake_rule *rule = suffix != NULL && strcmp(suffix, OQ_WEBHOOK_QUEUE) == 0
                                            ? oq_intake_find_by_key(intake, direct ? NULL : key)
                                            : oq_intake_find(intake, suffix);
    struct oq_intake_message m = {direct ? NULL : key, d->type, d->message_id};
    int rc = oq_intake_decode(rule, d->msg.body.bytes, d->msg.body.len, &m, &d->ev, err, errlen);
    free(key);
    if (rc == OQ_ENOMEM)
        snprintf(err, errlen, "out of memory decoding the body");
    return rc;
}

/* Decode, find the handler and plan every delivery: no database needed. */
static void prepare_batch(struct worker *w, struct batch *bt)
{
    char err[512];
    for (size_t i = 0; i < bt->n; i++) {
        struct delivery *d = &bt->d[i];
        if (d->outcome != PENDING || d->handler != NULL)
            continue; /* decided, or planned on an earlier try */
        if (d->ev.root == NULL && decode_delivery(w->pl, d, err, sizeof(err)) != 0) {
            set_failed(w->pl->cfg, d, OQ_ERR_BAD_INPUT, err);
            continue;
        }
        const struct oq_handler *h = oq_handler_find(
            w->handlers, w->n_handlers, queue_suffix(w->pl, d->queue), d->ev.canonical_code);
        if (h == NULL) {
            snprintf(err, sizeof(err), "no handler for event code \"%s\"", d->ev.code);
            set_failed(w->pl->cfg, d, OQ_ERR_UNKNOWN_EVENT, err);
            continue;
        }
        if (h->prepare_calls_out != NULL && h->prepare_calls_out(h->state, &d->ev)) {
            d->handler = h; /* prepared and committed by an effect worker */
            d->calls_out = 1;
            continue;
        }
        d->effect_key[0] = '\0';
        err[0] = '\0';
        int rc = h->prepare(h->state, &d->ev, d->attempt, &d->plan, d->effect_key,
                            sizeof(d->effect_key), d->result, sizeof(d->result), err, sizeof(err));
        if (rc != 0) {
            if (err[0] == '\0')
                snprintf(err, sizeof(err), "%s: %s", h->name, oq_strerror(rc));
            set_failed(w->pl->cfg, d, rc == OQ_EINVAL ? OQ_ERR_PERMANENT : OQ_ERR_TRANSIENT, err);
            continue;
        }
        if (d->effect_key[0] == '\0')
            snprintf(d->effect_key, sizeof(d->effect_key), "%s", d->ev.identifier);
        d->handler = h;
    }
}

/* When the event happened, in Unix microseconds: the AMQP timestamp
 * property (whole seconds), else the envelope's created_at; 0 when it has
 * neither. */
static int64_t event_time_us(const struct delivery *d)
{
    int64_t us = 0;
    if (d->has_msg && (d->msg.properties._flags & AMQP_BASIC_TIMESTAMP_FLAG))
        return d->msg.properties.timestamp <= (uint64_t)(INT64_MAX / 1000000)
                   ? (int64_t)d->msg.properties.timestamp * 1000000
                   : 0;
    if (d->ev.created_at != NULL && oq_event_time_us(d->ev.created_at, &us) == 0)
        return us;
    return 0;
}

/* The event's age now that its effect is committed: end-to-end latency.
 * A time before 2000 or over a day ahead is the publisher's mistake (a zero
 * time, milliseconds given as seconds), not an age: it is left out. */
static void observe_age(const struct delivery *d, int64_t now_us)
{
    const int64_t y2000_us = INT64_C(946684800) * 1000000, day_us = INT64_C(86400) * 1000000;
    int64_t born = event_time_us(d);
    if (born == 0 || born < y2000_us || born > now_us + day_us)
        return;
    oq_metrics_observe(OQ_H_EVENT_AGE, now_us - born);
}

/* The wall clock in microseconds: event times are the publishers'. */
static int64_t wall_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

/* Handler h's apply, timed for orderq_handler_duration_seconds. */
static int apply_timed(struct worker *w, size_t h, void *const *plans, size_t m, char *err,
                       size_t errlen)
{
    int64_t start = oq_metrics_now_us();
    int rc = w->handlers[h].apply(w->handlers[h].state, w->db, plans, m, err, errlen);
    oq_metrics_handler_duration(h, oq_metrics_now_us() - start);
    return rc;
}

/* One transaction for the planned deliveries in [from, to). Returns 0, or
 * OQ_EDB with the database's error left on w->db. */
static int commit_range(struct worker *w, struct batch *bt, size_t from, size_t to, char *err,
                        size_t errlen)
{
    struct pipeline *pl = w->pl;
    size_t n = to - from, k = 0;
    struct oq_claim *claims = calloc(n + 1, sizeof(*claims));
    struct delivery **who = calloc(n + 1, sizeof(*who));
    void **plans = calloc(n + 1, sizeof(*plans));
    int rc = OQ_EDB;

    if (claims == NULL || who == NULL || plans == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = from; i < to; i++) {
        struct delivery *d = &bt->d[i];
        if (d->outcome != PENDING || d->handler == NULL || d->handler->perform != NULL ||
            d->calls_out)
            continue; /* decided, or for an effect worker */
        claims[k] = (struct oq_claim){.handler = d->handler->name,
                                      .effect_key = d->effect_key,
                                      .event_identifier = d->ev.identifier,
                                      .event_code = d->ev.canonical_code,
                                      .result = d->result,
                                      .attempts = d->attempt};
        who[k++] = d;
    }
    if (k == 0) {
        rc = 0;
        goto out;
    }
    if (oq_db_exec(w->db, "START TRANSACTION") != 0 ||
        oq_ledger_claim(w->db, pl->cfg->instance_id, claims, k, err, errlen) != 0)
        goto fail;
    for (size_t h = 0; h < w->n_handlers; h++) {
        size_t m = 0;
        for (size_t i = 0; i < k; i++)
            if (claims[i].claimed && who[i]->handler == &w->handlers[h])
                plans[m++] = who[i]->plan;
        if (m > 0 && apply_timed(w, h, plans, m, err, errlen) != 0)
            goto fail;
    }
    int64_t commit_start = oq_metrics_now_us();
    if (oq_db_exec(w->db, "COMMIT") != 0)
        goto fail;
    oq_metrics_observe(OQ_H_COMMIT, oq_metrics_now_us() - commit_start);
    int64_t committed_at = wall_us(); /* one clock read for the batch's ages */
    for (size_t i = 0; i < k; i++) {
        who[i]->outcome = claims[i].claimed ? DONE : DUPLICATE;
        if (claims[i].claimed)
            observe_age(who[i], committed_at);
    }
    rc = 0;
    goto out;
fail:
    if (err[0] == '\0')
        snprintf(err, errlen, "%s", oq_db_error(w->db));
    oq_db_rollback(w->db);
out:
    free(claims);
    free(who);
    free(plans);
    return rc;
}

/* Each planned delivery in its own transaction, so the one that fails is
 * found: it is dead-lettered with the database's reason when the failure is
 * its own. Returns 0, or OQ_EDB to retry: a deadlock, or the database away
 * (no message is to blame for that, so none is parked for it). */
static int commit_one_by_one(struct worker *w, struct batch *bt, char *err, size_t errlen)
{
    for (size_t i = 0; i < bt->n; i++) {
        err[0] = '\0';
        if (commit_range(w, bt, i, i + 1, err, errlen) == 0)
            continue;
        enum oq_db_class cls = oq_db_last_class(w->db);
        if (cls == OQ_DB_RETRY || oq_db_class_is_outage(cls))
            return OQ_EDB;
        set_failed(w->pl->cfg, &bt->d[i], OQ_ERR_PERMANENT, err);
    }
    return 0;
}

/* Bring every handler's cache up to date on w's connection. */
static int refresh_handlers(struct worker *w, char *err, size_t errlen)
{
    for (size_t h = 0; h < w->n_handlers; h++)
        if (w->handlers[h].refresh &&
            w->handlers[h].refresh(w->handlers[h].state, w->db, err, errlen) != 0)
            return OQ_EDB;
    return 0;
}

/* A short random pause before redoing a transaction that lost a
 * deadlock (or, on Galera, a certification conflict): the first redo is
 * at once, later ones are spread out so the same two writers do not
 * collide again in step. */
static int64_t conflict_pause_ms(int conflicts)
{
    if (conflicts <= 1)
        return 0;
    int64_t cap = conflicts > 8 ? 200 : 25LL * conflicts;
    return 1 + (int64_t)(oq_random_u64() % (uint64_t)cap);
}

/* Commit the batch, however long the database is away. Three kinds of
 * failure, handled apart:
 *   - an outage (connection lost, read_only, not ready, disk full, query
 *     killed): reconnect and wait with backoff, for as long as it lasts;
 *     it spends no attempt and blames no message;
 *   - a deadlock or lock wait timeout: redo, after a short random pause;
 *   - anything else: after three, commit the deliveries one by one to find
 *     the one that causes it, and dead-letter that one. */
static void process_batch(struct worker *w, struct batch *bt)
{
    char err[OQ_ERRLEN];
    int failures = 0, outages = 0, conflicts = 0;

    for (;;) {
        if (ensure_db(w, bt) != 0)
            return; /* stale or stopping: the broker redelivers it */
        err[0] = '\0';
        int rc = refresh_handlers(w, err, sizeof(err));
        if (rc == 0) {
            prepare_batch(w, bt);
            err[0] = '\0';
            rc = failures < 3 ? commit_range(w, bt, 0, bt->n, err, sizeof(err))
                              : commit_one_by_one(w, bt, err, sizeof(err));
            if (rc == 0) {
                if (outages > 0)
                    oq_info("MySQL takes writes again; batch of %zu committed after %d tries",
                            bt->n, outages + 1);
                return;
            }
        }
        enum oq_db_class cls = oq_db_last_class(w->db);
        int64_t wait;
        if (oq_db_class_is_outage(cls)) {
            wait = oq_backoff_ms(++outages < 4 ? outages : 4); /* at most 4 s: back soon */
            oq_warn("batch of %zu waits for MySQL (%s); reconnecting in %lld ms", bt->n, err,
                    (long long)wait);
            drop_db(w); /* a new connection may reach the new primary */
        } else if (cls == OQ_DB_RETRY) {
            wait = conflict_pause_ms(++conflicts);
            oq_debug("batch of %zu: %s; redoing it", bt->n, err);
        } else {
            wait = oq_backoff_ms(++failures);
            oq_warn("batch of %zu: %s", bt->n, err);
        }
        if (stale(w->pl, bt))
            return;
        worker_nap(w, bt, wait);
    }
}

/* An idle database worker and no batch queued for it; pl->mu held. */
static int worker_free_locked(const struct pipeline *pl)
{
    return pl->todo_head == NULL && pl->idle_workers > 0;
}

/* Something the broker thread waits for in ppoll happened: a batch is
 * processed (to ack), or a worker is free (to take an open batch). */
static void wake_broker_thread(struct pipeline *pl)
{
    uint64_t one = 1;
    if (pl->wake_fd >= 0)
        (void)!write(pl->wake_fd, &one, sizeof(one)); /* full (never here): awake anyway */
}

/* Hand the batch's outside effects, and the events whose handler must
 * call out to prepare them, to the effect workers; the batch is processed
 * when the last of them finishes (or now, when it has none). A second send
 * of one effect in a batch waits for the first one's outcome: a duplicate
 * once that one is done, its own try if that one failed (it may carry the
 * corrected address). */
static void start_effects(struct worker *w, struct batch *bt)
{
    struct pipeline *pl = w->pl;
    size_t jobs = 0, leaders = 0;
    for (size_t i = 0; i < bt->n && !stale(pl, bt); i++) {
        struct delivery *d = &bt->d[i];
        int sends = d->handler != NULL && d->handler->perform != NULL;
        if (d->outcome != PENDING || (!sends && !d->calls_out))
            continue;
        d->leader = NULL;
        for (size_t j = i; sends && j-- > 0;)
            if (bt->d[j].job.owner != NULL && bt->d[j].job.kind == OQ_JOB_SEND &&
                strcmp(bt->d[j].effect_key, d->effect_key) == 0 &&
                strcmp(bt->d[j].handler->name, d->handler->name) == 0) {
                d->leader = &bt->d[j]; /* the latest one before it: a chain */
                break;
            }
        d->job = (struct oq_effect_job){
            .kind = sends ? OQ_JOB_SEND : OQ_JOB_PREPARE,
            .handler_index = (size_t)(d->handler - w->handlers),
            .plan = d->plan,
            .ev = &d->ev,
            .effect = {d->handler->name, d->effect_key, d->ev.identifier, d->ev.canonical_code},
            .attempt = d->attempt,
            .force_resend = d->force_resend,
            .owner = bt,
        };
        jobs++;
        leaders += d->leader == NULL;
    }
    pthread_mutex_lock(&pl->mu);
    bt->effects_left = jobs;
    bt->processed = jobs == 0;
    pthread_mutex_unlock(&pl->mu);
    if (jobs == 0)
        wake_broker_thread(pl);
    /* jobs first: once the last job is in, the batch may finish and be
     * freed at any moment, so bt is not read again */
    for (size_t i = 0; leaders > 0 && i < bt->n; i++)
        /* leader first: a follower's outcome is an effect worker's to write */
        if (bt->d[i].job.owner != NULL && bt->d[i].leader == NULL && bt->d[i].outcome == PENDING) {
            oq_effect_pool_submit(pl->effects, &bt->d[i].job);
            leaders--;
        }
}

static int effect_cancelled(const struct oq_effect_job *job, void *ctx)
{
    return stale(ctx, job->owner);
}

/* The delivery waiting for d's outcome, or NULL. */
static struct delivery *follower_of(struct batch *bt, const struct delivery *d)
{
    for (size_t i = 0; i < bt->n; i++)
        if (bt->d[i].leader == d && bt->d[i].outcome == PENDING)
            return &bt->d[i];
    return NULL;
}

/* f and the copies chained behind it are duplicates of an effect done
 * (or of a stale batch, never acked). Returns how many were settled. */
static size_t settle_chain(struct batch *bt, struct delivery *f)
{
    size_t n = 0;
    for (; f != NULL; f = follower_of(bt, f), n++)
        f->outcome = DUPLICATE;
    return n;
}

/* On an effect worker: the job's outcome becomes its delivery's. */
static void effect_finished(struct oq_effect_job *job, int ran, void *ctx)
{
    struct pipeline *pl = ctx;
    struct batch *bt = job->owner;
    struct delivery *d = (struct delivery *)((char *)job - offsetof(struct delivery, job));
    if (job->kind == OQ_JOB_PREPARE) {
        d->plan = job->prepared_plan; /* freed with the delivery */
        if (ran && job->result == OQ_JOB_DONE && pl->wake_relay != NULL)
            pl->wake_relay(pl->relay); /* it may have written outbox rows */
    }
    if (ran) {
        if (job->result == OQ_JOB_DONE) {
            d->outcome = DONE;
            observe_age(d, wall_us());
        } else if (job->result == OQ_JOB_DUPLICATE)
            d->outcome = DUPLICATE;
        else
            set_failed_after(pl->cfg, d, job->error_class, job->reason, job->retry_after_ms);
    }
    /* The copy waiting for this one's outcome (at most one: a chain): its
     * own try when this one failed, else a duplicate (or, stale, nothing). */
    size_t settled = 1;
    struct delivery *f = follower_of(bt, d);
    if (f != NULL && ran && d->outcome != DONE && d->outcome != DUPLICATE)
        oq_effect_pool_submit(pl->effects, &f->job);
    else if (f != NULL)
        settled += settle_chain(bt, f);
    pthread_mutex_lock(&pl->mu);
    bt->effects_left -= settled;
    int processed = bt->effects_left == 0;
    if (processed)
        bt->processed = 1;
    pthread_mutex_unlock(&pl->mu);
    if (processed)
        wake_broker_thread(pl);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pipeline *pl = w->pl;
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        pl->idle_workers++;
        if (worker_free_locked(pl))
            wake_broker_thread(pl); /* a batch past its window may wait for one */
        while (pl->todo_head == NULL && !pl->worker_exit)
            pthread_cond_wait(&pl->cv, &pl->mu);
        pl->idle_workers--;
        struct batch *bt = pl->todo_head;
        if (bt == NULL) {
            pthread_mutex_unlock(&pl->mu);
            break;
        }
        pl->todo_head = bt->next_todo;
        if (pl->todo_head == NULL)
            pl->todo_tail = NULL;
        if (worker_free_locked(pl))
            wake_broker_thread(pl); /* another worker, idle, is free now the queue is empty */
        pthread_mutex_unlock(&pl->mu);

        if (!stale(pl, bt))
            process_batch(w, bt);
        if (pl->wake_relay != NULL)
            pl->wake_relay(pl->relay);
        start_effects(w, bt);
    }
    drop_db(w);
    return NULL;
}

/* ---- the broker thread ------------------------------------------------------ */

static void submit(struct pipeline *pl, struct batch *bt)
{
    if (pl->inflight_tail)
        pl->inflight_tail->next = bt;
    else
        pl->inflight_head = bt;
    pl->inflight_tail = bt;
    pthread_mutex_lock(&pl->mu);
    if (pl->todo_tail)
        pl->todo_tail->next_todo = bt;
    else
        pl->todo_head = bt;
    pl->todo_tail = bt;
    pthread_cond_signal(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
}

static int is_processed(struct pipeline *pl, struct batch *bt)
{
    pthread_mutex_lock(&pl->mu);
    int done = bt->processed;
    pthread_mutex_unlock(&pl->mu);
    return done;
}

/* A lost connection: nothing in flight can be acked any more. */
static void orphan_inflight(struct pipeline *pl)
{
    atomic_fetch_add(&pl->gen, 1);
    while (pl->inflight_head != NULL) {
        struct batch *bt = pl->inflight_head;
        pl->inflight_head = bt->next;
        bt->next = pl->orphans;
        pl->orphans = bt;
    }
    pl->inflight_tail = NULL;
}

static void free_processed_orphans(struct pipeline *pl)
{
    struct batch **p = &pl->orphans;
    while (*p != NULL) {
        struct batch *bt = *p;
        if (is_processed(pl, bt)) {
            *p = bt->next;
            batch_free(bt);
        } else {
            p = &bt->next;
        }
    }
}

/* The delivery in flight whose retry or dead letter has park number seq
 * (and its batch), or NULL. */
static struct delivery *parked_delivery(struct pipeline *pl, uint64_t seq, struct batch **batch)
{
    for (struct batch *bt = pl->inflight_head; bt; bt = bt->next)
        for (size_t i = 0; i < bt->n; i++)
            if (bt->d[i].park_seq == seq) {
                *batch = bt;
                return &bt->d[i];
            }
    return NULL;
}

static void on_park_settled(void *ctx, uint64_t seq, int parked)
{
    struct batch *bt;
    struct delivery *d = parked_delivery(ctx, seq, &bt);
    if (d == NULL)
        return; /* its batch was orphaned by a lost consuming connection */
    if (!parked)
        d->outcome = REQUEUE; /* not parked: it must come back */
    bt->park_pending--;
}

/* Park d: to its delay tier (RETRY) or to the dead letters (DEAD). */
static int park(struct pipeline *pl, struct delivery *d)
{
    if (d->queue == NULL)
        return OQ_ENOMEM;
    struct oq_park what = {
        .msg = &d->msg,
        .queue = d->queue,
        .tier = d->outcome == RETRY ? d->tier : NULL,
        .attempt = d->attempt,
        .error_class = d->error_class,
        .reason = d->reason,
        .first_failed_at = d->first_failed_at,
        .original_exchange = d->original_exchange,
        .original_routing_key = d->original_routing_key,
        .original_user_id = d->original_user_id,
        .force_resend = d->force_resend,
    };
    return oq_park(pl->parker, &what, &d->park_seq);
}

static void log_parked(const struct pipeline *pl, const struct delivery *d)
{
    struct oq_log_fields f = {d->queue, d->ev.identifier, d->tag, 0};
    if (d->outcome == RETRY)
        oq_log(OQ_LOG_WARN, &f, "attempt %lld of %lld failed (%s), retrying in %s: %s",
               (long long)d->attempt, (long long)pl->cfg->max_attempts,
               oq_error_class_name(d->error_class), d->tier, d->reason);
    else
        oq_log(OQ_LOG_WARN, &f, "dead-lettered after attempt %lld (%s): %s", (long long)d->attempt,
               oq_error_class_name(d->error_class), d->reason);
}

/* A dead letter that was never an event (unreadable, too large) is
 * "invalid"; one that failed as an event is "dead". */
static int outcome_label(const struct delivery *d, enum oq_outcome_label *out)
{
    switch (d->outcome) {
    case DONE:
        *out = OQ_OUTCOME_DONE;
        return 1;
    case DUPLICATE:
        *out = OQ_OUTCOME_DUPLICATE;
        return 1;
    case RETRY:
        *out = OQ_OUTCOME_RETRIED;
        return 1;
    case DEAD:
        *out = d->error_class == OQ_ERR_BAD_INPUT || d->error_class == OQ_ERR_TOO_LARGE
                   ? OQ_OUTCOME_INVALID
                   : OQ_OUTCOME_DEAD;
        return 1;
    default:
        return 0; /* requeued: not settled, it comes back */
    }
}

static void count_outcomes(const struct batch *bt)
{
    enum oq_outcome_label label;
    for (size_t i = 0; i < bt->n; i++)
        if (outcome_label(&bt->d[i], &label))
            oq_metrics_outcome(bt->d[i].queue_index, label);
    oq_metrics_observe(OQ_H_BATCH_SIZE, (int64_t)bt->n);
}

/* Park a processed batch's retries and dead letters. 1 once every one is
 * parked and confirmed, 0 while some still wait (the parking connection
 * is down, blocked by an alarm, or its window is full). */
static int park_batch(struct pipeline *pl, struct batch *bt)
{
    for (size_t i = 0; !bt->parked && i < bt->n; i++) {
        struct delivery *d = &bt->d[i];
        if ((d->outcome != DEAD && d->outcome != RETRY) || d->park_seq != 0)
            continue;
        int rc = park(pl, d);
        if (rc == OQ_ETIMEOUT)
            return 0; /* go on when it can take more */
        if (rc != 0) {
            d->outcome = REQUEUE; /* no memory: it comes back instead */
            continue;
        }
        log_parked(pl, d);
        bt->park_pending++;
    }
    bt->parked = 1;
    return bt->park_pending == 0;
}

static int needs_requeue(const struct batch *bt)
{
    for (size_t i = 0; i < bt->n; i++)
        if (bt->d[i].outcome == REQUEUE || bt->d[i].outcome == PENDING)
            return 1;
    return 0;
}

/* Ack a settled batch, and nack with requeue what could not be parked.
 * lowest: no earlier delivery is unacked, so one multiple-ack covers the
 * batch; else each is acked alone. Returns 0 or OQ_EBROKER. */
static int settle_batch(struct pipeline *pl, struct batch *bt, int lowest)
{
    amqp_connection_state_t conn = oq_broker_conn(pl->b);
    /* Counted now, while the outcomes are durable: an ack lost with the
     * connection brings them back as duplicates, which count as such. */
    count_outcomes(bt);
    if (lowest && !needs_requeue(bt)) {
        if (amqp_basic_ack(conn, CONSUME_CHANNEL, bt->d[bt->n - 1].tag, 1) != 0)
            return OQ_EBROKER;
    } else {
        for (size_t i = 0; i < bt->n; i++) {
            const struct delivery *d = &bt->d[i];
            int ok = d->outcome != REQUEUE && d->outcome != PENDING;
            if ((ok ? amqp_basic_ack(conn, CONSUME_CHANNEL, d->tag, 0)
                    : amqp_basic_nack(conn, CONSUME_CHANNEL, d->tag, 0, 1)) != 0)
                return OQ_EBROKER;
        }
    }
    oq_metric_add(OQ_M_BATCHES, 1);
    pl->settled++;
    return 0;
}

/* Settle the batches that are finished. In order, with one multiple-ack
 * each, as long as the oldest batch is not held up; once it is (its
 * retries wait for the parking connection, or its requeue for its
 * backoff), the batches after it that are finished are acked one delivery
 * at a time, so a memory alarm or a missing dead-letter queue holds back
 * only the messages it concerns. Returns 0 or OQ_EBROKER. */
static int advance(struct pipeline *pl)
{
    struct batch **link = &pl->inflight_head, *prev = NULL;
    int held_up = 0;
    pl->held_up = 0;
    while (*link != NULL) {
        struct batch *bt = *link;
        int processed = is_processed(pl, bt), ready = processed && park_batch(pl, bt);
        if (ready && needs_requeue(bt)) {
            /* Requeued at once it would come straight back: wait first,
             * longer each time (a missing dead-letter queue, no memory). */
            if (bt->requeue_at == 0)
                bt->requeue_at = oq_now_ms() + oq_backoff_ms(++pl->requeue_streak);
            ready = oq_now_ms() >= bt->requeue_at;
        } else if (ready) {
            pl->requeue_streak = 0;
        }
        if (!ready) {
            if (!held_up && !processed)
                return 0; /* the usual case: a worker is still at it */
            held_up = pl->held_up = 1;
            prev = bt;
            link = &bt->next;
            continue;
        }
        if (settle_batch(pl, bt, bt == pl->inflight_head) != 0)
            return OQ_EBROKER;
        *link = bt->next;
        if (pl->inflight_tail == bt)
            pl->inflight_tail = prev;
        batch_free(bt);
    }
    return 0;
}

static struct delivery *add_delivery(struct batch **open, uint64_t gen, size_t batch_size)
{
    struct batch *bt = *open;
    if (bt == NULL) {
        bt = calloc(1, sizeof(*bt));
        if (bt == NULL || (bt->d = calloc(batch_size, sizeof(*bt->d))) == NULL) {
            free(bt);
            return NULL;
        }
        bt->cap = batch_size;
        bt->gen = gen;
        *open = bt;
    }
    return &bt->d[bt->n++];
}

static amqp_bytes_t header_text(const amqp_basic_properties_t *p, const char *key,
                                amqp_bytes_t otherwise)
{
    const amqp_field_value_t *v = oq_amqp_header(p, key);
    if (v != NULL && (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES))
        return v->value.bytes;
    return otherwise;
}

/* Headers only orderq may set, on a delivery someone else published: none
 * of them counts. Counted, and logged naming them, at most every 10 s: a
 * publisher can send them on every message. */
static void ignore_foreign_headers(const struct delivery *d)
{
    static struct oq_log_limiter limiter = OQ_LOG_LIMITER_INIT;
    char names[512];
    long skipped = 0;
    const amqp_basic_properties_t *p = &d->msg.properties;
    if (oq_trust_orderq_headers(p, names, sizeof(names)) == 0)
        return;
    oq_metric_add(OQ_M_FOREIGN_HEADERS, 1);
    if (!oq_log_limiter_take(&limiter, 10, &skipped))
        return;
    int has_uid = (p->_flags & AMQP_BASIC_USER_ID_FLAG) != 0;
    struct oq_log_fields f = {d->queue, d->message_id, d->tag, 0};
    oq_log(OQ_LOG_WARN, &f,
           "ignored %s on message %s from exchange \"%s\": only orderq may set them, and "
           "orderq did not publish it (user_id %s%.*s%s; %ld more such deliveries since the "
           "last line, see orderq_foreign_headers_ignored_total)",
           names, d->message_id ? d->message_id : "(no message_id)", d->exchange ? d->exchange : "",
           has_uid ? "\"" : "none", has_uid ? (int)p->user_id.len : 0,
           has_uid ? (const char *)p->user_id.bytes : "", has_uid ? "\"" : "", skipped);
}

/* Where a retried message stands: its attempt and what the first one
 * recorded. Counted from orderq's own headers, never from x-death (whose
 * meaning changed in RabbitMQ 3.13), and only on a message orderq published
 * (a retry back from its delay tier, or a replay): on anyone else's, such
 * as the shop's first delivery, they are ignored. A first delivery is
 * attempt 1. */
static void read_retry_headers(struct delivery *d, const char *own_user)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    int64_t n = 0;
    d->attempt = 1;
    d->original_exchange = amqp_cstring_bytes(d->exchange ? d->exchange : "");
    d->original_routing_key = amqp_cstring_bytes(d->routing_key ? d->routing_key : "");
    d->first_failed_at = amqp_empty_bytes;
    d->force_resend = 0;
    if (!oq_trust_published_by(p, own_user)) {
        d->original_user_id = (p->_flags & AMQP_BASIC_USER_ID_FLAG) ? p->user_id : amqp_empty_bytes;
        ignore_foreign_headers(d);
        return;
    }
    const amqp_field_value_t *attempt = oq_amqp_header(p, "x-orderq-attempt");
    if (attempt && oq_amqp_field_int(attempt, &n) == 0 && n >= 1)
        d->attempt = n;
    d->original_exchange = header_text(p, "x-orderq-original-exchange", d->original_exchange);
    d->original_routing_key =
        header_text(p, "x-orderq-original-routing-key", d->original_routing_key);
    d->first_failed_at = header_text(p, "x-orderq-first-failed-at", amqp_empty_bytes);
    d->original_user_id = header_text(p, "x-orderq-original-user-id", amqp_empty_bytes);
    const amqp_field_value_t *force = oq_amqp_header(p, "x-orderq-force-resend");
    d->force_resend = force != NULL && oq_amqp_field_int(force, &n) == 0 && n == 1;
}

/* A body over max_message_bytes is dead-lettered as it came, never parsed:
 * a JSON tree costs tens of times its text (a 10 MB event took 440 MB). */
static void refuse_too_large(const struct oq_config *cfg, struct delivery *d)
{
    char why[160];
    snprintf(why, sizeof(why), "body is %zu bytes, over max_message_bytes %lld", d->msg.body.len,
             (long long)cfg->max_message_bytes);
    set_failed(cfg, d, OQ_ERR_TOO_LARGE, why);
}

/* A body with a content_encoding (gzip, deflate, ...) is not the JSON it
 * looks like: dead-lettered saying so, where a gzip body would otherwise
 * read "invalid char at byte 1", and a plain body labelled gzip would be
 * taken although its publisher says it is something else. */
static void refuse_encoded(const struct oq_config *cfg, struct delivery *d)
{
    const amqp_basic_properties_t *p = &d->msg.properties;
    char why[200];
    if (!(p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG) || p->content_encoding.len == 0)
        return;
    const amqp_bytes_t e = p->content_encoding;
    static const char *const plain[] = {"identity", "utf-8", "utf8"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (e.len == strlen(plain[i]) && strncasecmp(e.bytes, plain[i], e.len) == 0)
            return;
    size_t shown = oq_utf8_prefix((const char *)e.bytes, e.len < 40 ? e.len : 40);
    snprintf(why, sizeof(why),
             "content_encoding \"%.*s\": orderq reads bodies as they are; expected no "
             "content_encoding (or identity, utf-8)",
             (int)shown, (const char *)e.bytes);
    set_failed(cfg, d, OQ_ERR_BAD_INPUT, why);
}

/* Check, on a new connection before consuming, which queues dead-letter
 * as the plan says: a declare with the plan's arguments is refused
 * (PRECONDITION_FAILED) by a queue that has others, which may have no
 * dead-letter exchange. Returns 0 or OQ_EBROKER (the connection broke). */
static int check_dead_lettering(struct pipeline *pl)
{
    for (size_t i = 0; i < pl->n_queues; i++) {
        int rc =
            oq_topology_dead_letters_on_broker(pl->b, CONSUME_CHANNEL, pl->topology, pl->queues[i]);
        if (rc == OQ_EBROKER)
            return rc;
        pl->dead_letters[i] = rc == 1;
    }
    return 0;
}

/* The broker cancelled our consumer of a queue (deleted, perhaps made
 * again without its dead-letter exchange): until the next connect checks
 * it again, no reject there, since it might drop the message. */
static void forget_dead_lettering(struct pipeline *pl, amqp_bytes_t queue)
{
    for (size_t i = 0; i < pl->n_queues; i++)
        if (strlen(pl->queues[i]) == queue.len &&
            memcmp(pl->queues[i], queue.bytes, queue.len) == 0)
            pl->dead_letters[i] = 0;
}

/* 1 when a message rejected without requeue from queue is dead-lettered,
 * as far as orderq knows (check_dead_lettering). */
static int queue_dead_letters(const struct pipeline *pl, const char *queue)
{
    for (size_t i = 0; queue != NULL && i < pl->n_queues; i++)
        if (strcmp(pl->queues[i], queue) == 0)
            return pl->dead_letters[i];
    return 0;
}

/* A delivery whose content librabbitmq cannot decode (RabbitMQ passes
 * header tables it refuses, such as a header named ""): this connection
 * cannot read past it, and requeued it would come back at the head on
 * every reconnect, each time taking the deliveries around it along, until
 * its delivery limit. Rejected without requeue, the broker dead-letters
 * it once, whole, to the dead-letter exchange (at-least-once on a quorum
 * queue), but only a queue that dead-letters may get that reject: any
 * other would drop the message. orderq knows that of its own queues (the
 * topology plan, checked at each connect: check_dead_lettering); on any
 * other queue the message is left as it is, and the reconnects back off.
 * Either way the connection is then closed with oq_broker_close_unreadable
 * (pl->unreadable), so that the reject reaches the broker. A socket error
 * is not the message's fault: nothing is sent. */
static void refuse_unreadable(struct pipeline *pl, uint64_t tag, const char *queue,
                              const char *exchange, const char *key, amqp_rpc_reply_t r)
{
    int lib = r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION;
    int unreadable = oq_broker_unreadable(r);
    int dead_letters = queue_dead_letters(pl, queue);
    const char *what = !unreadable ? ""
                       : dead_letters
                           ? "; its properties cannot be decoded, so it is rejected to the "
                             "dead-letter exchange as it is"
                           : "; its properties cannot be decoded, and the queue does not "
                             "dead-letter as orderq's topology declares it "
                             "(x-dead-letter-exchange), so a reject would drop it: it is left "
                             "at the head of the queue, where it stops this consumer; declare the "
                             "queue again with orderq's arguments (orderq topology declare, "
                             "after deleting it; a policy does not count) or take the message out "
                             "(the management UI's Get messages, Reject requeue false, after "
                             "reading it)";
    oq_error("reading delivery %llu from %s (exchange \"%s\", routing key \"%s\"): %s%s",
             (unsigned long long)tag, queue ? queue : "?", exchange ? exchange : "", key ? key : "",
             lib ? amqp_error_string2(r.library_error) : "no content", what);
    if (!unreadable)
        return;
    pl->unreadable = 1;
    int queue_index = oq_metrics_queue_index(queue);
    oq_metrics_delivery(queue_index);
    if (dead_letters) { /* settled: bad input, as a body that is not an event */
        (void)amqp_basic_reject(oq_broker_conn(pl->b), CONSUME_CHANNEL, tag, 0);
        oq_metrics_outcome(queue_index, OQ_OUTCOME_INVALID);
    }
}

/* A delivery: copy what we keep, then its content. Returns 0 or OQ_EBROKER. */
static int take_delivery(struct pipeline *pl, const amqp_basic_deliver_t *m, struct batch **open,
                         int draining)
{
    amqp_connection_state_t conn = oq_broker_conn(pl->b);
    uint64_t tag = m->delivery_tag;
    char *queue = bytes_dup(m->consumer_tag), *exchange = bytes_dup(m->exchange);
    char *key = bytes_dup(m->routing_key);
    amqp_message_t msg;
    amqp_rpc_reply_t r = amqp_read_message(conn, CONSUME_CHANNEL, &msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        refuse_unreadable(pl, tag, queue, exchange, key, r);
        free(queue);
        free(exchange);
        free(key);
        return OQ_EBROKER;
    }
    int queue_index = oq_metrics_queue_index(queue);
    oq_metrics_delivery(queue_index);
    struct delivery *d =
        draining ? NULL : add_delivery(open, atomic_load(&pl->gen), (size_t)pl->cfg->batch_size);
    if (d == NULL) { /* stopping: never acked (a higher tag than any batch), it returns */
        free(queue);
        free(exchange);
        free(key);
        amqp_destroy_message(&msg);
        /* Out of memory: a later multiple-ack would cover this tag, so drop
         * the connection and let everything unacked come back. */
        return draining ? 0 : OQ_EBROKER;
    }
    oq_metric_add(OQ_M_IN_FLIGHT, 1);
    d->tag = tag;
    d->queue_index = queue_index;
    d->queue = queue;
    d->exchange = exchange;
    d->routing_key = key;
    if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        d->message_id = bytes_dup(msg.properties.message_id);
    if (msg.properties._flags & AMQP_BASIC_TYPE_FLAG)
        d->type = bytes_dup(msg.properties.type);
    d->msg = msg; /* kept whole: a retry or dead letter republishes it */
    d->has_msg = 1;
    read_retry_headers(d, pl->own_user);
    if (msg.body.len > (size_t)pl->cfg->max_message_bytes)
        refuse_too_large(pl->cfg, d);
    else
        refuse_encoded(pl->cfg, d);
    return 0;
}

/* One frame from the broker. Returns 0, or OQ_EBROKER to reconnect. */
static int dispatch(struct pipeline *pl, const amqp_frame_t *frame, struct batch **open,
                    int draining)
{
    if (frame->frame_type != AMQP_FRAME_METHOD)
        return 0;
    switch (frame->payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD:
        return take_delivery(pl, frame->payload.method.decoded, open, draining);
    case AMQP_BASIC_CANCEL_METHOD: {
        const amqp_basic_cancel_t *m = frame->payload.method.decoded;
        forget_dead_lettering(pl, m->consumer_tag);
        oq_subscriptions_cancelled(pl->subs, m);
        return 0;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
        const amqp_channel_close_t *m = frame->payload.method.decoded;
        oq_error("the broker closed channel %u: %d %.*s", frame->channel, m->reply_code,
                 (int)m->reply_text.len, (const char *)m->reply_text.bytes);
        return OQ_EBROKER;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        const amqp_connection_close_t *m = frame->payload.method.decoded;
        amqp_connection_close_ok_t ok = {0};
        oq_error("the broker closed the connection: %d %.*s", m->reply_code, (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        (void)amqp_send_method(oq_broker_conn(pl->b), 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        return OQ_EBROKER;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
        oq_warn("the broker blocked publishing (memory or disk alarm)");
        return 0;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        oq_info("the broker unblocked publishing");
        return 0;
    default:
        return 0;
    }
}

/* A database worker would take a batch now. */
static int worker_free(struct pipeline *pl)
{
    pthread_mutex_lock(&pl->mu);
    int free_now = worker_free_locked(pl);
    pthread_mutex_unlock(&pl->mu);
    return free_now;
}

/* A batch a free worker could take closes after this long without a
 * delivery: at low load it does not sit out its window (at 1,000 events/s
 * they come a millisecond apart), while a preload's stream, with gaps of
 * microseconds between reads, still fills it. */
#define QUIET_CLOSE_US 250

/* How long the broker thread may wait for the next frame, in µs: until the
 * open batch's window ends, or QUIET_CLOSE_US when a worker is free to take
 * it (*quiet_close set); 1 ms while something is timed by polling (confirms
 * of the parking connection, a requeue backoff, or a TLS socket, which
 * poll(2) cannot watch with the workers' wake-ups); else 100 ms. */
static int64_t frame_wait_us(struct pipeline *pl, const struct batch *open,
                             int64_t open_deadline_us, int *quiet_close)
{
    int polled =
        pl->held_up || oq_parker_in_flight(pl->parker) > 0 ||
        (pl->inflight_head != NULL && (pl->wake_fd < 0 || oq_broker_pollable_fd(pl->b) < 0));
    int64_t wait_us = polled ? 1000 : 100000;
    if (open != NULL) {
        int64_t left = open_deadline_us - oq_now_us();
        *quiet_close = worker_free(pl);
        if (left <= 0 && !*quiet_close)
            return wait_us; /* it fills until a worker is free; a worker going idle wakes us */
        wait_us = left < 0 ? 0 : (left < wait_us ? left : wait_us);
        if (*quiet_close && wait_us > QUIET_CLOSE_US)
            wait_us = QUIET_CLOSE_US;
    }
    return wait_us;
}

/* The next frame within wait_us (AMQP_STATUS_TIMEOUT if none). With a
 * plain socket the wait is a ppoll(2) that a processed batch also ends, so
 * its ack goes out at once, and an idle consumer wakes only every 100 ms;
 * librabbitmq then reads what came (and sends a heartbeat when due) without
 * waiting again. A TLS socket waits in librabbitmq, which polls in whole
 * milliseconds rounded down: the wait is rounded up, or a wait under a
 * millisecond would spin. */
static int next_frame(struct pipeline *pl, amqp_frame_t *frame, int64_t wait_us)
{
    amqp_connection_state_t conn = oq_broker_conn(pl->b);
    int fd = oq_broker_pollable_fd(pl->b);
    if (fd >= 0 && pl->wake_fd >= 0) {
        if (wait_us > 0 && !amqp_frames_enqueued(conn) && !amqp_data_in_buffer(conn)) {
            struct pollfd p[2] = {{fd, POLLIN, 0}, {pl->wake_fd, POLLIN, 0}};
            struct timespec ts = {(time_t)(wait_us / 1000000), (long)(wait_us % 1000000) * 1000L};
            if (ppoll(p, 2, &ts, NULL) > 0 && (p[1].revents & POLLIN)) {
                uint64_t n;
                (void)!read(pl->wake_fd, &n, sizeof(n));
            }
        }
        wait_us = 0;
    } else if (wait_us > 0) {
        wait_us = (wait_us + 999) / 1000 * 1000 + 1000;
    }
    struct timeval tv = {(time_t)(wait_us / 1000000), (suseconds_t)(wait_us % 1000000)};
    amqp_maybe_release_buffers(conn);
    return amqp_simple_wait_frame_noblock(conn, frame, &tv);
}

/* Consume until stopped (0) or the connection breaks (OQ_EBROKER). */
static int serve(struct pipeline *pl)
{
    struct batch *open = NULL;
    int64_t open_deadline_us = 0, drain_deadline = 0, last_frame_us = 0;
    int draining = 0, rc = 0;

    for (;;) {
        if (*pl->stop && !draining) {
            draining = 1;
            drain_deadline = oq_now_ms() + pl->cfg->shutdown_timeout_ms;
            oq_subscriptions_cancel_all(pl->subs);
            if (open != NULL) {
                submit(pl, open);
                open = NULL;
            }
            oq_info("stopping: finishing the batches in hand");
        }
        if (draining && (pl->inflight_head == NULL || oq_now_ms() >= drain_deadline))
            break;
        int quiet_close = 0;
        int64_t wait_us = frame_wait_us(pl, open, open_deadline_us, &quiet_close);
        amqp_frame_t frame;
        int status = next_frame(pl, &frame, wait_us);
        if (status == AMQP_STATUS_OK) {
            int had_open = open != NULL;
            last_frame_us = oq_now_us();
            if ((rc = dispatch(pl, &frame, &open, draining)) != 0)
                break;
            if (!had_open && open != NULL)
                open_deadline_us = oq_now_us() + pl->cfg->batch_window_ms * 1000;
        } else if (status != AMQP_STATUS_TIMEOUT) {
            oq_error("lost the broker connection: %s", amqp_error_string2(status));
            rc = OQ_EBROKER;
            break;
        }
        /* Full; or, while a worker is free to take it, its window over or
         * quiet. With every worker busy a closed batch would only wait in
         * the queue: it goes on filling, so batches grow with the load and
         * a busy consumer makes fewer, larger commits. */
        int64_t now_us = oq_now_us();
        int quiet = quiet_close && status == AMQP_STATUS_TIMEOUT &&
                    now_us - last_frame_us >= QUIET_CLOSE_US;
        if (open != NULL &&
            (open->n >= open->cap || quiet || (now_us >= open_deadline_us && worker_free(pl)))) {
            submit(pl, open);
            open = NULL;
        }
        oq_parker_poll(pl->parker);
        if ((rc = advance(pl)) != 0)
            break;
        if (!draining && (rc = oq_subscriptions_retry(pl->subs, pl->topology)) != 0)
            break;
        free_processed_orphans(pl);
    }
    batch_free(open); /* unacked: the broker redelivers it */
    return rc;
}

static void stop_workers(struct pipeline *pl)
{
    pthread_mutex_lock(&pl->mu);
    pl->worker_exit = 1;
    atomic_fetch_add(&pl->gen, 1); /* whatever is queued is stale now */
    pthread_cond_broadcast(&pl->cv);
    pthread_mutex_unlock(&pl->mu);
    for (size_t i = 0; i < pl->n_workers; i++)
        pthread_join(pl->workers[i].thread, NULL);
    oq_effect_pool_stop(pl->effects); /* after the workers: they submit to it */
    pl->effects = NULL;
    pl->todo_head = pl->todo_tail = NULL; /* each is also in flight or an orphan */
    orphan_inflight(pl);
    while (pl->orphans != NULL) {
        struct batch *bt = pl->orphans;
        pl->orphans = bt->next;
        batch_free(bt);
    }
    /* Only now: the batches' plans were made by these handlers. */
    for (size_t i = 0; i < pl->n_workers; i++)
        oq_handlers_free(pl->workers[i].handlers, pl->workers[i].n_handlers);
    free(pl->workers);
    pthread_cond_destroy(&pl->cv);
    pthread_mutex_destroy(&pl->mu);
}

/* The handlers' names as metrics labels, in the registry's order (the
 * same in every worker and the effect pool), before any thread records. */
static void register_handlers(const struct worker *w)
{
    const char *names[OQ_METRICS_MAX_HANDLERS];
    size_t n = w->n_handlers < OQ_METRICS_MAX_HANDLERS ? w->n_handlers : OQ_METRICS_MAX_HANDLERS;
    for (size_t i = 0; i < n; i++)
        names[i] = w->handlers[i].name;
    oq_metrics_register_handlers(names, n);
}

/* Start the effect workers and cfg->db_workers database workers; on
 * failure stop those started. Returns 0, OQ_ENOMEM or OQ_ECONFIG. */
static int start_workers(struct pipeline *pl, char *err, size_t errlen)
{
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->cv, NULL);
    struct oq_effect_hooks hooks = {effect_cancelled, effect_finished, pl};
    int rc = oq_effect_pool_start(pl->cfg, &hooks, &pl->effects, err, errlen);
    if (rc != 0) {
        stop_workers(pl);
        return rc;
    }
    snprintf(err, errlen, "out of memory starting the database workers");
    pl->workers = calloc((size_t)pl->cfg->db_workers, sizeof(*pl->workers));
    if (pl->workers == NULL) {
        stop_workers(pl);
        return OQ_ENOMEM;
    }
    for (size_t i = 0; i < (size_t)pl->cfg->db_workers; i++) {
        struct worker *w = &pl->workers[i];
        w->pl = pl;
        if ((rc = oq_handlers_new(pl->cfg, &w->handlers, &w->n_handlers, err, errlen)) == 0)
            register_handlers(w);
        if (rc != 0 || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            oq_handlers_free(w->handlers, w->n_handlers);
            stop_workers(pl);
            return rc != 0 ? rc : OQ_ENOMEM;
        }
        pl->n_workers++;
    }
    return 0;
}

int oq_pipeline_run(const struct oq_config *cfg, const char *const *queues, size_t n,
                    volatile sig_atomic_t *stop, void (*wake_relay)(void *), void *relay, char *err,
                    size_t errlen)
{
    struct pipeline pl;
    struct oq_reconnect_backoff backoff = {0};
    int rc;

    memset(&pl, 0, sizeof(pl));
    pl.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); /* -1: the broker thread polls */
    pl.cfg = cfg;
    pl.stop = stop;
    pl.wake_relay = wake_relay;
    pl.relay = relay;
    pl.queues = queues;
    pl.n_queues = n;
    if ((pl.dead_letters = calloc(n + 1, 1)) == NULL) {
        snprintf(err, errlen, "out of memory");
        rc = OQ_ENOMEM;
        goto out;
    }
    atomic_init(&pl.gen, 1);
    char host[128] = "?";
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "?");
    if ((rc = oq_trust_own_user(cfg, &pl.own_user)) != 0) {
        snprintf(err, errlen, "amqp_url: %s",
                 rc == OQ_ENOMEM ? "out of memory" : "expected amqp://user:password@host/vhost");
        goto out;
    }
    if ((rc = oq_parker_new(cfg, host, on_park_settled, &pl, &pl.parker)) != 0) {
        snprintf(err, errlen, "%s", rc == OQ_ENOMEM ? "out of memory" : "amqp_url does not parse");
        goto out;
    }
    if ((rc = oq_topology_plan(cfg, &pl.topology, err, errlen)) != 0)
        goto out;
    oq_metrics_register_queues(queues, n);
    if ((rc = start_workers(&pl, err, errlen)) != 0)
        goto out;
    if ((rc = oq_subscriptions_new(cfg, queues, n, pl.workers[0].handlers, pl.workers[0].n_handlers,
                                   &pl.subs, err, errlen)) != 0) {
        stop_workers(&pl);
        goto out;
    }
    rc = 0;
    while (!*stop) {
        char why[OQ_ERRLEN * 2] = "";
        int r = oq_broker_connect(cfg, "consume", &pl.b, why, sizeof(why));
        if (r == OQ_ECONFIG) {
            snprintf(err, errlen, "%s", why);
            rc = OQ_ECONFIG;
            break;
        }
        if (r == 0 && pl.topology != NULL &&
            oq_topology_declare(pl.b, pl.topology, 0, why, sizeof(why)) != 0) {
            /* e.g. no configure permission: consume what exists */
            oq_warn("redeclaring the topology: %s", why);
            why[0] = '\0';
        }
        if (r == 0 && (r = check_dead_lettering(&pl)) != 0)
            snprintf(why, sizeof(why), "%s", oq_broker_error(pl.b));
        if (r == 0)
            r = oq_subscriptions_start(pl.subs, pl.b, CONSUME_CHANNEL, DECLARE_CHANNEL, why,
                                       sizeof(why));
        oq_reconnect_connected(&backoff, oq_now_ms());
        uint64_t settled_before = pl.settled;
        if (r == 0) {
            oq_metric_add(OQ_M_BROKER_CONNECTS, 1);
            oq_metric_set(OQ_M_READY, 1);
            size_t active = oq_subscriptions_active(pl.subs);
            oq_info("connected; consuming %zu queue%s, prefetch %lld, batches of %lld", active,
                    active == 1 ? "" : "s", (long long)cfg->prefetch, (long long)cfg->batch_size);
            r = serve(&pl);
            if (pl.settled > settled_before) /* a batch settled: the queues are good */
                oq_reconnect_settled(&backoff);
            oq_metric_set(OQ_M_READY, 0);
            oq_metric_set(OQ_M_CONSUMERS, 0);
        }
        orphan_inflight(&pl);
        if (r == 0) {
            oq_broker_close(pl.b);
            pl.b = NULL;
            break;
        }
        if (pl.unreadable)
            (void)oq_broker_close_unreadable(pl.b, cfg->connect_timeout_ms, stop);
        else /* a missing queue (OQ_ENOTFOUND) is missing on every node */
            oq_broker_drop(pl.b, r == OQ_EBROKER);
        pl.b = NULL;
        pl.unreadable = 0;
        oq_metrics_reconnect(OQ_PEER_BROKER);
        char attempt[160];
        int64_t wait =
            oq_reconnect_failed(&backoff, oq_now_ms(), "settled a batch", attempt, sizeof(attempt));
        oq_error("%s; reconnecting in %lld ms (%s)", why[0] ? why : "broker connection lost",
                 (long long)wait, attempt);
        oq_nap(wait, stop);
        free_processed_orphans(&pl);
    }
    stop_workers(&pl);
out:
    oq_parker_free(pl.parker); /* after the workers: what it still holds is theirs no more */
    oq_topology_free(pl.topology);
    oq_subscriptions_free(pl.subs);
    free(pl.dead_letters);
    free(pl.own_user);
    if (pl.wake_fd >= 0)
        close(pl.wake_fd);
    return rc;
}
