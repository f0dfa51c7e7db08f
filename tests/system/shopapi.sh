#!/usr/bin/env bash
# shopapi.sh - `orderq shop order`: an order looked up in a Magento-style REST
# API (a fixture server started here): the bearer token sent, the answer
# turned into event_data, and every failure classified. Then the consumer:
# an order.processing event without items is completed from the API, on an
# effect worker: a slow API does not hold the database workers' batches.
source "$(dirname "$0")/lib.sh"

cat >"$WORK/script.json" <<'JSON'
{
  "GET /rest/V1/orders/9200000217": [{"status": 200, "body": {
      "entity_id": 217, "increment_id": "9200000217", "status": "processing",
      "order_currency_code": "USD", "customer_email": "ann@example.com",
      "customer_firstname": "Ann", "customer_lastname": "Lee",
      "items": [
        {"item_id": 1, "sku": "MUG-1", "qty_ordered": 2, "price": 25, "original_price": 25, "parent_item_id": null},
        {"item_id": 2, "sku": "TEE-RED-M", "qty_ordered": 1, "price": 19.9, "original_price": 24.9},
        {"item_id": 3, "sku": "TEE-RED-M-child", "qty_ordered": 1, "price": 0, "parent_item_id": 2}
      ]}}],
  "GET /rest/V1/orders/flaky": [{"status": 503}, {"status": 200, "body": {
      "order_currency_code": "EUR", "customer_email": "bo@example.com", "items": []}}],
  "GET /rest/V1/orders/limited": [{"status": 429, "headers": {"Retry-After": "7"}}],
  "GET /rest/V1/orders/garbled": [{"status": 200, "raw": "<html>maintenance</html>"}],
  "GET /rest/V1/orders/no-items": [{"status": 200, "body": {"order_currency_code": "USD"}}],
  "GET /rest/V1/orders/slow": [{"status": 200, "delay_s": 5, "body": {}}],
  "GET /rest/V1/orders/a%2Fb": [{"status": 401}],
  "GET /rest/V1/orders/7001": [{"status": 200, "body": {"status": "processing", "order_currency_code": "USD",
      "customer_email": "cy@example.com", "customer_firstname": "Cy",
      "items": [{"sku": "MUG-1", "qty_ordered": 3, "price": 25, "original_price": 25}]}}],
  "GET /rest/V1/orders/7002": [{"status": 503}, {"status": 200, "body": {"status": "processing",
      "order_currency_code": "USD", "customer_email": "di@example.com",
      "items": [{"sku": "MUG-1", "qty_ordered": "4.0000", "price": "25.0000", "original_price": "25.0000"}]}}],
  "GET /rest/V1/orders/7009": [{"status": 200, "delay_s": 4, "body": {"status": "processing",
      "order_currency_code": "USD", "customer_email": "ed@example.com",
      "items": [{"sku": "MUG-1", "qty_ordered": 3, "price": 25, "original_price": 25}]}}],
  "GET /rest/V1/orders/7004": [{"status": 200, "body": {"status": "processing", "order_currency_code": "EUR",
      "items": [{"sku": "MUG-1", "qty_ordered": 3, "price": 25}]}}]
}
JSON
"$PY" - "$WORK/script.json" <<'PY' # an answer over the 8 MiB cap; one 2 MB but nested a million deep
import json, sys
script = json.load(open(sys.argv[1]))
script["GET /rest/V1/orders/huge"] = [{"status": 200, "raw": "[" + "1," * (9 << 19) + "1]"}]
script["GET /rest/V1/orders/deep"] = [{"status": 200, "raw": '{"x":' + "[" * 1000000 + "]" * 1000000 + "}"}]
json.dump(script, open(sys.argv[1], "w"))
PY
start_http_fixture
export ORDERQ_SHOP_API_URL="$base/" ORDERQ_SHOP_API_TOKEN=tok-123

note "an order is found and turned into event_data; the token is sent as a bearer"
try oq shop order 9200000217 --json
expect_eq 0 "$rc" "exit code"
"$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["outcome"] == "found", d
assert d["event_data"] == {"order_id": "9200000217", "currency": "USD", "order_status": "processing",
    "customer": {"email": "ann@example.com", "name": "Ann Lee"},
    "items": [{"sku": "MUG-1", "qty": "2", "price": "25", "original_price": "25"},
              {"sku": "TEE-RED-M", "qty": "1", "price": "19.9", "original_price": "24.9"}]}, d
' "$out" || fail "the order as event_data: $out"
expect_eq "Bearer tok-123" "$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["headers"]["Authorization"])' "$WORK/requests.log")" "Authorization header"
expect_eq "" "$(oq config show 2>&1 | grep -F tok-123 || true)" "the token printed by config show"

