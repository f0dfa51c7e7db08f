/* trust.c - whose x-orderq-* headers orderq believes */
#include "orderq/trust.h"

#include <stdlib.h>
#include <string.h>

#include "orderq/config.h"
#include "orderq/url.h"

int oq_trust_own_user(const struct oq_config *cfg, char **out)
{
    struct oq_amqp_url u;
    char err[OQ_ERRLEN];
    *out = NULL;
    int rc = oq_amqp_url_parse(cfg->amqp_url, &u, err, sizeof(err));
    if (rc != 0)
        return rc;
    *out = strdup(u.user);
    oq_amqp_url_clear(&u);
    return *out != NULL ? 0 : OQ_ENOMEM;
}

int oq_trust_published_by(const amqp_basic_properties_t *p, const char *user)
{
    if (user == NULL || !(p->_flags & AMQP_BASIC_USER_ID_FLAG))
        return 0;
    return p->user_id.len == strlen(user) && memcmp(p->user_id.bytes, user, p->user_id.len) == 0;
}

static int key_is(amqp_bytes_t key, const char *name)
{
    return key.len == strlen(name) && memcmp(key.bytes, name, key.len) == 0;
}

/* Appends name to out (*used bytes so far), ", " before all but the
 * first, a byte that is not printable ASCII as '?' (the list goes into a
 * log line); once one does not fit, "..." ends the list (*cut). */
static void append(char *out, size_t outlen, size_t *used, int *cut, amqp_bytes_t name)
{
    const char *sep = *used > 0 ? ", " : "";
    size_t seplen = strlen(sep);
    if (*cut)
        return;
    if (*used + seplen + name.len + 4 > outlen) { /* keep room for "..." and the NUL */
        *cut = 1;
        if (*used + 4 <= outlen)
            memcpy(out + *used, "...", 4);
        return;
    }
    memcpy(out + *used, sep, seplen);
    *used += seplen;
    for (size_t i = 0; i < name.len; i++) { /* orderq's names are ASCII: the rest is forged */
        unsigned char c = ((const unsigned char *)name.bytes)[i];
        out[(*used)++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[*used] = '\0';
}

size_t oq_trust_orderq_headers(const amqp_basic_properties_t *p, char *out, size_t outlen)
{
    static const char prefix[] = "x-orderq-";
    size_t n = 0, used = 0;
    int cut = 0;
    if (outlen > 0)
        out[0] = '\0';
    if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
        return 0;
    for (int i = 0; i < p->headers.num_entries; i++) {
        amqp_bytes_t key = p->headers.entries[i].key;
        if (key.len < sizeof(prefix) - 1 || memcmp(key.bytes, prefix, sizeof(prefix) - 1) != 0 ||
            key_is(key, "x-orderq-outbox-id") || key_is(key, "x-orderq-legacy-id"))
            continue;
        if (outlen > 0)
            append(out, outlen, &used, &cut, key);
        n++;
    }
    return n;
}
