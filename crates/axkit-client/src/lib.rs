//! An HTTP/1.1 client for AxKit's workers, for Rust plugins and (as the
//! `http` global) Lua scripts: keep-alive connections pooled per (scheme,
//! host, port), HTTPS through rustls, connect/read/total timeouts, a limit
//! on the response body, and streaming both ways (a request body produced
//! chunk by chunk, a response body read chunk by chunk). Redirects are not
//! followed unless a request asks for it. `docs/http-client.md` documents
//! it, with an example per call.
//!
//! A [`Client`] belongs to one thread (a worker): its pool is `Rc`, no
//! lock anywhere, and nothing it does blocks the event loop (names are
//! resolved on tokio's blocking pool, as are the system's root
//! certificates, once, at a client's first HTTPS request).
//!
//! Trust: the system's root certificates (rustls-native-certs: on Debian
//! `/etc/ssl/certs/ca-certificates.crt`, from the `ca-certificates`
//! package; `SSL_CERT_FILE` and `SSL_CERT_DIR` override) plus any given to
//! the client ([`ClientBuilder::add_root_pem`]) or, for the worker's
//! client ([`client`]), by the directive below. A client built with
//! [`ClientBuilder::verify`]`(false)` takes any certificate (`insecure`).
//!
//! Directive (global; its source is always in use, no `Plugin` line):
//! `HttpClientCAFile FILE`, repeatable: PEM certificates the worker's
//! client trusts besides the system's (a private CA). The files are read
//! when the config loads, through the config's `FileReader` (so a worker
//! uses what its master read; they change on SIGHUP), and a file without a
//! certificate is a config error.

mod conn;
mod insecure;
mod url;
mod wire;

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axkit::config::{Config, ConfigError, Directive, FileReader, List, Scopes};
use axkit::plugin::{out_of_line, HeaderValue, InUse};
use axkit::{Plugin, PluginInit, PluginSource};
use axkit_http::{write_chunk_header, LAST_CHUNK};
use bytes::{Buf, Bytes, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use conn::{Conn, Pool};
use wire::{BodyFraming, Fields, Framing, HeaderLines};

pub use url::Origin;
use url::Url;
pub use wire::LiteralName;

/// The default limit on a response body: 16 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 16 << 20;
/// The default limit on connecting (the TLS handshake included).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default limit on each wait for the server once connected.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `HttpClientCAFile FILE`: certificates the worker's client trusts too.
pub static CA_FILE: List<PathBuf> = List::new("HttpClientCAFile")
    .scopes(Scopes::GLOBAL)
    .doc("PEM certificates (a private CA) that the HTTP client of Lua's http and Rust's axkit_client::client() trusts besides the system's");

/// What went wrong with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be made as given (bad URL, method or header).
    InvalidRequest,
    /// No connection could be made (refused, unreachable, no such host).
    Connect,
    /// The TLS handshake failed (an untrusted or mismatched certificate).
    Tls,
    /// A timeout ran out.
    Timeout,
    /// The response body is larger than the request's limit.
    TooLarge,
    /// The server's response is not valid HTTP/1.1.
    Protocol,
    /// The connection failed or closed early.
    Io,
    /// The request body's producer failed.
    Body,
}

/// A failed request: its kind and a message saying what and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Prefix the message with where it happened.
    pub(crate) fn context(mut self, what: &str) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The timeouts of one request, and when its total time runs out.
#[derive(Clone, Copy)]
pub(crate) struct Deadline {
    connect: Duration,
    read: Duration,
    /// Each write of the request.
    send: Duration,
    end: Option<Instant>,
}

impl Deadline {
    pub(crate) fn connect_limit(&self) -> Duration {
        self.connect
    }

    /// Run `fut` for at most `limit`, and not past the total deadline,
    /// timed by `timer` (its connection's: one timer reused by every wait
    /// of the connection).
    pub(crate) async fn within<T>(
        &self,
        mut timer: Pin<&mut tokio::time::Sleep>,
        limit: Duration,
        kind: ErrorKind,
        what: &str,
        fut: impl Future<Output = std::io::Result<T>>,
    ) -> Result<T, Error> {
        // Most writes, and reads whose bytes are there, are done at the
        // first poll: the timer is armed only for a wait that is pending.
        // Moving a timer that is armed to a later deadline only updates
        // it, where a new timer per wait was registered and cancelled on
        // the runtime's timer wheel each time.
        let mut fut = std::pin::pin!(fut);
        // Whether the timer is armed, and then for the total deadline.
        let mut armed: Option<bool> = None;
        let done = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            if armed.is_none() {
                armed = Some(self.arm(timer.as_mut(), limit));
            }
            timer.as_mut().poll(cx).map(|()| None)
        })
        .await;
        match done {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(failed(kind, what, e)),
            None => Err(timed_out(what, limit, armed == Some(true))),
        }
    }

    /// Arm `timer` for a wait of at most `limit` that is pending: whether
    /// the total deadline is the nearer one. Not generic, so that every
    /// kind of wait (connect, write, read) shares this code rather than
    /// each having a copy inlined.
    #[inline(never)]
    fn arm(&self, timer: Pin<&mut tokio::time::Sleep>, limit: Duration) -> bool {
        let mut at = Instant::now() + limit;
        let mut total = false;
        if let Some(end) = self.end.filter(|end| *end <= at) {
            (at, total) = (end, true);
        }
        timer.reset(at.into());
        total
    }
}

/// A wait that failed: out of line, as every error path of the client's
/// waits, so that the code the usual request runs stays compact.
#[cold]
#[inline(never)]
fn failed(kind: ErrorKind, what: &str, e: std::io::Error) -> Error {
    Error::new(kind, format!("{what}: {e}"))
}

