//! The lock of a region shared by processes: a POSIX mutex that is
//! process-shared and *robust*, living in the region itself.
//!
//! Robust is what keeps a dead worker from wedging the others. The C
//! library registers, for every thread, a list of the robust mutexes it
//! holds with the kernel (`set_robust_list`); when a thread dies holding
//! one, for any reason including `kill -9`, the kernel marks the lock word
//! "owner died" and wakes a waiter, whose lock call then succeeds with
//! `EOWNERDEAD`. That process repairs what the dead one left halfway (for a
//! zone: the journal's rollback, `mem.rs`), declares the mutex consistent,
//! and carries on. No pid is ever compared, so a pid reused by another
//! process cannot fool it, and a stopped (`SIGSTOP`) owner is not mistaken
//! for a dead one.
//!
//! Taking the lock first tries a few times without waiting, spinning in
//! between (the lock is held for well under a microsecond: no syscall and
//! no allocation happen under it, and a mutation's work is bounded), then
//! waits in the kernel (a futex). Uncontended, taking and releasing it
//! makes no syscall; a release with a waiter makes one `futex` wake, after
//! the lock word is already free.

use std::sync::atomic::{compiler_fence, Ordering};

/// Bytes the mutex may take in a region (more than any C library uses).
pub(crate) const LOCK_SIZE: usize = 64;

const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= LOCK_SIZE);

/// Tries before waiting in the kernel; the spin between two doubles from 1
/// to 2^(TRIES-1) pause instructions (about 10 µs in all).
const TRIES: u32 = 10;

/// How taking the lock went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The lock is ours.
    Clean,
    /// The lock is ours, and its previous owner died holding it: repair,
    /// then [`Lock::consistent`].
    OwnerDied,
}

/// The mutex of a region (a pointer into it).
#[derive(Clone, Copy)]
pub(crate) struct Lock(*mut libc::pthread_mutex_t);

// SAFETY: a process-shared mutex is made to be used from any thread.
unsafe impl Send for Lock {}
unsafe impl Sync for Lock {}

impl Lock {
    /// # Safety
    /// `at` must point to [`LOCK_SIZE`] bytes of a mapped region, aligned
    /// to 8, that [`Lock::init`] formatted.
    pub unsafe fn at(at: *mut u8) -> Lock {
        Lock(at.cast())
    }

    /// Format a robust, process-shared mutex at `at` (in a region no other
    /// process uses yet).
    ///
    /// # Safety
    /// As for [`Lock::at`], minus the formatting.
    pub unsafe fn init(at: *mut u8) {
        let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
        libc::pthread_mutexattr_init(&mut attr);
        libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
        let rc = libc::pthread_mutex_init(at.cast(), &attr);
        libc::pthread_mutexattr_destroy(&mut attr);
        assert_eq!(rc, 0, "pthread_mutex_init");
    }

    /// Take the lock. Err: it can never be taken again (a previous owner
    /// gave it up without making it consistent, which this crate never
    /// does).
    pub fn lock(&self) -> Result<Taken, ()> {
        for attempt in 0..TRIES {
            // SAFETY: a formatted mutex (`at`).
            match unsafe { libc::pthread_mutex_trylock(self.0) } {
                0 => return Ok(Taken::Clean),
                libc::EOWNERDEAD => return Ok(Taken::OwnerDied),
                libc::EBUSY => {
                    for _ in 0..1u32 << attempt {
                        std::hint::spin_loop();
                    }
                }
                _ => return Err(()),
            }
        }
        // SAFETY: as above.
        match unsafe { libc::pthread_mutex_lock(self.0) } {
            0 => Ok(Taken::Clean),
            libc::EOWNERDEAD => Ok(Taken::OwnerDied),
            _ => Err(()),
        }
    }

    /// After `OwnerDied` and the repair: the mutex is usable again.
    pub fn consistent(&self) {
        // SAFETY: we hold the lock (taken with OwnerDied).
        unsafe { libc::pthread_mutex_consistent(self.0) };
    }

    pub fn unlock(&self) {
        compiler_fence(Ordering::SeqCst);
        // SAFETY: we hold the lock.
        unsafe { libc::pthread_mutex_unlock(self.0) };
    }
}
