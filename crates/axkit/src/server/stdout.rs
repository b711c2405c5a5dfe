//! The master's stdout, where the workers' stdout (`RequestLog -`) goes
//! on: written by a thread of its own from a buffer bounded in bytes.
//!
//! The master's event loop is one thread that also takes the signals and
//! replaces dead workers; a write to a stdout nobody drains (a stuck
//! `| logger`, a paused terminal, a FIFO) would block it there, and SIGTERM
//! with it. So the loop only appends to the buffer, and what does not fit
//! is dropped and counted rather than waited for. The thread is never
//! joined: a master that exits leaves it blocked in its write.

use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

/// Bytes waiting for stdout, at most; past this, lines are dropped.
const LIMIT: usize = 4 << 20;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

fn shared() -> &'static Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
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
        }
        // A stdout that is closed or failing drops what it was given.
        let _ = out.write_all(&batch);
        batch.clear();
    }
}
