/* handler_mail.c - coupon.email and invoice.created / invoice.updated: one mail each
 *
 * prepare reads the event and renders the whole mail (templates from
 * template_dir); perform, on an effect worker, only hands it to SMTP.
 *
 * The coupon mail's effect key is "coupon:<code>": one mail per coupon,
 * however often its event arrives. Both invoice events share the ledger
 * name invoice_mail and the key "invoice:<invoice_id>", so the events one
 * invoice causes (created, then updated on a state change, each maybe sent
 * by two listeners) make one mail: the Bagisto double mail cannot happen.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/config.h"
#include "orderq/event.h"
#include "orderq/handler.h"
#include "orderq/invoice.h"
#include "orderq/json.h"
#include "orderq/mailer.h"
#include "orderq/money.h"

enum mail_kind { COUPON_MAIL, INVOICE_MAIL };

struct mail_state {
    struct oq_template *text, *html;
    struct oq_mailer *mailer; /* one curl handle: used only by the thread owning this state */
};

struct mail_plan {
    char *to_name, *to_address, *subject, *text, *html;
};

static void free_plan(void *p)
{
    struct mail_plan *plan = p;
    if (plan == NULL)
        return;
    free(plan->to_name);
    free(plan->to_address);
    free(plan->subject);
    free(plan->text);
    free(plan->html);
    free(plan);
}

static void free_state(void *p)
{
    struct mail_state *st = p;
    if (st == NULL)
        return;
    oq_template_free(st->text);
    oq_template_free(st->html);
    oq_mailer_free(st->mailer);
    free(st);
}

/* Text from the event that goes into a header: at most max bytes of UTF-8
 * without control characters, else OQ_EINVAL with what is wrong in err.
 * Checked here, in prepare, so that such an event is a dead letter before
 * a lease is taken; at send time it would fail under a `sending` lease. */
