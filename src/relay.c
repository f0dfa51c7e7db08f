/* relay.c - the outbox relay: publish outbox rows with confirms, then mark them */
#include "orderq/relay.h"

#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/pipeline.h"
#include "orderq/publish.h"

#define RELAY_BATCH 500
/* Outlives a publish: its confirms wait connect_timeout_ms (10 s by default). */
#define CLAIM_S  30
#define TEXT_(x) #x
#define TEXT(x)  TEXT_(x) /* a macro's value as a string literal */

#define NACK_FIRST_S   1   /* a nack: the broker cannot take it now; soon again */
#define NACK_MAX_S     300 /* each retry publishes again to every queue that took it */
#define RETURN_FIRST_S 60  /* a return: no queue bound, a person must fix it */
#define RETURN_MAX_S   3600

struct row {
    long long id, attempts;
    char *exchange, *routing_key, *event_code, *event_identifier, *body;
    int acked, returned;
};

struct rows {
    struct row r[RELAY_BATCH];
    size_t n;
    uint64_t first_seq;
};

struct link {
    const struct oq_config *cfg;
    struct oq_broker *b;
    struct oq_publisher *pub;
    struct oq_db *db;
    struct rows rows;
    int failures;
    int hold_locks;              /* the rows stay locked while published: no claim commit */
    unsigned db_tries;           /* oq_db_reopen counts the reconnects */
    volatile sig_atomic_t *stop; /* checked between rounds */
};

static void rows_clear(struct rows *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].exchange);
        free(rs->r[i].routing_key);
        free(rs->r[i].event_code);
        free(rs->r[i].event_identifier);
        free(rs->r[i].body);
    }
    rs->n = 0;
}

static int on_row(void *ctx, const char *const *v, unsigned n)
{
    struct rows *rs = ctx;
    if (n < 7 || rs->n == RELAY_BATCH)
        return 0;
    struct row *r = &rs->r[rs->n++];
    memset(r, 0, sizeof(*r));
    r->id = strtoll(v[0], NULL, 10);
    r->attempts = v[6] ? strtoll(v[6], NULL, 10) : 0;
    r->exchange = strdup(v[1] ? v[1] : "");
    r->routing_key = strdup(v[2] ? v[2] : "");
    r->event_code = strdup(v[3] ? v[3] : "");
    r->event_identifier = strdup(v[4] ? v[4] : "");
    r->body = strdup(v[5] ? v[5] : "");
    return !r->exchange || !r->routing_key || !r->event_code || !r->event_identifier || !r->body;
}

static void on_settled(void *ctx, uint64_t seq, enum oq_confirm outcome)
{
    struct rows *rs = ctx;
    if (seq >= rs->first_seq && seq - rs->first_seq < rs->n)
        rs->r[seq - rs->first_seq].acked = outcome == OQ_CONFIRM_ACK;
}

static void on_returned(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *m)
{
    struct rows *rs = ctx;
    const amqp_field_value_t *v = oq_amqp_header(&m->properties, "x-orderq-outbox-id");
    int64_t id;
    for (size_t k = 0; v != NULL && oq_amqp_field_int(v, &id) == 0 && k < rs->n; k++)
        if (rs->r[k].id == id)
            rs->r[k].returned = 1;
    oq_warn("an outbox event reached no queue (routing key %.*s); it stays in the outbox",
            (int)why->routing_key.len, (const char *)why->routing_key.bytes);
}

/* stopping: between rounds, every publish confirmed (or the link was
 * dropped when one was not), so it is closed politely; else it failed. */
static void link_close_broker(struct link *l, int stopping)
{
    oq_publisher_free(l->pub);
    l->pub = NULL;
    if (stopping)
        oq_broker_close_stopping(l->b);
    else
        oq_broker_drop(l->b, 1);
    l->b = NULL;
}

static void link_close(struct link *l)
{
    link_close_broker(l, 1);
    oq_db_close(l->db);
    l->db = NULL;
}

/* Whether this connection's relay may keep its rows locked while it
 * publishes them, or must claim them in a commit first. Not on Galera (a
 * row lock holds on one node only); and only once the server ends a
 * transaction left idle as long as a claim would last, so that a relay
 * that hangs mid-round (a frozen host, a stopped process, a send blocked
 * by a broker alarm) frees its rows as a claim would lapse. A server
 * without idle_transaction_timeout (MySQL, MariaDB before 10.3) gets
 * claims. */
