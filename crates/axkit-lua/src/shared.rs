//! The `shared` global: the `axkit-shared` crate's zones and broadcast for
//! scripts (docs/shared.md).
//!
//! `shared.get/set/incr/…` use the zone `default`; `shared.zone(name)`
//! returns a table with the same functions for a zone declared with
//! `SharedZone`, callable with a dot or a colon (`z.get(k)`, `z:get(k)`).
//! A zone is looked up when first used, not when named: a script's top
//! level also runs in the master (which maps no zone) and in `--check`.
//! Lua integers are stored as integers and floats as floats; a table is
//! stored as a copy (no functions, no userdata, nested at most 64 deep) and
//! read back as a new table. A value is copied out of Lua against a budget
//! of the zone's room (`bounds.rs`): a table that holds one subtable many
//! times is `value too big for the zone` before its copy outgrows the
//! zone. What can be expected to happen (the key is missing, the zone is
//! full, the value changed) is returned as `nil` or `false` and a message;
//! a mistake in the call (a bad key, a value that cannot be stored, an
//! undeclared zone) raises an error.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use axkit_shared::{Error, Number, Options, Subscription, Value, Zone, MAX_DEPTH};
use axkit_sse::Ended;
use bytes::Bytes;
use mlua::{
    FromLuaMulti, IntoLuaMulti, Lua, LuaString, MetaMethod, MultiValue, Table, UserData,
    UserDataMethods, Value as LuaValue,
};

use crate::bounds::{Budget, OverBudget};

fn raise(e: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::runtime(format!("shared: {e}"))
}

/// A zone resolved on first use.
struct ZoneRef {
    name: String,
    zone: OnceCell<Zone>,
}

impl ZoneRef {
    fn get(&self) -> mlua::Result<Zone> {
        if let Some(z) = self.zone.get() {
            return Ok(*z);
        }
        let z = Zone::open(&self.name).map_err(raise)?;
        Ok(*self.zone.get_or_init(|| z))
    }
}

/// The arguments after a leading table (the zone itself, in `z:get(k)`).
fn args<T: FromLuaMulti>(lua: &Lua, mut args: MultiValue) -> mlua::Result<T> {
    if matches!(args.front(), Some(LuaValue::Table(_))) {
        args.pop_front();
    }
    T::from_lua_multi(args, lua)
}

/// A ttl in seconds: none or 0, no expiry; any other at least the zone's
/// smallest unit (a `1e-12` would otherwise round to 0, no expiry).
fn seconds(ttl: Option<f64>) -> mlua::Result<Option<Duration>> {
    match ttl {
        None | Some(0.0) => Ok(None),
        Some(s) => Duration::try_from_secs_f64(s)
            .map(|d| Some(d.max(Duration::from_nanos(1))))
            .map_err(|_| raise(format!("bad ttl {s}"))),
    }
}

fn options(ttl: Option<f64>, flags: Option<u32>) -> mlua::Result<Options> {
    Ok(Options {
        ttl: seconds(ttl)?,
        flags: flags.unwrap_or(0),
    })
}

/// Why a Lua value was not copied: too big for its budget, or not a value
/// that can be stored (raised).
enum Refused {
    TooBig(OverBudget),
    Lua(mlua::Error),
}

impl From<mlua::Error> for Refused {
    fn from(e: mlua::Error) -> Refused {
        Refused::Lua(e)
    }
}

impl From<OverBudget> for Refused {
    fn from(e: OverBudget) -> Refused {
        Refused::TooBig(e)
    }
}

/// A Lua value as a zone stores it, if its stored form fits `budget`
/// (which each part's encoded size is taken from before it is copied);
/// an error for what cannot be stored at all.
pub(crate) fn to_value(
    v: &LuaValue,
    budget: &mut Budget,
) -> mlua::Result<Result<Value, OverBudget>> {
    match convert(v, 0, budget) {
        Ok(v) => Ok(Ok(v)),
        Err(Refused::TooBig(over)) => Ok(Err(over)),
        Err(Refused::Lua(e)) => Err(e),
    }
}

/// The bytes `n` takes as a length in the stored form (value.rs).
fn len_bytes(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()).div_ceil(7).max(1) as usize
}

