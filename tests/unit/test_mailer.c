/* test_mailer.c - header checks, addresses, RFC 2047, Message-IDs, templates, SMTP outcomes */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/event.h"
#include "orderq/mailer.h"

static void header_injection_is_refused(void **state)
{
    (void)state;
    char why[128];
    const char *bad[] = {"Your coupon\r\nBcc: all@example.com", "a\nb", "a\rb", "nul\x01",
                         "del\x7f"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(oq_mail_header_check(bad[i], why, sizeof(why)), OQ_EINVAL);
    assert_int_equal(oq_mail_header_check("Your coupon\tis here, caf\xc3\xa9", why, sizeof(why)),
                     0);
    char *out = NULL;
    assert_int_equal(oq_mail_encode_header("Hi\r\nBcc: x@example.com", &out), OQ_EINVAL);
    assert_null(out);
    assert_int_equal(
        oq_mail_mailbox("Ann\nBcc: x@example.com", "ann@example.com", &out, why, sizeof(why)),
        OQ_EINVAL);
}

static void addresses_must_be_plausible_mailboxes(void **state)
{
    (void)state;
    char why[256];
    const char *good[] = {"ann@example.com", "a.b+tag@mail.example.co.uk",
                          "x_y-z@sub-d.example.org", "ann@b\xc3\xbc\x63her.example"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_int_equal(oq_mail_address_check(good[i], why, sizeof(why)), 0);
    const char *bad[] = {"",
                         "ann",
                         "@example.com",
                         "ann@",
                         "ann@localhost",
                         "ann@@example.com",
                         "a@b@example.com",
                         "ann example@example.com",
                         "ann@example.com>\r\nBcc: x@y.com",
                         "<ann@example.com>",
                         "ann@example.com,bob@example.com",
                         "ann;@example.com",
                         ".ann@example.com",
                         "ann.@example.com",
                         "a..b@example.com",
                         "ann@-example.com",
                         "ann@example-.com",
                         "ann@exa_mple.com",
                         "ann@example..com",
                         "\"ann\"@example.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (oq_mail_address_check(bad[i], why, sizeof(why)) != OQ_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    char long_local[80];
    memset(long_local, 'a', 65);
    strcpy(long_local + 65, "@example.com");
    assert_int_equal(oq_mail_address_check(long_local, why, sizeof(why)), OQ_EINVAL);
}

/* Decode "=?UTF-8?B?...?=" words (joined by CRLF SP) back to text. */
static char *decode_words(const char *s)
{
    char *out = calloc(1, strlen(s) + 1);
    size_t o = 0;
    while ((s = strstr(s, "=?UTF-8?B?")) != NULL) {
        s += 10;
        const char *end = strstr(s, "?=");
        assert_non_null(end);
        assert_true(end - s + 12 <= 75); /* each word at most 75 bytes */
        unsigned char buf[128];
        int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)(end - s));
        assert_true(n >= 0);
        while (n > 0 && end[-1] == '=' && buf[n - 1] == 0) { /* padding decodes as NULs */
            n--;
            end--;
        }
        memcpy(out + o, buf, (size_t)n);
        o += (size_t)n;
        s = strstr(s, "?=") + 2;
    }
    return out;
}

static void non_ascii_headers_are_rfc2047_words(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(oq_mail_encode_header("Your coupon", &out), 0);
    assert_string_equal(out, "Your coupon"); /* plain ASCII stays as it is */
    free(out);

    assert_int_equal(oq_mail_encode_header("Caf\xc3\xa9", &out), 0);
    assert_string_equal(out, "=?UTF-8?B?Q2Fmw6k=?=");
    free(out);

    /* Long: several words, folded, none splitting a character. */
    const char *text = "\xe4\xbd\xa0\xe7\x9a\x84\xe4\xbc\x98\xe6\x83\xa0\xe5\x88\xb8"
                       "\xe5\xb7\xb2\xe5\x88\xb0 - your coupon for order 9200000217 is here, "
                       "\xe8\xb0\xa2\xe8\xb0\xa2\xef\xbc\x81";
    assert_int_equal(oq_mail_encode_header(text, &out), 0);
    assert_non_null(strstr(out, "?=\r\n =?UTF-8?B?"));
    char *back = decode_words(out);
    assert_string_equal(back, text);
    free(back);
    free(out);

    assert_int_equal(oq_mail_encode_header("bad \xff utf-8", &out), OQ_EINVAL);
}

/* ---- RFC 2047 over generated text ------------------------------------------ */

/* One character of each UTF-8 length (index 1..4), a few of each. */
static const char *const chars_of_len[5][3] = {
    {"", "", ""},
    {"a", "?", "="}, /* '?' and '=' delimit encoded-words: they must stay inside base64 */
    {"\xc3\xa9", "\xc3\x9f", "\xd0\x96"},                         /* é ß Ж */
    {"\xe2\x82\xac", "\xe4\xb8\xad", "\xef\xbc\x81"},             /* € 中 ！ */
    {"\xf0\x9f\x98\x80", "\xf0\x9d\x84\x9e", "\xf0\x9f\x8d\xba"}, /* 😀 𝄞 🍺 */
};

/* The mixes: each says which character length comes at position i. */
enum mix { ALL2, ALL3, ALL4, CYCLE1234, CYCLE4321, ASCII_THEN_4, RANDOM, N_MIXES };

static size_t length_at(enum mix m, size_t i, uint32_t *seed)
{
    switch (m) {
    case ALL2:
        return 2;
    case ALL3:
        return 3;
    case ALL4:
        return 4;
    case CYCLE1234:
        return i % 4 + 1;
    case CYCLE4321:
        return 4 - i % 4;
    case ASCII_THEN_4:
        return i % 7 == 6 ? 4 : 1;
    default:
        *seed = *seed * 1103515245u + 12345u; /* the same text on every run */
        return (*seed >> 16) % 4 + 1;
    }
}

/* Exactly len bytes of UTF-8 in the given mix, never pure ASCII: a
 * character that would not fit is replaced by a shorter one. */
static char *generated_text(enum mix m, size_t len)
{
    char *s = malloc(len + 1);
    uint32_t seed = (uint32_t)(len * 31 + (size_t)m);
    size_t o = 0;
    assert_non_null(s);
    for (size_t i = 0; o < len; i++) {
        size_t k = length_at(m, i, &seed);
        if (k > len - o)
            k = len - o;
        if (o == 0 && k == 1 && len >= 2)
            k = 2; /* one non-ASCII character at least, so the text is encoded */
        memcpy(s + o, chars_of_len[k][i % 3], k);
        o += k;
    }
    s[o] = '\0';
    return s;
}

/* Parse out as encoded-words joined by CRLF SP and nothing else; check
 * each against RFC 2047 (at most 75 characters, whole characters inside,
 * every line at most 76 characters with "Subject: " before the first) and
 * return what they decode to. */
static char *decode_strictly(const char *out, const char *input)
{
    char *text = calloc(1, strlen(out) + 1);
    size_t o = 0, line = strlen("Subject: ");
    const char *p = out;
    assert_non_null(text);
    for (;;) {
        if (strncmp(p, "=?UTF-8?B?", 10) != 0)
            fail_msg("not an encoded-word at byte %zu of the encoding of \"%s\": %s",
                     (size_t)(p - out), input, out);
        const char *b64 = p + 10, *end = strstr(b64, "?=");
        assert_non_null(end);
        size_t word = (size_t)(end + 2 - p), n64 = (size_t)(end - b64);
        if (word > 75)
            fail_msg("an encoded-word of %zu characters (at most 75) for \"%s\"", word, input);
        if (line + word > 76)
            fail_msg("a header line of %zu characters (at most 76) for \"%s\"", line + word, input);
        assert_int_equal(n64 % 4, 0);
        unsigned char buf[64];
        int n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n64);
        assert_true(n >= 0);
        for (size_t pad = 0; pad < 2 && n64 > pad && b64[n64 - 1 - pad] == '='; pad++)
            n--; /* EVP_DecodeBlock counts padding as NUL bytes */
        if (!oq_utf8_valid((const char *)buf, (size_t)n))
            fail_msg("an encoded-word splits a character of \"%s\": %s", input, out);
        memcpy(text + o, buf, (size_t)n);
        o += (size_t)n;
        p = end + 2;
        if (*p == '\0')
            break;
        if (strncmp(p, "\r\n ", 3) != 0)
            fail_msg("words not folded with CRLF SP in the encoding of \"%s\": %s", input, out);
        p += 3;
        line = 1;
    }
    return text;
}

