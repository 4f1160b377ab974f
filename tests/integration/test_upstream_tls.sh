#!/usr/bin/env bash
# The upstream client's TLS against a real nginx: certificates from a test CA made
# here with `openssl`, nginx serving a good, an expired and a self-signed
# certificate. Builds the upstream unit-test binary and runs its TLS mode with
# SSL_CERT_FILE pointing at the test CA. Prints `N passed, N failed`.
set -u
cd "$(dirname "$0")/../.."
if ! command -v nginx >/dev/null || ! command -v openssl >/dev/null; then
    echo "test_upstream_tls: nginx or openssl missing: skipped"
    echo "0 passed, 0 failed"
    exit 0
fi
DIR=$(mktemp -d /tmp/bt_tls.XXXXXX)
chmod 755 "$DIR"
NGINX_PID=
cleanup() {
    if [[ -n $NGINX_PID ]]; then kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; fi
    rm -rf "$DIR"
}
trap cleanup EXIT
fail() { echo "test_upstream_tls: $*"; [[ -f $DIR/error.log ]] && tail -5 "$DIR/error.log"; echo "0 passed, 1 failed"; exit 1; }

# ---- certificates ----
(
    cd "$DIR" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=baton test CA" -addext "basicConstraints=critical,CA:true" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
    # Names only "localhost": connecting to 127.0.0.1 must fail the name check.
    openssl req -newkey rsa:2048 -nodes -keyout good.key -out good.csr -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost"
    openssl x509 -req -in good.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out good.pem \
        -days 2 -copy_extensions copy
    # Expired: `openssl ca` is the tool that takes explicit dates.
    mkdir -p ca/new && : > ca/index.txt && echo 1000 > ca/serial
    cat > ca.cnf <<EOF
[ ca ]
default_ca = test_ca
[ test_ca ]
database = $DIR/ca/index.txt
new_certs_dir = $DIR/ca/new
serial = $DIR/ca/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
EOF
    openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj "/CN=localhost" \
        -addext "subjectAltName=DNS:localhost"
    openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -in expired.csr -out expired.pem \
        -startdate 20200101000000Z -enddate 20200201000000Z -notext
    # Self-signed, not from the test CA.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout self.key -out self.pem -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost"
) >"$DIR/openssl.log" 2>&1 || { cat "$DIR/openssl.log"; fail "could not make certificates"; }

# ---- nginx ----
port_free() { ! ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }
pick_port() {
    local p
    for _ in $(seq 50); do
        p=$((20000 + RANDOM % 12000)) # below the ephemeral range
        if port_free "$p" && [[ " ${PORTS[*]:-} " != *" $p "* ]]; then echo "$p"; return; fi
    done
    echo 0
}
mkdir -p "$DIR/tmp"
start_nginx() { # picks ports, writes the config, starts nginx; 0 when all ports listen
PORTS=()
for i in 0 1 2 3 4; do PORTS+=("$(pick_port)"); done
GOOD=${PORTS[0]} EXPIRED=${PORTS[1]} UNTRUSTED=${PORTS[2]} SHORT=${PORTS[3]} PLAIN=${PORTS[4]}
cat > "$DIR/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    client_max_body_size 4m;
    client_body_buffer_size 4m;
    default_type text/plain;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;
    server {
        listen 127.0.0.1:$GOOD ssl;
        ssl_certificate $DIR/good.pem;
        ssl_certificate_key $DIR/good.key;
        keepalive_requests 10000;
        location = / { return 200 "hello tls\n"; }
        location = /close { keepalive_timeout 0; return 200 "bye\n"; }
        location = /echo { proxy_pass http://127.0.0.1:$PLAIN; }
    }
    server {
        listen 127.0.0.1:$SHORT ssl;
        ssl_certificate $DIR/good.pem;
        ssl_certificate_key $DIR/good.key;
        keepalive_timeout 1s;
        location = / { return 200 "hello tls\n"; }
    }
    server {
        listen 127.0.0.1:$EXPIRED ssl;
        ssl_certificate $DIR/expired.pem;
        ssl_certificate_key $DIR/expired.key;
        location / { return 200 "expired\n"; }
    }
    server {
        listen 127.0.0.1:$UNTRUSTED ssl;
        ssl_certificate $DIR/self.pem;
        ssl_certificate_key $DIR/self.key;
        location / { return 200 "self\n"; }
    }
    server {
        listen 127.0.0.1:$PLAIN;
        location / { return 200 "\$http_content_length"; }
    }
}
EOF
nginx -p "$DIR" -c "$DIR/nginx.conf" 2>"$DIR/nginx.stderr" &
NGINX_PID=$!
for _ in $(seq 100); do
    up=1
    for p in "${PORTS[@]}"; do port_free "$p" && up=0; done
    [[ $up = 1 ]] && return 0
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.05
done
kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; NGINX_PID=
return 1
}
started=0
for _ in 1 2 3; do start_nginx && { started=1; break; }; done
[[ $started = 1 ]] || { cat "$DIR/nginx.stderr"; fail "nginx did not start"; }

# ---- the client ----
BIN=${BT_TEST_UPSTREAM_BIN:-}
if [[ -z $BIN ]]; then
    BIN=$DIR/test_upstream
    LLHTTP_SRC=${LLHTTP_SRC:-/usr/share/llhttp}
    LLHTTP_INC=/usr/share/include/llhttp
    [[ -d $LLHTTP_INC ]] || LLHTTP_INC=$LLHTTP_SRC
    for f in llhttp api http; do
        cc -O1 -g -I"$LLHTTP_INC" -w -c -o "$DIR/$f.o" "$LLHTTP_SRC/$f.c" || fail "cannot build llhttp"
    done
    cc -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2 -O1 -g -Isrc \
        -I"$LLHTTP_INC" -Itests/unit -o "$BIN" tests/unit/test_upstream.c src/core/*.c \
        src/upstream/*.c "$DIR"/llhttp.o "$DIR"/api.o "$DIR"/http.o -luv -lssl -lcrypto -lm -pthread \
        || fail "cannot build tests/unit/test_upstream.c"
fi
SSL_CERT_FILE=$DIR/ca.pem SSL_CERT_DIR=$DIR/nocerts \
BT_TLS_GOOD_PORT=$GOOD BT_TLS_EXPIRED_PORT=$EXPIRED BT_TLS_UNTRUSTED_PORT=$UNTRUSTED \
BT_TLS_SHORT_PORT=$SHORT ${BT_TLS_WRAP:-} "$BIN"
