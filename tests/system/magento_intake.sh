#!/usr/bin/env bash
# magento_intake.sh - a shop's own format (the intake setting): Magento's
# message queue framework publishes the order object itself, the topic as
# routing key, a random message_id, delivery mode 2, to an exchange the shop
# names and declares. Each event comes twice (two random message_ids); each
# becomes the coupons the orderq envelope makes of the same order, once.
# Bodies that do not fit the mapping become readable dead letters.
source "$(dirname "$0")/lib.sh"

SHOP_EX=magento # Magento's default AMQP exchange name
need_mysql
need_rabbitmq
# The shop declares its own exchange; orderq binds from it (read) and
# publishes its follow-up events there (write), and the shop's user may
# write to it alone.
mgmt PUT "/api/exchanges/$(urlenc "$VHOST")/$SHOP_EX" '{"type":"topic","durable":true}' >/dev/null
amqp_permissions "$AMQP_USER" "$OQ_AMQP_ORDERQ_CONFIGURE_OWN" "^(orderq\\..*|$SHOP_EX|amq\\.default)\$" "^(orderq\\..*|$SHOP_EX)\$"
amqp_permissions "$SHOP_USER" '^$' "^$SHOP_EX\$" '^$'
export ORDERQ_SHOP_EXCHANGE=$SHOP_EX ORDERQ_RETRY_TIERS=1s ORDERQ_MAX_ATTEMPTS=2
INTAKE='{"order.processing": {"format": "magento", "codes": ["sales.order.paid"]},
         "probe": {"code": "type", "identifier": "message_id", "data": "body", "codes": ["shop.probe"]}}'
oq migrate >/dev/null 2>&1
try oq topology declare
expect_eq 0 "$rc" "topology declare against the shop's exchange: $out"
load_test_rule

# publish ROUTING_KEY FILE [TYPE] [MESSAGE_ID]: as the shop's user, as
# Magento's AMQP publisher does (a random message_id unless given).
publish() {
    "$PY" - "$VHOST" "$OQ_TEST_SHOP_USER" "$OQ_TEST_PASSWORD" "$SHOP_EX" "$@" <<'PY'
import sys, uuid, pika
vhost, user, password, exchange, key, path = sys.argv[1:7]
kind = sys.argv[7] if len(sys.argv) > 7 and sys.argv[7] else None
msg_id = sys.argv[8] if len(sys.argv) > 8 else uuid.uuid4().hex
params = pika.ConnectionParameters("127.0.0.1", 5672, vhost, pika.PlainCredentials(user, password))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        ch.basic_publish(exchange, key, open(path, "rb").read(), pika.BasicProperties(
            delivery_mode=2, message_id=msg_id, type=kind, headers={"store_id": 1}), mandatory=True)
    except pika.exceptions.UnroutableError:
        sys.exit("unroutable: no queue is bound to %s by %s" % (exchange, key))
PY
}

# The orders, once as Magento's order object and once as orderq's envelope.
"$PY" - "$WORK" <<'PY'
import datetime, json, os, sys
work = sys.argv[1]
def item(i, sku, qty, price, orig, parent=None):
    return {"item_id": i, "sku": sku, "qty_ordered": qty, "price": price,
            "original_price": orig, "parent_item_id": parent, "product_type": "simple"}
