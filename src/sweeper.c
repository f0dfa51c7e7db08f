/* sweeper.c - the lease sweeper: settle `sending` rows no delivery comes back for */
#include "orderq/sweeper.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/deadletter.h"
#include "orderq/json.h"
#include "orderq/log.h"
#include "orderq/metrics.h"
#include "orderq/retry.h"

/* Every sweeper letter shares this fingerprint (`orderq dlq stats`). */
static const char fingerprint_text[] = "lease expired and no delivery came back (lease sweeper)";

int oq_sweep_letter_key(const char *handler, const char *effect_key, const char *lease_until,
                        char *out)
{
    static const char prefix[] = "sweep:";
    const char *parts[] = {handler, effect_key, lease_until};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(c, prefix, sizeof(prefix) - 1) == 1;
    /* Each part with its NUL: ("a", "bc") and ("ab", "c") differ. */
    for (size_t i = 0; ok && i < sizeof(parts) / sizeof(parts[0]); i++)
        ok = EVP_DigestUpdate(c, parts[i], strlen(parts[i]) + 1) == 1;
    ok = ok && EVP_DigestFinal_ex(c, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(c);
    out[0] = '\0';
    if (!ok)
        return OQ_ENOMEM;
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int64_t oq_sweep_interval_ms(int64_t grace_ms)
{
    int64_t ms = grace_ms / 4;
    return ms < 1000 ? 1000 : ms > 30000 ? 30000 : ms;
}

/* ---- one row ------------------------------------------------------------------ */

/* What the row's result says: whose lease it was, why it is unknown, where
 * to look next. Cut to the column (1024 characters) on a UTF-8 boundary. */
static void row_result(const struct oq_lease_row *row, const char *grace, const char *who,
                       char *out, size_t outlen)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "lease of %s ran out at %s UTC and no delivery came back within sweep_after_ms "
             "(%s): whether it was sent is unknown; marked by %s (see orderq dlq list "
             "--event-id %s)",
             row->owner, row->lease_until, grace, who, row->event_identifier);
    oq_cut_utf8(text, out, outlen);
}

/* The letter's body: not the event (the sweeper never had it) but what
 * the ledger knows, so `orderq dlq show` tells the whole story. */
static char *letter_body(const struct oq_lease_row *row, const char *who, int64_t grace_ms)
{
    char n[32];
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "orderq_lease_sweeper",
                   "no message: this letter was written by the lease sweeper for a ledger row "
                   "left `sending` with no delivery to come back for it; it cannot be "
                   "replayed (docs/consumer.md, Abandoned leases)");
    oq_json_gen_kv(g, "handler", row->handler);
    oq_json_gen_kv(g, "effect_key", row->effect_key);
    oq_json_gen_kv(g, "event_identifier", row->event_identifier);
    oq_json_gen_kv(g, "event_code", row->event_code);
    oq_json_gen_kv(g, "lease_owner", row->owner);
    oq_json_gen_kv(g, "lease_until", row->lease_until);
    oq_json_gen_str(g, "attempts");
    snprintf(n, sizeof(n), "%lld", (long long)row->attempts);
    yajl_gen_number(g, n, strlen(n));
    oq_json_gen_str(g, "sweep_after_ms");
    snprintf(n, sizeof(n), "%lld", (long long)grace_ms);
    yajl_gen_number(g, n, strlen(n));
    oq_json_gen_kv(g, "swept_by", who);
    yajl_gen_map_close(g);
    return oq_json_gen_finish(g);
}

static char *letter_headers(const char *who)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return NULL;
    yajl_gen_map_open(g);
    oq_json_gen_kv(g, "x-orderq-error-class", "ambiguous");
    oq_json_gen_kv(g, "x-orderq-swept-by", who);
    yajl_gen_map_close(g);
    return oq_json_gen_finish(g);
}

/* The row's dead letter. body and dl's JSON are the caller's to free
 * (oq_dead_letter_clear, free). Returns 0 or OQ_ENOMEM. */
