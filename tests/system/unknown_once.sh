#!/usr/bin/env bash
# unknown_once.sh - a mail whose sender was killed -9 between its send and
# its `sent` commit, while no delivery could come back (the broker down, or
# no consumer on the queue) for longer than sweep_after_ms: another
# consumer's lease sweeper marks it `unknown` with a letter that holds no
# message; then the delivery comes back and finds `unknown`. It was parked
# a second time (the chaos run counted more ambiguous letters than unknown
# mails); now its letter, which holds the message and can be replayed,
# takes the sweeper's place: one row `unknown`, one dead letter.
source "$(dirname "$0")/lib.sh"
need_maildev
export ORDERQ_RETRY_TIERS=1s,2s ORDERQ_MAX_ATTEMPTS=3
export ORDERQ_SMTP_TIMEOUT_MS=2s ORDERQ_EFFECT_LEASE_MS=3s ORDERQ_SWEEP_AFTER_MS=5s
setup_consumer_test
export ORDERQ_SMTP_FROM='Mug Shop <shop@unknown-once.example>'
run="$$$RANDOM"
code="ONCE-$run"
email="once.$run@unknown-once.example"
letters() { sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE event_identifier = '${code}_mail'"; }

note "the sender sends and is killed before it records sent; its delivery goes back to the queue"
send_then_die "$email" "$code"

note "no delivery comes back for longer than sweep_after_ms: a consumer of another queue sweeps it"
CONSUME_QUEUES=orderq.order.processing start_consumer sweeper
sweeper=$consumer_pid
wait_for 30 mail_state_is "$code" unknown || fail "not swept: $(mail_state "$code"); $(tail -2 "$WORK/sweeper.log")"
wait_for 10 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE event_identifier = '${code}_mail'\")\" = 1 ]" ||
    fail "the sweeper's letter: $(letters) letters"
swept_id=$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = '${code}_mail'")
expect_eq 1 "$(ready_is orderq.coupon.email 1 && echo 1)" "the delivery, still waiting in the queue"

note "the delivery comes back, finds unknown and is parked: one letter, the one with the message"
CONSUME_QUEUES=orderq.coupon.email start_consumer returner
returner=$consumer_pid
parked() { [ "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE event_identifier = '${code}_mail' AND id <> $swept_id")" -ge 1 ]; }
wait_for 30 parked || fail "the delivery was not parked: $(tail -3 "$WORK/returner.log")"
sleep 3 # time for a second letter to be archived, if there were one
wait_for 10 ready_is orderq.coupon.email 0 || fail "the delivery is still in the queue"
expect_eq 1 "$(letters)" "dead letters for the one unknown mail (sweeper's id $swept_id; $(sql "$DB" -e "SELECT GROUP_CONCAT(CONCAT(id, ' ', fingerprint) SEPARATOR '; ') FROM dead_letter"))"
expect_eq unknown "$(mail_state "$code")" "the ledger row"
expect_eq ambiguous "$(sql "$DB" -e "SELECT error_class FROM dead_letter WHERE event_identifier = '${code}_mail'")" "the letter's class"
expect_contains "\"coupon_code\": \"$code\"" "$(sql "$DB" -e "SELECT body FROM dead_letter WHERE event_identifier = '${code}_mail'")" "the letter holds the message"
grep -q "replaces the lease sweeper's dead letter $swept_id" "$WORK/returner.log" || fail "the replacement is not logged: $(tail -3 "$WORK/returner.log")"
expect_eq 1 "$(mail_count "$email")" "mails sent in the end"
kill -TERM "$returner"
wait "$returner" || fail "the returner's exit"

note "another event with the same effect key finds it swept: parked beside the sweeper's letter, which stays"
code2="TWO-$run"
email2="two.$run@unknown-once.example"
send_then_die "$email2" "$code2"
mgmt DELETE "/api/queues/$(urlenc "$VHOST")/orderq.coupon.email/contents" >/dev/null
wait_for 30 mail_state_is "$code2" unknown || fail "not swept: $(mail_state "$code2")"
wait_for 10 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE event_identifier = '${code2}_mail'\")\" = 1 ]" ||
    fail "the sweeper's letter for $code2"
CONSUME_QUEUES=orderq.coupon.email start_consumer other
returner=$consumer_pid
coupon_event "$email2" "$code2" | sed "s/${code2}_mail/${code2}_other/" | oq publish - >/dev/null || fail "publish ${code2}_other"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE event_identifier = '${code2}_other'\")\" = 1 ]" ||
    fail "the other event was not parked: $(tail -3 "$WORK/other.log")"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE event_identifier = '${code2}_mail'")" "the sweeper's letter, kept for the other event"
expect_eq 1 "$(mail_count "$email2")" "mails sent for $code2"
kill -TERM "$sweeper" "$returner"
wait "$sweeper" || fail "the sweeper's exit"
wait "$returner" || fail "the other's exit"
