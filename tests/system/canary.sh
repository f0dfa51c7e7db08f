#!/usr/bin/env bash
# canary.sh - secrets never shown. One distinctive password, the canary, is
# the secret of every secret setting: the RabbitMQ user's (amqp_url and
# amqp_mgmt_url), the MySQL user's (mysql_url), the SMTP AUTH password
# (smtp_password_file, checked by the SMTP fixture), the shop API token
# (shop_api_token_file), the webhook signing secret (secret_file), and the
# webhook URLs' userinfo, path and query. The full flow runs: an order
# completed from the shop API earns a coupon whose mail goes out with AUTH,
# a signed webhook call, a webhook failure dead-lettered, another waiting in
# a delay tier, config show (a 2 KB password too), every --help, /metrics.
# Then everything orderq wrote (logs, stdout, stderr), a dump of the
# database, the dead_letter table and every message left in the vhost's
# queues are searched: the canary is nowhere, though the flow did happen
# (checked positively).
# Also: a blank secret file stops consume (78) naming setting and file; a
# secret file group can read, and a secret given as a flag, are warned about.
source "$(dirname "$0")/lib.sh"

hex=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
CANARY="CaNaRy$hex" # letters and digits in a row: a token to the path heuristic too
OUT="$WORK/out" # everything orderq writes, searched at the end
FIX="$WORK/fix" # the fixtures' own files: they hold the secret on purpose
mkdir -p "$OUT" "$FIX/mail"
# run NAME ARGS...: orderq ARGS, stdout and stderr kept in $OUT; $rc, $out
run() {
    local name=$1
    shift
    set +e
    timeout "${RUN_TIMEOUT:-60}" "$ORDERQ_BIN" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
    rc=$?
    set -e
    out=$(cat "$OUT/$name.out" "$OUT/$name.err")
}

need_mysql
need_rabbitmq
note "a RabbitMQ user and a MySQL user whose password is the canary"
ruser="oq-canary-$$"
mgmt PUT "/api/users/$ruser" "{\"password\": \"$CANARY\", \"tags\": \"management\"}" >/dev/null
CLEANUP+=("mgmt DELETE /api/users/$ruser")
mgmt PUT "/api/permissions/$(urlenc "$VHOST")/$ruser" '{"configure":".*","write":".*","read":".*"}' >/dev/null
export ORDERQ_AMQP_URL="amqp://$ruser:$CANARY@127.0.0.1:5672/$(urlenc "$VHOST")"
export ORDERQ_AMQP_MGMT_URL="http://$ruser:$CANARY@127.0.0.1:15672/"
muser="oqc_$$"
sql -e "CREATE USER '$muser'@'localhost' IDENTIFIED BY '$CANARY'; GRANT ALL ON \`$DB\`.* TO '$muser'@'localhost'"
CLEANUP+=("sql -e \"DROP USER IF EXISTS '$muser'@'localhost'\"")
export ORDERQ_MYSQL_URL="mysql://$muser:$CANARY@localhost/$DB?socket=$SOCK"

note "secret files: the canary on their first line"
(umask 077 && printf '%s\n' "$CANARY" >"$WORK/smtp_password" && printf '%s\n' "$CANARY" >"$WORK/hook_secret")
printf '%s\n' "$CANARY" >"$WORK/shop_token"
chmod 0640 "$WORK/shop_token" # group may read it: warned at start
printf 'mailer\n%s\n' "$CANARY" >"$FIX/smtp_auth"

"$PY" - "$FIX/script.json" "$CANARY" <<'PY'
import json, sys
c = sys.argv[2]
json.dump({
    "GET /rest/V1/orders/7001": [{"status": 200, "body": {"status": "processing",
        "order_currency_code": "USD", "customer_email": "cy@canary.example", "customer_firstname": "Cy",
        "items": [{"sku": "MUG-1", "qty_ordered": 3, "price": 25, "original_price": 25}]}}],
    f"POST /hooks/{c}?token={c}&x=1": [{"status": 200}],
    f"POST /fail/{c}?api_key={c}": [{"status": 422}],
    f"POST /busy/{c}": [{"status": 503}],
}, open(sys.argv[1], "w"))
PY
"$PY" "$(dirname "$0")/http_fixture.py" --port-file "$FIX/port" --script "$FIX/script.json" --log "$FIX/requests.log" &
CLEANUP+=("kill $!")
"$PY" "$(dirname "$0")/smtp_fixture.py" --port-file "$FIX/smtp-port" --mode auth --auth-file "$FIX/smtp_auth" \
    --store-dir "$FIX/mail" &
