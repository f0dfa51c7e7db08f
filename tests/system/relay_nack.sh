#!/usr/bin/env bash
# relay_nack.sh - an outbox row the broker nacks (a full queue that rejects
# publishes; a quorum queue electing a leader after a node died) is tried
# again within seconds, not after a minute: the broker only said "not now".
source "$(dirname "$0")/lib.sh"
setup_declared

note "a queue of one message that rejects publishes when full, and full"
"$PY" - "$VHOST" <<'PY'
import sys, pika
params = pika.ConnectionParameters("127.0.0.1", 5672, sys.argv[1], pika.PlainCredentials("guest", "guest"))
with pika.BlockingConnection(params) as conn:
    ch = conn.channel()
    ch.queue_declare("nack.full", durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    ch.queue_bind("nack.full", "shop.events", routing_key="nack.full")
    ch.basic_publish("", "nack.full", b"{}", pika.BasicProperties(delivery_mode=2))
PY
wait_for 10 ready_is nack.full 1 || fail "nack.full holds $(queue_ready nack.full), expected 1"

note "the relay is nacked, defers the row by about a second and says why"
sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body) VALUES ('x.nack', 'n1', '', 'nack.full', '{}')"
ORDERQ_HTTP_ADDR= "$ORDERQ_BIN" relay 2>"$WORK/relay.err" >/dev/null & # no port: 9464 may be taken here
relay=$!
CLEANUP+=("kill -9 $relay")
nacked() { [ "$(sql "$DB" -e "SELECT last_error FROM outbox WHERE event_identifier = 'n1'")" = "the broker refused it (nack)" ]; }
wait_for 15 nacked || fail "the row was not nacked: $(sql "$DB" -e "SELECT CONCAT_WS(' ', publish_attempts, last_error) FROM outbox WHERE event_identifier = 'n1'"); $(tail -3 "$WORK/relay.err")"
expect_contains "trying again in 1 s" "$(cat "$WORK/relay.err")" "the relay's log of the first nack"
expect_eq 1 "$(sql "$DB" -e "SELECT next_attempt_at <= NOW(6) + INTERVAL 2 SECOND FROM outbox WHERE event_identifier = 'n1'")" \
    "the first nack's wait (next_attempt_at $(sql "$DB" -e "SELECT TIMESTAMPDIFF(SECOND, NOW(6), next_attempt_at) FROM outbox WHERE event_identifier = 'n1'") s from now)"

note "room again: the row is published within seconds"
mgmt DELETE "/api/queues/$(urlenc "$VHOST")/nack.full/contents" >/dev/null
start=$SECONDS
published() { [ "$(sql "$DB" -e "SELECT published_at IS NOT NULL FROM outbox WHERE event_identifier = 'n1'")" = 1 ]; }
wait_for 10 published || fail "the nacked row was not published within 10 s of room again: $(sql "$DB" -e "SELECT CONCAT_WS(' ', publish_attempts, last_error, TIMESTAMPDIFF(SECOND, NOW(6), next_attempt_at)) FROM outbox WHERE event_identifier = 'n1'") (attempts, error, seconds still to wait)"
echo "published $((SECONDS - start)) s after the queue had room, after $(sql "$DB" -e "SELECT publish_attempts FROM outbox WHERE event_identifier = 'n1'") attempts"
wait_for 10 ready_is nack.full 1 || fail "nack.full holds $(queue_ready nack.full), expected the relayed row"
kill -TERM "$relay"
set +e; wait "$relay"; rc=$?; set -e
expect_eq 0 "$rc" "the relay's exit ($(tail -5 "$WORK/relay.err"))"
