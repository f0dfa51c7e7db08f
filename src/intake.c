/* intake.c - a shop's own message format: code, identifier and data by the `intake` setting */
#include "orderq/intake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/json.h"
#include "orderq/shopapi.h"

#define FIELD_MAX 64 /* bytes of one {field.path} in a template */

/* ---- the setting --------------------------------------------------------- */

static int choice(yajl_val v, const char *const *names, size_t n, int *out)
{
    for (size_t i = 0; YAJL_IS_STRING(v) && i < n; i++)
        if (strcmp(v->u.string, names[i]) == 0) {
            *out = (int)i;
            return 0;
        }
    return OQ_EINVAL;
}

static int field_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* A template: literal text and at least one {field}, each a dotted path.
 * Without a field every message would get the same identifier, and the
 * ledger would take all but the first for duplicates. */
static int check_template(const char *t, char *why, size_t whylen)
{
    size_t fields = 0, n = strlen(t);
    if (n == 0 || n > OQ_EVENT_ID_MAX || !oq_utf8_valid(t, n)) {
        snprintf(why, whylen, "expected 1 to %d bytes of UTF-8", OQ_EVENT_ID_MAX);
        return OQ_EINVAL;
    }
    for (const char *p = t; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(why, whylen, "the template \"%s\" holds a control character", t);
            return OQ_EINVAL;
        }
        if (*p == '}') {
            snprintf(why, whylen, "the template \"%s\" has a '}' without its '{'", t);
            return OQ_EINVAL;
        }
        if (*p != '{')
            continue;
        const char *end = strchr(p + 1, '}');
        size_t len = end ? (size_t)(end - p - 1) : 0;
        int ok = end != NULL && len > 0 && len <= FIELD_MAX && p[1] != '.' && end[-1] != '.';
        for (size_t i = 1; ok && i <= len; i++)
            ok = field_char(p[i]) && !(p[i] == '.' && p[i + 1] == '.');
        if (!ok) {
            snprintf(why, whylen,
                     "the template \"%s\" has a field that is not {name} or {a.b} (letters, "
                     "digits, '_', '-', '.'; at most %d bytes)",
                     t, FIELD_MAX);
            return OQ_EINVAL;
        }
        fields++;
        p = end;
    }
    if (fields == 0) {
        snprintf(why, whylen,
                 "expected \"envelope\", \"message_id\" or a template naming at least one "
                 "{field} such as \"{entity_id}_{status}\", got \"%s\" (a template without a "
                 "field gives every message one identifier)",
                 t);
        return OQ_EINVAL;
    }
    return 0;
}

/* A shop code: bound as a routing key, so literal (no topic wildcards). */
static int check_code(const char *c, char *why, size_t whylen)
{
    size_t n = strlen(c);
    int ok = n > 0 && n <= OQ_EVENT_CODE_MAX && oq_utf8_valid(c, n);
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)c[i] > 0x20 && c[i] != 0x7f && c[i] != '*' && c[i] != '#';
    if (!ok)
        snprintf(why, whylen,
                 "expected each code to be 1 to %d bytes of UTF-8 without spaces, control "
                 "characters or the topic wildcards '*' and '#', got \"%.80s\"",
                 OQ_EVENT_CODE_MAX, c);
    return ok ? 0 : OQ_EINVAL;
}

static int parse_codes(yajl_val v, struct oq_intake_rule *r, char *why, size_t whylen)
{
    if (!YAJL_IS_ARRAY(v) || v->u.array.len > OQ_INTAKE_MAX_CODES) {
        snprintf(why, whylen, "expected an array of at most %d strings", OQ_INTAKE_MAX_CODES);
        return OQ_EINVAL;
    }
    for (size_t i = 0; i < v->u.array.len; i++) {
        yajl_val c = v->u.array.values[i];
        if (!YAJL_IS_STRING(c)) {
            snprintf(why, whylen, "expected an array of strings");
            return OQ_EINVAL;
        }
        if (check_code(c->u.string, why, whylen) != 0)
            return OQ_EINVAL;
        if ((r->codes[r->n_codes] = strdup(c->u.string)) == NULL)
            return OQ_ENOMEM;
        r->n_codes++;
    }
    return 0;
}

