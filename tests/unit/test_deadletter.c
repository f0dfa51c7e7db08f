/* test_deadletter.c - a dead-letter queue message described as a dead_letter row */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/broker.h"
#include "orderq/deadletter.h"
#include "orderq/json.h"

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

/* A key or string of any bytes, NUL included. */
static amqp_bytes_t raw(const char *s, size_t len)
{
    amqp_bytes_t b = {len, (void *)s};
    return b;
}

static amqp_table_entry_t field(amqp_bytes_t key, uint8_t kind)
{
    amqp_table_entry_t e;
    memset(&e, 0, sizeof(e));
    e.key = key;
    e.value.kind = kind;
    return e;
}

static amqp_table_entry_t f64(const char *key, double value)
{
    amqp_table_entry_t e = field(amqp_cstring_bytes(key), AMQP_FIELD_KIND_F64);
    e.value.value.f64 = value;
    return e;
}

static amqp_table_entry_t f32(const char *key, float value)
{
    amqp_table_entry_t e = field(amqp_cstring_bytes(key), AMQP_FIELD_KIND_F32);
    e.value.value.f32 = value;
    return e;
}

static amqp_message_t message(amqp_table_entry_t *h, int n, const char *body)
{
    amqp_message_t m;
    memset(&m, 0, sizeof(m));
    m.properties._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                          AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                          AMQP_BASIC_USER_ID_FLAG;
    m.properties.headers = (amqp_table_t){n, h};
    m.properties.user_id = amqp_cstring_bytes("orderq"); /* orderq published it */
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
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
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
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &again), 0);
    assert_string_equal(again.letter_key, dl.letter_key);
    m.body = amqp_cstring_bytes("{}");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &other), 0);
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
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    assert_string_equal(dl.error_class, "delivery_limit");
    assert_non_null(strstr(dl.error, "delivered 21 times without an outcome"));
    assert_string_equal(dl.queue, "orderq.order.processing");
    assert_string_equal(dl.exchange, "shop.events");
    assert_string_equal(dl.routing_key, "order.processing");
    assert_int_equal(dl.attempts, 21);
    assert_string_equal(dl.first_failed_at, "");
    oq_dead_letter_clear(&dl);
}

/* One of orderq's retries that crashed the consumers till the delivery
 * limit: RabbitMQ's newest death says why (the first one is its expiry in
 * the delay tier), orderq's headers say where it was first published (a
 * replay goes there) and what the attempt before said. */
static void a_retry_at_the_delivery_limit_is_explained(void **state)
{
    (void)state;
    amqp_field_value_t keys = {AMQP_FIELD_KIND_UTF8, {0}};
    keys.value.bytes = amqp_cstring_bytes("orderq.probe");
    amqp_table_entry_t newest[] = {
        text("reason", "delivery_limit"),
        text("queue", "orderq.probe"),
        text("exchange", ""),
        {amqp_cstring_bytes("routing-keys"), {AMQP_FIELD_KIND_ARRAY, {0}}}};
    newest[3].value.value.array = (amqp_array_t){1, &keys};
    amqp_table_entry_t first[] = {text("reason", "expired"), text("queue", "orderq.delay.1s"),
                                  text("exchange", "orderq.delay")};
    amqp_field_value_t deaths[2] = {{AMQP_FIELD_KIND_TABLE, {0}}, {AMQP_FIELD_KIND_TABLE, {0}}};
    deaths[0].value.table = (amqp_table_t){4, newest};
    deaths[1].value.table = (amqp_table_t){3, first};
    amqp_table_entry_t h[] = {
        {amqp_cstring_bytes("x-death"), {AMQP_FIELD_KIND_ARRAY, {0}}},
        text("x-first-death-reason", "expired"),
        text("x-first-death-queue", "orderq.delay.1s"),
        text("x-first-death-exchange", "orderq.delay"),
        number("x-delivery-count", 2),
        number("x-orderq-attempt", 2),
        text("x-orderq-first-failed-at", "2026-11-22T10:00:00.125Z"),
        text("x-orderq-error-class", "transient"),
        text("x-orderq-last-error", "SMTP 421"),
        text("x-orderq-queue", "orderq.probe"),
        text("x-orderq-original-exchange", "shop.events"),
        text("x-orderq-original-routing-key", "probe"),
    };
    h[0].value.value.array = (amqp_array_t){2, deaths};
    amqp_message_t m = message(h, sizeof(h) / sizeof(h[0]), "{}");
    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    assert_string_equal(dl.error_class, "delivery_limit");
    assert_string_equal(dl.queue, "orderq.probe");
    assert_string_equal(dl.exchange, "shop.events");
    assert_string_equal(dl.routing_key, "probe");
    assert_string_equal(dl.first_failed_at, "2026-11-22 10:00:00.125");
    assert_int_equal(dl.attempts, 3);
    assert_string_equal(dl.error,
                        "RabbitMQ dead-lettered it from orderq.probe: delivered 3 times without an "
                        "outcome (the consumer crashed, hung or was cut off each time); it was "
                        "orderq's attempt 2 (attempt 1 failed: transient: SMTP 421)");
    oq_dead_letter_clear(&dl);
}

