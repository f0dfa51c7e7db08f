/* broker.h - one RabbitMQ connection: connect, log in, channels, errors
 *
 * Wraps librabbitmq (0.11, <amqp.h>). Each oq_broker is one TCP connection,
 * used by one thread. Errors are kept on the handle as text a person can
 * read ("queue.declare orderq.x: PRECONDITION_FAILED - inequivalent arg ...").
 */
#ifndef ORDERQ_BROKER_H
#define ORDERQ_BROKER_H

#include <amqp.h>
#include <stdint.h>

#include "orderq/common.h"

struct oq_config;
struct oq_broker; /* opaque */

/* Connect and log in to the broker in cfg->amqp_url, name the connection
 * "orderq <purpose> <instance_id>" (seen in the management UI) and open
 * channel 1. Advertises consumer_cancel_notify and publisher confirms.
 * Returns 0, OQ_ECONFIG (bad URL) or OQ_EBROKER with the reason in err. */
OQ_WUR int oq_broker_connect(const struct oq_config *cfg, const char *purpose,
                             struct oq_broker **out, char *err, size_t errlen);

/* Close channels and the connection politely, then free. NULL is fine. */
void oq_broker_close(struct oq_broker *b);

/* Close a connection politely when stopping, with nothing left to settle
 * on it (every publish confirmed; deliveries unacked go back):
 * connection.close alone, its close-ok waited for at most half a second
 * (a warning if it does not come), then free. A connection only freed is
 * "client unexpectedly closed TCP connection" in RabbitMQ's log. NULL is
 * fine. */
void oq_broker_close_stopping(struct oq_broker *b);

/* Free a connection without the closing handshake, which could only wait
 * for a reply that never comes. The broker requeues whatever was unacked.
 * failed: the connection broke (closed by the broker, a socket error), so
 * the next connect of the process starts with the node after this one;
 * 0: it was dropped for a reason of our own (MySQL went away, stopping)
 * and its node stays first. NULL is fine. */
void oq_broker_drop(struct oq_broker *b, int failed);

/* 1 when reply (from amqp_read_message) says librabbitmq cannot decode the
 * delivery's content header (e.g. a header named ""): the message's fault,
 * so the caller may reject it without requeue where that dead-letters it,
 * then close with oq_broker_close_unreadable. 0 for anything else (a socket
 * error, a close by the broker): the connection's fault, not the message's. */
int oq_broker_unreadable(amqp_rpc_reply_t reply);

/* The end of a connection's raw input, read past librabbitmq (which stops
 * at a frame it cannot decode), watched for the broker's last frame,
 * connection.close-ok. Zero-initialise; add the bytes as they are read. */
struct oq_close_ok_watch {
    unsigned char bytes[64];
    size_t len;
};
void oq_close_ok_watch_add(struct oq_close_ok_watch *w, const void *data, size_t n);

/* 1 when the input so far ends with close-ok (heartbeat frames after it
 * aside). A body whose last bytes are those of close-ok looks the same:
 * the caller also waits for a pause. */
int oq_close_ok_watch_seen(const struct oq_close_ok_watch *w);

/* Close a connection whose input librabbitmq can no longer read (a frame it
 * cannot decode stays at the head of its input, e.g. a header named ""),
 * so that what was sent last (a basic.reject) is not lost: send
 * connection.close, then read and discard the socket's bytes until the
 * broker's close-ok, which it sends once every frame before the close is
 * handled (over TLS: until the broker closes it, min(heartbeat, 30) s
 * later), and only then close our side. At most timeout_ms (plus that wait
 * over TLS; half a second once *stop is set). The node is not blamed.
 * Returns 0 after the close-ok or the broker's close, OQ_ETIMEOUT or
 * OQ_EBROKER (it was freed all the same). NULL is fine (0). */
int oq_broker_close_unreadable(struct oq_broker *b, int64_t timeout_ms,
                               volatile sig_atomic_t *stop);

amqp_connection_state_t oq_broker_conn(struct oq_broker *b);

/* The connection's socket when it can be waited on with poll(2) alone: a
 * plain TCP one. -1 for TLS, whose library may hold decrypted bytes the
 * socket no longer shows. */
int oq_broker_pollable_fd(struct oq_broker *b);

/* The vhost this connection is on. */
const char *oq_broker_vhost(const struct oq_broker *b);

/* The text of the last failure. */
const char *oq_broker_error(const struct oq_broker *b);

/* Check the reply of the last synchronous call on `channel` (`what` names
 * the call for the message). On a channel-level error (NOT_FOUND,
 * PRECONDITION_FAILED...) the channel is closed by the broker: this answers
 * close-ok and opens it again, so the caller can go on using it.
 * Returns 0, OQ_ENOTFOUND (404), OQ_EMISMATCH (406), OQ_EREFUSED (any
 * other channel-level refusal, e.g. 403) or OQ_EBROKER (connection-level:
 * the connection is unusable). */
OQ_WUR int oq_broker_check(struct oq_broker *b, amqp_channel_t channel, const char *what);

/* The reply code of the last channel-level error (404, 406...), or 0. */
int oq_broker_last_code(const struct oq_broker *b);

/* A table entry (for headers and client properties); key and value are
 * borrowed. */
amqp_table_entry_t oq_amqp_entry_bool(const char *key, int value);
amqp_table_entry_t oq_amqp_entry_text(const char *key, amqp_bytes_t value);
amqp_table_entry_t oq_amqp_entry_i64(const char *key, int64_t value);

/* The value of header key in p, or NULL. */
const amqp_field_value_t *oq_amqp_header(const amqp_basic_properties_t *p, const char *key);

/* An integer field of any width as int64. Returns 0, or OQ_EINVAL when v
 * is not an integer (or a u64 beyond int64). */
OQ_WUR int oq_amqp_field_int(const amqp_field_value_t *v, int64_t *out);

#endif
