#!/usr/bin/env bash
# consumer_timeout.sh - mail slower than the effect workers can keep up
# with must not outlive RabbitMQ's consumer_timeout: with the broker's
# consumer_timeout at 60 s, an SMTP server that answers each mail after
# 5 s and 4 effect workers, 96 coupon mails take two minutes; orderq takes
# in only as many as it can send within half the timeout, so the channel
# is never closed, each mail goes out once, nothing is dead-lettered.
# Start-up refuses an effect_prefetch that cannot hold. Runs alone
# (RUN_SERIAL): consumer_timeout is node-wide.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
old=$(rabbitmqctl -q eval 'application:get_env(rabbit, consumer_timeout).')
case $old in
"{ok,"*) CLEANUP+=("rabbitmqctl -q eval 'application:set_env(rabbit, consumer_timeout, ${old//[^0-9]/}).'") ;;
*) CLEANUP+=("rabbitmqctl -q eval 'application:unset_env(rabbit, consumer_timeout).'") ;;
esac
rabbitmqctl -q eval 'application:set_env(rabbit, consumer_timeout, 60000).' >/dev/null
start_smtp_fixture slow-5s
export ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" ORDERQ_SMTP_TLS=off ORDERQ_SMTP_TIMEOUT_MS=10s \
    ORDERQ_EFFECT_LEASE_MS=30s ORDERQ_CONSUMER_TIMEOUT_MS=60s ORDERQ_EFFECT_WORKERS=4
CONSUME_QUEUES=orderq.coupon.email

note "an effect_prefetch that cannot be sent within the timeout is refused"
try env ORDERQ_HTTP_ADDR= timeout 20 "$ORDERQ_BIN" consume --queue orderq.coupon.email --effect-prefetch 100
expect_eq 78 "$rc" "exit code of consume with effect_prefetch 100"
expect_contains "effect_prefetch (--effect-prefetch) is 100" "$out" "the refusal"

note "96 coupon mails at 5 s each, 4 workers"
"$PY" - >"$WORK/coupon.jsonl" <<'PY'
import json
for i in range(96):
    print(json.dumps({"event_code": "coupon.email", "event_identifier": f"slow-{i}",
      "event_data": {"order_id": str(9700000000 + i), "coupon_code": f"SLOW-{i:04d}",
        "discount_type": "percent", "discount": "10.00", "currency": "USD",
        "expires_at": "2027-01-31T00:00:00Z", "customer": {"email": f"slow{i}@timeout.example"}}}))
PY
oq publish "$WORK/coupon.jsonl" >/dev/null
start_consumer slow
sent() { sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE state = 'sent'"; }
sent_is() { [ "$(sent)" -ge "$1" ]; }
wait_for 200 sent_is 96 || fail "only $(sent) of 96 mails sent: $(tail -5 "$WORK/slow.log")"
grep -q 'queues that call out take 12 deliveries each' "$WORK/slow.log" || fail "the derived prefetch was not logged: $(grep -m1 'call out' "$WORK/slow.log")"
grep -E 'timed out|closed channel|reconnecting' "$WORK/slow.log" && fail "the channel was closed"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_eq 96 "$(cat "$WORK/smtp-count")" "mails the SMTP server accepted"
expect_eq 96 "$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')" "ledger rows"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
wait_for 10 ready_is orderq.coupon.email 0 || fail "left in orderq.coupon.email: $(queue_ready orderq.coupon.email)"
