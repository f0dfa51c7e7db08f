/* cmd_dlq.c - `orderq dlq list|show|stats|replay|purge`: the dead-letter store
 *
 * The operator's side of the dead_letter table (sql/0005_dead_letter.sql):
 * find what failed and why, send it back once the cause is fixed, clear it.
 * Every filter is a statement parameter. Replay is in dlq_replay.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#include "cli.h"
#include "dlq.h"
#include "orderq/db.h"
#include "orderq/event.h"
#include "orderq/json.h"
#include "orderq/retry.h"

/* Which subcommands an option belongs to. */
enum { S_LIST = 1, S_SHOW = 2, S_STATS = 4, S_REPLAY = 8, S_PURGE = 16 };
#define S_FILTERS (S_LIST | S_STATS | S_REPLAY | S_PURGE)

#define PURGE_CHUNK 1000

/* ---- options --------------------------------------------------------------- */

static const struct cli_opt opts[] = {
    {"--json", NULL, "print JSON (list, show, stats, replay, purge)", 0},
    {"--queue", "Q", "only letters that failed in work queue Q", 0},
    {"--event-code", "C", "only letters of event code C", 0},
    {"--event-id", "ID", "only letters of event_identifier ID", 0},
    {"--error-like", "TEXT", "only letters whose error contains TEXT", 0},
    {"--fingerprint", "F", "only letters of fingerprint F (see `dlq stats`)", 0},
    {"--since", "T", "only letters dead at or after T (2026-11-22, ...T10:00:00Z, 2h, 7d)", 0},
    {"--until", "T", "only letters dead before T", 0},
    {"--replayed", NULL, "only letters replayed at least once", 0},
    {"--limit", "N", "list: at most N letters (default 50); replay: at most N", 0},
    {"--id", "N", "replay, purge: letter N", 1},
    {"--all", NULL, "replay, purge: every letter (instead of --id or filters)", 0},
    {"--dry-run", NULL, "replay, purge: say what would happen, change nothing", 0},
    {"--rate", "N", "replay: at most N letters a second (default: as fast as confirmed)", 0},
    {"--to-queue", "Q", "replay: to queue Q through the default exchange", 0},
    {"--trust-headers", NULL,
     "replay: send letters orderq did not publish where their headers say (see below)", 0},
    {"--as", "NAME", "replay: who replays, kept in replayed_by (default: login name)", 0},
    {"--force-resend", NULL,
     "replay: send a mail or webhook whose outcome is unknown again (it may arrive twice)", 0},
    {"--yes", NULL, "purge: do not ask", 0},
    {NULL, NULL, NULL, 0},
};

/* By index in opts. */
static const unsigned opt_subs[] = {
    S_LIST | S_SHOW | S_STATS | S_REPLAY | S_PURGE,
    S_FILTERS,
    S_FILTERS,
    S_FILTERS,
    S_FILTERS,
    S_FILTERS,
    S_FILTERS,
    S_FILTERS,
    S_FILTERS,
    S_LIST | S_REPLAY,
    S_REPLAY | S_PURGE,
    S_REPLAY | S_PURGE,
    S_REPLAY | S_PURGE,
    S_REPLAY,
    S_REPLAY,
    S_REPLAY,
    S_REPLAY,
    S_REPLAY,
    S_PURGE,
};

_Static_assert(sizeof(opts) / sizeof(opts[0]) - 1 == sizeof(opt_subs) / sizeof(opt_subs[0]),
               "one opt_subs entry per option");
_Static_assert(sizeof(opts) / sizeof(opts[0]) - 1 <= CLI_MAX_OPTS, "cli_cmd_ctx holds them all");

int dlq_usage_fail(const char *sub, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "orderq: dlq%s%s: %s\nTry 'orderq dlq --help'.\n", sub[0] ? " " : "", sub, msg);
    return EX_USAGE;
}

/* A whole number in [min, max]. */
int dlq_parse_count(const char *text, long long min, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* ---- filters ---------------------------------------------------------------- */

/* Exactly n digits at *p, advanced past them. */
static int take_digits(const char **p, int n, int *value)
{
    *value = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        *value = *value * 10 + (**p - '0');
    }
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* 2026-11-22, 2026-11-22T10:00, 2026-11-22 10:00:00.5, each with an
 * optional Z. orderq's sessions run in UTC, so both mean UTC. */
static int parse_datetime(const char *text, struct bound *b)
{
    const char *p = text;
    int y, mo, d, h = 0, mi = 0, s = 0, us = 0;
    if (take_digits(&p, 4, &y) || *p++ != '-' || take_digits(&p, 2, &mo) || *p++ != '-' ||
        take_digits(&p, 2, &d))
        return -1;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (take_digits(&p, 2, &h) || *p++ != ':' || take_digits(&p, 2, &mi))
            return -1;
        if (*p == ':' && (p++, take_digits(&p, 2, &s)))
            return -1;
        if (*p == '.') {
            int scale = 100000, digits = 0;
            for (p++; *p >= '0' && *p <= '9'; p++, digits++)
                if (digits < 6) {
                    us += (*p - '0') * scale;
                    scale /= 10;
                }
            if (digits == 0)
                return -1;
        }
    }
    b->kind = BOUND_DB_CLOCK;
    if (*p == 'Z') {
        b->kind = BOUND_UTC;
        p++;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
        s > 59)
        return -1;
    snprintf(b->at, sizeof(b->at), "%04d-%02d-%02d %02d:%02d:%02d.%06d", y, mo, d, h, mi, s, us);
    return 0;
}

