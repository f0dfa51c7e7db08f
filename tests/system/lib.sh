# lib.sh - shared by the system tests: real servers, a throwaway vhost and
# database per test, cleanup on exit. Sourced, not run.
#
# A missing server fails the test when CI is set (a skipped system test
# proves nothing) and skips it (exit 77) on a developer's machine.
set -euo pipefail

ORDERQ_BIN=${ORDERQ_BIN:?ORDERQ_BIN must point at the orderq binary}
PY=/usr/bin/python3 # Debian's, with the json module; the PATH one may differ
MGMT=${ORDERQ_TEST_MGMT:-http://127.0.0.1:15672}
MGMT_AUTH=${ORDERQ_TEST_MGMT_AUTH:-guest:guest}
SOCK=${ORDERQ_TEST_MYSQL_SOCKET:-/run/mysqld/mysqld.sock}
TEST_NAME=$(basename "$0" .sh)
TEST_ID="${TEST_NAME//[^a-z0-9]/_}_$$"
VHOST="orderq-test-$TEST_ID"
DB="oqt_$TEST_ID"
WORK=$(mktemp -d)
declare -a CLEANUP=()

# Run cleanup steps in reverse order, whatever happened.
on_exit() {
    local rc=$?
    for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do eval "${CLEANUP[i]}" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
    if [ "$rc" -eq 0 ]; then echo "PASS $TEST_NAME"; elif [ "$rc" -ne 77 ]; then echo "FAIL $TEST_NAME (exit $rc)"; fi
    exit "$rc"
}
trap on_exit EXIT
[ -n "${KEEP_LOGS:-}" ] && CLEANUP+=("cp -r \"$WORK\" /tmp/x/last")

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

unreachable() {
    if [ -n "${CI:-}" ]; then fail "$1 is unreachable (CI is set, so this fails instead of skipping)"; fi
    echo "SKIP: $1 is unreachable (start it with deploy/local/run, or set CI to make this a failure)"
    exit 77
}

mgmt() { # mgmt METHOD PATH [JSON BODY] -> body on stdout; fails on HTTP >= 400
    curl -sS --fail-with-body -u "$MGMT_AUTH" -X "$1" -H 'content-type: application/json' \
        ${3:+--data "$3"} "$MGMT$2"
}

sql() { mariadb --socket="$SOCK" -uroot -N -B "$@"; }

# try CMD...: run CMD without stopping on failure; its stdout and stderr
# end up in $out, its exit code in $rc.
try() {
    set +e
    out=$("$@" 2>&1)
    rc=$?
    set -e
}

# Assert helpers: expect_eq WANT GOT WHAT
expect_eq() { [ "$1" = "$2" ] || fail "$3: expected [$1], got [$2]"; }

# metric_sum HOST:PORT NAME [label=value ...]: the sum of NAME's series in a
# scrape of /metrics whose labels hold each label="value" (0 when none).
metric_sum() {
    local addr=$1 name=$2; shift 2
    curl -sf "http://$addr/metrics" | awk -v m="$name" -v want="$*" '
        BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { split(w[i], kv, "="); w[i] = kv[1] "=\"" kv[2] "\"" } }
        $1 == m || index($1, m "{") == 1 { for (i = 1; i <= n; i++) if (!index($1, w[i])) next; s += $2 }
        END { printf "%.0f\n", s }'
}
expect_contains() { grep -qF -- "$1" <<<"$2" || fail "$3: expected to find [$1] in: $2"; }

# The users a test runs orderq as: least privilege, the rights in
# deploy/local/privileges.sh, one set per test (names and the password made
# here, nowhere else; the test's own checks still use root via `sql` and
# guest via `mgmt` and pika):
#   MYSQL_USER          orderq's: rows of $DB only      -> ORDERQ_MYSQL_URL
#   MYSQL_MIGRATE_USER  migrate's: the schema of $DB    -> MIGRATE_MYSQL_URL
#   AMQP_USER           orderq's on $VHOST              -> ORDERQ_AMQP_URL
#   SHOP_USER           the shop's: writes to shop.events only -> SHOP_AMQP_URL
#                       (and OQ_TEST_SHOP_USER, OQ_TEST_PASSWORD for pika)
# `oq migrate` runs as MYSQL_MIGRATE_USER and `oq publish` as SHOP_USER, as
# they would in production; `oq` runs everything else as orderq's users.
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/local/privileges.sh"
MYSQL_USER="oqt_$TEST_ID"
MYSQL_MIGRATE_USER="oqm_$TEST_ID"
AMQP_USER="orderq-$TEST_ID"
SHOP_USER="shop-$TEST_ID"
TEST_PASSWORD=$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')

