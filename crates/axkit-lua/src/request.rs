//! The request object `r` that hooks receive: read the request, build the
//! response, read the body, stream output, redirect, log.
//!
//! A hook's coroutine runs only while the hook runner polls it, and the
//! runner holds the request's `&mut Context` for exactly that long. The
//! runner puts a pointer to the context in the request's [`Slot`] for the
//! duration of each poll and clears it afterwards, so a method reaches the
//! context only while it is valid; `r` kept past its hook (in a global, say)
//! gets an error instead. Methods that must wait on the connection (read
//! the body, flush output) do not touch the context across an await: they
//! post an [`Op`] and suspend, and the runner performs it with its own
//! `&mut Context` between two polls.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use axkit::plugin::{Body, BodyError, DocRoot, FormError, Io, Uploads, READ_FLAGS};
use axkit::{Context, Level};
use axkit_shared::Subscription;
use axkit_sse::Ended;
use bytes::{Bytes, BytesMut};
use mlua::{FromLuaMulti, IntoLuaMulti, LightUserData, Lua, Table, Value};

use crate::files::Files;
use crate::form;

/// Output buffered by `r:write` is sent once it reaches this size (or on
/// `r:flush()`): small responses go out in one piece with a Content-Length,
/// large ones stream with backpressure.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

/// Something only the hook runner can do, because it needs the context
/// across an await.
pub(crate) enum Op {
    /// Read the next piece of the request body.
    Read,
    /// Read the whole body (kept by the context).
    ReadAll,
    /// Read the form (kept by the context) and save these uploads.
    Form(form::Wanted),
    /// Send buffered output to the client now.
    Write(Bytes),
    /// Begin a server-sent event stream (`r:sse`).
    SseStart(axkit_sse::Options),
    /// Send an event or a comment on it.
    SseSend(crate::sse::Frame),
    /// Wait for a subscription's next message while the client is there
    /// (heartbeats on the request's event stream meanwhile).
    Next(Subscription, Option<Duration>),
    /// A long poll (`r:long_poll`).
    LongPoll(crate::sse::Waiting, Duration),
    /// Wait for the next message of a channel (`shared.wait`) as
    /// [`Op::Next`] waits, making no response.
    Wait(axkit_shared::Wait, Option<Duration>),
}

pub(crate) enum OpResult {
    Read(Result<Option<Bytes>, BodyError>),
    ReadAll(Result<Bytes, BodyError>),
    /// Saving an upload failed: the server's error, not the client's.
    Form(Result<Result<(), std::io::Error>, FormError>),
    Written(std::io::Result<()>),
    /// The stream started (or why it could not).
    SseStarted(std::io::Result<()>),
    /// The subscription back, and what came of the wait.
    Next(Subscription, Result<Bytes, Ended>),
    /// The subscription (if the poll was on one) and what came.
    LongPolled(Option<Subscription>, Result<Bytes, Ended>),
    /// What came of a `shared.wait`.
    Waited(Result<Bytes, Ended>),
}

/// Per-request state shared by `r` and the hook runner.
#[derive(Default)]
pub(crate) struct Slot {
    ctx: Cell<Option<std::ptr::NonNull<Context>>>,
    /// A method holds the context: a second one reached from inside it (a
    /// logging hook run by `r:log` using a saved `r`) must not get it too.
    busy: Cell<bool>,
    /// The number this request's `r` holds (see [`with_polled`]).
    pub object: Cell<usize>,
    /// This slot's own `Rc`, for methods that suspend.
    me: std::rc::Weak<Slot>,
    op: RefCell<Option<Op>>,
    result: RefCell<Option<OpResult>>,
    /// `r:write` output not yet sent (a `Vec`: the usual single small write
    /// costs one exact allocation, handed to the core as is).
    pub out: RefCell<Vec<u8>>,
    /// The hook must end with this status (a body read failed: 400/408/413).
    pub abort: Cell<Option<u16>>,
    /// The table of the parsed form, once `r:form()` made it.
    pub form: RefCell<Option<mlua::Table>>,
    /// The request's server-sent event stream, once `r:sse()` began it.
    pub sse: RefCell<Option<axkit_sse::EventStream>>,
    /// The subscriptions made during the request, ended with it.
    pub subscriptions: crate::shared::Owned,
    /// The DOM `r:dom()` took the chain's tree into, until the hook ends.
    pub dom: RefCell<Option<mlua::AnyUserData>>,
}

