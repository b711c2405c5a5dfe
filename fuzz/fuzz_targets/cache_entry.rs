//! Fuzz target: bytes a shared cache tier gives back, which another machine,
//! another version or a corrupted file may have written, through what
//! axkit-cache reads them with: the encoded entry (`Object::decode`), the
//! disk tier's record around it, and memcached's reply line. Checks that
//! nothing panics, and:
//!
//! - `decode` allocates at most a small multiple of its input whatever its
//!   length fields claim (a counting allocator watches);
//! - `decode` takes only what `encode` writes: `encode` of what it accepts
//!   gives back exactly the input, and the encoding is self-delimiting (the
//!   input less its last byte, or with one more, is refused);
//! - what the cache computes from a decoded entry's times (age, staleness,
//!   how long to keep it, its size) does not overflow;
//! - a disk record is read as written: a live one is the magic, its expiry
//!   (still ahead) and the payload; any bytes recorded to expire at the end
//!   of time read back the same, recorded expired not at all;
//! - a memcached reply accepted ended in CRLF, is split into its words,
//!   does not report an error, and announces a value of a bounded size.
//!
//! Input layout: the whole input is what the tier gave back (each reader
//! gets all of it; the disk tier's payload goes on to `decode`, as it does
//! in the tier).

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axkit_cache::fuzzing::{disk_live, disk_record, memcached_reply, MEMCACHED_MAX_VALUE};
use axkit_cache::Object;
use libfuzzer_sys::fuzz_target;

/// The system allocator, counting the bytes live and the most live since
/// the count was last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `Object::decode`, and how many bytes it had live at most.
fn decode(bytes: &[u8]) -> (Option<Object>, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let object = Object::decode(bytes);
    (object, PEAK.load(Ordering::Relaxed) - before)
}

fn check_decode(bytes: &[u8]) {
    let (object, peak) = decode(bytes);
    // Each header takes a (String, String) of 48 bytes for at least 8 of
    // input, a Vec's growth at most triples that for a moment; the
    // strings and the body are copies of the input.
    assert!(
        peak <= 32 * bytes.len() + 4096,
        "{peak} bytes allocated to decode {}",
        bytes.len()
    );
    let Some(object) = object else {
        return;
    };
    assert_eq!(
        object.encode(),
        bytes,
        "decode took what encode never wrote"
    );
    assert_eq!(decode(&bytes[..bytes.len() - 1]).0, None);
    assert_eq!(decode(&[bytes, b"x"].concat()).0, None);
    let _ = object.size();
    if let Object::Response(entry) = &object {
        for now in [
            SystemTime::UNIX_EPOCH,
            SystemTime::now(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(u64::MAX),
        ] {
            let age = entry.age(now);
            assert!(age >= Duration::from_millis(entry.initial_age_ms));
            if let Some(over) = entry.staleness(now) {
                assert!(over <= age);
            }
        }
        let _ = entry.keep_for();
        let _ = entry.has_validators();
        let _ = entry.header("etag");
    }
}

fuzz_target!(|data: &[u8]| {
    check_decode(data);

    // The disk tier's record.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    if let Some(payload) = disk_live(data) {
        let until = u64::from_le_bytes(data[4..12].try_into().unwrap());
        assert_eq!(disk_record(until, payload), data);
        assert!(u128::from(until) > now.as_millis());
        check_decode(payload);
    }
    assert_eq!(disk_live(&disk_record(u64::MAX, data)), Some(data));
    assert_eq!(disk_live(&disk_record(0, data)), None);

    // memcached's reply line.
    match memcached_reply(data) {
        Ok((words, size)) => {
            let line = data.strip_suffix(b"\r\n").expect("a reply without CRLF");
            assert_eq!(words.join(" "), String::from_utf8_lossy(line));
            assert!(!words[0].ends_with("ERROR"));
            if let Some(size) = size {
                assert!(size <= MEMCACHED_MAX_VALUE);
                assert_eq!(words[1].parse::<usize>().ok(), Some(size));
            }
        }
        Err(_) => {
            let code = data.strip_suffix(b"\r\n").map(|line| {
                String::from_utf8_lossy(line)
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string()
            });
            assert!(
                code.as_deref().is_none_or(|c| c.ends_with("ERROR")),
                "refused {code:?}"
            );
        }
    }
});
