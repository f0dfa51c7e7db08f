#!/usr/bin/env bash
# metrics_promtool.sh - a live /metrics scrape of `orderq consume` after a
# known load: promtool check metrics finds nothing to complain about, every
# family of docs/metrics.md is there with its documented labels, and the
# outcomes add up: per queue, done + duplicate + retried + dead + invalid
# == deliveries once everything is settled
source "$(dirname "$0")/lib.sh"
export ORDERQ_RETRY_TIERS=1s ORDERQ_MAX_ATTEMPTS=3
export ORDERQ_METRICS_DB_INTERVAL_MS=1s # the database gauges, read by one thread
command -v promtool >/dev/null || fail "promtool is missing: apt-get install prometheus (deploy/local/lib.sh installs it)"
need_maildev
setup_consumer_test
export ORDERQ_SMTP_URL=smtp://127.0.0.1:1025 ORDERQ_SMTP_TLS=off
CONSUME_QUEUES="" # every queue: the coupon mails too
port=$(free_port)
addr="127.0.0.1:$port"
start_consumer prom --http-addr "$addr" --batch-window-ms 100
wait_for 20 curl -sf "http://$addr/readyz" || fail "never ready: $(tail -3 "$WORK/prom.log")"

note "before any event: the scrape already passes promtool"
curl -sf "http://$addr/metrics" >"$WORK/empty.txt" || fail "no scrape"
promtool check metrics <"$WORK/empty.txt" >"$WORK/lint0" 2>&1 || fail "promtool on the first scrape: $(cat "$WORK/lint0")"

note "10 orders (2 sent twice), 2 bodies that are not events, a probe retried once, a probe dead"
"$PY" "$(dirname "$0")/metrics_pub.py" "$VHOST" "p$$" --orders 10 --dups 2 --invalid 2 --probes >/dev/null \
    || fail "publishing the load"
outcome() { metric_sum "$addr" orderq_outcomes_total "queue=$1" "outcome=$2"; }
settled() {
    [ "$(outcome orderq.order.processing done)" = 10 ] && [ "$(outcome orderq.coupon.email done)" = 10 ] &&
        [ "$(outcome orderq.probe done)" = 1 ] && [ "$(outcome orderq.probe dead)" = 1 ] &&
        [ "$(metric_sum "$addr" orderq_in_flight_deliveries)" = 0 ]
}
wait_for 45 settled || fail "not settled: outbox $(sql "$DB" -e "SELECT COUNT(*), COUNT(published_at), MAX(last_error) FROM outbox"); $(curl -sf "http://$addr/metrics" | grep -E '^orderq_(outcomes|deliveries)_total' | grep -v ' 0$'); $(tail -3 "$WORK/prom.log")"
curl -sf "http://$addr/metrics" >"$WORK/scrape.txt" || fail "no scrape"

note "promtool check metrics: no complaint"
promtool check metrics <"$WORK/scrape.txt" >"$WORK/lint" 2>&1 || fail "promtool: $(cat "$WORK/lint")"
[ -s "$WORK/lint" ] && fail "promtool complains: $(cat "$WORK/lint")"

note "the outcomes, by queue"
for want in "orderq.order.processing done 10" "orderq.order.processing duplicate 2" \
    "orderq.order.processing invalid 2" "orderq.order.processing retried 0" "orderq.order.processing dead 0" \
    "orderq.probe retried 1" "orderq.probe done 1" "orderq.probe dead 1" "orderq.coupon.email done 10"; do
    set -- $want
    expect_eq "$3" "$(outcome "$1" "$2")" "orderq_outcomes_total{queue=$1,outcome=$2}"
done
expect_eq 10 "$(metric_sum "$addr" orderq_sends_total handler=coupon_mail result=sent)" "mails sent"

