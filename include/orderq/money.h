/* money.h - decimal text <-> integer minor units, exactly; no floating point
 *
 * "19.99" USD is 1999 minor units; "500" JPY is 500. Amounts come from JSON
 * either as strings ("19.99") or as numbers (19.99): both arrive here as the
 * text the shop wrote, so nothing is ever rounded through a double.
 */
#ifndef ORDERQ_MONEY_H
#define ORDERQ_MONEY_H

#include <stddef.h>
#include <stdint.h>

#include "orderq/common.h"

/* Decimal places of an ISO 4217 currency code ("USD" 2, "JPY" 0, "KWD" 3).
 * Any other three upper-case letters: 2. Returns -1 when code is not three
 * upper-case letters. */
int oq_currency_exponent(const char *code);

/* Parse len bytes of text ("19.99", "20", "0.5") as an amount with at most
 * `exponent` decimals into *minor. Leading '+' , spaces, exponents (1e3),
 * negative amounts, more decimals than the currency has (with non-zero
 * digits: "1.50" is fine for 2 decimals, "1.505" is not) and overflow are
 * errors. Returns 0 or OQ_EINVAL with the reason in err. */
OQ_WUR int oq_money_parse(const char *text, size_t len, int exponent, int64_t *minor, char *err,
                          size_t errlen);

/* minor units as decimal text: (1999, 2) -> "19.99", (-5, 2) -> "-0.05". */
void oq_money_format(int64_t minor, int exponent, char *buf, size_t buflen);

/* minor units for people: the symbol where it is unambiguous ("$1,234.56"
 * USD, "€69.80" EUR, "£5.00" GBP, "¥1,200" JPY), else the code ("CHF
 * 12.50"); thousands grouped with ",", "." before the decimals, "-" first. */
void oq_money_display(int64_t minor, const char *currency, char *buf, size_t buflen);

/* *out = a * b, or OQ_EINVAL on overflow. */
OQ_WUR int oq_money_mul(int64_t a, int64_t b, int64_t *out);
/* *sum += a, or OQ_EINVAL on overflow. */
OQ_WUR int oq_money_add(int64_t *sum, int64_t a);

#endif
