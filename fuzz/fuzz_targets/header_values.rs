//! Fuzz target: the small request-field parsers of axkit-http that plugins
//! apply to untrusted values. `coding_quality` (`Accept-Encoding`) never
//! panics, gives a quality of 0 to 1000, ignores the case of the coding
//! asked about, and answers for `x-gzip` when asked about `gzip`;
//! `parse_http_date` (`If-Modified-Since`, `If-Range`, `Expires`) never
//! panics, and a date it reads is one `fmt_http_date` writes back to a value
//! it reads as the same time.
//!
//! Input layout: byte 0 picks the coding asked about; the rest, taken as
//! UTF-8 (lossily), is the field value.

#![no_main]

use axkit_http::{coding_quality, fmt_http_date, parse_http_date};
use libfuzzer_sys::fuzz_target;

const CODINGS: [&str; 6] = ["gzip", "br", "zstd", "identity", "deflate", "*"];

fuzz_target!(|data: &[u8]| {
    let [pick, value @ ..] = data else {
        return;
    };
    let value = String::from_utf8_lossy(value);
    let coding = CODINGS[usize::from(*pick) % CODINGS.len()];
    let q = coding_quality(&value, coding);
    if let Some(q) = q {
        assert!(q <= 1000, "{value:?} {coding} {q}");
    }
    assert_eq!(coding_quality(&value, &coding.to_ascii_uppercase()), q);
    if coding == "gzip" && q.is_none() {
        assert_eq!(coding_quality(&value, "x-gzip"), None, "{value:?}");
    }

    if let Some(t) = parse_http_date(&value) {
        let written = fmt_http_date(t);
        assert_eq!(parse_http_date(&written), Some(t), "{value:?} -> {written}");
    }
});
