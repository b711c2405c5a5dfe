#!/usr/bin/env bash
# bench/static_large.sh — AxKit vs nginx, side by side, on large static
# files (issue #3's targets):
#
#   1. 100 KiB file: requests/s over keep-alive (wrk, ROUNDS alternating
#      rounds, medians and ratio axkit/nginx).           target >= 1.0x
#   2. 100 MiB file, one stream: throughput of a single curl download to
#      /dev/null (ROUNDS rounds each, medians, ratio).   target >= 1.0x
#   3. SLOW clients (default 200) each reading the 100 MiB file at about
#      SLOW_RATE (1 MiB/s): the server's memory growth (anonymous Pss of
#      master + workers: peak during the test minus before), and wrk on a
#      1 KiB file meanwhile, as a share of the same wrk run unloaded.
#      targets: growth <= 64 MiB; loaded >= 0.5 x unloaded.
#
# Both servers: same worker count, no access log, sendfile (nginx: on,
# tcp_nopush on; axkit: always), open-file cache on for both, random free
# ports on 127.0.0.1 above 20000. The load generators share the 2 cores
# with the servers, so quote ratios.
#
#     bench/static_large.sh
#     WORKERS=2 DURATION=10 ROUNDS=3 SLOW=200 SLOW_SECS=25 bench/static_large.sh
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback only; every loop bounded; one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
SLOW=${SLOW:-200}
SLOW_RATE=${SLOW_RATE:-1048576}
SLOW_SECS=${SLOW_SECS:-25}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
AXKIT=$ROOT/target/release/axkit
log() { printf '== %s\n' "$*" >&2; }
die() { printf 'static_large.sh: %s\n' "$*" >&2; exit 1; }

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
AXKIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
log "building axkit (release) at $AXKIT_REV"
(cd "$ROOT" && cargo build --release -q --bin axkit)

TMP=$(mktemp -d /tmp/axkit-bench-large.XXXXXX)
STARTED=()
stop_pid() {
    local pid=$1 kids
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for k in $kids; do
        for _ in $(seq 20); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$k" 2>/dev/null || true
    done
}
cleanup() { local p; for p in "${STARTED[@]}"; do stop_pid "$p"; done; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/www" "$TMP/nginx"
head -c $((100 * 1024)) /dev/urandom >"$TMP/www/100k.bin"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$TMP/www/100m.bin"
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"

read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range
PORT_HI=$(( EPH_LO > 20100 ? EPH_LO - 1 : 30000 ))
free_port() {
    local p
    for _ in $(seq 50); do
        p=$(( 20001 + RANDOM % (PORT_HI - 20001) ))
        if python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null \
            && ! ss -Htan "( sport = :$p or dport = :$p )" | grep -q .; then
            echo "$p"; return 0
        fi
    done
    die "no free port found"
}
AX_PORT=$(free_port); NG_PORT=$(free_port)
while [ "$NG_PORT" = "$AX_PORT" ]; do NG_PORT=$(free_port); done

cat >"$TMP/axkit.conf" <<CONF
Workers $WORKERS
OpenFileCache 10000
OpenFileCacheValid 1s
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
SendTimeout 120s
<Server>
    Listen 127.0.0.1:$AX_PORT
    DocumentRoot $TMP/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
</Server>
CONF
NG_USER=""; [ "$(id -u)" = 0 ] && NG_USER="user root;"
cat >"$TMP/nginx/nginx.conf" <<CONF
$NG_USER
worker_processes $WORKERS;
worker_rlimit_nofile 20000;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    send_timeout 120s;
    types { application/octet-stream bin; }
    client_body_temp_path $TMP/nginx/client_body;
    server { listen 127.0.0.1:$NG_PORT; root $TMP/www; }
}
CONF
"$AXKIT" --check -c "$TMP/axkit.conf" >/dev/null || die "axkit rejected its config"
"$NGINX" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" || die "nginx rejected its config"

"$AXKIT" -c "$TMP/axkit.conf" >"$TMP/axkit.log" 2>&1 &
AX_PID=$!; STARTED+=("$AX_PID")
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
NG_PID=$!; STARTED+=("$NG_PID")
for port in "$AX_PORT" "$NG_PORT"; do
    for i in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/1k.bin" && break; sleep 0.1; done
    [ "$i" -lt 100 ] || die "nothing answers on $port"
