//! The binary upgrade (nginx's SIGUSR2), end to end with the real binary:
//! under a stream of requests, SIGUSR2 starts a new master on the same
//! listening sockets (the PidFile moves to `FILE.oldbin` and the new
//! master writes its own), SIGQUIT drains the old one, and no client sees
//! a refused connection or an error, a keep-alive client included (it is
//! told `Connection: close`, never closed under). A second SIGUSR2, to the
//! new master while the old one runs, is refused.

mod common;
#[path = "common/process.rs"]
mod process;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use process::*;

/// GETs on one keep-alive connection (a new one only after `Connection:
/// close`), or on a new connection each, until `stop`; nothing retried.
fn client(
    addr: SocketAddr,
    keepalive: bool,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut conn: Option<TcpStream> = None;
    let until = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(3));
        if !keepalive {
            match try_get(addr, "/a.txt") {
                Ok(r) if r.body == b"aaa\n" => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => failures.push(format!("body {:?}", r.text())),
                Err(e) => failures.push(e),
            }
            continue;
        }
        let mut s = match conn.take() {
            Some(s) => s,
            None => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                Ok(s) => s,
                Err(e) => {
                    failures.push(format!("connect: {e}"));
                    continue;
                }
            },
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        if let Err(e) = s.write_all(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n") {
            failures.push(format!("write: {e}"));
            continue;
        }
        let response = read_one_response(&mut s).unwrap_or_else(|e| {
            failures.push(format!("read: {e}"));
            None
        });
        match response {
            Some(r) if r.status == 200 && r.body == b"aaa\n" => {
                ok.fetch_add(1, Ordering::Relaxed);
                if !r
                    .header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = Some(s);
                }
            }
            Some(r) => failures.push(format!("status {}", r.status)),
            None => failures.push("no response".to_string()),
        }
    }
    failures
}

fn alive(pid: i32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok()
}

#[test]
fn sigusr2_upgrades_the_binary_without_losing_a_request() {
    let mut srv = Axkit::start_with(&conf("PidFile {dir}/axkit.pid", ""), &[], www);
    let addr = srv.addr;
    let pid_file = srv.dir.path().join("axkit.pid");
    let old = srv.pid();
    assert_eq!(read_pid(&pid_file), Some(old));
    let old_workers = srv.workers();

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = [true, true, false]
        .into_iter()
        .map(|keepalive| {
            let (stop, ok) = (stop.clone(), ok.clone());
            std::thread::spawn(move || client(addr, keepalive, stop, ok))
        })
        .collect();
    assert!(wait_until(Duration::from_secs(20), || ok
        .load(Ordering::Relaxed)
        > 50));

    // The new master serves once its PidFile is written; the old one's
    // has moved aside.
    let reap = upgrade(&mut srv, &pid_file);
    let new = reap.0;
    let oldbin = srv.dir.path().join("axkit.pid.oldbin");
    assert_eq!(read_pid(&oldbin), Some(old));
    let new_workers = children_of(new);
    assert_eq!(new_workers.len(), 2, "{}", srv.stderr());
    assert!(new_workers.iter().all(|&w| worker_ready(w)));
    // Both generations serve for a while.
    let before = ok.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(20), || ok
        .load(Ordering::Relaxed)
        > before + 50));

    // SIGQUIT drains the old master and its workers.
    srv.signal(libc::SIGQUIT);
    let status = srv
        .wait_exit(Duration::from_secs(20))
        .expect("old master still running");
    assert!(status.success(), "{status:?}");
    assert!(wait_until(Duration::from_secs(20), || old_workers
        .iter()
        .all(|&w| !alive(w))));
    assert!(!oldbin.exists(), "the old master left its PidFile");
    assert_eq!(read_pid(&pid_file), Some(new));
    let before = ok.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(20), || ok
        .load(Ordering::Relaxed)
        > before + 50));

    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // The new master is on its own and stops as usual.
    assert!(alive(new));
    signal(new, libc::SIGTERM);
    assert!(wait_until(Duration::from_secs(20), || !alive(new) || is_zombie(new)));
    let err = srv.stderr();
    assert!(
        err.contains("binary upgrade: took over 1 listening socket(s)"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

/// A SIGUSR2 to the new master while the old one still runs is refused:
/// it would move the new master's PidFile over the old one's `.oldbin`,
/// and the old master would be in no file.
#[test]
fn a_second_upgrade_waits_for_the_old_master_to_go() {
    let mut srv = Axkit::start_with(&conf("PidFile {dir}/axkit.pid", ""), &[], www);
    let pid_file = srv.dir.path().join("axkit.pid");
    let oldbin = srv.dir.path().join("axkit.pid.oldbin");
    let old = srv.pid();
    let reap = upgrade(&mut srv, &pid_file);
    let new = reap.0;
    signal(new, libc::SIGUSR2);
    // The new master writes to the same stderr.
    srv.wait_stderr_line(
        &[
            &format!("axkit[{new}]"),
            &format!("SIGUSR2 ignored: a binary upgrade is in progress (the old master {old}"),
        ],
        Duration::from_secs(20),
    );
    assert_eq!(read_pid(&pid_file), Some(new));
    assert_eq!(read_pid(&oldbin), Some(old));
    assert_eq!(children_of(new).len(), 2, "only its workers");
    assert_eq!(srv.get("/a.txt").text(), "aaa\n");
    srv.signal(libc::SIGQUIT);
    assert!(srv.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn a_new_master_that_fails_leaves_the_old_one_serving() {
    let mut srv = Axkit::start_with(&conf("PidFile {dir}/axkit.pid", ""), &[], www);
    let pid_file = srv.dir.path().join("axkit.pid");
    // The new master reads the config from the disk: a broken one stops it.
    let text = std::fs::read_to_string(&srv.conf).unwrap();
    std::fs::write(&srv.conf, format!("{text}\nNoSuchDirective 1\n")).unwrap();
    srv.signal(libc::SIGUSR2);
    srv.wait_stderr("this master carries on", Duration::from_secs(30));
    assert_eq!(read_pid(&pid_file), Some(srv.pid()));
    assert!(!srv.dir.path().join("axkit.pid.oldbin").exists());
    assert_eq!(srv.get("/a.txt").text(), "aaa\n");
    srv.stop();
}
