#!/usr/bin/env bash
# memcheck.sh - `orderq consume` under valgrind memcheck over a mixed load
# (docs/memcheck.md): orders that earn coupons and orders that do not, 10 %
# of them published twice, the coupon mails the relay makes, invoices (two
# events for one mail), the hostile corpus (tests/corpus/), probes that
# retry through the delay exchange, fail for good or spend their attempts
# (so the archiver runs), a message librabbitmq cannot read (a reconnect),
# then a clean SIGTERM drain, so that leaks are
# counted at exit. No definite or indirect leak and no invalid access may
# be reported (valgrind exits 99 then), and every event must have come out
# as it should. The consumer serves http_addr on a loopback port, scraped
# (/metrics, /healthz, /readyz, a bad path and a bad method) during the
# load, with the gauge reader every second, so libmicrohttpd's thread and
# src/gauges.c run under valgrind too. Then `orderq relay --once`, `dlq
# list` and `dlq replay`, each under valgrind too.
#
# ORDERQ_BIN must be a build WITHOUT ASan (valgrind cannot run one):
# deploy/local/test builds build/memcheck for this (ctest -L memcheck).
# MEMCHECK_EVENTS=N: about N events in all (default 10000, ~3 min of load
# under valgrind here; docs/memcheck.md has the times).
source "$(dirname "$0")/../system/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
CORPUS="$HERE/../corpus"
EVENTS=${MEMCHECK_EVENTS:-10000}
VG_RC=99 # valgrind's exit code when it reported an error

command -v valgrind >/dev/null || fail "valgrind is not installed (apt-get install valgrind; deploy/local/lib.sh installs it)"
if ldd "$ORDERQ_BIN" | grep -q 'libasan'; then
    fail "ORDERQ_BIN ($ORDERQ_BIN) is built with ASan, which valgrind cannot run: build with -DORDERQ_SANITIZE=OFF (build/memcheck)"
fi

# vg NAME ARGS...: orderq ARGS under memcheck, its report in $WORK/vg-NAME.log.
# Leaks of kinds definite and indirect are errors; reachable memory at exit
# (libraries' one-time state) is not.
vg_args() {
    # shellcheck disable=SC2054 # the commas are valgrind's lists
    VG=(valgrind --tool=memcheck --error-exitcode="$VG_RC" --leak-check=full
        --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect
        --track-origins="${MEMCHECK_TRACK_ORIGINS:-yes}" --trace-children=no --num-callers=30
        --suppressions="$HERE/orderq.supp" --log-file="$WORK/vg-$1.log" "$ORDERQ_BIN")
}
vg() {
    vg_args "$1"
    shift
    "${VG[@]}" "$@"
}
# vg_clean NAME RC: the run NAME exited RC; fail unless valgrind found nothing.
vg_clean() {
    local log="$WORK/vg-$1.log"
    { grep -E 'ERROR SUMMARY|definitely lost|indirectly lost' "$log" || true; } | sed "s/^==[0-9]*== /  $1: /"
    if [ "$2" = "$VG_RC" ] || ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
        sed -n '/HEAP SUMMARY/q;p' "$log" | tail -n 80 >&2
        { grep -A40 "are definitely lost\|are indirectly lost" "$log" || true; } | head -n 120 >&2
        fail "valgrind reported errors in $1 (above; whole report: KEEP_LOGS=1, vg-$1.log)"
    fi
    [ "$2" = 0 ] || fail "$1 exited $2 under valgrind: $(tail -3 "$WORK/$1.log" 2>/dev/null)"
}

# Short tiers and few attempts: retries come back within the run.
export ORDERQ_RETRY_TIERS=1s,2s ORDERQ_MAX_ATTEMPTS=3
setup_consumer_test
# A mail server of the test's own that takes every mail and writes a line
# for each (Message-ID, first recipient): MailDev is shared and would keep
# thousands of mails.
"$PY" "$HERE/../system/smtp_fixture.py" --port-file "$WORK/smtp-port" --mode record --record-file "$WORK/mails" &
CLEANUP+=("kill $!")
wait_for 10 test -s "$WORK/smtp-port" || fail "the SMTP fixture did not start"
fport=$(cat "$WORK/smtp-port")
export ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" ORDERQ_SMTP_TLS=off \
    ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>' ORDERQ_HTTP_ADDR="127.0.0.1:$(free_port)" \
    ORDERQ_METRICS_DB_INTERVAL_MS=1s
