#!/usr/bin/env bash
# user_id.sh - a shop publishing as its own RabbitMQ user, with its own
# user_id property: RabbitMQ checks user_id against the publishing
# connection's user, so orderq's retries and dead letters must not carry
# it. A bad message becomes a dead letter with its real reason (bad_input)
# and a retried one succeeds, the original user_id kept in
# x-orderq-original-user-id (a replay of its dead letter too), and the
# consumer never loses its connections.
source "$(dirname "$0")/lib.sh"
export ORDERQ_RETRY_TIERS=1s,2s ORDERQ_MAX_ATTEMPTS=3
setup_consumer_test
wide_shop_user

# shop_publish BODY: published the way the shop's own code would, with its
# own user_id.
shop_publish() {
    local key=order.processing
    [[ $1 == *'"probe"'* ]] && key=probe
    expect_eq ok "$(as_shop shop.events "$key" "$1" '{}' "$shop")" "publishing as the shop"
}
port=$(free_port)
start_consumer uid --http-addr "127.0.0.1:$port"
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wait_for 20 curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "never ready: $(tail -3 "$WORK/uid.log")"

note "a bad message and one that fails once, both with the shop's user_id"
shop_publish '{"event_code":"order.processing","event_identifier":"uid-bad"}'
shop_publish '{"event_code":"probe","event_identifier":"uid-retry","event_data":{"fail":"transient","fail_attempts":1}}'
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE CAST(body AS CHAR) LIKE '%uid-bad%'\")\" = 1 ]" \
    || fail "no dead letter for the bad message: $(tail -5 "$WORK/uid.log")"
expect_eq "bad_input	event_data is missing" "$(sql "$DB" -e "SELECT error_class, error FROM dead_letter WHERE CAST(body AS CHAR) LIKE '%uid-bad%'")" "the dead letter's reason"
expect_eq "$shop" "$(sql "$DB" -e "SELECT JSON_VALUE(headers, '$.\"x-orderq-original-user-id\"') FROM dead_letter WHERE CAST(body AS CHAR) LIKE '%uid-bad%'")" "the original user_id, kept"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT attempts FROM event_ledger WHERE effect_key = 'uid-retry'\")\" = 2 ]" \
    || fail "the retried message did not succeed on attempt 2: $(tail -5 "$WORK/uid.log")"
expect_eq 1 "$(metric orderq_broker_connects_total)" "consuming connections made"
expect_eq 1 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
note "the bad message's letter replayed: it fails again, the shop's user_id still kept"
oq dlq replay --id "$(sql "$DB" -e "SELECT id FROM dead_letter WHERE CAST(body AS CHAR) LIKE '%uid-bad%'")" --as tester >/dev/null || fail "replay"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE CAST(body AS CHAR) LIKE '%uid-bad%'\")\" = 2 ]" \
    || fail "the replay was not dead-lettered again: $(tail -5 "$WORK/uid.log")"
expect_eq "bad_input	$shop" "$(sql "$DB" -e "SELECT error_class, JSON_VALUE(headers, '$.\"x-orderq-original-user-id\"') FROM dead_letter WHERE CAST(body AS CHAR) LIKE '%uid-bad%' ORDER BY id DESC LIMIT 1")" "the replay's letter"
grep -q 'closed channel\|closed the connection\|parking connection lost' "$WORK/uid.log" && fail "a connection was lost: $(grep -m1 'closed\|lost' "$WORK/uid.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
for q in orderq.order.processing orderq.probe orderq.delay.1s orderq.dead; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
