/* handler_coupon.c - order.processing: coupon rules; a coupon and a coupon.email event per rule
 * earned */
#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_gen.h>

#include "orderq/json.h"
#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/event.h"
#include "orderq/handler.h"
#include "orderq/log.h"
#include "orderq/money.h"
#include "orderq/rules.h"
#include "orderq/shopapi.h"

#define RULES_REFRESH_S 5 /* rule changes reach a running consumer this fast */

struct coupon_state {
    struct oq_rule *rules;
    size_t n_rules;
    time_t loaded_at;
    int64_t code_length;
    char *alphabet;
    struct oq_shopapi *shop; /* NULL without shop_api_url; used on effect workers */
};

/* One coupon to issue: everything its rows need, copied out of the event. */
struct coupon {
    int64_t rule_id, promo_id, discount;
    enum oq_discount_type discount_type;
    char currency[4];
    char code[OQ_CODE_PREFIX_MAX + 40];
    char prefix[OQ_CODE_PREFIX_MAX + 1];
    char email_event_id[300]; /* <order_id>_<order_status>_<promo_id>_<rule_id> */
    char expires_at[32];      /* UTC, "YYYY-MM-DD HH:MM:SS" */
    int skipped;              /* this try: the order had the coupon already */
    char *email_body;         /* the coupon.email envelope */
};

struct coupon_plan {
    char order_id[65];
    char event_identifier[OQ_EVENT_ID_MAX + 1];
    char customer_email[255];
    size_t n;
    struct coupon coupons[];
};

static void free_plan(void *p)
{
    struct coupon_plan *plan = p;
    if (plan == NULL)
        return;
    for (size_t i = 0; i < plan->n; i++)
        free(plan->coupons[i].email_body);
    free(plan);
}

/* The coupon.email envelope for one coupon (the seed's second event). */
static char *email_envelope(const struct oq_order *o, const struct coupon *c,
                            const char *expires_iso, const char *created_iso, int64_t days)
{
    char amount[48], rule[24], promo[24];
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    oq_money_format(c->discount,
                    c->discount_type == OQ_DISCOUNT_PERCENT ? 2 : oq_currency_exponent(c->currency),
                    amount, sizeof(amount));
    snprintf(rule, sizeof(rule), "%lld", (long long)c->rule_id);
    snprintf(promo, sizeof(promo), "%lld", (long long)c->promo_id);
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "event_code", "coupon.email");
    oq_json_gen_kv(g, "event_identifier", c->email_event_id);
    oq_json_gen_kv(g, "created_at", created_iso);
    oq_json_gen_str(g, "event_data");
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "order_id", o->order_id);
    oq_json_gen_kv(g, "order_status", o->order_status);
    oq_json_gen_kv(g, "promo_id", promo);
    oq_json_gen_kv(g, "promo_rule_id", rule);
    oq_json_gen_kv(g, "coupon_code", c->code);
    oq_json_gen_kv(g, "discount_type", c->discount_type == OQ_DISCOUNT_FIXED ? "fixed" : "percent");
    oq_json_gen_kv(g, "discount", amount);
    oq_json_gen_kv(g, "currency", c->currency);
    oq_json_gen_kv(g, "expires_at", expires_iso);
    oq_json_gen_str(g, "valid_days");
    yajl_gen_integer(g, days);
    oq_json_gen_str(g, "customer");
    yajl_gen_map_open(g);
    if (o->customer_email)
        oq_json_gen_kv(g, "email", o->customer_email);
    if (o->customer_name)
        oq_json_gen_kv(g, "name", o->customer_name);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    return oq_json_gen_finish(g);
}

/* The event lacks its items or the customer's e-mail: take them from the
 * shop's API. *tree holds the answer the borrowed strings point into.
 * Returns 0, OQ_EINVAL (permanent) or OQ_EHTTP (transient), err says. */
