/* test_phpser.c - PHP serialize() text to JSON: good data, and every way it can be wrong */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "orderq/phpser.h"

static int decode(const char *php, size_t len, char *json, size_t jsonlen, char *err, size_t errlen)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf;
    size_t n;
    int rc = oq_phpser_to_json(php, len, g, err, errlen);
    json[0] = '\0';
    if (rc == 0 && yajl_gen_get_buf(g, &buf, &n) == yajl_gen_status_ok)
        snprintf(json, jsonlen, "%.*s", (int)n, (const char *)buf);
    yajl_gen_free(g);
    return rc;
}

static void good_data_becomes_json(void **state)
{
    (void)state;
    static const struct {
        const char *php, *json;
    } cases[] = {
        /* the seed's row */
        {"a:2:{s:8:\"order_id\";s:10:\"9200000217\";s:12:\"order_status\";s:10:\"processing\";}",
         "{\"order_id\":\"9200000217\",\"order_status\":\"processing\"}"},
        {"N;", "null"},
        {"b:1;", "true"},
        {"b:0;", "false"},
        {"i:-42;", "-42"},
        {"i:9223372036854775807;", "9223372036854775807"},
        {"i:-9223372036854775808;", "-9223372036854775808"},
        {"d:19.99;", "19.99"},
        {"d:0.5;", "0.5"},
        {"d:-0;", "-0"},
        {"d:1.0E+25;", "1.0E+25"},
        {"s:0:\"\";", "\"\""},
        {"s:5:\"a\"b;c\";", "\"a\\\"b;c\""}, /* counted bytes: quotes and ; inside */
        {"s:5:\"caf\xc3\xa9\";", "\"caf\xc3\xa9\""},
        {"a:0:{}", "[]"},
        {"a:3:{i:0;s:1:\"x\";i:1;i:2;i:2;N;}", "[\"x\",2,null]"},
        {"a:2:{i:1;s:1:\"x\";i:0;s:1:\"y\";}", "{\"1\":\"x\",\"0\":\"y\"}"}, /* not in order */
        {"a:1:{s:5:\"items\";a:1:{i:0;a:2:{s:3:\"sku\";s:5:\"MUG-1\";s:3:\"qty\";i:2;}}}",
         "{\"items\":[{\"sku\":\"MUG-1\",\"qty\":2}]}"},
    };
    char json[512], err[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (decode(cases[i].php, strlen(cases[i].php), json, sizeof(json), err, sizeof(err)) != 0)
            fail_msg("case %zu (%s): %s", i, cases[i].php, err);
        assert_string_equal(json, cases[i].json);
    }
}

static void malformed_data_says_why(void **state)
{
    (void)state;
    static const struct {
        const char *php, *why;
    } cases[] = {
        {"", "the data ends where a value was expected at byte 0"},
        {"a:2:{s:8:\"order_id\";s:10:\"9200000217\";", "an array cut short"},
        {"s:10:\"short\";", "a string longer than the data"},
        {"s:3:\"abcd\";", "expected '\"' at byte 8"},
        {"s:-1:\"\";", "a string longer than the data"},
        {"i:12x;", "a malformed integer"},
        {"i:;", "a missing number"},
        {"b:2;", "a boolean that is not 0 or 1"},
        {"d:INF;", "a float JSON cannot hold"},
        {"d:NAN;", "a float JSON cannot hold"},
        {"d:0x10;", "a float JSON cannot hold"},
        {"O:8:\"stdClass\":0:{}", "a PHP object (not supported) at byte 0"},
        {"a:1:{i:0;R:1;}", "a PHP reference (not supported)"},
        {"a:1:{d:1.5;i:1;}", "an array key that is not an integer or a string"},
        {"N;N;", "data after the value at byte 2"},
        {"x:1;", "an unknown type"},
        {"s:2:\"\xff\xfe\";", "not UTF-8"},
        {"a:2:{i:0;i:1;}", "an array with fewer entries than its count"},
        /* found by tests/fuzz/fuzz_phpser: strtoll clamped these to LLONG_MAX */
        {"i:99999999999999999999;", "an integer out of range"},
        {"i:-9223372036854775809;", "an integer out of range"},
        {"a:1:{s:3:\"qty\";i:9223372036854775808;}", "an integer out of range"},
        {"i: 5;", "a malformed integer"},
        {"i:+5;", "a malformed integer"},
        /* found by tests/fuzz/fuzz_phpser: the JSON would read "002199" */
        {"d:002199;", "a float JSON cannot hold"},
        {"d:-01.5;", "a float JSON cannot hold"},
    };
    char json[512], err[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = decode(cases[i].php, strlen(cases[i].php), json, sizeof(json), err, sizeof(err));
        if (rc != OQ_EINVAL || strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu (%s): rc %d, err \"%s\", wanted \"%s\"", i, cases[i].php, rc, err,
                     cases[i].why);
    }
    /* A NUL inside counted bytes is refused, not silently cut. */
    assert_int_equal(decode("s:3:\"a\0b\";", 10, json, sizeof(json), err, sizeof(err)), OQ_EINVAL);
}

static void deep_nesting_is_refused(void **state)
{
    (void)state;
    char php[4096] = "", json[512], err[256];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(php + n, sizeof(php) - n, "a:1:{i:0;");
    n += (size_t)snprintf(php + n, sizeof(php) - n, "N;");
    for (int i = 0; i < 40; i++)
        php[n++] = '}';
    php[n] = '\0';
    assert_int_equal(decode(php, n, json, sizeof(json), err, sizeof(err)), OQ_EINVAL);
    assert_non_null(strstr(err, "nested too deep"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_data_becomes_json),
        cmocka_unit_test(malformed_data_says_why),
        cmocka_unit_test(deep_nesting_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
