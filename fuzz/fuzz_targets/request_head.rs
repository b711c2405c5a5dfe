//! Fuzz target: arbitrary bytes through `parse_request_head`. Checks that it
//! never panics, that every accessor of a parsed head works (and of the
//! stand-in `RequestHead::unparsed` makes of refused bytes), and that feeding
//! the input in two reads (split at a fuzzer-chosen point) gives the same
//! answer as feeding it whole, as does parsing it into the field list of
//! a head parsed before (what a worker does, `parse_request_head_reusing`).
//!
//! The parser is our own, one pass over the head; httparse, a general parser
//! held to the same grammar, is the second opinion: it must read every head
//! we accept into the same method, target and fields, and refuse every head
//! we refuse for a bad field name or value.
//!
//! Input layout: byte 0 picks the limits (high bit: tiny limits, so the limit
//! paths are reachable) and the split point; the rest is the request.

#![no_main]

use axkit_http::bytes::BytesMut;
use axkit_http::{
    parse_request_head, parse_request_head_reusing, BodyFraming, FieldSpan, HttpError, Limits,
    RequestHead,
};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Incomplete,
    Err(HttpError),
    Head { head: Vec<u8>, rest: Vec<u8> },
}

fn outcome(buf: &BytesMut, r: &Result<Option<RequestHead>, HttpError>) -> Outcome {
    match r {
        Ok(None) => Outcome::Incomplete,
        Err(e) => Outcome::Err(e.clone()),
        Ok(Some(h)) => Outcome::Head {
            head: h.head_bytes().to_vec(),
            rest: buf.to_vec(),
        },
    }
}

fn exercise(h: &RequestHead) {
    assert!(!h.method().is_empty());
    assert!(!h.target().is_empty());
    assert!(!h.path().is_empty());
    if let Some(q) = h.query() {
        assert!(h.target().contains('?'));
        assert!(h.target().ends_with(q));
    }
    let _ = h.version().as_str();
    let names: Vec<(&str, &[u8])> = h.headers().collect();
    for (name, value) in &names {
        assert!(axkit_http::valid_header_name(name));
        assert!(axkit_http::valid_header_value(value));
        assert!(h.header(name).is_some());
        let _ = h.header_str(name);
    }
    if let Some(host) = h.host() {
        assert!(!host.is_empty());
    }
    if let BodyFraming::Length(n) = h.framing() {
        assert!(n > 0);
    }
    if h.expects_continue() {
        assert_eq!(h.version(), axkit_http::Version::Http11);
    }
    let _ = h.keep_alive();
    let head = h.head_bytes();
    assert!(head.ends_with(b"\r\n\r\n"));
    let _ = h.clone();
    let _ = format!("{h:?}");
    // What the server makes of the path: absolute, no dot segments, no
    // empty segment but a trailing one, no NUL, an encoded `/` still
    // encoded.
    if let Some(path) = axkit_http::normalize_path(h.path()) {
        if path != "*" {
            assert!(path.starts_with('/'), "{path:?}");
            let inner = path.strip_suffix('/').unwrap_or(&path);
            for segment in inner.split('/').skip(1) {
                assert!(!matches!(segment, "" | "." | ".."), "{path:?}");
            }
            assert!(!path.contains('\0'), "{path:?}");
        }
    }
}

/// The field list of a finished head, as a worker hands it to the next parse.
fn stale_field_list() -> Vec<FieldSpan> {
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX-Stale: 1\r\n\r\n"[..]);
    let mut h = parse_request_head(&mut buf, &Limits::default())
        .unwrap()
        .unwrap();
    h.take_field_spans()
}

/// httparse's reading of a complete head (from the request line on).
fn httparse_agrees(h: &RequestHead) {
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    let head = h.head_bytes();
    assert_eq!(req.parse(head), Ok(httparse::Status::Complete(head.len())));
    assert_eq!(req.method, Some(h.method()));
    assert_eq!(req.path, Some(h.target()));
    let theirs: Vec<(&str, &[u8])> = req.headers.iter().map(|f| (f.name, f.value)).collect();
    let ours: Vec<(&str, &[u8])> = h.headers().collect();
    assert_eq!(theirs, ours);
}

/// httparse also refuses a head we refuse for a bad field name or value
/// (`head` starts at the request line; any empty lines before are skipped).
fn httparse_refuses(input: &[u8], e: &HttpError) {
    let expected = match e.reason {
        "invalid header field name" => httparse::Error::HeaderName,
        "invalid byte in header field value" => httparse::Error::HeaderValue,
        _ => return,
    };
    let mut head = input;
    while let Some(rest) = head.strip_prefix(b"\r\n") {
        head = rest;
    }
    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    assert_eq!(req.parse(head), Err(expected));
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let limits = if ctl & 0x80 != 0 {
        Limits {
            max_request_line: 48,
            max_header_bytes: 96,
            max_headers: 4,
        }
    } else {
        Limits::default()
    };

    let mut whole_buf = BytesMut::from(input);
    let whole = parse_request_head(&mut whole_buf, &limits);
    let expected = outcome(&whole_buf, &whole);
    if let Ok(Some(h)) = &whole {
        exercise(h);
        httparse_agrees(h);
        assert!(h.head_bytes().len() + whole_buf.len() <= input.len());
        // Whatever follows is parsed as a pipelined request.
        if let Ok(Some(next)) = parse_request_head(&mut whole_buf, &limits) {
            exercise(&next);
        }
    }
    if let Err(e) = &whole {
        assert!(matches!(e.status, 400 | 414 | 431 | 501 | 505), "{e:?}");
        httparse_refuses(input, e);
        assert_eq!(
            whole_buf.len(),
            input.len(),
            "errors leave the buffer alone"
        );
        // What the server logs for a refused request.
        let stand_in = RequestHead::unparsed(&whole_buf);
        assert!(!stand_in.method().is_empty() && stand_in.method().len() <= 256);
        assert!(!stand_in.target().is_empty() && stand_in.target().len() <= 256);
        assert_eq!(stand_in.path(), stand_in.target());
        assert_eq!(stand_in.headers().count(), 0);
        assert!(stand_in.request_line().len() <= 8192);
        assert!(!stand_in.request_line().contains(&b'\n'));
        assert!(whole_buf.starts_with(stand_in.request_line()));
    }

    // Into a list left by another head: the same answer and fields.
    let mut reused_buf = BytesMut::from(input);
    let mut spare = stale_field_list();
    let reused = parse_request_head_reusing(&mut reused_buf, &limits, &mut spare);
    assert_eq!(outcome(&reused_buf, &reused), expected);
    if let (Ok(Some(a)), Ok(Some(b))) = (&whole, &reused) {
        assert!(a.headers().eq(b.headers()));
        assert!(b.fields().eq(b.headers().map(|(n, v)| (n.as_bytes(), v))));
    }

    // Two reads, split at a point chosen by the fuzzer.
    let split = if input.is_empty() {
        0
    } else {
        usize::from(ctl & 0x7f).wrapping_mul(7919) % (input.len() + 1)
    };
    let mut buf = BytesMut::from(&input[..split]);
    let first = parse_request_head(&mut buf, &limits);
    let got = match first {
        Ok(None) => {
            buf.extend_from_slice(&input[split..]);
            let second = parse_request_head(&mut buf, &limits);
            outcome(&buf, &second)
        }
        other => {
            buf.extend_from_slice(&input[split..]);
            outcome(&buf, &other)
        }
    };
    assert_eq!(got, expected);
});
