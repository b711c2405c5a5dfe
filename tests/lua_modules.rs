//! `require` and the scripts' global environment through the stock `axkit`
//! binary: modules found in the PluginDirs (`a.b` → `a/b.lua`, else
//! `a/b/init.lua`) and cached once per worker, names that could leave the
//! PluginDirs refused, no C modules, errors naming the module's file and
//! line, a module's top level under the load-time limit, modules coming
//! from the master's snapshot (a restarted worker runs what the master
//! loaded), `LuaReload` reloading a changed module and what requires it,
//! and `_G`.
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/process.rs"]
mod process;

use std::time::{Duration, SystemTime};

use common::*;
use lua::*;

/// Write `plugins/{rel}` in `dir` with a modification time `ahead` in the
/// future, so that `LuaReload` sees a change however fast the test runs.
fn rewrite(dir: &TempDir, rel: &str, text: &str, ahead: u64) {
    let path = dir.write(&format!("plugins/{rel}"), text);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(ahead))
        .unwrap();
}

#[test]
fn modules_are_found_in_the_plugin_dirs_and_loaded_once_per_worker() {
    let a = r#"
local shared = require "lib.shared"
local pkg = require "pkg"
local extra = require "extra"
local nothing = require "nothing"
function hook_response(r)
  if r:path() ~= "/a" then return DECLINED end
  r:write(shared.hit(), "|", pkg.name, "|", pkg.mod, "|", extra, "|", tostring(nothing), "|",
          tostring(package.loaded["lib.shared"] == shared), "|",
          tostring(package.loadlib), tostring(package.cpath), tostring(package.path))
  return OK
end
"#;
    let b = r#"
local shared = require "lib.shared"
function hook_response(r)
  if r:path() ~= "/b" then return DECLINED end
  -- A module already loaded is found from a hook too.
  r:write(shared.hit(), "|", tostring(require("lib.shared") == shared), "|",
          tostring(require "nothing"))
  return OK
end
"#;
    let mut srv = start_with(
        &conf("PluginDir {dir}/more", "    Plugin a\n    Plugin b"),
        &[("a", a), ("b", b)],
        |d| {
            d.write(
                "plugins/lib/shared.lua",
                "print('loading lib.shared')\nlocal M = { hits = 0 }\n\
                 function M.hit() M.hits = M.hits + 1 return M.hits end\nreturn M\n",
            );
            d.write(
                "plugins/pkg/init.lua",
                "local name = ...\nreturn { name = 'pkg/init.lua', mod = name }\n",
            );
            d.write("more/extra.lua", "return 'from the second PluginDir'\n");
            d.write("plugins/nothing.lua", "local x = 1\n");
        },
    );
    assert_eq!(
        srv.get("/a").text(),
        "1|pkg/init.lua|pkg|from the second PluginDir|true|true|nilnilnil"
    );
    // One module table for both scripts of the worker.
    assert_eq!(srv.get("/b").text(), "2|true|true");
    assert_eq!(srv.get("/a").text().split('|').next(), Some("3"));
    let log = srv.sync_stderr();
    assert_eq!(log.matches("loading lib.shared").count(), 1, "{log}");
}

