#!/usr/bin/env bash
# db_failover.sh - the database away in the ways a shop meets it, with three
# consumers and their coupon mails, each order once, no mail twice, nothing
# dead-lettered but a mail whose send a crash left unknown:
#   - wait_timeout=2: the server closes every idle connection, again and
#     again (the quiet night, shortened);
#   - read_only for 15 s while 1,000 orders flow (a failover), and a
#     consumer killed with -9 while mail is going out, then started again;
#     the consumers run as a user with rights on their database only, since
#     root ignores read_only;
#   - MariaDB restarted while the consumers are idle and their coupon rules
#     cache has gone stale, then 500 orders.
# Runs alone (RUN_SERIAL): it changes global settings and restarts MariaDB.
source "$(dirname "$0")/lib.sh"
setup_consumer_test
need_maildev
top=$(cd "$(dirname "$0")/../.." && pwd)
# Short leases, so a send the crash leaves `sending` is settled in seconds.
export ORDERQ_SMTP_URL=smtp://127.0.0.1:1025 ORDERQ_SMTP_TLS=off \
    ORDERQ_SMTP_TIMEOUT_MS=2s ORDERQ_EFFECT_LEASE_MS=5s
CONSUME_QUEUES="orderq.order.processing orderq.coupon.email"
wait_timeout=$(sql -e 'SELECT @@GLOBAL.wait_timeout')
CLEANUP+=("bash -c 'source $top/deploy/local/lib.sh; oq_start_mariadb' >/dev/null 2>&1")
CLEANUP+=("sql -e 'SET GLOBAL read_only = 0; SET GLOBAL wait_timeout = $wait_timeout'")

# The consumers run as the test's MySQL user (need_mysql): row rights on
# the test database, nothing more, so read_only applies to them.

events() { gen_events "$1" --start "$2" | sed "s/@example\.com/@db-failover-$$.example/g"; }
count() { sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE $1"; }
orders() { count "handler = 'coupon_rules'"; }
mails() { count "handler = 'coupon_mail' AND state = 'sent'"; }
unknown() { count "handler = 'coupon_mail' AND state = 'unknown'"; }
settled() { [ "$(orders)" -ge "$1" ] && [ $(($(mails) + $(unknown))) -ge "$1" ]; }
logs() { tail -n 4 "$WORK"/c*.log; }
kill_orderq_connections() {
    local id
    for id in $(sql -e "SELECT id FROM information_schema.processlist WHERE user = '$MYSQL_USER'"); do
        sql -e "KILL $id" 2>/dev/null || true
    done
}

pids=()
for c in 1 2 3; do
    start_consumer "c$c" --db-workers 2 --effect-workers 2
    pids+=("$consumer_pid")
done
total=0
publish() { # publish N events, the next numbers
    events "$1" $((9400000000 + total)) >"$WORK/e.jsonl"
    oq publish "$WORK/e.jsonl" >/dev/null
    total=$((total + $1))
}

note "wait_timeout=2: idle connections closed by the server, three times"
sql -e "SET GLOBAL wait_timeout = 2"
kill_orderq_connections # so every connection is opened anew under wait_timeout=2
publish 30
wait_for 60 settled "$total" || fail "not settled under wait_timeout=2: $(orders) orders, $(mails) mails of $total: $(logs)"
sql -e "SET GLOBAL wait_timeout = $wait_timeout" # the open connections keep 2 s
for _ in 1 2; do
    sleep 6 # past wait_timeout, and past the rules cache's 5 s
    publish 30
    wait_for 60 settled "$total" || fail "stalled after an idle spell: $(orders) orders, $(mails) mails of $total: $(logs)"
done

note "read_only for 15 s while 1,000 orders flow, a consumer killed -9 as mail goes out"
publish 1000
sleep 1
kill -9 "${pids[1]}"
sql -e "SET GLOBAL read_only = 1"
start_consumer c4 --db-workers 2 --effect-workers 2
pids[1]=$consumer_pid
sleep 15
sql -e "SET GLOBAL read_only = 0"
wait_for 120 settled "$total" || fail "not settled after read_only: $(orders) orders, $(mails) mails of $total: $(logs)"
grep -q 'waits for MySQL' "$WORK"/c*.log || fail "no consumer logged the wait for MySQL"

note "MariaDB restarted while idle, the rules cache stale"
sleep 6
mariadb-admin --socket="$SOCK" shutdown
sleep 2
bash -c "source '$top/deploy/local/lib.sh'; oq_start_mariadb" >/dev/null
publish 500
wait_for 120 settled "$total" || fail "stalled after the restart: $(orders) orders, $(mails) mails of $total: $(logs)"

for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "a consumer exited non-zero"; done
wait_drained
expect_eq "$total" "$(orders)" "orders in the ledger"
expect_eq "$total" "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons"
expect_eq "$total" "$(sql "$DB" -e 'SELECT COUNT(DISTINCT order_id) FROM coupon')" "orders with a coupon"
expect_eq "$total" "$(count "handler = 'coupon_mail'")" "coupon mail rows"
expect_eq "$total" $(($(mails) + $(unknown))) "coupon mails sent, or unknown after the crash"
expect_eq "$(unknown)" "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE error_class = 'ambiguous'")" "ambiguous dead letters (one per unknown mail)"
expect_eq "$(unknown)" "$(sql "$DB" -e 'SELECT COUNT(*) FROM dead_letter')" "dead letters: $(sql "$DB" -e "SELECT error FROM dead_letter WHERE error_class <> 'ambiguous' LIMIT 3")"
twice=$(curl -sf "$MAILDEV/email" | "$PY" -c 'import collections, json, sys
ours = [m for m in json.load(sys.stdin) if any(t["address"].endswith(sys.argv[1]) for t in m["to"])]
n = collections.Counter(m["messageId"] for m in ours)  # one Message-ID per coupon mail
print(sum(1 for c in n.values() if c > 1), len(ours))' "@db-failover-$$.example")
read -r dup held <<<"$twice"
expect_eq 0 "$dup" "mails sent twice (by Message-ID)"
# an unknown one may or may not have gone out before the kill
[ "$held" -ge "$(mails)" ] && [ "$held" -le $(($(mails) + $(unknown))) ] ||
    fail "MailDev holds $held mails; sent $(mails), unknown $(unknown)"
note "mails the crash left unknown (parked for a person): $(unknown)"
expect_eq 0 "$(queue_ready orderq.dead)" "dead letters waiting"
expect_queue_empty
expect_eq 0 "$(queue_ready orderq.coupon.email)" "coupon mails left"
