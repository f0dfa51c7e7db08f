/* fuzz_deadletter.c - dead-letter headers and properties to JSON, and back
 *
 * The input is an AMQP field table as it comes off the wire
 * (amqp_decode_table), then basic properties. Their JSON must parse as
 * strict UTF-8, and reading it back (what replay publishes) must give
 * every key and every byte string as it was, and the same integers. */
#include <amqp.h>
#include <amqp_framing.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "fuzz.h"
#include "orderq/deadletter.h"
#include "orderq/event.h"

/* librabbitmq's own decoder: exported, not in its public headers. */
int amqp_decode_table(amqp_bytes_t encoded, amqp_pool_t *pool, amqp_table_t *output,
                      size_t *offset);

#define DEPTH_SHOWN 16 /* deadletter.c's MAX_TABLE_DEPTH: deeper is left out */

static int bytes_eq(amqp_bytes_t a, amqp_bytes_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.bytes, b.bytes, a.len) == 0);
}

static int as_int(const amqp_field_value_t *v, int64_t *out)
{
    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:
        *out = v->value.i8;
        return 1;
    case AMQP_FIELD_KIND_U8:
        *out = v->value.u8;
        return 1;
    case AMQP_FIELD_KIND_I16:
        *out = v->value.i16;
        return 1;
    case AMQP_FIELD_KIND_U16:
        *out = v->value.u16;
        return 1;
    case AMQP_FIELD_KIND_I32:
        *out = v->value.i32;
        return 1;
    case AMQP_FIELD_KIND_U32:
        *out = v->value.u32;
        return 1;
    case AMQP_FIELD_KIND_I64:
        *out = v->value.i64;
        return 1;
    default:
        return 0;
    }
}

static void same_table(const amqp_table_t *a, const amqp_table_t *b, int depth, int top);

static void same_field(const amqp_field_value_t *a, const amqp_field_value_t *b, int depth)
{
    int64_t x, y;
    switch (a->kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        FUZZ_CHECK(b->kind == AMQP_FIELD_KIND_UTF8 || b->kind == AMQP_FIELD_KIND_BYTES,
                   "a byte string came back as kind %c", b->kind);
        FUZZ_CHECK(bytes_eq(a->value.bytes, b->value.bytes), "a byte string changed");
        return;
    case AMQP_FIELD_KIND_BOOLEAN:
        FUZZ_CHECK(b->kind == AMQP_FIELD_KIND_BOOLEAN && !a->value.boolean == !b->value.boolean,
                   "a boolean changed");
        return;
    case AMQP_FIELD_KIND_TABLE:
        FUZZ_CHECK(b->kind == AMQP_FIELD_KIND_TABLE, "a table came back as kind %c", b->kind);
        same_table(&a->value.table, &b->value.table, depth + 1, 0);
        return;
    case AMQP_FIELD_KIND_ARRAY:
        FUZZ_CHECK(b->kind == AMQP_FIELD_KIND_ARRAY, "an array came back as kind %c", b->kind);
        if (depth >= DEPTH_SHOWN)
            return;
        FUZZ_CHECK(a->value.array.num_entries == b->value.array.num_entries, "array length");
        for (int i = 0; i < a->value.array.num_entries; i++)
            same_field(&a->value.array.entries[i], &b->value.array.entries[i], depth + 1);
        return;
    case AMQP_FIELD_KIND_VOID:
        FUZZ_CHECK(b->kind == AMQP_FIELD_KIND_VOID, "void came back as kind %c", b->kind);
        return;
    default:
        if (as_int(a, &x))
            FUZZ_CHECK(as_int(b, &y) && x == y, "the integer %lld changed", (long long)x);
        return; /* floats, decimals, u64 and timestamps become JSON numbers */
    }
}

/* top: the headers themselves, where orderq's own are left out on replay. */
static void same_table(const amqp_table_t *a, const amqp_table_t *b, int depth, int top)
{
    if (depth >= DEPTH_SHOWN)
        return;
    int j = 0;
    for (int i = 0; i < a->num_entries; i++) {
        if (top && oq_header_is_orderqs(a->entries[i].key))
            continue;
        FUZZ_CHECK(j < b->num_entries, "a key was lost");
        FUZZ_CHECK(bytes_eq(a->entries[i].key, b->entries[j].key), "key %d changed", i);
        same_field(&a->entries[i].value, &b->entries[j].value, depth);
        j++;
    }
    FUZZ_CHECK(j == b->num_entries, "keys were added");
}

static yajl_val parse(const char *json)
{
    char perr[256];
    FUZZ_CHECK(json != NULL, "no JSON");
    FUZZ_CHECK(oq_utf8_valid(json, strlen(json)), "the JSON is not UTF-8");
    yajl_val v = yajl_tree_parse(json, perr, sizeof(perr));
    FUZZ_CHECK(v != NULL && YAJL_IS_OBJECT(v), "the JSON does not parse: %s: %s", perr, json);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    amqp_pool_t pool;
    amqp_table_t table;
    amqp_basic_properties_t *props = NULL, back;
    size_t offset = 0;
    char *tj = NULL, *pj = NULL;
    yajl_val tv = NULL, pv = NULL;

    init_amqp_pool(&pool, 4096);
    amqp_bytes_t in = {size, (void *)data};
    if (amqp_decode_table(in, &pool, &table, &offset) != 0)
        goto out;
    tj = oq_amqp_table_json(&table);
    tv = parse(tj);
    /* what follows the table, if anything, is basic properties */
    if (offset < size) {
        amqp_bytes_t rest = {size - offset, (char *)data + offset};
        if (amqp_decode_properties(AMQP_BASIC_CLASS, &pool, rest, (void **)&props) == 0) {
            props->_flags &= ~AMQP_BASIC_HEADERS_FLAG;
            pj = oq_amqp_properties_json(props);
            pv = parse(pj);
        }
    }
    if (oq_dead_letter_properties(pv, tv, "orderq", 0, &pool, &back) == 0) {
        same_table(&table, &back.headers, 0, 1);
        if (props != NULL && (props->_flags & AMQP_BASIC_MESSAGE_ID_FLAG))
            FUZZ_CHECK((back._flags & AMQP_BASIC_MESSAGE_ID_FLAG) &&
                           bytes_eq(props->message_id, back.message_id),
                       "message_id changed");
        /* the letter as the archiver describes it */
        amqp_message_t m = {0};
        m.properties = back;
        m.properties.headers = table;
        m.body = amqp_cstring_bytes("{\"event_code\":\"x\"}");
        struct oq_dead_letter dl;
        if (oq_dead_letter_from_message(&m, 20, 1 << 20, "orderq", &dl) == 0) {
            FUZZ_CHECK(oq_utf8_valid(dl.error, strlen(dl.error)), "error not UTF-8");
            FUZZ_CHECK(oq_utf8_valid(dl.event_identifier, strlen(dl.event_identifier)),
                       "event_identifier not UTF-8");
            oq_dead_letter_clear(&dl);
        }
    }
out:
    yajl_tree_free(tv);
    yajl_tree_free(pv);
    free(tj);
    free(pj);
    empty_amqp_pool(&pool);
    return 0;
}
