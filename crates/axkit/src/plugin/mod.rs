//! The plugin API: the [`Plugin`] trait with one method per hook, the
//! [`Outcome`] a hook returns, and [`PluginSpec`], which is how a plugin is
//! made known to a server (built-in or third-party alike).
//!
//! Every hook is asynchronous: awaiting inside a hook is how a plugin
//! suspends one request without blocking the worker (AxKit2 called this a
//! continuation). Hooks that never wait return an already-finished
//! [`HookFuture`], which costs no allocation; hooks that do wait wrap their
//! `async` block with [`hook`]. The `'static`-free design (no `Send`) is
//! deliberate: each worker is one thread, so plugins may use `Rc`/`RefCell`.

mod context;
mod doc_root;
mod log;

pub use context::{
    Body, BodyChunk, BodyError, ConnInfo, Context, Failure, Headers, Logger, OpenFile, Request,
    Response,
};
pub(crate) use doc_root::{is_escape, Io, READ_FLAGS};
pub use doc_root::{DocRoot, Rule};
pub use log::{escape_log, escape_log_bytes, escape_log_field, Level, LogRecord};

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use crate::config::{Config, Directive};

/// What a hook decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not mine: ask the next plugin.
    Declined,
    /// Handled; carry on (for "first not Declined" hooks this stops the walk
    /// of that hook).
    Ok,
    /// The response has been produced; skip the remaining phases.
    Done,
    /// Stop and answer with this status through the error path.
    Status(u16),
    /// The hook failed: answer 500 and log this message with the plugin and
    /// hook name.
    Error(String),
}

/// The future a hook returns. `Ready` is for hooks that finish without
/// waiting, and avoids a heap allocation on the hot path.
pub enum HookFuture<'a> {
    Ready(Option<Outcome>),
    Pending(Pin<Box<dyn Future<Output = Outcome> + 'a>>),
}

impl From<Outcome> for HookFuture<'_> {
    fn from(outcome: Outcome) -> Self {
        HookFuture::Ready(Some(outcome))
    }
}

/// Wrap an `async` block as a hook's result:
/// `hook(async move { …; Outcome::Ok })`.
pub fn hook<'a>(f: impl Future<Output = Outcome> + 'a) -> HookFuture<'a> {
    HookFuture::Pending(Box::pin(f))
}

impl Future for HookFuture<'_> {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
        match self.get_mut() {
            HookFuture::Ready(outcome) => {
                Poll::Ready(outcome.take().expect("HookFuture polled after completion"))
            }
            HookFuture::Pending(f) => f.as_mut().poll(cx),
        }
    }
}

/// The hooks, in the order a request meets them (see DESIGN.md, "Hooks").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Hook {
    Logging,
    Connect,
    PreRequest,
    PostReadRequest,
    BodyData,
    UriTranslation,
    MimeMap,
    AccessControl,
    Authentication,
    Authorization,
    Fixup,
    XmlResponse,
    Response,
    WriteBodyData,
    ResponseSent,
    Disconnect,
    Error,
}

impl Hook {
    pub const COUNT: usize = 17;
    pub const ALL: [Hook; Hook::COUNT] = [
        Hook::Logging,
        Hook::Connect,
        Hook::PreRequest,
        Hook::PostReadRequest,
        Hook::BodyData,
        Hook::UriTranslation,
        Hook::MimeMap,
        Hook::AccessControl,
        Hook::Authentication,
        Hook::Authorization,
        Hook::Fixup,
        Hook::XmlResponse,
        Hook::Response,
        Hook::WriteBodyData,
        Hook::ResponseSent,
        Hook::Disconnect,
        Hook::Error,
    ];

    /// The hook's name as scripts and logs spell it (`uri_translation`).
    pub fn name(self) -> &'static str {
        match self {
            Hook::Logging => "logging",
            Hook::Connect => "connect",
            Hook::PreRequest => "pre_request",
            Hook::PostReadRequest => "post_read_request",
            Hook::BodyData => "body_data",
            Hook::UriTranslation => "uri_translation",
            Hook::MimeMap => "mime_map",
            Hook::AccessControl => "access_control",
            Hook::Authentication => "authentication",
            Hook::Authorization => "authorization",
            Hook::Fixup => "fixup",
            Hook::XmlResponse => "xmlresponse",
            Hook::Response => "response",
            Hook::WriteBodyData => "write_body_data",
            Hook::ResponseSent => "response_sent",
            Hook::Disconnect => "disconnect",
            Hook::Error => "error",
        }
    }
}

