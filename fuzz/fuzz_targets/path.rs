//! Fuzz target: arbitrary text through `normalize_path`, the one place a
//! request path is decoded and resolved before `<Location>` matching and
//! every plugin see it. Checks that it never panics; that whatever it
//! accepts is canonical (starts with `/`, no empty, `.` or `..` segment, no
//! NUL) and came without a control character written as it is; that a
//! path without `%` or a (decoded) control character is its own normal
//! form; and that `encode_path`
//! of the result (how the proxy and redirects write a path back) decodes
//! to exactly the result again.
//!
//! Input layout: the whole input, taken as UTF-8 (lossily), is the path.

#![no_main]

use axkit_http::{encode_path, normalize_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let Some(path) = normalize_path(&raw) else {
        return;
    };
    assert!(
        !raw.bytes().any(|b| b < 0x20 || b == 0x7f),
        "a raw control character accepted: {raw:?}"
    );
    if raw == "*" {
        assert_eq!(path, "*");
        return;
    }
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(!path.contains('\0'), "{raw:?} -> {path:?}");
    // Every segment but a trailing empty one (the path ended in `/`) names
    // something: never empty, `.` or `..`.
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(!s.is_empty() || last, "{raw:?} -> {path:?}");
        assert!(*s != "." && *s != "..", "{raw:?} -> {path:?}");
    }
    // Decoding happens once: a path with nothing left to decode is final.
    if !path.bytes().any(|b| b == b'%' || b < 0x20 || b == 0x7f) {
        assert_eq!(normalize_path(&path).as_deref(), Some(&*path), "{raw:?}");
    }
    let encoded = encode_path(&path).to_string();
    assert!(
        encoded.bytes().all(|b| (0x21..0x7f).contains(&b)),
        "{encoded:?}"
    );
    assert_eq!(
        normalize_path(&encoded).as_deref(),
        Some(&*path),
        "{raw:?} -> {encoded:?}"
    );
});
