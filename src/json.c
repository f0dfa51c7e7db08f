/* json.c - the few yajl helpers every part needs */
#include "orderq/json.h"

#include <string.h>

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
