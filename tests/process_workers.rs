//! The master and its workers, end to end with the real binary: a worker
//! that is killed or exits is replaced while service continues, one that
//! cannot start (or dies as it starts) is retried after a pause that
//! doubles each time instead of crash-looping, one pause for workers that
//! die together, and a reload is heard meanwhile, a
//! replacement runs the configuration and Lua scripts its master loaded
//! (not what is on disk now, unless `LuaReload On`), workers inherit only
//! the listening sockets they are given, a closed stderr stops nothing,
//! and `--no-master` runs a single process.
//!
//! Every wait polls observable state (`/proc`, the log, responses) with a
//! generous deadline: these tests share a small, busy machine and assert
//! behaviour, never timings.

mod common;
#[path = "common/process.rs"]
mod process;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use process::*;

/// A request's start time and result.
type Timed = (Instant, Result<(), String>);

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

    // The kill comes under load: once the load has had some answers.
    let answered = |since: Instant| {
        let results = results.lock().unwrap();
        results
            .iter()
            .filter(|(t, r)| *t >= since && r.is_ok())
            .count()
    };
    let began = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || answered(began) >= 20),
        "the load got no answers: {:?}",
        results.lock().unwrap()
    );
    let victim = workers[0];
    signal(victim, libc::SIGKILL);
    let mut now = Vec::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            now = srv.workers();
            now.len() == 2 && !now.contains(&victim) && now.iter().all(|&p| alive(p))
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

    // Keep the load going with the new worker in place, for as many
    // requests as before the kill.
    let enough = wait_until(Duration::from_secs(20), || answered(restarted) >= 20);
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let results = results.lock().unwrap();
    let after: Vec<_> = results.iter().filter(|(t, _)| *t >= restarted).collect();
    let failed: Vec<_> = after.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "requests failed after the restart: {failed:?}"
    );
    assert!(enough, "only {} requests after the restart", after.len());
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
    signal(first[0], libc::SIGTERM);
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
    // retries after a pause that doubles with each failure in a row, and
    // the other worker keeps serving.
    let logs = srv.dir.path().join("logs");
    std::fs::remove_dir_all(&logs).unwrap();
    let survivor = now[1];
    signal(now[0], libc::SIGKILL);
    // The pauses, in seconds, as logged: each twice the one before (the
    // first may be longer than 1 s: the workers killed and stopped above
    // had only just started, and crashes at start count too).
    let pauses = |log: &str| -> Vec<u64> {
        log.split("failed to start; retrying in ")
            .skip(1)
            .filter_map(|rest| rest.split('s').next()?.parse().ok())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || pauses(&srv.stderr()).len() >= 2),
        "{}",
        srv.stderr()
    );
    let seen = pauses(&srv.stderr());
    assert!(seen.windows(2).all(|w| w[1] == w[0] * 2), "{seen:?}");
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

/// The next worker of `srv` to be ready that is not in `seen` (which it
/// joins), and when it was seen ready; at most `limit` from now.
fn next_ready_worker(srv: &Axkit, seen: &mut Vec<i32>, limit: Duration) -> (i32, Instant) {
    let mut found = None;
    let ready = wait_until(limit, || {
        found = srv
            .workers()
            .into_iter()
            .find(|p| !seen.contains(p) && worker_ready(*p));
        found.is_some()
    });
    assert!(ready, "no new worker within {limit:?} (seen {seen:?})");
    let pid = found.unwrap();
    seen.push(pid);
    (pid, Instant::now())
}

/// The pause the master logged before replacing worker `pid`, which died
/// at start (`starting a new one in 4s`, `failed to start; retrying in
/// 4s`); none if it was not taken for a crash at start (it had run a
/// while).
fn logged_pause(srv: &mut Axkit, pid: i32) -> Option<Duration> {
    let line = srv.wait_stderr_line(&[&format!("worker {pid} ")], Duration::from_secs(10));
    let secs = line
        .split_once(" in ")
        .and_then(|(_, rest)| rest.split('s').next()?.parse().ok())?;
    Some(Duration::from_secs(secs))
}

/// The pause logged for `pid`, which must have been taken for a crash at
/// start.
fn crash_pause(srv: &mut Axkit, pid: i32) -> Duration {
    logged_pause(srv, pid).unwrap_or_else(|| panic!("{pid} not taken for a crash at start"))
}

