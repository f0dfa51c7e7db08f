/* http_effect.h - what an HTTP effect's answer means: webhooks and the shop API
 *
 * Both call out over libcurl and must decide, from the transfer's result
 * and the status, whether the effect is done, worth trying again later, or
 * never going to work; a receiver may also say when to come back
 * (Retry-After). Webhook bodies are signed so the receiver can check they
 * came from us, and lately: X-Orderq-Timestamp: <unix seconds> and
 * X-Orderq-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
 * (or the older sha256=<HMAC of the body> for receivers not yet updated).
 */
#ifndef ORDERQ_HTTP_EFFECT_H
#define ORDERQ_HTTP_EFFECT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "orderq/common.h"
#include "orderq/metrics.h"

enum oq_http_outcome {
    OQ_HTTP_DONE,      /* 2xx */
    OQ_HTTP_TRANSIENT, /* no answer (connect, timeout, reset), 408, 429, 5xx */
    OQ_HTTP_PERMANENT, /* any other status: 3xx (redirects are not followed), 4xx */
};

/* curl_code: the transfer's CURLcode; status: the HTTP status, 0 if none came. */
enum oq_http_outcome oq_http_classify(int curl_code, long status);

/* Retry-After (RFC 9110: delay-seconds or an HTTP-date) as milliseconds
 * from now, capped at max_ms; -1 when value is NULL or not understood.
 * A date in the past is 0. */
int64_t oq_http_retry_after_ms(const char *value, time_t now, int64_t max_ms);

/* ---- libcurl plumbing shared by every HTTP client in orderq ---------------- */

/* A response body: CURLOPT_WRITEFUNCTION oq_http_collect, CURLOPT_WRITEDATA
 * a struct oq_http_body with max set. data is NUL-terminated; an answer
 * over max bytes stops the transfer (CURLE_WRITE_ERROR) with too_big set. */
struct oq_http_body {
    char *data;
    size_t len, max;
    size_t cap; /* allocated, grown by doubling: big answers are not copied over and over */
    int too_big;
};
size_t oq_http_collect(char *ptr, size_t size, size_t nmemb, void *body);

/* After curl_easy_perform on curl (a CURL *, which curl.h makes a void *):
 * its total time, lookup to final reply, by curl's own clock, into
 * orderq_send_duration_seconds{protocol}. */
void oq_curl_observe_duration(void *curl, enum oq_protocol protocol);

struct curl_slist;

/* Append "name: value" to *list. Returns 0, OQ_EINVAL (value holds CR or
 * LF: never a header injected through data) or OQ_ENOMEM. */
OQ_WUR int oq_http_header_add(struct curl_slist **list, const char *name, const char *value);

/* Append "name: value" to list as it is: the caller has checked value
 * (oq_http_header_add for HTTP; the mailer allows folded lines). Returns
 * 0 or OQ_ENOMEM. */
OQ_WUR int oq_curl_header_append(struct curl_slist **list, const char *name, const char *value);

/* How a webhook body is signed, per endpoint (webhooks file "signature"). */
enum oq_signature_scheme {
    /* "v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>" with
     * X-Orderq-Timestamp: the time is signed with the body, so a captured
     * request cannot be replayed later with a fresh timestamp. */
    OQ_SIGNATURE_V1 = 0,
    /* "sha256=<hex HMAC-SHA256(secret, body)>", the form before v1, for a
     * receiver not yet updated: it can be replayed for ever. */
    OQ_SIGNATURE_SHA256_BODY,
};

#define OQ_SIGNATURE_LEN (7 + 64 + 1) /* "sha256=" (the longer prefix) + 64 hex digits + NUL */

/* out = the X-Orderq-Signature value of body under scheme (timestamp is
 * used by v1 only). HMAC is fed the prefix and then the body: the body is
 * not copied. Returns 0 or OQ_ENOMEM. */
OQ_WUR int oq_http_signature(const char *secret, enum oq_signature_scheme scheme, int64_t timestamp,
                             const void *body, size_t len, char out[OQ_SIGNATURE_LEN]);

#endif
