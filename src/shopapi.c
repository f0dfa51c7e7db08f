/* shopapi.c - look an order up in the shop's REST API (Magento style) */
#include "orderq/shopapi.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "orderq/config.h"
#include "orderq/event.h"
#include "orderq/json.h"

#define MAX_ANSWER (8u << 20) /* an order document is kilobytes; more is not an order */

struct oq_shopapi {
    const struct oq_config *cfg;
    CURL *curl;
    char *token; /* NULL: no Authorization header */
};

int oq_shopapi_new(const struct oq_config *cfg, struct oq_shopapi **out, char *err, size_t errlen)
{
    struct oq_shopapi *api = calloc(1, sizeof(*api));
    *out = NULL;
    if (cfg->shop_api_url[0] == '\0') {
        free(api);
        snprintf(err, errlen, "config: shop_api_url is empty: set the shop's REST API base URL");
        return OQ_ECONFIG;
    }
    if (api == NULL || (api->curl = curl_easy_init()) == NULL) {
        free(api);
        snprintf(err, errlen, "out of memory starting the shop API client");
        return OQ_ENOMEM;
    }
    api->cfg = cfg;
    int rc = oq_secret_load(cfg->shop_api_token, "shop_api_token_file", cfg->shop_api_token_file,
                            &api->token, err, errlen);
    if (rc != 0) {
        oq_shopapi_free(api);
        return rc;
    }
    *out = api;
    return 0;
}

void oq_shopapi_free(struct oq_shopapi *api)
{
    if (api == NULL)
        return;
    curl_easy_cleanup(api->curl);
    oq_secret_free(api->token);
    free(api);
}

/* {base}/rest/V1/orders/{order_id, escaped}; NULL when out of memory. */
static char *order_url(struct oq_shopapi *api, const char *order_id)
{
    const char *base = api->cfg->shop_api_url;
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    char *id = curl_easy_escape(api->curl, order_id, 0);
    if (id == NULL)
        return NULL;
    size_t n = blen + strlen(id) + 32;
    char *url = malloc(n);
    if (url != NULL)
        snprintf(url, n, "%.*s/rest/V1/orders/%s", (int)blen, base, id);
    curl_free(id);
    return url;
}

enum oq_http_outcome oq_shopapi_order(struct oq_shopapi *api, const char *order_id,
                                      char **event_data, char *why, size_t whylen)
{
    struct curl_slist *headers = NULL;
    struct oq_http_body body = {.max = MAX_ANSWER};
    long status = 0;
    enum oq_http_outcome outcome = OQ_HTTP_TRANSIENT;
    char *url = order_url(api, order_id), *auth = NULL;
    *event_data = NULL;
    if (api->token != NULL && asprintf(&auth, "Bearer %s", api->token) < 0)
        auth = NULL;
    if (url == NULL || (api->token != NULL && auth == NULL) ||
        oq_http_header_add(&headers, "Accept", "application/json") != 0 ||
        (auth != NULL && oq_http_header_add(&headers, "Authorization", auth) != 0)) {
        snprintf(why, whylen, "out of memory asking the shop API (or a CR/LF in the token)");
        goto out;
    }
    CURL *c = api->curl;
    curl_easy_reset(c); /* keeps the connection */
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)api->cfg->shop_api_timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)api->cfg->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, oq_http_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode res = curl_easy_perform(c);
    oq_curl_observe_duration(c, OQ_PROTO_HTTP);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (body.too_big) {
        snprintf(why, whylen, "shop API: the answer for order %s is over %u bytes", order_id,
                 MAX_ANSWER);
        outcome = OQ_HTTP_PERMANENT;
    } else if ((outcome = oq_http_classify((int)res, status)) != OQ_HTTP_DONE) {
        if (res != CURLE_OK)
            snprintf(why, whylen, "shop API: %s", curl_easy_strerror(res));
        else
            snprintf(why, whylen, "shop API: HTTP %ld for order %s%s", status, order_id,
                     status == 404 ? " (no such order)" : "");
    } else if (oq_shopapi_order_to_event_data(body.data ? body.data : "", body.len, order_id,
                                              event_data, why, whylen) != 0) {
        outcome = OQ_HTTP_PERMANENT;
    }
out:
    oq_secret_free(auth);
    free(body.data);
    curl_slist_free_all(headers);
    free(url);
    return outcome;
}

/* An amount or count as the shop wrote it, generated as a string. */
static void gen_number(yajl_gen g, const char *key, yajl_val v)
{
    const char *text = oq_json_number_text(v);
    oq_json_gen_str(g, key);
    if (text != NULL)
        oq_json_gen_str(g, text);
    else
        yajl_gen_null(g);
}

