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
}

static void redaction(void **state)
{
    (void)state;
    char *r = oq_url_redact("amqp://guest:guest@127.0.0.1:5672/");
    assert_string_equal(r, "amqp://guest:***@127.0.0.1:5672/");
    free(r);
    r = oq_url_redact("mysql://root@localhost/orderq?socket=/run/mysqld/mysqld.sock");
    assert_non_null(strstr(r, "root@localhost/orderq"));
    free(r);
    r = oq_url_redact("smtps://u:p%40ss@smtp.example:465");
    assert_null(strstr(r, "p%40ss"));
    assert_non_null(strstr(r, "u:***@smtp.example"));
    free(r);
    /* curl refuses the space; the password must still not show */
    r = oq_url_redact("amqp://u:pa ss@h/");
    assert_string_equal(r, "amqp://***@h/");
    free(r);
    r = oq_url_redact("amqp://u:p@ss w@h/vhost@x");
    assert_null(strstr(r, "ss w"));
    free(r);
    r = oq_url_redact("127.0.0.1:9464");
    assert_string_equal(r, "127.0.0.1:9464");
    free(r);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mysql_socket_url), cmocka_unit_test(mysql_tcp_url_with_encoded_password),
        cmocka_unit_test(mysql_bad_urls),   cmocka_unit_test(mysql_ipv6_host),
        cmocka_unit_test(amqp_urls),        cmocka_unit_test(redaction),
        cmocka_unit_test(scheme_check),     cmocka_unit_test(host_port),
        cmocka_unit_test(mysql_tls_modes),  cmocka_unit_test(loopback_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
