//! A worker at `MaxConnections` still serves new clients: it closes the
//! keep-alive connections that have been idle longest, and connections that
//! have sent nothing for a few seconds, to make room (as nginx reuses idle
//! keep-alive connections); a connection with a request in flight is never
//! closed for it, unless the request is one its client resumes by itself
//! (an event stream, a long poll: `tests/sse.rs`). Each test holds a worker at a tiny limit with deadlines far
//! beyond the test's own bounds, so that only reclaiming can let the probe in.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// One worker with two connections at most; idle and header deadlines of a
/// minute, far past anything the tests wait for.
fn conf(extra: &str) -> String {
    format!("MaxConnections 2\nKeepAliveTimeout 60s\nHeaderTimeout 60s\n{extra}\n{STATIC_CONF}")
}

/// At `LogLevel LOGINFO`, so that `Axkit::sync_stderr` works.
fn start() -> Axkit {
    Axkit::start_single_with(&conf("LogLevel LOGINFO"), |d| {
        d.write("www/hello.txt", "hello\n");
    })
}

/// Read one response (known to be small) from a connection that stays open.
fn read_response(s: &mut TcpStream, limit: Duration) -> Response {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(r) = parse_response(&got) {
            return r;
        }
        match s.read(&mut buf) {
            Ok(0) => panic!("closed before a response: {:?}", lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no response within {limit:?}: {e} (got {:?})", lossy(&got)),
        }
    }
}

/// A keep-alive connection that has been answered once and is now idle.
fn idle_connection(srv: &Axkit) -> TcpStream {
    let mut s = srv.connect();
    s.write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut s, Duration::from_secs(10)).status, 200);
    s
}

#[test]
fn the_longest_idle_keepalive_connection_makes_room() {
    let mut srv = start();
    let mut first = idle_connection(&srv);
    let mut second = idle_connection(&srv);
    // The worker is full of idle connections; a new client is served at
    // once instead of waiting a minute for one of them to time out.
    let mut probe = srv.connect();
    probe
        .write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut probe, Duration::from_secs(10)).status,
        200
    );
    // The one idle longest made way; the other still works.
    assert_closed(&mut first, Duration::from_secs(5), "first idle connection");
    second
        .write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut second, Duration::from_secs(5)).status,
        200
    );
    // More new clients keep being served, each taking an idle slot; the
    // log says so once, not once per client.
    for i in 0..4 {
        let mut next = srv.connect();
        next.write_all(keep_alive_get("/hello.txt").as_bytes())
            .unwrap();
        let r = read_response(&mut next, Duration::from_secs(10));
        assert_eq!(r.status, 200, "probe {i}");
    }
    srv.wait_stderr("MaxConnections (2) reached", Duration::from_secs(5));
    // A second line would be in the log before the server's next one.
    let log = srv.sync_stderr();
    assert_eq!(
        log.matches("MaxConnections (2) reached").count(),
        1,
        "not rate-limited:\n{log}"
    );
}

#[test]
fn connections_that_send_nothing_make_room_after_a_grace() {
    let srv = start();
    let mut silent = [srv.connect(), srv.connect()];
    // Let the worker take both before the probe comes.
    let started = Instant::now();
    let mut probe = srv.connect();
    probe
        .write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    // Served once a silent one has held its slot for a few seconds, long
    // before HeaderTimeout (a minute) would have freed it.
    assert_eq!(
        read_response(&mut probe, Duration::from_secs(20)).status,
        200
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_closed(&mut silent[0], Duration::from_secs(5), "silent connection");
}

/// A request in flight that is not marked reclaimable (here a wait that a
/// Lua handler holds until the test releases it, which could be a
/// download) is never cut to make room: the new client waits until one
/// of them has finished.
#[test]
fn connections_with_a_request_in_flight_are_never_reclaimed() {
    let script = r#"
function hook_response(r)
  local release = r:config("Release")
  while not (r:param("now") or file.exists(release)) do sleep(0.02) end
  r:set_header("Content-Type", "text/plain")
  r:write("released\n")
  return OK
end
directive { name = "Release", type = "string", doc = "file that ends the wait" }
"#;
    let text = "MaxConnections 2\nKeepAliveTimeout 60s\nHeaderTimeout 60s\n\
                PluginDir {dir}/plugins\nRelease {dir}/release\nLuaFileRoot {dir}\n\
                <Server>\n    Listen 127.0.0.1:0\n    Plugin hold\n</Server>\n";
    let mut srv = Axkit::start_single_with(text, |d| {
        d.write("plugins/hold.lua", script);
    });
    let mut held = [srv.connect(), srv.connect()];
    for s in &mut held {
        s.write_all(keep_alive_get("/hold").as_bytes()).unwrap();
    }
    let mut probe = srv.connect();
    probe
        .write_all(keep_alive_get("/?now=1").as_bytes())
        .unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = probe.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "served while both connections had a request in flight: {early:?}\n{}",
        srv.stderr()
    );
    srv.dir.write("release", "");
    for (i, s) in held.iter_mut().enumerate() {
        let r = read_response(s, Duration::from_secs(10));
        assert_eq!((r.status, r.text()), (200, "released\n".into()), "held {i}");
    }
    // Now idle, the long polls make room for the waiting client.
    assert_eq!(
        read_response(&mut probe, Duration::from_secs(10)).status,
        200
    );
}

