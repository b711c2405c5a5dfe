//! The HTTP client (Lua's `http`, on `axkit-client`), end to end: one
//! axkit process is the upstream (a script that counts the connections it
//! accepts), another calls it. Keep-alive reuse (counted by the server),
//! chunked responses, timeouts, the size limit, streaming both ways,
//! redirects and how their `Location` is resolved; and HTTPS against
//! `openssl s_server` with a test CA, trusted through `HttpClientCAFile`,
//! refused without it.

mod common;
#[path = "common/lua.rs"]
mod lua;
#[path = "common/services.rs"]
mod services;
#[path = "common/tls.rs"]
mod tls;

use common::*;
use lua::conf;
use tls::tls_server;

/// The upstream: counts the connections it accepted (`/count`).
const UPSTREAM: &str = r#"
local connections = 0
function hook_connect(c)
  connections = connections + 1
end
function hook_response(r)
  local p = r:path()
  if p == "/count" then
    r:write(connections)
  elseif p == "/hello" then
    r:write("hello ", r:header("X-N") or "")
  elseif p == "/chunked" then
    r:write("ab") r:flush() r:write("c") r:flush()
  elseif p == "/big" then
    r:write(string.rep("x", tonumber(r:param("n"))))
  elseif p == "/slow" then
    sleep(tonumber(r:param("s")))
    r:write("late")
  elseif p == "/stream" then
    for i = 1, 5 do r:write(string.rep(tostring(i), 1000)) r:flush() sleep(0.01) end
  elseif p == "/echo" then
    r:write(r:header("Transfer-Encoding") or "length ", r:header("Content-Length") or "", ":", r:body())
  elseif p == "/redirect" then
    return r:redirect("/hello", 302)
  elseif p == "/d/to" then
    -- Redirects to its `l`, exactly as given; without one, says so.
    local l = r:param("l")
    if l then return r:redirect(l, 302) end
    r:write("to")
  elseif p == "/d/x" then
    r:write("x ", r:param("a") or "", r:param("next") or "")
  else
    return 404
  end
  return OK
end
"#;

/// The client: each path calls the upstream (`?port=`) one way.
const CLIENT: &str = r#"
local function url(r, path)
  return "http://127.0.0.1:" .. r:param("port") .. path