/* Every length from 1 to 400 bytes, in mixes of 1- to 4-byte characters:
 * no overflow (ASan watches), every word within RFC 2047, the words give
 * back the text exactly. */
static void generated_text_encodes_within_rfc2047_and_back(void **state)
{
    (void)state;
    for (int m = 0; m < N_MIXES; m++)
        for (size_t len = 1; len <= 400; len++) {
            char *text = generated_text((enum mix)m, len), *out = NULL;
            assert_int_equal(strlen(text), len);
            assert_int_equal(oq_mail_encode_header(text, &out), 0);
            if (len == 1) { /* ASCII alone stays as it is */
                assert_string_equal(out, text);
            } else {
                char *back = decode_strictly(out, text);
                if (strcmp(back, text) != 0)
                    fail_msg("mix %d, %zu bytes: \"%s\" came back as \"%s\"", m, len, text, back);
                free(back);
            }
            free(out);
            free(text);
        }
}

/* The cases of issue 10: a customer name of 111 "é", and the 48-byte
 * coupon code of €, é, 😀 and ASCII inside the subject. */
static void issue_10_texts_encode(void **state)
{
    (void)state;
    char name[223], *out = NULL;
    for (size_t i = 0; i < 111; i++)
        memcpy(name + 2 * i, "\xc3\xa9", 2);
    name[222] = '\0';
    assert_int_equal(oq_mail_encode_header(name, &out), 0);
    char *back = decode_strictly(out, name);
    assert_string_equal(back, name);
    free(back);
    free(out);

    /* 3 x "€é😀A" (10 bytes each), 😀, €, é, then 9 ASCII: 48 bytes; in the
     * subject the 😀 starts 42 bytes in, so a word cannot end at 45 */
    const char *code = "\xe2\x82\xac\xc3\xa9\xf0\x9f\x98\x80"
                       "A\xe2\x82\xac\xc3\xa9\xf0\x9f\x98\x80"
                       "A\xe2\x82\xac\xc3\xa9\xf0\x9f\x98\x80"
                       "A\xf0\x9f\x98\x80\xe2\x82\xac\xc3\xa9"
                       "-123456xy";
    char subject[256];
    assert_int_equal(strlen(code), 48);
    snprintf(subject, sizeof(subject), "Your coupon %s: $10.00 off your next order", code);
    assert_int_equal(oq_mail_encode_header(subject, &out), 0);
    back = decode_strictly(out, subject);
    assert_string_equal(back, subject);
    free(back);
    free(out);

    /* A mailbox with a long encoded name keeps its lines within 76 too. */
    char why[128];
    assert_int_equal(oq_mail_mailbox(name, "ann@example.com", &out, why, sizeof(why)), 0);
    size_t line = strlen("To: ");
    for (const char *p = out; *p; p++) {
        if (p[0] == '\r' && p[1] == '\n') {
            line = 0;
            p++;
            continue;
        }
        if (++line > 76)
            fail_msg("a To line over 76 characters: %s", out);
    }
    assert_non_null(strstr(out, "<ann@example.com>"));
    free(out);
}