static int can_hold_locks(struct link *l)
{
    if (oq_db_is_galera(l->db))
        return 0;
    char sql[80];
    snprintf(sql, sizeof(sql), "SET SESSION idle_transaction_timeout = %lld",
             (long long)(l->cfg->connect_timeout_ms + 999) / 1000 + CLAIM_S);
    if (oq_db_exec(l->db, sql) != 0) {
        oq_debug("outbox relay: claiming rows (%s)", oq_db_error(l->db));
        return 0;
    }
    return 1;
}

/* Open what is closed. Returns 0, OQ_EDB (MySQL) or another OQ_E* (RabbitMQ). */
static int link_open(struct link *l, char *err, size_t errlen)
{
    int rc = 0;
    if (l->db == NULL) {
        if (oq_db_reopen(l->cfg->mysql_url, l->cfg->connect_timeout_ms, &l->db_tries, &l->db, err,
                         errlen) != 0)
            return OQ_EDB;
        l->hold_locks = can_hold_locks(l);
    }
    struct oq_publisher_callbacks cb = {on_settled, on_returned, &l->rows};
    if (l->b == NULL) {
        rc = oq_publisher_connect(l->cfg, "relay", 1, RELAY_BATCH, 1, &cb, &l->b, &l->pub, err,
                                  errlen);
        if (rc == OQ_EDB)
            rc = OQ_EBROKER;
    }
    return rc;
}

/* After a failure: a lost broker closes the broker side only, so a MySQL
 * connection that works is kept and orderq_reconnects_total{peer=
 * "database"} counts the times MySQL itself failed us. */
static void link_fail(struct link *l, int rc)
{
    link_close_broker(l, 0);
    if (rc == OQ_EDB) {
        oq_db_close(l->db);
        l->db = NULL;
    } else if (l->db != NULL) {
        oq_db_rollback(l->db); /* nothing is open after a broker failure; to be sure */
    }
}

/* Publish the rows read, then wait for their confirms. Returns 0,
 * OQ_ETIMEOUT (a confirm still missing after connect_timeout_ms) or
 * OQ_EBROKER. */
static int publish_rows(struct link *l)
{
    struct rows *rs = &l->rows;
    rs->first_seq = oq_publisher_next_seq(l->pub);
    for (size_t i = 0; i < rs->n; i++) {
        struct row *r = &rs->r[i];
        amqp_table_entry_t h = {.key = amqp_cstring_bytes("x-orderq-outbox-id"),
                                .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = r->id}};
        amqp_basic_properties_t p;
        memset(&p, 0, sizeof(p));
        p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                   AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG;
        p.content_type = amqp_cstring_bytes("application/json");
        p.delivery_mode = 2;
        p.message_id = amqp_cstring_bytes(r->event_identifier);
        p.type = amqp_cstring_bytes(r->event_code);
        p.headers = (amqp_table_t){1, &h};
        const char *exchange = r->exchange[0] ? r->exchange : l->cfg->shop_exchange;
        if (oq_publish(l->pub, exchange, r->routing_key, 1, &p, r->body, strlen(r->body), NULL) !=
            0)
            return OQ_EBROKER;
    }
    int rc = oq_publisher_wait(l->pub, l->cfg->connect_timeout_ms);
    return rc == 0 || rc == OQ_ETIMEOUT ? rc : OQ_EBROKER;
}

/* UPDATE outbox SET <set> for the rows pick() takes, in one statement.
 * *n: how many it named. Returns 0, OQ_ENOMEM or as oq_db_execute. */
