/* config.c - one table of typed settings, loaded from defaults, file, env, flags */
#include "orderq/config.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#include "orderq/event.h"  /* the work queues' event codes */
#include "orderq/intake.h" /* the intake setting's shape */
#include "orderq/ledger.h" /* OQ_LEDGER_OWNER_MAX */
#include "orderq/log.h"
#include "orderq/webhook.h" /* OQ_WEBHOOK_QUEUE */
#include "orderq/mailer.h"
#include "orderq/url.h"

enum setting_type {
    T_STRING,   /* char *, checked by `check` when set */
    T_INT,      /* int64_t within [min, max] */
    T_DURATION, /* int64_t ms within [min, max]; "250ms", "5s", "2m", "1h" */
    T_ENUM,     /* int: index into `choices` ("a|b|c") */
    T_TIERS,    /* the retry tier list: "1s,5s,30s" or a JSON array */
};

#define SECRET   0x1u  /* never printed */
#define URL      0x2u  /* printed with the password redacted */
#define NONEMPTY 0x4u  /* the empty string is not allowed */
#define LIST     0x8u  /* URLs of a cluster's nodes: "a,b" or, in the file, a JSON array */
#define JSONVAL  0x10u /* JSON text; in the file also written as the object itself */

typedef int (*string_check)(const char *value, char *why, size_t whylen);

struct setting {
    const char *name;
    enum setting_type type;
    const char *def;
    int64_t min, max;
    const char *choices;
    unsigned flags;
    string_check check;
    size_t offset;
    const char *help;
};

struct oq_config_origin {
    enum oq_config_source src;
    char where[160];
};

static int check_amqp_url(const char *v, char *why, size_t len)
{
    struct oq_amqp_url u;
    int rc = oq_amqp_url_parse(v, &u, why, len);
    oq_amqp_url_clear(&u);
    return rc;
}

static int check_mysql_url(const char *v, char *why, size_t len)
{
    struct oq_mysql_url u;
    int rc = oq_mysql_url_parse(v, &u, why, len);
    oq_mysql_url_clear(&u);
    return rc;
}

static int check_smtp_url(const char *v, char *why, size_t len)
{
    return oq_url_check_scheme(v, "smtp,smtps", why, len);
}

static int check_http_url(const char *v, char *why, size_t len)
{
    return oq_url_check_scheme(v, "http,https", why, len);
}

/* Empty turns the feature off. */
static int check_optional_http_url(const char *v, char *why, size_t len)
{
    return *v == '\0' ? 0 : check_http_url(v, why, len);
}

/* A PEM file named for TLS: readable now, or start fails naming it. */
static int check_tls_file(const char *v, char *why, size_t len)
{
    if (*v == '\0' || access(v, R_OK) == 0)
        return 0;
    snprintf(why, len, "expected a readable PEM file, got \"%s\" (%s)", v, strerror(errno));
    return OQ_EINVAL;
}

static int check_hostport(const char *v, char *why, size_t len)
{
    char *host = NULL;
    unsigned port = 0;
    if (*v == '\0')
        return 0; /* empty: metrics endpoint off */
    int rc = oq_hostport_parse(v, &host, &port, why, len);
    free(host);
    return rc;
}

/* 8 to 64 distinct letters or digits: enough codes, nothing to escape. */
static int check_alphabet(const char *v, char *why, size_t len)
{
    size_t n = strlen(v);
    int bad = n < 8 || n > 64;
    for (size_t i = 0; !bad && i < n; i++)
        bad = !isalnum((unsigned char)v[i]) || strchr(v + i + 1, v[i]) != NULL;
    if (bad)
        snprintf(why, len, "expected 8 to 64 distinct letters or digits");
    return bad ? OQ_EINVAL : 0;
}

/* Goes into a protocol line (SMTP AUTH): no control characters. */
static int check_printable(const char *v, char *why, size_t len)
{
    return oq_mail_header_check(v, why, len);
}

static int check_mailbox(const char *v, char *why, size_t len)
{
    char name[256], address[256];
    return oq_mail_parse_mailbox(v, name, sizeof(name), address, sizeof(address), why, len);
}

/* The intake mappings (intake.h): parsed now, so that a mistake stops the
 * start naming the place, not the first message. */
static int check_intake(const char *v, char *why, size_t len)
{
    struct oq_intake *in = NULL;
    int rc = oq_intake_parse(v, &in, why, len);
    oq_intake_free(in);
    return rc;
}

/* Stored as the ledger's owner, VARCHAR(191), and an effect worker's is
 * instance_id + "/effect-N/<lease tag>" with N up to effect_workers' bound
 * (64) and a 12-digit hex tag: the longest must fit, or the row would be
 * cut and finish would miss it. */
#define OWNER_SUFFIX    "/effect-64/ffffffffffff"
#define INSTANCE_ID_MAX (OQ_LEDGER_OWNER_MAX - (sizeof(OWNER_SUFFIX) - 1))

static int check_instance_id(const char *v, char *why, size_t len)
{
    size_t n = strlen(v);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
            snprintf(why, len, "expected printable characters only");
            return OQ_EINVAL;
        }
    if (n > INSTANCE_ID_MAX) {
        snprintf(why, len,
                 "expected at most %zu bytes (the ledger's owner column holds 191, with "
                 "\"" OWNER_SUFFIX "\" added for effect workers), got %zu",
                 (size_t)INSTANCE_ID_MAX, n);
        return OQ_EINVAL;
    }
    if (!oq_utf8_valid(v, n)) {
        snprintf(why, len, "expected UTF-8 text (it is stored in the ledger)");
        return OQ_EINVAL;
    }
    return 0;
}

/* AMQP names (ours: at most 200 bytes, leaving room for suffixes) of letters, digits, '-', '_',
 * '.', ':'. */
int oq_amqp_name_check(const char *v, char *why, size_t len)
{
    size_t n = strlen(v);
    if (n == 0 || n > 200) {
        snprintf(why, len, "expected a name of 1 to 200 characters");
        return OQ_EINVAL;
    }
    if (strncmp(v, "amq.", 4) == 0) {
        snprintf(why, len, "names starting with \"amq.\" are reserved by RabbitMQ, got \"%s\"", v);
        return OQ_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.' && c != ':') {
            snprintf(why, len, "expected letters, digits, '-', '_', '.' or ':' only, got \"%s\"",
                     v);
            return OQ_EINVAL;
        }
    }
    return 0;
}

#define OFF(member) offsetof(struct oq_config, member)