/// A wait that timed out: its own limit, or the request's total one.
#[cold]
#[inline(never)]
fn timed_out(what: &str, limit: Duration, total: bool) -> Error {
    match total {
        true => Error::new(
            ErrorKind::Timeout,
            format!("{what}: the request's timeout ran out"),
        ),
        false => Error::new(
            ErrorKind::Timeout,
            format!("{what}: timed out after {limit:?}"),
        ),
    }
}

/// A request body.
pub struct Body(BodyKind);

type Producer = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = std::io::Result<Option<Bytes>>>>>>;

enum BodyKind {
    Empty,
    Bytes(Bytes),
    /// Sent chunked, as it is produced.
    Chunks(Producer),
    /// Sent with this `Content-Length`, as it is produced.
    Sized(u64, Producer),
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body(BodyKind::Empty)
    }

    /// A body produced piece by piece (sent chunked as each piece comes):
    /// `next` is called for each piece until it gives `None`. The request
    /// cannot be retried or redirected with it (it is not kept).
    pub fn from_fn<F, Fut>(mut next: F) -> Body
    where
        F: FnMut() -> Fut + 'static,
        Fut: Future<Output = std::io::Result<Option<Bytes>>> + 'static,
    {
        Body(BodyKind::Chunks(Box::new(move || Box::pin(next()))))
    }

    /// A body of exactly `len` bytes produced piece by piece, sent with
    /// `Content-Length: len` as each piece comes (a proxy forwarding a
    /// body whose length it was told). A producer that gives more or fewer
    /// bytes fails the request ([`ErrorKind::Body`]) and its connection is
    /// closed: the server never reads a body framed one way and sent
    /// another. Not kept, like [`Body::from_fn`]'s.
    pub fn sized<F, Fut>(len: u64, mut next: F) -> Body
    where
        F: FnMut() -> Fut + 'static,
        Fut: Future<Output = std::io::Result<Option<Bytes>>> + 'static,
    {
        Body(BodyKind::Sized(len, Box::new(move || Box::pin(next()))))
    }

    fn replayable(&self) -> bool {
        !matches!(self.0, BodyKind::Chunks(_) | BodyKind::Sized(..))
    }
}

impl<T: Into<Bytes>> From<T> for Body {
    fn from(bytes: T) -> Body {
        Body(BodyKind::Bytes(bytes.into()))
    }
}

/// A request: method, URL, headers, body and limits. Built with
/// [`Request::new`] (or [`Request::get`], or [`Request::to`] for an origin
/// parsed once) and the methods below, sent with [`Client::send`].
pub struct Request {
    method: Cow<'static, str>,
    url: Url,
    headers: HeaderLines,
    body: Body,
    connect_timeout: Duration,
    read_timeout: Duration,
    send_timeout: Option<Duration>,
    timeout: Option<Duration>,
    max_size: Option<u64>,
    redirects: u32,
    user_agent: bool,
    upgrade: Option<String>,
}

impl Request {
    /// A request with no body, the default timeouts and limit, and no
    /// redirects followed. Fails on a URL that is not `http://` or
    /// `https://` with a host.
    pub fn new(method: &str, url: &str) -> Result<Request, Error> {
        Ok(Request::at(method, Url::parse(url)?))
    }

    /// A request for `target` (`/path?query`) at `origin`, as
    /// [`Request::new`] makes one: for a caller that sends many requests
    /// to one server and parses its URL once. Fails on a target that does
    /// not start with `/` or has spaces, control characters or a `#`.
    /// A `String` target is kept, not copied.
    pub fn to(method: &str, origin: &Origin, target: impl Into<String>) -> Result<Request, Error> {
        Ok(Request::at(method, Url::at(origin, target.into())?))
    }

    fn at(method: &str, url: Url) -> Request {
        // The usual methods need no copy.
        let method = match method {
            "GET" => Cow::Borrowed("GET"),
            "HEAD" => Cow::Borrowed("HEAD"),
            "POST" => Cow::Borrowed("POST"),
            "PUT" => Cow::Borrowed("PUT"),
            "DELETE" => Cow::Borrowed("DELETE"),
            other => Cow::Owned(other.to_string()),
        };
        Request {
            method,
            url,
            headers: HeaderLines::default(),
            body: Body::empty(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            send_timeout: None,
            timeout: None,
            max_size: Some(DEFAULT_MAX_SIZE),
            redirects: 0,
            user_agent: true,
            upgrade: None,
        }
    }

    /// `GET url`.
    pub fn get(url: &str) -> Result<Request, Error> {
        Request::new("GET", url)
    }

    /// Add a header. `Host` and `User-Agent` replace the client's own; the
    /// framing headers (`Content-Length`, `Transfer-Encoding`,
    /// `Connection`…) are the client's, and setting them fails the request,
    /// as does a name or value that may not be sent (a line break).
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Request {
        self.add_header(name.as_ref(), value.as_ref());
        self
    }

    /// [`header`](Self::header) in place, for a caller adding many (a
    /// proxy passing a request's on): a `Request` is large, and each call
    /// of a builder method moves it.
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.headers.add(name, value.as_bytes());
    }

    /// [`add_header`](Self::add_header) for a name that is the caller's own
    /// literal (a proxy's `Via`), checked when it was made (in a `const`,
    /// at compile time) rather than per request; the value is checked as
    /// ever.
    pub fn add_header_literal(&mut self, name: LiteralName, value: &str) {
        self.headers.add_literal(name, value.as_bytes());
    }

    /// [`add_header`](Self::add_header) with a value as bytes (a field
    /// passed on as received, which need not be UTF-8); checked the same.
    pub fn add_header_bytes(&mut self, name: &str, value: &[u8]) {
        self.headers.add(name, value);
    }

