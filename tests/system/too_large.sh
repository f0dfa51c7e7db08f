#!/usr/bin/env bash
# too_large.sh - bodies over max_message_bytes (1 MiB by default) become
# dead letters of class too_large, with the body kept byte for byte and a
# reason naming the size and the setting, before any JSON tree is built; the
# events around them commit, and the consumer's peak RSS (VmHWM) stays under
# a bound at prefetch 500, with one 20 MiB body and then six in flight at once.
# A 20 MiB letter is more than a dead_letter row holds (16 MiB): its row says
# so, without the body, and the letter waits whole in orderq.dead.held.
#
# The bound: orderq never parses such a body, but holds it as librabbitmq
# read it (frames into the channel's pool, then one buffer of body_size)
# until its dead letter is confirmed, and the dead-letter archiver (a thread
# of the same process) reads each letter once more, finds it too big for a
# row and publishes it to orderq.dead.held.
# Measured here (Debian 12, librabbitmq 0.11), peak RSS after one / seven
# 20 MiB bodies: 77 / 94 MB plain, 112 / 138 MB under ASan (113 / 152 MB since
# the archiver moves them to orderq.dead.held; its quarantine
# capped at 16 MB below). The old code parsed the 20 MiB event into a tree:
# under ASan it was still at it after 90 s, at 384 MB and growing. The bound
# is 250 MB; ORDERQ_TEST_RSS_MB overrides it.
source "$(dirname "$0")/lib.sh"
RSS_BOUND_MB=${ORDERQ_TEST_RSS_MB:-250}
setup_consumer_test
# ASan keeps freed blocks in a 256 MB quarantine, which would count as RSS here.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16" start_consumer big --prefetch 500
wait_for 30 consuming orderq.order.processing || fail "the consumer did not start: $(tail -3 "$WORK/big.log")"

