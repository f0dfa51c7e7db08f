/* effects.c - the effect workers: lease, perform, finish */
#include "orderq/effects.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/ledger.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/sweeper.h"

struct effect_worker {
    struct oq_effect_pool *pool;
    pthread_t thread;
    struct oq_db *db;
    int db_failures;
    unsigned db_tries;           /* oq_db_reopen counts the reconnects */
    struct oq_handler *handlers; /* its own: its own curl handles */
    size_t n_handlers;
    /* A lease's owner: "<instance_id>/effect-N/<12 hex>", the hex new for
     * each job, so a worker that lost the answer to its own statement
     * can tell its row from any other, its own earlier ones included. */
    char owner[256];
    size_t owner_prefix; /* length of "<instance_id>/effect-N/" */
    int64_t retired;     /* RETIRE_SWEPT's answer: the sweeper's letter deleted, or 0 */
    /* The job this worker runs next, taken from the queue when it marked
     * its last job `sent`, and that job's lease, asked in the same group. */
    struct oq_effect_job *next;
    enum { NEXT_NOT_ASKED, NEXT_LEASED, NEXT_ASK_ALONE } next_lease;
    int next_answer_lost;
    char next_owner[256];
};

struct oq_effect_pool {
    const struct oq_config *cfg;
    struct oq_effect_hooks hooks;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct oq_effect_job *head, *tail;
    int exiting;
    struct effect_worker *workers;
    size_t n_workers;
    int kill_after_send; /* ORDERQ_FAULT=kill-after-send: the system tests' crash */

    /* Group commit of leases and `sent` marks (see write_group). */
    pthread_mutex_t gmu;
    pthread_cond_t gcv;
    struct ledger_req *waiting; /* asked, not yet taken by a writer */
    int writing;                /* a worker is writing a group now */
};

/* One worker's lease or `sent` mark, waiting for a group to carry it. */
struct ledger_req {
    struct ledger_req *next;
    struct oq_ledger_mark mark;
    int finish;      /* 1: a `sent` mark; 0: a lease */
    int answered;    /* the group it went in is over */
    int written;     /* the group leased (finished) it: mark.done, committed */
    int answer_lost; /* the group's connection died before its answer */
};

static int exiting(struct oq_effect_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int e = p->exiting;
    pthread_mutex_unlock(&p->mu);
    return e;
}

/* ---- database steps, waiting out a MySQL that is away ----------------------- */

enum step {
    LEASE,
    TAKE_OVER,
    TAKE_OVER_UNKNOWN,
    FINISH_SENT,
    FINISH_UNKNOWN,
    RELEASE,
    RETIRE_SWEPT, /* the lease sweeper's letter, replaced by this delivery's */
    REFRESH,      /* the handler's cache (the coupon rules) */
    COMMIT,       /* an OQ_JOB_PREPARE job's claim and rows, one transaction */
};

static int commit_prepared(struct effect_worker *w, struct oq_effect_job *job, char *err,
                           size_t errlen)
{
    const struct oq_handler *h = &w->handlers[job->handler_index];
    struct oq_claim c = {.handler = h->name,
                         .effect_key = job->prepared_key,
                         .event_identifier = job->effect.event_identifier,
                         .event_code = job->effect.event_code,
                         .result = job->prepared_result,
                         .attempts = job->attempt};
    void *plans[1] = {job->prepared_plan};
    if (oq_db_exec(w->db, "START TRANSACTION") != 0 ||
        oq_ledger_claim(w->db, w->pool->cfg->instance_id, &c, 1, err, errlen) != 0 ||
        (c.claimed && h->apply(h->state, w->db, plans, 1, err, errlen) != 0) ||
        oq_db_exec(w->db, "COMMIT") != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "%s", oq_db_error(w->db));
        oq_db_rollback(w->db);
        return OQ_EDB;
    }
    job->claimed = c.claimed;
    return 0;
}

/* Whether the job's ledger row is ours in state: asked after a step whose
 * answer was lost with the connection, to learn whether it committed. */
