//! Parked idle connections, end to end: a connection that has waited a
//! sweep (250 ms) for its first or next request gives up its task and its
//! place in tokio's reactor and waits in the worker's parking epoll. It
//! must behave as if nothing happened: its next request is answered, a
//! request may arrive in pieces across the park, its timeouts, the
//! peer's close, `MaxConnections` and a drain all still end it.
//!
//! Parking is observed in /proc (`Axkit::is_parked`: the server's end of
//! the connection is registered one-shot in an epoll), never by sleeping.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Every bound here is a liveness bound, far above the 250–500 ms a
/// connection takes to park.
const LIMIT: Duration = Duration::from_secs(10);

fn conf(extra: &str) -> String {
    format!("{extra}\n{STATIC_CONF}")
}

fn prepare(d: &TempDir) {
    d.write("www/hello.txt", "hello\n");
}

/// One process, with `extra` global directives.
fn start(extra: &str) -> Axkit {
    Axkit::start_single_with(&conf(extra), prepare)
}

/// One response on a connection that stays open.
fn response(s: &mut TcpStream) -> Response {
    s.set_read_timeout(Some(LIMIT)).unwrap();
    match read_one_response(s) {
        Ok(Some(r)) => r,
        other => panic!("no response: {other:?}"),
    }
}

/// A keep-alive connection answered once.
fn answered_once(srv: &Axkit) -> TcpStream {
    let mut s = srv.connect();
    s.write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(response(&mut s).status, 200);
    s
}

#[track_caller]
fn wait_parked(srv: &Axkit, s: &TcpStream, what: &str) {
    assert!(
        wait_until(LIMIT, || srv.is_parked(s)),
        "{what} was never parked"
    );
}

#[test]
fn a_parked_keepalive_connection_answers_its_next_requests() {
    let srv = start("KeepAliveTimeout 60s");
    let mut s = answered_once(&srv);
    for round in 0..3 {
        wait_parked(&srv, &s, "the idle connection");
        s.write_all(keep_alive_get("/hello.txt").as_bytes())
            .unwrap();
        let r = response(&mut s);
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello\n"),
            "round {round}"
        );
        assert_eq!(r.header("Connection"), None, "still keep-alive");
    }
}

#[test]
fn a_new_connection_parked_before_its_first_byte_is_answered() {
    let srv = start("HeaderTimeout 60s");
    let mut s = srv.connect();
    wait_parked(&srv, &s, "the silent new connection");
    s.write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(response(&mut s).text(), "hello\n");
    // It is a keep-alive connection now, and parks as one.
    wait_parked(&srv, &s, "the connection after its first request");
    s.write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(response(&mut s).status, 200);
}

