/* event.h - the event envelope: decode and validate one message body
 *
 *   {"event_code": "order.processing", "event_identifier": "9200000217_processing",
 *    "created_at": "2017-02-23T11:06:40Z", "event_data": {...}}
 *
 * Every way a body can be wrong ends in OQ_EINVAL and a reason a person can
 * read ("event_identifier is 230 bytes; at most 191"), never in a crash:
 * bad input is dead-lettered with that reason.
 */
#ifndef ORDERQ_EVENT_H
#define ORDERQ_EVENT_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

#include "orderq/common.h"
#include "orderq/json.h"

#define OQ_EVENT_ID_MAX    191 /* bytes: the ledger's key column */
#define OQ_EVENT_CODE_MAX  191
#define OQ_EVENT_MAX_DEPTH OQ_JSON_MAX_DEPTH /* nesting of the whole body, as all JSON */

/* The event codes orderq knows, with the legacy names accepted for them. */
struct oq_event_route {
    const char *event_code;
    const char *aliases[3]; /* NULL-terminated */
};
extern const struct oq_event_route oq_event_routes[];
extern const size_t oq_event_route_count;

/* The canonical code for code or one of its aliases
 * ("add_order_to_queue" -> "order.processing"); code itself when unknown. */
const char *oq_event_canonical_code(const char *code);

/* A decoded envelope. Strings are NUL-terminated and hold no NUL. */
struct oq_event {
    char *code;                 /* as sent */
    const char *canonical_code; /* alias resolved (points into a table or at code) */
    char *identifier;           /* from the body, else the message_id property */
    char *created_at;           /* NULL when absent */
    yajl_val root;              /* the whole body */
    yajl_val data;              /* event_data: an object inside root, or owned_data */
    yajl_val owned_data;        /* event_data made from the body (intake.h), else NULL */
    const char *body;           /* the body as decoded: borrowed, the caller's to keep alive */
    size_t body_len;
};

/* Decode body (len bytes, not NUL-terminated; ev->body points at it, so it
 * must outlive ev where ev->body is used). message_id (may be NULL) is the
 * AMQP property, used when the body has no event_identifier.
 * Returns 0; OQ_EINVAL with the reason in err; OQ_ENOMEM. On failure ev is
 * left empty (oq_event_clear is still safe). */
OQ_WUR int oq_event_decode(const void *body, size_t len, const char *message_id,
                           struct oq_event *ev, char *err, size_t errlen);
void oq_event_clear(struct oq_event *ev);

/* The first half of oq_event_decode, for other formats (intake.h): check
 * the body's shape (a JSON object, depth, no NUL) and that every key and
 * string is strict UTF-8; ev->root, ev->body and ev->body_len are set, no
 * field is read. Returns 0; OQ_EINVAL with the reason in err; OQ_ENOMEM. */
OQ_WUR int oq_event_parse_body(const void *body, size_t len, struct oq_event *ev, char *err,
                               size_t errlen);

/* root[key] as a copy in *out (NULL when absent and !required): a
 * non-empty string of at most max bytes, else OQ_EINVAL with the reason
 * ("event_code is missing", "... must be a string"). */
OQ_WUR int oq_event_string_field(yajl_val root, const char *key, int required, size_t max,
                                 char **out, char *err, size_t errlen);

/* created_at as Unix microseconds: RFC 3339, "2017-02-23T11:06:40Z",
 * with an optional fraction and a Z or +hh:mm / -hh:mm offset; or with a
 * space for the T, where no zone means UTC ("2026-12-01 10:00:00", Magento's
 * created_at, which it keeps in UTC). A T without a zone stays refused: its
 * zone is anyone's guess. Returns 0,
 * or OQ_EINVAL when text is not such a time. */
OQ_WUR int oq_event_time_us(const char *text, int64_t *out);

/* Is s (len bytes) strict UTF-8: well-formed, no NUL, no overlong forms
 * (C0 80), no surrogates (ED A0 80), nothing above U+10FFFF (F4 90.., F5..)?
 * MariaDB's utf8mb4 stores what fails this as '?'. */
int oq_utf8_valid(const char *s, size_t len);

/* The length of the longest strict UTF-8 prefix of s (len bytes): len when
 * oq_utf8_valid, else the offset of the first bad sequence. */
size_t oq_utf8_prefix(const char *s, size_t len);

#endif
