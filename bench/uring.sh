#!/usr/bin/env bash
# bench/uring.sh — io_uring against epoll for the 1 KiB keep-alive path
# (issue #15 item 2: keep an io_uring worker loop only if it cuts server CPU
# per request by at least 10 %).
#
# What it measures: bench/uring/ (a standalone one-thread server, not part
# of the workspace) answers every request with AxKit's 1 KiB static answer
# in one of its MODES (see the doc comment of bench/uring/src/main.rs):
# epoll, and io_uring with a plain recv, with DEFER_TASKRUN, with multishot
# recv into provided buffers, and with direct descriptors. Every mode runs
# at once on its own random loopback port; wrk (-t$THREADS) drives each in
# turn, for each connection count in CONNS_LIST, ROUNDS rounds alternating
# between modes. For each it prints requests/s and the server's CPU per
# request (user+sys of the process, all its threads, from /proc/PID/stat,
# over the requests wrk counted; user and sys apart too), medians, and each
# mode's ratio to epoll (per round, paired, and of the medians). AxKit itself
# (bench/static.sh's 1 KiB setup with Workers 1 and its open-file cache) is a
# reference line unless AXKIT=0. With STRACE=1 (default) a short extra run of
# each mode under `strace -c -f` gives the syscalls per request.
#
# How to run:
#     bench/uring.sh
#     ROUNDS=5 DURATION=5 CONNS_LIST="50 128" bench/uring.sh
#     AXKIT_BIN=path/to/axkit bench/uring.sh   # AxKit built elsewhere
#     AXKIT=0 STRACE=0 MODES="epoll uring-ms" bench/uring.sh
#
# The load generator shares the cores with the servers and other work on the
# machine: compare CPU per request and ratios, not absolute requests/s.
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback only; every loop is bounded.

set -euo pipefail

MODES=${MODES:-epoll uring uring-defer uring-ms uring-ms-fixed}
CONNS_LIST=${CONNS_LIST:-50 128}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
THREADS=${THREADS:-1}
AXKIT_REF=${AXKIT:-1}
STRACE=${STRACE:-1}

SCRIPT_TAG=uring.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd wrk wrk
[ "$STRACE" = 1 ] && need_cmd strace strace
install_needed
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"

log "building bench/uring (release, its own target dir)"
(cd "$BENCH_DIR/uring" && CARGO_INCREMENTAL=0 cargo build --release -q) || die "bench/uring did not build"
UB=$BENCH_DIR/uring/target/release/uring-bench
if [ "$AXKIT_REF" = 1 ]; then
    build_axkit
fi

make_tmp axkit-uring   # cleanup on EXIT: stop STARTED_PIDS by PID, remove TMP

# ---- servers ------------------------------------------------------------------

declare -A PID PORT
NAMES=()
for m in $MODES; do
    pick_ports UPORT
    STARTUP_LOGS=("$TMP/$m.log")
    start_bg "PID[$m]" "$TMP/$m.log" "$UB" "$m" "$UPORT"
    PORT[$m]=$UPORT
    wait_up "$m" "${PID[$m]}" "$UPORT" /1k.bin
    NAMES+=("$m")
done
if [ "$AXKIT_REF" = 1 ]; then
    mkdir -p "$TMP/www"
    python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
    pick_ports AX_PORT
    cat >"$TMP/axkit.conf" <<EOF
Workers 1
OpenFileCache 10000 1s
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
$(axkit_static_server "$AX_PORT")
</Server>
EOF
    must_pass "axkit rejected its config" "$AXKIT" --check -c "$TMP/axkit.conf"
    STARTUP_LOGS=("$TMP/axkit.log")
    start_bg "PID[axkit]" "$TMP/axkit.log" "$AXKIT" -c "$TMP/axkit.conf"
    PORT[axkit]=$AX_PORT
    wait_up axkit "${PID[axkit]}" "$AX_PORT" /1k.bin
    NAMES+=(axkit)
fi

# Same answer from all: the body and the head's field names and sizes.
for n in "${NAMES[@]}"; do
    hdr=$(curl -fsS -D - -o "$TMP/body" "http://127.0.0.1:${PORT[$n]}/1k.bin" | tr -d '\r' | sed -E 's/: .*//' | tr '\n' ' ')
    log "$n PID ${PID[$n]} port ${PORT[$n]}: body $(stat -c %s "$TMP/body") B; head fields: $hdr"
done

# user_sys_ticks PID -> "utime stime" summed over PID and its children
user_sys_ticks() {
    local p u=0 s=0 a b
    for p in "$1" $(workers_of "$1"); do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
        u=$(( u + a )); s=$(( s + b ))
    done
    echo "$u $s"
}
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

# ---- rounds -------------------------------------------------------------------

