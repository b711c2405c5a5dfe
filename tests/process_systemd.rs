//! systemd integration, end to end with the real binary and without
//! systemd (it is not on the machine): readiness notification to a
//! datagram socket the test binds as `NOTIFY_SOCKET` (a path, and an
//! abstract name), and socket activation with a listening socket the test
//! binds and passes as descriptor 3 with `LISTEN_FDS`/`LISTEN_PID`.

mod common;
#[path = "common/process.rs"]
mod process;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::*;
use process::*;

/// The next message on `socket`, waiting up to 30 s.
fn next_message(socket: &UnixDatagram) -> String {
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("no notification within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Whether `pid`'s environment has `name`.
fn has_env(pid: i32, name: &str) -> bool {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let prefix = format!("{name}=");
    environ
        .split(|&b| b == 0)
        .any(|v| v.starts_with(prefix.as_bytes()))
}

/// Start a two-worker server with `NOTIFY_SOCKET` set to `value`.
fn start_notified(value: &str) -> Axkit {
    let dir = TempDir::new("srv");
    www(&dir);
    let conf = dir.write("axkit.conf", config_text(&dir, &conf("", "")));
    let mut command = Command::new(BIN);
    command.arg("-c").arg(&conf).env("NOTIFY_SOCKET", value);
    Axkit::launch(command, dir, conf)
}

#[test]
fn sd_notify_says_ready_reloading_and_stopping() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let mut srv = start_notified(path.to_str().unwrap());

    let ready = next_message(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    let status = format!("STATUS=serving on {} with 2 worker(s)", srv.addr);
    assert!(ready.contains(&status), "{ready:?}");
    // Ready means serving.
    assert_eq!(srv.get("/a.txt").text(), "aaa\n");
    // Only the master talks to systemd.
    for w in srv.workers() {
        assert!(has_env(srv.pid(), "NOTIFY_SOCKET"));
        assert!(!has_env(w, "NOTIFY_SOCKET"), "worker {w} has NOTIFY_SOCKET");
    }

    srv.signal(libc::SIGHUP);
    let reloading = next_message(&socket);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC")
        .parse()
        .unwrap();
    assert!(usec > 0);
    let ready = next_message(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("configuration generation 2"), "{ready:?}");
    srv.wait_stderr("configuration reloaded", Duration::from_secs(10));

    srv.signal(libc::SIGTERM);
    let stopping = next_message(&socket);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    srv.stop();
}

#[test]
fn sd_notify_reaches_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("axkit-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    let mut srv = start_notified(&format!("@{name}"));
    let ready = next_message(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    srv.stop();
}

#[test]
fn socket_activation_adopts_passed_listeners() {
    // The socket systemd would have bound, and an address it did not pass.
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = passed.local_addr().unwrap().port();
    let inode = listening_inode(passed.local_addr().unwrap());
    let dir = TempDir::new("srv");
    www(&dir);
    let config = format!(
        "Workers 2\n<Server>\n    Listen 127.0.0.1:0\n    Listen 127.0.0.1:{port}\n    \
         DocumentRoot {{dir}}/www\n    Plugin uri_to_file\n    Plugin fast_mime_map\n    \
         Plugin serve_file\n</Server>\n"
    );
    let conf = dir.write("axkit.conf", config_text(&dir, &config));
    // LISTEN_PID must be the pid of the process that reads it: the shell
    // sets it to its own and then becomes axkit.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("-c")
        .arg(&conf)
        .env("LISTEN_FDS", "1");
    let fd = passed.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2,
    // fcntl) on descriptors this process owns.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            if fd == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut srv = Axkit::launch(command, dir, conf);
    // Now only the server holds it.
    drop(passed);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        holds_socket(srv.pid(), &inode),
        "the passed socket not adopted"
    );
    assert!(try_get(addr, "/a.txt").is_ok_and(|r| r.body == b"aaa\n"));
    // The other Listen was bound as usual.
    assert_ne!(srv.addr.port(), port);
    assert!(try_get(srv.addr, "/a.txt").is_ok_and(|r| r.body == b"aaa\n"));
    let err = srv.stderr();
    assert!(!err.contains("socket activation"), "{err}");
    // The workers see neither variable.
    for w in srv.workers() {
        assert!(!has_env(w, "LISTEN_FDS") && !has_env(w, "LISTEN_PID"));
    }
    srv.stop();
}
