#!/usr/bin/env bash
# dlq_unreadable.sh - a letter librabbitmq cannot read (a header named "")
# at the head of orderq.dead, 10 letters behind it:
#  - orderq.dead as orderq declares it now (dead-lettering into
#    orderq.dead.held): the archiver stores a row saying so and rejects it
#    there, whole; the 10 letters behind it are archived; every
#    connection (the archive connection closed on the letter, and all of
#    them on TERM) ends after the broker's close-ok;
#  - orderq.dead as an older orderq declared it (no dead-lettering):
#    `topology declare` takes it with a warning; the letter stays at the
#    head, the log says why, and the archiver's reconnects back off.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
rows() { sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter'; }
rows_are() { [ "$(rows)" = "$1" ]; }

note "orderq.dead dead-letters into orderq.dead.held: the letter goes there whole, with a row; the 10 behind it are archived"
publish_letters --unreadable --key order.processing letter 10
start_link 0
ORDERQ_AMQP_URL=$LINK_URL start_consumer archive
wait_for 30 rows_are 11 || fail "rows: $(rows) of 11 (the unreadable letter and 10): $(grep -m2 'archiving dead letters' "$WORK/archive.log")"
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead: $(queue_ready orderq.dead)"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
expect_polite_ends
expect_eq 2 "$(grep -c '^archive:' "$LINK_REPORT")" "archive connections (one closed on the letter, one on TERM)"
expect_eq 1 "$(queue_ready orderq.dead.held)" "letters in orderq.dead.held"
"$PY" - "$VHOST" <<'PY' || fail "the letter in orderq.dead.held is not the unreadable one, whole"
import sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    method, props, body = conn.channel().basic_get("orderq.dead.held", auto_ack=False)
assert body == b'{"event_identifier":"hdr_key_empty"}' and props.message_id == "unreadable", (body, props)
assert props.headers[""] == "empty key", props.headers
death = props.headers["x-death"]
assert death[0]["reason"] == "rejected" and death[0]["queue"] == "orderq.dead", death
PY
row=$(sql "$DB" -e "SELECT CONCAT_WS('|', error_class, exchange_name, routing_key, body_size) FROM dead_letter WHERE error_class = 'unreadable'")
expect_eq "unreadable|orderq.dead|order.processing|0" "$row" "the row of the unreadable letter"
expect_contains "properties cannot be decoded" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE error_class = 'unreadable'")" "its error"
expect_contains "the letter is whole in queue orderq.dead.held" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE error_class = 'unreadable'")" "its error"
expect_eq 10 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE CONVERT(body USING utf8mb4) LIKE 'letter-%'")" "the 10 letters behind it"
id=$(sql "$DB" -e "SELECT id FROM dead_letter WHERE error_class = 'unreadable'")
try oq dlq replay --id "$id"
expect_contains "its properties cannot be decoded: the letter is whole in queue orderq.dead.held" "$out" "replay skips it"

note "orderq.dead as an older orderq declared it: taken with a warning; the letter stays, the reconnects back off"
v=$(urlenc "$VHOST")
mgmt DELETE "/api/queues/$v/orderq.dead" >/dev/null
mgmt PUT "/api/queues/$v/orderq.dead" '{"durable": true, "arguments": {"x-queue-type": "quorum"}}' >/dev/null
try oq topology declare --create-shop-exchange
expect_eq 0 "$rc" "topology declare over the older orderq.dead: $out"
expect_contains 'has the arguments an older orderq gave it' "$out" "its warning"
publish_letters --unreadable --key order.processing letter 3
start_consumer older
sleep 12
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
n=$(grep -c 'holds up the archive until a person removes it' "$WORK/older.log" || true)
note "$n archive connections stopped by the letter in 12 s"
# backoff 0.25-0.5, 0.5-1, 1-2, 2-4, 4-8 s: at most 6 in 12 s (without it ~30)
[ "$n" -ge 2 ] && [ "$n" -le 6 ] || fail "archive connections stopped by the letter in 12 s: $n, expected 2 to 6 (backoff)"
expect_contains "does not dead-letter into orderq.dead.held" "$(grep -m1 'holds up the archive' "$WORK/older.log")" "the log says why"
wait_for 10 ready_is orderq.dead 4 || fail "letters left in orderq.dead (the unreadable one and 3): expected 4, got $(queue_ready orderq.dead)"
expect_eq 11 "$(rows)" "rows (none for the letters behind it)"
