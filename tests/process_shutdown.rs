//! Stopping, end to end with the real binary: SIGTERM drains in-flight
//! responses and exits 0 while new connections are refused, SIGINT does
//! the same, `ShutdownTimeout` bounds the drain, a worker still starting
//! does not hold the master up, idle keep-alive connections hold up
//! neither a reload nor a shutdown, a connection accepted just before
//! shutdown is still answered, and a stdout nobody reads holds up neither
//! the master's SIGTERM nor the workers' memory.
//!
//! Every wait polls observable state (`/proc`, the log, responses) with a
//! generous deadline: these tests share a small, busy machine and assert
//! behaviour, never timings.

mod common;
#[path = "common/process.rs"]
mod process;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use process::*;

#[test]
fn sigterm_drains_in_flight_responses_and_exits_0() {
    let mut srv = Axkit::start_with(&conf("", ""), &[], big_file);
    // In flight: its head and 256 KiB of its body have come.
    let (mut dl, len, mut body) = start_download(srv.addr, "/big.bin", 256 << 10);
    assert_eq!(len, BIG);

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
        .all(|&p| !alive(p))));
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
        .all(|&p| !alive(p))));
    // The stalled response was cut short, not completed.
    dl.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = Vec::new();
    let _ = dl.read_to_end(&mut rest);
    assert!(body + rest.len() < len);
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
    signal(victim, libc::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(10), || srv
            .workers()
            .iter()
            .any(|&p| p != victim && alive(p))),
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
            wait_until(Duration::from_secs(5), || !alive(p)),
            "worker {p} left behind"
        );
    }
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
        wait_until(Duration::from_secs(10), || old.iter().all(|&p| !alive(p))),
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
    let listener = listening_inode(srv.addr);
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
    // The request comes once the workers act on SIGTERM: a worker told to
    // stop closes its listening socket.
    assert!(
        wait_until(Duration::from_secs(10), || workers
            .iter()
            .all(|&w| !holds_socket(w, &listener))),
        "the workers still listen"
    );
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

/// A master whose stdout (where `RequestLog -` goes, each line in
/// `format`) is a FIFO, one worker: (its dir, the master, its pid, its
/// address, the FIFO, opened for reading and writing so that the open did
/// not wait, and that nothing it holds ends).
fn master_with_stdout_on_a_fifo(
    format: &str,
) -> (
    TempDir,
    KilledOnDrop,
    i32,
    std::net::SocketAddr,
    std::fs::File,
) {
    let dir = TempDir::new("stdout-fifo");
    www(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.write(
        "axkit.conf",
        config_text(
            &dir,
            &format!(
                "Workers 1\nMaxKeepAliveRequests 0\nPlugin logging/warn\nPlugin request_log\nRequestLog -\n\
                 RequestLogFormat \"{format}\"\n\
                 <Server>\n    Listen 127.0.0.1:{port}\n    DocumentRoot {{dir}}/www\n    \
                 Plugin uri_to_file\n    Plugin serve_file\n</Server>\n"
            ),
        ),
    );
    let fifo = dir.path().join("out.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let stdout = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let errors = std::fs::File::create(dir.path().join("err.log")).unwrap();
    let master = std::process::Command::new(BIN)
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(errors)
        .spawn()
        .unwrap();
    let pid = master.id() as i32;
    let master = KilledOnDrop(master);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(wait_until(Duration::from_secs(30), || try_get(
        addr, "/a.txt"
    )
    .is_ok()));
    (dir, master, pid, addr, stdout)
}

/// The master's stdout (where `RequestLog -` goes) is a FIFO nobody reads:
/// the master drops what it cannot write instead of blocking, so SIGTERM
/// still stops it, and the worker's log queue stays bounded in bytes
/// although each line quotes 45 KB of escaped headers.
#[test]
fn a_stdout_nobody_reads_holds_up_neither_the_master_nor_memory() {
    let (dir, mut master, pid, addr, _fifo) = master_with_stdout_on_a_fifo(
        "%h \\\"%r\\\" %>s \\\"%{X-A}i\\\" \\\"%{X-B}i\\\" \\\"%{X-C}i\\\"",
    );
    let worker = children_of(pid)[0];
    let rss_before = status_kib(worker, "VmRSS");

    // 2,000 requests, each logged as a line of about 45 KB (15,000 bytes
    // of \xff headers, each byte quoted as \xNN): 90 MB of log, of which
    // the worker may queue 16 MiB.
    let header = "\u{ff}".repeat(2500); // 5,000 bytes
    let head = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-A: {header}\r\nX-B: {header}\r\nX-C: {header}\r\n\r\n"
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..2000 {
        s.write_all(head.as_bytes()).unwrap();
        let r = read_one_response(&mut s).unwrap().expect("a response");
        assert_eq!(r.status, 200);
    }
    drop(s);
    let rss_after = status_kib(worker, "VmRSS");
    assert!(
        rss_after < rss_before + 48 * 1024,
        "worker VmRSS {rss_before} kB -> {rss_after} kB"
    );
    assert!(wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(dir.path().join("err.log"))
            .unwrap()
            .contains("stdout is not being read")
    }));

    signal(pid, libc::SIGTERM);
    master.stops(pid);
}

