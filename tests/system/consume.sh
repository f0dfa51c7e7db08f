#!/usr/bin/env bash
# consume.sh - consume connects to the queues it has handlers for, reports
# ready, parks bad input as a dead letter with a reason, survives a dropped
# connection, and stops cleanly on SIGTERM
source "$(dirname "$0")/lib.sh"
need_mysql
need_rabbitmq
oq migrate >/dev/null 2>&1
v=$(urlenc "$VHOST")
port=$(free_port)
export ORDERQ_HTTP_ADDR="127.0.0.1:$port"
oq topology declare --create-shop-exchange >/dev/null

all_consuming() { [ "$(consumers_on orderq.order.processing)" = 1 ]; }
ready() { curl -sf "http://$ORDERQ_HTTP_ADDR/readyz"; }

note "start: a consumer on the queue with a handler, /readyz turns 200"
# heartbeats every second: a broker thread that waited on MySQL would be
# cut off within seconds (see "MySQL blocks" below)
"$ORDERQ_BIN" consume --instance-id "test-$$" --heartbeat-s 1 2>"$WORK/log" &
pid=$!
CLEANUP+=("kill -9 $pid")
wait_for 20 ready || fail "never ready: $(cat "$WORK/log")"
wait_for 30 all_consuming || fail "not consuming orderq.order.processing: $(tail -3 "$WORK/log")"
# grep reads the whole page: grep -q would exit at the match, and curl,
# still writing the rest, fail with EPIPE (and pipefail fail the check)
curl -sf "http://$ORDERQ_HTTP_ADDR/metrics" | grep -c '^orderq_consumers 5$' >/dev/null || fail "metrics do not show 5 consumers (order.processing, coupon.email, invoice.created, invoice.updated, probe)"
curl -sf "http://$ORDERQ_HTTP_ADDR/healthz" >/dev/null || fail "healthz"
"$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(c["vhost"]==sys.argv[1] and c["client_properties"].get("connection_name","").startswith("orderq consume test-") for c in d) else 1)' "$VHOST" < <(mgmt GET /api/connections) \
    || fail "the connection is not named after the instance"
head -1 "$WORK/log" | json 'd["level"] and d["msg"] and d["ts"]' >/dev/null || fail "logs are not JSON lines: $(head -1 "$WORK/log")"

note "bad input is never dropped: it is parked with a reason, archived in dead_letter, then acked"
mgmt POST "/api/exchanges/$v/shop.events/publish" \
    '{"properties":{"delivery_mode":2,"message_id":"9200000217_processing"},"routing_key":"order.processing","payload":"{\"event_code\":\"order.processing\"}","payload_encoding":"string"}' \
    | grep -q '"routed":true' || fail "test message not routed"
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 1 ]" \
    || fail "no dead letter: $(tail -3 "$WORK/log")"
row=$(sql -r "$DB" -e "SELECT JSON_OBJECT('class', error_class, 'error', error, 'queue', queue, 'exchange', exchange_name, 'key', routing_key, 'id', event_identifier, 'body', CAST(body AS CHAR), 'headers', headers) FROM dead_letter")
"$PY" -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["class"] == "bad_input" and r["error"] == "event_data is missing", r
assert r["queue"] == "orderq.order.processing" and r["exchange"] == "shop.events" and r["key"] == "order.processing", r
assert r["id"] == "9200000217_processing", r
assert r["body"] == "{\"event_code\":\"order.processing\"}", r["body"]  # byte for byte
h = r["headers"]
assert h["x-orderq-error-class"] == "bad_input" and h["x-orderq-attempt"] == 1, h
' "$row" || fail "dead letter: $row"
grep -q '"dead-lettered after attempt 1 (bad_input): event_data is missing"' "$WORK/log" || fail "dead letter not logged"
wait_for 10 ready_is orderq.dead 0 || fail "the archived letter is still in orderq.dead"

