//! HTTP/1.1 wire conformance of the real `axkit` binary for requests it
//! must serve, spoken in raw bytes: GET and HEAD with the server's own
//! headers, HTTP/1.0 and keep-alive, pipelining, the request forms and
//! whitespace a server must tolerate, `Expect: 100-continue`, request
//! bodies no plugin reads (drained, and the next request served), and
//! paths that are no protocol error.
//!
//! Every case asserts the exact status and whether the connection stays
//! open. Each test starts its own server (`--no-master`, so that a
//! crashing worker is visible: no master restarts it) and ends by checking
//! that it still serves and logged no panic.

mod common;
#[path = "common/protocol.rs"]
mod protocol;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use protocol::*;

/// A plain GET with the server's own headers, and DirectoryIndex.
#[test]
fn get_with_the_servers_own_headers() {
    let mut srv = start_main();
    // Plain GET, with the server's own headers.
    let (bytes, closed) = exchange(
        &srv,
        b"GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let r = parse_response(&bytes).unwrap_or_else(|| panic!("no response:\n{}", lossy(&bytes)));
    assert_eq!(r.status, 200, "{}", lossy(&bytes));
    assert_eq!(
        r.header("Content-Length"),
        Some("1024"),
        "{}",
        lossy(&bytes)
    );
    assert_eq!(r.body, one_k(), "{}", lossy(&bytes));
    assert_eq!(
        r.len,
        bytes.len(),
        "bytes after the body:\n{}",
        lossy(&bytes)
    );
    assert!(
        r.header("Date").is_some_and(|d| d.ends_with(" GMT")),
        "Date:\n{}",
        lossy(&bytes)
    );
    assert_eq!(r.header("Server"), Some("AxKit"), "{}", lossy(&bytes));
    assert!(
        bytes.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        lossy(&bytes)
    );
    // Connection: close closes after the response, and says so.
    assert!(
        closed,
        "Connection: close did not close:\n{}",
        lossy(&bytes)
    );
    assert_eq!(r.header("Connection"), Some("close"), "{}", lossy(&bytes));

    // DirectoryIndex.
    let r = srv.get("/");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), INDEX);

    assert_alive(&mut srv);
}

/// HEAD: the same headers as GET (Date aside), and not one body byte, also
/// with a GET of a file sent with sendfile pipelined behind it.
#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let mut srv = start_main();
    let get_response = srv.get("/1k.txt");
    let (bytes, closed) = exchange(
        &srv,
        b"HEAD /1k.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    let r =
        parse_head_response(&bytes).unwrap_or_else(|| panic!("no response:\n{}", lossy(&bytes)));
    assert!(closed, "{}", lossy(&bytes));
    assert_eq!(r.status, 200, "{}", lossy(&bytes));
    assert_eq!(
        r.len,
        bytes.len(),
        "HEAD response carries body bytes:\n{}",
        lossy(&bytes)
    );
    let without_date = |r: &Response| {
        let mut h: Vec<_> = r
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
            .cloned()
            .collect();
        h.sort();
        h
    };
    assert_eq!(
        without_date(&r),
        without_date(&get_response),
        "HEAD headers differ from GET:\n{}",
        lossy(&bytes)
    );
    // HEAD on a file sent with sendfile, then a GET pipelined behind it: the
    // GET response must start right after the HEAD's blank line.
    let mut s = srv.connect();
    s.write_all(b"HEAD /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\nGET /1k.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    let r = read_one(&mut s, true, &mut pending);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("Content-Length"),
        Some(&*(8u32 << 20).to_string()),
        "{r:?}"
    );
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(
        r.status,
        200,
        "GET after HEAD: {r:?}\nleft over:\n{}",
        lossy(&pending)
    );
    assert_eq!(r.body, one_k());
    drop(s);

    assert_alive(&mut srv);
}

/// HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 keeps alive.
#[test]
fn http_1_0_and_keep_alive() {
    let mut srv = start_main();
    // HTTP/1.0 without keep-alive closes, without a Connection header needed.
    let (bytes, closed) = exchange(&srv, b"GET /1k.txt HTTP/1.0\r\n\r\n");
    assert_eq!(status_of(&bytes), 200, "{}", lossy(&bytes));
    assert!(
        closed,
        "HTTP/1.0 without keep-alive stayed open:\n{}",
        lossy(&bytes)
    );
    assert_eq!(
        parse_response(&bytes).unwrap().body,
        one_k(),
        "{}",
        lossy(&bytes)
    );

    // HTTP/1.0 with keep-alive stays open and says so.
    let mut s = srv.connect();
    let mut pending = Vec::new();
    for i in 0..2 {
        s.write_all(b"GET /1k.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_one(&mut s, false, &mut pending);
        assert_eq!(r.status, 200, "1.0 keep-alive request {i}: {r:?}");
        assert_eq!(
            r.header("Connection"),
            Some("keep-alive"),
            "request {i}: {r:?}"
        );
        assert_eq!(r.body, one_k());
    }
    drop(s);

    // HTTP/1.1 keep-alive: two sequential requests on one connection.
    let mut s = srv.connect();
    let mut pending = Vec::new();
    for path in ["/1k.txt", "/index.html"] {
        s.write_all(keep_alive_get(path).as_bytes()).unwrap();
        let r = read_one(&mut s, false, &mut pending);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("Connection"), None, "{path}: {r:?}");
    }
    assert!(pending.is_empty(), "stray bytes: {}", lossy(&pending));
    drop(s);

    assert_alive(&mut srv);
}

