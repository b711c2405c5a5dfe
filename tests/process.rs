//! The process model, end to end with the real binary (DESIGN.md, "Process
//! model"): the master restarts a worker that is killed or exits, drains on
//! SIGTERM/SIGINT (in-flight responses complete, `ShutdownTimeout` bounds
//! the wait), reloads on SIGHUP (new workers with the new config; a bad
//! config is reported and the old one keeps serving; no request fails while
//! reloading under load), reopens logs on SIGUSR1, and `--no-master` runs a
//! single process. A worker that cannot load its config is retried at a
//! bounded rate instead of crash-looping. Also: workers inherit only the
//! listening sockets they are given; idle keep-alive connections do not hold
//! up a reload or shutdown; a connection accepted just before shutdown is
//! still answered; after SIGTERM new connections are refused.
//!
//! Every wait polls with a generous deadline: these tests share a small,
//! busy machine and assert behaviour, never timings.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request's start time and result.
type Timed = (Instant, Result<(), String>);

use common::*;

/// Two workers serving `{dir}/www`; `global` and `server` are extra lines.
fn conf(global: &str, server: &str) -> String {
    format!(
        "Workers 2\n{global}\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {{dir}}/www\n    \
         DirectoryIndex index.html\n    Plugin uri_to_file\n    Plugin fast_mime_map\n    Plugin serve_file\n\
         {server}\n</Server>\n"
    )
}

fn www(dir: &TempDir) {
    dir.write("www/index.html", "hello\n");
    dir.write("www/a.txt", "aaa\n");
}

/// Poll `cond` every 50 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether worker `pid` has said `ready`: it installs its signal handlers
/// (SIGUSR1 caught) just before, and after reading its config.
fn worker_ready(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .unwrap_or(0);
    caught & (1 << (libc::SIGUSR1 - 1)) != 0
}

/// SIGKILL each of the `count` workers in turn and wait until the master
/// has a ready replacement for it.
fn replace_every_worker(srv: &mut Axkit, count: usize) {
    for victim in srv.workers() {
        kill(victim, libc::SIGKILL);
        assert!(
            wait_until(Duration::from_secs(20), || {
                let w = srv.workers();
                w.len() == count && !w.contains(&victim) && w.iter().all(|&p| worker_ready(p))
            }),
            "no replacement for {victim}:\n{}",
            srv.stderr()
        );
    }
}

fn process_exists(pid: i32) -> bool {
    // A zombie still has a /proc entry, but it no longer runs.
    process_state(pid).starts_with("running")
}

fn kill(pid: i32, sig: i32) {
    unsafe {
        libc::kill(pid, sig);
    }
}

/// SIGTERM the master; it must exit successfully within 15 s.
fn terminate_within_15s(srv: &mut Axkit) {
    let t = Instant::now();
    srv.signal(libc::SIGTERM);
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("master did not exit");
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
}

/// One GET on a new connection that must answer 200 with `Connection:
/// close`; every failure is an `Err`, never a panic.
fn try_get(addr: SocketAddr, path: &str) -> Result<Response, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(10));
    let r = parse_response(&bytes)
        .ok_or_else(|| format!("no complete response (closed: {closed}): {bytes:?}"))?;
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    Ok(r)
}

/// A client that keeps its connection open between requests, and retries
/// as real clients do (RFC 9112 §9.3.1): a request on a *reused*
/// connection that sees EOF or a reset before any byte of the response is
/// sent once more on a new connection. Anything else is a failure.
struct KeepAliveClient {
    addr: SocketAddr,
    conn: Option<TcpStream>,
    retries: usize,
    connects: usize,
}

enum Attempt {
    Done(Response),
    /// Nothing at all came back on a reused connection.
    Retryable(String),
    Failed(String),
}

impl KeepAliveClient {
    fn new(addr: SocketAddr) -> KeepAliveClient {
        KeepAliveClient {
            addr,
            conn: None,
            retries: 0,
            connects: 0,
        }
    }

    fn get(&mut self, path: &str) -> Result<Response, String> {
        match self.attempt(path) {
            Attempt::Done(r) => Ok(r),
            Attempt::Failed(e) => Err(e),
            Attempt::Retryable(first) => {
                self.retries += 1;
                match self.attempt(path) {
                    Attempt::Done(r) => Ok(r),
                    Attempt::Failed(e) | Attempt::Retryable(e) => {
                        Err(format!("{first}; retry: {e}"))
                    }
                }
            }
        }
    }

