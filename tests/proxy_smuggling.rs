//! The wire-conformance cases of `protocol_errors` replayed through the
//! `proxy` plugin: every request whose framing two parsers could read two
//! ways (CL + TE, duplicate or malformed Content-Length, odd
//! Transfer-Encodings, TE on HTTP/1.0, obs-fold, bare CR or LF, NUL and
//! other controls in fields, broken chunked bodies, requests pipelined
//! behind them or hidden in a body) is sent to the real `axkit` proxying to
//! a raw TCP origin run by this file, which keeps every byte it receives.
//!
//! Each case asserts two things: the client gets the status the protocol
//! tests expect without the proxy (a broken chunked body is the one
//! difference: the proxy reads the body, so the client gets the 400 of
//! the body's error where a static server, which reads none, answers
//! first and then closes), and the origin received exactly one request
//! framed one way only (or none at all) on each connection, without a
//! hop-by-hop header.

mod common;
#[path = "common/protocol.rs"]
mod protocol;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use protocol::*;

/// The bytes of one connection to the origin.
#[derive(Default)]
struct Record {
    bytes: Vec<u8>,
    closed: bool,
}

/// The raw origin: answers `200 ok` to each complete request it can parse
/// and records every byte of every connection.
struct RawOrigin {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Arc<Mutex<Record>>>>>,
}

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

impl RawOrigin {
    fn start() -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let records: Arc<Mutex<Vec<Arc<Mutex<Record>>>>> = Arc::default();
        let all = records.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let record = Arc::new(Mutex::new(Record::default()));
                all.lock().unwrap().push(record.clone());
                std::thread::spawn(move || serve_raw(stream, record));
            }
        });
        RawOrigin { addr, records }
    }

    fn connections(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Wait until every connection since the `from`th is closed; their
    /// bytes.
    fn settled(&self, from: usize) -> Vec<Vec<u8>> {
        let done = wait_until(Duration::from_secs(10), || {
            let records = self.records.lock().unwrap();
            records[from..].iter().all(|r| r.lock().unwrap().closed)
        });
        assert!(done, "the proxy kept a connection to the origin open");
        let records = self.records.lock().unwrap();
        records[from..]
            .iter()
            .map(|r| r.lock().unwrap().bytes.clone())
            .collect()
    }
}

fn serve_raw(mut stream: TcpStream, record: Arc<Mutex<Record>>) {
    let mut buf = [0u8; 16384];
    let mut answered = 0;
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        let mut r = record.lock().unwrap();
        r.bytes.extend_from_slice(&buf[..n]);
        // Answer each request once it is complete; a malformed one is
        // left for the checks.
        while let Ok(Some(seen)) = parse_request(&r.bytes[answered..]) {
            answered += seen.len;
            let _ = stream.write_all(ANSWER);
        }
    }
    record.lock().unwrap().closed = true;
}

/// A request as the origin parsed it.
#[derive(Debug)]
struct Seen {
    len: usize,
    line: String,
    headers: Vec<(String, String)>,
    chunked: bool,
    body: Vec<u8>,
}