/* The one table. Keep it sorted by subject; docs/configuration.md follows it. */
static const struct setting settings[] = {
    {"amqp_url", T_STRING, "amqp://guest:guest@127.0.0.1:5672/", 0, 0, NULL, URL | NONEMPTY | LIST,
     check_amqp_url, OFF(amqp_url), "RabbitMQ to consume from and publish to"},
    {"amqp_ca", T_STRING, "", 0, 0, NULL, 0, check_tls_file, OFF(amqp_ca),
     "CA file (PEM) an amqps:// broker's certificate must chain to (empty: the system's CAs); "
     "the certificate and host name are always checked"},
    {"amqp_cert", T_STRING, "", 0, 0, NULL, 0, check_tls_file, OFF(amqp_cert),
     "client certificate (PEM) presented to an amqps:// broker; needs amqp_key"},
    {"amqp_key", T_STRING, "", 0, 0, NULL, 0, check_tls_file, OFF(amqp_key),
     "private key (PEM, unencrypted) of amqp_cert"},
    {"amqp_mgmt_url", T_STRING, "http://127.0.0.1:15672/", 0, 0, NULL, URL | NONEMPTY,
     check_http_url, OFF(amqp_mgmt_url),
     "RabbitMQ management API, read by `topology verify` (user and password from amqp_url "
     "unless given here)"},
    {"mysql_url", T_STRING, "mysql://orderq@localhost/orderq?socket=/run/mysqld/mysqld.sock", 0, 0,
     NULL, URL | NONEMPTY | LIST, check_mysql_url, OFF(mysql_url),
     "MariaDB/MySQL holding the ledger (query: socket=PATH, "
     "ssl=disabled|required|verify_ca|verify_identity, ssl_ca=PEM file)"},
    {"smtp_url", T_STRING, "smtp://127.0.0.1:1025", 0, 0, NULL, URL | NONEMPTY, check_smtp_url,
     OFF(smtp_url), "SMTP server for customer mail (smtp:// or smtps://)"},
    {"smtp_tls", T_ENUM, "required", 0, 0, "opportunistic|required|off", 0, NULL, OFF(smtp_tls),
     "STARTTLS on smtp:// (smtps:// is always TLS): when offered, always, or never; left at its "
     "default, opportunistic for a loopback host (127.0.0.0/8, ::1, localhost)"},
    {"smtp_ca", T_STRING, "", 0, 0, NULL, 0, check_tls_file, OFF(smtp_ca),
     "CA file (PEM) the SMTP server's certificate must chain to (empty: the system's CAs); "
     "the certificate and host name are always checked"},
    {"smtp_user", T_STRING, "", 0, 0, NULL, 0, check_printable, OFF(smtp_user),
     "SMTP AUTH user (empty: no AUTH, or the user in smtp_url)"},
    {"smtp_password", T_STRING, "", 0, 0, NULL, SECRET, NULL, OFF(smtp_password),
     "SMTP AUTH password; better ORDERQ_SMTP_PASSWORD or smtp_password_file"},
    {"smtp_password_file", T_STRING, "", 0, 0, NULL, 0, NULL, OFF(smtp_password_file),
     "file holding the SMTP AUTH password (its first line)"},
    {"smtp_from", T_STRING, "orderq <noreply@orderq.localdomain>", 0, 0, NULL, NONEMPTY,
     check_mailbox, OFF(smtp_from), "sender of customer mail: \"Name <address>\" or an address"},
    {"smtp_timeout_ms", T_DURATION, "30s", 1000, 600000, NULL, 0, NULL, OFF(smtp_timeout_ms),
     "longest an SMTP send may take, connect to the final reply"},
    {"template_dir", T_STRING, ORDERQ_TEMPLATE_DIR, 0, 0, NULL, NONEMPTY, NULL, OFF(template_dir),
     "directory holding coupon.txt, coupon.html, invoice.txt, invoice.html"},
    {"ambiguous_mail", T_ENUM, "park", 0, 0, "park|resend", 0, NULL, OFF(ambiguous_mail),
     "a mail whose outcome is unknown: park it for a person (dead letter, class ambiguous) "
     "or send it again with the same Message-ID (docs/mail.md)"},
    {"ambiguous_webhook", T_ENUM, "resend", 0, 0, "park|resend", 0, NULL, OFF(ambiguous_webhook),
     "a webhook call whose outcome is unknown: send again with the same Idempotency-Key, or park"},
    {"effect_workers", T_INT, "8", 1, 64, NULL, 0, NULL, OFF(effect_workers),
     "threads sending mail and webhooks, each with its own MySQL connection"},
    {"effect_lease_ms", T_DURATION, "10m", 1000, 86400000, NULL, 0, NULL, OFF(effect_lease_ms),
     "how long a claimed send is another process' before its outcome counts as unknown; "
     "longer than smtp_timeout_ms and any webhook timeout_ms"},
    {"sweep_after_ms", T_DURATION, "70m", 1000, 2592000000LL, NULL, 0, NULL, OFF(sweep_after_ms),
     "how long after its lease ran out a `sending` row counts as abandoned (no delivery left to "
     "come back for it) and the lease sweeper marks it unknown; default: the longest delay a "
     "retry can wait (retry_tiers, max_attempts) plus effect_lease_ms"},
    {"shop_api_url", T_STRING, "", 0, 0, NULL, URL, check_optional_http_url, OFF(shop_api_url),
     "the shop's REST API base (Magento style: {base}/rest/V1/orders/{id}); empty: no look-ups"},
    {"shop_api_token", T_STRING, "", 0, 0, NULL, SECRET, check_printable, OFF(shop_api_token),
     "bearer token for the shop API; better ORDERQ_SHOP_API_TOKEN or shop_api_token_file"},
    {"shop_api_token_file", T_STRING, "", 0, 0, NULL, 0, NULL, OFF(shop_api_token_file),
     "file holding the shop API token (its first line)"},
    {"shop_api_timeout_ms", T_DURATION, "10s", 500, 120000, NULL, 0, NULL, OFF(shop_api_timeout_ms),
     "longest a shop API request may take, connect to last byte"},
    {"intake", T_STRING, "", 0, 0, NULL, JSONVAL, check_intake, OFF(intake),
     "a shop's own message format per event code: where the code, identifier and event_data "
     "come from (JSON; docs/events.md); empty: the orderq envelope everywhere"},
    {"webhooks_file", T_STRING, "", 0, 0, NULL, 0, NULL, OFF(webhooks_file),
     "JSON file mapping event codes to webhook endpoints (docs/webhooks.md); empty: none"},
    {"http_addr", T_STRING, "127.0.0.1:9464", 0, 0, NULL, 0, check_hostport, OFF(http_addr),
     "host:port for /metrics, /healthz and /readyz (empty: off)"},
    {"http_max_connections", T_INT, "64", 1, 1024, NULL, 0, NULL, OFF(http_max_connections),
     "connections open at once on http_addr; more wait in the kernel's backlog"},
    {"http_max_connections_per_ip", T_INT, "16", 1, 1024, NULL, 0, NULL,
     OFF(http_max_connections_per_ip),
     "connections open at once on http_addr from one address; more are closed at once"},
    {"http_timeout_ms", T_DURATION, "5s", 1000, 600000, NULL, 0, NULL, OFF(http_timeout_ms),
     "an http_addr connection silent this long is closed (whole seconds)"},
    {"metrics_db_interval_ms", T_DURATION, "30s", 1000, 3600000, NULL, 0, NULL,
     OFF(metrics_db_interval_ms),
     "how often one thread reads the database gauges of /metrics (outbox backlog, ledger rows, "
     "dead letters by class); a scrape never queries MySQL"},
    {"instance_id", T_STRING, "", 0, 0, NULL, 0, check_instance_id, OFF(instance_id),
     "this process' name in the ledger (default host:pid)"},
    {"shop_exchange", T_STRING, "shop.events", 0, 0, NULL, NONEMPTY, oq_amqp_name_check,
     OFF(shop_exchange), "the shop's topic exchange the work queues are bound to"},
    {"queue_prefix", T_STRING, "orderq", 0, 0, NULL, NONEMPTY, oq_amqp_name_check,
     OFF(queue_prefix), "work queues are named <prefix>.<event_code>"},
    {"delay_exchange", T_STRING, "orderq.delay", 0, 0, NULL, NONEMPTY, oq_amqp_name_check,
     OFF(delay_exchange), "headers exchange in front of the delay tier queues"},
    {"dead_exchange", T_STRING, "orderq.dead", 0, 0, NULL, NONEMPTY, oq_amqp_name_check,
     OFF(dead_exchange), "exchange for messages that cannot succeed"},
    {"dead_queue", T_STRING, "orderq.dead", 0, 0, NULL, NONEMPTY, oq_amqp_name_check,
     OFF(dead_queue), "queue behind dead_exchange"},
    {"queue_type", T_ENUM, "quorum", 0, 0, "quorum|classic", 0, NULL, OFF(queue_type),
     "type of every queue orderq declares"},
    {"delivery_limit", T_INT, "20", 1, 1000, NULL, 0, NULL, OFF(delivery_limit),
     "quorum x-delivery-limit: redeliveries before the broker dead-letters a message"},
    {"prefetch", T_INT, "1000", 1, 65535, NULL, 0, NULL, OFF(prefetch),
     "basic.qos prefetch count per consumer channel"},
    {"max_message_bytes", T_INT, "1048576", 1024, 536870912, NULL, 0, NULL, OFF(max_message_bytes),
     "largest message body handled; a larger one is dead-lettered (class too_large) unparsed"},
    {"effect_prefetch", T_INT, "0", 0, 65535, NULL, 0, NULL, OFF(effect_prefetch),
     "prefetch of each queue whose handler calls out (mail, webhooks); 0: as many as the "
     "effect workers finish within half of consumer_timeout_ms at their slowest"},
    {"consumer_timeout_ms", T_DURATION, "30m", 60000, 604800000, NULL, 0, NULL,
     OFF(consumer_timeout_ms),
     "RabbitMQ's consumer_timeout (rabbitmq.conf): an unacked delivery older than this "
     "closes the channel; set it to the broker's"},
    {"batch_size", T_INT, "250", 1, 10000, NULL, 0, NULL, OFF(batch_size),
     "most deliveries handled in one MySQL transaction"},
    {"batch_window_ms", T_DURATION, "5ms", 0, 10000, NULL, 0, NULL, OFF(batch_window_ms),
     "longest wait for a batch to fill after its first delivery while a database worker is idle "
     "(then it also closes after 250 µs without a delivery; with every worker busy it fills on)"},
    {"retry_tiers", T_TIERS, "1s,5s,30s,2m,10m,1h", 0, 0, NULL, 0, NULL, 0,
     "delay before attempt 2, 3, ... (the last repeats); one delay queue each"},
    {"db_workers", T_INT, "2", 1, 16, NULL, 0, NULL, OFF(db_workers),
     "database worker threads per consumer (batches in flight = prefetch / batch_size)"},
    {"max_attempts", T_INT, "8", 1, 100, NULL, 0, NULL, OFF(max_attempts),
     "attempts before a transient failure is dead-lettered"},
    {"heartbeat_s", T_INT, "30", 0, 600, NULL, 0, NULL, OFF(heartbeat_s),
     "AMQP heartbeat in seconds (0: off)"},
    {"connect_timeout_ms", T_DURATION, "10s", 100, 600000, NULL, 0, NULL, OFF(connect_timeout_ms),
     "TCP and login timeout for RabbitMQ and MySQL"},
    {"shutdown_timeout_ms", T_DURATION, "10s", 0, 600000, NULL, 0, NULL, OFF(shutdown_timeout_ms),
     "on SIGTERM, time to finish the batch in hand"},
    {"coupon_code_length", T_INT, "12", 6, 32, NULL, 0, NULL, OFF(coupon_code_length),
     "random characters in a coupon code, after the rule's code_prefix"},
    {"coupon_code_alphabet", T_STRING, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 0, 0, NULL, NONEMPTY,
     check_alphabet, OFF(coupon_code_alphabet),
     "characters coupon codes are drawn from (no 0/O or 1/I by default)"},
    {"log_level", T_ENUM, "info", 0, 0, "debug|info|warn|error", 0, NULL, OFF(log_level),
     "lowest level written to stderr"},
    {"log_format", T_ENUM, "json", 0, 0, "json|text", 0, NULL, OFF(log_format),
     "json lines, or text for a person"},
};

