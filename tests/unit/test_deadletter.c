/* test_deadletter.c - a dead-letter queue message described as a dead_letter row */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/deadletter.h"

static amqp_table_entry_t text(const char *key, const char *value)
{
    amqp_table_entry_t e = {amqp_cstring_bytes(key), {AMQP_FIELD_KIND_UTF8, {0}}};
    e.value.value.bytes = amqp_cstring_bytes(value);
    return e;
}

static amqp_table_entry_t number(const char *key, int64_t value)
{
    amqp_table_entry_t e = {amqp_cstring_bytes(key), {AMQP_FIELD_KIND_I64, {0}}};
    e.value.value.i64 = value;
    return e;
}

static amqp_table_entry_t field(amqp_bytes_t key, uint8_t kind)
{
    amqp_table_entry_t e;
    memset(&e, 0, sizeof(e));
    e.key = key;
    e.value.kind = kind;
    return e;
}

static amqp_message_t message(amqp_table_entry_t *h, int n, const char *body)
{
    amqp_message_t m;
    memset(&m, 0, sizeof(m));
    m.properties._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                          AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    m.properties.headers = (amqp_table_t){n, h};
    m.properties.message_id = amqp_cstring_bytes("9200000217_processing");
    m.properties.type = amqp_cstring_bytes("order.processing");
    m.properties.delivery_mode = 2;
    m.body = amqp_cstring_bytes(body);
    return m;
}

static void orderq_headers_describe_the_failure(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {
        number("x-orderq-attempt", 8),
        text("x-orderq-first-failed-at", "2026-11-22T10:00:00.125Z"),
        text("x-orderq-last-failed-at", "2026-11-22T11:02:03.500Z"),
        text("x-orderq-error-class", "transient"),
        text("x-orderq-last-error", "gave up after 8 attempts: SMTP 421 for order 9200000217"),
        text("x-orderq-queue", "orderq.order.processing"),
        text("x-orderq-original-exchange", "shop.events"),
        text("x-orderq-original-routing-key", "order.processing"),
        text("x-orderq-host", "web-1"),
        text("x-orderq-pid", "4242"),
        text("x-shop", "kept as it came"),
    };
    amqp_message_t m =
        message(h, sizeof(h) / sizeof(h[0]), "{\"event_code\": \"order.processing\"}");
    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &dl), 0);
    assert_string_equal(dl.error_class, "transient");
    assert_string_equal(dl.error, "gave up after 8 attempts: SMTP 421 for order 9200000217");
    assert_string_equal(dl.fingerprint, "transient: gave up after # attempts: SMTP # for order #");
    assert_int_equal(dl.attempts, 8);
    assert_string_equal(dl.queue, "orderq.order.processing");
    assert_string_equal(dl.exchange, "shop.events");
    assert_string_equal(dl.routing_key, "order.processing");
    assert_string_equal(dl.first_failed_at, "2026-11-22 10:00:00.125");
    assert_string_equal(dl.last_failed_at, "2026-11-22 11:02:03.500");
    assert_string_equal(dl.host, "web-1");
    assert_int_equal(dl.pid, 4242);
    assert_string_equal(dl.event_code, "order.processing");
    assert_string_equal(dl.event_identifier, "9200000217_processing");
    assert_non_null(strstr(dl.headers_json, "\"x-shop\":\"kept as it came\""));
    assert_non_null(strstr(dl.headers_json, "\"x-orderq-attempt\":8"));
    assert_non_null(strstr(dl.properties_json, "\"delivery_mode\":2"));
    assert_int_equal(strlen(dl.letter_key), 64);

    /* The same message again is the same letter; another body is not. */
    struct oq_dead_letter again, other;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &again), 0);
    assert_string_equal(again.letter_key, dl.letter_key);
    m.body = amqp_cstring_bytes("{}");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &other), 0);
    assert_string_not_equal(other.letter_key, dl.letter_key);
    oq_dead_letter_clear(&dl);
    oq_dead_letter_clear(&again);
    oq_dead_letter_clear(&other);
}

