#!/usr/bin/env bash
# relay_http.sh - a standalone `orderq relay` serves /healthz, /readyz and
# /metrics on http_addr: ready while its passes reach RabbitMQ and MySQL,
# 503 once RabbitMQ is gone (its connection runs through a proxy that is
# stopped) and 200 again when it is back; orderq_outbox_published_total
# counts what it published; a KILLed MySQL connection counts in
# orderq_reconnects_total{peer="database"} (a RabbitMQ outage does not);
# promtool check metrics passes on its scrape; both outages at once, with
# rows written meanwhile, end with each row published once.
source "$(dirname "$0")/lib.sh"
command -v promtool >/dev/null || fail "promtool is missing: apt-get install prometheus (deploy/local/lib.sh installs it)"
setup_declared

pport=$(free_port)
start_proxy() {
    rm -f "$WORK/proxy.addr"
    # a proxy that never cuts (no such exchange): stopping it is the outage
    "$PY" "$(dirname "$0")/amqp_cut_proxy.py" --listen "127.0.0.1:$pport" --upstream 127.0.0.1:5672 \
        --cut-after-publish-to no.such.exchange --ready-file "$WORK/proxy.addr" 2>>"$WORK/proxy.log" &
    proxy=$!
    CLEANUP+=("kill $proxy")
    wait_for 10 test -s "$WORK/proxy.addr" || fail "the proxy did not start: $(cat "$WORK/proxy.log")"
}
start_proxy
port=$(free_port)
addr="127.0.0.1:$port"
status() { curl -s -o /dev/null -w '%{http_code}' "http://$addr$1"; }
status_is() { [ "$(status "$1")" = "$2" ]; }

note "orderq relay with http_addr: /healthz and /readyz 200 once it runs"
ORDERQ_AMQP_URL="${ORDERQ_AMQP_URL/127.0.0.1:5672/127.0.0.1:$pport}" \
    "$ORDERQ_BIN" relay --http-addr "$addr" 2>"$WORK/relay.log" &
relay=$!
CLEANUP+=("kill -9 $relay")
wait_for 20 status_is /healthz 200 || fail "relay never served /healthz ($(status /healthz)): $(tail -3 "$WORK/relay.log")"
wait_for 20 status_is /readyz 200 || fail "relay never ready ($(status /readyz)): $(tail -3 "$WORK/relay.log")"
expect_eq 0 "$(metric_sum "$addr" orderq_outbox_published_total)" "published before any outbox row"

note "5 outbox rows: published, and counted"
for i in 1 2 3 4 5; do
    sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
        VALUES ('coupon.email', 'h${i}_processing_1_14', '', 'coupon.email', '{}')"
done
published_is() { [ "$(metric_sum "$addr" orderq_outbox_published_total)" = "$1" ]; }
wait_for 20 published_is 5 || fail "orderq_outbox_published_total is $(metric_sum "$addr" orderq_outbox_published_total), expected 5"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')" "rows left unpublished"

note "promtool check metrics on the relay's scrape"
curl -sf "http://$addr/metrics" >"$WORK/scrape.txt" || fail "no scrape"
promtool check metrics <"$WORK/scrape.txt" >"$WORK/lint" 2>&1 || fail "promtool: $(cat "$WORK/lint")"
[ -s "$WORK/lint" ] && fail "promtool complains: $(cat "$WORK/lint")"
expect_eq 1 "$(metric_sum "$addr" orderq_ready)" "orderq_ready of a relay that publishes"

note "RabbitMQ unreachable for the relay (its proxy stopped): /readyz 503, /healthz still 200"
kill "$proxy"
wait "$proxy" 2>/dev/null || true
wait_for 20 status_is /readyz 503 || fail "/readyz is $(status /readyz) with RabbitMQ gone: $(tail -3 "$WORK/relay.log")"
expect_eq 200 "$(status /healthz)" "/healthz with RabbitMQ gone (alive, not ready)"
sleep 1
expect_eq 503 "$(status /readyz)" "/readyz a second later, RabbitMQ still gone"

note "RabbitMQ back: ready again, and it publishes"
start_proxy
wait_for 30 status_is /readyz 200 || fail "/readyz is $(status /readyz) after RabbitMQ came back: $(tail -3 "$WORK/relay.log")"
sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
    VALUES ('coupon.email', 'h6_processing_1_14', '', 'coupon.email', '{}')"
wait_for 20 published_is 6 || fail "orderq_outbox_published_total is $(metric_sum "$addr" orderq_outbox_published_total) after the outage, expected 6"
db_reconnects() { metric_sum "$addr" orderq_reconnects_total peer=database; }
expect_eq 0 "$(db_reconnects)" "database reconnects after a RabbitMQ outage (MySQL was fine)"

note "its MySQL connections KILLed: counted as database reconnects, and it publishes again"
ids=$(sql -e "SELECT id FROM information_schema.processlist WHERE db = '$DB' AND id <> CONNECTION_ID()")
[ -n "$ids" ] || fail "no MySQL connection of the relay to kill"
for id in $ids; do sql -e "KILL $id" 2>/dev/null || true; done
reconnected() { [ "$(db_reconnects)" -ge 1 ]; }
wait_for 20 reconnected || fail "orderq_reconnects_total{peer=database} is $(db_reconnects) after its connection was KILLed: $(tail -3 "$WORK/relay.log")"
sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
    VALUES ('coupon.email', 'h7_processing_1_14', '', 'coupon.email', '{}')"
wait_for 20 published_is 7 || fail "orderq_outbox_published_total is $(metric_sum "$addr" orderq_outbox_published_total) after MySQL's KILL, expected 7"
expect_eq 200 "$(status /readyz)" "/readyz after MySQL reconnected"

note "both at once, with rows written meanwhile: RabbitMQ gone and its MySQL connections KILLed; back, each row published once"
kill "$proxy"
wait "$proxy" 2>/dev/null || true
for id in $(sql -e "SELECT id FROM information_schema.processlist WHERE db = '$DB' AND id <> CONNECTION_ID()"); do
    sql -e "KILL $id" 2>/dev/null || true
done
for i in 8 9; do
    sql "$DB" -e "INSERT INTO outbox (event_code, event_identifier, exchange_name, routing_key, body)
        VALUES ('coupon.email', 'h${i}_processing_1_14', '', 'coupon.email', '{}')"
done
wait_for 20 status_is /readyz 503 || fail "/readyz is $(status /readyz) with both gone: $(tail -3 "$WORK/relay.log")"
start_proxy
wait_for 30 published_is 9 || fail "orderq_outbox_published_total is $(metric_sum "$addr" orderq_outbox_published_total) after both came back, expected 9: $(tail -3 "$WORK/relay.log")"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM outbox WHERE published_at IS NULL')" "rows left unpublished after both came back"
wait_for 10 status_is /readyz 200 || fail "/readyz is $(status /readyz) after both came back"
sleep 1
expect_eq 9 "$(metric_sum "$addr" orderq_outbox_published_total)" "publishes for 9 rows (none twice)"
expect_eq 9 "$(queue_ready orderq.coupon.email)" "messages in orderq.coupon.email for 9 rows"

note "SIGTERM: exits 0"
kill -TERM "$relay"
rc=0
wait "$relay" || rc=$?
expect_eq 0 "$rc" "relay exit status on SIGTERM"
