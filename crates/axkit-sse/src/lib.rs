//! Server-sent events and long polls for AxKit plugins: the response side
//! of the broadcast in `axkit-shared` (a message from any worker wakes the
//! streams and polls of every worker). The Lua calls (`r:sse`,
//! `r:long_poll`, `shared.subscribe`) are built on this crate;
//! docs/sse.md documents both, with an example per call.
//!
//! - [`EventStream`]: a `text/event-stream` response (no buffering,
//!   `Cache-Control: no-cache`), written with `ctx.write` (so a slow
//!   client slows its own stream only), events framed by [`Event`], a
//!   comment every [`Options::heartbeat`] so that proxies keep an idle
//!   stream open, and [`EventStream::wait`], which waits for the next
//!   thing to send and tells the handler when to stop: the client went
//!   away, or the worker began to drain (a reload or a shutdown is then not
//!   held up by idle streams; the browser reconnects to a new worker), or
//!   the worker, full, needs the connection for a new client.
//! - [`long_poll`]: wait for one message with a timeout, answering 200
//!   with it or 204 (on timeout, drain, a client gone, or a full worker).
//! - [`wait_for`]: the same waiting, for any future, without a response.
//!
//! Streams and long polls are marked reclaimable
//! (`Context::set_reclaimable`): their client resumes them by itself, so
//! a worker at `MaxConnections` with no idle connection to close ends the
//! oldest of them to serve a new client, instead of serving nobody new
//! for as long as they last.
//! - [`last_event_id`]: where a reconnecting client left off.
//!
//! **Costs.** A waiting stream is a suspended task: no timer of its own
//! and no polling. The heartbeat is one timer per worker and interval
//! (`heartbeat.rs`) that wakes every stream of that interval at once;
//! the client's leaving is seen through its socket's readiness (the
//! reactor's, no system call while it waits); a drain wakes them all
//! through the worker's one notification.
//!
//! No directives: the options are the plugin's (or script's) to choose.
//!
//! A live feed: subscribe first, then read the current state, then wait,
//! so that nothing sent in between is lost (the subscription queues it).
//!
//! ```no_run
//! use axkit::{hook, Context, HookFuture, Outcome, Plugin};
//! use axkit_shared::Zone;
//! use axkit_sse::{Event, EventStream, Options};
//!
//! struct Feed;
//!
//! #[axkit::plugin]
//! impl Plugin for Feed {
//!     fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
//!         hook(async move {
//!             let Ok(mut news) = axkit_shared::subscribe("news", 64) else {
//!                 return Outcome::Status(503);
//!             };
//!             let latest = Zone::default_zone()
//!                 .and_then(|z| z.get("news:latest"))
//!                 .ok()
//!                 .flatten();
//!             let Ok(mut stream) = EventStream::start(ctx, Options::default()).await else {
//!                 return Outcome::Done;
//!             };
//!             if let Some(latest) = latest.as_ref().and_then(|e| e.value.as_bytes()) {
//!                 let _ = stream.send(ctx, &Event::new(latest).event("latest")).await;
//!             }
//!             // Until the client leaves or the worker drains.
//!             while let Ok(message) = stream.next(ctx, &mut news).await {
//!                 if stream.send(ctx, &Event::new(&message)).await.is_err() {
//!                     break;
//!                 }
//!             }
//!             Outcome::Done
//!         })
//!     }
//! }
//! ```
//!
//! A long poll, answering 200 with the next message or 204 after 25 s:
//!
//! ```no_run
//! # use axkit::{hook, Context, HookFuture, Outcome, Plugin};
//! # use std::time::Duration;
//! # struct Poll;
//! # #[axkit::plugin]
//! # impl Plugin for Poll {
//! fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
//!     hook(async move {
//!         let Ok(wait) = axkit_shared::wait("news") else { return Outcome::Status(503) };
//!         let _ = axkit_sse::long_poll(ctx, wait, Duration::from_secs(25)).await;
//!         ctx.response.headers.set("Content-Type", "text/plain");
//!         Outcome::Ok
//!     })
//! }
//! # }
//! ```

mod event;
mod heartbeat;

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use axkit::plugin::{Body, Reclaim, Request, Worker};
use axkit::Context;
use axkit_shared::Subscription;
use bytes::Bytes;

pub use event::Event;

/// The heartbeat of [`Options::default`].
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);

/// How an [`EventStream`] runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// A comment (`:`) this often while the stream waits (`None`: never),
    /// so that proxies and load balancers see traffic on an idle stream,
    /// and a client gone without a word is noticed when the write fails.
    /// Every stream of a worker with the same interval beats at once, from
    /// one timer: the first comment comes within one interval.
    pub heartbeat: Option<Duration>,
    /// Sent first, as `retry:`: how long a client waits before it
    /// reconnects (the browser's default is a few seconds).
    pub retry: Option<Duration>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            heartbeat: Some(DEFAULT_HEARTBEAT),
            retry: None,
        }
    }
}

