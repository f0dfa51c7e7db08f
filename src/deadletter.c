/* deadletter.c - archive the dead-letter queue into the dead_letter table */
#include "orderq/deadletter.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/event.h"
#include "orderq/json.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/publish.h"
#include "orderq/retry.h"
#include "orderq/topology.h"
#include "orderq/trust.h"

#define ARCHIVE_CHANNEL  1
#define DECLARE_CHANNEL  2 /* on the held connection: a refusal closes only it */
#define ARCHIVE_PREFETCH 64
#define HELD_CONFIRM_MS  30000 /* the broker's word on a held letter */
#define MAX_TABLE_DEPTH  16    /* nesting of headers we render; deeper is "..." */
#define SORT_DEPTH       64    /* nesting the letter key sorts; deeper keeps its order */

/* ---- AMQP values as JSON -------------------------------------------------- */

/* Each generator returns 0, or -1 when yajl refused a call: JSON cut short
 * (every header after the refused one lost) is never stored. */
static int gen_ok(yajl_gen_status s)
{
    return s == yajl_gen_status_ok ? 0 : -1;
}

/* Bytes a JSON string holds and gives back whole: valid UTF-8 without NUL
 * (oq_utf8_valid refuses NUL; yajl's tree would cut the string there). */
static int is_text(amqp_bytes_t b)
{
    return oq_utf8_valid(b.bytes, b.len);
}

/* prefix and b in hex, as one JSON string. */
static int gen_hex(yajl_gen g, const char *prefix, amqp_bytes_t b)
{
    static const char digits[] = "0123456789abcdef";
    size_t plen = strlen(prefix);
    char *s = malloc(plen + b.len * 2 + 1);
    if (s == NULL)
        return -1;
    memcpy(s, prefix, plen);
    for (size_t i = 0; i < b.len; i++) {
        s[plen + 2 * i] = digits[((const unsigned char *)b.bytes)[i] >> 4];
        s[plen + 2 * i + 1] = digits[((const unsigned char *)b.bytes)[i] & 15];
    }
    int rc = gen_ok(yajl_gen_string(g, (const unsigned char *)s, plen + b.len * 2));
    free(s);
    return rc;
}

static int gen_bytes(yajl_gen g, amqp_bytes_t b)
{
    if (is_text(b))
        return gen_ok(yajl_gen_string(g, b.bytes, b.len));
    /* Not text: hex, so the JSON column takes it and nothing is lost. */
    if (gen_ok(yajl_gen_map_open(g)) != 0 ||
        gen_ok(yajl_gen_string(g, (const unsigned char *)"hex", 3)) != 0 || gen_hex(g, "", b) != 0)
        return -1;
    return gen_ok(yajl_gen_map_close(g));
}

static int has_hex_key_prefix(amqp_bytes_t key)
{
    size_t n = sizeof(OQ_DEAD_LETTER_HEX_KEY) - 1;
    return key.len >= n && memcmp(key.bytes, OQ_DEAD_LETTER_HEX_KEY, n) == 0;
}

/* A JSON key is a string: a key that is not text is written as
 * OQ_DEAD_LETTER_HEX_KEY and its bytes in hex. So is a text key that
 * starts with that prefix itself, and (lone_hex) a nested table's only key
 * when it is "hex", so that neither reads back as something else. */
static int gen_key(yajl_gen g, amqp_bytes_t key, int lone_hex)
{
    int hex_only = lone_hex && key.len == 3 && memcmp(key.bytes, "hex", 3) == 0;
    if (is_text(key) && !has_hex_key_prefix(key) && !hex_only)
        return gen_ok(yajl_gen_string(g, key.bytes, key.len));
    return gen_hex(g, OQ_DEAD_LETTER_HEX_KEY, key);
}

static int gen_text(yajl_gen g, const char *s)
{
    return gen_ok(yajl_gen_string(g, (const unsigned char *)s, strlen(s)));
}

/* JSON has no NaN or Infinity (yajl refuses them): those become strings. */
static int gen_double(yajl_gen g, double d)
{
    if (isnan(d))
        return gen_text(g, "NaN");
    if (isinf(d))
        return gen_text(g, d > 0 ? "Infinity" : "-Infinity");
    return gen_ok(yajl_gen_double(g, d));
}

static int gen_table(yajl_gen g, const amqp_table_t *t, int depth);

static int gen_field(yajl_gen g, const amqp_field_value_t *v, int depth)
{
    char num[64];
    switch (v->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        return gen_ok(yajl_gen_bool(g, v->value.boolean));
    case AMQP_FIELD_KIND_F32:
        return gen_double(g, v->value.f32);
    case AMQP_FIELD_KIND_F64:
        return gen_double(g, v->value.f64);
    case AMQP_FIELD_KIND_DECIMAL: /* value * 10^-decimals, as written */
        snprintf(num, sizeof(num), "%" PRIu32 "e-%u", v->value.decimal.value,
                 (unsigned)v->value.decimal.decimals);
        return gen_ok(yajl_gen_number(g, num, strlen(num)));
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return gen_bytes(g, v->value.bytes);
    case AMQP_FIELD_KIND_TABLE:
        return gen_table(g, &v->value.table, depth + 1);
    case AMQP_FIELD_KIND_ARRAY:
        if (gen_ok(yajl_gen_array_open(g)) != 0)
            return -1;
        for (int i = 0; depth < MAX_TABLE_DEPTH && i < v->value.array.num_entries; i++)
            if (gen_field(g, &v->value.array.entries[i], depth + 1) != 0)
                return -1;
        return gen_ok(yajl_gen_array_close(g));
    case AMQP_FIELD_KIND_VOID:
        return gen_ok(yajl_gen_null(g));
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        snprintf(num, sizeof(num), "%" PRIu64, v->value.u64);
        return gen_ok(yajl_gen_number(g, num, strlen(num)));
    default: {
        int64_t n = 0;
        if (oq_amqp_field_int(v, &n) == 0)
            return gen_ok(yajl_gen_integer(g, n));
        return gen_ok(yajl_gen_null(g));
    }
    }
}

/* depth 0: the headers themselves; deeper: a table in a header, where a
 * lone "hex" key would read back as a byte string. */
static int gen_table(yajl_gen g, const amqp_table_t *t, int depth)
{
    if (gen_ok(yajl_gen_map_open(g)) != 0)
        return -1;
    for (int i = 0; depth < MAX_TABLE_DEPTH && i < t->num_entries; i++)
        if (gen_key(g, t->entries[i].key, depth > 0 && t->num_entries == 1) != 0 ||
            gen_field(g, &t->entries[i].value, depth) != 0)
            return -1;
    return gen_ok(yajl_gen_map_close(g));
}

char *oq_amqp_table_json(const amqp_table_t *t)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    if (gen_table(g, t, 0) != 0) {
        yajl_gen_free(g);
        return NULL;
    }
    return oq_json_gen_finish(g);
}

static int gen_prop(yajl_gen g, const char *key, amqp_bytes_t value)
{
    return gen_text(g, key) != 0 ? -1 : gen_bytes(g, value);
}

static int gen_prop_int(yajl_gen g, const char *key, long long value)
{
    return gen_text(g, key) != 0 ? -1 : gen_ok(yajl_gen_integer(g, value));
}

char *oq_amqp_properties_json(const amqp_basic_properties_t *p)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    amqp_flags_t f = p->_flags;
    int rc = gen_ok(yajl_gen_map_open(g));
    if (f & AMQP_BASIC_CONTENT_TYPE_FLAG)
        rc |= gen_prop(g, "content_type", p->content_type);
    if (f & AMQP_BASIC_CONTENT_ENCODING_FLAG)
        rc |= gen_prop(g, "content_encoding", p->content_encoding);
    if (f & AMQP_BASIC_DELIVERY_MODE_FLAG)
        rc |= gen_prop_int(g, "delivery_mode", p->delivery_mode);
    if (f & AMQP_BASIC_PRIORITY_FLAG)
        rc |= gen_prop_int(g, "priority", p->priority);
    if (f & AMQP_BASIC_CORRELATION_ID_FLAG)
        rc |= gen_prop(g, "correlation_id", p->correlation_id);
    if (f & AMQP_BASIC_REPLY_TO_FLAG)
        rc |= gen_prop(g, "reply_to", p->reply_to);
    if (f & AMQP_BASIC_EXPIRATION_FLAG)
        rc |= gen_prop(g, "expiration", p->expiration);
    if (f & AMQP_BASIC_MESSAGE_ID_FLAG)
        rc |= gen_prop(g, "message_id", p->message_id);
    if (f & AMQP_BASIC_TIMESTAMP_FLAG)
        rc |= gen_prop_int(g, "timestamp", (long long)p->timestamp);
    if (f & AMQP_BASIC_TYPE_FLAG)
        rc |= gen_prop(g, "type", p->type);
    if (f & AMQP_BASIC_USER_ID_FLAG)
        rc |= gen_prop(g, "user_id", p->user_id);
    if (f & AMQP_BASIC_APP_ID_FLAG)
        rc |= gen_prop(g, "app_id", p->app_id);
    if (f & AMQP_BASIC_CLUSTER_ID_FLAG)
        rc |= gen_prop(g, "cluster_id", p->cluster_id);
    rc |= gen_ok(yajl_gen_map_close(g));
    if (rc != 0) {
        yajl_gen_free(g);
        return NULL;
    }
    return oq_json_gen_finish(g);
}

