//! The connection state machine: wait for a request head, walk it through
//! the hooks, write the response, keep the connection alive or close it.
//! Also the I/O half of [`Context`]: reading the request body and writing
//! the response body.
//!
//! Written by hand rather than on hyper because an idle keep-alive
//! connection must hold almost nothing (hyper keeps an 8 KiB read buffer per
//! connection) and file bodies must go out with sendfile. While idle, a
//! connection owns only its socket: the read buffer is released and the
//! per-request state lives in a boxed future that exists only while a
//! request is in flight.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use axkit_http::{BodyFraming, ChunkedDecoder, HttpError, RequestHead, Version};
use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::plugin::{Body, BodyChunk, ConnInfo, Context, Hook, Level, Outcome, Request};
use crate::server::worker::{
    run_body_data, run_conn_hook, run_hook, run_write_body_data, LocationRt, WorkerRt,
};

/// How much unread request body we read and discard to keep a connection
/// alive, rather than closing it.
const MAX_DRAIN: u64 = 256 * 1024;
/// How many internal redirects one request may chain.
const MAX_REDIRECTS: u32 = 10;
/// Read buffer size for a request head (grows up to MaxHeaderSize).
const READ_BUFFER: usize = 4096;
/// A fast client may not keep the worker to itself: yield to other
/// connections after this many bytes of one body.
const YIELD_EVERY: u64 = 1 << 20;

/// The request body still to be read.
#[derive(Debug)]
pub(crate) enum BodyState {
    None,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// A framing error or a timeout happened: the connection must close.
    Broken,
}

/// Why reading the request body failed: answer with `status` (400 framing,
/// 408 timeout, 413 too large) and close the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyError {
    pub status: u16,
    pub reason: &'static str,
}

impl From<BodyError> for Outcome {
    fn from(e: BodyError) -> Outcome {
        Outcome::Status(e.status)
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

/// The socket and the per-connection state that a request's [`Context`]
/// borrows for the duration of the request.
pub(crate) struct ConnIo {
    pub stream: TcpStream,
    /// Bytes read but not yet consumed (body, or pipelined requests).
    pub buf: BytesMut,
    pub body: BodyState,
    body_read: u64,
    max_body: u64,
    body_timeout: Duration,
    send_timeout: Duration,
    expect_continue: bool,
    pub head_sent: bool,
    pub body_bytes_sent: u64,
    /// The response body goes out chunk-encoded.
    chunked_out: bool,
    /// Content-Length announced in a streamed head: we must not exceed it.
    announced: Option<u64>,
    is_head: bool,
    version: Version,
    /// The connection closes after this response.
    pub close: bool,
    /// The head of a streamed response, encoded but held back so that it
    /// leaves in the same write as the first piece of body.
    pending_head: Vec<u8>,
    /// An internal redirect made this a GET without a body: reads see none
    /// (the original body, if any, is still drained or the connection
    /// closed).
    body_detached: bool,
    server_header: Rc<[u8]>,
}

impl ConnIo {
    fn new(stream: TcpStream) -> ConnIo {
        ConnIo {
            stream,
            buf: BytesMut::new(),
            body: BodyState::None,
            body_read: 0,
            max_body: 0,
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            expect_continue: false,
            head_sent: false,
            body_bytes_sent: 0,
            chunked_out: false,
            announced: None,
            is_head: false,
            version: Version::Http11,
            close: false,
            body_detached: false,
            pending_head: Vec::new(),
            server_header: Rc::from(&b""[..]),
        }
    }

    /// Wait until the socket can be written, at most SendTimeout.
    async fn writable(&self) -> io::Result<()> {
        match timeout(self.send_timeout, self.stream.writable()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "send timeout")),
        }
    }

    /// Write every byte of `bufs`, in order, with few syscalls.
    /// A streamed response's head waiting in `pending_head` goes out in
    /// the same write.
    async fn write_all(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        if !self.pending_head.is_empty() {
            let head = std::mem::take(&mut self.pending_head);
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(IoSlice::new(&head));
            all.extend(bufs.iter().map(|b| IoSlice::new(b)));
            return self.write_slices(&mut all).await;
        }
        self.write_slices(bufs).await
    }

