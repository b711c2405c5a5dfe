//! The master's stdout, where the workers' stdout (`RequestLog -`) goes
//! on: written by a thread of its own from a buffer bounded in bytes.
//!
//! The master's event loop is one thread that also takes the signals and
//! replaces dead workers; a write to a stdout nobody drains (a stuck
//! `| logger`, a paused terminal, a FIFO) would block it there, and SIGTERM
//! with it. So the loop only appends to the buffer, and what does not fit
//! is dropped and counted rather than waited for. A master that stops
//! gives the thread a moment to write what is left ([`flush`]), then exits
//! even if it is blocked in its write.

use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Bytes waiting for stdout, at most; past this, lines are dropped.
const LIMIT: usize = 4 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
    /// The thread holds a batch it has not finished writing.
    writing: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Bytes to write.
    wake: Condvar,
    /// A batch written.
    written: Condvar,
}

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

fn shared() -> &'static Arc<Shared> {
    SHARED.get_or_init(|| {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            written: Condvar::new(),
        });
        let writer = shared.clone();
        // Without the thread, nothing is written: lines are dropped and
        // counted, and the loop goes on.
        let _ = std::thread::Builder::new()
            .name("axkit-stdout".into())
            .spawn(move || write_loop(&writer));
        shared
    })
}

/// Queue `line` for stdout. When it does not fit, it is dropped, and the
/// count of lines dropped so far is returned.
pub(crate) fn forward(line: &[u8]) -> Option<u64> {
    let shared = shared();
    let mut pending = shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if pending.bytes.len() + line.len() > LIMIT {
        pending.dropped += 1;
        return Some(pending.dropped);
    }
    pending.bytes.extend_from_slice(line);
    shared.wake.notify_one();
    None
}

fn write_loop(shared: &Shared) {
    // fd 1 itself, not `std::io::stdout()`: its lock would be held while
    // the write blocks, and the process's exit takes that lock.
    // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop
    // keeps this File from closing it.
    let mut out = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
    let mut batch = Vec::new();
    loop {
        {
            let mut pending = shared
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while pending.bytes.is_empty() {
                pending = shared
                    .wake
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut batch, &mut pending.bytes);
            pending.writing = true;
        }
        // A stdout that is closed or failing drops what it was given.
        let _ = out.write_all(&batch);
        batch.clear();
        let mut pending = shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.writing = false;
        shared.written.notify_all();
    }
}

/// Wait, at most `limit`, until everything forwarded has been written:
/// what a stopping master does before it exits, so that the last lines
/// of its workers' logs are not lost with it. Returns whether it was.
pub(crate) fn flush(limit: Duration) -> bool {
    let Some(shared) = SHARED.get() else {
        return true;
    };
    let deadline = Instant::now() + limit;
    let mut pending = shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    while !pending.bytes.is_empty() || pending.writing {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        pending = shared
            .written
            .wait_timeout(pending, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}
