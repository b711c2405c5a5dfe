#!/usr/bin/env bash
# bench/xml.sh — the XML pipeline: AxKit's `xslt` plugin vs nginx's XSLT
# filter (libnginx-mod-http-xslt-filter), side by side, on one 50 KiB
# document through a chain of two stylesheets (article -> page -> HTML).
#
# What it measures (docs/benchmarks.md says how to read it: on a 2-core box
# the load generator shares the CPU, so compare ratios and CPU per request):
#   1. Uncached: requests/s of GET /chain/doc.xml with the result cache off
#      (XSLTCache Off: every request parses and runs both stylesheets) vs
#      nginx `xslt_stylesheet a.xsl; xslt_stylesheet b.xsl;` (which never
#      caches), the ratio axkit/nginx (target: >= 1.0), and each server's
#      CPU time per request (user + system of master and workers /
#      requests), which is steadier.
#   2. Cached: requests/s of GET /cached/doc.xml (XSLTCache On: the
#      transformed page comes from the worker's result cache) vs axkit
#      serving the same bytes as a static file (/static/doc.html), the
#      ratio (target: >= 0.9).
# Both outputs are checked first: 200, text/html, and the same page.
# axkit's workers' memory (PSS, RSS) is shown after the warm-up and after
# the rounds: every uncached request parses and transforms, so a leak
# shows there.
#
# Both servers: same worker count, no access log, keep-alive unlimited,
# open-file caches on.
#
# How to run (from anywhere; needs root only to apt-get install wrk/nginx):
#     bench/xml.sh
#     WORKERS=2 DURATION=10 ROUNDS=3 CONNS=50 bench/xml.sh
#     PROFILE=debug DURATION=2 ROUNDS=1 bench/xml.sh   # a smoke run of the script itself
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
PROFILE=${PROFILE:-release}   # debug: a smoke run of the script itself

SCRIPT_TAG=xml.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---- tools ------------------------------------------------------------------

need_cmd wrk wrk
need_cmd nginx nginx-light
XSLT_MODULE=/usr/lib/nginx/modules/ngx_http_xslt_filter_module.so
[ -f "$XSLT_MODULE" ] || NEED_PKGS="${NEED_PKGS:-} libnginx-mod-http-xslt-filter"
install_needed
[ -f "$XSLT_MODULE" ] || die "no $XSLT_MODULE (Debian: libnginx-mod-http-xslt-filter)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

build_axkit

make_tmp axkit-xml   # cleanup on EXIT: stop STARTED_PIDS by PID, remove TMP

# ---- content and ports ------------------------------------------------------

mkdir -p "$TMP/www/chain" "$TMP/www/cached" "$TMP/www/static" "$TMP/nginx"
# A 50 KiB article from a fixed seed: sections of paragraphs with inline
# markup, as a real one has.
python3 - "$TMP/www/chain/doc.xml" <<'PY'
import random, sys
rng = random.Random(7)
words = ("the of and to in is for on with as by at from this that axkit server "
         "request response stylesheet pipeline document element attribute chain "
         "transform cache worker template output").split()
out = ['<?xml version="1.0" encoding="UTF-8"?>\n<article id="bench" date="2026-12-02">\n<title>A benchmark article</title>\n']
size = len(out[0])
n = 0
while size < 50 * 1024 - 700:
    n += 1
    paras = []
    for _ in range(rng.randint(2, 5)):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(10, 40)))
        i = rng.randint(0, len(text) - 1)
        paras.append(f"<para>{text[:i]}<em>{rng.choice(words)}</em>{text[i:]}</para>\n")
    piece = f'<section n="{n}"><heading>Section {n}</heading>\n' + "".join(paras) + "</section>\n"
    out.append(piece)
    size += len(piece)
out.append("</article>\n")
open(sys.argv[1], "w").write("".join(out))
PY
cp "$TMP/www/chain/doc.xml" "$TMP/www/cached/doc.xml"

cat >"$TMP/www/a.xsl" <<'EOF'
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/article">
    <page>
      <title><xsl:value-of select="title"/></title>
      <toc><xsl:for-each select="section"><entry n="{@n}"><xsl:value-of select="heading"/></entry></xsl:for-each></toc>
      <xsl:apply-templates select="section"/>
    </page>
  </xsl:template>
  <xsl:template match="section">
    <block id="s{@n}"><h><xsl:value-of select="heading"/></h><xsl:apply-templates select="para"/></block>
  </xsl:template>
  <xsl:template match="para"><p><xsl:apply-templates/></p></xsl:template>
  <xsl:template match="em"><i><xsl:value-of select="."/></i></xsl:template>
