//! The request walk, top to bottom: what the server does with a connection
//! from accept to close. Each function below is one step, in the order a
//! request meets them:
//!
//! 1. [`serve`]: the connection. `connect`, then per request
//!    `pre_request`, wait for the head, one [`request_cycle`]; at the end
//!    `disconnect`.
//! 2. [`request_cycle`]: one request. Read the head, pick the `<Server>`
//!    (by Host) and the `<Location>` (by path), set the connection up for
//!    it, [`walk`] the hooks, follow internal redirects, run
//!    `response_sent` (where request logs write), then keep the connection
//!    alive (draining a body nobody read) or close it.
//! 3. [`walk`]: the hooks in order, `post_read_request` through
//!    `response`; the first that ends the walk decides how it answers.
//! 4. [`finish`]: respond, with what the plugins produced.
//! 5. [`fail`] and [`error_response`]: the error path, through the `error`
//!    hooks or the built-in page.
//! 6. [`follow_redirects`]: internal redirects, each a fresh walk.
//! 7. [`reject`]: a request that could not be parsed is answered without
//!    the request hooks.
//!
//! Running a hook over its chain is `hooks.rs`; the socket is `conn_io.rs`;
//! writing the response and reading the body is `response.rs`.
//!
//! Written by hand rather than on hyper because an idle keep-alive
//! connection must hold almost nothing (hyper keeps an 8 KiB read buffer per
//! connection) and file bodies must go out with sendfile. While idle, a
//! connection owns only its socket: the read buffer is released and the
//! per-request state lives in a boxed future that exists only while a
//! request is in flight; after a sweep of the idle table it parks
//! ([`requests`] ends, `park.rs` holds the socket) and [`resume`] rebuilds
//! it when its next request arrives.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use axkit_http::{RequestHead, Version};
use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;

use crate::config::core;
use crate::plugin::{
    escape_log_bytes, out_of_line, Body, ConnInfo, Context, Document, HandOff, Headers, Hook,
    Level, Outcome, Request,
};
use crate::server::conn_io::{self, BodyState, ConnIo, OutFraming, Waited};
use crate::server::hooks::{run_body_data, run_conn_hook, run_hook, run_hook_as, Call};
use crate::server::idle::{IdleWait, Kind, Parked};
use crate::server::metrics::ConnTrack;
use crate::server::response;
use crate::server::runtime::{LocationRt, RequestRt, WorkerRt};
use crate::server::trace;

/// How many internal redirects one request may chain.
const MAX_REDIRECTS: u32 = 10;

/// Serve one connection until it closes. `bound` is the listening
/// socket's address when it names one interface: then it is the
/// connection's local address too, without asking the kernel.
pub(crate) async fn serve(
    worker: Rc<WorkerRt>,
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    bound: Option<SocketAddr>,
) {
    let counted = Counted(Some(&worker));
    let _ = stream.set_nodelay(true);
    let local = match bound {
        Some(addr) => addr,
        None => stream.local_addr().unwrap_or(peer),
    };
    // Connection hooks run in the root of the listener's default Server:
    // no request has said which Server or Location it is for.
    let default_server = worker.listener_servers[listener][0];
    let conn_location = worker.servers[default_server].locations[0].clone();
    let mut proxied = None;
    let mut early = BytesMut::new();
    if worker.listener_proxy[listener] {
        let srv = &worker.servers[default_server];
        // Its header is a claim about the client: only the proxies the
        // config names may make it, when it names them.
        if !srv.proxy_protocol_from.is_empty()
            && !srv
                .proxy_protocol_from
                .iter()
                .any(|c| c.contains(peer.ip()))
        {
            worker.log(
                Level::Info,
                &format!("{peer}: refused: not in ProxyProtocolFrom"),
            );
            return;
        }
        let timeout = srv.header_timeout;
        match read_proxy_header(&mut stream, timeout).await {
            Ok((header, rest)) => {
                proxied = Some(header);
                early = rest;
            }
            Err(why) => {
                worker.log(Level::Info, &format!("{peer}: refused: {why}"));
                return;
            }
        }
    }
    let conn = Rc::new(ConnInfo {
        id: worker.next_conn_id(),
        peer,
        local,
        tls: false,
        proxied,
        background: false,
        listener: listener as u16,
    });
    // Boxed: it lives as long as the connection and moves into and out
    // of every request's Context, which then moves a pointer.
    let mut io = Box::new(ConnIo::new(stream));
    io.buf = early;
    io.track = ConnTrack::open(worker.metrics, conn.id, peer);
    if run_conn_hook(&worker, &conn_location, Hook::Connect, &conn).await
        && requests(&worker, io, &conn, listener, 0, true).await == Ended::Parked
    {
        counted.parked();
        return;
    }
    run_conn_hook(&worker, &conn_location, Hook::Disconnect, &conn).await;
}

/// A connection counted open in its worker: counted closed when this is
/// dropped, however the connection's task ends (a panic that escaped
/// every guard included: the runtime then drops the task), unless it
/// parked, which keeps it counted.
struct Counted<'a>(Option<&'a WorkerRt>);

impl Counted<'_> {
    fn parked(mut self) {
        self.0 = None;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some(worker) = self.0 {
            worker.connection_closed();
        }
    }
}

