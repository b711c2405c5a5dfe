# bench/lib.sh — shell helpers shared by the benchmark scripts (bench/*.sh)
# and the interop tests (tests/interop/*.sh). Sourced, never run:
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"               # bench/
#     source "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"   # tests/interop/
# Set SCRIPT_TAG first: it prefixes die's message ("static.sh",
# "redbot.sh: FAIL", …).
#
# Sets: BENCH_DIR (this directory), ROOT (the repository), TMP (after
# make_tmp), STARTED_PIDS (processes to stop on exit), HOLDER_FDS
# (descriptors to close on exit), NEED_PKGS (packages to install).
#
# Functions:
#   log MSG…             "== MSG" on stderr.
#   die MSG…             "$SCRIPT_TAG: MSG" on stderr, exit 1.
#   apt_install PKG…     apt-get update + install, quietly.
#   need_cmd CMD PKG…    queue PKG… in NEED_PKGS unless CMD is on PATH or
#                        in /usr/sbin.
#   install_needed [-q]  install NEED_PKGS if any ("installing …" logged
#                        unless -q).
#   build_release WHAT CARGO_ARGS…
#                        set AXKIT_REV (git describe of the tree), log
#                        "building WHAT (release) at REV", cargo build
#                        --release -q CARGO_ARGS… in ROOT.
#   make_tmp NAME        TMP=/tmp/NAME.XXXXXX (mktemp -d); install the
#                        cleanup traps (EXIT: cleanup; INT/TERM: exit 130).
#   stop_pid PID         SIGTERM, up to 5 s, then SIGKILL; then its
#                        children (recorded before) get 2 s, then SIGKILL.
#   cleanup              close HOLDER_FDS, stop_pid every STARTED_PIDS
#                        entry (the last started first), remove TMP.
#   start_bg VAR LOG CMD…  run CMD in the background (stdout+stderr to LOG),
#                        PID into VAR and into STARTED_PIDS.
#   must_pass MSG CMD…   run CMD (output to $TMP/check.log); on failure show
#                        that output and die MSG.
#   pick_ports VAR…      a distinct random free 127.0.0.1 port above 20000
#                        and below the ephemeral range (30000 at most when
#                        that range starts low) into each VAR: bindable
#                        and no socket using it; 50 tries each.
#   wait_up NAME PID PORT PATH [BODY]
#                        up to 10 s (100 x 0.1 s) for a 2xx on PATH (and,
#                        given BODY, that exact body); dies if PID exits
#                        or time runs out, after showing the files listed
#                        in STARTUP_LOGS.
#   workers_of PID       the PIDs of PID's children, space-separated.
#   mem_kib PID…         "PSS RSS" in KiB summed over PIDs; PSS is
#                        Pss_Anon + Pss_Shmem (anonymous memory only).
#   mem_of PID           "PSS RSS" in bytes over PID and its children (PSS
#                        as in mem_kib).
#   established PORT     server-side established TCP connections on PORT.
#   cpu_ticks PID…       user+system clock ticks summed over PIDs.
#   cpu_us_per_req TICKS_BEFORE PID
#                        µs of CPU per request of the last run_wrk: PID's
#                        and its workers' ticks since TICKS_BEFORE (from
#                        cpu_ticks) over the requests it counted.
#   idle_static_setup WORKERS
#                        scale.sh's setup: $TMP/www/1k.bin, AX_PORT and
#                        NG_PORT, $TMP/axkit.conf and $TMP/nginx/nginx.conf
#                        (WORKERS workers, 120 s keep-alive, no access log).
#   axkit_static_server PORT
#                        the opening of an axkit <Server> serving files
#                        from $TMP/www on 127.0.0.1:PORT (uri_to_file,
#                        fast_mime_map, serve_file); the caller adds any
#                        further lines and </Server>.
#   nginx_user           "user root;" when run as root, else nothing.
#   nginx_main WORKERS WORKER_CONNECTIONS [RLIMIT_NOFILE [MODULE.so…]]
#                        the main context of an nginx.conf: user (as
#                        root), load_module for each MODULE (nginx wants
#                        them first), worker_processes, worker_rlimit_nofile
#                        (if not empty), pid and error_log in $TMP/nginx,
#                        events.
#   nginx_check          nginx -t on $TMP/nginx/nginx.conf, die if rejected.
#   nginx_start          nginx on $TMP/nginx/nginx.conf in the foreground
#                        (daemon off) in the background; PID in NG_PID.
#   start_axkit_nginx PATH
#                        check $TMP/axkit.conf ($AXKIT) and nginx.conf,
#                        start both (AX_PID, NG_PID), wait_up each on PATH.
#   h2o_static_start PORT THREADS
#                        h2o serving $TMP/www on 127.0.0.1:PORT with
#                        THREADS threads (its workers), no access log,
#                        config in $TMP/h2o; PID in H2O_PID, wait_up on /1k.bin.
#   run_wrk NAME PORT SECS PATH [WRK_ARGS…]
#                        wrk -t$THREADS -c$CONNS (bounded by timeout),
#                        prints req/s; Non-2xx/socket errors are echoed
#                        and appended to $TMP/anomalies-NAME.txt; request
#                        count left in $TMP/last-count.
#   anoms NAME           the anomalies of NAME counted, or "    none".
#   hold_idle_start NAME PORT COUNT HOLDERS SECONDS
#                        HOLDERS bench/hold_idle.py processes (source
#                        addresses 127.0.0.2, .3, …; the fd limit is 20,000
#                        a process) open COUNT idle keep-alive connections to
#                        PORT between them, each after one GET /1k.bin, held
#                        at most SECONDS; waits (up to 90 s) until all are
#                        ready; sets HOLD_OK and HOLD_FAILED.
#   hold_idle_end NAME   ask each holder how many of its connections are
#                        still open (HOLD_OPEN, HOLD_CLOSED), then release
#                        them all.
#   note_load            set LOAD_BEFORE (load average) and BUSY (other
#                        processes at >= 20% CPU).
#   median N…            median of numbers.
#   ratio A B            A/B to 2 decimals ("n/a" when B is 0).
#   pair_ratios "A1 A2…" "B1 B2…"  "r1 r2… (median m)", ri = Ai/Bi.
#
# Safety rules every user keeps: only processes started here are stopped,
# by PID, from the EXIT trap; no sysctl is changed; loopback only; every
# loop is bounded.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SCRIPT_TAG=${SCRIPT_TAG:-$(basename "$0")}
STARTED_PIDS=()
HOLDER_FDS=()
NEED_PKGS=()
STARTUP_LOGS=()
TMP=""

