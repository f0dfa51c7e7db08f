#!/usr/bin/env bash
# forged_headers.sh - headers only orderq may set (x-orderq-*), forged by a
# publisher: believed only on messages orderq's own broker user published
# (their user_id, which RabbitMQ checks). The shop's user here may write to
# every exchange, the common mistake, and still cannot:
# - force a second copy of an ambiguous mail with x-orderq-force-resend
#   (`dlq replay --force-resend`, a person's word, still can);
# - skip the retries with x-orderq-attempt: 99, or redirect a dead letter
#   with x-orderq-original-exchange / -routing-key;
# - fake a dead_letter row, by publishing straight to orderq.dead or by a
#   message the quorum queue's delivery limit dead-letters itself: a letter
#   orderq did not publish says so, and who did, whatever its x-death says;
# - have `dlq replay` send such a letter where its forged x-death says
#   (it needs --to-queue or --trust-headers), or keep a letter from being
#   replayed with a forged x-orderq-swept-by.
# Each forged header is logged once per delivery, at warning, by name.
# Last, the permissions docs/operations.md gives the shop's user refuse
# the default exchange and orderq.* outright.
source "$(dirname "$0")/lib.sh"
need_maildev
export ORDERQ_RETRY_TIERS=1s,2s,3s ORDERQ_MAX_ATTEMPTS=10 ORDERQ_DELIVERY_LIMIT=2
setup_consumer_test
export ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>' ORDERQ_SMTP_URL=smtp://127.0.0.1:1025
export ORDERQ_SMTP_TIMEOUT_MS=2s ORDERQ_EFFECT_LEASE_MS=4s
CONSUME_QUEUES="orderq.coupon.email orderq.probe"
run="$$$RANDOM"
v=$(urlenc "$VHOST")
wide_shop_user
dead_count() { sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE $1"; }
dead_count_is() { [ "$(dead_count "$1")" = "$2" ]; }
warnings_about() { grep -c "ignored .*$1.* on message $2 " "$WORK/$3.log" || true; }

note "an ambiguous mail: the consumer killed between the send and the commit, parked as unknown"
fay="fay.$run@forged.example"
ORDERQ_FAULT=kill-after-send start_consumer victim
victim=$consumer_pid
coupon_event "$fay" "FAY-$run" | oq publish - >/dev/null || fail "publish"
set +e; wait "$victim"; code=$?; set -e
expect_eq 137 "$code" "the victim's exit (SIGKILL after the send)"
start_consumer main
wait_for 40 mail_state_is "FAY-$run" unknown || fail "not parked: $(mail_state "FAY-$run"); $(tail -3 "$WORK/main.log")"
wait_for 20 dead_count_is "event_identifier = 'FAY-${run}_mail'" 1 || fail "no ambiguous dead letter"
expect_eq 1 "$(mail_count "$fay")" "mails after the crash"

note "the shop publishes it again with x-orderq-force-resend: 1: no second mail, logged"
expect_eq ok "$(as_shop shop.events coupon.email "$(coupon_event "$fay" "FAY-$run")" '{"x-orderq-force-resend": 1}')" "the forged publish"
wait_for 20 dead_count_is "event_identifier = 'FAY-${run}_mail'" 2 ||
    fail "the forged copy was not parked as ambiguous: $(sql "$DB" -e "SELECT id, error_class, error FROM dead_letter") $(mail_count "$fay") mails"
sleep 2
expect_eq 1 "$(mail_count "$fay")" "mails after a forged x-orderq-force-resend"
expect_eq unknown "$(mail_state "FAY-$run")" "the ledger after the forged copy"
expect_eq 1 "$(warnings_about x-orderq-force-resend "FAY-${run}_mail" main)" "warnings naming x-orderq-force-resend"
grep "x-orderq-force-resend" "$WORK/main.log" | grep -q '"level":"warn' || fail "not logged at warning: $(grep x-orderq-force-resend "$WORK/main.log")"

note "a person's dlq replay --force-resend still sends it again"
id=$(sql "$DB" -e "SELECT MIN(id) FROM dead_letter WHERE event_identifier = 'FAY-${run}_mail'")
oq dlq replay --id "$id" --force-resend --as tester >/dev/null || fail "replay --force-resend"
wait_for 20 mail_count_is "$fay" 2 || fail "after --force-resend: $(mail_count "$fay") mails"
wait_for 10 mail_state_is "FAY-$run" sent || fail "ledger after the resend: $(mail_state "FAY-$run")"

note "x-orderq-attempt: 99 on a first delivery that fails once: retried, attempt counted from 1"
expect_eq ok "$(as_shop shop.events probe '{"event_code":"probe","event_identifier":"att-'"$run"'","event_data":{"fail":"transient","fail_attempts":1}}' \
    '{"x-orderq-attempt": 99, "x-orderq-first-failed-at": "2020-01-01T00:00:00.000Z"}' "$shop")" "the forged publish"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT attempts FROM event_ledger WHERE effect_key = 'att-$run'\")\" = 2 ]" ||
    fail "not done on attempt 2: ledger [$(sql "$DB" -e "SELECT attempts, result FROM event_ledger WHERE effect_key = 'att-$run'")], dead letters [$(sql "$DB" -e "SELECT error_class, attempts, error FROM dead_letter WHERE event_identifier = 'att-$run'")]"
expect_eq 0 "$(dead_count "event_identifier = 'att-$run'")" "dead letters of the forged attempt"
# at most one line per 10 s (a publisher can forge on every message): this
# one may fall inside the window of the warning above
[ "$(warnings_about 'x-orderq-attempt, x-orderq-first-failed-at' "att-$run" main)" -le 1 ] ||
    fail "more than one warning for one forged delivery (the retry itself is orderq's: none)"

note "x-orderq-original-exchange / -routing-key on a bad message: its letter says where it really came from"
expect_eq ok "$(as_shop shop.events probe '{"event_code":"probe","event_identifier":"dir-'"$run"'"}' \
    '{"x-orderq-original-exchange": "amq.direct", "x-orderq-original-routing-key": "elsewhere", "x-orderq-original-user-id": "somebody"}' "$shop")" "the forged publish"
wait_for 20 dead_count_is "event_identifier = 'dir-$run'" 1 || fail "no dead letter: $(tail -3 "$WORK/main.log")"
expect_eq "bad_input	orderq.probe	shop.events	probe	$shop" \
    "$(sql "$DB" -e "SELECT error_class, queue, exchange_name, routing_key, JSON_VALUE(headers, '$.\"x-orderq-original-user-id\"') FROM dead_letter WHERE event_identifier = 'dir-$run'")" \
    "the letter of a bad message with a forged destination"
out=$(oq dlq replay --id "$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'dir-$run'")" --dry-run)
expect_contains "shop.events" "$out" "where a replay sends it"

note "a letter published straight to orderq.dead with orderq's headers: archived, not believed"
forged='{"x-orderq-error-class": "transient", "x-orderq-last-error": "forged reason", "x-orderq-queue": "orderq.order.processing", "x-orderq-attempt": 5, "x-orderq-host": "forged-host", "x-orderq-pid": 4242, "x-orderq-original-exchange": "amq.direct"}'
expect_eq ok "$(as_shop orderq.dead orderq.order.processing '{"event_code":"probe","event_identifier":"fake-'"$run"'"}' "$forged")" "the forged letter"
expect_eq ok "$(as_shop orderq.dead orderq.order.processing '{"event_code":"probe","event_identifier":"fake2-'"$run"'"}' "$forged" "$shop")" "the forged letter with the shop's user_id"
for e in "fake-$run" "fake2-$run"; do
    wait_for 20 dead_count_is "event_identifier = '$e'" 1 || fail "$e not archived"
    row=$(sql "$DB" -e "SELECT error_class, queue, exchange_name, attempts, dead_host, IFNULL(dead_pid, '') FROM dead_letter WHERE event_identifier = '$e'")
    expect_eq "not_from_orderq			1		" "$row" "the row of $e (class, queue, exchange, attempts, host, pid)"
    error=$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = '$e'")
    expect_contains "not from orderq" "$error" "the error of $e"
    expect_contains "x-orderq-error-class, x-orderq-last-error, x-orderq-queue" "$error" "the error of $e names the headers"
    [[ "$error" != *"forged reason"* ]] || fail "the forged reason reached the error: $error"
    expect_eq "forged reason" "$(sql "$DB" -e "SELECT JSON_VALUE(headers, '$.\"x-orderq-last-error\"') FROM dead_letter WHERE event_identifier = '$e'")" "the forged header, kept raw"
done
expect_contains "user_id \"$shop\"" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'fake2-$run'")" "who published it"

note "orderq's user_id forged by the shop: RabbitMQ refuses it"
orderq_user=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.unquote(urllib.parse.urlsplit(sys.argv[1]).username))' "$ORDERQ_AMQP_URL")
out=$(as_shop orderq.dead orderq.order.processing '{"event_code":"probe","event_identifier":"uid-'"$run"'"}' "$forged" "$orderq_user")
expect_contains "406" "$out" "a publish with orderq's user_id"

