/* url.c - parse and redact the URLs orderq is configured with */
#include "orderq/url.h"

#include <amqp.h>
#include <ctype.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static CURLU *parse_with_curl(const char *url, char *err, size_t errlen)
{
    CURLU *h = curl_url();
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    CURLUcode rc = curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        snprintf(err, errlen, "not a URL (%s)", curl_url_strerror(rc));
        curl_url_cleanup(h);
        return NULL;
    }
    return h;
}

/* One decoded part, or NULL when the URL has none. *failed is set when
 * memory ran out, so "absent" and "failed" are told apart. */
static char *url_part(CURLU *h, CURLUPart part, unsigned flags, int *failed)
{
    char *curl_owned = NULL;
    CURLUcode rc = curl_url_get(h, part, &curl_owned, flags);
    if (rc == CURLUE_OUT_OF_MEMORY)
        *failed = 1;
    if (rc != CURLUE_OK)
        return NULL;
    char *copy = strdup(curl_owned);
    curl_free(curl_owned);
    if (copy == NULL)
        *failed = 1;
    return copy;
}

static int parse_port(const char *text, unsigned *port, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 1 || v > 65535) {
        /* the text is not echoed: in a URL cut at a raw comma in its
         * password, the "port" is a piece of the password */
        snprintf(err, errlen, "port must be a number from 1 to 65535");
        return OQ_EINVAL;
    }
    *port = (unsigned)v;
    return 0;
}

/* ssl=: the names of MySQL's --ssl-mode, lower case; true/false kept for
 * the URLs written before the verify modes. */
static int mysql_ssl_mode(const char *value, enum oq_mysql_ssl *mode, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        enum oq_mysql_ssl mode;
    } modes[] = {
        {"disabled", OQ_MYSQL_SSL_DISABLED},   {"false", OQ_MYSQL_SSL_DISABLED},
        {"required", OQ_MYSQL_SSL_REQUIRED},   {"true", OQ_MYSQL_SSL_REQUIRED},
        {"verify_ca", OQ_MYSQL_SSL_VERIFY_CA}, {"verify_identity", OQ_MYSQL_SSL_VERIFY_IDENTITY},
    };
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (strcmp(value, modes[i].name) == 0) {
            *mode = modes[i].mode;
            return 0;
        }
    snprintf(err, errlen,
             "query parameter ssl must be disabled, required, verify_ca or verify_identity, got "
             "\"%s\"",
             value);
    return OQ_EINVAL;
}

/* Apply one "key=value" pair of a MySQL URL's query string. */
static int mysql_query_param(struct oq_mysql_url *u, const char *pair, char *err, size_t errlen)
{
    const char *eq = strchr(pair, '=');
    size_t keylen = eq ? (size_t)(eq - pair) : strlen(pair);
    const char *raw = eq ? eq + 1 : "";
    int outlen = 0;
    char *value = curl_easy_unescape(NULL, raw, 0, &outlen);
    int rc = 0;
    if (value == NULL)
        return OQ_ENOMEM;
    if (keylen == 6 && strncmp(pair, "socket", 6) == 0) {
        free(u->socket);
        u->socket = strdup(value);
        if (u->socket == NULL)
            rc = OQ_ENOMEM;
    } else if (keylen == 3 && strncmp(pair, "ssl", 3) == 0) {
        rc = mysql_ssl_mode(value, &u->ssl, err, errlen);
    } else if (keylen == 6 && strncmp(pair, "ssl_ca", 6) == 0) {
        free(u->ssl_ca);
        u->ssl_ca = strdup(value);
        if (u->ssl_ca == NULL)
            rc = OQ_ENOMEM;
    } else {
        snprintf(err, errlen, "unknown query parameter \"%.*s\" (known: socket, ssl, ssl_ca)",
                 (int)keylen, pair);
        rc = OQ_EINVAL;
    }
    curl_free(value);
    return rc;
}

