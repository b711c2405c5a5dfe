//! Unit tests for response encoding and HTTP dates.

use crate::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[test]
fn status_lines() {
    let mut out = Vec::new();
    write_status_line(&mut out, 200);
    write_status_line(&mut out, 404);
    write_status_line(&mut out, 431);
    write_status_line(&mut out, 599);
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nHTTP/1.1 404 Not Found\r\nHTTP/1.1 431 Request Header Fields Too Large\r\nHTTP/1.1 599 Unknown\r\n"
    );
    for bad in [0, 99, 1000, u16::MAX] {
        let mut out = Vec::new();
        write_status_line(&mut out, bad);
        assert_eq!(out, b"HTTP/1.1 500 Internal Server Error\r\n");
    }
}

#[test]
fn reason_phrases() {
    assert_eq!(reason_phrase(100), "Continue");
    assert_eq!(reason_phrase(413), "Content Too Large");
    assert_eq!(reason_phrase(414), "URI Too Long");
    assert_eq!(reason_phrase(422), "Unprocessable Content");
    assert_eq!(reason_phrase(501), "Not Implemented");
    assert_eq!(reason_phrase(505), "HTTP Version Not Supported");
    assert_eq!(reason_phrase(418), "Unknown");
    assert_eq!(reason_phrase(0), "Unknown");
}

#[test]
fn headers_and_validation() {
    let mut out = Vec::new();
    write_header(&mut out, "Content-Type", b"text/html; charset=utf-8");
    assert_eq!(out, b"Content-Type: text/html; charset=utf-8\r\n");
    assert!(valid_header_name("X-Powered-By"));
    assert!(!valid_header_name(""));
    assert!(!valid_header_name("X Y"));
    assert!(!valid_header_name("X:Y"));
    assert!(!valid_header_name("X\r\nY"));
    assert!(!valid_header_name("Ä"));
    assert!(valid_header_value(b""));
    assert!(valid_header_value(b"a\tb c \x80\xff"));
    assert!(!valid_header_value(b"a\r\nSet-Cookie: x"));
    assert!(!valid_header_value(b"a\nb"));
    assert!(!valid_header_value(b"a\rb"));
    assert!(!valid_header_value(b"a\x00b"));
    assert!(!valid_header_value(b"a\x7fb"));
    assert!(!valid_header_value(b"a\x1bb"));
}

#[test]
fn chunk_headers() {
    let mut out = Vec::new();
    write_chunk_header(&mut out, 0);
    write_chunk_header(&mut out, 10);
    write_chunk_header(&mut out, 4096);
    write_chunk_header(&mut out, usize::MAX);
    let mut expected = b"0\r\na\r\n1000\r\n".to_vec();
    expected.extend_from_slice(format!("{:x}\r\n", usize::MAX).as_bytes());
    assert_eq!(out, expected);
    assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
}

#[test]
fn dates() {
    let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(fmt_http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
    assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(t));
    assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(t));
    assert_eq!(parse_http_date("yesterday"), None);
    assert_eq!(parse_http_date(""), None);
    // Out-of-range times are clamped instead of panicking inside httpdate.
    assert_eq!(
        fmt_http_date(UNIX_EPOCH - Duration::from_secs(10)),
        "Thu, 01 Jan 1970 00:00:00 GMT"
    );
    let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
    assert_eq!(fmt_http_date(far), "Fri, 31 Dec 9999 23:59:59 GMT");
}

#[test]
fn date_now_cached() {
    let secs = || {
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let a = http_date(secs());
    assert_eq!(a.len(), 29);
    let s = std::str::from_utf8(&a).unwrap();
    let parsed = parse_http_date(s).unwrap();
    let now = SystemTime::now();
    let diff = now.duration_since(parsed).unwrap_or_else(|e| e.duration());
    assert!(diff < Duration::from_secs(5), "{s}");
    assert!(s.ends_with(" GMT"));
    let b = http_date(secs());
    assert!(parse_http_date(std::str::from_utf8(&b).unwrap()).unwrap() >= parsed);
}
