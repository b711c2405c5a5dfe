//! The request API of Lua plugins through the stock `axkit` binary: what a
//! script reads and writes, the hot methods' argument checks, hooks and
//! their return values, module state per worker, connection and logging
//! hooks, streamed request bodies, and runtime errors (500 with a
//! traceback; the worker survives).
//!
//! Each test starts its own server (`--no-master` unless it tests the
//! master) with real scripts written to its scratch directory.

mod common;
#[path = "common/lua.rs"]
mod lua;

use std::path::Path;
use std::time::Duration;

use common::*;
use lua::*;

#[test]
fn request_api() {
    let srv = start(
        &conf("LuaFileRoot {dir}", "    Plugin api"),
        &[("api", API)],
    );
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
        // Percent-decoded, as r:set_cookie encodes.
        r#""cookie":"sA""#,
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
    // Beneath a LuaFileRoot (there is no DocumentRoot here): a relative
    // symlink is followed while it stays beneath the root; nothing outside
    // is sent.
    let link = srv.dir.path().join("link.txt");
    std::os::unix::fs::symlink("big.txt", &link).unwrap();
    let r = srv.get(&format!("/file?path={}", link.display()));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 100_000);
    let out = srv.dir.path().join("out.txt");
    std::os::unix::fs::symlink("/etc/passwd", &out).unwrap();
    assert_eq!(
        srv.get(&format!("/file?path={}", out.display())).status,
        500
    );
    assert_eq!(srv.get("/file?path=/etc/passwd").status, 500);
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
  if p == "/value" then
    r:set_header("X-Value", r:param("v"))
    r:add_header("X-Twice", r:param("v"))
    r:add_header("X-Twice", 7)
    r:write("value")
    return OK
  end
  if p == "/splitheader" then
    r:set_header("X-Good", "1")
    r:set_header("X-Split", "a\r\nX-Injected: 1")
    r:add_header("X-Nul", "a\0b")
    r:add_header("X-Bad Name", "v")
    r:set_header("X-Good", "2\n")
    r:write("split")
    return OK
  end
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
    // Header values are shared with later responses setting the same one
    // (a few, recent, short ones): each response still carries its own.
    let long = "L".repeat(100);
    for i in 0..30 {
        let value = match i % 3 {
            0 => format!("value {}", i % 12),
            1 => "text/plain".to_string(),
            _ => format!("{long}{i}"),
        };
        let r = srv.get(&format!("/value?v={}", value.replace(' ', "+")));
        assert_eq!(r.text(), "value");
        assert_eq!(r.header("X-Value"), Some(value.as_str()), "{i}");
        assert_eq!(r.header_all("X-Twice"), [value.as_str(), "7"], "{i}");
    }
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
    // Header values that would split the response are refused as they are
    // set: none of them reaches the wire, and a refused set still takes
    // out the value it replaces. The second time, the worker takes the
    // values from its cache of those set lately (the refused ones kept
    // unchecked): still refused.
    for _ in 0..2 {
        let r = srv.get("/splitheader");
        assert_eq!((r.status, r.text().as_str()), (200, "split"));
        for name in ["X-Good", "X-Split", "X-Injected", "X-Nul", "X-Bad Name"] {
            assert_eq!(r.header(name), None, "{name}");
        }
    }
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

