#!/usr/bin/env bash
# galera.sh - orderq against a 3-node MariaDB Galera cluster of the test's
# own (mariadbd with galera-4 on 127.0.0.1: own data directories, sockets,
# MySQL, group, IST and SST ports; node 1 bootstraps, 2 and 3 join by rsync
# SST). The shared MariaDB is not touched; RabbitMQ is the shared one, in a
# vhost of the test's own.
#   1. A node that is not ready (cut off from the primary component with
#      gmcast.isolate) is passed over: migrate and a consumer with it first
#      in mysql_url use the next host, and a consumer already on it moves.
#   2. Four consumers, their mysql_url lists starting at different nodes,
#      drain events that are each published twice back to back, so the two
#      claims of one event land on different nodes: Galera refuses one at
#      COMMIT (1213), orderq redoes the batch and finds the duplicate.
#      Mid-run the node two consumers use is killed with -9; they move on,
#      the node is started again and rejoins (IST). Every event takes effect
#      once, on every node; the outbox drains; nothing is dead-lettered.
source "$(dirname "$0")/lib.sh"

# events; each is published twice. Node 2 is killed at N/8 rows: enough
# left that the kill lands mid-load on a busy host (CI once saw the 2,000
# events of an earlier N all done, at N/4, before the kill came)
N=${GALERA_EVENTS:-4000}
START=9800000000
# The nodes run as mysql: the rsync daemon of an SST runs as the server's
# user and, started by root, would write as nobody. So their files live
# outside $WORK (root's, mode 700).
G=$(mktemp -d /tmp/oq-galera.XXXXXX)
CLEANUP+=("rm -rf $G")
chown mysql:mysql "$G"
declare -a PORT GCOMM IST SST PID
for i in 1 2 3; do
    PORT[i]=$(free_port)
    GCOMM[i]=$(free_port)
    IST[i]=$(free_port)
    SST[i]=$(free_port)
done
members="gcomm://127.0.0.1:${GCOMM[1]},127.0.0.1:${GCOMM[2]},127.0.0.1:${GCOMM[3]}"

# start_node I [ARGS...]: node I in the background, in a process group of
# its own ($PID[i]), so that kill -9 of the group is the node dying at once.
start_node() {
    local i=$1; shift
    install -d -o mysql -g mysql "$G/n$i" "$G/n$i/data"
    setsid mariadbd --no-defaults --user=mysql --datadir="$G/n$i/data" --socket="$G/n$i/sock" \
        --port="${PORT[i]}" --bind-address=127.0.0.1 --pid-file="$G/n$i/pid" \
        --log-error="$G/n$i/error.log" --innodb-buffer-pool-size=32M --skip-name-resolve=0 \
        --binlog-format=ROW --innodb-autoinc-lock-mode=2 --innodb-flush-log-at-trx-commit=2 \
        --wsrep-on=ON --wsrep-provider=/usr/lib/galera/libgalera_smm.so \
        --wsrep-cluster-name="oqg-$$" --wsrep-cluster-address="$members" \
        --wsrep-node-name="n$i" --wsrep-node-address=127.0.0.1 \
        --wsrep-node-incoming-address="127.0.0.1:${PORT[i]}" \
        --wsrep-provider-options="gmcast.listen_addr=tcp://127.0.0.1:${GCOMM[i]};ist.recv_addr=127.0.0.1:${IST[i]};gcache.size=64M" \
        --wsrep-sst-method=rsync --wsrep-sst-receive-address="127.0.0.1:${SST[i]}" \
        "$@" </dev/null >>"$G/n$i/out.log" 2>&1 &
    PID[i]=$!
    CLEANUP+=("stop_group ${PID[i]}")
}
gq() { local i=$1; shift; mariadb --no-defaults --socket="$G/n$i/sock" -uroot -N -B "$@"; }
status() { gq "$1" -e "SHOW STATUS LIKE '$2'" | cut -f2; }
# ready I [SIZE]: node I is synced, ready, in a primary component of SIZE (default 3)
ready() {
    [ "$(status "$1" wsrep_ready)" = ON ] && [ "$(status "$1" wsrep_cluster_size)" = "${2:-3}" ] &&
        [ "$(status "$1" wsrep_local_state_comment)" = Synced ]
}