</xsl:stylesheet>
EOF
cat >"$TMP/www/b.xsl" <<'EOF'
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="UTF-8"/>
  <xsl:template match="/page">
    <html><head><title><xsl:value-of select="title"/></title></head>
    <body><h1><xsl:value-of select="title"/></h1>
    <ul><xsl:for-each select="toc/entry"><li><a href="#s{@n}"><xsl:value-of select="."/></a></li></xsl:for-each></ul>
    <xsl:apply-templates select="block"/></body></html>
  </xsl:template>
  <xsl:template match="block"><div id="{@id}"><h2><xsl:value-of select="h"/></h2><xsl:copy-of select="p"/></div></xsl:template>
</xsl:stylesheet>
EOF
DOC_SIZE=$(stat -c %s "$TMP/www/chain/doc.xml")
[ "$DOC_SIZE" -gt 49000 ] && [ "$DOC_SIZE" -le 51200 ] || die "doc.xml is $DOC_SIZE bytes, not about 50 KiB"

pick_ports AX_PORT NG_PORT

# ---- configs ----------------------------------------------------------------

cat >"$TMP/axkit.conf" <<EOF
Workers $WORKERS
OpenFileCache 10000 1s
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
$(axkit_static_server "$AX_PORT")
    SmallFileSize 128K
    <Location /chain>
        Plugin xslt
        XSLTStyle a.xsl
        XSLTStyle b.xsl
        XSLTCache Off
    </Location>
    <Location /cached>
        Plugin xslt
        XSLTStyle a.xsl
        XSLTStyle b.xsl
    </Location>
</Server>
EOF

cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$WORKERS" 20000 20000 "$XSLT_MODULE")
http {
    access_log off;
    open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    types { text/xml xml; text/html html; }
    client_body_temp_path $TMP/nginx/client_body;
    server {
        listen 127.0.0.1:$NG_PORT;
        root $TMP/www;
        location /chain/ {
            xslt_stylesheet $TMP/www/a.xsl;
            xslt_stylesheet $TMP/www/b.xsl;
        }
    }
}
EOF

start_axkit_nginx /chain/doc.xml

log "axkit  PID $AX_PID port $AX_PORT workers: $(workers_of "$AX_PID")"
log "nginx  PID $NG_PID port $NG_PORT workers: $(workers_of "$NG_PID")"

# ---- outputs: both transform, to the same page ---------------------------------

for s in "axkit $AX_PORT chain" "nginx $NG_PORT chain" "axkit-cached $AX_PORT cached"; do
    set -- $s
    curl -fsS -D "$TMP/head-$1.txt" -o "$TMP/body-$1.html" "http://127.0.0.1:$2/$3/doc.xml"
    grep -qi '^content-type: text/html' "$TMP/head-$1.txt" || die "$1 did not answer HTML: $(cat "$TMP/head-$1.txt")"
    grep -q '<h2>Section 1</h2>' "$TMP/body-$1.html" || die "$1's page is not the transformed document"
done
cmp -s "$TMP/body-axkit.html" "$TMP/body-axkit-cached.html" || die "the cached page differs from the transformed one"
if cmp -s "$TMP/body-axkit.html" "$TMP/body-nginx.html"; then
    SAME="identical"
else
    # nginx serialises the result itself (no <meta> for method html, say).
    SAME="differ ($(stat -c %s "$TMP/body-axkit.html") vs $(stat -c %s "$TMP/body-nginx.html") bytes)"
fi
cp "$TMP/body-axkit.html" "$TMP/www/static/doc.html"
OUT_SIZE=$(stat -c %s "$TMP/www/static/doc.html")
log "document $DOC_SIZE bytes -> page $OUT_SIZE bytes; axkit and nginx pages: $SAME"

# ---- throughput -----------------------------------------------------------------

# measure NAME PID PORT PATH: one wrk round, "REQ/S CPU-µs/REQ"
measure() {
    kill -0 "$2" 2>/dev/null || die "$1's master died before a wrk run"
    local t rps
    t=$(cpu_ticks "$2" $(workers_of "$2"))
    rps=$(run_wrk "$1" "$3" "$DURATION" "$4")
    echo "$rps $(cpu_us_per_req "$t" "$2")"
}

