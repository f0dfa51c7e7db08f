/* fuzz_url.c - URL parse and redact
 *
 * The redacted URL never holds the password it was given (as written or
 * percent-decoded), and no parse error quotes it; the parsers take any
 * text without crashing. */
#include <curl/curl.h>
#include <string.h>

#include "fuzz.h"
#include "orderq/url.h"

static size_t occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* url with its one copy of secret overwritten by 'Z's (or NULL when the
 * secret is not written exactly once, or is all 'Z's). */
static char *masked(const char *url, const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 4 || occurrences(url, secret) != 1 || strspn(secret, "Z") == n)
        return NULL;
    char *m = strdup(url);
    if (m != NULL)
        memset(m + (strstr(url, secret) - url), 'Z', n);
    return m;
}

/* What each function shows for a URL: redacted text, or a parse error. */
enum shown_by { BY_REDACT, BY_MYSQL, BY_AMQP, BY_SCHEME };

static char *show(enum shown_by by, const char *url)
{
    char err[512] = "";
    struct oq_mysql_url m = {0};
    struct oq_amqp_url a = {0};
    int rc = 0;
    switch (by) {
    case BY_REDACT:
        return oq_url_redact(url);
    case BY_MYSQL:
        rc = oq_mysql_url_parse(url, &m, err, sizeof(err));
        oq_mysql_url_clear(&m);
        break;
    case BY_AMQP:
        rc = oq_amqp_url_parse(url, &a, err, sizeof(err));
        oq_amqp_url_clear(&a);
        break;
    case BY_SCHEME:
        rc = oq_url_check_scheme(url, "smtp,smtps", err, sizeof(err));
        break;
    }
    return rc != 0 ? strdup(err) : NULL;
}

/* The password (as written, and percent-decoded) shows no more often than
 * 'Z's written in its place would: what is shown never comes from it,
 * though it may be a word the message holds anyway ("amqps"). */
static void check_hidden(const char *url)
{
    char *pw[2] = {NULL, NULL};
    CURLU *h = curl_url();
    if (h == NULL)
        return;
    if (curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS) ==
        CURLUE_OK) {
        curl_url_get(h, CURLUPART_PASSWORD, &pw[0], 0);
        curl_url_get(h, CURLUPART_PASSWORD, &pw[1], CURLU_URLDECODE);
    }
    /* Mask the password where it is written (its raw form); then neither
     * form may show more often than with the mask. */
    char *other = masked(url, pw[0]);
    for (int by = BY_REDACT; other != NULL && by <= BY_SCHEME; by++) {
        char *a = show((enum shown_by)by, url), *b = show((enum shown_by)by, other);
        for (int i = 0; a != NULL && b != NULL && i < 2; i++)
            if (pw[i] != NULL && strlen(pw[i]) >= 4)
                FUZZ_CHECK(occurrences(a, pw[i]) <= occurrences(b, pw[i]),
                           "shown by %d, the password \"%s\" comes through: %s", by, pw[i], a);
        free(a);
        free(b);
    }
    free(other);
    curl_free(pw[0]);
    curl_free(pw[1]);
    curl_url_cleanup(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url = strndup((const char *)data, size);
    if (url == NULL)
        return 0;
    char *shown = oq_url_redact(url);
    FUZZ_CHECK(shown != NULL, "redact failed");
    FUZZ_CHECK(url[0] == '\0' || shown[0] != '\0', "redacted to nothing");
    char *twice = oq_url_redact(shown); /* a redacted URL is one to show too */
    FUZZ_CHECK(twice != NULL, "redact of redacted failed");
    free(twice);
    free(shown);
    check_hidden(url);

    char err[512] = "";
    struct oq_mysql_url m = {0};
    if (oq_mysql_url_parse(url, &m, err, sizeof(err)) == 0)
        FUZZ_CHECK(m.host != NULL, "no host");
    oq_mysql_url_clear(&m);
    struct oq_amqp_url a = {0};
    if (oq_amqp_url_parse(url, &a, err, sizeof(err)) == 0)
        FUZZ_CHECK(a.host != NULL && a.port > 0 && a.port < 65536, "bad host or port %d", a.port);
    oq_amqp_url_clear(&a);
    char *host = NULL;
    unsigned port = 0;
    if (oq_hostport_parse(url, &host, &port, err, sizeof(err)) == 0)
        FUZZ_CHECK(host != NULL && port <= 65535, "bad host:port");
    free(host);
    (void)oq_url_is_loopback(url);
    (void)oq_url_is_cleartext_remote(url, "http");
    free(url);
    return 0;
}
