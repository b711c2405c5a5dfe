//! What a Lua script cannot do to its worker, through the stock `axkit`
//! binary: block it (sleeping requests are suspended, CPU loops stopped by
//! `LuaTimeLimit`, where `0` is no limit), hang, crash or rewire it, or get past `LuaMemoryLimit`
//! (memory errors inside methods and tracebacks are safe).
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use lua::*;

const SLOW: &str = r#"
function hook_response(r)
  local p = r:path():gsub("^/long", "")
  if p == "/sleep" then
    sleep(tonumber(r:param("s") or "1"))
    r:write("slept")
    return OK
  elseif p == "/spin" then
    while true do end
  elseif p == "/sleep-spin" then
    sleep(0.01)
    while true do end
  elseif p == "/yield" then
    -- A bare yield in a hook only gives way to other requests.
    coroutine.yield(1)
    r:write("after yield")
    return OK
  elseif p == "/spin-pcall" then
    while true do pcall(function() while true do end end) end
  elseif p == "/spin-co" then
    local co = coroutine.wrap(function() while true do end end)
    while true do pcall(co) end
  elseif p == "/spin-create" then
    local co = coroutine.create(function() while true do end end)
    while true do coroutine.resume(co) end
  elseif p == "/co-sleep" then
    -- Waiting inside the script's own coroutines suspends the request too.
    local log = {}
    local a = coroutine.wrap(function(x)
      sleep(0.05)
      local y = coroutine.yield(x + 1)
      sleep(0.05)
      return "a got " .. y
    end)
    log[#log + 1] = a(1)
    log[#log + 1] = a(10)
    local b = coroutine.create(function() sleep(0.05) error("inside b") end)
    local ok, err = coroutine.resume(b)
    log[#log + 1] = tostring(ok) .. " " .. err:match("inside b") .. " " .. coroutine.status(b)
    r:write(table.concat(log, "|"))
    return OK
  elseif p == "/spin-sort" then
    local t = {}
    for i = 1, 100 do t[i] = i end
    table.sort(t, function(a, b) while true do end end)
  end
  r:write("fast")
  return OK
end
"#;

#[test]
fn sleeping_requests_do_not_block_the_worker() {
    let srv = start(&conf("", "    Plugin slow"), &[("slow", SLOW)]);
    // A request sleeping for a long time…
    let sleeper = begin(&srv, "/sleep?s=30");
    // Once the worker (one thread) has read it, it runs it until it sleeps.
    wait_server_read(&sleeper);
    // …does not keep the single worker from answering others.
    assert_eq!(srv.get("/fast").text(), "fast");
    drop(sleeper);
    assert_eq!(
        srv.get("/co-sleep").text(),
        "2|a got 10|false inside b dead"
    );
    // 200 requests sleeping at once in one worker all finish; one after
    // the other they would take 200 s, far past the read timeout.
    let streams: Vec<TcpStream> = (0..200).map(|_| begin(&srv, "/sleep?s=1")).collect();
    for s in streams {
        assert_eq!(finish(s).text(), "slept");
    }
}

#[test]
fn cpu_loops_are_stopped_by_lua_time_limit() {
    let mut srv = start(
        &conf(
            "LuaTimeLimit 200ms",
            "    Plugin slow\n    <Location /long>\n        LuaTimeLimit 1s\n    </Location>",
        ),
        &[("slow", SLOW)],
    );
    let sleeper = begin(&srv, "/sleep?s=2");
    wait_server_read(&sleeper);
    assert_eq!(srv.get("/yield").text(), "after yield");
    for path in [
        "/spin",
        "/sleep-spin",
        "/spin-pcall",
        "/spin-co",
        "/spin-create",
        "/spin-sort",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 500, "{path}");
        assert_eq!(srv.get("/fast").text(), "fast");
    }
    let log = srv.wait_stderr("/spin-sort", Duration::from_secs(10));
    assert!(
        log.contains("plugins/slow.lua: hook_response: LuaTimeLimit (200ms) exceeded, stopped at"),
        "{log}"
    );
    // The sleeping request was not disturbed by its neighbours' loops.
    assert_eq!(finish(sleeper).text(), "slept");
    // A longer limit in a Location.
    assert_eq!(srv.get("/long/spin").status, 500);
    srv.wait_stderr("LuaTimeLimit (1s) exceeded", Duration::from_secs(10));
    // No thread keeps the limit: the worker that ran and stopped all this
    // is still one thread (a second one costs every request glibc's
    // multi-threaded paths).
    let threads = std::fs::read_dir(format!("/proc/{}/task", srv.pid()))
        .unwrap()
        .count();
    assert_eq!(threads, 1);
}

/// The Lua host's directives need only a `PluginDir` (where Lua plugins
/// are found), not a `Plugin lua` line.
/// `LuaTimeLimit 0` is no limit (as PHP's `max_execution_time 0`), not a
/// deadline already past: a hook that counts for a while runs to its end,
/// where a Location's 1ms stops the same count.
#[test]
fn a_zero_lua_time_limit_is_no_limit() {
    const COUNT: &str = r#"
function hook_response(r)
  local n = 0
  for i = 1, 30000000 do n = n + 1 end
  r:write("counted " .. n)
  return OK
end
"#;
    let mut srv = start(
        &conf(
            "LuaTimeLimit 0",
            "    Plugin count\n    <Location /limited>\n        LuaTimeLimit 1ms\n    </Location>",
        ),
        &[("count", COUNT)],
    );
    let r = srv.get("/free");
    assert_eq!(r.status, 200, "{}", srv.stderr());
    assert_eq!(r.text(), "counted 30000000");
    assert_eq!(srv.get("/limited").status, 500);
    srv.wait_stderr("LuaTimeLimit (1ms) exceeded", Duration::from_secs(10));
}

#[test]
fn lua_directives_apply_wherever_a_plugin_dir_is_set() {
    let text = conf("LuaTimeLimit 1s", "    Plugin slow");
    let (ok, out) = check(&text, &[("slow", SLOW)]);
    assert!(ok, "{out}");
    assert!(!out.contains("warning"), "{out}");
    let mut srv = start(&text, &[("slow", SLOW)]);
    assert_eq!(srv.get("/spin").status, 500);
    srv.wait_stderr("LuaTimeLimit (1s) exceeded", Duration::from_secs(10));
    // Without a PluginDir there is no Lua plugin for them to apply to.
    let (ok, out) = check(
        "LuaTimeLimit 1s\n<Server>\n    Listen 127.0.0.1:0\n</Server>\n",
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("axkit.conf:1: LuaTimeLimit (plugin lua): applies to `lua` plugins"),
        "{out}"
    );
}

/// An old config's `Plugin lua` line still works, with one deprecation
/// warning: in `--check` (which still passes) and in the master's log (not
/// once more from each worker).
#[test]
fn plugin_lua_is_deprecated_but_still_accepted() {
    let text = conf(
        "Plugin lua\nLuaTimeLimit 300ms\nWorkers 2",
        "    Plugin slow",
    );
    let (ok, out) = check(&text, &[("slow", SLOW)]);
    assert!(ok, "{out}");
    let warning = "axkit.conf:4: Plugin (plugin core): `Plugin lua` is deprecated";
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(warning)).collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("axkit: warning: "), "{out}");
    let mut srv = Axkit::start_with(&text, &[], |d| {
        d.write("plugins/slow.lua", SLOW);
    });
    assert_eq!(srv.get("/spin").status, 500);
    let log = srv.wait_stderr("LuaTimeLimit (300ms) exceeded", Duration::from_secs(10));
    assert_eq!(log.matches(warning).count(), 1, "{log}");
}

