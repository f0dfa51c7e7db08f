#!/usr/bin/env bash
# mail_hostile.sh - customer text that once crashed every consumer (issue 10):
# a coupon.email whose customer.name is "é" x 111 and one whose coupon_code
# is 48 bytes of €, é, 😀 and ASCII (it reaches the encoder through the
# subject) are each mailed once, their names and subjects intact; a name
# over the cap, a subject over the cap and a CR/LF in a coupon code are dead
# letters with a reason a person can read, before any lease is taken; the
# consumer lives through all of it and nothing is left in the queues
source "$(dirname "$0")/lib.sh"
need_maildev
setup_consumer_test
export ORDERQ_SMTP_URL=smtp://127.0.0.1:1025 ORDERQ_SMTP_TLS=off ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>'
CONSUME_QUEUES="" # every queue: the mail handlers too
run="$$$RANDOM"

"$PY" - "$run" "$WORK/cases.json" >"$WORK/events.jsonl" <<'PY'
import json, sys
run, cases_file = sys.argv[1], sys.argv[2]
suffix = f"{int(run) % 1000000:06d}"
# 48 bytes: 3 x "€é😀A" (30), "😀€é-" (10), 6 digits and "xy"; in the
# subject the second 😀 starts at byte 42, where the old encoder's first
# word had to end short
mixed = "€é😀A" * 3 + "😀€é-" + suffix + "xy"
assert len(mixed.encode()) == 48, len(mixed.encode())
def coupon(ident, code, email, name):
    customer = {"email": email, "name": name}
    return {"event_code": "coupon.email", "event_identifier": f"{run}_{ident}",
            "event_data": {"order_id": run, "coupon_code": code, "discount_type": "fixed",
                           "discount": "10.00", "currency": "USD",
                           "expires_at": "2027-01-31T00:00:00Z", "customer": customer}}
def invoice(ident, increment_id, email):
    return {"event_code": "invoice.created", "event_identifier": f"{run}_{ident}",
            "event_data": {"invoice_id": f"7{run}", "increment_id": increment_id, "order_id": run,
                           "currency": "USD", "customer": {"email": email, "name": "Ed"},
                           "items": [{"sku": "MUG-1", "name": "Mug", "qty": 1, "price": "30.00"}],
                           "totals": {"subtotal": "30.00", "tax": "0.00", "shipping": "0.00",
                                      "grand_total": "30.00"}}}
mailed = [  # (event, the address, the name and subject MailDev must show)
    (coupon("e111", f"E111-{suffix}", f"e111.{run}@mail-hostile.example", "é" * 111),
     f"e111.{run}@mail-hostile.example", "é" * 111, f"Your coupon E111-{suffix}: $10.00 off your next order"),
    (coupon("mixed", mixed, f"mixed.{run}@mail-hostile.example", "Zoë"),
     f"mixed.{run}@mail-hostile.example", "Zoë", f"Your coupon {mixed}: $10.00 off your next order"),
    (coupon("n255", f"N255-{suffix}", f"n255.{run}@mail-hostile.example", "é" * 127 + "a"),
     f"n255.{run}@mail-hostile.example", "é" * 127 + "a", f"Your coupon N255-{suffix}: $10.00 off your next order"),
]
dead = [  # (event, the words its dead letter's reason must hold)
    (coupon("n256", f"N256-{suffix}", f"n256.{run}@mail-hostile.example", "😀" * 64),
     "event_data.customer.name is 256 bytes; at most 255"),
    (invoice("subject", "INV-" + "€" * 150, f"inv.{run}@mail-hostile.example"),
     f"the subject would be {len(('Invoice INV-' + '€' * 150 + ' for your order ' + run).encode())} bytes; at most 400"),
    (coupon("lf", f"LF-{suffix}\r\nBcc: all@example.com", f"lf.{run}@mail-hostile.example", "Lf"),
     "event_data.coupon_code: a header value holds a CR (byte 9)"),
]
for ev, *_ in mailed + dead:
    print(json.dumps(ev))
json.dump({"mailed": [[ev["event_identifier"], addr, name, subject] for ev, addr, name, subject in mailed],
           "dead": [[ev["event_identifier"], reason] for ev, reason in dead]},
          open(cases_file, "w"))
PY
n_mailed=$(json 'len(d["mailed"])' <"$WORK/cases.json")
n_dead=$(json 'len(d["dead"])' <"$WORK/cases.json")

