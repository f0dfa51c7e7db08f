/* test_log.c - JSON lines, fields, and the level checked before formatting */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderq/log.h"

static char captured[8192];

/* Run fn with stderr sent to a file; leave what it wrote in `captured`. */
static void capture(void (*fn)(void))
{
    char path[] = "/tmp/orderq-log-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(STDERR_FILENO);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, captured, sizeof(captured) - 1, 0);
    captured[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

static int formatted;

static int count_formatting(void)
{
    return ++formatted;
}

static void write_lines(void)
{
    oq_log_set_level(OQ_LOG_INFO);
    oq_debug("never %d", count_formatting()); /* below the level: not even formatted */
    struct oq_log_fields f = {.queue = "orderq.order.processing",
                              .event_identifier = "9200000217_processing",
                              .delivery_tag = 42,
                              .attempt = 3};
    oq_log(OQ_LOG_WARN, &f, "said \"%s\"\nand more", "hi");
    oq_error("plain");
    oq_info("bad \xff byte and a cut \xe4\xb8");
}

static void lines_are_json_with_fields(void **state)
{
    (void)state;
    formatted = 0;
    capture(write_lines);
    assert_int_equal(formatted, 0);
    char *second = strchr(captured, '\n');
    assert_non_null(second);
    *second++ = '\0';
    assert_non_null(strstr(captured, "{\"ts\":\""));
    assert_non_null(strstr(captured, "Z\",\"level\":\"warn\""));
    assert_non_null(strstr(captured, "\"msg\":\"said \\\"hi\\\"\\nand more\""));
    assert_non_null(strstr(captured, "\"queue\":\"orderq.order.processing\""));
    assert_non_null(strstr(captured, "\"event_identifier\":\"9200000217_processing\""));
    assert_non_null(strstr(captured, "\"delivery_tag\":42"));
    assert_non_null(strstr(captured, "\"attempt\":3}"));
    assert_non_null(strstr(second, "\"level\":\"error\",\"msg\":\"plain\"}\n"));
    assert_null(strstr(second, "queue")); /* no fields when none are known */
    assert_null(strstr(captured, "never"));
    /* invalid UTF-8 never reaches the JSON line */
    assert_non_null(strstr(second, "\"msg\":\"bad ? byte and a cut ??\"}\n"));
}

static void write_hostile_text(void)
{
    oq_log_set_level(OQ_LOG_INFO);
    oq_log_set_format(1);
    struct oq_log_fields f = {.queue = "orderq.x\nforged", .event_identifier = "e\x1b]0;t\x07"};
    /* event data that tries to end the line and forge the next one */
    oq_log(OQ_LOG_WARN, &f, "bad order %s",
           "a\n2026-12-01T00:00:00.000Z error forged\rCR\x1b[31mred\x7f\x01"
           "\xc2\x85nel\xe2\x80\xa8ls\xe2\x80\xa9ps tab\tback\\slash \xff caf\xc3\xa9");
    oq_log_set_format(0);
}

static void text_lines_escape_control_characters(void **state)
{
    (void)state;
    capture(write_hostile_text);
    char *nl = strchr(captured, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1, ""); /* one line, ending the output */
    assert_null(strchr(captured, '\r'));
    assert_null(strchr(captured, '\x1b'));
    assert_null(strchr(captured, '\x7f'));
    assert_null(strstr(captured, "\xe2\x80\xa8"));
    assert_non_null(strstr(captured, " warn  bad order a\\n2026-12-01T00:00:00.000Z error "
                                     "forged\\rCR\\x1b[31mred\\x7f\\x01\\u0085nel\\u2028ls"
                                     "\\u2029ps tab\\tback\\\\slash ? caf\xc3\xa9"));
    assert_non_null(
        strstr(captured, " queue=orderq.x\\nforged event_identifier=e\\x1b]0;t\\x07\n"));
}

static void levels_parse(void **state)
{
    (void)state;
    assert_int_equal(oq_log_level_parse("debug"), OQ_LOG_DEBUG);
    assert_int_equal(oq_log_level_parse("error"), OQ_LOG_ERROR);
    assert_int_equal(oq_log_level_parse("loud"), -1);
    assert_string_equal(oq_log_level_name(OQ_LOG_WARN), "warn");
}

static void a_limiter_lets_one_line_through_per_period(void **state)
{
    (void)state;
    struct oq_log_limiter l = OQ_LOG_LIMITER_INIT;
    long skipped = -1;
    assert_true(oq_log_limiter_take(&l, 3600, &skipped));
    assert_int_equal(skipped, 0);
    for (int i = 0; i < 1000; i++)
        assert_false(oq_log_limiter_take(&l, 3600, &skipped));
    l.last -= 3600; /* the period is over */
    assert_true(oq_log_limiter_take(&l, 3600, &skipped));
    assert_int_equal(skipped, 1000);
    assert_false(oq_log_limiter_take(&l, 3600, &skipped));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lines_are_json_with_fields),
        cmocka_unit_test(text_lines_escape_control_characters),
        cmocka_unit_test(levels_parse),
        cmocka_unit_test(a_limiter_lets_one_line_through_per_period),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