/// A script may share its name with a plugin source (`shared.lua`,
/// `template.lua`): `Plugin shared` loads the script, with no deprecation
/// warning, rather than taking the line for an old config's source line.
#[test]
fn a_script_named_like_a_source_is_loaded() {
    let script = "function hook_response(r) r:write('from the script') return OK end";
    let text = conf("", "    Plugin shared");
    let (ok, out) = check(&text, &[("shared", script)]);
    assert!(ok, "{out}");
    assert!(!out.contains("deprecated"), "{out}");
    let srv = start(&text, &[("shared", script)]);
    let res = srv.get("/");
    assert_eq!((res.status, res.text().as_str()), (200, "from the script"));
}

/// What a script could use to hang or crash a worker, or to reach another
/// script's methods, found in review: each answers 500 (or is refused) and
/// the worker goes on serving.
#[test]
fn scripts_cannot_hang_crash_or_rewire_the_worker() {
    let evil = r#"
function hook_response(r)
  local p = r:path()
  if p == "/gc" then
    -- Finalizers run with debug hooks off: LuaTimeLimit could not stop this.
    setmetatable({}, {__gc = function() while true do end end})
  elseif p == "/tostring" then
    -- A bad return value is described without calling __tostring.
    return setmetatable({}, {__tostring = function() while true do end end})
  elseif p == "/meta" then
    r:write(tostring(getmetatable(r)), " ", tostring(getmetatable("")))
    return OK
  elseif p == "/sortflush" then
    -- r:flush where the script cannot yield, then a body read.
    pcall(table.sort, {3, 2, 1}, function(a, b) r:flush() return a < b end)
    r:body()
    r:write("read")
    return OK
  elseif p == "/hog" then
    -- Beyond LuaMemoryLimit an allocation is a Lua error, not the OOM killer.
    local t = {}
    for i = 1, 1000 do t[i] = string.rep("x", 1024 * 1024) .. i end
  elseif p == "/logstash" then
    -- A logging hook reaching this request through a saved r while r:log
    -- runs: refused, not a second hold on the request.
    G = r
    r:log("warn", "stash")
    G = nil
    r:write(NESTED or "none")
    return OK
  elseif p == "/filter" then
    r:write("start\n")
    r:flush()
    r:write("end\n")
    return OK
  end
  r:write("fine")
  return OK
end

function hook_logging(level, msg, peer)
  if G then
    local ok, err = pcall(function() G:set_header("X-Log", "1") end)
    local e = tostring(err)
    local refused = e:match("outside its hook") or e:match("cannot be used from inside")
    NESTED = ok and "allowed" or refused and "refused" or e
  end
  return DECLINED
end

function hook_write_body_data(r, data, last)
  if r:path() == "/filter" and #data > 0 then
    -- A filter that writes would run the filters again, without end.
    r:write("x")
    r:flush()
  end
  return OK
end
"#;
    // /hog copies 64 MiB: on a loaded machine that can take longer than
    // the limit the loops get.
    let mut srv = start(
        &conf(
            "LuaTimeLimit 300ms\nLuaMemoryLimit 64M",
            "    Plugin evil\n    <Location /hog>\n        LuaTimeLimit 30s\n    </Location>",
        ),
        &[("evil", evil)],
    );
    let r = srv.get("/gc");
    assert_eq!(r.status, 500, "{r:?}");
    srv.wait_stderr("__gc finalizers are not allowed", Duration::from_secs(10));
    let r = srv.get("/tostring");
    assert_eq!(r.status, 500, "{r:?}");
    srv.wait_stderr("returned a table", Duration::from_secs(10));
    assert_eq!(srv.get("/meta").text(), "false false");
    let r = srv.get("/hog");
    assert_eq!(r.status, 500, "{r:?}");
    srv.wait_stderr("not enough memory", Duration::from_secs(10));
    let r = srv.get("/logstash");
    assert_eq!((r.status, r.text().as_str()), (200, "refused"), "{r:?}");
    assert_eq!(r.header("X-Log"), None);
    let r = srv.get("/sortflush");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "read");
    // The response fails (the connection closes), the worker does not.
    let _ = srv.raw(b"GET /filter HTTP/1.1\r\nHost: x\r\n\r\n");
    srv.wait_stderr("write_body_data hook cannot write", Duration::from_secs(10));
    for _ in 0..3 {
        assert_eq!(srv.get("/ok").text(), "fine");
    }
}

