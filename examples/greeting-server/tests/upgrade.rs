//! A plugin takes over its connection after an `Upgrade` request
//! (`Context::upgrade`, here the example's `echo` plugin): the client gets
//! `101 Switching Protocols` with the upgrade headers, then the connection
//! is a byte stream both ways (bytes sent right behind the request head
//! included) until the client stops sending; then the server closes it.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{parse_response, read_until_close, Axkit};

fn start() -> Axkit {
    Axkit::start_bin(
        env!("CARGO_BIN_EXE_greeting-server"),
        "Plugin request_log\nRequestLog {dir}/access.log\n\
         <Server>\n  Listen 127.0.0.1:0\n  <Location /echo>\n    Plugin echo\n  </Location>\n</Server>\n",
        &["--no-master"],
        |_| {},
    )
}

/// Read until `want` bytes came (or fail after 10 s).
fn read_exact_within(s: &mut std::net::TcpStream, want: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = vec![0; want];
    s.read_exact(&mut got).expect("the echo");
    got
}

#[test]
fn an_upgraded_connection_is_the_plugins_byte_stream() {
    let srv = start();
    let mut s = srv.connect();
    // The first bytes of the new protocol travel with the request head.
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo\r\n\r\nfirst",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nConnection: Upgrade\r\n"), "{text}");
    assert!(text.contains("\r\nUpgrade: echo\r\n"), "{text}");
    assert!(
        !text.contains("Content-Length") && !text.contains("Transfer-Encoding"),
        "{text}"
    );
    assert_eq!(read_exact_within(&mut s, 5), b"first");
    // Back and forth, including bytes that look like HTTP.
    for msg in [&b"second"[..], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"] {
        s.write_all(msg).unwrap();
        assert_eq!(read_exact_within(&mut s, msg.len()), msg);
    }
    // The client is done: the plugin's hook returns and the server closes.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (rest, closed) = read_until_close(&mut s, Duration::from_secs(10));
    assert!(closed && rest.is_empty(), "{rest:?}");
    // The access log has the request, with its 101.
    let log = common::wait_for_line(&srv.dir.path().join("access.log"), |l| l.contains("/echo"));
    assert!(log.contains("\"GET /echo HTTP/1.1\" 101 "), "{log}");
}

#[test]
fn a_request_that_did_not_ask_to_upgrade_is_answered_as_usual() {
    let srv = start();
    // Without the upgrade headers the plugin refuses with 426.
    let (bytes, _) = srv.raw(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = parse_response(&bytes).unwrap();
    assert_eq!(r.status, 426);
    assert_eq!(r.header("Upgrade"), Some("echo"));
    // Upgrade named but Connection does not list it: no takeover.
    let (bytes, _) =
        srv.raw(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: close\r\n\r\n");
    assert_eq!(parse_response(&bytes).unwrap().status, 400);
    // An HTTP/1.0 request cannot switch protocols.
    let (bytes, _) = srv.raw(b"GET /echo HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n");
    assert_eq!(parse_response(&bytes).unwrap().status, 400);
}
