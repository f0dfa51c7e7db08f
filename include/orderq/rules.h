/* rules.h - coupon rules: load and validate them, evaluate an order, make codes
 *
 * The seed's business rule, made exact: an order earns a rule's coupon when
 * the sum of price x qty over its items whose SKU the rule names, counting
 * only items not sold below their original price, is strictly greater than
 * the rule's threshold, in the rule's currency. All money is int64 minor
 * units (money.h).
 */
#ifndef ORDERQ_RULES_H
#define ORDERQ_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#include "orderq/common.h"

enum oq_discount_type { OQ_DISCOUNT_FIXED = 0, OQ_DISCOUNT_PERCENT = 1 };

#define OQ_CODE_PREFIX_MAX 32

struct oq_rule {
    int64_t rule_id;
    int64_t promo_id;
    char *name;
    char currency[4];
    int exponent; /* decimals of currency */
    int64_t threshold;
    char **skus;
    size_t n_skus;
    enum oq_discount_type discount_type;
    int64_t discount; /* fixed: minor units; percent: hundredths of a percent */
    int64_t valid_days;
    char code_prefix[OQ_CODE_PREFIX_MAX + 1];
};

/* Parse and validate a JSON array of rules (the `orderq rules load` file):
 *   [{"rule_id": 14, "promo_id": 1, "name": "Mugs over 50", "currency": "USD",
 *     "skus": ["MUG-1"], "threshold": "50.00",
 *     "coupon": {"discount_type": "fixed", "discount": "10.00",
 *                "valid_days": 30, "code_prefix": "MUG-"}}]
 * Errors name the rule and the field: "rule 2 (rule_id 14): threshold: ...".
 * Returns 0, OQ_EINVAL or OQ_ENOMEM; free with oq_rules_free. */
OQ_WUR int oq_rules_parse(const char *json, size_t len, struct oq_rule **rules, size_t *n,
                          char *err, size_t errlen);
void oq_rules_free(struct oq_rule *rules, size_t n);

struct oq_order_item {
    const char *sku; /* points into the event's tree */
    int64_t qty;
    int64_t price;          /* minor units of the order's currency */
    int64_t original_price; /* == price when the event does not say */
};

/* The parts of an order.processing event the rules need. Strings point
 * into the event's tree: keep the tree alive while the order is used. */
struct oq_order {
    const char *order_id;
    const char *order_status;
    const char *currency;
    const char *customer_email; /* NULL when absent */
    const char *customer_name;  /* NULL when absent */
    struct oq_order_item *items;
    size_t n_items;
    int has_items; /* the event carried an items array */
};

/* One line of an order or an invoice: {"sku", "qty" (a whole number: 2,
 * "2", "2.0000"), "price", "original_price" (optional)} in the currency of
 * `exponent`. Returns 0 or OQ_EINVAL with the reason in why. */
OQ_WUR int oq_order_item_parse(yajl_val it, int exponent, struct oq_order_item *item, char *why,
                               size_t whylen);

/* Read an order from event_data. Missing order_id / order_status /
 * currency, bad money, bad quantities: OQ_EINVAL with the reason (a
 * permanent error). An absent items array is not an error here: has_items
 * says so (the shop API fills it in). Free with oq_order_clear. */
OQ_WUR int oq_order_parse(yajl_val data, struct oq_order *order, char *err, size_t errlen);
void oq_order_clear(struct oq_order *order);

/* Does the order earn the rule? *qualifying gets the qualifying total
 * (0 for another currency). Returns 0 or OQ_EINVAL (overflow). */
OQ_WUR int oq_rule_evaluate(const struct oq_rule *rule, const struct oq_order *order,
                            int64_t *qualifying, int *earned);

/* A coupon code: prefix + length characters drawn uniformly from alphabet
 * with getrandom(2). Returns 0, OQ_EINVAL (out too small, bad alphabet) or
 * OQ_EIO (no randomness). */
OQ_WUR int oq_coupon_code(const char *prefix, const char *alphabet, size_t length, char *out,
                          size_t outlen);

struct oq_db;

/* Upsert rules by rule_id (their SKU lists replaced) in one transaction.
 * Returns 0 or OQ_EDB with the reason in err. */
OQ_WUR int oq_rules_save(struct oq_db *db, const struct oq_rule *rules, size_t n, char *err,
                         size_t errlen);

/* Every rule in the database, by rule_id. Returns 0, OQ_ENOMEM or OQ_EDB;
 * free with oq_rules_free. */
OQ_WUR int oq_rules_load(struct oq_db *db, struct oq_rule **rules, size_t *n, char *err,
                         size_t errlen);

#endif
