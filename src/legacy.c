/* legacy.c - relay a Magento coupon_queue table to the broker, row by row once */
#include "orderq/legacy.h"

#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/json.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/phpser.h"
#include "orderq/publish.h"

#define LEGACY_BATCH 200
#define REASON_MAX   255 /* execute_result is varchar(255) */

/* Rows waiting: not executed, and not given up by us with a reason. */
#define WAITING "is_executed = 0 AND COALESCE(execute_result, '') NOT LIKE 'orderq: %%'"

struct row {
    long long id;
    char *event_code;
    char *body; /* the envelope; NULL when the row cannot become one */
    char reason[REASON_MAX + 1];
    uint64_t seq; /* its publish sequence number; 0: not published */
    int acked, returned;
};

struct bridge {
    const struct oq_config *cfg;
    char table[70]; /* quoted: `name` */
    struct oq_db *db;
    struct oq_broker *b;
    struct oq_publisher *pub;
    struct row rows[LEGACY_BATCH];
    size_t n;
    int failures;
};

int oq_legacy_table_name_ok(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n <= 64 &&
           strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_") == n;
}

static void rows_clear(struct bridge *br)
{
    for (size_t i = 0; i < br->n; i++) {
        free(br->rows[i].event_code);
        free(br->rows[i].body);
    }
    br->n = 0;
}

/* The JSON envelope for one row, or NULL with the reason in r->reason. */
static char *envelope(struct row *r, const char *identifier, const char *data,
                      const char *created_at)
{
    char why[200] = "";
    if (r->event_code[0] == '\0' || identifier[0] == '\0') {
        snprintf(r->reason, sizeof(r->reason), "orderq: the row has no %s",
                 r->event_code[0] == '\0' ? "event_code" : "event_identifier");
        return NULL;
    }
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    yajl_gen_map_open(g);
    oq_json_gen_str(g, "event_code");
    oq_json_gen_str(g, r->event_code);
    oq_json_gen_str(g, "event_identifier");
    oq_json_gen_str(g, identifier);
    if (strncmp(created_at, "0000", 4) != 0) { /* the column's zero default: no time */
        oq_json_gen_str(g, "created_at");
        oq_json_gen_str(g, created_at);
    }
    oq_json_gen_str(g, "event_data");
    if (oq_phpser_to_json(data, strlen(data), g, why, sizeof(why)) != 0) {
        snprintf(r->reason, sizeof(r->reason), "orderq: %s", why);
        yajl_gen_free(g);
        return NULL;
    }
    yajl_gen_map_close(g);
    return oq_json_gen_finish(g);
}

/* columns: id, event_code, event_identifier, event_data, created_at */
static int on_row(void *ctx, const char *const *v, unsigned n)
{
    struct bridge *br = ctx;
    if (n < 5 || br->n == LEGACY_BATCH)
        return 0;
    struct row *r = &br->rows[br->n++];
    memset(r, 0, sizeof(*r));
    r->id = strtoll(v[0], NULL, 10);
    if ((r->event_code = strdup(v[1] ? v[1] : "")) == NULL)
        return 1;
    r->body = envelope(r, v[2] ? v[2] : "", v[3] ? v[3] : "", v[4] ? v[4] : "0000");
    return r->body == NULL && r->reason[0] == '\0'; /* out of memory */
}

static void on_settled(void *ctx, uint64_t seq, enum oq_confirm outcome)
{
    struct bridge *br = ctx;
    for (size_t i = 0; i < br->n; i++)
        if (br->rows[i].seq == seq)
            br->rows[i].acked = outcome == OQ_CONFIRM_ACK;
}

static void on_returned(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *m)
{
    struct bridge *br = ctx;
    const amqp_field_value_t *v = oq_amqp_header(&m->properties, "x-orderq-legacy-id");
    int64_t id;
    for (size_t k = 0; v != NULL && oq_amqp_field_int(v, &id) == 0 && k < br->n; k++)
        if (br->rows[k].id == id)
            br->rows[k].returned = 1;
    oq_warn("legacy bridge: an event reached no queue (routing key %.*s)",
            (int)why->routing_key.len, (const char *)why->routing_key.bytes);
}

