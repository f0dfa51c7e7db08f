#!/usr/bin/env bash
# deploy_metric_names.sh - every metric the Grafana dashboard and the alert
# rules read is in a live scrape: of a running `orderq consume` (its own
# vhost and database on the shared servers) and of RabbitMQ's
# rabbitmq_prometheus plugin on 127.0.0.1:15692, with the families
# deploy/prometheus/prometheus.yml asks for. orderq_* names must also be in
# docs/metrics.md. Histogram series (_bucket, _sum, _count) come from their
# family's TYPE line; recording rules from alerts.yml.
source "$(dirname "$0")/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
for f in prometheus/prometheus.yml prometheus/alerts.yml grafana/orderq.json; do
    [ -f "$top/deploy/$f" ] || fail "deploy/$f is missing"
done
RABBITMQ_METRICS=${ORDERQ_TEST_RABBITMQ_METRICS:-http://127.0.0.1:15692}
curl -sf -o /dev/null "$RABBITMQ_METRICS/metrics" ||
    unreachable "RabbitMQ's prometheus plugin at $RABBITMQ_METRICS (rabbitmq-plugins enable rabbitmq_prometheus)"
setup_declared

note "scrape a running orderq consume once it is ready"
port=$(free_port)
"$ORDERQ_BIN" consume --instance-id "names-$$" --http-addr "127.0.0.1:$port" 2>"$WORK/consume.log" &
CLEANUP+=("kill -9 $!")
wait_for 30 curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" || fail "never ready: $(tail -3 "$WORK/consume.log")"
curl -sf "http://127.0.0.1:$port/metrics" >"$WORK/orderq.prom" || fail "no /metrics"

note "scrape rabbitmq_prometheus as prometheus.yml's rabbitmq job does"
query=$("$PY" -c '
import sys, yaml, urllib.parse
job = [j for j in yaml.safe_load(open(sys.argv[1]))["scrape_configs"] if j["job_name"] == "rabbitmq"][0]
print(job.get("metrics_path", "/metrics") + "?" + urllib.parse.urlencode(job.get("params", {}), doseq=True))' \
    "$top/deploy/prometheus/prometheus.yml")
curl -sf "$RABBITMQ_METRICS$query" >"$WORK/rabbitmq.prom" || fail "no $query"
echo "scraped: $(grep -c '^# TYPE' "$WORK/orderq.prom") orderq families, $(grep -c '^# TYPE' "$WORK/rabbitmq.prom") RabbitMQ families ($query)"

note "every name the dashboard and the alerts read is there"
try "$PY" "$here/deploy_check.py" names "$top" "$WORK/orderq.prom" "$WORK/rabbitmq.prom"
echo "$out"
expect_eq 0 "$rc" "deploy_check.py names"
