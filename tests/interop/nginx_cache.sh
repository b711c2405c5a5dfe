#!/usr/bin/env bash
# tests/interop/nginx_cache.sh — nginx (Debian package) as a caching
# reverse proxy in front of axkit, a deployment axkit supports: the front
# end caches what axkit says it may cache.
#
# Checks:
#   1. A file under `CacheControl "public, max-age=60"`: the first request
#      is a cache MISS, the second a HIT, and axkit saw exactly one request.
#   2. A file under `max-age=1` with `proxy_cache_revalidate on`: after it
#      goes stale, nginx revalidates with If-None-Match/If-Modified-Since,
#      axkit answers 304 (seen in axkit's own access log), and nginx reports
#      REVALIDATED and serves the cached body.
#   3. A Range request through the cache gets the right bytes.
#   4. A Location where axkit's own cache (`Cache On`) and compression
#      (`compress`) are on, nginx asking for gzip: MISS, HIT, and once
#      stale REVALIDATED, axkit answering nginx's conditional request
#      (the weak ETag of the gzip variant) with 304.
#
# Safety: random free ports above 20000 on 127.0.0.1, everything in one
# temp dir, only the processes started here are stopped (by PID).
set -euo pipefail

SCRIPT_TAG="nginx_cache.sh: FAIL"
source "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"

need_cmd nginx nginx-light
need_cmd curl curl
install_needed
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

(cd "$ROOT" && cargo build -q --bin axkit)
AXKIT=$ROOT/target/debug/axkit

make_tmp axkit-nginx-cache   # cleanup on EXIT: stop STARTED_PIDS by PID, remove TMP
pick_ports AX_PORT NG_PORT

mkdir -p "$TMP/www/fresh" "$TMP/www/stale" "$TMP/www/cc" "$TMP/nginx/cache"
echo "fresh content" >"$TMP/www/fresh/a.txt"
python3 -c 'import sys; sys.stdout.write("0123456789" * 10)' >"$TMP/www/stale/b.txt"
python3 -c 'import sys; sys.stdout.write("compressible line of text\n" * 200)' >"$TMP/www/cc/c.txt"

cat >"$TMP/axkit.conf" <<CONF
Workers 1
Plugin request_log
Plugin cache
Plugin compress
Compress off
RequestLog $TMP/axkit_access.log
RequestLogFormat "%>s %m %U"
$(axkit_static_server "$AX_PORT")
    <Location /fresh>
        CacheControl "public, max-age=60"
    </Location>
    <Location /stale>
        CacheControl "public, max-age=1"
    </Location>
    <Location /cc>
        CacheControl "public, max-age=1"
        Cache On
        Compress on
    </Location>
</Server>
CONF

cat >"$TMP/nginx/nginx.conf" <<CONF
$(nginx_main 1 64)
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    proxy_cache_path $TMP/nginx/cache keys_zone=axkit:1m;
    server {
        listen 127.0.0.1:$NG_PORT;
        location / {
            proxy_pass http://127.0.0.1:$AX_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache axkit;
            proxy_cache_revalidate on;
            add_header X-Cache \$upstream_cache_status always;
        }
        location /cc/ {
            proxy_pass http://127.0.0.1:$AX_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Accept-Encoding gzip;
            proxy_cache axkit;
            proxy_cache_revalidate on;
            add_header X-Cache \$upstream_cache_status always;
        }
    }
}
CONF

start_bg AX_PID "$TMP/axkit.log" "$AXKIT" --no-master -c "$TMP/axkit.conf"
nginx_start

# Wait for axkit directly (so nginx's cache stays empty until the checks).
STARTUP_LOGS=("$TMP/axkit.log" "$TMP/nginx/error.log")
wait_up axkit "$AX_PID" "$AX_PORT" /fresh/a.txt
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$NG_PORT/nothing-here" && break
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NG_PORT/nothing-here")" = 404 ] && break
    sleep 0.1
done

# fetch PATH [curl args…] -> prints "STATUS X-CACHE" and saves the body in $TMP/body
fetch() {
    local path=$1; shift
    curl -s -D "$TMP/head" -o "$TMP/body" "$@" "http://127.0.0.1:$NG_PORT$path" >/dev/null
    local status cache
    status=$(awk 'NR==1 {print $2}' "$TMP/head")
    cache=$(tr -d '\r' <"$TMP/head" | awk -F': ' 'tolower($1)=="x-cache" {print $2}')
    echo "$status ${cache:-none}"
}
# hits STATUS PATH -> how many such lines axkit logged
hits() {
    for _ in $(seq 20); do [ -s "$TMP/axkit_access.log" ] && break; sleep 0.05; done
    sleep 0.2
    grep -c "^$1 GET $2\$" "$TMP/axkit_access.log" || true
}

