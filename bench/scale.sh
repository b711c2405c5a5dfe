#!/usr/bin/env bash
# bench/scale.sh — many idle keep-alive connections, AxKit vs nginx: what
# each idle connection costs in user-space memory, the servers' total
# memory while they hold them, and the throughput they keep meanwhile.
#
# For each server in turn (axkit, then nginx; same workers, no access log,
# 120 s keep-alive timeout, one 1 KiB file):
#   1. ROUNDS wrk rounds on /1k.bin with nothing held (requests/s and
#      server CPU µs per request), "before";
#   2. N idle keep-alive connections (each after one GET /1k.bin) from
#      HOLDERS client processes on 127.0.0.2, .3, … (the fd limit is
#      20,000 per process: one holder per 12,500 connections by default);
#      after a 3 s settle, the memory of master + workers: anonymous Pss
#      (Pss_Anon + Pss_Shmem) and RSS, before and after, per connection,
#      and the total RSS while holding (and once the hold is over, after
#      the rounds that follow it: what a spike leaves behind);
#   3. ROUNDS wrk rounds while the N connections are held, "during";
#   4. how many of the N are still open (client side, and `ss` server side),
#      then they are released and, once the server has closed them, ROUNDS
#      more rounds with nothing held, "after".
# The throughput kept is the median of the rounds during the hold over the
# median of all the rounds without it, before and after: on two cores
# shared by the workers, wrk and the holders, the rate drifts over a
# minute and one round differs from the next by ±10 % (wrk's connections
# land on different workers each time), so a hold measured against the
# rounds before it alone can seem to cost, or to gain, a fifth. The same
# for CPU per request, the steadier figure. Every round is logged.
# It prints both servers' figures and the ratios axkit/nginx. The kernel
# spreads the connections unevenly over the workers, so both get about the
# whole 20,000 descriptors a worker: nginx worker_connections 20000, axkit
# MaxConnections 19500 (its default, 7/8 of the limit, would close idle
# connections of a worker that got more than 17,500 to make room).
#
# How to run (root only to apt-get install wrk/nginx):
#     bench/scale.sh                     # 100,000 connections, 8 workers each
#     N=10000 WORKERS=2 HOLDERS=4 bench/scale.sh
#     PROFILE=debug N=2000 bench/scale.sh   # check the script only
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl or ip_local_port_range change; loopback traffic only;
# every wait loop is bounded; the holders give up after 120 s; everything
# lives in one temp dir.

set -euo pipefail

N=${N:-100000}
WORKERS=${WORKERS:-8}           # 100,000 / 8 = 12,500 a worker, under the 20,000 fd limit
HOLDERS=${HOLDERS:-$(( (N + 12499) / 12500 ))}
DURATION=${DURATION:-5}         # seconds per wrk round
ROUNDS=${ROUNDS:-4}             # wrk rounds before, during and after the hold
CONNS=${CONNS:-50}              # wrk connections
THREADS=${THREADS:-1}           # wrk threads

SCRIPT_TAG=scale.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd wrk wrk
need_cmd nginx nginx-light
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"
[ $(( N / HOLDERS )) -le 19000 ] || die "$HOLDERS holders cannot hold $N connections (20,000 fds each)"

build_axkit   # or AXKIT_BIN, a binary built elsewhere: the "before" of an A/B

make_tmp axkit-scale
idle_static_setup "$WORKERS"

start_axkit_nginx /1k.bin
note_load
log "axkit PID $AX_PID, nginx PID $NG_PID, $WORKERS workers each; $N connections over $HOLDERS holders"

# wrk_rounds NAME PID PORT PHASE: ROUNDS rounds, each one's requests/s and
# server CPU µs per request appended to W_RPS and W_CPU and logged
W_RPS=(); W_CPU=()
wrk_rounds() {
    local name=$1 pid=$2 port=$3 phase=$4 r t rps cpu
    for r in $(seq "$ROUNDS"); do
        kill -0 "$pid" 2>/dev/null || die "$name died"
        t=$(cpu_ticks "$pid" $(workers_of "$pid"))
        rps=$(run_wrk "$name" "$port" "$DURATION" /1k.bin)
        cpu=$(cpu_us_per_req "$t" "$pid")
        W_RPS+=("$rps"); W_CPU+=("$cpu")
        log "$name $phase round $r: $rps req/s, $cpu µs/request"
    done
}

# take_medians RPS_VAR CPU_VAR: the medians of W_RPS and W_CPU into the
# two variables; empties both lists
take_medians() {
    printf -v "$1" '%s' "$(median "${W_RPS[@]}")"
    printf -v "$2" '%s' "$(median "${W_CPU[@]}")"
    W_RPS=(); W_CPU=()
}