static int update_rows(struct link *l, const char *set, int (*pick)(const struct row *), size_t *n)
{
    struct rows *rs = &l->rows;
    size_t len = strlen(set) + 40 + rs->n * 2, used, k = 0;
    char *sql = malloc(len);
    struct oq_db_param *p = calloc(rs->n + 1, sizeof(*p));
    int rc = OQ_ENOMEM;
    *n = 0;
    if (sql == NULL || p == NULL)
        goto out;
    used = (size_t)snprintf(sql, len, "UPDATE outbox SET %s WHERE id IN (", set);
    for (size_t i = 0; i < rs->n; i++)
        if (pick(&rs->r[i])) {
            used += (size_t)snprintf(sql + used, len - used, "%s?", k ? "," : "");
            p[k++] = OQ_INT(rs->r[i].id);
        }
    snprintf(sql + used, len - used, ")");
    rc = k == 0 ? 0 : oq_db_execute(l->db, sql, p, k, NULL);
    if (rc == 0)
        *n = k;
out:
    free(sql);
    free(p);
    return rc;
}

static int any_row(const struct row *r)
{
    (void)r;
    return 1;
}

static int confirmed(const struct row *r)
{
    return r->acked && !r->returned;
}

/* Take the rows read before publishing any, in a transaction of its own:
 * with relays on several Galera nodes, SKIP LOCKED locks a row on one
 * node only, and both would publish it; committed first, the second
 * claim fails certification (1213) and is redone without them. A relay
 * that dies holding a claim leaves its rows to others after CLAIM_S. */
static int claim_rows(struct link *l, char *err, size_t errlen)
{
    size_t n;
    if (update_rows(l, "next_attempt_at = NOW(6) + INTERVAL " TEXT(CLAIM_S) " SECOND", any_row,
                    &n) != 0 ||
        oq_db_exec(l->db, "COMMIT") != 0) {
        snprintf(err, errlen, "claiming outbox rows: %s", oq_db_error(l->db));
        return OQ_EDB;
    }
    return 0;
}

/* The broker failed us: what was claimed and not confirmed is free again
 * at once (best effort: else it waits out the claim). */
static void release_rows(struct link *l)
{
    size_t n;
    if (update_rows(l, "next_attempt_at = NULL", any_row, &n) != 0)
        oq_warn("outbox relay: releasing %zu claimed rows: %s (published %d s later)", l->rows.n,
                oq_db_error(l->db), CLAIM_S);
}

/* Mark the confirmed rows in one statement. */
static int mark_published(struct link *l, size_t *marked, char *err, size_t errlen)
{
    int rc = update_rows(l, "published_at = NOW(6), publish_attempts = publish_attempts + 1",
                         confirmed, marked);
    if (rc != 0)
        snprintf(err, errlen, "marking outbox rows published: %s",
                 rc == OQ_ENOMEM ? "out of memory" : oq_db_error(l->db));
    return rc;
}

/* Seconds until a failed row is tried again, doubling with its attempts.
 * A nack is the broker saying "not now" (a full reject-publish queue, a
 * quorum queue electing its leader while a node is down): seconds. A
 * return is a topology mistake no retry fixes soon: minutes. */
static long long retry_after_s(int returned, long long attempts)
{
    long long first = returned ? RETURN_FIRST_S : NACK_FIRST_S;
    long long max = returned ? RETURN_MAX_S : NACK_MAX_S;
    long long s = first << (attempts < 0 ? 0 : attempts > 12 ? 12 : attempts);
    return s < max ? s : max;
}

/* Rows the broker refused or no queue took: try again later, each time
 * later, with the reason kept and logged. */
static int defer_failed(struct link *l, char *err, size_t errlen)
{
    for (size_t i = 0; i < l->rows.n; i++) {
        const struct row *r = &l->rows.r[i];
        if (r->acked && !r->returned)
            continue;
        const char *why = r->returned ? "no queue is bound for this exchange and routing key"
                                      : "the broker refused it (nack)";
        long long after = retry_after_s(r->returned, r->attempts);
        struct oq_db_param p[] = {OQ_STR(why), OQ_INT(after * 1000000), OQ_INT(r->id)};
        if (oq_db_execute(l->db,
                          "UPDATE outbox SET publish_attempts = publish_attempts + 1,"
                          " last_error = ?, next_attempt_at = NOW(6) + INTERVAL ? MICROSECOND"
                          " WHERE id = ?",
                          p, 3, NULL) != 0) {
            snprintf(err, errlen, "deferring an outbox row: %s", oq_db_error(l->db));
            return OQ_EDB;
        }
        oq_log(OQ_LOG_WARN, (&(struct oq_log_fields){.event_identifier = r->event_identifier}),
               "outbox row %lld (%s, routing key %s): %s; attempt %lld, trying again in %lld s%s",
               r->id, r->event_code, r->routing_key, why, r->attempts + 1, after,
               r->returned ? " (bind a queue, or fix the row's routing key)"
                           : " (a full queue that rejects publishes, or a queue without a leader)");
    }
    return 0;
}