static const char *const code_names[] = {"envelope", "routing_key", "type"};
static const char *const data_names[] = {"envelope", "body", "magento"};
static const char *const format_names[] = {"envelope", "magento"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The preset first, so that a key given with it wins. */
static int apply_format(yajl_val spec, struct oq_intake_rule *r, char *why, size_t whylen)
{
    yajl_val f = oq_json_member(spec, "format");
    int which = 0;
    if (f == NULL)
        return 0;
    if (choice(f, format_names, COUNT(format_names), &which) != 0) {
        snprintf(why, whylen, "%s.format: expected \"envelope\" or \"magento\"", r->event_code);
        return OQ_EINVAL;
    }
    if (which == 1) {
        r->code = OQ_INTAKE_CODE_ROUTING_KEY;
        r->identifier = OQ_INTAKE_ID_TEMPLATE;
        r->data = OQ_INTAKE_DATA_MAGENTO;
        if ((r->tmpl = strdup("{entity_id}_{status}")) == NULL)
            return OQ_ENOMEM;
    }
    return 0;
}

static int parse_identifier(yajl_val v, struct oq_intake_rule *r, char *why, size_t whylen)
{
    char inner[400];
    if (!YAJL_IS_STRING(v)) {
        snprintf(why, whylen,
                 "%s.identifier: expected \"envelope\", \"message_id\" or a template string",
                 r->event_code);
        return OQ_EINVAL;
    }
    free(r->tmpl);
    r->tmpl = NULL;
    if (strcmp(v->u.string, "envelope") == 0 || strcmp(v->u.string, "message_id") == 0) {
        r->identifier = v->u.string[0] == 'e' ? OQ_INTAKE_ID_ENVELOPE : OQ_INTAKE_ID_MESSAGE_ID;
        return 0;
    }
    if (check_template(v->u.string, inner, sizeof(inner)) != 0) {
        snprintf(why, whylen, "%s.identifier: %s", r->event_code, inner);
        return OQ_EINVAL;
    }
    r->identifier = OQ_INTAKE_ID_TEMPLATE;
    return (r->tmpl = strdup(v->u.string)) ? 0 : OQ_ENOMEM;
}

static int parse_rule(const char *event_code, yajl_val spec, struct oq_intake_rule *r, char *why,
                      size_t whylen)
{
    static const char *const keys[] = {"format", "codes", "code", "identifier", "data"};
    char inner[300];
    int rc, v = 0;
    r->event_code = event_code;
    if (!YAJL_IS_OBJECT(spec)) {
        snprintf(why, whylen, "%s: expected an object such as {\"format\": \"magento\"}",
                 event_code);
        return OQ_EINVAL;
    }
    for (size_t i = 0; i < spec->u.object.len; i++) {
        size_t k = 0;
        while (k < COUNT(keys) && strcmp(keys[k], spec->u.object.keys[i]) != 0)
            k++;
        if (k == COUNT(keys)) {
            snprintf(why, whylen,
                     "%s: unknown key \"%.40s\"; expected format, codes, code, identifier, data",
                     event_code, spec->u.object.keys[i]);
            return OQ_EINVAL;
        }
    }
    if ((rc = apply_format(spec, r, why, whylen)) != 0)
        return rc;
    yajl_val c = oq_json_member(spec, "code"), d = oq_json_member(spec, "data");
    yajl_val id = oq_json_member(spec, "identifier"), codes = oq_json_member(spec, "codes");
    if (c != NULL && choice(c, code_names, COUNT(code_names), &v) != 0) {
        snprintf(why, whylen, "%s.code: expected \"envelope\", \"routing_key\" or \"type\"",
                 event_code);
        return OQ_EINVAL;
    }
    if (c != NULL)
        r->code = (enum oq_intake_code)v;
    if (d != NULL && choice(d, data_names, COUNT(data_names), &v) != 0) {
        snprintf(why, whylen, "%s.data: expected \"envelope\", \"body\" or \"magento\"",
                 event_code);
        return OQ_EINVAL;
    }
    if (d != NULL)
        r->data = (enum oq_intake_data)v;
    if (id != NULL && (rc = parse_identifier(id, r, why, whylen)) != 0)
        return rc;
    if (codes != NULL && (rc = parse_codes(codes, r, inner, sizeof(inner))) != 0) {
        if (rc == OQ_EINVAL)
            snprintf(why, whylen, "%s.codes: %s", event_code, inner);
        return rc;
    }
    if (r->data == OQ_INTAKE_DATA_MAGENTO && strcmp(event_code, "order.processing") != 0) {
        snprintf(why, whylen,
                 "%s.data: \"magento\" makes an order's event_data; expected it only under "
                 "order.processing",
                 event_code);
        return OQ_EINVAL;
    }
    return 0;
}

/* The canonical event code named key, or NULL. */
static const char *known_code(const char *key)
{
    for (size_t i = 0; i < oq_event_route_count; i++)
        if (strcmp(oq_event_routes[i].event_code, key) == 0)
            return oq_event_routes[i].event_code;
    return NULL;
}

/* A shop code binds its routing key to one work queue: another event's
 * code or alias, or the same code under two events, would route one
 * message to two queues, and two handlers would act on it. */
static int check_code_owners(const struct oq_intake *in, char *why, size_t whylen)
{
    for (size_t i = 0; i < in->n; i++) {
        const struct oq_intake_rule *r = &in->rules[i];
        for (size_t k = 0; k < r->n_codes; k++) {
            const char *c = r->codes[k], *owner = oq_event_canonical_code(c);
            for (size_t j = 0; owner == c && j < i; j++)
                for (size_t m = 0; m < in->rules[j].n_codes; m++)
                    if (strcmp(in->rules[j].codes[m], c) == 0)
                        owner = in->rules[j].event_code;
            if (owner == c || strcmp(owner, r->event_code) == 0)
                continue;
            snprintf(why, whylen,
                     "%s.codes: \"%.80s\" is also %s's; expected each code under one event, or a "
                     "message with it would reach both queues",
                     r->event_code, c, owner);
            return OQ_EINVAL;
        }
    }
    return 0;
}

static void list_codes(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < oq_event_route_count && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                                 oq_event_routes[i].event_code);
}