/* One mysql:// URL into elem (a struct oq_mysql_url). */
static int mysql_url_parse_one(const char *url, void *elem, char *err, size_t errlen)
{
    struct oq_mysql_url *out = elem;
    int rc = OQ_EINVAL, failed = 0;
    char *scheme = NULL, *port = NULL, *path = NULL, *query = NULL;
    CURLU *h = NULL;

    memset(out, 0, sizeof(*out));
    h = parse_with_curl(url, err, errlen);
    if (h == NULL)
        goto out;
    scheme = url_part(h, CURLUPART_SCHEME, 0, &failed);
    if (scheme == NULL || (strcmp(scheme, "mysql") != 0 && strcmp(scheme, "mariadb") != 0)) {
        snprintf(err, errlen, "expected a mysql:// URL, got scheme \"%s\"", scheme ? scheme : "");
        goto out;
    }
    out->user = url_part(h, CURLUPART_USER, CURLU_URLDECODE, &failed);
    out->password = url_part(h, CURLUPART_PASSWORD, CURLU_URLDECODE, &failed);
    out->host = url_part(h, CURLUPART_HOST, CURLU_URLDECODE, &failed);
    port = url_part(h, CURLUPART_PORT, 0, &failed);
    path = url_part(h, CURLUPART_PATH, CURLU_URLDECODE, &failed);
    query = url_part(h, CURLUPART_QUERY, 0, &failed);
    if (failed) {
        rc = OQ_ENOMEM;
        goto out;
    }
    if (port != NULL && parse_port(port, &out->port, err, errlen) != 0)
        goto out;
    size_t hlen = out->host ? strlen(out->host) : 0;
    if (hlen > 2 && out->host[0] == '[') { /* "[::1]": the client wants the bare address */
        memmove(out->host, out->host + 1, hlen - 2);
        out->host[hlen - 2] = '\0';
    }
    const char *db = path ? path + (path[0] == '/') : "";
    if (*db == '\0' || strchr(db, '/') != NULL) {
        snprintf(err, errlen, "the path must name one database, as in mysql://host/orderq");
        goto out;
    }
    out->database = strdup(db);
    if (out->database == NULL) {
        rc = OQ_ENOMEM;
        goto out;
    }
    for (char *p = query, *next = NULL; p != NULL && *p != '\0'; p = next) {
        next = strchr(p, '&');
        if (next != NULL)
            *next++ = '\0';
        int prc = mysql_query_param(out, p, err, errlen);
        if (prc != 0) {
            rc = prc;
            goto out;
        }
    }
    if (out->ssl_ca != NULL && out->ssl < OQ_MYSQL_SSL_VERIFY_CA) {
        snprintf(err, errlen,
                 "query parameter ssl_ca needs ssl=verify_ca or ssl=verify_identity "
                 "(with ssl=required the certificate is not checked)");
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        oq_mysql_url_clear(out);
    free(scheme);
    free(port);
    free(path);
    free(query);
    curl_url_cleanup(h);
    return rc;
}

void oq_mysql_url_clear(struct oq_mysql_url *u)
{
    if (u == NULL)
        return;
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->database);
    free(u->socket);
    free(u->ssl_ca);
    memset(u, 0, sizeof(*u));
}

/* One amqp:// URL into elem (a struct oq_amqp_url). */
static int amqp_url_parse_one(const char *url, void *elem, char *err, size_t errlen)
{
    struct oq_amqp_url *out = elem;
    int rc = OQ_ENOMEM;
    struct amqp_connection_info info;
    char *scratch = strdup(url); /* amqp_parse_url decodes in place */

    memset(out, 0, sizeof(*out));
    if (scratch == NULL)
        goto out;
    if (amqp_parse_url(scratch, &info) != AMQP_STATUS_OK) {
        snprintf(err, errlen,
                 "expected amqp://user:password@host:port/vhost or amqps://..., and this does "
                 "not parse");
        rc = OQ_EINVAL;
        goto out;
    }
    if (info.port < 1 || info.port > 65535) { /* amqp_parse_url takes ":0" */
        /* not echoed: a password with a raw comma, cut by the node list,
         * reads as host:port */
        snprintf(err, errlen, "port must be a number from 1 to 65535");
        rc = OQ_EINVAL;
        goto out;
    }
    /* "amqp://host/" leaves an empty vhost; every tool treats that as "/". */
    const char *vhost = (info.vhost && info.vhost[0] != '\0') ? info.vhost : "/";
    out->user = strdup(info.user);
    out->password = strdup(info.password);
    out->host = strdup(info.host);
    out->vhost = strdup(vhost);
    out->port = info.port;
    out->ssl = info.ssl;
    if (!out->user || !out->password || !out->host || !out->vhost) {
        oq_amqp_url_clear(out);
        goto out;
    }
    rc = 0;
out:
    free(scratch);
    return rc;
}