/* A database failure before anything was published: OQ_EAGAIN when a
 * redo may pass (a deadlock, or on Galera another node's claim: 1213),
 * else OQ_EDB. */
static int unpublished_failure(struct link *l)
{
    return oq_db_last_class(l->db) == OQ_DB_RETRY ? OQ_EAGAIN : OQ_EDB;
}

/* One round: take up to RELAY_BATCH rows, publish, mark. Returns the rows
 * marked (>= 0) or an OQ_E* code (OQ_EAGAIN: redo it now). With hold_locks the rows stay locked
 * while they are published and are marked in the same transaction: one
 * UPDATE and one commit a round (READ COMMITTED takes no gap locks, so
 * consumers go on inserting). Else they are first claimed in a commit of
 * their own (claim_rows). */
static long relay_batch(struct link *l, char *err, size_t errlen)
{
    size_t marked = 0;
    int rc, claim = !l->hold_locks;
    err[0] = '\0'; /* not the last round's reason */
    rows_clear(&l->rows);
    if (oq_db_exec(l->db, "START TRANSACTION") != 0)
        goto db_fail;
    rc = oq_db_query_rows(l->db,
                          "SELECT id, exchange_name, routing_key, event_code, event_identifier,"
                          " body, publish_attempts FROM outbox WHERE published_at IS NULL AND"
                          " (next_attempt_at IS NULL OR next_attempt_at <= NOW(6))"
                          " ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
                          NULL, 0, on_row, &l->rows);
    if (rc != 0)
        goto db_fail;
    if (l->rows.n == 0) {
        oq_db_rollback(l->db);
        return 0;
    }
    if (claim && claim_rows(l, err, errlen) != 0) {
        rc = unpublished_failure(l);
        oq_db_rollback(l->db);
        return rc;
    }
    if ((rc = publish_rows(l)) != 0) {
        if (rc == OQ_ETIMEOUT)
            snprintf(err, errlen,
                     "publishing outbox events: the broker did not confirm them within "
                     "connect_timeout_ms (%lld ms)",
                     (long long)l->cfg->connect_timeout_ms);
        else
            snprintf(err, errlen, "publishing outbox events: %s",
                     oq_broker_error(l->b)[0] ? oq_broker_error(l->b) : "connection lost");
        if (claim)
            release_rows(l);
        else
            oq_db_rollback(l->db); /* the locks go, the rows are free again */
        return OQ_EBROKER;
    }
    /* From here a failure is not redone at once: the rows are published
     * (and, without a claim, free again), a redo would publish them again. */
    if ((claim && oq_db_exec(l->db, "START TRANSACTION") != 0) ||
        mark_published(l, &marked, err, errlen) != 0 || defer_failed(l, err, errlen) != 0 ||
        oq_db_exec(l->db, "COMMIT") != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "marking outbox rows published: %s", oq_db_error(l->db));
        oq_db_rollback(l->db);
        return OQ_EDB; /* published, not marked: published again later, deduped then */
    }
    oq_metric_add(OQ_M_OUTBOX_PUBLISHED, (int64_t)marked);
    rows_clear(&l->rows);
    return (long)marked;
db_fail:
    snprintf(err, errlen, "reading the outbox: %s", oq_db_error(l->db));
    rc = unpublished_failure(l);
    oq_db_rollback(l->db);
    return rc;
}

/* Relay until nothing is left; connection failures close the link so the
 * next call opens it again. Returns rows published, or < 0 after a failure. */