/* ---- one letter's row -------------------------------------------------------- */

/* Copy len bytes of s into out as text a utf8mb4 column takes: a byte that
 * does not start a valid UTF-8 sequence becomes '?', and the whole is cut
 * on a character boundary to fit outlen. */
static void text_column(const void *s, size_t len, char *out, size_t outlen)
{
    const unsigned char *p = s;
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < outlen;) {
        size_t n = p[i] < 0x80 ? 1 : p[i] < 0xe0 ? 2 : p[i] < 0xf0 ? 3 : 4;
        if (i + n > len || !oq_utf8_valid((const char *)p + i, n)) {
            out[o++] = '?';
            i++;
            continue;
        }
        if (o + n + 1 > outlen)
            break;
        memcpy(out + o, p + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

static int header_text(const amqp_basic_properties_t *p, const char *key, char *out, size_t outlen)
{
    const amqp_field_value_t *v = oq_amqp_header(p, key);
    if (v == NULL || (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES))
        return 0;
    text_column(v->value.bytes.bytes, v->value.bytes.len, out, outlen);
    return 1;
}

/* "2026-11-22T21:49:06.123Z" -> "2026-11-22 21:49:06.123" for DATETIME(6);
 * "" when it is not such a time. */
static void iso_to_datetime(const char *iso, char *out, size_t outlen)
{
    int y, mo, d, h, mi;
    double s;
    out[0] = '\0';
    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%lf", &y, &mo, &d, &h, &mi, &s) == 6 && outlen >= 27)
        snprintf(out, outlen, "%.10s %.15s", iso, iso + 11);
    char *z = strchr(out, 'Z');
    if (z != NULL)
        *z = '\0';
}

/* The newest x-death entry (RabbitMQ puts it first): the dead-lettering
 * that sent the letter here. NULL when there is none. */
static const amqp_table_t *newest_death(const amqp_basic_properties_t *p)
{
    const amqp_field_value_t *xd = oq_amqp_header(p, "x-death");
    if (xd == NULL || xd->kind != AMQP_FIELD_KIND_ARRAY || xd->value.array.num_entries == 0 ||
        xd->value.array.entries[0].kind != AMQP_FIELD_KIND_TABLE)
        return NULL;
    return &xd->value.array.entries[0].value.table;
}

static const amqp_field_value_t *death_field(const amqp_table_t *death, const char *key)
{
    size_t n = strlen(key);
    for (int i = 0; death != NULL && i < death->num_entries; i++)
        if (death->entries[i].key.len == n && memcmp(death->entries[i].key.bytes, key, n) == 0)
            return &death->entries[i].value;
    return NULL;
}

/* A text field of the newest death, else the x-first-death-* header
 * (fallback) into out. */
static void death_text(const amqp_basic_properties_t *p, const char *key, const char *fallback,
                       char *out, size_t outlen)
{
    const amqp_field_value_t *v = death_field(newest_death(p), key);
    if (v != NULL && (v->kind == AMQP_FIELD_KIND_UTF8 || v->kind == AMQP_FIELD_KIND_BYTES))
        text_column(v->value.bytes.bytes, v->value.bytes.len, out, outlen);
    else
        header_text(p, fallback, out, outlen);
}

/* The newest death's first routing key: where RabbitMQ's own dead letter
 * was published to before it died. */
static void xdeath_routing_key(const amqp_basic_properties_t *p, char *out, size_t outlen)
{
    const amqp_field_value_t *keys = death_field(newest_death(p), "routing-keys");
    if (keys == NULL || keys->kind != AMQP_FIELD_KIND_ARRAY || keys->value.array.num_entries == 0)
        return;
    const amqp_field_value_t *k = &keys->value.array.entries[0];
    if (k->kind == AMQP_FIELD_KIND_UTF8 || k->kind == AMQP_FIELD_KIND_BYTES)
        text_column(k->value.bytes.bytes, k->value.bytes.len, out, outlen);
}

static int64_t header_int(const amqp_basic_properties_t *p, const char *key, int64_t otherwise)
{
    const amqp_field_value_t *v = oq_amqp_header(p, key);
    int64_t n;
    if (v != NULL && oq_amqp_field_int(v, &n) == 0)
        return n;
    char text[32];
    if (header_text(p, key, text, sizeof(text)) && sscanf(text, "%" SCNd64, &n) == 1)
        return n;
    return otherwise;
}

/* Why and where, in orderq's words: its x-orderq-* headers. */
static void describe_by_orderq(const amqp_basic_properties_t *p, struct oq_dead_letter *dl)
{
    char iso[64];
    header_text(p, "x-orderq-last-error", dl->error, sizeof(dl->error));
    header_text(p, "x-orderq-queue", dl->queue, sizeof(dl->queue));
    header_text(p, "x-orderq-original-exchange", dl->exchange, sizeof(dl->exchange));
    header_text(p, "x-orderq-original-routing-key", dl->routing_key, sizeof(dl->routing_key));
    dl->attempts = header_int(p, "x-orderq-attempt", 1);
    if (header_text(p, "x-orderq-first-failed-at", iso, sizeof(iso)))
        iso_to_datetime(iso, dl->first_failed_at, sizeof(dl->first_failed_at));
    if (header_text(p, "x-orderq-last-failed-at", iso, sizeof(iso)))
        iso_to_datetime(iso, dl->last_failed_at, sizeof(dl->last_failed_at));
    header_text(p, "x-orderq-host", dl->host, sizeof(dl->host));
    dl->pid = header_int(p, "x-orderq-pid", 0);
}

/* Why and where, in RabbitMQ's words (x-first-death-*, x-death): a letter
 * it dead-lettered itself, such as a quorum queue's delivery limit. */
static void describe_by_broker(const amqp_basic_properties_t *p, int64_t delivery_limit,
                               struct oq_dead_letter *dl)
{
    char reason[32] = ""; /* "delivery_limit", "rejected", "expired", "maxlen" */
    /* The newest death, not the first: a retry its work queue dead-lettered
     * died first expiring in a delay tier, as it should. */
    death_text(p, "reason", "x-first-death-reason", reason, sizeof(reason));
    death_text(p, "queue", "x-first-death-queue", dl->queue, sizeof(dl->queue));
    death_text(p, "exchange", "x-first-death-exchange", dl->exchange, sizeof(dl->exchange));
    xdeath_routing_key(p, dl->routing_key, sizeof(dl->routing_key));
    /* RabbitMQ 3.10 does not say how often it delivered the letter; the
     * limit was run out, so it was delivered limit + 1 times. */
    dl->attempts = header_int(p, "x-delivery-count", delivery_limit) + 1;
    if (strcmp(reason, "delivery_limit") == 0) {
        snprintf(dl->error_class, sizeof(dl->error_class), "delivery_limit");
        snprintf(dl->error, sizeof(dl->error),
                 "RabbitMQ dead-lettered it from %s: delivered %lld times without an outcome "
                 "(the consumer crashed, hung or was cut off each time)",
                 dl->queue[0] ? dl->queue : "its queue", (long long)dl->attempts);
    } else {
        snprintf(dl->error_class, sizeof(dl->error_class), "%s", reason[0] ? reason : "unknown");
        snprintf(dl->error, sizeof(dl->error), "RabbitMQ dead-lettered it from %s (reason: %s)",
                 dl->queue[0] ? dl->queue : "a queue", reason[0] ? reason : "not given");
    }
}

/* Any letter orderq did not publish: the error starts "not from orderq"
 * (dlq replay looks for it, docs/dlq.md) and names the publisher. x-death
 * and x-first-death-* are headers anyone may write on a message published
 * straight to the dead-letter exchange, so what they say is passed on as
 * their word, not as a fact; so are forged x-orderq-* headers, named here,
 * kept in the row's headers and nowhere else. */
static void say_not_from_orderq(const amqp_basic_properties_t *p, const char *orderq_user,
                                int by_broker, struct oq_dead_letter *dl)
{
    char names[384], who[300] = "no user_id";
    size_t n = oq_trust_orderq_headers(p, names, sizeof(names));
    if (p->_flags & AMQP_BASIC_USER_ID_FLAG) {
        char uid[256];
        text_column(p->user_id.bytes, p->user_id.len, uid, sizeof(uid));
        snprintf(who, sizeof(who), "user_id \"%s\"", uid);
    }
    char text[2304];  /* room for every part: cut below on a character boundary */
    if (!by_broker) { /* nothing says how often it was tried */
        snprintf(dl->error_class, sizeof(dl->error_class), "not_from_orderq");
        dl->attempts = 1;
    }
    snprintf(text, sizeof(text),
             OQ_DEAD_LETTER_NOT_OURS "%s, not orderq's user \"%.200s\"%s%s%s%s%s", who,
             orderq_user ? orderq_user : "?",
             by_broker ? "; its x-death headers, which any publisher can write, say: "
                       : ", and RabbitMQ did not dead-letter it either (no x-death)",
             by_broker ? dl->error : "", n > 0 ? "; its headers only orderq may set (" : "",
             n > 0 ? names : "", n > 0 ? ") were not believed" : "");
    text_column(text, strlen(text), dl->error, sizeof(dl->error));
}

/* One of orderq's retries that RabbitMQ dead-lettered (it crashed or hung
 * the consumers till the delivery limit): where it was first published
 * (where a replay sends it, not the delay tier it came back from), when
 * it first failed, and what the attempt before said. */
static void add_retry_history(const amqp_basic_properties_t *p, struct oq_dead_letter *dl)
{
    char iso[64], class[32] = "", before[256] = "";
    int64_t attempt = header_int(p, "x-orderq-attempt", 0);
    if (attempt < 2)
        return;
    header_text(p, "x-orderq-original-exchange", dl->exchange, sizeof(dl->exchange));
    header_text(p, "x-orderq-original-routing-key", dl->routing_key, sizeof(dl->routing_key));
    if (header_text(p, "x-orderq-first-failed-at", iso, sizeof(iso)))
        iso_to_datetime(iso, dl->first_failed_at, sizeof(dl->first_failed_at));
    header_text(p, "x-orderq-error-class", class, sizeof(class));
    header_text(p, "x-orderq-last-error", before, sizeof(before));
    size_t used = strlen(dl->error);
    snprintf(dl->error + used, sizeof(dl->error) - used,
             "; it was orderq's attempt %lld (attempt %lld failed: %s: %s)", (long long)attempt,
             (long long)attempt - 1, class, before);
}

/* Why and where: orderq's headers when orderq published the letter
 * (trust.h), else what RabbitMQ says. orderq's own letters never carry
 * x-death (parking drops it): with one, RabbitMQ dead-lettered it. */
static void describe_failure(const amqp_basic_properties_t *p, int64_t delivery_limit,
                             const char *orderq_user, struct oq_dead_letter *dl)
{
    int ours = oq_trust_published_by(p, orderq_user);
    int by_broker = newest_death(p) != NULL || oq_amqp_header(p, "x-first-death-reason") != NULL;
    if (ours && !by_broker &&
        header_text(p, "x-orderq-error-class", dl->error_class, sizeof(dl->error_class))) {
        describe_by_orderq(p, dl);
        return;
    }
    describe_by_broker(p, delivery_limit, dl);
    if (ours)
        add_retry_history(p, dl);
    else
        say_not_from_orderq(p, orderq_user, by_broker, dl);
}

/* The event it is about: the AMQP properties, else the body's envelope. */
static void identify_event(const amqp_message_t *m, int64_t max_message_bytes,
                           struct oq_dead_letter *dl)
{
    const amqp_basic_properties_t *p = &m->properties;
    if (p->_flags & AMQP_BASIC_TYPE_FLAG)
        text_column(p->type.bytes, p->type.len, dl->event_code, sizeof(dl->event_code));
    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        text_column(p->message_id.bytes, p->message_id.len, dl->event_identifier,
                    sizeof(dl->event_identifier));
    /* The consumer's own limit: a bigger body is never parsed (too_large). */
    if ((dl->event_code[0] && dl->event_identifier[0]) || max_message_bytes < 0 ||
        m->body.len > (uint64_t)max_message_bytes)
        return;
    struct oq_event ev;
    char err[256];
    memset(&ev, 0, sizeof(ev));
    if (oq_event_decode(m->body.bytes, m->body.len, NULL, &ev, err, sizeof(err)) == 0) {
        if (!dl->event_code[0])
            text_column(ev.code, strlen(ev.code), dl->event_code, sizeof(dl->event_code));
        if (!dl->event_identifier[0])
            text_column(ev.identifier, strlen(ev.identifier), dl->event_identifier,
                        sizeof(dl->event_identifier));
    }
    oq_event_clear(&ev);
}

/* ---- the letter's key: a hash of what the letter is, not of its JSON --------- */

struct digest {
    EVP_MD_CTX *c;
    int ok;
};

static void put(struct digest *d, const void *p, size_t n)
{
    if (d->ok && n > 0 && EVP_DigestUpdate(d->c, p, n) != 1)
        d->ok = 0;
}

/* width bytes of v, least significant first: the same key on any host. */
static void put_uint(struct digest *d, uint64_t v, unsigned width)
{
    unsigned char b[8];
    for (unsigned i = 0; i < width; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(d, b, width);
}

/* Length first, so that no two sequences of strings hash alike. */
static void put_bytes(struct digest *d, amqp_bytes_t b)
{
    put_uint(d, b.len, 8);
    put(d, b.bytes, b.len);
}

/* By key, bytewise, then by length (a key that is a prefix comes first). */
static int bytes_cmp(amqp_bytes_t x, amqp_bytes_t y)
{
    size_t n = x.len < y.len ? x.len : y.len;
    int c = n > 0 ? memcmp(x.bytes, y.bytes, n) : 0;
    return c != 0 ? c : (x.len > y.len) - (x.len < y.len);
}

static int entry_key_cmp(const void *a, const void *b)
{
    return bytes_cmp(((const amqp_table_entry_t *)a)->key, ((const amqp_table_entry_t *)b)->key);
}

/* t as librabbitmq writes it on the wire. *out is malloc'd.
 * Returns 0 or OQ_ENOMEM. */
static int encode_table(const amqp_table_t *t, amqp_bytes_t *out)
{
    for (size_t cap = 4096; cap <= ((size_t)1 << 28); cap *= 4) {
        size_t used = 0;
        void *buf = malloc(cap);
        if (buf == NULL)
            return OQ_ENOMEM;
        int status = amqp_encode_table((amqp_bytes_t){cap, buf}, (amqp_table_t *)t, &used);
        if (status == AMQP_STATUS_OK) {
            *out = (amqp_bytes_t){used, buf};
            return 0;
        }
        free(buf);
        if (status != AMQP_STATUS_TABLE_TOO_BIG)
            return OQ_ENOMEM;
    }
    return OQ_ENOMEM;
}

/* A key that came twice: its entries ordered by their bytes on the wire,
 * so that the order they came in does not count. Rare, so a plain
 * insertion sort of the run e[0..n). Returns 0 or OQ_ENOMEM. */
static int sort_same_keys(amqp_table_entry_t *e, size_t n)
{
    amqp_bytes_t *wire = calloc(n, sizeof(*wire));
    int rc = wire == NULL ? OQ_ENOMEM : 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = encode_table(&(amqp_table_t){1, &e[i]}, &wire[i]);
    for (size_t i = 1; rc == 0 && i < n; i++)
        for (size_t j = i; j > 0 && bytes_cmp(wire[j - 1], wire[j]) > 0; j--) {
            amqp_table_entry_t te = e[j];
            amqp_bytes_t tw = wire[j];
            e[j] = e[j - 1], wire[j] = wire[j - 1];
            e[j - 1] = te, wire[j - 1] = tw;
        }
    for (size_t i = 0; wire != NULL && i < n; i++)
        free(wire[i].bytes);
    free(wire);
    return rc;
}

static int sort_table(amqp_pool_t *pool, amqp_table_t *t, int depth);

/* A copy of n entries of size bytes from pool, to sort without touching
 * the message; NULL when out of memory. n > 0. */
static void *pool_copy(amqp_pool_t *pool, const void *entries, int n, size_t size)
{
    void *copy = amqp_pool_alloc(pool, (size_t)n * size);
    return copy != NULL ? memcpy(copy, entries, (size_t)n * size) : NULL;
}

/* Every table inside v sorted, on copies from pool. An array keeps its
 * order: it is a list, not a map. */
static int sort_value(amqp_pool_t *pool, amqp_field_value_t *v, int depth)
{
    if (depth >= SORT_DEPTH)
        return 0; /* deeper tables are hashed in the order they came */
    if (v->kind == AMQP_FIELD_KIND_TABLE) {
        amqp_table_t *t = &v->value.table;
        if (t->num_entries > 0 && (t->entries = pool_copy(pool, t->entries, t->num_entries,
                                                          sizeof(t->entries[0]))) == NULL)
            return OQ_ENOMEM;
        return sort_table(pool, t, depth + 1);
    }
    if (v->kind != AMQP_FIELD_KIND_ARRAY)
        return 0;
    amqp_array_t *a = &v->value.array;
    if (a->num_entries > 0 &&
        (a->entries = pool_copy(pool, a->entries, a->num_entries, sizeof(a->entries[0]))) == NULL)
        return OQ_ENOMEM;
    for (int i = 0; i < a->num_entries; i++)
        if (sort_value(pool, &a->entries[i], depth + 1) != 0)
            return OQ_ENOMEM;
    return 0;
}

/* Sorts t's own entries (the caller's copy) by key, a key that came twice
 * by value, with every table inside sorted first. Returns 0 or OQ_ENOMEM. */
static int sort_table(amqp_pool_t *pool, amqp_table_t *t, int depth)
{
    size_t n = (size_t)t->num_entries;
    for (size_t i = 0; i < n; i++)
        if (sort_value(pool, &t->entries[i].value, depth) != 0)
            return OQ_ENOMEM;
    if (n > 1)
        qsort(t->entries, n, sizeof(t->entries[0]), entry_key_cmp);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && entry_key_cmp(&t->entries[i], &t->entries[j]) == 0; j++)
            ;
        if (j - i > 1 && sort_same_keys(&t->entries[i], j - i) != 0)
            return OQ_ENOMEM;
    }
    return 0;
}

/* The headers as librabbitmq writes them on the wire, less the key skip
 * (NULL: none), sorted: every value with its kind, every string with its
 * length, so two letters share an encoding only when their headers are the
 * same. Sorted because a table is a map and the broker may hand the same
 * letter over again with its entries in another order (the chaos run saw
 * one letter archived twice so): tables inside tables and arrays too (each
 * x-death entry is a table), and a key that comes twice by its value.
 * *out is malloc'd. Returns 0 or OQ_ENOMEM. */
static int encode_headers(const amqp_table_t *t, const char *skip, amqp_bytes_t *out)
{
    size_t skiplen = skip != NULL ? strlen(skip) : 0;
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_table_t kept = {
        0, amqp_pool_alloc(&pool, ((size_t)t->num_entries + 1) * sizeof(amqp_table_entry_t))};
    int rc = OQ_ENOMEM;
    if (kept.entries == NULL)
        goto out;
    for (int i = 0; i < t->num_entries; i++) {
        amqp_bytes_t key = t->entries[i].key;
        if (skip == NULL || key.len != skiplen || memcmp(key.bytes, skip, skiplen) != 0)
            kept.entries[kept.num_entries++] = t->entries[i];
    }
    if ((rc = sort_table(&pool, &kept, 0)) == 0)
        rc = encode_table(&kept, out);
out:
    empty_amqp_pool(&pool);
    return rc;
}

/* SHA-256 of the properties, headers and body as they came, not of their
 * JSON: the JSON cannot tell some different letters apart (a byte 1 from a
 * long 1, a byte string from text, tables nested deeper than it renders),
 * and two letters with one key are one row, the second acked unstored. */
static int letter_key(const amqp_message_t *m, struct oq_dead_letter *dl)
{
    static const char version[] = "orderq dead letter 4"; /* 4: nested tables sorted too */
    static const amqp_table_t no_headers = {0, NULL};
    static const struct {
        amqp_flags_t flag;
        size_t offset;
    } text[] = {
        {AMQP_BASIC_CONTENT_TYPE_FLAG, offsetof(amqp_basic_properties_t, content_type)},
        {AMQP_BASIC_CONTENT_ENCODING_FLAG, offsetof(amqp_basic_properties_t, content_encoding)},
        {AMQP_BASIC_CORRELATION_ID_FLAG, offsetof(amqp_basic_properties_t, correlation_id)},
        {AMQP_BASIC_REPLY_TO_FLAG, offsetof(amqp_basic_properties_t, reply_to)},
        {AMQP_BASIC_EXPIRATION_FLAG, offsetof(amqp_basic_properties_t, expiration)},
        {AMQP_BASIC_MESSAGE_ID_FLAG, offsetof(amqp_basic_properties_t, message_id)},
        {AMQP_BASIC_TYPE_FLAG, offsetof(amqp_basic_properties_t, type)},
        {AMQP_BASIC_USER_ID_FLAG, offsetof(amqp_basic_properties_t, user_id)},
        {AMQP_BASIC_APP_ID_FLAG, offsetof(amqp_basic_properties_t, app_id)},
        {AMQP_BASIC_CLUSTER_ID_FLAG, offsetof(amqp_basic_properties_t, cluster_id)},
    };
    const amqp_basic_properties_t *p = &m->properties;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    struct digest d = {EVP_MD_CTX_new(), 1};
    d.ok = d.c != NULL && EVP_DigestInit_ex(d.c, EVP_sha256(), NULL) == 1;
    put(&d, version, sizeof(version));
    put_uint(&d, p->_flags, 4);
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
        if (p->_flags & text[i].flag)
            put_bytes(&d, *(const amqp_bytes_t *)(const void *)((const char *)p + text[i].offset));
    put_uint(&d, (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) ? p->delivery_mode : 0, 1);
    put_uint(&d, (p->_flags & AMQP_BASIC_PRIORITY_FLAG) ? p->priority : 0, 1);
    put_uint(&d, (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) ? p->timestamp : 0, 8);
    /* A quorum dead queue writes its own x-delivery-count into every
     * delivery: a letter delivered again (a crash between its commit and
     * its ack) must keep its key. */
    amqp_bytes_t headers = amqp_empty_bytes;
    d.ok = d.ok && encode_headers((p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : &no_headers,
                                  "x-delivery-count", &headers) == 0;
    put_bytes(&d, headers);
    put_bytes(&d, m->body);
    int ok = d.ok && EVP_DigestFinal_ex(d.c, md, &mdlen) == 1;
    EVP_MD_CTX_free(d.c);
    free(headers.bytes);
    if (!ok)
        return OQ_ENOMEM;
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        snprintf(dl->letter_key + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int oq_dead_letter_from_message(const amqp_message_t *m, int64_t delivery_limit,
                                int64_t max_message_bytes, const char *orderq_user,
                                struct oq_dead_letter *dl)
{
    static const amqp_table_t no_headers = {0, NULL};
    const amqp_basic_properties_t *p = &m->properties;
    memset(dl, 0, sizeof(*dl));
    dl->properties_json = oq_amqp_properties_json(p);
    dl->headers_json =
        oq_amqp_table_json((p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : &no_headers);
    dl->body = m->body.bytes;
    dl->body_size = m->body.len;
    if (dl->properties_json == NULL || dl->headers_json == NULL || letter_key(m, dl) != 0) {
        oq_dead_letter_clear(dl);
        return OQ_ENOMEM;
    }
    describe_failure(p, delivery_limit, orderq_user, dl);
    identify_event(m, max_message_bytes, dl);
    oq_error_fingerprint(dl->error_class, dl->error, dl->fingerprint, sizeof(dl->fingerprint));
    return 0;
}

void oq_dead_letter_clear(struct oq_dead_letter *dl)
{
    free(dl->properties_json);
    free(dl->headers_json);
    dl->properties_json = dl->headers_json = NULL;
}

static struct oq_db_param time_or_null(const char *t)
{
    return t[0] ? OQ_STR(t) : OQ_NULL;
}

int oq_dead_letter_store(struct oq_db *db, const struct oq_dead_letter *dl, int *stored, char *err,
                         size_t errlen)
{
    static const char sql[] =
        "INSERT IGNORE INTO dead_letter (letter_key, queue, exchange_name, routing_key,"
        " event_code, event_identifier, properties, headers, body, body_size, error_class,"
        " error, fingerprint, attempts, first_failed_at, last_failed_at, dead_host, dead_pid)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(?, NOW(6)), ?, ?)";
    struct oq_db_param p[] = {
        OQ_STR(dl->letter_key),
        OQ_STR(dl->queue),
        OQ_STR(dl->exchange),
        OQ_STR(dl->routing_key),
        OQ_STR(dl->event_code),
        OQ_STR(dl->event_identifier),
        OQ_STR(dl->properties_json),
        OQ_STR(dl->headers_json),
        dl->body_held ? OQ_BLOB("", 0) : OQ_BLOB(dl->body, dl->body_size),
        OQ_INT(dl->body_size),
        OQ_STR(dl->error_class),
        OQ_STR(dl->error),
        OQ_STR(dl->fingerprint),
        OQ_INT(dl->attempts > 0 ? dl->attempts : 1),
        time_or_null(dl->first_failed_at),
        time_or_null(dl->last_failed_at),
        OQ_STR(dl->host),
        dl->pid > 0 ? OQ_INT(dl->pid) : OQ_NULL,
    };
    uint64_t affected = 0;
    if (oq_db_execute(db, sql, p, sizeof(p) / sizeof(p[0]), &affected) != 0) {
        snprintf(err, errlen, "storing a dead letter: %s", oq_db_error(db));
        return OQ_EDB;
    }
    *stored = affected > 0;
    return 0;
}

/* ---- a stored letter's properties and headers, to publish again ------------ */

int oq_header_is_orderqs(amqp_bytes_t key)
{
    static const char *const prefixes[] = {"x-orderq-", "x-death", "x-first-death-",
                                           "x-last-death-", "orderq-delay"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (key.len >= n && memcmp(key.bytes, prefixes[i], n) == 0)
            return 1;
    }
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The bytes len hex digits at s stand for, in pool. Returns 1, 0 when s
 * is not an even number of hex digits, or OQ_ENOMEM. */
static int unhex(amqp_pool_t *pool, const char *s, size_t len, amqp_bytes_t *out)
{
    if (len % 2 != 0)
        return 0;
    unsigned char *b = amqp_pool_alloc(pool, len / 2 ? len / 2 : 1);
    if (b == NULL)
        return OQ_ENOMEM;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    out->bytes = b;
    out->len = len / 2;
    return 1;
}

/* {"hex": "01ff"}, as gen_bytes wrote bytes that are not UTF-8. Returns 1,
 * 0 when v is not such an object, or OQ_ENOMEM. */
static int hex_object_bytes(amqp_pool_t *pool, yajl_val v, amqp_bytes_t *out)
{
    yajl_val hex = oq_json_member(v, "hex");
    if (!YAJL_IS_OBJECT(v) || v->u.object.len != 1 || !YAJL_IS_STRING(hex))
        return 0;
    return unhex(pool, hex->u.string, strlen(hex->u.string), out);
}

/* A key as gen_key wrote it, back to its bytes. A key with the prefix but
 * no hex after it (stored before keys were encoded) is taken as it is.
 * Returns 0 or OQ_ENOMEM. */
static int key_from_json(amqp_pool_t *pool, const char *key, amqp_bytes_t *out)
{
    size_t n = sizeof(OQ_DEAD_LETTER_HEX_KEY) - 1;
    if (strncmp(key, OQ_DEAD_LETTER_HEX_KEY, n) == 0) {
        int rc = unhex(pool, key + n, strlen(key + n), out);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    *out = amqp_cstring_bytes(key);
    return 0;
}

static int table_from_json(amqp_pool_t *pool, yajl_val obj, int depth, int spare,
                           amqp_table_t *out);

/* yajl 2.1 reads an integer's digits as positive before negating them,
 * and holds no more than an int64: -2^63 (which yajl_gen writes) and an
 * AMQP u64 or timestamp above 2^63 - 1 come back as doubles. The number's
 * text is kept: an integer is read from it again. Returns 1 when it was
 * one (out set to I64 or U64), else 0. */
static int exact_integer(yajl_val v, amqp_field_value_t *out)
{
    if (!YAJL_IS_NUMBER(v) || v->u.number.r == NULL)
        return 0;
    const char *text = v->u.number.r;
    char *end;
    errno = 0;
    long long n = strtoll(text, &end, 10);
    if (errno == 0 && end != text && *end == '\0') {
        out->kind = AMQP_FIELD_KIND_I64;
        out->value.i64 = n;
        return 1;
    }
    if (text[0] == '-')
        return 0;
    errno = 0;
    unsigned long long u = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return 0;
    out->kind = AMQP_FIELD_KIND_U64;
    out->value.u64 = u;
    return 1;
}

static int field_from_json(amqp_pool_t *pool, yajl_val v, int depth, amqp_field_value_t *out)
{
    int rc;
    memset(out, 0, sizeof(*out));
    if (YAJL_IS_STRING(v)) {
        out->kind = AMQP_FIELD_KIND_UTF8;
        out->value.bytes = amqp_cstring_bytes(v->u.string);
    } else if (YAJL_IS_INTEGER(v)) {
        out->kind = AMQP_FIELD_KIND_I64;
        out->value.i64 = YAJL_GET_INTEGER(v);
    } else if (YAJL_IS_DOUBLE(v)) {
        if (!exact_integer(v, out)) {
            out->kind = AMQP_FIELD_KIND_F64;
            out->value.f64 = YAJL_GET_DOUBLE(v);
        }
    } else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v)) {
        out->kind = AMQP_FIELD_KIND_BOOLEAN;
        out->value.boolean = YAJL_IS_TRUE(v);
    } else if ((rc = hex_object_bytes(pool, v, &out->value.bytes)) != 0) {
        out->kind = AMQP_FIELD_KIND_BYTES;
        return rc < 0 ? rc : 0;
    } else if (YAJL_IS_OBJECT(v)) {
        out->kind = AMQP_FIELD_KIND_TABLE;
        return table_from_json(pool, v, depth + 1, 0, &out->value.table);
    } else if (YAJL_IS_ARRAY(v)) {
        size_t n = v->u.array.len;
        out->kind = AMQP_FIELD_KIND_ARRAY;
        out->value.array.entries = amqp_pool_alloc(pool, (n ? n : 1) * sizeof(amqp_field_value_t));
        if (out->value.array.entries == NULL)
            return OQ_ENOMEM;
        out->value.array.num_entries = (int)n;
        for (size_t i = 0; i < n; i++) {
            rc = field_from_json(pool, v->u.array.values[i], depth + 1,
                                 &out->value.array.entries[i]);
            if (rc != 0)
                return rc;
        }
    } else {
        out->kind = AMQP_FIELD_KIND_VOID;
    }
    return 0;
}

/* depth 0: the letter's own headers, orderq's dropped, spare slots kept. */
static int table_from_json(amqp_pool_t *pool, yajl_val obj, int depth, int spare, amqp_table_t *out)
{
    size_t n = YAJL_IS_OBJECT(obj) ? obj->u.object.len : 0;
    out->num_entries = 0;
    if (depth > MAX_TABLE_DEPTH)
        return OQ_EINVAL;
    out->entries = amqp_pool_alloc(pool, (n + (size_t)spare + 1) * sizeof(amqp_table_entry_t));
    if (out->entries == NULL)
        return OQ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        amqp_bytes_t key;
        int rc = key_from_json(pool, obj->u.object.keys[i], &key);
        if (rc != 0)
            return rc;
        if (depth == 0 && oq_header_is_orderqs(key))
            continue;
        amqp_table_entry_t *e = &out->entries[out->num_entries];
        e->key = key;
        rc = field_from_json(pool, obj->u.object.values[i], depth, &e->value);
        if (rc != 0)
            return rc;
        out->num_entries++;
    }
    return 0;
}

static const struct {
    const char *name;
    amqp_flags_t flag;
    size_t offset;
} text_props[] = {
    {"content_type", AMQP_BASIC_CONTENT_TYPE_FLAG, offsetof(amqp_basic_properties_t, content_type)},
    {"content_encoding", AMQP_BASIC_CONTENT_ENCODING_FLAG,
     offsetof(amqp_basic_properties_t, content_encoding)},
    {"correlation_id", AMQP_BASIC_CORRELATION_ID_FLAG,
     offsetof(amqp_basic_properties_t, correlation_id)},
    {"reply_to", AMQP_BASIC_REPLY_TO_FLAG, offsetof(amqp_basic_properties_t, reply_to)},
    {"expiration", AMQP_BASIC_EXPIRATION_FLAG, offsetof(amqp_basic_properties_t, expiration)},
    {"message_id", AMQP_BASIC_MESSAGE_ID_FLAG, offsetof(amqp_basic_properties_t, message_id)},
    {"type", AMQP_BASIC_TYPE_FLAG, offsetof(amqp_basic_properties_t, type)},
    {"user_id", AMQP_BASIC_USER_ID_FLAG, offsetof(amqp_basic_properties_t, user_id)},
    {"app_id", AMQP_BASIC_APP_ID_FLAG, offsetof(amqp_basic_properties_t, app_id)},
    {"cluster_id", AMQP_BASIC_CLUSTER_ID_FLAG, offsetof(amqp_basic_properties_t, cluster_id)},
};

/* An octet property (delivery_mode, priority) when the JSON holds one. */
static int octet_prop(yajl_val props, const char *name, uint8_t *out)
{
    yajl_val v = oq_json_member(props, name);
    if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < 0 || YAJL_GET_INTEGER(v) > 255)
        return 0;
    *out = (uint8_t)YAJL_GET_INTEGER(v);
    return 1;
}

int oq_dead_letter_properties(yajl_val properties, yajl_val headers, const char *amqp_user,
                              int spare, amqp_pool_t *pool, amqp_basic_properties_t *p)
{
    memset(p, 0, sizeof(*p));
    for (size_t i = 0; i < sizeof(text_props) / sizeof(text_props[0]); i++) {
        yajl_val v = oq_json_member(properties, text_props[i].name);
        amqp_bytes_t b;
        if (YAJL_IS_STRING(v)) {
            b = amqp_cstring_bytes(v->u.string);
        } else {
            int rc = hex_object_bytes(pool, v, &b); /* bytes that are not UTF-8 */
            if (rc < 0)
                return rc;
            if (rc == 0)
                continue;
        }
        if (text_props[i].flag == AMQP_BASIC_USER_ID_FLAG)
            continue; /* set below: orderq's own */
        p->_flags |= text_props[i].flag;
        *(amqp_bytes_t *)(void *)((char *)p + text_props[i].offset) = b;
    }
    if (octet_prop(properties, "delivery_mode", &p->delivery_mode))
        p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    if (octet_prop(properties, "priority", &p->priority))
        p->_flags |= AMQP_BASIC_PRIORITY_FLAG;
    yajl_val ts = oq_json_member(properties, "timestamp");
    if (YAJL_IS_INTEGER(ts) && YAJL_GET_INTEGER(ts) >= 0) {
        p->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p->timestamp = (uint64_t)YAJL_GET_INTEGER(ts);
    }
    if (amqp_user != NULL) {
        p->_flags |= AMQP_BASIC_USER_ID_FLAG;
        p->user_id = amqp_cstring_bytes(amqp_user);
    }
    p->_flags |= AMQP_BASIC_HEADERS_FLAG;
    return table_from_json(pool, headers, 0, spare, &p->headers);
}

/* ---- the archiver thread ------------------------------------------------------ */

char *oq_dead_letter_held_queue(const struct oq_config *cfg)
{
    size_t n = strlen(cfg->dead_queue) + sizeof(OQ_DEAD_LETTER_HELD_SUFFIX);
    char *q = malloc(n);
    if (q != NULL)
        snprintf(q, n, "%s%s", cfg->dead_queue, OQ_DEAD_LETTER_HELD_SUFFIX);
    return q;
}

struct oq_archiver {
    const struct oq_config *cfg;
    char *own_user; /* orderq's broker user: whose x-orderq-* headers count */
    pthread_t thread;
    volatile sig_atomic_t stop;
    struct oq_db *db;
    int db_failures;
    unsigned db_tries;        /* oq_db_reopen counts the reconnects */
    long long max_packet;     /* the server's max_allowed_packet */
    int64_t held;             /* letters left unacked in this connection */
    char *held_queue;         /* where bodies too big for a row go */
    struct oq_broker *held_b; /* publishes there, with confirms; opened on need */
    struct oq_publisher *held_pub;
    struct oq_topology *topology;  /* to declare the held queue again; NULL: cannot */
    int held_acked, held_returned; /* the confirm of the one in flight */
    int dead_letters; /* this connection: the dead queue dead-letters into the held queue */
};

/* One try to connect to MySQL. Returns 0 or OQ_EDB (err says why). */
static int archiver_db_open(struct oq_archiver *a, char *err, size_t errlen)
{
    if (oq_db_reopen(a->cfg->mysql_url, a->cfg->connect_timeout_ms, &a->db_tries, &a->db, err,
                     errlen) != 0)
        return OQ_EDB;
    int is_null = 0;
    if (oq_db_query_int(a->db, "SELECT @@max_allowed_packet", NULL, 0, &a->max_packet, &is_null) !=
        0)
        a->max_packet = 16 << 20;
    a->db_failures = 0;
    return 0;
}

/* Connect to MySQL, waiting with backoff until it answers or we stop. */
static int archiver_db(struct oq_archiver *a)
{
    char err[OQ_ERRLEN];
    while (a->db == NULL && !a->stop) {
        if (archiver_db_open(a, err, sizeof(err)) == 0)
            break;
        int64_t wait = oq_backoff_ms(++a->db_failures);
        oq_error("archiving dead letters: %s; retrying in %lld ms", err, (long long)wait);
        oq_nap(wait, &a->stop);
    }
    return a->db != NULL ? 0 : OQ_EINTR;
}

static void hold(struct oq_archiver *a, const struct oq_dead_letter *dl, const char *why)
{
    a->held++;
    oq_metric_add(OQ_M_ARCHIVE_HELD, 1);
    oq_log(OQ_LOG_ERROR,
           (&(struct oq_log_fields){.queue = a->cfg->dead_queue,
                                    .event_identifier = dl->event_identifier}),
           "a dead letter stays in the queue, not archived: %s (event %s, error: %s)", why,
           dl->event_code[0] ? dl->event_code : "?", dl->error);
}

/* Store dl. An idle connection the server closed gets one new one at
 * once; a->db is NULL after when MySQL cannot be reached. 0 or OQ_EDB. */
static int store(struct oq_archiver *a, const struct oq_dead_letter *dl, int *stored, char *why,
                 size_t whylen)
{
    for (int tries = 0;; tries++) {
        if (oq_dead_letter_store(a->db, dl, stored, why, whylen) == 0)
            return 0;
        if (oq_db_last_class(a->db) != OQ_DB_GONE)
            return OQ_EDB;
        oq_db_close(a->db);
        a->db = NULL;
        if (tries > 0 || archiver_db_open(a, why, whylen) != 0)
            return OQ_EDB;
    }
}

/* ---- bodies too big for a row: kept in the held queue ---------------------- */

static void held_settled(void *ctx, uint64_t seq, enum oq_confirm outcome)
{
    struct oq_archiver *a = ctx;
    (void)seq;
    a->held_acked = outcome == OQ_CONFIRM_ACK;
}

static void held_returned(void *ctx, const amqp_basic_return_t *why, const amqp_message_t *m)
{
    struct oq_archiver *a = ctx;
    (void)why;
    (void)m;
    a->held_returned = 1;
}

/* failed: the held connection broke (its node is blamed), else it is
 * closed for a reason of our own; stopping: politely (it is idle then,
 * each publish is waited for). */
static void held_disconnect(struct oq_archiver *a, int failed, int stopping)
{
    oq_publisher_free(a->held_pub);
    a->held_pub = NULL;
    if (stopping)
        oq_broker_close_stopping(a->held_b);
    else
        oq_broker_drop(a->held_b, failed);
    a->held_b = NULL;
}

/* A connection of its own: the archive connection's frames are read by
 * its consume loop, and a confirm must not wait behind deliveries. */
static int held_connect(struct oq_archiver *a, char *why, size_t whylen)
{
    struct oq_publisher_callbacks cb = {held_settled, held_returned, a};
    if (a->held_pub != NULL)
        return 0;
    if (oq_publisher_connect(a->cfg, "archive-held", ARCHIVE_CHANNEL, 1, 1, &cb, &a->held_b,
                             &a->held_pub, why, whylen) != 0)
        return OQ_EBROKER;
    amqp_channel_open(oq_broker_conn(a->held_b), DECLARE_CHANNEL);
    if (oq_broker_check(a->held_b, DECLARE_CHANNEL, "channel.open") != 0) {
        snprintf(why, whylen, "opening the declare channel: %s", oq_broker_error(a->held_b));
        held_disconnect(a, 1, 0);
        return OQ_EBROKER;
    }
    return 0;
}

/* The held queue is gone (deleted by hand, or the archiver ran before
 * the consumer declared the topology): declare it as the plan says.
 * 0 when it is there now. */
static int held_redeclare(struct oq_archiver *a)
{
    char why[OQ_ERRLEN] = "";
    if (a->topology == NULL)
        return OQ_ENOTFOUND;
    int rc = oq_topology_declare_queue(a->held_b, DECLARE_CHANNEL, a->topology, a->held_queue, why,
                                       sizeof(why));
    if (rc != 0)
        oq_log(OQ_LOG_WARN, (&(struct oq_log_fields){.queue = a->held_queue}),
               "declaring %s again: %s", a->held_queue, why);
    return rc;
}

/* m as it is kept in the held queue: its properties, less a user_id that
 * is not orderq's (RabbitMQ refuses to take another's, and an absent one
 * keeps forged headers unbelieved), and x-orderq-letter-key added, the
 * dead_letter row's key. Entries are malloc'd into *entries. */
static int held_properties(const struct oq_archiver *a, const amqp_message_t *m,
                           const struct oq_dead_letter *dl, amqp_basic_properties_t *p,
                           amqp_table_entry_t **entries)
{
    *p = m->properties;
    const amqp_table_t *h = (p->_flags & AMQP_BASIC_HEADERS_FLAG) ? &p->headers : NULL;
    int n = h != NULL ? h->num_entries : 0;
    *entries = malloc(((size_t)n + 1) * sizeof(amqp_table_entry_t));
    if (*entries == NULL)
        return OQ_ENOMEM;
    for (int i = 0; i < n; i++)
        (*entries)[i] = h->entries[i];
    (*entries)[n] = oq_amqp_entry_text("x-orderq-letter-key", amqp_cstring_bytes(dl->letter_key));
    p->headers = (amqp_table_t){n + 1, *entries};
    p->_flags |= AMQP_BASIC_HEADERS_FLAG;
    if (!oq_trust_published_by(p, a->own_user))
        p->_flags &= ~(amqp_flags_t)AMQP_BASIC_USER_ID_FLAG;
    return 0;
}

/* One try of publish_held. OQ_EBROKER: the connection failed (and is
 * closed); OQ_ENOTFOUND: no such queue; OQ_EINVAL: the broker said no. */
static int publish_held_once(struct oq_archiver *a, const amqp_message_t *m,
                             const struct oq_dead_letter *dl, char *why, size_t whylen)
{
    amqp_basic_properties_t p;
    amqp_table_entry_t *entries = NULL;
    int rc = held_connect(a, why, whylen);
    if (rc != 0)
        return rc;
    if (held_properties(a, m, dl, &p, &entries) != 0) {
        snprintf(why, whylen, "out of memory");
        return OQ_ENOMEM;
    }
    a->held_acked = a->held_returned = 0;
    rc = oq_publish(a->held_pub, "", a->held_queue, 1, &p, m->body.bytes, m->body.len, NULL);
    if (rc == 0)
        rc = oq_publisher_wait(a->held_pub, HELD_CONFIRM_MS);
    free(entries);
    if (rc != 0) {
        snprintf(why, whylen, "publishing it to %s: %s", a->held_queue,
                 rc == OQ_ETIMEOUT ? "no confirm in 30 s" : oq_broker_error(a->held_b));
        held_disconnect(a, 1, 0);
        return OQ_EBROKER;
    }
    if (a->held_returned || !a->held_acked) {
        snprintf(why, whylen, "%s did not take it (%s)", a->held_queue,
                 a->held_returned ? "it does not exist: run `orderq topology declare`"
                                  : "the broker refused it");
        return a->held_returned ? OQ_ENOTFOUND : OQ_EINVAL;
    }
    return 0;
}

/* Publish m to the held queue and wait for the broker's confirm; a
 * connection found broken (it idles between big letters) gets one new
 * one at once, a missing queue is declared again. Returns 0, or < 0 with why filled in (the letter
 * stays unacked where it is). */
static int publish_held(struct oq_archiver *a, const amqp_message_t *m,
                        const struct oq_dead_letter *dl, char *why, size_t whylen)
{
    int rc = publish_held_once(a, m, dl, why, whylen);
    if (rc == OQ_EBROKER || (rc == OQ_ENOTFOUND && held_redeclare(a) == 0))
        rc = publish_held_once(a, m, dl, why, whylen);
    return rc;
}

/* Heartbeats for the held connection, which only publishes now and then. */
static void held_keepalive(struct oq_archiver *a)
{
    char why[OQ_ERRLEN];
    if (a->held_pub != NULL && oq_publisher_keepalive(a->held_pub, why, sizeof(why)) != 0)
        held_disconnect(a, 1, 0); /* opened again by the next held letter */
}

/* The most body bytes a row holds: OQ_DEAD_LETTER_MAX_BODY, and MySQL's
 * max_allowed_packet less room for the other columns and the protocol. */
static size_t archive_cap(const struct oq_archiver *a)
{
    long long room = a->max_packet - 65536;
    if (room < 0)
        return 0;
    return (unsigned long long)room < OQ_DEAD_LETTER_MAX_BODY ? (size_t)room
                                                              : OQ_DEAD_LETTER_MAX_BODY;
}

/* The row says where the body is; the note goes last but always fits. */
static void note_held(const struct oq_archiver *a, struct oq_dead_letter *dl, size_t cap)
{
    char note[512], base[sizeof(dl->error)];
    int n = snprintf(note, sizeof(note),
                     "%sbody of %zu bytes kept in queue %s, not here (a row holds at most %zu: "
                     "OQ_DEAD_LETTER_MAX_BODY %u and MySQL's max_allowed_packet %lld)",
                     dl->error[0] ? "; " : "", dl->body_size, a->held_queue, cap,
                     OQ_DEAD_LETTER_MAX_BODY, a->max_packet);
    size_t nlen = n < 0 ? 0 : (size_t)n < sizeof(note) ? (size_t)n : sizeof(note) - 1;
    text_column(dl->error, strlen(dl->error), base, sizeof(dl->error) - nlen);
    size_t blen = strlen(base);
    memcpy(dl->error, base, blen);
    memcpy(dl->error + blen, note, nlen + 1);
    dl->body_held = 1;
}

/* Store one letter. 1: stored (ack it), 0: held (leave it), OQ_EDB:
 * MySQL is gone (leave it, and every letter, in the queue till it is back).
 * A body too big for a row goes to the held queue, its row saying so:
 * left unacked here, 64 of them would stop the archive (prefetch). The
 * row first: a letter in the held queue always has one. */
static int archive(struct oq_archiver *a, const amqp_message_t *m)
{
    struct oq_dead_letter dl;
    char why[OQ_ERRLEN];
    int stored = 0, rc = 0;
    if (oq_dead_letter_from_message(m, a->cfg->delivery_limit, a->cfg->max_message_bytes,
                                    a->own_user, &dl) != 0) {
        oq_error("archiving a dead letter: out of memory");
        return 0;
    }
    size_t cap = archive_cap(a);
    if (dl.body_size > cap)
        note_held(a, &dl, cap);
    if (store(a, &dl, &stored, why, sizeof(why)) == 0) {
        if (dl.body_held && publish_held(a, m, &dl, why, sizeof(why)) != 0) {
            hold(a, &dl, why); /* it comes back on the next connection */
            goto out;
        }
        if (dl.body_held)
            oq_log(OQ_LOG_WARN,
                   (&(struct oq_log_fields){.queue = a->held_queue,
                                            .event_identifier = dl.event_identifier}),
                   "a dead letter's body of %zu bytes is too big for a row: the letter is kept in "
                   "%s, its row (letter_key %s) says so",
                   dl.body_size, a->held_queue, dl.letter_key);
        rc = 1;
        oq_metric_add(OQ_M_ARCHIVED, stored);
    } else if (a->db != NULL && oq_db_last_class(a->db) == OQ_DB_OTHER) {
        hold(a, &dl, why); /* MySQL refuses this row: say so, go on with the others */
    } else {
        oq_warn("archiving dead letters: %s; they wait in %s until MySQL is back", why,
                a->cfg->dead_queue);
        oq_db_close(a->db);
        a->db = NULL;
        rc = OQ_EDB;
    }
out:
    oq_dead_letter_clear(&dl);
    return rc;
}

/* Why an archive connection ended. */
enum archive_end {
    ARCHIVE_STOPPED,    /* asked to stop */
    ARCHIVE_LOST,       /* the connection broke, or the broker ended it */
    ARCHIVE_DB_GONE,    /* MySQL is gone: every unacked letter goes back */
    ARCHIVE_UNREADABLE, /* a letter it cannot read: see unreadable_letter */
};

/* A unique key for the row of a letter that cannot be read: the letter
 * itself cannot be hashed (its properties are what cannot be decoded, and
 * the connection cannot read its body). Archived again after a crash
 * between the row and the reject, it is a second row. */
static void unreadable_key(struct oq_dead_letter *dl)
{
    for (int i = 0; i < 4; i++)
        snprintf(dl->letter_key + 16 * i, 17, "%016" PRIx64, oq_random_u64());
}

/* The row of a letter the archiver cannot read: what its delivery says. */
static int unreadable_row(struct oq_archiver *a, uint64_t tag, int redelivered,
                          const char *exchange, const char *key, const char *why,
                          struct oq_dead_letter *dl)
{
    memset(dl, 0, sizeof(*dl));
    unreadable_key(dl);
    snprintf(dl->exchange, sizeof(dl->exchange), "%s", exchange);
    snprintf(dl->routing_key, sizeof(dl->routing_key), "%s", key);
    snprintf(dl->error_class, sizeof(dl->error_class), "unreadable");
    snprintf(dl->error, sizeof(dl->error),
             "properties cannot be decoded (librabbitmq: %s; e.g. a header named \"\"); the "
             "letter is whole in queue %s, not here: read it there with another client "
             "(delivery %llu of %s%s, exchange \"%s\", routing key \"%s\")",
             why, a->held_queue, (unsigned long long)tag, a->cfg->dead_queue,
             redelivered ? ", redelivered" : "", exchange, key);
    oq_error_fingerprint(dl->error_class, dl->error, dl->fingerprint, sizeof(dl->fingerprint));
    dl->properties_json = strdup("{}");
    dl->headers_json = strdup("{}");
    dl->body_held = 1;
    dl->attempts = 1;
    return dl->properties_json != NULL && dl->headers_json != NULL ? 0 : OQ_ENOMEM;
}

/* A letter whose properties librabbitmq cannot decode: this connection
 * cannot read past it, and it comes back at the head of the queue on every
 * reconnect. When the dead queue dead-letters into the held queue, its row
 * is stored (what the delivery says) and it is rejected there, whole;
 * else it stays, and the reconnects back off until a person removes it.
 * Either way the connection is closed with oq_broker_close_unreadable. */
static enum archive_end unreadable_letter(struct oq_archiver *a, struct oq_broker *b,
                                          const amqp_basic_deliver_t *m, amqp_rpc_reply_t r,
                                          int64_t *moved)
{
    struct oq_dead_letter dl;
    char why[OQ_ERRLEN], exchange[256], key[256];
    int stored = 0;
    if (!oq_broker_unreadable(r)) {
        oq_warn("archiving dead letters: the broker connection ended (%s); reconnecting",
                r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                    ? amqp_error_string2(r.library_error)
                    : "closed by the broker");
        return ARCHIVE_LOST;
    }
    snprintf(exchange, sizeof(exchange), "%.*s", (int)m->exchange.len,
             (const char *)m->exchange.bytes);
    snprintf(key, sizeof(key), "%.*s", (int)m->routing_key.len, (const char *)m->routing_key.bytes);
    if (!a->dead_letters) {
        oq_error("archiving dead letters: a letter at the head of %s has properties librabbitmq "
                 "cannot decode (%s) and holds up the archive until a person removes it: %s does "
                 "not dead-letter into %s (an older orderq declared it, or the latter is "
                 "missing: run `orderq topology declare`; docs/dlq.md, \"Letters orderq cannot "
                 "read\")",
                 a->cfg->dead_queue, amqp_error_string2(r.library_error), a->cfg->dead_queue,
                 a->held_queue);
        return ARCHIVE_UNREADABLE;
    }
    int rc = unreadable_row(a, m->delivery_tag, m->redelivered, exchange, key,
                            amqp_error_string2(r.library_error), &dl);
    if (rc == 0)
        rc = store(a, &dl, &stored, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "out of memory");
    if (rc != 0) {
        hold(a, &dl, why); /* left where it is, unrejected */
        oq_dead_letter_clear(&dl);
        return a->db == NULL ? ARCHIVE_DB_GONE : ARCHIVE_UNREADABLE;
    }
    (void)amqp_basic_reject(oq_broker_conn(b), ARCHIVE_CHANNEL, m->delivery_tag, 0);
    oq_metric_add(OQ_M_ARCHIVED, 1);
    (*moved)++;
    oq_log(OQ_LOG_WARN, (&(struct oq_log_fields){.queue = a->cfg->dead_queue}),
           "a dead letter's properties cannot be decoded (%s): it is rejected into %s, whole, "
           "and its row (letter_key %s, error class unreadable) says so",
           amqp_error_string2(r.library_error), a->held_queue, dl.letter_key);
    oq_dead_letter_clear(&dl);
    return ARCHIVE_UNREADABLE;
}

/* Consume the dead-letter queue until stopped or the connection ends;
 * *archived counts the letters settled. Frame by frame, not with
 * amqp_consume_message, which frees the delivery's exchange and routing
 * key when it cannot read the content: unreadable_letter needs them. */
static enum archive_end archive_connection(struct oq_archiver *a, struct oq_broker *b,
                                           int64_t *archived)
{
    amqp_connection_state_t conn = oq_broker_conn(b);
    /* Before basic.qos: a refusal closes the channel, opened again without it. */
    a->dead_letters = oq_topology_dead_letters_on_broker(b, ARCHIVE_CHANNEL, a->topology,
                                                         a->cfg->dead_queue) == 1;
    amqp_basic_qos(conn, ARCHIVE_CHANNEL, 0, ARCHIVE_PREFETCH, 0);
    if (oq_broker_check(b, ARCHIVE_CHANNEL, "basic.qos") != 0)
        return ARCHIVE_LOST;
    amqp_basic_consume(conn, ARCHIVE_CHANNEL, amqp_cstring_bytes(a->cfg->dead_queue),
                       amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    int rc = oq_broker_check(b, ARCHIVE_CHANNEL, "basic.consume");
    if (rc != 0) {
        oq_error("archiving dead letters: cannot consume %s: %s", a->cfg->dead_queue,
                 rc == OQ_ENOTFOUND ? "it does not exist (run `orderq topology declare`)"
                                    : oq_broker_error(b));
        return ARCHIVE_LOST;
    }
    while (!a->stop) {
        struct timeval tv = oq_ms_to_timeval(200);
        amqp_frame_t frame;
        amqp_maybe_release_buffers(conn);
        int status = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
        if (status == AMQP_STATUS_TIMEOUT) {
            held_keepalive(a);
            continue;
        }
        if (status != AMQP_STATUS_OK) {
            oq_warn("archiving dead letters: the broker connection ended (%s); reconnecting",
                    amqp_error_string2(status));
            return ARCHIVE_LOST;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD ||
            frame.payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD ||
            frame.payload.method.id == AMQP_CONNECTION_UNBLOCKED_METHOD)
            continue; /* an alarm blocks publishers; this one only consumes */
        if (frame.payload.method.id != AMQP_BASIC_DELIVER_METHOD) {
            /* Nothing but deliveries comes on this connection: a cancel or
             * a close ends it, and we reconnect. */
            oq_warn("archiving dead letters: the broker connection ended (method 0x%08x: a "
                    "cancel or a close); reconnecting",
                    (unsigned)frame.payload.method.id);
            return ARCHIVE_LOST;
        }
        const amqp_basic_deliver_t *m = frame.payload.method.decoded;
        amqp_message_t msg;
        amqp_rpc_reply_t r = amqp_read_message(conn, ARCHIVE_CHANNEL, &msg, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL)
            return unreadable_letter(a, b, m, r, archived);
        uint64_t tag = m->delivery_tag;
        int stored = archive(a, &msg);
        amqp_destroy_message(&msg);
        held_keepalive(a);
        if (stored < 0)
            return ARCHIVE_DB_GONE; /* give every unacked letter back */
        if (stored == 1 && amqp_basic_ack(conn, ARCHIVE_CHANNEL, tag, 0) != 0)
            return ARCHIVE_LOST;
        *archived += stored == 1;
    }
    return ARCHIVE_STOPPED;
}

/* Close the archive connection as its end asks: one that broke blames its
 * node; one stopped at a letter it cannot read makes sure its reject (or
 * nothing) reached the broker; one asked to stop closes politely. Unacked
 * letters go back to the queue. */
static void archive_disconnect(struct oq_archiver *a, struct oq_broker *b, enum archive_end end)
{
    if (end == ARCHIVE_UNREADABLE)
        (void)oq_broker_close_unreadable(b, a->cfg->connect_timeout_ms, &a->stop);
    else if (end == ARCHIVE_STOPPED)
        oq_broker_close_stopping(b);
    else
        oq_broker_drop(b, end == ARCHIVE_LOST);
    held_disconnect(a, 0, end == ARCHIVE_STOPPED);
    oq_metric_add(OQ_M_ARCHIVE_HELD, -a->held);
    a->held = 0;
}

static void *archiver_main(void *arg)
{
    struct oq_archiver *a = arg;
    struct oq_reconnect_backoff backoff = {0};
    /* MySQL first: without it a letter cannot be stored, and one held
     * unacked meanwhile would keep the broker connection waiting. */
    while (!a->stop && archiver_db(a) == 0) {
        struct oq_broker *b = NULL;
        char why[OQ_ERRLEN * 2];
        int64_t archived = 0;
        oq_reconnect_connected(&backoff, oq_now_ms());
        if (oq_broker_connect(a->cfg, "archive", &b, why, sizeof(why)) == 0) {
            oq_log(OQ_LOG_INFO, (&(struct oq_log_fields){.queue = a->cfg->dead_queue}),
                   "archiving dead letters into dead_letter");
            archive_disconnect(a, b, archive_connection(a, b, &archived));
        } else {
            oq_error("archiving dead letters: %s", why);
        }
        if (archived > 0)
            oq_reconnect_settled(&backoff);
        /* Backed off also when MySQL refused the letter: a read_only server
         * takes the next connection at once, and the letter would come
         * straight back. */
        if (!a->stop) {
            char attempt[160];
            int64_t wait = oq_reconnect_failed(&backoff, oq_now_ms(), "archived a letter", attempt,
                                               sizeof(attempt));
            if (backoff.failures > 1)
                oq_warn("archiving dead letters: reconnecting in %lld ms (%s)", (long long)wait,
                        attempt);
            oq_nap(wait, &a->stop);
        }
    }
    oq_db_close(a->db);
    return NULL;
}

int oq_archiver_start(const struct oq_config *cfg, struct oq_archiver **out)
{
    struct oq_archiver *a = calloc(1, sizeof(*a));
    *out = NULL;
    if (a == NULL)
        return OQ_ENOMEM;
    a->cfg = cfg;
    a->max_packet = 16 << 20;
    int rc = oq_trust_own_user(cfg, &a->own_user);
    if (rc != 0) {
        free(a);
        return rc;
    }
    a->held_queue = oq_dead_letter_held_queue(cfg);
    char err[OQ_ERRLEN];
    if (oq_topology_plan(cfg, &a->topology, err, sizeof(err)) != 0)
        a->topology = NULL; /* the consumer says why; the queue is only not declared again */
    if (a->held_queue == NULL || pthread_create(&a->thread, NULL, archiver_main, a) != 0) {
        oq_topology_free(a->topology);
        free(a->held_queue);
        free(a->own_user);
        free(a);
        return OQ_ENOMEM;
    }
    *out = a;
    return 0;
}

void oq_archiver_stop(struct oq_archiver *a)
{
    if (a == NULL)
        return;
    a->stop = 1;
    pthread_join(a->thread, NULL);
    oq_topology_free(a->topology);
    free(a->held_queue);
    free(a->own_user);
    free(a);
}

int oq_dead_letter_classes(struct oq_db *db,
                           int (*on_row)(void *ctx, const char *const *values, unsigned n),
                           void *ctx)
{
    return oq_db_query_rows(
        db,
        "SELECT error_class, COUNT(*) FROM dead_letter WHERE replayed_at IS NULL"
        " GROUP BY error_class ORDER BY COUNT(*) DESC, error_class",
        NULL, 0, on_row, ctx);
}