/* A quorum queue's delivery limit: RabbitMQ dead-lettered it itself. */
static void the_brokers_own_dead_letters_are_explained(void **state)
{
    (void)state;
    amqp_field_value_t key = {AMQP_FIELD_KIND_UTF8, {0}};
    key.value.bytes = amqp_cstring_bytes("order.processing");
    amqp_table_entry_t death_entries[] = {
        {amqp_cstring_bytes("routing-keys"), {AMQP_FIELD_KIND_ARRAY, {0}}}};
    death_entries[0].value.value.array = (amqp_array_t){1, &key};
    amqp_field_value_t death = {AMQP_FIELD_KIND_TABLE, {0}};
    death.value.table = (amqp_table_t){1, death_entries};
    amqp_table_entry_t h[] = {
        text("x-first-death-reason", "delivery_limit"),
        text("x-first-death-queue", "orderq.order.processing"),
        text("x-first-death-exchange", "shop.events"),
        number("x-delivery-count", 20),
        {amqp_cstring_bytes("x-death"), {AMQP_FIELD_KIND_ARRAY, {0}}},
    };
    h[4].value.value.array = (amqp_array_t){1, &death};
    amqp_message_t m = message(h, 5, "{}");
    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &dl), 0);
    assert_string_equal(dl.error_class, "delivery_limit");
    assert_non_null(strstr(dl.error, "delivered 21 times without an outcome"));
    assert_string_equal(dl.queue, "orderq.order.processing");
    assert_string_equal(dl.exchange, "shop.events");
    assert_string_equal(dl.routing_key, "order.processing");
    assert_int_equal(dl.attempts, 21);
    assert_string_equal(dl.first_failed_at, "");
    oq_dead_letter_clear(&dl);
}

/* Bytes that are not UTF-8 never break the row: text columns get '?',
 * the headers' JSON gets them as hex. */
static void binary_values_are_stored_safely(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {text("x-orderq-error-class", "bad_input"),
                              text("x-orderq-last-error", "bad \xff\xfe bytes"),
                              text("x-blob", "\x01\xff")};
    amqp_message_t m = message(h, 3, "\xff\x00\x01");
    m.body.len = 3;
    m.properties.message_id = amqp_cstring_bytes("id-\xc3\x28");
    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &dl), 0);
    assert_string_equal(dl.error, "bad ?? bytes");
    assert_string_equal(dl.event_identifier, "id-?(");
    assert_non_null(strstr(dl.headers_json, "\"x-blob\":{\"hex\":\"01ff\"}"));
    assert_int_equal(dl.body_size, 3);
    oq_dead_letter_clear(&dl);
}

static const amqp_table_entry_t *entry(const amqp_table_t *t, const char *key)
{
    for (int i = 0; i < t->num_entries; i++)
        if (t->entries[i].key.len == strlen(key) &&
            memcmp(t->entries[i].key.bytes, key, strlen(key)) == 0)
            return &t->entries[i];
    return NULL;
}

/* Stored as JSON, read back for a replay: the shop's headers and the
 * properties come back, orderq's own do not. */
