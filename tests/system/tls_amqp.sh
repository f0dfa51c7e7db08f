#!/usr/bin/env bash
# tls_amqp.sh - amqps:// that verifies, against a RabbitMQ node of the
# test's own (node oqtls-<pid>@localhost, TLS listeners only, on
# 127.0.0.1 and 127.0.0.2, a client certificate required, certificates made
# here): with amqp_ca = the right CA and amqp_cert/amqp_key, topology,
# publish, consume and the relay all work over TLS and an event goes
# through; a message librabbitmq cannot read is dead-lettered once, held
# by the archiver once, and the orders behind it go through; an unrelated
# CA, the system's CAs, no client certificate, and a host the certificate
# does not name (127.0.0.2) each fail with a reason
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tls_lib.sh"
make_certs

note "a RabbitMQ node with TLS listeners of our own"
RQ="$WORK/rabbitmq"
mkdir -p "$RQ/home" "$RQ/mnesia" "$RQ/log"
rqport=$(free_port)
distport=$(free_port)
cat >"$RQ/rabbitmq.conf" <<CONF
listeners.tcp = none
listeners.ssl.1 = 127.0.0.1:$rqport
listeners.ssl.2 = 127.0.0.2:$rqport
ssl_options.cacertfile = $PKI/ca.pem
ssl_options.certfile = $PKI/server.pem
ssl_options.keyfile = $PKI/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
log.console = false
log.file.level = info
CONF
echo '[].' >"$RQ/enabled_plugins"
: >"$RQ/rabbitmq-env.conf" # not the shared node's /etc/rabbitmq/rabbitmq-env.conf
# Its own HOME, so its own Erlang cookie; its own names, dirs and ports, so
# the shared node (rabbit@..., 5672/15672/25672) is never touched.
HOME="$RQ/home" RABBITMQ_NODENAME="oqtls-$$@localhost" RABBITMQ_CONF_ENV_FILE="$RQ/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$RQ/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$RQ/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RQ/enabled_plugins" RABBITMQ_MNESIA_BASE="$RQ/mnesia" \
    RABBITMQ_LOG_BASE="$RQ/log" RABBITMQ_DIST_PORT="$distport" RABBITMQ_PID_FILE="$RQ/pid" \
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >"$RQ/out.log" 2>&1 &
rq_pid=$!
CLEANUP+=("stop_group $rq_pid")
listening() { kill -0 "$rq_pid" 2>/dev/null || fail "our RabbitMQ stopped: $(tail -5 "$RQ/out.log")"; (exec 3<>"/dev/tcp/127.0.0.1/$rqport") 2>/dev/null; }
started=$SECONDS
wait_for 90 listening || fail "our RabbitMQ did not listen within 90 s: $(tail -5 "$RQ/out.log")"
echo "    listening after $((SECONDS - started)) s"

export ORDERQ_AMQP_URL="amqps://guest:guest@localhost:$rqport/"
export ORDERQ_AMQP_CA="$PKI/ca.pem" ORDERQ_AMQP_CERT="$PKI/client.pem" ORDERQ_AMQP_KEY="$PKI/client.key"
export ORDERQ_CONNECT_TIMEOUT_MS=5s

note "the right CA and a client certificate: topology, publish, consume and relay over TLS"
need_mysql
oq migrate >/dev/null
try "$ORDERQ_BIN" topology declare --create-shop-exchange
expect_eq 0 "$rc" "topology declare over TLS: $out"
load_test_rule
start_consumer tls
gen_events 1 --start 9500000000 | oq publish - >/dev/null || fail "publish over TLS"
wait_for 30 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e 'SELECT COUNT(*) FROM coupon')\" = 1 ]" ||
    fail "no coupon: $(tail -3 "$WORK/tls.log")"
wait_drained # the relay published the coupon.email event over its own TLS connection
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_eq 1 "$(sql "$DB" -e 'SELECT COUNT(*) FROM event_ledger')" "ledger rows"

