/* phpser.h - PHP's serialize() format, as the legacy coupon_queue table stores event_data
 *
 *   a:2:{s:8:"order_id";s:10:"9200000217";s:12:"order_status";s:10:"processing";}
 *
 * decodes to {"order_id":"9200000217","order_status":"processing"}. Strings
 * (s:LEN:"bytes"; LEN counts bytes), integers, floats, booleans, null and
 * nested arrays are understood; an array whose keys are 0..n-1 in order
 * becomes a JSON array, any other an object. Objects (O:, C:), references
 * (r:, R:) and anything malformed are refused with a reason.
 */
#ifndef ORDERQ_PHPSER_H
#define ORDERQ_PHPSER_H

#include <stddef.h>
#include <yajl/yajl_gen.h>

#include "orderq/common.h"

#define OQ_PHPSER_MAX_DEPTH 32

/* Decode text (len bytes) and generate it as one JSON value into g.
 * Returns 0, or OQ_EINVAL with the reason and byte offset in err. */
OQ_WUR int oq_phpser_to_json(const char *text, size_t len, yajl_gen g, char *err, size_t errlen);

#endif
