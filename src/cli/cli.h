/* cli.h - what every `orderq <command>` shares: options, config, exit codes */
#ifndef ORDERQ_CLI_H
#define ORDERQ_CLI_H

#include <stdio.h>
#include <sysexits.h>

#include "orderq/config.h"

#define CLI_MAX_ARGS 32
#define CLI_MAX_OPTS 24 /* options one command may define (dlq has 17) */

struct cli_cmd_ctx;

/* One command-specific option. */
struct cli_opt {
    const char *name;    /* "--status" */
    const char *metavar; /* NULL: a switch; else it takes a value, e.g. "NAME" */
    const char *help;
    int repeatable;
};

struct cli_cmd {
    const char *name;
    const char *summary;
    const char *usage; /* after "orderq ": "migrate [--status] [--json]" */
    const char *details;
    const struct cli_opt *opts; /* terminated by a NULL name */
    int (*run)(struct cli_cmd_ctx *ctx);
    void (*extra_help)(FILE *out); /* printed after the options, may be NULL */
    int no_config;                 /* runs without loading the configuration */
};

/* What a command's run() gets. */
struct cli_cmd_ctx {
    const struct cli_cmd *cmd;
    struct oq_config *cfg;
    const char *config_path;
    const char *pos[CLI_MAX_ARGS]; /* positional arguments */
    int npos;
    /* values of the command's options, by index in cmd->opts */
    const char *val[CLI_MAX_OPTS][CLI_MAX_ARGS];
    int nval[CLI_MAX_OPTS];
};

/* Did the user give option `name`? Its (last) value, or "" for a switch;
 * NULL when absent. */
const char *cli_opt(const struct cli_cmd_ctx *ctx, const char *name);
/* The values of a repeatable option. */
int cli_opt_all(const struct cli_cmd_ctx *ctx, const char *name, const char ***values);

/* Parse argv (after the command name), load the configuration, and fill
 * ctx. Returns EX_OK, or an exit code after printing why (usage: 64,
 * config: 78; --help: prints help and returns -1 meaning "exit 0"). */
int cli_prepare(const struct cli_cmd *cmd, int argc, char **argv, struct cli_cmd_ctx *ctx);
void cli_free(struct cli_cmd_ctx *ctx);

void cli_print_cmd_help(const struct cli_cmd *cmd, FILE *out);

/* Said by every --help that takes settings as flags (docs/security.md). */
#define CLI_SECRET_FLAGS_NOTE                                                                      \
    "\nSecrets: every user on this host can read a command's flags (ps,\n"                         \
    "/proc/PID/cmdline). Do not give --smtp-password, --shop-api-token, or a URL\n"                \
    "holding a password as a flag: use smtp_password_file / shop_api_token_file,\n"                \
    "the config file, or ORDERQ_* environment (readable by the same user only).\n"

/* Map an OQ_E* code to a sysexits.h exit status. */
int cli_exit_code(int oq_rc);

/* "orderq: <what>: <why>" on stderr, as one line for people (the JSON log
 * is for the service's own running; command results are plain). */
void cli_fail(const char *fmt, ...) OQ_PRINTF(1, 2);

/* SIGTERM / SIGINT set cli_stop_signal (to the signal's number); a second
 * one exits at once (unacked messages simply return to their queues).
 * SIGPIPE is ignored. For long-running commands. */
extern volatile sig_atomic_t cli_stop_signal;
void cli_catch_stop_signals(void);

/* Is stdout a terminal (tables, colours, progress bars)? */
int cli_stdout_is_tty(void);

/* A progress bar on stderr: "[####....] done/total  rate/s  ETA". Draw as
 * often as you like (it redraws at most every 100 ms); final ends the line.
 * Callers draw only when stderr is a terminal. */
struct cli_progress {
    long long total;
    int64_t start_ms, drawn_ms;
};
void cli_progress_start(struct cli_progress *p, long long total);
void cli_progress_draw(struct cli_progress *p, long long done, int final);

extern const struct cli_cmd cmd_config, cmd_migrate, cmd_topology, cmd_consume, cmd_rules,
    cmd_publish, cmd_relay, cmd_ledger, cmd_version, cmd_dlq, cmd_mail, cmd_shop, cmd_webhook,
    cmd_status;

#endif
