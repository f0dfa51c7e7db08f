/* main.c - `orderq <command>`: find the command, run it, exit with its code */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_cmd *const commands[] = {
    &cmd_consume, &cmd_status, &cmd_publish, &cmd_relay, &cmd_migrate, &cmd_topology, &cmd_rules,
    &cmd_ledger,  &cmd_dlq,    &cmd_mail,    &cmd_shop,  &cmd_webhook, &cmd_config,   &cmd_version,
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fputs("orderq - exactly-once RabbitMQ consumer for a shop's order events\n\n"
          "Usage: orderq <command> [options]\n\nCommands:\n",
          out);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\nEvery setting can be given as a flag on any command (--amqp-url URL), as\n"
          "ORDERQ_<SETTING> in the environment, or in a JSON file (--config FILE);\n"
          "`orderq config --help` lists them, `orderq config show` shows the values in use.\n"
          "Run 'orderq <command> --help' for a command's options.\n",
          out);
    fputs(CLI_SECRET_FLAGS_NOTE, out);
}

int main(int argc, char **argv)
{
    struct cli_cmd_ctx ctx;
    const struct cli_cmd *cmd = NULL;
    int code;

    if (argc < 2) {
        usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EX_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        cmd = &cmd_version;
    for (size_t i = 0; cmd == NULL && i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i]->name) == 0)
            cmd = commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "orderq: unknown command \"%s\"\n\n", argv[1]);
        usage(stderr);
        return EX_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("orderq: libcurl failed to initialise\n", stderr);
        return EX_SOFTWARE;
    }
    code = cli_prepare(cmd, argc - 2, argv + 2, &ctx);
    if (code == EX_OK)
        code = cmd->run(&ctx);
    else if (code < 0)
        code = EX_OK; /* --help */
    cli_free(&ctx);
    curl_global_cleanup();
    return code;
}
