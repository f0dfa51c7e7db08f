/* money.c - decimal text <-> integer minor units, exactly; no floating point */
#include "orderq/money.h"

#include <stdio.h>
#include <string.h>

/* ISO 4217 currencies whose minor unit is not 2 decimal places. */
static const struct {
    const char code[4];
    int exponent;
} exceptions[] = {
    {"BIF", 0}, {"CLP", 0}, {"DJF", 0}, {"GNF", 0}, {"ISK", 0}, {"JPY", 0}, {"KMF", 0},
    {"KRW", 0}, {"PYG", 0}, {"RWF", 0}, {"UGX", 0}, {"UYI", 0}, {"VND", 0}, {"VUV", 0},
    {"XAF", 0}, {"XOF", 0}, {"XPF", 0}, {"BHD", 3}, {"IQD", 3}, {"JOD", 3}, {"KWD", 3},
    {"LYD", 3}, {"OMR", 3}, {"TND", 3}, {"CLF", 4}, {"UYW", 4},
};

int oq_currency_exponent(const char *code)
{
    if (code == NULL || strlen(code) != 3)
        return -1;
    for (int i = 0; i < 3; i++)
        if (code[i] < 'A' || code[i] > 'Z')
            return -1;
    for (size_t i = 0; i < sizeof(exceptions) / sizeof(exceptions[0]); i++)
        if (memcmp(exceptions[i].code, code, 3) == 0)
            return exceptions[i].exponent;
    return 2;
}

int oq_money_mul(int64_t a, int64_t b, int64_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? OQ_EINVAL : 0;
}

int oq_money_add(int64_t *sum, int64_t a)
{
    return __builtin_add_overflow(*sum, a, sum) ? OQ_EINVAL : 0;
}

static int digit(char c)
{
    return c >= '0' && c <= '9';
}

int oq_money_parse(const char *text, size_t len, int exponent, int64_t *minor, char *err,
                   size_t errlen)
{
    int64_t value = 0;
    size_t i = 0, whole_digits = 0;
    int decimals = 0;

    if (exponent < 0 || exponent > 6) {
        snprintf(err, errlen, "unknown currency precision");
        return OQ_EINVAL;
    }
    if (len > 0 && text[0] == '-') {
        snprintf(err, errlen, "amount \"%.*s\" is negative", (int)(len < 40 ? len : 40), text);
        return OQ_EINVAL;
    }
    for (; i < len && digit(text[i]); i++, whole_digits++)
        if (__builtin_mul_overflow(value, 10, &value) ||
            __builtin_add_overflow(value, text[i] - '0', &value))
            goto too_big;
    if (whole_digits == 0)
        goto not_a_number;
    if (i < len && text[i] == '.') {
        i++;
        if (i == len || !digit(text[i]))
            goto not_a_number;
        for (; i < len && digit(text[i]); i++) {
            if (decimals == exponent) {
                if (text[i] != '0') { /* "1.50" is 1.5; "1.505" needs a third place */
                    snprintf(err, errlen,
                             "amount \"%.*s\" has more than %d decimal place%s for its currency",
                             (int)(len < 40 ? len : 40), text, exponent, exponent == 1 ? "" : "s");
                    return OQ_EINVAL;
                }
                continue;
            }
            if (__builtin_mul_overflow(value, 10, &value) ||
                __builtin_add_overflow(value, text[i] - '0', &value))
                goto too_big;
            decimals++;
        }
    }
    if (i != len)
        goto not_a_number;
    for (; decimals < exponent; decimals++)
        if (__builtin_mul_overflow(value, 10, &value))
            goto too_big;
    *minor = value;
    return 0;
not_a_number:
    snprintf(err, errlen, "amount \"%.*s\" is not a plain decimal number like 19.99",
             (int)(len < 40 ? len : 40), text);
    return OQ_EINVAL;
too_big:
    snprintf(err, errlen, "amount \"%.*s\" is too large", (int)(len < 40 ? len : 40), text);
    return OQ_EINVAL;
}

void oq_money_format(int64_t minor, int exponent, char *buf, size_t buflen)
{
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
    uint64_t scale = 1;
    if (exponent > 6)
        exponent = 6; /* no currency has more; keeps the width bounded */
    for (int i = 0; i < exponent; i++)
        scale *= 10;
    if (exponent <= 0)
        snprintf(buf, buflen, "%s%llu", minor < 0 ? "-" : "", (unsigned long long)mag);
    else
        snprintf(buf, buflen, "%s%llu.%0*llu", minor < 0 ? "-" : "",
                 (unsigned long long)(mag / scale), exponent, (unsigned long long)(mag % scale));
}

void oq_money_display(int64_t minor, const char *currency, char *buf, size_t buflen)
{
    static const struct {
        const char *code, *symbol;
    } symbols[] = {{"USD", "$"}, {"EUR", "\xe2\x82\xac"}, {"GBP", "\xc2\xa3"}, {"JPY", "\xc2\xa5"}};
    char plain[48], grouped[64], prefix[8];
    int exponent = oq_currency_exponent(currency);
    oq_money_format(minor, exponent < 0 ? 2 : exponent, plain, sizeof(plain));
    const char *digits = plain[0] == '-' ? plain + 1 : plain;
    size_t whole = strcspn(digits, "."), g = 0;
    for (size_t i = 0; i < whole; i++) {
        if (i > 0 && (whole - i) % 3 == 0)
            grouped[g++] = ',';
        grouped[g++] = digits[i];
    }
    snprintf(grouped + g, sizeof(grouped) - g, "%s", digits + whole);
    snprintf(prefix, sizeof(prefix), "%.3s ", exponent < 0 ? "" : currency);
    for (size_t i = 0; exponent >= 0 && i < sizeof(symbols) / sizeof(symbols[0]); i++)
        if (strcmp(symbols[i].code, currency) == 0)
            snprintf(prefix, sizeof(prefix), "%s", symbols[i].symbol);
    snprintf(buf, buflen, "%s%s%s", plain[0] == '-' ? "-" : "", exponent < 0 ? "" : prefix,
             grouped);
}