static long relay_all(struct link *l)
{
    char err[OQ_ERRLEN * 2] = "";
    long total = 0, n = 0;
    if ((n = link_open(l, err, sizeof(err))) != 0)
        goto fail;
    if (oq_publisher_keepalive(l->pub, err, sizeof(err)) != 0) {
        n = OQ_EBROKER;
        goto fail;
    }
    for (int redone = 0;;) {
        n = relay_batch(l, err, sizeof(err));
        if (n == OQ_EAGAIN && redone++ < 10) {
            /* relays and consumers writing the outbox at once: normal, redo */
            oq_debug("outbox relay: %s; retrying", err);
            continue;
        }
        if (n < 0)
            goto fail;
        total += n;
        if (n < RELAY_BATCH / 2 || *l->stop)
            break;
    }
    l->failures = 0;
    return total;
fail:
    l->failures++;
    oq_error("outbox relay: %s", err[0] ? err : "failed");
    link_fail(l, (int)n);
    return -1;
}

int oq_relay_run(const struct oq_config *cfg, volatile sig_atomic_t *stop, int once,
                 long long *published, char *err, size_t errlen)
{
    struct link l = {.cfg = cfg, .stop = stop};
    *published = 0;
    while (!*stop) {
        long n = relay_all(&l);
        /* /readyz: this pass reached RabbitMQ (a live publisher) and MySQL
         * (the outbox read); only the standalone relay owns the gauge, a
         * consumer's relay thread leaves it to the consuming loop */
        oq_metric_set(OQ_M_READY, n >= 0);
        if (n > 0)
            *published += n;
        if (once && n == 0)
            break;
        if (once && n < 0) {
            snprintf(err, errlen, "the outbox could not be relayed (see the log above)");
            rows_clear(&l.rows);
            link_close(&l);
            return OQ_EBROKER;
        }
        oq_nap(n < 0 ? oq_backoff_ms(l.failures) : 250, stop);
    }
    rows_clear(&l.rows);
    link_close(&l);
    return 0;
}

struct oq_relay {
    struct link l;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken;
    volatile sig_atomic_t exit; /* set under mu; read by relay_all as l.stop */
};

static void *relay_main(void *arg)
{
    struct oq_relay *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        if (!r->woken && !r->exit) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            /* poll too (rows from a consumer that died), and often enough
             * to keep the idle broker connection's heartbeats going */
            int64_t ms = r->l.cfg->heartbeat_s > 0 && r->l.cfg->heartbeat_s < 3
                             ? r->l.cfg->heartbeat_s * 1000 / 3
                             : 1000;
            until.tv_nsec += (long)(ms % 1000) * 1000000L;
            until.tv_sec += (time_t)(ms / 1000) + until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&r->cv, &r->mu, &until);
        }
        int leave = r->exit;
        r->woken = 0;
        pthread_mutex_unlock(&r->mu);
        if (leave)
            break;
        if (relay_all(&r->l) < 0)
            oq_nap(oq_backoff_ms(r->l.failures), &r->exit);
    }
    rows_clear(&r->l.rows);
    link_close(&r->l);
    return NULL;
}

int oq_relay_start(const struct oq_config *cfg, struct oq_relay **out)
{
    struct oq_relay *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (r == NULL)
        return OQ_ENOMEM;
    r->l.cfg = cfg;
    r->l.stop = &r->exit;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, relay_main, r) != 0) {
        pthread_cond_destroy(&r->cv);
        pthread_mutex_destroy(&r->mu);
        free(r);
        return OQ_ENOMEM;
    }
    *out = r;
    return 0;
}

void oq_relay_wake(void *relay)
{
    struct oq_relay *r = relay;
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->woken = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void oq_relay_stop(struct oq_relay *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->exit = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static int on_backlog(void *ctx, const char *const *v, unsigned n)
{
    int64_t *out = ctx;
    for (unsigned i = 0; i < n && i < 2; i++)
        out[i] = v[i] != NULL ? strtoll(v[i], NULL, 10) : 0;
    return 0;
}

int oq_outbox_backlog(struct oq_db *db, int64_t *rows, int64_t *oldest_s)
{
    int64_t out[2] = {0, 0};
    int rc =
        oq_db_query_rows(db,
                         "SELECT COUNT(*), COALESCE((SELECT TIMESTAMPDIFF(SECOND, created_at,"
                         " NOW(6)) FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1),"
                         " 0) FROM outbox WHERE published_at IS NULL",
                         NULL, 0, on_backlog, out);
    *rows = out[0];
    *oldest_s = out[1];
    return rc == 0 ? 0 : OQ_EDB;
}
