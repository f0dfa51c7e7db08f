#!/usr/bin/env bash
# deploy_files.sh - the Dockerfile, compose.yml and Kubernetes files of
# deploy/ agree with the orderq they deploy (no Docker engine or cluster
# here, so they are read, not run): settings, ports, probe paths, files,
# runtime libraries, KEDA's queues (deploy_check.py files). The paths a
# probe may use are asked of a running orderq. No server needed: its
# RabbitMQ and MySQL are addresses where nothing listens.
source "$(dirname "$0")/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
top="$(cd "$here/../.." && pwd)"
for f in docker/Dockerfile docker/compose.yml k8s/kustomization.yaml k8s/consumer.yaml k8s/keda.yaml prometheus/prometheus.yml; do
    [ -f "$top/deploy/$f" ] || fail "deploy/$f is missing"
done

# served_paths COMMAND: sets served to the paths `orderq COMMAND` answers
# 200 or 503 (/readyz before it connects), not 404, comma-separated
served_paths() {
    local port paths=() code p
    port=$(free_port)
    ORDERQ_AMQP_URL=amqp://u:p@127.0.0.1:1/ ORDERQ_MYSQL_URL=mysql://u:p@127.0.0.1:1/x \
        "$ORDERQ_BIN" "$1" --http-addr "127.0.0.1:$port" >/dev/null 2>"$WORK/$1.log" &
    CLEANUP+=("kill -9 $!")
    wait_for 20 curl -s -o /dev/null "http://127.0.0.1:$port/healthz" || fail "orderq $1 never served http: $(tail -3 "$WORK/$1.log")"
    for p in /healthz /readyz /metrics /livez /health /ready /nope; do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$p")
        case $code in 200 | 503) paths+=("$p") ;; esac
    done
    served=$(IFS=,; echo "${paths[*]}")
}

note "the paths orderq consume and orderq relay serve (the probes and scrape targets of deploy/)"
served_paths relay
relay_served=$served
echo "relay serves: $relay_served"
served_paths consume
echo "consume serves: $served"
expect_eq "/healthz,/readyz,/metrics" "$served" "paths orderq consume serves"
expect_eq "$served" "$relay_served" "paths orderq relay serves (its k8s probes and scrape annotations are the consumers')"

note "Dockerfile, compose.yml, deploy/k8s against orderq's settings, ports, paths, files and libraries"
try "$PY" "$here/deploy_check.py" files "$top" "$ORDERQ_BIN" "$served"
echo "$out"
expect_eq 0 "$rc" "deploy_check.py files"