# 1. max-age=60: MISS, then HIT; one request reached axkit.
r=$(fetch /fresh/a.txt); [ "$r" = "200 MISS" ] || die "first /fresh/a.txt: $r (want 200 MISS)"
r=$(fetch /fresh/a.txt); [ "$r" = "200 HIT" ] || die "second /fresh/a.txt: $r (want 200 HIT)"
[ "$(cat "$TMP/body")" = "fresh content" ] || die "cached body differs"
n=$(hits 200 /fresh/a.txt)
# One from the start-up probe straight to axkit, one from nginx's MISS.
[ "$n" = 2 ] || die "axkit served /fresh/a.txt $n times (want 2: probe + MISS)"
log "cache HIT served by nginx without asking axkit"

# 2. max-age=1: stale after 2 s, revalidated with a 304 from axkit.
r=$(fetch /stale/b.txt); [ "$r" = "200 MISS" ] || die "first /stale/b.txt: $r"
sleep 2.2
r=$(fetch /stale/b.txt); [ "$r" = "200 REVALIDATED" ] || die "stale /stale/b.txt: $r (want 200 REVALIDATED)"
[ "$(cat "$TMP/body")" = "$(cat "$TMP/www/stale/b.txt")" ] || die "revalidated body differs"
[ "$(hits 304 /stale/b.txt)" = 1 ] || { cat "$TMP/axkit_access.log" >&2; die "axkit did not answer the revalidation with 304"; }
log "revalidation answered 304 by axkit; nginx served its cached copy"

# 3. The file changes: the next revalidation gets a 200 with the new body.
sleep 1.1
echo "changed" >"$TMP/www/stale/b.txt"
sleep 1.1
r=$(fetch /stale/b.txt)
[ "${r%% *}" = 200 ] || die "after change: $r"
[ "$(cat "$TMP/body")" = "changed" ] || die "after change, nginx served a stale body: $(cat "$TMP/body")"

# 4. A range through the cache.
r=$(fetch /fresh/a.txt -H 'Range: bytes=0-4')
[ "${r%% *}" = 206 ] && [ "$(cat "$TMP/body")" = "fresh" ] || die "range through cache: $r $(cat "$TMP/body")"

# 5. axkit's cache and compress behind nginx's cache.
want=$(cat "$TMP/www/cc/c.txt")
coding() { tr -d '\r' <"$TMP/head" | awk -F': ' 'tolower($1)=="content-encoding" {print $2}'; }
r=$(fetch /cc/c.txt --compressed); [ "$r" = "200 MISS" ] || die "first /cc/c.txt: $r (want 200 MISS)"
[ "$(coding)" = gzip ] || die "/cc/c.txt: Content-Encoding '$(coding)' (want gzip)"
[ "$(cat "$TMP/body")" = "$want" ] || die "/cc/c.txt: body differs after gunzip"
r=$(fetch /cc/c.txt --compressed); [ "$r" = "200 HIT" ] || die "second /cc/c.txt: $r (want 200 HIT)"
[ "$(cat "$TMP/body")" = "$want" ] || die "/cc/c.txt: cached body differs after gunzip"
sleep 2.2
r=$(fetch /cc/c.txt --compressed); [ "$r" = "200 REVALIDATED" ] || { cat "$TMP/axkit_access.log" >&2; die "stale /cc/c.txt: $r (want 200 REVALIDATED)"; }
[ "$(coding)" = gzip ] || die "revalidated /cc/c.txt: Content-Encoding '$(coding)' (want gzip)"
[ "$(cat "$TMP/body")" = "$want" ] || die "revalidated /cc/c.txt: body differs after gunzip"
[ "$(hits 304 /cc/c.txt)" = 1 ] || { cat "$TMP/axkit_access.log" >&2; die "axkit did not answer the revalidation of the gzip variant with 304"; }
log "cache+compress: MISS, HIT, 304 from axkit, REVALIDATED in nginx"

[ ! -s "$TMP/nginx/error.log" ] || { cat "$TMP/nginx/error.log" >&2; }
echo "nginx_cache.sh: ok (MISS→HIT; stale→304→REVALIDATED; change seen; range; the same with axkit's cache and gzip)"
