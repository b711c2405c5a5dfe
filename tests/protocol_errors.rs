//! HTTP/1.1 wire conformance of the real `axkit` binary for requests it
//! must refuse, spoken in raw bytes: framing ambiguities, field, Host,
//! request-line and path syntax, unsupported versions, the size limits
//! (414, 431, 413), and bad or oversized chunked bodies.
//!
//! Every case sends exact bytes over TCP and asserts the exact status and
//! whether the server closed the connection, because on the wire those two
//! facts are what decide whether a request can be smuggled past a front end:
//! a framing error must be answered (400/413/414/431/501/505) and followed by
//! a close, never by an attempt to resynchronise on the next bytes.
//!
//! The servers are plain static-file servers (`uri_to_file`, `serve_file`);
//! no plugin reads request bodies, so bodies are only ever *drained* after the
//! response. Body-decoding errors therefore show up as "the response to the
//! request, then a close", and a chunked body over `MaxRequestBody` cannot be
//! answered with 413 (there is no reader to notice).
//!
//! Each test starts its own server (`--no-master`, so that a crashing
//! worker is visible: no master restarts it) and ends by checking that it
//! still serves and logged no panic.

mod common;
#[path = "common/protocol.rs"]
mod protocol;

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;
use protocol::*;

/// Each case, on a new connection of one server, is answered with its
/// status, `Connection: close`, and the close.
fn all_rejected(cases: &[Case]) {
    let mut srv = start_main();
    for (what, req, status) in cases {
        expect_rejected(&srv, what, req.as_bytes(), *status);
    }
    assert_alive(&mut srv);
}

/// Content-Length and Transfer-Encoding that two parsers could read two
/// ways.
#[test]
fn ambiguous_body_framing_is_refused() {
    all_rejected(&ambiguous_framing_cases());
}

/// Field syntax: obs-fold, bare CR/LF, control bytes, names that are no
/// tokens.
#[test]
fn bad_header_fields_are_refused() {
    all_rejected(&bad_field_cases());
}

/// Host: missing on HTTP/1.1, twice, or not a host.
#[test]
fn bad_hosts_are_refused() {
    let h = "Host: localhost\r\n";
    all_rejected(&[
        (
            "missing Host on 1.1",
            "GET /1k.txt HTTP/1.1\r\n\r\n".to_string(),
            400,
        ),
        (
            "two Host headers",
            format!("GET /1k.txt HTTP/1.1\r\n{h}{h}\r\n"),
            400,
        ),
        (
            "Host with a path",
            "GET /1k.txt HTTP/1.1\r\nHost: a/b\r\n\r\n".to_string(),
            400,
        ),
        (
            "Host with userinfo",
            "GET /1k.txt HTTP/1.1\r\nHost: u@a\r\n\r\n".to_string(),
            400,
        ),
        (
            "Host with a bad port",
            "GET /1k.txt HTTP/1.1\r\nHost: localhost:99999\r\n\r\n".to_string(),
            400,
        ),
    ]);
}

