#!/usr/bin/env bash
# bench/static.sh — AxKit vs nginx, side by side, on one 1 KiB static file.
#
# What it measures (see docs/benchmarks.md for the figures and how to read
# them: on a 2-core box the load generator shares the CPU, so compare CPU
# per request and ratios, not absolute requests/s):
#   1. Throughput: requests/s for GET /1k.bin over keep-alive, wrk against
#      axkit and nginx alternately (ROUNDS rounds each, median taken), and
#      the ratio axkit/nginx; and the servers' CPU time per request in
#      those rounds (user + system / requests), which is steadier.
#      h2o (num-threads WORKERS, its file cache on by default) runs the
#      same rounds as a third peer (#15 sets its CPU target against h2o);
#      H2O=0 leaves it out.
#   2. Idle keep-alive memory: anonymous Pss (and RSS) of each server's master +
#      worker processes before and after IDLE_CONNS connections that each
#      completed one request and then sit idle; (after - before) / IDLE_CONNS
#      bytes per connection, and the ratio axkit/nginx. Userspace memory only
#      (kernel socket memory is the same for both and not counted).
#
# Both servers: same worker count, no access log, keep-alive unlimited,
# 120 s keep-alive timeout, listening on random free 127.0.0.1 ports, and
# the same open-file cache setting (FILE_CACHE=1: both cache descriptors
# and metadata for 1 s, which is how a static server is deployed;
# FILE_CACHE=0: neither does, which is nginx's default; axkit then opens
# every file on its blocking pool, a thread hop per request).
#
# How to run (from anywhere; needs root only to apt-get install wrk/nginx):
#     bench/static.sh
#     WORKERS=2 DURATION=10 ROUNDS=3 CONNS=50 IDLE_CONNS=10000 bench/static.sh
#     IDLE_CONNS=0 WORKERS=1 DURATION=4 bench/static.sh   # throughput and CPU/request only
#     BROWSER=1 IDLE_CONNS=0 WORKERS=1 bench/static.sh      # requests with a browser's header fields
#
# The load generator shares the cores with the servers and other work on the
# machine, so absolute numbers are noisy: quote the ratios.
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl or ip_local_port_range change; loopback traffic only;
# every wait loop is bounded; everything lives in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-10}      # seconds per wrk round
ROUNDS=${ROUNDS:-3}           # rounds per server (alternating)
CONNS=${CONNS:-50}            # wrk connections
THREADS=${THREADS:-1}         # wrk threads
IDLE_CONNS=${IDLE_CONNS:-10000}
HOLDERS=${HOLDERS:-4}         # client processes for the idle test (fd limit 20,000 each)
H2O=${H2O:-1}
BROWSER=${BROWSER:-0}         # 1: each request carries a browser's header fields (about 560 bytes)
FILE_CACHE=${FILE_CACHE:-1}   # 1: open-file cache on both (axkit OpenFileCache, nginx open_file_cache); 0: off on both (axkit OpenFileCache Off)

SCRIPT_TAG=static.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- tools ------------------------------------------------------------------

need_cmd wrk wrk
need_cmd nginx nginx-light
[ "$H2O" = 1 ] && need_cmd h2o h2o
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

# What exactly is measured: the tree moves while others work in it.
# AXKIT_BIN=PATH measures a binary built elsewhere instead (the "before" of
# an A/B), named by AXKIT_REV if set.
build_axkit

# ---- cleanup ----------------------------------------------------------------

make_tmp axkit-bench   # cleanup on EXIT: close HOLDER_FDS, stop STARTED_PIDS by PID, remove TMP

# ---- content and ports --------------------------------------------------------

mkdir -p "$TMP/www" "$TMP/nginx"
# 1 KiB of fixed, printable content.
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
[ "$(stat -c %s "$TMP/www/1k.bin")" = 1024 ] || die "1k.bin is not 1024 bytes"

# Free ports above 20000 and below the ephemeral range (so client sockets
# can never be sitting on them).
pick_ports AX_PORT NG_PORT H2_PORT

# ---- configs --------------------------------------------------------------------

AX_CACHE="OpenFileCache Off"
NG_CACHE=""
if [ "$FILE_CACHE" = 1 ]; then
    AX_CACHE="OpenFileCache 10000 1s"
    NG_CACHE="open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;"
