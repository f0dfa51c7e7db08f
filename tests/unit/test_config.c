/* test_config.c - the settings table: precedence, bounds, errors, redaction */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderq/config.h"

static char err[1024];

static int setup(void **state)
{
    *state = oq_config_new();
    err[0] = '\0';
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    oq_config_free(*state);
    return 0;
}

/* Write text to a temporary file; returns its path (static buffer). */
static const char *temp_file(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/orderq-test-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void defaults_are_the_documented_ones(void **state)
{
    struct oq_config *cfg = *state;
    assert_string_equal(cfg->amqp_url, "amqp://guest:guest@127.0.0.1:5672/");
    assert_string_equal(cfg->mysql_url,
                        "mysql://orderq@localhost/orderq?socket=/run/mysqld/mysqld.sock");
    assert_string_equal(cfg->smtp_url, "smtp://127.0.0.1:1025");
    assert_string_equal(cfg->http_addr, "127.0.0.1:9464");
    assert_string_equal(cfg->shop_exchange, "shop.events");
    assert_int_equal(cfg->prefetch, 1000);
    assert_int_equal(cfg->batch_size, 250);
    assert_int_equal(cfg->batch_window_ms, 5);
    assert_int_equal(cfg->max_attempts, 8);
    assert_int_equal(cfg->queue_type, OQ_QUEUE_QUORUM);
    assert_int_equal(cfg->n_retry_tiers, 6);
    assert_int_equal(cfg->retry_tiers_ms[0], 1000);
    assert_int_equal(cfg->retry_tiers_ms[5], 3600000);
}

static void file_then_env_then_flag(void **state)
{
    struct oq_config *cfg = *state;
    const char *path = temp_file("{\n  // comments are allowed\n  \"prefetch\": 100,\n"
                                 "  \"batch_size\": 50,\n  \"shop_exchange\": \"file.x\"\n}\n");
    const char *env[] = {"ORDERQ_PREFETCH=200", "ORDERQ_BATCH_SIZE=60", "PATH=/bin", NULL};

    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), 0);
    assert_int_equal(cfg->prefetch, 100);
    assert_string_equal(cfg->shop_exchange, "file.x");
    assert_int_equal(oq_config_load_env(cfg, env, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(cfg->prefetch, 200); /* env beats file */
    assert_int_equal(cfg->batch_size, 60);
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "300", OQ_SRC_FLAG, "--prefetch", err, sizeof(err)), 0);
    assert_int_equal(cfg->prefetch, 300);              /* flag beats env */
    assert_string_equal(cfg->shop_exchange, "file.x"); /* untouched by later sources */
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    unlink(path);

    /* `config show` names where each value came from */
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_int_equal(oq_config_show(cfg, f, 0), 0);
    fclose(f);
    assert_non_null(strstr(out, "--prefetch"));
    assert_non_null(strstr(out, "ORDERQ_BATCH_SIZE"));
    assert_non_null(strstr(out, path));
    free(out);
}

static void bounds_are_enforced_with_a_clear_message(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "0", OQ_SRC_FLAG, "--prefetch", err, sizeof(err)),
        OQ_ECONFIG);
    assert_string_equal(err,
                        "prefetch (--prefetch): expected an integer from 1 to 65535, got \"0\"");
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "65536", OQ_SRC_ENV, "ORDERQ_PREFETCH", err, sizeof(err)),
        OQ_ECONFIG);
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "12abc", OQ_SRC_ENV, "ORDERQ_PREFETCH", err, sizeof(err)),
        OQ_ECONFIG);
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "", OQ_SRC_ENV, "ORDERQ_PREFETCH", err, sizeof(err)),
        OQ_ECONFIG);
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "65535", OQ_SRC_ENV, "ORDERQ_PREFETCH", err, sizeof(err)),
        0);
    assert_int_equal(cfg->prefetch, 65535);
    /* a failed set leaves the old value */
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "-1", OQ_SRC_FLAG, "--prefetch", err, sizeof(err)),
        OQ_ECONFIG);
    assert_int_equal(cfg->prefetch, 65535);
}

