/* test_webhook.c - the webhooks file: good entries, secrets from env or file, every fault
 * named, URLs shown without their tokens */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderq/webhook.h"

static int parse(const char *json, struct oq_webhook **hooks, size_t *n, char *err, size_t errlen)
{
    return oq_webhooks_parse(json, strlen(json), "webhooks.json", hooks, n, err, errlen);
}

static void good_entries_are_read(void **state)
{
    (void)state;
    struct oq_webhook *h = NULL;
    size_t n = 0;
    char err[512], path[] = "/tmp/orderq-test-secret-XXXXXX", json[1024];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "from-file\nsecond line\n", 22), 22);
    close(fd);
    setenv("ORDERQ_TEST_HOOK_SECRET", "from-env", 1);
    snprintf(json, sizeof(json),
             "[{\"event_code\": \"order.shipped\", \"url\": \"https://erp.example/hooks\","
             "  \"timeout_ms\": 2500, \"secret_env\": \"ORDERQ_TEST_HOOK_SECRET\"},"
             " {\"event_code\": \"order.refunded\", \"url\": \"http://127.0.0.1:8080/b\","
             "  \"secret_file\": \"%s\"},"
             " {\"event_code\": \"invoice.created\", \"url\": \"http://127.0.0.1:8080/c\"}]",
             path);
    assert_int_equal(parse(json, &h, &n, err, sizeof(err)), 0);
    unlink(path);
    assert_int_equal(n, 3);
    assert_string_equal(h[0].event_code, "order.shipped");
    assert_string_equal(h[0].url, "https://erp.example/hooks");
    assert_int_equal(h[0].timeout_ms, 2500);
    assert_string_equal(h[0].secret, "from-env");
    assert_int_equal(h[1].timeout_ms, 5000);
    assert_string_equal(h[1].secret, "from-file");
    assert_null(h[2].secret);
    oq_webhooks_free(h, n);

    assert_int_equal(parse("[]", &h, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    oq_webhooks_free(h, n);
}

static void faults_are_named(void **state)
{
    (void)state;
    unsetenv("ORDERQ_TEST_UNSET");
    setenv("ORDERQ_TEST_HOOK_SECRET", "from-env", 1);
    static const struct {
        const char *json, *why;
    } cases[] = {
        {"{}", "webhooks.json: expected a JSON array of webhooks"},
        {"[", "webhooks.json: expected a JSON array of webhooks: "},
        {"[1]", "webhook 1: expected an object"},
        {"[{\"url\": \"http://a.example/\"}]", "webhook 1: event_code: missing"},
        {"[{\"event_code\": \"a b\", \"url\": \"http://a.example/\"}]", "webhook 1: event_code:"},
        {"[{\"event_code\": \"x\"}]", "webhook 1: url: missing"},
        {"[{\"event_code\": \"x\", \"url\": \"ftp://a.example/\"}]", "webhook 1: url: expected"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"timeout_ms\": 5}]",
         "webhook 1: timeout_ms: expected a whole number from 100 to 120000"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"timeout_ms\": \"5s\"}]",
         "webhook 1: timeout_ms"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"secret\": \"s3cr3t\"}]",
         "webhook 1: secret: not here"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"secret_env\": "
         "\"ORDERQ_TEST_UNSET\"}]",
         "webhook 1: secret_env: the environment variable ORDERQ_TEST_UNSET is not set"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"secret_file\": "
         "\"/nonexistent/secret\"}]",
         "webhook 1: config: secret_file: cannot read /nonexistent/secret"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"secret_env\": \"A\", "
         "\"secret_file\": \"/b\"}]",
         "webhook 1: secret_env and secret_file: give one of them"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"signature\": \"sha256\", "
         "\"secret_env\": \"ORDERQ_TEST_HOOK_SECRET\"}]",
         "webhook 1: signature: expected \"v1\" or \"sha256-body\""},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"signature\": "
         "\"sha256-body\"}]",
         "webhook 1: signature: there is no secret to sign with"},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\", \"uri\": \"x\"}]",
         "webhook 1: unknown field \"uri\""},
        {"[{\"event_code\": \"x\", \"url\": \"http://a.example/\"},"
         " {\"event_code\": \"x\", \"url\": \"http://b.example/\"}]",
         "webhook 2: event_code \"x\" has an endpoint already (webhook 1)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct oq_webhook *h = (struct oq_webhook *)1;
        size_t n = 99;
        char err[512] = "";
        int rc = parse(cases[i].json, &h, &n, err, sizeof(err));
        if (rc != OQ_EINVAL || strstr(err, cases[i].why) == NULL)
            fail_msg("case %zu: rc %d, err [%s], want [%s]", i, rc, err, cases[i].why);
        assert_null(h);
        assert_int_equal(n, 0);
    }
}

