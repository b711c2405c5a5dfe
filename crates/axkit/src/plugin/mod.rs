//! The plugin API: the [`Plugin`] trait with one method per hook, the
//! [`Outcome`] a hook returns, and [`PluginSpec`], which is how a plugin is
//! made known to a server (built-in or third-party alike). Script hosts
//! add plugins through a [`PluginSource`].
//!
//! Every hook is asynchronous: awaiting inside a hook is how a plugin
//! suspends one request without blocking the worker (AxKit2 called this a
//! continuation). Hooks that never wait return an already-finished
//! [`HookFuture`], which costs no allocation; hooks that do wait wrap their
//! `async` block with [`hook`]. The `'static`-free design (no `Send`) is
//! deliberate: each worker is one thread, so plugins may use `Rc`/`RefCell`.
//! An `impl Plugin` carries `#[axkit::plugin]`, which derives the hooks the
//! server calls from the methods it writes.

mod client;
mod context;
mod doc_root;
pub mod form;
pub mod hashing;
mod hook_box;
mod html;
mod listen;
mod log;
pub mod metrics;
mod reclaim;
mod shared_memory;
mod source;
mod spare;
mod trusted_hash;
mod worker;

pub use client::Client;
pub(crate) use client::Trust;
pub use context::{
    BeforeHead, Body, BodyChunk, BodyError, CheckedValue, ConnInfo, Context, Document, Failure,
    HeaderValue, Headers, Logger, OpenFile, ParsedValue, Request, Response, Tree, Upgraded,
    STORED_RESPONSE_NOTE, UPSTREAM_NOTE,
};
pub use doc_root::{is_escape, DocRoot, Io, Rule, DOCUMENT_ROOT, FOLLOW_SYMLINKS, READ_FLAGS};
pub use form::{Field, Form, FormError, Upload, Uploads};
pub use html::{default_error_page, html_escape};
pub(crate) use listen::install as install_listeners;
pub use listen::{ListenAddr, ListenSpec, Listener};
pub use log::{
    escape_log, escape_log_bytes, escape_log_field, log_dir_warning, log_line, log_to_stderr,
    open_log_file, Level, LogRecord, LOG_FILE,
};
pub use reclaim::Reclaim;
pub(crate) use reclaim::Reclaimable;
pub(crate) use shared_memory::{install as install_shared_memory, round_to_pages};
pub use shared_memory::{SharedMemory, SharedMemorySpec};
pub(crate) use source::RustPlugins;
pub use source::{Catalog, InUse, PluginSource};
pub use spare::SpareVecs;
pub use trusted_hash::{TrustedHasher, TrustedMap};
pub use worker::Worker;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use crate::config::{Config, Directive, LocationConfig};
use crate::server::runtime::LocationRt;

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

/// The future a hook returns: `Outcome::X.into()` for a hook that
/// finishes without waiting (no heap allocation on the hot path), or
/// [`hook`]`(async move { … })` for one that waits. Those are the only
/// ways to build one, so every `HookFuture` yields an outcome.
///
/// ```compile_fail,E0599
/// // There is no empty HookFuture to build.
/// let never: axkit::HookFuture<'static> = axkit::HookFuture::Ready(None);
/// ```
pub struct HookFuture<'a>(HookState<'a>);

enum HookState<'a> {
    /// `None` only once the outcome has been taken by `poll`.
    Ready(Option<Outcome>),
    Pending(Pin<Box<dyn Future<Output = Outcome> + 'a>>),
    /// A large future, in one of the worker's spare blocks.
    Pooled(hook_box::HookBox<'a>),
}

impl From<Outcome> for HookFuture<'_> {
    fn from(outcome: Outcome) -> Self {
        HookFuture(HookState::Ready(Some(outcome)))
    }
}

/// Wrap an `async` block as a hook's result:
/// `hook(async move { …; Outcome::Ok })`. The future is boxed; one too
/// large for malloc's fast cache (a proxied request's) goes into one of
/// the worker's spare blocks instead (`hook_box`).
pub fn hook<'a, F: Future<Output = Outcome> + 'a>(f: F) -> HookFuture<'a> {
    match hook_box::pooled::<F>() {
        true => HookFuture(HookState::Pooled(hook_box::HookBox::new(f))),
        false => HookFuture(HookState::Pending(Box::pin(f))),
    }
}