/// Serve a background request (`background.rs`): `head`, already read,
/// on the worker's own connection `stream`, without the connection hooks
/// (no client connected) and without `pre_request`.
pub(crate) async fn serve_background(
    worker: Rc<WorkerRt>,
    stream: TcpStream,
    conn: Rc<ConnInfo>,
    head: BytesMut,
) {
    let _counted = Counted(Some(&worker));
    let mut io = Box::new(ConnIo::new(stream));
    io.buf = head;
    let listener = usize::from(conn.listener);
    requests(&worker, io, &conn, listener, 0, false).await;
}

/// A parked connection (`park.rs`) got the start of a request, `buf`:
/// rebuild it and carry on from where its last wait began. `deadline` is
/// when that wait would have ended: a new connection's head is due by
/// then (`ConnIo::head_by`).
pub(crate) async fn resume(
    worker: Rc<WorkerRt>,
    parked: Parked,
    buf: BytesMut,
    deadline: tokio::time::Instant,
) {
    let Parked {
        fd,
        id,
        served,
        listener,
        track,
    } = parked;
    let counted = Counted(Some(&worker));
    let listener = usize::from(listener);
    let stream = match TcpStream::from_std(std::net::TcpStream::from(fd)) {
        Ok(stream) => stream,
        Err(e) => {
            worker.log(Level::Error, &format!("cannot resume a connection: {e}"));
            return;
        }
    };
    // Addresses asked again rather than kept by every parked connection:
    // two syscalls for a connection that has waited at least a sweep.
    let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) else {
        return;
    };
    let conn = Rc::new(ConnInfo {
        id,
        peer,
        local,
        tls: false,
        proxied: None,
        background: false,
        listener: listener as u16,
    });
    let mut io = Box::new(ConnIo::new(stream));
    io.buf = buf;
    io.track = track;
    if served == 0 {
        io.head_by = Some(deadline.into_std());
    }
    // `pre_request` ran before the wait this connection parked in.
    if requests(&worker, io, &conn, listener, u64::from(served), false).await == Ended::Parked {
        counted.parked();
        return;
    }
    let conn_location = &worker.servers[worker.listener_servers[listener][0]].locations[0];
    run_conn_hook(&worker, conn_location, Hook::Disconnect, &conn).await;
}

/// How a connection's run of requests ended.
#[derive(PartialEq, Eq)]
enum Ended {
    /// Closed: `disconnect` is next.
    Closed,
    /// Parked: the connection lives on in the idle table, without a task.
    Parked,
}

/// Serve requests on a connection until it closes or parks, starting with
/// `pre_request` when `pre_request` says so (it has run already for a
/// connection that resumes). `served` requests were answered on it before.
async fn requests(
    worker: &Rc<WorkerRt>,
    mut io: Box<ConnIo>,
    conn: &Rc<ConnInfo>,
    listener: usize,
    mut served: u64,
    mut pre_request: bool,
) -> Ended {
    let default_server = worker.listener_servers[listener][0];
    let conn_location = &worker.servers[default_server].locations[0];
    // A parked connection has no task to run a `disconnect` hook when it
    // closes, and no room for a PROXY protocol header: such connections
    // stay live (they are few: a load balancer's, or a script's).
    let parkable = worker.parking.is_some()
        && conn.proxied.is_none()
        && !conn.background
        && conn_location.chain(Hook::Disconnect).is_empty();
    // Most configs have no `pre_request` plugin: then no hook future is
    // made per request to find that out.
    let has_pre_request = !conn_location.chain(Hook::PreRequest).is_empty();
    // One request's state, boxed (see `request_cycle`). The allocation is
    // reused while requests keep coming, which saves a large malloc and
    // free per request, and given back to the worker's spares as soon as
    // the connection has to wait for its next one, so an idle connection
    // never holds it (`reuse_box`).
    let mut cycle = None;
    loop {
        if pre_request
            && has_pre_request
            && !run_conn_hook(worker, conn_location, Hook::PreRequest, conn).await
        {
            return Ended::Closed;
        }
        pre_request = true;
        // Wait for the next request's first bytes (ending at the
        // timeout, at shutdown, or when the worker needs the room).
        if io.buf.is_empty() {
            let Some((limit, kind)) = next_request_wait(worker, default_server, served) else {
                return Ended::Closed;
            };
            let release = || give_back_box(&mut cycle);
            match io
                .wait_for_request(
                    &worker.read_buffers,
                    &worker.idle,
                    limit,
                    kind,
                    parkable,
                    release,
                )
                .await
            {
                Waited::Request => {}
                Waited::Gone => return Ended::Closed,
                Waited::Park(wait) => {
                    return if park(worker, io, conn.id, listener, served, wait) {
                        Ended::Parked
                    } else {
                        Ended::Closed
                    };
                }
            }
        }
        let next = || request_cycle(worker.clone(), io, conn.clone(), listener, served);
        match reuse_box(&mut cycle, next).await {
            Some(back) => io = back,
            None => return Ended::Closed,
        }
        // The read buffer is kept while requests keep coming (the next
        // read reuses its allocation once this request's head is
        // dropped) and released by `ConnIo::wait_for_request` as soon
        // as the connection goes idle.
        served += 1;
    }
}

