//! Servers for the tests that need them (`db_*.rs`, the cache's tiers):
//! PostgreSQL, Redis and memcached from their Debian packages, each started by the test itself
//! in a scratch directory on a free loopback port and stopped by its PID
//! (never a system service, never a default port).
//!
//! A server whose binary is missing skips the test with one line naming
//! the package to install; with `AXKIT_REQUIRE_SERVICES=1` (as CI runs)
//! that is a failure instead, so a CI machine without the package cannot
//! pass by skipping.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{signal, wait_until, TempDir};

const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGTERM: i32 = 15;

/// `binary` is not installed: say the calling test is skipped, with a
/// line naming Debian's `package`, or fail under `AXKIT_REQUIRE_SERVICES=1`.
pub fn service_missing(package: &str, binary: &str) {
    if std::env::var("AXKIT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!(
            "{binary} not found: install the Debian package {package} \
             (AXKIT_REQUIRE_SERVICES=1 makes this a failure, not a skip)"
        );
    }
    // Past the harness's capture (which hides a passing test's output),
    // so that a skip shows.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {binary} not found (install the Debian package {package})"
    );
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stop `child` (by its PID, SIGTERM) and wait for it to exit.
fn terminate(child: &mut Option<Child>, name: &str) {
    if let Some(mut child) = child.take() {
        signal(child.id() as i32, SIGTERM);
        assert!(
            wait_exit(&mut child, Duration::from_secs(30)),
            "{name} did not stop"
        );
    }
}

/// Kill `child` at once: the test is over.
fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Wait for `child` to exit, up to `limit`.
fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    wait_until(limit, || matches!(child.try_wait(), Ok(Some(_))))
}

/// A PostgreSQL server of the test's own, with trust authentication for
/// the `postgres` user on `127.0.0.1:port`.
pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Who the server runs as: PostgreSQL refuses to run as root.
    user: Option<(u32, u32)>,
    child: Option<Child>,
    starts: usize,
    pub dir: TempDir,
}

