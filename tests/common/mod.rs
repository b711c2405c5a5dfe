//! Shared test support: start the real `axkit` binary on an ephemeral port
//! with a config written to a temporary directory, talk to it over raw
//! TCP, and wait on what can be observed of it (its log, `/proc`, the
//! state of a socket) rather than on the clock.
//!
//! Helpers only one family of tests uses live beside this file
//! (`cgi.rs`, `lua.rs`, `process.rs`, `protocol.rs`, `static_files.rs`,
//! `services.rs`: PostgreSQL and Redis servers a test starts, skipped
//! when missing unless `AXKIT_REQUIRE_SERVICES=1`, and `tls.rs`: an
//! `openssl s_server` with a test CA), each included by its family's files
//! with `#[path]`.
//!
//! The greeting-server example's tests include this file too (with
//! `#[path]`), so it uses nothing that package lacks: no `libc` crate, and
//! no `CARGO_BIN_EXE_axkit` there (`Axkit::start_bin` takes the binary).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `axkit` binary under test; empty in a package that does not build it
/// (use `Axkit::start_bin` there).
pub const BIN: &str = match option_env!("CARGO_BIN_EXE_axkit") {
    Some(bin) => bin,
    None => "",
};

// kill(2) and setrlimit(2), declared here rather than taken from the
// `libc` crate so that packages without that dependency can include this
// file.
extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
    fn setrlimit(resource: i32, limit: *const RLimit) -> i32;
    fn prctl(option: i32, ...) -> i32;
}

#[repr(C)]
struct RLimit {
    cur: u64,
    max: u64,
}

const RLIMIT_NOFILE: i32 = 7;

