//! `redis.get(NAME)`: `r:cmd(name, ...)` (one command, each argument sent
//! as it is: strings, numbers), `r:pipeline()` (commands queued with
//! `p:cmd(...)`, sent together by `p:exec()`; `r:pipeline{ atomic = true
//! }` wraps them in MULTI/EXEC) and `r:subscribe(channel, ...)` /
//! `r:psubscribe(pattern, ...)` (`sub:next([timeout])` waits for the next
//! message, `sub:close()` ends it, as does the end of the request).
//!
//! Replies become Lua values: nil, integers, strings, numbers, booleans,
//! arrays as tables, maps as tables keyed by field. A nil inside an array
//! (`MGET` of a missing key) is `false`, so that the array keeps its
//! length. An error reply raises an error.

use std::cell::RefCell;
use std::time::Duration;

use axkit_db::redis::{self as client, Cmd, Pipeline};
use axkit_db::{Databases, Redis, Subscription};
use mlua::{
    AnyUserData, Lua, LuaString, MetaMethod, MultiValue, Table, UserData, UserDataMethods,
    UserDataRef, Value,
};

use super::{close, put, raise, shared, take, Lazy, Shared};

pub(super) fn global(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "get",
        lua.create_function(|lua, name: String| {
            Ok(Handle(Lazy::new(lua, name, Databases::redis)?))
        })?,
    )?;
    Ok(t)
}

struct Handle(Lazy<Redis>);

impl Handle {
    fn db(&self, lua: &Lua) -> mlua::Result<Redis> {
        self.0.get(lua, Databases::redis)
    }
}

/// A command from `name, args…`.
fn command(name: &LuaString, args: &MultiValue) -> mlua::Result<Cmd> {
    let mut cmd = client::cmd(&name.to_str()?);
    for (i, arg) in args.iter().enumerate() {
        match arg {
            Value::String(s) => cmd.arg(&*s.as_bytes()),
            Value::Integer(n) => cmd.arg(*n),
            Value::Number(n) => cmd.arg(*n),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "argument {}: cannot send a {} (strings and numbers can be sent)",
                    i + 1,
                    other.type_name()
                )))
            }
        };
    }
    Ok(cmd)
}

/// A reply as a Lua value; `nested` for one inside an array, where nil
/// becomes false.
fn reply(lua: &Lua, value: client::Value, nested: bool) -> mlua::Result<Value> {
    use client::Value as V;
    let list = |items: Vec<V>| -> mlua::Result<Value> {
        let t = lua.create_table_with_capacity(items.len(), 0)?;
        for (i, item) in items.into_iter().enumerate() {
            t.raw_set(i + 1, reply(lua, item, true)?)?;
        }
        Ok(Value::Table(t))
    };
    Ok(match value {
        V::Nil if nested => Value::Boolean(false),
        V::Nil => Value::Nil,
        V::Int(n) => Value::Integer(n),
        V::BulkString(bytes) => Value::String(lua.create_string(bytes)?),
        V::SimpleString(text) => Value::String(lua.create_string(text)?),
        V::Okay => Value::String(lua.create_string("OK")?),
        V::Double(f) => Value::Number(f),
        V::Boolean(b) => Value::Boolean(b),
        V::VerbatimString { text, .. } => Value::String(lua.create_string(text)?),
        V::BigNumber(n) => Value::String(lua.create_string(n)?),
        V::Array(items) | V::Set(items) | V::Push { data: items, .. } => list(items)?,
        V::Map(pairs) => {
            let t = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, v) in pairs {
                t.raw_set(reply(lua, k, true)?, reply(lua, v, true)?)?;
            }
            Value::Table(t)
        }
        V::Attribute { data, .. } => reply(lua, *data, nested)?,
        V::ServerError(e) => return Err(mlua::Error::runtime(format!("redis: {e}"))),
        other => {
            return Err(mlua::Error::runtime(format!(
                "redis: unexpected reply {other:?}"
            )))
        }
    })
}

/// The channels or patterns of `subscribe(...)`.
fn names(args: &MultiValue) -> mlua::Result<Vec<Vec<u8>>> {
    if args.is_empty() {
        return Err(mlua::Error::runtime("subscribe: name at least one channel"));
    }
    args.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            other => Err(mlua::Error::runtime(format!(
                "subscribe: a channel is a string, not a {}",
                other.type_name()
            ))),
        })
        .collect()
}

