//! The `timer` global through the stock `axkit` binary: `timer.at` and
//! `timer.every` run in the background with their arguments, from a
//! script's top level (once the worker serves) or from a hook; handles
//! cancel; a run that fails or outruns `LuaTimeLimit` is logged with the
//! script's file:line and the timer carries on; timers run in every worker
//! but `timer.once_per_server` in one (worker 0, taken over by the worker
//! that replaces it), never in the master; after SIGHUP the new workers
//! run their own and the old ones stop; a delay too long for the clock is
//! refused; 100,000 timers are made and cancelled in O(1) each, and
//! `LuaMaxTimers` bounds those pending.
//!
//! Each test starts its own server with real scripts written to its
//! scratch directory, and watches the log lines the timers write (each
//! names the process that wrote it: `axkit[PID]`).

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/process.rs"]
mod process;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use lua::*;

/// The pids of the processes that logged a line containing `needle`.
fn pids_logging(log: &str, needle: &str) -> BTreeSet<i32> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| l.split("axkit[").nth(1)?.split(']').next()?.parse().ok())
        .collect()
}

#[test]
fn timers_run_in_the_background_repeat_and_cancel() {
    let script = r#"
local n = 0
local ticker = timer.every(0.05, function(tag) n = n + 1 log("notice", "tick", tag, n) end, "T")
timer.at(0.01, function(a, b) log("notice", "at ran with", a, b) end, "x", 2)
local runs = 0
local self_cancel
self_cancel = timer.every(0.02, function()
  runs = runs + 1
  log("notice", "self run", runs)
  if runs == 3 then log("notice", "self cancel returned", tostring(self_cancel:cancel())) end
end)
local bad = {}
for _, args in ipairs({ { 0 }, { -1 }, { 0 / 0 } }) do
  local ok, err = pcall(timer.every, args[1], print)
  bad[#bad + 1] = tostring(ok)
end
local ok_at = pcall(timer.at, 0, function() end)

function hook_response(r)
  local p = r:path()
  if p == "/cancel" then
    local first, second = ticker:cancel(), ticker:cancel()
    r:write(tostring(first), " ", tostring(second), " ", n)
  elseif p == "/later" then
    timer.at(tonumber(r:param("in")), function(what) log("notice", "from a hook:", what) end,
             r:param("what"))
    r:write("scheduled")
  elseif p == "/checks" then
    r:write(table.concat(bad, ","), " ", tostring(ok_at))
  end
  return OK
end
"#;
    let mut srv = start(&conf("", "    Plugin t"), &[("t", script)]);
    srv.wait_stderr("at ran with x 2", Duration::from_secs(10));
    srv.wait_stderr("tick T 3", Duration::from_secs(10));
    srv.wait_stderr("self cancel returned true", Duration::from_secs(10));
    assert_eq!(srv.get("/checks").text(), "false,false,false true");
    assert_eq!(srv.get("/later?in=0&what=now").text(), "scheduled");
    srv.wait_stderr("from a hook: now", Duration::from_secs(10));

    let t = srv.get("/cancel").text();
    let (flags, n) = t.rsplit_once(' ').unwrap();
    assert_eq!(flags, "true false");
    let n: u32 = n.parse().unwrap();
    // Long enough for several more ticks, had they not been cancelled.
    srv.get("/later?in=0.3&what=marker");
    let log = srv.wait_stderr("from a hook: marker", Duration::from_secs(10));
    assert!(!log.contains(&format!("tick T {}", n + 1)), "{log}");
    assert!(!log.contains("self run 4"), "{log}");
}

#[test]
fn a_timer_that_fails_or_runs_too_long_is_logged_and_carries_on() {
    let script = r#"local runs = 0
timer.every(0.05, function()
  runs = runs + 1
  if runs == 1 then error("boom") end
  if runs == 2 then while true do end end
  log("notice", "run", runs)
end)
function hook_response(r) r:write("alive") return OK end
"#;
    let mut srv = start(
        &conf("LuaTimeLimit 200ms", "    Plugin t"),
        &[("t", script)],
    );
    let line = srv.wait_stderr_line(&["[error]", "boom"], Duration::from_secs(10));
    assert!(line.contains("timer "), "{line}");
    assert!(line.contains("plugins/t.lua:2: "), "{line}");
    assert!(line.contains("plugins/t.lua:4: boom"), "{line}");
    let line = srv.wait_stderr_line(&["LuaTimeLimit"], Duration::from_secs(10));
    assert!(
        line.contains("LuaTimeLimit (200ms) exceeded, stopped at ")
            && line.contains("plugins/t.lua:5"),
        "{line}"
    );
    srv.wait_stderr("run 3", Duration::from_secs(10));
    assert_eq!(srv.get("/").text(), "alive");
}

/// Per worker: `timer.every` runs in each, `timer.once_per_server` in
/// worker 0 alone (and in its replacement after a crash), neither in the
/// master; after SIGHUP the new generation runs its own and the old stops.
#[test]
fn timers_are_per_worker_and_once_per_server_runs_in_one() {
    let script = r#"
timer.every(0.05, function() log("notice", "every-tick") end)
timer.once_per_server(0.05, function() log("notice", "singleton-tick") end)
function hook_response(r) r:write("ok") return OK end
"#;
    let mut srv = Axkit::start_with(&conf("Workers 2", "    Plugin t"), &[], |d| {
        d.write("plugins/t.lua", script);
    });
    let master = srv.pid();
    let first = srv.workers();
    assert_eq!(first.len(), 2);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = srv.stderr();
            pids_logging(&log, "every-tick").len() == 2
                && log.matches("singleton-tick").count() >= 5
        }),
        "{}",
        srv.stderr()
    );
    let log = srv.stderr();
    let every = pids_logging(&log, "every-tick");
    let singleton = pids_logging(&log, "singleton-tick");
    assert_eq!(every, first.iter().copied().collect(), "{log}");
    assert_eq!(singleton.len(), 1, "{log}");
    assert!(!every.contains(&master) && !singleton.contains(&master));

    // Its replacement takes the crashed worker's place, and the singleton.
    let elected = *singleton.iter().next().unwrap();
    let other = *first.iter().find(|&&p| p != elected).unwrap();
    signal(elected, libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let singleton = pids_logging(&srv.stderr(), "singleton-tick");
            singleton.iter().any(|p| !first.contains(p))
        }),
        "{}",
        srv.stderr()
    );
    let singleton = pids_logging(&srv.stderr(), "singleton-tick");
    assert!(!singleton.contains(&other), "{singleton:?}");

    // A reload: the new workers run their own timers, the old ones stop
    // and go.
    let old = srv.workers();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let w = srv.workers();
            w.len() == 2
                && w.iter()
                    .all(|p| !old.contains(p) && process::worker_ready(*p))
        }),
        "{}",
        srv.stderr()
    );
    let new = srv.workers();
    assert!(wait_until(Duration::from_secs(20), || old
        .iter()
        .all(|&p| !alive(p))));
    let log = srv.stderr();
    let seen = log.len();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = srv.stderr();
            let later = &log[seen..];
            pids_logging(later, "every-tick") == new.iter().copied().collect()
                && pids_logging(later, "singleton-tick").len() == 1
        }),
        "{}",
        srv.stderr()
    );
    let later = srv.stderr()[seen..].to_string();
    assert!(
        pids_logging(&later, "tick").iter().all(|p| new.contains(p)),
        "{later}"
    );
}