CLEANUP+=("kill $!")
wait_for 10 test -s "$FIX/port" || fail "the HTTP fixture did not start"
wait_for 10 test -s "$FIX/smtp-port" || fail "the SMTP fixture did not start"
hp="127.0.0.1:$(cat "$FIX/port")"
cat >"$WORK/webhooks.json" <<JSON
[{"event_code": "order.shipped", "url": "http://hookuser:$CANARY@$hp/hooks/$CANARY?token=$CANARY&x=1", "secret_file": "$WORK/hook_secret"},
 {"event_code": "order.refunded", "url": "http://$CANARY@$hp/fail/$CANARY?api_key=$CANARY", "secret_file": "$WORK/hook_secret"},
 {"event_code": "order.cancelled", "url": "http://$hp/busy/$CANARY", "secret_file": "$WORK/hook_secret"}]
JSON
export ORDERQ_SHOP_API_URL="http://$hp/" ORDERQ_SHOP_API_TOKEN_FILE="$WORK/shop_token"
export ORDERQ_SMTP_URL="smtp://127.0.0.1:$(cat "$FIX/smtp-port")" ORDERQ_SMTP_TLS=off ORDERQ_SMTP_USER=mailer
export ORDERQ_SMTP_PASSWORD_FILE="$WORK/smtp_password" ORDERQ_SMTP_FROM='Mug Shop <shop@mugs.example>'
export ORDERQ_WEBHOOKS_FILE="$WORK/webhooks.json"
# The second failure of order.cancelled waits 10 minutes: its retry stays
# in a delay queue, x-orderq-last-error and all, for the search below.
export ORDERQ_RETRY_TIERS=1s,10m

run migrate migrate
expect_eq 0 "$rc" "migrate as the canary MySQL user: $out"
run declare topology declare --create-shop-exchange
expect_eq 0 "$rc" "topology declare as the canary RabbitMQ user: $out"
printf '%s' '[{"rule_id": 14, "promo_id": 1, "name": "Mugs over 50", "currency": "USD", "skus": ["MUG-1"],
  "threshold": "50.00", "coupon": {"discount_type": "fixed", "discount": "10.00", "valid_days": 30, "code_prefix": "MUG-"}}]' \
    >"$WORK/rule.json"
run rules rules load "$WORK/rule.json"
expect_eq 0 "$rc" "rules load: $out"

note "a blank secret file stops consume with 78, naming the setting and the file"
: >"$WORK/empty"
printf '\n' >"$WORK/blank"
chmod 600 "$WORK/empty" "$WORK/blank"
RUN_TIMEOUT=20 ORDERQ_SMTP_PASSWORD_FILE="$WORK/empty" run empty-smtp consume --http-addr ""
expect_eq 78 "$rc" "consume with an empty smtp_password_file"
expect_contains "smtp_password_file: $WORK/empty is empty" "$out" "the message"
RUN_TIMEOUT=20 ORDERQ_SHOP_API_TOKEN_FILE="$WORK/blank" run blank-shop consume --http-addr ""
expect_eq 78 "$rc" "consume with a blank shop_api_token_file"
expect_contains "shop_api_token_file: $WORK/blank has a blank first line" "$out" "the message"
sed "s|$WORK/hook_secret|$WORK/empty|" "$WORK/webhooks.json" >"$WORK/webhooks-empty.json"
RUN_TIMEOUT=20 ORDERQ_WEBHOOKS_FILE="$WORK/webhooks-empty.json" run empty-hook consume --http-addr ""
expect_eq 78 "$rc" "consume with an empty webhook secret_file"
expect_contains "secret_file: $WORK/empty is empty" "$out" "the message"