/// Run `command` with an open-file limit (soft and hard) of `n`.
pub fn limit_open_files(command: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    let limit = RLimit { cur: n, max: n };
    // SAFETY: the hook runs in the child between fork and exec, and calls
    // only setrlimit, which is async-signal-safe, on memory it owns.
    unsafe {
        command.pre_exec(move || {
            if setrlimit(RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// One instruction of a classic BPF program (`struct sock_filter`).
#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Run `command`, and every process it starts, where the `openat2` system
/// call fails with ENOSYS, as under a kernel before 5.6 or a seccomp
/// profile that does not know the call: a filter that answers ENOSYS to
/// that one call number and lets every other through.
pub fn without_openat2(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    const SYS_OPENAT2: u32 = 437;
    const ENOSYS: u32 = 38;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const PR_SET_NO_NEW_PRIVS: i32 = 38;
    const PR_SET_SECCOMP: i32 = 22;
    const SECCOMP_MODE_FILTER: u64 = 2;
    let insn = |code, jt, jf, k| SockFilter { code, jt, jf, k };
    let program = [
        // The call number (offset 0 of `struct seccomp_data`).
        insn(0x20, 0, 0, 0),
        // openat2: the next instruction; anything else: the one after.
        insn(0x15, 0, 1, SYS_OPENAT2),
        insn(0x06, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
        insn(0x06, 0, 0, SECCOMP_RET_ALLOW),
    ];
    // SAFETY: the hook runs in the child between fork and exec and makes
    // two prctl calls (async-signal-safe) on memory the closure owns.
    unsafe {
        command.pre_exec(move || {
            let prog = SockFprog {
                len: program.len() as u16,
                filter: program.as_ptr(),
            };
            if prctl(PR_SET_NO_NEW_PRIVS, 1u64, 0u64, 0u64, 0u64) != 0
                || prctl(
                    PR_SET_SECCOMP,
                    SECCOMP_MODE_FILTER,
                    &prog as *const SockFprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

/// Send signal `sig` to process `pid` (one this test started).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        kill(pid, sig);
    }
}

/// A field of `/proc/PID/status` given in kB (`VmRSS`, `RssAnon`, …).
pub fn status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Poll `cond` every 20 ms until it holds or `limit` passes (then once
/// more); whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "axkit-test-{}-{}-{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running axkit. `{dir}` in the config text is replaced by the scratch
/// directory. Stopped (SIGKILL) on drop.
pub struct Axkit {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub conf: PathBuf,
    stderr: mpsc::Receiver<String>,
    pub stderr_lines: Vec<String>,
}

pub fn config_text(dir: &TempDir, text: &str) -> String {
    text.replace("{dir}", dir.path().to_str().unwrap())
}

impl Axkit {
    /// Start with a master and `Workers 2` unless the config says otherwise.
    pub fn start(config: &str) -> Axkit {
        Axkit::start_with(config, &[], |_| {})
    }

    /// Start a single process (`--no-master`).
    pub fn start_single(config: &str) -> Axkit {
        Axkit::start_single_with(config, |_| {})
    }

    /// Start a single process (`--no-master`) after `prepare` has filled the
    /// scratch directory.
    pub fn start_single_with(config: &str, prepare: impl FnOnce(&TempDir)) -> Axkit {
        Axkit::start_with(config, &["--no-master"], prepare)
    }

    /// Start with extra command-line `args`, after `prepare` has filled the
    /// scratch directory.
    pub fn start_with(config: &str, args: &[&str], prepare: impl FnOnce(&TempDir)) -> Axkit {
        Axkit::start_bin(BIN, config, args, prepare)
    }

    /// Like `start_with`, but running the binary at `bin` (an axkit built
    /// with other plugins, say).
    pub fn start_bin(
        bin: &str,
        config: &str,
        args: &[&str],
        prepare: impl FnOnce(&TempDir),
    ) -> Axkit {
        Axkit::start_command(bin, config, args, prepare, |_| {})
    }

    /// A single process (`--no-master`) whose open-file limit is `n`,
    /// after `prepare` has filled the scratch directory.
    pub fn start_single_with_open_files(
        config: &str,
        n: u64,
        prepare: impl FnOnce(&TempDir),
    ) -> Axkit {
        Axkit::start_command(BIN, config, &["--no-master"], prepare, |c| {
            limit_open_files(c, n)
        })
    }

    /// Start with a master, as `start_with` does, where `openat2` cannot be
    /// called (`without_openat2`).
    pub fn start_without_openat2(config: &str, prepare: impl FnOnce(&TempDir)) -> Axkit {
        Axkit::start_command(BIN, config, &[], prepare, without_openat2)
    }

    /// Run `bin` as `start_bin` does, its command set up by `setup` too.
    fn start_command(
        bin: &str,
        config: &str,
        args: &[&str],
        prepare: impl FnOnce(&TempDir),
        setup: impl FnOnce(&mut Command),
    ) -> Axkit {
        let dir = TempDir::new("srv");
        prepare(&dir);
        let conf = dir.write("axkit.conf", config_text(&dir, config));
        let mut command = Command::new(bin);
        command.args(args).arg("-c").arg(&conf);
        setup(&mut command);
        Axkit::launch(command, dir, conf)
    }

    /// Run `command` (an axkit with its `-c conf`, set up as the test
    /// needs: environment, inherited descriptors) and wait until it
    /// listens. `dir` is its scratch directory.
    pub fn launch(mut command: Command, dir: TempDir, conf: PathBuf) -> Axkit {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn axkit");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        // Lossy: a log line that is not UTF-8 must not end the reader (and
        // leave the server writing into a pipe nobody reads).
        std::thread::spawn(move || {
            let mut err = BufReader::new(err);
            let mut line = Vec::new();
            while matches!(err.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line);
                if tx
                    .send(text.trim_end_matches(['\r', '\n']).to_string())
                    .is_err()
                {
                    break;
                }
                line.clear();
            }
        });
        let (otx, orx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = otx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            match orx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        break rest.split('/').next().unwrap().parse().unwrap();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let errs: Vec<String> = rx.try_iter().collect();
                    panic!("axkit did not start; stderr:\n{}", errs.join("\n"));
                }
            }
        };
        Axkit {
            child,
            addr,
            dir,
            conf,
            stderr: rx,
            stderr_lines: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        signal(self.pid(), sig);
    }

    /// Collect stderr lines seen so far.
    pub fn stderr(&mut self) -> String {
        self.stderr_lines.extend(self.stderr.try_iter());
        self.stderr_lines.join("\n")
    }

    /// Wait until stderr contains `needle` (or time out and fail).
    pub fn wait_stderr(&mut self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.stderr();
            if all.contains(needle) {
                return all;
            }
            match self.stderr.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => self.stderr_lines.push(line),
                Err(_) if Instant::now() > deadline => {
                    panic!("never saw {needle:?} in stderr:\n{all}")
                }
                Err(_) => {}
            }
        }
    }

    /// Wait until one stderr line contains every one of `needles` (or time
    /// out and fail); returns that line.
    pub fn wait_stderr_line(&mut self, needles: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            self.stderr_lines.extend(self.stderr.try_iter());
            if let Some(line) = self
                .stderr_lines
                .iter()
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return line.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no stderr line with {needles:?}:\n{}",
                    self.stderr_lines.join("\n")
                );
            }
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(50)) {
                self.stderr_lines.push(line);
            }
        }
    }

    /// Make the server write a line to stderr and wait for it: every line
    /// written to that pipe before (by any of its processes) is then in
    /// `stderr_lines`, so that a check for a line that must *not* be there
    /// cannot pass only because that line is still on its way. Returns
    /// stderr so far.
    ///
    /// The line is the one for a bad request (two `Host` fields), logged
    /// at info with the client's address: the server must run at
    /// `LogLevel LOGINFO` or below, logging to stderr.
    pub fn sync_stderr(&mut self) -> String {
        let mut s = self.connect();
        let me = s.local_addr().unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            .unwrap();
        let _ = read_to_end_within(&mut s, Duration::from_secs(10));
        self.wait_stderr_line(&[&format!("{me}: bad request")], Duration::from_secs(10));
        self.stderr_lines.join("\n")
    }

    /// Stop the server with SIGTERM and return everything it wrote to
    /// stderr, read to the end of the pipe: a check that a line is *not*
    /// there is then final, however late the line would have come.
    pub fn stop(&mut self) -> String {
        self.signal(SIGTERM);
        let status = self.wait_exit(Duration::from_secs(20));
        assert!(status.is_some(), "axkit did not exit on SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self
                .stderr
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.stderr_lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stderr still open 20 s after the server exited")
                }
            }
        }
        self.stderr_lines.join("\n")
    }

    /// Wait for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Send raw bytes on a new connection; read until the server closes
    /// (or 10 s pass). Returns everything read and whether it closed.
    pub fn raw(&self, request: &[u8]) -> (Vec<u8>, bool) {
        let (bytes, ended) = self.exchange(request);
        (bytes, !matches!(ended, Ended::TimedOut))
    }

    /// Like `raw`, but saying how the connection ended.
    pub fn exchange(&self, request: &[u8]) -> (Vec<u8>, Ended) {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_to_end_within(&mut s, Duration::from_secs(10))
    }

    /// One request on a new connection; parsed response.
    pub fn get(&self, path: &str) -> Response {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let started = Instant::now();
        let (bytes, ended) = self.exchange(req.as_bytes());
        parse_response(&bytes)
            .unwrap_or_else(|| self.no_response(&format!("GET {path}"), &bytes, &ended, started))
    }

    /// Fail a test whose request got no complete response, with what tells
    /// why: the bytes that came, how the connection ended and when, whether
    /// the server is still running, and its stderr.
    pub fn no_response(&self, what: &str, bytes: &[u8], ended: &Ended, started: Instant) -> ! {
        let elapsed = started.elapsed();
        // Log lines of a dying server may still be on their way.
        std::thread::sleep(Duration::from_millis(200));
        let log: Vec<String> = self.stderr.try_iter().collect();
        panic!(
            "no response to {what}: {:?}\nconnection: {ended:?} after {elapsed:?}\n\
             server (pid {}): {}\nstderr (partly):\n{}\n{}",
            String::from_utf8_lossy(bytes),
            self.pid(),
            process_state(self.pid()),
            self.stderr_lines.join("\n"),
            log.join("\n")
        )
    }

    /// The worker processes (children of the master).
    pub fn workers(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    /// The worker serving the connection `client` made (none before one
    /// has accepted it).
    pub fn worker_serving(&self, client: &TcpStream) -> Option<i32> {
        self.server_end(client).map(|(pid, _)| pid)
    }

    /// The process holding the server's end of `client`'s connection (a
    /// worker, or the server itself under `--no-master`) and its
    /// descriptor there.
    pub fn server_end(&self, client: &TcpStream) -> Option<(i32, i32)> {
        let (local, remote) = (
            proc_net_tcp_addr(client.peer_addr().unwrap()),
            proc_net_tcp_addr(client.local_addr().unwrap()),
        );
        let row = proc_net_tcp()
            .into_iter()
            .find(|f| f[1] == local && f[2] == remote)?;
        let socket = format!("socket:[{}]", row[9]);
        let mut processes = self.workers();
        processes.push(self.pid());
        processes.into_iter().find_map(|pid| {
            let fd = fd_links(pid)
                .into_iter()
                .find(|(_, target)| *target == socket)?
                .0;
            Some((pid, fd))
        })
    }

    /// Whether the server has parked `client`'s idle connection: its
    /// socket waits in a worker's parking epoll, registered for one event
    /// (`EPOLLONESHOT`, which tokio's reactor never uses), instead of in
    /// tokio's reactor with a task.
    pub fn is_parked(&self, client: &TcpStream) -> bool {
        const EPOLLONESHOT: u32 = 1 << 30;
        let Some((pid, fd)) = self.server_end(client) else {
            return false;
        };
        fd_links(pid)
            .into_iter()
            .filter(|(_, target)| target == "anon_inode:[eventpoll]")
            .any(|(epoll, _)| {
                let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epoll}"))
                    .unwrap_or_default();
                info.lines().any(|line| {
                    // "tfd:        9 events:  40002019 data: ..."
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.len() >= 4
                        && fields[0] == "tfd:"
                        && fields[1] == fd.to_string()
                        && u32::from_str_radix(fields[3], 16).is_ok_and(|e| e & EPOLLONESHOT != 0)
                })
            })
    }
}