#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

static const struct setting *find_setting(const char *name, size_t len)
{
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (strlen(settings[i].name) == len && strncmp(settings[i].name, name, len) == 0)
            return &settings[i];
    return NULL;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];
    if (la >= 63 || lb >= 63)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(prev));
    }
    return prev[lb];
}

/* " (did you mean "x"?)" for a near miss, else "". */
static void suggest(const char *name, char *buf, size_t len)
{
    size_t best = 3;
    const char *pick = NULL;
    buf[0] = '\0';
    for (size_t i = 0; i < N_SETTINGS; i++) {
        size_t d = edit_distance(name, settings[i].name);
        if (d < best) {
            best = d;
            pick = settings[i].name;
        }
    }
    if (pick != NULL)
        snprintf(buf, len, " (did you mean \"%s\"?)", pick);
}

int oq_duration_parse(const char *text, int64_t *ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1}};
    char *end = NULL;
    errno = 0;
    if (!isdigit((unsigned char)text[0]))
        return OQ_EINVAL;
    long long v = strtoll(text, &end, 10);
    if (errno != 0)
        return OQ_EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > INT64_MAX / units[i].ms)
                return OQ_EINVAL;
            *ms = (int64_t)v * units[i].ms;
            return 0;
        }
    }
    return OQ_EINVAL;
}

void oq_duration_format(int64_t ms, char *buf, size_t buflen)
{
    if (ms != 0 && ms % 86400000 == 0)
        snprintf(buf, buflen, "%lldd", (long long)(ms / 86400000));
    else if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, buflen, "%lldh", (long long)(ms / 3600000));
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, buflen, "%lldm", (long long)(ms / 60000));
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(buf, buflen, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, buflen, "%lldms", (long long)ms);
}

static int parse_enum(const char *choices, const char *value)
{
    int index = 0;
    size_t vlen = strlen(value);
    for (const char *p = choices;; index++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vlen && strncmp(p, value, len) == 0)
            return index;
        if (bar == NULL)
            return -1;
        p = bar + 1;
    }
}

/* Copy out choice number `index` of "a|b|c". */
static void enum_name(const char *choices, int index, char *buf, size_t len)
{
    const char *p = choices;
    for (int i = 0; i < index && p != NULL; i++) {
        p = strchr(p, '|');
        if (p != NULL)
            p++;
    }
    const char *bar = p ? strchr(p, '|') : NULL;
    snprintf(buf, len, "%.*s", p ? (int)(bar ? (size_t)(bar - p) : strlen(p)) : 0, p ? p : "");
}

