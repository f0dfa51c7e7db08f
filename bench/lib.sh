# bench/lib.sh - what every benchmark starts with: the stack up, a Release
# build, a vhost and database of its own ($BENCH_NAME, default orderq-bench:
# vhost orderq-bench, database orderq_bench; removed at exit),
# migrated and declared; $bin, $PY, $work, api() and wait_metrics() for the rest.
# Source it after setting $top.
# shellcheck source=deploy/local/lib.sh
source "$top/deploy/local/lib.sh"
oq_setup_stack >/dev/null
# BENCH_BUILD_DIR: binaries built already (ctest's bench.smoke passes its
# own build, so CI does not build a second time); unset, a Release build.
if [[ -n ${BENCH_BUILD_DIR:-} ]]; then
    build=$BENCH_BUILD_DIR
else
    build=$top/build/release
    oq_build Release "$build" >/dev/null
fi
bin=$build/orderq
ack_only=$build/orderq_bench_ack_only
PY=/usr/bin/python3
BENCH_NAME=${BENCH_NAME:-orderq-bench}
[[ $BENCH_NAME =~ ^[a-z0-9-]+$ ]] || { echo "BENCH_NAME: expected lower-case letters, digits and -, got $BENCH_NAME" >&2; exit 64; }
bench_vhost=$BENCH_NAME
bench_db=${BENCH_NAME//-/_}

export ORDERQ_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/$bench_vhost
export ORDERQ_MYSQL_URL="mysql://root@localhost/$bench_db?socket=/run/mysqld/mysqld.sock"
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ORDERQ_HTTP_ADDR=127.0.0.1:$port
api() { curl -sS --fail -u guest:guest -X "$1" -H 'content-type: application/json' ${3:+--data "$3"} "http://127.0.0.1:15672$2"; }
work=$(mktemp -d)
trap 'rm -rf "$work"; api DELETE /api/vhosts/$bench_vhost >/dev/null 2>&1 || true' EXIT
# wait_metrics PID [--timeout S] [--every MS] COND...: until the metrics of
# the orderq consume PID reach every COND (NAME[label=value,...]>=N); prints
# the time they did (ns since the epoch). One poller over one connection:
# a shell loop of curl and awk would take CPU from the consumer being timed.
wait_metrics() {
    local pid=$1
    shift
    "$PY" "$top/bench/wait_metrics.py" --addr "$ORDERQ_HTTP_ADDR" --pid "$pid" "$@"
}

api DELETE /api/vhosts/$bench_vhost >/dev/null 2>&1 || true
api PUT /api/vhosts/$bench_vhost '{}' >/dev/null
api PUT /api/permissions/$bench_vhost/guest '{"configure":".*","write":".*","read":".*"}' >/dev/null
mariadb -e "DROP DATABASE IF EXISTS $bench_db; CREATE DATABASE $bench_db CHARACTER SET utf8mb4"
"$bin" migrate >/dev/null 2>&1
"$bin" topology declare --create-shop-exchange >/dev/null
