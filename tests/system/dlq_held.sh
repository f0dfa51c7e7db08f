#!/usr/bin/env bash
# dlq_held.sh - dead letters too big for a dead_letter row never stall the
# archiver, and none is lost. A MariaDB of the test's own (socket only) has
# max_allowed_packet 256 KiB, so a row holds at most 192 KiB of body (the
# packet less 64 KiB for the other columns): the same path as a body over
# 16 MiB on a default server, without publishing 70 x 16 MiB.
# 70 letters of 200,000 bytes, then 10 small ones, wait in orderq.dead
# before the archiver starts. Each big one gets a row without its body that
# says where it is, and goes to orderq.dead.held whole (confirmed before its
# ack); the small ones are archived as ever. Counted: 80 rows, 70 letters in
# the held queue, each matching its row by x-orderq-letter-key, nothing left
# in orderq.dead; `dlq replay` of a held row is skipped, naming the queue.
# With the held queue deleted under it, the archiver declares it again and
# the next big letter moves there all the same.
# The old code left the big ones unacked: 64 of them (the archiver's
# prefetch) stopped it, and the small ones were never archived.
source "$(dirname "$0")/lib.sh"
need_rabbitmq
v=$(urlenc "$VHOST")

note "a MariaDB of our own with max_allowed_packet 256K"
start_own_mariadb --skip-networking --max-allowed-packet=256K
my -e "CREATE DATABASE orderq_held CHARACTER SET utf8mb4;
       CREATE USER 'oq'@'localhost' IDENTIFIED BY 'pw-held';
       GRANT ALL ON orderq_held.* TO 'oq'@'localhost';"
expect_eq 262144 "$(my -e 'SELECT @@max_allowed_packet')" "max_allowed_packet"
export ORDERQ_MYSQL_URL="mysql://oq:pw-held@localhost/orderq_held?socket=$MY/sock"
MIGRATE_MYSQL_URL=$ORDERQ_MYSQL_URL
oq migrate >/dev/null 2>&1 || fail "migrate"
oq topology declare --create-shop-exchange >/dev/null || fail "topology declare"
rows() { my orderq_held -e "SELECT COUNT(*) FROM dead_letter${1:+ WHERE ${1}}"; }
rows_are() { [ "$(rows "${2:-}")" = "$1" ]; }

note "70 letters of 200,000 bytes, then 10 small ones, in orderq.dead"
publish_letters --bytes 200000 big 70
publish_letters small 10
wait_for 10 ready_is orderq.dead 80 || fail "in orderq.dead: $(queue_ready orderq.dead)"

note "the archiver: every small one archived, every big one held"
start=$(date +%s%N)
CONSUME_QUEUES=orderq.probe start_consumer arch
wait_for 60 rows_are 10 "event_identifier LIKE 'small-%'" ||
    fail "small letters archived: $(rows "event_identifier LIKE 'small-%'") of 10 (rows in all: $(rows)); $(grep -c 'stays in the queue' "$WORK/arch.log" || true) held unacked; $(tail -2 "$WORK/arch.log")"
wait_for 60 rows_are 80 || fail "rows: $(rows) of 80; $(tail -2 "$WORK/arch.log")"
note "80 letters archived, 70 of them held, in $((($(date +%s%N) - start) / 1000000)) ms (the consumer's start included)"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer's exit code"
consumer_pid=
expect_eq "70 70 0 14000000" "$(my orderq_held -e "SELECT COUNT(*), SUM(error LIKE '%body of 200000 bytes kept in queue orderq.dead.held, not here%'), SUM(LENGTH(body)), SUM(body_size) FROM dead_letter WHERE event_identifier LIKE 'big-%'" | tr '\t' ' ')" \
    "the big letters' rows: say where the body is, hold none of it, keep its size"
expect_contains "not from orderq: no user_id" "$(my orderq_held -e "SELECT error FROM dead_letter WHERE event_identifier = 'big-0'")" "a big row keeps its reason"
expect_eq 0 "$(queue_ready orderq.dead)" "left in orderq.dead"
my orderq_held -e "SELECT letter_key, event_identifier FROM dead_letter WHERE event_identifier LIKE 'big-%'" >"$WORK/keys"
"$PY" - "$VHOST" "$WORK/keys" <<'PY' || fail "the letters in orderq.dead.held"
import sys, pika
rows = dict(line.split("\t") for line in open(sys.argv[2]).read().splitlines())
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
seen = set()
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    while True:
        m, props, body = ch.basic_get("orderq.dead.held")
        if m is None:
            break
        key = (props.headers or {}).get("x-orderq-letter-key")
        assert rows.get(key) == props.message_id, (key, props.message_id)
        i = int(props.message_id[4:])
        assert body == (b"big-%02d:" % i).ljust(200000, b"x"), (props.message_id, len(body))
        seen.add(props.message_id)
print("  in orderq.dead.held:", len(seen), "letters, each whole and matching its row")
assert seen == {f"big-{i}" for i in range(70)}, sorted(seen)
PY

note "dlq replay of a held row: skipped, naming the queue"
try oq dlq replay --id "$(my orderq_held -e "SELECT id FROM dead_letter WHERE event_identifier = 'big-0'")" --to-queue orderq.probe --as tester
expect_eq 65 "$rc" "exit code: $out"
expect_contains "its body (200000 bytes) is not in the archive but in queue orderq.dead.held" "$out" "the reason"

note "the held queue deleted under a running consumer: declared again, the next big letter moves there"
CONSUME_QUEUES=orderq.probe start_consumer arch2
wait_for 30 consuming orderq.probe || fail "the consumer did not start: $(tail -2 "$WORK/arch2.log")"
mgmt DELETE "/api/queues/$v/orderq.dead.held" >/dev/null
publish_letters --bytes 200000 late 1
wait_for 30 rows_are 1 "event_identifier = 'late-0'" || fail "the late letter's row: $(tail -2 "$WORK/arch2.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer's exit code"
consumer_pid=
expect_eq "1 0" "$(queue_ready orderq.dead.held) $(queue_ready orderq.dead)" "in orderq.dead.held and orderq.dead"
