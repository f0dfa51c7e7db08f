#!/usr/bin/env bash
# cli.sh - the orderq command line without any server: help, usage errors,
# configuration precedence and errors, redaction, exit codes (sysexits.h)
set -euo pipefail
ORDERQ_BIN=${ORDERQ_BIN:?ORDERQ_BIN must point at the orderq binary}
PY=/usr/bin/python3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Only what this test sets: no ORDERQ_* from the caller's environment.
while IFS= read -r var; do unset "$var"; done < <(env | sed -n 's/^\(ORDERQ_[A-Z_]*\)=.*/\1/p' | grep -v '^ORDERQ_BIN$')

fail() { echo "FAIL: $*" >&2; exit 1; }
# run WANT_EXIT CMD...: run, keep stdout/stderr in $out/$err, check the exit code
run() {
    local want=$1; shift
    set +e
    "$@" >"$WORK/out" 2>"$WORK/err"
    local rc=$?
    set -e
    out=$(cat "$WORK/out"); err=$(cat "$WORK/err")
    [ "$rc" = "$want" ] || fail "$*: exit $rc, expected $want; stderr: $err"
}
has() { grep -qF -- "$1" <<<"$2" || fail "expected [$1] in: $2"; }

run 64 "$ORDERQ_BIN"
has "Usage: orderq <command>" "$err"
run 0 "$ORDERQ_BIN" --help
has "consume" "$out"; has "migrate" "$out"; has "topology" "$out"
for cmd in consume migrate topology config version; do
    run 0 "$ORDERQ_BIN" "$cmd" --help
    has "Usage: orderq $cmd" "$out"
done
run 0 "$ORDERQ_BIN" config --help
has "ORDERQ_BATCH_WINDOW_MS" "$out"
run 64 "$ORDERQ_BIN" frobnicate
has 'unknown command "frobnicate"' "$err"
run 64 "$ORDERQ_BIN" migrate --frobnicate
has 'unknown option "--frobnicate"' "$err"
run 64 "$ORDERQ_BIN" migrate --lock-wait
has "--lock-wait needs a value" "$err"
run 64 "$ORDERQ_BIN" topology
run 64 "$ORDERQ_BIN" topology undeclare

run 0 "$ORDERQ_BIN" version --json
"$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["orderq"] and d["librabbitmq"]' "$out"

# bad configuration: one line naming the setting and its source, exit 78
run 78 env ORDERQ_PREFETCH=abc "$ORDERQ_BIN" config show
[ "$(wc -l <<<"$err")" = 1 ] || fail "config error is not one line: $err"
has 'prefetch (ORDERQ_PREFETCH): expected an integer from 1 to 65535, got "abc"' "$err"
run 78 "$ORDERQ_BIN" config show --log-level loud
has 'log_level (--log-level): expected one of debug|info|warn|error' "$err"
printf '{\n  // local\n  "prefetch": 100,\n  "batch_window_ms": "soon"\n}\n' >"$WORK/bad.json"
run 78 "$ORDERQ_BIN" config show --config "$WORK/bad.json"
has "batch_window_ms ($WORK/bad.json:4:" "$err"
run 78 "$ORDERQ_BIN" config show --config "$WORK/missing.json"
has "$WORK/missing.json: cannot read it" "$err"

# precedence: defaults < file < env < flag, and show names each source
printf '{"prefetch": 100, "batch_size": 10, "shop_exchange": "from.file"}' >"$WORK/ok.json"
run 0 env ORDERQ_CONFIG="$WORK/ok.json" ORDERQ_PREFETCH=200 ORDERQ_BATCH_SIZE=20 \
    "$ORDERQ_BIN" config show --json --prefetch 300
"$PY" - "$out" "$WORK/ok.json" <<'PY' || fail "precedence: $out"
import json, sys
d = json.loads(sys.argv[1])
assert d["prefetch"] == {"value": 300, "source": "--prefetch"}, d["prefetch"]
assert d["batch_size"] == {"value": 20, "source": "ORDERQ_BATCH_SIZE"}, d["batch_size"]
assert d["shop_exchange"]["value"] == "from.file" and d["shop_exchange"]["source"].startswith(sys.argv[2] + ":"), d["shop_exchange"]
assert d["heartbeat_s"] == {"value": 30, "source": "default"}, d["heartbeat_s"]
PY

# secrets: passwords inside URLs never printed
run 0 env ORDERQ_MYSQL_URL='mysql://app:Db-S3cret@db.example/orderq' "$ORDERQ_BIN" config show \
    --amqp-url 'amqp://app:Mq-S3cret@mq.example/shop' --smtp-url 'smtps://m:Mail-S3cret@smtp.example'
if grep -q S3cret <<<"$out$err"; then fail "a password was printed: $out"; fi
has "app:***@mq.example" "$out"; has "app:***@db.example" "$out"; has "m:***@smtp.example" "$out"

# a typo in an ORDERQ_ variable is reported, not silently ignored
run 0 env ORDERQ_AMQP_ULR=amqp://x/ "$ORDERQ_BIN" config show
has "ORDERQ_AMQP_ULR" "$err"
echo "PASS cli"
