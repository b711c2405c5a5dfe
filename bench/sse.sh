#!/usr/bin/env bash
# bench/sse.sh — the server-sent events target: N (10,000) event streams
# waiting on one worker, flat CPU while idle, all woken within 1 s of a
# broadcast from another worker.
#
# A 2-worker axkit runs a Lua script (`r:sse`, `shared.subscribe`) whose
# /events answers 503 on worker 1, so the clients (bench/sse.py, client
# processes of up to 5,000 streams on their own 127.0.0.x source
# addresses) reconnect until every stream is on worker 0, and whose /send
# answers 503 on worker 0, so the broadcast comes from worker 1. Printed:
# the workers' memory growth per stream, their CPU time over IDLE seconds
# while every stream waits (target: about zero; streams send a heartbeat
# comment every HEARTBEAT seconds), and the time from the /send request
# until every stream has the event (target: within 1 s).
#
# Run from anywhere:
#     bench/sse.sh
#     N=10000 IDLE=10 HEARTBEAT=15 bench/sse.sh
#     PROFILE=debug N=500 bench/sse.sh        # a quick check of the script
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback only; a random port above 20000 below
# the ephemeral range; N is at most 19,000 (one worker's descriptors stay
# under the 20,000 per process); every wait is bounded; everything in one
# temp dir.

set -euo pipefail

N=${N:-10000}
IDLE=${IDLE:-10}
HEARTBEAT=${HEARTBEAT:-15}
PROFILE=${PROFILE:-release}

SCRIPT_TAG=sse.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$N" -ge 1 ] && [ "$N" -le 19000 ] || die "N must be 1 to 19000"
build_axkit
BIN=$AXKIT

make_tmp axkit-bench-sse
pick_ports PORT
mkdir -p "$TMP/plugins"
cat >"$TMP/plugins/live.lua" <<LUA
function hook_response(r)
  local p, me = r:path(), r:worker()
  if p == "/events" then
    if me ~= 0 then return 503 end
    local sub = shared.subscribe("news")
    local s = r:sse{ heartbeat = $HEARTBEAT }
    s:send{ event = "hello", data = "on worker 0" }
    for m in sub do
      if not s:send(m) then break end
    end
  elseif p == "/send" then
    if me == 0 then return 503 end
    shared.broadcast("news", "go")
    r:write(me)
  elseif p == "/up" then
    r:write("up")
  else
    return 404
  end
  return OK
end
LUA
cat >"$TMP/sse.conf" <<CONF
Workers 2
PluginDir $TMP/plugins
MaxConnections $((N + 1000))
<Server>
    Listen 127.0.0.1:$PORT
    Plugin live
</Server>
CONF
must_pass "axkit rejected sse.conf" "$BIN" --check -c "$TMP/sse.conf"
ulimit -n 20000
STARTUP_LOGS=("$TMP/axkit.log")
start_bg AX_PID "$TMP/axkit.log" "$BIN" -c "$TMP/sse.conf"
wait_up axkit "$AX_PID" "$PORT" /up up
log "$N event streams on one worker ($PROFILE build), idle ${IDLE} s"
# Bounded: the clients give up after their own deadlines; this is the
# backstop.
timeout 600 python3 "$BENCH_DIR/sse.py" 127.0.0.1 "$PORT" "$N" "$IDLE" \
    $(workers_of "$AX_PID")
