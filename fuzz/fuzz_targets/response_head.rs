//! Fuzz target: bytes from an upstream server through axkit-client, as the
//! reverse proxy meets them: the response head's parse (`parse_head`), the
//! body's framing (`body_framing`) and the body's reading. Checks that
//! nothing panics, and:
//!
//! - parsing in two reads (split at a fuzzer-chosen point) as the client
//!   reads a head (`HeadScan`, which parses only when the bytes that came
//!   may end it), then once more as at the connection's close, gives the
//!   same head and the same bytes left over, or the same refusal, as
//!   parsing whole;
//! - httparse reads every accepted head into the same status, version and
//!   fields (a value that is not UTF-8 converted lossily), and every value
//!   is handed on as a slice of the head;
//! - the framing is RFC 9112 §6.3's, worked out here again from httparse's
//!   fields: a `Transfer-Encoding` must be a single `chunked` (else an
//!   error, an empty one too) and wins over `Content-Length`, whose list
//!   elements must all be one valid length (else an error); list elements
//!   are separated by spaces and tabs only. The connection is never reused
//!   after a head with both fields, nor after one the server did not keep
//!   alive;
//! - the body after the head, read whole and in fuzzer-chosen pieces, comes
//!   out the same: a length's bytes and not one more, a chunked body what
//!   axkit-http's decoder makes of the bytes, until the close everything.
//!
//! Input layout: byte 0 picks the split point (low 7 bits, a fraction of the
//! input) and whether the request was a `HEAD` (high bit); byte 1 seeds the
//! body's piece sizes; the rest is what the server sent.

#![no_main]

use axkit_client::fuzzing::{parse_head, Body, Framing, Head, HeadScan, MAX_TRAILERS};
use axkit_fuzz::pieces;
use axkit_http::bytes::BytesMut;
use axkit_http::testing::decode_chunked;
use libfuzzer_sys::fuzz_target;

/// What a parse gave, comparable.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    More,
    Refused,
    Head {
        status: u16,
        http11: bool,
        fields: Vec<(String, String)>,
        rest: Vec<u8>,
    },
}

fn parsed(head: &Result<Option<Head>, axkit_client::Error>, rest: &[u8]) -> Parsed {
    match head {
        Err(_) => Parsed::Refused,
        Ok(None) => Parsed::More,
        Ok(Some(h)) => Parsed::Head {
            status: h.status(),
            http11: h.http11(),
            fields: h
                .fields()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            rest: rest.to_vec(),
        },
    }
}

/// Spaces and tabs off both ends (OWS).
fn ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', tail @ ..] = s {
        s = tail;
    }
    while let [head @ .., b' ' | b'\t'] = s {
        s = head;
    }
    s
}

/// The list elements of every field named `name`.
fn elements<'a>(fields: &'a [httparse::Header<'a>], name: &'a str) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(ows)
        .collect()
}

/// RFC 9112 §6.3 on httparse's reading of the head: the framing, and
/// whether the connection may be used again; `None` for a head that must
/// be refused.
fn expected(
    status: u16,
    http11: bool,
    fields: &[httparse::Header<'_>],
    to_head: bool,
) -> Option<(Framing, bool)> {
    let close = elements(fields, "connection")
        .iter()
        .any(|t| t.eq_ignore_ascii_case(b"close"));
    let keep = http11 && !close;
    let has = |name: &str| fields.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    if to_head || status == 204 || status == 304 || status < 200 {
        // No body follows; lengths given without a transfer coding are
        // still checked, as nginx checks them (they are passed on).
        if has("content-length") && !has("transfer-encoding") {
            length(fields)?;
        }
        return Some((Framing::Empty, keep));
    }
    let reusable = keep && !(has("transfer-encoding") && has("content-length"));
    let codings: Vec<&[u8]> = elements(fields, "transfer-encoding")
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    if has("transfer-encoding") {
        return match codings[..] {
            [c] if c.eq_ignore_ascii_case(b"chunked") => Some((Framing::Chunked, reusable)),
            _ => None,
        };
    }
    if !has("content-length") {
        return Some((Framing::Close, false));
    }
    let n = length(fields)?;
    Some((
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        },
        reusable,
    ))
}