int oq_intake_parse(const char *text, struct oq_intake **out, char *why, size_t whylen)
{
    char perr[256] = "", known[200];
    struct oq_intake *in = calloc(1, sizeof(*in));
    yajl_val doc = NULL;
    int rc = OQ_ENOMEM;
    *out = NULL;
    if (in == NULL)
        goto out;
    rc = OQ_EINVAL;
    if (text[strspn(text, " \t\r\n")] == '\0') {
        rc = 0; /* no mappings: every queue reads the envelope */
        goto out;
    }
    doc = oq_json_parse(text, perr, sizeof(perr));
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        snprintf(why, whylen,
                 "expected a JSON object keyed by event code, as {\"order.processing\": "
                 "{\"format\": \"magento\"}}%s%s",
                 doc == NULL ? ": " : "", doc == NULL ? perr : "");
        goto out;
    }
    rc = OQ_ENOMEM;
    if ((in->rules = calloc(doc->u.object.len + 1, sizeof(*in->rules))) == NULL)
        goto out;
    for (size_t i = 0; i < doc->u.object.len; i++) {
        const char *code = known_code(doc->u.object.keys[i]);
        if (code == NULL) {
            list_codes(known, sizeof(known));
            snprintf(why, whylen,
                     "\"%.60s\" is not an event code orderq handles; expected one of %s",
                     doc->u.object.keys[i], known);
            rc = OQ_EINVAL;
            goto out;
        }
        if (oq_intake_find(in, code) != NULL) {
            snprintf(why, whylen, "%s is given twice", code);
            rc = OQ_EINVAL;
            goto out;
        }
        in->n++; /* counted first, so that free sees a rule half made */
        if ((rc = parse_rule(code, doc->u.object.values[i], &in->rules[i], why, whylen)) != 0)
            goto out;
    }
    rc = check_code_owners(in, why, whylen);
