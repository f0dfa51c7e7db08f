#!/usr/bin/env bash
# queue_deleted.sh - a work queue deleted under a running consumer (the
# broker cancels its consumer) is declared again as the topology says and
# consumed again, with backoff, while the other queues go on; the same after
# an operator's `orderq topology declare`; a queue missing when the
# consumer starts (and no right to declare it) is consumed once it is
# there, the others meanwhile; nothing is lost or doubled.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
v=$(urlenc "$VHOST")
ledger() { sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = '$1'"; }
ledger_is() { [ "$(ledger "$1")" -ge "$2" ]; }
consumed() { [ "$(consumers_on "$1")" = 1 ]; }
probe() { # a probe event that succeeds: is the other queue still consumed?
    printf '{"event_code":"probe","event_identifier":"probe-%s","event_data":{}}\n' "$1" | oq publish - >/dev/null
}

start_consumer one
wait_for 20 consumed orderq.order.processing || fail "not consuming: $(tail -3 "$WORK/one.log")"
gen_events 10 --start 9500000000 >"$WORK/a.jsonl"
oq publish "$WORK/a.jsonl" >/dev/null
wait_for 30 ledger_is coupon_rules 10 || fail "first orders not committed"

note "the work queue deleted: orderq declares it again and consumes it"
mgmt DELETE "/api/queues/$v/orderq.order.processing" >/dev/null
probe 1
wait_for 20 ledger_is probe 1 || fail "the probe queue stopped being consumed: $(tail -3 "$WORK/one.log")"
wait_for 30 consumed orderq.order.processing || fail "orderq.order.processing never consumed again: $(tail -5 "$WORK/one.log")"
gen_events 10 --start 9500000100 >"$WORK/b.jsonl"
oq publish "$WORK/b.jsonl" >/dev/null
wait_for 30 ledger_is coupon_rules 20 || fail "orders after the deletion never committed: $(tail -5 "$WORK/one.log")"
grep -q 'the broker cancelled the consumer of orderq.order.processing' "$WORK/one.log" || fail "the cancel was not logged"
grep -q 'consuming orderq.order.processing again' "$WORK/one.log" || fail "the new subscription was not logged"

note "deleted again, the operator declares it: the same"
mgmt DELETE "/api/queues/$v/orderq.order.processing" >/dev/null
oq topology declare >/dev/null
gen_events 10 --start 9500000200 >"$WORK/c.jsonl"
oq publish "$WORK/c.jsonl" >/dev/null
wait_for 60 ledger_is coupon_rules 30 || fail "orders after the second deletion never committed: $(tail -5 "$WORK/one.log")"
probe 2
wait_for 20 ledger_is probe 2 || fail "the probe queue stopped being consumed"

kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"

note "a queue missing at start, and no right to declare it: the others are consumed meanwhile"
mgmt DELETE "/api/queues/$v/orderq.order.processing" >/dev/null
amqp_permissions "$AMQP_USER" "^(?!orderq\.order\.processing$)${OQ_AMQP_ORDERQ_CONFIGURE#^}" \
    "$OQ_AMQP_ORDERQ_WRITE" "$OQ_AMQP_ORDERQ_READ"
start_consumer two
probe 3
wait_for 20 ledger_is probe 3 || fail "the probe queue was not consumed while another was missing: $(tail -5 "$WORK/two.log")"
grep -q 'queue orderq.order.processing does not exist' "$WORK/two.log" || fail "the missing queue was not logged: $(tail -5 "$WORK/two.log")"
amqp_permissions "$AMQP_USER" "$OQ_AMQP_ORDERQ_CONFIGURE" "$OQ_AMQP_ORDERQ_WRITE" "$OQ_AMQP_ORDERQ_READ"
oq topology declare >/dev/null
gen_events 10 --start 9500000300 >"$WORK/d.jsonl"
oq publish "$WORK/d.jsonl" >/dev/null
wait_for 90 ledger_is coupon_rules 40 || fail "the queue declared later was never consumed: $(tail -5 "$WORK/two.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_eq 40 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
expect_queue_empty
