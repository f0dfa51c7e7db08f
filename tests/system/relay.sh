#!/usr/bin/env bash
# relay.sh - `orderq relay`: outbox rows published once each with confirms and
# marked, even with two relays at once (SKIP LOCKED); an unroutable row stays;
# a relay killed -9 while it publishes leaves its rows to the next at once, one
# stopped there within connect_timeout_ms + 30 s; a stop whose close goes
# unanswered takes half a second
source "$(dirname "$0")/lib.sh"
setup_declared

note "3000 outbox rows, two relays at once"
"$PY" - >"$WORK/rows.sql" <<'PY'
import json
rows = []
for i in range(3000):
    body = json.dumps({"event_code": "coupon.email", "event_identifier": f"r{i}_processing_1_14", "event_data": {"n": i}})
    rows.append("('coupon.email', 'r%d_processing_1_14', '', 'coupon.email', '%s')" % (i, body.replace("'", "''")))
for k in range(0, len(rows), 500):
    print("INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body) VALUES " + ",".join(rows[k:k + 500]) + ";")
PY
sql "$DB" <"$WORK/rows.sql"
oq relay --once >"$WORK/r1.out" 2>"$WORK/r1.err" &
r1=$!
oq relay --once >"$WORK/r2.out" 2>"$WORK/r2.err" &
r2=$!
wait "$r1" || fail "relay 1: $(cat "$WORK/r1.err")"
wait "$r2" || fail "relay 2: $(cat "$WORK/r2.err")"
total=$(cat "$WORK/r1.out" "$WORK/r2.out" | awk '{ s += $2 } END { print s }')
expect_eq 3000 "$total" "rows published by the two relays together"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')" "rows left unpublished"
wait_for 20 ready_is orderq.coupon.email 3000 \
    || fail "orderq.coupon.email holds $(queue_ready orderq.coupon.email), expected 3000: a row was published twice or lost"
msg=$(mgmt POST "/api/queues/$(urlenc "$VHOST")/orderq.coupon.email/get" '{"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}')
"$PY" -c '
import json, sys
p = json.loads(sys.argv[1])[0]["properties"]
assert p["message_id"].endswith("_processing_1_14") and p["type"] == "coupon.email", p
assert p["delivery_mode"] == 2 and "x-orderq-outbox-id" in p["headers"], p
' "$msg" || fail "relayed message properties: $msg"

note "a row no queue takes stays in the outbox"
sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body) VALUES ('x.unbound', 'u1', '', 'x.unbound', '{}')"
oq relay --once >"$WORK/r3.out" 2>"$WORK/r3.err"
expect_eq "published 0 outbox events" "$(cat "$WORK/r3.out")" "relay of an unroutable row"
expect_contains "reached no queue" "$(cat "$WORK/r3.err")" "warning"
expect_eq 1 "$(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')" "unroutable row still pending"
expect_eq "1 no queue is bound for this exchange and routing key 1" \
    "$(sql "$DB" -e "SELECT CONCAT(publish_attempts, ' ', last_error, ' ', next_attempt_at > NOW(6)) FROM outbox WHERE event_identifier = 'u1'")" \
    "the failed row is deferred with its reason"
oq relay --once >"$WORK/r4.out" 2>"$WORK/r4.err"
expect_eq 1 "$(sql "$DB" -e "SELECT publish_attempts FROM outbox WHERE event_identifier = 'u1'")" "not retried before its time"

# relay_frozen NAME PREFIX TIMEOUT: an `orderq relay` (connect_timeout_ms
# TIMEOUT, its pid in $caught) whose broker link freezes before 300 new
# rows named PREFIX<n> come: it reads them, publishes into the silence and
# waits for confirms, holding their locks, for up to TIMEOUT.
relay_frozen() {
    local name=$1 prefix=$2 timeout=$3 port
    "$PY" "$(dirname "$0")/tcp_forward.py" --listen 127.0.0.1:0 --upstream 127.0.0.1:5672 \
        --ready-file "$WORK/$name.addr" 2>"$WORK/$name.proxy.log" &
    local proxy=$!
    CLEANUP+=("kill $proxy")
    wait_for 10 test -s "$WORK/$name.addr" || fail "the proxy did not start: $(cat "$WORK/$name.proxy.log")"
    port=$(free_port)
    ORDERQ_AMQP_URL="amqp://guest:guest@$(cat "$WORK/$name.addr")/$(urlenc "$VHOST")" \
        "$ORDERQ_BIN" relay --http-addr "127.0.0.1:$port" --connect-timeout-ms "$timeout" 2>"$WORK/$name.log" &
    caught=$!
    CLEANUP+=("kill -CONT $caught; kill -9 $caught")
    wait_for 20 curl -sf "http://127.0.0.1:$port/readyz" || fail "the relay never became ready: $(tail -5 "$WORK/$name.log")"
    kill -USR1 "$proxy"
    sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
        SELECT 'coupon.email', CONCAT('$prefix', seq, '_processing_1_14'), '', 'coupon.email', '{}' FROM seq_1_to_300"
}
# holding: a transaction on the test's database holds the 300 rows' locks
holding() {
    [ "$(sql -e "SELECT COALESCE(MAX(t.trx_rows_locked), 0) FROM information_schema.innodb_trx t
        JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id WHERE p.db = '$DB'")" -ge 300 ]
}