# publish.py FILE...: each file's lines are bodies, or "big:N:NAME" for an
# envelope of N bytes (a valid event: only its size is wrong) named NAME in
# correlation_id; all published at once, with confirms.
cat >"$WORK/big.py" <<'PY'
import json
def big(n, name):
    """A valid event of n bytes, most of them small values: as a tree, tens of times its size."""
    head = json.dumps({"event_code": "order.processing", "event_identifier": name + "_processing",
                       "event_data": {"order_id": "1", "order_status": "processing", "currency": "USD",
                                      "items": [{"sku": "MUG-1", "qty": 3, "price": "25.00"}],
                                      "note": []}})[:-3]
    fill = n - len(head) - 3
    return (head + "1," * ((fill - 1) // 2) + "1" + " " * ((fill - 1) % 2) + "]}}").encode()
PY
cat >"$WORK/publish.py" <<'PY'
import sys, pika
from big import big
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    for path in sys.argv[2:]:
        for line in open(path):
            line = line.rstrip("\n")
            props = pika.BasicProperties(delivery_mode=2)
            if line.startswith("big:"):
                _, n, name = line.split(":")
                body = big(int(n), name)
                assert len(body) == int(n)
                props = pika.BasicProperties(delivery_mode=2, correlation_id=name)
            else:
                body = line.encode()
            ch.basic_publish("shop.events", "order.processing", body, props, mandatory=True)
PY
publish() { PYTHONPATH="$WORK" "$PY" "$WORK/publish.py" "$VHOST" "$@"; }
held() { grep -c "a dead letter's body of 20971520 bytes is too big for a row" "$WORK/big.log" || true; }
hwm_mb() { awk '/^VmHWM/ {print int($2 / 1024)}' "/proc/$consumer_pid/status"; }

note "200 events, a 20 MiB one and a 2 MiB one, 200 more"
gen_events 200 --start 9500000000 >"$WORK/a.jsonl"
gen_events 200 --start 9500000200 >"$WORK/b.jsonl"
printf 'big:%d:twenty\nbig:%d:two\n' $((20 << 20)) $((2 << 20)) >"$WORK/big1"
publish "$WORK/a.jsonl" "$WORK/big1" "$WORK/b.jsonl"
# Settled: each of the 402 committed or archived (the 20 MiB ones without their body).
settled() { [ "$(sql "$DB" -e 'SELECT (SELECT COUNT(*) FROM event_ledger) + (SELECT COUNT(*) FROM dead_letter)')" -ge "$1" ]; }
wait_for 90 settled 402 || fail "settled: $(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger') ledger rows, $(held) held, of 402 (peak RSS $(hwm_mb) MB): $(tail -1 "$WORK/big.log")"
peak=$(hwm_mb)
note "peak RSS (VmHWM) after one 20 MiB body: $peak MB (bound $RSS_BOUND_MB MB)"
[ "$peak" -lt "$RSS_BOUND_MB" ] || fail "peak RSS $peak MB after one 20 MiB body, over $RSS_BOUND_MB MB"
expect_eq 400 "$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')" "ledger rows: the 400 events, not the big ones"
expect_eq 2 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "archived: the 2 MiB letter, and the 20 MiB one's row"
# The row is stored before the letter is moved: its log line comes after.
held_is() { [ "$(held)" = "$1" ]; }
wait_for 30 held_is 1 || fail "the 20 MiB letter moved to orderq.dead.held and reported: $(held)"
expect_eq "too_large|0|20971520" "$(sql "$DB" -e "SELECT CONCAT_WS('|', error_class, LENGTH(body), body_size) FROM dead_letter WHERE JSON_VALUE(properties, '$.correlation_id') = 'twenty'")" \
    "the 20 MiB letter's row: its class, no body, its size"
expect_contains "body of 20971520 bytes kept in queue orderq.dead.held, not here" \
    "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE JSON_VALUE(properties, '$.correlation_id') = 'twenty'")" "the row says where the body is"
expect_eq "too_large|body is 2097152 bytes, over max_message_bytes 1048576|2097152|2097152|two|orderq.order.processing" \
    "$(sql "$DB" -e "SELECT CONCAT_WS('|', error_class, error, body_size, LENGTH(body),
        JSON_VALUE(properties, '$.correlation_id'), queue) FROM dead_letter WHERE LENGTH(body) > 0")" \
    "the 2 MiB dead letter: class, reason, body kept whole"

note "six 20 MiB bodies at once, between 100 events"
gen_events 50 --start 9500000400 >"$WORK/c.jsonl"
gen_events 50 --start 9500000450 >"$WORK/d.jsonl"
for i in 1 2 3 4 5 6; do echo "big:$((20 << 20)):many$i"; done >"$WORK/big6"
publish "$WORK/c.jsonl" "$WORK/big6" "$WORK/d.jsonl"
wait_for 90 settled 508 || fail "settled: $(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger') ledger rows, $(held) held, of 508 (peak RSS $(hwm_mb) MB): $(tail -1 "$WORK/big.log")"
wait_for 30 held_is 7 || fail "20 MiB letters moved to orderq.dead.held and reported: $(held) of 7"
kill -0 "$consumer_pid" || fail "the consumer died: $(tail -5 "$WORK/big.log")"
peak=$(hwm_mb)
note "peak RSS (VmHWM) after seven 20 MiB bodies: $peak MB (bound $RSS_BOUND_MB MB)"
[ "$peak" -lt "$RSS_BOUND_MB" ] || fail "peak RSS $peak MB, over $RSS_BOUND_MB MB"
expect_exactly_once 500 9500000000

note "no tree was built: the reason is the size, not a parse"
grep -q 'not valid JSON\|nests deeper' "$WORK/big.log" && fail "a big body was parsed: $(grep -m1 'not valid JSON' "$WORK/big.log")"

kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not stop cleanly"
consumer_pid=
expect_queue_empty
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead: $(queue_ready orderq.dead)"
note "the seven 20 MiB letters wait in orderq.dead.held, whole, with their reason"
PYTHONPATH="$WORK" "$PY" - "$VHOST" <<'PY' || fail "the letters in orderq.dead"
import sys, pika
from big import big
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    names = []
    while True:
        m, props, body = ch.basic_get("orderq.dead.held")
        if m is None:
            break
        h = props.headers or {}
        assert h.get("x-orderq-error-class") == "too_large", h
        assert h.get("x-orderq-last-error") == "body is 20971520 bytes, over max_message_bytes 1048576", h
        assert body == big(20 << 20, props.correlation_id), (len(body), body[-10:])
        names.append(props.correlation_id)
    print("  in orderq.dead.held:", sorted(names))
    assert sorted(names) == sorted(["twenty"] + [f"many{i}" for i in range(1, 7)]), names
PY
