/* fuzz_template.c - mail templates: parse a template, render it with values
 *
 * Input: the template text, then NUL-separated values. The HTML rendering
 * must escape every value (only the template's own text may bring a '<'),
 * and the plain one must hold each value whole. */
#include <string.h>

#include "fuzz.h"
#include "orderq/mailer.h"

static size_t count(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void check(const char *text, const char *const *names, size_t n, const char *const *values)
{
    struct oq_template *t = NULL;
    char err[512] = "";
    if (oq_template_parse(text, "fuzz", names, n, &t, err, sizeof(err)) != 0) {
        FUZZ_CHECK(err[0] != '\0' && t == NULL, "refused without a reason");
        return;
    }
    const char *empty[16] = {0};
    char *bare = NULL, *html = NULL, *plain = NULL;
    FUZZ_CHECK(oq_template_render(t, empty, 1, &bare) == 0, "render");
    FUZZ_CHECK(oq_template_render(t, values, 1, &html) == 0, "render html");
    FUZZ_CHECK(oq_template_render(t, values, 0, &plain) == 0, "render text");
    FUZZ_CHECK(strstr(bare, "{{") == NULL || strstr(text, "{{") != NULL, "a placeholder appeared");
    /* Values of names not ending in _html are escaped: the HTML holds no
     * more of these than the template's own text. Those ending in _html
     * are the handler's escaped markup, passed as they are. */
    int raw = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        raw |= len > 5 && strcmp(names[i] + len - 5, "_html") == 0 && values[i][0] != '\0';
    }
    if (!raw) {
        const char specials[] = "<>\"'";
        for (const char *c = specials; *c; c++)
            FUZZ_CHECK(count(html, *c) == count(bare, *c), "'%c' of a value left unescaped", *c);
    }
    FUZZ_CHECK(strlen(plain) >= strlen(bare), "values lost in the text part");
    free(bare);
    free(html);
    free(plain);
    oq_template_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* the template, then up to 9 values, NUL-separated */
    const char *values[OQ_INVOICE_MAIL_SLOTS];
    const char *p = buf + strlen(buf);
    for (size_t i = 0; i < OQ_INVOICE_MAIL_SLOTS; i++) {
        if (p < buf + size) {
            p++;
            values[i] = p;
            p += strlen(p);
        } else {
            values[i] = "";
        }
    }
    check(buf, oq_coupon_mail_names, OQ_COUPON_MAIL_SLOTS, values);
    check(buf, oq_invoice_mail_names, OQ_INVOICE_MAIL_SLOTS, values);
    free(buf);
    return 0;
}
