/* rules.c - coupon rules: load and validate them, evaluate an order, make codes */
#include "orderq/rules.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "orderq/json.h"
#include "orderq/db.h"
#include "orderq/money.h"

/* The text of an amount given as a JSON string ("19.99") or number (19.99). */
/* A whole number >= min from a JSON integer. */
static int parse_whole(yajl_val v, int64_t min, int64_t *out, char *why, size_t whylen)
{
    if (!YAJL_IS_INTEGER(v) || YAJL_GET_INTEGER(v) < min) {
        snprintf(why, whylen, "expected a whole number of at least %lld", (long long)min);
        return OQ_EINVAL;
    }
    *out = YAJL_GET_INTEGER(v);
    return 0;
}

static int valid_prefix(const char *p)
{
    size_t n = strlen(p);
    if (n > OQ_CODE_PREFIX_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '-' && p[i] != '_')
            return 0;
    return 1;
}

static int parse_coupon(yajl_val c, struct oq_rule *r, const char **field, char *why, size_t whylen)
{
    yajl_val v;
    *field = "coupon";
    if (!YAJL_IS_OBJECT(c)) {
        snprintf(why, whylen, "expected an object with discount_type, discount, valid_days");
        return OQ_EINVAL;
    }
    *field = "coupon.discount_type";
    v = oq_json_member(c, "discount_type");
    if (YAJL_IS_STRING(v) && strcmp(v->u.string, "fixed") == 0)
        r->discount_type = OQ_DISCOUNT_FIXED;
    else if (YAJL_IS_STRING(v) && strcmp(v->u.string, "percent") == 0)
        r->discount_type = OQ_DISCOUNT_PERCENT;
    else {
        snprintf(why, whylen, "expected \"fixed\" or \"percent\"");
        return OQ_EINVAL;
    }
    *field = "coupon.discount";
    /* a percentage keeps two decimals: "12.5" percent is 1250 */
    int exponent = r->discount_type == OQ_DISCOUNT_FIXED ? r->exponent : 2;
    if (oq_json_amount(oq_json_member(c, "discount"), exponent, &r->discount, why, whylen) != 0)
        return OQ_EINVAL;
    if (r->discount == 0 || (r->discount_type == OQ_DISCOUNT_PERCENT && r->discount > 10000)) {
        snprintf(why, whylen,
                 r->discount == 0 ? "a discount of 0 gives nothing"
                                  : "a percentage must be at most 100");
        return OQ_EINVAL;
    }
    *field = "coupon.valid_days";
    if (parse_whole(oq_json_member(c, "valid_days"), 1, &r->valid_days, why, whylen) != 0)
        return OQ_EINVAL;
    if (r->valid_days > 3650) {
        snprintf(why, whylen, "expected at most 3650 days");
        return OQ_EINVAL;
    }
    *field = "coupon.code_prefix";
    v = oq_json_member(c, "code_prefix");
    if (v != NULL && (!YAJL_IS_STRING(v) || !valid_prefix(v->u.string))) {
        snprintf(why, whylen, "expected up to %d letters, digits, '-' or '_'", OQ_CODE_PREFIX_MAX);
        return OQ_EINVAL;
    }
    snprintf(r->code_prefix, sizeof(r->code_prefix), "%s", v ? v->u.string : "");
    return 0;
}

static int parse_skus(yajl_val v, struct oq_rule *r, char *why, size_t whylen)
{
    if (!YAJL_IS_ARRAY(v) || v->u.array.len == 0) {
        snprintf(why, whylen, "expected a non-empty array of SKU strings");
        return OQ_EINVAL;
    }
    r->skus = calloc(v->u.array.len, sizeof(char *));
    if (r->skus == NULL)
        return OQ_ENOMEM;
    for (size_t i = 0; i < v->u.array.len; i++) {
        yajl_val s = v->u.array.values[i];
        if (!YAJL_IS_STRING(s) || s->u.string[0] == '\0' || strlen(s->u.string) > 191) {
            snprintf(why, whylen, "item %zu: expected a SKU of 1 to 191 bytes", i + 1);
            return OQ_EINVAL;
        }
        for (size_t j = 0; j < r->n_skus; j++)
            if (strcmp(r->skus[j], s->u.string) == 0) {
                snprintf(why, whylen, "\"%s\" is listed twice", s->u.string);
                return OQ_EINVAL;
            }
        if ((r->skus[r->n_skus] = strdup(s->u.string)) == NULL)
            return OQ_ENOMEM;
        r->n_skus++;
    }
    return 0;
}

