#!/usr/bin/env bash
# bench/compress.sh — on-the-fly gzip, AxKit's `compress` plugin vs nginx
# `gzip on`, side by side, on one 100 KiB HTML file at level 6.
#
# What it measures (docs/benchmarks.md says how to read it: on a 2-core box
# the load generator shares the CPU, so compare ratios and CPU per request):
#   1. Compressed size: the gzip body each server sends for the file, and
#      axkit's size relative to nginx's (target: within ±2 %); both bodies
#      are decoded and compared with the file first.
#   2. Throughput: requests/s for GET /page.html with `Accept-Encoding:
#      gzip` over keep-alive, wrk against axkit and nginx alternately
#      (ROUNDS rounds each, median taken), the ratio axkit/nginx (target:
#      ≥ 1.0), and each server's CPU time per request (user + system of
#      master and workers / requests), which is steadier.
#
# Both servers: same worker count, no access log, keep-alive unlimited,
# open-file cache on, gzip level 6, `Vary: Accept-Encoding`. axkit reads
# the file whole (SmallFileSize above its size) so that it is compressed in
# one go, as nginx compresses a file it reads into its output buffers.
#
# How to run (from anywhere; needs root only to apt-get install wrk/nginx):
#     bench/compress.sh
#     WORKERS=2 DURATION=10 ROUNDS=3 CONNS=50 bench/compress.sh
#     PROFILE=debug DURATION=2 ROUNDS=1 bench/compress.sh   # a smoke run of the script itself
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback traffic only; every wait loop is
# bounded; everything lives in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
DURATION=${DURATION:-10}      # seconds per wrk round
ROUNDS=${ROUNDS:-3}           # rounds per server (alternating)
CONNS=${CONNS:-50}            # wrk connections
THREADS=${THREADS:-1}         # wrk threads
LEVEL=${LEVEL:-6}             # gzip level on both
PROFILE=${PROFILE:-release}   # debug: a smoke run of the script itself

SCRIPT_TAG=compress.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- tools ------------------------------------------------------------------

need_cmd wrk wrk
need_cmd nginx nginx-light
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

build_axkit

make_tmp axkit-compress   # cleanup on EXIT: stop STARTED_PIDS by PID, remove TMP

# ---- content and ports ------------------------------------------------------

mkdir -p "$TMP/www" "$TMP/nginx"
# 100 KiB of HTML-like text from a fixed seed: markup, words and numbers,
# compressing about as a real page does.
python3 - "$TMP/www/page.html" <<'PY'
import random, sys
rng = random.Random(13)
words = ("the of and to in is for on with as by at from this that axkit server "
         "request response header plugin cache proxy compress stream worker file "
         "location config directive module handler client upstream").split()
tags = ["p", "li", "td", "span", "a", "em", "strong", "h3"]
out = ["<!doctype html>\n<html><head><title>AxKit</title></head><body>\n"]
size = len(out[0])
while size < 100 * 1024:
    tag = rng.choice(tags)
    text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 18)))
    piece = f'<{tag} class="c{rng.randint(1, 40)}" id="n{rng.randint(1, 99999)}">{text}</{tag}>\n'
    out.append(piece)
    size += len(piece)
open(sys.argv[1], "w").write("".join(out)[: 100 * 1024])
PY
[ "$(stat -c %s "$TMP/www/page.html")" = 102400 ] || die "page.html is not 100 KiB"

pick_ports AX_PORT NG_PORT

# ---- configs ----------------------------------------------------------------

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
OpenFileCache 10000 1s
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
$(axkit_static_server "$AX_PORT")
    SmallFileSize 128K
    Plugin compress
    CompressLevel gzip=$LEVEL
</Server>
EOF

cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$WORKERS" 20000 20000)
http {
    access_log off;
    open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    types { text/html html; }
    gzip on;
    gzip_comp_level $LEVEL;
    gzip_vary on;
    client_body_temp_path $TMP/nginx/client_body;
    server {
        listen 127.0.0.1:$NG_PORT;
        root $TMP/www;
    }
}
EOF

start_axkit_nginx /page.html

log "axkit  PID $AX_PID port $AX_PORT workers: $(workers_of "$AX_PID")"
log "nginx  PID $NG_PID port $NG_PORT workers: $(workers_of "$NG_PID")"

