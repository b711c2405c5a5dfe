//! Helpers for the wire-conformance tests (`protocol_*.rs`): the servers,
//! exchanges that read exactly one response or up to the close, and the
//! assertions every case ends with (the connection is still usable; the
//! worker is alive and logged no panic).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

/// The 1 KiB file every test fetches.
pub fn one_k() -> Vec<u8> {
    (0..1024u32).map(|i| b'a' + (i % 26) as u8).collect()
}

pub const INDEX: &str = "<html><body>index</body></html>\n";

/// A static-file server (one process, logging at info to stderr, so that
/// `Axkit::sync_stderr` works) with `global` directives, serving
/// `index.html`, `1k.txt` and an 8 MiB `big.bin`.
pub fn start_with(global: &str) -> Axkit {
    let conf = format!("LogLevel LOGINFO\n{global}\n{STATIC_CONF}");
    Axkit::start_single_with(&conf, |d| {
        d.write("www/index.html", INDEX);
        d.write("www/1k.txt", one_k());
        d.write("www/big.bin", vec![b'x'; 8 << 20]);
    })
}

/// The main server: small, easily exceeded limits.
pub fn start_main() -> Axkit {
    start_with("MaxRequestLine 1K\nMaxHeaders 20\nMaxHeaderSize 4K\nMaxRequestBody 64K")
}

/// How long any single exchange may take before we call it a hang.
pub const LIMIT: Duration = Duration::from_secs(5);

/// Send `req` on a fresh connection and read until close (or `LIMIT`).
pub fn exchange(srv: &Axkit, req: &[u8]) -> (Vec<u8>, bool) {
    let mut s = srv.connect();
    s.write_all(req).unwrap();
    read_until_close(&mut s, LIMIT)
}

/// Read exactly one response from a connection that stays open. Returns it
/// and any bytes read past its end.
pub fn read_one(s: &mut TcpStream, head_only: bool, pending: &mut Vec<u8>) -> Response {
    let deadline = Instant::now() + LIMIT;
    let mut buf = [0u8; 65536];
    loop {
        let parsed = if head_only {
            parse_head_response(pending)
        } else {
            parse_response(pending)
        };
        // A response with neither Content-Length nor chunked framing parses as
        // "to the end"; we never expect one, so insist on explicit framing.
        if let Some(r) = parsed {
            let framed = head_only
                || r.header("Content-Length").is_some()
                || r.header("Transfer-Encoding").is_some()
                || (100..200).contains(&r.status);
            if framed {
                pending.drain(..r.len);
                return r;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no complete response in time; got:\n{}",
            lossy(pending)
        );
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "connection closed before a complete response; got:\n{}",
                lossy(pending)
            ),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "read failed ({e}) before a complete response; got:\n{}",
                lossy(pending)
            ),
        }
    }
}

/// Assert that `req` on a fresh connection is answered with `status` and the
/// connection is then closed by the server. Returns the raw response.
#[track_caller]
pub fn expect_closed(srv: &Axkit, what: &str, req: &[u8], status: u16) -> Vec<u8> {
    let (bytes, closed) = exchange(srv, req);
    assert_eq!(
        status_of(&bytes),
        status,
        "{what}: wrong status; response:\n{}",
        lossy(&bytes)
    );
    assert!(
        closed,
        "{what}: connection not closed; response:\n{}",
        lossy(&bytes)
    );
    let responses = parse_all(&bytes);
    assert_eq!(
        responses.len(),
        1,
        "{what}: expected exactly one response:\n{}",
        lossy(&bytes)
    );
    bytes
}

/// Like `expect_closed`, for errors found while parsing the head: those also
/// announce the close.
#[track_caller]
pub fn expect_rejected(srv: &Axkit, what: &str, req: &[u8], status: u16) {
    let bytes = expect_closed(srv, what, req, status);
    let r = parse_response(&bytes).unwrap();
    assert_eq!(
        r.header("Connection"),
        Some("close"),
        "{what}: no Connection: close:\n{}",
        lossy(&bytes)
    );
}

/// The connection is still usable: a GET on it gets a 200 with the 1 KiB file.
#[track_caller]
pub fn assert_usable(s: &mut TcpStream, pending: &mut Vec<u8>, what: &str) {
    s.write_all(keep_alive_get("/1k.txt").as_bytes()).unwrap();
    let r = read_one(s, false, pending);
    assert_eq!(r.status, 200, "{what}: follow-up GET failed: {r:?}");
    assert_eq!(r.body, one_k(), "{what}: follow-up body differs");
}

/// The worker is alive and answering, and logged no panic (up to now:
/// its log is read up to a line it writes after this request).
#[track_caller]
pub fn assert_alive(srv: &mut Axkit) {
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "axkit exited; stderr:\n{}",
        srv.stderr()
    );
    let r = srv.get("/1k.txt");
    assert_eq!(
        r.status,
        200,
        "server no longer serves: {r:?}\nstderr:\n{}",
        srv.stderr()
    );
    assert_eq!(r.body, one_k());
    let stderr = srv.sync_stderr();
    assert!(
        !stderr.contains("panicked"),
        "a panic was logged:\n{stderr}"
    );
}

