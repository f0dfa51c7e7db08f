#!/usr/bin/env bash
# mail_group.sh - leases and `sent` marks of many mails go in one statement
# (effects.c's group commit): 200 coupon mails through `orderq consume
# --effect-workers 8` arrive once each, with at most one lease INSERT per
# two mails and half the old statements, counted by a MariaDB of the
# test's own (the shared one's counters are everyone's), and workers that
# lease ahead: most mails' leases were committed before their worker's
# previous mail was marked `sent` (a worker that waited for each group
# could never do that: it asked the next lease with the last mark); then a
# consumer killed with -9 mid-stream leaves no `sent` row without its
# mail, and at most 5 rows per worker in `sending` (2 leased ahead, the
# mail being sent, 2 marks not yet committed: docs/mail.md); then, with a
# row locked by another session for 40 s, the other mails are sent within
# seconds, with 8 workers and with one. The SMTP server is the fixture
# in record mode (every mail with its recipient): faster than MailDev, so
# the ledger is what the workers wait for, the load groups are for. (With
# a server slower than the ledger, rows come one at a time and are written
# at once: nothing waits to be grouped.)
source "$(dirname "$0")/lib.sh"
need_rabbitmq
start_own_mariadb --skip-networking
my -e "CREATE DATABASE orderq_group CHARACTER SET utf8mb4;
       CREATE USER 'oq'@'localhost' IDENTIFIED BY 'pw-group';
       GRANT ALL ON orderq_group.* TO 'oq'@'localhost';"
export ORDERQ_MYSQL_URL="mysql://oq:pw-group@localhost/orderq_group?socket=$MY/sock"
MIGRATE_MYSQL_URL=$ORDERQ_MYSQL_URL
oq migrate >/dev/null 2>&1 || fail "migrate"
oq topology declare --create-shop-exchange >/dev/null || fail "topology declare"
"$PY" "$(dirname "$0")/smtp_fixture.py" --port-file "$WORK/smtp-port" --mode record \
    --record-file "$WORK/mailed.tsv" &
CLEANUP+=("kill $!")
wait_for 10 test -s "$WORK/smtp-port" || fail "the SMTP fixture did not start"
touch "$WORK/mailed.tsv"
export ORDERQ_SMTP_URL="smtp://127.0.0.1:$(cat "$WORK/smtp-port")" ORDERQ_SMTP_TLS=off ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>'
N=200

# mails PREFIX N: N coupon.email events, coupon codes PREFIX-0..N-1, each
# to CODE@mail-group.example (the fixture records the recipient)
mails() {
    "$PY" - "$1" "$2" <<'PY'
import json, sys
prefix, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    print(json.dumps({"event_code": "coupon.email", "event_identifier": f"{prefix}-{i}_mail",
        "event_data": {"order_id": str(i), "coupon_code": f"{prefix}-{i}", "discount_type": "fixed",
                       "discount": "10.00", "currency": "USD", "expires_at": "2027-01-31T00:00:00Z",
                       "customer": {"email": f"{prefix}-{i}@mail-group.example"}}}))
PY
}
status() { my -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_insert', 'Com_update', 'Com_commit')" | awk '{printf "%s=%s ", $1, $2}'; }
ledger() { my orderq_group -e "$1"; }
sent_is() { [ "$(ledger "SELECT COUNT(*) FROM event_ledger WHERE state = 'sent'")" = "$1" ]; }
# The coupon codes mailed with prefix $1 (one a line, sorted; a code
# twice is a mail sent twice), from the fixture's lines "<id>\tCODE@...".
codes_mailed() { awk -F '\t' -v p="$1-" 'index($2, p) == 1 { sub(/@.*/, "", $2); print $2 }' "$WORK/mailed.tsv" | sort; }
mailed_at_least() { [ "$(codes_mailed "$1" | wc -l)" -ge "$2" ]; }
sent_at_least() { [ "$(ledger "SELECT COUNT(*) FROM event_ledger WHERE effect_key LIKE 'coupon:$1-%' AND state = 'sent'")" -ge "$2" ]; }

note "$N coupon mails, 8 effect workers: each once, leases and marks grouped"
mails G "$N" >"$WORK/mails.jsonl"
oq publish "$WORK/mails.jsonl" >/dev/null || fail "publish"
before=$(status)
CONSUME_QUEUES=orderq.coupon.email start_consumer group --effect-workers 8
wait_for 120 sent_is "$N" ||
    fail "sent: $(ledger "SELECT state, COUNT(*) FROM event_ledger GROUP BY state"); log: $(tail -5 "$WORK/group.log")"
kill -TERM "$consumer_pid" && wait "$consumer_pid" || true
after=$(status)
wait_for 30 mailed_at_least G "$N" || true
expect_eq "$N" "$(codes_mailed G | wc -l)" "mails taken by the SMTP server"
expect_eq "$N" "$(codes_mailed G | uniq | wc -l)" "distinct coupon codes mailed"
expect_eq "$N" "$(ledger "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_mail' AND state = 'sent'")" "sent rows"
read -r inserts updates commits < <("$PY" - "$before" "$after" <<'PY'
import sys
b, a = (dict(kv.split("=") for kv in s.split()) for s in sys.argv[1:3])
print(*(int(a[k]) - int(b[k]) for k in ("Com_insert", "Com_update", "Com_commit")))
PY
)
echo "per $N mails: $inserts INSERTs (leases), $updates UPDATEs (sent marks), $commits COMMITs"
# one lease INSERT, one UPDATE and one COMMIT per mail before the group
# commit (600 for 200 mails): now at most three lease INSERTs per four
# mails (30 to 105 seen here: how many group together depends on the
# load), and all three together fewer than two thirds of the old (150 to
# 303 seen, 303 in a CI run beside other tests)
[ $((inserts * 4)) -le $((N * 3)) ] || fail "lease INSERTs: $inserts for $N mails; expected at most $((N * 3 / 4))"
[ $((inserts + updates + commits)) -lt $((2 * N)) ] ||
    fail "INSERT + UPDATE + COMMIT: $((inserts + updates + commits)) for $N mails; expected fewer than $((2 * N)) (3 a mail before the group commit)"
# Per worker (the owner up to its last /), mails in lease order: a lease
# created (its INSERT's NOW(6)) before the previous mail's `sent` UPDATE
# was asked ahead, while that mail was still being sent.
ahead=$(ledger "SELECT COUNT(*) FROM (SELECT created_at, LAG(executed_at) OVER (PARTITION BY
        SUBSTRING_INDEX(owner, '/', 2) ORDER BY created_at) AS prev_sent FROM event_ledger
        WHERE effect_key LIKE 'coupon:G-%') t WHERE created_at < prev_sent")
