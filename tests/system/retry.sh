#!/usr/bin/env bash
# retry.sh - a transient failure comes back through the delay tiers, later
# each time, and takes effect once; a permanent one and spent retries land
# in the dead_letter table with their reasons; nothing is left anywhere
source "$(dirname "$0")/lib.sh"
export ORDERQ_RETRY_TIERS=1s,2s,3s ORDERQ_MAX_ATTEMPTS=4
setup_consumer_test
start_consumer retry

probe() { # probe ID FAIL [FAIL_ATTEMPTS]
    printf '{"event_code":"probe","event_identifier":"%s","event_data":{"fail":"%s"%s,"error":"SMTP 421 try later"}}\n' \
        "$1" "$2" "${3:+,\"fail_attempts\":$3}"
}
{ probe flaky transient 2; probe broken permanent; probe hopeless transient; } | oq publish - >/dev/null
ledger() { sql "$DB" -e "SELECT $2 FROM event_ledger WHERE handler = 'probe' AND effect_key = '$1'"; }
dead() { sql "$DB" -e "SELECT $2 FROM dead_letter WHERE event_identifier = '$1'"; }

note "failing twice, then succeeding: one effect on attempt 3, after the 1s and 2s tiers"
wait_for 30 bash -c "[ -n \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT 1 FROM event_ledger WHERE effect_key = 'flaky'\")\" ]" \
    || fail "flaky never succeeded: $(tail -5 "$WORK/retry.log")"
expect_eq 3 "$(ledger flaky attempts)" "the ledger's attempts"
expect_eq "probe ok on attempt 3" "$(ledger flaky result)" "the ledger's result"
expect_eq "" "$(dead flaky id)" "flaky's dead letters"
# The delays: from each failure's log line to the next attempt.
"$PY" - "$WORK/retry.log" "$(ledger flaky 'UNIX_TIMESTAMP(executed_at)')" <<'PY' || fail "delays do not follow the tiers"
import json, sys, datetime
fails = []
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("event_identifier") == "flaky" and "failed" in d["msg"]:
        t = datetime.datetime.strptime(d["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
        fails.append((t.timestamp(), d["msg"]))
assert len(fails) == 2, fails
assert "attempt 1 of 4 failed (transient), retrying in 1s" in fails[0][1], fails
assert "attempt 2 of 4 failed (transient), retrying in 2s" in fails[1][1], fails
second = fails[1][0] - fails[0][0]
third = float(sys.argv[2]) - fails[1][0]
print(f"observed delays: {second:.2f}s (tier 1s), {third:.2f}s (tier 2s)")
assert 0.95 <= second < 4, second
assert 1.95 <= third < 5, third
PY

note "a permanent failure: straight to dead_letter, no retry"
wait_for 20 bash -c "[ -n \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT 1 FROM dead_letter WHERE event_identifier = 'broken'\")\" ]" \
    || fail "broken not archived: $(tail -5 "$WORK/retry.log")"
expect_eq "permanent	1	SMTP 421 try later (probe, attempt 1)" "$(dead broken 'error_class, attempts, error')" "broken's dead letter"
expect_eq "" "$(ledger broken attempts)" "broken's effect"
if grep '"broken"' "$WORK/retry.log" | grep -q retrying; then fail "a permanent failure was retried"; fi
expect_eq "orderq.probe	shop.events	probe	probe" "$(dead broken 'queue, exchange_name, routing_key, event_code')" "where broken came from"
body=$(dead broken 'body')
expect_contains '"event_identifier":"broken"' "$body" "the body, byte for byte"

note "spent retries: in dead_letter after 4 attempts with the last error"
wait_for 30 bash -c "[ -n \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT 1 FROM dead_letter WHERE event_identifier = 'hopeless'\")\" ]" \
    || fail "hopeless not archived: $(tail -5 "$WORK/retry.log")"
expect_eq "transient	4	gave up after 4 attempts: SMTP 421 try later (probe, attempt 4)" \
    "$(dead hopeless 'error_class, attempts, error')" "hopeless's dead letter"
expect_eq 1 "$(dead hopeless 'last_failed_at >= first_failed_at + INTERVAL 6 SECOND')" "failures spread over the tiers (1+2+3 s)"
expect_eq "transient: gave up after # attempts: SMTP # try later (probe, attempt #)" "$(dead hopeless fingerprint)" "fingerprint"
dead hopeless headers | json 'd["x-orderq-host"] and d["x-orderq-pid"] and d["x-orderq-version"] and d["x-orderq-attempt"] == 4 and d["x-orderq-original-exchange"] == "shop.events" and "orderq-delay" not in d and "x-death" not in d' \
    | grep -qx True || fail "dead letter headers: $(dead hopeless headers)"
expect_eq "" "$(ledger hopeless attempts)" "hopeless's effect"

note "nothing left in any queue; the consumer still runs"
kill -0 "$consumer_pid" || fail "the consumer died"
for q in orderq.probe orderq.delay.1s orderq.delay.2s orderq.delay.3s orderq.dead; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
expect_eq 2 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
