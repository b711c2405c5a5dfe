//! RFC 9111's rules, as pure functions: parsing `Cache-Control`, whether a
//! response may be stored, how long it stays fresh (explicit freshness
//! only: no heuristics), and RFC 9110's conditional requests evaluated
//! against a stored entry.

use std::time::{Duration, SystemTime};

/// The `Cache-Control` directives the cache acts on. Unknown directives
/// are ignored, as RFC 9111 §5.2.3 says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
}

impl CacheControl {
    /// Every `Cache-Control` field value, joined. A directive whose
    /// argument is not a number counts as absent, except `max-age` and
    /// `s-maxage`, whose bad argument means "stale" (RFC 9111 §4.2.1).
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>) -> CacheControl {
        let mut cc = CacheControl::default();
        for value in values {
            for item in value.split(',') {
                let (name, arg) = match item.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (item.trim(), None),
                };
                let secs = || arg.and_then(delta_seconds);
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => cc.no_store = true,
                    // `no-cache="field"` and `private="field"` name fields
                    // a cache would have to drop; the whole response is
                    // treated so, which is the safe reading.
                    "no-cache" => cc.no_cache = true,
                    "private" => cc.private = true,
                    "public" => cc.public = true,
                    "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                    "max-age" => cc.max_age = Some(secs().unwrap_or(0)),
                    "s-maxage" => cc.s_maxage = Some(secs().unwrap_or(0)),
                    "stale-while-revalidate" => cc.stale_while_revalidate = secs(),
                    "stale-if-error" => cc.stale_if_error = secs(),
                    _ => {}
                }
            }
        }
        cc
    }
}

/// The most seconds a `delta-seconds` value counts for: 2^31, as RFC 9111
/// §1.2.2 says a larger one, or one that overflows, is to be taken. Times
/// are kept in milliseconds in a `u64`, which then cannot overflow either.
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// A `delta-seconds` value (`Cache-Control` arguments, `Age`): digits
/// only, at most [`MAX_DELTA_SECONDS`].
pub fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0, |n: u64, b| {
        (n * 10 + u64::from(b - b'0')).min(MAX_DELTA_SECONDS)
    }))
}

/// The statuses stored (RFC 9111 §4.2.2's heuristically cacheable ones
/// that make sense without ranges; 206 is never stored: the cache keeps
/// whole bodies only).
pub fn cacheable_status(status: u16) -> bool {
    matches!(status, 200 | 203 | 204 | 300 | 301 | 308 | 404 | 410)
}

/// Why a response is not stored, or how long it is fresh for.
#[derive(Debug, PartialEq, Eq)]
pub enum Storable {
    /// Fresh for this long after it was generated (0: stale at once, kept
    /// to be revalidated).
    Yes(Duration),
    No(&'static str),
}

/// The response facts [`storable`] decides on.
pub struct ResponseFacts<'a> {
    pub status: u16,
    pub cc: &'a CacheControl,
    pub expires: Option<&'a str>,
    pub date: Option<SystemTime>,
    pub vary_star: bool,
    pub set_cookie: bool,
    /// The request carried `Authorization`.
    pub authorized: bool,
    /// The request said `Cache-Control: no-store`.
    pub request_no_store: bool,
}

/// RFC 9111 §3 for a shared cache, with heuristic freshness off: only a
/// response that says how long it is fresh is stored.
pub fn storable(f: &ResponseFacts<'_>, now: SystemTime) -> Storable {
    if !cacheable_status(f.status) {
        return Storable::No("status");
    }
    if f.request_no_store || f.cc.no_store {
        return Storable::No("no-store");
    }
    if f.cc.private {
        return Storable::No("private");
    }
    if f.authorized && !(f.cc.public || f.cc.s_maxage.is_some() || f.cc.must_revalidate) {
        return Storable::No("authorization");
    }
    if f.vary_star {
        return Storable::No("vary *");
    }
    // A response that sets a cookie is somebody's: it is never stored,
    // whatever it says (many applications forget `private`).
    if f.set_cookie {
        return Storable::No("set-cookie");
    }
    let lifetime = if let Some(s) = f.cc.s_maxage {
        Duration::from_secs(s)
    } else if let Some(m) = f.cc.max_age {
        Duration::from_secs(m)
    } else if let Some(expires) = f.expires {
        // An Expires that cannot be read means "already expired".
        let base = f.date.unwrap_or(now);
        axkit_http::parse_http_date(expires)
            .and_then(|t| t.duration_since(base).ok())
            .unwrap_or_default()
    } else {
        return Storable::No("no explicit freshness");
    };
    Storable::Yes(if f.cc.no_cache {
        Duration::ZERO
    } else {
        lifetime
    })
}

/// Whether an entity tag matches one in an `If-None-Match` list (weak
/// comparison, RFC 9110 §13.1.2).
pub fn etag_matches(list: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let etag = bare(etag);
    list.trim() == "*" || list.split(',').any(|t| bare(t) == etag)
}

