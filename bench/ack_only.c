/* ack_only.c - the baseline for bench/drain: drain a queue doing nothing but ack
 *
 * Same library, prefetch and multiple-ack per batch as orderq consume, no
 * database: the difference between the two rates is what the exactly-once
 * work costs. Usage: ack_only QUEUE COUNT (settings from ORDERQ_* as usual).
 */
#include <amqp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>

#include "orderq/broker.h"
#include "orderq/config.h"
#include "orderq/pipeline.h"

extern char **environ;

int main(int argc, char **argv)
{
    char err[1024];
    struct oq_broker *b = NULL;
    struct oq_config *cfg = oq_config_new();
    if (argc != 3 || cfg == NULL) {
        fprintf(stderr, "usage: ack_only QUEUE COUNT\n");
        return 64;
    }
    long long want = strtoll(argv[2], NULL, 10), got = 0, pending = 0;
    if (oq_config_load_env(cfg, (const char *const *)environ, NULL, 0, err, sizeof(err)) != 0 ||
        oq_config_finish(cfg, err, sizeof(err)) != 0 ||
        oq_broker_connect(cfg, "bench", &b, err, sizeof(err)) != 0) {
        fprintf(stderr, "ack_only: %s\n", err);
        return 69;
    }
    amqp_connection_state_t conn = oq_broker_conn(b);
    amqp_basic_qos(conn, 1, 0, (uint16_t)cfg->prefetch, 0);
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(argv[1]), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (oq_broker_check(b, 1, "basic.consume") != 0) {
        fprintf(stderr, "ack_only: %s\n", oq_broker_error(b));
        return 69;
    }
    int64_t start = oq_now_ms();
    uint64_t last_tag = 0;
    while (got < want) {
        amqp_envelope_t env;
        struct timeval tv = {0, 2000};
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type == AMQP_RESPONSE_NORMAL) {
            last_tag = env.delivery_tag;
            amqp_destroy_envelope(&env);
            got++;
            pending++;
        } else if (r.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION ||
                   r.library_error != AMQP_STATUS_TIMEOUT) {
            fprintf(stderr, "ack_only: connection failed after %lld\n", got);
            return 69;
        }
        if (pending > 0 && (pending >= cfg->batch_size || got == want ||
                            r.reply_type != AMQP_RESPONSE_NORMAL)) {
            amqp_basic_ack(conn, 1, last_tag, 1);
            pending = 0;
        }
    }
    double s = (double)(oq_now_ms() - start) / 1000.0;
    printf("{\"consumer\": \"ack_only\", \"events\": %lld, \"seconds\": %.3f, \"per_second\": %.0f}\n",
           got, s, (double)got / s);
    oq_broker_close(b);
    oq_config_free(cfg);
    return 0;
}
