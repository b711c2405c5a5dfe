#!/usr/bin/env bash
# bench/rules.sh — what header and rewrite rules cost, AxKit vs nginx, side
# by side, on one 1 KiB static file reached through a rewrite.
#
# Both servers carry the same rules: RULES non-matching regex rewrites,
# then `^/r/(.*)$ -> /$1` (last), and three response headers set (axkit:
# the `rewrite` and `headers` plugins; nginx: `rewrite` and `add_header`).
# wrk asks for /r/1k.bin over keep-alive, so every request runs every rule
# and is rewritten once. Reported: requests/s (median of ROUNDS alternating
# rounds), server CPU per request (user + system of master and workers over
# a round / requests in it: steadier than requests/s when the load
# generator shares the cores), and the ratios axkit/nginx. The responses
# are compared first (same body, the three headers present on both).
#
# How to run (from anywhere; needs wrk, curl, python3, nginx):
#     bench/rules.sh                                      # release build, the figures
#     PROFILE=debug DURATION=2 ROUNDS=1 bench/rules.sh    # a smoke run of the script
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); loopback only on random ports above 20000; every wait is bounded;
# one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-10}      # seconds per wrk round
ROUNDS=${ROUNDS:-3}           # rounds per server, alternating
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
RULES=${RULES:-20}            # non-matching rewrite rules before the one that matches
PROFILE=${PROFILE:-release}   # debug: a smoke run of the script itself

SCRIPT_TAG=rules.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd wrk wrk
need_cmd nginx nginx-light
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"

build_axkit

make_tmp axkit-rules
mkdir -p "$TMP/www" "$TMP/nginx"
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
pick_ports AX_PORT NG_PORT

# ---- configs: the same rules on both ------------------------------------------

{
    echo "Workers $WORKERS"
    echo "OpenFileCache 10000 1s"
    echo "KeepAliveTimeout 120s"
    echo "MaxKeepAliveRequests 0"
    echo "Plugin rewrite"
    echo "Plugin headers"
    axkit_static_server "$AX_PORT"
    for i in $(seq "$RULES"); do echo "    Rewrite ^/nomatch$i/(.*)\$ /x/\$1"; done
    echo "    Rewrite ^/r/(.*)\$ /\$1 last"
    for h in A B C; do echo "    Header set X-Bench-$h $h"; done
    echo "</Server>"
} >"$TMP/axkit.conf"

{
    nginx_main "$WORKERS" 20000 20000
    cat <<EOF
http {
    access_log off;
    open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    types { application/octet-stream bin; }
    client_body_temp_path $TMP/nginx/client_body;
    server {
        listen 127.0.0.1:$NG_PORT;
        root $TMP/www;
EOF
    for i in $(seq "$RULES"); do echo "        rewrite ^/nomatch$i/(.*)\$ /x/\$1;"; done
    echo "        rewrite ^/r/(.*)\$ /\$1 last;"
    for h in A B C; do echo "        add_header X-Bench-$h $h;"; done
    echo "    }"
    echo "}"
} >"$TMP/nginx/nginx.conf"

STARTUP_LOGS="$TMP/axkit.log $TMP/nginx/error.log"
start_axkit_nginx /r/1k.bin
log "axkit PID $AX_PID port $AX_PORT; nginx PID $NG_PID port $NG_PORT"

# Same answer from both: the body, and the three headers.
for s in "axkit $AX_PORT" "nginx $NG_PORT"; do
    set -- $s
    curl -fsS "http://127.0.0.1:$2/r/1k.bin" | cmp -s - "$TMP/www/1k.bin" || die "$1: wrong body"
    hdrs=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$2/r/1k.bin" | tr -d '\r')
    for h in A B C; do
        grep -qx "X-Bench-$h: $h" <<<"$hdrs" || die "$1: no X-Bench-$h header"
    done
done

# ---- throughput and CPU per request ----------------------------------------------

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
# round NAME PID PORT -> "REQ/S CPU_µs/REQ"
round() {
    local name=$1 pid=$2 port=$3 t rps
    kill -0 "$pid" 2>/dev/null || die "$name died"
    t=$(cpu_ticks "$pid" $(workers_of "$pid"))
    rps=$(run_wrk "$name" "$port" "$DURATION" /r/1k.bin)
    t=$(( $(cpu_ticks "$pid" $(workers_of "$pid")) - t ))
    echo "$rps $(awk -v t="$t" -v u="$TICK_US" -v n="$(cat "$TMP/last-count")" \
        'BEGIN {if (n > 0) printf "%.2f", t * u / n; else print 0}')"
}

note_load
log "warm-up"
DURATION_SAVED=$DURATION; DURATION=2
round axkit "$AX_PID" "$AX_PORT" >/dev/null
round nginx "$NG_PID" "$NG_PORT" >/dev/null
DURATION=$DURATION_SAVED
: >"$TMP/anomalies-axkit.txt"; : >"$TMP/anomalies-nginx.txt"
AX_RPS=(); NG_RPS=(); AX_CPU=(); NG_CPU=()
for r in $(seq "$ROUNDS"); do
    read -r a ac < <(round axkit "$AX_PID" "$AX_PORT")
    read -r n nc < <(round nginx "$NG_PID" "$NG_PORT")
    AX_RPS+=("$a"); AX_CPU+=("$ac"); NG_RPS+=("$n"); NG_CPU+=("$nc")
    log "round $r: axkit $a req/s ($ac µs CPU/req), nginx $n req/s ($nc µs CPU/req)"
done
AX_MED=$(median "${AX_RPS[@]}"); NG_MED=$(median "${NG_RPS[@]}")
AX_CPU_MED=$(median "${AX_CPU[@]}"); NG_CPU_MED=$(median "${NG_CPU[@]}")

cat <<EOF

---- summary ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · axkit $AXKIT_REV ($PROFILE) · Workers $WORKERS · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds · $RULES non-matching rules + 1 rewrite + 3 headers · load avg before: $LOAD_BEFORE · other busy processes: ${BUSY:-none}

| GET /r/1k.bin (rewritten), keep-alive | axkit | nginx | axkit/nginx |
|---|---|---|---|
| requests/s (median; rounds) | $AX_MED (${AX_RPS[*]}) | $NG_MED (${NG_RPS[*]}) | $(ratio "$AX_MED" "$NG_MED") (per round: $(pair_ratios "${AX_RPS[*]}" "${NG_RPS[*]}")) |
| server CPU µs/request | $AX_CPU_MED (${AX_CPU[*]}) | $NG_CPU_MED (${NG_CPU[*]}) | $(ratio "$AX_CPU_MED" "$NG_CPU_MED") |

wrk anomalies (Non-2xx / socket errors):
$(anoms axkit)
$(anoms nginx)
EOF