/// A `write_body_data` filter sees every response's body, and its first
/// chunk before the head is committed: here it sets a header and appends
/// how many bytes it saw, for a streamed body (each write), a whole body
/// from memory, a file sent with sendfile without filters (here through
/// memory), and an empty file.
#[test]
fn body_filters_see_the_head_before_it_is_committed() {
    let filter = r#"
function hook_write_body_data(r, data, last)
  local seen = tonumber(r:note("seen") or "0") + #data
  r:note("seen", tostring(seen))
  r:set_header("X-Filtered", "yes")
  if last then return OK, data .. "[" .. seen .. "]" end
  return OK, data
end
"#;
    let stream = r#"
function hook_response(r)
  r:write("ab")
  r:flush()
  r:write("cd")
  return OK
end
"#;
    let body = "    DocumentRoot {dir}/www\n    Plugin filter\n    Plugin uri_to_file\n    \
                Plugin serve_file\n    <Location /stream>\n        Plugin stream\n    </Location>";
    let srv = Axkit::start_single_with(&conf("", body), |d| {
        d.write("plugins/filter.lua", filter);
        d.write("plugins/stream.lua", stream);
        d.write("www/small.txt", "small");
        d.write("www/big.txt", vec![b'x'; 100_000]);
        d.write("www/empty.txt", "");
    });
    for (path, len) in [
        ("/stream", 4),
        ("/small.txt", 5),
        ("/big.txt", 100_000),
        ("/empty.txt", 0),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("X-Filtered"), Some("yes"), "{path}: {r:?}");
        assert!(
            r.text().ends_with(&format!("[{len}]")),
            "{path}: {}",
            r.text()
        );
        assert_eq!(r.body.len(), len + format!("[{len}]").len(), "{path}");
    }
}

/// `xmlresponse` is a chain: the Location's producer puts a document in
/// the pipeline, the Server's processor after it transforms it, and the
/// document left at the end is the body (as XML unless a type is set); a
/// processor that writes the response itself ends it; with no document
/// and nothing answered, the walk goes on to `response`.
#[test]
fn xmlresponse_is_a_chain_that_carries_a_document() {
    let producer = r#"
function hook_xmlresponse(r)
  if r:path() == "/doc/none" then return DECLINED end
  r:set_document("<greeting>hello " .. r:path() .. "</greeting>")
  return OK
end
"#;
    let processor = r#"
function hook_xmlresponse(r)
  local doc = r:document()
  if not doc then return DECLINED end
  if r:path() == "/doc/written" then
    r:set_header("Content-Type", "text/plain")
    r:write("processed: ", doc)
    return DONE
  end
  r:set_document((doc:gsub("hello", "HELLO")))
  return OK
end
function hook_response(r)
  r:write("plain response")
  return OK
end
"#;
    let body =
        "    Plugin processor\n    <Location /doc>\n        Plugin producer\n    </Location>";
    let srv = start(
        &conf("", body),
        &[("producer", producer), ("processor", processor)],
    );
    let r = srv.get("/doc/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<greeting>HELLO /doc/x</greeting>");
    assert_eq!(
        r.header("Content-Type"),
        Some("application/xml; charset=utf-8")
    );
    let r = srv.get("/doc/written");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "processed: <greeting>hello /doc/written</greeting>")
    );
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    // Nothing produced: the response hook answers.
    assert_eq!(srv.get("/doc/none").text(), "plain response");
    assert_eq!(srv.get("/elsewhere").text(), "plain response");
}

/// A script that ends its request with a 1xx status (interim by
/// definition) gets the built-in 500 instead, and the connection closes:
/// a bare `101` or `100` head would make the client, or a front proxy,
/// take the next response for this request's answer (or switch to a
/// tunnel) while the server went on reading requests.
#[test]
fn an_interim_status_cannot_end_a_request() {
    let mut srv = start(
        &conf("", "    Plugin interim"),
        &[(
            "interim",
            r#"
function hook_response(r)
  r:status(tonumber(r:param("s")))
  r:write("body")
  return OK
end
"#,
        )],
    );
    for code in [100, 101, 103] {
        let request = format!(
            "GET /x?s={code} HTTP/1.1\r\nHost: a\r\n\r\nGET /x?s=200 HTTP/1.1\r\nHost: a\r\n\r\n"
        );
        let (bytes, ended) = srv.exchange(request.as_bytes());
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{code}: {text}"
        );
        // The connection ends with that answer: nothing more is read on it.
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{code}: {text}");
        assert!(matches!(ended, Ended::Closed), "{code}: {ended:?}");
        srv.wait_stderr_line(
            &[&format!(
                "a response cannot end with the interim status {code}"
            )],
            Duration::from_secs(10),
        );
    }
}

