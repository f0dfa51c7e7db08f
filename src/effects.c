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

/* Jobs a worker leases ahead, and `sent` marks it may have unsettled (see
 * the group commit below): a crash leaves at most their sum + 1 of a
 * worker's rows `sending`. */
#define LEASES_AHEAD 2
#define MARKS_AHEAD  2

/* One worker's lease or `sent` mark, waiting for a group to carry it. */
struct ledger_req {
    struct ledger_req *next;
    struct oq_ledger_mark mark;
    int finish;      /* 1: a `sent` mark; 0: a lease */
    int answered;    /* the group it went in is over */
    int written;     /* the group leased (finished) it: mark.done, committed */
    int answer_lost; /* the group's connection died before its answer */
    /* An asynchronous `sent` mark (see mark_async): the writer settles it,
     * then finishes job; job's strings stay valid until then, the owner
     * and result are copied since the worker moves on at once. */
    struct oq_effect_job *job;
    struct effect_worker *asker;
    char owner[256];
    char result[OQ_RESULT_LEN];
};

struct effect_worker {
    struct oq_effect_pool *pool;
    pthread_t thread;
    struct oq_db *db;
    int db_failures;
    unsigned db_tries;           /* oq_db_reopen counts the reconnects */
    int64_t reopen_at;           /* the group writer: no reconnect before (oq_now_ms) */
    struct oq_handler *handlers; /* its own: its own curl handles */
    size_t n_handlers;
    /* A lease's owner: "<instance_id>/effect-N/<12 hex>", the hex new for
     * each job, so a worker that lost the answer to its own statement
     * can tell its row from any other, its own earlier ones included. */
    char owner[256];
    size_t owner_prefix; /* length of "<instance_id>/effect-N/" */
    int64_t retired;     /* RETIRE_SWEPT's answer: the sweeper's letter deleted, or 0 */
    /* Lease ahead: the jobs this worker runs next, taken from the queue
     * before it sent its current one, with their leases asked of the
     * group writer without waiting (see lease_ahead); a ring, oldest at
     * ahead_head. A slot's req is the writer's until answered. */
    struct ahead {
        struct oq_effect_job *job;
        int asked; /* 0: taken without a lease (it need not run) */
        struct ledger_req req;
        char owner[256];
    } ahead[LEASES_AHEAD];
    size_t ahead_head, n_ahead;
    int marks_out; /* its `sent` marks handed to the writer, not yet settled (gmu) */
};

struct oq_effect_pool {
    const struct oq_config *cfg;
    struct oq_effect_hooks hooks;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct oq_effect_job *head, *tail;
    int exiting;
    int idle; /* workers waiting for a job: lease ahead leaves the queue to them */
    struct effect_worker *workers;
    size_t n_workers;
    int kill_after_send; /* ORDERQ_FAULT=kill-after-send: the system tests' crash */