thread_local! {
    /// The slot of the request whose hook is being polled right now, for
    /// the methods of `r` written as plain Lua C functions (`fast.rs`).
    static POLLED: Cell<*const Slot> = const { Cell::new(std::ptr::null()) };
}

/// The slot of the request whose hook is running, if any (a global called
/// from a request's hook rather than from a timer or a top level).
pub(crate) fn current_slot() -> Option<Rc<Slot>> {
    let slot = POLLED.with(Cell::get);
    // SAFETY: as in `with_polled`.
    unsafe { slot.as_ref() }?.rc()
}

/// Run `f` with the slot and context of the request whose hook is running,
/// if `object` (the first argument of an `r:` method) is that request's
/// `r`; `None` for an `r` used outside its hook or anything else.
pub(crate) fn with_polled<R>(object: usize, f: impl FnOnce(&Slot, &mut Context) -> R) -> Option<R> {
    let slot = POLLED.with(Cell::get);
    // SAFETY: POLLED is set only while `Slot::enter`'s guard lives, and
    // the guard borrows the slot.
    let slot = unsafe { slot.as_ref() }?;
    if object == 0 || slot.object.get() != object {
        return None;
    }
    slot.with_ctx(|c| f(slot, c)).ok()
}

/// As [`with_polled`] for a method that needs the request's slot but not
/// its context (`r:write` appends to the slot's output).
pub(crate) fn with_polled_slot<R>(object: usize, f: impl FnOnce(&Slot) -> R) -> Option<R> {
    let slot = POLLED.with(Cell::get);
    // SAFETY: as in `with_polled`.
    let slot = unsafe { slot.as_ref() }?;
    if object == 0 || slot.object.get() != object || slot.busy.get() || slot.ctx.get().is_none() {
        return None;
    }
    Some(f(slot))
}

/// Run `f` with the context of the request whose hook is running, for
/// globals that act on the current request (`template.render`); `None`
/// when no request hook is running.
pub(crate) fn with_current<R>(f: impl FnOnce(&mut Context) -> R) -> Option<mlua::Result<R>> {
    let slot = POLLED.with(Cell::get);
    // SAFETY: as in `with_polled`.
    let slot = unsafe { slot.as_ref() }?;
    Some(slot.with_ctx(f))
}

impl Slot {
    pub fn new() -> Rc<Slot> {
        Rc::new_cyclic(|me| Slot {
            me: me.clone(),
            ..Slot::default()
        })
    }

    /// The `Rc` this slot lives in.
    fn rc(&self) -> Option<Rc<Slot>> {
        self.me.upgrade()
    }

    /// This slot emptied for another request, if nothing but the caller
    /// holds it: no `Rc` or weak reference of it is left anywhere (a
    /// method's future, a subscription), so nothing of the request that
    /// used it can reach the next one. Its `r` number is cleared: the
    /// next request's `r` gets a new one (see `Host::next_request`), and
    /// an `r` kept from this request never matches again.
    pub fn recycle(self: Rc<Slot>) -> Option<Rc<Slot>> {
        if Rc::strong_count(&self) != 1 || Rc::weak_count(&self) != 1 {
            return None;
        }
        self.ctx.set(None);
        self.busy.set(false);
        self.object.set(0);
        self.op.borrow_mut().take();
        self.result.borrow_mut().take();
        self.out.borrow_mut().clear();
        self.abort.set(None);
        self.form.borrow_mut().take();
        self.sse.borrow_mut().take();
        self.subscriptions.close_all();
        self.dom.borrow_mut().take();
        Some(self)
    }