/* A date/time, or a duration meaning "that long ago" (30m, 2h, 7d). */
static int parse_bound(const char *sub, const char *name, const char *text, struct bound *b)
{
    int64_t ms = 0;
    size_t len = strlen(text);
    if (len > 1 && text[0] >= '0' && text[0] <= '9' && text[len - 1] >= 'a' &&
        text[len - 1] <= 'z' && strchr(text, '-') == NULL && oq_duration_parse(text, &ms) == 0) {
        b->kind = BOUND_AGO;
        b->ago_us = (long long)ms * 1000;
        return 0;
    }
    if (parse_datetime(text, b) == 0)
        return 0;
    return dlq_usage_fail(sub,
                          "%s: expected a date/time (2026-11-22, 2026-11-22T10:00:00Z) or how long "
                          "ago (30m, 2h, 7d), got \"%s\"",
                          name, text);
}

/* "%text%" for LIKE, with the user's own % and _ matching themselves. '!'
 * is the escape character: '\' would depend on the server's sql_mode. */
static void like_pattern(const char *text, char *out, size_t outlen)
{
    size_t n = 0;
    out[n++] = '%';
    for (const char *p = text; *p && n + 4 < outlen; p++) {
        if (*p == '%' || *p == '_' || *p == '!')
            out[n++] = '!';
        out[n++] = *p;
    }
    out[n++] = '%';
    out[n] = '\0';
}

static int parse_ids(struct cli_cmd_ctx *ctx, const char *sub, struct filter *f)
{
    const char **ids = NULL;
    f->nids = cli_opt_all(ctx, "--id", &ids);
    for (int i = 0; i < f->nids; i++)
        if (dlq_parse_count(ids[i], 1, INT64_MAX, &f->ids[i]) != 0)
            return dlq_usage_fail(
                sub, "--id: expected a letter id (a whole number from 1), got \"%s\"", ids[i]);
    return EX_OK;
}

static int parse_filter(struct cli_cmd_ctx *ctx, const char *sub, struct filter *f)
{
    const char *v;
    int code;
    memset(f, 0, sizeof(*f));
    f->queue = cli_opt(ctx, "--queue");
    f->event_code = cli_opt(ctx, "--event-code");
    f->event_id = cli_opt(ctx, "--event-id");
    f->fingerprint = cli_opt(ctx, "--fingerprint");
    f->replayed = cli_opt(ctx, "--replayed") != NULL;
    f->all = cli_opt(ctx, "--all") != NULL;
    if ((v = cli_opt(ctx, "--error-like")) != NULL) {
        if (*v == '\0' || strlen(v) > ERROR_LIKE_MAX)
            return dlq_usage_fail(
                sub, "--error-like: expected 1 to %d characters of the error text", ERROR_LIKE_MAX);
        like_pattern(v, f->error_like, sizeof(f->error_like));
    }
    if ((v = cli_opt(ctx, "--since")) != NULL && (code = parse_bound(sub, "--since", v, &f->since)))
        return code;
    if ((v = cli_opt(ctx, "--until")) != NULL && (code = parse_bound(sub, "--until", v, &f->until)))
        return code;
    return parse_ids(ctx, sub, f);
}

/* Any selection at all (replay and purge refuse to act on nothing said)? */
static int filter_selects(const struct filter *f)
{
    return f->queue || f->event_code || f->event_id || f->fingerprint || f->error_like[0] ||
           f->since.kind || f->until.kind || f->replayed || f->nids > 0;
}

/* ---- WHERE clauses: fixed SQL text, the values as parameters ---------------- */

static void where_add(struct where *w, const char *clause)
{
    int n = snprintf(w->sql + w->len, sizeof(w->sql) - w->len, "%s%s", w->len ? " AND " : " WHERE ",
                     clause);
    if (n > 0 && (size_t)n < sizeof(w->sql) - w->len)
        w->len += (size_t)n; /* the clauses are ours and short: it always fits */
}

void dlq_where_param(struct where *w, const char *clause, struct oq_db_param p)
{
    where_add(w, clause);
    w->p[w->n++] = p;
}

static void where_bound(struct where *w, const struct bound *b, int lower)
{
    switch (b->kind) {
    case BOUND_DB_CLOCK:
        dlq_where_param(w, lower ? "dead_at >= ?" : "dead_at < ?", OQ_STR(b->at));
        break;
    case BOUND_UTC:
        dlq_where_param(w,
                        lower ? "dead_at >= CONVERT_TZ(?, '+00:00', @@session.time_zone)"
                              : "dead_at < CONVERT_TZ(?, '+00:00', @@session.time_zone)",
                        OQ_STR(b->at));
        break;
    case BOUND_AGO:
        dlq_where_param(w,
                        lower ? "dead_at >= NOW(6) - INTERVAL ? MICROSECOND"
                              : "dead_at < NOW(6) - INTERVAL ? MICROSECOND",
                        OQ_INT(b->ago_us));
        break;
    case BOUND_NONE:
        break;
    }
}

static void where_ids(struct where *w, const struct filter *f)
{
    char clause[16 + 2 * CLI_MAX_ARGS] = "id IN (";
    size_t len = strlen(clause);
    for (int i = 0; i < f->nids; i++) {
        clause[len++] = i ? ',' : '?';
        if (i)
            clause[len++] = '?';
        w->p[w->n++] = OQ_INT(f->ids[i]);
    }
    clause[len++] = ')';
    clause[len] = '\0';
    where_add(w, clause);
}

void dlq_where_from_filter(struct where *w, const struct filter *f)
{
    memset(w, 0, sizeof(*w));
    if (f->queue)
        dlq_where_param(w, "queue = ?", OQ_STR(f->queue));
    if (f->event_code)
        dlq_where_param(w, "event_code = ?", OQ_STR(f->event_code));
    if (f->event_id)
        dlq_where_param(w, "event_identifier = ?", OQ_STR(f->event_id));
    if (f->fingerprint)
        dlq_where_param(w, "fingerprint = ?", OQ_STR(f->fingerprint));
    if (f->error_like[0])
        dlq_where_param(w, "error LIKE ? ESCAPE '!'", OQ_STR(f->error_like));
    where_bound(w, &f->since, 1);
    where_bound(w, &f->until, 0);
    if (f->replayed)
        where_add(w, "replay_count > 0");
    if (f->nids > 0)
        where_ids(w, f);
}

