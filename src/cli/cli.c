/* cli.c - what every `orderq <command>` shares: options, config, exit codes */
#include "cli.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "orderq/log.h"

extern char **environ;

void cli_fail(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "orderq: %s\n", msg);
}

volatile sig_atomic_t cli_stop_signal;

static void on_stop_signal(int sig)
{
    if (cli_stop_signal != 0)
        _exit(128 + sig);
    cli_stop_signal = sig;
}

void cli_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cli_stdout_is_tty(void)
{
    return isatty(STDOUT_FILENO);
}

int cli_exit_code(int rc)
{
    switch (rc) {
    case OQ_OK:
        return EX_OK;
    case OQ_ECONFIG:
        return EX_CONFIG;
    case OQ_EBROKER:
    case OQ_EDB:
    case OQ_EHTTP:
        return EX_UNAVAILABLE;
    case OQ_ETIMEOUT:
        return EX_TEMPFAIL;
    case OQ_ENOMEM:
        return EX_OSERR;
    case OQ_EIO:
        return EX_IOERR;
    case OQ_EINVAL:
        return EX_DATAERR;
    case OQ_ENOTFOUND:
    case OQ_EMISMATCH:
    case OQ_EREFUSED:
        return EX_UNAVAILABLE; /* the broker or database is not as required */
    default:
        return EX_SOFTWARE;
    }
}

void cli_print_cmd_help(const struct cli_cmd *cmd, FILE *out)
{
    fprintf(out, "Usage: orderq %s\n\n%s\n", cmd->usage, cmd->summary);
    if (cmd->details != NULL)
        fprintf(out, "\n%s", cmd->details);
    fputs("\nOptions:\n", out);
    for (const struct cli_opt *o = cmd->opts; o && o->name; o++) {
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s", o->name, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        fprintf(out, "  %-26s %s%s\n", left, o->help, o->repeatable ? " (repeatable)" : "");
    }
    fprintf(out, "  %-26s %s\n", "--config FILE", "JSON settings file (also ORDERQ_CONFIG)");
    fprintf(out, "  %-26s %s\n", "--<setting> VALUE",
            "any setting, e.g. --amqp-url, --log-level (`orderq config --help` lists them)");
    fprintf(out, "  %-26s %s\n", "-h, --help", "this help");
    if (!cmd->no_config)
        fputs(CLI_SECRET_FLAGS_NOTE, out);
    if (cmd->extra_help != NULL) {
        fputc('\n', out);
        cmd->extra_help(out);
    }
}

static int usage_error(const struct cli_cmd *cmd, const char *fmt, const char *arg)
{
    fputs("orderq: ", stderr);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nUsage: orderq %s\nTry 'orderq %s --help'.\n", cmd->usage, cmd->name);
    return EX_USAGE;
}

const char *cli_opt(const struct cli_cmd_ctx *ctx, const char *name)
{
    for (int i = 0; ctx->cmd->opts && ctx->cmd->opts[i].name; i++)
        if (strcmp(ctx->cmd->opts[i].name, name) == 0 && ctx->nval[i] > 0)
            return ctx->val[i][ctx->nval[i] - 1];
    return NULL;
}

int cli_opt_all(const struct cli_cmd_ctx *ctx, const char *name, const char ***values)
{
    for (int i = 0; ctx->cmd->opts && ctx->cmd->opts[i].name; i++)
        if (strcmp(ctx->cmd->opts[i].name, name) == 0) {
            *values = (const char **)ctx->val[i];
            return ctx->nval[i];
        }
    *values = NULL;
    return 0;
}

