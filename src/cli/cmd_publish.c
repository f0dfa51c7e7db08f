/* cmd_publish.c - `orderq publish`: events from JSON lines to the shop exchange, confirmed
 *
 * For backfills, demos and tests. Many messages are in flight at once (a
 * window of publisher confirms), so it runs at broker speed, and it only
 * reports success for what the broker confirmed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "orderq/broker.h"
#include "orderq/event.h"
#include "orderq/publish.h"

struct tally {
    uint64_t lines, acked, nacked, returned;
    char first_returned[200];
};

static void on_settled(void *ctx, uint64_t seq, enum oq_confirm outcome)
{
    struct tally *t = ctx;
    (void)seq;
    if (outcome == OQ_CONFIRM_ACK)
        t->acked++;
    else
        t->nacked++;
}

static void on_returned(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *m)
{
    struct tally *t = ctx;
    (void)m;
    if (t->returned++ == 0)
        snprintf(t->first_returned, sizeof(t->first_returned), "%.*s", (int)why->routing_key.len,
                 (const char *)why->routing_key.bytes);
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void progress(const struct tally *t, const struct timespec *start, int final)
{
    double s = seconds_since(start);
    fprintf(stderr, "\rpublished %llu, confirmed %llu, %.0f/s%s", (unsigned long long)t->lines,
            (unsigned long long)t->acked, s > 0 ? (double)t->acked / s : 0.0, final ? "\n" : "   ");
}

/* Properties of one event message (the strings must outlive the publish). */
static amqp_basic_properties_t event_props(const char *message_id, const char *type)
{
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
               AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_APP_ID_FLAG;
    p.content_type = amqp_cstring_bytes("application/json");
    p.delivery_mode = 2; /* persistent */
    p.timestamp = (uint64_t)time(NULL);
    p.app_id = amqp_cstring_bytes("orderq");
    if (message_id != NULL) {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = amqp_cstring_bytes(message_id);
    }
    if (type != NULL) {
        p._flags |= AMQP_BASIC_TYPE_FLAG;
        p.type = amqp_cstring_bytes(type);
    }
    return p;
}

/* Publish every line of in; stops at the first line that is not an event
 * (unless raw). Returns an exit code. */
static int publish_lines(struct cli_cmd_ctx *ctx, FILE *in, struct oq_publisher *pub,
                         struct tally *t)
{
    const char *exchange =
        cli_opt(ctx, "--exchange") ? cli_opt(ctx, "--exchange") : ctx->cfg->shop_exchange;
    const char *key = cli_opt(ctx, "--routing-key");
    int raw = cli_opt(ctx, "--raw") != NULL, tty = isatty(STDERR_FILENO);
    char *line = NULL, err[OQ_ERRLEN];
    size_t cap = 0;
    ssize_t len;
    uint64_t lineno = 0;
    struct timespec start, last = {0, 0};
    int code = EX_OK;