/// Parse one request strictly, as a careful origin would: CRLF lines, no
/// obs-fold, token names, no control bytes in values, Content-Length or
/// `Transfer-Encoding: chunked` but never both nor either twice, chunk
/// sizes in bare hex. `Ok(None)`: not complete yet.
fn parse_request(buf: &[u8]) -> Result<Option<Seen>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "head not UTF-8")?;
    if head.contains('\0') || head.replace("\r\n", "").contains(['\r', '\n']) {
        return Err(format!("bare CR, LF or NUL in the head: {head:?}"));
    }
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("").to_string();
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts[2] != "HTTP/1.1" || !parts[1].starts_with('/') {
        return Err(format!("bad request line {line:?}"));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut headers = Vec::new();
    for field in lines {
        let (name, value) = field.split_once(':').ok_or("a field without a colon")?;
        if !token(name) {
            return Err(format!("bad field name {name:?} (obs-fold?)"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(format!("control byte in {name}"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    let all = |n: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(h, _)| h.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (lengths, codings) = (all("content-length"), all("transfer-encoding"));
    if lengths.len() > 1 || codings.len() > 1 || !lengths.is_empty() && !codings.is_empty() {
        return Err(format!("framed two ways: {lengths:?} {codings:?}"));
    }
    let mut at = end + 4;
    let mut body = Vec::new();
    let chunked = !codings.is_empty();
    if chunked {
        if codings[0] != "chunked" {
            return Err(format!("Transfer-Encoding {:?}", codings[0]));
        }
        loop {
            let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| "chunk size")?;
            if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("chunk size {size:?}"));
            }
            let size = usize::from_str_radix(size, 16).map_err(|e| e.to_string())?;
            at += eol + 2;
            if size == 0 {
                // No trailers: the proxy passes none.
                if buf.len() < at + 2 {
                    return Ok(None);
                }
                if &buf[at..at + 2] != b"\r\n" {
                    return Err("a trailer reached the origin".into());
                }
                at += 2;
                break;
            }
            if buf.len() < at + size + 2 {
                return Ok(None);
            }
            if &buf[at + size..at + size + 2] != b"\r\n" {
                return Err("no CRLF after chunk data".into());
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    } else if let Some(n) = lengths.first() {
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("Content-Length {n:?}"));
        }
        let n: usize = n.parse().map_err(|_| "Content-Length")?;
        if buf.len() < at + n {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + n]);
        at += n;
    }
    Ok(Some(Seen {
        len: at,
        line,
        headers,
        chunked,
        body,
    }))
}

/// Headers that must never reach the origin.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    "x-named-by-connection",
];

/// What each connection of a case carried: at most one request, complete
/// and well framed, and nothing after it but a prefix of nothing (the
/// proxy closed the connection). The requests, in order.
fn requests_of(case: &str, connections: &[Vec<u8>]) -> Vec<Seen> {
    let mut seen = Vec::new();
    for bytes in connections {
        match parse_request(bytes) {
            Ok(Some(request)) => {
                assert_eq!(
                    request.len,
                    bytes.len(),
                    "{case}: bytes after the request on one upstream connection:\n{}",
                    lossy(bytes)
                );
                for (name, _) in &request.headers {
                    assert!(
                        !HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()),
                        "{case}: {name} reached the origin:\n{}",
                        lossy(bytes)
                    );
                }
                seen.push(request);
            }
            // A request cut short: the proxy closed before it was whole.
            Ok(None) => {}
            Err(e) => panic!(
                "{case}: the origin got a malformed request ({e}):\n{}",
                lossy(bytes)
            ),
        }
    }
    seen
}

/// The proxy in front of `origin`, for every path, without keep-alive
/// upstream (each connection then carries one exchange, closed after it)
/// and with the limits of the protocol tests.
fn proxy(origin: &RawOrigin) -> Axkit {
    Axkit::start_single(&format!(
        "Plugin logging/warn\nLogLevel LOGINFO\nProxyKeepAlive 0\nMaxRequestLine 1K\nMaxHeaders 20\n\
         MaxHeaderSize 4K\nMaxRequestBody 64K\n<Server>\n    Listen 127.0.0.1:0\n    Plugin proxy\n    \
         ProxyPass / http://{}/\n</Server>\n",
        origin.addr
    ))
}

#[test]
fn requests_refused_by_their_head_never_reach_the_origin() {
    let origin = RawOrigin::start();
    let srv = proxy(&origin);
    let h = "Host: localhost\r\n";
    let mut cases = ambiguous_framing_cases();
    cases.extend(bad_field_cases());
    // A request pipelined behind the refused one is not answered either.
    let behind = keep_alive_get("/1k.txt");
    cases.extend([
        (
            "CL + TE, then a request",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{behind}"),
            400,
        ),
        (
            "obs-fold, then a request",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\r\n b\r\n\r\n{behind}"),
            400,
        ),
    ]);
    for (what, request, status) in &cases {
        expect_rejected(&srv, what, request.as_bytes(), *status);
        assert_eq!(origin.connections(), 0, "{what}: the origin was contacted");
    }
    // The proxy itself still passes a good request on.
    let r = srv.get("/fine");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(requests_of("GET /fine", &origin.settled(0)).len(), 1);
}