# scrape: each path once (slow under valgrind: a long timeout); the codes, one a line
scrape() {
    local p
    for p in /metrics /healthz /readyz /nope; do
        curl -s -o "$WORK/scrape${p//\//_}" -w '%{http_code}\n' --max-time 30 "http://$ORDERQ_HTTP_ADDR$p" || echo 000
    done
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 30 -X POST "http://$ORDERQ_HTTP_ADDR/metrics" || echo 000
}
scrapes=0

note "the load: about $EVENTS events"
n_cases=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1])
from corpus import load
print(len(load(sys.argv[2])))' "$CORPUS" "$CORPUS/cases")
n_probes=30  # 10 retried once, 10 dead at once, 10 that spend their attempts
n_invoices=$((EVENTS / 20)) # 3 events each: created twice, updated once
rest=$((EVENTS - n_cases - n_probes - 3 * n_invoices))
[ "$rest" -ge 100 ] || fail "MEMCHECK_EVENTS=$EVENTS is too few for the corpus and the rest (at least $((n_cases + n_probes + 100 + 3 * n_invoices)))"
n_coupon=$((rest / 10)) # earn a coupon (3 x 25.00), so a coupon mail
n_plain=$(((rest - n_coupon) * 10 / 11)) # 1 x 25.00: no coupon; every 10th twice
gen_events "$n_coupon" --start 9300000000 >"$WORK/events.jsonl"
gen_events "$n_plain" --start 9400000000 --qty 1 --dup-every 10 >>"$WORK/events.jsonl"
"$PY" - "$n_invoices" >>"$WORK/events.jsonl" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    data = {"invoice_id": f"7{i}", "increment_id": f"INV-{i}", "order_id": f"95{i:08d}", "currency": "USD",
            "customer": {"email": f"inv{i}@memcheck.example", "name": "Cy <Admin>"},
            "items": [{"sku": "MUG-1", "name": "Mug", "qty": 2, "price": "30.00"}],
            "totals": {"subtotal": "60.00", "tax": "4.80", "shipping": "5.00", "grand_total": "69.80"}}
    for code, ident in [("invoice.created", "a"), ("invoice.created", "b"), ("invoice.updated", "c")]:
        print(json.dumps({"event_code": code, "event_identifier": f"inv{i}_{ident}", "event_data": data}))
PY
for i in $(seq 10); do
    printf '{"event_code":"probe","event_identifier":"flaky%d","event_data":{"fail":"transient","fail_attempts":1,"error":"SMTP 421 try later"}}\n' "$i"
    printf '{"event_code":"probe","event_identifier":"broken%d","event_data":{"fail":"permanent","error":"no such thing"}}\n' "$i"
    printf '{"event_code":"probe","event_identifier":"hopeless%d","event_data":{"fail":"transient","error":"SMTP 421 try later"}}\n' "$i"
done >>"$WORK/events.jsonl"
n_plain_out=$(gen_events "$n_plain" --start 9400000000 --qty 1 --dup-every 10 | wc -l)
note "$((n_coupon + n_plain_out + 3 * n_invoices + n_probes + n_cases)) events: $n_coupon orders with a coupon, $n_plain without ($((n_plain_out - n_plain)) of them twice), $n_invoices invoices x 3 events, $n_probes probes, $n_cases corpus cases"

# Dead letters to wait for: the corpus's, the 20 probes'.
n_dead=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1])
from corpus import load
print(sum(e["outcome"] == "dead" or e.get("mail", "").startswith("dead")
          for e in (p["expect"] for _, p in load(sys.argv[2]).values())))' "$CORPUS" "$CORPUS/cases")
n_dead=$((n_dead + 20))

# Every handler's queue, the relay, the archiver, the sweeper: one process.
t0=$SECONDS
vg_args consume # run here, not in a function's subshell: $! must be valgrind's pid
"${VG[@]}" consume --instance-id memcheck 2>>"$WORK/consume.log" &
pid=$!
CLEANUP+=("kill -9 $pid")
"$PY" "$CORPUS/corpus.py" publish "$CORPUS/cases" "$VHOST" "$OQ_TEST_SHOP_USER" "$OQ_TEST_PASSWORD" >/dev/null ||
    fail "publishing the corpus"
oq publish "$WORK/events.jsonl" >/dev/null || fail "publishing the events"
note "published in $((SECONDS - t0)) s"

