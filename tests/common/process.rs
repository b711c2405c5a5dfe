//! Helpers for the process-model tests (`process_*.rs`, and the console's
//! binary upgrade): a two-worker static-file config, worker readiness from
//! `/proc`, clients that fail with an `Err` rather than a panic, slow
//! downloads, the listening socket's inode, the PidFile, and the new
//! master of a binary upgrade killed when a test ends.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;

/// Two workers serving `{dir}/www`; `global` and `server` are extra lines.
pub fn conf(global: &str, server: &str) -> String {
    format!(
        "Workers 2\n{global}\n<Server>\n    Listen 127.0.0.1:0\n    DocumentRoot {{dir}}/www\n    \
         DirectoryIndex index.html\n    Plugin uri_to_file\n    Plugin fast_mime_map\n    Plugin serve_file\n\
         {server}\n</Server>\n"
    )
}

/// `index.html` and `a.txt` in `{dir}/www`.
pub fn www(dir: &TempDir) {
    dir.write("www/index.html", "hello\n");
    dir.write("www/a.txt", "aaa\n");
}

/// Whether worker `pid` has said `ready`: it installs its signal handlers
/// (SIGUSR1 caught) just before, and after reading its config. Only once
/// it runs as a worker (`AXKIT_WORKER` in its environment): a child the
/// master has just forked, not yet a worker, has the master's handlers,
/// and its descriptors.
pub fn worker_ready(pid: i32) -> bool {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    if !environ
        .split(|&b| b == 0)
        .any(|v| v.starts_with(b"AXKIT_WORKER="))
    {
        return false;
    }
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
pub fn replace_every_worker(srv: &mut Axkit, count: usize) {
    for victim in srv.workers() {
        signal(victim, libc::SIGKILL);
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

/// SIGTERM the master; it must exit successfully within 15 s.
pub fn terminate_within_15s(srv: &mut Axkit) {
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
pub fn try_get(addr: SocketAddr, path: &str) -> Result<Response, String> {
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

/// Read from `s` until `want` more bytes came or `limit` passed.
pub fn read_some(s: &mut TcpStream, want: usize, limit: Duration) -> Vec<u8> {
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
pub fn start_download(addr: SocketAddr, path: &str, first: usize) -> (TcpStream, usize, usize) {
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
pub const BIG: usize = 24 << 20;

/// `www`, and `BIG` bytes in `{dir}/www/big.bin`.
pub fn big_file(dir: &TempDir) {
    www(dir);
    let data: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    dir.write("www/big.bin", data);
}

/// The `socket:[INODE]` of the socket listening on `addr` (IPv4).
pub fn listening_inode(addr: SocketAddr) -> String {
    let want = proc_net_tcp_addr(addr);
    let rows = proc_net_tcp();
    let Some(row) = rows.iter().find(|f| f[1] == want && f[3] == "0A") else {
        panic!("{addr} not listening:\n{rows:?}");
    };
    format!("socket:[{}]", row[9])
}

/// Whether process `pid` holds the socket `inode` (from `listening_inode`).
pub fn holds_socket(pid: i32, inode: &str) -> bool {
    socket_fds(pid).iter().any(|s| s == inode)
}

/// The parent of process `pid` (`PPid` in `/proc/PID/status`), if it is
/// still there.
pub fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// Whether process `pid` is gone, reaped: not even a zombie is left.
pub fn reaped(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid in the PidFile at `path`, if there is one.
pub fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// SIGUSR2 to `srv`, a binary upgrade, and wait (30 s at most) for the
/// new master to write its pid to the PidFile at `pid_file`: it serves
/// then. The new master, killed with its workers when the test ends.
pub fn upgrade(srv: &mut Axkit, pid_file: &std::path::Path) -> Reap {
    let old = srv.pid();
    srv.signal(libc::SIGUSR2);
    let mut new = 0;
    assert!(
        wait_until(Duration::from_secs(30), || {
            new = read_pid(pid_file).unwrap_or(0);
            new != 0 && new != old
        }),
        "no new master:\n{}",
        srv.stderr()
    );
    Reap(new)
}

/// Kills the new master of a binary upgrade and its workers when the test
/// ends, however.
pub struct Reap(pub i32);

impl Drop for Reap {
    fn drop(&mut self) {
        let workers = children_of(self.0);
        signal(self.0, libc::SIGKILL);
        for w in workers {
            signal(w, libc::SIGKILL);
        }
    }
}