# ---- sizes: each body decoded back to the file --------------------------------

for s in "axkit $AX_PORT" "nginx $NG_PORT"; do
    set -- $s
    curl -fsS -H 'Accept-Encoding: gzip' -D "$TMP/head-$1.txt" -o "$TMP/body-$1.gz" "http://127.0.0.1:$2/page.html"
    grep -qi '^content-encoding: gzip' "$TMP/head-$1.txt" || die "$1 did not gzip: $(cat "$TMP/head-$1.txt")"
    gzip -dc "$TMP/body-$1.gz" | cmp -s - "$TMP/www/page.html" || die "$1's gzip body does not decode to the file"
done
AX_SIZE=$(stat -c %s "$TMP/body-axkit.gz")
NG_SIZE=$(stat -c %s "$TMP/body-nginx.gz")
SIZE_DIFF=$(awk -v a="$AX_SIZE" -v n="$NG_SIZE" 'BEGIN {printf "%+.2f", (a - n) * 100 / n}')
log "compressed size: axkit $AX_SIZE bytes, nginx $NG_SIZE bytes ($SIZE_DIFF %)"

# ---- throughput -----------------------------------------------------------------

bench_wrk() {   # bench_wrk NAME PORT SECONDS -> req/s
    kill -0 "$( [ "$1" = axkit ] && echo "$AX_PID" || echo "$NG_PID")" 2>/dev/null \
        || die "$1 master died before a wrk run"
    run_wrk "$1" "$2" "$3" /page.html -H 'Accept-Encoding: gzip'
}

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
cpu_us_per_req() {   # cpu_us_per_req TICKS_BEFORE PID -> µs per request of the last wrk run
    awk -v t=$(( $(cpu_ticks "$2" $(workers_of "$2")) - $1 )) -v u="$TICK_US" -v n="$(cat "$TMP/last-count")" \
        'BEGIN {if (n > 0) printf "%.1f", t * u / n; else print 0}'
}

note_load
log "warm-up (2 s each)"
bench_wrk axkit "$AX_PORT" 2 >/dev/null
bench_wrk nginx "$NG_PORT" 2 >/dev/null
: >"$TMP/anomalies-axkit.txt"; : >"$TMP/anomalies-nginx.txt"
AX_RPS=(); NG_RPS=(); AX_CPU=(); NG_CPU=()
for r in $(seq "$ROUNDS"); do
    t=$(cpu_ticks "$AX_PID" $(workers_of "$AX_PID"))
    a=$(bench_wrk axkit "$AX_PORT" "$DURATION"); AX_RPS+=("$a"); AX_CPU+=("$(cpu_us_per_req "$t" "$AX_PID")")
    t=$(cpu_ticks "$NG_PID" $(workers_of "$NG_PID"))
    n=$(bench_wrk nginx "$NG_PORT" "$DURATION"); NG_RPS+=("$n"); NG_CPU+=("$(cpu_us_per_req "$t" "$NG_PID")")
    log "round $r: axkit $a req/s (${AX_CPU[-1]} µs CPU/req), nginx $n req/s (${NG_CPU[-1]} µs CPU/req)"
done
AX_MED=$(median "${AX_RPS[@]}"); NG_MED=$(median "${NG_RPS[@]}")
AX_CPU_MED=$(median "${AX_CPU[@]}"); NG_CPU_MED=$(median "${NG_CPU[@]}")

cat <<REPORT

## gzip of a 100 KiB HTML file, level $LEVEL

Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · axkit $AXKIT_REV ($PROFILE) · Workers $WORKERS · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds · load avg before: $LOAD_BEFORE · other busy processes: ${BUSY:-none}

| | axkit | nginx | axkit/nginx |
|---|---|---|---|
| requests/s (median) | $AX_MED | $NG_MED | $(ratio "$AX_MED" "$NG_MED") (per round: $(pair_ratios "${AX_RPS[*]}" "${NG_RPS[*]}")) |
| CPU µs/request (median) | $AX_CPU_MED | $NG_CPU_MED | $(ratio "$AX_CPU_MED" "$NG_CPU_MED") |
| gzip body bytes | $AX_SIZE | $NG_SIZE | $SIZE_DIFF % |

Anomalies (non-2xx, socket errors):
axkit:
$(anoms axkit)
nginx:
$(anoms nginx)
REPORT
