//! systemd's side of the process model, written by hand (it is a few
//! lines): readiness notification (`sd_notify`, for `Type=notify`) and
//! socket activation (`LISTEN_FDS`).
//!
//! Notification: when `NOTIFY_SOCKET` is set (a path, or `@name` for an
//! abstract socket) the master sends `READY=1` once its workers listen,
//! `RELOADING=1` with `MONOTONIC_USEC` at SIGHUP and `READY=1` when the
//! reload is over, `STOPPING=1` when it drains, and a `STATUS=` line with
//! each; a new master started by a binary upgrade also says `MAINPID=` so
//! that systemd follows it. Nothing is sent without the variable.
//!
//! Activation: systemd passes listening sockets as descriptors 3, 4, …
//! (`LISTEN_FDS` of them, meant for the process `LISTEN_PID`). The master
//! adopts each one whose address is a `Listen` address and binds the
//! others itself. Workers and everything they start never see these
//! variables.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::OnceLock;

/// The environment systemd sets for the service's main process; removed
/// from every process the master starts (its workers, a new master).
pub(crate) const SYSTEMD_ENV: [&str; 4] = [
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// The first descriptor systemd passes.
const LISTEN_FDS_START: RawFd = 3;

static NOTIFY_SOCKET: OnceLock<Option<std::ffi::OsString>> = OnceLock::new();

/// Send `state` (newline-separated `KEY=VALUE` lines) to the service
/// manager, if there is one. A failure is not the server's: it is dropped.
pub(crate) fn notify(state: &str) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let Some(path) = NOTIFY_SOCKET.get_or_init(|| std::env::var_os("NOTIFY_SOCKET")) else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_bytes();
    let _ = match bytes.first() {
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(&bytes[1..])
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        Some(b'/') => socket.send_to(state.as_bytes(), path),
        _ => return,
    };
}

/// `MONOTONIC_USEC=` for a `RELOADING=1` message: now, on the clock
/// systemd compares it with.
pub(crate) fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// The sockets systemd passed us, if any are meant for this process,
/// close-on-exec from now on.
fn passed_sockets() -> Vec<TcpListener> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<RawFd>().ok())
        .filter(|_| for_us)
        .unwrap_or(0);
    (LISTEN_FDS_START..LISTEN_FDS_START + count)
        .filter_map(|fd| {
            // SAFETY: systemd passed this descriptor to this process, to be
            // owned by it (`LISTEN_PID` is ours); the flag keeps it from
            // workers and CGI processes.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 {
                    return None;
                }
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                Some(TcpListener::from_raw_fd(fd))
            }
        })
        .collect()
}

/// Whether a socket bound to `actual` serves the configured `Listen`
/// address `wanted`.
fn serves(actual: SocketAddr, wanted: SocketAddr) -> bool {
    wanted.port() != 0 && actual == wanted
}

/// The sockets systemd passed, each paired with the `Listen` address
/// (among `wanted`) it serves. One that serves none is closed, and said
/// in the returned warnings.
pub(crate) fn adopt(wanted: &[SocketAddr]) -> (Vec<(SocketAddr, TcpListener)>, Vec<String>) {
    let mut adopted = Vec::new();
    let mut warnings = Vec::new();
    for socket in passed_sockets() {
        let actual = socket.local_addr();
        match actual {
            Ok(actual) => match wanted.iter().find(|w| serves(actual, **w)) {
                Some(w) => adopted.push((*w, socket)),
                None => warnings.push(format!(
                    "socket activation: the socket on {actual} matches no Listen address; closed"
                )),
            },
            Err(e) => warnings.push(format!(
                "socket activation: a socket passed is not a TCP listener ({e}); closed"
            )),
        }
    }
    (adopted, warnings)
}
