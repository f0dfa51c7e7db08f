#!/usr/bin/env bash
# sweeper.sh - leases nobody comes back for: a consumer killed between a
# mail's send and its `sent` commit whose message is then gone (purged, as
# after a delivery limit or an ack), so no delivery ever finds the row.
# Two running consumers' lease sweepers mark such a row `unknown` once its
# lease ran out more than sweep_after_ms ago, with one ambiguous dead
# letter (not two), and leave live leases and rows within the grace
# alone; the gauges and `ledger stats` show them; `ledger sweep --dry-run`
# changes nothing, two `ledger sweep` at once settle each row once; a
# sweeper letter is never replayed and nothing is sent again.
source "$(dirname "$0")/lib.sh"
need_maildev
# The longest retry wait is 2 s (tier 2 of max_attempts 3): a 10 s grace
# is allowed, and the test takes a minute, not an hour.
export ORDERQ_RETRY_TIERS=1s,2s ORDERQ_MAX_ATTEMPTS=3
export ORDERQ_SMTP_TIMEOUT_MS=2s ORDERQ_EFFECT_LEASE_MS=3s ORDERQ_SWEEP_AFTER_MS=10s
setup_consumer_test
export ORDERQ_SMTP_FROM='Mug Shop <shop@sweeper.example>'
CONSUME_QUEUES=orderq.coupon.email
run="$$$RANDOM"