fi

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
$AX_CACHE
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
$(axkit_static_server "$AX_PORT")
</Server>
EOF

cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$WORKERS" 20000 20000)
http {
    access_log off;
    $NG_CACHE
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    types { application/octet-stream bin; }
    client_body_temp_path $TMP/nginx/client_body;
    server {
        listen 127.0.0.1:$NG_PORT;
        root $TMP/www;
    }
}
EOF

# ---- start servers ----------------------------------------------------------------

# Both configs checked, both servers started, each up to 10 s for a 200 on /1k.bin.
start_axkit_nginx /1k.bin

log "axkit  PID $AX_PID port $AX_PORT workers: $(workers_of "$AX_PID")"
log "nginx  PID $NG_PID port $NG_PORT workers: $(workers_of "$NG_PID")"
PEERS=("axkit $AX_PORT" "nginx $NG_PORT")
if [ "$H2O" = 1 ]; then
    h2o_static_start "$H2_PORT" "$WORKERS"
    PEERS+=("h2o $H2_PORT")
    log "h2o    PID $H2O_PID port $H2_PORT"
fi

# Same bytes from all?
for s in "${PEERS[@]}"; do
    set -- $s
    body=$(curl -fsS "http://127.0.0.1:$2/1k.bin" | cmp - "$TMP/www/1k.bin" && echo same || echo DIFFERENT)
    hdr=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$2/1k.bin" | tr -d '\r' | tr '\n' '|')
    log "$1 body: $body; head: $hdr"
done

# ---- throughput -------------------------------------------------------------------

# bench_wrk NAME PORT SECONDS -> prints req/s (run_wrk on /1k.bin, after
# checking that NAME's master is still alive)
bench_wrk() {
    local pid
    case $1 in axkit) pid=$AX_PID ;; nginx) pid=$NG_PID ;; *) pid=$H2O_PID ;; esac
    kill -0 "$pid" 2>/dev/null \
        || die "$1 master died before a wrk run"
    run_wrk "$1" "$2" "$3" /1k.bin --latency "${BROWSER_HEADERS[@]}"
}

# BROWSER=1: the header fields a browser sends for a stylesheet (none that
# makes the answer conditional or compressed), so that the head's parse
# weighs as it does in real traffic rather than wrk's bare Host line.
BROWSER_HEADERS=()
if [ "$BROWSER" = 1 ]; then
    BROWSER_HEADERS=(
        -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        -H "Accept: text/css,*/*;q=0.1"
        -H "Accept-Language: en-GB,en;q=0.5"
        -H "Accept-Encoding: gzip, deflate, br, zstd"
        -H "Referer: https://www.example.com/articles/2026/12/some-long-article-name"
        -H "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.2.1234567890.1234567890"
        -H "Sec-Fetch-Dest: style"
        -H "Sec-Fetch-Mode: no-cors"
        -H "Sec-Fetch-Site: same-origin"
        -H "Priority: u=2"
    )
fi

note_load
log "warm-up (3 s each)"
bench_wrk axkit "$AX_PORT" 3 >/dev/null
bench_wrk nginx "$NG_PORT" 3 >/dev/null
[ "$H2O" = 1 ] && bench_wrk h2o "$H2_PORT" 3 >/dev/null
: >"$TMP/anomalies-axkit.txt"; : >"$TMP/anomalies-nginx.txt"; : >"$TMP/anomalies-h2o.txt"

