//! Loading Lua plugins through the stock `axkit` binary: from `PluginDir`
//! (`NAME.lua` or `NAME/init.lua`), script-declared directives (listed,
//! validated like Rust ones, typed values reaching the script), syntax
//! errors naming file and line, the snapshot size limit, and reloading
//! (`LuaReload`, SIGHUP without dropping a request in flight).
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::process::Command;
use std::time::Duration;

use common::*;
use lua::*;

const HELLO: &str = r#"
directive { name = "Greeting", type = "string", scopes = { "server", "location" },
            default = "Hello", doc = "What to greet with" }

function hook_response(r)
  r:set_header("Content-Type", "text/plain")
  r:write(r:config("Greeting") .. ", " .. (r:param("name") or "world") .. "\n")
  return OK
end
"#;

#[test]
fn hello_with_directive_default_and_override() {
    let srv = start(
        &conf(
            "",
            "    Plugin hello\n    <Location /fr>\n        Greeting Bonjour\n    </Location>",
        ),
        &[("hello", HELLO)],
    );
    let r = srv.get("/?name=Ada%20Lovelace");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, Ada Lovelace\n");
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("20"));
    assert_eq!(srv.get("/fr/x").text(), "Bonjour, world\n");
}

#[test]
fn init_lua_in_a_directory_and_directives_listing() {
    let conf_text = conf("", "    Plugin greeter\n    Greeting Hi");
    let dir = TempDir::new("luadirectives");
    dir.write("plugins/greeter/init.lua", HELLO);
    let path = dir.write("axkit.conf", config_text(&dir, &conf_text));
    let out = Command::new(BIN)
        .args(["--directives", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    let text = lossy(&out.stdout);
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    let section = text.split("[greeter]").nth(1).expect("greeter section");
    assert!(section.contains("Greeting <string>"), "{text}");
    assert!(section.contains("scopes: <Server>, <Location> (default: Hello)"));
    assert!(section.contains("What to greet with"));
    assert!(text.contains("LuaTimeLimit <duration>"), "{text}");

    let srv = Axkit::start_single_with(&conf_text, |d| {
        d.write("plugins/greeter/init.lua", HELLO);
    });
    assert_eq!(srv.get("/").text(), "Hi, world\n");
}

#[test]
fn script_directives_are_validated_like_rust_ones() {
    let script = r#"
directive { name = "Retries", type = "integer", scopes = { "location" }, default = "3" }
directive { name = "Mode", type = "enum", values = { "fast", "safe" }, default = "safe" }
"#;
    let (ok, out) = check(
        &conf("", "    Plugin opts\n    Retries many"),
        &[("opts", script)],
    );
    assert!(!ok);
    assert!(
        out.contains("axkit.conf:8: Retries (plugin opts): not allowed in <Server>"),
        "{out}"
    );
    let (ok, out) = check(
        &conf(
            "",
            "    Plugin opts\n    <Location /a>\n        Retries x\n        Mode slow\n    </Location>",
        ),
        &[("opts", script)],
    );
    assert!(!ok);
    assert!(
        out.contains("axkit.conf:9: Retries (plugin opts):"),
        "{out}"
    );
    assert!(out.contains("axkit.conf:10: Mode (plugin opts):"), "{out}");
    assert!(out.contains("fast|safe"), "{out}");
    // A bad declaration is the script's error, reported at the Plugin line.
    let (ok, out) = check(
        &conf("", "    Plugin opts"),
        &[("opts", "directive { name = 'X', type = 'colour' }")],
    );
    assert!(!ok);
    assert!(out.contains("axkit.conf:7: Plugin"), "{out}");
    assert!(out.contains("unknown type `colour`"), "{out}");
}

#[test]
fn typed_config_values_reach_the_script() {
    let script = r#"
directive { name = "Count", type = "integer", default = "7" }
directive { name = "Limit", type = "size", default = "2K" }
directive { name = "Wait", type = "duration", default = "1500ms" }
directive { name = "Enabled", type = "onoff", default = "off" }
directive { name = "Names", type = "list" }
directive { name = "Tag", type = "string", append = true }
function hook_response(r)
  local t = {}
  for _, name in ipairs({ "Count", "Limit", "Wait", "Enabled" }) do
    local v = r:config(name)
    t[#t + 1] = name .. "=" .. tostring(v) .. ":" .. (math.type(v) or "nil") .. type(v)
  end
  t[#t + 1] = "Names=" .. table.concat(r:config("Names"), ",")
  t[#t + 1] = "Tags=" .. table.concat(r:config("Tag"), ",")
  r:write(table.concat(t, " "))
  return OK
end
"#;
    let srv = start(
        &conf(
            "",
            "    Plugin typed\n    Enabled on\n    Names a b c\n    Tag x\n    Tag y",
        ),
        &[("typed", script)],
    );
    assert_eq!(
        srv.get("/").text(),
        "Count=7:integernumber Limit=2048:integernumber Wait=1.5:floatnumber \
         Enabled=true:nilboolean Names=a,b,c Tags=x,y"
    );
}

/// Scripts go to the workers with the config, so they count towards its
/// size limit: one too big is refused, with the reason, before it is read.
#[test]
fn scripts_past_the_snapshot_limit_are_refused() {
    let huge = format!("-- {}\n", "x".repeat(64 << 20));
    let (ok, out) = check(&conf("", "    Plugin huge"), &[("huge", &huge)]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("cannot load plugin `huge`: ")
            && out.contains("huge.lua: the config files and plugin scripts loaded exceed 64 MiB"),
        "{out}"
    );
}

#[test]
fn syntax_errors_name_file_and_line() {
    let (ok, out) = check(
        &conf("", "    Plugin broken"),
        &[("broken", "function hook_response(r)\n  r:write('x'\nend\n")],
    );
    assert!(!ok);
    assert!(out.contains("axkit.conf:7: Plugin (plugin core): cannot load plugin `broken`"));
    assert!(out.contains("plugins/broken.lua:3:"), "{out}");
    // The server refuses to start with it.
    let dir = TempDir::new("luasyntax");
    dir.write("plugins/broken.lua", "x = = 1\n");
    let path = dir.write(
        "axkit.conf",
        config_text(&dir, &conf("", "    Plugin broken")),
    );
    assert!(refused_at_start(&path).contains("plugins/broken.lua:1:"));
    // Unknown plugin: not found in the PluginDir.
    let (ok, out) = check(&conf("", "    Plugin nosuch"), &[]);
    assert!(!ok);
    assert!(out.contains("unknown plugin `nosuch`"), "{out}");
}

#[test]
fn lua_reload_picks_up_changed_scripts() {
    let v1 = "function hook_response(r) r:write('v1') return OK end";
    let v2 = "function hook_response(r) r:write('v2') return OK end";
    let srv = start(&conf("LuaReload On", "    Plugin live"), &[("live", v1)]);
    assert_eq!(srv.get("/").text(), "v1");
    let path = srv.dir.path().join("plugins/live.lua");
    std::fs::write(&path, v2).unwrap();
    // Make the change visible even on a coarse-grained clock.
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(srv.get("/").text(), "v2");
    // A broken edit keeps the old version and says why.
    std::fs::write(&path, "function hook_response(r) r:write('v3' end").unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(10))
        .unwrap();
    assert_eq!(srv.get("/").text(), "v2");
    let mut srv = srv;
    let log = srv.wait_stderr("plugins/live.lua:1:", Duration::from_secs(10));
    assert!(
        log.contains("LuaReload: keeping the previous version"),
        "{log}"
    );
    assert_eq!(srv.get("/").text(), "v2");
}

#[test]
fn sighup_reloads_scripts_without_dropping_requests() {
    // `?wait=PATH` holds the request until PATH exists.
    let v1 = "function hook_response(r)\n\
              local wait = r:param('wait')\n\
              while wait and not file.exists(wait) do sleep(0.02) end\n\
              r:write('one') return OK end";
    let mut srv = Axkit::start_with(
        &conf("Workers 1\nLuaFileRoot {dir}", "    Plugin live"),
        &[],
        |d| {
            d.write("plugins/live.lua", v1);
        },
    );
    assert_eq!(srv.get("/").text(), "one");
    // A request in flight across the reload: the worker has it before the
    // first SIGHUP, and keeps it until the second has taken effect.
    let release = srv.dir.path().join("release");
    let in_flight = begin(&srv, &format!("/?wait={}", release.display()));
    wait_server_read(&in_flight);

    // A broken script is refused and the old one keeps serving.
    let path = srv.dir.path().join("plugins/live.lua");
    std::fs::write(&path, "function hook_response(r").unwrap();
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("live.lua:1:", Duration::from_secs(10));
    assert_eq!(srv.get("/").text(), "one");

    std::fs::write(
        &path,
        "function hook_response(r) r:write('two') return OK end",
    )
    .unwrap();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(15), || srv.get("/").text() == "two"),
        "reload never took effect"
    );
    // The request is answered in full by the old worker with the old script.
    std::fs::write(&release, "").unwrap();
    let r = finish(in_flight);
    assert_eq!((r.status, r.text().as_str()), (200, "one"));
}