start_consumer hostile --heartbeat-s 1
oq publish "$WORK/events.jsonl" >/dev/null || fail "publish the events"
note "published $n_mailed events to mail and $n_dead to dead-letter"

alive() {
    kill -0 "$consumer_pid" 2>/dev/null ||
        fail "the consumer died: $(grep -A12 -m1 'ERROR: AddressSanitizer' "$WORK/hostile.log" || tail -20 "$WORK/hostile.log")"
}
mailed_all() {
    json '"\n".join(m[1] for m in d["mailed"])' <"$WORK/cases.json" | while read -r addr; do
        mail_count_is "$addr" 1 || return 1
    done
}
dead_is() { [ "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" = "$1" ]; }
wait_for 60 mailed_all || { alive; fail "not every mail arrived: $(tail -5 "$WORK/hostile.log")"; }
wait_for 30 dead_is "$n_dead" || { alive; fail "dead letters: $(sql "$DB" -e 'SELECT event_identifier, error FROM dead_letter')"; }
wait_for 20 ready_is orderq.coupon.email 0 || fail "left in orderq.coupon.email: $(queue_ready orderq.coupon.email)"
wait_for 20 ready_is orderq.invoice.created 0 || fail "left in orderq.invoice.created: $(queue_ready orderq.invoice.created)"
sleep 2 # a second mail, or a crash on a redelivery, would have had time to come
alive

note "each acceptable mail arrived once, its name and subject decoded intact"
curl -sf "$MAILDEV/email" >"$WORK/maildev.json"
"$PY" - "$WORK/cases.json" "$WORK/maildev.json" <<'PY' || fail "the mails"
import json, sys
cases = json.load(open(sys.argv[1]))
mails = json.load(open(sys.argv[2]))
for ident, addr, name, subject in cases["mailed"]:
    got = [m for m in mails if any(t["address"] == addr for t in m["to"])]
    assert len(got) == 1, (addr, len(got))
    m = got[0]
    assert m["subject"] == subject, (ident, m["subject"], subject)
    assert m["to"] == [{"address": addr, "name": name}], (ident, m["to"])
    assert m["headers"]["x-orderq-event"] == ident, (ident, m["headers"].get("x-orderq-event"))
    print(f"  {ident}: to {name[:20]}... <{addr}>, subject {m['subject'][:50]}")
PY
note "on the wire: folded encoded-words, no line holding one longer than 76 characters"
for id in $(json '" ".join(m["id"] for m in d if m["to"][0]["address"].endswith("'"$run"'@mail-hostile.example"))' <"$WORK/maildev.json"); do
    curl -sf "$MAILDEV/email/$id/source" | "$PY" -c '
import sys
head = sys.stdin.buffer.read().split(b"\r\n\r\n", 1)[0].decode()
words = 0
for line in head.split("\r\n"):
    if "=?" in line:
        words += line.count("=?UTF-8?B?")
        assert len(line) <= 76, (len(line), line)
        if line.startswith(" "):
            assert line.lstrip().startswith("=?UTF-8?B?"), line
assert words > 1, head
' || fail "the header of mail $id"
done
expect_eq "$n_mailed" "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_mail' AND state = 'sent'")" "sent ledger rows"
expect_eq 0 "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE state <> 'sent'")" "ledger rows left sending or unknown"

note "the rest are dead letters of class permanent, with a reason a person can read"
sql -r "$DB" -e "SELECT JSON_OBJECT('id', event_identifier, 'class', error_class, 'error', error) FROM dead_letter" >"$WORK/dead.jsonl"
"$PY" - "$WORK/cases.json" "$WORK/dead.jsonl" <<'PY' || fail "dead letters"
import json, sys
cases = json.load(open(sys.argv[1]))
rows = {r["id"]: r for r in map(json.loads, open(sys.argv[2]))}
bad = []
for ident, reason in cases["dead"]:
    r = rows.get(ident)
    if r is None:
        bad.append(f"{ident}: no dead letter"); continue
    print(f"  {ident}: {r['class']}: {r['error'][:110]}")
    if r["class"] != "permanent" or reason not in r["error"]:
        bad.append(f"{ident}: expected permanent / {reason!r}, got {r['class']} / {r['error']!r}")
assert not bad, "\n".join(bad)
PY
expect_eq 0 "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = 'invoice_mail' OR effect_key LIKE 'coupon:N256-%' OR effect_key LIKE 'coupon:LF-%'")" \
    "ledger rows (leases) for the dead letters"

kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
