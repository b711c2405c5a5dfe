//! The connection state machine: wait for a request head, walk it through
//! the hooks, write the response, keep the connection alive or close it.
//! (The socket's I/O is in `conn_io`, the Context's reading and writing
//! in `response`.)
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
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use axkit_http::{BodyFraming, ChunkedDecoder, HttpError, RequestHead, Version};
use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::config::core;
use crate::plugin::{Body, ConnInfo, Context, Hook, Level, Outcome, Request};
use crate::server::conn_io::{BodyState, ConnIo, OutFraming, READ_BUFFER};
use crate::server::idle::Kind;
use crate::server::worker::{run_body_data, run_conn_hook, run_hook, LocationRt, WorkerRt};

/// How much unread request body we read and discard to keep a connection
/// alive, rather than closing it.
const MAX_DRAIN: u64 = 256 * 1024;
/// How many internal redirects one request may chain.
const MAX_REDIRECTS: u32 = 10;

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
    // Ends at the deadline, when the worker needs the room for a new
    // client, and at shutdown for an idle connection.
    let kind = if idle { Kind::Idle } else { Kind::Fresh };
    let mut wait = worker.idle.wait(limit, kind);
    loop {
        // Readiness polled directly rather than through `readable()`: no
        // waiter to link into the socket's list and unlink again.
        let readable = std::future::poll_fn(|cx| {
            if let Poll::Ready(r) = io.stream.poll_read_ready(cx) {
                return Poll::Ready(r.is_ok());
            }
            std::pin::Pin::new(&mut wait).poll(cx).map(|()| false)
        })
        .await;
        if !readable {
            return false;
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
    // `read_now` asks tokio's readiness before any syscall, so a socket
    // with nothing to read costs only a spare buffer taken and given back.
    loop {
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
            let head = RequestHead::unparsed(&io.buf);
            Box::pin(reject(&worker, io, conn, default_server, e.status, head)).await;
            return None;
        }
    };
    let server_index = worker.pick_server(listener, &head);
    let server = &worker.servers[server_index];
    let request = match Request::new(head, SystemTime::now()) {
        Ok(request) => request,
        Err(head) => {
            worker.log(
                Level::Info,
                &format!(
                    "{}: bad request: malformed path {:?}",
                    conn.peer,
                    head.path()
                ),
            );
            Box::pin(reject(&worker, io, conn, server_index, 400, *head)).await;
            return None;
        }
    };
    let location = location_rt(&worker, server_index, &request);
    let head = &request.head;

    io.server_header = server.server_header.clone();
    io.version = head.version();
    io.is_head = head.method_is("HEAD");
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
    if io.body_never_asked_for() {
        io.close = true;
    }
    if io.body_pending() && !io.close {
        drain_body(&mut io).await;
    }
    if io.close {
        close(io).await;
        return None;
    }
    Some(io)
}

/// The runtime of the `<Location>` that the request's path falls in.
fn location_rt(worker: &WorkerRt, server: usize, request: &Request) -> Rc<LocationRt> {
    let locations = &worker.servers[server].locations;
    if locations.len() == 1 {
        return locations[0].clone();
    }
    let config = &worker.config.servers[server];
    let node = config.location_for(request.decoded_path());
    let index = config
        .locations
        .iter()
        .position(|n| std::ptr::eq(n, node))
        .unwrap_or(0);
    locations[index].clone()
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
        ctx.location = location_rt(&ctx.worker, ctx.server, &request);
        let replaced = std::mem::replace(&mut ctx.request, request);
        ctx.original.get_or_insert(replaced);
        ctx.reset_for_redirect();
        ctx.status_override = status;
        // The redirected walk reads no body (and so never says 100
        // Continue); the original body is still there to drain, or the
        // connection closes if it was never asked for.
        ctx.io.body_detached = true;
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
    Request::new(head, old.started).ok()
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

/// Answer a request we could not parse, without the request hooks, and
/// close. `head` is the request as far as it could be read (see
/// `RequestHead::unparsed`): the response_sent hooks still see it, so the
/// refusal reaches the request log as nginx's access log has it.
async fn reject(
    worker: &Rc<WorkerRt>,
    mut io: Box<ConnIo>,
    conn: Rc<ConnInfo>,
    server: usize,
    status: u16,
    head: RequestHead,
) {
    let started = SystemTime::now();
    io.close = true;
    io.version = Version::Http11;
    io.server_header = worker.servers[server].server_header.clone();
    let body = default_error_page(status, None);
    let mut headers = crate::plugin::Headers::default();
    headers.set("Content-Type", "text/html; charset=utf-8");
    let encoded = io.encode_head(status, &headers, OutFraming::Length(body.len() as u64));
    io.head_sent = true;
    io.body_bytes_sent = body.len() as u64;
    let _ = io
        .write_all(&mut [IoSlice::new(&encoded), IoSlice::new(body.as_bytes())])
        .await;
    let location = worker.servers[server].locations[0].clone();
    if !location.chain(Hook::ResponseSent).is_empty() {
        let request = Request::unchecked(head, started);
        let mut ctx = Context::new(request, conn, io, worker.clone(), server, location);
        ctx.response.status = status;
        ctx.response.headers = headers;
        run_hook(&mut ctx, Hook::ResponseSent).await;
        io = ctx.io;
    }
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
                .filter(|_| status >= 500 && *ctx.config().get(&core::STACK_TRACE)),
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

/// Close after a response. Closing with unread bytes from the client
/// makes the kernel send a reset, which can destroy the response before
/// the client reads it: when a request body is left, or the client has
/// sent more already (pipelining), close lingering. Otherwise close at
/// once, as nginx does, without a shutdown and another wait.
async fn close(io: Box<ConnIo>) {
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
