#!/usr/bin/env bash
# bench/proxy.sh — the `proxy` plugin vs nginx `proxy_pass`, side by side,
# in front of the same origin (an axkit serving static files).
#
# What it measures:
#   1. Pass-through of a 1 KiB response: requests/s over keep-alive, wrk
#      against the axkit proxy and the nginx proxy alternately (ROUNDS
#      rounds each, median), and each proxy's CPU time per request (its
#      master + workers, user + system / requests), which is steadier on a
#      machine whose cores the load generator and the origin share. Both
#      proxies keep upstream connections alive (axkit: its pools,
#      ProxyKeepAlive 64; nginx: `keepalive 64` with HTTP/1.1 upstream).
#      With HAPROXY=1 (the default), HAProxy takes turns too, twice: in
#      HTTP mode (`http-reuse always`, its threads = WORKERS), another HTTP
#      proxy for scale, and in TCP mode, a relay that pairs each client
#      connection with an origin connection and copies bytes without
#      reading HTTP: the floor of what any proxy's CPU per request can be
#      here (the same four loopback messages, none of the HTTP work).
#   2. A 100 MiB download through each proxy: MiB/s over BIG_ROUNDS curl
#      runs each (median), and the proxy's anonymous memory (PSS) after
#      them, which should stay flat: neither buffers a whole body (nginx
#      buffers to its temp files past its memory buffers: left at its
#      defaults).
#
# Same workers for both proxies (WORKERS) and the origin (ORIGIN_WORKERS),
# no access logs, random free 127.0.0.1 ports above 20000.
#
# How to run (from anywhere; needs wrk, nginx, curl and python3; root only
# to apt-get install them):
#     bench/proxy.sh                                          # release build, the figures
#     PROFILE=debug DURATION=2 ROUNDS=1 BIG_ROUNDS=1 bench/proxy.sh   # a smoke run
#     AXKIT_BIN=/path/to/axkit bench/proxy.sh                  # a binary built elsewhere (proxy and origin)
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback traffic only; every wait is bounded;
# everything lives in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
ORIGIN_WORKERS=${ORIGIN_WORKERS:-2}
DURATION=${DURATION:-10}      # seconds per wrk round
ROUNDS=${ROUNDS:-3}           # wrk rounds per proxy, alternating
BIG_ROUNDS=${BIG_ROUNDS:-3}   # 100 MiB downloads per proxy, alternating
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
HAPROXY=${HAPROXY:-1}         # 0: no HAProxy peers
PROFILE=${PROFILE:-release}   # debug: a smoke run of the script itself

SCRIPT_TAG=proxy.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd wrk wrk
need_cmd nginx nginx-light
[ "$HAPROXY" = 0 ] || need_cmd haproxy haproxy
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

build_axkit

make_tmp axkit-proxy-bench
mkdir -p "$TMP/www" "$TMP/nginx" "$TMP/origin"
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
head -c $(( 100 << 20 )) /dev/urandom >"$TMP/www/100m.bin"
BIG_SUM=$(sha256sum <"$TMP/www/100m.bin" | cut -d' ' -f1)
pick_ports OR_PORT AX_PORT NG_PORT HH_PORT HT_PORT

# ---- the origin ---------------------------------------------------------------

cat >"$TMP/origin/axkit.conf" <<EOF
Workers $ORIGIN_WORKERS
OpenFileCache 10000 1s
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
$(axkit_static_server "$OR_PORT")
</Server>
EOF
must_pass "the origin rejected its config" "$AXKIT" --check -c "$TMP/origin/axkit.conf"
start_bg OR_PID "$TMP/origin/axkit.log" "$AXKIT" -c "$TMP/origin/axkit.conf"
wait_up origin "$OR_PID" "$OR_PORT" /1k.bin

# ---- the proxies ---------------------------------------------------------------

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
ProxyKeepAlive 64
<Server>
    Listen 127.0.0.1:$AX_PORT
    Plugin proxy
    ProxyPass / http://127.0.0.1:$OR_PORT/
</Server>
EOF

cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$WORKERS" 20000 20000)
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy_temp;
    upstream origin {
        server 127.0.0.1:$OR_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NG_PORT;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

start_axkit_nginx /1k.bin
log "origin PID $OR_PID port $OR_PORT; axkit proxy PID $AX_PID port $AX_PORT; nginx PID $NG_PID port $NG_PORT"
PEERS=(axkit nginx)
if [ "$HAPROXY" != 0 ]; then
    mkdir -p "$TMP/haproxy"
    haproxy_conf() {   # haproxy_conf MODE PORT: WORKERS threads, no logs; maxconn under the 20,000 fd limit
        cat <<EOF
global
    nbthread $WORKERS
    maxconn 9000
defaults
    mode $1
    timeout connect 10s
    timeout client 120s
    timeout server 120s
$([ "$1" = http ] && echo "    http-reuse always")
frontend in
    bind 127.0.0.1:$2
    default_backend origin
backend origin
    server o1 127.0.0.1:$OR_PORT
EOF
    }
    haproxy_conf http "$HH_PORT" >"$TMP/haproxy/http.cfg"
    haproxy_conf tcp "$HT_PORT" >"$TMP/haproxy/tcp.cfg"
    for m in http tcp; do must_pass "haproxy rejected its $m config" haproxy -c -q -f "$TMP/haproxy/$m.cfg"; done
    start_bg HH_PID "$TMP/haproxy/http.log" haproxy -db -f "$TMP/haproxy/http.cfg"
    start_bg HT_PID "$TMP/haproxy/tcp.log" haproxy -db -f "$TMP/haproxy/tcp.cfg"
    STARTUP_LOGS+=("$TMP/haproxy/http.log" "$TMP/haproxy/tcp.log")
    wait_up haproxy-http "$HH_PID" "$HH_PORT" /1k.bin
    wait_up haproxy-tcp "$HT_PID" "$HT_PORT" /1k.bin
    PEERS+=(haproxy-http haproxy-tcp)
    log "haproxy HTTP mode PID $HH_PID port $HH_PORT; TCP mode PID $HT_PID port $HT_PORT"
fi

pid_of() { case $1 in axkit) echo "$AX_PID" ;; nginx) echo "$NG_PID" ;; haproxy-http) echo "$HH_PID" ;; *) echo "$HT_PID" ;; esac; }
port_of() { case $1 in axkit) echo "$AX_PORT" ;; nginx) echo "$NG_PORT" ;; haproxy-http) echo "$HH_PORT" ;; *) echo "$HT_PORT" ;; esac; }

# Same bytes through each?
for p in "${PEERS[@]}"; do
    curl -fsS "http://127.0.0.1:$(port_of "$p")/1k.bin" | cmp -s - "$TMP/www/1k.bin" || die "$p: 1k.bin differs"
done
for p in axkit nginx; do
    sum=$(curl -fsS "http://127.0.0.1:$(port_of "$p")/100m.bin" | sha256sum | cut -d' ' -f1)
    [ "$sum" = "$BIG_SUM" ] || die "$p: 100m.bin differs"
done

# ---- 1 KiB pass-through ----------------------------------------------------------

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
cpu_us_per_req() {   # cpu_us_per_req TICKS_BEFORE PID -> µs per request of the last wrk run
    awk -v t=$(( $(cpu_ticks "$2" $(workers_of "$2")) - $1 )) -v u="$TICK_US" -v n="$(cat "$TMP/last-count")" \
        'BEGIN {if (n > 0) printf "%.1f", t * u / n; else print 0}'
}
bench_wrk() {   # bench_wrk NAME PORT SECONDS -> req/s
    kill -0 "$(pid_of "$1")" 2>/dev/null || die "$1 died before a wrk run"
    kill -0 "$OR_PID" 2>/dev/null || die "the origin died before a wrk run"
    run_wrk "$1" "$2" "$3" /1k.bin
}

note_load
log "warm-up (2 s each)"
declare -A RPS CPU
for p in "${PEERS[@]}"; do
    bench_wrk "$p" "$(port_of "$p")" 2 >/dev/null
    : >"$TMP/anomalies-$p.txt"
    RPS[$p]=""; CPU[$p]=""
done

