//! The HTTP semantics of serving a stored file, shared by the file-serving
//! plugins (`serve_file`, `typeless_uri`; the validators themselves, RFC
//! 9110 §8.8, are made once per open file by [`axkit::plugin::OpenFile`]):
//! conditional requests with their precedence (§13.2.2), byte ranges and
//! `If-Range` (§14), the `multipart/byteranges` layout (§14.6). Content
//! coding negotiation is `axkit_http::coding_quality`.
//!
//! Everything here is pure, so the rules are unit-tested below and the
//! plugins stay short. [`evaluate`] is public for plugins outside this
//! crate that answer conditional requests for what they make (the
//! `xslt` plugin's transformed files).

use std::time::SystemTime;

use axkit::plugin::Request;

/// Request state set by `uri_to_file` when nothing exists at the path
/// (found just now or remembered by its open-file cache), so that
/// `serve_file` answers 404 without looking again.
pub(crate) struct KnownMissing;

/// The result of evaluating a request's preconditions.
#[derive(Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the representation (possibly a range of it).
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// Which of the request fields that a stored file's answer depends on
/// (the preconditions, `Range`, `If-Range`) a request carries, found in
/// one pass over its field names: most requests carry none of them, and
/// looking each up by name would pass over every field once per name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Fields(u8);

impl Fields {
    pub(crate) const IF_MATCH: u8 = 1;
    pub(crate) const IF_NONE_MATCH: u8 = 2;
    pub(crate) const IF_MODIFIED_SINCE: u8 = 4;
    pub(crate) const IF_UNMODIFIED_SINCE: u8 = 8;
    pub(crate) const IF_RANGE: u8 = 16;
    pub(crate) const RANGE: u8 = 32;
    const PRECONDITIONS: u8 =
        Self::IF_MATCH | Self::IF_NONE_MATCH | Self::IF_MODIFIED_SINCE | Self::IF_UNMODIFIED_SINCE;

    pub(crate) fn of(req: &Request) -> Fields {
        let mut found = 0;
        for (name, _) in req.fields() {
            // By length first: the common fields (Host, Accept, User-Agent…)
            // have none of these lengths or fail on the first bytes.
            let (bit, canonical): (u8, &[u8]) = match name.len() {
                5 => (Self::RANGE, b"range"),
                8 if name[3].eq_ignore_ascii_case(&b'm') => (Self::IF_MATCH, b"if-match"),
                8 => (Self::IF_RANGE, b"if-range"),
                13 => (Self::IF_NONE_MATCH, b"if-none-match"),
                17 => (Self::IF_MODIFIED_SINCE, b"if-modified-since"),
                19 => (Self::IF_UNMODIFIED_SINCE, b"if-unmodified-since"),
                _ => continue,
            };
            if name.eq_ignore_ascii_case(canonical) {
                found |= bit;
            }
        }
        Fields(found)
    }

