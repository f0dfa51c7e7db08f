#!/usr/bin/env bash
# dlq_replay.sh - end to end: a letter parked by the consumer and archived
# by it is replayed once its cause is fixed and takes effect once; a second
# replay is a duplicate the ledger drops; --dry-run changes nothing
source "$(dirname "$0")/lib.sh"
export ORDERQ_RETRY_TIERS=1s
setup_consumer_test

note "the cause: max_attempts 1, so a probe failing once is dead at once"
ORDERQ_MAX_ATTEMPTS=1 start_consumer before
printf '%s\n' '{"event_code":"probe","event_identifier":"late1","event_data":{"fail":"transient","fail_attempts":1,"error":"shop API down"}}' \
    | oq publish - >/dev/null
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 1 ]" \
    || fail "not archived: $(tail -3 "$WORK/before.log")"
id=$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'late1'")
expect_eq "transient	1	gave up after 1 attempts: shop API down (probe, attempt 1)" \
    "$(sql "$DB" -e "SELECT error_class, attempts, error FROM dead_letter WHERE id = $id")" "the letter"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"

note "the fix: a consumer allowed 3 attempts"
port=$(free_port)
ORDERQ_MAX_ATTEMPTS=3 ORDERQ_HTTP_ADDR="127.0.0.1:$port" "$ORDERQ_BIN" consume --instance-id after 2>"$WORK/after.log" &
CLEANUP+=("kill -9 $!")
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wait_for 20 curl -sf "http://127.0.0.1:$port/readyz" || fail "never ready: $(cat "$WORK/after.log")"

note "--dry-run: names the letter, changes nothing"
out=$(oq dlq replay --id "$id" --dry-run)
expect_contains "late1" "$out" "dry run lists the letter"
sleep 2
expect_eq "0" "$(sql "$DB" -e "SELECT replay_count FROM dead_letter WHERE id = $id")" "replay_count after --dry-run"
expect_eq "0" "$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')" "effects after --dry-run"

note "replay: attempts start again at 1 (fails), the retry on attempt 2 takes effect"
oq dlq replay --id "$id" --as night-shift >/dev/null
wait_ledger 1 30 || fail "no effect after the replay: $(tail -3 "$WORK/after.log")"
expect_eq "late1	2	probe ok on attempt 2" "$(sql "$DB" -e 'SELECT effect_key, attempts, result FROM event_ledger')" "the effect"
expect_eq "1	night-shift" "$(sql "$DB" -e "SELECT replay_count, replayed_by FROM dead_letter WHERE id = $id")" "recorded replay"

note "replayed again: still one effect, the ledger counts a duplicate"
oq dlq replay --id "$id" --as night-shift >/dev/null
outcomes() { metric_sum "127.0.0.1:$port" orderq_outcomes_total "outcome=$1"; }
outcomes_are() { [ "$(outcomes "$1")" = "$2" ]; }
wait_for 30 outcomes_are duplicate 1 || fail "no duplicate counted: duplicate outcomes $(outcomes duplicate)"
expect_eq 1 "$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')" "effects after two replays"
expect_eq 1 "$(outcomes done)" "done outcomes"
expect_eq 2 "$(sql "$DB" -e "SELECT replay_count FROM dead_letter WHERE id = $id")" "replay_count"
expect_eq 1 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "no new dead letter"
for q in orderq.probe orderq.delay.1s orderq.dead; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
