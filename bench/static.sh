#!/usr/bin/env bash
# bench/static.sh — AxKit vs nginx, side by side, on one 1 KiB static file.
#
# What it measures (DESIGN.md, "What fast means here"):
#   1. Throughput: requests/s for GET /1k.bin over keep-alive, wrk against
#      axkit and nginx alternately (ROUNDS rounds each, median taken), and
#      the ratio axkit/nginx.
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
# FILE_CACHE=0: neither does, which is nginx's default).
#
# How to run (from anywhere; needs root only to apt-get install wrk/nginx):
#     bench/static.sh
#     WORKERS=2 DURATION=10 ROUNDS=3 CONNS=50 IDLE_CONNS=10000 bench/static.sh
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
FILE_CACHE=${FILE_CACHE:-1}   # 1: open-file cache on both (axkit OpenFileCache, nginx open_file_cache); 0: off on both

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
AXKIT=$ROOT/target/release/axkit

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'static.sh: %s\n' "$*" >&2; exit 1; }

# ---- tools ------------------------------------------------------------------

need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    apt-get update -qq
    apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

# What exactly is measured: the tree moves while others work in it.
AXKIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
log "building axkit (release) at $AXKIT_REV"
(cd "$ROOT" && cargo build --release -q -p axkit-cli)

# ---- cleanup ----------------------------------------------------------------

TMP=$(mktemp -d /tmp/axkit-bench.XXXXXX)
STARTED_PIDS=()   # every process we start; stopped by PID on exit
HOLDER_FDS=()

stop_pid() {      # stop_pid PID: TERM, wait up to 5 s, then KILL it and its children
    local pid=$1 i kids
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "PID $pid ignored SIGTERM for 5 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    # Its workers (recorded by PID above) get 2 s to follow, then SIGKILL.
    for k in $kids; do
        for i in $(seq 20); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$k" 2>/dev/null || true
    done
}

cleanup() {
    local fd pid
    for fd in "${HOLDER_FDS[@]}"; do eval "exec $fd>&-" 2>/dev/null || true; done
    for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- content and ports --------------------------------------------------------

mkdir -p "$TMP/www" "$TMP/nginx"
# 1 KiB of fixed, printable content.
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
[ "$(stat -c %s "$TMP/www/1k.bin")" = 1024 ] || die "1k.bin is not 1024 bytes"

# A free port above 20000 and below the ephemeral range (so client sockets
# can never be sitting on it).
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
NG_PORT=$(free_port)
while [ "$NG_PORT" = "$AX_PORT" ]; do NG_PORT=$(free_port); done

# ---- configs --------------------------------------------------------------------

AX_CACHE=""
NG_CACHE=""
if [ "$FILE_CACHE" = 1 ]; then
    AX_CACHE="OpenFileCache 10000
OpenFileCacheValid 1s"
    NG_CACHE="open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;"
fi

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
$AX_CACHE
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
<Server>
    Listen 127.0.0.1:$AX_PORT
    DocumentRoot $TMP/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
</Server>
EOF

NG_USER=""
[ "$(id -u)" = 0 ] && NG_USER="user root;"
cat >"$TMP/nginx/nginx.conf" <<EOF
$NG_USER
worker_processes $WORKERS;
worker_rlimit_nofile 20000;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 20000; }
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

"$AXKIT" --check -c "$TMP/axkit.conf" >"$TMP/axkit-check.log" 2>&1 \
    || { cat "$TMP/axkit-check.log" >&2; die "axkit rejected its config"; }
"$NGINX" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    || die "nginx rejected its config"

# ---- start servers ----------------------------------------------------------------

"$AXKIT" -c "$TMP/axkit.conf" >"$TMP/axkit.log" 2>&1 &
AX_PID=$!; STARTED_PIDS+=("$AX_PID")
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' \
    >"$TMP/nginx/stdout.log" 2>&1 &
NG_PID=$!; STARTED_PIDS+=("$NG_PID")

wait_up() {   # wait_up NAME PID PORT: up to 10 s for a 200 on /1k.bin
    local name=$1 pid=$2 port=$3 i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || die "$name (PID $pid) exited at startup"
        if curl -fs -o /dev/null "http://127.0.0.1:$port/1k.bin"; then return 0; fi
        sleep 0.1
    done
    die "$name did not answer on port $port within 10 s"
}
wait_up axkit "$AX_PID" "$AX_PORT"
wait_up nginx "$NG_PID" "$NG_PORT"

workers_of() { ps -o pid= --ppid "$1" | tr -d ' ' | tr '\n' ' '; }
log "axkit  PID $AX_PID port $AX_PORT workers: $(workers_of "$AX_PID")"
log "nginx  PID $NG_PID port $NG_PORT workers: $(workers_of "$NG_PID")"

# Same bytes from both?
for s in "axkit $AX_PORT" "nginx $NG_PORT"; do
    set -- $s
    body=$(curl -fsS "http://127.0.0.1:$2/1k.bin" | cmp - "$TMP/www/1k.bin" && echo same || echo DIFFERENT)
    hdr=$(curl -fsS -D - -o /dev/null "http://127.0.0.1:$2/1k.bin" | tr -d '\r' | tr '\n' '|')
    log "$1 body: $body; head: $hdr"
