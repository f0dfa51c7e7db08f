/* mailer.h - the parts of a customer mail that must be right before anything is sent
 *
 * Mail headers are built only from checked values: a CR or LF in any of
 * them, or an address that is not a plausible mailbox, is a permanent
 * error (never a header injection). Text that is not plain ASCII is
 * encoded per RFC 2047. The Message-ID is derived from the handler and the
 * effect key, so the same mail sent again carries the same id and a
 * receiving system can tell. Templates are files with {{name}}
 * placeholders, checked against the names a handler provides when they
 * are loaded; values are HTML-escaped in HTML parts.
 *
 * A mailer sends through libcurl's SMTP with its MIME API: multipart/
 * alternative, a plain-text and an HTML part, each base64 (so its size is
 * known and a send cut after the final "." is told apart). One
 * mailer per thread; it keeps its connection between messages.
 */
#ifndef ORDERQ_MAILER_H
#define ORDERQ_MAILER_H

#include <stddef.h>

#include "orderq/common.h"
#include "orderq/retry.h"

/* The longest display name and subject, in bytes, a handler puts in a
 * mail; a longer one makes the event a dead letter before anything is
 * claimed or sent. Real names are far shorter: 255 bytes are 127 accented
 * Latin letters, 85 CJK characters or 63 emoji, the same bound smtp_from's
 * name has. The handlers' subjects hold a coupon code (at most 64 bytes)
 * or invoice and order numbers and some 40 bytes of text; 400 bytes leave
 * room for numbers in any script, while a mail client shows 60 to 80
 * characters. Both keep the encoded header to a few lines. */
#define OQ_MAIL_NAME_MAX    255
#define OQ_MAIL_SUBJECT_MAX 400

/* A header value: 0, or OQ_EINVAL (why says so) when it holds a CR, LF or
 * other control character but tab. */
OQ_WUR int oq_mail_header_check(const char *value, char *why, size_t whylen);

/* A plausible mailbox: local@domain, at most 254 bytes (local part 64),
 * no spaces, controls, quotes or <>,;:\ anywhere, a domain of dot-separated
 * labels of letters, digits and hyphens (or UTF-8). 0, or OQ_EINVAL. */
OQ_WUR int oq_mail_address_check(const char *address, char *why, size_t whylen);

/* text as a header value: itself when it is printable ASCII, else RFC 2047
 * encoded-words ("=?UTF-8?B?...?="), each of whole UTF-8 characters and at
 * most 64 characters, separated by CRLF SP (folded), so that every line
 * stays within RFC 2047's 76 characters with a header name of up to 12
 * ("Subject: ") before the first word. Any length is encoded; the callers
 * cap what they accept (OQ_MAIL_NAME_MAX, OQ_MAIL_SUBJECT_MAX). Returns 0,
 * OQ_EINVAL (text is not UTF-8 or holds a control character) or
 * OQ_ENOMEM; *out is the caller's to free. */
OQ_WUR int oq_mail_encode_header(const char *text, char **out);

/* Split "Display Name <address>" (or a bare address) as written in the
 * settings, and check both. 0, or OQ_EINVAL (why says what is wrong). */
OQ_WUR int oq_mail_parse_mailbox(const char *text, char *name, size_t namelen, char *address,
                                 size_t addresslen, char *why, size_t whylen);

/* "Display Name <address>", the name quoted, or encoded when it needs to
 * be; after encoded-words the address goes on a folded line of its own
 * when the line would pass 76 characters. Returns 0, OQ_EINVAL (why says)
 * or OQ_ENOMEM; *out is the caller's to free. */
OQ_WUR int oq_mail_mailbox(const char *name, const char *address, char **out, char *why,
                           size_t whylen);

/* <SHA-256(handler NUL effect_key), 32 hex digits>.<handler>@<domain>: the
 * same for every send of one effect. out: at least 128 bytes. */
void oq_mail_message_id(const char *handler, const char *effect_key, const char *domain, char *out,
                        size_t outlen);

