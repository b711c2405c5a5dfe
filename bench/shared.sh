#!/usr/bin/env bash
# bench/shared.sh — the shared dictionary and broadcast targets:
#
#   1. From Rust (crates/axkit-shared/examples/shared-bench.rs): get and
#      set per second in one process (one worker's share; target: each at
#      least 1,000,000), and 1,000,000 incr on one key from one process per
#      core at once (target: no increment lost).
#   2. Long-poll: WAITERS (10,000) requests to a WORKERS-worker axkit whose
#      Lua script waits with `shared.wait("sse")` (bench/long_poll.py): the
#      server's CPU time over IDLE seconds while they all wait (target:
#      flat, about zero), then one `shared.broadcast` from a request and the
#      time until every waiter has its answer (target: within 1 s).
#
# Run from anywhere:
#     bench/shared.sh
#     WORKERS=2 WAITERS=10000 IDLE=5 bench/shared.sh
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback only; a random port above 20000 below
# the ephemeral range; every wait is bounded; everything in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-2}
WAITERS=${WAITERS:-10000}
IDLE=${IDLE:-5}

SCRIPT_TAG=shared.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_release axkit --bin axkit -p axkit-cli
build_release shared-bench -p axkit-shared --example shared-bench
BIN=$ROOT/target/release/axkit

make_tmp axkit-bench-shared

log "zone operations from Rust"
"$ROOT/target/release/examples/shared-bench"

log "$WAITERS long-poll requests on $WORKERS workers"
pick_ports PORT
mkdir -p "$TMP/plugins"
cat >"$TMP/plugins/poll.lua" <<'LUA'
function hook_response(r)
  local p = r:path()
  if p == "/wait" then
    shared.incr("waiting", 1, 0)
    local m = shared.wait("sse", 60)
    shared.incr("waiting", -1)
    r:write(m or "timeout")
  elseif p == "/count" then
    r:write(shared.get("waiting") or 0)
  elseif p == "/send" then
    shared.broadcast("sse", "go")
    r:write("sent")
  else
    return 404
  end
  return OK
end
LUA
# shellcheck disable=SC2153 # pick_ports set PORT
cat >"$TMP/poll.conf" <<CONF
Workers $WORKERS
PluginDir $TMP/plugins
MaxConnections $((WAITERS + 1000))
<Server>
    Listen 127.0.0.1:$PORT
    Plugin poll
</Server>
CONF
must_pass "axkit rejected poll.conf" "$BIN" --check -c "$TMP/poll.conf"
# The client holds WAITERS sockets and one worker may hold them all: twice
# that with room, but no more than the hard limit (raising it needs
# CAP_SYS_RESOURCE, which a container's root may not have).
FDS=$((WAITERS * 2 + 1000))
HARD=$(ulimit -Hn)
if [ "$HARD" != unlimited ] && [ "$FDS" -gt "$HARD" ]; then FDS=$HARD; fi
[ "$FDS" -ge $((WAITERS + 100)) ] || die "$WAITERS waiters need more descriptors than the hard limit $HARD"
ulimit -n "$FDS"
start_bg AX_PID "$TMP/axkit.log" "$BIN" -c "$TMP/poll.conf"
wait_up axkit "$AX_PID" "$PORT" /count 0
read -ra WORKER_PIDS <<<"$(workers_of "$AX_PID")"
python3 "$BENCH_DIR/long_poll.py" 127.0.0.1 "$PORT" "$WAITERS" "$IDLE" "${WORKER_PIDS[@]}"