    /// Whether the request has the field(s) of `bit`.
    pub(crate) fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// Evaluate If-Match, If-Unmodified-Since, If-None-Match and
/// If-Modified-Since in the order RFC 9110 §13.2.2 prescribes. `etag` is
/// ours (quoted, strong) if we send one. A date that does not parse is
/// ignored, as the RFC requires, and so is an If-Modified-Since later
/// than the request's start (§13.1.3).
pub fn evaluate(req: &Request, etag: Option<&str>, modified: Option<SystemTime>) -> Precondition {
    evaluate_fields(req, Fields::of(req), etag, modified)
}

/// [`evaluate`], for a request whose fields were already looked at.
pub(crate) fn evaluate_fields(
    req: &Request,
    fields: Fields,
    etag: Option<&str>,
    modified: Option<SystemTime>,
) -> Precondition {
    if !fields.has(Fields::PRECONDITIONS) {
        return Precondition::Proceed;
    }
    let date = |bit, name| {
        fields
            .has(bit)
            .then(|| req.header(name).and_then(axkit_http::parse_http_date))
            .flatten()
    };
    let safe = req.method_is("GET") || req.method_is("HEAD");
    // Step 1 and 2: If-Match, else If-Unmodified-Since.
    if let Some(list) = header_list(req, fields, Fields::IF_MATCH, "If-Match") {
        if !matches_any(&list, etag, true) {
            return Precondition::Failed;
        }
    } else if let (Some(since), Some(modified)) = (
        date(Fields::IF_UNMODIFIED_SINCE, "If-Unmodified-Since"),
        modified,
    ) {
        if modified > since {
            return Precondition::Failed;
        }
    }
    // Step 3 and 4: If-None-Match, else If-Modified-Since (GET/HEAD only).
    if let Some(list) = header_list(req, fields, Fields::IF_NONE_MATCH, "If-None-Match") {
        if matches_any(&list, etag, false) {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe {
        // A date later than the request's start is not one the client
        // can have had from us (RFC 9110 §13.1.3): ignored, as nginx and
        // Apache do, rather than a 304 for every later change.
        let since = date(Fields::IF_MODIFIED_SINCE, "If-Modified-Since")
            .filter(|since| *since <= req.start_time());
        if let (Some(since), Some(modified)) = (since, modified) {
            if modified <= since {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Every field line of a list-valued header joined with commas (a client may
/// split `If-None-Match` over several lines), if `fields` has it (`bit`).
fn header_list(req: &Request, fields: Fields, bit: u8, name: &str) -> Option<String> {
    if !fields.has(bit) {
        return None;
    }
    let mut out: Option<String> = None;
    for (n, v) in req.headers() {
        if n.eq_ignore_ascii_case(name) {
            let v = String::from_utf8_lossy(v);
            match &mut out {
                Some(s) => {
                    s.push(',');
                    s.push_str(&v);
                }
                None => out = Some(v.into_owned()),
            }
        }
    }
    out
}

/// Whether an `If-Match`/`If-None-Match` value matches our tag: `*` matches
/// any existing representation; otherwise strong (If-Match) or weak
/// (If-None-Match) comparison against each listed tag. A malformed list
/// matches nothing from the point where it goes wrong.
pub(crate) fn matches_any(list: &str, etag: Option<&str>, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    let Some(ours) = etag.and_then(|t| parse_etag(t).map(|(_, opaque)| opaque)) else {
        return false;
    };
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        let body = if weak { &rest[2..] } else { rest };
        let Some(inner) = body.strip_prefix('"') else {
            return false;
        };
        let Some(end) = inner.find('"') else {
            return false;
        };
        if inner[..end] == *ours && !(strong && weak) {
            return true;
        }
        // Tags are separated by commas: `"a""b"` is not two of them.
        rest = inner[end + 1..].trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(',') {
            return false;
        }
    }
}

/// `(weak, opaque)` of one entity tag, or None if it is not one.
pub(crate) fn parse_etag(tag: &str) -> Option<(bool, &str)> {
    let tag = tag.trim();
    let (weak, body) = match tag.strip_prefix("W/") {
        Some(b) => (true, b),
        None => (false, tag),
    };
    let inner = body.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('"')).then_some((weak, inner))
}

/// Whether `If-Range` lets the Range through: an entity tag must match ours
/// strongly; a date must equal our Last-Modified exactly (§13.1.5). A weak
/// tag or anything unparsable never matches, so the client gets the whole,
/// current file rather than a piece spliced onto a stale copy.
pub(crate) fn if_range_matches(
    value: &str,
    etag: Option<&str>,
    modified: Option<SystemTime>,
) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return match (parse_etag(value), etag.and_then(parse_etag)) {
            (Some((false, theirs)), Some((false, ours))) => theirs == ours,
            _ => false,
        };
    }
    match (axkit_http::parse_http_date(value), modified) {
        (Some(date), Some(modified)) => date == modified,
        _ => false,
    }
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// Ignore the header and send the whole representation: no or another
    /// range unit, bad syntax, more than MaxRanges ranges, or ranges that
    /// overlap (the CVE-2011-3192 amplification: each overlapping range
    /// would be sent again).
    Whole,
    /// 416: no range overlaps the representation.
    Unsatisfiable,
    /// These byte ranges, `start..end` (end exclusive), in request order.
    Some(Vec<(u64, u64)>),
}

/// Parse a `Range` value (`bytes=0-99,200-,-50`) against a length.
pub(crate) fn parse_ranges(value: &str, len: u64, max_ranges: usize) -> Ranges {
    let Some((unit, set)) = value.split_once('=') else {
        return Ranges::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Whole;
    }
    let mut ranges = Vec::new();
    let mut count = 0usize;
    for spec in set.split(',') {
        let spec = spec.trim_matches([' ', '\t']);
        if spec.is_empty() {
            continue; // `bytes=0-1,,2-3`: empty list elements are allowed
        }
        count += 1;
        if count > max_ranges {
            return Ranges::Whole;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Whole;
        };
        let range = if first.is_empty() {
            // Suffix: the last N bytes.
            let Some(n) = digits(last) else {
                return Ranges::Whole;
            };
            (n > 0 && len > 0).then(|| (len - n.min(len), len))
        } else {
            let Some(start) = digits(first) else {
                return Ranges::Whole;
            };
            let end = if last.is_empty() {
                len
            } else {
                match digits(last) {
                    Some(l) if l >= start => l.saturating_add(1).min(len),
                    _ => return Ranges::Whole,
                }
            };
            (start < len).then_some((start, end))
        };
        ranges.extend(range);
    }
    if count == 0 {
        return Ranges::Whole;
    }
    if ranges.is_empty() {
        return Ranges::Unsatisfiable;
    }
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[1].0 < w[0].1) {
        return Ranges::Whole;
    }
    Ranges::Some(ranges)
}

/// Digits only, no sign, overflow-checked.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// `Content-Range: bytes START-LAST/LEN` for `start..end`.
pub(crate) fn content_range(start: u64, end: u64, len: u64) -> String {
    format!("bytes {}-{}/{}", start, end - 1, len)
}

/// A fresh `multipart/byteranges` boundary. RandomState is seeded from the
/// OS and advances on every call, which is random enough for a separator
/// (it must not occur in the content by accident; it is not a secret).
pub(crate) fn boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    format!("axkit{:016x}", h.finish())
}

/// The head of one part of a multipart/byteranges body (the leading CRLF
/// ends the previous part, or is the preamble of the first).
pub(crate) fn part_head(boundary: &str, content_type: &str, range: (u64, u64), len: u64) -> String {
    format!(
        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
        content_range(range.0, range.1, len)
    )
}

/// The closing delimiter of a multipart/byteranges body.
pub(crate) fn multipart_end(boundary: &str) -> String {
    format!("\r\n--{boundary}--\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use Ranges::*;
        assert_eq!(parse_ranges("bytes=0-9", 100, 10), Some(vec![(0, 10)]));
        assert_eq!(parse_ranges("bytes=90-", 100, 10), Some(vec![(90, 100)]));
        assert_eq!(parse_ranges("bytes=-10", 100, 10), Some(vec![(90, 100)]));
        assert_eq!(parse_ranges("bytes=-1000", 100, 10), Some(vec![(0, 100)]));
        assert_eq!(
            parse_ranges("bytes=50-1000", 100, 10),
            Some(vec![(50, 100)])
        );
        assert_eq!(
            parse_ranges("bytes=0-0, 5-9", 100, 10),
            Some(vec![(0, 1), (5, 10)])
        );
        assert_eq!(parse_ranges("bytes=100-", 100, 10), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=-0", 100, 10), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=0-", 0, 10), Unsatisfiable);
        // Unsatisfiable pieces are dropped when another one is satisfiable.
        assert_eq!(
            parse_ranges("bytes=200-300,0-1", 100, 10),
            Some(vec![(0, 2)])
        );
        for bad in [
            "bytes=9-0",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes=1",
            "items=0-1",
            "bytes",
            "bytes=",
            "bytes=0x1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_ranges(bad, 100, 10), Whole, "{bad}");
        }
        // Overlap and too many: the whole file.
        assert_eq!(parse_ranges("bytes=0-10,5-15", 100, 10), Whole);
        assert_eq!(parse_ranges("bytes=0-,0-", 100, 10), Whole);
        let many = format!("bytes={}", ["1-2"; 11].join(","));
        assert_eq!(parse_ranges(&many, 100, 10), Whole);
    }

    #[test]
    fn entity_tags() {
        let ours = Some("\"abc\"");
        assert!(matches_any("\"abc\"", ours, true));
        assert!(matches_any("\"x\", \"abc\"", ours, true));
        assert!(!matches_any("W/\"abc\"", ours, true));
        assert!(matches_any("W/\"abc\"", ours, false));
        assert!(matches_any("*", ours, true));
        assert!(!matches_any("\"abcd\"", ours, false));
        assert!(!matches_any("abc", ours, false));
        assert!(matches_any("\"a,b\", \"abc\"", ours, false));
        // Found by the `preconditions` fuzz target: tags run together
        // without a comma are a malformed list, not two tags.
        assert!(!matches_any("\"x\"\"abc\"", ours, true));
        assert!(!matches_any("\"0tW/\"\"\")", Some("\"\""), true));
        assert!(matches_any("\"x\" ,\t\"abc\"", ours, true));
        assert!(if_range_matches("\"abc\"", ours, None));
        assert!(!if_range_matches("W/\"abc\"", ours, None));
        assert!(!if_range_matches("garbage", ours, None));
    }
}