static int owned(struct effect_worker *w, const struct oq_effect_job *job, const char *state,
                 char *err, size_t errlen)
{
    int yes = 0;
    if (oq_ledger_is_owned(w->db, job->effect.handler, job->effect.effect_key, w->owner, state,
                           &yes, err, errlen) != 0)
        return OQ_EDB;
    return yes;
}

/* One step on w's connection. answer_lost: the same step was tried before
 * and the connection died before its answer came, so it may have
 * committed; a row found in the state it would have left, owned by this
 * worker, is taken as its own doing (the lease, take-over or finish
 * succeeded) instead of another's. */
static int run_step(struct effect_worker *w, struct oq_effect_job *job, enum step step,
                    int answer_lost, const char *result, enum oq_lease *lease, char *err,
                    size_t errlen)
{
    const struct oq_effect *e = &job->effect;
    const struct oq_handler *h = &w->handlers[job->handler_index];
    int64_t lease_ms = w->pool->cfg->effect_lease_ms;
    const char *state = step == FINISH_SENT      ? "sent"
                        : step == FINISH_UNKNOWN ? "unknown"
                                                 : "sending";
    int rc = OQ_EINVAL;
    err[0] = '\0';
    switch (step) {
    case LEASE: {
        struct oq_claim c = {.handler = e->handler,
                             .effect_key = e->effect_key,
                             .event_identifier = e->event_identifier,
                             .event_code = e->event_code,
                             .attempts = job->attempt};
        rc = oq_ledger_lease(w->db, &c, w->owner, lease_ms, lease, err, errlen);
        if (rc == 0 && answer_lost && *lease != OQ_LEASE_NEW) {
            int mine = owned(w, job, state, err, errlen);
            if (mine < 0)
                return mine;
            if (mine)
                *lease = OQ_LEASE_NEW;
        }
        return rc;
    }
    case TAKE_OVER:
    case TAKE_OVER_UNKNOWN:
        rc = oq_ledger_take_over(w->db, e->handler, e->effect_key, w->owner, lease_ms,
                                 step == TAKE_OVER_UNKNOWN, err, errlen);
        break;
    case FINISH_SENT:
    case FINISH_UNKNOWN:
        rc = oq_ledger_finish(w->db, e->handler, e->effect_key, w->owner, state, result, err,
                              errlen);
        break;
    case RELEASE:
        return oq_ledger_release(w->db, e->handler, e->effect_key, w->owner, err, errlen);
    case RETIRE_SWEPT:
        return oq_sweep_letter_retire(w->db, e->handler, e->effect_key, e->event_identifier,
                                      &w->retired, err, errlen);
    case REFRESH:
        return h->refresh ? h->refresh(h->state, w->db, err, errlen) : 0;
    case COMMIT:
        return commit_prepared(w, job, err, errlen);
    }
    if (rc == OQ_ENOTFOUND && answer_lost) {
        int mine = owned(w, job, state, err, errlen);
        if (mine != 0)
            return mine < 0 ? mine : 0;
    }
    return rc;
}

/* One database step, reconnecting with backoff while MySQL is away (or
 * refusing writes: read_only, not ready, disk full). Before the outside
 * call (must = 0) it gives up once the job is cancelled; after it
 * (must = 1) it keeps trying until the pool stops, so a sent mail is
 * recorded. Returns run_step's answer, or OQ_EINTR (gave up), or OQ_EDB
 * after three errors that are not about the database being away (the last
 * one in job->reason). */
