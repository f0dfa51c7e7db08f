#!/usr/bin/env bash
# retry_cut.sh - the parking connection is cut after a retry is published
# and before its confirm arrives: the message is neither lost nor doubled
# (it is requeued; the copy that did reach the delay tier comes back as a
# duplicate the ledger recognises), and the consuming connection, which
# carries no publishes, goes on untouched
source "$(dirname "$0")/lib.sh"
export ORDERQ_RETRY_TIERS=1s,2s,3s ORDERQ_MAX_ATTEMPTS=4
setup_consumer_test

note "a proxy that cuts the connection right after the first publish to orderq.delay"
"$PY" "$(dirname "$0")/amqp_cut_proxy.py" --listen 127.0.0.1:0 --upstream 127.0.0.1:5672 \
    --cut-after-publish-to orderq.delay --cut-delay-ms 300 --times 1 \
    --ready-file "$WORK/proxy.addr" --log "$WORK/proxy.log" 2>>"$WORK/proxy.log" &
CLEANUP+=("kill $!")
wait_for 10 test -s "$WORK/proxy.addr" || fail "the proxy did not start: $(cat "$WORK/proxy.log")"
port=$(free_port)
ORDERQ_AMQP_URL="amqp://guest:guest@$(cat "$WORK/proxy.addr")/$(urlenc "$VHOST")" ORDERQ_HTTP_ADDR="127.0.0.1:$port" \
    "$ORDERQ_BIN" consume --instance-id cut 2>"$WORK/cut.log" &
pid=$!
CLEANUP+=("kill -9 $pid")
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wait_for 20 curl -sf "http://127.0.0.1:$port/readyz" || fail "never ready: $(cat "$WORK/cut.log")"

note "a probe that fails once: its retry publish is the one cut off"
printf '%s\n' '{"event_code":"probe","event_identifier":"cut1","event_data":{"fail":"transient","fail_attempts":1}}' | oq publish - >/dev/null
wait_for 20 grep -q 'cut connection' "$WORK/proxy.log" || fail "no cut: $(cat "$WORK/proxy.log")"
grep -q 'routing-key orderq.probe' "$WORK/proxy.log" || fail "cut something else: $(cat "$WORK/proxy.log")"
wait_for 30 grep -q 'parking connection lost' "$WORK/cut.log" || fail "the cut was not noticed: $(tail -5 "$WORK/cut.log")"

note "one effect; the copy published before the cut arrived too and was a duplicate"
wait_ledger 1 30 || fail "no effect: $(tail -5 "$WORK/cut.log")"
outcomes() { metric_sum "127.0.0.1:$port" orderq_outcomes_total "outcome=$1"; }
outcomes_are() { [ "$(outcomes "$1")" = "$2" ]; }
wait_for 30 outcomes_are duplicate 1 \
    || fail "duplicate outcomes $(outcomes duplicate), expected 1 (the copy from before the cut)"
expect_eq "cut1	2	probe ok on attempt 2" "$(sql "$DB" -e "SELECT effect_key, attempts, result FROM event_ledger")" "the ledger"
expect_eq 1 "$(outcomes done)" "done outcomes"
expect_eq 1 "$(metric orderq_broker_connects_total)" "consuming connections made (the cut was the parking one's)"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
for q in orderq.probe orderq.delay.1s orderq.delay.2s orderq.delay.3s orderq.dead; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