# Server CPU time per request (user + system of master and workers over a
# round / requests in it): steadier than req/s when the load generator
# shares the cores (cpu_us_per_req, lib.sh). The summary gives the ratio
# of the medians and each round's ratio with their median: the servers of
# one round run back to back and see the same load, while the medians
# may come from rounds minutes apart.
AX_RPS=(); NG_RPS=(); AX_CPU=(); NG_CPU=(); H2_RPS=(); H2_CPU=()
for r in $(seq "$ROUNDS"); do
    t=$(cpu_ticks "$AX_PID" $(workers_of "$AX_PID"))
    a=$(bench_wrk axkit "$AX_PORT" "$DURATION"); AX_RPS+=("$a"); AX_CPU+=("$(cpu_us_per_req "$t" "$AX_PID")")
    t=$(cpu_ticks "$NG_PID" $(workers_of "$NG_PID"))
    n=$(bench_wrk nginx "$NG_PORT" "$DURATION"); NG_RPS+=("$n"); NG_CPU+=("$(cpu_us_per_req "$t" "$NG_PID")")
    log "round $r: axkit $a req/s (${AX_CPU[-1]} µs CPU/req), nginx $n req/s (${NG_CPU[-1]} µs CPU/req)"
    if [ "$H2O" = 1 ]; then
        t=$(cpu_ticks "$H2O_PID" $(workers_of "$H2O_PID"))
        h=$(bench_wrk h2o "$H2_PORT" "$DURATION"); H2_RPS+=("$h"); H2_CPU+=("$(cpu_us_per_req "$t" "$H2O_PID")")
        log "round $r: h2o $h req/s (${H2_CPU[-1]} µs CPU/req)"
    fi
done
AX_CPU_MED=$(median "${AX_CPU[@]}"); NG_CPU_MED=$(median "${NG_CPU[@]}")
AX_MED=$(median "${AX_RPS[@]}")
NG_MED=$(median "${NG_RPS[@]}")
RPS_RATIO=$(ratio "$AX_MED" "$NG_MED")
# Each round's axkit/nginx ratio (back-to-back runs see similar background
# load), and their median: a second view that resists load drifting.
PAIRS=$(pair_ratios "${AX_RPS[*]}" "${NG_RPS[*]}")

# ---- idle keep-alive memory -----------------------------------------------------------

# Memory is mem_of (lib.sh): Pss_Anon + Pss_Shmem, anonymous memory, shared
# pages split between the processes sharing them (nginx workers share
# copy-on-write pages with their master). File-backed Pss is left out on
# purpose: it moves when *other* processes (the python holders) map the same
# libc, which would show up as a bogus change in the server's memory.

# idle_test NAME MASTER_PID PORT -> sets IDLE_PSS IDLE_RSS IDLE_N IDLE_NOTE
idle_test() {
    local name=$1 pid=$2 port=$3 est
    sleep 1
    read -r b_pss b_rss < <(mem_of "$pid")
    hold_idle_start "$name" "$port" "$IDLE_CONNS" "$HOLDERS" 110
    sleep 2   # let memory settle
    read -r a_pss a_rss < <(mem_of "$pid")
    est=$(established "$port")
    hold_idle_end "$name"
    kill -0 "$pid" 2>/dev/null || die "$name master died during the idle test"
    IDLE_N=$HOLD_OK
    IDLE_PSS=$(( HOLD_OK > 0 ? (a_pss - b_pss) / HOLD_OK : 0 ))
    IDLE_RSS=$(( HOLD_OK > 0 ? (a_rss - b_rss) / HOLD_OK : 0 ))
    IDLE_NOTE="held $HOLD_OK/$IDLE_CONNS (failed $HOLD_FAILED); server-side established $est; still open at check $HOLD_OPEN, closed $HOLD_CLOSED"
    log "$name idle: Pss $b_pss -> $a_pss, RSS $b_rss -> $a_rss bytes; $IDLE_NOTE"
}

AX_IDLE_PSS=0 AX_IDLE_RSS=0 AX_IDLE_NOTE=skipped AX_IDLE_N=0
NG_IDLE_PSS=0 NG_IDLE_RSS=0 NG_IDLE_NOTE=skipped NG_IDLE_N=0
if [ "$IDLE_CONNS" -gt 0 ]; then   # IDLE_CONNS=0: throughput only
    log "idle keep-alive memory: $IDLE_CONNS connections over $HOLDERS holders"
    idle_test axkit "$AX_PID" "$AX_PORT"
    AX_IDLE_PSS=$IDLE_PSS AX_IDLE_RSS=$IDLE_RSS AX_IDLE_NOTE=$IDLE_NOTE AX_IDLE_N=$IDLE_N
    sleep 2
    idle_test nginx "$NG_PID" "$NG_PORT"
    NG_IDLE_PSS=$IDLE_PSS NG_IDLE_RSS=$IDLE_RSS NG_IDLE_NOTE=$IDLE_NOTE NG_IDLE_N=$IDLE_N