/* ---- output helpers ----------------------------------------------------------- */

/* Characters on screen (UTF-8 continuation bytes take no room). */
static size_t display_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static size_t terminal_columns(void)
{
    struct winsize ws;
    long long cols = 0;
    const char *env = getenv("COLUMNS");
    if (cli_stdout_is_tty() && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    if (env != NULL && dlq_parse_count(env, 40, 10000, &cols) == 0)
        return (size_t)cols;
    return 160;
}

/* Copy one row in; control characters (a newline in an error) become spaces
 * so that a row stays one line. Returns 0 or OQ_ENOMEM. */
int dlq_table_add(struct table *t, const char *const *v)
{
    if (t->rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char **cell = realloc(t->cell, cap * t->cols * sizeof(*cell));
        if (cell == NULL)
            return OQ_ENOMEM;
        t->cell = cell;
        t->cap = cap;
    }
    char **row = &t->cell[t->rows * t->cols];
    for (unsigned c = 0; c < t->cols; c++) {
        row[c] = strdup(v[c] ? v[c] : "-");
        if (row[c] == NULL) {
            while (c-- > 0)
                free(row[c]);
            return OQ_ENOMEM;
        }
        for (char *p = row[c]; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = ' ';
    }
    t->rows++;
    return 0;
}

void dlq_table_free(struct table *t)
{
    for (size_t i = 0; i < t->rows * t->cols; i++)
        free(t->cell[i]);
    free(t->cell);
    t->cell = NULL;
    t->rows = t->cap = 0;
}

static void put_padded(const char *s, size_t width, int last)
{
    fputs(s, stdout);
    if (last) {
        fputc('\n', stdout);
        return;
    }
    for (size_t w = display_width(s); w < width + 2; w++)
        fputc(' ', stdout);
}

/* Print with aligned columns; column `squeeze` (or -1) is cut so that a row
 * fits the terminal. */
void dlq_table_print(const struct table *t, int squeeze)
{
    size_t width[32] = {0}, used = 0;
    for (unsigned c = 0; c < t->cols; c++) {
        width[c] = display_width(t->head[c]);
        for (size_t r = 0; r < t->rows; r++) {
            size_t w = display_width(t->cell[r * t->cols + c]);
            width[c] = w > width[c] ? w : width[c];
        }
        used += width[c] + 2;
    }
    if (squeeze >= 0) {
        size_t cols = terminal_columns(), others = used - width[squeeze] - 2;
        size_t room = cols > others + 12 ? cols - others - 2 : 10;
        width[squeeze] = width[squeeze] < room ? width[squeeze] : room;
    }
    for (unsigned c = 0; c < t->cols; c++)
        put_padded(t->head[c], width[c], c + 1 == t->cols);
    for (size_t r = 0; r < t->rows; r++)
        for (unsigned c = 0; c < t->cols; c++) {
            const char *s = t->cell[r * t->cols + c];
            char cut[2048];
            if ((int)c == squeeze && display_width(s) > width[c]) {
                oq_cut_utf8(s, cut, width[c] + 1 < sizeof(cut) ? width[c] + 1 : sizeof(cut));
                s = cut;
            }
            put_padded(s, width[c], c + 1 == t->cols);
        }
}

/* A row's fields as JSON members: numbers (bit i of numeric) bare, the
 * rest as strings, NULL as null. first: no comma before the first one. */
static void json_fields(const char *const *names, const char *const *v, unsigned n,
                        unsigned numeric, int first)
{
    for (unsigned i = 0; i < n; i++) {
        printf("%s\"%s\": ", first && i == 0 ? "" : ", ", names[i]);
        if (v[i] == NULL)
            fputs("null", stdout);
        else if (numeric & (1u << i))
            fputs(v[i], stdout);
        else
            oq_json_fputs(stdout, v[i]);
    }
}

void dlq_json_object(const char *const *names, const char *const *v, unsigned n, unsigned numeric)
{
    fputc('{', stdout);
    json_fields(names, v, n, numeric, 1);
    fputc('}', stdout);
}

/* ---- JSON pretty-printing: yajl's parser feeding yajl_gen (json_reformat) ---- */

static int rf_null(void *g)
{
    return yajl_gen_null(g) == yajl_gen_status_ok;
}
static int rf_boolean(void *g, int b)
{
    return yajl_gen_bool(g, b) == yajl_gen_status_ok;
}
static int rf_number(void *g, const char *s, size_t len)
{
    return yajl_gen_number(g, s, len) == yajl_gen_status_ok; /* its text kept as it was */
}
static int rf_string(void *g, const unsigned char *s, size_t len)
{
    return yajl_gen_string(g, s, len) == yajl_gen_status_ok;
}
static int rf_start_map(void *g)
{
    return yajl_gen_map_open(g) == yajl_gen_status_ok;
}
static int rf_end_map(void *g)
{
    return yajl_gen_map_close(g) == yajl_gen_status_ok;
}
static int rf_start_array(void *g)
{
    return yajl_gen_array_open(g) == yajl_gen_status_ok;
}
static int rf_end_array(void *g)
{
    return yajl_gen_array_close(g) == yajl_gen_status_ok;
}

static const yajl_callbacks reformat_callbacks = {
    rf_null,      rf_boolean, NULL,       NULL,           rf_number,    rf_string,
    rf_start_map, rf_string,  rf_end_map, rf_start_array, rf_end_array,
};

/* Write JSON text to out (NULL: only check it), pretty (4-space indent) or
 * compact. Returns 0, or -1 (nothing written) when it is not one JSON value. */
static int json_reformat(const char *text, size_t len, int pretty, FILE *out)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    yajl_handle h = NULL;
    int rc = -1;
    if (g == NULL)
        return -1;
    yajl_gen_config(g, yajl_gen_beautify, pretty);
    yajl_gen_config(g, yajl_gen_indent_string, "    ");
    h = yajl_alloc(&reformat_callbacks, NULL, g);
    if (h == NULL)
        goto out;
    if (yajl_parse(h, (const unsigned char *)text, len) != yajl_status_ok ||
        yajl_complete_parse(h) != yajl_status_ok)
        goto out;
    const unsigned char *buf = NULL;
    size_t buflen = 0;
    yajl_gen_get_buf(g, &buf, &buflen);
    while (buflen > 0 && buf[buflen - 1] == '\n')
        buflen--;
    if (out != NULL)
        fwrite(buf, 1, buflen, out);
    rc = 0;
out:
    if (h != NULL)
        yajl_free(h);
    yajl_gen_free(g);
    return rc;
}

static void hex_dump(const unsigned char *s, size_t len)
{
    for (size_t off = 0; off < len; off += 16) {
        printf("%08zx  ", off);
        for (size_t i = 0; i < 16; i++) {
            if (off + i < len)
                printf("%02x ", s[off + i]);
            else
                fputs("   ", stdout);
            if (i == 7)
                fputc(' ', stdout);
        }
        fputs(" |", stdout);
        for (size_t i = 0; i < 16 && off + i < len; i++)
            fputc(s[off + i] >= 0x20 && s[off + i] < 0x7f ? s[off + i] : '.', stdout);
        fputs("|\n", stdout);
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* HEX(body) back into bytes: the row reader hands over NUL-terminated
 * text, which a binary body is not. The caller frees *out. */
int dlq_hex_decode(const char *hex, unsigned char **out, size_t *len)
{
    size_t n = strlen(hex);
    *out = NULL;
    *len = 0;
    if (n % 2 != 0)
        return OQ_EINVAL;
    unsigned char *b = malloc(n / 2 + 1);
    if (b == NULL)
        return OQ_ENOMEM;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return OQ_EINVAL;
        }
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    b[n / 2] = '\0';
    *out = b;
    *len = n / 2;
    return 0;
}

/* ---- what every subcommand shares ------------------------------------------- */

int dlq_db_fail(const struct dlq *d, const char *what)
{
    cli_fail("dlq %s: %s: %s", d->sub, what, oq_db_error(d->db));
    return EX_UNAVAILABLE;
}

/* Up to 16 columns of one row, copied (the row reader's are borrowed). */
struct row_copy {
    char *v[16];
    unsigned n;
    int found;
};

static int copy_row(void *ctx, const char *const *v, unsigned n)
{
    struct row_copy *rc = ctx;
    rc->found = 1;
    rc->n = n < 16 ? n : 16;
    for (unsigned i = 0; i < rc->n; i++)
        if (v[i] != NULL && (rc->v[i] = strdup(v[i])) == NULL)
            return 1;
    return 1; /* one row is all we want */
}

static void row_copy_clear(struct row_copy *rc)
{
    for (unsigned i = 0; i < rc->n; i++)
        free(rc->v[i]);
    memset(rc, 0, sizeof(*rc));
}

/* ---- list ---------------------------------------------------------------------- */

static const char *const list_names[] = {
    "id",          "dead_at",          "queue",        "exchange_name", "routing_key",
    "event_code",  "event_identifier", "attempts",     "error_class",   "error",
    "fingerprint", "body_size",        "replay_count", "replayed_at",   "replayed_by"};
#define LIST_NUMERIC ((1u << 0) | (1u << 7) | (1u << 11) | (1u << 12))

struct list_out {
    int json, rows;
    struct table t;
};

static int list_row(void *ctx, const char *const *v, unsigned n)
{
    struct list_out *o = ctx;
    if (o->json) {
        fputs(o->rows++ ? ",\n " : "[", stdout);
        dlq_json_object(list_names, v, n, LIST_NUMERIC);
        return 0;
    }
    char dead_at[20];
    snprintf(dead_at, sizeof(dead_at), "%s", v[1] ? v[1] : "-"); /* to the second */
    const char *cells[] = {v[0], dead_at, v[2], v[5], v[6], v[7], v[8], v[9], v[12]};
    o->rows++;
    return dlq_table_add(&o->t, cells) != 0;
}

static int dlq_list(struct dlq *d)
{
    static const char *const head[] = {"ID",       "DEAD_AT",     "QUEUE", "EVENT_CODE", "EVENT_ID",
                                       "ATTEMPTS", "ERROR_CLASS", "ERROR", "REPLAYS"};
    const char *limit_text = cli_opt(d->ctx, "--limit");
    long long limit = 50;
    struct where w;
    char sql[3072];
    struct list_out o = {d->json, 0, {head, 9, NULL, 0, 0}};

    if (limit_text && dlq_parse_count(limit_text, 1, 1000000, &limit) != 0)
        return dlq_usage_fail(
            d->sub, "--limit: expected a whole number from 1 to 1000000, got \"%s\"", limit_text);
    dlq_where_from_filter(&w, &d->f);
    w.p[w.n++] = OQ_INT(limit);
    snprintf(sql, sizeof(sql),
             "SELECT id, dead_at, queue, exchange_name, routing_key, event_code, event_identifier,"
             " attempts, error_class, error, fingerprint, body_size, replay_count, replayed_at,"
             " replayed_by FROM dead_letter%s ORDER BY dead_at DESC, id DESC LIMIT ?",
             w.sql);
    if (oq_db_query_rows(d->db, sql, w.p, w.n, list_row, &o) != 0) {
        dlq_table_free(&o.t);
        return dlq_db_fail(d, "reading dead letters");
    }
    if (o.json)
        fputs(o.rows ? "]\n" : "[]\n", stdout);
    else if (o.rows == 0)
        puts("(no dead letters match)");
    else
        dlq_table_print(&o.t, 7);
    if (!o.json && o.rows == limit)
        fprintf(stderr, "(the newest %lld shown; --limit N for more)\n", limit);
    dlq_table_free(&o.t);
    return EX_OK;
}

/* ---- show ----------------------------------------------------------------------- */

/* Two reads, as the row reader takes at most 16 columns. */
static const char *const show_names_a[] = {
    "id",         "letter_key",       "queue",          "exchange_name", "routing_key",
    "event_code", "event_identifier", "error_class",    "error",         "fingerprint",
    "attempts",   "first_failed_at",  "last_failed_at", "dead_at",       "dead_host",
    "dead_pid"};
#define SHOW_NUMERIC_A ((1u << 0) | (1u << 10) | (1u << 15))
static const char *const show_names_b[] = {"replay_count", "replayed_at", "replayed_by",
                                           "body_size"};
#define SHOW_NUMERIC_B ((1u << 0) | (1u << 3))

enum body_kind { BODY_JSON, BODY_TEXT, BODY_BINARY };

static enum body_kind body_kind_of(const unsigned char *body, size_t len)
{
    if (!oq_utf8_valid((const char *)body, len))
        return BODY_BINARY;
    return len > 0 && json_reformat((const char *)body, len, 0, NULL) == 0 ? BODY_JSON : BODY_TEXT;
}

static void show_json_field(const char *name, const char *text)
{
    printf(", \"%s\": ", name);
    if (text == NULL || json_reformat(text, strlen(text), 0, stdout) != 0)
        oq_json_fputs(stdout, text ? text : ""); /* not JSON after all: keep it as text */
}

static void show_as_json(const struct row_copy *a, const struct row_copy *b,
                         const unsigned char *body, size_t len, enum body_kind kind)
{
    static const char *const kinds[] = {"json", "text", "binary"};
    fputc('{', stdout);
    json_fields(show_names_a, (const char *const *)a->v, a->n, SHOW_NUMERIC_A, 1);
    json_fields(show_names_b, (const char *const *)b->v, 4, SHOW_NUMERIC_B, 0);
    show_json_field("properties", b->v[4]);
    show_json_field("headers", b->v[5]);
    printf(", \"body_kind\": \"%s\", ", kinds[kind]);
    if (kind == BODY_BINARY) {
        fputs("\"body_hex\": ", stdout);
        oq_json_fputs(stdout, b->v[6]);
    } else {
        fputs("\"body\": ", stdout);
        oq_json_fputs(stdout, (const char *)body); /* UTF-8 without NULs: whole */
    }
    (void)len;
    fputs("}\n", stdout);
}

static void show_as_text(const struct row_copy *a, const struct row_copy *b,
                         const unsigned char *body, size_t len, enum body_kind kind)
{
    for (unsigned i = 0; i < a->n; i++)
        printf("%-18s%s\n", show_names_a[i], a->v[i] ? a->v[i] : "-");
    for (unsigned i = 0; i < 3; i++)
        printf("%-18s%s\n", show_names_b[i], b->v[i] && b->v[i][0] ? b->v[i] : "-");
    printf("%-18s", "properties");
    if (json_reformat(b->v[4], strlen(b->v[4]), 0, stdout) != 0)
        fputs(b->v[4], stdout);
    fputs("\n\nheaders:\n", stdout);
    if (json_reformat(b->v[5], strlen(b->v[5]), 1, stdout) != 0)
        fputs(b->v[5], stdout);
    static const char *const kinds[] = {"JSON", "text", "binary, as a hex dump"};
    printf("\n\nbody: %zu bytes%s%s\n", len, len ? ", " : "", len ? kinds[kind] : "");
    if (kind == BODY_BINARY)
        hex_dump(body, len);
    else if (kind == BODY_JSON && json_reformat((const char *)body, len, 1, stdout) == 0)
        fputc('\n', stdout);
    else {
        fwrite(body, 1, len, stdout);
        if (len > 0 && body[len - 1] != '\n')
            fputc('\n', stdout);
    }
}

static int dlq_show(struct dlq *d)
{
    long long id = 0;
    struct row_copy a = {0}, b = {0};
    unsigned char *body = NULL;
    size_t len = 0;
    int code = EX_OK;

    if (dlq_parse_count(d->ctx->pos[1], 1, INT64_MAX, &id) != 0)
        return dlq_usage_fail(d->sub, "expected a letter id (a whole number from 1), got \"%s\"",
                              d->ctx->pos[1]);
    struct oq_db_param p[] = {OQ_INT(id)};
    int rc = oq_db_query_rows(
        d->db,
        "SELECT id, letter_key, queue, exchange_name, routing_key, event_code, event_identifier,"
        " error_class, error, fingerprint, attempts, first_failed_at, last_failed_at, dead_at,"
        " dead_host, dead_pid FROM dead_letter WHERE id = ?",
        p, 1, copy_row, &a);
    if (rc == 0 || rc == OQ_EINTR)
        rc = oq_db_query_rows(d->db,
                              "SELECT replay_count, replayed_at, replayed_by, body_size,"
                              " properties, headers, HEX(body) FROM dead_letter WHERE id = ?",
                              p, 1, copy_row, &b);
    if (rc != 0 && rc != OQ_EINTR) {
        code = dlq_db_fail(d, "reading the letter");
        goto out;
    }
    if (!a.found || !b.found || b.n < 7 || b.v[4] == NULL || b.v[5] == NULL || b.v[6] == NULL) {
        cli_fail("dlq show: no dead letter %lld", id);
        code = 1;
        goto out;
    }
    if (dlq_hex_decode(b.v[6], &body, &len) != 0) {
        cli_fail("dlq show: letter %lld: the body could not be read", id);
        code = EX_SOFTWARE;
        goto out;
    }
    enum body_kind kind = body_kind_of(body, len);
    if (d->json)
        show_as_json(&a, &b, body, len, kind);
    else
        show_as_text(&a, &b, body, len, kind);
out:
    free(body);
    row_copy_clear(&a);
    row_copy_clear(&b);
    return code;
}

/* ---- stats ---------------------------------------------------------------------- */

/* GROUP_CONCAT's separator for queue names: a byte no queue name holds. */
#define QUEUE_SEP '\x1f'

struct stats_out {
    int json, rows;
    struct table t;
};

static void json_queue_array(const char *joined)
{
    fputc('[', stdout);
    for (const char *p = joined; p && *p;) {
        const char *end = strchr(p, QUEUE_SEP);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)len, p);
        if (p != joined)
            fputs(", ", stdout);
        oq_json_fputs(stdout, name);
        p = end ? end + 1 : NULL;
    }
    fputc(']', stdout);
}

