/* mailer.c - checked headers, RFC 2047, Message-IDs, templates, SMTP outcomes */
#include "orderq/mailer.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/event.h"

/* RFC 2047 limits an encoded-word to 75 characters and a line holding one
 * to 76. A word here carries at most WORD_BYTES bytes of text: 39 bytes are
 * 52 base64 characters, a word of 64 ("=?UTF-8?B?" and "?=" are 12), which
 * leaves HEADER_NAME_ROOM for the header's name ("Subject: " is 9) before
 * the first word and a space before each folded one. */
#define WORD_BYTES       39
#define HEADER_NAME_ROOM 12
#define LINE_MAX_CHARS   76

int oq_mail_header_check(const char *value, char *why, size_t whylen)
{
    for (const unsigned char *p = (const unsigned char *)value; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            snprintf(why, whylen, "a header value holds a %s (byte %zu)",
                     *p == '\r'   ? "CR"
                     : *p == '\n' ? "LF"
                                  : "control character",
                     (size_t)(p - (const unsigned char *)value));
            return OQ_EINVAL;
        }
    return 0;
}

static int domain_ok(const char *d)
{
    size_t label = 0;
    int labels = 1;
    if (*d == '\0' || *d == '.' || *d == '-')
        return 0;
    for (const unsigned char *p = (const unsigned char *)d; *p; p++) {
        if (*p == '.') {
            if (label == 0 || p[-1] == '-')
                return 0;
            label = 0;
            labels++;
            continue;
        }
        /* letters, digits, hyphens; bytes >= 0x80: an internationalised name */
        if (!(*p >= 0x80 || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0 && labels >= 2;
}

int oq_mail_address_check(const char *address, char *why, size_t whylen)
{
    size_t n = strlen(address);
    const char *at = strrchr(address, '@');
    if (n == 0 || n > 254 || !oq_utf8_valid(address, n)) {
        snprintf(why, whylen, "address \"%.64s\" is empty, longer than 254 bytes or not UTF-8",
                 address);
        return OQ_EINVAL;
    }
    for (const unsigned char *p = (const unsigned char *)address; *p; p++)
        if (*p <= 0x20 || *p == 0x7f || strchr("\"<>(),;:\\[]", *p) != NULL) {
            snprintf(why, whylen,
                     "address \"%.64s\" holds a space, control or one of \"<>(),;:\\[]", address);
            return OQ_EINVAL;
        }
    if (at == NULL || at == address || (size_t)(at - address) > 64 || strchr(address, '@') != at ||
        !domain_ok(at + 1) || address[0] == '.' || at[-1] == '.' || strstr(address, "..")) {
        snprintf(why, whylen, "address \"%.64s\" is not a mailbox (local@domain.tld)", address);
        return OQ_EINVAL;
    }
    return 0;
}

int oq_mail_parse_mailbox(const char *text, char *name, size_t namelen, char *address,
                          size_t addresslen, char *why, size_t whylen)
{
    const char *lt = strrchr(text, '<');
    size_t n = strlen(text);
    if (oq_mail_header_check(text, why, whylen) != 0)
        return OQ_EINVAL;
    if (lt == NULL) { /* a bare address */
        snprintf(name, namelen, "%s", "");
        if (n >= addresslen) {
            snprintf(why, whylen, "the address is longer than %zu bytes", addresslen - 1);
            return OQ_EINVAL;
        }
        snprintf(address, addresslen, "%s", text);
        return oq_mail_address_check(address, why, whylen);
    }
    if (n == 0 || text[n - 1] != '>') {
        snprintf(why, whylen, "expected \"Name <address>\" or an address, got \"%.64s\"", text);
        return OQ_EINVAL;
    }
    size_t alen = n - (size_t)(lt - text) - 2, nlen = (size_t)(lt - text);
    while (nlen > 0 && text[nlen - 1] == ' ')
        nlen--;
    if (alen >= addresslen || nlen >= namelen) {
        snprintf(why, whylen, "the name or the address is too long");
        return OQ_EINVAL;
    }
    snprintf(name, namelen, "%.*s", (int)nlen, text);
    snprintf(address, addresslen, "%.*s", (int)alen, lt + 1);
    return oq_mail_address_check(address, why, whylen);
}

static int printable_ascii(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return 0;
    return 1;
}

/* Length of the UTF-8 sequence led by c. */
static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* How many bytes of text[i..n) (valid UTF-8) the next encoded-word takes:
 * whole characters only (RFC 2047 section 5), at most WORD_BYTES, at
 * least one character. */
static size_t word_take(const char *text, size_t i, size_t n)
{
    size_t take = 0;
    while (i + take < n) {
        size_t k = utf8_len((unsigned char)text[i + take]);
        if (take + k > WORD_BYTES)
            break;
        take += k;
    }
    return take;
}

/* Copy n bytes of s to out + o, unless out is NULL (measuring). */
static size_t put(char *out, size_t o, const char *s, size_t n)
{
    if (out != NULL)
        memcpy(out + o, s, n);
    return n;
}

/* Write text (n bytes of valid UTF-8) as encoded-words folded with CRLF
 * SP into out, or only measure them when out is NULL: the same walk
 * sizes the buffer and fills it, so the two cannot disagree. Returns the
 * characters written, without a NUL. */
static size_t put_words(char *out, const char *text, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t take = word_take(text, i, n), b64 = 4 * ((take + 2) / 3);
        if (i > 0)
            o += put(out, o, "\r\n ", 3);
        o += put(out, o, "=?UTF-8?B?", 10);
        /* EVP_EncodeBlock also writes a NUL after its b64 characters: the
         * "?=" and the final NUL that follow have room for it. */
        if (out != NULL)
            EVP_EncodeBlock((unsigned char *)out + o, (const unsigned char *)text + i, (int)take);
        o += b64;
        o += put(out, o, "?=", 2);
        i += take;
    }
    return o;
}

int oq_mail_encode_header(const char *text, char **out)
{
    size_t n = strlen(text);
    char why[128];
    *out = NULL;
    if (!oq_utf8_valid(text, n) || oq_mail_header_check(text, why, sizeof(why)) != 0)
        return OQ_EINVAL;
    if (printable_ascii(text))
        return (*out = strdup(text)) != NULL ? 0 : OQ_ENOMEM;
    size_t len = put_words(NULL, text, n);
    char *s = malloc(len + 1);
    if (s == NULL)
        return OQ_ENOMEM;
    s[put_words(s, text, n)] = '\0';
    *out = s;
    return 0;
}

/* Characters on the last line of an encoded value, counting the header
 * name's room when there is only one line. */
static size_t last_line(const char *encoded)
{
    const char *fold = NULL;
    for (const char *p = strstr(encoded, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
        fold = p;
    return fold != NULL ? strlen(fold + 2) : HEADER_NAME_ROOM + strlen(encoded);
}

int oq_mail_mailbox(const char *name, const char *address, char **out, char *why, size_t whylen)
{
    char *encoded = NULL, *s = NULL;
    int rc = OQ_EINVAL;
    *out = NULL;
    if (oq_mail_address_check(address, why, whylen) != 0)
        goto out;
    if (name == NULL || name[0] == '\0') {
        rc = (*out = strdup(address)) != NULL ? 0 : OQ_ENOMEM;
        goto out;
    }
    rc = oq_mail_encode_header(name, &encoded);
    if (rc == OQ_EINVAL)
        snprintf(why, whylen, "the display name for %s is not UTF-8 or holds a control character",
                 address);
    if (rc != 0)
        goto out;
    /* An ASCII name is quoted (it may hold commas); encoded-words are not,
     * and their line stays within 76 characters: the address goes on a
     * folded line of its own when it would not fit after the last word. */
    int quote = printable_ascii(name);
    const char *sep =
        !quote && last_line(encoded) + strlen(" <>") + strlen(address) > LINE_MAX_CHARS ? "\r\n <"
                                                                                        : " <";
    size_t len = strlen(encoded) + strlen(sep) + strlen(address) + strlen(">") + 1, used = 0;
    if (quote) {
        len += 2; /* the quotes */
        for (const char *p = encoded; *p; p++)
            len += *p == '"' || *p == '\\';
    }
    rc = OQ_ENOMEM;
    if ((s = malloc(len)) == NULL)
        goto out;
    if (quote) {
        s[used++] = '"';
        for (const char *p = encoded; *p; p++) {
            if (*p == '"' || *p == '\\')
                s[used++] = '\\';
            s[used++] = *p;
        }
        s[used++] = '"';
    } else {
        used += put(s, used, encoded, strlen(encoded));
    }
    used += put(s, used, sep, strlen(sep));
    used += put(s, used, address, strlen(address));
    used += put(s, used, ">", 2); /* with its NUL: used + 1 == len */
    *out = s;
    s = NULL;
    rc = 0;
out:
    free(encoded);
    free(s);
    return rc;
}

void oq_mail_message_id(const char *handler, const char *effect_key, const char *domain, char *out,
                        size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char hex[33] = "";
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(c, handler, strlen(handler) + 1) == 1 &&
        EVP_DigestUpdate(c, effect_key, strlen(effect_key)) == 1 &&
        EVP_DigestFinal_ex(c, md, &mdlen) == 1)
        for (unsigned i = 0; i < 16 && i < mdlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    EVP_MD_CTX_free(c);
    snprintf(out, outlen, "<%s.%s@%s>", hex, handler, domain);
}

/* ---- templates ------------------------------------------------------------ */

struct segment {
    size_t from, len; /* literal text in t->text, or */
    int slot;         /* >= 0: the value of names[slot] */
    int raw;          /* the name ends in "_html": the handler escaped it already */
};

struct oq_template {
    char *text;
    struct segment *seg;
    size_t n, n_slots;
};

void oq_template_free(struct oq_template *t)
{
    if (t == NULL)
        return;
    free(t->text);
    free(t->seg);
    free(t);
}

static int add_segment(struct oq_template *t, size_t from, size_t len, int slot, int raw,
                       size_t *cap)
{
    if (t->n == *cap) {
        size_t grown = *cap ? *cap * 2 : 16;
        struct segment *s = realloc(t->seg, grown * sizeof(*s));
        if (s == NULL)
            return OQ_ENOMEM;
        t->seg = s;
        *cap = grown;
    }
    t->seg[t->n++] = (struct segment){from, len, slot, raw};
    return 0;
}

static size_t line_of(const char *text, size_t at)
{
    size_t line = 1;
    for (size_t i = 0; i < at; i++)
        line += text[i] == '\n';
    return line;
}

int oq_template_parse(const char *text, const char *what, const char *const *names, size_t n,
                      struct oq_template **out, char *err, size_t errlen)
{
    struct oq_template *t = calloc(1, sizeof(*t));
    size_t cap = 0, i = 0, lit = 0;
    int rc = OQ_ENOMEM;
    *out = NULL;
    if (t == NULL || (t->text = strdup(text)) == NULL) {
        snprintf(err, errlen, "out of memory loading %s", what);
        goto fail;
    }
    t->n_slots = n;
    while (t->text[i] != '\0') {
        if (t->text[i] != '{' || t->text[i + 1] != '{') {
            i++;
            continue;
        }
        char *end = strstr(t->text + i + 2, "}}");
        if (end == NULL) {
            snprintf(err, errlen, "%s, line %zu: \"{{\" without \"}}\"", what, line_of(text, i));
            rc = OQ_EINVAL;
            goto fail;
        }
        size_t a = i + 2, b = (size_t)(end - t->text);
        while (a < b && t->text[a] == ' ')
            a++;
        while (b > a && t->text[b - 1] == ' ')
            b--;
        int slot = -1;
        for (size_t k = 0; k < n && slot < 0; k++)
            if (strlen(names[k]) == b - a && memcmp(names[k], t->text + a, b - a) == 0)
                slot = (int)k;
        if (slot < 0) {
            snprintf(err, errlen, "%s, line %zu: unknown placeholder {{%.*s}}", what,
                     line_of(text, i), (int)(b - a), t->text + a);
            rc = OQ_EINVAL;
            goto fail;
        }
        if ((i > lit && add_segment(t, lit, i - lit, -1, 0, &cap) != 0) ||
            add_segment(t, 0, 0, slot, b - a > 5 && memcmp(t->text + b - 5, "_html", 5) == 0,
                        &cap) != 0) {
            snprintf(err, errlen, "out of memory loading %s", what);
            goto fail;
        }
        i = lit = (size_t)(end - t->text) + 2;
    }
    if (i > lit && add_segment(t, lit, i - lit, -1, 0, &cap) != 0) {
        snprintf(err, errlen, "out of memory loading %s", what);
        goto fail;
    }
    *out = t;
    return 0;
fail:
    oq_template_free(t);
    return rc;
}

int oq_template_load(const char *path, const char *const *names, size_t n, struct oq_template **out,
                     char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    if (oq_read_file(path, 1u << 20, &text, &len) != 0) {
        snprintf(err, errlen, "cannot read template %s", path);
        return OQ_EIO;
    }
    int rc = oq_template_parse(text, path, names, n, out, err, errlen);
    free(text);
    return rc;
}

/* The HTML entity for c, or NULL when c stands for itself. */
static const char *html_entity(char c)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&#34;";
    case '\'':
        return "&#39;";
    default:
        return NULL;
    }
}

/* Write v (escaped for HTML when html) to out, or only measure it when
 * out is NULL. Returns the bytes. */
static size_t put_value(char *out, const char *v, int html)
{
    size_t o = 0;
    for (; *v; v++) {
        const char *rep = html ? html_entity(*v) : NULL;
        size_t n = rep ? strlen(rep) : 1;
        if (out != NULL)
            memcpy(out + o, rep ? rep : v, n);
        o += n;
    }
    return o;
}

static const char *value_of(const struct oq_template *t, const char *const *values, size_t i)
{
    const char *v = values[t->seg[i].slot];
    return v != NULL ? v : "";
}

int oq_template_render(const struct oq_template *t, const char *const *values, int html, char **out)
{
    size_t len = 1;
    for (size_t i = 0; i < t->n; i++)
        len += t->seg[i].slot < 0 ? t->seg[i].len
                                  : put_value(NULL, value_of(t, values, i), html && !t->seg[i].raw);
    char *s = malloc(len);
    size_t o = 0;
    if ((*out = s) == NULL)
        return OQ_ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        const struct segment *g = &t->seg[i];
        if (g->slot < 0) {
            memcpy(s + o, t->text + g->from, g->len);
            o += g->len;
        } else {
            o += put_value(s + o, value_of(t, values, i), html && !g->raw);
        }
    }
    s[o] = '\0';
    return 0;
}

const char *const oq_coupon_mail_names[OQ_COUPON_MAIL_SLOTS] = {
    "customer_name", "coupon_code", "discount", "expires_on", "order_number"};
const char *const oq_invoice_mail_names[OQ_INVOICE_MAIL_SLOTS] = {
    "customer_name", "invoice_number", "order_number", "lines",      "lines_html",
    "subtotal",      "shipping",       "tax",          "grand_total"};

int oq_html_escape(const char *text, char **out)
{
    size_t len = put_value(NULL, text, 1);
    if ((*out = malloc(len + 1)) == NULL)
        return OQ_ENOMEM;
    (*out)[put_value(*out, text, 1)] = '\0';
    return 0;
}

/* ---- SMTP outcomes ---------------------------------------------------------- */

enum oq_smtp_outcome oq_smtp_classify(int curl_code, long smtp_code, int data_sent)
{
    if (curl_code == CURLE_OK)
        return OQ_SMTP_SENT;
    if (smtp_code >= 500 && smtp_code < 600)
        return OQ_SMTP_PERMANENT;
    if (smtp_code >= 400 && smtp_code < 500)
        return OQ_SMTP_TRANSIENT;
    /* No failure reply. Before the final "." nothing was delivered; after
     * it the server may have queued the mail and we never heard. */
    return data_sent ? OQ_SMTP_AMBIGUOUS : OQ_SMTP_TRANSIENT;
}

enum oq_error_class oq_smtp_error_class(enum oq_smtp_outcome outcome)
{
    switch (outcome) {
    case OQ_SMTP_PERMANENT:
        return OQ_ERR_PERMANENT;
    case OQ_SMTP_AMBIGUOUS:
        return OQ_ERR_AMBIGUOUS;
    default:
        return OQ_ERR_TRANSIENT;
    }
}