/* failed: after a failed pass, the connection is only freed (it may not
 * answer); else between passes, every publish confirmed: closed politely. */
static void bridge_close(struct bridge *br, int failed)
{
    oq_publisher_free(br->pub);
    br->pub = NULL;
    if (failed)
        oq_broker_drop(br->b, 1);
    else
        oq_broker_close_stopping(br->b);
    br->b = NULL;
    oq_db_close(br->db);
    br->db = NULL;
}

static int bridge_open(struct bridge *br, char *err, size_t errlen)
{
    int rc = 0;
    if (br->db == NULL)
        rc = oq_db_open(br->cfg->mysql_url, br->cfg->connect_timeout_ms, 0, &br->db, err, errlen);
    struct oq_publisher_callbacks cb = {on_settled, on_returned, br};
    if (rc == 0 && br->b == NULL)
        rc = oq_publisher_connect(br->cfg, "legacy bridge", 1, LEGACY_BATCH, 1, &cb, &br->b,
                                  &br->pub, err, errlen);
    /* Between polls the connection is idle: keep its heartbeats going. */
    if (rc == 0)
        rc = oq_publisher_keepalive(br->pub, err, errlen);
    return rc;
}

static int publish_rows(struct bridge *br)
{
    for (size_t i = 0; i < br->n; i++) {
        struct row *r = &br->rows[i];
        if (r->body == NULL)
            continue;
        amqp_table_entry_t h = {.key = amqp_cstring_bytes("x-orderq-legacy-id"),
                                .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = r->id}};
        amqp_basic_properties_t p;
        memset(&p, 0, sizeof(p));
        p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                   AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_HEADERS_FLAG;
        p.content_type = amqp_cstring_bytes("application/json");
        p.delivery_mode = 2;
        p.type = amqp_cstring_bytes(r->event_code);
        p.headers = (amqp_table_t){1, &h};
        if (oq_publish(br->pub, br->cfg->shop_exchange, r->event_code, 1, &p, r->body,
                       strlen(r->body), &r->seq) != 0)
            return OQ_EBROKER;
    }
    return oq_publisher_wait(br->pub, br->cfg->connect_timeout_ms) == 0 ? 0 : OQ_EBROKER;
}

/* Executed rows marked in one statement; refused rows each get their reason. */
static int mark_rows(struct bridge *br, long long *published, long long *refused)
{
    char sql[200 + LEGACY_BATCH * 2];
    struct oq_db_param p[LEGACY_BATCH];
    size_t used = (size_t)snprintf(sql, sizeof(sql),
                                   "UPDATE %s SET is_executed = 1, executed_at = NOW(),"
                                   " execute_result = 'orderq: published' WHERE id IN (",
                                   br->table),
           k = 0;
    *published = *refused = 0;
    for (size_t i = 0; i < br->n; i++) {
        struct row *r = &br->rows[i];
        if (r->body != NULL && r->acked && !r->returned) {
            used += (size_t)snprintf(sql + used, sizeof(sql) - used, "%s?", k ? "," : "");
            p[k++] = OQ_INT(r->id);
            continue;
        }
        if (r->returned)
            snprintf(r->reason, sizeof(r->reason),
                     "orderq: no queue is bound for routing key %.150s; clear execute_result to "
                     "send it again",
                     r->event_code);
        if (r->reason[0] == '\0') /* nacked: left as it is, taken again next round */
            continue;
        struct oq_db_param q[] = {OQ_STR(r->reason), OQ_INT(r->id)};
        char one[160];
        snprintf(one, sizeof(one), "UPDATE %s SET execute_result = ? WHERE id = ?", br->table);
        if (oq_db_execute(br->db, one, q, 2, NULL) != 0)
            return OQ_EDB;
        oq_warn("legacy bridge: row %lld left unexecuted: %s", r->id, r->reason);
        (*refused)++;
    }
    snprintf(sql + used, sizeof(sql) - used, ")");
    if (k > 0 && oq_db_execute(br->db, sql, p, k, NULL) != 0)
        return OQ_EDB;
    *published = (long long)k;
    return 0;
}

/* A statement on the table failed: roll back and say why. A table that
 * does not exist is a wrong --legacy-table, not an outage to wait out. */
