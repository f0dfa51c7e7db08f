/* url.h - parse and redact the URLs orderq is configured with */
#ifndef ORDERQ_URL_H
#define ORDERQ_URL_H

#include "orderq/common.h"

/* mysql://user:pass@host:port/database?socket=/path&ssl=required
 * Every string is owned by the struct; free with oq_mysql_url_clear(). */
struct oq_mysql_url {
    char *user;     /* NULL: the client library's default */
    char *password; /* NULL: none */
    char *host;     /* "localhost" with socket means the unix socket */
    char *database;
    char *socket;  /* NULL: TCP */
    unsigned port; /* 0: default 3306 */
    int ssl_required;
};

/* amqp://user:pass@host:port/vhost (amqps:// for TLS), parsed by
 * librabbitmq's amqp_parse_url. An empty path means vhost "/". */
struct oq_amqp_url {
    char *user;
    char *password;
    char *host;
    char *vhost;
    int port;
    int ssl;
};

/* Parse a MySQL URL. Returns 0, or OQ_EINVAL with the reason in err
 * (the URL itself is never copied into err: it may hold a password). */
OQ_WUR int oq_mysql_url_parse(const char *url, struct oq_mysql_url *out, char *err, size_t errlen);
void oq_mysql_url_clear(struct oq_mysql_url *u);

/* Parse an AMQP URL. Returns 0, OQ_ENOMEM or OQ_EINVAL with the reason. */
OQ_WUR int oq_amqp_url_parse(const char *url, struct oq_amqp_url *out, char *err, size_t errlen);
void oq_amqp_url_clear(struct oq_amqp_url *u);

/* Check that url parses and uses one of the comma-separated schemes
 * ("smtp,smtps"). Returns 0 or OQ_EINVAL with the reason. */
OQ_WUR int oq_url_check_scheme(const char *url, const char *schemes, char *err, size_t errlen);

/* url as it may be shown to people, in logs, results and dead letters (the
 * caller frees it); the one redaction every such text goes through:
 * - the password becomes "***"; the user too when it looks like a token,
 *   or came without a password in an http(s) URL (https://TOKEN@host);
 * - a query parameter whose name holds token, key, secret, pass, pwd, sig,
 *   auth or credential (any case) keeps its name and loses its value;
 * - a path segment or query value that looks like a generated token (16 or
 *   more letters and digits in a row mixing both, or 32 or more characters
 *   mixing both; no '/') becomes "***";
 * - a fragment becomes "***".
 * Text curl cannot parse as a URL comes back as "***" whole. "" stays "".
 * NULL only when out of memory. */
char *oq_url_redact(const char *url);

/* "host:port" or "[v6]:port" into a host string (caller frees) and port.
 * Returns 0 or OQ_EINVAL with the reason. */
OQ_WUR int oq_hostport_parse(const char *text, char **host, unsigned *port, char *err,
                             size_t errlen);

#endif