/* x-orderq-* headers on a letter orderq did not publish (no user_id, or
 * another's) are not believed: the row says what RabbitMQ says, and "not
 * from orderq"; the headers stay in the row's headers only. */
static void forged_orderq_headers_are_not_believed(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {
        text("x-orderq-error-class", "permanent"), text("x-orderq-last-error", "forged reason"),
        text("x-orderq-queue", "orderq.forged"),   number("x-orderq-attempt", 7),
        text("x-orderq-host", "forged-host"),
    };
    amqp_message_t m = message(h, 5, "{}");
    m.properties._flags &= ~(amqp_flags_t)AMQP_BASIC_USER_ID_FLAG;
    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    assert_string_equal(dl.error_class, "not_from_orderq");
    assert_non_null(strstr(dl.error, "not from orderq: no user_id, not orderq's user \"orderq\""));
    assert_non_null(strstr(dl.error, "x-orderq-error-class, x-orderq-last-error, x-orderq-queue, "
                                     "x-orderq-attempt, x-orderq-host) were not believed"));
    assert_null(strstr(dl.error, "forged reason"));
    assert_string_equal(dl.queue, "");
    assert_string_equal(dl.host, "");
    assert_int_equal(dl.attempts, 1);
    assert_non_null(strstr(dl.headers_json, "\"x-orderq-last-error\":\"forged reason\""));
    oq_dead_letter_clear(&dl);

    /* Another user's user_id: the same. */
    m.properties._flags |= AMQP_BASIC_USER_ID_FLAG;
    m.properties.user_id = amqp_cstring_bytes("shop");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    assert_string_equal(dl.error_class, "not_from_orderq");
    assert_non_null(strstr(dl.error, "user_id \"shop\""));
    oq_dead_letter_clear(&dl);

    /* A quorum queue's delivery limit on the shop's message, forged headers
     * kept by RabbitMQ: its reason, and the forged ones named. */
    amqp_table_entry_t h2[] = {
        text("x-first-death-reason", "delivery_limit"),
        text("x-first-death-queue", "orderq.order.processing"),
        text("x-orderq-error-class", "permanent"),
    };
    m = message(h2, 3, "{}");
    m.properties.user_id = amqp_cstring_bytes("shop");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    assert_string_equal(dl.error_class, "delivery_limit");
    assert_string_equal(dl.queue, "orderq.order.processing");
    assert_non_null(strstr(dl.error, "RabbitMQ dead-lettered it from orderq.order.processing"));
    assert_non_null(strstr(dl.error, "(x-orderq-error-class) were not believed"));
    oq_dead_letter_clear(&dl);

    /* x-death alone, which anyone may write: still not orderq's, and said. */
    m = message(h2, 2, "{}");
    m.properties.user_id = amqp_cstring_bytes("shop");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    assert_non_null(strstr(dl.error, OQ_DEAD_LETTER_NOT_OURS
                           "user_id \"shop\", not orderq's "
                           "user \"orderq\"; its x-death headers, which any publisher "
                           "can write, say: RabbitMQ dead-lettered it"));
    assert_int_equal(strncmp(dl.error, OQ_DEAD_LETTER_NOT_OURS, strlen(OQ_DEAD_LETTER_NOT_OURS)),
                     0);
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
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
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

/* A letter stored as the archiver stores it (properties and headers as
 * JSON) and read back for a replay. */
struct stored {
    char *props_json, *headers_json;
    yajl_val props, headers;
    amqp_pool_t pool;
    amqp_basic_properties_t p;
};

static void store_and_read(const amqp_message_t *m, struct stored *st)
{
    st->props_json = oq_amqp_properties_json(&m->properties);
    st->headers_json = oq_amqp_table_json(&m->properties.headers);
    st->props = yajl_tree_parse(st->props_json, NULL, 0);
    st->headers = yajl_tree_parse(st->headers_json, NULL, 0);
    init_amqp_pool(&st->pool, 4096);
    assert_int_equal(
        oq_dead_letter_properties(st->props, st->headers, "guest", 1, &st->pool, &st->p), 0);
}

static void stored_free(struct stored *st)
{
    empty_amqp_pool(&st->pool);
    yajl_tree_free(st->props);
    yajl_tree_free(st->headers);
    free(st->props_json);
    free(st->headers_json);
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
    struct stored st;
    store_and_read(&m, &st);
    const amqp_basic_properties_t p = st.p;

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
    /* Always orderq's own: RabbitMQ refuses another's, and the consumer
     * believes the replay's x-orderq-* headers only with orderq's. */
    assert_true(p._flags & AMQP_BASIC_USER_ID_FLAG);
    assert_int_equal(p.user_id.len, 5);
    assert_memory_equal(p.user_id.bytes, "guest", 5);

    stored_free(&st);
}

/* The widest integers come back integers: yajl 2.1 reads -2^63 (found
 * by fuzz_deadletter) and a u64 above 2^63 - 1 as doubles. */
static void the_widest_integers_replay_as_integers(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {number("x-min", INT64_MIN), number("x-max", INT64_MAX),
                              field(amqp_cstring_bytes("x-u64"), AMQP_FIELD_KIND_U64)};
    h[2].value.value.u64 = UINT64_MAX;
    amqp_message_t m = message(h, 3, "{}");
    struct stored st;
    store_and_read(&m, &st);
    const amqp_basic_properties_t p = st.p;

    const amqp_table_entry_t *e = entry(&p.headers, "x-min");
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_I64);
    assert_true(e->value.value.i64 == INT64_MIN);
    e = entry(&p.headers, "x-max");
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_I64);
    assert_true(e->value.value.i64 == INT64_MAX);
    e = entry(&p.headers, "x-u64");
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_U64);
    assert_true(e->value.value.u64 == UINT64_MAX);

    stored_free(&st);
}