q_count() { sql "$DB" -e "$1"; }
mails_sent() { q_count "SELECT COUNT(*) FROM event_ledger WHERE handler IN ('coupon_mail', 'invoice_mail') AND state = 'sent'"; }
settled() {
    [ "$(q_count 'SELECT COUNT(*) FROM dead_letter')" -ge "$n_dead" ] &&
        [ "$(q_count "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_rules' AND event_identifier LIKE '9_00______\\_processing'")" = $((n_coupon + n_plain)) ] &&
        [ "$(q_count "SELECT COUNT(*) FROM event_ledger WHERE handler = 'probe'")" = 10 ] &&
        [ "$(q_count "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")" = 0 ] &&
        [ "$(q_count "SELECT COUNT(*) FROM event_ledger WHERE state = 'sending'")" = 0 ] &&
        [ "$(q_count "SELECT COUNT(*) FROM event_ledger WHERE handler = 'invoice_mail' AND state = 'sent'")" = "$n_invoices" ] &&
        [ "$(grep -c '@example.com' "$WORK/mails" 2>/dev/null)" -ge "$n_coupon" ]
}
progress() {
    note "$((SECONDS - t0)) s: ledger $(q_count 'SELECT COUNT(*) FROM event_ledger'), dead letters $(q_count 'SELECT COUNT(*) FROM dead_letter') of $n_dead, mails sent $(mails_sent)"
}
deadline=$((SECONDS + ${MEMCHECK_WAIT:-900}))
until settled; do
    kill -0 "$pid" 2>/dev/null || fail "the consumer died under valgrind: $(tail -5 "$WORK/consume.log"; tail -20 "$WORK/vg-consume.log")"
    [ "$SECONDS" -lt "$deadline" ] || { progress; fail "not settled after ${MEMCHECK_WAIT:-900} s"; }
    [ $(((SECONDS - t0) % 30)) -lt 2 ] && progress
    [ $(((SECONDS - t0) % 10)) -lt 2 ] && scrape >>"$WORK/scrape-codes" && scrapes=$((scrapes + 1))
    sleep 2
done
progress
t_load=$((SECONDS - t0))
note "settled in $t_load s"

note "http_addr under valgrind: $scrapes rounds of scrapes during the load, one more now"
scrape >>"$WORK/scrape-codes"
expect_eq "200 200 200 404 405" "$(tail -5 "$WORK/scrape-codes" | paste -sd' ')" \
    "codes of /metrics, /healthz, /readyz, /nope, POST /metrics once settled"
grep -q '^orderq_outcomes_total{queue="orderq.order.processing",outcome="done"} [1-9]' "$WORK/scrape_metrics" ||
    fail "the last scrape has no done outcomes: $(grep '^orderq_outcomes_total' "$WORK/scrape_metrics" | head -3)"

note "a message librabbitmq cannot read (tests/corpus/unreadable/): the reconnect it costs, under valgrind too"
rules_rows() { q_count "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_rules'"; }
rules_rows_are() { [ "$(rules_rows)" = "$1" ]; }
before=$(rules_rows)
lost_before=$(grep -c 'broker connection lost' "$WORK/consume.log" || true) # a slow load may have had its own
"$PY" "$CORPUS/corpus.py" publish "$CORPUS/unreadable" "$VHOST" "$OQ_TEST_SHOP_USER" "$OQ_TEST_PASSWORD" >/dev/null ||
    fail "publishing the unreadable message"
gen_events 20 --start 9600000000 --qty 1 | oq publish - >/dev/null || fail "publishing the orders after it"
wait_for 120 rules_rows_are $((before + 20)) || fail "the orders after the unreadable message: $(($(rules_rows) - before)) of 20 took effect"
wait_for 60 grep -q 'it is rejected into orderq.dead.held, whole' "$WORK/consume.log" ||
    fail "the archiver did not move it to orderq.dead.held: $(grep -m1 'archiving dead letters: ' "$WORK/consume.log")"
expect_eq 1 "$(($(grep -c 'broker connection lost' "$WORK/consume.log") - lost_before))" "reconnects for the unreadable message"

note "SIGTERM: drain and exit, leaks counted at exit"
sleep 2 # a late mail or letter would show in the counts below
t1=$SECONDS
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
note "exited $rc in $((SECONDS - t1)) s after TERM"
vg_clean consume "$rc"

note "every event came out as it should"
q_count "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_rules' AND event_identifier LIKE '93%'" |
    { read -r n; expect_eq "$n_coupon" "$n" "ledger rows of the orders with a coupon"; }
expect_eq "$n_coupon" "$(q_count "SELECT COUNT(*) FROM coupon WHERE order_id LIKE '93%'")" "their coupons"
expect_eq 0 "$(q_count "SELECT COUNT(*) FROM coupon WHERE order_id LIKE '94%'")" "coupons of orders under the threshold"
expect_eq "$n_coupon" "$(grep -c '@example.com' "$WORK/mails")" "coupon mails of the orders (each once)"
expect_eq "$n_invoices" "$(grep -c '@memcheck.example' "$WORK/mails")" "invoice mails (one for 3 events each)"
expect_eq "probe ok on attempt 2" "$(q_count "SELECT DISTINCT result FROM event_ledger WHERE handler = 'probe'")" "the retried probes"
expect_eq "permanent 10" "$(q_count "SELECT error_class, COUNT(*) FROM dead_letter WHERE event_identifier LIKE 'broken%' GROUP BY 1" | tr '\t' ' ')" "the broken probes' dead letters"
expect_eq "transient 10 3" "$(q_count "SELECT error_class, COUNT(*), MIN(attempts) FROM dead_letter WHERE event_identifier LIKE 'hopeless%' GROUP BY 1" | tr '\t' ' ')" "the hopeless probes' dead letters"
{
    printf '{"dead": ['
    sql -r "$DB" -e "SELECT JSON_OBJECT('case', JSON_VALUE(properties, '$.correlation_id'), 'class', error_class,
        'error', error, 'size', body_size, 'sha', IF(LENGTH(body) = body_size, SHA2(body, 256), NULL),
        'code', IF(JSON_VALUE(properties, '$.correlation_id') IS NULL,
                   JSON_VALUE(CONVERT(body USING utf8mb4), '$.event_data.coupon_code'), NULL))
        FROM dead_letter WHERE (event_code IS NULL OR event_code <> 'probe') AND error_class <> 'unreadable'" | paste -sd,
    printf '], "ledger": ['
    sql -r "$DB" -e "SELECT JSON_OBJECT('handler', handler, 'eid', event_identifier, 'key', effect_key, 'state', state) FROM event_ledger" | paste -sd,
    printf '], "coupons": ['
    sql -r "$DB" -e "SELECT JSON_OBJECT('eid', event_identifier, 'code', code) FROM coupon" | paste -sd,
    printf '], "mails_sent": %d}\n' "$(grep -c '@corpus.example' "$WORK/mails")"
} >"$WORK/state.json"
"$PY" "$CORPUS/corpus.py" check "$CORPUS/cases" "$WORK/state.json" >"$WORK/corpus-check.txt" ||
    fail "the corpus under valgrind (what differs above; KEEP_LOGS=1 keeps corpus-check.txt)"
