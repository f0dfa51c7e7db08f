#!/usr/bin/env bash
# safety_net.sh - a message that is delivered again and again without an
# outcome (it crashes or hangs every consumer) is dead-lettered by the
# quorum queue's x-delivery-limit, and the archiver stores it as such; so
# is one of orderq's retries that does the same after it came back (its
# row says so, and where it was first published, not the delay tier)
source "$(dirname "$0")/lib.sh"
export ORDERQ_DELIVERY_LIMIT=2 ORDERQ_RETRY_TIERS=3s
setup_consumer_test
CONSUME_QUEUES=orderq.order.processing start_consumer net
net_pid=$consumer_pid

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
    "$(sql "$DB" -e "SELECT error_class, queue, exchange_name, routing_key, event_identifier, attempts FROM dead_letter WHERE event_identifier = 'poison-1'")" \
    "the letter"
expect_contains "delivered 3 times without an outcome" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'poison-1'")" "the reason"
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead"
wait_for 10 ready_is orderq.invoice.created 0 || fail "left in orderq.invoice.created"

note "a retry back from its delay tier, taken and given back three times: explained as such"
CONSUME_QUEUES=orderq.probe start_consumer prober
printf '%s\n' '{"event_code":"probe","event_identifier":"poison-2","event_data":{"fail":"transient","fail_attempts":1,"error":"shop API down"}}' |
    oq publish - >/dev/null
wait_for 20 grep -q 'retrying in 3s' "$WORK/prober.log" || fail "no retry: $(tail -3 "$WORK/prober.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the prober's exit code"
run_out_delivery_limit orderq.probe
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE event_identifier = 'poison-2'\")\" = 1 ]" \
    || fail "not archived: $(tail -3 "$WORK/net.log")"
expect_eq "delivery_limit	orderq.probe	shop.events	probe	3" \
    "$(sql "$DB" -e "SELECT error_class, queue, exchange_name, routing_key, attempts FROM dead_letter WHERE event_identifier = 'poison-2'")" \
    "the retry's letter (not the delay tier it expired in, nor the attempt before's class)"
expect_contains "it was orderq's attempt 2 (attempt 1 failed: transient: shop API down (probe, attempt 1))" \
    "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'poison-2'")" "the reason"
wait_for 10 ready_is orderq.dead 0 || fail "left in orderq.dead"
wait_for 10 ready_is orderq.probe 0 || fail "left in orderq.probe"
kill -TERM "$net_pid"
wait "$net_pid" || fail "consumer exit code"
