//! What is behind [`Context`]'s I/O methods, and the walk's "respond"
//! step: reading the request body (answering `Expect: 100-continue`), and
//! writing the response, whole, streamed with backpressure, or from a file
//! with sendfile, through the `write_body_data` filters when the chain has
//! any.

use std::io::{self, IoSlice};

use axkit_http::{bodiless, Version};
use bytes::Bytes;

use crate::plugin::{
    escape_log, out_of_line, Body, BodyChunk, BodyError, Context, Hook, Level, Outcome, Reclaim,
};
use crate::server::conn_io::{BodyState, OutFraming};
use crate::server::hooks::{run_hook, run_write_body_data};

/// A write_body_data filter rewrites `chunk.data`; writing from it would
/// run the filters again, without end.
fn not_filtering(ctx: &Context) -> io::Result<()> {
    if ctx.rt.io.filtering {
        return Err(io::Error::other(
            "a write_body_data hook cannot write: it rewrites the chunk it is given",
        ));
    }
    Ok(())
}

/// [`Context::read_body`]: the first call answers `Expect: 100-continue`;
/// any error leaves the body Broken, so the connection will close.
pub(crate) async fn read_body(ctx: &mut Context) -> Result<Option<Bytes>, BodyError> {
    let io = &mut ctx.rt.io;
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

/// [`Context::write`]: the filters see the chunk first (the first one
/// while the head can still change), then the first call commits to the
/// head.
pub(crate) async fn write(ctx: &mut Context, data: Bytes) -> io::Result<()> {
    not_filtering(ctx)?;
    before_head(ctx).await?;
    let mut chunk = BodyChunk { data, last: false };
    filter(ctx, &mut chunk).await?;
    if !ctx.rt.io.head_sent {
        hold_streaming_head(ctx);
    }
    write_body(ctx, &chunk.data).await
}

/// [`Context::flush`]: commit to the head as [`write`] does, and send it
/// without waiting for a piece of body.
pub(crate) async fn flush(ctx: &mut Context) -> io::Result<()> {
    write(ctx, Bytes::new()).await?;
    ctx.rt.io.write_all(&mut []).await
}

/// While the head has not gone out: the `before_head` hook of the
/// Location that answers, once per response, then the work plugins asked
/// for ([`Context::before_head`]), which so sees what the hook did. A
/// failure of either (an error or a panic: work on the head left undone,
/// a security header say) is logged, and an error: the half-made
/// response is not sent (the built-in 500 page is, if anything), and the connection
/// closes. A final status below 200 left by then is such a failure too
/// (see [`interim_status`]).
async fn before_head(ctx: &mut Context) -> io::Result<()> {
    head_work(ctx).await?;
    if ctx.response.status < 200 && !ctx.rt.io.head_sent {
        return Err(interim_status(ctx));
    }
    Ok(())
}

/// A plugin left a 1xx as the response's status: that head would go out
/// as an interim response, the client (or a front proxy) would take the
/// next one for this request's answer, or switch to a tunnel that this
/// side never opened, while this connection goes on parsing requests. A
/// 101 goes out only through [`upgrade`].
#[cold]
#[inline(never)]
fn interim_status(ctx: &mut Context) -> io::Error {
    let why = format!(
        "a response cannot end with the interim status {}: answered 500",
        ctx.response.status
    );
    head_failed(ctx, why)
}

/// [`before_head`]'s hooks and work, for every head (a 101 too).
async fn head_work(ctx: &mut Context) -> io::Result<()> {
    if ctx.rt.io.head_sent {
        return Ok(());
    }
    if !ctx.rt.head_hook_ran && !ctx.rt.location.chain(Hook::BeforeHead).is_empty() {
        ctx.rt.head_hook_ran = true;
        match run_hook(ctx, Hook::BeforeHead).await {
            Outcome::Ok | Outcome::Declined => {}
            other => return Err(head_hook_failed(ctx, &other)),
        }
    }
    if ctx.before_head_pending() {
        if let Err(panic) = ctx.run_before_head().await {
            let why = format!(
                "work before the response head panicked: {}",
                escape_log(&panic)
            );
            return Err(head_failed(ctx, why));
        }
    }
    Ok(())
}

/// A `before_head` hook said something other than Ok or Declined.
#[cold]
#[inline(never)]
fn head_hook_failed(ctx: &mut Context, outcome: &Outcome) -> io::Error {
    // An Error or a Status was just noted in `ctx.failure` by the runner.
    let why = match (outcome, &ctx.failure) {
        (Outcome::Error(_) | Outcome::Status(_), Some(f)) => {
            format!("plugin {}: {}", f.plugin, f.message)
        }
        _ => "a plugin returned Done, which it cannot here".to_string(),
    };
    head_failed(ctx, format!("hook before_head: {why}"))
}

/// The head could not be made: logged, the response replaced by a bare
/// 500, the connection to close.
#[cold]
fn head_failed(ctx: &mut Context, why: String) -> io::Error {
    ctx.fail_head();
    ctx.rt.io.close = true;
    ctx.log_request(Level::Error, format_args!("{why}"));
    io::Error::other(why)
}

/// Run the `write_body_data` filters over `chunk`, if the chain has any.
/// They run before the head is committed when this is the response's
/// first chunk, so a filter can still set headers (a compressor's
/// `Content-Encoding`) or take the status and headers down with the body
/// (a cache); with filters in the chain the body goes out chunked, so a
/// filter may change its length.
async fn filter(ctx: &mut Context, chunk: &mut BodyChunk) -> io::Result<()> {
    if !ctx.body_filtered() {
        return Ok(());
    }
    match filter_outcome(run_write_body_data(ctx, chunk).await) {
        Outcome::Error(m) => {
            ctx.rt.io.close = true;
            Err(io::Error::other(m))
        }
        _ => Ok(()),
    }
}

/// [`Context::write_file`]: with sendfile, or through memory (read on
/// the blocking pool) when filters must see the bytes.
pub(crate) async fn write_file(
    ctx: &mut Context,
    file: &std::fs::File,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    not_filtering(ctx)?;
    before_head(ctx).await?;
    if ctx.body_filtered() {
        // Through `write`, which runs the filters before the head.
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
                ctx.rt.io.close = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while sending",
                ));
            }
            pos += n as u64;
            write(ctx, Bytes::copy_from_slice(&buf[..n])).await?;
        }
        return Ok(());
    }
    if !ctx.rt.io.head_sent {
        hold_streaming_head(ctx);
    }
    let io = &mut ctx.rt.io;
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