static void mailboxes_quote_or_encode_the_name(void **state)
{
    (void)state;
    char *out = NULL, why[128];
    assert_int_equal(
        oq_mail_mailbox("Ann \"A\" Smith, Jr", "ann@example.com", &out, why, sizeof(why)), 0);
    assert_string_equal(out, "\"Ann \\\"A\\\" Smith, Jr\" <ann@example.com>");
    free(out);
    assert_int_equal(oq_mail_mailbox("Jos\xc3\xa9", "jose@example.com", &out, why, sizeof(why)), 0);
    assert_string_equal(out, "=?UTF-8?B?Sm9zw6k=?= <jose@example.com>");
    free(out);
    assert_int_equal(oq_mail_mailbox(NULL, "ann@example.com", &out, why, sizeof(why)), 0);
    assert_string_equal(out, "ann@example.com");
    free(out);
    assert_int_equal(oq_mail_mailbox("Ann", "not an address", &out, why, sizeof(why)), OQ_EINVAL);
}

static void message_ids_are_the_same_for_one_effect(void **state)
{
    (void)state;
    char a[128], b[128], c[128];
    oq_mail_message_id("invoice_email", "invoice:501", "shop.example", a, sizeof(a));
    oq_mail_message_id("invoice_email", "invoice:501", "shop.example", b, sizeof(b));
    oq_mail_message_id("invoice_email", "invoice:502", "shop.example", c, sizeof(c));
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(a[0], '<');
    assert_non_null(strstr(a, ".invoice_email@shop.example>"));
    assert_int_equal(strlen(a), 1 + 32 + strlen(".invoice_email@shop.example>"));
}