/// The length the `Content-Length` fields give: one value, however often
/// repeated, all digits, within u64.
fn length(fields: &[httparse::Header<'_>]) -> Option<u64> {
    let lengths = elements(fields, "content-length");
    if lengths.iter().any(|l| *l != lengths[0]) || lengths[0].is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in lengths[0] {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// A body read from `pieces` given one after the other.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    data: Vec<u8>,
    end: bool,
    error: bool,
    /// What was left after the end.
    left: Vec<u8>,
}

fn read(mut body: Body, pieces: &[&[u8]]) -> Read {
    let mut out = Read {
        data: Vec::new(),
        end: false,
        error: false,
        left: Vec::new(),
    };
    let mut buf = BytesMut::new();
    // Asked once before any byte: an empty body ends at once.
    let mut pieces = std::iter::once(&[][..]).chain(pieces.iter().copied());
    while let Some(piece) = pieces.next() {
        buf.extend_from_slice(piece);
        loop {
            match body.next(&mut buf) {
                Err(_) => {
                    out.error = true;
                    return out;
                }
                Ok(None) => break,
                Ok(Some(None)) => {
                    out.end = true;
                    out.left = buf.to_vec();
                    pieces.for_each(|p| out.left.extend_from_slice(p));
                    return out;
                }
                Ok(Some(Some(data))) => {
                    assert!(!data.is_empty(), "an empty piece of a body");
                    out.data.extend_from_slice(&data);
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [pick, seed, input @ ..] = data else {
        return;
    };
    let to_head = pick & 0x80 != 0;
    let cut = usize::from(pick & 0x7f) * input.len() / 0x7f;

    let mut whole = BytesMut::from(input);
    let head = parse_head(&mut whole);
    let rest = whole.to_vec();
    let answer = parsed(&head, &rest);

    // In two reads, as the client reads a head, and parsed once more if it
    // has not ended, as when the connection closes: the same head and the
    // same bytes after it, or the same refusal.
    let mut scan = HeadScan::default();
    let mut buf = BytesMut::from(&input[..cut]);
    let mut split = scan.parse(&mut buf);
    buf.extend_from_slice(&input[cut..]);
    if let Ok(None) = split {
        split = scan.parse(&mut buf);
    }
    if let Ok(None) = split {
        split = parse_head(&mut buf);
    }
    assert_eq!(parsed(&split, &buf), answer, "split at {cut}");
    let (
        Ok(Some(head)),
        Parsed::Head {
            status,
            http11,
            fields,
            ..
        },
    ) = (head, answer)
    else {
        return;
    };

    // httparse's reading of the same bytes.
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = response.parse(input) else {
        panic!("httparse does not accept a head we accept");
    };
    assert_eq!(input.len() - len, rest.len());
    assert_eq!(response.code, Some(status));
    assert_eq!(response.version == Some(1), http11);
    let theirs: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(fields, theirs);

    for (_, value) in head.fields() {
        assert_eq!(head.shared(value).as_deref(), Some(value));
    }
    assert_eq!(head.shared(&String::from("elsewhere")), None);

    // The framing, and whether the connection goes back to the pool.
    let framing = head.body(to_head);
    let oracle = expected(status, http11, response.headers, to_head);
    let body = match (framing, oracle) {
        (Err(_), None) => return,
        (Ok((body, reusable)), Some((framing, may_reuse))) => {
            assert_eq!(body.framing(), framing);
            // A `Connection` option trimmed of Unicode's whitespace may
            // close one RFC 9110 would keep: closing is always safe.
            assert!(!reusable || may_reuse, "reused against RFC 9112 §6.3");
            assert!(!reusable || head.keeps_alive());
            body
        }
        (ours, theirs) => panic!(
            "framing {:?}, RFC 9112 says {theirs:?}",
            ours.map(|(b, r)| (b.framing(), r))
        ),
    };

    // The body: whole, and in pieces.
    let framing = body.framing();
    let all = read(body, &[&rest]);
    let pieces = pieces(&rest, *seed);
    let (again, _) = head.body(to_head).unwrap();
    let read_in_pieces = read(again, &pieces);
    assert_eq!(read_in_pieces.data, all.data);
    assert_eq!(
        (read_in_pieces.end, read_in_pieces.error),
        (all.end, all.error)
    );
    if all.end {
        assert_eq!(read_in_pieces.left, all.left);
    }
    match framing {
        Framing::Empty => assert_eq!(
            (&all.data[..], all.end, &all.left[..]),
            (&[][..], true, &rest[..])
        ),
        Framing::Length(n) => {
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            assert_eq!(all.data, rest[..n.min(rest.len())]);
            assert_eq!(all.end, rest.len() >= n);
            assert!(!all.error);
            if all.end {
                assert_eq!(all.left, rest[n..]);
            }
        }
        Framing::Chunked => {
            let decoded = decode_chunked(&[&rest], MAX_TRAILERS);
            assert_eq!(all.error, decoded.error.is_some());
            if !all.error {
                assert_eq!(all.data, decoded.body);
                assert_eq!(all.end, decoded.done);
                if all.end {
                    assert_eq!(all.left, rest[decoded.consumed..]);
                }
            }
        }
        Framing::Close => assert_eq!(
            (&all.data[..], all.end, all.error),
            (&rest[..], false, false)
        ),
    }
});