thread_local! {
    /// Boxes of finished request futures that connections gave back when
    /// they went idle (`give_back_box`), for the next request of any
    /// connection: on a busy worker one connection goes idle as another
    /// wakes, and taking a box here costs far less than a malloc and a
    /// free of a few KiB. Type-erased, since the future's type cannot be
    /// named; there is only ever one.
    static SPARE_BOXES: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The most boxes kept in `SPARE_BOXES`: a box goes back as another is
/// taken, so a few cover any number of connections.
const SPARE_BOXES_KEPT: usize = 16;

type Spares<F> = Vec<Pin<Box<F>>>;

/// The future `next` makes, in the allocation `slot` holds (the
/// finished future of the same kind it replaces), or in a spare one, or
/// in a new one. Made where it is stored (inlined, with `next` called
/// there): a future that has not started holds only its arguments, and
/// moving it would copy all of its few KiB.
#[inline(always)]
fn reuse_box<F: Future + 'static>(
    slot: &mut Option<Pin<Box<F>>>,
    next: impl FnOnce() -> F,
) -> Pin<&mut F> {
    if slot.is_none() {
        *slot = SPARE_BOXES
            .with_borrow_mut(|spares| spares.as_mut()?.downcast_mut::<Spares<F>>()?.pop());
    }
    match slot {
        Some(state) => {
            state.set(next());
            state.as_mut()
        }
        None => slot.insert(Box::pin(next())).as_mut(),
    }
}

/// Give the box `slot` holds (a finished future) to the worker's spares,
/// or free it when there are enough.
fn give_back_box<F: Future + 'static>(slot: &mut Option<Pin<Box<F>>>) {
    let Some(state) = slot.take() else {
        return;
    };
    SPARE_BOXES.with_borrow_mut(|spares| {
        let spares = spares.get_or_insert_with(|| Box::new(Spares::<F>::new()));
        if let Some(spares) = spares.downcast_mut::<Spares<F>>() {
            if spares.len() < SPARE_BOXES_KEPT {
                spares.push(state);
            }
        }
    });
}

/// Park the idle connection `io` in the slot of `wait`: its socket leaves
/// tokio for the worker's parking epoll, and this task ends. False when it
/// could not (the socket is then closed).
fn park(
    worker: &WorkerRt,
    io: Box<ConnIo>,
    id: u64,
    listener: usize,
    served: u64,
    wait: IdleWait<'_>,
) -> bool {
    let Some(parking) = &worker.parking else {
        return false;
    };
    let ConnIo { stream, track, .. } = *io;
    let Ok(fd) = stream.into_std().map(OwnedFd::from) else {
        return false;
    };
    if parking.add(fd.as_raw_fd(), wait.key()).is_err() {
        return false;
    }
    wait.park(Parked {
        fd,
        id,
        served: u32::try_from(served).unwrap_or(u32::MAX),
        listener: listener as u16,
        track,
    });
    true
}

/// The PROXY protocol header a `proxy-protocol` listener's connections
/// start with, read within `timeout` and at most `MAX_PROXY_HEADER` bytes;
/// with the bytes read after it (the start of the first request). Err: why
/// the connection is refused (a missing, malformed, truncated or late
/// header), with the first bytes received, escaped, for the log.
async fn read_proxy_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<(axkit_http::ProxyHeader, BytesMut), String> {
    use tokio::io::AsyncReadExt;
    let mut buf = BytesMut::with_capacity(axkit_http::MAX_PROXY_HEADER);
    let read = async {
        loop {
            match axkit_http::parse_proxy_header(&buf) {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(why) => return Err(why.to_string()),
            }
            // The parser refuses an over-long header before this fills.
            if buf.len() == buf.capacity() {
                return Err("PROXY protocol header too long".to_string());
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => {
                    return Err("connection closed before its PROXY protocol header ended".into())
                }
                Ok(_) => {}
                Err(e) => return Err(format!("reading the PROXY protocol header: {e}")),
            }
        }
    };
    let outcome = match tokio::time::timeout(timeout, read).await {
        Ok(outcome) => outcome,
        Err(_) => Err("no PROXY protocol header within HeaderTimeout".to_string()),
    };
    match outcome {
        Ok((header, n)) => {
            let _ = buf.split_to(n);
            Ok((header, buf))
        }
        Err(why) => {
            let shown = &buf[..buf.len().min(48)];
            Err(format!(
                "{why}; first bytes: \"{}\"",
                escape_log_bytes(shown)
            ))
        }
    }
}

/// How long to wait for the next request on a connection that has served
/// `served` (its header timeout for the first, the keep-alive timeout
/// after), and as what kind of wait; None to close it instead.
fn next_request_wait(worker: &WorkerRt, server: usize, served: u64) -> Option<(Duration, Kind)> {
    let srv = &worker.servers[server];
    if served == 0 {
        // A new connection still gets its first request answered when
        // shutdown begins after it was accepted: its client could not know
        // and cannot safely retry (nginx does the same).
        return Some((srv.header_timeout, Kind::Fresh));
    }
    // Only idle keep-alive connections are closed at once.
    if worker.shutting_down.get() {
        return None;
    }
    Some((srv.keepalive_timeout, Kind::Idle))
}