static int parse_tiers(struct oq_config *cfg, const char *value, char *why, size_t whylen)
{
    int64_t tiers[OQ_MAX_RETRY_TIERS];
    size_t n = 0;
    const char *p = value;
    while (*p != '\0') {
        char item[32];
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len > 0 && *p == ' ') {
            p++;
            len--;
        }
        if (len == 0 || len >= sizeof(item) || n == OQ_MAX_RETRY_TIERS) {
            snprintf(why, whylen, "expected 1 to %d durations separated by commas, as 1s,5s,30s",
                     OQ_MAX_RETRY_TIERS);
            return OQ_EINVAL;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (oq_duration_parse(item, &tiers[n]) != 0 || tiers[n] < 1 || tiers[n] > 86400000LL * 7) {
            snprintf(why, whylen,
                     "tier \"%s\" is not a duration from 1ms to 7d (as 500ms, 5s, 2m, 1h)", item);
            return OQ_EINVAL;
        }
        if (n > 0 && tiers[n] <= tiers[n - 1]) {
            snprintf(why, whylen, "tiers must grow: \"%s\" is not longer than the one before",
                     item);
            return OQ_EINVAL;
        }
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        snprintf(why, whylen, "expected at least one duration, as 1s,5s,30s");
        return OQ_EINVAL;
    }
    memcpy(cfg->retry_tiers_ms, tiers, n * sizeof(tiers[0]));
    cfg->n_retry_tiers = n;
    return 0;
}

/* Parse and store one value; on failure `why` says what was expected. */
static int apply(struct oq_config *cfg, const struct setting *s, const char *value, char *why,
                 size_t whylen)
{
    char *base = (char *)cfg;
    switch (s->type) {
    case T_STRING: {
        if ((s->flags & NONEMPTY) && *value == '\0') {
            snprintf(why, whylen, "expected a value, got an empty string");
            return OQ_EINVAL;
        }
        if (s->check != NULL && s->check(value, why, whylen) != 0)
            return OQ_EINVAL;
        char *copy = strdup(value);
        if (copy == NULL)
            return OQ_ENOMEM;
        char **slot = (char **)(void *)(base + s->offset);
        free(*slot);
        *slot = copy;
        return 0;
    }
    case T_INT:
    case T_DURATION: {
        int64_t v = 0;
        int bad;
        if (s->type == T_INT) {
            char *end = NULL;
            errno = 0;
            long long ll = strtoll(value, &end, 10);
            bad = errno != 0 || end == value || *end != '\0';
            v = ll;
        } else {
            bad = oq_duration_parse(value, &v) != 0;
        }
        if (bad || v < s->min || v > s->max) {
            if (s->type == T_INT)
                snprintf(why, whylen, "expected an integer from %lld to %lld, got \"%s\"",
                         (long long)s->min, (long long)s->max, value);
            else {
                char lo[32], hi[32];
                oq_duration_format(s->min, lo, sizeof(lo));
                oq_duration_format(s->max, hi, sizeof(hi));
                snprintf(why, whylen,
                         "expected a duration from %s to %s (as 250ms, 5s, 2m), got \"%s\"", lo, hi,
                         value);
            }
            return OQ_EINVAL;
        }
        *(int64_t *)(void *)(base + s->offset) = v;
        return 0;
    }
    case T_ENUM: {
        int index = parse_enum(s->choices, value);
        if (index < 0) {
            snprintf(why, whylen, "expected one of %s, got \"%s\"", s->choices, value);
            return OQ_EINVAL;
        }
        *(int *)(void *)(base + s->offset) = index;
        return 0;
    }
    case T_TIERS:
        return parse_tiers(cfg, value, why, whylen);
    }
    return OQ_EINVAL;
}

static int set_setting(struct oq_config *cfg, const struct setting *s, const char *value,
                       enum oq_config_source src, const char *where, char *err, size_t errlen)
{
    char why[400];
    int rc = apply(cfg, s, value, why, sizeof(why));
    if (rc == OQ_ENOMEM) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s (%s): %s", s->name, where, why);
        return OQ_ECONFIG;
    }
    struct oq_config_origin *o = &cfg->origin[s - settings];
    o->src = src;
    snprintf(o->where, sizeof(o->where), "%s", where);
    return 0;
}

struct oq_config *oq_config_new(void)
{
    char err[OQ_ERRLEN];
    struct oq_config *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return NULL;
    cfg->origin = calloc(N_SETTINGS, sizeof(*cfg->origin));
    if (cfg->origin == NULL)
        goto fail;
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (set_setting(cfg, &settings[i], settings[i].def, OQ_SRC_DEFAULT, "default", err,
                        sizeof(err)) != 0)
            goto fail; /* a default that fails its own check is a bug, or ENOMEM */
    return cfg;
fail:
    oq_config_free(cfg);
    return NULL;
}

void oq_config_free(struct oq_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].type == T_STRING)
            free(*(char **)(void *)((char *)cfg + settings[i].offset));
    free(cfg->origin);
    free(cfg);
}

int oq_config_set(struct oq_config *cfg, const char *name, const char *value,
                  enum oq_config_source src, const char *where, char *err, size_t errlen)
{
    const struct setting *s = find_setting(name, strlen(name));
    if (s == NULL) {
        char hint[96];
        suggest(name, hint, sizeof(hint));
        snprintf(err, errlen, "%s: unknown setting \"%s\"%s", where, name, hint);
        return OQ_ENOTFOUND;
    }
    return set_setting(cfg, s, value, src, where, err, errlen);
}

/* ---- JSON file ---------------------------------------------------------- */

struct file_parse {
    struct oq_config *cfg;
    yajl_handle yh;
    const char *path;
    const unsigned char *text;
    size_t len;
    int at_eof; /* yajl_complete_parse resets its byte count: use len */
    int depth;
    const struct setting *key; /* the setting whose value comes next */
    char tiers[512];           /* retry_tiers given as an array, joined */
    int in_tiers;
    char *list; /* a LIST setting given as an array: its strings joined by "," */
    int in_list;
    int capture;         /* inside a JSONVAL setting's object: its nesting, else 0 */
    size_t capture_from; /* the offset of its '{' */
    int failed;
    char *err;
    size_t errlen;
};

/* "path:line:col" of the token yajl has just read. */
static void file_where(struct file_parse *fp, char *buf, size_t len)
{
    size_t off = fp->at_eof ? fp->len : yajl_get_bytes_consumed(fp->yh);
    unsigned line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (fp->text[i] == '\n') {
            line++;
            col = 1;
        } else
            col++;
    }
    snprintf(buf, len, "%s:%u:%u", fp->path, line, col);
}

static int file_fail(struct file_parse *fp, const char *what)
{
    char where[256];
    file_where(fp, where, sizeof(where));
    if (fp->key != NULL) /* "name (path:l:c): what", as every other source */
        snprintf(fp->err, fp->errlen, "%s (%s): %s", fp->key->name, where, what);
    else
        snprintf(fp->err, fp->errlen, "%s: %s", where, what);
    fp->failed = 1;
    return 0;
}

static int file_fail(struct file_parse *fp, const char *what);