impl HookFuture<'_> {
    /// The outcome of a hook that finished without waiting (most do),
    /// taken without polling.
    pub(crate) fn take_ready(&mut self) -> Option<Outcome> {
        match &mut self.0 {
            HookState::Ready(outcome) => outcome.take(),
            HookState::Pending(_) | HookState::Pooled(_) => None,
        }
    }
}

impl Future for HookFuture<'_> {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
        match &mut self.get_mut().0 {
            HookState::Ready(outcome) => {
                Poll::Ready(outcome.take().expect("HookFuture polled after completion"))
            }
            HookState::Pending(f) => f.as_mut().poll(cx),
            HookState::Pooled(f) => Pin::new(f).poll(cx),
        }
    }
}

/// A future awaited on a rare path inside a hot one (an error page, a
/// streamed body, a tunnel, a new connection's handshake): boxed, so that
/// its state does not enlarge the hot future, and polled by a function of
/// its own that is never inlined, so that its code does not enlarge the
/// hot future's either. `Box::pin` alone keeps the state out, but the
/// compiler still inlines the boxed future's poll into its caller, and the
/// request's code then spreads over more of the instruction cache than
/// the usual request runs.
pub fn out_of_line<F: Future>(f: F) -> OutOfLine<F> {
    OutOfLine(Box::pin(f))
}

/// The future [`out_of_line`] makes.
#[must_use = "futures do nothing unless awaited"]
pub struct OutOfLine<F>(Pin<Box<F>>);

impl<F: Future> Future for OutOfLine<F> {
    type Output = F::Output;
    #[inline(never)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// The hooks, in the order a request meets them (docs/plugins.md has the
/// table of what each is for and how its plugins are walked).
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
    BeforeHead,
    WriteBodyData,
    ResponseSent,
    Disconnect,
    Error,
}

impl Hook {
    pub const COUNT: usize = 18;
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
        Hook::BeforeHead,
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
            Hook::BeforeHead => "before_head",
            Hook::WriteBodyData => "write_body_data",
            Hook::ResponseSent => "response_sent",
            Hook::Disconnect => "disconnect",
            Hook::Error => "error",
        }
    }
}

/// Where a request handed over to another Location has been, for
/// [`Plugin::post_read_request_handed_over`].
#[derive(Clone, Copy)]
pub struct HandOff<'a> {
    /// None on the walk an internal redirect began.
    pub(crate) left: Option<&'a LocationConfig>,
    /// Every plugin's earlier calls (`Moved::post_read_calls`).
    pub(crate) calls: &'a [(u16, Rc<LocationRt>)],
    /// The index of the plugin called.
    pub(crate) plugin: u16,
}

impl<'a> HandOff<'a> {
    /// The merged config of the Location the request was handed over
    /// from; None on the walk of an internal redirect
    /// ([`Context::internal_redirect`]: an ErrorDocument's page), a fresh
    /// walk of the client request.
    pub fn left(&self) -> Option<&'a LocationConfig> {
        self.left
    }

    /// The merged configs of the Locations the request was in at each of
    /// this plugin's earlier `post_read_request` and
    /// `post_read_request_handed_over` calls for it: where it took up its
    /// lines. A plugin listed after one that rewrote the request
    /// ([`Context::rewrite_uri`]) ran in the Location rewritten to, not
    /// in the one whose chain it ran in.
    pub fn taken_up(&self) -> impl Iterator<Item = &'a LocationConfig> + 'a {
        let plugin = self.plugin;
        self.calls
            .iter()
            .filter(move |(index, _)| *index == plugin)
            .map(|(_, location)| &*location.config)
    }
}

/// A set of hooks: those a plugin's impl writes (derived by
/// [`#[axkit::plugin]`](macro@crate::plugin)), and of those the ones it
/// enables ([`Plugin::enabled_hooks`]). The server only calls the hooks in
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

    /// The hooks in both sets.
    pub fn and(self, other: Hooks) -> Hooks {
        Hooks(self.0 & other.0)
    }
}