impl Drop for Axkit {
    fn drop(&mut self) {
        let workers = children_of(self.pid());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for w in workers {
            signal(w, SIGKILL);
        }
    }
}

pub fn children_of(pid: i32) -> Vec<i32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Wait (up to 10 s) until `path` exists and has a line satisfying `pred`;
/// return the whole file. Log lines are written after the response is
/// sent, by a writer thread, so a test that has its response may still
/// have to wait a moment for the line.
pub fn wait_for_line(path: &Path, pred: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let found = wait_until(Duration::from_secs(10), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().any(&pred)
    });
    assert!(found, "no such line in {}:\n{text}", path.display());
    text
}

/// Whether process `pid` (a child of this one, or of one of its children)
/// runs: a zombie has a `/proc` entry but runs no more.
pub fn alive(pid: i32) -> bool {
    process_state(pid).starts_with("running")
}

/// What each descriptor of process `pid` refers to: a path (as it is
/// named now, after a rename), `socket:[INODE]`, `pipe:[INODE]`...
pub fn fd_targets(pid: i32) -> Vec<String> {
    fd_links(pid)
        .into_iter()
        .map(|(_, target)| target)
        .collect()
}

/// The descriptors open in process `pid`, each with what it links to.
pub fn fd_links(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        Some((fd, target.to_string_lossy().into_owned()))
    })
    .collect()
}

