/* config.h - one table of settings: defaults < JSON file < ORDERQ_* env < flags
 *
 * Every setting has a name ("prefetch"), which is also its JSON key; its
 * environment variable is ORDERQ_ + the upper-cased name (ORDERQ_PREFETCH)
 * and its flag is -- + the name with '-' for '_' (--prefetch). Values are
 * checked when they are set, so a bad one is reported with the place it came
 * from ("ORDERQ_PREFETCH", "/etc/orderq.json:3:15", "--prefetch").
 */
#ifndef ORDERQ_CONFIG_H
#define ORDERQ_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "orderq/common.h"

#define OQ_MAX_RETRY_TIERS 16

enum oq_queue_type { OQ_QUEUE_QUORUM = 0, OQ_QUEUE_CLASSIC = 1 };
enum oq_smtp_tls { OQ_SMTP_TLS_OPPORTUNISTIC = 0, OQ_SMTP_TLS_REQUIRED = 1, OQ_SMTP_TLS_OFF = 2 };
enum oq_log_format { OQ_LOG_FORMAT_JSON = 0, OQ_LOG_FORMAT_TEXT = 1 };

/* The effective configuration. Read it freely; change it only through
 * oq_config_set() so that every value is checked. */
struct oq_config {
    char *amqp_url;
    char *amqp_ca;   /* "" : the system's CAs */
    char *amqp_cert; /* "" : no client certificate */
    char *amqp_key;
    char *amqp_mgmt_url;
    char *mysql_url;
    char *smtp_url;
    int smtp_tls;  /* enum oq_smtp_tls */
    char *smtp_ca; /* "" : the system's CAs */
    char *smtp_user;
    char *smtp_password; /* secret */
    char *smtp_password_file;
    char *smtp_from;
    int64_t smtp_timeout_ms;
    char *template_dir;
    int ambiguous_mail;    /* enum oq_ambiguous_policy (handler.h) */
    int ambiguous_webhook; /* enum oq_ambiguous_policy */
    int64_t effect_workers;
    int64_t effect_lease_ms;
    /* an expired lease this much older has no delivery left: the sweeper settles it */
    int64_t sweep_after_ms;
    char *shop_api_url;   /* "" when there is no shop API */
    char *shop_api_token; /* secret */
    char *shop_api_token_file;
    int64_t shop_api_timeout_ms;
    char *intake;        /* JSON (intake.h); "" : the envelope everywhere */
    char *webhooks_file; /* "" when there are no webhooks */
    char *http_addr;
    int64_t http_max_connections;        /* open at once, in all */
    int64_t http_max_connections_per_ip; /* open at once from one address */
    int64_t http_timeout_ms;             /* idle time before a connection is closed */
    int64_t metrics_db_interval_ms;      /* the database gauges are read this often */
    char *instance_id;                   /* "" until oq_config_finish() fills in host:pid */
    char *shop_exchange;
    char *queue_prefix;
    char *delay_exchange;
    char *dead_exchange;
    char *dead_queue;
    int queue_type; /* enum oq_queue_type */
    int64_t delivery_limit;
    int64_t prefetch;
    int64_t max_message_bytes;   /* a larger body is dead-lettered unparsed (too_large) */
    int64_t effect_prefetch;     /* 0: derived (pipeline.c) */
    int64_t consumer_timeout_ms; /* the broker's, as the operator says */
    int64_t batch_size;
    int64_t batch_window_ms;
    int64_t max_attempts;
    int64_t db_workers;
    int64_t heartbeat_s;
    int64_t connect_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t coupon_code_length;
    char *coupon_code_alphabet;
    int log_level;  /* enum oq_log_level */
    int log_format; /* enum oq_log_format */
    size_t n_retry_tiers;
    int64_t retry_tiers_ms[OQ_MAX_RETRY_TIERS];
    struct oq_config_origin *origin; /* private: where each value came from */
};

/* Where a value came from. */
enum oq_config_source {
    OQ_SRC_DEFAULT = 0,
    OQ_SRC_FILE,
    OQ_SRC_ENV,
    OQ_SRC_FLAG,
};

/* A new configuration holding every default. NULL when out of memory. */
struct oq_config *oq_config_new(void);
void oq_config_free(struct oq_config *cfg);

/* Where setting name's value came from, for messages ("flag --prefetch",
 * "ORDERQ_PREFETCH", "orderq.json:3:5", "default"); "?" for no such name. */
const char *oq_config_origin(const struct oq_config *cfg, const char *name);

/* Set one setting from text. `where` names the place for error messages
 * and for `config show` ("ORDERQ_PREFETCH", "--prefetch", "file.json:3:7").
 * Returns 0; OQ_ENOTFOUND for an unknown name; OQ_ECONFIG with a one-line
 * message in err naming the setting, the place and what was expected. */
OQ_WUR int oq_config_set(struct oq_config *cfg, const char *name, const char *value,
                         enum oq_config_source src, const char *where, char *err, size_t errlen);

/* Read a JSON object of settings (comments allowed). Unknown keys, wrong
 * types and bad values fail with file:line:column in err.
 * Returns 0, OQ_EIO (cannot read) or OQ_ECONFIG. */
OQ_WUR int oq_config_load_file(struct oq_config *cfg, const char *path, char *err, size_t errlen);

/* The same from text in memory (len bytes; path names it in messages):
 * the fuzz target's way in, no file needed. */
OQ_WUR int oq_config_load_text(struct oq_config *cfg, const char *path, const char *text,
                               size_t len, char *err, size_t errlen);

/* Apply every ORDERQ_<NAME> variable of envp (NULL-terminated, as environ).
 * Variables that are not settings are listed in `unknown` (may be NULL) as
 * "ORDERQ_X, ORDERQ_Y" so the caller can warn; ORDERQ_CONFIG and the
 * scripts' own ORDERQ_TEST_* / ORDERQ_STATE_DIR / ORDERQ_CACHE_DIR /
 * ORDERQ_BIN are skipped. Returns 0 or OQ_ECONFIG. */
OQ_WUR int oq_config_load_env(struct oq_config *cfg, const char *const *envp, char *unknown,
                              size_t unknownlen, char *err, size_t errlen);

/* Checks that involve more than one setting, and derived values
 * (instance_id). Call once after every source is applied. */
OQ_WUR int oq_config_finish(struct oq_config *cfg, char *err, size_t errlen);

/* Print the effective configuration, secrets (and passwords inside URLs)
 * redacted: a table with each value's source, or JSON when json != 0. */
OQ_WUR int oq_config_show(const struct oq_config *cfg, FILE *out, int json);

/* For the CLI: the setting a flag such as "--batch-size" names, as its
 * setting name in buf. Returns 0 or OQ_ENOTFOUND. */
OQ_WUR int oq_config_flag_name(const char *flag, char *buf, size_t buflen);

/* For --help: print one line per setting (flag, env, default, help). */
void oq_config_print_help(FILE *out);

/* Is v a name orderq may give an exchange or queue (1 to 200 of letters,
 * digits, '-', '_', '.', ':'; not "amq.*")? Returns 0 or OQ_EINVAL with
 * the reason in why. */
OQ_WUR int oq_amqp_name_check(const char *v, char *why, size_t len);

/* Text of a duration in ms, as "250ms", "5s", "2m", "1h" (the largest
 * unit that divides it). Writes at most buflen bytes. */
void oq_duration_format(int64_t ms, char *buf, size_t buflen);

/* Parse "250ms", "5s", "2m", "1h", "180d" or a bare number of ms.
 * Returns 0 or OQ_EINVAL. */
OQ_WUR int oq_duration_parse(const char *text, int64_t *ms);

#endif