/// `LuaReload On`: loading a script or module again cancels the timers its
/// old top level created (the new top level creates its own).
#[test]
fn reloading_a_script_or_module_replaces_its_timers() {
    let script = |tag: &str| {
        format!(
            "require 'lib.tick'\n\
             timer.every(0.03, function() log('notice', 'script-{tag}') end)\n\
             function hook_response(r) r:write('{tag}') return OK end\n"
        )
    };
    let module =
        |tag: &str| format!("timer.every(0.03, function() log('notice', 'module-{tag}') end)\n");
    let mut srv = start_with(&conf("LuaReload On", "    Plugin t"), &[], |d| {
        d.write("plugins/t.lua", script("one"));
        d.write("plugins/lib/tick.lua", module("one"));
    });
    srv.wait_stderr("script-one", Duration::from_secs(10));
    srv.wait_stderr("module-one", Duration::from_secs(10));
    let ahead = |s: &Axkit, rel: &str, text: String, secs: u64| {
        let path = s.dir.write(rel, text);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() + Duration::from_secs(secs))
            .unwrap();
    };
    // Ticks of `gone` must stop: counted once `fresh` has ticked three
    // times after the reload, and again three ticks later.
    let stops = |srv: &mut Axkit, gone: &str, fresh: &str| {
        let count = |srv: &mut Axkit, needle: &str| srv.stderr().matches(needle).count();
        let wait_for = |srv: &mut Axkit, n: usize| {
            assert!(
                wait_until(Duration::from_secs(10), || count(srv, fresh) >= n),
                "{}",
                srv.stderr()
            );
        };
        wait_for(srv, 3);
        let before = count(srv, gone);
        wait_for(srv, 6);
        assert_eq!(count(srv, gone), before, "{}", srv.stderr());
    };

    ahead(&srv, "plugins/t.lua", script("two"), 10);
    assert_eq!(srv.get("/").text(), "two");
    stops(&mut srv, "script-one", "script-two");
    // The module did not change: its timer runs on.
    let modules = srv.stderr().matches("module-one").count();
    assert!(
        wait_until(Duration::from_secs(10), || srv
            .stderr()
            .matches("module-one")
            .count()
            > modules + 2),
        "{}",
        srv.stderr()
    );

    ahead(&srv, "plugins/lib/tick.lua", module("two"), 20);
    assert_eq!(srv.get("/").text(), "two");
    stops(&mut srv, "module-one", "module-two");
    // The script, which requires the module, was run again too: its timer
    // replaced, not doubled (the two timers tick at the same rate).
    let count = |srv: &mut Axkit, needle: &str| srv.stderr().matches(needle).count();
    let (script0, module0) = (count(&mut srv, "script-two"), count(&mut srv, "module-two"));
    assert!(wait_until(Duration::from_secs(10), || count(
        &mut srv,
        "module-two"
    ) >= module0 + 10));
    let (script1, module1) = (count(&mut srv, "script-two"), count(&mut srv, "module-two"));
    assert!(
        script1 - script0 <= module1 - module0 + 2,
        "script {script0}..{script1}, module {module0}..{module1}"
    );
}