#[test]
fn a_broken_chunked_body_never_completes_a_request_at_the_origin() {
    let origin = RawOrigin::start();
    let mut srv = proxy(&origin);
    let h = "Host: localhost\r\n";
    for (what, body) in BAD_CHUNKED_BODIES {
        for method in ["POST", "GET"] {
            let before = origin.connections();
            // A valid request follows the broken body: it must not be
            // served, nor reach the origin.
            let req = format!(
                "{method} /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{body}{}",
                keep_alive_get("/index.html")
            );
            let what = format!("{method} with chunked body: {what}");
            expect_closed(&srv, &what, req.as_bytes(), 400);
            let seen = requests_of(&what, &origin.settled(before));
            assert!(seen.is_empty(), "{what}: the origin got {seen:?}");
        }
    }
    // A Content-Length body that ends early (the client stops sending).
    let before = origin.connections();
    let mut s = srv.connect();
    s.write_all(format!("POST /cut HTTP/1.1\r\n{h}Content-Length: 10\r\n\r\nhello").as_bytes())
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (bytes, _) = read_until_close(&mut s, LIMIT);
    assert_eq!(status_of(&bytes), 400, "{}", lossy(&bytes));
    let seen = requests_of("a cut body", &origin.settled(before));
    assert!(seen.is_empty(), "a cut body: the origin got {seen:?}");
    srv.sync_stderr();
    assert!(!srv.stderr().contains("panicked"));
}

#[test]
fn a_request_hidden_in_a_body_stays_in_that_body() {
    let origin = RawOrigin::start();
    let srv = proxy(&origin);
    let h = "Host: localhost\r\n";
    let hidden = format!("GET /admin HTTP/1.1\r\n{h}\r\n");
    let chunk = format!("{:x}\r\n{hidden}\r\n0\r\n\r\n", hidden.len());
    for (what, request, chunked) in [
        (
            "Content-Length body",
            format!(
                "POST /form HTTP/1.1\r\n{h}Connection: close\r\nContent-Length: {}\r\n\r\n{hidden}",
                hidden.len()
            ),
            false,
        ),
        (
            "chunked body",
            format!("POST /form HTTP/1.1\r\n{h}Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"),
            true,
        ),
        (
            "chunked body with an extension and a trailer",
            format!(
                "POST /form HTTP/1.1\r\n{h}Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x};a=b\r\n{hidden}\r\n0\r\nX-T: t\r\n\r\n",
                hidden.len()
            ),
            true,
        ),
    ] {
        let before = origin.connections();
        let (bytes, _) = srv.exchange(request.as_bytes());
        let all = parse_all(&bytes);
        assert_eq!(all.len(), 1, "{what}: {}", lossy(&bytes));
        assert_eq!((all[0].status, all[0].text().as_str()), (200, "ok"), "{what}");
        let seen = requests_of(what, &origin.settled(before));
        assert_eq!(seen.len(), 1, "{what}: {seen:?}");
        assert_eq!(seen[0].line, "POST /form HTTP/1.1", "{what}");
        assert_eq!(seen[0].body, hidden.as_bytes(), "{what}");
        assert_eq!(seen[0].chunked, chunked, "{what}");
    }
    // Two requests pipelined for real: two exchanges, one request on each
    // upstream connection.
    let before = origin.connections();
    let (bytes, _) = srv.exchange(
        format!(
            "POST /one HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n{chunk}GET /two HTTP/1.1\r\n{h}Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    let statuses: Vec<u16> = parse_all(&bytes).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200], "{}", lossy(&bytes));
    let seen = requests_of("pipelined", &origin.settled(before));
    let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
    assert_eq!(lines, ["POST /one HTTP/1.1", "GET /two HTTP/1.1"]);
}

#[test]
fn hop_by_hop_headers_are_removed_before_the_origin() {
    let origin = RawOrigin::start();
    let srv = proxy(&origin);
    let (bytes, _) = srv.exchange(
        b"POST /h HTTP/1.1\r\nHost: localhost\r\nConnection: close, X-Named-By-Connection\r\n\
          X-Named-By-Connection: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n\
          Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nExpect: 100-continue\r\n\
          Content-Length: 3\r\n\r\nabc",
    );
    let all = parse_all(&bytes);
    assert_eq!(all.last().map(|r| r.status), Some(200), "{}", lossy(&bytes));
    // requests_of checks the header names.
    let seen = requests_of("hop-by-hop", &origin.settled(0));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"abc");
}
