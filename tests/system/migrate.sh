#!/usr/bin/env bash
# migrate.sh - migrate twice, from several processes at once, --status, edits noticed
source "$(dirname "$0")/lib.sh"
need_mysql
total=$(ls "$(dirname "$0")"/../../sql/[0-9]*.sql | wc -l)

note "first run applies every migration"
out=$(oq migrate --json)
expect_eq "{\"applied\": $total}" "$out" "first migrate"
for t in event_ledger outbox schema_migrations; do
    got=$(sql "$DB" -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$DB' AND table_name='$t'")
    expect_eq 1 "$got" "table $t exists"
done

note "second run changes nothing"
before=$(sql "$DB" -e "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version")
out=$(oq migrate)
expect_contains "schema is up to date" "$out" "second migrate"
after=$(sql "$DB" -e "SELECT version, checksum, applied_at FROM schema_migrations ORDER BY version")
expect_eq "$before" "$after" "schema_migrations after a second run"

note "--status lists every migration as applied"
status=$(oq migrate --status --json)
expect_eq "$total applied" "$(json 'f"{len(d)} " + ",".join(sorted({m["state"] for m in d}))' <<<"$status")" "status"

note "an edited migration is reported as changed"
sql "$DB" -e "UPDATE schema_migrations SET checksum = REPEAT('0', 64) WHERE version = 1"
status=$(oq migrate --status)
expect_contains "changed" "$status" "status after an edit"
expect_contains "WARNING" "$status" "status after an edit"
try oq migrate
expect_eq 65 "$rc" "migrate over an edited migration (EX_DATAERR)"
expect_contains "migration 0001_event_ledger was edited after it was applied" "$out" "migrate error"

note "four processes at once on a fresh database: each migration applied exactly once"
sql -e "DROP DATABASE \`$DB\`; CREATE DATABASE \`$DB\` CHARACTER SET utf8mb4"
pids=()
for i in 1 2 3 4; do
    oq migrate --json >"$WORK/par.$i" 2>"$WORK/par.$i.err" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent migrate failed: $(cat "$WORK"/par.*.err)"; done
sum=0
for i in 1 2 3 4; do sum=$((sum + $(json 'd["applied"]' <"$WORK/par.$i"))); done
expect_eq "$total" "$sum" "migrations applied across the four processes"
rows=$(sql "$DB" -e "SELECT COUNT(*) FROM schema_migrations")
expect_eq "$total" "$rows" "rows in schema_migrations"

note "the consumer's user (rows only) reads the status, but migrating is refused, naming the rights"
# "$ORDERQ_BIN", not oq: oq runs migrate as the migration user
status=$("$ORDERQ_BIN" migrate --status --json)
expect_eq "$total applied" "$(json 'f"{len(d)} " + ",".join(sorted({m["state"] for m in d}))' <<<"$status")" "status as the consumer's user"
try "$ORDERQ_BIN" migrate
[ "$rc" -ne 0 ] || fail "migrate as the consumer's user succeeded: $out"
expect_contains "CREATE command denied to user '$MYSQL_USER'" "$out" "migrate as the consumer's user"
expect_contains "mysql_url must name a user with CREATE, ALTER, INDEX, REFERENCES" "$out" "migrate as the consumer's user"
sql -e "CREATE DATABASE \`${DB}_fresh\`; GRANT $OQ_MYSQL_CONSUMER_GRANTS ON \`${DB}_fresh\`.* TO '$MYSQL_USER'@'localhost'"
CLEANUP+=("sql -e 'DROP DATABASE IF EXISTS \`${DB}_fresh\`'")
status=$(env ORDERQ_MYSQL_URL="mysql://$MYSQL_USER:$TEST_PASSWORD@localhost/${DB}_fresh?socket=$SOCK" "$ORDERQ_BIN" migrate --status --json)
expect_eq "$total pending" "$(json 'f"{len(d)} " + ",".join(sorted({m["state"] for m in d}))' <<<"$status")" "status of a fresh database as the consumer's user"

note "an unreachable database is a clear error with EX_UNAVAILABLE"
try env ORDERQ_MYSQL_URL="mysql://root@localhost/$DB?socket=/nonexistent.sock" "$ORDERQ_BIN" migrate
expect_eq 69 "$rc" "exit code without a database"
expect_contains "cannot connect to MySQL" "$out" "error text"
