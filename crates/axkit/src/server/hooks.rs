//! Running one hook over a chain of plugins: in the hook's mode (every
//! plugin while they decline or say Ok, or until the first that does not
//! decline), with panics caught so that they cost one request and never
//! the worker, and the plugin that stopped the walk noted in
//! `ctx.failure` for the error path, and for a traced request a line per
//! call (`trace.rs`). Which hooks run when is the walk's business
//! (`walk.rs`); this file only runs them.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Instant;

use crate::plugin::{
    escape_log, BodyChunk, ConnInfo, Context, Failure, HandOff, Hook, HookFuture, Level, LogRecord,
    Outcome, Plugin,
};
use crate::server::runtime::{Entry, LocationRt, WorkerRt};
use crate::server::trace;

/// How a hook's plugins are walked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every plugin while they return Declined or Ok; anything else stops.
    AllWhileOk,
    /// Until the first plugin that does not decline.
    FirstNotDeclined,
}

fn mode(hook: Hook) -> Mode {
    match hook {
        Hook::UriTranslation
        | Hook::MimeMap
        | Hook::Authentication
        | Hook::Response
        | Hook::Error => Mode::FirstNotDeclined,
        _ => Mode::AllWhileOk,
    }
}

fn call<'a>(plugin: &'a dyn Plugin, hook: Hook, ctx: &'a mut Context) -> HookFuture<'a> {
    match hook {
        Hook::PostReadRequest => plugin.post_read_request(ctx),
        Hook::UriTranslation => plugin.uri_translation(ctx),
        Hook::MimeMap => plugin.mime_map(ctx),
        Hook::AccessControl => plugin.access_control(ctx),
        Hook::Authentication => plugin.authentication(ctx),
        Hook::Authorization => plugin.authorization(ctx),
        Hook::Fixup => plugin.fixup(ctx),
        Hook::XmlResponse => plugin.xmlresponse(ctx),
        Hook::Response => plugin.response(ctx),
        Hook::BeforeHead => plugin.before_head(ctx),
        Hook::ResponseSent => plugin.response_sent(ctx),
        Hook::Error => plugin.error(ctx),
        // Hooks with other arguments have their own runners.
        Hook::Logging
        | Hook::Connect
        | Hook::PreRequest
        | Hook::BodyData
        | Hook::WriteBodyData
        | Hook::Disconnect => Outcome::Declined.into(),
    }
}

/// Polls a future with a panic inside it turned into `Err(message)`, so
/// that it costs the one request and never the worker: a hook's, or the
/// work a plugin left for the head (`Context::run_before_head`).
pub(crate) struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => Poll::Ready(Err(panic_message(&panic))),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Start work, catching a panic in its synchronous part too.
pub(crate) fn catching<F: Future + Unpin>(
    start: impl FnOnce() -> F,
) -> Result<CatchUnwind<F>, String> {
    catch_unwind(AssertUnwindSafe(start))
        .map(CatchUnwind)
        .map_err(|panic| panic_message(&panic))
}

/// Start a hook under [`catching`]: a panic as it starts is a hook that
/// finished with the panic as its outcome.
fn guarded<'a>(start: impl FnOnce() -> HookFuture<'a>) -> CatchUnwind<HookFuture<'a>> {
    catching(start).unwrap_or_else(|message| CatchUnwind(panicked(Err(message)).into()))
}

/// A hook's outcome from its guarded run: a panic's message as an error.
fn panicked(run: Result<Outcome, String>) -> Outcome {
    match run {
        Ok(outcome) => outcome,
        Err(message) => Outcome::Error(format!("panicked: {message}")),
    }
}

/// Record why a request is leaving the normal path.
#[inline(always)]
fn note_failure(ctx: &mut Context, plugin: &str, hook: Hook, outcome: &Outcome) {
    if matches!(outcome, Outcome::Ok | Outcome::Declined | Outcome::Done) {
        return;
    }
    note_failure_of(ctx, plugin, hook, outcome);
}

/// [`note_failure`] for an outcome that leaves the normal path: out of
/// line, so that every other call costs one test.
#[inline(never)]
fn note_failure_of(ctx: &mut Context, plugin: &str, hook: Hook, outcome: &Outcome) {
    let message = match outcome {
        Outcome::Error(m) => m.clone(),
        Outcome::Status(s) => format!("returned status {s}"),
        _ => return,
    };
    ctx.failure = Some(Failure {
        plugin: plugin.to_string(),
        hook: hook.name(),
        message,
    });
}