static int db_step_after(struct effect_worker *w, struct oq_effect_job *job, enum step step,
                         int must, int answer_lost, const char *result, enum oq_lease *lease)
{
    struct oq_effect_pool *p = w->pool;
    char err[OQ_ERRLEN];
    int other_errors = 0, waits = 0;
    for (;;) {
        int cancelled = must ? exiting(p) : p->hooks.cancelled(job, p->hooks.ctx);
        if (w->db == NULL) {
            if (cancelled)
                return OQ_EINTR;
            if (oq_db_reopen(p->cfg->mysql_url, p->cfg->connect_timeout_ms, &w->db_tries, &w->db,
                             err, sizeof(err)) != 0) {
                int64_t wait = oq_backoff_ms(++w->db_failures);
                oq_error("effect worker: %s; retrying in %lld ms", err, (long long)wait);
                oq_nap(wait, NULL);
                continue;
            }
            if (w->db_failures > 0)
                oq_info("effect worker: MySQL is back after %d failed attempts", w->db_failures);
            w->db_failures = 0;
        }
        int rc = run_step(w, job, step, answer_lost, result, lease, err, sizeof(err));
        if (rc != OQ_EDB)
            return rc;
        enum oq_db_class cls = oq_db_last_class(w->db);
        oq_warn("effect worker: %s", err);
        if (oq_db_class_is_outage(cls)) {
            answer_lost |= cls == OQ_DB_GONE;
            oq_db_close(w->db);
            w->db = NULL;
        } else if (cls != OQ_DB_RETRY && ++other_errors >= 3) {
            snprintf(job->reason, sizeof(job->reason), "%s", err);
            return OQ_EDB;
        }
        if (cancelled)
            return OQ_EINTR; /* one more try was made */
        oq_nap(oq_backoff_ms(++waits), NULL);
    }
}

static int db_step(struct effect_worker *w, struct oq_effect_job *job, enum step step, int must,
                   const char *result, enum oq_lease *lease)
{
    return db_step_after(w, job, step, must, 0, result, lease);
}

/* ---- group commit: many leases and `sent` marks in one transaction ----------- *
 *
 * Each mail was two autocommits (lease, `sent`), each an fsync. Instead a
 * worker queues its row and the first worker to find no group being
 * written becomes the writer: it takes every row waiting, writes them on
 * its own connection in one transaction (one UPDATE for the marks, one
 * INSERT for the leases), and wakes each asker with its row's outcome.
 * Rows that arrive meanwhile wait for the next group, so a lone row is
 * written at once and rows group by themselves as load grows. The
 * guarantees are oq_ledger_lease's and oq_ledger_finish's: a lease is
 * committed before its send, a mark only asked for after its send and
 * committed before the job finishes (and its delivery is acked). A row the
 * group did not settle (a duplicate, a warning, MySQL away) is done again
 * alone through db_step, which says exactly which state the row is in. */

/* Write the group list on w's connection, one try. */
static void write_group(struct effect_worker *w, struct ledger_req *list)
{
    struct oq_effect_pool *p = w->pool;
    struct oq_ledger_mark leases[OQ_LEDGER_GROUP_MAX], marks[OQ_LEDGER_GROUP_MAX];
    size_t n_leases = 0, n_marks = 0;
    char err[OQ_ERRLEN] = "";
    int answer_lost = 0, rc = 0;

    for (struct ledger_req *r = list; r != NULL; r = r->next) {
        if (r->finish)
            marks[n_marks++] = r->mark;
        else
            leases[n_leases++] = r->mark;
    }
    if (w->db == NULL && oq_db_reopen(p->cfg->mysql_url, p->cfg->connect_timeout_ms, &w->db_tries,
                                      &w->db, err, sizeof(err)) != 0)
        rc = OQ_EDB; /* each asker waits MySQL out alone (db_step) */
    else if (oq_db_exec(w->db, "START TRANSACTION") != 0 ||
             oq_ledger_finish_many(w->db, marks, n_marks, err, sizeof(err)) != 0 ||
             oq_ledger_lease_many(w->db, leases, n_leases, p->cfg->effect_lease_ms, err,
                                  sizeof(err)) != 0 ||
             oq_db_exec(w->db, "COMMIT") != 0) {
        enum oq_db_class cls = oq_db_last_class(w->db);
        oq_warn("effect worker: a group of %zu leases and %zu marks: %s", n_leases, n_marks,
                err[0] ? err : oq_db_error(w->db));
        oq_db_rollback(w->db);
        answer_lost = cls == OQ_DB_GONE;
        if (oq_db_class_is_outage(cls)) {
            oq_db_close(w->db);
            w->db = NULL;
        }
        rc = OQ_EDB;
    }
    n_leases = n_marks = 0;
    for (struct ledger_req *r = list; r != NULL; r = r->next) {
        const struct oq_ledger_mark *m = r->finish ? &marks[n_marks++] : &leases[n_leases++];
        r->written = rc == 0 && m->done;
        r->answer_lost = answer_lost;
    }
}