/* One node's URL of a LIST setting given as a JSON array. */
static int list_item(struct file_parse *fp, const char *value, int is_string)
{
    if (!is_string)
        return file_fail(fp, "expected a list of URL strings");
    if (strchr(value, ',') != NULL)
        return file_fail(fp, "a node's URL holds a comma; write it as %2C");
    size_t used = fp->list ? strlen(fp->list) : 0, n = strlen(value);
    char *grown = realloc(fp->list, used + n + 2);
    if (grown == NULL)
        return file_fail(fp, "out of memory");
    snprintf(grown + used, n + 2, "%s%s", used ? "," : "", value);
    fp->list = grown;
    return 1;
}

static int file_value(struct file_parse *fp, const char *value, int is_string)
{
    char where[256];
    if (fp->depth != 1 || fp->key == NULL)
        return file_fail(fp, "expected an object of settings, as {\"prefetch\": 500}");
    if (fp->in_list)
        return list_item(fp, value, is_string);
    if (fp->in_tiers) {
        size_t used = strlen(fp->tiers);
        snprintf(fp->tiers + used, sizeof(fp->tiers) - used, "%s%s", used ? "," : "", value);
        return 1;
    }
    if (!is_string && fp->key->type == T_STRING)
        return file_fail(fp, "expected a string");
    if (!is_string && fp->key->type == T_ENUM) {
        char why[160];
        snprintf(why, sizeof(why), "expected one of %s as a string", fp->key->choices);
        return file_fail(fp, why);
    }
    file_where(fp, where, sizeof(where));
    if (set_setting(fp->cfg, fp->key, value, OQ_SRC_FILE, where, fp->err, fp->errlen) != 0) {
        fp->failed = 1;
        return 0;
    }
    fp->key = NULL;
    return 1;
}

/* A scalar where no setting's value can be: the top level, or nested. */
static int misplaced(const struct file_parse *fp)
{
    return fp->key == NULL || fp->depth != 1;
}

/* A JSONVAL setting written as an object: its text, as written, is the
 * value (checked by the setting's own check). Returns 1 while inside it. */
static int captured(struct file_parse *fp, int open, int close)
{
    if (fp->capture == 0)
        return 0;
    fp->capture += open - close;
    if (fp->capture > 0)
        return 1;
    size_t to = yajl_get_bytes_consumed(fp->yh);
    char *value = to > fp->capture_from
                      ? strndup((const char *)fp->text + fp->capture_from, to - fp->capture_from)
                      : NULL;
    if (value == NULL) {
        file_fail(fp, "out of memory");
        return 1;
    }
    fp->depth--;
    (void)file_value(fp, value, 1);
    free(value);
    return 1;
}

static int on_null(void *ctx)
{
    if (captured(ctx, 0, 0))
        return 1;
    if (misplaced(ctx))
        return file_value(ctx, "", 0);
    return file_fail(ctx, "expected a value, got null");
}

static int on_bool(void *ctx, int b)
{
    (void)b;
    if (captured(ctx, 0, 0))
        return 1;
    if (misplaced(ctx))
        return file_value(ctx, "", 0);
    return file_fail(ctx, "expected a number or a string, got a boolean");
}

static int on_number(void *ctx, const char *s, size_t len)
{
    char buf[64];
    struct file_parse *fp = ctx;
    if (captured(fp, 0, 0))
        return 1;
    if (misplaced(fp) || fp->in_list)
        return file_value(fp, "", 0);
    if ((fp->key->type == T_INT || fp->key->type == T_DURATION || fp->key->type == T_TIERS) &&
        memchr(s, '.', len) == NULL && memchr(s, 'e', len) == NULL && memchr(s, 'E', len) == NULL &&
        len < sizeof(buf)) {
        memcpy(buf, s, len);
        buf[len] = '\0';
        return file_value(fp, buf, 0);
    }
    return file_fail(fp, fp->key && fp->key->type == T_INT ? "expected an integer"
                                                           : "expected a string");
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    struct file_parse *fp = ctx;
    if (captured(fp, 0, 0))
        return 1;
    char *value = strndup((const char *)s, len);
    if (value == NULL)
        return file_fail(fp, "out of memory");
    if (strlen(value) != len) {
        free(value);
        return file_fail(fp, "a string holds a NUL byte");
    }
    int rc = file_value(fp, value, 1);
    free(value);
    return rc;
}

static int on_map_key(void *ctx, const unsigned char *s, size_t len)
{
    struct file_parse *fp = ctx;
    if (captured(fp, 0, 0))
        return 1;
    fp->key = find_setting((const char *)s, len);
    if (fp->key == NULL) {
        char name[80], hint[96], what[200];
        snprintf(name, sizeof(name), "%.*s", (int)(len < 70 ? len : 70), s);
        suggest(name, hint, sizeof(hint));
        snprintf(what, sizeof(what), "unknown setting \"%s\"%s", name, hint);
        return file_fail(fp, what);
    }
    return 1;
}

static int on_start_map(void *ctx)
{
    struct file_parse *fp = ctx;
    if (captured(fp, 1, 0))
        return 1;
    if (fp->depth == 1 && fp->key != NULL && (fp->key->flags & JSONVAL)) {
        fp->depth++;
        fp->capture = 1;
        fp->capture_from = yajl_get_bytes_consumed(fp->yh) - 1; /* its '{' */
        return 1;
    }
    if (++fp->depth != 1)
        return file_fail(fp, "expected a string or number, got an object");
    return 1;
}

static int on_end_map(void *ctx)
{
    struct file_parse *fp = ctx;
    if (captured(fp, 0, 1))
        return !fp->failed;
    fp->depth--;
    return 1;
}

static int on_start_array(void *ctx)
{
    struct file_parse *fp = ctx;
    if (captured(fp, 1, 0))
        return 1;
    if (fp->depth == 1 && fp->key != NULL && fp->key->type == T_TIERS && !fp->in_tiers) {
        fp->in_tiers = 1;
        fp->tiers[0] = '\0';
        return 1;
    }
    if (fp->depth == 1 && fp->key != NULL && (fp->key->flags & LIST) && !fp->in_list) {
        fp->in_list = 1;
        free(fp->list);
        fp->list = NULL;
        return 1;
    }
    return file_fail(fp, fp->depth == 0 ? "expected an object of settings, got an array"
                                        : "expected a string or number, got an array");
}

static int on_end_array(void *ctx)
{
    struct file_parse *fp = ctx;
    if (captured(fp, 0, 1))
        return 1;
    if (fp->in_list) {
        fp->in_list = 0;
        if (fp->list == NULL)
            return file_fail(fp, "expected at least one URL in the list");
        int rc = file_value(fp, fp->list, 1);
        free(fp->list);
        fp->list = NULL;
        return rc;
    }
    fp->in_tiers = 0;
    return file_value(fp, fp->tiers, 1);
}

static const yajl_callbacks file_callbacks = {
    on_null,      on_bool,    NULL,       NULL,           on_number,    on_string,
    on_start_map, on_map_key, on_end_map, on_start_array, on_end_array,
};

