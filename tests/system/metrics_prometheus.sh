#!/usr/bin/env bash
# metrics_prometheus.sh - a real Prometheus (Debian's) on loopback scrapes a
# running `orderq consume` every second, and RabbitMQ's own prometheus
# plugin for the queue depths; as events flow, its HTTP API shows the done
# outcomes increase, the event-age and commit histograms move, and
# histogram_quantile(0.99, ...) answers a number
source "$(dirname "$0")/lib.sh"
command -v prometheus >/dev/null || fail "prometheus is missing: apt-get install prometheus (deploy/local/lib.sh installs it)"
RABBIT_PROM=${ORDERQ_TEST_RABBITMQ_PROMETHEUS:-127.0.0.1:15692}
curl -sf -o /dev/null "http://$RABBIT_PROM/metrics" ||
    fail "RabbitMQ's prometheus plugin does not answer on $RABBIT_PROM (deploy/local/lib.sh enables it: rabbitmq-plugins enable rabbitmq_prometheus)"
setup_consumer_test
addr="127.0.0.1:$(free_port)"
start_consumer promscrape --http-addr "$addr" --batch-window-ms 50
wait_for 20 curl -sf "http://$addr/readyz" || fail "never ready: $(tail -3 "$WORK/promscrape.log")"

note "Prometheus on loopback, scraping orderq and the per-queue RabbitMQ endpoint every second"
pport=$(free_port)
cat >"$WORK/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: orderq
    static_configs: [{targets: ["$addr"]}]
  - job_name: rabbitmq
    metrics_path: /metrics/detailed
    params: {family: [queue_coarse_metrics, queue_consumer_count], vhost: ["$VHOST"]}
    static_configs: [{targets: ["$RABBIT_PROM"]}]
YML
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "prometheus.yml: $(promtool check config "$WORK/prometheus.yml" 2>&1)"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$pport" --log.level=warn 2>"$WORK/prometheus.log" &
prom_pid=$!
CLEANUP+=("kill $prom_pid; wait $prom_pid")
wait_for 30 curl -sf "http://127.0.0.1:$pport/-/ready" || fail "Prometheus not ready: $(tail -5 "$WORK/prometheus.log")"

# q PROMQL: the first result's value, "none" when there is no result
q() {
    curl -sfG "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" |
        "$PY" -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}
is() { [ "$(q "$1")" = "$2" ]; }
number() { local v; v=$(q "$1"); [[ $v =~ ^[0-9.e+-]+$ ]]; }
wait_for 20 is 'up{job="orderq"}' 1 || fail "Prometheus does not scrape orderq: $(q 'up{job="orderq"}')"
wait_for 20 is 'up{job="rabbitmq"}' 1 || fail "Prometheus does not scrape RabbitMQ: $(q 'up{job="rabbitmq"}')"
wait_for 10 is 'sum(orderq_outcomes_total{outcome="done"})' 0 || fail "done before any event: $(q 'sum(orderq_outcomes_total{outcome="done"})')"
wait_for 10 is 'orderq_event_age_seconds_count' 0 || fail "ages before any event: $(q orderq_event_age_seconds_count)"

note "20 orders published: the done outcomes increase, the histograms move"
"$PY" "$(dirname "$0")/metrics_pub.py" "$VHOST" "s$$" --orders 20 --dups 0 --invalid 0 >/dev/null || fail "publishing"
wait_for 30 is 'sum(orderq_outcomes_total{outcome="done",queue="orderq.order.processing"})' 20 ||
    fail "done outcomes in Prometheus: $(q 'sum(orderq_outcomes_total{outcome="done"})'); $(tail -3 "$WORK/promscrape.log")"
wait_for 10 is 'orderq_event_age_seconds_count' 20 || fail "event ages observed: $(q orderq_event_age_seconds_count)"
increase=$(q 'increase(orderq_outcomes_total{outcome="done",queue="orderq.order.processing"}[1m])')
"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$increase" || fail "increase() of the done outcomes: $increase"
commits=$(q 'sum(orderq_commit_duration_seconds_count)')
"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1 else 1)' "$commits" || fail "commit durations observed: $commits"
p99='histogram_quantile(0.99, sum by (le) (rate(orderq_event_age_seconds_bucket[1m])))'
wait_for 10 number "$p99" || fail "p99 event age: $(q "$p99")"
age=$(q "$p99")
"$PY" -c 'import sys; v=float(sys.argv[1]); sys.exit(0 if 0 <= v <= 60 else 1)' "$age" || fail "p99 event age $age s, expected 0..60 s"
c99='histogram_quantile(0.99, sum by (le) (rate(orderq_commit_duration_seconds_bucket[1m])))'
wait_for 10 number "$c99" || fail "p99 commit: $(q "$c99")"
note "p99 event age $age s, p99 commit $(q "$c99") s, done increase $increase"

note "a scrape, in part:"
curl -sf "http://$addr/metrics" | grep -E '^orderq_(outcomes_total\{queue="orderq.order.processing",outcome="(done|duplicate)"\}|event_age_seconds_(bucket\{le="(0.5|1)"\}|sum|count)|commit_duration_seconds_count|batch_size_count|in_flight_deliveries|build_info)' || true
note "queue depth from RabbitMQ's plugin, per queue"
depth=$(q "rabbitmq_detailed_queue_messages_ready{vhost=\"$VHOST\",queue=\"orderq.order.processing\"}")
[[ $depth =~ ^[0-9]+$ ]] || fail "no per-queue depth for orderq.order.processing: $depth"
# what the OrderqNoConsumer alert reads: this consumer, on its queue
consumers=$(q "rabbitmq_detailed_queue_consumers{vhost=\"$VHOST\",queue=\"orderq.order.processing\"}")
expect_eq 1 "$consumers" "rabbitmq_detailed_queue_consumers of orderq.order.processing"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
