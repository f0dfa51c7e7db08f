/* publish.c - publish with publisher confirms on one channel, many in flight */
#include "orderq/publish.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "orderq/broker.h"

struct oq_publisher {
    struct oq_broker *b;
    amqp_channel_t channel;
    int own_frames;
    struct oq_publisher_callbacks cb;
    uint64_t next_seq; /* the tag the next publish gets */
    uint64_t low;      /* lowest unsettled tag (== next_seq when none) */
    size_t window;
    unsigned char *settled; /* ring over [low, low + window): 1 once settled */
};

int oq_publisher_new(struct oq_broker *b, amqp_channel_t channel, size_t window, int own_frames,
                     const struct oq_publisher_callbacks *cb, struct oq_publisher **out)
{
    struct oq_publisher *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (p == NULL || window == 0 || (p->settled = calloc(window, 1)) == NULL) {
        free(p);
        return OQ_ENOMEM;
    }
    p->b = b;
    p->cb = *cb;
    p->window = window;
    p->next_seq = p->low = 1;
    p->channel = channel;
    p->own_frames = own_frames;
    if (channel != 1) {
        amqp_channel_open(oq_broker_conn(b), channel);
        if (oq_broker_check(b, channel, "channel.open") != 0) {
            oq_publisher_free(p);
            return OQ_EBROKER;
        }
    }
    amqp_confirm_select(oq_broker_conn(b), channel);
    if (oq_broker_check(b, channel, "confirm.select") != 0) {
        oq_publisher_free(p);
        return OQ_EBROKER;
    }
    *out = p;
    return 0;
}

int oq_publisher_connect(const struct oq_config *cfg, const char *purpose, amqp_channel_t channel,
                         size_t window, int own_frames, const struct oq_publisher_callbacks *cb,
                         struct oq_broker **b, struct oq_publisher **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = oq_broker_connect(cfg, purpose, b, err, errlen);
    if (rc != 0)
        return rc;
    if ((rc = oq_publisher_new(*b, channel, window, own_frames, cb, out)) != 0) {
        snprintf(err, errlen, "opening a channel in confirm mode: %s",
                 rc == OQ_ENOMEM ? "out of memory" : oq_broker_error(*b));
        oq_broker_drop(*b, 1);
        *b = NULL;
    }
    return rc;
}

void oq_publisher_free(struct oq_publisher *p)
{
    if (p == NULL)
        return;
    free(p->settled);
    free(p);
}

uint64_t oq_publisher_next_seq(const struct oq_publisher *p)
{
    return p->next_seq;
}

size_t oq_publisher_in_flight(const struct oq_publisher *p)
{
    return (size_t)(p->next_seq - p->low);
}

static void settle_one(struct oq_publisher *p, uint64_t seq, enum oq_confirm outcome)
{
    unsigned char *slot = &p->settled[seq % p->window];
    if (seq < p->low || seq >= p->next_seq || *slot)
        return; /* unknown or already settled: each message once */
    *slot = 1;
    p->cb.settled(p->cb.ctx, seq, outcome);
    while (p->low < p->next_seq && p->settled[p->low % p->window]) {
        p->settled[p->low % p->window] = 0;
        p->low++;
    }
}

static void settle(struct oq_publisher *p, uint64_t tag, int multiple, enum oq_confirm outcome)
{
    if (!multiple) {
        settle_one(p, tag, outcome);
        return;
    }
    for (uint64_t seq = p->low; seq <= tag && seq < p->next_seq; seq++)
        settle_one(p, seq, outcome);
}

void oq_publisher_fail_all(struct oq_publisher *p)
{
    if (p != NULL)
        settle(p, p->next_seq - 1, 1, OQ_CONFIRM_NACK);
}

int oq_publisher_handle_frame(struct oq_publisher *p, const amqp_frame_t *frame)
{
    amqp_connection_state_t conn = oq_broker_conn(p->b);
    if (frame->frame_type != AMQP_FRAME_METHOD || frame->channel != p->channel)
        return 0;
    switch (frame->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        const amqp_basic_ack_t *m = frame->payload.method.decoded;
        settle(p, m->delivery_tag, m->multiple, OQ_CONFIRM_ACK);
        return 1;
    }
    case AMQP_BASIC_NACK_METHOD: {
        const amqp_basic_nack_t *m = frame->payload.method.decoded;
        settle(p, m->delivery_tag, m->multiple, OQ_CONFIRM_NACK);
        return 1;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_basic_return_t why = *(const amqp_basic_return_t *)frame->payload.method.decoded;
        amqp_message_t message;
        amqp_rpc_reply_t r = amqp_read_message(conn, p->channel, &message, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            return OQ_EBROKER;
        if (p->cb.returned != NULL)
            p->cb.returned(p->cb.ctx, &why, &message);
        amqp_destroy_message(&message);
        return 1;
    }
    case AMQP_CHANNEL_CLOSE_METHOD:
        return OQ_EBROKER;
    default:
        return 0;
    }
}

