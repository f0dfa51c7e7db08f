/* intake.h - a shop's own message format: where an event's code, identifier and data come from
 *
 * The `intake` setting is a JSON object keyed by the event code of a work
 * queue (the queue <queue_prefix>.<event_code> a delivery arrived on):
 *
 *   {"order.processing": {"format": "magento",
 *                         "codes": ["sales.order.paid"],
 *                         "code": "routing_key",
 *                         "identifier": "{entity_id}_{status}",
 *                         "data": "magento"}}
 *
 * code:       "envelope" (the body's event_code), "routing_key" (the
 *             routing key the shop published with), or "type" (the AMQP
 *             type property).
 * identifier: "envelope" (event_identifier, else message_id: as without
 *             intake), "message_id", or a template over the body's fields,
 *             "{entity_id}_{status}" ("{a.b}" reaches into objects).
 * data:       "envelope" (the body's event_data), "body" (the whole body),
 *             or "magento" (a Magento order document through the shop-API
 *             converter, order.processing only).
 * codes:      the shop's own codes for this event: each is bound from
 *             shop_exchange to the queue, and the code read from a message
 *             must be one of them (or the event code or one of its aliases).
 * format:     a preset: "envelope" (everything from the envelope, the
 *             default) or "magento" (routing_key, "{entity_id}_{status}",
 *             magento). A key given with it wins.
 *
 * A queue without an entry reads the orderq envelope, exactly as before.
 * Every way a message fails its mapping ends in OQ_EINVAL and a reason that
 * names the setting: it is dead-lettered as bad input.
 */
#ifndef ORDERQ_INTAKE_H
#define ORDERQ_INTAKE_H

#include <stddef.h>

#include "orderq/common.h"
#include "orderq/event.h"

enum oq_intake_code {
    OQ_INTAKE_CODE_ENVELOPE = 0,
    OQ_INTAKE_CODE_ROUTING_KEY,
    OQ_INTAKE_CODE_TYPE
};
enum oq_intake_id { OQ_INTAKE_ID_ENVELOPE = 0, OQ_INTAKE_ID_MESSAGE_ID, OQ_INTAKE_ID_TEMPLATE };
enum oq_intake_data { OQ_INTAKE_DATA_ENVELOPE = 0, OQ_INTAKE_DATA_BODY, OQ_INTAKE_DATA_MAGENTO };

#define OQ_INTAKE_MAX_CODES 32 /* shop codes per event: bindings, so few */

struct oq_intake_rule {
    const char *event_code; /* canonical (points into oq_event_routes) */
    enum oq_intake_code code;
    enum oq_intake_id identifier;
    enum oq_intake_data data;
    char *tmpl; /* OQ_INTAKE_ID_TEMPLATE: the template */
    char *codes[OQ_INTAKE_MAX_CODES];
    size_t n_codes;
};

struct oq_intake {
    struct oq_intake_rule *rules;
    size_t n;
};

/* What a delivery carries besides its body; any may be NULL (absent). */
struct oq_intake_message {
    /* As the shop published it (the original one on a retry); NULL when the
     * message was put straight into its work queue through the default
     * exchange (a `dlq replay --to-queue`, a hand publish): it is then the
     * queue's own event, whatever code the rule reads from the key. */
    const char *routing_key;
    const char *type;
    const char *message_id;
};

/* Parse the `intake` setting's JSON text ("" is no mappings). *out is the
 * caller's (oq_intake_free). Returns 0, OQ_ENOMEM, or OQ_EINVAL with why
 * naming the place and what was expected
 * ("order.processing.identifier: the template \"x\" names no {field}; ..."). */
OQ_WUR int oq_intake_parse(const char *text, struct oq_intake **out, char *why, size_t whylen);
void oq_intake_free(struct oq_intake *in);

/* The rule for event_code (a work queue's code), or NULL: the envelope. */
const struct oq_intake_rule *oq_intake_find(const struct oq_intake *in, const char *event_code);

/* The rule whose event, aliases or shop codes hold routing_key, or NULL:
 * for a queue that takes several events (the webhook queue), the routing
 * key the shop chose says whose mapping reads the body. */
const struct oq_intake_rule *oq_intake_find_by_key(const struct oq_intake *in,
                                                   const char *routing_key);

/* Decode body by rule (rule NULL: oq_event_decode). Sets ev as
 * oq_event_decode does; ev->canonical_code is rule->event_code.
 * Returns 0; OQ_EINVAL with the reason in err; OQ_ENOMEM. */
OQ_WUR int oq_intake_decode(const struct oq_intake_rule *rule, const void *body, size_t len,
                            const struct oq_intake_message *msg, struct oq_event *ev, char *err,
                            size_t errlen);

/* Expand tmpl over the object root: each {path} is replaced by the text of
 * the string (non-empty) or number found there. *out is the caller's.
 * Returns 0; OQ_EINVAL when a field is missing, null, empty, a boolean, an
 * object or an array, with the reason in err; OQ_ENOMEM. */
OQ_WUR int oq_intake_expand(const char *tmpl, yajl_val root, char **out, char *err, size_t errlen);

#endif