    fn attempt(&mut self, path: &str) -> Attempt {
        let reused = self.conn.is_some();
        let mut s = match self.conn.take() {
            Some(s) => s,
            None => match TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) {
                Ok(s) => {
                    self.connects += 1;
                    s
                }
                Err(e) => return Attempt::Failed(format!("connect: {e}")),
            },
        };
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let nothing = |what: String| {
            if reused {
                Attempt::Retryable(what)
            } else {
                Attempt::Failed(what)
            }
        };
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        if let Err(e) = s.write_all(req.as_bytes()) {
            return nothing(format!("write: {e}"));
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        let response = loop {
            match s.read(&mut chunk) {
                Ok(0) if buf.is_empty() => return nothing("EOF before the response".into()),
                Ok(0) => return Attempt::Failed(format!("EOF inside the response: {buf:?}")),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if buf.is_empty()
                        && e.kind() != ErrorKind::WouldBlock
                        && e.kind() != ErrorKind::TimedOut =>
                {
                    return nothing(format!("read: {e}"))
                }
                Err(e) => return Attempt::Failed(format!("read: {e} after {buf:?}")),
            }
            if let Some(r) = parse_response(&buf) {
                break r;
            }
        };
        if response.len != buf.len() {
            return Attempt::Failed(format!("extra bytes after the response: {buf:?}"));
        }
        if response.status != 200 {
            return Attempt::Failed(format!("status {}", response.status));
        }
        if !response
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.conn = Some(s);
        }
        Attempt::Done(response)
    }
}

/// Read from `s` until `want` more bytes came or `limit` passed.
fn read_some(s: &mut TcpStream, want: usize, limit: Duration) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = vec![0u8; want.min(1 << 16)];
    while out.len() < want && Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let n = (want - out.len()).min(buf.len());
        match s.read(&mut buf[..n]) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    out
}

/// Start a GET of `path` and read up to and including the head and the
/// first `first` body bytes. Returns the stream, Content-Length and the
/// body bytes read so far.
fn start_download(addr: SocketAddr, path: &str, first: usize) -> (TcpStream, usize, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let end = loop {
        got.extend(read_some(&mut s, 4096, Duration::from_millis(500)));
        if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        assert!(Instant::now() < deadline, "no response head: {got:?}");
    };
    let head = parse_head_response(&got[..end]).unwrap();
    assert_eq!(head.status, 200);
    let len: usize = head.header("Content-Length").unwrap().parse().unwrap();
    let mut body = got.len() - end;
    while body < first {
        let more = read_some(&mut s, first - body, Duration::from_secs(5)).len();
        assert!(more > 0, "download stalled at {body}");
        body += more;
    }
    (s, len, body)
}

/// A file big enough that its response cannot sit whole in the socket
/// buffers, so it is still being sent while the client reads slowly.
const BIG: usize = 24 << 20;

fn big_file(dir: &TempDir) {
    www(dir);
    let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    dir.write("www/big.bin", data);
}

#[test]
fn killed_worker_is_replaced_and_service_continues() {
    let srv = Axkit::start_with(&conf("", ""), &[], www);
    let workers = srv.workers();
    assert_eq!(workers.len(), 2, "{workers:?}");

    // Background load: a new connection per request, recording when each
    // request started and whether it succeeded.
    let addr = srv.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<Timed>>> = Arc::default();
    let load = {
        let (stop, results) = (stop.clone(), results.clone());
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(20);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let started = Instant::now();
                let r = try_get(addr, "/a.txt").and_then(|r| {
                    if r.body == b"aaa\n" {
                        Ok(())
                    } else {
                        Err(format!("body {:?}", r.text()))
                    }
                });
                results.lock().unwrap().push((started, r));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    // Past the master's "crashed at start" back-off of one second.
    std::thread::sleep(Duration::from_millis(1200));
    let victim = workers[0];
    kill(victim, libc::SIGKILL);
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = srv.workers();
            now.len() == 2 && !now.contains(&victim) && now.iter().all(|&p| process_exists(p))
        }),
        "no replacement for worker {victim}: {now:?}"
    );
    let restarted = Instant::now();
    assert!(
        now.contains(&workers[1]),
        "the other worker was touched: {workers:?} -> {now:?}"
    );
    let replacement = *now.iter().find(|&&p| p != workers[1]).unwrap();
    assert!(!workers.contains(&replacement));

    // Keep the load going a while with the new worker in place.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let results = results.lock().unwrap();
    let after: Vec<_> = results.iter().filter(|(t, _)| *t >= restarted).collect();
    let failed: Vec<_> = after.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "requests failed after the restart: {failed:?}"
    );
    assert!(
        after.len() >= 10,
        "only {} requests after the restart",
        after.len()
    );
    // At most the requests in flight on the killed worker may have failed.
    let failed_total = results.iter().filter(|(_, r)| r.is_err()).count();
    assert!(
        failed_total <= 2,
        "{failed_total} failures: {:?}",
        results
            .iter()
            .filter(|(_, r)| r.is_err())
            .collect::<Vec<_>>()
    );

    let mut srv = srv;
    let err = srv.wait_stderr(&format!("worker {victim} exited"), Duration::from_secs(5));
    assert!(
        err.contains("SIGKILL") || err.contains("signal: 9"),
        "{err}"
    );
    assert_eq!(srv.get("/").text(), "hello\n");
}

