/* webhook.c - the webhooks file: event codes mapped to endpoints, checked at load */
#include "orderq/webhook.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "orderq/config.h"
#include "orderq/json.h"
#include "orderq/url.h"

#define MAX_HOOKS 256

void oq_webhooks_free(struct oq_webhook *hooks, size_t n)
{
    if (hooks == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(hooks[i].event_code);
        free(hooks[i].url);
        free(hooks[i].url_shown);
        oq_secret_free(hooks[i].secret);
    }
    free(hooks);
}

/* The secret named by secret_env or secret_file, into h->secret. */
static int read_secret(yajl_val e, struct oq_webhook *h, char *why, size_t whylen)
{
    yajl_val env = oq_json_member(e, "secret_env"), file = oq_json_member(e, "secret_file");
    if (oq_json_member(e, "secret") != NULL) {
        snprintf(why, whylen,
                 "secret: not here (this file gets copied around); name it with "
                 "secret_env or secret_file");
        return OQ_EINVAL;
    }
    if (env != NULL && file != NULL) {
        snprintf(why, whylen, "secret_env and secret_file: give one of them");
        return OQ_EINVAL;
    }
    if (env != NULL) {
        const char *value = YAJL_IS_STRING(env) ? getenv(env->u.string) : NULL;
        if (value == NULL || value[0] == '\0') {
            snprintf(why, whylen, "secret_env: the environment variable %s is not set",
                     YAJL_IS_STRING(env) ? env->u.string : "(not a string)");
            return OQ_EINVAL;
        }
        return oq_secret_load(value, NULL, NULL, &h->secret, why, whylen);
    }
    if (file == NULL)
        return 0;
    if (!YAJL_IS_STRING(file)) {
        snprintf(why, whylen, "secret_file: expected a path");
        return OQ_EINVAL;
    }
    int rc = oq_secret_load(NULL, "secret_file", file->u.string, &h->secret, why, whylen);
    return rc == OQ_ECONFIG ? OQ_EINVAL : rc; /* a fault of this file, like the others */
}

/* curl's text of part, or NULL when the URL has none (or out of memory). */
static char *url_part(CURLU *u, CURLUPart part)
{
    char *curl_owned = NULL, *copy = NULL;
    if (curl_url_get(u, part, &curl_owned, 0) == CURLUE_OK && curl_owned != NULL)
        copy = strdup(curl_owned);
    curl_free(curl_owned);
    return copy;
}

/* "https://erp.example:8443/..." for https://user:pw@erp.example:8443/h/T0K?k=v:
 * the scheme, host and port only, "/..." when more follows. A receiver's
 * token can sit anywhere in the path, query, userinfo or fragment, in any
 * shape (base64 with '/', letters only), so none of them is shown rather
 * than guessed at; the event code tells endpoints apart (one per code).
 * NULL only when out of memory. */
static char *url_shown(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *fragment = NULL,
         *out = NULL;
    if (u == NULL)
        return NULL;
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
        out = strdup("***"); /* checked at load: not reached */
        goto out;
    }
    scheme = url_part(u, CURLUPART_SCHEME);
    host = url_part(u, CURLUPART_HOST);
    port = url_part(u, CURLUPART_PORT); /* only when the URL names one */
    path = url_part(u, CURLUPART_PATH);
    query = url_part(u, CURLUPART_QUERY);
    fragment = url_part(u, CURLUPART_FRAGMENT);
    int more = (path != NULL && strcmp(path, "/") != 0 && path[0] != '\0') || query != NULL ||
               fragment != NULL;
    size_t n =
        (scheme ? strlen(scheme) : 0) + (host ? strlen(host) : 0) + (port ? strlen(port) : 0) + 16;
    if (scheme == NULL || host == NULL || (out = malloc(n)) == NULL)
        goto out;
    snprintf(out, n, "%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "",
             more ? "/..." : "/");
out:
    free(scheme);
    free(host);
    free(port);
    free(path);
    free(query);
    free(fragment);
    curl_url_cleanup(u);
    return out;
}

/* "signature": which form X-Orderq-Signature takes, into h->signature. */
static int read_signature(yajl_val e, struct oq_webhook *h, char *why, size_t whylen)
{
    yajl_val v = oq_json_member(e, "signature");
    h->signature = OQ_SIGNATURE_V1;
    if (v == NULL)
        return 0;
    if (YAJL_IS_STRING(v) && strcmp(v->u.string, "sha256-body") == 0)
        h->signature = OQ_SIGNATURE_SHA256_BODY;
    else if (!YAJL_IS_STRING(v) || strcmp(v->u.string, "v1") != 0) {
        snprintf(why, whylen, "signature: expected \"v1\" or \"sha256-body\"");
        return OQ_EINVAL;
    }
    if (h->secret == NULL) {
        snprintf(why, whylen,
                 "signature: there is no secret to sign with; expected secret_env or "
                 "secret_file with it");
        return OQ_EINVAL;
    }
    return 0;
}

