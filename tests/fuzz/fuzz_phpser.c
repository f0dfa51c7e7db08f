/* fuzz_phpser.c - the legacy PHP-serialize decoder: what it accepts is JSON, and numbers keep their
 * value */
#include <errno.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "fuzz.h"
#include "orderq/event.h"
#include "orderq/phpser.h"

/* "i:<digits>;" as the whole input: its value, strictly (an optional '-',
 * digits only, within long long). 0 when it is not one; -1 when the digits
 * do not fit, which the decoder must refuse rather than clamp. */
static int top_integer(const char *s, size_t n, long long *v)
{
    if (n < 4 || s[0] != 'i' || s[1] != ':' || s[n - 1] != ';')
        return 0;
    size_t i = 2;
    int neg = s[i] == '-';
    i += (size_t)neg;
    if (i == n - 1)
        return 0;
    long long acc = 0;
    for (; i < n - 1; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        int d = s[i] - '0';
        if (__builtin_mul_overflow(acc, 10, &acc) ||
            (neg ? __builtin_sub_overflow(acc, d, &acc) : __builtin_add_overflow(acc, d, &acc)))
            return -1;
    }
    *v = acc;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[256] = "", perr[256];
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return 0;
    int rc = oq_phpser_to_json(text, size, g, err, sizeof(err));
    long long want = 0;
    int top = top_integer(text, size, &want);
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0', "refused without a reason");
        FUZZ_CHECK(oq_utf8_valid(err, strlen(err)), "the reason is not UTF-8");
        yajl_gen_free(g);
        return 0;
    }
    FUZZ_CHECK(top != -1, "an integer that does not fit was accepted: %.*s", (int)size, text);
    const unsigned char *json = NULL;
    size_t len = 0;
    FUZZ_CHECK(yajl_gen_get_buf(g, &json, &len) == yajl_gen_status_ok, "no JSON generated");
    FUZZ_CHECK(oq_utf8_valid((const char *)json, len), "the JSON is not UTF-8");
    char *copy = strndup((const char *)json, len);
    FUZZ_CHECK(copy != NULL && strlen(copy) == len, "the JSON holds a NUL");
    /* yajl_tree wants one value at the top: an array around it allows any. */
    size_t wlen = len + 3;
    char *wrapped = malloc(wlen);
    snprintf(wrapped, wlen, "[%s]", copy);
    yajl_val v = yajl_tree_parse(wrapped, perr, sizeof(perr));
    FUZZ_CHECK(v != NULL, "generated JSON does not parse: %s: %s", perr, copy);
    if (top == 1) {
        yajl_val n = v->u.array.values[0];
        FUZZ_CHECK(YAJL_IS_INTEGER(n) && YAJL_GET_INTEGER(n) == want, "i:%lld; decoded as %s", want,
                   copy);
    }
    yajl_tree_free(v);
    free(wrapped);
    free(copy);
    yajl_gen_free(g);
    return 0;
}