    clock_gettime(CLOCK_MONOTONIC, &start);
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        struct oq_event ev = {0};
        if (!raw && oq_event_decode(line, (size_t)len, NULL, &ev, err, sizeof(err)) != 0) {
            cli_fail("publish: line %llu is not an event: %s (published %llu before it; "
                     "--raw publishes lines as they are)",
                     (unsigned long long)lineno, err, (unsigned long long)t->lines);
            code = EX_DATAERR;
            break;
        }
        amqp_basic_properties_t props = event_props(ev.identifier, ev.code);
        int rc = oq_publish(pub, exchange, key ? key : ev.code, 1, &props, line, (size_t)len, NULL);
        oq_event_clear(&ev);
        if (rc != 0) {
            cli_fail("publish: the broker connection failed after %llu events",
                     (unsigned long long)t->lines);
            code = EX_UNAVAILABLE;
            break;
        }
        t->lines++;
        if (tty && seconds_since(&last) > 0.1) {
            progress(t, &start, 0);
            clock_gettime(CLOCK_MONOTONIC, &last);
        }
    }
    free(line);
    if (code == EX_OK && ferror(in)) {
        cli_fail("publish: reading input: %s", strerror(errno));
        code = EX_IOERR;
    }
    if (oq_publisher_wait(pub, 60000) != 0 && code == EX_OK) {
        cli_fail("publish: %zu events still unconfirmed after 60 s", oq_publisher_in_flight(pub));
        code = EX_UNAVAILABLE;
    }
    if (tty)
        progress(t, &start, 1);
    return code;
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct tally t = {0};
    struct oq_broker *b = NULL;
    struct oq_publisher *pub = NULL;
    const char *path = ctx->npos == 1 ? ctx->pos[0] : "-";
    const char *window_text = cli_opt(ctx, "--window");
    char err[OQ_ERRLEN * 2];
    long window = 1000;
    int code;

    if (ctx->npos > 1 || (cli_opt(ctx, "--raw") && !cli_opt(ctx, "--routing-key"))) {
        fprintf(stderr, "orderq: publish: %s\nUsage: orderq %s\n",
                ctx->npos > 1 ? "one input file at most" : "--raw needs --routing-key",
                ctx->cmd->usage);
        return EX_USAGE;
    }
    if (window_text != NULL) {
        char *end = NULL;
        window = strtol(window_text, &end, 10);
        if (end == window_text || *end || window < 1 || window > 65535) {
            fprintf(stderr, "orderq: publish: --window: expected 1 to 65535, got \"%s\"\n",
                    window_text);
            return EX_USAGE;
        }
    }
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL) {
        cli_fail("publish: cannot open %s: %s", path, strerror(errno));
        return EX_NOINPUT;
    }
    struct oq_publisher_callbacks cb = {on_settled, on_returned, &t};
    int rc = oq_publisher_connect(ctx->cfg, "publish", 1, (size_t)window, 1, &cb, &b, &pub, err,
                                  sizeof(err));
    if (rc != 0) {
        cli_fail("publish: %s", err);
        code = cli_exit_code(rc);
        goto out;
    }
    code = publish_lines(ctx, in, pub, &t);
    if (cli_opt(ctx, "--json") != NULL)
        printf("{\"published\": %llu, \"confirmed\": %llu, \"nacked\": %llu, \"unroutable\": "
               "%llu}\n",
               (unsigned long long)t.lines, (unsigned long long)t.acked,
               (unsigned long long)t.nacked, (unsigned long long)t.returned);
    else
        printf("published %llu events: %llu confirmed, %llu refused, %llu unroutable\n",
               (unsigned long long)t.lines, (unsigned long long)t.acked,
               (unsigned long long)t.nacked, (unsigned long long)t.returned);
    if (code == EX_OK && (t.nacked > 0 || t.returned > 0)) {
        if (t.returned > 0)
            cli_fail("publish: %llu events reached no queue (first routing key \"%s\"): is the "
                     "topology declared?",
                     (unsigned long long)t.returned, t.first_returned);
        if (t.nacked > 0)
            cli_fail("publish: the broker refused %llu events", (unsigned long long)t.nacked);
        code = EX_UNAVAILABLE;
    }
out:
    oq_publisher_free(pub);
    oq_broker_close(b);
    if (in != stdin)
        fclose(in);
    return code;
}

static const struct cli_opt opts[] = {
    {"--exchange", "NAME", "publish here instead of shop_exchange", 0},
    {"--routing-key", "KEY", "routing key for every line (default: each event's event_code)", 0},
    {"--raw", NULL, "publish lines as they are, even if not valid events (needs --routing-key)", 0},
    {"--window", "N", "most events awaiting a confirm at once (default 1000)", 0},
    {"--json", NULL, "print the summary as JSON", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_publish = {
    .name = "publish",
    .summary = "Publish events from JSON lines (a file or stdin) with publisher confirms",
    .usage = "publish [FILE|-] [--exchange NAME] [--routing-key KEY] [--raw] [--json]",
    .details = "Each line is one event envelope. It is checked like a delivery would be, then\n"
               "published persistent and mandatory with routing key = event_code, message_id =\n"
               "event_identifier, type = event_code. Exit 0 only when every event was confirmed\n"
               "by the broker and reached a queue; 65 at the first line that is not an event\n"
               "(the lines before it are published); 69 if any was refused or unroutable.\n",
    .opts = opts,
    .run = run,
};