/// One case of a request the server refuses: what it is, its bytes, the
/// status it gets.
pub type Case = (&'static str, String, u16);

/// Content-Length and Transfer-Encoding that two parsers could read two
/// ways (`protocol_errors`; replayed through the proxy by
/// `proxy_smuggling`).
pub fn ambiguous_framing_cases() -> Vec<Case> {
    let h = "Host: localhost\r\n";
    vec![
        (
            "CL + TE",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "TE + CL",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "duplicate equal Content-Length",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
            400,
        ),
        ("Content-Length list", format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 5, 5\r\n\r\nhello"), 400),
        ("Content-Length +5", format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: +5\r\n\r\nhello"), 400),
        ("Content-Length 0x5", format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 0x5\r\n\r\nhello"), 400),
        ("Content-Length -1", format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: -1\r\n\r\nhello"), 400),
        ("Content-Length 5 5", format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 5 5\r\n\r\nhello"), 400),
        ("Content-Length empty", format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: \r\n\r\nhello"), 400),
        (
            "Content-Length overflow",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 99999999999999999999999\r\n\r\nhello"),
            400,
        ),
        ("CL with a tab inside", format!("POST /1k.txt HTTP/1.1\r\n{h}Content-Length: 1\t1\r\n\r\nhello"), 400),
        (
            "TE gzip, chunked",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            "TE chunked, gzip",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "TE chunked twice",
            format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        ("TE identity", format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: identity\r\n\r\n"), 501),
        ("TE empty", format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: \r\n\r\n"), 400),
        (
            "TE on HTTP/1.0",
            "POST /1k.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_string(),
            400,
        ),
        ("TE chunked with a parameter", format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n"), 400),
        ("TE xchunked", format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"), 501),
        ("TE name with space", format!("POST /1k.txt HTTP/1.1\r\n{h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"), 400),
    ]
}

/// Field syntax: obs-fold, bare CR/LF, control bytes, names that are no
/// tokens.
pub fn bad_field_cases() -> Vec<Case> {
    let h = "Host: localhost\r\n";
    vec![
        (
            "obs-fold",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\r\n b\r\n\r\n"),
            400,
        ),
        (
            "obs-fold tab",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\r\n\tb\r\n\r\n"),
            400,
        ),
        (
            "fold on the first field",
            format!("GET /1k.txt HTTP/1.1\r\n {h}\r\n"),
            400,
        ),
        (
            "bare CR in a value",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\rb\r\n\r\n"),
            400,
        ),
        (
            "bare CR line end",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\r\r\n\r\n"),
            400,
        ),
        (
            "bare LF line end",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\n\r\n"),
            400,
        ),
        (
            "NUL in a value",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\0b\r\n\r\n"),
            400,
        ),
        (
            "CTL 0x01 in a value",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\x01b\r\n\r\n"),
            400,
        ),
        (
            "DEL in a value",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A: a\x7fb\r\n\r\n"),
            400,
        ),
        (
            "space before colon",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A : b\r\n\r\n"),
            400,
        ),
        (
            "space before colon on Host",
            "GET /1k.txt HTTP/1.1\r\nHost : localhost\r\n\r\n".to_string(),
            400,
        ),
        (
            "invalid name byte (",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X(A: b\r\n\r\n"),
            400,
        ),
        (
            "invalid name byte @",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X@A: b\r\n\r\n"),
            400,
        ),
        (
            "vertical tab in a name",
            format!("GET /1k.txt HTTP/1.1\r\n{h}\x0bContent-Length: 5\r\n\r\nhello"),
            400,
        ),
        (
            "empty header name",
            format!("GET /1k.txt HTTP/1.1\r\n{h}: b\r\n\r\n"),
            400,
        ),
        (
            "no colon",
            format!("GET /1k.txt HTTP/1.1\r\n{h}X-A b\r\n\r\n"),
            400,
        ),
    ]
}

/// Broken chunked bodies (after `Transfer-Encoding: chunked`), each as
/// its name and the bytes of the body.
pub const BAD_CHUNKED_BODIES: &[(&str, &str)] = &[
    ("0x size", "0x5\r\nhello\r\n0\r\n\r\n"),
    ("empty size line", "\r\nhello\r\n0\r\n\r\n"),
    ("size overflow", "ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    ("bare LF after size", "5\nhello\r\n0\r\n\r\n"),
    ("bare CR after size", "5\rhello\r\n0\r\n\r\n"),
    ("negative size", "-5\r\nhello\r\n0\r\n\r\n"),
    ("+ size", "+5\r\nhello\r\n0\r\n\r\n"),
    ("space inside size", "5 5\r\nhello\r\n0\r\n\r\n"),
    ("trailing space after size", "5 \r\nhello\r\n0\r\n\r\n"),
    ("data longer than size", "3\r\nhello\r\n0\r\n\r\n"),
    ("no CRLF after data", "5\r\nhello0\r\n\r\n"),
    ("obs-fold in trailer", "0\r\nX-T: a\r\n b\r\n\r\n"),
    ("bad trailer name", "0\r\nX T: a\r\n\r\n"),
];