static void a_stored_letter_publishes_as_it_came(void **state)
{
    (void)state;
    amqp_table_entry_t inner[] = {number("n", 7)};
    amqp_table_entry_t h[] = {
        text("x-shop", "caf\xc3\xa9"),
        number("x-orderq-attempt", 3),
        text("orderq-delay", "5s"),
        text("x-first-death-queue", "q"),
        text("x-raw", "\x01\xff"),
        {amqp_cstring_bytes("x-nested"), {AMQP_FIELD_KIND_TABLE, {0}}},
    };
    h[4].value.kind = AMQP_FIELD_KIND_BYTES;
    h[5].value.value.table = (amqp_table_t){1, inner};
    amqp_message_t m = message(h, 6, "{}");
    m.properties._flags |= AMQP_BASIC_USER_ID_FLAG | AMQP_BASIC_PRIORITY_FLAG;
    m.properties.user_id = amqp_cstring_bytes("someone-else");
    m.properties.priority = 4;
    char *props_json = oq_amqp_properties_json(&m.properties);
    char *headers_json = oq_amqp_table_json(&m.properties.headers);
    yajl_val props = yajl_tree_parse(props_json, NULL, 0);
    yajl_val headers = yajl_tree_parse(headers_json, NULL, 0);
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_basic_properties_t p;
    assert_int_equal(oq_dead_letter_properties(props, headers, "guest", 1, &pool, &p), 0);

    assert_int_equal(p.headers.num_entries, 3); /* x-shop, x-raw, x-nested */
    const amqp_table_entry_t *e = entry(&p.headers, "x-shop");
    assert_non_null(e);
    assert_int_equal(e->value.value.bytes.len, 5);
    assert_memory_equal(e->value.value.bytes.bytes, "caf\xc3\xa9", 5);
    e = entry(&p.headers, "x-raw");
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_BYTES);
    assert_memory_equal(e->value.value.bytes.bytes, "\x01\xff", 2);
    e = entry(&p.headers, "x-nested");
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_TABLE);
    assert_int_equal(e->value.value.table.entries[0].value.value.i64, 7);
    assert_null(entry(&p.headers, "x-orderq-attempt"));
    assert_null(entry(&p.headers, "orderq-delay"));

    assert_true(p._flags & AMQP_BASIC_MESSAGE_ID_FLAG);
    assert_memory_equal(p.message_id.bytes, "9200000217_processing", 21);
    assert_int_equal(p.delivery_mode, 2);
    assert_int_equal(p.priority, 4);
    assert_false(p._flags & AMQP_BASIC_USER_ID_FLAG); /* not ours: RabbitMQ would refuse */

    empty_amqp_pool(&pool);
    yajl_tree_free(props);
    yajl_tree_free(headers);
    free(props_json);
    free(headers_json);
}

/* The key is over what the letter is, not over its JSON: letters the JSON
 * cannot tell apart are still two letters. */
static void letters_the_json_cannot_tell_apart_keep_their_own_keys(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {number("n", 1), text("s", "ab")};
    amqp_message_t m = message(h, 2, "{}");
    struct oq_dead_letter base, i8, bytes;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &base), 0);
    h[0].value.kind = AMQP_FIELD_KIND_I8; /* 1 either way in JSON */
    h[0].value.value.i8 = 1;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &i8), 0);
    assert_string_equal(i8.headers_json, base.headers_json);
    assert_string_not_equal(i8.letter_key, base.letter_key);
    h[0] = number("n", 1);
    h[1].value.kind = AMQP_FIELD_KIND_BYTES; /* "ab" either way in JSON */
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &bytes), 0);
    assert_string_equal(bytes.headers_json, base.headers_json);
    assert_string_not_equal(bytes.letter_key, base.letter_key);
    assert_string_not_equal(bytes.letter_key, i8.letter_key);

    /* Tables nested deeper than the JSON goes, differing only down there. */
    amqp_table_entry_t levels[20];
    for (int i = 0; i < 20; i++) {
        levels[i] = field(amqp_cstring_bytes("t"), AMQP_FIELD_KIND_TABLE);
        levels[i].value.value.table = (amqp_table_t){i < 19 ? 1 : 0, &levels[i + 1]};
    }
    levels[19] = number("deep", 1);
    struct oq_dead_letter deep1, deep2;
    m = message(levels, 1, "{}");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &deep1), 0);
    levels[19] = number("deep", 2);
    assert_int_equal(oq_dead_letter_from_message(&m, 20, &deep2), 0);
    assert_string_equal(deep1.headers_json, deep2.headers_json);
    assert_string_not_equal(deep1.letter_key, deep2.letter_key);
    oq_dead_letter_clear(&base);
    oq_dead_letter_clear(&i8);
    oq_dead_letter_clear(&bytes);
    oq_dead_letter_clear(&deep1);
    oq_dead_letter_clear(&deep2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(orderq_headers_describe_the_failure),
        cmocka_unit_test(the_brokers_own_dead_letters_are_explained),
        cmocka_unit_test(binary_values_are_stored_safely),
        cmocka_unit_test(a_stored_letter_publishes_as_it_came),
        cmocka_unit_test(letters_the_json_cannot_tell_apart_keep_their_own_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