/* Equal as a replay sends them again: keys and strings byte for byte,
 * integers of any width by value, a string of either kind by its bytes. */
static int field_eq(const amqp_field_value_t *a, const amqp_field_value_t *b);

static int bytes_eq(amqp_bytes_t a, amqp_bytes_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.bytes, b.bytes, a.len) == 0);
}

static int is_text(const amqp_field_value_t *v)
{
    return v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES;
}

static int table_eq(const amqp_table_t *a, const amqp_table_t *b)
{
    if (a->num_entries != b->num_entries)
        return 0;
    for (int i = 0; i < a->num_entries; i++)
        if (!bytes_eq(a->entries[i].key, b->entries[i].key) ||
            !field_eq(&a->entries[i].value, &b->entries[i].value))
            return 0;
    return 1;
}

static int field_eq(const amqp_field_value_t *a, const amqp_field_value_t *b)
{
    int64_t x, y;
    if (is_text(a) || is_text(b))
        return is_text(a) && is_text(b) && bytes_eq(a->value.bytes, b->value.bytes);
    if (oq_amqp_field_int(a, &x) == 0)
        return oq_amqp_field_int(b, &y) == 0 && x == y;
    if (a->kind != b->kind)
        return 0;
    switch (a->kind) {
    case AMQP_FIELD_KIND_TABLE:
        return table_eq(&a->value.table, &b->value.table);
    case AMQP_FIELD_KIND_ARRAY:
        if (a->value.array.num_entries != b->value.array.num_entries)
            return 0;
        for (int i = 0; i < a->value.array.num_entries; i++)
            if (!field_eq(&a->value.array.entries[i], &b->value.array.entries[i]))
                return 0;
        return 1;
    case AMQP_FIELD_KIND_BOOLEAN:
        return !a->value.boolean == !b->value.boolean;
    case AMQP_FIELD_KIND_F64:
        return memcmp(&a->value.f64, &b->value.f64, sizeof(double)) == 0;
    default:
        return 1;
    }
}

