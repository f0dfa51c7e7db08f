/* dlq.h - what `orderq dlq`'s subcommands share (cmd_dlq.c, dlq_replay.c)
 *
 * The selection every subcommand but show works on (filters turned into a
 * WHERE clause whose values are statement parameters), the buffered text
 * table, and small helpers. Internal to the command line.
 */
#ifndef ORDERQ_CLI_DLQ_H
#define ORDERQ_CLI_DLQ_H

#include <stddef.h>

#include "cli.h"
#include "orderq/db.h"

#define ERROR_LIKE_MAX 1024 /* the error column's width */

enum bound_kind { BOUND_NONE, BOUND_DB_CLOCK, BOUND_UTC, BOUND_AGO };

struct bound {
    enum bound_kind kind;
    char at[48]; /* "2026-11-22 10:00:00.000000" */
    long long ago_us;
};

struct filter {
    const char *queue, *event_code, *event_id, *fingerprint;
    char error_like[2 * ERROR_LIKE_MAX + 8]; /* "%text%", escaped; "" when not given */
    struct bound since, until;
    long long ids[CLI_MAX_ARGS];
    int nids, replayed, all;
};

struct where {
    char sql[2048];
    size_t len;
    struct oq_db_param p[CLI_MAX_ARGS + 16];
    size_t n;
};

/* A table buffered to size its columns. */
struct table {
    const char *const *head;
    unsigned cols;
    char **cell; /* rows x cols */
    size_t rows, cap;
};

struct dlq {
    struct cli_cmd_ctx *ctx;
    const char *sub;
    struct oq_db *db;
    struct filter f;
    int json;
};

/* "orderq: dlq SUB: message" and a hint on stderr; returns EX_USAGE. */
int dlq_usage_fail(const char *sub, const char *fmt, ...) OQ_PRINTF(2, 3);

/* A whole number in [min, max]. Returns 0 or -1. */
int dlq_parse_count(const char *text, long long min, long long max, long long *out);

/* The filters of d as a WHERE clause with its parameters. */
void dlq_where_from_filter(struct where *w, const struct filter *f);
void dlq_where_param(struct where *w, const char *clause, struct oq_db_param p);

/* replay and purge need --id, filters or --all: 0, or EX_USAGE (said). */
int dlq_check_selection(const struct dlq *d);

/* How many letters w selects, and the highest id among them (the set is
 * fixed at that id, so letters archived meanwhile are not acted on). */
int dlq_selection_size(struct dlq *d, const struct where *w, long long *count, long long *max_id);

/* Report a database failure of d's subcommand; returns EX_UNAVAILABLE. */
int dlq_db_fail(const struct dlq *d, const char *what);

/* HEX(body) back into bytes (the caller frees *out). Returns 0, OQ_EINVAL
 * or OQ_ENOMEM. */
int dlq_hex_decode(const char *hex, unsigned char **out, size_t *len);

/* One row as a JSON object on stdout; bit i of numeric: column i is a
 * number. */
void dlq_json_object(const char *const *names, const char *const *v, unsigned n, unsigned numeric);

int dlq_table_add(struct table *t, const char *const *v);
void dlq_table_print(const struct table *t, int squeeze);
void dlq_table_free(struct table *t);

/* `orderq dlq replay` (dlq_replay.c). */
int dlq_replay(struct dlq *d);

#endif