/// RFC 9110 §13.2.2 for GET and HEAD against a stored response: whether
/// the client's `If-None-Match` (or, without it, `If-Modified-Since`)
/// says it already has it, so that 304 answers.
pub fn not_modified(
    if_none_match: Option<&str>,
    if_modified_since: Option<&str>,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> bool {
    if let Some(list) = if_none_match {
        return etag.is_some_and(|e| etag_matches(list, e));
    }
    // A date later than now is not one the client can have had from us
    // (RFC 9110 §13.1.3): ignored, as nginx and Apache do, rather than a
    // 304 for every later change.
    let since = if_modified_since
        .and_then(axkit_http::parse_http_date)
        .filter(|since| *since <= SystemTime::now());
    match (since, last_modified.and_then(axkit_http::parse_http_date)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(cc: &CacheControl) -> ResponseFacts<'_> {
        ResponseFacts {
            status: 200,
            cc,
            expires: None,
            date: None,
            vary_star: false,
            set_cookie: false,
            authorized: false,
            request_no_store: false,
        }
    }

    #[test]
    fn parses_directives() {
        let cc = CacheControl::parse(
            [
                "public, max-age=60",
                "stale-while-revalidate=5, stale-if-error=\"30\", x=1",
            ]
            .into_iter(),
        );
        assert!(cc.public);
        assert_eq!(cc.max_age, Some(60));
        assert_eq!(cc.stale_while_revalidate, Some(5));
        assert_eq!(cc.stale_if_error, Some(30));
        assert_eq!(
            CacheControl::parse(["max-age=soon"].into_iter()).max_age,
            Some(0)
        );
        assert!(CacheControl::parse(["No-Store"].into_iter()).no_store);
    }

    /// Seen writing the `cache_policy` fuzz target: a large argument
    /// overflowed the milliseconds the cache keeps (`* 1000` on a `u64`),
    /// and one past `u64::MAX` made `max-age` 0 instead of 2^31 s (RFC
    /// 9111 §1.2.2).
    #[test]
    fn large_arguments_are_two_to_the_31() {
        let cc = CacheControl::parse(
            [
                "max-age=18446744073709551615, stale-while-revalidate=99999999999999999999999",
                "s-maxage=2147483649, stale-if-error=\"2147483648\"",
            ]
            .into_iter(),
        );
        assert_eq!(cc.max_age, Some(MAX_DELTA_SECONDS));
        assert_eq!(cc.s_maxage, Some(MAX_DELTA_SECONDS));
        assert_eq!(cc.stale_while_revalidate, Some(MAX_DELTA_SECONDS));
        assert_eq!(cc.stale_if_error, Some(MAX_DELTA_SECONDS));
        assert_eq!(delta_seconds("2147483647"), Some(2147483647));
        assert_eq!(delta_seconds("+5"), None);
        assert_eq!(delta_seconds(""), None);
    }

    #[test]
    fn freshness_is_explicit_only() {
        let now = SystemTime::now();
        let none = CacheControl::default();
        assert_eq!(
            storable(&facts(&none), now),
            Storable::No("no explicit freshness")
        );
        let cc = CacheControl::parse(["max-age=10, s-maxage=20"].into_iter());
        assert_eq!(
            storable(&facts(&cc), now),
            Storable::Yes(Duration::from_secs(20))
        );
        let date = axkit_http::fmt_http_date(now);
        let later = axkit_http::fmt_http_date(now + Duration::from_secs(100));
        let mut f = facts(&none);
        f.expires = Some(&later);
        f.date = axkit_http::parse_http_date(&date);
        assert_eq!(storable(&f, now), Storable::Yes(Duration::from_secs(100)));
        f.expires = Some("0");
        assert_eq!(storable(&f, now), Storable::Yes(Duration::ZERO));
    }

    #[test]
    fn refusals() {
        let now = SystemTime::now();
        let cc = CacheControl::parse(["max-age=10"].into_iter());
        let mut f = facts(&cc);
        f.authorized = true;
        assert_eq!(storable(&f, now), Storable::No("authorization"));
        let public = CacheControl::parse(["public, max-age=10"].into_iter());
        let mut f = facts(&public);
        f.authorized = true;
        assert_eq!(storable(&f, now), Storable::Yes(Duration::from_secs(10)));
        for (v, why) in [
            ("private, max-age=9", "private"),
            ("no-store, max-age=9", "no-store"),
        ] {
            let cc = CacheControl::parse([v].into_iter());
            assert_eq!(storable(&facts(&cc), now), Storable::No(why));
        }
        let mut f = facts(&cc);
        f.status = 206;
        assert_eq!(storable(&f, now), Storable::No("status"));
        let mut f = facts(&cc);
        f.set_cookie = true;
        assert_eq!(storable(&f, now), Storable::No("set-cookie"));
    }

    #[test]
    fn conditionals() {
        assert!(etag_matches("\"a\", W/\"b\"", "\"b\""));
        assert!(etag_matches("*", "\"x\""));
        assert!(!etag_matches("\"a\"", "\"b\""));
        let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(not_modified(None, Some(lm), None, Some(lm)));
        assert!(!not_modified(
            Some("\"x\""),
            Some(lm),
            Some("\"y\""),
            Some(lm)
        ));
        assert!(!not_modified(None, None, Some("\"y\""), Some(lm)));
        let future = "Fri, 01 Jan 2100 00:00:00 GMT";
        assert!(!not_modified(None, Some(future), None, Some(lm)));
    }
}