    /// Let `r` reach `ctx` until the guard drops (one poll of the hook).
    pub fn enter(&self, ctx: &mut Context) -> Entered<'_> {
        let prev = self.ctx.replace(Some(std::ptr::NonNull::from(ctx)));
        let prev_polled = POLLED.with(|p| p.replace(self));
        Entered {
            slot: self,
            prev,
            prev_polled,
        }
    }

    pub fn take_op(&self) -> Option<Op> {
        self.op.borrow_mut().take()
    }

    pub fn complete(&self, result: OpResult) {
        *self.result.borrow_mut() = Some(result);
    }

    pub fn with_ctx<R>(&self, f: impl FnOnce(&mut Context) -> R) -> mlua::Result<R> {
        struct Release<'a>(&'a Cell<bool>);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        match self.ctx.get() {
            Some(_) if self.busy.get() => Err(mlua::Error::runtime(
                "r cannot be used from inside one of its own methods (a logging hook during r:log)",
            )),
            // SAFETY: the pointer is set only while the hook runner polls
            // this request's coroutine, holding the `&mut Context` it came
            // from and not using it, and `busy` keeps this the only borrow.
            Some(mut ptr) => {
                self.busy.set(true);
                let _release = Release(&self.busy);
                Ok(f(unsafe { ptr.as_mut() }))
            }
            None => Err(mlua::Error::runtime(
                "the request object was used outside its hook",
            )),
        }
    }

    /// Post `op` and wait for the runner to perform it. Whatever an earlier
    /// call left behind (one that failed where the script cannot yield, a
    /// table.sort comparator say) is dropped first.
    async fn perform(&self, op: Op) -> OpResult {
        self.result.borrow_mut().take();
        *self.op.borrow_mut() = Some(op);
        std::future::poll_fn(|_| match self.result.borrow_mut().take() {
            Some(r) => std::task::Poll::Ready(r),
            // The runner sees the posted op as soon as this returns, and
            // polls again right after completing it: no waker needed.
            None => std::task::Poll::Pending,
        })
        .await
    }

    /// The next piece of the body; a failure ends the hook with its status.
    pub async fn read(&self) -> mlua::Result<Option<Bytes>> {
        match self.perform(Op::Read).await {
            OpResult::Read(result) => result.map_err(|e| self.body_error(e)),
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }

    /// The whole body (bounded by MaxRequestBody), read once and kept.
    pub async fn body(&self) -> mlua::Result<Bytes> {
        match self.perform(Op::ReadAll).await {
            OpResult::ReadAll(result) => result.map_err(|e| self.body_error(e)),
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }

    /// Have the request's form read and the `wanted` uploads saved (then
    /// `ctx.form()` has it). A body that cannot be read or parsed ends the
    /// hook with its status (the core logged why).
    pub async fn read_form(&self, wanted: form::Wanted) -> mlua::Result<()> {
        match self.perform(Op::Form(wanted)).await {
            OpResult::Form(Ok(saved)) => {
                saved.map_err(|e| mlua::Error::runtime(format!("saving an upload: {e}")))
            }
            OpResult::Form(Err(e)) => {
                self.abort.set(Some(e.status));
                Err(mlua::Error::runtime(e.reason))
            }
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }

    /// A body read failed: the hook ends with its status.
    fn body_error(&self, e: BodyError) -> mlua::Error {
        self.abort.set(Some(e.status));
        mlua::Error::runtime(format!("reading the request body: {e}"))
    }

    /// Begin the request's event stream.
    pub async fn start_sse(&self, options: axkit_sse::Options) -> mlua::Result<()> {
        match self.perform(Op::SseStart(options)).await {
            OpResult::SseStarted(r) => r.map_err(|e| mlua::Error::runtime(format!("r:sse: {e}"))),
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }

    /// Send an event or comment on the request's stream (what `r:write`
    /// buffered first): Ok(Err) when the client is gone.
    pub async fn send_frame(&self, frame: crate::sse::Frame) -> mlua::Result<std::io::Result<()>> {
        if !self.out.borrow().is_empty() {
            self.flush().await?;
        }
        match self.perform(Op::SseSend(frame)).await {
            OpResult::Written(Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                Err(mlua::Error::runtime(format!("sse:send: {e}")))
            }
            OpResult::Written(r) => Ok(r),
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }

    /// The next message of `sub`, waited for while the client is there
    /// and the worker is not draining (see [`Op::Next`]). `None` if the
    /// subscription was lost to a stray call.
    pub async fn next(
        &self,
        sub: Subscription,
        timeout: Option<Duration>,
    ) -> Option<(Subscription, Result<Bytes, Ended>)> {
        match self.perform(Op::Next(sub, timeout)).await {
            OpResult::Next(sub, got) => Some((sub, got)),
            _ => None,
        }
    }

    /// A long poll (see [`Op::LongPoll`]).
    pub async fn long_poll(
        &self,
        waiting: crate::sse::Waiting,
        timeout: Duration,
    ) -> mlua::Result<(Option<Subscription>, Result<Bytes, Ended>)> {
        match self.perform(Op::LongPoll(waiting, timeout)).await {
            OpResult::LongPolled(sub, got) => Ok((sub, got)),
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }

    /// The next message of a channel, waited for as [`next`](Self::next)
    /// waits (see [`Op::Wait`]).
    pub async fn wait(
        &self,
        wait: axkit_shared::Wait,
        timeout: Option<Duration>,
    ) -> mlua::Result<Result<Bytes, Ended>> {
        match self.perform(Op::Wait(wait, timeout)).await {
            OpResult::Waited(got) => Ok(got),
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }

    /// Send what `r:write` buffered.
    pub async fn flush(&self) -> mlua::Result<()> {
        let data = {
            let mut out = self.out.borrow_mut();
            let data = Bytes::from(std::mem::take(&mut *out));
            // A script that flushes is streaming: room for the next piece.
            out.reserve(FLUSH_AT);
            data
        };
        match self.perform(Op::Write(data)).await {
            OpResult::Written(Ok(())) => Ok(()),
            OpResult::Written(Err(e)) => {
                Err(mlua::Error::runtime(format!("writing the response: {e}")))
            }
            _ => Err(mlua::Error::runtime(STRAY)),
        }
    }
}

/// See [`Slot::enter`].
pub(crate) struct Entered<'a> {
    slot: &'a Slot,
    prev: Option<std::ptr::NonNull<Context>>,
    prev_polled: *const Slot,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // Normally `with_ctx` has released it already. A Lua error raised
        // inside it would longjmp past that release: `fast.rs` raises none
        // there, and mlua protects its calls from memory errors when
        // LuaMemoryLimit is set, but without a limit it does not (the
        // system allocator failing).
        if self.prev.is_none() {
            self.slot.busy.set(false);
        }
        self.slot.ctx.set(self.prev);
        POLLED.with(|p| p.set(self.prev_polled));
    }
}

/// Perform a posted op with the context (called by the hook runner).
pub(crate) async fn run_op(ctx: &mut Context, slot: &Slot, op: Op) -> OpResult {
    match op {
        Op::Read => OpResult::Read(ctx.read_body().await),
        Op::ReadAll => OpResult::ReadAll(ctx.read_body_all().await),
        Op::Form(wanted) => {
            let form = match ctx.read_form().await {
                Ok(form) => form,
                Err(e) => return OpResult::Form(Err(e)),
            };
            let names: Vec<&str>;
            let uploads = match &wanted {
                form::Wanted::Nothing => return OpResult::Form(Ok(Ok(()))),
                form::Wanted::All => Uploads::All,
                form::Wanted::Fields(fields) => {
                    names = fields.iter().map(String::as_str).collect();
                    Uploads::Fields(&names)
                }
            };
            OpResult::Form(Ok(form.save_uploads(uploads).await))
        }
        Op::Write(data) => OpResult::Written(ctx.write(data).await),
        Op::SseStart(options) => {
            let started = axkit_sse::EventStream::start(ctx, options).await;
            OpResult::SseStarted(started.map(|s| *slot.sse.borrow_mut() = Some(s)))
        }
        Op::SseSend(frame) => {
            // Out of its cell while it writes: nothing else can reach it
            // then (the script waits for this op).
            let Some(mut stream) = slot.sse.borrow_mut().take() else {
                return OpResult::Written(Err(std::io::Error::other("no event stream")));
            };
            let sent = frame.send(&mut stream, ctx).await;
            *slot.sse.borrow_mut() = Some(stream);
            OpResult::Written(sent)
        }
        Op::Next(mut sub, timeout) => {
            let got = wait_in_request(ctx, slot, sub.recv(), timeout).await;
            OpResult::Next(sub, got)
        }
        Op::Wait(wait, timeout) => {
            OpResult::Waited(wait_in_request(ctx, slot, wait, timeout).await)
        }
        Op::LongPoll(waiting, timeout) => match waiting {
            crate::sse::Waiting::Channel(wait) => {
                OpResult::LongPolled(None, axkit_sse::long_poll(ctx, wait, timeout).await)
            }
            crate::sse::Waiting::Subscription(mut sub) => {
                let got = axkit_sse::long_poll(ctx, sub.recv(), timeout).await;
                OpResult::LongPolled(Some(sub), got)
            }
        },
    }
}

/// Wait for `until` while the client is there and the worker is not
/// draining, on the request's event stream if it has one (its heartbeats
/// go out meanwhile).
async fn wait_in_request<F: std::future::Future>(
    ctx: &mut Context,
    slot: &Slot,
    until: F,
    timeout: Option<Duration>,
) -> Result<F::Output, Ended> {
    let stream = slot.sse.borrow_mut().take();
    match stream {
        Some(mut stream) => {
            let got = stream.wait(ctx, until, timeout).await;
            *slot.sse.borrow_mut() = Some(stream);
            got
        }
        None => axkit_sse::wait_for(ctx, until, timeout).await,
    }
}

/// Kept in the context's state: `r` for this request, for its later hooks.
pub(crate) struct RequestState {
    pub slot: Rc<Slot>,
    pub object: LightUserData,
    /// `LuaTimeLimit` of the request's Location.
    pub limit: std::time::Duration,
    /// The request-target this state belongs to: after an internal
    /// redirect the context carries on with a new request, which gets a
    /// fresh `r` (its body, form and Location are not the old one's).
    pub uri: String,
}

fn level(name: &str) -> mlua::Result<Level> {
    Level::parse(name).ok_or_else(|| mlua::Error::runtime(format!("unknown log level `{name}`")))
}

/// Append the arguments of `r:write(...)`/`r:log(level, ...)` to `out`,
/// joined with `sep`, numbers and booleans converted as `print` does.
fn append(out: &mut BytesMut, args: &mlua::MultiValue, sep: &str) -> mlua::Result<()> {
    for (i, v) in args.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(sep.as_bytes());
        }
        match v {
            mlua::Value::String(s) => out.extend_from_slice(&s.as_bytes()),
            other => out.extend_from_slice(other.to_string()?.as_bytes()),
        }
    }
    Ok(())
}

/// Give `r` its methods: the ones below, and those every handler calls
/// (`r:param`, `r:write`…), in `fast.rs`.
///
/// `r` is a light userdata holding a number unique to the request (see
/// `Host::next_request`), and these methods are the `__index` of the
/// metatable that all light userdata share. Making it costs nothing and
/// leaves nothing to collect, where an mlua userdata (with its finalizer)
/// cost about 2,000 instructions per request and a table 700. Methods
/// recognise their request by that number (see [`with_polled`]); an `r`
/// kept past its request never matches again.
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let m = Methods {
        lua,
        table: lua.create_table()?,
    };

    // The request.
    m.sync("headers", |lua, _, c, ()| {
        let t = lua.create_table()?;
        for (name, value) in c.request.headers() {
            let name = name.to_ascii_lowercase();
            let value = String::from_utf8_lossy(value);
            let joined = match t.raw_get::<Option<String>>(name.as_str())? {
                Some(prev) => format!("{prev}, {value}"),
                None => value.into_owned(),
            };
            t.raw_set(name, joined)?;
        }
        Ok(t)
    })?;
    // The client as `Context::client` resolves it: behind a trusted
    // proxy, the one it forwarded for (its port nil when not given).
    m.sync("peer", |_, _, c, ()| {
        let addr = c.client().addr;
        Ok((addr.ip().to_string(), Some(addr.port()).filter(|&p| p != 0)))
    })?;
    m.sync("scheme", |_, _, c, ()| Ok(c.client().scheme()))?;
    // Without the port, as nginx's `$host` and Caddy's `{host}`;
    // `r:authority()` keeps it.
    m.sync("host", |_, _, c, ()| Ok(c.host().map(str::to_string)))?;
    m.sync("authority", |_, _, c, ()| {
        Ok(c.authority().map(str::to_string))
    })?;
    m.sync("location", |_, _, c, ()| {
        Ok(c.location_prefix().to_string())
    })?;
    m.sync("worker", |_, _, c, ()| {
        let worker = c.worker();
        Ok((worker.index(), worker.count()))
    })?;
    // A long poll made by hand (`shared.wait`, `sub:next`) that the
    // client sends again: a full worker may end it for a new client, as
    // it ends `r:sse` and `r:long_poll`, which mark themselves.
    m.sync("set_reclaimable", |_, _, c, ()| {
        c.set_reclaimable();
        Ok(())
    })?;
    m.sync("params", |lua, _, c, ()| {
        let t = lua.create_table()?;
        for (k, v) in c.request.query_params() {
            if !t.contains_key(k.as_ref())? {
                t.set(
                    lua.create_string(k.as_ref())?,
                    lua.create_string(v.as_ref())?,
                )?;
            }
        }
        Ok(t)
    })?;
    // Decoded as `r:set_cookie` encodes.
    m.sync("cookie", |lua, _, c, name: String| {
        c.request
            .cookie(&name)
            .map(|v| lua.create_string(axkit_session::cookie::decode_value(v)))
            .transpose()
    })?;
    m.sync(
        "note",
        |_, _, c, (name, value): (String, Option<String>)| {
            Ok(match value {
                Some(v) => c.notes.insert(name, v),
                None => c.notes.get(&name).cloned(),
            })
        },
    )?;
    m.sync("notes", |_, _, c, ()| Ok(c.notes.clone()))?;
    m.sync("document", |lua, _, c, ()| crate::xml::request_text(lua, c))?;
    m.sync("dom", |lua, slot, c, ()| {
        crate::xml::request_dom(lua, slot, c)
    })?;
    m.sync("set_document", |_, _, c, doc: Value| {
        crate::xml::set_document(c, doc)
    })?;
    m.sync("filename", |_, _, c, ()| {
        Ok(c.filename.as_ref().map(|p| p.display().to_string()))
    })?;
    // Only a file a script may open itself (see `Files::for_request`). The
    // plugin that serves it opens it beneath `ctx.doc_root`, so the root
    // it was checked against goes there, and the filename is that root's
    // path joined: a relative path is taken from ServerRoot (the server
    // never changes its working directory), and a file beneath a
    // LuaFileRoot is opened under the `file` API's rule, not from `/`
    // under `FollowSymlinks`.
    m.sync(
        "set_filename",
        |lua, _, c, (path, info): (String, Option<String>)| {
            let (root, rel) = request_file(lua, c, Path::new(&path))
                .map_err(|e| mlua::Error::runtime(format!("r:set_filename {path}: {e}")))?;
            c.filename = Some(root.path().join(rel).into());
            c.doc_root = Some(root);
            c.metadata = None;
            c.file = None;
            if let Some(info) = info {
                c.path_info = info;
            }
            Ok(())
        },
    )?;
    m.sync("path_info", |_, _, c, ()| Ok(c.path_info.clone()))?;
    m.sync("user", |_, _, c, ()| Ok(c.user.clone()))?;
    m.sync(
        "set_user",
        |_, _, c, (user, kind): (String, Option<String>)| {
            c.user = Some(user);
            c.auth_type = kind;
            Ok(())
        },
    )?;
    m.sync("failure", |lua, _, c, ()| {
        c.failure
            .clone()
            .map(|f| {
                let t = lua.create_table()?;
                t.set("plugin", f.plugin)?;
                t.set("hook", f.hook)?;
                t.set("message", f.message)?;
                Ok(t)
            })
            .transpose()
    })?;

    // The body.
    m.suspending("body", |lua, slot, ()| async move {
        let body = slot.body().await?;
        lua.create_string(&body)
    })?;
    m.suspending("read", |lua, slot, ()| async move {
        match slot.read().await? {
            Some(chunk) => Ok(Some(lua.create_string(&chunk)?)),
            None => Ok(None),
        }
    })?;
    // Parsed once (by the core, which keeps it for every plugin of the
    // request); a later call that asks for uploads the earlier ones did
    // not saves them and adds their paths to the same table.
    m.suspending("form", |lua, slot, options: Option<Table>| async move {
        let wanted = form::Wanted::from_options(options.as_ref())?;
        let made = slot.form.borrow().clone();
        if let (Some(t), form::Wanted::Nothing) = (&made, &wanted) {
            return Ok(t.clone());
        }
        slot.read_form(wanted).await?;
        let t = slot.with_ctx(|c| match c.form() {
            Some(parsed) => form::table(&lua, parsed, made),
            None => Err(mlua::Error::runtime("r:form: the form is gone")),
        })??;
        *slot.form.borrow_mut() = Some(t.clone());
        Ok(t)
    })?;

    // The response.
    m.sync("remove_header", |_, _, c, name: String| {
        c.response.headers.remove(&name);
        Ok(())
    })?;
    m.sync("response_header", |_, _, c, name: String| {
        Ok(c.response.headers.get(&name).map(str::to_string))
    })?;
    m.sync(
        "set_cookie",
        |_, _, c, (name, value, opts): (String, mlua::LuaString, Option<Table>)| {
            let cookie = form::set_cookie(&name, &value.as_bytes(), opts.as_ref())?;
            c.response.headers.add("Set-Cookie", cookie);
            Ok(())
        },
    )?;
    m.suspending("flush", |_, slot, ()| async move { slot.flush().await })?;
    m.suspending(
        "send_file",
        |lua, slot, (path, content_type): (String, Option<String>)| async move {
            let fail =
                |e: &dyn std::fmt::Display| mlua::Error::runtime(format!("send_file {path}: {e}"));
            // Beneath the DocumentRoot or a LuaFileRoot (see
            // `Files::for_request`); with O_NONBLOCK (DocRoot's read
            // flags), so that opening a FIFO does not wait (on the
            // blocking pool) for a writer that may never come. Only a
            // regular file is sent.
            let full = PathBuf::from(&path);
            let (root, rel) = slot
                .with_ctx(|c| request_file(&lua, c, &full))?
                .map_err(|e| fail(&e))?;
            let open = move || root.open_rel(&rel, READ_FLAGS, Io::Blocking);
            let file = tokio::task::spawn_blocking(open)
                .await
                .map_err(|e| fail(&e))?
                .map_err(|e| fail(&e))?;
            let metadata = file.metadata().map_err(|e| fail(&e))?;
            if !metadata.is_file() {
                return Err(fail(&"not a regular file"));
            }
            let len = metadata.len();
            slot.with_ctx(|c| {
                if let Some(t) = content_type {
                    c.response.headers.set("Content-Type", t);
                }
                c.response.body = Body::File {
                    file,
                    offset: 0,
                    len,
                };
            })?;
            // The file is the body: drop anything `r:write` buffered.
            slot.out.borrow_mut().clear();
            Ok(crate::script::OK)
        },
    )?;
    m.sync(
        "redirect",
        |_, slot, c, (location, status): (String, Option<u16>)| {
            c.response.status = status.unwrap_or(302);
            c.response.headers.set("Location", location);
            c.response.body = Body::Empty;
            slot.out.borrow_mut().clear();
            Ok(crate::script::DONE)
        },
    )?;
    m.sync("internal_redirect", |_, _, c, uri: String| {
        c.internal_redirect(&uri);
        Ok(crate::script::DONE)
    })?;
    m.sync("log", |_, _, c, (lvl, rest): (String, mlua::MultiValue)| {
        let level = level(&lvl)?;
        let mut text = BytesMut::new();
        append(&mut text, &rest, " ")?;
        c.log(level, &axkit::plugin::escape_log_bytes(&text));
        Ok(())
    })?;

    crate::fast::install(lua, &m.table)?;
    crate::template::install_methods(lua, &m.table)?;
    crate::sse::install_methods(lua, &m.table)?;
    let meta = lua.create_table()?;
    meta.raw_set("__index", m.table)?;
    // Shared by every script in the worker (and every `r`): hidden from
    // getmetatable so that no script can rewrite another's methods.
    meta.raw_set("__metatable", false)?;
    lua.set_type_metatable::<LightUserData>(Some(meta));
    Ok(())
}

/// The answer to a body read or write was that of another call (posted
/// from where the script could not wait for it).
const STRAY: &str = "r:read, r:body, r:flush, r:sse, r:long_poll, shared.wait, an event stream's \
                     calls and a subscription's waits cannot be used where the script cannot yield \
                     (a metamethod, a table.sort comparator, a gsub callback)";

/// The error of a method called with anything but the `r` of the running
/// hook.
pub(crate) const OUTSIDE: &str = "the request object was used outside its hook";

/// The slot of `r`, if it is the `r` of the running hook.
pub(crate) fn polled_slot(r: &Value) -> mlua::Result<Rc<Slot>> {
    with_polled(r.to_pointer() as usize, |slot, _| slot.rc())
        .flatten()
        .ok_or_else(|| mlua::Error::runtime(OUTSIDE))
}

/// Registers the methods of `r` written with mlua.
struct Methods<'a> {
    lua: &'a Lua,
    table: Table,
}

