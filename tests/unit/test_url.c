/* test_url.c - MySQL and AMQP URL parsing, redaction, host:port */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/url.h"

static char err[512];

static void mysql_socket_url(void **state)
{
    (void)state;
    struct oq_mysql_url u;
    assert_int_equal(
        oq_mysql_url_parse("mysql://root@localhost/orderq?socket=/run/mysqld/mysqld.sock", &u, err,
                           sizeof(err)),
        0);
    assert_string_equal(u.user, "root");
    assert_null(u.password);
    assert_string_equal(u.host, "localhost");
    assert_string_equal(u.database, "orderq");
    assert_string_equal(u.socket, "/run/mysqld/mysqld.sock");
    assert_int_equal(u.port, 0);
    oq_mysql_url_clear(&u);
}

static void mysql_tcp_url_with_encoded_password(void **state)
{
    (void)state;
    struct oq_mysql_url u;
    assert_int_equal(
        oq_mysql_url_parse("mysql://app:p%40ss%3Aw0rd@db.example:3307/shop?ssl=required", &u, err,
                           sizeof(err)),
        0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "p@ss:w0rd");
    assert_string_equal(u.host, "db.example");
    assert_int_equal(u.port, 3307);
    assert_string_equal(u.database, "shop");
    assert_null(u.socket);
    assert_int_equal(u.ssl, OQ_MYSQL_SSL_REQUIRED);
    oq_mysql_url_clear(&u);
}

static void mysql_ipv6_host(void **state)
{
    (void)state;
    struct oq_mysql_url u;
    assert_int_equal(oq_mysql_url_parse("mysql://app@[::1]:3306/orderq", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 3306);
    oq_mysql_url_clear(&u);
}

static void mysql_bad_urls(void **state)
{
    (void)state;
    struct oq_mysql_url u;
    assert_int_equal(oq_mysql_url_parse("postgres://h/db", &u, err, sizeof(err)), OQ_EINVAL);
    assert_non_null(strstr(err, "mysql://"));
    assert_int_equal(oq_mysql_url_parse("mysql://h", &u, err, sizeof(err)), OQ_EINVAL);
    assert_non_null(strstr(err, "one database"));
    assert_int_equal(oq_mysql_url_parse("mysql://h/a/b", &u, err, sizeof(err)), OQ_EINVAL);
    assert_int_equal(oq_mysql_url_parse("mysql://h/db?sokcet=/x", &u, err, sizeof(err)), OQ_EINVAL);
    assert_non_null(strstr(err, "sokcet"));
    assert_int_equal(oq_mysql_url_parse("mysql://h/db?ssl=maybe", &u, err, sizeof(err)), OQ_EINVAL);
    assert_int_equal(oq_mysql_url_parse("not a url", &u, err, sizeof(err)), OQ_EINVAL);
    assert_int_equal(oq_mysql_url_parse("mysql://u:topsecret@h:99999/db", &u, err, sizeof(err)),
                     OQ_EINVAL);
    assert_null(strstr(err, "topsecret"));
}

static void amqp_urls(void **state)
{
    (void)state;
    struct oq_amqp_url u;
    assert_int_equal(oq_amqp_url_parse("amqp://guest:guest@127.0.0.1:5672/", &u, err, sizeof(err)),
                     0);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 5672);
    assert_string_equal(u.vhost, "/"); /* empty path means the default vhost */
    assert_int_equal(u.ssl, 0);
    oq_amqp_url_clear(&u);

    assert_int_equal(
        oq_amqp_url_parse("amqps://app:pw@mq.example/shop%2Fprod", &u, err, sizeof(err)), 0);
    assert_string_equal(u.vhost, "shop/prod");
    assert_int_equal(u.port, 5671);
    assert_int_equal(u.ssl, 1);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "pw");
    oq_amqp_url_clear(&u);

    assert_int_equal(oq_amqp_url_parse("amqp://h/%2f", &u, err, sizeof(err)), 0);
    assert_string_equal(u.vhost, "/");
    oq_amqp_url_clear(&u);

    assert_int_equal(oq_amqp_url_parse("http://h/", &u, err, sizeof(err)), OQ_EINVAL);
    assert_int_equal(oq_amqp_url_parse("amqp://h:notaport/", &u, err, sizeof(err)), OQ_EINVAL);
    /* found by tests/fuzz/fuzz_url: amqp_parse_url takes port 0 */
    assert_int_equal(oq_amqp_url_parse("amqp://h:0/", &u, err, sizeof(err)), OQ_EINVAL);
    assert_string_equal(err, "port must be a number from 1 to 65535");
}