static int build_letter(const struct oq_lease_row *row, const char *who, int64_t grace_ms,
                        const char *grace, struct oq_dead_letter *dl, char **body)
{
    /* A JSON string, not an object: replay skips a letter whose
     * properties are not an object, with or without --to-queue or
     * --force-resend, which is right for a letter that is no message. */
    static const char no_properties[] =
        "\"none: written by the orderq lease sweeper, not a message; nothing to replay\"";
    char host[256] = "";
    memset(dl, 0, sizeof(*dl));
    *body = letter_body(row, who, grace_ms);
    dl->properties_json = strdup(no_properties);
    dl->headers_json = letter_headers(who);
    if (*body == NULL || dl->properties_json == NULL || dl->headers_json == NULL ||
        oq_sweep_letter_key(row->handler, row->effect_key, row->lease_until, dl->letter_key) != 0)
        return OQ_ENOMEM;
    dl->body = *body;
    dl->body_size = strlen(*body);
    oq_cut_utf8(row->event_code, dl->event_code, sizeof(dl->event_code));
    oq_cut_utf8(row->event_identifier, dl->event_identifier, sizeof(dl->event_identifier));
    snprintf(dl->error_class, sizeof(dl->error_class), "ambiguous");
    char error[4096];
    snprintf(error, sizeof(error),
             "%s/%s: its lease ran out at %s UTC and no delivery came back within "
             "sweep_after_ms (%s): whether it was sent is unknown (ledger state unknown). This "
             "letter holds no message and is not replayed. Look at the receiver for its "
             "Message-ID or Idempotency-Key; sent: purge this letter; not sent: replay the "
             "event's own letter with --force-resend (orderq dlq list --event-id), or have the "
             "event sent again and replay the letter it makes with --force-resend",
             row->handler, row->effect_key, row->lease_until, grace);
    oq_cut_utf8(error, dl->error, sizeof(dl->error));
    oq_error_fingerprint("ambiguous", fingerprint_text, dl->fingerprint, sizeof(dl->fingerprint));
    dl->attempts = row->attempts;
    snprintf(dl->first_failed_at, sizeof(dl->first_failed_at), "%s", row->lease_until);
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    snprintf(dl->host, sizeof(dl->host), "%s", host);
    dl->pid = (int64_t)getpid();
    return 0;
}

/* Settle one row in one transaction: marked `unknown` and its letter
 * stored, or neither. Returns 1 settled, 0 lost to another (it changed
 * since it was read: nothing written), or OQ_EDB / OQ_ENOMEM. */
