//! Request-head parsing: framing of the head (line structure and limits),
//! request-line validation, field parsing in one pass over the field lines,
//! and the RFC 9112 semantic checks (Host, Content-Length,
//! Transfer-Encoding) that decide how the body is delimited.
//!
//! Parsing happens in a fixed left-to-right order and each check only looks at
//! bytes before the point it is made, so feeding a head in pieces gives the same
//! result as feeding it whole: a prefix either yields `Ok(None)` or the very
//! error the whole input yields. The size limits are enforced on incomplete
//! input, so a client trickling an endless header is cut off at the limit.

use bytes::{Buf, Bytes, BytesMut};

use crate::fields::{line_end, scan_field_lines, FieldError};
use crate::{
    alnum_and, is_tchar, is_token, parse_content_length, trim_ows, BodyFraming, HttpError, Limits,
    Version,
};

/// RFC 9112 §2.2 lets a server skip empty lines before the request line
/// (some clients send a stray CRLF after a POST body). A few are plenty; more
/// is a client feeding us nothing to hold the connection.
const MAX_EMPTY_LINES: usize = 8;

const E_BARE_CR: HttpError = HttpError::new(400, "bare CR in request head");
// RFC 9112 §2.2 allows a recipient to accept a bare LF as a line terminator.
// We do not: a front end that splits lines differently from us is exactly how
// requests get smuggled, and every real client sends CRLF.
const E_BARE_LF: HttpError = HttpError::new(400, "bare LF in request head");
const E_TOO_MANY_EMPTY: HttpError = HttpError::new(400, "too many empty lines before request");
const E_LINE_TOO_LONG: HttpError = HttpError::new(414, "request line too long");
const E_HEADERS_TOO_LARGE: HttpError = HttpError::new(431, "header section too large");
const E_TOO_MANY_HEADERS: HttpError = HttpError::new(431, "too many header fields");
const E_OBS_FOLD: HttpError = HttpError::new(400, "obsolete line folding");
const E_REQUEST_LINE: HttpError = HttpError::new(400, "malformed request line");
const E_METHOD: HttpError = HttpError::new(400, "method is not a token");
const E_VERSION: HttpError = HttpError::new(400, "malformed HTTP version");
const E_VERSION_UNSUPPORTED: HttpError = HttpError::new(505, "unsupported HTTP major version");
const E_TARGET: HttpError = HttpError::new(400, "invalid request-target");
const E_TARGET_FORM: HttpError = HttpError::new(400, "request-target form not allowed here");
const E_FIELD_NAME: HttpError = HttpError::new(400, "invalid header field name");
const E_FIELD_VALUE: HttpError = HttpError::new(400, "invalid byte in header field value");
const E_HOST_MISSING: HttpError = HttpError::new(400, "HTTP/1.1 request without Host");
const E_HOST_DUP: HttpError = HttpError::new(400, "more than one Host header");
const E_HOST_INVALID: HttpError = HttpError::new(400, "invalid Host header");
const E_CL_DUP: HttpError = HttpError::new(400, "more than one Content-Length header");
const E_CL_INVALID: HttpError = HttpError::new(400, "invalid Content-Length");
const E_CL_AND_TE: HttpError = HttpError::new(400, "both Content-Length and Transfer-Encoding");
const E_TE_HTTP10: HttpError = HttpError::new(400, "Transfer-Encoding in an HTTP/1.0 request");
const E_TE_INVALID: HttpError = HttpError::new(400, "malformed Transfer-Encoding");
const E_TE_CHUNKED: HttpError = HttpError::new(400, "chunked is not the final transfer coding");
const E_TE_UNKNOWN: HttpError = HttpError::new(501, "unsupported transfer coding");
const E_INTERNAL: HttpError = HttpError::new(400, "request head could not be parsed");

