//! Fuzz target: arbitrary bytes as a session record read back from a
//! store (Redis, SQLite, a shared zone: untrusted), through
//! axkit-session's `parse_record`. Checks that it never panics; that no
//! allocation it makes is out of proportion to the bytes it was given (a
//! length or count in the record must be checked against them before
//! memory is reserved for it); and that a record it accepts is written
//! back (`encode_record`) in no more bytes, with the same times and id,
//! into a record that reads back and writes out the same again.
//!
//! Input layout: the whole input is the record.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use axkit_session::fuzzing::{encode_record, parse_record};
use libfuzzer_sys::fuzz_target;

/// The system allocator, noting the largest allocation made while
/// `COUNTING`.
struct Largest;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LARGEST.fetch_max(layout.size(), Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Relaxed) {
            LARGEST.fetch_max(new_size, Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

fuzz_target!(|data: &[u8]| {
    LARGEST.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    let record = parse_record(data);
    COUNTING.store(false, Relaxed);
    // A table's pair of values is 64 bytes, and takes at least two of the
    // record's: 32 times its length, with room for small tables.
    let largest = LARGEST.load(Relaxed);
    assert!(
        largest <= 32 * data.len() + 256,
        "{largest} bytes allocated for a record of {}",
        data.len()
    );

    let Some((created, touched, id, pairs)) = record else {
        return;
    };
    let written = encode_record(created, touched, &id, &pairs).expect("what was read is written");
    assert!(written.len() <= data.len());
    let (c, t, i, p) = parse_record(&written).expect("a record written reads back");
    assert_eq!((c, t, i), (created, touched, id));
    assert_eq!(encode_record(c, t, &i, &p).unwrap(), written);
});