note "failures are classified"
try oq shop order flaky --json
expect_eq 75 "$rc" "exit code on 503"
expect_contains "HTTP 503" "$out" "reason on 503"
try oq shop order flaky --json
expect_eq 0 "$rc" "the same order once the shop is back"
try oq shop order limited --json
expect_eq 75 "$rc" "exit code on 429"
try oq shop order nosuch --json
expect_eq 65 "$rc" "exit code on 404"
expect_contains "(no such order)" "$out" "reason on 404"
try oq shop order garbled --json
expect_eq 65 "$rc" "exit code on an answer that is not JSON"
expect_contains "is not a JSON object" "$out" "reason on garbage"
try oq shop order huge --json
expect_eq 65 "$rc" "exit code on an answer over 8 MiB"
expect_contains "is over 8388608 bytes" "$out" "reason on a huge answer"
try oq shop order deep --json
expect_eq 65 "$rc" "exit code on an answer nested a million deep (under the 8 MiB cap)"
expect_contains "nests deeper than 64 levels" "$out" "reason on a deep answer"
try oq shop order no-items --json
expect_eq 65 "$rc" "exit code on an order without items"
expect_contains "has no items array" "$out" "reason on no items"
try oq shop order a/b --json
expect_eq 65 "$rc" "exit code on 401 (the id escaped into one path segment)"
try env ORDERQ_SHOP_API_TIMEOUT_MS=1s "$ORDERQ_BIN" shop order slow --json
expect_eq 75 "$rc" "exit code on a timeout"
expect_contains "Timeout" "$out" "reason on a timeout"
try env ORDERQ_SHOP_API_URL="http://127.0.0.1:$(free_port)" "$ORDERQ_BIN" shop order 1 --json
expect_eq 75 "$rc" "exit code on a closed port"
try env ORDERQ_SHOP_API_URL= "$ORDERQ_BIN" shop order 1
expect_eq 78 "$rc" "exit code without shop_api_url"
expect_contains "shop_api_url is empty" "$out" "reason without shop_api_url"
try env ORDERQ_SHOP_API_TOKEN= ORDERQ_SHOP_API_TOKEN_FILE=/nonexistent/token timeout 20 "$ORDERQ_BIN" consume
expect_eq 78 "$rc" "consume with an unreadable shop_api_token_file"
expect_contains "shop_api_token_file: cannot read /nonexistent/token" "$out" "the setting named"

note "the consumer completes an order event without items from the shop API"
export ORDERQ_RETRY_TIERS=1s ORDERQ_MAX_ATTEMPTS=3
setup_consumer_test
addr="127.0.0.1:$(free_port)"
start_consumer shop --http-addr "$addr"
order() { printf '{"event_code":"order.processing","event_identifier":"%s_processing","event_data":{"order_id":"%s","order_status":"processing","currency":"USD"}}\n' "$1" "$1"; }
{ order 7001; order 7002; order 7003; order 7004; } | oq publish - >/dev/null
settled() { [ "$(sql "$DB" -e 'SELECT (SELECT COUNT(*) FROM event_ledger) + (SELECT COUNT(*) FROM dead_letter)')" = 4 ]; }
wait_for 30 settled || fail "not every order was settled: $(sql "$DB" -e 'SELECT effect_key FROM event_ledger; SELECT event_identifier, error FROM dead_letter')"
expect_eq "7001 cy@example.com" "$(sql "$DB" -e "SELECT CONCAT(order_id, ' ', customer_email) FROM coupon WHERE order_id = '7001'")" "coupon from the API's items and e-mail"
expect_eq "7002 di@example.com" "$(sql "$DB" -e "SELECT CONCAT(order_id, ' ', customer_email) FROM coupon WHERE order_id = '7002'")" "coupon after a 503 and a retry"
expect_eq 2 "$(sql "$DB" -e "SELECT attempts FROM event_ledger WHERE effect_key = '7002_processing'")" "attempts for the order behind a 503"
expect_contains "HTTP 404 for order 7003" "$(sql "$DB" -e "SELECT CONCAT(error_class, ' ', error) FROM dead_letter WHERE event_identifier = '7003_processing'")" "an order the shop does not know"
expect_contains "permanent" "$(sql "$DB" -e "SELECT error_class FROM dead_letter WHERE event_identifier = '7003_processing'")" "its class"
expect_contains "order 7004 is in EUR, the event says USD" "$(sql "$DB" -e "SELECT error FROM dead_letter WHERE event_identifier = '7004_processing'")" "a currency that disagrees"
expect_eq 2 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon')" "coupons in all"
# five calls: 7001, 7002 twice (503, then 200), 7003 (404), 7004; nothing else here speaks HTTP
http_calls() { metric_sum "$addr" orderq_send_duration_seconds_count protocol=http; }
expect_eq 5 "$(http_calls)" "shop API calls in orderq_send_duration_seconds{protocol=\"http\"}"

note "a shop API answering after 4 s holds an effect worker, not the batches behind it"
order 7009 | oq publish - >/dev/null
sleep 0.5
printf '{"event_code":"order.processing","event_identifier":"7010_processing","event_data":{"order_id":"7010","order_status":"processing","currency":"USD","customer":{"email":"fi@example.com"},"items":[{"sku":"MUG-1","qty":3,"price":"25.00"}]}}\n' \
    | oq publish - >/dev/null
coupon_of() { [ "$(sql "$DB" -e "SELECT COUNT(*) FROM coupon WHERE order_id = '$1'")" = 1 ]; }
wait_for 2 coupon_of 7010 || fail "the complete order waited for the slow look-up"
coupon_of 7009 && fail "the slow look-up finished too early to tell"
wait_for 15 coupon_of 7009 || fail "the slow look-up never committed: $(tail -3 "$WORK/shop.log")"
expect_eq 6 "$(http_calls)" "shop API calls after the slow one"
expect_eq 5 "$(metric_sum "$addr" orderq_send_duration_seconds_bucket protocol=http le=2.5)" \
    "calls under 2.5 s: all but the one answered after 4 s"
