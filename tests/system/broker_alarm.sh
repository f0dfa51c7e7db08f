#!/usr/bin/env bash
# broker_alarm.sh - a RabbitMQ memory alarm while a consumer works through
# 2,000 orders and 100 events of 20 kB that must be retried: RabbitMQ blocks every
# connection that publishes, so the retries wait on orderq's parking
# connection while the orders are committed and acked on the consuming one
# (prefetch 200: without acks the consumer would get no further than 200);
# once the alarm clears the retries go out and succeed, each effect once.
# Runs alone (RUN_SERIAL): the alarm is node-wide.
source "$(dirname "$0")/lib.sh"
export ORDERQ_RETRY_TIERS=1s,2s,3s ORDERQ_MAX_ATTEMPTS=4
setup_consumer_test
CLEANUP+=("rabbitmqctl -q set_vm_memory_high_watermark 0.4")
alarm() { mgmt GET /api/nodes | json 'any(n.get("mem_alarm") for n in d)'; }
alarm_is() { [ "$(alarm)" = "$1" ]; }
count() { sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = '$1'"; }
count_is() { [ "$(count "$1")" -ge "$2" ]; }

# 100 retries of 20 kB each: 2 MB of copies the broker may stop reading,
# which the parker must never write all at once (park.c, PARK_MAX_BYTES).
pad=$(head -c 20000 /dev/zero | tr '\0' x)
for i in $(seq 1 100); do
    printf '{"event_code":"probe","event_identifier":"alarm-%s","event_data":{"fail":"transient","fail_attempts":1,"pad":"%s"}}\n' "$i" "$pad"
done | oq publish - >/dev/null
gen_events 2000 --start 9600000000 >"$WORK/orders.jsonl"
oq publish "$WORK/orders.jsonl" >/dev/null

note "memory alarm on, then the consumer starts"
rabbitmqctl -q set_vm_memory_high_watermark absolute 1
wait_for 30 alarm_is True || fail "no memory alarm"
start_consumer alarmed --prefetch 200 --batch-size 50
wait_for 90 count_is coupon_rules 2000 ||
    fail "only $(count coupon_rules) of 2000 orders committed during the alarm: $(tail -5 "$WORK/alarmed.log")"
expect_eq 0 "$(count probe)" "probes done during the alarm (their retries must wait)"
alarm_is True || fail "the alarm cleared by itself"
grep -q 'blocked publishing' "$WORK/alarmed.log" || fail "the block was not logged"

note "alarm off: the retries go out and succeed"
rabbitmqctl -q set_vm_memory_high_watermark 0.4
wait_for 30 alarm_is False || fail "the alarm did not clear"
wait_for 60 count_is probe 100 || fail "only $(count probe) of 100 retried probes done: $(tail -5 "$WORK/alarmed.log")"
wait_drained
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_eq 100 "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = 'probe' AND attempts = 2")" "probes done on attempt 2"
sql "$DB" -e "DELETE FROM event_ledger WHERE handler = 'probe'"
expect_exactly_once 2000 9600000000
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
for q in orderq.order.processing orderq.probe orderq.delay.1s orderq.dead; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
