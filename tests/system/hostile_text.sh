#!/usr/bin/env bash
# hostile_text.sh - strings that are not strict UTF-8 (overlong forms,
# surrogates, bytes above F4) anywhere in an event, keys too, are
# dead-lettered as bad_input with a reason that says where; none reaches
# the ledger (MariaDB would store them as '?' and carry on), and the good
# events beside them, non-ASCII text among them, take effect.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
start_consumer hostile

# Each case: its name (in correlation_id), the body, and the words its
# reason must contain. yajl takes all of these bytes as UTF-8.
"$PY" - "$VHOST" "$WORK/cases.json" <<'PY'
import os, json, sys, pika
OVERLONG, SURROGATE, ABOVE = b"\xc0\x80", b"\xed\xa0\x80", b"\xf5\x80\x80\x80"
def order(n, ident=None, name=b"Ann", sku=b"MUG-1", note=b"", extra_key=b""):
    ident = ident if ident is not None else f"{n}_processing".encode()
    return (b'{"event_code":"order.processing","event_identifier":"' + ident +
            b'","event_data":{"order_id":"' + str(n).encode() +
            b'","order_status":"processing","currency":"USD","customer":{"email":"c' + str(n).encode() +
            b'@example.com","name":"' + name + b'"},' +
            (b'"note":"' + note + b'",' if note else b"") +
            (b'"' + extra_key + b'":1,' if extra_key else b"") +
            b'"items":[{"sku":"' + sku + b'","qty":3,"price":"25.00","original_price":"25.00"}]}}')
cases = [
    ("id_overlong", order(9500000001, ident=b"bad" + OVERLONG + b"id"), "event_identifier is not valid UTF-8"),
    ("id_surrogate", order(9500000002, ident=b"sur" + SURROGATE + b"id"), "event_identifier is not valid UTF-8"),
    ("id_above_f4", order(9500000003, ident=b"big" + ABOVE + b"id"), "event_identifier is not valid UTF-8"),
    ("code_overlong", order(9500000004).replace(b"order.processing", b"order.processing" + OVERLONG), "event_code is not valid UTF-8"),
    ("name_overlong", order(9500000005, name=b"Ann" + OVERLONG), "event_data.customer.name is not valid UTF-8"),
    ("sku_surrogate", order(9500000006, sku=b"MUG-1" + SURROGATE), "event_data.items[0].sku is not valid UTF-8"),
    ("sku_above_f4", order(9500000007, sku=ABOVE + b"MUG-1"), "event_data.items[0].sku is not valid UTF-8"),
    ("note_overlong", order(9500000008, note=b"x" + OVERLONG), "event_data.note is not valid UTF-8"),
    ("key_overlong", order(9500000009, extra_key=b"k" + OVERLONG), "a key in event_data is not valid UTF-8"),
    ("key_top", order(9500000010).replace(b'"event_code"', b'"x' + SURROGATE + b'":0,"event_code"'), "a key in the body is not valid UTF-8"),
]
good = [order(9500000100 + n, name="Zoë 中文 😀".encode()) for n in range(3)]
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials(os.environ["OQ_TEST_SHOP_USER"], os.environ["OQ_TEST_PASSWORD"]))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    for n, body in enumerate(good):
        ch.basic_publish("shop.events", "order.processing", body,
                         pika.BasicProperties(delivery_mode=2, correlation_id=f"good{n}"), mandatory=True)
    for name, body, _ in cases:
        ch.basic_publish("shop.events", "order.processing", body,
                         pika.BasicProperties(delivery_mode=2, correlation_id=name), mandatory=True)
json.dump([[n, r, len(b)] for n, b, r in cases], open(sys.argv[2], "w"))
PY
n_bad=$(json 'len(d)' <"$WORK/cases.json")

note "$n_bad hostile bodies and 3 good ones published; waiting for 3 effects and $n_bad dead letters"
wait_ledger 3 60 || fail "the good events took no effect: $(tail -3 "$WORK/hostile.log")"
wait_for 60 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" -ge $n_bad ]" \
    || fail "dead letters: $(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter') of $n_bad; ledger: $(sql "$DB" -e 'SELECT GROUP_CONCAT(effect_key) FROM event_ledger')"
kill -0 "$consumer_pid" || fail "the consumer died: $(tail -5 "$WORK/hostile.log")"

note "each is bad_input, its reason names the place; the body is kept byte for byte"
sql -r "$DB" -e "SELECT JSON_OBJECT('case', JSON_VALUE(properties, '$.correlation_id'), 'class', error_class,
    'error', error, 'len', LENGTH(body)) FROM dead_letter" >"$WORK/rows.jsonl"
"$PY" - "$WORK/cases.json" "$WORK/rows.jsonl" <<'PY' || fail "reasons"
import json, sys
cases = json.load(open(sys.argv[1]))
rows = {r["case"]: r for r in map(json.loads, open(sys.argv[2]))}
bad = []
for name, reason, size in cases:
    r = rows.get(name)
    if r is None:
        bad.append(f"{name}: no dead letter"); continue
    print(f"  {name:14} {r['class']:10} {r['error'][:110]}")
    if r["class"] != "bad_input" or reason not in r["error"]:
        bad.append(f"{name}: expected bad_input / {reason!r}, got {r['class']} / {r['error']!r}")
    if "?" in r["error"]:
        bad.append(f"{name}: the reason holds a '?' (bytes MariaDB could not store): {r['error']!r}")
    if r["len"] != size:
        bad.append(f"{name}: body {r['len']} bytes, sent {size}")
extra = set(rows) - {n for n, _, _ in cases}
if extra:
    bad.append(f"dead letters nobody sent bad: {sorted(extra)}")
assert not bad, "\n".join(bad)
PY

note "the ledger holds the three good events only, none of the hostile ones"
expect_eq 3 "$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')" "ledger rows"
expect_eq 0 "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE event_identifier NOT LIKE '95000001%'")" \
    "ledger rows of hostile events"
expect_eq 3 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons of the good events"
expect_eq 0 "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon WHERE order_id NOT LIKE '95000001%'")" \
    "coupons of hostile events"
expect_eq "Zoë 中文 😀" "$(sql --default-character-set=utf8mb4 "$DB" -e "SELECT DISTINCT JSON_VALUE(CONVERT(body USING utf8mb4), '$.event_data.customer.name') FROM outbox WHERE event_code = 'coupon.email'")" \
    "the good events' customer name in their coupon.email, as sent"
expect_queue_empty
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not stop cleanly"