void oq_amqp_url_clear(struct oq_amqp_url *u)
{
    if (u == NULL)
        return;
    free(u->user);
    free(u->password);
    free(u->host);
    free(u->vhost);
    memset(u, 0, sizeof(*u));
}

/* Split a list of URLs at its commas into items[] (each strdup'd, spaces
 * around it trimmed). A comma inside one URL must be percent-encoded, so
 * a plain split is exact. Returns 0, OQ_ENOMEM or OQ_EINVAL. */
static int split_list(const char *text, char **items, size_t max, size_t *n, char *err,
                      size_t errlen)
{
    *n = 0;
    for (const char *s = text;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0) {
            snprintf(err, errlen,
                     "node %zu of the list is empty (expected URLs separated by commas)", *n + 1);
            return OQ_EINVAL;
        }
        if (*n == max) {
            snprintf(err, errlen, "more than %zu nodes in the list", max);
            return OQ_EINVAL;
        }
        if ((items[*n] = strndup(s, len)) == NULL)
            return OQ_ENOMEM;
        (*n)++;
        if (comma == NULL)
            return 0;
        s = comma + 1;
    }
}

static void free_items(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
}

/* "node 2 of 3: why", so a person knows which URL of the list is wrong;
 * a single URL keeps its message as it was. */
static void name_node(char *err, size_t errlen, size_t i, size_t n)
{
    char why[OQ_ERRLEN];
    if (n < 2)
        return;
    snprintf(why, sizeof(why), "%s", err);
    snprintf(err, errlen, "node %zu of %zu: %s", i + 1, n, why);
}

/* What reading one kind of URL list needs: parse an element, check that
 * a later one agrees with the first (one user, one database), clear one. */
struct url_kind {
    size_t size;
    int (*parse)(const char *url, void *elem, char *err, size_t errlen);
    int (*agrees)(const void *first, const void *elem, size_t i, size_t n, char *err,
                  size_t errlen);
    void (*clear)(void *elem);
};

/* Every URL of the list into elems[0..*count); on failure none is kept. */
static int parse_list(const char *list, const struct url_kind *k, void *elems, size_t *count,
                      char *err, size_t errlen)
{
    char *items[OQ_URL_LIST_MAX];
    size_t n = 0;
    *count = 0;
    int rc = split_list(list, items, OQ_URL_LIST_MAX, &n, err, errlen);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        void *elem = (char *)elems + i * k->size;
        rc = k->parse(items[i], elem, err, errlen);
        if (rc != 0) {
            name_node(err, errlen, i, n);
            break;
        }
        *count = i + 1;
        rc = k->agrees(elems, elem, i, n, err, errlen);
    }
    free_items(items, n);
    if (rc != 0) {
        for (size_t i = 0; i < *count; i++)
            k->clear((char *)elems + i * k->size);
        *count = 0;
    }
    return rc;
}

