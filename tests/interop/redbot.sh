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

pick_ports PORT

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
