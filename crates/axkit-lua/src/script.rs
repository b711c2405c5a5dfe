//! A script as a [`Plugin`]: each `hook_<name>` the script defines becomes
//! that hook, run in its own coroutine that suspends only its own request,
//! and its return value becomes the hook's [`Outcome`].

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use axkit::plugin::{Body, BodyChunk, ConnInfo, LogRecord};
use axkit::{hook, Context, Hook, HookFuture, Hooks, Level, Outcome, Plugin};
use bytes::Bytes;
use mlua::{IntoLuaMulti, MultiValue, Value};

use crate::host::{Host, Script};
use crate::request::{run_op, Request, RequestState, Slot};

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
}

/// How one run of a hook's coroutine ended.
enum Step {
    Finished(mlua::Result<MultiValue>),
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
        extra: MultiValue,
    ) -> (Outcome, MultiValue) {
        let Some(func) = self.function(hook, |e| ctx.log(Level::Error, e)) else {
            return (Outcome::Declined, MultiValue::new());
        };
        let (slot, object, limit) = match self.request_object(ctx) {
            Ok(state) => state,
            Err(e) => return (Outcome::Error(e.to_string()), MultiValue::new()),
        };
        let mut args = MultiValue::new();
        args.push_back(Value::UserData(object));
        args.extend(extra);
        let fut = func.call_async::<MultiValue>(args);
        let mut fut = std::pin::pin!(fut);
        let result = loop {
            let step = poll_fn(|cx| {
                let _slice = self.host.clock.arm(limit);
                let _entered = slot.enter(ctx);
                let poll = fut.as_mut().poll(cx);
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
                Step::Op(op) => slot.complete(run_op(ctx, op).await),
                Step::Killed(at) => {
                    break Err(Outcome::Error(format!(
                        "{}: LuaTimeLimit ({limit:?}) exceeded, stopped at {at}",
                        self.describe(hook)
                    )))
                }
                Step::Finished(r) => break Ok(r),
            }
        };
        let values = match result {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => {
                if let Some(status) = slot.abort.take() {
                    return (Outcome::Status(status), MultiValue::new());
                }
                return (
                    Outcome::Error(format!("{}: {e}", self.describe(hook))),
                    MultiValue::new(),
                );
            }
            Err(outcome) => return (outcome, MultiValue::new()),
        };
        if let Err(e) = self.finish_output(ctx, &slot).await {
            return (
                Outcome::Error(format!("{}: {e}", self.describe(hook))),
                values,
            );
        }
        (self.outcome(hook, values.front()), values)
    }

    /// The request object of this request (created on its first Lua hook
    /// and shared by every script plugin in the chain) and its time limit.
    fn request_object(
        &self,
        ctx: &mut Context,
    ) -> mlua::Result<(Rc<Slot>, mlua::AnyUserData, Duration)> {
        if let Some(state) = ctx.state::<RequestState>() {
            if state.uri == ctx.request.uri() {
                return Ok((state.slot.clone(), state.object.clone(), state.limit));
            }
        }
        let slot = Rc::new(Slot::default());
        let object = self.host.lua.create_userdata(Request(slot.clone()))?;
        slot.object.set(object.to_pointer() as usize);
        let limit = ctx
            .config()
            .duration("LuaTimeLimit")
            .unwrap_or(self.global_limit);
        ctx.set_state(RequestState {
            slot: slot.clone(),
            object: object.clone(),
            limit,
            uri: ctx.request.uri().to_string(),
        });
        Ok((slot, object, limit))
    }

    /// Hand what `r:write` buffered to the core: the whole body if nothing
    /// was streamed yet, else the rest of the stream.
    async fn finish_output(&self, ctx: &mut Context, slot: &Slot) -> std::io::Result<()> {
        let out = slot.out.borrow_mut().split().freeze();
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
        let fut = func.call_async::<MultiValue>(args);
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
            Ok(Ok(values)) => self.outcome(hook, values.front()),
            Ok(Err(e)) => Outcome::Error(format!("{}: {e}", self.describe(hook))),
            Err(at) => Outcome::Error(format!(
                "{}: LuaTimeLimit ({limit:?}) exceeded, stopped at {at}",
                self.describe(hook)
            )),
        }
    }

    /// What a returned value means: nil or DECLINED, OK, DONE, or an HTTP
    /// status; anything else is the script's bug, reported as such.
    fn outcome(&self, hook: Hook, value: Option<&Value>) -> Outcome {
        let code = match value {
            None | Some(Value::Nil) => return Outcome::Declined,
            Some(Value::Integer(i)) => Some(*i),
            Some(Value::Number(n)) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        };
        match code {
            Some(OK) => Outcome::Ok,
            Some(DECLINED) => Outcome::Declined,
            Some(DONE) => Outcome::Done,
            Some(s @ 100..=999) => Outcome::Status(s as u16),
            _ => {
                let shown = match value {
                    Some(Value::String(s)) => format!("{:?}", s.to_string_lossy()),
                    Some(v) => v.to_string().unwrap_or_else(|_| v.type_name().to_string()),
                    None => "nothing".into(),
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
                hook(async move { self.request_hook(Hook::$hook, ctx, MultiValue::new()).await.0 })
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
            let extra = MultiValue::from_iter([Value::String(data)]);
            self.request_hook(Hook::BodyData, ctx, extra).await.0
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
            let extra = MultiValue::from_iter([Value::String(data), Value::Boolean(chunk.last)]);
            let (outcome, values) = self.request_hook(Hook::WriteBodyData, ctx, extra).await;
            if let Some(Value::String(s)) = values.get(1) {
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