/* fingerprint, error_class, count, oldest, newest, queues */
static int fingerprint_row(void *ctx, const char *const *v, unsigned n)
{
    static const char *const names[] = {"fingerprint", "error_class", "count", "oldest", "newest"};
    struct stats_out *o = ctx;
    (void)n;
    if (o->json) {
        fputs(o->rows++ ? ",\n  {" : "\n  {", stdout);
        json_fields(names, v, 5, 1u << 2, 1);
        fputs(", \"queues\": ", stdout);
        json_queue_array(v[5]);
        fputc('}', stdout);
        return 0;
    }
    char queues[1024];
    snprintf(queues, sizeof(queues), "%s", v[5] ? v[5] : "");
    for (char *p = queues; *p; p++)
        if (*p == QUEUE_SEP)
            *p = ',';
    const char *cells[] = {v[2], v[1], v[3], v[4], queues, v[0]};
    o->rows++;
    return dlq_table_add(&o->t, cells) != 0;
}

/* queue, count, replayed, oldest, newest */
static int queue_row(void *ctx, const char *const *v, unsigned n)
{
    static const char *const names[] = {"queue", "count", "replayed", "oldest", "newest"};
    struct stats_out *o = ctx;
    if (o->json) {
        fputs(o->rows++ ? ",\n  " : "\n  ", stdout);
        dlq_json_object(names, v, n, (1u << 1) | (1u << 2));
        return 0;
    }
    const char *cells[] = {v[1], v[2], v[3], v[4], v[0]};
    o->rows++;
    return dlq_table_add(&o->t, cells) != 0;
}

