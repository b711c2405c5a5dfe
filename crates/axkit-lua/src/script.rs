//! A script as a [`Plugin`]: each `hook_<name>` the script defines becomes
//! that hook, run in its own coroutine that suspends only its own request,
//! and its return value becomes the hook's [`Outcome`].

use std::ffi::c_int;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use axkit::plugin::{Body, BodyChunk, ConnInfo, LogRecord, Worker};
use axkit::{hook, Context, Hook, HookFuture, Hooks, Level, Outcome, Plugin};
use bytes::Bytes;
use mlua::{ffi, IntoLuaMulti, LightUserData, Lua, LuaString, MultiValue, Thread, Value};

use crate::host::{Host, Script};
use crate::request::{run_op, RequestState, Slot};

/// What hooks return, as Lua sees them (AxKit2's names).
pub(crate) const OK: i64 = 0;
pub(crate) const DECLINED: i64 = -1;
pub(crate) const DONE: i64 = -2;

pub(crate) struct ScriptPlugin {
    pub host: Rc<Host>,
    pub script: Rc<Script>,
    /// `LuaReload On`: look at the file's mtime before each hook.
    pub reload: bool,
    /// `LuaTimeLimit` for hooks without a request (connection, logging).
    pub global_limit: Duration,
}

/// What a hook returned: the outcome, and a second value
/// (`hook_write_body_data`'s replacement data).
type Returned = (Value, Value);

/// How far [`ScriptPlugin::begin`] got.
enum Begun {
    Ended(Ended),
    /// The coroutine waits: [`ScriptPlugin::carry_on`] drives it.
    Suspended {
        slot: Rc<Slot>,
        limit: Duration,
        thread: Thread,
    },
}

/// A request hook's result: its outcome, the second value it returned, and
/// output still to stream.
enum Ended {
    Done(Outcome, Value),
    Streaming(Outcome, Value, Bytes),
}

/// How a hook's coroutine ended.
enum End {
    Finished(mlua::Result<Returned>),
    Killed(String),
}

/// What one poll of a suspended hook's coroutine gave.
enum Step {
    End(End),
    Op(crate::request::Op),
}

impl ScriptPlugin {
    fn describe(&self, hook: Hook) -> String {
        format!("{}: hook_{}", self.script.path.display(), hook.name())
    }

    /// The script, after reloading it if asked to. A script that no
    /// longer loads keeps its previous version; the error is handed to
    /// `report` (once per change of the file).
    fn script(&self, report: impl FnOnce(&str)) -> &Script {
        if self.reload {
            if let Err(e) = self.host.reload_if_changed(&self.script) {
                report(&format!(
                    "LuaReload: keeping the previous version of {}: {e}",
                    self.script.path.display()
                ));
            }
        }
        &self.script
    }

    /// Run a hook that has a request: `hook_<name>(r, extra…)`.
    async fn request_hook(
        &self,
        hook: Hook,
        ctx: &mut Context,
        extra: impl IntoLuaMulti,
    ) -> (Outcome, Value) {
        let extra = match extra.into_lua_multi(&self.host.lua) {
            Ok(extra) => extra,
            Err(e) => {
                let message = format!("{}: {e}", self.describe(hook));
                return (Outcome::Error(message), Value::Nil);
            }
        };
        let begun = self.begin(hook, ctx, Some(extra));
        self.carry_on(hook, ctx, begun).await
    }