/// Read one request head and answer it. Returns the connection's I/O state
/// if the connection stays open.
///
/// The rare paths (rejects, 413, internal redirects, draining a body
/// nobody read, closing) are awaited out of line (`out_of_line`): inline,
/// their futures would make this one, allocated for every request,
/// several times bigger, and their code would spread the usual request's
/// over more of the instruction cache.
async fn request_cycle(
    worker: Rc<WorkerRt>,
    mut io: Box<ConnIo>,
    conn: Rc<ConnInfo>,
    listener: usize,
    served: u64,
) -> Option<Box<ConnIo>> {
    // Read the head, with the limits of the listener's default Server:
    // which Server it is for is in the head.
    let default_server = worker.listener_servers[listener][0];
    let srv = &worker.servers[default_server];
    let head = match io.read_head(&srv.limits, srv.header_timeout).await {
        Ok(Some(head)) => head,
        Ok(None) => return None,
        Err(e) => {
            log_bad_request(&worker, &conn, format_args!("{}", e.reason));
            let head = RequestHead::unparsed(&io.buf);
            out_of_line(reject(&worker, io, conn, default_server, e.status, head)).await;
            return None;
        }
    };

    // Pick the Server by Host, then the Location by the normalised path.
    let server_index = worker.pick_server(listener, &head);
    let server = &worker.servers[server_index];
    let request = match Request::new(head, SystemTime::now()) {
        Ok(request) => request,
        Err(head) => {
            log_bad_request(
                &worker,
                &conn,
                format_args!("malformed path {:?}", head.path()),
            );
            out_of_line(reject(&worker, io, conn, server_index, 400, *head)).await;
            return None;
        }
    };
    let location = worker.pick_location(server_index, &request);
    io.track.request(&request.head, request.started);

    // The connection's state for this request: body framing and limits,
    // and whether it stays open after the response.
    let head = &request.head;
    let keep_alive = head.keep_alive()
        && server.keepalive
        && (server.max_keepalive_requests == 0 || served + 1 < server.max_keepalive_requests)
        && !worker.shutting_down.get();
    let too_large = io.start_request(head, &server.server_header, &location, keep_alive);

    // The hooks and the response (or the error path), then any internal
    // redirect the hooks asked for.
    let series = location.series;
    let rt = RequestRt::new(io, worker.clone(), server_index, location);
    let mut ctx = Context::new(request, conn, rt);
    if worker.tracing {
        trace::begin(&mut ctx);
    }
    if too_large {
        ctx.rt.io.body = BodyState::Broken;
        ctx.rt.io.expect_continue = false;
        out_of_line(error_response(&mut ctx, 413)).await;
    } else {
        walk(&mut ctx).await;
    }
    if ctx.rt.redirect.is_some() {
        out_of_line(follow_redirects(&mut ctx)).await;
    }

    // The response is out: `response_sent` (request logs), and the
    // metrics, under the Location the client asked for. A background
    // request has no client to log (nginx leaves its subrequests out of
    // the access log too).
    if !ctx.rt.location.chain(Hook::ResponseSent).is_empty()
        && !ctx.conn.background
        && run_hook(&mut ctx, Hook::ResponseSent).await == Outcome::Done
    {
        ctx.rt.io.close = true;
    }
    let bytes = ctx.rt.io.body_bytes_sent;
    ctx.rt.io.track.done(
        series,
        ctx.response.status,
        ctx.request.started,
        bytes,
        ctx.rt.answered,
    );
    if ctx.rt.trace.is_some() {
        trace::end(&ctx);
    }

    // Keep-alive: drain what is left of the body, or close.
    let mut io = ctx.rt.io;
    if io.body_never_asked_for() {
        io.close = true;
    }
    if io.body_pending() && !io.close {
        out_of_line(io.drain_body()).await;
    }
    if io.close {
        out_of_line(conn_io::close(io)).await;
        return None;
    }
    Some(io)
}

/// Log a request refused before the walk, `why`: out of line and cold, so
/// that the usual request's code does not carry the formatting.
#[cold]
#[inline(never)]
fn log_bad_request(worker: &WorkerRt, conn: &ConnInfo, why: std::fmt::Arguments) {
    worker.log(
        Level::Info,
        &format!("{}: bad request: {why}", conn.client()),
    );
}

