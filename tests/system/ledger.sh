#!/usr/bin/env bash
# ledger.sh - run test_ledger (claims, duplicates, leases) against a fresh, migrated database
source "$(dirname "$0")/lib.sh"
need_mysql
oq migrate >/dev/null 2>&1
"${ORDERQ_TEST_LEDGER:?ORDERQ_TEST_LEDGER must point at test_ledger}"
