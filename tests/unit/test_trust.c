/* test_trust.c - whose x-orderq-* headers orderq believes */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/trust.h"

static void own_user_is_amqp_urls(void **state)
{
    (void)state;
    struct oq_config *cfg = oq_config_new();
    char err[256], *user = NULL;
    assert_int_equal(oq_trust_own_user(cfg, &user), 0);
    assert_string_equal(user, "guest"); /* the default URL's */
    free(user);
    assert_int_equal(oq_config_set(cfg, "amqp_url", "amqp://orderq%2Dapp:pw@mq:5672/shop",
                                   OQ_SRC_FLAG, "test", err, sizeof(err)),
                     0);
    assert_int_equal(oq_trust_own_user(cfg, &user), 0);
    assert_string_equal(user, "orderq-app"); /* percent-decoded, as it logs in */
    free(user);
    oq_config_free(cfg);
}

static void only_orderqs_user_id_counts(void **state)
{
    (void)state;
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof(p));
    assert_false(oq_trust_published_by(&p, "orderq")); /* no user_id */
    p._flags = AMQP_BASIC_USER_ID_FLAG;
    p.user_id = amqp_cstring_bytes("orderq");
    assert_true(oq_trust_published_by(&p, "orderq"));
    assert_false(oq_trust_published_by(&p, NULL));
    p.user_id = amqp_cstring_bytes("orderq2");
    assert_false(oq_trust_published_by(&p, "orderq"));
    p.user_id = amqp_cstring_bytes("order");
    assert_false(oq_trust_published_by(&p, "orderq"));
}

static void orderqs_headers_are_named(void **state)
{
    (void)state;
    amqp_table_entry_t h[] = {
        oq_amqp_entry_i64("x-orderq-attempt", 99),
        oq_amqp_entry_text("x-shop", amqp_cstring_bytes("kept")),
        oq_amqp_entry_i64("x-orderq-outbox-id", 7), /* orderq's relays, on first publishes */
        oq_amqp_entry_i64("x-orderq-legacy-id", 8),
        oq_amqp_entry_i64("x-orderq-force-resend", 1),
        oq_amqp_entry_i64("x-orderq", 1), /* not the prefix */
        oq_amqp_entry_i64("x-orderq-\n\xff", 1),
    };
    amqp_basic_properties_t p;
    memset(&p, 0, sizeof(p));
    char names[64];
    assert_int_equal(oq_trust_orderq_headers(&p, names, sizeof(names)), 0);
    assert_string_equal(names, "");
    p._flags = AMQP_BASIC_HEADERS_FLAG;
    p.headers = (amqp_table_t){7, h};
    assert_int_equal(oq_trust_orderq_headers(&p, names, sizeof(names)), 3);
    assert_string_equal(names, "x-orderq-attempt, x-orderq-force-resend, x-orderq-??");
    /* Too many to name: cut with "...", all counted. */
    char small[24];
    assert_int_equal(oq_trust_orderq_headers(&p, small, sizeof(small)), 3);
    assert_string_equal(small, "x-orderq-attempt...");
    assert_int_equal(oq_trust_orderq_headers(&p, names, 0), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(own_user_is_amqp_urls),
        cmocka_unit_test(only_orderqs_user_id_counts),
        cmocka_unit_test(orderqs_headers_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