fi
MEM_RATIO=$(ratio "$AX_IDLE_PSS" "$NG_IDLE_PSS")

# ---- summary ---------------------------------------------------------------------------

ax_log_lines=$(grep -c . "$TMP/axkit.log" || true)
ng_err_lines=$(grep -c . "$TMP/nginx/error.log" || true)

kib() { awk -v b="$1" 'BEGIN {printf "%.2f KiB", b/1024}'; }
rps_ok=$(awk -v r="$RPS_RATIO" 'BEGIN {print (r >= 1.0) ? "met" : "NOT met"}')
mem_ok=$(awk -v b="$AX_IDLE_PSS" 'BEGIN {print (b <= 2048) ? "met" : "NOT met"}')

cat <<EOF

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$NGINX" -v 2>&1 | sed 's/.*: //') · $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')
axkit: $AXKIT_REV (the working tree as built; "-dirty" = uncommitted changes) · Workers $WORKERS each · open-file cache: $([ "$FILE_CACHE" = 1 ] && echo "on for both" || echo "off for both") · requests: $([ "$BROWSER" = 1 ] && echo "a browser's header fields" || echo "wrk's bare Host line") · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds alternating, median · load avg before: $LOAD_BEFORE · other busy processes at start: ${BUSY:-none}

| 1 KiB GET, keep-alive | axkit | nginx | axkit/nginx |
|---|---|---|---|
| requests/s (median) | $AX_MED | $NG_MED | $RPS_RATIO |
| requests/s (each round) | ${AX_RPS[*]} | ${NG_RPS[*]} | $PAIRS |
| server CPU µs/request (median; rounds) | $AX_CPU_MED (${AX_CPU[*]}) | $NG_CPU_MED (${NG_CPU[*]}) | $(ratio "$AX_CPU_MED" "$NG_CPU_MED") ($(pair_ratios "${AX_CPU[*]}" "${NG_CPU[*]}")) |
| idle keep-alive, Pss(anon) per conn | $AX_IDLE_PSS B ($(kib "$AX_IDLE_PSS")) | $NG_IDLE_PSS B ($(kib "$NG_IDLE_PSS")) | $MEM_RATIO |
| idle keep-alive, RSS per conn | $AX_IDLE_RSS B | $NG_IDLE_RSS B | |
$([ "$H2O" = 1 ] && cat <<H2
| against h2o $(h2o --version | head -1 | awk '{print $3}') | axkit | h2o | axkit/h2o |
| requests/s (median; each round) | $AX_MED | $(median "${H2_RPS[@]}") (${H2_RPS[*]}) | $(ratio "$AX_MED" "$(median "${H2_RPS[@]}")") ($(pair_ratios "${AX_RPS[*]}" "${H2_RPS[*]}")) |
| server CPU µs/request (median; rounds) | $AX_CPU_MED | $(median "${H2_CPU[@]}") (${H2_CPU[*]}) | $(ratio "$AX_CPU_MED" "$(median "${H2_CPU[@]}")") ($(pair_ratios "${AX_CPU[*]}" "${H2_CPU[*]}")) |
H2
)

Targets: req/s >= 1.0x nginx: $rps_ok ($RPS_RATIO x); idle memory <= 2 KiB/conn: $mem_ok ($(kib "$AX_IDLE_PSS")).
Idle test axkit: $AX_IDLE_NOTE
Idle test nginx: $NG_IDLE_NOTE
wrk anomalies axkit (Non-2xx / socket errors, count of rounds):
$(anoms axkit)
wrk anomalies nginx:
$(anoms nginx)
Server logs: axkit $ax_log_lines lines, nginx error.log $ng_err_lines lines
EOF
if [ "$ax_log_lines" -gt 0 ]; then echo "axkit log (last 5 lines):"; tail -5 "$TMP/axkit.log" | awk '{print "    " $0}'; fi
if [ "$ng_err_lines" -gt 0 ]; then echo "nginx error.log (last 5 lines):"; tail -5 "$TMP/nginx/error.log" | awk '{print "    " $0}'; fi
