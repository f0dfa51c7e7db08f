/* url.h - parse and redact the URLs orderq is configured with */
#ifndef ORDERQ_URL_H
#define ORDERQ_URL_H

#include "orderq/common.h"

/* Debian's bundle of the system's CAs: what TLS trusts when no CA file is set. */
#define OQ_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* How much TLS a MySQL connection needs (query parameter ssl=). required
 * only encrypts; verify_ca also checks the certificate chains to ssl_ca;
 * verify_identity also checks it names the host connected to. */
enum oq_mysql_ssl {
    OQ_MYSQL_SSL_DISABLED = 0,
    OQ_MYSQL_SSL_REQUIRED,
    OQ_MYSQL_SSL_VERIFY_CA,
    OQ_MYSQL_SSL_VERIFY_IDENTITY,
};

/* mysql://user:pass@host:port/database?socket=/path&ssl=verify_identity&ssl_ca=/ca.pem
 * Every string is owned by the struct; free with oq_mysql_url_clear(). */
struct oq_mysql_url {
    char *user;     /* NULL: the client library's default */
    char *password; /* NULL: none */
    char *host;     /* "localhost" with socket means the unix socket */
    char *database;
    char *socket;          /* NULL: TCP */
    unsigned port;         /* 0: default 3306 */
    enum oq_mysql_ssl ssl; /* ssl=; OQ_MYSQL_SSL_DISABLED when absent */
    char *ssl_ca;          /* ssl_ca=: PEM file; NULL: the system's CAs */
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

/* amqp_url and mysql_url may name several nodes of one cluster: URLs
 * separated by commas, spaces around them ignored (a comma inside one URL
 * is written %2C). At most this many. */
#define OQ_URL_LIST_MAX 16

/* The nodes of amqp_url, in the order given. */
struct oq_amqp_nodes {
    size_t n;
    struct oq_amqp_url node[OQ_URL_LIST_MAX];
};

/* The hosts of mysql_url, in the order given. */
struct oq_mysql_hosts {
    size_t n;
    struct oq_mysql_url host[OQ_URL_LIST_MAX];
};

/* Parse amqp_url's list. Every node must log in as the same user (it is
 * orderq's identity for user_id, see trust.h) and name the same vhost.
 * Returns 0, OQ_ENOMEM or OQ_EINVAL with the reason ("node 2 of 3: ...").
 * Free with oq_amqp_nodes_clear(). */
OQ_WUR int oq_amqp_nodes_parse(const char *list, struct oq_amqp_nodes *out, char *err,
                               size_t errlen);
void oq_amqp_nodes_clear(struct oq_amqp_nodes *nodes);

/* Parse mysql_url's list. Every host must name the same database; socket=
 * is refused when there are several (it names the one local server).
 * Returns 0, OQ_ENOMEM or OQ_EINVAL with the reason. */
OQ_WUR int oq_mysql_hosts_parse(const char *list, struct oq_mysql_hosts *out, char *err,
                                size_t errlen);
void oq_mysql_hosts_clear(struct oq_mysql_hosts *hosts);

/* Parse a MySQL URL (or a list: then the first host, all checked).
 * Returns 0, or OQ_EINVAL with the reason in err
 * (the URL itself is never copied into err: it may hold a password). */
OQ_WUR int oq_mysql_url_parse(const char *url, struct oq_mysql_url *out, char *err, size_t errlen);
void oq_mysql_url_clear(struct oq_mysql_url *u);

/* Parse an AMQP URL (or a list: then the first node, all checked, so its
 * user and vhost are every node's). Returns 0, OQ_ENOMEM or OQ_EINVAL
 * with the reason. */
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

/* A list of URLs (amqp_url, mysql_url) as it may be shown: each URL
 * through oq_url_redact, joined by ",". NULL only when out of memory. */
char *oq_url_redact_list(const char *list);

/* oq_url_is_loopback for every URL of a list. */
int oq_url_list_is_loopback(const char *list);

/* oq_url_is_cleartext_remote for any URL of a list. */
int oq_url_list_is_cleartext_remote(const char *list, const char *scheme);

/* "host:port" or "[v6]:port" into a host string (caller frees) and port.
 * Returns 0 or OQ_EINVAL with the reason. */
OQ_WUR int oq_hostport_parse(const char *text, char **host, unsigned *port, char *err,
                             size_t errlen);

/* 1 when url parses and its host is loopback ("localhost", 127.0.0.0/8,
 * [::1]): traffic to it never leaves this host. 0 otherwise. */
int oq_url_is_loopback(const char *url);

/* 1 when url uses scheme (e.g. "http", "smtp") and its host is not
 * loopback: what it carries crosses a network in clear unless upgraded. */
int oq_url_is_cleartext_remote(const char *url, const char *scheme);

#endif