/// A byte range into the head. `u32` keeps `RequestHead` small; heads are
/// bounded by [`Limits`] far below 4 GiB and bigger ones are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Option<Span> {
        Some(Span {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    fn get(self, b: &[u8]) -> &[u8] {
        b.get(self.start as usize..self.end as usize).unwrap_or(&[])
    }

    /// A sub-span of `self` given offsets relative to its start.
    fn sub(self, from: usize, to: usize) -> Option<Span> {
        let base = self.start as usize;
        Span::new(base.checked_add(from)?, base.checked_add(to)?)
    }
}

/// Where one field's name and value lie in its head. Opaque: a caller
/// only keeps the list of a finished head ([`RequestHead::take_field_spans`])
/// to hand it to the next parse ([`parse_request_head_reusing`]), so that
/// a worker's heads do not each allocate one.
#[derive(Clone, Copy, Debug)]
pub struct FieldSpan {
    name: Span,
    value: Span,
}

/// A parsed, validated request head. Owns the head bytes (a `Bytes` split off
/// the read buffer, no copy) and offsets into them.
#[derive(Clone, Debug)]
pub struct RequestHead {
    head: Bytes,
    method: Span,
    target: Span,
    /// `None` means an absolute-form target with an empty path, i.e. "/".
    path: Option<Span>,
    query: Option<Span>,
    host: Option<Span>,
    version: Version,
    fields: Vec<FieldSpan>,
    framing: BodyFraming,
    keep_alive: bool,
    expects_continue: bool,
}

fn as_str(b: &[u8]) -> &str {
    // Every span handed to this was validated as ASCII during parsing.
    std::str::from_utf8(b).unwrap_or("")
}

impl RequestHead {
    /// The request method, case-sensitive as sent.
    pub fn method(&self) -> &str {
        as_str(self.method.get(&self.head))
    }

    /// Whether the method is `method` (case-sensitive), without making a
    /// `&str` of it.
    pub fn method_is(&self, method: &str) -> bool {
        self.method.get(&self.head) == method.as_bytes()
    }

    /// The request-target exactly as sent.
    pub fn target(&self) -> &str {
        as_str(self.target.get(&self.head))
    }

    /// The path part of the target, still percent-encoded, without the query.
    /// For absolute-form `http://h/p?q` it is `/p` (and `/` if empty); for `*`
    /// it is `*`; for a CONNECT authority-form target it is the authority.
    pub fn path(&self) -> &str {
        match self.path {
            Some(s) => as_str(s.get(&self.head)),
            None => "/",
        }
    }

    /// [`path`](Self::path) without making a `&str` of it. Always ASCII:
    /// every head is made by the parser, which admits only visible ASCII
    /// in the request-target, or by [`unparsed`](Self::unparsed), which
    /// shows any other byte as `?`; the path is a part of the target (or
    /// `/`). The `axkit` crate makes its `&str` of it after an ASCII
    /// check, which costs less than a UTF-8 check on every access.
    pub fn path_bytes(&self) -> &[u8] {
        match self.path {
            Some(s) => s.get(&self.head),
            None => b"/",
        }
    }

    /// Everything after the first `?` of the target, raw.
    pub fn query(&self) -> Option<&str> {
        self.query.map(|s| as_str(s.get(&self.head)))
    }

    /// The protocol version of the request.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields in order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields().map(|(name, value)| (as_str(name), value))
    }

    /// The header fields in order, names as sent, both as bytes: what
    /// [`headers`](Self::headers) gives without making a `&str` of each
    /// name (a UTF-8 check per name). The parser admits only `tchar`
    /// (ASCII) names.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields
            .iter()
            .map(move |f| (f.name.get(&self.head), f.value.get(&self.head)))
    }

    /// The value of the first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// Like [`header`](Self::header), but `None` if the value is not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The host the request is for, as sent but without any `:port`: the
    /// authority of an absolute-form target (RFC 9112 §3.2.2 says it overrides
    /// Host), else the Host header. `None` if neither names a host (HTTP/1.0
    /// without Host, or an empty Host).
    pub fn host(&self) -> Option<&str> {
        self.host.map(|s| as_str(s.get(&self.head)))
    }

    /// How the request body is delimited.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the connection may stay open after this request: on HTTP/1.1
    /// unless Connection has the token `close`; on HTTP/1.0 only if it has
    /// `keep-alive` (and not `close`).
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether an HTTP/1.1 client sent `Expect: 100-continue` and waits for an
    /// interim response before sending the body.
    pub fn expects_continue(&self) -> bool {
        self.expects_continue
    }

    /// The request line as the client sent it, without its line ending:
    /// what an access log shows as `%r` (for a refused request, see
    /// [`RequestHead::unparsed`]). It may hold any byte; escape it for logs.
    pub fn request_line(&self) -> &[u8] {
        let line = match memchr::memchr(b'\n', &self.head) {
            Some(end) => &self.head[..end],
            None => &self.head[..],
        };
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    /// A stand-in head for bytes that were refused as a request, so that
    /// the refusal can still be logged: its request line is the first line
    /// of `raw` as it is (up to the first LF, at most 8 KiB); the method and
    /// target are that line's first two words (at most 256 bytes each,
    /// bytes outside printable ASCII shown as `?`, `-` for a missing word),
    /// the version is HTTP/1.0 if the line says so and HTTP/1.1 otherwise;
    /// no fields, no body, no keep-alive.
    pub fn unparsed(raw: &[u8]) -> RequestHead {
        const MAX_WORD: usize = 256;
        const MAX_LINE: usize = 8192;
        let line = match memchr::memchr(b'\n', raw) {
            Some(end) => &raw[..end],
            None => raw,
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let line = &line[..line.len().min(MAX_LINE)];
        let line_end = memchr::memchr2(b'\r', b'\n', line).unwrap_or(line.len());
        let mut words = line[..line_end]
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty());
        // The line itself, kept whole for `request_line`, then the words
        // that the accessors show.
        let mut text = Vec::with_capacity(line.len() + 2 * MAX_WORD + 3);
        text.extend_from_slice(line);
        text.extend_from_slice(b"\r\n");
        fn word(text: &mut Vec<u8>, w: Option<&[u8]>) -> Span {
            let start = text.len();
            match w {
                Some(w) => text.extend(w.iter().take(MAX_WORD).map(|&b| {
                    if (b'!'..=b'~').contains(&b) {
                        b
                    } else {
                        b'?'
                    }
                })),
                None => text.push(b'-'),
            }
            Span::new(start, text.len()).unwrap_or(Span { start: 0, end: 0 })
        }
        let method = word(&mut text, words.next());
        text.push(b' ');
        let target = word(&mut text, words.next());
        let version = match words.next() {
            Some(b"HTTP/1.0") => Version::Http10,
            _ => Version::Http11,
        };
        RequestHead {
            head: Bytes::from(text),
            method,
            target,
            path: Some(target),
            query: None,
            host: None,
            version,
            fields: Vec::new(),
            framing: BodyFraming::None,
            keep_alive: false,
            expects_continue: false,
        }
    }

    /// The head's list of field positions, taken for reuse by the next
    /// parse ([`parse_request_head_reusing`]): the head has no fields
    /// after this, so it is for when the request is done with.
    pub fn take_field_spans(&mut self) -> Vec<FieldSpan> {
        std::mem::take(&mut self.fields)
    }

    /// The raw head, from the request line through the final CRLFCRLF.
    pub fn head_bytes(&self) -> &[u8] {
        &self.head
    }
}

