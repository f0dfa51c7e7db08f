/* invoice.h - an invoice.created / invoice.updated event's data, read and checked
 *
 *   {"invoice_id": "501", "increment_id": "INV-000501", "order_id": "9200000217",
 *    "currency": "USD", "customer": {"email": "ann@example.com", "name": "Ann"},
 *    "items": [{"sku": "MUG-1", "name": "Mug", "qty": 2, "price": "30.00"}],
 *    "totals": {"subtotal": "60.00", "tax": "4.80", "shipping": "5.00",
 *               "grand_total": "69.80"}}
 *
 * Amounts are kept as integer minor units of the currency. Anything missing
 * or malformed is a permanent error with a reason naming the field.
 */
#ifndef ORDERQ_INVOICE_H
#define ORDERQ_INVOICE_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "orderq/common.h"

#define OQ_INVOICE_MAX_ITEMS 1000

struct oq_invoice_item {
    const char *sku, *name; /* name: the sku when the event has none */
    int64_t qty, price, line_total;
};

/* Strings point into the event's tree: keep it alive while this is used. */
struct oq_invoice {
    const char *invoice_id, *increment_id, *order_id, *currency;
    const char *customer_email, *customer_name; /* name may be NULL */
    struct oq_invoice_item *items;
    size_t n_items;
    int64_t subtotal, tax, shipping, grand_total;
};

/* Read data into inv. Returns 0, OQ_ENOMEM, or OQ_EINVAL with the reason
 * in err. Free with oq_invoice_clear. */
OQ_WUR int oq_invoice_parse(yajl_val data, struct oq_invoice *inv, char *err, size_t errlen);
void oq_invoice_clear(struct oq_invoice *inv);

/* The lines as the mail shows them, one per item: in text, aligned
 * "2 x Mug (MUG-1)   $30.00   $60.00" rows; in HTML, <tr> rows with every
 * value escaped. *out is the caller's to free. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_invoice_lines_text(const struct oq_invoice *inv, char **out);
OQ_WUR int oq_invoice_lines_html(const struct oq_invoice *inv, char **out);

#endif
