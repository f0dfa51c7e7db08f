# shellcheck shell=bash
# deploy/local/lib.sh - the local stack (MariaDB, RabbitMQ, MailDev) and the
# build, shared by deploy/local/run and deploy/local/test.
#
# Source it; it sets `set -euo pipefail` in the sourcing shell. Every function
# is idempotent: a server that already answers is reused, a missing package
# is installed, so the same call works on a fresh Debian 12 machine and on
# one where the stack is already up. Needs root for anything it must install
# or start.

set -euo pipefail

# Repo top from this file's location, so the scripts work from any cwd.
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Logs of the servers we start and other state. /var/tmp survives reboots,
# unlike /tmp on some machines, so a log is still there to read afterwards.
ORDERQ_STATE_DIR=${ORDERQ_STATE_DIR:-/var/tmp/orderq}
# npm packages (MailDev) live here, outside the repo and the build dirs.
ORDERQ_CACHE_DIR=${ORDERQ_CACHE_DIR:-${HOME:-/root}/.cache/orderq}

# The daemons and rabbitmq-* live in /usr/sbin, which a non-login PATH
# (CI, sudo -E, cron) may lack.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/sbin:/sbin ;; esac
export PATH

# The users orderq runs as on the local stack, with the rights in
# privileges.sh (docs/operations.md): orderq's own (MySQL rows and
# RabbitMQ's orderq.*), migrate's (the schema) and the shop's (publishes
# to shop.events only). Passwords are made once and kept in the state dir.
# shellcheck source=deploy/local/privileges.sh
source "$top/deploy/local/privileges.sh"
OQ_MYSQL_USER=orderq
OQ_MYSQL_MIGRATE_USER=orderq_migrate
OQ_AMQP_USER=orderq
OQ_AMQP_SHOP_USER=shop

OQ_MARIADB_SOCKET=/run/mysqld/mysqld.sock
OQ_MARIADB_DATADIR=/var/lib/mysql
OQ_RABBITMQ_ENV_CONF=/etc/rabbitmq/rabbitmq-env.conf
OQ_RABBITMQ_API=http://127.0.0.1:15672/api/overview
OQ_RABBITMQ_PROMETHEUS=http://127.0.0.1:15692/metrics # rabbitmq_prometheus: queue depths
OQ_SMTP_PORT=1025
OQ_MAILDEV_WEB_PORT=1080

oq_packages=(
    build-essential cmake pkg-config
    librabbitmq-dev libmariadb-dev libcurl4-openssl-dev libyajl-dev
    libcmocka-dev libmicrohttpd-dev libssl-dev
    rabbitmq-server mariadb-server mariadb-client
    python3-pika python3-pymysql curl ca-certificates openssl
    clang libclang-rt-14-dev # tests/fuzz: libFuzzer and clang's ASan/UBSan runtimes
    valgrind # tests/memcheck: orderq consume under memcheck
    galera-4 rsync # tests/system/galera.sh: three Galera nodes, joined by rsync SST
    systemd # tests/system/deploy_systemd.sh: systemd-analyze verify on deploy/systemd
    prometheus # promtool: tests/system/deploy_prometheus.sh, metrics_*.sh; a real scrape
    python3-yaml # tests/system/deploy_*.sh read the compose, k8s and Prometheus files
)

oq_say() { printf '%s\n' "$*"; }
oq_err() { printf 'error: %s\n' "$*" >&2; }

# Print the last lines of each log that exists (for a failed start).
oq_log_tail() {
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        printf -- '----- last lines of %s -----\n' "$f" >&2
        tail -n 40 "$f" >&2
    done
}

oq_need_root() {
    if [[ $EUID -ne 0 ]]; then
        oq_err "$1 needs root (run this script as root or with sudo)"
        return 1
    fi
}

