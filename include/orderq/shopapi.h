/* shopapi.h - the shop's REST API over libcurl: an order looked up when its event lacks parts
 *
 * Magento style: GET {shop_api_url}/rest/V1/orders/{order_id} with
 * "Authorization: Bearer <shop_api_token>". The answer is turned into the
 * envelope's event_data shape
 *
 *   {"order_id": ..., "currency": ..., "order_status": ...,
 *    "customer": {"email": ..., "name": ...},
 *    "items": [{"sku": ..., "qty": ..., "price": ..., "original_price": ...}]}
 *
 * (child lines of configurable products, which carry parent_item_id, are
 * left out: their parent line holds the price). Amounts keep the text the
 * shop wrote. Connection failures, timeouts, 408, 429 and 5xx are transient;
 * 404 and other 4xx, and an answer that does not parse, are permanent.
 */
#ifndef ORDERQ_SHOPAPI_H
#define ORDERQ_SHOPAPI_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

#include "orderq/common.h"
#include "orderq/http_effect.h"

struct oq_config;
struct oq_shopapi; /* opaque: one curl handle, its connection kept */

/* From cfg's shop_api_* settings. Returns 0, OQ_ENOMEM, or OQ_ECONFIG (no
 * shop_api_url, or the token file cannot be read) with err naming it. */
OQ_WUR int oq_shopapi_new(const struct oq_config *cfg, struct oq_shopapi **out, char *err,
                          size_t errlen);
void oq_shopapi_free(struct oq_shopapi *api);

/* Look order_id up. OQ_HTTP_DONE: *event_data is the JSON text (the
 * caller's to free). Otherwise why says what went wrong. */
enum oq_http_outcome oq_shopapi_order(struct oq_shopapi *api, const char *order_id,
                                      char **event_data, char *why, size_t whylen);

/* Turn a Magento order document (body, len bytes) into event_data JSON for
 * order_id. Returns 0, OQ_ENOMEM, or OQ_EINVAL with why. */
OQ_WUR int oq_shopapi_order_to_event_data(const char *body, size_t len, const char *order_id,
                                          char **event_data, char *why, size_t whylen);

/* The same from a parsed order document (borrowed), shared with the
 * `magento` intake format (intake.h) so both ways in make one event_data.
 * label starts each reason ("shop API: the answer for order 217").
 * Returns 0, OQ_ENOMEM, or OQ_EINVAL with why. */
OQ_WUR int oq_shopapi_order_doc_to_event_data(yajl_val doc, const char *order_id, const char *label,
                                              char **event_data, char *why, size_t whylen);

#endif
