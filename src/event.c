/* event.c - the event envelope: decode and validate one message body */
#include "orderq/event.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_parse.h>

#include "orderq/json.h"

const struct oq_event_route oq_event_routes[] = {
    {"order.processing", {"add_order_to_queue", NULL}},
    {"coupon.email", {"send_coupon_code_by_email", NULL}},
    {"invoice.created", {NULL}},
    {"invoice.updated", {NULL}},
    {"probe", {NULL}}, /* orderq's own drill event (handler_probe.c) */
};
const size_t oq_event_route_count = sizeof(oq_event_routes) / sizeof(oq_event_routes[0]);

const char *oq_event_canonical_code(const char *code)
{
    for (size_t i = 0; i < oq_event_route_count; i++) {
        const struct oq_event_route *r = &oq_event_routes[i];
        if (strcmp(code, r->event_code) == 0)
            return r->event_code;
        for (size_t a = 0; r->aliases[a] != NULL; a++)
            if (strcmp(code, r->aliases[a]) == 0)
                return r->event_code;
    }
    return code;
}

size_t oq_utf8_prefix(const char *s, size_t len)
{
    const unsigned char *start = (const unsigned char *)s, *p = start, *end = p + len;
    while (p < end) {
        const unsigned char *at = p;
        unsigned c = *p++;
        size_t more;
        unsigned min;
        if (c == 0)
            return (size_t)(at - start);
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
            min = 0x80;
            c &= 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            min = 0x800;
            c &= 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return (size_t)(at - start); /* C0, C1 (overlong), a continuation, F5..FF */
        }
        if ((size_t)(end - p) < more)
            return (size_t)(at - start);
        for (size_t i = 0; i < more; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return (size_t)(at - start);
            c = (c << 6) | (*p & 0x3fu);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return (size_t)(at - start);
    }
    return len;
}

int oq_utf8_valid(const char *s, size_t len)
{
    return oq_utf8_prefix(s, len) == len;
}

/* First pass: the shape yajl_tree cannot check for us (depth before it
 * recurses, NUL inside strings, which its C strings would silently cut). */
struct shape {
    int depth;
    int max_depth_hit;
    int nul_in_string;
    int top_not_object;
    int started;
};

static int shape_value(struct shape *s)
{
    if (!s->started) {
        s->started = 1;
        s->top_not_object = 1;
        return 0;
    }
    return 1;
}

static int sh_null(void *ctx)
{
    return shape_value(ctx);
}

static int sh_bool(void *ctx, int b)
{
    (void)b;
    return shape_value(ctx);
}

static int sh_number(void *ctx, const char *n, size_t len)
{
    (void)n;
    (void)len;
    return shape_value(ctx);
}

static int sh_string(void *ctx, const unsigned char *str, size_t len)
{
    struct shape *s = ctx;
    if (memchr(str, '\0', len) != NULL) {
        s->nul_in_string = 1;
        return 0;
    }
    return shape_value(s);
}

static int sh_key(void *ctx, const unsigned char *str, size_t len)
{
    struct shape *s = ctx;
    if (memchr(str, '\0', len) != NULL) {
        s->nul_in_string = 1;
        return 0;
    }
    return 1;
}

static int sh_open(struct shape *s, int is_object)
{
    if (!s->started) {
        s->started = 1;
        if (!is_object) {
            s->top_not_object = 1;
            return 0;
        }
    }
    if (++s->depth > OQ_EVENT_MAX_DEPTH) {
        s->max_depth_hit = 1;
        return 0;
    }
    return 1;
}

static int sh_start_map(void *ctx)
{
    return sh_open(ctx, 1);
}

static int sh_start_array(void *ctx)
{
    return sh_open(ctx, 0);
}

static int sh_close(void *ctx)
{
    ((struct shape *)ctx)->depth--;
    return 1;
}

static const yajl_callbacks shape_callbacks = {
    sh_null,      sh_bool, NULL,     NULL,           sh_number, sh_string,
    sh_start_map, sh_key,  sh_close, sh_start_array, sh_close,
};

/* 1 when the body starts with a byte order mark, with what to do in err.
 * RFC 8259 forbids one in JSON sent over a network; a shop's encoder
 * writing UTF-16, or a file saved by an editor, is the usual cause. */
static int byte_order_mark(const unsigned char *body, size_t len, char *err, size_t errlen)
{
    const char *what = NULL;
    if (len >= 3 && body[0] == 0xef && body[1] == 0xbb && body[2] == 0xbf)
        what = "a UTF-8 byte order mark (EF BB BF)";
    else if (len >= 2 &&
             ((body[0] == 0xff && body[1] == 0xfe) || (body[0] == 0xfe && body[1] == 0xff)))
        what = "a UTF-16 byte order mark (the body is UTF-16)";
    if (what == NULL)
        return 0;
    snprintf(err, errlen,
             "the body starts with %s; expected UTF-8 JSON without a byte order mark (RFC 8259)",
             what);
    return 1;
}