/// Parse a request head from the front of `buf`.
///
/// `Ok(None)`: incomplete, read more and call again with the grown buffer. On
/// success the head (and any empty lines before it) is split off the front of
/// `buf`, so what remains is body or pipelined data. On error `buf` is left
/// untouched and the connection must be closed: we never resynchronise.
pub fn parse_request_head(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<RequestHead>, HttpError> {
    parse_request_head_reusing(buf, limits, &mut Vec::new())
}

/// [`parse_request_head`] keeping the head's field positions in `spare`
/// (cleared first) when it has room: the list of an earlier head
/// ([`RequestHead::take_field_spans`]), so that the parse allocates
/// nothing. A head parsed takes it; otherwise it is left there.
pub fn parse_request_head_reusing(
    buf: &mut BytesMut,
    limits: &Limits,
    spare: &mut Vec<FieldSpan>,
) -> Result<Option<RequestHead>, HttpError> {
    spare.clear();
    let Some((skip, len, parsed)) = parse_head(buf, limits, spare)? else {
        return Ok(None);
    };
    buf.advance(skip);
    let head = buf.split_to(len).freeze();
    Ok(Some(RequestHead { head, ..parsed }))
}

/// The whole parse on borrowed bytes: how many bytes of empty lines come
/// first, how long the head is, and the head with empty bytes.
///
/// The errors come in a fixed order of precedence, which is what makes a
/// prefix of the input answer either `Ok(None)` or the whole input's error:
/// first the line structure up to the end of the request line, then the
/// request line itself, then the line structure and limits of the field
/// lines, and only once the head is complete the first bad field name or
/// value and the semantic checks of [`semantics`].
fn parse_head(
    data: &[u8],
    limits: &Limits,
    spare: &mut Vec<FieldSpan>,
) -> Result<Option<(usize, usize, RequestHead)>, HttpError> {
    let mut skip = 0;
    let mut empty_lines = 0;
    loop {
        match data.get(skip..) {
            Some([b'\r', b'\n', ..]) => {
                empty_lines += 1;
                if empty_lines > MAX_EMPTY_LINES {
                    return Err(E_TOO_MANY_EMPTY);
                }
                skip += 2;
            }
            Some([b'\r']) | Some([]) | None => return Ok(None),
            Some([b'\r', _, ..]) => return Err(E_BARE_CR),
            Some([b'\n', ..]) => return Err(E_BARE_LF),
            Some(_) => break,
        }
    }
    let rest = &data[skip..];

    let (line_end, line) = match quick_request_line(rest, limits.max_request_line) {
        Some(quick) => quick,
        None => {
            let max_line = limits.max_request_line.saturating_add(2);
            let line_end = match line_end(rest, 0, max_line) {
                Ok(Some(end)) => end,
                Ok(None) => return Ok(None),
                Err(FieldError::TooLarge) => return Err(E_LINE_TOO_LONG),
                Err(e) => return Err(request_error(e)),
            };
            (line_end, parse_request_line(&rest[..line_end - 2])?)
        }
    };

    let mut fields = FieldLines {
        fields: spare,
        host_count: 0,
        host: None,
        content_length: None,
        content_length_dup: false,
        has_te: false,
        conn_close: false,
        conn_keep_alive: false,
        expect_continue: false,
    };
    let scanned = scan_field_lines(
        rest,
        line_end,
        limits.max_header_bytes,
        limits.max_headers,
        |field| fields.note(rest, field),
    );
    let len = match scanned {
        Ok(Some(len)) => len,
        Ok(None) => return Ok(None),
        Err(e) => return Err(request_error(e)),
    };
    let head = semantics(&rest[..len], line, fields)?;
    Ok(Some((skip, len, head)))
}

/// The usual request line, `tchars SP target-bytes SP HTTP/1.x CRLF` no
/// longer than `max_line`, in one pass: the index just past its LF and what
/// it says. `None` for anything else, which the line search and
/// [`parse_request_line`] then judge, so that every refusal comes out as
/// it always did; on a line this accepts they agree.
fn quick_request_line(rest: &[u8], max_line: usize) -> Option<(usize, RequestLine)> {
    let mut sp1 = 0;
    while rest.get(sp1).is_some_and(|&b| is_tchar(b)) {
        sp1 += 1;
    }
    if sp1 == 0 || rest.get(sp1) != Some(&b' ') {
        return None;
    }
    let mut sp2 = sp1 + 1;
    while rest.get(sp2).is_some_and(|&b| is_target_byte(b)) {
        sp2 += 1;
    }
    if sp2 == sp1 + 1 || rest.get(sp2) != Some(&b' ') {
        return None;
    }
    let version = match rest.get(sp2 + 1..sp2 + 11)? {
        b"HTTP/1.1\r\n" => Version::Http11,
        b"HTTP/1.0\r\n" => Version::Http10,
        _ => return None,
    };
    let line_len = sp2 + 9;
    if line_len > max_line {
        return None;
    }
    let line = RequestLine {
        method: Span::new(0, sp1)?,
        target: Span::new(sp1 + 1, sp2)?,
        version,
    };
    Some((line_len + 2, line))
}

/// VCHAR: the URI grammar has no room for CTLs or non-ASCII, and `#` (a
/// fragment) is never part of a request-target.
const TARGET_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = b'!';
    while b <= b'~' {
        t[b as usize] = b != b'#';
        b += 1;
    }
    t
};

