#!/usr/bin/env bash
# bench/app.sh — the application toolkit's targets, side by side, equal
# worker processes (docs/benchmarks.md describes the method):
#
#   1. "Single query", TechEmpower's test 2: GET /db reads the row of a
#      random id (1..10,000) from `world(id int primary key, randomnumber
#      int)` in PostgreSQL and answers {"id":…,"randomNumber":…}:
#        lua   axkit running a Lua script (postgres.get("main"), db:query_one,
#              json.encode)
#        rust  axkit running rust_single_query, a Rust plugin on axkit_db
#              (crates/axkit-lua/examples/app-bench.rs: the same binary)
#        node  Node.js, node:http + npm's pg Pool (version PG_NPM, installed
#              into the temp dir), one cluster process per worker
#      each with WORKERS worker processes and POOL connections per worker
#      (default `pool=8` / `max: 8`). Reported per server: requests/s, the
#      application server's CPU per request (user+system of its master and
#      workers / requests) and, apart, PostgreSQL's CPU per request (its
#      postmaster and backends over the same run). Targets: lua <= 0.66x
#      and rust <= 0.5x node's application CPU per request.
#   2. A 20-row page from a template, HTML escaping on for both: axkit's Lua
#      `template.render` (minijinja) against nginx + Debian's
#      libnginx-mod-http-lua rendering the same page with lua-cosmo (escaping
#      through a helper called on every value, as cosmo has no
#      autoescape); the two bodies are checked to be byte-identical first.
#      Target: lua >= 1.0x nginx's requests/s; CPU per request beside it.
#   3. bench/shared.sh, WORKERS=SHARED_WORKERS (shared dictionary from Rust:
#      get/set per second, 1,000,000 incr from every core; 10,000 long-poll
#      waiters).
#   4. bench/sse.sh (10,000 event streams on one worker, woken by a
#      broadcast from the other; its N, IDLE and HEARTBEAT pass through).
#
# PARTS (default "query template shared sse") picks the parts. Parts 1 and
# 2 run for each worker count in WORKERS (default "1 2"): ROUNDS
# alternating wrk rounds of DURATION seconds after a WARMUP, medians and
# per-round ratios. CPU per request is the figure to quote: on a 2-core
# machine wrk, PostgreSQL and the server share the cores, so requests/s
# mostly says who got the CPU.
#
# PostgreSQL is the Debian package's server started by this script as the
# `postgres` user (it refuses to run as root) on a data directory in the
# temp dir, on a random free port, with benchmark settings: fsync,
# synchronous_commit and full_page_writes off and autovacuum off. That is
# safe here because the benchmark only reads and the data is thrown away
# at exit; never run a database you keep that way.
#
# Run from anywhere (installs wrk, nginx, libnginx-mod-http-lua, lua-cosmo,
# postgresql, nodejs and npm with apt-get when missing):
#     bench/app.sh
#     WORKERS="1 2" DURATION=10 ROUNDS=3 CONNS=50 POOL=8 bench/app.sh
#     PARTS=query WORKERS=1 DURATION=3 ROUNDS=1 bench/app.sh   # a quick look
#
# Safety: only processes this script starts are stopped (by PID, trap on
# EXIT, the last started first, so that the servers go before their
# database); no sysctl change; loopback only; random ports above 20000 below
# the ephemeral range; every wait is bounded; everything lives in one temp
# dir (made traversable, not listable, by others so that the postgres user
# reaches its data directory), npm's cache included: no global npm state.

set -euo pipefail

WORKERS=${WORKERS:-"1 2"}
DURATION=${DURATION:-5}       # seconds per wrk round
WARMUP=${WARMUP:-2}           # seconds of wrk per server before the rounds
ROUNDS=${ROUNDS:-3}           # rounds per server (alternating)
CONNS=${CONNS:-50}            # wrk connections
THREADS=${THREADS:-1}         # wrk threads
POOL=${POOL:-8}               # database connections per worker process
PARTS=${PARTS:-"query template shared sse"}
SHARED_WORKERS=${SHARED_WORKERS:-2}   # WORKERS for bench/shared.sh
PG_NPM=${PG_NPM:-8.23.1}      # npm's pg, pinned

