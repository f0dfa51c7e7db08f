/* status.c - one look at a running orderq: queues, ledger, dead letters, outbox */
#include "orderq/status.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/deadletter.h"
#include "orderq/json.h"
#include "orderq/ledger.h"
#include "orderq/relay.h"
#include "orderq/topology.h"
#include "orderq/url.h"

const char *const oq_status_states[OQ_STATUS_N_STATES] = {"done", "sending", "sent", "unknown",
                                                          "failed"};

/* ---- formatting helpers ---------------------------------------------------- */

const char *oq_status_count(int64_t n, char *buf, size_t buflen)
{
    char digits[32];
    if (buflen == 0)
        return buf;
    if (n < 0) {
        snprintf(buf, buflen, "-");
        return buf;
    }
    int len = snprintf(digits, sizeof(digits), "%" PRId64, n);
    size_t o = 0;
    for (int i = 0; i < len && o + 1 < buflen; i++) {
        if (i > 0 && (len - i) % 3 == 0 && o + 2 < buflen)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

const char *oq_status_age(int64_t s, char *buf, size_t buflen)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(buf, buflen, "%" PRId64 "s", s);
    else if (s < 3600)
        snprintf(buf, buflen, "%" PRId64 "m %02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, buflen, "%" PRId64 "h %02" PRId64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, buflen, "%" PRId64 "d %02" PRId64 "h", s / 86400, s % 86400 / 3600);
    return buf;
}

/* Control characters (C0, DEL, and C1 as UTF-8) become spaces of the same
 * byte length: text from the database (an error, a handler name) must not
 * move the cursor or recolour the operator's terminal. */
static void printable(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            *p = ' ';
        else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            *p++ = ' ';
            *p = ' ';
        }
    }
}

const char *oq_status_fit(const char *text, size_t width, char *buf, size_t buflen)
{
    size_t len = strlen(text);
    if (buflen == 0)
        return buf;
    if (width + 1 > buflen)
        width = buflen - 1;
    if (len <= width) {
        memcpy(buf, text, len + 1);
        printable(buf);
        return buf;
    }
    size_t keep = width > 3 ? width - 3 : 0;
    while (keep > 0 && ((unsigned char)text[keep] & 0xC0) == 0x80)
        keep--; /* text[keep] would be the middle of a character */
    memcpy(buf, text, keep);
    snprintf(buf + keep, buflen - keep, "%.*s", (int)(width - keep), "...");
    printable(buf);
    return buf;
}

/* ---- the broker: queues from the plan, counts from the management API ------ */

static const char *queue_kind(const struct oq_config *cfg, const struct oq_topo_queue *q)
{
    for (size_t i = 0; i < q->nargs; i++)
        if (strcmp(q->args[i].key, "x-message-ttl") == 0)
            return "delay";
    if (strcmp(q->name, cfg->dead_queue) == 0 || q->event_code == NULL) {
        /* The plan's queues without an event code are the webhook queue and
         * the dead-letter queues. */
        char *held = oq_dead_letter_held_queue(cfg);
        int dead = strcmp(q->name, cfg->dead_queue) == 0 || (held && strcmp(q->name, held) == 0);
        free(held);
        if (dead)
            return "dead";
    }
    return "work";
}

static int vhost_of(const struct oq_config *cfg, char *buf, size_t len, char *err, size_t errlen)
{
    struct oq_amqp_url u;
    if (oq_amqp_url_parse(cfg->amqp_url, &u, err, errlen) != 0)
        return OQ_ECONFIG;
    snprintf(buf, len, "%s", u.vhost);
    oq_amqp_url_clear(&u);
    return 0;
}

