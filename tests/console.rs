//! The `console` plugin over a real socket: its commands (help, workers,
//! config, connections listing a connection the test holds open), a
//! `loglevel` change seen in the log of every worker, a `reload` seen as a
//! new generation, the unix socket's mode, a loopback TCP console (no
//! process may listen beside it; a reload hands it on without its port
//! ever being free), an HTTP request that ends its session before its body
//! runs, the unix socket bound by the master as root and closed to the
//! workers' `User` (by its mode, and by the peer's credentials), its file
//! removed when a reload moves it or the server stops, with or without a
//! master (but not another file put at its path), handed on by a binary
//! upgrade, idle sessions closed after `ConsoleTimeout`, busy ones after
//! `ConsoleLifetime`, a 17th session ending the oldest rather than
//! refused, a user connecting in a loop ending only its own sessions,
//! and the addresses `--check` refuses (beyond loopback, a unix socket in
//! a directory the workers' `User` may write).

mod common;
#[path = "common/process.rs"]
mod process;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use process::{upgrade, worker_ready};

fn conf(listen: &str) -> String {
    format!(
        "Workers 2\n\
         Plugin logging/warn\n\
         LogLevel LOGNOTICE\n\
         Plugin console\n\
         ConsoleListen {listen}\n\
         <Server>\n\
             Listen 127.0.0.1:0\n\
             DocumentRoot {{dir}}/www\n\
             Plugin uri_to_file\n\
             Plugin serve_file\n\
         </Server>\n"
    )
}

/// A server whose console is at `{dir}/console.sock`, with the global
/// directives `extra` too; and the socket's path.
fn start(extra: &str) -> (Axkit, PathBuf) {
    start_with_args(extra, &[])
}

/// [`start`], the server started with `args`.
fn start_with_args(extra: &str, args: &[&str]) -> (Axkit, PathBuf) {
    let config = format!("{extra}\n{}", conf("unix:{dir}/console.sock"));
    let mut srv = Axkit::start_with(&config, args, |d| {
        d.write("www/a.txt", "hello\n");
    });
    srv.wait_stderr("console: listening on unix:", Duration::from_secs(20));
    let sock = srv.dir.path().join("console.sock");
    (srv, sock)
}

/// A console session.
struct Console<S: std::io::Read + Write> {
    reader: BufReader<S>,
}

impl<S: std::io::Read + Write> Console<S> {
    /// Send `command`; its answer's lines, up to and with the `OK`/`ERR`
    /// line.
    fn ask(&mut self, command: &str) -> Vec<String> {
        self.try_ask(command).unwrap()
    }

    /// [`ask`](Self::ask), an error when the session fails or closes
    /// first (a console being handed over to a new worker).
    fn try_ask(&mut self, command: &str) -> std::io::Result<Vec<String>> {
        self.reader
            .get_mut()
            .write_all(format!("{command}\n").as_bytes())?;
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::other(format!(
                    "console closed after {lines:?}"
                )));
            }
            let line = line.trim_end().to_string();
            let last = line.starts_with("OK") || line.starts_with("ERR");
            lines.push(line);
            if last {
                return Ok(lines);
            }
        }
    }
}

/// After a reload, wait (20 s at most) until the console, reached
/// through `connect`, answers from `generation`: the new worker 0 has it.
/// The old worker 0 may take a connection and close it as it stops: a
/// try, not a failure. The last answer, or why there was none, if not.
fn new_generation_answers<S: std::io::Read + Write>(
    generation: u64,
    connect: impl Fn() -> std::io::Result<S>,
) -> Result<(), String> {
    let mut last = String::new();
    let answered = wait_until(Duration::from_secs(20), || {
        last = match connect().and_then(|s| {
            Console {
                reader: BufReader::new(s),
            }
            .try_ask("config")
        }) {
            Ok(lines) => lines[0].clone(),
            Err(e) => e.to_string(),
        };
        last.starts_with(&format!("generation {generation} "))
    });
    if answered {
        Ok(())
    } else {
        Err(last)
    }
}

/// Run `f` in a thread of this test that has taken nobody's ids (for
/// itself alone: the raw system call, not glibc's, which would change
/// every thread's): what it connects to sees nobody at the other end.
fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: setresuid for the calling thread only; it ends after.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(r, 0);
        f()
    })
    .join()
    .unwrap()
}

