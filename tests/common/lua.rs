//! Helpers for the Lua plugin tests (`lua_*.rs`): a one-Server config with
//! the scratch directory's `plugins/` as PluginDir, scripts written there,
//! requests, `--check` runs, and the API test script the request and form
//! tests share.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// The repository's example plugins.
pub const DEMO_PLUGINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins");

/// A one-Server config on an ephemeral port with the scratch directory's
/// `plugins/` as PluginDir; `body` goes inside `<Server>`.
pub fn conf(global: &str, body: &str) -> String {
    format!(
        "PluginDir {{dir}}/plugins\nPlugin logging/warn\nLogLevel LOGINFO\n{global}\n\
         <Server>\n    Listen 127.0.0.1:0\n{body}\n</Server>\n"
    )
}

/// Start one process with `scripts` (name, source) in `plugins/`.
pub fn start(conf: &str, scripts: &[(&str, &str)]) -> Axkit {
    start_with(conf, scripts, |_| {})
}

/// Start one process with `scripts` in `plugins/`, after `prepare` has
/// filled the scratch directory (the directories a `LuaFileRoot` names
/// must exist).
pub fn start_with(conf: &str, scripts: &[(&str, &str)], prepare: impl FnOnce(&TempDir)) -> Axkit {
    Axkit::start_single_with(conf, |d| {
        for (name, src) in scripts {
            d.write(&format!("plugins/{name}.lua"), src);
        }
        prepare(d);
    })
}

/// One request with extra header lines and a body; the connection closes.
pub fn send(srv: &Axkit, method: &str, path: &str, headers: &str, body: &[u8]) -> Response {
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

pub fn check(conf_text: &str, scripts: &[(&str, &str)]) -> (bool, String) {
    check_with(conf_text, scripts, |_| {})
}

/// `check`, after `prepare` has filled the scratch directory.
pub fn check_with(
    conf_text: &str,
    scripts: &[(&str, &str)],
    prepare: impl FnOnce(&TempDir),
) -> (bool, String) {
    let dir = TempDir::new("luacheck");
    prepare(&dir);
    for (name, src) in scripts {
        dir.write(&format!("plugins/{name}.lua"), src);
    }
    check_file(&dir.write("axkit.conf", config_text(&dir, conf_text)))
}

pub const API: &str = r#"
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

/// Send a GET without reading the answer yet.
pub fn begin(srv: &Axkit, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

pub fn finish(mut s: TcpStream) -> Response {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out).unwrap_or_else(|| panic!("no response: {}", lossy(&out)))
}

/// Stop a server that saved uploads with SIGTERM, as an administrator
/// would, so that its worker removes its upload directory (the harness's
/// SIGKILL would leave it in `$TMPDIR`).
pub fn stop(mut srv: Axkit) {
    srv.signal(libc::SIGTERM);
    assert!(srv.wait_exit(Duration::from_secs(10)).is_some());
}

/// Wait until `path` is gone (or fail after a few seconds).
pub fn wait_gone(path: &Path) {
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::symlink_metadata(path)
            .is_err()),
        "{path:?} was not removed"
    );
}

/// A multipart body with a text field `a` and a file field `up`.
pub fn upload_body(data: &str) -> Vec<u8> {
    format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"up\"; filename=\"a.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{data}\r\n--XyZ--\r\n"
    )
    .into_bytes()
}

pub const MULTIPART: &str = "Content-Type: multipart/form-data; boundary=XyZ\r\n";