/// The request line: version, separators, line ends, method and target.
#[test]
fn bad_request_lines_are_refused() {
    let h = "Host: localhost\r\n";
    all_rejected(&[
        ("HTTP/1.2", format!("GET /1k.txt HTTP/1.2\r\n{h}\r\n"), 400),
        (
            "HTTP/1.1x",
            format!("GET /1k.txt HTTP/1.1x\r\n{h}\r\n"),
            400,
        ),
        ("http/1.1", format!("GET /1k.txt http/1.1\r\n{h}\r\n"), 400),
        ("HTTP/1", format!("GET /1k.txt HTTP/1\r\n{h}\r\n"), 400),
        ("missing version", "GET /1k.txt\r\n\r\n".to_string(), 400),
        (
            "two spaces",
            format!("GET  /1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "tab as separator",
            format!("GET\t/1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "leading space",
            format!(" GET /1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "trailing space",
            format!("GET /1k.txt HTTP/1.1 \r\n{h}\r\n"),
            400,
        ),
        (
            "bare CR in the target",
            format!("GET /1k\rtxt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "bare LF request line",
            format!("GET /1k.txt HTTP/1.1\n{h}\r\n"),
            400,
        ),
        (
            "too many empty lines first",
            format!("{}GET /1k.txt HTTP/1.1\r\n{h}\r\n", "\r\n".repeat(9)),
            400,
        ),
        (
            "bare LF before request",
            format!("\nGET /1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "method not a token",
            format!("G(T /1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "absolute-form with userinfo",
            format!("GET http://u@localhost/1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "absolute-form without host",
            format!("GET http:///1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "fragment in target",
            format!("GET /1k.txt#x HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "non-ASCII in target",
            format!("GET /\u{e9} HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "relative target",
            format!("GET 1k.txt HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        ("* with GET", format!("GET * HTTP/1.1\r\n{h}\r\n"), 400),
    ]);
}

/// Paths that decode to something no file may be named, or above the
/// root.
#[test]
fn bad_paths_are_refused() {
    let h = "Host: localhost\r\n";
    all_rejected(&[
        ("encoded NUL", format!("GET /%00 HTTP/1.1\r\n{h}\r\n"), 400),
        (
            "dot-dot above root",
            format!("GET /../etc/passwd HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "encoded dot-dot",
            format!("GET /%2e%2e/etc/passwd HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "overlong UTF-8 dots",
            format!("GET /%c0%ae%c0%ae/ HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
        (
            "bad percent escape",
            format!("GET /%zz HTTP/1.1\r\n{h}\r\n"),
            400,
        ),
    ]);
}

/// Unsupported major versions: 505 as the wire crate documents (RFC 9110
/// §15.6.6); both 400 and 505 are acceptable answers, but it must be one of
/// them, and the connection closes.
#[test]
fn unsupported_versions_are_505() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    for (what, line) in [
        ("HTTP/2.0", "GET /1k.txt HTTP/2.0"),
        ("HTTP/0.9", "GET /1k.txt HTTP/0.9"),
    ] {
        let req = format!("{line}\r\n{h}\r\n");
        let (bytes, closed) = exchange(&srv, req.as_bytes());
        let status = status_of(&bytes);
        assert!(matches!(status, 400 | 505), "{what}: {}", lossy(&bytes));
        assert_eq!(status, 505, "{what} (documented as 505): {}", lossy(&bytes));
        assert!(closed, "{what}: {}", lossy(&bytes));
    }

    assert_alive(&mut srv);
}

/// A framing error never lets the server resynchronise: a request
/// pipelined behind a rejected one is not answered.
#[test]
fn nothing_after_a_framing_error_is_answered() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{}",
        keep_alive_get("/1k.txt")
    );
    expect_rejected(&srv, "smuggled request after CL+TE", req.as_bytes(), 400);
    let req = format!(
        "GET /1k.txt HTTP/1.1\r\n{h}X-A: a\r\n b\r\n\r\n{}",
        keep_alive_get("/1k.txt")
    );
    expect_rejected(&srv, "request after obs-fold", req.as_bytes(), 400);

    // A bad request on a connection that already served one: the first
    // response stands, the bad one gets its error, then the close.
    let req = format!(
        "{}GET /1k.txt HTTP/1.1\r\n\r\n",
        keep_alive_get("/index.html")
    );
    let (bytes, closed) = exchange(&srv, req.as_bytes());
    let all = parse_all(&bytes);
    assert_eq!(
        all.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 400],
        "{}",
        lossy(&bytes)
    );
    assert!(closed, "{}", lossy(&bytes));

    assert_alive(&mut srv);
}

/// MaxRequestLine 1K: 414, also for a line that never ends.
#[test]
fn request_line_over_the_limit_is_414() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    let req = format!("GET /{} HTTP/1.1\r\n{h}\r\n", "a".repeat(2000));
    expect_rejected(&srv, "long request line", req.as_bytes(), 414);
    // Without ever finishing the line: the limit applies to what has arrived.
    let mut s = srv.connect();
    s.write_all(format!("GET /{}", "a".repeat(1100)).as_bytes())
        .unwrap();
    let (bytes, closed) = read_until_close(&mut s, LIMIT);
    assert_eq!(
        status_of(&bytes),
        414,
        "unfinished long line: {}",
        lossy(&bytes)
    );
    assert!(closed, "{}", lossy(&bytes));
    // Just under the limit is fine (404: no such file).
    let path = format!("/{}", "a".repeat(1000));
    let line = format!("GET {path} HTTP/1.1");
    assert!(line.len() <= 1024);
    let (bytes, _) = exchange(
        &srv,
        format!("{line}\r\n{h}Connection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        status_of(&bytes),
        404,
        "line under the limit: {}",
        lossy(&bytes)
    );
    assert_alive(&mut srv);
}

/// MaxHeaders 20 and MaxHeaderSize 4K: 431.
#[test]
fn header_section_over_the_limits_is_431() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    // MaxHeaders 20: 431 (Host counts).
    let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /1k.txt HTTP/1.1\r\n{h}{many}\r\n");
    expect_rejected(&srv, "too many headers", req.as_bytes(), 431);
    let ok: String = (0..18).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /1k.txt HTTP/1.1\r\n{h}{ok}Connection: close\r\n\r\n");
    let (bytes, _) = exchange(&srv, req.as_bytes());
    assert_eq!(status_of(&bytes), 200, "20 headers: {}", lossy(&bytes));

    // MaxHeaderSize 4K: one huge field, 431.
    let req = format!(
        "GET /1k.txt HTTP/1.1\r\n{h}X-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    expect_rejected(&srv, "huge header", req.as_bytes(), 431);
    // Many medium fields adding up over the limit: 431 as well.
    let medium: String = (0..10)
        .map(|i| format!("X-M{i}: {}\r\n", "m".repeat(500)))
        .collect();
    let req = format!("GET /1k.txt HTTP/1.1\r\n{h}{medium}\r\n");
    expect_rejected(&srv, "header section too large", req.as_bytes(), 431);
    assert_alive(&mut srv);
}

/// MaxRequestBody 64K by Content-Length: 413 before the body is sent,
/// with or without `Expect: 100-continue`.
#[test]
fn body_over_the_limit_is_413_before_it_is_sent() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    // MaxRequestBody 64K by Content-Length: 413 before any body is sent
    // (we send none, and the answer must still come).
    let req = format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 100000\r\n\r\n");
    let mut s = srv.connect();
    s.write_all(req.as_bytes()).unwrap();
    let started = Instant::now();
    let (bytes, closed) = read_until_close(&mut s, LIMIT);
    assert_eq!(
        status_of(&bytes),
        413,
        "body over MaxRequestBody: {}",
        lossy(&bytes)
    );
    assert!(closed, "{}", lossy(&bytes));
    assert!(started.elapsed() < Duration::from_secs(3), "413 came late");
    assert!(!lossy(&bytes).contains("100 Continue"), "{}", lossy(&bytes));
    // Same with Expect: 100-continue: no 100, straight 413.
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\n{h}Expect: 100-continue\r\nContent-Length: 100000\r\n\r\n"
    );
    let bytes = expect_closed(&srv, "413 with expect-continue", req.as_bytes(), 413);
    assert!(!lossy(&bytes).contains("100 Continue"), "{}", lossy(&bytes));
    // The client that sends the body anyway still gets the 413 (lingering
    // close), not a reset.
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 100000\r\n\r\n{}",
        "z".repeat(100000)
    );
    expect_closed(&srv, "413 with the body sent", req.as_bytes(), 413);

    assert_alive(&mut srv);
}

/// Errors in a chunked body. No plugin of a static server reads bodies, so
/// the response (405 for POST, 200 for GET) goes out first, then the server
/// drains the body, hits the framing error and closes. What must never
/// happen is the server treating anything after the bad framing as a new
/// request.
#[test]
fn nothing_after_a_bad_chunked_body_is_answered() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    for (what, body) in BAD_CHUNKED_BODIES {
        for method in ["POST", "GET"] {
            let expected = if method == "POST" { 405 } else { 200 };
            // A valid request follows the broken body: it must not be served.
            let req = format!(
                "{method} /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{body}{}",
                keep_alive_get("/index.html")
            );
            let what = format!("{method} with chunked body: {what}");
            expect_closed(&srv, &what, req.as_bytes(), expected);
        }
    }

    assert_alive(&mut srv);
}

/// Leading zeros of a chunk size and whitespace before its extensions
/// count toward the body's total of framing that carries nothing, as
/// extensions do: 4 KiB of zeros before each one-byte chunk kept the
/// server parsing megabytes of framing for a body under any size limit.
/// Past 16 KiB the body is broken, and what follows is not served.
#[test]
fn chunk_size_padding_counts_toward_the_framing_total() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    let padded = format!("{}1\r\na\r\n", "0".repeat(4000));
    for body in [
        format!("{}0\r\n\r\n", padded.repeat(5)),
        format!(
            "{}0\r\n\r\n",
            format!("1{};x\r\na\r\n", " ".repeat(4000)).repeat(5)
        ),
    ] {
        let req = format!(
            "POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{body}{}",
            keep_alive_get("/index.html")
        );
        expect_closed(&srv, "padded chunk sizes", req.as_bytes(), 405);
    }
    // Some padding is fine.
    let body = format!("{}0\r\n\r\n", padded.repeat(2));
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{body}{}",
        keep_alive_get("/index.html")
    );
    let mut s = srv.connect();
    s.write_all(req.as_bytes()).unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_one(&mut s, false, &mut pending).status, 405);
    assert_eq!(read_one(&mut s, false, &mut pending).status, 200);
    drop(s);
    assert_alive(&mut srv);
}

/// A chunked body over MaxRequestBody (64K) cannot get a 413 here: 413 is
/// decided by whoever reads the body, and nobody does. It is drained (up to
/// the drain budget) like any other unread body.
#[test]
fn an_unread_chunked_body_over_the_limit_is_drained() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    let chunk = format!("{:x}\r\n{}\r\n", 50_000, "c".repeat(50_000));
    let req = format!(
        "POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n{}",
        keep_alive_get("/index.html")
    );
    let mut s = srv.connect();
    s.write_all(req.as_bytes()).unwrap();
    let mut pending = Vec::new();
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(r.status, 405, "chunked over MaxRequestBody, unread: {r:?}");
    let r = read_one(&mut s, false, &mut pending);
    assert_eq!(
        r.status, 200,
        "request after 100K drained chunked body: {r:?}"
    );
    drop(s);
    assert_alive(&mut srv);
}

/// Far more unread body than the server is willing to drain (here endless
/// chunks): answer, then close rather than reading megabytes for nothing.
#[test]
fn an_endless_unread_chunked_body_is_not_drained() {
    let mut srv = start_main();
    let h = "Host: localhost\r\n";
    let mut s = srv.connect();
    s.write_all(
        format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let big = format!("{:x}\r\n{}\r\n", 60_000, "d".repeat(60_000));
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..100 {
                if w.write_all(big.as_bytes()).is_err() {
                    break;
                }
            }
        })
    };
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert_eq!(status_of(&bytes), 405, "{}", lossy(&bytes));
    assert!(
        closed,
        "endless chunked body was drained forever: {}",
        lossy(&bytes)
    );
    assert_eq!(parse_all(&bytes).len(), 1, "{}", lossy(&bytes));
    let _ = s.shutdown(Shutdown::Both);
    writer.join().unwrap();
    assert_alive(&mut srv);
}

/// The same with a Content-Length body larger than the drain budget but
/// under MaxRequestBody: the response comes without the body, then close.
#[test]
fn an_unread_body_over_the_drain_budget_is_not_drained() {
    let mut srv = start_with("MaxRequestBody 10M");
    let h = "Host: localhost\r\n";
    let req = format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 5000000\r\n\r\n");
    expect_closed(&srv, "CL body over the drain budget", req.as_bytes(), 405);
    assert_alive(&mut srv);
}
