/* topology.c - what orderq needs on the broker: plan, declare, verify, export */
#include "orderq/topology.h"

#include <amqp.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "orderq/http_effect.h"
#include "orderq/intake.h"
#include "orderq/json.h"
#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/deadletter.h"
#include "orderq/log.h"
#include "orderq/url.h"
#include "orderq/webhook.h"

/* ---- plan ---------------------------------------------------------------- */

static char *own(struct oq_topology *t, char *s)
{
    if (s == NULL || t->n_strings == sizeof(t->strings) / sizeof(t->strings[0])) {
        free(s);
        return NULL;
    }
    t->strings[t->n_strings++] = s;
    return s;
}

static char *joined(const char *a, const char *sep, const char *b)
{
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s%s%s", a, sep, b);
    return s;
}

static int add_exchange(struct oq_topology *t, const char *name, const char *type, int shops)
{
    struct oq_topo_exchange *grown =
        realloc(t->exchanges, (t->n_exchanges + 1) * sizeof(*t->exchanges));
    if (grown == NULL)
        return OQ_ENOMEM;
    t->exchanges = grown;
    struct oq_topo_exchange *e = &t->exchanges[t->n_exchanges];
    if ((e->name = strdup(name)) == NULL)
        return OQ_ENOMEM;
    e->type = type;
    e->shops = shops;
    t->n_exchanges++;
    return 0;
}

static struct oq_topo_queue *add_queue(struct oq_topology *t, char *name, const char *event_code)
{
    struct oq_topo_queue *grown = realloc(t->queues, (t->n_queues + 1) * sizeof(*t->queues));
    if (grown == NULL || name == NULL) {
        free(name);
        if (grown != NULL)
            t->queues = grown;
        return NULL;
    }
    t->queues = grown;
    struct oq_topo_queue *q = &t->queues[t->n_queues++];
    memset(q, 0, sizeof(*q));
    q->name = name;
    q->event_code = event_code;
    return q;
}

static void arg_str(struct oq_topo_queue *q, const char *key, const char *value)
{
    q->args[q->nargs++] = (struct oq_topo_arg){key, value, 0};
}

static void arg_num(struct oq_topo_queue *q, const char *key, int64_t value)
{
    q->args[q->nargs++] = (struct oq_topo_arg){key, NULL, value};
}

static struct oq_topo_binding *add_binding(struct oq_topology *t, const char *exchange,
                                           const char *queue, const char *routing_key)
{
    struct oq_topo_binding *grown =
        realloc(t->bindings, (t->n_bindings + 1) * sizeof(*t->bindings));
    if (grown == NULL)
        return NULL;
    t->bindings = grown;
    struct oq_topo_binding *b = &t->bindings[t->n_bindings];
    memset(b, 0, sizeof(*b));
    b->exchange = strdup(exchange);
    b->queue = strdup(queue);
    b->routing_key = strdup(routing_key);
    t->n_bindings++; /* counted even when a strdup failed, so free sees it */
    if (!b->exchange || !b->queue || !b->routing_key)
        return NULL;
    return b;
}

/* Quorum queues: replicated, with at-least-once dead-lettering, which
 * needs x-overflow reject-publish. */
static void queue_type_args(const struct oq_config *cfg, struct oq_topo_queue *q)
{
    arg_str(q, "x-queue-type", cfg->queue_type == OQ_QUEUE_QUORUM ? "quorum" : "classic");
}

static void dead_letter_args(const struct oq_config *cfg, struct oq_topo_queue *q, const char *dlx)
{
    arg_str(q, "x-dead-letter-exchange", dlx);
    if (cfg->queue_type == OQ_QUEUE_QUORUM) {
        arg_str(q, "x-dead-letter-strategy", "at-least-once");
        arg_str(q, "x-overflow", "reject-publish");
    }
}

static struct oq_topo_queue *add_work_queue(const struct oq_config *cfg, struct oq_topology *t,
                                            const char *suffix, const char *event_code)
{
    struct oq_topo_queue *q = add_queue(t, joined(cfg->queue_prefix, ".", suffix), event_code);
    if (q == NULL)
        return NULL;
    queue_type_args(cfg, q);
    if (cfg->queue_type == OQ_QUEUE_QUORUM)
        arg_num(q, "x-delivery-limit", cfg->delivery_limit);
    dead_letter_args(cfg, q, cfg->dead_exchange);
    return q;
}

/* A binding from the shop exchange to queue, unless the plan has it: a
 * shop code in intake may be the event code or an alias already. */
static int bind_shop_code(const struct oq_config *cfg, struct oq_topology *t, const char *queue,
                          const char *code)
{
    for (size_t i = 0; i < t->n_bindings; i++) {
        const struct oq_topo_binding *b = &t->bindings[i];
        if (b->routing_key && strcmp(b->routing_key, code) == 0 && strcmp(b->queue, queue) == 0 &&
            strcmp(b->exchange, cfg->shop_exchange) == 0)
            return 0;
    }
    return add_binding(t, cfg->shop_exchange, queue, code) ? 0 : OQ_ENOMEM;
}

/* <prefix>.webhook, bound to every event code in webhooks_file and to the
 * shop's own codes for it (intake), as its work queue is. */
