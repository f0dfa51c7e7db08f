#!/usr/bin/env bash
# deploy_systemd.sh - the systemd units of deploy/systemd load without a
# warning (systemd-analyze verify), keep their hardening (systemd-analyze
# security), stop later than orderq's drain can take, and give each
# orderq@NN instance a port of its own. No server needed: nothing is
# started, the units are only read.
source "$(dirname "$0")/lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"
units="$here/../../deploy/systemd"
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (deploy/local/lib.sh installs Debian's systemd)"

ORDERQ_BIN=$(realpath "$ORDERQ_BIN") # the tests below run in $WORK/units

# verify wants ExecStart's binary to exist: a copy of the units in $WORK
# runs the binary under test instead of /usr/bin/orderq.
mkdir "$WORK/units"
for f in orderq@.service orderq-relay.service orderq-migrate.service; do
    [ -f "$units/$f" ] || fail "deploy/systemd/$f is missing"
    sed "s#/usr/bin/orderq #$ORDERQ_BIN #" "$units/$f" >"$WORK/units/$f"
    grep -q "$ORDERQ_BIN" "$WORK/units/$f" || fail "$f: no ExecStart=/usr/bin/orderq to check"
done

note "systemd-analyze verify: no warning on any unit (a template is verified as an instance)"
cd "$WORK/units"
try systemd-analyze verify ./orderq@01.service ./orderq-relay.service ./orderq-migrate.service
expect_eq 0 "$rc" "verify exit code (output: $out)"
expect_eq "" "$out" "verify output"

note "hardening: exposure at most 2.0 of 10 (systemd-analyze security)"
for u in orderq@01.service orderq-relay.service orderq-migrate.service; do
    try systemd-analyze security --offline=yes --threshold=20 "./$u"
    level=$(grep -o 'Overall exposure level for [^:]*: [0-9.]*' <<<"$out" | awk '{print $NF}')
    expect_eq 0 "$rc" "$u exposure ${level:-?} over 2.0 ($(grep -v '^✓' <<<"$out" | head -20))"
    echo "$u exposure $level"
done

note "TimeoutStopSec is above the longest drain of the defaults"
drain=$("$PY" "$here/deploy_check.py" drain "$ORDERQ_BIN")
for u in orderq@.service orderq-relay.service; do
    stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\?$/\1/p' "$u")
    [ -n "$stop" ] || fail "$u: no TimeoutStopSec=<seconds>"
    [ "$stop" -gt "$drain" ] || fail "$u: TimeoutStopSec=$stop is not above the drain of $drain s"
    grep -qx 'KillSignal=SIGTERM' "$u" || fail "$u: KillSignal is not SIGTERM"
done
echo "drain at most $drain s, TimeoutStopSec $stop s"

note "instances: distinct ports, each one orderq accepts, none the relay's; other names refused"
pre=$(sed -n 's/^ExecStartPre=//p' orderq@.service)
exec_line=$(sed -n 's/^ExecStart=//p' orderq@.service)
relay_port=$(sed -n 's/^ExecStart=.*--http-addr [^ ]*:\([0-9]*\).*/\1/p' orderq-relay.service)
declare -A seen=()
for i in 01 02 03 09 10 42 99; do
    cmd=${pre//%i/$i}
    try sh -c "$(eval "set -- $cmd"; echo "$3")" # the unit's /bin/sh -c '...'
    expect_eq 0 "$rc" "ExecStartPre of orderq@$i ($out)"
    addr=$(sed -n 's/.*--http-addr \([^ ]*\).*/\1/p' <<<"${exec_line//%i/$i}")
    addr=${addr//\$\{OQ_HTTP_HOST\}/127.0.0.1}
    port=${addr##*:}
    [ -z "${seen[$port]:-}" ] || fail "orderq@$i and orderq@${seen[$port]} share port $port"
    [ "$port" != "$relay_port" ] || fail "orderq@$i has the relay's port $port"
    seen[$port]=$i
    got=$("$ORDERQ_BIN" config show --json --http-addr "$addr" | json 'd["http_addr"]["value"]')
    expect_eq "$addr" "$got" "orderq@$i's http_addr"
done
echo "ports: ${!seen[*]}"
for bad in 1 001 a1 x; do
    cmd=${pre//%i/$bad}
    try sh -c "$(eval "set -- $cmd"; echo "$3")"
    [ "$rc" != 0 ] || fail "orderq@$bad was accepted (port 95$bad)"
    expect_contains "expected a two-digit instance number" "$out" "orderq@$bad refused"
done
