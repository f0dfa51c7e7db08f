#!/usr/bin/env bash
# dlq.sh - `orderq dlq list|show|stats|replay|purge` against MariaDB and
# RabbitMQ: filters as parameters, bodies byte for byte, a replay takes
# effect once (and a second replay is the ledger's duplicate), an unroutable
# replay is reported and not marked, purge asks or refuses
source "$(dirname "$0")/lib.sh"
setup_consumer_test

# Letters written the way the archiver writes them (it lives in the
# consumer; here they are inserted directly, at known ages).
"$PY" - "$SOCK" "$DB" <<'PY'
import json, sys, pymysql

def envelope(order):
    return json.dumps({"event_code": "order.processing", "event_identifier": f"{order}_processing",
                       "created_at": "2017-02-23T11:06:40Z",
                       "event_data": {"order_id": order, "order_status": "processing", "currency": "USD",
                                      "customer": {"email": "ann@example.com", "name": "Ann"},
                                      "items": [{"sku": "MUG-1", "qty": 3, "price": "25.00",
                                                 "original_price": "25.00"}]}}).encode()

def props(event_id, code="order.processing"):
    return json.dumps({"content_type": "application/json", "delivery_mode": 2, "message_id": event_id,
                       "type": code, "app_id": "shop", "timestamp": 1487847999})

# orderq's own headers (dropped on replay) next to the shop's (kept)
headers = json.dumps({"x-orderq-attempt": 5, "x-orderq-error-class": "transient", "orderq-delay": "30s",
                      "x-death": [{"count": 1, "queue": "orderq.delay.30s", "reason": "expired"}],
                      "x-first-death-queue": "orderq.delay.30s", "x-last-death-reason": "expired",
                      "trace-id": "abc-123", "x-custom-n": 7, "nested": {"a": [1, "b"]}})
letters = [
    # id, minutes ago, queue, exchange, routing key, code, event id, properties, body, class, error, fingerprint
    (1, 60, "orderq.order.processing", "shop.events", "order.processing", "order.processing",
     "9300000001_processing", props("9300000001_processing"), envelope("9300000001"),
     "transient", "shop API down: timeout after 5000 ms", "transient: shop API down: timeout after # ms"),
    (2, 120, "orderq.order.processing", "shop.events", "order.processing", "order.processing",
     "9300000002_processing", props("9300000002_processing"), envelope("9300000002"),
     "transient", "shop API down: timeout after 7000 ms", "transient: shop API down: timeout after # ms"),
    (3, 3 * 1440, "orderq.order.processing", "shop.events", "order.processing", "", "",
     json.dumps({"delivery_mode": 2}), bytes([0, 1, 2, 0xFF, 0xFE, 0x41, 0x0A, 0x80]) * 5,
     "bad_input", "body is not JSON: lexical error at byte 1000 of 1200", "bad_input: body is not JSON: lexical error at byte # of #"),
    (4, 10 * 1440, "orderq.coupon.email", "no.such.exchange", "coupon.email", "coupon.email",
     "9300000004_processing_1_14", props("9300000004_processing_1_14", "coupon.email"),
     "mailbox ann@example.com 100%_full, héllo".encode(),
     "permanent", "SMTP 550 mailbox 100%_full", "permanent: SMTP # mailbox #%_full"),
]
db = pymysql.connect(unix_socket=sys.argv[1], user="root", database=sys.argv[2], autocommit=True)
with db.cursor() as c:
    for (i, ago, queue, ex, rk, code, eid, p, body, cls, err, fp) in letters:
        c.execute("INSERT INTO dead_letter (id, letter_key, queue, exchange_name, routing_key, event_code,"
                  " event_identifier, properties, headers, body, body_size, error_class, error, fingerprint,"
                  " attempts, first_failed_at, last_failed_at, dead_at, dead_host, dead_pid)"
                  " VALUES (%s, SHA2(%s, 256), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 5,"
                  " NOW(6) - INTERVAL %s MINUTE, NOW(6) - INTERVAL %s MINUTE, NOW(6) - INTERVAL %s MINUTE,"
                  " 'worker-1', 4242)",
                  (i, str(i), queue, ex, rk, code, eid, p, headers, body, len(body), cls, err, fp, ago + 5, ago, ago))