/* Queue reqs[0..n) together and return once groups carried them, writing
 * one if no other worker is. */
static void group_step(struct effect_worker *w, struct ledger_req *reqs, size_t n)
{
    struct oq_effect_pool *p = w->pool;
    pthread_mutex_lock(&p->gmu);
    struct ledger_req **end = &p->waiting;
    while (*end != NULL)
        end = &(*end)->next;
    for (size_t i = 0; i < n; i++) {
        reqs[i].next = NULL;
        *end = &reqs[i];
        end = &reqs[i].next;
    }
    while (!reqs[n - 1].answered || !reqs[0].answered) {
        if (p->writing) {
            pthread_cond_wait(&p->gcv, &p->gmu);
            continue;
        }
        struct ledger_req *list = p->waiting;
        p->waiting = NULL;
        p->writing = 1;
        pthread_mutex_unlock(&p->gmu);
        write_group(w, list);
        pthread_mutex_lock(&p->gmu);
        for (struct ledger_req *r = list; r != NULL; r = r->next)
            r->answered = 1; /* under gmu: its asker reads it after us */
        p->writing = 0;
        pthread_cond_broadcast(&p->gcv);
    }
    pthread_mutex_unlock(&p->gmu);
}

/* The job's lease, through a group; what the group did not settle, alone. */
static int lease_step(struct effect_worker *w, struct oq_effect_job *job, enum oq_lease *lease)
{
    struct oq_effect_pool *p = w->pool;
    const struct oq_effect *e = &job->effect;
    if (p->hooks.cancelled(job, p->hooks.ctx))
        return OQ_EINTR;
    struct ledger_req req = {.mark = {.handler = e->handler,
                                      .effect_key = e->effect_key,
                                      .event_identifier = e->event_identifier,
                                      .event_code = e->event_code,
                                      .owner = w->owner,
                                      .attempts = job->attempt}};
    group_step(w, &req, 1);
    if (req.written) {
        *lease = OQ_LEASE_NEW;
        return 0;
    }
    return db_step_after(w, job, LEASE, 0, req.answer_lost, NULL, lease);
}

static void new_owner(struct effect_worker *w, char *owner, size_t size);

/* Take the next send job off the queue for this worker, when one waits,
 * and fill in its lease request: asked in the group of this job's `sent`
 * mark, a worker's two rows per mail share one transaction. A job that
 * need not run any more is taken without a lease; worker_main drops it. */
static int take_next(struct effect_worker *w, struct ledger_req *req)
{
    struct oq_effect_pool *p = w->pool;
    pthread_mutex_lock(&p->mu);
    struct oq_effect_job *job = p->head;
    if (job != NULL && job->kind == OQ_JOB_SEND && !p->exiting) {
        p->head = job->next;
        if (p->head == NULL)
            p->tail = NULL;
    } else {
        job = NULL;
    }
    pthread_mutex_unlock(&p->mu);
    w->next = job;
    w->next_lease = NEXT_NOT_ASKED;
    if (job == NULL || p->hooks.cancelled(job, p->hooks.ctx))
        return 0;
    const struct oq_effect *e = &job->effect;
    new_owner(w, w->next_owner, sizeof(w->next_owner));
    *req = (struct ledger_req){.mark = {.handler = e->handler,
                                        .effect_key = e->effect_key,
                                        .event_identifier = e->event_identifier,
                                        .event_code = e->event_code,
                                        .owner = w->next_owner,
                                        .attempts = job->attempt}};
    return 1;
}

/* The job's `sent` mark (with the next job's lease), through a group;
 * what it did not settle, alone. */
