#!/usr/bin/env bash
# deploy_prometheus.sh - deploy/prometheus is what Prometheus accepts
# (promtool check config, check rules), alerts.yml holds exactly orderq's
# alerts, each with for:, a severity and its runbook, and the unit tests of
# alerts_test.yml fire and spare each alert (promtool test rules). No
# server needed.
source "$(dirname "$0")/lib.sh"
prom="$(cd "$(dirname "$0")/../../deploy" && pwd)/prometheus"
command -v promtool >/dev/null || fail "promtool is missing (deploy/local/lib.sh installs Debian's prometheus)"
for f in prometheus.yml alerts.yml alerts_test.yml; do
    [ -f "$prom/$f" ] || fail "deploy/prometheus/$f is missing"
done

note "promtool check config / check rules"
try promtool check config "$prom/prometheus.yml"
expect_eq 0 "$rc" "promtool check config ($out)"
try promtool check rules "$prom/alerts.yml"
expect_eq 0 "$rc" "promtool check rules ($out)"

note "exactly the eight alert names agreed for issue 13, each with for:, severity, summary, description, runbook"
"$PY" - "$prom/alerts.yml" <<'PY' || fail "alerts.yml"
import sys, yaml
want = ["OrderqDown", "OrderqNotReady", "OrderqNoConsumer", "OrderqDeadLettersGrowing",
        "OrderqOutboxLagging", "OrderqReconnectStorm", "OrderqAmbiguousMails", "OrderqEventAgeHigh"]
rules = [r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]]
alerts = [r for r in rules if "alert" in r]
names = [a["alert"] for a in alerts]
bad = []
if sorted(names) != sorted(want):
    bad.append(f"alerts {sorted(names)}, expected {sorted(want)}")
for a in alerts:
    n = a["alert"]
    if not a.get("for"):
        bad.append(f"{n}: no for:")
    if a.get("labels", {}).get("severity") not in ("critical", "warning"):
        bad.append(f"{n}: severity {a.get('labels', {}).get('severity')!r}, expected critical or warning")
    ann = a.get("annotations", {})
    for k in ("summary", "description"):
        if not ann.get(k):
            bad.append(f"{n}: no {k} annotation")
    if ann.get("runbook_url") != f"docs/operations.md#{n.lower()}":
        bad.append(f"{n}: runbook_url {ann.get('runbook_url')!r}, expected docs/operations.md#{n.lower()}")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY

note "promtool test rules: every alert fires on its case and stays quiet on the others"
"$PY" - "$prom/alerts_test.yml" <<'PY' || fail "alerts_test.yml does not test each alert both ways"
import sys, yaml
fire, quiet = set(), set()
for t in yaml.safe_load(open(sys.argv[1]))["tests"]:
    for c in t.get("alert_rule_test", []):
        (fire if c.get("exp_alerts") else quiet).add(c["alertname"])
missing = sorted((fire ^ quiet) | ({"OrderqDown"} - fire))
print("fires:", len(fire), "quiet:", len(quiet))
if missing or len(fire) != 8:
    print("FAIL: not tested both ways:", missing, file=sys.stderr)
    sys.exit(1)
PY
cd "$prom"
try promtool test rules alerts_test.yml
expect_eq 0 "$rc" "promtool test rules ($out)"
