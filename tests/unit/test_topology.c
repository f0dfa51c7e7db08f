/* test_topology.c - the topology plan built from the configuration */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/config.h"
#include "orderq/topology.h"

static char err[512];

static const struct oq_topo_queue *queue(const struct oq_topology *t, const char *name)
{
    for (size_t i = 0; i < t->n_queues; i++)
        if (strcmp(t->queues[i].name, name) == 0)
            return &t->queues[i];
    return NULL;
}

static const struct oq_topo_arg *arg(const struct oq_topo_queue *q, const char *key)
{
    for (size_t i = 0; q && i < q->nargs; i++)
        if (strcmp(q->args[i].key, key) == 0)
            return &q->args[i];
    return NULL;
}

static int bound(const struct oq_topology *t, const char *ex, const char *q, const char *key)
{
    for (size_t i = 0; i < t->n_bindings; i++)
        if (!strcmp(t->bindings[i].exchange, ex) && !strcmp(t->bindings[i].queue, q) &&
            !strcmp(t->bindings[i].routing_key, key))
            return 1;
    return 0;
}

static void default_plan_has_the_architecture_names(void **state)
{
    (void)state;
    struct oq_config *cfg = oq_config_new();
    struct oq_topology *t = NULL;
    assert_int_equal(oq_topology_plan(cfg, &t, err, sizeof(err)), 0);
    assert_int_equal(t->n_exchanges, 3);
    assert_string_equal(t->exchanges[0].name, "shop.events");
    assert_string_equal(t->exchanges[0].type, "topic");
    assert_true(t->exchanges[0].shops);
    assert_string_equal(t->exchanges[1].type, "headers");
    assert_string_equal(t->exchanges[2].type, "fanout");
    /* 4 work queues, 6 delay tiers, 1 dead-letter queue and its held queue */
    assert_int_equal(t->n_queues, 13);

    const struct oq_topo_queue *w = queue(t, "orderq.order.processing");
    assert_non_null(w);
    assert_string_equal(arg(w, "x-queue-type")->str, "quorum");
    assert_int_equal(arg(w, "x-delivery-limit")->num, 20);
    assert_string_equal(arg(w, "x-dead-letter-exchange")->str, "orderq.dead");
    assert_string_equal(arg(w, "x-dead-letter-strategy")->str, "at-least-once");
    assert_string_equal(arg(w, "x-overflow")->str, "reject-publish");
    assert_true(bound(t, "shop.events", "orderq.order.processing", "order.processing"));
    assert_true(bound(t, "shop.events", "orderq.order.processing", "add_order_to_queue"));
    assert_true(bound(t, "shop.events", "orderq.coupon.email", "send_coupon_code_by_email"));

    const struct oq_topo_queue *d = queue(t, "orderq.delay.2m");
    assert_non_null(d);
    assert_int_equal(arg(d, "x-message-ttl")->num, 120000);
    assert_string_equal(arg(d, "x-dead-letter-exchange")->str, ""); /* back by routing key */
    assert_null(arg(d, "x-delivery-limit"));

    /* the tier header must not start with x-: headers exchanges ignore those */
    int tier_bindings = 0;
    for (size_t i = 0; i < t->n_bindings; i++) {
        const struct oq_topo_binding *b = &t->bindings[i];
        if (strcmp(b->exchange, "orderq.delay") != 0)
            continue;
        tier_bindings++;
        assert_int_equal(b->nargs, 2);
        assert_string_equal(b->args[0].key, "x-match");
        assert_string_equal(b->args[0].str, "all");
        assert_string_equal(b->args[1].key, "orderq-delay");
        assert_string_equal(b->queue + strlen("orderq.delay."), b->args[1].str);
    }
    assert_int_equal(tier_bindings, 6);
    const struct oq_topo_queue *dead = queue(t, "orderq.dead");
    assert_non_null(dead);
    assert_true(bound(t, "orderq.dead", "orderq.dead", ""));
    /* a letter the archiver cannot read is rejected into the held queue */
    assert_string_equal(arg(dead, "x-dead-letter-exchange")->str, "");
    assert_string_equal(arg(dead, "x-dead-letter-routing-key")->str, "orderq.dead.held");
    assert_string_equal(arg(dead, "x-dead-letter-strategy")->str, "at-least-once");
    assert_int_equal(dead->nargs_legacy, 1); /* older installs: x-queue-type only */
    assert_true(oq_topology_dead_letters(t, "orderq.dead"));
    assert_false(oq_topology_dead_letters(t, "orderq.dead.held"));
    const struct oq_topo_queue *held = queue(t, "orderq.dead.held");
    assert_non_null(held);
    assert_string_equal(arg(held, "x-queue-type")->str, "quorum");
    assert_null(arg(held, "x-dead-letter-exchange")); /* nowhere further */
    oq_topology_free(t);
    oq_config_free(cfg);
}

static void classic_queues_and_custom_names(void **state)
{
    (void)state;
    struct oq_config *cfg = oq_config_new();
    struct oq_topology *t = NULL;
    assert_int_equal(
        oq_config_set(cfg, "queue_type", "classic", OQ_SRC_FLAG, "-", err, sizeof(err)), 0);
    assert_int_equal(
        oq_config_set(cfg, "queue_prefix", "shop1", OQ_SRC_FLAG, "-", err, sizeof(err)), 0);
    assert_int_equal(
        oq_config_set(cfg, "retry_tiers", "250ms,3s", OQ_SRC_FLAG, "-", err, sizeof(err)), 0);
    assert_int_equal(
        oq_config_set(cfg, "shop_exchange", "magento", OQ_SRC_FLAG, "-", err, sizeof(err)), 0);
    assert_int_equal(oq_topology_plan(cfg, &t, err, sizeof(err)), 0);
    const struct oq_topo_queue *w = queue(t, "shop1.invoice.created");
    assert_non_null(w);
    assert_string_equal(arg(w, "x-queue-type")->str, "classic");
    /* classic queues support neither of these */
    assert_null(arg(w, "x-delivery-limit"));
    assert_null(arg(w, "x-dead-letter-strategy"));
    assert_true(bound(t, "magento", "shop1.invoice.created", "invoice.created"));
    assert_non_null(queue(t, "orderq.delay.250ms"));
    assert_int_equal(arg(queue(t, "orderq.delay.3s"), "x-message-ttl")->num, 3000);
    assert_int_equal(t->n_queues, 5 + 2 + 2);
    oq_topology_free(t);
    oq_config_free(cfg);
}

static void definitions_are_json_with_every_part(void **state)
{
    (void)state;
    struct oq_config *cfg = oq_config_new();
    struct oq_topology *t = NULL;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(oq_topology_plan(cfg, &t, err, sizeof(err)), 0);
    FILE *f = open_memstream(&out, &len);
    assert_int_equal(oq_topology_write_definitions(t, "shop/prod", f), 0);
    fclose(f);
    assert_non_null(strstr(out, "\"vhost\": \"shop/prod\""));
    assert_non_null(strstr(out, "\"x-delivery-limit\": 20"));
    assert_non_null(strstr(out, "\"orderq-delay\": \"1h\""));
    assert_non_null(strstr(out, "\"destination_type\": \"queue\""));
    free(out);
    oq_topology_free(t);
    oq_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_plan_has_the_architecture_names),
        cmocka_unit_test(classic_queues_and_custom_names),
        cmocka_unit_test(definitions_are_json_with_every_part),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
