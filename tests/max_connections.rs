//! A worker at `MaxConnections` still serves new clients: it closes the
//! keep-alive connections that have been idle longest, and connections that
//! have sent nothing for a few seconds, to make room (as nginx reuses idle
//! keep-alive connections); a connection with a request in flight is never
//! closed for it, unless the request is one its client resumes by itself
//! (an event stream, a long poll: `tests/sse.rs`). Each test holds a worker at a tiny limit with deadlines far
//! beyond the test's own bounds, so that only reclaiming can let the probe in.
//! The same holds when the limit is the open-file limit (EMFILE at accept,
//! some tests lowering a running worker's with `prlimit`): idle connections
//! make room, and a worker with nothing to close waits without spinning.

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

/// A Lua handler that holds each request (a download, say: never
/// reclaimable) until the file named by `Release` exists, or until the
/// Unix time `?until=` (a release that needs no descriptor: looking for
/// the file does), or not at all for `?now=1`.
const HOLD_SCRIPT: &str = r#"
function hook_response(r)
  local release, deadline = r:config("Release"), tonumber(r:param("until"))
  local function released()
    return r:param("now") or (deadline and os.time() >= deadline) or file.exists(release)
  end
  while not released() do sleep(0.02) end
  r:set_header("Content-Type", "text/plain")
  r:write("released\n")
  return OK
end
directive { name = "Release", type = "string", doc = "file that ends the wait" }
"#;

/// A server whose only handler is `HOLD_SCRIPT` (the `hold` plugin that
/// `hold_plugin` writes), released by `{dir}/release`; `global`: extra
/// lines.
fn hold_conf(global: &str) -> String {
    format!(
        "{global}\nLogLevel LOGINFO\nKeepAliveTimeout 60s\nHeaderTimeout 60s\n\
         PluginDir {{dir}}/plugins\nRelease {{dir}}/release\nLuaFileRoot {{dir}}\n\
         <Server>\n    Listen 127.0.0.1:0\n    Plugin hold\n</Server>\n"
    )
}

fn hold_plugin(d: &TempDir) {
    d.write("plugins/hold.lua", HOLD_SCRIPT);
}

