/* test_mime.c - the bytes of a coupon mail and an invoice mail, against golden files
 *
 * The mails are built as the handlers build them (shipped templates, the
 * invoice parser, oq_mailer_send) and sent to an SMTP server in a thread of
 * this test on 127.0.0.1, which keeps what came after DATA. Two parts
 * differ on every run and are normalised before comparing: the MIME
 * boundary curl draws and the Date header. Everything else, headers,
 * RFC 2047 words, the Message-ID, the parts and their encoding, must match
 * tests/unit/golden/ (.eml) byte for byte. ORDERQ_UPDATE_GOLDEN=1 rewrites
 * them (then read the diff before committing it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "orderq/config.h"
#include "orderq/invoice.h"
#include "orderq/mailer.h"
#include "orderq/money.h"

/* ---- an SMTP server that keeps one message ---------------------------------- */

struct sink {
    int listener;
    int port;
    pthread_t thread;
    char data[65536]; /* what came between DATA and the final "." */
    size_t len;
};

static int read_line(int fd, char *line, size_t cap)
{
    size_t n = 0;
    char c;
    while (n + 1 < cap && recv(fd, &c, 1, 0) == 1) {
        line[n++] = c;
        if (c == '\n')
            break;
    }
    line[n] = '\0';
    return (int)n;
}

static void say(int fd, const char *text)
{
    ssize_t n = send(fd, text, strlen(text), 0);
    (void)n;
}

static void *sink_main(void *arg)
{
    struct sink *s = arg;
    char line[4096];
    int fd = accept(s->listener, NULL, NULL);
    if (fd < 0)
        return NULL;
    say(fd, "220 sink.test ESMTP\r\n");
    while (read_line(fd, line, sizeof(line)) > 0) {
        if (strncmp(line, "EHLO", 4) == 0 || strncmp(line, "HELO", 4) == 0) {
            say(fd, "250 sink.test\r\n");
        } else if (strncmp(line, "DATA", 4) == 0) {
            say(fd, "354 go ahead\r\n");
            s->len = 0;
            while (read_line(fd, line, sizeof(line)) > 0 && strcmp(line, ".\r\n") != 0) {
                size_t n = strlen(line);
                if (s->len + n < sizeof(s->data)) {
                    memcpy(s->data + s->len, line, n);
                    s->len += n;
                }
            }
            s->data[s->len] = '\0';
            say(fd, "250 2.0.0 queued as GOLDEN\r\n");
        } else if (strncmp(line, "QUIT", 4) == 0) {
            say(fd, "221 bye\r\n");
            break;
        } else {
            say(fd, "250 ok\r\n");
        }
    }
    close(fd);
    return NULL;
}

static void sink_start(struct sink *s)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t alen = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->listener = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->listener >= 0);
    assert_int_equal(bind(s->listener, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->listener, 1), 0);
    assert_int_equal(getsockname(s->listener, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, sink_main, s), 0);
}

static void sink_stop(struct sink *s)
{
    pthread_join(s->thread, NULL);
    close(s->listener);
}

/* ---- normalising and comparing ----------------------------------------------- */

/* s with every "needle" replaced by "with"; the caller frees it. */
static char *replace_all(const char *s, const char *needle, const char *with)
{
    size_t nl = strlen(needle), wl = strlen(with), n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + nl, needle))
        n++;
    char *out = malloc(strlen(s) + n * (wl > nl ? wl - nl : 0) + 1), *o = out;
    assert_non_null(out);
    for (const char *p = s, *q; (q = strstr(p, needle)) != NULL; p = q + nl) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, with, wl);
        o += wl;
        s = q + nl;
    }
    strcpy(o, s);
    return out;
}

/* The boundary curl drew and the Date line, made the same on every run. */
static char *normalised(const char *mail)
{
    char boundary[128] = "", *out, *p;
    const char *b = strstr(mail, "boundary=");
    assert_non_null(b);
    b += strlen("boundary=");
    size_t n = strcspn(b, "\r\n;\"");
    assert_true(n > 0 && n < sizeof(boundary));
    memcpy(boundary, b, n);
    boundary[n] = '\0';
    out = replace_all(mail, boundary, "BOUNDARY");
    if ((p = strstr(out, "Date: ")) != NULL) {
        char *end = strstr(p, "\r\n");
        assert_non_null(end);
        memset(p + 6, 'D', (size_t)(end - p - 6)); /* keeps the length */
    }
    return out;
}