static int parse_entry(yajl_val e, struct oq_webhook *h, char *why, size_t whylen)
{
    static const char *const known[] = {"event_code",  "url",    "timeout_ms", "secret_env",
                                        "secret_file", "secret", "signature"};
    char inner[300];
    if (!YAJL_IS_OBJECT(e)) {
        snprintf(why, whylen, "expected an object");
        return OQ_EINVAL;
    }
    for (size_t k = 0; k < e->u.object.len; k++) {
        size_t j = 0;
        while (j < sizeof(known) / sizeof(known[0]) && strcmp(known[j], e->u.object.keys[k]) != 0)
            j++;
        if (j == sizeof(known) / sizeof(known[0])) {
            snprintf(why, whylen, "unknown field \"%s\"", e->u.object.keys[k]);
            return OQ_EINVAL;
        }
    }
    const char *code = oq_json_text(e, "event_code"), *url = oq_json_text(e, "url");
    if (code == NULL || oq_amqp_name_check(code, inner, sizeof(inner)) != 0) {
        snprintf(why, whylen, "event_code: %s", code ? inner : "missing");
        return OQ_EINVAL;
    }
    if (url == NULL || oq_url_check_scheme(url, "http,https", inner, sizeof(inner)) != 0) {
        snprintf(why, whylen, "url: %s", url ? inner : "missing");
        return OQ_EINVAL;
    }
    yajl_val t = oq_json_member(e, "timeout_ms");
    h->timeout_ms = 5000;
    if (t != NULL) {
        if (!YAJL_IS_INTEGER(t) || YAJL_GET_INTEGER(t) < 100 || YAJL_GET_INTEGER(t) > 120000) {
            snprintf(why, whylen, "timeout_ms: expected a whole number from 100 to 120000");
            return OQ_EINVAL;
        }
        h->timeout_ms = YAJL_GET_INTEGER(t);
    }
    if ((h->event_code = strdup(code)) == NULL || (h->url = strdup(url)) == NULL ||
        (h->url_shown = url_shown(url)) == NULL) {
        snprintf(why, whylen, "out of memory");
        return OQ_ENOMEM;
    }
    int rc = read_secret(e, h, why, whylen);
    return rc != 0 ? rc : read_signature(e, h, why, whylen);
}

int oq_webhooks_parse(const char *json, size_t len, const char *what, struct oq_webhook **hooks,
                      size_t *n, char *err, size_t errlen)
{
    char perr[256], why[400];
    char *text = strndup(json, len);
    yajl_val root = text ? oq_json_parse(text, perr, sizeof(perr)) : NULL;
    int rc = OQ_EINVAL;
    *hooks = NULL;
    *n = 0;
    free(text);
    if (root == NULL || !YAJL_IS_ARRAY(root)) {
        snprintf(err, errlen, "%s: expected a JSON array of webhooks%s%s", what,
                 root == NULL ? ": " : "", root == NULL ? perr : "");
        goto out;
    }
    if (root->u.array.len > MAX_HOOKS) {
        snprintf(err, errlen, "%s: more than %d webhooks", what, MAX_HOOKS);
        goto out;
    }
    if ((*hooks = calloc(root->u.array.len + 1, sizeof(**hooks))) == NULL) {
        rc = OQ_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < root->u.array.len; i++) {
        struct oq_webhook *h = &(*hooks)[i];
        (*n)++;
        if ((rc = parse_entry(root->u.array.values[i], h, why, sizeof(why))) != 0) {
            snprintf(err, errlen, "%s: webhook %zu: %s", what, i + 1, why);
            goto fail;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp((*hooks)[k].event_code, h->event_code) == 0) {
                /* One delivery, one ledger row, one call: fan out with a
                 * second orderq queue or at the receiver. */
                snprintf(err, errlen,
                         "%s: webhook %zu: event_code \"%s\" has an endpoint already (webhook "
                         "%zu); expected one endpoint per event code",
                         what, i + 1, h->event_code, k + 1);
                rc = OQ_EINVAL;
                goto fail;
            }
    }
    rc = 0;
    goto out;
fail:
    oq_webhooks_free(*hooks, *n);
    *hooks = NULL;
    *n = 0;
out:
    yajl_tree_free(root);
    return rc;
}

const struct oq_webhook *oq_webhook_find(const struct oq_webhook *hooks, size_t n,
                                         const char *event_code)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(hooks[i].event_code, event_code) == 0)
            return &hooks[i];
    return NULL;
}

