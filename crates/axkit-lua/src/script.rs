//! A script as a [`Plugin`]: each `hook_<name>` the script defines becomes
//! that hook, run in its own coroutine that suspends only its own request,
//! and its return value becomes the hook's [`Outcome`].

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use axkit::config::DirectiveId;
use axkit::plugin::{Body, BodyChunk, ConnInfo, LogRecord};
use axkit::{hook, Context, Hook, HookFuture, Hooks, Level, Outcome, Plugin};
use bytes::Bytes;
use mlua::{IntoLuaMulti, LightUserData, Thread, Value};

use crate::host::{Host, Script};
use crate::request::{run_op, RequestState, Slot};

/// What hooks return, as Lua sees them (AxKit2's names).
pub(crate) const OK: i64 = 0;
pub(crate) const DECLINED: i64 = -1;
pub(crate) const DONE: i64 = -2;

/// The default `LuaTimeLimit`.
pub(crate) const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(5);

pub(crate) struct ScriptPlugin {
    pub host: Rc<Host>,
    pub script: Rc<Script>,
    /// `LuaReload On`: look at the file's mtime before each hook.
    pub reload: bool,
    /// `LuaTimeLimit` for hooks without a request (connection, logging).
    pub global_limit: Duration,
    /// `LuaTimeLimit`'s id, to read it per request without a name lookup.
    pub limit_id: Option<DirectiveId>,
}

/// What a hook returned: the outcome, and a second value
/// (`hook_write_body_data`'s replacement data).
type Returned = (Value, Value);

/// How one run of a hook's coroutine ended.
enum Step {
    Finished(mlua::Result<Returned>),
    Killed(String),
    Op(crate::request::Op),
}

impl ScriptPlugin {
    fn describe(&self, hook: Hook) -> String {
        format!("{}: hook_{}", self.script.path.display(), hook.name())
    }

    /// The hook's function, after reloading the script if asked to. A
    /// script that no longer loads keeps its previous version; the error is
    /// handed to `report` (once per change of the file).
    fn function(&self, hook: Hook, report: impl FnOnce(&str)) -> Option<mlua::Function> {
        if self.reload {
            if let Err(e) = self.host.reload_if_changed(&self.script) {
                report(&format!(
                    "LuaReload: keeping the previous version of {}: {e}",
                    self.script.path.display()
                ));
            }
        }
        self.script.function(hook)
    }

    /// Run a hook that has a request: `hook_<name>(r, extra…)`.
    async fn request_hook(
        &self,
        hook: Hook,
        ctx: &mut Context,
        extra: impl IntoLuaMulti,
    ) -> (Outcome, Value) {
        let Some(func) = self.function(hook, |e| ctx.log(Level::Error, e)) else {
            return (Outcome::Declined, Value::Nil);
        };
        let (slot, object, limit) = self.request_object(ctx);
        let thread = match self.host.thread(func) {
            Ok(thread) => thread,
            Err(e) => return (Outcome::Error(e.to_string()), Value::Nil),
        };
        // The first run is a plain resume: most hooks finish in it, without
        // the machinery of an async call. One that suspends (it waits in a
        // primitive, polled once with a no-op waker) or yields continues as
        // an async thread, which polls that primitive again with the real
        // waker as soon as it resumes.
        let first = {
            let _slice = self.host.clock.arm(limit);
            let _entered = slot.enter(ctx);
            let result = thread.resume::<Returned>((object, extra));
            match (self.host.clock.killed(), result) {
                (Some(at), _) => Some(Step::Killed(at)),
                (None, Ok(values)) if thread.is_finished() => Some(Step::Finished(Ok(values))),
                (None, Ok(_)) => None,
                (None, Err(e)) => Some(Step::Finished(Err(e))),
            }
        };
        let step = match first {
            Some(step) => {
                if matches!(step, Step::Finished(Ok(_))) {
                    self.host.recycle(thread);
                }
                step
            }
            None => self.drive(thread, ctx, &slot, limit).await,
        };
        let result = match step {
            Step::Finished(r) => Ok(r),
            Step::Killed(at) => Err(Outcome::Error(format!(
                "{}: LuaTimeLimit ({limit:?}) exceeded, stopped at {at}",
                self.describe(hook)
            ))),
            Step::Op(_) => unreachable!("drive performs the ops"),
        };
        let (first, second) = match result {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => {
                if let Some(status) = slot.abort.take() {
                    return (Outcome::Status(status), Value::Nil);
                }
                return (
                    Outcome::Error(format!("{}: {e}", self.describe(hook))),
                    Value::Nil,
                );
            }
            Err(outcome) => return (outcome, Value::Nil),
        };
        if let Err(e) = self.finish_output(ctx, &slot).await {
            return (
                Outcome::Error(format!("{}: {e}", self.describe(hook))),
                second,
            );
        }
        (self.outcome(hook, &first), second)
    }