/// Whether this test runs as root, as in CI; if not, it says what is
/// left untested.
fn root(untested: &str) -> bool {
    // SAFETY: geteuid has no memory effects.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("not root: {untested}");
    }
    root
}

/// A connection to the console at `sock`, whose reads wait 10 s at most.
fn connect(sock: &Path) -> std::io::Result<UnixStream> {
    let s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn console(sock: &Path) -> Console<UnixStream> {
    Console {
        reader: BufReader::new(connect(sock).unwrap()),
    }
}

#[test]
fn commands_list_workers_config_and_connections() {
    let (srv, sock) = start("");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the console socket is the owner's only"
    );
    let mut c = console(&sock);

    let help = c.ask("help");
    for command in [
        "connections",
        "workers",
        "config",
        "loglevel",
        "reload",
        "quit",
    ] {
        assert!(help.iter().any(|l| l.starts_with(command)), "{help:?}");
    }
    assert_eq!(help.last().unwrap(), "OK");

    let workers = c.ask("workers");
    assert_eq!(workers.last().unwrap(), "OK 2 worker(s)", "{workers:?}");
    let pids: Vec<i32> = workers[1..3]
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let mut running = srv.workers();
    running.sort();
    let mut listed = pids.clone();
    listed.sort();
    assert_eq!(listed, running);
    assert!(workers[1..3]
        .iter()
        .all(|l| l.split(' ').nth(1) == Some("1")));

    let config = c.ask("config");
    assert_eq!(config[0], "generation 1 (newest running: 1)");
    assert_eq!(config[1], format!("file {}", srv.conf.display()));

    // A connection that sent a request and stays open, and one that has
    // sent nothing yet.
    let mut held = srv.connect();
    held.write_all(b"GET /a.txt?x=\"1\" HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_server_read(&held);
    let mut answer = [0u8; 1];
    std::io::Read::read(&mut held, &mut answer).unwrap();
    let silent = srv.connect();
    let (held_addr, silent_addr) = (
        held.local_addr().unwrap().to_string(),
        silent.local_addr().unwrap().to_string(),
    );
    let mut listing = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        listing = c.ask("connections");
        listing
            .iter()
            .any(|l| l.contains(&held_addr) && l.contains(" idle "))
            && listing
                .iter()
                .any(|l| l.contains(&silent_addr) && l.contains(" reading "))
    }));
    let line = listing.iter().find(|l| l.contains(&held_addr)).unwrap();
    assert!(
        line.ends_with(r#""GET /a.txt?x=\"1\" HTTP/1.1""#),
        "the request line, escaped: {line}"
    );
    assert!(listing.last().unwrap().starts_with("OK "));

    assert!(c
        .ask("frobnicate")
        .last()
        .unwrap()
        .starts_with("ERR unknown command"));
    assert!(c
        .ask("loglevel verbose")
        .last()
        .unwrap()
        .starts_with("ERR unknown level"));
    assert_eq!(c.ask("quit"), vec!["OK bye"]);
    drop((held, silent));
}

/// Send a request with two Host headers from a new connection: logged at
/// info ("PEER: bad request") by whichever worker takes it. Its address.
fn bad_request(srv: &Axkit) -> String {
    let mut s = srv.connect();
    let me = s.local_addr().unwrap().to_string();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        .unwrap();
    let _ = read_to_end_within(&mut s, Duration::from_secs(10));
    me
}

#[test]
fn loglevel_changes_what_every_worker_logs() {
    let (mut srv, sock) = start("");
    let mut c = console(&sock);
    assert_eq!(c.ask("loglevel"), vec!["loglevel notice", "OK"]);
    // At notice, a bad request is not logged (the line would have been
    // written before the response came).
    let quiet: Vec<String> = (0..4).map(|_| bad_request(&srv)).collect();
    let set = c.ask("loglevel info");
    assert!(
        set[0].starts_with("OK loglevel info in every worker"),
        "{set:?}"
    );
    // Both workers log at info now: several connections, so that each
    // worker takes some.
    for _ in 0..6 {
        let loud = bad_request(&srv);
        srv.wait_stderr_line(&[&format!("{loud}: bad request")], Duration::from_secs(10));
    }
    let log = srv.stderr();
    for addr in quiet {
        assert!(!log.contains(&format!("{addr}: bad request")), "{log}");
    }
    let pids: std::collections::HashSet<&str> = log
        .lines()
        .filter(|l| l.contains(": bad request"))
        .filter_map(|l| l.split("axkit[").nth(1)?.split(']').next())
        .collect();
    let workers = srv.workers().len();
    assert!(pids.len() <= workers && !pids.is_empty(), "{log}");
    assert_eq!(c.ask("loglevel"), vec!["loglevel info", "OK"]);
}