PY

ids() { json '",".join(str(x["id"]) for x in d)'; }
replays() { sql "$DB" -e "SELECT CONCAT(replay_count, ' ', replayed_by) FROM dead_letter WHERE id = $1"; }

note "list: newest first, every filter, --json with numbers as numbers"
table=$(oq dlq list)
expect_contains "ERROR_CLASS" "$table" "table header"
expect_contains "9300000001_processing" "$table" "table row"
expect_eq 5 "$(wc -l <<<"$table")" "table lines (header and 4 letters)"
oq dlq list --json >"$WORK/all.json"
expect_eq "1,2,3,4" "$(ids <"$WORK/all.json")" "all letters, newest first"
expect_eq "True" "$(json 'd[0]["attempts"] == 5 and d[0]["replay_count"] == 0 and isinstance(d[0]["body_size"], int)' <"$WORK/all.json")" "numbers in JSON"
expect_eq "4" "$(oq dlq list --json --queue orderq.coupon.email | ids)" "--queue"
expect_eq "2" "$(oq dlq list --json --event-id 9300000002_processing | ids)" "--event-id"
expect_eq "1,2" "$(oq dlq list --json --event-code order.processing | ids)" "--event-code"
expect_eq "4" "$(oq dlq list --json --error-like '100%_' | ids)" "--error-like: % and _ match themselves"
expect_eq "3" "$(oq dlq list --json --error-like 'byte 1000' | ids)" "--error-like"
expect_eq "" "$(oq dlq list --json --error-like "x' OR '1'='1" | ids)" "--error-like is a parameter"
expect_eq "1,2" "$(oq dlq list --json --fingerprint 'transient: shop API down: timeout after # ms' | ids)" "--fingerprint"
expect_eq "1,2" "$(oq dlq list --json --since 1d | ids)" "--since 1d"
expect_eq "1" "$(oq dlq list --json --since 90m | ids)" "--since 90m"
expect_eq "3,4" "$(oq dlq list --json --until 1d | ids)" "--until 1d"
expect_eq "1,2,3" "$(oq dlq list --json --since "$(date -u -d '5 days ago' +%Y-%m-%dT%H:%M:%SZ)" | ids)" "--since ISO time"
expect_eq "4" "$(oq dlq list --json --until "$(date -u -d '5 days ago' +%Y-%m-%d)" | ids)" "--until ISO date"
expect_eq "1" "$(oq dlq list --json --limit 1 | ids)" "--limit"
try oq dlq list --since yesterday
expect_eq 64 "$rc" "bad --since"
expect_contains '--since: expected a date/time' "$out" "bad --since names the option"
try oq dlq list --limit 0
expect_eq 64 "$rc" "bad --limit"

note "show: pretty JSON body, text, hex dump for binary"
out=$(oq dlq show 1)
expect_contains "body: $(sql "$DB" -e 'SELECT body_size FROM dead_letter WHERE id = 1') bytes, JSON" "$out" "show 1 size and kind"
expect_contains '    "event_identifier": "9300000001_processing",' "$out" "pretty-printed body"
expect_contains '"trace-id": "abc-123"' "$out" "headers shown"
expect_contains "shop API down: timeout after 5000 ms" "$out" "error shown"
out=$(oq dlq show 3)
expect_contains "body: 40 bytes, binary" "$out" "binary kind"
expect_contains "00000000  00 01 02 ff fe 41 0a 80  00 01 02 ff fe 41 0a 80" "$out" "hex dump"
expect_contains "mailbox ann@example.com 100%_full, héllo" "$(oq dlq show 4)" "text body"
oq dlq show 1 --json >"$WORK/show.json"
expect_eq "json 9300000001 abc-123 4242" \
    "$(json 'd["body_kind"], json.loads(d["body"])["event_data"]["order_id"], d["headers"]["trace-id"], d["dead_pid"]' <"$WORK/show.json" | tr -d "(),'")" \
    "show --json"
