/* metrics.c - counters and gauges; /metrics, /healthz, /readyz over HTTP */
#include "orderq/metrics.h"

#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "orderq/config.h"
#include "orderq/log.h"
#include "orderq/url.h"

/* Files the rest of orderq may need besides the HTTP side: RabbitMQ, a
 * MySQL connection per worker, the relay, archiver and sweeper, SMTP and
 * HTTP calls, templates and logs. */
#define OTHER_FILES 256
#define LOG_EVERY_S 10 /* the HTTP server's complaints, at most this often */

static _Atomic int64_t values[OQ_M_COUNT];
static time_t started_at;

static const struct {
    const char *name;
    const char *type;
    const char *help;
} info[OQ_M_COUNT] = {
    [OQ_M_BROKER_CONNECTS] = {"orderq_broker_connects_total", "counter",
                              "Successful connections to RabbitMQ."},
    [OQ_M_BROKER_DISCONNECTS] = {"orderq_broker_disconnects_total", "counter",
                                 "Connections to RabbitMQ lost."},
    [OQ_M_DELIVERIES] = {"orderq_deliveries_total", "counter", "Deliveries received."},
    [OQ_M_EFFECTS] = {"orderq_effects_total", "counter", "Events whose effects were committed."},
    [OQ_M_DUPLICATES] = {"orderq_duplicates_total", "counter",
                         "Deliveries whose effect the ledger already had."},
    [OQ_M_DEAD_LETTERED] = {"orderq_dead_lettered_total", "counter",
                            "Deliveries parked as dead letters."},
    [OQ_M_RETRIED] = {"orderq_retried_total", "counter",
                      "Deliveries sent to a delay tier to be tried again."},
    [OQ_M_ARCHIVED] = {"orderq_dead_letters_archived_total", "counter",
                       "Dead letters stored in the dead_letter table."},
    [OQ_M_ARCHIVE_HELD] = {"orderq_dead_letters_held", "gauge",
                           "Dead letters left in the queue: too big or refused by MySQL."},
    [OQ_M_BATCHES] = {"orderq_batches_total", "counter", "Batches committed and acked."},
    [OQ_M_OUTBOX_PUBLISHED] = {"orderq_outbox_published_total", "counter",
                               "Outbox events published and confirmed."},
    [OQ_M_SENDS] = {"orderq_sends_total", "counter",
                    "Mails and webhook calls the peer accepted (ledger state sent)."},
    [OQ_M_SEND_FAILURES] = {"orderq_send_failures_total", "counter",
                            "Mails and webhook calls that failed (retried or dead-lettered)."},
    [OQ_M_AMBIGUOUS] = {"orderq_sends_ambiguous_total", "counter",
                        "Sends whose outcome is unknown (an expired lease, no reply)."},
    [OQ_M_CONSUMERS] = {"orderq_consumers", "gauge", "Queues being consumed now."},
    [OQ_M_READY] = {"orderq_ready", "gauge", "1 when connected and consuming."},
    [OQ_M_LEASES_EXPIRED] = {"orderq_ledger_leases_expired", "gauge",
                             "Ledger rows still sending whose lease ran out, as the lease sweeper "
                             "read them at its last pass (those past sweep_after_ms it settles)."},
    [OQ_M_LEDGER_UNKNOWN] = {"orderq_ledger_unknown", "gauge",
                             "Ledger rows in state unknown (a send whose outcome a person must "
                             "decide), as the lease sweeper read them at its last pass."},
    [OQ_M_FOREIGN_HEADERS] = {"orderq_foreign_headers_ignored_total", "counter",
                              "deliveries carrying x-orderq-* headers that orderq did not publish "
                              "(ignored)"},
    [OQ_M_SWEPT] = {"orderq_leases_swept_total", "counter",
                    "Abandoned leases this process marked unknown and dead-lettered as ambiguous."},
    [OQ_M_DB_CONFLICTS] = {"orderq_mysql_conflicts_total", "counter",
                           "Transactions MySQL refused as a deadlock, or Galera as a certification "
                           "conflict (1213), and orderq redid."},
};

void oq_metric_add(enum oq_metric m, int64_t n)
{
    atomic_fetch_add_explicit(&values[m], n, memory_order_relaxed);
}

void oq_metric_set(enum oq_metric m, int64_t value)
{
    atomic_store_explicit(&values[m], value, memory_order_relaxed);
}

int64_t oq_metric_get(enum oq_metric m)
{
    return atomic_load_explicit(&values[m], memory_order_relaxed);
}

void oq_metrics_render(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < OQ_M_COUNT && used < len; i++) {
        int n = snprintf(buf + used, len - used, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n",
                         info[i].name, info[i].help, info[i].name, info[i].type, info[i].name,
                         (long long)oq_metric_get((enum oq_metric)i));
        if (n < 0)
            return;
        used += (size_t)n;
    }
    if (used < len)
        snprintf(buf + used, len - used,
                 "# HELP orderq_start_time_seconds Start time of the process.\n"
                 "# TYPE orderq_start_time_seconds gauge\norderq_start_time_seconds %lld\n",
                 (long long)started_at);
}

struct oq_metrics_server {
    struct MHD_Daemon *daemon;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
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
        char body[16384];
        oq_metrics_render(body, sizeof(body));
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4", body);
    }
    if (strcmp(url, "/healthz") == 0)
        return reply(c, MHD_HTTP_OK, "text/plain", "ok\n");
    if (strcmp(url, "/readyz") == 0) {
        int ready = oq_metric_get(OQ_M_READY) != 0;
        return reply(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
                     ready ? "ready\n" : "not ready: not connected and consuming\n");
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