/// The hooks of `plugin` that the server calls: those its impl writes,
/// narrowed by [`Plugin::enabled_hooks`] (which cannot add any).
pub(crate) fn called_hooks(plugin: &dyn Plugin) -> Hooks {
    let written = plugin.written_hooks();
    plugin.enabled_hooks(written).and(written)
}

/// What `#[axkit::plugin]` generates code against. Not an API: an impl of
/// its trait written by hand could list hooks the impl does not write, or
/// leave out one it does, which is what the attribute exists to prevent.
#[doc(hidden)]
pub mod __private {
    use super::Hooks;

    /// The hooks an `impl Plugin` writes, as `#[axkit::plugin]` derives
    /// them.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` implements `Plugin` without `#[axkit::plugin]`",
        label = "no hook list for `{Self}`",
        note = "put `#[axkit::plugin]` on `impl Plugin for {Self}`: it derives the hooks the server calls from the methods the impl writes"
    )]
    pub trait WrittenHooks {
        fn written_hooks(&self) -> Hooks;
    }
}

/// A plugin. Write the hooks you need in an `impl Plugin` marked
/// `#[axkit::plugin]`: the attribute derives from the methods written which
/// hooks the server calls, so a hook cannot be written and then skipped.
/// Every other method has a default that declines. One instance serves
/// every request of a worker; per-request data belongs in the [`Context`]
/// (`ctx.state_mut`) and per-Location settings in `ctx.config()`.
///
/// ```
/// use axkit::{Context, HookFuture, Outcome, Plugin};
///
/// struct Hello;
///
/// #[axkit::plugin]
/// impl Plugin for Hello {
///     fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
///         ctx.response.body = axkit::plugin::Body::Bytes("hello\n".into());
///         Outcome::Ok.into()
///     }
/// }
/// ```
///
/// Without the attribute the impl does not compile: there is no hook list
/// to write by hand.
///
/// ```compile_fail,E0277
/// use axkit::{Context, HookFuture, Outcome, Plugin};
///
/// struct Hello;
///
/// impl Plugin for Hello {
///     fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
///         Outcome::Ok.into()
///     }
/// }
/// ```
#[allow(unused_variables)]
pub trait Plugin: __private::WrittenHooks + 'static {
    /// Of the hooks this impl writes (`written`), those the server calls:
    /// all of them unless the plugin says otherwise. A plugin whose hooks
    /// depend on what it loaded (a script host, whose scripts define some
    /// hooks and not others) returns fewer, so that the others cost
    /// nothing; a hook the impl does not write is never called, whatever
    /// this returns.
    fn enabled_hooks(&self, written: Hooks) -> Hooks {
        written
    }

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
    /// Called in place of `post_read_request`, which runs once per
    /// request, when the request it ran for is handed over to another
    /// Location whose chain runs this plugin too
    /// ([`Context::internal_redirect_same_request`]: a directory's index
    /// in a `<Location>` of its own), or moved to one by a plugin listed
    /// after it ([`Context::rewrite_uri`]), and on the walk an internal
    /// redirect begins ([`Context::internal_redirect`]: an ErrorDocument's
    /// page) for a plugin called in an earlier walk ([`HandOff::left`] is
    /// None); `from` says where the request has been. For a plugin whose
    /// directives differ by Location and that can tell which lines it has
    /// applied: `rewrite` runs the new Location's lines that the Location
    /// left does not share (the Server's ran once), `headers` applies its
    /// `RequestHeader` lines but those of the Locations it took them up in
    /// before. Its outcome counts as `post_read_request`'s. Unless written,
    /// it declines, but on an internal redirect's walk, where it calls
    /// `post_read_request` (a fresh walk runs it, as it always has). Never
    /// called for a plugin that does not write `post_read_request`.
    fn post_read_request_handed_over<'a>(
        &'a self,
        ctx: &'a mut Context,
        from: HandOff<'a>,
    ) -> HookFuture<'a> {
        match from.left() {
            None => self.post_read_request(ctx),
            Some(_) => Outcome::Declined.into(),
        }
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
    /// The pipeline (AxKit's XML processing, templates): a chain, not a
    /// race. Every plugin runs in chain order while they return Ok or
    /// Declined: the one that produces a document puts it in
    /// `ctx.document`, each after it transforms it; Done ends the chain
    /// with the response as it is. If any returned Ok, or a document is
    /// left, the pipeline answers: a [`Document::Text`] left at the end is
    /// the body (a [`Document::Tree`], serialised); otherwise the walk goes
    /// on to `response`.
    fn xmlresponse<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Produce the response: fill `ctx.response` and return Ok, or stream it
    /// with `ctx.write(…).await`. If every plugin declines: 404.
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// The response head is about to be committed: change
    /// `ctx.response`'s status and headers. Runs once per response that
    /// has a head of the server's, in the chain of the Location that
    /// answers (after rewrites and internal redirects), whichever plugin
    /// answered and however (a redirect from `post_read_request`, a cache
    /// hit, an error page), before the work registered with
    /// [`Context::before_head`] and the `write_body_data` filters, so
    /// those see what it did. Every plugin runs while they return Ok or
    /// Declined; anything else (an error, a panic) ends the chain, is
    /// logged, and the response becomes the built-in 500 page (no filter sees it) on a connection that
    /// then closes: a head is never sent half made.
    fn before_head<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        Outcome::Declined.into()
    }
    /// Each outgoing body chunk, to rewrite in place (`chunk.data`): every
    /// response with a body goes through, whole bodies, streamed ones and
    /// files alike (files then through memory, not sendfile). The first
    /// call comes before the response head is committed (`ctx.head_sent()`
    /// is false), so a filter can still change `ctx.response.status` and
    /// headers (a compressor sets `Content-Encoding`). A filter may change
    /// the body's length: a streamed or file body then goes out chunked, a
    /// whole one (which the filter sees in one call) is measured after
    /// it. The
    /// last call has `chunk.last` set (and possibly empty data) so a filter
    /// can flush, or store what it collected (a cache keeps the status,
    /// the headers and every chunk). A filter cannot write itself.
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

    /// The worker starts serving: called once in each worker process,
    /// after every plugin was built and before the first connection is
    /// accepted, on the worker's event loop (`tokio::task::spawn_local`
    /// works here). Never in the master nor in `axkit --check`. Background
    /// work that belongs to no request (timers, subscriptions) starts
    /// here and ends when [`Worker::stopping`] resolves; `worker` also says
    /// which of the generation's workers this is, for work that one worker
    /// should do for all.
    fn worker_start(&self, worker: &Worker) {}
}

