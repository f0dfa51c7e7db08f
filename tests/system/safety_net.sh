#!/usr/bin/env bash
# safety_net.sh - a message that is delivered again and again without an
# outcome (it crashes or hangs every consumer) is dead-lettered by the
# quorum queue's x-delivery-limit, and the archiver stores it as such
source "$(dirname "$0")/lib.sh"
export ORDERQ_DELIVERY_LIMIT=2
setup_consumer_test
start_consumer net

note "a message on a queue, taken and given back three times without an ack"
# orderq.invoice.created has no handler yet: nobody else consumes it here.
"$PY" - "$VHOST" <<'PY'
import sys, time, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("shop.events", "invoice.created", b'{"event_code":"invoice.created"}',
                     pika.BasicProperties(delivery_mode=2, message_id="poison-1", type="invoice.created"),
                     mandatory=True)
    taken = 0
    deadline = time.time() + 20
    while time.time() < deadline:
        method, _, _ = ch.basic_get("orderq.invoice.created")
        if method is None:
            if taken > 2:
                break
            time.sleep(0.1)
            continue
        taken += 1
        ch.basic_nack(method.delivery_tag, requeue=True)  # as a crash would give it back
    assert taken == 3, taken
PY

note "the broker dead-lettered it; the archiver explains it"
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM dead_letter')\" = 1 ]" \
    || fail "not archived: $(tail -3 "$WORK/net.log")"
expect_eq "delivery_limit	orderq.invoice.created	shop.events	invoice.created	poison-1	3" \
    "$(sql "$DB" -e 'SELECT error_class, queue, exchange_name, routing_key, event_identifier, attempts FROM dead_letter')" \
    "the letter"
expect_contains "delivered 3 times without an outcome" "$(sql "$DB" -e 'SELECT error FROM dead_letter')" "the reason"
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead"
wait_for 10 ready_is orderq.invoice.created 0 || fail "left in orderq.invoice.created"