static int parse_rule(yajl_val o, struct oq_rule *r, const char **field, char *why, size_t whylen)
{
    yajl_val v;
    int rc;
    *field = "";
    if (!YAJL_IS_OBJECT(o)) {
        snprintf(why, whylen, "expected an object");
        return OQ_EINVAL;
    }
    *field = "rule_id";
    if (parse_whole(oq_json_member(o, "rule_id"), 1, &r->rule_id, why, whylen) != 0)
        return OQ_EINVAL;
    *field = "promo_id";
    if (parse_whole(oq_json_member(o, "promo_id"), 0, &r->promo_id, why, whylen) != 0)
        return OQ_EINVAL;
    *field = "name";
    v = oq_json_member(o, "name");
    if (!YAJL_IS_STRING(v) || v->u.string[0] == '\0' || strlen(v->u.string) > 191) {
        snprintf(why, whylen, "expected a name of 1 to 191 bytes");
        return OQ_EINVAL;
    }
    if ((r->name = strdup(v->u.string)) == NULL)
        return OQ_ENOMEM;
    *field = "currency";
    v = oq_json_member(o, "currency");
    r->exponent = YAJL_IS_STRING(v) ? oq_currency_exponent(v->u.string) : -1;
    if (r->exponent < 0) {
        snprintf(why, whylen, "expected an ISO 4217 code such as \"USD\"");
        return OQ_EINVAL;
    }
    memcpy(r->currency, v->u.string, 4);
    *field = "skus";
    if ((rc = parse_skus(oq_json_member(o, "skus"), r, why, whylen)) != 0)
        return rc;
    *field = "threshold";
    if (oq_json_amount(oq_json_member(o, "threshold"), r->exponent, &r->threshold, why, whylen) !=
        0)
        return OQ_EINVAL;
    return parse_coupon(oq_json_member(o, "coupon"), r, field, why, whylen);
}

int oq_rules_parse(const char *json, size_t len, struct oq_rule **rules, size_t *n, char *err,
                   size_t errlen)
{
    char perr[256], why[300], *text = NULL;
    yajl_val root = NULL;
    struct oq_rule *list = NULL;
    size_t count = 0;
    int rc = OQ_ENOMEM;

    *rules = NULL;
    *n = 0;
    if ((text = strndup(json, len)) == NULL)
        goto out;
    if (strlen(text) != len) {
        snprintf(err, errlen, "the rules file contains a NUL byte");
        rc = OQ_EINVAL;
        goto out;
    }
    root = oq_json_parse(text, perr, sizeof(perr));
    if (root == NULL || !YAJL_IS_ARRAY(root)) {
        for (char *p = perr; *p; p++)
            if (*p == '\n')
                *p = ' ';
        snprintf(err, errlen, "%s", root ? "expected a JSON array of rules" : perr);
        rc = OQ_EINVAL;
        goto out;
    }
    list = calloc(root->u.array.len + 1, sizeof(*list));
    if (list == NULL)
        goto out;
    for (size_t i = 0; i < root->u.array.len; i++, count++) {
        const char *field = "";
        rc = parse_rule(root->u.array.values[i], &list[i], &field, why, sizeof(why));
        if (rc == 0)
            for (size_t j = 0; j < i; j++)
                if (list[j].rule_id == list[i].rule_id) {
                    field = "rule_id";
                    snprintf(why, sizeof(why), "rule %zu has the same rule_id", j + 1);
                    rc = OQ_EINVAL;
                }
        if (rc == OQ_EINVAL) {
            char id[40] = "";
            if (list[i].rule_id > 0)
                snprintf(id, sizeof(id), " (rule_id %lld)", (long long)list[i].rule_id);
            snprintf(err, errlen, "rule %zu%s: %s%s%s", i + 1, id, field, *field ? ": " : "", why);
        }
        if (rc != 0) {
            count++;
            goto out;
        }
    }
    *rules = list;
    *n = count;
    list = NULL;
    rc = 0;
out:
    if (rc == OQ_ENOMEM)
        snprintf(err, errlen, "out of memory");
    oq_rules_free(list, count);
    yajl_tree_free(root);
    free(text);
    return rc;
}