/// The set of hooks a plugin implements. The server only calls the hooks in
/// this set, and precomputes per `<Location>` which plugins run for each
/// hook, so a hook nobody implements costs nothing per request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hooks(u32);

impl Hooks {
    pub const NONE: Hooks = Hooks(0);

    pub const fn of(list: &[Hook]) -> Hooks {
        let mut bits = 0;
        let mut i = 0;
        while i < list.len() {
            bits |= 1 << list[i] as u32;
            i += 1;
        }
        Hooks(bits)
    }

    pub fn with(self, hook: Hook) -> Hooks {
        Hooks(self.0 | 1 << hook as u32)
    }

    pub fn contains(self, hook: Hook) -> bool {
        self.0 & (1 << hook as u32) != 0
    }
}

/// A plugin. Implement the hooks you need and list them in [`Plugin::hooks`];
/// every other method has a default that declines. One instance serves every
/// request of a worker; per-request data belongs in the [`Context`]
/// (`ctx.state_mut`) and per-Location settings in `ctx.config()`.
#[allow(unused_variables)]
pub trait Plugin: 'static {
    /// The hooks this plugin implements.
    fn hooks(&self) -> Hooks;

    /// A log line at `record.level` (the plugin is a log sink). Runs until a
    /// plugin returns something other than Declined.
    fn logging<'a>(&'a self, record: &'a LogRecord<'a>) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// A connection was accepted. Anything but Declined/Ok rejects it.
    fn connect<'a>(&'a self, conn: &'a ConnInfo) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Before each request head is read (also between keep-alive requests).
    /// Anything but Declined/Ok closes the connection.
    fn pre_request<'a>(&'a self, conn: &'a ConnInfo) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// The head has been parsed and the Server and Location chosen.
    fn post_read_request<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// A chunk of the request body. A plugin in the chain that implements
    /// this makes the server read the whole body before `uri_translation`,
    /// as AxKit2 did. Done stops reading (the rest is discarded).
    fn body_data<'a>(&'a self, ctx: &'a mut Context, chunk: &'a [u8]) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Map the URI to `ctx.filename` / `ctx.path_info`.
    fn uri_translation<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Set the response Content-Type.
    fn mime_map<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Allow or deny by address, method… `Status(403)` denies.
    fn access_control<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Establish `ctx.user`. `Status(401)` challenges.
    fn authentication<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// May `ctx.user` do this?
    fn authorization<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Last look before the response.
    fn fixup<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Transformation pipelines (XML, templates). Ok means the response
    /// (status, headers, body) in `ctx.response` is the one to send.
    fn xmlresponse<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Produce the response: fill `ctx.response` and return Ok, or stream it
    /// with `ctx.write(…).await`. If every plugin declines: 404.
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Each outgoing body chunk, to rewrite in place (`chunk.data`). The last
    /// call has `chunk.last` set (and possibly empty data) so a filter can
    /// flush. With such a filter in the chain the body length is unknown, so
    /// the response goes out chunked.
    fn write_body_data<'a>(
        &'a self,
        ctx: &'a mut Context,
        chunk: &'a mut BodyChunk,
    ) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// The response has been written. Done closes the connection.
    fn response_sent<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// The connection closed. The outcome is ignored.
    fn disconnect<'a>(&'a self, conn: &'a ConnInfo) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// A hook failed, panicked or returned a Status: produce the error
    /// response (`ctx.response.status` is set; `ctx.failure` says what went
    /// wrong). Declined everywhere gives the built-in error page.
    fn error<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }

    /// SIGUSR1: reopen any log files (logrotate moved them).
    fn reopen_logs(&self) {}
}

/// What a plugin's constructor sees: the whole loaded config (global values
/// in `config.global`; per-Location values come with each request).
pub struct PluginInit<'a> {
    pub config: &'a Config,
    /// The plugin's name as written in `Plugin NAME`.
    pub name: &'a str,
}

/// How a plugin is made known to the server: its name (as used in
/// `Plugin NAME`), the directives it declares, and its constructor.
#[derive(Clone)]
pub struct PluginSpec {
    pub name: &'static str,
    pub directives: fn() -> Vec<Directive>,
    pub create: fn(&PluginInit) -> Result<Rc<dyn Plugin>, String>,
}
