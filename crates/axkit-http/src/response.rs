//! Response-head encoding: status lines, header lines, chunk framing, and the
//! checks that keep header names and values set by plugins from splitting a
//! response.

use crate::{is_field_value, is_tchar, is_token};

/// The last chunk and the empty trailer section that end a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Statuses whose responses never carry a body (RFC 9110 §6.4.1): 1xx,
/// 204 and 304, whatever length their fields announce.
pub fn bodiless(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// The reason phrase for `status`: the RFC 9110 codes plus the other
/// IANA-registered ones a server may send (RFC 6585, 7725, 8297, WebDAV);
/// `"Unknown"` otherwise.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

/// Append `"HTTP/1.1 200 OK\r\n"`. Always HTTP/1.1: RFC 9112 §2.3 says a
/// server sends its own highest version, even to an HTTP/1.0 client. A status
/// outside 100..=999 cannot be put on the wire and is written as 500.
pub fn write_status_line(out: &mut Vec<u8>, status: u16) {
    let status = if (100..=999).contains(&status) {
        status
    } else {
        500
    };
    let digits = [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ];
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(&digits);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append `"Name: value\r\n"`. Does not validate: check names and values that
/// come from outside with [`valid_header_name`] / [`valid_header_value`].
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a field is never passed on from one connection to another:
/// hop-by-hop (RFC 9110 §7.6.1, `Proxy-*` included), or the framing, which
/// each sender writes itself.
pub fn hop_by_hop(name: &str) -> bool {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.len() > 6 && name.as_bytes()[..6].eq_ignore_ascii_case(b"proxy-")
}

/// Whether field name `name` is `canonical`: names compare in any case,
/// but most peers and plugins write them as `canonical` does, so equal
/// bytes answer first.
pub fn same_field(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len() && (name == canonical || name.eq_ignore_ascii_case(canonical))
}

/// Whether `name` is a valid field name (a non-empty token).
pub fn valid_header_name(name: &str) -> bool {
    is_token(name.as_bytes())
}

/// [`valid_header_name`] in a form a `const` can call, for a name checked
/// at compile time (a client's literal field names). The hot path keeps
/// its own: written as this loop, `is_token` cost the request-head parse
/// about 2 % more instructions (a 611-byte head: 5,099 → 5,202), as the
/// code around it was inlined differently.
pub const fn valid_header_name_const(name: &str) -> bool {
    let mut rest = name.as_bytes();
    while let [b, tail @ ..] = rest {
        if !is_tchar(*b) {
            return false;
        }
        rest = tail;
    }
    !name.is_empty()
}

/// Whether `value` may be sent as a field value: no CR, LF, NUL, DEL or other
/// CTL except HTAB (obs-text 0x80-0xFF is allowed). A CR or LF smuggled into a
/// value would let its author write arbitrary headers or a second response.
pub fn valid_header_value(value: &[u8]) -> bool {
    is_field_value(value)
}

/// Append the size line for a chunk of `len` bytes: `"{hex}\r\n"`. A zero
/// `len` writes `"0\r\n"`, which starts the last chunk; prefer [`LAST_CHUNK`].
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut i = buf.len();
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `const` form answers as the hot path's does.
    #[test]
    fn the_const_name_check_agrees() {
        let mut names: Vec<String> = (0..=255u8)
            .map(|b| String::from_utf8_lossy(&[b, b'a']).into_owned())
            .collect();
        names.extend(
            [
                "",
                "Via",
                "X-Forwarded-For",
                "Bad Name",
                "a:b",
                "é",
                "!#$%&'*+-.^_`|~",
            ]
            .map(String::from),
        );
        for name in &names {
            assert_eq!(
                valid_header_name_const(name),
                valid_header_name(name),
                "{name:?}"
            );
        }
    }
}