SCRIPT_TAG=app.sh
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
read -ra WORKER_COUNTS <<<"$WORKERS"
BIN=$ROOT/target/release/examples/app-bench
ROWS=10000

part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---- tools ------------------------------------------------------------------

LUA_MOD=/usr/lib/nginx/modules/ngx_http_lua_module.so
NDK_MOD=/usr/lib/nginx/modules/ndk_http_module.so
need_cmd wrk wrk
need_cmd curl curl
need_cmd python3 python3
if part query; then
    need_cmd node nodejs
    need_cmd npm npm
    need_cmd setpriv util-linux
    ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || NEED_PKGS+=(postgresql)
fi
if part template; then
    [ -f "$LUA_MOD" ] || NEED_PKGS+=(nginx libnginx-mod-http-lua)
    [ -f /usr/share/lua/5.1/cosmo.lua ] || NEED_PKGS+=(lua-cosmo)
fi
# shellcheck disable=SC2119 # no -q: say what is being installed
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if part query || part template; then
    build_release app-bench -p axkit-lua --example app-bench
fi

# ---- cleanup ----------------------------------------------------------------

make_tmp axkit-bench-app   # cleanup on EXIT: stop STARTED_PIDS by PID (last first), remove TMP
cd "$TMP"

TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))
server_ticks() {   # a master and its children
    local kids
    read -ra kids <<<"$(workers_of "$1")"
    cpu_ticks "$1" "${kids[@]}"
}
SUMMARY=$TMP/summary.md
: >"$SUMMARY"
note_load

axkit_conf() {   # axkit_conf PORT WORKERS EXTRA_GLOBAL PLUGIN
    cat <<EOF
Workers $2
PluginDir $TMP/plugins
$3
KeepAliveTimeout 120s
MaxKeepAliveRequests 0
<Server>
    Listen 127.0.0.1:$1
    Plugin $4
</Server>
EOF
}
mkdir -p "$TMP/plugins"

# measure NAME PID PORT PATH [PG] -> "REQ/S APP_US_PER_REQ PG_US_PER_REQ":
# one wrk run against NAME, with the CPU its master and workers (and, given
# PG, PostgreSQL's postmaster and backends) spent during it.
measure() {
    local name=$1 pid=$2 port=$3 path=$4 pg=${5:-} a0 a1 p0=0 p1=0 rps
    kill -0 "$pid" 2>/dev/null || die "$name (PID $pid) died before a wrk run"
    a0=$(server_ticks "$pid")
    [ -z "$pg" ] || p0=$(server_ticks "$pg")
    rps=$(run_wrk "$name" "$port" "$DURATION" "$path")
    a1=$(server_ticks "$pid")
    [ -z "$pg" ] || p1=$(server_ticks "$pg")
    awk -v r="$rps" -v a=$(( a1 - a0 )) -v p=$(( p1 - p0 )) -v u="$TICK_US" -v n="$(cat "$TMP/last-count")" \
        'BEGIN {if (n > 0) printf "%.0f %.1f %.1f\n", r, a * u / n, p * u / n; else print "0 0 0"}'
}