/// [`Context::write_raw`]: the caller's whole response, as given.
pub(crate) async fn write_raw(ctx: &mut Context, data: &[u8]) -> io::Result<()> {
    let io = &mut ctx.rt.io;
    io.close = true;
    io.head_sent = true;
    io.body_bytes_sent += data.len() as u64;
    io.write_all(&mut [IoSlice::new(data)]).await
}

/// [`Context::upgrade`]: `101 Switching Protocols`, then the connection is
/// the plugin's.
pub(crate) async fn upgrade<'a>(ctx: &'a mut Context, protocol: &str) -> io::Result<Upgraded<'a>> {
    let refuse = |why: &str| Err(io::Error::other(format!("cannot upgrade: {why}")));
    if ctx.rt.io.head_sent {
        return refuse("the response has started");
    }
    if ctx.rt.io.body_pending() {
        return refuse("the request has a body");
    }
    let asked = ctx.request.header("Upgrade").is_some()
        && ctx.request.header("Connection").is_some_and(|c| {
            c.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !asked || ctx.request.version() != Version::Http11 {
        return refuse("the request did not ask for it (HTTP/1.1, Connection: upgrade, Upgrade)");
    }
    head_work(ctx).await?;
    if !axkit_http::valid_header_value(protocol.as_bytes()) || protocol.is_empty() {
        return refuse("invalid protocol name");
    }
    let io = &mut ctx.rt.io;
    // Not "Connection: close": the head says Upgrade instead.
    io.close = false;
    let mut head = io.encode_head(101, &ctx.response.headers, OutFraming::None);
    // Before the blank line that ends the head.
    let end = head.len() - 2;
    head.truncate(end);
    axkit_http::write_header(&mut head, "Connection", b"Upgrade");
    axkit_http::write_header(&mut head, "Upgrade", protocol.as_bytes());
    head.extend_from_slice(b"\r\n");
    io.head_sent = true;
    io.upgraded = true;
    io.close = true;
    ctx.response.status = 101;
    io.write_all(&mut [IoSlice::new(&head)]).await?;
    Ok(Upgraded { io })
}

/// A connection a plugin took over after `101 Switching Protocols` (see
/// [`Context::upgrade`]): read and write it as a byte stream. Bytes the
/// client sent right after its request head come first. The server closes
/// the connection when the hook that holds this returns.
pub struct Upgraded<'a> {
    io: &'a mut crate::server::conn_io::ConnIo,
}