note_load
declare -A RPS CPU USR SYS
for CONNS in $CONNS_LIST; do
    log "wrk -t$THREADS -c$CONNS: warm-up (2 s each)"
    for n in "${NAMES[@]}"; do run_wrk "$n" "${PORT[$n]}" 2 /1k.bin >/dev/null; done
    for r in $(seq "$ROUNDS"); do
        line="round $r (c$CONNS, load $(cut -d' ' -f1 /proc/loadavg)):"
        for n in "${NAMES[@]}"; do
            kill -0 "${PID[$n]}" 2>/dev/null || die "$n (PID ${PID[$n]}) died"
            read -r u0 s0 < <(user_sys_ticks "${PID[$n]}")
            rps=$(run_wrk "$n" "${PORT[$n]}" "$DURATION" /1k.bin)
            read -r u1 s1 < <(user_sys_ticks "${PID[$n]}")
            req=$(cat "$TMP/last-count")
            read -r cu cs < <(awk -v u=$(( u1 - u0 )) -v s=$(( s1 - s0 )) -v t="$TICK_US" -v q="$req" \
                'BEGIN {printf "%.2f %.2f\n", u * t / q, s * t / q}')
            RPS[$n,$CONNS]+="$rps "
            USR[$n,$CONNS]+="$cu "
            SYS[$n,$CONNS]+="$cs "
            CPU[$n,$CONNS]+="$(awk -v a="$cu" -v b="$cs" 'BEGIN {printf "%.2f", a + b}') "
            line+=" $n ${rps%.*} req/s $(awk -v a="$cu" -v b="$cs" 'BEGIN {printf "%.2f", a + b}') µs;"
        done
        log "$line"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- syscalls per request (strace -c -f, short run each) -------------------------

SYSCALLS=()
if [ "$STRACE" = 1 ]; then
    CONNS=50
    for n in "${NAMES[@]}"; do
        [ "$n" = axkit ] && target=$(workers_of "${PID[axkit]}" | awk '{print $1}') || target=${PID[$n]}
        start_bg ST "$TMP/strace-$n.log" strace -c -f -p "$target" -o "$TMP/strace-$n.txt"
        for i in $(seq 50); do grep -q 'attached' "$TMP/strace-$n.log" 2>/dev/null && break; sleep 0.1; done
        run_wrk "$n" "${PORT[$n]}" 2 /1k.bin >/dev/null
        kill -INT "$ST" 2>/dev/null || true
        for i in $(seq 50); do [ -s "$TMP/strace-$n.txt" ] && break; sleep 0.1; done
        stop_pid "$ST"
        req=$(cat "$TMP/last-count")
        SYSCALLS+=("$n: $(awk -v q="$req" '$1 ~ /^[0-9.]+$/ && $NF != "total" {printf "%s %.2f, ", $NF, $4 / q}' "$TMP/strace-$n.txt" | sed 's/, $//') per request ($req requests under strace)")
    done
fi

# ---- summary ---------------------------------------------------------------------

BASE=${NAMES[0]}
cat <<EOF

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo n/a) · $(wrk -v 2>&1 | head -1 | awk '{print "wrk " $2}') -t$THREADS · ${DURATION}s rounds, $ROUNDS per connection count, modes alternating · tree $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)$([ "$AXKIT_REF" = 1 ] && echo " · axkit: $AXKIT_REV, Workers 1")
load avg before: $LOAD_BEFORE · after: $LOAD_AFTER · other busy processes at start: ${BUSY:-none}
EOF
for CONNS in $CONNS_LIST; do
    echo
    echo "| c$CONNS | req/s median (rounds) | CPU µs/req median (rounds) | user · sys µs/req (medians) | CPU / $BASE (median; paired rounds) | req/s / $BASE |"
    echo "|---|---|---|---|---|---|"
    bc=$(median ${CPU[$BASE,$CONNS]}); br=$(median ${RPS[$BASE,$CONNS]})
    for n in "${NAMES[@]}"; do
        c=$(median ${CPU[$n,$CONNS]}); rr=$(median ${RPS[$n,$CONNS]})
        echo "| $n | ${rr%.*} (${RPS[$n,$CONNS]% }) | $c (${CPU[$n,$CONNS]% }) | $(median ${USR[$n,$CONNS]}) · $(median ${SYS[$n,$CONNS]}) | $(ratio "$c" "$bc") · paired $(pair_ratios "${CPU[$n,$CONNS]}" "${CPU[$BASE,$CONNS]}") | $(ratio "$rr" "$br") |"
    done
done
if [ ${#SYSCALLS[@]} -gt 0 ]; then
    echo
    echo "Syscalls per request (strace -c -f, wrk -c50 for 2 s; strace slows the server, the counts stand):"
    printf -- '- %s\n' "${SYSCALLS[@]}"
fi
for n in "${NAMES[@]}"; do
    [ -s "$TMP/anomalies-$n.txt" ] && { echo "wrk anomalies $n:"; anoms "$n"; }
done
exit 0