    /* Group commit of leases and `sent` marks (see write_group). */
    pthread_mutex_t gmu;
    pthread_cond_t gcv; /* rows answered, marks settled: the workers wait on it */
    pthread_cond_t wcv; /* rows waiting: the writer waits on it */
    struct ledger_req *waiting, *waiting_tail; /* asked, not yet taken by the writer */
    struct effect_worker writer;               /* its thread and connection */
    int writer_started, writer_exit;
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
static int owned(struct effect_worker *w, const struct oq_effect_job *job, const char *owner,
                 const char *state, char *err, size_t errlen)
{
    int yes = 0;
    if (oq_ledger_is_owned(w->db, job->effect.handler, job->effect.effect_key, owner, state, &yes,
                           err, errlen) != 0)
        return OQ_EDB;
    return yes;
}

/* One step on w's connection. answer_lost: the same step was tried before
 * and the connection died before its answer came, so it may have
 * committed; a row found in the state it would have left, owned by this
 * worker, is taken as its own doing (the lease, take-over or finish
 * succeeded) instead of another's. */
static int run_step(struct effect_worker *w, struct oq_effect_job *job, const char *owner,
                    enum step step, int answer_lost, const char *result, enum oq_lease *lease,
                    char *err, size_t errlen)
{
    const struct oq_effect *e = &job->effect;
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
        rc = oq_ledger_lease(w->db, &c, owner, lease_ms, lease, err, errlen);
        if (rc == 0 && answer_lost && *lease == OQ_LEASE_LOCKED)
            return OQ_EDB; /* the lock may be the lost try's own commit: wait, ask again */
        if (rc == 0 && answer_lost && *lease != OQ_LEASE_NEW) {
            int mine = owned(w, job, owner, state, err, errlen);
            if (mine < 0)
                return mine;
            if (mine)
                *lease = OQ_LEASE_NEW;
        }
        return rc;
    }
    case TAKE_OVER:
    case TAKE_OVER_UNKNOWN:
        rc = oq_ledger_take_over(w->db, e->handler, e->effect_key, owner, lease_ms,
                                 step == TAKE_OVER_UNKNOWN, err, errlen);
        break;
    case FINISH_SENT:
    case FINISH_UNKNOWN:
        rc = oq_ledger_finish(w->db, e->handler, e->effect_key, owner, state, result, err, errlen);
        break;
    case RELEASE:
        return oq_ledger_release(w->db, e->handler, e->effect_key, owner, err, errlen);
    case RETIRE_SWEPT:
        return oq_sweep_letter_retire(w->db, e->handler, e->effect_key, e->event_identifier,
                                      &w->retired, err, errlen);
    case REFRESH: {
        const struct oq_handler *h = &w->handlers[job->handler_index];
        return h->refresh ? h->refresh(h->state, w->db, err, errlen) : 0;
    }
    case COMMIT:
        return commit_prepared(w, job, err, errlen);
    }
    if (rc == OQ_ENOTFOUND && answer_lost) {
        int mine = owned(w, job, owner, state, err, errlen);
        if (mine != 0)
            return mine < 0 ? mine : 0;
    }
    return rc;
}

/* Every connection of the pool gives up a row lock held elsewhere (an
 * operator's open transaction) after LOCK_WAIT_S, not innodb_lock_wait_timeout
 * (50 s by default): the writer's group then fails and its rows are written
 * one by one, each by its worker; a worker's lone lease reports the row
 * locked and its delivery comes back later; its other steps are redone with
 * backoff. Every worker waits on the writer, and each worker holds the
 * mails it took ahead: none of them may wait long. */
#define LOCK_WAIT_S "2"
static int bound_lock_waits(struct oq_db *db, char *err, size_t errlen)
{
    if (oq_db_exec(db, "SET SESSION innodb_lock_wait_timeout = " LOCK_WAIT_S) == 0)
        return 0;
    snprintf(err, errlen, "setting innodb_lock_wait_timeout: %s", oq_db_error(db));
    return OQ_EDB;
}

/* One database step, reconnecting with backoff while MySQL is away (or
 * refusing writes: read_only, not ready, disk full). Before the outside
 * call (must = 0) it gives up once the job is cancelled; after it
 * (must = 1) it keeps trying until the pool stops, so a sent mail is
 * recorded. Returns run_step's answer, or OQ_EINTR (gave up), or OQ_EDB
 * after three errors that are not about the database being away (the last
 * one in job->reason). */
static int db_step_after(struct effect_worker *w, struct oq_effect_job *job, const char *owner,
                         enum step step, int must, int answer_lost, const char *result,
                         enum oq_lease *lease)
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
                             err, sizeof(err)) != 0 ||
                bound_lock_waits(w->db, err, sizeof(err)) != 0) {
                oq_db_close(w->db); /* NULL already when the open failed */
                w->db = NULL;
                int64_t wait = oq_backoff_ms(++w->db_failures);
                oq_error("effect worker: %s; retrying in %lld ms", err, (long long)wait);
                oq_nap(wait, NULL);
                continue;
            }
            if (w->db_failures > 0)
                oq_info("effect worker: MySQL is back after %d failed attempts", w->db_failures);
            w->db_failures = 0;
        }
        int rc = run_step(w, job, owner, step, answer_lost, result, lease, err, sizeof(err));
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
    return db_step_after(w, job, w->owner, step, must, 0, result, lease);
}

