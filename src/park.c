/* park.c - retries and dead letters, republished on a connection of their own */
#include "orderq/park.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/deadletter.h"
#include "orderq/log.h"
#include "orderq/publish.h"
#include "orderq/trust.h"

#define PARK_WINDOW 1024 /* copies awaiting their confirm */
/* Bytes of copies awaiting their confirm. librabbitmq waits without limit
 * for room in a socket the broker no longer reads (it blocks a publishing
 * connection during an alarm and says so only after the first publish),
 * so the parker never has more unconfirmed than the socket buffers hold:
 * the consumer's thread must never hang in a write. One copy larger than
 * this goes out alone. */
#define PARK_MAX_BYTES (128u * 1024u)
#define PARK_SNDBUF    (256 * 1024) /* asked of the kernel for the parking socket */

struct oq_parker {
    const struct oq_config *cfg;
    oq_park_settled_fn settled;
    void *ctx;
    char host[128], pid[24]; /* for the copies' headers */
    char *own_user;          /* every copy's user_id: the proof orderq published it */

    struct oq_broker *b;
    struct oq_publisher *pub;
    uint64_t base;        /* seq = base + the connection's own confirm tag */
    int blocked;          /* connection.blocked: a memory or disk alarm */
    int failures;         /* connects in a row that failed */
    int64_t connect_at;   /* next try, when not connected */
    int64_t idle_poll_at; /* with nothing in flight, the next look (heartbeats) */
    /* Copies that reached no queue: their ack follows, and must not count
     * as parked. At most one per copy in flight, so allocated once. */
    uint64_t returned[PARK_WINDOW];
    size_t n_returned;
    size_t sizes[PARK_WINDOW]; /* each copy's bytes, by confirm tag % window */
    size_t unconfirmed;        /* bytes of the copies in flight */
};

static int take_returned(struct oq_parker *p, uint64_t seq)
{
    for (size_t i = 0; i < p->n_returned; i++)
        if (p->returned[i] == seq) {
            p->returned[i] = p->returned[--p->n_returned];
            return 1;
        }
    return 0;
}

static void on_settled(void *ctx, uint64_t tag, enum oq_confirm outcome)
{
    struct oq_parker *p = ctx;
    uint64_t seq = p->base + tag;
    p->unconfirmed -= p->sizes[tag % PARK_WINDOW];
    p->sizes[tag % PARK_WINDOW] = 0;
    int returned = take_returned(p, seq);
    p->settled(p->ctx, seq, outcome == OQ_CONFIRM_ACK && !returned);
}

/* A copy no queue took (mandatory): it is not parked. */
static void on_returned(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *m)
{
    struct oq_parker *p = ctx;
    const amqp_field_value_t *seq = oq_amqp_header(&m->properties, "x-orderq-seq");
    const amqp_field_value_t *delay = oq_amqp_header(&m->properties, "orderq-delay");
    int64_t n = 0;
    if (seq != NULL && oq_amqp_field_int(seq, &n) == 0 && p->n_returned < PARK_WINDOW)
        p->returned[p->n_returned++] = (uint64_t)n;
    oq_error("%s reached no queue from exchange %.*s: is the topology declared?",
             delay ? "a retry" : "a dead letter", (int)why->exchange.len,
             (const char *)why->exchange.bytes);
}

/* The connection is gone: every copy in flight is reported unparked (its
 * delivery comes back), and the next poll connects again. */
static void lose(struct oq_parker *p, const char *why)
{
    if (p->b == NULL)
        return;
    oq_error("parking connection lost: %s; %zu retries and dead letters come back", why,
             oq_parker_in_flight(p));
    oq_publisher_fail_all(p->pub);
    p->base += oq_publisher_next_seq(p->pub) - 1;
    oq_publisher_free(p->pub);
    p->pub = NULL;
    oq_broker_drop(p->b, 1);
    p->b = NULL;
    p->blocked = 0;
    p->n_returned = 0; /* sizes and unconfirmed went with fail_all's settlements */
    p->connect_at = oq_now_ms() + oq_backoff_ms(++p->failures);
}

