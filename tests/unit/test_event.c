/* test_event.c - envelope decoding: a table of good and bad bodies */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/event.h"

static char err[512];

struct bad_case {
    const char *body;
    size_t len; /* 0: strlen(body) */
    const char *message_id;
    const char *reason; /* a piece of the error text */
};

static void good_envelope(void **state)
{
    (void)state;
    struct oq_event ev;
    const char *body =
        "{\"event_code\": \"add_order_to_queue\", \"event_identifier\": \"9200000217_processing\","
        " \"created_at\": \"2017-02-23T11:06:40Z\", \"event_data\": {\"order_id\": \"9200000217\","
        " \"items\": [{\"sku\": \"MUG-1\", \"price\": 25.00}]}}";
    assert_int_equal(oq_event_decode(body, strlen(body), "ignored", &ev, err, sizeof(err)), 0);
    assert_string_equal(ev.code, "add_order_to_queue");
    assert_string_equal(ev.canonical_code, "order.processing");
    assert_string_equal(ev.identifier, "9200000217_processing");
    assert_string_equal(ev.created_at, "2017-02-23T11:06:40Z");
    assert_true(YAJL_IS_OBJECT(ev.data));
    const char *path[] = {"items", NULL};
    yajl_val items = yajl_tree_get(ev.data, path, yajl_t_array);
    assert_non_null(items);
    /* numbers keep the text the shop wrote: money is parsed from it exactly */
    const char *price[] = {"price", NULL};
    yajl_val p = yajl_tree_get(items->u.array.values[0], price, yajl_t_number);
    assert_string_equal(YAJL_GET_NUMBER(p), "25.00");
    oq_event_clear(&ev);
    oq_event_clear(&ev); /* twice is safe */
}

static void identifier_from_message_id(void **state)
{
    (void)state;
    struct oq_event ev;
    const char *body = "{\"event_code\": \"invoice.created\", \"event_data\": {}}";
    assert_int_equal(oq_event_decode(body, strlen(body), "inv-501", &ev, err, sizeof(err)), 0);
    assert_string_equal(ev.identifier, "inv-501");
    assert_string_equal(ev.canonical_code, "invoice.created");
    assert_null(ev.created_at);
    oq_event_clear(&ev);
}

static void bad_bodies(void **state)
{
    (void)state;
    static char long_id[300], deep[400], nul_body[] = "{\"event_code\": \"a\\u0000b\"}";
    memset(long_id, 0, sizeof(long_id));
    snprintf(long_id, sizeof(long_id),
             "{\"event_code\":\"x\",\"event_identifier\":\"%0192d\","
             "\"event_data\":{}}",
             7);
    size_t n = (size_t)snprintf(deep, sizeof(deep), "{\"event_data\":");
    for (int i = 0; i < 100; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    const char raw_invalid_utf8[] = "{\"event_code\":\"x\",\"event_identifier\":\"a\xff\","
                                    "\"event_data\":{}}";
    const struct bad_case cases[] = {
        {"not json at all", 0, NULL, "not valid JSON"},
        {"{\"event_code\": \"x\", \"event_data\": {", 0, NULL,
         "ends after 35 bytes, inside a value"},
        {"[1, 2, 3]", 0, NULL, "not an object"},
        {"\"just a string\"", 0, NULL, "not an object"},
        {"", 0, NULL, "the body is empty"},
        {" \r\n\t", 0, NULL, "the body is empty"},
        {"{\"a\": tru}", 0, NULL,
         "not valid JSON (lexical error: invalid string in json text at byte"},
        {"{\"event_identifier\": \"a\", \"event_data\": {}}", 0, NULL, "event_code is missing"},
        {"{\"event_code\": 5, \"event_identifier\": \"a\", \"event_data\": {}}", 0, NULL,
         "event_code must be a string"},
        {"{\"event_code\": \"x\", \"event_data\": {}}", 0, NULL, "no message_id"},
        {"{\"event_code\": \"x\", \"event_identifier\": \"\", \"event_data\": {}}", 0, NULL,
         "event_identifier is empty"},
        {"{\"event_code\": \"x\", \"event_identifier\": 12, \"event_data\": {}}", 0, NULL,
         "event_identifier must be a string"},
        {long_id, 0, NULL, "event_identifier is 192 bytes; at most 191"},
        {raw_invalid_utf8, 0, NULL, "not valid JSON"},
        {nul_body, 0, NULL, "NUL"},
        {"{\"event_code\": \"x\", \"event_identifier\": \"a\"}", 0, NULL, "event_data is missing"},
        {"{\"event_code\": \"x\", \"event_identifier\": \"a\", \"event_data\": [1]}", 0, NULL,
         "event_data must be an object"},
        {"{\"event_code\": \"x\", \"event_identifier\": \"a\", \"event_data\": {}} trailing", 0,
         NULL, "not valid JSON"},
        {deep, 0, NULL, "deeper than 64"},
        {"{\"event_code\": \"x\", \"event_data\": {}}", 0, "bad\xc0\xaf", "message_id"},
        {"{\"event_code\": \"x\", \"event_identifier\": \"a\", \"event_data\": {}}", 20, NULL,
         "truncated?"},
        /* one body, two events: which key counts would depend on the reader */
        {"{\"event_code\": \"x\", \"event_identifier\": \"a\", \"event_identifier\": \"b\", "
         "\"event_data\": {}}",
         0, NULL, "the body has a duplicate key \"event_identifier\""},
        {"{\"event_code\": \"x\", \"event_identifier\": \"a\", \"event_data\": {\"q\": [{\"k\": 1, "
         "\"j\": 2, \"k\": 3}]}}",
         0, NULL, "event_data.q[0] has a duplicate key \"k\""},
        {"\xef\xbb\xbf{\"event_code\": \"x\", \"event_identifier\": \"a\", \"event_data\": {}}", 0,
         NULL, "starts with a UTF-8 byte order mark"},
        {"\xff\xfe{", 0, NULL, "UTF-16 byte order mark"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oq_event ev;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].body);
        err[0] = '\0';
        int rc = oq_event_decode(cases[i].body, len, cases[i].message_id, &ev, err, sizeof(err));
        if (rc != OQ_EINVAL || strstr(err, cases[i].reason) == NULL)
            fail_msg("case %zu (%.40s): rc %d, err \"%s\", wanted \"%s\"", i, cases[i].body, rc,
                     err, cases[i].reason);
        assert_null(strchr(err, '\n')); /* one line, for a header */
        assert_null(ev.root);
        oq_event_clear(&ev);
    }
}

