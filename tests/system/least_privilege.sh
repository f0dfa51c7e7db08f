#!/usr/bin/env bash
# least_privilege.sh - the rights of deploy/local/privileges.sh (the ones
# docs/operations.md lists) are enough and no more: with configure on
# orderq.* only (the shop owns its exchange) orderq declares, consumes,
# relays and replays; the shop's user can publish to its exchange and
# nowhere else (not orderq.dead, orderq.delay or a queue by the default
# exchange); orderq's MySQL user cannot touch the schema.
source "$(dirname "$0")/lib.sh"
need_mysql
need_rabbitmq
v=$(urlenc "$VHOST")
oq migrate >/dev/null 2>&1

note "MySQL: orderq's user reads and writes rows, but cannot change the schema or read another database"
as_orderq() { mariadb --socket="$SOCK" -u"$MYSQL_USER" -p"$TEST_PASSWORD" -N -B "$DB" "$@"; }
expect_eq 0 "$(as_orderq -e 'SELECT COUNT(*) FROM event_ledger')" "a read as orderq's user"
try as_orderq -e 'ALTER TABLE event_ledger ADD COLUMN x INT'
expect_contains "ALTER command denied to user '$MYSQL_USER'" "$out" "ALTER as orderq's user"
try as_orderq -e 'DROP TABLE coupon'
expect_contains "DROP command denied to user '$MYSQL_USER'" "$out" "DROP as orderq's user"
try as_orderq -e 'SELECT COUNT(*) FROM mysql.user'
expect_contains "denied to user '$MYSQL_USER'" "$out" "reading mysql.user as orderq's user"

note "RabbitMQ: the shop's exchange made by the shop; orderq configures orderq.* only"
mgmt PUT "/api/exchanges/$v/shop.events" '{"type":"topic","durable":true}' >/dev/null
amqp_permissions "$AMQP_USER" "$OQ_AMQP_ORDERQ_CONFIGURE_OWN" "$OQ_AMQP_ORDERQ_WRITE" "$OQ_AMQP_ORDERQ_READ"
try oq topology declare
expect_eq 0 "$rc" "topology declare with configure on orderq.* only (output: $out)"
try oq topology declare --create-shop-exchange
[ "$rc" -ne 0 ] || fail "orderq's user declared the shop's exchange: $out"
expect_contains "ACCESS_REFUSED" "$out" "declaring the shop's exchange"

note "the shop's user: its exchange yes; orderq's exchanges and the default exchange no"
"$PY" - "$VHOST" >"$WORK/shop.out" <<'PY' || fail "the shop's publishes: $(cat "$WORK/shop.out")"
import os, sys, pika
creds = pika.PlainCredentials(os.environ["OQ_TEST_SHOP_USER"], os.environ["OQ_TEST_PASSWORD"])
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], creds)
with pika.BlockingConnection(params) as conn:
    for exchange in ("orderq.dead", "orderq.delay", ""):
        ch = conn.channel()
        ch.confirm_delivery()
        try:
            ch.basic_publish(exchange, "orderq.order.processing", b"forged",
                             pika.BasicProperties(headers={"x-orderq-force-resend": 1}))
            print(f"published to {exchange or 'amq.default'}")
        except pika.exceptions.ChannelClosedByBroker as e:
            print(f"refused {exchange or 'amq.default'}: {e.reply_code}")
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("shop.events", "order.processing", b"not JSON",
                     pika.BasicProperties(delivery_mode=2, message_id="lp-bad"))
    print("published to shop.events")
PY
expect_eq "refused orderq.dead: 403
refused orderq.delay: 403
refused amq.default: 403
published to shop.events" "$(cat "$WORK/shop.out")" "the shop's publishes"

note "orderq with these rights: consumes, relays the follow-up events, archives the bad one"
load_test_rule
start=9600000000
gen_events 3 --start "$start" | oq publish - >/dev/null
start_consumer lp
wait_ledger 3 60 || fail "not consumed: $(tail -5 "$WORK/lp.log")"
wait_drained
expect_exactly_once 3 "$start"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 1 ]" ||
    fail "the bad event was not archived: $(tail -5 "$WORK/lp.log")"
grep -q "ACCESS_REFUSED" "$WORK/lp.log" && fail "a right was missing: $(grep ACCESS_REFUSED "$WORK/lp.log" | head -3)"

note "and replays a letter straight to a queue (the default exchange)"
try oq dlq replay --all --to-queue orderq.order.processing
expect_eq 0 "$rc" "dlq replay --to-queue (output: $out)"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 2 ]" ||
    fail "the replayed letter did not come back: $(tail -5 "$WORK/lp.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