/// Socket inodes open in process `pid`.
pub fn socket_fds(pid: i32) -> Vec<String> {
    fd_targets(pid)
        .into_iter()
        .filter(|l| l.starts_with("socket:"))
        .collect()
}

/// `addr` as `/proc/net/tcp` shows it (IPv4 only).
pub fn proc_net_tcp_addr(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only: {addr}")
    };
    format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    )
}

/// The `/proc/net/tcp` rows (fields split on whitespace), header skipped.
pub fn proc_net_tcp() -> Vec<Vec<String>> {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Whether the server has read everything sent on `s` so far: the bytes
/// were acknowledged (none left in `s`'s send queue) and none wait in the
/// receive queue of the server's end, whether it was accepted yet or not.
pub fn server_has_read(s: &TcpStream) -> bool {
    let (me, peer) = (
        proc_net_tcp_addr(s.local_addr().unwrap()),
        proc_net_tcp_addr(s.peer_addr().unwrap()),
    );
    // Field 4 is `tx_queue:rx_queue`, in hex.
    let queue = |row: &Vec<String>, rx: bool| {
        let (tx, rxq) = row[4].split_once(':').unwrap();
        u64::from_str_radix(if rx { rxq } else { tx }, 16).unwrap()
    };
    let rows = proc_net_tcp();
    let sent = rows
        .iter()
        .find(|r| r[1] == me && r[2] == peer)
        .is_some_and(|r| queue(r, false) == 0);
    // No server end left: it was closed, so nothing waits in it.
    let read = rows
        .iter()
        .find(|r| r[1] == peer && r[2] == me)
        .is_none_or(|r| queue(r, true) == 0);
    sent && read
}

/// Wait (up to 10 s) until the server has read everything sent on `s`:
/// a request sent there is in the server's hands, not in a socket buffer.
pub fn wait_server_read(s: &TcpStream) {
    assert!(
        wait_until(Duration::from_secs(10), || server_has_read(s)),
        "the server did not read what was sent on {:?}",
        s.local_addr()
    );
}

/// Read until EOF, reset or timeout. The bool says whether the peer closed.
pub fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let (out, ended) = read_to_end_within(s, limit);
    (out, !matches!(ended, Ended::TimedOut))
}

