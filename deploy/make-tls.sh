#!/usr/bin/env sh
# The deployment's certificates for mutual TLS to the Temporal frontend (docker-compose.yml):
# a CA, the server's certificate (name `temporal`), and one client certificate each for the
# engine's processes, the admin tools and the Web UI. Keys never leave deploy/tls/ (mode 0600).
#   deploy/make-tls.sh [DIR]        default DIR: deploy/tls
set -eu
dir="${1:-$(dirname "$0")/tls}"
days="${TLS_DAYS:-825}"
mkdir -p "$dir"
umask 077
cd "$dir"
[ -f ca.key ] || openssl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.pem \
    -days "$days" -subj "/CN=dossier-engine deployment CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
issue() {  # name, extended key usage, subject alternative names
    [ -f "$1.key" ] && return 0
    openssl req -newkey rsa:3072 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
        "$2" "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
        -days "$days" -extfile "$1.ext"
    rm -f "$1.csr" "$1.ext"
}
# The frontend and the internode traffic; clients check the name `temporal`.
issue server serverAuth,clientAuth "DNS:temporal,DNS:localhost,IP:127.0.0.1"
for client in engine admin ui; do
    issue "$client" clientAuth "DNS:$client"
done
chmod 0644 ca.pem server.pem engine.pem admin.pem ui.pem
echo "make-tls: certificates in $dir (CA ca.pem; server; clients engine, admin, ui)"
