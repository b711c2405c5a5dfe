#!/usr/bin/env bash
# bench/cgi.sh — AxKit serve_cgi vs lighttpd mod_cgi, side by side, running
# the same trivial /bin/sh CGI script.
#
# What it measures (see docs/benchmarks.md for the figures):
#   1. Throughput: requests/s for GET /cgi-bin/hello.sh over keep-alive, wrk
#      against axkit and lighttpd alternately (ROUNDS rounds each, median),
#      and the ratio axkit/lighttpd (target: >= 1.0).
#   2. axkit's own memory across the run: Pss(anon) and RSS of master +
#      workers before the first round, the highest seen while wrk runs
#      (sampled every 0.5 s) and after the last round (target: flat).
#   3. Hygiene after the run: scripts still running under axkit's workers
#      (must be 0: no zombies, no leftovers) and each worker's descriptor
#      count before and after.
#
# Both servers: same worker count (axkit Workers N, lighttpd
# server.max-worker N), no access log, keep-alive, listening on random free
# 127.0.0.1 ports above 20000, the same script file.
#
# How to run (root only needed to apt-get install wrk/lighttpd):
#     bench/cgi.sh
#     WORKERS=2 DURATION=10 ROUNDS=3 CONNS=16 bench/cgi.sh
#
# The load generator shares the cores with the servers and with the forked
# scripts, so absolute numbers are noisy: quote the ratio.
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback only; every wait loop is bounded;
# everything lives in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
THREADS=${THREADS:-1}

SCRIPT_TAG=cgi.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
AXKIT=$ROOT/target/release/axkit

need_cmd wrk wrk
need_cmd lighttpd lighttpd
install_needed
LIGHTTPD=$(command -v lighttpd || echo /usr/sbin/lighttpd)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

build_release axkit -p axkit-cli

make_tmp axkit-cgibench   # cleanup on EXIT: stop STARTED_PIDS by PID, remove TMP

mkdir -p "$TMP/www/cgi-bin" "$TMP/lighttpd"
cat >"$TMP/www/cgi-bin/hello.sh" <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nHello from /bin/sh\n'
EOF
chmod 755 "$TMP/www/cgi-bin/hello.sh"

pick_ports AX_PORT LT_PORT

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
MaxKeepAliveRequests 0
CGIMaxProcesses 256
<Server>
    Listen 127.0.0.1:$AX_PORT
    DocumentRoot $TMP/www
    Plugin serve_cgi
    Plugin uri_to_file
    Plugin serve_file
    ScriptAlias /cgi-bin/ $TMP/www/cgi-bin/
</Server>
EOF

cat >"$TMP/lighttpd/lighttpd.conf" <<EOF
server.modules = ( "mod_cgi" )
server.document-root = "$TMP/www"
server.bind = "127.0.0.1"
server.port = $LT_PORT
server.pid-file = "$TMP/lighttpd/lighttpd.pid"
server.errorlog = "$TMP/lighttpd/error.log"
server.max-worker = $WORKERS
server.max-keep-alive-requests = 1000000
server.max-fds = 16384
\$HTTP["url"] =~ "^/cgi-bin/" { cgi.assign = ( "" => "" ) }
EOF

must_pass "axkit rejected its config" "$AXKIT" --check -c "$TMP/axkit.conf"
must_pass "lighttpd rejected its config" "$LIGHTTPD" -tt -f "$TMP/lighttpd/lighttpd.conf"

start_bg AX_PID "$TMP/axkit.log" "$AXKIT" -c "$TMP/axkit.conf"
# lighttpd signals its whole process group when it stops: give it its own
# (setsid execs in place here, so $! is still lighttpd itself).
start_bg LT_PID "$TMP/lighttpd/stdout.log" setsid "$LIGHTTPD" -D -f "$TMP/lighttpd/lighttpd.conf"

URL_PATH=/cgi-bin/hello.sh
STARTUP_LOGS=("$TMP/axkit.log" "$TMP/lighttpd/stdout.log" "$TMP/lighttpd/error.log")
wait_up axkit "$AX_PID" "$AX_PORT" "$URL_PATH"
wait_up lighttpd "$LT_PID" "$LT_PORT" "$URL_PATH"

AX_WORKERS=$(workers_of "$AX_PID")
log "axkit    PID $AX_PID port $AX_PORT workers: $AX_WORKERS"
log "lighttpd PID $LT_PID port $LT_PORT workers: $(workers_of "$LT_PID")"
for s in "axkit $AX_PORT" "lighttpd $LT_PORT"; do
    set -- $s
    log "$1 answers: $(curl -fsS -D - "http://127.0.0.1:$2$URL_PATH" | tr -d '\r' | tr '\n' '|')"
done

# mem_kib PID... (lib.sh) -> "PSS_KIB RSS_KIB" summed (Pss_Anon + Pss_Shmem)
fds_of() { local p out=""; for p in "$@"; do out+="$(ls /proc/"$p"/fd | wc -l) "; done; echo "$out"; }
# Processes (scripts, zombies) still under axkit's workers.
children_of_workers() { local p n=0; for p in "$@"; do n=$(( n + $(ps -o pid= --ppid "$p" | wc -l) )); done; echo "$n"; }

note_load
log "warm-up (3 s each)"
run_wrk axkit "$AX_PORT" 3 "$URL_PATH" >/dev/null
run_wrk lighttpd "$LT_PORT" 3 "$URL_PATH" >/dev/null
: >"$TMP/anomalies-axkit.txt"; : >"$TMP/anomalies-lighttpd.txt"