fn convert(v: &LuaValue, depth: usize, budget: &mut Budget) -> Result<Value, Refused> {
    Ok(match v {
        LuaValue::Boolean(b) => {
            budget.spend(1)?;
            Value::Bool(*b)
        }
        LuaValue::Integer(i) => {
            budget.spend(9)?;
            Value::Int(*i)
        }
        LuaValue::Number(n) => {
            budget.spend(9)?;
            Value::Float(*n)
        }
        LuaValue::String(s) => {
            let bytes = s.as_bytes();
            budget.spend(1 + len_bytes(bytes.len()) + bytes.len())?;
            Value::Bytes(bytes.to_vec())
        }
        LuaValue::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(raise(format!(
                    "table nested deeper than {MAX_DEPTH} (or containing itself)"
                ))
                .into());
            }
            budget.spend(2)?;
            let mut pairs = Vec::new();
            for pair in t.pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair?;
                if !matches!(
                    k,
                    LuaValue::Boolean(_)
                        | LuaValue::Integer(_)
                        | LuaValue::Number(_)
                        | LuaValue::String(_)
                ) {
                    return Err(raise(format!(
                        "a table key must be a string, number or boolean, not {}",
                        k.type_name()
                    ))
                    .into());
                }
                pairs.push((
                    convert(&k, depth + 1, budget)?,
                    convert(&v, depth + 1, budget)?,
                ));
            }
            Value::Table(pairs)
        }
        other => {
            return Err(raise(format!(
                "cannot store a {} in a shared zone",
                other.type_name()
            ))
            .into())
        }
    })
}

/// `v` as `zone` would store it, or `TooBig` when it cannot fit there
/// (found before more than the zone's room is copied).
fn storable(lua: &Lua, zone: &Zone, v: &LuaValue) -> mlua::Result<Result<Value, Error>> {
    let mut budget = Budget::of_lua(lua).at_most(zone.max_value());
    Ok(to_value(v, &mut budget)?.map_err(|_| Error::TooBig))
}

