#!/usr/bin/env bash
# state_dir.sh - deploy/local makes its state directory (server logs, the
# local users' passwords) safely: a symbolic link or another user's
# directory at its name is refused, never followed. Uses a state dir under
# $WORK, never the running stack's.
source "$(dirname "$0")/lib.sh"
deploy_lib="$(cd "$(dirname "$0")/../../deploy/local" && pwd)/lib.sh"

# mkstate DIR: deploy/local's oq_mkstate with ORDERQ_STATE_DIR=DIR, in a
# shell of its own; its output in $out, its exit code in $rc.
mkstate() {
    # shellcheck disable=SC2016 # $0 expands in the inner bash
    try env ORDERQ_STATE_DIR="$1" bash -c 'source "$0" && oq_mkstate' "$deploy_lib"
}

note "absent: made, a directory of ours that nobody else may write"
mkstate "$WORK/state"
expect_eq 0 "$rc" "exit code (output: $out)"
if [ ! -d "$WORK/state" ] || [ -L "$WORK/state" ]; then fail "no directory made"; fi
expect_eq "$(id -u) 700" "$(stat -c '%u %a' "$WORK/state")" "owner and mode"
mkstate "$WORK/state"
expect_eq 0 "$rc" "a second run reuses it (output: $out)"

note "ours but writable by others: kept, the write bits taken away"
chmod 0777 "$WORK/state"
mkstate "$WORK/state"
expect_eq 0 "$rc" "exit code (output: $out)"
expect_eq 755 "$(stat -c '%a' "$WORK/state")" "mode"

note "a symbolic link in its place, to a directory someone chose: refused, not followed"
mkdir "$WORK/elsewhere"
ln -s "$WORK/elsewhere" "$WORK/link"
mkstate "$WORK/link"
expect_eq 1 "$rc" "exit code (output: $out)"
expect_contains "ORDERQ_STATE_DIR=$WORK/link is a symbolic link (to $WORK/elsewhere): refusing to follow it" "$out" "message"
expect_eq "" "$(ls -A "$WORK/elsewhere")" "files written through the link"

note "a dangling symbolic link: refused, its target not created"
ln -s "$WORK/nowhere" "$WORK/dangling"
mkstate "$WORK/dangling"
expect_eq 1 "$rc" "exit code (output: $out)"
expect_contains "is a symbolic link" "$out" "message"
[ ! -e "$WORK/nowhere" ] || fail "the link's target was created"

note "a file in its place: refused"
: >"$WORK/file"
mkstate "$WORK/file"
expect_eq 1 "$rc" "exit code (output: $out)"
expect_contains "exists and is not a directory" "$out" "message"

note "a directory owned by another user: refused"
if [ "$(id -u)" = 0 ]; then
    theirs="$WORK/theirs"
    mkdir -m 0755 "$theirs"
    chown nobody "$theirs"
else
    theirs=/ # root's, whoever runs this
fi
mkstate "$theirs"
expect_eq 1 "$rc" "exit code (output: $out)"
expect_contains "ORDERQ_STATE_DIR=$theirs is owned by $(stat -c %U "$theirs") (uid $(stat -c %u "$theirs")), not by $(id -un): refusing" "$out" "message"
[ "$(id -u)" != 0 ] || expect_eq "" "$(ls -A "$theirs")" "files written into it"

note "a parent that does not exist: a clear error"
mkstate "$WORK/no/such/state"
expect_eq 1 "$rc" "exit code (output: $out)"
expect_contains "cannot create it (expected its parent directory to exist" "$out" "message"
