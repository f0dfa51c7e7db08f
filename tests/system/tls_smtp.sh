#!/usr/bin/env bash
# tls_smtp.sh - SMTP TLS that verifies, against smtp_fixture.py with
# certificates made here: smtp_tls is required by default off loopback and
# warned about when weakened; STARTTLS with smtp_ca = the right CA sends
# the mail, an unrelated CA (or the system's CAs) refuses with a reason
# naming smtp_ca, also when smtp_tls is opportunistic; a server offering no
# STARTTLS gets nothing in clear under smtp_tls=required and the mail is
# retried by the consumer, not sent; an http:// webhook off loopback is
# warned about at start
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tls_lib.sh"
make_certs
export ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>'
to="t$$.$RANDOM@tls-smtp.example"

# start_fixture MODE [HOST]: smtp_fixture.py on a port of its own ($fport),
# its mails counted in $WORK/MODE.count.
start_fixture() {
    rm -f "$WORK/smtp-port"
    "$PY" "$(dirname "$0")/smtp_fixture.py" --port-file "$WORK/smtp-port" --mode "$1" --host "${2:-127.0.0.1}" \
        --count-file "$WORK/$1.count" --cert "$PKI/server.pem" --key "$PKI/server.key" &
    CLEANUP+=("kill $!")
    wait_for 10 test -s "$WORK/smtp-port" || fail "the SMTP fixture ($1) did not start"
    fport=$(cat "$WORK/smtp-port")
}
count() { cat "$WORK/$1.count" 2>/dev/null || echo 0; }
setting() { json "d[\"$1\"][\"value\"]" <<<"$out"; }

note "the default: smtp_tls required for a server off loopback, opportunistic on loopback"
try env ORDERQ_SMTP_URL=smtp://mail.example.com:587 "$ORDERQ_BIN" config show --json
expect_eq 0 "$rc" "config show exit code"
expect_eq required "$(setting smtp_tls)" "smtp_tls for mail.example.com"
try env ORDERQ_SMTP_URL=smtp://127.0.0.1:25 "$ORDERQ_BIN" config show --json
expect_eq opportunistic "$(setting smtp_tls)" "smtp_tls for 127.0.0.1"

note "weakened off loopback: a warning at start naming the setting"
try env ORDERQ_SMTP_URL=smtp://mail.example.com:587 ORDERQ_SMTP_TLS=opportunistic \
    ORDERQ_SHOP_API_URL=http://shop.example/ "$ORDERQ_BIN" config show
expect_eq 0 "$rc" "config show exit code"
expect_contains "smtp_tls (ORDERQ_SMTP_TLS) is opportunistic for an SMTP server that is not on loopback" "$out" "warning"
expect_contains "shop_api_url (ORDERQ_SHOP_API_URL) is http:// to a host that is not loopback" "$out" "warning"
try env ORDERQ_SMTP_URL=smtp://127.0.0.1:25 ORDERQ_SMTP_TLS=off "$ORDERQ_BIN" config show
grep -q 'smtp_tls' <<<"$(grep -i warn <<<"$out" || true)" && fail "a warning for loopback: $out"

note "STARTTLS with smtp_ca = the server's CA: sent, over TLS"
start_fixture starttls
for host in localhost 127.0.0.1; do
    try env ORDERQ_SMTP_URL="smtp://$host:$fport" ORDERQ_SMTP_TLS=required ORDERQ_SMTP_CA="$PKI/ca.pem" \
        "$ORDERQ_BIN" mail test --to "$to" --json
    expect_eq 0 "$rc" "exit code with the right CA ($host): $out"
    expect_eq sent "$(json 'd["outcome"]' <<<"$out")" "outcome with the right CA ($host)"
done
expect_eq 2 "$(count starttls)" "mails taken over TLS"

