//! Runs the custom binary with the `faults` plugin, which misbehaves on
//! purpose, and checks that every kind of bad hook costs one request and
//! never the worker: a panic or an error answers 500 (with the details
//! only under `StackTrace On`), a bad status is refused, a panic after the
//! head went out truncates that response and closes its connection, and
//! the same worker keeps serving. Also the request-body API (`/body`):
//! Content-Length, chunked, `Expect: 100-continue`, MaxRequestBody.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{read_until_close, wait_server_read, Axkit};

/// The custom binary, a single process, with `faults` as its only plugin
/// (plus `extra` config lines inside the `<Server>`). Killed on drop.
fn start(extra: &str) -> Axkit {
    Axkit::start_bin(
        env!("CARGO_BIN_EXE_greeting-server"),
        &format!("<Server>\n  Listen 127.0.0.1:0\n  Plugin faults\n{extra}\n</Server>\n"),
        &["--no-master"],
        |_| {},
    )
}

/// GET on a new connection (`Connection: close`), parsed with the strict
/// `parse` below.
fn get(srv: &Axkit, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    parse(&srv.raw(req.as_bytes()).0).expect("a complete response")
}

/// Wait until stderr has a line containing every one of `needles`.
fn wait_log(srv: &mut Axkit, needles: &[&str]) -> String {
    srv.wait_stderr_line(needles, Duration::from_secs(10))
}

/// Read exactly one complete response from a keep-alive connection.
fn read_one(s: &mut TcpStream) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if let Some(r) = parse(&out) {
            assert_eq!(r.len, out.len(), "more bytes than one response");
            return r;
        }
        assert!(Instant::now() < deadline, "timed out: {out:?}");
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
    len: usize,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One response (Content-Length or chunked framing) from the front of
/// `bytes`; None while incomplete.
fn parse(bytes: &[u8]) -> Option<Response> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8(bytes[..end].to_vec()).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
        len: end,
    };
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(r);
    }
    let rest = &bytes[end..];
    if let Some(n) = r.header("Content-Length") {
        let n: usize = n.parse().ok()?;
        r.body = rest.get(..n)?.to_vec();
        r.len += n;
    } else if r.header("Transfer-Encoding") == Some("chunked") {
        let mut pos = 0;
        loop {
            let eol = rest[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[pos..eol]).ok()?, 16).ok()?;
            pos = eol + 2;
            if size == 0 {
                if rest.get(pos..pos + 2)? != b"\r\n" {
                    return None;
                }
                pos += 2;
                break;
            }
            r.body.extend_from_slice(rest.get(pos..pos + size)?);
            if rest.get(pos + size..pos + size + 2)? != b"\r\n" {
                return None;
            }
            pos += size + 2;
        }
        r.len += pos;
    } else {
        return None;
    }
    Some(r)
}

const NORMAL: &[u8] = b"GET /status/403 HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn panic_costs_one_request_and_the_connection_keeps_serving() {
    let mut srv = start("");
    for path in ["/panic", "/panic-async"] {
        let mut s = srv.connect();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_one(&mut s);
        assert_eq!(r.status, 500, "{r:?}");
        assert!(!r.text().contains("deliberate"), "{}", r.text());
        // The same connection, hence the same worker, answers again.
        assert_ne!(r.header("Connection"), Some("close"), "{r:?}");
        s.write_all(NORMAL).unwrap();
        assert_eq!(read_one(&mut s).status, 403);
    }
    let line = wait_log(
        &mut srv,
        &[
            "plugin faults",
            "hook response",
            "deliberate panic <b>&</b>",
        ],
    );
    assert!(line.contains("GET /panic HTTP/1.1"), "{line}");
    assert!(line.contains("[error]"), "{line}");
    wait_log(
        &mut srv,
        &["plugin faults", "hook response", "deliberate async panic"],
    );
    // Still alive for new connections too, and the process did not exit.
    assert_eq!(get(&srv, "/status/404").status, 404);
    assert!(srv.child.try_wait().unwrap().is_none());
}

#[test]
fn error_outcome_is_logged_but_not_shown() {
    let mut srv = start("");
    let r = get(&srv, "/error");
    assert_eq!(r.status, 500);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert!(
        r.text().contains("500 Internal Server Error"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("deliberate failure"), "{}", r.text());
    assert!(!r.text().contains("faults"), "{}", r.text());
    wait_log(
        &mut srv,
        &["plugin faults, hook response: deliberate failure"],
    );
}

#[test]
fn stack_trace_on_shows_the_failure_html_escaped() {
    let srv = start("  StackTrace On");
    let r = get(&srv, "/error");
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("plugin faults, hook response: deliberate failure"),
        "{}",
        r.text()
    );
    let r = get(&srv, "/panic");
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("deliberate panic &lt;b&gt;&amp;&lt;/b&gt;"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("<b>"), "{}", r.text());
}