note "three Galera nodes of our own"
started=$SECONDS
install -d -o mysql -g mysql "$G/n1"
mariadb-install-db --no-defaults --user=mysql --datadir="$G/n1/data" --skip-test-db \
    --auth-root-authentication-method=socket >"$G/install.log" 2>&1 ||
    fail "mariadb-install-db: $(tail -5 "$G/install.log")"
start_node 1 --wsrep-new-cluster
wait_for 60 ready 1 1 || fail "node 1 did not bootstrap: $(tail -5 "$G/n1/error.log")"
for i in 2 3; do
    start_node "$i"
    wait_for 90 ready "$i" "$i" || fail "node $i did not join: $(tail -5 "$G/n$i/error.log")"
done
echo "    cluster of $(status 1 wsrep_cluster_size) formed after $((SECONDS - started)) s"

# The test's database and users on the cluster: lib.sh's `sql` and
# need_mysql work through SOCK, node 1's socket (node 2 is the one killed).
SOCK="$G/n1/sock"
need_mysql
need_rabbitmq
tcp() { echo "mysql://$1:$TEST_PASSWORD@127.0.0.1:${PORT[$2]}/$DB"; }
# hosts USER A B C: mysql_url listing nodes A, B, C in that order
hosts() { echo "$(tcp "$1" "$2"),$(tcp "$1" "$3"),$(tcp "$1" "$4")"; }
export ORDERQ_CONNECT_TIMEOUT_MS=3s
export ORDERQ_MYSQL_URL
ORDERQ_MYSQL_URL=$(hosts "$MYSQL_USER" 1 2 3)
MIGRATE_MYSQL_URL=$(hosts "$MYSQL_MIGRATE_USER" 1 2 3)

oq migrate >/dev/null 2>&1
oq topology declare --create-shop-exchange >/dev/null
load_test_rule