void oq_rules_free(struct oq_rule *rules, size_t n)
{
    if (rules == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(rules[i].name);
        for (size_t j = 0; j < rules[i].n_skus; j++)
            free(rules[i].skus[j]);
        free(rules[i].skus);
    }
    free(rules);
}

int oq_order_item_parse(yajl_val it, int exponent, struct oq_order_item *item, char *why,
                        size_t whylen)
{
    yajl_val qty = oq_json_member(it, "qty"), orig = oq_json_member(it, "original_price");
    if (!YAJL_IS_OBJECT(it) || (item->sku = oq_json_text(it, "sku")) == NULL) {
        snprintf(why, whylen, "expected an object with a sku");
        return OQ_EINVAL;
    }
    /* "2", 2 and Magento's "2.0000" are two; "1.5" is not a count */
    const char *qtext = oq_json_number_text(qty);
    if (qtext == NULL || oq_money_parse(qtext, strlen(qtext), 0, &item->qty, why, whylen) != 0) {
        snprintf(why, whylen, "qty: expected a whole number such as 2");
        return OQ_EINVAL;
    }
    char inner[200];
    if (oq_json_amount(oq_json_member(it, "price"), exponent, &item->price, inner, sizeof(inner)) !=
        0) {
        snprintf(why, whylen, "price: %s", inner);
        return OQ_EINVAL;
    }
    item->original_price = item->price;
    if (orig != NULL && !YAJL_IS_NULL(orig) &&
        oq_json_amount(orig, exponent, &item->original_price, inner, sizeof(inner)) != 0) {
        snprintf(why, whylen, "original_price: %s", inner);
        return OQ_EINVAL;
    }
    return 0;
}

int oq_order_parse(yajl_val data, struct oq_order *o, char *err, size_t errlen)
{
    char why[300];
    memset(o, 0, sizeof(*o));
    if ((o->order_id = oq_json_text(data, "order_id")) == NULL || strlen(o->order_id) > 64) {
        snprintf(err, errlen, "event_data.order_id is missing (or longer than 64 bytes)");
        return OQ_EINVAL;
    }
    if ((o->order_status = oq_json_text(data, "order_status")) == NULL ||
        strlen(o->order_status) > 64) {
        snprintf(err, errlen, "event_data.order_status is missing (or longer than 64 bytes)");
        return OQ_EINVAL;
    }
    o->currency = oq_json_text(data, "currency");
    int exponent = o->currency ? oq_currency_exponent(o->currency) : -1;
    if (exponent < 0) {
        snprintf(err, errlen, "event_data.currency: expected an ISO 4217 code such as \"USD\"");
        return OQ_EINVAL;
    }
    yajl_val customer = oq_json_member(data, "customer");
    o->customer_email = oq_json_text(customer, "email");
    o->customer_name = oq_json_text(customer, "name");
    yajl_val items = oq_json_member(data, "items");
    if (items == NULL || YAJL_IS_NULL(items))
        return 0;
    if (!YAJL_IS_ARRAY(items)) {
        snprintf(err, errlen, "event_data.items: expected an array");
        return OQ_EINVAL;
    }
    o->has_items = 1;
    o->items = calloc(items->u.array.len + 1, sizeof(*o->items));
    if (o->items == NULL)
        return OQ_ENOMEM;
    for (size_t i = 0; i < items->u.array.len; i++) {
        if (oq_order_item_parse(items->u.array.values[i], exponent, &o->items[i], why,
                                sizeof(why)) != 0) {
            snprintf(err, errlen, "event_data.items[%zu]: %s", i, why);
            oq_order_clear(o);
            return OQ_EINVAL;
        }
        o->n_items++;
    }
    return 0;
}

void oq_order_clear(struct oq_order *o)
{
    if (o == NULL)
        return;
    free(o->items);
    memset(o, 0, sizeof(*o));
}

