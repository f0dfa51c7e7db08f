/* effects.h - the effect workers: mail and webhooks, once, off the broker thread
 *
 * A pool of threads (effect_workers), each with its own MySQL connection
 * and its own handlers (so its own curl handles), runs one job at a time:
 *
 *   lease   commit a ledger row `sending` owned by this worker until
 *           effect_lease_ms from now (a row that exists says what to do:
 *           `done`/`sent` is a duplicate, a live lease backs off, an
 *           expired lease or `unknown` is the ambiguous case);
 *   perform the handler's outside call;
 *   finish  commit `sent` with the peer's answer, or release the claim
 *           when the call surely did nothing, or mark `unknown`.
 *
 * Only then does the job finish, and the broker thread acks. A lost MySQL
 * connection is waited out with backoff; the message stays unacked.
 *
 * Leases and `sent` marks go through a group commit: the pool's group
 * writer (a thread with its own connection) writes the workers' rows
 * waiting at one time in one transaction (a lone row at once). A worker
 * leases up to 2 jobs ahead without waiting, and hands a sent job's `sent`
 * mark to the writer, which commits it and then calls finished for the
 * job from its own thread (at most 2 such marks per worker: a crash
 * leaves at most 5 of a worker's rows `sending`). The rows a group leaves
 * unsettled (a duplicate, MySQL away) are done alone.
 *
 * A second kind of job prepares an event whose handler must call out to
 * decide its effects (an order completed from the shop API), then commits
 * its claim and rows in a transaction of its own: a slow peer holds one
 * effect worker, never a database worker's batch.
 */
#ifndef ORDERQ_EFFECTS_H
#define ORDERQ_EFFECTS_H

#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"
#include "orderq/handler.h"
#include "orderq/retry.h"

struct oq_config;

enum oq_job_result {
    OQ_JOB_DONE = 0,  /* sent now */
    OQ_JOB_DUPLICATE, /* the ledger had it sent (or another job in hand sends it) */
    OQ_JOB_FAILED,    /* error_class and reason say how */
};

enum oq_job_kind {
    OQ_JOB_SEND = 0, /* lease, perform, finish: plan made by prepare */
    OQ_JOB_PREPARE,  /* prepare ev here, then claim and apply in one transaction */
};

struct oq_effect_job {
    struct oq_effect_job *next; /* the pool's queue */
    enum oq_job_kind kind;
    size_t handler_index;      /* into the list oq_handlers_new makes */
    const void *plan;          /* OQ_JOB_SEND: made by that handler's prepare */
    const struct oq_event *ev; /* OQ_JOB_PREPARE: the event to prepare */
    struct oq_effect effect;   /* OQ_JOB_PREPARE: effect_key is filled in here */
    int64_t attempt;
    int force_resend; /* a person asked to send again what is `unknown` */
    void *owner;      /* the caller's, for its callbacks */

    /* set by the pool before finished is called */
    void *prepared_plan; /* OQ_JOB_PREPARE: the plan, the caller's to free */
    char prepared_key[192], prepared_result[OQ_RESULT_LEN];
    int claimed;
    enum oq_job_result result;
    enum oq_error_class error_class;
    int64_t retry_after_ms; /* -1: no wish */
    char reason[512];
};

struct oq_effect_hooks {
    /* 1 when the job need not start any more (its delivery will come back
     * anyway, e.g. the broker connection was lost). */
    int (*cancelled)(const struct oq_effect_job *job, void *ctx);
    /* The job is over (result set), or was cancelled before it started.
     * Called from any of the pool's threads. */
    void (*finished)(struct oq_effect_job *job, int ran, void *ctx);
    void *ctx;
};

struct oq_effect_pool; /* opaque */

/* Start cfg->effect_workers threads. Returns 0, OQ_ENOMEM or OQ_ECONFIG
 * (a handler's configuration: err says). */
OQ_WUR int oq_effect_pool_start(const struct oq_config *cfg, const struct oq_effect_hooks *hooks,
                                struct oq_effect_pool **out, char *err, size_t errlen);

/* Queue job; finished is called for it exactly once, on a worker or on
 * the group writer. */
void oq_effect_pool_submit(struct oq_effect_pool *p, struct oq_effect_job *job);

/* Cancel what has not started, let what has finish, join and free. */
void oq_effect_pool_stop(struct oq_effect_pool *p);

#endif