static int sent_step(struct effect_worker *w, struct oq_effect_job *job, const char *result)
{
    const struct oq_effect *e = &job->effect;
    struct ledger_req reqs[2] = {{.finish = 1,
                                  .mark = {.handler = e->handler,
                                           .effect_key = e->effect_key,
                                           .owner = w->owner,
                                           .result = result}}};
    int with_next = w->next == NULL && take_next(w, &reqs[1]);
    group_step(w, reqs, with_next ? 2 : 1);
    if (with_next) {
        w->next_lease = reqs[1].written ? NEXT_LEASED : NEXT_ASK_ALONE;
        w->next_answer_lost = reqs[1].answer_lost;
    }
    if (reqs[0].written)
        return 0;
    return db_step_after(w, job, FINISH_SENT, 1, reqs[0].answer_lost, result, NULL);
}

/* ---- one job ---------------------------------------------------------------- */

static void fail(struct oq_effect_job *job, enum oq_error_class cls, const char *fmt, ...)
    OQ_PRINTF(3, 4);

static void fail(struct oq_effect_job *job, enum oq_error_class cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->reason, sizeof(job->reason), fmt, ap);
    va_end(ap);
    job->result = OQ_JOB_FAILED;
    job->error_class = cls;
}

static void log_job(int level, const struct oq_effect_job *job, const char *what, const char *text)
{
    oq_log(level,
           (&(struct oq_log_fields){.event_identifier = job->effect.event_identifier,
                                    .attempt = job->attempt}),
           "%s %s/%s: %s", what, job->effect.handler, job->effect.effect_key, text);
}

/* Give the lease back: the call surely did nothing. */
static void release(struct effect_worker *w, struct oq_effect_job *job)
{
    if (db_step(w, job, RELEASE, 1, NULL, NULL) != 0)
        log_job(OQ_LOG_ERROR, job, "not released:",
                "its lease stays until it runs out; then a later delivery or the sweeper "
                "settles it");
}

/* The outside call, then its outcome committed. The lease is ours. */
static void send_once(struct effect_worker *w, struct oq_effect_job *job,
                      const struct oq_handler *h)
{
    char result[OQ_RESULT_LEN] = "";
    int64_t retry_after = -1;
    int64_t start = oq_metrics_now_us();
    enum oq_effect_outcome outcome =
        h->perform(h->state, job->plan, &job->effect, result, sizeof(result), &retry_after);
    oq_metrics_handler_duration(job->handler_index, oq_metrics_now_us() - start);
    if (outcome == OQ_EFFECT_DONE && w->pool->kill_after_send)
        raise(SIGKILL); /* the crash the lease protocol is for: sent, not recorded */
    job->retry_after_ms = retry_after;
    switch (outcome) {
    case OQ_EFFECT_DONE: {
        int rc = sent_step(w, job, result);
        if (rc == OQ_ENOTFOUND)
            log_job(OQ_LOG_WARN, job, "sent, but the ledger row is no longer this worker's:",
                    "its lease ran out and another consumer took it over (effect_lease_ms is "
                    "shorter than a send takes)");
        else if (rc != 0)
            log_job(OQ_LOG_ERROR, job, "sent, but not recorded (its lease will expire):", result);
        oq_metrics_send(job->handler_index, OQ_SEND_SENT);
        job->result = OQ_JOB_DONE;
        return;
    }
    case OQ_EFFECT_AMBIGUOUS:
        oq_metrics_send(job->handler_index, OQ_SEND_AMBIGUOUS);
        if (h->ambiguous == OQ_AMBIGUOUS_PARK) {
            (void)db_step(w, job, FINISH_UNKNOWN, 1, result, NULL);
            fail(job, OQ_ERR_AMBIGUOUS,
                 "%s; it may have been done: ledger state unknown (send again: orderq dlq "
                 "replay --force-resend)",
                 result);
            return;
        }
        release(w, job);
        fail(job, OQ_ERR_TRANSIENT, "%s; sending again with the same key", result);
        return;
    case OQ_EFFECT_TRANSIENT:
    case OQ_EFFECT_PERMANENT:
        oq_metrics_send(job->handler_index, OQ_SEND_FAILED);
        release(w, job);
        fail(job, outcome == OQ_EFFECT_PERMANENT ? OQ_ERR_PERMANENT : OQ_ERR_TRANSIENT, "%s",
             result);
        return;
    }
}