/// A large body already all in the socket when the handler reads it:
/// every read succeeds, and after tokio's budget of operations for one
/// turn its reads say "not now" without a syscall while the socket stays
/// readable. Waiting on `readable()` then (which takes no budget) ended at
/// once, and the worker spun in that loop for ever: no timeout ran, no
/// other connection was served. Several such bodies, then a plain request
/// on the same worker.
#[test]
fn a_large_body_all_there_at_once_never_stalls_the_worker() {
    let script = "function hook_response(r)\n  r:write(#r:body())\n  return OK\nend\n";
    let srv = start(
        &conf("", "    MaxRequestBody 8M\n    Plugin big"),
        &[("big", script)],
    );
    let body = vec![b'x'; 4 << 20];
    for _ in 0..5 {
        let r = send(&srv, "POST", "/", "", &body);
        assert_eq!((r.status, r.text()), (200, (4 << 20).to_string()));
    }
    assert_eq!(srv.get("/").status, 200);
}

/// A handler that set the fields of the answer it meant to give (a
/// cookie, an encoding, validators, caching) and then ends in an error:
/// the error page keeps only the fields that hold for it (the challenge
/// of a 401, the `Retry-After` of a 503, a cookie below 500), never the
/// `Content-Encoding` that would garble the page or the validators and
/// caching fields a cache would keep the page under. A 2xx it returns is
/// its own answer, with every field it set.
#[test]
fn an_error_keeps_only_the_fields_that_hold_for_its_page() {
    let srv = start(
        &conf("", "    Plugin failing"),
        &[(
            "failing",
            r#"
function hook_response(r)
  r:set_cookie("sid", "s1")
  r:set_header("Content-Encoding", "gzip")
  r:set_header("ETag", '"v1"')
  r:set_header("Last-Modified", "Sun, 06 Dec 2026 00:00:00 GMT")
  r:set_header("Cache-Control", "public, max-age=3600")
  r:set_header("X-App", "1")
  r:set_header("Retry-After", "5")
  r:set_header("WWW-Authenticate", 'Basic realm="x"')
  if r:param("s") == "error" then error("boom") end
  return tonumber(r:param("s"))
end
"#,
        )],
    );
    let dropped = [
        "Content-Encoding",
        "ETag",
        "Last-Modified",
        "Cache-Control",
        "X-App",
    ];
    for (asked, status, kept) in [
        ("503", 503, &["Retry-After", "WWW-Authenticate"][..]),
        ("500", 500, &["Retry-After", "WWW-Authenticate"][..]),
        ("error", 500, &["Retry-After", "WWW-Authenticate"][..]),
        (
            "401",
            401,
            &["Retry-After", "WWW-Authenticate", "Set-Cookie"][..],
        ),
    ] {
        let r = send(&srv, "GET", &format!("/x?s={asked}"), "", b"");
        assert_eq!(r.status, status, "{asked}");
        for name in kept {
            assert!(r.header(name).is_some(), "{asked}: {name} dropped");
        }
        let gone = dropped.iter().chain(if status >= 500 {
            &["Set-Cookie"][..]
        } else {
            &[]
        });
        for name in gone {
            assert_eq!(r.header(name), None, "{asked}: {name} kept");
        }
        assert_eq!(
            r.header("Content-Type"),
            Some("text/html; charset=utf-8"),
            "{asked}"
        );
        assert!(r.text().contains(&format!("<h1>{status} ")), "{asked}");
    }
    let r = send(&srv, "GET", "/x?s=204", "", b"");
    assert_eq!(r.status, 204);
    for name in dropped.iter().chain(&["Set-Cookie", "Retry-After"]) {
        assert!(r.header(name).is_some(), "204: {name} dropped");
    }
}