static int stats_group(struct dlq *d, const struct where *w, const char *title, const char *sql_fmt,
                       const char *const *head, unsigned cols, oq_db_row_fn on_row)
{
    struct stats_out o = {d->json, 0, {head, cols, NULL, 0, 0}};
    char sql[3072];
    snprintf(sql, sizeof(sql), sql_fmt, w->sql);
    if (d->json)
        printf(",\n \"%s\": [", title);
    if (oq_db_query_rows(d->db, sql, w->p, w->n, on_row, &o) != 0) {
        dlq_table_free(&o.t);
        return dlq_db_fail(d, "counting dead letters");
    }
    if (d->json)
        fputs(o.rows ? "\n ]" : "]", stdout);
    else if (o.rows > 0) {
        printf("\nby %s:\n", title + 3);
        dlq_table_print(&o.t, (int)cols - 1);
    }
    dlq_table_free(&o.t);
    return EX_OK;
}

static int dlq_stats(struct dlq *d)
{
    static const char *const names[] = {"total", "replayed", "body_bytes", "oldest", "newest"};
    static const char *const fp_head[] = {"COUNT",  "ERROR_CLASS", "OLDEST",
                                          "NEWEST", "QUEUES",      "FINGERPRINT"};
    static const char *const queue_head[] = {"COUNT", "REPLAYED", "OLDEST", "NEWEST", "QUEUE"};
    struct where w;
    struct row_copy tot = {0};
    char sql[3072];
    int code;

    dlq_where_from_filter(&w, &d->f);
    snprintf(sql, sizeof(sql),
             "SELECT COUNT(*), COALESCE(SUM(replay_count > 0), 0), COALESCE(SUM(body_size), 0),"
             " DATE_FORMAT(MIN(dead_at), '%%Y-%%m-%%d %%H:%%i:%%s'),"
             " DATE_FORMAT(MAX(dead_at), '%%Y-%%m-%%d %%H:%%i:%%s') FROM dead_letter%s",
             w.sql);
    int rc = oq_db_query_rows(d->db, sql, w.p, w.n, copy_row, &tot);
    if ((rc != 0 && rc != OQ_EINTR) || tot.n < 5) {
        row_copy_clear(&tot);
        return dlq_db_fail(d, "counting dead letters");
    }
    if (d->json) {
        fputc('{', stdout);
        json_fields(names, (const char *const *)tot.v, 5, 7u, 1);
    } else {
        printf("%s dead letters, %s of them replayed, %s bytes of bodies", tot.v[0], tot.v[1],
               tot.v[2]);
        if (tot.v[3] != NULL)
            printf("; oldest %s, newest %s", tot.v[3], tot.v[4]);
        fputc('\n', stdout);
    }
    code = stats_group(d, &w, "by_fingerprint",
                       "SELECT fingerprint, error_class, COUNT(*),"
                       " DATE_FORMAT(MIN(dead_at), '%%Y-%%m-%%d %%H:%%i:%%s'),"
                       " DATE_FORMAT(MAX(dead_at), '%%Y-%%m-%%d %%H:%%i:%%s'),"
                       " GROUP_CONCAT(DISTINCT queue ORDER BY queue SEPARATOR '\x1f')"
                       " FROM dead_letter%s GROUP BY fingerprint, error_class"
                       " ORDER BY COUNT(*) DESC, fingerprint",
                       fp_head, 6, fingerprint_row);
    if (code == EX_OK)
        code = stats_group(d, &w, "by_queue",
                           "SELECT queue, COUNT(*), SUM(replay_count > 0),"
                           " DATE_FORMAT(MIN(dead_at), '%%Y-%%m-%%d %%H:%%i:%%s'),"
                           " DATE_FORMAT(MAX(dead_at), '%%Y-%%m-%%d %%H:%%i:%%s')"
                           " FROM dead_letter%s GROUP BY queue ORDER BY COUNT(*) DESC, queue",
                           queue_head, 5, queue_row);
    if (code == EX_OK && d->json)
        fputs("\n}\n", stdout);
    row_copy_clear(&tot);
    return code;
}

