/* test_status.c - `orderq status`: number and age formats, cutting text, the screen and JSON */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "orderq/json.h"
#include "orderq/status.h"

static void counts(void **state)
{
    char b[32];
    (void)state;
    assert_string_equal(oq_status_count(0, b, sizeof(b)), "0");
    assert_string_equal(oq_status_count(999, b, sizeof(b)), "999");
    assert_string_equal(oq_status_count(1000, b, sizeof(b)), "1,000");
    assert_string_equal(oq_status_count(1234567, b, sizeof(b)), "1,234,567");
    assert_string_equal(oq_status_count(100000, b, sizeof(b)), "100,000");
    assert_string_equal(oq_status_count(INT64_MAX, b, sizeof(b)), "9,223,372,036,854,775,807");
    assert_string_equal(oq_status_count(-1, b, sizeof(b)), "-"); /* not reported */
    char small[4];
    assert_true(strlen(oq_status_count(123456, small, sizeof(small))) < sizeof(small));
}

static void ages(void **state)
{
    char b[32];
    (void)state;
    assert_string_equal(oq_status_age(0, b, sizeof(b)), "0s");
    assert_string_equal(oq_status_age(59, b, sizeof(b)), "59s");
    assert_string_equal(oq_status_age(65, b, sizeof(b)), "1m 05s");
    assert_string_equal(oq_status_age(3599, b, sizeof(b)), "59m 59s");
    assert_string_equal(oq_status_age(7620, b, sizeof(b)), "2h 07m");
    assert_string_equal(oq_status_age(4 * 86400 + 3 * 3600 + 59, b, sizeof(b)), "4d 03h");
    assert_string_equal(oq_status_age(-5, b, sizeof(b)), "0s"); /* clocks apart */
}

static void fitting(void **state)
{
    char b[64];
    (void)state;
    assert_string_equal(oq_status_fit("short", 10, b, sizeof(b)), "short");
    assert_string_equal(oq_status_fit("exactly10!", 10, b, sizeof(b)), "exactly10!");
    assert_string_equal(oq_status_fit("a bit too long", 10, b, sizeof(b)), "a bit t...");
    assert_int_equal(strlen(b), 10);
    /* "é" is two bytes: never cut between them */
    assert_string_equal(oq_status_fit("abcdé fin", 8, b, sizeof(b)), "abcd...");
    assert_string_equal(oq_status_fit("abcdefgh", 2, b, sizeof(b)), "..");
    /* no terminal escapes from the database: ESC, newline, DEL, C1 CSI (U+009B) */
    assert_string_equal(oq_status_fit("a\x1b[31mred\nx\x7f\xc2\x9b" "2J", 40, b, sizeof(b)),
                        "a [31mred x   2J");
    assert_string_equal(oq_status_fit("\x1b[2Jcleared screen", 10, b, sizeof(b)), " [2Jcle...");
    char small[6];
    assert_string_equal(oq_status_fit("a long line", 40, small, sizeof(small)), "a ...");
}

/* A status as collect would fill it: one queue missing, a large count. */
static struct oq_status *sample(void)
{
    struct oq_status *st = calloc(1, sizeof(*st));
    assert_non_null(st);
    snprintf(st->vhost, sizeof(st->vhost), "shop");
    snprintf(st->at, sizeof(st->at), "2026-12-02T00:00:00Z");
    st->broker_ok = st->db_ok = 1;
    st->queues = calloc(2, sizeof(*st->queues));
    st->queues[0] =
        (struct oq_status_queue){strdup("orderq.order.processing"), "work", 1, 1234567, 3, 2};
    st->queues[1] = (struct oq_status_queue){strdup("orderq.delay.1h"), "delay", 0, -1, -1, -1};
    st->n_queues = 2;
    st->handlers = calloc(1, sizeof(*st->handlers));
    st->handlers[0].handler = strdup("a_handler_name_longer_than_twenty_bytes");
    st->handlers[0].rows[0] = 5000;
    st->handlers[0].rows[1] = 2;
    st->n_handlers = 1;
    st->sending = 2;
    st->sending_expired = 1;
    st->classes = calloc(1, sizeof(*st->classes));
    st->classes[0] = (struct oq_status_class){strdup("bad_input"), 7};
    st->n_classes = 1;
    st->dead_letters = 7;
    char long_fp[300];
    memset(long_fp, 'x', sizeof(long_fp) - 1);
    long_fp[sizeof(long_fp) - 1] = '\0';
    st->top[0] = (struct oq_status_fingerprint){strdup(long_fp), strdup("bad_input"),
                                                strdup("orderq.a,orderq.b"),
                                                strdup("2026-12-01T23:59:58Z"), 7};
    st->n_top = 1;
    st->outbox_backlog = 12;
    st->outbox_oldest_s = 90;
    return st;
}

