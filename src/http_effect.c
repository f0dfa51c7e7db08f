/* http_effect.c - HTTP answers classified, Retry-After read, bodies signed */
#include "orderq/http_effect.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum oq_http_outcome oq_http_classify(int curl_code, long status)
{
    if (curl_code != CURLE_OK || status == 0)
        return OQ_HTTP_TRANSIENT; /* never heard back: nothing says it cannot work */
    if (status >= 200 && status < 300)
        return OQ_HTTP_DONE;
    if (status == 408 || status == 429 || status >= 500)
        return OQ_HTTP_TRANSIENT;
    return OQ_HTTP_PERMANENT;
}

int64_t oq_http_retry_after_ms(const char *value, time_t now, int64_t max_ms)
{
    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        char *end;
        errno = 0;
        unsigned long long secs = strtoull(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (*end != '\0')
            return -1;
        if (errno == ERANGE || secs > (unsigned long long)(max_ms / 1000))
            return max_ms;
        return (int64_t)secs * 1000;
    }
    time_t when = curl_getdate(value, NULL); /* RFC 1123, 850 and asctime forms */
    if (when == -1)
        return -1;
    if (when <= now)
        return 0;
    int64_t ms = (int64_t)(when - now) * 1000;
    return ms > max_ms ? max_ms : ms;
}

size_t oq_http_collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct oq_http_body *body = userdata;
    size_t n = size * nmemb;
    if (body->len + n > body->max) {
        body->too_big = 1;
        return 0;
    }
    if (body->len + n + 1 > body->cap) {
        size_t cap = body->cap ? body->cap : 4096;
        while (cap < body->len + n + 1)
            cap *= 2;
        char *grown = realloc(body->data, cap);
        if (grown == NULL)
            return 0;
        body->data = grown;
        body->cap = cap;
    }
    memcpy(body->data + body->len, ptr, n);
    body->len += n;
    body->data[body->len] = '\0';
    return n;
}

int oq_http_header_add(struct curl_slist **list, const char *name, const char *value)
{
    if (strpbrk(value, "\r\n") != NULL)
        return OQ_EINVAL;
    return oq_curl_header_append(list, name, value);
}

int oq_curl_header_append(struct curl_slist **list, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (line == NULL)
        return OQ_ENOMEM;
    snprintf(line, n, "%s: %s", name, value);
    struct curl_slist *grown = curl_slist_append(*list, line);
    free(line);
    if (grown == NULL)
        return OQ_ENOMEM;
    *list = grown;
    return 0;
}

/* HMAC-SHA256 of prefix then body, fed in turn: a webhook body can be
 * megabytes, and signing it should not need a second copy. EVP_MAC, since
 * OpenSSL 3 deprecates HMAC_CTX; the fetch is served from libcrypto's
 * method cache after the first. */
static int hmac_sha256(const char *secret, const char *prefix, size_t plen, const void *body,
                       size_t len, unsigned char mac[32])
{
    static char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    size_t maclen = 0;
    int ok = ctx != NULL &&
             EVP_MAC_init(ctx, (const unsigned char *)secret, strlen(secret), params) == 1 &&
             (plen == 0 || EVP_MAC_update(ctx, (const unsigned char *)prefix, plen) == 1) &&
             (len == 0 || EVP_MAC_update(ctx, body, len) == 1) &&
             EVP_MAC_final(ctx, mac, &maclen, 32) == 1 && maclen == 32;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
    return ok ? 0 : OQ_ENOMEM;
}

int oq_http_signature(const char *secret, enum oq_signature_scheme scheme, int64_t timestamp,
                      const void *body, size_t len, char out[OQ_SIGNATURE_LEN])
{
    unsigned char mac[32];
    char prefix[32] = "";
    const char *name = "sha256=";
    int plen = 0;
    if (scheme == OQ_SIGNATURE_V1) {
        plen = snprintf(prefix, sizeof(prefix), "%lld.", (long long)timestamp);
        name = "v1=";
    }
    if (hmac_sha256(secret, prefix, (size_t)plen, body, len, mac) != 0)
        return OQ_ENOMEM;
    size_t at = strlen(name);
    memcpy(out, name, at);
    for (size_t i = 0; i < sizeof(mac); i++, at += 2)
        snprintf(out + at, 3, "%02x", mac[i]);
    return 0;
}

void oq_curl_observe_duration(void *curl, enum oq_protocol protocol)
{
    curl_off_t took_us = 0;
    if (curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME_T, &took_us) == CURLE_OK)
        oq_metrics_send_duration(protocol, (int64_t)took_us);
}