/* ---- which letters replay and purge act on ------------------------------------ */

int dlq_check_selection(const struct dlq *d)
{
    if (d->f.all && filter_selects(&d->f))
        return dlq_usage_fail(d->sub, "--all means every letter: give it without --id or filters");
    if (!d->f.all && !filter_selects(&d->f))
        return dlq_usage_fail(d->sub, "say which letters: --id N, filters (--queue, --fingerprint, "
                                      "--since, ...) or --all");
    return EX_OK;
}

/* How many letters match, and the highest id among them: later work stops
 * there, so letters archived meanwhile (a replayed letter failing again
 * comes back as a new row) are not taken in the same run. */
int dlq_selection_size(struct dlq *d, const struct where *w, long long *count, long long *max_id)
{
    struct row_copy rc = {0};
    char sql[3072];
    snprintf(sql, sizeof(sql), "SELECT COUNT(*), COALESCE(MAX(id), 0) FROM dead_letter%s", w->sql);
    int r = oq_db_query_rows(d->db, sql, w->p, w->n, copy_row, &rc);
    if ((r != 0 && r != OQ_EINTR) || rc.n < 2 || rc.v[0] == NULL || rc.v[1] == NULL) {
        row_copy_clear(&rc);
        return dlq_db_fail(d, "counting dead letters");
    }
    *count = strtoll(rc.v[0], NULL, 10);
    *max_id = strtoll(rc.v[1], NULL, 10);
    row_copy_clear(&rc);
    return EX_OK;
}

