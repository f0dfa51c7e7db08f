#!/usr/bin/env bash
# mysql_hosts.sh - mysql_url with several hosts: the first one down (a port
# nothing listens on), orderq uses the next; all down, the error names each
# host; socket= with several hosts is refused; config show hides every
# password
source "$(dirname "$0")/lib.sh"
need_mysql
down=$(free_port) # nothing listens there: connecting is refused at once
tcp="mysql://$MYSQL_MIGRATE_USER:$TEST_PASSWORD@127.0.0.1"

note "the first host down: migrate runs on the second"
try env ORDERQ_MYSQL_URL="$tcp:$down/$DB,$tcp:3306/$DB" "$ORDERQ_BIN" migrate
expect_eq 0 "$rc" "migrate with the first of two hosts down: $out"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$DB' AND TABLE_NAME = 'event_ledger'")" "event_ledger made through the second host"

note "every host down: the error names each"
try env ORDERQ_MYSQL_URL="$tcp:$down/$DB,$tcp:$(free_port)/$DB" "$ORDERQ_BIN" migrate
[ "$rc" -ne 0 ] || fail "migrate succeeded with no host up: $out"
expect_contains "host 1 of 2: cannot connect to MySQL at 127.0.0.1" "$out" "first host's reason"
expect_contains "host 2 of 2: cannot connect to MySQL at 127.0.0.1" "$out" "second host's reason"

note "socket= with several hosts: refused, saying why"
try env ORDERQ_MYSQL_URL="$tcp:3306/$DB,mysql://u@localhost/$DB?socket=$SOCK" "$ORDERQ_BIN" migrate
expect_eq 78 "$rc" "exit code of a refused mysql_url"
expect_contains "mysql_url (ORDERQ_MYSQL_URL): node 2 of 2 has socket=" "$out" "refusal"

note "config show hides the password of every host"
try env ORDERQ_MYSQL_URL="$tcp:$down/$DB,$tcp:3306/$DB" "$ORDERQ_BIN" config show
expect_eq 0 "$rc" "config show: $out"
if grep -qF -- "$TEST_PASSWORD" <<<"$out"; then fail "config show printed a password: $out"; fi
expect_contains "$MYSQL_MIGRATE_USER:***@127.0.0.1:3306/$DB" "$out" "second host redacted"