tail -1 "$WORK/corpus-check.txt"
for q in order.processing coupon.email invoice.created invoice.updated probe delay.1s delay.2s; do
    expect_eq 0 "$(queue_ready "orderq.$q")" "messages left in orderq.$q"
done
expect_eq 0 "$(queue_ready orderq.dead)" "letters left in orderq.dead"
expect_eq 2 "$(queue_ready orderq.dead.held)" "letters in orderq.dead.held (the 20 MiB body and the unreadable one, as corpus.sh)"
expect_eq 1 "$(q_count "SELECT COUNT(*) FROM dead_letter WHERE error_class = 'unreadable'")" "the unreadable letter's row"

note "the relay, dlq list and dlq replay under valgrind"
rc=0
vg relay relay --once 2>"$WORK/relay.log" || rc=$?
vg_clean relay "$rc"
rc=0
vg dlq-list dlq list --event-code probe --limit 50 >"$WORK/dlq-list.txt" 2>"$WORK/dlq-list.log" || rc=$?
vg_clean dlq-list "$rc"
expect_eq 20 "$(grep -c 'probe' "$WORK/dlq-list.txt")" "probe letters listed"
rc=0
vg dlq-replay dlq replay --event-code probe --error-like 'no such thing' 2>"$WORK/dlq-replay.log" >/dev/null || rc=$?
vg_clean dlq-replay "$rc"
expect_eq 10 "$(queue_ready orderq.probe)" "replayed letters in orderq.probe"
note "load $t_load s under valgrind"