/// The newest installed PostgreSQL's binaries.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The `postgres` account's uid and gid, when the tests run as root.
fn postgres_user() -> Option<(u32, u32)> {
    if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

impl Postgres {
    /// Start one, or None (the test skips) when PostgreSQL is missing.
    pub fn start() -> Option<Postgres> {
        let Some(bin) = postgres_bin() else {
            service_missing("postgresql", "postgres");
            return None;
        };
        let user = postgres_user();
        let dir = TempDir::new("pg");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            port: free_port(),
            bin,
            log: dir.path().join("postgres.log"),
            data,
            user,
            child: None,
            starts: 0,
            dir,
        };
        pg.run();
        Some(pg)
    }

    /// Start the server on its data directory and port; wait until it
    /// accepts connections.
    fn run(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(&self.log, Some(uid), Some(gid)).unwrap();
        }
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k", ""])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=40",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        self.child = Some(cmd.spawn().expect("start postgres"));
        self.starts += 1;
        // Each start logs this once more.
        let ready = "database system is ready to accept connections";
        let ok = wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&self.log)
                .is_ok_and(|t| t.matches(ready).count() >= self.starts)
        });
        assert!(ok, "postgres did not start:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Run `sql` with psql; its output (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                "postgres",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A psql session that has run `sql` and stays connected (in the
    /// transaction `sql` left open, say) until the [`Session`] is dropped.
    pub fn session(&self, sql: &str) -> Session {
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-X", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run psql");
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql}").unwrap();
        stdin.flush().unwrap();
        Session(Some(child))
    }

    /// Stop the server (fast shutdown: its connections are closed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, SIGINT);
            assert!(
                wait_exit(&mut child, Duration::from_secs(30)),
                "postgres did not stop"
            );
        }
    }

    /// Start it again, same data and port.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the test is over.
            signal(child.id() as i32, SIGQUIT);
            if !wait_exit(&mut child, Duration::from_secs(10)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A psql session of [`Postgres::session`]: ended when dropped.
pub struct Session(Option<Child>);

impl Drop for Session {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// A Redis server of the test's own on `127.0.0.1:port`, persisting
/// nothing.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    starts: usize,
    pub dir: TempDir,
}

impl Redis {
    /// Start one, or None (the test skips) when Redis is missing.
    pub fn start() -> Option<Redis> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            service_missing("redis-server", "redis-server");
            return None;
        }
        let dir = TempDir::new("redis");
        let mut redis = Redis {
            port: free_port(),
            child: None,
            log: dir.path().join("redis.log"),
            starts: 0,
            dir,
        };
        redis.run();
        Some(redis)
    }

    fn run(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        self.starts += 1;
        let ready = "Ready to accept connections";
        let ok = wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&self.log)
                .is_ok_and(|t| t.matches(ready).count() >= self.starts)
        });
        assert!(
            ok,
            "redis-server did not start:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis-cli --raw ARGS…` on this server, `input` its standard
    /// input (its last argument with `-x`): what it printed.
    pub fn cli(&self, args: &[&[u8]], input: &[u8]) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--raw"])
            .args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run redis-cli");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}");
        out.stdout
    }

    pub fn stop(&mut self) {
        terminate(&mut self.child, "redis-server");
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// A memcached server of the test's own on `127.0.0.1:port`.
pub struct Memcached {
    pub port: u16,
    /// The largest item it stores (`-I`).
    item_size: &'static str,
    child: Option<Child>,
}

impl Memcached {
    /// Start one, or None (the test skips) when memcached is missing.
    pub fn start() -> Option<Memcached> {
        Memcached::start_with_item_size("1m")
    }

    /// Start one that stores items of at most `size` (`-I`, as `512k`).
    pub fn start_with_item_size(size: &'static str) -> Option<Memcached> {
        if Command::new("memcached").arg("-V").output().is_err() {
            service_missing("memcached", "memcached");
            return None;
        }
        let mut memcached = Memcached {
            port: free_port(),
            item_size: size,
            child: None,
        };
        memcached.run();
        Some(memcached)
    }

    fn run(&mut self) {
        let mut cmd = Command::new("memcached");
        cmd.args(["-l", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "0", "-m", "64", "-I", self.item_size])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // memcached refuses to run as root unless told whom to run as.
        if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            cmd.args(["-u", "root"]);
        }
        self.child = Some(cmd.spawn().expect("start memcached"));
        let addr = format!("127.0.0.1:{}", self.port);
        let ok = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
        assert!(ok, "memcached did not start on {addr}");
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The keys it holds (`lru_crawler metadump all`, which URL-encodes
    /// them: the `:` of the cache's keys decoded, which is all they need).
    pub fn keys(&self) -> Vec<String> {
        let mut conn = std::net::TcpStream::connect(self.addr()).unwrap();
        conn.write_all(b"lru_crawler metadump all\r\n").unwrap();
        let mut dump = String::new();
        let mut reader = std::io::BufReader::new(conn);
        while !dump.ends_with("END\r\n") {
            let n = std::io::BufRead::read_line(&mut reader, &mut dump).unwrap();
            assert!(n > 0, "memcached closed the metadump: {dump}");
        }
        dump.lines()
            .filter_map(|l| {
                Some(
                    l.strip_prefix("key=")?
                        .split(' ')
                        .next()?
                        .replace("%3A", ":"),
                )
            })
            .collect()
    }

    /// Store `value` under `key` (`ms`) for a minute.
    pub fn set(&self, key: &str, value: &[u8]) {
        let mut conn = std::net::TcpStream::connect(self.addr()).unwrap();
        let mut command = format!("ms {key} {} T60\r\n", value.len()).into_bytes();
        command.extend_from_slice(value);
        command.extend_from_slice(b"\r\n");
        conn.write_all(&command).unwrap();
        let mut reply = [0; 4];
        std::io::Read::read_exact(&mut conn, &mut reply).unwrap();
        assert_eq!(&reply, b"HD\r\n", "ms {key}");
    }

    pub fn stop(&mut self) {
        terminate(&mut self.child, "memcached");
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
