#!/usr/bin/env bash
# webhook.sh - `orderq webhook test`: an event POSTed to its endpoints with
# Idempotency-Key, X-Orderq-Event and an HMAC signature over
# X-Orderq-Timestamp and the body that the receiver can check; 503 twice then 200 carries the same key each time; Retry-After read;
# 4xx permanent; a bad webhooks file named; an endpoint kept on the old
# "sha256-body" signature for a receiver not yet updated gets exactly the old
# header (sha256=<HMAC of the body>, no timestamp).
source "$(dirname "$0")/lib.sh"

cat >"$WORK/script.json" <<'JSON'
{
  "POST /hooks/orders": [{"status": 503}, {"status": 503, "headers": {"Retry-After": "7"}}, {"status": 200}],
  "POST /hooks/rejects": [{"status": 422}],
  "POST /hooks/limits": [{"status": 429, "headers": {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"}}],
  "POST /hooks/legacy": [{"status": 200}]
}
JSON
start_http_fixture
export ORDERQ_TEST_HOOK_SECRET=whsec-42
cat >"$WORK/webhooks.json" <<JSON
[{"event_code": "order.shipped", "url": "$base/hooks/orders", "timeout_ms": 2000, "secret_env": "ORDERQ_TEST_HOOK_SECRET"},
 {"event_code": "order.refunded", "url": "$base/hooks/rejects"},
 {"event_code": "order.limited", "url": "$base/hooks/limits"},
 {"event_code": "order.legacy", "url": "$base/hooks/legacy", "secret_env": "ORDERQ_TEST_HOOK_SECRET", "signature": "sha256-body"}]
JSON
export ORDERQ_WEBHOOKS_FILE="$WORK/webhooks.json"

note "503, 503 with Retry-After, then 200: one key, signed each time"
try oq webhook test order.shipped --id ship-77 --json
expect_eq 75 "$rc" "exit code on 503"
expect_eq transient "$(json 'd["outcome"]' <<<"$out")" "outcome on 503"
expect_eq "$base/..." "$(json 'd["url"]' <<<"$out")" "the URL shown: scheme, host and port"
expect_eq "webhook for order.shipped, $base/...: HTTP 503" "$(json 'd["detail"]' <<<"$out")" "the detail"
try oq webhook test order.shipped --id ship-77 --json
expect_eq 7000 "$(json 'd["retry_after_ms"]' <<<"$out")" "Retry-After in seconds"
try oq webhook test order.shipped --id ship-77 --json
expect_eq 0 "$rc" "exit code on 200"
expect_eq "done 200" "$(json 'd["outcome"] + " " + str(d["status"])' <<<"$out")" "outcome on 200"
"$PY" - "$WORK/requests.log" <<'PY' || fail "the requests as the receiver saw them: $(cat "$WORK/requests.log")"
import hashlib, hmac, json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
assert len(reqs) == 3, reqs
for r in reqs:
    h = {k.lower(): v for k, v in r["headers"].items()}
    assert r["method"] == "POST" and r["path"] == "/hooks/orders", r
    assert h["idempotency-key"] == "ship-77", h
    assert h["x-orderq-event"] == "order.shipped", h
    assert h["content-type"] == "application/json", h
    # signed with the time it was sent, so it cannot be replayed later
    ts = h["x-orderq-timestamp"]
    assert abs(int(ts) - r["at"]) <= 5, (ts, r["at"])
    mac = hmac.new(b"whsec-42", (ts + "." + r["body"]).encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(h["x-orderq-signature"], "v1=" + mac), (h["x-orderq-signature"], mac)
    body = json.loads(r["body"])
    assert body["event_code"] == "order.shipped" and body["event_identifier"] == "ship-77", body
PY

note "4xx is permanent; an HTTP-date Retry-After is capped at an hour"
try oq webhook test order.refunded --json
expect_eq 65 "$rc" "exit code on 422"
expect_eq "permanent false" "$(json 'd["outcome"] + " " + str(d["signed"]).lower()' <<<"$out")" "outcome on 422, unsigned"
try oq webhook test order.limited --json
expect_eq "transient 3600000" "$(json 'd["outcome"] + " " + str(d["retry_after_ms"])' <<<"$out")" "429 with a far date"

note "signature sha256-body: the header a receiver not yet updated checks"
try oq webhook test order.legacy --id legacy-1 --json
expect_eq 0 "$rc" "exit code on 200: $out"
"$PY" - "$WORK/requests.log" <<'PY' || fail "the legacy request as the receiver saw it: $(grep legacy "$WORK/requests.log")"
import hashlib, hmac, json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if '"/hooks/legacy"' in l][-1]
h = {k.lower(): v for k, v in r["headers"].items()}
# the check receivers were given before v1 (docs/webhooks.md, "Upgrading from sha256=")
mac = hmac.new(b"whsec-42", r["body"].encode(), hashlib.sha256).hexdigest()
assert hmac.compare_digest(h["x-orderq-signature"], "sha256=" + mac), (h["x-orderq-signature"], mac)
assert "x-orderq-timestamp" not in h, h  # not signed, so not sent
PY

note "a CR or LF in the key is refused, nothing sent"
sent=$(wc -l <"$WORK/requests.log")
try oq webhook test order.shipped --id $'k1\r\nX-Injected: 1' --json
expect_eq 65 "$rc" "exit code for a key with CR LF"
expect_contains "holds a CR or LF" "$out" "reason"
expect_eq "$sent" "$(wc -l <"$WORK/requests.log")" "requests after the refused one"

note "no endpoint, a closed port, a bad file"
try oq webhook test order.unknown
expect_eq 65 "$rc" "exit code for an event code with no webhook"
expect_contains "no webhook in" "$out" "message"
printf '[{"event_code": "order.shipped", "url": "http://127.0.0.1:%s/x"}]' "$(free_port)" >"$WORK/closed.json"
try env ORDERQ_WEBHOOKS_FILE="$WORK/closed.json" "$ORDERQ_BIN" webhook test order.shipped --json
expect_eq transient "$(json 'd["outcome"]' <<<"$out")" "outcome on a closed port"
printf '[{"event_code": "order.shipped", "url": "http://x.example/", "secret": "inline"}]' >"$WORK/bad.json"
try env ORDERQ_WEBHOOKS_FILE="$WORK/bad.json" "$ORDERQ_BIN" webhook test order.shipped
expect_eq 78 "$rc" "exit code for an inline secret"
expect_contains "webhook 1: secret: not here" "$out" "message"
try env ORDERQ_WEBHOOKS_FILE= "$ORDERQ_BIN" webhook test order.shipped
expect_eq 78 "$rc" "exit code without webhooks_file"
