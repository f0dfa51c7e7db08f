/* gauges.c - the database gauges of /metrics, read by one background thread */
#include "orderq/gauges.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/deadletter.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/relay.h"

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
 * that has none left shows 0 and a failed read keeps the last values. Past
 * MAX_CLASSES rows, the rest add up under "" (not a class: "other"). */
#define MAX_CLASSES 16
struct class_counts {
    char name[MAX_CLASSES][33];
    const char *names[MAX_CLASSES];
    int64_t n[MAX_CLASSES];
    size_t count;
};

static int on_class_row(void *ctx, const char *const *v, unsigned n)
{
    struct class_counts *c = ctx;
    size_t i = c->count < MAX_CLASSES ? c->count++ : MAX_CLASSES - 1;
    if (i == MAX_CLASSES - 1 || v[0] == NULL)
        c->name[i][0] = '\0';
    else
        snprintf(c->name[i], sizeof(c->name[i]), "%s", v[0]);
    c->names[i] = c->name[i];
    c->n[i] += n > 1 ? number(v[1]) : 0;
    return 0;
}

int oq_gauges_read(struct oq_db *db, char *err, size_t errlen)
{
    const char *what = "the outbox";
    int64_t backlog = 0, oldest_s = 0;
    struct class_counts classes = {.count = 0};
    int rc = oq_outbox_backlog(db, &backlog, &oldest_s);
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
        rc = oq_dead_letter_classes(db, on_class_row, &classes);
    }
    if (rc != 0) {
        snprintf(err, errlen, "metrics gauges: counting %s: %s", what, oq_db_error(db));
        return OQ_EDB;
    }
    oq_metric_set(OQ_M_OUTBOX_BACKLOG, backlog);
    oq_metric_set(OQ_M_OUTBOX_OLDEST_AGE, oldest_s);
    oq_metrics_set_dead_letters(classes.names, classes.n, classes.count);
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