    async fn write_slices(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut bufs = bufs;
        // Drop leading empties so that an all-empty write returns at once.
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let slices: &[IoSlice] = bufs;
            let n = self
                .write_op(|| self.stream.try_write_vectored(slices))
                .await?;
            IoSlice::advance_slices(&mut bufs, n);
        }
        Ok(())
    }

    /// Run one non-blocking write-side call until it moves bytes: wait for
    /// the socket (at most SendTimeout) when it would block, retry when a
    /// signal interrupts it, and treat 0 bytes written as an error (the
    /// caller asks for at least one).
    async fn write_op(&self, mut op: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
        loop {
            match op() {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    /// A raw syscall on the socket under tokio's readiness tracking: -1
    /// becomes the OS error (WouldBlock clears readiness for `writable`).
    fn try_raw(&self, call: impl FnOnce(i32) -> isize) -> io::Result<usize> {
        self.stream.try_io(Interest::WRITABLE, || {
            let n = call(self.stream.as_raw_fd());
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    }

    /// Write a response head that sendfile will follow, with MSG_MORE so
    /// the kernel holds it back and sends it in the same segment as the
    /// first file bytes (what nginx gets from TCP_CORK, without the two
    /// extra setsockopt calls per response).
    async fn write_head_more(&mut self, head: &[u8]) -> io::Result<()> {
        let mut sent = 0;
        while sent < head.len() {
            let rest = &head[sent..];
            sent += self
                .write_op(|| {
                    self.try_raw(|fd| {
                        // SAFETY: a valid descriptor and a live buffer of this length.
                        unsafe {
                            libc::send(
                                fd,
                                rest.as_ptr().cast(),
                                rest.len(),
                                libc::MSG_MORE | libc::MSG_NOSIGNAL,
                            )
                        }
                    })
                })
                .await?;
        }
        Ok(())
    }

    /// Send `len` bytes of `file` from `offset` with sendfile(2). A body
    /// that takes more than one call goes out corked (TCP_CORK, as nginx's
    /// `tcp_nopush`): without it each call ends in a short segment pushed
    /// on its own, and a single fast stream measured about 15 % slower
    /// than nginx's on loopback (docs/benchmarks.md). Two setsockopt calls
    /// are nothing next to a megabyte; smaller bodies leave in one call
    /// and need none.
    async fn sendfile(&mut self, file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
        let cork = len > YIELD_EVERY;
        if cork {
            self.set_cork(true);
        }
        let result = self.sendfile_calls(file, offset, len).await;
        if cork {
            // Uncorking sends the last partial segment at once.
            self.set_cork(false);
        }
        result
    }

    /// TCP_CORK on or off; a failure only costs segment sizes, so it is
    /// ignored.
    fn set_cork(&self, on: bool) {
        let value = libc::c_int::from(on);
        // SAFETY: a valid socket, and an int option of the size passed.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_CORK,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// The sendfile(2) calls of [`ConnIo::sendfile`], each capped so that
    /// one fast client cannot keep the worker from its other connections.
    async fn sendfile_calls(
        &mut self,
        file: &std::fs::File,
        mut offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let end = offset + len;
        let mut since_yield = 0;
        while offset < end {
            let want = (end - offset).min(YIELD_EVERY) as usize;
            let sent = self.write_op(|| {
                self.try_raw(|fd| {
                    let mut off = offset as libc::off_t;
                    // SAFETY: both descriptors are open for the duration of the call.
                    unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut off, want) }
                })
            });
            let n = match sent.await {
                // The file shrank under us: never send past its new end.
                Err(e) if e.kind() == io::ErrorKind::WriteZero => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while sending",
                    ))
                }
                other => other? as u64,
            };
            offset += n;
            since_yield += n;
            if since_yield >= YIELD_EVERY {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// Read more bytes into `buf`. Ok(0) is EOF.
    async fn read_more(&mut self, limit: Duration) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(8192);
        }
        // The clock is read only once a wait is needed.
        let mut deadline = None;
        loop {
            match self.read_now().await {
                Some(Ok(n)) => return Ok(n),
                None => {
                    let at = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + limit);
                    match tokio::time::timeout_at(at, self.stream.readable()).await {
                        Ok(r) => r?,
                        Err(_) => {
                            return Err(io::Error::new(io::ErrorKind::TimedOut, "read timeout"))
                        }
                    }
                }
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// One read into `buf` if the socket may have bytes, without waiting:
    /// None when it has none. This goes through tokio's `AsyncRead`, which
    /// (unlike `try_read`) forgets the socket's readiness when a read
    /// comes back short: the socket is drained, so the next wait goes
    /// straight to epoll instead of first paying a recv that can only say
    /// EAGAIN. nginx does the same.
    async fn read_now(&mut self) -> Option<io::Result<usize>> {
        use tokio::io::AsyncReadExt;
        let mut read = std::pin::pin!(self.stream.read_buf(&mut self.buf));
        std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// Whether tokio still counts the socket as readable (no syscall).
    async fn maybe_readable(&self) -> bool {
        std::future::poll_fn(|cx| Poll::Ready(self.stream.poll_read_ready(cx).is_ready())).await
    }

    /// The next piece of request body (from the buffer, else read with
    /// `timeout`), or `None` at its end. Any error leaves the body Broken,
    /// so the connection will close.
    async fn next_body(&mut self, timeout: Duration) -> Result<Option<Bytes>, BodyError> {
        loop {
            match &mut self.body {
                BodyState::None => return Ok(None),
                BodyState::Broken => {
                    return Err(BodyError {
                        status: 400,
                        reason: "request body unreadable",
                    })
                }
                BodyState::Length(remaining) => {
                    if !self.buf.is_empty() {
                        let take = (*remaining).min(self.buf.len() as u64) as usize;
                        *remaining -= take as u64;
                        if *remaining == 0 {
                            self.body = BodyState::None;
                        }
                        return Ok(Some(self.buf.split_to(take).freeze()));
                    }
                }
                BodyState::Chunked(decoder) => {
                    if !self.buf.is_empty() {
                        let step = match decoder.decode(&self.buf) {
                            Ok(step) => step,
                            Err(e) => {
                                self.body = BodyState::Broken;
                                return Err(BodyError {
                                    status: e.status,
                                    reason: e.reason,
                                });
                            }
                        };
                        let (consumed, done, len) = (step.consumed, step.done, step.data.len());
                        // An empty `data` need not point into `buf` (`&[]`).
                        let start = if len == 0 {
                            0
                        } else {
                            step.data.as_ptr() as usize - self.buf.as_ptr() as usize
                        };
                        if consumed > 0 || done {
                            let mut taken = self.buf.split_to(consumed);
                            if done {
                                self.body = BodyState::None;
                            }
                            if len > 0 {
                                return Ok(Some(taken.split_off(start).split_to(len).freeze()));
                            }
                            continue;
                        }
                    }
                }
            }
            match self.read_more(timeout).await {
                Ok(0) => {
                    self.body = BodyState::Broken;
                    return Err(BodyError {
                        status: 400,
                        reason: "client closed the connection mid-body",
                    });
                }
                Ok(_) => {}
                Err(e) => {
                    self.body = BodyState::Broken;
                    let status = if e.kind() == io::ErrorKind::TimedOut {
                        408
                    } else {
                        400
                    };
                    return Err(BodyError {
                        status,
                        reason: "error reading request body",
                    });
                }
            }
        }
    }

    /// Whether request body bytes remain unread.
    fn body_pending(&self) -> bool {
        !matches!(self.body, BodyState::None)
    }

    /// Build the response head.
    fn encode_head(
        &self,
        status: u16,
        headers: &crate::plugin::Headers,
        framing: OutFraming,
    ) -> Vec<u8> {
        // A file's head with validators is about 250 bytes: room for it
        // and a few more headers without growing.
        let mut out = Vec::with_capacity(512);
        axkit_http::write_status_line(&mut out, status);
        out.extend_from_slice(&self.server_header);
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(&axkit_http::http_date_now());
        out.extend_from_slice(b"\r\n");
        for (name, value) in headers.iter() {
            if is_framing_header(name) {
                continue;
            }
            if axkit_http::valid_header_name(name)
                && axkit_http::valid_header_value(value.as_bytes())
            {
                axkit_http::write_header(&mut out, name, value.as_bytes());
            }
        }
        match framing {
            OutFraming::Length(n) => {
                axkit_http::write_header(&mut out, "Content-Length", itoa_buf(n).as_bytes());
            }
            OutFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            OutFraming::None | OutFraming::UntilClose => {}
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if self.version == Version::Http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A tiny, allocation-light decimal formatter for Content-Length.
struct Digits([u8; 20], usize);
impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.0[self.1..]
    }
}
fn itoa_buf(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = 20;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits(buf, i)
}

/// Headers the server owns: a plugin's values for these are ignored.
fn is_framing_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("transfer-encoding")
        || name.eq_ignore_ascii_case("connection")
        || name.eq_ignore_ascii_case("date")
        || name.eq_ignore_ascii_case("server")
        || name.eq_ignore_ascii_case("keep-alive")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutFraming {
    /// No body allowed (HEAD excepted: HEAD announces the length it would send).
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 client, unknown length: the body ends when we close.
    UntilClose,
}

/// Statuses whose responses never carry a body.
fn bodiless(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

impl Context {
    /// The next piece of the request body, or `None` at its end. The first
    /// call answers `Expect: 100-continue`. On error the connection will be
    /// closed after the response; return the error as the hook's outcome.
    pub async fn read_body(&mut self) -> Result<Option<Bytes>, BodyError> {
        let io = &mut self.io;
        if io.body_detached {
            return Ok(None);
        }
        if io.expect_continue {
            io.expect_continue = false;
            if !io.head_sent {
                let mut bufs = [IoSlice::new(b"HTTP/1.1 100 Continue\r\n\r\n")];
                if io.write_all(&mut bufs).await.is_err() {
                    io.body = BodyState::Broken;
                    return Err(BodyError {
                        status: 400,
                        reason: "client went away",
                    });
                }
            }
        }
        let timeout = io.body_timeout;
        let chunk = io.next_body(timeout).await?;
        if let Some(data) = &chunk {
            io.body_read += data.len() as u64;
            // Only a chunked body can get here past its limit: a
            // Content-Length over it was refused before reading.
            if io.body_read > io.max_body {
                io.body = BodyState::Broken;
                return Err(BodyError {
                    status: 413,
                    reason: "request body too large",
                });
            }
        }
        Ok(chunk)
    }

    /// The whole request body (bounded by MaxRequestBody).
    pub async fn read_body_all(&mut self) -> Result<Bytes, BodyError> {
        let mut all = BytesMut::new();
        while let Some(chunk) = self.read_body().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// Stream a piece of the response body. The first call sends the head
    /// (from `ctx.response`): with the Content-Length the plugin set, or
    /// chunked. Waits while the client is slow (backpressure).
    pub async fn write(&mut self, data: impl Into<Bytes>) -> io::Result<()> {
        let mut chunk = BodyChunk {
            data: data.into(),
            last: false,
        };
        if !self.io.head_sent {
            self.hold_streaming_head();
        }
        if !self.location.chain(Hook::WriteBodyData).is_empty() {
            if let Outcome::Error(m) = filter_outcome(run_write_body_data(self, &mut chunk).await) {
                self.io.close = true;
                return Err(io::Error::other(m));
            }
        }
        self.io_write_body(&chunk.data).await
    }

    /// Stream `len` bytes of `file` from `offset` as the next piece of the
    /// response body, like [`Context::write`] (the first call sends the
    /// head). Without body filters the bytes go out with sendfile, capped
    /// per call, the head or chunk size held back with MSG_MORE to leave in
    /// the same segment; filters see bytes, so then the file goes through
    /// memory, 64 KiB at a time, read on the blocking pool (never on the
    /// event loop). A file that ends early is an `UnexpectedEof` error and
    /// the connection will close: nothing past the new end is ever sent.
    pub async fn write_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        if !self.io.head_sent {
            self.hold_streaming_head();
        }
        if !self.location.chain(Hook::WriteBodyData).is_empty() {
            use std::os::unix::fs::FileExt;
            let mut pos = offset;
            let end = offset + len;
            let mut file = file.try_clone()?;
            let mut buf = vec![0u8; (len as usize).min(64 * 1024)];
            while pos < end {
                let want = ((end - pos) as usize).min(buf.len());
                let read = tokio::task::spawn_blocking(move || {
                    let n = file.read_at(&mut buf[..want], pos);
                    (file, buf, n)
                });
                let n;
                (file, buf, n) = read.await.map_err(io::Error::other)?;
                let n = n?;
                if n == 0 {
                    self.io.close = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while sending",
                    ));
                }
                pos += n as u64;
                self.write(Bytes::copy_from_slice(&buf[..n])).await?;
            }
            return Ok(());
        }
        let io = &mut self.io;
        if io.is_head || len == 0 {
            return Ok(());
        }
        if io
            .announced
            .is_some_and(|limit| io.body_bytes_sent + len > limit)
        {
            io.close = true;
            return Err(io::Error::other(
                "response body longer than its Content-Length",
            ));
        }
        let mut before = std::mem::take(&mut io.pending_head);
        if io.chunked_out {
            axkit_http::write_chunk_header(&mut before, len as usize);
        }
        io.write_head_more(&before).await?;
        let result = io.sendfile(file, offset, len).await;
        if result.is_err() {
            io.close = true;
        }
        result?;
        io.body_bytes_sent += len;
        if io.chunked_out {
            io.write_all(&mut [IoSlice::new(b"\r\n")]).await?;
        }
        Ok(())
    }

    /// Send bytes exactly as given: no head is generated and nothing is
    /// framed or filtered, because the caller writes the whole response,
    /// status line included (an `nph-` CGI script). Only the sender knows
    /// where such a body ends, so the connection closes after it.
    pub async fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.close = true;
        self.io.head_sent = true;
        self.io.body_bytes_sent += data.len() as u64;
        self.io.write_all(&mut [IoSlice::new(data)]).await
    }

    /// Resolves when the client closes its connection (or it fails), so
    /// that a handler waiting on slow work can give up. Call it once the
    /// request body has been read: it stays pending when the client has
    /// sent more bytes (a pipelined request says nothing about leaving).
    pub async fn client_closed(&self) {
        if self.io.buf.is_empty() {
            let mut probe = [0u8; 1];
            if let Ok(0) | Err(_) = self.io.stream.peek(&mut probe).await {
                return;
            }
        }
        std::future::pending().await
    }

    /// Last chance to decide that the connection closes after this
    /// response, so that the head can say so.
    fn decide_close(&mut self) {
        // An ErrorDocument page is served with the original error status.
        if let Some(status) = self.status_override {
            if !self.io.head_sent && self.response.status == 200 {
                self.response.status = status;
            }
        }
        // Draining: let clients move to a worker that stays.
        if self.worker.shutting_down.get() {
            self.io.close = true;
        }
        // We never said 100 Continue, so the client may never send the
        // body: waiting to drain it could hang, and guessing could
        // misread a body as the next request.
        if self.io.expect_continue && self.io.body_pending() {
            self.io.close = true;
        }
    }

    /// Commit to the head of a streamed response; it is written with the
    /// first piece of body (see `ConnIo::pending_head`).
    fn hold_streaming_head(&mut self) {
        self.decide_close();
        let status = self.response.status;
        let filtered = !self.location.chain(Hook::WriteBodyData).is_empty();
        let declared = self
            .response
            .headers
            .get("Content-Length")
            .and_then(|v| axkit_http::parse_content_length(v.as_bytes()));
        let framing = if bodiless(status) {
            OutFraming::None
        } else if let (Some(n), false) = (declared, filtered) {
            OutFraming::Length(n)
        } else if self.io.version == Version::Http11 {
            OutFraming::Chunked
        } else {
            self.io.close = true;
            OutFraming::UntilClose
        };
        self.io.chunked_out = framing == OutFraming::Chunked && !self.io.is_head;
        self.io.announced = match framing {
            OutFraming::Length(n) => Some(n),
            OutFraming::None => Some(0),
            _ => None,
        };
        let head = self.io.encode_head(status, &self.response.headers, framing);
        self.io.head_sent = true;
        self.io.pending_head = head;
    }

    async fn io_write_body(&mut self, data: &[u8]) -> io::Result<()> {
        let io = &mut self.io;
        if io.is_head || data.is_empty() {
            return Ok(());
        }
        if let Some(limit) = io.announced {
            if io.body_bytes_sent + data.len() as u64 > limit {
                io.close = true;
                return Err(io::Error::other(
                    "response body longer than its Content-Length",
                ));
            }
        }
        io.body_bytes_sent += data.len() as u64;
        if io.chunked_out {
            let mut size = Vec::with_capacity(18);
            axkit_http::write_chunk_header(&mut size, data.len());
            io.write_all(&mut [
                IoSlice::new(&size),
                IoSlice::new(data),
                IoSlice::new(b"\r\n"),
            ])
            .await
        } else {
            io.write_all(&mut [IoSlice::new(data)]).await
        }
    }

    /// Finish a streamed response: flush filters, send the last chunk.
    async fn finish_stream(&mut self) -> io::Result<()> {
        if !self.location.chain(Hook::WriteBodyData).is_empty() {
            let mut chunk = BodyChunk {
                data: Bytes::new(),
                last: true,
            };
            if let Outcome::Error(m) = filter_outcome(run_write_body_data(self, &mut chunk).await) {
                self.io.close = true;
                return Err(io::Error::other(m));
            }
            self.io_write_body(&chunk.data).await?;
        }
        let io = &mut self.io;
        if io.chunked_out {
            io.write_all(&mut [IoSlice::new(axkit_http::LAST_CHUNK)])
                .await?;
        } else {
            // Flushes a head still held back (a response with no body).
            io.write_all(&mut []).await?;
        }
        if let Some(n) = io.announced {
            if io.body_bytes_sent < n && !io.is_head {
                // Fewer bytes than announced: the client must not wait for more.
                io.close = true;
                return Err(io::Error::other(
                    "response body shorter than its Content-Length",
                ));
            }
        }
        Ok(())
    }

    /// Send `ctx.response` in full (the usual, non-streamed case).
    async fn send_response(&mut self) -> io::Result<()> {
        let status = self.response.status;
        let filtered = !self.location.chain(Hook::WriteBodyData).is_empty();
        let body = std::mem::take(&mut self.response.body);
        if bodiless(status) {
            let head = self
                .io
                .encode_head(status, &self.response.headers, OutFraming::None);
            self.io.head_sent = true;
            return self.io.write_all(&mut [IoSlice::new(&head)]).await;
        }
        match body {
            Body::File { file, offset, len } if filtered => {
                // Filters see bytes: write_file streams it through memory.
                self.write_file(&file, offset, len).await?;
                if !self.io.head_sent {
                    self.hold_streaming_head();
                }
                self.finish_stream().await
            }
            Body::File { file, offset, len } => {
                // Plugins that want a small file sent from memory in one
                // write hand over `Body::Bytes` (serve_file's SmallFileSize);
                // a file body always goes out with sendfile, its head held
                // back with MSG_MORE so both leave in one segment.
                let head =
                    self.io
                        .encode_head(status, &self.response.headers, OutFraming::Length(len));
                self.io.head_sent = true;
                if self.io.is_head {
                    return self.io.write_all(&mut [IoSlice::new(&head)]).await;
                }
                self.io.write_head_more(&head).await?;
                let result = self.io.sendfile(&file, offset, len).await;
                if result.is_err() {
                    self.io.close = true;
                }
                self.io.body_bytes_sent = len;
                result
            }
            Body::Bytes(bytes) if filtered => {
                let mut chunk = BodyChunk {
                    data: bytes,
                    last: true,
                };
                if let Outcome::Error(m) =
                    filter_outcome(run_write_body_data(self, &mut chunk).await)
                {
                    return Err(io::Error::other(m));
                }
                self.send_bytes(status, chunk.data).await
            }
            Body::Bytes(bytes) => self.send_bytes(status, bytes).await,
            Body::Empty => self.send_bytes(status, Bytes::new()).await,
        }
    }

    async fn send_bytes(&mut self, status: u16, bytes: Bytes) -> io::Result<()> {
        let head = self.io.encode_head(
            status,
            &self.response.headers,
            OutFraming::Length(bytes.len() as u64),
        );
        self.io.head_sent = true;
        if self.io.is_head {
            return self.io.write_all(&mut [IoSlice::new(&head)]).await;
        }
        self.io.body_bytes_sent = bytes.len() as u64;
        self.io
            .write_all(&mut [IoSlice::new(&head), IoSlice::new(&bytes)])
            .await
    }
}

/// Filters may only rewrite; map their outcomes to "carry on" or a failure.
fn filter_outcome(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Ok | Outcome::Declined => Outcome::Ok,
        Outcome::Error(m) => Outcome::Error(m),
        Outcome::Status(s) => Outcome::Error(format!("write_body_data returned status {s}")),
        Outcome::Done => Outcome::Error("write_body_data returned DONE".into()),
    }
}

/// Serve one connection until it closes. `bound` is the listening
/// socket's address when it names one interface: then it is the
/// connection's local address too, without asking the kernel.
pub(crate) async fn serve(
    worker: Rc<WorkerRt>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    bound: Option<SocketAddr>,
) {
    let _ = stream.set_nodelay(true);
    let local = match bound {
        Some(addr) => addr,
        None => stream.local_addr().unwrap_or(peer),
    };
    let conn = Rc::new(ConnInfo {
        id: worker.next_conn_id(),
        peer,
        local,
        tls: false,
    });
    let default_server = worker.listener_servers[listener][0];
    let conn_location = worker.servers[default_server].locations[0].clone();
    // Boxed: it lives as long as the connection and moves into and out
    // of every request's Context, which then moves a pointer.
    let mut io = Box::new(ConnIo::new(stream));
    if run_conn_hook(&worker, &conn_location, Hook::Connect, &conn).await {
        let mut served: u64 = 0;
        loop {
            if !run_conn_hook(&worker, &conn_location, Hook::PreRequest, &conn).await {
                break;
            }
            if io.buf.is_empty()
                && !wait_for_request(&worker, &mut io, default_server, served).await
            {
                break;
            }
            let cycle = Box::pin(request_cycle(
                worker.clone(),
                io,
                conn.clone(),
                listener,
                served,
            ))
            .await;
            match cycle {
                Some(back) => io = back,
                None => break,
            }
            // The read buffer is kept while requests keep coming (the next
            // read reuses its allocation once this request's head is
            // dropped) and released by `wait_for_request` as soon as the
            // connection goes idle.
            served += 1;
        }
    }
    run_conn_hook(&worker, &conn_location, Hook::Disconnect, &conn).await;
    worker.connection_closed();
}

/// Wait for the first bytes of the next request and read them into
/// `io.buf`; false means close (idle timeout, peer closed, or the worker is
/// shutting down).
///
/// Bytes are only ever taken by a read here, never left to `read_head`:
/// a `readable()` wait can end on stale readiness, and the idle connection
/// would then sit in `read_head` past the keep-alive timeout, deaf to
/// shutdown. The buffer is released before waiting, so an idle connection
/// holds none.
async fn wait_for_request(worker: &WorkerRt, io: &mut ConnIo, server: usize, served: u64) -> bool {
    // A new connection still gets its first request answered when shutdown
    // begins after it was accepted: its client could not know and cannot
    // safely retry (nginx does the same). Only idle keep-alive connections
    // are closed at once.
    let idle = served > 0;
    if idle && worker.shutting_down.get() {
        return false;
    }
    // A new connection's request has usually arrived with it, before
    // epoll has said so: ask the socket once instead of waiting a turn.
    if !idle {
        if let Some(more) = read_first(worker, io) {
            return more;
        }
    }
    // On a busy connection the next request is often there already: the
    // timer and the shutdown subscription are only set up to wait.
    if let Some(more) = try_read_request(worker, io).await {
        return more;
    }
    let srv = &worker.servers[server];
    let limit = if idle {
        srv.keepalive_timeout
    } else {
        srv.header_timeout
    };
    // Ends at the deadline, and at shutdown for an idle connection.
    let wait = worker.idle.wait(limit, idle);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            biased;
            r = io.stream.readable() => if r.is_err() { return false },
            _ = &mut wait => return false,
        }
        if let Some(more) = try_read_request(worker, io).await {
            return more;
        }
    }
}