orders = {
    # 3 x 25.00 of MUG-1: earns the rule (50.00)
    "501": ("USD", "ann@example.com", "Ann", "Lee", [item(1, "MUG-1", "3.0000", "25.0000", "25.0000")]),
    # a configurable product: the parent line holds the price, the child line is left out
    "502": ("USD", "bo@example.com", "Bo", None, [item(1, "MUG-1", 2, "30.0000", "30.0000"),
                                                  item(2, "MUG-1", 2, "0.0000", "0.0000", parent=1)]),
    # discounted below its original price: does not count, no coupon
    "503": ("USD", "cy@example.com", "Cy", "Ng", [item(1, "MUG-1", 3, "20.0000", "25.0000")]),
    # another currency: no coupon
    "504": ("EUR", "di@example.com", "Di", None, [item(1, "MUG-1", 3, "25.0000", "25.0000")]),
}
for entity_id, (cur, email, first, last, items) in orders.items():
    magento = {"entity_id": int(entity_id), "increment_id": "000000" + entity_id, "state": "processing",
               "status": "processing", "created_at": "2020-01-01 10:00:00", "store_id": 1,
               # the save that made it "processing" (Magento writes UTC, no zone)
               "updated_at": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M:%S"),
               "order_currency_code": cur, "base_currency_code": cur, "customer_email": email,
               "customer_firstname": first, "customer_lastname": last, "grand_total": 75, "items": items}
    open(os.path.join(work, "m" + entity_id + ".json"), "w").write(json.dumps(magento))
    # the same order as the orderq envelope, under order id 9<entity_id>
    name = first + (" " + last if last else "")
    env = {"event_code": "order.processing", "event_identifier": "9" + entity_id + "_processing",
           "created_at": "2026-12-01T10:00:00Z",
           "event_data": {"order_id": "9" + entity_id, "order_status": "processing", "currency": cur,
                          "customer": {"email": email, "name": name},
                          "items": [{"sku": i["sku"], "qty": i["qty_ordered"], "price": i["price"],
                                     "original_price": i["original_price"]}
                                    for i in items if i["parent_item_id"] is None]}}
    open(os.path.join(work, "e" + entity_id + ".json"), "w").write(json.dumps(env))
# hostile bodies for the same mapping
long_id = "9" * 190
hostile = {
    "h_array": b'[{"entity_id": 1, "status": "processing"}]',
    "h_string": b'"sales.order.paid"',
    "h_field_object": json.dumps({"entity_id": {"id": 7}, "status": "processing"}).encode(),
    "h_missing_field": json.dumps({"entity_id": 8, "order_currency_code": "USD", "items": []}).encode(),
    "h_long_id": json.dumps({"entity_id": long_id, "status": "processing"}).encode(),
    "h_not_utf8": b'{"entity_id": 9, "status": "pro\xc0\xafcessing", "order_currency_code": "USD", "items": []}',
    "h_no_currency": json.dumps({"entity_id": 10, "status": "processing", "items": []}).encode(),
}
for name, body in hostile.items():
    open(os.path.join(work, name + ".json"), "wb").write(body)
open(os.path.join(work, "probe.json"), "w").write("{}")
# without the customer's e-mail: looked up in the shop API, which fails once
m505 = {"entity_id": 505, "increment_id": "000000505", "status": "processing",
        "order_currency_code": "USD", "items": [item(1, "MUG-1", 3, "25.0000", "25.0000")]}
open(os.path.join(work, "m505.json"), "w").write(json.dumps(m505))
# the same, but the shop API answers 404 first (a dead letter), then the order
m506 = dict(m505, entity_id=506, increment_id="000000506")
open(os.path.join(work, "m506.json"), "w").write(json.dumps(m506))
script = {"GET /rest/V1/orders/505": [{"status": 503}, {"status": 200, "body": dict(m505,
          customer_email="ed@example.com", customer_firstname="Ed")}],
          "GET /rest/V1/orders/506": [{"status": 404}, {"status": 200, "body": dict(m506,
          customer_email="fay@example.com", customer_firstname="Fay")}],
          "POST /hooks/paid": [{"status": 200}]}
m507 = {"entity_id": 507, "increment_id": "000000507", "status": "processing", "customer_email": "gus@example.com",
        "order_currency_code": "USD", "items": [item(1, "MUG-1", 3, "25.0000", "25.0000")]}
open(os.path.join(work, "m507.json"), "w").write(json.dumps(m507))
open(os.path.join(work, "script.json"), "w").write(json.dumps(script))
PY
start_http_fixture

note "the envelope path (no intake setting) for the equivalent orders 9501..9504"
start_consumer envelope
for id in 501 502 503 504; do publish order.processing "$WORK/e$id.json" "" "9${id}_processing"; done
settled() { [ "$(sql "$DB" -e "SELECT (SELECT COUNT(*) FROM event_ledger) + (SELECT COUNT(*) FROM dead_letter)")" -ge "$1" ]; }
wait_for 30 settled 4 || fail "the envelope orders were not settled: $(tail -5 "$WORK/envelope.log")"
kill "$consumer_pid"
wait "$consumer_pid" || true

