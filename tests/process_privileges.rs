//! Privileges and the master's own files, end to end with the real binary:
//! `User`/`Group` (workers and CGI scripts run as the account, checked in
//! `/proc`; the master keeps root), the warning of a root server without
//! `User`, `--check` of the account names, `PidFile` (written, held against
//! a second master, taken over when stale, removed at exit), and the
//! master's lines in the `LogFile`.
//!
//! The tests that switch users need root (the machine runs the tests as
//! root); without it they print one line and pass. They use the `nobody`
//! user and `nogroup` group, which every Debian-like system has.

mod common;
#[path = "common/process.rs"]
mod process;

use std::process::Command;
use std::time::Duration;

use common::*;
use process::*;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// The `Uid:`, `Gid:` and `Groups:` lines of a `/proc/PID/status`.
fn ids(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn proc_ids(pid: i32) -> Vec<String> {
    ids(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default())
}

/// `nobody`'s ids: every one of the four user and group ids, and its only
/// group (`nogroup`).
fn nobody(uid: u32, gid: u32) -> Vec<String> {
    vec![
        format!("Uid: {uid} {uid} {uid} {uid}"),
        format!("Gid: {gid} {gid} {gid} {gid}"),
        format!("Groups: {gid}"),
    ]
}

/// The uid of `nobody` and the gid of `nogroup`, from the system's
/// databases (as `id` reads them).
fn nobody_ids() -> (u32, u32) {
    let id = |args: &[&str]| -> u32 {
        let out = Command::new("id").args(args).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let gid = Command::new("getent")
        .args(["group", "nogroup"])
        .output()
        .expect("getent");
    let gid = String::from_utf8_lossy(&gid.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    (id(&["-u", "nobody"]), gid)
}

#[test]
fn workers_and_cgi_scripts_run_as_user_and_group() {
    if !is_root() {
        println!("skipped: switching users needs root");
        return;
    }
    let conf = "Workers 2\nUser nobody\nGroup nogroup\nPidFile {dir}/run/axkit.pid\n\
                <Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {dir}/www\n    \
                Plugin serve_cgi\n    Plugin uri_to_file\n    Plugin fast_mime_map\n    \
                Plugin serve_file\n    ScriptAlias /cgi-bin/ {dir}/cgi-bin/\n</Server>\n";
    let mut srv = Axkit::start_with(conf, &[], |dir| {
        www(dir);
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        let p = dir.write(
            "cgi-bin/id.cgi",
            "#!/bin/sh\nprintf 'Content-Type: text/plain\\n\\n'\ngrep -E '^(Uid|Gid|Groups):' /proc/self/status\n",
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    let (uid, gid) = nobody_ids();
    let want = nobody(uid, gid);
    let workers = srv.workers();
    assert_eq!(workers.len(), 2);
    assert!(wait_until(Duration::from_secs(10), || workers
        .iter()
        .all(|&w| worker_ready(w))));
    for w in &workers {
        assert_eq!(proc_ids(*w), want, "worker {w}");
    }
    // The master keeps root: it binds, reads the config, opens logs.
    assert!(proc_ids(srv.pid())[0].starts_with("Uid: 0 0 0 0"));
    // A CGI script is the workers' child: the same account.
    let r = srv.get("/cgi-bin/id.cgi");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ids(&r.text()), want);
    // Static files still serve (the docroot is readable by everyone).
    assert_eq!(srv.get("/a.txt").text(), "aaa\n");

    // The PidFile names the master, and goes with it.
    let pid_file = srv.dir.path().join("run/axkit.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        format!("{}\n", srv.pid())
    );
    let err = srv.stop();
    assert!(!err.contains("running as root"), "{err}");
    assert!(!pid_file.exists(), "PidFile left behind");
}

#[test]
fn root_without_user_is_warned_about_once() {
    if !is_root() {
        println!("skipped: the warning is for a server started as root");
        return;
    }
    let mut srv = Axkit::start_with(&conf("", ""), &[], www);
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("configuration reloaded", Duration::from_secs(30));
    let err = srv.stop();
    assert_eq!(
        err.matches("running as root without `User`").count(),
        1,
        "{err}"
    );
}

/// `axkit --check` on `config` (written to a scratch file, beside the
/// `www` its DocumentRoot names): exit status and stderr.
fn check(config: &str) -> (bool, String) {
    let dir = TempDir::new("check");
    www(&dir);
    let conf = dir.write("axkit.conf", config_text(&dir, config));
    let out = Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_looks_the_user_and_group_up() {
    let (ok, err) = check(&conf(
        "User no-such-user-axkit\nGroup no-such-group-axkit",
        "",
    ));
    assert!(!ok);
    assert!(
        err.contains(":2: User (plugin core): no such user \"no-such-user-axkit\""),
        "{err}"
    );
    assert!(
        err.contains(":3: Group (plugin core): no such group \"no-such-group-axkit\""),
        "{err}"
    );
    let (ok, err) = check(&conf("Group nogroup", ""));
    assert!(!ok);
    assert!(
        err.contains(":2: Group (plugin core): Group needs User"),
        "{err}"
    );
    let (ok, err) = check(&conf("User nobody\nGroup nogroup", ""));
    assert!(ok, "{err}");
}

/// Start a master on `config` and wait for it to exit (it must, within
/// 20 s): its status and stderr.
fn run_until_exit(config: &str) -> (bool, String) {
    let dir = TempDir::new("refused");
    let conf = dir.write("axkit.conf", config_text(&dir, config));
    let mut child = Command::new(BIN)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(20), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the second master did not exit");
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status.success(), err)
}

#[test]
fn pid_file_is_held_against_a_second_master_and_taken_over_when_stale() {
    let pids = TempDir::new("pids");
    let pid_file = pids.path().join("axkit.pid");
    // Left by a master that died: taken over.
    std::fs::write(&pid_file, "999999\n").unwrap();
    let global = format!("PidFile {}", pid_file.display());
    let mut srv = Axkit::start_with(&conf(&global, ""), &[], www);
    let mine = format!("{}\n", srv.pid());
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), mine);

    // Held: a second master (on another port) refuses to start.
    let (ok, err) = run_until_exit(&conf(&global, ""));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "PidFile {}: another axkit master (pid {}) is running",
            pid_file.display(),
            srv.pid()
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), mine);
    srv.stop();
    assert!(!pid_file.exists());
}

#[test]
fn the_masters_lines_go_to_the_log_file_too() {
    let global = "Plugin logging/file\nLogFile {dir}/error.log\nLogLevel LOGNOTICE";
    let mut srv = Axkit::start_with(&conf(global, ""), &[], www);
    let log = srv.dir.path().join("error.log");
    let conf_path = srv.conf.clone();
    let good = std::fs::read_to_string(&conf_path).unwrap();
    std::fs::write(&conf_path, format!("{good}\nNoSuchDirective 1\n")).unwrap();
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("reload failed", Duration::from_secs(30));
    let text = wait_for_line(&log, |l| {
        l.contains("[error]") && l.contains("reload failed: configuration has errors")
    });
    // The reason too, with file and line, not only that it failed.
    assert!(
        text.lines()
            .any(|l| l.contains("[error]") && l.contains("NoSuchDirective: unknown directive")),
        "{text}"
    );
    // A worker that dies is the master's line as well.
    let victim = srv.workers()[0];
    signal(victim, libc::SIGKILL);
    wait_for_line(&log, |l| {
        l.contains(&format!("worker {victim} exited")) && l.contains("starting a new one")
    });
    // Each line once: the master writes it, no worker repeats it.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("reload failed").count(), 1, "{text}");
}