note "an unrelated CA: refused before anything is sent, the reason names smtp_ca"
for tls in required opportunistic; do
    try env ORDERQ_SMTP_URL="smtp://localhost:$fport" ORDERQ_SMTP_TLS=$tls ORDERQ_SMTP_CA="$PKI/other-ca.pem" \
        "$ORDERQ_BIN" mail test --to "$to" --json
    expect_eq 75 "$rc" "exit code with the wrong CA (smtp_tls $tls): $out"
    show
    expect_eq transient "$(json 'd["outcome"]' <<<"$out")" "outcome with the wrong CA"
    expect_contains "checked against smtp_ca: $PKI/other-ca.pem" "$out" "reason with the wrong CA"
done
note "no smtp_ca: the system's CAs, which do not know the test CA"
try env ORDERQ_SMTP_URL="smtp://localhost:$fport" ORDERQ_SMTP_TLS=required "$ORDERQ_BIN" mail test --to "$to" --json
expect_eq 75 "$rc" "exit code with the system's CAs: $out"
show
expect_contains "checked against smtp_ca: empty, the system's CAs" "$out" "reason with the system's CAs"
expect_eq 2 "$(count starttls)" "mails taken after the refusals"

note "a host the certificate does not name (127.0.0.2): refused"
start_fixture starttls 127.0.0.2
try env ORDERQ_SMTP_URL="smtp://127.0.0.2:$fport" ORDERQ_SMTP_TLS=required ORDERQ_SMTP_CA="$PKI/ca.pem" \
    "$ORDERQ_BIN" mail test --to "$to" --json
expect_eq 75 "$rc" "exit code for a host the certificate does not name: $out"
show
expect_contains "checked against smtp_ca: $PKI/ca.pem" "$out" "reason (host name)"
expect_eq 2 "$(count starttls)" "mails taken by the misnamed server"

note "a server offering no STARTTLS: smtp_tls=required sends nothing in clear"
start_fixture plain
try env ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" ORDERQ_SMTP_TLS=required "$ORDERQ_BIN" mail test --to "$to" --json
expect_eq 75 "$rc" "exit code without STARTTLS: $out"
show
expect_contains "offers no STARTTLS and smtp_tls is required" "$out" "reason without STARTTLS"
expect_eq 0 "$(count plain)" "mails sent in clear"

note "... and in the consumer the mail is retried, never sent in clear"
export ORDERQ_RETRY_TIERS=1s,2s ORDERQ_MAX_ATTEMPTS=40
setup_consumer_test
CONSUME_QUEUES="orderq.coupon.email orderq.webhook"
# A webhook over http:// off loopback is warned about at start (nothing is
# published for it).
printf '[{"event_code": "order.tls_probe", "url": "http://hooks.example:8080/in?token=t0k3n"}]' >"$WORK/webhooks.json"
ORDERQ_WEBHOOKS_FILE="$WORK/webhooks.json" ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" ORDERQ_SMTP_TLS=required \
    start_consumer strict
coupon_event "$to" "TLS-$$" | oq publish - >/dev/null || fail "publish"
wait_for 30 bash -c "[ \$(grep -c 'offers no STARTTLS' '$WORK/strict.log') -ge 3 ]" ||
    fail "not retried three times: $(tail -5 "$WORK/strict.log")"
expect_eq 0 "$(count plain)" "mails sent in clear by the consumer"
expect_contains "webhooks_file: webhook 1 (order.tls_probe) is http:// to a host that is not loopback" \
    "$(cat "$WORK/strict.log")" "warning for the http:// webhook"
grep -q t0k3n "$WORK/strict.log" && fail "the webhook's token was logged"
expect_eq "" "$(mail_state "TLS-$$")" "ledger state (no claim left, nothing sent)"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
# The fixture does take mail in clear: the zero above is orderq's doing.
try env ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" ORDERQ_SMTP_TLS=off "$ORDERQ_BIN" mail test --to "$to" --json
expect_eq 0 "$rc" "exit code with smtp_tls=off: $out"
expect_eq 1 "$(count plain)" "mails sent in clear with smtp_tls=off"
