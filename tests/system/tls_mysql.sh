#!/usr/bin/env bash
# tls_mysql.sh - MySQL TLS that verifies, against a MariaDB of the test's
# own (TCP on 127.0.0.1 and 127.0.0.2, a port of its own, certificates made
# here, users REQUIRE SSL): mysql_url with ssl=verify_identity and ssl_ca =
# the right CA migrates and an event goes through the consumer into that
# database; an unrelated CA (or the system's CAs) fails with a reason naming
# ssl_ca; reached as 127.0.0.2, which the certificate does not name,
# verify_ca connects and verify_identity refuses; ssl=required alone
# encrypts without checking (the old meaning, kept)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/tls_lib.sh"
make_certs
need_rabbitmq

note "a MariaDB with ssl of our own"
myport=$(free_port)
start_own_mariadb --port="$myport" --bind-address=127.0.0.1,127.0.0.2 --skip-name-resolve \
    --ssl-cert="$PKI/server.pem" --ssl-key="$PKI/server.key" --ssl-ca="$PKI/ca.pem"
my -e "CREATE DATABASE orderq_tls CHARACTER SET utf8mb4;
       CREATE USER 'oq'@'127.0.0.%' IDENTIFIED BY 'pw-tls' REQUIRE SSL;
       GRANT ALL ON orderq_tls.* TO 'oq'@'127.0.0.%';"
url() { echo "mysql://oq:pw-tls@$1:$myport/orderq_tls?$2"; }

note "ssl=verify_identity with the right CA: migrate, then an event goes through"
export ORDERQ_MYSQL_URL
ORDERQ_MYSQL_URL=$(url 127.0.0.1 "ssl=verify_identity&ssl_ca=$PKI/ca.pem")
try "$ORDERQ_BIN" migrate
expect_eq 0 "$rc" "migrate over verified TLS: $out"
oq topology declare --create-shop-exchange >/dev/null
load_test_rule
start_consumer tls
gen_events 1 --start 9400000000 | oq publish - >/dev/null || fail "publish"
wait_for 30 bash -c "[ \"\$(mariadb --no-defaults --socket='$MY/sock' -uroot -N -B orderq_tls -e 'SELECT COUNT(*) FROM coupon')\" = 1 ]" ||
    fail "no coupon in the TLS database: $(tail -3 "$WORK/tls.log")"
expect_eq 1 "$(my orderq_tls -e 'SELECT COUNT(*) FROM event_ledger')" "ledger rows in the TLS database"
kill -TERM "$consumer_pid"
wait "$consumer_pid" || fail "consumer exit code"
# The server says the sessions were encrypted: a user that REQUIRE SSL got in.
expect_eq 0 "$(my -e "SELECT COUNT(*) FROM mysql.user WHERE user = 'oq' AND ssl_type = ''")" "oq requires ssl"

note "an unrelated CA: refused, the reason names ssl_ca"
for mode in verify_ca verify_identity; do
    try env ORDERQ_MYSQL_URL="$(url 127.0.0.1 "ssl=$mode&ssl_ca=$PKI/other-ca.pem")" "$ORDERQ_BIN" migrate
    [ "$rc" -ne 0 ] || fail "ssl=$mode with an unrelated CA connected: $out"
    show
    expect_contains "ssl=$mode: the server's certificate must chain to mysql_url's ssl_ca $PKI/other-ca.pem" "$out" "reason (ssl=$mode, unrelated CA)"
done
try env ORDERQ_MYSQL_URL="$(url 127.0.0.1 "ssl=verify_ca")" "$ORDERQ_BIN" migrate
[ "$rc" -ne 0 ] || fail "ssl=verify_ca trusted the test CA through the system's CAs: $out"
show
expect_contains "must chain to the system's CAs (mysql_url has no ssl_ca)" "$out" "reason (system CAs)"

note "reached as 127.0.0.2, a name the certificate lacks: verify_ca connects, verify_identity refuses"
try env ORDERQ_MYSQL_URL="$(url 127.0.0.2 "ssl=verify_ca&ssl_ca=$PKI/ca.pem")" "$ORDERQ_BIN" migrate
expect_eq 0 "$rc" "verify_ca as 127.0.0.2: $out"
try env ORDERQ_MYSQL_URL="$(url 127.0.0.2 "ssl=verify_identity&ssl_ca=$PKI/ca.pem")" "$ORDERQ_BIN" migrate
[ "$rc" -ne 0 ] || fail "verify_identity accepted a certificate for another host: $out"
show
expect_contains "ssl=verify_identity: the server's certificate must chain to mysql_url's ssl_ca $PKI/ca.pem and name 127.0.0.2" "$out" "reason (verify_identity, wrong name)"

note "ssl=required only encrypts (no CA to check against); a CA with it is refused as a mistake"
try env ORDERQ_MYSQL_URL="$(url 127.0.0.2 "ssl=required")" "$ORDERQ_BIN" migrate
expect_eq 0 "$rc" "ssl=required: $out"
try env ORDERQ_MYSQL_URL="$(url 127.0.0.1 "ssl=required&ssl_ca=$PKI/ca.pem")" "$ORDERQ_BIN" migrate
expect_eq 78 "$rc" "exit code for ssl_ca with ssl=required: $out"
show
expect_contains "ssl_ca needs ssl=verify_ca or ssl=verify_identity" "$out" "reason"