static int read_queues(const struct oq_config *cfg, struct oq_status *st)
{
    struct oq_topology *t = NULL;
    struct oq_queue_counts *c = NULL;
    char *err = st->broker_error;
    size_t errlen = sizeof(st->broker_error);
    int rc = vhost_of(cfg, st->vhost, sizeof(st->vhost), err, errlen);
    if (rc == 0)
        rc = oq_topology_plan(cfg, &t, err, errlen);
    if (rc != 0)
        goto out;
    rc = OQ_ENOMEM;
    c = calloc(t->n_queues, sizeof(*c));
    st->queues = calloc(t->n_queues, sizeof(*st->queues));
    if (c == NULL || st->queues == NULL)
        goto out;
    rc = oq_topology_queue_counts(cfg, t, st->vhost, c, err, errlen);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < t->n_queues; i++, st->n_queues++) {
        struct oq_status_queue *q = &st->queues[i];
        if ((q->name = strdup(c[i].name)) == NULL) {
            rc = OQ_ENOMEM;
            goto out;
        }
        q->kind = queue_kind(cfg, &t->queues[i]);
        q->exists = c[i].exists;
        q->ready = c[i].ready;
        q->unacked = c[i].unacked;
        q->consumers = c[i].consumers;
    }
out:
    if (rc == OQ_ENOMEM)
        snprintf(err, errlen, "out of memory");
    free(c);
    oq_topology_free(t);
    return rc;
}

/* ---- the database: a few GROUP BY queries ---------------------------------- */

static int64_t num(const char *v)
{
    char *end = NULL;
    long long n = v ? strtoll(v, &end, 10) : 0;
    return v && end != v ? (int64_t)n : 0;
}

/* Grow *items (of size each) by one zeroed slot at index *n. */
static void *grow(void *items, size_t *n, size_t size)
{
    char *more = realloc(items, (*n + 1) * size);
    if (more != NULL)
        memset(more + *n * size, 0, size);
    return more;
}

/* handler, state, count: rows arrive ordered by handler. */
static int on_ledger_row(void *ctx, const char *const *v, unsigned n)
{
    struct oq_status *st = ctx;
    if (n < 3 || v[0] == NULL || v[1] == NULL)
        return 0;
    if (st->n_handlers == 0 || strcmp(st->handlers[st->n_handlers - 1].handler, v[0]) != 0) {
        struct oq_status_handler *h = grow(st->handlers, &st->n_handlers, sizeof(*h));
        if (h == NULL)
            return 1;
        st->handlers = h;
        if ((h[st->n_handlers].handler = strdup(v[0])) == NULL)
            return 1;
        st->n_handlers++;
    }
    for (int s = 0; s < OQ_STATUS_N_STATES; s++)
        if (strcmp(v[1], oq_status_states[s]) == 0)
            st->handlers[st->n_handlers - 1].rows[s] = num(v[2]);
    return 0;
}

static int on_class_row(void *ctx, const char *const *v, unsigned n)
{
    struct oq_status *st = ctx;
    struct oq_status_class *c = grow(st->classes, &st->n_classes, sizeof(*c));
    if (c == NULL)
        return 1;
    st->classes = c;
    c += st->n_classes;
    if ((c->error_class = strdup(n > 0 && v[0] ? v[0] : "")) == NULL)
        return 1;
    c->count = n > 1 ? num(v[1]) : 0;
    st->dead_letters += c->count;
    st->n_classes++;
    return 0;
}

/* fingerprint, error_class, count, newest, queues */
static int on_fingerprint_row(void *ctx, const char *const *v, unsigned n)
{
    struct oq_status *st = ctx;
    if (n < 5 || st->n_top >= OQ_STATUS_TOP_FINGERPRINTS)
        return 0;
    struct oq_status_fingerprint *f = &st->top[st->n_top++];
    f->fingerprint = strdup(v[0] ? v[0] : "");
    f->error_class = strdup(v[1] ? v[1] : "");
    f->count = num(v[2]);
    f->newest = strdup(v[3] ? v[3] : "");
    f->queues = strdup(v[4] ? v[4] : "");
    return !f->fingerprint || !f->error_class || !f->newest || !f->queues;
}

/* Every query reads committed rows only and takes no locks (READ
 * COMMITTED, plain SELECT): safe beside running consumers. */