/* The first URL of a list, for the callers that need one node only. */
static int parse_first(const char *list, const struct url_kind *k, void *out, char *err,
                       size_t errlen)
{
    size_t n = 0;
    char *all = calloc(OQ_URL_LIST_MAX, k->size);
    memset(out, 0, k->size);
    if (all == NULL)
        return OQ_ENOMEM;
    int rc = parse_list(list, k, all, &n, err, errlen);
    if (rc == 0) {
        memcpy(out, all, k->size); /* taken: the rest are freed */
        for (size_t i = 1; i < n; i++)
            k->clear(all + i * k->size);
    }
    free(all);
    return rc;
}

/* The user is orderq's identity: user_id on what it publishes, and the one
 * whose x-orderq-* headers it trusts (trust.c). */
static int amqp_agrees(const void *first_elem, const void *elem, size_t i, size_t n, char *err,
                       size_t errlen)
{
    const struct oq_amqp_url *first = first_elem, *u = elem;
    (void)n;
    if (strcmp(u->user, first->user) != 0) {
        snprintf(err, errlen,
                 "every node must log in as the same user (orderq's identity for user_id), "
                 "but node 1 is \"%s\" and node %zu is \"%s\"",
                 first->user, i + 1, u->user);
        return OQ_EINVAL;
    }
    if (strcmp(u->vhost, first->vhost) != 0) {
        snprintf(err, errlen,
                 "every node must name the same vhost (one cluster, one set of queues), but "
                 "node 1 has \"%s\" and node %zu has \"%s\"",
                 first->vhost, i + 1, u->vhost);
        return OQ_EINVAL;
    }
    return 0;
}

static void amqp_clear_elem(void *elem)
{
    oq_amqp_url_clear(elem);
}

static const struct url_kind amqp_kind = {sizeof(struct oq_amqp_url), amqp_url_parse_one,
                                          amqp_agrees, amqp_clear_elem};

static int mysql_agrees(const void *first_elem, const void *elem, size_t i, size_t n, char *err,
                        size_t errlen)
{
    const struct oq_mysql_url *first = first_elem, *h = elem;
    if (n > 1 && h->socket != NULL) {
        snprintf(err, errlen,
                 "node %zu of %zu has socket=, which names the one server on this host; with "
                 "several hosts, give each as host:port (mysql://user@127.0.0.1:3307/db)",
                 i + 1, n);
        return OQ_EINVAL;
    }
    if (strcmp(h->database, first->database) != 0) {
        snprintf(err, errlen,
                 "every host must name the same database (one ledger), but node 1 has \"%s\" "
                 "and node %zu has \"%s\"",
                 first->database, i + 1, h->database);
        return OQ_EINVAL;
    }
    return 0;
}

static void mysql_clear_elem(void *elem)
{
    oq_mysql_url_clear(elem);
}

static const struct url_kind mysql_kind = {sizeof(struct oq_mysql_url), mysql_url_parse_one,
                                           mysql_agrees, mysql_clear_elem};

int oq_amqp_nodes_parse(const char *list, struct oq_amqp_nodes *out, char *err, size_t errlen)
{
    return parse_list(list, &amqp_kind, out->node, &out->n, err, errlen);
}

void oq_amqp_nodes_clear(struct oq_amqp_nodes *nodes)
{
    if (nodes == NULL)
        return;
    for (size_t i = 0; i < nodes->n; i++)
        oq_amqp_url_clear(&nodes->node[i]);
    nodes->n = 0;
}

int oq_amqp_url_parse(const char *url, struct oq_amqp_url *out, char *err, size_t errlen)
{
    return parse_first(url, &amqp_kind, out, err, errlen);
}

int oq_mysql_hosts_parse(const char *list, struct oq_mysql_hosts *out, char *err, size_t errlen)
{
    return parse_list(list, &mysql_kind, out->host, &out->n, err, errlen);
}

void oq_mysql_hosts_clear(struct oq_mysql_hosts *hosts)
{
    if (hosts == NULL)
        return;
    for (size_t i = 0; i < hosts->n; i++)
        oq_mysql_url_clear(&hosts->host[i]);
    hosts->n = 0;
}

int oq_mysql_url_parse(const char *url, struct oq_mysql_url *out, char *err, size_t errlen)
{
    return parse_first(url, &mysql_kind, out, err, errlen);
}

