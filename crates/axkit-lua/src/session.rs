//! The `session` and `crypto` globals: `axkit-session` for scripts
//! (docs/sessions.md).
//!
//! `session.get(r)` reads the request's session (once per request; later
//! calls, by any script of the request, get the same one) and returns an
//! object whose fields are the session's keys (`s.user`, `s.user = "ada"`,
//! `s.user = nil`) and whose methods are `get`, `set`, `regenerate`,
//! `destroy`, `csrf_token` and `is_new` (so `s:get("set")` reads a key
//! named like a method). It acts on its request only while a hook of that
//! request runs, like `r`. The session is saved by the server just before
//! the response head goes out; a change after that is an error. `session.csrf_token(r)` and
//! `session.check_csrf(r)` are the CSRF helpers.
//!
//! `crypto` has secure random bytes, hex and base64url, HMAC, a
//! constant-time comparison and argon2id password hashing, which runs on
//! the blocking pool: the script waits, the worker does not.

use axkit::Context;
use axkit_session::crypto::{self, Hash};
use axkit_session::{Session, CSRF_FIELD, CSRF_HEADER};
use mlua::{Lua, LuaString, MetaMethod, Table, UserData, UserDataMethods, Value};

use crate::request::{polled_slot, with_polled, Slot, OUTSIDE};

fn raise(e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(e.to_string())
}

/// Read the request's session into its context, if not done yet.
async fn load(slot: &Slot) -> mlua::Result<()> {
    if let Some(loading) = slot.with_ctx(axkit_session::start)?.map_err(raise)? {
        let loaded = loading.finish().await;
        slot.with_ctx(|c| loaded.install(c))?;
    }
    Ok(())
}

/// The object `session.get(r)` returns: the number of its request's `r`.
struct LuaSession(usize);

impl LuaSession {
    fn with<R>(&self, f: impl FnOnce(&mut Session) -> mlua::Result<R>) -> mlua::Result<R> {
        with_polled(self.0, |_, c: &mut Context| {
            match axkit_session::current(c) {
                Some(s) => f(s),
                None => Err(mlua::Error::runtime("session: not read in this request")),
            }
        })
        .unwrap_or_else(|| Err(mlua::Error::runtime(OUTSIDE)))
    }

    /// As `with`, for a change: an error once the head (and the
    /// `Set-Cookie` that would save it) has gone, rather than a change
    /// silently lost.
    fn change<R>(&self, f: impl FnOnce(&mut Session) -> R) -> mlua::Result<R> {
        let gone = with_polled(self.0, |_, c: &mut Context| c.head_sent()).unwrap_or(false);
        if gone {
            return Err(raise(axkit_session::Error::HeadSent));
        }
        self.with(|s| Ok(f(s)))
    }
}

fn get(lua: &Lua, s: &LuaSession, key: &str) -> mlua::Result<Value> {
    s.with(|s| match s.get(key) {
        Some(v) => crate::shared::to_lua(lua, v),
        None => Ok(Value::Nil),
    })
}

fn set(lua: &Lua, s: &LuaSession, key: String, value: Value) -> mlua::Result<()> {
    let value = match value {
        Value::Nil => None,
        v => {
            let mut budget = crate::bounds::Budget::of_lua(lua);
            let copied = crate::shared::to_value(&v, &mut budget)?;
            Some(copied.map_err(|over| raise(format!("session: the value of `{key}` is {over}")))?)
        }
    };
    s.change(|s| match value {
        Some(v) => s.set(key, v),
        None => {
            s.remove(&key);
        }
    })
}

impl UserData for LuaSession {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("get", |lua, s, key: String| get(lua, s, &key));
        m.add_method("set", |lua, s, (key, value): (String, Value)| {
            set(lua, s, key, value)
        });
        m.add_method("regenerate", |_, s, ()| s.change(Session::regenerate));
        m.add_method("destroy", |_, s, ()| s.change(Session::destroy));
        m.add_method("csrf_token", |_, s, ()| s.with(|s| Ok(s.csrf_token())));
        m.add_method("is_new", |_, s, ()| s.with(|s| Ok(s.is_new())));
        m.add_meta_method(MetaMethod::Index, |lua, s, key: String| get(lua, s, &key));
        m.add_meta_method(
            MetaMethod::NewIndex,
            |lua, s, (key, value): (String, Value)| set(lua, s, key, value),
        );
    }
}

