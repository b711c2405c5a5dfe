#!/usr/bin/env bash
# bench/cache.sh — AxKit's `cache` plugin vs nginx proxy_cache, side by side:
# a cache hit of a 1 KiB response.
#
# What it measures: requests/s for GET /1k.bin over keep-alive answered from
# each server's cache (wrk, ROUNDS rounds each, alternating, median taken),
# the ratio axkit/nginx, and each server's CPU time per request (user +
# system of master and workers / requests), steadier on a shared box.
#
#   axkit: `Cache On` in front of serve_file (the file says
#          `Cache-Control: public, max-age=3600`), CacheStore memory or
#          shared (STORE=memory|shared).
#   nginx: proxy_cache (keys in a 10m zone, entries in a temp dir) in front
#          of an nginx server block serving the same file with `expires 1h`;
#          the upstream keeps its connections alive.
# Both are warmed with one request, so every measured request is a hit
# (checked: Cache-Status / X-Cache-Status on the warm-up and after).
#
# How to run (from anywhere; needs root only to apt-get install wrk/nginx):
#     bench/cache.sh
#     WORKERS=2 DURATION=10 ROUNDS=3 CONNS=50 STORE=shared bench/cache.sh
#     PROFILE=debug DURATION=2 ROUNDS=1 bench/cache.sh   # a smoke run of the script
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); loopback traffic only; every wait loop is bounded; everything
# lives in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
STORE=${STORE:-memory}        # the axkit tier: memory (per worker) or shared
PROFILE=${PROFILE:-release}   # debug: a smoke run of the script itself

SCRIPT_TAG=cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd wrk wrk
need_cmd nginx nginx-light
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"
case "$STORE" in memory|shared) ;; *) die "STORE is memory or shared" ;; esac

build_axkit

make_tmp axkit-cache-bench
mkdir -p "$TMP/www" "$TMP/nginx/cache"
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
pick_ports AX_PORT NG_PORT NG_ORIGIN

AX_ZONE=""
AX_STORE="CacheStore memory"
if [ "$STORE" = shared ]; then
    AX_ZONE="SharedZone cache 64M"
    AX_STORE="CacheStore shared"
fi

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
$AX_ZONE
$(axkit_static_server "$AX_PORT")
    CacheControl "public, max-age=3600"
    Plugin cache
    Cache On
    $AX_STORE
</Server>
Workers $WORKERS
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
$AX_ZONE
$(axkit_static_server "$AX_PORT")
    CacheControl "public, max-age=3600"
    Plugin cache
    Cache On
    $AX_STORE
</Server>
EOF

cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$WORKERS" 20000 20000)
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    types { application/octet-stream bin; }
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy_temp;
    proxy_cache_path $TMP/nginx/cache keys_zone=one:10m;
    upstream origin { server 127.0.0.1:$NG_ORIGIN; keepalive 16; }
    server {
        listen 127.0.0.1:$NG_ORIGIN;
        root $TMP/www;
        expires 1h;
    }
    server {
        listen 127.0.0.1:$NG_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache one;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF

start_axkit_nginx /1k.bin

log "axkit  PID $AX_PID port $AX_PORT ($STORE) workers: $(workers_of "$AX_PID")"
log "nginx  PID $NG_PID port $NG_PORT workers: $(workers_of "$NG_PID")"

cache_status() {   # cache_status PORT HEADER -> that header of GET /1k.bin
    curl -fsS -D - -o /dev/null "http://127.0.0.1:$1/1k.bin" | tr -d '\r' \
        | awk -F': ' -v h="$2" 'tolower($1) == h {print $2}'
}
for s in "axkit $AX_PORT" "nginx $NG_PORT"; do
    set -- $s
    curl -fsS "http://127.0.0.1:$2/1k.bin" | cmp -s - "$TMP/www/1k.bin" || die "$1 sent other bytes"
done

bench_wrk() {
    kill -0 "$( [ "$1" = axkit ] && echo "$AX_PID" || echo "$NG_PID")" 2>/dev/null \
        || die "$1 master died before a wrk run"
    run_wrk "$1" "$2" "$3" /1k.bin
}

note_load
log "warm-up (2 s each: every worker fills its own tier)"
bench_wrk axkit "$AX_PORT" 2 >/dev/null
bench_wrk nginx "$NG_PORT" 2 >/dev/null
: >"$TMP/anomalies-axkit.txt"; : >"$TMP/anomalies-nginx.txt"
# Every measured request must be a hit.
AX_SAYS=$(cache_status "$AX_PORT" cache-status)
NG_SAYS=$(cache_status "$NG_PORT" x-cache-status)
log "after the warm-up: axkit Cache-Status: $AX_SAYS; nginx X-Cache-Status: $NG_SAYS"
[ "$AX_SAYS" = "axkit; hit" ] || die "axkit does not answer from its cache"
[ "$NG_SAYS" = "HIT" ] || die "nginx does not answer from its cache"

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
cpu_us_per_req() {
    awk -v t=$(( $(cpu_ticks "$2" $(workers_of "$2")) - $1 )) -v u="$TICK_US" -v n="$(cat "$TMP/last-count")" \
        'BEGIN {if (n > 0) printf "%.1f", t * u / n; else print 0}'
}
AX_RPS=(); NG_RPS=(); AX_CPU=(); NG_CPU=()
for r in $(seq "$ROUNDS"); do
    t=$(cpu_ticks "$AX_PID" $(workers_of "$AX_PID"))
    a=$(bench_wrk axkit "$AX_PORT" "$DURATION"); AX_RPS+=("$a"); AX_CPU+=("$(cpu_us_per_req "$t" "$AX_PID")")
    t=$(cpu_ticks "$NG_PID" $(workers_of "$NG_PID"))
    n=$(bench_wrk nginx "$NG_PORT" "$DURATION"); NG_RPS+=("$n"); NG_CPU+=("$(cpu_us_per_req "$t" "$NG_PID")")
    log "round $r: axkit $a req/s (${AX_CPU[-1]} µs CPU/req), nginx $n req/s (${NG_CPU[-1]} µs CPU/req)"
done

cat <<EOF

Cache hit, 1 KiB: axkit ($STORE tier) vs nginx proxy_cache
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · axkit $AXKIT_REV ($PROFILE) · Workers $WORKERS · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds · load avg before: $LOAD_BEFORE · other busy processes: ${BUSY:-none}

| | axkit | nginx | axkit/nginx |
|---|---|---|---|
| requests/s (median) | $(median "${AX_RPS[@]}") | $(median "${NG_RPS[@]}") | $(ratio "$(median "${AX_RPS[@]}")" "$(median "${NG_RPS[@]}")") |
| CPU µs/request (median) | $(median "${AX_CPU[@]}") | $(median "${NG_CPU[@]}") | $(ratio "$(median "${AX_CPU[@]}")" "$(median "${NG_CPU[@]}")") |

Per-round ratios: $(pair_ratios "${AX_RPS[*]}" "${NG_RPS[*]}")
Anomalies (non-2xx, socket errors): axkit:
$(anoms axkit)
nginx:
$(anoms nginx)
EOF