    /// As much of a request hook as runs without awaiting: all of it for a
    /// hook that neither waits nor streams (most do), which so needs no
    /// future of its own (see `request_hooks!`).
    fn begin(&self, hook: Hook, ctx: &mut Context, extra: Option<MultiValue>) -> Begun {
        let script = self.script(|e| ctx.log(Level::Error, e));
        let Some(id) = script.function_id(hook) else {
            return Begun::Ended(Ended::Done(Outcome::Declined, Value::Nil));
        };
        let (slot, object, limit) = self.request_object(ctx);
        let thread = match self.host.thread(id, || script.function(hook)) {
            Ok(thread) => thread,
            Err(e) => return Begun::Ended(Ended::Done(Outcome::Error(e.to_string()), Value::Nil)),
        };
        // The first run is a plain resume: most hooks finish in it, without
        // the machinery of an async call. One that suspends (it waits in a
        // primitive, polled once with a no-op waker) or yields continues as
        // an async thread, which polls that primitive again with the real
        // waker as soon as it resumes.
        let first = {
            let _slice = self.host.clock.arm(limit, thread.state());
            let _entered = slot.enter(ctx);
            let result = self.first_run(&thread, object, extra);
            match (self.host.clock.killed(), result) {
                (Some(at), _) => Some(End::Killed(at)),
                (None, Some(result)) => Some(End::Finished(result)),
                (None, None) => None,
            }
        };
        match first {
            Some(end) => {
                if matches!(end, End::Finished(Ok(_))) {
                    self.host.coroutines.put(thread);
                }
                let ended = self.end(hook, ctx, &slot, limit, end);
                // Unless the context keeps it for the request's next hooks.
                if let Some(spare) = slot.recycle() {
                    self.host.spare_slot.set(Some(spare));
                }
                Begun::Ended(ended)
            }
            None => Begun::Suspended {
                slot,
                limit,
                thread,
            },
        }
    }

    /// The rest of a request hook after [`ScriptPlugin::begin`].
    async fn carry_on(&self, hook: Hook, ctx: &mut Context, begun: Begun) -> (Outcome, Value) {
        let ended = match begun {
            Begun::Ended(ended) => ended,
            Begun::Suspended {
                slot,
                limit,
                thread,
            } => {
                let end = self.drive(thread, ctx, &slot, limit).await;
                self.end(hook, ctx, &slot, limit, end)
            }
        };
        match ended {
            Ended::Done(outcome, second) => (outcome, second),
            Ended::Streaming(outcome, second, out) => match ctx.write(out).await {
                Ok(()) => (outcome, second),
                Err(e) => (
                    Outcome::Error(format!("{}: {e}", self.describe(hook))),
                    second,
                ),
            },
        }
    }

    /// What a hook's coroutine ending means, its output handed to the core:
    /// as the whole body, or (the head having gone) the rest of the stream,
    /// still to be written.
    fn end(&self, hook: Hook, ctx: &mut Context, slot: &Slot, limit: Duration, end: End) -> Ended {
        crate::xml::give_back(slot, ctx);
        let (first, second) = match end {
            End::Finished(Ok(values)) => values,
            End::Finished(Err(e)) => {
                let outcome = match (slot.abort.take(), crate::db::unavailable(&e)) {
                    (Some(status), _) => Outcome::Status(status),
                    // A database that could not serve: the server's
                    // trouble of the moment, not the script's bug.
                    (None, Some(db)) => {
                        let script = format!("{}: ", self.describe(hook));
                        axkit_db::log_unavailable(ctx, db, &script);
                        Outcome::Status(503)
                    }
                    (None, None) => Outcome::Error(format!("{}: {e}", self.describe(hook))),
                };
                return Ended::Done(outcome, Value::Nil);
            }
            End::Killed(at) => {
                let message = format!(
                    "{}: LuaTimeLimit ({limit:?}) exceeded, stopped at {at}",
                    self.describe(hook)
                );
                return Ended::Done(Outcome::Error(message), Value::Nil);
            }
        };
        let outcome = self.outcome(hook, &first);
        let out = Bytes::from(std::mem::take(&mut *slot.out.borrow_mut()));
        if out.is_empty() {
            Ended::Done(outcome, second)
        } else if ctx.head_sent() {
            Ended::Streaming(outcome, second, out)
        } else {
            ctx.response.body = Body::Bytes(out);
            Ended::Done(outcome, second)
        }
    }