log() { printf '== %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$SCRIPT_TAG" "$*" >&2; exit 1; }

# ---- tools ------------------------------------------------------------------

apt_install() {
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
}
need_cmd() {
    local cmd=$1; shift
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || NEED_PKGS+=("$@")
}
install_needed() {
    [ ${#NEED_PKGS[@]} -gt 0 ] || return 0
    [ "${1:-}" = -q ] || log "installing ${NEED_PKGS[*]}"
    apt_install "${NEED_PKGS[@]}"
}
build_release() {
    local what=$1; shift
    AXKIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
    log "building $what (release) at $AXKIT_REV"
    (cd "$ROOT" && cargo build --release -q "$@")
}
# The stock axkit binary in $PROFILE (release, or debug for a smoke run of
# a script: its figures mean nothing): sets AXKIT to its path. With
# AXKIT_BIN=PATH, that binary instead, built elsewhere (the "before" of an
# A/B), named by AXKIT_REV if set.
build_axkit() {
    if [ -n "${AXKIT_BIN:-}" ]; then
        AXKIT=$AXKIT_BIN
        AXKIT_REV=${AXKIT_REV:-$AXKIT_BIN}
        return
    fi
    case "${PROFILE:-release}" in
        release) build_release axkit -p axkit-cli ;;
        debug)
            AXKIT_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
            log "building axkit (debug: figures are not representative) at $AXKIT_REV"
            (cd "$ROOT" && cargo build -q -p axkit-cli) ;;
        *) die "PROFILE is release or debug" ;;
    esac
    AXKIT=$ROOT/target/${PROFILE:-release}/axkit
}