static int plan_webhook_queue(const struct oq_config *cfg, struct oq_topology *t,
                              const struct oq_intake *in, char *err, size_t errlen)
{
    struct oq_webhook *hooks = NULL;
    size_t n = 0;
    if (cfg->webhooks_file[0] == '\0')
        return 0;
    int rc = oq_webhooks_load(cfg->webhooks_file, &hooks, &n, err, errlen);
    if (rc != 0)
        return rc == OQ_ENOMEM ? rc : OQ_ECONFIG;
    struct oq_topo_queue *q = add_work_queue(cfg, t, OQ_WEBHOOK_QUEUE, NULL);
    rc = q == NULL ? OQ_ENOMEM : 0;
    const char *name = q ? q->name : NULL;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const struct oq_intake_rule *rule = oq_intake_find(in, hooks[i].event_code);
        rc = bind_shop_code(cfg, t, name, hooks[i].event_code);
        for (size_t c = 0; rc == 0 && rule != NULL && c < rule->n_codes; c++)
            rc = bind_shop_code(cfg, t, name, rule->codes[c]);
    }
    oq_webhooks_free(hooks, n);
    return rc;
}

/* Each work queue is bound by its event code, its aliases, and the shop's
 * own codes for it (the intake setting's codes). */
static int plan_work_queues(const struct oq_config *cfg, struct oq_topology *t,
                            const struct oq_intake *in)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < oq_event_route_count; i++) {
        const struct oq_event_route *r = &oq_event_routes[i];
        const struct oq_intake_rule *rule = oq_intake_find(in, r->event_code);
        struct oq_topo_queue *q = add_work_queue(cfg, t, r->event_code, r->event_code);
        if (q == NULL || add_binding(t, cfg->shop_exchange, q->name, r->event_code) == NULL) {
            rc = OQ_ENOMEM;
            break;
        }
        const char *name = q->name;
        for (size_t a = 0; rc == 0 && r->aliases[a] != NULL; a++)
            if (add_binding(t, cfg->shop_exchange, name, r->aliases[a]) == NULL)
                rc = OQ_ENOMEM;
        for (size_t c = 0; rc == 0 && rule != NULL && c < rule->n_codes; c++)
            rc = bind_shop_code(cfg, t, name, rule->codes[c]);
    }
    return rc;
}

static int plan_queues(const struct oq_config *cfg, struct oq_topology *t, char *err, size_t errlen)
{
    char why[400];
    int rc = oq_intake_parse(cfg->intake, &t->intake, why, sizeof(why));
    if (rc != 0) {
        if (rc == OQ_EINVAL)
            snprintf(err, errlen, "intake (%s): %s", oq_config_origin(cfg, "intake"), why);
        return rc == OQ_ENOMEM ? rc : OQ_ECONFIG;
    }
    if ((rc = plan_work_queues(cfg, t, t->intake)) == 0)
        rc = plan_webhook_queue(cfg, t, t->intake, err, errlen);
    return rc;
}

static int plan_delay_tiers(const struct oq_config *cfg, struct oq_topology *t)
{
    for (size_t i = 0; i < cfg->n_retry_tiers; i++) {
        char tier[32];
        oq_duration_format(cfg->retry_tiers_ms[i], tier, sizeof(tier));
        char *tier_name = own(t, strdup(tier));
        struct oq_topo_queue *q = add_queue(t, joined(cfg->delay_exchange, ".", tier), NULL);
        if (q == NULL || tier_name == NULL)
            return OQ_ENOMEM;
        queue_type_args(cfg, q);
        arg_num(q, "x-message-ttl", cfg->retry_tiers_ms[i]);
        /* Back to the default exchange: the routing key names the work queue. */
        dead_letter_args(cfg, q, "");
        /* The tier header must not start with "x-": headers exchanges ignore
         * those when matching, and every tier would match. */
        struct oq_topo_binding *b = add_binding(t, cfg->delay_exchange, q->name, "");
        if (b == NULL)
            return OQ_ENOMEM;
        b->args[0] = (struct oq_topo_arg){"x-match", "all", 0};
        b->args[1] = (struct oq_topo_arg){"orderq-delay", tier_name, 0};
        b->nargs = 2;
    }
    return 0;
}

int oq_topology_plan(const struct oq_config *cfg, struct oq_topology **out, char *err,
                     size_t errlen)
{
    int rc = OQ_ENOMEM;
    snprintf(err, errlen, "out of memory planning the topology");
    struct oq_topology *t = calloc(1, sizeof(*t));
    *out = NULL;
    if (t == NULL)
        return OQ_ENOMEM;
    if (add_exchange(t, cfg->shop_exchange, "topic", 1) != 0 ||
        add_exchange(t, cfg->delay_exchange, "headers", 0) != 0 ||
        add_exchange(t, cfg->dead_exchange, "fanout", 0) != 0)
        goto out;
    if ((rc = plan_queues(cfg, t, err, errlen)) != 0 || (rc = plan_delay_tiers(cfg, t)) != 0)
        goto out;
    rc = OQ_ENOMEM;
    struct oq_topo_queue *dead = add_queue(t, strdup(cfg->dead_queue), NULL);
    if (dead == NULL)
        goto out;
    queue_type_args(cfg, dead);
    dead->nargs_legacy = dead->nargs; /* before it dead-lettered into the held queue */
    /* A letter the archiver cannot read (librabbitmq cannot decode its
     * properties) is rejected into the held queue, whole (docs/dlq.md). */
    char *held_name = own(t, oq_dead_letter_held_queue(cfg));
    if (held_name == NULL)
        goto out;
    dead_letter_args(cfg, dead, "");
    arg_str(dead, "x-dead-letter-routing-key", held_name);
    if (add_binding(t, cfg->dead_exchange, dead->name, "") == NULL)
        goto out;
    /* Letters too big for a dead_letter row, published to it by name. */
    struct oq_topo_queue *held = add_queue(t, oq_dead_letter_held_queue(cfg), NULL);
    if (held == NULL)
        goto out;
    queue_type_args(cfg, held);
    rc = 0;
    *out = t;
    t = NULL;
out:
    oq_topology_free(t);
    return rc;
}

