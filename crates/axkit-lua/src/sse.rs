//! Server-sent events and long polls for scripts (docs/sse.md), on the
//! `axkit-sse` crate: `r:sse(options)` begins a `text/event-stream`
//! response and returns the stream (`s:send{…}`, `s:comment(text)`,
//! `s:closed()`, `s:last_event_id()`); `r:long_poll(channel or subscription, timeout)`
//! waits for one message and answers 200 with it or 204. The waiting
//! itself is a subscription's (`shared.subscribe`, in `shared.rs`): in a
//! request, its wait ends when the client leaves or the worker drains,
//! and writes the stream's heartbeats meanwhile.
//!
//! Everything that needs the request's context across an await (writing,
//! waiting while watching the client) is an op the hook runner performs
//! (`request.rs`), as `r:flush` is.

use std::rc::{Rc, Weak};
use std::time::Duration;

use axkit::Context;
use axkit_shared::{Subscription, Wait};
use axkit_sse::{Event, EventStream, Options};
use mlua::{IntoLuaMulti, Lua, LuaString, MultiValue, Table, UserData, UserDataMethods, Value};

use crate::bounds::seconds;
use crate::request::{current_slot, polled_slot, Slot};
use crate::shared::{Sub, SubCell};

/// `r:long_poll`'s timeout when none is given, in seconds.
const DEFAULT_POLL: f64 = 30.0;

fn error(e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(e.to_string())
}

/// What `s:send` and `s:comment` hand the runner.
pub(crate) enum Frame {
    Event {
        data: Vec<u8>,
        event: Option<Vec<u8>>,
        id: Option<Vec<u8>>,
        retry: Option<Duration>,
    },
    Comment(Vec<u8>),
}

impl Frame {
    /// `s:send`'s argument: the data alone, or `{ data =, event =, id =,
    /// retry = }`.
    fn from_lua(value: Value) -> mlua::Result<Frame> {
        let bytes = |v: Option<LuaString>| v.map(|s| s.as_bytes().to_vec());
        match value {
            Value::Table(t) => Ok(Frame::Event {
                data: bytes(t.get("data")?).unwrap_or_default(),
                event: bytes(t.get("event")?),
                id: bytes(t.get("id")?),
                retry: t
                    .get::<Option<f64>>("retry")?
                    .map(|s| seconds("sse:send retry", s))
                    .transpose()?,
            }),
            Value::String(s) => Ok(Frame::Event {
                data: s.as_bytes().to_vec(),
                event: None,
                id: None,
                retry: None,
            }),
            Value::Integer(_) | Value::Number(_) => Ok(Frame::Event {
                data: value.to_string()?.into_bytes(),
                event: None,
                id: None,
                retry: None,
            }),
            other => Err(error(format!(
                "sse:send: expected the data or a table {{ data =, event =, id =, retry = }}, got {}",
                other.type_name()
            ))),
        }
    }

    pub async fn send(&self, stream: &mut EventStream, ctx: &mut Context) -> std::io::Result<()> {
        match self {
            Frame::Event {
                data,
                event,
                id,
                retry,
            } => {
                let mut e = Event::new(data);
                if let Some(name) = event {
                    e = e.event(name);
                }
                if let Some(id) = id {
                    e = e.id(id);
                }
                if let Some(retry) = retry {
                    e = e.retry(*retry);
                }
                stream.send(ctx, &e).await
            }
            Frame::Comment(text) => stream.comment(ctx, text).await,
        }
    }
}

/// What a long poll waits on.
pub(crate) enum Waiting {
    Channel(Wait),
    Subscription(Subscription),
}

/// The stream `r:sse()` returns. It reaches its request only while that
/// request's hook runs.
struct Stream {
    slot: Weak<Slot>,
}

impl Stream {
    fn slot(&self) -> mlua::Result<Rc<Slot>> {
        match (self.slot.upgrade(), current_slot()) {
            (Some(mine), Some(now)) if Rc::ptr_eq(&mine, &now) => Ok(mine),
            _ => Err(error(
                "the event stream was used outside its request's hook",
            )),
        }
    }
}

/// `true`, or `nil, "closed"` when the client is gone.
fn sent(lua: &Lua, r: std::io::Result<()>) -> mlua::Result<MultiValue> {
    match r {
        Ok(()) => true.into_lua_multi(lua),
        Err(_) => (Value::Nil, "closed").into_lua_multi(lua),
    }
}

