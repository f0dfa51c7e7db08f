#!/usr/bin/env bash
# rules.sh - `orderq rules load|list` against MariaDB: upsert by rule_id,
# SKU lists replaced, a bad file saves nothing and names the rule and field
source "$(dirname "$0")/lib.sh"
need_mysql
oq migrate >/dev/null 2>&1

cat >"$WORK/rules.json" <<'JSON'
[{"rule_id": 14, "promo_id": 1, "name": "Mugs over 50", "currency": "USD",
  "skus": ["MUG-1", "MUG-2"], "threshold": "50.00",
  "coupon": {"discount_type": "fixed", "discount": "10.00", "valid_days": 30, "code_prefix": "MUG-"}},
 {"rule_id": 15, "promo_id": 2, "name": "Tea", "currency": "JPY",
  "skus": ["TEA-1"], "threshold": 2000,
  "coupon": {"discount_type": "percent", "discount": 12.5, "valid_days": 7}}]
JSON

note "load, then list gives back the same rules"
out=$(oq rules load "$WORK/rules.json")
expect_eq "loaded 2 rules" "$out" "load output"
oq rules list --json >"$WORK/list.json"
"$PY" - "$WORK/list.json" <<'PY' || fail "rules list --json: $(cat "$WORK/list.json")"
import json, sys
got = json.load(open(sys.argv[1]))
assert [r["rule_id"] for r in got] == [14, 15], got
assert got[0]["threshold"] == "50.00" and got[0]["skus"] == ["MUG-1", "MUG-2"], got[0]
assert got[0]["coupon"] == {"discount_type": "fixed", "discount": "10.00", "valid_days": 30, "code_prefix": "MUG-"}, got[0]
assert got[1]["threshold"] == "2000" and got[1]["coupon"]["discount"] == "12.50", got[1]
PY
expect_eq "5000 1000" "$(sql "$DB" -e "SELECT CONCAT(threshold_minor, ' ', discount_minor) FROM coupon_rule WHERE rule_id = 14")" "minor units stored"
table=$(oq rules list)
expect_contains "Mugs over 50" "$table" "table"
expect_contains "12.50 %" "$table" "percent shown"

note "loading again upserts by rule_id and replaces the SKU list"
sed -e 's/"MUG-1", "MUG-2"/"MUG-3"/' -e 's/Mugs over 50/Mugs over 60/' "$WORK/rules.json" >"$WORK/rules2.json"
oq rules load "$WORK/rules2.json" >/dev/null
expect_eq 2 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon_rule')" "rules after reload"
expect_eq "MUG-3" "$(sql "$DB" -e 'SELECT GROUP_CONCAT(sku) FROM coupon_rule_sku WHERE rule_id = 14')" "SKUs replaced"
expect_eq "Mugs over 60" "$(sql "$DB" -e 'SELECT name FROM coupon_rule WHERE rule_id = 14')" "name updated"

note "a bad rule: exit 65, the rule and field named, nothing saved"
sed -e 's/"threshold": "50.00"/"threshold": "50.001"/' -e 's/"rule_id": 15/"rule_id": 16/' "$WORK/rules.json" >"$WORK/bad.json"
try oq rules load "$WORK/bad.json"
expect_eq 65 "$rc" "exit code for a bad rules file"
expect_contains "rule 1 (rule_id 14): threshold: amount \"50.001\" has more than 2 decimal places" "$out" "error text"
expect_eq 0 "$(sql "$DB" -e 'SELECT COUNT(*) FROM coupon_rule WHERE rule_id = 16')" "nothing saved from a bad file"
try oq rules load "$WORK/missing.json"
expect_eq 66 "$rc" "exit code for a missing file"
