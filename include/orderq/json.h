/* json.h - the few yajl helpers every part needs */
#ifndef ORDERQ_JSON_H
#define ORDERQ_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* Deepest nesting of arrays and objects orderq accepts in any JSON it
 * reads (events, the shop API's answers, webhooks and rules files, the
 * management API). yajl_tree builds and frees its tree by recursion: a
 * deeper document could overflow the stack (a 2 MB answer of a million
 * '[' did), so the depth is checked before a tree exists. */
#define OQ_JSON_MAX_DEPTH 64

/* Parse the NUL-terminated text into a tree (comments allowed, as
 * yajl_tree_parse does), refusing nesting deeper than OQ_JSON_MAX_DEPTH
 * with a streaming pass first, so no deep tree is ever built. Returns the
 * tree (free with yajl_tree_free), or NULL with why in err: "the JSON
 * nests deeper than 64 levels", yajl's terse message and where ("parse
 * error: premature EOF at byte 12 (line 2)"), or out of memory. err never
 * quotes the text: what orderq parses holds tokens (webhook URLs) and
 * customer data (shop API answers), and err goes to logs and dead letters.
 * err may be NULL. */
yajl_val oq_json_parse(const char *text, char *err, size_t errlen);

/* obj[key], or NULL when obj is not an object or has no such key. */
yajl_val oq_json_member(yajl_val obj, const char *key);

/* obj[key] as text when it is a non-empty string or an integer (ids often
 * come as numbers), else NULL. */
const char *oq_json_text(yajl_val obj, const char *key);

/* A string's text or a number's as written ("19.99", 19.99), else NULL. */
const char *oq_json_number_text(yajl_val v);

/* An amount of money as minor units with `exponent` decimals (see
 * oq_money_parse). Returns 0 or OQ_EINVAL with why. */
int oq_json_amount(yajl_val v, int exponent, int64_t *out, char *why, size_t whylen);

/* What g generated, as a NUL-terminated copy (NULL when out of memory or g
 * is not complete); g is freed either way. */
char *oq_json_gen_finish(yajl_gen g);

/* Generate a NUL-terminated string. */
void oq_json_gen_str(yajl_gen g, const char *s);

/* Generate "key": "value". */
void oq_json_gen_kv(yajl_gen g, const char *key, const char *value);

#endif
