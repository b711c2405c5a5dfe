//! Word access to a region of shared memory, and the undo journal that
//! makes a zone's mutations safe to abandon halfway.
//!
//! Every access is bounds-checked and aligned: the region is shared with
//! other processes, and an offset read from it that points outside it is a
//! bug to stop at (a panic, which the lock guard turns into a rollback and
//! an unlock), never a stray write. Reads and writes are volatile: the
//! compiler keeps them in program order, which is what makes the journal
//! work (below).
//!
//! **The journal.** A worker may die at any instruction while it holds a
//! zone's lock (`kill -9`, the OOM killer, a crash). The lock is robust
//! (`lock.rs`): the next process to take it is told the owner died. What
//! it finds must be consistent, so every write a mutation makes to the
//! zone's structure (the hash chains, the LRU list, the allocator's block
//! headers and free lists, the counters, an entry's header and a number
//! changed in place) goes through [`Tx`], which first appends the word's
//! old value to an undo log in the region's header, then writes. A
//! mutation ends with [`Tx::commit`] (the log is emptied: one store); the
//! process that recovers a dead owner's lock restores the logged words in
//! reverse order ([`Tx::rollback`]), which undoes the unfinished mutation
//! exactly. The log entry is complete before its length is bumped, and the
//! length before the word changes: killed between any two of those
//! stores, the rollback restores a value the word already has, or nothing.
//!
//! The one kind of write that bypasses the log is the bytes of a new
//! entry's key and value, written into a block the same mutation just
//! allocated: those bytes belonged to no live structure when the mutation
//! began (a free block keeps its list links in its first 24 bytes, and an
//! entry's bytes start at 64), so undoing the allocation is enough. For
//! that to hold, a mutation that frees blocks (an eviction) commits before
//! the one that allocates: see `zone.rs`.
//!
//! The alternative, a rebuild of the structure from the entries after a
//! crash, would need every entry to be self-validating and a scan of the
//! whole zone under the lock; the journal bounds recovery to the few dozen
//! words one mutation writes.

use std::sync::atomic::{compiler_fence, Ordering};

/// A region's first byte and length. Copy: the region is mapped for the
/// life of the process.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mem {
    base: *mut u8,
    len: usize,
}

// SAFETY: plain shared memory; callers synchronise through the zone lock.
unsafe impl Send for Mem {}
unsafe impl Sync for Mem {}

impl Mem {
    /// # Safety
    /// `base` must point to `len` bytes mapped for the life of the process.
    pub unsafe fn new(base: *mut u8, len: usize) -> Mem {
        Mem { base, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The region's first byte.
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    #[inline]
    fn at(&self, off: usize, width: usize) -> *mut u8 {
        assert!(
            off.is_multiple_of(width) && off.checked_add(width).is_some_and(|end| end <= self.len),
            "shared zone: offset {off} out of bounds"
        );
        // SAFETY: checked to lie within the mapping.
        unsafe { self.base.add(off) }
    }

    #[inline]
    pub fn r32(&self, off: usize) -> u32 {
        // SAFETY: in bounds and aligned (`at`).
        unsafe { std::ptr::read_volatile(self.at(off, 4).cast::<u32>()) }
    }

    #[inline]
    pub fn r64(&self, off: usize) -> u64 {
        // SAFETY: in bounds and aligned (`at`).
        unsafe { std::ptr::read_volatile(self.at(off, 8).cast::<u64>()) }
    }

    /// A write outside the journal: formatting, the journal itself, and
    /// structures that are safe to abandon by design (the broadcast ring).
    #[inline]
    pub fn w32_raw(&self, off: usize, v: u32) {
        // SAFETY: in bounds and aligned (`at`).
        unsafe { std::ptr::write_volatile(self.at(off, 4).cast::<u32>(), v) }
    }

    #[inline]
    pub fn w64_raw(&self, off: usize, v: u64) {
        // SAFETY: in bounds and aligned (`at`).
        unsafe { std::ptr::write_volatile(self.at(off, 8).cast::<u64>(), v) }
    }

    fn range(&self, off: usize, len: usize) -> *mut u8 {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.len),
            "shared zone: range {off}+{len} out of bounds"
        );
        // SAFETY: checked to lie within the mapping.
        unsafe { self.base.add(off) }
    }

    /// Copy `len` bytes at `off` to the end of `out`, which must have the
    /// room (no allocation here: this runs under a lock).
    pub fn read_bytes(&self, off: usize, len: usize, out: &mut Vec<u8>) {
        let src = self.range(off, len);
        assert!(out.capacity() - out.len() >= len, "no room to copy into");
        // SAFETY: `len` bytes in bounds; `out` has room; no overlap (ours).
        unsafe {
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().add(out.len()), len);
            out.set_len(out.len() + len);
        }
    }

    /// Whether the `bytes.len()` bytes at `off` equal `bytes`.
    pub fn eq_bytes(&self, off: usize, bytes: &[u8]) -> bool {
        let src = self.range(off, bytes.len());
        // SAFETY: in bounds; compared while the lock is held.
        unsafe { std::slice::from_raw_parts(src, bytes.len()) == bytes }
    }

    /// Write `bytes` at `off`, outside the journal (see the module doc for
    /// when that is allowed).
    pub fn write_bytes(&self, off: usize, bytes: &[u8]) {
        let dst = self.range(off, bytes.len());
        // SAFETY: in bounds; `bytes` is ours, not in the region.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) }
    }
}

