#!/usr/bin/env bash
# mail_faults.sh - mail when things break: the SMTP server down for 20 s
# (the mail arrives once after it is back); the consumer killed with -9
# between the send and the commit of `sent` (the default policy parks it as
# `unknown` and no second mail goes out; `dlq replay --force-resend` sends
# it again with the same Message-ID, a plain replay then is a duplicate);
# with ambiguous_mail = resend the next consumer sends it again itself; a
# server that takes the data and never answers: parked as unknown too)
source "$(dirname "$0")/lib.sh"
need_maildev
# Short tiers so a 20 s outage is bridged in seconds (declared by setup).
export ORDERQ_RETRY_TIERS=1s,2s,3s ORDERQ_MAX_ATTEMPTS=40
setup_consumer_test
export ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>'
CONSUME_QUEUES=orderq.coupon.email
run="$$$RANDOM"

note "the SMTP server down for 20 s: the mail waits in the delay tiers, then arrives once"
eve="eve.$run@mail-faults.example"
port=$(free_port)
ORDERQ_SMTP_URL="smtp://127.0.0.1:$port" start_consumer outage
coupon_event "$eve" "EVE-$run" | oq publish - >/dev/null || fail "publish"
down_at=$SECONDS
sleep 20
expect_eq 0 "$(mail_count "$eve")" "mails while the server is down"
expect_eq "" "$(mail_state "EVE-$run")" "no claim is left behind by a failed send"
grep -q 'retrying in' "$WORK/outage.log" || fail "no retries logged: $(tail -3 "$WORK/outage.log")"
"$PY" "$(dirname "$0")/tcp_forward.py" --listen "127.0.0.1:$port" --upstream 127.0.0.1:1025 &
CLEANUP+=("kill $!")
wait_for 20 mail_count_is "$eve" 1 || fail "after the outage: $(mail_count "$eve") mails; $(tail -3 "$WORK/outage.log")"
echo "    arrived $((SECONDS - down_at)) s after it was published"
wait_for 10 mail_state_is "EVE-$run" sent || fail "ledger: $(mail_state "EVE-$run")"
attempts=$(sql "$DB" -e "SELECT attempts FROM event_ledger WHERE effect_key = 'coupon:EVE-$run'")
[ "$attempts" -ge 5 ] || fail "the ledger says the mail went out on attempt $attempts (expected the attempt after 20 s of retries)"
sleep 3
expect_eq 1 "$(mail_count "$eve")" "mails after the outage"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"

note "kill -9 between the send and the commit of sent: parked as unknown, no second mail"
export ORDERQ_SMTP_URL=smtp://127.0.0.1:1025 ORDERQ_SMTP_TLS=off ORDERQ_SMTP_TIMEOUT_MS=2s ORDERQ_EFFECT_LEASE_MS=12s
fay="fay.$run@mail-faults.example"
ORDERQ_FAULT=kill-after-send start_consumer victim
victim=$consumer_pid
coupon_event "$fay" "FAY-$run" | oq publish - >/dev/null || fail "publish"
set +e; wait "$victim"; code=$?; set -e
killed_at=$SECONDS
expect_eq 137 "$code" "the victim's exit (SIGKILL after the send)"
expect_eq 1 "$(mail_count "$fay")" "mails sent by the victim"
expect_eq sending "$(mail_state "FAY-$run")" "the victim's claim"
start_consumer after
started_after=$((SECONDS - killed_at))
wait_for 40 mail_state_is "FAY-$run" unknown || fail "not parked: $(mail_state "FAY-$run"); $(tail -3 "$WORK/after.log")"
# Started well within the victim's 12 s lease, the next consumer must find
# it live and wait; on a machine so loaded that it started later, it found
# the lease run out, which is the path checked by the parking above.
if [ "$started_after" -le 8 ]; then
    grep -q 'being sent by another consumer' "$WORK/after.log" || fail "the live lease was not waited for"
else
    echo "    the next consumer started $started_after s after the kill: the lease may have run out first"
fi
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE error_class = 'ambiguous' AND event_identifier = 'FAY-${run}_mail'\")\" = 1 ]" \
    || fail "no ambiguous dead letter: $(sql "$DB" -e 'SELECT id, error_class, error FROM dead_letter')"
expect_contains "lease expired" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'FAY-${run}_mail'")" "the dead letter's reason"
sleep 2
expect_eq 1 "$(mail_count "$fay")" "mails after the redelivery (policy park)"

note "a person decides: dlq replay --force-resend sends it again, with the same Message-ID"
id=$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'FAY-${run}_mail'")
oq dlq replay --id "$id" --force-resend --as tester >/dev/null || fail "replay --force-resend"
wait_for 20 mail_count_is "$fay" 2 || fail "after --force-resend: $(mail_count "$fay") mails"
wait_for 10 mail_state_is "FAY-$run" sent || fail "ledger after the resend: $(mail_state "FAY-$run")"
expect_eq 1 "$(mails_to "$fay" | json 'len(set(m["messageId"] for m in d))')" "Message-IDs of the two sends"
note "a plain replay of the same letter now: a duplicate, no third mail"
oq dlq replay --id "$id" --as tester >/dev/null || fail "plain replay"
wait_for 10 ready_is orderq.coupon.email 0 || fail "the replay was not consumed"
sleep 2
expect_eq 2 "$(mail_count "$fay")" "mails after a plain replay"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"

note "ambiguous_mail = resend: after the same crash the next consumer sends it again, same Message-ID"
gus="gus.$run@mail-faults.example"
ORDERQ_AMBIGUOUS_MAIL=resend ORDERQ_FAULT=kill-after-send start_consumer victim2
victim=$consumer_pid
coupon_event "$gus" "GUS-$run" | oq publish - >/dev/null || fail "publish"
set +e; wait "$victim"; code=$?; set -e
expect_eq 137 "$code" "the second victim's exit"
expect_eq 1 "$(mail_count "$gus")" "mails sent by the second victim"
ORDERQ_AMBIGUOUS_MAIL=resend start_consumer resender
wait_for 40 mail_count_is "$gus" 2 || fail "not sent again: $(mail_state "GUS-$run"); $(tail -3 "$WORK/resender.log")"
wait_for 10 mail_state_is "GUS-$run" sent || fail "ledger after the resend: $(mail_state "GUS-$run")"
expect_eq 1 "$(mails_to "$gus" | json 'len(set(m["messageId"] for m in d))')" "Message-IDs of the two sends"
expect_eq 0 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE event_identifier = 'GUS-${run}_mail'")" "dead letters under resend"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"

note "a server that takes the data and never answers: ambiguous, parked as unknown"
start_smtp_fixture hang-after-data
hal="hal.$run@mail-faults.example"
ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" start_consumer hang
coupon_event "$hal" "HAL-$run" | oq publish - >/dev/null || fail "publish"
wait_for 30 mail_state_is "HAL-$run" unknown || fail "not parked: $(mail_state "HAL-$run"); $(tail -3 "$WORK/hang.log")"
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT error_class FROM dead_letter WHERE event_identifier = 'HAL-${run}_mail'\")\" = ambiguous ]" \
    || fail "no ambiguous dead letter: $(sql "$DB" -e "SELECT error_class, error FROM dead_letter WHERE event_identifier = 'HAL-${run}_mail'")"
expect_contains "it may have been done" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'HAL-${run}_mail'")" "the reason"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