note "the database gauges: dead letters by class as archived, the outbox published"
letters() { [ "$(metric_sum "$addr" orderq_dead_letters error_class=bad_input) $(metric_sum "$addr" orderq_dead_letters error_class=permanent)" = "2 1" ]; }
wait_for 15 letters || fail "orderq_dead_letters: $(curl -sf "http://$addr/metrics" | grep '^orderq_dead_letters{'); in the table: $(sql "$DB" -e 'SELECT error_class, COUNT(*) FROM dead_letter GROUP BY 1')"
expect_eq 0 "$(metric_sum "$addr" orderq_outbox_backlog)" "orderq_outbox_backlog"
expect_eq "0 0" "$(metric_sum "$addr" orderq_ledger_rows state=sending) $(metric_sum "$addr" orderq_ledger_rows state=unknown)" "orderq_ledger_rows"

note "label sets, the families of docs/metrics.md, outcomes == deliveries"
"$PY" - "$WORK/scrape.txt" "$(dirname "$0")/../../docs/metrics.md" <<'PY' || fail "the scrape does not match docs/metrics.md"
import re, sys
text = open(sys.argv[1]).read()
doc = open(sys.argv[2]).read()
series = {}
for line in text.splitlines():
    if line.startswith("#") or not line:
        continue
    m = re.match(r'([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
    assert m, line
    labels = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
    series.setdefault(m.group(1), []).append((labels, float(m.group(3))))
bad = []
def labels_of(name, want):
    for labels, _ in series.get(name, []):
        if set(labels) != set(want):
            bad.append(f"{name}: labels {sorted(labels)}, expected {sorted(want)}")
# every family the contract names, each with its documented labels
for row in re.findall(r'^\| `(orderq_[a-z_]+)` \| ([^|]*)\|', doc, re.M):
    name, labels = row[0], re.findall(r'`([a-z_]+)`', re.sub(r'\([^)]*\)', '', row[1]))
    if f"# TYPE {name} " not in text:
        bad.append(f"{name}: not in the scrape")
        continue
    hist = f"# TYPE {name} histogram" in text
    for suffix in (["_bucket", "_sum", "_count"] if hist else [""]):
        if name + suffix in series:
            labels_of(name + suffix, labels + (["le"] if suffix == "_bucket" else []))
outcomes = {"done", "duplicate", "retried", "dead", "invalid"}
for labels, _ in series["orderq_outcomes_total"]:
    if labels["outcome"] not in outcomes:
        bad.append(f"outcome {labels['outcome']}")
for q in ("orderq.order.processing", "orderq.probe", "orderq.coupon.email"):
    got = sum(v for l, v in series["orderq_outcomes_total"] if l["queue"] == q)
    delivered = sum(v for l, v in series["orderq_deliveries_total"] if l["queue"] == q)
    if got != delivered:
        bad.append(f"{q}: outcomes {got} != deliveries {delivered}")
for h in ("orderq_batch_size", "orderq_commit_duration_seconds", "orderq_event_age_seconds"):
    inf = [v for l, v in series[h + "_bucket"] if l["le"] == "+Inf"][0]
    if inf != series[h + "_count"][0][1] or inf == 0:
        bad.append(f"{h}: +Inf {inf}, count {series[h + '_count'][0][1]}")
batches = series["orderq_batches_total"][0][1]
if series["orderq_batch_size_count"][0][1] != batches:
    bad.append(f"batch_size count != batches_total {batches}")
if series["orderq_event_age_seconds_count"][0][1] != 21:
    bad.append(f"event ages observed {series['orderq_event_age_seconds_count'][0][1]}, expected 21 (the done outcomes)")
smtp = [v for l, v in series["orderq_send_duration_seconds_count"] if l["protocol"] == "smtp"]
if smtp != [10]:
    bad.append(f"smtp send durations {smtp}, expected [10]")
took = {l["handler"]: v for l, v in series["orderq_handler_duration_seconds_count"]}
if took.get("coupon_mail") != 10 or not took.get("coupon_rules") or not took.get("probe"):
    bad.append(f"handler durations observed {took}, expected coupon_mail 10, coupon_rules and probe some")
if bad:
    print("\n".join(bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
sha=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)
grep -q "^orderq_build_info{version=\"[0-9.]*\",git_sha=\"[0-9a-f]*\"} 1$" "$WORK/scrape.txt" || fail "build_info: $(grep build_info "$WORK/scrape.txt")"
note "build_info: $(grep '^orderq_build_info' "$WORK/scrape.txt") (checkout at $sha)"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
