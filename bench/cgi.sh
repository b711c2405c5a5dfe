#!/usr/bin/env bash
# bench/cgi.sh — AxKit serve_cgi vs lighttpd mod_cgi, side by side, running
# the same trivial /bin/sh CGI script.
#
# What it measures (issue #4's target; DESIGN.md, "What fast means here"):
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

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
AXKIT=$ROOT/target/release/axkit

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'cgi.sh: %s\n' "$*" >&2; exit 1; }

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v lighttpd >/dev/null 2>&1 || [ -x /usr/sbin/lighttpd ] || need_pkgs+=(lighttpd)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
LIGHTTPD=$(command -v lighttpd || echo /usr/sbin/lighttpd)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

AXKIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
log "building axkit (release) at $AXKIT_REV"
(cd "$ROOT" && cargo build --release -q -p axkit-cli)

TMP=$(mktemp -d /tmp/axkit-cgibench.XXXXXX)
STARTED_PIDS=()

stop_pid() {      # TERM, wait up to 5 s, then KILL it and the children it had
    local pid=$1 i kids
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for k in $kids; do
        for i in $(seq 20); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$k" 2>/dev/null || true
    done
}
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/www/cgi-bin" "$TMP/lighttpd"
cat >"$TMP/www/cgi-bin/hello.sh" <<'EOF'
#!/bin/sh
printf 'Content-Type: text/plain\r\n\r\nHello from /bin/sh\n'
EOF
chmod 755 "$TMP/www/cgi-bin/hello.sh"

read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range
PORT_HI=$(( EPH_LO > 20100 ? EPH_LO - 1 : 30000 ))
free_port() {
    local i p
    for i in $(seq 50); do
        p=$(( 20001 + RANDOM % (PORT_HI - 20001) ))
        if python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null \
            && ! ss -Htan "( sport = :$p or dport = :$p )" | grep -q .; then
            echo "$p"; return 0
        fi
    done
    die "no free port found"
}
AX_PORT=$(free_port)
LT_PORT=$(free_port)
while [ "$LT_PORT" = "$AX_PORT" ]; do LT_PORT=$(free_port); done

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

"$AXKIT" --check -c "$TMP/axkit.conf" >"$TMP/axkit-check.log" 2>&1 \
    || { cat "$TMP/axkit-check.log" >&2; die "axkit rejected its config"; }
"$LIGHTTPD" -tt -f "$TMP/lighttpd/lighttpd.conf" >"$TMP/lighttpd/check.log" 2>&1 \
    || { cat "$TMP/lighttpd/check.log" >&2; die "lighttpd rejected its config"; }

"$AXKIT" -c "$TMP/axkit.conf" >"$TMP/axkit.log" 2>&1 &
AX_PID=$!; STARTED_PIDS+=("$AX_PID")
"$LIGHTTPD" -D -f "$TMP/lighttpd/lighttpd.conf" >"$TMP/lighttpd/stdout.log" 2>&1 &
LT_PID=$!; STARTED_PIDS+=("$LT_PID")