end
function hook_response(r)
  local p = r:path()
  if p == "/keepalive" then
    local got = {}
    for i = 1, 5 do
      local res = http.request{ url = url(r, "/hello"), headers = { ["X-N"] = tostring(i) } }
      got[#got + 1] = res.body
    end
    local count = http.request{ url = url(r, "/count") }
    r:write(table.concat(got, ","), " connections=", count.body)
  elseif p == "/chunked" then
    local res = http.request{ url = url(r, "/chunked") }
    r:write(res.status, " ", res.headers["transfer-encoding"], " ", res.body)
  elseif p == "/timeout" then
    local ok, err = pcall(http.request, { url = url(r, "/slow?s=3"), read_timeout = 0.2 })
    r:write(tostring(ok), " ", err)
  elseif p == "/total" then
    local ok, err = pcall(http.request, { url = url(r, "/slow?s=3"), timeout = 0.3 })
    r:write(tostring(ok), " ", err)
  elseif p == "/limit" then
    local ok, err = pcall(http.request, { url = url(r, "/big?n=100000"), max_size = 1000 })
    local fits = http.request{ url = url(r, "/big?n=1000"), max_size = 1000 }
    r:write(tostring(ok), " ", err, " | ", #fits.body)
  elseif p == "/stream" then
    local res = http.request{ url = url(r, "/stream"), stream = true }
    local pieces, total = 0, 0
    while true do
      local piece = res:read()
      if not piece then break end
      pieces, total = pieces + 1, total + #piece
    end
    r:write(tostring(res.body), " pieces>1=", tostring(pieces > 1), " total=", total)
  elseif p == "/upload" then
    local parts = { "one ", "two ", "three" }
    local i = 0
    local res = http.request{ url = url(r, "/echo"), method = "POST", body = function()
      i = i + 1
      return parts[i]
    end }
    local plain = http.request{ url = url(r, "/echo"), method = "POST", body = "whole" }
    r:write(res.body, " | ", plain.body)
  elseif p == "/redirect" then
    local off = http.request{ url = url(r, "/redirect") }
    local on = http.request{ url = url(r, "/redirect"), redirects = 1 }
    r:write(off.status, " ", off.headers["location"], " | ", on.status, " ", on.body)
  elseif p == "/follow" then
    local to = url(r, "/d/to?l=" .. url_encode(r:param("l")))
    local ok, res = pcall(http.request, { url = to, redirects = 1 })
    if ok then r:write(res.status, " ", res.body) else r:write("error ", res) end
  elseif p == "/https" then
    local ok, res = pcall(http.request, { url = "https://localhost:" .. r:param("port") .. "/" })
    if ok then r:write(res.status, " ", res.body:match("s_server") or "?") else r:write("error ", res) end
  elseif p == "/refused" then
    local ok, err = pcall(http.request, { url = url(r, "/"), connect_timeout = 2 })
    r:write(tostring(ok), " ", err)
  end
  return OK
end
"#;

fn start_pair() -> (Axkit, Axkit) {
    let up = Axkit::start_single_with(&conf("", "    Plugin up"), |d| {
        d.write("plugins/up.lua", UPSTREAM);
    });
    let client = Axkit::start_single_with(&conf("", "    Plugin cl"), |d| {
        d.write("plugins/cl.lua", CLIENT);
    });
    (up, client)
}

fn call(client: &Axkit, path: &str, port: u16) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = client.get(&format!("{path}{sep}port={port}"));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.text()
}

#[test]
fn keep_alive_connections_are_reused() {
    let (up, client) = start_pair();
    let port = up.addr.port();
    assert_eq!(
        call(&client, "/keepalive", port),
        "hello 1,hello 2,hello 3,hello 4,hello 5 connections=1"
    );
    // The next requests find the pooled connection still there.
    assert!(call(&client, "/keepalive", port).ends_with("connections=1"));
}

#[test]
fn chunked_streamed_limited_and_timed_out_responses() {
    let (up, client) = start_pair();
    let port = up.addr.port();
    assert_eq!(call(&client, "/chunked", port), "200 chunked abc");
    assert_eq!(
        call(&client, "/stream", port),
        "nil pieces>1=true total=5000"
    );
    let t = call(&client, "/limit", port);
    assert!(
        t.starts_with("false ")
            && t.contains("http.request: the response body is larger than the request's limit"),
        "{t}"
    );
    assert!(t.ends_with(" | 1000"), "{t}");
    let t = call(&client, "/timeout", port);
    assert!(
        t.starts_with("false ")
            && t.contains("http.request: reading the response: timed out after 200ms"),
        "{t}"
    );
    let t = call(&client, "/total", port);
    assert!(t.contains("the request's timeout ran out"), "{t}");
    // The upstream still serves; a closed port is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let t = call(&client, "/refused", closed_port);
    assert!(
        t.starts_with("false ") && t.contains("http.request: 127.0.0.1:"),
        "{t}"
    );
    assert!(t.contains("Connection refused"), "{t}");
}

#[test]
fn request_bodies_stream_and_redirects_are_followed_on_request() {
    let (up, client) = start_pair();
    let port = up.addr.port();
    assert_eq!(
        call(&client, "/upload", port),
        "chunked:one two three | length 5:whole"
    );
    assert_eq!(call(&client, "/redirect", port), "302 /hello | 200 hello ");
}

/// A redirect's `Location` is resolved against the URL that was asked for
/// as RFC 3986 §5.2 says: relative references and dot segments, a query
/// alone keeping the path, a `://` inside a query not making it absolute,
/// and any other scheme (`mailto:`, `javascript:`) refused.
#[test]
fn redirect_locations_are_resolved_against_the_request_url() {
    let (up, client) = start_pair();
    let port = up.addr.port();
    let follow = |location: &str| {
        let l: String = location.bytes().map(|b| format!("%{b:02X}")).collect();
        call(&client, &format!("/follow?l={l}"), port)
    };
    assert_eq!(follow("x?a=1"), "200 x 1");
    assert_eq!(follow("../d/./y/../x?a=2"), "200 x 2");
    assert_eq!(follow("/d/x?next=http://b/"), "200 x http://b/");
    assert_eq!(follow("?q"), "200 to");
    assert_eq!(
        follow(&format!("http://127.0.0.1:{port}/d/x?a=3")),
        "200 x 3"
    );
    for refused in ["mailto:a@b.example", "javascript:alert(1)", "ftp://h/x"] {
        let t = follow(refused);
        assert!(
            t.starts_with("error ") && t.contains("only http:// and https://"),
            "{refused}: {t}"
        );
    }
}

#[test]
fn https_with_a_trusted_ca_and_an_untrusted_certificate_refused() {
    let dir = TempDir::new("tls");
    let Some(server) = tls_server(dir.path()) else {
        return;
    };
    let ca = dir.path().join("ca.pem");
    let trusting = Axkit::start_single_with(
        &conf(
            &format!("HttpClientCAFile {}", ca.display()),
            "    Plugin cl",
        ),
        |d| {
            d.write("plugins/cl.lua", CLIENT);
        },
    );
    assert_eq!(call(&trusting, "/https", server.port), "200 s_server");
    let plain = Axkit::start_single_with(&conf("", "    Plugin cl"), |d| {
        d.write("plugins/cl.lua", CLIENT);
    });
    let t = call(&plain, "/https", server.port);
    assert!(
        t.starts_with("error ") && t.contains("http.request: localhost:"),
        "{t}"
    );
    assert!(t.contains("invalid peer certificate: UnknownIssuer"), "{t}");

    // A file that holds no certificate is a config error.
    let (ok, out) = lua::check(
        &conf(
            &format!("HttpClientCAFile {}", dir.path().join("ext.cnf").display()),
            "",
        ),
        &[],
    );
    assert!(!ok);
    assert!(
        out.contains("HttpClientCAFile (plugin http-client): "),
        "{out}"
    );
    assert!(out.contains("no certificate in it"), "{out}");
}