# scale_test NAME PID PORT -> one summary row's figures in S_* variables
scale_test() {
    local name=$1 pid=$2 port=$3 b_pss b_rss a_pss a_rss r_pss r_rss est
    local base_rps=() base_cpu=() i
    run_wrk "$name" "$port" 2 /1k.bin >/dev/null   # warm-up
    wrk_rounds "$name" "$pid" "$port" before
    base_rps=("${W_RPS[@]}"); base_cpu=("${W_CPU[@]}")
    take_medians S_BEFORE S_BEFORE_CPU
    sleep 1
    read -r b_pss b_rss < <(mem_of "$pid")
    local t0=$SECONDS
    hold_idle_start "$name" "$port" "$N" "$HOLDERS" 120
    S_RAMP=$(( SECONDS - t0 ))
    sleep 3   # let memory settle (and axkit park the last ones)
    read -r a_pss a_rss < <(mem_of "$pid")
    wrk_rounds "$name" "$pid" "$port" during
    take_medians S_HOLD S_HOLD_CPU
    est=$(established "$port")
    hold_idle_end "$name"
    kill -0 "$pid" 2>/dev/null || die "$name master died during the hold"
    # The server closes its ends as the holders' FINs arrive: wait for that
    # (bounded; its sockets leave ESTABLISHED at once, CLOSE-WAIT only when
    # it closes them), so that "after" measures a server holding nothing.
    for i in $(seq 300); do
        [ "$(ss -Htn "( sport = :$port )" | wc -l)" -le "$CONNS" ] && break
        sleep 0.1
    done
    wrk_rounds "$name" "$pid" "$port" after
    read -r r_pss r_rss < <(mem_of "$pid")
    base_rps+=("${W_RPS[@]}"); base_cpu+=("${W_CPU[@]}")
    take_medians S_AFTER S_AFTER_CPU
    W_RPS=("${base_rps[@]}"); W_CPU=("${base_cpu[@]}")
    take_medians S_BASE S_BASE_CPU
    S_OK=$HOLD_OK
    S_PSS=$(( HOLD_OK > 0 ? (a_pss - b_pss) / HOLD_OK : 0 ))
    S_RSS=$(( HOLD_OK > 0 ? (a_rss - b_rss) / HOLD_OK : 0 ))
    S_TOTAL_MIB=$(awk -v b="$a_rss" 'BEGIN {printf "%.1f", b / 1048576}')
    S_AFTER_MIB=$(awk -v b="$r_rss" 'BEGIN {printf "%.1f", b / 1048576}')
    S_KEPT=$(ratio "$S_HOLD" "$S_BASE")
    S_CPU_KEPT=$(ratio "$S_BASE_CPU" "$S_HOLD_CPU")
    S_NOTE="held $HOLD_OK/$N (failed $HOLD_FAILED) in ${S_RAMP}s; server-side established during wrk $est; still open at the end $HOLD_OPEN, closed $HOLD_CLOSED"
    log "$name: $S_NOTE; Pss $b_pss -> $a_pss -> $r_pss, RSS $b_rss -> $a_rss -> $r_rss (before, holding, after); req/s before $S_BEFORE, during $S_HOLD, after $S_AFTER"
}

scale_test axkit "$AX_PID" "$AX_PORT"
AX=("$S_PSS" "$S_RSS" "$S_TOTAL_MIB" "$S_BASE" "$S_HOLD" "$S_KEPT" "$S_BASE_CPU" "$S_HOLD_CPU"
    "$S_BEFORE" "$S_AFTER" "$S_BEFORE_CPU" "$S_AFTER_CPU" "$S_CPU_KEPT" "$S_AFTER_MIB")
AX_NOTE=$S_NOTE
sleep 2
scale_test nginx "$NG_PID" "$NG_PORT"
NG=("$S_PSS" "$S_RSS" "$S_TOTAL_MIB" "$S_BASE" "$S_HOLD" "$S_KEPT" "$S_BASE_CPU" "$S_HOLD_CPU"
    "$S_BEFORE" "$S_AFTER" "$S_BEFORE_CPU" "$S_AFTER_CPU" "$S_CPU_KEPT" "$S_AFTER_MIB")
NG_NOTE=$S_NOTE

ax_log_lines=$(grep -c . "$TMP/axkit.log" || true)
cat <<EOF

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · $("$NGINX" -v 2>&1 | sed 's/.*: //')
axkit: $AXKIT_REV · Workers $WORKERS each · $N idle keep-alive connections from $HOLDERS holders · wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds each before, during and after the hold (medians) · load avg before: $LOAD_BEFORE · busy at start: ${BUSY:-none}

| $N idle connections | axkit | nginx | axkit/nginx |
|---|---|---|---|
| user-space memory per connection (Pss anon) | ${AX[0]} B | ${NG[0]} B | $(ratio "${AX[0]}" "${NG[0]}") |
| RSS per connection | ${AX[1]} B | ${NG[1]} B | $(ratio "${AX[1]}" "${NG[1]}") |
| total RSS, master + workers, while holding | ${AX[2]} MiB | ${NG[2]} MiB | $(ratio "${AX[2]}" "${NG[2]}") |
| total RSS once the hold is over (after the rounds after it) | ${AX[13]} MiB | ${NG[13]} MiB | $(ratio "${AX[13]}" "${NG[13]}") |
| requests/s without the hold (before and after) | ${AX[3]} | ${NG[3]} | $(ratio "${AX[3]}" "${NG[3]}") |
| requests/s before / after the hold | ${AX[8]} / ${AX[9]} | ${NG[8]} / ${NG[9]} | |
| requests/s during the hold | ${AX[4]} | ${NG[4]} | $(ratio "${AX[4]}" "${NG[4]}") |
| throughput kept (during / without) | ${AX[5]} | ${NG[5]} | |
| server CPU µs/request without / during | ${AX[6]} / ${AX[7]} | ${NG[6]} / ${NG[7]} | $(ratio "${AX[6]}" "${NG[6]}") / $(ratio "${AX[7]}" "${NG[7]}") |
| server CPU µs/request before / after | ${AX[10]} / ${AX[11]} | ${NG[10]} / ${NG[11]} | |
| CPU efficiency kept (µs/request without / during) | ${AX[12]} | ${NG[12]} | |

axkit: $AX_NOTE
nginx: $NG_NOTE
wrk anomalies axkit:
$(anoms axkit)
wrk anomalies nginx:
$(anoms nginx)
axkit log: $ax_log_lines lines
EOF
if [ "$ax_log_lines" -gt 0 ]; then tail -5 "$TMP/axkit.log" | awk '{print "    " $0}'; fi