impl UserData for Stream {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_async_method("send", |lua, s, event: Value| {
            let slot = s.slot();
            async move {
                let r = slot?.send_frame(Frame::from_lua(event)?).await?;
                sent(&lua, r)
            }
        });
        m.add_async_method("comment", |lua, s, text: Option<LuaString>| {
            let slot = s.slot();
            async move {
                let text = text.map(|t| t.as_bytes().to_vec()).unwrap_or_default();
                let r = slot?.send_frame(Frame::Comment(text)).await?;
                sent(&lua, r)
            }
        });
        // `s:closed()`: nil while the stream goes on, else why it is over
        // ("closed": the client left; "stopping": the worker drains).
        m.add_method("closed", |_, s, ()| {
            let ended = s.slot()?.sse.borrow().as_ref().and_then(EventStream::ended);
            Ok(ended.map(|why| why.to_string()))
        });
        m.add_method("last_event_id", |_, s, ()| {
            s.slot()?
                .with_ctx(|c| axkit_sse::last_event_id(&c.request).map(str::to_string))
        });
    }
}

/// `r:sse{ heartbeat =, retry = }`: seconds each; `heartbeat = 0` (or
/// false) sends none.
fn options(t: Option<Table>) -> mlua::Result<Options> {
    let mut options = Options::default();
    let Some(t) = t else { return Ok(options) };
    match t.get::<Value>("heartbeat")? {
        Value::Nil => {}
        Value::Boolean(false) => options.heartbeat = None,
        Value::Integer(i) => options.heartbeat = Some(seconds("r:sse heartbeat", i as f64)?),
        Value::Number(n) => options.heartbeat = Some(seconds("r:sse heartbeat", n)?),
        other => {
            return Err(error(format!(
                "r:sse heartbeat: expected seconds or false, got {}",
                other.type_name()
            )))
        }
    }
    if let Some(s) = t.get::<Option<f64>>("retry")? {
        options.retry = Some(seconds("r:sse retry", s)?);
    }
    Ok(options)
}

/// `r:sse` and `r:long_poll`, among the methods of `r`.
pub(crate) fn install_methods(lua: &Lua, methods: &Table) -> mlua::Result<()> {
    methods.raw_set(
        "sse",
        lua.create_async_function(|lua, (r, opts): (Value, Option<Table>)| {
            let slot = polled_slot(&r);
            async move {
                let slot = slot?;
                let options = options(opts)?;
                if slot.sse.borrow().is_some() {
                    return Err(error("r:sse: the stream has begun already"));
                }
                if !slot.out.borrow().is_empty() {
                    return Err(error(
                        "r:sse: r:write was called before: the stream must come first",
                    ));
                }
                slot.start_sse(options).await?;
                lua.create_userdata(Stream {
                    slot: Rc::downgrade(&slot),
                })
            }
        })?,
    )?;
    methods.raw_set(
        "long_poll",
        lua.create_async_function(|lua, (r, what, timeout): (Value, Value, Option<f64>)| {
            let begun = begin_long_poll(&r, &what, timeout);
            async move {
                let (slot, waiting, cell, timeout) = begun?;
                let (sub, got) = match slot.long_poll(waiting, timeout).await {
                    Ok(polled) => polled,
                    Err(e) => {
                        // The subscription went with the stray op.
                        if let Some(cell) = cell {
                            cell.close();
                        }
                        return Err(e);
                    }
                };
                if let (Some(cell), Some(sub)) = (cell, sub) {
                    cell.put_back(sub);
                }
                match got {
                    Ok(message) => lua.create_string(&message)?.into_lua_multi(&lua),
                    Err(why) => (Value::Nil, why.to_string()).into_lua_multi(&lua),
                }
            }
        })?,
    )?;
    Ok(())
}

/// What `r:long_poll` checks before it waits: the request, the timeout,
/// and what to wait on (a channel's wait begins now, at the call; a
/// subscription is taken from its cell, last, so that no error loses it).
#[allow(clippy::type_complexity)]
fn begin_long_poll(
    r: &Value,
    what: &Value,
    timeout: Option<f64>,
) -> mlua::Result<(Rc<Slot>, Waiting, Option<Rc<SubCell>>, Duration)> {
    let slot = polled_slot(r)?;
    let timeout = seconds("r:long_poll", timeout.unwrap_or(DEFAULT_POLL))?;
    if slot.sse.borrow().is_some() {
        return Err(error("r:long_poll: the request is an event stream"));
    }
    let (waiting, cell) = match what {
        Value::String(channel) => {
            let wait = axkit_shared::wait(channel.as_bytes())
                .map_err(|e| error(format!("r:long_poll: {e}")))?;
            (Waiting::Channel(wait), None)
        }
        Value::UserData(ud) => {
            let cell = ud
                .borrow::<Sub>()
                .map_err(|_| error("r:long_poll: expected a channel or a subscription"))?
                .cell();
            match cell.take()? {
                Some(sub) => (Waiting::Subscription(sub), Some(cell)),
                None => return Err(error("r:long_poll: the subscription is closed")),
            }
        }
        other => {
            return Err(error(format!(
                "r:long_poll: expected a channel or a subscription, got {}",
                other.type_name()
            )))
        }
    };
    // The poll makes the response.
    slot.out.borrow_mut().clear();
    Ok((slot, waiting, cell, timeout))
}
