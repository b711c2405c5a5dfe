#!/usr/bin/env bash
# bench/metrics.sh — what the metrics cost: server CPU per request for a
# 1 KiB static file, with the `stats` plugin loaded, without and with a
# scraper fetching /metrics every 100 ms, and the ratio (target: <= 1.03,
# at most 3 % more CPU per request while scraped). A third run without the
# plugin (no metrics region: the core's counting is then one test per
# request) gives the cost of counting itself.
#
# CPU per request = (user + system ticks of master and workers over a wrk
# round) / requests in it: steadier than requests/s on a machine whose
# cores the load generator shares. The scrapes are counted in the requests
# (they are requests the server answers; a few dozen against hundreds of
# thousands).
#
# How to run (from anywhere; needs wrk, curl and python3):
#     bench/metrics.sh                        # release build, the figures
#     PROFILE=debug DURATION=2 ROUNDS=1 bench/metrics.sh   # a smoke run
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); loopback only; every wait is bounded; one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-10}      # seconds per wrk round
ROUNDS=${ROUNDS:-3}           # rounds per setting, alternating
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
PROFILE=${PROFILE:-release}   # debug: a smoke run of the script itself
SCRAPE_EVERY=${SCRAPE_EVERY:-0.1}

SCRIPT_TAG=metrics.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need_cmd wrk wrk
install_needed
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"

build_axkit

make_tmp axkit-metrics
mkdir -p "$TMP/www"
python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
pick_ports STATS_PORT PLAIN_PORT

# stats_conf PORT WITH_STATS -> an axkit config
stats_conf() {
    echo "Workers $WORKERS"
    echo "OpenFileCache 10000 1s"
    echo "KeepAliveTimeout 120s"
    echo "MaxKeepAliveRequests 0"
    if [ "$2" = 1 ]; then
        echo "Plugin stats"
        echo "MetricsPath /metrics"
    fi
    axkit_static_server "$1"
    echo "</Server>"
}
stats_conf "$STATS_PORT" 1 >"$TMP/stats.conf"
stats_conf "$PLAIN_PORT" 0 >"$TMP/plain.conf"
for c in stats plain; do must_pass "$c.conf rejected" "$AXKIT" --check -c "$TMP/$c.conf"; done
STARTUP_LOGS="$TMP/stats.log $TMP/plain.log"
start_bg ST_PID "$TMP/stats.log" "$AXKIT" -c "$TMP/stats.conf"
start_bg PL_PID "$TMP/plain.log" "$AXKIT" -c "$TMP/plain.conf"
wait_up axkit-stats "$ST_PID" "$STATS_PORT" /1k.bin
wait_up axkit-plain "$PL_PID" "$PLAIN_PORT" /1k.bin
curl -fsS "http://127.0.0.1:$STATS_PORT/metrics" | grep -q '^axkit_requests_total' \
    || die "no metrics on /metrics"

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
# round NAME PID PORT [scrape] -> µs of server CPU per request
round() {
    local name=$1 pid=$2 port=$3 scrape=${4:-} t scraper=
    kill -0 "$pid" 2>/dev/null || die "$name died"
    if [ -n "$scrape" ]; then
        ( while :; do curl -fsS -o /dev/null "http://127.0.0.1:$port/metrics" || true; sleep "$SCRAPE_EVERY"; done ) &
        scraper=$!; STARTED_PIDS+=("$scraper")
    fi
    t=$(cpu_ticks "$pid" $(workers_of "$pid"))
    run_wrk "$name" "$port" "$DURATION" /1k.bin >/dev/null
    t=$(( $(cpu_ticks "$pid" $(workers_of "$pid")) - t ))
    [ -n "$scraper" ] && stop_pid "$scraper"
    awk -v t="$t" -v u="$TICK_US" -v n="$(cat "$TMP/last-count")" \
        'BEGIN {if (n > 0) printf "%.2f", t * u / n; else print 0}'
}

note_load
log "warm-up"
DURATION_SAVED=$DURATION; DURATION=2
round plain "$PL_PID" "$PLAIN_PORT" >/dev/null
round stats "$ST_PID" "$STATS_PORT" >/dev/null
DURATION=$DURATION_SAVED
PLAIN=(); QUIET=(); SCRAPED=()
for r in $(seq "$ROUNDS"); do
    PLAIN+=("$(round plain "$PL_PID" "$PLAIN_PORT")")
    QUIET+=("$(round stats "$ST_PID" "$STATS_PORT")")
    SCRAPED+=("$(round stats-scraped "$ST_PID" "$STATS_PORT" scrape)")
    log "round $r: no stats ${PLAIN[-1]} µs/req, stats ${QUIET[-1]} µs/req, stats scraped every ${SCRAPE_EVERY}s ${SCRAPED[-1]} µs/req"
done
P=$(median "${PLAIN[@]}"); Q=$(median "${QUIET[@]}"); S=$(median "${SCRAPED[@]}")

cat <<EOF

---- summary (paste into docs/benchmarks.md) ----
Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · axkit $AXKIT_REV ($PROFILE) · Workers $WORKERS · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds · load avg before: $LOAD_BEFORE · other busy processes: ${BUSY:-none}

| 1 KiB GET, keep-alive | server CPU µs/request (median; rounds) |
|---|---|
| no stats plugin | $P (${PLAIN[*]}) |
| stats loaded, not scraped | $Q (${QUIET[*]}) |
| stats, /metrics every ${SCRAPE_EVERY}s | $S (${SCRAPED[*]}) |

Scraped / not scraped: $(ratio "$S" "$Q") (target <= 1.03); stats / no stats: $(ratio "$Q" "$P").
wrk anomalies (Non-2xx / socket errors):
$(anoms plain)
$(anoms stats)
$(anoms stats-scraped)
EOF
