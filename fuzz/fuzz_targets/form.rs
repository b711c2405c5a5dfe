//! Fuzz target: what the core decodes from a request besides its path
//! (`axkit::plugin::form`): query strings, cookies and form bodies.
//! Checks that nothing panics; that `query_param` (the one-pass lookup
//! behind `r:param`) finds exactly what the first matching pair of
//! `query_pairs` holds; that `cookie` returns a piece of the header; that a
//! form body never gives more than `MAX_PARTS` fields, only fields whose
//! bytes lie in the body, and only 400 or 413 as a refusal; and that a
//! multipart body written from the fuzzer's fields parses back to exactly
//! those fields.
//!
//! Input layout: byte 0 picks what the rest is; for the query and cookie
//! cases the rest is `name` NUL `text`; for the form cases `content type`
//! NUL `body`; for the round trip, fields separated by NUL, each `name` SOH
//! `value`.

#![no_main]

use axkit::plugin::form::{cookie, query_pairs, query_param, Field, Form, MAX_PARTS};
use axkit_http::bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [pick, rest @ ..] = data else {
        return;
    };
    match pick % 4 {
        0 => query(rest),
        1 => cookies(rest),
        2 => form(rest),
        _ => multipart_round_trip(rest),
    }
});

/// `rest` split at its first NUL: (before, after), after empty without one.
fn split_nul(rest: &[u8]) -> (&[u8], &[u8]) {
    match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[]),
    }
}

fn query(rest: &[u8]) {
    let (name, query) = split_nul(rest);
    let (name, query) = (
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(query),
    );
    let expected = query_pairs(&query)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v);
    assert_eq!(query_param(&query, &name), expected, "{query:?} {name:?}");
}

fn cookies(rest: &[u8]) {
    let (name, header) = split_nul(rest);
    let (name, header) = (
        String::from_utf8_lossy(name),
        String::from_utf8_lossy(header),
    );
    if let Some(v) = cookie(&header, &name) {
        let range = header.as_bytes().as_ptr_range();
        assert!(
            range.contains(&v.as_ptr()) || v.is_empty(),
            "{header:?} {name:?}"
        );
        assert!(!v.contains(';'), "{header:?} {name:?} -> {v:?}");
    }
}

fn form(rest: &[u8]) {
    let (content_type, body) = split_nul(rest);
    let content_type = String::from_utf8_lossy(content_type);
    let body = Bytes::copy_from_slice(body);
    match Form::parse(Some(&content_type), body.clone()) {
        Ok(form) => {
            assert!(form.fields().count() <= MAX_PARTS);
            if is_multipart(&content_type) {
                let range = body.as_ptr_range();
                for (_, field) in form.fields() {
                    let bytes = match field {
                        Field::Text(b) => b,
                        Field::File(upload) => upload.bytes(),
                    };
                    let (start, end) = (bytes.as_ptr(), bytes.as_ptr().wrapping_add(bytes.len()));
                    assert!(
                        bytes.is_empty() || (range.start <= start && end <= range.end),
                        "a field's bytes outside the body"
                    );
                }
            }
        }
        Err(e) => assert!(matches!(e.status, 400 | 413), "{e:?}"),
    }
}

fn is_multipart(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("multipart/form-data")
}

fn multipart_round_trip(rest: &[u8]) {
    const BOUNDARY: &str = "axkit-fuzz-boundary-7f3a9c";
    let mut fields = Vec::new();
    for field in rest.split(|&b| b == 0).take(MAX_PARTS) {
        let (name, value) = match field.iter().position(|&b| b == 1) {
            Some(i) => (&field[..i], &field[i + 1..]),
            None => (field, &[][..]),
        };
        // A name is written quoted, as browsers do; they send `"` and line
        // ends in a name escaped, so such names are not this case.
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        if name.contains(['"', '\r', '\n']) {
            return;
        }
        fields.push((name, value));
    }
    let mut body = Vec::new();
    for (name, value) in &fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    // The boundary is chosen so that it is not in any value (RFC 2046).
    if fields.is_empty()
        || body
            .windows(BOUNDARY.len())
            .filter(|w| *w == BOUNDARY.as_bytes())
            .count()
            != fields.len() + 1
    {
        return;
    }
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let form = Form::parse(Some(&content_type), Bytes::from(body)).expect("a well-formed body");
    let parsed: Vec<(&str, &[u8])> = form
        .fields()
        .map(|(name, field)| match field {
            Field::Text(b) => (name, &b[..]),
            Field::File(_) => panic!("a field without a filename read as a file"),
        })
        .collect();
    assert_eq!(parsed, fields);
}
