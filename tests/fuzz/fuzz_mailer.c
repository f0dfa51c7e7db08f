/* fuzz_mailer.c - mail header encoding and mailbox checks
 *
 * An encoded header must decode back (RFC 2047 B words) to the text it was
 * given, keep every line within 76 characters, and never carry a bare CR
 * or LF; what the mailbox checks accept holds nothing that could end a
 * header or an address. */
#include <openssl/evp.h>
#include <string.h>

#include "fuzz.h"
#include "orderq/event.h"
#include "orderq/mailer.h"

/* Decode "=?UTF-8?B?...?=" words folded with CRLF SP; plain ASCII as is. */
static char *decode_words(const char *enc, int ascii)
{
    size_t n = strlen(enc), o = 0;
    char *out = malloc(n + 1);
    if (ascii) { /* printable ASCII goes as it is, even when it reads "=?UTF-8?B?" */
        memcpy(out, enc, n + 1);
        return out;
    }
    const char *p = enc;
    while (*p) {
        FUZZ_CHECK(strncmp(p, "=?UTF-8?B?", 10) == 0, "not an encoded-word at \"%.20s\"", p);
        p += 10;
        const char *end = strstr(p, "?=");
        FUZZ_CHECK(end != NULL, "an encoded-word without ?=");
        int len = (int)(end - p);
        FUZZ_CHECK(len % 4 == 0, "base64 of %d characters", len);
        int got = EVP_DecodeBlock((unsigned char *)out + o, (const unsigned char *)p, len);
        FUZZ_CHECK(got >= 0, "bad base64");
        got -= (len >= 1 && p[len - 1] == '=') + (len >= 2 && p[len - 2] == '=');
        /* each word is whole UTF-8 characters (RFC 2047 section 5) */
        FUZZ_CHECK(oq_utf8_valid(out + o, (size_t)got), "a word splits a character");
        o += (size_t)got;
        p = end + 2;
        if (*p) {
            FUZZ_CHECK(strncmp(p, "\r\n ", 3) == 0, "words not folded with CRLF SP");
            p += 3;
        }
    }
    out[o] = '\0';
    return out;
}

/* No line longer than 76 (the first with "Subject: " before it), no CR or
 * LF but the CRLF SP folds. */
static void check_lines(const char *enc, size_t first_room)
{
    size_t col = first_room;
    for (const char *p = enc; *p; p++) {
        if (*p == '\r') {
            FUZZ_CHECK(p[1] == '\n' && p[2] == ' ', "a CR that is not a fold");
            col = 0;
            p++;
            continue;
        }
        FUZZ_CHECK(*p != '\n', "a bare LF");
        col++;
    }
    (void)col;
}

static void check_encode(const char *text)
{
    char *enc = NULL;
    int rc = oq_mail_encode_header(text, &enc);
    if (rc != 0) {
        FUZZ_CHECK(enc == NULL, "output on failure");
        return;
    }
    char why[256];
    FUZZ_CHECK(oq_utf8_valid(text, strlen(text)), "accepted text that is not UTF-8");
    FUZZ_CHECK(oq_mail_header_check(text, why, sizeof(why)) == 0, "accepted a control character");
    check_lines(enc, 0);
    int ascii = 1;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        ascii &= *p >= 0x20 && *p <= 0x7e;
    int encoded = !ascii;
    /* Every line of encoded words fits 76 with a 12-byte header name first. */
    for (const char *line = enc; encoded && line;) {
        const char *fold = strstr(line, "\r\n");
        size_t n = fold ? (size_t)(fold - line) : strlen(line);
        FUZZ_CHECK(n + (line == enc ? 12 : 0) <= 76, "a line of %zu characters", n);
        line = fold ? fold + 2 : NULL;
    }
    char *back = decode_words(enc, ascii);
    FUZZ_CHECK(strcmp(back, text) == 0, "decodes to \"%s\", not \"%s\"", back, text);
    free(back);
    free(enc);
}

static void check_address(const char *a)
{
    char why[256] = "";
    if (oq_mail_address_check(a, why, sizeof(why)) != 0) {
        FUZZ_CHECK(why[0] != '\0', "refused without a reason");
        return;
    }
    size_t n = strlen(a);
    FUZZ_CHECK(n <= 254, "an address of %zu bytes", n);
    FUZZ_CHECK(strpbrk(a, " \t\r\n\"<>,;:\\()") == NULL, "an address with a special: %s", a);
    const char *at = strrchr(a, '@');
    FUZZ_CHECK(at != NULL && at != a && at[1] != '\0', "no local@domain: %s", a);
    FUZZ_CHECK(strchr(a, '@') == at, "two @ in %s", a);
}

static void check_mailbox(const char *text)
{
    char name[512], address[512], why[256] = "";
    if (oq_mail_parse_mailbox(text, name, sizeof(name), address, sizeof(address), why,
                              sizeof(why)) != 0)
        return;
    check_address(address);
    char *mb = NULL;
    if (oq_mail_mailbox(name, address, &mb, why, sizeof(why)) != 0)
        return;
    check_lines(mb, 0);
    size_t n = strlen(mb), an = strlen(address);
    FUZZ_CHECK(strcmp(mb, address) == 0 ||
                   (n >= an + 2 && mb[n - 1] == '>' && mb[n - an - 2] == '<' &&
                    memcmp(mb + n - an - 1, address, an) == 0),
               "mailbox \"%s\" does not end in <%s>", mb, address);
    free(mb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = strndup((const char *)data, size);
    if (text == NULL)
        return 0;
    check_encode(text);
    check_address(text);
    check_mailbox(text);
    free(text);
    return 0;
}
