//! Reloading, end to end with the real binary: SIGHUP starts workers with
//! the new config (a bad config is reported with file and line and the
//! old one keeps serving, as it does when the new workers cannot start),
//! no request fails while reloading under load (clients retry as RFC 9112
//! allows; a keep-alive POST, which no client retries, is answered too),
//! and SIGUSR1 makes every worker reopen its logs, never through a symlink
//! put at a log's path (refused at start too).
//!
//! Every wait polls observable state (`/proc`, the log, responses) with a
//! generous deadline: these tests share a small, busy machine and assert
//! behaviour, never timings.

mod common;
#[path = "common/process.rs"]
mod process;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use process::*;

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

/// `/alt` served from `{dir}/alt{n}`.
fn alt(n: u32) -> String {
    format!("    <Location /alt>\n        DocumentRoot {{dir}}/alt{n}\n    </Location>")
}

/// Two workers with `ServerToken Before`, `/alt` from `alt1`.
fn start_alt() -> Axkit {
    let srv = Axkit::start_with(&conf("ServerToken Before", &alt(1)), &[], |dir| {
        www(dir);
        dir.write("alt1/x.txt", "one\n");
        dir.write("alt2/x.txt", "two\n");
    });
    let r = srv.get("/alt/x.txt");
    assert_eq!(
        (r.text().as_str(), r.header("Server")),
        ("one\n", Some("Before"))
    );
    assert_eq!(srv.workers().len(), 2);
    srv
}

/// `/alt/x.txt` is still served by the configuration `start_alt` loaded,
/// by the same workers.
fn assert_old_config_serves(srv: &Axkit, workers: &[i32]) {
    for _ in 0..5 {
        let r = srv.get("/alt/x.txt");
        assert_eq!(
            (r.text().as_str(), r.header("Server")),
            ("one\n", Some("Before"))
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            srv.workers().iter().collect::<HashSet<_>>() == workers.iter().collect::<HashSet<_>>()
        }),
        "{workers:?} -> {:?}",
        srv.workers()
    );
}

#[test]
fn sighup_reloads_the_config() {
    let mut srv = start_alt();
    let old = srv.workers();
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
            now.len() == 2 && now.iter().all(|p| !old.contains(p)) && old.iter().all(|&p| !alive(p))
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
}

/// A bad config on SIGHUP: reported with file and line, and the old one
/// stays, with its workers.
#[test]
fn a_config_with_errors_keeps_the_old_one() {
    let mut srv = start_alt();
    let good = srv.workers();
    let bad = conf("ServerToken Bad\nZebra 1", &alt(2));
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
    assert_old_config_serves(&srv, &good);
}