static int settle(struct oq_db *db, const struct oq_config *cfg, const char *who,
                  const struct oq_lease_row *row, int *stored, char *err, size_t errlen)
{
    struct oq_dead_letter dl;
    char *body = NULL, result[1024], grace[32];
    int rc;
    *stored = 0;
    oq_duration_format(cfg->sweep_after_ms, grace, sizeof(grace));
    row_result(row, grace, who, result, sizeof(result));
    if ((rc = build_letter(row, who, cfg->sweep_after_ms, grace, &dl, &body)) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (oq_db_exec(db, "START TRANSACTION") != 0) {
        snprintf(err, errlen, "starting a transaction: %s", oq_db_error(db));
        rc = OQ_EDB;
        goto out;
    }
    rc = oq_ledger_abandon(db, row, cfg->sweep_after_ms, result, err, errlen);
    if (rc == OQ_ENOTFOUND) {
        oq_db_rollback(db);
        rc = 0;
        goto out;
    }
    if (rc != 0 || (rc = oq_dead_letter_store(db, &dl, stored, err, errlen)) != 0)
        goto rollback;
    if (oq_db_exec(db, "COMMIT") != 0) {
        /* If the answer was lost and it did commit, the row is no longer
         * `sending` and the next pass does not see it; if it did not, the
         * next pass does it again, with the same letter key. */
        snprintf(err, errlen, "committing %s/%s: %s", row->handler, row->effect_key,
                 oq_db_error(db));
        rc = OQ_EDB;
        goto rollback;
    }
    rc = 1;
    goto out;
rollback:
    oq_db_rollback(db);
out:
    oq_dead_letter_clear(&dl);
    free(body);
    return rc;
}

/* ---- a pass ------------------------------------------------------------------- */

int oq_sweep(struct oq_db *db, const struct oq_config *cfg, const char *who, int dry_run,
             size_t max_rows, oq_sweep_row_fn on_row, void *ctx, volatile sig_atomic_t *stop,
             struct oq_sweep_stats *out, char *err, size_t errlen)
{
    size_t cap = dry_run && max_rows > 0 ? max_rows : OQ_SWEEP_BATCH, n = 0;
    struct oq_lease_row *rows = calloc(cap, sizeof(*rows));
    int rc = OQ_ENOMEM;
    memset(out, 0, sizeof(*out));
    if (rows == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (dry_run) {
        if ((rc = oq_ledger_abandoned(db, cfg->sweep_after_ms, rows, cap, &n, err, errlen)) != 0)
            goto out;
        for (size_t i = 0; i < n; i++)
            if (on_row != NULL)
                on_row(ctx, &rows[i]);
        out->swept = (int64_t)n;
    }
    /* Small rounds, each row its own short transaction: a pass never holds
     * many locks or a long transaction beside the consumers' claims; rows
     * a delivery takes over meanwhile are read afresh each round; several
     * sweepers reading the same oldest rows race for at most a round's
     * worth (their conditional UPDATEs change nothing); and a stop waits
     * for one row at most. A round that settled nothing ends the pass, so
     * rows that cannot be settled now are tried again next pass, not in a
     * loop. */
    while (!dry_run && (stop == NULL || !*stop)) {
        int64_t settled = 0;
        if ((rc = oq_ledger_abandoned(db, cfg->sweep_after_ms, rows, cap, &n, err, errlen)) != 0)
            goto out;
        for (size_t i = 0; i < n && (stop == NULL || !*stop); i++) {
            int stored = 0;
            rc = settle(db, cfg, who, &rows[i], &stored, err, errlen);
            if (rc < 0)
                goto out;
            if (rc == 0) {
                out->lost++;
                continue;
            }
            settled++;
            out->swept++;
            out->letters += stored;
            if (on_row != NULL)
                on_row(ctx, &rows[i]);
        }
        if (n < cap || settled == 0)
            break;
    }
    rc = oq_ledger_lease_counts(db, cfg->sweep_after_ms, &out->after, err, errlen);
out:
    free(rows);
    return rc;
}

/* ---- a delivery that comes back after the sweep --------------------------------- */

#define RETIRE_CANDIDATES 8

struct swept_letters {
    int64_t id[RETIRE_CANDIDATES];
    char key[RETIRE_CANDIDATES][65], lease_until[RETIRE_CANDIDATES][32];
    size_t n;
};

static int on_swept_letter(void *ctx, const char *const *v, unsigned n)
{
    struct swept_letters *s = ctx;
    if (n < 3 || s->n == RETIRE_CANDIDATES || v[0] == NULL || v[1] == NULL || v[2] == NULL)
        return 0;
    s->id[s->n] = strtoll(v[0], NULL, 10);
    snprintf(s->key[s->n], sizeof(s->key[0]), "%s", v[1]);
    snprintf(s->lease_until[s->n], sizeof(s->lease_until[0]), "%s", v[2]);
    s->n++;
    return 0;
}

int oq_sweep_letter_retire(struct oq_db *db, const char *handler, const char *effect_key,
                           const char *event_identifier, int64_t *retired, char *err, size_t errlen)
{
    char fingerprint[256], key[65];
    struct swept_letters s = {.n = 0};
    *retired = 0;
    oq_error_fingerprint("ambiguous", fingerprint_text, fingerprint, sizeof(fingerprint));
    /* The sweeper wrote its lease's lease_until as first_failed_at: with
     * it the key says for sure which letter is this row's. */
    struct oq_db_param p[] = {OQ_STR(handler), OQ_STR(effect_key), OQ_STR(event_identifier),
                              OQ_STR(fingerprint)};
    if (oq_db_query_rows(db,
                         "SELECT d.id, d.letter_key, DATE_FORMAT(d.first_failed_at,"
                         " '%Y-%m-%d %H:%i:%s.%f') FROM event_ledger l JOIN dead_letter d"
                         " ON d.event_identifier = l.event_identifier WHERE l.handler = ? AND"
                         " l.effect_key = ? AND l.event_identifier = ? AND d.fingerprint = ?"
                         " ORDER BY d.id LIMIT 8",
                         p, 4, on_swept_letter, &s) != 0)
        goto fail;
    for (size_t i = 0; i < s.n; i++) {
        if (oq_sweep_letter_key(handler, effect_key, s.lease_until[i], key) != 0 ||
            strcmp(key, s.key[i]) != 0)
            continue;
        uint64_t deleted = 0;
        struct oq_db_param d[] = {OQ_INT(s.id[i]), OQ_STR(key)};
        if (oq_db_execute(db, "DELETE FROM dead_letter WHERE id = ? AND letter_key = ?", d, 2,
                          &deleted) != 0)
            goto fail;
        if (deleted == 1)
            *retired = s.id[i];
    }
    return 0;
fail:
    snprintf(err, errlen, "retiring the sweeper's letter for %s/%s: %s", handler, effect_key,
             oq_db_error(db));
    return OQ_EDB;
}

/* ---- the thread ----------------------------------------------------------------- */

struct oq_sweeper {
    const struct oq_config *cfg;
    pthread_t thread;
    volatile sig_atomic_t stop;
    struct oq_db *db;
    int db_failures;
    unsigned db_tries; /* oq_db_reopen counts the reconnects */
    char who[256];
};

static void log_swept(void *ctx, const struct oq_lease_row *row)
{
    (void)ctx;
    oq_log(OQ_LOG_WARN, (&(struct oq_log_fields){.event_identifier = row->event_identifier}),
           "lease sweeper: %s/%s: the lease of %s ran out at %s UTC and no delivery came back: "
           "marked unknown, dead letter of class ambiguous stored; a person decides "
           "(docs/consumer.md, Abandoned leases)",
           row->handler, row->effect_key, row->owner, row->lease_until);
}

static void *sweeper_main(void *arg)
{
    struct oq_sweeper *s = arg;
    const struct oq_config *cfg = s->cfg;
    int64_t interval = oq_sweep_interval_ms(cfg->sweep_after_ms);
    char err[OQ_ERRLEN];
    int waits = 0;
    while (!s->stop) {
        if (s->db == NULL) {
            if (oq_db_reopen(cfg->mysql_url, cfg->connect_timeout_ms, &s->db_tries, &s->db, err,
                             sizeof(err)) != 0) {
                int64_t wait = oq_backoff_ms(++s->db_failures);
                oq_error("lease sweeper: %s; retrying in %lld ms", err, (long long)wait);
                oq_nap(wait, &s->stop);
                continue;
            }
            if (s->db_failures > 0)
                oq_info("lease sweeper: MySQL is back after %d failed attempts", s->db_failures);
            s->db_failures = 0;
        }
        struct oq_sweep_stats st;
        int rc =
            oq_sweep(s->db, cfg, s->who, 0, 0, log_swept, NULL, &s->stop, &st, err, sizeof(err));
        oq_metric_add(OQ_M_SWEPT, st.swept); /* rows settled before a failure count too */
        if (rc == 0) {
            waits = 0;
            oq_metric_set(OQ_M_LEASES_EXPIRED, st.after.expired);
            /* fresher than the 30 s gauge reader's, from the same count */
            oq_metrics_set_ledger_rows(OQ_LEDGER_UNKNOWN, st.after.unknown);
            oq_nap(interval, &s->stop);
            continue;
        }
        enum oq_db_class cls = oq_db_last_class(s->db);
        if (rc == OQ_EDB && oq_db_class_is_outage(cls)) {
            oq_warn("lease sweeper: %s; reconnecting", err);
            oq_db_close(s->db);
            s->db = NULL;
            oq_nap(oq_backoff_ms(++waits), &s->stop);
        } else if (rc == OQ_EDB && cls == OQ_DB_RETRY) {
            oq_debug("lease sweeper: %s; trying again", err); /* a consumer's claim: normal */
            oq_nap(oq_backoff_ms(1), &s->stop);
        } else {
            oq_error("lease sweeper: %s; trying again in %lld ms", err, (long long)interval);
            oq_nap(interval, &s->stop);
        }
    }
    oq_db_close(s->db);
    s->db = NULL;
    return NULL;
}

int oq_sweeper_start(const struct oq_config *cfg, struct oq_sweeper **out)
{
    struct oq_sweeper *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (s == NULL)
        return OQ_ENOMEM;
    s->cfg = cfg;
    snprintf(s->who, sizeof(s->who), "%s/sweeper", cfg->instance_id);
    if (pthread_create(&s->thread, NULL, sweeper_main, s) != 0) {
        free(s);
        return OQ_ENOMEM;
    }
    *out = s;
    return 0;
}

void oq_sweeper_stop(struct oq_sweeper *s)
{
    if (s == NULL)
        return;
    s->stop = 1;
    pthread_join(s->thread, NULL);
    free(s);
}
