//! Test harness shared by this crate's unit tests and the fuzz targets in
//! `fuzz/` (the `testing` feature); not part of the API.
//!
//! [`decode_chunked`] feeds a [`ChunkedDecoder`] as a server would and checks
//! on every call what must hold for any input: data is a sub-slice of the
//! bytes consumed, nothing stalls with input left, errors are sticky.

use crate::{ChunkedDecoder, HttpError};

/// The result of [`decode_chunked`].
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// The body bytes, de-chunked.
    pub body: Vec<u8>,
    /// Input bytes consumed in total (the rest belongs to the next
    /// request); 0 after an error, where how far framing got is not
    /// meaningful.
    pub consumed: usize,
    /// Whether the last chunk and the trailer section were seen.
    pub done: bool,
    /// The error that ended decoding, if any.
    pub error: Option<HttpError>,
}

/// Decode `pieces` in order with a trailer budget of `max_trailer` bytes,
/// as a caller with a buffer does: unconsumed bytes are kept and the next
/// piece is appended. Panics if the decoder breaks one of its guarantees.
pub fn decode_chunked(pieces: &[&[u8]], max_trailer: usize) -> Decoded {
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
                    assert_eq!(
                        dec.decode(b"0\r\n\r\n").unwrap_err(),
                        e,
                        "errors are sticky"
                    );
                    out.consumed = 0;
                    out.error = Some(e);
                    return out;
                }
                Ok(step) => {
                    assert!(step.consumed <= pending.len());
                    assert!(step.data.len() <= step.consumed);
                    if !step.data.is_empty() {
                        let start = step.data.as_ptr() as usize - pending.as_ptr() as usize;
                        assert!(
                            start + step.data.len() <= step.consumed,
                            "data is not a sub-slice of the bytes consumed"
                        );
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
