//! Fuzz target: a response's and a request's caching fields, as an origin
//! server and a client send them, through axkit-cache's RFC 9111 rules:
//! `CacheControl::parse`, `delta_seconds` (its arguments, `Age`),
//! `storable`, `etag_matches` and `not_modified`. Checks that nothing
//! panics, and:
//!
//! - `Cache-Control` reads the same from several fields as from their
//!   values joined by commas (RFC 9110 §5.3), and in any case;
//! - every duration is at most 2^31 s (RFC 9111 §1.2.2), so that the
//!   milliseconds the cache keeps, and the freshness `storable` gives, fit
//!   in a `u64`; `delta_seconds` takes digits only, their value capped;
//! - `storable` never stores what `no-store`, `private`, `Set-Cookie` or
//!   `Vary: *` forbid, stores `no-cache` as stale at once, and takes
//!   `s-maxage` over `max-age`;
//! - an entity tag matches itself, weak or not, and `*` matches any;
//!   `If-None-Match` decides alone when present; a date not modified since
//!   itself is not modified.
//!
//! Input layout: byte 0 holds flags (authorized, request no-store,
//! Set-Cookie, `Vary: *`) and, in its high nibble, the status; the rest is
//! text, lines split at `\n`: `Cache-Control` (fields split at `\r`),
//! `Expires`, `Date`, `If-None-Match`, `If-Modified-Since`, the stored
//! entry's `ETag`, its `Last-Modified`.

#![no_main]

use std::time::{Duration, SystemTime};

use axkit_cache::fuzzing::{
    delta_seconds, etag_matches, not_modified, storable, ResponseFacts, Storable, MAX_DELTA_SECONDS,
};
use axkit_cache::CacheControl;
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 16] = [
    200, 203, 204, 206, 300, 301, 302, 304, 307, 308, 404, 410, 500, 503, 100, 999,
];

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let mut line = || lines.next();
    let cache_control: Vec<&str> = line().map_or(Vec::new(), |l| l.split('\r').collect());
    let (expires, date, if_none_match, if_modified_since, etag, last_modified) =
        (line(), line(), line(), line(), line(), line());

    // Cache-Control.
    let cc = CacheControl::parse(cache_control.iter().copied());
    let joined = cache_control.join(",");
    assert_eq!(CacheControl::parse(std::iter::once(joined.as_str())), cc);
    let upper: Vec<String> = cache_control
        .iter()
        .map(|v| v.to_ascii_uppercase())
        .collect();
    assert_eq!(CacheControl::parse(upper.iter().map(String::as_str)), cc);
    for secs in [
        cc.max_age,
        cc.s_maxage,
        cc.stale_while_revalidate,
        cc.stale_if_error,
    ]
    .into_iter()
    .flatten()
    {
        assert!(secs <= MAX_DELTA_SECONDS, "{secs} s");
    }
    for word in text.split([',', '=', '\n', '\r', '"', ' ']) {
        match delta_seconds(word) {
            Some(n) => {
                assert!(!word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()));
                if let Ok(v) = word.parse::<u64>() {
                    assert_eq!(n, v.min(MAX_DELTA_SECONDS));
                } else {
                    assert_eq!(n, MAX_DELTA_SECONDS);
                }
            }
            None => assert!(word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit())),
        }
    }

    // Whether it is stored, and for how long.
    let status = STATUSES[usize::from(flags >> 4)];
    let facts = ResponseFacts {
        status,
        cc: &cc,
        expires,
        date: date.and_then(axkit_http::parse_http_date),
        vary_star: flags & 8 != 0,
        set_cookie: flags & 4 != 0,
        authorized: flags & 1 != 0,
        request_no_store: flags & 2 != 0,
    };
    let now = SystemTime::now();
    match storable(&facts, now) {
        Storable::Yes(fresh) => {
            assert!(!(cc.no_store || cc.private || facts.request_no_store));
            assert!(!(facts.set_cookie || facts.vary_star));
            assert!(u64::try_from(fresh.as_millis()).is_ok());
            if cc.no_cache {
                assert_eq!(fresh, Duration::ZERO);
            } else if let Some(s) = cc.s_maxage.or(cc.max_age) {
                assert_eq!(fresh, Duration::from_secs(s));
            }
        }
        Storable::No(_) => {}
    }

    // Conditional requests.
    if let Some(e) = etag {
        if !e.contains(',') {
            assert!(etag_matches(e, e));
            assert!(etag_matches(&format!("\"other\", {e}"), e));
            if e == e.trim() {
                assert!(etag_matches(&format!("W/{e}"), e));
            }
        }
        assert!(etag_matches(" * ", e));
        if let Some(list) = if_none_match {
            let _ = etag_matches(list, e);
        }
    }
    let answer = not_modified(if_none_match, if_modified_since, etag, last_modified);
    if let Some(list) = if_none_match {
        assert_eq!(answer, not_modified(Some(list), None, etag, last_modified));
        assert_eq!(answer, etag.is_some_and(|e| etag_matches(list, e)));
    }
    // A date answers for itself, unless it is later than now (RFC 9110
    // §13.1.3: not one the client can have had from us).
    if let Some(d) = last_modified {
        assert_eq!(
            not_modified(None, Some(d), None, Some(d)),
            axkit_http::parse_http_date(d).is_some_and(|t| t <= SystemTime::now())
        );
    }
});