#[test]
fn reload_starts_a_new_generation() {
    let (mut srv, sock) = start("");
    let mut c = console(&sock);
    let old = srv.workers();
    let answer = c.ask("reload");
    assert!(answer[0].starts_with("OK reload requested"), "{answer:?}");
    srv.wait_stderr("configuration reloaded", Duration::from_secs(30));
    // The new worker 0 has the console now (the old one drains): ask it.
    let generation = new_generation_answers(2, || connect(&sock));
    assert!(generation.is_ok(), "{generation:?}");
    assert!(wait_until(Duration::from_secs(20), || {
        srv.workers().iter().all(|w| !old.contains(w))
    }));
}

#[test]
fn a_tcp_console_on_loopback() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut srv = Axkit::start_with(&conf(&format!("127.0.0.1:{port}")), &[], |d| {
        d.write("www/a.txt", "hello\n");
    });
    srv.wait_stderr(
        &format!("console: listening on 127.0.0.1:{port}"),
        Duration::from_secs(20),
    );
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = Console {
        reader: BufReader::new(s),
    };
    assert_eq!(c.ask("workers").last().unwrap(), "OK 2 worker(s)");
    // No process may listen beside it (SO_REUSEPORT would let one of the
    // same user, the workers' `User`, take sessions).
    {
        use socket2::{Domain, Socket, Type};
        let impostor = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        impostor.set_reuse_address(true).unwrap();
        impostor.set_reuse_port(true).unwrap();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let bound = impostor.bind(&addr.into());
        assert!(bound.is_err(), "an impostor could bind the console's port");
    }
    // Across a reload the port is never free: another local process
    // trying to take it all along never does, and the new worker 0 answers
    // on it once the old one has gone.
    let old = srv.workers();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let taker = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut took = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                took += usize::from(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
            }
            took
        })
    };
    srv.signal(libc::SIGHUP);
    srv.wait_stderr("configuration reloaded", Duration::from_secs(30));
    assert!(wait_until(Duration::from_secs(20), || {
        srv.workers().iter().all(|w| !old.contains(w))
    }));
    let generation = new_generation_answers(2, || {
        let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let took = taker.join().unwrap();
    assert_eq!(
        took, 0,
        "another process took the console's port during the reload"
    );
    assert!(generation.is_ok(), "{generation:?}\n{}", srv.stderr());
}

/// The inode of the unix socket bound at `path`, from /proc/net/unix.
fn unix_socket_inode(path: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let path = path.to_str().unwrap();
    table.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        (fields.len() == 8 && fields[7] == path).then(|| fields[6].to_string())
    })
}

/// With `User nobody`, the unix socket is bound by the master, as root,
/// before any worker runs as nobody: root's, mode 0600, in a directory
/// nobody may not write. A process running as nobody (a CGI script) cannot
/// connect; root can.
#[test]
fn the_unix_console_is_the_masters_and_closed_to_the_workers_user() {
    if !root("`User` is not tested") {
        return;
    }
    let config =
        conf("unix:{dir}/run/console.sock").replace("Workers 2\n", "Workers 2\nUser nobody\n");
    let mut srv = Axkit::start_with(&config, &[], |d| {
        d.write("www/a.txt", "hello\n");
        std::fs::create_dir(d.path().join("run")).unwrap();
        for dir in [d.path().to_path_buf(), d.path().join("run")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    });
    srv.wait_stderr("console: listening on unix:", Duration::from_secs(20));
    let sock = srv.dir.path().join("run/console.sock");
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (0, 0o600),
        "the socket is root's alone"
    );
    // The master holds it: it was bound there, not by a worker.
    let inode = unix_socket_inode(&sock).expect("the socket is listed in /proc/net/unix");
    assert!(
        fd_targets(srv.pid()).contains(&format!("socket:[{inode}]")),
        "the master does not hold the console's socket"
    );
    // Nobody connecting: the socket's mode keeps it out.
    let from_nobody = sock.clone();
    let refused = as_nobody(move || {
        UnixStream::connect(&from_nobody)
            .map(|_| ())
            .map_err(|e| e.kind())
    });
    assert_eq!(refused, Err(std::io::ErrorKind::PermissionDenied));
    // With the mode loosened (a descriptor passed on would do as much),
    // the peer's credentials keep it out: told so, and closed.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let from_nobody = sock.clone();
    let answer = as_nobody(move || {
        let s = UnixStream::connect(&from_nobody).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        let _ = BufReader::new(s).read_line(&mut answer);
        answer
    });
    assert_eq!(answer, "ERR not allowed\n");
    srv.wait_stderr(
        "console: refused a session from uid 65534",
        Duration::from_secs(10),
    );
    // Root is let in.
    let mut c = console(&sock);
    assert_eq!(c.ask("workers").last().unwrap(), "OK 2 worker(s)");
}