#[test]
fn sigterm_drains_in_flight_responses_and_exits_0() {
    let mut srv = Axkit::start_with(&conf("", ""), &[], big_file);
    let (mut dl, len, mut body) = start_download(srv.addr, "/big.bin", 256 << 10);
    assert_eq!(len, BIG);
    std::thread::sleep(Duration::from_millis(300));

    srv.signal(libc::SIGTERM);
    srv.wait_stderr("shutting down", Duration::from_secs(10));

    // New connections are soon refused (every process closed its copy of
    // the listening socket: none is left unanswered in the backlog), while
    // the download creeps on.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut probes = Vec::new();
    loop {
        body += read_some(&mut dl, 64 << 10, Duration::from_millis(50)).len();
        let probe = match TcpStream::connect_timeout(&srv.addr, Duration::from_secs(2)) {
            Err(e) => format!("refused: {e}"),
            Ok(mut s) => {
                let _ = s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let (bytes, _) = read_until_close(&mut s, Duration::from_secs(2));
                if parse_response(&bytes).is_some_and(|r| r.status == 200) {
                    "served".to_string()
                } else {
                    format!("not served: {bytes:?}")
                }
            }
        };
        let refused = probe.starts_with("refused");
        probes.push(probe);
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still not refused: {probes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "master exited with a response in flight"
    );

    // The slow download still completes, byte for byte.
    let mut rest = Vec::new();
    dl.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let r = dl.read_to_end(&mut rest);
    assert!(r.is_ok(), "download cut: {r:?} at {}", body + rest.len());
    body += rest.len();
    assert_eq!(body, len, "in-flight response incomplete");

    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("master did not exit");
    assert!(status.success(), "{status:?}");
    let err = srv.wait_stderr("stopped", Duration::from_secs(5));
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn sigint_exits_0() {
    let mut srv = Axkit::start_with(&conf("", ""), &[], www);
    assert_eq!(srv.get("/").status, 200);
    let workers = srv.workers();
    srv.signal(libc::SIGINT);
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("master did not exit");
    assert!(status.success(), "{status:?}");
    assert!(wait_until(Duration::from_secs(10), || workers
        .iter()
        .all(|&p| !process_exists(p))));
}

#[test]
fn shutdown_timeout_bounds_the_drain() {
    let mut srv = Axkit::start_with(&conf("ShutdownTimeout 1s", ""), &[], big_file);
    // A client that reads the head and then stalls.
    let (mut dl, len, body) = start_download(srv.addr, "/big.bin", 1);
    let workers = srv.workers();
    terminate_within_15s(&mut srv);
    srv.wait_stderr(
        "shutdown timeout: closing 1 connection",
        Duration::from_secs(5),
    );
    assert!(wait_until(Duration::from_secs(10), || workers
        .iter()
        .all(|&p| !process_exists(p))));
    // The stalled response was cut short, not completed.
    dl.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    let _ = dl.read_to_end(&mut rest);
    assert!(body + rest.len() < len);
}

#[test]
fn sighup_reloads_the_config() {
    let before = "ServerToken Before";
    let alt = |n: u32| {
        format!("    <Location /alt>\n        DocumentRoot {{dir}}/alt{n}\n    </Location>")
    };
    let mut srv = Axkit::start_with(&conf(before, &alt(1)), &[], |dir| {
        www(dir);
        dir.write("alt1/x.txt", "one\n");
        dir.write("alt2/x.txt", "two\n");
    });
    let r = srv.get("/alt/x.txt");
    assert_eq!(
        (r.text().as_str(), r.header("Server")),
        ("one\n", Some("Before"))
    );
    let old = srv.workers();
    assert_eq!(old.len(), 2);

    std::fs::write(
        &srv.conf,
        config_text(&srv.dir, &conf("ServerToken After", &alt(2))),
    )
    .unwrap();
    srv.signal(libc::SIGHUP);
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let r = try_get(srv.addr, "/alt/x.txt");
            let new = r
                .as_ref()
                .is_ok_and(|r| r.body == b"two\n" && r.header("Server") == Some("After"));
            last = Some(r);
            new
        }),
        "new config never served: {last:?}"
    );
    srv.wait_stderr("configuration reloaded", Duration::from_secs(10));
    // New workers; the old ones finished and exited.
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = srv.workers();
            now.len() == 2
                && now.iter().all(|p| !old.contains(p))
                && old.iter().all(|&p| !process_exists(p))
        }),
        "workers {old:?} -> {now:?}"
    );
    // Only the new config is served from now on.
    for _ in 0..10 {
        let r = srv.get("/alt/x.txt");
        assert_eq!(
            (r.text().as_str(), r.header("Server")),
            ("two\n", Some("After"))
        );
    }

    // A bad config: reported with file and line, and the old one stays.
    let good = now;
    let bad = conf("ServerToken Bad\nZebra 1", &alt(1));
    std::fs::write(&srv.conf, config_text(&srv.dir, &bad)).unwrap();
    srv.signal(libc::SIGHUP);
    let err = srv.wait_stderr("keeping the old one", Duration::from_secs(20));
    let conf_path = srv.conf.display().to_string();
    assert!(
        err.contains(&format!("axkit: {conf_path}:3: Zebra: unknown directive")),
        "{err}"
    );
    assert!(
        err.contains("reload failed: configuration has errors; keeping the old one"),
        "{err}"
    );
    for _ in 0..5 {
        let r = srv.get("/alt/x.txt");
        assert_eq!(
            (r.text().as_str(), r.header("Server")),
            ("two\n", Some("After"))
        );
    }
    assert_eq!(
        srv.workers().iter().collect::<HashSet<_>>(),
        good.iter().collect::<HashSet<_>>()
    );

    // A config that checks but whose workers cannot start (the error log
    // cannot be opened): the old generation stays too.
    let unstartable = conf(
        "ServerToken Bad\nPlugin logging/file\nLogFile {dir}/no/such/dir/error.log",
        &alt(1),
    );
    std::fs::write(&srv.conf, config_text(&srv.dir, &unstartable)).unwrap();
    srv.signal(libc::SIGHUP);
    let err = srv.wait_stderr(
        "failed to start; keeping the old configuration",
        Duration::from_secs(30),
    );
    assert!(!err.contains("panicked"), "{err}");
    let r = srv.get("/alt/x.txt");
    assert_eq!(
        (r.text().as_str(), r.header("Server")),
        ("two\n", Some("After"))
    );
    assert!(wait_until(Duration::from_secs(10), || {
        srv.workers().iter().collect::<HashSet<_>>() == good.iter().collect::<HashSet<_>>()
    }));
}

