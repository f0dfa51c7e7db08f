#!/usr/bin/env bash
# amqp_nodes.sh - orderq against a 3-node RabbitMQ cluster of the test's own
# (nodes oqc<i>-<pid>@localhost on 127.0.0.1, own AMQP and distribution
# ports, one Erlang cookie through a shared HOME), amqp_url listing the
# three. Quorum queues have a member on every node. While two consumers
# drain 10,000 events (5 % sent twice), the node that leads
# orderq.order.processing is killed with -9; a consumer started during the
# outage with that node first in its list connects to the next one; the
# node is started again. Every event takes effect exactly once and nothing
# is left in the work queue.
source "$(dirname "$0")/lib.sh"

N=${AMQP_NODES_EVENTS:-10000} # more by flag: AMQP_NODES_EVENTS=200000
START=9700000000
RQ="$WORK/cluster"
mkdir -p "$RQ/home"
# One cookie for the three nodes and for the CLI: written before any node
# starts, so three nodes starting at once do not race to create it.
od -An -tx1 -N20 /dev/urandom | tr -d ' \n' >"$RQ/home/.erlang.cookie"
chmod 400 "$RQ/home/.erlang.cookie"
: >"$RQ/rabbitmq-env.conf" # not the shared node's /etc/rabbitmq/rabbitmq-env.conf
echo '[].' >"$RQ/enabled_plugins"

declare -a NODE PORT DIST PID
for i in 1 2 3; do
    NODE[i]="oqc$i-$$@localhost"
    PORT[i]=$(free_port)
    DIST[i]=$(free_port)
done

# rq_vars I: node I's environment (its name, files, ports) in VARS.
rq_vars() {
    local i=$1
    VARS=(HOME="$RQ/home" RABBITMQ_NODENAME="${NODE[i]}" RABBITMQ_CONF_ENV_FILE="$RQ/rabbitmq-env.conf"
        RABBITMQ_CONFIG_FILE="$RQ/n$i/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$RQ/n$i/advanced.config"
        RABBITMQ_ENABLED_PLUGINS_FILE="$RQ/enabled_plugins" RABBITMQ_MNESIA_BASE="$RQ/n$i/mnesia"
        RABBITMQ_LOG_BASE="$RQ/n$i/log" RABBITMQ_DIST_PORT="${DIST[i]}" RABBITMQ_PID_FILE="$RQ/n$i/pid"
        ERL_CRASH_DUMP="$RQ/n$i/erl_crash.dump")
}
# rq_env I CMD...: CMD with node I's environment.
rq_env() { rq_vars "$1"; shift; env "${VARS[@]}" "$@"; }
ctl() { local i=$1; shift; rq_env "$i" /usr/lib/rabbitmq/bin/rabbitmqctl -n "${NODE[i]}" "$@"; }

for i in 1 2 3; do
    mkdir -p "$RQ/n$i/mnesia" "$RQ/n$i/log"
    cat >"$RQ/n$i/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:${PORT[i]}
loopback_users = none
log.console = false
log.file.level = warning
CONF
done

