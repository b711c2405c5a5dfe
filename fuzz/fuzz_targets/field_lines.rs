//! Fuzz target: arbitrary bytes through `scan_field_lines`, the field-line
//! scanner of the request head. Checks
//! that it never panics, that every field it reports lies in the input,
//! ends before the head does and holds a valid name and value, that a
//! prefix of the input answers "more" or the whole input's error, and
//! that httparse reads the same fields from every head it accepts.
//!
//! Input layout: byte 0 picks tiny limits (high bit) and the split point;
//! the rest is the field lines.

#![no_main]

use axkit_http::{scan_field_lines, valid_header_name, valid_header_value};
use libfuzzer_sys::fuzz_target;

fn scan(
    input: &[u8],
    max_bytes: usize,
    max_fields: usize,
) -> (Result<Option<usize>, axkit_http::FieldError>, Vec<[u32; 4]>) {
    let mut fields = Vec::new();
    let r = scan_field_lines(input, 0, max_bytes, max_fields, |f| fields.push(f));
    (r, fields)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, input)) = data.split_first() else {
        return;
    };
    let (max_bytes, max_fields) = if ctl & 0x80 != 0 {
        (64, 3)
    } else {
        (16384, 100)
    };
    let (whole, fields) = scan(input, max_bytes, max_fields);
    if let Ok(Some(end)) = whole {
        assert!(end <= input.len() && end <= max_bytes);
        assert!(input[..end].ends_with(b"\r\n"));
        let mut ours = Vec::new();
        for &[name, name_end, value, value_end] in &fields {
            let (name, name_end) = (name as usize, name_end as usize);
            let (value, value_end) = (value as usize, value_end as usize);
            assert!(name < name_end && name_end < value && value <= value_end && value_end < end);
            let name = std::str::from_utf8(&input[name..name_end]).unwrap();
            assert!(valid_header_name(name));
            assert!(valid_header_value(&input[value..value_end]));
            ours.push((name, &input[value..value_end]));
        }
        let mut theirs = [httparse::EMPTY_HEADER; 128];
        match httparse::parse_headers(input, &mut theirs) {
            Ok(httparse::Status::Complete((n, parsed))) => {
                assert_eq!(n, end);
                let theirs: Vec<(&str, &[u8])> = parsed.iter().map(|f| (f.name, f.value)).collect();
                assert_eq!(theirs, ours);
            }
            other => panic!("httparse: {other:?}"),
        }
    }
    // A prefix answers "more" or the same error.
    let split = usize::from(ctl & 0x7f).wrapping_mul(7919) % (input.len() + 1);
    let (part, _) = scan(&input[..split], max_bytes, max_fields);
    match (part, whole) {
        (Ok(None), _) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b),
        (part, whole) => panic!("prefix {part:?}, whole {whole:?}"),
    }
});
