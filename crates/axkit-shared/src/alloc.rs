//! The allocator inside a zone: a two-level segregated fit (TLSF) over the
//! zone's arena, in 16-byte units. Allocating and freeing take constant
//! time whatever the zone's size or state (two bitmap scans and a few list
//! links), which is what bounds a mutation's time under the lock; freed
//! neighbours coalesce at once, so fragmentation stays low without a
//! compaction pass.
//!
//! Every block starts with a header: its size in units, the unit of the
//! block before it in memory (to coalesce backwards) and its state. A free
//! block keeps its list links at bytes 16 and 20, within its first 24
//! bytes (see `mem.rs` for why that matters). Free blocks are kept in
//! lists by size class: the first level is the power of two of the size,
//! the second splits each power of two in 16; a bitmap per level finds the
//! smallest non-empty class that fits in one instruction each.
//!
//! Offsets are `u32` units, 0 meaning none (unit 0 is in the zone's
//! header, never a block): a zone of up to 64 GiB.

use crate::mem::Tx;

/// Bytes per unit.
pub(crate) const UNIT: usize = 16;
/// The smallest block: a header and the two free-list links.
pub(crate) const MIN_BLOCK: u32 = 2;

const SL_LOG: u32 = 4;
const SL: usize = 1 << SL_LOG;
const FL: usize = 32;

// Block header fields (bytes from the block's start).
const B_SIZE: usize = 0;
const B_PREV: usize = 4;
const B_STATE: usize = 8;
const B_NEXT_FREE: usize = 16;
const B_PREV_FREE: usize = 20;

const FREE: u32 = 1;
const USED: u32 = 2;

// The allocator's header (bytes from its start).
const H_FL_MAP: usize = 0;
const H_SL_MAP: usize = 8;
const H_HEADS: usize = H_SL_MAP + FL * 4;
/// Bytes the allocator's header takes.
pub(crate) const HEADER_SIZE: usize = H_HEADS + FL * SL * 4;

/// The byte offset of unit `u`.
#[inline]
pub(crate) fn off(u: u32) -> usize {
    (u as usize) * UNIT
}

/// The class (first level, second level) a block of `size` units is
/// kept in.
fn class(size: u32) -> (usize, usize) {
    if size < SL as u32 {
        (0, size as usize)
    } else {
        let f = 31 - size.leading_zeros();
        (
            (f - SL_LOG + 1) as usize,
            ((size >> (f - SL_LOG)) as usize) - SL,
        )
    }
}

/// The arena's allocator, over one mutation.
pub(crate) struct Heap {
    tx: Tx,
    header: usize,
    /// The arena's first unit and the unit after its last.
    start: u32,
    end: u32,
}

impl Heap {
    pub fn new(tx: Tx, header: usize, start: u32, end: u32) -> Heap {
        Heap {
            tx,
            header,
            start,
            end,
        }
    }

    /// Format: the whole arena one free block (a fresh, zeroed region,
    /// outside any journal).
    pub fn format(&self) {
        let mem = self.tx.mem;
        let b = off(self.start);
        mem.w32_raw(b + B_SIZE, self.end - self.start);
        mem.w32_raw(b + B_PREV, 0);
        mem.w32_raw(b + B_STATE, FREE);
        let (fl, sl) = class(self.end - self.start);
        mem.w32_raw(b + B_NEXT_FREE, 0);
        mem.w32_raw(b + B_PREV_FREE, 0);
        mem.w32_raw(self.head(fl, sl), self.start);
        mem.w32_raw(self.header + H_SL_MAP + fl * 4, 1 << sl);
        mem.w32_raw(self.header + H_FL_MAP, 1 << fl);
    }

    fn head(&self, fl: usize, sl: usize) -> usize {
        self.header + H_HEADS + (fl * SL + sl) * 4
    }

    pub fn size(&self, block: u32) -> u32 {
        self.tx.mem.r32(off(block) + B_SIZE)
    }

    fn is_free(&self, block: u32) -> bool {
        self.tx.mem.r32(off(block) + B_STATE) == FREE
    }

    fn insert(&self, block: u32) {
        let (tx, mem) = (self.tx, self.tx.mem);
        let (fl, sl) = class(self.size(block));
        let head = mem.r32(self.head(fl, sl));
        let b = off(block);
        tx.w32(b + B_STATE, FREE);
        tx.w32(b + B_NEXT_FREE, head);
        tx.w32(b + B_PREV_FREE, 0);
        if head != 0 {
            tx.w32(off(head) + B_PREV_FREE, block);
        }
        tx.w32(self.head(fl, sl), block);
        let sl_map = self.header + H_SL_MAP + fl * 4;
        tx.w32(sl_map, mem.r32(sl_map) | 1 << sl);
        tx.w32(
            self.header + H_FL_MAP,
            mem.r32(self.header + H_FL_MAP) | 1 << fl,
        );
    }

