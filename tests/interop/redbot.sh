#!/usr/bin/env bash
# tests/interop/redbot.sh — REDbot (the HTTP linter, from PyPI) checks
# files served by axkit: framing, caching headers, validators and
# conditional requests (it sends If-None-Match / If-Modified-Since itself),
# ranges, and content negotiation of a precompressed file. Fails if
# REDbot reports any error (a note of level BAD); warnings are printed.
#
# Safety: a random free port above 20000 on 127.0.0.1, everything in one
# temp dir (the venv too), only the axkit started here is stopped (by PID).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { printf 'redbot.sh: FAIL: %s\n' "$*" >&2; exit 1; }

TMP=$(mktemp -d /tmp/axkit-redbot.XXXXXX)
AX_PID=""
cleanup() {
    if [ -n "$AX_PID" ]; then
        kill -TERM "$AX_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$AX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$AX_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

python3 -m venv "$TMP/venv" 2>/dev/null || {
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$TMP/venv"
}
"$TMP/venv/bin/pip" install -q redbot || die "pip install redbot failed"
REDBOT=$TMP/venv/bin/redbot

(cd "$ROOT" && cargo build -q --bin axkit)
AXKIT=$ROOT/target/debug/axkit

PORT=""
for _ in $(seq 50); do
    p=$(( 20001 + RANDOM % 9000 ))
    if python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
        PORT=$p; break
    fi
done
[ -n "$PORT" ] || die "no free port"

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
<Server>
    Listen 127.0.0.1:$PORT
    DocumentRoot $TMP/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
    CacheControl "max-age=3600"
    Precompressed gzip
</Server>
CONF
"$AXKIT" --no-master -c "$TMP/axkit.conf" >"$TMP/axkit.log" 2>&1 &
AX_PID=$!
for _ in $(seq 100); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$PORT" 2>/dev/null && break
    sleep 0.1
done

failed=0
for path in /page.txt /data.bin /app.js; do
    timeout 120 "$REDBOT" -o har "http://127.0.0.1:$PORT$path" >"$TMP/har.json" \
        || die "redbot could not check $path"
    if ! python3 - "$path" "$TMP/har.json" <<'PY'
import json, sys
path, har = sys.argv[1], json.load(open(sys.argv[2]))
notes = [n for e in har["log"]["entries"] for n in e.get("_red_messages", [])]
if not notes:
    print(f"  {path}: REDbot produced no notes (did it reach the server?)")
    sys.exit(1)
bad = [n for n in notes if n["level"] == "BAD"]
for n in notes:
    if n["level"] in ("BAD", "WARN"):
        print(f"  {path}: {n['level']}: {n['summary']}")
good = sum(n["level"] == "GOOD" for n in notes)
print(f"  {path}: {len(notes)} notes, {good} good, {len(bad)} errors")
sys.exit(1 if bad else 0)
PY
    then
        failed=1
    fi
done
[ "$failed" = 0 ] || die "REDbot reported errors"
echo "redbot.sh: ok (no errors from REDbot)"