    /// The body: bytes (sent with a `Content-Length`) or
    /// [`Body::from_fn`] (sent chunked).
    pub fn body(mut self, body: impl Into<Body>) -> Request {
        self.body = body.into();
        self
    }

    /// How long connecting may take, TLS handshake included (default 10 s).
    pub fn connect_timeout(mut self, limit: Duration) -> Request {
        self.connect_timeout = limit;
        self
    }

    /// How long each wait for the server may take once connected: for the
    /// request to be written, the response head, each piece of the body
    /// (default 30 s).
    pub fn read_timeout(mut self, limit: Duration) -> Request {
        self.read_timeout = limit;
        self
    }

    /// How long each write of the request (head and body) may wait for
    /// the server to take it (default: the read timeout).
    pub fn send_timeout(mut self, limit: Duration) -> Request {
        self.send_timeout = Some(limit);
        self
    }

    /// Whether to write `User-Agent: axkit/VERSION` when the request has
    /// no `User-Agent` of its own (default yes; a proxy passes on only
    /// what its client sent).
    pub fn default_user_agent(mut self, on: bool) -> Request {
        self.user_agent = on;
        self
    }

    /// Ask the server to switch to `protocol` (`Connection: Upgrade`,
    /// `Upgrade: protocol`; a WebSocket handshake's other headers are the
    /// caller's). A `101 Switching Protocols` answer is then a response
    /// whose [`Response::upgraded`] is the connection; any other answer is
    /// an ordinary response.
    pub fn upgrade(mut self, protocol: impl Into<String>) -> Request {
        self.upgrade = Some(protocol.into());
        self
    }

    /// How long the whole request may take, the response body read to its
    /// end included (default: no limit beyond the others).
    pub fn timeout(mut self, limit: Duration) -> Request {
        self.timeout = Some(limit);
        self
    }

    /// The most bytes of response body taken (default 16 MiB; `None`: no
    /// limit); a larger body fails with [`ErrorKind::TooLarge`] as soon as
    /// the limit is passed, streamed or not.
    pub fn max_size(mut self, limit: Option<u64>) -> Request {
        self.max_size = limit;
        self
    }

    /// Follow up to `count` redirects (301, 302, 303, 307, 308 with a
    /// `Location`; default 0: the redirect is the response). A 303, or a
    /// 301/302 to a POST, becomes a GET without body; 307 and 308 repeat
    /// the request as it was, unless its body was streamed (then the
    /// redirect is the response). `Authorization` and `Cookie` headers are
    /// not sent to another origin.
    pub fn redirects(mut self, count: u32) -> Request {
        self.redirects = count;
        self
    }
}

/// A response: status and headers, and the body, read with
/// [`chunk`](Self::chunk) piece by piece or whole with
/// [`bytes`](Self::bytes). The connection goes back to the pool once the
/// body has been read to its end; a response dropped before that closes
/// it.
pub struct Response {
    pub status: u16,
    headers: Fields,
    body: BodyReader,
}

impl Response {
    /// The first header of that name (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header, in the order received, names as sent (values not
    /// UTF-8 are converted lossily).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.iter()
    }

    /// `value`, one that [`headers`](Self::headers) gave, as a response
    /// header's value to pass on: a slice of the head (a reference count
    /// rather than a copy; `HeaderValue::parsed` checks its bytes once).
    /// Any other string is copied, and checked as it is set.
    pub fn header_value(&self, value: &str) -> HeaderValue {
        match self.headers.shared(value) {
            Some(slice) => HeaderValue::parsed(slice),
            None => HeaderValue::Bytes(value.into()),
        }
    }

    /// Whether the head has a `Connection` field (whose options name
    /// more fields that are the connection's own).
    pub fn has_connection_field(&self) -> bool {
        self.headers.has(wire::CONNECTION)
    }

    /// Whether the head has a `Transfer-Encoding` field.
    pub fn has_transfer_encoding(&self) -> bool {
        self.headers.has(wire::TRANSFER_ENCODING)
    }

    /// Whether the whole body has been read off the connection (what is
    /// left, if anything, can be had from [`chunk`](Self::chunk) without
    /// waiting).
    pub fn body_done(&self) -> bool {
        self.body.done()
    }

    /// After `101 Switching Protocols` to a request that asked to
    /// [`upgrade`](Request::upgrade): the connection, to read and write as
    /// the new protocol says (bytes the server sent right after its head
    /// come first). `None` for any other response.
    pub fn upgraded(mut self) -> Option<Upgraded> {
        if self.status != 101 {
            return None;
        }
        let conn = self.body.conn.take()?;
        Some(Upgraded {
            stream: conn.stream,
            buf: conn.buf,
        })
    }

    /// The next piece of the body, as it arrives; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        self.body.chunk().await
    }

    /// [`chunk`](Self::chunk) without waiting: `None` when the next piece
    /// has not been read off the connection yet (never once
    /// [`body_done`](Self::body_done) says the body has been read).
    pub fn try_chunk(&mut self) -> Option<Result<Option<Bytes>, Error>> {
        self.body.try_chunk()
    }

    /// The whole body (what is left of it).
    pub async fn bytes(mut self) -> Result<Bytes, Error> {
        let mut all = BytesMut::new();
        while let Some(chunk) = self.body.chunk().await? {
            if all.is_empty() {
                all = BytesMut::from(chunk);
            } else {
                all.extend_from_slice(&chunk);
            }
        }
        Ok(all.freeze())
    }
}