impl tokio::io::AsyncRead for Upgraded<'_> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let io = &mut *self.get_mut().io;
        if !io.buf.is_empty() {
            let n = buf.remaining().min(io.buf.len());
            buf.put_slice(&io.buf.split_to(n));
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut io.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Upgraded<'_> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().io.stream).poll_write(cx, data)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io.stream).poll_shutdown(cx)
    }
}

/// [`Context::client_closed`]: pending while the client has sent bytes
/// nobody has read.
pub(crate) async fn client_closed(ctx: &Context) {
    let io = &ctx.rt.io;
    if io.buf.is_empty() {
        let mut probe = [0u8; 1];
        if let Ok(0) | Err(_) = io.stream.peek(&mut probe).await {
            return;
        }
    }
    std::future::pending().await
}

/// Last chance to decide that the connection closes after this
/// response, so that the head can say so.
pub(super) fn decide_close(ctx: &mut Context) {
    // An ErrorDocument page is served with the original error status,
    // and then with the error's fields that hold for it.
    if let (Some(status), false) = (ctx.rt.status_override, ctx.rt.io.head_sent) {
        if ctx.response.status == 200 {
            ctx.response.status = status;
        }
        if ctx.response.status == status {
            if let Some(kept) = ctx.rt.error_headers.take() {
                ctx.response.headers.append(kept);
            }
        }
    }
    // Draining: let clients move to a worker that stays.
    if ctx.rt.worker.shutting_down.get() {
        ctx.rt.io.close = true;
    }
    if ctx.rt.io.body_never_asked_for() {
        ctx.rt.io.close = true;
    }
}

/// Commit to the head of a streamed response; it is written with the
/// first piece of body (see `ConnIo::pending_head`).
fn hold_streaming_head(ctx: &mut Context) {
    decide_close(ctx);
    let status = ctx.response.status;
    let filtered = ctx.body_filtered();
    let declared = ctx
        .response
        .headers
        .get("Content-Length")
        .and_then(|v| axkit_http::parse_content_length(v.as_bytes()));
    let framing = if bodiless(status) {
        OutFraming::None
    } else if let (Some(n), false) = (declared, filtered) {
        OutFraming::Length(n)
    } else if ctx.rt.io.version == Version::Http11 {
        OutFraming::Chunked
    } else {
        ctx.rt.io.close = true;
        OutFraming::UntilClose
    };
    ctx.rt.io.chunked_out = framing == OutFraming::Chunked && !ctx.rt.io.is_head;
    ctx.rt.io.announced = match framing {
        OutFraming::Length(n) => Some(n),
        OutFraming::None => Some(0),
        _ => None,
    };
    let head = ctx
        .rt
        .io
        .encode_head(status, &ctx.response.headers, framing);
    ctx.rt.io.head_sent = true;
    ctx.rt.io.pending_head = head;
}