pub(crate) fn to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Bytes(b) => LuaValue::String(lua.create_string(b)?),
        Value::Int(i) => LuaValue::Integer(*i),
        Value::Float(f) => LuaValue::Number(*f),
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Table(pairs) => {
            let t = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, v) in pairs {
                t.raw_set(to_lua(lua, k)?, to_lua(lua, v)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

fn number(v: &LuaValue) -> mlua::Result<Number> {
    match v {
        LuaValue::Integer(i) => Ok(Number::Int(*i)),
        LuaValue::Number(n) => Ok(Number::Float(*n)),
        other => Err(raise(format!(
            "expected a number, got {}",
            other.type_name()
        ))),
    }
}

fn number_to_lua(n: Number) -> LuaValue {
    match n {
        Number::Int(i) => LuaValue::Integer(i),
        Number::Float(f) => LuaValue::Number(f),
    }
}

/// An outcome the script may expect: `true`, or `false` and the reason.
/// Mistakes in the call raise instead.
fn outcome(lua: &Lua, r: Result<(), Error>) -> mlua::Result<MultiValue> {
    match r {
        Ok(()) => true.into_lua_multi(lua),
        Err(e) if expected(&e) => (false, e.to_string()).into_lua_multi(lua),
        Err(e) => Err(raise(e)),
    }
}

/// What a script should handle rather than be stopped by.
fn expected(e: &Error) -> bool {
    matches!(
        e,
        Error::NotFound
            | Error::Exists
            | Error::Changed
            | Error::NoMemory
            | Error::TooBig
            | Error::NotANumber
            | Error::Overflow
    )
}

/// The functions of one zone, in `t`.
fn zone_functions(lua: &Lua, t: &Table, zone: Rc<ZoneRef>) -> mlua::Result<()> {
    let z = zone.clone();
    t.raw_set(
        "get",
        lua.create_function(move |lua, a: MultiValue| {
            let key: LuaString = args(lua, a)?;
            match z.get()?.get(key.as_bytes()).map_err(raise)? {
                None => LuaValue::Nil.into_lua_multi(lua),
                Some(e) => (
                    to_lua(lua, &e.value)?,
                    e.flags,
                    e.ttl.map(|d| d.as_secs_f64()),
                    e.version,
                )
                    .into_lua_multi(lua),
            }
        })?,
    )?;
    // set, add, replace: (key, value [, ttl [, flags]]).
    type Store = fn(&Zone, &[u8], Value, Options) -> Result<(), Error>;
    let stores: [(&str, Store); 3] = [
        ("set", |z, k, v, o| z.set_with(k, v, o)),
        ("add", |z, k, v, o| z.add(k, v, o)),
        ("replace", |z, k, v, o| z.replace(k, v, o)),
    ];
    for (name, store) in stores {
        let z = zone.clone();
        t.raw_set(
            name,
            lua.create_function(move |lua, a: MultiValue| {
                let (key, value, ttl, flags): (LuaString, LuaValue, Option<f64>, Option<u32>) =
                    args(lua, a)?;
                let zone = z.get()?;
                if value.is_nil() && name == "set" {
                    zone.delete(key.as_bytes()).map_err(raise)?;
                    return true.into_lua_multi(lua);
                }
                let options = options(ttl, flags)?;
                let r = storable(lua, &zone, &value)?
                    .and_then(|v| store(&zone, &key.as_bytes(), v, options));
                outcome(lua, r)
            })?,
        )?;
    }
    let z = zone.clone();
    t.raw_set(
        "cas",
        lua.create_function(move |lua, a: MultiValue| {
            let (key, old, new, ttl, flags): (
                LuaString,
                LuaValue,
                LuaValue,
                Option<f64>,
                Option<u32>,
            ) = args(lua, a)?;
            let zone = z.get()?;
            let (old, new) = (storable(lua, &zone, &old)?, storable(lua, &zone, &new)?);
            let options = options(ttl, flags)?;
            let r = old.and_then(|old| zone.cas(key.as_bytes(), &old, new?, options));
            outcome(lua, r)
        })?,
    )?;
    let z = zone.clone();
    t.raw_set(
        "cas_version",
        lua.create_function(move |lua, a: MultiValue| {
            let (key, version, new, ttl, flags): (
                LuaString,
                u64,
                LuaValue,
                Option<f64>,
                Option<u32>,
            ) = args(lua, a)?;
            let zone = z.get()?;
            let options = options(ttl, flags)?;
            let r = storable(lua, &zone, &new)?
                .and_then(|new| zone.cas_version(key.as_bytes(), version, new, options));
            outcome(lua, r)
        })?,
    )?;
    let z = zone.clone();
    t.raw_set(
        "incr",
        lua.create_function(move |lua, a: MultiValue| {
            let (key, by, init, init_ttl): (LuaString, LuaValue, LuaValue, Option<f64>) =
                args(lua, a)?;
            let by = number(&by)?;
            let zone = z.get()?;
            let r = if init.is_nil() {
                zone.incr(key.as_bytes(), by)
            } else {
                zone.incr_init(key.as_bytes(), by, number(&init)?, seconds(init_ttl)?)
            };
            match r {
                Ok(n) => number_to_lua(n).into_lua_multi(lua),
                Err(e) if expected(&e) => (LuaValue::Nil, e.to_string()).into_lua_multi(lua),
                Err(e) => Err(raise(e)),
            }
        })?,
    )?;
    let z = zone.clone();
    t.raw_set(
        "delete",
        lua.create_function(move |lua, a: MultiValue| {
            let key: LuaString = args(lua, a)?;
            z.get()?.delete(key.as_bytes()).map_err(raise)
        })?,
    )?;
    let z = zone.clone();
    t.raw_set(
        "ttl",
        lua.create_function(move |lua, a: MultiValue| {
            let key: LuaString = args(lua, a)?;
            match z.get()?.ttl(key.as_bytes()) {
                Ok(ttl) => ttl.map_or(0.0, |d| d.as_secs_f64()).into_lua_multi(lua),
                Err(e) if expected(&e) => (LuaValue::Nil, e.to_string()).into_lua_multi(lua),
                Err(e) => Err(raise(e)),
            }
        })?,
    )?;
    let z = zone.clone();
    t.raw_set(
        "expire",
        lua.create_function(move |lua, a: MultiValue| {
            let (key, ttl): (LuaString, Option<f64>) = args(lua, a)?;
            let r = z.get()?.expire(key.as_bytes(), seconds(ttl)?);
            outcome(lua, r)
        })?,
    )?;
    let z = zone;
    t.raw_set(
        "stats",
        lua.create_function(move |lua, a: MultiValue| {
            let () = args(lua, a)?;
            let s = z.get()?.stats().map_err(raise)?;
            let t = lua.create_table()?;
            t.raw_set("size", s.size)?;
            t.raw_set("capacity", s.capacity)?;
            t.raw_set("used", s.used)?;
            t.raw_set("entries", s.entries)?;
            t.raw_set("evictions", s.evictions)?;
            t.raw_set("expired", s.expired)?;
            t.raw_set("recoveries", s.recoveries)?;
            Ok(t)
        })?,
    )?;
    Ok(())
}

pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    let shared = lua.create_table()?;
    let default = Rc::new(ZoneRef {
        name: axkit_shared::DEFAULT_ZONE.to_string(),
        zone: OnceCell::new(),
    });
    zone_functions(lua, &shared, default)?;
    let zones: RefCell<HashMap<String, Table>> = RefCell::default();
    shared.raw_set(
        "zone",
        lua.create_function(move |lua, a: MultiValue| {
            let name: String = args(lua, a)?;
            if let Some(t) = zones.borrow().get(&name) {
                return Ok(t.clone());
            }
            let t = lua.create_table()?;
            let zone = Rc::new(ZoneRef {
                name: name.clone(),
                zone: OnceCell::new(),
            });
            // Only a zone that opens is remembered: a name from request
            // data would otherwise keep a table per name for the worker's
            // life. Another's calls say what is wrong (the name may also
            // come before the zones are there, at a script's top level).
            let known = zone.get().is_ok();
            zone_functions(lua, &t, zone)?;
            if known {
                zones.borrow_mut().insert(name, t.clone());
            }
            Ok(t)
        })?,
    )?;
    shared.raw_set(
        "broadcast",
        lua.create_function(|lua, a: MultiValue| {
            let (channel, message): (LuaString, LuaString) = args(lua, a)?;
            match axkit_shared::broadcast(channel.as_bytes(), message.as_bytes()) {
                Ok(()) => true.into_lua_multi(lua),
                Err(e @ Error::MessageTooBig) => (false, e.to_string()).into_lua_multi(lua),
                Err(e) => Err(raise(e)),
            }
        })?,
    )?;
    shared.raw_set(
        "wait",
        lua.create_async_function(|lua, a: MultiValue| {
            let slot = crate::request::current_slot();
            async move {
                let (channel, timeout): (LuaString, Option<f64>) = args(&lua, a)?;
                let timeout = timeout
                    .map(|s| crate::bounds::seconds("shared.wait", s))
                    .transpose()?;
                let wait = axkit_shared::wait(channel.as_bytes()).map_err(raise)?;
                // In a request, as `sub:next` waits: the wait ends when the
                // client leaves or the worker drains. Elsewhere (a timer),
                // only with a message or the timeout.
                let got = match (slot, timeout) {
                    (Some(slot), _) => slot.wait(wait, timeout).await?,
                    (None, Some(limit)) => tokio::time::timeout(limit, wait)
                        .await
                        .map_err(|_| Ended::Timeout),
                    (None, None) => Ok(wait.await),
                };
                match got {
                    Ok(m) => lua.create_string(&m)?.into_lua_multi(&lua),
                    Err(why) => (LuaValue::Nil, why.to_string()).into_lua_multi(&lua),
                }
            }
        })?,
    )?;
    shared.raw_set(
        "subscribe",
        lua.create_function(|lua, a: MultiValue| {
            let (channel, queue): (LuaString, Option<i64>) = args(lua, a)?;
            let queue = match queue {
                None => axkit_shared::DEFAULT_QUEUE,
                Some(n @ 1..=MAX_QUEUE) => n as usize,
                Some(n) => {
                    return Err(raise(format!(
                        "a queue of 1 to {MAX_QUEUE} messages, not {n}"
                    )))
                }
            };
            let sub = axkit_shared::subscribe(channel.as_bytes(), queue).map_err(raise)?;
            let cell = Rc::new(SubCell {
                state: RefCell::new(SubState::Ready(sub)),
                dropped: Cell::new(0),
            });
            if let Some(slot) = crate::request::current_slot() {
                slot.subscriptions.0.borrow_mut().push(Rc::downgrade(&cell));
            }
            Ok(Sub(cell))
        })?,
    )?;
    shared.raw_set(
        "waiting",
        lua.create_function(|_, _: MultiValue| Ok(axkit_shared::waiting()))?,
    )?;
    base.raw_set("shared", shared)
}

/// The largest queue `shared.subscribe` makes.
const MAX_QUEUE: i64 = 1 << 16;

/// A subscription as a script holds it (`shared.subscribe`).
pub(crate) struct Sub(Rc<SubCell>);

impl Sub {
    pub fn cell(&self) -> Rc<SubCell> {
        self.0.clone()
    }
}

/// The subscriptions made while a request's hooks ran, closed when the
/// request ends: one kept in a global would otherwise hold messages for a
/// client long gone, until the collector came by.
#[derive(Default)]
pub(crate) struct Owned(RefCell<Vec<std::rc::Weak<SubCell>>>);

impl Owned {
    /// Close them all (the request is over).
    pub fn close_all(&self) {
        let subs = std::mem::take(&mut *self.0.borrow_mut());
        for sub in subs {
            if let Some(sub) = sub.upgrade() {
                sub.close();
            }
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.close_all();
    }
}

/// Where a script's subscription lives: out of it while a wait has it,
/// gone once closed (by `sub:close()`, or by the end of the request that
/// made it).
pub(crate) struct SubCell {
    state: RefCell<SubState>,
    /// The drop count when the subscription was last in its cell.
    dropped: Cell<u64>,
}

enum SubState {
    Ready(Subscription),
    Busy,
    Closed,
}

impl SubCell {
    /// Take the subscription for a wait: `None` once closed; an error
    /// while another wait has it.
    pub fn take(&self) -> mlua::Result<Option<Subscription>> {
        let mut state = self.state.borrow_mut();
        match std::mem::replace(&mut *state, SubState::Busy) {
            SubState::Ready(sub) => {
                self.dropped.set(sub.dropped());
                Ok(Some(sub))
            }
            SubState::Busy => Err(raise("the subscription is in use by another wait")),
            SubState::Closed => {
                *state = SubState::Closed;
                Ok(None)
            }
        }
    }

    /// Give it back after a wait (unless it was closed meanwhile).
    pub fn put_back(&self, sub: Subscription) {
        let mut state = self.state.borrow_mut();
        if matches!(*state, SubState::Busy) {
            self.dropped.set(sub.dropped());
            *state = SubState::Ready(sub);
        }
    }

    /// Unsubscribe (a wait in progress finds it closed when it ends).
    pub fn close(&self) {
        let old = std::mem::replace(&mut *self.state.borrow_mut(), SubState::Closed);
        if let SubState::Ready(sub) = old {
            self.dropped.set(sub.dropped());
        }
    }

    fn dropped(&self) -> u64 {
        match &*self.state.borrow() {
            SubState::Ready(sub) => sub.dropped(),
            _ => self.dropped.get(),
        }
    }

    /// The next message, or why there is none: in a request, waited for
    /// by the hook runner while the client is there and the worker is not
    /// draining (with the stream's heartbeats); elsewhere (a timer), only
    /// for the message or the timeout.
    async fn next(
        &self,
        slot: Option<Rc<crate::request::Slot>>,
        timeout: Option<Duration>,
    ) -> mlua::Result<Result<Bytes, Ended>> {
        let Some(mut sub) = self.take()? else {
            return Ok(Err(Ended::Closed));
        };
        let got = match slot {
            Some(slot) => match slot.next(sub, timeout).await {
                Some((back, got)) => {
                    sub = back;
                    got
                }
                None => {
                    self.close();
                    return Err(raise(
                        "the subscription was lost to a wait where the script cannot yield",
                    ));
                }
            },
            None => match timeout {
                Some(limit) => tokio::time::timeout(limit, sub.recv())
                    .await
                    .map_err(|_| Ended::Timeout),
                None => Ok(sub.recv().await),
            },
        };
        self.put_back(sub);
        Ok(got)
    }
}

impl UserData for Sub {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // `sub:next([timeout])`: the message, or nil and why not.
        m.add_async_method("next", |lua, sub, timeout: Option<f64>| {
            let (cell, slot) = (sub.cell(), crate::request::current_slot());
            async move {
                let timeout = timeout
                    .map(|s| crate::bounds::seconds("sub:next", s))
                    .transpose()?;
                match cell.next(slot, timeout).await? {
                    Ok(m) => lua.create_string(&m)?.into_lua_multi(&lua),
                    Err(why) => (LuaValue::Nil, why.to_string()).into_lua_multi(&lua),
                }
            }
        });
        // `for message in sub do … end`: until the stream should end.
        m.add_async_meta_method(MetaMethod::Call, |lua, sub, _: MultiValue| {
            let (cell, slot) = (sub.cell(), crate::request::current_slot());
            async move {
                match cell.next(slot, None).await? {
                    Ok(m) => Ok(LuaValue::String(lua.create_string(&m)?)),
                    Err(_) => Ok(LuaValue::Nil),
                }
            }
        });
        m.add_method("dropped", |_, sub, ()| Ok(sub.0.dropped()));
        m.add_method("close", |_, sub, ()| {
            sub.0.close();
            Ok(())
        });
        m.add_meta_method(MetaMethod::Close, |_, sub, _: MultiValue| {
            sub.0.close();
            Ok(())
        });
    }
}
