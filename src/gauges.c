/* gauges.c - the database gauges of /metrics, read by one background thread */
#include "orderq/gauges.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/log.h"
#include "orderq/metrics.h"

struct oq_gauges {
    const struct oq_config *cfg;
    pthread_t thread;
    volatile sig_atomic_t stop;
    struct oq_db *db;
    int failures;
    unsigned db_tries; /* oq_db_reopen counts the reconnects */
};

static int64_t number(const char *v)
{
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

static int on_outbox(void *ctx, const char *const *v, unsigned n)
{
    (void)ctx;
    if (n >= 2) {
        oq_metric_set(OQ_M_OUTBOX_BACKLOG, number(v[0]));
        oq_metric_set(OQ_M_OUTBOX_OLDEST_AGE, number(v[1]));
    }
    return 0;
}

static int on_ledger(void *ctx, const char *const *v, unsigned n)
{
    (void)ctx;
    if (n >= 2) {
        oq_metrics_set_ledger_rows(OQ_LEDGER_SENDING, number(v[0]));
        oq_metrics_set_ledger_rows(OQ_LEDGER_UNKNOWN, number(v[1]));
    }
    return 0;
}

/* Dead letters by class, read whole before the gauges change, so a class
 * that has none left shows 0 and a failed read keeps the last values. */
struct class_counts {
    char name[8][33];
    int64_t n[9]; /* and "other" after the last */
    size_t count;
    int64_t other;
};

static int on_class_row(void *ctx, const char *const *v, unsigned n)
{
    struct class_counts *c = ctx;
    if (n < 2)
        return 0;
    if (c->count < 8 && v[0] != NULL) {
        snprintf(c->name[c->count], sizeof(c->name[0]), "%s", v[0]);
        c->n[c->count++] = number(v[1]);
    } else {
        c->other += number(v[1]);
    }
    return 0;
}

static int read_dead_letters(struct oq_db *db)
{
    struct class_counts c = {.count = 0};
    /* no index on error_class: a scan, every 30 s from each process */
    if (oq_db_query_rows(db,
                         "SELECT error_class, COUNT(*) FROM dead_letter WHERE replayed_at IS NULL"
                         " GROUP BY error_class",
                         NULL, 0, on_class_row, &c) != 0)
        return OQ_EDB;
    const char *names[9];
    for (size_t i = 0; i < c.count; i++)
        names[i] = c.name[i];
    names[c.count] = ""; /* not a class name: under "other" */
    c.n[c.count] = c.other;
    oq_metrics_set_dead_letters(names, c.n, c.count + 1);
    return 0;
}

int oq_gauges_read(struct oq_db *db, char *err, size_t errlen)
{
    const char *what = "the outbox";
    int rc = oq_db_query_rows(db,
                              "SELECT COUNT(*), COALESCE(TIMESTAMPDIFF(SECOND, MIN(created_at),"
                              " NOW(6)), 0) FROM outbox WHERE published_at IS NULL",
                              NULL, 0, on_outbox, NULL);
    if (rc == 0) {
        what = "the ledger";
        rc = oq_db_query_rows(db,
                              "SELECT COALESCE(SUM(state = 'sending'), 0),"
                              " COALESCE(SUM(state = 'unknown'), 0) FROM event_ledger"
                              " WHERE state IN ('sending', 'unknown')",
                              NULL, 0, on_ledger, NULL);
    }
    if (rc == 0) {
        what = "dead letters";
        rc = read_dead_letters(db);
    }
    if (rc != 0) {
        snprintf(err, errlen, "metrics gauges: counting %s: %s", what, oq_db_error(db));
        return OQ_EDB;
    }
    oq_metrics_db_gauges_read();
    return 0;
}

static void *gauges_main(void *arg)
{
    struct oq_gauges *g = arg;
    char err[OQ_ERRLEN];
    while (!g->stop) {
        if (g->db == NULL && oq_db_reopen(g->cfg->mysql_url, g->cfg->connect_timeout_ms,
                                          &g->db_tries, &g->db, err, sizeof(err)) != 0) {
            oq_warn("metrics gauges: %s; retrying in %lld ms", err,
                    (long long)g->cfg->metrics_db_interval_ms);
            oq_nap(g->cfg->metrics_db_interval_ms, &g->stop);
            continue;
        }
        if (oq_gauges_read(g->db, err, sizeof(err)) != 0) {
            oq_warn("%s", err);
            if (oq_db_class_is_outage(oq_db_last_class(g->db))) {
                oq_db_close(g->db); /* reopened at the next read */
                g->db = NULL;
            }
        }
        oq_nap(g->cfg->metrics_db_interval_ms, &g->stop);
    }
    oq_db_close(g->db);
    return NULL;
}

int oq_gauges_start(const struct oq_config *cfg, struct oq_gauges **out)
{
    struct oq_gauges *g = calloc(1, sizeof(*g));
    *out = NULL;
    if (g == NULL)
        return OQ_ENOMEM;
    g->cfg = cfg;
    if (pthread_create(&g->thread, NULL, gauges_main, g) != 0) {
        free(g);
        return OQ_ENOMEM;
    }
    *out = g;
    return 0;
}

void oq_gauges_stop(struct oq_gauges *g)
{
    if (g == NULL)
        return;
    g->stop = 1;
    pthread_join(g->thread, NULL);
    free(g);
}
