//! Lua plugins through the stock `axkit` binary: loading from `PluginDir`,
//! script-declared directives, the request API, hooks and their return
//! values, errors (syntax, runtime, bad returns, CPU loops stopped by
//! `LuaTimeLimit`, memory errors beyond `LuaMemoryLimit`), non-blocking primitives (sleep, HTTP client, TCP
//! socket, subprocess, files), forms and uploads (saved only when asked
//! for, in a private directory, never through a planted link; multipart
//! limits), reloading, and the demos in `plugins/` (hello, JSON API, wiki,
//! the wiki under 200 concurrent saves of one page).
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// The repository's example plugins.
const DEMO_PLUGINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins");

/// A one-Server config on an ephemeral port with the scratch directory's
/// `plugins/` as PluginDir; `body` goes inside `<Server>`.
fn conf(global: &str, body: &str) -> String {
    format!(
        "PluginDir {{dir}}/plugins\nPlugin logging/warn\nLogLevel LOGINFO\n{global}\n\
         <Server>\n    Listen 127.0.0.1:0\n{body}\n</Server>\n"
    )
}

/// Start one process with `scripts` (name, source) in `plugins/`.
fn start(conf: &str, scripts: &[(&str, &str)]) -> Axkit {
    Axkit::start_single_with(conf, |d| {
        for (name, src) in scripts {
            d.write(&format!("plugins/{name}.lua"), src);
        }
    })
}

/// One request with extra header lines and a body; the connection closes.
fn send(srv: &Axkit, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let started = Instant::now();
    let (bytes, ended) = srv.exchange(&req);
    parse_response(&bytes)
        .unwrap_or_else(|| srv.no_response(&format!("{method} {path}"), &bytes, &ended, started))
}

fn check(conf_text: &str, scripts: &[(&str, &str)]) -> (bool, String) {
    let dir = TempDir::new("luacheck");
    for (name, src) in scripts {
        dir.write(&format!("plugins/{name}.lua"), src);
    }
    let path = dir.write("axkit.conf", config_text(&dir, conf_text));
    let out = Command::new(BIN)
        .arg("--check")
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        lossy(&out.stderr) + &lossy(&out.stdout),
    )
}

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

const API: &str = r#"
function hook_post_read_request(r)
  r:note("seen_by", "api")
  return DECLINED
end

