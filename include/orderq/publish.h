/* publish.h - publish with publisher confirms on one channel, many in flight
 *
 * Sequence numbers are the channel's confirm tags: 1, 2, 3... in publish
 * order. The broker settles them with basic.ack / basic.nack, singly or
 * "multiple"; this module expands those into one callback per message, in
 * any order the broker chooses, each exactly once. An unroutable message
 * published as mandatory comes back as basic.return before its ack.
 */
#ifndef ORDERQ_PUBLISH_H
#define ORDERQ_PUBLISH_H

#include <amqp.h>
#include <stdint.h>

#include "orderq/common.h"

struct oq_broker;
struct oq_config;
struct oq_publisher; /* opaque */

enum oq_confirm { OQ_CONFIRM_ACK = 0, OQ_CONFIRM_NACK = 1 };

struct oq_publisher_callbacks {
    /* Called once per published message when the broker settles it. */
    void (*settled)(void *ctx, uint64_t seq, enum oq_confirm outcome);
    /* A mandatory message no queue took (its ack follows). May be NULL. */
    void (*returned)(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *message);
    void *ctx;
};

/* Open `channel` of b (1 is open already) in confirm mode. window: most
 * messages in flight. The publisher borrows b.
 *
 * own_frames: 1 when nothing else reads this connection (orderq publish,
 * the relay): the publisher reads confirms itself and oq_publish waits for
 * room in the window. 0 when a consumer loop reads the frames and hands
 * the publisher's to oq_publisher_handle_frame: oq_publish then never
 * reads, and fails with OQ_ETIMEOUT when the window is full.
 * Returns 0, OQ_ENOMEM or OQ_EBROKER. */
OQ_WUR int oq_publisher_new(struct oq_broker *b, amqp_channel_t channel, size_t window,
                            int own_frames, const struct oq_publisher_callbacks *cb,
                            struct oq_publisher **out);

/* A connection of its own for purpose (oq_broker_connect) with a
 * publisher on channel (oq_publisher_new, own_frames as there): 1 for
 * every part that only publishes; 0 for one whose caller reads the
 * connection's frames itself (the parker). *b and *out are the caller's to
 * free (oq_publisher_free, then oq_broker_close or oq_broker_drop); on
 * failure both are NULL and err says why. Returns 0, OQ_ENOMEM or
 * OQ_EBROKER. */
OQ_WUR int oq_publisher_connect(const struct oq_config *cfg, const char *purpose,
                                amqp_channel_t channel, size_t window, int own_frames,
                                const struct oq_publisher_callbacks *cb, struct oq_broker **b,
                                struct oq_publisher **out, char *err, size_t errlen);

/* Take a frame read by someone else: 1 if it was this publisher's (a
 * confirm or a return, now handled), 0 if not, OQ_EBROKER on failure. */
OQ_WUR int oq_publisher_handle_frame(struct oq_publisher *p, const amqp_frame_t *frame);
void oq_publisher_free(struct oq_publisher *p);

/* The connection is gone: report every unsettled message as nacked (its
 * fate is unknown, so its sender must act as if it was not taken). */
void oq_publisher_fail_all(struct oq_publisher *p);

/* Publish one message; *seq (may be NULL) gets its sequence number. Waits
 * for confirms first when the window is full. Returns 0 or OQ_EBROKER. */
OQ_WUR int oq_publish(struct oq_publisher *p, const char *exchange, const char *routing_key,
                      int mandatory, const amqp_basic_properties_t *props, const void *body,
                      size_t len, uint64_t *seq);

/* Read confirms (and returns) for up to timeout_ms; returns as soon as
 * nothing is in flight. Returns 0, OQ_ETIMEOUT (still some in flight) or
 * OQ_EBROKER. */
OQ_WUR int oq_publisher_wait(struct oq_publisher *p, int64_t timeout_ms);

/* For an idle publisher that reads its own frames: send a heartbeat when
 * one is due and read what arrived, without waiting. Call it more often
 * than heartbeat_s / 2, or the broker drops the idle connection. Returns
 * 0 or OQ_EBROKER (the connection is gone; err says so). */
OQ_WUR int oq_publisher_keepalive(struct oq_publisher *p, char *err, size_t errlen);

/* The sequence number the next oq_publish will get. */
uint64_t oq_publisher_next_seq(const struct oq_publisher *p);

/* Messages published and not yet settled. */
size_t oq_publisher_in_flight(const struct oq_publisher *p);

#endif