/* Split "--name=value" or take the next argument as the value. */
static const char *take_value(char *arg, int argc, char **argv, int *i)
{
    char *eq = strchr(arg, '=');
    if (eq != NULL) {
        *eq = '\0';
        return eq + 1;
    }
    if (*i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int load_config(struct cli_cmd_ctx *ctx, const char **flag_names, const char **flag_values,
                       const char **flag_given, int nflags)
{
    char err[OQ_ERRLEN * 2], unknown[512];
    int rc;

    ctx->cfg = oq_config_new();
    if (ctx->cfg == NULL) {
        cli_fail("out of memory");
        return EX_OSERR;
    }
    const char *path = ctx->config_path ? ctx->config_path : getenv("ORDERQ_CONFIG");
    if (path != NULL && *path != '\0') {
        rc = oq_config_load_file(ctx->cfg, path, err, sizeof(err));
        if (rc != 0) {
            cli_fail("config: %s", err);
            return EX_CONFIG;
        }
    }
    if (oq_config_load_env(ctx->cfg, (const char *const *)environ, unknown, sizeof(unknown), err,
                           sizeof(err)) != 0) {
        cli_fail("config: %s", err);
        return EX_CONFIG;
    }
    for (int i = 0; i < nflags; i++) {
        if (oq_config_set(ctx->cfg, flag_names[i], flag_values[i], OQ_SRC_FLAG, flag_given[i], err,
                          sizeof(err)) != 0) {
            cli_fail("config: %s", err);
            return EX_CONFIG;
        }
    }
    if (oq_config_finish(ctx->cfg, err, sizeof(err)) != 0) {
        cli_fail("config: %s", err);
        return EX_CONFIG;
    }
    if (unknown[0] != '\0')
        oq_warn("ignoring environment variables that are not settings: %s", unknown);
    return EX_OK;
}

int cli_prepare(const struct cli_cmd *cmd, int argc, char **argv, struct cli_cmd_ctx *ctx)
{
    static char names[CLI_MAX_ARGS][64];
    const char *flag_names[CLI_MAX_ARGS], *flag_values[CLI_MAX_ARGS], *flag_given[CLI_MAX_ARGS];
    int nflags = 0, only_positional = 0;

    memset(ctx, 0, sizeof(*ctx));
    ctx->cmd = cmd;
    for (int i = 0; i < argc; i++) {
        char *arg = argv[i];
        if (only_positional || arg[0] != '-' || strcmp(arg, "-") == 0) {
            if (ctx->npos == CLI_MAX_ARGS)
                return usage_error(cmd, "too many arguments at \"%s\"", arg);
            ctx->pos[ctx->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_positional = 1;
            continue;
        }
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            cli_print_cmd_help(cmd, stdout);
            return -1;
        }
        char *eq = strchr(arg, '=');
        size_t namelen = eq ? (size_t)(eq - arg) : strlen(arg);
        int matched = 0;
        for (int o = 0; cmd->opts && cmd->opts[o].name; o++) {
            const struct cli_opt *opt = &cmd->opts[o];
            if (strlen(opt->name) != namelen || strncmp(opt->name, arg, namelen) != 0)
                continue;
            matched = 1;
            const char *value = "";
            if (opt->metavar != NULL) {
                value = take_value(arg, argc, argv, &i);
                if (value == NULL)
                    return usage_error(cmd, "%s needs a value", opt->name);
            } else if (eq != NULL) {
                return usage_error(cmd, "%s takes no value", opt->name);
            }
            if (ctx->nval[o] == CLI_MAX_ARGS || (!opt->repeatable && ctx->nval[o] > 0))
                return usage_error(cmd, "%s given twice", opt->name);
            ctx->val[o][ctx->nval[o]++] = value;
            break;
        }
        if (matched)
            continue;
        if (namelen == 8 && strncmp(arg, "--config", 8) == 0) {
            ctx->config_path = take_value(arg, argc, argv, &i);
            if (ctx->config_path == NULL)
                return usage_error(cmd, "%s needs a file name", "--config");
            continue;
        }
        char flag[64];
        snprintf(flag, sizeof(flag), "%.*s", (int)namelen, arg);
        if (nflags < CLI_MAX_ARGS &&
            oq_config_flag_name(flag, names[nflags], sizeof(names[nflags])) == 0) {
            const char *given = arg;
            const char *value = take_value(arg, argc, argv, &i);
            if (value == NULL)
                return usage_error(cmd, "%s needs a value", flag);
            flag_names[nflags] = names[nflags];
            flag_values[nflags] = value;
            flag_given[nflags] = given;
            nflags++;
            continue;
        }
        return usage_error(cmd, "unknown option \"%s\"", flag);
    }
    if (cmd->no_config)
        return EX_OK;
    return load_config(ctx, flag_names, flag_values, flag_given, nflags);
}

void cli_free(struct cli_cmd_ctx *ctx)
{
    oq_config_free(ctx->cfg);
    ctx->cfg = NULL;
}

void cli_progress_start(struct cli_progress *p, long long total)
{
    p->total = total;
    p->start_ms = oq_now_ms();
    p->drawn_ms = 0;
}

void cli_progress_draw(struct cli_progress *p, long long done, int final)
{
    int64_t now = oq_now_ms();
    if (!final && now - p->drawn_ms < 100)
        return;
    p->drawn_ms = now;
    double secs = (double)(now - p->start_ms) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    int filled = p->total > 0 ? (int)(24 * (done < p->total ? done : p->total) / p->total) : 24;
    char bar[25], eta[32] = "-";
    for (int i = 0; i < 24; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[24] = '\0';
    if (rate > 0 && done < p->total) {
        long long left = (long long)((double)(p->total - done) / rate);
        snprintf(eta, sizeof(eta), "%lldm%02llds", left / 60, left % 60);
    }
    fprintf(stderr, "\r[%s] %lld/%lld  %.1f/s  ETA %s   %s", bar, done, p->total, rate, eta,
            final ? "\n" : "");
}
