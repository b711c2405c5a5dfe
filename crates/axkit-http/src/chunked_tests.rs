//! Unit tests for the chunked decoder: valid bodies (extensions, trailers,
//! pipelined data after the body), every malformation with its status, and the
//! guarantee that any split of the input decodes to the same body.

use crate::testing::{decode_chunked, Decoded};
use crate::*;

/// Decode whole, at every single split point, and byte by byte; all must
/// agree. Returns the whole-input result.
fn decode_all_ways(input: &[u8], max_trailer: usize) -> Decoded {
    let whole = decode_chunked(&[input], max_trailer);
    for k in 0..=input.len() {
        let (a, b) = input.split_at(k);
        assert_eq!(decode_chunked(&[a, b], max_trailer), whole, "split at {k}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(decode_chunked(&bytes, max_trailer), whole, "byte by byte");
    whole
}

fn body(input: &[u8]) -> Vec<u8> {
    let d = decode_all_ways(input, 1024);
    assert_eq!(d.error, None, "{input:?}");
    assert!(d.done, "{input:?}");
    assert_eq!(d.consumed, input.len());
    d.body
}

fn err(input: &[u8]) -> u16 {
    err_with(input, 1024)
}

fn err_with(input: &[u8], max_trailer: usize) -> u16 {
    match decode_all_ways(input, max_trailer).error {
        Some(e) => e.status,
        None => panic!("expected an error for {input:?}"),
    }
}

#[test]
fn simple_body() {
    assert_eq!(
        body(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        b"hello world"
    );
    assert_eq!(body(b"0\r\n\r\n"), b"");
    assert_eq!(body(b"A\r\n0123456789\r\n0\r\n\r\n"), b"0123456789");
    assert_eq!(body(b"a\r\n0123456789\r\n00\r\n\r\n"), b"0123456789");
    assert_eq!(body(b"000001\r\nx\r\n0\r\n\r\n"), b"x");
}

#[test]
fn zero_copy_and_one_slice_per_call() {
    let input = b"5\r\nhello\r\n0\r\n\r\n";
    let mut dec = ChunkedDecoder::new(0);
    let step = dec.decode(input).unwrap();
    assert_eq!(step.consumed, 8);
    assert_eq!(step.data, b"hello");
    assert_eq!(step.data.as_ptr(), input[3..].as_ptr());
    assert!(!step.done);
    let step = dec.decode(&input[8..]).unwrap();
    assert_eq!((step.consumed, step.data, step.done), (7, &b""[..], true));
    assert!(dec.is_done());
    // Once done, nothing more is consumed.
    let step = dec.decode(b"GET /").unwrap();
    assert_eq!((step.consumed, step.done), (0, true));
}

#[test]
fn need_more_input() {
    let mut dec = ChunkedDecoder::new(0);
    let step = dec.decode(b"").unwrap();
    assert_eq!((step.consumed, step.done), (0, false));
    let step = dec.decode(b"5\r").unwrap();
    assert_eq!((step.consumed, step.data, step.done), (2, &b""[..], false));
    let step = dec.decode(b"\nhel").unwrap();
    assert_eq!((step.consumed, step.data), (4, &b"hel"[..]));
    let step = dec.decode(b"lo").unwrap();
    assert_eq!((step.consumed, step.data), (2, &b"lo"[..]));
}

#[test]
fn pipelined_data_after_body_not_consumed() {
    let input = b"3\r\nabc\r\n0\r\nX: y\r\n\r\nGET / HTTP/1.1\r\n";
    let d = decode_all_ways(input, 100);
    assert_eq!(d.body, b"abc");
    assert!(d.done);
    assert_eq!(&input[d.consumed..], b"GET / HTTP/1.1\r\n");
}

#[test]
fn extensions_allowed() {
    assert_eq!(
        body(b"5;name=value;flag\r\nhello\r\n3 ; q=\"a;b\\\"c\"\r\nabc\r\n0;last=1\r\n\r\n"),
        b"helloabc"
    );
    assert_eq!(body(b"5\t;x\r\nhello\r\n0\r\n\r\n"), b"hello");
    assert_eq!(body(b"1; a = b ;c\t;d=\"\"\r\nz\r\n0\r\n\r\n"), b"z");
    assert_eq!(body(b"1;q=\"\xff\\\xfe\t\"\r\nz\r\n0\r\n\r\n"), b"z");
}

/// Extensions hold to their grammar: a token name, a token or
/// quoted-string value, nothing that one parser could end a line at and
/// another not.
#[test]
fn malformed_extensions_400() {
    for bad in [
        &b"3;x\"\r\nabc\r\n0\r\n\r\n"[..],
        b"1;\xff\x80\r\nz\r\n0\r\n\r\n",
        b"1;\r\nz\r\n",
        b"1; \r\nz\r\n",
        b"1;=v\r\nz\r\n",
        b"1;a=\r\nz\r\n",
        b"1;a \r\nz\r\n",
        b"1;a=b \r\nz\r\n",
        b"1;a=b c\r\nz\r\n",
        b"1;a=\"b\r\n\"\r\nz\r\n",
        b"1;a=\"unterminated\r\nz\r\n0\r\n\r\n",
        b"1;a=\"x\\\r\n\"\r\nz\r\n",
        b"1;a=\"x\"y\r\nz\r\n",
        b"1;a;;b\r\nz\r\n",
        b"1;a=b=c\r\nz\r\n",
        b"1;a=\"\x01\"\r\nz\r\n",
    ] {
        assert_eq!(err(bad), 400, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn trailers_parsed_and_discarded() {
    assert_eq!(
        body(b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\nOther:\r\nThird: a\tb \r\n\r\n"),
        b"hi"
    );
}

#[test]
fn chunk_size_errors_400() {
    assert_eq!(err(b"0x5\r\nhello\r\n0\r\n\r\n"), 400);
    assert_eq!(err(b"x5\r\n"), 400);
    assert_eq!(err(b"\r\nhello\r\n"), 400);
    assert_eq!(err(b";ext\r\n"), 400);
    assert_eq!(err(b" 5\r\n"), 400);
    assert_eq!(err(b"+5\r\nhello\r\n"), 400);
    assert_eq!(err(b"-5\r\nhello\r\n"), 400);
    assert_eq!(err(b"g\r\n"), 400);
    assert_eq!(err(b"5g\r\n"), 400);
    assert_eq!(err(b"5 5\r\n"), 400);
    assert_eq!(err(b"5 \r\nhello\r\n0\r\n\r\n"), 400, "BWS only before ';'");
    assert_eq!(err(b"5,\r\n"), 400);
}

#[test]
fn chunk_size_overflow_400() {
    // 16 significant digits fit in a u64 (we only need the size line here).
    let d = decode_all_ways(b"ffffffffffffffff\r\n", 0);
    assert_eq!((d.error, d.done), (None, false));
    let d = decode_all_ways(b"0000000000000000000000ffffffffffffffff\r\nab", 0);
    assert_eq!((d.error, d.body), (None, b"ab".to_vec()));
    assert_eq!(err(b"10000000000000000\r\n"), 400);
    assert_eq!(err(b"fffffffffffffffff\r\n"), 400);
    assert_eq!(err(b"123456789abcdef0123\r\n"), 400);
}

#[test]
fn bare_cr_lf_in_framing_400() {
    assert_eq!(err(b"5\nhello\r\n0\r\n\r\n"), 400);
    assert_eq!(err(b"5\rhello\r\n0\r\n\r\n"), 400);
    assert_eq!(err(b"5;a\nhello\r\n"), 400);
    assert_eq!(err(b"5;a\rb\r\nhello\r\n"), 400);
    assert_eq!(err(b"\n"), 400);
    assert_eq!(err(b"0\r\n\n"), 400);
    assert_eq!(err(b"0\r\n\rx"), 400);
    assert_eq!(err(b"0\r\nA: b\n\r\n"), 400);
    assert_eq!(err(b"0\r\nA: b\rc\r\n\r\n"), 400);
}

#[test]
fn chunk_data_must_end_with_crlf_400() {
    assert_eq!(err(b"5\r\nhelloX\r\n0\r\n\r\n"), 400);
    assert_eq!(err(b"5\r\nhello\n0\r\n\r\n"), 400);
    assert_eq!(err(b"5\r\nhello\rX0\r\n\r\n"), 400);
    assert_eq!(err(b"3\r\nhello\r\n0\r\n\r\n"), 400);
    assert_eq!(err(b"5\r\nhello0\r\n\r\n"), 400);
}

#[test]
fn extension_limits_400() {
    let mut line = b"1;".to_vec();
    line.extend_from_slice(&[b'a'; 4094]);
    line.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
    // "1;" + 4094 = 4096 bytes: at the limit.
    assert_eq!(decode_chunked(&[&line], 0).body, b"z");
    let mut line = b"1;".to_vec();
    line.extend_from_slice(&[b'a'; 4095]);
    line.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
    assert_eq!(
        decode_chunked(&[&line], 0).error.map(|e| e.status),
        Some(400)
    );
    // Leading zeros count against the line too.
    let mut zeros = vec![b'0'; 5000];
    zeros.extend_from_slice(b"1\r\nz\r\n");
    assert_eq!(
        decode_chunked(&[&zeros], 0).error.map(|e| e.status),
        Some(400)
    );
    // Many chunks each under the per-line limit, over the total.
    let mut many = Vec::new();
    for _ in 0..5 {
        many.extend_from_slice(b"1;");
        many.extend_from_slice(&[b'e'; 4000]);
        many.extend_from_slice(b"\r\nz\r\n");
    }
    let d = decode_chunked(&[&many], 0);
    assert_eq!(d.error.map(|e| e.status), Some(400));
    assert_eq!(d.body, b"zzzz");
    // CTLs are not allowed in extensions.
    assert_eq!(err(b"1;a\x00b\r\nz\r\n0\r\n\r\n"), 400);
    assert_eq!(err(b"1;a\x7fb\r\nz\r\n0\r\n\r\n"), 400);
}

#[test]
fn trailer_errors() {
    assert_eq!(err(b"0\r\n X: y\r\n\r\n"), 400, "obs-fold at start");
    assert_eq!(err(b"0\r\nA: b\r\n\tc\r\n\r\n"), 400, "obs-fold");
    assert_eq!(err(b"0\r\nNoColon\r\n\r\n"), 400);
    assert_eq!(err(b"0\r\nName : v\r\n\r\n"), 400);
    assert_eq!(err(b"0\r\n: v\r\n\r\n"), 400);
    assert_eq!(err(b"0\r\nA(b): v\r\n\r\n"), 400);
    assert_eq!(err(b"0\r\nA: \x00\r\n\r\n"), 400);
    assert_eq!(err(b"0\r\nA: \x01\r\n\r\n"), 400);
}

#[test]
fn trailer_size_bounded_431() {
    let input = b"0\r\nX-A: 12345\r\n\r\n"; // trailer line is 12 bytes with CRLF
    assert!(decode_all_ways(input, 12).done);
    assert_eq!(err_with(input, 11), 431);
    assert_eq!(err_with(b"0\r\nX: y\r\n\r\n", 0), 431);
    // With no trailers, a zero budget is fine.
    assert!(decode_all_ways(b"0\r\n\r\n", 0).done);
    // An endless trailer is cut off without seeing its end.
    let mut endless = b"0\r\nX: ".to_vec();
    endless.extend_from_slice(&[b'a'; 2000]);
    assert_eq!(
        decode_chunked(&[&endless], 1024).error.map(|e| e.status),
        Some(431)
    );
}

#[test]
fn errors_are_sticky() {
    let mut dec = ChunkedDecoder::new(0);
    let e = dec.decode(b"z").unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(dec.decode(b"0\r\n\r\n").unwrap_err(), e);
}

#[test]
fn every_split_of_a_complex_body() {
    let input = b"4;a=b\r\nWiki\r\n05\r\npedia\r\nE ;x=\"y\"\r\n in\r\n\r\nchunks.\r\n0;end\r\nT: 1\r\nU: two words\r\n\r\n";
    assert_eq!(body(input), b"Wikipedia in\r\n\r\nchunks.");
}