out:
    yajl_tree_free(doc);
    if (rc == 0)
        *out = in;
    else
        oq_intake_free(in);
    return rc;
}

void oq_intake_free(struct oq_intake *in)
{
    if (in == NULL)
        return;
    for (size_t i = 0; i < in->n; i++) {
        free(in->rules[i].tmpl);
        for (size_t k = 0; k < in->rules[i].n_codes; k++)
            free(in->rules[i].codes[k]);
    }
    free(in->rules);
    free(in);
}

/* Is code the rule's event, one of its aliases, or one of its shop codes? */
static int rule_accepts(const struct oq_intake_rule *r, const char *code)
{
    if (strcmp(oq_event_canonical_code(code), r->event_code) == 0)
        return 1;
    for (size_t i = 0; i < r->n_codes; i++)
        if (strcmp(r->codes[i], code) == 0)
            return 1;
    return 0;
}

const struct oq_intake_rule *oq_intake_find(const struct oq_intake *in, const char *event_code)
{
    for (size_t i = 0; in != NULL && event_code != NULL && i < in->n; i++)
        if (in->rules[i].event_code != NULL && strcmp(in->rules[i].event_code, event_code) == 0)
            return &in->rules[i];
    return NULL;
}

const struct oq_intake_rule *oq_intake_find_by_key(const struct oq_intake *in,
                                                   const char *routing_key)
{
    for (size_t i = 0; in != NULL && routing_key != NULL && i < in->n; i++)
        if (in->rules[i].event_code != NULL && rule_accepts(&in->rules[i], routing_key))
            return &in->rules[i];
    return NULL;
}

/* ---- templates ------------------------------------------------------------ */

/* root at the dotted path (len bytes), or NULL. */
static yajl_val at_path(yajl_val root, const char *path, size_t len)
{
    char key[FIELD_MAX + 1];
    yajl_val v = root;
    while (v != NULL && len > 0) {
        size_t n = 0;
        while (n < len && path[n] != '.')
            n++;
        if (n > FIELD_MAX)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = oq_json_member(v, key);
        path += n < len ? n + 1 : n;
        len -= n < len ? n + 1 : n;
    }
    return v;
}

static const char *kind(yajl_val v)
{
    if (v == NULL)
        return "missing";
    if (YAJL_IS_NULL(v))
        return "null";
    if (YAJL_IS_OBJECT(v))
        return "an object";
    if (YAJL_IS_ARRAY(v))
        return "an array";
    if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
        return "a boolean";
    if (YAJL_IS_NUMBER(v))
        return "a number with a fraction or an exponent (expected a string or an integer)";
    return "an empty string";
}

/* JSON's integer text (-?digits, no leading zero) is the only way to write
 * that number, so 217 and "217" are one identifier; 217.0 and 2.17e2 would
 * be two names for it, and are refused. */
static int integer_text(const char *s)
{
    if (strcmp(s, "-0") == 0)
        return 0; /* 0 */
    s += *s == '-';
    return *s != '\0' && s[strspn(s, "0123456789")] == '\0';
}

/* The text a template puts in for v, or NULL (kind() says why). */
static const char *scalar_text(yajl_val v)
{
    if (YAJL_IS_STRING(v) && v->u.string[0] != '\0')
        return v->u.string;
    if (YAJL_IS_NUMBER(v) && integer_text(v->u.number.r))
        return v->u.number.r;
    return NULL;
}

