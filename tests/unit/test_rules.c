/* test_rules.c - coupon rules: validation, evaluation, codes */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/rules.h"

static char err[512];

static const char rules_json[] =
    "[{\"rule_id\": 14, \"promo_id\": 1, \"name\": \"Mugs over 50\", \"currency\": \"USD\","
    "  \"skus\": [\"MUG-1\", \"MUG-2\"], \"threshold\": \"50.00\","
    "  \"coupon\": {\"discount_type\": \"fixed\", \"discount\": \"10.00\", \"valid_days\": 30,"
    "              \"code_prefix\": \"MUG-\"}},"
    " {\"rule_id\": 15, \"promo_id\": 2, \"name\": \"Tea\", \"currency\": \"USD\","
    "  \"skus\": [\"TEA-1\", \"MUG-1\"], \"threshold\": 20,"
    "  \"coupon\": {\"discount_type\": \"percent\", \"discount\": 12.5, \"valid_days\": 7}},"
    " {\"rule_id\": 16, \"promo_id\": 3, \"name\": \"Yen\", \"currency\": \"JPY\","
    "  \"skus\": [\"MUG-1\"], \"threshold\": \"5000\","
    "  \"coupon\": {\"discount_type\": \"fixed\", \"discount\": \"500\", \"valid_days\": 1}}]";

static struct oq_rule *load(size_t *n)
{
    struct oq_rule *rules = NULL;
    assert_int_equal(oq_rules_parse(rules_json, strlen(rules_json), &rules, n, err, sizeof(err)),
                     0);
    return rules;
}

static void rules_parse(void **state)
{
    (void)state;
    size_t n = 0;
    struct oq_rule *r = load(&n);
    assert_int_equal(n, 3);
    assert_int_equal(r[0].rule_id, 14);
    assert_int_equal(r[0].threshold, 5000);
    assert_int_equal(r[0].discount, 1000);
    assert_int_equal(r[0].n_skus, 2);
    assert_string_equal(r[0].code_prefix, "MUG-");
    assert_int_equal(r[1].discount_type, OQ_DISCOUNT_PERCENT);
    assert_int_equal(r[1].discount, 1250); /* 12.5 % */
    assert_int_equal(r[1].threshold, 2000);
    assert_int_equal(r[2].threshold, 5000); /* yen have no decimals */
    assert_int_equal(r[2].exponent, 0);
    oq_rules_free(r, n);
}

static void rules_errors_name_rule_and_field(void **state)
{
    (void)state;
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{}", "expected a JSON array of rules"},
        {"[", "parse error"},
        {"[{\"rule_id\": 14, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"USD\","
         " \"skus\": [\"A\"], \"threshold\": \"50.001\", \"coupon\": {}}]",
         "rule 1 (rule_id 14): threshold: amount \"50.001\" has more than 2 decimal places"},
        {"[{\"rule_id\": 0}]", "rule 1: rule_id: expected a whole number of at least 1"},
        {"[{\"rule_id\": 3, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"usd\"}]",
         "rule 1 (rule_id 3): currency: expected an ISO 4217 code"},
        {"[{\"rule_id\": 3, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"USD\","
         " \"skus\": []}]",
         "rule 1 (rule_id 3): skus: expected a non-empty array"},
        {"[{\"rule_id\": 3, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"USD\","
         " \"skus\": [\"A\"], \"threshold\": \"-5\", \"coupon\": {}}]",
         "threshold: amount \"-5\" is negative"},
        {"[{\"rule_id\": 3, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"USD\","
         " \"skus\": [\"A\"], \"threshold\": \"5\", \"coupon\": {\"discount_type\": \"bogo\"}}]",
         "coupon.discount_type: expected \"fixed\" or \"percent\""},
        {"[{\"rule_id\": 3, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"USD\","
         " \"skus\": [\"A\"], \"threshold\": \"5\", \"coupon\": {\"discount_type\": \"percent\","
         " \"discount\": \"150\", \"valid_days\": 3}}]",
         "coupon.discount: a percentage must be at most 100"},
        {"[{\"rule_id\": 3, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"USD\","
         " \"skus\": [\"A\"], \"threshold\": \"5\", \"coupon\": {\"discount_type\": \"fixed\","
         " \"discount\": \"1\", \"valid_days\": 3, \"code_prefix\": \"A B\"}}]",
         "coupon.code_prefix: expected up to 32 letters"},
        {"[{\"rule_id\": 3, \"promo_id\": 1, \"name\": \"x\", \"currency\": \"USD\","
         " \"skus\": [\"A\"], \"threshold\": \"5\", \"coupon\": {\"discount_type\": \"fixed\","
         " \"discount\": \"1\", \"valid_days\": 3}},"
         " {\"rule_id\": 3, \"promo_id\": 1, \"name\": \"y\", \"currency\": \"USD\","
         " \"skus\": [\"A\"], \"threshold\": \"5\", \"coupon\": {\"discount_type\": \"fixed\","
         " \"discount\": \"1\", \"valid_days\": 3}}]",
         "rule 2 (rule_id 3): rule_id: rule 1 has the same rule_id"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oq_rule *r = NULL;
        size_t n = 99;
        int rc = oq_rules_parse(cases[i].json, strlen(cases[i].json), &r, &n, err, sizeof(err));
        if (rc != OQ_EINVAL || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: rc %d, err \"%s\", wanted \"%s\"", i, rc, err, cases[i].want);
        assert_null(r);
        assert_int_equal(n, 0);
    }
}