sleep 1
read -r MEM_B_PSS MEM_B_RSS < <(mem_kib "$AX_PID" $AX_WORKERS)
FDS_BEFORE=$(fds_of $AX_WORKERS)
# Sample axkit's memory while the rounds run (bounded: stops with the run).
: >"$TMP/mem-samples"
(
    for i in $(seq $(( (DURATION * 2 + 10) * ROUNDS * 2 + 20 ))); do
        [ -e "$TMP/stop-sampling" ] && break
        mem_kib "$AX_PID" $AX_WORKERS >>"$TMP/mem-samples"
        sleep 0.5
    done
) &
SAMPLER=$!; STARTED_PIDS+=("$SAMPLER")

# CPU time of the server processes themselves (not the scripts), in clock
# ticks: per request, it is a figure that other load on the machine hardly
# moves.
LT_WORKERS=$(workers_of "$LT_PID")
AX_CPU=0; LT_CPU=0; AX_REQS=0; LT_REQS=0
AX_RPS=(); LT_RPS=(); MEM_ROUNDS=()
for r in $(seq "$ROUNDS"); do
    c=$(cpu_ticks "$AX_PID" $AX_WORKERS)
    a=$(run_wrk axkit "$AX_PORT" "$DURATION" "$URL_PATH"); AX_RPS+=("$a")
    AX_CPU=$(( AX_CPU + $(cpu_ticks "$AX_PID" $AX_WORKERS) - c )); AX_REQS=$(( AX_REQS + $(cat "$TMP/last-count") ))
    c=$(cpu_ticks "$LT_PID" $LT_WORKERS)
    l=$(run_wrk lighttpd "$LT_PORT" "$DURATION" "$URL_PATH"); LT_RPS+=("$l")
    LT_CPU=$(( LT_CPU + $(cpu_ticks "$LT_PID" $LT_WORKERS) - c )); LT_REQS=$(( LT_REQS + $(cat "$TMP/last-count") ))
    # axkit's Pss(anon) after each of its rounds: flat means no growth per request.
    MEM_ROUNDS+=("$(mem_kib "$AX_PID" $AX_WORKERS | awk '{print $1}')")
    log "round $r: axkit $a req/s, lighttpd $l req/s"
done
touch "$TMP/stop-sampling"
wait "$SAMPLER" 2>/dev/null || true
sleep 1
read -r MEM_A_PSS MEM_A_RSS < <(mem_kib "$AX_PID" $AX_WORKERS)
MEM_PEAK_PSS=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$TMP/mem-samples")
MEM_PEAK_RSS=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$TMP/mem-samples")
FDS_AFTER=$(fds_of $AX_WORKERS)
LEFT=$(children_of_workers $AX_WORKERS)

AX_MED=$(median "${AX_RPS[@]}")
LT_MED=$(median "${LT_RPS[@]}")
RATIO=$(ratio "$AX_MED" "$LT_MED")
PAIRS=$(pair_ratios "${AX_RPS[*]}" "${LT_RPS[*]}")
TICK=$(getconf CLK_TCK)
AX_US=$(awk -v c="$AX_CPU" -v n="$AX_REQS" -v t="$TICK" 'BEGIN {printf "%.0f", c * 1e6 / t / n}')
LT_US=$(awk -v c="$LT_CPU" -v n="$LT_REQS" -v t="$TICK" 'BEGIN {printf "%.0f", c * 1e6 / t / n}')
CPU_RATIO=$(awk -v a="$AX_US" -v l="$LT_US" 'BEGIN {printf "%.2f", (l > 0) ? a / l : 0}')
ok=$(awk -v r="$RATIO" 'BEGIN {print (r >= 1.0) ? "met" : "NOT met"}')

cat <<EOF

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$LIGHTTPD" -v 2>&1 | head -1 | awk '{print $1}') · $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')
axkit: $AXKIT_REV · Workers $WORKERS each (lighttpd server.max-worker $WORKERS) · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds alternating, median · load avg before: $LOAD_BEFORE · other busy processes at start: ${BUSY:-none}

| trivial /bin/sh CGI, keep-alive | axkit serve_cgi | lighttpd mod_cgi | axkit/lighttpd |
|---|---|---|---|
| requests/s (median) | $AX_MED | $LT_MED | $RATIO |
| requests/s (each round) | ${AX_RPS[*]} | ${LT_RPS[*]} | $PAIRS |
| server CPU per request (scripts excluded) | $AX_US µs | $LT_US µs | $CPU_RATIO |

axkit memory (master + workers), KiB: Pss(anon) before $MEM_B_PSS, peak during $MEM_PEAK_PSS, after each round ${MEM_ROUNDS[*]}, after $MEM_A_PSS; RSS before $MEM_B_RSS, peak during $MEM_PEAK_RSS, after $MEM_A_RSS
axkit worker descriptors before: $FDS_BEFORE after: $FDS_AFTER · processes left under axkit workers after the run: $LEFT
Target: req/s >= 1.0x lighttpd mod_cgi: $ok (${RATIO}x)
wrk anomalies axkit:
$(anoms axkit)
wrk anomalies lighttpd:
$(anoms lighttpd)
EOF
if [ -s "$TMP/axkit.log" ]; then echo "axkit log (last 5 lines):"; tail -5 "$TMP/axkit.log" | awk '{print "    " $0}'; fi
if [ -s "$TMP/lighttpd/error.log" ]; then echo "lighttpd error.log (last 5 lines):"; tail -5 "$TMP/lighttpd/error.log" | awk '{print "    " $0}'; fi
