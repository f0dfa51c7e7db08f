/* json.c - the few yajl helpers every part needs */
#include "orderq/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/common.h"
#include "orderq/money.h"

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