int oq_url_check_scheme(const char *url, const char *schemes, char *err, size_t errlen)
{
    int rc = OQ_EINVAL, failed = 0;
    char *scheme = NULL, *host = NULL;
    CURLU *h = parse_with_curl(url, err, errlen);
    if (h == NULL)
        goto out;
    scheme = url_part(h, CURLUPART_SCHEME, 0, &failed);
    host = url_part(h, CURLUPART_HOST, 0, &failed);
    if (failed) {
        rc = OQ_ENOMEM;
        goto out;
    }
    size_t n = scheme ? strlen(scheme) : 0;
    for (const char *s = schemes; scheme != NULL && *s != '\0';) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == n && strncmp(s, scheme, n) == 0) {
            rc = 0;
            break;
        }
        s += len + (comma != NULL);
    }
    if (rc != 0)
        snprintf(err, errlen, "expected a URL with scheme %s, got \"%s\"", schemes,
                 scheme ? scheme : "");
    else if (host == NULL || *host == '\0') {
        snprintf(err, errlen, "the URL names no host");
        rc = OQ_EINVAL;
    }
out:
    free(scheme);
    free(host);
    curl_url_cleanup(h);
    return rc;
}

#define HIDDEN "***"

/* A piece of a URL that reads as a generated credential (Slack's and
 * Discord's path tokens, an API key as the user): 16 or more letters and
 * digits in a row, mixing both, or 32 or more characters mixing both.
 * Names made of words ("orderq-test-shop_5069") stay readable; a '/'
 * makes it a path, not a token. */
static int looks_like_token(const char *s, size_t n)
{
    int letters = 0, digits = 0, run_letters = 0, run_digits = 0, long_run = 0;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/')
            return 0;
        letters |= isalpha(c) != 0;
        digits |= isdigit(c) != 0;
        if (!isalnum(c)) {
            run = 0;
            run_letters = run_digits = 0;
            continue;
        }
        run++;
        run_letters |= isalpha(c) != 0;
        run_digits |= isdigit(c) != 0;
        long_run |= run >= 16 && run_letters && run_digits;
    }
    return long_run || (n >= 32 && letters && digits);
}

/* Query parameter names that carry credentials, matched anywhere in the
 * name, case-insensitively: api_key, access_token, X-Amz-Signature, sig. */
static int secret_param_name(const char *raw, size_t n)
{
    static const char *const words[] = {"token", "key", "secret", "pass",
                                        "pwd",   "sig", "auth",   "credential"};
    int outlen = 0;
    char *name = curl_easy_unescape(NULL, raw, (int)n, &outlen);
    int hit = name == NULL; /* cannot tell: treat as secret */
    for (size_t i = 0; !hit && i < sizeof(words) / sizeof(words[0]); i++)
        hit = strcasestr(name, words[i]) != NULL;
    curl_free(name);
    return hit;
}

/* Append n bytes to a growing string; 0 or OQ_ENOMEM. */
static int append(char **buf, size_t *len, const char *s, size_t n)
{
    char *grown = realloc(*buf, *len + n + 1);
    if (grown == NULL)
        return OQ_ENOMEM;
    memcpy(grown + *len, s, n);
    *len += n;
    grown[*len] = '\0';
    *buf = grown;
    return 0;
}

/* A copy of text (a path, or a query when `query`) with each piece between
 * seps that looks like a token replaced by HIDDEN. A query pair keeps its
 * name and loses its value when either looks secret: "api_key=***".
 * NULL when out of memory. */
