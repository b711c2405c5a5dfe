//! A connection's socket and what outlives one request on it: waiting
//! for and reading request heads (with deadlines, through tokio's
//! readiness), the request body's framing, writing (vectored writes;
//! sendfile, with the head held back by MSG_MORE and long bodies corked),
//! encoding response heads, and closing (at once, or lingering while the
//! client may still be sending).

use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use std::cell::RefCell;
use std::time::Instant;

use axkit_http::{BodyFraming, ChunkedDecoder, HttpError, Limits, RequestHead, Version};
use bytes::{Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::plugin::{BodyError, Request, SpareVecs};
use crate::server::idle::{End, IdleWait, IdleWaits, Kind};
use crate::server::metrics::ConnTrack;
use crate::server::runtime::LocationRt;

/// Read buffer size for a request head (grows up to MaxHeaderSize).
pub(super) const READ_BUFFER: usize = 4096;
/// A fast client may not keep the worker to itself: yield to other
/// connections after this many bytes of one body.
const YIELD_EVERY: u64 = 1 << 20;
/// How much unread request body we read and discard to keep a connection
/// alive, rather than closing it.
const MAX_DRAIN: u64 = 256 * 1024;
/// How long reading and discarding an unread body may take in all
/// (nginx's `lingering_time`); less when three `BodyTimeout`s are less.
const MAX_DRAIN_TIME: Duration = Duration::from_secs(30);
/// Spare read buffers a worker keeps at most (64 × 4 KiB).
const SPARE_READ_BUFFERS: usize = 64;

/// Read buffers of connections that went idle, for the next one that gets
/// bytes: a busy keep-alive connection releases its buffer while it waits
/// for each request, and 4 KiB chunks are too big for malloc's fast path.
#[derive(Default)]
pub(crate) struct ReadBuffers(RefCell<Vec<BytesMut>>);

impl ReadBuffers {
    /// An empty read buffer, recycled when one is spare.
    pub(super) fn take(&self) -> BytesMut {
        self.0.borrow_mut().pop().unwrap_or_default()
    }

    /// Keep `buf` for another connection (its contents are dropped).
    pub(super) fn give(&self, mut buf: BytesMut) {
        let mut spare = self.0.borrow_mut();
        if buf.capacity() > 0 && spare.len() < SPARE_READ_BUFFERS {
            buf.clear();
            spare.push(buf);
        }
    }
}

/// How a wait for the next request ended.
pub(super) enum Waited<'w> {
    /// Its first bytes are in the buffer.
    Request,
    /// Timed out, reclaimed, drained, or the peer went: close.
    Gone,
    /// Idle for a sweep: the connection may park in this wait's slot.
    Park(IdleWait<'w>),
}

impl Waited<'_> {
    fn read(more: bool) -> Self {
        if more {
            Waited::Request
        } else {
            Waited::Gone
        }
    }
}

/// What the first read of a parked connection's event found.
pub(super) enum FirstRead {
    /// The start of a request, in a buffer from the pool.
    Bytes(BytesMut),
    /// Nothing yet (a spurious event).
    Nothing,
    /// The peer closed, or an error: the connection is over.
    Gone,
}

