#!/usr/bin/env bash
# status.sh - `orderq status` shows what the broker and the database hold,
# exactly: queue depths and consumers, ledger rows by handler and state,
# dead letters not replayed by class and fingerprint, the outbox backlog;
# with one source unreachable it shows the other, names the failing one
# and exits 69; no secret is ever printed
source "$(dirname "$0")/lib.sh"
setup_consumer_test
v=$(urlenc "$VHOST")

note "a known mix: 4 orders and a duplicate, 4 bad messages, 2 invoices not consumed"
gen_events 4 --start 9500000000 >"$WORK/events.jsonl"
head -1 "$WORK/events.jsonl" >>"$WORK/events.jsonl" # the duplicate
start_consumer status --no-relay
oq publish "$WORK/events.jsonl" >/dev/null
shop_publish() { # ROUTING_KEY MESSAGE_ID BODY
    mgmt POST "/api/exchanges/$v/shop.events/publish" "$("$PY" -c 'import json, sys
print(json.dumps({"properties": {"delivery_mode": 2, "message_id": sys.argv[2]}, "routing_key": sys.argv[1],
                  "payload": sys.argv[3], "payload_encoding": "string"}))' "$1" "$2" "$3")" |
        grep -q '"routed":true' || fail "$2 not routed"
}
for i in 1 2 3; do shop_publish order.processing "bad$i" '{"event_code":"order.processing","event_identifier":"bad'$i'"}'; done
shop_publish order.processing tele1 '{"event_code":"order.teleported","event_identifier":"tele1","event_data":{}}'
for i in 1 2; do shop_publish invoice.created "inv$i" '{"event_code":"invoice.created","event_identifier":"inv'$i'","event_data":{}}'; done
wait_ledger 4 30 || fail "the orders took no effect: $(tail -3 "$WORK/status.log")"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 4 ]" ||
    fail "dead letters: $(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter') of 4: $(tail -3 "$WORK/status.log")"

note "one letter replayed (not counted), mail claims in each state, 1,234 old webhook rows"
sql "$DB" -e "UPDATE dead_letter SET replay_count = 1, replayed_at = NOW(6) WHERE event_identifier = 'bad1'"
# lease expired 10 minutes ago: within sweep_after_ms (70m), so no sweeper settles it
sql "$DB" -e "INSERT INTO event_ledger (handler, effect_key, event_identifier, event_code, owner, state, lease_until) VALUES
  ('coupon_mail', 'coupon:A', 'A_mail', 'coupon.email', 'gone:1', 'sending', NOW(6) - INTERVAL 10 MINUTE),
  ('coupon_mail', 'coupon:B', 'B_mail', 'coupon.email', 'here:1', 'sending', NOW(6) + INTERVAL 1 HOUR),
  ('coupon_mail', 'coupon:C', 'C_mail', 'coupon.email', 'gone:2', 'unknown', NULL),
  ('coupon_mail', 'coupon:D', 'D_mail', 'coupon.email', 'here:1', 'sent', NULL);
  INSERT INTO event_ledger (handler, effect_key, event_identifier, event_code)
  SELECT 'webhook', CONCAT('w', seq), CONCAT('w', seq), 'order.processing' FROM seq_1_to_1234"

note "the outbox: the relay is not running; one row published by hand, the oldest left dated 2000"
expect_eq 4 "$(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')" "coupon.email rows waiting"
sql "$DB" -e "UPDATE outbox SET published_at = NOW(6) ORDER BY id DESC LIMIT 1;
              UPDATE outbox SET created_at = '2000-01-01 00:00:00' ORDER BY id LIMIT 1"

note "a message held unacked on orderq.invoice.created, and a delay queue deleted"
"$PY" - "$VHOST" "$WORK/held" <<'PY' &
import sys, time, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    ch.basic_consume("orderq.invoice.created", lambda *a: open(sys.argv[2], "w").close())
    conn.process_data_events(time_limit=5)
    time.sleep(600)
PY
CLEANUP+=("kill $!")
wait_for 10 test -e "$WORK/held" || fail "the holder got no message"
mgmt DELETE "/api/queues/$v/orderq.delay.1h" >/dev/null

