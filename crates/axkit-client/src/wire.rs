//! HTTP/1.1 on the client's side: the request head it writes, the
//! response head it parses (with `httparse`), and how the response body is
//! framed (RFC 9112 §6.3), decoded with `axkit-http`'s chunked decoder.

use axkit_http::{parse_content_length, valid_header_name, valid_header_value, ChunkedDecoder};

use crate::{Error, ErrorKind};

/// The most bytes a response head may have.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most header fields a response head may have.
const MAX_HEADERS: usize = 128;
/// The most bytes of trailer fields after a chunked body.
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

/// Headers the client writes itself: a request may not set them.
const MANAGED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// How the request body goes out.
pub(crate) enum Framing {
    /// No body, and none expected by the method.
    None,
    /// `Content-Length`.
    Length(u64),
    /// Chunked: its length is not known beforehand.
    Chunked,
}

/// The head of a request: request line, `Host`, `User-Agent` (unless
/// given), the caller's headers and the framing.
pub(crate) fn request_head(
    method: &str,
    target: &str,
    authority: &str,
    headers: &[(String, String)],
    framing: Framing,
    user_agent: bool,
    upgrade: Option<&str>,
) -> Result<Vec<u8>, Error> {
    let invalid = |what: String| Error::new(ErrorKind::InvalidRequest, what);
    if !valid_header_name(method) {
        return Err(invalid(format!("invalid method {method:?}")));
    }
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !given("host") {
        head.extend_from_slice(b"Host: ");
        head.extend_from_slice(authority.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if user_agent && !given("user-agent") {
        head.extend_from_slice(
            concat!("User-Agent: axkit/", env!("CARGO_PKG_VERSION"), "\r\n").as_bytes(),
        );
    }
    for (name, value) in headers {
        if !valid_header_name(name) || !valid_header_value(value.as_bytes()) {
            return Err(invalid(format!("invalid header {name:?}")));
        }
        if MANAGED.iter().any(|m| name.eq_ignore_ascii_case(m)) {
            return Err(invalid(format!("{name} is the client's to set")));
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(protocol) = upgrade {
        if protocol.is_empty() || !valid_header_value(protocol.as_bytes()) {
            return Err(invalid(format!("invalid protocol {protocol:?}")));
        }
        head.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: ");
        head.extend_from_slice(protocol.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::None => {}
        Framing::Length(n) => head.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => head.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

/// A parsed response head.
pub(crate) struct Head {
    pub status: u16,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server keeps the connection open after this response.
    pub fn keeps_alive(&self) -> bool {
        self.http11
            && !self
                .values("connection")
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
    }
}

/// Parse a response head from the start of `buf`: Ok(None) if more bytes
/// are needed, else the head and its length.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(protocol(format!(
                "response head over {} KiB",
                MAX_HEAD >> 10
            )))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(protocol(format!("malformed response head: {e}"))),
    };
    let status = response.code.unwrap_or(0);
    let headers = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Ok(Some((
        Head {
            status,
            http11: response.version == Some(1),
            headers,
        },
        len,
    )))
}

/// How a response body is delimited.
pub(crate) enum BodyFraming {
    Empty,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// Until the server closes the connection.
    Close,
}

/// The framing of the body of `head`, a response to a `HEAD` request or
/// not, and whether the connection may be used again after it.
pub(crate) fn body_framing(head: &Head, to_head: bool) -> Result<(BodyFraming, bool), Error> {
    let reusable = head.keeps_alive();
    if to_head || head.status == 204 || head.status == 304 || head.status < 200 {
        return Ok((BodyFraming::Empty, reusable));
    }
    let lengths: Vec<&str> = head
        .values("content-length")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let codings: Vec<&str> = head
        .values("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    if !codings.is_empty() {
        if !codings.iter().all(|c| c.eq_ignore_ascii_case("chunked")) || codings.len() > 1 {
            return Err(protocol(format!(
                "unsupported transfer coding {:?}",
                codings.join(", ")
            )));
        }
        // Both framings: the length is ignored, and the connection is not
        // trusted with another request (RFC 9112 §6.3).
        let reusable = reusable && lengths.is_empty();
        return Ok((
            BodyFraming::Chunked(Box::new(ChunkedDecoder::new(MAX_TRAILERS))),
            reusable,
        ));
    }
    let Some(first) = lengths.first() else {
        return Ok((BodyFraming::Close, false));
    };
    let n = parse_content_length(first.as_bytes())
        .filter(|_| lengths.iter().all(|l| l == first))
        .ok_or_else(|| protocol(format!("invalid Content-Length {:?}", lengths.join(", "))))?;
    Ok(if n == 0 {
        (BodyFraming::Empty, reusable)
    } else {
        (BodyFraming::Length(n), reusable)
    })
}

fn protocol(message: String) -> Error {
    Error::new(ErrorKind::Protocol, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn request_heads() {
        let h = request_head(
            "POST",
            "/a?b",
            "x:81",
            &[("X-A".into(), "1".into())],
            Framing::Length(3),
            true,
            None,
        )
        .unwrap();
        let text = String::from_utf8(h).unwrap();
        assert!(
            text.starts_with("POST /a?b HTTP/1.1\r\nHost: x:81\r\nUser-Agent: axkit/"),
            "{text}"
        );
        assert!(
            text.ends_with("X-A: 1\r\nContent-Length: 3\r\n\r\n"),
            "{text}"
        );
        let host = [("host".to_string(), "other".to_string())];
        let h = String::from_utf8(
            request_head("GET", "/", "x", &host, Framing::None, true, None).unwrap(),
        )
        .unwrap();
        assert!(
            h.contains("host: other\r\n") && !h.contains("Host: x"),
            "{h}"
        );
        for bad in [
            ("X", "a\r\nInjected: 1"),
            ("Bad Name", "v"),
            ("Content-Length", "1"),
            ("Transfer-Encoding", "chunked"),
        ] {
            let headers = [(bad.0.to_string(), bad.1.to_string())];
            assert!(
                request_head("GET", "/", "x", &headers, Framing::None, true, None).is_err(),
                "{bad:?}"
            );
        }
        assert!(request_head("GE T", "/", "x", &[], Framing::None, true, None).is_err());
    }

    #[test]
    fn response_framing() {
        let f = |text: &str, to_head: bool| {
            body_framing(&head(text), to_head).map(|(f, reuse)| {
                let kind = match f {
                    BodyFraming::Empty => "empty".to_string(),
                    BodyFraming::Length(n) => format!("length {n}"),
                    BodyFraming::Chunked(_) => "chunked".into(),
                    BodyFraming::Close => "close".into(),
                };
                (kind, reuse)
            })
        };
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false).unwrap(),
            ("length 5".into(), true)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).unwrap(),
            ("empty".into(), true)
        );
        assert_eq!(
            f("HTTP/1.1 204 No\r\n\r\n", false).unwrap(),
            ("empty".into(), true)
        );
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                false
            )
            .unwrap(),
            ("chunked".into(), true)
        );
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                false
            )
            .unwrap(),
            ("chunked".into(), false)
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\n\r\n", false).unwrap(),
            ("close".into(), false)
        );
        assert_eq!(
            f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).unwrap(),
            ("length 1".into(), false)
        );
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\n",
                false
            )
            .unwrap(),
            ("length 1".into(), false)
        );
        assert!(f(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        )
        .is_err());
        assert!(f("HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n", false).is_err());
        assert!(f(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false
        )
        .is_err());
        assert_eq!(
            f("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n", false).unwrap(),
            ("length 2".into(), true)
        );
    }

    #[test]
    fn heads_need_all_their_bytes_and_a_limit() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n")
            .unwrap()
            .is_none());
        assert!(parse_head(b"HTTP/1.1 2000 OK\r\n\r\n").is_err());
        let long = format!("HTTP/1.1 200 OK\r\nA: {}", "x".repeat(MAX_HEAD));
        assert!(parse_head(long.as_bytes()).is_err());
    }
}