# True when something accepts TCP on HOST PORT. Bash's /dev/tcp needs no
# extra package; timeout bounds it should the address not answer at all.
oq_port_open() {
    # shellcheck disable=SC2016 # $0/$1 expand in the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# oq_wait SECONDS CMD...: run CMD once a second until it succeeds; fails
# once SECONDS have passed.
oq_wait() {
    local limit=$1 start=$SECONDS
    shift
    until "$@"; do
        if ((SECONDS - start >= limit)); then
            return 1
        fi
        sleep 1
    done
}

# The state directory holds logs root writes and the local users'
# passwords. Someone who could place a symbolic link (or a directory of
# their own) at its name in a shared /var/tmp would get those writes: so the
# last component is never followed, made with mkdir without -p, and must be
# a real directory owned by us, which nobody else may write.
oq_mkstate() {
    local d=$ORDERQ_STATE_DIR owner
    # A link made between the test and mkdir makes mkdir fail (EEXIST) and
    # is caught below.
    if [[ ! -e $d && ! -L $d ]] && ! mkdir -m 0700 -- "$d" && [[ ! -e $d && ! -L $d ]]; then
        oq_err "ORDERQ_STATE_DIR=$d: cannot create it (expected its parent directory to exist and be writable)"
        return 1
    fi
    if [[ -L $d ]]; then
        oq_err "ORDERQ_STATE_DIR=$d is a symbolic link (to $(readlink -- "$d")): refusing to follow it; remove it, or point ORDERQ_STATE_DIR at a directory of your own"
        return 1
    fi
    if [[ ! -d $d ]]; then
        oq_err "ORDERQ_STATE_DIR=$d exists and is not a directory (expected a directory owned by $(id -un))"
        return 1
    fi
    owner=$(stat -c %u -- "$d")
    if [[ $owner != "$EUID" ]]; then
        oq_err "ORDERQ_STATE_DIR=$d is owned by $(stat -c %U -- "$d") (uid $owner), not by $(id -un): refusing to write logs and passwords there; remove it, or point ORDERQ_STATE_DIR at a directory of your own"
        return 1
    fi
    # Ours: nobody else may add or swap files in it (a planted log symlink).
    chmod go-w -- "$d"
}

# ---------------------------------------------------------------- packages

oq_pkg_installed() {
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

oq_install_packages() {
    local p missing=()
    for p in "${oq_packages[@]}"; do
        oq_pkg_installed "$p" || missing+=("$p")
    done
    # A node from elsewhere (NodeSource ships npm inside its nodejs) is fine;
    # Debian's npm would conflict with it, so only add what is absent.
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if ((${#missing[@]} == 0)); then
        oq_say "==> Debian packages ... all present"
        return 0
    fi
    oq_say "==> installing Debian packages: ${missing[*]}"
    oq_need_root "installing packages"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# ----------------------------------------------------------------- MariaDB

oq_mariadb_ping() {
    mariadb-admin --socket="$OQ_MARIADB_SOCKET" ping >/dev/null 2>&1
}

oq_start_mariadb() {
    local log="$ORDERQ_STATE_DIR/mariadb.log" t0=$SECONDS
    printf '==> starting MariaDB ... '
    if oq_mariadb_ping; then
        oq_say "reused (already running)"
    else
        oq_need_root "starting MariaDB"
        oq_mkstate
        # /run is a tmpfs on most machines: the socket dir is gone after a
        # reboot, and mariadbd (running as mysql) must be able to create it.
        mkdir -p /run/mysqld
        chown mysql:mysql /run/mysqld
        # The package's postinst normally initialises the datadir; do it
        # when that did not happen (or the dir was wiped). Root then logs in
        # over the unix socket (unix_socket auth), no password anywhere.
        if [[ ! -d $OQ_MARIADB_DATADIR/mysql ]]; then
            mkdir -p "$OQ_MARIADB_DATADIR"
            chown mysql:mysql "$OQ_MARIADB_DATADIR"
            if ! mariadb-install-db --user=mysql --datadir="$OQ_MARIADB_DATADIR" \
                --skip-test-db >"$ORDERQ_STATE_DIR/mariadb-install-db.log" 2>&1; then
                oq_say "failed"
                oq_err "mariadb-install-db failed"
                oq_log_tail "$ORDERQ_STATE_DIR/mariadb-install-db.log"
                return 1
            fi
        fi
        # setsid -f: the server outlives this script and its terminal, and
        # no process of ours lingers holding our stdout (a CI pipe would then
        # never reach end of file).
        # max_allowed_packet: dead letters up to 16 MiB are archived whole.
        (cd / && exec setsid -f nohup mariadbd --user=mysql --max-allowed-packet=64M </dev/null >"$log" 2>&1)
        if ! oq_wait 60 oq_mariadb_ping; then
            oq_say "failed"
            oq_err "MariaDB did not answer on $OQ_MARIADB_SOCKET within 60 s"
            oq_log_tail "$log"
            return 1
        fi
        oq_say "started in $((SECONDS - t0)) s (log: $log)"
    fi
    if ! mariadb -uroot --socket="$OQ_MARIADB_SOCKET" -e 'select 1' >/dev/null; then
        oq_err "root cannot log in to MariaDB over $OQ_MARIADB_SOCKET (unix_socket auth expected)"
        return 1
    fi
    # Also on a server we reused: dead letters up to 16 MiB fit in a packet.
    mariadb -uroot --socket="$OQ_MARIADB_SOCKET" -e 'SET GLOBAL max_allowed_packet = 67108864'
}

# oq_create_database NAME
oq_create_database() {
    local name=$1
    if [[ ! $name =~ ^[A-Za-z0-9_]+$ ]]; then
        oq_err "bad database name: $name"
        return 1
    fi
    mariadb -uroot --socket="$OQ_MARIADB_SOCKET" -e \
        "CREATE DATABASE IF NOT EXISTS \`$name\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
}

# oq_secret NAME: a random password for NAME, made on first use and kept
# in the state dir (mode 0600), so a second run keeps the users' passwords
# and a consumer started earlier can still log in.
oq_secret() {
    local f="$ORDERQ_STATE_DIR/secret.$1"
    if [[ ! -s $f ]]; then
        (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$f.new" && mv -f -- "$f.new" "$f")
    fi
    cat -- "$f"
}

# oq_mysql_user NAME PASSWORD GRANTS DATABASE: NAME@localhost with exactly
# GRANTS on DATABASE (rights it had before are taken away). The SQL goes in
# on stdin: a password in argv shows in ps.
oq_mysql_user() {
    mariadb -uroot --socket="$OQ_MARIADB_SOCKET" <<SQL
CREATE USER IF NOT EXISTS '$1'@'localhost';
ALTER USER '$1'@'localhost' IDENTIFIED BY '$2';
REVOKE ALL PRIVILEGES, GRANT OPTION FROM '$1'@'localhost';
GRANT $3 ON \`$4\`.* TO '$1'@'localhost';
SQL
}


oq_rabbitmq_amqp_up() {
    oq_port_open 127.0.0.1 5672
}

oq_rabbitmq_api_up() {
    curl -fsS -o /dev/null --max-time 5 -u guest:guest "$OQ_RABBITMQ_API" 2>/dev/null
}

oq_rabbitmq_prometheus_up() {
    curl -fsS -o /dev/null --max-time 5 "$OQ_RABBITMQ_PROMETHEUS" 2>/dev/null
}

# oq_rabbitmq_enable_plugin PLUGIN CHECK WHAT: on a running node whose
# CHECK fails, enable PLUGIN online and wait for CHECK. Idempotent, and no
# restart: enabling a plugin on a running node starts just that plugin.
oq_rabbitmq_enable_plugin() {
    local plugin=$1 check=$2 what=$3 log="$ORDERQ_STATE_DIR/rabbitmq-plugins.log"
    "$check" && return 0
    oq_need_root "enabling the RabbitMQ $plugin plugin"
    oq_mkstate
    rabbitmq-plugins enable "$plugin" >"$log" 2>&1 || oq_log_tail "$log"
    if ! oq_wait 90 "$check"; then
        oq_say "failed"
        oq_err "RabbitMQ runs but its $what does not answer"
        oq_log_tail "$log"
        return 1
    fi
}

oq_rabbitmq_up() {
    oq_rabbitmq_amqp_up && oq_rabbitmq_api_up
}

# The node is named rabbit@<short hostname>, and Erlang distribution must
# resolve that host: when it does not, the broker hangs at boot without a
# word in any log (and rabbitmqctl cannot reach it). Then pin the node to
# rabbit@localhost in rabbitmq-env.conf, which the server and every CLI tool
# read, so a manual rabbitmqctl finds the same node. Sets oq_rabbitmq_node.
oq_rabbitmq_nodename() {
    local short conf_node
    short=$(uname -n)
    short=${short%%.*}
    conf_node=$(sed -n 's/^[[:space:]]*\(RABBITMQ_\)\{0,1\}NODENAME=["'"'"']\{0,1\}\([^"'"'"' ]*\).*/\2/p' \
        "$OQ_RABBITMQ_ENV_CONF" 2>/dev/null | tail -n 1) || true # no file: no choice
    if [[ -n ${RABBITMQ_NODENAME:-} ]]; then
        oq_rabbitmq_node=$RABBITMQ_NODENAME # chosen by the caller
    elif [[ -n $conf_node ]]; then
        oq_rabbitmq_node=$conf_node # chosen in the config already
    elif timeout 5 getent hosts "$short" >/dev/null 2>&1; then
        oq_rabbitmq_node=rabbit@$short
    else
        oq_say "(host name '$short' does not resolve: RabbitMQ node set to rabbit@localhost in $OQ_RABBITMQ_ENV_CONF)"
        mkdir -p "$(dirname "$OQ_RABBITMQ_ENV_CONF")"
        printf '%s\n' "# added by orderq deploy/local: host name '$short' does not resolve" \
            "NODENAME=rabbit@localhost" >>"$OQ_RABBITMQ_ENV_CONF"
        oq_rabbitmq_node=rabbit@localhost
    fi
    [[ $oq_rabbitmq_node == *@* ]] || oq_rabbitmq_node=rabbit@$oq_rabbitmq_node
}

oq_start_rabbitmq() {
    local log="$ORDERQ_STATE_DIR/rabbitmq.log" t0=$SECONDS
    printf '==> starting RabbitMQ ... '
    if oq_rabbitmq_amqp_up; then
        # Running (perhaps started by the package or systemd) but maybe
        # without the management or prometheus plugin (queue depths, port
        # 15692): enable them online then.
        local how="already running"
        oq_rabbitmq_api_up || how="already running; management plugin enabled"
        oq_rabbitmq_enable_plugin rabbitmq_management oq_rabbitmq_api_up \
            "management API ($OQ_RABBITMQ_API, guest:guest)" || return 1
        oq_rabbitmq_enable_plugin rabbitmq_prometheus oq_rabbitmq_prometheus_up \
            "prometheus plugin ($OQ_RABBITMQ_PROMETHEUS)" || return 1
        oq_say "reused ($how)"
        return 0
    fi
    oq_need_root "starting RabbitMQ"
    oq_mkstate
    local oq_rabbitmq_node
    oq_rabbitmq_nodename
    # The server runs as the rabbitmq user (Debian's wrapper su's to it) with
    # HOME=/var/lib/rabbitmq; rabbitmqctl as root goes through the same su,
    # so both read /var/lib/rabbitmq/.erlang.cookie. A cookie that root
    # created (wrong owner) stops the broker: hand it back.
    local cookie=/var/lib/rabbitmq/.erlang.cookie
    if [[ -f $cookie && $(stat -c %U "$cookie") != rabbitmq ]]; then
        chown rabbitmq:rabbitmq "$cookie"
        chmod 400 "$cookie"
    fi
    # Offline: writes /etc/rabbitmq/enabled_plugins without a running node.
    if ! rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_prometheus \
        >"$ORDERQ_STATE_DIR/rabbitmq-plugins.log" 2>&1; then
        oq_say "failed"
        oq_err "rabbitmq-plugins enable --offline rabbitmq_management rabbitmq_prometheus failed"
        oq_log_tail "$ORDERQ_STATE_DIR/rabbitmq-plugins.log"
        return 1
    fi
    # -detached returns at once; the Erlang VM and epmd daemonise with
    # stdio on /dev/null. Broker logs go to /var/log/rabbitmq/<node>.log.
    if ! (cd / && rabbitmq-server -detached </dev/null >"$log" 2>&1); then
        oq_say "failed"
        oq_err "rabbitmq-server -detached failed"
        oq_log_tail "$log"
        return 1
    fi
    if ! oq_wait 90 oq_rabbitmq_up; then
        oq_say "failed"
        oq_err "RabbitMQ ($oq_rabbitmq_node) did not accept AMQP on 127.0.0.1:5672 and answer $OQ_RABBITMQ_API within 90 s"
        oq_err "(a boot that logs nothing at all usually means the node's host name does not resolve;"
        oq_err " a half-started Erlang VM may still be running: see ps -C beam.smp)"
        oq_log_tail "$log" "/var/log/rabbitmq/$oq_rabbitmq_node.log"
        return 1
    fi
    oq_say "started in $((SECONDS - t0)) s (node $oq_rabbitmq_node, log: /var/log/rabbitmq/$oq_rabbitmq_node.log)"
}

# oq_json_str TEXT: TEXT as a JSON string (backslashes and quotes escaped).
oq_json_str() {
    local t=${1//\\/\\\\}
    printf '"%s"' "${t//\"/\\\"}"
}

# oq_amqp_user NAME PASSWORD TAGS CONFIGURE WRITE READ: a RabbitMQ user with
# these permissions on vhost "/", through the management API (as guest,
# which the stack keeps for loopback administration). The body goes in on
# stdin, not argv.
oq_amqp_user() {
    local api=${OQ_RABBITMQ_API%/overview}
    printf '{"password":%s,"tags":%s}' "$(oq_json_str "$2")" "$(oq_json_str "$3")" |
        curl -fsS -o /dev/null --max-time 10 -u guest:guest -X PUT \
            -H 'content-type: application/json' --data @- "$api/users/$1"
    printf '{"configure":%s,"write":%s,"read":%s}' "$(oq_json_str "$4")" "$(oq_json_str "$5")" \
        "$(oq_json_str "$6")" |
        curl -fsS -o /dev/null --max-time 10 -u guest:guest -X PUT \
            -H 'content-type: application/json' --data @- "$api/permissions/%2F/$1"
}

# oq_create_users DATABASE: the local stack's users (see OQ_MYSQL_USER
# above) with their rights, and $ORDERQ_STATE_DIR/orderq.env (mode 0600)
# holding their URLs. Sets OQ_LOCAL_MYSQL_URL, OQ_LOCAL_MIGRATE_MYSQL_URL,
# OQ_LOCAL_AMQP_URL and OQ_LOCAL_SHOP_AMQP_URL.
oq_create_users() {
    local db=$1 pw_app pw_mig pw_oq pw_shop
    oq_mkstate
    pw_app=$(oq_secret "mysql-$OQ_MYSQL_USER")
    pw_mig=$(oq_secret "mysql-$OQ_MYSQL_MIGRATE_USER")
    pw_oq=$(oq_secret "amqp-$OQ_AMQP_USER")
    pw_shop=$(oq_secret "amqp-$OQ_AMQP_SHOP_USER")
    oq_mysql_user "$OQ_MYSQL_USER" "$pw_app" "$OQ_MYSQL_CONSUMER_GRANTS" "$db"
    oq_mysql_user "$OQ_MYSQL_MIGRATE_USER" "$pw_mig" "$OQ_MYSQL_MIGRATE_GRANTS" "$db"
    oq_amqp_user "$OQ_AMQP_USER" "$pw_oq" "$OQ_AMQP_ORDERQ_TAGS" \
        "$OQ_AMQP_ORDERQ_CONFIGURE" "$OQ_AMQP_ORDERQ_WRITE" "$OQ_AMQP_ORDERQ_READ"
    oq_amqp_user "$OQ_AMQP_SHOP_USER" "$pw_shop" "$OQ_AMQP_SHOP_TAGS" \
        "$OQ_AMQP_SHOP_CONFIGURE" "$OQ_AMQP_SHOP_WRITE" "$OQ_AMQP_SHOP_READ"
    OQ_LOCAL_MYSQL_URL="mysql://$OQ_MYSQL_USER:$pw_app@localhost/$db?socket=$OQ_MARIADB_SOCKET"
    OQ_LOCAL_MIGRATE_MYSQL_URL="mysql://$OQ_MYSQL_MIGRATE_USER:$pw_mig@localhost/$db?socket=$OQ_MARIADB_SOCKET"
    OQ_LOCAL_AMQP_URL="amqp://$OQ_AMQP_USER:$pw_oq@127.0.0.1:5672/"
    OQ_LOCAL_SHOP_AMQP_URL="amqp://$OQ_AMQP_SHOP_USER:$pw_shop@127.0.0.1:5672/"
    (
        umask 077
        printf '%s\n' "# written by deploy/local: the local stack's users (docs/operations.md)" \
            "# source it, then run orderq; migrate as: ORDERQ_MYSQL_URL=\$OQ_MIGRATE_MYSQL_URL orderq migrate" \
            "export ORDERQ_MYSQL_URL='$OQ_LOCAL_MYSQL_URL'" \
            "export ORDERQ_AMQP_URL='$OQ_LOCAL_AMQP_URL'" \
            "export OQ_MIGRATE_MYSQL_URL='$OQ_LOCAL_MIGRATE_MYSQL_URL'" \
            "export OQ_SHOP_AMQP_URL='$OQ_LOCAL_SHOP_AMQP_URL'" >"$ORDERQ_STATE_DIR/orderq.env.new"
        mv -f -- "$ORDERQ_STATE_DIR/orderq.env.new" "$ORDERQ_STATE_DIR/orderq.env"
    )
}

# ----------------------------------------------------------------- MailDev

oq_maildev_up() {
    oq_port_open 127.0.0.1 "$OQ_SMTP_PORT" && oq_port_open 127.0.0.1 "$OQ_MAILDEV_WEB_PORT"
}

oq_start_maildev() {
    local dir="$ORDERQ_CACHE_DIR/maildev" log="$ORDERQ_STATE_DIR/maildev.log" t0
    local bin="$dir/node_modules/.bin/maildev"
    printf '==> starting MailDev ... '
    if oq_port_open 127.0.0.1 "$OQ_SMTP_PORT"; then
        if ! oq_wait 30 oq_maildev_up; then
            oq_say "failed"
            oq_err "something answers SMTP on 127.0.0.1:$OQ_SMTP_PORT but no web UI on :$OQ_MAILDEV_WEB_PORT"
            return 1
        fi
        oq_say "reused (already running)"
        return 0
    fi
    oq_mkstate
    # maildev@2: 3.x does not install from the registry here; 2.x needs
    # node >= 18 (Debian 12 has 18). --version proves the install is whole.
    if ! "$bin" --version >/dev/null 2>&1; then
        t0=$SECONDS
        printf 'installing maildev@2 into %s ... ' "$dir"
        mkdir -p "$dir"
        if ! npm install --prefix "$dir" --no-audit --no-fund --no-update-notifier \
            maildev@2 >"$ORDERQ_STATE_DIR/maildev-npm.log" 2>&1; then
            oq_say "failed"
            oq_err "npm install maildev@2 failed"
            oq_log_tail "$ORDERQ_STATE_DIR/maildev-npm.log"
            return 1
        fi
        printf 'done in %s s; ' "$((SECONDS - t0))"
    fi
    t0=$SECONDS
    # Bound to loopback only (MailDev's default is every address).
    (cd / && exec setsid -f nohup "$bin" --smtp "$OQ_SMTP_PORT" --web "$OQ_MAILDEV_WEB_PORT" \
        --ip 127.0.0.1 --web-ip 127.0.0.1 </dev/null >"$log" 2>&1)
    if ! oq_wait 30 oq_maildev_up; then
        oq_say "failed"
        oq_err "MailDev did not open 127.0.0.1:$OQ_SMTP_PORT and :$OQ_MAILDEV_WEB_PORT within 30 s"
        oq_log_tail "$log"
        return 1
    fi
    oq_say "started in $((SECONDS - t0)) s (log: $log)"
}

# ------------------------------------------------------------------- build

# oq_build TYPE DIR [extra cmake args...]; a relative DIR is under the repo.
oq_build() {
    local type=$1 dir=$2
    shift 2
    [[ $dir == /* ]] || dir="$top/$dir"
    oq_say "==> building $type in $dir"
    cmake -S "$top" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@"
    cmake --build "$dir" -j"$(nproc)"
}

# ------------------------------------------------------------------- stack

oq_setup_stack() {
    oq_install_packages
    oq_start_mariadb
    oq_start_rabbitmq
    oq_start_maildev
    oq_create_database orderq
    oq_say "==> database orderq ... ready"
    oq_create_users orderq
    oq_say "==> users $OQ_MYSQL_USER, $OQ_MYSQL_MIGRATE_USER (MySQL), $OQ_AMQP_USER, $OQ_AMQP_SHOP_USER (RabbitMQ) ... ready (URLs in $ORDERQ_STATE_DIR/orderq.env)"
}