/* The letter's headers JSON, parsed: it must be a JSON object. */
static yajl_val parsed_headers(const struct oq_dead_letter *dl)
{
    char err[256] = "";
    yajl_val t = yajl_tree_parse(dl->headers_json, err, sizeof(err));
    if (!YAJL_IS_OBJECT(t))
        fail_msg("headers are not a JSON object (%s): %s", err, dl->headers_json);
    return t;
}

static const char *member_text(yajl_val obj, const char *key)
{
    yajl_val v = oq_json_member(obj, key);
    return YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;
}

/* A header key that is not UTF-8 (RabbitMQ takes it) is kept, hex-encoded
 * under a marked key, with its value; the headers after it (orderq's own
 * come last) are all still there. */
static void a_key_that_is_not_utf8_keeps_every_header(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {
        f64("a", 1.5),
        text("\xff\xfekey", "one"),
        number("x-orderq-attempt", 1),
        text("x-orderq-error-class", "bad_input"),
        text("x-orderq-last-error", "the body is not valid JSON"),
        text("x-orderq-queue", "orderq.order.processing"),
    };
    amqp_message_t m = message(h, sizeof(h) / sizeof(h[0]), "not JSON");
    struct oq_dead_letter dl, two, other_key;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    yajl_val t = parsed_headers(&dl);
    assert_int_equal(t->u.object.len, 6);
    assert_string_equal(member_text(t, "@hex:fffe6b6579"), "one");
    assert_string_equal(member_text(t, "x-orderq-error-class"), "bad_input");
    assert_string_equal(member_text(t, "x-orderq-queue"), "orderq.order.processing");
    assert_true(YAJL_IS_INTEGER(oq_json_member(t, "x-orderq-attempt")));
    assert_string_equal(dl.error_class, "bad_input");
    assert_string_equal(dl.queue, "orderq.order.processing");
    yajl_tree_free(t);

    /* Letters that differ only in that header's value, or in its key's
     * bytes, are different letters: neither may be dropped as the other. */
    h[1] = text("\xff\xfekey", "two");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &two), 0);
    assert_string_not_equal(two.letter_key, dl.letter_key);
    h[1] = text("\xff\xfdkey", "one");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &other_key), 0);
    assert_string_not_equal(other_key.letter_key, dl.letter_key);
    assert_string_not_equal(other_key.letter_key, two.letter_key);
    oq_dead_letter_clear(&dl);
    oq_dead_letter_clear(&two);
    oq_dead_letter_clear(&other_key);
}

/* JSON has no NaN or Infinity: such a float (RabbitMQ refuses them, another
 * path may not) is stored as a string, and the JSON stays whole. */
