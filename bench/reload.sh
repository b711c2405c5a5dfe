#!/usr/bin/env bash
# bench/reload.sh — errors seen by a client while the server reloads or
# upgrades its binary, AxKit and nginx side by side.
#
# What it measures: wrk (keep-alive, CONNS connections) on a 1 KiB static
# file while
#   1. axkit gets RELOADS SIGHUPs, INTERVAL seconds apart (each sent once
#      the previous reload has finished: "configuration reloaded" in its
#      log);
#   2. nginx gets RELOADS SIGHUPs, INTERVAL seconds apart;
#   3. axkit gets one binary upgrade: SIGUSR2 (a new master on the same
#      sockets), then, once the new master has written the PidFile,
#      SIGQUIT to the old one, which drains.
# For each: wrk's socket errors (connect, read, write, timeout) and non-2xx
# responses, which should all be 0 for axkit (docs/deploy.md, "Reloads and
# upgrades").
#
# How to run (from anywhere; needs root only to apt-get install wrk/nginx):
#     bench/reload.sh
#     RELOADS=10 INTERVAL=0.5 CONNS=50 bench/reload.sh
#     AXKIT=target/debug/axkit bench/reload.sh     # a binary already built
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT, the new master of the upgrade included); loopback traffic only;
# every wait loop is bounded; everything lives in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
RELOADS=${RELOADS:-10}
INTERVAL=${INTERVAL:-0.5}     # seconds between two signals
CONNS=${CONNS:-50}            # wrk connections
THREADS=${THREADS:-1}         # wrk threads

SCRIPT_TAG=reload.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd wrk wrk
need_cmd nginx nginx-light
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v curl >/dev/null || die "curl is required"

if [ -z "${AXKIT:-}" ]; then
    build_release axkit -p axkit-cli
    AXKIT=$ROOT/target/release/axkit
fi
AXKIT=$(realpath "$AXKIT")

make_tmp axkit-reload
mkdir -p "$TMP/www" "$TMP/nginx"
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
pick_ports AX_PORT NG_PORT

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
PidFile $TMP/axkit.pid
$(axkit_static_server "$AX_PORT")
</Server>
EOF

cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$WORKERS" 20000 20000)
http {
    access_log off;
    types { application/octet-stream bin; }
    client_body_temp_path $TMP/nginx/client_body;
    server {
        listen 127.0.0.1:$NG_PORT;
        root $TMP/www;
    }
}
EOF

STARTUP_LOGS=("$TMP/axkit.log" "$TMP/nginx/error.log")
start_axkit_nginx /1k.bin
log "axkit PID $AX_PID port $AX_PORT, nginx PID $NG_PID port $NG_PORT ($WORKERS workers each)"

# wrk_bg NAME PORT SECS: wrk in the background (its req/s to $TMP/rps-NAME),
# PID in WRK_PID.
wrk_bg() {
    : >"$TMP/anomalies-$1.txt"
    run_wrk "$1" "$2" "$3" /1k.bin >"$TMP/rps-$1" &
    WRK_PID=$!
    sleep 1   # wrk's connections are open and busy before the first signal
}
# count_in FILE TEXT: how many lines of FILE contain TEXT.
count_in() { grep -c -- "$2" "$1" 2>/dev/null || true; }

SECS=$(awk -v n="$RELOADS" -v i="$INTERVAL" 'BEGIN {printf "%d", n * i + 4}')

note_load
log "1. axkit: $RELOADS SIGHUPs under wrk"
wrk_bg axkit-reload "$AX_PORT" "$SECS"
for n in $(seq "$RELOADS"); do
    kill -HUP "$AX_PID"
    for i in $(seq 300); do
        [ "$(count_in "$TMP/axkit.log" "configuration reloaded")" -ge "$n" ] && break
        sleep 0.1
    done
    [ "$(count_in "$TMP/axkit.log" "configuration reloaded")" -ge "$n" ] || die "axkit reload $n did not finish"
    sleep "$INTERVAL"
done
wait "$WRK_PID"

log "2. nginx: $RELOADS SIGHUPs under wrk"
wrk_bg nginx-reload "$NG_PORT" "$SECS"
for n in $(seq "$RELOADS"); do
    kill -HUP "$NG_PID"
    sleep "$INTERVAL"
done
wait "$WRK_PID"

log "3. axkit: a binary upgrade (SIGUSR2, then SIGQUIT to the old master) under wrk"
wrk_bg axkit-upgrade "$AX_PORT" 8
kill -USR2 "$AX_PID"
NEW_PID=""
for i in $(seq 300); do
    p=$(cat "$TMP/axkit.pid" 2>/dev/null || true)
    if [ -n "$p" ] && [ "$p" != "$AX_PID" ]; then NEW_PID=$p; break; fi
    sleep 0.1
done
[ -n "$NEW_PID" ] || die "no new master after SIGUSR2"
STARTED_PIDS+=("$NEW_PID")
log "   new master PID $NEW_PID workers: $(workers_of "$NEW_PID")"
sleep 1
kill -QUIT "$AX_PID"
for i in $(seq 300); do kill -0 "$AX_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$AX_PID" 2>/dev/null && die "the old master did not exit after SIGQUIT"
wait "$AX_PID" 2>/dev/null || true
wait "$WRK_PID"
curl -fs "http://127.0.0.1:$AX_PORT/1k.bin" >/dev/null || die "nothing serves after the upgrade"

cat <<EOF

== bench/reload.sh: $RELOADS reloads $INTERVAL s apart, wrk -c$CONNS -t$THREADS, $WORKERS workers each
   load before: $LOAD_BEFORE${BUSY:+; busy: $BUSY}
   axkit ($AXKIT), reloads:  $(cat "$TMP/rps-axkit-reload") req/s; errors and non-2xx:
$(anoms axkit-reload)
   nginx ($("$NGINX" -v 2>&1 | sed 's/.*: //')), reloads:  $(cat "$TMP/rps-nginx-reload") req/s; errors and non-2xx:
$(anoms nginx-reload)
   axkit, binary upgrade:  $(cat "$TMP/rps-axkit-upgrade") req/s; errors and non-2xx:
$(anoms axkit-upgrade)
EOF
