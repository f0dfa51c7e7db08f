# bench/lib.sh - what every benchmark starts with: the stack up, a Release
# build, a vhost and database of its own ($BENCH_NAME, default orderq-bench:
# vhost orderq-bench, database orderq_bench; removed at exit),
# migrated and declared; $bin, $PY, $work, api() and metric() for the rest.
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
metric() { curl -s "http://$ORDERQ_HTTP_ADDR/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# metric_sum NAME [label=value ...]: the sum of NAME's series with those labels
metric_sum() {
    local name=$1; shift
    curl -s "http://$ORDERQ_HTTP_ADDR/metrics" | awk -v m="$name" -v want="$*" '
        BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { split(w[i], kv, "="); w[i] = kv[1] "=\"" kv[2] "\"" } }
        $1 == m || index($1, m "{") == 1 { for (i = 1; i <= n; i++) if (!index($1, w[i])) next; s += $2 }
        END { printf "%.0f\n", s }'
}

api DELETE /api/vhosts/$bench_vhost >/dev/null 2>&1 || true
api PUT /api/vhosts/$bench_vhost '{}' >/dev/null
api PUT /api/permissions/$bench_vhost/guest '{"configure":".*","write":".*","read":".*"}' >/dev/null
mariadb -e "DROP DATABASE IF EXISTS $bench_db; CREATE DATABASE $bench_db CHARACTER SET utf8mb4"
"$bin" migrate >/dev/null 2>&1
"$bin" topology declare --create-shop-exchange >/dev/null