# ---- temp dir, processes, cleanup -------------------------------------------

make_tmp() {
    TMP=$(mktemp -d "/tmp/$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}
stop_pid() {
    local pid=$1 i k kids
    kill -0 "$pid" 2>/dev/null || return 0
    kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "PID $pid ignored SIGTERM for 5 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for k in $kids; do
        for i in $(seq 20); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$k" 2>/dev/null || true
    done
}
cleanup() {
    local fd i
    for fd in "${HOLDER_FDS[@]}"; do eval "exec $fd>&-" 2>/dev/null || true; done
    # The last started first: a server goes before the database it uses.
    for (( i = ${#STARTED_PIDS[@]} - 1; i >= 0; i-- )); do stop_pid "${STARTED_PIDS[$i]}"; done
    [ -z "$TMP" ] || rm -rf "$TMP"
}
start_bg() {
    local var=$1 out=$2; shift 2
    "$@" >"$out" 2>&1 &
    printf -v "$var" '%s' "$!"
    STARTED_PIDS+=("$!")
}
must_pass() {
    local msg=$1; shift
    "$@" >"$TMP/check.log" 2>&1 || { cat "$TMP/check.log" >&2; die "$msg"; }
}

# ---- ports and start-up -----------------------------------------------------

pick_ports() {
    local eph_lo hi var p i taken=" "
    read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range
    hi=$(( eph_lo > 20100 ? eph_lo - 1 : 30000 ))
    for var in "$@"; do
        p=""
        for i in $(seq 50); do
            p=$(( 20001 + RANDOM % (hi - 20001) ))
            case "$taken" in *" $p "*) p=""; continue ;; esac
            if python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null \
                && ! ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then
                break
            fi
            p=""
        done
        [ -n "$p" ] || die "no free port found"
        taken+="$p "
        printf -v "$var" '%s' "$p"
    done
}
startup_logs() {
    local f
    for f in "${STARTUP_LOGS[@]}"; do [ -s "$f" ] && cat "$f" >&2; done
    return 0
}
wait_up() {
    local name=$1 pid=$2 port=$3 path=$4 i body
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { startup_logs; die "$name (PID $pid) exited at startup"; }
        if body=$(curl -fs "http://127.0.0.1:$port$path" 2>/dev/null); then
            if [ $# -lt 5 ] || [ "$body" = "$5" ]; then return 0; fi
        fi
        sleep 0.1
    done
    startup_logs
    die "$name did not answer on port $port within 10 s"
}

# ---- measuring --------------------------------------------------------------

workers_of() { ps -o pid= --ppid "$1" | tr -d ' ' | tr '\n' ' '; }
mem_kib() {
    local p pss=0 rss=0 v
    for p in "$@"; do
        v=$(awk '/^Pss_Anon:|^Pss_Shmem:/ {s += $2} END {print s + 0}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        pss=$(( pss + ${v:-0} ))
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        rss=$(( rss + ${v:-0} ))
    done
    echo "$pss $rss"
}
mem_of() {
    local pss rss
    read -r pss rss < <(mem_kib "$1" $(workers_of "$1"))
    echo "$(( pss * 1024 )) $(( rss * 1024 ))"
}
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }
cpu_ticks() {
    local p t=0
    for p in "$@"; do t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done
    echo "$t"
}

cpu_us_per_req() {
    local tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
    awk -v t=$(( $(cpu_ticks "$2" $(workers_of "$2")) - $1 )) -v u="$tick_us" -v n="$(cat "$TMP/last-count")" \
        'BEGIN {if (n > 0) printf "%.1f", t * u / n; else print 0}'
}

# ---- configs ----------------------------------------------------------------

axkit_static_server() {
    cat <<EOF
<Server>
    Listen 127.0.0.1:$1
    DocumentRoot $TMP/www
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
EOF
}

# The idle many-connections setup of scale.sh and base_rss.sh: $TMP/www
# with the 1 KiB file, AX_PORT and NG_PORT, $TMP/axkit.conf and
# $TMP/nginx/nginx.conf serving it with WORKERS workers each (120 s
# keep-alive, no access log, 19,500 / 20,000 connections a worker).
idle_static_setup() {
    mkdir -p "$TMP/www" "$TMP/nginx"
    python3 -c 'import sys; sys.stdout.write(("0123456789abcdef" * 64)[:1024])' >"$TMP/www/1k.bin"
    pick_ports AX_PORT NG_PORT

    cat >"$TMP/axkit.conf" <<EOF
Workers $1
OpenFileCache 10000 1s
KeepAliveTimeout 120s
HeaderTimeout 120s
MaxKeepAliveRequests 0
MaxConnections 19500
$(axkit_static_server "$AX_PORT")
</Server>
EOF

    cat >"$TMP/nginx/nginx.conf" <<EOF
$(nginx_main "$1" 20000 20000)
http {
    access_log off;
    open_file_cache max=10000 inactive=60s; open_file_cache_valid 1s;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_header_timeout 120s;
    types { application/octet-stream bin; }
    client_body_temp_path $TMP/nginx/client_body;
    server {
        listen 127.0.0.1:$NG_PORT;
        root $TMP/www;
    }
}
EOF
}

# ---- nginx ------------------------------------------------------------------

nginx_user() { if [ "$(id -u)" = 0 ]; then echo "user root;"; fi; }
nginx_main() {
    local m
    nginx_user
    for m in "${@:4}"; do echo "load_module $m;"; done
    echo "worker_processes $1;"
    if [ -n "${3:-}" ]; then echo "worker_rlimit_nofile $3;"; fi
    echo "pid $TMP/nginx/nginx.pid;"
    echo "error_log $TMP/nginx/error.log warn;"
    echo "events { worker_connections $2; }"
}
nginx_check() {
    "$NGINX" -t -q -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
        || die "nginx rejected its config"
}
nginx_start() {
    start_bg NG_PID "$TMP/nginx/stdout.log" \
        "$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" -g 'daemon off;'
}

start_axkit_nginx() {
    must_pass "axkit rejected its config" "$AXKIT" --check -c "$TMP/axkit.conf"
    nginx_check
    start_bg AX_PID "$TMP/axkit.log" "$AXKIT" -c "$TMP/axkit.conf"
    nginx_start
    wait_up axkit "$AX_PID" "$AX_PORT" "$1"
    wait_up nginx "$NG_PID" "$NG_PORT" "$1"
}

# ---- h2o --------------------------------------------------------------------

h2o_static_start() {
    mkdir -p "$TMP/h2o"
    # As root h2o would switch to nobody, who cannot read the 0700 $TMP.
    cat >"$TMP/h2o/h2o.conf" <<EOF
$([ "$(id -u)" = 0 ] && echo "user: root")
listen:
  host: 127.0.0.1
  port: $1
num-threads: $2
max-connections: 20000
hosts:
  default:
    paths:
      /:
        file.dir: $TMP/www
EOF
    must_pass "h2o rejected its config" h2o -t -c "$TMP/h2o/h2o.conf"
    start_bg H2O_PID "$TMP/h2o/stdout.log" h2o -c "$TMP/h2o/h2o.conf"
    wait_up h2o "$H2O_PID" "$1" /1k.bin
}

# ---- idle connections -------------------------------------------------------

HOLD_PIDS=()
hold_idle_start() {
    local name=$1 port=$2 count=$3 holders=$4 secs=$5 i p fd ready=0 line
    local per=$(( count / holders ))
    HOLD_PIDS=()
    for i in $(seq "$holders"); do
        mkfifo "$TMP/hold-$name-$i.in"
        python3 "$BENCH_DIR/hold_idle.py" 127.0.0.1 "$port" "$per" "127.0.0.$(( i + 1 ))" "$secs" \
            <"$TMP/hold-$name-$i.in" >"$TMP/hold-$name-$i.out" 2>&1 &
        HOLD_PIDS+=($!); STARTED_PIDS+=($!)
        exec {fd}>"$TMP/hold-$name-$i.in"
        HOLDER_FDS+=("$fd")
    done
    for i in $(seq 900); do
        ready=$(cat "$TMP"/hold-"$name"-*.out | grep -c '^ready' || true)
        [ "$ready" -ge "$holders" ] && break
        for p in "${HOLD_PIDS[@]}"; do
            kill -0 "$p" 2>/dev/null || { cat "$TMP"/hold-"$name"-*.out >&2; die "a holder for $name exited early"; }
        done
        sleep 0.1
    done
    [ "$ready" -ge "$holders" ] || die "holders for $name not ready within 90 s"
    HOLD_OK=0; HOLD_FAILED=0
    for i in $(seq "$holders"); do
        line=$(grep '^ready' "$TMP/hold-$name-$i.out")
        HOLD_OK=$(( HOLD_OK + $(sed -E 's/.*ok=([0-9]+).*/\1/' <<<"$line") ))
        HOLD_FAILED=$(( HOLD_FAILED + $(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$line") ))
        [[ "$line" == *"failed=0"* ]] || log "$name holder $i: $line"
    done
}
hold_idle_end() {
    local name=$1 n=${#HOLD_PIDS[@]} i p fd line
    for fd in "${HOLDER_FDS[@]}"; do echo check >&"$fd"; done
    for i in $(seq 100); do
        [ "$(cat "$TMP"/hold-"$name"-*.out | grep -c '^open=' || true)" -ge "$n" ] && break
        sleep 0.1
    done
    HOLD_OPEN=0; HOLD_CLOSED=0
    for i in $(seq "$n"); do
        line=$(grep '^open=' "$TMP/hold-$name-$i.out" || echo "open=0 closed=0")
        HOLD_OPEN=$(( HOLD_OPEN + $(sed -E 's/open=([0-9]+).*/\1/' <<<"$line") ))
        HOLD_CLOSED=$(( HOLD_CLOSED + $(sed -E 's/.*closed=([0-9]+).*/\1/' <<<"$line") ))
    done
    for fd in "${HOLDER_FDS[@]}"; do exec {fd}>&-; done
    HOLDER_FDS=()
    for p in "${HOLD_PIDS[@]}"; do
        for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        stop_pid "$p"
    done
    HOLD_PIDS=()
}

# ---- wrk and arithmetic -----------------------------------------------------

run_wrk() {
    local name=$1 port=$2 secs=$3 path=$4 out
    shift 4
    out="$TMP/wrk-$name-$RANDOM.txt"
    timeout $(( secs + 30 )) wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" "$@" \
        "http://127.0.0.1:$port$path" >"$out" 2>&1 || { cat "$out" >&2; die "wrk against $name failed"; }
    grep -E 'Non-2xx|Socket errors' "$out" | sed "s/^/   [$name] /" >&2 || true
    grep -E 'Non-2xx|Socket errors' "$out" >>"$TMP/anomalies-$name.txt" || true
    awk '/requests in/ {print $1}' "$out" >"$TMP/last-count"
    awk '/^Requests\/sec:/ {print $2}' "$out"
}
anoms() { [ -s "$TMP/anomalies-$1.txt" ] && sort "$TMP/anomalies-$1.txt" | uniq -c | sed 's/^ */    /' || echo "    none"; }
note_load() {
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    # Other busy processes right now (fuzzers, builds, another benchmark): noise.
    BUSY=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 20 {printf "%s%s %s%%", sep, $2, $1; sep=", "}')
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a/b; else print "n/a"}'; }
pair_ratios() {
    local -a a=($1) n=($2) r=()
    local i
    for i in "${!a[@]}"; do r+=("$(ratio "${a[$i]}" "${n[$i]}")"); done
    echo "${r[*]} (median $(median "${r[@]}"))"
}