    fn remove(&self, block: u32) {
        let (tx, mem) = (self.tx, self.tx.mem);
        let (fl, sl) = class(self.size(block));
        let b = off(block);
        let next = mem.r32(b + B_NEXT_FREE);
        let prev = mem.r32(b + B_PREV_FREE);
        if next != 0 {
            tx.w32(off(next) + B_PREV_FREE, prev);
        }
        if prev != 0 {
            tx.w32(off(prev) + B_NEXT_FREE, next);
        } else {
            assert_eq!(mem.r32(self.head(fl, sl)), block, "shared zone: free list");
            tx.w32(self.head(fl, sl), next);
            if next == 0 {
                let sl_map = self.header + H_SL_MAP + fl * 4;
                let left = mem.r32(sl_map) & !(1 << sl);
                tx.w32(sl_map, left);
                if left == 0 {
                    let fl_map = self.header + H_FL_MAP;
                    tx.w32(fl_map, mem.r32(fl_map) & !(1 << fl));
                }
            }
        }
    }

    /// A free block of at least `units`, or None.
    fn find(&self, units: u32) -> Option<u32> {
        let mem = self.tx.mem;
        // Round up to the next class boundary: any block of that class or
        // above fits.
        let rounded = if units < SL as u32 {
            units
        } else {
            let f = 31 - units.leading_zeros();
            units.checked_add((1 << (f - SL_LOG)) - 1)?
        };
        let (fl, sl) = class(rounded);
        let sl_map = mem.r32(self.header + H_SL_MAP + fl * 4) & (!0u32).checked_shl(sl as u32)?;
        if sl_map != 0 {
            let sl = sl_map.trailing_zeros() as usize;
            return Some(mem.r32(self.head(fl, sl)));
        }
        let above = (!0u32).checked_shl(fl as u32 + 1).unwrap_or(0);
        let fl_map = mem.r32(self.header + H_FL_MAP) & above;
        if fl_map != 0 {
            let fl = fl_map.trailing_zeros() as usize;
            let sl = mem.r32(self.header + H_SL_MAP + fl * 4).trailing_zeros() as usize;
            return Some(mem.r32(self.head(fl, sl)));
        }
        // Nothing a class above: the first block of the exact class may
        // still be big enough (it matters when the zone is nearly full).
        let (fl, sl) = class(units);
        let first = mem.r32(self.head(fl, sl));
        (first != 0 && self.size(first) >= units).then_some(first)
    }

    /// Allocate a block of `units` (at least [`MIN_BLOCK`]); None when no
    /// free block is big enough.
    pub fn alloc(&self, units: u32) -> Option<u32> {
        let units = units.max(MIN_BLOCK);
        let block = self.find(units)?;
        let tx = self.tx;
        self.remove(block);
        let size = self.size(block);
        if size - units >= MIN_BLOCK {
            let rest = block + units;
            let r = off(rest);
            tx.w32(r + B_SIZE, size - units);
            tx.w32(r + B_PREV, block);
            let after = rest + (size - units);
            if after < self.end {
                tx.w32(off(after) + B_PREV, rest);
            }
            self.insert(rest);
            tx.w32(off(block) + B_SIZE, units);
        }
        tx.w32(off(block) + B_STATE, USED);
        Some(block)
    }

    /// Free `block`, merging it with free neighbours.
    pub fn free(&self, block: u32) {
        let (tx, mem) = (self.tx, self.tx.mem);
        assert_eq!(
            mem.r32(off(block) + B_STATE),
            USED,
            "shared zone: double free"
        );
        let mut start = block;
        let mut size = self.size(block);
        let prev = mem.r32(off(block) + B_PREV);
        if prev != 0 && self.is_free(prev) {
            self.remove(prev);
            start = prev;
            size += self.size(prev);
        }
        let next = block + self.size(block);
        if next < self.end && self.is_free(next) {
            self.remove(next);
            size += self.size(next);
        }
        tx.w32(off(start) + B_SIZE, size);
        let after = start + size;
        if after < self.end {
            tx.w32(off(after) + B_PREV, start);
        }
        self.insert(start);
    }

    /// The largest block the arena could ever give.
    pub fn capacity(&self) -> u32 {
        self.end - self.start
    }