    /// Start `thread` (reset to a hook function) with `r` and `extra` (none
    /// for most hooks, which spares making and dropping an empty list):
    /// what the function returned or raised, or `None` if it suspended or
    /// yielded (its stack then emptied, ready for `into_async`).
    ///
    /// Straight through the Lua C API rather than mlua's `Thread::resume`,
    /// whose checks and conversions cost about 600 instructions, which is
    /// as much as two `r:` calls; the error path builds the same errors as
    /// mlua does (a message with the coroutine's traceback, or the error a
    /// Rust function raised).
    fn first_run(
        &self,
        thread: &Thread,
        object: LightUserData,
        extra: Option<MultiValue>,
    ) -> Option<mlua::Result<Returned>> {
        let lua = &self.host.lua;
        let ts = thread.state();
        let nextra = extra.as_ref().map_or(0, |e| e.len() as c_int);
        // SAFETY: `ts` is a coroutine of this state, holding the function
        // to run (Thread::reset): push its arguments and resume it.
        unsafe {
            // A coroutine's stack has room for `r` (LUA_MINSTACK slots at
            // least), not always for more.
            if nextra > 0 && ffi::lua_checkstack(ts, nextra + 1) == 0 {
                return Some(Err(mlua::Error::StackError));
            }
            ffi::lua_pushlightuserdata(ts, object.0);
            if let Some(extra) = extra.filter(|_| nextra > 0) {
                if let Err(e) = lua.exec_raw::<()>(extra, |l| ffi::lua_xmove(l, ts, nextra)) {
                    return Some(Err(e));
                }
            }
            let mut nres = 0;
            match ffi::lua_resume(ts, std::ptr::null_mut(), nextra + 1, &mut nres) {
                ffi::LUA_OK => {
                    let values = returned(lua, ts, nres);
                    ffi::lua_settop(ts, 0);
                    Some(values)
                }
                ffi::LUA_YIELD => {
                    ffi::lua_settop(ts, 0);
                    None
                }
                status => Some(Err(raised(lua, ts, status))),
            }
        }
    }

    /// Carry on with a hook's coroutine that suspended in its first run,
    /// performing the ops its `r` posts, until it finishes or is stopped.
    async fn drive(&self, thread: Thread, ctx: &mut Context, slot: &Slot, limit: Duration) -> End {
        let state = thread.state();
        // The state mlua resumes the coroutine from, where it makes the
        // message of an error object the hook ends in: the slice covers it.
        let resumer = self.host.lua.exec_raw_lua(|raw| raw.state());
        let mut fut = match thread.into_async::<Returned>(()) {
            Ok(fut) => fut,
            Err(e) => return End::Finished(Err(e)),
        };
        let mut op = slot.take_op();
        loop {
            if let Some(op) = op.take() {
                slot.complete(run_op(ctx, slot, op).await);
                // An op that finishes at once (a flush with nothing to
                // send) takes none of tokio's budget: a script looping on
                // such ops would keep the worker for itself.
                tokio::task::coop::consume_budget().await;
            }
            let step = poll_fn(|cx| {
                let _slice = self.host.clock.arm_resumed(limit, state, resumer);
                let _entered = slot.enter(ctx);
                let poll = Pin::new(&mut fut).poll(cx);
                if let Some(at) = self.host.clock.killed() {
                    return Poll::Ready(Step::End(End::Killed(at)));
                }
                match poll {
                    Poll::Ready(r) => Poll::Ready(Step::End(End::Finished(r))),
                    Poll::Pending => match slot.take_op() {
                        Some(op) => Poll::Ready(Step::Op(op)),
                        None => Poll::Pending,
                    },
                }
            })
            .await;
            match step {
                Step::Op(next) => op = Some(next),
                Step::End(end) => return end,
            }
        }
    }