/// What a plugin's constructor sees: the whole loaded config (global values
/// in `config.global`; per-Location values come with each request).
pub struct PluginInit<'a> {
    pub config: &'a Config,
    /// The plugin's name as written in `Plugin NAME`.
    pub name: &'a str,
    /// What [`warn`](Self::warn) collected, for the server.
    pub(crate) warnings: &'a std::cell::RefCell<Vec<String>>,
}

impl PluginInit<'_> {
    /// A worker's file descriptors, for a plugin that keeps some open
    /// between requests (a cache of open files): it should keep within a
    /// share of [`Descriptors::spare`], so that a worker full of
    /// connections still has descriptors for its requests.
    pub fn descriptors(&self) -> Descriptors {
        Descriptors::of(self.config)
    }

    /// A warning about the config that only the plugin can see (a value
    /// it cannot honour as set): `axkit --check` prints it, and the first
    /// worker logs it when it starts.
    pub fn warn(&self, message: impl Into<String>) {
        self.warnings
            .borrow_mut()
            .push(format!("plugin `{}`: {}", self.name, message.into()));
    }

    /// The listening socket named `name` that the plugin's source asked
    /// the master for ([`PluginSource::listeners`]), bound before the
    /// worker gave up root: None in a worker it is not meant for, under
    /// `--check` (which binds nothing), and once taken.
    pub fn listener(&self, name: &str) -> Option<Listener> {
        listen::take(name)
    }
}

