//! Fuzz target: arbitrary bytes as a CGI program's output (its response
//! head is the untrusted output of a user's program) through
//! axkit-plugins' `header_end`, `parse_head` and `trim_ows`. Checks that
//! they never panic; that the end found is the first empty line and lies
//! inside the output; that every head accepted has a Status of 200-599, a
//! Location and fields whose names are tokens and whose values have no
//! CR, LF, NUL or other control and no surrounding spaces (a program must
//! not split or smuggle a response), no Transfer-Encoding, at most one
//! Content-Length, all digits, and one of Status, Location or
//! Content-Type; that such a head, written out again, parses the same;
//! that a search in two reads, the second going on where the first
//! stopped, finds the same end; and that `trim_ows` takes only spaces and
//! tabs, from both ends.
//!
//! Input layout: the program's output; the head parsed is the block
//! `header_end` finds, or the whole input when it finds none.

#![no_main]

use axkit_http::{valid_header_name, valid_header_value};
use axkit_plugins::fuzzing::{cgi_header_end, cgi_parse_head, trim_ows};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let block = match cgi_header_end(data, 0) {
        Ok(end) => {
            assert!(end >= 1 && end <= data.len(), "{end} of {}", data.len());
            let block = &data[..end];
            assert!(
                block == b"\n"
                    || block == b"\r\n"
                    || block.ends_with(b"\n\n")
                    || block.ends_with(b"\n\r\n"),
                "{block:?}"
            );
            assert_eq!(cgi_header_end(block, 0), Ok(end));
            assert!(cgi_header_end(&block[..end - 1], 0).is_err());
            block
        }
        Err(_) => {
            assert!(!data.starts_with(b"\n") && !data.starts_with(b"\r\n"));
            assert!(!data.windows(2).any(|w| w == b"\n\n"));
            assert!(!data.windows(3).any(|w| w == b"\n\r\n"));
            data
        }
    };
    // In two reads, the second search going on where the first stopped:
    // the same end.
    let cut = data.len() / 2;
    let twice = cgi_header_end(&data[..cut], 0).or_else(|from| cgi_header_end(data, from));
    assert_eq!(twice.ok(), cgi_header_end(data, 0).ok(), "cut at {cut}");

    if let Ok(head) = cgi_parse_head(block) {
        let (status, location, fields) = &head;
        if let Some(status) = status {
            assert!((200..=599).contains(status), "{status}");
        }
        if let Some(location) = location {
            assert!(valid_header_value(location.as_bytes()), "{location:?}");
        }
        let mut content_length = 0;
        let mut content_type = false;
        for (name, value) in fields {
            assert!(valid_header_name(name), "{name:?}");
            assert!(valid_header_value(value.as_bytes()), "{value:?}");
            assert!(!value.contains(['\r', '\n', '\0']), "{value:?}");
            assert_eq!(trim_ows(value.as_bytes()), value.as_bytes());
            for reserved in ["status", "location", "transfer-encoding"] {
                assert!(!name.eq_ignore_ascii_case(reserved), "{name:?}");
            }
            if name.eq_ignore_ascii_case("content-length") {
                content_length += 1;
                assert!(!value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()));
            }
            content_type |= name.eq_ignore_ascii_case("content-type");
        }
        assert!(content_length <= 1);
        assert!(status.is_some() || location.is_some() || content_type);

        let mut again = Vec::new();
        if let Some(status) = status {
            again.extend_from_slice(format!("Status: {status}\r\n").as_bytes());
        }
        if let Some(location) = location {
            again.extend_from_slice(format!("Location: {location}\r\n").as_bytes());
        }
        for (name, value) in fields {
            again.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        again.extend_from_slice(b"\r\n");
        assert_eq!(cgi_header_end(&again, 0), Ok(again.len()));
        assert_eq!(cgi_parse_head(&again), Ok(head));
    }

    let trimmed = trim_ows(data);
    let at = trimmed.as_ptr() as usize - data.as_ptr() as usize;
    assert!(at + trimmed.len() <= data.len());
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    assert!(data[..at].iter().all(is_ows));
    assert!(data[at + trimmed.len()..].iter().all(is_ows));
    assert!(!trimmed.first().is_some_and(is_ows) && !trimmed.last().is_some_and(is_ows));
});