# rounds PREFIX PATH PG NAME:PID:PORT… — WARMUP then ROUNDS alternating
# rounds; each server's figures into the arrays PREFIX_RPS_NAME,
# PREFIX_CPU_NAME and PREFIX_PG_NAME (space-separated strings).
declare -A FIG ANOM
rounds() {
    local prefix=$1 path=$2 pg=$3 s name pid port r out rps cpu pgc old_dur
    shift 3
    old_dur=$DURATION; DURATION=$WARMUP
    for s in "$@"; do
        IFS=: read -r name pid port <<<"$s"
        measure "$name" "$pid" "$port" "$path" "$pg" >/dev/null
        : >"$TMP/anomalies-$name.txt"
    done
    DURATION=$old_dur
    for r in $(seq "$ROUNDS"); do
        for s in "$@"; do
            IFS=: read -r name pid port <<<"$s"
            out=$(measure "$name" "$pid" "$port" "$path" "$pg")
            read -r rps cpu pgc <<<"$out"
            FIG[${prefix}_rps_$name]+="$rps "
            FIG[${prefix}_cpu_$name]+="$cpu "
            FIG[${prefix}_pg_$name]+="$pgc "
            log "$prefix round $r: $name $rps req/s, $cpu µs CPU/request$([ -z "$pg" ] || echo ", PostgreSQL $pgc µs/request")"
        done
    done
}
med() { local v; read -ra v <<<"${FIG[$1]}"; median "${v[@]}"; }
anoms_line() { anoms "$1" | sed 's/^ *//' | paste -sd';' -; }   # anoms on one line
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {ok = (op == "<=") ? v <= t : v >= t; print ok ? "met" : "NOT met"}'; }

# ---- 1. single query ------------------------------------------------------------

start_postgres() {
    local bin run=()
    bin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)
    PG_VERSION=$("$bin/postgres" --version | awk '{print $3}')
    mkdir -p "$TMP/pg"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || die "no postgres user (the postgresql package makes it)"
        # PostgreSQL refuses to run as root; setpriv execs (the PID is the
        # postmaster's own). The temp dir: traversable, not listable.
        chmod 711 "$TMP"
        chown postgres: "$TMP/pg"
        run=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    must_pass "initdb failed" "${run[@]}" "$bin/initdb" -A trust -U postgres -E UTF8 --locale=C \
        --no-sync --no-instructions -D "$TMP/pg/data"
    pick_ports PG_PORT
    local max=$(( 3 * POOL * $(printf '%s\n' "${WORKER_COUNTS[@]}" | sort -n | tail -1) + 10 ))
    start_bg PG_PID "$TMP/pg/postgres.log" "${run[@]}" "$bin/postgres" -D "$TMP/pg/data" \
        -p "$PG_PORT" -k "" -c listen_addresses=127.0.0.1 -c max_connections="$max" \
        -c shared_buffers=64MB -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c autovacuum=off
    for _ in $(seq 300); do
        kill -0 "$PG_PID" 2>/dev/null || { cat "$TMP/pg/postgres.log" >&2; die "postgres exited at startup"; }
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.1
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || die "postgres not ready within 30 s"
    PSQL=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -X -q -A -t -v ON_ERROR_STOP=1)
    # Two -c: VACUUM cannot run in the transaction one -c with several statements is.
    must_pass "loading the world table failed" "${PSQL[@]}" -c "
        CREATE TABLE world (id integer PRIMARY KEY, randomnumber integer NOT NULL);
        INSERT INTO world SELECT i, 1 + floor(random() * $ROWS)::integer FROM generate_series(1, $ROWS) i;" \
        -c "VACUUM ANALYZE world"
    # Every row, to check the servers' answers against.
    "${PSQL[@]}" -F ' ' -c "SELECT id, randomnumber FROM world" >"$TMP/world.txt"
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    log "PostgreSQL $PG_VERSION PID $PG_PID port $PG_PORT: world has $(wc -l <"$TMP/world.txt") rows"
}