int oq_intake_expand(const char *tmpl, yajl_val root, char **out, char *err, size_t errlen)
{
    size_t cap = 64, used = 0;
    char *buf = malloc(cap);
    *out = NULL;
    if (buf == NULL)
        return OQ_ENOMEM;
    for (const char *p = tmpl; *p != '\0';) {
        const char *piece = p, *end = NULL;
        size_t n = 1;
        if (*p == '{' && (end = strchr(p, '}')) != NULL) {
            yajl_val v = at_path(root, p + 1, (size_t)(end - p - 1));
            if ((piece = scalar_text(v)) == NULL) {
                snprintf(err, errlen,
                         "the body's field {%.*s}, named by the intake identifier template "
                         "\"%s\", is %s; expected a non-empty string or an integer",
                         (int)(end - p - 1), p + 1, tmpl, kind(v));
                free(buf);
                return OQ_EINVAL;
            }
            n = strlen(piece);
            p = end + 1;
        } else
            p++;
        if (used + n + 1 > cap) {
            while (used + n + 1 > cap)
                cap *= 2;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                return OQ_ENOMEM;
            }
            buf = grown;
        }
        memcpy(buf + used, piece, n);
        used += n;
    }
    buf[used] = '\0';
    *out = buf;
    return 0;
}

/* ---- one message ----------------------------------------------------------- */

static int take_code(const struct oq_intake_rule *r, const struct oq_intake_message *msg,
                     struct oq_event *ev, char *err, size_t errlen)
{
    static const char *const from[] = {"the body's event_code", "the routing key",
                                       "the type property"};
    const char *code = r->code == OQ_INTAKE_CODE_ROUTING_KEY ? msg->routing_key : msg->type;
    int rc;
    if (r->code == OQ_INTAKE_CODE_ROUTING_KEY && msg->routing_key == NULL)
        code = r->event_code; /* put straight into the work queue */
    if (r->code == OQ_INTAKE_CODE_ENVELOPE) {
        if ((rc = oq_event_string_field(ev->root, "event_code", 1, OQ_EVENT_CODE_MAX, &ev->code,
                                        err, errlen)) != 0)
            return rc;
        code = ev->code;
    } else {
        size_t n = code ? strlen(code) : 0;
        if (n == 0 || n > OQ_EVENT_CODE_MAX || !oq_utf8_valid(code, n)) {
            snprintf(err, errlen,
                     "%s is %s; intake.%s.code takes the event code from it (1 to %d bytes of "
                     "UTF-8)",
                     from[r->code], n == 0 ? "missing or empty" : "not usable", r->event_code,
                     OQ_EVENT_CODE_MAX);
            return OQ_EINVAL;
        }
        if ((ev->code = strdup(code)) == NULL)
            return OQ_ENOMEM;
    }
    if (!rule_accepts(r, ev->code)) {
        snprintf(err, errlen,
                 "event code \"%.*s\" (%s) is not %s, an alias of it, or one of intake.%s.codes",
                 (int)oq_utf8_prefix(ev->code, 80), ev->code, from[r->code], r->event_code,
                 r->event_code);
        return OQ_EINVAL;
    }
    ev->canonical_code = r->event_code;
    return 0;
}

/* The identifier by the rule, checked as the envelope's is. */
static int take_identifier(const struct oq_intake_rule *r, const struct oq_intake_message *msg,
                           struct oq_event *ev, char *err, size_t errlen)
{
    char *id = NULL;
    const char *what = "the message_id property";
    int rc;
    if (r->identifier == OQ_INTAKE_ID_ENVELOPE) {
        if ((rc = oq_event_string_field(ev->root, "event_identifier", 0, OQ_EVENT_ID_MAX, &id, err,
                                        errlen)) != 0)
            return rc;
        what = "event_identifier is missing and the message_id property";
    } else if (r->identifier == OQ_INTAKE_ID_TEMPLATE) {
        if ((rc = oq_intake_expand(r->tmpl, ev->root, &id, err, errlen)) != 0)
            return rc;
        what = "the identifier from intake template";
    }
    if (id == NULL) {
        const char *m = msg->message_id ? msg->message_id : "";
        if ((id = strdup(m)) == NULL)
            return OQ_ENOMEM;
    }
    size_t n = strlen(id);
    if (n == 0 || n > OQ_EVENT_ID_MAX || !oq_utf8_valid(id, n)) {
        if (r->identifier == OQ_INTAKE_ID_TEMPLATE)
            snprintf(err, errlen, "%s \"%s\" is %zu bytes%s; expected 1 to %d bytes of UTF-8", what,
                     r->tmpl, n, oq_utf8_valid(id, n) ? "" : " and not UTF-8", OQ_EVENT_ID_MAX);
        else
            snprintf(err, errlen, "%s is %s; expected 1 to %d bytes of UTF-8", what,
                     n == 0 ? "missing" : "not usable", OQ_EVENT_ID_MAX);
        free(id);
        return OQ_EINVAL;
    }
    ev->identifier = id;
    return 0;
}

