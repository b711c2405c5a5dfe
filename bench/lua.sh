#!/usr/bin/env bash
# bench/lua.sh — scripted hello handlers, side by side, equal workers:
#
#   lua    axkit running plugins/hello.lua (Plugin hello)
#   rust   axkit running a Rust plugin doing the same (rust_hello, in
#          crates/axkit-lua/examples/hello-bench.rs; same binary)
#   nginx  nginx + Debian's libnginx-mod-http-lua, content_by_lua_block
#          printing the same greeting (configured with `set $greeting`, as
#          hello.lua reads its Greeting directive)
#
# Each answers GET /?name=Ada with "Hello, Ada\n" (text/plain). wrk runs
# against the three alternately for ROUNDS rounds; the script prints each
# round, the medians, and the ratios lua/nginx, rust/nginx and lua/rust,
# both in requests/s and in server CPU time per request (user+system time of the
# server's processes divided by requests served: steadier than requests/s
# when other work shares the cores).
#
# Then the sleep test: SLEEP_CONNS (10,000) connections to a one-worker
# axkit whose script does `sleep(1)` before answering, all sent at once
# (bench/lua_sleep.py): wall time, slowest request and server CPU.
# SLEEP_CONNS=0 skips it (quick throughput runs).
#
# Run from anywhere (installs wrk, nginx and libnginx-mod-http-lua with
# apt-get when missing):
#     bench/lua.sh
#     WORKERS=2 DURATION=10 ROUNDS=5 CONNS=50 SLEEP_CONNS=10000 bench/lua.sh
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT); no sysctl change; loopback only; random ports above 20000 below the
# ephemeral range; every wait is bounded; everything lives in one temp dir.

set -euo pipefail

WORKERS=${WORKERS:-1}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
SLEEP_CONNS=${SLEEP_CONNS:-10000}

SCRIPT_TAG=lua.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN=$ROOT/target/release/examples/hello-bench

# ---- tools ------------------------------------------------------------------

LUA_MOD=/usr/lib/nginx/modules/ngx_http_lua_module.so
NDK_MOD=/usr/lib/nginx/modules/ndk_http_module.so
need_cmd wrk wrk
[ -f "$LUA_MOD" ] || NEED_PKGS+=(nginx libnginx-mod-http-lua)
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

build_release hello-bench -p axkit-lua --example hello-bench

# ---- cleanup ----------------------------------------------------------------

make_tmp axkit-bench-lua   # cleanup on EXIT: stop STARTED_PIDS by PID, remove TMP

# ---- configs and servers --------------------------------------------------------

pick_ports LUA_PORT RUST_PORT NG_PORT SLEEP_PORT
mkdir -p "$TMP/plugins" "$TMP/nginx"
cat >"$TMP/plugins/sleeper.lua" <<'EOF'
function hook_response(r)
  sleep(1)
  r:write("slept\n")
  return OK
end
EOF

axkit_conf() {   # axkit_conf PORT PLUGIN WORKERS
    cat <<EOF
Workers $3
PluginDir $ROOT/plugins
PluginDir $TMP/plugins
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
<Server>
    Listen 127.0.0.1:$1
    Plugin $2
</Server>
EOF
}
axkit_conf "$LUA_PORT" hello "$WORKERS" >"$TMP/lua.conf"
axkit_conf "$RUST_PORT" rust_hello "$WORKERS" >"$TMP/rust.conf"
axkit_conf "$SLEEP_PORT" sleeper 1 >"$TMP/sleep.conf"

cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$WORKERS" 20000 20000 "$NDK_MOD" "$LUA_MOD")
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path $TMP/nginx/client_body;
    server {
        listen 127.0.0.1:$NG_PORT;
        location / {
            # The greeting is configuration, as hello.lua's Greeting is.
            set \$greeting "Hello";
            content_by_lua_block {
                ngx.header["Content-Type"] = "text/plain; charset=utf-8"
                ngx.print(ngx.var.greeting, ", ", ngx.var.arg_name or "world", "\n")
            }
        }
    }
}
EOF

for c in lua rust sleep; do
    must_pass "axkit rejected $c.conf" "$BIN" --check -c "$TMP/$c.conf"
done
nginx_check

start_bg LUA_PID "$TMP/lua.log" "$BIN" -c "$TMP/lua.conf"
start_bg RUST_PID "$TMP/rust.log" "$BIN" -c "$TMP/rust.conf"
nginx_start

