//! Fuzz target: arbitrary bytes through `ChunkedDecoder`, fed whole and in
//! fuzzer-chosen pieces. Checks that it never panics, that data is always a
//! sub-slice of the input and errors are sticky (both checked by the shared
//! harness, `axkit_http::testing`), that errors are 400 or 431, and that
//! both feedings decode the same body with the same result.
//!
//! Input layout: byte 0 sets the trailer limit, byte 1 seeds the piece sizes;
//! the rest is the chunked body.

#![no_main]

use axkit_fuzz::pieces;
use axkit_http::testing::decode_chunked;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [limit, seed, input @ ..] = data else {
        return;
    };
    let max_trailer = usize::from(*limit) * 4;
    let whole = decode_chunked(&[input], max_trailer);
    if let Some(e) = &whole.error {
        assert!(matches!(e.status, 400 | 431), "{e:?}");
    }

    assert_eq!(decode_chunked(&pieces(input, *seed), max_trailer), whole);
});