/* An order.processing event_data with the given items JSON. */
static yajl_val order_data(const char *currency, const char *items)
{
    char text[2048], perr[128];
    snprintf(text, sizeof(text),
             "{\"order_id\": \"9200000217\", \"order_status\": \"processing\", \"currency\": "
             "\"%s\", \"customer\": {\"email\": \"ann@example.com\", \"name\": \"Ann\"},"
             " \"items\": %s}",
             currency, items);
    yajl_val v = yajl_tree_parse(text, perr, sizeof(perr));
    assert_non_null(v);
    return v;
}

/* Qualifying total and verdict of rule `index` for an order. */
static int64_t evaluate(size_t index, const char *currency, const char *items, int *earned)
{
    size_t n = 0;
    struct oq_rule *rules = load(&n);
    struct oq_order order;
    int64_t total = -1;
    yajl_val data = order_data(currency, items);
    assert_int_equal(oq_order_parse(data, &order, err, sizeof(err)), 0);
    assert_int_equal(oq_rule_evaluate(&rules[index], &order, &total, earned), 0);
    oq_order_clear(&order);
    yajl_tree_free(data);
    oq_rules_free(rules, n);
    return total;
}

static void evaluation(void **state)
{
    (void)state;
    int earned = -1;
    /* 2 x 25.00 + 1 x 0.01 of rule SKUs = 50.01 > 50.00 */
    assert_int_equal(evaluate(0, "USD",
                              "[{\"sku\": \"MUG-1\", \"qty\": 2, \"price\": \"25.00\","
                              " \"original_price\": \"25.00\"},"
                              " {\"sku\": \"MUG-2\", \"qty\": \"1\", \"price\": 0.01}]",
                              &earned),
                     5001);
    assert_true(earned);
    /* exactly the threshold does not qualify */
    assert_int_equal(
        evaluate(0, "USD", "[{\"sku\": \"MUG-1\", \"qty\": 2, \"price\": \"25.00\"}]", &earned),
        5000);
    assert_false(earned);
    /* a discounted item does not count, even if it would tip the total */
    assert_int_equal(evaluate(0, "USD",
                              "[{\"sku\": \"MUG-1\", \"qty\": 2, \"price\": \"25.00\"},"
                              " {\"sku\": \"MUG-2\", \"qty\": 1, \"price\": \"9.99\","
                              " \"original_price\": \"12.00\"}]",
                              &earned),
                     5000);
    assert_false(earned);
    /* SKUs outside the rule do not count */
    assert_int_equal(
        evaluate(0, "USD", "[{\"sku\": \"TEA-1\", \"qty\": 9, \"price\": \"99.00\"}]", &earned), 0);
    assert_false(earned);
    /* an order in another currency never qualifies */
    assert_int_equal(
        evaluate(0, "EUR", "[{\"sku\": \"MUG-1\", \"qty\": 9, \"price\": \"99.00\"}]", &earned), 0);
    assert_false(earned);
    /* several rules see the same order differently */
    assert_int_equal(evaluate(1, "USD",
                              "[{\"sku\": \"MUG-1\", \"qty\": 1, \"price\": \"20.01\"},"
                              " {\"sku\": \"MUG-2\", \"qty\": 1, \"price\": \"40.00\"}]",
                              &earned),
                     2001);
    assert_true(earned);
    /* exact decimal arithmetic: 3 x 16.67 = 50.01, with Magento's four decimals */
    assert_int_equal(evaluate(0, "USD",
                              "[{\"sku\": \"MUG-1\", \"qty\": \"3.0000\", \"price\": \"16.6700\","
                              " \"original_price\": \"16.6700\"}]",
                              &earned),
                     5001);
    assert_true(earned);
    /* yen: no minor units; 2 x 2500 = 5000 is not above 5000 */
    assert_int_equal(
        evaluate(2, "JPY", "[{\"sku\": \"MUG-1\", \"qty\": 2, \"price\": 2500}]", &earned), 5000);
    assert_false(earned);
}

