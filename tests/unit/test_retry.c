/* test_retry.c - backoff tiers, attempts, reconnect backoff, fingerprints, cut header values */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "orderq/common.h"
#include "orderq/config.h"
#include "orderq/retry.h"

/* oq_backoff_ms(n): a random delay in [base/2, base], base 500 ms << (n-1). */
static void assert_backoff(int64_t wait, int failures)
{
    int64_t base = 500;
    for (int i = 1; i < failures && base < 30000; i++)
        base *= 2;
    base = base > 30000 ? 30000 : base;
    assert_in_range(wait, base / 2, base);
}

/* Connections that end at once back off further each time, and say so. */
static void reconnect_backs_off_until_healthy(void **state)
{
    (void)state;
    struct oq_reconnect_backoff rb = {0};
    char note[160];
    oq_reconnect_connected(&rb, 1000);
    assert_backoff(oq_reconnect_failed(&rb, 1100, "settled a batch", note, sizeof(note)), 1);
    assert_string_equal(note, "attempt 1");
    for (int n = 2; n <= 4; n++) {
        oq_reconnect_connected(&rb, 1000 * n);
        assert_backoff(
            oq_reconnect_failed(&rb, 1000 * n + 50, "settled a batch", note, sizeof(note)), n);
    }
    assert_int_equal(rb.failures, 4);
    assert_string_equal(note, "attempt 4: no connection since the last healthy one settled a "
                              "batch or lasted 10 s");
}

/* Settling anything, or staying up 10 s, starts the backoff again. */
static void healthy_connection_starts_again(void **state)
{
    (void)state;
    struct oq_reconnect_backoff rb = {.failures = 5};
    char note[160];
    oq_reconnect_connected(&rb, 0);
    oq_reconnect_settled(&rb);
    assert_backoff(oq_reconnect_failed(&rb, 10, "archived a letter", note, sizeof(note)), 1);
    assert_string_equal(note, "attempt 1");
    oq_reconnect_connected(&rb, 100); /* settled is per connection */
    (void)oq_reconnect_failed(&rb, 200, "archived a letter", note, sizeof(note));
    assert_int_equal(rb.failures, 2);
    assert_string_equal(note, "attempt 2: no connection since the last healthy one archived a "
                              "letter or lasted 10 s");
    oq_reconnect_connected(&rb, 1000);
    (void)oq_reconnect_failed(&rb, 1000 + OQ_HEALTHY_CONNECTION_MS - 1, "x", note, sizeof(note));
    assert_int_equal(rb.failures, 3);
    oq_reconnect_connected(&rb, 50000);
    (void)oq_reconnect_failed(&rb, 50000 + OQ_HEALTHY_CONNECTION_MS, "x", note, sizeof(note));
    assert_int_equal(rb.failures, 1);
}

static void tiers_follow_attempts(void **state)
{
    (void)state;
    struct oq_config *cfg = oq_config_new();
    struct oq_retry_decision d;
    /* defaults: 1s,5s,30s,2m,10m,1h and 8 attempts */
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 1, &d);
    assert_true(d.retry);
    assert_int_equal(d.delay_ms, 1000);
    assert_string_equal(d.tier_name, "1s");
    assert_int_equal(d.next_attempt, 2);
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 3, &d);
    assert_string_equal(d.tier_name, "30s");
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 6, &d);
    assert_string_equal(d.tier_name, "1h");
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 7, &d); /* past the last tier: it repeats */
    assert_true(d.retry);
    assert_string_equal(d.tier_name, "1h");
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 8, &d); /* the 8th attempt was the last */
    assert_false(d.retry);
    oq_config_free(cfg);
}