/* A lease that ran out while its owner was sending: that owner died or
 * hung, so whether the effect happened is unknown. */
static void expired(struct effect_worker *w, struct oq_effect_job *job, const struct oq_handler *h)
{
    oq_metrics_send(job->handler_index, OQ_SEND_AMBIGUOUS);
    int rc = db_step(w, job, TAKE_OVER, 0, NULL, NULL);
    if (rc == OQ_ENOTFOUND) { /* another consumer took it over first */
        fail(job, OQ_ERR_TRANSIENT, "%s/%s: another consumer took over its expired lease",
             job->effect.handler, job->effect.effect_key);
        return;
    }
    if (rc != 0) {
        fail(job, OQ_ERR_TRANSIENT, "%s/%s: the ledger could not be updated", job->effect.handler,
             job->effect.effect_key);
        return;
    }
    if (job->force_resend || h->ambiguous == OQ_AMBIGUOUS_RESEND) {
        log_job(OQ_LOG_WARN, job, "sending again", "an earlier send's lease expired unfinished");
        send_once(w, job, h);
        return;
    }
    const char *why = "an earlier send's lease expired before it recorded an outcome (the "
                      "process died or hung mid-send)";
    (void)db_step(w, job, FINISH_UNKNOWN, 1, why, NULL);
    fail(job, OQ_ERR_AMBIGUOUS,
         "%s; it may have been done: ledger state unknown (send again: orderq dlq replay "
         "--force-resend)",
         why);
}

/* An OQ_JOB_PREPARE job: prepare (which may call out), then commit. */
static void prepare_then_commit(struct effect_worker *w, struct oq_effect_job *job)
{
    const struct oq_handler *h = &w->handlers[job->handler_index];
    char err[512] = "";
    if (db_step(w, job, REFRESH, 0, NULL, NULL) != 0) {
        fail(job, OQ_ERR_TRANSIENT, "%s: its cache could not be read from MySQL", h->name);
        return;
    }
    job->prepared_key[0] = '\0';
    int rc = h->prepare(h->state, job->ev, job->attempt, &job->prepared_plan, job->prepared_key,
                        sizeof(job->prepared_key), job->prepared_result,
                        sizeof(job->prepared_result), err, sizeof(err));
    if (rc != 0) {
        fail(job, rc == OQ_EINVAL ? OQ_ERR_PERMANENT : OQ_ERR_TRANSIENT, "%s",
             err[0] ? err : oq_strerror(rc));
        return;
    }
    if (job->prepared_key[0] == '\0')
        snprintf(job->prepared_key, sizeof(job->prepared_key), "%s", job->effect.event_identifier);
    job->effect.effect_key = job->prepared_key;
    if ((rc = db_step(w, job, COMMIT, 0, NULL, NULL)) != 0) {
        /* three errors of its own: dead-letter it with the reason, as a
         * database worker does with the one event that fails a batch */
        char why[sizeof(job->reason)];
        snprintf(why, sizeof(why), "%s", job->reason);
        if (rc == OQ_EDB)
            fail(job, OQ_ERR_PERMANENT, "%s", why);
        else
            fail(job, OQ_ERR_TRANSIENT, "%s: MySQL went away before the commit", h->name);
        return;
    }
    job->result = job->claimed ? OQ_JOB_DONE : OQ_JOB_DUPLICATE;
}

