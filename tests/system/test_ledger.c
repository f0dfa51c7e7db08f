/* test_ledger.c - the ledger against a real MariaDB: claims, duplicates, leases
 *
 * Run by ledger.sh, which makes a database, migrates it and sets
 * ORDERQ_MYSQL_URL.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderq/config.h"
#include "orderq/db.h"
#include "orderq/ledger.h"
#include "orderq/sweeper.h"

static char err[512];

static int setup(void **state)
{
    struct oq_db *db = NULL;
    const char *url = getenv("ORDERQ_MYSQL_URL");
    if (url == NULL || oq_db_open(url, 5000, 0, &db, err, sizeof(err)) != 0) {
        fprintf(stderr, "cannot reach MySQL: %s\n", err);
        return -1; /* a failure, not a skip */
    }
    *state = db;
    return 0;
}

static int teardown(void **state)
{
    oq_db_close(*state);
    return 0;
}

static struct oq_claim claim(const char *key)
{
    return (struct oq_claim){"test", key, key, "order.processing", "r", 1, 0};
}

static void claims_and_duplicates(void **state)
{
    struct oq_db *db = *state;
    struct oq_claim c[] = {claim("a"), claim("b"), claim("a")};
    assert_int_equal(oq_ledger_claim(db, "me", c, 3, err, sizeof(err)), 0);
    assert_int_equal(c[0].claimed, 1);
    assert_int_equal(c[1].claimed, 1);
    assert_int_equal(c[2].claimed, 0); /* the same key twice in one batch: once */
    struct oq_claim again[] = {claim("b"), claim("c")};
    assert_int_equal(oq_ledger_claim(db, "other", again, 2, err, sizeof(err)), 0);
    assert_int_equal(again[0].claimed, 0); /* a duplicate from an earlier batch */
    assert_int_equal(again[1].claimed, 1);
    assert_int_equal(oq_ledger_unclaim(db, "test", "c", err, sizeof(err)), 0);
    struct oq_claim after[] = {claim("c")};
    assert_int_equal(oq_ledger_claim(db, "other", after, 1, err, sizeof(err)), 0);
    assert_int_equal(after[0].claimed, 1); /* withdrawn claims can be made again */
}