expect_eq "binary 0001" "$(oq dlq show 3 --json | json 'd["body_kind"] + " " + d["body_hex"][:4]')" "show --json binary"
try oq dlq show 99
expect_eq 1 "$rc" "show of a missing letter"

note "stats: by fingerprint, by queue, totals"
oq dlq stats --json >"$WORK/stats.json"
"$PY" - "$WORK/stats.json" <<'PY' || fail "stats --json: $(cat "$WORK/stats.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["total"] == 4 and d["replayed"] == 0, d
fp = {g["fingerprint"]: g for g in d["by_fingerprint"]}
t = fp["transient: shop API down: timeout after # ms"]
assert t["count"] == 2 and t["error_class"] == "transient" and t["queues"] == ["orderq.order.processing"], t
assert d["by_fingerprint"][0] is t, "biggest group first"
assert {q["queue"]: q["count"] for q in d["by_queue"]} == {"orderq.order.processing": 3, "orderq.coupon.email": 1}, d
PY
expect_contains "by fingerprint:" "$(oq dlq stats)" "stats table"
expect_eq 1 "$(oq dlq stats --json --queue orderq.coupon.email | json 'd["total"]')" "stats with a filter"

note "replay --dry-run changes nothing"
try oq dlq replay
expect_eq 64 "$rc" "a bare replay is refused"
try oq dlq replay --all --queue orderq.order.processing
expect_eq 64 "$rc" "--all with filters is refused"
out=$(oq dlq replay --id 1 --id 2 --dry-run)
expect_contains "would replay 2 dead letters" "$out" "dry run says how many"
expect_contains "order.processing" "$out" "dry run says where"
expect_eq "0 0" "$(sql "$DB" -e 'SELECT SUM(replay_count), COUNT(replayed_at) FROM dead_letter' | tr '\t' ' ')" "dry run marks nothing"
expect_eq 0 "$(queue_ready orderq.order.processing)" "dry run publishes nothing"

note "replay to a queue that does not exist: reported, exit 69, not marked"
try oq dlq replay --id 2 --to-queue no.such.queue --as ops
expect_eq 69 "$rc" "exit code of an unroutable replay"
expect_contains "letter 2 failed: no queue took it (312 NO_ROUTE" "$out" "the reason"
expect_eq "0 " "$(replays 2)" "an unroutable letter is not marked"
try oq dlq replay --id 4 --json
expect_eq 69 "$rc" "exit code when the exchange is gone"
expect_eq "0 1 4" "$(json 'd["replayed"], d["failed"], d["failures"][0]["id"]' <<<"$out" | tr -d '(),')" "replay --json summary"
expect_contains 'exchange \"no.such.exchange\" does not exist' "$out" "the missing exchange is named"

note "replay with a consumer running: one effect, and a second replay is a duplicate"
start_consumer c1
oq dlq replay --id 1 --as alice >"$WORK/r1.out"
expect_eq "replayed 1 of 1 dead letters, failed 0, skipped 0" "$(cat "$WORK/r1.out")" "replay summary"
wait_ledger 1 30 || fail "the replayed letter was not consumed: $(cat "$WORK/c1.log")"
expect_eq "1 alice" "$(replays 1)" "marked replayed by alice"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon WHERE order_id = '9300000001'")" "one coupon"
oq dlq replay --event-id 9300000001_processing --as bob >/dev/null
# letter 2 after it, through the same queue: once its effect is there, the
# duplicate before it has been dealt with too
oq dlq replay --id 2 --as bob >/dev/null
wait_ledger 2 30 || fail "letter 2 was not consumed: $(cat "$WORK/c1.log")"
expect_queue_empty
expect_eq "2 bob" "$(replays 1)" "replayed twice, last by bob"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon WHERE order_id = '9300000001'")" "still one coupon after a second replay"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE event_identifier = '9300000001_processing'")" "one ledger row"
expect_eq 2 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons in all"
kill "$consumer_pid" && wait "$consumer_pid" || true