void oq_topology_free(struct oq_topology *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_exchanges; i++)
        free(t->exchanges[i].name);
    for (size_t i = 0; i < t->n_queues; i++)
        free(t->queues[i].name);
    for (size_t i = 0; i < t->n_bindings; i++) {
        free(t->bindings[i].exchange);
        free(t->bindings[i].queue);
        free(t->bindings[i].routing_key);
    }
    for (size_t i = 0; i < t->n_strings; i++)
        free(t->strings[i]);
    free(t->exchanges);
    free(t->queues);
    free(t->bindings);
    oq_intake_free(t->intake);
    free(t);
}

/* ---- declare over AMQP ---------------------------------------------------- */

static amqp_table_t to_table(const struct oq_topo_arg *args, size_t n, amqp_table_entry_t *e)
{
    for (size_t i = 0; i < n; i++) {
        e[i].key = amqp_cstring_bytes(args[i].key);
        if (args[i].str != NULL) {
            e[i].value.kind = AMQP_FIELD_KIND_UTF8;
            e[i].value.value.bytes = amqp_cstring_bytes(args[i].str);
        } else {
            e[i].value.kind = AMQP_FIELD_KIND_I64;
            e[i].value.value.i64 = args[i].num;
        }
    }
    return (amqp_table_t){(int)n, e};
}

/* Remember the first failure for the caller; log every one. */
static void note(int *rc, int this_rc, char *err, size_t errlen, const char *msg)
{
    oq_error("%s", msg);
    if (*rc == 0) {
        *rc = this_rc;
        snprintf(err, errlen, "%s", msg);
    }
}

static int declare_exchange(struct oq_broker *b, const struct oq_topo_exchange *e, int create_shops,
                            int *rc, char *err, size_t errlen)
{
    char what[300], msg[OQ_ERRLEN + 400];
    int passive = e->shops && !create_shops;
    amqp_connection_state_t c = oq_broker_conn(b);
    amqp_exchange_declare(c, 1, amqp_cstring_bytes(e->name), amqp_cstring_bytes(e->type), passive,
                          1, 0, 0, amqp_empty_table);
    snprintf(what, sizeof(what), "exchange.declare %s", e->name);
    int r = oq_broker_check(b, 1, what);
    if (r == OQ_ENOTFOUND && passive) {
        snprintf(msg, sizeof(msg),
                 "the shop exchange \"%s\" does not exist on vhost %s: the shop declares it "
                 "(set shop_exchange to its name), or pass --create-shop-exchange for local use",
                 e->name, oq_broker_vhost(b));
        note(rc, r, err, errlen, msg);
    } else if (r == OQ_EMISMATCH) {
        snprintf(msg, sizeof(msg), "exchange \"%s\" exists with another type or flags (%s)",
                 e->name, oq_broker_error(b));
        note(rc, r, err, errlen, msg);
    } else if (r != 0) {
        note(rc, r, err, errlen, oq_broker_error(b));
    }
    return r == OQ_EBROKER ? r : 0; /* only a dead connection stops the run */
}

/* queue.declare of name on ch, checked: the one place orderq declares a
 * queue (durable; passive only asks whether it exists). */
static int queue_declare(struct oq_broker *b, amqp_channel_t ch, const char *name, int passive,
                         amqp_table_t args)
{
    char what[300];
    amqp_queue_declare(oq_broker_conn(b), ch, amqp_cstring_bytes(name), passive, 1, 0, 0, args);
    snprintf(what, sizeof(what), "queue.declare %s%s", name, passive ? " (passive)" : "");
    return oq_broker_check(b, ch, what);
}

/* declare_queue's flags: only the plan's arguments (never the legacy
 * ones), quietly; the caller reads *rc and says what it means. */
#define DECLARE_AS_PLANNED 1

