#!/usr/bin/env bash
# poison_reject.sh - a message librabbitmq cannot read (a header named "",
# tests/corpus/unreadable) at the head of a queue, with a full socket of
# deliveries behind it:
#  - on a work queue that dead-letters, it is rejected once and the reject
#    is not lost: the connection is closed politely, its input drained, and
#    our side closed only after the broker's close-ok (a FIN before it ends
#    the connection at once, channels too, and a reject still waiting in
#    the channel is lost: the message came back under load), never reset.
#    It is in orderq.dead once, the orders behind it take effect, one
#    reconnect;
#  - on a queue that does not dead-letter (not orderq's, or orderq's but
#    declared by hand without a dead-letter exchange), it is never rejected
#    (that would drop it): it stays in the queue, whole, the log names the
#    queue and what to do, and the reconnects back off;
#  - with two nodes in amqp_url, closing on it does not move the next
#    connect to the second node;
#  - while a close-ok does not come, heartbeats go on, and the wait ends at
#    connect_timeout_ms with a warning, or half a second after a TERM.
source "$(dirname "$0")/lib.sh"
CORPUS="$(dirname "$0")/../corpus"
setup_consumer_test
publish_unreadable() { # QUEUE: published straight to QUEUE, as the shop would to its exchange
    CORPUS_ONLY= "$PY" "$CORPUS/corpus.py" publish "$CORPUS/unreadable" "$VHOST" guest guest >/dev/null ||
        fail "publishing the unreadable message"
}
# N orders of ~60 KB each to routing key $2 of exchange $3: enough bytes
# behind the unreadable one that the consumer's socket buffer is full
# when it closes.
publish_orders() {
    "$PY" - "$VHOST" "$1" "$2" "$3" "$4" <<'PY'
import json, sys, pika
vhost, n, start, exchange, key = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
params = pika.ConnectionParameters("127.0.0.1", 5672, vhost, pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(n):
        order = str(start + i)
        body = json.dumps({"event_code": "order.processing", "event_identifier": order + "_processing",
            "created_at": "2017-02-23T11:06:40Z",
            "event_data": {"order_id": order, "order_status": "processing", "currency": "USD",
                "customer": {"email": "c%d@example.com" % i, "name": "Customer %d" % i},
                "note": "x" * 60000,
                "items": [{"sku": "MUG-1", "qty": 3, "price": "25.00", "original_price": "25.00"}]}})
        ch.basic_publish(exchange, key, body, pika.BasicProperties(delivery_mode=2, content_type="application/json"))
PY
}
# The first consumer reaches the broker through a link that delivers what
# it sends 50 ms late, and resets the broker's side when it resets its
# own: a broker that has not yet read the reject when the consumer resets.
start_link 50
DIRECT_URL=$ORDERQ_AMQP_URL
rules_rows() { sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_rules'"; }
rules_rows_are() { [ "$(rules_rows)" = "$1" ]; }

note "a work queue that dead-letters: the unreadable message first, 200 orders of 60 KB behind it"
publish_unreadable
publish_orders 200 9610000000 shop.events order.processing
http=127.0.0.1:$(free_port)
ORDERQ_AMQP_URL=$LINK_URL CONSUME_QUEUES=orderq.order.processing \
    start_consumer dlx --no-archive --prefetch 500 --http-addr "$http"
wait_for 60 rules_rows_are 200 || fail "orders taken: $(rules_rows) of 200: $(grep -c 'reading delivery' "$WORK/dlx.log") unreadable deliveries"
sleep 2
for outcome in invalid:1 done:200; do # the rejected message is settled as bad input, once
    expect_eq "${outcome#*:}" "$(metric_sum "$http" orderq_outcomes_total queue=orderq.order.processing outcome="${outcome%:*}")" \
        "orderq_outcomes_total{outcome=\"${outcome%:*}\"}"
done
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
expect_eq 1 "$(grep -c 'reading delivery' "$WORK/dlx.log")" "deliveries of the unreadable message (each one more reconnect)"
# both consuming connections (the one closed on the unreadable message,
# the one closed on TERM) and the others (the relay's, the parker's, closed
# on TERM) ended after the broker's close-ok, none reset
expect_polite_ends
expect_eq "consume: fin after close-ok,consume: fin after close-ok" \
    "$(grep '^consume:' "$LINK_REPORT" | paste -sd,)" "how the link saw the consuming connections end"
wait_for 10 ready_is orderq.dead 1 || fail "the unreadable message in orderq.dead: expected 1, got $(queue_ready orderq.dead)"
"$PY" - "$VHOST" <<'PY' || fail "the letter in orderq.dead is not the unreadable message, rejected once"
import sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    method, props, body = conn.channel().basic_get("orderq.dead", auto_ack=False)
death = props.headers["x-death"]
assert len(death) == 1 and death[0]["reason"] == "rejected" and death[0]["count"] == 1, death
assert death[0]["queue"] == "orderq.order.processing", death
assert props.headers.get("") == "empty key" and b'"hdr_key_empty"' in body, (props.headers, body)
PY
expect_contains "rejected to the dead-letter exchange as it is" "$(grep -m1 'reading delivery' "$WORK/dlx.log")" "the log"

note "a queue that does not dead-letter (not orderq's): never rejected, the reconnects back off"
mgmt PUT "/api/queues/$(urlenc "$VHOST")/orderq.legacy" '{"durable": true}' >/dev/null
publish_unreadable_to() { publish_letters --unreadable --to "" --key "$1" unused 0; } # QUEUE
publish_unreadable_to orderq.legacy
publish_orders 3 9620000000 "" orderq.legacy
CONSUME_QUEUES=orderq.legacy start_consumer foreign --no-archive
sleep 12
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
n=$(grep -c 'reading delivery' "$WORK/foreign.log")
note "$n deliveries of the unreadable message in 12 s"
# backoff 0.25-0.5, 0.5-1, 1-2, 2-4, 4-8 s: at most 6 connections in 12 s
# (without it, one every ~0.4 s: 30)
[ "$n" -ge 2 ] && [ "$n" -le 6 ] || fail "deliveries of the unreadable message in 12 s: $n, expected 2 to 6 (backoff)"
expect_contains "does not dead-letter as orderq's topology declares it" "$(grep -m1 'reading delivery' "$WORK/foreign.log")" "the log names what to do"
expect_contains "(attempt 3: no connection since the last healthy one" "$(cat "$WORK/foreign.log")" "the log of the loop"
wait_for 10 ready_is orderq.legacy 4 || fail "messages left in orderq.legacy (the unreadable one and 3 orders): expected 4, got $(queue_ready orderq.legacy)"
"$PY" - "$VHOST" <<'PY' || fail "the unreadable message is not whole at the head of orderq.legacy"
import sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    method, props, body = conn.channel().basic_get("orderq.legacy", auto_ack=False)
assert props.headers == {"": "empty key"} and body == b'{"event_identifier":"hdr_key_empty"}', (props.headers, body)
PY

note "a queue of orderq's declared by hand without a dead-letter exchange: not rejected either"
mgmt DELETE "/api/queues/$(urlenc "$VHOST")/orderq.probe" >/dev/null
mgmt PUT "/api/queues/$(urlenc "$VHOST")/orderq.probe" '{"durable": true}' >/dev/null
publish_unreadable_to orderq.probe
CONSUME_QUEUES=orderq.probe start_consumer byhand --no-archive
wait_for 10 grep -q 'reading delivery' "$WORK/byhand.log" || fail "the consumer did not take the message"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
expect_contains "does not dead-letter as orderq's topology declares it" "$(grep -m1 'reading delivery' "$WORK/byhand.log")" "the log"
wait_for 10 ready_is orderq.probe 1 || fail "the unreadable message left orderq.probe (dropped?): $(queue_ready orderq.probe)"

note "orderq.probe deleted under a running consumer and made again by hand without a dead-letter exchange: not rejected"
mgmt DELETE "/api/queues/$(urlenc "$VHOST")/orderq.probe" >/dev/null
CONSUME_QUEUES=orderq.probe start_consumer remade --no-archive
wait_for 30 consuming orderq.probe || fail "not consuming orderq.probe: $(tail -3 "$WORK/remade.log")"
# in one connection: orderq's resubscribe would declare it again (with its
# arguments) within half a second of the delete
"$PY" - "$VHOST" <<'PY' || fail "deleting orderq.probe and declaring it again without a dead-letter exchange"
import sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.queue_delete("orderq.probe")
    ch.queue_declare("orderq.probe", durable=True)
PY
wait_for 30 consuming orderq.probe || fail "the consumer did not come back to orderq.probe: $(tail -3 "$WORK/remade.log")"
publish_unreadable_to orderq.probe
wait_for 10 grep -q 'reading delivery' "$WORK/remade.log" || fail "the consumer did not take the message"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
wait_for 10 ready_is orderq.probe 1 || fail "the unreadable message left the remade orderq.probe (dropped by a reject the cancel should have stopped): $(queue_ready orderq.probe)"

note "two nodes in amqp_url: closing on an unreadable message blames no node, the next connect takes the first again"
publish_unreadable
publish_orders 5 9630000000 shop.events order.processing
ORDERQ_AMQP_URL="$DIRECT_URL,${DIRECT_URL/127.0.0.1/localhost}" CONSUME_QUEUES=orderq.order.processing \
    start_consumer nodes --no-archive
wait_for 30 rules_rows_are 205 || fail "orders taken: $(rules_rows) of 205"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"
expect_eq 1 "$(grep -c 'reading delivery' "$WORK/nodes.log")" "deliveries of the unreadable message"
connects=$(grep -o 'consume: connected to RabbitMQ node [0-9] of 2' "$WORK/nodes.log" | sort | uniq -c | sed 's/^ *//')
expect_eq "2 consume: connected to RabbitMQ node 1 of 2" "$connects" "the consuming connections' nodes"

note "an unreadable message whose close the broker never answers: heartbeats go on while the consumer waits, and the wait ends at connect_timeout_ms"
# Until its close-ok, RabbitMQ ends a connection that misses heartbeats as
# abruptly as after a FIN, channels and a reject not yet handled with it.
# The link swallows the consumer's connection.close and passes its
# heartbeats on: at heartbeat 1 s, a 4 s wait without them would end in
# about 2 s, with the broker's close.
start_link 0 --swallow-close
publish_unreadable
ORDERQ_AMQP_URL=$LINK_URL CONSUME_QUEUES=orderq.order.processing \
    start_consumer beats --no-archive --heartbeat-s 1 --connect-timeout-ms 4000
wait_for 30 grep -q 'did not answer the close within' "$WORK/beats.log" ||
    fail "no timeout of the close on the unreadable message: $(grep -E 'reading delivery|close' "$WORK/beats.log" | tail -3)"
beats=$(grep -c '^consume: heartbeat after close$' "$LINK_REPORT" || true)
note "$beats heartbeats sent while waiting for the close-ok"
[ "$beats" -ge 4 ] || fail "heartbeats sent while waiting 4 s for the close-ok at heartbeat 1 s: $beats, expected about 8"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM"

note "the same unanswered close, and a TERM during the wait: the wait is cut to half a second, the consumer exits 0, the message is dead-lettered once"
dead_before=$(queue_ready orderq.dead)
publish_unreadable
ORDERQ_AMQP_URL=$LINK_URL CONSUME_QUEUES=orderq.order.processing \
    start_consumer stopped --no-archive --heartbeat-s 1 --connect-timeout-ms 4000
wait_for 30 grep -q 'reading delivery' "$WORK/stopped.log" || fail "the consumer did not take the unreadable message: $(tail -3 "$WORK/stopped.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "the consumer did not exit 0 on TERM during the close's wait: $(tail -3 "$WORK/stopped.log")"
expect_contains "cut short by the stop" "$(grep 'did not answer the close within' "$WORK/stopped.log")" "the wait's warning"
wait_for 10 ready_is orderq.dead $((dead_before + 1)) ||
    fail "the unreadable message in orderq.dead: expected $((dead_before + 1)), got $(queue_ready orderq.dead)"