int oq_shopapi_order_to_event_data(const char *body, size_t len, const char *order_id,
                                   char **event_data, char *why, size_t whylen)
{
    char perr[256] = "", label[160];
    char *text = strndup(body, len);
    if (text == NULL)
        return OQ_ENOMEM;
    yajl_val doc = oq_json_parse(text, perr, sizeof(perr));
    free(text);
    *event_data = NULL;
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        snprintf(why, whylen, "shop API: the answer for order %s is not a JSON object%s%s",
                 order_id, doc == NULL ? ": " : "", doc == NULL ? perr : "");
        yajl_tree_free(doc);
        return OQ_EINVAL;
    }
    snprintf(label, sizeof(label), "shop API: the answer for order %s", order_id);
    int rc = oq_shopapi_order_doc_to_event_data(doc, order_id, label, event_data, why, whylen);
    yajl_tree_free(doc);
    return rc;
}

int oq_shopapi_order_doc_to_event_data(yajl_val doc, const char *order_id, const char *label,
                                       char **event_data, char *why, size_t whylen)
{
    *event_data = NULL;
    if (!YAJL_IS_OBJECT(doc)) {
        snprintf(why, whylen, "%s is not a JSON object", label);
        return OQ_EINVAL;
    }
    yajl_val items = oq_json_member(doc, "items");
    const char *currency = oq_json_text(doc, "order_currency_code");
    if (currency == NULL)
        currency = oq_json_text(doc, "base_currency_code");
    if (!YAJL_IS_ARRAY(items) || currency == NULL) {
        snprintf(why, whylen, "%s has no %s", label,
                 currency == NULL ? "order_currency_code" : "items array");
        return OQ_EINVAL;
    }
    const char *email = oq_json_text(doc, "customer_email");
    const char *first = oq_json_text(doc, "customer_firstname");
    const char *last = oq_json_text(doc, "customer_lastname");
    /* Whole: a fixed buffer cut a long name inside a character, and the
     * event then failed the decoder's UTF-8 check (the mail handler's
     * OQ_MAIL_NAME_MAX says what is too long, with a reason). */
    size_t nlen = (first ? strlen(first) : 0) + (last ? strlen(last) : 0) + 2;
    char *name = malloc(nlen);
    yajl_gen g = name != NULL ? yajl_gen_alloc(NULL) : NULL;
    if (g == NULL) {
        free(name);
        return OQ_ENOMEM;
    }
    snprintf(name, nlen, "%s%s%s", first ? first : "", first && last ? " " : "", last ? last : "");
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "order_id", order_id);
    oq_json_gen_kv(g, "currency", currency);
    const char *status = oq_json_text(doc, "status");
    if (status != NULL)
        oq_json_gen_kv(g, "order_status", status);
    oq_json_gen_str(g, "customer");
    yajl_gen_map_open(g);
    if (email != NULL)
        oq_json_gen_kv(g, "email", email);
    if (name[0] != '\0')
        oq_json_gen_kv(g, "name", name);
    yajl_gen_map_close(g);
    oq_json_gen_str(g, "items");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < items->u.array.len; i++) {
        yajl_val it = items->u.array.values[i], parent = oq_json_member(it, "parent_item_id");
        if (parent != NULL && !YAJL_IS_NULL(parent))
            continue; /* a configurable product's child line: the parent has the price */
        yajl_gen_map_open(g);
        const char *sku = oq_json_text(it, "sku");
        oq_json_gen_str(g, "sku");
        if (sku != NULL)
            oq_json_gen_str(g, sku);
        else
            yajl_gen_null(g);
        gen_number(g, "qty", oq_json_member(it, "qty_ordered"));
        gen_number(g, "price", oq_json_member(it, "price"));
        gen_number(g, "original_price", oq_json_member(it, "original_price"));
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    free(name);
    if ((*event_data = oq_json_gen_finish(g)) == NULL)
        return OQ_ENOMEM;
    /* yajl lets overlong forms and surrogates through (C1 A9); the envelope
     * decoder refuses them, and so must this other way in, before a name
     * or e-mail reaches a coupon row or a mail. */
    if (!oq_utf8_valid(*event_data, strlen(*event_data))) {
        snprintf(why, whylen, "%s holds text that is not UTF-8", label);
        free(*event_data);
        *event_data = NULL;
        return OQ_EINVAL;
    }
    return 0;
}
