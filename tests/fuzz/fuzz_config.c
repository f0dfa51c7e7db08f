/* fuzz_config.c - the config loader: a JSON file of settings (comments allowed)
 *
 * Any text either loads or fails with "name:line:col: ..." naming where;
 * a file that loads shows (config show) without a secret it set. */
#include <stdio.h>
#include <string.h>

#include "fuzz.h"
#include "orderq/config.h"

/* Both forms of config show, as one string. */
static char *shown(const struct oq_config *cfg)
{
    char *out = NULL;
    size_t outlen = 0;
    FILE *f = open_memstream(&out, &outlen);
    FUZZ_CHECK(f != NULL, "open_memstream");
    FUZZ_CHECK(oq_config_show(cfg, f, 0) == 0 && oq_config_show(cfg, f, 1) == 0, "show failed");
    fclose(f);
    return out;
}

static size_t occurrences(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Showing the secret in *field adds no copy of it: the output has it as
 * often as when the secret is blank (it may be a word found elsewhere). */
static void check_secret_hidden(struct oq_config *cfg, char **field)
{
    if (*field == NULL || strlen(*field) < 4)
        return;
    char *secret = *field, *with = shown(cfg);
    *field = strdup("");
    char *without = shown(cfg);
    FUZZ_CHECK(occurrences(with, secret) == occurrences(without, secret),
               "config show prints the secret \"%s\"", secret);
    free(*field);
    *field = secret;
    free(with);
    free(without);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct oq_config *cfg = oq_config_new();
    if (cfg == NULL)
        return 0;
    char err[1024] = "";
    int rc = oq_config_load_text(cfg, "fuzz.json", (const char *)data, size, err, sizeof(err));
    if (rc != 0) {
        FUZZ_CHECK(rc == OQ_ECONFIG || rc == OQ_ENOMEM, "rc %d", rc);
        FUZZ_CHECK(strstr(err, "fuzz.json") != NULL, "the error does not name the file: %s", err);
        oq_config_free(cfg);
        return 0;
    }
    err[0] = '\0';
    if (oq_config_finish(cfg, err, sizeof(err)) == 0)
        check_secret_hidden(cfg, &cfg->smtp_password);
    if (cfg->shop_api_token != NULL)
        check_secret_hidden(cfg, &cfg->shop_api_token);
    oq_config_free(cfg);
    return 0;
}