install_node_pg() {
    mkdir -p "$TMP/node"
    echo '{"private": true}' >"$TMP/node/package.json"
    # Into the temp dir, with a cache there too: nothing global is touched.
    # Bounded: a registry that does not answer ends the run.
    must_pass "npm install pg@$PG_NPM failed" timeout 300 npm install --prefix "$TMP/node" --cache "$TMP/npm-cache" \
        --no-audit --no-fund --no-update-notifier --no-package-lock "pg@$PG_NPM"
    cat >"$TMP/node/server.js" <<'EOF'
// node:http + pg's Pool, one cluster process per worker: node server.js PORT WORKERS POOL URL
"use strict";
const cluster = require("node:cluster");
const http = require("node:http");
const { Pool } = require("pg");
const [port, workers, pool, url] = process.argv.slice(2);
if (cluster.isPrimary) {
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  cluster.on("exit", () => process.exit(1));
} else {
  const db = new Pool({ connectionString: url, max: Number(pool) });
  http.createServer((req, res) => {
    // A named statement: prepared once per connection, as axkit keeps its statements.
    db.query({
      name: "world",
      text: "SELECT id, randomnumber FROM world WHERE id = $1",
      values: [1 + Math.floor(Math.random() * 10000)],
    }).then((r) => {
      const row = r.rows[0];
      const body = JSON.stringify({ id: row.id, randomNumber: row.randomnumber });
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
      res.end(body);
    }, (e) => {
      res.writeHead(503, { "Content-Type": "text/plain" });
      res.end(String(e));
    });
  }).listen(Number(port), "127.0.0.1");
}
EOF
    NODE_VERSION=$(node --version)
}

# check_rows NAME PORT: 20 answers, each the JSON of a real row.
check_rows() {
    python3 - "$1" "$2" "$TMP/world.txt" <<'EOF' || die "$1 answered wrongly"
import json, sys, urllib.request
name, port, table = sys.argv[1], sys.argv[2], sys.argv[3]
world = dict(tuple(map(int, line.split())) for line in open(table) if line.strip())
for _ in range(20):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/db", timeout=10) as resp:
        ctype, body = resp.headers.get("Content-Type"), resp.read()
    row = json.loads(body)
    if ctype != "application/json" or sorted(row) != ["id", "randomNumber"] \
            or world.get(row["id"]) != row["randomNumber"]:
        sys.exit(f"{name}: {ctype} {body!r} is not a row of world")
print(f"{name}: 20 answers, each a row of world ({body.decode()}, {ctype})", file=sys.stderr)
EOF
}

if part query; then
    log "single query: PostgreSQL, node $(node --version), pg@$PG_NPM"
    start_postgres
    install_node_pg
    cat >"$TMP/plugins/single_query.lua" <<'EOF'
-- TechEmpower's single query: one row by a random id, as JSON.
local db = postgres.get("main")
local random = math.random
function hook_response(r)
  local row = db:query_one("SELECT id, randomnumber FROM world WHERE id = $1", random(1, 10000))
  r:set_header("Content-Type", "application/json")
  r:write(json.encode({ id = row.id, randomNumber = row.randomnumber }))
  return OK
end
EOF
    DB_LINE="Database main $PG_URL pool=$POOL"
    for W in "${WORKER_COUNTS[@]}"; do
        pick_ports LUA_PORT RUST_PORT NODE_PORT
        axkit_conf "$LUA_PORT" "$W" "$DB_LINE" single_query >"$TMP/query-lua.conf"
        axkit_conf "$RUST_PORT" "$W" "$DB_LINE" rust_single_query >"$TMP/query-rust.conf"
        for c in lua rust; do must_pass "axkit rejected query-$c.conf" "$BIN" --check -c "$TMP/query-$c.conf"; done
        STARTUP_LOGS=("$TMP/query-lua.log" "$TMP/query-rust.log" "$TMP/node.log")
        start_bg LUA_PID "$TMP/query-lua.log" "$BIN" -c "$TMP/query-lua.conf"
        start_bg RUST_PID "$TMP/query-rust.log" "$BIN" -c "$TMP/query-rust.conf"
        start_bg NODE_PID "$TMP/node.log" node "$TMP/node/server.js" "$NODE_PORT" "$W" "$POOL" "$PG_URL"
        wait_up lua "$LUA_PID" "$LUA_PORT" /db
        wait_up rust "$RUST_PID" "$RUST_PORT" /db
        wait_up node "$NODE_PID" "$NODE_PORT" /db
        check_rows lua "$LUA_PORT"; check_rows rust "$RUST_PORT"; check_rows node "$NODE_PORT"
        log "single query, $W worker(s) each, pool $POOL per worker: $ROUNDS rounds x ${DURATION}s, $CONNS connections"
        rounds "q$W" /db "$PG_PID" "lua:$LUA_PID:$LUA_PORT" "rust:$RUST_PID:$RUST_PORT" "node:$NODE_PID:$NODE_PORT"
        stop_pid "$LUA_PID"; stop_pid "$RUST_PID"; stop_pid "$NODE_PID"
        for s in lua rust node; do ANOM[q$W$s]=$(anoms_line "$s"); rm -f "$TMP/anomalies-$s.txt"; done

        lc=$(med "q${W}_cpu_lua"); rc=$(med "q${W}_cpu_rust"); nc=$(med "q${W}_cpu_node")
        lr=$(ratio "$lc" "$nc"); rr=$(ratio "$rc" "$nc")
        cat >>"$SUMMARY" <<EOF