/// The hooks in their order, from post_read_request to the response: of
/// the request from its start, or of the same request handed over to
/// this Location (`Context::internal_redirect_same_request`).
async fn walk(ctx: &mut Context) {
    // Each hook's walk only when some plugin has it (most configs have
    // no `post_read_request`).
    if !ctx.rt.location.chain(Hook::PostReadRequest).is_empty() {
        // Only a request that has been in another Location (handed over
        // from it, or moved by `rewrite_uri` now) notes which plugins ran.
        let outcome = if ctx.rt.post_read_in().is_empty() {
            match first_post_read(ctx).await {
                Outcome::Ok | Outcome::Declined if !ctx.rt.post_read_in().is_empty() => {
                    out_of_line(post_read_elsewhere(ctx, false)).await
                }
                outcome => outcome,
            }
        } else {
            out_of_line(post_read_elsewhere(ctx, true)).await
        };
        match outcome {
            Outcome::Ok | Outcome::Declined => {}
            Outcome::Done => return finish(ctx).await,
            other => return fail(ctx, other).await,
        }
    }
    // A body_data hook in the chain: the body is read before
    // uri_translation, as AxKit2 did; once for a request handed over,
    // whose body the hooks of the Location it left have read
    // (`body_lost`), and never for an internal redirect's GET.
    if ctx.rt.io.body_pending()
        && !ctx.rt.location.chain(Hook::BodyData).is_empty()
        && !ctx.rt.io.body_detached
        && ctx.rt.body_read_in().is_none()
    {
        ctx.rt.moved_mut().body_read_in = Some(ctx.rt.location.clone());
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
    // uri_translation through fixup, in their declared order.
    let mut handing_off = false;
    for &hook in &Hook::ALL[Hook::UriTranslation as usize..=Hook::Fixup as usize] {
        let access =
            (Hook::AccessControl as u8..=Hook::Authorization as u8).contains(&(hook as u8));
        if (handing_off && !access) || ctx.rt.location.chain(hook).is_empty() {
            continue;
        }
        match run_hook(ctx, hook).await {
            Outcome::Ok | Outcome::Declined => {}
            // The file this URL names lies in another Location, where the
            // request goes on (`internal_redirect_same_request`): this
            // Location's access phases still decide who may ask for the
            // URL, as nginx's index module redirects only after them.
            Outcome::Done if (hook as u8) < Hook::AccessControl as u8 && hands_off(ctx) => {
                handing_off = true;
            }
            outcome => {
                if handing_off {
                    // Refused, or answered, here: the hand-off is off.
                    ctx.rt.redirect = None;
                }
                return match outcome {
                    Outcome::Done => finish(ctx).await,
                    other => fail(ctx, other).await,
                };
            }
        }
    }
    if handing_off {
        return finish(ctx).await;
    }
    if let Some(answer) = ctx.rt.after_fixup.take() {
        return match answer(ctx) {
            Outcome::Ok | Outcome::Done => finish(ctx).await,
            other => fail(ctx, other).await,
        };
    }
    // The pipeline: Ok from it, or a document left in it, answers.
    if !ctx.rt.location.chain(Hook::XmlResponse).is_empty() {
        match run_hook(ctx, Hook::XmlResponse).await {
            Outcome::Declined => {}
            Outcome::Ok => return finish_document(ctx).await,
            Outcome::Done => return finish(ctx).await,
            other => return fail(ctx, other).await,
        }
    }
    if ctx.document.is_some() {
        return finish_document(ctx).await;
    }
    // The response: the first plugin that does not decline.
    if !ctx.rt.location.chain(Hook::Response).is_empty() {
        match run_hook(ctx, Hook::Response).await {
            Outcome::Declined => {}
            Outcome::Ok | Outcome::Done => return finish(ctx).await,
            other => return fail(ctx, other).await,
        }
    }
    // Every plugin declined to produce a response.
    not_found_reason(ctx);
    error_response(ctx, 404).await
}

/// The `post_read_request` chain of the Location the request starts in.
/// Should a plugin move the request (`Context::rewrite_uri`), every call
/// is noted in `Moved::post_read_calls` with the Location it was made in:
/// those before the move, and the mover's, in the first one; those after
/// it, in the Location moved to. On the walk an internal redirect began
/// (an ErrorDocument's page), a plugin called in an earlier walk of the
/// client request is called `post_read_request_handed_over` with where
/// it took up its lines (`headers` applies those of the page's Location
/// it has not applied, a `RequestHeader unset` there included).
async fn first_post_read(ctx: &mut Context) -> Outcome {
    let unmoved = Cell::new(None);
    let moved = RefCell::new(Vec::new());
    // Empty (and unallocated) but after an internal redirect.
    let earlier = ctx.rt.post_read_calls().to_vec();
    let outcome = run_hook_as(ctx, Hook::PostReadRequest, |ctx, index| {
        if ctx.rt.post_read_in().is_empty() {
            unmoved.set(Some(index));
        } else {
            moved.borrow_mut().push((index, ctx.rt.location.clone()));
        }
        match earlier.iter().any(|(called, _)| *called == index) {
            false => Call::Hook,
            true => Call::HandedOver(HandOff {
                left: None,
                calls: &earlier,
                plugin: index,
            }),
        }
    })
    .await;
    ctx.rt.post_read_upto = unmoved.get();
    if let (Some(first), Some(last)) = (ctx.rt.post_read_in().first().cloned(), unmoved.get()) {
        ctx.rt.note_first_calls(&first, Some(last));
        let calls = &mut ctx.rt.moved_mut().post_read_calls;
        calls.extend(moved.into_inner());
    }
    outcome
}

/// Whether the request is to go on under another URI in another
/// Location (`Context::internal_redirect_same_request`).
fn hands_off(ctx: &Context) -> bool {
    ctx.rt.redirect.as_ref().is_some_and(|r| r.same_request)
}

/// Why the core answers 404: what the request was mapped to, if anything.
fn not_found_reason(ctx: &Context) {
    match (&ctx.filename, &ctx.metadata) {
        (None, _) => ctx.log_reason(
            404,
            format_args!("no plugin mapped it to a file or answered it"),
        ),
        (Some(file), None) => ctx.log_reason(404, format_args!("{file:?} does not exist")),
        (Some(file), Some(_)) if !ctx.path_info.is_empty() => ctx.log_reason(
            404,
            format_args!(
                "{file:?} followed by path info {:?}, which no plugin answered",
                ctx.path_info
            ),
        ),
        (Some(file), Some(_)) => {
            ctx.log_reason(404, format_args!("no plugin answered for {file:?}"))
        }
    }
}

/// The `xmlresponse` chain answered: the document it left, as text (a
/// tree serialised), is the body, unless a processor wrote one.
async fn finish_document(ctx: &mut Context) {
    let text = match ctx.document.take() {
        Some(_) if !ctx.response.body.is_empty() || ctx.rt.io.head_sent => None,
        Some(Document::Text(text)) => Some(text),
        Some(Document::Tree(tree)) => match tree.to_text() {
            Ok(text) => Some(Bytes::from(text)),
            Err(why) => {
                let msg = format!(
                    "{}: xmlresponse: the document left at the end of the chain cannot be \
                     serialised: {why}",
                    ctx.request.request_line()
                );
                ctx.log(Level::Error, &msg);
                return error_response(ctx, 500).await;
            }
        },
        None => None,
    };
    if let Some(text) = text {
        if ctx.response.headers.get("Content-Type").is_none() {
            ctx.response
                .headers
                .set("Content-Type", "application/xml; charset=utf-8");
        }
        ctx.response.body = Body::Bytes(text);
    }
    finish(ctx).await
}

/// Send whatever the plugins produced.
async fn finish(ctx: &mut Context) {
    if ctx.rt.redirect.is_some() && !ctx.rt.io.head_sent {
        // An internal redirect answers instead (see `follow_redirects`).
        return;
    }
    if ctx.rt.io.upgraded {
        // The plugin's tunnel has ended: the connection just closes.
        return;
    }
    response::decide_close(ctx);
    let result = if ctx.rt.io.head_sent {
        response::finish_stream(ctx).await
    } else {
        response::send(ctx).await
    };
    if let Err(e) = result {
        send_failed(ctx, &e);
    }
}

/// The response could not be sent: the connection closes, and the
/// reason is logged unless the client simply went away. Cold, so that
/// `finish` is laid out without it.
#[cold]
#[inline(never)]
fn send_failed(ctx: &mut Context, e: &io::Error) {
    ctx.rt.io.close = true;
    if e.kind() != io::ErrorKind::BrokenPipe && e.kind() != io::ErrorKind::ConnectionReset {
        let msg = format!(
            "{}: sending response to {} failed: {e}",
            ctx.request.request_line(),
            ctx.client().addr_text()
        );
        ctx.log(Level::Info, &msg);
    }
}

/// A hook stopped the walk with a Status or an error.
async fn fail(ctx: &mut Context, outcome: Outcome) {
    // A plugin that answers with a status chose it (and logs its own
    // reason: a database down, say); an error or a panic is the core's to
    // report.
    let level = match outcome {
        Outcome::Status(_) => Level::Info,
        _ => Level::Error,
    };
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
            ctx.log_request(
                level,
                format_args!("plugin {}, hook {}: {}", f.plugin, f.hook, f.message),
            );
        }
    }
    error_response(ctx, status).await
}

