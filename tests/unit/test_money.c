/* test_money.c - exact decimal parsing into minor units, formatting, currencies */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "orderq/money.h"

static char err[256];

static int64_t parse_ok(const char *text, int exponent)
{
    int64_t v = -1;
    assert_int_equal(oq_money_parse(text, strlen(text), exponent, &v, err, sizeof(err)), 0);
    return v;
}

static void parse_bad(const char *text, int exponent, const char *why)
{
    int64_t v = 12345;
    assert_int_equal(oq_money_parse(text, strlen(text), exponent, &v, err, sizeof(err)), OQ_EINVAL);
    assert_non_null(strstr(err, why));
    assert_int_equal(v, 12345); /* untouched on failure */
}

static void good_amounts(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("19.99", 2), 1999);
    assert_int_equal(parse_ok("20", 2), 2000);
    assert_int_equal(parse_ok("0.5", 2), 50);
    assert_int_equal(parse_ok("0", 2), 0);
    assert_int_equal(parse_ok("1.50", 2), 150);
    assert_int_equal(parse_ok("1.500", 2), 150); /* trailing zeros are not precision */
    assert_int_equal(parse_ok("500", 0), 500);
    assert_int_equal(parse_ok("500.0", 0), 500);
    assert_int_equal(parse_ok("1.234", 3), 1234);
    assert_int_equal(parse_ok("0.1", 2) + parse_ok("0.2", 2), parse_ok("0.3", 2));
    assert_int_equal(parse_ok("92233720368547758.07", 2), INT64_MAX);
}

static void bad_amounts(void **state)
{
    (void)state;
    parse_bad("19.999", 2, "more than 2 decimal places");
    parse_bad("19.5", 0, "more than 0 decimal places");
    parse_bad("-1.00", 2, "negative");
    parse_bad("abc", 2, "not a plain decimal");
    parse_bad("", 2, "not a plain decimal");
    parse_bad("1.", 2, "not a plain decimal");
    parse_bad(".5", 2, "not a plain decimal");
    parse_bad("1e3", 2, "not a plain decimal");
    parse_bad("+1", 2, "not a plain decimal");
    parse_bad(" 1", 2, "not a plain decimal");
    parse_bad("1,00", 2, "not a plain decimal");
    parse_bad("1.2.3", 2, "not a plain decimal");
    parse_bad("92233720368547758.08", 2, "too large");
    parse_bad("99999999999999999999", 0, "too large");
}

static void length_is_respected(void **state)
{
    (void)state;
    int64_t v = 0;
    /* yajl hands numbers over as (pointer, length) into a larger buffer */
    assert_int_equal(oq_money_parse("12.34,\"next\"", 5, 2, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 1234);
}

static void formatting(void **state)
{
    (void)state;
    char buf[32];
    oq_money_format(1999, 2, buf, sizeof(buf));
    assert_string_equal(buf, "19.99");
    oq_money_format(5, 2, buf, sizeof(buf));
    assert_string_equal(buf, "0.05");
    oq_money_format(-5, 2, buf, sizeof(buf));
    assert_string_equal(buf, "-0.05");
    oq_money_format(500, 0, buf, sizeof(buf));
    assert_string_equal(buf, "500");
    oq_money_format(1234, 3, buf, sizeof(buf));
    assert_string_equal(buf, "1.234");
    oq_money_format(INT64_MIN, 2, buf, sizeof(buf));
    assert_string_equal(buf, "-92233720368547758.08");
}

static void currencies(void **state)
{
    (void)state;
    assert_int_equal(oq_currency_exponent("USD"), 2);
    assert_int_equal(oq_currency_exponent("EUR"), 2);
    assert_int_equal(oq_currency_exponent("JPY"), 0);
    assert_int_equal(oq_currency_exponent("KWD"), 3);
    assert_int_equal(oq_currency_exponent("usd"), -1);
    assert_int_equal(oq_currency_exponent("US"), -1);
    assert_int_equal(oq_currency_exponent(""), -1);
    assert_int_equal(oq_currency_exponent(NULL), -1);
}

static void display(void **state)
{
    (void)state;
    static const struct {
        int64_t minor;
        const char *currency, *want;
    } cases[] = {
        {6980, "USD", "$69.80"},
        {123456, "USD", "$1,234.56"},
        {100000000, "USD", "$1,000,000.00"},
        {5, "USD", "$0.05"},
        {-500, "USD", "-$5.00"},
        {6980, "EUR",
         "\xe2\x82\xac"
         "69.80"},
        {500, "GBP",
         "\xc2\xa3"
         "5.00"},
        {1200, "JPY",
         "\xc2\xa5"
         "1,200"},
        {1250, "KWD", "KWD 1.250"},
        {1250, "CHF", "CHF 12.50"},
        {999, "CHF", "CHF 9.99"},
        {INT64_MIN, "USD", "-$92,233,720,368,547,758.08"},
        {1250, "usd", "12.50"}, /* not a currency code: the number alone */
    };
    char buf[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        oq_money_display(cases[i].minor, cases[i].currency, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].want);
    }
}

static void arithmetic_overflow(void **state)
{
    (void)state;
    int64_t out = 0, sum = INT64_MAX - 1;
    assert_int_equal(oq_money_mul(2500, 3, &out), 0);
    assert_int_equal(out, 7500);
    assert_int_equal(oq_money_mul(INT64_MAX / 2 + 1, 2, &out), OQ_EINVAL);
    assert_int_equal(oq_money_add(&sum, 1), 0);
    assert_int_equal(oq_money_add(&sum, 1), OQ_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_amounts),
        cmocka_unit_test(bad_amounts),
        cmocka_unit_test(length_is_respected),
        cmocka_unit_test(formatting),
        cmocka_unit_test(currencies),
        cmocka_unit_test(arithmetic_overflow),
        cmocka_unit_test(display),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
