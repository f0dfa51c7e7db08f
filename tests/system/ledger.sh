#!/usr/bin/env bash
# ledger.sh - run test_ledger (claims, duplicates, leases) against a fresh, migrated database
source "$(dirname "$0")/lib.sh"
need_mysql
oq migrate >/dev/null 2>&1
# orderq's own rights, plus one for a scratch table of the test itself
# (db_ignore_reads_the_warnings): orderq never creates one
sql -e "GRANT CREATE TEMPORARY TABLES ON \`$DB\`.* TO '$MYSQL_USER'@'localhost'"
"${ORDERQ_TEST_LEDGER:?ORDERQ_TEST_LEDGER must point at test_ledger}"
