/* test_ledger.c - the ledger against a real MariaDB: claims, duplicates, leases
 *
 * Run by ledger.sh, which makes a database, migrates it and sets
 * ORDERQ_MYSQL_URL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orderq/db.h"
#include "orderq/ledger.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claims_and_duplicates),
        cmocka_unit_test(lease_then_sent),
        cmocka_unit_test(expired_lease_is_ambiguous),
        cmocka_unit_test(failed_send_is_released),
        cmocka_unit_test(claim_fails_on_a_warning),
        cmocka_unit_test(lease_fails_on_a_warning),
        cmocka_unit_test(a_big_batch_is_claimed),
        cmocka_unit_test(db_ignore_reads_the_warnings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
