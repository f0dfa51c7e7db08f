/* pace.c - publish -> ledger commit latency at a steady rate (bench/latency, row 5)
 *
 * Publishes N order.processing events to the shop exchange at a steady R
 * per second (event i is due at t0 + i/R on CLOCK_MONOTONIC, slept to with
 * an absolute clock_nanosleep), persistent, mandatory, with publisher
 * confirms read as frames between sends (never one round trip per event).
 * When a send is late by a whole interval or more, the rest of the
 * schedule moves back by as much: it never bursts to catch up. behind_max_ms
 * is the latest any event went out against the first schedule.
 *
 * A second thread polls the ledger every millisecond for the coupon_rules
 * rows of these events and takes, for each, the start of the first query
 * that saw it. A commit is therefore seen between 0 and one poll (1 ms
 * plus the query's own time, ~0.2 ms here) late: the latencies are upper
 * bounds by that much, and more when the machine is busy: the watcher is a
 * thread like any other and waits for a core (so does the publisher, whose
 * late wake-ups show in behind_max_ms and achieved_per_second). Percentiles
 * are exact (nearest rank) over the sorted per-event latencies.
 *
 * --sends FILE writes "<recipient> <send unix us>" per qualifying event, for
 * bench/latency to join with orderq_bench_smtp_sink's log.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/json.h"
#include "orderq/publish.h"

extern char **environ;

#define EXIT_USAGE       64
#define EXIT_UNAVAILABLE 69
#define PREFIX_MAX       64
#define ID_MAX           (PREFIX_MAX + 32)

struct args {
    long long rate, count, qualify_every, timeout_s;
    const char *prefix, *sends;
};

/* What the two threads share: the watcher fills seen_ns, the publisher
 * sent_ns; each reads the other's only after the join. */
struct run {
    const struct args *a;
    const struct oq_config *cfg;
    struct oq_db *db; /* the watcher's, opened before anything is published */
    int64_t *sent_ns, *sent_unix_us, *seen_ns;
    long long lowest; /* the lowest index not yet seen (watcher only) */
    atomic_llong committed;
    atomic_int stop;
    atomic_int db_failed; /* set once db_error is written */
    char db_error[OQ_ERRLEN];
    uint64_t acked, nacked, returned;
};

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t unix_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void sleep_until(int64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR)
        ;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: orderq_bench_pace --rate R --count N --prefix P [--qualify-every K]\n"
                "                         [--sends FILE] [--timeout S]\n"
                "Publishes N order.processing events at a steady R/s to the shop exchange and\n"
                "measures publish -> ledger commit latency (p50/p99/max, exact). Every K-th\n"
                "event (default 1: all) earns the MUG-1 coupon. --timeout: seconds to wait for\n"
                "the last commits (default 30). Settings from ORDERQ_AMQP_URL, ORDERQ_MYSQL_URL.\n"
                "Exit 0; 1 when not every event was committed; 64 bad argument; 69 a server\n"
                "could not be reached or refused an event.\n");
}

/* An integer flag value in [min, max]; exits 64 naming the flag. */
static long long int_arg(const char *flag, const char *text, long long min, long long max)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
        fprintf(stderr,
                "orderq_bench_pace: %s: expected an integer from %lld to %lld, got \"%s\"\n", flag,
                min, max, text);
        exit(EXIT_USAGE);
    }
    return v;
}

static void parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"rate", required_argument, NULL, 'r'},   {"count", required_argument, NULL, 'n'},
        {"prefix", required_argument, NULL, 'p'}, {"qualify-every", required_argument, NULL, 'k'},
        {"sends", required_argument, NULL, 's'},  {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    *a = (struct args){.qualify_every = 1, .timeout_s = 30};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            a->rate = int_arg("--rate", optarg, 1, 1000000);
            break;
        case 'n':
            a->count = int_arg("--count", optarg, 1, 10000000);
            break;
        case 'k':
            a->qualify_every = int_arg("--qualify-every", optarg, 1, 1000000);
            break;
        case 't':
            a->timeout_s = int_arg("--timeout", optarg, 1, 3600);
            break;
        case 'p':
            a->prefix = optarg;
            break;
        case 's':
            a->sends = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "orderq_bench_pace: %s: unknown option or missing value\n",
                    argv[optind - 1]);
            usage(stderr);
            exit(EXIT_USAGE);
        }
    }
    const char *missing = a->rate == 0    ? "--rate"
                          : a->count == 0 ? "--count"
                          : !a->prefix    ? "--prefix"
                                          : NULL;
    if (missing != NULL || optind < argc) {
        fprintf(stderr, "orderq_bench_pace: %s%s\n", missing ? missing : argv[optind],
                missing ? " is required" : ": unexpected argument");
        exit(EXIT_USAGE);
    }
    /* It becomes an identifier, an order id and an e-mail's local part. */
    size_t len = strlen(a->prefix);
    if (len == 0 || len > PREFIX_MAX ||
        strspn(a->prefix, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != len) {
        fprintf(stderr,
                "orderq_bench_pace: --prefix: expected 1 to %d letters, digits or -, got \"%s\"\n",
                PREFIX_MAX, a->prefix);
        exit(EXIT_USAGE);
    }
}