/// One non-blocking read into `io.buf`: Some(true) when bytes came,
/// Some(false) at EOF or on an error, None when there is nothing yet (the
/// buffer is then released so an idle connection holds none).
async fn try_read_request(worker: &WorkerRt, io: &mut ConnIo) -> Option<bool> {
    while io.maybe_readable().await {
        if io.buf.capacity() == 0 {
            io.buf = worker.read_buffer();
        }
        io.buf.reserve(READ_BUFFER);
        match io.read_now().await {
            Some(Ok(0)) => return Some(false),
            Some(Ok(_)) => return Some(true),
            Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(_)) => return Some(false),
            None => break,
        }
    }
    worker.recycle_read_buffer(std::mem::take(&mut io.buf));
    None
}

/// One read straight from the socket, whatever tokio knows of its
/// readiness (nothing yet, for a new connection); as `try_read_request`.
fn read_first(worker: &WorkerRt, io: &mut ConnIo) -> Option<bool> {
    use std::io::Read;
    let mut first = [0u8; 2048];
    loop {
        return match (&*socket2::SockRef::from(&io.stream)).read(&mut first) {
            Ok(0) => Some(false),
            Ok(n) => {
                if io.buf.capacity() == 0 {
                    io.buf = worker.read_buffer();
                }
                io.buf.extend_from_slice(&first[..n]);
                Some(true)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(_) => Some(false),
        };
    }
}

/// Read one request head and answer it. Returns the connection's I/O state
/// if the connection stays open.
///
/// The rare paths (rejects, 413, internal redirects) are awaited boxed:
/// inline, their futures would make this one, allocated for every
/// request, several times bigger.
async fn request_cycle(
    worker: Rc<WorkerRt>,
    mut io: Box<ConnIo>,
    conn: Rc<ConnInfo>,
    listener: usize,
    served: u64,
) -> Option<Box<ConnIo>> {
    let default_server = worker.listener_servers[listener][0];
    let head = match read_head(&worker, &mut io, default_server).await {
        Ok(Some(head)) => head,
        Ok(None) => return None,
        Err(e) => {
            worker.log(
                Level::Info,
                &format!("{}: bad request: {}", conn.peer, e.reason),
            );
            Box::pin(reject(&worker, io, default_server, e.status)).await;
            return None;
        }
    };
    let server_index = worker.pick_server(listener, head.host());
    let server = &worker.servers[server_index];
    let decoded = match crate::server::uri::normalize_path(head.path()) {
        Some(p) => p,
        None => {
            worker.log(
                Level::Info,
                &format!(
                    "{}: bad request: malformed path {:?}",
                    conn.peer,
                    head.path()
                ),
            );
            Box::pin(reject(&worker, io, server_index, 400)).await;
            return None;
        }
    };
    let location = location_rt(&worker, server_index, &decoded);

    io.server_header = server.server_header.clone();
    io.version = head.version();
    io.is_head = head.method() == "HEAD";
    io.head_sent = false;
    io.body_bytes_sent = 0;
    io.chunked_out = false;
    io.announced = None;
    io.body_read = 0;
    io.max_body = location.max_body;
    io.body_timeout = location.body_timeout;
    io.send_timeout = location.send_timeout;
    io.expect_continue = head.expects_continue();
    io.body_detached = false;
    io.close = !(head.keep_alive()
        && server.keepalive
        && (server.max_keepalive_requests == 0 || served + 1 < server.max_keepalive_requests)
        && !worker.shutting_down.get());
    let too_large = match head.framing() {
        BodyFraming::None => {
            io.body = BodyState::None;
            false
        }
        BodyFraming::Length(0) => {
            io.body = BodyState::None;
            false
        }
        BodyFraming::Length(n) => {
            io.body = BodyState::Length(n);
            n > location.max_body
        }
        BodyFraming::Chunked => {
            io.body = BodyState::Chunked(Box::new(ChunkedDecoder::new(8192)));
            false
        }
    };

    let request = Request {
        head,
        decoded_path: decoded,
        started: SystemTime::now(),
    };
    let mut ctx = Context::new(request, conn, io, worker.clone(), server_index, location);
    if too_large {
        ctx.io.body = BodyState::Broken;
        ctx.io.expect_continue = false;
        Box::pin(error_response(&mut ctx, 413)).await;
    } else {
        walk(&mut ctx).await;
    }
    if ctx.redirect.is_some() {
        Box::pin(follow_redirects(&mut ctx)).await;
    }

    if !ctx.location.chain(Hook::ResponseSent).is_empty()
        && run_hook(&mut ctx, Hook::ResponseSent).await == Outcome::Done
    {
        ctx.io.close = true;
    }
    let mut io = ctx.io;
    if io.body_pending() && !io.close {
        drain_body(&mut io).await;
    }
    if io.close {
        close(io).await;
        return None;
    }
    Some(io)
}

/// The runtime of the `<Location>` that `decoded` falls in.
fn location_rt(worker: &WorkerRt, server: usize, decoded: &str) -> Rc<LocationRt> {
    let config = &worker.config.servers[server];
    let node = config.location_for(decoded);
    let index = config
        .locations
        .iter()
        .position(|n| std::ptr::eq(n, node))
        .unwrap_or(0);
    worker.servers[server].locations[index].clone()
}

/// Internal redirects chained by hooks (`ctx.internal_redirect`): each is
/// a fresh GET walk of the new URI, at most `MAX_REDIRECTS` deep.
async fn follow_redirects(ctx: &mut Context) {
    let mut hops = 0;
    while let Some((target, status)) = ctx.redirect.take() {
        if ctx.io.head_sent {
            break;
        }
        hops += 1;
        let request = match redirected_request(&ctx.request, &target) {
            Some(r) if hops <= MAX_REDIRECTS => r,
            other => {
                let why = if other.is_some() {
                    "more than 10 internal redirects"
                } else {
                    "internal redirect to an invalid URI"
                };
                let msg = format!("{}: {why}: {target:?}", ctx.request.request_line());
                ctx.log(Level::Error, &msg);
                ctx.redirect = None;
                ctx.status_override = None;
                ctx.response.headers.clear();
                // A loop can only end here: no more hops from error hooks.
                hops = MAX_REDIRECTS;
                error_response(ctx, 500).await;
                continue;
            }
        };
        let from_status = status.unwrap_or(ctx.response.status);
        ctx.notes
            .insert("redirect.uri".into(), ctx.request.uri().to_string());
        ctx.notes
            .insert("redirect.status".into(), from_status.to_string());
        ctx.location = location_rt(&ctx.worker, ctx.server, &request.decoded_path);
        ctx.request = request;
        ctx.reset_for_redirect();
        ctx.status_override = status;
        ctx.io.body_detached = true;
        ctx.io.expect_continue = false;
        walk(ctx).await;
    }
}

/// The request an internal redirect to `target` makes: a GET of `target`
/// with the original headers (minus body framing), parsed and normalised
/// like a request from the wire.
fn redirected_request(old: &Request, target: &str) -> Option<Request> {
    if !target.starts_with('/') {
        return None;
    }
    let mut raw = Vec::with_capacity(old.head.head_bytes().len() + target.len());
    raw.extend_from_slice(b"GET ");
    raw.extend_from_slice(target.as_bytes());
    raw.push(b' ');
    raw.extend_from_slice(old.version().as_str().as_bytes());
    raw.extend_from_slice(b"\r\n");
    for (name, value) in old.headers() {
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
        {
            continue;
        }
        axkit_http::write_header(&mut raw, name, value);
    }
    raw.extend_from_slice(b"\r\n");
    let limits = axkit_http::Limits {
        max_request_line: raw.len(),
        max_header_bytes: raw.len(),
        max_headers: old.headers().count() + 1,
    };
    let head = axkit_http::parse_request_head(&mut BytesMut::from(&raw[..]), &limits).ok()??;
    let decoded_path = crate::server::uri::normalize_path(head.path())?;
    Some(Request {
        head,
        decoded_path,
        started: old.started,
    })
}

/// Read until a complete head is buffered. Ok(None): the peer closed or
/// timed out before sending anything worth answering.
async fn read_head(
    worker: &WorkerRt,
    io: &mut ConnIo,
    server: usize,
) -> Result<Option<RequestHead>, HttpError> {
    let srv = &worker.servers[server];
    // The clock is read only when the head is not all there yet.
    let mut deadline = None;
    loop {
        if !io.buf.is_empty() {
            if let Some(head) = axkit_http::parse_request_head(&mut io.buf, &srv.limits)? {
                return Ok(Some(head));
            }
        }
        let at = *deadline.get_or_insert_with(|| Instant::now() + srv.header_timeout);
        let left = at.saturating_duration_since(Instant::now());
        match io.read_more(left).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut && !io.buf.is_empty() => {
                return Err(HttpError {
                    status: 408,
                    reason: "timed out reading the request head",
                })
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Answer a request we could not parse, without involving plugins, and
/// close.
async fn reject(worker: &WorkerRt, mut io: Box<ConnIo>, server: usize, status: u16) {
    io.close = true;
    io.version = Version::Http11;
    io.server_header = worker.servers[server].server_header.clone();
    let body = default_error_page(status, None);
    let mut headers = crate::plugin::Headers::default();
    headers.set("Content-Type", "text/html; charset=utf-8");
    let head = io.encode_head(status, &headers, OutFraming::Length(body.len() as u64));
    let _ = io
        .write_all(&mut [IoSlice::new(&head), IoSlice::new(body.as_bytes())])
        .await;
    lingering_close(io).await;
}

/// The request walk, from post_read_request to the response.
async fn walk(ctx: &mut Context) {
    // uri_translation through response, in their declared order.
    let phases = &Hook::ALL[Hook::UriTranslation as usize..=Hook::Response as usize];
    match run_hook(ctx, Hook::PostReadRequest).await {
        Outcome::Ok | Outcome::Declined => {}
        Outcome::Done => return finish(ctx).await,
        other => return fail(ctx, other).await,
    }
    if ctx.io.body_pending() && !ctx.location.chain(Hook::BodyData).is_empty() {
        loop {
            match ctx.read_body().await {
                Ok(Some(chunk)) => match run_body_data(ctx, &chunk).await {
                    Outcome::Ok | Outcome::Declined => {}
                    Outcome::Done => break,
                    other => return fail(ctx, other).await,
                },
                Ok(None) => break,
                Err(e) => return error_response(ctx, e.status).await,
            }
        }
    }
    for &hook in phases {
        if ctx.location.chain(hook).is_empty() {
            continue;
        }
        match run_hook(ctx, hook).await {
            Outcome::Declined => {}
            // For the producing phases Ok means "the response is ready".
            Outcome::Ok if matches!(hook, Hook::XmlResponse | Hook::Response) => {
                return finish(ctx).await
            }
            Outcome::Ok => {}
            Outcome::Done => return finish(ctx).await,
            other => return fail(ctx, other).await,
        }
    }
    // Every plugin declined to produce a response.
    error_response(ctx, 404).await
}

/// Send whatever the plugins produced.
async fn finish(ctx: &mut Context) {
    if ctx.redirect.is_some() && !ctx.io.head_sent {
        // An internal redirect answers instead (see `follow_redirects`).
        return;
    }
    ctx.decide_close();
    let result = if ctx.io.head_sent {
        ctx.finish_stream().await
    } else {
        ctx.send_response().await
    };
    if let Err(e) = result {
        ctx.io.close = true;
        if e.kind() != io::ErrorKind::BrokenPipe && e.kind() != io::ErrorKind::ConnectionReset {
            let msg = format!(
                "{}: sending response to {} failed: {e}",
                ctx.request.request_line(),
                ctx.conn.peer
            );
            ctx.log(Level::Info, &msg);
        }
    }
}

/// A hook stopped the walk with a Status or an error.
async fn fail(ctx: &mut Context, outcome: Outcome) {
    let status = match outcome {
        // 1xx are interim responses: a hook cannot end a request with one.
        Outcome::Status(s) if (200..=999).contains(&s) => s,
        Outcome::Status(s) => {
            let msg = format!("invalid status {s} returned by a hook");
            ctx.log(Level::Error, &msg);
            500
        }
        _ => 500,
    };
    if status >= 500 {
        if let Some(f) = &ctx.failure {
            let msg = format!(
                "{} {}: plugin {}, hook {}: {}",
                ctx.conn.peer,
                ctx.request.request_line(),
                f.plugin,
                f.hook,
                f.message
            );
            ctx.log(Level::Error, &msg);
        }
    }
    error_response(ctx, status).await
}

/// The error path: let `error` hooks produce the page, else the built-in one.
pub(crate) async fn error_response(ctx: &mut Context, status: u16) {
    if ctx.io.head_sent {
        // Too late for an error page: the client sees a truncated response.
        ctx.io.close = true;
        return;
    }
    if matches!(ctx.io.body, BodyState::Broken) {
        ctx.io.close = true;
    }
    ctx.response.status = status;
    ctx.response.body = Body::Empty;
    let mut handled = false;
    if !ctx.location.chain(Hook::Error).is_empty() {
        match run_hook(ctx, Hook::Error).await {
            Outcome::Ok | Outcome::Done => handled = true,
            _ => ctx.response.status = status,
        }
    }
    if ctx.io.head_sent || ctx.redirect.is_some() {
        return finish(ctx).await;
    }
    if !handled {
        let failure = ctx.failure.clone();
        // Only server errors carry the trace: a 404 or 403 is not a bug.
        let page = default_error_page(
            status,
            failure
                .as_ref()
                .filter(|_| status >= 500 && ctx.config().flag("StackTrace")),
        );
        ctx.response
            .headers
            .set("Content-Type", "text/html; charset=utf-8");
        ctx.response.body = Body::Bytes(Bytes::from(page));
    }
    finish(ctx).await
}

/// The built-in error page: small, valid HTML, nothing internal unless
/// asked for.
pub(crate) fn default_error_page(status: u16, failure: Option<&crate::plugin::Failure>) -> String {
    let reason = axkit_http::reason_phrase(status);
    let detail = match failure {
        Some(f) => format!(
            "<pre>plugin {}, hook {}: {}</pre>\n",
            crate::server::html_escape(&f.plugin),
            f.hook,
            crate::server::html_escape(&f.message)
        ),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\n<body><h1>{status} {reason}</h1>\n{detail}</body></html>\n"
    )
}

/// Read and discard what is left of a request body nobody read, so the
/// connection can serve the next request; close if there is too much.
async fn drain_body(io: &mut ConnIo) {
    let timeout = io.body_timeout.min(Duration::from_secs(5));
    let mut drained = 0u64;
    loop {
        // A known length past the budget is not worth waiting for.
        if let BodyState::Length(remaining) = io.body {
            if remaining > MAX_DRAIN - drained.min(MAX_DRAIN) {
                io.close = true;
                return;
            }
        }
        match io.next_body(timeout).await {
            Ok(None) => return,
            Ok(Some(chunk)) => {
                drained += chunk.len() as u64;
                if drained > MAX_DRAIN {
                    io.close = true;
                    return;
                }
            }
            Err(_) => {
                io.close = true;
                return;
            }
        }
    }
}

/// Close after answering: stop writing, then read and discard for a moment
/// so that a client still sending (a body we refused, pipelined requests)
/// receives our response instead of a reset.
/// Close after a response. Closing with unread bytes from the client
/// makes the kernel send a reset, which can destroy the response before
/// the client reads it: when a request body is left, or the client has
/// sent more already (pipelining), close lingering. Otherwise close at
/// once, as nginx does, without a shutdown and another wait.
async fn close(io: Box<ConnIo>) {
    // What epoll has told tokio is enough (nginx goes by the same): a read
    // only when it says there is something. None: the client has closed.
    let more = io.body_pending()
        || !io.buf.is_empty()
        || (io.maybe_readable().await && discard_input(&io.stream).is_some_and(|n| n > 0));
    if more {
        lingering_close(io).await;
    }
}

async fn lingering_close(io: Box<ConnIo>) {
    let stream = io.stream;
    if socket2::SockRef::from(&stream)
        .shutdown(std::net::Shutdown::Write)
        .is_err()
    {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut total = 0usize;
    while total < 1 << 20 {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => match discard_input(&stream) {
                Some(n) => total += n,
                None => return,
            },
            _ => return,
        }
    }
}

/// Read and drop what the peer has sent so far: the byte count, or None
/// at EOF or on an error. (A plain function, so its buffer lives on the
/// stack for the call rather than in every connection's future.)
fn discard_input(stream: &TcpStream) -> Option<usize> {
    let mut scratch = [0u8; 4096];
    let mut total = 0;
    loop {
        match stream.try_read(&mut scratch) {
            Ok(0) => return None,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}