/// A hook that ends its request with a 2xx or 3xx gives its own answer,
/// as nginx answers a module's status (OpenResty's `ngx.exit`): the fields
/// it set, its `Content-Type` included, an empty body (what it wrote is
/// not sent), and no `error` hook. The core's page (HTML, labelled with a
/// `Content-Type` of its own over the hook's, or under the hook's
/// `Content-Encoding: gzip`) went out with a 200, and an error hook ran.
/// Only a redirect whose hook set no `Content-Type` gets the built-in page,
/// without the encoding that would garble it; a 204 and a 304 have no body
/// at all, nor a `Content-Type` the hook did not set.
#[test]
fn a_status_below_400_is_the_hooks_answer_not_an_error_page() {
    let srv = start(
        &conf("", "    Plugin errors\n    Plugin answer"),
        &[
            (
                "errors",
                "function hook_error(r)\n  r:set_header(\"X-Error-Hook\", \"ran\")\nend\n",
            ),
            (
                "answer",
                r#"
function hook_response(r)
  local s = tonumber(r:param("s"))
  if r:param("type") then r:set_header("Content-Type", r:param("type")) end
  if r:param("gzip") then r:set_header("Content-Encoding", "gzip") end
  if s >= 300 and s ~= 304 then r:set_header("Location", "/there") end
  if s == 304 then r:set_header("ETag", '"v1"') end
  r:set_header("X-App", "1")
  r:write("not sent")
  return s
end
"#,
            ),
        ],
    );
    let get = |query: &str| {
        let req =
            format!("GET /x?{query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        lossy_undated(&srv.raw(req.as_bytes()).0)
    };
    let head = |status: &str, fields: &str| {
        format!(
            "HTTP/1.1 {status}\r\nServer: AxKit\r\nDate: DATE\r\n{fields}Connection: close\r\n\r\n"
        )
    };
    let page = |status: &str| {
        format!(
            "<!DOCTYPE html>\n<html><head><title>{status}</title></head>\n<body><h1>{status}</h1>\n</body></html>\n"
        )
    };
    assert_eq!(
        get("s=200"),
        head("200 OK", "X-App: 1\r\nContent-Length: 0\r\n")
    );
    assert_eq!(
        get("s=201&type=application/json"),
        head(
            "201 Created",
            "Content-Type: application/json\r\nX-App: 1\r\nContent-Length: 0\r\n"
        )
    );
    assert_eq!(
        get("s=200&gzip=1"),
        head(
            "200 OK",
            "Content-Encoding: gzip\r\nX-App: 1\r\nContent-Length: 0\r\n"
        )
    );
    assert_eq!(
        get("s=204&type=application/json"),
        head(
            "204 No Content",
            "Content-Type: application/json\r\nX-App: 1\r\n"
        )
    );
    assert_eq!(
        get("s=304"),
        head("304 Not Modified", "ETag: \"v1\"\r\nX-App: 1\r\n")
    );
    assert_eq!(
        get("s=302&type=text/plain"),
        head(
            "302 Found",
            "Content-Type: text/plain\r\nLocation: /there\r\nX-App: 1\r\nContent-Length: 0\r\n"
        )
    );
    let moved = page("301 Moved Permanently");
    assert_eq!(
        get("s=301&gzip=1"),
        head(
            "301 Moved Permanently",
            &format!(
                "Location: /there\r\nX-App: 1\r\nContent-Type: text/html; charset=utf-8\r\n\
                 Content-Length: {}\r\n",
                moved.len()
            )
        ) + &moved
    );
    // A status that has no page of nginx's gets none either.
    assert_eq!(
        get("s=300"),
        head(
            "300 Multiple Choices",
            "Location: /there\r\nX-App: 1\r\nContent-Length: 0\r\n"
        )
    );
    // An error is still one: the error hook runs, the core's page answers.
    let r = send(&srv, "GET", "/x?s=404&type=application/json", "", b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-Error-Hook"), Some("ran"));
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.text(), page("404 Not Found"));
}