static long db_failed(struct bridge *br, char *err, size_t errlen)
{
    unsigned code = oq_db_errno(br->db);
    snprintf(err, errlen, "the legacy table %s: %s", br->table, oq_db_error(br->db));
    oq_db_rollback(br->db);
    if (code != ER_NO_SUCH_TABLE)
        return OQ_EDB;
    snprintf(err, errlen, "--legacy-table: there is no table %s in the database of mysql_url",
             br->table);
    return OQ_ECONFIG;
}

/* One round over up to LEGACY_BATCH rows. Returns the rows handled (>= 0)
 * or an OQ_E* code with err set. */
static long bridge_batch(struct bridge *br, struct oq_legacy_progress *pr, char *err, size_t errlen)
{
    char sql[400];
    long long published = 0, refused = 0;
    rows_clear(br);
    snprintf(sql, sizeof(sql),
             "SELECT id, event_code, event_identifier, event_data,"
             " DATE_FORMAT(created_at, '%%Y-%%m-%%dT%%H:%%i:%%sZ') FROM %s WHERE " WAITING
             " ORDER BY id LIMIT %d FOR UPDATE SKIP LOCKED",
             br->table, LEGACY_BATCH);
    if (oq_db_exec(br->db, "START TRANSACTION") != 0 ||
        oq_db_query_rows(br->db, sql, NULL, 0, on_row, br) != 0)
        return db_failed(br, err, errlen);
    if (br->n == 0) {
        oq_db_rollback(br->db);
        return 0;
    }
    if (publish_rows(br) != 0) {
        snprintf(err, errlen, "publishing legacy events: %s",
                 oq_broker_error(br->b)[0] ? oq_broker_error(br->b) : "connection lost");
        oq_db_rollback(br->db);
        return OQ_EBROKER;
    }
    if (mark_rows(br, &published, &refused) != 0 || oq_db_exec(br->db, "COMMIT") != 0)
        return db_failed(br, err, errlen); /* published, not marked: again later, deduped */
    pr->published += published;
    pr->refused += refused;
    if (pr->update != NULL)
        pr->update(pr, 0);
    return (long)(published + refused);
}

/* The rows waiting now: the progress bar's total. */
static long count_waiting(struct bridge *br, long long *total, char *err, size_t errlen)
{
    char sql[200];
    int is_null;
    snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM %s WHERE " WAITING, br->table);
    return oq_db_query_int(br->db, sql, NULL, 0, total, &is_null) == 0 ? 0
                                                                       : db_failed(br, err, errlen);
}

int oq_legacy_relay_run(const struct oq_config *cfg, const char *table, volatile sig_atomic_t *stop,
                        int once, struct oq_legacy_progress *progress, char *err, size_t errlen)
{
    struct bridge *br = calloc(1, sizeof(*br));
    int rc = 0;
    if (br == NULL) {
        snprintf(err, errlen, "out of memory");
        return OQ_ENOMEM;
    }
    br->cfg = cfg;
    snprintf(br->table, sizeof(br->table), "`%s`", table);
    int counted = progress->update == NULL; /* the total only matters to a progress bar */
    while (!*stop) {
        long n = bridge_open(br, err, errlen);
        if (n == 0 && !counted)
            counted = (n = count_waiting(br, &progress->total, err, errlen)) == 0;
        while (n >= 0 && !*stop && (n = bridge_batch(br, progress, err, errlen)) == LEGACY_BATCH)
            ;
        if (n == OQ_ECONFIG || (once && n < 0)) {
            rc = (int)n;
            break;
        }
        oq_metric_set(OQ_M_READY, n >= 0); /* /readyz: this pass reached both */
        if (n >= 0 && once)
            break;
        if (n < 0) {
            oq_error("legacy bridge: %s", err);
            bridge_close(br, 1);
        }
        br->failures = n < 0 ? br->failures + 1 : 0;
        oq_nap(n < 0 ? oq_backoff_ms(br->failures) : 1000, stop);
    }
    if (progress->update != NULL)
        progress->update(progress, 1);
    rows_clear(br);
    bridge_close(br, rc != 0); /* --once after a failed pass */
    free(br);
    return rc;
}