static int fill_from_shop(struct coupon_state *st, struct oq_order *order, yajl_val *tree,
                          char *err, size_t errlen)
{
    char why[OQ_ERRLEN], *json = NULL;
    struct oq_order api;
    if (st->shop == NULL) {
        if (order->has_items)
            return 0; /* no e-mail and nowhere to ask: the coupon is kept without one */
        snprintf(err, errlen,
                 "event_data.items is missing and shop_api_url is not set to look order %s up",
                 order->order_id);
        return OQ_EINVAL;
    }
    enum oq_http_outcome outcome =
        oq_shopapi_order(st->shop, order->order_id, &json, why, sizeof(why));
    if (outcome != OQ_HTTP_DONE) {
        snprintf(err, errlen, "%s", why);
        return outcome == OQ_HTTP_TRANSIENT ? OQ_EHTTP : OQ_EINVAL;
    }
    *tree = yajl_tree_parse(json, NULL, 0);
    free(json);
    if (*tree == NULL)
        return OQ_ENOMEM;
    if (oq_order_parse(*tree, &api, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "shop API: order %s: %s", order->order_id, why);
        return OQ_EINVAL;
    }
    if (strcmp(api.currency, order->currency) != 0) {
        snprintf(err, errlen, "shop API: order %s is in %s, the event says %s", order->order_id,
                 api.currency, order->currency);
        oq_order_clear(&api);
        return OQ_EINVAL;
    }
    if (!order->has_items) {
        order->items = api.items; /* moved: freed with order */
        order->n_items = api.n_items;
        order->has_items = 1;
        api.items = NULL;
    }
    if (order->customer_email == NULL) {
        order->customer_email = api.customer_email;
        if (order->customer_name == NULL)
            order->customer_name = api.customer_name;
    }
    oq_order_clear(&api);
    return 0;
}

/* What prepare calls fill_from_shop for: no items or no e-mail. */
static int prepare_calls_out(void *state, const struct oq_event *ev)
{
    const struct coupon_state *st = state;
    yajl_val items = oq_json_member(ev->data, "items");
    const char *email = oq_json_text(oq_json_member(ev->data, "customer"), "email");
    return st->shop != NULL && (items == NULL || YAJL_IS_NULL(items) || email == NULL);
}