static void lease_then_sent(void **state)
{
    struct oq_db *db = *state;
    struct oq_claim c = claim("mail-1");
    enum oq_lease l;
    assert_int_equal(oq_ledger_lease(db, &c, "p1", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW);
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_HELD); /* p1 is sending: p2 backs off */
    assert_int_equal(oq_ledger_take_over(db, "test", "mail-1", "p2", 60000, 1, err, sizeof(err)),
                     OQ_ENOTFOUND); /* a live lease is not taken over */
    assert_int_equal(
        oq_ledger_finish(db, "test", "mail-1", "p1", "sent", "250 OK", err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_DONE);
    assert_int_equal(oq_ledger_finish(db, "test", "mail-1", "p1", "sent", "x", err, sizeof(err)),
                     OQ_ENOTFOUND); /* only a sending row finishes */
}

static struct oq_ledger_mark mark(const char *key, const char *owner, const char *result)
{
    return (struct oq_ledger_mark){.handler = "test",
                                   .effect_key = key,
                                   .event_identifier = key,
                                   .event_code = "coupon.email",
                                   .owner = owner,
                                   .result = result,
                                   .attempts = 1};
}

static int is_owned(struct oq_db *db, const char *key, const char *owner, const char *state)
{
    int yes = -1;
    assert_int_equal(oq_ledger_is_owned(db, "test", key, owner, state, &yes, err, sizeof(err)), 0);
    return yes;
}

/* A group of leases, then of `sent` marks: each mark learns its own row's
 * fate, as oq_ledger_lease and oq_ledger_finish would tell it alone. */
static void a_group_settles_each_row_alone(void **state)
{
    struct oq_db *db = *state;
    struct oq_claim sent = claim("g-sent"), held = claim("g-held");
    enum oq_lease l;
    assert_int_equal(oq_ledger_lease(db, &sent, "q0", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_finish(db, "test", "g-sent", "q0", "sent", "250", err, sizeof(err)),
                     0);
    assert_int_equal(oq_ledger_lease(db, &held, "q1", 60000, &l, err, sizeof(err)), 0);

    struct oq_ledger_mark leases[] = {mark("g-new1", "o1", NULL), mark("g-held", "o2", NULL),
                                      mark("g-new2", "o3", NULL), mark("g-new1", "o4", NULL),
                                      mark("g-sent", "o5", NULL)};
    assert_int_equal(oq_ledger_lease_many(db, leases, 5, 60000, err, sizeof(err)), 0);
    assert_int_equal(leases[0].done, 1);
    assert_int_equal(leases[1].done, 0); /* q1 holds it */
    assert_int_equal(leases[2].done, 1);
    assert_int_equal(leases[3].done, 0); /* the same key twice in one group: once */
    assert_int_equal(leases[4].done, 0); /* sent already */
    assert_int_equal(is_owned(db, "g-new1", "o1", "sending"), 1);
    assert_int_equal(is_owned(db, "g-new2", "o3", "sending"), 1);
    assert_int_equal(oq_ledger_lease(db, &held, "o2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_HELD);

    /* one mark not its owner's: the others finish, and say so */
    struct oq_ledger_mark marks[] = {mark("g-new1", "o1", "250 a"), mark("g-held", "o2", "250 x"),
                                     mark("g-new2", "o3", "250 b")};
    assert_int_equal(oq_ledger_finish_many(db, marks, 3, err, sizeof(err)), 0);
    assert_int_equal(marks[0].done, 1);
    assert_int_equal(marks[1].done, 0);
    assert_int_equal(marks[2].done, 1);
    assert_int_equal(is_owned(db, "g-new1", "o1", "sent"), 1);
    assert_int_equal(is_owned(db, "g-held", "q1", "sending"), 1); /* untouched */
    long long same = 0;
    int null = 0;
    struct oq_db_param p[] = {OQ_STR("g-new2")};
    assert_int_equal(oq_db_query_int(db,
                                     "SELECT result = '250 b' AND lease_until IS NULL FROM"
                                     " event_ledger WHERE handler = 'test' AND effect_key = ?",
                                     p, 1, &same, &null),
                     0);
    assert_int_equal(same, 1); /* its own result, not another mark's */
    /* marked again (an answer lost with the connection): it is its owner's
     * `sent` row, so done, and nothing changes */
    assert_int_equal(oq_ledger_finish_many(db, marks, 2, err, sizeof(err)), 0);
    assert_int_equal(marks[0].done, 1);
    assert_int_equal(marks[1].done, 0);
    assert_int_equal(is_owned(db, "g-held", "q1", "sending"), 1);
}

/* Rows the session's statements have read one after another (a scan, or
 * an index range walked) so far; reading it walks a few rows too. */
static long long rows_walked(struct oq_db *db)
{
    long long n = 0;
    int null = 0;
    assert_int_equal(oq_db_query_int(db,
                                     "SELECT SUM(VARIABLE_VALUE) FROM"
                                     " information_schema.SESSION_STATUS WHERE VARIABLE_NAME IN"
                                     " ('HANDLER_READ_NEXT', 'HANDLER_READ_RND_NEXT')",
                                     NULL, 0, &n, &null),
                     0);
    return n;
}

/* A group's `sent` mark finds its rows by their primary key, for a group
 * of one too, however many rows are `sending`. MariaDB 10.11 does not
 * range-scan a single-row constructor `(handler, effect_key, owner) IN
 * ((?, ?, ?))` in an UPDATE: that group read every leased row, or the
 * whole table, for each mark (a fifth of MariaDB's time sending mail). */
static void a_mark_reads_only_its_own_rows(void **state)
{
    struct oq_db *db = *state;
    /* leased for an hour: the sweeper tests after this one read expired
     * leases, and must not meet these */
    enum { LEASED = 6 * 50 };
    static char keys[LEASED][24], owners[LEASED][24];
    struct oq_ledger_mark group[50];
    for (size_t i = 0; i < LEASED; i++) {
        snprintf(keys[i], sizeof(keys[i]), "pk-%zu", i);
        snprintf(owners[i], sizeof(owners[i]), "pk-owner-%zu", i);
        group[i % 50] = mark(keys[i], owners[i], "250 OK");
        if (i % 50 == 49)
            assert_int_equal(oq_ledger_lease_many(db, group, 50, 3600000, err, sizeof(err)), 0);
    }
    for (size_t n = 1; n <= 3; n++) {
        struct oq_ledger_mark marks[3];
        for (size_t i = 0; i < n; i++)
            marks[i] = mark(keys[10 * n + i], owners[10 * n + i], "250 OK");
        long long first = rows_walked(db), before = rows_walked(db);
        assert_int_equal(oq_ledger_finish_many(db, marks, n, err, sizeof(err)), 0);
        long long walked = rows_walked(db) - before - (before - first);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(marks[i].done, 1);
        if (walked > (long long)n)
            fprintf(stderr, "a group of %zu marks walked %lld rows of %d leased\n", n, walked,
                    LEASED);
        assert_true(walked <= (long long)n);
    }
}

/* A warning other than a duplicate fails the whole group: the caller
 * rolls back, so no row of it is left leased. */
static void a_group_fails_on_a_warning(void **state)
{
    struct oq_db *db = *state;
    char long_key[300];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    struct oq_ledger_mark leases[] = {mark("g-fine", "o1", NULL), mark(long_key, "o2", NULL)};
    assert_int_equal(oq_db_exec(db, "START TRANSACTION"), 0);
    assert_int_equal(oq_ledger_lease_many(db, leases, 2, 60000, err, sizeof(err)), OQ_EDB);
    oq_db_rollback(db);
    struct oq_claim fine = claim("g-fine");
    enum oq_lease l;
    assert_int_equal(oq_ledger_lease(db, &fine, "o3", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW); /* the group left nothing behind */
    struct oq_ledger_mark many[OQ_LEDGER_GROUP_MAX + 1];
    assert_int_equal(
        oq_ledger_lease_many(db, many, OQ_LEDGER_GROUP_MAX + 1, 1000, err, sizeof(err)), OQ_EINVAL);
}

/* Another claimer that leases and releases the same key as fast as it
 * can, on a connection of its own, for the race below. */
struct churn {
    const char *url;
    volatile int stop;
    long rounds;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    struct oq_db *db = NULL;
    char e[OQ_ERRLEN];
    if (oq_db_open(c->url, 5000, 0, &db, e, sizeof(e)) != 0)
        return NULL;
    struct oq_claim cl = claim("race-1");
    while (!c->stop) {
        enum oq_lease l;
        if (oq_ledger_lease(db, &cl, "other", 60000, &l, e, sizeof(e)) == 0 && l == OQ_LEASE_NEW &&
            oq_ledger_release(db, "test", "race-1", "other", e, sizeof(e)) != 0)
            break;
        c->rounds++;
    }
    oq_db_close(db);
    return NULL;
}

/* A row released between our INSERT and our SELECT is claimed again,
 * never read as done: the other claimer never finishes its lease, so
 * the only right answers are NEW and HELD (a DONE would ack a mail that
 * was never sent). Bounded: 3,000 leases or 20 s. */
static void a_released_row_is_never_done(void **state)
{
    struct oq_db *db = *state;
    struct churn other = {getenv("ORDERQ_MYSQL_URL"), 0, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, churn_main, &other), 0);
    struct oq_claim c = claim("race-1");
    int64_t deadline = oq_now_ms() + 20000;
    long held = 0, wrong = 0, failed = 0;
    for (int i = 0; i < 3000 && oq_now_ms() < deadline && !failed; i++) {
        enum oq_lease l = OQ_LEASE_NEW;
        if (oq_ledger_lease(db, &c, "me", 60000, &l, err, sizeof(err)) != 0) {
            /* two claimers of one key may deadlock: the caller redoes it */
            failed = oq_db_last_class(db) != OQ_DB_RETRY;
            continue;
        }
        if (l == OQ_LEASE_NEW)
            failed = oq_ledger_release(db, "test", "race-1", "me", err, sizeof(err)) != 0;
        else if (l == OQ_LEASE_HELD)
            held++;
        else
            wrong++; /* DONE, EXPIRED or UNKNOWN: none can be true here */
    }
    other.stop = 1; /* before any assert: the thread uses this frame */
    pthread_join(t, NULL);
    assert_int_equal(failed, 0);
    assert_int_equal(wrong, 0);
    assert_true(other.rounds > 0 && held > 0); /* the two did meet */
}

/* A worker that hung mid-send and then did send finds its row marked
 * `unknown` by the sweeper: it finishes it as `sent` (so a forced replay
 * finds it sent, no second mail), and only that owner, only as `sent`. */
static void a_swept_lease_finishes_as_sent(void **state)
{
    struct oq_db *db = *state;
    struct oq_claim c = claim("mail-swept");
    struct oq_lease_row rows[64];
    size_t n = 0, mine = 64;
    enum oq_lease l;
    struct timespec wait = {0, 50 * 1000000L};
    assert_int_equal(oq_ledger_lease(db, &c, "w1", 1, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW);
    nanosleep(&wait, NULL);
    assert_int_equal(oq_ledger_abandoned(db, 0, rows, 64, &n, err, sizeof(err)), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].effect_key, "mail-swept") == 0)
            mine = i;
    assert_true(mine < n);
    assert_int_equal(oq_ledger_abandon(db, &rows[mine], 0, "swept", err, sizeof(err)), 0);
    assert_int_equal(
        oq_ledger_finish(db, "test", "mail-swept", "w2", "sent", "250 OK", err, sizeof(err)),
        OQ_ENOTFOUND); /* not its lease */
    assert_int_equal(
        oq_ledger_finish(db, "test", "mail-swept", "w1", "unknown", "x", err, sizeof(err)),
        OQ_ENOTFOUND); /* only the news that it was sent */
    assert_int_equal(
        oq_ledger_finish(db, "test", "mail-swept", "w1", "sent", "250 OK", err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_lease(db, &c, "w3", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_DONE); /* a forced replay would find it sent */
}

/* A row another session keeps locked (an operator's open transaction) is
 * reported locked once the connection's lock wait ends (2 s on the effect
 * workers' connections), not an error to redo with the worker's mails in
 * hand; once the lock goes, the lease reads the row's real state again. */
static void a_locked_row_is_reported_held(void **state)
{
    struct oq_db *db = *state, *other = NULL;
    struct oq_claim c = claim("mail-locked");
    enum oq_lease l;
    assert_int_equal(oq_ledger_lease(db, &c, "p1", 1, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW);
    assert_int_equal(oq_db_open(getenv("ORDERQ_MYSQL_URL"), 5000, 0, &other, err, sizeof(err)), 0);
    assert_int_equal(oq_db_exec(other, "START TRANSACTION"), 0);
    assert_int_equal(oq_db_exec(other, "SELECT * FROM event_ledger WHERE handler = 'test' AND"
                                       " effect_key = 'mail-locked' FOR UPDATE"),
                     0);
    assert_int_equal(oq_db_exec(db, "SET SESSION innodb_lock_wait_timeout = 2"), 0);
    time_t start = time(NULL);
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_LOCKED);
    assert_non_null(strstr(err, "Lock wait timeout"));
    assert_true(time(NULL) - start < 10);
    assert_int_equal(oq_db_exec(db, "SET SESSION innodb_lock_wait_timeout = DEFAULT"), 0);
    oq_db_rollback(other);
    oq_db_close(other);
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_EXPIRED); /* p1's 1 ms lease ran out meanwhile */
}

static void expired_lease_is_ambiguous(void **state)
{
    struct oq_db *db = *state;
    struct oq_claim c = claim("mail-2");
    enum oq_lease l;
    struct timespec wait = {0, 50 * 1000000L};
    assert_int_equal(oq_ledger_lease(db, &c, "p1", 1, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW);
    nanosleep(&wait, NULL);
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_EXPIRED);
    assert_int_equal(oq_ledger_take_over(db, "test", "mail-2", "p2", 60000, 0, err, sizeof(err)),
                     0);
    /* p1 woke up late: its lease is gone, it must not mark the row */
    assert_int_equal(oq_ledger_finish(db, "test", "mail-2", "p1", "sent", "x", err, sizeof(err)),
                     OQ_ENOTFOUND);
    assert_int_equal(oq_ledger_finish(db, "test", "mail-2", "p2", "unknown", "timeout after DATA",
                                      err, sizeof(err)),
                     0);
    assert_int_equal(oq_ledger_lease(db, &c, "p3", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_UNKNOWN);
    assert_int_equal(oq_ledger_finish(db, "test", "mail-2", "p2", "done", "x", err, sizeof(err)),
                     OQ_EINVAL);
    /* unknown stays unknown until a person says "send again" */
    assert_int_equal(oq_ledger_take_over(db, "test", "mail-2", "p3", 60000, 0, err, sizeof(err)),
                     OQ_ENOTFOUND);
    assert_int_equal(oq_ledger_take_over(db, "test", "mail-2", "p3", 60000, 1, err, sizeof(err)),
                     0);
    assert_int_equal(oq_ledger_lease(db, &c, "p4", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_HELD);
}

static void failed_send_is_released(void **state)
{
    struct oq_db *db = *state;
    struct oq_claim c = claim("mail-3");
    enum oq_lease l;
    assert_int_equal(oq_ledger_lease(db, &c, "p1", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW);
    /* only the owner releases */
    assert_int_equal(oq_ledger_release(db, "test", "mail-3", "p2", err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_HELD);
    assert_int_equal(oq_ledger_release(db, "test", "mail-3", "p1", err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW); /* the next attempt claims it afresh */
}

/* Rows of the test handler whose key starts with prefix. */
static long long rows_like(struct oq_db *db, const char *prefix)
{
    char like[64];
    long long n = -1;
    int is_null = 0;
    snprintf(like, sizeof(like), "%s%%", prefix);
    struct oq_db_param p[] = {OQ_STR(like)};
    assert_int_equal(oq_db_query_int(db,
                                     "SELECT COUNT(*) FROM event_ledger WHERE handler = 'test'"
                                     " AND effect_key LIKE ?",
                                     p, 1, &n, &is_null),
                     0);
    return n;
}

/* INSERT IGNORE turns an invalid string or a value too long for its column
 * into a warning and a mangled row ("bad??id", a cut key): a claim that
 * draws any warning but a duplicate key fails instead, and its transaction
 * is rolled back. */
static void claim_fails_on_a_warning(void **state)
{
    struct oq_db *db = *state;
    char long_key[200];
    memset(long_key, 'w', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    /* (a surrogate, ED A0 80, MariaDB 10.11 stores as it is, with no
     * warning: only the event decoder keeps it out) */
    const char *bad[] = {"wbad\xc0\x80id", "wbig\xf5\x80\x80\x80", long_key};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct oq_claim c[] = {claim("wgood"), claim(bad[i])};
        err[0] = '\0';
        assert_int_equal(oq_db_exec(db, "START TRANSACTION"), 0);
        int rc = oq_ledger_claim(db, "me", c, 2, err, sizeof(err));
        oq_db_rollback(db);
        fprintf(stderr, "claim %zu: rc %d: %s\n", i, rc, err);
        assert_int_equal(rc, OQ_EDB);
        assert_non_null(strstr(err, "warning 1"));
        assert_int_equal(rows_like(db, "w"), 0);
    }
    /* a duplicate key is the one warning that is an answer, not an error */
    struct oq_claim once[] = {claim("wdup"), claim("wdup")};
    assert_int_equal(oq_ledger_claim(db, "me", once, 2, err, sizeof(err)), 0);
    assert_int_equal(once[0].claimed + once[1].claimed, 1);
}

/* The same for a lease (its own statement): nothing is left behind, and an
 * owner too long for its column is refused rather than cut (finish would
 * then never find the row). */
static void lease_fails_on_a_warning(void **state)
{
    struct oq_db *db = *state;
    char long_owner[200];
    memset(long_owner, 'o', sizeof(long_owner) - 1);
    long_owner[sizeof(long_owner) - 1] = '\0';
    enum oq_lease l;
    struct oq_claim bad = claim("lbad\xc0\x80id");
    err[0] = '\0';
    int rc = oq_ledger_lease(db, &bad, "p1", 60000, &l, err, sizeof(err));
    fprintf(stderr, "lease invalid key: rc %d: %s\n", rc, err);
    assert_int_equal(rc, OQ_EDB);
    assert_int_equal(rows_like(db, "l"), 0);
    struct oq_claim c = claim("lowner");
    err[0] = '\0';
    rc = oq_ledger_lease(db, &c, long_owner, 60000, &l, err, sizeof(err));
    fprintf(stderr, "lease long owner: rc %d: %s\n", rc, err);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err, "owner"));
    assert_int_equal(rows_like(db, "l"), 0);
}

/* MySQL takes at most 65,535 placeholders in a statement: a batch of
 * 10,000 claims (7 each) is split, and still claims each key once. */
static void a_big_batch_is_claimed(void **state)
{
    struct oq_db *db = *state;
    enum { N = 10000 };
    struct oq_claim *c = calloc(N, sizeof(*c));
    char(*keys)[16] = calloc(N, sizeof(*keys));
    assert_non_null(c);
    assert_non_null(keys);
    for (size_t i = 0; i < N; i++) {
        snprintf(keys[i], sizeof(keys[i]), "big-%zu", i % 9990); /* 10 duplicates */
        c[i] = claim(keys[i]);
    }
    assert_int_equal(oq_db_exec(db, "START TRANSACTION"), 0);
    int rc = oq_ledger_claim(db, "me", c, N, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "claim of %d: %s\n", N, err);
    assert_int_equal(rc, 0);
    assert_int_equal(oq_db_exec(db, "COMMIT"), 0);
    size_t claimed = 0;
    for (size_t i = 0; i < N; i++)
        claimed += (size_t)c[i].claimed;
    assert_int_equal(claimed, 9990);
    for (size_t i = 9990; i < N; i++)
        assert_int_equal(c[i].claimed, 0); /* the repeats, in a later chunk */
    assert_int_equal(rows_like(db, "big-"), 9990);
    free(c);
    free(keys);
}

/* oq_db_execute_ignore on a table of its own: duplicates pass; any other
 * warning fails, also when the server lists none of them (max_error_count
 * 0 here): the count must then match the rows left out. */
static void db_ignore_reads_the_warnings(void **state)
{
    struct oq_db *db = *state;
    uint64_t inserted = 0;
    assert_int_equal(oq_db_exec(db, "CREATE TEMPORARY TABLE t_ignore (k VARCHAR(4) PRIMARY KEY)"
                                    " CHARSET utf8mb4"),
                     0);
    static const char three[] = "INSERT IGNORE INTO t_ignore VALUES (?), (?), (?)";
    struct oq_db_param dups[] = {OQ_STR("a"), OQ_STR("b"), OQ_STR("a")};
    assert_int_equal(oq_db_execute_ignore(db, three, dups, 3, 3, &inserted), 0);
    assert_int_equal(inserted, 2);
    struct oq_db_param cut[] = {OQ_STR("a"), OQ_STR("toolong"), OQ_STR("c")};
    assert_int_equal(oq_db_execute_ignore(db, three, cut, 3, 3, &inserted), OQ_EDB);
    assert_non_null(strstr(oq_db_error(db), "warning 1265")); /* data truncated */
    assert_int_equal(oq_db_errno(db), 1265);
    assert_int_equal(oq_db_classify(oq_db_errno(db)), OQ_DB_OTHER);
    assert_int_equal(oq_db_exec(db, "SET SESSION max_error_count = 0"), 0);
    struct oq_db_param more[] = {OQ_STR("a"), OQ_STR("b"), OQ_STR("e")};
    assert_int_equal(oq_db_execute_ignore(db, three, more, 3, 3, &inserted), 0);
    struct oq_db_param bad[] = {OQ_STR("a"), OQ_STR("f\xc0\x80"), OQ_STR("g")};
    assert_int_equal(oq_db_execute_ignore(db, three, bad, 3, 3, &inserted), OQ_EDB);
    assert_non_null(strstr(oq_db_error(db), "not listed"));
    assert_int_equal(oq_db_exec(db, "SET SESSION max_error_count = DEFAULT"), 0);
    assert_int_equal(oq_db_exec(db, "DROP TEMPORARY TABLE t_ignore"), 0);
}

/* ---- statements kept prepared per connection ---- */

static long long plus_one(struct oq_db *db, const char *sql, long long n)
{
    struct oq_db_param p[] = {OQ_INT(n)};
    long long v = -1;
    int is_null = 1;
    assert_int_equal(oq_db_query_int(db, sql, p, 1, &v, &is_null), 0);
    assert_false(is_null);
    return v;
}

static struct oq_db *open_db(void)
{
    struct oq_db *db = NULL;
    assert_int_equal(oq_db_open(getenv("ORDERQ_MYSQL_URL"), 5000, 0, &db, err, sizeof(err)), 0);
    return db;
}

/* The connection under a kept statement is killed between two batches:
 * the next run fails as a lost connection (an outage: no message blamed),
 * not as an unknown statement, and the reopened connection prepares it
 * anew and runs it. */
static void kept_statements_end_with_their_connection(void **state)
{
    struct oq_db *other = *state, *db = open_db();
    static const char sql[] = "SELECT ? + 1";
    long long id = -1;
    int is_null = 0;
    assert_int_equal(plus_one(db, sql, 1), 2);
    assert_int_equal(plus_one(db, sql, 41), 42); /* the same statement, run again */
    assert_int_equal(oq_db_query_int(db, "SELECT CONNECTION_ID()", NULL, 0, &id, &is_null), 0);
    assert_int_equal(oq_db_cached_statements(db), 2);
    char kill[64];
    snprintf(kill, sizeof(kill), "KILL %lld", id);
    assert_int_equal(oq_db_exec(other, kill), 0);
    struct oq_db_param p[] = {OQ_INT(5)};
    long long v = 0;
    assert_int_equal(oq_db_query_int(db, sql, p, 1, &v, &is_null), OQ_EDB);
    assert_int_equal(oq_db_last_class(db), OQ_DB_GONE);
    assert_true(oq_db_class_is_outage(oq_db_last_class(db)));
    oq_db_close(db);
    db = open_db();
    assert_int_equal(oq_db_cached_statements(db), 0);
    assert_int_equal(plus_one(db, sql, 5), 6);
    assert_int_equal(oq_db_cached_statements(db), 1);
    oq_db_close(db);
}

/* A statement that fails is not kept (it is prepared anew), and only a few
 * are kept however many are run: the server's max_prepared_stmt_count is
 * shared by every client. */
static void failed_statements_go_and_few_are_kept(void **state)
{
    struct oq_db *db = *state;
    static const char ins[] = "INSERT INTO t_kept VALUES (?)";
    assert_int_equal(oq_db_exec(db, "CREATE TEMPORARY TABLE t_kept (k INT PRIMARY KEY)"), 0);
    struct oq_db_param one[] = {OQ_INT(1)}, two[] = {OQ_INT(2)};
    assert_int_equal(oq_db_execute(db, ins, one, 1, NULL), 0);
    size_t kept = oq_db_cached_statements(db);
    assert_int_equal(oq_db_execute(db, ins, one, 1, NULL), OQ_EDB);
    assert_int_equal(oq_db_last_class(db), OQ_DB_DUPLICATE);
    assert_int_equal(oq_db_cached_statements(db), kept - 1);
    assert_int_equal(oq_db_execute(db, ins, two, 1, NULL), 0);
    assert_int_equal(oq_db_cached_statements(db), kept);
    /* too few values: nothing runs, and the statement is not kept */
    assert_int_equal(oq_db_execute(db, "INSERT INTO t_kept VALUES (?), (?)", two, 1, NULL), OQ_EDB);
    assert_non_null(strstr(oq_db_error(db), "2 placeholders, 1 values given"));
    assert_int_equal(oq_db_cached_statements(db), kept);
    char sql[32][64];
    for (int i = 0; i < 32; i++) {
        snprintf(sql[i], sizeof(sql[i]), "SELECT ? + %d", i);
        assert_int_equal(plus_one(db, sql[i], 1), 1 + i);
        assert_true(oq_db_cached_statements(db) <= 8);
    }
    assert_int_equal(oq_db_cached_statements(db), 8);
    for (int i = 0; i < 32; i++) /* the replaced ones prepared again, the kept ones reused */
        assert_int_equal(plus_one(db, sql[i], 10), 10 + i);
    long long count = 0;
    int is_null = 0;
    assert_int_equal(oq_db_query_int(db, "SELECT COUNT(*) FROM t_kept", NULL, 0, &count, &is_null),
                     0);
    assert_int_equal(count, 2);
    assert_int_equal(oq_db_exec(db, "DROP TEMPORARY TABLE t_kept"), 0);
}

struct nested {
    struct oq_db *db;
    int rows;
};

static const char outer_sql[] = "SELECT ? UNION ALL SELECT ? + 1 UNION ALL SELECT ? + 2";

/* Each row runs more statements than are kept, and the one being read
 * again: neither may close or re-run the statement whose rows these are. */
static int run_others(void *ctx, const char *const *v, unsigned n)
{
    struct nested *x = ctx;
    char sql[64];
    assert_int_equal(n, 1);
    assert_int_equal(strtoll(v[0], NULL, 10), 100 + x->rows);
    for (int i = 0; i < 12; i++) {
        snprintf(sql, sizeof(sql), "SELECT ? + %d", 1000 + i);
        assert_int_equal(plus_one(x->db, sql, x->rows), 1000 + i + x->rows);
    }
    if (x->rows == 0) {
        struct oq_db_param p[] = {OQ_INT(7), OQ_INT(7), OQ_INT(7)};
        long long first = 0;
        int is_null = 0;
        assert_int_equal(oq_db_query_int(x->db, outer_sql, p, 3, &first, &is_null), 0);
        assert_int_equal(first, 7);
    }
    x->rows++;
    return 0;
}

static void a_statement_being_read_is_kept_from_others(void **state)
{
    struct nested x = {*state, 0};
    struct oq_db_param p[] = {OQ_INT(100), OQ_INT(100), OQ_INT(100)};
    assert_int_equal(oq_db_query_rows(x.db, outer_sql, p, 3, run_others, &x), 0);
    assert_int_equal(x.rows, 3);
    assert_true(oq_db_cached_statements(x.db) <= 8);
}

/* A `sending` row of handler "sweep" whose 1 ms lease has run out. */
static void expired_claim(struct oq_db *db, const char *key, const char *owner)
{
    struct oq_claim c = {"sweep", key, key, "coupon.email", "r", 1, 0};
    struct timespec wait = {0, 20 * 1000000L};
    enum oq_lease l;
    assert_int_equal(oq_ledger_lease(db, &c, owner, 1, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_NEW);
    nanosleep(&wait, NULL);
}

/* The rows of handler "sweep" that oq_ledger_abandoned finds. */
static size_t abandoned_sweep_rows(struct oq_db *db, int64_t grace_ms, struct oq_lease_row *rows,
                                   size_t max)
{
    struct oq_lease_row *all = calloc(100, sizeof(*all));
    size_t n = 0, mine = 0;
    assert_non_null(all);
    assert_int_equal(oq_ledger_abandoned(db, grace_ms, all, 100, &n, err, sizeof(err)), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(all[i].handler, "sweep") == 0 && mine < max)
            rows[mine++] = all[i];
    free(all);
    return mine;
}

static void abandoned_leases_are_settled_once(void **state)
{
    struct oq_db *db = *state;
    struct oq_lease_row rows[4];
    enum oq_lease l;
    expired_claim(db, "s-1", "p1");
    expired_claim(db, "s-2", "p1");
    /* a live lease and a finished send are never abandoned */
    struct oq_claim live = {"sweep", "s-live", "s-live", "coupon.email", "r", 1, 0};
    assert_int_equal(oq_ledger_lease(db, &live, "p1", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_finish(db, "sweep", "s-2", "p1", "sent", "250", err, sizeof(err)),
                     0);
    /* within the grace: not yet */
    assert_int_equal(abandoned_sweep_rows(db, 60000, rows, 4), 0);
    assert_int_equal(abandoned_sweep_rows(db, 0, rows, 4), 1);
    assert_string_equal(rows[0].effect_key, "s-1");
    assert_string_equal(rows[0].owner, "p1");
    assert_int_equal(strlen(rows[0].lease_until), 26); /* to the microsecond */
    assert_true(rows[0].expired_ms >= 0);

    /* two sweepers read the same row: the second UPDATE changes nothing */
    assert_int_equal(oq_ledger_abandon(db, &rows[0], 0, "swept", err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_abandon(db, &rows[0], 0, "swept", err, sizeof(err)), OQ_ENOTFOUND);
    struct oq_claim c = {"sweep", "s-1", "s-1", "coupon.email", "r", 1, 0};
    assert_int_equal(oq_ledger_lease(db, &c, "p2", 60000, &l, err, sizeof(err)), 0);
    assert_int_equal(l, OQ_LEASE_UNKNOWN); /* a later delivery parks it, never sends */
    assert_int_equal(oq_ledger_take_over(db, "sweep", "s-1", "p2", 60000, 0, err, sizeof(err)),
                     OQ_ENOTFOUND);

    /* a delivery took the lease over after the sweeper read the row: the
     * row read is stale (another lease_until) and is left alone */
    expired_claim(db, "s-3", "p1");
    assert_int_equal(abandoned_sweep_rows(db, 0, rows, 4), 1);
    assert_int_equal(oq_ledger_take_over(db, "sweep", "s-3", "p2", 60000, 0, err, sizeof(err)), 0);
    assert_int_equal(oq_ledger_abandon(db, &rows[0], 0, "swept", err, sizeof(err)), OQ_ENOTFOUND);
    assert_int_equal(oq_ledger_finish(db, "sweep", "s-3", "p2", "sent", "250", err, sizeof(err)),
                     0);
    /* and a row whose lease ran out less than the grace ago is left alone
     * even when read earlier with a shorter one */
    expired_claim(db, "s-4", "p1");
    assert_int_equal(abandoned_sweep_rows(db, 0, rows, 4), 1);
    assert_int_equal(oq_ledger_abandon(db, &rows[0], 60000, "swept", err, sizeof(err)),
                     OQ_ENOTFOUND);

    struct oq_lease_counts counts;
    assert_int_equal(oq_ledger_lease_counts(db, 60000, &counts, err, sizeof(err)), 0);
    assert_true(counts.expired >= 1); /* s-4 (and rows of the other tests) */
    assert_true(counts.unknown >= 1); /* s-1 */
}

static long long count(struct oq_db *db, const char *sql)
{
    long long v = -1;
    int is_null = 0;
    assert_int_equal(oq_db_query_int(db, sql, NULL, 0, &v, &is_null), 0);
    return v;
}

/* A pass marks the row unknown and stores one letter; a second pass, or
 * a row settled again by another, stores none. */
static void a_sweep_pass_stores_one_letter_per_lease(void **state)
{
    struct oq_db *db = *state;
    struct oq_config *cfg = oq_config_new();
    struct oq_sweep_stats st;
    assert_non_null(cfg);
    assert_int_equal(
        oq_config_set(cfg, "sweep_after_ms", "1s", OQ_SRC_FLAG, "test", err, sizeof(err)), 0);
    assert_int_equal(oq_db_exec(db, "UPDATE event_ledger SET lease_until = NOW(6) + INTERVAL 1"
                                    " HOUR WHERE state = 'sending'"),
                     0); /* the other tests' rows stay out of it */
    expired_claim(db, "p-1", "p1");
    expired_claim(db, "p-2", "p1");
    assert_int_equal(oq_db_exec(db, "UPDATE event_ledger SET lease_until = lease_until - INTERVAL"
                                    " 5 SECOND WHERE effect_key IN ('p-1', 'p-2')"),
                     0);
    expired_claim(db, "p-3", "p1"); /* within the 1 s grace */
    assert_int_equal(
        oq_sweep(db, cfg, "test/sweeper", 1, 0, NULL, NULL, NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(st.swept, 2); /* would */
    assert_int_equal(count(db, "SELECT COUNT(*) FROM event_ledger WHERE state = 'unknown' AND"
                               " effect_key LIKE 'p-%'"),
                     0); /* a dry run changes nothing */
    assert_int_equal(
        oq_sweep(db, cfg, "test/sweeper", 0, 0, NULL, NULL, NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(st.swept, 2);
    assert_int_equal(st.letters, 2);
    assert_int_equal(st.after.expired, 1); /* p-3 */
    assert_int_equal(st.after.abandoned, 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM dead_letter WHERE error_class = 'ambiguous'"
                               " AND event_identifier IN ('p-1', 'p-2') AND body_size > 0"),
                     2);
    assert_int_equal(
        oq_sweep(db, cfg, "test/sweeper", 0, 0, NULL, NULL, NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(st.swept, 0);
    /* the same lease settled again (a commit whose answer was lost, then
     * redone): the letter's key is the lease's, so no second letter */
    assert_int_equal(oq_db_exec(db, "UPDATE event_ledger SET state = 'sending' WHERE effect_key"
                                    " = 'p-1'"),
                     0);
    assert_int_equal(oq_db_exec(db, "UPDATE event_ledger SET lease_until = (SELECT"
                                    " first_failed_at FROM dead_letter WHERE event_identifier ="
                                    " 'p-1') WHERE effect_key = 'p-1'"),
                     0);
    assert_int_equal(
        oq_sweep(db, cfg, "test/sweeper", 0, 0, NULL, NULL, NULL, &st, err, sizeof(err)), 0);
    assert_int_equal(st.swept, 1);
    assert_int_equal(st.letters, 0);
    assert_int_equal(count(db, "SELECT COUNT(*) FROM dead_letter WHERE event_identifier = 'p-1'"),
                     1);
    oq_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claims_and_duplicates),
        cmocka_unit_test(lease_then_sent),
        cmocka_unit_test(a_group_settles_each_row_alone),
        cmocka_unit_test(a_mark_reads_only_its_own_rows),
        cmocka_unit_test(a_group_fails_on_a_warning),
        cmocka_unit_test(a_released_row_is_never_done),
        cmocka_unit_test(a_swept_lease_finishes_as_sent),
        cmocka_unit_test(a_locked_row_is_reported_held),
        cmocka_unit_test(expired_lease_is_ambiguous),
        cmocka_unit_test(failed_send_is_released),
        cmocka_unit_test(claim_fails_on_a_warning),
        cmocka_unit_test(lease_fails_on_a_warning),
        cmocka_unit_test(a_big_batch_is_claimed),
        cmocka_unit_test(db_ignore_reads_the_warnings),
        cmocka_unit_test(kept_statements_end_with_their_connection),
        cmocka_unit_test(failed_statements_go_and_few_are_kept),
        cmocka_unit_test(a_statement_being_read_is_kept_from_others),
        cmocka_unit_test(abandoned_leases_are_settled_once),
        cmocka_unit_test(a_sweep_pass_stores_one_letter_per_lease),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
