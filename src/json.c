/* json.c - the few yajl helpers every part needs */
#include "orderq/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "orderq/common.h"
#include "orderq/money.h"

/* The depth pass: yajl's parser keeps its own nesting in a heap stack, so
 * streaming through callbacks costs no recursion; it stops at the limit. */
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

/* 1: deeper than the limit; 0: not (or not JSON: yajl_tree says why). */
static int too_deep(const char *text, int *nomem)
{
    struct depth_scan s = {0};
    yajl_handle h = yajl_alloc(&depth_callbacks, NULL, &s);
    if (h == NULL) {
        *nomem = 1;
        return 0;
    }
    yajl_config(h, yajl_allow_comments, 1); /* as yajl_tree_parse */
    if (yajl_parse(h, (const unsigned char *)text, strlen(text)) == yajl_status_ok)
        (void)yajl_complete_parse(h);
    yajl_free(h);
    return s.too_deep;
}

yajl_val oq_json_parse(const char *text, char *err, size_t errlen)
{
    int nomem = 0;
    if (too_deep(text, &nomem) || nomem) {
        if (err != NULL && errlen > 0 && nomem)
            snprintf(err, errlen, "out of memory");
        else if (err != NULL && errlen > 0)
            snprintf(err, errlen, "the JSON nests deeper than %d levels", OQ_JSON_MAX_DEPTH);
        return NULL;
    }
    return yajl_tree_parse(text, err, errlen);
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