/* event_data from a Magento order: the shop-API converter, order_id the
 * entity_id (the id /rest/V1/orders/{id} takes, so a look-up for a missing
 * e-mail asks for the same order). */
static int magento_data(const struct oq_intake_rule *r, struct oq_event *ev, char *err,
                        size_t errlen)
{
    char label[120], *json = NULL, perr[256] = "";
    yajl_val id = oq_json_member(ev->root, "entity_id");
    const char *order_id = scalar_text(id);
    if (order_id == NULL || strlen(order_id) > 64) {
        snprintf(err, errlen,
                 "the Magento order's entity_id is %s; expected a string or number of at most 64 "
                 "bytes (intake.%s.data is magento)",
                 order_id ? "too long" : kind(id), r->event_code);
        return OQ_EINVAL;
    }
    snprintf(label, sizeof(label), "the Magento order %s", order_id);
    int rc = oq_shopapi_order_doc_to_event_data(ev->root, order_id, label, &json, err, errlen);
    if (rc != 0)
        return rc;
    ev->owned_data = oq_json_parse(json, perr, sizeof(perr));
    free(json);
    if (ev->owned_data == NULL)
        return OQ_ENOMEM; /* what the converter generated parses */
    ev->data = ev->owned_data;
    return 0;
}

static int take_data(const struct oq_intake_rule *r, struct oq_event *ev, char *err, size_t errlen)
{
    if (r->data == OQ_INTAKE_DATA_MAGENTO)
        return magento_data(r, ev, err, errlen);
    ev->data = r->data == OQ_INTAKE_DATA_BODY ? ev->root : oq_json_member(ev->root, "event_data");
    if (ev->data == NULL || !YAJL_IS_OBJECT(ev->data)) {
        snprintf(err, errlen, ev->data ? "event_data must be an object" : "event_data is missing");
        return OQ_EINVAL;
    }
    return 0;
}

/* When the event happened, for orderq_event_age_seconds (a message's AMQP
 * timestamp wins over it). Only a field that means that: an envelope's
 * created_at, a Magento order's updated_at (the save that changed its
 * status, which is what published it; its created_at is when the customer
 * ordered, maybe days before paying). A shop's own body names no such
 * field: none, so an old order paid today does not read as a late event. */
static int take_event_time(const struct oq_intake_rule *r, struct oq_event *ev)
{
    const char *field = r->data == OQ_INTAKE_DATA_ENVELOPE  ? "created_at"
                        : r->data == OQ_INTAKE_DATA_MAGENTO ? "updated_at"
                                                            : NULL;
    yajl_val t = field ? oq_json_member(ev->root, field) : NULL;
    if (!YAJL_IS_STRING(t) || strlen(t->u.string) > 64)
        return 0;
    return (ev->created_at = strdup(t->u.string)) == NULL ? OQ_ENOMEM : 0;
}

int oq_intake_decode(const struct oq_intake_rule *rule, const void *body, size_t len,
                     const struct oq_intake_message *msg, struct oq_event *ev, char *err,
                     size_t errlen)
{
    if (rule == NULL)
        return oq_event_decode(body, len, msg ? msg->message_id : NULL, ev, err, errlen);
    const struct oq_intake_message none = {NULL, NULL, NULL};
    int rc = oq_event_parse_body(body, len, ev, err, errlen);
    if (rc != 0)
        return rc;
    if (msg == NULL)
        msg = &none;
    if ((rc = take_code(rule, msg, ev, err, errlen)) == 0 &&
        (rc = take_identifier(rule, msg, ev, err, errlen)) == 0 &&
        (rc = take_data(rule, ev, err, errlen)) == 0)
        rc = take_event_time(rule, ev);
    if (rc != 0)
        oq_event_clear(ev);
    return rc;
}