/// Read what woke the parked socket `fd`, before it is a tokio stream again:
/// tokio would first wait for the reactor to report readiness, a turn of
/// the loop for bytes that are already here.
pub(super) fn read_parked(fd: RawFd, buffers: &ReadBuffers) -> FirstRead {
    let mut buf = buffers.take();
    buf.reserve(READ_BUFFER);
    let read = loop {
        let spare = buf.spare_capacity_mut();
        // SAFETY: `spare` is writable memory of that length; recv writes at
        // most that many bytes into it.
        let n = unsafe {
            libc::recv(
                fd,
                spare.as_mut_ptr().cast(),
                spare.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            break Ok(n as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            break Err(error);
        }
    };
    match read {
        Ok(n) if n > 0 => {
            // SAFETY: recv initialised the first n bytes of the spare room.
            unsafe { buf.set_len(n) };
            FirstRead::Bytes(buf)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            buffers.give(buf);
            FirstRead::Nothing
        }
        _ => {
            buffers.give(buf);
            FirstRead::Gone
        }
    }
}

/// The request body still to be read.
#[derive(Debug)]
pub(crate) enum BodyState {
    None,
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    /// A framing error or a timeout happened: the connection must close.
    Broken,
}

/// The socket and the per-connection state that a request's [`Context`]
/// borrows for the duration of the request.
pub(crate) struct ConnIo {
    pub stream: TcpStream,
    /// Bytes read but not yet consumed (body, or pipelined requests).
    pub buf: BytesMut,
    pub body: BodyState,
    pub(super) body_read: u64,
    pub(super) max_body: u64,
    pub(super) body_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) expect_continue: bool,
    pub head_sent: bool,
    pub body_bytes_sent: u64,
    /// The response body goes out chunk-encoded.
    pub(super) chunked_out: bool,
    /// Content-Length announced in a streamed head: we must not exceed it.
    pub(super) announced: Option<u64>,
    pub(super) is_head: bool,
    pub(super) version: Version,
    /// The connection closes after this response.
    pub close: bool,
    /// The head of a streamed response, encoded but held back so that it
    /// leaves in the same write as the first piece of body.
    pub(super) pending_head: HeadBuf,
    /// An internal redirect made this a GET without a body: reads see none
    /// (the original body, if any, is still drained or the connection
    /// closed).
    pub(super) body_detached: bool,
    /// A write_body_data filter is running: writing from it would run the
    /// filters again, without end.
    pub(crate) filtering: bool,
    pub(super) server_header: Rc<[u8]>,
    /// A plugin took the connection over (`Context::upgrade`): the
    /// server writes nothing more on it and closes it as it is.
    pub(super) upgraded: bool,
    /// The connection's state and entry in the metrics.
    pub(crate) track: ConnTrack,
    /// When a new connection's first head is due, if it waited for its
    /// first bytes: `HeaderTimeout` runs from the accept, over the wait and
    /// the head, as nginx's `client_header_timeout` does (a fresh timeout
    /// for the head after the first byte let a slow client hold the
    /// connection twice as long).
    pub(super) head_by: Option<Instant>,
}

impl ConnIo {
    pub(super) fn new(stream: TcpStream) -> ConnIo {
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
            filtering: false,
            pending_head: HeadBuf::default(),
            server_header: Rc::from(&b""[..]),
            upgraded: false,
            track: ConnTrack::none(),
            head_by: None,
        }
    }

    /// One non-blocking read into `buf`: Some(true) when bytes came,
    /// Some(false) at EOF or on an error, None when there is nothing yet
    /// (the buffer then goes back to `buffers`, so an idle connection
    /// holds none).
    async fn try_read(&mut self, buffers: &ReadBuffers) -> Option<bool> {
        // `read_now` asks tokio's readiness before any syscall, so a socket
        // with nothing to read costs only a spare buffer taken and given back.
        loop {
            if self.buf.capacity() == 0 {
                self.buf = buffers.take();
            }
            self.buf.reserve(READ_BUFFER);
            match self.read_now().await {
                Some(Ok(0)) => return Some(false),
                Some(Ok(_)) => return Some(true),
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(_)) => return Some(false),
                None => break,
            }
        }
        buffers.give(std::mem::take(&mut self.buf));
        None
    }

    /// Wait for the first bytes of the next request and read them into
    /// `buf`: `Request` when they came, `Gone` when the wait ended first
    /// (after `limit`, or when `idle` ends it) or the peer went, `Park`
    /// when it has lasted a sweep and `parkable` lets the connection park.
    /// `going_idle` runs when nothing is there yet, before the wait.
    ///
    /// Bytes are only ever taken by a read here, never left to
    /// `read_head`: a `readable()` wait can end on stale readiness, and
    /// the idle connection would then sit in `read_head` past its
    /// timeout, deaf to shutdown.
    pub(super) async fn wait_for_request<'w>(
        &mut self,
        buffers: &ReadBuffers,
        idle: &'w IdleWaits,
        limit: Duration,
        kind: Kind,
        parkable: bool,
        going_idle: impl FnOnce(),
    ) -> Waited<'w> {
        // On a busy connection the next request is often there already:
        // the idle wait is only set up to wait.
        if let Some(more) = self.try_read(buffers).await {
            return Waited::read(more);
        }
        going_idle();
        let mut wait = idle.wait(limit, kind, parkable);
        loop {
            // Readiness polled directly rather than through `readable()`:
            // no waiter to link into the socket's list and unlink again.
            let readable = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = self.stream.poll_read_ready(cx) {
                    return Poll::Ready(r.map(|_| ()).map_err(|_| End::Over));
                }
                std::pin::Pin::new(&mut wait).poll(cx).map(Err)
            })
            .await;
            match readable {
                Ok(()) => {}
                Err(End::Over) => return Waited::Gone,
                // Bytes that come from now on wake the parked connection:
                // its epoll reports them even if they are already there.
                Err(End::Park) => return Waited::Park(wait),
            }
            if let Some(more) = self.try_read(buffers).await {
                if kind == Kind::Fresh {
                    self.head_by = Some(wait.deadline().into_std());
                }
                return Waited::read(more);
            }
        }
    }

    /// Read until a complete head is buffered, for at most `timeout`.
    /// Ok(None): the peer closed or timed out before sending anything
    /// worth answering.
    pub(super) async fn read_head(
        &mut self,
        limits: &Limits,
        timeout: Duration,
    ) -> Result<Option<RequestHead>, HttpError> {
        // The clock is read only when the head is not all there yet.
        let mut deadline = self.head_by.take();
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = Request::parse_head(&mut self.buf, limits)? {
                    return Ok(Some(head));
                }
            }
            let at = *deadline.get_or_insert_with(|| Instant::now() + timeout);
            let left = at.saturating_duration_since(Instant::now());
            match self.read_more(left).await {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !self.buf.is_empty() => {
                    return Err(HttpError {
                        status: 408,
                        reason: "timed out reading the request head",
                    })
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// Set the connection up for the request `head` in `location`: its
    /// body's framing and limits, how the response is framed, and whether
    /// the connection stays open after it. True when the body announced is
    /// over the Location's limit.
    #[inline(always)]
    pub(super) fn start_request(
        &mut self,
        head: &RequestHead,
        server_header: &Rc<[u8]>,
        location: &LocationRt,
        keep_alive: bool,
    ) -> bool {
        self.server_header = server_header.clone();
        self.version = head.version();
        self.is_head = head.method_is("HEAD");
        self.head_sent = false;
        self.body_bytes_sent = 0;
        self.chunked_out = false;
        self.announced = None;
        self.body_read = 0;
        self.max_body = location.max_body;
        self.body_timeout = location.body_timeout;
        self.send_timeout = location.send_timeout;
        self.expect_continue = head.expects_continue();
        self.body_detached = false;
        self.close = !keep_alive;
        match head.framing() {
            BodyFraming::None | BodyFraming::Length(0) => {
                self.body = BodyState::None;
                false
            }
            BodyFraming::Length(n) => {
                self.body = BodyState::Length(n);
                n > location.max_body
            }
            BodyFraming::Chunked => {
                self.body = BodyState::Chunked(Box::new(ChunkedDecoder::new(8192)));
                false
            }
        }
    }

    /// Wait until the socket can be written, at most SendTimeout.
    pub(super) async fn writable(&self) -> io::Result<()> {
        match timeout(self.send_timeout, self.stream.writable()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "send timeout")),
        }
    }

    /// Write every byte of `bufs`, in order, with few syscalls.
    /// A streamed response's head waiting in `pending_head` goes out in
    /// the same write.
    pub(super) async fn write_all(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        if !self.pending_head.is_empty() {
            let head = std::mem::take(&mut self.pending_head);
            let mut all = Vec::with_capacity(bufs.len() + 1);
            all.push(IoSlice::new(&head));
            all.extend(bufs.iter().map(|b| IoSlice::new(b)));
            return self.write_slices(&mut all).await;
        }
        self.write_slices(bufs).await
    }

    pub(super) async fn write_slices(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
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
    pub(super) async fn write_op(
        &self,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            match op() {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    // A `try_` call takes none of tokio's budget: a fast
                    // reader of a response written in small pieces never
                    // makes a write wait, and the worker served nobody else
                    // until it ended (100 MB in 100-byte flushes: 5.9 s).
                    // Yield once the task's budget for this turn is spent.
                    tokio::task::coop::consume_budget().await;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A raw syscall on the socket under tokio's readiness tracking: -1
    /// becomes the OS error (WouldBlock clears readiness for `writable`).
    pub(super) fn try_raw(&self, call: impl FnOnce(i32) -> isize) -> io::Result<usize> {
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
    pub(super) async fn write_head_more(&mut self, head: &[u8]) -> io::Result<()> {
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
    pub(super) async fn sendfile(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
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
    pub(super) fn set_cork(&self, on: bool) {
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
    pub(super) async fn sendfile_calls(
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
    pub(super) async fn read_more(&mut self, limit: Duration) -> io::Result<usize> {
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
                    // `poll_read_ready`, not `readable()`: `read_now` also
                    // says None when the task has spent tokio's budget for
                    // this turn (the read is refused without a syscall,
                    // the socket still readable), and `readable()`, which
                    // takes no budget, would end at once, again and again:
                    // a body all there at once spun the worker for ever.
                    // This wait yields the turn instead.
                    let ready = std::future::poll_fn(|cx| self.stream.poll_read_ready(cx));
                    match tokio::time::timeout_at(at, ready).await {
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
    pub(super) async fn read_now(&mut self) -> Option<io::Result<usize>> {
        use tokio::io::AsyncReadExt;
        let mut read = std::pin::pin!(self.stream.read_buf(&mut self.buf));
        std::future::poll_fn(|cx| match read.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// The next piece of request body (from the buffer, else read with
    /// `timeout`), or `None` at its end. Any error leaves the body Broken,
    /// so the connection will close.
    pub(super) async fn next_body(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Bytes>, BodyError> {
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
    pub(super) fn body_pending(&self) -> bool {
        !matches!(self.body, BodyState::None)
    }

    /// The client waits for `100 Continue` before it sends its body, and
    /// was never told to: the body may never come, so waiting to drain it
    /// could hang, and guessing could read the client's next request as
    /// body. The connection must close after the response (and its head
    /// say so), whatever produced it: an error page, an internal redirect.
    pub(super) fn body_never_asked_for(&self) -> bool {
        self.expect_continue && self.body_pending()
    }

    /// Read and discard what is left of a request body nobody read, so the
    /// connection can serve the next request; close if there is too much.
    pub(super) async fn drain_body(&mut self) {
        let timeout = self.body_timeout.min(Duration::from_secs(5));
        let until = Instant::now() + MAX_DRAIN_TIME.min(self.body_timeout.saturating_mul(3));
        let mut drained = 0u64;
        loop {
            // A byte every few seconds would keep the connection, busy,
            // out of the idle table's reach for as long as the body lasts.
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.close = true;
                return;
            }
            // A known length past the budget is not worth waiting for.
            if let BodyState::Length(remaining) = self.body {
                if remaining > MAX_DRAIN - drained.min(MAX_DRAIN) {
                    self.close = true;
                    return;
                }
            }
            match self.next_body(timeout.min(left)).await {
                Ok(None) => return,
                Ok(Some(chunk)) => {
                    drained += chunk.len() as u64;
                    if drained > MAX_DRAIN {
                        self.close = true;
                        return;
                    }
                }
                Err(_) => {
                    self.close = true;
                    return;
                }
            }
        }
    }

    /// Build the response head.
    pub(super) fn encode_head(
        &self,
        status: u16,
        headers: &crate::plugin::Headers,
        framing: OutFraming,
    ) -> HeadBuf {
        // Made with room for a usual head (`HEAD_CAPACITY`): every line
        // checks for room as it is copied anyway, so a head bigger than
        // that grows the buffer rather than every head paying a pass over
        // its fields to size it first.
        let mut out = HeadBuf::take();
        write_first_lines(&mut out, status, &self.server_header);
        // `Headers` refused bad names and values as they were set.
        for (name, value) in headers.iter() {
            if !is_framing_header(name) {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        match framing {
            OutFraming::Length(n) => {
                out.extend_from_slice(b"Content-Length: ");
                out.extend_from_slice(itoa_buf(n).as_bytes());
                out.extend_from_slice(b"\r\n");
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

/// Close after a response. Closing with unread bytes from the client
/// makes the kernel send a reset, which can destroy the response before
/// the client reads it: when a request body is left, or the client has
/// sent more already (pipelining), close lingering. Otherwise close at
/// once, as nginx does, without a shutdown and another wait.
pub(super) async fn close(io: Box<ConnIo>) {
    // A tunnel's bytes are its plugin's business: nothing to linger for.
    if io.upgraded {
        return;
    }
    // What epoll has told tokio is enough (nginx goes by the same):
    // `try_read` makes no syscall unless tokio counts the socket readable,
    // and unlike a readiness poll it never answers "not readable" because
    // the task has used up its budget. None: the client has closed.
    let more =
        io.body_pending() || !io.buf.is_empty() || discard_input(&io.stream).is_some_and(|n| n > 0);
    if more {
        lingering_close(io).await;
    }
}

/// Stop writing, then read and discard for a moment, so that a client
/// still sending (a body we refused, pipelined requests) receives our
/// response instead of a reset.
pub(super) async fn lingering_close(io: Box<ConnIo>) {
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

/// Read and drop what the peer has sent so far, at most 64 KiB a call so
/// that a client sending fast cannot keep the worker here: the byte count,
/// or None at EOF or on an error. (A plain function, so its buffer lives on
/// the stack for the call rather than in every connection's future.)
fn discard_input(stream: &TcpStream) -> Option<usize> {
    let mut scratch = [0u8; 4096];
    let mut total = 0;
    while total < 64 * 1024 {
        match stream.try_read(&mut scratch) {
            Ok(0) => return None,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Some(total),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(total)
}

/// An encoded response head. Its buffer comes from a small per-thread
/// pool and goes back to it when dropped (a worker is one thread), so a
/// keep-alive request does not allocate one.
#[derive(Default)]
pub(super) struct HeadBuf(Vec<u8>);

/// Room for a file's head with validators (about 250 bytes) and a few
/// more headers without growing.
const HEAD_CAPACITY: usize = 512;
thread_local! {
    /// Buffers kept spare per worker (64); a bigger one (a head with huge
    /// cookies, say) is not kept.
    static SPARE: SpareVecs<u8> = const { SpareVecs::new(64, 4096) };
}

impl HeadBuf {
    fn take() -> HeadBuf {
        HeadBuf(SpareVecs::take(&SPARE, HEAD_CAPACITY))
    }
}

impl Drop for HeadBuf {
    fn drop(&mut self) {
        SpareVecs::give(&SPARE, std::mem::take(&mut self.0));
    }
}

impl std::ops::Deref for HeadBuf {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for HeadBuf {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

thread_local! {
    /// The status line, `Server` and `Date` lines of the last head this
    /// worker wrote. Most responses within a second share all three, and
    /// copying them as one block costs a third of writing them line by
    /// line (the status's digits and reason, the date, four copies).
    static FIRST_LINES: RefCell<FirstLines> = RefCell::default();
}

#[derive(Default)]
struct FirstLines {
    status: u16,
    secs: u64,
    /// Held, not only compared by address, so that the address cannot be
    /// reused by another server's header while it is cached.
    server: Option<Rc<[u8]>>,
    bytes: Vec<u8>,
}

/// Append a head's status line, its `Server` line (`server`, ready-made
/// per virtual server) and its `Date`.
fn write_first_lines(out: &mut Vec<u8>, status: u16, server: &Rc<[u8]>) {
    let secs = coarse_now_secs();
    FIRST_LINES.with_borrow_mut(|first| {
        let same = first.status == status
            && first.secs == secs
            && first.server.as_ref().is_some_and(|s| Rc::ptr_eq(s, server));
        if !same {
            first.refresh(status, secs, server);
        }
        out.extend_from_slice(&first.bytes);
    });
}

impl FirstLines {
    /// Write the lines again for another status, second or server: at
    /// most once a second on a busy worker serving one kind of answer, so
    /// kept apart from the code every head runs.
    #[cold]
    #[inline(never)]
    fn refresh(&mut self, status: u16, secs: u64, server: &Rc<[u8]>) {
        let bytes = &mut self.bytes;
        bytes.clear();
        axkit_http::write_status_line(bytes, status);
        bytes.extend_from_slice(server);
        bytes.extend_from_slice(b"Date: ");
        bytes.extend_from_slice(&axkit_http::http_date(secs));
        bytes.extend_from_slice(b"\r\n");
        (self.status, self.secs) = (status, secs);
        self.server = Some(server.clone());
    }
}

/// Seconds since the epoch from the kernel's coarse clock: the Date header
/// needs whole seconds, and this clock is read without the timestamp
/// counter, at a few nanoseconds a call instead of about twenty.
fn coarse_now_secs() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        if let Ok(secs) = u64::try_from(ts.tv_sec) {
            return secs;
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A tiny, allocation-light decimal formatter for Content-Length.
pub(super) struct Digits([u8; 20], usize);
impl Digits {
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0[self.1..]
    }
}
pub(super) fn itoa_buf(mut n: u64) -> Digits {
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
pub(super) fn is_framing_header(name: &str) -> bool {
    // By length first: every response's headers pass through here, and
    // most (Content-Type, ETag…) match none of these lengths.
    let candidates: &[&str] = match name.len() {
        4 => &["date"],
        6 => &["server"],
        10 => &["connection", "keep-alive"],
        14 => &["content-length"],
        17 => &["transfer-encoding"],
        _ => return false,
    };
    candidates.iter().any(|c| name.eq_ignore_ascii_case(c))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OutFraming {
    /// No body allowed (HEAD excepted: HEAD announces the length it would send).
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 client, unknown length: the body ends when we close.
    UntilClose,
}