/* A new owner for a job's lease (see struct effect_worker). */
static void new_owner(struct effect_worker *w, char *owner, size_t size)
{
    /* owner may be w->owner itself: its prefix stays, only the tail is new */
    if (owner != w->owner)
        memcpy(owner, w->owner, w->owner_prefix < size ? w->owner_prefix : size - 1);
    size_t at = w->owner_prefix < size ? w->owner_prefix : size - 1;
    snprintf(owner + at, size - at, "%012llx",
             (unsigned long long)(oq_random_u64() & 0xffffffffffffULL));
}

/* The lease of the job taken by take_next, asked already: its owner
 * becomes the worker's. Returns what the lease step would. */
static int next_leased(struct effect_worker *w, struct oq_effect_job *job, enum oq_lease *lease)
{
    snprintf(w->owner, sizeof(w->owner), "%s", w->next_owner);
    if (w->next_lease == NEXT_LEASED) {
        *lease = OQ_LEASE_NEW;
        return 0;
    }
    return db_step_after(w, job, LEASE, 0, w->next_answer_lost, NULL, lease);
}

/* The delivery of an effect the lease sweeper marked `unknown` is parked
 * next with its message, so the sweeper's letter (no message) goes: one
 * ambiguous effect, one letter. Best effort: if MySQL refuses, both stay. */
static void retire_swept_letter(struct effect_worker *w, struct oq_effect_job *job)
{
    w->retired = 0;
    if (db_step(w, job, RETIRE_SWEPT, 0, NULL, NULL) != 0) {
        log_job(OQ_LOG_WARN, job, "parked twice:",
                "the lease sweeper's dead letter for it could not be retired; purge the one "
                "without a message (orderq dlq list --event-id)");
        return;
    }
    if (w->retired > 0) {
        char text[256];
        snprintf(text, sizeof(text),
                 "this delivery's dead letter replaces the lease sweeper's dead letter %lld, "
                 "which held no message",
                 (long long)w->retired);
        log_job(OQ_LOG_WARN, job, "ambiguous", text);
    }
}

static void run_job(struct effect_worker *w, struct oq_effect_job *job)
{
    job->retry_after_ms = -1;
    if (job->kind == OQ_JOB_PREPARE) {
        prepare_then_commit(w, job);
        return;
    }
    const struct oq_handler *h = &w->handlers[job->handler_index];
    enum oq_lease lease = OQ_LEASE_NEW;
    int rc;
    if (w->next_lease != NEXT_NOT_ASKED) {
        rc = next_leased(w, job, &lease);
        w->next_lease = NEXT_NOT_ASKED;
    } else {
        new_owner(w, w->owner, sizeof(w->owner));
        rc = lease_step(w, job, &lease);
    }
    if (rc == OQ_EINTR) /* cancelled: a lease whose answer was lost may stand; best effort */
        (void)db_step(w, job, RELEASE, 1, NULL, NULL);
    if (rc != 0) {
        fail(job, OQ_ERR_TRANSIENT, "%s/%s: could not claim it in the ledger", job->effect.handler,
             job->effect.effect_key);
        return;
    }
    switch (lease) {
    case OQ_LEASE_NEW:
        send_once(w, job, h);
        return;
    case OQ_LEASE_DONE:
        job->result = OQ_JOB_DUPLICATE;
        return;
    case OQ_LEASE_HELD:
        fail(job, OQ_ERR_TRANSIENT, "%s/%s is being sent by another consumer (its lease is live)",
             job->effect.handler, job->effect.effect_key);
        return;
    case OQ_LEASE_EXPIRED:
        expired(w, job, h);
        return;
    case OQ_LEASE_UNKNOWN:
        if (!job->force_resend) {
            retire_swept_letter(w, job);
            fail(job, OQ_ERR_AMBIGUOUS,
                 "%s/%s: an earlier send's outcome is unknown (ledger state unknown); a person "
                 "decides: orderq dlq replay --force-resend",
                 job->effect.handler, job->effect.effect_key);
            return;
        }
        if ((rc = db_step(w, job, TAKE_OVER_UNKNOWN, 0, NULL, NULL)) != 0) {
            fail(job, OQ_ERR_TRANSIENT, "%s/%s: could not take it over in the ledger",
                 job->effect.handler, job->effect.effect_key);
            return;
        }
        log_job(OQ_LOG_WARN, job, "sending again", "forced by a replay (--force-resend)");
        send_once(w, job, h);
        return;
    }
}

