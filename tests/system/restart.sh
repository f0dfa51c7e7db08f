#!/usr/bin/env bash
# restart.sh - RabbitMQ restarted, then MariaDB restarted, while a consumer
# works through 30,000 events: it recovers by itself and every effect
# happens exactly once; a dead letter arriving while MariaDB is down waits
# in orderq.dead and is archived once it is back. Runs alone (RUN_SERIAL):
# it stops shared servers.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
top=$(cd "$(dirname "$0")/../.." && pwd)
# Whatever happens below, leave both servers running for the next test.
CLEANUP+=("bash -c 'source $top/deploy/local/lib.sh; oq_start_mariadb; oq_start_rabbitmq' >/dev/null 2>&1")

start=9600000000
gen_events 30000 --start "$start" >"$WORK/events.jsonl"
oq publish "$WORK/events.jsonl" >/dev/null
ledger_rows() { sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger' 2>/dev/null || echo 0; }
progress_past() { # wait until the ledger has grown by $1 rows
    local floor
    floor=$(ledger_rows)
    wait_for 90 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM event_ledger' 2>/dev/null || echo 0)\" -gt $((floor + $1)) ]"
}

start_consumer steady --batch-size 25 --prefetch 100
progress_past 2000 || fail "no progress: $(tail -3 "$WORK/steady.log")"

note "RabbitMQ restarts at $(ledger_rows) rows"
rabbitmqctl -q stop_app >/dev/null
sleep 2
rabbitmqctl -q start_app >/dev/null
wait_for 60 bash -c "exec 3<>/dev/tcp/127.0.0.1/5672" || fail "RabbitMQ did not come back"
progress_past 2000 || fail "no progress after the RabbitMQ restart: $(tail -5 "$WORK/steady.log")"
grep -q 'reconnecting in' "$WORK/steady.log" || fail "no reconnect logged"

note "MariaDB restarts at $(ledger_rows) rows"
mariadb-admin --socket="$SOCK" shutdown
mgmt POST "/api/exchanges/$(urlenc "$VHOST")/orderq.dead/publish" \
    '{"properties":{"delivery_mode":2,"message_id":"while-down","headers":{"x-orderq-error-class":"permanent","x-orderq-last-error":"parked while MySQL was down"}},"routing_key":"","payload":"{}","payload_encoding":"string"}' \
    | grep -q '"routed":true' || fail "dead letter not routed"
sleep 3
wait_for 20 ready_is orderq.dead 1 || fail "the dead letter is not waiting in orderq.dead: $(queue_ready orderq.dead)"
bash -c "source '$top/deploy/local/lib.sh'; oq_start_mariadb" >/dev/null
progress_past 2000 || fail "no progress after the MariaDB restart: $(tail -5 "$WORK/steady.log")"
grep -q 'MySQL is back' "$WORK/steady.log" || fail "no MySQL reconnect logged"
# Published by guest, not by orderq: archived with its headers as they
# came (x-orderq-* are believed only from orderq's own user, see
# forged_headers.sh), so the header is what shows it arrived.
while_down_archived() {
    [ "$(sql "$DB" -e "SELECT JSON_VALUE(headers, '$.\"x-orderq-last-error\"') FROM dead_letter WHERE event_identifier = 'while-down'")" = 'parked while MySQL was down' ]
}
wait_for 60 while_down_archived \
    || fail "the dead letter was not archived after MariaDB came back: $(grep -i 'dead letter' "$WORK/steady.log" | tail -3)"
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead: $(queue_ready orderq.dead)"

note "draining"
wait_ledger 30000 180 || fail "only $(ledger_rows) of 30000 processed"
wait_drained
expect_exactly_once 30000 "$start"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_queue_empty
