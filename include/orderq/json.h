/* json.h - the few yajl helpers every part needs */
#ifndef ORDERQ_JSON_H
#define ORDERQ_JSON_H

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* obj[key], or NULL when obj is not an object or has no such key. */
yajl_val oq_json_member(yajl_val obj, const char *key);

/* Generate a NUL-terminated string. */
void oq_json_gen_str(yajl_gen g, const char *s);

/* Generate "key": "value". */
void oq_json_gen_kv(yajl_gen g, const char *key, const char *value);

#endif