static char *redact_pieces(const char *text, char sep, int query)
{
    char *out = NULL;
    size_t len = 0;
    int rc = append(&out, &len, "", 0);
    for (const char *p = text; rc == 0;) {
        const char *end = strchr(p, sep);
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = query ? memchr(p, '=', n) : NULL;
        const char *value = eq ? eq + 1 : p;
        size_t vlen = n - (size_t)(value - p);
        int hide = looks_like_token(value, vlen) ||
                   (eq != NULL && vlen > 0 && secret_param_name(p, (size_t)(eq - p)));
        if (hide && (rc = append(&out, &len, p, (size_t)(value - p))) == 0)
            rc = append(&out, &len, HIDDEN, strlen(HIDDEN));
        else if (!hide)
            rc = append(&out, &len, p, n);
        if (end == NULL)
            break;
        if (rc == 0)
            rc = append(&out, &len, &sep, 1);
        p = end + 1;
    }
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Replace a raw (still percent-encoded) part by redact_pieces' copy. */
static int redact_part(CURLU *h, CURLUPart part, char sep, int query)
{
    char *raw = NULL;
    CURLUcode got = curl_url_get(h, part, &raw, 0);
    if (got != CURLUE_OK)
        return got == CURLUE_OUT_OF_MEMORY ? OQ_ENOMEM : 0; /* absent: nothing to hide */
    char *shown = redact_pieces(raw, sep, query);
    int rc = shown != NULL && curl_url_set(h, part, shown, 0) == CURLUE_OK ? 0 : OQ_ENOMEM;
    free(shown);
    curl_free(raw);
    return rc;
}

/* The password becomes HIDDEN. The user is a name that tells accounts
 * apart in what people read, and stays, unless it looks like a token, or
 * it came alone in an http(s) URL: "https://TOKEN@host" is how a token is
 * put in Basic auth. Alone in amqp, mysql or smtp it is a login without a
 * password (unix_socket, EXTERNAL): still a name. */
static int redact_userinfo(CURLU *h)
{
    char *user = NULL, *password = NULL, *scheme = NULL;
    int rc = 0;
    curl_url_get(h, CURLUPART_USER, &user, 0);
    curl_url_get(h, CURLUPART_PASSWORD, &password, 0);
    curl_url_get(h, CURLUPART_SCHEME, &scheme, 0);
    int has_password = password != NULL && password[0] != '\0';
    int has_user = user != NULL && user[0] != '\0';
    int http = scheme != NULL && (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    if (has_user && ((http && !has_password) || looks_like_token(user, strlen(user))) &&
        curl_url_set(h, CURLUPART_USER, HIDDEN, 0) != CURLUE_OK)
        rc = OQ_ENOMEM;
    if (password != NULL &&
        curl_url_set(h, CURLUPART_PASSWORD, has_password ? HIDDEN : NULL, 0) != CURLUE_OK)
        rc = OQ_ENOMEM;
    curl_free(user);
    curl_free(password);
    curl_free(scheme);
    return rc;
}

char *oq_url_redact(const char *url)
{
    char *out = NULL, *curl_owned = NULL, *fragment = NULL;
    CURLU *h = NULL;
    if (url[0] == '\0')
        return strdup(""); /* an optional URL left unset */
    if ((h = curl_url()) == NULL)
        return NULL;
    if (curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS) !=
        CURLUE_OK) {
        out = strdup(HIDDEN); /* what cannot be parsed cannot be shown safely */
        goto out;
    }
    if (curl_url_get(h, CURLUPART_FRAGMENT, &fragment, 0) == CURLUE_OK &&
        curl_url_set(h, CURLUPART_FRAGMENT, HIDDEN, 0) != CURLUE_OK)
        goto out;
    if (redact_userinfo(h) != 0 || redact_part(h, CURLUPART_PATH, '/', 0) != 0 ||
        redact_part(h, CURLUPART_QUERY, '&', 1) != 0 ||
        curl_url_get(h, CURLUPART_URL, &curl_owned, 0) != CURLUE_OK)
        goto out; /* fail closed: NULL, never the original */
    out = strdup(curl_owned);
out:
    curl_free(fragment);
    curl_free(curl_owned);
    curl_url_cleanup(h);
    return out;
}

int oq_hostport_parse(const char *text, char **host, unsigned *port, char *err, size_t errlen)
{
    const char *colon = NULL, *hstart = text;
    size_t hlen = 0;

    *host = NULL;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, errlen, "expected [ipv6]:port, got \"%s\"", text);
            return OQ_EINVAL;
        }
        hstart = text + 1;
        hlen = (size_t)(close - hstart);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL || colon == text) {
            snprintf(err, errlen, "expected host:port, got \"%s\"", text);
            return OQ_EINVAL;
        }
        hlen = (size_t)(colon - text);
    }
    if (parse_port(colon + 1, port, err, errlen) != 0) {
        snprintf(err, errlen, "port must be a number from 1 to 65535, got \"%s\"", colon + 1);
        return OQ_EINVAL;
    }
    *host = strndup(hstart, hlen);
    return *host ? 0 : OQ_ENOMEM;
}

