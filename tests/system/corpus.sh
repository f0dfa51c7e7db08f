#!/usr/bin/env bash
# corpus.sh - the hostile corpus (tests/corpus/, README.md there) through
# the real broker, published as the shop, to one consumer of the orders
# and the coupon mails (MailDev): each case ends as the dead letter or the
# effect its props.json expects; the process never dies (same pid, exit 0
# on TERM, no sanitizer report); in = out (each message an effect, a
# duplicate or a dead letter; nothing left in a queue); every dead body is
# archived byte for byte.
source "$(dirname "$0")/lib.sh"
CORPUS="$(dirname "$0")/../corpus"
CASES=${CORPUS_CASES:-$CORPUS/cases} # CORPUS_CASES=DIR: other cases, to look into one
need_maildev
setup_consumer_test
export ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>' ORDERQ_SMTP_URL=smtp://127.0.0.1:1025
CONSUME_QUEUES="orderq.order.processing orderq.coupon.email"
corpus_mails() { curl -sf "$MAILDEV/email" | json 'sum(1 for m in d for t in m["to"] if t["address"].endswith("@corpus.example"))'; }
mails_before=$(corpus_mails)
start_consumer corpus
pid=$consumer_pid

# Dead letters the corpus expects: its dead cases and the coupon mails of
# orders whose mail must die.
n_dead=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1])
from corpus import load
print(sum(e["outcome"] == "dead" or e.get("mail", "").startswith("dead")
          for e in (p["expect"] for _, p in load(sys.argv[2]).values())))' "$CORPUS" "$CASES")
t0=$SECONDS
n=$("$PY" "$CORPUS/corpus.py" publish "$CASES" "$VHOST" "$OQ_TEST_SHOP_USER" "$OQ_TEST_PASSWORD") ||
    fail "publishing the corpus"
note "$n cases published in $((SECONDS - t0)) s; waiting for $n_dead dead letters"
dead_rows() { sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter'; }
# What the database and MailDev hold now, as corpus.py check reads it.
read_state() {
    printf '{"dead": ['
    sql -r "$DB" -e "SELECT JSON_OBJECT('case', JSON_VALUE(properties, '$.correlation_id'), 'class', error_class,
        'error', error, 'size', body_size, 'sha', IF(LENGTH(body) = body_size, SHA2(body, 256), NULL),
        'code', IF(JSON_VALUE(properties, '$.correlation_id') IS NULL,
                   JSON_VALUE(CONVERT(body USING utf8mb4), '$.event_data.coupon_code'), NULL)) FROM dead_letter" | paste -sd,
    printf '], "ledger": ['
    sql -r "$DB" -e "SELECT JSON_OBJECT('handler', handler, 'eid', event_identifier, 'key', effect_key, 'state', state) FROM event_ledger" | paste -sd,
    printf '], "coupons": ['
    sql -r "$DB" -e "SELECT JSON_OBJECT('eid', event_identifier, 'code', code) FROM coupon" | paste -sd,
    printf '], "mails_sent": %d}\n' "$(($(corpus_mails) - mails_before))"
}
check_state() { read_state >"$WORK/state.json" && "$PY" "$CORPUS/corpus.py" check "$CASES" "$WORK/state.json" >"$WORK/cases.txt" 2>"$WORK/differs.txt"; }
# Settled when every case is what it should be. Ready counts alone are not
# enough: the consumer prefetches, so mails can sit unacked (not ready)
# while the ledger and MailDev catch up.
settled() {
    [ "$(dead_rows)" -ge "$n_dead" ] &&
        [ "$(sql "$DB" -e "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")" = 0 ] &&
        [ "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE state = 'sending'")" = 0 ] &&
        ready_is orderq.order.processing 0 && ready_is orderq.coupon.email 0 && check_state
}
if wait_for "${CORPUS_WAIT:-90}" settled; then
    note "settled in $((SECONDS - t0)) s"
else
    note "not settled after ${CORPUS_WAIT:-90} s: $(dead_rows) dead letters of $n_dead (the check says which)"
fi
sleep 2 # a late mail or letter (a double) would show up in the final check
kill -0 "$pid" || fail "the consumer died: $(tail -5 "$WORK/corpus.log")"
kill -TERM "$pid"
wait "$pid" || fail "the consumer did not exit 0 on TERM: $(tail -3 "$WORK/corpus.log")"
if grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$WORK/corpus.log"; then fail "a sanitizer report"; fi

if ! check_state; then
    # what differs first: a long log is cut in the middle
    cat "$WORK/differs.txt" >&2
    cat "$WORK/cases.txt"
    fail "the corpus: $(head -c 2000 "$WORK/differs.txt")"
fi
note "what became of each case"
cat "$WORK/cases.txt"

note "in = out: nothing left in a queue"
for q in orderq.order.processing orderq.coupon.email orderq.dead; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
expect_eq 1 "$(queue_ready orderq.dead.held)" "letters in orderq.dead.held (the 20 MiB body)"

note "a message librabbitmq cannot read (tests/corpus/unreadable/): rejected once to orderq.dead, whole; the orders around it take effect; the archiver rejects it on into orderq.dead.held, with a row"
CONSUME_QUEUES=orderq.order.processing start_consumer unreadable
pid=$consumer_pid
rules_rows() { sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_rules'"; }
rules_rows_are() { [ "$(rules_rows)" = "$1" ]; }
before=$(rules_rows)
CORPUS_ONLY= "$PY" "$CORPUS/corpus.py" publish "$CORPUS/unreadable" "$VHOST" "$OQ_TEST_SHOP_USER" "$OQ_TEST_PASSWORD" >/dev/null ||
    fail "publishing the unreadable message"
gen_events 20 --start 9600000000 | oq publish - >/dev/null || fail "publishing the orders after it"
wait_for 30 rules_rows_are $((before + 20)) || fail "the orders after the unreadable message: $(($(rules_rows) - before)) of 20 took effect"
wait_for 10 ready_is orderq.order.processing 0 || fail "left in orderq.order.processing: $(queue_ready orderq.order.processing)"
wait_for 10 grep -q 'it is rejected into orderq.dead.held, whole' "$WORK/unreadable.log" ||
    fail "the archiver did not move it to orderq.dead.held: $(grep -m1 'archiving dead letters: ' "$WORK/unreadable.log")"
kill -TERM "$pid"
wait "$pid" || fail "the consumer did not exit 0 on TERM after the unreadable message"
expect_eq 1 "$(grep -c 'broker connection lost' "$WORK/unreadable.log")" \
    "reconnects for the unreadable message (each one another delivery of every message in flight)"
expect_contains "rejected to the dead-letter exchange as it is" "$(grep -m1 'reading delivery' "$WORK/unreadable.log")" "the log"
expect_eq 0 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE error_class = 'delivery_limit'")" "letters dead-lettered by the delivery limit"
wait_for 10 ready_is orderq.dead.held 2 || fail "the unreadable message is not in orderq.dead.held (lost?): $(queue_ready orderq.dead.held) there, $(queue_ready orderq.dead) in orderq.dead"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE error_class = 'unreadable' AND routing_key = 'order.processing'")" "its row"
