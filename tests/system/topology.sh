#!/usr/bin/env bash
# topology.sh - declare twice, the shop exchange check, verify finds a mismatched queue,
# and deploy/rabbitmq/definitions.json agrees with what declare creates
source "$(dirname "$0")/lib.sh"
need_rabbitmq
top=$(cd "$(dirname "$0")/../.." && pwd)
v=$(urlenc "$VHOST")

# Definitions JSON (stdin) reduced to what orderq declares, sorted, one item
# a line, so two of them compare with diff.
normalize() {
    "$PY" -c '
import json, sys
d = json.load(sys.stdin)
for e in d["exchanges"]:
    print("exchange", e["name"], e["type"], e["durable"], e["auto_delete"], e["internal"], json.dumps(e["arguments"], sort_keys=True))
for q in d["queues"]:
    print("queue", q["name"], q["durable"], q["auto_delete"], json.dumps(q["arguments"], sort_keys=True))
for b in d["bindings"]:
    print("binding", b["source"], b["destination"], b["destination_type"], repr(b["routing_key"]), json.dumps(b["arguments"], sort_keys=True))
' | sort
}
snapshot() { mgmt GET "/api/definitions/$v" | normalize; }

note "without the shop exchange, declare fails and says what to do"
try oq topology declare
[ "$rc" -ne 0 ] || fail "declare succeeded without the shop exchange"
expect_contains 'the shop exchange "shop.events" does not exist' "$out" "missing shop exchange"
expect_contains "--create-shop-exchange" "$out" "missing shop exchange"

note "declare, then declare again: nothing changes"
oq topology declare --create-shop-exchange >"$WORK/declare1"
expect_contains "declared on vhost $VHOST: 3 exchanges, 13 queues, 14 bindings" "$(cat "$WORK/declare1")" "declare output"
snapshot >"$WORK/snap1"
oq topology declare >"$WORK/declare2" # the shop exchange now exists: passive check passes
snapshot >"$WORK/snap2"
diff -u "$WORK/snap1" "$WORK/snap2" || fail "a second declare changed the broker"

note "quorum queues carry an explicit x-delivery-limit and at-least-once dead-lettering"
args=$(mgmt GET "/api/queues/$v/orderq.order.processing" | json 'json.dumps(d["arguments"], sort_keys=True)')
expect_contains '"x-delivery-limit": 20' "$args" "work queue arguments"
expect_contains '"x-dead-letter-strategy": "at-least-once"' "$args" "work queue arguments"
expect_contains '"x-queue-type": "quorum"' "$args" "work queue arguments"
ttl=$(mgmt GET "/api/queues/$v/orderq.delay.30s" | json 'd["arguments"]["x-message-ttl"]')
expect_eq 30000 "$ttl" "delay tier 30s TTL"

note "deploy/rabbitmq/definitions.json describes the same topology"
normalize <"$top/deploy/rabbitmq/definitions.json" >"$WORK/file"
diff -u "$WORK/file" "$WORK/snap1" || fail "definitions.json (-) differs from what declare creates (+)"
oq topology definitions --vhost / | "$PY" -c 'import json,sys; a=json.load(sys.stdin); b=json.load(open(sys.argv[1])); sys.exit(a != b)' \
    "$top/deploy/rabbitmq/definitions.json" || fail "definitions.json is stale: regenerate it with orderq topology definitions --vhost /"

note "verify: everything matches"
out=$(oq topology verify)
expect_contains "matches the configuration" "$out" "verify on a fresh declare"

note "verify names a queue declared with other arguments, with both argument sets"
mgmt DELETE "/api/queues/$v/orderq.invoice.updated" >/dev/null
mgmt PUT "/api/queues/$v/orderq.invoice.updated" '{"durable":true,"arguments":{"x-queue-type":"classic","x-max-length":10}}' >/dev/null
try oq topology verify
expect_eq 1 "$rc" "verify exit code with a difference"
expect_contains "queue orderq.invoice.updated: other arguments" "$out" "verify report"
expect_contains 'expected: {"x-queue-type":"quorum","x-delivery-limit":20' "$out" "verify report"
expect_contains 'actual:   {"x-max-length":10,"x-queue-type":"classic"}' "$out" "verify report"
expect_contains "queue orderq.invoice.updated: no delivery limit" "$out" "verify names the missing safety net"
expect_contains "binding shop.events -> orderq.invoice.updated" "$out" "the deleted queue's binding is missing"
json_out=$(oq topology verify --json || true)
expect_eq "queue other arguments" "$(head -1 <<<"$json_out" | json 'd["kind"] + " " + d["problem"]')" "verify --json"

note "declare does not die on the mismatch: it reports it and declares the rest"
mgmt DELETE "/api/queues/$v/orderq.dead" >/dev/null
try oq topology declare
[ "$rc" -ne 0 ] || fail "declare over a mismatched queue reported success"
expect_contains 'queue "orderq.invoice.updated" exists with other arguments' "$out" "declare error"
expect_contains "inequivalent arg" "$out" "declare error quotes the broker"
mgmt GET "/api/queues/$v/orderq.dead" >/dev/null || fail "declare stopped at the mismatch instead of declaring orderq.dead"

note "verify without the management API is a clear error"
try env ORDERQ_AMQP_MGMT_URL=http://127.0.0.1:1/ "$ORDERQ_BIN" topology verify
expect_eq 69 "$rc" "verify exit code without the management API"
expect_contains "management API" "$out" "verify error"