letters_of() { sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE event_identifier = '${1}_mail'"; }
# past_grace CODE: its lease ran out more than sweep_after_ms (10 s) ago
past_grace() { [ "$(sql "$DB" -e "SELECT lease_until < NOW(6) - INTERVAL 10 SECOND FROM event_ledger WHERE effect_key = 'coupon:$1'")" = 1 ]; }
lease_ran_out() { [ "$(sql "$DB" -e "SELECT lease_until < NOW(6) FROM event_ledger WHERE effect_key = 'coupon:$1'")" = 1 ]; }
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
metric_is() { [ "$(metric "$1" "$2")" = "$3" ]; }

# victim NAME CODE: a consumer sends CODE's mail and is killed before it
# records `sent` (send_then_die); its message is then purged, so no
# delivery comes back.
victim() {
    send_then_die "$1.$run@sweeper.example" "$2"
    mgmt DELETE "/api/queues/$(urlenc "$VHOST")/orderq.coupon.email/contents" >/dev/null
    wait_for 10 ready_is orderq.coupon.email 0 || fail "the queue was not purged"
}

note "two abandoned leases, sent but not recorded: A past the grace, B within it"
victim alice "ALICE-$run"
wait_for 30 past_grace "ALICE-$run" || fail "ALICE's lease is not past the grace"
victim bob "BOB-$run"
# A live lease (another process sending right now) is never touched.
sql "$DB" -e "INSERT INTO event_ledger (handler, effect_key, event_identifier, event_code, owner, state, lease_until)
  VALUES ('coupon_mail', 'coupon:LIVE-$run', 'LIVE-${run}_mail', 'coupon.email', 'elsewhere:1/effect-1/000001', 'sending', NOW(6) + INTERVAL 1 HOUR)"

note "two consumers sweep at once: A is marked unknown with one ambiguous dead letter"
p1=$(free_port); p2=$(free_port)
start_consumer sweeper1 --http-addr "127.0.0.1:$p1"; sw1=$consumer_pid
start_consumer sweeper2 --http-addr "127.0.0.1:$p2"; sw2=$consumer_pid
wait_for 15 mail_state_is "ALICE-$run" unknown ||
    fail "the abandoned lease was not settled: ALICE is $(mail_state "ALICE-$run"); $(tail -2 "$WORK/sweeper1.log")"
expect_eq 1 "$(letters_of "ALICE-$run")" "dead letters for ALICE"
expect_eq "ambiguous" "$(sql "$DB" -e "SELECT error_class FROM dead_letter WHERE event_identifier = 'ALICE-${run}_mail'")" "ALICE's letter's class"
expect_contains "no delivery came back" "$(sql "$DB" -e "SELECT result FROM event_ledger WHERE effect_key = 'coupon:ALICE-$run'")" "ALICE's ledger result"
expect_contains "no delivery came back" "$(oq ledger show "ALICE-${run}_mail")" "ledger show"
expect_eq sending "$(mail_state "BOB-$run")" "BOB, within the grace"
expect_eq 0 "$(letters_of "BOB-$run")" "dead letters for BOB while within the grace"
expect_eq sending "$(mail_state "LIVE-$run")" "the live lease"

note "the gauges and ledger stats: BOB's lease ran out, not yet abandoned"
wait_for 10 lease_ran_out "BOB-$run" || fail "BOB's lease did not run out"
wait_for 10 metric_is "$p1" orderq_ledger_leases_expired 1 ||
    fail "orderq_ledger_leases_expired: $(metric "$p1" orderq_ledger_leases_expired)"
wait_for 10 metric_is "$p2" orderq_ledger_leases_expired 1 ||
    fail "orderq_ledger_leases_expired (second consumer): $(metric "$p2" orderq_ledger_leases_expired)"
expect_eq 1 "$(metric_sum "127.0.0.1:$p1" orderq_ledger_rows state=unknown)" "orderq_ledger_rows{state=unknown}"
expect_eq 1 "$(($(metric "$p1" orderq_leases_swept_total) + $(metric "$p2" orderq_leases_swept_total)))" "leases swept by both consumers"
stats=$(oq ledger stats)
expect_contains "expired sending leases: 1 (0 of them" "$stats" "ledger stats"
expect_eq "1 0" "$(oq ledger stats --json | json 'str(sum(r["expired_leases"] for r in d)) + " " + str(sum(r["abandoned_leases"] for r in d))')" "ledger stats --json"
past_grace "BOB-$run" && fail "the test was too slow: BOB passed the grace before its checks"

note "a mail sent meanwhile is sent once and stays sent"
carol="carol.$run@sweeper.example"
coupon_event "$carol" "CAROL-$run" | oq publish - >/dev/null || fail "publish CAROL"
wait_for 20 mail_state_is "CAROL-$run" sent || fail "CAROL: $(mail_state "CAROL-$run")"

note "B passes the grace: swept too; more passes and two sweepers store no second letter"
wait_for 30 mail_state_is "BOB-$run" unknown || fail "BOB was not settled: $(mail_state "BOB-$run")"
sleep 6 # two or three more passes of each sweeper
expect_eq 1 "$(letters_of "ALICE-$run")" "dead letters for ALICE after more passes"
expect_eq 1 "$(letters_of "BOB-$run")" "dead letters for BOB"
expect_eq 2 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter")" "dead letters in all"
expect_eq 2 "$(($(metric "$p1" orderq_leases_swept_total) + $(metric "$p2" orderq_leases_swept_total)))" "leases swept by both consumers"
expect_eq 0 "$(metric "$p1" orderq_ledger_leases_expired)" "orderq_ledger_leases_expired after the sweep"
expect_eq 2 "$(metric_sum "127.0.0.1:$p1" orderq_ledger_rows state=unknown)" "orderq_ledger_rows{state=unknown} after the sweep"
expect_eq sending "$(mail_state "LIVE-$run")" "the live lease, still"
expect_eq sent "$(mail_state "CAROL-$run")" "CAROL, still"
grep -q 'lease sweeper: coupon_mail/coupon:ALICE' "$WORK/sweeper1.log" "$WORK/sweeper2.log" || fail "the sweep is not logged"
for who in alice bob carol; do
    expect_eq 1 "$(mail_count "$who.$run@sweeper.example")" "mails to $who (the sweeper never sends)"
done
kill -TERM "$sw1" "$sw2"
wait "$sw1" || fail "sweeper1's exit"
wait "$sw2" || fail "sweeper2's exit"

note "orderq ledger sweep: --dry-run changes nothing; two at once settle each row once"
victim dave "DAVE-$run"
victim erin "ERIN-$run"
wait_for 30 past_grace "ERIN-$run" || fail "ERIN's lease is not past the grace"
dry=$(oq ledger sweep --dry-run --json) || fail "ledger sweep --dry-run"
expect_eq "2 ['coupon:DAVE-$run', 'coupon:ERIN-$run']" "$(json 'str(d["would_sweep"]) + " " + str(sorted(r["effect_key"] for r in d["rows"]))' <<<"$dry")" "dry run"
expect_contains "would sweep 2 abandoned leases" "$(oq ledger sweep --dry-run)" "dry run, as text"
expect_eq "sending sending 0 0" "$(mail_state "DAVE-$run") $(mail_state "ERIN-$run") $(letters_of "DAVE-$run") $(letters_of "ERIN-$run")" "after the dry runs"
oq ledger sweep --json >"$WORK/sweep1.json" & s1=$!
oq ledger sweep --json >"$WORK/sweep2.json" & s2=$!
wait "$s1" || fail "ledger sweep (1)"
wait "$s2" || fail "ledger sweep (2)"
swept=$(( $(json 'd["swept"]' <"$WORK/sweep1.json") + $(json 'd["swept"]' <"$WORK/sweep2.json") ))
expect_eq 2 "$swept" "rows swept by two sweeps at once"
expect_eq "unknown unknown 1 1" "$(mail_state "DAVE-$run") $(mail_state "ERIN-$run") $(letters_of "DAVE-$run") $(letters_of "ERIN-$run")" "after the sweeps"
expect_contains "swept 0 abandoned leases" "$(oq ledger sweep)" "a second sweep"
expect_eq 4 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE error_class = 'ambiguous'")" "ambiguous dead letters in all"

note "a sweeper letter is no message: replay skips it, even forced or to a queue"
id=$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'ALICE-${run}_mail'")
try oq dlq replay --id "$id" --force-resend --as tester
expect_eq 65 "$rc" "replay --force-resend of a sweeper letter (exit, $out)"
expect_contains "skipped 1" "$out" "replay's summary"
expect_contains "the lease sweeper wrote it" "$out" "why replay skips it"
try oq dlq replay --id "$id" --to-queue orderq.coupon.email --as tester
expect_eq 65 "$rc" "replay --to-queue of a sweeper letter (exit, $out)"
expect_eq 0 "$(queue_ready orderq.coupon.email)" "messages published by the refused replays"
expect_eq 0 "$(sql "$DB" -e "SELECT replay_count FROM dead_letter WHERE id = $id")" "replay_count"
expect_eq 1 "$(mail_count "alice.$run@sweeper.example")" "mails to alice in the end"