note "Magento's own order objects, each published twice with a random message_id"
export ORDERQ_INTAKE=$INTAKE ORDERQ_SHOP_API_URL="$base/"
addr="127.0.0.1:$(free_port)"
start_consumer magento --http-addr "$addr"
# It binds the shop's codes when it connects: publish only once it consumes.
wait_for 20 consuming orderq.order.processing || fail "the consumer did not start: $(tail -3 "$WORK/magento.log")"
publish sales.order.paid "$WORK/m505.json" # retried: back with orderq's routing key, read by the shop's
publish sales.order.paid "$WORK/m506.json" "" "m506" # dead-lettered (404), replayed below
for id in 501 502 503 504; do
    publish sales.order.paid "$WORK/m$id.json"
    publish sales.order.paid "$WORK/m$id.json"
done
for h in h_array h_string h_field_object h_missing_field h_long_id h_not_utf8 h_no_currency; do
    publish sales.order.paid "$WORK/$h.json" "" "$h"
done
publish shop.probe "$WORK/probe.json" "" "p_no_type" # code from the type property: none given
publish shop.probe "$WORK/probe.json" shop.probe "p_typed"
wait_for 30 settled $((4 + 5 + 8 + 1 + 1)) ||
    fail "not settled: $(sql "$DB" -e 'SELECT effect_key FROM event_ledger; SELECT event_identifier, error FROM dead_letter') $(tail -5 "$WORK/magento.log")"
sleep 1 # a second copy would commit or dead-letter within this

note "each order once, under the identifier the envelope would give it"
expect_eq "501_processing 502_processing 503_processing 504_processing" \
    "$(sql "$DB" -e "SELECT GROUP_CONCAT(effect_key ORDER BY effect_key SEPARATOR ' ') FROM event_ledger WHERE handler = 'coupon_rules' AND effect_key NOT LIKE '95%' AND effect_key <> '505_processing'")" \
    "ledger rows of the Magento orders (one each, of two deliveries)"
expect_eq 2 "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon WHERE order_id IN ('501','502','503','504')")" "coupons of the Magento orders"
expect_eq 2 "$(sql "$DB" -e "SELECT COUNT(*) FROM outbox WHERE event_code = 'coupon.email' AND event_identifier REGEXP '^50[1-4]_'")" "coupon mails queued for the Magento orders 501..504"

note "a Magento order retried after the shop API's 503 keeps its code"
expect_eq "2 14 1 ed@example.com" "$(sql "$DB" -e "SELECT CONCAT_WS(' ', l.attempts, c.rule_id, c.promo_id, c.customer_email) FROM event_ledger l JOIN coupon c ON c.event_identifier = l.event_identifier WHERE l.effect_key = '505_processing'")" \
    "order 505 after a retry (attempts, rule, promo, e-mail from the shop API)"

note "the same coupons as the envelope made of the same orders"
row() { # the coupon of an order, but its code, order id, event and dates
    sql "$DB" -e "SELECT CONCAT_WS(' ', rule_id, promo_id, customer_email, currency, discount_type, discount_minor,
                  ROUND(TIMESTAMPDIFF(SECOND, created_at, expires_at) / 86400)) FROM coupon WHERE order_id = '$1'"
}
mail() { # the coupon mail's event_data, but the code, order and dates
    sql "$DB" -e "SELECT body FROM outbox WHERE event_code = 'coupon.email' AND event_identifier LIKE '${1}\\_%'" |
        "$PY" -c 'import json, sys
d = json.load(sys.stdin)["event_data"]
for k in ("coupon_code", "order_id", "expires_at"): d.pop(k, None)
print(json.dumps(d, sort_keys=True))'
}
for id in 501 502 503 504; do
    expect_eq "$(row "9$id")" "$(row "$id")" "coupon of Magento order $id vs envelope order 9$id"
done
expect_eq "14 1 ann@example.com USD fixed 1000 30" "$(row 501)" "the coupon of order 501"
expect_eq "14 1 bo@example.com USD fixed 1000 30" "$(row 502)" "the coupon of order 502 (child line left out)"
for id in 501 502; do
    expect_eq "$(mail "9$id")" "$(mail "$id")" "coupon mail of Magento order $id vs envelope order 9$id"
done
expect_contains '"name": "Ann Lee"' "$(mail 501)" "the customer's name in the mail"

