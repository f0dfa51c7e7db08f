/* phpser.c - PHP serialize() text to JSON, for the legacy coupon_queue bridge */
#include "orderq/phpser.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/event.h"

struct reader {
    const char *s;
    size_t len, at;
    char *err;
    size_t errlen;
};

static int fail(struct reader *r, const char *what)
{
    snprintf(r->err, r->errlen, "event_data is not PHP-serialized data: %s at byte %zu", what,
             r->at);
    return OQ_EINVAL;
}

static int expect(struct reader *r, char c)
{
    if (r->at >= r->len || r->s[r->at] != c) {
        char what[32];
        snprintf(what, sizeof(what), "expected '%c'", c);
        return fail(r, what);
    }
    r->at++;
    return 0;
}

/* Digits (with an optional sign) up to the terminator; the text in out. */
static int token(struct reader *r, char end, char *out, size_t outlen)
{
    size_t n = 0;
    while (r->at < r->len && r->s[r->at] != end) {
        if (n + 1 >= outlen)
            return fail(r, "a number too long");
        out[n++] = r->s[r->at++];
    }
    out[n] = '\0';
    return n > 0 ? expect(r, end) : fail(r, "a missing number");
}

/* PHP writes an integer as -?digits. strtoll alone would clamp one that
 * does not fit to LLONG_MAX (a quantity of 2^63 read as 9223372036854775807)
 * and skip spaces or a '+': both are refused. */
static int integer(struct reader *r, char end, long long *out)
{
    char buf[32], *stop;
    if (token(r, end, buf, sizeof(buf)) != 0)
        return OQ_EINVAL;
    const char *digits = buf + (buf[0] == '-');
    if (*digits < '0' || *digits > '9')
        return fail(r, "a malformed integer");
    errno = 0;
    *out = strtoll(buf, &stop, 10);
    if (errno == ERANGE)
        return fail(r, "an integer out of range");
    return *stop == '\0' ? 0 : fail(r, "a malformed integer");
}

/* s:LEN:"bytes"; The bytes are counted, never searched for a quote. */
static int string(struct reader *r, const char **s, size_t *n)
{
    long long len;
    if (expect(r, ':') != 0 || integer(r, ':', &len) != 0 || expect(r, '"') != 0)
        return OQ_EINVAL;
    if (len < 0 || (size_t)len > r->len - r->at)
        return fail(r, "a string longer than the data");
    *s = r->s + r->at;
    *n = (size_t)len;
    r->at += (size_t)len;
    if (expect(r, '"') != 0 || expect(r, ';') != 0)
        return OQ_EINVAL;
    if (!oq_utf8_valid(*s, *n))
        return fail(r, "a string that is not UTF-8 (or holds NUL)");
    return 0;
}

static int value(struct reader *r, yajl_gen g, int depth);

/* -?digits(.digits)?([eE][+-]?digits)?: what JSON takes as a number. */
static int json_number(const char *s)
{
    size_t i = s[0] == '-';
    size_t start = i;
    while (s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == start || (s[start] == '0' && i > start + 1))
        return 0; /* JSON has no leading zeros: "002199" would make the whole text unparsable */
    if (s[i] == '.') {
        size_t f = ++i;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f)
            return 0;
    }
    if (s[i] == 'e' || s[i] == 'E') {
        i += s[i + 1] == '+' || s[i + 1] == '-' ? 2 : 1;
        size_t e = i;
        while (s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == e)
            return 0;
    }
    return s[i] == '\0';
}