/// A config that checks but whose workers cannot start (the error log
/// cannot be opened): the old generation stays too.
#[test]
fn a_config_whose_workers_cannot_start_keeps_the_old_one() {
    let mut srv = start_alt();
    let good = srv.workers();
    let unstartable = conf(
        "ServerToken Bad\nPlugin logging/file\nLogFile {dir}/no/such/dir/error.log",
        &alt(2),
    );
    std::fs::write(&srv.conf, config_text(&srv.dir, &unstartable)).unwrap();
    srv.signal(libc::SIGHUP);
    let err = srv.wait_stderr(
        "failed to start; keeping the old configuration",
        Duration::from_secs(30),
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_old_config_serves(&srv, &good);
}

#[test]
fn reload_under_load_loses_no_request() {
    reload_under_load(3, Duration::from_secs(1));
}

/// The same, harder: run with `cargo test --test process_reload -- --ignored`.
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
    // Requests answered so far, by each client.
    let answered: Arc<[AtomicUsize; 2]> = Arc::default();
    let spawn_client = |keepalive: bool| {
        let stop = stop.clone();
        let answered = answered.clone();
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
                    Ok(r) if r.body == b"aaa\n" => {
                        ok += 1;
                        answered[usize::from(keepalive)].store(ok, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("request {i}: body {:?}", r.text())),
                    Err(e) => failures.push(format!("request {i}: {e}")),
                }
            }
            (ok, failures, client.retries, client.connects)
        })
    };
    let clients = [spawn_client(true), spawn_client(false)];
    // The reloads come under load: once both clients are under way.
    assert!(
        wait_until(Duration::from_secs(20), || answered
            .iter()
            .all(|n| n.load(Ordering::Relaxed) >= 20)),
        "the clients got no answers: {answered:?}"
    );
    let first = srv.workers();
    for n in 1..=reloads {
        srv.signal(libc::SIGHUP);
        // Wait for this reload to finish before the next one.
        let done = wait_until(Duration::from_secs(30), || {
            srv.stderr().matches("configuration reloaded").count() >= n
        });
        assert!(done, "reload {n} did not finish:\n{}", srv.stderr());
        // Under load for a while between reloads: the interval is part of
        // what is tested.
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
    // Read to the end: a panic logged late is still seen.
    let err = srv.stop();
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
    // Once no worker holds the old file open, every request goes to the
    // new one.
    let workers = srv.workers();
    assert!(
        wait_until(Duration::from_secs(10), || workers.iter().all(|&w| {
            !fd_targets(w).contains(&rotated.display().to_string())
        })),
        "a worker still has {} open",
        rotated.display()
    );
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

/// A log replaced by a symlink (to a file of root's, say, by a worker's
/// `User` that may write in the log directory) is never followed: at
/// start it is a config error, and on SIGUSR1 the old file is kept. A
/// link to a device (`/dev/stdout`, `/dev/null`) is followed, and a FIFO
/// nobody reads put at a log's path is refused rather than waited for
/// (the master would wait in its open, deaf to SIGTERM).
#[test]
fn a_symlink_at_a_log_path_is_never_followed() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let dir = TempDir::new("log-symlink");
    let victim = dir.write("victim", "root's own\n");
    symlink(&victim, dir.path().join("link.log")).unwrap();
    for global in [
        "Plugin logging/file\nLogFile {dir}/link.log",
        "Plugin request_log\nRequestLog {dir}/link.log",
    ] {
        let conf = dir.write("axkit.conf", config_text(&dir, &conf(global, "")));
        // Bounded: a server that followed the link would run on.
        let mut child = std::process::Command::new(BIN)
            .args(["--no-master", "-c"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("err.txt")).unwrap())
            .spawn()
            .unwrap();
        let mut status = None;
        wait_until(Duration::from_secs(20), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let err = std::fs::read_to_string(dir.path().join("err.txt")).unwrap();
        assert!(status.is_some_and(|s| !s.success()), "{status:?}: {err}");
        assert!(
            err.contains(
                "link.log: is a symbolic link to a file, which a log file is not opened through"
            ),
            "{err}"
        );
    }
    // A link to a device is what `/dev/stdout` is: followed.
    symlink("/dev/null", dir.path().join("null.log")).unwrap();
    www(&dir);
    let global = "Plugin request_log\nRequestLog {dir}/null.log";
    let checked = dir.write("null.conf", config_text(&dir, &conf(global, "")));
    let out = std::process::Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&checked)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && said.contains("is OK"), "{said}");

    let global = "Plugin logging/warn\nPlugin logging/file\nLogFile {dir}/error.log\n\
                  Plugin request_log\nRequestLog {dir}/access.log\nLogLevel LOGINFO";
    let mut srv = Axkit::start_with(&conf(global, ""), &[], www);
    let dir = srv.dir.path().to_path_buf();
    let victim = dir.join("victim");
    std::fs::write(&victim, "root's own\n").unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    // Made by the server, not for every account to read.
    let mode = std::fs::metadata(dir.join("access.log"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    for log in ["error.log", "access.log"] {
        std::fs::rename(dir.join(log), dir.join(format!("{log}.1"))).unwrap();
        symlink(&victim, dir.join(log)).unwrap();
    }
    srv.signal(libc::SIGUSR1);
    // The master and both workers refuse the error log, both workers the
    // access log, and say so.
    let refused = |srv: &mut Axkit, log: &str| {
        let needle = format!("{log}: is a symbolic link");
        srv.stderr().matches(&needle).count()
    };
    assert!(
        wait_until(Duration::from_secs(15), || refused(&mut srv, "error.log")
            >= 3
            && refused(&mut srv, "access.log") >= 2),
        "{}",
        srv.stderr()
    );
    for i in 0..10 {
        assert_eq!(srv.get(&format!("/a.txt?after{i}")).status, 200);
    }
    // Into the files they had open.
    assert!(wait_until(Duration::from_secs(10), || (0..10).all(|i| {
        read(&dir.join("access.log.1")).contains(&format!("GET /a.txt?after{i} "))
    })));
    assert_eq!(read(&victim), "root's own\n");
    assert!(read(&dir.join("error.log.1")).contains("is a symbolic link"));

    std::fs::remove_file(dir.join("error.log")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("error.log").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    srv.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(15), || srv
            .stderr()
            .contains("error.log: is a FIFO nobody reads")),
        "{}",
        srv.stderr()
    );
    assert_eq!(srv.get("/a.txt").status, 200);
    srv.signal(libc::SIGTERM);
    assert!(
        srv.wait_exit(Duration::from_secs(20)).is_some(),
        "the master did not stop"
    );
}

