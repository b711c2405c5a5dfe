#!/usr/bin/env bash
# bench/static_large.sh — AxKit vs nginx, side by side, on large static
# files, each against its target:
#
#   1. 100 KiB file: requests/s over keep-alive (wrk, ROUNDS alternating
#      rounds, medians and ratio axkit/nginx).           target >= 1.0x
#   2. 100 MiB file, one stream: throughput of a single curl download to
#      /dev/null (STREAMS alternating rounds each, default ROUNDS; medians,
#      ratio), and the server CPU time each download cost (all threads of
#      master + workers, from /proc/*/task/*/schedstat).  target >= 1.0x
#      h2o (num-threads WORKERS) takes part here too, as the third peer
#      (#15's target is >= 1.0x h2o); H2O=0 leaves it out.
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
#     STREAM_ONLY=1 STREAMS=15 bench/static_large.sh   # only part 2
#     STREAM_ONLY=1 PIN=1 bench/static_large.sh        # servers on CPU 0, curl on CPU 1
#
# PIN=1 (part 2 only) pins both servers' processes to CPU 0 and curl to
# CPU 1 with taskset: the scheduler then cannot put the client and the
# server on one core in some rounds and not in others, which otherwise
# makes single downloads swing by ±40 %.
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
STREAMS=${STREAMS:-$ROUNDS}
STREAM_ONLY=${STREAM_ONLY:-0}
PIN=${PIN:-0}
H2O=${H2O:-1}

SCRIPT_TAG=static_large.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
AXKIT=$ROOT/target/release/axkit

need_cmd wrk wrk
need_cmd nginx nginx-light
need_cmd curl curl
[ "$H2O" = 1 ] && need_cmd h2o h2o
install_needed -q
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
build_release axkit --bin axkit

make_tmp axkit-bench-large   # cleanup on EXIT: stop STARTED_PIDS by PID, remove TMP
mkdir -p "$TMP/www" "$TMP/nginx"
head -c $((100 * 1024)) /dev/urandom >"$TMP/www/100k.bin"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$TMP/www/100m.bin"
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"

pick_ports AX_PORT NG_PORT H2_PORT

cat >"$TMP/axkit.conf" <<CONF
Workers $WORKERS
OpenFileCache 10000 1s
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
SendTimeout 120s
$(axkit_static_server "$AX_PORT")
</Server>
CONF
cat >"$TMP/nginx/nginx.conf" <<CONF
$(nginx_main "$WORKERS" 20000 20000)
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
start_axkit_nginx /1k.bin
PEERS=("axkit $AX_PORT" "nginx $NG_PORT")
if [ "$H2O" = 1 ]; then
    h2o_static_start "$H2_PORT" "$WORKERS"
    PEERS+=("h2o $H2_PORT")
fi
for s in "${PEERS[@]}"; do
    set -- $s
    for f in 100k.bin 100m.bin; do
        curl -fsS "http://127.0.0.1:$2/$f" | cmp -s - "$TMP/www/$f" || die "$1 served a different $f"
    done
done

wrk_rps() {   # wrk_rps PORT PATH SECONDS CONNS -> req/s
    local THREADS=1 CONNS=$4
    run_wrk wrk "$1" "$3" "$2"
}
note_load

# ---- 1. 100 KiB req/s -------------------------------------------------------
AX_K=(); NG_K=()
if [ "$STREAM_ONLY" != 1 ]; then
    log "100 KiB: warm-up"
    wrk_rps "$AX_PORT" /100k.bin 3 "$CONNS" >/dev/null; wrk_rps "$NG_PORT" /100k.bin 3 "$CONNS" >/dev/null
    for r in $(seq "$ROUNDS"); do
        a=$(wrk_rps "$AX_PORT" /100k.bin "$DURATION" "$CONNS"); AX_K+=("$a")
        n=$(wrk_rps "$NG_PORT" /100k.bin "$DURATION" "$CONNS"); NG_K+=("$n")
        log "100 KiB round $r: axkit $a req/s, nginx $n req/s"
    done
    AX_KM=$(median "${AX_K[@]}"); NG_KM=$(median "${NG_K[@]}")
fi