/* A frame read by the publisher itself: its own, or the end of the
 * connection. Returns 0 or OQ_EBROKER. */
static int handle_frame(struct oq_publisher *p, const amqp_frame_t *frame)
{
    if (frame->frame_type == AMQP_FRAME_METHOD &&
        frame->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)
        return OQ_EBROKER;
    return oq_publisher_handle_frame(p, frame) < 0 ? OQ_EBROKER : 0;
}

int oq_publisher_wait(struct oq_publisher *p, int64_t timeout_ms)
{
    amqp_connection_state_t conn = oq_broker_conn(p->b);
    int64_t deadline = oq_now_ms() + timeout_ms;
    while (oq_publisher_in_flight(p) > 0) {
        int64_t left = deadline - oq_now_ms();
        if (left <= 0)
            return OQ_ETIMEOUT;
        struct timeval tv = oq_ms_to_timeval(left);
        amqp_frame_t frame;
        int status = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
        if (status == AMQP_STATUS_TIMEOUT)
            return OQ_ETIMEOUT;
        if (status != AMQP_STATUS_OK || handle_frame(p, &frame) != 0)
            return OQ_EBROKER;
        amqp_maybe_release_buffers(conn);
    }
    return 0;
}

/* Settle whatever has already arrived, without waiting. */
static int drain(struct oq_publisher *p)
{
    amqp_connection_state_t conn = oq_broker_conn(p->b);
    while (amqp_frames_enqueued(conn) || amqp_data_in_buffer(conn)) {
        amqp_frame_t frame;
        struct timeval zero = {0, 0};
        int status = amqp_simple_wait_frame_noblock(conn, &frame, &zero);
        if (status == AMQP_STATUS_TIMEOUT)
            break;
        if (status != AMQP_STATUS_OK || handle_frame(p, &frame) != 0)
            return OQ_EBROKER;
    }
    return 0;
}

int oq_publisher_keepalive(struct oq_publisher *p, char *err, size_t errlen)
{
    amqp_connection_state_t conn = oq_broker_conn(p->b);
    struct timeval zero = {0, 0};
    amqp_frame_t frame;
    /* Waiting sends a heartbeat when one is due, and reads the broker's. */
    int status = amqp_simple_wait_frame_noblock(conn, &frame, &zero);
    if (status == AMQP_STATUS_TIMEOUT ||
        (status == AMQP_STATUS_OK && handle_frame(p, &frame) == 0 && drain(p) == 0))
        return 0;
    snprintf(err, errlen, "the idle broker connection was lost: %s",
             oq_broker_error(p->b)[0] ? oq_broker_error(p->b) : amqp_error_string2(status));
    return OQ_EBROKER;
}

int oq_publish(struct oq_publisher *p, const char *exchange, const char *routing_key, int mandatory,
               const amqp_basic_properties_t *props, const void *body, size_t len, uint64_t *seq)
{
    amqp_connection_state_t conn = oq_broker_conn(p->b);
    while (oq_publisher_in_flight(p) >= p->window) {
        if (!p->own_frames)
            return OQ_ETIMEOUT;
        int rc = oq_publisher_wait(p, 1000);
        if (rc == OQ_EBROKER)
            return rc;
    }
    amqp_bytes_t bytes = {len, (void *)(uintptr_t)body};
    if (amqp_basic_publish(conn, p->channel, amqp_cstring_bytes(exchange),
                           amqp_cstring_bytes(routing_key), mandatory, 0, props,
                           bytes) != AMQP_STATUS_OK)
        return OQ_EBROKER;
    p->settled[p->next_seq % p->window] = 0;
    if (seq != NULL)
        *seq = p->next_seq;
    p->next_seq++;
    return p->own_frames ? drain(p) : 0;
}
