#!/usr/bin/env bash
# consume.sh - consume connects to every work queue, reports ready, survives a
# dropped connection, keeps deliveries safe, and stops cleanly on SIGTERM
source "$(dirname "$0")/lib.sh"
need_rabbitmq
v=$(urlenc "$VHOST")
port=$(free_port)
export ORDERQ_HTTP_ADDR="127.0.0.1:$port"
oq topology declare --create-shop-exchange >/dev/null

consumers_on() { mgmt GET "/api/queues/$v/$1" | json 'd.get("consumers", 0)'; }
all_consuming() {
    for q in orderq.order.processing orderq.coupon.email orderq.invoice.created orderq.invoice.updated; do
        [ "$(consumers_on "$q")" = 1 ] || return 1
    done
}
ready() { curl -sf "http://$ORDERQ_HTTP_ADDR/readyz"; }

note "start: a consumer on each work queue, /readyz turns 200"
"$ORDERQ_BIN" consume --instance-id "test-$$" 2>"$WORK/log" &
pid=$!
CLEANUP+=("kill -9 $pid")
wait_for 20 ready || fail "never ready: $(cat "$WORK/log")"
wait_for 10 all_consuming || fail "not consuming every work queue"
curl -sf "http://$ORDERQ_HTTP_ADDR/metrics" | grep -q '^orderq_consumers 4$' || fail "metrics do not show 4 consumers"
curl -sf "http://$ORDERQ_HTTP_ADDR/healthz" >/dev/null || fail "healthz"
"$PY" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(c["vhost"]==sys.argv[1] and c["client_properties"].get("connection_name","").startswith("orderq consume test-") for c in d) else 1)' "$VHOST" < <(mgmt GET /api/connections) \
    || fail "the connection is not named after the instance"
head -1 "$WORK/log" | json 'd["level"] and d["msg"] and d["ts"]' >/dev/null || fail "logs are not JSON lines: $(head -1 "$WORK/log")"

note "a delivery is held, never acked: it is still in the queue after orderq stops"
mgmt POST "/api/exchanges/$v/shop.events/publish" \
    '{"properties":{"delivery_mode":2,"message_id":"9200000217_processing"},"routing_key":"order.processing","payload":"{\"event_code\":\"order.processing\"}","payload_encoding":"string"}' \
    | grep -q '"routed":true' || fail "test message not routed"

note "the broker drops the connection: orderq reconnects and consumes again"
name=$("$PY" -c 'import json,sys; d=json.load(sys.stdin); print([c["name"] for c in d if c["vhost"]==sys.argv[1]][0])' "$VHOST" < <(mgmt GET /api/connections))
mgmt DELETE "/api/connections/$(urlenc "$name")" >/dev/null
wait_for 10 bash -c "! curl -sf http://$ORDERQ_HTTP_ADDR/readyz" || true
wait_for 30 all_consuming || fail "did not reconnect: $(tail -5 "$WORK/log")"
wait_for 10 ready || fail "not ready after reconnect"
grep -q 'retrying in' "$WORK/log" || fail "no reconnect logged"
curl -sf "http://$ORDERQ_HTTP_ADDR/metrics" | grep -q '^orderq_broker_connects_total 2$' || fail "connects_total is not 2"

note "SIGTERM: exits 0 promptly, consumers gone, the message back in the queue"
kill -TERM "$pid"
start=$SECONDS
rc=0
wait "$pid" || rc=$?
expect_eq 0 "$rc" "exit code after SIGTERM"
[ $((SECONDS - start)) -le 5 ] || fail "took $((SECONDS - start)) s to stop"
grep -q '"stopped by signal 15"' "$WORK/log" || fail "no stop logged"
wait_for 10 bash -c "[ \"\$(curl -s -u $MGMT_AUTH $MGMT/api/queues/$v/orderq.order.processing | $PY -c 'import json,sys; print(json.load(sys.stdin).get(\"messages_ready\"))')\" = 1 ]" \
    || fail "the held message did not return to the queue"

note "queue missing: a clear error, then retries"
mgmt DELETE "/api/queues/$v/orderq.coupon.email" >/dev/null
"$ORDERQ_BIN" consume 2>"$WORK/log2" &
pid2=$!
CLEANUP+=("kill -9 $pid2")
wait_for 10 grep -q 'orderq topology declare' "$WORK/log2" || fail "no hint to declare the topology: $(cat "$WORK/log2")"
kill -INT "$pid2"
wait "$pid2" || fail "SIGINT exit code"