static int prepare(void *state, const struct oq_event *ev, int64_t attempt, void **out,
                   char *effect_key, size_t keylen, char *result, size_t resultlen, char *err,
                   size_t errlen)
{
    struct coupon_state *st = state;
    struct oq_order order;
    struct coupon_plan *plan = NULL;
    int rc = oq_order_parse(ev->data, &order, err, errlen);
    (void)effect_key; /* the event_identifier ("<order_id>_<status>") is the key */
    (void)keylen;
    (void)attempt;
    *out = NULL;
    yajl_val shop_answer = NULL;
    if (rc != 0)
        return rc;
    if ((!order.has_items || order.customer_email == NULL) &&
        (rc = fill_from_shop(st, &order, &shop_answer, err, errlen)) != 0)
        goto out;
    plan = calloc(1, sizeof(*plan) + st->n_rules * sizeof(struct coupon));
    if (plan == NULL) {
        rc = OQ_ENOMEM;
        goto out;
    }
    time_t now = time(NULL);
    for (size_t i = 0; i < st->n_rules; i++) {
        const struct oq_rule *r = &st->rules[i];
        int64_t total = 0;
        int earned = 0;
        if (oq_rule_evaluate(r, &order, &total, &earned) != 0) {
            snprintf(err, errlen, "the qualifying total of rule %lld overflows",
                     (long long)r->rule_id);
            rc = OQ_EINVAL;
            goto out;
        }
        if (!earned)
            continue;
        struct coupon *c = &plan->coupons[plan->n];
        c->rule_id = r->rule_id;
        c->promo_id = r->promo_id;
        c->discount = r->discount;
        c->discount_type = r->discount_type;
        memcpy(c->currency, r->currency, sizeof(c->currency));
        snprintf(c->prefix, sizeof(c->prefix), "%s", r->code_prefix);
        snprintf(c->email_event_id, sizeof(c->email_event_id), "%s_%s_%lld_%lld", order.order_id,
                 order.order_status, (long long)r->promo_id, (long long)r->rule_id);
        if (oq_coupon_code(c->prefix, st->alphabet, (size_t)st->code_length, c->code,
                           sizeof(c->code)) != 0) {
            snprintf(err, errlen, "no randomness for a coupon code");
            rc = OQ_EIO;
            goto out;
        }
        time_t expires = now + (time_t)r->valid_days * 86400;
        struct tm tm;
        char expires_iso[32], created_iso[32];
        gmtime_r(&expires, &tm);
        strftime(c->expires_at, sizeof(c->expires_at), "%Y-%m-%d %H:%M:%S", &tm);
        strftime(expires_iso, sizeof(expires_iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
        gmtime_r(&now, &tm);
        strftime(created_iso, sizeof(created_iso), "%Y-%m-%dT%H:%M:%SZ", &tm);
        c->email_body = email_envelope(&order, c, expires_iso, created_iso, r->valid_days);
        if (c->email_body == NULL) {
            rc = OQ_ENOMEM;
            goto out;
        }
        plan->n++;
    }
    /* For the ledger's result column, like the seed's execute_result. */
    size_t used =
        (size_t)snprintf(result, resultlen, plan->n ? "coupons for rules" : "no rule earned");
    for (size_t k = 0; k < plan->n && used < resultlen; k++)
        used += (size_t)snprintf(result + used, resultlen - used, "%s%lld", k ? "," : " ",
                                 (long long)plan->coupons[k].rule_id);
    snprintf(plan->order_id, sizeof(plan->order_id), "%s", order.order_id);
    snprintf(plan->event_identifier, sizeof(plan->event_identifier), "%s", ev->identifier);
    snprintf(plan->customer_email, sizeof(plan->customer_email), "%s",
             order.customer_email ? order.customer_email : "");
    if (plan->n > 0) {
        *out = plan;
        plan = NULL;
    }
out:
    free_plan(plan);
    oq_order_clear(&order);
    yajl_tree_free(shop_answer);
    return rc;
}

#define COUPON_COLS 9

static void coupon_params(const struct coupon_plan *p, const struct coupon *c,
                          struct oq_db_param *out)
{
    out[0] = OQ_STR(c->code);
    out[1] = OQ_INT(c->rule_id);
    out[2] = OQ_INT(c->promo_id);
    out[3] = OQ_STR(p->order_id);
    out[4] = OQ_STR(p->event_identifier);
    out[5] = OQ_STR(p->customer_email);
    out[6] = OQ_STR(c->currency);
    out[7] = OQ_STR(c->discount_type == OQ_DISCOUNT_FIXED ? "fixed" : "percent");
    out[8] = OQ_INT(c->discount);
}

#define COUPON_INSERT                                                                              \
    "INSERT INTO coupon (code, rule_id, promo_id, order_id, event_identifier, customer_email,"     \
    " currency, discount_type, discount_minor, expires_at) VALUES "
#define COUPON_ROW "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

/* A new code for c, written into its mail too (same length, same place). */
static int new_code(struct coupon_state *st, struct coupon *c)
{
    char old[sizeof(c->code)], *at;
    snprintf(old, sizeof(old), "%s", c->code);
    if (oq_coupon_code(c->prefix, st->alphabet, (size_t)st->code_length, c->code,
                       sizeof(c->code)) != 0)
        return OQ_EIO;
    if ((at = strstr(c->email_body, old)) != NULL)
        memcpy(at, c->code, strlen(c->code));
    return 0;
}

/* A batch's coupons in one list, to write in statements of at most
 * OQ_DB_MAX_PLACEHOLDERS placeholders (a batch_size of 10,000 earns 10,000
 * coupons or more: 100,000 placeholders in one statement). */
struct issued {
    const struct coupon_plan *plan;
    struct coupon *coupon;
};

/* One coupon at a time, for the rare chunk whose bulk insert hit a unique
 * key: a code collision gets a new code; a coupon the order already has
 * (another event of the same order won) is skipped, and so is its mail. */
static int insert_one_by_one(struct coupon_state *st, struct oq_db *db, const struct issued *list,
                             size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct coupon *c = list[i].coupon;
        for (int attempt = 0;; attempt++) {
            struct oq_db_param prm[COUPON_COLS + 1];
            coupon_params(list[i].plan, c, prm);
            prm[COUPON_COLS] = OQ_STR(c->expires_at);
            if (oq_db_execute(db, COUPON_INSERT COUPON_ROW, prm, COUPON_COLS + 1, NULL) == 0)
                break;
            if (oq_db_errno(db) != ER_DUP_ENTRY) {
                snprintf(err, errlen, "inserting a coupon: %s", oq_db_error(db));
                return OQ_EDB;
            }
            if (strstr(oq_db_error(db), "uq_coupon_code") == NULL) {
                c->skipped = 1; /* uq_coupon_order_rule: one coupon per order and rule */
                break;
            }
            if (attempt == 5 || new_code(st, c) != 0) {
                snprintf(err, errlen,
                         "no free coupon code after %d tries: coupon_code_length or "
                         "coupon_code_alphabet gives too few codes",
                         attempt + 1);
                return OQ_EDB;
            }
        }
    }
    return 0;
}

/* list[0..n) in one statement (n within the placeholder limit). */
static int insert_coupon_chunk(struct coupon_state *st, struct oq_db *db, const struct issued *list,
                               size_t n, char *err, size_t errlen)
{
    size_t cols = COUPON_COLS + 1;
    char *sql = oq_db_repeat_sql(COUPON_INSERT, COUPON_ROW, ",", n, "");
    struct oq_db_param *prm = calloc(n * cols + 1, sizeof(*prm));
    int rc = OQ_EDB;
    if (sql == NULL || prm == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t row = 0; row < n; row++) {
        coupon_params(list[row].plan, list[row].coupon, &prm[row * cols]);
        prm[row * cols + COUPON_COLS] = OQ_STR(list[row].coupon->expires_at);
    }
    rc = oq_db_execute(db, sql, prm, n * cols, NULL);
    if (rc != 0 && oq_db_errno(db) == ER_DUP_ENTRY) /* the statement alone was undone */
        rc = insert_one_by_one(st, db, list, n, err, errlen);
    else if (rc != 0)
        snprintf(err, errlen, "inserting %zu coupons: %s", n, oq_db_error(db));
out:
    free(sql);
    free(prm);
    return rc;
}

static int insert_coupons(struct coupon_state *st, struct oq_db *db, const struct issued *list,
                          size_t total, char *err, size_t errlen)
{
    const size_t chunk = OQ_DB_MAX_PLACEHOLDERS / (COUPON_COLS + 1);
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < total; at += chunk)
        rc = insert_coupon_chunk(st, db, list + at, total - at < chunk ? total - at : chunk, err,
                                 errlen);
    return rc;
}