cat >"$WORK/expect.py" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
queues = {q["name"]: q for q in d["queues"]}
nonzero = {"orderq.order.processing": (0, 0, 1), "orderq.probe": (0, 0, 1), "orderq.dead": (0, 0, 1),
           "orderq.invoice.created": (1, 1, 1)}
for name, q in queues.items():
    if name == "orderq.delay.1h":
        assert not q["exists"] and q["ready"] is None and q["kind"] == "delay", q
        continue
    want = nonzero.get(name, (0, 0, 0))
    got = (q["ready"], q["unacked"], q["consumers"])
    assert q["exists"] and got == want, f"{name}: {got}, expected {want}"
kinds = {n: q["kind"] for n, q in queues.items()}
assert kinds["orderq.order.processing"] == "work" and kinds["orderq.delay.1s"] == "delay", kinds
assert kinds["orderq.dead"] == "dead" and kinds["orderq.dead.held"] == "dead", kinds
assert len(queues) == 13, sorted(queues)  # 5 work queues, 6 delay tiers, dead, held
PY
status_matches() { oq status --json >"$WORK/status.json" && "$PY" "$WORK/expect.py" "$WORK/status.json"; }

note "status --json: every queue as the management API has it (its figures lag: wait for them)"
wait_for 30 status_matches || { "$PY" "$WORK/expect.py" "$WORK/status.json" || true; fail "queues never matched"; }
# the outbox's oldest age as the server has it now, before status reads it
age_before=$(sql "$DB" -e "SELECT TIMESTAMPDIFF(SECOND, '2000-01-01', NOW(6))")
try oq status --json
expect_eq 0 "$rc" "exit code with both sources read"
printf '%s\n' "$out" >"$WORK/status.json"
"$PY" - "$WORK/status.json" "$(sql "$DB" -e "SELECT DATE_FORMAT(MAX(dead_at), '%Y-%m-%dT%H:%i:%sZ') FROM dead_letter WHERE error_class = 'bad_input' AND replayed_at IS NULL")" \
    "$age_before" <<'PY' || fail "status --json: $out"
import json, sys
d = json.load(open(sys.argv[1]))
newest, age_before = sys.argv[2], int(sys.argv[3])
assert d["ok"] is True and d["errors"] == [], d["errors"]
assert list(d) == ["at", "vhost", "ok", "errors", "queues", "ledger", "dead_letters", "outbox"], list(d)
L = d["ledger"]
rows = {h["handler"]: h for h in L["by_handler"]}
assert rows["coupon_rules"] == {"handler": "coupon_rules", "done": 4, "sending": 0, "sent": 0, "unknown": 0, "failed": 0, "total": 4}, rows
assert rows["coupon_mail"] == {"handler": "coupon_mail", "done": 0, "sending": 2, "sent": 1, "unknown": 1, "failed": 0, "total": 4}, rows
assert rows["webhook"]["done"] == 1234 and rows["webhook"]["total"] == 1234, rows
assert sorted(rows) == ["coupon_mail", "coupon_rules", "webhook"], rows
assert (L["sending"], L["sending_expired"], L["unknown"]) == (2, 1, 1), L
D = d["dead_letters"]
assert D["total"] == 3, D
assert D["by_class"] == [{"error_class": "bad_input", "count": 2}, {"error_class": "unknown_event", "count": 1}], D
top = D["top_fingerprints"]
assert len(top) == 2, top
assert top[0] == {"fingerprint": "bad_input: event_data is missing", "error_class": "bad_input", "count": 2,
                  "newest": newest, "queues": ["orderq.order.processing"]}, top[0]
assert top[1]["error_class"] == "unknown_event" and top[1]["count"] == 1, top[1]
O = d["outbox"]
assert O["backlog"] == 3, O
assert age_before <= O["oldest_age_seconds"] <= age_before + 60, (O, age_before)
PY