static void nan_and_infinity_become_strings(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {
        f32("f32-nan", NAN),        f64("f64-nan", NAN),
        f32("f32-inf", INFINITY),   f64("f64-inf", INFINITY),
        f32("f32-minf", -INFINITY), f64("f64-minf", -INFINITY),
        f64("fine", 0.25),          text("x-orderq-error-class", "bad_input"),
    };
    amqp_message_t m = message(h, sizeof(h) / sizeof(h[0]), "{}");
    struct oq_dead_letter dl, as_text;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    yajl_val t = parsed_headers(&dl);
    assert_int_equal(t->u.object.len, 8);
    assert_string_equal(member_text(t, "f32-nan"), "NaN");
    assert_string_equal(member_text(t, "f64-nan"), "NaN");
    assert_string_equal(member_text(t, "f32-inf"), "Infinity");
    assert_string_equal(member_text(t, "f64-inf"), "Infinity");
    assert_string_equal(member_text(t, "f32-minf"), "-Infinity");
    assert_string_equal(member_text(t, "f64-minf"), "-Infinity");
    assert_true(YAJL_IS_DOUBLE(oq_json_member(t, "fine")));
    assert_string_equal(member_text(t, "x-orderq-error-class"), "bad_input");
    yajl_tree_free(t);

    /* The float and the string "NaN" are different letters. */
    h[1] = text("f64-nan", "NaN");
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &as_text), 0);
    assert_string_not_equal(as_text.letter_key, dl.letter_key);
    oq_dead_letter_clear(&dl);
    oq_dead_letter_clear(&as_text);
}

/* The same holds inside tables and arrays, at any depth rendered. */
static void bad_keys_in_nested_tables_and_arrays(void **state)
{
    (void)state;
    amqp_table_entry_t deep[] = {number("k\xc0", 5)};
    amqp_table_entry_t in_array[] = {text("\xfe", "v")};
    amqp_field_value_t items[2];
    memset(items, 0, sizeof(items));
    items[0].kind = AMQP_FIELD_KIND_TABLE;
    items[0].value.table = (amqp_table_t){1, in_array};
    items[1].kind = AMQP_FIELD_KIND_UTF8;
    items[1].value.bytes = amqp_cstring_bytes("x");
    amqp_table_entry_t outer[] = {field(amqp_cstring_bytes("\x80"), AMQP_FIELD_KIND_TABLE),
                                  field(amqp_cstring_bytes("list"), AMQP_FIELD_KIND_ARRAY)};
    outer[0].value.value.table = (amqp_table_t){1, deep};
    outer[1].value.value.array = (amqp_array_t){2, items};
    amqp_table_entry_t h[] = {field(amqp_cstring_bytes("outer"), AMQP_FIELD_KIND_TABLE),
                              text("x-orderq-error-class", "bad_input")};
    h[0].value.value.table = (amqp_table_t){2, outer};
    amqp_message_t m = message(h, 2, "{}");
    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    yajl_val t = parsed_headers(&dl);
    const char *p5[] = {"outer", "@hex:80", "@hex:6bc0", NULL};
    yajl_val five = yajl_tree_get(t, p5, yajl_t_number);
    assert_non_null(five);
    assert_int_equal(YAJL_GET_INTEGER(five), 5);
    const char *plist[] = {"outer", "list", NULL};
    yajl_val list = yajl_tree_get(t, plist, yajl_t_array);
    assert_non_null(list);
    assert_int_equal(list->u.array.len, 2);
    assert_string_equal(member_text(list->u.array.values[0], "@hex:fe"), "v");
    assert_string_equal(member_text(t, "x-orderq-error-class"), "bad_input");

    /* And back: the original bytes. */
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_basic_properties_t p;
    yajl_val props = yajl_tree_parse("{}", NULL, 0);
    assert_int_equal(oq_dead_letter_properties(props, t, "guest", 0, &pool, &p), 0);
    amqp_table_t want = {1, h}; /* x-orderq-error-class is dropped */
    assert_true(table_eq(&p.headers, &want));
    empty_amqp_pool(&pool);
    yajl_tree_free(props);
    yajl_tree_free(t);
    oq_dead_letter_clear(&dl);
}

/* Stored, then read back for a replay: every key and value the letter had
 * (but orderq's own headers), byte for byte, whatever its bytes were. */
