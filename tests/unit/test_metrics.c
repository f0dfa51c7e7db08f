/* test_metrics.c - the /metrics text: families, labels, histogram buckets */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/event.h"
#include "orderq/metrics.h"

static char *scrape(void)
{
    size_t len = 0;
    char *text = oq_metrics_render(&len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

/* The value of the series line that starts with series (name and labels,
 * exactly), or -1 when there is none. */
static long long value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return -1;
}

static void assert_has_line(const char *text, const char *line)
{
    char *want = malloc(strlen(line) + 3);
    assert_non_null(want);
    snprintf(want, strlen(line) + 3, "\n%s\n", line);
    int first = strncmp(text, want + 1, strlen(want + 1)) == 0;
    if (!first && strstr(text, want) == NULL)
        fail_msg("no line [%s] in:\n%s", line, text);
    free(want);
}

/* Before anything is registered or recorded every family is there, with
 * its HELP and TYPE, and the labelled ones by queue or handler have no
 * series yet (first in this file: the values are the process's). */
static void families_without_samples(void **state)
{
    (void)state;
    char *t = scrape();
    assert_has_line(t, "# TYPE orderq_outcomes_total counter");
    assert_has_line(t, "# TYPE orderq_handler_duration_seconds histogram");
    assert_has_line(t, "# HELP orderq_deliveries_total Deliveries received, by queue.");
    assert_null(strstr(t, "orderq_outcomes_total{"));
    assert_null(strstr(t, "orderq_handler_duration_seconds_bucket{"));
    /* a histogram without observations: zero buckets, sum and count */
    assert_has_line(t, "orderq_batch_size_bucket{le=\"+Inf\"} 0");
    assert_has_line(t, "orderq_batch_size_sum 0");
    assert_has_line(t, "orderq_batch_size_count 0");
    assert_has_line(t, "orderq_reconnects_total{peer=\"database\"} 0");
    assert_non_null(strstr(t, "orderq_build_info{version=\""));
    const char *gone[] = {"orderq_effects_total", "orderq_duplicates_total",
                          "orderq_broker_disconnects_total", "orderq_ledger_unknown "};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_null(strstr(t, gone[i]));
    free(t);
}

/* Buckets are cumulative, +Inf equals the count, the sum is in seconds. */
static void histogram_buckets(void **state)
{
    (void)state;
    oq_metrics_observe(OQ_H_COMMIT, 400);     /* 0.0004 s: le 0.0005 */
    oq_metrics_observe(OQ_H_COMMIT, 500);     /* on the bound: le 0.0005 too */
    oq_metrics_observe(OQ_H_COMMIT, 3000);    /* le 0.005 */
    oq_metrics_observe(OQ_H_COMMIT, 9000000); /* 9 s: over 2.5, +Inf only */
    char *t = scrape();
    assert_has_line(t, "orderq_commit_duration_seconds_bucket{le=\"0.0005\"} 2");
    assert_has_line(t, "orderq_commit_duration_seconds_bucket{le=\"0.001\"} 2");
    assert_has_line(t, "orderq_commit_duration_seconds_bucket{le=\"0.0025\"} 2");
    assert_has_line(t, "orderq_commit_duration_seconds_bucket{le=\"0.005\"} 3");
    assert_has_line(t, "orderq_commit_duration_seconds_bucket{le=\"2.5\"} 3");
    assert_has_line(t, "orderq_commit_duration_seconds_bucket{le=\"+Inf\"} 4");
    assert_has_line(t, "orderq_commit_duration_seconds_count 4");
    assert_has_line(t, "orderq_commit_duration_seconds_sum 9.0039");
    /* counts stay counts */
    oq_metrics_observe(OQ_H_BATCH_SIZE, 250);
    oq_metrics_observe(OQ_H_BATCH_SIZE, 251);
    free(t);
    t = scrape();
    assert_has_line(t, "orderq_batch_size_bucket{le=\"100\"} 0");
    assert_has_line(t, "orderq_batch_size_bucket{le=\"250\"} 1");
    assert_has_line(t, "orderq_batch_size_bucket{le=\"500\"} 2");
    assert_has_line(t, "orderq_batch_size_sum 501");
    free(t);
}

/* Registered queues and handlers get every series at 0, so rate() works
 * from the first scrape; names repeated in the registry are one series. */
static void labelled_series(void **state)
{
    (void)state;
    const char *queues[] = {"orderq.order.processing", "orderq.probe", "orderq.probe"};
    const char *handlers[] = {"coupon_rules", "invoice_mail", "invoice_mail", "webhook"};
    oq_metrics_register_queues(queues, 3);
    oq_metrics_register_handlers(handlers, 4);
    int q = oq_metrics_queue_index("orderq.probe");
    assert_int_equal(q, 1);
    assert_int_equal(oq_metrics_queue_index("orderq.nope"), -1);
    oq_metrics_delivery(q);
    oq_metrics_delivery(q);
    oq_metrics_outcome(q, OQ_OUTCOME_DONE);
    oq_metrics_outcome(q, OQ_OUTCOME_INVALID);
    oq_metrics_outcome(-1, OQ_OUTCOME_DONE); /* no label: not recorded, no crash */
    oq_metrics_send(2, OQ_SEND_SENT);        /* the second invoice_mail entry */
    oq_metrics_send(1, OQ_SEND_AMBIGUOUS);
    oq_metrics_send(9, OQ_SEND_SENT); /* past the registry: ignored */
    oq_metrics_handler_duration(3, 1500);
    char *t = scrape();
    assert_int_equal(value_of(t, "orderq_deliveries_total{queue=\"orderq.probe\"}"), 2);
    assert_int_equal(value_of(t, "orderq_deliveries_total{queue=\"orderq.order.processing\"}"), 0);
    assert_int_equal(value_of(t, "orderq_outcomes_total{queue=\"orderq.probe\",outcome=\"done\"}"),
                     1);
    assert_int_equal(
        value_of(t, "orderq_outcomes_total{queue=\"orderq.probe\",outcome=\"invalid\"}"), 1);
    assert_int_equal(
        value_of(t, "orderq_outcomes_total{queue=\"orderq.order.processing\",outcome=\"retried\"}"),
        0);
    assert_int_equal(value_of(t, "orderq_sends_total{handler=\"invoice_mail\",result=\"sent\"}"),
                     1);
    assert_int_equal(
        value_of(t, "orderq_sends_total{handler=\"invoice_mail\",result=\"ambiguous\"}"), 1);
    assert_int_equal(value_of(t, "orderq_sends_total{handler=\"webhook\",result=\"sent\"}"), 0);
    /* one series per name: invoice_mail appears once per result */
    const char *first = strstr(t, "orderq_sends_total{handler=\"invoice_mail\",result=\"sent\"}");
    assert_non_null(first);
    assert_null(strstr(first + 1, "orderq_sends_total{handler=\"invoice_mail\",result=\"sent\"}"));
    assert_int_equal(
        value_of(t, "orderq_handler_duration_seconds_bucket{handler=\"webhook\",le=\"0.001\"}"), 0);
    assert_int_equal(
        value_of(t, "orderq_handler_duration_seconds_bucket{handler=\"webhook\",le=\"0.0025\"}"),
        1);
    assert_has_line(t, "orderq_handler_duration_seconds_sum{handler=\"webhook\"} 0.0015");
    assert_has_line(t, "orderq_handler_duration_seconds_count{handler=\"webhook\"} 1");
    free(t);
}

/* Label values escape backslash, double quote and newline. */
static void label_escaping(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(oq_metrics_escape_label("a\\b\"c\nd", out, sizeof(out)), 10);
    assert_string_equal(out, "a\\\\b\\\"c\\nd");
    assert_int_equal(oq_metrics_escape_label("queue\"x", out, 4), 8); /* cut, still terminated */
    assert_string_equal(out, "que");
    const char *odd[] = {"odd\"queue\\name\nx"};
    oq_metrics_register_queues(odd, 1);
    char *t = scrape();
    assert_has_line(t, "orderq_deliveries_total{queue=\"odd\\\"queue\\\\name\\nx\"} 0");
    free(t);
}

/* Dead letters by class: known classes by name, anything else as other. */
static void dead_letter_classes(void **state)
{
    (void)state;
    char *t = scrape(); /* nothing read yet: no sample, not a 0 */
    assert_null(strstr(t, "orderq_dead_letters{"));
    assert_null(strstr(t, "orderq_ledger_rows{"));
    assert_null(strstr(t, "\norderq_outbox_backlog "));
    assert_has_line(t, "orderq_db_gauges_read_timestamp_seconds 0");
    free(t);
    const char *classes[] = {"bad_input", "transient", "something_new", ""};
    const int64_t counts[] = {3, 4, 2, 1};
    oq_metrics_set_dead_letters(classes, counts, 4);
    oq_metrics_set_dead_letters(classes, counts, 1); /* a later read: only bad_input left */
    oq_metrics_set_ledger_rows(OQ_LEDGER_UNKNOWN, 7);
    oq_metrics_db_gauges_read();
    t = scrape();
    assert_has_line(t, "orderq_outbox_backlog 0");
    assert_has_line(t, "orderq_dead_letters{error_class=\"bad_input\"} 3");
    assert_has_line(t, "orderq_dead_letters{error_class=\"transient\"} 0");
    assert_has_line(t, "orderq_dead_letters{error_class=\"other\"} 0");
    assert_has_line(t, "orderq_ledger_rows{state=\"unknown\"} 7");
    free(t);
}

/* created_at: RFC 3339, offsets and fractions, else refused. */
static void event_times(void **state)
{
    (void)state;
    int64_t us = 0;
    assert_int_equal(oq_event_time_us("2017-02-23T11:06:40Z", &us), 0);
    assert_int_equal(us, 1487848000LL * 1000000);
    assert_int_equal(oq_event_time_us("2017-02-23T12:06:40.25+01:00", &us), 0);
    assert_int_equal(us, 1487848000LL * 1000000 + 250000);
    assert_int_equal(oq_event_time_us("2017-02-23T10:36:40-00:30", &us), 0);
    assert_int_equal(us, 1487848000LL * 1000000);
    /* Magento's created_at: a space, no zone, UTC */
    us = 0;
    assert_int_equal(oq_event_time_us("2017-02-23 11:06:40", &us), 0);
    assert_int_equal(us, 1487848000LL * 1000000);
    assert_int_equal(oq_event_time_us("2026-12-01 10:00:00", &us), 0);
    assert_int_equal(us, 1796119200LL * 1000000);
    assert_int_equal(oq_event_time_us("2017-02-23 12:06:40.5+01:00", &us), 0);
    assert_int_equal(us, 1487848000LL * 1000000 + 500000);
    assert_int_equal(oq_event_time_us("2017-02-23 11:06:40 ", &us), OQ_EINVAL);
    assert_int_equal(oq_event_time_us("2017-02-23 11:06", &us), OQ_EINVAL);
    assert_int_equal(oq_event_time_us("2017-02-23T11:06:40", &us), OQ_EINVAL); /* no zone */
    assert_int_equal(oq_event_time_us("2017-02-23T11:06:40Zjunk", &us), OQ_EINVAL);
    assert_int_equal(oq_event_time_us("yesterday", &us), OQ_EINVAL);
    assert_int_equal(oq_event_time_us(NULL, &us), OQ_EINVAL);
}

/* An absurd value (an event "born" in year 1: an age of 2,000 years) counts
 * in +Inf and at most 10x the top bound in the sum; the sum never wraps
 * into a negative number the scraper could not parse (it did:
 * "orderq_event_age_seconds_sum -9112706168797.-551616" broke every scrape). */
static void absurd_values_capped(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++)
        oq_metrics_observe(OQ_H_EVENT_AGE, INT64_C(63113904000) * 1000000);
    char *t = scrape();
    assert_has_line(t, "orderq_event_age_seconds_bucket{le=\"3600\"} 0");
    assert_has_line(t, "orderq_event_age_seconds_bucket{le=\"+Inf\"} 200");
    assert_has_line(t, "orderq_event_age_seconds_sum 7200000"); /* 200 x 36000 s */
    free(t);
    for (int i = 0; i < 300000; i++) /* 3e5 x 3.6e10 us: past INT64_MAX unless it saturates */
        oq_metrics_observe(OQ_H_EVENT_AGE, INT64_MAX);
    t = scrape();
    assert_null(strstr(t, "orderq_event_age_seconds_sum -"));
    assert_null(strstr(t, ".-"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(families_without_samples), cmocka_unit_test(histogram_buckets),
        cmocka_unit_test(labelled_series),          cmocka_unit_test(label_escaping),
        cmocka_unit_test(dead_letter_classes),      cmocka_unit_test(event_times),
        cmocka_unit_test(absurd_values_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