#[test]
fn reload_under_load_loses_no_request() {
    reload_under_load(3, Duration::from_secs(1));
}

/// The same, harder: run with `cargo test --test process -- --ignored`.
#[test]
#[ignore]
fn many_reloads_under_load_lose_no_request() {
    reload_under_load(40, Duration::from_millis(100));
}

/// Two clients (keep-alive, and a new connection per request) while
/// `reloads` SIGHUPs are sent, `interval` apart once each has finished.
fn reload_under_load(reloads: usize, interval: Duration) {
    let mut srv = Axkit::start_with(&conf("", ""), &[], www);
    let addr = srv.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let spawn_client = |keepalive: bool| {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut ok = 0usize;
            let mut failures = Vec::new();
            let mut client = KeepAliveClient::new(addr);
            let until = Instant::now() + Duration::from_secs(30);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                i += 1;
                if i.is_multiple_of(40) {
                    // Idle now and then, so that a reload finds the
                    // keep-alive connection between requests too.
                    std::thread::sleep(Duration::from_millis(15));
                }
                // The keep-alive client mixes in a close every so often.
                let r = if keepalive && !i.is_multiple_of(7) {
                    client.get("/a.txt")
                } else {
                    try_get(addr, "/a.txt")
                };
                match r {
                    Ok(r) if r.body == b"aaa\n" => ok += 1,
                    Ok(r) => failures.push(format!("request {i}: body {:?}", r.text())),
                    Err(e) => failures.push(format!("request {i}: {e}")),
                }
            }
            (ok, failures, client.retries, client.connects)
        })
    };
    let clients = [spawn_client(true), spawn_client(false)];
    std::thread::sleep(Duration::from_millis(500));
    let first = srv.workers();
    for n in 1..=reloads {
        srv.signal(libc::SIGHUP);
        // Wait for this reload to finish before the next one.
        let done = wait_until(Duration::from_secs(30), || {
            srv.stderr().matches("configuration reloaded").count() >= n
        });
        assert!(done, "reload {n} did not finish:\n{}", srv.stderr());
        std::thread::sleep(interval);
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    let mut total = 0;
    for (i, c) in clients.into_iter().enumerate() {
        let (ok, f, retries, connects) = c.join().unwrap();
        eprintln!(
            "client {i}: {ok} ok, {} failed, {retries} retried, {connects} keep-alive connections",
            f.len()
        );
        assert!(ok > 20, "client {i} made only {ok} requests");
        total += ok;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}",
        failures.len(),
        total + failures.len()
    );
    let now = srv.workers();
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|p| !first.contains(p)));
    let err = srv.stderr();
    assert!(
        !err.contains("panicked") && !err.contains("reload failed"),
        "{err}"
    );
}