int oq_webhooks_load(const char *path, struct oq_webhook **hooks, size_t *n, char *err,
                     size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    *hooks = NULL;
    *n = 0;
    if (oq_read_file(path, 1u << 20, &text, &len) != 0) {
        snprintf(err, errlen, "cannot read the webhooks file %s", path);
        return OQ_EIO;
    }
    int rc = oq_webhooks_parse(text, len, path, hooks, n, err, errlen);
    free(text);
    return rc;
}

/* ---- sending --------------------------------------------------------------- */

#define MAX_RETRY_AFTER_MS (3600 * 1000)

struct oq_webhook_sender {
    CURL *curl;
    char retry_after[128]; /* the answer's Retry-After, "" if none */
};

int oq_webhook_sender_new(struct oq_webhook_sender **out)
{
    struct oq_webhook_sender *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->curl = curl_easy_init()) == NULL) {
        free(s);
        *out = NULL;
        return OQ_ENOMEM;
    }
    *out = s;
    return 0;
}

void oq_webhook_sender_free(struct oq_webhook_sender *s)
{
    if (s == NULL)
        return;
    curl_easy_cleanup(s->curl);
    free(s);
}

static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    struct oq_webhook_sender *s = ctx;
    size_t len = size * n, end = len;
    while (end > 12 && (line[end - 1] == '\r' || line[end - 1] == '\n'))
        end--;
    if (end > 12 && strncasecmp(line, "Retry-After:", 12) == 0)
        snprintf(s->retry_after, sizeof(s->retry_after), "%.*s", (int)(end - 12), line + 12);
    return len;
}

static size_t discard_body(char *data, size_t size, size_t n, void *ctx)
{
    (void)data;
    (void)ctx;
    return size * n; /* the status says it all; the body may be large or HTML */
}

enum oq_http_outcome oq_webhook_post(struct oq_webhook_sender *s, const struct oq_webhook *h,
                                     const char *event_code, const char *effect_key,
                                     const char *body, size_t len, long *status,
                                     int64_t *retry_after_ms, char *why, size_t whylen)
{
    struct curl_slist *headers = NULL;
    char signature[OQ_SIGNATURE_LEN], timestamp[24];
    CURL *c = s->curl;
    int64_t now = (int64_t)time(NULL); /* signed with the body: a replay shows its age */
    snprintf(timestamp, sizeof(timestamp), "%lld", (long long)now);
    *status = 0;
    *retry_after_ms = -1;
    s->retry_after[0] = '\0';
    int rc = 0;
    if ((rc = oq_http_header_add(&headers, "Content-Type", "application/json")) != 0 ||
        (rc = oq_http_header_add(&headers, "Idempotency-Key", effect_key)) != 0 ||
        (rc = oq_http_header_add(&headers, "X-Orderq-Event", event_code)) != 0 ||
        (rc = oq_http_header_add(&headers, "Expect", "")) != 0 || /* no 100-continue round trip */
        (h->secret != NULL &&
         ((rc = oq_http_signature(h->secret, h->signature, now, body, len, signature)) != 0 ||
          (h->signature == OQ_SIGNATURE_V1 && /* sha256-body: the time is not signed */
           (rc = oq_http_header_add(&headers, "X-Orderq-Timestamp", timestamp)) != 0) ||
          (rc = oq_http_header_add(&headers, "X-Orderq-Signature", signature)) != 0))) {
        curl_slist_free_all(headers);
        snprintf(why, whylen, "%s",
                 rc == OQ_EINVAL ? "the effect key or event code holds a CR or LF"
                                 : "out of memory building the webhook request");
        return rc == OQ_EINVAL ? OQ_HTTP_PERMANENT : OQ_HTTP_TRANSIENT;
    }
    curl_easy_reset(c); /* keeps the connections */
    curl_easy_setopt(c, CURLOPT_URL, h->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)h->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_body);
    CURLcode res = curl_easy_perform(c);
    oq_curl_observe_duration(c, OQ_PROTO_HTTP);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(headers);
    enum oq_http_outcome outcome = oq_http_classify((int)res, *status);
    if (s->retry_after[0] != '\0')
        *retry_after_ms = oq_http_retry_after_ms(s->retry_after, time(NULL), MAX_RETRY_AFTER_MS);
    if (res != CURLE_OK)
        snprintf(why, whylen, "webhook for %s, %s: %s", h->event_code, h->url_shown,
                 curl_easy_strerror(res));
    else
        snprintf(why, whylen, "webhook for %s, %s: HTTP %ld", h->event_code, h->url_shown, *status);
    return outcome;
}