/* ---- group commit: many leases and `sent` marks in one transaction ----------- *
 *
 * Each mail was two autocommits (lease, `sent`), each an fsync. Instead the
 * workers queue their rows for the pool's group writer, a thread with a
 * connection of its own: it takes every row waiting, writes them in one
 * transaction (one UPDATE for the marks, one INSERT for the leases) and
 * answers each. Rows that arrive meanwhile wait for the next group, so a
 * lone row is written at once and rows group by themselves as load grows.
 *
 * A worker does not wait for the writer where it need not, so its
 * connection to the peer stays busy: it asks the lease of its next job
 * before it sends the current one (lease ahead), and hands a sent job's
 * `sent` mark to the writer with the job (mark_async), which commits the
 * mark and only then finishes the job from its own thread: the delivery
 * is acked after its mark is committed, as before. At most MARKS_AHEAD of
 * a worker's marks are unsettled at a time, so a crash leaves at most
 * MARKS_AHEAD + 1 + LEASES_AHEAD of its rows `sending` (those, the mail
 * being sent, the leases of the jobs taken ahead). The guarantees are
 * oq_ledger_lease's and oq_ledger_finish's: a lease is committed before its send, a mark asked
 * only after its send. A row the group did not settle (a duplicate, a
 * warning, MySQL away) is done again alone through db_step, which says
 * exactly which state the row is in: a lease by its worker, a mark by the
 * writer. */

/* The group writer's connection, its lock waits bounded (bound_lock_waits).
 * After a failed connect it does not try again for a second (meanwhile
 * each group fails at once, its rows written one by one by the workers). */
static int writer_connect(struct effect_worker *w, char *err, size_t errlen)
{
    struct oq_effect_pool *p = w->pool;
    if (oq_now_ms() < w->reopen_at) {
        snprintf(err, errlen, "MySQL was unreachable a moment ago");
        return 0;
    }
    if (oq_db_reopen(p->cfg->mysql_url, p->cfg->connect_timeout_ms, &w->db_tries, &w->db, err,
                     errlen) != 0 ||
        bound_lock_waits(w->db, err, errlen) != 0) {
        oq_db_close(w->db);
        w->db = NULL;
        w->reopen_at = oq_now_ms() + 1000;
        return 0;
    }
    return 1;
}

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
    if (w->db == NULL && !writer_connect(w, err, sizeof(err)))
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

/* Queue r for the writer. Under gmu. */
static void enqueue_locked(struct oq_effect_pool *p, struct ledger_req *r)
{
    r->next = NULL;
    r->answered = 0;
    if (p->waiting_tail != NULL)
        p->waiting_tail->next = r;
    else
        p->waiting = r;
    p->waiting_tail = r;
    pthread_cond_signal(&p->wcv);
}

static void group_ask(struct oq_effect_pool *p, struct ledger_req *r)
{
    pthread_mutex_lock(&p->gmu);
    enqueue_locked(p, r);
    pthread_mutex_unlock(&p->gmu);
}

/* Wait until the writer answered r (asked with group_ask). */
static void group_wait(struct oq_effect_pool *p, struct ledger_req *r)
{
    pthread_mutex_lock(&p->gmu);
    while (!r->answered)
        pthread_cond_wait(&p->gcv, &p->gmu);
    pthread_mutex_unlock(&p->gmu);
}

/* Up to OQ_LEDGER_GROUP_MAX rows off the waiting list, oldest first (a
 * group has room for that many marks and as many leases). Under gmu. */
static struct ledger_req *take_group_locked(struct oq_effect_pool *p)
{
    struct ledger_req *list = p->waiting, *last = list;
    for (size_t n = 1; last->next != NULL && n < OQ_LEDGER_GROUP_MAX; n++)
        last = last->next;
    p->waiting = last->next;
    if (p->waiting == NULL)
        p->waiting_tail = NULL;
    last->next = NULL;
    return list;
}

/* The job's row in a group: its lease under owner, or (result set) its
 * `sent` mark. */
static struct oq_ledger_mark job_mark(const struct oq_effect_job *job, const char *owner,
                                      const char *result)
{
    const struct oq_effect *e = &job->effect;
    return (struct oq_ledger_mark){.handler = e->handler,
                                   .effect_key = e->effect_key,
                                   .event_identifier = e->event_identifier,
                                   .event_code = e->event_code,
                                   .owner = owner,
                                   .result = result,
                                   .attempts = job->attempt};
}