done

# ---- throughput -------------------------------------------------------------------

# run_wrk NAME PORT SECONDS -> prints req/s; wrk output saved and anomalies echoed
run_wrk() {
    local name=$1 port=$2 secs=$3 out
    out="$TMP/wrk-$name-$RANDOM.txt"
    kill -0 "$( [ "$name" = axkit ] && echo "$AX_PID" || echo "$NG_PID")" 2>/dev/null \
        || die "$name master died before a wrk run"
    timeout $(( secs + 30 )) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --latency \
        "http://127.0.0.1:$port/1k.bin" >"$out" 2>&1 || { cat "$out" >&2; die "wrk against $name failed"; }
    grep -E 'Non-2xx|Socket errors' "$out" | sed "s/^/   [$name] /" >&2 || true
    grep -E 'Non-2xx|Socket errors' "$out" >>"$TMP/anomalies-$name.txt" || true
    awk '/^Requests\/sec:/ {print $2}' "$out"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Other busy processes right now (fuzzers, builds, another benchmark): noise.
BUSY=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 20 {printf "%s%s %s%%", sep, $2, $1; sep=", "}')
log "warm-up (3 s each)"
run_wrk axkit "$AX_PORT" 3 >/dev/null
run_wrk nginx "$NG_PORT" 3 >/dev/null
: >"$TMP/anomalies-axkit.txt"; : >"$TMP/anomalies-nginx.txt"

AX_RPS=(); NG_RPS=()
for r in $(seq "$ROUNDS"); do
    a=$(run_wrk axkit "$AX_PORT" "$DURATION"); AX_RPS+=("$a")
    n=$(run_wrk nginx "$NG_PORT" "$DURATION"); NG_RPS+=("$n")
    log "round $r: axkit $a req/s, nginx $n req/s"
done
AX_MED=$(median "${AX_RPS[@]}")
NG_MED=$(median "${NG_RPS[@]}")
RPS_RATIO=$(awk -v a="$AX_MED" -v n="$NG_MED" 'BEGIN {printf "%.2f", a/n}')
# Each round's axkit/nginx ratio (back-to-back runs see similar background
# load), and their median: a second view that resists load drifting.
PAIR_RATIOS=()
for i in "${!AX_RPS[@]}"; do
    PAIR_RATIOS+=("$(awk -v a="${AX_RPS[$i]}" -v n="${NG_RPS[$i]}" 'BEGIN {printf "%.2f", a/n}')")
done
PAIR_MED=$(median "${PAIR_RATIOS[@]}")

# ---- idle keep-alive memory -----------------------------------------------------------

# mem_of MASTER_PID -> "PSS_BYTES RSS_BYTES" summed over master + its children.
# PSS here is Pss_Anon + Pss_Shmem: anonymous memory, shared pages split
# between the processes sharing them (nginx workers share copy-on-write pages
# with their master). File-backed Pss is left out on purpose: it moves when
# *other* processes (the python holders) map the same libc, which would show
# up as a bogus change in the server's memory.
mem_of() {
    local pids p pss=0 rss=0 v
    pids="$1 $(workers_of "$1")"
    for p in $pids; do
        v=$(awk '/^Pss_Anon:|^Pss_Shmem:/ {s += $2} END {print s + 0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        pss=$(( pss + ${v:-0} ))
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        rss=$(( rss + ${v:-0} ))
    done
    echo "$(( pss * 1024 )) $(( rss * 1024 ))"
}
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }

# idle_test NAME MASTER_PID PORT -> sets IDLE_PSS IDLE_RSS IDLE_NOTE
idle_test() {
    local name=$1 pid=$2 port=$3 i per before after ready open closed fd line
    local -a hpids=() hfds=()
    per=$(( IDLE_CONNS / HOLDERS ))
    sleep 1
    read -r b_pss b_rss < <(mem_of "$pid")
    for i in $(seq "$HOLDERS"); do
        mkfifo "$TMP/hold-$name-$i.in"
        python3 "$BENCH_DIR/hold_idle.py" 127.0.0.1 "$port" "$per" "127.0.0.$(( i + 1 ))" 110 \
            <"$TMP/hold-$name-$i.in" >"$TMP/hold-$name-$i.out" 2>&1 &
        hpids+=($!); STARTED_PIDS+=($!)
        exec {fd}>"$TMP/hold-$name-$i.in"
        hfds+=("$fd"); HOLDER_FDS+=("$fd")
    done
    # Wait (bounded) for every holder to report.
    for i in $(seq 900); do
        ready=$(cat "$TMP"/hold-"$name"-*.out | grep -c '^ready' || true)
        [ "$ready" -ge "$HOLDERS" ] && break
        for p in "${hpids[@]}"; do
            kill -0 "$p" 2>/dev/null || { cat "$TMP"/hold-"$name"-*.out >&2; die "a holder for $name exited early"; }
        done
        sleep 0.1
    done
    [ "$ready" -ge "$HOLDERS" ] || die "holders for $name not ready within 90 s"
    local ok=0 failed=0
    for i in $(seq "$HOLDERS"); do
        line=$(grep '^ready' "$TMP/hold-$name-$i.out")
        ok=$(( ok + $(sed -E 's/.*ok=([0-9]+).*/\1/' <<<"$line") ))
        failed=$(( failed + $(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$line") ))
        [[ "$line" == *"failed=0"* ]] || log "$name holder $i: $line"
    done
    sleep 2   # let memory settle
    read -r a_pss a_rss < <(mem_of "$pid")
    local est
    est=$(established "$port")
    # Ask each holder whether its connections are still open, then release them.
    for fd in "${hfds[@]}"; do echo check >&"$fd"; done
    for i in $(seq 100); do
        [ "$(cat "$TMP"/hold-"$name"-*.out | grep -c '^open=' || true)" -ge "$HOLDERS" ] && break
        sleep 0.1
    done
    open=0; closed=0
    for i in $(seq "$HOLDERS"); do
        line=$(grep '^open=' "$TMP/hold-$name-$i.out" || echo "open=0 closed=0")
        open=$(( open + $(sed -E 's/open=([0-9]+).*/\1/' <<<"$line") ))
        closed=$(( closed + $(sed -E 's/.*closed=([0-9]+).*/\1/' <<<"$line") ))
    done
    for fd in "${hfds[@]}"; do exec {fd}>&-; done
    HOLDER_FDS=()
    for p in "${hpids[@]}"; do
        for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        stop_pid "$p"
    done
    kill -0 "$pid" 2>/dev/null || die "$name master died during the idle test"
    IDLE_N=$ok
    IDLE_PSS=$(( ok > 0 ? (a_pss - b_pss) / ok : 0 ))
    IDLE_RSS=$(( ok > 0 ? (a_rss - b_rss) / ok : 0 ))
    IDLE_NOTE="held $ok/$IDLE_CONNS (failed $failed); server-side established $est; still open at check $open, closed $closed"
    log "$name idle: Pss $b_pss -> $a_pss, RSS $b_rss -> $a_rss bytes; $IDLE_NOTE"
}

log "idle keep-alive memory: $IDLE_CONNS connections over $HOLDERS holders"
idle_test axkit "$AX_PID" "$AX_PORT"
AX_IDLE_PSS=$IDLE_PSS AX_IDLE_RSS=$IDLE_RSS AX_IDLE_NOTE=$IDLE_NOTE AX_IDLE_N=$IDLE_N
sleep 2
idle_test nginx "$NG_PID" "$NG_PORT"
NG_IDLE_PSS=$IDLE_PSS NG_IDLE_RSS=$IDLE_RSS NG_IDLE_NOTE=$IDLE_NOTE NG_IDLE_N=$IDLE_N
MEM_RATIO=$(awk -v a="$AX_IDLE_PSS" -v n="$NG_IDLE_PSS" 'BEGIN {if (n > 0) printf "%.2f", a/n; else print "n/a"}')

# ---- summary ---------------------------------------------------------------------------

anoms() { [ -s "$TMP/anomalies-$1.txt" ] && sort "$TMP/anomalies-$1.txt" | uniq -c | sed 's/^ */    /' || echo "    none"; }
ax_log_lines=$(grep -c . "$TMP/axkit.log" || true)
ng_err_lines=$(grep -c . "$TMP/nginx/error.log" || true)

kib() { awk -v b="$1" 'BEGIN {printf "%.2f KiB", b/1024}'; }
rps_ok=$(awk -v r="$RPS_RATIO" 'BEGIN {print (r >= 1.0) ? "met" : "NOT met"}')
mem_ok=$(awk -v b="$AX_IDLE_PSS" 'BEGIN {print (b <= 2048) ? "met" : "NOT met"}')

cat <<EOF

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$NGINX" -v 2>&1 | sed 's/.*: //') · $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}')
axkit: $AXKIT_REV (the working tree as built; "-dirty" = uncommitted changes) · Workers $WORKERS each · open-file cache: $([ "$FILE_CACHE" = 1 ] && echo "on for both" || echo "off for both") · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds alternating, median · load avg before: $LOAD_BEFORE · other busy processes at start: ${BUSY:-none}

| 1 KiB GET, keep-alive | axkit | nginx | axkit/nginx |
|---|---|---|---|
| requests/s (median) | $AX_MED | $NG_MED | $RPS_RATIO |
| requests/s (each round) | ${AX_RPS[*]} | ${NG_RPS[*]} | ${PAIR_RATIOS[*]} (median $PAIR_MED) |
| idle keep-alive, Pss(anon) per conn | $AX_IDLE_PSS B ($(kib "$AX_IDLE_PSS")) | $NG_IDLE_PSS B ($(kib "$NG_IDLE_PSS")) | $MEM_RATIO |
| idle keep-alive, RSS per conn | $AX_IDLE_RSS B | $NG_IDLE_RSS B | |

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