/* ---- purge ------------------------------------------------------------------------ */

/* Ask on the terminal; only "y" or "yes" agrees. */
static int confirmed(long long n)
{
    char answer[16] = "";
    fprintf(stderr, "Delete %lld dead letters? [y/N] ", n);
    fflush(stderr);
    if (fgets(answer, sizeof(answer), stdin) == NULL)
        return 0;
    answer[strcspn(answer, "\r\n")] = '\0';
    return strcmp(answer, "y") == 0 || strcmp(answer, "Y") == 0 || strcmp(answer, "yes") == 0;
}

/* Delete in chunks, each its own short statement, so the table is never
 * locked for long; stop at the highest id counted, so nothing archived
 * after the question is deleted. */
static int delete_chunks(struct dlq *d, const struct where *sel, long long max_id,
                         long long *deleted)
{
    struct where w = *sel;
    char sql[3072];
    uint64_t n = 0;
    int tty = isatty(STDERR_FILENO);
    dlq_where_param(&w, "id <= ?", OQ_INT(max_id));
    snprintf(sql, sizeof(sql), "DELETE FROM dead_letter%s ORDER BY id LIMIT %d", w.sql,
             PURGE_CHUNK);
    do {
        if (oq_db_execute(d->db, sql, w.p, w.n, &n) != 0) {
            if (tty)
                fputc('\n', stderr);
            cli_fail("dlq purge: %s (%lld deleted before)", oq_db_error(d->db), *deleted);
            return EX_UNAVAILABLE;
        }
        *deleted += (long long)n;
        if (tty)
            fprintf(stderr, "\rdeleted %lld", *deleted);
    } while (n > 0 && !cli_stop_signal);
    if (tty)
        fputc('\n', stderr);
    return EX_OK;
}

static int dlq_purge(struct dlq *d)
{
    struct where w;
    long long count = 0, max_id = 0, deleted = 0;
    int code;

    if ((code = dlq_check_selection(d)) != EX_OK)
        return code;
    dlq_where_from_filter(&w, &d->f);
    if ((code = dlq_selection_size(d, &w, &count, &max_id)) != EX_OK)
        return code;
    if (cli_opt(d->ctx, "--dry-run") != NULL) {
        printf(d->json ? "{\"dry_run\": true, \"would_delete\": %lld}\n"
                       : "would delete %lld dead letters (dry run: nothing changed)\n",
               count);
        return EX_OK;
    }
    if (count > 0 && cli_opt(d->ctx, "--yes") == NULL) {
        if (!isatty(STDIN_FILENO)) {
            cli_fail("dlq purge: %lld dead letters match; refusing to delete them without --yes "
                     "(stdin is not a terminal to ask on)",
                     count);
            return EX_USAGE;
        }
        if (!confirmed(count)) {
            fputs("nothing deleted\n", stderr);
            return 1;
        }
    }
    cli_catch_stop_signals();
    if (count > 0 && (code = delete_chunks(d, &w, max_id, &deleted)) != EX_OK)
        return code;
    printf(d->json ? "{\"deleted\": %lld}\n" : "deleted %lld dead letters\n", deleted);
    return cli_stop_signal ? 128 + (int)cli_stop_signal : EX_OK;
}

/* ---- the command -------------------------------------------------------------------- */

