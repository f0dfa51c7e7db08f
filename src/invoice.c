/* invoice.c - an invoice event's data read and checked, and its lines for the mail */
#include "orderq/invoice.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/json.h"
#include "orderq/mailer.h"
#include "orderq/money.h"
#include "orderq/rules.h"

static int missing(char *err, size_t errlen, const char *field, const char *what)
{
    snprintf(err, errlen, "event_data.%s: %s", field, what);
    return OQ_EINVAL;
}

/* A required text field of at most max bytes. */
static int text_of(yajl_val obj, const char *key, const char *field, size_t max, const char **out,
                   char *err, size_t errlen)
{
    *out = oq_json_text(obj, key);
    if (*out == NULL)
        return missing(err, errlen, field, "missing or empty");
    if (strlen(*out) > max) {
        snprintf(err, errlen, "event_data.%s: longer than %zu bytes", field, max);
        return OQ_EINVAL;
    }
    return 0;
}

static int amount_of(yajl_val obj, const char *key, int exponent, int required, int64_t *out,
                     char *err, size_t errlen)
{
    char why[200];
    yajl_val v = oq_json_member(obj, key);
    *out = 0;
    if ((v == NULL || YAJL_IS_NULL(v)) && !required)
        return 0;
    if (oq_json_amount(v, exponent, out, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "event_data.totals.%s: %s", key, why);
        return OQ_EINVAL;
    }
    return 0;
}

static int item_of(yajl_val it, int exponent, struct oq_invoice_item *item, char *why,
                   size_t whylen)
{
    struct oq_order_item line;
    if (oq_order_item_parse(it, exponent, &line, why, whylen) != 0)
        return OQ_EINVAL;
    item->sku = line.sku;
    item->qty = line.qty;
    item->price = line.price;
    item->name = oq_json_text(it, "name");
    if (item->name == NULL)
        item->name = item->sku;
    if (oq_money_mul(item->qty, item->price, &item->line_total) != 0) {
        snprintf(why, whylen, "qty x price is too large");
        return OQ_EINVAL;
    }
    return 0;
}

int oq_invoice_parse(yajl_val data, struct oq_invoice *inv, char *err, size_t errlen)
{
    char why[300];
    int rc;
    memset(inv, 0, sizeof(*inv));
    yajl_val customer = oq_json_member(data, "customer"), totals = oq_json_member(data, "totals"),
             items = oq_json_member(data, "items");
    if ((rc = text_of(data, "invoice_id", "invoice_id", 64, &inv->invoice_id, err, errlen)) != 0 ||
        (rc = text_of(data, "order_id", "order_id", 64, &inv->order_id, err, errlen)) != 0 ||
        (rc = text_of(customer, "email", "customer.email", 254, &inv->customer_email, err,
                      errlen)) != 0)
        return rc;
    inv->increment_id = oq_json_text(data, "increment_id");
    if (inv->increment_id == NULL)
        inv->increment_id = inv->invoice_id;
    inv->customer_name = oq_json_text(customer, "name");
    inv->currency = oq_json_text(data, "currency");
    int exponent = inv->currency ? oq_currency_exponent(inv->currency) : -1;
    if (exponent < 0)
        return missing(err, errlen, "currency", "expected an ISO 4217 code such as \"USD\"");
    if (!YAJL_IS_OBJECT(totals))
        return missing(err, errlen, "totals", "expected an object with subtotal and grand_total");
    if ((rc = amount_of(totals, "subtotal", exponent, 1, &inv->subtotal, err, errlen)) != 0 ||
        (rc = amount_of(totals, "tax", exponent, 0, &inv->tax, err, errlen)) != 0 ||
        (rc = amount_of(totals, "shipping", exponent, 0, &inv->shipping, err, errlen)) != 0 ||
        (rc = amount_of(totals, "grand_total", exponent, 1, &inv->grand_total, err, errlen)) != 0)
        return rc;
    if (!YAJL_IS_ARRAY(items) || items->u.array.len == 0)
        return missing(err, errlen, "items", "expected a non-empty array of lines");
    if (items->u.array.len > OQ_INVOICE_MAX_ITEMS) {
        snprintf(err, errlen, "event_data.items: more than %d lines", OQ_INVOICE_MAX_ITEMS);
        return OQ_EINVAL;
    }
    if ((inv->items = calloc(items->u.array.len, sizeof(*inv->items))) == NULL)
        return OQ_ENOMEM;
    for (size_t i = 0; i < items->u.array.len; i++) {
        if (item_of(items->u.array.values[i], exponent, &inv->items[i], why, sizeof(why)) != 0) {
            snprintf(err, errlen, "event_data.items[%zu]: %s", i, why);
            oq_invoice_clear(inv);
            return OQ_EINVAL;
        }
        inv->n_items++;
    }
    return 0;
}

void oq_invoice_clear(struct oq_invoice *inv)
{
    if (inv == NULL)
        return;
    free(inv->items);
    memset(inv, 0, sizeof(*inv));
}

/* The stream's text into *out; 0, or OQ_ENOMEM when any write failed. */
static int close_text(FILE *f, char **text, char **out)
{
    int failed = ferror(f);
    if (fclose(f) != 0 || failed) {
        free(*text);
        *out = NULL;
        return OQ_ENOMEM;
    }
    *out = *text;
    return 0;
}

/* One row per item, as text or as HTML (names and SKUs escaped; amounts
 * are symbols and digits: nothing to escape). */
static int write_lines(const struct oq_invoice *inv, int html, char **out)
{
    char *text = NULL, price[64], total[64];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL)
        return OQ_ENOMEM;
    int no_memory = 0;
    for (size_t i = 0; i < inv->n_items && !no_memory; i++) {
        const struct oq_invoice_item *it = &inv->items[i];
        oq_money_display(it->price, inv->currency, price, sizeof(price));
        oq_money_display(it->line_total, inv->currency, total, sizeof(total));
        if (!html) {
            fprintf(f, "%lld x %s", (long long)it->qty, it->name);
            if (strcmp(it->name, it->sku) != 0)
                fprintf(f, " (%s)", it->sku);
            fprintf(f, "  %s  %s\n", price, total);
            continue;
        }
        char *name = NULL, *sku = NULL;
        no_memory = oq_html_escape(it->name, &name) != 0 || oq_html_escape(it->sku, &sku) != 0;
        if (!no_memory)
            fprintf(f,
                    "<tr><td>%s<br><small>%s</small></td><td align=\"right\">%lld</td>"
                    "<td align=\"right\">%s</td><td align=\"right\">%s</td></tr>\n",
                    name, sku, (long long)it->qty, price, total);
        free(name);
        free(sku);
    }
    if (no_memory) {
        fclose(f);
        free(text);
        return OQ_ENOMEM;
    }
    return close_text(f, &text, out);
}

int oq_invoice_lines_text(const struct oq_invoice *inv, char **out)
{
    return write_lines(inv, 0, out);
}

int oq_invoice_lines_html(const struct oq_invoice *inv, char **out)
{
    return write_lines(inv, 1, out);
}