static int declare_queue(struct oq_broker *b, amqp_channel_t ch, const struct oq_topo_queue *q,
                         int flags, int *rc, char *err, size_t errlen)
{
    char msg[OQ_ERRLEN + 400];
    amqp_table_entry_t e[OQ_TOPO_MAX_ARGS];
    int r = queue_declare(b, ch, q->name, 0, to_table(q->args, q->nargs, e));
    if (flags & DECLARE_AS_PLANNED) {
        if (*rc == 0)
            *rc = r;
        return r == OQ_EBROKER ? r : 0;
    }
    if (r == OQ_EMISMATCH && q->nargs_legacy > 0) {
        r = queue_declare(b, ch, q->name, 0, to_table(q->args, q->nargs_legacy, e));
        if (r == 0)
            oq_warn("queue \"%s\" has the arguments an older orderq gave it, without those "
                    "added since (`orderq topology verify` shows both); it works as before, "
                    "see docs/dlq.md (\"Letters orderq cannot read\") to upgrade it",
                    q->name);
    }
    if (r == OQ_EMISMATCH) {
        snprintf(msg, sizeof(msg),
                 "queue \"%s\" exists with other arguments (%s); `orderq topology verify` "
                 "shows both sets; a queue's arguments cannot change: move its messages and "
                 "delete it, or change the configuration to match",
                 q->name, oq_broker_error(b));
        note(rc, r, err, errlen, msg);
    } else if (r != 0) {
        note(rc, r, err, errlen, oq_broker_error(b));
    }
    return r == OQ_EBROKER ? r : 0;
}

/* Bind queue (every queue when NULL) as the plan says, on channel ch. */
static int declare_bindings(struct oq_broker *b, amqp_channel_t ch, const struct oq_topology *t,
                            const char *queue, int *rc, char *err, size_t errlen)
{
    char what[600];
    amqp_table_entry_t e[2];
    for (size_t i = 0; i < t->n_bindings; i++) {
        const struct oq_topo_binding *bd = &t->bindings[i];
        if (queue != NULL && strcmp(bd->queue, queue) != 0)
            continue;
        amqp_queue_bind(oq_broker_conn(b), ch, amqp_cstring_bytes(bd->queue),
                        amqp_cstring_bytes(bd->exchange), amqp_cstring_bytes(bd->routing_key),
                        to_table(bd->args, bd->nargs, e));
        snprintf(what, sizeof(what), "queue.bind %s -> %s (%s)", bd->exchange, bd->queue,
                 bd->routing_key);
        int r = oq_broker_check(b, ch, what);
        if (r != 0) {
            note(rc, r, err, errlen, oq_broker_error(b));
            if (r == OQ_EBROKER)
                return r;
        }
    }
    return 0;
}

int oq_topology_declare(struct oq_broker *b, const struct oq_topology *t, int create_shop_exchange,
                        char *err, size_t errlen)
{
    int rc = 0;

    for (size_t i = 0; i < t->n_exchanges; i++)
        if (declare_exchange(b, &t->exchanges[i], create_shop_exchange, &rc, err, errlen) != 0)
            return rc;
    for (size_t i = 0; i < t->n_queues; i++)
        if (declare_queue(b, 1, &t->queues[i], 0, &rc, err, errlen) != 0)
            return rc;
    if (rc != 0)
        return rc; /* a binding to a missing exchange or queue would only fail again */
    (void)declare_bindings(b, 1, t, NULL, &rc, err, errlen);
    return rc;
}

int oq_topology_declare_queue(struct oq_broker *b, amqp_channel_t channel,
                              const struct oq_topology *t, const char *queue, char *err,
                              size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; i < t->n_queues; i++) {
        if (strcmp(t->queues[i].name, queue) != 0)
            continue;
        if (declare_queue(b, channel, &t->queues[i], 0, &rc, err, errlen) != 0 || rc != 0)
            return rc;
        (void)declare_bindings(b, channel, t, queue, &rc, err, errlen);
        return rc;
    }
    snprintf(err, errlen, "queue %s is not in orderq's topology", queue);
    return OQ_ENOTFOUND;
}

static const struct oq_topo_queue *planned_queue(const struct oq_topology *t, const char *queue)
{
    for (size_t i = 0; t != NULL && i < t->n_queues; i++)
        if (strcmp(t->queues[i].name, queue) == 0)
            return &t->queues[i];
    return NULL;
}

static const char *planned_arg(const struct oq_topo_queue *q, const char *key)
{
    for (size_t a = 0; q != NULL && a < q->nargs; a++)
        if (strcmp(q->args[a].key, key) == 0)
            return q->args[a].str != NULL ? q->args[a].str : "";
    return NULL;
}

/* Declare q with exactly the plan's arguments, and its bindings, quietly:
 * 0 means the queue on the broker has them. Returns 0, OQ_EMISMATCH (it
 * has others), OQ_EREFUSED (e.g. no configure permission) or OQ_EBROKER. */
static int queue_as_planned(struct oq_broker *b, amqp_channel_t channel,
                            const struct oq_topology *t, const struct oq_topo_queue *q)
{
    int rc = 0;
    char err[OQ_ERRLEN];
    if (declare_queue(b, channel, q, DECLARE_AS_PLANNED, &rc, err, sizeof(err)) != 0 || rc != 0)
        return rc;
    /* Deleted under a running orderq, this declare made it again: bound
     * too, or what is routed to it would be returned. A refused binding
     * does not change what the queue's arguments are. */
    int refused = 0;
    return declare_bindings(b, channel, t, q->name, &refused, err, sizeof(err));
}

