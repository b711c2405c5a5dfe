//! Tracing a request: which `<Server>` and `<Location>` took it, then one
//! line per plugin called at each hook, with its outcome and how long it
//! took, and one when the response is out.
//!
//! A request is traced when its Location (or Server) says `Trace On`, or
//! when it carries `X-AxKit-Trace: 1` and comes from an address in its
//! Server's `TraceFrom` (the header from anywhere else is ignored). Its
//! lines go to the request's log sinks at level notice whatever `LogLevel`
//! says: an operator asked for them. Under `LogLevel LOGDEBUG` every other
//! request writes the same lines at level debug.
//!
//! Nothing here runs for a request that is not traced: the walk asks only
//! when `WorkerRt::tracing` says some request may be, and the hook runner
//! (`hooks.rs`) tests `RequestRt::trace` once per hook.

use std::fmt::Write;
use std::time::Duration;

use crate::plugin::{Context, Hook, Level, Outcome};

/// The request header that asks for a trace (honoured from `TraceFrom`).
const TRACE_HEADER: &str = "X-AxKit-Trace";

/// Decide whether the request in `ctx` (its Server and Location picked)
/// is traced, and if so say where it went. Called when
/// `WorkerRt::tracing`, and again after an internal redirect (a new
/// Location), where a request already traced stays so.
pub(crate) fn begin(ctx: &mut Context) {
    let asked = ctx.rt.location.trace || asked_by_header(ctx);
    let level = if asked {
        Some(Level::Notice)
    } else if ctx.rt.trace.is_some() {
        ctx.rt.trace
    } else if ctx.rt.worker.log_level() >= Level::Debug {
        Some(Level::Debug)
    } else {
        None
    };
    ctx.rt.trace = level;
    if level.is_none() {
        return;
    }
    let server = ctx.server();
    let location = &ctx.rt.location;
    let mut line = format!(
        "{}: <Server> {}:{}",
        ctx.request.request_line(),
        server.file,
        server.line
    );
    if location.prefix != "/" || location.line != server.line {
        let _ = write!(
            line,
            ", <Location {}> {}:{}",
            location.prefix, location.file, location.line
        );
    }
    log(ctx, &line);
}

/// `X-AxKit-Trace: 1` from a client in the Server's `TraceFrom` (the
/// client as resolved behind trusted proxies, as access control sees it).
fn asked_by_header(ctx: &Context) -> bool {
    let from = &ctx.rt.worker.servers[ctx.rt.server].trace_from;
    !from.is_empty()
        && ctx.request.header(TRACE_HEADER) == Some("1")
        && from.iter().any(|net| net.contains(ctx.client().addr.ip()))
}

/// One plugin's call at one hook.
pub(crate) fn call(ctx: &Context, hook: Hook, plugin: &str, outcome: &Outcome, took: Duration) {
    let outcome = match outcome {
        Outcome::Declined => "DECLINED".to_string(),
        Outcome::Ok => "OK".to_string(),
        Outcome::Done => "DONE".to_string(),
        Outcome::Status(s) => format!("status {s}"),
        Outcome::Error(e) => format!("error: {e}"),
    };
    let line = format!(
        "{} {plugin}: {outcome} ({}µs)",
        hook.name(),
        took.as_micros()
    );
    log(ctx, &line);
}

/// The response went out (after `response_sent`).
pub(crate) fn end(ctx: &Context) {
    let took = ctx
        .request
        .start_time()
        .elapsed()
        .unwrap_or_default()
        .as_micros();
    let line = format!(
        "sent {} ({} body bytes) {took}µs after the request began",
        ctx.response.status,
        ctx.rt.body_bytes_sent()
    );
    log(ctx, &line);
}

/// A trace line: `trace CLIENT: …` (the resolved client, as every
/// request line has it), through the request's log sinks.
pub(crate) fn log(ctx: &Context, message: &str) {
    let Some(level) = ctx.rt.trace else {
        return;
    };
    let client = ctx.client();
    let line = format!("trace {}: {message}", client.addr_text());
    ctx.rt
        .worker
        .log_always(&ctx.rt.location, level, &line, Some(client.addr));
}