/// A worker's budget of file descriptors: its open-file limit, of which
/// every connection takes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptors {
    /// The open-file limit (the soft `RLIMIT_NOFILE`).
    pub limit: usize,
    /// `MaxConnections`: as set, or by default 7/8 of `limit`.
    pub max_connections: usize,
    /// Whether the config sets `MaxConnections` (else the default).
    pub max_connections_set: bool,
}

impl Descriptors {
    /// The budget of a worker running `config`.
    pub(crate) fn of(config: &Config) -> Descriptors {
        let limit = Self::open_file_limit();
        // By default a worker out of descriptors could not open the files
        // its requests ask for either: an eighth is kept for files, pipes
        // and logs.
        let set = *config.global.get(&crate::config::core::MAX_CONNECTIONS);
        Descriptors {
            limit,
            max_connections: if set > 0 { set } else { (limit / 8 * 7).max(1) },
            max_connections_set: set > 0,
        }
    }

    /// The process's open-file limit now (the soft `RLIMIT_NOFILE`, which
    /// an operator's `prlimit` may change under a running worker); 1024
    /// if it cannot be read.
    pub(crate) fn open_file_limit() -> usize {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 => usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX),
            _ => 1024,
        }
    }

    /// The descriptors left beside the connections (none when
    /// `MaxConnections` is at or above the limit): for listening sockets,
    /// logs, the files and pipes of requests, and what plugins keep open.
    pub fn spare(&self) -> usize {
        self.limit.saturating_sub(self.max_connections)
    }
}

/// How a plugin is made known to the server: its name (as used in
/// `Plugin NAME`), the directives it declares, and its constructor.
#[derive(Clone)]
pub struct PluginSpec {
    pub name: &'static str,
    pub directives: fn() -> Vec<Directive>,
    pub create: fn(&PluginInit) -> Result<Rc<dyn Plugin>, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes two hooks and nothing else.
    struct Two;

    #[axkit::plugin]
    impl Plugin for Two {
        fn fixup<'a>(&'a self, _: &'a mut Context) -> HookFuture<'a> {
            Outcome::Declined.into()
        }
        fn logging<'a>(&'a self, _: &'a LogRecord<'a>) -> HookFuture<'a> {
            Outcome::Declined.into()
        }
        fn reopen_logs(&self) {}
    }

    /// Writes three hooks, enables two of them and one it does not write.
    struct Narrowed;

    #[axkit::plugin]
    impl Plugin for Narrowed {
        fn enabled_hooks(&self, _: Hooks) -> Hooks {
            Hooks::of(&[Hook::Connect, Hook::Response, Hook::Error])
        }
        fn connect<'a>(&'a self, _: &'a ConnInfo) -> HookFuture<'a> {
            Outcome::Declined.into()
        }
        fn response<'a>(&'a self, _: &'a mut Context) -> HookFuture<'a> {
            Outcome::Declined.into()
        }
        fn disconnect<'a>(&'a self, _: &'a ConnInfo) -> HookFuture<'a> {
            Outcome::Declined.into()
        }
    }

    #[test]
    fn the_hooks_called_are_the_hooks_written() {
        assert_eq!(called_hooks(&Two), Hooks::of(&[Hook::Fixup, Hook::Logging]));
    }

    #[test]
    fn enabled_hooks_only_narrow_the_written_ones() {
        assert_eq!(
            called_hooks(&Narrowed),
            Hooks::of(&[Hook::Connect, Hook::Response])
        );
    }

    #[test]
    fn a_ready_hook_future_yields_its_outcome() {
        let waker = std::task::Waker::noop();
        let mut cx = TaskContext::from_waker(waker);
        let mut ready: HookFuture<'_> = Outcome::Status(418).into();
        let polled = Pin::new(&mut ready).poll(&mut cx);
        assert_eq!(polled, Poll::Ready(Outcome::Status(418)));
        let mut pending = hook(async { Outcome::Done });
        assert_eq!(
            Pin::new(&mut pending).poll(&mut cx),
            Poll::Ready(Outcome::Done)
        );
    }
}