/// Beyond `LuaMemoryLimit` an allocation raises a Lua error (a
/// `longjmp`). A script fills the memory to the limit, then calls the
/// methods of `r` that allocate, and raises errors whose traceback must be
/// built with the memory full: every request answers (500 at worst), a
/// memory error inside a method leaves `r` whole, and the worker serves on
/// with its memory back.
#[test]
fn memory_errors_inside_methods_and_tracebacks_are_safe() {
    let script = r#"
local rep, pcall, max = string.rep, pcall, math.max
local LONG = rep("v", 200)
local BIG = rep("w", 20000)
local MSG = "failed with the memory full"
local ERR = setmetatable({}, { __tostring = function() return "a table error" end })

-- Take memory until not even the shortest long string (41 bytes) fits:
-- nothing is garbage, and any string longer than 40 bytes fails.
local function fill(hold)
  local n, size = 0, 1 << 20
  while size > 0 do
    local ok, s = pcall(rep, "x", size)
    if ok then
      n = n + 1
      hold[n] = s
    else
      size = size > 41 and max(size // 2, 41) or 0
    end
  end
  return n
end

local CALLS = {
  path = function(r) return r:path() end,
  uri = function(r) return r:uri() end,
  query = function(r) return r:query() end,
  header = function(r) return r:header("X-Long") end,
  param = function(r) return r:param("plain") end,
  decoded = function(r) return r:param("coded") end,
  bad = function(r) r:set_header("X-Bad", "\255") end,
  number = function(r) r:set_header("X-Number", 123456789) end,
  named = function(r) r:add_header("X-A-Rather-Long-Header-Name", LONG) end,
  write = function(r) r:write(LONG, 1.5, LONG) end,
  big = function(r) r:write(BIG) end,
  config = function(r) return r:config("Greeting") end,
  headers = function(r) return r:headers() end,
  params = function(r) return r:params() end,
  note = function(r) r:note("k", LONG) return r:note("k") end,
}

directive { name = "Greeting", type = "string", default = "Hello" }

function hook_response(r)
  local p = r:path()
  local m = p:match("^/mem/(%a+)")
  if not m then r:write("fine") return OK end
  local hold, seen = {}, { false, false }
  for i = 1, 256 do hold[i] = false end
  if m == "traceback" then fill(hold) error(MSG, 0) end
  if m == "tracetable" then fill(hold) error(ERR, 0) end
  if m == "tracenumber" then fill(hold) error(12345.5, 0) end
  local call = CALLS[m]
  for round = 1, 2 do
    local n = fill(hold)
    local ok, err = pcall(call, r)
    seen[round] = ok or err
    for i = 1, n do hold[i] = false end
  end
  hold = nil
  -- With the memory back, r is whole: its methods work again.
  for i = 1, 2 do
    local s = seen[i]
    seen[i] = s == true and "ok" or tostring(s):match("not enough memory") and "memory" or tostring(s)
  end
  pcall(call, r)
  local whole = r:path() == p and r:param("plain") == LONG
  r:set_header("X-Report", table.concat(seen, ",") .. (whole and " whole" or " broken"))
  return OK
end
"#;
    let mut srv = start(
        &conf("LuaMemoryLimit 8M", "    Plugin mem"),
        &[("mem", script)],
    );
    let long = "v".repeat(200);
    let coded = "a%20b".repeat(40);
    let request = |srv: &Axkit, m: &str| {
        send(
            srv,
            "GET",
            &format!("/mem/{m}/{long}?plain={long}&coded={coded}"),
            &format!("X-Long: {long}\r\n"),
            b"",
        )
    };
    // The methods of fast.rs whose result (or error message) is a long
    // string: pushing it fails each time.
    let failing = ["path", "uri", "query", "header", "param", "decoded", "bad"];
    // The others may get their memory or not: a memory error that the
    // script's pcall does not catch (it needs memory too) is a 500.
    let others = [
        "number", "named", "write", "big", "config", "headers", "params", "note",
    ];
    for _ in 0..2 {
        for m in failing {
            let r = request(&srv, m);
            assert_eq!(r.status, 200, "{m}: {r:?}");
            assert_eq!(r.header("X-Report"), Some("memory,memory whole"), "{m}");
        }
        for m in others {
            let r = request(&srv, m);
            let report = r.header("X-Report").unwrap_or("");
            assert!(
                r.status == 500 || (r.status == 200 && report.ends_with(" whole")),
                "{m}: {r:?}"
            );
        }
        // With the memory full the message goes without its traceback
        // (and a table's __tostring may not get to run).
        for (m, needle) in [
            ("traceback", "runtime error: failed with the memory full"),
            ("tracetable", "runtime error: "),
            ("tracenumber", "runtime error: 12345.5"),
        ] {
            assert_eq!(request(&srv, m).status, 500, "{m}");
            srv.wait_stderr_line(&[&format!("/mem/{m}/"), needle], Duration::from_secs(10));
        }
        assert_eq!(srv.child.try_wait().unwrap(), None, "the worker died");
        assert_eq!(srv.get("/ok").text(), "fine");
    }
}

/// A table raised as an error whose `__tostring` loops: the message was
/// made of it outside the slice and its time limit, and the worker hung
/// for good (from a hook's first run, from a timer). It is now described,
/// never converted; raised after the hook suspended (mlua makes the
/// message, calling `__tostring`, in the state that resumes the hook), the
/// slice stops the conversion at LuaTimeLimit.
#[test]
fn an_error_object_whose_tostring_loops_cannot_hang_the_worker() {
    let script = r#"
local obj = setmetatable({}, {__tostring = function() while true do end end})
function hook_response(r)
  if r:path() == "/now" then error(obj) end
  if r:path() == "/later" then sleep(0.01) error(obj) end
  if r:path() == "/timer" then timer.at(0, function() error(obj) end) end
  r:write("fine")
  return OK
end
"#;
    let mut srv = start(
        &conf("LuaTimeLimit 1s", "    Plugin loop"),
        &[("loop", script)],
    );
    assert_eq!(srv.get("/now").status, 500);
    assert_eq!(srv.get("/timer").text(), "fine");
    srv.wait_stderr("(error object is a table value)", Duration::from_secs(10));
    assert_eq!(srv.get("/later").status, 500);
    srv.wait_stderr("LuaTimeLimit (1s) exceeded", Duration::from_secs(10));
    assert_eq!(srv.get("/").text(), "fine");
}

/// A response written in small pieces to a client that reads as fast as
/// they come never makes a write wait, and a script looping on ops that
/// finish at once (a flush with nothing to send) never suspends: neither
/// may keep the worker from its other connections. A request made while
/// such a stream runs is answered before the stream ends.
#[test]
fn a_stream_of_small_writes_to_a_fast_reader_shares_the_worker() {
    use std::io::{Read, Write};
    let script = r#"
function hook_response(r)
  if r:path() == "/stream" then
    local piece = string.rep("x", 100)
    for i = 1, 100000 do r:write(piece); r:flush() end
    for i = 1, 300000 do r:flush() end
    r:write("end")
    return OK
  end
  r:write("fine")
  return OK
end
"#;
    let srv = start(
        &conf("LuaTimeLimit 30s", "    Plugin stream"),
        &[("stream", script)],
    );
    let mut stream = srv.connect();
    stream.set_read_timeout(None).unwrap();
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        (
            std::time::Instant::now(),
            all.ends_with(b"end\r\n0\r\n\r\n"),
        )
    });
    let asked = std::time::Instant::now();
    assert_eq!(srv.get("/other").text(), "fine");
    let answered = std::time::Instant::now();
    let (stream_done, whole) = reader.join().unwrap();
    assert!(whole, "the stream ended early");
    assert!(
        answered < stream_done,
        "the other request ({:?} after it was sent) waited for the stream to end",
        answered - asked
    );
}