static void redaction(void **state)
{
    (void)state;
    char *r = oq_url_redact("amqp://guest:guest@127.0.0.1:5672/");
    assert_string_equal(r, "amqp://guest:***@127.0.0.1:5672/");
    free(r);
    r = oq_url_redact("mysql://root@localhost/orderq?socket=/run/mysqld/mysqld.sock");
    /* a user alone in a MySQL URL is a login without a password: a name */
    assert_string_equal(r, "mysql://root@localhost/orderq?socket=/run/mysqld/mysqld.sock");
    free(r);
    r = oq_url_redact("smtps://u:p%40ss@smtp.example:465");
    assert_null(strstr(r, "p%40ss"));
    assert_non_null(strstr(r, "u:***@smtp.example"));
    free(r);
    /* curl refuses the space: the whole value is hidden, nothing guessed */
    r = oq_url_redact("amqp://u:pa ss@h/");
    assert_string_equal(r, "***");
    free(r);
    r = oq_url_redact("amqp://u:p@ss w@h/vhost@x");
    assert_string_equal(r, "***");
    free(r);
    r = oq_url_redact("u:topsecret@h"); /* no scheme: not a URL curl reads */
    assert_string_equal(r, "***");
    free(r);
    r = oq_url_redact("");
    assert_string_equal(r, "");
    free(r);
}

/* Redact one URL and check that the secret is gone and `kept` is there. */
static void redacts(const char *url, const char *secret, const char *kept)
{
    char *r = oq_url_redact(url);
    assert_non_null(r);
    if (strstr(r, secret) != NULL || (kept != NULL && strstr(r, kept) == NULL))
        fail_msg("redacting %s gave %s (secret %s, expected to keep %s)", url, r, secret,
                 kept ? kept : "-");
    free(r);
}

/* A 3 KB password: the whole value is redacted, never a cut of it. */
static void long_password(void **state)
{
    (void)state;
    char url[4096], pw[3001];
    memset(pw, 'A', 3000);
    memcpy(pw + 2990, "CaNaRy0042", 10);
    pw[3000] = '\0';
    snprintf(url, sizeof(url), "amqp://app:%s@mq.example:5672/", pw);
    redacts(url, "AAAA", "amqp://app:***@mq.example:5672/");
}

static void userinfo_of_any_url(void **state)
{
    (void)state;
    /* the user stays beside a password: a name, not the credential */
    redacts("https://hook:CaNaRy-pw@h.example/x", "CaNaRy", "https://hook:***@h.example/x");
    /* a user without a password is the credential (https://TOKEN@host) */
    redacts("https://CaNaRy@h.example/x", "CaNaRy", "https://***@h.example/x");
    redacts("https://CaNaRy:@h.example/x", "CaNaRy", "https://***@h.example/x");
    /* GitHub's form: the token as user, a fixed word as password */
    redacts("https://ghp_16C7e42F292c6912E7710c838347Ae178B4a:x-oauth-basic@github.com/",
            "ghp_16C7e42F", "https://***:***@github.com/");
    redacts("mysql://root@localhost/orderq?socket=/run/mysqld/mysqld.sock", "***",
            "mysql://root@localhost/orderq?socket=/run/mysqld/mysqld.sock");
    redacts("smtp://ghp16C7e42F292c6912E7710c8@smtp.example", "ghp16C7e", "smtp://***@smtp");
}

static void secret_query_parameters(void **state)
{
    (void)state;
    redacts("https://h.example/hook?token=CaNaRy&x=1", "CaNaRy", "?token=***&x=1");
    redacts("https://h.example/hook?API_KEY=CaNaRy", "CaNaRy", "?API_KEY=***");
    redacts("https://h.example/hook?access_token=CaNaRy", "CaNaRy", "access_token=***");
    redacts("https://h.example/hook?client_secret=CaNaRy", "CaNaRy", "client_secret=***");
    redacts("https://h.example/hook?Password=CaNaRy", "CaNaRy", "Password=***");
    redacts("https://h.example/hook?X-Amz-Signature=CaNaRy", "CaNaRy", "X-Amz-Signature=***");
    redacts("https://h.example/hook?sig=CaNaRy", "CaNaRy", "sig=***");
    redacts("https://h.example/hook?a%5Fkey=CaNaRy", "CaNaRy", "key=***"); /* encoded name */
    /* a value that looks generated, whatever its name */
    redacts("https://h.example/hook?c=8f2b9c1d4e5a6b7c", "8f2b9c1d4e5a6b7c", "?c=***");
    /* what is not secret stays readable */
    redacts("https://h.example/hook?event=order.paid&retries=3", "***",
            "?event=order.paid&retries=3");
    redacts("mysql://app:pw@db/orderq?socket=/var/run/mysqld2/mysqld.sock&ssl=required", "pw@",
            "?socket=/var/run/mysqld2/mysqld.sock&ssl=required");
    redacts("https://h.example/hook#access_token=CaNaRy", "CaNaRy", "hook#***");
}

