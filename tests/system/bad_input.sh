#!/usr/bin/env bash
# bad_input.sh - every kind of bad body ends in dead_letter with a reason
# that says what was wrong, byte for byte; the consumer keeps running; the
# good events around them take effect: messages in = effects + dead letters
source "$(dirname "$0")/lib.sh"
setup_consumer_test
start_consumer bad

# Each case: its name goes in correlation_id (a missing event_identifier
# must not be filled from message_id, so none is set), the body, and the
# words its reason must contain.
"$PY" - "$VHOST" "$WORK/cases.json" <<'PY'
import os, json, sys, pika
def env(ident='x', code='order.processing', data=None, **extra):
    d = {"event_code": code, "event_identifier": ident, "event_data": data if data is not None else {"order_id": "1"}}
    d.update(extra)
    return json.dumps(d).encode()
good = lambda n: json.dumps({"event_code": "order.processing", "event_identifier": f"{n}_processing",
    "event_data": {"order_id": str(n), "order_status": "processing", "currency": "USD",
                   "items": [{"sku": "MUG-1", "qty": 3, "price": "25.00", "original_price": "25.00"}]}}).encode()
cases = [
    ("not_json", b"hello, this is not JSON", "bad_input", "the body is not valid JSON"),
    ("truncated", env("t1")[:-9], "bad_input", "inside a value (truncated?)"),
    ("array", b'[{"event_code": "order.processing"}]', "bad_input", "the body is JSON but not an object"),
    ("empty_body", b"", "bad_input", "the body is empty"),
    ("missing_id", json.dumps({"event_code": "order.processing", "event_data": {}}).encode(), "bad_input", "event_identifier is missing"),
    ("empty_id", env(""), "bad_input", "event_identifier is empty"),
    ("long_id", env("a" * 192), "bad_input", "event_identifier is 192 bytes; at most 191"),
    ("invalid_utf8", b'{"event_code":"order.processing","event_identifier":"bad\xff\xfeid","event_data":{}}', "bad_input", "invalid bytes in UTF8 string at byte 57"),
    ("nul_escaped", b'{"event_code":"order.processing","event_identifier":"n\\u0000ul","event_data":{}}', "bad_input", "NUL"),
    ("nul_raw", b'{"event_code":"order.processing","event_identifier":"n\x00ul","event_data":{}}', "bad_input", "not valid JSON"),
    ("unknown_code", env("u1", code="order.teleported"), "unknown_event", 'no handler for event code "order.teleported"'),
    ("id_number", b'{"event_code":"order.processing","event_identifier":12345,"event_data":{}}', "bad_input", "event_identifier must be a string"),
    ("data_string", env("d1", data="not an object"), "bad_input", "event_data"),
    ("code_missing", b'{"event_identifier":"c1","event_data":{}}', "bad_input", "event_code is missing"),
    ("items_wrong", env("w1", data={"order_id": "7", "order_status": "processing", "currency": "USD", "items": "MUG-1"}), "permanent", "items"),
    ("big_5mib", env("big1", data={"order_id": "8", "order_status": "processing", "currency": "USD", "note": "x" * (5 << 20)}), "too_large", "over max_message_bytes 1048576"),
    ("deep_10000", b'{"event_code":"order.processing","event_identifier":"deep1","event_data":' + b"[" * 10000 + b"]" * 10000 + b"}", "bad_input", "nests deeper than 64 levels"),
]
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials(os.environ["OQ_TEST_SHOP_USER"], os.environ["OQ_TEST_PASSWORD"]))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    for n in range(3):
        ch.basic_publish("shop.events", "order.processing", good(9400000000 + n),
                         pika.BasicProperties(delivery_mode=2, correlation_id=f"good{n}"), mandatory=True)
    for name, body, _, _ in cases:
        ch.basic_publish("shop.events", "order.processing", body,
                         pika.BasicProperties(delivery_mode=2, correlation_id=name), mandatory=True)
json.dump([[n, c, r, len(b)] for n, b, c, r in cases], open(sys.argv[2], "w"))
PY
n_bad=$(json 'len(d)' <"$WORK/cases.json")

note "$n_bad bad bodies and 3 good ones published; waiting for 3 effects and $n_bad dead letters"
wait_for 60 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = $n_bad ]" \
    || fail "dead letters: $(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter') of $n_bad: $(tail -3 "$WORK/bad.log")"
wait_ledger 3 30 || fail "the good events took no effect"
kill -0 "$consumer_pid" || fail "the consumer died: $(tail -5 "$WORK/bad.log")"

note "each reason says what was wrong; each body is kept byte for byte"
sql -r "$DB" -e "SELECT JSON_OBJECT('case', JSON_VALUE(properties, '$.correlation_id'), 'class', error_class,
    'error', error, 'size', body_size, 'len', LENGTH(body), 'queue', queue) FROM dead_letter" >"$WORK/rows.jsonl"
"$PY" - "$WORK/cases.json" "$WORK/rows.jsonl" <<'PY' || fail "reasons"
import json, sys
cases = json.load(open(sys.argv[1]))
rows = {r["case"]: r for r in map(json.loads, open(sys.argv[2]))}
bad = []
for name, cls, reason, size in cases:
    r = rows.get(name)
    if r is None:
        bad.append(f"{name}: no dead letter"); continue
    print(f"  {name:13} {r['class']:13} {r['error'][:90]}")
    if r["class"] != cls or reason not in r["error"]:
        bad.append(f"{name}: expected {cls} / {reason!r}, got {r['class']} / {r['error']!r}")
    if r["size"] != size or r["len"] != size:
        bad.append(f"{name}: body {r['len']} bytes (size {r['size']}), sent {size}")
    if r["queue"] != "orderq.order.processing":
        bad.append(f"{name}: queue {r['queue']}")
assert not bad, "\n".join(bad)
PY
expect_eq 3 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons of the good events"
expect_eq "$((3 + n_bad))" "$(( $(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger') + $(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter') ))" \
    "messages in = effects + dead letters"
expect_queue_empty
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead: $(queue_ready orderq.dead)"

note "a dead letter over 16 MiB is too big for a row: its row says so, the letter moves whole to orderq.dead.held"
"$PY" - "$VHOST" <<'PY'
import os, sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials(os.environ["OQ_TEST_SHOP_USER"], os.environ["OQ_TEST_PASSWORD"]))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("shop.events", "order.processing", b"y" * ((16 << 20) + 1),
                     pika.BasicProperties(delivery_mode=2, correlation_id="huge"), mandatory=True)
PY
wait_for 60 grep -q "a dead letter's body of 16777217 bytes is too big for a row" "$WORK/bad.log" \
    || fail "the huge letter was not reported: $(tail -3 "$WORK/bad.log")"
wait_for 20 ready_is orderq.dead.held 1 || fail "the huge letter is not in orderq.dead.held: $(queue_ready orderq.dead.held)"
expect_eq "too_large	0	16777217" \
    "$(sql "$DB" -e "SELECT error_class, LENGTH(body), body_size FROM dead_letter WHERE body_size > 16777216")" \
    "the huge letter's row: no body, its size"
expect_eq "$((n_bad + 1))" "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters (the huge one's row among them)"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not stop cleanly"
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead: $(queue_ready orderq.dead)"