static void connect_now(struct oq_parker *p)
{
    char err[OQ_ERRLEN * 2] = "";
    struct oq_publisher_callbacks cb = {on_settled, on_returned, p};
    /* own_frames 0: oq_parker_poll reads this connection (alarms, closes) */
    if (oq_publisher_connect(p->cfg, "park", 1, PARK_WINDOW, 0, &cb, &p->b, &p->pub, err,
                             sizeof(err)) != 0) {
        int64_t wait = oq_backoff_ms(++p->failures);
        p->connect_at = oq_now_ms() + wait;
        oq_error("parking connection: %s; retrying in %lld ms", err, (long long)wait);
        return;
    }
    /* Room for PARK_MAX_BYTES in the socket whoever stops reading it. */
    int sndbuf = PARK_SNDBUF, fd = amqp_get_sockfd(oq_broker_conn(p->b));
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    if (p->failures > 0)
        oq_info("parking connection back after %d failed attempts", p->failures);
    p->failures = 0;
}

void oq_parker_poll(struct oq_parker *p)
{
    if (p->b == NULL) {
        if (oq_now_ms() >= p->connect_at)
            connect_now(p);
        return;
    }
    /* Idle, it needs a look only now and then (heartbeats, a close): not
     * one system call per delivery the consumer reads. */
    if (oq_parker_in_flight(p) == 0 && !p->blocked) {
        int64_t now = oq_now_ms();
        if (now < p->idle_poll_at)
            return;
        p->idle_poll_at = now + 100;
    }
    amqp_connection_state_t conn = oq_broker_conn(p->b);
    for (int frames = 0; frames < 4 * PARK_WINDOW; frames++) {
        struct timeval zero = {0, 0};
        amqp_frame_t f;
        /* Also sends a heartbeat when one is due. */
        int status = amqp_simple_wait_frame_noblock(conn, &f, &zero);
        if (status == AMQP_STATUS_TIMEOUT)
            break;
        if (status != AMQP_STATUS_OK) {
            lose(p, amqp_error_string2(status));
            return;
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (f.payload.method.id) {
        case AMQP_CONNECTION_BLOCKED_METHOD:
            p->blocked = 1;
            oq_warn("the broker blocked publishing (memory or disk alarm): retries and dead "
                    "letters wait, the rest is acked as usual");
            continue;
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            p->blocked = 0;
            oq_info("the broker unblocked publishing: parking again");
            continue;
        case AMQP_CONNECTION_CLOSE_METHOD: {
            amqp_connection_close_ok_t ok = {0};
            (void)amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            lose(p, "the broker closed it");
            return;
        }
        default:
            break;
        }
        if (oq_publisher_handle_frame(p->pub, &f) < 0) {
            lose(p, "the broker closed its channel");
            return;
        }
    }
    amqp_maybe_release_buffers(conn);
}

static amqp_table_entry_t hdr_str(const char *key, const char *value)
{
    return oq_amqp_entry_text(key, amqp_cstring_bytes(value ? value : ""));
}

int oq_park(struct oq_parker *p, const struct oq_park *what, uint64_t *seq)
{
    size_t bytes = what->msg->body.len + 4096; /* the body, and room for the headers */
    if (p->b == NULL || p->blocked || oq_publisher_in_flight(p->pub) >= PARK_WINDOW ||
        (p->unconfirmed > 0 && p->unconfirmed + bytes > PARK_MAX_BYTES))
        return OQ_ETIMEOUT;
    const amqp_basic_properties_t *orig = &what->msg->properties;
    int n_orig = (orig->_flags & AMQP_BASIC_HEADERS_FLAG) ? orig->headers.num_entries : 0;
    amqp_table_entry_t *h = malloc(((size_t)n_orig + 18) * sizeof(*h));
    if (h == NULL)
        return OQ_ENOMEM;
    int nh = 0, retry = what->tier != NULL;
    for (int i = 0; i < n_orig; i++)
        if (!oq_header_is_orderqs(orig->headers.entries[i].key))
            h[nh++] = orig->headers.entries[i];
    char now[32], error[256];
    oq_utc_now_iso(now, sizeof(now));
    oq_cut_utf8(what->reason, error, sizeof(error)); /* headers stay small */
    h[nh++] = oq_amqp_entry_i64("x-orderq-attempt", retry ? what->attempt + 1 : what->attempt);
    h[nh++] = what->first_failed_at.len
                  ? oq_amqp_entry_text("x-orderq-first-failed-at", what->first_failed_at)
                  : hdr_str("x-orderq-first-failed-at", now);
    h[nh++] = hdr_str("x-orderq-last-failed-at", now);
    h[nh++] = hdr_str("x-orderq-error-class", oq_error_class_name(what->error_class));
    h[nh++] = hdr_str("x-orderq-last-error", error);
    h[nh++] = hdr_str("x-orderq-queue", what->queue);
    h[nh++] = oq_amqp_entry_text("x-orderq-original-exchange", what->original_exchange);
    h[nh++] = oq_amqp_entry_text("x-orderq-original-routing-key", what->original_routing_key);
    h[nh++] = hdr_str("x-orderq-host", p->host);
    h[nh++] = hdr_str("x-orderq-pid", p->pid);
    h[nh++] = hdr_str("x-orderq-version", ORDERQ_VERSION);
    uint64_t next = p->base + oq_publisher_next_seq(p->pub);
    /* Its number, so a return (no queue took it) finds it. */
    h[nh++] = oq_amqp_entry_i64("x-orderq-seq", (int64_t)next);
    if (retry && what->force_resend) /* the person's word holds for the retries */
        h[nh++] = oq_amqp_entry_i64("x-orderq-force-resend", 1);
    /* RabbitMQ checks user_id against the publishing connection's user,
     * so orderq's own user_id on a copy proves orderq published it: only
     * then are its x-orderq-* headers believed (trust.h). The shop's own
     * user_id is kept as a header, from the first delivery on. */
    amqp_basic_properties_t props = *orig;
    if (what->original_user_id.len > 0)
        h[nh++] = oq_amqp_entry_text("x-orderq-original-user-id", what->original_user_id);
    props._flags |= AMQP_BASIC_USER_ID_FLAG;
    props.user_id = amqp_cstring_bytes(p->own_user);
    if (retry) /* not "x-": a headers exchange ignores those when matching */
        h[nh++] = hdr_str("orderq-delay", what->tier);

    props._flags |= AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props._flags &= ~(amqp_flags_t)AMQP_BASIC_EXPIRATION_FLAG; /* parked copies never expire */
    props.delivery_mode = 2;
    props.headers = (amqp_table_t){nh, h};
    /* The routing key names the work queue: a delay tier's TTL sends it
     * back there through the default exchange. */
    const char *exchange = retry ? p->cfg->delay_exchange : p->cfg->dead_exchange;
    uint64_t tag = 0;
    int rc = oq_publish(p->pub, exchange, what->queue, 1, &props, what->msg->body.bytes,
                        what->msg->body.len, &tag);
    free(h);
    if (rc != 0) {
        lose(p, "a publish failed");
        return OQ_ETIMEOUT;
    }
    p->sizes[tag % PARK_WINDOW] = bytes;
    p->unconfirmed += bytes;
    *seq = p->base + tag;
    return 0;
}

size_t oq_parker_in_flight(const struct oq_parker *p)
{
    return p->pub ? oq_publisher_in_flight(p->pub) : 0;
}

int oq_parker_new(const struct oq_config *cfg, const char *host, oq_park_settled_fn settled,
                  void *ctx, struct oq_parker **out)
{
    struct oq_parker *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (p == NULL)
        return OQ_ENOMEM;
    int rc = oq_trust_own_user(cfg, &p->own_user);
    if (rc != 0) {
        free(p);
        return rc;
    }
    p->cfg = cfg;
    p->settled = settled;
    p->ctx = ctx;
    snprintf(p->host, sizeof(p->host), "%s", host);
    snprintf(p->pid, sizeof(p->pid), "%ld", (long)getpid());
    *out = p;
    return 0;
}

void oq_parker_free(struct oq_parker *p)
{
    if (p == NULL)
        return;
    if (p->b != NULL) {
        int idle = !p->blocked && oq_parker_in_flight(p) == 0;
        oq_publisher_fail_all(p->pub);
        oq_publisher_free(p->pub);
        if (idle)
            oq_broker_close(p->b);
        else /* the broker may not read it: closing politely could hang */
            oq_broker_drop(p->b, 0);
    }
    free(p->own_user);
    free(p);
}