#[test]
fn stack_trace_can_be_switched_on_per_location() {
    let srv = start("  <Location /error>\n    StackTrace On\n  </Location>");
    assert!(get(&srv, "/error").text().contains("deliberate failure"));
    assert!(!get(&srv, "/panic").text().contains("deliberate"));
}

#[test]
fn status_outcomes() {
    let mut srv = start("");
    let r = get(&srv, "/status/403");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("403 Forbidden"), "{}", r.text());
    assert_eq!(get(&srv, "/status/418").status, 418);
    assert_eq!(get(&srv, "/status/503").status, 503);
    // Not a status code: refused and logged, 500 instead.
    for bad in ["99999", "1000", "42", "0"] {
        let r = get(&srv, &format!("/status/{bad}"));
        assert_eq!(r.status, 500, "/status/{bad}");
    }
    wait_log(&mut srv, &["invalid status 65535"]);
    wait_log(&mut srv, &["invalid status 42"]);
    // Declined by faults, nobody else: 404.
    assert_eq!(get(&srv, "/nothing").status, 404);
}

/// A 1xx is never a final response: a client given `100 Continue` as the
/// answer waits forever for the real one.
#[test]
fn status_1xx_from_a_hook_is_refused() {
    let srv = start("");
    for code in ["100", "101", "199"] {
        let r = get(&srv, &format!("/status/{code}"));
        assert_eq!(r.status, 500, "/status/{code}: {r:?}");
    }
}