/* v1 unless an endpoint keeps the old form for a receiver not yet updated. */
static void the_signature_form_is_per_endpoint(void **state)
{
    (void)state;
    struct oq_webhook *h = NULL;
    size_t n = 0;
    char err[512];
    setenv("ORDERQ_TEST_HOOK_SECRET", "from-env", 1);
    assert_int_equal(
        parse("[{\"event_code\": \"a\", \"url\": \"https://a.example/\", \"secret_env\": "
              "\"ORDERQ_TEST_HOOK_SECRET\"},"
              " {\"event_code\": \"b\", \"url\": \"https://b.example/\", \"secret_env\": "
              "\"ORDERQ_TEST_HOOK_SECRET\", \"signature\": \"sha256-body\"},"
              " {\"event_code\": \"c\", \"url\": \"https://c.example/\", \"secret_env\": "
              "\"ORDERQ_TEST_HOOK_SECRET\", \"signature\": \"v1\"}]",
              &h, &n, err, sizeof(err)),
        0);
    assert_int_equal(n, 3);
    assert_int_equal(h[0].signature, OQ_SIGNATURE_V1);
    assert_int_equal(h[1].signature, OQ_SIGNATURE_SHA256_BODY);
    assert_int_equal(h[2].signature, OQ_SIGNATURE_V1);
    oq_webhooks_free(h, n);
}

/* Tokens come in any shape: base64 with '/' and '+', letters only, in the
 * path, the query, the userinfo or the fragment. Only the scheme, host and
 * port are shown, and whether more follows. */
static void urls_are_shown_without_path_or_query(void **state)
{
    (void)state;
    static const struct {
        const char *url, *shown, *secret;
    } cases[] = {
        /* oq_url_redact left these three whole: a base64 key split by '/',
         * letters only, a query value holding '/' under a harmless name */
        {"https://hooks.example/in/q8/Zk+x2Lm/Pw9aYbR3==", "https://hooks.example/...", "Pw9aYbR3"},
        {"https://erp.example/hooks/pSvXqLmNbTrWkZyHdFgJ", "https://erp.example/...", "pSvXqLmN"},
        {"https://erp.example/in?x=Ab/cdEFgh12ijKL34mnOP56qrST78uvWX90yz",
         "https://erp.example/...", "cdEFgh12"},
        {"https://erp.example/in?sig=onlyletterstoken", "https://erp.example/...", "onlyletters"},
        {"https://hookuser:pw@erp.example:8443/", "https://erp.example:8443/", "hookuser"},
        {"https://SlackToken@erp.example", "https://erp.example/", "SlackToken"},
        {"http://[::1]:9000/x#frag", "http://[::1]:9000/...", "frag"},
        {"http://127.0.0.1:8080/", "http://127.0.0.1:8080/", NULL},
    };
    char wrong[2048] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[512], err[512];
        struct oq_webhook *h = NULL;
        size_t n = 0;
        snprintf(json, sizeof(json), "[{\"event_code\": \"order.shipped\", \"url\": \"%s\"}]",
                 cases[i].url);
        assert_int_equal(parse(json, &h, &n, err, sizeof(err)), 0);
        assert_string_equal(h[0].url, cases[i].url); /* still used to connect */
        if ((strcmp(h[0].url_shown, cases[i].shown) != 0 ||
             (cases[i].secret != NULL && strstr(h[0].url_shown, cases[i].secret) != NULL)) &&
            used < sizeof(wrong))
            used += (size_t)snprintf(wrong + used, sizeof(wrong) - used,
                                     "\n  case %zu: shown as [%s], want [%s]", i, h[0].url_shown,
                                     cases[i].shown);
        oq_webhooks_free(h, n);
    }
    if (wrong[0] != '\0')
        fail_msg("%s", wrong);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_entries_are_read),
        cmocka_unit_test(faults_are_named),
        cmocka_unit_test(urls_are_shown_without_path_or_query),
        cmocka_unit_test(the_signature_form_is_per_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