int oq_topology_dead_letters_on_broker(struct oq_broker *b, amqp_channel_t channel,
                                       const struct oq_topology *t, const char *queue)
{
    const struct oq_topo_queue *q = planned_queue(t, queue);
    const char *dlx = planned_arg(q, "x-dead-letter-exchange");
    if (dlx == NULL)
        return 0;
    int rc = queue_as_planned(b, channel, t, q);
    if (rc != 0)
        return rc == OQ_EBROKER ? rc : 0;
    /* Through the default exchange a letter goes to the queue its routing
     * key names, and is dropped when that queue is missing. */
    const char *target = planned_arg(q, "x-dead-letter-routing-key");
    if (dlx[0] != '\0' || target == NULL)
        return 1;
    rc = queue_declare(b, channel, target, 1, amqp_empty_table);
    return rc == OQ_EBROKER ? rc : rc == 0;
}

int oq_topology_dead_letters(const struct oq_topology *t, const char *queue)
{
    return planned_arg(planned_queue(t, queue), "x-dead-letter-exchange") != NULL;
}

/* ---- export as definitions ------------------------------------------------- */

static void gen_args(yajl_gen g, const struct oq_topo_arg *args, size_t n)
{
    yajl_gen_map_open(g);
    for (size_t i = 0; i < n; i++) {
        oq_json_gen_str(g, args[i].key);
        if (args[i].str != NULL)
            oq_json_gen_str(g, args[i].str);
        else
            yajl_gen_integer(g, args[i].num);
    }
    yajl_gen_map_close(g);
}

int oq_topology_write_definitions(const struct oq_topology *t, const char *vhost, FILE *out)
{
    const unsigned char *buf = NULL;
    size_t len = 0;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return OQ_ENOMEM;
    yajl_gen_config(g, yajl_gen_beautify, 1);
    yajl_gen_config(g, yajl_gen_indent_string, "  ");
    yajl_gen_map_open(g);
    oq_json_gen_str(g, "exchanges");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < t->n_exchanges; i++) {
        yajl_gen_map_open(g);
        oq_json_gen_str(g, "name");
        oq_json_gen_str(g, t->exchanges[i].name);
        oq_json_gen_str(g, "vhost");
        oq_json_gen_str(g, vhost);
        oq_json_gen_str(g, "type");
        oq_json_gen_str(g, t->exchanges[i].type);
        oq_json_gen_str(g, "durable");
        yajl_gen_bool(g, 1);
        oq_json_gen_str(g, "auto_delete");
        yajl_gen_bool(g, 0);
        oq_json_gen_str(g, "internal");
        yajl_gen_bool(g, 0);
        oq_json_gen_str(g, "arguments");
        gen_args(g, NULL, 0);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    oq_json_gen_str(g, "queues");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < t->n_queues; i++) {
        yajl_gen_map_open(g);
        oq_json_gen_str(g, "name");
        oq_json_gen_str(g, t->queues[i].name);
        oq_json_gen_str(g, "vhost");
        oq_json_gen_str(g, vhost);
        oq_json_gen_str(g, "durable");
        yajl_gen_bool(g, 1);
        oq_json_gen_str(g, "auto_delete");
        yajl_gen_bool(g, 0);
        oq_json_gen_str(g, "arguments");
        gen_args(g, t->queues[i].args, t->queues[i].nargs);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    oq_json_gen_str(g, "bindings");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < t->n_bindings; i++) {
        const struct oq_topo_binding *b = &t->bindings[i];
        yajl_gen_map_open(g);
        oq_json_gen_str(g, "source");
        oq_json_gen_str(g, b->exchange);
        oq_json_gen_str(g, "vhost");
        oq_json_gen_str(g, vhost);
        oq_json_gen_str(g, "destination");
        oq_json_gen_str(g, b->queue);
        oq_json_gen_str(g, "destination_type");
        oq_json_gen_str(g, "queue");
        oq_json_gen_str(g, "routing_key");
        oq_json_gen_str(g, b->routing_key);
        oq_json_gen_str(g, "arguments");
        gen_args(g, b->args, b->nargs);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    int rc = fwrite(buf, 1, len, out) == len ? 0 : OQ_EIO;
    yajl_gen_free(g);
    return rc;
}

/* ---- verify against the management API ------------------------------------ */

struct mgmt {
    CURL *curl;
    char *base; /* ends without '/' */
    char *vhost_escaped;
    char *user, *password;
};

/* GET base + path; *tree is NULL with status 404. Returns 0 or OQ_EHTTP. */
static int mgmt_get(struct mgmt *m, const char *path, long *status, yajl_val *tree, char *err,
                    size_t errlen)
{
    struct oq_http_body body = {.max = 16u << 20}; /* no sane answer is this big */
    char *url = joined(m->base, "", path);
    int rc = OQ_EHTTP;
    *tree = NULL;
    if (url == NULL)
        return OQ_ENOMEM;
    curl_easy_setopt(m->curl, CURLOPT_URL, url);
    curl_easy_setopt(m->curl, CURLOPT_WRITEFUNCTION, oq_http_collect);
    curl_easy_setopt(m->curl, CURLOPT_WRITEDATA, &body);
    CURLcode cc = curl_easy_perform(m->curl);
    if (cc != CURLE_OK) {
        char *shown = oq_url_redact(m->base);
        snprintf(err, errlen,
                 "RabbitMQ management API at %s: %s (is the rabbitmq_management "
                 "plugin enabled? set amqp_mgmt_url)",
                 shown ? shown : "***", curl_easy_strerror(cc));
        free(shown);
        goto out;
    }
    curl_easy_getinfo(m->curl, CURLINFO_RESPONSE_CODE, status);
    if (*status == 404) {
        rc = 0;
        goto out;
    }
    if (*status != 200) {
        char *shown = oq_url_redact(m->base);
        snprintf(err, errlen, "RabbitMQ management API at %s: GET %s: HTTP %ld%s",
                 shown ? shown : "***", path, *status,
                 *status == 401 ? " (user or password wrong for the management API: those of "
                                  "amqp_mgmt_url, else of amqp_url)"
                                : " (amqp_mgmt_url)");
        free(shown);
        goto out;
    }
    char perr[256];
    *tree = oq_json_parse(body.data ? body.data : "", perr, sizeof(perr));
    if (*tree == NULL) {
        snprintf(err, errlen, "RabbitMQ management API GET %s: not JSON: %s", path, perr);
        goto out;
    }
    rc = 0;
out:
    free(body.data);
    free(url);
    return rc;
}