/// When `TRACED`, the time now, to say how long a plugin's call took
/// (see `trace.rs`). The body runners below are generic over `TRACED` so
/// that a request that is not traced pays one test per chunk, not per
/// plugin.
fn started<const TRACED: bool>() -> Option<Instant> {
    TRACED.then(Instant::now)
}

/// When `TRACED`, the trace line of one plugin's call.
fn traced<const TRACED: bool>(
    ctx: &Context,
    hook: Hook,
    name: &str,
    outcome: &Outcome,
    start: Option<Instant>,
) {
    if let (true, Some(start)) = (TRACED, start) {
        trace::call(ctx, hook, name, outcome, start.elapsed());
    }
}

/// Run one request hook over the chain of the request's Location. One
/// future for traced and untraced requests alike, with a test per plugin
/// called: a walk's future nested inside this one (one per kind) cost
/// more, on every hook of every request, than the test.
pub(crate) fn run_hook(ctx: &mut Context, hook: Hook) -> impl Future<Output = Outcome> + '_ {
    // The closure is inlined away: the usual walk pays nothing for it.
    run_hook_as(ctx, hook, |_, _| Call::Hook)
}

/// How [`run_hook_as`] treats a plugin of the chain.
pub(crate) enum Call<'a> {
    /// Its method for the hook.
    Hook,
    /// Not at all: it ran the hook for the request in a Location the
    /// request has left.
    Skip,
    /// `post_read_request` ran for the request, which has been handed
    /// over: `Plugin::post_read_request_handed_over` in its place.
    HandedOver(HandOff<'a>),
}

/// [`run_hook`] with each plugin treated as `how` says, by its index in
/// `Config::plugins`, as the request is just before the call.
pub(crate) async fn run_hook_as<'a>(
    ctx: &mut Context,
    hook: Hook,
    how: impl Fn(&Context, u16) -> Call<'a>,
) -> Outcome {
    let traced = ctx.rt.trace.is_some();
    let location = ctx.rt.location.clone();
    let mode = mode(hook);
    let mut result = Outcome::Declined;
    for (name, plugin, index) in location.chain(hook) {
        let left = match how(ctx, *index) {
            Call::Hook => None,
            Call::Skip => continue,
            Call::HandedOver(left) => Some(left),
        };
        let start = traced.then(Instant::now);
        // A hook that finished as it was called has nothing to poll.
        let outcome = {
            let mut running = guarded(|| match left {
                None => call(&**plugin, hook, ctx),
                Some(left) => plugin.post_read_request_handed_over(ctx, left),
            });
            match running.0.take_ready() {
                Some(outcome) => outcome,
                None => panicked(running.await),
            }
        };
        if let Some(start) = start {
            trace::call(ctx, hook, name, &outcome, start.elapsed());
        }
        note_failure(ctx, name, hook, &outcome);
        match (mode, outcome) {
            (_, Outcome::Declined) => {}
            (Mode::AllWhileOk, Outcome::Ok) => {
                // The pipeline's answer is the document's producer's.
                if hook == Hook::XmlResponse && ctx.rt.answered == 0 {
                    ctx.rt.answered = index + 1;
                }
                result = Outcome::Ok;
            }
            (_, other) => {
                // Who decided the response, for the metrics: not an error
                // page's plugin nor `response_sent`.
                if hook as u8 <= Hook::Response as u8 {
                    ctx.rt.answered = index + 1;
                }
                return other;
            }
        }
    }
    result
}

/// Run `body_data` over the chain with one chunk of request body.
pub(crate) async fn run_body_data(ctx: &mut Context, chunk: &[u8]) -> Outcome {
    if ctx.rt.trace.is_some() {
        return Box::pin(body_data_chain::<true>(ctx, chunk)).await;
    }
    body_data_chain::<false>(ctx, chunk).await
}

async fn body_data_chain<const TRACED: bool>(ctx: &mut Context, chunk: &[u8]) -> Outcome {
    let location = ctx.rt.location.clone();
    let mut result = Outcome::Declined;
    for (name, plugin, _) in location.chain(Hook::BodyData) {
        let start = started::<TRACED>();
        let outcome = panicked(guarded(|| plugin.body_data(ctx, chunk)).await);
        traced::<TRACED>(ctx, Hook::BodyData, name, &outcome, start);
        note_failure(ctx, name, Hook::BodyData, &outcome);
        match outcome {
            Outcome::Declined => {}
            Outcome::Ok => result = Outcome::Ok,
            other => return other,
        }
    }
    result
}