/* ---- SMTP outcomes -------------------------------------------------------- */

/* What a failed or finished SMTP send means. curl_code: libcurl's result
 * (0 = CURLE_OK); smtp_code: the last reply code (0 when none);
 * data_sent: the whole message, final "." included, went out.
 *   OK        250 after the data: sent
 *   transient 4xx, connection failures, timeouts before the data was sent
 *   permanent 5xx (a bad address, a rejected message)
 *   ambiguous the data went out and no reply came: it may have been sent */
enum oq_smtp_outcome { OQ_SMTP_SENT = 0, OQ_SMTP_TRANSIENT, OQ_SMTP_PERMANENT, OQ_SMTP_AMBIGUOUS };

enum oq_smtp_outcome oq_smtp_classify(int curl_code, long smtp_code, int data_sent);

/* The error class a failed send is parked or retried with. */
enum oq_error_class oq_smtp_error_class(enum oq_smtp_outcome outcome);

/* ---- sending ------------------------------------------------------------- */

struct oq_config;
struct oq_mailer; /* opaque: one curl handle and its connection */

/* One mail. Every string is checked by oq_mailer_send. */
struct oq_mail {
    const char *to_name; /* may be NULL */
    const char *to_address;
    const char *subject;
    const char *text, *html;
    const char *handler, *effect_key; /* for the Message-ID */
    const char *event;                /* X-Orderq-Event: the event identifier */
};

/* From cfg's smtp_* settings (the password from smtp_password or the first
 * line of smtp_password_file). Returns 0, OQ_ECONFIG or OQ_ENOMEM. */
OQ_WUR int oq_mailer_new(const struct oq_config *cfg, struct oq_mailer **out, char *err,
                         size_t errlen);
void oq_mailer_free(struct oq_mailer *m);

/* Send mail. reply gets the server's last reply line, or why it could not
 * be sent (a bad address or header: OQ_SMTP_PERMANENT, nothing sent). */
enum oq_smtp_outcome oq_mailer_send(struct oq_mailer *m, const struct oq_mail *mail, char *reply,
                                    size_t replylen);

/* ---- templates ----------------------------------------------------------- */

struct oq_template; /* opaque */

/* Load a template file. Every {{name}} in it must be one of names[0..n)
 * (what the handler fills in), else OQ_EINVAL naming the placeholder and
 * the line. Returns 0, OQ_EIO (cannot read) or OQ_EINVAL. */
OQ_WUR int oq_template_load(const char *path, const char *const *names, size_t n,
                            struct oq_template **out, char *err, size_t errlen);

/* The same from text in memory (tests, built-in defaults). */
OQ_WUR int oq_template_parse(const char *text, const char *what, const char *const *names, size_t n,
                             struct oq_template **out, char *err, size_t errlen);

/* Fill in values[i] for names[i] (the names given at load). html: escape
 * & < > " ' in values, except those of names ending in "_html", which the
 * handler built from escaped parts itself (an invoice's rows). *out is the
 * caller's to free. 0 or OQ_ENOMEM. */
OQ_WUR int oq_template_render(const struct oq_template *t, const char *const *values, int html,
                              char **out);
void oq_template_free(struct oq_template *t);

/* The placeholders the shipped templates (templates/) and their overrides
 * may use, for the coupon mail and the invoice mail. */
#define OQ_COUPON_MAIL_SLOTS 5 /* customer_name coupon_code discount expires_on order_number */
#define OQ_INVOICE_MAIL_SLOTS                                                                      \
    9 /* customer_name invoice_number order_number lines lines_html                                \
         subtotal shipping tax grand_total */
extern const char *const oq_coupon_mail_names[OQ_COUPON_MAIL_SLOTS];
extern const char *const oq_invoice_mail_names[OQ_INVOICE_MAIL_SLOTS];

/* text with & < > " ' as HTML entities; *out is the caller's to free.
 * 0 or OQ_ENOMEM. */
OQ_WUR int oq_html_escape(const char *text, char **out);

#endif