static int mgmt_open(struct mgmt *m, const struct oq_config *cfg, const char *vhost, char *err,
                     size_t errlen)
{
    struct oq_amqp_url au;
    CURLU *h = NULL;
    char *user = NULL, *pass = NULL, *url = NULL;
    int rc = OQ_ENOMEM;

    memset(m, 0, sizeof(*m));
    if (oq_amqp_url_parse(cfg->amqp_url, &au, err, errlen) != 0)
        return OQ_ECONFIG;
    if ((h = curl_url()) == NULL ||
        curl_url_set(h, CURLUPART_URL, cfg->amqp_mgmt_url, 0) != CURLUE_OK)
        goto out;
    /* Credentials: the management URL's own, else the AMQP URL's. */
    if (curl_url_get(h, CURLUPART_USER, &user, CURLU_URLDECODE) != CURLUE_OK)
        user = NULL;
    if (curl_url_get(h, CURLUPART_PASSWORD, &pass, CURLU_URLDECODE) != CURLUE_OK)
        pass = NULL;
    curl_url_set(h, CURLUPART_USER, NULL, 0);
    curl_url_set(h, CURLUPART_PASSWORD, NULL, 0);
    if (curl_url_get(h, CURLUPART_URL, &url, 0) != CURLUE_OK)
        goto out;
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
    m->base = strdup(url);
    m->user = strdup(user ? user : au.user);
    m->password = strdup(pass ? pass : au.password);
    m->curl = curl_easy_init();
    if (!m->base || !m->user || !m->password || !m->curl)
        goto out;
    m->vhost_escaped = curl_easy_escape(m->curl, vhost, 0);
    if (m->vhost_escaped == NULL)
        goto out;
    curl_easy_setopt(m->curl, CURLOPT_USERNAME, m->user);
    curl_easy_setopt(m->curl, CURLOPT_PASSWORD, m->password);
    curl_easy_setopt(m->curl, CURLOPT_TIMEOUT_MS, (long)cfg->connect_timeout_ms);
    curl_easy_setopt(m->curl, CURLOPT_NOSIGNAL, 1L);
    rc = 0;
out:
    if (rc != 0)
        snprintf(err, errlen, "out of memory");
    curl_free(user);
    curl_free(pass);
    curl_free(url);
    curl_url_cleanup(h);
    oq_amqp_url_clear(&au);
    return rc;
}

static void mgmt_close(struct mgmt *m)
{
    curl_free(m->vhost_escaped);
    if (m->curl)
        curl_easy_cleanup(m->curl);
    free(m->base);
    free(m->user);
    free(m->password);
}

/* "/api/<kind>/<vhost>/<name>" with the name escaped. */
static char *mgmt_path(struct mgmt *m, const char *kind, const char *name)
{
    char *esc = curl_easy_escape(m->curl, name, 0);
    if (esc == NULL)
        return NULL;
    size_t n = strlen(kind) + strlen(m->vhost_escaped) + strlen(esc) + 16;
    char *path = malloc(n);
    if (path != NULL)
        snprintf(path, n, "/api/%s/%s/%s", kind, m->vhost_escaped, esc);
    curl_free(esc);
    return path;
}

/* The text of a JSON string, "" for anything else. */
static const char *text_of(yajl_val v)
{
    return YAJL_IS_STRING(v) ? v->u.string : "";
}

/* Arguments as compact JSON text, for people: {"x-queue-type":"quorum"}. */
static void args_text_plan(const struct oq_topo_arg *a, size_t n, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "{");
    for (size_t i = 0; i < n && used < len; i++) {
        if (a[i].str)
            used += (size_t)snprintf(buf + used, len - used, "%s\"%s\":\"%s\"", i ? "," : "",
                                     a[i].key, a[i].str);
        else
            used += (size_t)snprintf(buf + used, len - used, "%s\"%s\":%lld", i ? "," : "",
                                     a[i].key, (long long)a[i].num);
    }
    if (used < len)
        snprintf(buf + used, len - used, "}");
}