static void stored_headers_replay_the_original_bytes(void **state)
{
    (void)state;
    char long_bad[255], long_plain[255];
    memset(long_bad, 0xff, sizeof(long_bad));
    memset(long_plain, 'k', sizeof(long_plain));
    amqp_table_entry_t looks_like_hex[] = {text("hex", "01ff")};
    amqp_table_entry_t inner_literal[] = {text("@hex:zz", "y")};
    amqp_table_entry_t inner[] = {field(raw("\xff", 1), AMQP_FIELD_KIND_TABLE)};
    inner[0].value.value.table = (amqp_table_t){1, inner_literal};
    amqp_table_entry_t nul_key_table[] = {text("", "z")};
    nul_key_table[0].key = raw("\0", 1);
    amqp_field_value_t items[2];
    memset(items, 0, sizeof(items));
    items[0].kind = AMQP_FIELD_KIND_BYTES;
    items[0].value.bytes = raw("\xff", 1);
    items[1].kind = AMQP_FIELD_KIND_TABLE;
    items[1].value.table = (amqp_table_t){1, nul_key_table};

    amqp_table_entry_t h[] = {
        text("\xff\xfekey", "one"),
        field(raw("a\0b", 3), AMQP_FIELD_KIND_I64),
        text("@hex:41", "a real key that looks like an encoded one"),
        field(raw(long_bad, sizeof(long_bad)), AMQP_FIELD_KIND_UTF8),
        field(raw(long_plain, sizeof(long_plain)), AMQP_FIELD_KIND_UTF8),
        field(amqp_cstring_bytes("x-blob"), AMQP_FIELD_KIND_BYTES),
        text("x-text-bad", "\xc3\x28"),
        field(amqp_cstring_bytes("nested"), AMQP_FIELD_KIND_TABLE),
        field(amqp_cstring_bytes("nested2"), AMQP_FIELD_KIND_TABLE),
        field(amqp_cstring_bytes("arr"), AMQP_FIELD_KIND_ARRAY),
        f64("ratio", 0.1),
        /* orderq's: not sent again, whatever their bytes */
        number("x-orderq-attempt", 3),
        text("x-orderq-\xff", "gone"),
    };
    h[1].value.value.i64 = 1;
    h[3].value.value.bytes = amqp_cstring_bytes("long");
    h[4].value.value.bytes = amqp_cstring_bytes("plain long");
    h[5].value.value.bytes = raw("\0\x01\xff", 3);
    h[7].value.value.table = (amqp_table_t){1, looks_like_hex};
    h[8].value.value.table = (amqp_table_t){1, inner};
    h[9].value.value.array = (amqp_array_t){2, items};
    int n = sizeof(h) / sizeof(h[0]);
    amqp_message_t m = message(h, n, "{}");
    m.properties._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    m.properties.message_id = raw("id-\xc3\x28", 5);
    m.properties.correlation_id = raw("c\0d", 3);

    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    yajl_val headers = parsed_headers(&dl);
    assert_int_equal(headers->u.object.len, (size_t)n);
    assert_string_equal(member_text(headers, "@hex:fffe6b6579"), "one");
    yajl_val props = yajl_tree_parse(dl.properties_json, NULL, 0);
    assert_true(YAJL_IS_OBJECT(props));

    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_basic_properties_t p;
    assert_int_equal(oq_dead_letter_properties(props, headers, "guest", 1, &pool, &p), 0);
    amqp_table_t want = {n - 2, h};
    if (!table_eq(&p.headers, &want))
        fail_msg("not the original headers; stored as %s", dl.headers_json);
    const amqp_table_entry_t *nested = entry(&p.headers, "nested");
    assert_non_null(nested);
    assert_int_equal(nested->value.kind, AMQP_FIELD_KIND_TABLE); /* not bytes 01 ff */
    assert_true(p._flags & AMQP_BASIC_MESSAGE_ID_FLAG);
    assert_true(bytes_eq(p.message_id, m.properties.message_id));
    assert_true(p._flags & AMQP_BASIC_CORRELATION_ID_FLAG);
    assert_true(bytes_eq(p.correlation_id, m.properties.correlation_id));

    empty_amqp_pool(&pool);
    yajl_tree_free(props);
    yajl_tree_free(headers);
    oq_dead_letter_clear(&dl);
}

