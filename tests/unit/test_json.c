/* test_json.c - one depth limit for every JSON orderq parses, checked before a tree exists;
 * syntax errors say where, never quoting the text */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderq/config.h"
#include "orderq/json.h"
#include "orderq/rules.h"
#include "orderq/shopapi.h"
#include "orderq/webhook.h"

#define DEEP 1000000 /* the reported answer: 2 MB, under the shop API's 8 MiB cap */

/* head + '[' x depth + ']' x depth + tail, NUL-terminated. */
static char *nest(const char *head, size_t depth, const char *tail)
{
    size_t hl = strlen(head), tl = strlen(tail);
    char *s = malloc(hl + 2 * depth + tl + 1);
    assert_non_null(s);
    memcpy(s, head, hl);
    memset(s + hl, '[', depth);
    memset(s + hl + depth, ']', depth);
    memcpy(s + hl + 2 * depth, tail, tl + 1);
    return s;
}

static void limit_is_exact(void **state)
{
    (void)state;
    char err[256];
    /* 64 levels in all: the outer array and 63 inside it */
    char *ok = nest("", OQ_JSON_MAX_DEPTH, "");
    char *over = nest("", OQ_JSON_MAX_DEPTH + 1, "");
    yajl_val v = oq_json_parse(ok, err, sizeof(err));
    assert_non_null(v);
    yajl_tree_free(v);
    assert_null(oq_json_parse(over, err, sizeof(err)));
    assert_string_equal(err, "the JSON nests deeper than 64 levels");
    free(ok);
    free(over);
}

static void brackets_in_strings_and_comments_do_not_count(void **state)
{
    (void)state;
    char err[256];
    char *text = nest("/* [[[ */ {\"a\": \"", 200, "\\\" [[\", \"b\": [1]}");
    yajl_val v = oq_json_parse(text, err, sizeof(err));
    assert_non_null(v);
    assert_true(YAJL_IS_ARRAY(oq_json_member(v, "b")));
    yajl_tree_free(v);
    free(text);
}

static void bad_json_keeps_yajls_reason(void **state)
{
    (void)state;
    char err[256];
    assert_null(oq_json_parse("{\"a\": }", err, sizeof(err)));
    assert_string_equal(err, "parse error: unallowed token at this point in JSON text near byte 7 "
                             "(line 1)");
    /* what is missing is missing at the end */
    assert_null(oq_json_parse("[1,\n2", err, sizeof(err)));
    assert_string_equal(err, "parse error: premature EOF near byte 5 (line 2)");
    assert_null(oq_json_parse("{\"a\": ", NULL, 0)); /* no buffer: still refused */
}

/* A syntax error right after a token: yajl's verbose message would quote
 * the bytes around it, and this reason goes to logs. */
/* A syntax error right after a token: yajl_tree's verbose message quotes
 * 30 bytes of the text (from the start, once the whole text was read), and
 * this reason goes to logs. */
static void webhooks_file_error_names_the_place_not_the_token(void **state)
{
    (void)state;
    char err[512];
    struct oq_webhook *hooks = NULL;
    size_t n = 0;
    const char *json = "[{\"url\": \"http://h/Tk9f8e7d6c\"\n"
                       "  \"event_code\": \"order.shipped\"}]";
    assert_int_equal(
        oq_webhooks_parse(json, strlen(json), "webhooks.json", &hooks, &n, err, sizeof(err)),
        OQ_EINVAL);
    if (strstr(err, "Tk9f8e7d6c") != NULL)
        fail_msg("the error quotes the file: %s", err);
    assert_string_equal(err,
                        "webhooks.json: expected a JSON array of webhooks: parse error: after "
                        "key and value, inside map, I expect ',' or '}' near byte 35 (line 2)");
}

static void shop_api_error_names_the_place_not_the_customer(void **state)
{
    (void)state;
    char why[512];
    char *event_data = NULL;
    const char *answer = "{\"customer_email\": \"ann.secret@example.com\" \"items\": []}";
    assert_int_equal(
        oq_shopapi_order_to_event_data(answer, strlen(answer), "42", &event_data, why, sizeof(why)),
        OQ_EINVAL);
    assert_null(event_data);
    if (strstr(why, "ann.secret") != NULL || strstr(why, "items") != NULL)
        fail_msg("the reason quotes the answer: %s", why);
    assert_string_equal(why, "shop API: the answer for order 42 is not a JSON object: parse "
                             "error: after key and value, inside map, I expect ',' or '}' near "
                             "byte 46 (line 1)");
}

/* Found by tests/fuzz/fuzz_shopapi: the name was built in a 512-byte
 * buffer and cut inside a character, so the event failed the UTF-8 check. */