static void args_text_actual(yajl_val obj, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "{");
    size_t n = YAJL_IS_OBJECT(obj) ? obj->u.object.len : 0;
    for (size_t i = 0; i < n && used < len; i++) {
        yajl_val v = obj->u.object.values[i];
        const char *k = obj->u.object.keys[i];
        if (YAJL_IS_STRING(v))
            used += (size_t)snprintf(buf + used, len - used, "%s\"%s\":\"%s\"", i ? "," : "", k,
                                     text_of(v));
        else if (YAJL_IS_NUMBER(v))
            used += (size_t)snprintf(buf + used, len - used, "%s\"%s\":%s", i ? "," : "", k,
                                     YAJL_GET_NUMBER(v));
        else
            used += (size_t)snprintf(buf + used, len - used, "%s\"%s\":%s", i ? "," : "", k,
                                     YAJL_IS_TRUE(v)    ? "true"
                                     : YAJL_IS_FALSE(v) ? "false"
                                                        : "?");
    }
    if (used < len)
        snprintf(buf + used, len - used, "}");
}

/* Same keys, same values (numbers compared as integers). */
static int args_equal(const struct oq_topo_arg *a, size_t n, yajl_val obj)
{
    size_t actual_n = YAJL_IS_OBJECT(obj) ? obj->u.object.len : 0;
    if (actual_n != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        yajl_val v = oq_json_member(obj, a[i].key);
        if (a[i].str != NULL) {
            if (!YAJL_IS_STRING(v) || strcmp(text_of(v), a[i].str) != 0)
                return 0;
        } else if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) != a[i].num) {
            return 0;
        }
    }
    return 1;
}

struct report {
    FILE *out;
    int json;
    int count;
};

static void differ(struct report *r, const char *kind, const char *name, const char *problem,
                   const char *expected, const char *actual)
{
    r->count++;
    if (!r->json) {
        fprintf(r->out, "%s %s: %s\n", kind, name, problem);
        if (expected != NULL)
            fprintf(r->out, "    expected: %s\n    actual:   %s\n", expected, actual);
        return;
    }
    yajl_gen g = yajl_gen_alloc(NULL);
    const unsigned char *buf = NULL;
    size_t len = 0;
    if (g == NULL)
        return;
    yajl_gen_map_open(g);
    oq_json_gen_str(g, "kind");
    oq_json_gen_str(g, kind);
    oq_json_gen_str(g, "name");
    oq_json_gen_str(g, name);
    oq_json_gen_str(g, "problem");
    oq_json_gen_str(g, problem);
    if (expected != NULL) {
        oq_json_gen_str(g, "expected");
        oq_json_gen_str(g, expected);
        oq_json_gen_str(g, "actual");
        oq_json_gen_str(g, actual);
    }
    yajl_gen_map_close(g);
    yajl_gen_get_buf(g, &buf, &len);
    fprintf(r->out, "%.*s\n", (int)len, (const char *)buf);
    yajl_gen_free(g);
}

static int verify_exchange(struct mgmt *m, const struct oq_topo_exchange *e, struct report *r,
                           char *err, size_t errlen)
{
    long status = 0;
    yajl_val tree = NULL;
    char *path = mgmt_path(m, "exchanges", e->name);
    if (path == NULL)
        return OQ_ENOMEM;
    int rc = mgmt_get(m, path, &status, &tree, err, errlen);
    free(path);
    if (rc != 0)
        return rc;
    if (tree == NULL) {
        differ(r, "exchange", e->name, "missing", NULL, NULL);
        return 0;
    }
    yajl_val type = oq_json_member(tree, "type"), durable = oq_json_member(tree, "durable");
    const char *actual = YAJL_IS_STRING(type) ? text_of(type) : "?";
    if (strcmp(actual, e->type) != 0) {
        char want[64], got[64];
        snprintf(want, sizeof(want), "type %s", e->type);
        snprintf(got, sizeof(got), "type %s", actual);
        differ(r, "exchange", e->name, "other type", want, got);
    }
    if (!YAJL_IS_TRUE(durable))
        differ(r, "exchange", e->name, "not durable", "durable", "transient");
    yajl_tree_free(tree);
    return 0;
}

/* The safety net for a message that crashes the consumer before it can be
 * routed: a quorum work queue needs a delivery limit, from its arguments
 * or from a policy. Queues planned without one pass. */
static int has_delivery_limit(const struct oq_topo_queue *q, yajl_val actual)
{
    int planned = 0;
    for (size_t i = 0; i < q->nargs; i++)
        planned |= strcmp(q->args[i].key, "x-delivery-limit") == 0;
    yajl_val policy = oq_json_member(actual, "effective_policy_definition");
    return !planned || oq_json_member(oq_json_member(actual, "arguments"), "x-delivery-limit") ||
           oq_json_member(policy, "delivery-limit");
}

static int verify_queue(struct mgmt *m, const struct oq_topo_queue *q, struct report *r, char *err,
                        size_t errlen)
{
    long status = 0;
    yajl_val tree = NULL;
    char *path = mgmt_path(m, "queues", q->name);
    if (path == NULL)
        return OQ_ENOMEM;
    int rc = mgmt_get(m, path, &status, &tree, err, errlen);
    free(path);
    if (rc != 0)
        return rc;
    if (tree == NULL) {
        differ(r, "queue", q->name, "missing", NULL, NULL);
        return 0;
    }
    yajl_val args = oq_json_member(tree, "arguments");
    if (!args_equal(q->args, q->nargs, args)) {
        char want[1024], got[1024];
        args_text_plan(q->args, q->nargs, want, sizeof(want));
        args_text_actual(args, got, sizeof(got));
        differ(r, "queue", q->name, "other arguments", want, got);
    }
    if (!has_delivery_limit(q, tree))
        differ(r, "queue", q->name, "no delivery limit",
               "x-delivery-limit (a message that crashes every consumer is dead-lettered)",
               "none, in arguments or policy: such a message is redelivered forever");
    if (!YAJL_IS_TRUE(oq_json_member(tree, "durable")))
        differ(r, "queue", q->name, "not durable", "durable", "transient");
    yajl_tree_free(tree);
    return 0;
}