/// A connection handed over after `101 Switching Protocols`
/// ([`Response::upgraded`]): a byte stream both ways.
pub struct Upgraded {
    stream: conn::Stream,
    /// Read past the response head.
    buf: BytesMut,
}

impl tokio::io::AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            let n = out.remaining().min(this.buf.len());
            out.put_slice(&this.buf.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, out)
    }
}

impl tokio::io::AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Reads a response body off its connection.
struct BodyReader {
    conn: Option<Box<Conn>>,
    framing: BodyFraming,
    /// The connection may take another request once the body is read.
    reusable: bool,
    left: Option<u64>,
    deadline: Deadline,
    client: Rc<Inner>,
    /// How much the next read of the connection asks for: doubled, up to
    /// [`BODY_READ_MAX`], while reads fill all of it (a large body).
    read_size: usize,
}

/// What a read of a response head asks for, and a body's first read.
const HEAD_READ: usize = 16 * 1024;
/// The most a read of a body asks for: fewer, larger reads and wakeups
/// for a large body, one buffer of this size per response at most.
const BODY_READ_MAX: usize = 256 * 1024;

impl BodyReader {
    /// Whether the body has been read off the connection.
    fn done(&self) -> bool {
        let Some(conn) = &self.conn else {
            return true;
        };
        match &self.framing {
            BodyFraming::Empty => true,
            BodyFraming::Length(n) => conn.buf.len() as u64 >= *n,
            BodyFraming::Chunked(decoder) => decoder.is_done(),
            BodyFraming::Close => false,
        }
    }

    async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        let result = self.next().await;
        self.account(result)
    }

    /// [`chunk`](Self::chunk) when it needs no read: `None` when it does.
    fn try_chunk(&mut self) -> Option<Result<Option<Bytes>, Error>> {
        let result = self.buffered().transpose()?;
        Some(self.account(result))
    }

    /// Count a piece against the limit; at the end, give the connection
    /// back; on an error, drop it.
    fn account(&mut self, result: Result<Option<Bytes>, Error>) -> Result<Option<Bytes>, Error> {
        match &result {
            Ok(Some(chunk)) => {
                if let Some(left) = &mut self.left {
                    match left.checked_sub(chunk.len() as u64) {
                        Some(l) => *left = l,
                        None => {
                            self.conn = None;
                            return Err(Error::new(
                                ErrorKind::TooLarge,
                                "the response body is larger than the request's limit",
                            ));
                        }
                    }
                }
            }
            Ok(None) => self.finish(),
            Err(_) => self.conn = None,
        }
        result
    }

    /// The body has been read: the connection goes back to the pool if it
    /// may take another request and nothing came after the body.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buf.is_empty() {
                self.client.pool.borrow_mut().put(conn);
            }
        }
    }

    async fn next(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            if let Some(piece) = self.buffered()? {
                return Ok(piece);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Ok(None);
            };
            if fill_body(conn, &self.deadline, &mut self.read_size).await? == 0 {
                return match self.framing {
                    // The server's close ends such a body.
                    BodyFraming::Close => Ok(None),
                    _ => Err(early_end()),
                };
            }
        }
    }

    /// The next piece of the body from what has been read already
    /// (`Some(None)` at its end), or `None` when that takes another read.
    fn buffered(&mut self) -> Result<Option<Option<Bytes>>, Error> {
        match self.conn.as_mut() {
            Some(conn) => next_piece(&mut self.framing, &mut conn.buf),
            None => Ok(Some(None)),
        }
    }
}

/// The next piece of a body framed so from the bytes in `buf` (taken off
/// it), as [`BodyReader::buffered`] answers. Apart from the reader so that
/// the fuzz targets feed it bytes without a connection.
fn next_piece(
    framing: &mut BodyFraming,
    buf: &mut BytesMut,
) -> Result<Option<Option<Bytes>>, Error> {
    loop {
        match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => return Ok(Some(None)),
            BodyFraming::Chunked(decoder) if decoder.is_done() => return Ok(Some(None)),
            _ if buf.is_empty() => return Ok(None),
            BodyFraming::Length(n) => {
                let take = buf.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                *n -= take as u64;
                return Ok(Some(Some(buf.split_to(take).freeze())));
            }
            BodyFraming::Chunked(decoder) => {
                let step = decoder.decode(buf).map_err(|e| {
                    Error::new(
                        ErrorKind::Protocol,
                        format!("malformed chunked body: {}", e.reason),
                    )
                })?;
                let (len, consumed) = (step.data.len(), step.consumed);
                if len > 0 {
                    // The data is a slice of the buffer: hand it out
                    // without a copy.
                    let start = step.data.as_ptr() as usize - buf.as_ptr() as usize;
                    buf.advance(start);
                    let data = buf.split_to(len).freeze();
                    buf.advance(consumed - start - len);
                    return Ok(Some(Some(data)));
                }
                buf.advance(consumed);
                if consumed == 0 && !decoder.is_done() {
                    return Ok(None);
                }
            }
            BodyFraming::Close => return Ok(Some(Some(buf.split().freeze()))),
        }
    }
}

fn early_end() -> Error {
    Error::new(
        ErrorKind::Io,
        "the connection closed before the end of the response",
    )
}

/// Read more of a body into the connection's buffer, asking for `size`
/// bytes and doubling it for the next read when they all came.
async fn fill_body(conn: &mut Conn, deadline: &Deadline, size: &mut usize) -> Result<usize, Error> {
    let n = fill(conn, deadline, *size).await?;
    if n >= *size {
        *size = (*size * 2).min(BODY_READ_MAX);
    }
    Ok(n)
}