static void bad_values_name_the_setting_and_source(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(
        oq_config_set(cfg, "log_level", "loud", OQ_SRC_ENV, "ORDERQ_LOG_LEVEL", err, sizeof(err)),
        OQ_ECONFIG);
    assert_string_equal(
        err, "log_level (ORDERQ_LOG_LEVEL): expected one of debug|info|warn|error, got \"loud\"");
    assert_int_equal(
        oq_config_set(cfg, "amqp_url", "http://x/", OQ_SRC_FLAG, "--amqp-url", err, sizeof(err)),
        OQ_ECONFIG);
    assert_non_null(strstr(err, "amqp_url (--amqp-url): expected amqp://"));
    assert_int_equal(
        oq_config_set(cfg, "mysql_url", "mysql://h/", OQ_SRC_FLAG, "--mysql-url", err, sizeof(err)),
        OQ_ECONFIG);
    assert_non_null(strstr(err, "one database"));
    assert_int_equal(
        oq_config_set(cfg, "http_addr", "nope", OQ_SRC_FLAG, "--http-addr", err, sizeof(err)),
        OQ_ECONFIG);
    assert_int_equal(oq_config_set(cfg, "shop_exchange", "a b", OQ_SRC_FLAG, "--shop-exchange", err,
                                   sizeof(err)),
                     OQ_ECONFIG);
    assert_int_equal(oq_config_set(cfg, "batch_window_ms", "11s", OQ_SRC_FLAG, "--batch-window-ms",
                                   err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "from 0ms to 10s"));
    assert_int_equal(
        oq_config_set(cfg, "retry_tiers", "5s,1s", OQ_SRC_FLAG, "--retry-tiers", err, sizeof(err)),
        OQ_ECONFIG);
    assert_non_null(strstr(err, "must grow"));
    assert_int_equal(oq_config_set(cfg, "dead_exchange", "amq.direct", OQ_SRC_FLAG,
                                   "--dead-exchange", err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "reserved by RabbitMQ"));
    assert_int_equal(oq_config_set(cfg, "prefech", "1", OQ_SRC_FLAG, "--prefech", err, sizeof(err)),
                     OQ_ENOTFOUND);
    assert_non_null(strstr(err, "did you mean \"prefetch\""));
}