done
for s in "axkit $AX_PORT" "nginx $NG_PORT"; do
    set -- $s
    for f in 100k.bin 100m.bin; do
        curl -fsS "http://127.0.0.1:$2/$f" | cmp -s - "$TMP/www/$f" || die "$1 served a different $f"
    done
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a/b; else print "n/a"}'; }
wrk_rps() {   # wrk_rps PORT PATH SECONDS CONNS -> req/s
    local out="$TMP/wrk-$RANDOM.txt"
    timeout $(( $3 + 30 )) wrk -t1 -c"$4" -d"$3s" "http://127.0.0.1:$1$2" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed"; }
    grep -E 'Non-2xx|Socket errors' "$out" | sed 's/^/   [wrk] /' >&2 || true
    awk '/^Requests\/sec:/ {print $2}' "$out"
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
BUSY=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 20 {printf "%s%s %s%%", sep, $2, $1; sep=", "}')

# ---- 1. 100 KiB req/s -------------------------------------------------------
log "100 KiB: warm-up"
wrk_rps "$AX_PORT" /100k.bin 3 "$CONNS" >/dev/null; wrk_rps "$NG_PORT" /100k.bin 3 "$CONNS" >/dev/null
AX_K=(); NG_K=()
for r in $(seq "$ROUNDS"); do
    a=$(wrk_rps "$AX_PORT" /100k.bin "$DURATION" "$CONNS"); AX_K+=("$a")
    n=$(wrk_rps "$NG_PORT" /100k.bin "$DURATION" "$CONNS"); NG_K+=("$n")
    log "100 KiB round $r: axkit $a req/s, nginx $n req/s"
done
AX_KM=$(median "${AX_K[@]}"); NG_KM=$(median "${NG_K[@]}")

# ---- 2. 100 MiB single stream -----------------------------------------------
one_stream() { curl -fsS -o /dev/null -w '%{speed_download}' --max-time 120 "http://127.0.0.1:$1/100m.bin"; }
AX_S=(); NG_S=()
for r in $(seq "$ROUNDS"); do
    a=$(one_stream "$AX_PORT"); AX_S+=("$a")
    n=$(one_stream "$NG_PORT"); NG_S+=("$n")
    log "100 MiB round $r: axkit $(( ${a%.*} / 1048576 )) MiB/s, nginx $(( ${n%.*} / 1048576 )) MiB/s"
done
AX_SM=$(median "${AX_S[@]}"); NG_SM=$(median "${NG_S[@]}")
# Each round's ratio (back-to-back runs see similar background load) and
# their median: a view that resists load drifting between rounds.
pair_ratios() {   # pair_ratios "A1 A2…" "N1 N2…" -> "r1 r2… (median m)"
    local -a a=($1) n=($2) r=()
    local i
    for i in "${!a[@]}"; do r+=("$(ratio "${a[$i]}" "${n[$i]}")"); done
    echo "${r[*]} (median $(median "${r[@]}"))"
}
K_PAIRS=$(pair_ratios "${AX_K[*]}" "${NG_K[*]}")
S_PAIRS=$(pair_ratios "${AX_S[*]}" "${NG_S[*]}")
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b/1048576}'; }

