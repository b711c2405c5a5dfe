//! Fuzz target: arbitrary bytes through the front-proxy parsers of
//! axkit-http. `parse_proxy_header` never panics, never claims more bytes
//! than it was given, and agrees with itself on prefixes: a header found in
//! the whole input is found, the same and the same length, in exactly its
//! own bytes, and every shorter prefix asks for more. The same bytes go
//! through `parse_forwarded` and, entry by entry, `parse_node` (the
//! `Forwarded` and `X-Forwarded-For` values), which must not panic either.

#![no_main]

use axkit_http::{forwarded_for_entries, parse_forwarded, parse_node, parse_proxy_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_proxy_header(data) {
        Ok(Some((header, n))) => {
            assert!(n <= data.len());
            assert_eq!(parse_proxy_header(&data[..n]), Ok(Some((header, n))));
            for cut in 0..n {
                assert_eq!(
                    parse_proxy_header(&data[..cut]),
                    Ok(None),
                    "prefix of {cut}"
                );
            }
        }
        Ok(None) => {
            for cut in 0..data.len() {
                assert_eq!(
                    parse_proxy_header(&data[..cut]),
                    Ok(None),
                    "prefix of {cut}"
                );
            }
        }
        Err(_) => {}
    }
    let mut elements = Vec::new();
    let _ = parse_forwarded(data, &mut elements);
    for entry in forwarded_for_entries(data) {
        if let Ok(text) = std::str::from_utf8(entry) {
            let _ = parse_node(text);
        }
    }
});