static void durations_and_tiers(void **state)
{
    struct oq_config *cfg = *state;
    int64_t ms = 0;
    assert_int_equal(oq_duration_parse("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(oq_duration_parse("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(oq_duration_parse("180d", &ms), 0);
    assert_int_equal(ms, 180LL * 86400000);
    assert_int_equal(oq_duration_parse("15", &ms), 0);
    assert_int_equal(ms, 15);
    assert_int_equal(oq_duration_parse("-1s", &ms), OQ_EINVAL);
    assert_int_equal(oq_duration_parse("1y", &ms), OQ_EINVAL);
    assert_int_equal(oq_duration_parse("99999999999999999999s", &ms), OQ_EINVAL);
    char buf[32];
    oq_duration_format(120000, buf, sizeof(buf));
    assert_string_equal(buf, "2m");
    oq_duration_format(1500, buf, sizeof(buf));
    assert_string_equal(buf, "1500ms");

    assert_int_equal(
        oq_config_set(cfg, "retry_tiers", "100ms, 200ms,1s", OQ_SRC_FLAG, "--x", err, sizeof(err)),
        0);
    assert_int_equal(cfg->n_retry_tiers, 3);
    assert_int_equal(cfg->retry_tiers_ms[1], 200);
    const char *path = temp_file("{\"retry_tiers\": [\"1s\", \"3s\"], \"batch_window_ms\": 7}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), 0);
    unlink(path);
    assert_int_equal(cfg->n_retry_tiers, 2);
    assert_int_equal(cfg->retry_tiers_ms[1], 3000);
    assert_int_equal(cfg->batch_window_ms, 7);
}

static void file_errors_carry_line_and_column(void **state)
{
    struct oq_config *cfg = *state;
    const char *path = temp_file("{\n  \"prefetch\": \"many\"\n}");
    char want[128];
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    snprintf(want, sizeof(want), "prefetch (%s:2:", path);
    assert_non_null(strstr(err, want));
    unlink(path);

    path = temp_file("{\"prefetch\": 1,\n \"shop_exchang\": \"x\"}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, ":2:"));
    assert_non_null(strstr(err, "did you mean \"shop_exchange\""));
    unlink(path);

    path = temp_file("{\"prefetch\": 1,");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "not valid JSON"));
    unlink(path);

    path = temp_file("{\n\n\n \"heartbeat_s\": 99");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, ":4:")); /* premature end: reported where the file ends */
    assert_non_null(strstr(err, "premature EOF"));
    unlink(path);

    path = temp_file(" \n ");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "empty file"));
    unlink(path);

    path = temp_file("[1, 2]");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "expected an object of settings"));
    unlink(path);

    path = temp_file("{\"prefetch\": 1.5}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "expected an integer"));
    unlink(path);

    path = temp_file("{\"amqp_url\": 5}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "amqp_url ("));
    assert_non_null(strstr(err, "expected a string"));
    unlink(path);

    assert_int_equal(oq_config_load_file(cfg, "/nonexistent/orderq.json", err, sizeof(err)),
                     OQ_EIO);
    assert_non_null(strstr(err, "/nonexistent/orderq.json"));
}

/* intake is JSON: an object in the file, its text in the environment;
 * checked when set, naming the place. */
static void intake_as_an_object_or_text(void **state)
{
    struct oq_config *cfg = *state;
    static const char file[] = "{\"prefetch\": 7, // the shop's own format\n"
                               " \"intake\": {\"order.processing\": {\"format\": \"magento\",\n"
                               "   \"codes\": [\"sales.order.paid\"]}},\n"
                               " \"batch_size\": 5}";
    assert_int_equal(oq_config_load_text(cfg, "a.json", file, strlen(file), err, sizeof(err)), 0);
    assert_non_null(strstr(cfg->intake, "\"sales.order.paid\""));
    assert_int_equal(cfg->prefetch, 7);
    assert_int_equal(cfg->batch_size, 5); /* the keys after it still read */
    assert_string_equal(oq_config_origin(cfg, "intake"), "a.json:3:35");

    static const char bad[] = "{\"intake\": {\"order.processing\": {\"identifier\": \"x\"}}}";
    assert_int_equal(oq_config_load_text(cfg, "b.json", bad, strlen(bad), err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "intake (b.json:1:"));
    assert_non_null(strstr(err, "order.processing.identifier"));

    const char *env[] = {"ORDERQ_INTAKE={\"probe\": {\"code\": \"type\"}}", NULL};
    assert_int_equal(oq_config_load_env(cfg, env, NULL, 0, err, sizeof(err)), 0);
    assert_string_equal(cfg->intake, "{\"probe\": {\"code\": \"type\"}}");
    const char *bad_env[] = {"ORDERQ_INTAKE={\"probe\": {\"code\": \"header\"}}", NULL};
    assert_int_equal(oq_config_load_env(cfg, bad_env, NULL, 0, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "intake (ORDERQ_INTAKE): probe.code: expected"));
}

static void env_reports_unknown_variables(void **state)
{
    struct oq_config *cfg = *state;
    char unknown[256];
    const char *env[] = {"ORDERQ_AMQP_ULR=amqp://x/", "ORDERQ_CONFIG=/x.json", "ORDERQ_TEST_FOO=1",
                         "ORDERQ_LOG_LEVEL=debug", NULL};
    assert_int_equal(oq_config_load_env(cfg, env, unknown, sizeof(unknown), err, sizeof(err)), 0);
    assert_string_equal(unknown, "ORDERQ_AMQP_ULR");
    assert_int_equal(cfg->log_level, 0);
}

static void secrets_are_redacted(void **state)
{
    struct oq_config *cfg = *state;
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(oq_config_set(cfg, "amqp_url", "amqps://app:s3cr3t-amqp@mq.example:5671/shop",
                                   OQ_SRC_FLAG, "--amqp-url", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_set(cfg, "mysql_url", "mysql://app:s3cr3t-db@db.example/orderq",
                                   OQ_SRC_ENV, "ORDERQ_MYSQL_URL", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_set(cfg, "smtp_url", "smtps://mailer:s3cr3t-smtp@smtp.example",
                                   OQ_SRC_ENV, "ORDERQ_SMTP_URL", err, sizeof(err)),
                     0);
    for (int json = 0; json <= 1; json++) {
        FILE *f = open_memstream(&out, &len);
        assert_int_equal(oq_config_show(cfg, f, json), 0);
        fclose(f);
        assert_null(strstr(out, "s3cr3t"));
        assert_non_null(strstr(out, "app:***@mq.example"));
        assert_non_null(strstr(out, "app:***@db.example"));
        assert_non_null(strstr(out, "mailer:***@smtp.example"));
        free(out);
        out = NULL;
    }
    /* a bad URL's error must not echo the password either */
    assert_int_equal(oq_config_set(cfg, "mysql_url", "mysql://app:s3cr3t@h/", OQ_SRC_FLAG,
                                   "--mysql-url", err, sizeof(err)),
                     OQ_ECONFIG);
    assert_null(strstr(err, "s3cr3t"));
}

/* `config show` of a 2 KB password: the seed cut the value to 2,047
 * bytes inside the userinfo, curl could not parse the rest, and the
 * password was printed in clear. */
static void a_long_password_is_redacted_whole(void **state)
{
    struct oq_config *cfg = *state;
    char url[4096], pw[2501];
    char *out = NULL;
    size_t len = 0;
    for (size_t i = 0; i < 2500; i++)
        pw[i] = (char)('a' + i % 26);
    pw[2500] = '\0';
    snprintf(url, sizeof(url), "amqp://app:%s@mq.example:5672/shop", pw);
    assert_int_equal(
        oq_config_set(cfg, "amqp_url", url, OQ_SRC_ENV, "ORDERQ_AMQP_URL", err, sizeof(err)), 0);
    assert_int_equal(oq_config_set(cfg, "shop_api_url",
                                   "https://shop.example/?access_token=CaNaRy-q", OQ_SRC_ENV,
                                   "ORDERQ_SHOP_API_URL", err, sizeof(err)),
                     0);
    for (int json = 0; json <= 1; json++) {
        FILE *f = open_memstream(&out, &len);
        assert_int_equal(oq_config_show(cfg, f, json), 0);
        fclose(f);
        assert_null(strstr(out, "abcdefghijklmnop"));
        assert_null(strstr(out, "CaNaRy"));
        assert_non_null(strstr(out, "amqp://app:***@mq.example:5672/shop"));
        assert_non_null(strstr(out, "access_token=***"));
        free(out);
        out = NULL;
    }
}

/* An empty secret file would sign webhooks with an empty key or send
 * "Bearer ": refused, naming the setting and the file. */
static void a_blank_secret_file_is_refused(void **state)
{
    (void)state;
    static const char *const blank[] = {"", "\n", "  \t\r\n", "\nsecret-on-line-2\n"};
    char *secret = NULL;
    for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
        const char *path = temp_file(blank[i]);
        assert_int_equal(
            oq_secret_load(NULL, "smtp_password_file", path, &secret, err, sizeof(err)),
            OQ_ECONFIG);
        assert_null(secret);
        assert_non_null(strstr(err, "smtp_password_file"));
        assert_non_null(strstr(err, path));
        unlink(path);
    }
    /* the first line, its newline trimmed, is the secret */
    const char *path = temp_file("s3cr3t \r\nignored\n");
    assert_int_equal(oq_secret_load(NULL, "shop_api_token_file", path, &secret, err, sizeof(err)),
                     0);
    assert_string_equal(secret, "s3cr3t ");
    oq_secret_free(secret);
    unlink(path);
}

static void finish_fills_instance_id_and_checks_batch(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(
        oq_config_set(cfg, "prefetch", "100", OQ_SRC_FLAG, "--prefetch", err, sizeof(err)), 0);
    /* batch_size left at its default follows a smaller prefetch */
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->batch_size, 100);
    assert_non_null(strchr(cfg->instance_id, ':'));
    /* but one set on purpose above prefetch is an error */
    assert_int_equal(
        oq_config_set(cfg, "batch_size", "200", OQ_SRC_ENV, "ORDERQ_BATCH_SIZE", err, sizeof(err)),
        0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "ORDERQ_BATCH_SIZE"));
    assert_non_null(strstr(err, "--prefetch"));
}

/* A lease no longer than a send may take would make a slow send look
 * abandoned: refused, naming both settings. */
static void the_effect_lease_outlasts_a_send(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(oq_config_set(cfg, "effect_lease_ms", "30s", OQ_SRC_ENV,
                                   "ORDERQ_EFFECT_LEASE_MS", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "effect_lease_ms (ORDERQ_EFFECT_LEASE_MS)"));
    assert_non_null(strstr(err, "smtp_timeout_ms (default)"));
    assert_int_equal(oq_config_set(cfg, "smtp_timeout_ms", "20s", OQ_SRC_FLAG, "--smtp-timeout-ms",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
}

/* The lease sweeper's grace: left at its default it follows the longest
 * wait a retry can have (the tiers max_attempts uses) plus the lease;
 * given, it may not be shorter than that wait. */
static void sweep_after_follows_the_tiers_or_is_checked(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sweep_after_ms, 3600000 + 600000); /* 1h tier + 10m lease */
    /* max_attempts 3 uses tiers 1 and 2 only: 5 s is the longest wait */
    assert_int_equal(oq_config_set(cfg, "max_attempts", "3", OQ_SRC_ENV, "ORDERQ_MAX_ATTEMPTS", err,
                                   sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sweep_after_ms, 5000 + 600000);
    /* no retries at all: the lease alone */
    assert_int_equal(oq_config_set(cfg, "max_attempts", "1", OQ_SRC_ENV, "ORDERQ_MAX_ATTEMPTS", err,
                                   sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sweep_after_ms, 600000);
    /* more attempts than tiers: the last tier repeats */
    assert_int_equal(oq_config_set(cfg, "max_attempts", "50", OQ_SRC_ENV, "ORDERQ_MAX_ATTEMPTS",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_set(cfg, "retry_tiers", "1s,2s", OQ_SRC_ENV, "ORDERQ_RETRY_TIERS",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sweep_after_ms, 2000 + 600000);

    /* given: kept when long enough, refused naming all three settings */
    assert_int_equal(oq_config_set(cfg, "sweep_after_ms", "2s", OQ_SRC_FLAG, "--sweep-after-ms",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->sweep_after_ms, 2000);
    assert_int_equal(oq_config_set(cfg, "sweep_after_ms", "1500ms", OQ_SRC_FLAG, "--sweep-after-ms",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "sweep_after_ms (--sweep-after-ms) is 1500ms"));
    assert_non_null(strstr(err, "a retry can wait 2s"));
    assert_non_null(strstr(err, "retry_tiers (ORDERQ_RETRY_TIERS)"));
    assert_non_null(strstr(err, "max_attempts (ORDERQ_MAX_ATTEMPTS)"));
    /* bounds: at least 1 s, at most 30 days */
    assert_int_equal(oq_config_set(cfg, "sweep_after_ms", "500ms", OQ_SRC_FLAG, "--sweep-after-ms",
                                   err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "expected a duration from 1s to 30d"));
}

static void broker_names_must_not_collide(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(oq_config_set(cfg, "dead_exchange", "shop.events", OQ_SRC_ENV,
                                   "ORDERQ_DEAD_EXCHANGE", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(
        strstr(err, "shop_exchange (default) and dead_exchange (ORDERQ_DEAD_EXCHANGE)"));
    assert_int_equal(
        oq_config_set(cfg, "dead_exchange", "orderq.dead", OQ_SRC_ENV, "x", err, sizeof(err)), 0);
    assert_int_equal(oq_config_set(cfg, "dead_queue", "orderq.order.processing", OQ_SRC_FLAG,
                                   "--dead-queue", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "a work queue"));
    assert_int_equal(oq_config_set(cfg, "dead_queue", "orderq.webhook", OQ_SRC_FLAG, "--dead-queue",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "a work queue"));
    assert_int_equal(oq_config_set(cfg, "dead_queue", "orderq.delay.1s", OQ_SRC_FLAG,
                                   "--dead-queue", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "a delay tier queue"));
}

/* The ledger's owner column (VARCHAR(191)) holds instance_id + "/effect-64/<tag>":
 * an instance_id that would not fit is refused, naming the setting and the
 * bound, before any lease is written with a truncated owner. */
static void instance_id_fits_the_ledger_owner(void **state)
{
    struct oq_config *cfg = *state;
    char id[200];
    memset(id, 'h', sizeof(id));
    id[169] = '\0';
    assert_int_equal(
        oq_config_set(cfg, "instance_id", id, OQ_SRC_FLAG, "--instance-id", err, sizeof(err)),
        OQ_ECONFIG);
    assert_non_null(strstr(err, "instance_id (--instance-id)"));
    assert_non_null(strstr(err, "at most 168 bytes"));
    id[191] = '\0';
    memset(id, 'h', 191);
    assert_int_equal(
        oq_config_set(cfg, "instance_id", id, OQ_SRC_ENV, "ORDERQ_INSTANCE_ID", err, sizeof(err)),
        OQ_ECONFIG);
    /* not UTF-8: MariaDB would store '?' and no finish would find the row */
    assert_int_equal(oq_config_set(cfg, "instance_id", "host\xc0\x80", OQ_SRC_FLAG, "--instance-id",
                                   err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "UTF-8"));
    id[168] = '\0';
    assert_int_equal(
        oq_config_set(cfg, "instance_id", id, OQ_SRC_FLAG, "--instance-id", err, sizeof(err)), 0);
    assert_int_equal(oq_config_set(cfg, "effect_workers", "64", OQ_SRC_FLAG, "--effect-workers",
                                   err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(strlen(cfg->instance_id) + strlen("/effect-64/ffffffffffff"), 191);
}

static void flag_names_map_to_settings(void **state)
{
    (void)state;
    char name[64];
    assert_int_equal(oq_config_flag_name("--batch-size", name, sizeof(name)), 0);
    assert_string_equal(name, "batch_size");
    assert_int_equal(oq_config_flag_name("--nope", name, sizeof(name)), OQ_ENOTFOUND);
    assert_int_equal(oq_config_flag_name("batch-size", name, sizeof(name)), OQ_ENOTFOUND);
}

/* STARTTLS cannot be stripped on loopback; anywhere else it is required
 * unless the operator says otherwise. */
static void smtp_tls_is_required_off_loopback(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg->smtp_tls, OQ_SMTP_TLS_OPPORTUNISTIC); /* smtp://127.0.0.1:1025 */
    static const char *const remote[] = {"smtp://mail.example:587", "smtp://10.0.0.5",
                                         "smtp://[2001:db8::1]:25", "smtp://127.example"};
    for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
        struct oq_config *c = oq_config_new();
        assert_int_equal(oq_config_set(c, "smtp_url", remote[i], OQ_SRC_ENV, "ORDERQ_SMTP_URL", err,
                                       sizeof(err)),
                         0);
        assert_int_equal(oq_config_finish(c, err, sizeof(err)), 0);
        assert_int_equal(c->smtp_tls, OQ_SMTP_TLS_REQUIRED);
        oq_config_free(c);
    }
    static const char *const local[] = {"smtp://localhost:25", "smtp://127.0.0.2",
                                        "smtp://[::1]:25"};
    for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
        struct oq_config *c = oq_config_new();
        assert_int_equal(
            oq_config_set(c, "smtp_url", local[i], OQ_SRC_ENV, "ORDERQ_SMTP_URL", err, sizeof(err)),
            0);
        assert_int_equal(oq_config_finish(c, err, sizeof(err)), 0);
        assert_int_equal(c->smtp_tls, OQ_SMTP_TLS_OPPORTUNISTIC);
        oq_config_free(c);
    }
    /* given, it is kept on loopback too */
    struct oq_config *c = oq_config_new();
    assert_int_equal(
        oq_config_set(c, "smtp_tls", "required", OQ_SRC_ENV, "ORDERQ_SMTP_TLS", err, sizeof(err)),
        0);
    assert_int_equal(oq_config_finish(c, err, sizeof(err)), 0);
    assert_int_equal(c->smtp_tls, OQ_SMTP_TLS_REQUIRED);
    oq_config_free(c);
}

static void tls_files_must_be_readable_and_paired(void **state)
{
    struct oq_config *cfg = *state;
    assert_int_equal(oq_config_set(cfg, "amqp_ca", "/nonexistent/ca.pem", OQ_SRC_ENV,
                                   "ORDERQ_AMQP_CA", err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "ORDERQ_AMQP_CA"));
    assert_non_null(strstr(err, "readable PEM file"));
    assert_int_equal(oq_config_set(cfg, "smtp_ca", "/nonexistent/ca.pem", OQ_SRC_FLAG, "--smtp-ca",
                                   err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "--smtp-ca"));
    const char *pem = temp_file("not checked here\n");
    assert_int_equal(
        oq_config_set(cfg, "amqp_cert", pem, OQ_SRC_ENV, "ORDERQ_AMQP_CERT", err, sizeof(err)), 0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "amqp_key"));
    assert_non_null(strstr(err, "both or neither"));
    assert_int_equal(
        oq_config_set(cfg, "amqp_key", pem, OQ_SRC_ENV, "ORDERQ_AMQP_KEY", err, sizeof(err)), 0);
    /* amqp:// would leave them unused and send in clear */
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "amqp_cert (ORDERQ_AMQP_CERT) is set, but amqp_url"));
    assert_non_null(strstr(err, "expected amqps://"));
    assert_int_equal(oq_config_set(cfg, "amqp_url", "amqps://u:p@127.0.0.1/", OQ_SRC_ENV,
                                   "ORDERQ_AMQP_URL", err, sizeof(err)),
                     0);
    assert_int_equal(oq_config_finish(cfg, err, sizeof(err)), 0);
    unlink(pem);
}

/* What oq_config_finish writes to stderr (the log) while it runs. */
static char *finish_log(struct oq_config *cfg, int *rc)
{
    char path[] = "/tmp/test_config_log.XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    assert_true(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    char why[512];
    *rc = oq_config_finish(cfg, why, sizeof(why));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(oq_read_file(path, 1 << 20, &text, &len), 0);
    unlink(path);
    return text;
}

static void cleartext_off_loopback_is_warned(void **state)
{
    struct oq_config *cfg = *state;
    static const char *const set[][2] = {
        {"amqp_url", "amqp://orderq:Pw-0a1b@rabbit.example:5672/"},
        {"amqp_mgmt_url", "http://rabbit.example:15672/"},
        {"mysql_url", "mysql://orderq:Pw-0a1b@db.example/orderq?ssl=required"},
    };
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
        assert_int_equal(
            oq_config_set(cfg, set[i][0], set[i][1], OQ_SRC_FILE, "orderq.json", err, sizeof(err)),
            0);
    int rc = -1;
    char *log = finish_log(cfg, &rc);
    assert_int_equal(rc, 0);
    assert_non_null(
        strstr(log, "amqp_url (orderq.json) is amqp:// to a host that is not loopback"));
    assert_non_null(strstr(log, "amqp_mgmt_url (orderq.json) is http://"));
    assert_non_null(strstr(log, "mysql_url (orderq.json) has ssl=required"));
    assert_null(strstr(log, "Pw-0a1b"));
    free(log);
    /* verified TLS, and loopback: nothing to say */
    static const char *const quiet[][2] = {
        {"amqp_url", "amqps://orderq:Pw-0a1b@rabbit.example/"},
        {"amqp_mgmt_url", "https://rabbit.example:15671/"},
        {"mysql_url", "mysql://orderq@db.example/orderq?ssl=verify_identity"},
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++)
        assert_int_equal(oq_config_set(cfg, quiet[i][0], quiet[i][1], OQ_SRC_FILE, "orderq.json",
                                       err, sizeof(err)),
                         0);
    log = finish_log(cfg, &rc);
    assert_int_equal(rc, 0);
    assert_null(strstr(log, "not loopback"));
    assert_null(strstr(log, "not on loopback"));
    free(log);
}

/* A cluster's nodes: comma-separated anywhere, a JSON list in the file;
 * `config show` hides every node's password. */
static void node_lists(void **state)
{
    struct oq_config *cfg = *state;
    char *out = NULL;
    size_t len = 0;
    const char *path =
        temp_file("{\"amqp_url\": [\"amqp://orderq:s3cr3t-1@127.0.0.1:5672/shop\",\n"
                  "                \"amqp://orderq:s3cr3t-2@127.0.0.1:5673/shop\"],\n"
                  " \"mysql_url\": [\"mysql://app:s3cr3t-3@127.0.0.1:3307/orderq\",\n"
                  "                \"mysql://app:s3cr3t-4@127.0.0.1:3308/orderq\"]}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), 0);
    unlink(path);
    assert_string_equal(cfg->amqp_url, "amqp://orderq:s3cr3t-1@127.0.0.1:5672/shop,"
                                       "amqp://orderq:s3cr3t-2@127.0.0.1:5673/shop");
    assert_string_equal(cfg->mysql_url, "mysql://app:s3cr3t-3@127.0.0.1:3307/orderq,"
                                        "mysql://app:s3cr3t-4@127.0.0.1:3308/orderq");
    for (int json = 0; json <= 1; json++) {
        FILE *f = open_memstream(&out, &len);
        assert_int_equal(oq_config_show(cfg, f, json), 0);
        fclose(f);
        assert_null(strstr(out, "s3cr3t"));
        assert_non_null(strstr(out, "orderq:***@127.0.0.1:5673"));
        assert_non_null(strstr(out, "app:***@127.0.0.1:3308"));
        free(out);
        out = NULL;
    }
    assert_int_equal(oq_config_set(cfg, "amqp_url",
                                   "amqp://orderq:p@127.0.0.1:5672/,amqp://guest:guest@127.0.0.1:"
                                   "5673/",
                                   OQ_SRC_ENV, "ORDERQ_AMQP_URL", err, sizeof(err)),
                     OQ_ECONFIG);
    assert_non_null(strstr(err, "amqp_url (ORDERQ_AMQP_URL): every node must log in as the same "
                                "user"));
    path = temp_file("{\"amqp_url\": [\"amqp://u:p@a/\", 5]}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "expected a list of URL strings"));
    unlink(path);
    path = temp_file("{\"amqp_url\": []}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "at least one URL"));
    unlink(path);
    path = temp_file("{\"mysql_url\": [\"mysql://u@a/orderq\", \"mysql://u@localhost/orderq?"
                     "socket=/run/mysqld/mysqld.sock\"]}");
    assert_int_equal(oq_config_load_file(cfg, path, err, sizeof(err)), OQ_ECONFIG);
    assert_non_null(strstr(err, "mysql_url ("));
    assert_non_null(strstr(err, "has socket="));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(defaults_are_the_documented_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(file_then_env_then_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(bounds_are_enforced_with_a_clear_message, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_values_name_the_setting_and_source, setup, teardown),
        cmocka_unit_test_setup_teardown(durations_and_tiers, setup, teardown),
        cmocka_unit_test_setup_teardown(file_errors_carry_line_and_column, setup, teardown),
        cmocka_unit_test_setup_teardown(intake_as_an_object_or_text, setup, teardown),
        cmocka_unit_test_setup_teardown(env_reports_unknown_variables, setup, teardown),
        cmocka_unit_test_setup_teardown(secrets_are_redacted, setup, teardown),
        cmocka_unit_test_setup_teardown(a_long_password_is_redacted_whole, setup, teardown),
        cmocka_unit_test(a_blank_secret_file_is_refused),
        cmocka_unit_test_setup_teardown(finish_fills_instance_id_and_checks_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(the_effect_lease_outlasts_a_send, setup, teardown),
        cmocka_unit_test_setup_teardown(sweep_after_follows_the_tiers_or_is_checked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(broker_names_must_not_collide, setup, teardown),
        cmocka_unit_test_setup_teardown(instance_id_fits_the_ledger_owner, setup, teardown),
        cmocka_unit_test(flag_names_map_to_settings),
        cmocka_unit_test_setup_teardown(smtp_tls_is_required_off_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_files_must_be_readable_and_paired, setup, teardown),
        cmocka_unit_test_setup_teardown(cleartext_off_loopback_is_warned, setup, teardown),
        cmocka_unit_test_setup_teardown(node_lists, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