need_mysql() {
    sql -e 'SELECT 1' >/dev/null 2>&1 || unreachable "MariaDB at $SOCK"
    sql -e "CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4"
    CLEANUP+=("sql -e 'DROP DATABASE IF EXISTS \`$DB\`'")
    CLEANUP+=("sql -e \"DROP USER IF EXISTS '$MYSQL_USER'@'localhost', '$MYSQL_MIGRATE_USER'@'localhost'\"")
    sql -e "CREATE USER '$MYSQL_USER'@'localhost' IDENTIFIED BY '$TEST_PASSWORD';
            GRANT $OQ_MYSQL_CONSUMER_GRANTS ON \`$DB\`.* TO '$MYSQL_USER'@'localhost';
            CREATE USER '$MYSQL_MIGRATE_USER'@'localhost' IDENTIFIED BY '$TEST_PASSWORD';
            GRANT $OQ_MYSQL_MIGRATE_GRANTS ON \`$DB\`.* TO '$MYSQL_MIGRATE_USER'@'localhost'"
    export ORDERQ_MYSQL_URL="mysql://$MYSQL_USER:$TEST_PASSWORD@localhost/$DB?socket=$SOCK"
    MIGRATE_MYSQL_URL="mysql://$MYSQL_MIGRATE_USER:$TEST_PASSWORD@localhost/$DB?socket=$SOCK"
}

# amqp_user NAME TAGS CONFIGURE WRITE READ: a user of the test's vhost
# with these tags and permissions (regular expressions), deleted at exit.
amqp_user() {
    mgmt PUT "/api/users/$(urlenc "$1")" "{\"password\":\"$TEST_PASSWORD\",\"tags\":\"$2\"}" >/dev/null
    CLEANUP+=("mgmt DELETE /api/users/$(urlenc "$1")")
    amqp_permissions "$1" "$3" "$4" "$5"
}

# amqp_permissions USER CONFIGURE WRITE READ: set USER's permissions on
# the test's vhost (a test that takes a right away and gives it back).
amqp_permissions() {
    mgmt PUT "/api/permissions/$(urlenc "$VHOST")/$(urlenc "$1")" "$("$PY" -c 'import json, sys
print(json.dumps(dict(zip(("configure", "write", "read"), sys.argv[1:]))))' "$2" "$3" "$4")" >/dev/null
}

need_rabbitmq() {
    mgmt GET /api/overview >/dev/null 2>&1 || unreachable "RabbitMQ management API at $MGMT"
    local v
    v=$(urlenc "$VHOST")
    mgmt PUT "/api/vhosts/$v" '{}' >/dev/null
    CLEANUP+=("mgmt DELETE /api/vhosts/$v")
    mgmt PUT "/api/permissions/$v/guest" '{"configure":".*","write":".*","read":".*"}' >/dev/null
    amqp_user "$AMQP_USER" "$OQ_AMQP_ORDERQ_TAGS" "$OQ_AMQP_ORDERQ_CONFIGURE" "$OQ_AMQP_ORDERQ_WRITE" "$OQ_AMQP_ORDERQ_READ"
    amqp_user "$SHOP_USER" "$OQ_AMQP_SHOP_TAGS" "$OQ_AMQP_SHOP_CONFIGURE" "$OQ_AMQP_SHOP_WRITE" "$OQ_AMQP_SHOP_READ"
    export ORDERQ_AMQP_URL="amqp://$AMQP_USER:$TEST_PASSWORD@127.0.0.1:5672/$v"
    SHOP_AMQP_URL="amqp://$SHOP_USER:$TEST_PASSWORD@127.0.0.1:5672/$v"
    # for the tests' pika publishers that play the shop
    export OQ_TEST_SHOP_USER=$SHOP_USER OQ_TEST_PASSWORD=$TEST_PASSWORD
}

# lock_ledger SECONDS OUT: hold a WRITE lock on event_ledger for SECONDS in
# the background ($lock_pid), returning once it is held. Just before letting
# go, the holder writes the ledger's row count to OUT: a read from any other
# session would queue behind the lock and race the commits waiting there.
lock_ledger() {
    sql "$DB" -e "LOCK TABLES event_ledger WRITE; SELECT SLEEP($1); SELECT COUNT(*) FROM event_ledger; UNLOCK TABLES;" >"$2" &
    lock_pid=$!
    CLEANUP+=("kill $lock_pid")
    local held="SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP($1)'"
    wait_for 10 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B -e \"$held\")\" = 1 ]" ||
        fail "the ledger lock was never taken"
}

# consumers_on QUEUE: consumers on QUEUE in the test's vhost, as the
# management API reports them (its statistics lag by a few seconds).
consumers_on() { mgmt GET "/api/queues/$(urlenc "$VHOST")/$1" | json 'd.get("consumers", 0)'; }
consuming() { [ "$(consumers_on "$1")" -ge 1 ] 2>/dev/null; } # for wait_for

urlenc() { "$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# json EXPR < JSON: evaluate a Python expression over the parsed input `d`.
json() { "$PY" -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# A free TCP port on 127.0.0.1, below the kernel's ephemeral range
# (32768-60999): a port the kernel hands out can be taken by any outgoing
# connection between this check and the server's bind (a RabbitMQ node of
# amqp_nodes.sh once lost its distribution port that way).
free_port() {
    "$PY" - <<'PY'
import random, socket
for _ in range(200):
    port = random.randint(20000, 32767)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free port in 20000-32767")
PY
}

# wait_for SECONDS CMD...: poll until CMD succeeds, at most SECONDS.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# oq ARGS...: orderq as production runs it: migrate as the migration user,
# publish as the shop (when the test has them), the rest as orderq.
oq() {
    if [ "${1:-}" = migrate ] && [ -n "${MIGRATE_MYSQL_URL:-}" ]; then
        ORDERQ_MYSQL_URL=$MIGRATE_MYSQL_URL "$ORDERQ_BIN" "$@"
    elif [ "${1:-}" = publish ] && [ -n "${SHOP_AMQP_URL:-}" ]; then
        ORDERQ_AMQP_URL=$SHOP_AMQP_URL "$ORDERQ_BIN" "$@"
    else
        "$ORDERQ_BIN" "$@"
    fi
}

# The coupon rule every exactly-once test uses: 3 x 25.00 of MUG-1 earns it.
load_test_rule() {
    printf '%s' '[{"rule_id": 14, "promo_id": 1, "name": "Mugs over 50", "currency": "USD",
      "skus": ["MUG-1"], "threshold": "50.00",
      "coupon": {"discount_type": "fixed", "discount": "10.00", "valid_days": 30, "code_prefix": "MUG-"}}]' \
        >"$WORK/rule.json"
    oq rules load "$WORK/rule.json" >/dev/null
}

gen_events() { "$PY" "$(dirname "${BASH_SOURCE[0]}")/gen_events.py" "$@"; }

# Messages ready in queue $1 of the test vhost, asked of the queue itself
# (a passive queue.declare): exact, where the management API and
# rabbitmqctl report quorum queue figures seconds late. Call it when no
# consumer holds unacked messages, and it says what is left.
queue_ready() {
    "$PY" - "$VHOST" "$1" <<'PY'
import sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    print(conn.channel().queue_declare(sys.argv[2], passive=True).method.message_count)
PY
}

# start_link DELAY_MS [--swallow-close]: tests/system/slow_link.py in front
# of the shared broker (what the client sends arrives DELAY_MS late); LINK_URL
# is ORDERQ_AMQP_URL through it, and LINK_REPORT ($WORK/link.report for a
# test's first link, link2.report for its second, ...) gets "open" for each
# connection through it, and a line when it ends ("consume: fin after
# close-ok", ...).
LINKS=0
start_link() {
    local name=link
    LINKS=$((LINKS + 1))
    [ "$LINKS" = 1 ] || name=link$LINKS
    "$PY" "$(dirname "${BASH_SOURCE[0]}")/slow_link.py" --listen 127.0.0.1:0 --upstream 127.0.0.1:5672 \
        --delay-ms "$1" --ready-file "$WORK/$name" --report "$WORK/$name.report" "${@:2}" &
    CLEANUP+=("kill $!")
    wait_for 10 test -s "$WORK/$name" || fail "the slow link did not start"
    LINK_URL=${ORDERQ_AMQP_URL/127.0.0.1:5672/$(cat "$WORK/$name")}
    LINK_REPORT=$WORK/$name.report
}

# expect_polite_ends: every connection through the link has ended (the
# link writes that in a thread of its own: waited for), each after the
# broker's close-ok (none shut before it, none reset).
link_ends_all() { [ "$(grep -c '^open$' "$LINK_REPORT")" = "$(grep -cE ': (fin (after|before) close-ok|reset)$' "$LINK_REPORT")" ]; }
expect_polite_ends() {
    wait_for 10 link_ends_all || fail "connections through the link not ended: $(sort "$LINK_REPORT" | uniq -c | paste -sd,)"
    expect_eq "" "$(grep -v '^open$' "$LINK_REPORT" | grep -v ': fin after close-ok$' | paste -sd,)" \
        "connections through the link that did not end after the broker's close-ok"
}

# publish_letters [--unreadable] [--to EXCHANGE] [--key KEY] [--bytes N] PREFIX COUNT:
# COUNT letters through EXCHANGE (default orderq.dead; "" is the default
# exchange, to the queue KEY names), persistent, mandatory and confirmed:
# message_id PREFIX-i, body "PREFIX-ii:" padded with x to N bytes. With
# --unreadable, first one librabbitmq cannot read (a header named "";
# message_id unreadable, body {"event_identifier":"hdr_key_empty"}).
publish_letters() {
    local unreadable=0 exchange=orderq.dead key="" bytes=0
    while [ $# -gt 2 ]; do
        case $1 in
        --unreadable) unreadable=1 && shift ;;
        --to) exchange=$2 && shift 2 ;;
        --key) key=$2 && shift 2 ;;
        --bytes) bytes=$2 && shift 2 ;;
        *) fail "publish_letters: unknown option $1" ;;
        esac
    done
    "$PY" - "$VHOST" "$exchange" "$key" "$unreadable" "$bytes" "$1" "$2" <<'PY' ||
import sys, pika
vhost, exchange, key, unreadable, size, prefix, n = sys.argv[1:]
params = pika.ConnectionParameters("127.0.0.1", 5672, vhost, pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    if unreadable == "1":
        ch.basic_publish(exchange, key, b'{"event_identifier":"hdr_key_empty"}', mandatory=True,
                         properties=pika.BasicProperties(delivery_mode=2, message_id="unreadable", headers={"": "empty key"}))
    for i in range(int(n)):
        body = (b"%s-%02d:" % (prefix.encode(), i)).ljust(int(size), b"x")
        ch.basic_publish(exchange, key, body, mandatory=True,
                         properties=pika.BasicProperties(delivery_mode=2, message_id=f"{prefix}-{i}"))
PY
        fail "publishing ${2} letters $1-* to exchange \"$exchange\""
}

# Start `orderq consume` in the background; its pid goes into $consumer_pid.
# It consumes the queues in $CONSUME_QUEUES (default: the coupon rules and
# the probe, so tests of those send no mail); CONSUME_QUEUES="" means all.
CONSUME_QUEUES=${CONSUME_QUEUES-orderq.order.processing orderq.probe}
start_consumer() {
    local name=$1; shift
    local q queues=()
    for q in $CONSUME_QUEUES; do queues+=(--queue "$q"); done
    ORDERQ_HTTP_ADDR="" "$ORDERQ_BIN" consume --instance-id "$name" "${queues[@]}" "$@" 2>>"$WORK/$name.log" &
    consumer_pid=$!
    CLEANUP+=("kill -9 $consumer_pid")
}

# Wait until the ledger holds $1 rows (at most $2 seconds).
wait_ledger() {
    wait_for "$2" bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM event_ledger')\" -ge $1 ]"
}

# Assert: every order of 0..$1-1 from $2 has exactly one ledger row, one
# coupon and one coupon.email outbox event, and there is nothing else.
expect_exactly_once() {
    local n=$1 start=$2
    expect_eq "$n" "$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')" "ledger rows"
    expect_eq "$n" "$(sql "$DB" -e 'SELECT COUNT(DISTINCT effect_key) FROM event_ledger')" "distinct ledger keys"
    expect_eq "$n" "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons"
    expect_eq "$n" "$(sql "$DB" -e 'SELECT COUNT(DISTINCT order_id) FROM coupon')" "orders with a coupon"
    expect_eq "$n" "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon WHERE CAST(order_id AS UNSIGNED) BETWEEN $start AND $start + $n - 1")" "coupons of the expected orders"
    expect_eq "$n" "$(sql "$DB" -e "SELECT COUNT(*) FROM outbox WHERE event_code = 'coupon.email'")" "coupon.email outbox events"
}

# A database and vhost of its own, migrated and declared.
setup_declared() {
    need_mysql
    need_rabbitmq
    oq migrate >/dev/null 2>&1
    oq topology declare --create-shop-exchange >/dev/null
}

# The start of every consumer test: setup_declared, the test rule loaded.
setup_consumer_test() {
    setup_declared
    load_test_rule
}

# Wait until the outbox is relayed.
wait_drained() {
    wait_for 60 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM outbox WHERE published_at IS NULL\")\" = 0 ]" \
        || fail "outbox not drained"
}

# ready_is QUEUE N: exactly N messages ready (for wait_for).
ready_is() { [ "$(queue_ready "$1")" = "$2" ]; }

# After the consumers stopped: nothing may be left in the work queue.
expect_queue_empty() {
    wait_for 10 ready_is orderq.order.processing 0 ||
        fail "left in orderq.order.processing: $(queue_ready orderq.order.processing)"
}

# MailDev (deploy/local starts it): the mails to one address, as JSON.
MAILDEV=${ORDERQ_TEST_MAILDEV:-http://127.0.0.1:1080}
need_maildev() { curl -sf "$MAILDEV/email" >/dev/null 2>&1 || unreachable "MailDev at $MAILDEV"; }
mails_to() { curl -sf "$MAILDEV/email" | "$PY" -c 'import json, sys; print(json.dumps([m for m in json.load(sys.stdin) if any(t["address"] == sys.argv[1] for t in m["to"])]))' "$1"; }
mail_count() { mails_to "$1" | json 'len(d)'; }
mail_count_is() { [ "$(mail_count "$1")" = "$2" ]; }

# The HTTP fixture (http_fixture.py) answering from $WORK/script.json and
# logging to $WORK/requests.log; its base URL goes into $base.
start_http_fixture() {
    "$PY" "$(dirname "${BASH_SOURCE[0]}")/http_fixture.py" --port-file "$WORK/port" \
        --script "$WORK/script.json" --log "$WORK/requests.log" &
    CLEANUP+=("kill $!")
    wait_for 10 test -s "$WORK/port" || fail "the HTTP fixture did not start"
    base="http://127.0.0.1:$(cat "$WORK/port")"
}

# start_smtp_fixture MODE: the failing SMTP server (smtp_fixture.py), its
# port in $fport.
start_smtp_fixture() {
    rm -f "$WORK/smtp-port"
    "$PY" "$(dirname "${BASH_SOURCE[0]}")/smtp_fixture.py" --port-file "$WORK/smtp-port" --mode "$1" \
        --count-file "$WORK/smtp-count" &
    CLEANUP+=("kill $!")
    wait_for 10 test -s "$WORK/smtp-port" || fail "the SMTP fixture did not start"
    fport=$(cat "$WORK/smtp-port")
}

# coupon_event EMAIL CODE: one coupon.email event as a JSON line (its
# identifier CODE_mail, its ledger key coupon:CODE).
coupon_event() {
    "$PY" -c '
import json, sys
print(json.dumps({"event_code": "coupon.email", "event_identifier": sys.argv[2] + "_mail",
  "event_data": {"order_id": "9200000217", "coupon_code": sys.argv[2], "discount_type": "fixed",
    "discount": "10.00", "currency": "USD", "expires_at": "2027-01-31T00:00:00Z",
    "customer": {"email": sys.argv[1], "name": "Test"}}}))' "$1" "$2"
}
# The ledger state of the coupon mail for CODE, and a test of it.
mail_state() { sql "$DB" -e "SELECT state FROM event_ledger WHERE handler = 'coupon_mail' AND effect_key = 'coupon:$1'"; }
mail_state_is() { [ "$(mail_state "$1")" = "$2" ]; }

# wide_shop_user: a shop user of its own ($shop, $password) that may write
# to every exchange of the test vhost (the common mistake; the tests show
# it still cannot fool orderq), removed on exit. After need_rabbitmq.
wide_shop_user() {
    shop="oq-shop-$$" password="pw-$RANDOM-$$"
    mgmt PUT "/api/users/$shop" "{\"password\":\"$password\",\"tags\":\"\"}" >/dev/null
    CLEANUP+=("mgmt DELETE /api/users/$shop")
    mgmt PUT "/api/permissions/$(urlenc "$VHOST")/$shop" '{"configure":"","write":".*","read":""}' >/dev/null
}

# as_shop EXCHANGE ROUTING_KEY BODY [HEADERS_JSON [USER_ID]]: published as
# $shop (wide_shop_user), persistent, mandatory and confirmed, its
# message_id the body's event_identifier; prints "ok" or the broker's
# refusal.
as_shop() {
    "$PY" - "$VHOST" "$shop" "$password" "$1" "$2" "$3" "${4:-{\}}" "${5:-}" <<'PY'
import json, sys, pika
vhost, user, password, exchange, key, body, headers, uid = sys.argv[1:9]
body = body.encode()
msg_id = json.loads(body).get("event_identifier") if body.startswith(b"{") else None
params = pika.ConnectionParameters("127.0.0.1", 5672, vhost, pika.PlainCredentials(user, password))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        ch.basic_publish(exchange, key, body, pika.BasicProperties(
            delivery_mode=2, content_type="application/json", message_id=msg_id,
            user_id=uid or None, headers=json.loads(headers)), mandatory=True)
        print("ok")
    except pika.exceptions.ChannelClosedByBroker as e:
        print(e.reply_code, e.reply_text)
PY
}

# send_then_die EMAIL CODE: a consumer of orderq.coupon.email sends CODE's
# mail and kills itself (-9) before it records `sent`, as a crash there
# would; its delivery is back in the queue after. Its own sweeper waits an
# hour: it must not settle anything.
send_then_die() {
    CONSUME_QUEUES=orderq.coupon.email ORDERQ_SWEEP_AFTER_MS=1h ORDERQ_FAULT=kill-after-send \
        start_consumer "victim-$2"
    local pid=$consumer_pid rc
    coupon_event "$1" "$2" | oq publish - >/dev/null || fail "publish $2"
    set +e; wait "$pid"; rc=$?; set -e
    expect_eq 137 "$rc" "the exit of $2's sender (SIGKILL after the send)"
    expect_eq 1 "$(mail_count "$1")" "mails of $2 sent before the kill"
    expect_eq sending "$(mail_state "$2")" "$2's claim left behind"
    wait_for 10 ready_is orderq.coupon.email 1 || fail "$2's delivery did not return to the queue"
}

# stop_group PGID: TERM, then KILL what is left of a process group a test
# started with setsid (a server and every child it forked).
stop_group() {
    kill -TERM -- "-$1" 2>/dev/null || return 0
    for _ in $(seq 50); do
        kill -0 -- "-$1" 2>/dev/null || return 0
        sleep 0.2
    done
    kill -KILL -- "-$1" 2>/dev/null || true
}

# start_own_mariadb ARGS...: a MariaDB of the test's own in $WORK/mariadb
# ($MY), socket $MY/sock, started with mariadbd ARGS added (networking,
# TLS, limits); stopped at the end. my ARGS: its client as root.
start_own_mariadb() {
    MY="$WORK/mariadb"
    mkdir -p "$MY"
    mariadb-install-db --no-defaults --user=root --datadir="$MY/data" --skip-test-db \
        --auth-root-authentication-method=socket >"$MY/install.log" 2>&1 ||
        fail "mariadb-install-db: $(tail -5 "$MY/install.log")"
    setsid mariadbd --no-defaults --user=root --datadir="$MY/data" --socket="$MY/sock" \
        --pid-file="$MY/pid" --log-error="$MY/error.log" --innodb-buffer-pool-size=32M \
        "$@" </dev/null >/dev/null 2>&1 &
    local pid=$!
    CLEANUP+=("stop_group $pid")
    wait_for 60 mariadb-admin --no-defaults --socket="$MY/sock" -uroot ping ||
        fail "our MariaDB did not start: $(tail -5 "$MY/error.log")"
}
my() { mariadb --no-defaults --socket="$MY/sock" -uroot -N -B "$@"; }

# run_out_delivery_limit QUEUE: take a message from QUEUE and give it back
# three times, as three crashed consumers would (its delivery limit is 2
# in these tests), so RabbitMQ dead-letters it itself.
run_out_delivery_limit() {
    "$PY" - "$VHOST" "$1" <<'PY'
import sys, time, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    taken, deadline = 0, time.time() + 20
    while time.time() < deadline and taken < 3:
        method, _, _ = ch.basic_get(sys.argv[2])
        if method is None:
            time.sleep(0.1)
            continue
        taken += 1
        ch.basic_nack(method.delivery_tag, requeue=True)
    assert taken == 3, taken
PY
}