static const struct {
    const char *what, *sql;
    oq_db_row_fn on_row;
} db_reads[] = {
    /* A scan of idx_event_ledger_state_lease, which holds handler too (the
     * primary key): one pass, a handful of groups. */
    {"counting ledger rows by handler and state",
     "SELECT handler, state, COUNT(*) FROM event_ledger GROUP BY handler, state"
     " ORDER BY handler, state",
     on_ledger_row},
    {"finding the commonest dead-letter fingerprints",
     "SELECT fingerprint, error_class, COUNT(*),"
     " DATE_FORMAT(MAX(dead_at), '%Y-%m-%dT%H:%i:%sZ'),"
     " GROUP_CONCAT(DISTINCT queue ORDER BY queue SEPARATOR ',')"
     " FROM dead_letter WHERE replayed_at IS NULL GROUP BY fingerprint, error_class"
     " ORDER BY COUNT(*) DESC, MAX(dead_at) DESC, fingerprint LIMIT 5",
     on_fingerprint_row},
};

static int read_database(const struct oq_config *cfg, struct oq_status *st)
{
    struct oq_db *db = NULL;
    struct oq_lease_counts leases;
    char err[OQ_ERRLEN];
    int rc = oq_db_open(cfg->mysql_url, cfg->connect_timeout_ms, 0, &db, err, sizeof(err));
    if (rc != 0) {
        snprintf(st->db_error, sizeof(st->db_error), "%s (mysql_url)", err);
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < sizeof(db_reads) / sizeof(db_reads[0]); i++) {
        rc = oq_db_query_rows(db, db_reads[i].sql, NULL, 0, db_reads[i].on_row, st);
        if (rc == OQ_EINTR) /* a callback ran out of memory */
            snprintf(st->db_error, sizeof(st->db_error), "out of memory %s", db_reads[i].what);
        else if (rc != 0)
            snprintf(st->db_error, sizeof(st->db_error), "MySQL: %s: %s", db_reads[i].what,
                     oq_db_error(db));
    }
    if (rc == 0 && (rc = oq_dead_letter_classes(db, on_class_row, st)) != 0)
        snprintf(st->db_error, sizeof(st->db_error), "MySQL: counting dead letters by class: %s",
                 rc == OQ_EINTR ? "out of memory" : oq_db_error(db));
    if (rc == 0 && (rc = oq_outbox_backlog(db, &st->outbox_backlog, &st->outbox_oldest_s)) != 0)
        snprintf(st->db_error, sizeof(st->db_error), "MySQL: measuring the outbox backlog: %s",
                 oq_db_error(db));
    if (rc == 0 &&
        (rc = oq_ledger_lease_counts(db, cfg->sweep_after_ms, &leases, err, sizeof(err))) != 0)
        snprintf(st->db_error, sizeof(st->db_error), "MySQL: %s", err);
    if (rc == 0) {
        st->sending_expired = leases.expired;
        for (size_t i = 0; i < st->n_handlers; i++) {
            st->sending += st->handlers[i].rows[1];
            st->unknown += st->handlers[i].rows[3];
        }
    }
    oq_db_close(db);
    return rc == OQ_EINTR ? OQ_ENOMEM : rc;
}

/* ---- collect ------------------------------------------------------------------ */

static void clear_db_sections(struct oq_status *st)
{
    for (size_t i = 0; i < st->n_handlers; i++)
        free(st->handlers[i].handler);
    for (size_t i = 0; i < st->n_classes; i++)
        free(st->classes[i].error_class);
    for (size_t i = 0; i < st->n_top; i++) {
        free(st->top[i].fingerprint);
        free(st->top[i].error_class);
        free(st->top[i].newest);
        free(st->top[i].queues);
    }
    free(st->handlers);
    free(st->classes);
    st->handlers = NULL;
    st->classes = NULL;
    st->n_handlers = st->n_classes = st->n_top = 0;
    st->sending = st->sending_expired = st->unknown = st->dead_letters = 0;
    st->outbox_backlog = st->outbox_oldest_s = 0;
}