/* A lease asked of a group, answered (w->owner is its owner): leased, or
 * what the group did not settle asked alone, which says in which state. */
static int leased(struct effect_worker *w, struct oq_effect_job *job, const struct ledger_req *req,
                  enum oq_lease *lease)
{
    if (req->written) {
        *lease = OQ_LEASE_NEW;
        return 0;
    }
    return db_step_after(w, job, w->owner, LEASE, 0, req->answer_lost, NULL, lease);
}

/* The job's lease, through a group. */
static int lease_step(struct effect_worker *w, struct oq_effect_job *job, enum oq_lease *lease)
{
    struct oq_effect_pool *p = w->pool;
    if (p->hooks.cancelled(job, p->hooks.ctx))
        return OQ_EINTR;
    struct ledger_req req = {.mark = job_mark(job, w->owner, NULL)};
    group_ask(p, &req);
    group_wait(p, &req);
    return leased(w, job, &req, lease);
}

static void new_owner(struct effect_worker *w, char *owner, size_t size);

/* Lease ahead: take send jobs off the queue while they wait, no worker is
 * idle to take them and fewer than LEASES_AHEAD are taken, and ask their
 * leases without waiting, so the writer commits them while this worker
 * sends its current job. A job that need not run any more is taken
 * without a lease; worker_main drops it. */
static void lease_ahead(struct effect_worker *w)
{
    struct oq_effect_pool *p = w->pool;
    while (w->n_ahead < LEASES_AHEAD) {
        pthread_mutex_lock(&p->mu);
        struct oq_effect_job *job = p->head;
        if (job != NULL && job->kind == OQ_JOB_SEND && !p->exiting && p->idle == 0) {
            p->head = job->next;
            if (p->head == NULL)
                p->tail = NULL;
        } else {
            job = NULL;
        }
        pthread_mutex_unlock(&p->mu);
        if (job == NULL)
            return;
        /* the slot after the newest: free, its last req answered (next_leased) */
        struct ahead *a = &w->ahead[(w->ahead_head + w->n_ahead++) % LEASES_AHEAD];
        a->job = job;
        a->asked = 0;
        if (p->hooks.cancelled(job, p->hooks.ctx))
            continue;
        new_owner(w, a->owner, sizeof(a->owner));
        a->req = (struct ledger_req){.mark = job_mark(job, a->owner, NULL)};
        group_ask(p, &a->req);
        a->asked = 1;
    }
}

/* The job's `sent` mark through a group, waiting for it; what the group
 * did not settle, alone. */
static int sent_step(struct effect_worker *w, struct oq_effect_job *job, const char *result)
{
    struct ledger_req req = {.finish = 1, .mark = job_mark(job, w->owner, result)};
    group_ask(w->pool, &req);
    group_wait(w->pool, &req);
    if (req.written)
        return 0;
    return db_step_after(w, job, w->owner, FINISH_SENT, 1, req.answer_lost, result, NULL);
}

/* Hand the sent job's `sent` mark, and the job, to the writer: it commits
 * the mark, then finishes the job. Waits first while MARKS_AHEAD of this
 * worker's marks are unsettled. Returns 0 (the job is the writer's now)
 * or OQ_ENOMEM (the caller marks it with sent_step). */
