/* test_mime.c - the bytes of a coupon mail and an invoice mail, against golden files
 *
 * An event goes through the mail handler itself (prepare renders the
 * shipped templates, perform sends with oq_mailer) to an SMTP server in a
 * thread of this test on 127.0.0.1, which keeps what came after DATA. Two parts
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

#include "orderq/config.h"
#include "orderq/event.h"
#include "orderq/handler.h"
#include "orderq/mailer.h"

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

/* Every line of a decoded part ends in CRLF, and it holds each of want. */
static void expect_part(const char *mail, const char *type, const char *const *want, size_t n)
{
    char *part = decoded_part(mail, type);
    for (const char *p = strchr(part, '\n'); p != NULL; p = strchr(p + 1, '\n'))
        if (p == part || p[-1] != '\r')
            fail_msg("%s: a bare LF at byte %td", type, p - part);
    for (size_t i = 0; i < n; i++)
        if (strstr(part, want[i]) == NULL)
            fail_msg("%s: [%s] not in:\n%s", type, want[i], part);
    free(part);
}

/* The mail handler for event_json (code: its event code), made with
 * settings pointing at a new sink: prepare, perform, and what the sink got
 * in out. */
static void send_through_handler(const char *code, const char *event_json, char *out, size_t outlen)
{
    struct sink s;
    struct oq_config *cfg = oq_config_new();
    struct oq_handler h;
    struct oq_event ev;
    void *plan = NULL;
    char url[64], err[512], key[192] = "", result[OQ_RESULT_LEN], reply[512];
    int64_t retry_after;
    memset(&s, 0, sizeof(s));
    sink_start(&s);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", s.port);
    assert_non_null(cfg);
    static const char *const settings[][2] = {{"smtp_tls", "off"},
                                              {"smtp_from", "Mug Shop <shop@mugs.example>"},
                                              {"template_dir", ORDERQ_SOURCE_DIR "/templates"}};
    assert_int_equal(oq_config_set(cfg, "smtp_url", url, OQ_SRC_FLAG, "test", err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        if (oq_config_set(cfg, settings[i][0], settings[i][1], OQ_SRC_FLAG, "test", err,
                          sizeof(err)) != 0)
            fail_msg("%s", err);
    int rc = strcmp(code, "coupon.email") == 0
                 ? oq_handler_coupon_mail_new(cfg, &h, err, sizeof(err))
                 : oq_handler_invoice_mail_new(cfg, code, &h, err, sizeof(err));
    if (rc != 0)
        fail_msg("handler: %s", err);
    if (oq_event_decode(event_json, strlen(event_json), NULL, &ev, err, sizeof(err)) != 0 ||
        h.prepare(h.state, &ev, 1, &plan, key, sizeof(key), result, sizeof(result), err,
                  sizeof(err)) != 0)
        fail_msg("prepare: %s", err);
    struct oq_effect e = {h.name, key, ev.identifier, ev.canonical_code};
    if (h.perform(h.state, plan, &e, reply, sizeof(reply), &retry_after) != OQ_EFFECT_DONE)
        fail_msg("perform: %s", reply);
    assert_non_null(strstr(reply, "250 2.0.0 queued as GOLDEN"));
    h.free_plan(plan);
    h.free_state(h.state); /* its mailer says QUIT: the sink's thread ends */
    sink_stop(&s);
    oq_event_clear(&ev);
    oq_config_free(cfg);
    snprintf(out, outlen, "%s", s.data);
}

static void coupon_mail_bytes(void **state)
{
    (void)state;
    static char sent[65536];
    send_through_handler(
        "coupon.email",
        "{\"event_code\": \"coupon.email\", \"event_identifier\": \"9200000217_processing_1_14\","
        " \"event_data\": {\"order_id\": \"9200000217\", \"coupon_code\": \"MUG-7QK2M9XA\","
        " \"discount_type\": \"percent\", \"discount\": \"12.50\", \"currency\": \"USD\","
        " \"expires_at\": \"2027-01-31T00:00:00Z\","
        " \"customer\": {\"email\": \"jose@example.com\", \"name\": \"José Müller\"}}}",
        sent, sizeof(sent));
    expect_golden("coupon.eml", sent);
    assert_non_null(strstr(sent, "To: =?UTF-8?B?"));
    static const char *const text[] = {"Hello José Müller,", "MUG-7QK2M9XA", "12.5%", "2027-01-31",
                                       "9200000217"};
    static const char *const html[] = {"José Müller", "MUG-7QK2M9XA", "12.5%"};
    expect_part(sent, "text/plain", text, sizeof(text) / sizeof(text[0]));
    expect_part(sent, "text/html", html, sizeof(html) / sizeof(html[0]));
}

static void invoice_mail_bytes(void **state)
{
    (void)state;
    static char sent[65536];
    send_through_handler(
        "invoice.created",
        "{\"event_code\": \"invoice.created\", \"event_identifier\": \"invoice_501_created\","
        " \"event_data\": {\"invoice_id\": \"501\", \"increment_id\": \"INV-000501\","
        " \"order_id\": \"9200000217\", \"currency\": \"EUR\", \"customer\": {\"email\":"
        " \"ann@example.com\", \"name\": \"Ann <Lee>\"}, \"items\": [{\"sku\": \"MUG-1\","
        " \"name\": \"Tasse \\\"Blau\\\" & Weiß\", \"qty\": 2, \"price\": \"30.00\"},"
        " {\"sku\": \"SPOON\", \"qty\": 1, \"price\": \"0.00\"}], \"totals\": {\"subtotal\":"
        " \"60.00\", \"tax\": \"4.80\", \"shipping\": \"5.00\", \"grand_total\": \"69.80\"}}}",
        sent, sizeof(sent));
    expect_golden("invoice.eml", sent);
    static const char *const text[] = {"Hello Ann <Lee>,", "INV-000501",
                                       "2 x Tasse \"Blau\" & Weiß (MUG-1)", "€60.00", "€69.80"};
    static const char *const html[] = {"Hello Ann &lt;Lee&gt;,", "Tasse &#34;Blau&#34; &amp; Weiß",
                                       "€69.80"};
    expect_part(sent, "text/plain", text, sizeof(text) / sizeof(text[0]));
    expect_part(sent, "text/html", html, sizeof(html) / sizeof(html[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(coupon_mail_bytes),
        cmocka_unit_test(invoice_mail_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