URL_PATH=/cgi-bin/hello.sh
wait_up() {
    local name=$1 pid=$2 port=$3 i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { cat "$TMP"/*.log "$TMP"/lighttpd/*.log >&2 2>/dev/null; die "$name exited at startup"; }
        curl -fs -o /dev/null "http://127.0.0.1:$port$URL_PATH" && return 0
        sleep 0.1
    done
    die "$name did not answer on port $port within 10 s"
}
wait_up axkit "$AX_PID" "$AX_PORT"
wait_up lighttpd "$LT_PID" "$LT_PORT"

workers_of() { ps -o pid= --ppid "$1" | tr -d ' ' | tr '\n' ' '; }
AX_WORKERS=$(workers_of "$AX_PID")
log "axkit    PID $AX_PID port $AX_PORT workers: $AX_WORKERS"
log "lighttpd PID $LT_PID port $LT_PORT workers: $(workers_of "$LT_PID")"
for s in "axkit $AX_PORT" "lighttpd $LT_PORT"; do
    set -- $s
    log "$1 answers: $(curl -fsS -D - "http://127.0.0.1:$2$URL_PATH" | tr -d '\r' | tr '\n' '|')"
done

# mem_of PID... -> "PSS_KIB RSS_KIB" summed (Pss_Anon + Pss_Shmem, as in static.sh)
mem_of() {
    local p pss=0 rss=0 v
    for p in "$@"; do
        v=$(awk '/^Pss_Anon:|^Pss_Shmem:/ {s += $2} END {print s + 0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        pss=$(( pss + ${v:-0} ))
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        rss=$(( rss + ${v:-0} ))
    done
    echo "$pss $rss"
}
fds_of() { local p out=""; for p in "$@"; do out+="$(ls /proc/"$p"/fd | wc -l) "; done; echo "$out"; }
# Processes (scripts, zombies) still under axkit's workers.
children_of_workers() { local p n=0; for p in "$@"; do n=$(( n + $(ps -o pid= --ppid "$p" | wc -l) )); done; echo "$n"; }

run_wrk() {
    local name=$1 port=$2 secs=$3 out
    out="$TMP/wrk-$name-$RANDOM.txt"
    timeout $(( secs + 30 )) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" \
        "http://127.0.0.1:$port$URL_PATH" >"$out" 2>&1 || { cat "$out" >&2; die "wrk against $name failed"; }
    grep -E 'Non-2xx|Socket errors' "$out" | sed "s/^/   [$name] /" >&2 || true
    grep -E 'Non-2xx|Socket errors' "$out" >>"$TMP/anomalies-$name.txt" || true
    awk '/requests in/ {print $1}' "$out" >"$TMP/last-count"
    awk '/^Requests\/sec:/ {print $2}' "$out"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 20 {printf "%s%s %s%%", sep, $2, $1; sep=", "}')
log "warm-up (3 s each)"
run_wrk axkit "$AX_PORT" 3 >/dev/null
run_wrk lighttpd "$LT_PORT" 3 >/dev/null
: >"$TMP/anomalies-axkit.txt"; : >"$TMP/anomalies-lighttpd.txt"

sleep 1
read -r MEM_B_PSS MEM_B_RSS < <(mem_of "$AX_PID" $AX_WORKERS)
FDS_BEFORE=$(fds_of $AX_WORKERS)
# Sample axkit's memory while the rounds run (bounded: stops with the run).
: >"$TMP/mem-samples"
(
    for i in $(seq $(( (DURATION * 2 + 10) * ROUNDS * 2 + 20 ))); do
        [ -e "$TMP/stop-sampling" ] && break
        mem_of "$AX_PID" $AX_WORKERS >>"$TMP/mem-samples"
        sleep 0.5
    done
) &
SAMPLER=$!; STARTED_PIDS+=("$SAMPLER")

# CPU time of the server processes themselves (not the scripts), in clock
# ticks: per request, it is a figure that other load on the machine hardly
# moves.
cpu_of() { local p t=0; for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") )); done; echo "$t"; }
LT_WORKERS=$(workers_of "$LT_PID")
AX_CPU=0; LT_CPU=0; AX_REQS=0; LT_REQS=0
AX_RPS=(); LT_RPS=(); MEM_ROUNDS=()
for r in $(seq "$ROUNDS"); do
    c=$(cpu_of "$AX_PID" $AX_WORKERS)
    a=$(run_wrk axkit "$AX_PORT" "$DURATION"); AX_RPS+=("$a")
    AX_CPU=$(( AX_CPU + $(cpu_of "$AX_PID" $AX_WORKERS) - c )); AX_REQS=$(( AX_REQS + $(cat "$TMP/last-count") ))
    c=$(cpu_of "$LT_PID" $LT_WORKERS)
    l=$(run_wrk lighttpd "$LT_PORT" "$DURATION"); LT_RPS+=("$l")
    LT_CPU=$(( LT_CPU + $(cpu_of "$LT_PID" $LT_WORKERS) - c )); LT_REQS=$(( LT_REQS + $(cat "$TMP/last-count") ))
    # axkit's Pss(anon) after each of its rounds: flat means no growth per request.
    MEM_ROUNDS+=("$(mem_of "$AX_PID" $AX_WORKERS | awk '{print $1}')")
    log "round $r: axkit $a req/s, lighttpd $l req/s"
done
touch "$TMP/stop-sampling"
wait "$SAMPLER" 2>/dev/null || true
sleep 1
read -r MEM_A_PSS MEM_A_RSS < <(mem_of "$AX_PID" $AX_WORKERS)
MEM_PEAK_PSS=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$TMP/mem-samples")
MEM_PEAK_RSS=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$TMP/mem-samples")
FDS_AFTER=$(fds_of $AX_WORKERS)
LEFT=$(children_of_workers $AX_WORKERS)

AX_MED=$(median "${AX_RPS[@]}")
LT_MED=$(median "${LT_RPS[@]}")
RATIO=$(awk -v a="$AX_MED" -v n="$LT_MED" 'BEGIN {printf "%.2f", a/n}')
PAIR=()
for i in "${!AX_RPS[@]}"; do
    PAIR+=("$(awk -v a="${AX_RPS[$i]}" -v n="${LT_RPS[$i]}" 'BEGIN {printf "%.2f", a/n}')")
done
PAIR_MED=$(median "${PAIR[@]}")
TICK=$(getconf CLK_TCK)
AX_US=$(awk -v c="$AX_CPU" -v n="$AX_REQS" -v t="$TICK" 'BEGIN {printf "%.0f", c * 1e6 / t / n}')
LT_US=$(awk -v c="$LT_CPU" -v n="$LT_REQS" -v t="$TICK" 'BEGIN {printf "%.0f", c * 1e6 / t / n}')
CPU_RATIO=$(awk -v a="$AX_US" -v l="$LT_US" 'BEGIN {printf "%.2f", (l > 0) ? a / l : 0}')
anoms() { [ -s "$TMP/anomalies-$1.txt" ] && sort "$TMP/anomalies-$1.txt" | uniq -c | sed 's/^ */    /' || echo "    none"; }
ok=$(awk -v r="$RATIO" 'BEGIN {print (r >= 1.0) ? "met" : "NOT met"}')

cat <<EOF

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$LIGHTTPD" -v 2>&1 | head -1 | awk '{print $1}') · $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')
axkit: $AXKIT_REV · Workers $WORKERS each (lighttpd server.max-worker $WORKERS) · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds alternating, median · load avg before: $LOAD_BEFORE · other busy processes at start: ${BUSY:-none}

| trivial /bin/sh CGI, keep-alive | axkit serve_cgi | lighttpd mod_cgi | axkit/lighttpd |
|---|---|---|---|
| requests/s (median) | $AX_MED | $LT_MED | $RATIO |
| requests/s (each round) | ${AX_RPS[*]} | ${LT_RPS[*]} | ${PAIR[*]} (median $PAIR_MED) |
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
