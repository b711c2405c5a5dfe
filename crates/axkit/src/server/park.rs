//! Parked connections: idle ones whose task has ended (see `idle.rs`). Their
//! sockets leave tokio's reactor for an epoll instance of the worker's own,
//! each registered for one event (`EPOLLONESHOT`) that carries its slot in
//! the idle table. One task per worker waits on that epoll's descriptor
//! through tokio and, for each socket that has something, reads it: bytes
//! rebuild the connection as a new task that goes on with the request
//! (`walk::resume`); the peer's close just closes the socket.
//!
//! tokio's registration of a socket (its `ScheduledIo`, 128-byte aligned),
//! the task and its future are what an idle connection cost beyond the
//! kernel's socket; a slot here is all that is left (nginx keeps a
//! connection structure of about the same size). The epoll is a second
//! instance rather than the reactor's own because tokio offers no way to
//! register a descriptor without the registration we want to shed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::plugin::Level;
use crate::server::conn_io::{self, FirstRead};
use crate::server::runtime::WorkerRt;
use crate::server::walk;

/// Events taken per `epoll_wait`; a full batch is followed by a yield, so
/// that a crowd of connections waking at once does not starve the others.
const BATCH: usize = 256;

/// The worker's epoll instance for parked sockets.
pub(crate) struct Parking {
    epoll: OwnedFd,
}

/// What an event names: the slot in the idle table and the descriptor
/// (so that an event for a slot since reused is recognised).
fn token(key: u32, fd: RawFd) -> u64 {
    (u64::from(key) << 32) | u64::from(fd as u32)
}

impl Parking {
    pub fn new() -> io::Result<Parking> {
        // SAFETY: no pointer arguments; a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just created and nobody else owns.
        Ok(Parking {
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, key: u32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
            u64: token(key, fd),
        };
        // SAFETY: valid descriptors and a live event structure.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watch the parked socket `fd` of slot `key` for one event.
    pub fn add(&self, fd: RawFd, key: u32) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, key)
    }
}

/// Wake parked connections as their sockets get bytes, for as long as the
/// worker runs.
pub(crate) async fn wake_parked(worker: Rc<WorkerRt>) {
    let Some(parking) = &worker.parking else {
        return;
    };
    // SAFETY: the epoll descriptor is the worker's, open for as long as
    // `worker` lives, which outlives this task's `AsyncFd`.
    let registered =
        unsafe { AsyncFd::register_with_interest(parking.epoll.as_raw_fd(), Interest::READABLE) };
    let ready = match registered {
        Ok(ready) => ready,
        Err(e) => {
            worker.log(
                Level::Error,
                &format!("idle connections will not be parked: {e}"),
            );
            return;
        }
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; BATCH];
    loop {
        let Ok(mut guard) = ready.readable().await else {
            return;
        };
        loop {
            // SAFETY: a valid epoll descriptor and a buffer of BATCH events.
            let n = unsafe {
                libc::epoll_wait(
                    parking.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    BATCH as i32,
                    0,
                )
            };
            let n = usize::try_from(n).unwrap_or(0);
            for event in &events[..n] {
                wake(&worker, parking, event.u64);
            }
            if n < BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
        // Drained: an event that comes after the last `epoll_wait` makes
        // the epoll readable again for the reactor, which sees it on its
        // next turn, after this.
        guard.clear_ready();
    }
}

/// One parked socket has an event: bytes wake its connection, an end
/// closes it, nothing (a spurious event) watches it again.
fn wake(worker: &Rc<WorkerRt>, parking: &Parking, token: u64) {
    let (key, fd) = ((token >> 32) as u32, token as u32 as RawFd);
    if !worker.idle.is_parked(key, fd) {
        return;
    }
    match conn_io::read_parked(fd, &worker.read_buffers) {
        FirstRead::Nothing => {
            if parking.ctl(libc::EPOLL_CTL_MOD, fd, key).is_ok() {
                return;
            }
            drop(worker.idle.unpark(key));
            worker.connections_closed(1);
        }
        FirstRead::Gone => {
            // Closing the socket takes it out of the epoll too.
            drop(worker.idle.unpark(key));
            worker.connections_closed(1);
        }
        FirstRead::Bytes(buf) => {
            let Some((conn, deadline)) = worker.idle.unpark(key) else {
                return;
            };
            // Out of this epoll before it joins the reactor's: parked
            // again later, it is added anew.
            let _ = parking.ctl(libc::EPOLL_CTL_DEL, fd, key);
            tokio::task::spawn_local(walk::resume(worker.clone(), conn, buf, deadline));
        }
    }
}