note_load
log "warm-up (2 s each)"
DURATION_SAVED=$DURATION; DURATION=2
for p in "axkit $AX_PID $AX_PORT /chain/doc.xml" "nginx $NG_PID $NG_PORT /chain/doc.xml" \
         "cached $AX_PID $AX_PORT /cached/doc.xml" "static $AX_PID $AX_PORT /static/doc.html"; do
    measure $p >/dev/null
done
DURATION=$DURATION_SAVED
read -r AX_PSS0 AX_RSS0 < <(mem_kib $(workers_of "$AX_PID"))
for n in axkit nginx cached static; do : >"$TMP/anomalies-$n.txt"; done
AX_RPS=(); NG_RPS=(); AX_CPU=(); NG_CPU=(); CA_RPS=(); ST_RPS=(); CA_CPU=(); ST_CPU=()
for r in $(seq "$ROUNDS"); do
    read -r a c < <(measure axkit "$AX_PID" "$AX_PORT" /chain/doc.xml); AX_RPS+=("$a"); AX_CPU+=("$c")
    read -r a c < <(measure nginx "$NG_PID" "$NG_PORT" /chain/doc.xml); NG_RPS+=("$a"); NG_CPU+=("$c")
    read -r a c < <(measure cached "$AX_PID" "$AX_PORT" /cached/doc.xml); CA_RPS+=("$a"); CA_CPU+=("$c")
    read -r a c < <(measure static "$AX_PID" "$AX_PORT" /static/doc.html); ST_RPS+=("$a"); ST_CPU+=("$c")
    log "round $r: uncached axkit ${AX_RPS[-1]} req/s (${AX_CPU[-1]} µs CPU/req), nginx ${NG_RPS[-1]} req/s (${NG_CPU[-1]} µs CPU/req); cached ${CA_RPS[-1]} req/s (${CA_CPU[-1]} µs), static ${ST_RPS[-1]} req/s (${ST_CPU[-1]} µs)"
done
read -r AX_PSS1 AX_RSS1 < <(mem_kib $(workers_of "$AX_PID"))
AX_MED=$(median "${AX_RPS[@]}"); NG_MED=$(median "${NG_RPS[@]}")
AX_CPU_MED=$(median "${AX_CPU[@]}"); NG_CPU_MED=$(median "${NG_CPU[@]}")
CA_MED=$(median "${CA_RPS[@]}"); ST_MED=$(median "${ST_RPS[@]}")
CA_CPU_MED=$(median "${CA_CPU[@]}"); ST_CPU_MED=$(median "${ST_CPU[@]}")

cat <<REPORT

## A $DOC_SIZE-byte document through two stylesheets ($OUT_SIZE-byte HTML page)

Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · axkit $AXKIT_REV ($PROFILE) · Workers $WORKERS · wrk -t$THREADS -c$CONNS -d${DURATION}s · $ROUNDS rounds · load avg before: $LOAD_BEFORE · other busy processes: ${BUSY:-none}

| uncached chain | axkit (XSLTCache Off) | nginx xslt filter | axkit/nginx |
|---|---|---|---|
| requests/s (median) | $AX_MED | $NG_MED | $(ratio "$AX_MED" "$NG_MED") (per round: $(pair_ratios "${AX_RPS[*]}" "${NG_RPS[*]}")) |
| CPU µs/request (median) | $AX_CPU_MED | $NG_CPU_MED | $(ratio "$AX_CPU_MED" "$NG_CPU_MED") |

| result cache | axkit cached | axkit static file | cached/static |
|---|---|---|---|
| requests/s (median) | $CA_MED | $ST_MED | $(ratio "$CA_MED" "$ST_MED") (per round: $(pair_ratios "${CA_RPS[*]}" "${ST_RPS[*]}")) |
| CPU µs/request (median) | $CA_CPU_MED | $ST_CPU_MED | $(ratio "$CA_CPU_MED" "$ST_CPU_MED") |

Pages: axkit and nginx $SAME.

axkit's workers after the warm-up: PSS $AX_PSS0 KiB, RSS $AX_RSS0 KiB; after the rounds: PSS $AX_PSS1 KiB, RSS $AX_RSS1 KiB.

Anomalies (non-2xx, socket errors):
axkit: $(anoms axkit)
nginx: $(anoms nginx)
cached: $(anoms cached)
static: $(anoms static)
REPORT
