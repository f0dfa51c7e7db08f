#!/usr/bin/env bash
# publish.sh - `orderq publish`: every line confirmed and routed, properties
# set from the envelope, unroutable and invalid lines reported, never silent
source "$(dirname "$0")/lib.sh"
need_rabbitmq
v=$(urlenc "$VHOST")
oq topology declare --create-shop-exchange >/dev/null

ready_in() { mgmt GET "/api/queues/$v/$1" | json 'd.get("messages", 0)'; }

note "5000 events, half under the seed's legacy code: all confirmed, all in the work queue"
"$PY" - >"$WORK/events.jsonl" <<'PY'
import json
for i in range(5000):
    code = "order.processing" if i % 2 else "add_order_to_queue"
    print(json.dumps({"event_code": code, "event_identifier": f"{9200000000 + i}_processing",
                      "event_data": {"order_id": str(9200000000 + i), "order_status": "processing",
                                     "currency": "USD", "items": []}}))
PY
out=$(oq publish "$WORK/events.jsonl" --json)
expect_eq '{"published": 5000, "confirmed": 5000, "nacked": 0, "unroutable": 0}' "$out" "publish summary"
wait_for 15 bash -c "[ \"\$(curl -s -u $MGMT_AUTH $MGMT/api/queues/$v/orderq.order.processing | $PY -c 'import json,sys; print(json.load(sys.stdin).get(\"messages\"))')\" = 5000 ]" \
    || fail "orderq.order.processing holds $(ready_in orderq.order.processing) messages, expected 5000"

note "properties come from the envelope"
msg=$(mgmt POST "/api/queues/$v/orderq.order.processing/get" '{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}')
"$PY" -c '
import json, sys
m = json.loads(sys.argv[1])[0]
p = m["properties"]
assert p["message_id"] == "9200000000_processing", p
assert p["type"] == "add_order_to_queue", p
assert p["delivery_mode"] == 2 and p["content_type"] == "application/json", p
assert json.loads(m["payload"])["event_identifier"] == p["message_id"]
' "$msg" || fail "message properties: $msg"

note "stdin works; an event nobody is bound to is reported as unroutable (exit 69)"
try bash -c "echo '{\"event_code\": \"order.cancelled\", \"event_identifier\": \"x1\", \"event_data\": {}}' | \"\$ORDERQ_BIN\" publish -"
expect_eq 69 "$rc" "exit code for an unroutable event"
expect_contains "1 confirmed, 0 refused, 1 unroutable" "$out" "summary"
expect_contains 'first routing key "order.cancelled"' "$out" "error names the routing key"

note "a line that is not an event stops the run: exit 65, the line named"
printf '%s\n' "$(head -1 "$WORK/events.jsonl")" '{"event_code": "order.processing", "event_data": {}}' >"$WORK/bad.jsonl"
try oq publish "$WORK/bad.jsonl"
expect_eq 65 "$rc" "exit code for a bad line"
expect_contains "line 2 is not an event: event_identifier is missing" "$out" "error text"
expect_contains "published 1 before it" "$out" "error text"

note "--raw publishes any bytes under a given routing key"
out=$(printf 'not json\n' | oq publish --raw --routing-key invoice.created --json)
expect_eq '{"published": 1, "confirmed": 1, "nacked": 0, "unroutable": 0}' "$out" "raw publish"
try oq publish --raw
expect_eq 64 "$rc" "--raw without --routing-key"