/* The key is over what the letter is, not over its JSON: letters the JSON
 * cannot tell apart are still two letters. */
static void letters_the_json_cannot_tell_apart_keep_their_own_keys(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {number("n", 1), text("s", "ab")};
    amqp_message_t m = message(h, 2, "{}");
    struct oq_dead_letter base, i8, bytes;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &base), 0);
    h[0].value.kind = AMQP_FIELD_KIND_I8; /* 1 either way in JSON */
    h[0].value.value.i8 = 1;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &i8), 0);
    assert_string_equal(i8.headers_json, base.headers_json);
    assert_string_not_equal(i8.letter_key, base.letter_key);
    h[0] = number("n", 1);
    h[1].value.kind = AMQP_FIELD_KIND_BYTES; /* "ab" either way in JSON */
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &bytes), 0);
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
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &deep1), 0);
    levels[19] = number("deep", 2);
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &deep2), 0);
    assert_string_equal(deep1.headers_json, deep2.headers_json);
    assert_string_not_equal(deep1.letter_key, deep2.letter_key);
    oq_dead_letter_clear(&base);
    oq_dead_letter_clear(&i8);
    oq_dead_letter_clear(&bytes);
    oq_dead_letter_clear(&deep1);
    oq_dead_letter_clear(&deep2);
}

/* A quorum dead queue counts its deliveries in x-delivery-count: the same
 * letter delivered again (a crash between its commit and its ack) is still
 * one letter, one row. */
static void a_letter_delivered_again_keeps_its_key(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {text("x-orderq-error-class", "bad_input"),
                              number("x-delivery-count", 0)};
    amqp_message_t m = message(h, 2, "not JSON");
    struct oq_dead_letter first, again;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &first), 0);
    h[1] = number("x-delivery-count", 1);
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &again), 0);
    assert_string_equal(again.letter_key, first.letter_key);
    oq_dead_letter_clear(&first);
    oq_dead_letter_clear(&again);
}

/* The chaos run found one letter archived twice: the broker handed the
 * second delivery over with its headers in another order (sorted by key,
 * x-delivery-count first). An AMQP table is a map: the order of its
 * entries must not make a second row. */
static void a_letter_with_its_headers_reordered_keeps_its_key(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {number("x-delivery-count", 0), number("x-orderq-attempt", 1),
                              text("x-orderq-first-failed-at", "2026-12-01T18:27:57.880Z"),
                              text("x-orderq-error-class", "ambiguous"),
                              text("x-orderq-host", "vm")};
    amqp_message_t m = message(h, 5, "{}");
    struct oq_dead_letter first, again;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &first), 0);
    amqp_table_entry_t swap = h[2];
    h[2] = h[3];
    h[3] = swap;
    h[0] = number("x-delivery-count", 4);
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &again), 0);
    assert_string_equal(again.letter_key, first.letter_key);
    oq_dead_letter_clear(&first);
    oq_dead_letter_clear(&again);
}

/* key_of: the letter key of a message with headers h[0..n). */
static void key_of(amqp_table_entry_t *h, int n, char *out)
{
    amqp_message_t m = message(h, n, "{}");
    struct oq_dead_letter dl;
    assert_int_equal(oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl), 0);
    memcpy(out, dl.letter_key, sizeof(dl.letter_key));
    oq_dead_letter_clear(&dl);
}

static amqp_table_entry_t table_of(const char *key, amqp_table_entry_t *e, int n)
{
    amqp_table_entry_t t = field(amqp_cstring_bytes(key), AMQP_FIELD_KIND_TABLE);
    t.value.value.table = (amqp_table_t){n, e};
    return t;
}

/* Review found the sort stopped at the top: each x-death entry is a table
 * in an array, and a table's entries may come in any order, so one letter
 * delivered again with them reordered was two keys, two rows. Tables
 * inside arrays and tables are sorted too, a key that comes twice by its
 * value; the array keeps its order; any other value is another key. */