static int check_shape(const unsigned char *body, size_t len, char *err, size_t errlen)
{
    struct shape s = {0};
    yajl_handle h = yajl_alloc(&shape_callbacks, NULL, &s);
    int rc = OQ_EINVAL;
    if (h == NULL)
        return OQ_ENOMEM;
    size_t blank = 0;
    while (blank < len && (body[blank] == ' ' || body[blank] == '\t' || body[blank] == '\n' ||
                           body[blank] == '\r'))
        blank++;
    yajl_status st = yajl_parse(h, body, len);
    int truncated = 0;
    if (st == yajl_status_ok)
        truncated = (st = yajl_complete_parse(h)) != yajl_status_ok;
    if (blank == len)
        snprintf(err, errlen, "the body is empty");
    else if (byte_order_mark(body, len, err, errlen))
        ; /* said why: yajl would only say "invalid char at byte 1" */
    else if (s.top_not_object)
        snprintf(err, errlen, "the body is JSON but not an object; expected {...}");
    else if (s.max_depth_hit)
        snprintf(err, errlen, "the body nests deeper than %d levels", OQ_EVENT_MAX_DEPTH);
    else if (s.nul_in_string)
        snprintf(err, errlen, "a string in the body contains a NUL character (\\u0000)");
    else if (truncated)
        snprintf(err, errlen,
                 "the body is not valid JSON: it ends after %zu bytes, inside a value "
                 "(truncated?)",
                 len);
    else if (st != yajl_status_ok) {
        unsigned char *msg = yajl_get_error(h, 0, body, len);
        char what[128];
        /* "lexical error: invalid char in json text.\n" -> one clean line */
        snprintf(what, sizeof(what), "%s", msg ? (const char *)msg : "parse error");
        size_t n = strlen(what);
        while (n > 0 && (what[n - 1] == '\n' || what[n - 1] == ' ' || what[n - 1] == '.'))
            what[--n] = '\0';
        snprintf(err, errlen, "the body is not valid JSON (%s at byte %zu)", what,
                 yajl_get_bytes_consumed(h));
        yajl_free_error(h, msg);
    } else
        rc = 0;
    yajl_free(h);
    return rc;
}

/* ---- every string strict UTF-8: the database would store '?' instead ---- */

#define PATH_MAX_LEN 160 /* of a place named in a reason; longer ends in "..." */

/* path + ".key" (or "key" at the top) or "[index]" (key NULL), into out. */
static void path_join(char *out, size_t outlen, const char *path, const char *key, size_t index)
{
    size_t used = strlen(path);
    int n;
    if (used >= 3 && strcmp(path + used - 3, "...") == 0) {
        snprintf(out, outlen, "%s", path); /* cut already */
        return;
    }
    if (key != NULL)
        n = snprintf(out, outlen, "%s%s%s", path, used ? "." : "", key);
    else
        n = snprintf(out, outlen, "%s[%zu]", path, index);
    if (n < 0 || (size_t)n >= outlen || (size_t)n > PATH_MAX_LEN) {
        /* a long key: name the place up to its parent, cut on a character */
        size_t keep = used < PATH_MAX_LEN ? used : oq_utf8_prefix(path, PATH_MAX_LEN);
        snprintf(out, outlen, "%.*s...", (int)keep, path);
    }
}

