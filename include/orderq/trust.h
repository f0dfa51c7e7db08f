/* trust.h - whose x-orderq-* headers orderq believes
 *
 * orderq's own headers steer it: x-orderq-attempt (how many retries are
 * left), x-orderq-force-resend (a person's "send it again"), the original
 * exchange and routing key (where a replay goes), and, on a dead letter,
 * what its dead_letter row says. Anyone who may publish can write headers,
 * so orderq believes them only on a message its own broker user published:
 * one whose user_id property is that user. RabbitMQ refuses a publish
 * whose user_id is not the publishing connection's user (406
 * PRECONDITION_FAILED; checked on 3.10.8, for an administrator too), unless
 * that user has the impersonator tag. orderq sets user_id on every retry,
 * dead letter and replay it publishes, and the property survives the delay
 * tiers and the quorum queues' own dead-lettering unchanged. This holds as
 * long as nobody else publishes as orderq's user (docs/operations.md,
 * "RabbitMQ permissions for the shop").
 */
#ifndef ORDERQ_TRUST_H
#define ORDERQ_TRUST_H

#include <amqp.h>
#include <stddef.h>

#include "orderq/common.h"

struct oq_config;

/* orderq's broker user: the user amqp_url logs in as (librabbitmq's
 * "guest" when the URL names none). *out is malloc'd. Returns 0,
 * OQ_EINVAL (amqp_url does not parse) or OQ_ENOMEM. */
OQ_WUR int oq_trust_own_user(const struct oq_config *cfg, char **out);

/* 1 when p's user_id is user (so orderq published it), else 0. */
int oq_trust_published_by(const amqp_basic_properties_t *p, const char *user);

/* The names of p's x-orderq-* headers that orderq would act on, ", "
 * between them, into out (bytes other than printable ASCII as '?', cut
 * with "..." when it does not fit). Left out:
 * the ids orderq's relays put on first publishes (x-orderq-outbox-id,
 * x-orderq-legacy-id), read only on a return. Returns how many. */
size_t oq_trust_orderq_headers(const amqp_basic_properties_t *p, char *out, size_t outlen);

#endif