note "the flow: shop API, coupon mail with AUTH, webhook calls, a dead letter"
hport=$(free_port)
"$ORDERQ_BIN" consume --instance-id canary --http-addr "127.0.0.1:$hport" >"$OUT/consume.out" 2>"$OUT/consume.err" &
consumer_pid=$!
CLEANUP+=("kill -9 $consumer_pid")
{
    echo '{"event_code": "order.processing", "event_identifier": "7001_processing", "event_data": {"order_id": "7001", "order_status": "processing", "currency": "USD"}}'
    echo '{"event_code": "order.shipped", "event_identifier": "ship-1", "event_data": {"order_id": "7001"}}'
    echo '{"event_code": "order.refunded", "event_identifier": "refund-1", "event_data": {"order_id": "7001"}}'
    echo '{"event_code": "order.cancelled", "event_identifier": "cancel-1", "event_data": {"order_id": "7001"}}'
} >"$WORK/events.jsonl"
run publish publish "$WORK/events.jsonl"
expect_eq 0 "$rc" "publish: $out"
wait_for 30 test -s "$FIX/mail/1.eml" || fail "no coupon mail reached the SMTP fixture; log: $(tail -5 "$OUT/consume.err")"
code=$(sql "$DB" -e "SELECT code FROM coupon WHERE order_id = '7001'")
[ -n "$code" ] || fail "no coupon for order 7001"
grep -qF "$code" "$FIX/mail/1.eml" || fail "the mail does not hold the coupon code $code"
grep -qiF "cy@canary.example" "$FIX/mail/1.eml" || fail "the mail is not to the customer the shop API named"
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT COUNT(*) FROM dead_letter WHERE event_identifier = 'refund-1'\")\" = 1 ]" \
    || fail "no dead letter for the 422: $(sql "$DB" -e 'SELECT event_identifier, error FROM dead_letter')"
wait_for 20 bash -c "[ \"\$(mariadb --socket=$SOCK -uroot -N -B $DB -e \"SELECT state FROM event_ledger WHERE effect_key = 'ship-1'\")\" = sent ]" \
    || fail "the webhook call was not recorded sent: $(sql "$DB" -e 'SELECT handler, effect_key, state, result FROM event_ledger')"
wait_for 20 bash -c "[ \$(grep -c '/busy/' '$FIX/requests.log') -ge 2 ]" || fail "order.cancelled was not retried"
"$PY" - "$FIX/requests.log" "$CANARY" <<'PY' || fail "the calls as the fixture saw them: $(cat "$FIX/requests.log")"
import hashlib, hmac, json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
key = sys.argv[2].encode()
shop = [r for r in reqs if r["path"] == "/rest/V1/orders/7001"]
assert shop and shop[0]["headers"]["Authorization"] == "Bearer " + sys.argv[2], shop
hooks = [r for r in reqs if r["path"].startswith("/hooks/")]
assert len(hooks) == 1, hooks
h = hooks[0]["headers"]
# v1 signs "<X-Orderq-Timestamp>.<body>" (docs/webhooks.md)
want = "v1=" + hmac.new(key, (h["X-Orderq-Timestamp"] + "." + hooks[0]["body"]).encode(), hashlib.sha256).hexdigest()
assert h["X-Orderq-Signature"] == want, (h, "not signed with the canary")
assert h["Idempotency-Key"] == "ship-1", h
PY
expect_contains "HTTP 422" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'refund-1'")" "the dead letter's reason"
# a webhook is shown as its event code and scheme://host:port, "/..." for the rest
expect_contains "webhook for order.refunded, http://$hp/...: HTTP 422" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = 'refund-1'")" "the URL in the reason, shown without path or query"
expect_eq "webhook for order.shipped, http://$hp/...: HTTP 200" "$(sql "$DB" -e "SELECT result FROM event_ledger WHERE effect_key = 'ship-1'")" "the ledger's result"
expect_contains "shop_api_token_file: $WORK/shop_token can be read by its group (mode 0640)" "$(cat "$OUT/consume.err")" "the warning about the shop token file"
[ "$(grep -c "can be read by" "$OUT/consume.err")" = 1 ] || fail "the warning is given once: $(grep "can be read by" "$OUT/consume.err")"
grep -q "smtp_password_file.*can be read" "$OUT/consume.err" && fail "a 0600 file was warned about"