/// The `session` table.
fn session_global(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "get",
        lua.create_async_function(|_, r: Value| async move {
            let slot = polled_slot(&r)?;
            load(&slot).await?;
            Ok(LuaSession(r.to_pointer() as usize))
        })?,
    )?;
    t.raw_set(
        "csrf_token",
        lua.create_async_function(|_, r: Value| async move {
            let slot = polled_slot(&r)?;
            load(&slot).await?;
            LuaSession(r.to_pointer() as usize).with(|s| Ok(s.csrf_token()))
        })?,
    )?;
    t.raw_set(
        "check_csrf",
        lua.create_async_function(|_, r: Value| async move {
            let slot = polled_slot(&r)?;
            let header = slot.with_ctx(|c| c.request.header(CSRF_HEADER).map(str::to_string))?;
            let token = match header {
                Some(token) => Some(token),
                None => {
                    slot.read_form(crate::form::Wanted::Nothing).await?;
                    slot.with_ctx(|c| c.form().and_then(|f| f.get(CSRF_FIELD)).map(str::to_string))?
                }
            };
            load(&slot).await?;
            slot.with_ctx(|c| {
                let valid = match (&token, axkit_session::current(c)) {
                    (Some(token), Some(s)) => Some(s.csrf_valid(token)),
                    _ => None,
                };
                if valid == Some(true) {
                    return true;
                }
                axkit_session::csrf_failure(c, token.is_none());
                false
            })
        })?,
    )?;
    Ok(t)
}

fn bytes_arg(s: &LuaString) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The `crypto` table.
fn crypto_global(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "random",
        lua.create_function(|lua, n: usize| {
            if n > 1 << 20 {
                return Err(raise("crypto.random: at most 1 MiB at a time"));
            }
            lua.create_string(crypto::random(n))
        })?,
    )?;
    t.raw_set(
        "hex",
        lua.create_function(|_, s: LuaString| Ok(crypto::hex(&s.as_bytes())))?,
    )?;
    t.raw_set(
        "base64url",
        lua.create_function(|_, s: LuaString| Ok(crypto::base64url(&s.as_bytes())))?,
    )?;
    t.raw_set(
        "from_base64url",
        lua.create_function(|lua, s: String| match crypto::from_base64url(&s) {
            Some(bytes) => Ok((Value::String(lua.create_string(bytes)?), Value::Nil)),
            None => Ok((
                Value::Nil,
                Value::String(lua.create_string("not base64url")?),
            )),
        })?,
    )?;
    t.raw_set(
        "hmac",
        lua.create_function(
            |lua, (key, data, hash): (LuaString, LuaString, Option<String>)| {
                let hash = match hash {
                    None => Hash::Sha256,
                    Some(name) => Hash::parse(&name).ok_or_else(|| {
                        raise(format!(
                            "crypto.hmac: unknown hash {name:?} (sha256, sha384, sha512)"
                        ))
                    })?,
                };
                lua.create_string(crypto::hmac(hash, &key.as_bytes(), &data.as_bytes()))
            },
        )?,
    )?;
    t.raw_set(
        "equal",
        lua.create_function(|_, (a, b): (LuaString, LuaString)| {
            Ok(crypto::equal(&a.as_bytes(), &b.as_bytes()))
        })?,
    )?;
    t.raw_set(
        "hash_password",
        lua.create_async_function(|_, password: LuaString| {
            let password = bytes_arg(&password);
            async move { Ok(crypto::password_hash(password).await) }
        })?,
    )?;
    t.raw_set(
        "verify_password",
        lua.create_async_function(|lua, (password, hash): (LuaString, String)| {
            let password = bytes_arg(&password);
            async move {
                Ok(match crypto::password_verify(password, &hash).await {
                    Ok(valid) => (Value::Boolean(valid), Value::Nil),
                    Err(e) => (Value::Nil, Value::String(lua.create_string(e)?)),
                })
            }
        })?,
    )?;
    Ok(t)
}

/// Make the globals, in the scripts' base environment.
pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    base.raw_set("session", session_global(lua)?)?;
    base.raw_set("crypto", crypto_global(lua)?)
}
