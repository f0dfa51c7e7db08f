#!/usr/bin/env bash
# legacy.sh - `orderq relay --legacy-table coupon_queue`: the seed's queue table
# relayed to the broker; PHP-serialized event_data decoded into the envelope;
# rows marked only after the confirm; malformed and unroutable rows keep a
# reason and stay unexecuted; two bridges at once publish each row once.
source "$(dirname "$0")/lib.sh"
need_mysql
need_rabbitmq
oq migrate >/dev/null 2>&1
oq topology declare --create-shop-exchange >/dev/null
sql "$DB" <"$(dirname "$0")/../../sql/legacy/coupon_queue.sql"

row() { # row CODE IDENTIFIER PHP-DATA [IS_EXECUTED]
    sql "$DB" -e "INSERT INTO coupon_queue (event_code, event_identifier, event_data, created_at, is_executed)
                  VALUES ('$1', '$2', '${3//\'/\'\'}', '2017-02-23 11:06:40', ${4:-0})"
}
result() { sql "$DB" -e "SELECT CONCAT(is_executed, ' ', executed_at IS NOT NULL, ' ', execute_result) FROM coupon_queue WHERE event_identifier = '$1'"; }

note "rows of the seed's table become events; the bad ones say why and stay"
row add_order_to_queue 9200000217_processing 'a:2:{s:8:"order_id";s:10:"9200000217";s:12:"order_status";s:10:"processing";}'
row add_order_to_queue bad_1 'a:2:{s:8:"order_id";s:10:"9200000218";'
row send_coupon_code_by_email 9200000217_coupon 'a:4:{s:8:"order_id";s:10:"9200000217";s:5:"items";a:2:{i:0;a:3:{s:3:"sku";s:5:"MUG-1";s:3:"qty";i:2;s:5:"price";d:25.5;}i:1;a:1:{s:3:"sku";N;}}s:4:"paid";b:1;s:4:"note";s:8:"caf'$'\xc3\xa9'' ok";}'
row add_order_to_queue done_1 'a:1:{s:8:"order_id";s:1:"1";}' 1
row x_not_bound unbound_1 'a:1:{s:8:"order_id";s:1:"2";}'
row add_order_to_queue 9200000219_processing 'a:1:{s:8:"order_id";s:10:"9200000219";}'
try oq relay --legacy-table coupon_queue --once
expect_eq 0 "$rc" "exit code"
expect_eq "published 3 rows of coupon_queue; 2 left unexecuted with a reason in execute_result" "$(tail -1 <<<"$out")" "summary"
expect_eq "1 1 orderq: published" "$(result 9200000217_processing)" "a good row"
expect_eq "1 1 orderq: published" "$(result 9200000219_processing)" "the good row after a bad one"
expect_eq "1 1 orderq: published" "$(result 9200000217_coupon)" "nested data"
expect_eq "0 0 orderq: event_data is not PHP-serialized data: an array cut short at byte 38" \
    "$(result bad_1)" "the malformed row"
expect_contains "0 0 orderq: no queue is bound for routing key x_not_bound" "$(result unbound_1)" "the unroutable row"
expect_eq "1 0 " "$(result done_1)" "an executed row is left alone"
wait_for 10 ready_is orderq.order.processing 2 || fail "orderq.order.processing holds $(queue_ready orderq.order.processing), expected 2"
wait_for 10 ready_is orderq.coupon.email 1 || fail "orderq.coupon.email holds $(queue_ready orderq.coupon.email), expected 1"
msg=$(mgmt POST "/api/queues/$(urlenc "$VHOST")/orderq.coupon.email/get" '{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}')
"$PY" -c '
import json, sys
m = json.loads(sys.argv[1])[0]
p, body = m["properties"], json.loads(m["payload"])
assert p["type"] == "send_coupon_code_by_email" and p["delivery_mode"] == 2, p
assert "x-orderq-legacy-id" in p["headers"], p
assert body == {"event_code": "send_coupon_code_by_email", "event_identifier": "9200000217_coupon",
                "created_at": "2017-02-23T11:06:40Z",
                "event_data": {"order_id": "9200000217",
                               "items": [{"sku": "MUG-1", "qty": 2, "price": 25.5}, {"sku": None}],
                               "paid": True, "note": "caf\u00e9 ok"}}, body
' "$msg" || fail "the coupon event as published: $msg"