| single query, $W worker(s), pool=$POOL | lua (axkit) | rust (axkit) | node | lua/node | rust/node |
|---|---|---|---|---|---|
| app CPU µs/request (median) | $lc | $rc | $nc | **$lr** | **$rr** |
| app CPU µs/request (rounds) | ${FIG[q${W}_cpu_lua]}| ${FIG[q${W}_cpu_rust]}| ${FIG[q${W}_cpu_node]}| $(pair_ratios "${FIG[q${W}_cpu_lua]}" "${FIG[q${W}_cpu_node]}") | $(pair_ratios "${FIG[q${W}_cpu_rust]}" "${FIG[q${W}_cpu_node]}") |
| PostgreSQL CPU µs/request (median) | $(med "q${W}_pg_lua") | $(med "q${W}_pg_rust") | $(med "q${W}_pg_node") | | |
| requests/s (median) | $(med "q${W}_rps_lua") | $(med "q${W}_rps_rust") | $(med "q${W}_rps_node") | $(ratio "$(med "q${W}_rps_lua")" "$(med "q${W}_rps_node")") | $(ratio "$(med "q${W}_rps_rust")" "$(med "q${W}_rps_node")") |
| requests/s (rounds) | ${FIG[q${W}_rps_lua]}| ${FIG[q${W}_rps_rust]}| ${FIG[q${W}_rps_node]}| | |

Targets ($W worker(s)): lua <= 0.66x node's CPU/request: $(verdict "$lr" "<=" 0.66) (${lr}x); rust <= 0.5x: $(verdict "$rr" "<=" 0.5) (${rr}x).
wrk anomalies (Non-2xx / socket errors): lua: ${ANOM[q${W}lua]} · rust: ${ANOM[q${W}rust]} · node: ${ANOM[q${W}node]}
EOF
    done
    stop_pid "$PG_PID"
fi

# ---- 2. template page -------------------------------------------------------------

if part template; then
    log "template: a 20-row page, axkit Lua template.render vs nginx + lua-cosmo"
    # The same data on both sides, built once when the script loads; values
    # that need escaping in every row.
    DATA='local rows = {}
for i = 1, 20 do
  rows[i] = {
    id = i,
    name = "Guest " .. i,
    message = "Hello <b>#" .. i .. "</b> & \"welcome\", it'"'"'s row " .. i .. " of 20",
  }
end
local page = { title = "Guestbook <20 rows> & more", rows = rows }'
    mkdir -p "$TMP/templates" "$TMP/nginx/lua"
    # cosmo needs lpeg, a C module in the multiarch directory of Lua 5.1.
    LPEG_DIR=$(dirname "$(printf '%s\n' /usr/lib/*/lua/5.1/lpeg.so | head -1)")
    [ -f "$LPEG_DIR/lpeg.so" ] || die "no lpeg.so for Lua 5.1 (Debian lua-lpeg, a dependency of lua-cosmo)"
    cat >"$TMP/templates/page.html" <<'EOF'