static void a_letter_with_nested_tables_reordered_keeps_its_key(void **state)
{
    (void)state;
    /* x-death: [{count, reason, queue}, {count, reason, queue}] */
    amqp_table_entry_t d1[] = {number("count", 1), text("reason", "rejected"),
                               text("queue", "orderq.order.processing")};
    amqp_table_entry_t d2[] = {number("count", 2), text("reason", "expired"),
                               text("queue", "orderq.delay.1s")};
    amqp_field_value_t deaths[2] = {{AMQP_FIELD_KIND_TABLE, {0}}, {AMQP_FIELD_KIND_TABLE, {0}}};
    deaths[0].value.table = (amqp_table_t){3, d1};
    deaths[1].value.table = (amqp_table_t){3, d2};
    amqp_table_entry_t inner[] = {text("b", "2"), text("a", "1")};
    amqp_table_entry_t h[] = {field(amqp_cstring_bytes("x-death"), AMQP_FIELD_KIND_ARRAY),
                              table_of("t", inner, 2), number("dup", 1), number("dup", 2)};
    h[0].value.value.array = (amqp_array_t){2, deaths};
    char first[65], again[65], other[65];
    key_of(h, 4, first);

    /* the same letter, every table's entries in another order */
    amqp_table_entry_t d1r[] = {text("queue", "orderq.order.processing"), number("count", 1),
                                text("reason", "rejected")};
    amqp_table_entry_t d2r[] = {text("reason", "expired"), text("queue", "orderq.delay.1s"),
                                number("count", 2)};
    amqp_field_value_t deaths_r[2] = {{AMQP_FIELD_KIND_TABLE, {0}}, {AMQP_FIELD_KIND_TABLE, {0}}};
    deaths_r[0].value.table = (amqp_table_t){3, d1r};
    deaths_r[1].value.table = (amqp_table_t){3, d2r};
    amqp_table_entry_t inner_r[] = {text("a", "1"), text("b", "2")};
    amqp_table_entry_t hr[] = {number("dup", 2), table_of("t", inner_r, 2), number("dup", 1),
                               field(amqp_cstring_bytes("x-death"), AMQP_FIELD_KIND_ARRAY)};
    hr[3].value.value.array = (amqp_array_t){2, deaths_r};
    key_of(hr, 4, again);
    assert_string_equal(again, first);

    /* a value deep in an x-death entry differs: another letter */
    d2r[2] = number("count", 3);
    key_of(hr, 4, other);
    assert_string_not_equal(other, first);
    d2r[2] = number("count", 2);

    /* a value of a key that comes twice differs: another letter */
    hr[0] = number("dup", 3);
    key_of(hr, 4, other);
    assert_string_not_equal(other, first);
    hr[0] = number("dup", 2);

    /* the x-death entries swapped: a list's order is part of the letter */
    deaths_r[0].value.table = (amqp_table_t){3, d2r};
    deaths_r[1].value.table = (amqp_table_t){3, d1r};
    key_of(hr, 4, other);
    assert_string_not_equal(other, first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(orderq_headers_describe_the_failure),
        cmocka_unit_test(the_brokers_own_dead_letters_are_explained),
        cmocka_unit_test(forged_orderq_headers_are_not_believed),
        cmocka_unit_test(a_retry_at_the_delivery_limit_is_explained),
        cmocka_unit_test(binary_values_are_stored_safely),
        cmocka_unit_test(a_stored_letter_publishes_as_it_came),
        cmocka_unit_test(the_widest_integers_replay_as_integers),
        cmocka_unit_test(a_key_that_is_not_utf8_keeps_every_header),
        cmocka_unit_test(nan_and_infinity_become_strings),
        cmocka_unit_test(bad_keys_in_nested_tables_and_arrays),
        cmocka_unit_test(stored_headers_replay_the_original_bytes),
        cmocka_unit_test(letters_the_json_cannot_tell_apart_keep_their_own_keys),
        cmocka_unit_test(a_letter_delivered_again_keeps_its_key),
        cmocka_unit_test(a_letter_with_its_headers_reordered_keeps_its_key),
        cmocka_unit_test(a_letter_with_nested_tables_reordered_keeps_its_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
