/* metrics.c - counters, gauges and histograms; /metrics, /healthz, /readyz over HTTP */
#include "orderq/metrics.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "orderq/config.h"
#include "orderq/log.h"
#include "orderq/retry.h"
#include "orderq/url.h"

#include "git_sha.h" /* ORDERQ_GIT_SHA, written at each build (cmake/git_sha.cmake) */

/* Files the rest of orderq may need besides the HTTP side: RabbitMQ, a
 * MySQL connection per worker, the relay, archiver and sweeper, SMTP and
 * HTTP calls, templates and logs. */
#define OTHER_FILES 256
#define LOG_EVERY_S 10 /* the HTTP server's complaints, at most this often */

#define NAME_MAX_LEN 256 /* AMQP's limit on a queue name, with its NUL */
#define MAX_BUCKETS  16
#define N_CLASSES    (OQ_ERR_TOO_LARGE + 2) /* the dead-letter classes, then "other" */

/* ---- the values ------------------------------------------------------------ */

struct hist {
    _Atomic int64_t bucket[MAX_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    _Atomic int64_t sum;                     /* in the histogram's unit */
};

struct hist_def {
    const char *name, *help;
    const int64_t *bounds; /* upper bounds, in the unit observed */
    size_t n_bounds;
    int64_t scale; /* units per rendered unit: 1000000 for microseconds as seconds */
    int64_t cap;   /* most one observation adds to the sum; 0: no cap */
};

static _Atomic int64_t values[OQ_M_COUNT];
static _Atomic int64_t deliveries[OQ_METRICS_MAX_QUEUES];
static _Atomic int64_t outcomes[OQ_METRICS_MAX_QUEUES][OQ_OUTCOME_COUNT];
static _Atomic int64_t sends[OQ_METRICS_MAX_HANDLERS][OQ_SEND_RESULT_COUNT];
static _Atomic int64_t reconnects[OQ_PEER_COUNT];
static _Atomic int64_t ledger_rows[OQ_LEDGER_STATE_COUNT];
static _Atomic int64_t dead_letters[N_CLASSES];
static _Atomic int64_t db_gauges_at; /* last full read of the database gauges; 0: none yet */
static struct hist hists[OQ_H_COUNT];
static struct hist handler_hists[OQ_METRICS_MAX_HANDLERS];
static struct hist send_hists[OQ_PROTO_COUNT];
static time_t started_at;

/* Label values: written under reg_mu before their count is published
 * (release), read by any thread after loading the count (acquire). */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static char queue_names[OQ_METRICS_MAX_QUEUES][NAME_MAX_LEN];
static _Atomic size_t n_queues;
static char handler_names[OQ_METRICS_MAX_HANDLERS][NAME_MAX_LEN]; /* one per series */
static size_t handler_series[OQ_METRICS_MAX_HANDLERS];            /* registry index -> series */
static _Atomic size_t n_handler_names, n_handlers;

static const char *const outcome_names[OQ_OUTCOME_COUNT] = {"done", "duplicate", "retried", "dead",
                                                            "invalid"};
static const char *const send_result_names[OQ_SEND_RESULT_COUNT] = {"sent", "failed", "ambiguous"};
static const char *const peer_names[OQ_PEER_COUNT] = {"broker", "database"};
static const char *const protocol_names[OQ_PROTO_COUNT] = {"smtp", "http"};
static const char *const ledger_state_names[OQ_LEDGER_STATE_COUNT] = {"sending", "unknown"};

static const int64_t batch_bounds[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000};
static const int64_t commit_bounds[] = {500,   1000,   2500,   5000,   10000,   25000,
                                        50000, 100000, 250000, 500000, 1000000, 2500000};
static const int64_t handler_bounds[] = {100,   250,   500,    1000,   2500,   5000,    10000,
                                         25000, 50000, 100000, 250000, 500000, 1000000, 2500000};
static const int64_t send_bounds[] = {5000,   10000,   25000,   50000,   100000,   250000,
                                      500000, 1000000, 2500000, 5000000, 10000000, 30000000};
static const int64_t age_bounds[] = {1000,     5000,      10000,     50000,     100000,
                                     500000,   1000000,   5000000,   10000000,  30000000,
                                     60000000, 300000000, 900000000, 3600000000};

#define BOUNDS(a) a, sizeof(a) / sizeof(a[0])
static const struct hist_def hist_defs[OQ_H_COUNT] = {
    [OQ_H_BATCH_SIZE] = {"orderq_batch_size", "Deliveries per settled batch.", BOUNDS(batch_bounds),
                         1, 0},
    [OQ_H_COMMIT] = {"orderq_commit_duration_seconds", "The batch transaction's COMMIT.",
                     BOUNDS(commit_bounds), 1000000, 0},
    [OQ_H_EVENT_AGE] = {"orderq_event_age_seconds",
                        "At commit: now minus the AMQP timestamp property, else the envelope's "
                        "created_at (end-to-end latency).",
                        BOUNDS(age_bounds), 1000000, INT64_C(36000) * 1000000},
};
static const struct hist_def handler_def = {
    "orderq_handler_duration_seconds",
    "One handler's call in a batch: apply over the claimed events, or one perform.",
    BOUNDS(handler_bounds), 1000000, 0};
static const struct hist_def send_def = {"orderq_send_duration_seconds",
                                         "One SMTP send or webhook call, connect to final reply.",
                                         BOUNDS(send_bounds), 1000000, 0};

static const struct {
    const char *name;
    const char *type;
    const char *help;
} info[OQ_M_COUNT] = {
    [OQ_M_BROKER_CONNECTS] = {"orderq_broker_connects_total", "counter",
                              "Successful connections to RabbitMQ."},
    [OQ_M_ARCHIVED] = {"orderq_dead_letters_archived_total", "counter",
                       "Dead letters stored in the dead_letter table."},
    [OQ_M_ARCHIVE_HELD] = {"orderq_dead_letters_held", "gauge",
                           "Dead letters left in the queue: too big or refused by MySQL."},
    [OQ_M_BATCHES] = {"orderq_batches_total", "counter", "Batches committed and acked."},
    [OQ_M_OUTBOX_PUBLISHED] = {"orderq_outbox_published_total", "counter",
                               "Outbox events published and confirmed."},
    [OQ_M_CONSUMERS] = {"orderq_consumers", "gauge", "Queues being consumed now."},
    [OQ_M_READY] =
        {"orderq_ready", "gauge",
         "1 when connected and consuming (a relay: its last pass reached RabbitMQ and MySQL)."},
    [OQ_M_LEASES_EXPIRED] = {"orderq_ledger_leases_expired", "gauge",
                             "Ledger rows still sending whose lease ran out, as the lease sweeper "
                             "read them at its last pass (those past sweep_after_ms it settles)."},
    [OQ_M_FOREIGN_HEADERS] = {"orderq_foreign_headers_ignored_total", "counter",
                              "Deliveries carrying x-orderq-* headers that orderq did not publish "
                              "(ignored)."},
    [OQ_M_SWEPT] = {"orderq_leases_swept_total", "counter",
                    "Abandoned leases this process marked unknown and dead-lettered as ambiguous."},
    [OQ_M_DB_CONFLICTS] = {"orderq_mysql_conflicts_total", "counter",
                           "Transactions MySQL refused as a deadlock, or Galera as a certification "
                           "conflict (1213), and orderq redid."},
    [OQ_M_IN_FLIGHT] = {"orderq_in_flight_deliveries", "gauge",
                        "Deliveries received and not yet settled."},
    [OQ_M_OUTBOX_BACKLOG] = {"orderq_outbox_backlog", "gauge",
                             "Outbox rows not yet published (read every 30 s)."},
    [OQ_M_OUTBOX_OLDEST_AGE] =
        {
            "orderq_outbox_oldest_age_seconds",
            "gauge",
            "Age of the oldest unpublished outbox row, 0 when none (read "
            "every 30 s).",
        },
};

/* The families the gauge thread reads from MySQL: no sample before its first read. */
static const int from_db[OQ_M_COUNT] = {[OQ_M_OUTBOX_BACKLOG] = 1, [OQ_M_OUTBOX_OLDEST_AGE] = 1};

static void add(_Atomic int64_t *v, int64_t n)
{
    atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

static int64_t get(_Atomic int64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

void oq_metric_add(enum oq_metric m, int64_t n)
{
    add(&values[m], n);
}

void oq_metric_set(enum oq_metric m, int64_t value)
{
    atomic_store_explicit(&values[m], value, memory_order_relaxed);
}

int64_t oq_metric_get(enum oq_metric m)
{
    return get(&values[m]);
}

/* ---- label values ---------------------------------------------------------- */

static size_t count_of(_Atomic size_t *n)
{
    return atomic_load_explicit(n, memory_order_acquire);
}

void oq_metrics_register_queues(const char *const *names, size_t n)
{
    pthread_mutex_lock(&reg_mu);
    for (size_t i = 0; i < n; i++) {
        size_t have = count_of(&n_queues);
        if (have == OQ_METRICS_MAX_QUEUES || oq_metrics_queue_index(names[i]) >= 0)
            continue;
        snprintf(queue_names[have], NAME_MAX_LEN, "%s", names[i]);
        atomic_store_explicit(&n_queues, have + 1, memory_order_release);
    }
    pthread_mutex_unlock(&reg_mu);
}

int oq_metrics_queue_index(const char *name)
{
    size_t n = count_of(&n_queues);
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(queue_names[i], name) == 0)
            return (int)i;
    return -1;
}

/* The series of a handler name, adding it when new (under reg_mu). */
static size_t handler_name_series(const char *name)
{
    size_t n = count_of(&n_handler_names);
    for (size_t i = 0; i < n; i++)
        if (strcmp(handler_names[i], name) == 0)
            return i;
    snprintf(handler_names[n], NAME_MAX_LEN, "%s", name);
    atomic_store_explicit(&n_handler_names, n + 1, memory_order_release);
    return n;
}

void oq_metrics_register_handlers(const char *const *names, size_t n)
{
    pthread_mutex_lock(&reg_mu);
    if (count_of(&n_handlers) == 0) { /* once: every worker's registry has the same order */
        if (n > OQ_METRICS_MAX_HANDLERS)
            n = OQ_METRICS_MAX_HANDLERS;
        for (size_t i = 0; i < n; i++)
            handler_series[i] = handler_name_series(names[i]);
        atomic_store_explicit(&n_handlers, n, memory_order_release);
    }
    pthread_mutex_unlock(&reg_mu);
}

/* The series of registry entry handler, or -1. */
static int handler_index(size_t handler)
{
    return handler < count_of(&n_handlers) ? (int)handler_series[handler] : -1;
}

/* ---- recording ------------------------------------------------------------- */

static int queue_ok(int queue)
{
    return queue >= 0 && queue < OQ_METRICS_MAX_QUEUES;
}

void oq_metrics_delivery(int queue)
{
    if (queue_ok(queue))
        add(&deliveries[queue], 1);
}

void oq_metrics_outcome(int queue, enum oq_outcome_label outcome)
{
    if (queue_ok(queue) && outcome < OQ_OUTCOME_COUNT)
        add(&outcomes[queue][outcome], 1);
}

void oq_metrics_send(size_t handler, enum oq_send_result result)
{
    int h = handler_index(handler);
    if (h >= 0 && result < OQ_SEND_RESULT_COUNT)
        add(&sends[h][result], 1);
}

void oq_metrics_reconnect(enum oq_peer peer)
{
    if (peer < OQ_PEER_COUNT)
        add(&reconnects[peer], 1);
}

/* sum += n, stopping at INT64_MAX rather than wrapping to a negative sum
 * that no scraper could parse. */
static void add_saturating(_Atomic int64_t *sum, int64_t n)
{
    int64_t old = atomic_load_explicit(sum, memory_order_relaxed);
    int64_t next;
    do
        next = old > INT64_MAX - n ? INT64_MAX : old + n;
    while (!atomic_compare_exchange_weak_explicit(sum, &old, next, memory_order_relaxed,
                                                  memory_order_relaxed));
}

static void observe(struct hist *h, const struct hist_def *def, int64_t value)
{
    size_t i = 0;
    if (value < 0)
        value = 0; /* a clock a little ahead of ours: no negative ages */
    /* Event ages come from the publisher's clock: capped, one absurd value
     * (an event "born" in year 1) cannot swamp the sum for the life of the
     * process. Durations are ours, bounded by their timeouts. */
    if (def->cap > 0 && value > def->cap)
        value = def->cap;
    while (i < def->n_bounds && value > def->bounds[i])
        i++;
    add(&h->bucket[i], 1);
    add_saturating(&h->sum, value);
}

void oq_metrics_observe(enum oq_histogram h, int64_t value)
{
    if (h < OQ_H_COUNT)
        observe(&hists[h], &hist_defs[h], value);
}

void oq_metrics_handler_duration(size_t handler, int64_t us)
{
    int h = handler_index(handler);
    if (h >= 0)
        observe(&handler_hists[h], &handler_def, us);
}

void oq_metrics_send_duration(enum oq_protocol protocol, int64_t us)
{
    if (protocol < OQ_PROTO_COUNT)
        observe(&send_hists[protocol], &send_def, us);
}

void oq_metrics_set_ledger_rows(enum oq_ledger_state_label state, int64_t n)
{
    if (state < OQ_LEDGER_STATE_COUNT)
        atomic_store_explicit(&ledger_rows[state], n, memory_order_relaxed);
}

static const char *class_name(size_t i)
{
    return i + 1 < N_CLASSES ? oq_error_class_name((enum oq_error_class)i) : "other";
}

static size_t class_index(const char *error_class)
{
    size_t i = 0;
    while (i + 1 < N_CLASSES && strcmp(class_name(i), error_class) != 0)
        i++;
    return i; /* N_CLASSES - 1: other */
}

void oq_metrics_set_dead_letters(const char *const *classes, const int64_t *counts, size_t n)
{
    int64_t next[N_CLASSES] = {0};
    for (size_t i = 0; i < n; i++)
        next[class_index(classes[i])] += counts[i];
    for (size_t c = 0; c < N_CLASSES; c++)
        atomic_store_explicit(&dead_letters[c], next[c], memory_order_relaxed);
}

void oq_metrics_db_gauges_read(void)
{
    atomic_store_explicit(&db_gauges_at, (int64_t)time(NULL), memory_order_relaxed);
}

int64_t oq_metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- rendering ------------------------------------------------------------- */

/* A growing text: the exposition grows with queues, handlers and buckets. */
struct text {
    char *p;
    size_t len, cap;
    int oom;
};

OQ_PRINTF(2, 3) static void put(struct text *t, const char *fmt, ...)
{
    for (int tries = 0; !t->oom && tries < 2; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 > t->len + (size_t)n + 1 ? t->cap * 2 : t->len + (size_t)n + 1;
        char *p = realloc(t->p, cap);
        if (p == NULL) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

size_t oq_metrics_escape_label(const char *s, char *out, size_t outlen)
{
    size_t k = 0;
    for (; *s != '\0'; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        size_t w = esc ? 2 : 1;
        if (k + w < outlen)
            memcpy(out + k, esc ? esc : s, w);
        k += w;
    }
    if (outlen > 0)
        out[k < outlen ? k : outlen - 1] = '\0';
    return k;
}

/* Label values are at most NAME_MAX_LEN bytes: escaped, twice that. */
static const char *esc(const char *s, char *buf)
{
    (void)oq_metrics_escape_label(s, buf, 2 * NAME_MAX_LEN + 1);
    return buf;
}

static void header(struct text *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* v / scale as a decimal, without floating point: 2500 / 1000000 -> 0.0025 */
static void put_scaled(struct text *t, int64_t v, int64_t scale)
{
    if (scale == 1) {
        put(t, "%lld", (long long)v);
        return;
    }
    /* Sign and magnitude apart: -2500 is "-0.0025", not "0.-2500". Values
     * are never negative today; a broken line would fail the whole scrape. */
    const char *sign = v < 0 ? "-" : "";
    uint64_t mag = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char frac[24];
    int n = snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(mag % (uint64_t)scale));
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    put(t, "%s%llu%s%s", sign, (unsigned long long)(mag / (uint64_t)scale), n > 0 ? "." : "", frac);
}

/* One series of a histogram: labels is "" or `name="value",`. */
static void put_hist(struct text *t, const struct hist_def *def, const char *labels, struct hist *h)
{
    int64_t cum = 0;
    const char *bare = labels[0] ? labels : "";
    for (size_t i = 0; i < def->n_bounds; i++) {
        cum += get(&h->bucket[i]);
        put(t, "%s_bucket{%sle=\"", def->name, labels);
        put_scaled(t, def->bounds[i], def->scale);
        put(t, "\"} %lld\n", (long long)cum);
    }
    cum += get(&h->bucket[def->n_bounds]);
    put(t, "%s_bucket{%sle=\"+Inf\"} %lld\n", def->name, labels, (long long)cum);
    size_t bl = strlen(bare);
    put(t, "%s_sum%s%.*s%s ", def->name, bl ? "{" : "", bl ? (int)bl - 1 : 0, bare, bl ? "}" : "");
    put_scaled(t, get(&h->sum), def->scale);
    put(t, "\n%s_count%s%.*s%s %lld\n", def->name, bl ? "{" : "", bl ? (int)bl - 1 : 0, bare,
        bl ? "}" : "", (long long)cum);
}

static void render_queue_counters(struct text *t)
{
    char q[2 * NAME_MAX_LEN + 1];
    size_t n = count_of(&n_queues);
    header(t, "orderq_deliveries_total", "counter", "Deliveries received, by queue.");
    for (size_t i = 0; i < n; i++)
        put(t, "orderq_deliveries_total{queue=\"%s\"} %lld\n", esc(queue_names[i], q),
            (long long)get(&deliveries[i]));
    header(t, "orderq_outcomes_total", "counter",
           "Deliveries settled, by queue and outcome (done, duplicate, retried, dead, invalid).");
    for (size_t i = 0; i < n; i++)
        for (size_t o = 0; o < OQ_OUTCOME_COUNT; o++)
            put(t, "orderq_outcomes_total{queue=\"%s\",outcome=\"%s\"} %lld\n",
                esc(queue_names[i], q), outcome_names[o], (long long)get(&outcomes[i][o]));
}

static void render_labelled_counters(struct text *t)
{
    char h[2 * NAME_MAX_LEN + 1];
    size_t n = count_of(&n_handler_names);
    render_queue_counters(t);
    header(t, "orderq_sends_total", "counter",
           "Mails and webhook calls, by handler and result (sent, failed, ambiguous).");
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < OQ_SEND_RESULT_COUNT; r++)
            put(t, "orderq_sends_total{handler=\"%s\",result=\"%s\"} %lld\n",
                esc(handler_names[i], h), send_result_names[r], (long long)get(&sends[i][r]));
    header(t, "orderq_reconnects_total", "counter",
           "Connections opened again after one was lost or refused, by peer.");
    for (size_t p = 0; p < OQ_PEER_COUNT; p++)
        put(t, "orderq_reconnects_total{peer=\"%s\"} %lld\n", peer_names[p],
            (long long)get(&reconnects[p]));
}

static void render_histograms(struct text *t)
{
    char h[2 * NAME_MAX_LEN + 1], labels[2 * NAME_MAX_LEN + 32];
    for (size_t i = 0; i < OQ_H_COUNT; i++) {
        header(t, hist_defs[i].name, "histogram", hist_defs[i].help);
        put_hist(t, &hist_defs[i], "", &hists[i]);
    }
    header(t, handler_def.name, "histogram", handler_def.help);
    size_t n = count_of(&n_handler_names);
    for (size_t i = 0; i < n; i++) {
        snprintf(labels, sizeof(labels), "handler=\"%s\",", esc(handler_names[i], h));
        put_hist(t, &handler_def, labels, &handler_hists[i]);
    }
    header(t, send_def.name, "histogram", send_def.help);
    for (size_t p = 0; p < OQ_PROTO_COUNT; p++) {
        snprintf(labels, sizeof(labels), "protocol=\"%s\",", protocol_names[p]);
        put_hist(t, &send_def, labels, &send_hists[p]);
    }
}

/* The gauges read from the database: no sample before their first read. */
static void render_db_gauges(struct text *t)
{
    int read = get(&db_gauges_at) != 0;
    header(t, "orderq_ledger_rows", "gauge",
           "Ledger rows in state sending or unknown (read every 30 s).");
    for (size_t s = 0; read && s < OQ_LEDGER_STATE_COUNT; s++)
        put(t, "orderq_ledger_rows{state=\"%s\"} %lld\n", ledger_state_names[s],
            (long long)get(&ledger_rows[s]));
    header(t, "orderq_dead_letters", "gauge",
           "Rows in dead_letter not replayed, by error_class (read every 30 s).");
    for (size_t c = 0; read && c < N_CLASSES; c++)
        put(t, "orderq_dead_letters{error_class=\"%s\"} %lld\n", class_name(c),
            (long long)get(&dead_letters[c]));
    header(t, "orderq_db_gauges_read_timestamp_seconds", "gauge",
           "When the database gauges (outbox, ledger rows, dead letters) were last read whole; "
           "0 before the first read. Stale while MySQL cannot be read.");
    put(t, "orderq_db_gauges_read_timestamp_seconds %lld\n", (long long)get(&db_gauges_at));
}

static void render_gauges(struct text *t)
{
    render_db_gauges(t);
    header(t, "orderq_build_info", "gauge", "Always 1: the version and git commit built.");
    put(t, "orderq_build_info{version=\"%s\",git_sha=\"%s\"} 1\n", ORDERQ_VERSION, ORDERQ_GIT_SHA);
    header(t, "orderq_start_time_seconds", "gauge", "Start time of the process.");
    put(t, "orderq_start_time_seconds %lld\n", (long long)started_at);
}

char *oq_metrics_render(size_t *len)
{
    struct text t = {malloc(16384), 0, 16384, 0};
    if (t.p == NULL)
        return NULL;
    render_labelled_counters(&t);
    int db_read = get(&db_gauges_at) != 0;
    for (int i = 0; i < OQ_M_COUNT; i++) {
        header(&t, info[i].name, info[i].type, info[i].help);
        if (db_read || !from_db[i])
            put(&t, "%s %lld\n", info[i].name, (long long)oq_metric_get((enum oq_metric)i));
    }
    render_histograms(&t);
    render_gauges(&t);
    if (t.oom) {
        free(t.p);
        return NULL;
    }
    *len = t.len;
    return t.p;
}

struct oq_metrics_server {
    struct MHD_Daemon *daemon;
};

/* Queue r (NULL: out of memory, the connection is dropped) and let go of it. */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *type,
                               struct MHD_Response *r)
{
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body)
{
    return respond(c, status, type,
                   MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body,
                                                   MHD_RESPMEM_MUST_COPY));
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    (void)cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    if (strcmp(url, "/metrics") == 0) {
        size_t len = 0;
        char *body = oq_metrics_render(&len);
        if (body == NULL)
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", "out of memory\n");
        struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (r == NULL)
            free(body);
        return respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4", r);
    }
    if (strcmp(url, "/healthz") == 0)
        return reply(c, MHD_HTTP_OK, "text/plain", "ok\n");
    if (strcmp(url, "/readyz") == 0) {
        int ready = oq_metric_get(OQ_M_READY) != 0;
        return reply(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
                     ready ? "ready\n" : "not ready: not connected (the log says why)\n");
    }
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain", "try /metrics, /healthz or /readyz\n");
}

/* libmicrohttpd's messages ("Server reached connection limit", one per
 * refused connection under a flood) as orderq log lines, at most one per
 * LOG_EVERY_S (also called from the main thread at start and stop). */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    static struct oq_log_limiter limiter = OQ_LOG_LIMITER_INIT;
    long skipped = 0;
    char msg[256];
    (void)cls;
    if (!oq_log_limiter_take(&limiter, LOG_EVERY_S, &skipped))
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    oq_warn("http_addr: %s (%ld messages from the HTTP server left out since the last one)", msg,
            skipped);
}