note "a message librabbitmq cannot read, over TLS: rejected once, the close waits for the broker's"
# The raw bytes are TLS records, so the consumer cannot see the broker's
# close-ok: it keeps its side open until the broker closes (min(heartbeat,
# 30) s after its close-ok), so that the reject is handled first.
tls_amqp() { # python code run with `ch`, a channel on our node over TLS
    "$PY" - "$rqport" "$PKI" "$1" <<'PY'
import ssl, sys, pika
port, pki, code = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=pki + "/ca.pem")
ctx.load_cert_chain(pki + "/client.pem", pki + "/client.key")
params = pika.ConnectionParameters("localhost", port, "/", pika.PlainCredentials("guest", "guest"),
                                   ssl_options=pika.SSLOptions(ctx, "localhost"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    exec(code)
PY
}
tls_amqp 'ch.confirm_delivery()
ch.basic_publish("shop.events", "order.processing", b"{\"event_identifier\":\"hdr_key_empty\"}",
                 pika.BasicProperties(headers={"": "empty key"}, delivery_mode=2))' ||
    fail "publishing the unreadable message over TLS"
gen_events 1 --start 9500000001 | oq publish - >/dev/null || fail "publish over TLS"
ORDERQ_HEARTBEAT_S=2 start_consumer tls-unreadable
counted() { [ "$(sql "$DB" -e "SELECT COUNT(*) FROM $1")" = "$2" ]; } # TABLE [WHERE ...] N
wait_for 30 counted coupon 2 ||
    fail "the order behind the unreadable message took no effect: $(tail -3 "$WORK/tls-unreadable.log")"
wait_for 30 counted "dead_letter WHERE error_class = 'unreadable'" 1 ||
    fail "the archiver stored no row for the unreadable message: $(tail -3 "$WORK/tls-unreadable.log")"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
expect_eq 1 "$(grep -c 'reading delivery' "$WORK/tls-unreadable.log")" "deliveries of the unreadable message"
expect_eq 1 "$(grep -c "a dead letter's properties cannot be decoded" "$WORK/tls-unreadable.log")" "deliveries of it to the archiver"
expect_contains "over TLS this waits for RabbitMQ to close it (up to 7 s)" "$(cat "$WORK/tls-unreadable.log")" "the log"
# the archiver cannot read it either: one row, the letter held whole
expect_eq 1 "$(sql "$DB" -e "SELECT COUNT(*) FROM dead_letter WHERE error_class = 'unreadable'")" "archived rows of the unreadable message"
tls_amqp 'assert ch.queue_declare("orderq.dead.held", passive=True).method.message_count == 1
method, props, body = ch.basic_get("orderq.dead.held", auto_ack=True)
assert props.headers[""] == "empty key", props.headers' ||
    fail "the unreadable message is not in orderq.dead.held, once"

note "an unrelated CA: refused, the reason names amqp_ca"
try env ORDERQ_AMQP_CA="$PKI/other-ca.pem" "$ORDERQ_BIN" topology declare
[ "$rc" -ne 0 ] || fail "connected with an unrelated CA: $out"
show
expect_contains "checked against amqp_ca: $PKI/other-ca.pem" "$out" "reason (unrelated CA)"
try env ORDERQ_AMQP_CA= "$ORDERQ_BIN" topology declare
[ "$rc" -ne 0 ] || fail "the system's CAs trusted the test CA: $out"
show
expect_contains "checked against amqp_ca: empty, the system's CAs" "$out" "reason (system CAs)"

note "a host the certificate does not name (127.0.0.2): refused"
try env ORDERQ_AMQP_URL="amqps://guest:guest@127.0.0.2:$rqport/" "$ORDERQ_BIN" topology declare
[ "$rc" -ne 0 ] || fail "connected to a host the certificate does not name: $out"
show
expect_contains "over TLS" "$out" "reason (host name)"
expect_contains "hostname" "$out" "reason (host name)"

note "no client certificate: the broker refuses; half a pair is refused at start"
try env ORDERQ_AMQP_CERT= ORDERQ_AMQP_KEY= "$ORDERQ_BIN" topology declare
[ "$rc" -ne 0 ] || fail "connected without the client certificate the broker requires: $out"
show
expect_contains "no client certificate was offered" "$out" "reason (no client certificate)"
try env ORDERQ_AMQP_KEY= "$ORDERQ_BIN" topology declare
expect_eq 78 "$rc" "exit code for amqp_cert without amqp_key"
show
expect_contains "amqp_cert (ORDERQ_AMQP_CERT) and amqp_key (ORDERQ_AMQP_KEY): expected both or neither" "$out" "reason"