/// A delay or interval too long for the clock to add (`1e19` seconds
/// overflowed it, a panic) is an error to the script that asks for it;
/// anything up to 100 years is taken.
#[test]
fn a_delay_longer_than_100_years_is_refused() {
    let script = r#"
function hook_response(r)
  local at_ok, at_err = pcall(timer.at, 1e19, print)
  local every_ok, every_err = pcall(timer.every, 1e10, print)
  local far = timer.at(3e9, print)
  r:write(tostring(at_ok), "|", tostring(at_err), "|", tostring(every_ok), "|",
          tostring(every_err), "|", tostring(far:cancel()))
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin t"), &[("t", script)]);
    let t = srv.get("/").text();
    let parts: Vec<&str> = t.split('|').collect();
    assert_eq!(parts.len(), 5, "{t}");
    assert_eq!(parts[0], "false", "{t}");
    assert!(
        parts[1].contains("timer.at: 10000000000000000000 seconds: more than 100 years"),
        "{t}"
    );
    assert_eq!(parts[2], "false", "{t}");
    assert!(
        parts[3].contains("timer.every: 10000000000 seconds: more than 100 years"),
        "{t}"
    );
    assert_eq!(parts[4], "true", "{t}");
    // The worker lives on.
    assert_eq!(srv.get("/").text(), t);
}

/// Timers are kept by id: making and cancelling 100,000 costs each O(1)
/// (kept in a list, each cancel scanned it: the loop took longer than
/// `LuaTimeLimit`, its C calls out of the limit's sight). And a worker
/// keeps at most `LuaMaxTimers` pending: past it `timer.at` returns nil
/// and why, and room comes back as timers end.
#[test]
fn many_timers_cost_each_o1_and_are_bounded_by_lua_max_timers() {
    let script = r#"
function hook_response(r)
  local p = r:path()
  if p == "/many" then
    local n = tonumber(r:param("n"))
    local handles = {}
    for i = 1, n do handles[i] = assert(timer.at(3600, print)) end
    local cancelled = 0
    for i = 1, n do
      if handles[i]:cancel() then cancelled = cancelled + 1 end
    end
    r:write(cancelled)
  else
    local made, first_err = 0, nil
    for i = 1, 10 do
      local h, err = timer.at(0.05, function() end)
      if h then made = made + 1 elseif not first_err then first_err = err end
    end
    r:write(made, "|", tostring(first_err))
  end
  return OK
end
"#;
    let srv = start(
        &conf("LuaMaxTimers 100000\nLuaTimeLimit 3s", "    Plugin t"),
        &[("t", script)],
    );
    let r = srv.get("/many?n=100000");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "100000");

    let srv = start(&conf("LuaMaxTimers 4", "    Plugin t"), &[("t", script)]);
    assert_eq!(
        srv.get("/cap").text(),
        "4|timer.at: too many pending timers (LuaMaxTimers 4)"
    );
    // The four ran and went: room for four more.
    assert!(wait_until(Duration::from_secs(10), || srv
        .get("/cap")
        .text()
        .starts_with("4|")));
}