fn is_target_byte(b: u8) -> bool {
    TARGET_BYTE[usize::from(b)]
}

/// The request's error for a refusal of its field lines (or of its
/// request line's line structure).
fn request_error(e: FieldError) -> HttpError {
    match e {
        FieldError::BareCr => E_BARE_CR,
        FieldError::BareLf => E_BARE_LF,
        FieldError::ObsFold => E_OBS_FOLD,
        FieldError::TooLarge => E_HEADERS_TOO_LARGE,
        FieldError::TooMany => E_TOO_MANY_HEADERS,
        FieldError::Name => E_FIELD_NAME,
        FieldError::Value => E_FIELD_VALUE,
    }
}

/// The request line, checked.
struct RequestLine {
    method: Span,
    target: Span,
    version: Version,
}

/// What the field lines say, noted as they are scanned.
struct FieldLines<'a> {
    /// Empty at the start; taken by the head when it is complete and sound.
    fields: &'a mut Vec<FieldSpan>,
    host_count: usize,
    /// The value of the last Host field.
    host: Option<Span>,
    content_length: Option<Span>,
    content_length_dup: bool,
    has_te: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    expect_continue: bool,
}

/// Fields a head usually fits in: the vector is made this big at the first
/// field, so that most requests allocate once.
const USUAL_FIELDS: usize = 16;