static void shop_api_long_name_is_kept_whole(void **state)
{
    (void)state;
    char first[601] = "", answer[2048], why[512], perr[256];
    char *event_data = NULL;
    for (int i = 0; i < 300; i++)
        memcpy(first + 2 * i, "\xc3\xa9", 2); /* 300 x U+00E9 */
    snprintf(answer, sizeof(answer),
             "{\"order_currency_code\": \"EUR\", \"customer_firstname\": \"%s\", "
             "\"customer_lastname\": \"x%s\", \"items\": []}",
             first, first);
    assert_int_equal(
        oq_shopapi_order_to_event_data(answer, strlen(answer), "42", &event_data, why, sizeof(why)),
        0);
    yajl_val v = oq_json_parse(event_data, perr, sizeof(perr));
    assert_non_null(v);
    const char *name = oq_json_text(oq_json_member(v, "customer"), "name");
    assert_non_null(name);
    assert_int_equal(strlen(name), 600 + 2 + 600);
    assert_memory_equal(name, first, 600);
    assert_memory_equal(name + 600, " x", 2);
    assert_memory_equal(name + 602, first, 600);
    yajl_tree_free(v);
    free(event_data);
}

/* Found by tests/fuzz/fuzz_shopapi: yajl passes the overlong C1 A9; the
 * converter must refuse it as the envelope decoder does. */
static void shop_api_text_not_utf8_is_refused(void **state)
{
    (void)state;
    char why[512];
    char *event_data = NULL;
    const char *answer = "{\"order_currency_code\": \"EUR\", \"customer_email\": "
                         "\"ann\xc1\xa9@example.com\", \"items\": []}";
    assert_int_equal(
        oq_shopapi_order_to_event_data(answer, strlen(answer), "42", &event_data, why, sizeof(why)),
        OQ_EINVAL);
    assert_null(event_data);
    assert_string_equal(why, "shop API: the answer for order 42 holds text that is not UTF-8");
}

static void shop_api_answer_deep(void **state)
{
    (void)state;
    char why[512];
    char *event_data = NULL;
    char *answer = nest("{\"x\":", DEEP, "}");
    assert_int_equal(
        oq_shopapi_order_to_event_data(answer, strlen(answer), "42", &event_data, why, sizeof(why)),
        OQ_EINVAL);
    assert_null(event_data);
    assert_string_equal(why, "shop API: the answer for order 42 is not a JSON object: the JSON "
                             "nests deeper than 64 levels");
    free(answer);
}

static void webhooks_file_deep(void **state)
{
    (void)state;
    char err[512];
    struct oq_webhook *hooks = NULL;
    size_t n = 0;
    char *json = nest("[{\"event_code\": \"order.shipped\", \"url\": \"http://127.0.0.1/\", "
                      "\"x\": ",
                      DEEP, "}]");
    assert_int_equal(
        oq_webhooks_parse(json, strlen(json), "webhooks.json", &hooks, &n, err, sizeof(err)),
        OQ_EINVAL);
    assert_non_null(strstr(err, "webhooks.json: expected a JSON array of webhooks: the JSON nests "
                                "deeper than 64 levels"));
    free(json);
}

static void rules_deep(void **state)
{
    (void)state;
    char err[512];
    struct oq_rule *rules = NULL;
    size_t n = 0;
    char *json = nest("[{\"rule_id\": 1, \"skus\": ", DEEP, "}]");
    assert_int_equal(oq_rules_parse(json, strlen(json), &rules, &n, err, sizeof(err)), OQ_EINVAL);
    assert_string_equal(err, "the JSON nests deeper than 64 levels");
    free(json);
}

/* The config file streams through callbacks and accepts one level only:
 * no tree, and a deep value is refused at its second '['. */
static void config_file_deep(void **state)
{
    (void)state;
    char err[512], path[] = "/tmp/orderq-test-deep-XXXXXX";
    char *json = nest("{\"retry_tiers\": ", DEEP, "}");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(json);
    assert_int_equal(write(fd, json, len), (ssize_t)len);
    close(fd);
    struct oq_config *cfg = oq_config_new();
    assert_non_null(cfg);
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "expected a string or number, got an array"));
    oq_config_free(cfg);
    unlink(path);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limit_is_exact),
        cmocka_unit_test(brackets_in_strings_and_comments_do_not_count),
        cmocka_unit_test(bad_json_keeps_yajls_reason),
        cmocka_unit_test(webhooks_file_error_names_the_place_not_the_token),
        cmocka_unit_test(shop_api_error_names_the_place_not_the_customer),
        cmocka_unit_test(shop_api_answer_deep),
        cmocka_unit_test(shop_api_long_name_is_kept_whole),
        cmocka_unit_test(shop_api_text_not_utf8_is_refused),
        cmocka_unit_test(webhooks_file_deep),
        cmocka_unit_test(rules_deep),
        cmocka_unit_test(config_file_deep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
