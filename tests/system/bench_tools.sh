#!/usr/bin/env bash
# bench_tools.sh - the tools of bench/latency and bench/mail_rate count
# exactly: orderq_bench_pace at 200/s for 1 s against a consumer sees every
# event committed, with ordered percentiles; orderq_bench_smtp_sink takes
# exactly the N mails orderq_bench_curl_mail sends; a mail with dot-stuffed
# lines and an end marker split across reads arrives intact. About 10 s.
source "$(dirname "$0")/lib.sh"
tools=$(dirname "$ORDERQ_BIN")
for t in pace smtp_sink curl_mail; do
    [ -x "$tools/orderq_bench_$t" ] || fail "$tools/orderq_bench_$t is not built"
done
setup_consumer_test

note "bad arguments exit 64 naming the flag"
try "$tools/orderq_bench_pace" --rate 0 --count 1 --prefix x
expect_eq 64 "$rc" "pace --rate 0"
expect_contains "--rate: expected an integer from 1 to 1000000" "$out" "pace's message"
try "$tools/orderq_bench_smtp_sink" --port x
expect_eq 64 "$rc" "sink --port x"
expect_contains "--port: expected 0 to 65535" "$out" "sink's message"
try "$tools/orderq_bench_curl_mail" --url http://x --count 1 --connections 1
expect_eq 64 "$rc" "curl_mail --url http://x"
expect_contains "--url: expected smtp://HOST:PORT" "$out" "curl_mail's message"

note "pace: 200 events at 200/s, one in 5 qualifying, each committed and timed"
start_consumer pace
wait_for 30 consuming orderq.order.processing || fail "no consumer: $(tail -3 "$WORK/pace.log")"
prefix="bt$$"
ORDERQ_AMQP_URL=$SHOP_AMQP_URL "$tools/orderq_bench_pace" --rate 200 --count 200 --prefix "$prefix" \
    --qualify-every 5 --sends "$WORK/sends" --timeout 20 >"$WORK/pace.json" ||
    fail "pace failed: $(cat "$WORK/pace.json")"
"$PY" - "$WORK/pace.json" <<'PY' || fail "pace's result: $(cat "$WORK/pace.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d) == {"rate", "events", "committed", "p50_ms", "p99_ms", "max_ms", "behind_max_ms", "achieved_per_second"}, d
assert d["rate"] == 200 and d["events"] == 200 and d["committed"] == 200, d
assert 0 < d["p50_ms"] <= d["p99_ms"] <= d["max_ms"], d
PY
expect_eq 200 "$(sql "$DB" -e "SELECT COUNT(*) FROM event_ledger WHERE handler = 'coupon_rules' AND event_identifier LIKE '$prefix-%'")" "ledger rows"
expect_eq 40 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons (every 5th of 200 qualifies)"
expect_eq 40 "$(wc -l <"$WORK/sends")" "--sends lines"
expect_eq "$prefix-00000005@bench.example" "$(sed -n 2p "$WORK/sends" | cut -d' ' -f1)" "the second qualifying recipient"

note "sink and curl_mail: 60 mails over 4 connections, each received once"
mkdir "$WORK/saved"
"$tools/orderq_bench_smtp_sink" --port 0 --log "$WORK/sink.log" --save "$WORK/saved" >"$WORK/sink.out" &
sink_pid=$!
CLEANUP+=("kill $sink_pid")
wait_for 10 test -s "$WORK/sink.out" || fail "the sink did not start"
url="smtp://127.0.0.1:$(json 'd["port"]' <"$WORK/sink.out")"
"$tools/orderq_bench_curl_mail" --url "$url" --count 60 --connections 4 >"$WORK/curl.json" ||
    fail "curl_mail: $(cat "$WORK/curl.json")"
expect_eq 60 "$(json 'd["mails"]' <"$WORK/curl.json")" "mails curl_mail reports"
expect_eq 60 "$(wc -l <"$WORK/sink.log")" "mails in the sink's log"
expect_eq 60 "$(cut -d' ' -f1 "$WORK/sink.log" | sort -u | wc -l)" "distinct recipients"
grep -q 'Content-Type: text/html; charset=utf-8' "$WORK/saved/1.eml" || fail "not a coupon mail: $(head -20 "$WORK/saved/1.eml")"

note "dot-stuffing: lines starting with '.' arrive as sent (curl stuffs, the sink unstuffs)"
printf 'Subject: dots\r\n\r\n.one dot\r\n..two dots\r\n.\r\n..\r\nlast\r\n' >"$WORK/dots.eml"
"$tools/orderq_bench_curl_mail" --url "$url" --count 1 --connections 1 --message "$WORK/dots.eml" >/dev/null ||
    fail "curl_mail --message"
cmp "$WORK/dots.eml" "$WORK/saved/61.eml" || fail "dot-stuffed mail changed: $(od -c "$WORK/saved/61.eml" | head)"

note "an end marker split across reads, and a pipelined RSET after it"
"$PY" - "$(json 'd["port"]' <"$WORK/sink.out")" "$WORK/split.eml" <<'PY' || fail "the split-marker client"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
f = s.makefile("rb")
def expect(code):
    while True:
        line = f.readline()
        assert line[:3] == code, (code, line)
        if line[3:4] != b"-":
            return
expect(b"220")
s.sendall(b"EHLO split\r\nMAIL FROM:<a@split.example>\r\nRCPT TO:<split@bench.example>\r\nDATA\r\n")
for code in (b"250", b"250", b"250", b"354"):
    expect(code)
body = b"Subject: split\r\n\r\n..stuffed\r\nx.\r\n...\r\nlast line"
open(sys.argv[2], "wb").write(body.replace(b"\r\n..", b"\r\n.") + b"\r\n")
for piece in (body + b"\r", b"\n.", b"\r", b"\nRSET\r\n"):
    s.sendall(piece)
    time.sleep(0.15)  # each piece its own read
expect(b"250")  # the mail
expect(b"250")  # RSET
s.sendall(b"QUIT\r\n")
expect(b"221")
PY
cmp "$WORK/split.eml" "$WORK/saved/62.eml" || fail "split-marker mail changed: $(od -c "$WORK/saved/62.eml" | head -20)"
kill -TERM "$sink_pid"
wait "$sink_pid"
expect_eq 62 "$(tail -1 "$WORK/sink.out" | json 'd["mails"]')" "the sink's count on SIGTERM"
expect_eq "split@bench.example" "$(tail -1 "$WORK/sink.log" | cut -d' ' -f1)" "the split mail's recipient"
