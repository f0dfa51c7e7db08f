#!/usr/bin/env bash
# mail_flow.sh - customer mail through `orderq consume`, each exactly once:
# an order earns a coupon and its coupon mail arrives once; one coupon.email
# delivered 10 times makes one mail; invoice.created twice plus
# invoice.updated make one invoice mail with its lines and totals; with the
# ledger locked for 8 s and 1 s heartbeats the broker connection survives
# and the batch goes through once the lock is gone
source "$(dirname "$0")/lib.sh"
need_maildev
setup_consumer_test
export ORDERQ_SMTP_URL=smtp://127.0.0.1:1025 ORDERQ_SMTP_TLS=off ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>'
CONSUME_QUEUES="" # every queue: the mail handlers too
run="$$$RANDOM"
ann="ann.$run@mail-flow.example"
ledger_state() { sql "$DB" -e "SELECT CONCAT(state, ' ', attempts) FROM event_ledger WHERE handler = '$1' AND effect_key = '$2'"; }

note "templates are checked at start: a template_dir without them stops consume, naming it"
try env ORDERQ_TEMPLATE_DIR=/nonexistent timeout 20 "$ORDERQ_BIN" consume
expect_eq 78 "$rc" "exit code"
expect_contains "template_dir (/nonexistent): cannot read template /nonexistent/coupon.txt" "$out" "message"

start_consumer flow --heartbeat-s 1

note "an order earns a coupon: one coupon mail with its code"
"$PY" - "$run" "$ann" >"$WORK/order.jsonl" <<'PY'
import json, sys
run, email = sys.argv[1], sys.argv[2]
print(json.dumps({"event_code": "order.processing", "event_identifier": f"{run}_processing",
  "event_data": {"order_id": run, "order_status": "processing", "currency": "USD",
    "customer": {"email": email, "name": "Ann Müller"},
    "items": [{"sku": "MUG-1", "qty": 3, "price": "25.00", "original_price": "25.00"}]}}))
PY
oq publish "$WORK/order.jsonl" >/dev/null || fail "publish the order"
wait_for 30 mail_count_is "$ann" 1 || fail "coupon mail: $(mail_count "$ann") mails; log: $(tail -5 "$WORK/flow.log")"
code=$(sql "$DB" -e "SELECT code FROM coupon WHERE order_id = '$run'")
[ -n "$code" ] || fail "no coupon for the order"
mails_to "$ann" | "$PY" -c '
import json, sys
m = json.load(sys.stdin)[0]
code = sys.argv[1]
assert m["subject"] == f"Your coupon {code}: $10.00 off your next order", m["subject"]
assert m["to"] == [{"address": sys.argv[2], "name": "Ann Müller"}], m["to"]
assert code in m["text"] and "$10.00" in m["text"] and "Hello Ann Müller" in m["text"], m["text"]
assert code in m["html"], m["html"]
assert m["messageId"].endswith(".coupon_mail@mugs.example"), m["messageId"]
' "$code" "$ann" || fail "the coupon mail: $(mails_to "$ann")"
wait_for 10 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT state FROM event_ledger WHERE handler = 'coupon_mail'\")\" = sent ]" \
    || fail "ledger: $(sql "$DB" -e 'SELECT * FROM event_ledger')"
expect_contains "250" "$(sql "$DB" -e "SELECT result FROM event_ledger WHERE handler = 'coupon_mail'")" "the SMTP reply in the ledger"

note "one coupon.email delivered 10 times (5 copies, 5 more under other identifiers): one mail"
bob="bob.$run@mail-flow.example"
"$PY" - "$run" "$bob" >"$WORK/coupon.jsonl" <<'PY'
import json, sys
run, email = sys.argv[1], sys.argv[2]
for i in range(10):
    ident = f"{run}_processing_1_14" if i < 5 else f"{run}_processing_1_14_copy{i}"
    print(json.dumps({"event_code": "send_coupon_code_by_email" if i % 2 else "coupon.email",
      "event_identifier": ident,
      "event_data": {"order_id": run, "coupon_code": f"MUG-{run}", "discount_type": "percent",
        "discount": "12.50", "currency": "USD", "expires_at": "2027-01-31T00:00:00Z",
        "customer": {"email": email}}}))