note "replay restores headers and body byte for byte, without orderq's headers"
mgmt PUT "/api/queues/$(urlenc "$VHOST")/dlq.check" '{"durable": false}' >/dev/null
oq dlq replay --id 3 --to-queue dlq.check --as carol >/dev/null
wait_for 10 ready_is dlq.check 1 || fail "the replayed letter is not in dlq.check"
msg=$(mgmt POST "/api/queues/$(urlenc "$VHOST")/dlq.check/get" '{"count":1,"ackmode":"ack_requeue_false","encoding":"base64"}')
"$PY" -c '
import base64, json, sys
m = json.loads(sys.argv[1])[0]
assert base64.b64decode(m["payload"]) == bytes([0, 1, 2, 0xFF, 0xFE, 0x41, 0x0A, 0x80]) * 5, m["payload"]
p, h = m["properties"], m["properties"]["headers"]
assert h["x-orderq-replay-of"] == 3 and h["trace-id"] == "abc-123" and h["x-custom-n"] == 7, h
assert h["nested"] == {"a": [1, "b"]}, h
assert not [k for k in h if k.startswith(("x-orderq-attempt", "x-orderq-error", "x-death", "x-first-death", "x-last-death", "orderq-delay"))], h
assert p["delivery_mode"] == 2, p
' "$msg" || fail "replayed message: $msg"
expect_eq "1 carol" "$(replays 3)" "letter 3 marked"

note "replay stops after the letter in flight on SIGTERM"
"$ORDERQ_BIN" dlq replay --all --to-queue dlq.check --rate 2 >"$WORK/slow.out" 2>&1 & # not through oq(): the signal must reach orderq
slow=$!
sleep 1.2
kill -TERM "$slow"
set +e; wait "$slow"; rc=$?; set -e
expect_eq 143 "$rc" "exit code after SIGTERM"
expect_contains "stopped by signal 15" "$(cat "$WORK/slow.out")" "the summary says it stopped"
sent=$(queue_ready dlq.check)
[ "$sent" -ge 1 ] && [ "$sent" -lt 4 ] || fail "after SIGTERM $sent of 4 letters went"

note "purge: refuses without --yes off a terminal, deletes only what matches"
try oq dlq purge --queue orderq.coupon.email </dev/null
expect_eq 64 "$rc" "purge without --yes and no terminal"
expect_contains "without --yes" "$out" "says why"
expect_eq 4 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "nothing deleted"
try oq dlq purge
expect_eq 64 "$rc" "a bare purge is refused"
expect_eq "would delete 1 dead letters (dry run: nothing changed)" "$(oq dlq purge --queue orderq.coupon.email --dry-run)" "purge --dry-run"
expect_eq '{"deleted": 1}' "$(oq dlq purge --queue orderq.coupon.email --yes --json)" "purge by queue"
expect_eq "1,2,3" "$(sql "$DB" -e 'SELECT GROUP_CONCAT(id ORDER BY id) FROM dead_letter')" "only the matching letter deleted"
sql "$DB" -e "INSERT INTO dead_letter (id, letter_key, queue, properties, headers, body, body_size) VALUES (5, SHA2('5', 256), 'orderq.order.processing', '{}', '{}', 'x', 1)"
expect_eq '{"deleted": 3}' "$(oq dlq purge --replayed --yes --json)" "purge --replayed"
expect_eq "5" "$(sql "$DB" -e 'SELECT GROUP_CONCAT(id ORDER BY id) FROM dead_letter')" "the letter never replayed stays"