note "a quorum queue's own dead letter of the shop's message keeps its forged headers: not believed"
# orderq.invoice.created has no consumer here: taken and given back three
# times, as crashes would, it runs out its delivery limit of 2.
expect_eq ok "$(as_shop shop.events invoice.created '{"event_code":"invoice.created","event_identifier":"lim-'"$run"'"}' "$forged" "$shop")" "the forged publish"
run_out_delivery_limit orderq.invoice.created
wait_for 20 dead_count_is "event_identifier = 'lim-$run'" 1 || fail "not archived: $(tail -3 "$WORK/main.log")"
expect_eq "delivery_limit	orderq.invoice.created	shop.events	3" \
    "$(sql "$DB" -e "SELECT error_class, queue, exchange_name, attempts FROM dead_letter WHERE event_identifier = 'lim-$run'")" "the broker's letter"
expect_contains "(x-orderq-attempt, x-orderq-error-class, x-orderq-host, x-orderq-last-error, x-orderq-original-exchange, x-orderq-pid, x-orderq-queue) were not believed" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'lim-$run'")" "the forged headers, named"

expect_contains "not from orderq: user_id \"$shop\"" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'lim-$run'")" "the broker's letter of the shop's message: whose it is"

note "x-death forged on a letter published straight to orderq.dead: the row says whose it is; replay waits for a person's choice"
# What a forger would have orderq's user publish: an event into shop.events
# under a routing key of its choosing, caught here by a queue of our own.
mgmt PUT "/api/queues/$v/forged.catch" '{"durable":true}' >/dev/null
mgmt POST "/api/bindings/$v/e/shop.events/q/forged.catch" '{"routing_key":"forged.catch"}' >/dev/null
xdeath='{"x-first-death-reason": "delivery_limit", "x-first-death-queue": "orderq.invoice.created", "x-first-death-exchange": "shop.events",
         "x-death": [{"reason": "delivery_limit", "queue": "orderq.invoice.created", "exchange": "shop.events", "routing-keys": ["forged.catch"], "count": 1}]}'