/* "ED A0 80 at byte 3 (strict UTF-8 only: ...)" for the first bad sequence. */
static void why_not_utf8(const char *s, char *out, size_t outlen)
{
    size_t len = strlen(s), at = oq_utf8_prefix(s, len), end = at + 1, used = 0;
    while (end < len && end < at + 4 && ((unsigned char)s[end] & 0xc0) == 0x80)
        end++;
    for (size_t i = at; i < end && used < outlen; i++)
        used += (size_t)snprintf(out + used, outlen - used, "%s%02X", i > at ? " " : "",
                                 (unsigned char)s[i]);
    if (used < outlen)
        snprintf(out + used, outlen - used,
                 " at byte %zu (strict UTF-8 only: no overlong forms, surrogates or code points "
                 "above U+10FFFF)",
                 at);
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A key that appears twice in object v, or NULL (OQ_ENOMEM: *oom set).
 * yajl keeps both; orderq reads the first, while the shop, a proxy or a
 * person reading the dead letter may read the last: one body, two events. */
static const char *duplicate_key(yajl_val v, int *oom)
{
    size_t n = v->u.object.len;
    const char *dup = NULL;
    *oom = 0;
    if (n < 2)
        return NULL;
    const char **keys = malloc(n * sizeof(*keys));
    if (keys == NULL) {
        *oom = 1;
        return NULL;
    }
    memcpy(keys, v->u.object.keys, n * sizeof(*keys));
    qsort(keys, n, sizeof(*keys), key_cmp); /* n log n: a 1 MiB body holds 100k keys */
    for (size_t i = 1; i < n && dup == NULL; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            dup = keys[i];
    free(keys);
    return dup;
}

/* No two keys of object v alike. A small object (every event's) is
 * compared pair by pair, with no copy to sort; 0 also when out of memory:
 * duplicate_key then names the duplicate or reports the shortage. */
static int keys_distinct(yajl_val v)
{
    size_t n = v->u.object.len;
    if (n > 16) {
        int oom = 0;
        return duplicate_key(v, &oom) == NULL && !oom;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(v->u.object.keys[i], v->u.object.keys[j]) == 0)
                return 0;
    return 1;
}

/* Where the walk is in the body: a chain up to the body (NULL). The path
 * is written only when a reason names it, so a good body (nearly every
 * one) is checked without building a path per value. */
struct place {
    const struct place *up;
    const char *key; /* NULL: the element index of an array */
    size_t index;
};

static void place_path(const struct place *at, char *out, size_t outlen)
{
    char up[PATH_MAX_LEN + 8];
    if (at == NULL) {
        out[0] = '\0';
        return;
    }
    place_path(at->up, up, sizeof(up));
    path_join(out, outlen, up, at->key, at->index);
}

/* Walk v (at) and every key and string under it once. yajl checks UTF-8
 * loosely (it takes C0 80, ED A0 80 and F5..F7); the ledger, coupon and
 * outbox columns are utf8mb4, where IGNORE would store such bytes as '?'.
 * Depth is bounded by check_shape. */
static int check_text(yajl_val v, const struct place *at, char *err, size_t errlen)
{
    char why[160], path[PATH_MAX_LEN + 8];
    if (YAJL_IS_STRING(v)) {
        if (oq_utf8_valid(v->u.string, strlen(v->u.string)))
            return 0;
        why_not_utf8(v->u.string, why, sizeof(why));
        place_path(at, path, sizeof(path));
        snprintf(err, errlen, "%s is not valid UTF-8: %s", path, why);
        return OQ_EINVAL;
    }
    if (YAJL_IS_OBJECT(v)) {
        if (!keys_distinct(v)) {
            int oom = 0;
            const char *dup = duplicate_key(v, &oom);
            if (oom)
                return OQ_ENOMEM;
            if (dup != NULL && oq_utf8_valid(dup, strlen(dup))) { /* else: the walk below says so */
                place_path(at, path, sizeof(path));
                snprintf(err, errlen,
                         "%s has a duplicate key \"%.*s\" (which one counts would depend on the "
                         "reader)",
                         path[0] ? path : "the body", (int)oq_utf8_prefix(dup, 64), dup);
                return OQ_EINVAL;
            }
        }
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *key = v->u.object.keys[i];
            if (!oq_utf8_valid(key, strlen(key))) {
                why_not_utf8(key, why, sizeof(why));
                place_path(at, path, sizeof(path));
                snprintf(err, errlen, "a key in %s is not valid UTF-8: %s",
                         path[0] ? path : "the body", why);
                return OQ_EINVAL;
            }
            struct place in = {at, key, 0};
            int rc = check_text(v->u.object.values[i], &in, err, errlen);
            if (rc != 0)
                return rc;
        }
    } else if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++) {
            struct place in = {at, NULL, i};
            int rc = check_text(v->u.array.values[i], &in, err, errlen);
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* A required (or optional) string field; *out is a copy. */
int oq_event_string_field(yajl_val root, const char *key, int required, size_t max, char **out,
                          char *err, size_t errlen)
{
    yajl_val v = oq_json_member(root, key);
    *out = NULL;
    if (v == NULL) {
        if (!required)
            return 0;
        snprintf(err, errlen, "%s is missing", key);
        return OQ_EINVAL;
    }
    if (!YAJL_IS_STRING(v)) {
        snprintf(err, errlen, "%s must be a string", key);
        return OQ_EINVAL;
    }
    size_t n = strlen(v->u.string);
    if (n == 0) {
        snprintf(err, errlen, "%s is empty", key);
        return OQ_EINVAL;
    }
    if (n > max) {
        snprintf(err, errlen, "%s is %zu bytes; at most %zu", key, n, max);
        return OQ_EINVAL;
    }
    *out = strdup(v->u.string);
    return *out ? 0 : OQ_ENOMEM;
}

int oq_event_parse_body(const void *body, size_t len, struct oq_event *ev, char *err, size_t errlen)
{
    char *text = NULL, perr[256];
    int rc;

    memset(ev, 0, sizeof(*ev));
    rc = check_shape(body, len, err, errlen);
    if (rc != 0)
        return rc;
    /* yajl_tree wants a NUL-terminated copy */
    if ((text = malloc(len + 1)) == NULL)
        return OQ_ENOMEM;
    memcpy(text, body, len);
    text[len] = '\0';
    ev->root = yajl_tree_parse(text, perr, sizeof(perr));
    free(text);
    ev->body = body;
    ev->body_len = len;
    if (ev->root == NULL) { /* check_shape said why for bad JSON; perr would quote the body */
        snprintf(err, errlen, "out of memory building the body's JSON tree");
        return OQ_ENOMEM;
    }
    /* Before any field is used: every handler gets only strict UTF-8. */
    rc = check_text(ev->root, NULL, err, errlen);
    if (rc != 0)
        oq_event_clear(ev);
    return rc;
}

int oq_event_decode(const void *body, size_t len, const char *message_id, struct oq_event *ev,
                    char *err, size_t errlen)
{
    int rc = oq_event_parse_body(body, len, ev, err, errlen);
    if (rc != 0)
        return rc;
    rc =
        oq_event_string_field(ev->root, "event_code", 1, OQ_EVENT_CODE_MAX, &ev->code, err, errlen);
    if (rc == 0)
        rc = oq_event_string_field(ev->root, "event_identifier", 0, OQ_EVENT_ID_MAX,
                                   &ev->identifier, err, errlen);
    if (rc == 0)
        rc = oq_event_string_field(ev->root, "created_at", 0, 64, &ev->created_at, err, errlen);
    if (rc != 0)
        goto out;
    if (ev->identifier == NULL) {
        size_t n = message_id ? strlen(message_id) : 0;
        if (n == 0) {
            snprintf(err, errlen,
                     "event_identifier is missing and the message has no message_id property");
            rc = OQ_EINVAL;
            goto out;
        }
        if (n > OQ_EVENT_ID_MAX || !oq_utf8_valid(message_id, n)) {
            snprintf(err, errlen,
                     "event_identifier is missing and the message_id property is not 1 to %d "
                     "bytes of UTF-8",
                     OQ_EVENT_ID_MAX);
            rc = OQ_EINVAL;
            goto out;
        }
        if ((ev->identifier = strdup(message_id)) == NULL) {
            rc = OQ_ENOMEM;
            goto out;
        }
    }
    ev->data = oq_json_member(ev->root, "event_data");
    if (ev->data == NULL || !YAJL_IS_OBJECT(ev->data)) {
        snprintf(err, errlen, ev->data ? "event_data must be an object" : "event_data is missing");
        rc = OQ_EINVAL;
        goto out;
    }
    ev->canonical_code = oq_event_canonical_code(ev->code);
out:
    if (rc != 0)
        oq_event_clear(ev);
    return rc;
}

void oq_event_clear(struct oq_event *ev)
{
    if (ev == NULL)
        return;
    free(ev->code);
    free(ev->identifier);
    free(ev->created_at);
    yajl_tree_free(ev->owned_data);
    yajl_tree_free(ev->root);
    memset(ev, 0, sizeof(*ev));
}

/* The fraction after the seconds, as microseconds; *p moves past it. */
static int64_t fraction_us(const char **p)
{
    int64_t us = 0, scale = 100000;
    if (**p != '.' && **p != ',')
        return 0;
    for ((*p)++; isdigit((unsigned char)**p); (*p)++, scale /= 10)
        us += (**p - '0') * scale;
    return us;
}

int oq_event_time_us(const char *text, int64_t *out)
{
    struct tm tm;
    int sign = 1, hh = 0, mm = 0;
    memset(&tm, 0, sizeof(tm));
    /* strptime and timegm do the calendar: no date arithmetic by hand */
    const char *p = text ? strptime(text, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    /* Magento's (and MySQL's DATETIME text): a space, no zone, in UTC */
    int space = p == NULL && text != NULL && (p = strptime(text, "%Y-%m-%d %H:%M:%S", &tm)) != NULL;
    if (p == NULL)
        return OQ_EINVAL;
    int64_t us = fraction_us(&p);
    if (space && *p == '\0') {
        /* UTC: no offset */
    } else if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '-' ? -1 : 1;
        if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
            !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
            return OQ_EINVAL;
        hh = (p[1] - '0') * 10 + (p[2] - '0');
        mm = (p[4] - '0') * 10 + (p[5] - '0');
        p += 6;
    } else {
        return OQ_EINVAL;
    }
    if (*p != '\0' || hh > 23 || mm > 59)
        return OQ_EINVAL;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return OQ_EINVAL;
    /* local time = UTC + offset, so UTC = local - offset */
    *out = ((int64_t)t - sign * (hh * 3600 + mm * 60)) * 1000000 + us;
    return 0;
}