echo "leased before the worker's previous mail was marked sent: $ahead of $N"
[ $((ahead * 2)) -ge "$N" ] ||
    fail "leases asked ahead: $ahead of $N mails; expected at least $((N / 2)) (each worker waits for its last mark before it asks the next lease?)"

note "kill -9 mid-stream: no sent row without its mail, at most 5 per worker left sending"
mails K $((20 * N)) >"$WORK/kill.jsonl" # enough that the kill lands mid-stream (1,000 were all sent before it once)
oq publish "$WORK/kill.jsonl" >/dev/null || fail "publish"
CONSUME_QUEUES=orderq.coupon.email start_consumer kill --effect-workers 8
wait_for 60 sent_at_least K 40 ||
    fail "no mails sent before the kill: $(tail -5 "$WORK/kill.log")"
kill -9 "$consumer_pid"
wait "$consumer_pid" 2>/dev/null || true
ledger "SELECT SUBSTRING(effect_key, 8) FROM event_ledger WHERE effect_key LIKE 'coupon:K%' AND state = 'sent'" | sort >"$WORK/sent"
codes_mailed K >"$WORK/mailed"
missing=$(comm -23 "$WORK/sent" "$WORK/mailed")
[ -z "$missing" ] || fail "sent in the ledger, never mailed: $missing"
sending=$(ledger "SELECT COUNT(*) FROM event_ledger WHERE effect_key LIKE 'coupon:K%' AND state = 'sending'")
[ "$sending" -le 40 ] ||
    fail "$sending rows left sending after the kill; expected at most 40 (8 workers, 5 each)"
expect_eq 0 "$(ledger "SELECT COUNT(*) FROM event_ledger WHERE state NOT IN ('sent', 'sending')")" "rows in other states"
echo "after the kill: $(wc -l <"$WORK/sent") sent (each mailed), $sending sending"
[ "$(wc -l <"$WORK/sent")" -lt $((20 * N)) ] || fail "all $((20 * N)) mails were sent before the kill: it tested nothing"

# lock_taken PREFIX: the session locking PREFIX-0's row sleeps
lock_taken() { [ "$(my -e "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(40), ''$1'''")" = 1 ]; }
# locked_row PREFIX WORKERS OTHERS: PREFIX-0's ledger row is locked by
# another session for 40 s (as an operator's open transaction would); then
# PREFIX-0 and OTHERS more mails are consumed with WORKERS effect workers.
# Every other mail must be sent within 15 s: neither the group writer nor
# a worker may wait out that lock with mails in hand.
locked_row() {
    local prefix=$1 workers=$2 others=$3 t0
    kill -9 "$consumer_pid" 2>/dev/null || true
    mgmt DELETE "/api/queues/$(urlenc "$VHOST")/orderq.coupon.email/contents" >/dev/null
    ledger "INSERT INTO event_ledger (handler, effect_key, event_identifier, event_code, owner, state, lease_until)
            VALUES ('coupon_mail', 'coupon:$prefix-0', '$prefix-0_mail', 'coupon.email', 'elsewhere', 'sending', NOW(6) - INTERVAL 1 HOUR)"
    ledger "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION;
            SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_mail' AND effect_key = 'coupon:$prefix-0' FOR UPDATE;
            SELECT SLEEP(40), '$prefix'; COMMIT" >/dev/null 2>&1 &
    CLEANUP+=("kill $!")
    wait_for 10 lock_taken "$prefix" ||
        fail "the row lock was never taken"
    mails "$prefix" $((others + 1)) >"$WORK/locked-$prefix.jsonl" # $prefix-0 first
    oq publish "$WORK/locked-$prefix.jsonl" >/dev/null || fail "publish"
    CONSUME_QUEUES=orderq.coupon.email start_consumer "locked-$prefix" --effect-workers "$workers"
    t0=$SECONDS
    wait_for 15 sent_at_least "$prefix" "$others" ||
        fail "$(ledger "SELECT COUNT(*) FROM event_ledger WHERE effect_key LIKE 'coupon:$prefix-%' AND state = 'sent'") of the $others mails beside the locked row sent in 15 s with $workers effect workers: a wait on one row lock held the others"
    echo "the $others others sent within $((SECONDS - t0)) s while $prefix-0's row stayed locked"
    kill -9 "$consumer_pid"
}

note "one row locked elsewhere: the group writer gives it up after 2 s, the other mails go on"
# A group waits for its slowest row, and every worker waits for the writer:
# a row lock held by another session must not hold them all for
# innodb_lock_wait_timeout (50 s).
locked_row L 8 40
note "the same with one effect worker: its lone lease of the locked row gives up too"
# The group's rows are then leased one by one, each by its worker: the
# worker asking the locked row's must not wait out the lock either, with
# the mails it took ahead (here: every other mail) waiting behind it.
locked_row M 1 10