# ---- 2. 100 MiB single stream -----------------------------------------------
cpu_ns() {   # CPU time (ns) of every thread of a master and its workers
    local p t s=0
    for p in "$1" $(workers_of "$1"); do
        for t in /proc/"$p"/task/*/schedstat; do
            s=$(( s + $(cut -d' ' -f1 "$t" 2>/dev/null || echo 0) ))
        done
    done
    echo "$s"
}
CURL=(curl)
if [ "$PIN" = 1 ]; then
    need_cmd taskset util-linux
    for p in "$AX_PID" $(workers_of "$AX_PID") "$NG_PID" $(workers_of "$NG_PID") ${H2O_PID:-}; do
        taskset -apc 0 "$p" >/dev/null
    done
    CURL=(taskset -c 1 curl)
fi
one_stream() {   # one_stream PORT PID -> "bytes/s cpu_ms"
    local before speed
    before=$(cpu_ns "$2")
    speed=$("${CURL[@]}" -fsS -o /dev/null -w '%{speed_download}' --max-time 120 "http://127.0.0.1:$1/100m.bin")
    echo "$speed $(( ($(cpu_ns "$2") - before) / 1000000 ))"
}
AX_S=(); NG_S=(); AX_C=(); NG_C=(); H2_S=(); H2_C=()
for r in $(seq "$STREAMS"); do
    read -r a ac < <(one_stream "$AX_PORT" "$AX_PID"); AX_S+=("$a"); AX_C+=("$ac")
    read -r n nc < <(one_stream "$NG_PORT" "$NG_PID"); NG_S+=("$n"); NG_C+=("$nc")
    log "100 MiB round $r: axkit $(( ${a%.*} / 1048576 )) MiB/s (${ac} ms CPU), nginx $(( ${n%.*} / 1048576 )) MiB/s (${nc} ms CPU)"
    if [ "$H2O" = 1 ]; then
        read -r h hc < <(one_stream "$H2_PORT" "$H2O_PID"); H2_S+=("$h"); H2_C+=("$hc")
        log "100 MiB round $r: h2o $(( ${h%.*} / 1048576 )) MiB/s (${hc} ms CPU)"
    fi
done
AX_SM=$(median "${AX_S[@]}"); NG_SM=$(median "${NG_S[@]}")
AX_CM=$(median "${AX_C[@]}"); NG_CM=$(median "${NG_C[@]}")
# Each round's ratio (back-to-back runs see similar background load) and
# their median: a view that resists load drifting between rounds.
S_PAIRS=$(pair_ratios "${AX_S[*]}" "${NG_S[*]}")
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b/1048576}'; }
STREAM_ROWS="| 100 MiB one stream, MiB/s (median of $STREAMS) | $(mib "$AX_SM") | $(mib "$NG_SM") | $(ratio "$AX_SM" "$NG_SM") |
| 100 MiB one stream, MiB/s (rounds) | $(for v in "${AX_S[@]}"; do printf '%s ' "$(mib "$v")"; done) | $(for v in "${NG_S[@]}"; do printf '%s ' "$(mib "$v")"; done) | $S_PAIRS |
| 100 MiB one stream, server CPU ms (median) | $AX_CM | $NG_CM | $(ratio "$AX_CM" "$NG_CM") |"
if [ "$H2O" = 1 ]; then
    H2_SM=$(median "${H2_S[@]}"); H2_CM=$(median "${H2_C[@]}")
    STREAM_ROWS+="
| 100 MiB one stream against h2o $(h2o --version | head -1 | awk '{print $3}'): MiB/s (median) axkit · h2o | $(mib "$AX_SM") | $(mib "$H2_SM") | axkit/h2o $(ratio "$AX_SM" "$H2_SM") |
| 100 MiB one stream, MiB/s (rounds) axkit/h2o | | | $(pair_ratios "${AX_S[*]}" "${H2_S[*]}") |
| 100 MiB one stream, server CPU ms (median) axkit · h2o | $AX_CM | $H2_CM | axkit/h2o $(ratio "$AX_CM" "$H2_CM") |"
fi
if [ "$STREAM_ONLY" = 1 ]; then
    cat <<SUMMARY

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$NGINX" -v 2>&1 | sed 's/.*: //') · axkit $AXKIT_REV · Workers $WORKERS each · $STREAMS alternating downloads each$([ "$PIN" = 1 ] && echo ", servers on CPU 0, curl on CPU 1") · load avg before: $LOAD_BEFORE · busy: ${BUSY:-none}

| measure | axkit | nginx | axkit/nginx |
|---|---|---|---|
$STREAM_ROWS
SUMMARY
    exit 0
fi
K_PAIRS=$(pair_ratios "${AX_K[*]}" "${NG_K[*]}")

# ---- 3. slow clients ---------------------------------------------------------
anon_of() {   # anonymous Pss (bytes) of a master and its workers
    local pss rss
    read -r pss rss < <(mem_kib "$1" $(workers_of "$1"))
    echo $(( pss * 1024 ))
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
        hp+=($!); STARTED_PIDS+=($!)
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
$STREAM_ROWS
| $SLOW slow readers: memory growth | $(mib "$AX_G") MiB | $(mib "$NG_G") MiB | |
| 1 KiB req/s unloaded → with slow readers | $AX_U → $AX_L ($(ratio "$AX_L" "$AX_U")) | $NG_U → $NG_L ($(ratio "$NG_L" "$NG_U")) | |

Targets: 100 KiB >= 1.0x nginx: $(ok "$(ratio "$AX_KM" "$NG_KM")" 1.0); 100 MiB stream >= 1.0x: $(ok "$(ratio "$AX_SM" "$NG_SM")" 1.0); growth <= 64 MiB: $(awk -v g="$AX_G" 'BEGIN {print (g <= 64*1048576) ? "met" : "NOT met"}'); loaded >= 0.5x unloaded: $(ok "$(ratio "$AX_L" "$AX_U")" 0.5).
Slow readers axkit: $AX_NOTE
Slow readers nginx: $NG_NOTE
Server logs: axkit $(grep -c . "$TMP/axkit.log" || true) lines, nginx error.log $(grep -c . "$TMP/nginx/error.log" 2>/dev/null || true) lines
SUMMARY
