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