int oq_config_load_text(struct oq_config *cfg, const char *path, const char *text, size_t len,
                        char *err, size_t errlen)
{
    int rc = OQ_ECONFIG;
    struct file_parse fp = {.cfg = cfg, .path = path, .err = err, .errlen = errlen};
    size_t blank = 0;

    fp.text = (const unsigned char *)text;
    fp.len = len;
    while (blank < len && strchr(" \t\r\n", text[blank]) != NULL && text[blank] != '\0')
        blank++;
    if (blank == len) {
        snprintf(err, errlen, "%s: empty file; expected a JSON object of settings", path);
        goto out;
    }
    fp.yh = yajl_alloc(&file_callbacks, NULL, &fp);
    if (fp.yh == NULL) {
        rc = OQ_ENOMEM;
        goto out;
    }
    yajl_config(fp.yh, yajl_allow_comments, 1);
    yajl_status st = yajl_parse(fp.yh, (const unsigned char *)text, len);
    if (st == yajl_status_ok) {
        fp.at_eof = 1;
        st = yajl_complete_parse(fp.yh);
    }
    if (fp.failed)
        goto out;
    if (st != yajl_status_ok) {
        char where[256];
        unsigned char *msg = yajl_get_error(fp.yh, 0, (const unsigned char *)text, len);
        fp.key = NULL;
        file_where(&fp, where, sizeof(where));
        size_t n = msg ? strcspn((char *)msg, "\n") : 0; /* yajl ends it with a newline */
        snprintf(err, errlen, "%s: not valid JSON: %.*s", where, (int)n, msg ? (char *)msg : "");
        yajl_free_error(fp.yh, msg);
        goto out;
    }
    rc = 0;
out:
    if (fp.yh != NULL)
        yajl_free(fp.yh);
    free(fp.list);
    return rc;
}

int oq_config_load_file(struct oq_config *cfg, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (oq_read_file(path, 1u << 24, &text, &len) != 0) { /* a 16 MiB config is a mistake */
        snprintf(err, errlen, "config file %s: cannot read it: %s", path, strerror(errno));
        return OQ_EIO;
    }
    int rc = oq_config_load_text(cfg, path, text, len, err, errlen);
    free(text);
    return rc;
}

/* ---- environment ------------------------------------------------------- */

static int env_is_ours_not_setting(const char *name)
{
    static const char *const skip[] = {"CONFIG", "TEST_", "STATE_DIR", "CACHE_DIR", "BIN"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
        size_t n = strlen(skip[i]);
        if (strncmp(name, skip[i], n) == 0 && (skip[i][n - 1] == '_' || name[n] == '='))
            return 1;
    }
    return 0;
}

int oq_config_load_env(struct oq_config *cfg, const char *const *envp, char *unknown,
                       size_t unknownlen, char *err, size_t errlen)
{
    if (unknown != NULL && unknownlen > 0)
        unknown[0] = '\0';
    for (; envp != NULL && *envp != NULL; envp++) {
        const char *entry = *envp;
        if (strncmp(entry, "ORDERQ_", 7) != 0)
            continue;
        const char *name = entry + 7, *eq = strchr(name, '=');
        if (eq == NULL || env_is_ours_not_setting(name))
            continue;
        char key[80], where[96];
        size_t n = (size_t)(eq - name);
        if (n >= sizeof(key))
            n = sizeof(key) - 1;
        for (size_t i = 0; i < n; i++)
            key[i] = (char)tolower((unsigned char)name[i]);
        key[n] = '\0';
        const struct setting *s = find_setting(key, n);
        if (s == NULL) {
            if (unknown != NULL && unknownlen > 0) {
                size_t used = strlen(unknown);
                snprintf(unknown + used, unknownlen - used, "%sORDERQ_%.*s", used ? ", " : "",
                         (int)n, name);
            }
            continue;
        }
        snprintf(where, sizeof(where), "ORDERQ_%.*s", (int)n, name);
        int rc = set_setting(cfg, s, eq + 1, OQ_SRC_ENV, where, err, errlen);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The three exchanges must differ, and the dead-letter queue must not be a
 * work or delay queue: the broker would refuse the declare much later. */
static int check_name_collisions(const struct oq_config *cfg, char *err, size_t errlen)
{
    const char *ex[][2] = {{"shop_exchange", cfg->shop_exchange},
                           {"delay_exchange", cfg->delay_exchange},
                           {"dead_exchange", cfg->dead_exchange}};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = i + 1; j < 3; j++)
            if (strcmp(ex[i][1], ex[j][1]) == 0) {
                snprintf(err, errlen, "%s (%s) and %s (%s) are both \"%s\"; expected two names",
                         ex[i][0], oq_config_origin(cfg, ex[i][0]), ex[j][0],
                         oq_config_origin(cfg, ex[j][0]), ex[i][1]);
                return OQ_ECONFIG;
            }
    size_t plen = strlen(cfg->queue_prefix), dlen = strlen(cfg->delay_exchange);
    const char *clash = NULL;
    if (strncmp(cfg->dead_queue, cfg->queue_prefix, plen) == 0 && cfg->dead_queue[plen] == '.')
        for (size_t i = 0; i <= oq_event_route_count; i++)
            if (strcmp(cfg->dead_queue + plen + 1, i < oq_event_route_count
                                                       ? oq_event_routes[i].event_code
                                                       : OQ_WEBHOOK_QUEUE) == 0)
                clash = "a work queue";
    if (strncmp(cfg->dead_queue, cfg->delay_exchange, dlen) == 0 && cfg->dead_queue[dlen] == '.')
        clash = "a delay tier queue";
    if (clash != NULL) {
        snprintf(err, errlen,
                 "dead_queue (%s) \"%s\" is also the name of %s; expected another name",
                 oq_config_origin(cfg, "dead_queue"), cfg->dead_queue, clash);
        return OQ_ECONFIG;
    }
    return 0;
}

const char *oq_config_origin(const struct oq_config *cfg, const char *name)
{
    const struct setting *s = find_setting(name, strlen(name));
    return s ? cfg->origin[s - settings].where : "?";
}

/* The longest a delivery can wait in a delay tier: attempt n waits tier n
 * (the last repeats) and attempt max_attempts is not retried, so tiers
 * past max_attempts - 1 are never used. 0 when nothing is retried. */
static int64_t longest_retry_wait_ms(const struct oq_config *cfg)
{
    size_t used = (size_t)(cfg->max_attempts - 1);
    if (used > cfg->n_retry_tiers)
        used = cfg->n_retry_tiers;
    return used > 0 ? cfg->retry_tiers_ms[used - 1] : 0;
}

/* A lease is abandoned once no delivery can come back for it: one that
 * found it held waits at most the longest retry tier. Left at its default,
 * sweep_after_ms follows the tiers and the lease (with one lease of room
 * for a backlog or a restart); given, it may not be shorter than that
 * wait, or the sweeper would park a send whose delivery is on its way
 * back. */
static int check_sweep_after(struct oq_config *cfg, char *err, size_t errlen)
{
    const struct setting *s = find_setting("sweep_after_ms", strlen("sweep_after_ms"));
    int64_t wait = longest_retry_wait_ms(cfg);
    if (cfg->origin[s - settings].src == OQ_SRC_DEFAULT) {
        cfg->sweep_after_ms = wait + cfg->effect_lease_ms;
        return 0;
    }
    if (cfg->sweep_after_ms < wait) {
        char given[32], longest[32];
        oq_duration_format(cfg->sweep_after_ms, given, sizeof(given));
        oq_duration_format(wait, longest, sizeof(longest));
        snprintf(err, errlen,
                 "sweep_after_ms (%s) is %s but a retry can wait %s in a delay tier "
                 "(retry_tiers (%s) with max_attempts (%s)); expected at least %s, or the lease "
                 "sweeper could mark a send unknown while its delivery is on its way back",
                 oq_config_origin(cfg, "sweep_after_ms"), given, longest,
                 oq_config_origin(cfg, "retry_tiers"), oq_config_origin(cfg, "max_attempts"),
                 longest);
        return OQ_ECONFIG;
    }
    return 0;
}

/* Every user on the host reads a process' flags (ps, /proc/PID/cmdline);
 * its environment only the same user and root. Say so when a secret came
 * as a flag, once, at start. */
static void warn_secret_flags(const struct oq_config *cfg)
{
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        if (cfg->origin[i].src != OQ_SRC_FLAG || s->type != T_STRING ||
            !(s->flags & (SECRET | URL)))
            continue;
        const char *v = *(char *const *)(const void *)((const char *)cfg + s->offset);
        char *shown = (s->flags & LIST)  ? oq_url_redact_list(v)
                      : (s->flags & URL) ? oq_url_redact(v)
                                         : NULL;
        int secret = (s->flags & SECRET) ? v[0] != '\0' : shown == NULL || strstr(shown, "***");
        free(shown);
        if (!secret)
            continue;
        char env[64];
        size_t j = 0;
        for (; j < sizeof(env) - 1 && s->name[j]; j++)
            env[j] = (char)toupper((unsigned char)s->name[j]);
        env[j] = '\0';
        char file[80];
        snprintf(file, sizeof(file), "%s_file", s->name); /* smtp_password_file */
        int has_file = find_setting(file, strlen(file)) != NULL;
        oq_warn("%s (%s) holds a secret, and flags show in ps to every user on this host; set it "
                "in the config file or as ORDERQ_%s%s%s",
                s->name, cfg->origin[i].where, env, has_file ? ", or use " : "",
                has_file ? file : "");
    }
}

