//! What a worker leaves running when it dies, through the stock `axkit`
//! binary with a master: a CGI script a worker was running when it was
//! killed, the background child in the script's process group, a daemon
//! the script started in a session of its own (`setsid`) and a
//! `CGIKillGroup Off` child of an earlier request are all ended and
//! reaped by the master, which serves again with a new worker; and a
//! master told to stop while a script runs leaves none of them behind.

#[path = "common/cgi.rs"]
mod cgi;
mod common;
#[path = "common/process.rs"]
mod process;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use cgi::{conf, logged_pid, sh, KillOnDrop};
use common::*;
use process::{parent_of, reaped, terminate_within_15s};

/// A server with a master and one worker, whose `stuck` script never
/// answers: it starts a background child in its group and a `setsid`
/// daemon (their pids in `{dir}/stuck.bg` and `{dir}/stuck.daemon`), and
/// ignores SIGTERM. `keep/bg` answers at once, leaving a child that
/// closed its stdio (`CGIKillGroup Off` there; its pid in `{dir}/keep.bg`).
fn start() -> Axkit {
    let conf = conf(
        "ShutdownTimeout 1s",
        "    <Location /cgi-bin/keep>\n        CGIKillGroup Off\n    </Location>",
    );
    Axkit::start_with(&conf, &[], |d| {
        std::fs::create_dir_all(d.path().join("www")).unwrap();
        sh(
            d,
            "stuck",
            "echo \"stuck pid=$$\" >&2\n\
             sleep 300 </dev/null >/dev/null 2>&1 &\n\
             echo $! > \"$DOCUMENT_ROOT/../stuck.bg\"\n\
             setsid sleep 300 </dev/null >/dev/null 2>&1 &\n\
             echo $! > \"$DOCUMENT_ROOT/../stuck.daemon\"\n\
             trap '' TERM\n\
             while :; do sleep 1; done",
        );
        sh(
            d,
            "keep/bg",
            "sleep 300 </dev/null >/dev/null 2>&1 &\n\
             echo $! > \"$DOCUMENT_ROOT/../keep.bg\"\n\
             printf 'Content-Type: text/plain\\n\\nanswered'",
        );
    })
}

/// The pid a script wrote to `{dir}/NAME`, once it has.
fn written_pid(srv: &Axkit, name: &str) -> i32 {
    let path = srv.dir.path().join(name);
    let mut pid = None;
    let found = wait_until(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    assert!(found, "{name} not written");
    pid.unwrap()
}

/// Start `stuck` on a connection of its own; the script's pid and those
/// of its background child and daemon, each killed when the test ends.
fn run_stuck(srv: &mut Axkit) -> (TcpStream, Vec<KillOnDrop>) {
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/stuck HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let script = logged_pid(srv, "stuck");
    let left = [
        script,
        written_pid(srv, "stuck.bg"),
        written_pid(srv, "stuck.daemon"),
    ];
    (s, left.into_iter().map(KillOnDrop).collect())
}

fn assert_all_reaped(srv: &mut Axkit, left: &[KillOnDrop], what: &str) {
    for p in left {
        assert!(
            wait_until(Duration::from_secs(10), || reaped(p.0)),
            "{what}: {} is {}\n{}",
            p.0,
            process_state(p.0),
            srv.stderr()
        );
    }
}

#[test]
fn what_a_killed_worker_was_running_is_ended_and_service_resumes() {
    let mut srv = start();
    let r = get(&srv, "/cgi-bin/keep/bg", "");
    assert_eq!((r.status, r.text().as_str()), (200, "answered"));
    let kept = KillOnDrop(written_pid(&srv, "keep.bg"));
    let (_client, left) = run_stuck(&mut srv);
    let script = left[0].0;
    let worker = parent_of(script).expect("the script runs");
    assert_eq!(parent_of(worker), Some(srv.pid()), "a worker runs it");
    // The child the other script left is not ended while the workers run.
    assert!(alive(kept.0), "{}", process_state(kept.0));

    signal(worker, libc::SIGKILL);
    assert_all_reaped(&mut srv, &left, "left by the killed worker");
    assert_all_reaped(&mut srv, &[kept], "adopted by the master");
    let log = srv.wait_stderr(
        &format!("ending process {script} (stuck)"),
        Duration::from_secs(5),
    );
    assert!(
        log.contains(&format!(
            "process {script} (stuck) still running 1s after SIGTERM: SIGKILL"
        )),
        "{log}"
    );

    // A new worker serves.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let r = get(&srv, "/cgi-bin/keep/bg", "");
            r.status == 200 && r.text() == "answered"
        }),
        "{}",
        srv.stderr()
    );
}

#[test]
fn a_stopping_master_leaves_no_script_behind() {
    let mut srv = start();
    let (_client, left) = run_stuck(&mut srv);
    terminate_within_15s(&mut srv);
    assert_all_reaped(&mut srv, &left, "left by the stopped master");
}
