//! The cache tests' origin (a Lua plugin that counts its own calls in a
//! shared zone, so the count covers every worker) and the helpers around
//! it, for tests/cache.rs and tests/cache_tiers.rs.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::common::*;
use crate::lua;

/// The origin: `/calls?p=PATH` says how often PATH was served; every other
/// path counts itself and answers `call N`, with `Cache-Control` from
/// `?cc=`, and: `/vary…` varies by Accept-Language; `/etag…` has an ETag
/// and answers 304 to it (with `Set-Cookie: ?sc=` on the 304); `/flaky…`
/// answers 503 once `/break` was called (with `?stream=N`, a body of N
/// bytes flushed before its end);
/// `/slow…` takes half a second (or `?s=`); `/gated…` is fresh for a
/// second at its first call (then stale-while-revalidate for a minute),
/// and holds every later answer until `/open` was called (at most 10 s);
/// `?loc=` sets `Location`;
/// `?pad=N` adds N bytes to the body; `/auth…` and `/cookie…` as named.
pub const ORIGIN: &str = r#"
function hook_response(r)
  local p = r:path()
  if p == "/calls" then
    r:write(tostring(shared.get("calls:" .. r:param("p")) or 0))
    return OK
  end
  if p == "/break" then
    shared.set("broken", true)
    return OK
  end
  if p == "/open" then
    shared.set("open", true)
    return OK
  end
  if p:sub(1, 6) == "/flaky" and shared.get("broken") then
    if not r:param("stream") then return 503 end
    r:status(503)
    r:set_header("Content-Type", "text/plain")
    r:write(string.rep("e", tonumber(r:param("stream"))))
    r:flush()
    r:write("error end")
    return OK
  end
  local n = shared.incr("calls:" .. p, 1, 0)
  r:set_header("Content-Type", "text/plain")
  if r:param("cc") then r:set_header("Cache-Control", r:param("cc")) end
  if p:sub(1, 7) == "/cookie" then r:set_header("Set-Cookie", "a=b") end
  if r:param("loc") then r:set_header("Location", r:param("loc")) end
  if p:sub(1, 5) == "/slow" then sleep(tonumber(r:param("s") or "0.5")) end
  if p:sub(1, 6) == "/gated" then
    if n == 1 then
      r:set_header("Cache-Control", "max-age=1, stale-while-revalidate=60")
    else
      r:set_header("Cache-Control", "max-age=60")
      local waited = 0
      while not shared.get("open") and waited < 400 do
        sleep(0.025)
        waited = waited + 1
      end
    end
  end
  if p:sub(1, 5) == "/etag" then
    r:set_header("ETag", '"v1"')
    if r:header("If-None-Match") == '"v1"' then
      if r:param("sc") then r:set_header("Set-Cookie", r:param("sc")) end
      r:status(304)
      return OK
    end
  end
  if p:sub(1, 5) == "/vary" then
    r:set_header("Vary", "Accept-Language")
    r:write("call ", n, " ", r:header("Accept-Language") or "-")
    return OK
  end
  r:write("call ", n)
  if r:param("pad") then r:write(string.rep("x", tonumber(r:param("pad")))) end
  return OK
end
"#;

pub fn start(workers: usize, global: &str, server: &str) -> Axkit {
    let conf = lua::conf(
        &format!("Workers {workers}\n{global}"),
        &format!("    Plugin cache\n    Cache On\n{server}\n    Plugin origin"),
    );
    Axkit::start_with(&conf, &[], |d| {
        d.write("plugins/origin.lua", ORIGIN);
    })
}

pub fn calls(srv: &Axkit, path: &str) -> String {
    get(srv, &format!("/calls?p={path}"), "").text()
}

pub fn status_field(r: &Response) -> &str {
    r.header("Cache-Status").unwrap_or("(none)")
}

/// `n` concurrent requests for `path`, each on a connection of its own,
/// all sent before any answer is read: every one must be 200 with the
/// body of one origin call.
pub fn stampede(addr: SocketAddr, path: &str, n: usize) {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        conns.push(s);
    }
    for mut s in conns {
        let (bytes, _) = read_until_close(&mut s, Duration::from_secs(30));
        let r = parse_response(&bytes).expect("a response");
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("call "), "{}", r.text());
    }
}
