//! Emptied vectors kept per thread for the next user: a worker is one
//! thread that makes and drops the same few buffers on every request (a
//! response's header list, its encoded head, a proxied request's fields),
//! and taking a spare one costs far less than a malloc and a free each
//! time, above all for sizes past malloc's fast per-thread cache.
//!
//! A pool lives in a `thread_local!` and is reached through its key:
//!
//! ```
//! use axkit::plugin::SpareVecs;
//! thread_local! {
//!     static SPARE: SpareVecs<u8> = const { SpareVecs::new(64, 4096) };
//! }
//! let mut buf = SpareVecs::take(&SPARE, 512);
//! buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
//! SpareVecs::give(&SPARE, buf);
//! ```

use std::cell::RefCell;
use std::thread::LocalKey;

/// At most `most` emptied vectors of at most `largest` capacity each.
pub struct SpareVecs<T> {
    kept: RefCell<Vec<Vec<T>>>,
    most: usize,
    largest: usize,
}

impl<T> SpareVecs<T> {
    pub const fn new(most: usize, largest: usize) -> Self {
        SpareVecs {
            kept: RefCell::new(Vec::new()),
            most,
            largest,
        }
    }

    /// A spare vector (empty), or a new one with room for `room`.
    pub fn take(pool: &'static LocalKey<Self>, room: usize) -> Vec<T> {
        // `try_with`: the thread's pool may already be gone when a value
        // is made or dropped as the thread ends.
        pool.try_with(|p| p.kept.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| Vec::with_capacity(room))
    }

    /// Keep `v` (emptied) for the next [`take`](Self::take), unless the
    /// pool is full or `v` is unused or grew past `largest`.
    pub fn give(pool: &'static LocalKey<Self>, mut v: Vec<T>) {
        let _ = pool.try_with(|p| {
            if v.capacity() == 0 || v.capacity() > p.largest {
                return;
            }
            let mut kept = p.kept.borrow_mut();
            if kept.len() < p.most {
                v.clear();
                kept.push(v);
            }
        });
    }
}