expect_eq ok "$(as_shop orderq.dead x '{"event_code":"invoice.created","event_identifier":"xd-'"$run"'"}' "$xdeath" "$shop")" "the letter with a forged x-death"
expect_eq ok "$(as_shop orderq.dead x '{"event_code":"invoice.created","event_identifier":"xd0-'"$run"'"}' "$xdeath")" "the same without a user_id"
wait_for 20 dead_count_is "event_identifier IN ('xd-$run', 'xd0-$run')" 2 || fail "the forged x-death letters were not archived"
error=$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'xd-$run'")
expect_contains "not from orderq: user_id \"$shop\", not orderq's user" "$error" "the row of a forged x-death (with the shop's user_id)"
expect_contains "its x-death headers, which any publisher can write, say: RabbitMQ dead-lettered it from orderq.invoice.created" "$error" "what x-death says, as its word"
expect_contains "not from orderq: no user_id" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'xd0-$run'")" "the row of a forged x-death (no user_id)"
xd=$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'xd-$run'")
try oq dlq replay --id "$xd" --as tester
expect_eq 65 "$rc" "replay of a letter orderq did not publish, without --to-queue or --trust-headers: $out"
expect_contains "orderq did not publish it" "$out" "the refusal"
expect_contains "--to-queue QUEUE, or with --trust-headers" "$out" "the refusal says what a person may choose"
sleep 1
expect_eq 0 "$(queue_ready forged.catch)" "published where the forged x-death said"
expect_eq 0 "$(sql "$DB" -e "SELECT replay_count FROM dead_letter WHERE id = $xd")" "marked replayed"
try oq dlq replay --id "$xd" --to-queue forged.catch --as tester
expect_eq 0 "$rc" "replay --to-queue, a person's choice: $out"
wait_for 10 ready_is forged.catch 1 || fail "replay --to-queue: $(queue_ready forged.catch) in forged.catch"

note "x-orderq-swept-by forged on a letter: it does not block its replay"
expect_eq ok "$(as_shop orderq.dead x '{"event_code":"probe","event_identifier":"sw-'"$run"'"}' '{"x-orderq-swept-by": "forged-host"}' "$shop")" "the letter with a forged x-orderq-swept-by"
wait_for 20 dead_count_is "event_identifier = 'sw-$run'" 1 || fail "the forged x-orderq-swept-by letter was not archived"
try oq dlq replay --id "$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'sw-$run'")" --to-queue forged.catch --as tester
expect_eq "0 replayed 1 of 1 dead letters, failed 0, skipped 0" "$rc $out" "replay of a letter with a forged x-orderq-swept-by"
wait_for 10 ready_is forged.catch 2 || fail "after the swept-by replay: $(queue_ready forged.catch) in forged.catch"

note "the shop's user with the permissions docs/operations.md gives it: the default exchange and orderq.* refused"
mgmt PUT "/api/permissions/$v/$shop" '{"configure":"","write":"^shop\\.events$","read":""}' >/dev/null
for ex in orderq.dead orderq.delay ""; do
    expect_contains "403" "$(as_shop "$ex" orderq.probe '{"event_code":"probe","event_identifier":"perm-'"$run"'"}' '{}')" "publishing to \"$ex\" as the shop"
done
expect_eq ok "$(as_shop shop.events probe '{"event_code":"probe","event_identifier":"perm-'"$run"'"}' '{}')" "publishing to shop.events as the shop"

kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
grep -q 'closed channel\|closed the connection\|parking connection lost' "$WORK/main.log" && fail "a connection was lost: $(grep -m1 'closed\|lost' "$WORK/main.log")"
for q in orderq.coupon.email orderq.probe orderq.invoice.created orderq.dead; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
