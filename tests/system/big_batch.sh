#!/usr/bin/env bash
# big_batch.sh - batch_size at its bound (10,000) with the prefetch to fill
# it: a batch's claims (7 placeholders each) and coupons (10 each) pass
# MySQL's 65,535 placeholders per statement, so they are written in chunks.
# 12,000 preloaded events all commit in a few statements, none fails, and
# none falls back to one transaction per event.
source "$(dirname "$0")/lib.sh"
setup_consumer_test

note "12,000 events preloaded"
gen_events 12000 --start 9600000000 >"$WORK/events.jsonl"
oq publish "$WORK/events.jsonl" >/dev/null
wait_for 30 ready_is orderq.order.processing 12000 || fail "not all published: $(queue_ready orderq.order.processing)"

note "consume with batch_size 10000, prefetch 12000"
# the window lets a batch fill to its size before it is committed
start_consumer big --batch-size 10000 --prefetch 12000 --batch-window-ms 3s
wait_ledger 12000 240 || fail "only $(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger') of 12000 committed: $(grep -m3 'batch of' "$WORK/big.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not stop cleanly"

if grep -q 'placeholders' "$WORK/big.log"; then fail "a statement had too many placeholders: $(grep -m1 placeholders "$WORK/big.log")"; fi
if grep -q 'batch of' "$WORK/big.log"; then fail "a batch failed: $(grep -m1 'batch of' "$WORK/big.log")"; fi
expect_exactly_once 12000 9600000000
# Claims of one statement share NOW(6): one value per statement. One
# transaction per event would give thousands.
statements=$(sql "$DB" -e 'SELECT COUNT(DISTINCT executed_at) FROM event_ledger')
note "the 12,000 claims took $statements statements"
[ "$statements" -le 20 ] || fail "12,000 claims took $statements statements: batches were not committed whole"
biggest=$(sql "$DB" -e 'SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM event_ledger GROUP BY executed_at) s')
[ "$biggest" -gt 2000 ] || fail "the biggest claim statement held $biggest rows: batches did not fill"
expect_queue_empty