static void tokens_in_the_path(void **state)
{
    (void)state;
    /* Slack's and Discord's incoming webhooks */
    redacts("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX1",
            "XXXXXXXXXXXX", "/services/T00000000/B00000000/***");
    redacts("https://discord.com/api/webhooks/123456789012345678/Ab3dEfGhIjKlMnOpQrStUv", "Ab3dEf",
            "/api/webhooks/123456789012345678/***");
    redacts("https://discord.com/api/webhooks/1/mH7sL9xk2-Qw_Er5Ty8UiOp3AsDf6GhJkLzXc", "mH7sL9",
            "/api/webhooks/1/***");
    /* names made of words, and ids of digits only, stay readable */
    redacts("https://shop.example/rest/V1/orders/9200000217", "***",
            "https://shop.example/rest/V1/orders/9200000217");
    redacts("amqp://app:pw@mq.example/orderq-test-canary_5069", "pw@",
            "amqp://app:***@mq.example/orderq-test-canary_5069");
}

static void scheme_check(void **state)
{
    (void)state;
    assert_int_equal(oq_url_check_scheme("smtp://127.0.0.1:1025", "smtp,smtps", err, sizeof(err)),
                     0);
    assert_int_equal(oq_url_check_scheme("smtps://mail.example", "smtp,smtps", err, sizeof(err)),
                     0);
    assert_int_equal(oq_url_check_scheme("http://mail.example", "smtp,smtps", err, sizeof(err)),
                     OQ_EINVAL);
    assert_non_null(strstr(err, "smtp,smtps"));
}

static void host_port(void **state)
{
    (void)state;
    char *host = NULL;
    unsigned port = 0;
    assert_int_equal(oq_hostport_parse("127.0.0.1:9464", &host, &port, err, sizeof(err)), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 9464);
    free(host);
    assert_int_equal(oq_hostport_parse("[::1]:80", &host, &port, err, sizeof(err)), 0);
    assert_string_equal(host, "::1");
    free(host);
    assert_int_equal(oq_hostport_parse("localhost", &host, &port, err, sizeof(err)), OQ_EINVAL);
    assert_int_equal(oq_hostport_parse("h:0", &host, &port, err, sizeof(err)), OQ_EINVAL);
    assert_int_equal(oq_hostport_parse("h:65536", &host, &port, err, sizeof(err)), OQ_EINVAL);
    assert_int_equal(oq_hostport_parse(":80", &host, &port, err, sizeof(err)), OQ_EINVAL);
}

static void mysql_tls_modes(void **state)
{
    (void)state;
    struct oq_mysql_url u;
    assert_int_equal(oq_mysql_url_parse("mysql://h/db", &u, err, sizeof(err)), 0);
    assert_int_equal(u.ssl, OQ_MYSQL_SSL_DISABLED);
    assert_null(u.ssl_ca);
    oq_mysql_url_clear(&u);
    assert_int_equal(oq_mysql_url_parse("mysql://h/db?ssl=verify_identity&ssl_ca=%2Fetc%2Fca.pem",
                                        &u, err, sizeof(err)),
                     0);
    assert_int_equal(u.ssl, OQ_MYSQL_SSL_VERIFY_IDENTITY);
    assert_string_equal(u.ssl_ca, "/etc/ca.pem");
    oq_mysql_url_clear(&u);
    assert_int_equal(
        oq_mysql_url_parse("mysql://h/db?ssl_ca=/ca.pem&ssl=verify_ca", &u, err, sizeof(err)), 0);
    assert_int_equal(u.ssl, OQ_MYSQL_SSL_VERIFY_CA);
    oq_mysql_url_clear(&u);
    /* a CA that would not be used to verify anything is a mistake */
    assert_int_equal(
        oq_mysql_url_parse("mysql://h/db?ssl=required&ssl_ca=/ca.pem", &u, err, sizeof(err)),
        OQ_EINVAL);
    assert_non_null(strstr(err, "verify_ca"));
    assert_int_equal(oq_mysql_url_parse("mysql://h/db?ssl=verify", &u, err, sizeof(err)),
                     OQ_EINVAL);
    assert_non_null(strstr(err, "verify_identity"));
}