static int verify_binding(struct mgmt *m, const struct oq_topo_binding *b, struct report *r,
                          char *err, size_t errlen)
{
    long status = 0;
    yajl_val tree = NULL;
    char *e_esc = curl_easy_escape(m->curl, b->exchange, 0);
    char *q_esc = curl_easy_escape(m->curl, b->queue, 0);
    char path[4096], name[700]; /* names are <= 200 bytes, so <= 600 escaped */
    int rc = OQ_ENOMEM, found = 0;

    if (e_esc == NULL || q_esc == NULL)
        goto out;
    snprintf(path, sizeof(path), "/api/bindings/%s/e/%s/q/%s", m->vhost_escaped, e_esc, q_esc);
    rc = mgmt_get(m, path, &status, &tree, err, errlen);
    if (rc != 0)
        goto out;
    for (size_t i = 0; YAJL_IS_ARRAY(tree) && i < tree->u.array.len; i++) {
        yajl_val one = tree->u.array.values[i];
        yajl_val key = oq_json_member(one, "routing_key");
        if (YAJL_IS_STRING(key) && strcmp(text_of(key), b->routing_key) == 0 &&
            args_equal(b->args, b->nargs, oq_json_member(one, "arguments")))
            found = 1;
    }
    snprintf(name, sizeof(name), "%s -> %s (routing key \"%s\")", b->exchange, b->queue,
             b->routing_key);
    if (!found)
        differ(r, "binding", name, "missing", NULL, NULL);
out:
    yajl_tree_free(tree);
    curl_free(e_esc);
    curl_free(q_esc);
    return rc;
}

/* A count from the API's queue object, -1 when it has none yet. */
static int64_t count_of(yajl_val queue, const char *key)
{
    yajl_val v = oq_json_member(queue, key);
    return YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : -1;
}

static void fill_counts(const struct oq_topology *t, yajl_val list, struct oq_queue_counts *out)
{
    for (size_t i = 0; i < t->n_queues; i++)
        out[i] = (struct oq_queue_counts){t->queues[i].name, 0, -1, -1, -1};
    for (size_t j = 0; YAJL_IS_ARRAY(list) && j < list->u.array.len; j++) {
        yajl_val q = list->u.array.values[j];
        const char *name = text_of(oq_json_member(q, "name"));
        for (size_t i = 0; i < t->n_queues; i++) {
            if (strcmp(name, out[i].name) != 0)
                continue;
            out[i].exists = 1;
            out[i].ready = count_of(q, "messages_ready");
            out[i].unacked = count_of(q, "messages_unacknowledged");
            out[i].consumers = count_of(q, "consumers");
        }
    }
}

int oq_topology_queue_counts(const struct oq_config *cfg, const struct oq_topology *t,
                             const char *vhost, struct oq_queue_counts *out, char *err,
                             size_t errlen)
{
    struct mgmt m;
    long status = 0;
    yajl_val tree = NULL;
    char *path = NULL;
    int rc = mgmt_open(&m, cfg, vhost, err, errlen);
    if (rc != 0)
        goto out;
    /* One listing of the vhost, not a request per queue; only the columns
     * shown, so a vhost with many queues stays a small answer. A vhost
     * that does not exist (404) leaves every queue missing. */
    path = joined("/api/queues/", m.vhost_escaped,
                  "?columns=name,messages_ready,messages_unacknowledged,consumers");
    rc = path == NULL ? OQ_ENOMEM : mgmt_get(&m, path, &status, &tree, err, errlen);
    if (rc == 0)
        fill_counts(t, tree, out);
out:
    yajl_tree_free(tree);
    free(path);
    mgmt_close(&m);
    return rc;
}

int oq_topology_verify(const struct oq_config *cfg, const struct oq_topology *t, const char *vhost,
                       FILE *out, int json, int *differences, char *err, size_t errlen)
{
    struct mgmt m;
    struct report r = {out, json, 0};
    int rc = mgmt_open(&m, cfg, vhost, err, errlen);
    long status = 0;
    yajl_val tree = NULL;

    *differences = 0;
    if (rc != 0)
        goto out;
    /* One cheap call first, so an unreachable API is one clear error. */
    rc = mgmt_get(&m, "/api/overview", &status, &tree, err, errlen);
    yajl_tree_free(tree);
    if (rc != 0)
        goto out;
    for (size_t i = 0; rc == 0 && i < t->n_exchanges; i++)
        rc = verify_exchange(&m, &t->exchanges[i], &r, err, errlen);
    for (size_t i = 0; rc == 0 && i < t->n_queues; i++)
        rc = verify_queue(&m, &t->queues[i], &r, err, errlen);
    for (size_t i = 0; rc == 0 && i < t->n_bindings; i++)
        rc = verify_binding(&m, &t->bindings[i], &r, err, errlen);
    *differences = r.count;
out:
    mgmt_close(&m);
    return rc;
}