/* Left at its default, smtp_tls is required except on loopback, where no
 * one can strip STARTTLS and a local relay often offers none. */
static void settle_smtp_tls(struct oq_config *cfg)
{
    const struct setting *s = find_setting("smtp_tls", strlen("smtp_tls"));
    if (cfg->origin[s - settings].src == OQ_SRC_DEFAULT && oq_url_is_loopback(cfg->smtp_url))
        cfg->smtp_tls = OQ_SMTP_TLS_OPPORTUNISTIC;
}

/* mysql_url's weakest ssl= mode over its hosts, or -1 when it does not
 * parse (checked elsewhere). */
static int mysql_ssl_mode(const char *url)
{
    struct oq_mysql_hosts hosts;
    char err[OQ_ERRLEN];
    int mode = OQ_MYSQL_SSL_VERIFY_IDENTITY;
    if (oq_mysql_hosts_parse(url, &hosts, err, sizeof(err)) != 0)
        return -1;
    for (size_t i = 0; i < hosts.n; i++) {
        const struct oq_mysql_url *u = &hosts.host[i];
        int m =
            u->socket != NULL ? OQ_MYSQL_SSL_VERIFY_IDENTITY : (int)u->ssl; /* a socket is local */
        if (m < mode)
            mode = m;
    }
    oq_mysql_hosts_clear(&hosts);
    return mode;
}

/* Settings that would send credentials or customer data in clear, or
 * unchecked, across a network: allowed (a private network may be trusted),
 * but said at every start. */
static void warn_cleartext(const struct oq_config *cfg)
{
    if (cfg->smtp_tls != OQ_SMTP_TLS_REQUIRED && oq_url_is_cleartext_remote(cfg->smtp_url, "smtp"))
        oq_warn("smtp_tls (%s) is %s for an SMTP server that is not on loopback: an attacker "
                "on the path can strip STARTTLS and read the AUTH password and the mail; "
                "expected required",
                oq_config_origin(cfg, "smtp_tls"),
                cfg->smtp_tls == OQ_SMTP_TLS_OFF ? "off" : "opportunistic");
    if (oq_url_is_cleartext_remote(cfg->shop_api_url, "http"))
        oq_warn("shop_api_url (%s) is http:// to a host that is not loopback: the token and "
                "the answers cross the network in clear; expected https://",
                oq_config_origin(cfg, "shop_api_url"));
    if (oq_url_list_is_cleartext_remote(cfg->amqp_url, "amqp"))
        oq_warn("amqp_url (%s) is amqp:// to a host that is not loopback: the password and "
                "every event cross the network in clear; expected amqps://",
                oq_config_origin(cfg, "amqp_url"));
    if (oq_url_is_cleartext_remote(cfg->amqp_mgmt_url, "http"))
        oq_warn("amqp_mgmt_url (%s) is http:// to a host that is not loopback: the broker "
                "password crosses the network in clear; expected https://",
                oq_config_origin(cfg, "amqp_mgmt_url"));
    int ssl = mysql_ssl_mode(cfg->mysql_url);
    if (ssl >= 0 && ssl < OQ_MYSQL_SSL_VERIFY_CA && !oq_url_list_is_loopback(cfg->mysql_url))
        oq_warn("mysql_url (%s) has ssl=%s for a server that is not on loopback: %s; expected "
                "ssl=verify_identity (or verify_ca) with ssl_ca",
                oq_config_origin(cfg, "mysql_url"),
                ssl == OQ_MYSQL_SSL_DISABLED ? "disabled" : "required",
                ssl == OQ_MYSQL_SSL_DISABLED
                    ? "the ledger's rows cross the network in clear"
                    : "the server's certificate is not checked, so anyone on the path can "
                      "pose as it");
}

/* The AMQP TLS files: a client certificate needs its key (and the reverse),
 * and none of them means anything without amqps://, where leaving them
 * unused would send in clear what the operator meant to protect. */
static int check_amqp_tls(const struct oq_config *cfg, char *err, size_t errlen)
{
    if ((cfg->amqp_cert[0] == '\0') != (cfg->amqp_key[0] == '\0')) {
        snprintf(err, errlen, "amqp_cert (%s) and amqp_key (%s): expected both or neither",
                 oq_config_origin(cfg, "amqp_cert"), oq_config_origin(cfg, "amqp_key"));
        return OQ_ECONFIG;
    }
    static const char *const files[] = {"amqp_ca", "amqp_cert"};
    const char *const values[] = {cfg->amqp_ca, cfg->amqp_cert};
    int tls = strncasecmp(cfg->amqp_url, "amqps://", 8) == 0;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && !tls; i++) {
        if (values[i][0] == '\0')
            continue;
        snprintf(err, errlen,
                 "%s (%s) is set, but amqp_url (%s) is amqp://, which would not use it and "
                 "send in clear; expected amqps://",
                 files[i], oq_config_origin(cfg, files[i]), oq_config_origin(cfg, "amqp_url"));
        return OQ_ECONFIG;
    }
    return 0;
}