<!doctype html>
<html><head><title>{{ title }}</title></head>
<body><h1>{{ title }}</h1>
<table>
{% for row in rows %}<tr><td>{{ row.id }}</td><td>{{ row.name }}</td><td>{{ row.message }}</td></tr>
{% endfor %}</table>
</body></html>
EOF
    cat >"$TMP/plugins/page.lua" <<EOF
-- A 20-row page from templates/page.html.
$DATA
function hook_response(r)
  r:set_header("Content-Type", "text/html; charset=utf-8")
  r:write(template.render("page.html", page))
  return OK
end
EOF
    cat >"$TMP/nginx/lua/cosmo_page.lua" <<EOF
-- The same page with lua-cosmo; \$h{…} escapes a value the way
-- minijinja's HTML autoescape does (& < > " ' /).
local cosmo = require "cosmo"
$DATA
local ESCAPES = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#x27;", ["/"] = "&#x2f;" }
page.h = function(arg) return (string.gsub(tostring(arg[1]), "[&<>\"'/]", ESCAPES)) end
local render = cosmo.compile([==[<!doctype html>
<html><head><title>\$h{\$title}</title></head>
<body><h1>\$h{\$title}</h1>
<table>
\$rows[[<tr><td>\$h{\$id}</td><td>\$h{\$name}</td><td>\$h{\$message}</td></tr>
]]</table>
</body></html>]==])
return { render = function() return render(page) end }
EOF
    for W in "${WORKER_COUNTS[@]}"; do
        pick_ports AX_PORT NG_PORT
        axkit_conf "$AX_PORT" "$W" "TemplateDir $TMP/templates" page >"$TMP/page.conf"
        cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$W" 20000 20000 "$NDK_MOD" "$LUA_MOD")
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path $TMP/nginx/client_body;
    lua_package_path "$TMP/nginx/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_package_cpath "$LPEG_DIR/?.so;;";
    # Loaded once in the master, as OpenResty advises: cosmo and lpeg set
    # globals, and cosmo required from content_by_lua failed ("attempt to
    # yield across C-call boundary").
    init_by_lua_block { page = require "cosmo_page" }
    server {
        listen 127.0.0.1:$NG_PORT;
        location / {
            content_by_lua_block {
                ngx.header["Content-Type"] = "text/html; charset=utf-8"
                ngx.print(page.render())
            }
        }
    }
}
EOF
        must_pass "axkit rejected page.conf" "$BIN" --check -c "$TMP/page.conf"
        nginx_check
        STARTUP_LOGS=("$TMP/page.log" "$TMP/nginx/error.log")
        start_bg AX_PID "$TMP/page.log" "$BIN" -c "$TMP/page.conf"
        nginx_start
        wait_up lua "$AX_PID" "$AX_PORT" /
        wait_up nginx "$NG_PID" "$NG_PORT" /
        curl -fsS -o "$TMP/page-lua.html" "http://127.0.0.1:$AX_PORT/"
        curl -fsS -o "$TMP/page-nginx.html" "http://127.0.0.1:$NG_PORT/"
        cmp -s "$TMP/page-lua.html" "$TMP/page-nginx.html" \
            || { diff "$TMP/page-lua.html" "$TMP/page-nginx.html" >&2 || true; die "the two pages differ"; }
        grep -q '&lt;b&gt;#20&lt;&#x2f;b&gt; &amp; &quot;welcome&quot;, it&#x27;s' "$TMP/page-lua.html" \
            || die "the page is not escaped as expected"
        PAGE_BYTES=$(stat -c %s "$TMP/page-lua.html")
        log "template, $W worker(s) each: both pages the same $PAGE_BYTES bytes; $ROUNDS rounds x ${DURATION}s, $CONNS connections"
        rounds "t$W" / "" "lua:$AX_PID:$AX_PORT" "nginx:$NG_PID:$NG_PORT"
        stop_pid "$AX_PID"; stop_pid "$NG_PID"
        for s in lua nginx; do ANOM[t$W$s]=$(anoms_line "$s"); rm -f "$TMP/anomalies-$s.txt"; done

        lq=$(med "t${W}_rps_lua"); nq=$(med "t${W}_rps_nginx")
        rq=$(ratio "$lq" "$nq")
        cat >>"$SUMMARY" <<EOF

