#!/usr/bin/env bash
# tests/interop/redbot.sh — REDbot (the HTTP linter, from PyPI) checks
# files served by axkit: framing, caching headers, validators and
# conditional requests (it sends If-None-Match / If-Modified-Since itself),
# ranges, and content negotiation of a precompressed file; then the same
# through a second axkit in front, a reverse proxy (plugin `proxy`) with
# the response cache (`Cache On`) and on-the-fly compression (`compress`):
# a proxied response, a compressed one (gzip negotiated, checked with
# curl), and the same again answered from the cache (a HIT, checked with
# curl before REDbot sees it). Fails if REDbot reports any error (a note
# of level BAD); warnings are printed.
#
# Safety: a random free port above 20000 on 127.0.0.1, everything in one
# temp dir (the venv too), only the axkit started here is stopped (by PID).
set -euo pipefail

SCRIPT_TAG="redbot.sh: FAIL"
source "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"

make_tmp axkit-redbot   # cleanup on EXIT: stop the axkit started here by PID, remove TMP

python3 -m venv "$TMP/venv" 2>/dev/null || {
    apt_install python3-venv
    python3 -m venv "$TMP/venv"
}
"$TMP/venv/bin/pip" install -q redbot || die "pip install redbot failed"
REDBOT=$TMP/venv/bin/redbot
need_cmd curl curl
install_needed

(cd "$ROOT" && cargo build -q --bin axkit)
AXKIT=$ROOT/target/debug/axkit

pick_ports PORT PX_PORT

mkdir -p "$TMP/www"
python3 - "$TMP/www" <<'PY'
import gzip, os, random, sys
www = sys.argv[1]
random.seed(3)
text = "".join(random.choice("abcdefghij klmnop\n") for _ in range(20000))
open(os.path.join(www, "page.txt"), "w").write(text)
open(os.path.join(www, "data.bin"), "wb").write(bytes(random.getrandbits(8) for _ in range(100 * 1024)))
open(os.path.join(www, "app.js"), "w").write("console.log('hi');\n" * 500)
open(os.path.join(www, "app.js.gz"), "wb").write(gzip.compress(("console.log('hi');\n" * 500).encode()))
PY

cat >"$TMP/axkit.conf" <<CONF
Workers 1
$(axkit_static_server "$PORT")
    CacheControl "max-age=3600"
    Precompressed gzip
</Server>
CONF
start_bg AX_PID "$TMP/axkit.log" "$AXKIT" --no-master -c "$TMP/axkit.conf"
STARTUP_LOGS=("$TMP/axkit.log")
wait_up axkit "$AX_PID" "$PORT" /page.txt

cat >"$TMP/proxy.conf" <<CONF
Workers 1
Plugin cache
Plugin compress
<Server>
    Listen 127.0.0.1:$PX_PORT
    Plugin proxy
    ProxyPass / http://127.0.0.1:$PORT/
    Cache On
</Server>
CONF
start_bg PX_PID "$TMP/proxy.log" "$AXKIT" --no-master -c "$TMP/proxy.conf"
STARTUP_LOGS=("$TMP/axkit.log" "$TMP/proxy.log")
wait_up axkit-proxy "$PX_PID" "$PX_PORT" /app.js

# redbot URL -> 0 when REDbot reported no error; prints its warnings.
redbot() {
    local url=$1
    timeout 120 "$REDBOT" -o har "$url" >"$TMP/har.json" || die "redbot could not check $url"
    python3 - "$url" "$TMP/har.json" <<'PY'
import json, sys
url, har = sys.argv[1], json.load(open(sys.argv[2]))
notes = [n for e in har["log"]["entries"] for n in e.get("_red_messages", [])]
if not notes:
    print(f"  {url}: REDbot produced no notes (did it reach the server?)")
    sys.exit(1)
bad = [n for n in notes if n["level"] == "BAD"]
for n in notes:
    if n["level"] in ("BAD", "WARN"):
        print(f"  {url}: {n['level']}: {n['summary']}")
good = sum(n["level"] == "GOOD" for n in notes)
print(f"  {url}: {len(notes)} notes, {good} good, {len(bad)} errors")
sys.exit(1 if bad else 0)
PY
}

# header URL NAME [curl args…] -> the header's value in a GET of URL
header() {
    local url=$1 name=$2; shift 2
    curl -s -o /dev/null -D - "$@" "$url" | tr -d '\r' \
        | awk -v n="$name" -F': ' 'tolower($1)==tolower(n) {print $2}'
}

failed=0
for path in /page.txt /data.bin /app.js; do
    redbot "http://127.0.0.1:$PORT$path" || failed=1
done

# Through the proxy: each once as it comes (a miss, stored), then again
# from the cache.
PX=http://127.0.0.1:$PX_PORT
for path in /page.txt /data.bin /app.js; do
    redbot "$PX$path" || failed=1
done
coding=$(header "$PX/page.txt" Content-Encoding -H 'Accept-Encoding: gzip')
[ "$coding" = gzip ] || die "/page.txt through the proxy: Content-Encoding '$coding' (want gzip)"
status=$(header "$PX/page.txt" Cache-Status -H 'Accept-Encoding: gzip')
case "$status" in *"; hit"*) ;; *) die "/page.txt through the proxy: Cache-Status '$status' (want a hit)" ;; esac
status=$(header "$PX/data.bin" Cache-Status)
case "$status" in *"; hit"*) ;; *) die "/data.bin through the proxy: Cache-Status '$status' (want a hit)" ;; esac
log "proxy: /page.txt gzip from the cache, /data.bin from the cache"
for path in /page.txt /data.bin; do
    redbot "$PX$path" || failed=1
done
[ "$failed" = 0 ] || die "REDbot reported errors"
echo "redbot.sh: ok (no errors from REDbot: files, proxied, compressed, cached)"