/// One piece of a streamed body, framed as the head announced.
async fn write_body(ctx: &mut Context, data: &[u8]) -> io::Result<()> {
    let io = &mut ctx.rt.io;
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
pub(super) async fn finish_stream(ctx: &mut Context) -> io::Result<()> {
    before_head(ctx).await?;
    // A stream the worker ended to make room (`Context::set_reclaimable`)
    // gives its connection up.
    if ctx.reclaim().is_some_and(Reclaim::is_asked) {
        ctx.rt.io.close = true;
    }
    let mut chunk = BodyChunk {
        data: Bytes::new(),
        last: true,
    };
    filter(ctx, &mut chunk).await?;
    if !ctx.rt.io.head_sent {
        hold_streaming_head(ctx);
    }
    write_body(ctx, &chunk.data).await?;
    let io = &mut ctx.rt.io;
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
pub(super) async fn send(ctx: &mut Context) -> io::Result<()> {
    // A failure is logged, and leaves the 500 to send.
    let _ = before_head(ctx).await;
    let status = ctx.response.status;
    let filtered = ctx.body_filtered();
    let body = std::mem::take(&mut ctx.response.body);
    if bodiless(status) {
        let head = ctx
            .rt
            .io
            .encode_head(status, &ctx.response.headers, OutFraming::None);
        ctx.rt.io.head_sent = true;
        return ctx.rt.io.write_all(&mut [IoSlice::new(&head)]).await;
    }
    match body {
        Body::Bytes(bytes) if !filtered => send_bytes(ctx, status, bytes).await,
        Body::Empty if !filtered => send_bytes(ctx, status, Bytes::new()).await,
        body => out_of_line(send_other(ctx, status, filtered, body)).await,
    }
}

/// [`send`] for a body that is a file, or that the filters must see:
/// awaited out of line, so that the usual answer from memory is laid out
/// without its code (a file's answer pays a box, next to its sendfile).
async fn send_other(ctx: &mut Context, status: u16, filtered: bool, body: Body) -> io::Result<()> {
    match body {
        Body::File { file, offset, len } if filtered => {
            // Filters see bytes: write_file streams it through memory.
            write_file(ctx, &file, offset, len).await?;
            finish_stream(ctx).await
        }
        Body::File { file, offset, len } => {
            // Plugins that want a small file sent from memory in one
            // write hand over `Body::Bytes` (serve_file's SmallFileSize);
            // a file body always goes out with sendfile, its head held
            // back with MSG_MORE so both leave in one segment.
            let head =
                ctx.rt
                    .io
                    .encode_head(status, &ctx.response.headers, OutFraming::Length(len));
            ctx.rt.io.head_sent = true;
            if ctx.rt.io.is_head {
                return ctx.rt.io.write_all(&mut [IoSlice::new(&head)]).await;
            }
            ctx.rt.io.write_head_more(&head).await?;
            let result = ctx.rt.io.sendfile(&file, offset, len).await;
            if result.is_err() {
                ctx.rt.io.close = true;
            }
            ctx.rt.io.body_bytes_sent = len;
            result
        }
        body => {
            let data = match body {
                Body::Bytes(bytes) => bytes,
                _ => Bytes::new(),
            };
            // Only a filtered one comes here: `send` answers the others.
            let mut chunk = BodyChunk { data, last: true };
            filter(ctx, &mut chunk).await?;
            // A filter may have changed the status, as the headers.
            let status = ctx.response.status;
            send_bytes(ctx, status, chunk.data).await
        }
    }
}

/// A whole response from memory: head and body in one write.
async fn send_bytes(ctx: &mut Context, status: u16, bytes: Bytes) -> io::Result<()> {
    let head = ctx.rt.io.encode_head(
        status,
        &ctx.response.headers,
        OutFraming::Length(bytes.len() as u64),
    );
    ctx.rt.io.head_sent = true;
    if ctx.rt.io.is_head {
        return ctx.rt.io.write_all(&mut [IoSlice::new(&head)]).await;
    }
    ctx.rt.io.body_bytes_sent = bytes.len() as u64;
    ctx.rt
        .io
        .write_all(&mut [IoSlice::new(&head), IoSlice::new(&bytes)])
        .await
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