/* "localhost", 127.0.0.0/8 or ::1: traffic that never leaves the host. */
static int host_is_loopback(const char *host)
{
    unsigned char addr[16];
    char bare[64];
    size_t n = strlen(host);
    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(bare)) {
        snprintf(bare, sizeof(bare), "%.*s", (int)(n - 2), host + 1);
        return inet_pton(AF_INET6, bare, addr) == 1 &&
               memcmp(addr, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
    }
    return inet_pton(AF_INET, host, addr) == 1 && addr[0] == 127;
}

int oq_url_is_loopback(const char *url)
{
    int failed = 0, yes = 0;
    char err[128];
    CURLU *h = parse_with_curl(url, err, sizeof(err));
    char *host = h ? url_part(h, CURLUPART_HOST, 0, &failed) : NULL;
    yes = host != NULL && host_is_loopback(host);
    free(host);
    curl_url_cleanup(h);
    return yes;
}

int oq_url_is_cleartext_remote(const char *url, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncasecmp(url, scheme, n) == 0 && strncmp(url + n, "://", 3) == 0 &&
           !oq_url_is_loopback(url);
}

char *oq_url_redact_list(const char *list)
{
    char *items[OQ_URL_LIST_MAX];
    char err[OQ_ERRLEN];
    size_t n = 0, len = 0;
    char *out = NULL;
    int rc = split_list(list, items, OQ_URL_LIST_MAX, &n, err, sizeof(err));
    if (rc == OQ_ENOMEM)
        goto out;
    if (rc != 0) { /* not a list it can read: redacted whole, as one URL */
        out = oq_url_redact(list);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strstr(items[i], "://") == NULL) {
            /* "amqp://u:12,34@h/" split at its raw comma: the first piece
             * reads as host u, port 12, which would show the password */
            free(out);
            out = strdup(HIDDEN);
            goto out;
        }
        char *shown = oq_url_redact(items[i]);
        rc = shown == NULL || (i > 0 && append(&out, &len, ",", 1) != 0) ||
             append(&out, &len, shown, strlen(shown)) != 0;
        free(shown);
        if (rc) {
            free(out);
            out = NULL;
            goto out;
        }
    }
out:
    free_items(items, n);
    return out;
}

int oq_url_list_is_loopback(const char *list)
{
    char *items[OQ_URL_LIST_MAX];
    char err[OQ_ERRLEN];
    size_t n = 0;
    int yes = split_list(list, items, OQ_URL_LIST_MAX, &n, err, sizeof(err)) == 0;
    for (size_t i = 0; yes && i < n; i++)
        yes = oq_url_is_loopback(items[i]);
    free_items(items, n);
    return yes;
}

int oq_url_list_is_cleartext_remote(const char *list, const char *scheme)
{
    char *items[OQ_URL_LIST_MAX];
    char err[OQ_ERRLEN];
    size_t n = 0;
    int yes = 0;
    if (split_list(list, items, OQ_URL_LIST_MAX, &n, err, sizeof(err)) != 0)
        yes = oq_url_is_cleartext_remote(list, scheme);
    for (size_t i = 0; !yes && i < n; i++)
        yes = oq_url_is_cleartext_remote(items[i], scheme);
    free_items(items, n);
    return yes;
}
