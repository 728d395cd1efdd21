#!/usr/bin/env bash
# Makes a self-signed certificate and key for trying the TLS listener
# locally: valid for 127.0.0.1 and localhost, 30 days, EC P-256, PEM. It is
# a leaf certificate (CA:FALSE): rustls clients (the load tool's --tls-ca)
# refuse a CA certificate used as a server's own, which `openssl req -x509`
# makes by default.
#   scripts/tls-cert.sh [DIR]     (default: tls/, written as cert.pem and key.pem)
# Then: cargo run -- --tls-listen 127.0.0.1:7879 --tls-cert tls/cert.pem --tls-key tls/key.pem
set -euo pipefail
dir="${1:-tls}"
if ! command -v openssl >/dev/null; then
    apt-get update -qq && apt-get install -y -qq openssl
fi
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
chmod 600 "$dir/key.pem"
echo "wrote $dir/cert.pem and $dir/key.pem"