static const char *const names[] = {"customer_name", "coupon_code", "order_id"};

static void templates_fill_in_and_escape(void **state)
{
    (void)state;
    struct oq_template *t = NULL;
    char err[256], *out = NULL;
    assert_int_equal(oq_template_parse("Dear {{customer_name}},\nyour code: {{ coupon_code }} "
                                       "(order {{order_id}}). {{coupon_code}}!",
                                       "coupon.txt", names, 3, &t, err, sizeof(err)),
                     0);
    const char *values[] = {"Ann <b>&</b> \"Bo\"", "MUG-AB12", "9200000217"};
    assert_int_equal(oq_template_render(t, values, 0, &out), 0);
    assert_string_equal(out, "Dear Ann <b>&</b> \"Bo\",\nyour code: MUG-AB12 (order 9200000217). "
                             "MUG-AB12!");
    free(out);
    assert_int_equal(oq_template_render(t, values, 1, &out), 0);
    assert_string_equal(out, "Dear Ann &lt;b&gt;&amp;&lt;/b&gt; &#34;Bo&#34;,\nyour code: MUG-AB12 "
                             "(order 9200000217). MUG-AB12!");
    free(out);
    oq_template_free(t);

    assert_int_equal(oq_template_parse("no placeholders", "x", names, 3, &t, err, sizeof(err)), 0);
    assert_int_equal(oq_template_render(t, values, 1, &out), 0);
    assert_string_equal(out, "no placeholders");
    free(out);
    oq_template_free(t);
}

static void html_built_by_the_handler_is_not_escaped_twice(void **state)
{
    (void)state;
    static const char *const inv_names[] = {"customer_name", "lines_html"};
    struct oq_template *t = NULL;
    char err[256], *out = NULL, *escaped = NULL;
    assert_int_equal(oq_template_parse("<p>{{customer_name}}</p><table>{{ lines_html }}</table>",
                                       "invoice.html", inv_names, 2, &t, err, sizeof(err)),
                     0);
    assert_int_equal(oq_html_escape("Mug <Big> & \"Co\"", &escaped), 0);
    assert_string_equal(escaped, "Mug &lt;Big&gt; &amp; &#34;Co&#34;");
    char row[128];
    snprintf(row, sizeof(row), "<tr><td>%s</td></tr>", escaped);
    const char *values[] = {"<script>", row};
    assert_int_equal(oq_template_render(t, values, 1, &out), 0);
    assert_string_equal(out, "<p>&lt;script&gt;</p><table><tr><td>Mug &lt;Big&gt; &amp; "
                             "&#34;Co&#34;</td></tr></table>");
    free(out);
    free(escaped);
    oq_template_free(t);
}