/// Run the `write_body_data` filters over one outgoing chunk.
pub(crate) async fn run_write_body_data(ctx: &mut Context, chunk: &mut BodyChunk) -> Outcome {
    if ctx.rt.trace.is_some() {
        return Box::pin(filter_chain::<true>(ctx, chunk)).await;
    }
    filter_chain::<false>(ctx, chunk).await
}

async fn filter_chain<const TRACED: bool>(ctx: &mut Context, chunk: &mut BodyChunk) -> Outcome {
    let location = ctx.rt.location.clone();
    ctx.rt.io.filtering = true;
    let mut result = Outcome::Ok;
    for (i, (name, plugin, _)) in location.chain(Hook::WriteBodyData).iter().enumerate() {
        if ctx.body_filter_skipped(i) {
            continue;
        }
        let start = started::<TRACED>();
        let outcome = panicked(guarded(|| plugin.write_body_data(ctx, chunk)).await);
        traced::<TRACED>(ctx, Hook::WriteBodyData, name, &outcome, start);
        note_failure(ctx, name, Hook::WriteBodyData, &outcome);
        match outcome {
            Outcome::Declined | Outcome::Ok => {}
            other => {
                result = other;
                break;
            }
        }
    }
    ctx.rt.io.filtering = false;
    result
}

/// Run a connection-level hook (`connect`, `pre_request`, `disconnect`).
/// Returns false if a plugin rejected the connection.
pub(crate) async fn run_conn_hook(
    worker: &WorkerRt,
    location: &LocationRt,
    hook: Hook,
    conn: &ConnInfo,
) -> bool {
    for (name, plugin, _) in location.chain(hook) {
        let outcome = panicked(
            guarded(|| match hook {
                Hook::Connect => plugin.connect(conn),
                Hook::PreRequest => plugin.pre_request(conn),
                _ => plugin.disconnect(conn),
            })
            .await,
        );
        match outcome {
            Outcome::Declined | Outcome::Ok => {}
            _ if hook == Hook::Disconnect => {}
            other => {
                if let Outcome::Error(m) = &other {
                    worker.log(
                        Level::Error,
                        &format!("plugin {name}, hook {}: {m}", hook.name()),
                    );
                }
                return false;
            }
        }
    }
    true
}

/// Run the `logging` hooks of `chain` (not empty) with one line, until a
/// sink returns something other than Declined. Sinks that finish at once
/// (all the built-in ones) write in order; one that has to wait continues
/// as its own task. Every sink gets the message escaped (`escape_log`):
/// messages quote paths, headers and script output, and no sink has to
/// remember.
pub(crate) fn run_logging(chain: &[Entry], level: Level, message: &str, peer: Option<SocketAddr>) {
    let owned = Rc::new((level, escape_log(message).into_owned(), peer));
    for (_, plugin, _) in chain {
        let plugin = plugin.clone();
        let line = owned.clone();
        let fut = async move {
            let record = LogRecord {
                level: line.0,
                message: &line.1,
                peer: line.2,
            };
            plugin.logging(&record).await
        };
        let mut fut = Box::pin(fut);
        let waker = Waker::from(Arc::new(NoopWake));
        match fut.as_mut().poll(&mut TaskContext::from_waker(&waker)) {
            Poll::Ready(Outcome::Declined) => continue,
            Poll::Ready(_) => return,
            Poll::Pending => {
                tokio::task::spawn_local(fut);
            }
        }
    }
}

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hook whose future is large enough for one of the worker's spare
    /// blocks panics after it has waited: the panic is the hook's
    /// outcome, and the worker's thread goes on.
    #[test]
    fn a_panic_in_a_waiting_hook_is_its_outcome() {
        let mut cx = TaskContext::from_waker(Waker::noop());
        for _ in 0..2 {
            let mut running = guarded(|| {
                crate::plugin::hook(async {
                    let big = [1u8; 2048];
                    let mut waited = false;
                    std::future::poll_fn(|_| match std::mem::replace(&mut waited, true) {
                        true => Poll::Ready(()),
                        false => Poll::Pending,
                    })
                    .await;
                    if std::hint::black_box(&big)[0] == 1 {
                        panic!("after the wait");
                    }
                    Outcome::Ok
                })
            });
            assert!(running.0.take_ready().is_none());
            assert_eq!(Pin::new(&mut running).poll(&mut cx), Poll::Pending);
            assert_eq!(
                Pin::new(&mut running).poll(&mut cx),
                Poll::Ready(Err("after the wait".into()))
            );
        }
    }
}