function hook_response(r)
  local p = r:path()
  if p == "/info" then
    local ip, port = r:peer()
    local h = r:headers()
    r:set_header("Content-Type", "application/json")
    r:write(json.encode({
      method = r:method(), uri = r:uri(), path = p, query = r:query(),
      a = r:param("a"), params = r:params(), ua = r:header("user-agent"),
      x = h["x-multi"], peer = ip, port_ok = port > 0, note = r:note("seen_by"),
      cookie = r:cookie("sid"), location = r:location(), host = r:host(),
    }))
    return OK
  elseif p == "/body" then
    local body = r:body()
    r:write(#body, ":", body:sub(1, 10))
    return OK
  elseif p == "/form" then
    local f = r:form{ uploads = { "up" } }
    local out = { a = f.a, b = f.b, p = r:param("b") }
    if f.up then
      out.name = f.up.filename
      out.size = f.up.size
      out.type = f.up.content_type
      out.data = file.read(f.up.path)
      out.path = f.up.path
    end
    r:write(json.encode(out))
    return OK
  elseif p == "/cookie" then
    r:set_cookie("sid", "abc123", { path = "/", http_only = true, max_age = 60 })
    r:set_cookie("theme", "dark")
    r:status(201)
    r:set_header("X-One", 1)
    r:add_header("X-Two", "a")
    r:add_header("X-Two", "b")
    return OK
  elseif p == "/redirect" then
    return r:redirect("/elsewhere", 301)
  elseif p == "/internal" then
    return r:internal_redirect("/target?from=internal")
  elseif p == "/target" then
    r:write("target ", r:param("from") or "-", " ", r:note("redirect.uri") or "-",
            " [", r:body(), "]")
    return OK
  elseif p == "/post-then-redirect" then
    r:body()
    return r:internal_redirect("/target?from=post")
  elseif p == "/file" then
    return r:send_file(r:param("path"), "text/plain")
  elseif p == "/stream" then
    for i = 1, 200 do
      r:write(string.rep(string.char(96 + i % 26), 1000))
    end
    r:flush()
    r:write("end")
    return OK
  elseif p == "/log" then
    r:log("warn", "script says", 42)
    return 204
  end
end
"#;

#[test]
fn request_api() {
    let srv = start(&conf("", "    Plugin api"), &[("api", API)]);
    let r = send(
        &srv,
        "GET",
        "/info?a=x%20y&b=1+2&a=second",
        "User-Agent: tester\r\nX-Multi: 1\r\nX-Multi: 2\r\nCookie: theme=x; sid=s%41\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
    let t = r.text();
    for want in [
        r#""method":"GET""#,
        r#""uri":"/info?a=x%20y&b=1+2&a=second""#,
        r#""path":"/info""#,
        r#""query":"a=x%20y&b=1+2&a=second""#,
        r#""a":"x y""#,
        r#""b":"1 2""#,
        r#""ua":"tester""#,
        r#""x":"1, 2""#,
        r#""peer":"127.0.0.1""#,
        r#""port_ok":true"#,
        r#""note":"api""#,
        r#""cookie":"s%41""#,
        r#""location":"/""#,
        r#""host":"localhost""#,
    ] {
        assert!(t.contains(want), "{want} not in {t}");
    }

    let r = send(&srv, "POST", "/body", "", b"0123456789abcdef");
    assert_eq!(r.text(), "16:0123456789");
    // Chunked request bodies are decoded.
    let (bytes, _) = srv.raw(
        b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    assert_eq!(parse_response(&bytes).unwrap().text(), "5:abcde");

    let r = send(&srv, "GET", "/cookie", "", b"");
    assert_eq!(r.status, 201);
    let cookies = r.header_all("set-cookie");
    assert_eq!(
        cookies,
        ["sid=abc123; Path=/; Max-Age=60; HttpOnly", "theme=dark"]
    );
    assert_eq!(r.header("X-One"), Some("1"));
    let twos: Vec<_> = r.headers.iter().filter(|(n, _)| n == "X-Two").collect();
    assert_eq!(twos.len(), 2);

    let r = srv.get("/redirect");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("Location"), Some("/elsewhere"));

    let r = srv.get("/internal");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "target internal /internal []");
    // The redirected request is a GET without the original body.
    let r = send(&srv, "POST", "/post-then-redirect", "", b"payload");
    assert_eq!(r.text(), "target post /post-then-redirect []");

    let path = srv.dir.write("big.txt", vec![b'z'; 100_000]);
    let r = srv.get(&format!("/file?path={}", path.display()));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Length"), Some("100000"));
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert!(r.body.iter().all(|b| *b == b'z') && r.body.len() == 100_000);
    let r = srv.get("/file?path=/nonexistent/file");
    assert_eq!(r.status, 500);
    // Opened beneath a root like any file: no DocumentRoot here, so no
    // symlink anywhere in the path.
    let link = srv.dir.path().join("link.txt");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let r = srv.get(&format!("/file?path={}", link.display()));
    assert_eq!(r.status, 500);
    // A FIFO (or any other non-file) is refused at once: opening it must
    // not wait for a writer, nor stream from it.
    let fifo = srv.dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let r = srv.get(&format!("/file?path={}", fifo.display()));
    assert_eq!(r.status, 500);
    let r = srv.get(&format!("/file?path={}", srv.dir.path().display()));
    assert_eq!(r.status, 500);

    let r = srv.get("/stream");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(r.body.len(), 200_003);
    assert!(r.text().ends_with("end"));

    let r = srv.get("/log");
    assert_eq!(r.status, 204);
    let mut srv = srv;
    srv.wait_stderr("script says 42", Duration::from_secs(10));

    // Not the script's: nil means DECLINED, so nobody answers.
    assert_eq!(srv.get("/other").status, 404);
}

/// The methods of `r` written as plain Lua C functions (`fast.rs`): the
/// config cache per Location, argument conversion, and an `r` kept past
/// its hook.
#[test]
fn hot_request_methods_check_requests_arguments_and_locations() {
    let script = r#"
directive { name = "Greeting", type = "string", default = "Hello" }
directive { name = "Names", type = "list" }
local kept
function hook_response(r)
  local p = r:path()
  if p == "/keep" then kept = r r:write("kept") return OK end
  if p == "/stale" then kept:set_header("X-Stale", "1") return OK end
  if p == "/write" then
    local t = setmetatable({}, { __tostring = function() return "T" end })
    r:write(1, " ", 1.5, " ", true, " ", nil, " ", t)
    return OK
  end
  if p == "/badheader" then r:set_header("X-Bad", {}) return OK end
  if p == "/upload" then r:write(r:form{ uploads = true }.up.path) return OK end
  local names = r:config("Names")
  names[#names + 1] = "z" -- a table from r:config is this call's own
  r:write(r:config("Greeting"), " ", table.concat(r:config("Names"), ","), " ", r:status())
  return OK
end
"#;
    let mut srv = start(
        &conf(
            "",
            "    Plugin hot
    Names a b
    <Location /a>
        Greeting A
    </Location>
                 <Location /b>
        Greeting B
        Names c
    </Location>",
        ),
        &[("hot", script)],
    );
    for _ in 0..2 {
        assert_eq!(srv.get("/x").text(), "Hello a,b 200");
        assert_eq!(srv.get("/a/x").text(), "A a,b 200");
        assert_eq!(srv.get("/b/x").text(), "B c 200");
    }
    assert_eq!(srv.get("/write").text(), "1 1.5 true nil T");
    assert_eq!(srv.get("/keep").text(), "kept");
    let r = srv.get("/stale");
    assert_eq!(r.status, 500);
    assert_eq!(r.header("X-Stale"), None);
    srv.wait_stderr("used outside its hook", Duration::from_secs(10));
    assert_eq!(srv.get("/badheader").status, 500);
    srv.wait_stderr(
        "r:set_header: bad argument #2 (value)",
        Duration::from_secs(10),
    );
    assert_eq!(srv.get("/x").text(), "Hello a,b 200");
    // With a single hook the request's state is not kept in the context:
    // uploads still go when the request is over.
    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.txt\"\r\n\r\n\
                 data\r\n--XyZ--\r\n";
    let r = send(
        &srv,
        "POST",
        "/upload",
        "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        body,
    );
    let path = r.text();
    assert!(path.contains("axkit-uploads-"), "{path}");
    wait_gone(Path::new(&path));
    stop(srv);
}

#[test]
fn forms_urlencoded_and_multipart_uploads() {
    let srv = start(&conf("", "    Plugin api"), &[("api", API)]);
    let r = send(
        &srv,
        "POST",
        "/form?b=query",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"a=1%262&b=x+y",
    );
    let t = r.text();
    assert!(t.contains(r#""a":"1&2""#), "{t}");
    assert!(t.contains(r#""b":"x y""#), "{t}");
    // The query string wins for r:param, as with AxKit2's param().
    assert!(t.contains(r#""p":"query""#), "{t}");

    let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield value\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"notes.txt\"\r\n\
Content-Type: text/plain\r\n\r\nline 1\r\nline 2\r\n--XyZ--\r\n";
    let r = send(
        &srv,
        "POST",
        "/form",
        "Content-Type: multipart/form-data; boundary=XyZ\r\n",
        body,
    );
    let t = r.text();
    assert!(t.contains(r#""a":"field value""#), "{t}");
    assert!(t.contains(r#""name":"notes.txt""#), "{t}");
    assert!(t.contains(r#""size":14"#), "{t}");
    assert!(t.contains(r#""type":"text/plain""#), "{t}");
    assert!(t.contains(r#""data":"line 1\r\nline 2""#), "{t}");
    // The temporary file is gone once the request is over.
    let path = t
        .split(r#""path":""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    wait_gone(Path::new(path));
    stop(srv);
    // MaxRequestBody applies to scripts too.
    let srv2 = start(
        &conf("", "    Plugin api\n    MaxRequestBody 10"),
        &[("api", API)],
    );
    let r = send(&srv2, "POST", "/body", "", b"0123456789abcdef");
    assert_eq!(r.status, 413);
}

#[test]
fn hooks_chain_and_return_values() {
    let first = r#"
function hook_access_control(r)
  if r:header("X-Deny") then return 403 end
  return OK
end
function hook_fixup(r)
  r:note("fixup", "first")
end
function hook_response(r)
  if r:path() == "/first" then r:write("first ", r:note("fixup")) return OK end
  if r:path() == "/declined" then return DECLINED end
  if r:path() == "/done" then r:status(202) r:write("done") return DONE end
  if r:path() == "/string" then return "yes" end
  if r:path() == "/table" then return {} end
  if r:path() == "/float" then return 1.5 end
  return nil
end
"#;
    let second = r#"
function hook_response(r)
  r:write("second")
  return OK
end
function hook_error(r)
  local f = r:failure()
  if r:status() == 418 or (f and f.message:match("teapot")) then
    r:write("custom error page")
    return OK
  end
end
function hook_write_body_data(r, data, last)
  if r:path() == "/first" then return OK, data:upper() end
end
"#;
    let srv = start(
        &conf("", "    Plugin first\n    Plugin second"),
        &[("first", first), ("second", second)],
    );
    let r = srv.get("/first");
    assert_eq!(r.text(), "FIRST FIRST");
    assert_eq!(srv.get("/declined").text(), "second");
    assert_eq!(srv.get("/other").text(), "second");
    let r = srv.get("/done");
    assert_eq!((r.status, r.text().as_str()), (202, "done"));
    let r = send(&srv, "GET", "/first", "X-Deny: 1\r\n", b"");
    assert_eq!(r.status, 403);
    let mut srv = srv;
    for (path, shown) in [
        ("/string", "returned \"yes\""),
        ("/table", "returned a table"),
        ("/float", "returned 1.5"),
    ] {
        assert_eq!(srv.get(path).status, 500, "{path}");
        srv.wait_stderr(shown, Duration::from_secs(10));
    }
    let log = srv.stderr();
    assert!(
        log.contains("plugins/first.lua: hook_response returned \"yes\"; expected OK, DECLINED"),
        "{log}"
    );
}

#[test]
fn module_state_lives_across_requests_in_a_worker() {
    let script = r#"
local hits = 0
loaded = (loaded or 0) + 1
function hook_response(r)
  hits = hits + 1
  r:write(hits, " ", loaded)
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin counter"), &[("counter", script)]);
    for want in ["1 1", "2 1", "3 1"] {
        assert_eq!(srv.get("/").text(), want);
    }
}

#[test]
fn connection_and_logging_hooks_and_streamed_body_reads() {
    let script = r#"
local connections, lines = 0, {}
function hook_connect(c)
  connections = connections + 1
  if c.peer ~= "127.0.0.1" or c.port <= 0 then return 403 end
end
function hook_logging(level, message, peer)
  if message:match("^note:") then lines[#lines + 1] = level .. " " .. message end
  return DECLINED
end
function hook_response(r)
  if r:path() == "/log" then
    r:log("warn", "note:", "one")
    r:log("LOGINFO", "note: two")
    r:log("warn", "note: three\n[emerg] FORGED\27[2J\255")
    r:write(table.concat(lines, "|"))
  elseif r:path() == "/read" then
    local sizes = 0
    while true do
      local chunk = r:read()
      if not chunk then break end
      sizes = sizes + #chunk
    end
    r:write("read ", sizes, " ", tostring(r:read()))
  else
    r:write("connections ", connections)
  end
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin hooks"), &[("hooks", script)]);
    assert_eq!(srv.get("/").text(), "connections 1");
    assert_eq!(srv.get("/").text(), "connections 2");
    // Every logging hook sees a script's message escaped: it cannot start
    // a line of its own, drive a terminal, or carry bytes that are not UTF-8.
    assert_eq!(
        srv.get("/log").text(),
        "warn note: one|info note: two|warn note: three\\x0a[emerg] FORGED\\x1b[2J\\xff"
    );
    let r = send(&srv, "POST", "/read", "", &vec![b'x'; 200_000]);
    assert_eq!(r.text(), "read 200000 nil");
}

#[test]
fn the_demo_config_checks() {
    let out = Command::new(BIN)
        .args(["--check", "-c", "etc/lua.conf"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", lossy(&out.stderr));
    // The demo shows the current way: no deprecated lines.
    assert!(
        !lossy(&out.stderr).contains("warning"),
        "{}",
        lossy(&out.stderr)
    );
}

#[test]
fn runtime_errors_are_500_with_traceback_and_the_worker_survives() {
    let script = r#"
local function inner(x)
  return x.field.missing
end
function hook_response(r)
  if r:path() == "/boom" then inner({}) end
  if r:path():match("/error$") then error("custom failure") end
  r:write("fine")
  return OK
end
"#;
    let mut srv = start(
        &conf(
            "",
            "    Plugin oops\n    <Location /trace>\n        StackTrace On\n    </Location>",
        ),
        &[("oops", script)],
    );
    let r = srv.get("/boom");
    assert_eq!(r.status, 500);
    assert!(
        !r.text().contains("oops.lua"),
        "no details without StackTrace"
    );
    // The traceback's lines arrive one by one: wait for the last one.
    let log = srv.wait_stderr("in function <", Duration::from_secs(10));
    assert!(log.contains("stack traceback"), "{log}");
    assert!(
        log.contains("plugins/oops.lua:3: attempt to index a nil value"),
        "{log}"
    );
    assert!(
        log.contains("in upvalue 'inner'") || log.contains("in local 'inner'"),
        "{log}"
    );
    let r = srv.get("/trace/error");
    assert_eq!(r.status, 500);
    let page = r.text();
    assert!(
        page.contains("plugins/oops.lua:7: custom failure"),
        "{page}"
    );
    assert!(page.contains("stack traceback"), "{page}");
    assert_eq!(srv.get("/ok").text(), "fine");
}

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

/// Send a GET without reading the answer yet.
fn begin(srv: &Axkit, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

fn finish(mut s: TcpStream) -> Response {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out).unwrap_or_else(|| panic!("no response: {}", lossy(&out)))
}

#[test]
fn sleeping_requests_do_not_block_the_worker() {
    let srv = start(&conf("", "    Plugin slow"), &[("slow", SLOW)]);
    // A request sleeping for a long time…
    let sleeper = begin(&srv, "/sleep?s=30");
    std::thread::sleep(Duration::from_millis(100));
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
            "Plugin lua\nLuaTimeLimit 200ms",
            "    Plugin slow\n    <Location /long>\n        LuaTimeLimit 1s\n    </Location>",
        ),
        &[("slow", SLOW)],
    );
    let sleeper = begin(&srv, "/sleep?s=2");
    assert_eq!(srv.get("/yield").text(), "after yield");
    for path in [
        "/spin",
        "/sleep-spin",
        "/spin-pcall",
        "/spin-co",
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
}

/// The Lua host's directives need only a `PluginDir` (where Lua plugins
/// are found), not a `Plugin lua` line.
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

#[test]
fn body_data_hook_streams_the_request_body() {
    let script = r#"
local sizes = {}
function hook_body_data(r, chunk)
  r:note("bytes", tostring(tonumber(r:note("bytes") or "0") + #chunk))
  return OK
end
function hook_response(r)
  r:write("got ", r:note("bytes") or "0")
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin counter"), &[("counter", script)]);
    let body = vec![b'q'; 300_000];
    let r = send(&srv, "POST", "/", "", &body);
    assert_eq!(r.text(), "got 300000");
}

/// A backend on an ephemeral port answering its n-th connection with
/// `replies[n]`, after reading the request (`{line}` and `{body}` in the
/// reply are replaced by the request line and body).
fn backend(replies: &[&'static str]) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let replies = replies.to_vec();
    let handle = std::thread::spawn(move || {
        for reply in replies {
            let (s, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut line = String::new();
            let mut len = 0;
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let text = reply
                .replace("{line}", first.trim())
                .replace("{body}", &lossy(&body));
            let mut s = s;
            s.write_all(text.as_bytes()).unwrap();
        }
    });
    (port, handle)
}

#[test]
fn http_client_tcp_socket_subprocess_and_files() {
    let script = r#"
function hook_response(r)
  local p = r:path()
  if p == "/http" then
    local res = http.request{ url = "http://127.0.0.1:" .. r:param("port") .. "/up?x=1",
                              method = "POST", body = "payload",
                              headers = { ["X-From"] = "lua" } }
    r:write(res.status, " ", res.headers["x-backend"], " ", res.body)
    return OK
  elseif p == "/tcp" then
    local s = tcp.connect("127.0.0.1", tonumber(r:param("port")))
    s:send("hello\n")
    local line = s:receive("line")
    s:close()
    r:write("tcp:", line)
    return OK
  elseif p == "/refused" then
    local ok, err = pcall(tcp.connect, "127.0.0.1", tonumber(r:param("port")))
    r:write(tostring(ok), " ", tostring(err):match("tcp.connect") or err)
    return OK
  elseif p == "/proc" then
    local out = process.run{ "sh", "-c", "read x; echo out:$x; echo err >&2; exit 3",
                             stdin = "in\n" }
    r:write(out.status, "|", out.stdout, "|", out.stderr)
    return OK
  elseif p == "/files" then
    local dir = r:param("dir")
    file.write(dir .. "/a.txt", "written by lua")
    local data = file.read(dir .. "/a.txt")
    local missing, err = file.read(dir .. "/nope.txt")
    r:write(data, "|", tostring(missing), "|", tostring(err ~= nil), "|",
            tostring(file.exists(dir .. "/a.txt")), "|", table.concat(file.list(dir), ","))
    return OK
  elseif p == "/blocked" then
    r:write(type(io), type(os.execute), type(dofile), type(require), type(os.time))
    return OK
  end
end
"#;
    let srv = start(&conf("", "    Plugin tools"), &[("tools", script)]);
    let (port, handle) = backend(&[
        "HTTP/1.1 200 OK\r\nX-Backend: yes\r\nConnection: close\r\n\r\n{line} {body}",
        "HTTP/1.1 200 OK\r\nX-Backend: chunked\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ]);
    let r = srv.get(&format!("/http?port={port}"));
    assert_eq!(r.text(), "200 yes POST /up?x=1 HTTP/1.1 payload");
    let r = srv.get(&format!("/http?port={port}"));
    assert_eq!(r.text(), "200 chunked abcde");
    handle.join().unwrap();

    let echo = TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let echo_thread = std::thread::spawn(move || {
        let (s, _) = echo.accept().unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut s = s;
        s.write_all(format!("echo {line}").as_bytes()).unwrap();
    });
    assert_eq!(
        srv.get(&format!("/tcp?port={echo_port}")).text(),
        "tcp:echo hello"
    );
    echo_thread.join().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    assert_eq!(
        srv.get(&format!("/refused?port={closed_port}")).text(),
        "false tcp.connect"
    );

    assert_eq!(srv.get("/proc").text(), "3|out:in\n|err\n");

    let files = srv.dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    assert_eq!(
        srv.get(&format!("/files?dir={}", files.display())).text(),
        "written by lua|nil|true|true|a.txt"
    );
    assert_eq!(srv.get("/blocked").text(), "nilnilnilnilfunction");
}

#[test]
fn lua_reload_picks_up_changed_scripts() {
    let v1 = "function hook_response(r) r:write('v1') return OK end";
    let v2 = "function hook_response(r) r:write('v2') return OK end";
    let srv = start(
        &conf("Plugin lua\nLuaReload On", "    Plugin live"),
        &[("live", v1)],
    );
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
    let v1 = "function hook_response(r) sleep(tonumber(r:param('s') or '0')) r:write('one') return OK end";
    let mut srv = Axkit::start_with(&conf("Workers 1", "    Plugin live"), &[], |d| {
        d.write("plugins/live.lua", v1);
    });
    assert_eq!(srv.get("/").text(), "one");
    // A request in flight across the reload…
    let in_flight = begin(&srv, "/?s=1");
    std::thread::sleep(Duration::from_millis(200));

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
    let deadline = Instant::now() + Duration::from_secs(15);
    while srv.get("/").text() != "two" {
        assert!(Instant::now() < deadline, "reload never took effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    // …is answered in full by the old worker with the old script.
    let r = finish(in_flight);
    assert_eq!((r.status, r.text().as_str()), (200, "one"));
}

#[test]
fn demo_hello_and_json_api() {
    let srv = Axkit::start_single_with(
        &format!(
            "PluginDir {DEMO_PLUGINS}\n<Server>\n    Listen 127.0.0.1:0\n\
             <Location /hello>\n        Plugin hello\n        Greeting Howdy\n    </Location>\n\
             <Location /api>\n        Plugin json_api\n        ApiMaxItems 2\n    </Location>\n</Server>\n"
        ),
        |_| {},
    );
    assert_eq!(srv.get("/hello?name=Ada").text(), "Howdy, Ada\n");
    assert_eq!(srv.get("/hello").text(), "Howdy, world\n");

    let r = srv.get("/api/time");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert!(r.text().starts_with("{\"time\":"), "{}", r.text());
    let r = send(&srv, "POST", "/api/items", "", br#"{"name":"apple"}"#);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("Location"), Some("/api/items/1"));
    assert!(r.text().contains("\"id\":1") && r.text().contains("\"name\":\"apple\""));
    assert_eq!(
        send(&srv, "POST", "/api/items", "", br#"{"name":"pear"}"#).status,
        201
    );
    assert_eq!(
        send(&srv, "POST", "/api/items", "", br#"{"name":"fig"}"#).status,
        507
    );
    assert_eq!(
        send(&srv, "POST", "/api/items", "", b"not json").status,
        400
    );
    let r = srv.get("/api/items");
    assert!(r.text().contains("\"count\":2"), "{}", r.text());
    assert!(srv.get("/api/items/2").text().contains("\"name\":\"pear\""));
    assert_eq!(srv.get("/api/items/9").status, 404);
    let r = send(&srv, "POST", "/api/echo?k=v", "", br#"{"a":[1,2]}"#);
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"a\":[1,2]"), "{}", r.text());
    assert!(r.text().contains("\"k\":\"v\""), "{}", r.text());
    let r = send(&srv, "DELETE", "/api/items", "", b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("GET, POST"));
    assert_eq!(srv.get("/api/nothing").status, 404);
}

#[test]
fn demo_wiki_view_edit_save() {
    let srv = Axkit::start_single_with(
        &format!(
            "PluginDir {DEMO_PLUGINS}\n<Server>\n    Listen 127.0.0.1:0\n\
             <Location /wiki>\n        Plugin wiki\n        WikiDir {{dir}}/pages\n    </Location>\n</Server>\n"
        ),
        |d| {
            d.write("pages/FrontPage.txt", "Start at SandBox.\n");
        },
    );
    let r = srv.get("/wiki/");
    assert_eq!(r.status, 302);
    assert_eq!(r.header("Location"), Some("/wiki/FrontPage"));
    let r = srv.get("/wiki/FrontPage");
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .contains("<p>Start at <a href=\"/wiki/SandBox\">SandBox</a>.</p>"),
        "{}",
        r.text()
    );
    // A missing page invites editing.
    let r = srv.get("/wiki/SandBox");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("/wiki/SandBox?edit"));
    let r = srv.get("/wiki/SandBox?edit");
    assert!(r
        .text()
        .contains("<form method=\"post\" action=\"/wiki/SandBox\">"));
    // Save through the form: text is stored as written, shown escaped.
    let r = send(
        &srv,
        "POST",
        "/wiki/SandBox",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"text=Hello+%3Cscript%3Ealert(1)%3C%2Fscript%3E+%26+FrontPage%0D%0A%0D%0Atwo",
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Location"), Some("/wiki/SandBox"));
    let saved = std::fs::read_to_string(srv.dir.path().join("pages/SandBox.txt")).unwrap();
    assert_eq!(saved, "Hello <script>alert(1)</script> & FrontPage\n\ntwo");
    let page = srv.get("/wiki/SandBox").text();
    assert!(
        page.contains("Hello &lt;script&gt;alert(1)&lt;/script&gt; &amp; "),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"/wiki/FrontPage\">FrontPage</a></p>\n<p>two</p>"),
        "{page}"
    );
    assert!(!page.contains("<script>"));
    let edit = srv.get("/wiki/SandBox?edit").text();
    assert!(edit.contains("&lt;script&gt;alert(1)"), "{edit}");
    let index = srv.get("/wiki/?index").text();
    assert!(index.contains("/wiki/FrontPage") && index.contains("/wiki/SandBox"));
    // Page names are words: no way out of the page directory.
    assert_eq!(srv.get("/wiki/..%2F..%2Fetc%2Fpasswd").status, 404);
    assert_eq!(srv.get("/wiki/a.b").status, 404);
    assert_eq!(send(&srv, "PUT", "/wiki/SandBox", "", b"").status, 405);
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
    let mut srv = start(
        &conf(
            "Plugin lua\nLuaTimeLimit 300ms\nLuaMemoryLimit 64M",
            "    Plugin evil",
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
        &conf("Plugin lua\nLuaMemoryLimit 8M", "    Plugin mem"),
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

/// A script that saves uploads only where it asks for them.
const UPLOADS: &str = r#"
function hook_response(r)
  local p = r:path()
  if p == "/keep" then
    local f = r:form{ uploads = { "up" } }
    r:write(f.up.path, "\n", (file.read(f.up.path)))
    return OK
  elseif p == "/keep-then-fail" then
    local f = r:form{ uploads = true }
    r:log("warn", "upload at", f.up.path)
    error("the handler failed after an upload was saved")
  elseif p == "/keep-then-spin" then
    local f = r:form{ uploads = true }
    r:log("warn", "spinning with", f.up.path)
    while true do end
  elseif p == "/later" then
    local first = r:form()
    local again = r:form{ uploads = "up" }
    r:write(tostring(first == again), "|", (file.read(first.up.path)))
    return OK
  elseif p == "/misspelt" then
    r:form{ upload = true }
  elseif p == "/ignore" then
    local f = r:form()
    -- Hold the request open while the test looks at the disk.
    local s = tcp.connect("127.0.0.1", tonumber(r:param("port")))
    s:send("looking\n")
    s:receive("line")
    s:close()
    r:write(f.a, "|", f.up.filename, "|", f.up.size, "|", tostring(f.up.path), "|",
            tostring(r:param("up")))
    return OK
  end
end
"#;

/// A multipart body with a text field `a` and a file field `up`.
fn upload_body(data: &str) -> Vec<u8> {
    format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{data}\r\n--XyZ--\r\n"
    )
    .into_bytes()
}

const MULTIPART: &str = "Content-Type: multipart/form-data; boundary=XyZ\r\n";

/// Symbolic links planted for a test, removed when it ends.
struct Planted(Vec<std::path::PathBuf>);

impl Planted {
    fn link(&mut self, at: std::path::PathBuf, target: &Path) {
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(target, &at).unwrap();
        self.0.push(at);
    }
    fn all_point_to(&self, target: &Path) {
        for link in &self.0 {
            assert_eq!(std::fs::read_link(link).unwrap(), target, "{link:?}");
        }
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        for link in &self.0 {
            let _ = std::fs::remove_file(link);
        }
    }
}

/// Stop a server that saved uploads with SIGTERM, as an administrator
/// would, so that its worker removes its upload directory (the harness's
/// SIGKILL would leave it in `$TMPDIR`).
fn stop(mut srv: Axkit) {
    srv.signal(libc::SIGTERM);
    assert!(srv.wait_exit(Duration::from_secs(10)).is_some());
}

/// Wait until `path` is gone (or fail after a few seconds).
fn wait_gone(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::symlink_metadata(path).is_ok() {
        assert!(Instant::now() < deadline, "{path:?} was not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// POST an upload to /keep: the saved file's path (it existed while the
/// handler ran, holding `data`).
fn keep_upload(srv: &Axkit, data: &str) -> std::path::PathBuf {
    let r = send(srv, "POST", "/keep", MULTIPART, &upload_body(data));
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let (path, seen) = text.split_once('\n').unwrap();
    assert_eq!(seen, data);
    std::path::PathBuf::from(path)
}

/// A local user who plants symbolic links where uploads used to go
/// (`$TMPDIR/axkit-upload-<pid>-<n>`), or guesses at where they go now,
/// gets nothing written through them: uploads are created exclusively,
/// under random names, in a directory of the worker's own (0700).
#[test]
fn uploads_go_to_a_private_directory_under_random_names() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let srv = start(&conf("", "    Plugin uploads"), &[("uploads", UPLOADS)]);
    let target = srv.dir.write("precious.txt", "precious");
    let mut planted = Planted(Vec::new());
    for n in 0..8 {
        planted.link(
            std::env::temp_dir().join(format!("axkit-upload-{}-{n}", srv.pid())),
            &target,
        );
    }

    let first = keep_upload(&srv, "attacker bytes");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    planted.all_point_to(&target);
    let dir = first.parent().unwrap().to_path_buf();
    assert_ne!(dir, std::env::temp_dir(), "{first:?}");
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o700, "{dir:?}");
    assert_eq!(meta.uid(), srv.dir.path().metadata().unwrap().uid());
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(!name.contains(&srv.pid().to_string()), "{name}");
    wait_gone(&first);

    // A guess at the new place: the name just freed, planted as a link.
    planted.link(first.clone(), &target);
    let second = keep_upload(&srv, "more attacker bytes");
    assert_ne!(second, first);
    assert_eq!(second.parent(), Some(dir.as_path()));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    planted.all_point_to(&target);
    wait_gone(&second);

    // The directory removed (a temp cleaner) and another made at its name:
    // the next upload goes to a new private directory; the impostor is left
    // alone.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let third = keep_upload(&srv, "after the cleaner");
    let new_dir = third.parent().unwrap();
    assert_ne!(new_dir, dir);
    assert_eq!(
        std::fs::metadata(new_dir).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    std::fs::remove_dir(&dir).unwrap();
    stop(srv);
}

/// A file field the handler did not ask for is reported (name, size,
/// type) but never written to disk.
#[test]
fn form_file_fields_not_asked_for_are_not_saved() {
    let srv = start(&conf("", "    Plugin uploads"), &[("uploads", UPLOADS)]);
    // The worker's upload directory, from an upload it did ask for.
    let dir = keep_upload(&srv, "asked for")
        .parent()
        .unwrap()
        .to_path_buf();
    let is_empty = |dir: &Path| std::fs::read_dir(dir).unwrap().next().is_none();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !is_empty(&dir) {
        assert!(Instant::now() < deadline, "{dir:?} not emptied");
        std::thread::sleep(Duration::from_millis(20));
    }

    let look = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = look.local_addr().unwrap().port();
    let body = upload_body("NOT-ASKED-FOR");
    let mut client = srv.connect();
    write!(
        client,
        "POST /ignore?port={port} HTTP/1.1\r\nHost: x\r\n{MULTIPART}Content-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    client.write_all(&body).unwrap();
    // The handler has parsed the form and now waits for us.
    let (peer, _) = look.accept().unwrap();
    let mut line = String::new();
    BufReader::new(peer.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "looking\n");
    assert!(is_empty(&dir), "{dir:?}");
    let old = std::env::temp_dir().join(format!("axkit-upload-{}-1", srv.pid()));
    assert!(std::fs::symlink_metadata(&old).is_err(), "{old:?}");
    (&peer).write_all(b"done\n").unwrap();
    let (bytes, _) = read_until_close(&mut client, Duration::from_secs(10));
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.text(), "field|a.txt|13|nil|nil");

    // Asked for later, the upload is saved into the same table.
    let r = send(&srv, "POST", "/later", MULTIPART, &upload_body("later"));
    assert_eq!(r.text(), "true|later");
    // A misspelt option is an error, not uploads silently dropped.
    let mut srv = srv;
    let r = send(&srv, "POST", "/misspelt", MULTIPART, &upload_body("x"));
    assert_eq!(r.status, 500);
    srv.wait_stderr("r:form: unknown option \"upload\"", Duration::from_secs(5));
    stop(srv);
}

/// Uploads are removed when the request ends, a failed one too, and the
/// worker's upload directory when the worker stops.
#[test]
fn uploads_are_removed_after_errors_and_their_directory_at_exit() {
    let mut srv = start(
        &conf("Plugin lua\nLuaTimeLimit 200ms", "    Plugin uploads"),
        &[("uploads", UPLOADS)],
    );
    let mut dir = None;
    for (path, said) in [
        ("/keep-then-fail", "upload at "),
        ("/keep-then-spin", "spinning with "),
    ] {
        let r = send(&srv, "POST", path, MULTIPART, &upload_body("x"));
        assert_eq!(r.status, 500);
        let line = srv.wait_stderr_line(&[said], Duration::from_secs(5));
        let upload = std::path::PathBuf::from(line.split(said).nth(1).unwrap().trim());
        wait_gone(&upload);
        dir = upload.parent().map(Path::to_path_buf);
    }
    let dir = dir.unwrap();
    assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
    stop(srv);
    assert!(
        std::fs::symlink_metadata(&dir).is_err(),
        "{dir:?} left behind"
    );
}

/// The limits of multipart parsing: a malformed body is the client's
/// error (400), so are too many parts (413), an over-long boundary or part
/// head (400); quoted parameters may hold `;`.
#[test]
fn multipart_limits_and_malformed_bodies() {
    let script = r#"
function hook_response(r)
  local f = r:form()
  r:write(tostring(f.up and f.up.filename), "|", tostring(f.a), "|", tostring(r:param("up")))
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin form"), &[("form", script)]);
    let post =
        |ct: &str, body: &[u8]| send(&srv, "POST", "/", &format!("Content-Type: {ct}\r\n"), body);
    let r = post(
        "multipart/form-data; Boundary=\"XyZ\"",
        b"--XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a;b.txt\"\r\n\r\n\
x\r\n--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nplain\r\n--XyZ--\r\n",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "a;b.txt|plain|nil"));
    assert_eq!(
        post("multipart/form-data; boundary=XyZ", b"--XyZ\r\nno end").status,
        400
    );
    assert_eq!(post("multipart/form-data", b"--XyZ--\r\n").status, 400);
    let long = "b".repeat(71);
    let body =
        format!("--{long}\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n--{long}--\r\n");
    assert_eq!(
        post(
            &format!("multipart/form-data; boundary={long}"),
            body.as_bytes()
        )
        .status,
        400
    );
    let head = format!(
        "--b\r\nContent-Disposition: form-data; name=a\r\nX-Pad: {}\r\n\r\nx\r\n--b--\r\n",
        "p".repeat(9000)
    );
    assert_eq!(
        post("multipart/form-data; boundary=b", head.as_bytes()).status,
        400
    );
    let mut many = String::new();
    for i in 0..1001 {
        many.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=f{i}\r\n\r\nx\r\n"
        ));
    }
    many.push_str("--b--\r\n");
    assert_eq!(
        post("multipart/form-data; boundary=b", many.as_bytes()).status,
        413
    );
    // The worker is fine.
    assert_eq!(
        post("application/x-www-form-urlencoded", b"a=1").text(),
        "nil|1|nil"
    );
}

/// A failed file.write leaves no temporary file; a new file gets the
/// usual permissions (0666 less the umask); file.read refuses what is not
/// a regular file (a FIFO would block it for good); process.run feeds a
/// big stdin while it reads the output, and bounds that output.
#[test]
fn file_and_process_primitives_under_stress() {
    use std::os::unix::fs::PermissionsExt;
    let script = r#"
function hook_response(r)
  local p, dir = r:path(), r:param("dir")
  if p == "/write" then
    local ok, err = pcall(file.write, dir .. "/" .. r:param("name"), "data")
    r:write(tostring(ok), "|", tostring(err))
  elseif p == "/read" then
    local data, err = file.read(dir .. "/" .. r:param("name"))
    r:write(tostring(data), "|", tostring(err))
  elseif p == "/cat" then
    local input = string.rep("0123456789abcdef", 65536)
    local out = process.run{ "cat", stdin = input, timeout = 5 }
    r:write(tostring(out.stdout == input), "|", #out.stdout)
  elseif p == "/flood" then
    local ok, err = pcall(process.run, { "head", "-c", "17000000", "/dev/zero" })
    r:write(tostring(ok), "|", tostring(err))
  end
  return OK
end
"#;
    let srv = start(&conf("", "    Plugin files"), &[("files", script)]);
    let dir = srv.dir.path().join("data");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let d = dir.display();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    // Renaming onto a directory fails after the data was written.
    let t = srv.get(&format!("/write?dir={d}&name=sub")).text();
    assert!(t.starts_with("false|"), "{t}");
    assert_eq!(listing(), ["sub"]);
    let long = "n".repeat(300);
    let t = srv.get(&format!("/write?dir={d}&name={long}")).text();
    assert!(t.contains("File name too long"), "{t}");
    assert_eq!(listing(), ["sub"]);

    let t = srv.get(&format!("/write?dir={d}&name=new.txt")).text();
    assert_eq!(t, "true|nil");
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .map(|m| u32::from_str_radix(m.trim(), 8).unwrap())
        .unwrap();
    let mode = std::fs::metadata(dir.join("new.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666 & !umask);
    assert_eq!(listing(), ["new.txt", "sub"]);

    let fifo = std::ffi::CString::new(format!("{d}/fifo")).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let t = srv.get(&format!("/read?dir={d}&name=fifo")).text();
    assert!(
        t.starts_with("nil|") && t.contains("not a regular file"),
        "{t}"
    );
    assert_eq!(
        srv.get(&format!("/read?dir={d}&name=new.txt")).text(),
        "data|nil"
    );

    assert_eq!(srv.get("/cat").text(), "true|1048576");
    let t = srv.get("/flood").text();
    assert!(t.starts_with("false|") && t.contains("more than"), "{t}");
}

/// 200 saves of one wiki page at once (20 clients, 10 saves each, every
/// body different): none fails, a reader never sees a torn page, the page
/// ends as exactly one of the bodies and no temporary file is left.
#[test]
fn demo_wiki_survives_concurrent_saves_of_one_page() {
    const CLIENTS: usize = 20;
    const SAVES: usize = 10;
    let srv = Axkit::start_single_with(
        "PluginDir {dir}/plugins\n<Server>\n    Listen 127.0.0.1:0\n\
         <Location /wiki>\n        Plugin wiki\n        WikiDir {dir}/pages\n    </Location>\n</Server>\n",
        |d| {
            d.write(
                "plugins/wiki.lua",
                std::fs::read(format!("{DEMO_PLUGINS}/wiki.lua")).unwrap(),
            );
            d.write("pages/SandBox.txt", "initial");
        },
    );
    let body = |c: usize, i: usize| format!("client {c} save {i} ").repeat(400);
    let mut bodies: std::collections::HashSet<String> = (0..CLIENTS)
        .flat_map(|c| (0..SAVES).map(move |i| body(c, i)))
        .collect();
    bodies.insert("initial".into());
    let bodies = std::sync::Arc::new(bodies);
    let page = srv.dir.path().join("pages/SandBox.txt");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (page, done, bodies) = (page.clone(), done.clone(), bodies.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let text = std::fs::read_to_string(&page).unwrap();
                assert!(
                    bodies.contains(&text),
                    "torn page: {:?}…",
                    &text[..text.len().min(80)]
                );
                reads += 1;
            }
            reads
        })
    };
    let addr = srv.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                for i in 0..SAVES {
                    let form = format!("text={}", body(c, i).replace(' ', "+"));
                    let req = format!(
                        "POST /wiki/SandBox HTTP/1.1\r\nHost: x\r\n\
                         Content-Type: application/x-www-form-urlencoded\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
                        form.len()
                    );
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(req.as_bytes()).unwrap();
                    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(30));
                    statuses.push(status_of(&bytes));
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    let failed = statuses.iter().filter(|&&s| s != 303).count();
    assert_eq!(failed, 0, "statuses: {statuses:?}");
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(text != "initial" && bodies.contains(&text));
    let names: Vec<String> = std::fs::read_dir(page.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["SandBox.txt"]);
}

/// A page name longer than a file name can be is no page: 404 for every
/// method, where a save used to fail with a 500.
#[test]
fn demo_wiki_refuses_over_long_page_names() {
    let srv = Axkit::start_single_with(
        &format!(
            "PluginDir {DEMO_PLUGINS}\n<Server>\n    Listen 127.0.0.1:0\n\
             <Location /wiki>\n        Plugin wiki\n        WikiDir {{dir}}/pages\n    </Location>\n</Server>\n"
        ),
        |d| {
            d.write("pages/FrontPage.txt", "front");
        },
    );
    let save = |name: &str| {
        send(
            &srv,
            "POST",
            &format!("/wiki/{name}"),
            "Content-Type: application/x-www-form-urlencoded\r\n",
            b"text=hello",
        )
        .status
    };
    let longest = "A".repeat(100);
    assert_eq!(save(&longest), 303);
    assert_eq!(srv.get(&format!("/wiki/{longest}")).status, 200);
    for name in ["A".repeat(101), "B".repeat(300)] {
        assert_eq!(save(&name), 404, "{}", name.len());
        assert_eq!(srv.get(&format!("/wiki/{name}")).status, 404);
        assert_eq!(srv.get(&format!("/wiki/{name}?edit")).status, 404);
    }
}