static void order_errors(void **state)
{
    (void)state;
    static const struct {
        const char *currency, *items, *want;
    } cases[] = {
        {"USD", "[{\"sku\": \"A\", \"qty\": 1, \"price\": \"1.999\"}]",
         "items[0]: price: amount \"1.999\" has more than 2 decimal places"},
        {"USD", "[{\"sku\": \"A\", \"qty\": 1, \"price\": \"-1\"}]", "items[0]: price: amount"},
        {"USD", "[{\"sku\": \"A\", \"qty\": 1.5, \"price\": \"1\"}]", "items[0]: qty"},
        {"USD", "[{\"sku\": \"A\", \"qty\": 1, \"price\": \"abc\"}]", "not a plain decimal"},
        {"USD", "[{\"qty\": 1, \"price\": \"1\"}]", "items[0]: expected an object with a sku"},
        {"USD", "{}", "items: expected an array"},
        {"dollars", "[]", "currency: expected an ISO 4217 code"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oq_order order;
        yajl_val data = order_data(cases[i].currency, cases[i].items);
        int rc = oq_order_parse(data, &order, err, sizeof(err));
        if (rc != OQ_EINVAL || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: rc %d, err \"%s\", wanted \"%s\"", i, rc, err, cases[i].want);
        oq_order_clear(&order);
        yajl_tree_free(data);
    }
}

static void order_without_items(void **state)
{
    (void)state;
    char perr[64];
    struct oq_order order;
    yajl_val data = yajl_tree_parse(
        "{\"order_id\": 9200000217, \"order_status\": \"processing\", \"currency\": \"USD\"}", perr,
        sizeof(perr));
    assert_int_equal(oq_order_parse(data, &order, err, sizeof(err)), 0);
    assert_string_equal(order.order_id, "9200000217"); /* a number becomes its text */
    assert_false(order.has_items);
    assert_null(order.customer_email);
    oq_order_clear(&order);
    yajl_tree_free(data);
}

static void coupon_codes(void **state)
{
    (void)state;
    char a[64], b[64];
    int seen[256] = {0};
    assert_int_equal(oq_coupon_code("MUG-", "ABC", 12, a, sizeof(a)), 0);
    assert_int_equal(strlen(a), 16);
    assert_memory_equal(a, "MUG-", 4);
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(oq_coupon_code("", "ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 12, b, sizeof(b)),
                         0);
        for (int k = 0; k < 12; k++)
            seen[(unsigned char)b[k]]++;
    }
    /* every symbol shows up, none outside the alphabet, roughly evenly */
    for (const char *p = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"; *p; p++) {
        assert_true(seen[(unsigned char)*p] > 24000 / 32 / 2);
        seen[(unsigned char)*p] = 0;
    }
    for (int c = 0; c < 256; c++)
        assert_int_equal(seen[c], 0);
    assert_int_equal(oq_coupon_code("TOO-LONG-", "AB", 60, b, sizeof(b)), OQ_EINVAL);
    assert_int_equal(oq_coupon_code("", "A", 5, b, sizeof(b)), OQ_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rules_parse),         cmocka_unit_test(rules_errors_name_rule_and_field),
        cmocka_unit_test(evaluation),          cmocka_unit_test(order_errors),
        cmocka_unit_test(order_without_items), cmocka_unit_test(coupon_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