note "/metrics, /healthz, config show, the test commands, every --help"
curl -sS "http://127.0.0.1:$hport/metrics" >"$OUT/metrics.out" 2>&1 || fail "no /metrics"
grep -q "^orderq_" "$OUT/metrics.out" || fail "/metrics holds no orderq series: $(head -3 "$OUT/metrics.out")"
curl -sS "http://127.0.0.1:$hport/healthz" >"$OUT/healthz.out" 2>&1 || true
run show config show
expect_eq 0 "$rc" "config show"
expect_contains "amqp://$ruser:***@127.0.0.1:5672/" "$out" "amqp_url shown"
expect_contains "http://$ruser:***@127.0.0.1:15672/" "$out" "amqp_mgmt_url shown"
expect_contains "mysql://$muser:***@localhost/$DB" "$out" "mysql_url shown"
run show-json config show --json
expect_eq 0 "$rc" "config show --json"
long="$CANARY$(printf 'x%.0s' $(seq 2100))" # a 2 KB password: once cut inside the userinfo, shown
ORDERQ_AMQP_URL="amqp://$ruser:$long@127.0.0.1:5672/" run show-long config show
expect_eq 0 "$rc" "config show of a 2 KB password"
expect_contains "amqp://$ruser:***@127.0.0.1:5672/" "$out" "the long password redacted"
run show-flags config show --smtp-password "$CANARY" --shop-api-token "$CANARY"
expect_eq 0 "$rc" "config show with secrets as flags"
expect_contains "smtp_password (--smtp-password) holds a secret, and flags show in ps" "$out" "the warning about a flag"
expect_contains "or use shop_api_token_file" "$out" "the warning points to the file setting"
run verify topology verify
expect_eq 0 "$rc" "topology verify through amqp_mgmt_url's user: $out"
run shop shop order 7001 --json
expect_eq 0 "$rc" "shop order: $out"
run hook-test webhook test order.refunded --json
expect_eq 65 "$rc" "webhook test of the failing endpoint"
expect_contains "HTTP 422" "$out" "its outcome"
run mail-test mail test --to dee@canary.example --json
expect_eq 0 "$rc" "mail test through AUTH: $out"
run dlq-list dlq list
run dlq-show dlq show "$(sql "$DB" -e "SELECT id FROM dead_letter WHERE event_identifier = 'refund-1'")"
expect_eq 0 "$rc" "dlq show: $out"
run ledger-show ledger show ship-1
run help --help
grep -q "(ps," "$OUT/help.out" || fail "orderq --help does not say flags show in ps"
for cmd in consume publish relay migrate topology rules ledger dlq mail shop webhook config; do # version takes no settings
    run "help-$cmd" "$cmd" --help
    expect_eq 0 "$rc" "$cmd --help"
    grep -q "(ps," "$OUT/help-$cmd.out" || fail "$cmd --help does not say flags show in ps"
done

note "stop, then search everything orderq left"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
mysqldump --socket="$SOCK" -uroot --skip-dump-date "$DB" >"$OUT/db.sql"
grep -q "ship-1" "$OUT/db.sql" || fail "the dump holds no ledger"
sql "$DB" -e "SELECT * FROM dead_letter" >"$OUT/dead_letter.txt"
v=$(urlenc "$VHOST")
for q in $(mgmt GET "/api/queues/$v" | json '" ".join(q["name"] for q in d)'); do
    mgmt POST "/api/queues/$v/$q/get" '{"count": 10000, "ackmode": "reject_requeue_true", "encoding": "auto"}' \
        >"$OUT/queue-$q.json"
done
"$PY" - "$OUT" <<'PY' || fail "no retry with x-orderq-last-error left in a delay queue"
import glob, json, sys
for f in glob.glob(sys.argv[1] + "/queue-*.json"):
    for m in json.load(open(f)):
        err = (m["properties"].get("headers") or {}).get("x-orderq-last-error", "")
        if "webhook for order.cancelled, http://127.0.0.1:" in err and "/...: HTTP 503" in err:
            sys.exit(0)
sys.exit(1)
PY
found=$(grep -rlF -e "$CANARY" -e "$hex" "$OUT" || true)
[ -z "$found" ] || fail "the canary is in: $(for f in $found; do echo "$f: $(grep -oF -m2 -e "$CANARY" -e "$hex" "$f" | head -2 | tr '\n' ' ') $(grep -F -m1 -e "$hex" "$f" | cut -c1-300)"; done)"
echo "searched $(ls "$OUT" | wc -l) files, $(cat "$OUT"/* | wc -c) bytes: no canary"
