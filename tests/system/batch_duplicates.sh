#!/usr/bin/env bash
# batch_duplicates.sh - two sends of one effect in one batch: the second
# waits for the first one's outcome. When the first fails for good (the
# SMTP server refuses its address), the second, with the corrected
# address, is sent, not acked as a duplicate of a mail that never went;
# when the first is sent, the second is a duplicate and no second mail goes.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
start_smtp_fixture reject-some
export ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" ORDERQ_SMTP_TLS=off
CONSUME_QUEUES=orderq.coupon.email

"$PY" - >"$WORK/coupon.jsonl" <<'PY'
import json
def mail(ident, code, email):
    return json.dumps({"event_code": "coupon.email", "event_identifier": ident,
      "event_data": {"order_id": "9800000000", "coupon_code": code, "discount_type": "percent",
        "discount": "10.00", "currency": "USD", "expires_at": "2027-01-31T00:00:00Z",
        "customer": {"email": email}}})
print(mail("fix-1", "MUG-FIXED", "reject.me@dup.example"))  # refused: 550
print(mail("fix-2", "MUG-FIXED", "ann@dup.example"))        # the corrected address
print(mail("twice-1", "MUG-TWICE", "bob@dup.example"))
print(mail("twice-2", "MUG-TWICE", "bob@dup.example"))      # the same mail again
PY
oq publish "$WORK/coupon.jsonl" >/dev/null
start_consumer dups --batch-window-ms 200
ledger_is() { [ "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE state = 'sent'")" = "$1" ]; }
wait_for 30 ledger_is 2 || fail "sent: $(sql "$DB" -e "SELECT effect_key, state FROM event_ledger"): $(tail -5 "$WORK/dups.log")"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 1 ]" \
    || fail "the refused mail was not dead-lettered"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_eq 2 "$(cat "$WORK/smtp-count")" "mails the SMTP server accepted (the corrected one and one of the two copies)"
expect_eq "fix-2" "$(sql "$DB" -e "SELECT event_identifier FROM event_ledger WHERE effect_key = 'coupon:MUG-FIXED'")" "who sent the MUG-FIXED mail"
expect_eq "fix-1	permanent" "$(sql "$DB" -e 'SELECT event_identifier, error_class FROM dead_letter')" "the dead letter"
wait_for 10 ready_is orderq.coupon.email 0 || fail "left in orderq.coupon.email"