/// A single process serving `hold_conf(global)`.
fn start_holding(global: &str) -> Axkit {
    Axkit::start_single_with(&hold_conf(global), hold_plugin)
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

/// Nothing comes on `s` for two seconds (a client that must wait while
/// every connection has a request in flight).
fn assert_unanswered_for_2s(s: &mut TcpStream, srv: &mut Axkit) {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let early = s.read(&mut [0u8; 1]);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "served while every connection had a request in flight: {early:?}\n{}",
        srv.stderr()
    );
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
    let _probe = idle_connection(&srv);
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
    let mut srv = start_holding("MaxConnections 2");
    let mut held = [srv.connect(), srv.connect()];
    for s in &mut held {
        s.write_all(keep_alive_get("/hold").as_bytes()).unwrap();
    }
    let mut probe = srv.connect();
    probe
        .write_all(keep_alive_get("/?now=1").as_bytes())
        .unwrap();
    assert_unanswered_for_2s(&mut probe, &mut srv);
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
/// idle connections while another has room. Two workers of 8 each hold 12
/// idle connections, however the kernel would have spread them (without
/// the pause one takes nearly all). Not 14: a crowded worker leaves each
/// client to the others for a 10 ms pause only, and on a loaded machine
/// (CI's tests in parallel on two cores) the other may not run within it
/// (14 failed so once); 12 leaves room for two such misses.
#[test]
fn a_nearly_full_worker_leaves_new_clients_to_the_others() {
    let text = format!(
        "MaxConnections 8\nKeepAliveTimeout 60s\nHeaderTimeout 60s\n{}",
        STATIC_CONF.replace("Workers 1", "Workers 2")
    );
    let srv = Axkit::start_with(&text, &[], |d| {
        d.write("www/hello.txt", "hello\n");
    });
    let mut held: Vec<TcpStream> = (0..12).map(|_| idle_connection(&srv)).collect();
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

/// `n` keep-alive clients, more than the worker has descriptors: each is
/// answered, and stays open until it is closed to make room; only the
/// client that took the very last descriptor may find none for its file
/// (a 500). The answered ones, oldest first.
fn more_clients_than_descriptors(srv: &Axkit, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    let mut failed = 0;
    for _ in 0..n {
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
    held
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
    // More keep-alive clients than the worker has descriptors.
    let mut held = more_clients_than_descriptors(&srv, 80);
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

/// Set the open-file limit of the running process `pid` (`soft`, `hard`),
/// as an operator's `prlimit` would: a worker then runs out of descriptors
/// far below the `MaxConnections` it took from the limit it started with.
fn set_open_files(pid: i32, soft: u64, hard: u64) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit reads `limit`, alive across the call, and writes
    // nothing (no old limit asked for).
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// The one worker of a server started with a master, its open-file limit
/// lowered to 64 while it runs (the hard limit to 256, to which the soft
/// one may be raised back).
fn worker_limited_to_64(srv: &Axkit) -> i32 {
    let workers = srv.workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    set_open_files(workers[0], 64, 256);
    workers[0]
}

/// At most half the wall clock since `since` (ticks, `started`) as CPU
/// time of `pid`: it waited, it did not spin on a listener that stays
/// readable while accept fails. Give or take five ticks (50 ms): a window
/// of a few ticks, in which the worker served a burst of clients, says
/// nothing of spinning, and it would fail there one run in three.
fn assert_not_spinning(pid: i32, since: u64, started: Instant) {
    let used = cpu_ticks(pid) - since;
    let wall = started.elapsed().as_millis() as u64 / 10;
    assert!(
        used * 2 <= wall + 5,
        "worker {pid} used {used} ticks of CPU in {wall} ticks"
    );
}

/// A worker whose open-file limit is lowered under it (to 64, far below
/// its `MaxConnections`) and then filled with idle keep-alive clients
/// keeps serving new ones: accept fails with EMFILE, and the connections
/// idle longest make room, as at `MaxConnections`. It neither spins nor
/// dies meanwhile, and says so once, not once per client. Once the limit
/// is raised, the worker takes as many connections as before at once,
/// rather than keep below the count it ran out at for a while.
#[test]
fn a_worker_out_of_descriptors_closes_idle_connections_for_new_clients() {
    let text = conf("LogLevel LOGINFO").replace("MaxConnections 2\n", "");
    let mut srv = Axkit::start_with(&text, &[], |d| {
        d.write("www/hello.txt", "hello\n");
    });
    let worker = worker_limited_to_64(&srv);
    let (ticks, started) = (cpu_ticks(worker), Instant::now());
    let mut held = more_clients_than_descriptors(&srv, 120);
    assert_closed(&mut held[0], Duration::from_secs(5), "oldest idle one");
    let _probe = idle_connection(&srv);
    assert_not_spinning(worker, ticks, started);
    let log = srv.sync_stderr();
    assert_eq!(srv.workers(), [worker], "{log}");
    let said = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(said("this worker now serves at most"), 1, "{log}");
    assert_eq!(
        said("out of file descriptors (MaxConnections now "),
        1,
        "{log}"
    );
    set_open_files(worker, 256, 256);
    srv.wait_stderr(
        "the open-file limit was raised: MaxConnections back to",
        Duration::from_secs(5),
    );
    // Twice as many clients as the lowered limit let it hold: none of
    // them closes one of those it held.
    let _more: Vec<TcpStream> = (0..128).map(|_| idle_connection(&srv)).collect();
    let newest = held.len() - 8;
    for (i, s) in held[newest..].iter_mut().enumerate() {
        s.write_all(keep_alive_get("/hello.txt").as_bytes())
            .unwrap();
        let r = read_response(s, Duration::from_secs(10));
        assert_eq!(r.status, 200, "held connection {}", newest + i);
    }
}

/// A worker whose every descriptor is held by a request in flight (here a
/// Lua handler's wait, which may not be cut short) has nothing to close:
/// new clients wait in the listen queue, the worker waits for one of its
/// connections to end instead of spinning on a listener that stays
/// readable while accept fails (nor logs each failure), and once the
/// requests end every waiting client is served.
#[test]
fn a_worker_out_of_descriptors_with_every_request_busy_waits_then_recovers() {
    let mut srv = Axkit::start_with(&hold_conf("Workers 1"), &[], hold_plugin);
    let worker = worker_limited_to_64(&srv);
    // More requests than descriptors: those the worker could not take
    // wait in the listen queue. They end by themselves some seconds on,
    // well after the window below: with every descriptor taken, a handler
    // could not even look for a file.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hold = keep_alive_get(&format!("/hold?until={}", unix + 8));
    let mut clients: Vec<TcpStream> = (0..80)
        .map(|_| {
            let mut s = srv.connect();
            s.write_all(hold.as_bytes()).unwrap();
            s
        })
        .collect();
    srv.wait_stderr("out of file descriptors at ", Duration::from_secs(20));
    let waiting = clients.last_mut().unwrap();
    assert_eq!(srv.worker_serving(waiting), None);
    // Full: a window of two seconds in which the last client gets
    // nothing, and the worker must not burn the CPU meanwhile.
    let (ticks, started) = (cpu_ticks(worker), Instant::now());
    assert_unanswered_for_2s(waiting, &mut srv);
    assert_not_spinning(worker, ticks, started);
    for (i, s) in clients.iter_mut().enumerate() {
        let r = read_response(s, Duration::from_secs(20));
        assert_eq!(
            (r.status, r.text()),
            (200, "released\n".into()),
            "client {i}"
        );
    }
    let log = srv.sync_stderr();
    assert_eq!(srv.workers(), [worker], "{log}");
    let failures = log.matches("accept: Too many open files").count();
    assert!(failures <= 2, "{failures} accept failures logged:\n{log}");
}

/// A worker that cannot get a descriptor for even one connection (they
/// all went to something else: here its soft limit is lowered below the
/// descriptors it holds) has no connection to close: the client waits,
/// the worker retries now and then without spinning and says so in its
/// log now and then, not at every retry; once descriptors are free again
/// (the limit raised back) the client is served, and so are others beside
/// it: a shortage at no connection says nothing about how many the worker
/// may hold, and leaves its limit as it was.
#[test]
fn a_worker_with_no_descriptor_for_any_connection_retries_quietly() {
    let text = conf("LogLevel LOGINFO").replace("MaxConnections 2\n", "");
    let mut srv = Axkit::start_with(&text, &[], |d| {
        d.write("www/hello.txt", "hello\n");
    });
    let worker = srv.workers()[0];
    set_open_files(worker, 3, 64);
    let mut client = srv.connect();
    client
        .write_all(keep_alive_get("/hello.txt").as_bytes())
        .unwrap();
    srv.wait_stderr("accept: Too many open files", Duration::from_secs(10));
    let (ticks, started) = (cpu_ticks(worker), Instant::now());
    assert_unanswered_for_2s(&mut client, &mut srv);
    assert_not_spinning(worker, ticks, started);
    set_open_files(worker, 64, 64);
    assert_eq!(
        read_response(&mut client, Duration::from_secs(10)).status,
        200
    );
    let mut clients = vec![client];
    clients.extend((0..3).map(|_| idle_connection(&srv)));
    for (i, s) in clients.iter_mut().enumerate() {
        s.write_all(keep_alive_get("/hello.txt").as_bytes())
            .unwrap();
        assert_eq!(
            read_response(s, Duration::from_secs(5)).status,
            200,
            "client {i}"
        );
    }
    let log = srv.sync_stderr();
    let failures = log.matches("accept: Too many open files").count();
    assert!(failures <= 2, "{failures} accept failures logged:\n{log}");
    assert!(!log.contains("serves at most"), "{log}");
}