int oq_config_finish(struct oq_config *cfg, char *err, size_t errlen)
{
    if (cfg->instance_id[0] == '\0') {
        char host[256] = "localhost", id[300];
        if (gethostname(host, sizeof(host) - 1) != 0)
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        snprintf(id, sizeof(id), "%.*s:%ld", (int)(INSTANCE_ID_MAX - 21), host, (long)getpid());
        char *copy = strdup(id);
        if (copy == NULL)
            return OQ_ENOMEM;
        free(cfg->instance_id);
        cfg->instance_id = copy;
    }
    const struct setting *bs = find_setting("batch_size", strlen("batch_size"));
    if (cfg->batch_size > cfg->prefetch && cfg->origin[bs - settings].src == OQ_SRC_DEFAULT)
        cfg->batch_size = cfg->prefetch; /* only the default was too big: follow prefetch */
    if (cfg->batch_size > cfg->prefetch) {
        snprintf(err, errlen,
                 "batch_size (%s) is %lld but prefetch (%s) is %lld; expected batch_size <= "
                 "prefetch, or a batch could never fill",
                 oq_config_origin(cfg, "batch_size"), (long long)cfg->batch_size,
                 oq_config_origin(cfg, "prefetch"), (long long)cfg->prefetch);
        return OQ_ECONFIG;
    }
    if (cfg->effect_lease_ms <= cfg->smtp_timeout_ms) {
        snprintf(err, errlen,
                 "effect_lease_ms (%s) is %lld but smtp_timeout_ms (%s) is %lld; expected a "
                 "lease longer than a send may take, or a slow send would look abandoned",
                 oq_config_origin(cfg, "effect_lease_ms"), (long long)cfg->effect_lease_ms,
                 oq_config_origin(cfg, "smtp_timeout_ms"), (long long)cfg->smtp_timeout_ms);
        return OQ_ECONFIG;
    }
    if (check_sweep_after(cfg, err, errlen) != 0)
        return OQ_ECONFIG;
    if (check_name_collisions(cfg, err, errlen) != 0)
        return OQ_ECONFIG;
    if (check_amqp_tls(cfg, err, errlen) != 0)
        return OQ_ECONFIG;
    settle_smtp_tls(cfg);
    oq_log_set_level(cfg->log_level);
    oq_log_set_format(cfg->log_format);
    warn_secret_flags(cfg);
    warn_cleartext(cfg);
    return 0;
}

/* ---- output ------------------------------------------------------------ */

/* The text of a setting's value as it would be read back (not redacted). */
static void value_text(const struct oq_config *cfg, const struct setting *s, char *buf, size_t len)
{
    const char *base = (const char *)cfg;
    switch (s->type) {
    case T_STRING:
        snprintf(buf, len, "%s", *(char *const *)(const void *)(base + s->offset));
        break;
    case T_INT:
        snprintf(buf, len, "%lld", (long long)*(const int64_t *)(const void *)(base + s->offset));
        break;
    case T_DURATION:
        oq_duration_format(*(const int64_t *)(const void *)(base + s->offset), buf, len);
        break;
    case T_ENUM:
        enum_name(s->choices, *(const int *)(const void *)(base + s->offset), buf, len);
        break;
    case T_TIERS:
        buf[0] = '\0';
        for (size_t i = 0; i < cfg->n_retry_tiers; i++) {
            char one[32];
            size_t used = strlen(buf);
            oq_duration_format(cfg->retry_tiers_ms[i], one, sizeof(one));
            snprintf(buf + used, len - used, "%s%s", i ? "," : "", one);
        }
        break;
    }
}

/* JSON text as written in a file, on one line for the table. */
static char *one_line(const char *v)
{
    char *out = malloc(strlen(v) + 1), *o = out;
    for (; out != NULL && *v != '\0'; v++) {
        int blank = *v == ' ' || *v == '\t' || *v == '\r' || *v == '\n';
        if (!blank || (o > out && o[-1] != ' '))
            *o++ = blank ? ' ' : *v;
    }
    if (out != NULL)
        *o = '\0';
    return out;
}

/* The value as shown to people: secrets hidden, URLs through oq_url_redact.
 * Strings are redacted whole: a cut inside a URL's userinfo would no
 * longer parse, and the redactor cannot show what it cannot read. */
static char *shown_value(const struct oq_config *cfg, const struct setting *s)
{
    char buf[2048];
    if (s->type == T_STRING) {
        const char *v = *(char *const *)(const void *)((const char *)cfg + s->offset);
        if ((s->flags & SECRET) && v[0] != '\0')
            return strdup("***");
        if (s->flags & LIST) /* each node's URL: one parse of the whole would miss the rest */
            return oq_url_redact_list(v);
        if (s->flags & JSONVAL)
            return one_line(v);
        return (s->flags & URL) ? oq_url_redact(v) : strdup(v);
    }
    value_text(cfg, s, buf, sizeof(buf));
    return strdup(buf);
}

int oq_config_show(const struct oq_config *cfg, FILE *out, int json)
{
    if (json)
        fputs("{\n", out);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        char *shown = shown_value(cfg, s);
        if (shown == NULL)
            return OQ_ENOMEM;
        if (json) {
            fputs("  ", out);
            oq_json_fputs(out, s->name);
            fputs(": {\"value\": ", out);
            if ((s->type == T_INT) && !(s->flags & SECRET))
                fputs(shown, out);
            else
                oq_json_fputs(out, shown);
            fputs(", \"source\": ", out);
            oq_json_fputs(out, cfg->origin[i].where);
            fprintf(out, "}%s\n", i + 1 < N_SETTINGS ? "," : "");
        } else {
            fprintf(out, "%-20s %-50s %s\n", s->name, shown, cfg->origin[i].where);
        }
        free(shown);
    }
    if (json)
        fputs("}\n", out);
    return ferror(out) ? OQ_EIO : 0;
}

int oq_config_flag_name(const char *flag, char *buf, size_t buflen)
{
    if (strncmp(flag, "--", 2) != 0)
        return OQ_ENOTFOUND;
    flag += 2;
    size_t n = strlen(flag);
    if (n + 1 > buflen)
        return OQ_ENOTFOUND;
    for (size_t i = 0; i <= n; i++)
        buf[i] = flag[i] == '-' ? '_' : flag[i];
    return find_setting(buf, n) ? 0 : OQ_ENOTFOUND;
}

void oq_config_print_help(FILE *out)
{
    fputs("Settings (JSON key / ORDERQ_<KEY> env / --flag; flags win over env, env over the\n"
          "file given by --config or ORDERQ_CONFIG, the file over defaults).\n"
          "Flags show in ps to every user on this host: give passwords and tokens with\n"
          "smtp_password_file / shop_api_token_file, the config file or the environment.\n",
          out);
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const struct setting *s = &settings[i];
        char flag[64], env[64];
        size_t j = 0;
        for (; j < sizeof(flag) - 1 && s->name[j]; j++) {
            flag[j] = s->name[j] == '_' ? '-' : s->name[j];
            env[j] = (char)toupper((unsigned char)s->name[j]);
        }
        flag[j] = env[j] = '\0';
        fprintf(out, "  --%s, ORDERQ_%s\n      %s (default: %s)\n", flag, env, s->help,
                s->def[0] ? s->def : "empty");
    }
}