impl FieldLines<'_> {
    /// Keep a field (`[name start, name end, value start, value end]`),
    /// and note what it says if it is one of those that decide framing,
    /// the host or the connection.
    fn note(&mut self, head: &[u8], [name, name_end, value, value_end]: [u32; 4]) {
        let field = FieldSpan {
            name: Span {
                start: name,
                end: name_end,
            },
            value: Span {
                start: value,
                end: value_end,
            },
        };
        if self.fields.capacity() == 0 {
            self.fields.reserve_exact(USUAL_FIELDS);
        }
        self.fields.push(field);
        let name = field.name.get(head);
        let value = field.value.get(head);
        // The length first: most fields are none of these and cost one
        // comparison.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.host_count += 1;
                self.host = Some(field.value);
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // Even two equal values are refused: RFC 9112 §6.3 allows
                // merging them, but a peer that takes the first of two
                // different ones disagrees with one that takes the last.
                self.content_length_dup |= self.content_length.is_some();
                self.content_length = Some(field.value);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => self.has_te = true,
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for tok in value.split(|&b| b == b',').map(trim_ows) {
                    if tok.eq_ignore_ascii_case(b"close") {
                        self.conn_close = true;
                    } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                        self.conn_keep_alive = true;
                    }
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
}

/// The checks on a complete head whose lines are sound: Host, the form of
/// the request-target, the body framing, the connection. `head` starts at
/// the request line and ends after the final CRLF.
fn semantics(head: &[u8], line: RequestLine, f: FieldLines) -> Result<RequestHead, HttpError> {
    if f.content_length_dup {
        return Err(E_CL_DUP);
    }
    let version = line.version;

    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, for any request
    // with more than one, or with an invalid value.
    if f.host_count > 1 {
        return Err(E_HOST_DUP);
    }
    let mut host = None;
    match f.host {
        None if version == Version::Http11 => return Err(E_HOST_MISSING),
        None => {}
        Some(span) if span.start == span.end => {}
        Some(span) => {
            let host_len = authority_host_len(span.get(head)).ok_or(E_HOST_INVALID)?;
            host = Some(span.sub(0, host_len).ok_or(E_INTERNAL)?);
        }
    }

    let (path, query, target_host) = classify_target(head, &line)?;
    if target_host.is_some() {
        host = target_host;
    }

    let framing = if f.has_te {
        if f.content_length.is_some() {
            return Err(E_CL_AND_TE);
        }
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty
        // framing, whatever else it says.
        if version == Version::Http10 {
            return Err(E_TE_HTTP10);
        }
        check_transfer_encoding(
            f.fields
                .iter()
                .filter(|h| h.name.get(head).eq_ignore_ascii_case(b"transfer-encoding"))
                .map(|h| h.value.get(head)),
        )?;
        BodyFraming::Chunked
    } else if let Some(v) = f.content_length {
        // A list such as "5, 5" fails here too: only digits are accepted.
        match parse_content_length(v.get(head)).ok_or(E_CL_INVALID)? {
            0 => BodyFraming::None,
            n => BodyFraming::Length(n),
        }
    } else {
        BodyFraming::None
    };

    let keep_alive = match version {
        Version::Http11 => !f.conn_close,
        Version::Http10 => f.conn_keep_alive && !f.conn_close,
    };

    Ok(RequestHead {
        head: Bytes::new(),
        method: line.method,
        target: line.target,
        path,
        query,
        host,
        version,
        fields: std::mem::take(f.fields),
        framing,
        keep_alive,
        expects_continue: f.expect_continue && version == Version::Http11,
    })
}