#[test]
fn sigusr1_reopens_logs() {
    let global = "Plugin logging/file\nLogFile {dir}/error.log\nPlugin request_log\nRequestLog {dir}/access.log\n\
                  LogLevel LOGINFO";
    let srv = Axkit::start_with(&conf(global, ""), &[], www);
    let dir = srv.dir.path().to_path_buf();
    let access = dir.join("access.log");
    let rotated = dir.join("access.log.1");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();

    assert_eq!(srv.get("/a.txt?first").status, 200);
    assert!(wait_until(Duration::from_secs(10), || read(&access)
        .contains("GET /a.txt?first ")));
    std::fs::rename(&access, &rotated).unwrap();
    srv.signal(libc::SIGUSR1);
    // Both workers reopen; a request lands in the new file once either has.
    let mut n = 0;
    assert!(
        wait_until(Duration::from_secs(15), || {
            n += 1;
            assert_eq!(srv.get(&format!("/a.txt?second{n}")).status, 200);
            read(&access).contains(&format!("GET /a.txt?second{n} "))
        }),
        "no new access.log line:\nnew: {}\nold: {}",
        read(&access),
        read(&rotated)
    );
    // Give the other worker a moment, then every request goes to the new file.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..10 {
        assert_eq!(srv.get(&format!("/a.txt?third{i}")).status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || (0..10).all(|i| {
        read(&access).contains(&format!("GET /a.txt?third{i} "))
    })));
    let old = read(&rotated);
    assert!(old.contains("GET /a.txt?first "), "{old}");
    assert!(!old.contains("third"), "{old}");
    // The master is still there with its two workers.
    let mut srv = srv;
    assert_eq!(srv.workers().len(), 2, "{}", srv.stderr());
}