/// Read one whole response from a kept-alive connection (under the
/// stream's own read timeout): `Ok(None)` if the server closed first, the
/// error and what came before it if a read failed.
pub fn read_one_response(s: &mut TcpStream) -> Result<Option<Response>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("{e} after {:?}", lossy(&buf))),
        }
        if let Some(r) = parse_response(&buf) {
            return Ok(Some(r));
        }
    }
}

/// How reading a connection to its end stopped.
#[derive(Debug)]
pub enum Ended {
    /// The peer closed it.
    Closed,
    /// A read failed: a reset (the server closed with bytes of ours
    /// unread, or its process died with them) or another error.
    Failed(std::io::Error),
    /// The time limit passed first.
    TimedOut,
}

/// The server closed `s` (EOF or reset) within `limit`, without sending
/// anything.
#[track_caller]
pub fn assert_closed(s: &mut TcpStream, limit: Duration, what: &str) {
    let (bytes, ended) = read_to_end_within(s, limit);
    assert!(
        !matches!(ended, Ended::TimedOut),
        "{what} still open after {limit:?}"
    );
    assert!(bytes.is_empty(), "{what} got bytes: {:?}", lossy(&bytes));
}

/// Read until EOF, an error or `limit`; everything read and how it ended.
pub fn read_to_end_within(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, Ended) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (out, Ended::TimedOut);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (out, Ended::Closed),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return (out, Ended::TimedOut)
            }
            // A signal is no end of the connection.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Ended::Failed(e)),
        }
    }
}

/// Whether process `pid` (a child of this one, so never reaped behind our
/// back) still runs; if it ended, how (from the wait status Linux keeps in
/// `/proc/PID/stat` for a zombie).
pub fn process_state(pid: i32) -> String {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return "gone (already reaped)".to_string();
    };
    // The command name in parentheses may hold spaces: fields start after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    match fields.first() {
        Some(&"Z") => {
            let status: i32 = fields.last().and_then(|s| s.parse().ok()).unwrap_or(-1);
            match status & 0x7f {
                0 => format!("exited with status {}", (status >> 8) & 0xff),
                sig => format!("killed by signal {sig}"),
            }
        }
        Some(state) => format!("running (state {state})"),
        None => format!("unknown ({stat:?})"),
    }
}