note "the broker drops the connection: orderq reconnects and consumes again"
name=$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print([c["name"] for c in d if c["vhost"]==sys.argv[1] and c["client_properties"].get("connection_name","").startswith("orderq consume")][0])' "$VHOST" < <(mgmt GET /api/connections))
mgmt DELETE "/api/connections/$(urlenc "$name")" >/dev/null
wait_for 15 grep -q 'reconnecting in' "$WORK/log" || fail "no reconnect logged: $(tail -3 "$WORK/log")"
connects() { curl -sf "http://$ORDERQ_HTTP_ADDR/metrics" | awk '$1 == "orderq_broker_connects_total" { print $2 }'; }
wait_for 30 bash -c "[ \"\$(curl -sf http://$ORDERQ_HTTP_ADDR/metrics | awk '\$1 == \"orderq_broker_connects_total\" { print \$2 }')\" = 2 ]" \
    || fail "did not reconnect: connects_total $(connects): $(tail -5 "$WORK/log")"
wait_for 10 ready || fail "not ready after reconnect"
expect_eq 1 "$(metric_sum "$ORDERQ_HTTP_ADDR" orderq_reconnects_total peer=broker)" "orderq_reconnects_total{peer=broker}"
expect_eq 0 "$(metric_sum "$ORDERQ_HTTP_ADDR" orderq_reconnects_total peer=database)" "orderq_reconnects_total{peer=database}"
wait_for 30 all_consuming || fail "not consuming after reconnect"

note "MySQL blocks for 8 s: heartbeats keep flowing, the connection stays, the batch waits"
load_test_rule
gen_events 200 --start 9300000000 >"$WORK/slow.jsonl"
lock_ledger 8 "$WORK/locked_count"
oq publish "$WORK/slow.jsonl" >/dev/null
wait "$lock_pid" # > 2 heartbeat intervals with the ledger locked
expect_eq 0 "$(tail -1 "$WORK/locked_count")" "nothing committed while the ledger is locked"
wait_ledger 200 30 || fail "the batch did not go through after the lock"
expect_eq 2 "$(connects)" "broker connects (1 + the reconnect above): none lost to missed heartbeats"

note "SIGTERM: exits 0 promptly"
kill -TERM "$pid"
start=$SECONDS
rc=0
wait "$pid" || rc=$?
expect_eq 0 "$rc" "exit code after SIGTERM"
[ $((SECONDS - start)) -le 5 ] || fail "took $((SECONDS - start)) s to stop"
grep -q '"stopped by signal 15"' "$WORK/log" || fail "no stop logged"

note "a deleted work queue is declared again when consume connects"
mgmt DELETE "/api/queues/$v/orderq.order.processing" >/dev/null
"$ORDERQ_BIN" consume 2>"$WORK/log2" &
pid2=$!
CLEANUP+=("kill -9 $pid2")
wait_for 20 all_consuming || fail "the queue was not redeclared and consumed: $(cat "$WORK/log2")"
args=$(mgmt GET "/api/queues/$v/orderq.order.processing" | json 'json.dumps(d["arguments"], sort_keys=True)')
expect_contains '"x-delivery-limit": 20' "$args" "redeclared with the configured arguments"

note "without the configure permission it consumes what exists, and says why it could not declare"
kill -INT "$pid2"
wait "$pid2" || fail "SIGINT exit code"
amqp_permissions "$AMQP_USER" '^$' "$OQ_AMQP_ORDERQ_WRITE" "$OQ_AMQP_ORDERQ_READ"
"$ORDERQ_BIN" consume 2>"$WORK/log3" &
pid3=$!
CLEANUP+=("kill -9 $pid3")
wait_for 20 grep -q '"connected; consuming 5 queues' "$WORK/log3" || fail "did not consume: $(cat "$WORK/log3")"
grep -q 'redeclaring the topology: .*ACCESS_REFUSED' "$WORK/log3" || fail "no warning about the refused declare: $(cat "$WORK/log3")"
kill -TERM "$pid3"
wait "$pid3" || fail "SIGTERM exit code"

note "a database behind this orderq's migrations: consume refuses to start (as a user with row rights only)"
sql -e "CREATE DATABASE \`${DB}_empty\`; GRANT $OQ_MYSQL_CONSUMER_GRANTS ON \`${DB}_empty\`.* TO '$MYSQL_USER'@'localhost'"
CLEANUP+=("sql -e 'DROP DATABASE IF EXISTS \`${DB}_empty\`'")
try timeout 30 env ORDERQ_MYSQL_URL="mysql://$MYSQL_USER:$TEST_PASSWORD@localhost/${DB}_empty?socket=$SOCK" "$ORDERQ_BIN" consume
expect_eq 69 "$rc" "exit code with pending migrations"
expect_contains "run \`orderq migrate\`" "$out" "hint"
