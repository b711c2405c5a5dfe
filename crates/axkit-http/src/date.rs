//! HTTP dates: the `Date` header value cached per thread, and formatting and
//! parsing of HTTP dates (wrapping httpdate, whose formatter panics outside
//! 1970..=9999, so times are clamped first).

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59Z, the last second httpdate can format.
const MAX_SECS: u64 = 253_402_300_799;

thread_local! {
    // (seconds since the epoch, formatted); u64::MAX never matches a real time.
    static CACHE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

fn format_secs(secs: u64) -> [u8; 29] {
    let t = UNIX_EPOCH + Duration::from_secs(secs.min(MAX_SECS));
    let s = httpdate::fmt_http_date(t);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    if s.len() == out.len() {
        out.copy_from_slice(s.as_bytes());
    }
    out
}

/// `secs` (since the epoch: the caller reads the clock, with whatever
/// precision the Date header needs) as an IMF-fixdate (29 bytes),
/// re-formatted only when the second changes, per thread; the server runs
/// one thread per worker, so this is about one formatting per second per
/// worker and no locking.
pub fn http_date(secs: u64) -> [u8; 29] {
    CACHE
        .try_with(|c| {
            let (cached_secs, cached) = c.get();
            if cached_secs == secs {
                cached
            } else {
                let fresh = format_secs(secs);
                c.set((secs, fresh));
                fresh
            }
        })
        // Only during thread teardown.
        .unwrap_or_else(|_| format_secs(secs))
}

/// Format `t` as an IMF-fixdate. Times before 1970 or after 9999 are clamped.
pub fn fmt_http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = format_secs(secs);
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse an HTTP date in any of the three formats RFC 9110 §5.6.7 requires a
/// recipient to accept. `None` if invalid.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}