/// A worker that dies as soon as it is ready (here killed by the test, as
/// a bug in its start would kill it) is replaced after a pause that
/// doubles with each such death in a row, measured from the outside, not
/// only logged; the master still hears signals meanwhile: a SIGHUP in the
/// middle of a pause starts the new configuration's workers at once, and
/// starts the count again (the next death at start waits a second), and
/// a SIGTERM stops it.
#[test]
fn workers_crashing_at_start_are_restarted_ever_later_and_the_master_stays_responsive() {
    let text = conf("LogLevel LOGINFO", "").replace("Workers 2", "Workers 1");
    let mut srv = Axkit::start_with(&text, &[], www);
    let mut seen = srv.workers();
    // The first worker may have run a while: whether its death counts is
    // not asked.
    signal(seen[0], libc::SIGKILL);
    let (mut victim, _) = next_ready_worker(&srv, &mut seen, Duration::from_secs(20));
    let mut pauses = Vec::new();
    for _ in 0..3 {
        let killed = Instant::now();
        signal(victim, libc::SIGKILL);
        let pause = crash_pause(&mut srv, victim);
        let (next, ready) = next_ready_worker(&srv, &mut seen, pause + Duration::from_secs(20));
        let gap = ready - killed;
        assert!(gap >= pause, "replaced after {gap:?}, {pause:?} logged");
        pauses.push(pause);
        victim = next;
    }
    assert!(pauses[0] <= Duration::from_secs(2), "{pauses:?}");
    assert!(pauses.windows(2).all(|w| w[1] == w[0] * 2), "{pauses:?}");
    // A fixed configuration, mid-pause: served at once, not after it.
    signal(victim, libc::SIGKILL);
    let pause = crash_pause(&mut srv, victim);
    let asked = Instant::now();
    let fixed = text.replace("DirectoryIndex index.html", "DirectoryIndex a.txt");
    std::fs::write(&srv.conf, config_text(&srv.dir, &fixed)).unwrap();
    srv.signal(libc::SIGHUP);
    let (healthy, _) = next_ready_worker(&srv, &mut seen, Duration::from_secs(20));
    assert!(asked.elapsed() < pause, "{:?}", asked.elapsed());
    // The reload started the count again. (Killed once the master has
    // its `ready`, else the reload would fail instead; on a machine so
    // busy that this took a second, its death is no crash at start.)
    srv.wait_stderr("configuration reloaded", Duration::from_secs(10));
    signal(healthy, libc::SIGKILL);
    let again = logged_pause(&mut srv, healthy);
    assert!(
        again.is_none_or(|p| p == Duration::from_secs(1)),
        "{again:?}"
    );
    next_ready_worker(&srv, &mut seen, Duration::from_secs(20));
    assert_eq!(srv.get("/").text(), "aaa\n");
    terminate_within_15s(&mut srv);
}

/// Several workers that die at start together wait out one pause, the
/// one logged: each death does not schedule a restart of its own, which
/// would start them all again (and again) before the pause that the
/// later lines gave.
#[test]
fn workers_crashing_at_start_together_wait_out_the_pause_logged() {
    let mut srv = Axkit::start_with(&conf("LogLevel LOGINFO", ""), &[], www);
    let mut seen = srv.workers();
    for &pid in &seen {
        signal(pid, libc::SIGKILL);
    }
    // Both new workers are killed once ready; no new one may be ready
    // before the pause logged has passed (less a second, the lines'
    // rounding).
    let mut not_before = Instant::now();
    for _ in 0..3 {
        let round = [(); 2].map(|()| next_ready_worker(&srv, &mut seen, Duration::from_secs(40)));
        for (pid, ready) in round {
            assert!(
                ready >= not_before,
                "worker {pid} started {:?} before the pause logged ended\n{}",
                not_before - ready,
                srv.stderr()
            );
        }
        let killed = Instant::now();
        for (pid, _) in round {
            signal(pid, libc::SIGKILL);
        }
        // A worker that ran a second before it was killed is restarted
        // at once: no bound then.
        let pauses: Option<Vec<Duration>> = round
            .iter()
            .map(|&(pid, _)| logged_pause(&mut srv, pid))
            .collect();
        not_before = match pauses.and_then(|p| p.into_iter().min()) {
            Some(pause) => killed + pause.saturating_sub(Duration::from_secs(1)),
            None => killed,
        };
    }
    terminate_within_15s(&mut srv);
}

#[test]
fn restarted_workers_keep_the_configuration_the_master_loaded() {
    // The Server block comes from an included file.
    let main = "Workers 2\nLogLevel LOGINFO\nInclude {dir}/conf.d/*.conf\n";
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
    let log = srv.sync_stderr();
    assert!(!log.contains("Zebra"), "{log}");

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

/// The same for Lua scripts: a worker restarted after a crash runs the
/// script its master loaded (bytes that are not UTF-8 included), even when
/// the disk now holds a `NAME.lua` that would win over the `NAME/init.lua`
/// the master found, or one that does not load at all.
#[test]
fn restarted_workers_keep_the_scripts_the_master_loaded() {
    let config = "Workers 2\nLogLevel LOGINFO\nPluginDir {dir}/plugins\n<Server>\n    \
                  Listen 127.0.0.1:0\n    Plugin live\n</Server>\n";
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
    let log = srv.sync_stderr();
    assert!(!log.contains("live.lua"), "{log}");

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
    let config = "Workers 1\nPluginDir {dir}/plugins\nLuaReload On\n<Server>\n    \
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
    signal(victim, libc::SIGKILL);
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
    signal(reloaded[0], libc::SIGKILL);
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
        signal(w, libc::SIGKILL);
    }
}