#[test]
fn a_closed_stderr_does_not_stop_the_server() {
    // Started from a terminal that went away, or logging into a pipe
    // whose reader died: every log line then fails to write.
    let dir = TempDir::new("nostderr");
    www(&dir);
    let text = conf("LogLevel LOGDEBUG", "");
    let conf_path = dir.write("axkit.conf", config_text(&dir, &text));
    let mut child = std::process::Command::new(BIN)
        .arg("-c")
        .arg(&conf_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let addr: SocketAddr = line
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let workers = children_of(child.id() as i32);
    for _ in 0..20 {
        // A 404, a bad request: each is logged.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
        assert!(bytes.starts_with(b"HTTP/1.1 404 "), "{bytes:?}");
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
            .unwrap();
        let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
        assert!(bytes.starts_with(b"HTTP/1.1 400 "), "{bytes:?}");
    }
    assert_eq!(try_get(addr, "/a.txt").unwrap().text(), "aaa\n");
    // No worker died on the way.
    assert_eq!(children_of(child.id() as i32), workers);
    let _ = child.kill();
    let _ = child.wait();
    for w in workers {
        kill(w, libc::SIGKILL);
    }
}

#[test]
fn no_master_runs_one_process() {
    let mut srv = Axkit::start_single_with(&conf("", ""), www);
    assert_eq!(srv.get("/").text(), "hello\n");
    assert!(srv.workers().is_empty(), "children: {:?}", srv.workers());
    assert_eq!(srv.get("/a.txt").text(), "aaa\n");
    srv.signal(libc::SIGTERM);
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("did not exit");
    assert!(status.success(), "{status:?}");
}

#[test]
fn worker_exits_are_restarted_without_crash_looping() {
    let global = "Plugin logging/file\nLogFile {dir}/logs/error.log";
    let mut srv = Axkit::start_with(&conf(global, ""), &[], |dir| {
        www(dir);
        dir.write("logs/.keep", "");
    });
    let first = srv.workers();
    assert_eq!(first.len(), 2);
    // A worker that exits on its own (here: asked to, behind the master's
    // back) is replaced.
    kill(first[0], libc::SIGTERM);
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = srv.workers();
            now.len() == 2 && !now.contains(&first[0]) && now.iter().all(|&p| worker_ready(p))
        }),
        "{first:?} -> {now:?}"
    );
    srv.wait_stderr(
        &format!(
            "worker {} exited (exit status: 0); starting a new one",
            first[0]
        ),
        Duration::from_secs(5),
    );
    assert_eq!(srv.get("/").status, 200);

    // A replacement cannot start (its log directory is gone): the master
    // retries at a bounded rate and the other worker keeps serving.
    let logs = srv.dir.path().join("logs");
    std::fs::remove_dir_all(&logs).unwrap();
    let survivor = now[1];
    kill(now[0], libc::SIGKILL);
    srv.wait_stderr("failed to start", Duration::from_secs(20));
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let attempts = srv.stderr().matches("failed to start").count();
    let secs = t.elapsed().as_secs_f64() + 1.0;
    assert!(
        (attempts as f64) <= secs * 2.0 + 2.0,
        "{attempts} start attempts in {secs:.1} s"
    );
    assert!(srv.workers().contains(&survivor));
    for _ in 0..5 {
        assert_eq!(srv.get("/").status, 200);
    }
    // Fixed again: back to full strength.
    std::fs::create_dir(&logs).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let w = srv.workers();
            w.len() == 2 && w.contains(&survivor) && w.iter().all(|&p| worker_ready(p))
        }),
        "{:?}\n{}",
        srv.workers(),
        srv.stderr()
    );
    assert_eq!(srv.get("/").status, 200);
}

#[test]
fn restarted_workers_keep_the_configuration_the_master_loaded() {
    // The Server block comes from an included file.
    let main = "Workers 2\nInclude {dir}/conf.d/*.conf\n";
    let server = "<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {dir}/www\n    \
                  DirectoryIndex index.html\n    Plugin uri_to_file\n    Plugin fast_mime_map\n    \
                  Plugin serve_file\n</Server>\n";
    let mut srv = Axkit::start_with(main, &[], |dir| {
        www(dir);
        dir.write(
            "conf.d/server.conf",
            server.replace("{dir}", &dir.path().display().to_string()),
        );
    });
    let conf_d = srv.dir.path().join("conf.d");
    assert_eq!(srv.get("/").text(), "hello\n");

    // Both files are edited without a SIGHUP: one valid change (another
    // index page) and one that would not load at all. Then every worker
    // dies in turn.
    let server_conf = conf_d.join("server.conf");
    let edited = std::fs::read_to_string(&server_conf)
        .unwrap()
        .replace("DirectoryIndex index.html", "DirectoryIndex a.txt");
    std::fs::write(&server_conf, edited).unwrap();
    std::fs::write(conf_d.join("zz-new.conf"), "Zebra 1\n").unwrap();
    replace_every_worker(&mut srv, 2);
    // The replacements serve what the master loaded, not what is on disk.
    for _ in 0..10 {
        assert_eq!(srv.get("/").text(), "hello\n");
    }
    assert!(!srv.stderr().contains("Zebra"), "{}", srv.stderr());

    // A SIGHUP reads the disk: the bad file is reported and the old
    // configuration stays; once it is gone the edit takes effect.
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("Zebra", Duration::from_secs(20));
    assert_eq!(srv.get("/").text(), "hello\n");
    std::fs::remove_file(conf_d.join("zz-new.conf")).unwrap();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || srv.get("/").text() == "aaa\n"),
        "{}",
        srv.stderr()
    );
}

