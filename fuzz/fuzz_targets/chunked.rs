//! Fuzz target: arbitrary bytes through `ChunkedDecoder`, fed whole and in
//! fuzzer-chosen pieces. Checks that it never panics, that data is always a
//! sub-slice of the input, and that both feedings decode the same body with
//! the same result.
//!
//! Input layout: byte 0 sets the trailer limit, byte 1 seeds the piece sizes;
//! the rest is the chunked body.

#![no_main]

use axkit_http::{ChunkedDecoder, HttpError};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    body: Vec<u8>,
    consumed: usize,
    done: bool,
    error: Option<HttpError>,
}

/// Decode like a server would: keep unconsumed bytes, append the next piece.
fn decode(pieces: &[&[u8]], max_trailer: usize) -> Decoded {
    let mut dec = ChunkedDecoder::new(max_trailer);
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Decoded {
        body: Vec::new(),
        consumed: 0,
        done: false,
        error: None,
    };
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            match dec.decode(&pending) {
                Err(e) => {
                    out.consumed = 0;
                    out.error = Some(e);
                    // Errors are sticky.
                    assert_eq!(dec.decode(b"0\r\n\r\n").unwrap_err(), e);
                    return out;
                }
                Ok(step) => {
                    assert!(step.consumed <= pending.len());
                    assert!(step.data.len() <= step.consumed);
                    if !step.data.is_empty() {
                        let start = step.data.as_ptr() as usize - pending.as_ptr() as usize;
                        assert!(start + step.data.len() <= step.consumed);
                    }
                    out.body.extend_from_slice(step.data);
                    out.consumed += step.consumed;
                    let (consumed, done) = (step.consumed, step.done);
                    pending.drain(..consumed);
                    if done {
                        out.done = true;
                        return out;
                    }
                    if consumed == 0 {
                        assert!(pending.is_empty(), "stalled with input left");
                        break;
                    }
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [limit, seed, input @ ..] = data else {
        return;
    };
    let max_trailer = usize::from(*limit) * 4;
    let whole = decode(&[input], max_trailer);
    if let Some(e) = &whole.error {
        assert!(matches!(e.status, 400 | 431), "{e:?}");
    }

    // Piece sizes from a small xorshift seeded by the fuzzer.
    let mut state = u32::from(*seed) | 0x100;
    let mut pieces = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 9 + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    assert_eq!(decode(&pieces, max_trailer), whole);
});