/// A master that stops passes its workers' last output on before it
/// exits: 1,000 access-log lines waiting in its buffer for a stdout read
/// only once the worker has stopped all arrive (they were lost with the
/// master).
#[test]
fn a_stopping_master_writes_its_workers_last_output() {
    let (_dir, mut master, pid, addr, mut fifo) = master_with_stdout_on_a_fifo("%r %>s");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("GET /a.txt?{} HTTP/1.1\r\nHost: x\r\n\r\n", "q".repeat(200));
    for _ in 0..1000 {
        s.write_all(head.as_bytes()).unwrap();
        assert_eq!(
            read_one_response(&mut s)
                .unwrap()
                .expect("a response")
                .status,
            200
        );
    }
    drop(s);
    let worker = children_of(pid)[0];
    signal(pid, libc::SIGTERM);
    // Read only once the worker is gone and the master has nothing left
    // to do but write what it holds (its thread waiting on the writer's),
    // or has exited: what it had not written by then is what a master
    // that does not wait loses.
    let waiting = || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/wchan"))
            .is_ok_and(|w| w.contains("futex"))
    };
    assert!(wait_until(Duration::from_secs(30), || !alive(worker)
        && (waiting() || master.0.try_wait().unwrap().is_some())));
    let mut reader = fifo.try_clone().unwrap();
    let read = std::thread::spawn(move || {
        let (mut got, mut buf) = (Vec::new(), [0u8; 65536]);
        // The test holds a write end too: no EOF; the lines are counted
        // as they come, up to the 1,000 (and the one of the warm-up).
        while got.iter().filter(|&&b| b == b'\n').count() < 1001 {
            match reader.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        got
    });
    master.stops(pid);
    // Whatever the master wrote before it exited is in the pipe: empty
    // lines of our own end the reader's wait if some are missing.
    fifo.write_all(&b"\n".repeat(1001)).unwrap();
    let got = read.join().unwrap();
    let lines = got
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"GET /a.txt?q"))
        .count();
    assert_eq!(lines, 1000, "access-log lines that reached stdout");
}

/// A child process killed when the test ends, whether or not it passed
/// (its workers follow: their stdin closes).
struct KilledOnDrop(std::process::Child);

impl KilledOnDrop {
    /// Wait for the master (`pid`) to exit, as SIGTERM asked, 30 s at most.
    fn stops(&mut self, pid: i32) {
        assert!(
            wait_until(Duration::from_secs(30), || self
                .0
                .try_wait()
                .unwrap()
                .is_some()),
            "the master did not stop on SIGTERM: {}",
            process_state(pid)
        );
    }
}

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