/// Why a wait ended without what it waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client closed the connection (or a write to it failed, or it
    /// asked for the head only): nothing more can reach it.
    Closed,
    /// The worker is draining (SIGHUP, SIGTERM), or it is full and asked
    /// this reclaimable request to end to make room for a new client
    /// (`Context::set_reclaimable`): end the response, the client
    /// reconnects (to a worker that stays, or with room).
    Stopping,
    /// The timeout passed.
    Timeout,
}

impl fmt::Display for Ended {
    /// The words the Lua calls return: `closed`, `stopping`, `timeout`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ended::Closed => "closed",
            Ended::Stopping => "stopping",
            Ended::Timeout => "timeout",
        })
    }
}

/// The `Last-Event-ID` a reconnecting client sent: the id of the last
/// event it got, so that the stream can resume after it.
pub fn last_event_id(request: &Request) -> Option<&str> {
    request.header("Last-Event-ID")
}

/// A `text/event-stream` response in progress. The handler keeps it and
/// the `Context` it started on, sends with [`send`](Self::send), and
/// waits with [`wait`](Self::wait) or [`next`](Self::next) until they say
/// the stream is over; it then returns (`Outcome::Done`), which ends the
/// response.
pub struct EventStream {
    worker: Worker,
    reclaim: Reclaim,
    heartbeat: Option<Rc<heartbeat::Clock>>,
    closed: bool,
}

impl EventStream {
    /// Begin the stream: status 200, `Content-Type: text/event-stream`,
    /// `Cache-Control: no-cache`, `X-Accel-Buffering: no` (nginx and
    /// others then pass events on as they come), the other headers the
    /// handler set, and a first frame (`retry:` if set, else a comment),
    /// which sends the head at once: the browser's `open` event fires
    /// without waiting for the first event. Fails if the response has
    /// started or the client is gone.
    pub async fn start(ctx: &mut Context, options: Options) -> io::Result<EventStream> {
        if ctx.head_sent() {
            return Err(io::Error::other(
                "an event stream cannot start: the response has started",
            ));
        }
        let r = &mut ctx.response;
        r.status = 200;
        r.body = Body::Empty;
        r.headers.remove("Content-Length");
        r.headers.set("Content-Type", "text/event-stream");
        r.headers.set("Cache-Control", "no-cache");
        r.headers.set("X-Accel-Buffering", "no");
        ctx.set_waiting();
        let reclaim = ctx.set_reclaimable();
        let first = match options.retry {
            Some(retry) => format!("retry: {}\n\n", retry.as_millis()).into_bytes(),
            None => event::comment(b""),
        };
        let mut stream = EventStream {
            worker: ctx.worker(),
            reclaim,
            heartbeat: options
                .heartbeat
                .filter(|d| !d.is_zero())
                .map(heartbeat::clock),
            closed: ctx.request.is_head(),
        };
        stream.write(ctx, first).await?;
        Ok(stream)
    }

    /// Send an event. An `InvalidInput` error for a field the event
    /// cannot carry (see [`Event`]); any other error means the client is
    /// gone.
    pub async fn send(&mut self, ctx: &mut Context, event: &Event<'_>) -> io::Result<()> {
        let mut out = Vec::new();
        event.encode(&mut out)?;
        self.write(ctx, out).await
    }

    /// Send a comment (`: text`), which the browser ignores.
    pub async fn comment(&mut self, ctx: &mut Context, text: impl AsRef<[u8]>) -> io::Result<()> {
        self.write(ctx, event::comment(text.as_ref())).await
    }

    async fn write(&mut self, ctx: &mut Context, out: Vec<u8>) -> io::Result<()> {
        let written = ctx.write(out).await;
        if written.is_err() {
            self.closed = true;
        }
        written
    }

    /// Wait for `until` (the next message to send, say), at most
    /// `timeout`, writing heartbeats meanwhile. `Err` when the stream
    /// should end instead: the client is gone ([`Ended::Closed`]), the
    /// worker is draining or needs the connection ([`Ended::Stopping`]),
    /// or the timeout passed.
    pub async fn wait<F: Future>(
        &mut self,
        ctx: &mut Context,
        until: F,
        timeout: Option<Duration>,
    ) -> Result<F::Output, Ended> {
        let mut until = pin!(until);
        let deadline = deadline(timeout);
        loop {
            if self.closed {
                return Err(Ended::Closed);
            }
            let clock = self.heartbeat.as_deref();
            match watch(ctx, &self.worker, until.as_mut(), deadline, clock).await {
                Watched::Done(out) => return Ok(out),
                Watched::Ended(why) => {
                    self.closed |= why == Ended::Closed;
                    return Err(why);
                }
                Watched::Beat => {
                    let _ = self.write(ctx, event::comment(b"")).await;
                }
            }
        }
    }