#define OUTBOX_INSERT                                                                              \
    "INSERT IGNORE INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)"   \
    " VALUES "
#define OUTBOX_ROW  "('coupon.email', ?, '', 'coupon.email', ?)"
#define OUTBOX_COLS 2

/* The mails of list[0..n) that were issued, in one statement (n within the
 * placeholder limit). IGNORE is for a mail event written before (the same
 * order, a pruned ledger); any other warning fails the batch. */
static int insert_outbox_chunk(struct oq_db *db, const struct issued *list, size_t n, char *err,
                               size_t errlen)
{
    size_t rows = 0;
    struct oq_db_param *prm = calloc(n * OUTBOX_COLS + 1, sizeof(*prm));
    char *sql = NULL;
    int rc = OQ_EDB;
    if (prm == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct coupon *c = list[i].coupon;
        if (c->skipped)
            continue; /* not issued: no mail */
        prm[rows * OUTBOX_COLS] = OQ_STR(c->email_event_id);
        prm[rows * OUTBOX_COLS + 1] = OQ_STR(c->email_body);
        rows++;
    }
    if (rows > 0 && (sql = oq_db_repeat_sql(OUTBOX_INSERT, OUTBOX_ROW, ",", rows, "")) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = rows == 0 ? 0 : oq_db_execute_ignore(db, sql, prm, rows * OUTBOX_COLS, rows, NULL);
    if (rc != 0)
        snprintf(err, errlen, "writing %zu coupon.email events to the outbox: %s", rows,
                 oq_db_error(db));
out:
    free(sql);
    free(prm);
    return rc;
}

static int insert_outbox(struct oq_db *db, const struct issued *list, size_t total, char *err,
                         size_t errlen)
{
    const size_t chunk = OQ_DB_MAX_PLACEHOLDERS / OUTBOX_COLS;
    int rc = 0;
    for (size_t at = 0; rc == 0 && at < total; at += chunk)
        rc = insert_outbox_chunk(db, list + at, total - at < chunk ? total - at : chunk, err,
                                 errlen);
    return rc;
}

static int apply(void *state, struct oq_db *db, void *const *plans, size_t n, char *err,
                 size_t errlen)
{
    struct coupon_plan *const *p = (struct coupon_plan *const *)plans;
    struct issued *list = NULL;
    size_t total = 0, k = 0;
    int rc;
    for (size_t i = 0; i < n; i++)
        total += p[i] ? p[i]->n : 0;
    if (total == 0)
        return 0;
    if ((list = calloc(total, sizeof(*list))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return OQ_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; p[i] && c < p[i]->n; c++) {
            p[i]->coupons[c].skipped = 0; /* decided anew on every try */
            list[k++] = (struct issued){p[i], &p[i]->coupons[c]};
        }
    rc = insert_coupons(state, db, list, total, err, errlen);
    if (rc == 0)
        rc = insert_outbox(db, list, total, err, errlen);
    free(list);
    return rc;
}

static int refresh(void *state, struct oq_db *db, char *err, size_t errlen)
{
    struct coupon_state *st = state;
    struct oq_rule *rules = NULL;
    size_t n = 0;
    if (st->loaded_at != 0 && time(NULL) - st->loaded_at < RULES_REFRESH_S)
        return 0;
    int rc = oq_rules_load(db, &rules, &n, err, errlen);
    if (rc != 0)
        return rc;
    if (n != st->n_rules)
        oq_info("coupon rules loaded: %zu", n);
    oq_rules_free(st->rules, st->n_rules);
    st->rules = rules;
    st->n_rules = n;
    st->loaded_at = time(NULL);
    return 0;
}

static void free_state(void *state)
{
    struct coupon_state *st = state;
    if (st == NULL)
        return;
    oq_rules_free(st->rules, st->n_rules);
    free(st->alphabet);
    oq_shopapi_free(st->shop);
    free(st);
}

int oq_handler_coupon_new(const struct oq_config *cfg, struct oq_handler *out, char *err,
                          size_t errlen)
{
    struct coupon_state *st = calloc(1, sizeof(*st));
    if (st == NULL || (st->alphabet = strdup(cfg->coupon_code_alphabet)) == NULL) {
        free(st);
        return OQ_ENOMEM;
    }
    st->code_length = cfg->coupon_code_length;
    /* e.g. shop_api_token_file cannot be read: err says */
    int rc = cfg->shop_api_url[0] != '\0' ? oq_shopapi_new(cfg, &st->shop, err, errlen) : 0;
    if (rc != 0) {
        free_state(st);
        return rc;
    }
    *out = (struct oq_handler){
        .name = "coupon_rules",
        .event_code = "order.processing",
        .state = st,
        .prepare = prepare,
        .apply = apply,
        .free_plan = free_plan,
        .prepare_calls_out = prepare_calls_out,
        .refresh = refresh,
        .free_state = free_state,
    };
    return 0;
}
