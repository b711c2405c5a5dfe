//! Fuzz target: arbitrary `Range` values through axkit-plugins'
//! `parse_ranges` (the static-file plugins' `Range` parser). Checks that it
//! never panics; that every range it gives is non-empty and inside the
//! file, that there are at most `MaxRanges` of them and none overlap; and
//! that its answer is the one its documentation and RFC 9110 §14.1.2 give,
//! worked out here in `u128` so that no number can overflow: other units
//! and bad syntax (a number beyond `u64`, `9-0`) send the whole file, so do
//! more than `max_ranges` ranges or overlapping ones; `bytes=-0` or only
//! ranges past the end answer 416.
//!
//! Input layout: byte 0 sets `max_ranges` (its low 4 bits); byte 1 picks
//! the file's length: its low 7 bits, or (high bit) the next 8 bytes
//! big-endian (up to `u64::MAX`); the rest is the value.

#![no_main]

use axkit_plugins::fuzzing::parse_ranges;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [max, pick, rest @ ..] = data else {
        return;
    };
    let max_ranges = usize::from(max & 15);
    let (len, value) = if pick & 0x80 == 0 {
        (u64::from(pick & 0x7f), rest)
    } else {
        let Some((n, value)) = rest.split_first_chunk::<8>() else {
            return;
        };
        (u64::from_be_bytes(*n), value)
    };
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let got = parse_ranges(value, len, max_ranges);
    if let Some(ranges) = &got {
        assert!(ranges.len() <= max_ranges, "{ranges:?}");
        for &(start, end) in ranges {
            assert!(start < end && end <= len, "{start}..{end} of {len}");
        }
        let mut sorted = ranges.clone();
        sorted.sort_unstable();
        assert!(sorted.windows(2).all(|w| w[0].1 <= w[1].0), "{ranges:?}");
    }
    assert_eq!(got, expected(value, len, max_ranges), "{value:?} of {len}");
});

/// What `value` asks of `len` bytes: None for the whole file, an empty
/// list for 416.
fn expected(value: &str, len: u64, max_ranges: usize) -> Option<Vec<(u64, u64)>> {
    let (unit, set) = value.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
        .collect();
    if specs.is_empty() || specs.len() > max_ranges {
        return None;
    }
    let len = u128::from(len);
    let mut ranges = Vec::new();
    for spec in specs {
        let (first, last) = spec.split_once('-')?;
        let range = if first.is_empty() {
            let n = number(last)?;
            (n > 0 && len > 0).then(|| (len - n.min(len), len))
        } else {
            let start = number(first)?;
            let end = if last.is_empty() {
                len
            } else {
                let last = number(last)?;
                if last < start {
                    return None;
                }
                (last + 1).min(len)
            };
            (start < len).then_some((start, end))
        };
        if let Some((start, end)) = range {
            ranges.push((start as u64, end as u64));
        }
    }
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[1].0 < w[0].1) {
        return None;
    }
    Some(ranges)
}

/// Decimal digits only, at most `u64::MAX`.
fn number(s: &str) -> Option<u128> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = s.trim_start_matches('0');
    if significant.len() > 20 {
        return None;
    }
    let n = significant.parse::<u128>().unwrap_or(0);
    (n <= u128::from(u64::MAX)).then_some(n)
}