for r in $(seq "$ROUNDS"); do
    line="round $r:"
    for p in "${PEERS[@]}"; do
        t=$(cpu_ticks "$(pid_of "$p")" $(workers_of "$(pid_of "$p")"))
        a=$(bench_wrk "$p" "$(port_of "$p")" "$DURATION")
        c=$(cpu_us_per_req "$t" "$(pid_of "$p")")
        RPS[$p]+="$a "; CPU[$p]+="$c "
        line+=" $p $a req/s ($c µs CPU/req),"
    done
    log "${line%,}"
done
AX_RPS=(${RPS[axkit]}); NG_RPS=(${RPS[nginx]}); AX_CPU=(${CPU[axkit]}); NG_CPU=(${CPU[nginx]})
AX_MED=$(median "${AX_RPS[@]}"); NG_MED=$(median "${NG_RPS[@]}")
AX_CPU_MED=$(median "${AX_CPU[@]}"); NG_CPU_MED=$(median "${NG_CPU[@]}")

# ---- 100 MiB -------------------------------------------------------------------------

big() {   # big PORT -> MiB/s of one download (bounded: 300 s)
    local secs
    secs=$(timeout 300 curl -fsS -o /dev/null -w '%{time_total}' "http://127.0.0.1:$1/100m.bin") \
        || die "a 100 MiB download on port $1 failed"
    awk -v s="$secs" 'BEGIN {printf "%.0f", 100 / s}'
}
AX_BIG=(); NG_BIG=()
for r in $(seq "$BIG_ROUNDS"); do
    AX_BIG+=("$(big "$AX_PORT")")
    NG_BIG+=("$(big "$NG_PORT")")
    log "100 MiB round $r: axkit ${AX_BIG[-1]} MiB/s, nginx ${NG_BIG[-1]} MiB/s"
done
read -r AX_PSS AX_RSS < <(mem_kib "$AX_PID" $(workers_of "$AX_PID"))
read -r NG_PSS NG_RSS < <(mem_kib "$NG_PID" $(workers_of "$NG_PID"))

# ---- summary -----------------------------------------------------------------------

# HAProxy's rows, each ending in a newline (none without HAProxy).
HAPROXY_ROWS=""
for p in "${PEERS[@]:2}"; do
    HAPROXY_ROWS+="| $p: 1 KiB requests/s (median; to nginx: of the medians; per round) | $(median ${RPS[$p]}) | | $(ratio "$(median ${RPS[$p]})" "$NG_MED"); $(pair_ratios "${RPS[$p]}" "${NG_RPS[*]}") |"$'\n'
    HAPROXY_ROWS+="| $p: CPU µs/request (median) | $(median ${CPU[$p]}) | | $(ratio "$(median ${CPU[$p]})" "$NG_CPU_MED") |"$'\n'
done

cat <<EOF

---- summary ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$NGINX" -v 2>&1 | sed 's/.*: //') · $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')
axkit: $AXKIT_REV ($PROFILE) · proxies: Workers $WORKERS each · origin: axkit, Workers $ORIGIN_WORKERS · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds alternating, median · load avg before: $LOAD_BEFORE · other busy processes at start: ${BUSY:-none}

| through the proxy | axkit | nginx | axkit/nginx |
|---|---|---|---|
| 1 KiB requests/s (median) | $AX_MED | $NG_MED | $(ratio "$AX_MED" "$NG_MED") |
| 1 KiB requests/s (each round) | ${AX_RPS[*]} | ${NG_RPS[*]} | $(pair_ratios "${AX_RPS[*]}" "${NG_RPS[*]}") |
| proxy CPU µs/request (median) | $AX_CPU_MED | $NG_CPU_MED | $(ratio "$AX_CPU_MED" "$NG_CPU_MED") |
${HAPROXY_ROWS}| 100 MiB MiB/s (median; rounds) | $(median "${AX_BIG[@]}") (${AX_BIG[*]}) | $(median "${NG_BIG[@]}") (${NG_BIG[*]}) | $(ratio "$(median "${AX_BIG[@]}")" "$(median "${NG_BIG[@]}")") |
| proxy memory after, PSS(anon) / RSS KiB | $AX_PSS / $AX_RSS | $NG_PSS / $NG_RSS | |

Targets: 1 KiB req/s >= 1.1x nginx; 100 MiB >= 1.0x nginx.
wrk anomalies axkit (Non-2xx / socket errors):
$(anoms axkit)
wrk anomalies nginx:
$(anoms nginx)
EOF