/// The unix console's file goes with its socket: a reload that moves it
/// elsewhere removes the file the master made, but not one put at that
/// path since (it is not the server's to remove); a stop removes the one
/// in use.
#[test]
fn a_unix_console_moved_or_stopped_leaves_no_socket_file() {
    let (mut srv, sock) = start("");
    let moved = srv.dir.path().join("moved.sock");
    let mut reloads = 0;
    let mut listen_on = |srv: &mut Axkit, from: &Path, to: &Path| {
        let text = std::fs::read_to_string(&srv.conf).unwrap();
        let text = text.replace(from.to_str().unwrap(), to.to_str().unwrap());
        std::fs::write(&srv.conf, text).unwrap();
        srv.signal(libc::SIGHUP);
        reloads += 1;
        assert!(
            wait_until(Duration::from_secs(30), || srv
                .stderr()
                .matches("configuration reloaded")
                .count()
                == reloads),
            "{}",
            srv.stderr()
        );
        let answered = new_generation_answers(reloads as u64 + 1, || connect(to));
        assert!(answered.is_ok(), "{answered:?}");
    };
    listen_on(&mut srv, &sock, &moved);
    assert!(!sock.exists(), "the old socket file was left");
    // Another socket at the moved console's path: not the server's.
    std::fs::remove_file(&moved).unwrap();
    let other = UnixListener::bind(&moved).unwrap();
    listen_on(&mut srv, &moved, &sock);
    assert!(moved.exists(), "another's socket file was removed");
    srv.stop();
    assert!(!sock.exists(), "the socket file was left at stop");
    assert!(moved.exists());
    drop(other);
}

/// Under `--no-master` the one process binds the console itself, and
/// removes the socket file it made as it exits, but not another file put
/// at that path since. It used to leave its file behind.
#[test]
fn a_unix_console_without_master_leaves_no_socket_file() {
    let (mut srv, sock) = start_with_args("", &["--no-master"]);
    let mut c = console(&sock);
    assert!(c.ask("help").last().unwrap().starts_with("OK"));
    drop(c);
    srv.stop();
    assert!(!sock.exists(), "the socket file was left at exit");
    // Another socket at the console's path: not the server's.
    let (mut srv, sock) = start_with_args("", &["--no-master"]);
    std::fs::remove_file(&sock).unwrap();
    let other = UnixListener::bind(&sock).unwrap();
    srv.stop();
    assert!(sock.exists(), "another's socket file was removed");
    drop(other);
}

/// A binary upgrade hands the console's socket to the new master: once
/// the old one has drained and gone, the new master's worker 0 answers on
/// the same path, whose file the old master left in place; the new
/// master, alone then, removes it when it stops.
#[test]
fn a_binary_upgrade_hands_the_console_on() {
    let (mut srv, sock) = start("PidFile {dir}/axkit.pid");
    let pid_file = srv.dir.path().join("axkit.pid");
    let old_workers = srv.workers();
    let new = upgrade(&mut srv, &pid_file);
    assert!(wait_until(Duration::from_secs(20), || {
        let workers = children_of(new.0);
        workers.len() == 2 && workers.iter().all(|&w| worker_ready(w))
    }));
    srv.signal(libc::SIGQUIT);
    assert!(srv.wait_exit(Duration::from_secs(20)).is_some());
    assert!(wait_until(Duration::from_secs(20), || old_workers
        .iter()
        .all(|&w| !alive(w))));
    assert!(sock.exists(), "the old master removed the new one's socket");
    let workers = console(&sock).ask("workers");
    assert_eq!(workers.last().unwrap(), "OK 2 worker(s)", "{workers:?}");
    let listed: Vec<i32> = workers[1..3]
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let running = children_of(new.0);
    assert!(listed.iter().all(|w| running.contains(w)), "{workers:?}");
    signal(new.0, libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(20), || !sock.exists()),
        "the new master left the socket file at stop"
    );
}