note "a relay killed -9 while it publishes: the next relay takes its rows at once"
# On one server a relay keeps the rows it read locked until it marks them;
# its death ends the transaction and frees them. (A Galera relay claims
# them for 30 s first: galera.sh.)
relay_frozen killed k 60s
wait_for 20 holding || fail "the relay behind the frozen link never took the rows: $(tail -3 "$WORK/killed.log")"
kill -9 "$caught"
wait "$caught" 2>/dev/null || true
oq relay --once >"$WORK/r5.out" 2>"$WORK/r5.err" || fail "the next relay: $(cat "$WORK/r5.err")"
expect_eq "published 300 outbox events" "$(cat "$WORK/r5.out")" "the next relay, at once, after the first was killed holding the rows"

note "a relay stopped (SIGSTOP) while it publishes: its rows are free again within connect_timeout_ms + 30 s"
# Alive to the kernel, so nothing closes its MySQL session: the server's
# idle_transaction_timeout ends the transaction, as a claim would lapse.
relay_frozen stopped s 5s
wait_for 3 holding || fail "the relay behind the frozen link never took the rows: $(tail -3 "$WORK/stopped.log")"
kill -STOP "$caught"
t0=$SECONDS
oq relay --once >"$WORK/r6.out" 2>"$WORK/r6.err" || fail "a relay beside the stopped one: $(cat "$WORK/r6.err")"
expect_eq "published 0 outbox events" "$(cat "$WORK/r6.out")" "a relay beside the stopped one, at once (its rows are held)"
# Consumers go on writing the outbox meanwhile: new rows, and a copy of a
# held row (a redelivered event) that INSERT IGNORE drops, neither waiting
# on the held locks (READ COMMITTED: no gap locks).
try sql "$DB" -e "SET SESSION innodb_lock_wait_timeout = 3;
    INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
        SELECT 'coupon.email', CONCAT('n', seq, '_processing_1_14'), '', 'coupon.email', '{}' FROM seq_1_to_10;
    INSERT IGNORE INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
        VALUES ('coupon.email', 's1_processing_1_14', '', 'coupon.email', '{}')"
expect_eq 0 "$rc" "writing the outbox beside the held rows: $out"
oq relay --once >"$WORK/r6.out" 2>"$WORK/r6.err" || fail "a relay beside the stopped one: $(cat "$WORK/r6.err")"
expect_eq "published 10 outbox events" "$(cat "$WORK/r6.out")" "a relay beside the stopped one, the new rows only"
freed() { oq relay --once >"$WORK/r7.out" 2>"$WORK/r7.err" && [ "$(cat "$WORK/r7.out")" = "published 300 outbox events" ]; }
wait_for 50 freed || fail "the stopped relay's rows were not free 50 s later: $(cat "$WORK/r7.out" "$WORK/r7.err")"
note "free again after $((SECONDS - t0)) s"
kill -CONT "$caught"
kill -9 "$caught"
wait "$caught" 2>/dev/null || true

note "a relay whose confirms do not come: it says so, rolls back, and its rows are free again"
relay_frozen unconfirmed c 1s
wait_for 10 grep -q "did not confirm them within connect_timeout_ms (1000 ms)" "$WORK/unconfirmed.log" ||
    fail "the relay behind the frozen link did not name the missing confirms: $(tail -3 "$WORK/unconfirmed.log")"
kill -9 "$caught"
wait "$caught" 2>/dev/null || true
oq relay --once >"$WORK/r8.out" 2>"$WORK/r8.err" || fail "the next relay: $(cat "$WORK/r8.err")"
expect_eq "published 300 outbox events" "$(cat "$WORK/r8.out")" "the next relay, after the first gave up on its confirms"

note "a relay stopping while the broker does not answer its close: half a second, a warning, and out"
# Through a link that swallows connection.close: no close-ok comes. The
# stop waits STOPPING_CLOSE_MS (500 ms), not connect_timeout_ms, so a stop
# against a hung broker stays within deploy.md's budget.
start_link 0 --swallow-close
port=$(free_port)
ORDERQ_AMQP_URL=$LINK_URL "$ORDERQ_BIN" relay --http-addr "127.0.0.1:$port" --connect-timeout-ms 8000 2>"$WORK/mute.log" &
mute=$!
CLEANUP+=("kill -9 $mute")
wait_for 20 curl -sf "http://127.0.0.1:$port/readyz" || fail "the relay never became ready: $(tail -5 "$WORK/mute.log")"
sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
    SELECT 'coupon.email', CONCAT('m', seq, '_processing_1_14'), '', 'coupon.email', '{}' FROM seq_1_to_5"
published_m() { [ "$(sql "$DB" -e "SELECT COUNT(*) FROM outbox WHERE event_identifier LIKE 'm%' AND published_at IS NOT NULL")" = 5 ]; }
wait_for 20 published_m || fail "the relay behind the link did not publish: $(tail -3 "$WORK/mute.log")"
t0=$(date +%s%N)
kill -TERM "$mute"
wait "$mute" && rc=0 || rc=$?
stop_ms=$((($(date +%s%N) - t0) / 1000000))
note "stopped in $stop_ms ms"
expect_eq 0 "$rc" "the relay's exit status after TERM: $(tail -3 "$WORK/mute.log")"
expect_contains "no close-ok within 500 ms" "$(cat "$WORK/mute.log")" "the relay's warning"
[ "$stop_ms" -lt 3000 ] || fail "the relay took $stop_ms ms to stop with no close-ok coming (connect_timeout_ms 8000; expected about 500)"
wait_for 10 link_ends_all || fail "the relay's connection through the link did not end: $(paste -sd, "$LINK_REPORT")"
expect_eq "relay: close swallowed,relay: fin before close-ok" "$(grep -v '^open$' "$LINK_REPORT" | paste -sd,)" \
    "how the relay's connection ended"