/* The HTTP side may hold http_max_connections sockets: check they leave
 * room for the rest within the open-files limit, and that the limits fit. */
static int check_limits(const struct oq_config *cfg, char *err, size_t errlen)
{
    struct rlimit rl;
    if (cfg->http_max_connections_per_ip > cfg->http_max_connections) {
        snprintf(err, errlen,
                 "http_max_connections_per_ip (%s) is %lld but http_max_connections (%s) is "
                 "%lld; expected per_ip <= the total",
                 oq_config_origin(cfg, "http_max_connections_per_ip"),
                 (long long)cfg->http_max_connections_per_ip,
                 oq_config_origin(cfg, "http_max_connections"),
                 (long long)cfg->http_max_connections);
        return OQ_ECONFIG;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        (rlim_t)cfg->http_max_connections + OTHER_FILES <= rl.rlim_cur)
        return 0;
    snprintf(err, errlen,
             "http_max_connections (%s) is %lld, but this process may open only %llu files "
             "(ulimit -n) and keeps %d for RabbitMQ, MySQL, mail and webhooks; expected at most "
             "%lld, or a higher ulimit -n",
             oq_config_origin(cfg, "http_max_connections"), (long long)cfg->http_max_connections,
             (unsigned long long)rl.rlim_cur, OTHER_FILES,
             rl.rlim_cur > OTHER_FILES ? (long long)(rl.rlim_cur - OTHER_FILES) : 0LL);
    return OQ_ECONFIG;
}

