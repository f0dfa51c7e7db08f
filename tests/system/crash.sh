#!/usr/bin/env bash
# crash.sh - kill -9 the consumer three times while 20,000 events flow,
# restarting it each time: every effect exactly once, nothing left unacked
source "$(dirname "$0")/lib.sh"
setup_consumer_test

start=9500000000
gen_events 20000 --start "$start" >"$WORK/events.jsonl"
oq publish "$WORK/events.jsonl" >"$WORK/publish.out" 2>&1 &
publisher=$!
CLEANUP+=("kill -9 $publisher")

ledger_rows() { sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger'; }
for round in 1 2 3; do
    start_consumer "victim-$round" --batch-size 50 --prefetch 200
    floor=$(ledger_rows)
    # let it work a little, mid-flight, then kill it without warning
    wait_for 60 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM event_ledger')\" -gt $((floor + 1500)) ]" \
        || fail "round $round: no progress ($(ledger_rows) rows): $(tail -3 "$WORK/victim-$round.log")"
    kill -9 "$consumer_pid"
    wait "$consumer_pid" 2>/dev/null || true
    note "round $round: killed at $(ledger_rows) ledger rows"
done
wait "$publisher" || fail "publish failed: $(cat "$WORK/publish.out")"

note "a last consumer drains the rest"
start_consumer survivor
wait_ledger 20000 120 || fail "only $(ledger_rows) of 20000 processed"
wait_drained
expect_exactly_once 20000 "$start"
expect_eq "0 0" "$(queue_depth orderq.order.processing)" "ready and unacked at the end"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "survivor exit code"
note "$(sql "$DB" -e 'SELECT COUNT(DISTINCT owner) FROM event_ledger') processes did the work; the killed ones' unacked deliveries were redelivered and found in the ledger"