/// A unix console in a directory the workers' `User` may write (world-
/// writable, nobody's own, or beneath one of those) is refused by
/// `--check`: a worker or a CGI script could put its own socket at the
/// path. A sticky directory, whose entries only their owners replace, is
/// accepted.
#[test]
fn check_refuses_a_unix_console_the_workers_user_could_replace() {
    if !root("`User` is not tested") {
        return;
    }
    let dir = TempDir::new("console-dir");
    let made = |rel: &str, mode: u32, owner: Option<u32>| {
        let path = dir.path().join(rel);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
        }
        path
    };
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = made("open", 0o777, None);
    let nobodys = made("nobodys", 0o755, Some(65534));
    made("open/inner", 0o755, None);
    let sticky = made("sticky", 0o1777, None);
    made("www", 0o755, None);
    let check = |sock: &Path| {
        let text = conf(&format!("unix:{}", sock.display()))
            .replace("Workers 2\n", "Workers 2\nUser nobody\n");
        check_file(&dir.write("axkit.conf", config_text(&dir, &text)))
    };
    for (sock, culprit, how) in [
        (
            open.join("console.sock"),
            &open,
            "is writable by every user",
        ),
        (nobodys.join("console.sock"), &nobodys, "is owned by"),
        (
            open.join("inner/console.sock"),
            &open,
            "is writable by every user",
        ),
    ] {
        let (ok, err) = check(&sock);
        assert!(!ok, "{}: {err}", sock.display());
        assert!(
            err.contains(&format!("`console` listens on unix:{}", sock.display()))
                && err.contains(&format!("{} {how}", culprit.display()))
                && err.contains("the workers' `User nobody`"),
            "{}: {err}",
            sock.display()
        );
    }
    let (ok, err) = check(&sticky.join("console.sock"));
    assert!(ok, "{err}");
}

/// Sixteen console sessions on `sock`, the most there may be, each
/// answered once (so counted).
fn sixteen_sessions(sock: &Path) -> Vec<Console<UnixStream>> {
    (0..16)
        .map(|_| {
            let mut c = console(sock);
            assert_eq!(c.ask("loglevel"), vec!["loglevel notice", "OK"]);
            c
        })
        .collect()
}

/// What a session ended by the server is told: all it reads to the end.
fn farewell(c: &mut Console<UnixStream>) -> String {
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut c.reader, &mut rest);
    rest
}

/// What a session ended for a newcomer is told.
const EVICTED: &str = "ERR a new session needed the room (16 at most); closing\n";

/// Idle sessions end after `ConsoleTimeout`: each of sixteen left open is
/// told why and closed.
#[test]
fn idle_sessions_time_out() {
    let (_srv, sock) = start("ConsoleTimeout 3s");
    // Sixteen sessions, each answered once (so counted), then silent.
    let mut held = sixteen_sessions(&sock);
    // Each silent session is told why and closed.
    for c in &mut held {
        assert_eq!(farewell(c), "ERR idle for 3s (ConsoleTimeout); closing\n");
    }
    let mut c = console(&sock);
    assert_eq!(c.ask("workers").last().unwrap(), "OK 2 worker(s)");
}

/// Sixteen sessions kept busy (a client sending `help` for ever) do not
/// keep the operator out: a newcomer ends the oldest; and a session ends
/// after `ConsoleLifetime`, however busy.
#[test]
fn busy_sessions_neither_lock_the_operator_out_nor_last() {
    let (_srv, sock) = start("ConsoleLifetime 3s");
    let mut held = sixteen_sessions(&sock);
    let mut operator = console(&sock);
    assert_eq!(
        operator.ask("workers").last().unwrap(),
        "OK 2 worker(s)",
        "the 17th session was refused"
    );
    assert_eq!(farewell(&mut held[0]), EVICTED);
    // The others go on.
    assert_eq!(held[1].ask("loglevel"), vec!["loglevel notice", "OK"]);
    drop(held);

    let mut busy = console(&sock);
    let mut last = Vec::new();
    let ended = wait_until(Duration::from_secs(20), || {
        last = busy.try_ask("help").unwrap_or_else(|_| {
            // Closed before the command went: its farewell came first.
            farewell(&mut busy).lines().map(str::to_string).collect()
        });
        last.last().is_some_and(|l| l.starts_with("ERR"))
    });
    assert!(ended, "a busy session lasted: {last:?}");
    assert_eq!(
        last.last().unwrap(),
        "ERR open for 3s (ConsoleLifetime); closing"
    );
}

