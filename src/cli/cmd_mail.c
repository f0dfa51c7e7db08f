/* cmd_mail.c - `orderq mail test`: is the SMTP server reachable and does it take our mail? */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "orderq/mailer.h"

static const char *const outcome_names[] = {"sent", "transient", "permanent", "ambiguous"};

static int run(struct cli_cmd_ctx *ctx)
{
    const char *to = cli_opt(ctx, "--to");
    const char *subject = cli_opt(ctx, "--subject");
    const char *id = cli_opt(ctx, "--id");
    struct oq_mailer *m = NULL;
    char err[OQ_ERRLEN], reply[600];

    if (ctx->npos != 1 || strcmp(ctx->pos[0], "test") != 0 || to == NULL) {
        fprintf(stderr, "Usage: orderq %s\n", ctx->cmd->usage);
        return EX_USAGE;
    }
    int rc = oq_mailer_new(ctx->cfg, &m, err, sizeof(err));
    if (rc != 0) {
        cli_fail("mail: %s", err);
        return cli_exit_code(rc);
    }
    struct oq_mail mail = {
        .to_name = cli_opt(ctx, "--name"),
        .to_address = to,
        .subject = subject ? subject : "orderq test mail",
        .text = "This is a test mail from `orderq mail test`: the SMTP settings work.\n",
        .html = "<p>This is a test mail from <code>orderq mail test</code>: "
                "the SMTP settings work.</p>\n",
        .handler = "mail_test",
        .effect_key = id ? id : to,
        .event = id,
    };
    enum oq_smtp_outcome outcome = oq_mailer_send(m, &mail, reply, sizeof(reply));
    oq_mailer_free(m);
    if (cli_opt(ctx, "--json") != NULL) {
        printf("{\"outcome\": \"%s\", \"reply\": ", outcome_names[outcome]);
        oq_json_fputs(stdout, reply);
        printf("}\n");
    } else {
        printf("%s: %s\n", outcome_names[outcome], reply);
    }
    switch (outcome) {
    case OQ_SMTP_SENT:
        return EX_OK;
    case OQ_SMTP_PERMANENT:
        return EX_DATAERR;
    default:
        return EX_TEMPFAIL;
    }
}

static const struct cli_opt opts[] = {
    {"--to", "ADDRESS", "recipient (required)", 0},
    {"--name", "NAME", "recipient's display name (UTF-8 is encoded per RFC 2047)", 0},
    {"--subject", "TEXT", "subject (default: orderq test mail)", 0},
    {"--id", "KEY", "effect key for the Message-ID, also sent as X-Orderq-Event", 0},
    {"--json", NULL, "print the outcome as JSON", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_mail = {
    .name = "mail",
    .summary = "Send a test mail with the smtp_* settings and say what the server answered",
    .usage = "mail test --to ADDRESS [--name NAME] [--subject TEXT] [--id KEY] [--json]",
    .details = "Sends one multipart/alternative mail (text and HTML) the way the mail handlers\n"
               "do: smtp_url, smtp_tls, smtp_ca, smtp_user, smtp_password(_file), smtp_from,\n"
               "smtp_timeout_ms. Prints the outcome (sent, transient, permanent, ambiguous)\n"
               "and the server's last reply. Exit 0 sent, 65 permanent (a bad address, a 5xx),\n"
               "75 transient or ambiguous.\n",
    .opts = opts,
    .run = run,
};
