//! Fuzz target: arbitrary `If-Match`, `If-None-Match` and `If-Range`
//! values through axkit-plugins' conditional-request parsers (`file_http`).
//! Checks that they never panic; that an entity tag parsed is exactly
//! `"opaque"` or `W/"opaque"` with no quote inside; that a list matches
//! only if it is `*` or holds our tag, quoted (strongly: not after `W/`),
//! a strong match always being a weak one too, and that our own tag
//! matches itself (strongly only if it is strong); that `If-Range` lets a
//! range through only for our strong tag, quoted alike, or our exact
//! modification date, and always does for them; a weak tag never.
//!
//! Input layout: byte 0 picks whether `If-Match` or `If-None-Match` is
//! evaluated (bit 0), our tag (bits 1-2: `"abc"`, `W/"abc"`, none, or the
//! input's first line) and our modification date (bit 3: a fixed one, or
//! the one the value names, if any); the rest is the value (UTF-8).

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use axkit_http::parse_http_date;
use axkit_plugins::fuzzing::{if_range_matches, matches_any, parse_etag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let strong = flags & 1 != 0;
    let (etag, value) = match (flags >> 1) & 3 {
        0 => (Some("\"abc\""), text),
        1 => (Some("W/\"abc\""), text),
        2 => (None, text),
        _ => match text.split_once('\n') {
            Some((ours, value)) => (Some(ours), value),
            None => (Some(text), text),
        },
    };
    let fixed = UNIX_EPOCH + Duration::from_secs(784_111_777);
    let modified = if flags & 8 == 0 {
        Some(fixed)
    } else {
        parse_http_date(value.trim())
    };

    for tag in [etag.unwrap_or(""), value] {
        if let Some((weak, opaque)) = parse_etag(tag) {
            assert!(!opaque.contains('"'), "{tag:?}");
            let canonical = format!("{}\"{opaque}\"", if weak { "W/" } else { "" });
            assert_eq!(canonical, tag.trim());
        }
    }
    let ours = etag.and_then(parse_etag);

    let matched = matches_any(value, etag, strong);
    if matches_any(value, etag, true) {
        assert!(matches_any(value, etag, false), "{value:?} {etag:?}");
    }
    if matched && value.trim() != "*" {
        let (_, opaque) = ours.expect("a list matches only a tag");
        let quoted = format!("\"{opaque}\"");
        let mut at = value.match_indices(&quoted).map(|(i, _)| i);
        if strong {
            assert!(
                at.any(|i| !value[..i].ends_with("W/")),
                "{value:?} {etag:?}"
            );
        } else {
            assert!(at.next().is_some(), "{value:?} {etag:?}");
        }
    }
    if let Some((weak, opaque)) = ours {
        let tag = format!("{}\"{opaque}\"", if weak { "W/" } else { "" });
        assert!(matches_any(&tag, etag, false), "{tag:?}");
        assert_eq!(matches_any(&tag, etag, true), !weak, "{tag:?}");
        let after = format!("W/\"x\" ,\t{tag}");
        assert!(matches_any(&after, etag, false), "{after:?}");
    }

    let through = if_range_matches(value, etag, modified);
    let trimmed = value.trim();
    let is_tag = trimmed.starts_with('"') || trimmed.starts_with("W/");
    let same_tag = matches!(
        (parse_etag(value), ours),
        (Some((false, theirs)), Some((false, ours))) if theirs == ours
    );
    let same_date = !is_tag && modified.is_some() && parse_http_date(trimmed) == modified;
    assert_eq!(through, same_tag || same_date, "{value:?} {etag:?}");
    if trimmed.starts_with("W/") {
        assert!(!through, "{value:?}");
    }
});