# ---- 3. slow clients ---------------------------------------------------------
anon_of() {   # anonymous Pss (bytes) of a master and its workers
    local p s=0 v
    for p in "$1" $(ps -o pid= --ppid "$1"); do
        v=$(awk '/^Pss_Anon:|^Pss_Shmem:/ {s += $2} END {print s + 0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        s=$(( s + v ))
    done
    echo $(( s * 1024 ))
}
slow_test() {   # slow_test NAME PID PORT -> sets GROWTH UNLOADED LOADED SLOW_NOTE
    local name=$1 pid=$2 port=$3 before peak m i h out
    UNLOADED=$(wrk_rps "$port" /1k.bin "$DURATION" "$CONNS")
    sleep 1
    before=$(anon_of "$pid"); peak=$before
    local -a hp=()
    local per=$(( SLOW / 4 ))
    for h in 1 2 3 4; do
        python3 "$BENCH_DIR/slow_readers.py" 127.0.0.1 "$port" /100m.bin "$per" "$SLOW_RATE" "$SLOW_SECS" "127.0.0.$(( h + 1 ))" \
            >"$TMP/slow-$name-$h.out" 2>&1 &
        hp+=($!); STARTED+=($!)
    done
    for i in $(seq 300); do
        [ "$(cat "$TMP"/slow-"$name"-*.out | grep -c '^ready' || true)" -ge 4 ] && break
        sleep 0.1
    done
    sleep 2
    wrk_rps "$port" /1k.bin "$DURATION" "$CONNS" >"$TMP/loaded-$name" &
    local wp=$!
    for i in $(seq $(( (SLOW_SECS - 2) * 2 ))); do
        m=$(anon_of "$pid"); [ "$m" -gt "$peak" ] && peak=$m
        kill -0 "${hp[0]}" 2>/dev/null || break
        sleep 0.5
    done
    wait "$wp"; LOADED=$(cat "$TMP/loaded-$name")
    for h in "${hp[@]}"; do wait "$h" 2>/dev/null || true; done
    GROWTH=$(( peak - before ))
    local bytes=0 conns=0 errs=0 closed=0
    for h in 1 2 3 4; do
        out=$(grep '^done' "$TMP/slow-$name-$h.out" || echo "done conns=0 bytes=0 errors=0 closed=0")
        conns=$(( conns + $(sed -E 's/.*conns=([0-9]+).*/\1/' <<<"$out") ))
        bytes=$(( bytes + $(sed -E 's/.*bytes=([0-9]+).*/\1/' <<<"$out") ))
        errs=$(( errs + $(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$out") ))
        closed=$(( closed + $(sed -E 's/.*closed=([0-9]+).*/\1/' <<<"$out") ))
    done
    SLOW_NOTE="$conns slow conns, $(mib "$bytes") MiB read in ${SLOW_SECS}s ($(awk -v b="$bytes" -v c="$conns" -v s="$SLOW_SECS" 'BEGIN {if (c) printf "%.2f", b/c/s/1048576; else print 0}') MiB/s each), errors $errs, closed early $closed"
    log "$name slow: growth $(mib "$GROWTH") MiB; 1 KiB wrk unloaded $UNLOADED, loaded $LOADED; $SLOW_NOTE"
}
slow_test axkit "$AX_PID" "$AX_PORT"
AX_G=$GROWTH AX_U=$UNLOADED AX_L=$LOADED AX_NOTE=$SLOW_NOTE
sleep 3
slow_test nginx "$NG_PID" "$NG_PORT"
NG_G=$GROWTH NG_U=$UNLOADED NG_L=$LOADED NG_NOTE=$SLOW_NOTE

ok() { awk -v v="$1" -v t="$2" 'BEGIN {print (v >= t) ? "met" : "NOT met"}'; }
cat <<SUMMARY

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$NGINX" -v 2>&1 | sed 's/.*: //') · axkit $AXKIT_REV · Workers $WORKERS each · open-file cache on for both · wrk -t1 -c$CONNS -d${DURATION}s · $ROUNDS rounds · load avg before: $LOAD_BEFORE · busy: ${BUSY:-none}

| measure | axkit | nginx | axkit/nginx |
|---|---|---|---|
| 100 KiB GET, req/s (median) | $AX_KM | $NG_KM | $(ratio "$AX_KM" "$NG_KM") |
| 100 KiB GET, req/s (rounds) | ${AX_K[*]} | ${NG_K[*]} | $K_PAIRS |
| 100 MiB one stream, MiB/s (median) | $(mib "$AX_SM") | $(mib "$NG_SM") | $(ratio "$AX_SM" "$NG_SM") |
| 100 MiB one stream, MiB/s (rounds) | $(for v in "${AX_S[@]}"; do printf '%s ' "$(mib "$v")"; done) | $(for v in "${NG_S[@]}"; do printf '%s ' "$(mib "$v")"; done) | $S_PAIRS |
| $SLOW slow readers: memory growth | $(mib "$AX_G") MiB | $(mib "$NG_G") MiB | |
| 1 KiB req/s unloaded → with slow readers | $AX_U → $AX_L ($(ratio "$AX_L" "$AX_U")) | $NG_U → $NG_L ($(ratio "$NG_L" "$NG_U")) | |

Targets: 100 KiB >= 1.0x nginx: $(ok "$(ratio "$AX_KM" "$NG_KM")" 1.0); 100 MiB stream >= 1.0x: $(ok "$(ratio "$AX_SM" "$NG_SM")" 1.0); growth <= 64 MiB: $(awk -v g="$AX_G" 'BEGIN {print (g <= 64*1048576) ? "met" : "NOT met"}'); loaded >= 0.5x unloaded: $(ok "$(ratio "$AX_L" "$AX_U")" 0.5).
Slow readers axkit: $AX_NOTE
Slow readers nginx: $NG_NOTE
Server logs: axkit $(grep -c . "$TMP/axkit.log" || true) lines, nginx error.log $(grep -c . "$TMP/nginx/error.log" 2>/dev/null || true) lines
SUMMARY
