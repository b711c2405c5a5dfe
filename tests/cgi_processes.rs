//! The processes a CGI script starts, through the stock `axkit` binary:
//! timeouts and client disconnects end the whole process group, background
//! children end with their script (unless `CGIKillGroup Off`) and one that
//! ignores SIGTERM is killed after `CGIKillGrace`, `CGIMaxProcesses` with
//! its bounded queue, and 1,000 mixed requests leaving no process, zombie
//! or descriptor behind.
//!
//! Every server runs as one process (`--no-master`), so the axkit process
//! is the worker whose children and descriptors the tests inspect.

#[path = "common/cgi.rs"]
mod cgi;
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cgi::*;
use common::*;

#[test]
fn timeouts_and_disconnects_end_the_whole_process_group() {
    let mut srv = start(
        &conf(
            "",
            "    CGITimeout 500ms\n    CGIKillGrace 300ms\n    \
             <Location /cgi-bin/capped>\n        CGITimeout 10s\n        CGIMaxTime 1s\n    </Location>",
        ),
        |d| {
            // A background child in the group, and a TERM-proof leader.
            script(d, "cgi-bin/stuck", "#!/bin/sh\necho \"stuck pid=$$\" >&2\nsleep 30 &\ntrap '' TERM\nsleep 30\n");
            script(
                d,
                "cgi-bin/capped/drip",
                "#!/bin/sh\necho \"drip pid=$$\" >&2\nprintf 'Content-Type: text/plain\\n\\n'\nwhile :; do echo tick; sleep 0.1; done\n",
            );
            script(d, "cgi-bin/capped/wait", "#!/bin/sh\necho \"wait pid=$$\" >&2\nsleep 30\n");
        },
    );
    // No progress for CGITimeout: 504, then the group dies (SIGKILL after
    // the grace period, since the leader ignores SIGTERM).
    let started = Instant::now();
    let r = get(&srv, "/cgi-bin/stuck", "");
    assert_eq!(r.status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = logged_pid(&mut srv, "stuck");
    srv.wait_stderr("/cgi-bin/stuck: no progress for", Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || group_members(pid).is_empty()),
        "left behind: {:?}",
        group_members(pid)
    );

    // CGIMaxTime while streaming: the response is cut (no last chunk).
    let (bytes, closed) = srv.raw(b"GET /cgi-bin/capped/drip HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("tick") && !text.ends_with("0\r\n\r\n"),
        "{text}"
    );
    let pid = logged_pid(&mut srv, "drip");
    srv.wait_stderr("CGIMaxTime reached", Duration::from_secs(5));
    assert!(wait_until(Duration::from_secs(5), || group_members(pid).is_empty()));

    // A client that goes away ends its script.
    let mut s = srv.connect();
    s.write_all(b"GET /cgi-bin/capped/wait HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let pid = logged_pid(&mut srv, "wait");
    assert!(!group_members(pid).is_empty());
    assert!(
        all_children(srv.pid()).contains(&pid),
        "a child of the worker"
    );
    drop(s);
    assert!(
        wait_until(Duration::from_secs(3), || group_members(pid).is_empty()),
        "script outlived its client"
    );
}

/// A background child that closed its stdio (nothing ties it to the
/// request any more): it goes with its script unless CGIKillGroup is Off.
#[test]
fn background_children_end_with_their_script_unless_kill_group_is_off() {
    let mut srv = start(
        &conf(
            "",
            "    <Location /cgi-bin/keep>\n        CGIKillGroup Off\n    </Location>",
        ),
        |d| {
            let text = |tag: &str| {
                format!(
                    "#!/bin/sh\necho \"{tag} pid=$$\" >&2\n\
                     sleep 300 </dev/null >/dev/null 2>&1 &\n\
                     echo $! > \"$DOCUMENT_ROOT/../{tag}.pid\"\n\
                     printf 'Content-Type: text/plain\\n\\nanswered'\n"
                )
            };
            script(d, "cgi-bin/keep/bg", &text("keep"));
            script(d, "cgi-bin/bg", &text("kill"));
        },
    );
    let bg_pid = |srv: &Axkit, tag: &str| -> i32 {
        let file = srv.dir.path().join(format!("{tag}.pid"));
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };

    // Off: the child outlives the request, and its script's end.
    let r = get(&srv, "/cgi-bin/keep/bg", "");
    assert_eq!((r.status, r.text().as_str()), (200, "answered"));
    let kept = KillOnDrop(bg_pid(&srv, "keep"));
    let leader = logged_pid(&mut srv, "keep");
    assert!(
        wait_until(Duration::from_secs(10), || !all_children(srv.pid())
            .contains(&leader)),
        "the script was not reaped"
    );

    // The default (On): gone soon after the response.
    let r = get(&srv, "/cgi-bin/bg", "");
    assert_eq!((r.status, r.text().as_str()), (200, "answered"));
    let killed = KillOnDrop(bg_pid(&srv, "kill"));
    assert!(
        wait_until(Duration::from_secs(10), || !alive(killed.0)),
        "background child {} outlived its script: {}",
        killed.0,
        process_state(killed.0)
    );
    // By now the Off child would have been signalled long ago.
    assert!(alive(kept.0), "{}", process_state(kept.0));
}

/// A background child that ignores SIGTERM: SIGKILL after CGIKillGrace,
/// which delays neither the response nor the next request on the
/// connection, and until then it holds its script's CGIMaxProcesses slot.
#[test]
fn a_stubborn_background_child_is_killed_after_the_grace_and_holds_its_slot() {
    let mut srv = start(
        &conf("CGIMaxProcesses 1\nLogLevel LOGINFO", "    CGIKillGrace 3s"),
        |d| {
            // SIGTERM is ignored before the fork, so the child is born
            // ignoring it: the group's SIGTERM comes as soon as the script
            // exits, which can be before a `trap` in the child has run (it
            // then dies of SIGTERM, needs no SIGKILL, and nothing is logged).
            script(
                d,
                "cgi-bin/stubborn",
                "#!/bin/sh\ntrap '' TERM\n(exec sleep 300) </dev/null >/dev/null 2>&1 &\n\
                 echo $! > \"$DOCUMENT_ROOT/../bg.pid\"\n\
                 printf 'Content-Type: text/plain\\n\\nanswered'\n",
            );
            script(
                d,
                "cgi-bin/ok",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok'\n",
            );
            d.write("www/file.txt", "a file\n");
        },
    );
    let mut s = srv.connect();
    s.write_all(
        b"GET /cgi-bin/stubborn HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /file.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
    let all = parse_all(&bytes);
    assert_eq!(all.len(), 2, "{}", lossy(&bytes));
    assert_eq!(all[0].text(), "answered");
    assert_eq!(all[1].text(), "a file\n");
    let pid: i32 = std::fs::read_to_string(srv.dir.path().join("bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bg = KillOnDrop(pid);
    assert!(alive(bg.0), "SIGTERM is ignored: {}", process_state(bg.0));
    // The only slot is the stubborn group's until it is killed.
    assert_eq!(get(&srv, "/cgi-bin/ok", "").text(), "ok");
    assert!(
        wait_until(Duration::from_secs(1), || !alive(bg.0)),
        "answered while the group still held the slot: {}",
        process_state(bg.0)
    );
    srv.wait_stderr(
        "/cgi-bin/stubborn: its process group was still there CGIKillGrace after SIGTERM",
        Duration::from_secs(5),
    );
}

/// With one slot and room for one in the queue, two requests that come
/// while the slot is taken: one waits in the queue for CGIQueueTimeout,
/// in vain, and the other finds the queue full and is refused at once.
/// Which is which is up to the order they arrive in; that the refusal
/// comes first is not.
#[test]
fn max_processes_queue_then_503() {
    let mut srv = start(
        &conf(
            "CGIMaxProcesses 1\nCGIMaxQueue 1\nCGIQueueTimeout 1s\nLogLevel LOGINFO",
            "",
        ),
        |d| {
            // Holds the slot until the test releases it (60 s at most).
            script(
                d,
                "cgi-bin/slow",
                "#!/bin/sh\n: >\"$DOCUMENT_ROOT/../started\"\ni=0\n\
                 while [ ! -e \"$DOCUMENT_ROOT/../release\" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\n\
                 printf 'Content-Type: text/plain\\n\\nslow'\n",
            );
            script(
                d,
                "cgi-bin/fast",
                "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nfast'\n",
            );
        },
    );
    let addr = srv.addr;
    let fetch = move |path: &'static str| {
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let started = Instant::now();
            let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
            (status_of(&bytes), started.elapsed(), Instant::now())
        })
    };
    let a = fetch("/cgi-bin/slow");
    // A holds the only slot once its script runs.
    let dir = srv.dir.path().to_path_buf();
    assert!(wait_until(Duration::from_secs(10), || dir
        .join("started")
        .exists()));
    let (b, c) = (fetch("/cgi-bin/fast"), fetch("/cgi-bin/fast"));
    let mut both = [b.join().unwrap(), c.join().unwrap()];
    both.sort_by_key(|&(_, _, done)| done);
    let [(refused, _, _), (waited, waited_for, _)] = both;
    assert_eq!((refused, waited), (503, 503), "{both:?}");
    assert!(
        waited_for >= Duration::from_millis(950),
        "waited shorter than CGIQueueTimeout: {both:?}"
    );
    let log = srv.sync_stderr();
    let said = |why: &str| {
        log.matches(&format!("CGIMaxProcesses reached, {why}: 503"))
            .count()
    };
    assert_eq!(
        (said("queue full"), said("waited too long")),
        (1, 1),
        "{log}"
    );

    std::fs::write(dir.join("release"), "").unwrap();
    assert_eq!(a.join().unwrap().0, 200);
    assert_eq!(get(&srv, "/cgi-bin/fast", "").status, 200);
}

#[test]
fn a_thousand_mixed_requests_leave_nothing_behind() {
    let mut srv = start(
        &conf(
            "",
            "    <Location /cgi-bin/slow>\n        CGITimeout 300ms\n        CGIKillGrace 100ms\n    </Location>",
        ),
        |d| {
            script(d, "cgi-bin/ok", "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\nok'\n");
            script(d, "cgi-bin/crash", "#!/bin/sh\nkill -SEGV $$\n");
            script(d, "cgi-bin/slow/sleep", "#!/bin/sh\nsleep 10 & sleep 10\n");
        },
    );
    let pid = srv.pid();
    assert_eq!(get(&srv, "/cgi-bin/ok", "").status, 200);
    let fds_before = fd_count(pid);
    let addr = srv.addr;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut counts = [0u32; 4];
                for i in 0..250 {
                    let kind = match (i * 4 + t) % 20 {
                        0 => 1, // crash: 502
                        1 => 2, // timeout: 504
                        2 => 3, // client disconnects
                        _ => 0,
                    };
                    let path = [
                        "/cgi-bin/ok",
                        "/cgi-bin/crash",
                        "/cgi-bin/slow/sleep",
                        "/cgi-bin/slow/sleep",
                    ][kind];
                    let mut s = TcpStream::connect(addr).unwrap();
                    let req =
                        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    s.write_all(req.as_bytes()).unwrap();
                    if kind == 3 {
                        // Gone a moment later: before, while or after the
                        // script runs, whichever it happens to be.
                        std::thread::sleep(Duration::from_millis(20));
                        drop(s);
                        counts[3] += 1;
                        continue;
                    }
                    let (bytes, _) = read_until_close(&mut s, Duration::from_secs(10));
                    let want = [200, 502, 504][kind];
                    assert_eq!(status_of(&bytes), want, "{path}");
                    counts[kind] += 1;
                }
                counts
            })
        })
        .collect();
    let mut total = [0u32; 4];
    for t in threads {
        for (sum, n) in total.iter_mut().zip(t.join().unwrap()) {
            *sum += n;
        }
    }
    assert_eq!(total.iter().sum::<u32>(), 1000);
    assert!(total.iter().all(|&n| n >= 45), "{total:?}");
    // Every script, and everything the scripts started, is gone and reaped.
    let gone = wait_until(Duration::from_secs(5), || all_children(pid).is_empty());
    assert!(gone, "children left: {:?}", all_children(pid));
    let fds_after = fd_count(pid);
    assert!(
        fds_after <= fds_before + 2,
        "descriptors grew from {fds_before} to {fds_after}"
    );
    // Read to the end: a panic logged late is still seen.
    let log = srv.stop();
    assert!(!log.contains("panic"), "{log}");
}
