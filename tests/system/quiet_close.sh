#!/usr/bin/env bash
# quiet_close.sh - at low load a batch closes as soon as nothing more is
# waiting, not after its whole window. With batch_window_ms 10 s, events
# published one at a time each commit long before the window ends; a
# burst published at once still commits as a few batches, not one each; and
# while every database worker is busy a batch fills on past its window.
source "$(dirname "$0")/lib.sh"
setup_consumer_test

# statements_for TOTAL FIRST WHAT: once TOTAL events are in the ledger and
# the consumer stopped, $statements is how many claim statements committed
# those from event FIRST on (one executed_at each)
statements_for() {
    wait_ledger "$1" 60 || fail "only $(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger') of $1 committed"
    kill -TERM "$consumer_pid"
    wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
    statements=$(sql "$DB" -e "SELECT COUNT(DISTINCT executed_at) FROM event_ledger WHERE event_identifier >= '$2'")
    note "$3 took $statements claim statements"
}

start_consumer quiet --batch-window-ms 10s
wait_for 20 consuming orderq.order.processing || fail "the consumer did not start: $(tail -3 "$WORK/quiet.log")"

note "5 events, one at a time: each is committed within 4 s (the window is 10 s)"
gen_events 5 --start 9700000000 >"$WORK/events.jsonl"
for i in 1 2 3 4 5; do
    sed -n "${i}p" "$WORK/events.jsonl" | oq publish - >/dev/null || fail "publishing event $i"
    t0=$SECONDS
    wait_ledger "$i" 4 || fail "event $i was not committed within 4 s: the batch waited for its 10 s window"
    note "event $i committed within $((SECONDS - t0)) s"
done

note "a burst of 2,000 published at once: batched, not a commit each"
gen_events 2000 --start 9710000000 | oq publish - >/dev/null || fail "publishing the burst"
statements_for 2005 9710000000 "the burst"
[ "$statements" -le 400 ] || fail "the 2,000 events took $statements claim statements: batches closed too eagerly"

note "3,000 waiting, batch_window_ms 0, one database worker: while it is busy the next batch fills"
gen_events 3000 --start 9720000000 | oq publish - >/dev/null || fail "publishing the backlog"
start_consumer busy --batch-window-ms 0 --db-workers 1
statements_for 5005 9720000000 "the backlog"
[ "$statements" -le 60 ] || fail "the 3,000 events took $statements claim statements (a full batch is 250): batches closed while the worker was busy"
expect_eq 5005 "$(sql "$DB" -e 'SELECT COUNT(DISTINCT effect_key) FROM event_ledger')" "distinct ledger keys"
expect_eq 5005 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons"
expect_queue_empty