/// Read up to about `want` more bytes of the connection into its buffer:
/// how many came (0: the server closed it).
async fn fill(conn: &mut Conn, deadline: &Deadline, want: usize) -> Result<usize, Error> {
    conn.buf.reserve(want);
    let Conn {
        stream, buf, timer, ..
    } = conn;
    deadline
        .within(
            timer.as_mut(),
            deadline.read,
            ErrorKind::Io,
            "reading the response",
            stream.read_buf(buf),
        )
        .await
}

/// The certificates of a PEM text; an error for text without one.
fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// Builds a [`Client`] with its own pool and trust.
pub struct ClientBuilder {
    roots: Vec<CertificateDer<'static>>,
    system_roots: bool,
    verify: bool,
    max_idle: usize,
    idle_timeout: Duration,
}

impl ClientBuilder {
    /// Trust the certificates of this PEM text too (a private CA). Fails
    /// on text without a certificate.
    pub fn add_root_pem(mut self, pem: &[u8]) -> Result<ClientBuilder, String> {
        self.roots.extend(pem_certificates(pem)?);
        Ok(self)
    }

    /// Trust these certificates too ([`read_ca_files`]).
    pub fn add_roots(mut self, roots: Roots) -> ClientBuilder {
        self.roots.extend(roots.0);
        self
    }

    /// Whether to trust the system's root certificates (default yes).
    pub fn system_roots(mut self, on: bool) -> ClientBuilder {
        self.system_roots = on;
        self
    }

    /// Whether to check that a server's certificate is trusted and names
    /// its host (default yes). Off, any certificate is taken: the
    /// connection is encrypted but anyone on the path could answer.
    pub fn verify(mut self, on: bool) -> ClientBuilder {
        self.verify = on;
        self
    }

    /// Keep at most `count` idle connections per (scheme, host, port)
    /// (default 16; 0: no keep-alive), each for at most `timeout` (default
    /// 30 s).
    pub fn keep_alive(mut self, count: usize, timeout: Duration) -> ClientBuilder {
        self.max_idle = count;
        self.idle_timeout = timeout;
        self
    }

    pub fn build(self) -> Client {
        Client {
            inner: Rc::new(Inner {
                pool: RefCell::new(Pool::new(self.max_idle, self.idle_timeout)),
                roots: self.roots,
                system_roots: self.system_roots,
                verify: self.verify,
                tls: tokio::sync::OnceCell::new(),
            }),
        }
    }
}

/// An HTTP client with its own pool of keep-alive connections; cheap to
/// clone (the clones share the pool). One thread's: see [`client`] for the
/// worker's.
#[derive(Clone)]
pub struct Client {
    inner: Rc<Inner>,
}

struct Inner {
    pool: RefCell<Pool>,
    roots: Vec<CertificateDer<'static>>,
    system_roots: bool,
    verify: bool,
    /// Made at the first HTTPS request.
    tls: tokio::sync::OnceCell<Arc<rustls::ClientConfig>>,
}

impl Default for Client {
    fn default() -> Client {
        Client::builder().build()
    }
}

thread_local! {
    /// The worker's client, as the config's `HttpClientCAFile`s make it.
    static WORKER: RefCell<Option<Client>> = const { RefCell::new(None) };
}

/// The worker's client: the one Lua's `http` uses, trusting the system's
/// roots and the config's `HttpClientCAFile`s, its pool shared by every
/// plugin of the worker.
pub fn client() -> Client {
    WORKER.with(|w| w.borrow_mut().get_or_insert_with(Client::default).clone())
}