    /// The request object of this request and its time limit. It is made
    /// by the request's first Lua hook and kept in the context for the
    /// following ones, unless this worker's scripts have a single hook that
    /// sees requests and it runs once per request (`hook_response` alone,
    /// say): then nothing could share it, and keeping it would cost more
    /// than the rest of a small handler.
    fn request_object(&self, ctx: &mut Context) -> (Rc<Slot>, LightUserData, Duration) {
        let shared = self.host.request_hooks.get() > 1;
        if shared {
            if let Some(state) = ctx.state::<RequestState>() {
                if state.uri == ctx.request.uri() {
                    return (state.slot.clone(), state.object, state.limit);
                }
            }
        }
        // Not `Rc::default()`, which would leave the slot without its own
        // `Rc` (`Slot::new` sets it).
        let slot = match self.host.spare_slot.take() {
            Some(slot) => slot,
            None => Slot::new(),
        };
        let object = self.host.next_request();
        slot.object.set(object.0 as usize);
        let limit = *ctx.config().get(&crate::LUA_TIME_LIMIT);
        if !shared {
            return (slot, object, limit);
        }
        ctx.set_state(RequestState {
            slot: slot.clone(),
            object,
            limit,
            uri: ctx.request.uri().to_string(),
        });
        (slot, object, limit)
    }

    /// Run a hook without a request (connection events, log lines).
    async fn plain_hook(&self, hook: Hook, args: impl IntoLuaMulti) -> Outcome {
        let report = |e: &str| axkit::plugin::log_to_stderr(Level::Error, e);
        let Some(func) = self.script(report).function(hook) else {
            return Outcome::Declined;
        };
        let limit = self.global_limit;
        let result = crate::host::run_limited::<Value>(
            &self.host.lua,
            &self.host.coroutines,
            &self.host.clock,
            limit,
            &func,
            args,
        )
        .await;
        match result {
            Ok(Ok(value)) => self.outcome(hook, &value),
            Ok(Err(e)) => Outcome::Error(format!("{}: {e}", self.describe(hook))),
            Err(at) => Outcome::Error(format!(
                "{}: LuaTimeLimit ({limit:?}) exceeded, stopped at {at}",
                self.describe(hook)
            )),
        }
    }

    /// What a returned value means: nil or DECLINED, OK, DONE, or an HTTP
    /// status; anything else is the script's bug, reported as such.
    fn outcome(&self, hook: Hook, value: &Value) -> Outcome {
        let code = match value {
            Value::Nil => return Outcome::Declined,
            Value::Integer(i) => Some(*i),
            Value::Number(n) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        };
        match code {
            Some(OK) => Outcome::Ok,
            Some(DECLINED) => Outcome::Declined,
            Some(DONE) => Outcome::Done,
            Some(s @ 100..=999) => Outcome::Status(s as u16),
            _ => {
                // No metamethods: this runs outside the time limit, and a
                // returned table's __tostring could loop.
                let shown = match value {
                    Value::String(s) => format!("{:?}", s.to_string_lossy()),
                    Value::Integer(i) => i.to_string(),
                    Value::Number(n) => n.to_string(),
                    Value::Boolean(b) => b.to_string(),
                    v => format!("a {}", v.type_name()),
                };
                Outcome::Error(format!(
                    "{} returned {shown}; expected OK, DECLINED, DONE, an HTTP status or nil",
                    self.describe(hook)
                ))
            }
        }
    }
}

/// The first two of the `nres` values a coroutine returned; numbers and nil
/// (what hooks return) are read directly.
///
/// # Safety
/// `ts` is a finished coroutine of `lua` with `nres` results on its stack.
unsafe fn returned(lua: &Lua, ts: *mut ffi::lua_State, nres: c_int) -> mlua::Result<Returned> {
    let first = ffi::lua_gettop(ts) - nres + 1;
    let value = match (nres, ffi::lua_type(ts, first)) {
        (0, _) | (1, ffi::LUA_TNIL) => Value::Nil,
        (1, ffi::LUA_TNUMBER) => {
            let mut isint = 0;
            let i = ffi::lua_tointegerx(ts, first, &mut isint);
            if isint != 0 {
                Value::Integer(i)
            } else {
                Value::Number(ffi::lua_tonumberx(ts, first, std::ptr::null_mut()))
            }
        }
        _ => {
            let n = nres.min(2);
            ffi::lua_pop(ts, nres - n);
            return lua.exec_raw((), |l| ffi::lua_xmove(ts, l, n));
        }
    };
    Ok((value, Value::Nil))
}

