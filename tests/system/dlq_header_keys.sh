#!/usr/bin/env bash
# dlq_header_keys.sh - header keys that are not UTF-8 (RabbitMQ takes them)
# through the archiver and back: two letters that differ only in such a
# header's value are two rows, each with orderq's headers beside the key and
# its value; a replay sends the key's exact bytes again
source "$(dirname "$0")/lib.sh"
setup_consumer_test
start_consumer keys

note "two bad bodies, equal but for the value under a key that is not UTF-8"
"$PY" - "$VHOST" <<'PY'
import os, sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials(os.environ["OQ_TEST_SHOP_USER"], os.environ["OQ_TEST_PASSWORD"]))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    for n, value in enumerate(["one", "two"]):
        # pika sends bytes keys as they are; the shop's trace-id after them
        headers = {b"\xff\xfekey": value, "nested": {b"\x80in": n}, "trace-id": "t-1"}
        ch.basic_publish("shop.events", "order.processing", b"not JSON",
                         pika.BasicProperties(delivery_mode=2, headers=headers), mandatory=True)
PY

count() { sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter'; }
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 2 ]" ||
    fail "dead letters: $(count) of 2 archived, $(queue_ready orderq.dead) left in orderq.dead: $(sql "$DB" -e 'SELECT id, letter_key, headers FROM dead_letter')"
expect_eq 0 "$(queue_ready orderq.dead)" "left in orderq.dead"

note "each row: valid JSON headers, the key hex-encoded with its value, orderq's headers beside it"
"$PY" - "$SOCK" "$DB" >"$WORK/ids" <<'PY' || fail "stored headers: $(sql "$DB" -e 'SELECT id, headers FROM dead_letter')"
import json, sys, pymysql
db = pymysql.connect(unix_socket=sys.argv[1], user="root", database=sys.argv[2])
with db.cursor() as c:
    c.execute("SELECT id, headers, error_class, JSON_VALID(headers) FROM dead_letter ORDER BY id")
    rows = c.fetchall()
seen = {}
for i, headers, cls, valid in rows:
    assert valid == 1 and cls == "bad_input", (i, cls, headers)
    h = json.loads(headers)
    assert h["x-orderq-error-class"] == "bad_input" and h["x-orderq-queue"] == "orderq.order.processing", h
    assert h["x-orderq-attempt"] == 1 and "x-orderq-last-error" in h and h["trace-id"] == "t-1", h
    value = h["@hex:fffe6b6579"]
    assert h["nested"] == {"@hex:80696e": ["one", "two"].index(value)}, h
    seen[value] = i
assert sorted(seen) == ["one", "two"], seen
print(seen["one"])
PY
id=$(cat "$WORK/ids")
expect_contains '"@hex:fffe6b6579": "one"' "$(oq dlq show "$id")" "show names the key"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not stop cleanly"

note "replay: the key goes out as the bytes it came with"
mgmt PUT "/api/queues/$(urlenc "$VHOST")/dlq.check" '{"durable": false}' >/dev/null
expect_eq "replayed 1 of 1 dead letters, failed 0, skipped 0" \
    "$(oq dlq replay --id "$id" --to-queue dlq.check --as keys)" "replay summary"
wait_for 10 ready_is dlq.check 1 || fail "the replayed letter is not in dlq.check"
"$PY" - "$VHOST" "$id" <<'PY' || fail "the replayed letter's headers"
import sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    method, props, body = conn.channel().basic_get("dlq.check", auto_ack=True)
h = props.headers
# pika hands a key that is not UTF-8 over as bytes, any other as str
assert h.get(b"\xff\xfekey") == "one", h
assert h["nested"] == {b"\x80in": 0}, h
assert h["trace-id"] == "t-1" and h["x-orderq-replay-of"] == int(sys.argv[2]), h
assert sorted(k for k in h if isinstance(k, bytes)) == [b"\xff\xfekey"], h
assert not [k for k in h if isinstance(k, str) and k.startswith(("x-orderq-error", "x-orderq-attempt", "@hex:"))], h
assert body == b"not JSON" and props.delivery_mode == 2, (body, props)
PY
