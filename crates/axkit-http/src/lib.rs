//! The HTTP/1.1 wire format for AxKit: request-head parsing with strict
//! RFC 9112 validation, body framing (Content-Length and chunked), response-head
//! encoding, a cached `Date`, and the headers a front proxy sends: the PROXY
//! protocol (v1 and v2), `Forwarded` and `X-Forwarded-For`.
//!
//! This crate does no I/O so that every byte-level decision can be unit-tested
//! and fuzzed in isolation. It is deliberately strict: every ambiguity a
//! lenient parser tolerates is a way for two parsers in a chain (proxy and
//! origin) to disagree about where a request ends, i.e. request smuggling.
//! Nothing here may panic on any input; errors carry the status to answer with
//! and the connection is expected to close after any of them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chunked;
mod coding;
mod date;
mod fields;
mod forwarded;
mod head_end;
mod path;
mod proxy;
mod request;
mod response;

#[cfg(test)]
mod chunked_tests;
#[cfg(test)]
mod forwarded_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod response_tests;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;

pub use bytes;

pub use chunked::{ChunkStep, ChunkedDecoder};
pub use coding::coding_quality;
pub use date::{fmt_http_date, http_date, parse_http_date};
pub use fields::{line_end, scan_field_lines, FieldError};
pub use forwarded::{
    forwarded_for_entries, parse_forwarded, parse_node, scheme, strip_port, valid_host,
    ForwardedElement, Node,
};
pub use head_end::blank_line_end;
pub use path::{encode_path, normalize_path};
pub use proxy::{parse_proxy_header, ProxyHeader, MAX_PROXY_HEADER, PROXY_V2_SIGNATURE};
pub use request::{parse_request_head, parse_request_head_reusing, FieldSpan, RequestHead};
pub use response::{
    bodiless, hop_by_hop, reason_phrase, same_field, valid_header_name, valid_header_name_const,
    valid_header_value, write_chunk_header, write_header, write_status_line, LAST_CHUNK,
};

/// The protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl Version {
    /// The version as it appears on the wire, e.g. `"HTTP/1.0"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Size limits applied while parsing a request head.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line, excluding its CRLF (414 beyond).
    pub max_request_line: usize,
    /// Largest header section: every field line plus the terminating empty
    /// line, CRLFs included (431 beyond).
    pub max_header_bytes: usize,
    /// Most header field lines (431 beyond).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_header_bytes: 16384,
            max_headers: 100,
        }
    }
}

/// A protocol error: the status to answer with (400, 413, 414, 431, 501,
/// 505...) and a short reason for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// The HTTP status code to answer with.
    pub status: u16,
    /// A short, static description for the log (never sent to clients
    /// verbatim by this crate).
    pub reason: &'static str,
}

impl HttpError {
    pub(crate) const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status,
            reason_phrase(self.status),
            self.reason
        )
    }
}

impl std::error::Error for HttpError {}

/// How the body of a request is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (no framing headers, or `Content-Length: 0`).
    None,
    /// Exactly this many bytes follow the head; always greater than zero.
    Length(u64),
    /// A chunked body follows; decode it with [`ChunkedDecoder`].
    Chunked,
}

/// Digit-by-digit Content-Length parser: only ASCII digits, no sign, no
/// whitespace inside, overflow-checked (u64). `None` if invalid.
///
/// Deliberately not `str::parse::<u64>`, which accepts a leading `+`: a
/// front end that reads `+5` differently is a smuggling vector.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// RFC 9110 `tchar`, as a table because it sits on the hot path of
/// method and header-name validation.
const TCHAR: [bool; 256] = alnum_and(b"!#$%&'*+-.^_`|~");

/// A byte-class table: ASCII letters and digits plus `extra`.
pub(crate) const fn alnum_and(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

pub(crate) const fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `field-vchar` or the whitespace allowed between them: HTAB, SP, VCHAR,
/// obs-text. Everything else (NUL, CR, LF, other CTLs, DEL) is rejected.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// Every byte of `v` passes [`is_field_value_byte`]. This runs over every
/// response header a plugin sets, so it looks at eight bytes at a time
/// (the last word overlapping the one before) with [`ctl_or_del`]. Only a
/// value with a word that may hold a bad byte (or an HTAB, which is
/// allowed) is looked at byte by byte, as is one shorter than a word.
pub(crate) fn is_field_value(v: &[u8]) -> bool {
    let suspect = |at: usize| match v.get(at..at + 8).map(<[u8; 8]>::try_from) {
        Some(Ok(word)) => ctl_or_del(word),
        _ => 1,
    };
    let Some(last) = v.len().checked_sub(8) else {
        return v.iter().all(|&b| is_field_value_byte(b));
    };
    let mut found = suspect(last);
    let mut at = 0;
    while at < last {
        found |= suspect(at);
        at += 8;
    }
    found == 0 || v.iter().all(|&b| is_field_value_byte(b))
}

/// The bytes of `word` below 0x20 (CTLs, HTAB among them) or equal to 0x7f
/// (DEL): zero if there is none; bytes from 0x80 up are obs-text, allowed.
/// Otherwise the lowest set bit is the high bit of the first such byte
/// (little-endian: in memory order), which is exact, as no borrow reaches
/// it from a lower byte; bits above it may be false alarms.
pub(crate) fn ctl_or_del(word: [u8; 8]) -> u64 {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let w = u64::from_le_bytes(word);
    // "hasless" in Bit Twiddling Hacks, exact for a bound up to 0x80, and
    // a zero byte after xor with 0x7f.
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let del = w ^ (ONES * 0x7f);
    below_space | (del.wrapping_sub(ONES) & !del & HIGH)
}

/// Strip optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_value_check_agrees_with_the_byte_rule() {
        for b in 0..=255u8 {
            assert_eq!(is_field_value(&[b]), is_field_value_byte(b), "{b:#x}");
            let mut long = vec![b'a'; 70];
            long[37] = b;
            assert_eq!(is_field_value(&long), is_field_value_byte(b), "{b:#x}");
            // Each place in a word and in the tail, among neighbours that
            // could upset a word-wide test (obs-text, the edges of the
            // ranges).
            for fill in [b'a', 0x80, 0xff, b' ', b'~', b'\t'] {
                for at in 0..19 {
                    let mut v = vec![fill; 19];
                    v[at] = b;
                    assert_eq!(
                        is_field_value(&v),
                        is_field_value_byte(b),
                        "{b:#x} at {at} among {fill:#x}"
                    );
                }
            }
        }
        assert!(is_field_value(b""));
    }

    #[test]
    fn content_length_parser() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"007"), Some(7));
        assert_eq!(
            parse_content_length(b"18446744073709551615"),
            Some(u64::MAX)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"0x5",
            b"5 5",
            b" 5",
            b"5,5",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn version_and_error_display() {
        assert_eq!(Version::Http10.as_str(), "HTTP/1.0");
        assert_eq!(Version::Http11.as_str(), "HTTP/1.1");
        let e = HttpError::new(400, "bare CR");
        assert_eq!(e.to_string(), "400 Bad Request: bare CR");
    }

    #[test]
    fn ows_trim() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
    }
}