/// The error a coroutine died of (`status`), as mlua makes it: a Rust
/// function's error as it was raised; anything else as a runtime (or
/// memory) error whose message ends with the coroutine's traceback.
///
/// The traceback is built in a protected call on the running state: near
/// `LuaMemoryLimit` its allocations may fail, and on the dead coroutine
/// itself such an error would have no handler (a Lua panic, which aborts
/// the worker). If it cannot be built, the message goes without it.
///
/// # Safety
/// `ts` is a coroutine of `lua` that stopped with an error (on its stack).
unsafe fn raised(lua: &Lua, ts: *mut ffi::lua_State, status: c_int) -> mlua::Error {
    // Moving the value allocates nothing; the coroutine's frames stay.
    let error = match lua.exec_raw::<Value>((), |l| ffi::lua_xmove(ts, l, 1)) {
        Ok(Value::Error(e)) => return *e,
        Ok(error) => error,
        Err(e) => return e,
    };
    let is_message = matches!(
        error,
        Value::String(_) | Value::Integer(_) | Value::Number(_)
    );
    let traceback = lua.exec_raw::<LuaString>(&error, |l| {
        let message = if is_message {
            ffi::lua_tolstring(l, -1, std::ptr::null_mut())
        } else {
            std::ptr::null()
        };
        ffi::luaL_traceback(l, ts, message, 0);
        ffi::lua_replace(l, -2);
    });
    // Never a table's `__tostring`: it would run here, outside the slice
    // and its time limit (one that loops hung the worker), as `outcome`
    // never runs one for a returned value.
    let shown = || match &error {
        Value::String(s) => s.to_string_lossy(),
        Value::Table(_) => "(error object is a table value)".to_string(),
        other => other
            .to_string()
            .unwrap_or_else(|_| other.type_name().to_string()),
    };
    let text = match traceback {
        Ok(text) if is_message => text.to_string_lossy(),
        Ok(text) => format!("{}\n{}", shown(), text.to_string_lossy()),
        Err(_) => shown(),
    };
    match status {
        ffi::LUA_ERRMEM => mlua::Error::MemoryError(text),
        _ => mlua::Error::RuntimeError(text),
    }
}

/// A connection as hooks without a request see it.
/// Set the `axkit_lua_memory_bytes` gauge of the metrics to what the
/// worker's Lua state holds, every second until the worker drains (a
/// no-op without the metrics: no `stats` or `console` plugin loaded).
async fn report_memory(host: std::rc::Weak<Host>, worker: Worker) {
    let gauge = axkit::plugin::metrics::Gauge::register(
        "axkit_lua_memory_bytes",
        "Memory held by the workers' Lua states, updated every second.",
    );
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = worker.stopping() => return,
        }
        let Some(host) = host.upgrade() else { return };
        gauge.set(host.lua.used_memory() as i64);
    }
}

fn conn_table(host: &Host, conn: &ConnInfo) -> mlua::Result<mlua::Table> {
    let t = host.lua.create_table()?;
    t.set("id", conn.id)?;
    let client = conn.client();
    t.set("peer", client.ip().to_string())?;
    t.set("port", client.port())?;
    t.set("local", conn.local.to_string())?;
    Ok(t)
}

impl ScriptPlugin {
    /// A hook that takes the request alone: finished at once when the
    /// script's function neither waits nor streams (no boxed future).
    #[inline]
    fn on_request<'a>(&'a self, which: Hook, ctx: &'a mut Context) -> HookFuture<'a> {
        match self.begin(which, ctx, None) {
            Begun::Ended(Ended::Done(outcome, _)) => outcome.into(),
            begun => hook(async move { self.carry_on(which, ctx, begun).await.0 }),
        }
    }
}