| 20-row template page ($PAGE_BYTES bytes), $W worker(s) | lua (axkit, minijinja) | nginx + lua-cosmo | lua/nginx |
|---|---|---|---|
| requests/s (median) | $lq | $nq | **$rq** |
| requests/s (rounds) | ${FIG[t${W}_rps_lua]}| ${FIG[t${W}_rps_nginx]}| $(pair_ratios "${FIG[t${W}_rps_lua]}" "${FIG[t${W}_rps_nginx]}") |
| server CPU µs/request (median) | $(med "t${W}_cpu_lua") | $(med "t${W}_cpu_nginx") | $(ratio "$(med "t${W}_cpu_lua")" "$(med "t${W}_cpu_nginx")") |
| server CPU µs/request (rounds) | ${FIG[t${W}_cpu_lua]}| ${FIG[t${W}_cpu_nginx]}| $(pair_ratios "${FIG[t${W}_cpu_lua]}" "${FIG[t${W}_cpu_nginx]}") |

Target ($W worker(s)): lua >= 1.0x nginx + cosmo requests/s: $(verdict "$rq" ">=" 1.0) (${rq}x).
wrk anomalies (Non-2xx / socket errors): lua: ${ANOM[t${W}lua]} · nginx: ${ANOM[t${W}nginx]}
EOF
    done
fi

# ---- 3. and 4. the scripts of their own ------------------------------------------------

# included SCRIPT HEADING VAR=VALUE…: bench/SCRIPT run with VAR=VALUE… in
# its environment; its output, indented, under HEADING in the summary.
included() {
    local script=$1 heading=$2
    shift 2
    log "$heading"
    env "$@" "$BENCH_DIR/$script" >"$TMP/$script.out" || die "bench/$script failed"
    { echo; echo "$heading"; echo; sed 's/^/    /' "$TMP/$script.out"; } >>"$SUMMARY"
}
if part shared; then
    included shared.sh "Shared dictionary (bench/shared.sh, WORKERS=$SHARED_WORKERS; targets: get and set >= 1,000,000 ops/s each from Rust, no increment lost, long-poll idle CPU flat and all woken within 1 s):" \
        WORKERS="$SHARED_WORKERS"
fi
if part sse; then
    included sse.sh "Server-sent events (bench/sse.sh, ${N:-10000} streams on one of 2 workers; targets: CPU flat while idle, all woken within 1 s of a broadcast from the other worker):"
fi

# ---- summary ---------------------------------------------------------------------------

# The lines of the parts that ran; with only `shared`, the revision is the
# one bench/shared.sh built.
if part query || part template; then
    RUN=" · wrk -t$THREADS -c$CONNS -d${DURATION}s, ${WARMUP}s warm-up, $ROUNDS rounds alternating, median"
fi
echo
echo "---- summary (paste into docs/benchmarks.md) ----"
echo "Date: $(date -u +%Y-%m-%d) · $(nproc) cores · $(uname -r) · axkit ${AXKIT_REV:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)} (the working tree as built; \"-dirty\" = uncommitted changes)${RUN:-} · load avg before: $LOAD_BEFORE · other busy processes at start: ${BUSY:-none}"
if part query; then
    echo "Single query: PostgreSQL ${PG_VERSION:-?} (fsync, synchronous_commit, full_page_writes and autovacuum off: read-only benchmark) · node ${NODE_VERSION:-?} + pg@$PG_NPM · pool $POOL per worker process on every server"
fi
if part template; then
    echo "Template: $("$NGINX" -v 2>&1 | sed 's/.*: //') + libnginx-mod-http-lua $(dpkg-query -W -f '${Version}' libnginx-mod-http-lua 2>/dev/null) + lua-cosmo $(dpkg-query -W -f '${Version}' lua-cosmo 2>/dev/null)"
fi
cat "$SUMMARY"