# start_node I: node I in the background, in a process group of its own
# ($PID[i]) so that kill -9 of the group is the node dying at once.
start_node() {
    rq_vars "$1"
    # in its own directory: a node that loses its peers writes MnesiaCore.* there
    (cd "$RQ/n$1" && exec setsid env "${VARS[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >>"$RQ/n$1/out.log" 2>&1) &
    PID[$1]=$!
    CLEANUP+=("stop_group ${PID[$1]}")
}
listening() { (exec 3<>"/dev/tcp/127.0.0.1/${PORT[$1]}") 2>/dev/null; }

note "three RabbitMQ nodes of our own, clustered"
started=$SECONDS
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do
    wait_for 120 listening "$i" || fail "node $i did not listen within 120 s: $(tail -5 "$RQ/n$i/out.log")"
done
for i in 2 3; do
    ctl "$i" stop_app >>"$RQ/ctl.log" 2>&1
    ctl "$i" join_cluster "${NODE[1]}" >>"$RQ/ctl.log" 2>&1 || fail "node $i could not join ${NODE[1]}: $(tail -3 "$RQ/ctl.log")"
    ctl "$i" start_app >>"$RQ/ctl.log" 2>&1
done
running=$(ctl 1 cluster_status --formatter json | json 'len(d["running_nodes"])')
expect_eq 3 "$running" "running nodes in the cluster"
echo "    cluster of 3 running after $((SECONDS - started)) s"

# The consumers list the nodes in two orders, so one of them starts on a
# follower of the work queue and the other on its leader.
url() { echo "amqp://guest:guest@127.0.0.1:${PORT[$1]}/"; }
export ORDERQ_AMQP_URL="$(url 1),$(url 2),$(url 3)"
export ORDERQ_CONNECT_TIMEOUT_MS=5s ORDERQ_HEARTBEAT_S=5
need_mysql
try oq migrate
expect_eq 0 "$rc" "migrate with amqp_url listing three nodes: $out"
try oq topology declare --create-shop-exchange
expect_eq 0 "$rc" "topology declare on the cluster: $out"
load_test_rule

# members QUEUE: how many nodes hold a replica of a quorum queue.
quorum_status() { rq_env 1 /usr/lib/rabbitmq/bin/rabbitmq-queues -n "${NODE[$2]:-${NODE[1]}}" quorum_status "$1" --formatter json; }
members=$(quorum_status orderq.order.processing 1 | json 'len(d)')
expect_eq 3 "$members" "replicas of orderq.order.processing"

# queue_ready QUEUE: ready messages, asked of the cluster (not the shared node).
queue_ready() {
    "$PY" - "$1" "${PORT[@]}" <<'PY'
import sys, pika
for port in sys.argv[2:]:
    try:
        params = pika.ConnectionParameters("127.0.0.1", int(port), "/", pika.PlainCredentials("guest", "guest"))
        with pika.BlockingConnection(params) as conn:
            print(conn.channel().queue_declare(sys.argv[1], passive=True).method.message_count)
            break
    except pika.exceptions.AMQPError:
        continue
PY
}

leader=$(quorum_status orderq.order.processing 1 |
    json '[r["Node Name"] for r in d if r["Raft State"] == "leader"][0]')
victim=0
for i in 1 2 3; do [ "${NODE[i]}" = "$leader" ] && victim=$i; done
[ "$victim" -gt 0 ] || fail "no leader of orderq.order.processing among our nodes: $leader"
next=$((victim % 3 + 1)) last=$(((victim + 1) % 3 + 1))
# from the leader on, and from a follower on
from_victim="$(url "$victim"),$(url "$next"),$(url "$last")"
from_next="$(url "$next"),$(url "$last"),$(url "$victim")"

gen_events "$N" --start "$START" --dup-every 20 >"$WORK/events.jsonl"
sent=$(wc -l <"$WORK/events.jsonl")
note "$sent messages for $N events, published while two consumers drain them"
ledger_rows() { sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger'; }
# Each consumer serves /metrics, read before it stops: its duplicates.
declare -A HTTP
consumer() {
    local name=$1; shift
    HTTP[$name]=127.0.0.1:$(free_port)
    start_consumer "$name" --batch-size 50 --prefetch 200 --http-addr "${HTTP[$name]}"
}
duplicates() { metric_sum "${HTTP[$1]}" orderq_outcomes_total outcome=duplicate; }
ORDERQ_AMQP_URL=$from_victim consumer first
first_pid=$consumer_pid
ORDERQ_AMQP_URL=$from_next consumer second
second_pid=$consumer_pid
# The publisher (the shop) is on a follower: it must not die with the leader.
ORDERQ_AMQP_URL=$from_next oq publish "$WORK/events.jsonl" >"$WORK/publish.out" 2>&1 &
publisher=$!
CLEANUP+=("kill -9 $publisher")
wait_ledger 1500 120 || fail "no progress on the cluster ($(ledger_rows) rows): $(tail -3 "$WORK/first.log")"

before=$(ledger_rows)
kill -9 -- "-${PID[victim]}"
killed_at=$(date +%s.%N)
note "killed node $victim ($leader), the leader of orderq.order.processing, at $before ledger rows"

note "a consumer started now, with the dead node first in its list, connects to the next one"
ORDERQ_AMQP_URL=$from_victim consumer late
late_pid=$consumer_pid
wait_for 30 grep -q "connected to RabbitMQ node 2 of 3" "$WORK/late.log" ||
    fail "the late consumer did not move to node 2 of its list: $(tail -3 "$WORK/late.log")"

# The stall: from the kill until the ledger grows again.
wait_for 60 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM event_ledger')\" -gt $((before + 200)) ]" ||
    fail "no progress after node $victim died ($(ledger_rows) rows): $(tail -3 "$WORK/first.log")"
stall=$("$PY" -c "import sys, time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$killed_at")
note "progress again $stall s after the kill (at $(ledger_rows) rows)"

start_node "$victim"
wait_for 120 listening "$victim" || fail "node $victim did not come back: $(tail -5 "$RQ/n$victim/out.log")"
note "node $victim is back"

wait "$publisher" || fail "publish failed: $(tail -3 "$WORK/publish.out")"
wait_ledger "$N" 180 || fail "only $(ledger_rows) of $N processed: $(tail -3 "$WORK/first.log")"
note "all $N in the ledger $((SECONDS - started)) s after the start"
unrelayed() { sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL'; }
wait_for 180 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')\" = 0 ]" ||
    fail "outbox not drained: $(unrelayed) rows left: $(grep -h relay "$WORK"/*.log | tail -3)"
note "outbox relayed $((SECONDS - started)) s after the start; rows the broker refused (nack) and the relay deferred: $(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE publish_attempts > 1')"
dups=0
for name in first second late; do dups=$((dups + $(duplicates "$name"))); done
for pid in "$first_pid" "$second_pid" "$late_pid"; do
    kill -TERM "$pid"
    wait "$pid" || fail "a consumer's exit code after SIGTERM"
done
expect_exactly_once "$N" "$START"
expect_queue_empty
members=$(quorum_status orderq.order.processing 1 | json 'len(d)')
expect_eq 3 "$members" "replicas of orderq.order.processing after the restart"
note "$sent messages, $N effects; $dups duplicates found in the ledger ($((sent - N)) sent twice, $((dups - (sent - N))) redelivered after the kill); stall $stall s; total $((SECONDS - started)) s"
