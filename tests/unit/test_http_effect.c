/* test_http_effect.c - HTTP answers classified, Retry-After read, webhook bodies signed */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/http_effect.h"

static void statuses_are_classified(void **state)
{
    (void)state;
    static const struct {
        int curl_code;
        long status;
        enum oq_http_outcome want;
    } cases[] = {
        {CURLE_OK, 200, OQ_HTTP_DONE},
        {CURLE_OK, 201, OQ_HTTP_DONE},
        {CURLE_OK, 204, OQ_HTTP_DONE},
        {CURLE_OK, 301, OQ_HTTP_PERMANENT}, /* redirects are not followed */
        {CURLE_OK, 400, OQ_HTTP_PERMANENT},
        {CURLE_OK, 401, OQ_HTTP_PERMANENT},
        {CURLE_OK, 404, OQ_HTTP_PERMANENT},
        {CURLE_OK, 409, OQ_HTTP_PERMANENT},
        {CURLE_OK, 422, OQ_HTTP_PERMANENT},
        {CURLE_OK, 408, OQ_HTTP_TRANSIENT},
        {CURLE_OK, 429, OQ_HTTP_TRANSIENT},
        {CURLE_OK, 500, OQ_HTTP_TRANSIENT},
        {CURLE_OK, 502, OQ_HTTP_TRANSIENT},
        {CURLE_OK, 503, OQ_HTTP_TRANSIENT},
        {CURLE_OK, 0, OQ_HTTP_TRANSIENT},
        {CURLE_COULDNT_CONNECT, 0, OQ_HTTP_TRANSIENT},
        {CURLE_OPERATION_TIMEDOUT, 0, OQ_HTTP_TRANSIENT},
        {CURLE_RECV_ERROR, 200, OQ_HTTP_TRANSIENT}, /* cut off while reading the 200 */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum oq_http_outcome got = oq_http_classify(cases[i].curl_code, cases[i].status);
        if (got != cases[i].want)
            fail_msg("curl %d status %ld: got %d, want %d", cases[i].curl_code, cases[i].status,
                     got, cases[i].want);
    }
}

static void retry_after_is_read(void **state)
{
    (void)state;
    const time_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */
    const int64_t cap = 3600 * 1000;
    assert_int_equal(oq_http_retry_after_ms(NULL, now, cap), -1);
    assert_int_equal(oq_http_retry_after_ms("120", now, cap), 120000);
    assert_int_equal(oq_http_retry_after_ms(" 0", now, cap), 0);
    assert_int_equal(oq_http_retry_after_ms("5\r\n", now, cap), 5000);
    assert_int_equal(oq_http_retry_after_ms("999999999999999999999999", now, cap), cap);
    assert_int_equal(oq_http_retry_after_ms("86400", now, cap), cap);
    assert_int_equal(oq_http_retry_after_ms("Wed, 21 Oct 2015 07:30:00 GMT", now, cap), 120000);
    assert_int_equal(oq_http_retry_after_ms("Wed, 21 Oct 2015 07:00:00 GMT", now, cap), 0);
    assert_int_equal(oq_http_retry_after_ms("12abc", now, cap), -1);
    assert_int_equal(oq_http_retry_after_ms("-5", now, cap), -1);
    assert_int_equal(oq_http_retry_after_ms("soon", now, cap), -1);
}

static void bodies_are_signed_with_their_time(void **state)
{
    (void)state;
    char sig[OQ_SIGNATURE_LEN];
    /* RFC 4231 test case 2's key and text, the text after "<timestamp>.":
     * printf '1700000000.what do ya want for nothing?' |
     *   openssl dgst -sha256 -hmac Jefe */
    const char *data = "what do ya want for nothing?";
    assert_int_equal(
        oq_http_signature("Jefe", OQ_SIGNATURE_V1, 1700000000, data, strlen(data), sig), 0);
    assert_string_equal(sig, "v1=1cdd0650c8be1cb0974b1788d458b1e781206cfef59b85faafc582d2e182c57e");
    /* another time, another signature: an old one does not fit a new time */
    char later[OQ_SIGNATURE_LEN];
    assert_int_equal(
        oq_http_signature("Jefe", OQ_SIGNATURE_V1, 1700000001, data, strlen(data), later), 0);
    assert_string_not_equal(sig, later);
    /* the body's bytes, NUL included, not a C string */
    char a[OQ_SIGNATURE_LEN], b[OQ_SIGNATURE_LEN];
    assert_int_equal(oq_http_signature("k", OQ_SIGNATURE_V1, 1, "x\0y", 3, a), 0);
    assert_int_equal(oq_http_signature("k", OQ_SIGNATURE_V1, 1, "x", 1, b), 0);
    assert_string_not_equal(a, b);
    /* an empty body is signed too */
    assert_int_equal(oq_http_signature("k", OQ_SIGNATURE_V1, 1, "", 0, a), 0);
    assert_int_equal(strncmp(a, "v1=", 3), 0);
}

/* The form before v1, kept for receivers not yet updated: the body alone,
 * no time. RFC 4231 test case 2 as it is. */
static void sha256_body_is_the_old_form(void **state)
{
    (void)state;
    char sig[OQ_SIGNATURE_LEN], other[OQ_SIGNATURE_LEN];
    const char *data = "what do ya want for nothing?";
    assert_int_equal(
        oq_http_signature("Jefe", OQ_SIGNATURE_SHA256_BODY, 1700000000, data, strlen(data), sig),
        0);
    assert_string_equal(sig,
                        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* the time is not in it: this is what can be replayed */
    assert_int_equal(
        oq_http_signature("Jefe", OQ_SIGNATURE_SHA256_BODY, 1, data, strlen(data), other), 0);
    assert_string_equal(sig, other);
}

/* Fed in pieces, not copied: the same MAC as one-shot HMAC over the
 * joined text, for a body of a few megabytes. */
static void a_large_body_signs_as_one_text(void **state)
{
    (void)state;
    size_t len = 3u << 20;
    char *joined = malloc(len + 16), sig[OQ_SIGNATURE_LEN], want[OQ_SIGNATURE_LEN] = "v1=";
    assert_non_null(joined);
    int plen = snprintf(joined, 16, "%d.", 1700000000);
    for (size_t i = 0; i < len; i++)
        joined[plen + (int)i] = (char)('a' + i % 26);
    unsigned char mac[32];
    unsigned maclen = 0;
    assert_non_null(
        HMAC(EVP_sha256(), "k", 1, (unsigned char *)joined, (size_t)plen + len, mac, &maclen));
    for (unsigned i = 0; i < maclen; i++)
        snprintf(want + 3 + 2 * i, 3, "%02x", mac[i]);
    assert_int_equal(oq_http_signature("k", OQ_SIGNATURE_V1, 1700000000, joined + plen, len, sig),
                     0);
    assert_string_equal(sig, want);
    free(joined);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(statuses_are_classified),
        cmocka_unit_test(retry_after_is_read),
        cmocka_unit_test(bodies_are_signed_with_their_time),
        cmocka_unit_test(sha256_body_is_the_old_form),
        cmocka_unit_test(a_large_body_signs_as_one_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
