/* json.c - the few yajl helpers every part needs */
#include "orderq/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "orderq/common.h"
#include "orderq/money.h"

/* One streaming pass before any tree: yajl's parser keeps its own nesting
 * in a heap stack, so callbacks cost no recursion; it stops at the depth
 * limit, and a syntax error is reported from here, where yajl's terse
 * message and the offset can be had without the text around the mistake
 * (yajl_tree_parse's message quotes ~30 bytes either side: a webhook's
 * URL token, a customer's address from a shop API answer). */
struct depth_scan {
    int depth;
    int too_deep;
};

static int ds_open(void *ctx)
{
    struct depth_scan *s = ctx;
    if (++s->depth > OQ_JSON_MAX_DEPTH) {
        s->too_deep = 1;
        return 0;
    }
    return 1;
}

static int ds_close(void *ctx)
{
    ((struct depth_scan *)ctx)->depth--;
    return 1;
}

static const yajl_callbacks depth_callbacks = {
    .yajl_start_map = ds_open,
    .yajl_end_map = ds_close,
    .yajl_start_array = ds_open,
    .yajl_end_array = ds_close,
};

static void set_err(char *err, size_t errlen, const char *what)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", what);
}

/* "parse error: premature EOF at byte 12 (line 2)": what yajl says, without
 * its verbose quote, and where, as an offset and a line an editor can go to. */
static void syntax_err(yajl_handle h, const char *text, size_t len, size_t at, char *err,
                       size_t errlen)
{
    size_t line = 1;
    unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)text, len);
    if (at > len)
        at = len;
    for (size_t i = 0; i < at; i++)
        line += text[i] == '\n';
    size_t n = msg ? strcspn((const char *)msg, "\n") : 0; /* yajl ends it with ".\n" */
    while (n > 0 && (msg[n - 1] == '.' || msg[n - 1] == ' '))
        n--;
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%.*s near byte %zu (line %zu)", (int)n,
                 msg ? (const char *)msg : "parse error", at, line);
    if (msg != NULL)
        yajl_free_error(h, msg);
}

/* 0: text is JSON no deeper than the limit; else OQ_EINVAL or OQ_ENOMEM
 * with why in err. */
static int scan(const char *text, char *err, size_t errlen)
{
    struct depth_scan s = {0};
    size_t len = strlen(text);
    yajl_handle h = yajl_alloc(&depth_callbacks, NULL, &s);
    if (h == NULL) {
        set_err(err, errlen, "out of memory");
        return OQ_ENOMEM;
    }
    yajl_config(h, yajl_allow_comments, 1); /* as yajl_tree_parse */
    yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
    size_t at = yajl_get_bytes_consumed(h);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        at = len; /* what was missing, was missing at the end */
    }
    int rc = st == yajl_status_ok ? 0 : OQ_EINVAL;
    if (s.too_deep && err != NULL && errlen > 0)
        snprintf(err, errlen, "the JSON nests deeper than %d levels", OQ_JSON_MAX_DEPTH);
    else if (rc != 0)
        syntax_err(h, text, len, at, err, errlen);
    yajl_free(h);
    return rc;
}

yajl_val oq_json_parse(const char *text, char *err, size_t errlen)
{
    char quoted[256]; /* yajl_tree's verbose message: never shown */
    if (scan(text, err, errlen) != 0)
        return NULL;
    yajl_val v = yajl_tree_parse(text, quoted, sizeof(quoted));
    if (v == NULL) /* the scan accepted it: the tree ran out of memory */
        set_err(err, errlen, "out of memory building the JSON tree");
    return v;
}

yajl_val oq_json_member(yajl_val obj, const char *key)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

void oq_json_gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

void oq_json_gen_kv(yajl_gen g, const char *key, const char *value)
{
    oq_json_gen_str(g, key);
    oq_json_gen_str(g, value);
}

const char *oq_json_text(yajl_val obj, const char *key)
{
    yajl_val v = oq_json_member(obj, key);
    if (YAJL_IS_STRING(v) && v->u.string[0] != '\0')
        return v->u.string;
    if (YAJL_IS_INTEGER(v))
        return v->u.number.r;
    return NULL;
}

const char *oq_json_number_text(yajl_val v)
{
    if (YAJL_IS_STRING(v))
        return v->u.string;
    if (YAJL_IS_NUMBER(v))
        return v->u.number.r;
    return NULL;
}

int oq_json_amount(yajl_val v, int exponent, int64_t *out, char *why, size_t whylen)
{
    const char *text = oq_json_number_text(v);
    if (text == NULL) {
        snprintf(why, whylen, "expected an amount such as \"19.99\"");
        return OQ_EINVAL;
    }
    return oq_money_parse(text, strlen(text), exponent, out, why, whylen);
}

char *oq_json_gen_finish(yajl_gen g)
{
    const unsigned char *buf;
    size_t len;
    char *out = NULL;
    if (yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok)
        out = strndup((const char *)buf, len);
    yajl_gen_free(g);
    return out;
}