note "the human screen shows the same figures"
try oq status
expect_eq 0 "$rc" "exit code of the screen"
printf '%s\n' "$out" >"$WORK/status.txt"
screen=$out
has_line() { grep -Eq -- "$1" <<<"$screen" || fail "no line matching [$1] in:
$screen"; }
has_line '^  orderq\.invoice\.created +1 +1 +1$'
has_line '^  orderq\.order\.processing +0 +0 +1$'
has_line '^  orderq\.coupon\.email +0 +0 +0$'
has_line '^  orderq\.delay\.1h +missing$'
has_line '^  coupon_mail +0 +2 +1 +1 +0$'
has_line '^  coupon_rules +4 +0 +0 +0 +0$'
has_line '^  webhook +1,234 +0 +0 +0 +0$'
has_line '^  sending 2 \(lease expired: 1\), unknown 1$'
has_line '^DEAD LETTERS \(not replayed\): 3$'
has_line '^  bad_input +2$'
has_line '^  unknown_event +1$'
has_line '^ +2  [0-9-]+ [0-9:]+ +orderq\.order\.processing$'
has_line '^ +bad_input: event_data is missing$'
has_line '^OUTBOX: 3 unpublished, the oldest [0-9]+d [0-9]{2}h old$'
width=$(awk '{ if (length($0) > w) w = length($0) } END { print w }' <<<"$screen")
[ "$width" -le 80 ] || fail "the screen is $width columns wide"

note "the management API unreachable: the database half still shown, the source named, exit 69"
closed=$(free_port)
try env ORDERQ_AMQP_MGMT_URL="http://guest:mgmt-secret@127.0.0.1:$closed/" "$ORDERQ_BIN" status
expect_eq 69 "$rc" "exit code without the management API"
expect_contains "unavailable: RabbitMQ management API at http://127.0.0.1:$closed/" "$out" "the failing source"
expect_contains "amqp_mgmt_url" "$out" "the setting to look at"
grep -Eq '^  coupon_rules +4 +0 +0 +0 +0$' <<<"$out" || fail "the ledger is not shown: $out"
grep -q '^OUTBOX: 3 unpublished' <<<"$out" || fail "the outbox is not shown: $out"
printf '%s\n' "$out" >"$WORK/partial.txt"
try env ORDERQ_AMQP_MGMT_URL="http://guest:mgmt-secret@127.0.0.1:$closed/" "$ORDERQ_BIN" status --json
expect_eq 69 "$rc" "exit code of --json without the management API"
"$ORDERQ_BIN" status --json --amqp-mgmt-url "http://127.0.0.1:$closed/" 2>/dev/null >"$WORK/partial.json" || true
"$PY" - "$WORK/partial.json" <<'PY' || fail "partial JSON: $(cat "$WORK/partial.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] is False and d["queues"] is None, d
assert [e["source"] for e in d["errors"]] == ["rabbitmq"] and "amqp_mgmt_url" in d["errors"][0]["message"], d["errors"]
assert d["ledger"]["sending"] == 2 and d["outbox"]["backlog"] == 3 and d["dead_letters"]["total"] == 3, d
PY

note "the management API refuses the password: exit 69, the reason named, the password not shown"
try env ORDERQ_AMQP_MGMT_URL="http://$AMQP_USER:wrong-secret@127.0.0.1:${MGMT##*:}/" "$ORDERQ_BIN" status
expect_eq 69 "$rc" "exit code with a wrong management password"
expect_contains "HTTP 401 (user or password wrong for the management API: those of amqp_mgmt_url" "$out" "the reason"
printf '%s\n' "$out" >"$WORK/refused.txt"

note "the database unreachable: the queues still shown, exit 69"
try env ORDERQ_MYSQL_URL="mysql://$MYSQL_USER:$TEST_PASSWORD@localhost/$DB?socket=$WORK/no-such.sock" "$ORDERQ_BIN" status
expect_eq 69 "$rc" "exit code without the database"
expect_contains "unavailable: cannot connect to MySQL" "$out" "the failing source"
expect_contains "(mysql_url)" "$out" "the setting to look at"
grep -Eq '^  orderq\.invoice\.created +1 +1 +1$' <<<"$out" || fail "the queues are not shown: $out"
printf '%s\n' "$out" >"$WORK/no-db.txt"

note "no secret in any output"
for f in "$WORK"/status.json "$WORK"/status.txt "$WORK"/partial.txt "$WORK"/partial.json "$WORK"/refused.txt "$WORK"/no-db.txt; do
    ! grep -qF -e "$TEST_PASSWORD" -e mgmt-secret -e wrong-secret "$f" || fail "a secret is printed in $(basename "$f")"
done
