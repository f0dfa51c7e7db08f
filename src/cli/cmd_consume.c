/* cmd_consume.c - `orderq consume`: connect, consume the work queues, stop cleanly
 *
 * This is the service's skeleton: the broker loop, reconnects with jittered
 * exponential backoff, the metrics endpoint and signal handling. It does not
 * process messages yet: with prefetch 1, at most one delivery per queue is
 * held unacked, and it goes back to its queue when orderq stops (the batch
 * pipeline, with the configured prefetch, comes with the next issue).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "orderq/broker.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/topology.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    if (stop_signal != 0)
        _exit(128 + sig); /* second signal: at once; unacked messages return */
    stop_signal = sig;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Sleep up to ms, waking early on a stop signal. */
static void nap(int64_t ms)
{
    while (ms > 0 && !stop_signal) {
        int64_t step = ms < 100 ? ms : 100;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* "Equal jitter": a random delay in [base/2, base], base doubling to a cap,
 * so many consumers cut off at once do not all come back at once. */
static int64_t backoff_ms(int failures)
{
    int64_t base = 500;
    for (int i = 1; i < failures && base < 30000; i++)
        base *= 2;
    if (base > 30000)
        base = 30000;
    unsigned r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (unsigned)time(NULL);
    return base / 2 + (int64_t)(r % (unsigned)(base / 2 + 1));
}

struct consumer {
    const char **queues;
    int nqueues;
    int active; /* consumers the broker has not cancelled */
};

static int start_consumers(struct oq_broker *b, struct consumer *c, char *err, size_t errlen)
{
    amqp_connection_state_t conn = oq_broker_conn(b);
    /* Until messages are processed (the batch pipeline), hold at most one
     * per queue: a held message goes back when orderq stops, and each return
     * counts towards the quorum queue's x-delivery-limit. */
    amqp_basic_qos(conn, 1, 0, 1, 0);
    if (oq_broker_check(b, 1, "basic.qos") != 0)
        goto fail;
    c->active = 0;
    for (int i = 0; i < c->nqueues; i++) {
        char what[300];
        snprintf(what, sizeof(what), "basic.consume %s", c->queues[i]);
        amqp_basic_consume(conn, 1, amqp_cstring_bytes(c->queues[i]),
                           amqp_cstring_bytes(c->queues[i]), 0, 0, 0, amqp_empty_table);
        int rc = oq_broker_check(b, 1, what);
        if (rc == OQ_ENOTFOUND) {
            snprintf(err, errlen, "queue %s does not exist: run `orderq topology declare`",
                     c->queues[i]);
            return rc;
        }
        if (rc != 0)
            goto fail;
        c->active++;
        oq_log(OQ_LOG_INFO, (&(struct oq_log_fields){.queue = c->queues[i]}), "consuming");
    }
    oq_metric_set(OQ_M_CONSUMERS, c->active);
    return 0;
fail:
    snprintf(err, errlen, "%s", oq_broker_error(b));
    return OQ_EBROKER;
}

/* A frame that is not a delivery: a cancel, or the channel or connection
 * closing under us. Returns 0 to go on, or OQ_EBROKER to reconnect. */
static int handle_other_frame(struct oq_broker *b, struct consumer *c)
{
    amqp_frame_t frame;
    amqp_connection_state_t conn = oq_broker_conn(b);
    if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK)
        return OQ_EBROKER;
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return 0; /* stray body of an abandoned message */
    switch (frame.payload.method.id) {
    case AMQP_BASIC_CANCEL_METHOD: {
        const amqp_basic_cancel_t *m = frame.payload.method.decoded;
        oq_warn("the broker cancelled consumer %.*s (queue deleted?)", (int)m->consumer_tag.len,
                (const char *)m->consumer_tag.bytes);
        oq_metric_set(OQ_M_CONSUMERS, --c->active);
        return c->active > 0 ? 0 : OQ_EBROKER; /* nothing left: start over */
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
        const amqp_channel_close_t *m = frame.payload.method.decoded;
        oq_error("the broker closed the channel: %d %.*s", m->reply_code, (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        return OQ_EBROKER;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        const amqp_connection_close_t *m = frame.payload.method.decoded;
        amqp_connection_close_ok_t ok = {0};
        oq_error("the broker closed the connection: %d %.*s", m->reply_code, (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        (void)amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        return OQ_EBROKER;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD:
        oq_warn("the broker blocked publishing (memory or disk alarm)");
        return 0;
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        oq_info("the broker unblocked publishing");
        return 0;
    default:
        return 0;
    }
}

/* Wait for frames until a stop signal (0) or a broken connection. */
static int serve(struct oq_broker *b, struct consumer *c)
{
    amqp_connection_state_t conn = oq_broker_conn(b);
    int warned = 0;
    while (!stop_signal) {
        amqp_envelope_t env;
        struct timeval tv = {0, 200000};
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            char queue[256]; /* the consumer tag is the queue's name */
            snprintf(queue, sizeof(queue), "%.*s", (int)env.consumer_tag.len,
                     (const char *)env.consumer_tag.bytes);
            struct oq_log_fields f = {.queue = queue, .delivery_tag = env.delivery_tag};
            oq_metric_add(OQ_M_DELIVERIES, 1);
            if (!warned++)
                oq_log(OQ_LOG_WARN, &f,
                       "message processing is not built yet: deliveries stay unacked and "
                       "return to their queue when orderq stops");
            amqp_destroy_envelope(&env);
            continue;
        }
        if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
            if (r.library_error == AMQP_STATUS_TIMEOUT)
                continue;
            if (r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
                if (handle_other_frame(b, c) != 0)
                    return OQ_EBROKER;
                continue;
            }
            oq_error("lost the broker connection: %s", amqp_error_string2(r.library_error));
            return OQ_EBROKER;
        }
        return OQ_EBROKER;
    }
    return 0;
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct consumer c = {0};
    struct oq_metrics_server *metrics = NULL;
    const char **given = NULL;
    const char *names[64];
    char err[OQ_ERRLEN * 2];
    int failures = 0, code = EX_OK;

    if (ctx->npos != 0) {
        fprintf(stderr, "orderq: consume takes no arguments\nUsage: orderq %s\n", ctx->cmd->usage);
        return EX_USAGE;
    }
    c.nqueues = cli_opt_all(ctx, "--queue", &given);
    for (int i = 0; i < c.nqueues; i++) {
        char why[300];
        if (oq_amqp_name_check(given[i], why, sizeof(why)) != 0) {
            fprintf(stderr, "orderq: consume: --queue: %s\n", why);
            return EX_USAGE;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(given[i], given[j]) == 0) {
                fprintf(stderr, "orderq: consume: --queue %s given twice\n", given[i]);
                return EX_USAGE;
            }
    }
    if (c.nqueues > 0) {
        c.queues = given;
    } else {
        static char built[64][256];
        for (size_t i = 0; i < oq_event_route_count && i < 64; i++) {
            snprintf(built[i], sizeof(built[i]), "%s.%s", ctx->cfg->queue_prefix,
                     oq_event_routes[i].event_code);
            names[i] = built[i];
        }
        c.queues = names;
        c.nqueues = (int)oq_event_route_count;
    }
    install_signals();
    int rc = oq_metrics_start(ctx->cfg->http_addr, &metrics, err, sizeof(err));
    if (rc != 0) {
        cli_fail("consume: %s", err);
        return cli_exit_code(rc);
    }
    if (metrics != NULL)
        oq_info("metrics on http://%s/metrics", ctx->cfg->http_addr);
    oq_info("orderq %s consume starting as %s", ORDERQ_VERSION, ctx->cfg->instance_id);

    while (!stop_signal) {
        struct oq_broker *b = NULL;
        rc = oq_broker_connect(ctx->cfg, "consume", &b, err, sizeof(err));
        if (rc == OQ_ECONFIG) {
            cli_fail("consume: %s", err);
            code = EX_CONFIG;
            break;
        }
        if (rc == 0)
            rc = start_consumers(b, &c, err, sizeof(err));
        if (rc == 0) {
            failures = 0;
            oq_metric_add(OQ_M_BROKER_CONNECTS, 1);
            oq_metric_set(OQ_M_READY, 1);
            oq_info("connected; consuming %d queue%s", c.active, c.active == 1 ? "" : "s");
            rc = serve(b, &c);
            oq_metric_set(OQ_M_READY, 0);
            oq_metric_set(OQ_M_CONSUMERS, 0);
            if (rc != 0)
                oq_metric_add(OQ_M_BROKER_DISCONNECTS, 1);
        }
        if (rc == 0) { /* stopping: cancel, then close, so nothing new arrives */
            for (int i = 0; i < c.nqueues; i++)
                amqp_basic_cancel(oq_broker_conn(b), 1, amqp_cstring_bytes(c.queues[i]));
            oq_broker_close(b);
            break;
        }
        oq_broker_drop(b);
        int64_t wait = backoff_ms(++failures);
        oq_error("%s; retrying in %lld ms (attempt %d)", err[0] ? err : "broker connection lost",
                 (long long)wait, failures);
        err[0] = '\0';
        nap(wait);
    }
    if (stop_signal)
        oq_info("stopped by signal %d", (int)stop_signal);
    oq_metrics_stop(metrics);
    return code;
}

static const struct cli_opt opts[] = {
    {"--queue", "NAME", "consume only this queue (default: every work queue)", 1},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_consume = {
    .name = "consume",
    .summary = "Run the consumer service (foreground; stops cleanly on SIGTERM or SIGINT)",
    .usage = "consume [--queue NAME]... [--instance-id ID]",
    .details = "Connects to RabbitMQ and consumes every work queue (<queue_prefix>.<event_code>).\n"
               "Reconnects with jittered exponential backoff (0.5 s doubling to 30 s) when the\n"
               "broker goes away. Serves /metrics, /healthz and /readyz on http_addr.\n"
               "SIGTERM or SIGINT: stop consuming and exit 0; a second signal exits at once.\n",
    .opts = opts,
    .run = run,
};