#[test]
fn a_request_in_two_pieces_across_the_park_is_answered() {
    let srv = start("KeepAliveTimeout 60s\nHeaderTimeout 60s");
    let mut s = answered_once(&srv);
    wait_parked(&srv, &s, "the idle connection");
    // The first piece wakes it; the rest comes once it is live again (a
    // woken connection is out of the parking epoll).
    s.write_all(b"GET /hello.txt HT").unwrap();
    wait_server_read(&s);
    assert!(
        wait_until(LIMIT, || !srv.is_parked(&s)),
        "half a request did not wake the connection"
    );
    s.write_all(b"TP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert_eq!(response(&mut s).text(), "hello\n");
    // A head that stops half-way is not an idle connection: it is never
    // parked, and HeaderTimeout (60 s here) is still running for it.
    s.write_all(b"GET /hello.txt HTTP/1.1\r\n").unwrap();
    wait_server_read(&s);
    s.write_all(b"Host: localhost\r\n\r\n").unwrap();
    assert_eq!(response(&mut s).status, 200);
}

#[test]
fn parked_connections_time_out() {
    let srv = start("KeepAliveTimeout 2s\nHeaderTimeout 2s");
    let mut idle = answered_once(&srv);
    let mut fresh = srv.connect();
    // Both park within half a second, long before their 2 s are up.
    assert!(
        wait_until(LIMIT, || srv.is_parked(&idle) && srv.is_parked(&fresh)),
        "the idle and the silent new connection were not both parked"
    );
    assert_closed(&mut idle, LIMIT, "the parked keep-alive connection");
    assert_closed(&mut fresh, LIMIT, "the parked new connection");
    assert!(srv.server_end(&idle).is_none(), "its socket is closed");
    // The worker goes on serving.
    assert_eq!(srv.get("/hello.txt").status, 200);
}

#[test]
fn the_peer_closing_a_parked_connection_frees_its_slot() {
    // One connection at most: the slot must come back for the next client
    // to be served without waiting a minute.
    let srv = start("MaxConnections 1\nKeepAliveTimeout 60s\nHeaderTimeout 60s");
    let s = answered_once(&srv);
    wait_parked(&srv, &s, "the idle connection");
    let (pid, fd) = srv.server_end(&s).unwrap();
    drop(s);
    assert!(
        wait_until(LIMIT, || !fd_links(pid)
            .iter()
            .any(|(n, t)| *n == fd && t.starts_with("socket:"))),
        "the server kept the socket of a connection its peer closed"
    );
    let mut next = answered_once(&srv);
    wait_parked(&srv, &next, "the next connection");
    next.write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(response(&mut next).status, 200);
}

#[test]
fn max_connections_reclaims_parked_connections_oldest_first() {
    let srv = start("MaxConnections 2\nKeepAliveTimeout 60s\nHeaderTimeout 60s");
    let mut first = answered_once(&srv);
    wait_parked(&srv, &first, "the first connection");
    let mut second = answered_once(&srv);
    wait_parked(&srv, &second, "the second connection");
    // The worker is full of parked connections; a new client is served at
    // once, in the place of the one idle longest.
    let mut probe = srv.connect();
    probe
        .write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(response(&mut probe).status, 200);
    assert_closed(&mut first, LIMIT, "the longest-parked connection");
    second
        .write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(response(&mut second).status, 200, "the newer one stays");
}

/// A master with one worker, whose deadlines are far beyond the bounds
/// here: only the drain can end a parked connection in time.
fn start_master() -> Axkit {
    Axkit::start_with(
        &conf("KeepAliveTimeout 60s\nShutdownTimeout 30s"),
        &[],
        prepare,
    )
}

#[test]
fn a_graceful_stop_closes_parked_connections() {
    let mut srv = start_master();
    let mut s = answered_once(&srv);
    wait_parked(&srv, &s, "the idle connection");
    srv.signal(libc::SIGTERM);
    assert_closed(&mut s, LIMIT, "the parked connection");
    assert!(
        srv.wait_exit(LIMIT).is_some(),
        "the server did not exit once its parked connection was closed"
    );
}

#[test]
fn a_reload_closes_the_old_workers_parked_connections() {
    let srv = start_master();
    let old = srv.workers();
    let mut s = answered_once(&srv);
    wait_parked(&srv, &s, "the idle connection");
    srv.signal(libc::SIGHUP);
    assert_closed(&mut s, Duration::from_secs(20), "the parked connection");
    assert!(
        wait_until(Duration::from_secs(20), || old.iter().all(|&p| !alive(p))),
        "the old worker did not exit"
    );
    assert_eq!(srv.get("/hello.txt").status, 200);
}

/// A spike of clients that leaves gives its memory back: 2,000
/// connections served at once and held take the worker's heap up; once
/// they close, a sweep trims the heap, and its anonymous memory falls
/// most of the way back (glibc alone would keep what they freed below
/// the heap's top).
#[test]
fn memory_taken_by_a_spike_of_connections_is_given_back() {
    let srv = start("KeepAliveTimeout 60s\nHeaderTimeout 60s");
    assert_eq!(srv.get("/hello.txt").status, 200);
    let pid = srv.pid();
    let base = status_kib(pid, "RssAnon");
    let mut held: Vec<TcpStream> = (0..2000).map(|_| srv.connect()).collect();
    for s in &mut held {
        s.write_all(keep_alive_get("/hello.txt").as_bytes())
            .unwrap();
    }
    for s in &mut held {
        assert_eq!(response(s).status, 200);
    }
    let holding = status_kib(pid, "RssAnon");
    assert!(
        holding > base + 2048,
        "2,000 connections took only {base} -> {holding} kB"
    );
    drop(held);
    let back = base + (holding - base) / 2;
    let mut now = holding;
    assert!(
        wait_until(LIMIT, || {
            now = status_kib(pid, "RssAnon");
            now < back
        }),
        "anonymous memory {base} kB before the spike, {holding} kB with it, still {now} kB after"
    );
    assert_eq!(srv.get("/hello.txt").status, 200);
}