/// Where a region keeps its journal: the length word, then the entries.
#[derive(Clone, Copy)]
pub(crate) struct JournalAt {
    pub len_off: usize,
    pub entries_off: usize,
    pub capacity: usize,
}

/// Journal entry: the word's offset (bit 63 set for a 64-bit word), then
/// its old value.
const WIDE: u64 = 1 << 63;
const ENTRY: usize = 16;

/// A mutation in progress: every structural write goes through it.
#[derive(Clone, Copy)]
pub(crate) struct Tx {
    pub mem: Mem,
    journal: JournalAt,
}

impl Tx {
    pub fn new(mem: Mem, journal: JournalAt) -> Tx {
        Tx { mem, journal }
    }

    fn log(&self, off: usize, old: u64, wide: bool) {
        #[cfg(test)]
        crash::point();
        let j = self.journal;
        let n = self.mem.r64(j.len_off) as usize;
        assert!(n < j.capacity, "shared zone: journal full");
        let at = j.entries_off + n * ENTRY;
        self.mem
            .w64_raw(at, off as u64 | if wide { WIDE } else { 0 });
        self.mem.w64_raw(at + 8, old);
        compiler_fence(Ordering::SeqCst);
        self.mem.w64_raw(j.len_off, n as u64 + 1);
        compiler_fence(Ordering::SeqCst);
    }

    #[inline]
    pub fn w32(&self, off: usize, v: u32) {
        let old = self.mem.r32(off);
        if old != v {
            self.log(off, u64::from(old), false);
            self.mem.w32_raw(off, v);
        }
    }

    #[inline]
    pub fn w64(&self, off: usize, v: u64) {
        let old = self.mem.r64(off);
        if old != v {
            self.log(off, old, true);
            self.mem.w64_raw(off, v);
        }
    }

    /// Whether a mutation is in progress (written and not committed).
    pub fn pending(&self) -> bool {
        self.mem.r64(self.journal.len_off) != 0
    }

    /// The mutation is complete: forget the old values.
    pub fn commit(&self) {
        compiler_fence(Ordering::SeqCst);
        self.mem.w64_raw(self.journal.len_off, 0);
    }

    /// Undo the mutation in progress (a dead owner's, or one that
    /// panicked): restore every logged word, newest first. Idempotent, so
    /// a process that dies while rolling back leaves work the next one can
    /// redo.
    pub fn rollback(&self) {
        let j = self.journal;
        let n = (self.mem.r64(j.len_off) as usize).min(j.capacity);
        for i in (0..n).rev() {
            let at = j.entries_off + i * ENTRY;
            let word = self.mem.r64(at);
            let old = self.mem.r64(at + 8);
            let off = (word & !WIDE) as usize;
            if word & WIDE != 0 {
                self.mem.w64_raw(off, old);
            } else {
                self.mem.w32_raw(off, old as u32);
            }
        }
        self.commit();
    }
}

/// Tests stop a mutation halfway: after a number of journaled writes, the
/// thread panics (the lock guard then rolls back) or the process dies
/// holding the lock (the next owner recovers it).
#[cfg(test)]
pub(crate) mod crash {
    use std::cell::Cell;

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum How {
        Panic,
        Exit,
        /// Say so on stdout and wait to be killed.
        Stop,
    }

    thread_local! {
        static AT: Cell<Option<(usize, How)>> = const { Cell::new(None) };
    }

    /// Stop at the `n`th journaled write from now.
    pub fn after(n: usize, how: How) {
        AT.with(|at| at.set(Some((n, how))));
    }

    pub fn disarm() {
        AT.with(|at| at.set(None));
    }

    pub(super) fn point() {
        let Some((n, how)) = AT.with(|at| at.get()) else {
            return;
        };
        if n > 1 {
            return AT.with(|at| at.set(Some((n - 1, how))));
        }
        disarm();
        match how {
            How::Panic => panic!("crash point"),
            // SAFETY: ends the process on the spot, the lock held.
            How::Exit => unsafe { libc::_exit(3) },
            How::Stop => {
                use std::io::Write;
                let mut out = std::io::stdout();
                let _ = out.write_all(b"holding the lock\n");
                let _ = out.flush();
                loop {
                    std::thread::park();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_every_word_newest_first() {
        let mut buf = vec![0u64; 64];
        // SAFETY: the buffer outlives the test's uses of it.
        let mem = unsafe { Mem::new(buf.as_mut_ptr().cast(), 64 * 8) };
        let tx = Tx::new(
            mem,
            JournalAt {
                len_off: 0,
                entries_off: 8,
                capacity: 8,
            },
        );
        mem.w64_raw(400, 5);
        mem.w32_raw(408, 6);
        tx.w64(400, 50);
        tx.w32(408, 60);
        tx.w64(400, 500);
        tx.w32(412, 0); // unchanged: not logged
        assert_eq!(mem.r64(0), 3);
        tx.rollback();
        assert_eq!((mem.r64(400), mem.r32(408)), (5, 6));
        assert!(!tx.pending());
        tx.w64(400, 7);
        tx.commit();
        tx.rollback();
        assert_eq!(mem.r64(400), 7);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn an_offset_outside_the_region_stops() {
        let mut buf = vec![0u64; 4];
        // SAFETY: the buffer outlives the test's uses of it.
        let mem = unsafe { Mem::new(buf.as_mut_ptr().cast(), 32) };
        mem.r64(32);
    }
}