static int rule_names_sku(const struct oq_rule *r, const char *sku)
{
    for (size_t i = 0; i < r->n_skus; i++)
        if (strcmp(r->skus[i], sku) == 0)
            return 1;
    return 0;
}

int oq_rule_evaluate(const struct oq_rule *r, const struct oq_order *o, int64_t *qualifying,
                     int *earned)
{
    int64_t total = 0;
    *qualifying = 0;
    *earned = 0;
    if (o->currency == NULL || strcmp(o->currency, r->currency) != 0)
        return 0; /* no exchange rates here: another currency never qualifies */
    for (size_t i = 0; i < o->n_items; i++) {
        const struct oq_order_item *it = &o->items[i];
        int64_t line;
        if (!rule_names_sku(r, it->sku) || it->price < it->original_price)
            continue; /* not in the rule, or sold at a discount */
        if (oq_money_mul(it->price, it->qty, &line) != 0 || oq_money_add(&total, line) != 0)
            return OQ_EINVAL;
    }
    *qualifying = total;
    *earned = total > r->threshold;
    return 0;
}

int oq_coupon_code(const char *prefix, const char *alphabet, size_t length, char *out,
                   size_t outlen)
{
    size_t plen = strlen(prefix), alen = strlen(alphabet), i = 0;
    unsigned char pool[64];
    if (alen < 2 || alen > 256 || length == 0 || plen + length + 1 > outlen)
        return OQ_EINVAL;
    /* Reject bytes >= the largest multiple of alen, so every symbol is
     * equally likely (a plain % would favour the first ones). */
    unsigned limit = 256u - (256u % (unsigned)alen);
    memcpy(out, prefix, plen);
    while (i < length) {
        ssize_t got = getrandom(pool, sizeof(pool), 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return OQ_EIO;
        }
        for (ssize_t k = 0; k < got && i < length; k++)
            if (pool[k] < limit)
                out[plen + i++] = alphabet[pool[k] % alen];
    }
    out[plen + length] = '\0';
    return 0;
}

/* ---- storage ------------------------------------------------------------ */

static int save_one(struct oq_db *db, const struct oq_rule *r)
{
    struct oq_db_param p[] = {
        OQ_INT(r->rule_id),     OQ_INT(r->promo_id),
        OQ_STR(r->name),        OQ_STR(r->currency),
        OQ_INT(r->threshold),   OQ_STR(r->discount_type == OQ_DISCOUNT_FIXED ? "fixed" : "percent"),
        OQ_INT(r->discount),    OQ_INT(r->valid_days),
        OQ_STR(r->code_prefix),
    };
    struct oq_db_param id[] = {OQ_INT(r->rule_id)};
    if (oq_db_execute(db,
                      "INSERT INTO coupon_rule (rule_id, promo_id, name, currency,"
                      " threshold_minor, discount_type, discount_minor, valid_days, code_prefix)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE"
                      " promo_id = VALUES(promo_id), name = VALUES(name),"
                      " currency = VALUES(currency), threshold_minor = VALUES(threshold_minor),"
                      " discount_type = VALUES(discount_type),"
                      " discount_minor = VALUES(discount_minor), valid_days = VALUES(valid_days),"
                      " code_prefix = VALUES(code_prefix)",
                      p, sizeof(p) / sizeof(p[0]), NULL) != 0 ||
        oq_db_execute(db, "DELETE FROM coupon_rule_sku WHERE rule_id = ?", id, 1, NULL) != 0)
        return OQ_EDB;
    for (size_t i = 0; i < r->n_skus; i++) {
        struct oq_db_param sku[] = {OQ_INT(r->rule_id), OQ_STR(r->skus[i])};
        if (oq_db_execute(db, "INSERT INTO coupon_rule_sku (rule_id, sku) VALUES (?, ?)", sku, 2,
                          NULL) != 0)
            return OQ_EDB;
    }
    return 0;
}