# Up to 10 s each for the greeting.
wait_up lua "$LUA_PID" "$LUA_PORT" "/?name=Ada" "Hello, Ada"
wait_up rust "$RUST_PID" "$RUST_PORT" "/?name=Ada" "Hello, Ada"
wait_up nginx "$NG_PID" "$NG_PORT" "/?name=Ada" "Hello, Ada"

# ---- throughput -----------------------------------------------------------------

server_ticks() {   # user+system ticks of PID and its children
    cpu_ticks "$1" $(cat "/proc/$1/task/$1/children" 2>/dev/null)
}
TICK=$(getconf CLK_TCK)

greet_wrk() {   # greet_wrk NAME PID PORT: prints "RPS US_PER_REQ"
    local out t0 t1 reqs rps errors
    t0=$(server_ticks "$2")
    out=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$3/?name=Ada")
    t1=$(server_ticks "$2")
    errors=$(echo "$out" | grep -E "Non-2xx|Socket errors" || true)
    [ -z "$errors" ] || log "$1: $errors"
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    python3 -c "import sys; print(round(float(sys.argv[1])), round((int(sys.argv[2]) - int(sys.argv[3])) * 1e6 / int(sys.argv[4]) / int(sys.argv[5]), 2))" \
        "$rps" "$t1" "$t0" "$TICK" "$reqs"
}

log "throughput: $ROUNDS rounds x ${DURATION}s, $CONNS connections, $WORKERS worker(s) each"
declare -A RPS US
for round in $(seq "$ROUNDS"); do
    for s in lua rust nginx; do
        case $s in
            lua) read -r r u < <(greet_wrk lua "$LUA_PID" "$LUA_PORT") ;;
            rust) read -r r u < <(greet_wrk rust "$RUST_PID" "$RUST_PORT") ;;
            nginx) read -r r u < <(greet_wrk nginx "$NG_PID" "$NG_PORT") ;;
        esac
        RPS[$s]="${RPS[$s]:-} $r"; US[$s]="${US[$s]:-} $u"
        printf 'round %d  %-5s %8s req/s  %6s us CPU/request\n' "$round" "$s" "$r" "$u"
    done
done

python3 - "${RPS[lua]}" "${RPS[rust]}" "${RPS[nginx]}" "${US[lua]}" "${US[rust]}" "${US[nginx]}" <<'EOF'
import statistics, sys
rl, rr, rn, ul, ur, un = ([float(x) for x in a.split()] for a in sys.argv[1:])
m = statistics.median
print()
print("                    lua (axkit)   rust (axkit)   nginx+lua")
print(f"req/s (median)     {m(rl):12,.0f}   {m(rr):12,.0f}   {m(rn):10,.0f}")
print(f"us CPU/request     {m(ul):12.2f}   {m(ur):12.2f}   {m(un):10.2f}")
print()
print(f"lua/nginx   req/s {m(rl)/m(rn):.2f}   CPU efficiency {m(un)/m(ul):.2f}   (target >= 1.0)")
print(f"rust/nginx  req/s {m(rr)/m(rn):.2f}   CPU efficiency {m(un)/m(ur):.2f}   (target >= 1.2)")
# Lua against the same handler in Rust; per round too (the servers take
# turns, so a round's two figures saw the same load).
rounds = [r / l for l, r in zip(ul, ur)]
print(f"lua/rust    req/s {m(rl)/m(rr):.2f}   CPU efficiency {m(ur)/m(ul):.2f}   "
      f"per round {' '.join(f'{x:.2f}' for x in rounds)}, median {m(rounds):.2f}   (target >= 0.95)")
EOF

stop_pid "$LUA_PID"; stop_pid "$RUST_PID"; stop_pid "$NG_PID"

# ---- 10,000 sleeping requests in one worker -------------------------------------------

[ "$SLEEP_CONNS" -gt 0 ] || exit 0

log "sleep: $SLEEP_CONNS requests, each sleep(1) in Lua, one worker"
start_bg SLEEP_PID "$TMP/sleep.log" "$BIN" -c "$TMP/sleep.conf"
wait_up sleep "$SLEEP_PID" "$SLEEP_PORT" /
python3 "$BENCH_DIR/lua_sleep.py" "$SLEEP_PORT" "$SLEEP_CONNS" "$SLEEP_PID"
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$(cat "/proc/$SLEEP_PID/task/$SLEEP_PID/children" | awk '{print $1}')/status")
echo "sleep worker RSS after the batch: ${RSS} KiB"