static char *render(const struct oq_status *st, int json)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    if (json)
        assert_int_equal(oq_status_print_json(st, f), 0);
    else
        oq_status_print_text(st, f);
    fclose(f);
    return text;
}

static void screen(void **state)
{
    (void)state;
    struct oq_status *st = sample();
    char *text = render(st, 0);
    assert_non_null(
        strstr(text, "  orderq.order.processing   1,234,567           3           2\n"));
    assert_non_null(strstr(text, "  orderq.delay.1h             missing\n"));
    assert_non_null(strstr(text, "  a_handler_name_lo...      5,000          2"));
    assert_non_null(strstr(text, "  sending 2 (lease expired: 1), unknown 0\n"));
    assert_non_null(strstr(text, "  bad_input                                  7\n"));
    assert_non_null(strstr(text, "DEAD LETTERS (not replayed): 7\n"));
    assert_non_null(strstr(text, "            7  2026-12-01 23:59:58   orderq.a,orderq.b\n"));
    assert_non_null(strstr(text, "OUTBOX: 12 unpublished, the oldest 1m 30s old\n"));
    for (char *line = text; *line;) {
        size_t len = strcspn(line, "\n");
        assert_in_range(len, 0, 80); /* no wide terminal needed */
        line += len + (line[len] == '\n');
    }
    free(text);
    oq_status_free(st);
}

static void json_shape(void **state)
{
    (void)state;
    struct oq_status *st = sample();
    char *text = render(st, 1);
    char err[256];
    yajl_val d = oq_json_parse(text, err, sizeof(err));
    assert_non_null(d);
    const char *keys[] = {"at",     "vhost",  "ok",           "errors",
                          "queues", "ledger", "dead_letters", "outbox"};
    assert_int_equal(d->u.object.len, 8);
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(d->u.object.keys[i], keys[i]);
    yajl_val q = oq_json_member(d, "queues");
    assert_int_equal(YAJL_GET_INTEGER(oq_json_member(q->u.array.values[0], "ready")), 1234567);
    assert_true(YAJL_IS_NULL(oq_json_member(q->u.array.values[1], "ready")));
    assert_true(YAJL_IS_FALSE(oq_json_member(q->u.array.values[1], "exists")));
    yajl_val fp = oq_json_member(oq_json_member(d, "dead_letters"), "top_fingerprints");
    yajl_val queues = oq_json_member(fp->u.array.values[0], "queues");
    assert_int_equal(queues->u.array.len, 2);
    assert_string_equal(YAJL_GET_STRING(queues->u.array.values[1]), "orderq.b");
    assert_int_equal(strlen(oq_json_text(fp->u.array.values[0], "fingerprint")), 299); /* whole */
    yajl_tree_free(d);
    free(text);

    /* The broker unreadable: queues null, the reason under errors, the rest kept. */
    st->broker_ok = 0;
    snprintf(st->broker_error, sizeof(st->broker_error), "RabbitMQ management API at x: refused");
    text = render(st, 1);
    d = oq_json_parse(text, err, sizeof(err));
    assert_non_null(d);
    assert_true(YAJL_IS_FALSE(oq_json_member(d, "ok")));
    assert_true(YAJL_IS_NULL(oq_json_member(d, "queues")));
    yajl_val e = oq_json_member(d, "errors")->u.array.values[0];
    assert_string_equal(oq_json_text(e, "source"), "rabbitmq");
    assert_int_equal(YAJL_GET_INTEGER(oq_json_member(oq_json_member(d, "outbox"), "backlog")), 12);
    yajl_tree_free(d);
    free(text);
    text = render(st, 0);
    assert_non_null(strstr(text, "  unavailable: RabbitMQ management API at x: refused\n"));
    assert_non_null(strstr(text, "OUTBOX: 12 unpublished"));
    free(text);
    oq_status_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts), cmocka_unit_test(ages),       cmocka_unit_test(fitting),
        cmocka_unit_test(screen), cmocka_unit_test(json_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