static int mark_async(struct effect_worker *w, struct oq_effect_job *job, const char *result)
{
    struct oq_effect_pool *p = w->pool;
    struct ledger_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return OQ_ENOMEM;
    snprintf(r->owner, sizeof(r->owner), "%s", w->owner);
    snprintf(r->result, sizeof(r->result), "%s", result);
    r->finish = 1;
    r->job = job;
    r->asker = w;
    r->mark = job_mark(job, r->owner, r->result);
    pthread_mutex_lock(&p->gmu);
    while (w->marks_out >= MARKS_AHEAD)
        pthread_cond_wait(&p->gcv, &p->gmu);
    w->marks_out++;
    enqueue_locked(p, r);
    pthread_mutex_unlock(&p->gmu);
    return 0;
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

/* A sent job's `sent` mark that did not commit, said in the log. */
static void log_unrecorded(const struct oq_effect_job *job, int rc, const char *result)
{
    if (rc == OQ_ENOTFOUND)
        log_job(OQ_LOG_WARN, job, "sent, but the ledger row is no longer this worker's:",
                "its lease ran out and another consumer took it over (effect_lease_ms is "
                "shorter than a send takes)");
    else if (rc != 0)
        log_job(OQ_LOG_ERROR, job, "sent, but not recorded (its lease will expire):", result);
}

/* The outside call, then its outcome committed. The lease is ours.
 * Returns 1 when the job was handed to the writer (it finishes it), else
 * 0 (the caller does). */
static int send_once(struct effect_worker *w, struct oq_effect_job *job, const struct oq_handler *h)
{
    char result[OQ_RESULT_LEN] = "";
    int64_t retry_after = -1;
    lease_ahead(w); /* committed while this call runs */
    int64_t start = oq_metrics_now_us();
    enum oq_effect_outcome outcome =
        h->perform(h->state, job->plan, &job->effect, result, sizeof(result), &retry_after);
    oq_metrics_handler_duration(job->handler_index, oq_metrics_now_us() - start);
    if (outcome == OQ_EFFECT_DONE && w->pool->kill_after_send)
        raise(SIGKILL); /* the crash the lease protocol is for: sent, not recorded */
    job->retry_after_ms = retry_after;
    switch (outcome) {
    case OQ_EFFECT_DONE:
        oq_metrics_send(job->handler_index, OQ_SEND_SENT);
        job->result = OQ_JOB_DONE; /* before the hand-over: the writer finishes it */
        if (mark_async(w, job, result) == 0)
            return 1;
        log_unrecorded(job, sent_step(w, job, result), result);
        return 0;
    case OQ_EFFECT_AMBIGUOUS:
        oq_metrics_send(job->handler_index, OQ_SEND_AMBIGUOUS);
        if (h->ambiguous == OQ_AMBIGUOUS_PARK) {
            (void)db_step(w, job, FINISH_UNKNOWN, 1, result, NULL);
            fail(job, OQ_ERR_AMBIGUOUS,
                 "%s; it may have been done: ledger state unknown (send again: orderq dlq "
                 "replay --force-resend)",
                 result);
            return 0;
        }
        release(w, job);
        fail(job, OQ_ERR_TRANSIENT, "%s; sending again with the same key", result);
        return 0;
    case OQ_EFFECT_TRANSIENT:
    case OQ_EFFECT_PERMANENT:
        oq_metrics_send(job->handler_index, OQ_SEND_FAILED);
        release(w, job);
        fail(job, outcome == OQ_EFFECT_PERMANENT ? OQ_ERR_PERMANENT : OQ_ERR_TRANSIENT, "%s",
             result);
        return 0;
    }
    return 0;
}

/* A lease that ran out while its owner was sending: that owner died or
 * hung, so whether the effect happened is unknown. Returns send_once's
 * answer, or 0. */
static int expired(struct effect_worker *w, struct oq_effect_job *job, const struct oq_handler *h)
{
    oq_metrics_send(job->handler_index, OQ_SEND_AMBIGUOUS);
    int rc = db_step(w, job, TAKE_OVER, 0, NULL, NULL);
    if (rc == OQ_ENOTFOUND) { /* another consumer took it over first */
        fail(job, OQ_ERR_TRANSIENT, "%s/%s: another consumer took over its expired lease",
             job->effect.handler, job->effect.effect_key);
        return 0;
    }
    if (rc != 0) {
        fail(job, OQ_ERR_TRANSIENT, "%s/%s: the ledger could not be updated", job->effect.handler,
             job->effect.effect_key);
        return 0;
    }
    if (job->force_resend || h->ambiguous == OQ_AMBIGUOUS_RESEND) {
        log_job(OQ_LOG_WARN, job, "sending again", "an earlier send's lease expired unfinished");
        return send_once(w, job, h);
    }
    const char *why = "an earlier send's lease expired before it recorded an outcome (the "
                      "process died or hung mid-send)";
    (void)db_step(w, job, FINISH_UNKNOWN, 1, why, NULL);
    fail(job, OQ_ERR_AMBIGUOUS,
         "%s; it may have been done: ledger state unknown (send again: orderq dlq replay "
         "--force-resend)",
         why);
    return 0;
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

/* The lease of a job taken by lease_ahead, asked already (slot a): its
 * owner becomes the worker's. Returns what the lease step would. */
static int next_leased(struct effect_worker *w, struct oq_effect_job *job, struct ahead *a,
                       enum oq_lease *lease)
{
    group_wait(w->pool, &a->req);
    snprintf(w->owner, sizeof(w->owner), "%s", a->owner);
    return leased(w, job, &a->req, lease);
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

/* a: the job's slot when lease_ahead took it with its lease asked, or
 * NULL. Returns 1 when the job was handed to the writer (it finishes it). */
static int run_job(struct effect_worker *w, struct oq_effect_job *job, struct ahead *a)
{
    job->retry_after_ms = -1;
    if (job->kind == OQ_JOB_PREPARE) {
        prepare_then_commit(w, job);
        return 0;
    }
    const struct oq_handler *h = &w->handlers[job->handler_index];
    enum oq_lease lease = OQ_LEASE_NEW;
    int rc;
    if (a != NULL) {
        rc = next_leased(w, job, a, &lease);
    } else {
        new_owner(w, w->owner, sizeof(w->owner));
        rc = lease_step(w, job, &lease);
    }
    if (rc == OQ_EINTR) /* cancelled: a lease whose answer was lost may stand; best effort */
        (void)db_step(w, job, RELEASE, 1, NULL, NULL);
    if (rc != 0) {
        fail(job, OQ_ERR_TRANSIENT, "%s/%s: could not claim it in the ledger", job->effect.handler,
             job->effect.effect_key);
        return 0;
    }
    switch (lease) {
    case OQ_LEASE_NEW:
        return send_once(w, job, h);
    case OQ_LEASE_DONE:
        job->result = OQ_JOB_DUPLICATE;
        return 0;
    case OQ_LEASE_HELD:
        fail(job, OQ_ERR_TRANSIENT, "%s/%s is being sent by another consumer (its lease is live)",
             job->effect.handler, job->effect.effect_key);
        return 0;
    case OQ_LEASE_LOCKED:
        fail(job, OQ_ERR_TRANSIENT,
             "%s/%s: its ledger row is locked by another session; sent later (see "
             "information_schema.INNODB_TRX for who holds it)",
             job->effect.handler, job->effect.effect_key);
        return 0;
    case OQ_LEASE_EXPIRED:
        return expired(w, job, h);
    case OQ_LEASE_UNKNOWN:
        if (!job->force_resend) {
            retire_swept_letter(w, job);
            fail(job, OQ_ERR_AMBIGUOUS,
                 "%s/%s: an earlier send's outcome is unknown (ledger state unknown); a person "
                 "decides: orderq dlq replay --force-resend",
                 job->effect.handler, job->effect.effect_key);
            return 0;
        }
        if ((rc = db_step(w, job, TAKE_OVER_UNKNOWN, 0, NULL, NULL)) != 0) {
            fail(job, OQ_ERR_TRANSIENT, "%s/%s: could not take it over in the ledger",
                 job->effect.handler, job->effect.effect_key);
            return 0;
        }
        log_job(OQ_LOG_WARN, job, "sending again", "forced by a replay (--force-resend)");
        return send_once(w, job, h);
    }
    return 0;
}

/* ---- the pool ---------------------------------------------------------------- */

/* A job leased by lease_ahead that will not run (the pool stops, its
 * delivery was lost): give its lease back, nothing was sent. */
static void drop_lease(struct effect_worker *w, struct oq_effect_job *job, struct ahead *a)
{
    group_wait(w->pool, &a->req); /* the writer is done with it */
    snprintf(w->owner, sizeof(w->owner), "%s", a->owner);
    release(w, job);
}

/* A `sent` mark handed over by mark_async, after its group: settled alone
 * if the group did not, then its job is over. */
static void settle_mark(struct effect_worker *w, struct ledger_req *r)
{
    struct oq_effect_pool *p = w->pool;
    struct oq_effect_job *job = r->job;
    struct effect_worker *asker = r->asker;
    if (!r->written)
        log_unrecorded(
            job, db_step_after(w, job, r->owner, FINISH_SENT, 1, r->answer_lost, r->result, NULL),
            r->result);
    p->hooks.finished(job, 1, p->hooks.ctx);
    free(r);
    pthread_mutex_lock(&p->gmu);
    asker->marks_out--;
    pthread_cond_broadcast(&p->gcv);
    pthread_mutex_unlock(&p->gmu);
}

/* The group writer: writes what waits, answers the askers, settles the
 * marks handed over; at stop, once the workers are gone and nothing waits. */
static void *writer_main(void *arg)
{
    struct effect_worker *w = arg;
    struct oq_effect_pool *p = w->pool;
    pthread_mutex_lock(&p->gmu);
    for (;;) {
        while (p->waiting == NULL && !p->writer_exit)
            pthread_cond_wait(&p->wcv, &p->gmu);
        if (p->waiting == NULL)
            break;
        struct ledger_req *list = take_group_locked(p);
        pthread_mutex_unlock(&p->gmu);
        write_group(w, list);
        struct ledger_req *marks = NULL, **end = &marks, *next;
        pthread_mutex_lock(&p->gmu);
        for (struct ledger_req *r = list; r != NULL; r = next) {
            next = r->next;
            if (r->job != NULL) { /* the writer's from now on */
                r->next = NULL;
                *end = r;
                end = &r->next;
            } else {
                r->answered = 1; /* under gmu: its asker reads it after us */
            }
        }
        pthread_cond_broadcast(&p->gcv);
        pthread_mutex_unlock(&p->gmu);
        for (struct ledger_req *r = marks; r != NULL; r = next) {
            next = r->next;
            settle_mark(w, r);
        }
        pthread_mutex_lock(&p->gmu);
    }
    pthread_mutex_unlock(&p->gmu);
    oq_db_close(w->db);
    w->db = NULL;
    return NULL;
}

static void *worker_main(void *arg)
{
    struct effect_worker *w = arg;
    struct oq_effect_pool *p = w->pool;
    for (;;) {
        struct oq_effect_job *job = NULL;
        struct ahead *a = NULL; /* taken by lease_ahead, its lease asked */
        if (w->n_ahead > 0) {
            struct ahead *oldest = &w->ahead[w->ahead_head];
            w->ahead_head = (w->ahead_head + 1) % LEASES_AHEAD;
            w->n_ahead--;
            job = oldest->job;
            a = oldest->asked ? oldest : NULL;
        }
        pthread_mutex_lock(&p->mu);
        if (job == NULL) {
            p->idle++;
            while (p->head == NULL && !p->exiting)
                pthread_cond_wait(&p->cv, &p->mu);
            p->idle--;
            if ((job = p->head) != NULL) {
                p->head = job->next;
                if (p->head == NULL)
                    p->tail = NULL;
            }
        }
        int stop = p->exiting;
        pthread_mutex_unlock(&p->mu);
        if (job == NULL)
            break;
        int ran = !stop && !p->hooks.cancelled(job, p->hooks.ctx);
        int handed_over = 0;
        if (ran)
            handed_over = run_job(w, job, a);
        else if (a != NULL)
            drop_lease(w, job, a);
        if (!handed_over)
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
    if (p->writer_started) { /* after the workers: it settles their last marks */
        pthread_mutex_lock(&p->gmu);
        p->writer_exit = 1;
        pthread_cond_signal(&p->wcv);
        pthread_mutex_unlock(&p->gmu);
        pthread_join(p->writer.thread, NULL);
    }
    for (size_t i = 0; i < (size_t)p->cfg->effect_workers && p->workers; i++)
        oq_handlers_free(p->workers[i].handlers, p->workers[i].n_handlers);
    free(p->workers);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->gcv);
    pthread_cond_destroy(&p->wcv);
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
    const char *fault = getenv("ORDERQ_FAULT");
    p->kill_after_send = fault != NULL && strcmp(fault, "kill-after-send") == 0;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->gmu, NULL);
    pthread_cond_init(&p->gcv, NULL);
    pthread_cond_init(&p->wcv, NULL);
    p->writer.pool = p;
    p->workers = calloc((size_t)cfg->effect_workers, sizeof(*p->workers));
    if (p->workers == NULL ||
        pthread_create(&p->writer.thread, NULL, writer_main, &p->writer) != 0) {
        snprintf(err, errlen, "cannot start the effect workers' group writer");
        oq_effect_pool_stop(p);
        return OQ_ENOMEM;
    }
    p->writer_started = 1;
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