impl Client {
    /// A client of its own (its own pool and trust).
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            roots: Vec::new(),
            system_roots: true,
            verify: true,
            max_idle: 16,
            idle_timeout: Duration::from_secs(30),
        }
    }

    /// A client trusting what this one trusts (the worker's: the
    /// `HttpClientCAFile`s too) with a pool of its own: at most `count`
    /// idle connections per (scheme, host, port), each for at most
    /// `timeout` (a proxy's upstream pool, sized apart from the scripts').
    pub fn with_own_pool(&self, count: usize, timeout: Duration) -> Client {
        Client {
            inner: Rc::new(Inner {
                pool: RefCell::new(Pool::new(count, timeout)),
                roots: self.inner.roots.clone(),
                system_roots: self.inner.system_roots,
                verify: self.inner.verify,
                tls: tokio::sync::OnceCell::new(),
            }),
        }
    }

    /// A builder that starts from this client's trust (its roots, the
    /// system's or not, verification), to add to it: the proxy's client
    /// is the worker's plus its own `ProxyTrustedCA`s.
    pub fn derive(&self) -> ClientBuilder {
        ClientBuilder {
            roots: self.inner.roots.clone(),
            system_roots: self.inner.system_roots,
            verify: self.inner.verify,
            ..Client::builder()
        }
    }

    /// How many connections this client has opened (each pooled
    /// connection counts once however many requests it carried).
    pub fn connections_opened(&self) -> u64 {
        self.inner.pool.borrow().opened
    }

    /// Send `request`: the response once its head has arrived, its body
    /// still to read. Redirects are followed as the request says.
    pub async fn send(&self, mut request: Request) -> Result<Response, Error> {
        let deadline = Deadline {
            connect: request.connect_timeout,
            read: request.read_timeout,
            send: request.send_timeout.unwrap_or(request.read_timeout),
            end: request.timeout.map(|t| Instant::now() + t),
        };
        // Most requests follow no redirect: their response goes straight
        // back, without the moves of the loop below (a `Response` is a
        // few hundred bytes, each move a `memcpy`).
        if request.redirects == 0 {
            return self.send_once(&mut request, deadline).await;
        }
        let mut left = request.redirects;
        loop {
            let response = self.send_once(&mut request, deadline).await?;
            let status = response.status;
            let location = match status {
                301 | 302 | 303 | 307 | 308 if left > 0 => {
                    response.header("Location").map(str::to_string)
                }
                _ => None,
            };
            let Some(location) = location else {
                return Ok(response);
            };
            if matches!(status, 307 | 308) && !request.body.replayable() {
                return Ok(response);
            }
            let next = request.url.join(&location)?;
            // Read what is left of the redirect's body, so that its
            // connection can be used again (a large one is not worth it).
            let mut response = response;
            response.body.left = Some(64 * 1024);
            // Out of line: every request's future (and its code) would
            // be as large otherwise.
            let _ = out_of_line(response.bytes()).await;
            let to_get = (status == 303 && request.method != "HEAD")
                || (matches!(status, 301 | 302) && request.method == "POST");
            if to_get {
                request.method = Cow::Borrowed("GET");
                request.body = Body::empty();
            }
            if !request.url.same_origin(&next) {
                request
                    .headers
                    .remove(&["authorization", "cookie", "proxy-authorization"]);
            }
            request.url = next;
            left -= 1;
        }
    }

    /// One exchange, on a pooled connection if one is idle. A request that
    /// fails on a pooled connection before any byte of a response came
    /// (the server closed it meanwhile) is sent once more on a new one,
    /// when that is safe: an idempotent method and a body that was kept.
    async fn send_once(
        &self,
        request: &mut Request,
        deadline: Deadline,
    ) -> Result<Response, Error> {
        let pooled = self.inner.pool.borrow_mut().take(&request.url.origin);
        let retry_safe = request.body.replayable()
            && matches!(
                &*request.method,
                "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
            );
        if let Some(conn) = pooled {
            match self.exchange(conn, request, &deadline).await {
                Err((e, answered)) if !answered && retry_safe && e.kind() != ErrorKind::Timeout => {
                }
                result => return result.map_err(|(e, _)| e),
            }
        }
        // Connecting (a name to resolve, a TLS handshake) takes a large
        // future and much code: out of line, so that every request's
        // future and code are not as large when it finds a pooled
        // connection.
        let tls = match request.url.origin.tls() {
            true => Some(out_of_line(self.tls_config()).await?),
            false => None,
        };
        let conn = out_of_line(conn::connect(&request.url.origin, tls, &deadline)).await?;
        self.inner.pool.borrow_mut().opened += 1;
        self.exchange(conn, request, &deadline)
            .await
            .map_err(|(e, _)| e)
    }

    /// Write `request` on `conn` and read the response head. On error, also
    /// whether any of a response had come.
    async fn exchange(
        &self,
        mut conn: Box<Conn>,
        request: &mut Request,
        deadline: &Deadline,
    ) -> Result<Response, (Error, bool)> {
        let fail = |e: Error| (e, false);
        let framing = match &request.body.0 {
            BodyKind::Empty if matches!(&*request.method, "POST" | "PUT" | "PATCH") => {
                Framing::Length(0)
            }
            BodyKind::Empty => Framing::None,
            BodyKind::Bytes(b) => Framing::Length(b.len() as u64),
            BodyKind::Chunks(_) => Framing::Chunked,
            BodyKind::Sized(len, _) => Framing::Length(*len),
        };
        let mut out = wire::request_head(
            std::mem::take(&mut conn.out),
            &request.method,
            &request.url,
            &request.headers,
            framing,
            request.user_agent,
            request.upgrade.as_deref(),
        )
        .map_err(fail)?;
        let writing = "writing the request";
        let write = |e: Error| fail(e.context(writing));
        match &mut request.body.0 {
            BodyKind::Empty => {}
            // One write for a small body; no copy of a large one.
            BodyKind::Bytes(b) if b.len() <= 16 * 1024 => out.extend_from_slice(b),
            // Out of line: most requests (a proxy's GETs) have no body to
            // stream, and wait with a future and run code that do not
            // hold the streaming's.
            body => out_of_line(send_body(&mut conn, &mut out, body, deadline)).await?,
        }
        if !out.is_empty() {
            send(&mut conn, &out, deadline).await.map_err(write)?;
        }
        // TLS holds bytes back until flushed; TCP has written them.
        if conn.stream.buffered() {
            deadline
                .within(
                    conn.timer.as_mut(),
                    deadline.send,
                    ErrorKind::Io,
                    writing,
                    conn.stream.flush(),
                )
                .await
                .map_err(fail)?;
        }
        conn.out = out;
        // The head, past any interim (1xx) responses: their bytes are
        // bounded as one head's are, or a server sending them without end
        // (each read within the read timeout) would hold the request, and
        // the thread parsing them, for as long as it liked.
        let mut interim = 0;
        let mut scan = wire::HeadScan::default();
        let head = loop {
            // A pooled connection's buffer is empty: nothing to parse yet.
            let parsed = match conn.buf.is_empty() {
                true => None,
                false => scan.parse(&mut conn.buf).map_err(|e| (e, true))?,
            };
            match parsed {
                Some(head) => {
                    if head.status == 101 && request.upgrade.is_some() {
                        return Ok(Response {
                            status: 101,
                            headers: head.headers,
                            body: BodyReader {
                                conn: Some(conn),
                                framing: BodyFraming::Empty,
                                reusable: false,
                                left: None,
                                deadline: *deadline,
                                client: self.inner.clone(),
                                read_size: HEAD_READ,
                            },
                        });
                    }
                    if head.status == 101 {
                        return Err((
                            Error::new(
                                ErrorKind::Protocol,
                                "101 Switching Protocols is not supported",
                            ),
                            true,
                        ));
                    }
                    if head.status >= 200 {
                        break head;
                    }
                    interim += head.size();
                    if interim > wire::MAX_HEAD {
                        let e =
                            format!("interim (1xx) responses over {} KiB", wire::MAX_HEAD >> 10);
                        return Err((Error::new(ErrorKind::Protocol, e), true));
                    }
                }
                None => {
                    let had = !conn.buf.is_empty();
                    let read = fill(&mut conn, deadline, HEAD_READ).await;
                    if !matches!(read, Ok(n) if n > 0) {
                        // What came is refused as it is if the parser
                        // refuses it (it has not always run on it), as it
                        // was when it ran after every read; else as cut
                        // short (a close, a timeout).
                        let ended = read.err().unwrap_or_else(early_end);
                        let refused = wire::parse_head(&mut conn.buf).err();
                        return Err((refused.unwrap_or(ended), had));
                    }
                }
            }
        };
        let (framing, reusable) =
            wire::body_framing(&head, request.method == "HEAD").map_err(|e| (e, true))?;
        Ok(Response {
            status: head.status,
            headers: head.headers,
            body: BodyReader {
                conn: Some(conn),
                framing,
                reusable,
                left: request.max_size,
                deadline: *deadline,
                client: self.inner.clone(),
                read_size: HEAD_READ,
            },
        })
    }

    /// The TLS configuration, made at the first HTTPS request: the
    /// system's roots are read on the blocking pool.
    async fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let inner = &self.inner;
        inner
            .tls
            .get_or_try_init(|| async {
                let mut roots = rustls::RootCertStore::empty();
                if inner.system_roots {
                    let native =
                        tokio::task::spawn_blocking(rustls_native_certs::load_native_certs)
                            .await
                            .map_err(|e| Error::new(ErrorKind::Tls, e.to_string()))?;
                    roots.add_parsable_certificates(native.certs);
                }
                for cert in &inner.roots {
                    roots.add(cert.clone()).map_err(|e| {
                        Error::new(ErrorKind::Tls, format!("a given root certificate: {e}"))
                    })?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::new(ErrorKind::Tls, e.to_string()))?;
                let mut config = match inner.verify {
                    true => builder.with_root_certificates(roots),
                    false => builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(insecure::AnyCertificate(
                            provider,
                        ))),
                }
                .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                Ok(Arc::new(config))
            })
            .await
            .cloned()
    }
}

