#!/usr/bin/env bash
# bench/base_rss.sh — what the processes of an idle static-file server
# cost before any connection: the RSS of master + workers, axkit against
# nginx, split as /proc/PID/status does (VmRSS = RssFile + RssAnon +
# RssShmem). This base is most of the total that bench/scale.sh measures
# at 100,000 idle connections.
#
# Each server (WORKERS workers, the static config of scale.sh) is started,
# answers one GET /1k.bin, and after SETTLE seconds its processes are read;
# then it is stopped before the next starts. With AXKIT_BEFORE=PATH (a
# binary built elsewhere, e.g. main's) that one is measured too, first.
#
# How to run (root only to apt-get install nginx):
#     bench/base_rss.sh
#     AXKIT_BEFORE=/path/to/old/axkit bench/base_rss.sh
#     PROFILE=debug WORKERS=2 bench/base_rss.sh     # check the script only
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); loopback only; every wait is bounded; one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-8}
SETTLE=${SETTLE:-2}   # seconds after startup for the workers to finish theirs

SCRIPT_TAG=base_rss.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd nginx nginx-light
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v curl >/dev/null || die "curl is required"
build_axkit

make_tmp axkit-base-rss
idle_static_setup "$WORKERS"

# "VmRSS RssFile RssAnon RssShmem" in KiB over PID and its children.
status_kib() {
    local p
    for p in "$1" $(workers_of "$1"); do
        awk '/^(VmRSS|RssFile|RssAnon|RssShmem):/ {print $1, $2}' "/proc/$p/status"
    done | awk '{s[$1] += $2} END {print s["VmRSS:"] + 0, s["RssFile:"] + 0, s["RssAnon:"] + 0, s["RssShmem:"] + 0}'
}

# Wait (up to 10 s) for PID's WORKERS children.
wait_workers() {
    local i
    for i in $(seq 100); do
        [ "$(workers_of "$1" | wc -w)" -ge "$WORKERS" ] && return 0
        sleep 0.1
    done
    die "$2 did not start $WORKERS workers within 10 s"
}

# measure NAME PID PORT: one line of the table, the total in TOTAL_KIB.
measure() {
    wait_up "$1" "$2" "$3" /1k.bin
    wait_workers "$2" "$1"
    sleep "$SETTLE"
    local rss file anon shmem
    read -r rss file anon shmem < <(status_kib "$2")
    TOTAL_KIB=$rss
    printf '%-24s %9.1f %9.1f %9.1f %9.1f %9.2f\n' "$1" \
        "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" "$(awk -v k="$file" 'BEGIN {print k / 1024}')" \
        "$(awk -v k="$anon" 'BEGIN {print k / 1024}')" "$(awk -v k="$shmem" 'BEGIN {print k / 1024}')" \
        "$(awk -v k="$rss" -v n=$((WORKERS + 1)) 'BEGIN {print k / 1024 / n}')"
}

run_axkit() {
    must_pass "axkit rejected its config" "$2" --check -c "$TMP/axkit.conf"
    start_bg AX_PID "$TMP/axkit-$1.log" "$2" -c "$TMP/axkit.conf"
    STARTUP_LOGS="$TMP/axkit-$1.log"
    measure "axkit $1" "$AX_PID" "$AX_PORT"
    stop_pid "$AX_PID"
}

note_load
echo "axkit: $AXKIT_REV · Workers $WORKERS each · idle, after one GET · load avg before: $LOAD_BEFORE · busy at start: ${BUSY:-none}"
printf '%-24s %9s %9s %9s %9s %9s\n' "MiB, master + workers" VmRSS RssFile RssAnon RssShmem "per proc"
if [ -n "${AXKIT_BEFORE:-}" ]; then
    run_axkit before "$AXKIT_BEFORE"
    BEFORE_KIB=$TOTAL_KIB
fi
run_axkit "$AXKIT_REV" "$AXKIT"
AX_KIB=$TOTAL_KIB
nginx_check
nginx_start
STARTUP_LOGS="$TMP/nginx/error.log"
measure nginx "$NG_PID" "$NG_PORT"
echo "axkit/nginx VmRSS: $(ratio "$AX_KIB" "$TOTAL_KIB")"
if [ -n "${BEFORE_KIB:-}" ]; then
    echo "axkit after/before VmRSS: $(ratio "$AX_KIB" "$BEFORE_KIB") ($(( (BEFORE_KIB - AX_KIB) / 1024 )) MiB less)"
fi