/// `method SP request-target SP HTTP-version`, single spaces (RFC 9112 §3).
fn parse_request_line(line: &[u8]) -> Result<RequestLine, HttpError> {
    let sp1 = memchr::memchr(b' ', line).ok_or(E_REQUEST_LINE)?;
    let method = &line[..sp1];
    if !is_token(method) {
        return Err(E_METHOD);
    }
    let after = &line[sp1 + 1..];
    // No second space: an HTTP/0.9 request ("GET /"), which we do not speak.
    let sp2 = memchr::memchr(b' ', after).ok_or(E_REQUEST_LINE)?;
    let target = &after[..sp2];
    let version = parse_version(&after[sp2 + 1..])?;
    if target.is_empty() || !target.iter().all(|&b| is_target_byte(b)) {
        return Err(E_TARGET);
    }
    let method = Span::new(0, sp1).ok_or(E_INTERNAL)?;
    let t_start = sp1 + 1;
    let target = Span::new(t_start, t_start + sp2).ok_or(E_INTERNAL)?;
    Ok(RequestLine {
        method,
        target,
        version,
    })
}

/// Only HTTP/1.0 and HTTP/1.1 are accepted. A well-formed `HTTP/x.y` with a
/// major version other than 1 gets 505 (RFC 9110 §15.6.6: the major version is
/// what we do not support). Anything else, including `HTTP/1.2` (which RFC 9110
/// §6.2 would let us treat as 1.1; we prefer strictness), gets 400.
fn parse_version(v: &[u8]) -> Result<Version, HttpError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() && *major != b'1' =>
        {
            Err(E_VERSION_UNSUPPORTED)
        }
        _ => Err(E_VERSION),
    }
}

type TargetParts = (Option<Span>, Option<Span>, Option<Span>);

/// Check the request-target form against the method (RFC 9112 §3.2) and split
/// it into path, query and (for absolute-form) host.
fn classify_target(head: &[u8], line: &RequestLine) -> Result<TargetParts, HttpError> {
    let method = line.method.get(head);
    let span = line.target;
    let target = span.get(head);
    let is_connect = method == b"CONNECT";

    if target == b"*" {
        if method != b"OPTIONS" {
            return Err(E_TARGET_FORM);
        }
        return Ok((Some(span), None, None));
    }
    if target.first() == Some(&b'/') {
        if is_connect {
            return Err(E_TARGET_FORM);
        }
        let (path, query) = split_query(span, target, 0)?;
        return Ok((Some(path), query, None));
    }
    let scheme_len = if starts_with_ignore_case(target, b"http://") {
        Some(7)
    } else if starts_with_ignore_case(target, b"https://") {
        Some(8)
    } else {
        None
    };
    if let Some(scheme_len) = scheme_len {
        if is_connect {
            return Err(E_TARGET_FORM);
        }
        let rest = &target[scheme_len..];
        let auth_len = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        let host_len = authority_host_len(&rest[..auth_len]).ok_or(E_TARGET)?;
        let host = span
            .sub(scheme_len, scheme_len + host_len)
            .ok_or(E_INTERNAL)?;
        let path_start = scheme_len + auth_len;
        let (path, query) = split_query(span, target, path_start)?;
        // An empty path ("http://h" or "http://h?q") means "/".
        let path = if path.start == path.end {
            None
        } else {
            Some(path)
        };
        return Ok((path, query, Some(host)));
    }
    if is_connect {
        // authority-form: host and a port, nothing else.
        match authority_host_len(target) {
            Some(n) if n + 1 < target.len() => return Ok((Some(span), None, None)),
            _ => return Err(E_TARGET),
        }
    }
    Err(E_TARGET)
}

fn split_query(span: Span, target: &[u8], from: usize) -> Result<(Span, Option<Span>), HttpError> {
    let tail = target.get(from..).ok_or(E_INTERNAL)?;
    match find_byte(b'?', tail) {
        Some(q) => Ok((
            span.sub(from, from + q).ok_or(E_INTERNAL)?,
            Some(span.sub(from + q + 1, target.len()).ok_or(E_INTERNAL)?),
        )),
        None => Ok((span.sub(from, target.len()).ok_or(E_INTERNAL)?, None)),
    }
}