note "event age: a Magento order's updated_at (UTC, no zone; no AMQP timestamp) is read, not its created_at"
# 501..504 done once each; 505 has no updated_at, the probe neither, duplicates are not done
expect_eq 4 "$(metric_sum "$addr" orderq_event_age_seconds_count)" "orderq_event_age_seconds_count after the Magento orders"
# created_at is years back: read, it would count 36,000 s (the cap) per order
sum=$(metric_sum "$addr" orderq_event_age_seconds_sum)
[ "$sum" -lt 600 ] || fail "orderq_event_age_seconds_sum $sum s for 4 orders updated just now: the order's created_at was read"

note "bodies that do not fit the mapping are dead letters with a reason"
reason() { sql "$DB" -e "SELECT CONCAT(error_class, ': ', error) FROM dead_letter WHERE event_identifier = '$1'"; }
expect_contains "bad_input: the body is JSON but not an object" "$(reason h_array)" "an array body"
expect_contains "bad_input: the body is JSON but not an object" "$(reason h_string)" "a string body"
expect_contains "bad_input: the body's field {entity_id}, named by the intake identifier template \"{entity_id}_{status}\", is an object" \
    "$(reason h_field_object)" "a template field that is an object"
expect_contains "{status}" "$(reason h_missing_field)" "a template field that is missing"
expect_contains "is missing" "$(reason h_missing_field)" "a template field that is missing"
expect_contains "bad_input: the identifier from intake template \"{entity_id}_{status}\" is 201 bytes; expected 1 to 191" \
    "$(reason h_long_id)" "an identifier too long"
expect_contains "bad_input: status is not valid UTF-8: C0 AF at byte 3" "$(reason h_not_utf8)" "text that is not UTF-8"
expect_contains "bad_input: the Magento order 10 has no order_currency_code" "$(reason h_no_currency)" "an order without its currency"
expect_contains "bad_input: the type property is missing or empty; intake.probe.code" "$(reason p_no_type)" "a missing code"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = 'probe' AND effect_key = 'p_typed'")" "the probe with its type"
expect_eq 9 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters in all"

note "a Magento order replayed with --to-queue (the default exchange, the queue's name as routing key): the queue's event"
letter=$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'm506'")
[ -n "$letter" ] || fail "order 506 was not dead-lettered: $(reason m506)"
try oq dlq replay --id "$letter" --to-queue orderq.order.processing
expect_eq 0 "$rc" "dlq replay --to-queue: $out"
coupon_506() { sql "$DB" -e "SELECT customer_email FROM coupon WHERE order_id = '506'"; }
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM coupon WHERE order_id = '506'\")\" = 1 ]" ||
    fail "the replayed order 506 took no effect: $(sql "$DB" -e "SELECT error FROM dead_letter WHERE id > $letter AND event_identifier = 'm506'")"
expect_eq fay@example.com "$(coupon_506)" "the coupon of the replayed order 506"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM: $(tail -3 "$WORK/magento.log")"

note "a webhook on order.processing gets the Magento orders too: the webhook queue is bound by the shop's codes and reads them with their mapping"
echo "[{\"event_code\": \"order.processing\", \"url\": \"$base/hooks/paid\"}]" >"$WORK/webhooks.json"
export ORDERQ_WEBHOOKS_FILE="$WORK/webhooks.json"
try oq topology declare
expect_eq 0 "$rc" "topology declare with the webhook: $out"
CONSUME_QUEUES="orderq.order.processing orderq.webhook" start_consumer hooked
wait_for 20 consuming orderq.webhook || fail "the consumer did not start: $(tail -3 "$WORK/hooked.log")"
publish sales.order.paid "$WORK/m507.json"
posted() { grep -c '"path": "/hooks/paid"' "$WORK/requests.log" || true; }
wait_for 20 bash -c "grep -q '/hooks/paid' '$WORK/requests.log'" ||
    fail "no webhook call for the Magento order 507: $(sql "$DB" -e "SELECT error FROM dead_letter WHERE queue = 'orderq.webhook'")"
sleep 1
expect_eq 1 "$(posted)" "webhook calls"
expect_contains '507_processing' "$(grep '/hooks/paid' "$WORK/requests.log")" "the webhook's body and key"
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon WHERE order_id = '507'")" "the coupon of order 507"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM: $(tail -3 "$WORK/hooked.log")"
if grep -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$WORK"/*.log; then fail "a sanitizer report"; fi
for q in orderq.order.processing orderq.probe orderq.webhook; do
    wait_for 10 ready_is "$q" 0 || fail "left in $q: $(queue_ready "$q")"
done
