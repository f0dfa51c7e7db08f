#!/usr/bin/env bash
# crash.sh - a clean stop acks what it committed; kill -9 of the consumer
# three times while 20,000 events flow, restarting it each time: every
# effect exactly once, nothing left unacked
source "$(dirname "$0")/lib.sh"
setup_consumer_test

note "SIGTERM mid-flow: the batches in hand are finished and acked, nothing committed is left unacked"
gen_events 5000 --start 9400000000 >"$WORK/term.jsonl"
oq publish "$WORK/term.jsonl" >/dev/null
start_consumer gentle --batch-size 50 --prefetch 200
wait_ledger 1000 60 || fail "no progress before SIGTERM"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "exit code after SIGTERM"
done_rows=$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')
# every committed event was acked: exactly the rest is back in the queue
wait_for 10 ready_is orderq.order.processing $((5000 - done_rows)) ||
    fail "after a clean stop at $done_rows: $(queue_ready orderq.order.processing) ready, expected $((5000 - done_rows))"
start_consumer finisher
wait_ledger 5000 60 || fail "the rest was not processed"
wait_drained
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "finisher exit code"
expect_queue_empty
sql "$DB" -e "DELETE FROM event_ledger; DELETE FROM coupon; DELETE FROM outbox"

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
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "survivor exit code"
expect_queue_empty
note "$(sql "$DB" -e 'SELECT COUNT(DISTINCT owner) FROM event_ledger') processes did the work; the killed ones' unacked deliveries were redelivered and found in the ledger"