// Every hook is written out: `#[axkit::plugin]` derives the hooks that can
// be called from these methods, and the script's own functions narrow them
// (`enabled_hooks`).
#[axkit::plugin]
impl Plugin for ScriptPlugin {
    /// The hooks the script defines a function for.
    fn enabled_hooks(&self, _written: Hooks) -> Hooks {
        self.script.hooks
    }

    fn post_read_request<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::PostReadRequest, ctx)
    }

    fn uri_translation<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::UriTranslation, ctx)
    }

    fn mime_map<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::MimeMap, ctx)
    }

    fn access_control<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::AccessControl, ctx)
    }

    fn authentication<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::Authentication, ctx)
    }

    fn authorization<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::Authorization, ctx)
    }

    fn fixup<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::Fixup, ctx)
    }

    fn xmlresponse<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::XmlResponse, ctx)
    }

    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::Response, ctx)
    }

    fn before_head<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::BeforeHead, ctx)
    }

    fn response_sent<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::ResponseSent, ctx)
    }

    fn error<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        self.on_request(Hook::Error, ctx)
    }

    fn body_data<'a>(&'a self, ctx: &'a mut Context, chunk: &'a [u8]) -> HookFuture<'a> {
        hook(async move {
            let data = match self.host.lua.create_string(chunk) {
                Ok(s) => s,
                Err(e) => return Outcome::Error(e.to_string()),
            };
            self.request_hook(Hook::BodyData, ctx, data).await.0
        })
    }

    /// `hook_write_body_data(r, data, last)`; returning `OK, new_data`
    /// replaces the chunk.
    fn write_body_data<'a>(
        &'a self,
        ctx: &'a mut Context,
        chunk: &'a mut BodyChunk,
    ) -> HookFuture<'a> {
        hook(async move {
            let data = match self.host.lua.create_string(&chunk.data) {
                Ok(s) => s,
                Err(e) => return Outcome::Error(e.to_string()),
            };
            let (outcome, second) = self
                .request_hook(Hook::WriteBodyData, ctx, (data, chunk.last))
                .await;
            if let Value::String(s) = second {
                chunk.data = Bytes::copy_from_slice(&s.as_bytes());
            }
            outcome
        })
    }

    fn connect<'a>(&'a self, conn: &'a ConnInfo) -> HookFuture<'a> {
        hook(async move {
            match conn_table(&self.host, conn) {
                Ok(t) => self.plain_hook(Hook::Connect, t).await,
                Err(e) => Outcome::Error(e.to_string()),
            }
        })
    }

    fn pre_request<'a>(&'a self, conn: &'a ConnInfo) -> HookFuture<'a> {
        hook(async move {
            match conn_table(&self.host, conn) {
                Ok(t) => self.plain_hook(Hook::PreRequest, t).await,
                Err(e) => Outcome::Error(e.to_string()),
            }
        })
    }

    fn disconnect<'a>(&'a self, conn: &'a ConnInfo) -> HookFuture<'a> {
        hook(async move {
            match conn_table(&self.host, conn) {
                Ok(t) => self.plain_hook(Hook::Disconnect, t).await,
                Err(e) => Outcome::Error(e.to_string()),
            }
        })
    }

    /// The worker's timers start, and its Lua memory is reported to the
    /// metrics (once, whichever script plugin is first).
    fn worker_start(&self, worker: &Worker) {
        if self.host.timers.start(worker) {
            tokio::task::spawn_local(report_memory(Rc::downgrade(&self.host), worker.clone()));
        }
    }

    /// `hook_logging(level, message, peer)`.
    fn logging<'a>(&'a self, record: &'a LogRecord<'a>) -> HookFuture<'a> {
        hook(async move {
            let peer = record.peer.map(|p| p.ip().to_string());
            let outcome = self
                .plain_hook(Hook::Logging, (record.level.as_str(), record.message, peer))
                .await;
            if let Outcome::Error(e) = &outcome {
                // A broken log sink cannot log through itself.
                axkit::plugin::log_to_stderr(Level::Error, e);
            }
            outcome
        })
    }
}
