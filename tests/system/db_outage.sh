#!/usr/bin/env bash
# db_outage.sh - a consumer whose MySQL connections die while it is idle
# recovers by itself: after 7 quiet seconds (the coupon rules cache has gone
# stale, so the first call on each connection is the rules refresh) every
# connection orderq holds is KILLed; the next orders and their coupon mails
# still commit, each once, and nothing is dead-lettered. Then the same with
# connections killed in the middle of a run of 2,000 orders.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
need_maildev
export ORDERQ_SMTP_URL=smtp://127.0.0.1:1025 ORDERQ_SMTP_TLS=off
CONSUME_QUEUES="orderq.order.processing orderq.coupon.email"

# The test's own orders, mailed to an address space no other test uses.
events() { gen_events "$1" --start "$2" | sed "s/@example\.com/@db-outage-$$.example/g"; }
count() { sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE $1"; }
orders_done() { [ "$(count "handler = 'coupon_rules'")" -ge "$1" ]; }
mails_sent() { [ "$(count "handler = 'coupon_mail' AND state = 'sent'")" -ge "$1" ]; }
kill_orderq_connections() {
    local ids id
    ids=$(sql -e "SELECT id FROM information_schema.processlist WHERE db = '$DB' AND id <> CONNECTION_ID()")
    for id in $ids; do sql -e "KILL $id" 2>/dev/null || true; done
    echo "$ids" | grep -c . || true
}

addr="127.0.0.1:$(free_port)"
start_consumer idle --db-workers 2 --effect-workers 2 --http-addr "$addr"
events 20 9300000000 >"$WORK/a.jsonl"
oq publish "$WORK/a.jsonl" >/dev/null
wait_for 30 orders_done 20 || fail "first orders not committed: $(tail -3 "$WORK/idle.log")"
wait_for 30 mails_sent 20 || fail "first mails not sent: $(tail -3 "$WORK/idle.log")"

note "7 s idle, then every orderq connection KILLed"
sleep 7
killed=$(kill_orderq_connections)
[ "$killed" -ge 2 ] || fail "expected orderq's idle connections to kill, found $killed"
events 20 9300000100 >"$WORK/b.jsonl"
oq publish "$WORK/b.jsonl" >/dev/null
wait_for 30 orders_done 40 || fail "orders after the KILL never committed ($(count "handler = 'coupon_rules'") of 40): $(tail -5 "$WORK/idle.log")"
wait_for 30 mails_sent 40 || fail "mails after the KILL never sent ($(count "handler = 'coupon_mail' AND state = 'sent'") of 40): $(tail -5 "$WORK/idle.log")"
reconnects=$(metric_sum "$addr" orderq_reconnects_total peer=database)
[ "$reconnects" -ge 2 ] || fail "orderq_reconnects_total{peer=database} is $reconnects; expected at least 2 (a database worker and an effect worker)"

note "connections KILLed three times while 2,000 orders flow"
events 2000 9300001000 >"$WORK/c.jsonl"
oq publish "$WORK/c.jsonl" >/dev/null
for _ in 1 2 3; do
    sleep 1
    kill_orderq_connections >/dev/null
done
wait_for 120 orders_done 2040 || fail "only $(count "handler = 'coupon_rules'") of 2040 orders committed: $(tail -5 "$WORK/idle.log")"
wait_for 120 mails_sent 2040 || fail "only $(count "handler = 'coupon_mail' AND state = 'sent'") of 2040 mails sent: $(tail -5 "$WORK/idle.log")"

kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_eq 2040 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons"
expect_eq 2040 "$(sql "$DB" -e 'SELECT COUNT(DISTINCT order_id) FROM coupon')" "orders with a coupon"
expect_eq 2040 "$(count "handler = 'coupon_mail'")" "coupon mail rows"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
expect_eq 0 "$(queue_ready orderq.dead)" "dead letters waiting"
expect_queue_empty
expect_eq 0 "$(queue_ready orderq.coupon.email)" "coupon mails left"
grep -q 'waits for MySQL\|MySQL is back' "$WORK/idle.log" || fail "the lost connections were not logged"
