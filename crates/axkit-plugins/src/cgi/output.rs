//! A CGI script's output head (RFC 3875 §6): where the header block ends,
//! what its lines say, and how they become the response. Anything that
//! could split or smuggle a response is refused, and so is a head that
//! could be read two ways: a repeated Status, Location or Content-Length
//! (nginx refuses an upstream's repeated Content-Length too), or any
//! Transfer-Encoding (the server frames the body; a script that chunked
//! its own output would have its chunk sizes sent as content).

use axkit::plugin::Context;

/// Where the header block ends (just past its empty line), if it does:
/// `Ok` with that, or `Err` with the `from` for the search once more
/// output has come (see [`axkit_http::blank_line_end`]; `from` is 0 for
/// the first search).
pub(crate) fn header_end(buf: &[u8], from: usize) -> Result<usize, usize> {
    if buf.starts_with(b"\n") {
        return Ok(1);
    }
    if buf.starts_with(b"\r\n") {
        return Ok(2);
    }
    axkit_http::blank_line_end(buf, from)
}

/// A script's parsed header block.
#[derive(Debug, Default)]
pub(crate) struct CgiHead {
    pub(crate) status: Option<u16>,
    pub(crate) location: Option<String>,
    pub(crate) content_type: bool,
    pub(crate) content_length: Option<u64>,
    pub(crate) headers: Vec<(String, String)>,
}

/// Parse the header block (RFC 3875 §6.3): `Name: value` lines ending in
/// LF or CRLF. Anything that could split or smuggle a response is refused.
pub(crate) fn parse_head(block: &[u8]) -> Result<CgiHead, String> {
    let mut head = CgiHead::default();
    for raw in block.split(|&b| b == b'\n') {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let shown = || {
            let s = String::from_utf8_lossy(&line[..line.len().min(80)]);
            format!("{s:?}")
        };
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            return Err(format!("folded header line {}", shown()));
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            return Err(format!("not a header line: {}", shown()));
        };
        let name = std::str::from_utf8(&line[..colon]).unwrap_or("");
        if !axkit_http::valid_header_name(name) {
            return Err(format!("invalid header name in {}", shown()));
        }
        let value = trim_ows(&line[colon + 1..]);
        if !axkit_http::valid_header_value(value) {
            return Err(format!(
                "invalid header value (CR, LF, NUL or control) in {}",
                shown()
            ));
        }
        let Ok(value) = std::str::from_utf8(value) else {
            return Err(format!("header value is not UTF-8 in {}", shown()));
        };
        if name.eq_ignore_ascii_case("status") {
            let code = value.get(..3).and_then(|c| c.parse::<u16>().ok());
            // A value shorter than a code has no code (and no tail).
            let tail_ok = matches!(value.as_bytes().get(3), None | Some(b' '));
            if head.status.is_some() {
                return Err(format!("duplicate Status header {}", shown()));
            }
            match code {
                Some(c) if (200..=599).contains(&c) && tail_ok => head.status = Some(c),
                _ => return Err(format!("invalid Status {}", shown())),
            }
        } else if name.eq_ignore_ascii_case("location") {
            if head.location.is_some() {
                return Err(format!("duplicate Location header {}", shown()));
            }
            head.location = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "Transfer-Encoding is the server's to set, refused: {}",
                shown()
            ));
        } else {
            if name.eq_ignore_ascii_case("content-type") {
                head.content_type = true;
            }
            if name.eq_ignore_ascii_case("content-length") {
                let Some(length) = axkit_http::parse_content_length(value.as_bytes()) else {
                    return Err(format!("invalid Content-Length {}", shown()));
                };
                if head.content_length.is_some() {
                    return Err(format!("duplicate Content-Length header {}", shown()));
                }
                head.content_length = Some(length);
            }
            head.headers.push((name.to_string(), value.to_string()));
        }
    }
    if head.status.is_none() && head.location.is_none() && !head.content_type {
        return Err("no Content-Type, Location or Status header".to_string());
    }
    Ok(head)
}

pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// What applying a header block to the response came to.
pub(super) enum Applied {
    Ready,
    Redirected,
    Invalid(String),
}

impl CgiHead {
    pub(super) fn apply(self, ctx: &mut Context) -> Applied {
        match (&self.location, self.status) {
            // RFC 3875 §6.2.2: a local redirect is the server's business.
            (Some(loc), None) if loc.starts_with('/') && !loc.starts_with("//") => {
                ctx.internal_redirect(loc);
                return Applied::Redirected;
            }
            (Some(loc), None) if !loc.contains("://") => {
                return Applied::Invalid(format!(
                    "Location {loc:?} is neither a local path nor an absolute URL"
                ));
            }
            _ => {}
        }
        ctx.response.status = match (&self.location, self.status) {
            (_, Some(status)) => status,
            (Some(_), None) => 302,
            (None, None) => 200,
        };
        if let Some(loc) = self.location {
            ctx.response.headers.set("Location", loc);
        }
        // The script's fields replace what other plugins set (mime_map's
        // Content-Type, say); repeated ones (Set-Cookie) all go out.
        for (name, _) in &self.headers {
            ctx.response.headers.remove(name);
        }
        for (name, value) in self.headers {
            ctx.response.headers.add(name, value);
        }
        Applied::Ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_block_end() {
        // An empty block, whole or in two pieces; the rest is
        // `blank_line_end`'s (tested in axkit-http).
        assert_eq!(header_end(b"\nbody", 0), Ok(1));
        assert_eq!(header_end(b"\r\nbody", 0), Ok(2));
        assert_eq!(header_end(b"\r", 0), Err(0));
        assert_eq!(header_end(b"\r\n", 0), Ok(2));
        assert_eq!(header_end(b"A: b\r\n\r\nbody", 4), Ok(8));
    }

    #[test]
    fn header_lines() {
        let h = parse_head(b"Content-Type: text/plain\r\nX-A:  1 \r\nStatus: 404 Nope\r\n\r\n")
            .unwrap();
        assert_eq!(h.status, Some(404));
        assert!(h.content_type);
        assert_eq!(h.headers[1], ("X-A".to_string(), "1".to_string()));
        for bad in [
            &b"Content-Type: a\rb\n\n"[..],
            b"Content-Type: a\0b\n\n",
            b"Bad Name: x\nContent-Type: a\n\n",
            b"no colon\n\n",
            b"Content-Type: a\n folded\n\n",
            b"Status: abc\n\n",
            b"Status: 20\n\n",
            b"Status:\nContent-Type: a\n\n",
            b"Status: 2004\nContent-Type: a\n\n",
            b"Status: 100\n\n",
            b"Content-Type: a\nContent-Length: +5\n\n",
            b"X-Only: a\n\n",
            b"Content-Type: a\nContent-Length: 5\nContent-Length: 6\n\n",
            b"Content-Type: a\nContent-Length: 5\ncontent-length: 5\n\n",
            b"Content-Type: a\nTransfer-Encoding: chunked\n\n",
            b"Status: 200\nStatus: 404\nContent-Type: a\n\n",
            b"Location: /a\nLocation: /b\n\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
