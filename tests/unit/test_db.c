/* test_db.c - what a MySQL error number means to the consumer */
#include <errmsg.h>
#include <mysqld_error.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "orderq/db.h"

/* A lost or refused connection: reopen it, blame no message. */
static void lost_connections_are_gone(void **state)
{
    (void)state;
    unsigned gone[] = {CR_SERVER_GONE_ERROR, CR_SERVER_LOST,
                       CR_CONNECTION_ERROR,  CR_CONN_HOST_ERROR,
                       ER_CONNECTION_KILLED, ER_SERVER_SHUTDOWN,
                       CR_UNKNOWN_ERROR,     4031 /* MySQL 8: idle past wait_timeout */};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        assert_int_equal(oq_db_classify(gone[i]), OQ_DB_GONE);
        assert_true(oq_db_class_is_outage(oq_db_classify(gone[i])));
    }
}

/* A server that refuses work for a while: wait, spend no attempt. */
static void refusals_for_now_are_outages(void **state)
{
    (void)state;
    unsigned away[] = {ER_OPTION_PREVENTS_STATEMENT /* read_only */,
                       ER_UNKNOWN_COM_ERROR /* Galera: WSREP not ready */,
                       ER_RECORD_FILE_FULL,
                       ER_DISK_FULL,
                       ER_QUERY_INTERRUPTED,
                       ER_CON_COUNT_ERROR};
    for (size_t i = 0; i < sizeof(away) / sizeof(away[0]); i++) {
        assert_int_equal(oq_db_classify(away[i]), OQ_DB_UNAVAILABLE);
        assert_true(oq_db_class_is_outage(oq_db_classify(away[i])));
    }
}

static void conflicts_and_duplicates(void **state)
{
    (void)state;
    assert_int_equal(oq_db_classify(ER_LOCK_DEADLOCK), OQ_DB_RETRY); /* and Galera's conflict */
    assert_int_equal(oq_db_classify(ER_LOCK_WAIT_TIMEOUT), OQ_DB_RETRY);
    assert_int_equal(oq_db_classify(ER_DUP_ENTRY), OQ_DB_DUPLICATE);
    assert_false(oq_db_class_is_outage(OQ_DB_RETRY));
}

/* An error of the statement itself: after three, a message is to blame. */
static void statement_errors_are_other(void **state)
{
    (void)state;
    assert_int_equal(oq_db_classify(0), OQ_DB_OTHER);
    assert_int_equal(oq_db_classify(ER_NO_SUCH_TABLE), OQ_DB_OTHER);
    assert_int_equal(oq_db_classify(ER_DATA_TOO_LONG), OQ_DB_OTHER);
    assert_false(oq_db_class_is_outage(OQ_DB_OTHER));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lost_connections_are_gone),
        cmocka_unit_test(refusals_for_now_are_outages),
        cmocka_unit_test(conflicts_and_duplicates),
        cmocka_unit_test(statement_errors_are_other),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