/// The server started as nobody, so that two users may use its console:
/// root (an operator) and nobody (say, an application of the server's user,
/// compromised). Nobody connecting in a loop ends only its own sessions:
/// the operator's, older than all of them, goes on.
#[test]
fn a_user_connecting_in_a_loop_ends_only_its_own_sessions() {
    if !root("a server started as another user is not tested") {
        return;
    }
    let dir = TempDir::new("console-users");
    dir.write("www/a.txt", "hello\n");
    // Where nobody may make the socket.
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let path = dir.write(
        "axkit.conf",
        config_text(&dir, &conf("unix:{dir}/console.sock")),
    );
    let mut command = Command::new(BIN);
    command.arg("-c").arg(&path).uid(65534).gid(65534);
    let mut srv = Axkit::launch(command, dir, path);
    srv.wait_stderr("console: listening on unix:", Duration::from_secs(20));
    let sock = srv.dir.path().join("console.sock");
    let mut operator = console(&sock);
    assert_eq!(operator.ask("loglevel"), vec!["loglevel notice", "OK"]);
    let from_nobody = sock.clone();
    let mut looping = as_nobody(move || {
        let mut held = sixteen_sessions(&from_nobody);
        held.extend(sixteen_sessions(&from_nobody));
        held
    });
    assert_eq!(
        operator.ask("workers").last().unwrap(),
        "OK 2 worker(s)",
        "nobody's sessions ended the operator's"
    );
    assert_eq!(farewell(&mut looping[0]), EVICTED);
    // Nobody's newest fifteen go on.
    assert_eq!(looping[31].ask("loglevel"), vec!["loglevel notice", "OK"]);
}

/// A browser's POST to the console's port (a web page may send one
/// without asking): the session ends at its request line, so the lines of
/// its body never run.
#[test]
fn an_http_request_ends_the_session_before_its_body_runs() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut srv = Axkit::start_with(&conf(&format!("127.0.0.1:{port}")), &[], |d| {
        d.write("www/a.txt", "hello\n");
    });
    srv.wait_stderr(
        &format!("console: listening on 127.0.0.1:{port}"),
        Duration::from_secs(20),
    );
    let body = "loglevel info\nreload\n";
    for head in [
        format!("POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"),
        // No request line of the usual form: the Host field still ends it.
        format!("workers\nHost: 127.0.0.1:{port}\r\n"),
    ] {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = format!(
            "{head}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes()).unwrap();
        let (bytes, ended) = read_to_end_within(&mut s, Duration::from_secs(10));
        // Closed, or reset: the server leaves the rest unread.
        assert!(!matches!(ended, Ended::TimedOut));
        let answer = lossy(&bytes);
        assert!(!answer.contains("reload"), "{answer}");
    }
    srv.wait_stderr_line(
        &[
            "console: closed a session that sent an HTTP request",
            "\"POST / HTTP/1.1\"",
        ],
        Duration::from_secs(10),
    );
    srv.wait_stderr_line(
        &[
            "console: closed a session that sent an HTTP request",
            "\"Host: 127.0.0.1",
        ],
        Duration::from_secs(10),
    );
    // A session after them: LogLevel is the config's, and nothing reloaded.
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = Console {
        reader: BufReader::new(s),
    };
    assert_eq!(c.ask("loglevel"), vec!["loglevel notice", "OK"]);
    assert_eq!(c.ask("config")[0], "generation 1 (newest running: 1)");
    let log = srv.stderr();
    assert!(!log.contains("reload requested"), "{log}");
}

#[test]
fn check_refuses_a_console_beyond_loopback() {
    let dir = TempDir::new("console-check");
    for (listen, why) in [
        ("0.0.0.0:9000", "not a loopback address"),
        ("192.0.2.1:9000", "not a loopback address"),
        ("unix:", "expected a path"),
    ] {
        let path = dir.write("axkit.conf", config_text(&dir, &conf(listen)));
        let out = Command::new(BIN)
            .arg("--check")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{listen}: {err}");
        assert!(
            err.contains("ConsoleListen") && err.contains(why),
            "{listen}: {err}"
        );
    }
}