impl Methods<'_> {
    /// A method that runs with the request's context.
    fn sync<A, R>(
        &self,
        name: &str,
        f: impl Fn(&Lua, &Slot, &mut Context, A) -> mlua::Result<R> + 'static,
    ) -> mlua::Result<()>
    where
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        let func = self
            .lua
            .create_function(move |lua, (r, args): (Value, A)| {
                with_polled(r.to_pointer() as usize, |slot, c| f(lua, slot, c, args))
                    .unwrap_or_else(|| Err(mlua::Error::runtime(OUTSIDE)))
            })?;
        self.table.raw_set(name, func)
    }

    /// A method that may suspend the hook (it reaches the context through
    /// the slot, only while the hook is being polled).
    fn suspending<A, R, F>(
        &self,
        name: &str,
        f: impl Fn(Lua, Rc<Slot>, A) -> F + 'static,
    ) -> mlua::Result<()>
    where
        A: FromLuaMulti + 'static,
        R: IntoLuaMulti,
        F: std::future::Future<Output = mlua::Result<R>> + 'static,
    {
        let f = Rc::new(f);
        let func = self
            .lua
            .create_async_function(move |lua, (r, args): (Value, A)| {
                let f = f.clone();
                let slot = polled_slot(&r);
                async move { f(lua, slot?, args).await }
            })?;
        self.table.raw_set(name, func)
    }
}

/// The root a file named by a request hook is opened beneath, and its path
/// relative to it.
fn request_file(lua: &Lua, ctx: &Context, path: &Path) -> Result<(DocRoot, PathBuf), String> {
    let files = lua
        .app_data_ref::<Rc<Files>>()
        .map(|f| f.clone())
        .ok_or_else(|| String::from("no file roots"))?;
    files.for_request(ctx, path)
}