/// A subscription object, released when the request ends.
fn subscription(sub: Subscription) -> Sub {
    Sub(shared(sub))
}

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_async_method(
            "cmd",
            |lua, this: UserDataRef<Self>, (name, args): (LuaString, MultiValue)| async move {
                let db = this.db(&lua)?;
                let cmd = command(&name, &args)?;
                let value = db.cmd(&cmd).await.map_err(raise)?;
                reply(&lua, value, false)
            },
        );
        methods.add_method("pipeline", |lua, this, options: Option<Table>| {
            let mut pipe = client::pipe();
            if let Some(options) = options {
                if options.get::<Option<bool>>("atomic")?.unwrap_or(false) {
                    pipe.atomic();
                }
            }
            Ok(Pipe {
                db: this.db(lua)?,
                pipe: RefCell::new(pipe),
            })
        });
        methods.add_async_method(
            "subscribe",
            |lua, this: UserDataRef<Self>, args: MultiValue| async move {
                let sub = this.db(&lua)?.subscribe(&names(&args)?).await;
                sub.map(subscription).map_err(raise)
            },
        );
        methods.add_async_method(
            "psubscribe",
            |lua, this: UserDataRef<Self>, args: MultiValue| async move {
                let sub = this.db(&lua)?.psubscribe(&names(&args)?).await;
                sub.map(subscription).map_err(raise)
            },
        );
    }
}

/// `r:pipeline()`: commands queued, then sent at once.
struct Pipe {
    db: Redis,
    pipe: RefCell<Pipeline>,
}

impl UserData for Pipe {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // `p:cmd(...)` returns `p`, so that calls chain.
        methods.add_function(
            "cmd",
            |_, (this, name, args): (AnyUserData, LuaString, MultiValue)| {
                let cmd = command(&name, &args)?;
                this.borrow::<Pipe>()?.pipe.borrow_mut().add_command(cmd);
                Ok(this)
            },
        );
        methods.add_async_method("exec", |lua, this: UserDataRef<Self>, ()| async move {
            let pipe = this.pipe.replace(client::pipe());
            let values = this.db.pipeline(&pipe).await.map_err(raise)?;
            let t = lua.create_table_with_capacity(values.len(), 0)?;
            for (i, value) in values.into_iter().enumerate() {
                t.raw_set(i + 1, reply(&lua, value, true)?)?;
            }
            Ok(t)
        });
    }
}

/// `r:subscribe(...)`'s subscription.
struct Sub(Shared<Subscription>);

impl UserData for Sub {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // The next message and its channel (and the pattern it matched),
        // or nil when `timeout` seconds pass first.
        methods.add_async_method(
            "next",
            |lua, this: UserDataRef<Self>, timeout: Option<f64>| async move {
                // Checked first: a bad argument leaves the subscription as
                // it was.
                let limit = timeout
                    .map(Duration::try_from_secs_f64)
                    .transpose()
                    .map_err(|e| mlua::Error::runtime(format!("sub:next: bad timeout: {e}")))?;
                let mut sub = take(&this.0, "subscription")?;
                let next = match limit {
                    Some(limit) => tokio::time::timeout(limit, sub.next()).await.ok(),
                    None => Some(sub.next().await),
                };
                put(&this.0, sub);
                let mut out = MultiValue::new();
                match next.transpose().map_err(raise)? {
                    None => {}
                    Some(msg) => {
                        out.push_back(Value::String(lua.create_string(msg.get_payload_bytes())?));
                        out.push_back(Value::String(lua.create_string(msg.get_channel_name())?));
                        if msg.from_pattern() {
                            let pattern: String =
                                msg.get_pattern().map_err(mlua::Error::external)?;
                            out.push_back(Value::String(lua.create_string(pattern)?));
                        }
                    }
                }
                Ok(out)
            },
        );
        methods.add_method("close", |_, this, ()| {
            close(&this.0);
            Ok(())
        });
        methods.add_meta_method(MetaMethod::Close, |_, this, _: MultiValue| {
            close(&this.0);
            Ok(())
        });
    }
}