PY
oq publish "$WORK/coupon.jsonl" >/dev/null || fail "publish the coupon.email events"
wait_for 30 mail_count_is "$bob" 1 || fail "coupon.email: $(mail_count "$bob") mails"
wait_for 20 ready_is orderq.coupon.email 0 || fail "coupon.email events left: $(queue_ready orderq.coupon.email)"
sleep 2 # a second mail would have had time to arrive
expect_eq 1 "$(mail_count "$bob")" "mails for one coupon delivered 10 times"
expect_eq "sent 1" "$(ledger_state coupon_mail "coupon:MUG-$run")" "the coupon's ledger row"
expect_contains "12.5% off" "$(mails_to "$bob" | json 'd[0]["subject"]')" "a percent discount"

note "invoice.created twice and invoice.updated: one invoice mail"
cy="cy.$run@mail-flow.example"
"$PY" - "$run" "$cy" >"$WORK/invoice.jsonl" <<'PY'
import json, sys
run, email = sys.argv[1], sys.argv[2]
data = {"invoice_id": f"5{run}", "increment_id": f"INV-{run}", "order_id": run, "currency": "USD",
  "customer": {"email": email, "name": "Cy <Admin>"},
  "items": [{"sku": "MUG-1", "name": "Mug", "qty": 2, "price": "30.00"}],
  "totals": {"subtotal": "60.00", "tax": "4.80", "shipping": "5.00", "grand_total": "69.80"}}
for code, ident in [("invoice.created", "a"), ("invoice.created", "b"), ("invoice.updated", "c")]:
    print(json.dumps({"event_code": code, "event_identifier": f"{run}_invoice_{ident}", "event_data": data}))
PY
oq publish "$WORK/invoice.jsonl" >/dev/null || fail "publish the invoice events"
wait_for 30 mail_count_is "$cy" 1 || fail "invoice: $(mail_count "$cy") mails"
wait_for 20 ready_is orderq.invoice.created 0 || fail "invoice.created events left"
wait_for 20 ready_is orderq.invoice.updated 0 || fail "invoice.updated events left"
sleep 2
expect_eq 1 "$(mail_count "$cy")" "mails for one invoice"
expect_eq "sent 1" "$(ledger_state invoice_mail "invoice:5$run")" "the invoice's ledger row"
mails_to "$cy" | "$PY" -c '
import json, sys
m = json.load(sys.stdin)[0]
run = sys.argv[1]
assert m["subject"] == f"Invoice INV-{run} for your order {run}", m["subject"]
for want in ["INV-" + run, "Mug (MUG-1)", "$30.00", "$60.00", "$4.80", "$5.00", "$69.80", "Hello Cy <Admin>"]:
    assert want in m["text"], (want, m["text"])
assert "Cy &lt;Admin&gt;" in m["html"] and "<Admin>" not in m["html"], m["html"]
' "$run" || fail "the invoice mail: $(mails_to "$cy")"

note "the ledger locked for 8 s, heartbeats every 1 s: the connection survives, the batch waits"
dee="dee.$run@mail-flow.example"
sed "s/$ann/$dee/; s/_processing/9_processing/; s/\"order_id\": \"$run\"/\"order_id\": \"${run}9\"/" "$WORK/order.jsonl" >"$WORK/order2.jsonl"
lock_ledger 8 "$WORK/locked_count"
locked_at=$SECONDS
oq publish "$WORK/order2.jsonl" >/dev/null || fail "publish during the lock"
sleep 3
expect_eq 0 "$(mail_count "$dee")" "mails while the ledger is locked"
wait "$lock_pid"
wait_for 30 mail_count_is "$dee" 1 || fail "after the lock: $(mail_count "$dee") mails"
[ $((SECONDS - locked_at)) -ge 7 ] || fail "the mail came before the lock was released"
grep -q "lost the broker connection\|reconnecting" "$WORK/flow.log" && fail "the broker connection was lost during the lock: $(grep -i broker "$WORK/flow.log")"
expect_eq 1 "$(grep -c '"connected; consuming' "$WORK/flow.log")" "connections made by the consumer"

kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
grep -h '"level":"error"' "$WORK"/*.log && fail "the consumer logged errors" || true
