/* cmd_version.c - `orderq version`: this build and the libraries it uses */
#include <amqp.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <mysql.h>
#include <openssl/crypto.h>
#include <yajl/yajl_version.h>

#include "cli.h"

static int run(struct cli_cmd_ctx *ctx)
{
    const char *fmt =
        cli_opt(ctx, "--json") != NULL
            ? "{\"orderq\": \"%s\", \"librabbitmq\": \"%s\", \"mysqlclient\": "
              "\"%s\", \"libcurl\": \"%s\", \"yajl\": \"%d.%d.%d\", \"libmicrohttpd\": "
              "\"%s\", \"openssl\": \"%s\"}\n"
            : "orderq %s\nlibrabbitmq %s, mysqlclient %s, libcurl %s, yajl %d.%d.%d, "
              "libmicrohttpd %s, %s\n";
    printf(fmt, ORDERQ_VERSION, amqp_version(), mysql_get_client_info(),
           curl_version_info(CURLVERSION_NOW)->version, yajl_version() / 10000,
           yajl_version() / 100 % 100, yajl_version() % 100, MHD_get_version(),
           OpenSSL_version(OPENSSL_VERSION));
    return EX_OK;
}

static const struct cli_opt opts[] = {
    {"--json", NULL, "print JSON", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_version = {
    .name = "version",
    .summary = "Print the version of orderq and of its libraries",
    .usage = "version [--json]",
    .opts = opts,
    .run = run,
    .no_config = 1,
};