int oq_rules_save(struct oq_db *db, const struct oq_rule *rules, size_t n, char *err, size_t errlen)
{
    if (oq_db_exec(db, "START TRANSACTION") != 0)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (save_one(db, &rules[i]) != 0) {
            snprintf(err, errlen, "saving rule_id %lld: %s", (long long)rules[i].rule_id,
                     oq_db_error(db));
            oq_db_rollback(db);
            return OQ_EDB;
        }
    if (oq_db_exec(db, "COMMIT") == 0)
        return 0;
fail:
    snprintf(err, errlen, "saving rules: %s", oq_db_error(db));
    oq_db_rollback(db);
    return OQ_EDB;
}

/* Rows read through db.c, so a failure is classified like any other
 * (a connection that died while idle is found and reopened). */
struct rules_read {
    struct oq_rule *list;
    size_t count, cap;
    int oom;
};

static int on_rule_row(void *ctx, const char *const *row, unsigned cols)
{
    struct rules_read *rd = ctx;
    if (cols < 9)
        return 0;
    if (rd->count == rd->cap) {
        size_t cap = rd->cap ? rd->cap * 2 : 16;
        struct oq_rule *grown = realloc(rd->list, cap * sizeof(*grown));
        if (grown == NULL) {
            rd->oom = 1;
            return 1;
        }
        memset(grown + rd->cap, 0, (cap - rd->cap) * sizeof(*grown));
        rd->list = grown;
        rd->cap = cap;
    }
    struct oq_rule *r = &rd->list[rd->count++];
    r->rule_id = strtoll(row[0], NULL, 10);
    r->promo_id = strtoll(row[1], NULL, 10);
    r->name = strdup(row[2] ? row[2] : "");
    snprintf(r->currency, sizeof(r->currency), "%s", row[3] ? row[3] : "");
    r->exponent = oq_currency_exponent(r->currency);
    r->threshold = strtoll(row[4], NULL, 10);
    r->discount_type = strcmp(row[5], "percent") == 0 ? OQ_DISCOUNT_PERCENT : OQ_DISCOUNT_FIXED;
    r->discount = strtoll(row[6], NULL, 10);
    r->valid_days = strtoll(row[7], NULL, 10);
    snprintf(r->code_prefix, sizeof(r->code_prefix), "%s", row[8] ? row[8] : "");
    rd->oom = r->name == NULL;
    return rd->oom;
}

static int on_sku_row(void *ctx, const char *const *row, unsigned cols)
{
    struct rules_read *rd = ctx;
    if (cols < 2 || row[0] == NULL || row[1] == NULL)
        return 0;
    long long id = strtoll(row[0], NULL, 10);
    for (size_t i = 0; i < rd->count; i++) {
        struct oq_rule *r = &rd->list[i];
        if (r->rule_id != id)
            continue;
        char **grown = realloc(r->skus, (r->n_skus + 1) * sizeof(char *));
        if (grown != NULL)
            r->skus = grown;
        char *sku = grown != NULL ? strdup(row[1]) : NULL;
        if (sku == NULL) {
            rd->oom = 1;
            return 1;
        }
        r->skus[r->n_skus++] = sku;
    }
    return 0;
}

int oq_rules_load(struct oq_db *db, struct oq_rule **rules, size_t *n, char *err, size_t errlen)
{
    struct rules_read rd = {NULL, 0, 0, 0};
    const char *what = "coupon_rule";
    int rc;

    *rules = NULL;
    *n = 0;
    rc = oq_db_query_rows(db,
                          "SELECT rule_id, promo_id, name, currency, threshold_minor,"
                          " discount_type, discount_minor, valid_days, code_prefix"
                          " FROM coupon_rule ORDER BY rule_id",
                          NULL, 0, on_rule_row, &rd);
    if (rc == 0) {
        what = "coupon_rule_sku";
        rc = oq_db_query_rows(db, "SELECT rule_id, sku FROM coupon_rule_sku ORDER BY rule_id, sku",
                              NULL, 0, on_sku_row, &rd);
    }
    if (rd.oom) {
        snprintf(err, errlen, "out of memory reading %s", what);
        rc = OQ_ENOMEM;
    } else if (rc != 0) {
        snprintf(err, errlen, "reading %s: %s", what, oq_db_error(db));
        rc = OQ_EDB;
    }
    if (rc != 0) {
        oq_rules_free(rd.list, rd.count);
        return rc;
    }
    *rules = rd.list;
    *n = rd.count;
    return 0;
}