static void event_id(const struct args *a, long long i, char *out, size_t len)
{
    snprintf(out, len, "%s-%08lld_processing", a->prefix, i);
}

static void recipient(const struct args *a, long long i, char *out, size_t len)
{
    snprintf(out, len, "%s-%08lld@bench.example", a->prefix, i);
}

static int qualifies(const struct args *a, long long i)
{
    return i % a->qualify_every == 0;
}

/* The envelope as tests/system/gen_events.py writes it: 3 x MUG-1 at 25.00
 * earns the rule's coupon (threshold 50.00), 1 x does not. */
static char *event_body(const struct args *a, long long i)
{
    char id[ID_MAX], order[ID_MAX], email[ID_MAX], name[40];
    event_id(a, i, id, sizeof(id));
    snprintf(order, sizeof(order), "%s-%08lld", a->prefix, i);
    recipient(a, i, email, sizeof(email));
    snprintf(name, sizeof(name), "Customer %lld", i);
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "event_code", "order.processing");
    oq_json_gen_kv(g, "event_identifier", id);
    oq_json_gen_kv(g, "created_at", "2017-02-23T11:06:40Z");
    oq_json_gen_str(g, "event_data");
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "order_id", order);
    oq_json_gen_kv(g, "order_status", "processing");
    oq_json_gen_kv(g, "currency", "USD");
    oq_json_gen_str(g, "customer");
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "email", email);
    oq_json_gen_kv(g, "name", name);
    yajl_gen_map_close(g);
    oq_json_gen_str(g, "items");
    yajl_gen_array_open(g);
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "sku", "MUG-1");
    oq_json_gen_str(g, "qty");
    yajl_gen_integer(g, qualifies(a, i) ? 3 : 1);
    oq_json_gen_kv(g, "price", "25.00");
    oq_json_gen_kv(g, "original_price", "25.00");
    yajl_gen_map_close(g);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    return oq_json_gen_finish(g);
}

/* ---- the ledger watcher ---- */

struct poll_ctx {
    struct run *r;
    int64_t at_ns; /* when the query started: a row it sees committed before */
};

static int on_row(void *ctx, const char *const *values, unsigned n)
{
    struct poll_ctx *p = ctx;
    struct run *r = p->r;
    size_t plen = strlen(r->a->prefix);
    if (n < 1 || values[0] == NULL || strncmp(values[0], r->a->prefix, plen) != 0 ||
        values[0][plen] != '-')
        return 0;
    char *end = NULL;
    long long i = strtoll(values[0] + plen + 1, &end, 10);
    if (end == values[0] + plen + 1 || strcmp(end, "_processing") != 0 || i < 0 ||
        i >= r->a->count || r->seen_ns[i] != 0)
        return 0;
    r->seen_ns[i] = p->at_ns;
    atomic_fetch_add(&r->committed, 1);
    return 0;
}

/* One poll: the rows from the lowest index not yet seen to the last, so a
 * later batch committed before an earlier one (two database workers) is
 * seen too. Returns 0 or OQ_EDB. */
static int poll_ledger(struct run *r, struct oq_db *db)
{
    char lo[ID_MAX], hi[ID_MAX];
    event_id(r->a, r->lowest, lo, sizeof(lo));
    event_id(r->a, r->a->count - 1, hi, sizeof(hi));
    struct oq_db_param params[] = {OQ_STR("coupon_rules"), OQ_STR(lo), OQ_STR(hi)};
    struct poll_ctx p = {r, mono_ns()};
    int rc = oq_db_query_rows(db,
                              "SELECT event_identifier FROM event_ledger WHERE handler = ? AND "
                              "event_identifier >= ? AND event_identifier <= ?",
                              params, 3, on_row, &p);
    while (r->lowest < r->a->count && r->seen_ns[r->lowest] != 0)
        r->lowest++;
    return rc;
}

