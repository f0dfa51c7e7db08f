#!/usr/bin/env bash
# dlq_read_only.sh - while MySQL is read_only (a failover under way), the
# dead-letter archiver waits with backoff, it does not spin: each letter it
# cannot store goes back to orderq.dead, and the archiver must not take it
# again at once. Found by the long chaos run: 683 warnings in a 15 s
# read_only window across 4 consumers, and a letter whose x-delivery-count
# reached 684. A MariaDB of the test's own is made read_only (orderq's user
# there has rights on its database only, so read_only applies to it); after
# 10 s it is writable again and every letter is archived once.
source "$(dirname "$0")/lib.sh"
need_rabbitmq

note "a MariaDB of our own, and 3 letters in orderq.dead"
start_own_mariadb --skip-networking
my -e "CREATE DATABASE orderq_ro CHARACTER SET utf8mb4;
       CREATE USER 'oq'@'localhost' IDENTIFIED BY 'pw-ro';
       GRANT ALL ON orderq_ro.* TO 'oq'@'localhost';"
export ORDERQ_MYSQL_URL="mysql://oq:pw-ro@localhost/orderq_ro?socket=$MY/sock"
MIGRATE_MYSQL_URL=$ORDERQ_MYSQL_URL
oq migrate >/dev/null 2>&1 || fail "migrate"
oq topology declare --create-shop-exchange >/dev/null || fail "topology declare"
rows() { my orderq_ro -e "SELECT COUNT(*) FROM dead_letter"; }
rows_are() { [ "$(rows)" = "$1" ]; }
publish_letters ro 3
wait_for 10 ready_is orderq.dead 3 || fail "in orderq.dead: $(queue_ready orderq.dead)"

note "read_only for 10 s while the archiver runs"
my -e "SET GLOBAL read_only = 1"
CONSUME_QUEUES=orderq.probe start_consumer ro
sleep 10
waits=$(grep -c 'archiving dead letters: .*until MySQL is back' "$WORK/ro.log" || true)
note "$waits attempts to store a letter in 10 s of read_only"
expect_eq 0 "$(rows)" "rows stored while read_only"
# backoff 0.5, 1, 2, 4, 8 s: at most 6 attempts in 10 s (before: hundreds)
[ "$waits" -ge 1 ] && [ "$waits" -le 6 ] ||
    fail "attempts to store a letter in 10 s of read_only: $waits, expected 1 to 6 (backoff): $(grep -m2 'archiving dead letters' "$WORK/ro.log")"

note "writable again: every letter archived once"
my -e "SET GLOBAL read_only = 0"
wait_for 40 rows_are 3 || fail "rows after read_only: $(rows) of 3; $(tail -2 "$WORK/ro.log")"
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead: $(queue_ready orderq.dead)"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer's exit code"
consumer_pid=
expect_eq 3 "$(rows)" "rows (each letter once)"