int oq_metrics_start(const struct oq_config *cfg, struct oq_metrics_server **out, char *err,
                     size_t errlen)
{
    const char *addr = cfg->http_addr;
    char *host = NULL, port_text[8];
    unsigned port = 0;
    struct addrinfo hints, *res = NULL;
    struct oq_metrics_server *s = NULL;
    int rc = OQ_ECONFIG;

    *out = NULL;
    started_at = time(NULL);
    if (addr == NULL || *addr == '\0')
        return 0;
    if (check_limits(cfg, err, errlen) != 0)
        goto out;
    if (oq_hostport_parse(addr, &host, &port, err, errlen) != 0)
        goto out;
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port_text, sizeof(port_text), "%u", port);
    int gai = getaddrinfo(host, port_text, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "http_addr %s: %s", addr, gai_strerror(gai));
        goto out;
    }
    rc = OQ_ENOMEM;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        goto out;
    /* poll, not select: no FD_SETSIZE ceiling on the process' files. Not
     * epoll either: with libmicrohttpd 0.9.75, once a flood had filled the
     * connection limit, it still held those 64 connections (their peers
     * gone) and answered nothing 30 s after the flood ended. */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (res->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* MHD counts the timeout in whole seconds; round up. */
    unsigned timeout_s = (unsigned)((cfg->http_timeout_ms + 999) / 1000);
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, handle, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, res->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->http_max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned)cfg->http_max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
        MHD_OPTION_END);
    if (s->daemon == NULL) {
        snprintf(err, errlen,
                 "cannot serve metrics on %s (in use by another process? set http_addr, or "
                 "empty to turn it off)",
                 addr);
        rc = OQ_EIO;
        goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (res != NULL)
        freeaddrinfo(res);
    free(host);
    free(s);
    return rc;
}

void oq_metrics_stop(struct oq_metrics_server *s)
{
    if (s == NULL)
        return;
    MHD_stop_daemon(s->daemon);
    free(s);
}
