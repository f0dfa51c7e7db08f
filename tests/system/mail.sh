#!/usr/bin/env bash
# mail.sh - `orderq mail test` against MailDev and a failing SMTP fixture:
# a multipart/alternative mail with RFC 2047 headers and a Message-ID that
# is the same for the same effect; a header injection is refused and sends
# nothing; 4xx and a closed port are transient, 5xx permanent, a server
# that takes the data and never answers ambiguous
source "$(dirname "$0")/lib.sh"
need_maildev
export ORDERQ_SMTP_URL=smtp://127.0.0.1:1025 ORDERQ_SMTP_TLS=off ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>'
to="t$$.$RANDOM@mail-test.example"

note "a mail with a UTF-8 name and subject arrives as sent, twice with the same Message-ID"
for i in 1 2; do
    out=$(oq mail test --to "$to" --name 'José Müller' --subject 'Ihr Gutschein — 10 € Rabatt' --id invoice:501 --json)
    expect_eq sent "$(json 'd["outcome"]' <<<"$out")" "outcome"
    expect_contains "250" "$out" "the server's reply"
done
mails_to "$to" | "$PY" -c '
import json, sys
ms = json.load(sys.stdin)
assert len(ms) == 2, len(ms)
for m in ms:
    assert m["subject"] == "Ihr Gutschein — 10 € Rabatt", m["subject"]
    assert m["to"] == [{"address": sys.argv[1], "name": "José Müller"}], m["to"]
    assert m["from"] == [{"address": "shop@mugs.example", "name": "Mug Shop"}], m["from"]
    assert m["headers"]["content-type"].startswith("multipart/alternative;"), m["headers"]
    assert m["headers"]["x-orderq-event"] == "invoice:501", m["headers"]
    assert m["text"].startswith("This is a test mail") and m["html"].startswith("<p>"), m
    assert m["messageId"].endswith(".mail_test@mugs.example"), m["messageId"]
assert ms[0]["messageId"] == ms[1]["messageId"], "the same effect must carry the same Message-ID"
' "$to" || fail "mails: $(mails_to "$to")"

note "header injection: refused, nothing sent"
try oq mail test --to "$to" --subject $'Hi\r\nBcc: victim@mail-test.example'
expect_eq 65 "$rc" "exit code for CRLF in the subject"
try oq mail test --to "$to>"$'\r\n'"Bcc: victim@mail-test.example"
expect_eq 65 "$rc" "exit code for an injected address"
expect_contains "permanent" "$out" "outcome"
expect_eq 2 "$(mails_to "$to" | json 'len(d)')" "mails after the refused ones"
expect_eq 0 "$(mails_to victim@mail-test.example | json 'len(d)')" "mails to the injected Bcc"

note "SMTP failures are classified"
start_smtp_fixture rcpt-451
try env ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" "$ORDERQ_BIN" mail test --to "$to" --json
expect_eq 75 "$rc" "exit code on 451"
expect_eq transient "$(json 'd["outcome"]' <<<"$out")" "outcome on 451"
expect_contains "451 4.3.0 mailbox busy" "$out" "reply on 451"
start_smtp_fixture rcpt-550
try env ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" "$ORDERQ_BIN" mail test --to "$to" --json
expect_eq 65 "$rc" "exit code on 550"
expect_eq permanent "$(json 'd["outcome"]' <<<"$out")" "outcome on 550"
start_smtp_fixture hang-after-data
started=$SECONDS
try env ORDERQ_SMTP_URL="smtp://127.0.0.1:$fport" ORDERQ_SMTP_TIMEOUT_MS=2s "$ORDERQ_BIN" mail test --to "$to" --json
# smtp_timeout_ms bounds the wait for the reply to the final "." too (curl's
# own limit there is 120 s): a generous bound, not a speed test
[ $((SECONDS - started)) -lt 30 ] || fail "smtp_timeout_ms=2s: the send gave up only after $((SECONDS - started)) s"
expect_eq 75 "$rc" "exit code when the reply to the data never comes"
expect_eq ambiguous "$(json 'd["outcome"]' <<<"$out")" "outcome when the reply never comes"
closed=$(free_port)
try env ORDERQ_SMTP_URL="smtp://127.0.0.1:$closed" "$ORDERQ_BIN" mail test --to "$to" --json
expect_eq transient "$(json 'd["outcome"]' <<<"$out")" "outcome on a closed port"
