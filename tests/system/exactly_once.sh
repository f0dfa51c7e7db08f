#!/usr/bin/env bash
# exactly_once.sh - one effect per event however often it arrives and however
# many consumers compete: 20 copies of one event; 10,000 events with 10 %
# sent twice, to two and then three consumers
source "$(dirname "$0")/lib.sh"
setup_consumer_test
v=$(urlenc "$VHOST")

note "the same event 20 times, each with another message_id: one ledger row, one coupon, one mail event"
body=$(gen_events 1 --start 9100000000)
payload=$("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$body")
for i in $(seq 1 20); do
    mgmt POST "/api/exchanges/$v/shop.events/publish" \
        "{\"properties\":{\"delivery_mode\":2,\"message_id\":\"copy-$i\"},\"routing_key\":\"order.processing\",\"payload\":$payload,\"payload_encoding\":\"string\"}" \
        | grep -q '"routed":true' || fail "copy $i not routed"
done
start_consumer one
wait_ledger 1 20 || fail "the event was never processed: $(cat "$WORK/one.log")"
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL\")\" = 1 ]" \
    || fail "the coupon.email event was not relayed"
expect_exactly_once 1 9100000000
expect_eq "9100000000_processing_1_14" "$(sql "$DB" -e "SELECT event_identifier FROM outbox")" "the seed's identifier for the mail event"
note "orderq ledger shows the one row, and counts it"
out=$(oq ledger show 9100000000_processing --json)
expect_eq "coupon_rules done coupons for rules 14 one" "$(json 'd[0]["handler"] + " " + d[0]["state"] + " " + d[0]["result"] + " " + d[0]["owner"]' <<<"$out")" "ledger show"
expect_eq 1 "$(oq ledger stats --json | json 'sum(r["total"] for r in d)')" "ledger stats"
expect_eq 1 "$(oq ledger show 9100000000_processing --json | json 'd[0]["attempts"]')" "attempts is a number"
try oq ledger show no-such-event
expect_eq 1 "$rc" "ledger show of an unknown event"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_queue_empty
sql "$DB" -e "DELETE FROM event_ledger; DELETE FROM coupon; DELETE FROM outbox"

for consumers in 2 3; do
    note "10,000 events, every 10th sent twice, $consumers consumers at once"
    start=$((9200000000 + consumers * 100000))
    gen_events 10000 --start "$start" --dup-every 10 --seed "$consumers" >"$WORK/events.jsonl"
    expect_eq 11000 "$(wc -l <"$WORK/events.jsonl")" "events generated"
    pids=()
    for c in $(seq 1 "$consumers"); do
        start_consumer "c$consumers-$c" --prefetch 300 --batch-size 100
        pids+=("$consumer_pid")
    done
    oq publish "$WORK/events.jsonl" >/dev/null
    wait_ledger 10000 120 || fail "only $(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger') of 10000 processed"
        wait_drained
    expect_exactly_once 10000 "$start"
    owners=$(sql "$DB" -e 'SELECT COUNT(DISTINCT owner) FROM event_ledger')
    [ "$owners" -ge 2 ] || fail "only $owners consumer(s) did any work"
    for p in "${pids[@]}"; do kill -TERM "$p"; done
    for p in "${pids[@]}"; do wait "$p" || fail "a consumer exited non-zero"; done
    expect_queue_empty
    sql "$DB" -e "DELETE FROM event_ledger; DELETE FROM coupon; DELETE FROM outbox"
done
grep -h '"level":"error"' "$WORK"/*.log && fail "consumers logged errors" || true
