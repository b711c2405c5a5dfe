//! State shared across worker processes, end to end with the real binary
//! and Lua scripts: `incr` from every worker loses nothing; values survive
//! SIGHUP (while the zone's size is unchanged) and a killed worker; TTL,
//! `add`/`replace`/`cas` and typed values from Lua; a small zone evicts
//! and counts; a worker killed while it hammers a zone (so, most likely,
//! holding its lock) does not wedge the worker after it; a broadcast from
//! one worker wakes the requests waiting in the others; what a script
//! passes (spans of time, tiny ttls, made-up zone names) is taken within
//! bounds; the directives are checked (`--check`).
//!
//! The zones' own structures (allocator, hash table, journal, lock
//! recovery at every step of a mutation) are unit-tested in
//! `crates/axkit-shared`.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::io::Write;
use std::time::Duration;

use common::*;

/// A script answering `/incr`, `/get?k=` and `/set?k=&v=` (in zone `z`,
/// `default` by default), `/stats`, `/wait?n=` (counts itself in
/// `waitingN`, then waits on channel `ch` for up to 20 s), `/send?m=` and
/// `/spin` (big values into zone `spin`, for ever); each answer starts with the number this
/// worker drew at its first request (`me`).
const KV: &str = r#"
local id
local function me()
  id = id or shared.incr("worker-ids", 1, 0)
  return id
end

function hook_response(r)
  local p = r:path()
  r:set_header("Content-Type", "text/plain")
  if p == "/incr" then
    r:write(me(), " ", shared.incr("hits", 1, 0))
  elseif p == "/get" then
    local v = shared.zone(r:param("z") or "default"):get(r:param("k"))
    r:write(me(), " ", tostring(v))
  elseif p == "/set" then
    local z = shared.zone(r:param("z") or "default")
    r:write(me(), " ", tostring(z:set(r:param("k"), r:param("v"))))
  elseif p == "/stats" then
    local s = shared.zone(r:param("z") or "default"):stats()
    r:write(s.entries, " ", s.evictions, " ", s.recoveries)
  elseif p == "/wait" then
    local who = me()
    shared.incr("waiting" .. r:param("n"), 1, 0)
    local m, err = shared.wait("ch", tonumber(r:param("t") or "20"))
    r:write(who, " ", m or err)
  elseif p == "/waiting" then
    r:write(me(), " ", shared.waiting())
  elseif p == "/send" then
    r:write(me(), " ", tostring(shared.broadcast("ch", r:param("m"))))
  elseif p == "/spin" then
    shared.set("spinning", true)
    -- Mostly busy in the zone (copying big values in, evicting), with a
    -- pause now and then so that the worker still answers its other
    -- connections.
    local z, big = shared.zone("spin"), string.rep("x", 60000)
    for i = 1, math.huge do
      z:set("big" .. i % 100, big)
      if i % 200 == 0 then sleep(0.0005) end
    end
  else
    return 404
  end
  return OK
end
"#;

fn conf(workers: usize, global: &str) -> String {
    lua::conf(
        &format!("Workers {workers}\nLuaTimeLimit 60s\n{global}"),
        "    Plugin kv",
    )
}

fn start(workers: usize, global: &str) -> Axkit {
    Axkit::start_with(&conf(workers, global), &[], |d| {
        d.write("plugins/kv.lua", KV);
    })
}