static void *watch(void *arg)
{
    struct run *r = arg;
    struct oq_db *db = r->db;
    int64_t next = mono_ns();
    while (!atomic_load(&r->stop) && r->lowest < r->a->count) {
        if (poll_ledger(r, db) != 0) {
            snprintf(r->db_error, sizeof(r->db_error), "polling the ledger: %s", oq_db_error(db));
            atomic_store(&r->db_failed, 1);
            break;
        }
        next += 1000000; /* every millisecond, on a fixed grid */
        int64_t now = mono_ns();
        if (next < now)
            next = now;
        sleep_until(next);
    }
    return NULL;
}

/* ---- the publisher ---- */

static void on_settled(void *ctx, uint64_t seq, enum oq_confirm outcome)
{
    struct run *r = ctx;
    (void)seq;
    if (outcome == OQ_CONFIRM_ACK)
        r->acked++;
    else
        r->nacked++;
}

static void on_returned(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *m)
{
    struct run *r = ctx;
    (void)why;
    (void)m;
    r->returned++;
}

/* Publish every event on schedule. Returns the largest lateness in ns, or
 * -1 when the broker failed (err says so). */
static int64_t publish_all(struct run *r, struct oq_publisher *pub, char *err, size_t errlen)
{
    const struct args *a = r->a;
    const int64_t interval = 1000000000LL / a->rate;
    int64_t t0 = mono_ns() + 1000000, shift = 0, behind_max = 0;
    for (long long i = 0; i < a->count; i++) {
        int64_t due = t0 + shift + (int64_t)(i * 1000000000LL / a->rate);
        sleep_until(due);
        int64_t late = mono_ns() - due;
        if (shift + late > behind_max)
            behind_max = shift + late;
        /* A wake-up late by less than an interval still leaves the next
         * event's slot ahead; later than that, the next would go out at
         * once: the rest of the schedule moves back instead (no burst). */
        if (late >= interval)
            shift += late;
        char id[ID_MAX];
        char *body = event_body(a, i);
        if (body == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        event_id(a, i, id, sizeof(id));
        amqp_basic_properties_t p;
        memset(&p, 0, sizeof(p));
        p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                   AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG;
        p.content_type = amqp_cstring_bytes("application/json");
        p.delivery_mode = 2;
        p.message_id = amqp_cstring_bytes(id);
        p.type = amqp_cstring_bytes("order.processing");
        r->sent_unix_us[i] = unix_us();
        p.timestamp = (uint64_t)(r->sent_unix_us[i] / 1000000);
        r->sent_ns[i] = mono_ns();
        int rc = oq_publish(pub, r->cfg->shop_exchange, "order.processing", 1, &p, body,
                            strlen(body), NULL);
        free(body);
        /* Read the confirms that arrived, without waiting for any. */
        if (rc != 0 || oq_publisher_keepalive(pub, err, errlen) != 0) {
            if (rc != 0)
                snprintf(err, errlen, "publishing event %lld failed", i);
            return -1;
        }
    }
    if (oq_publisher_wait(pub, 30000) != 0) {
        snprintf(err, errlen, "%zu events unconfirmed after 30 s", oq_publisher_in_flight(pub));
        return -1;
    }
    return behind_max;
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

/* The nearest-rank percentile of n sorted values. */
static int64_t percentile(const int64_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (pct * n + 99) / 100;
    return sorted[rank > 0 ? rank - 1 : 0];
}

static int write_sends(const struct run *r)
{
    FILE *f = fopen(r->a->sends, "w");
    if (f == NULL)
        return -1;
    for (long long i = 0; i < r->a->count; i++) {
        char to[ID_MAX];
        if (!qualifies(r->a, i))
            continue;
        recipient(r->a, i, to, sizeof(to));
        fprintf(f, "%s %" PRId64 "\n", to, r->sent_unix_us[i]);
    }
    return fclose(f);
}

static void report(const struct run *r, int64_t behind_ns)
{
    long long n = atomic_load(&r->committed);
    int64_t *lat = calloc((size_t)n + 1, sizeof(*lat));
    size_t k = 0;
    for (long long i = 0; lat != NULL && i < r->a->count; i++)
        if (r->seen_ns[i] != 0)
            lat[k++] = r->seen_ns[i] - r->sent_ns[i];
    if (lat != NULL && k > 0)
        qsort(lat, k, sizeof(*lat), cmp_i64);
    double p50 = k ? (double)percentile(lat, k, 50) / 1e6 : 0,
           p99 = k ? (double)percentile(lat, k, 99) / 1e6 : 0,
           max = k ? (double)lat[k - 1] / 1e6 : 0;
    /* What was kept: lower than rate when sends fell behind (behind_max_ms). */
    int64_t span = r->sent_ns[r->a->count - 1] - r->sent_ns[0];
    double achieved = span > 0 ? (double)(r->a->count - 1) * 1e9 / (double)span : 0;
    printf("{\"rate\": %lld, \"events\": %lld, \"committed\": %zu, \"p50_ms\": %.3f, \"p99_ms\": "
           "%.3f, \"max_ms\": %.3f, \"behind_max_ms\": %.3f, \"achieved_per_second\": %.0f}\n",
           r->a->rate, r->a->count, k, p50, p99, max, (double)behind_ns / 1e6, achieved);
    free(lat);
}

int main(int argc, char **argv)
{
    struct args a;
    struct run r;
    struct oq_config *cfg = oq_config_new();
    struct oq_broker *b = NULL;
    struct oq_publisher *pub = NULL;
    pthread_t watcher;
    int started = 0, code = EXIT_UNAVAILABLE;
    char err[OQ_ERRLEN * 2] = "";

    parse_args(argc, argv, &a);
    memset(&r, 0, sizeof(r));
    r.a = &a;
    r.sent_ns = calloc((size_t)a.count, sizeof(int64_t));
    r.sent_unix_us = calloc((size_t)a.count, sizeof(int64_t));
    r.seen_ns = calloc((size_t)a.count, sizeof(int64_t));
    if (cfg == NULL || r.sent_ns == NULL || r.sent_unix_us == NULL || r.seen_ns == NULL) {
        fprintf(stderr, "orderq_bench_pace: out of memory\n");
        return 1;
    }
    if (oq_config_load_env(cfg, (const char *const *)environ, NULL, 0, err, sizeof(err)) != 0 ||
        oq_config_finish(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "orderq_bench_pace: %s\n", err);
        code = EXIT_USAGE;
        goto out;
    }
    r.cfg = cfg;
    if (oq_db_open(cfg->mysql_url, 10000, 0, &r.db, err, sizeof(err)) != 0) {
        fprintf(stderr, "orderq_bench_pace: %s\n", err);
        goto out;
    }
    struct oq_publisher_callbacks cb = {on_settled, on_returned, &r};
    if (oq_publisher_connect(cfg, "bench-pace", 1, 65535, 1, &cb, &b, &pub, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "orderq_bench_pace: %s\n", err);
        goto out;
    }
    if (pthread_create(&watcher, NULL, watch, &r) != 0) {
        fprintf(stderr, "orderq_bench_pace: cannot start the ledger watcher\n");
        goto out;
    }
    started = 1;
    int64_t behind = publish_all(&r, pub, err, sizeof(err));
    if (behind < 0 || r.nacked > 0 || r.returned > 0) {
        fprintf(stderr, "orderq_bench_pace: %s%s (%" PRIu64 " refused, %" PRIu64 " unroutable)\n",
                err[0] ? err : "the broker did not take every event", "", r.nacked, r.returned);
        goto out;
    }
    int64_t deadline = mono_ns() + a.timeout_s * 1000000000LL;
    while (atomic_load(&r.committed) < a.count && mono_ns() < deadline &&
           !atomic_load(&r.db_failed))
        sleep_until(mono_ns() + 10000000);
    atomic_store(&r.stop, 1);
    pthread_join(watcher, NULL);
    started = 0;
    if (r.db_error[0] != '\0') {
        fprintf(stderr, "orderq_bench_pace: %s\n", r.db_error);
        goto out;
    }
    if (a.sends != NULL && write_sends(&r) != 0) {
        fprintf(stderr, "orderq_bench_pace: --sends %s: %s\n", a.sends, strerror(errno));
        code = 1;
        goto out;
    }
    report(&r, behind);
    code = atomic_load(&r.committed) == a.count ? 0 : 1;
    if (code != 0)
        fprintf(stderr, "orderq_bench_pace: %lld of %lld events committed after %lld s\n",
                atomic_load(&r.committed), a.count, a.timeout_s);
out:
    if (started) {
        atomic_store(&r.stop, 1);
        pthread_join(watcher, NULL);
    }
    oq_publisher_free(pub);
    oq_broker_close(b);
    oq_db_close(r.db);
    oq_config_free(cfg);
    free(r.sent_ns);
    free(r.sent_unix_us);
    free(r.seen_ns);
    return code;
}