static void very_deep_nesting_is_refused_without_recursion(void **state)
{
    (void)state;
    size_t depth = 10000;
    char *body = malloc(depth * 2 + 64);
    struct oq_event ev;
    size_t n = (size_t)snprintf(body, 64, "{\"event_code\":\"x\",\"event_data\":");
    for (size_t i = 0; i < depth; i++)
        body[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        body[n++] = ']';
    body[n++] = '}';
    assert_int_equal(oq_event_decode(body, n, "id", &ev, err, sizeof(err)), OQ_EINVAL);
    assert_non_null(strstr(err, "deeper than"));
    free(body);
}

static void utf8(void **state)
{
    (void)state;
    assert_true(oq_utf8_valid("plain", 5));
    assert_true(oq_utf8_valid("\xe4\xb8\xad\xe6\x96\x87", 6)); /* 中文 */
    assert_true(oq_utf8_valid("\xf0\x9f\x98\x80", 4));         /* emoji */
    assert_false(oq_utf8_valid("\xc0\xaf", 2));                /* overlong '/' */
    assert_false(oq_utf8_valid("\xed\xa0\x80", 3));            /* surrogate */
    assert_false(oq_utf8_valid("\xe4\xb8", 2));                /* cut short */
    assert_false(oq_utf8_valid("a\0b", 3));                    /* NUL */
    assert_false(oq_utf8_valid("\xf5\x80\x80\x80", 4));        /* > U+10FFFF */
    assert_false(oq_utf8_valid("\xc0\x80", 2));                /* overlong NUL */
    assert_false(oq_utf8_valid("\xe0\x80\x80", 3));            /* overlong, 3 bytes */
    assert_false(oq_utf8_valid("\xf0\x80\x80\x80", 4));        /* overlong, 4 bytes */
    assert_false(oq_utf8_valid("\xf4\x90\x80\x80", 4));        /* U+110000 */
    assert_false(oq_utf8_valid("\xed\xbf\xbf", 3));            /* last surrogate */
    assert_false(oq_utf8_valid("\x80", 1));                    /* a lone continuation */
    assert_true(oq_utf8_valid("\xf4\x8f\xbf\xbf", 4));         /* U+10FFFF */
    assert_true(oq_utf8_valid("\xed\x9f\xbf", 3));             /* U+D7FF */
    assert_true(oq_utf8_valid("\xee\x80\x80", 3));             /* U+E000 */
    assert_int_equal(oq_utf8_prefix("ab\xc3\xa9\xc0\x80", 6), 4);
    assert_int_equal(oq_utf8_prefix("ab\xe4\xb8", 4), 2);
    assert_int_equal(oq_utf8_prefix("ab", 2), 2);
}

/* yajl takes C0 80, ED A0 80 and F5.. as UTF-8; MariaDB would store them
 * as '?'. Every key and string of the body is checked, and the reason says
 * where. */
static void strings_must_be_strict_utf8(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"{\"event_code\":\"x\",\"event_identifier\":\"bad\xc0\x80id\",\"event_data\":{}}", 0, NULL,
         "event_identifier is not valid UTF-8: C0 80 at byte 3"},
        {"{\"event_code\":\"x\xed\xa0\x80\",\"event_identifier\":\"a\",\"event_data\":{}}", 0, NULL,
         "event_code is not valid UTF-8: ED A0 80 at byte 1"},
        {"{\"event_code\":\"x\",\"event_identifier\":\"a\",\"created_at\":\"\xf5\x80\x80\x80\","
         "\"event_data\":{}}",
         0, NULL, "created_at is not valid UTF-8: F5 80 80 80 at byte 0"},
        {"{\"event_code\":\"x\",\"event_identifier\":\"a\",\"event_data\":{\"items\":[{\"sku\":"
         "\"ok\"},{\"sku\":\"M\xc0\x80\"}]}}",
         0, NULL, "event_data.items[1].sku is not valid UTF-8"},
        {"{\"event_code\":\"x\",\"event_identifier\":\"a\",\"event_data\":{\"customer\":{"
         "\"n\xc0\x80\":\"Ann\"}}}",
         0, NULL, "a key in event_data.customer is not valid UTF-8: C0 80 at byte 1"},
        {"{\"k\xc0\x80\":1,\"event_code\":\"x\",\"event_identifier\":\"a\",\"event_data\":{}}", 0,
         NULL, "a key in the body is not valid UTF-8"},
        {"{\"event_code\":\"x\",\"event_identifier\":\"a\",\"event_data\":{\"l\":[[["
         "\"\xed\xa0\x80\"]"
         "]]}}",
         0, NULL, "event_data.l[0][0][0] is not valid UTF-8"},
        /* the message_id property stands in for event_identifier: checked too */
        {"{\"event_code\":\"x\",\"event_data\":{}}", 0, "m\xed\xa0\x80", "message_id"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oq_event ev;
        err[0] = '\0';
        int rc = oq_event_decode(cases[i].body, strlen(cases[i].body), cases[i].message_id, &ev,
                                 err, sizeof(err));
        if (rc != OQ_EINVAL || strstr(err, cases[i].reason) == NULL)
            fail_msg("case %zu: rc %d, err \"%s\", wanted \"%s\"", i, rc, err, cases[i].reason);
        assert_true(oq_utf8_valid(err, strlen(err))); /* the reason itself is stored */
        oq_event_clear(&ev);
    }
    /* a place under a long key is named up to its parent, cut on a character */
    char body[600];
    char key[300];
    memset(key, 'k', sizeof(key));
    memcpy(key + 150, "\xc3\xa9", 2);
    key[sizeof(key) - 1] = '\0';
    snprintf(body, sizeof(body),
             "{\"event_code\":\"x\",\"event_identifier\":\"a\",\"event_data\":{\"%s\":{\"v\":"
             "\"\xc0\x80\"}}}",
             key);
    struct oq_event ev;
    assert_int_equal(oq_event_decode(body, strlen(body), NULL, &ev, err, sizeof(err)), OQ_EINVAL);
    assert_non_null(strstr(err, "event_data... is not valid UTF-8"));
    /* text that is strict UTF-8 passes, all of Unicode's planes */
    static const char good[] = "{\"event_code\":\"x\",\"event_identifier\":\"Zo\xc3\xab\","
                               "\"event_data\":{\"\xe4\xb8\xad\":[\"\xf0\x9f\x98\x80\","
                               "\"\xf4\x8f\xbf\xbf\"]}}";
    assert_int_equal(oq_event_decode(good, strlen(good), NULL, &ev, err, sizeof(err)), 0);
    oq_event_clear(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_envelope),
        cmocka_unit_test(identifier_from_message_id),
        cmocka_unit_test(bad_bodies),
        cmocka_unit_test(very_deep_nesting_is_refused_without_recursion),
        cmocka_unit_test(utf8),
        cmocka_unit_test(strings_must_be_strict_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
