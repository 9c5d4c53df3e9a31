#!/bin/sh
# Regenerates the TLS test fixtures: a test CA, server certificates, a client certificate and a stray key.
# Test-only material (the keys are public by being here); valid for 100 years so the tests never expire.
set -eu
cd "$(dirname "$0")"
days=36500
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
sign() {  # name subject extensions
    key "$1.key"
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
    printf '%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days $days -sha256 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
key ca.key
openssl req -x509 -new -key ca.key -subj "/CN=Jester Test CA" -days $days -sha256 -out ca.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
sign alpha "/CN=alpha.test" "subjectAltName=DNS:alpha.test,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
# The same names under a new key: what a renewal installs.
sign alpha-renewed "/CN=alpha.test" "subjectAltName=DNS:alpha.test,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
sign wildcard "/CN=*.beta.test" "subjectAltName=DNS:*.beta.test
extendedKeyUsage=serverAuth"
sign client "/CN=alice/O=Jester Tests" "extendedKeyUsage=clientAuth"
key stray.key
rm -f ca.srl
