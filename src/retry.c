/* retry.c - backoff policy: which failures come back, when, and which are parked */
#include "orderq/retry.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "orderq/config.h"

const char *oq_error_class_name(enum oq_error_class cls)
{
    switch (cls) {
    case OQ_ERR_TRANSIENT:
        return "transient";
    case OQ_ERR_PERMANENT:
        return "permanent";
    case OQ_ERR_BAD_INPUT:
        return "bad_input";
    case OQ_ERR_UNKNOWN_EVENT:
        return "unknown_event";
    case OQ_ERR_AMBIGUOUS:
        return "ambiguous";
    case OQ_ERR_TOO_LARGE:
        return "too_large";
    }
    return "permanent";
}

void oq_retry_decide(const struct oq_config *cfg, enum oq_error_class cls, int64_t attempt,
                     struct oq_retry_decision *out)
{
    memset(out, 0, sizeof(*out));
    out->next_attempt = attempt + 1;
    if (cls != OQ_ERR_TRANSIENT || attempt >= cfg->max_attempts || cfg->n_retry_tiers == 0)
        return; /* parked: permanent, or its attempts are spent */
    size_t tier = attempt < 1 ? 0 : (size_t)(attempt - 1);
    if (tier >= cfg->n_retry_tiers)
        tier = cfg->n_retry_tiers - 1; /* the last tier repeats */
    out->retry = 1;
    out->tier = tier;
    out->delay_ms = cfg->retry_tiers_ms[tier];
    oq_duration_format(out->delay_ms, out->tier_name, sizeof(out->tier_name));
}

void oq_retry_wait_at_least(const struct oq_config *cfg, int64_t min_delay_ms,
                            struct oq_retry_decision *d)
{
    if (!d->retry || min_delay_ms <= d->delay_ms)
        return;
    while (d->tier + 1 < cfg->n_retry_tiers && cfg->retry_tiers_ms[d->tier] < min_delay_ms)
        d->tier++;
    d->delay_ms = cfg->retry_tiers_ms[d->tier];
    oq_duration_format(d->delay_ms, d->tier_name, sizeof(d->tier_name));
}

/* Length of the UTF-8 sequence starting with byte c (1 for a stray byte). */
static size_t utf8_len(unsigned char c)
{
    return c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

void oq_cut_utf8(const char *s, char *out, size_t outlen)
{
    size_t n = strlen(s);
    if (outlen == 0)
        return;
    if (n < outlen) {
        memcpy(out, s, n + 1);
        return;
    }
    size_t keep = outlen > 4 ? outlen - 4 : 0, i = 0; /* room for "..." */
    while (i < keep && i + utf8_len((unsigned char)s[i]) <= keep)
        i += utf8_len((unsigned char)s[i]);
    memcpy(out, s, i);
    snprintf(out + i, outlen - i, "%s", outlen > 4 ? "..." : "");
}

/* Is s[i..] a run that changes from message to message: a number (also
 * with letters mixed in, as hex ids and UUIDs)? */
static int variable_token(const char *s, size_t *len)
{
    size_t n = 0, digits = 0;
    while (isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '_' || s[n] == '.') {
        digits += isdigit((unsigned char)s[n]) != 0;
        n++;
    }
    *len = n;
    return digits > 0;
}

void oq_error_fingerprint(const char *error_class, const char *error, char *out, size_t outlen)
{
    char norm[512];
    size_t o = 0;
    for (size_t i = 0; error[i] != '\0' && o + 2 < sizeof(norm);) {
        unsigned char c = (unsigned char)error[i];
        size_t len;
        if (c == '"' || c == '\'') { /* a quoted value: its content varies */
            const char *end = strchr(error + i + 1, (int)c);
            norm[o++] = '?';
            i = end ? (size_t)(end - error) + 1 : strlen(error);
        } else if (isalnum(c) && (i == 0 || !isalnum((unsigned char)error[i - 1])) &&
                   variable_token(error + i, &len)) {
            norm[o++] = '#';
            i += len;
        } else if (isspace(c)) {
            if (o > 0 && norm[o - 1] != ' ')
                norm[o++] = ' ';
            i++;
        } else {
            norm[o++] = (char)c;
            i++;
        }
    }
    while (o > 0 && norm[o - 1] == ' ')
        o--;
    norm[o] = '\0';
    char whole[600];
    snprintf(whole, sizeof(whole), "%s: %s", error_class, norm);
    oq_cut_utf8(whole, out, outlen);
}