/* ---- the pool ---------------------------------------------------------------- */

/* A job leased by take_next that will not run (the pool stops, its
 * delivery was lost): give its lease back, nothing was sent. */
static void drop_lease(struct effect_worker *w, struct oq_effect_job *job)
{
    snprintf(w->owner, sizeof(w->owner), "%s", w->next_owner);
    w->next_lease = NEXT_NOT_ASKED;
    release(w, job);
}

static void *worker_main(void *arg)
{
    struct effect_worker *w = arg;
    struct oq_effect_pool *p = w->pool;
    for (;;) {
        struct oq_effect_job *job = w->next; /* taken by sent_step */
        w->next = NULL;
        pthread_mutex_lock(&p->mu);
        while (job == NULL && p->head == NULL && !p->exiting)
            pthread_cond_wait(&p->cv, &p->mu);
        if (job == NULL && (job = p->head) != NULL) {
            p->head = job->next;
            if (p->head == NULL)
                p->tail = NULL;
        }
        int stop = p->exiting;
        pthread_mutex_unlock(&p->mu);
        if (job == NULL)
            break;
        int ran = !stop && !p->hooks.cancelled(job, p->hooks.ctx);
        if (ran)
            run_job(w, job);
        else if (w->next_lease != NEXT_NOT_ASKED)
            drop_lease(w, job);
        p->hooks.finished(job, ran, p->hooks.ctx);
    }
    oq_db_close(w->db);
    w->db = NULL;
    return NULL;
}

void oq_effect_pool_submit(struct oq_effect_pool *p, struct oq_effect_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void oq_effect_pool_stop(struct oq_effect_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->exiting = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i].thread, NULL);
    for (size_t i = 0; i < (size_t)p->cfg->effect_workers && p->workers; i++)
        oq_handlers_free(p->workers[i].handlers, p->workers[i].n_handlers);
    free(p->workers);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->gcv);
    pthread_mutex_destroy(&p->gmu);
    free(p);
}

int oq_effect_pool_start(const struct oq_config *cfg, const struct oq_effect_hooks *hooks,
                         struct oq_effect_pool **out, char *err, size_t errlen)
{
    struct oq_effect_pool *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (p == NULL)
        return OQ_ENOMEM;
    p->cfg = cfg;
    p->hooks = *hooks;
    if (cfg->effect_workers > OQ_LEDGER_GROUP_MAX) { /* one row each in a group */
        snprintf(err, errlen, "effect_workers is %lld; expected at most %d",
                 (long long)cfg->effect_workers, OQ_LEDGER_GROUP_MAX);
        free(p);
        return OQ_ECONFIG;
    }
    const char *fault = getenv("ORDERQ_FAULT");
    p->kill_after_send = fault != NULL && strcmp(fault, "kill-after-send") == 0;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->gmu, NULL);
    pthread_cond_init(&p->gcv, NULL);
    p->workers = calloc((size_t)cfg->effect_workers, sizeof(*p->workers));
    if (p->workers == NULL) {
        oq_effect_pool_stop(p);
        return OQ_ENOMEM;
    }
    for (size_t i = 0; i < (size_t)cfg->effect_workers; i++) {
        struct effect_worker *w = &p->workers[i];
        w->pool = p;
        int len = snprintf(w->owner, sizeof(w->owner), "%s/effect-%zu/", cfg->instance_id, i + 1);
        w->owner_prefix = len > 0 ? (size_t)len : 0;
        int rc = oq_handlers_new(cfg, &w->handlers, &w->n_handlers, err, errlen);
        if (rc == 0 && pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start effect worker %zu", i + 1);
            rc = OQ_ENOMEM;
        }
        if (rc != 0) {
            oq_effect_pool_stop(p);
            return rc;
        }
        p->n_workers++;
    }
    *out = p;
    return 0;
}