/// The error path: let `error` hooks produce the page, else the built-in
/// one. A status below 400 a hook returned is no error but its answer
/// ([`hook_answer`]), outside an error page's walk.
async fn error_response(ctx: &mut Context, status: u16) {
    if ctx.rt.io.head_sent {
        // Too late for an error page: the client sees a truncated response.
        ctx.rt.io.close = true;
        return;
    }
    if matches!(ctx.rt.io.body, BodyState::Broken) {
        ctx.rt.io.close = true;
    }
    ctx.response.status = status;
    ctx.response.body = Body::Empty;
    // In the walk of an error's page (an ErrorDocument's), any status is
    // the page failing: the `error` hooks answer for the original error.
    if status < 400 && ctx.rt.status_override.is_none() {
        hook_answer(ctx, status);
        return finish(ctx).await;
    }
    ctx.response.headers.retain_named(error_fields(status));
    let mut handled = false;
    if !ctx.rt.location.chain(Hook::Error).is_empty() {
        match run_hook(ctx, Hook::Error).await {
            Outcome::Ok | Outcome::Done => handled = true,
            _ => ctx.response.status = status,
        }
    }
    if ctx.rt.io.head_sent || ctx.rt.redirect.is_some() {
        return finish(ctx).await;
    }
    if !handled {
        let failure = ctx.failure.clone();
        // Only server errors carry the trace: a 404 or 403 is not a bug.
        let page = crate::plugin::default_error_page(
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

/// A 2xx or 3xx a hook ended the request with (a 204 to a preflight, a
/// 304 with its validators, a 301 to the directory) is its answer, with
/// every field it set, its `Content-Type` included; no `error` hook runs
/// for it. As nginx answers a module's status (and OpenResty's
/// `ngx.exit`): the body is empty (`Content-Length: 0`, none at all for a
/// 204 or 304), except that a redirect (301, 302, 303, 307, 308) whose
/// hook set no `Content-Type` gets the built-in page, for a client that
/// does not follow it. That page goes out without a `Content-Encoding` or
/// `Content-Range` the hook set, which would describe it falsely.
fn hook_answer(ctx: &mut Context, status: u16) {
    let redirect = matches!(status, 301 | 302 | 303 | 307 | 308);
    if !redirect || ctx.response.headers.get("Content-Type").is_some() {
        return;
    }
    ctx.response.headers.remove("Content-Encoding");
    ctx.response.headers.remove("Content-Range");
    let page = crate::plugin::default_error_page(status, None);
    ctx.response
        .headers
        .set("Content-Type", "text/html; charset=utf-8");
    ctx.response.body = Body::Bytes(Bytes::from(page));
}

/// The fields the hooks set that an error response (4xx, 5xx) keeps,
/// whether the core's page answers or an ErrorDocument's (Apache's
/// `err_headers_out`): a challenge, the methods allowed, the size a 416
/// could not satisfy, when to come back, the protocols a 426 requires and
/// the codings a 415 accepts (each a MUST or SHOULD of RFC 9110), and
/// cookies the request set.
/// The rest described a response that did not happen (an upstream's, a
/// handler's that failed), and would now describe the error page: its
/// validators and caching fields would have a cache keep the page for the
/// resource, its `Content-Encoding` would garble it. `Set-Cookie` comes
/// last, dropped at 5xx, where the server failed whatever the request was
/// doing (an upstream's cookie on a 502). A session's cookie is set by
/// `before_head` work, which runs after, and is kept whatever the status.
const ERROR_FIELDS: [&str; 8] = [
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Allow",
    "Content-Range",
    "Retry-After",
    "Upgrade",
    "Accept-Encoding",
    "Set-Cookie",
];

/// Which of [`ERROR_FIELDS`] an error response with `status` keeps.
fn error_fields(status: u16) -> &'static [&'static str] {
    if status >= 500 {
        &ERROR_FIELDS[..ERROR_FIELDS.len() - 1]
    } else {
        &ERROR_FIELDS
    }
}

/// `post_read_request` for a request that has been in another Location
/// (`RequestRt::post_read_in` holds those whose chains ran): handed over
/// to this one (`handed_over`: its chain has not run), or moved from the
/// one its chain ran in by `Context::rewrite_uri`. Each Location it is
/// in after a chain runs the plugins of its own chain that have not run
/// `post_read_request` for the request, as a request for its path would
/// have, until one leaves it where it is. On a hand-off, those that have
/// run are called `post_read_request_handed_over` with the Location left
/// (`rewrite` takes up the new Location's lines); after a rewrite, only
/// those called before the plugin that rewrote (which took them up, as
/// did those called after it, in the Location rewritten to).
async fn post_read_elsewhere(ctx: &mut Context, mut handed_over: bool) -> Outcome {
    let mut outcome = Outcome::Declined;
    loop {
        let here = ctx.rt.location.clone();
        let ran = ctx.rt.post_read_in().to_vec();
        let Some(left) = ran.last() else {
            return outcome;
        };
        if !handed_over && Rc::ptr_eq(left, &here) {
            return outcome;
        }
        let calls = ctx.rt.post_read_calls().to_vec();
        // Moved by a rewrite: the plugin that moved the request is the
        // last one called in the Location it left.
        let mover = match handed_over {
            true => None,
            false => calls.iter().rev().find(|(_, at)| Rc::ptr_eq(at, left)),
        }
        .map(|(index, _)| *index);
        let made = RefCell::new(Vec::new());
        let how = |ctx: &Context, index| {
            let has_run = ran.iter().any(|location| {
                let chain = location.chain(Hook::PostReadRequest);
                chain.iter().any(|entry| entry.2 == index)
            });
            // After a rewrite the plugin that moved the request took up
            // this Location's lines, as did one called after it; one
            // called before it took up only the Location left's, and is
            // handed this one's as on a hand-off (a `RequestHeader unset`
            // here applies whether `headers` is listed before `rewrite`
            // or after).
            let took_up_here = mover == Some(index)
                || calls
                    .iter()
                    .any(|(i, at)| *i == index && Rc::ptr_eq(at, &here));
            let call = match (has_run, handed_over || !took_up_here) {
                // Called in a walk before an internal redirect only: as
                // in `first_post_read`.
                (false, _) if calls.iter().any(|(called, _)| *called == index) => {
                    Call::HandedOver(HandOff {
                        left: None,
                        calls: &calls,
                        plugin: index,
                    })
                }
                (false, _) => Call::Hook,
                (true, false) => return Call::Skip,
                (true, true) => Call::HandedOver(HandOff {
                    left: Some(&left.config),
                    calls: &calls,
                    plugin: index,
                }),
            };
            made.borrow_mut().push((index, ctx.rt.location.clone()));
            call
        };
        outcome = run_hook_as(ctx, Hook::PostReadRequest, how).await;
        ctx.rt.moved_mut().post_read_calls.extend(made.into_inner());
        if !matches!(outcome, Outcome::Ok | Outcome::Declined) {
            return outcome;
        }
        ctx.rt.note_post_read_in(here);
        handed_over = false;
    }
}

/// Internal redirects chained by hooks: each a fresh GET walk of the new
/// URI (`ctx.internal_redirect`), or the same request walked again under
/// another URI (`ctx.internal_redirect_same_request`), at most
/// `MAX_REDIRECTS` deep.
async fn follow_redirects(ctx: &mut Context) {
    let mut hops = 0;
    while let Some(redirect) = ctx.rt.redirect.take() {
        if ctx.rt.io.head_sent {
            break;
        }
        hops += 1;
        let (target, status, same) = (&redirect.target, redirect.status, redirect.same_request);
        let next = match redirected_request(&ctx.request, target, same) {
            Some(request) if hops <= MAX_REDIRECTS => {
                let location = ctx.rt.worker.pick_location(ctx.rt.server, &request);
                match same.then(|| body_lost(ctx, &location)).flatten() {
                    Some(why) => Err(why),
                    None => Ok((request, location)),
                }
            }
            Some(_) => Err("more than 10 internal redirects".to_string()),
            None => Err("internal redirect to an invalid URI".to_string()),
        };
        let (request, location) = match next {
            Ok(next) => next,
            Err(why) => {
                let msg = format!("{}: {why}: {target:?}", ctx.request.request_line());
                ctx.log(Level::Error, &msg);
                ctx.rt.redirect = None;
                ctx.rt.status_override = None;
                ctx.rt.error_headers = None;
                ctx.response.headers.clear();
                // A loop can only end here: no more hops from error hooks.
                hops = MAX_REDIRECTS;
                error_response(ctx, 500).await;
                continue;
            }
        };
        if !same {
            let from_status = status.unwrap_or(ctx.response.status);
            ctx.notes
                .insert("redirect.uri".into(), ctx.request.uri().to_string());
            ctx.notes
                .insert("redirect.status".into(), from_status.to_string());
        }
        if let Some(status) = status {
            let mut kept = std::mem::take(&mut ctx.response.headers);
            kept.retain_named(error_fields(status));
            ctx.rt.error_headers = Some(kept);
        }
        if same {
            // The Location handed over from: its `post_read_request`
            // chain ran for the request (`post_read_elsewhere`).
            let left = std::mem::replace(&mut ctx.rt.location, location);
            if ctx.rt.post_read_in().is_empty() {
                ctx.rt.note_first_calls(&left, None);
            }
            ctx.rt.note_post_read_in(left);
        } else {
            // A fresh walk, but the same client request: each plugin
            // takes up the lines it has not yet (`first_post_read`).
            let calls = ctx.rt.calls_so_far();
            ctx.rt.location = location;
            if !calls.is_empty() {
                ctx.rt.moved_mut().post_read_calls = calls;
            }
        }
        ctx.rt.answered = 0;
        let replaced = std::mem::replace(&mut ctx.request, request);
        ctx.rt.original.get_or_insert(Box::new(replaced));
        ctx.reset_for_redirect(same);
        if ctx.rt.worker.tracing {
            trace::begin(ctx);
        }
        if same {
            // The same request: its body, read or not, is still its own,
            // and an error page's status still holds. It goes on from the
            // `post_read_request` hooks of its new Location that have not
            // run for it.
            walk(ctx).await;
            continue;
        }
        ctx.rt.status_override = status;
        // The redirected walk reads no body (and so never says 100
        // Continue); the original body is still there to drain, or the
        // connection closes if it was never asked for.
        ctx.rt.io.body_detached = true;
        walk(ctx).await;
    }
}

/// Why handing the request over to the Location `to` would lose its
/// body, if it would: `body_data` hooks read it, and `to` would have left
/// it to its handler (it runs no `body_data` hook) or to hooks of its own
/// that have not seen it. Refused rather than lost: keeping every body
/// such hooks read, in case the request is handed over after them, would
/// hold in memory what they are there to stream.
fn body_lost(ctx: &Context, to: &LocationRt) -> Option<String> {
    let read_in = ctx.rt.body_read_in()?;
    let seen = read_in.chain(Hook::BodyData);
    let wanted = to.chain(Hook::BodyData);
    if !wanted.is_empty() && wanted.iter().all(|w| seen.iter().any(|s| s.2 == w.2)) {
        return None;
    }
    Some(format!(
        "not handed over to <Location {}>, which does not run the body_data hooks of \
         <Location {}> that read the request body",
        to.prefix, read_in.prefix
    ))
}

/// The request an internal redirect to `target` makes: the same request
/// under another URI (`same`), or a GET of `target` with the original
/// headers (minus body framing); parsed and normalised like a request
/// from the wire.
fn redirected_request(old: &Request, target: &str, same: bool) -> Option<Request> {
    if !target.starts_with('/') {
        return None;
    }
    if same {
        return old.rebuilt(old.method(), target, old.headers());
    }
    let headers = old.headers().filter(|(name, _)| {
        !name.eq_ignore_ascii_case("content-length")
            && !name.eq_ignore_ascii_case("transfer-encoding")
            && !name.eq_ignore_ascii_case("expect")
    });
    old.rebuilt("GET", target, headers)
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
    let body = crate::plugin::default_error_page(status, None);
    let mut headers = Headers::default();
    headers.set("Content-Type", "text/html; charset=utf-8");
    let encoded = io.encode_head(status, &headers, OutFraming::Length(body.len() as u64));
    io.head_sent = true;
    io.body_bytes_sent = body.len() as u64;
    let _ = io
        .write_all(&mut [IoSlice::new(&encoded), IoSlice::new(body.as_bytes())])
        .await;
    let location = worker.servers[server].locations[0].clone();
    io.track.request(&head, started);
    let bytes = io.body_bytes_sent;
    io.track.done(location.series, status, started, bytes, 0);
    if !location.chain(Hook::ResponseSent).is_empty() {
        let request = Request::unchecked(head, started);
        let rt = RequestRt::new(io, worker.clone(), server, location);
        let mut ctx = Context::new(request, conn, rt);
        ctx.response.status = status;
        ctx.response.headers = headers;
        run_hook(&mut ctx, Hook::ResponseSent).await;
        io = ctx.rt.io;
    }
    conn_io::lingering_close(io).await;
}