    /// Carry on with a hook's coroutine that suspended in its first run,
    /// performing the ops its `r` posts, until it finishes or is stopped.
    async fn drive(&self, thread: Thread, ctx: &mut Context, slot: &Slot, limit: Duration) -> Step {
        let mut fut = match thread.into_async::<Returned>(()) {
            Ok(fut) => fut,
            Err(e) => return Step::Finished(Err(e)),
        };
        let mut op = slot.take_op();
        loop {
            if let Some(op) = op.take() {
                slot.complete(run_op(ctx, op).await);
            }
            let step = poll_fn(|cx| {
                let _slice = self.host.clock.arm(limit);
                let _entered = slot.enter(ctx);
                let poll = Pin::new(&mut fut).poll(cx);
                if let Some(at) = self.host.clock.killed() {
                    return Poll::Ready(Step::Killed(at));
                }
                match poll {
                    Poll::Ready(r) => Poll::Ready(Step::Finished(r)),
                    Poll::Pending => match slot.take_op() {
                        Some(op) => Poll::Ready(Step::Op(op)),
                        None => Poll::Pending,
                    },
                }
            })
            .await;
            match step {
                Step::Op(next) => op = Some(next),
                done => return done,
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
        let slot = Slot::new();
        let object = self.host.next_request();
        slot.object.set(object.0 as usize);
        let limit = self
            .limit_id
            .and_then(|id| ctx.config().settings_by_id(id).last()?.args.first()?.as_duration())
            .unwrap_or(self.global_limit);
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

    /// Hand what `r:write` buffered to the core: the whole body if nothing
    /// was streamed yet, else the rest of the stream.
    async fn finish_output(&self, ctx: &mut Context, slot: &Slot) -> std::io::Result<()> {
        let out = std::mem::take(&mut *slot.out.borrow_mut()).freeze();
        if ctx.head_sent() {
            if !out.is_empty() {
                ctx.write(out).await?;
            }
        } else if !out.is_empty() {
            ctx.response.body = Body::Bytes(out);
        }
        Ok(())
    }

    /// Run a hook without a request (connection events, log lines).
    async fn plain_hook(&self, hook: Hook, args: impl IntoLuaMulti) -> Outcome {
        let report = |e: &str| eprintln!("{}", axkit::server::log_line(Level::Error, e));
        let Some(func) = self.function(hook, report) else {
            return Outcome::Declined;
        };
        let fut = func.call_async::<Value>(args);
        let mut fut = std::pin::pin!(fut);
        let limit = self.global_limit;
        let result = poll_fn(|cx| {
            let _slice = self.host.clock.arm(limit);
            let poll = fut.as_mut().poll(cx);
            if let Some(at) = self.host.clock.killed() {
                return Poll::Ready(Err(at));
            }
            poll.map(Ok)
        })
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
                let shown = match value {
                    Value::String(s) => format!("{:?}", s.to_string_lossy()),
                    v => v.to_string().unwrap_or_else(|_| v.type_name().to_string()),
                };
                Outcome::Error(format!(
                    "{} returned {shown}; expected OK, DECLINED, DONE, an HTTP status or nil",
                    self.describe(hook)
                ))
            }
        }
    }
}

/// A connection as hooks without a request see it.
fn conn_table(host: &Host, conn: &ConnInfo) -> mlua::Result<mlua::Table> {
    let t = host.lua.create_table()?;
    t.set("id", conn.id)?;
    t.set("peer", conn.peer.ip().to_string())?;
    t.set("port", conn.peer.port())?;
    t.set("local", conn.local.to_string())?;
    Ok(t)
}

macro_rules! request_hooks {
    ($($method:ident => $hook:ident),* $(,)?) => {
        $(
            fn $method<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
                hook(async move { self.request_hook(Hook::$hook, ctx, ()).await.0 })
            }
        )*
    };
}

impl Plugin for ScriptPlugin {
    fn hooks(&self) -> Hooks {
        self.script.hooks
    }

    request_hooks! {
        post_read_request => PostReadRequest,
        uri_translation => UriTranslation,
        mime_map => MimeMap,
        access_control => AccessControl,
        authentication => Authentication,
        authorization => Authorization,
        fixup => Fixup,
        xmlresponse => XmlResponse,
        response => Response,
        response_sent => ResponseSent,
        error => Error,
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

    /// `hook_logging(level, message, peer)`.
    fn logging<'a>(&'a self, record: &'a LogRecord<'a>) -> HookFuture<'a> {
        hook(async move {
            let peer = record.peer.map(|p| p.ip().to_string());
            let outcome = self
                .plain_hook(Hook::Logging, (record.level.as_str(), record.message, peer))
                .await;
            if let Outcome::Error(e) = &outcome {
                // A broken log sink cannot log through itself.
                eprintln!("{}", axkit::server::log_line(Level::Error, e));
            }
            outcome
        })
    }
}
