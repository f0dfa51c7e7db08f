#!/usr/bin/env bash
# broker_silent.sh - the broker goes silent (a node that lost power or was
# cut off: no RST, no FIN, no bytes): with heartbeat_s 1 the consumer sees
# the missed heartbeats within a few seconds, drops the connection and
# tries again, rather than waiting out TCP's retransmits (15 minutes).
# Idle and with traffic before the freeze.
source "$(dirname "$0")/lib.sh"
setup_consumer_test

"$PY" "$(dirname "$0")/tcp_forward.py" --listen 127.0.0.1:0 --upstream 127.0.0.1:5672 \
    --ready-file "$WORK/proxy.addr" 2>"$WORK/proxy.log" &
proxy=$!
CLEANUP+=("kill $proxy")
wait_for 10 test -s "$WORK/proxy.addr" || fail "the proxy did not start: $(cat "$WORK/proxy.log")"
port=$(free_port)
ORDERQ_AMQP_URL="amqp://guest:guest@$(cat "$WORK/proxy.addr")/$(urlenc "$VHOST")" ORDERQ_HTTP_ADDR="127.0.0.1:$port" \
    "$ORDERQ_BIN" consume --instance-id silent --heartbeat-s 1 --queue orderq.order.processing 2>"$WORK/silent.log" &
pid=$!
CLEANUP+=("kill -9 $pid")
wait_for 20 curl -sf "http://127.0.0.1:$port/readyz" || fail "never ready: $(tail -5 "$WORK/silent.log")"

note "20 orders through the proxy, then 3 s idle"
gen_events 20 --start 9720000000 | oq publish - >/dev/null
wait_ledger 20 30 || fail "the orders were not committed: $(tail -5 "$WORK/silent.log")"
sleep 3

note "the broker goes silent: the consuming connection must notice within 8 s (heartbeat 1 s)"
kill -USR1 "$proxy"
t0=$SECONDS
wait_for 8 grep -q 'lost the broker connection' "$WORK/silent.log" ||
    fail "8 s after the broker went silent the consumer had not noticed (log: $(tail -3 "$WORK/silent.log"))"
note "noticed after $((SECONDS - t0)) s: $(grep -m1 'lost the broker connection' "$WORK/silent.log")"
kill -0 "$pid" || fail "the consumer died: $(tail -5 "$WORK/silent.log")"
kill -TERM "$pid"
wait_for 20 bash -c "! kill -0 $pid 2>/dev/null" || fail "the consumer did not stop on TERM with the broker silent"