static void expect_golden(const char *name, const char *mail)
{
    char path[1024];
    char *got = normalised(mail);
    snprintf(path, sizeof(path), "%s/tests/unit/golden/%s", ORDERQ_SOURCE_DIR, name);
    const char *update = getenv("ORDERQ_UPDATE_GOLDEN");
    if (update != NULL && strcmp(update, "1") == 0) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("no golden file %s (ORDERQ_UPDATE_GOLDEN=1 writes it)", path);
    static char want[65536];
    size_t n = fread(want, 1, sizeof(want) - 1, f);
    fclose(f);
    want[n] = '\0';
    if (strcmp(want, got) != 0)
        fail_msg("%s differs from what was sent:\n%s", name, got);
    free(got);
}

/* The part of type `type` in mail, base64-decoded (the caller frees it). */
static char *decoded_part(const char *mail, const char *type)
{
    char header[128];
    snprintf(header, sizeof(header),
             "Content-Type: %s; charset=utf-8\r\n"
             "Content-Transfer-Encoding: base64\r\n\r\n",
             type);
    const char *p = strstr(mail, header);
    assert_non_null(p);
    p += strlen(header);
    const char *end = strstr(p, "\r\n--");
    assert_non_null(end);
    char *b64 = malloc((size_t)(end - p) + 1), *o = b64;
    assert_non_null(b64);
    for (; p < end; p++)
        if (*p != '\r' && *p != '\n')
            *o++ = *p;
    *o = '\0';
    size_t len = strlen(b64);
    unsigned char *out = malloc(len + 1);
    assert_non_null(out);
    int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
    assert_true(n >= 0);
    while (len > 0 && b64[--len] == '=')
        n--; /* EVP_DecodeBlock counts the padding */
    out[n] = '\0';
    free(b64);
    return (char *)out;
}

/* Each part decodes to the rendered text with CRLF line ends. */
static void expect_parts(const char *mail, const char *text, const char *html)
{
    char *want_text = replace_all(text, "\n", "\r\n"), *want_html = replace_all(html, "\n", "\r\n");
    char *got_text = decoded_part(mail, "text/plain"), *got_html = decoded_part(mail, "text/html");
    assert_string_equal(got_text, want_text);
    assert_string_equal(got_html, want_html);
    free(want_text);
    free(want_html);
    free(got_text);
    free(got_html);
}

/* ---- the mails ------------------------------------------------------------------ */