/* The templates shipped in templates/ load with the names the handlers fill. */
static void shipped_templates_load(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *const *names;
        size_t n;
    } files[] = {
        {"coupon.txt", oq_coupon_mail_names, OQ_COUPON_MAIL_SLOTS},
        {"coupon.html", oq_coupon_mail_names, OQ_COUPON_MAIL_SLOTS},
        {"invoice.txt", oq_invoice_mail_names, OQ_INVOICE_MAIL_SLOTS},
        {"invoice.html", oq_invoice_mail_names, OQ_INVOICE_MAIL_SLOTS},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[1024], err[512];
        struct oq_template *t = NULL;
        snprintf(path, sizeof(path), "%s/templates/%s", ORDERQ_SOURCE_DIR, files[i].file);
        if (oq_template_load(path, files[i].names, files[i].n, &t, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        oq_template_free(t);
    }
}

static void a_placeholder_no_one_fills_is_a_load_error(void **state)
{
    (void)state;
    struct oq_template *t = NULL;
    char err[256];
    assert_int_equal(oq_template_parse("Hi {{customer_name}}\nyour {{discount}} off", "coupon.html",
                                       names, 3, &t, err, sizeof(err)),
                     OQ_EINVAL);
    assert_null(t);
    assert_string_equal(err, "coupon.html, line 2: unknown placeholder {{discount}}");
    assert_int_equal(
        oq_template_parse("Hi {{customer_name", "coupon.txt", names, 3, &t, err, sizeof(err)),
        OQ_EINVAL);
    assert_string_equal(err, "coupon.txt, line 1: \"{{\" without \"}}\"");
    assert_int_equal(oq_template_load("/nonexistent/coupon.txt", names, 3, &t, err, sizeof(err)),
                     OQ_EIO);
}

static void smtp_replies_are_classified(void **state)
{
    (void)state;
    assert_int_equal(oq_smtp_classify(CURLE_OK, 250, 1), OQ_SMTP_SENT);
    assert_int_equal(oq_smtp_classify(CURLE_SEND_ERROR, 421, 0), OQ_SMTP_TRANSIENT);
    assert_int_equal(oq_smtp_classify(CURLE_RECV_ERROR, 451, 1), OQ_SMTP_TRANSIENT);
    assert_int_equal(oq_smtp_classify(CURLE_SEND_ERROR, 550, 0), OQ_SMTP_PERMANENT);
    assert_int_equal(oq_smtp_classify(CURLE_SEND_ERROR, 552, 1), OQ_SMTP_PERMANENT);
    assert_int_equal(oq_smtp_classify(CURLE_COULDNT_CONNECT, 0, 0), OQ_SMTP_TRANSIENT);
    assert_int_equal(oq_smtp_classify(CURLE_OPERATION_TIMEDOUT, 220, 0), OQ_SMTP_TRANSIENT);
    /* the data went out ("." included), then nothing: it may have been sent */
    assert_int_equal(oq_smtp_classify(CURLE_OPERATION_TIMEDOUT, 354, 1), OQ_SMTP_AMBIGUOUS);
    assert_int_equal(oq_smtp_classify(CURLE_GOT_NOTHING, 0, 1), OQ_SMTP_AMBIGUOUS);
    assert_int_equal(oq_smtp_error_class(OQ_SMTP_TRANSIENT), OQ_ERR_TRANSIENT);
    assert_int_equal(oq_smtp_error_class(OQ_SMTP_PERMANENT), OQ_ERR_PERMANENT);
    assert_int_equal(oq_smtp_error_class(OQ_SMTP_AMBIGUOUS), OQ_ERR_AMBIGUOUS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_injection_is_refused),
        cmocka_unit_test(addresses_must_be_plausible_mailboxes),
        cmocka_unit_test(non_ascii_headers_are_rfc2047_words),
        cmocka_unit_test(generated_text_encodes_within_rfc2047_and_back),
        cmocka_unit_test(issue_10_texts_encode),
        cmocka_unit_test(mailboxes_quote_or_encode_the_name),
        cmocka_unit_test(message_ids_are_the_same_for_one_effect),
        cmocka_unit_test(templates_fill_in_and_escape),
        cmocka_unit_test(html_built_by_the_handler_is_not_escaped_twice),
        cmocka_unit_test(shipped_templates_load),
        cmocka_unit_test(a_placeholder_no_one_fills_is_a_load_error),
        cmocka_unit_test(smtp_replies_are_classified),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