/// With several workers, one that is nearly full leaves new clients to
/// the others (as nginx's `ngx_accept_disabled` does): the server holds
/// what all its workers can hold together, instead of one worker closing
/// idle connections while another has room. Two workers of 8 each hold 14
/// idle connections, however the kernel would have spread them.
#[test]
fn a_nearly_full_worker_leaves_new_clients_to_the_others() {
    let text = format!(
        "MaxConnections 8\nKeepAliveTimeout 60s\nHeaderTimeout 60s\n{}",
        STATIC_CONF.replace("Workers 1", "Workers 2")
    );
    let srv = Axkit::start_with(&text, &[], |d| {
        d.write("www/hello.txt", "hello\n");
    });
    let mut held: Vec<TcpStream> = (0..14).map(|_| idle_connection(&srv)).collect();
    let per_worker = |held: &[TcpStream]| {
        let mut count = std::collections::HashMap::new();
        for s in held {
            *count.entry(srv.worker_serving(s)).or_insert(0) += 1;
        }
        count
    };
    let spread = per_worker(&held);
    // Every one is still open and served by the same worker.
    for (i, s) in held.iter_mut().enumerate() {
        s.write_all(keep_alive_get("/hello.txt").as_bytes())
            .unwrap();
        let r = read_response(s, Duration::from_secs(10));
        assert_eq!(r.status, 200, "connection {i} (spread {spread:?})");
    }
    assert!(
        spread.values().all(|&n| n <= 8),
        "a worker holds more than its MaxConnections: {spread:?}"
    );
}

/// Out of descriptors below MaxConnections (here set far above the
/// open-file limit of 64), the worker makes room as at MaxConnections:
/// the keep-alive connections idle longest are closed, and new clients
/// keep being served instead of failing in accept for ever, and the
/// worker keeps below the count it ran out at from then on, so that a
/// client finds a descriptor for its file too (only the one that took
/// the very last descriptor may get a 500). The config is warned about:
/// such a MaxConnections leaves the open-file cache nothing.
#[test]
fn out_of_descriptors_idle_connections_make_room() {
    let text = conf("MaxConnections 1000\nLogLevel LOGINFO").replace("MaxConnections 2\n", "");
    let warning = "OpenFileCache 1000 keeps at most 0 files open per worker: MaxConnections 1000";
    let mut srv = Axkit::start_single_with_open_files(&text, 64, |d| {
        d.write("www/hello.txt", "hello\n");
    });
    srv.wait_stderr(warning, Duration::from_secs(10));
    // More keep-alive clients than the worker has descriptors: each is
    // answered, and stays open until it is closed to make room.
    let mut held = Vec::new();
    let mut failed = 0;
    for _ in 0..80 {
        let mut s = srv.connect();
        s.write_all(keep_alive_get("/hello.txt").as_bytes())
            .unwrap();
        match read_response(&mut s, Duration::from_secs(10)).status {
            200 => held.push(s),
            500 => failed += 1,
            other => panic!("status {other}"),
        }
    }
    assert!(failed <= 1, "{failed} clients got a 500");
    srv.wait_stderr_line(
        &["out of file descriptors at ", "below MaxConnections (1000)"],
        Duration::from_secs(5),
    );
    srv.wait_stderr_line(
        &[
            "out of file descriptors (MaxConnections now ",
            "(accept: Too many open files (os error 24)): closed",
        ],
        Duration::from_secs(5),
    );
    assert_closed(
        &mut held[0],
        Duration::from_secs(5),
        "first idle connection",
    );
    let mut last = held.pop().unwrap();
    last.write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    assert_eq!(
        read_response(&mut last, Duration::from_secs(10)).status,
        200
    );
    // `--check` says the same.
    let mut check = std::process::Command::new(BIN);
    check.args(["--check", "-c"]).arg(&srv.conf);
    limit_open_files(&mut check, 64);
    let out = check.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("axkit: warning: plugin `uri_to_file`: {warning}")),
        "{err}"
    );
}