note "a second run publishes nothing again; a fixed row goes once its reason is cleared"
try oq relay --legacy-table coupon_queue --once
expect_eq "published 0 rows of coupon_queue; 0 left unexecuted with a reason in execute_result" "$(tail -1 <<<"$out")" "second run"
sql "$DB" -e "UPDATE coupon_queue SET event_data = 'a:1:{s:8:\"order_id\";s:10:\"9200000218\";}', execute_result = '' WHERE event_identifier = 'bad_1'"
try oq relay --legacy-table coupon_queue --once
expect_eq "published 1 rows of coupon_queue; 0 left unexecuted with a reason in execute_result" "$(tail -1 <<<"$out")" "after the fix"
wait_for 10 ready_is orderq.order.processing 3 || fail "orderq.order.processing holds $(queue_ready orderq.order.processing), expected 3"

note "a backlog of 3000 rows, two bridges at once: each row published once"
"$PY" - >"$WORK/rows.sql" <<'PY'
rows = []
for i in range(3000):
    data = 'a:1:{s:8:"order_id";s:%d:"%d";}' % (len(str(i)), i)
    rows.append("('send_coupon_code_by_email', 'b%d', '%s', NOW(), 0)" % (i, data))
for k in range(0, len(rows), 500):
    print("INSERT INTO coupon_queue (event_code, event_identifier, event_data, created_at, is_executed) VALUES " + ",".join(rows[k:k + 500]) + ";")
PY
sql "$DB" <"$WORK/rows.sql"
oq relay --legacy-table coupon_queue --once >"$WORK/b1.out" 2>"$WORK/b1.err" &
b1=$!
oq relay --legacy-table coupon_queue --once >"$WORK/b2.out" 2>"$WORK/b2.err" &
b2=$!
wait "$b1" || fail "bridge 1: $(cat "$WORK/b1.err")"
wait "$b2" || fail "bridge 2: $(cat "$WORK/b2.err")"
total=$(cat "$WORK/b1.out" "$WORK/b2.out" | awk '{ s += $2 } END { print s }')
expect_eq 3000 "$total" "rows published by the two bridges together"
expect_eq 0 "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon_queue WHERE event_identifier LIKE 'b%' AND is_executed = 0")" "backlog rows left"
wait_for 20 ready_is orderq.coupon.email 3001 \
    || fail "orderq.coupon.email holds $(queue_ready orderq.coupon.email), expected 3001: a row was published twice or lost"

note "a backlog on a terminal shows a progress bar"
sed "s/'b\([0-9]\)/'t\1/g" "$WORK/rows.sql" | sql "$DB" # the same 3000 rows, new identifiers
script -qec "$ORDERQ_BIN relay --legacy-table coupon_queue --once" /dev/null >"$WORK/tty.out" 2>&1 \
    || fail "relay on a terminal: $(cat "$WORK/tty.out")"
expect_contains "[########################] 3000/3000" "$(tr '\r' '\n' <"$WORK/tty.out")" "the finished bar"
expect_contains "published 3000 rows of coupon_queue" "$(cat "$WORK/tty.out")" "summary on a terminal"

note "a bridge left running with 1 s heartbeats keeps its idle connection; a late row goes"
# (on a port of its own: a standalone relay serves http_addr, and 9464 may be taken here)
baddr="127.0.0.1:$(free_port)"
"$ORDERQ_BIN" relay --legacy-table coupon_queue --heartbeat-s 1 --http-addr "$baddr" 2>"$WORK/idle.err" &
bridge=$!
CLEANUP+=("kill -9 $bridge")
wait_for 20 curl -sf "http://$baddr/readyz" || fail "the bridge never ready on /readyz: $(tail -3 "$WORK/idle.err")"
sleep 5 # idle: several heartbeat intervals with nothing to publish
row add_order_to_queue late_1 'a:1:{s:8:"order_id";s:4:"late";}'
late_published() { [ "$(result late_1)" = "1 1 orderq: published" ]; }
wait_for 10 late_published || fail "the late row: $(result late_1); $(cat "$WORK/idle.err")"
kill -TERM "$bridge"
wait "$bridge" || fail "the bridge's exit code"
grep -q '"level":"error"' "$WORK/idle.err" && fail "the idle bridge lost its connection: $(cat "$WORK/idle.err")"

note "a table name that is not one is refused"
try oq relay --legacy-table 'coupon_queue; DROP TABLE x' --once
expect_eq 64 "$rc" "exit code for a bad table name"
expect_contains "is not a table name" "$out" "message"
try oq relay --legacy-table no_such_table --once
expect_eq 78 "$rc" "exit code for a table that does not exist"
expect_contains "there is no table \`no_such_table\`" "$out" "message"