/* An array's entries: a JSON array when its keys are 0..n-1, else an object. */
static int array(struct reader *r, yajl_gen g, int depth)
{
    long long count;
    if (depth >= OQ_PHPSER_MAX_DEPTH)
        return fail(r, "arrays nested too deep");
    if (expect(r, ':') != 0 || integer(r, ':', &count) != 0 || expect(r, '{') != 0)
        return OQ_EINVAL;
    if (count < 0 || (size_t)count > r->len)
        return fail(r, "an impossible element count");
    /* Look ahead: are the keys 0..n-1? Only when generating: a check-only
     * pass needs no answer, and skipping it keeps nesting linear, not 2^depth. */
    struct reader probe = *r;
    int is_list = g != NULL;
    for (long long i = 0; i < count && is_list; i++) {
        long long k;
        if (probe.at + 1 < probe.len && probe.s[probe.at] == 'i' && probe.s[probe.at + 1] == ':') {
            probe.at += 2;
            if (integer(&probe, ';', &k) != 0 || k != i)
                is_list = 0;
        } else {
            is_list = 0;
        }
        if (is_list && value(&probe, NULL, depth + 1) != 0)
            is_list = 0;
    }
    if (g != NULL)
        is_list ? yajl_gen_array_open(g) : yajl_gen_map_open(g);
    for (long long i = 0; i < count; i++) {
        if (r->at >= r->len)
            return fail(r, "an array cut short");
        char kind = r->s[r->at++];
        if (kind == 'i') {
            long long k;
            char key[32];
            if (expect(r, ':') != 0 || integer(r, ';', &k) != 0)
                return OQ_EINVAL;
            snprintf(key, sizeof(key), "%lld", k);
            if (g != NULL && !is_list)
                yajl_gen_string(g, (const unsigned char *)key, strlen(key));
        } else if (kind == 's') {
            const char *s;
            size_t n;
            if (string(r, &s, &n) != 0)
                return OQ_EINVAL;
            if (g != NULL)
                yajl_gen_string(g, (const unsigned char *)s, n);
        } else {
            r->at--;
            return fail(r, kind == '}' ? "an array with fewer entries than its count"
                                       : "an array key that is not an integer or a string");
        }
        if (value(r, g, depth + 1) != 0)
            return OQ_EINVAL;
    }
    if (expect(r, '}') != 0)
        return OQ_EINVAL;
    if (g != NULL)
        is_list ? yajl_gen_array_close(g) : yajl_gen_map_close(g);
    return 0;
}

/* One value; g NULL only checks it. */
static int value(struct reader *r, yajl_gen g, int depth)
{
    char buf[64];
    long long n;
    const char *s;
    size_t len;
    if (r->at >= r->len)
        return fail(r, "the data ends where a value was expected");
    switch (r->s[r->at++]) {
    case 'N':
        if (expect(r, ';') != 0)
            return OQ_EINVAL;
        if (g != NULL)
            yajl_gen_null(g);
        return 0;
    case 'b':
        if (expect(r, ':') != 0 || integer(r, ';', &n) != 0)
            return OQ_EINVAL;
        if (n != 0 && n != 1)
            return fail(r, "a boolean that is not 0 or 1");
        if (g != NULL)
            yajl_gen_bool(g, (int)n);
        return 0;
    case 'i':
        if (expect(r, ':') != 0 || integer(r, ';', &n) != 0)
            return OQ_EINVAL;
        if (g != NULL)
            yajl_gen_integer(g, n);
        return 0;
    case 'd':
        if (expect(r, ':') != 0 || token(r, ';', buf, sizeof(buf)) != 0)
            return OQ_EINVAL;
        if (!json_number(buf))
            return fail(r, "a float JSON cannot hold (INF, NAN or malformed)");
        if (g != NULL)
            yajl_gen_number(g, buf, strlen(buf)); /* as written: no rounding */
        return 0;
    case 's':
        if (string(r, &s, &len) != 0)
            return OQ_EINVAL;
        if (g != NULL)
            yajl_gen_string(g, (const unsigned char *)s, len);
        return 0;
    case 'a':
        return array(r, g, depth);
    case 'O':
    case 'C':
        r->at--;
        return fail(r, "a PHP object (not supported)");
    case 'r':
    case 'R':
        r->at--;
        return fail(r, "a PHP reference (not supported)");
    default:
        r->at--;
        return fail(r, "an unknown type");
    }
}

int oq_phpser_to_json(const char *text, size_t len, yajl_gen g, char *err, size_t errlen)
{
    struct reader r = {text, len, 0, err, errlen};
    if (value(&r, g, 0) != 0)
        return OQ_EINVAL;
    if (r.at != len)
        return fail(&r, "data after the value");
    return 0;
}