static int header_text_check(const char *what, const char *value, size_t max, char *err,
                             size_t errlen)
{
    char why[128];
    size_t n = strlen(value);
    if (n > max) {
        snprintf(err, errlen,
                 "%s is %zu bytes; at most %zu are accepted (docs/mail.md, \"Limits\")", what, n,
                 max);
        return OQ_EINVAL;
    }
    if (!oq_utf8_valid(value, n)) {
        snprintf(err, errlen, "%s is not UTF-8", what);
        return OQ_EINVAL;
    }
    if (oq_mail_header_check(value, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: %s", what, why);
        return OQ_EINVAL;
    }
    return 0;
}

/* 0 when a subject snprintf made is whole (n: what it returned), else
 * OQ_EINVAL saying how long it would have been and what it is made of. */
static int subject_fits(int n, const char *made_of, char *err, size_t errlen)
{
    if (n >= 0 && (size_t)n <= OQ_MAIL_SUBJECT_MAX)
        return 0;
    snprintf(err, errlen,
             "the subject would be %d bytes; at most %d are accepted (it is made of %s; "
             "docs/mail.md, \"Limits\")",
             n, OQ_MAIL_SUBJECT_MAX, made_of);
    return OQ_EINVAL;
}

/* The plan for a mail to (name, address) with values filled into both
 * templates. Returns 0, OQ_EINVAL (a bad address, a name or subject that
 * cannot be a header: err says) or OQ_ENOMEM. */
static int render(const struct mail_state *st, const char *name, const char *address,
                  const char *subject, const char *const *values, void **out, char *err,
                  size_t errlen)
{
    char why[256];
    if (oq_mail_address_check(address, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "event_data.customer.email: %s", why);
        return OQ_EINVAL;
    }
    if ((name != NULL &&
         header_text_check("event_data.customer.name", name, OQ_MAIL_NAME_MAX, err, errlen) != 0) ||
        header_text_check("the subject", subject, OQ_MAIL_SUBJECT_MAX, err, errlen) != 0)
        return OQ_EINVAL;
    struct mail_plan *plan = calloc(1, sizeof(*plan));
    if (plan == NULL)
        return OQ_ENOMEM;
    plan->to_name = name ? strdup(name) : NULL;
    plan->to_address = strdup(address);
    plan->subject = strdup(subject);
    if ((name != NULL && plan->to_name == NULL) || plan->to_address == NULL ||
        plan->subject == NULL || oq_template_render(st->text, values, 0, &plan->text) != 0 ||
        oq_template_render(st->html, values, 1, &plan->html) != 0) {
        free_plan(plan);
        snprintf(err, errlen, "out of memory rendering the mail");
        return OQ_ENOMEM;
    }
    *out = plan;
    return 0;
}

/* The customer's e-mail and name (the name may be NULL). */
static int customer_of(yajl_val data, const char **email, const char **name, char *err,
                       size_t errlen)
{
    yajl_val customer = oq_json_member(data, "customer");
    *email = oq_json_text(customer, "email");
    *name = oq_json_text(customer, "name");
    if (*email == NULL || **email == '\0') {
        snprintf(err, errlen, "event_data.customer.email is missing: no one to mail");
        return OQ_EINVAL;
    }
    if (*name != NULL && **name == '\0')
        *name = NULL;
    return 0;
}

/* ---- coupon.email ----------------------------------------------------------- */

/* "10.00" fixed in USD -> "$10.00"; "15.00" percent -> "15%", "12.50" -> "12.5%". */
static int discount_text(yajl_val data, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *type = oq_json_text(data, "discount_type");
    const char *amount = oq_json_text(data, "discount");
    const char *currency = oq_json_text(data, "currency");
    int64_t minor;
    if (amount == NULL) {
        snprintf(err, errlen, "event_data.discount is missing (expected text like \"10.00\")");
        return OQ_EINVAL;
    }
    int percent = type != NULL && strcmp(type, "percent") == 0;
    if (!percent && (type == NULL || strcmp(type, "fixed") != 0)) {
        snprintf(err, errlen, "event_data.discount_type: expected \"fixed\" or \"percent\"");
        return OQ_EINVAL;
    }
    if (!percent && (currency == NULL || oq_currency_exponent(currency) < 0)) {
        snprintf(err, errlen,
                 "event_data.currency: expected an ISO 4217 code for a fixed discount");
        return OQ_EINVAL;
    }
    int exponent = percent ? 2 : oq_currency_exponent(currency);
    char why[200];
    if (oq_money_parse(amount, strlen(amount), exponent, &minor, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "event_data.discount: %s", why);
        return OQ_EINVAL;
    }
    if (!percent) {
        oq_money_display(minor, currency, out, outlen);
        return 0;
    }
    char text[48];
    oq_money_format(minor, 2, text, sizeof(text));
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '0')
        text[--n] = '\0';
    if (n > 0 && text[n - 1] == '.')
        text[--n] = '\0';
    snprintf(out, outlen, "%s%%", text);
    return 0;
}

