//! `faults`: a plugin that misbehaves on purpose, so that tests can check
//! that one bad hook costs one request, never the worker. Never load it in
//! production.
//!
//! No directives. Hook `response`, by path:
//! - `/panic`: panics before returning a future; `/panic-async` panics
//!   after an await point (both messages contain HTML, to check escaping);
//! - `/error`: returns `Outcome::Error("deliberate failure")`;
//! - `/status/NNN`: returns `Outcome::Status(NNN)` (a number that does not
//!   fit a `u16` becomes 65535, which the core must refuse);
//! - `/sleep?ms=N` (default 200): waits N ms on a timer, then answers
//!   `slept`: a suspended request must not hold up the worker;
//! - `/stream-panic`: streams a chunk with `ctx.write`, then panics: the
//!   head is already out, so the client gets a truncated response and the
//!   connection closes;
//! - `/head-panic`: answers a body whose before-head work panics;
//!   `/head-panic-stream`: the same, then streams (both: the built-in 500 page);
//! - `/body`: reads the whole request body and answers its length;
//! - `/redirect?URI`: internal redirect to URI (`/redirect?/redirect?/x`
//!   chains); `/redirect-404?URI`: the same, keeping status 404, as an
//!   ErrorDocument would;
//! - `/notes`: answers the method, the path and the `redirect.*` notes;
//! - anything else: Declined.
//!
//! Hook `post_read_request`: panics when the request has `X-Panic-Early: 1`.
//!
//! Hook `before_head`: panics when the request has `X-Panic-Head: 1`.
//!
//! Hook `fixup`: sets `X-Fixup: called` on the response when the request
//! has `X-Fixup: 1` (nothing but the hook written in the impl makes the
//! server call it: `#[axkit::plugin]` derives the list).
//!
//! ```text
//! <Server>
//!     Listen 127.0.0.1:8080
//!     Plugin faults
//! </Server>
//! ```

use std::rc::Rc;
use std::time::Duration;

use axkit::config::Directive;
use axkit::plugin::Body;
use axkit::{hook, Context, HookFuture, Outcome, Plugin, PluginInit, PluginSpec};

pub const FAULTS: PluginSpec = PluginSpec {
    name: "faults",
    directives: Vec::<Directive>::new,
    create,
};

fn create(_: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    Ok(Rc::new(Faults))
}

struct Faults;

#[axkit::plugin]
impl Plugin for Faults {
    fn post_read_request<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if ctx.request.header("X-Panic-Early") == Some("1") {
            panic!("deliberate panic in post_read_request");
        }
        Outcome::Declined.into()
    }

    fn before_head<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if ctx.request.header("X-Panic-Head") == Some("1") {
            panic!("deliberate panic in before_head");
        }
        Outcome::Declined.into()
    }

    fn fixup<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if ctx.request.header("X-Fixup") == Some("1") {
            ctx.response.headers.set("X-Fixup", "called");
        }
        Outcome::Declined.into()
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let path = ctx.request.path().to_string();
        match path.as_str() {
            "/panic" => panic!("deliberate panic <b>&</b>"),
            "/panic-async" => hook(async move {
                tokio::task::yield_now().await;
                panic!("deliberate async panic <i>");
            }),
            "/error" => Outcome::Error("deliberate failure".into()).into(),
            "/sleep" => {
                let ms = ctx
                    .request
                    .query()
                    .and_then(|q| q.strip_prefix("ms="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(200);
                hook(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    text(ctx, "slept\n".to_string())
                })
            }
            "/stream-panic" => hook(async move {
                ctx.response.headers.set("Content-Type", "text/plain");
                if ctx.write("partial ").await.is_err() {
                    return Outcome::Done;
                }
                panic!("deliberate panic after the head was sent");
            }),
            "/head-panic" | "/head-panic-stream" => {
                ctx.response.headers.set("X-Unsent", "yes");
                ctx.before_head(|_| Box::pin(async { panic!("deliberate panic before the head") }));
                if path == "/head-panic" {
                    return text(ctx, "never sent\n".to_string()).into();
                }
                hook(async move {
                    let _ = ctx.write("never sent").await;
                    Outcome::Done
                })
            }
            "/body" => hook(async move {
                match ctx.read_body_all().await {
                    Ok(body) => text(ctx, format!("{}", body.len())),
                    Err(e) => e.into(),
                }
            }),
            "/redirect" | "/redirect-404" => {
                let target = ctx.request.query().unwrap_or("").to_string();
                if path == "/redirect" {
                    ctx.internal_redirect(&target);
                } else {
                    ctx.internal_redirect_with_status(&target, 404);
                }
                Outcome::Done.into()
            }
            "/notes" => {
                let note = |k: &str| ctx.notes.get(k).cloned().unwrap_or_default();
                let body = format!(
                    "{} {} from={} status={}\n",
                    ctx.request.method(),
                    ctx.request.uri(),
                    note("redirect.uri"),
                    note("redirect.status")
                );
                text(ctx, body).into()
            }
            _ => match path.strip_prefix("/status/") {
                Some(code) => match code.parse::<u64>() {
                    Ok(n) => Outcome::Status(u16::try_from(n).unwrap_or(u16::MAX)).into(),
                    Err(_) => Outcome::Declined.into(),
                },
                None => Outcome::Declined.into(),
            },
        }
    }
}

/// A plain-text response.
fn text(ctx: &mut Context, body: String) -> Outcome {
    ctx.response
        .headers
        .set("Content-Type", "text/plain; charset=utf-8");
    ctx.response.body = Body::Bytes(body.into());
    Outcome::Ok
}