/// The first `byte` in `hay`. A usual head's path and Host are a few
/// bytes, where a plain loop ends before `memchr` has set up its search;
/// `memchr` for the long ones.
fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() < 32 {
        hay.iter().position(|&b| b == byte)
    } else {
        memchr::memchr(byte, hay)
    }
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_unreserved_or_sub_delim(b: u8) -> bool {
    UNRESERVED_OR_SUB_DELIM[usize::from(b)]
}

/// RFC 3986 unreserved and sub-delims, as a table: every Host header's
/// bytes go through it.
const UNRESERVED_OR_SUB_DELIM: [bool; 256] = alnum_and(b"-._~!$&'()*+,;=");

/// Validate `host [ ":" port ]` (RFC 3986 authority without userinfo, which
/// RFC 9110 §4.2.4 forbids in http URIs) and return the length of the host
/// part, which must not be empty (an empty Host value is handled by the
/// caller: RFC 9110 §7.2 allows it, but not an empty host with a port).
fn authority_host_len(a: &[u8]) -> Option<usize> {
    let (host_len, port) = if a.first() == Some(&b'[') {
        let close = memchr::memchr(b']', a)?;
        let inner = &a[1..close];
        // IPv6 / IPvFuture / zone ids; a plausibility check, not a full grammar.
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b == b':' || b == b'%' || is_unreserved_or_sub_delim(b))
        {
            return None;
        }
        let after = &a[close + 1..];
        match after {
            [] => (close + 1, None),
            [b':', port @ ..] => (close + 1, Some(port)),
            _ => return None,
        }
    } else {
        // The usual host (no `%`) in one pass: its bytes up to the first
        // that cannot be in one, which must be the port's colon (not in
        // the table), the end, or else is looked at again below.
        let plain = a
            .iter()
            .position(|&b| !is_unreserved_or_sub_delim(b))
            .unwrap_or(a.len());
        let colon = match a.get(plain) {
            None => None,
            Some(b':') => Some(plain),
            Some(_) => find_byte(b':', a),
        };
        let host = &a[..colon.unwrap_or(a.len())];
        if host.len() > plain && !valid_reg_name(host) {
            return None;
        }
        (host.len(), colon.map(|c| &a[c + 1..]))
    };
    if host_len == 0 {
        return None;
    }
    if let Some(port) = port {
        // port = *DIGIT; an empty port is allowed by the grammar.
        if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if !port.is_empty() && parse_content_length(port)? > 65535 {
            return None;
        }
    }
    Some(host_len)
}

/// reg-name = *( unreserved / pct-encoded / sub-delims ); IPv4 is a subset.
fn valid_reg_name(h: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = h.get(i) {
        if b == b'%' {
            match h.get(i + 1..i + 3) {
                Some([x, y]) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if is_unreserved_or_sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Only a single, final `chunked` is accepted (RFC 9112 §6.1, §7). Field lines
/// are combined into one list first, as RFC 9110 §5.3 says they are equivalent.
fn check_transfer_encoding<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<(), HttpError> {
    let mut chunked = 0usize;
    let mut last_is_chunked = false;
    let mut other = false;
    for v in values {
        for elem in v.split(|&b| b == b',') {
            let elem = trim_ows(elem);
            if elem.is_empty() {
                // Also an entirely empty field value.
                return Err(E_TE_INVALID);
            }
            let (name, params) = match memchr::memchr(b';', elem) {
                Some(i) => (trim_ows(&elem[..i]), Some(&elem[i..])),
                None => (elem, None),
            };
            if !is_token(name) {
                return Err(E_TE_INVALID);
            }
            if name.eq_ignore_ascii_case(b"chunked") {
                // chunked takes no parameters.
                if params.is_some() {
                    return Err(E_TE_INVALID);
                }
                chunked += 1;
                last_is_chunked = true;
            } else {
                other = true;
                last_is_chunked = false;
            }
        }
    }
    if chunked > 1 {
        return Err(E_TE_INVALID);
    }
    if chunked == 1 && !last_is_chunked {
        return Err(E_TE_CHUNKED);
    }
    if other {
        return Err(E_TE_UNKNOWN);
    }
    if chunked == 0 {
        return Err(E_TE_INVALID);
    }
    Ok(())
}