static int prepare_coupon(void *state, const struct oq_event *ev, int64_t attempt, void **plan,
                          char *effect_key, size_t keylen, char *result, size_t resultlen,
                          char *err, size_t errlen)
{
    const struct mail_state *st = state;
    const char *email, *name;
    const char *code = oq_json_text(ev->data, "coupon_code");
    const char *order = oq_json_text(ev->data, "order_id");
    const char *expires = oq_json_text(ev->data, "expires_at");
    char discount[64], expires_on[16], subject[OQ_MAIL_SUBJECT_MAX + 1];
    (void)attempt;
    *plan = NULL;
    if (code == NULL || *code == '\0' || strlen(code) > 64) {
        snprintf(err, errlen,
                 "event_data.coupon_code: expected the coupon's code (1 to 64 bytes); events "
                 "without one (the seed's send_coupon_code_by_email rows) name no coupon to send");
        return OQ_EINVAL;
    }
    if (header_text_check("event_data.coupon_code", code, 64, err, errlen) != 0)
        return OQ_EINVAL; /* it goes into the subject */
    if (order == NULL || *order == '\0') {
        snprintf(err, errlen, "event_data.order_id is missing");
        return OQ_EINVAL;
    }
    if (expires == NULL || strlen(expires) < 10 || expires[4] != '-' || expires[7] != '-') {
        snprintf(err, errlen, "event_data.expires_at: expected an ISO 8601 date-time");
        return OQ_EINVAL;
    }
    snprintf(expires_on, sizeof(expires_on), "%.10s", expires);
    int rc = customer_of(ev->data, &email, &name, err, errlen);
    if (rc == 0)
        rc = discount_text(ev->data, discount, sizeof(discount), err, errlen);
    if (rc != 0)
        return rc;
    const char *values[OQ_COUPON_MAIL_SLOTS] = {name ? name : email, code, discount, expires_on,
                                                order};
    if (subject_fits(snprintf(subject, sizeof(subject), "Your coupon %s: %s off your next order",
                              code, discount),
                     "event_data.coupon_code and discount", err, errlen) != 0)
        return OQ_EINVAL;
    snprintf(effect_key, keylen, "coupon:%s", code);
    snprintf(result, resultlen, "coupon %s mailed to %s", code, email);
    return render(st, name, email, subject, values, plan, err, errlen);
}

/* ---- invoice.created / invoice.updated ---------------------------------------- */

static int prepare_invoice(void *state, const struct oq_event *ev, int64_t attempt, void **plan,
                           char *effect_key, size_t keylen, char *result, size_t resultlen,
                           char *err, size_t errlen)
{
    const struct mail_state *st = state;
    struct oq_invoice inv;
    char *lines = NULL, *lines_html = NULL;
    char subtotal[48], shipping[48], tax[48], total[48], subject[OQ_MAIL_SUBJECT_MAX + 1];
    (void)attempt;
    *plan = NULL;
    int rc = oq_invoice_parse(ev->data, &inv, err, errlen);
    if (rc != 0)
        return rc;
    if (oq_invoice_lines_text(&inv, &lines) != 0 || oq_invoice_lines_html(&inv, &lines_html) != 0) {
        snprintf(err, errlen, "out of memory rendering the invoice lines");
        rc = OQ_ENOMEM;
        goto out;
    }
    oq_money_display(inv.subtotal, inv.currency, subtotal, sizeof(subtotal));
    oq_money_display(inv.shipping, inv.currency, shipping, sizeof(shipping));
    oq_money_display(inv.tax, inv.currency, tax, sizeof(tax));
    oq_money_display(inv.grand_total, inv.currency, total, sizeof(total));
    const char *values[OQ_INVOICE_MAIL_SLOTS] = {inv.customer_name ? inv.customer_name
                                                                   : inv.customer_email,
                                                 inv.increment_id,
                                                 inv.order_id,
                                                 lines,
                                                 lines_html,
                                                 subtotal,
                                                 shipping,
                                                 tax,
                                                 total};
    if ((rc = subject_fits(snprintf(subject, sizeof(subject), "Invoice %s for your order %s",
                                    inv.increment_id, inv.order_id),
                           "event_data.increment_id and order_id", err, errlen)) != 0)
        goto out;
    snprintf(effect_key, keylen, "invoice:%s", inv.invoice_id);
    snprintf(result, resultlen, "invoice %s mailed to %s", inv.increment_id, inv.customer_email);
    rc = render(st, inv.customer_name, inv.customer_email, subject, values, plan, err, errlen);
out:
    free(lines);
    free(lines_html);
    oq_invoice_clear(&inv);
    return rc;
}

/* ---- sending ------------------------------------------------------------------ */

