/* test_intake.c - the intake setting: templates, and code / identifier / data selection */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/intake.h"
#include "orderq/json.h"

static char err[512];

/* A Magento order as its message queue framework publishes it. */
static const char magento_order[] =
    "{\"entity_id\": 217, \"increment_id\": \"000000217\", \"status\": \"processing\","
    " \"created_at\": \"2026-11-20 09:00:00\", \"updated_at\": \"2026-12-01 10:00:00\","
    " \"order_currency_code\": \"USD\","
    " \"customer_email\": \"ann@example.com\", \"customer_firstname\": \"Ann\","
    " \"customer_lastname\": \"Lee\", \"items\": ["
    "  {\"item_id\": 1, \"sku\": \"MUG-1\", \"qty_ordered\": 2, \"price\": \"25.00\","
    "   \"original_price\": \"25.00\", \"parent_item_id\": null},"
    "  {\"item_id\": 2, \"sku\": \"MUG-1-child\", \"qty_ordered\": 2, \"price\": 0,"
    "   \"parent_item_id\": 1}]}";

static struct oq_intake *parse_ok(const char *text)
{
    struct oq_intake *in = NULL;
    int rc = oq_intake_parse(text, &in, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", text, err);
    return in;
}

static void expand_ok(const char *tmpl, const char *body, const char *want)
{
    char *out = NULL;
    yajl_val root = oq_json_parse(body, NULL, 0);
    assert_non_null(root);
    int rc = oq_intake_expand(tmpl, root, &out, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s: %s", tmpl, err);
    assert_string_equal(out, want);
    free(out);
    yajl_tree_free(root);
}

static void expand_bad(const char *tmpl, const char *body, const char *reason)
{
    char *out = NULL;
    yajl_val root = oq_json_parse(body, NULL, 0);
    assert_non_null(root);
    assert_int_equal(oq_intake_expand(tmpl, root, &out, err, sizeof(err)), OQ_EINVAL);
    assert_null(out);
    if (strstr(err, reason) == NULL)
        fail_msg("%s: expected \"%s\" in: %s", tmpl, reason, err);
    yajl_tree_free(root);
}

static void templates(void **state)
{
    (void)state;
    expand_ok("{entity_id}_{status}", "{\"entity_id\": 217, \"status\": \"processing\"}",
              "217_processing");
    expand_ok("order-{order.id}/{order.state}",
              "{\"order\": {\"id\": \"A1\", \"state\": \"paid\"}}", "order-A1/paid");
    /* an integer and its string are one identifier; other ways to write a
     * number would be several names for one value */
    expand_ok("{n}", "{\"n\": -217}", "-217");
    expand_ok("{n}", "{\"n\": \"217\"}", "217");
    expand_bad("{n}", "{\"n\": 1.50}", "a fraction or an exponent");
    expand_bad("{n}", "{\"n\": 2.17e2}", "a fraction or an exponent");
    expand_bad("{n}", "{\"n\": -0}", "a fraction or an exponent"); /* 0 by another name */
    expand_ok("{a}{a}", "{\"a\": \"x\"}", "xx");
    expand_bad("{entity_id}_{status}", "{\"entity_id\": 217}", "{status}");
    expand_bad("{entity_id}_{status}", "{\"entity_id\": 217}", "is missing");
    expand_bad("{x}", "{\"x\": {\"y\": 1}}", "is an object");
    expand_bad("{x}", "{\"x\": [1]}", "is an array");
    expand_bad("{x}", "{\"x\": null}", "is null");
    expand_bad("{x}", "{\"x\": true}", "is a boolean");
    expand_bad("{x}", "{\"x\": \"\"}", "is an empty string");
    expand_bad("{x.y}", "{\"x\": \"flat\"}", "is missing");
}

static void bad_settings(void **state)
{
    (void)state;
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"[]", "expected a JSON object keyed by event code"},
        {"{\"order.paid\": {}}", "\"order.paid\" is not an event code orderq handles"},
        {"{\"order.processing\": 1}", "order.processing: expected an object"},
        {"{\"order.processing\": {\"cod\": \"type\"}}", "unknown key \"cod\""},
        {"{\"order.processing\": {\"code\": \"header\"}}", "order.processing.code: expected"},
        {"{\"order.processing\": {\"data\": \"xml\"}}", "order.processing.data: expected"},
        {"{\"order.processing\": {\"format\": \"shopify\"}}", "order.processing.format"},
        {"{\"order.processing\": {\"identifier\": \"fixed\"}}", "naming at least one {field}"},
        {"{\"order.processing\": {\"identifier\": \"{a\"}}", "not {name}"},
        {"{\"order.processing\": {\"identifier\": \"{}\"}}", "not {name}"},
        {"{\"order.processing\": {\"identifier\": \"a}\"}}", "without its '{'"},
        {"{\"order.processing\": {\"identifier\": \"{a..b}\"}}", "not {name}"},
        {"{\"order.processing\": {\"identifier\": 5}}", "order.processing.identifier"},
        {"{\"order.processing\": {\"codes\": \"x\"}}", "order.processing.codes: expected an array"},
        {"{\"order.processing\": {\"codes\": [\"sales.#\"]}}", "topic wildcards"},
        {"{\"order.processing\": {\"codes\": [\"\"]}}", "1 to 191 bytes"},
        {"{\"coupon.email\": {\"format\": \"magento\"}}", "only under order.processing"},
        {"{\"order.processing\": {}, \"order.processing\": {}}", "given twice"},
        {"{\"order.processing\": {\"codes\": [\"send_coupon_code_by_email\"]}}",
         "order.processing.codes: \"send_coupon_code_by_email\" is also coupon.email's"},
        {"{\"probe\": {\"codes\": [\"x\"]}, \"order.processing\": {\"codes\": [\"y\", \"x\"]}}",
         "order.processing.codes: \"x\" is also probe's"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oq_intake *in = NULL;
        if (oq_intake_parse(cases[i].text, &in, err, sizeof(err)) != OQ_EINVAL)
            fail_msg("%s: accepted", cases[i].text);
        assert_null(in);
        if (strstr(err, cases[i].reason) == NULL)
            fail_msg("%s: expected \"%s\" in: %s", cases[i].text, cases[i].reason, err);
    }
}

static void own_codes_and_aliases_are_fine(void **state)
{
    (void)state;
    oq_intake_free(parse_ok("{\"order.processing\": {\"codes\": [\"add_order_to_queue\", "
                            "\"order.processing\", \"a\"]}, \"probe\": {\"codes\": [\"b\"]}}"));
}

static void empty_setting_is_the_envelope(void **state)
{
    (void)state;
    struct oq_intake *in = parse_ok("");
    assert_null(oq_intake_find(in, "order.processing"));
    struct oq_event ev;
    const char *body = "{\"event_code\": \"order.processing\", \"event_data\": {}}";
    struct oq_intake_message m = {"ignored", "ignored", "msg-1"};
    assert_int_equal(oq_intake_decode(oq_intake_find(in, "order.processing"), body, strlen(body),
                                      &m, &ev, err, sizeof(err)),
                     0);
    assert_string_equal(ev.identifier, "msg-1");
    assert_string_equal(ev.code, "order.processing");
    oq_event_clear(&ev);
    oq_intake_free(in);
}

static void magento_preset(void **state)
{
    (void)state;
    struct oq_intake *in = parse_ok(
        "{\"order.processing\": {\"format\": \"magento\", \"codes\": [\"sales.order.paid\"]}}");
    const struct oq_intake_rule *r = oq_intake_find(in, "order.processing");
    assert_non_null(r);
    assert_int_equal(r->code, OQ_INTAKE_CODE_ROUTING_KEY);
    assert_int_equal(r->identifier, OQ_INTAKE_ID_TEMPLATE);
    assert_int_equal(r->data, OQ_INTAKE_DATA_MAGENTO);
    assert_int_equal(r->n_codes, 1);
    struct oq_event ev;
    struct oq_intake_message m = {"sales.order.paid", NULL, "random-uuid-1"};
    assert_int_equal(
        oq_intake_decode(r, magento_order, strlen(magento_order), &m, &ev, err, sizeof(err)), 0);
    assert_string_equal(ev.code, "sales.order.paid");
    assert_string_equal(ev.canonical_code, "order.processing");
    assert_string_equal(ev.identifier, "217_processing"); /* as the envelope names it */
    /* the event's time: the save that made it processing, not the order's birth */
    assert_string_equal(ev.created_at, "2026-12-01 10:00:00");
    /* the shop-API converter's shape: entity_id as order_id, child lines left out */
    assert_string_equal(oq_json_text(ev.data, "order_id"), "217");
    assert_string_equal(oq_json_text(ev.data, "order_status"), "processing");
    assert_string_equal(oq_json_text(ev.data, "currency"), "USD");
    yajl_val customer = oq_json_member(ev.data, "customer");
    assert_string_equal(oq_json_text(customer, "email"), "ann@example.com");
    assert_string_equal(oq_json_text(customer, "name"), "Ann Lee");
    yajl_val items = oq_json_member(ev.data, "items");
    assert_true(YAJL_IS_ARRAY(items));
    assert_int_equal(items->u.array.len, 1);
    assert_string_equal(oq_json_text(items->u.array.values[0], "qty"), "2");
    oq_event_clear(&ev);

    /* a code the rule does not list */
    m.routing_key = "sales.order.cancelled";
    assert_int_equal(
        oq_intake_decode(r, magento_order, strlen(magento_order), &m, &ev, err, sizeof(err)),
        OQ_EINVAL);
    assert_non_null(strstr(err, "\"sales.order.cancelled\" (the routing key) is not"));
    m.routing_key = "";
    assert_int_equal(
        oq_intake_decode(r, magento_order, strlen(magento_order), &m, &ev, err, sizeof(err)),
        OQ_EINVAL);
    assert_non_null(strstr(err, "the routing key is missing or empty"));
    /* no routing key of the shop's (put straight into the work queue, as
     * dlq replay --to-queue does): the queue's own event */
    m.routing_key = NULL;
    assert_int_equal(
        oq_intake_decode(r, magento_order, strlen(magento_order), &m, &ev, err, sizeof(err)), 0);
    assert_string_equal(ev.code, "order.processing");
    oq_event_clear(&ev);
    oq_intake_free(in);
}

static void expect_dead(const struct oq_intake_rule *r, const char *body, size_t len,
                        const struct oq_intake_message *m, const char *reason)
{
    struct oq_event ev;
    int rc = oq_intake_decode(r, body, len ? len : strlen(body), m, &ev, err, sizeof(err));
    if (rc != OQ_EINVAL)
        fail_msg("%.80s: rc %d, expected OQ_EINVAL", body, rc);
    if (strstr(err, reason) == NULL)
        fail_msg("%.80s: expected \"%s\" in: %s", body, reason, err);
    assert_null(ev.root); /* left empty */
}

static void hostile_magento_bodies(void **state)
{
    (void)state;
    struct oq_intake *in = parse_ok("{\"order.processing\": {\"format\": \"magento\"}}");
    const struct oq_intake_rule *r = oq_intake_find(in, "order.processing");
    struct oq_intake_message m = {"order.processing", NULL, "m-1"};
    char body[600];
    expect_dead(r, "[{\"entity_id\": 1}]", 0, &m, "not an object");
    expect_dead(r, "\"order\"", 0, &m, "not an object");
    expect_dead(r, "{\"entity_id\": {\"id\": 1}, \"status\": \"processing\"}", 0, &m,
                "{entity_id}, named by the intake identifier template \"{entity_id}_{status}\", "
                "is an object");
    expect_dead(r, "{\"entity_id\": 1}", 0, &m, "{status}");
    snprintf(body, sizeof(body), "{\"entity_id\": \"%.*s\", \"status\": \"processing\"}", 190,
             "99999999999999999999999999999999999999999999999999999999999999999999999999999999"
             "99999999999999999999999999999999999999999999999999999999999999999999999999999999"
             "9999999999999999999999999999999999999");
    expect_dead(r, body, 0, &m, "bytes; expected 1 to 191 bytes of UTF-8");
    /* an overlong form yajl lets through: the body's check refuses it first */
    static const char overlong[] = "{\"entity_id\": 1, \"status\": \"pro\xc0\xaf"
                                   "cessing\"}";
    expect_dead(r, overlong, sizeof(overlong) - 1, &m, "status is not valid UTF-8");
    expect_dead(r,
                "{\"entity_id\": 1, \"status\": \"processing\", \"items\": [], "
                "\"customer_email\": \"a@b\"}",
                0, &m, "the Magento order 1 has no order_currency_code");
    expect_dead(r,
                "{\"entity_id\": 1, \"status\": \"processing\", \"order_currency_code\": \"USD\"}",
                0, &m, "the Magento order 1 has no items array");
    struct oq_intake *in2 = parse_ok(
        "{\"order.processing\": {\"data\": \"magento\", \"identifier\": \"{increment_id}\"}}");
    expect_dead(oq_intake_find(in2, "order.processing"),
                "{\"event_code\": \"order.processing\", \"increment_id\": \"7\", \"items\": [], "
                "\"order_currency_code\": \"USD\"}",
                0, &m, "entity_id is missing");
    oq_intake_free(in2);
    oq_intake_free(in);
}

static void code_and_identifier_sources(void **state)
{
    (void)state;
    struct oq_intake *in =
        parse_ok("{\"order.processing\": {\"code\": \"type\", \"identifier\": \"message_id\", "
                 "\"data\": \"body\", \"codes\": [\"Webkul\\\\Sales\\\\OrderPaid\"]},"
                 " \"invoice.created\": {\"code\": \"envelope\", \"identifier\": "
                 "\"{event_data.invoice_id}\"}}");
    const struct oq_intake_rule *r = oq_intake_find(in, "order.processing");
    const char *body = "{\"order_id\": \"42\", \"order_status\": \"processing\"}";
    struct oq_event ev;
    struct oq_intake_message m = {"whatever", "Webkul\\Sales\\OrderPaid", "uuid-9"};
    assert_int_equal(oq_intake_decode(r, body, strlen(body), &m, &ev, err, sizeof(err)), 0);
    assert_string_equal(ev.code, "Webkul\\Sales\\OrderPaid");
    assert_string_equal(ev.identifier, "uuid-9");
    assert_ptr_equal(ev.data, ev.root); /* the whole body */
    assert_string_equal(oq_json_text(ev.data, "order_id"), "42");
    oq_event_clear(&ev);
    m.type = "add_order_to_queue"; /* an alias of the event is accepted */
    assert_int_equal(oq_intake_decode(r, body, strlen(body), &m, &ev, err, sizeof(err)), 0);
    oq_event_clear(&ev);
    m.type = NULL;
    expect_dead(r, body, 0, &m, "the type property is missing or empty");
    m.type = "Webkul\\Sales\\OrderPaid";
    m.message_id = NULL;
    expect_dead(r, body, 0, &m, "the message_id property is missing");
    static const char bad_id[] = "\xed\xa0\x80";
    m.message_id = bad_id;
    expect_dead(r, body, 0, &m, "the message_id property is not usable");

    r = oq_intake_find(in, "invoice.created");
    const char *inv =
        "{\"event_code\": \"invoice.created\", \"event_data\": {\"invoice_id\": 501}}";
    assert_int_equal(oq_intake_decode(r, inv, strlen(inv), &m, &ev, err, sizeof(err)), 0);
    assert_string_equal(ev.identifier, "501");
    assert_string_equal(ev.canonical_code, "invoice.created");
    oq_event_clear(&ev);
    expect_dead(r, "{\"event_data\": {\"invoice_id\": 501}}", 0, &m, "event_code is missing");
    expect_dead(r, "{\"event_code\": \"order.processing\", \"event_data\": {\"invoice_id\": 1}}", 0,
                &m, "is not invoice.created");
    oq_intake_free(in);
}

/* The webhook queue takes every hooked event: the routing key finds the
 * rule whose event, alias or shop codes hold it. */
static void rule_by_routing_key(void **state)
{
    (void)state;
    struct oq_intake *in =
        parse_ok("{\"order.processing\": {\"format\": \"magento\", \"codes\": [\"sales.order.paid\"]},"
                 " \"probe\": {\"code\": \"type\", \"codes\": [\"shop.probe\"]}}");
    const struct oq_intake_rule *r = oq_intake_find_by_key(in, "sales.order.paid");
    assert_non_null(r);
    assert_string_equal(r->event_code, "order.processing");
    r = oq_intake_find_by_key(in, "add_order_to_queue"); /* the seed's alias */
    assert_non_null(r);
    assert_string_equal(r->event_code, "order.processing");
    r = oq_intake_find_by_key(in, "shop.probe");
    assert_non_null(r);
    assert_string_equal(r->event_code, "probe");
    assert_null(oq_intake_find_by_key(in, "invoice.created"));
    assert_null(oq_intake_find_by_key(in, NULL)); /* put straight into the queue */
    oq_intake_free(in);
}

/* A shop's own body names no field for the event's time: its created_at
 * may be the order's, days old, so it is not taken as the event's. */
static void body_time_is_not_the_events(void **state)
{
    (void)state;
    struct oq_intake *in = parse_ok(
        "{\"probe\": {\"code\": \"type\", \"identifier\": \"message_id\", \"data\": \"body\"}}");
    const struct oq_intake_rule *r = oq_intake_find(in, "probe");
    struct oq_intake_message m = {"probe", "probe", "m-1"};
    struct oq_event ev;
    const char body[] = "{\"created_at\": \"2026-12-01T10:00:00Z\"}";
    assert_int_equal(oq_intake_decode(r, body, strlen(body), &m, &ev, err, sizeof(err)), 0);
    assert_null(ev.created_at);
    oq_event_clear(&ev);
    oq_intake_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(templates),
        cmocka_unit_test(bad_settings),
        cmocka_unit_test(own_codes_and_aliases_are_fine),
        cmocka_unit_test(empty_setting_is_the_envelope),
        cmocka_unit_test(magento_preset),
        cmocka_unit_test(hostile_magento_bodies),
        cmocka_unit_test(code_and_identifier_sources),
        cmocka_unit_test(rule_by_routing_key),
        cmocka_unit_test(body_time_is_not_the_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
