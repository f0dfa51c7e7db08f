# shellcheck shell=bash
# tls_lib.sh - for the tls_*.sh tests: certificates made by the test, and
# helpers to stop what a test started. Sourced after lib.sh, not run.
#
# make_certs writes into $PKI:
#   ca.pem            the CA orderq is told to trust
#   server.pem/.key   signed by it, for localhost and 127.0.0.1 (SAN)
#   client.pem/.key   signed by it, for orderq to present (clientAuth)
#   other-ca.pem      an unrelated CA: trusting it must fail
PKI="$WORK/pki"

# tls_sign NAME CN EXTENSIONS: a key and a certificate signed by ca.pem.
tls_sign() {
    openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$1.key" -out "$PKI/$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "$3" >"$PKI/$1.ext"
    openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 2 -out "$PKI/$1.pem" -extfile "$PKI/$1.ext" 2>/dev/null
}

make_certs() {
    command -v openssl >/dev/null || fail "the openssl command is missing (Debian package openssl)"
    mkdir -p "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$PKI/ca.key" -out "$PKI/ca.pem" \
        -subj "/CN=orderq test CA $$" 2>/dev/null || fail "openssl: cannot make the CA"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout "$PKI/other-ca.key" \
        -out "$PKI/other-ca.pem" -subj "/CN=unrelated CA $$" 2>/dev/null || fail "openssl: other CA"
    tls_sign server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth" || fail "openssl: cannot sign the server certificate"
    tls_sign client "orderq client" "basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth" || fail "openssl: cannot sign the client certificate"
    chmod 644 "$PKI"/*.pem "$PKI"/*.key
}

# show: the last line of the last `try`'s output, so the log shows the
# reason a refusal gave.
show() { echo "    -> $(tail -1 <<<"$out" | cut -c1-400)"; }