#[test]
fn sigterm_is_not_held_up_by_a_worker_still_starting() {
    // Workers take 3 to 4 s of wall time to start (under the 5 s limit on
    // a script's top level, however busy the machine): the top level
    // spins, in workers only (the master loads it too, to learn its
    // directives).
    let config = "Workers 1\nPluginDir {dir}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
                  Plugin slowstart\n</Server>\n";
    let script = "if os.getenv('AXKIT_WORKER') then\n\
                  local t = os.time() while os.time() - t < 4 do end\n\
                  end\n\
                  function hook_response(r) r:write('up') return OK end\n";
    let mut srv = Axkit::start_with(config, &[], |dir| {
        dir.write("plugins/slowstart.lua", script);
    });
    assert_eq!(srv.get("/").text(), "up");
    // The replacement of a killed worker is starting when SIGTERM comes:
    // the master stops it and exits instead of waiting for it.
    let victim = srv.workers()[0];
    kill(victim, libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(10), || srv
            .workers()
            .iter()
            .any(|&p| p != victim && process_exists(p))),
        "no replacement started:\n{}",
        srv.stderr()
    );
    let starting = srv.workers();
    srv.signal(libc::SIGTERM);
    // Well before the replacement could say `ready` (in 2.5 s at least).
    let status = srv
        .wait_exit(Duration::from_secs(2))
        .unwrap_or_else(|| panic!("master still running:\n{}", srv.stderr()));
    assert!(status.success(), "{status:?}");
    for p in starting {
        assert!(
            wait_until(Duration::from_secs(5), || !process_exists(p)),
            "worker {p} left behind"
        );
    }
}

/// The same for Lua scripts: a worker restarted after a crash runs the
/// script its master loaded (bytes that are not UTF-8 included), even when
/// the disk now holds a `NAME.lua` that would win over the `NAME/init.lua`
/// the master found, or one that does not load at all.
#[test]
fn restarted_workers_keep_the_scripts_the_master_loaded() {
    let config = "Workers 2\nPluginDir {dir}/plugins\n<Server>\n    Listen 127.0.0.1:0\n    \
                  Plugin live\n</Server>\n";
    let script = |text: &[u8]| {
        let mut s = b"function hook_response(r) r:write('".to_vec();
        s.extend_from_slice(text);
        s.extend_from_slice(b"') return OK end\n");
        s
    };
    let mut srv = Axkit::start_with(config, &[], |dir| {
        dir.write("plugins/live/init.lua", script(b"one \xff"));
    });
    let plugins = srv.dir.path().join("plugins");
    assert_eq!(srv.get("/").body, b"one \xff");

    // Kill every worker in turn; the replacements must start and serve
    // what the master loaded.
    let restart_all = |srv: &mut Axkit| {
        replace_every_worker(srv, 2);
        for _ in 0..10 {
            assert_eq!(srv.get("/").text(), "one \u{fffd}");
        }
    };
    // Valid edits without a SIGHUP: a live.lua that would now be found
    // first, and a changed live/init.lua.
    std::fs::write(plugins.join("live.lua"), script(b"two")).unwrap();
    std::fs::write(plugins.join("live/init.lua"), script(b"three")).unwrap();
    restart_all(&mut srv);
    // A broken edit does not stop a replacement from starting.
    std::fs::write(plugins.join("live.lua"), "function hook_response(r").unwrap();
    restart_all(&mut srv);
    assert!(!srv.stderr().contains("live.lua"), "{}", srv.stderr());

    // A SIGHUP reads the disk: the broken script is reported and the old
    // one stays; once it is fixed, it is served.
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("live.lua:1:", Duration::from_secs(20));
    assert_eq!(srv.get("/").body, b"one \xff");
    std::fs::write(plugins.join("live.lua"), script(b"two")).unwrap();
    srv.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(20), || srv.get("/").text() == "two"),
        "{}",
        srv.stderr()
    );
}

/// `LuaReload On` reads the disk, not the snapshot: a worker restarted
/// after an edit runs the file as it is now, as its sibling does.
#[test]
fn lua_reload_bypasses_the_snapshot() {
    let config = "Workers 1\nPluginDir {dir}/plugins\nPlugin lua\nLuaReload On\n<Server>\n    \
                  Listen 127.0.0.1:0\n    Plugin live\n</Server>\n";
    let mut srv = Axkit::start_with(config, &[], |dir| {
        dir.write(
            "plugins/live.lua",
            "function hook_response(r) r:write('one') return OK end",
        );
    });
    assert_eq!(srv.get("/").text(), "one");
    let path = srv.dir.path().join("plugins/live.lua");
    std::fs::write(
        &path,
        "function hook_response(r) r:write('two') return OK end",
    )
    .unwrap();
    // Make the change visible even on a coarse-grained clock.
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(srv.get("/").text(), "two");
    let victim = srv.workers()[0];
    kill(victim, libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let w = srv.workers();
            w.len() == 1 && w[0] != victim && worker_ready(w[0])
        }),
        "no replacement for {victim}:\n{}",
        srv.stderr()
    );
    assert_eq!(srv.get("/").text(), "two");
}

