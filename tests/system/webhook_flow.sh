#!/usr/bin/env bash
# webhook_flow.sh - the webhook handler in `orderq consume`: an event code
# from webhooks_file is bound to <prefix>.webhook; an endpoint answering 503,
# 503 with Retry-After, then 200 gets three calls with one Idempotency-Key
# and one accepted (Retry-After: 3 moved the second retry from the 2 s to
# the 5 s tier); the same event again is a duplicate (no call); a 422 is
# dead-lettered, its endpoint named by event code and scheme://host:port
# only (a token in the path is in no reason, result or log line); that
# endpoint keeps the old "sha256-body" signature, warned about at start
source "$(dirname "$0")/lib.sh"
cat >"$WORK/script.json" <<'JSON'
{
  "POST /hooks/orders": [{"status": 503}, {"status": 503, "headers": {"Retry-After": "3"}}, {"status": 200}],
  "POST /hooks/rejects/pSvXqLmNbTrWkZyHdFgJ": [{"status": 422}]
}
JSON
start_http_fixture
export ORDERQ_TEST_HOOK_SECRET=whsec-42
cat >"$WORK/webhooks.json" <<JSON
[{"event_code": "order.shipped", "url": "$base/hooks/orders", "timeout_ms": 2000, "secret_env": "ORDERQ_TEST_HOOK_SECRET"},
 {"event_code": "order.refunded", "url": "$base/hooks/rejects/pSvXqLmNbTrWkZyHdFgJ", "secret_env": "ORDERQ_TEST_HOOK_SECRET", "signature": "sha256-body"}]
JSON
export ORDERQ_WEBHOOKS_FILE="$WORK/webhooks.json"
# A second failure would come back after 2 s; Retry-After: 3 must move it
# to the 5 s tier.
export ORDERQ_RETRY_TIERS=1s,2s,5s
setup_consumer_test
bindings=$(mgmt GET "/api/queues/$(urlenc "$VHOST")/orderq.webhook/bindings" | json '" ".join(sorted(b["routing_key"] for b in d if b["source"]))')
expect_eq "order.refunded order.shipped" "$bindings" "orderq.webhook's bindings"

note "a webhook timeout not shorter than the lease is refused at start"
try env ORDERQ_EFFECT_LEASE_MS=1500ms ORDERQ_SMTP_TIMEOUT_MS=1s "$ORDERQ_BIN" consume
expect_eq 78 "$rc" "exit code"
expect_contains "webhook 1 (order.shipped): timeout_ms 2000 is not shorter than effect_lease_ms 1500" "$out" "message"

CONSUME_QUEUES=orderq.webhook start_consumer hooks
event() { printf '{"event_code": "%s", "event_identifier": "%s", "event_data": {"order_id": "9200000217", "carrier": "DHL"}}\n' "$1" "$2"; }

note "503, 503 with Retry-After: 3, then 200: one accepted call, one key"
event order.shipped ship-9200000217 | oq publish - >/dev/null || fail "publish"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT state FROM event_ledger WHERE handler = 'webhook'\")\" = sent ]" \
    || fail "not sent: $(sql "$DB" -e 'SELECT * FROM event_ledger'); $(tail -3 "$WORK/hooks.log")"
"$PY" - "$WORK/requests.log" <<'PY' || fail "the calls as the receiver saw them: $(cat "$WORK/requests.log")"
import hashlib, hmac, json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
assert len(reqs) == 3, len(reqs)
keys = {r["headers"]["Idempotency-Key"] for r in reqs}
assert keys == {"ship-9200000217"}, keys
for r in reqs:
    assert r["headers"]["X-Orderq-Event"] == "order.shipped", r["headers"]
    # the receiver's check (docs/webhooks.md): the time is signed with the body
    ts = r["headers"]["X-Orderq-Timestamp"]
    assert abs(int(ts) - r["at"]) <= 5, (ts, r["at"])
    sig = hmac.new(b"whsec-42", (ts + "." + r["body"]).encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(r["headers"]["X-Orderq-Signature"], "v1=" + sig), r["headers"]
    body = json.loads(r["body"])
    assert body["event_identifier"] == "ship-9200000217" and body["event_data"]["carrier"] == "DHL", body
gap = reqs[2]["at"] - reqs[1]["at"]
assert reqs[1]["at"] - reqs[0]["at"] < 3, "the first retry should follow the 1 s tier"
assert gap >= 4.5, f"the retry after Retry-After: 3 came {gap:.1f} s later, not after the 5 s tier"
PY
expect_eq 3 "$(grep -c 'orders' "$WORK/requests.log")" "calls"

note "the same event again: a duplicate, no call"
event order.shipped ship-9200000217 | oq publish - >/dev/null || fail "publish again"
wait_for 10 ready_is orderq.webhook 0 || fail "not consumed"
sleep 1
expect_eq 3 "$(wc -l <"$WORK/requests.log")" "calls after the duplicate"

note "422: permanent, dead-lettered with the status"
event order.refunded refund-1 | oq publish - >/dev/null || fail "publish the refund"
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT error_class FROM dead_letter WHERE event_identifier = 'refund-1'\")\" = permanent ]" \
    || fail "no dead letter: $(sql "$DB" -e 'SELECT error_class, error FROM dead_letter')"
expect_contains "webhook for order.refunded, $base/...: HTTP 422" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'refund-1'")" "the reason"
expect_eq "" "$(sql "$DB" -e "SELECT state FROM event_ledger WHERE effect_key = 'refund-1'")" "no claim left for a failed call"
"$PY" - "$WORK/requests.log" <<'PY' || fail "the refund call as the receiver saw it: $(grep rejects "$WORK/requests.log")"
import hashlib, hmac, json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if "/hooks/rejects/" in l][-1]
mac = hmac.new(b"whsec-42", r["body"].encode(), hashlib.sha256).hexdigest()
assert hmac.compare_digest(r["headers"]["X-Orderq-Signature"], "sha256=" + mac), r["headers"]
assert "X-Orderq-Timestamp" not in r["headers"], r["headers"]
PY
expect_contains 'webhook 2 (order.refunded, '"$base"'/...) is signed \"sha256-body\", over the body only' "$(cat "$WORK/hooks.log")" "the warning at start"
expect_eq "webhook for order.shipped, $base/...: HTTP 200" "$(sql "$DB" -e "SELECT result FROM event_ledger WHERE effect_key = 'ship-9200000217'")" "the ledger's result"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
# a letters-only path token: the old redactor's heuristics let it through
leaks=$({ sql "$DB" -e "SELECT error FROM dead_letter; SELECT result FROM event_ledger"; cat "$WORK/hooks.log"; } | grep -c pSvXqLmN || true)
expect_eq 0 "$leaks" "lines showing the path token"
