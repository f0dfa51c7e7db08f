#!/usr/bin/env bash
# relay.sh - `orderq relay`: outbox rows published once each with confirms and
# marked, even with two relays at once (SKIP LOCKED); an unroutable row stays
source "$(dirname "$0")/lib.sh"
setup_declared

note "3000 outbox rows, two relays at once"
"$PY" - >"$WORK/rows.sql" <<'PY'
import json
rows = []
for i in range(3000):
    body = json.dumps({"event_code": "coupon.email", "event_identifier": f"r{i}_processing_1_14", "event_data": {"n": i}})
    rows.append("('coupon.email', 'r%d_processing_1_14', '', 'coupon.email', '%s')" % (i, body.replace("'", "''")))
for k in range(0, len(rows), 500):
    print("INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body) VALUES " + ",".join(rows[k:k + 500]) + ";")
PY
sql "$DB" <"$WORK/rows.sql"
oq relay --once >"$WORK/r1.out" 2>"$WORK/r1.err" &
r1=$!
oq relay --once >"$WORK/r2.out" 2>"$WORK/r2.err" &
r2=$!
wait "$r1" || fail "relay 1: $(cat "$WORK/r1.err")"
wait "$r2" || fail "relay 2: $(cat "$WORK/r2.err")"
total=$(cat "$WORK/r1.out" "$WORK/r2.out" | awk '{ s += $2 } END { print s }')
expect_eq 3000 "$total" "rows published by the two relays together"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')" "rows left unpublished"
wait_for 20 ready_is orderq.coupon.email 3000 \
    || fail "orderq.coupon.email holds $(queue_ready orderq.coupon.email), expected 3000: a row was published twice or lost"
msg=$(mgmt POST "/api/queues/$(urlenc "$VHOST")/orderq.coupon.email/get" '{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}')
"$PY" -c '
import json, sys
p = json.loads(sys.argv[1])[0]["properties"]
assert p["message_id"].endswith("_processing_1_14") and p["type"] == "coupon.email", p
assert p["delivery_mode"] == 2 and "x-orderq-outbox-id" in p["headers"], p
' "$msg" || fail "relayed message properties: $msg"

note "a row no queue takes stays in the outbox"
sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body) VALUES ('x.unbound', 'u1', '', 'x.unbound', '{}')"
oq relay --once >"$WORK/r3.out" 2>"$WORK/r3.err"
expect_eq "published 0 outbox events" "$(cat "$WORK/r3.out")" "relay of an unroutable row"
expect_contains "reached no queue" "$(cat "$WORK/r3.err")" "warning"
expect_eq 1 "$(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')" "unroutable row still pending"
expect_eq "1 no queue is bound for this exchange and routing key 1" \
    "$(sql "$DB" -e "SELECT CONCAT(publish_attempts, ' ', last_error, ' ', next_attempt_at > NOW(6)) FROM outbox WHERE event_identifier = 'u1'")" \
    "the failed row is deferred with its reason"
oq relay --once >"$WORK/r4.out" 2>"$WORK/r4.err"
expect_eq 1 "$(sql "$DB" -e "SELECT publish_attempts FROM outbox WHERE event_identifier = 'u1'")" "not retried before its time"
