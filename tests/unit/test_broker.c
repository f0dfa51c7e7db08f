/* test_broker.c - watching a raw AMQP input for the broker's close-ok */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "orderq/broker.h"

static const unsigned char CLOSE_OK[] = {1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 51, 0xCE};
static const unsigned char HEARTBEAT[] = {8, 0, 0, 0, 0, 0, 0, 0xCE};
/* the last bytes of a body frame: 40 bytes of body, then frame end */
static const unsigned char BODY_END[] = "{\"event_identifier\":\"o-1_processing\"}  \xCE";

static void close_ok_alone_and_after_deliveries(void **state)
{
    (void)state;
    struct oq_close_ok_watch w = {.len = 0};
    assert_false(oq_close_ok_watch_seen(&w));
    oq_close_ok_watch_add(&w, CLOSE_OK, sizeof(CLOSE_OK));
    assert_true(oq_close_ok_watch_seen(&w));

    struct oq_close_ok_watch after = {.len = 0};
    unsigned char big[70000];
    memset(big, 'x', sizeof(big));
    oq_close_ok_watch_add(&after, big, sizeof(big)); /* more than the watch keeps */
    assert_false(oq_close_ok_watch_seen(&after));
    oq_close_ok_watch_add(&after, BODY_END, sizeof(BODY_END) - 1);
    oq_close_ok_watch_add(&after, CLOSE_OK, sizeof(CLOSE_OK));
    assert_true(oq_close_ok_watch_seen(&after));
}

static void close_ok_split_over_reads(void **state)
{
    (void)state;
    struct oq_close_ok_watch w = {.len = 0};
    oq_close_ok_watch_add(&w, BODY_END, sizeof(BODY_END) - 1);
    for (size_t i = 0; i < sizeof(CLOSE_OK); i++) {
        assert_false(oq_close_ok_watch_seen(&w));
        oq_close_ok_watch_add(&w, CLOSE_OK + i, 1);
    }
    assert_true(oq_close_ok_watch_seen(&w));

    /* one read holding the end of a body and the close-ok, larger than
     * the watch */
    unsigned char read[100];
    memset(read, 'y', sizeof(read));
    memcpy(read + sizeof(read) - sizeof(CLOSE_OK), CLOSE_OK, sizeof(CLOSE_OK));
    struct oq_close_ok_watch one = {.len = 0};
    oq_close_ok_watch_add(&one, read, sizeof(read));
    assert_true(oq_close_ok_watch_seen(&one));
}

static void heartbeats_after_it_are_passed_over(void **state)
{
    (void)state;
    struct oq_close_ok_watch w = {.len = 0};
    oq_close_ok_watch_add(&w, BODY_END, sizeof(BODY_END) - 1);
    oq_close_ok_watch_add(&w, CLOSE_OK, sizeof(CLOSE_OK));
    for (int i = 0; i < 3; i++) {
        oq_close_ok_watch_add(&w, HEARTBEAT, sizeof(HEARTBEAT));
        assert_true(oq_close_ok_watch_seen(&w));
    }
    /* heartbeats alone are not a close-ok */
    struct oq_close_ok_watch beats = {.len = 0};
    for (int i = 0; i < 8; i++)
        oq_close_ok_watch_add(&beats, HEARTBEAT, sizeof(HEARTBEAT));
    assert_false(oq_close_ok_watch_seen(&beats));
}

static void anything_after_it_means_it_was_not_the_last_frame(void **state)
{
    (void)state;
    struct oq_close_ok_watch w = {.len = 0};
    oq_close_ok_watch_add(&w, CLOSE_OK, sizeof(CLOSE_OK));
    oq_close_ok_watch_add(&w, BODY_END, sizeof(BODY_END) - 1);
    assert_false(oq_close_ok_watch_seen(&w));
    /* a connection.close (method 50) from the broker is not its close-ok */
    unsigned char close[sizeof(CLOSE_OK)];
    memcpy(close, CLOSE_OK, sizeof(close));
    close[10] = 50;
    struct oq_close_ok_watch c = {.len = 0};
    oq_close_ok_watch_add(&c, close, sizeof(close));
    assert_false(oq_close_ok_watch_seen(&c));
    /* nor the close-ok of channel 1 (channel.close-ok is class 20) */
    unsigned char channel_close_ok[sizeof(CLOSE_OK)];
    memcpy(channel_close_ok, CLOSE_OK, sizeof(channel_close_ok));
    channel_close_ok[2] = 1;
    channel_close_ok[8] = 20;
    channel_close_ok[10] = 41;
    struct oq_close_ok_watch ch = {.len = 0};
    oq_close_ok_watch_add(&ch, channel_close_ok, sizeof(channel_close_ok));
    assert_false(oq_close_ok_watch_seen(&ch));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(close_ok_alone_and_after_deliveries),
        cmocka_unit_test(close_ok_split_over_reads),
        cmocka_unit_test(heartbeats_after_it_are_passed_over),
        cmocka_unit_test(anything_after_it_means_it_was_not_the_last_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