fn text(srv: &Axkit, path: &str) -> String {
    let r = get(srv, path, "");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

/// The answer without the worker's number.
fn answer(srv: &Axkit, path: &str) -> String {
    let t = text(srv, path);
    t.split_once(' ')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(t)
}

#[test]
fn incr_from_every_worker_loses_nothing() {
    let srv = start(2, "");
    let addr = srv.addr;
    // Threads send batches of keep-alive requests on new connections,
    // concurrently, until both workers have counted (the kernel picks the
    // worker that accepts a connection).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                while sent < 250 || (seen.lock().unwrap().len() < 2 && sent < 5000) {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                    for _ in 0..25 {
                        s.write_all(b"GET /incr HTTP/1.1\r\nHost: x\r\n\r\n")
                            .unwrap();
                        let r = read_response(&mut s);
                        assert_eq!(r.status, 200);
                        let worker = r.text().split(' ').next().unwrap().to_string();
                        seen.lock().unwrap().insert(worker);
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    let sent: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(seen.lock().unwrap().len(), 2, "both workers counted");
    assert_eq!(answer(&srv, "/get?k=hits"), sent.to_string());
}

/// One response from a keep-alive connection.
fn read_response(s: &mut std::net::TcpStream) -> Response {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = parse_response(&buf) {
            if r.len == buf.len() {
                return r;
            }
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {}", lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn values_survive_a_reload_and_a_killed_worker() {
    let global = "SharedZone sessions 128K\nSharedZone resized 64K";
    let mut srv = start(2, global);
    for z in ["default", "sessions", "resized"] {
        assert_eq!(answer(&srv, &format!("/set?z={z}&k=a&v={z}1")), "true");
    }
    // A reload that keeps two zones as they are and resizes the third.
    std::fs::write(
        &srv.conf,
        config_text(
            &srv.dir,
            &conf(2, "SharedZone sessions 128K\nSharedZone resized 128K"),
        ),
    )
    .unwrap();
    let before = srv.workers();
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("configuration reloaded", Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(20), || srv
        .workers()
        .iter()
        .all(|w| !before.contains(w))));
    assert_eq!(answer(&srv, "/get?k=a"), "default1");
    assert_eq!(answer(&srv, "/get?z=sessions&k=a"), "sessions1");
    assert_eq!(
        answer(&srv, "/get?z=resized&k=a"),
        "nil",
        "a resized zone starts empty"
    );

    // kill -9 of every worker in turn: their replacements see it all.
    for victim in srv.workers() {
        signal(victim, libc::SIGKILL);
        assert!(wait_until(Duration::from_secs(20), || {
            let now = srv.workers();
            now.len() == 2 && !now.contains(&victim) && now.iter().all(|&p| alive(p))
        }));
    }
    assert_eq!(answer(&srv, "/get?k=a"), "default1");
    assert_eq!(answer(&srv, "/get?z=sessions&k=a"), "sessions1");
    // An undeclared zone is a clear error (a 500 with the reason logged).
    let r = get(&srv, "/get?z=nope&k=a", "");
    assert_eq!(r.status, 500);
    srv.wait_stderr("no shared zone `nope`", Duration::from_secs(10));
}

/// The API from Lua, in one process: types, flags, TTL, add/replace/cas,
/// incr's init, errors as values or raised.
#[test]
fn the_lua_api() {
    let script = r#"
function hook_response(r)
  local out = {}
  local function say(...) out[#out + 1] = table.concat({...}, " ") end
  shared.set("s", "text", 0, 7)
  local v, flags, ttl, version = shared.get("s")
  say(v, flags, tostring(ttl), math.type(version))
  shared.set("i", 41)
  say(math.type(shared.get("i")), shared.incr("i", 1), math.type(shared.incr("i", 0.5)))
  shared.set("t", { 1, 2, x = { y = true } })
  local t = shared.get("t")
  say(#t, t[2], tostring(t.x.y))
  say(tostring(shared.add("s", "x")), select(2, shared.add("s", "x")))
  say(tostring(shared.replace("new", "x")), select(2, shared.replace("new", "x")))
  say(tostring(shared.cas("s", "wrong", "x")), select(2, shared.cas("s", "wrong", "x")))
  say(tostring(shared.cas("s", "text", "swapped")), (shared.get("s")))
  local _, _, _, ver = shared.get("s")
  say(tostring(shared.cas_version("s", ver, "v2")), tostring(shared.cas_version("s", ver, "v3")))
  say(tostring(shared.incr("missing", 1)), select(2, shared.incr("missing", 1)))
  say(shared.incr("fresh", 5, 10), tostring(shared.incr("s", 1)))
  shared.set("short", "x", 0.05)
  local left = shared.ttl("short")
  say(tostring(left > 0 and left <= 0.05), shared.ttl("s"))
  sleep(0.1)
  say(tostring(shared.get("short")), tostring(shared.delete("s")), tostring(shared.get("s")))
  shared.set("gone", "x"); shared.set("gone", nil)
  say(tostring(shared.get("gone")))
  say(tostring(pcall(shared.set, "f", function() end)))
  say(tostring(pcall(shared.set, "", 1)))
  local z = shared.zone("default")
  say(z:get("i"), (z.get("i")))
  local stats = shared.stats()
  say(tostring(stats.entries > 0), tostring(stats.expired >= 1))
  r:write(table.concat(out, "\n"))
  return OK
end
"#;
    let mut srv = lua::start(&lua::conf("", "    Plugin api"), &[("api", script)]);
    let r = get(&srv, "/", "");
    assert_eq!(r.status, 200, "{}", srv.stderr());
    let lines: Vec<String> = r.text().lines().map(str::to_string).collect();
    let expect = [
        "text 7 nil integer",
        "integer 42 float",
        "2 2 true",
        "false exists",
        "false not found",
        "false changed",
        "true swapped",
        "true false",
        "nil not found",
        "15 nil",
        "true 0.0",
        "nil true nil",
        "nil",
        "false",
        "false",
        "42.5 42.5",
        "true true",
    ];
    assert_eq!(lines, expect, "{}", r.text());
}

/// A table that holds one subtable twice at each of 20 levels is a few
/// hundred bytes in Lua and a million leaves copied out; a table of 200
/// references to one 1 MiB string, 200 MiB of JSON. Both are refused once
/// their copy outgrows the zone (or LuaMemoryLimit), before they cost the
/// worker that much memory (without the bound: +160 MB and +300 MB).
#[test]
fn a_value_repeating_a_subtable_is_refused_before_it_outgrows_the_zone() {
    let script = r#"
function hook_response(r)
  if r:path() == "/dag" then
    local t = {1}
    for i = 1, 20 do t = {t, t} end
    local ok, err = shared.zone("small"):set("dag", t)
    local ok2, err2 = shared.zone("small"):cas("dag", t, 1)
    r:write(tostring(ok), " ", tostring(err), "|", tostring(ok2), " ", tostring(err2))
  else
    local s, t = string.rep("x", 1 << 20), {}
    for i = 1, 200 do t[i] = s end
    local ok, err = pcall(json.encode, t)
    r:write(tostring(ok), " ", tostring(err))
  end
  return OK
end
"#;
    let mut srv = lua::start(
        &lua::conf("SharedZone small 64K\nLuaMemoryLimit 16M", "    Plugin dag"),
        &[("dag", script)],
    );
    let pid = srv.pid();
    let peak = || status_kib(pid, "VmHWM");
    assert_eq!(get(&srv, "/", "").status, 200, "{}", srv.stderr());
    let before = peak();
    let r = get(&srv, "/dag", "");
    assert_eq!(
        r.text(),
        "false value too big for the zone|false value too big for the zone",
        "{}",
        srv.stderr()
    );
    let dag = peak() - before;
    let r = get(&srv, "/json", "");
    assert!(
        r.text().starts_with(
            "false runtime error: json.encode: the text would be more than 16777216 bytes at $["
        ),
        "{}",
        r.text()
    );
    let json = peak() - before;
    assert!(dag < 16 * 1024, "the DAG's copy took {dag} KiB");
    assert!(json < 64 * 1024, "the JSON text took {json} KiB");
}

/// What a script passes that the Rust side could not take as it was:
/// spans of time too long for the clock (`r:long_poll`, `sub:next`, an
/// event stream's heartbeat at `1e19` seconds panicked adding them to
/// now: a 500 a client could cause through a script passing its number
/// on) are an error naming the call (a Rust plugin's: no deadline, a
/// heartbeat of at most a day); a
/// ttl too small for the zone's clock (`1e-12`) expires rather than
/// meaning "never"; and zone names from request data that name no zone
/// are not kept (each name kept a table for the worker's life: 100,000 of
/// them ran a 16M `LuaMemoryLimit` out).
#[test]
fn what_a_script_passes_is_taken_within_bounds() {
    let script = r#"
function hook_response(r)
  local p = r:path()
  if p == "/spans" then
    local out = {}
    for _, f in ipairs({
      function() return r:long_poll("ch", 1e19) end,
      function() return shared.subscribe("ch"):next(1e19) end,
    }) do
      local ok, err = pcall(f)
      out[#out + 1] = tostring(ok) .. " " .. tostring(err):match("[^\n]*")
    end
    r:write(table.concat(out, "\n"))
  elseif p == "/beat" then
    local ok, err = pcall(r.sse, r, { heartbeat = 1e19 })
    r:write(tostring(ok), " ", tostring(err):match("[^\n]*"))
  elseif p == "/ttl" then
    shared.set("k", "v", 1e-12)
    local t = shared.subscribe("never"):next(0.01)
    r:write(tostring(shared.get("k")))
  elseif p == "/names" then
    for i = 1, 100000 do shared.zone("made-up-" .. i) end
    local ok, err = pcall(function() return shared.zone("made-up-1"):get("k") end)
    r:write(tostring(ok), " ", tostring(err):match("[^\n]*"))
  end
  return OK
end
"#;
    let mut srv = lua::start(
        &lua::conf("LuaMemoryLimit 16M", "    Plugin bounds"),
        &[("bounds", script)],
    );
    let spans = get(&srv, "/spans", "");
    assert_eq!(
        spans.text(),
        "false runtime error: r:long_poll: 10000000000000000000 seconds: more than 100 years\n\
         false runtime error: sub:next: 10000000000000000000 seconds: more than 100 years",
        "{}",
        srv.stderr()
    );
    assert_eq!(
        get(&srv, "/beat", "").text(),
        "false runtime error: r:sse heartbeat: 10000000000000000000 seconds: more than 100 years"
    );
    assert_eq!(get(&srv, "/ttl", "").text(), "nil");
    let names = get(&srv, "/names", "");
    assert_eq!(names.status, 200, "{}", srv.stderr());
    assert!(names.text().starts_with("false "), "{}", names.text());
    assert!(!srv.stderr().contains("panicked"), "{}", srv.stderr());
}

#[test]
fn a_small_zone_evicts_and_counts() {
    let script = r#"
function hook_response(r)
  local z = shared.zone("small")
  for i = 1, 2000 do
    assert(z:set("k" .. i, string.rep("x", 200)))
  end
  local s = z:stats()
  r:write(s.entries, " ", s.evictions, " ", tostring(z:get("k1")), " ", #z:get("k2000"))
  return OK
end
"#;
    let srv = lua::start(
        &lua::conf("SharedZone small 64K", "    Plugin fill"),
        &[("fill", script)],
    );
    let t = get(&srv, "/", "").text();
    let f: Vec<&str> = t.split(' ').collect();
    let (entries, evictions): (u64, u64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
    assert!(evictions > 1000, "{t}");
    assert_eq!(entries + evictions, 2000, "{t}");
    assert_eq!(&f[2..], ["nil", "200"], "{t}");
}

#[test]
fn a_worker_killed_in_the_middle_of_a_zone_operation_wedges_nobody() {
    let srv = start(2, "SharedZone spin 1M");
    // Each round: a worker spins on `incr` (holding the zone's lock a
    // good part of the time) and is killed; the other worker and the
    // replacement must still get through the zone. Until a kill has
    // caught a worker holding the lock.
    for round in 0..100 {
        let spinner = lua::begin(&srv, "/spin");
        let mut busy = None;
        assert!(
            wait_until(Duration::from_secs(20), || {
                busy = srv.worker_serving(&spinner);
                busy.is_some() && answer(&srv, "/get?k=spinning") == "true"
            }),
            "the spin never started"
        );
        let busy = busy.unwrap();
        signal(busy, libc::SIGKILL);
        drop(spinner);
        assert!(wait_until(Duration::from_secs(20), || {
            let now = srv.workers();
            now.len() == 2 && !now.contains(&busy) && now.iter().all(|&p| alive(p))
        }));
        // Both workers answer through the zone (a wedged lock would hang
        // them: the request would time out).
        for _ in 0..4 {
            assert_eq!(answer(&srv, "/set?k=spinning&v=false"), "true");
        }
        let stats = text(&srv, "/stats?z=spin");
        let recoveries: u64 = stats.split(' ').nth(2).unwrap().parse().unwrap();
        if recoveries > 0 {
            eprintln!("the lock was recovered after round {round}");
            return;
        }
    }
    panic!("no kill caught a worker holding the lock in 100 rounds");
}

#[test]
fn a_broadcast_wakes_waiters_in_every_worker() {
    let srv = start(2, "");
    for attempt in 0..5 {
        let mut waiters: Vec<_> = (0..8)
            .map(|_| {
                let s = lua::begin(&srv, &format!("/wait?n={attempt}"));
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                (s, Vec::new())
            })
            .collect();
        assert!(wait_until(Duration::from_secs(20), || answer(
            &srv,
            &format!("/get?k=waiting{attempt}")
        ) == "8"));
        // A waiter counts itself just before it starts waiting: a message
        // may beat it, so send again until every waiter has answered.
        let mut sender_ids = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..5 {
            let sender = text(&srv, &format!("/send?m=hello{attempt}"));
            let (id, sent) = sender.split_once(' ').unwrap();
            assert_eq!(sent, "true");
            sender_ids.push(id.to_string());
            waiters.retain_mut(|(s, buf)| match read_within(s, buf) {
                Some(r) => {
                    answers.push(r.text());
                    false
                }
                None => true,
            });
            if waiters.is_empty() {
                break;
            }
        }
        assert!(waiters.is_empty(), "waiters never woken: {}", waiters.len());
        let mut other_worker = false;
        for a in answers {
            let (id, message) = a.split_once(' ').unwrap();
            assert_eq!(message, format!("hello{attempt}"));
            other_worker |= sender_ids.iter().any(|s| s != id);
        }
        if other_worker {
            return;
        }
    }
    panic!("no waiter ever landed on another worker than the sender");
}

/// A `shared.wait` ends as `r:long_poll` does: at once for a timeout of
/// 0, when its client leaves (its waiter goes: no socket left in
/// CLOSE-WAIT until a message comes, if ever) and when the worker drains
/// (a reload is not held up for ShutdownTimeout).
#[test]
fn a_shared_wait_ends_when_its_client_leaves_or_the_worker_drains() {
    let limit = Duration::from_secs(20);
    let mut srv = start(1, "ShutdownTimeout 300s");
    let asked = std::time::Instant::now();
    assert_eq!(answer(&srv, "/wait?n=now&t=0"), "timeout");
    assert!(asked.elapsed() < Duration::from_secs(5));

    let leaving: Vec<_> = (0..3)
        .map(|_| lua::begin(&srv, "/wait?n=gone&t=300"))
        .collect();
    let staying = lua::begin(&srv, "/wait?n=gone&t=300");
    assert!(wait_until(limit, || answer(&srv, "/waiting") == "4"));
    drop(leaving);
    assert!(
        wait_until(limit, || answer(&srv, "/waiting") == "1"),
        "the waits of the clients that left: {}",
        answer(&srv, "/waiting")
    );

    let old = srv.workers();
    assert_eq!(old.len(), 1);
    srv.signal(libc::SIGHUP);
    let r = lua::finish(staying);
    assert_eq!(r.text().split_once(' ').unwrap().1, "stopping");
    assert!(
        wait_until(limit, || old.iter().all(|&p| !alive(p))),
        "the old worker drained well within ShutdownTimeout"
    );
    srv.wait_stderr("configuration reloaded", limit);
}

/// Read until the server closes or the read times out; the response once
/// complete.
fn read_within(s: &mut std::net::TcpStream, buf: &mut Vec<u8>) -> Option<Response> {
    use std::io::Read;
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Some(parse_response(buf).expect("a response")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
}

#[test]
fn zone_directives_are_checked() {
    let (ok, out) = lua::check(
        &lua::conf("SharedZone a 1k\nSharedZone b! 1M\nBroadcastBuffer 1k", ""),
        &[],
    );
    assert!(!ok, "{out}");
    for e in [
        "SharedZone (plugin shared): 1k: at least 64K",
        "SharedZone (plugin shared): zone name \"b!\"",
        "BroadcastBuffer (plugin shared): 1k: at least 64K",
    ] {
        assert!(out.contains(e), "{e}: {out}");
    }
    let (ok, out) = lua::check(&lua::conf("SharedZone c 1M\nSharedZone c 2M", ""), &[]);
    assert!(
        !ok && out.contains("`shared.zone:c` is asked for twice"),
        "{out}"
    );
    let (ok, out) = lua::check(&lua::conf("SharedZone default 8M", ""), &[]);
    assert!(ok, "{out}");
}
