/* fuzz_event.c - the envelope decoder, the intake formats and the UTF-8 check
 *
 * The UTF-8 check is compared with a second, table-driven reading of
 * RFC 3629 (section 4's byte ranges); the decoder must never hand a
 * handler a string that check refuses, nor a field past its cap. The same
 * bytes also go through two intake rules (a Magento order, a template over
 * nested fields), which must hold to the same. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "orderq/event.h"
#include "orderq/intake.h"

/* RFC 3629 section 4, written out range by range; NUL refused as orderq does. */
static size_t ref_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
        if (c == 0)
            return i;
        if (c <= 0x7f) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 2;
        else if (c == 0xe0)
            n = 3, lo = 0xa0;
        else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
            n = 3;
        else if (c == 0xed)
            n = 3, hi = 0x9f;
        else if (c == 0xf0)
            n = 4, lo = 0x90;
        else if (c >= 0xf1 && c <= 0xf3)
            n = 4;
        else if (c == 0xf4)
            n = 4, hi = 0x8f;
        else
            return i;
        if (len - i < n || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k < n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return i;
        i += n;
    }
    return len;
}

/* Every string and key in v is strict UTF-8. */
static void check_tree(yajl_val v, int depth)
{
    FUZZ_CHECK(depth <= OQ_EVENT_MAX_DEPTH + 1, "tree deeper than %d", OQ_EVENT_MAX_DEPTH);
    if (YAJL_IS_STRING(v)) {
        FUZZ_CHECK(oq_utf8_valid(v->u.string, strlen(v->u.string)), "string not UTF-8");
    } else if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            FUZZ_CHECK(oq_utf8_valid(k, strlen(k)), "key not UTF-8");
            check_tree(v->u.object.values[i], depth + 1);
        }
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            check_tree(v->u.array.values[i], depth + 1);
    }
}

/* The bytes as a shop's own format, by each rule of a fixed mapping. */
static void through_intake(const uint8_t *data, size_t size, const char *message_id)
{
    static struct oq_intake *in;
    char err[512] = "";
    if (in == NULL &&
        oq_intake_parse("{\"order.processing\": {\"format\": \"magento\", \"codes\": [\"s.o\"]},"
                        " \"probe\": {\"code\": \"type\", \"data\": \"body\","
                        " \"identifier\": \"{a.b}-{c}\"}}",
                        &in, err, sizeof(err)) != 0)
        abort();
    const struct oq_intake_message m = {"s.o", "probe", message_id};
    for (size_t i = 0; i < in->n; i++) {
        struct oq_event ev;
        int rc = oq_intake_decode(&in->rules[i], data, size, &m, &ev, err, sizeof(err));
        if (rc != 0) {
            FUZZ_CHECK(err[0] != '\0' && oq_utf8_valid(err, strlen(err)), "intake: no reason");
            FUZZ_CHECK(ev.root == NULL && ev.code == NULL, "intake: a refusal left fields");
            continue;
        }
        size_t id = strlen(ev.identifier);
        FUZZ_CHECK(id >= 1 && id <= OQ_EVENT_ID_MAX && oq_utf8_valid(ev.identifier, id),
                   "intake: identifier of %zu bytes or not UTF-8", id);
        FUZZ_CHECK(YAJL_IS_OBJECT(ev.data), "intake: event_data is not an object");
        FUZZ_CHECK(ev.canonical_code == in->rules[i].event_code, "intake: another event");
        check_tree(ev.data, 0);
        oq_event_clear(&ev);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t ref = ref_prefix(data, size), got = oq_utf8_prefix((const char *)data, size);
    FUZZ_CHECK(got == ref, "oq_utf8_prefix says %zu, RFC 3629 says %zu", got, ref);
    FUZZ_CHECK(oq_utf8_valid((const char *)data, size) == (ref == size), "oq_utf8_valid disagrees");

    /* The last byte, when it is below 0x20, picks a message_id: none, or
     * the input's first bytes (which may be bad UTF-8 themselves). */
    char mid[64] = "", err[512] = "";
    const char *message_id = NULL;
    if (size > 0 && data[size - 1] < 0x20) {
        size_t n = data[size - 1] < sizeof(mid) ? data[size - 1] : sizeof(mid) - 1;
        n = n < size ? n : size;
        memcpy(mid, data, n);
        mid[n] = '\0';
        message_id = mid;
    }
    through_intake(data, size, message_id);
    struct oq_event ev;
    int rc = oq_event_decode(data, size, message_id, &ev, err, sizeof(err));
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0', "refused without a reason");
        FUZZ_CHECK(oq_utf8_valid(err, strlen(err)),
                   "the reason is not UTF-8: it is logged as JSON");
        FUZZ_CHECK(ev.root == NULL && ev.code == NULL, "a refused event is not left empty");
        oq_event_clear(&ev);
        return 0;
    }
    FUZZ_CHECK(ev.code != NULL && ev.identifier != NULL && ev.canonical_code != NULL, "field lost");
    size_t code = strlen(ev.code), id = strlen(ev.identifier);
    FUZZ_CHECK(code >= 1 && code <= OQ_EVENT_CODE_MAX, "event_code of %zu bytes", code);
    FUZZ_CHECK(id >= 1 && id <= OQ_EVENT_ID_MAX, "event_identifier of %zu bytes", id);
    FUZZ_CHECK(oq_utf8_valid(ev.identifier, id) && oq_utf8_valid(ev.code, code),
               "a key field is not UTF-8");
    FUZZ_CHECK(YAJL_IS_OBJECT(ev.data), "event_data is not an object");
    FUZZ_CHECK(memchr(data, 0, size) == NULL, "a body holding NUL was accepted");
    check_tree(ev.root, 0);
    oq_event_clear(&ev);
    return 0;
}