#[test]
fn panic_in_post_read_request() {
    let mut srv = start("");
    let mut s = srv.connect();
    s.write_all(b"GET /status/204 HTTP/1.1\r\nHost: x\r\nX-Panic-Early: 1\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut s).status, 500);
    s.write_all(NORMAL).unwrap();
    assert_eq!(read_one(&mut s).status, 403);
    wait_log(
        &mut srv,
        &[
            "plugin faults",
            "hook post_read_request",
            "deliberate panic",
        ],
    );
    // Only the value 1 triggers it.
    let (bytes, _) = srv.raw(
        b"GET /status/403 HTTP/1.1\r\nHost: x\r\nX-Panic-Early: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(parse(&bytes).unwrap().status, 403);
}

#[test]
fn panic_after_the_head_truncates_and_closes() {
    let mut srv = start("");
    let mut s = srv.connect();
    // Keep-alive request, and a second one pipelined behind it that must
    // never be answered: the connection cannot be reused after a
    // truncated response.
    s.write_all(b"GET /stream-panic HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&bytes);
    assert!(closed, "connection left open: {text}");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(text.contains("8\r\npartial \r\n"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "proper terminator sent: {text}"
    );
    assert!(parse(&bytes).is_none(), "looks complete: {text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    wait_log(
        &mut srv,
        &["plugin faults", "hook response", "after the head was sent"],
    );
    assert_eq!(get(&srv, "/status/403").status, 403);
}

/// Work registered for just before the head (`Context::before_head`), or
/// a `before_head` hook, that panics costs its response, as a hook's
/// panic does: the half-made response (maybe without a header that
/// matters) is replaced by the built-in 500 page (whether it was whole
/// or about to stream: nothing had gone out) and the connection closes. The worker
/// keeps serving and keeps its count of connections right: a connection
/// counted open for ever would hold a graceful stop up for the whole
/// ShutdownTimeout (30 s).
#[test]
fn panic_before_the_head() {
    let builtin_500 = |r: &Response| {
        r.head.contains("Content-Type: text/html")
            && String::from_utf8_lossy(&r.body).contains("<h1>500 Internal Server Error</h1>")
    };
    let mut srv = start("");
    for _ in 0..2 {
        for path in ["/head-panic", "/head-panic-stream"] {
            let mut s = srv.connect();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(10));
            assert!(closed, "{path}: the connection was left open");
            let r = parse(&bytes).expect("a complete response");
            assert_eq!(r.status, 500, "{path}: {r:?}");
            assert!(builtin_500(&r), "{path}: {r:?}");
            assert!(!r.head.contains("X-Unsent"), "{path}: {r:?}");
            wait_log(
                &mut srv,
                &[
                    &format!("GET {path} "),
                    "work before the response head panicked: deliberate panic before the head",
                ],
            );
        }
    }
    let mut s = srv.connect();
    s.write_all(b"GET /status/403 HTTP/1.1\r\nHost: x\r\nX-Panic-Head: 1\r\n\r\n")
        .unwrap();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed, "the connection was left open");
    let r = parse(&bytes).expect("a complete response");
    assert!(r.status == 500 && builtin_500(&r), "{r:?}");
    wait_log(
        &mut srv,
        &[
            "GET /status/403 ",
            "hook before_head: plugin faults: panicked: deliberate panic in before_head",
        ],
    );
    assert_eq!(get(&srv, "/status/403").status, 403);
    let stopping = Instant::now();
    srv.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "a graceful stop waited for connections that had ended"
    );
}

#[test]
fn sleeping_request_does_not_block_others() {
    let srv = start("");
    let mut slow = srv.connect();
    slow.write_all(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Once the worker (one thread) has read it, it runs it until it sleeps.
    wait_server_read(&slow);
    // Served while the other request is suspended.
    assert_eq!(get(&srv, "/status/403").status, 403);
    slow.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    assert!(
        matches!(slow.read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the sleeping request answered before the quick one"
    );
    slow.set_nonblocking(false).unwrap();
    let r = read_one(&mut slow);
    assert_eq!((r.status, r.text().as_str()), (200, "slept\n"));
}

#[test]
fn body_with_content_length() {
    let srv = start("");
    let mut s = srv.connect();
    s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
        .unwrap();
    let r = read_one(&mut s);
    assert_eq!((r.status, r.text().as_str()), (200, "10"));
    // Empty bodies.
    s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut s).text(), "0");
    s.write_all(b"GET /body HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut s).text(), "0");
    // A body sent in pieces, slowly.
    s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
        .unwrap();
    wait_server_read(&s);
    s.write_all(b"def").unwrap();
    assert_eq!(read_one(&mut s).text(), "6");
}

#[test]
fn body_chunked() {
    let srv = start("");
    let mut s = srv.connect();
    // With an extension and a trailer; then one more on the same connection.
    s.write_all(
        b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: y\r\n\r\n",
    )
    .unwrap();
    let r = read_one(&mut s);
    assert_eq!((r.status, r.text().as_str()), (200, "31"));
    s.write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .unwrap();
    let r = read_one(&mut s);
    assert_eq!((r.status, r.text().as_str()), (200, "0"));
}

#[test]
fn expect_100_continue() {
    let srv = start("");
    let mut s = srv.connect();
    s.write_all(
        b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    // The client waits for the interim response before sending the body.
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; interim.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, interim, "{:?}", String::from_utf8_lossy(&got));
    s.write_all(b"0123456789").unwrap();
    let r = read_one(&mut s);
    assert_eq!((r.status, r.text().as_str()), (200, "10"));
    // A response that never reads the body sends no 100 Continue.
    s.write_all(b"POST /status/403 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
}

#[test]
fn body_over_max_request_body() {
    let srv = start("  MaxRequestBody 100");
    // Chunked: discovered while reading.
    let mut req =
        b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n".to_vec();
    req.extend_from_slice(&[b'a'; 1000]);
    req.extend_from_slice(b"\r\n0\r\n\r\nGET /status/403 HTTP/1.1\r\nHost: x\r\n\r\n");
    let (bytes, closed) = srv.raw(&req);
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(closed);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    // Content-Length: refused before reading.
    let (bytes, closed) =
        srv.raw(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    assert_eq!(parse(&bytes).unwrap().status, 413);
    assert!(closed);
    // At the limit is fine.
    let mut req =
        b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\n"
            .to_vec();
    req.extend_from_slice(&[b'a'; 100]);
    assert_eq!(parse(&srv.raw(&req).0).unwrap().text(), "100");
}

#[test]
fn internal_redirects() {
    let mut srv = start("");
    // A GET of the new URI through the whole walk, with notes saying where
    // it came from; the POST body is dropped and the connection stays usable.
    let r = get(&srv, "/redirect?/notes?a=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        "GET /notes?a=1 from=/redirect?/notes?a=1 status=200\n"
    );
    let mut s = srv.connect();
    s.write_all(b"POST /redirect?/notes HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let first = read_one(&mut s);
    assert_eq!(
        first.text(),
        "GET /notes from=/redirect?/notes status=200\n"
    );
    s.write_all(b"GET /notes HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let second = read_one(&mut s);
    assert_eq!(second.text(), "GET /notes from= status=\n");
    // Chains work; the status can be imposed (ErrorDocument style).
    let r = get(&srv, "/redirect?/redirect-404?/notes");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.text()
            .starts_with("GET /notes from=/redirect-404?/notes status=404"),
        "{}",
        r.text()
    );
    // A loop ends with 500 and a log line; so does a target that is not a path.
    let r = get(&srv, "/redirect?/redirect?/redirect?/redirect?/redirect?/redirect?/redirect?/redirect?/redirect?/redirect?/redirect?/redirect?/notes");
    assert_eq!(r.status, 500, "{}", r.text());
    wait_log(&mut srv, &["more than 10 internal redirects"]);
    let r = get(&srv, "/redirect?http://elsewhere/");
    assert_eq!(r.status, 500, "{}", r.text());
    wait_log(&mut srv, &["internal redirect to an invalid URI"]);
    // HEAD stays bodiless through a redirect.
    let (bytes, _) =
        srv.raw(b"HEAD /redirect?/notes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\n"),
        "{text}"
    );
}
