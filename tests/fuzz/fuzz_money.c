/* fuzz_money.c - money parse and format: what parses formats back to the same amount */
#include <string.h>

#include "fuzz.h"
#include "orderq/money.h"

/* The text oq_money_format must give for an accepted amount: leading zeros
 * gone ("007" -> "7"), decimals padded or cut to exactly `exponent` places
 * ("1.5" -> "1.50", "1.500" -> "1.50"; the cut digits were zeros). */
static void canonical(const char *text, size_t len, int exponent, char *out, size_t outlen)
{
    size_t dot = 0, o = 0;
    while (dot < len && text[dot] != '.')
        dot++;
    size_t i = 0;
    while (i + 1 < dot && text[i] == '0')
        i++;
    for (; i < dot && o + 1 < outlen; i++)
        out[o++] = text[i];
    if (exponent > 0 && o + 1 < outlen)
        out[o++] = '.';
    for (int d = 0; d < exponent && o + 1 < outlen; d++) {
        size_t at = dot + 1 + (size_t)d;
        out[o++] = at < len ? text[at] : '0';
    }
    out[o] = '\0';
}

static void check_format(int64_t v, int exponent)
{
    char buf[64], err[256] = "";
    int64_t back = -1;
    oq_money_format(v, exponent, buf, sizeof(buf));
    const char *digits = buf[0] == '-' ? buf + 1 : buf;
    FUZZ_CHECK((v < 0) == (buf[0] == '-'), "sign of %lld lost: %s", (long long)v, buf);
    if (oq_money_parse(digits, strlen(digits), exponent, &back, err, sizeof(err)) != 0) {
        /* only |INT64_MIN| does not fit */
        FUZZ_CHECK(v == INT64_MIN, "format(%lld) = %s does not parse: %s", (long long)v, buf, err);
        return;
    }
    FUZZ_CHECK(back == (v < 0 ? -v : v), "format(%lld) = %s parses as %lld", (long long)v, buf,
               (long long)back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int exponent = data[0] % 8; /* 7: out of range, must be refused */
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int64_t minor = -1;
    char err[256] = "", buf[64], want[64], again_err[256];

    if (len >= 8) { /* any int64 formats to text that parses back (its magnitude, if negative) */
        int64_t any;
        memcpy(&any, text, 8);
        check_format(any, exponent > 6 ? 6 : exponent);
    }
    int rc = oq_money_parse(text, len, exponent, &minor, err, sizeof(err));
    if (rc != 0) {
        FUZZ_CHECK(err[0] != '\0', "refused without a reason");
        return 0;
    }
    FUZZ_CHECK(exponent <= 6, "exponent %d accepted", exponent);
    FUZZ_CHECK(minor >= 0, "negative amount %lld from text", (long long)minor);
    oq_money_format(minor, exponent, buf, sizeof(buf));
    canonical(text, len, exponent, want, sizeof(want));
    FUZZ_CHECK(strcmp(buf, want) == 0, "format(parse(x)) is \"%s\", expected \"%s\"", buf, want);

    int64_t again = -1;
    rc = oq_money_parse(buf, strlen(buf), exponent, &again, again_err, sizeof(again_err));
    FUZZ_CHECK(rc == 0 && again == minor, "parse(format(%lld)) = %lld (%s)", (long long)minor,
               (long long)again, again_err);

    /* Display must hold the same digits, grouped, and never cut them. */
    char shown[96];
    oq_money_display(minor,
                     exponent == 0   ? "JPY"
                     : exponent == 3 ? "KWD"
                                     : "CHF",
                     shown, sizeof(shown));
    FUZZ_CHECK(shown[0] != '\0', "empty display");
    return 0;
}