/// One keep-alive POST client of `reloads_lose_no_keepalive_post`: sends
/// `count` POSTs, pausing a little between them (so that reloads find its
/// connection idle as well as busy), opening a new connection only when
/// the server said `Connection: close`. A POST is not retried: any request
/// that does not get its 200 is a failure.
fn post_client(addr: SocketAddr, stop: Arc<AtomicBool>, id: usize) -> (usize, Vec<String>) {
    let mut conn: Option<TcpStream> = None;
    let mut ok = 0;
    let mut failures = Vec::new();
    let until = Instant::now() + Duration::from_secs(60);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        i += 1;
        std::thread::sleep(Duration::from_millis(((i * 7 + id * 3) % 25) as u64));
        let mut s = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("POST {i}: connect: {e}"));
                    continue;
                }
            },
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = format!("client={id}&n={i}");
        let req = format!(
            "POST /post HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if let Err(e) = s.write_all(req.as_bytes()) {
            failures.push(format!("POST {i}: write: {e}"));
            continue;
        }
        let response = read_one_response(&mut s).unwrap_or_else(|e| {
            failures.push(format!("POST {i}: read: {e}"));
            None
        });
        match response {
            Some(r) if r.status == 200 && r.text() == format!("got {}\n", body.len()) => {
                ok += 1;
                if !r
                    .header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = Some(s);
                }
            }
            Some(r) => failures.push(format!("POST {i}: {} {:?}", r.status, r.text())),
            None => failures.push(format!("POST {i}: no response")),
        }
    }
    (ok, failures)
}

/// A reload drains the old workers without losing a request on a
/// keep-alive connection, even a POST, which a client cannot safely send
/// twice: a request on a connection the old worker still holds is
/// answered (with `Connection: close`), never met by a close.
#[test]
fn reloads_lose_no_keepalive_post() {
    let post = "    <Location /post>\n        Plugin echo\n    </Location>";
    let mut srv = Axkit::start_with(&conf("PluginDir {dir}/plugins", post), &[], |dir| {
        www(dir);
        dir.write(
            "plugins/echo.lua",
            "function hook_response(r)\n  local body = r:body()\n  \
             r:set_header(\"Content-Type\", \"text/plain\")\n  r:write(\"got \", #body, \"\\n\")\n  \
             return OK\nend\n",
        );
    });
    let addr = srv.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|id| {
            let stop = stop.clone();
            std::thread::spawn(move || post_client(addr, stop, id))
        })
        .collect();
    for n in 1..=3 {
        std::thread::sleep(Duration::from_millis(300));
        srv.signal(libc::SIGHUP);
        let done = wait_until(Duration::from_secs(30), || {
            srv.stderr().matches("configuration reloaded").count() >= n
        });
        assert!(done, "reload {n} did not finish:\n{}", srv.stderr());
    }
    // Past the old workers' drain.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        let (ok, f) = c.join().unwrap();
        assert!(ok > 20, "a client made only {ok} POSTs: {f:?}");
        failures.extend(f);
    }
    assert!(failures.is_empty(), "{failures:#?}");
    srv.stop();
}