static char *render(const char *file, const char *const *names, size_t n, const char *const *values,
                    int html)
{
    char path[1024], err[512];
    struct oq_template *t = NULL;
    char *out = NULL;
    snprintf(path, sizeof(path), "%s/templates/%s", ORDERQ_SOURCE_DIR, file);
    if (oq_template_load(path, names, n, &t, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(oq_template_render(t, values, html, &out), 0);
    oq_template_free(t);
    return out;
}

/* Send mail through an oq_mailer to a new sink; the sink's copy in out. */
static void send_to_sink(const struct oq_mail *mail, char *out, size_t outlen)
{
    struct sink s;
    struct oq_config *cfg = oq_config_new();
    struct oq_mailer *m = NULL;
    char url[64], err[512], reply[512];
    memset(&s, 0, sizeof(s));
    sink_start(&s);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s.port);
    assert_non_null(cfg);
    assert_int_equal(oq_config_set(cfg, "smtp_url", url, OQ_SRC_FLAG, "test", err, sizeof(err)), 0);
    assert_int_equal(oq_config_set(cfg, "smtp_tls", "off", OQ_SRC_FLAG, "test", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_set(cfg, "smtp_from", "Mug Shop <shop@mugs.example>", OQ_SRC_FLAG,
                                   "test", err, sizeof(err)),
                     0);
    assert_int_equal(oq_mailer_new(cfg, &m, err, sizeof(err)), 0);
    enum oq_smtp_outcome outcome = oq_mailer_send(m, mail, reply, sizeof(reply));
    if (outcome != OQ_SMTP_SENT)
        fail_msg("send: outcome %d: %s", (int)outcome, reply);
    assert_non_null(strstr(reply, "250 2.0.0 queued as GOLDEN"));
    oq_mailer_free(m); /* says QUIT: the sink's thread ends */
    sink_stop(&s);
    oq_config_free(cfg);
    snprintf(out, outlen, "%s", s.data);
}

static void coupon_mail_bytes(void **state)
{
    (void)state;
    static char sent[65536];
    const char *values[OQ_COUPON_MAIL_SLOTS] = {"José Müller", "MUG-7QK2M9XA", "12.5%",
                                                "2027-01-31", "9200000217"};
    char *text = render("coupon.txt", oq_coupon_mail_names, OQ_COUPON_MAIL_SLOTS, values, 0);
    char *html = render("coupon.html", oq_coupon_mail_names, OQ_COUPON_MAIL_SLOTS, values, 1);
    struct oq_mail mail = {.to_name = "José Müller",
                           .to_address = "jose@example.com",
                           .subject = "Your coupon MUG-7QK2M9XA: 12.5% off your next order",
                           .text = text,
                           .html = html,
                           .handler = "coupon_mail",
                           .effect_key = "coupon:MUG-7QK2M9XA",
                           .event = "9200000217_processing_1_14"};
    send_to_sink(&mail, sent, sizeof(sent));
    expect_golden("coupon.eml", sent);
    expect_parts(sent, text, html);
    assert_non_null(strstr(sent, "To: =?UTF-8?B?"));
    free(text);
    free(html);
}

static void invoice_mail_bytes(void **state)
{
    (void)state;
    static char sent[65536];
    static const char data[] =
        "{\"invoice_id\": \"501\", \"increment_id\": \"INV-000501\", \"order_id\": \"9200000217\","
        " \"currency\": \"EUR\", \"customer\": {\"email\": \"ann@example.com\", \"name\": \"Ann "
        "<Lee>\"}, \"items\": [{\"sku\": \"MUG-1\", \"name\": \"Tasse \\\"Blau\\\" & Weiß\","
        " \"qty\": 2, \"price\": \"30.00\"}, {\"sku\": \"SPOON\", \"qty\": 1, \"price\": "
        "\"0.00\"}],"
        " \"totals\": {\"subtotal\": \"60.00\", \"tax\": \"4.80\", \"shipping\": \"5.00\","
        " \"grand_total\": \"69.80\"}}";
    char err[512], money[4][48], *lines = NULL, *lines_html = NULL;
    yajl_val tree = yajl_tree_parse(data, err, sizeof(err));
    struct oq_invoice inv;
    assert_non_null(tree);
    assert_int_equal(oq_invoice_parse(tree, &inv, err, sizeof(err)), 0);
    assert_int_equal(oq_invoice_lines_text(&inv, &lines), 0);
    assert_int_equal(oq_invoice_lines_html(&inv, &lines_html), 0);
    oq_money_display(inv.subtotal, inv.currency, money[0], sizeof(money[0]));
    oq_money_display(inv.shipping, inv.currency, money[1], sizeof(money[1]));
    oq_money_display(inv.tax, inv.currency, money[2], sizeof(money[2]));
    oq_money_display(inv.grand_total, inv.currency, money[3], sizeof(money[3]));
    const char *values[OQ_INVOICE_MAIL_SLOTS] = {
        inv.customer_name, inv.increment_id, inv.order_id, lines,   lines_html,
        money[0],          money[1],         money[2],     money[3]};
    char *text = render("invoice.txt", oq_invoice_mail_names, OQ_INVOICE_MAIL_SLOTS, values, 0);
    char *html = render("invoice.html", oq_invoice_mail_names, OQ_INVOICE_MAIL_SLOTS, values, 1);
    struct oq_mail mail = {.to_name = inv.customer_name,
                           .to_address = inv.customer_email,
                           .subject = "Invoice INV-000501 for your order 9200000217",
                           .text = text,
                           .html = html,
                           .handler = "invoice_mail",
                           .effect_key = "invoice:501",
                           .event = "invoice_501_created"};
    send_to_sink(&mail, sent, sizeof(sent));
    expect_golden("invoice.eml", sent);
    expect_parts(sent, text, html);
    assert_non_null(strstr(html, "Tasse &#34;Blau&#34; &amp; Wei\xc3\x9f"));
    free(text);
    free(html);
    free(lines);
    free(lines_html);
    oq_invoice_clear(&inv);
    yajl_tree_free(tree);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(coupon_mail_bytes),
        cmocka_unit_test(invoice_mail_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
