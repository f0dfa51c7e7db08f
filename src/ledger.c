/* ledger.c - the dedup ledger (event_ledger): claim effects, exactly once */
#include "orderq/ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderq/db.h"

#define CLAIM_COLUMNS 6

struct returned {
    struct oq_claim *claims;
    size_t n;
};

/* Mark the first unclaimed claim with this (handler, key). */
static int on_returned(void *ctx, const char *const *v, unsigned cols)
{
    struct returned *r = ctx;
    if (cols < 2 || v[0] == NULL || v[1] == NULL)
        return 0;
    for (size_t i = 0; i < r->n; i++) {
        struct oq_claim *c = &r->claims[i];
        if (!c->claimed && strcmp(c->handler, v[0]) == 0 && strcmp(c->effect_key, v[1]) == 0) {
            c->claimed = 1;
            break;
        }
    }
    return 0;
}

int oq_ledger_claim(struct oq_db *db, const char *owner, struct oq_claim *claims, size_t n,
                    char *err, size_t errlen)
{
    static const char head[] = "INSERT IGNORE INTO event_ledger (handler, effect_key,"
                               " event_identifier, event_code, owner, result, state, executed_at)"
                               " VALUES ";
    static const char row[] = "(?, ?, ?, ?, ?, ?, 'done', NOW(6))";
    static const char tail[] = " RETURNING handler, effect_key";
    size_t len = sizeof(head) + n * (sizeof(row) + 1) + sizeof(tail);
    char *sql = malloc(len);
    struct oq_db_param *p = calloc(n * CLAIM_COLUMNS + 1, sizeof(*p));
    struct returned r = {claims, n};
    int rc = OQ_ENOMEM;

    if (n == 0) {
        rc = 0;
        goto out;
    }
    if (sql == NULL || p == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    size_t used = (size_t)snprintf(sql, len, "%s", head);
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(sql + used, len - used, "%s%s", i ? "," : "", row);
        struct oq_claim *c = &claims[i];
        c->claimed = 0;
        p[i * CLAIM_COLUMNS + 0] = OQ_STR(c->handler);
        p[i * CLAIM_COLUMNS + 1] = OQ_STR(c->effect_key);
        p[i * CLAIM_COLUMNS + 2] = OQ_STR(c->event_identifier);
        p[i * CLAIM_COLUMNS + 3] = OQ_STR(c->event_code);
        p[i * CLAIM_COLUMNS + 4] = OQ_STR(owner);
        p[i * CLAIM_COLUMNS + 5] = OQ_STR(c->result ? c->result : "");
    }
    snprintf(sql + used, len - used, "%s", tail);
    rc = oq_db_query_rows(db, sql, p, n * CLAIM_COLUMNS, on_returned, &r);
    if (rc != 0)
        snprintf(err, errlen, "claiming %zu effects in event_ledger: %s", n, oq_db_error(db));
out:
    free(sql);
    free(p);
    return rc;
}

int oq_ledger_unclaim(struct oq_db *db, const char *handler, const char *effect_key, char *err,
                      size_t errlen)
{
    struct oq_db_param p[] = {OQ_STR(handler), OQ_STR(effect_key)};
    if (oq_db_execute(db, "DELETE FROM event_ledger WHERE handler = ? AND effect_key = ?", p, 2,
                      NULL) != 0) {
        snprintf(err, errlen, "withdrawing a claim: %s", oq_db_error(db));
        return OQ_EDB;
    }
    return 0;
}