/// The CPU time process `pid` has used so far (user and system), in clock
/// ticks (`USER_HZ`, 100 a second on Linux): a process that spins shows
/// about as many ticks as the wall clock, one that waits shows almost none.
pub fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name: state is field 3, utime and stime 14 and 15.
    let (_, rest) = stat.rsplit_once(')').unwrap();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes of the whole response on the wire.
    pub len: usize,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Parse one response from the front of `bytes` (Content-Length, chunked,
/// or to the end). `None` if incomplete. HEAD responses: use
/// `parse_head_response`.
pub fn parse_response(bytes: &[u8]) -> Option<Response> {
    parse_response_inner(bytes, false)
}

pub fn parse_head_response(bytes: &[u8]) -> Option<Response> {
    parse_response_inner(bytes, true)
}

fn parse_response_inner(bytes: &[u8], head_only: bool) -> Option<Response> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        })
        .collect();
    let mut r = Response {
        status,
        headers,
        body: Vec::new(),
        len: end,
    };
    if head_only || status == 304 || status == 204 || (100..200).contains(&status) {
        return Some(r);
    }
    let rest = &bytes[end..];
    if let Some(len) = r.header("Content-Length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        r.body = rest[..len].to_vec();
        r.len = end + len;
    } else if r
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let mut pos = 0;
        loop {
            let line_end = rest[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[pos..line_end])
                    .ok()?
                    .split(';')
                    .next()?,
                16,
            )
            .ok()?;
            pos = line_end + 2;
            if size == 0 {
                let trailer_end = rest[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
                pos = trailer_end + 2;
                break;
            }
            if rest.len() < pos + size + 2 {
                return None;
            }
            r.body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
        r.len = end + pos;
    } else {
        r.body = rest.to_vec();
        r.len = bytes.len();
    }
    Some(r)
}

/// Parse every response in `bytes`, in order (pipelining).
pub fn parse_all(mut bytes: &[u8]) -> Vec<Response> {
    let mut out = Vec::new();
    while let Some(r) = parse_response(bytes) {
        bytes = &bytes[r.len..];
        out.push(r);
    }
    out
}

/// `method path` with extra header lines (each ending in `\r\n`) on a new
/// connection that closes after the response; HEAD responses are parsed as
/// bodiless. Panics if no complete response comes back.
pub fn request(srv: &Axkit, method: &str, path: &str, headers: &str) -> Response {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    );
    let started = Instant::now();
    let (bytes, ended) = srv.exchange(req.as_bytes());
    let parsed = if method == "HEAD" {
        parse_head_response(&bytes)
    } else {
        parse_response(&bytes)
    };
    parsed.unwrap_or_else(|| srv.no_response(&format!("{method} {path}"), &bytes, &ended, started))
}

/// `GET path` with extra header lines, as `request` does.
pub fn get(srv: &Axkit, path: &str, headers: &str) -> Response {
    request(srv, "GET", path, headers)
}

/// The bytes of `GET path` on a connection kept alive.
pub fn keep_alive_get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

/// `axkit --check -c conf`: whether the config passed, and what it
/// printed (stderr, then stdout).
pub fn check_file(conf: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("--check")
        .arg("-c")
        .arg(conf)
        .output()
        .unwrap();
    (
        out.status.success(),
        lossy(&out.stderr) + &lossy(&out.stdout),
    )
}

/// Run `axkit --no-master -c conf`, which must fail to start; returns its
/// stderr.
pub fn refused_at_start(conf: &Path) -> String {
    let out = Command::new(BIN)
        .args(["--no-master", "-c"])
        .arg(conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
pub const MTIME: u64 = 784_111_777;

/// Set the modification time of `path` to [`MTIME`].
pub fn set_mtime(path: &Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(MTIME))
        .unwrap();
}

/// `b` as text, invalid UTF-8 replaced.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `b` (a whole response) as text, invalid UTF-8 replaced, with its `Date`
/// value replaced by `DATE`, to be compared byte for byte.
pub fn lossy_undated(b: &[u8]) -> String {
    lossy(b)
        .split_inclusive("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("date: ") {
                "Date: DATE\r\n"
            } else {
                l
            }
        })
        .collect()
}

/// The status of the first response in `bytes`.
pub fn status_of(bytes: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(bytes);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A minimal static-file config on an ephemeral port, docroot `{dir}/www`.
pub const STATIC_CONF: &str = "\
Workers 1
<Server>
    Listen 127.0.0.1:0
    DocumentRoot {dir}/www
    DirectoryIndex index.html
    Plugin uri_to_file
    Plugin fast_mime_map
    Plugin serve_file
</Server>
";

/// xorshift64*: seeded, reproducible randomness without a dependency, for
/// the garbage-input and mutated-config tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