/// Write the head in `out`, then a body that is large or produced as it
/// is sent ([`Client::exchange`]); what is left in `out` (a chunked
/// body's last chunk) goes with the exchange's last write.
async fn send_body(
    conn: &mut Conn,
    out: &mut Vec<u8>,
    body: &mut BodyKind,
    deadline: &Deadline,
) -> Result<(), (Error, bool)> {
    let fail = |e: Error| (e, false);
    let write = |e: Error| fail(e.context("writing the request"));
    send(conn, out, deadline).await.map_err(write)?;
    out.clear();
    match body {
        BodyKind::Empty => {}
        BodyKind::Bytes(b) => send(conn, b, deadline).await.map_err(write)?,
        BodyKind::Chunks(next) => {
            loop {
                let piece = next().await.map_err(|e| {
                    fail(Error::new(
                        ErrorKind::Body,
                        format!("the request body: {e}"),
                    ))
                })?;
                let Some(piece) = piece else { break };
                if piece.is_empty() {
                    continue;
                }
                out.clear();
                write_chunk_header(out, piece.len());
                send_all(conn, [out.as_slice(), &piece, b"\r\n"], deadline)
                    .await
                    .map_err(write)?;
            }
            out.clear();
            out.extend_from_slice(LAST_CHUNK);
        }
        BodyKind::Sized(len, next) => {
            let mut left = *len;
            let body_error = |message: &str| {
                fail(Error::new(
                    ErrorKind::Body,
                    format!("the request body: {message}"),
                ))
            };
            loop {
                let piece = next().await.map_err(|e| body_error(&e.to_string()))?;
                let Some(piece) = piece else { break };
                left = left
                    .checked_sub(piece.len() as u64)
                    .ok_or_else(|| body_error("longer than its Content-Length"))?;
                send(conn, &piece, deadline).await.map_err(write)?;
            }
            if left > 0 {
                return Err(body_error("shorter than its Content-Length"));
            }
        }
    }
    Ok(())
}

/// Write all of `parts`, in order, with as few writes as the connection
/// takes (one, usually), each within the send timeout.
async fn send_all(conn: &mut Conn, parts: [&[u8]; 3], deadline: &Deadline) -> Result<(), Error> {
    let mut skip = 0;
    loop {
        let mut slices = [std::io::IoSlice::new(&[]); 3];
        let mut count = 0;
        let mut at = skip;
        for part in parts {
            if at >= part.len() {
                at -= part.len();
                continue;
            }
            slices[count] = std::io::IoSlice::new(&part[at..]);
            count += 1;
            at = 0;
        }
        if count == 0 {
            return Ok(());
        }
        let slices = &slices[..count];
        let n = deadline
            .within(
                conn.timer.as_mut(),
                deadline.send,
                ErrorKind::Io,
                "write",
                conn.stream.write_vectored(slices),
            )
            .await?;
        if n == 0 {
            return Err(Error::new(ErrorKind::Io, "write: the connection closed"));
        }
        skip += n;
    }
}

/// Write all of `data` within the send timeout.
async fn send(conn: &mut Conn, data: &[u8], deadline: &Deadline) -> Result<(), Error> {
    deadline
        .within(
            conn.timer.as_mut(),
            deadline.send,
            ErrorKind::Io,
            "write",
            conn.stream.write_all(data),
        )
        .await
}