/// Pipelined requests are answered in order; the absolute form, leading
/// empty lines, whitespace around framing values and a stray CRLF after a
/// body are tolerated.
#[test]
fn pipelining_and_tolerated_forms() {
    let mut srv = start_main();
    // Pipelining: three requests in one write, answered in order.
    let req = format!(
        "{}{}GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        keep_alive_get("/index.html"),
        keep_alive_get("/missing.txt")
    );
    let (bytes, closed) = exchange(&srv, req.as_bytes());
    let all = parse_all(&bytes);
    let statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 404, 200], "{}", lossy(&bytes));
    assert_eq!(all[0].text(), INDEX);
    assert_eq!(all[2].body, one_k());
    assert!(closed, "{}", lossy(&bytes));

    // Absolute-form target (its authority overrides Host).
    let (bytes, closed) = exchange(
        &srv,
        b"GET http://localhost/1k.txt HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&bytes), 200, "{}", lossy(&bytes));
    assert!(closed);
    assert_eq!(
        parse_response(&bytes).unwrap().body,
        one_k(),
        "{}",
        lossy(&bytes)
    );

    // Leading empty lines before the request line are tolerated.
    let (bytes, closed) = exchange(
        &srv,
        b"\r\n\r\nGET /1k.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&bytes), 200, "{}", lossy(&bytes));
    assert!(closed);
    // Optional whitespace around framing values is not an error.
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length:\t2 \r\n\r\nab{}",
        "POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: \tchunked\t\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    );
    let mut s = srv.connect();
    s.write_all(req.as_bytes()).unwrap();
    let mut pending = Vec::new();
    for i in 0..2 {
        let r = read_one(&mut s, false, &mut pending);
        assert_eq!(
            r.status, 405,
            "OWS around framing value, request {i}: {r:?}"
        );
        assert_eq!(r.header("Connection"), None, "{r:?}");
    }
    assert_usable(&mut s, &mut pending, "after OWS framing values");
    drop(s);
    // ... and so is the stray CRLF some clients send after a POST body.
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nab\r\n{}",
        "GET /1k.txt HTTP/1.1\r\nHost: localhost:8080\r\nConnection: close\r\n\r\n"
    );
    let (bytes, closed) = exchange(&srv, req.as_bytes());
    let statuses: Vec<u16> = parse_all(&bytes).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [405, 200], "{}", lossy(&bytes));
    assert!(closed);

    assert_alive(&mut srv);
}

/// `Expect: 100-continue` when no plugin reads the body: no 100, the final
/// response at once, and a close where the server cannot tell the body
/// from the next request.
#[test]
fn expect_continue_without_a_body_reader() {
    let mut srv = start_main();
    // Expect: 100-continue with the body sent at once. Nobody reads the body
    // of a static GET, so no 100 is sent; the final response is right. As we
    // never said 100 Continue, the client may or may not send the body, so
    // the server cannot tell body from next request: it announces
    // `Connection: close` and closes (RFC 9110 §10.1.1 lets it choose), and
    // the bytes behind the head are never taken for a request.
    let req = format!(
        "GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello{}",
        keep_alive_get("/index.html")
    );
    let (bytes, closed) = exchange(&srv, req.as_bytes());
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 1, "expect-continue GET: {}", lossy(&bytes));
    assert_eq!(all[0].status, 200, "{}", lossy(&bytes));
    assert_eq!(all[0].body, one_k(), "{}", lossy(&bytes));
    assert_eq!(
        all[0].header("Connection"),
        Some("close"),
        "{}",
        lossy(&bytes)
    );
    assert!(closed, "{}", lossy(&bytes));
    assert!(!lossy(&bytes).contains("100 Continue"), "{}", lossy(&bytes));

    // Expect: 100-continue where the client waits for the interim response:
    // the final response comes at once, without waiting for the body, says
    // close, and the server closes without waiting for the body either.
    let mut s = srv.connect();
    s.write_all(b"POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let (bytes, closed) = read_until_close(&mut s, LIMIT);
    assert_eq!(
        status_of(&bytes),
        405,
        "expect-continue POST: {}",
        lossy(&bytes)
    );
    assert!(closed, "{}", lossy(&bytes));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for a body never asked for"
    );
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.header("Connection"), Some("close"), "{}", lossy(&bytes));
    assert!(!lossy(&bytes).contains("100 Continue"), "{}", lossy(&bytes));
    // Expect on a request without a body changes nothing.
    let mut s = srv.connect();
    let mut pending = Vec::new();
    s.write_all(b"GET /1k.txt HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Connection"), None, "{r:?}");
    assert_usable(&mut s, &mut pending, "after a bodiless Expect");
    drop(s);

    assert_alive(&mut srv);
}