/// Socket inodes open in process `pid`.
fn socket_fds(pid: i32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("socket:"))
        .collect()
}

/// The `socket:[INODE]` of the socket listening on `addr` (IPv4).
fn listening_inode(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f[1] == want && f[3] == "0A" {
            return format!("socket:[{}]", f[9]);
        }
    }
    panic!("{addr} not listening:\n{table}");
}

/// Each worker holds the listening socket exactly once, also after a reload
/// and a restart: sockets it was not given (the master's own copies) are
/// not inherited, so neither are they by the processes a worker starts.
#[test]
fn workers_inherit_only_their_listening_sockets() {
    let mut srv = Axkit::start_with(&conf("", ""), &[], www);
    let inode = listening_inode(srv.addr);
    let check = |srv: &Axkit, when: &str| {
        let workers = srv.workers();
        assert_eq!(workers.len(), 2, "{when}");
        for w in workers {
            let n = socket_fds(w).iter().filter(|s| **s == inode).count();
            assert_eq!(
                n, 1,
                "{when}: worker {w} has the listening socket {n} times"
            );
        }
    };
    check(&srv, "at start");
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("configuration reloaded", Duration::from_secs(30));
    // The old generation may still be on its way out.
    assert!(wait_until(Duration::from_secs(20), || srv.workers().len() == 2));
    let reloaded = srv.workers();
    check(&srv, "after a reload");
    kill(reloaded[0], libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(20), || {
        let w = srv.workers();
        w.len() == 2 && !w.contains(&reloaded[0])
    }));
    // The replacement is listed once it is spawned; wait until it serves.
    srv.wait_stderr("starting a new one", Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(20), || {
        srv.workers().iter().all(|&w| worker_ready(w))
    }));
    check(&srv, "after a restart");
    assert_eq!(srv.get("/").status, 200);
}

/// An idle keep-alive connection neither holds up a reload nor a shutdown:
/// the draining worker closes it at once (its next request would be
/// retried by the client), long before ShutdownTimeout (30 s by default).
#[test]
fn idle_keepalive_connections_do_not_hold_up_reload_or_shutdown() {
    let mut srv = Axkit::start_with(&conf("", ""), &[], www);
    let keepalive_request = |s: &mut TcpStream| {
        s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let got = read_some(s, 4096, Duration::from_secs(10));
        let r = parse_response(&got).expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None);
    };
    let mut idle = TcpStream::connect(srv.addr).unwrap();
    keepalive_request(&mut idle);
    let old = srv.workers();

    srv.signal(libc::SIGHUP);
    srv.wait_stderr("configuration reloaded", Duration::from_secs(30));
    let (bytes, closed) = read_until_close(&mut idle, Duration::from_secs(10));
    assert!(
        closed && bytes.is_empty(),
        "idle connection not closed: {bytes:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || old
            .iter()
            .all(|&p| !process_exists(p))),
        "old workers still running"
    );

    let mut idle = TcpStream::connect(srv.addr).unwrap();
    keepalive_request(&mut idle);
    terminate_within_15s(&mut srv);
    let (bytes, closed) = read_until_close(&mut idle, Duration::from_secs(5));
    assert!(closed && bytes.is_empty(), "{bytes:?}");
}

/// A connection the worker accepted before it was told to stop, whose
/// request has not arrived yet, is still answered (with `Connection:
/// close`): its client cannot know the server was about to stop.
#[test]
fn accepted_connection_is_answered_during_shutdown() {
    let mut srv = Axkit::start_with(&conf("", ""), &[], www);
    let workers = srv.workers();
    let before: Vec<usize> = workers.iter().map(|&w| socket_fds(w).len()).collect();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    // Wait until a worker has accepted it (one more socket there).
    assert!(
        wait_until(Duration::from_secs(10), || workers
            .iter()
            .zip(&before)
            .any(|(&w, &n)| socket_fds(w).len() > n)),
        "connection never accepted"
    );
    srv.signal(libc::SIGTERM);
    srv.wait_stderr("shutting down", Duration::from_secs(10));
    // Give the workers time to act on SIGTERM before the request comes.
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (bytes, closed) = read_until_close(&mut s, Duration::from_secs(10));
    let r = parse_response(&bytes).unwrap_or_else(|| panic!("no response: {bytes:?}"));
    assert_eq!((r.status, r.text().as_str()), (200, "aaa\n"));
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(closed);
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("master did not exit");
    assert!(status.success(), "{status:?}");
}