/// Certificates to trust, read from PEM files ([`read_ca_files`]).
#[derive(Clone, Debug, Default)]
pub struct Roots(Vec<CertificateDer<'static>>);

/// Read the PEM files a global `List<PathBuf>` directive names (one per
/// line, as `HttpClientCAFile` and the proxy's `ProxyTrustedCA` do)
/// through the config's `FileReader`: their certificates, or an error per
/// line whose file is missing or holds none (reported for `source`).
pub fn read_ca_files(
    config: &Config,
    files: &mut FileReader<'_>,
    key: &'static List<PathBuf>,
    source: &str,
) -> Result<Roots, Vec<ConfigError>> {
    let mut roots = Vec::new();
    let mut errors = Vec::new();
    // Each occurrence is one file: the settings say where each is written.
    let settings = config.global.settings(key.name());
    for (path, setting) in config.global.list(key).iter().zip(settings) {
        let certs = match files.plugin_file(path) {
            Ok(Some(file)) => pem_certificates(&file.bytes),
            Ok(None) => Err("no such file".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match certs {
            Ok(certs) => roots.extend(certs),
            Err(e) => errors.push(ConfigError {
                file: setting.file.to_string(),
                line: setting.line,
                directive: Some(key.name().to_string()),
                plugin: Some(source.to_string()),
                message: format!("{}: {e}", path.display()),
            }),
        }
    }
    match errors.is_empty() {
        true => Ok(Roots(roots)),
        false => Err(errors),
    }
}

/// The source of the client's directive: it reads the `HttpClientCAFile`s
/// when a config loads and makes the worker's client trust them.
pub struct ClientSource;

impl PluginSource for ClientSource {
    fn name(&self) -> &str {
        "http-client"
    }

    fn in_use(&self) -> InUse {
        InUse::Always
    }

    fn directives(&self) -> Vec<Directive> {
        vec![CA_FILE.declare()]
    }

    fn load_files(
        &self,
        config: &Config,
        files: &mut FileReader<'_>,
    ) -> Result<(), Vec<ConfigError>> {
        let builder =
            Client::builder().add_roots(read_ca_files(config, files, &CA_FILE, self.name())?);
        WORKER.with(|w| *w.borrow_mut() = Some(builder.build()));
        Ok(())
    }

    fn create(&self, _: &str, _: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        Ok(None)
    }
}

/// Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature):
/// the response head's parse and framing and the body's reading, on bytes
/// given rather than read off a connection, and URLs (a redirect's
/// `Location` comes from the server). Not part of the API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use bytes::{Bytes, BytesMut};

    use crate::wire::{self, BodyFraming};
    use crate::Error;

    /// The most bytes of trailer fields after a chunked body.
    pub const MAX_TRAILERS: usize = wire::MAX_TRAILERS;

    /// A parsed response head.
    pub struct Head(wire::Head);

    /// How a response body is delimited.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Framing {
        Empty,
        Length(u64),
        Chunked,
        Close,
    }

    /// A response body being read.
    pub struct Body(BodyFraming);

    /// A URL as a request takes it.
    pub struct Url(crate::url::Url);

    impl Url {
        /// An absolute `http://` or `https://` URL (`Request::new`).
        pub fn parse(text: &str) -> Result<Url, Error> {
            crate::url::Url::parse(text).map(Url)
        }

        pub fn origin(&self) -> &crate::Origin {
            &self.0.origin
        }

        /// The request-target: `/path?query`.
        pub fn target(&self) -> &str {
            &self.0.target
        }

        /// `location`, a `Location` field, resolved against it as a
        /// redirect is.
        pub fn join(&self, location: &str) -> Result<Url, Error> {
            self.0.join(location).map(Url)
        }
    }

    /// Parse a response head from the start of `buf` and split it off:
    /// `Ok(None)` if more bytes are needed.
    pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Error> {
        Ok(wire::parse_head(buf)?.map(Head))
    }

    /// A response head read in pieces, as the client reads one: the
    /// parser runs only when the bytes that came may have ended it.
    #[derive(Default)]
    pub struct HeadScan(wire::HeadScan);

    impl HeadScan {
        /// `parse_head` on `buf`, grown since the last call; `Ok(None)`
        /// without parsing when the bytes that came cannot end the head.
        pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Head>, Error> {
            Ok(self.0.parse(buf)?.map(Head))
        }
    }

    impl Head {
        pub fn status(&self) -> u16 {
            self.0.status
        }

        pub fn http11(&self) -> bool {
            self.0.http11
        }

        pub fn keeps_alive(&self) -> bool {
            self.0.keeps_alive()
        }

        /// Every field, in the order received.
        pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
            self.0.headers.iter()
        }

        /// A field value shared with the head (`Response::header_value`).
        pub fn shared(&self, value: &str) -> Option<bytestring::ByteString> {
            self.0.headers.shared(value)
        }

        /// The body's framing, for a response to a `HEAD` request or not,
        /// and whether the connection may be used again after it.
        pub fn body(&self, to_head: bool) -> Result<(Body, bool), Error> {
            let (framing, reusable) = wire::body_framing(&self.0, to_head)?;
            Ok((Body(framing), reusable))
        }
    }

    impl Body {
        pub fn framing(&self) -> Framing {
            match &self.0 {
                BodyFraming::Empty => Framing::Empty,
                BodyFraming::Length(n) => Framing::Length(*n),
                BodyFraming::Chunked(_) => Framing::Chunked,
                BodyFraming::Close => Framing::Close,
            }
        }

        /// The next piece of the body from `buf` (taken off it):
        /// `Some(None)` at its end, `None` when it takes more bytes.
        pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Option<Bytes>>, Error> {
            crate::next_piece(&mut self.0, buf)
        }
    }
}