/// Bodies nobody reads (Content-Length or chunked) are drained and the
/// request pipelined after them is served.
#[test]
fn unread_bodies_are_drained() {
    let mut srv = start_main();
    // POST with a small body to a static file: 405 with Allow; the body is
    // drained and the pipelined request after it is served.
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello=world{}",
        keep_alive_get("/index.html")
    );
    let mut s = srv.connect();
    s.write_all(req.as_bytes()).unwrap();
    let mut pending = Vec::new();
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 405, "POST to a static file: {r:?}");
    assert_eq!(r.header("Allow"), Some("GET, HEAD"), "{r:?}");
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 200, "request after drained body: {r:?}");
    assert_eq!(r.text(), INDEX);
    assert_usable(&mut s, &mut pending, "after POST");
    drop(s);

    // Chunked POST body (with an extension and a trailer) drained likewise.
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: Chunked\r\n\r\n\
         5;ext=1;q=\"a b\"\r\nhello\r\n0006\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n{}",
        keep_alive_get("/index.html")
    );
    let mut s = srv.connect();
    s.write_all(req.as_bytes()).unwrap();
    let mut pending = Vec::new();
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 405, "chunked POST: {r:?}");
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 200, "request after drained chunked body: {r:?}");
    assert_usable(&mut s, &mut pending, "after chunked POST");
    drop(s);

    assert_alive(&mut srv);
}

/// Paths that name no file are no protocol error.
#[test]
fn encoded_slashes_and_dot_segments() {
    let mut srv = start_main();
    // An encoded slash is kept encoded and names no file: 404, not a
    // protocol error, so the connection stays open.
    let mut s = srv.connect();
    let mut pending = Vec::new();
    s.write_all(keep_alive_get("/a%2Fb").as_bytes()).unwrap();
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 404, "/a%2Fb: {r:?}");
    assert_usable(&mut s, &mut pending, "after /a%2Fb");
    drop(s);

    // Dot segments that stay inside the root are resolved, not refused.
    let r = srv.get("/x/../1k.txt");
    assert_eq!(r.status, 200, "{r:?}");

    assert_alive(&mut srv);
}

/// `ServerToken Off`: no Server header at all (Date stays), on error
/// responses too.
#[test]
fn server_token_off() {
    let mut srv = start_with("ServerToken Off");
    let r = srv.get("/1k.txt");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Server"), None, "{r:?}");
    assert!(r.header("Date").is_some(), "{r:?}");
    // Error responses too.
    let (bytes, _) = exchange(&srv, b"GET /1k.txt HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&bytes), 400, "{}", lossy(&bytes));
    assert_eq!(
        parse_response(&bytes).unwrap().header("Server"),
        None,
        "{}",
        lossy(&bytes)
    );

    assert_alive(&mut srv);
}

/// A request whose body was never asked for (`Expect: 100-continue`, no
/// 100 sent) that ends in an internal redirect (an ErrorDocument): the error
/// page still says `Connection: close` and the server closes, so the
/// client's next request is never read as the body it held back. The same
/// for a response with no error page, for comparison.
#[test]
fn expect_continue_with_an_error_document_closes() {
    let conf = STATIC_CONF.replace(
        "    Plugin serve_file\n",
        "    Plugin serve_file\n    Plugin error_doc\n    ErrorDocument 404 /errors/404.html\n",
    );
    let srv = Axkit::start_single_with(&conf, |d| {
        d.write("www/1k.txt", one_k());
        d.write("www/errors/404.html", "custom 404\n");
    });
    for (path, status, body) in [
        ("/nope", 404, &b"custom 404\n"[..]),
        ("/1k.txt", 405, &b""[..]),
    ] {
        let mut s = srv.connect();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        // The client, having waited, sends its next request: it must not
        // be taken for the 10-byte body.
        let mut pending = Vec::new();
        let r = read_one(&mut s, false, &mut pending);
        assert_eq!(r.status, status, "{path}: {r:?}");
        if !body.is_empty() {
            assert_eq!(r.body, body, "{path}");
        }
        assert_eq!(r.header("Connection"), Some("close"), "{path}: {r:?}");
        let _ = s.write_all(keep_alive_get("/1k.txt").as_bytes());
        let (rest, closed) = read_until_close(&mut s, LIMIT);
        pending.extend_from_slice(&rest);
        assert!(closed, "{path}: left open");
        assert!(
            pending.is_empty(),
            "{path}: answered after the close: {}",
            lossy(&pending)
        );
    }
}