    /// The next message of `subscription`, as [`wait`](Self::wait) waits
    /// for it, without a timeout.
    pub async fn next(
        &mut self,
        ctx: &mut Context,
        subscription: &mut Subscription,
    ) -> Result<Bytes, Ended> {
        self.wait(ctx, subscription.recv(), None).await
    }

    /// Whether the stream is over, and why: the client is known to be
    /// gone ([`Ended::Closed`]), or the worker is draining or asked the
    /// stream to end ([`Ended::Stopping`]). A loop that sends without
    /// waiting checks it.
    pub fn ended(&self) -> Option<Ended> {
        if self.closed {
            Some(Ended::Closed)
        } else if self.worker.is_stopping() || self.reclaim.is_asked() {
            Some(Ended::Stopping)
        } else {
            None
        }
    }
}

/// What one round of waiting gave.
enum Watched<T> {
    Done(T),
    Ended(Ended),
    Beat,
}

async fn watch<F: Future>(
    ctx: &Context,
    worker: &Worker,
    until: std::pin::Pin<&mut F>,
    deadline: Option<tokio::time::Instant>,
    clock: Option<&heartbeat::Clock>,
) -> Watched<F::Output> {
    let reclaim = ctx.reclaim();
    if worker.is_stopping() || reclaim.is_some_and(Reclaim::is_asked) {
        return Watched::Ended(Ended::Stopping);
    }
    let reclaimed = async {
        match reclaim {
            Some(reclaim) => reclaim.asked().await,
            None => std::future::pending().await,
        }
    };
    let timer = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let beat = async {
        match clock {
            Some(clock) => clock.tick().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        out = until => Watched::Done(out),
        _ = ctx.client_closed() => Watched::Ended(Ended::Closed),
        _ = worker.stopping() => Watched::Ended(Ended::Stopping),
        _ = reclaimed => Watched::Ended(Ended::Stopping),
        _ = timer => Watched::Ended(Ended::Timeout),
        _ = beat => Watched::Beat,
    }
}

/// When a wait of at most `timeout` ends: none for a span too long for
/// the clock to add (a script's `1e19` seconds), which no server outlives.
fn deadline(timeout: Option<Duration>) -> Option<tokio::time::Instant> {
    timeout.and_then(|t| tokio::time::Instant::now().checked_add(t))
}

/// Wait for `until`, at most `timeout`, while the client is there and the
/// worker is not draining: [`EventStream::wait`] for a handler that has
/// no stream (it answers once it has what it waited for). A request
/// marked reclaimable (`Context::set_reclaimable`) also stops waiting
/// when the worker asks it to end ([`Ended::Stopping`]).
pub async fn wait_for<F: Future>(
    ctx: &Context,
    until: F,
    timeout: Option<Duration>,
) -> Result<F::Output, Ended> {
    let deadline = deadline(timeout);
    match watch(ctx, &ctx.worker(), pin!(until), deadline, None).await {
        Watched::Done(out) => Ok(out),
        Watched::Ended(why) => Err(why),
        Watched::Beat => unreachable!("no heartbeat without a clock"),
    }
}

/// A long poll: wait for `message` (an `axkit_shared::wait`, or a
/// subscription's `recv()`) at most `timeout`, and make the response: 200
/// with the message as the body, or 204 when the wait ended without one
/// (timeout, drain, client gone, or the worker full and needing the
/// connection: the client asks again; the request is marked
/// reclaimable, and its connection then closes). Either has
/// `Cache-Control: no-cache`; the handler sets the rest (`Content-Type`)
/// and returns `Outcome::Ok`.
pub async fn long_poll<F: Future<Output = Bytes>>(
    ctx: &mut Context,
    message: F,
    timeout: Duration,
) -> Result<Bytes, Ended> {
    ctx.set_waiting();
    ctx.set_reclaimable();
    let got = wait_for(ctx, message, Some(timeout)).await;
    let r = &mut ctx.response;
    r.headers.set("Cache-Control", "no-cache");
    match &got {
        Ok(message) => {
            r.status = 200;
            r.body = Body::Bytes(message.clone());
        }
        Err(_) => {
            r.status = 204;
            r.body = Body::Empty;
        }
    }
    got
}