/* A peer's Retry-After moves a retry to the first tier at least that long. */
static void retry_after_picks_a_longer_tier(void **state)
{
    (void)state;
    struct oq_config *cfg = oq_config_new();
    struct oq_retry_decision d;
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 1, &d);
    oq_retry_wait_at_least(cfg, -1, &d); /* no wish: as decided */
    assert_string_equal(d.tier_name, "1s");
    oq_retry_wait_at_least(cfg, 7000, &d);
    assert_int_equal(d.delay_ms, 30000);
    assert_string_equal(d.tier_name, "30s");
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 3, &d);
    oq_retry_wait_at_least(cfg, 2000, &d); /* shorter than its own tier: kept */
    assert_string_equal(d.tier_name, "30s");
    oq_retry_wait_at_least(cfg, 86400000, &d); /* longer than any: the last tier */
    assert_string_equal(d.tier_name, "1h");
    assert_int_equal(d.next_attempt, 4); /* attempts counted as before */
    oq_retry_decide(cfg, OQ_ERR_PERMANENT, 1, &d);
    oq_retry_wait_at_least(cfg, 7000, &d); /* parked stays parked */
    assert_false(d.retry);
    oq_config_free(cfg);
}

static void only_transient_failures_come_back(void **state)
{
    (void)state;
    struct oq_config *cfg = oq_config_new();
    struct oq_retry_decision d;
    const enum oq_error_class parked[] = {OQ_ERR_PERMANENT, OQ_ERR_BAD_INPUT, OQ_ERR_UNKNOWN_EVENT,
                                          OQ_ERR_AMBIGUOUS};
    for (size_t i = 0; i < sizeof(parked) / sizeof(parked[0]); i++) {
        oq_retry_decide(cfg, parked[i], 1, &d);
        assert_false(d.retry);
    }
    char err[256];
    assert_int_equal(
        oq_config_set(cfg, "retry_tiers", "100ms,200ms", OQ_SRC_FLAG, "-", err, sizeof(err)), 0);
    assert_int_equal(oq_config_set(cfg, "max_attempts", "3", OQ_SRC_FLAG, "-", err, sizeof(err)),
                     0);
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 2, &d);
    assert_string_equal(d.tier_name, "200ms");
    oq_retry_decide(cfg, OQ_ERR_TRANSIENT, 3, &d);
    assert_false(d.retry);
    assert_string_equal(oq_error_class_name(OQ_ERR_BAD_INPUT), "bad_input");
    oq_config_free(cfg);
}

static void fingerprints_group_alike_errors(void **state)
{
    (void)state;
    char a[128], b[128], c[128];
    oq_error_fingerprint("permanent", "order 9200000217 not found (HTTP 404)", a, sizeof(a));
    oq_error_fingerprint("permanent", "order 9200000218 not found (HTTP 404)", b, sizeof(b));
    assert_string_equal(a, b);
    assert_string_equal(a, "permanent: order # not found (HTTP #)");
    oq_error_fingerprint("bad_input", "amount \"1.999\" has more than 2 decimal places", c,
                         sizeof(c));
    assert_string_equal(c, "bad_input: amount ? has more than # decimal places");
    oq_error_fingerprint("transient", "SMTP 451   4.7.1  try   later ", c, sizeof(c));
    assert_string_equal(c, "transient: SMTP # # try later");
    oq_error_fingerprint("permanent", "user 3f2a9c1e-aa01-4b7e-9d3a-1234567890ab gone", c,
                         sizeof(c));
    assert_string_equal(c, "permanent: user # gone");
    oq_error_fingerprint("transient", "x", c, 8);
    assert_true(strlen(c) <= 7);
}

static void cut_on_utf8_boundaries(void **state)
{
    (void)state;
    char out[12];
    oq_cut_utf8("short", out, sizeof(out));
    assert_string_equal(out, "short");
    oq_cut_utf8("\xe4\xb8\xad\xe6\x96\x87\xe4\xb8\xad\xe6\x96\x87", out,
                sizeof(out));                                /* 12 bytes */
    assert_string_equal(out, "\xe4\xb8\xad\xe6\x96\x87..."); /* two whole characters + ... */
    oq_cut_utf8("abcdefghijklmnop", out, sizeof(out));
    assert_string_equal(out, "abcdefgh...");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiers_follow_attempts),
        cmocka_unit_test(reconnect_backs_off_until_healthy),
        cmocka_unit_test(healthy_connection_starts_again),
        cmocka_unit_test(retry_after_picks_a_longer_tier),
        cmocka_unit_test(only_transient_failures_come_back),
        cmocka_unit_test(fingerprints_group_alike_errors),
        cmocka_unit_test(cut_on_utf8_boundaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