    /// Walk every block and check the structure (tests): sizes tile the
    /// arena, back links agree, no two free blocks touch, every free block
    /// is in the list of its class and the bitmaps say so. Returns the
    /// used blocks.
    #[cfg(test)]
    pub fn check(&self) -> Vec<u32> {
        let mem = self.tx.mem;
        let mut used = Vec::new();
        let mut free = std::collections::HashSet::new();
        let (mut at, mut prev, mut prev_free) = (self.start, 0, false);
        while at < self.end {
            let size = self.size(at);
            assert!(size >= MIN_BLOCK, "block {at} of size {size}");
            assert_eq!(mem.r32(off(at) + B_PREV), prev, "back link of {at}");
            let is_free = self.is_free(at);
            assert!(!(is_free && prev_free), "free blocks {prev} and {at} touch");
            if is_free {
                free.insert(at);
            } else {
                assert_eq!(mem.r32(off(at) + B_STATE), USED);
                used.push(at);
            }
            (prev, prev_free) = (at, is_free);
            at += size;
        }
        assert_eq!(at, self.end, "blocks overrun the arena");
        let mut listed = 0;
        for fl in 0..FL {
            let sl_map = mem.r32(self.header + H_SL_MAP + fl * 4);
            let fl_bit = mem.r32(self.header + H_FL_MAP) & 1 << fl != 0;
            assert_eq!(fl_bit, sl_map != 0, "first-level bit {fl}");
            for sl in 0..SL {
                let mut b = mem.r32(self.head(fl, sl));
                assert_eq!(b != 0, sl_map & 1 << sl != 0, "bit {fl}/{sl}");
                let mut back = 0;
                while b != 0 {
                    assert!(free.contains(&b), "listed block {b} is not free");
                    assert_eq!(class(self.size(b)), (fl, sl), "block {b} in the wrong list");
                    assert_eq!(mem.r32(off(b) + B_PREV_FREE), back);
                    listed += 1;
                    back = b;
                    b = mem.r32(off(b) + B_NEXT_FREE);
                }
            }
        }
        assert_eq!(listed, free.len(), "free blocks missing from the lists");
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::{JournalAt, Mem};

    /// A heap over a plain buffer: header at 0, arena from unit 256. Its
    /// journal is emptied at every call of `alloc` and `free` (the tests
    /// check the structure, not the journal).
    fn heap(buf: &mut Vec<u64>, units: u32) -> Heap {
        buf.resize((256 + units as usize) * UNIT / 8 + 2048, 0);
        // SAFETY: the buffer outlives the heap in each test.
        let mem = unsafe { Mem::new(buf.as_mut_ptr().cast(), buf.len() * 8) };
        let journal = JournalAt {
            len_off: (256 + units as usize) * UNIT,
            entries_off: (256 + units as usize) * UNIT + 8,
            capacity: 1000,
        };
        let h = Heap::new(Tx::new(mem, journal), 0, 256, 256 + units);
        h.format();
        h
    }

    impl Heap {
        fn a(&self, units: u32) -> Option<u32> {
            let b = self.alloc(units);
            self.tx.commit();
            b
        }

        fn f(&self, block: u32) {
            self.free(block);
            self.tx.commit();
        }
    }

    #[test]
    fn classes_cover_sizes_in_order() {
        let mut last = (0, 0);
        for size in 1..100_000u32 {
            let c = class(size);
            assert!(c >= last, "{size}");
            assert!(c.1 < SL);
            last = c;
        }
        assert_eq!(class(u32::MAX).0, FL - 4);
    }

    #[test]
    fn fill_free_and_reuse() {
        let mut buf = Vec::new();
        let h = heap(&mut buf, 1000);
        let mut blocks = Vec::new();
        while let Some(b) = h.a(10) {
            blocks.push(b);
        }
        assert_eq!(blocks.len(), 100);
        assert!(h.a(2).is_none());
        h.check();
        // Every other block freed: 500 units free, none of them adjacent.
        for b in blocks.iter().step_by(2) {
            h.f(*b);
        }
        h.check();
        assert!(h.a(11).is_none(), "fragmented: no 11-unit hole");
        let again = h.a(10).unwrap();
        assert!(blocks.contains(&again));
        h.f(again);
        // The rest freed: everything coalesces back into one block.
        for b in blocks.iter().skip(1).step_by(2) {
            h.f(*b);
        }
        assert!(h.check().is_empty());
        assert_eq!(h.a(1000), Some(256));
    }

    #[test]
    fn random_operations_keep_the_structure_sound() {
        let mut buf = Vec::new();
        let h = heap(&mut buf, 50_000);
        let mut live: Vec<(u32, u32)> = Vec::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for i in 0..20_000 {
            if rand(3) > 0 || live.is_empty() {
                let units = if rand(10) == 0 {
                    1 + rand(2000)
                } else {
                    1 + rand(40)
                } as u32;
                if let Some(b) = h.a(units) {
                    assert!(h.size(b) >= units.max(MIN_BLOCK));
                    live.push((b, h.size(b)));
                }
            } else {
                let (b, _) = live.swap_remove(rand(live.len() as u64) as usize);
                h.f(b);
            }
            if i % 1000 == 0 {
                let mut used = h.check();
                used.sort();
                let mut expect: Vec<u32> = live.iter().map(|(b, _)| *b).collect();
                expect.sort();
                assert_eq!(used, expect);
                // No two live blocks overlap.
                let mut spans: Vec<(u32, u32)> = live.clone();
                spans.sort();
                for w in spans.windows(2) {
                    assert!(w[0].0 + w[0].1 <= w[1].0);
                }
            }
        }
    }
}