#[test]
fn names_that_could_leave_the_plugin_dirs_are_refused() {
    let script = r#"
local out = {}
for _, name in ipairs({ "../secret", "/etc/passwd", "lib..x", ".lib", "lib/shared",
                        "lib.", "", "lib.sh ared" }) do
  local ok, err = pcall(require, name)
  out[#out + 1] = tostring(ok) .. ":" .. tostring(tostring(err):match("invalid module name") ~= nil)
end
local refused = table.concat(out, ",")
function hook_response(r)
  -- Not loaded while the script loaded: there is no reader any more.
  local ok, err = pcall(require, "later")
  r:write(refused, "|", tostring(ok), "|", tostring(err):match("top level of the script") or err)
  return OK
end
"#;
    let srv = start_with(&conf("", "    Plugin names"), &[("names", script)], |d| {
        d.write("secret.lua", "return 'outside'");
        d.write("plugins/lib/shared.lua", "return {}");
        d.write("plugins/later.lua", "return {}");
    });
    let want = ["false:true"; 8].join(",");
    assert_eq!(
        srv.get("/").text(),
        format!("{want}|false|top level of the script")
    );
}

#[test]
fn module_errors_name_the_file_and_line() {
    let missing = check(
        &conf("", "    Plugin uses"),
        &[("uses", "local m = require 'lib.nope'\n")],
    );
    assert!(!missing.0);
    assert!(
        missing.1.contains("module 'lib.nope' not found"),
        "{}",
        missing.1
    );
    assert!(missing.1.contains("plugins/lib/nope.lua'"), "{}", missing.1);
    assert!(
        missing.1.contains("plugins/lib/nope/init.lua'"),
        "{}",
        missing.1
    );
    assert!(missing.1.contains("plugins/uses.lua:1:"), "{}", missing.1);

    let runtime = check(
        &conf("", "    Plugin uses"),
        &[
            ("uses", "local m = require 'lib.bad'\n"),
            (
                "lib/bad",
                "local x = 1\nlocal y = 2\nerror('broken module')\n",
            ),
        ],
    );
    assert!(!runtime.0);
    assert!(
        runtime.1.contains("plugins/lib/bad.lua:3: broken module"),
        "{}",
        runtime.1
    );

    let syntax = check(
        &conf("", "    Plugin uses"),
        &[
            ("uses", "local m = require 'lib.syntax'\n"),
            ("lib/syntax", "local ok = 1\nlocal = = 2\n"),
        ],
    );
    assert!(!syntax.0);
    assert!(
        syntax.1.contains("plugins/lib/syntax.lua:2:"),
        "{}",
        syntax.1
    );

    let cycle = check(
        &conf("", "    Plugin uses"),
        &[
            ("uses", "require 'cyc.a'\n"),
            ("cyc/a", "return require 'cyc.b'\n"),
            ("cyc/b", "return require 'cyc.a'\n"),
        ],
    );
    assert!(!cycle.0);
    assert!(
        cycle
            .1
            .contains("modules require each other: cyc.a → cyc.b → cyc.a"),
        "{}",
        cycle.1
    );

    // A module that loads is fine in --check, and its file is named in
    // nothing.
    let fine = check(
        &conf("", "    Plugin uses"),
        &[("uses", "local m = require 'ok'\n"), ("ok", "return 1\n")],
    );
    assert!(fine.0, "{}", fine.1);
}

#[test]
fn a_module_top_level_is_stopped_like_a_scripts() {
    let (ok, out) = check(
        &conf("", "    Plugin uses"),
        &[
            ("uses", "require 'spin'\n"),
            ("spin", "local n = 0\nwhile true do n = n + 1 end\n"),
        ],
    );
    assert!(!ok);
    assert!(
        out.contains("plugins/spin.lua: top level ran longer than 5s (stopped at"),
        "{out}"
    );
}

/// Modules come with the config snapshot: a worker that replaces a crashed
/// one runs the module the master loaded, not the file as edited since;
/// SIGHUP loads the edit.
#[test]
fn a_restarted_worker_runs_the_modules_the_master_loaded() {
    let script = "local v = require 'lib.version'\n\
                  function hook_response(r) r:write(v) return OK end\n";
    let mut srv = Axkit::start_with(&conf("Workers 1", "    Plugin show"), &[], |d| {
        d.write("plugins/show.lua", script);
        d.write("plugins/lib/version.lua", "return 'v1'");
    });
    assert_eq!(srv.get("/").text(), "v1");
    srv.dir.write("plugins/lib/version.lua", "return 'v2'");
    let [worker] = srv.workers()[..] else {
        panic!("one worker expected")
    };
    signal(worker, libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(20), || {
        matches!(&srv.workers()[..], [w] if *w != worker && process::worker_ready(*w))
    }));
    assert_eq!(srv.get("/").text(), "v1");
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || srv.get("/").text() == "v2"),
        "{}",
        srv.stderr()
    );
}

