/* cmd_rules.c - `orderq rules load FILE | list`: the coupon rules in the database */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "orderq/db.h"
#include "orderq/money.h"
#include "orderq/rules.h"

static void discount_text(const struct oq_rule *r, char *buf, size_t len)
{
    char amount[40];
    int percent = r->discount_type == OQ_DISCOUNT_PERCENT;
    oq_money_format(r->discount, percent ? 2 : r->exponent, amount, sizeof(amount));
    snprintf(buf, len, "%s %s", amount, percent ? "%" : r->currency);
}

static void print_rules(const struct oq_rule *rules, size_t n, int json)
{
    if (!json)
        printf("%-8s %-6s %-24s %-9s %-14s %-14s %-5s %-8s %s\n", "RULE", "PROMO", "NAME",
               "CURRENCY", "THRESHOLD", "DISCOUNT", "DAYS", "PREFIX", "SKUS");
    else
        fputs("[", stdout);
    for (size_t i = 0; i < n; i++) {
        const struct oq_rule *r = &rules[i];
        char threshold[40], discount[60], amount[40];
        oq_money_format(r->threshold, r->exponent, threshold, sizeof(threshold));
        if (json) {
            oq_money_format(r->discount, r->discount_type == OQ_DISCOUNT_FIXED ? r->exponent : 2,
                            amount, sizeof(amount));
            printf("%s{\"rule_id\": %lld, \"promo_id\": %lld, \"name\": ", i ? ", " : "",
                   (long long)r->rule_id, (long long)r->promo_id);
            oq_json_fputs(stdout, r->name);
            printf(", \"currency\": \"%s\", \"threshold\": \"%s\", \"skus\": [", r->currency,
                   threshold);
            for (size_t k = 0; k < r->n_skus; k++) {
                fputs(k ? ", " : "", stdout);
                oq_json_fputs(stdout, r->skus[k]);
            }
            printf("], \"coupon\": {\"discount_type\": \"%s\", \"discount\": \"%s\", "
                   "\"valid_days\": %lld, \"code_prefix\": ",
                   r->discount_type == OQ_DISCOUNT_FIXED ? "fixed" : "percent", amount,
                   (long long)r->valid_days);
            oq_json_fputs(stdout, r->code_prefix);
            fputs("}}", stdout);
            continue;
        }
        discount_text(r, discount, sizeof(discount));
        printf("%-8lld %-6lld %-24.24s %-9s %-14s %-14s %-5lld %-8s ", (long long)r->rule_id,
               (long long)r->promo_id, r->name, r->currency, threshold, discount,
               (long long)r->valid_days, r->code_prefix[0] ? r->code_prefix : "-");
        for (size_t k = 0; k < r->n_skus; k++)
            printf("%s%s", k ? "," : "", r->skus[k]);
        putchar('\n');
    }
    if (json)
        fputs("]\n", stdout);
    else
        printf("\n%zu rule%s\n", n, n == 1 ? "" : "s");
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct oq_db *db = NULL;
    struct oq_rule *rules = NULL;
    size_t n = 0;
    char err[OQ_ERRLEN];
    const char *sub = ctx->npos > 0 ? ctx->pos[0] : NULL;
    int load = sub && strcmp(sub, "load") == 0, list = sub && strcmp(sub, "list") == 0;
    int rc, code = EX_OK;

    if (!((load && ctx->npos == 2) || (list && ctx->npos == 1))) {
        fprintf(stderr, "orderq: rules: expected `load FILE` or `list`\nUsage: orderq %s\n",
                ctx->cmd->usage);
        return EX_USAGE;
    }
    if (load) {
        size_t len = 0;
        char *text = NULL;
        if (oq_read_file(ctx->pos[1], 64u << 20, &text, &len) != 0) {
            cli_fail("rules load: cannot read %s: %s", ctx->pos[1], strerror(errno));
            return EX_NOINPUT;
        }
        rc = oq_rules_parse(text, len, &rules, &n, err, sizeof(err));
        free(text);
        if (rc != 0) {
            cli_fail("rules load: %s: %s", ctx->pos[1], err);
            return rc == OQ_EINVAL ? EX_DATAERR : cli_exit_code(rc);
        }
    }
    rc = oq_db_open(ctx->cfg->mysql_url, ctx->cfg->connect_timeout_ms, 0, &db, err, sizeof(err));
    if (rc == 0)
        rc = load ? oq_rules_save(db, rules, n, err, sizeof(err))
                  : oq_rules_load(db, &rules, &n, err, sizeof(err));
    if (rc != 0) {
        cli_fail("rules %s: %s", sub, err);
        code = cli_exit_code(rc);
    } else if (load) {
        printf("loaded %zu rule%s\n", n, n == 1 ? "" : "s");
    } else {
        print_rules(rules, n, cli_opt(ctx, "--json") != NULL);
    }
    oq_rules_free(rules, n);
    oq_db_close(db);
    return code;
}

static const struct cli_opt opts[] = {
    {"--json", NULL, "list: print JSON in the same shape as the load file", 0},
    {NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_rules = {
    .name = "rules",
    .summary = "Load or list the coupon rules",
    .usage = "rules load FILE.json | rules list [--json]",
    .details = "load  validate a JSON array of rules (FILE, or - for stdin) and upsert them by\n"
               "      rule_id, each rule's SKU list replaced; nothing is saved if one is bad\n"
               "list  print the rules in the database\n"
               "A rule:\n"
               "  {\"rule_id\": 14, \"promo_id\": 1, \"name\": \"Mugs over 50\", \"currency\": "
               "\"USD\",\n"
               "   \"skus\": [\"MUG-1\", \"MUG-2\"], \"threshold\": \"50.00\",\n"
               "   \"coupon\": {\"discount_type\": \"fixed\", \"discount\": \"10.00\", "
               "\"valid_days\": 30,\n"
               "              \"code_prefix\": \"MUG-\"}}\n"
               "An order earns it when its items with these SKUs, not sold below their original\n"
               "price, total strictly more than the threshold, in the rule's currency.\n",
    .opts = opts,
    .run = run,
};