struct sub {
    const char *name;
    unsigned bit;
    int npos; /* with the subcommand's own name */
    int (*run)(struct dlq *d);
};

static const struct sub subs[] = {
    {"list", S_LIST, 1, dlq_list},    {"show", S_SHOW, 2, dlq_show},
    {"stats", S_STATS, 1, dlq_stats}, {"replay", S_REPLAY, 1, dlq_replay},
    {"purge", S_PURGE, 1, dlq_purge},
};

/* Each option given must be one of this subcommand's. */
static int check_options(const struct cli_cmd_ctx *ctx, const struct sub *s)
{
    for (int i = 0; opts[i].name != NULL; i++)
        if (ctx->nval[i] > 0 && !(opt_subs[i] & s->bit))
            return dlq_usage_fail(s->name, "%s is not an option of %s", opts[i].name, s->name);
    return EX_OK;
}

static int run(struct cli_cmd_ctx *ctx)
{
    struct dlq d;
    const struct sub *s = NULL;
    char err[OQ_ERRLEN];
    int code;

    for (size_t i = 0; ctx->npos > 0 && i < sizeof(subs) / sizeof(subs[0]); i++)
        if (strcmp(ctx->pos[0], subs[i].name) == 0)
            s = &subs[i];
    if (s == NULL)
        return dlq_usage_fail("", "expected list, show ID, stats, replay or purge%s%s%s",
                              ctx->npos ? ", got \"" : "", ctx->npos ? ctx->pos[0] : "",
                              ctx->npos ? "\"" : "");
    if (ctx->npos != s->npos)
        return s->npos == 2 ? dlq_usage_fail(s->name, "expected one letter id: dlq show ID")
                            : dlq_usage_fail(s->name, "unexpected argument \"%s\"", ctx->pos[1]);
    memset(&d, 0, sizeof(d));
    d.ctx = ctx;
    d.sub = s->name;
    d.json = cli_opt(ctx, "--json") != NULL;
    if ((code = check_options(ctx, s)) != EX_OK || (code = parse_filter(ctx, s->name, &d.f)))
        return code;
    int rc =
        oq_db_open(ctx->cfg->mysql_url, ctx->cfg->connect_timeout_ms, 0, &d.db, err, sizeof(err));
    if (rc != 0) {
        cli_fail("dlq %s: %s", s->name, err);
        return cli_exit_code(rc);
    }
    code = s->run(&d);
    oq_db_close(d.db);
    return code;
}

static void extra_help(FILE *out)
{
    fputs("Examples (the 3 a.m. recipe; docs/dlq.md has more):\n"
          "  orderq dlq stats                                 what is failing, by fingerprint\n"
          "  orderq dlq list --fingerprint 'permanent: ...'   those letters, newest first\n"
          "  orderq dlq show 1234                             one letter: error, headers, body\n"
          "  orderq dlq replay --fingerprint '...' --dry-run  what would go, where\n"
          "  orderq dlq replay --fingerprint '...' --rate 50  after the fix: send them back\n"
          "  orderq dlq purge --replayed --until 30d --yes    clear what was dealt with\n",
          out);
}

const struct cli_cmd cmd_dlq = {
    .name = "dlq",
    .summary = "Search, replay and purge the dead-letter store",
    .usage = "dlq list [FILTERS] [--limit N] | dlq show ID | dlq stats [FILTERS] |\n"
             "              dlq replay (--id N... | FILTERS | --all) [--dry-run] [--rate N]"
             " [--to-queue Q | --trust-headers] [--as NAME] [--force-resend] |\n"
             "              dlq purge (--id N... | FILTERS | --all) [--dry-run] [--yes]",
    .details =
        "list    letters newest first (ID, when, queue, event, attempts, error, replays)\n"
        "show    one letter: every column, its headers, its body (JSON pretty-printed, text\n"
        "        as it is, anything else as a hex dump); exit 1 when there is no such letter\n"
        "stats   counts by fingerprint (one problem, one fingerprint) and by queue\n"
        "replay  publish letters again, in id order, each confirmed by the broker and taken\n"
        "        by a queue before it is marked replayed (replay_count, replayed_at/_by).\n"
        "        Properties, headers and body as stored, but orderq's own headers (x-orderq-*,\n"
        "        x-death..., orderq-delay) are dropped so attempts start again at 1, and\n"
        "        x-orderq-replay-of = the letter id is added; user_id is amqp_url's user, the\n"
        "        proof the consumer needs to believe the x-orderq-* headers of a replay\n"
        "        (run replay as the consumers' user). Exit 69 when any failed (each\n"
        "        is listed, none of those is marked), 65 when any was skipped, 128+n on a\n"
        "        signal (the letters in flight are settled first). --force-resend adds\n"
        "        x-orderq-force-resend: a mail or webhook parked as ambiguous (ledger state\n"
        "        unknown) is sent again, with the same Message-ID / Idempotency-Key.\n"
        "        A letter orderq did not publish (its error starts \"not from orderq\") is\n"
        "        skipped unless --to-queue or --trust-headers says where it goes: the\n"
        "        exchange and routing key it names come from headers anyone can write.\n"
        "        A letter whose body is in the held queue (too big for a row) is skipped\n"
        "        too: its error names the queue (docs/dlq.md, \"Held letters\")\n"
        "purge   delete letters, 1000 at a time; asks first unless --yes (and refuses\n"
        "        without --yes when stdin is not a terminal)\n"
        "\n"
        "FILTERS (all must match): --queue, --event-code, --event-id, --error-like,\n"
        "--fingerprint, --since, --until, --replayed. Times are UTC, as dead_at is shown\n"
        "(orderq's MySQL sessions run in UTC); a trailing Z is allowed; --until is exclusive.\n",
    .opts = opts,
    .run = run,
    .extra_help = extra_help,
};