static void loopback_hosts(void **state)
{
    (void)state;
    assert_true(oq_url_is_loopback("smtp://127.0.0.1:1025"));
    assert_true(oq_url_is_loopback("http://127.1.2.3/x"));
    assert_true(oq_url_is_loopback("http://LOCALHOST:8080/"));
    assert_true(oq_url_is_loopback("http://[::1]:8080/"));
    assert_false(oq_url_is_loopback("http://[::2]:8080/"));
    assert_false(oq_url_is_loopback("http://128.0.0.1/"));
    assert_false(oq_url_is_loopback("http://127.0.0.1.example/"));
    assert_false(oq_url_is_loopback("http://localhost.example/"));
    assert_false(oq_url_is_loopback("not a url"));
    assert_true(oq_url_is_cleartext_remote("http://shop.example/api", "http"));
    assert_false(oq_url_is_cleartext_remote("https://shop.example/api", "http"));
    assert_false(oq_url_is_cleartext_remote("http://127.0.0.1:8080/", "http"));
    assert_false(oq_url_is_cleartext_remote("", "http"));
    assert_true(oq_url_is_cleartext_remote("smtp://mail.example", "smtp"));
    assert_false(oq_url_is_cleartext_remote("smtps://mail.example", "smtp"));
}

/* amqp_url names a cluster's nodes, in the order to try them. */
static void amqp_node_lists(void **state)
{
    (void)state;
    struct oq_amqp_nodes n;
    assert_int_equal(oq_amqp_nodes_parse("amqp://u:p@127.0.0.1:5672/v, amqp://u:q@127.0.0.1:5673/v",
                                         &n, err, sizeof(err)),
                     0);
    assert_int_equal(n.n, 2);
    assert_int_equal(n.node[0].port, 5672);
    assert_int_equal(n.node[1].port, 5673);
    assert_string_equal(n.node[1].password, "q");
    assert_string_equal(n.node[1].vhost, "v");
    oq_amqp_nodes_clear(&n);
    assert_int_equal(oq_amqp_nodes_parse("amqp://u:p@h/", &n, err, sizeof(err)), 0);
    assert_int_equal(n.n, 1);
    oq_amqp_nodes_clear(&n);

    /* oq_amqp_url_parse of a list: the first node, every node checked */
    struct oq_amqp_url u;
    assert_int_equal(
        oq_amqp_url_parse("amqp://u:p@a:5672/v,amqp://u:p@b:5673/v", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "a");
    oq_amqp_url_clear(&u);
    assert_int_equal(
        oq_amqp_url_parse("amqp://u:p@a:5672/v,http://u:s3cr3t@b/", &u, err, sizeof(err)),
        OQ_EINVAL);
    assert_non_null(strstr(err, "node 2 of 2: expected amqp://"));
    assert_null(strstr(err, "s3cr3t"));
}

/* The user is orderq's identity for user_id: one for the whole cluster. */
static void amqp_nodes_refuse_mixed_users(void **state)
{
    (void)state;
    struct oq_amqp_nodes n;
    assert_int_equal(oq_amqp_nodes_parse("amqp://orderq:p@a/v,amqp://orderq:p@b/v,amqp://"
                                         "guest:guest@c/v",
                                         &n, err, sizeof(err)),
                     OQ_EINVAL);
    assert_non_null(strstr(err, "same user"));
    assert_non_null(strstr(err, "node 1 is \"orderq\" and node 3 is \"guest\""));
    assert_int_equal(n.n, 0);
    assert_int_equal(
        oq_amqp_nodes_parse("amqp://u:p@a/shop,amqp://u:p@b/other", &n, err, sizeof(err)),
        OQ_EINVAL);
    assert_non_null(strstr(err, "same vhost"));
    assert_int_equal(oq_amqp_nodes_parse("amqp://u:p@a/v,,amqp://u:p@b/v", &n, err, sizeof(err)),
                     OQ_EINVAL);
    assert_non_null(strstr(err, "node 2 of the list is empty"));
    assert_int_equal(oq_amqp_nodes_parse("amqp://u:p@a/v,", &n, err, sizeof(err)), OQ_EINVAL);
}

static void mysql_host_lists(void **state)
{
    (void)state;
    struct oq_mysql_hosts h;
    assert_int_equal(oq_mysql_hosts_parse("mysql://app:pw@127.0.0.1:3307/orderq,mysql://app:pw@"
                                          "127.0.0.1:3308/orderq",
                                          &h, err, sizeof(err)),
                     0);
    assert_int_equal(h.n, 2);
    assert_int_equal(h.host[0].port, 3307);
    assert_int_equal(h.host[1].port, 3308);
    oq_mysql_hosts_clear(&h);
    /* a socket names the one server on this host */
    assert_int_equal(oq_mysql_hosts_parse("mysql://app@127.0.0.1:3307/orderq,mysql://app@localhost/"
                                          "orderq?socket=/run/mysqld/mysqld.sock",
                                          &h, err, sizeof(err)),
                     OQ_EINVAL);
    assert_non_null(strstr(err, "node 2 of 2 has socket="));
    assert_non_null(strstr(err, "host:port"));
    assert_int_equal(
        oq_mysql_hosts_parse("mysql://app@a/orderq,mysql://app@b/other", &h, err, sizeof(err)),
        OQ_EINVAL);
    assert_non_null(strstr(err, "same database"));
    /* one host with a socket stays as it was */
    assert_int_equal(
        oq_mysql_hosts_parse("mysql://app@localhost/orderq?socket=/s", &h, err, sizeof(err)), 0);
    oq_mysql_hosts_clear(&h);
}

/* Each node's password is hidden: one curl parse of the whole list read
 * the second URL as the first one's path. */
static void list_redaction(void **state)
{
    (void)state;
    char *shown = oq_url_redact_list("amqp://u:s3cr3t-1@a:5672/v,amqp://u:s3cr3t-2@b:5673/v");
    assert_non_null(shown);
    assert_null(strstr(shown, "s3cr3t"));
    assert_non_null(strstr(shown, "u:***@a:5672"));
    assert_non_null(strstr(shown, ",amqp://u:***@b:5673"));
    free(shown);
    shown = oq_url_redact_list("mysql://app:s3cr3t@h/orderq");
    assert_string_equal(shown, "mysql://app:***@h/orderq");
    free(shown);
    /* a raw comma in a password: the pieces must not show it */
    shown = oq_url_redact_list("amqp://orderq:1234,x@mq.example/v");
    assert_string_equal(shown, "***");
    free(shown);
    struct oq_amqp_url u;
    char why[256];
    assert_int_equal(oq_amqp_url_parse("amqp://orderq:987654", &u, why, sizeof(why)), OQ_EINVAL);
    assert_null(strstr(why, "987654"));
    struct oq_mysql_url m;
    assert_int_not_equal(oq_mysql_url_parse("mysql://app:99999/db", &m, why, sizeof(why)), 0);
    assert_null(strstr(why, "99999"));
    assert_true(oq_url_list_is_loopback("amqp://u@127.0.0.1/,amqp://u@localhost:5673/"));
    assert_false(oq_url_list_is_loopback("amqp://u@127.0.0.1/,amqp://u@mq.example/"));
    assert_true(
        oq_url_list_is_cleartext_remote("amqp://u@127.0.0.1/,amqp://u@mq.example/", "amqp"));
    assert_false(
        oq_url_list_is_cleartext_remote("amqps://u@mq1.example/,amqps://u@mq2.example/", "amqp"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mysql_socket_url),
        cmocka_unit_test(mysql_tcp_url_with_encoded_password),
        cmocka_unit_test(mysql_bad_urls),
        cmocka_unit_test(mysql_ipv6_host),
        cmocka_unit_test(amqp_urls),
        cmocka_unit_test(redaction),
        cmocka_unit_test(long_password),
        cmocka_unit_test(userinfo_of_any_url),
        cmocka_unit_test(secret_query_parameters),
        cmocka_unit_test(tokens_in_the_path),
        cmocka_unit_test(scheme_check),
        cmocka_unit_test(host_port),
        cmocka_unit_test(mysql_tls_modes),
        cmocka_unit_test(loopback_hosts),
        cmocka_unit_test(amqp_node_lists),
        cmocka_unit_test(amqp_nodes_refuse_mixed_users),
        cmocka_unit_test(mysql_host_lists),
        cmocka_unit_test(list_redaction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