static void clear_queues(struct oq_status *st)
{
    for (size_t i = 0; i < st->n_queues; i++)
        free(st->queues[i].name);
    free(st->queues);
    st->queues = NULL;
    st->n_queues = 0;
}

int oq_status_collect(const struct oq_config *cfg, struct oq_status **out)
{
    struct oq_status *st = calloc(1, sizeof(*st));
    time_t now = time(NULL);
    struct tm tm;
    *out = NULL;
    if (st == NULL)
        return OQ_ENOMEM;
    strftime(st->at, sizeof(st->at), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    int rc_broker = read_queues(cfg, st);
    st->broker_ok = rc_broker == 0;
    if (!st->broker_ok)
        clear_queues(st); /* a half-read section would look like the truth */
    int rc_db = read_database(cfg, st);
    st->db_ok = rc_db == 0;
    if (!st->db_ok)
        clear_db_sections(st);
    *out = st;
    return rc_broker != 0 ? rc_broker : rc_db;
}

void oq_status_free(struct oq_status *st)
{
    if (st == NULL)
        return;
    clear_queues(st);
    clear_db_sections(st);
    free(st);
}

/* ---- the screen ---------------------------------------------------------------- */

/* "  unavailable: <why>", the server's words made printable. */
static void print_unavailable(FILE *out, const char *why)
{
    char text[OQ_ERRLEN * 2];
    fprintf(out, "  unavailable: %s\n", oq_status_fit(why, sizeof(text) - 1, text, sizeof(text)));
}

#define NAME_MAX_W 36 /* 2 + 36 + 3 x 12 + 2 = 76 columns */

static void print_queues(const struct oq_status *st, FILE *out)
{
    char a[32], b[32], c[32], name[NAME_MAX_W + 1];
    int w = 20;
    fprintf(out, "\nQUEUES (RabbitMQ management API, vhost %s)\n", st->vhost);
    if (!st->broker_ok) {
        print_unavailable(out, st->broker_error);
        return;
    }
    for (size_t i = 0; i < st->n_queues; i++) {
        size_t len = strlen(st->queues[i].name);
        if ((int)len > w)
            w = len > NAME_MAX_W ? NAME_MAX_W : (int)len;
    }
    fprintf(out, "  %-*s %11s %11s %11s\n", w, "", "ready", "unacked", "consumers");
    for (size_t i = 0; i < st->n_queues; i++) {
        const struct oq_status_queue *q = &st->queues[i];
        oq_status_fit(q->name, (size_t)w, name, sizeof(name));
        if (!q->exists)
            fprintf(out, "  %-*s %11s\n", w, name, "missing");
        else
            fprintf(out, "  %-*s %11s %11s %11s\n", w, name,
                    oq_status_count(q->ready, a, sizeof(a)),
                    oq_status_count(q->unacked, b, sizeof(b)),
                    oq_status_count(q->consumers, c, sizeof(c)));
    }
}

#define HANDLER_MAX_W 20 /* 2 + 20 + 5 x 11 = 77 columns */

static void print_ledger(const struct oq_status *st, FILE *out)
{
    char n[32], m[32], name[HANDLER_MAX_W + 1];
    int w = 7;
    fputs("\nLEDGER (rows by handler and state)\n", out);
    for (size_t i = 0; i < st->n_handlers; i++) {
        size_t len = strlen(st->handlers[i].handler);
        if ((int)len > w)
            w = len > HANDLER_MAX_W ? HANDLER_MAX_W : (int)len;
    }
    fprintf(out, "  %-*s", w, "");
    for (int s = 0; s < OQ_STATUS_N_STATES; s++)
        fprintf(out, " %10s", oq_status_states[s]);
    fputc('\n', out);
    if (st->n_handlers == 0)
        fprintf(out, "  %-*s\n", w, "(none)");
    for (size_t i = 0; i < st->n_handlers; i++) {
        fprintf(out, "  %-*s", w,
                oq_status_fit(st->handlers[i].handler, (size_t)w, name, sizeof(name)));
        for (int s = 0; s < OQ_STATUS_N_STATES; s++)
            fprintf(out, " %10s", oq_status_count(st->handlers[i].rows[s], n, sizeof(n)));
        fputc('\n', out);
    }
    fprintf(out, "  sending %s (lease expired: %s), unknown %s\n",
            oq_status_count(st->sending, n, sizeof(n)),
            oq_status_count(st->sending_expired, m, sizeof(m)),
            oq_status_count(st->unknown, name, sizeof(name)));
}

static void print_dead_letters(const struct oq_status *st, FILE *out)
{
    char n[32], text[80];
    fprintf(out, "\nDEAD LETTERS (not replayed): %s\n",
            oq_status_count(st->dead_letters, n, sizeof(n)));
    for (size_t i = 0; i < st->n_classes; i++)
        fprintf(out, "  %-32s %11s\n",
                oq_status_fit(st->classes[i].error_class, 32, text, sizeof(text)),
                oq_status_count(st->classes[i].count, n, sizeof(n)));
    if (st->n_top > 0)
        fprintf(out, "  top fingerprints:\n  %11s  %-20s  %s\n", "count", "newest", "queues");
    for (size_t i = 0; i < st->n_top; i++) {
        const struct oq_status_fingerprint *f = &st->top[i];
        char when[32];
        snprintf(when, sizeof(when), "%s", f->newest);
        char *t = strchr(when, 'T'), *z = strchr(when, 'Z');
        if (t)
            *t = ' ';
        if (z)
            *z = '\0';
        fprintf(out, "  %11s  %-20s  %s\n", oq_status_count(f->count, n, sizeof(n)), when,
                oq_status_fit(f->queues, 40, text, sizeof(text)));
        fprintf(out, "  %11s  %s\n", "", oq_status_fit(f->fingerprint, 64, text, sizeof(text)));
    }
}

static void print_outbox(const struct oq_status *st, FILE *out)
{
    char n[32], age[32];
    fprintf(out, "\nOUTBOX: %s unpublished", oq_status_count(st->outbox_backlog, n, sizeof(n)));
    if (st->outbox_backlog > 0)
        fprintf(out, ", the oldest %s old", oq_status_age(st->outbox_oldest_s, age, sizeof(age)));
    fputc('\n', out);
}

void oq_status_print_text(const struct oq_status *st, FILE *out)
{
    fprintf(out, "orderq status at %s\n", st->at);
    print_queues(st, out);
    if (!st->db_ok) {
        fputs("\nDATABASE\n", out);
        print_unavailable(out, st->db_error);
        return;
    }
    print_ledger(st, out);
    print_dead_letters(st, out);
    print_outbox(st, out);
}

/* ---- JSON ---------------------------------------------------------------------- */

static void gen_int(yajl_gen g, const char *key, int64_t v)
{
    oq_json_gen_str(g, key);
    if (v < 0)
        yajl_gen_null(g);
    else
        yajl_gen_integer(g, v);
}

static void gen_queues(yajl_gen g, const struct oq_status *st)
{
    oq_json_gen_str(g, "queues");
    if (!st->broker_ok) {
        yajl_gen_null(g);
        return;
    }
    yajl_gen_array_open(g);
    for (size_t i = 0; i < st->n_queues; i++) {
        const struct oq_status_queue *q = &st->queues[i];
        yajl_gen_map_open(g);
        oq_json_gen_kv(g, "name", q->name);
        oq_json_gen_kv(g, "kind", q->kind);
        oq_json_gen_str(g, "exists");
        yajl_gen_bool(g, q->exists);
        gen_int(g, "ready", q->exists ? q->ready : -1);
        gen_int(g, "unacked", q->exists ? q->unacked : -1);
        gen_int(g, "consumers", q->exists ? q->consumers : -1);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}

static void gen_ledger(yajl_gen g, const struct oq_status *st)
{
    oq_json_gen_str(g, "ledger");
    yajl_gen_map_open(g);
    oq_json_gen_str(g, "by_handler");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < st->n_handlers; i++) {
        int64_t total = 0;
        yajl_gen_map_open(g);
        oq_json_gen_kv(g, "handler", st->handlers[i].handler);
        for (int s = 0; s < OQ_STATUS_N_STATES; s++) {
            gen_int(g, oq_status_states[s], st->handlers[i].rows[s]);
            total += st->handlers[i].rows[s];
        }
        gen_int(g, "total", total);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    gen_int(g, "sending", st->sending);
    gen_int(g, "sending_expired", st->sending_expired);
    gen_int(g, "unknown", st->unknown);
    yajl_gen_map_close(g);
}

static void gen_dead_letters(yajl_gen g, const struct oq_status *st)
{
    oq_json_gen_str(g, "dead_letters");
    yajl_gen_map_open(g);
    gen_int(g, "total", st->dead_letters);
    oq_json_gen_str(g, "by_class");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < st->n_classes; i++) {
        yajl_gen_map_open(g);
        oq_json_gen_kv(g, "error_class", st->classes[i].error_class);
        gen_int(g, "count", st->classes[i].count);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    oq_json_gen_str(g, "top_fingerprints");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < st->n_top; i++) {
        const struct oq_status_fingerprint *f = &st->top[i];
        yajl_gen_map_open(g);
        oq_json_gen_kv(g, "fingerprint", f->fingerprint);
        oq_json_gen_kv(g, "error_class", f->error_class);
        gen_int(g, "count", f->count);
        oq_json_gen_kv(g, "newest", f->newest);
        oq_json_gen_str(g, "queues");
        yajl_gen_array_open(g);
        for (const char *p = f->queues; *p != '\0';) {
            size_t len = strcspn(p, ",");
            yajl_gen_string(g, (const unsigned char *)p, len);
            p += len + (p[len] == ',');
        }
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
}

static void gen_outbox(yajl_gen g, const struct oq_status *st)
{
    oq_json_gen_str(g, "outbox");
    yajl_gen_map_open(g);
    gen_int(g, "backlog", st->outbox_backlog);
    gen_int(g, "oldest_age_seconds", st->outbox_oldest_s);
    yajl_gen_map_close(g);
}

static void gen_errors(yajl_gen g, const struct oq_status *st)
{
    oq_json_gen_str(g, "errors");
    yajl_gen_array_open(g);
    if (!st->broker_ok) {
        yajl_gen_map_open(g);
        oq_json_gen_kv(g, "source", "rabbitmq");
        oq_json_gen_kv(g, "message", st->broker_error);
        yajl_gen_map_close(g);
    }
    if (!st->db_ok) {
        yajl_gen_map_open(g);
        oq_json_gen_kv(g, "source", "database");
        oq_json_gen_kv(g, "message", st->db_error);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}

int oq_status_print_json(const struct oq_status *st, FILE *out)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return OQ_ENOMEM;
    /* One line: for jq, a log line, a monitoring probe. */
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "at", st->at);
    oq_json_gen_kv(g, "vhost", st->vhost);
    oq_json_gen_str(g, "ok");
    yajl_gen_bool(g, st->broker_ok && st->db_ok);
    gen_errors(g, st);
    gen_queues(g, st);
    if (st->db_ok) {
        gen_ledger(g, st);
        gen_dead_letters(g, st);
        gen_outbox(g, st);
    } else {
        static const char *const sections[] = {"ledger", "dead_letters", "outbox"};
        for (size_t i = 0; i < 3; i++) {
            oq_json_gen_str(g, sections[i]);
            yajl_gen_null(g);
        }
    }
    yajl_gen_map_close(g);
    char *text = oq_json_gen_finish(g);
    if (text == NULL)
        return OQ_ENOMEM;
    int rc = fprintf(out, "%s\n", text) < 0 ? OQ_EIO : 0;
    free(text);
    return rc;
}