/// `LuaReload On`: a changed module is loaded again, with the modules that
/// require it and the scripts that use them (whose state starts over); a
/// broken edit keeps the previous version and says so once.
#[test]
fn lua_reload_reloads_a_changed_module_and_what_requires_it() {
    let script = "local outer = require 'lib.outer'\nlocal n = 0\n\
                  function hook_response(r) n = n + 1 r:write(outer.v, '|', n) return OK end\n";
    let mut srv = start_with(&conf("LuaReload On", "    Plugin show"), &[], |d| {
        d.write("plugins/show.lua", script);
        d.write(
            "plugins/lib/outer.lua",
            "local inner = require 'lib.inner'\nreturn { v = 'outer(' .. inner.v .. ')' }\n",
        );
        d.write("plugins/lib/inner.lua", "return { v = 'inner1' }\n");
    });
    assert_eq!(srv.get("/").text(), "outer(inner1)|1");
    assert_eq!(srv.get("/").text(), "outer(inner1)|2");
    rewrite(&srv.dir, "lib/inner.lua", "return { v = 'inner2' }\n", 10);
    assert_eq!(srv.get("/").text(), "outer(inner2)|1");
    assert_eq!(srv.get("/").text(), "outer(inner2)|2");
    rewrite(&srv.dir, "lib/inner.lua", "return { v = \n", 20);
    assert_eq!(srv.get("/").text(), "outer(inner2)|3");
    let log = srv.wait_stderr("plugins/lib/inner.lua:", Duration::from_secs(10));
    assert!(
        log.contains("LuaReload: keeping the previous version"),
        "{log}"
    );
    assert_eq!(srv.get("/").text(), "outer(inner2)|4");
    assert_eq!(
        srv.sync_stderr()
            .matches("keeping the previous version")
            .count(),
        1
    );
    rewrite(&srv.dir, "lib/inner.lua", "return { v = 'inner3' }\n", 30);
    assert_eq!(srv.get("/").text(), "outer(inner3)|1");
}

/// `_G` is the script's own global table, as in standard Lua, and reaches
/// nothing the sandbox leaves out.
#[test]
fn g_is_the_scripts_own_global_table() {
    let main = r#"
x_global = 1
local lib = require "lib.g"
function hook_response(r)
  if r:path() ~= "/" then return DECLINED end
  _G.set_via_g = "yes"
  r:write(table.concat({
    tostring(_G == _ENV), tostring(_G._G == _G), tostring(_G.x_global), tostring(set_via_g),
    tostring(_G.print == print), tostring(rawget(_G, "print")), tostring(getmetatable(_G)),
    tostring(_G.io), tostring(_G.os.execute), tostring(_G.debug), tostring(_G.dofile),
    tostring(_G.loadfile), tostring(lib.g == _G), tostring(lib.sees_x),
  }, ","))
  return OK
end
"#;
    let other = r#"
function hook_response(r)
  r:write(tostring(x_global), ",", tostring(set_via_g), ",", tostring(_G.json == json))
  return OK
end
"#;
    let srv = start_with(
        &conf("", "    Plugin main\n    Plugin other"),
        &[("main", main), ("other", other)],
        |d| {
            d.write(
                "plugins/lib/g.lua",
                "return { g = _G, sees_x = x_global }\n",
            );
        },
    );
    assert_eq!(
        srv.get("/").text(),
        "true,true,1,yes,true,nil,false,nil,nil,nil,nil,nil,false,nil"
    );
    assert_eq!(srv.get("/other").text(), "nil,nil,true");
}
