/* webhook.c - the webhooks file: event codes mapped to endpoints, checked at load */
#include "orderq/webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        if (hooks[i].secret != NULL)
            memset(hooks[i].secret, 0, strlen(hooks[i].secret));
        free(hooks[i].secret);
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
        h->secret = strdup(value);
    } else if (file != NULL) {
        if (!YAJL_IS_STRING(file) ||
            (h->secret = oq_read_secret_file("secret_file", file->u.string, why, whylen)) == NULL) {
            if (!YAJL_IS_STRING(file))
                snprintf(why, whylen, "secret_file: expected a path");
            return OQ_EINVAL;
        }
    } else {
        return 0;
    }
    if (h->secret == NULL) {
        snprintf(why, whylen, "out of memory");
        return OQ_ENOMEM;
    }
    return 0;
}

static int parse_entry(yajl_val e, struct oq_webhook *h, char *why, size_t whylen)
{
    static const char *const known[] = {"event_code", "url",         "timeout_ms",
                                        "secret_env", "secret_file", "secret"};
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
    if ((h->event_code = strdup(code)) == NULL || (h->url = strdup(url)) == NULL) {
        snprintf(why, whylen, "out of memory");
        return OQ_ENOMEM;
    }
    return read_secret(e, h, why, whylen);
}

int oq_webhooks_parse(const char *json, size_t len, const char *what, struct oq_webhook **hooks,
                      size_t *n, char *err, size_t errlen)
{
    char perr[256], why[400];
    char *text = strndup(json, len);
    yajl_val root = text ? yajl_tree_parse(text, perr, sizeof(perr)) : NULL;
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
            if (strcmp((*hooks)[k].event_code, h->event_code) == 0 &&
                strcmp((*hooks)[k].url, h->url) == 0) {
                snprintf(err, errlen, "%s: webhook %zu: the same event_code and url as webhook %zu",
                         what, i + 1, k + 1);
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