static enum oq_effect_outcome perform(void *state, const void *p, const struct oq_effect *e,
                                      char *result, size_t resultlen, int64_t *retry_after_ms)
{
    struct mail_state *st = state;
    const struct mail_plan *plan = p;
    struct oq_mail mail = {
        .to_name = plan->to_name,
        .to_address = plan->to_address,
        .subject = plan->subject,
        .text = plan->text,
        .html = plan->html,
        .handler = e->handler,
        .effect_key = e->effect_key,
        .event = e->event_identifier,
    };
    *retry_after_ms = -1;
    switch (oq_mailer_send(st->mailer, &mail, result, resultlen)) {
    case OQ_SMTP_SENT:
        return OQ_EFFECT_DONE;
    case OQ_SMTP_PERMANENT:
        return OQ_EFFECT_PERMANENT;
    case OQ_SMTP_AMBIGUOUS:
        return OQ_EFFECT_AMBIGUOUS;
    case OQ_SMTP_TRANSIENT:
        break;
    }
    return OQ_EFFECT_TRANSIENT;
}

/* ---- construction --------------------------------------------------------------- */

static int load_template(const struct oq_config *cfg, const char *file, const char *const *names,
                         size_t n, struct oq_template **out, char *err, size_t errlen)
{
    char path[4096], why[OQ_ERRLEN];
    snprintf(path, sizeof(path), "%s/%s", cfg->template_dir, file);
    int rc = oq_template_load(path, names, n, out, why, sizeof(why));
    if (rc == OQ_ENOMEM)
        return rc;
    if (rc != 0) {
        snprintf(err, errlen, "template_dir (%s): %s", cfg->template_dir, why);
        return OQ_ECONFIG;
    }
    return 0;
}

static int mail_state_new(const struct oq_config *cfg, enum mail_kind kind, struct mail_state **out,
                          char *err, size_t errlen)
{
    struct mail_state *st = calloc(1, sizeof(*st));
    const char *base = kind == COUPON_MAIL ? "coupon" : "invoice";
    const char *const *names = kind == COUPON_MAIL ? oq_coupon_mail_names : oq_invoice_mail_names;
    size_t n = kind == COUPON_MAIL ? OQ_COUPON_MAIL_SLOTS : OQ_INVOICE_MAIL_SLOTS;
    char file[32];
    int rc;
    if (st == NULL)
        return OQ_ENOMEM;
    snprintf(file, sizeof(file), "%s.txt", base);
    if ((rc = load_template(cfg, file, names, n, &st->text, err, errlen)) != 0)
        goto fail;
    snprintf(file, sizeof(file), "%s.html", base);
    if ((rc = load_template(cfg, file, names, n, &st->html, err, errlen)) != 0)
        goto fail;
    if ((rc = oq_mailer_new(cfg, &st->mailer, err, errlen)) != 0)
        goto fail;
    *out = st;
    return 0;
fail:
    free_state(st);
    return rc;
}

static int mail_handler_new(const struct oq_config *cfg, enum mail_kind kind, const char *name,
                            const char *event_code, struct oq_handler *out, char *err,
                            size_t errlen)
{
    struct mail_state *st;
    int rc = mail_state_new(cfg, kind, &st, err, errlen);
    if (rc != 0)
        return rc;
    *out = (struct oq_handler){
        .name = name,
        .event_code = event_code,
        .state = st,
        .prepare = kind == COUPON_MAIL ? prepare_coupon : prepare_invoice,
        .perform = perform,
        .ambiguous = (enum oq_ambiguous_policy)cfg->ambiguous_mail,
        .call_timeout_ms = cfg->smtp_timeout_ms,
        .free_plan = free_plan,
        .free_state = free_state,
    };
    return 0;
}

int oq_handler_coupon_mail_new(const struct oq_config *cfg, struct oq_handler *out, char *err,
                               size_t errlen)
{
    return mail_handler_new(cfg, COUPON_MAIL, "coupon_mail", "coupon.email", out, err, errlen);
}

int oq_handler_invoice_mail_new(const struct oq_config *cfg, const char *event_code,
                                struct oq_handler *out, char *err, size_t errlen)
{
    /* both events one ledger name: one key space, one mail per invoice */
    return mail_handler_new(cfg, INVOICE_MAIL, "invoice_mail", event_code, out, err, errlen);
}