CONSUME_QUEUES=orderq.order.processing
declare -A HTTP
# consumer NAME A B C [ARGS...]: orderq consume with mysql_url listing nodes
# A, B, C in that order, serving /metrics
consumer() {
    local name=$1 a=$2 b=$3 c=$4; shift 4
    HTTP[$name]=127.0.0.1:$(free_port)
    ORDERQ_MYSQL_URL=$(hosts "$MYSQL_USER" "$a" "$b" "$c") \
        start_consumer "$name" --batch-size 50 --prefetch 200 --http-addr "${HTTP[$name]}" "$@"
}
metric() { curl -sf "http://${HTTP[$1]}/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
ledger_rows() { sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger'; }

note "a consumer working on node 3 (first in its list)"
consumer on3 3 1 2
on3_pid=$consumer_pid
gen_events 5 --start 9700000000 | oq publish >/dev/null
wait_ledger 5 30 || fail "the consumer on node 3 processed $(ledger_rows) of 5: $(tail -3 "$WORK/on3.log")"

note "node 3 cut off from the others (gmcast.isolate): not ready, it answers 1047"
gq 3 -e "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'"
wait_for 30 bash -c "[ \"\$(mariadb --no-defaults --socket=$G/n3/sock -uroot -N -B -e \"SHOW STATUS LIKE 'wsrep_ready'\" | cut -f2)\" = OFF ]" ||
    fail "node 3 still ready after being isolated"
wait_for 30 ready 1 2 || fail "nodes 1 and 2 did not go on as a primary component of 2"

note "migrate with node 3 first in mysql_url passes it over"
try env ORDERQ_MYSQL_URL="$(hosts "$MYSQL_MIGRATE_USER" 3 1 2)" "$ORDERQ_BIN" migrate
expect_eq 0 "$rc" "migrate with the isolated node 3 first in mysql_url: $out"
expect_contains "connected to host 2 of 3 after passing over: host 1 of 3: MySQL at 127.0.0.1 (database $DB) is a Galera node that is not ready (wsrep_ready OFF" "$out" "migrate's note of the node passed over"

note "the consumer that was on node 3 moves to node 1"
gen_events 20 --start 9700000005 | oq publish >/dev/null
wait_ledger 25 30 || fail "the consumer that was on node 3 processed $(($(ledger_rows) - 5)) of 20 after node 3 was cut off: $(tail -3 "$WORK/on3.log")"
# Which note depends on the thread: one that held a connection to node 3
# hears its 1047; one that connects afterwards passes node 3 over.
grep -qE "WSREP has not yet prepared node for application use|is a Galera node that is not ready \(wsrep_ready OFF" "$WORK/on3.log" ||
    fail "the consumer's note of node 3's refusal: neither the 1047 nor the pass-over in: $(cat "$WORK/on3.log")"
# Every failure names its cause (the relay once logged a bare "failed").
if grep -q '"outbox relay: failed"' "$WORK/on3.log"; then
    fail "the outbox relay logged a failure without its cause: $(grep 'outbox relay' "$WORK/on3.log")"
fi
kill -TERM "$on3_pid"
wait "$on3_pid" || fail "the exit code of the consumer that was on node 3, after SIGTERM"
sql "$DB" -e "DELETE FROM event_ledger; DELETE FROM coupon; DELETE FROM outbox"
mgmt DELETE "/api/queues/$(urlenc "$VHOST")/orderq.coupon.email/contents" >/dev/null

gq 3 -e "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'"
wait_for 60 ready 3 || fail "node 3 did not rejoin: $(tail -5 "$G/n3/error.log")"
note "node 3 is back in the cluster"

# ---- load: every event twice at once, consumers on different nodes ------
# Back to back in the queue, the two copies of an event go to two
# consumers (RabbitMQ hands messages round the consumers with room in
# their prefetch), each in a batch on its own node.
gen_events "$N" --start "$START" | awk '{print; print}' >"$WORK/events.jsonl"
sent=$(wc -l <"$WORK/events.jsonl")
note "$sent messages for $N events, 4 consumers: two start at node 2, one at node 1, one at node 3"
pids=()
for spec in "c1 1 2 3" "c2 2 3 1" "c3 3 1 2" "c4 2 1 3"; do
    # shellcheck disable=SC2086 # a name and three node numbers
    consumer $spec
    pids+=("$consumer_pid")
done
# all four subscribed first, or both copies could go to one consumer
all_consuming() { [ "$(consumers_on orderq.order.processing)" -ge 4 ] 2>/dev/null; }
wait_for 60 all_consuming || fail "consumers on orderq.order.processing: $(consumers_on orderq.order.processing) of 4"
load_started=$SECONDS
oq publish "$WORK/events.jsonl" >"$WORK/publish.out" 2>&1 &
publisher=$!
CLEANUP+=("kill -9 $publisher")
wait_ledger $((N / 8)) 120 || fail "no progress on the cluster ($(ledger_rows) rows): $(tail -3 "$WORK/c1.log")"

# The effects c2 and c4 (on node 2) committed until now: effects, not
# batches, since a batch of duplicates only writes nothing and commits at
# once while the cluster cannot certify writes.
effects() { metric_sum "${HTTP[$1]}" orderq_outcomes_total outcome=done; }
since_kill() { "$PY" -c "import sys, time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$killed_at"; }
e2=$(effects c2) e4=$(effects c4)
before=$(ledger_rows)
kill -9 -- "-${PID[2]}"
killed_at=$(date +%s.%N)
wait "${PID[2]}" 2>/dev/null || true # reaped here, so bash does not report it
note "killed node 2 at $before ledger rows"
# The stall: every write waits until the survivors drop the dead node
# from the cluster (evs.suspect_timeout), whichever node it goes to. The
# ledger's count, sampled for 30 s from the kill; its longest pause is it.
(
    end=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$end" ]; do
        echo "$(date +%s.%N) $(ledger_rows)"
        sleep 0.1
    done
) >"$WORK/ledger.trace" 2>/dev/null &
sampler=$!
CLEANUP+=("kill $sampler")
wait_for 60 bash -c "[ \"\$(mariadb --no-defaults --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM event_ledger')\" -gt $((before + 100)) ]" ||
    fail "no progress after node 2 died ($(ledger_rows) rows): $(tail -3 "$WORK/c1.log")"
moved() { [ "$(effects c2)" -gt "$e2" ] && [ "$(effects c4)" -gt "$e4" ]; }
wait_for 60 moved || fail "c2 or c4 did not move off the dead node 2 (effects $e2 -> $(effects c2), $e4 -> $(effects c4)): $(tail -3 "$WORK/c2.log")"
moved_after=$(since_kill)
note "c2 and c4 commit effects on other nodes $moved_after s after the kill"

start_node 2
wait_for 120 ready 2 || fail "node 2 did not rejoin: $(tail -5 "$G/n2/error.log")"
how=SST
grep -q "IST received" "$G/n2/error.log" && how=IST
note "node 2 rejoined by $how $((SECONDS - load_started)) s into the load"

wait "$sampler" || true
stall=$("$PY" - "$killed_at" "$WORK/ledger.trace" <<'PY'
import sys
last_t, last_n, longest = float(sys.argv[1]), None, 0.0
for line in open(sys.argv[2]):
    t, n = line.split()
    t, n = float(t), int(n)
    if n != last_n:
        if last_n is not None:
            longest = max(longest, t - last_t)
        last_t, last_n = t, n
print("%.1f" % longest)
PY
)
note "the longest pause of the ledger in the 30 s after the kill: $stall s"
wait "$publisher" || fail "publish failed: $(tail -3 "$WORK/publish.out")"
wait_ledger "$N" 180 || fail "only $(ledger_rows) of $N processed: $(tail -3 "$WORK/c1.log")"
wait_drained
conflicts=0 dups=0
for c in c1 c2 c3 c4; do
    conflicts=$((conflicts + $(metric "$c" orderq_mysql_conflicts_total)))
    dups=$((dups + $(metric_sum "${HTTP[$c]}" orderq_outcomes_total outcome=duplicate)))
done
for pid in "${pids[@]}"; do
    kill -TERM "$pid"
done
for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
done
expect_exactly_once "$N" "$START"
expect_queue_empty
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters"
expect_eq 0 "$(queue_ready orderq.dead)" "messages in orderq.dead"
for i in 1 2 3; do
    wait_for 10 bash -c "[ \"\$(mariadb --no-defaults --socket=$G/n$i/sock -uroot -N -B $DB -e 'SELECT COUNT(*) FROM event_ledger')\" = $N ]" ||
        fail "node $i has $(gq "$i" "$DB" -e 'SELECT COUNT(*) FROM event_ledger') ledger rows, expected $N"
done
[ "$dups" -ge $((sent - N)) ] || fail "$dups duplicates found for $((sent - N)) events sent twice"
# The point of the test: claims of one event did conflict on two nodes,
# and were redone (hundreds per run here; 0 only if nothing conflicted).
[ "$conflicts" -ge 1 ] || fail "no transaction redone after a 1213: the copies of an event never met on two nodes"
# Relays on two nodes could both take an outbox row (SKIP LOCKED locks on
# one node only): 2,297-3,159 rows of 2,000 published twice before the
# relay claimed its rows in a commit of its own. Now only a relay killed
# between its claim and its mark leaves rows to publish again: at most
# one batch (500).
relayed=$(queue_ready orderq.coupon.email)
[ "$relayed" -ge "$N" ] || fail "orderq.coupon.email holds $relayed messages for $N outbox rows"
[ "$((relayed - N))" -le 500 ] || fail "$((relayed - N)) outbox rows published twice (relays on two nodes took the same rows)"
note "$sent messages, $N effects on each node; $dups duplicates found in the ledger; $conflicts transactions redone after 1213; ledger stalled $stall s, c2 and c4 moved after $moved_after s; node 2 back by $how; $((relayed - N)) outbox rows published twice; load $((SECONDS - load_started)) s, total $((SECONDS - started)) s"
