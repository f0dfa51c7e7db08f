/* mailer_smtp.c - send one checked mail through libcurl's SMTP and MIME API */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderq/config.h"
#include "orderq/http_effect.h"
#include "orderq/mailer.h"

struct oq_mailer {
    const struct oq_config *cfg;
    CURL *curl;
    char from_name[256], from_address[256];
    const char *domain; /* of from_address: the Message-IDs' right side */
    char *password;     /* NULL: no AUTH password */
    /* per send */
    char reply[512];   /* the server's last reply line */
    char refusal[512]; /* its last 4xx or 5xx line (a QUIT's 221 follows it) */
    int data_sent;     /* the whole message went out */
    char curl_err[CURL_ERROR_SIZE];
};

int oq_mailer_new(const struct oq_config *cfg, struct oq_mailer **out, char *err, size_t errlen)
{
    struct oq_mailer *m = calloc(1, sizeof(*m));
    char why[256];
    *out = NULL;
    if (m == NULL || (m->curl = curl_easy_init()) == NULL) {
        free(m);
        snprintf(err, errlen, "out of memory starting the mailer");
        return OQ_ENOMEM;
    }
    m->cfg = cfg;
    if (oq_mail_parse_mailbox(cfg->smtp_from, m->from_name, sizeof(m->from_name), m->from_address,
                              sizeof(m->from_address), why, sizeof(why)) != 0) {
        snprintf(err, errlen, "config: smtp_from: %s", why);
        oq_mailer_free(m);
        return OQ_ECONFIG;
    }
    m->domain = strrchr(m->from_address, '@') + 1;
    int rc = oq_secret_load(cfg->smtp_password, "smtp_password_file", cfg->smtp_password_file,
                            &m->password, err, errlen);
    if (rc != 0) {
        oq_mailer_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void oq_mailer_free(struct oq_mailer *m)
{
    if (m == NULL)
        return;
    curl_easy_cleanup(m->curl);
    oq_secret_free(m->password);
    free(m);
}

/* The server's reply lines: keep the last one, and the last refusal. */
static int on_debug(CURL *c, curl_infotype type, char *data, size_t size, void *ctx)
{
    struct oq_mailer *m = ctx;
    (void)c;
    if (type != CURLINFO_HEADER_IN || size == 0)
        return 0;
    while (size > 0 && (data[size - 1] == '\n' || data[size - 1] == '\r'))
        size--;
    snprintf(m->reply, sizeof(m->reply), "%.*s", (int)size, data);
    if (data[0] == '4' || data[0] == '5')
        snprintf(m->refusal, sizeof(m->refusal), "%s", m->reply);
    return 0;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct oq_mailer *m = ctx;
    (void)dltotal;
    (void)dlnow;
    /* base64 parts keep the size known, so ultotal is the whole message */
    m->data_sent = ultotal > 0 && ulnow >= ultotal;
    return 0;
}

static curl_mimepart *add_text_part(curl_mime *mime, const char *data, const char *type)
{
    curl_mimepart *part = curl_mime_addpart(mime);
    if (part == NULL || curl_mime_data(part, data, CURL_ZERO_TERMINATED) != CURLE_OK ||
        curl_mime_type(part, type) != CURLE_OK || curl_mime_encoder(part, "base64") != CURLE_OK)
        return NULL;
    return part;
}

/* text with every line ending CRLF, the canonical form of a text part. */
static char *crlf_lines(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n' && (p == text || p[-1] != '\r') ? 2 : 1;
    char *s = malloc(n + 1), *o = s;
    for (const char *p = text; s != NULL && *p; p++) {
        if (*p == '\n' && (p == text || p[-1] != '\r'))
            *o++ = '\r';
        *o++ = *p;
    }
    if (s != NULL)
        *o = '\0';
    return s;
}

/* multipart/alternative: text, then HTML (the last is preferred). The
 * Content-Type header given with the mail makes it the top level. */
static curl_mime *build_body(CURL *curl, const struct oq_mail *mail)
{
    curl_mime *alt = curl_mime_init(curl);
    char *text = crlf_lines(mail->text), *html = crlf_lines(mail->html);
    int ok = alt != NULL && text != NULL && html != NULL &&
             add_text_part(alt, text, "text/plain; charset=utf-8") != NULL &&
             add_text_part(alt, html, "text/html; charset=utf-8") != NULL;
    free(text); /* curl_mime_data copied them */
    free(html);
    if (!ok) {
        curl_mime_free(alt);
        return NULL;
    }
    return alt;
}

/* Append "name: value" to list. value may be folded (CRLF and a space or
 * tab: the encoded-words of a long subject or name); any other CR or LF is
 * refused. 0, OQ_EINVAL or OQ_ENOMEM. */
static int add_header(struct curl_slist **list, const char *name, const char *value)
{
    for (const char *p = strpbrk(value, "\r\n"); p != NULL; p = strpbrk(p + 3, "\r\n"))
        if (p[0] != '\r' || p[1] != '\n' || (p[2] != ' ' && p[2] != '\t'))
            return OQ_EINVAL;
    return oq_curl_header_append(list, name, value);
}

/* Every header the mail carries, each value checked first. 0, OQ_EINVAL
 * (why says which value is wrong) or OQ_ENOMEM. */
static int build_headers(struct oq_mailer *m, const struct oq_mail *mail, struct curl_slist **list,
                         char *why, size_t whylen)
{
    char *from = NULL, *to = NULL, *subject = NULL, id[160], date[64];
    time_t now = time(NULL);
    struct tm tm;
    int rc = OQ_EINVAL;
    if (oq_mail_header_check(mail->event ? mail->event : "", why, whylen) != 0 ||
        (rc = oq_mail_mailbox(m->from_name, m->from_address, &from, why, whylen)) != 0 ||
        (rc = oq_mail_mailbox(mail->to_name, mail->to_address, &to, why, whylen)) != 0)
        goto out;
    if ((rc = oq_mail_encode_header(mail->subject, &subject)) != 0) {
        if (rc == OQ_EINVAL)
            snprintf(why, whylen, "the subject is not UTF-8 or holds a control character");
        goto out;
    }
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    oq_mail_message_id(mail->handler, mail->effect_key, m->domain, id, sizeof(id));
    const struct {
        const char *name, *value;
    } headers[] = {
        {"Date", date},
        {"From", from},
        {"To", to},
        {"Subject", subject},
        {"Message-ID", id},
        {"Content-Type", "multipart/alternative"},
        {"X-Orderq-Event", mail->event},
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        if (headers[i].value == NULL)
            continue;
        if ((rc = add_header(list, headers[i].name, headers[i].value)) != 0) {
            if (rc == OQ_EINVAL)
                snprintf(why, whylen, "the %s header holds a CR or LF", headers[i].name);
            goto out;
        }
    }
    rc = 0;
out:
    free(from);
    free(to);
    free(subject);
    return rc;
}

static long use_ssl(const struct oq_config *cfg)
{
    switch (cfg->smtp_tls) {
    case OQ_SMTP_TLS_REQUIRED:
        return CURLUSESSL_ALL;
    case OQ_SMTP_TLS_OFF:
        return CURLUSESSL_NONE;
    default:
        return CURLUSESSL_TRY;
    }
}

/* TLS, when there is any, is verified: a certificate that does not chain
 * to smtp_ca (or the system's CAs) or does not name the host fails the
 * send; curl_easy_reset dropped these, so every send sets them. */
static void set_tls(struct oq_mailer *m, CURL *c)
{
    curl_easy_setopt(c, CURLOPT_USE_SSL, use_ssl(m->cfg));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (m->cfg->smtp_ca[0] != '\0')
        curl_easy_setopt(c, CURLOPT_CAINFO, m->cfg->smtp_ca);
    m->curl_err[0] = '\0';
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, m->curl_err);
}

/* A failed send's text: TLS failures name the setting to look at. */
static void describe_failure(const struct oq_mailer *m, CURLcode res, char *reply, size_t replylen)
{
    /* curl's own text says what was wrong with the certificate */
    const char *detail = m->curl_err[0] ? m->curl_err : curl_easy_strerror(res);
    if (res == CURLE_PEER_FAILED_VERIFICATION || res == CURLE_SSL_CACERT_BADFILE)
        snprintf(reply, replylen,
                 "the SMTP server's TLS certificate was not accepted (checked against smtp_ca: "
                 "%s): %s",
                 m->cfg->smtp_ca[0] ? m->cfg->smtp_ca : "empty, the system's CAs", detail);
    else if (res == CURLE_USE_SSL_FAILED)
        snprintf(reply, replylen,
                 "the SMTP server offers no STARTTLS and smtp_tls is required: not sending in "
                 "clear (%s)",
                 detail);
    else if (m->refusal[0] != '\0')
        snprintf(reply, replylen, "%s", m->refusal);
    else
        snprintf(reply, replylen, "%s%s%s", curl_easy_strerror(res), m->reply[0] ? " after " : "",
                 m->reply);
}

enum oq_smtp_outcome oq_mailer_send(struct oq_mailer *m, const struct oq_mail *mail, char *reply,
                                    size_t replylen)
{
    struct curl_slist *headers = NULL, *rcpt = NULL;
    curl_mime *mime = NULL;
    char envelope_from[300], envelope_to[300];
    enum oq_smtp_outcome outcome = OQ_SMTP_PERMANENT;
    CURL *c = m->curl;
    curl_easy_reset(c); /* keeps the connection, drops the last mail's options */
    int rc = build_headers(m, mail, &headers, reply, replylen);
    if (rc != 0) {
        if (rc == OQ_ENOMEM)
            snprintf(reply, replylen, "out of memory building the mail");
        outcome = rc == OQ_ENOMEM ? OQ_SMTP_TRANSIENT : OQ_SMTP_PERMANENT;
        goto out;
    }
    snprintf(envelope_from, sizeof(envelope_from), "<%s>", m->from_address);
    snprintf(envelope_to, sizeof(envelope_to), "<%s>", mail->to_address);
    if ((rcpt = curl_slist_append(NULL, envelope_to)) == NULL ||
        (mime = build_body(m->curl, mail)) == NULL) {
        snprintf(reply, replylen, "out of memory building the mail");
        outcome = OQ_SMTP_TRANSIENT;
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, m->cfg->smtp_url);
    set_tls(m, c);
    if (m->cfg->smtp_user[0] != '\0')
        curl_easy_setopt(c, CURLOPT_USERNAME, m->cfg->smtp_user);
    if (m->password != NULL)
        curl_easy_setopt(c, CURLOPT_PASSWORD, m->password);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, envelope_from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_MIMEPOST, mime);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)m->cfg->smtp_timeout_ms);
    /* The wait for the reply to the final "." is bounded by this one alone
     * (120 s by default); curl 7.88 takes whole seconds. */
    curl_easy_setopt(c, CURLOPT_SERVER_RESPONSE_TIMEOUT,
                     (long)((m->cfg->smtp_timeout_ms + 999) / 1000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)m->cfg->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_VERBOSE, 1L); /* for on_debug: replies only, nothing logged */
    curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(c, CURLOPT_DEBUGDATA, m);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, m);
    m->reply[0] = m->refusal[0] = '\0';
    m->data_sent = 0;
    CURLcode res = curl_easy_perform(c);
    oq_curl_observe_duration(c, OQ_PROTO_SMTP);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (m->refusal[0] != '\0') /* the refusal decides, not a QUIT's reply after it */
        code = strtol(m->refusal, NULL, 10);
    outcome = oq_smtp_classify((int)res, code, m->data_sent);
    if (res == CURLE_OK)
        snprintf(reply, replylen, "%s", m->reply);
    else
        describe_failure(m, res, reply, replylen);
out:
    curl_mime_free(mime);
    curl_slist_free_all(headers);
    curl_slist_free_all(rcpt);
    return outcome;
}
