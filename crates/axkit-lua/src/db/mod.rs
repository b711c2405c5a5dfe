//! The databases of the config for scripts: the globals `postgres`,
//! `redis` and `sqlite`, whose `get(NAME)` returns a handle on the
//! worker's pool for the `Database NAME URL` of that kind (through
//! `axkit-db`, shared with the worker's Rust plugins). Every call waits
//! without blocking the worker, like the other primitives.
//!
//! A failed call raises an error. One saying the database could not serve
//! (down, unreachable, past its `timeout=`) ends the hook, uncaught, with
//! a 503 and a log line naming the database (see [`unavailable`]); any
//! other (a statement the database refused, a value that cannot be bound)
//! is a script error like any other, a 500. `pcall` catches both.
//!
//! A transaction or a subscription lasts until the script ends it (or lets
//! go of it, and the collector takes it), or at the latest until its
//! request ends (a transaction not committed by then is rolled back), so
//! that neither can hold a connection past the request that opened it.
//! The request keeps track only of those still open: one that lives long
//! (a stream) and opens thousands in turn grows by none of them.

mod postgres;
mod redis;
mod sqlite;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use axkit::config::Config;
use axkit_db::Databases;
use mlua::{Lua, Table};

/// Make the globals, in the scripts' base environment.
pub(crate) fn install(lua: &Lua, base: &Table) -> mlua::Result<()> {
    base.raw_set("postgres", postgres::global(lua)?)?;
    base.raw_set("redis", redis::global(lua)?)?;
    base.raw_set("sqlite", sqlite::global(lua)?)
}

/// The worker's config is loaded: its databases are what `get` finds.
pub(crate) fn configure(lua: &Lua, config: &Config) -> Result<(), String> {
    let databases = Databases::of(config)?;
    lua.set_app_data(databases);
    Ok(())
}

/// The database error that makes an uncaught `e` a 503: a database that
/// could not serve.
pub(crate) fn unavailable(e: &mlua::Error) -> Option<&axkit_db::Error> {
    match e {
        mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
            unavailable(cause)
        }
        mlua::Error::ExternalError(inner) => inner
            .downcast_ref::<axkit_db::Error>()
            .filter(|e| e.is_unavailable()),
        _ => None,
    }
}

/// A database error, raised.
fn raise(e: axkit_db::Error) -> mlua::Error {
    mlua::Error::external(e)
}

/// A handle's database, found by name when first used: `get` may run at
/// a script's top level, before the worker has its config (the master
/// runs it too, with none at all).
struct Lazy<T> {
    name: String,
    db: RefCell<Option<T>>,
}

impl<T: Clone> Lazy<T> {
    /// `get(NAME)`: checked at once when the databases are known.
    fn new(
        lua: &Lua,
        name: String,
        find: fn(&Databases, &str) -> Result<T, axkit_db::Error>,
    ) -> mlua::Result<Lazy<T>> {
        let lazy = Lazy {
            name,
            db: RefCell::new(None),
        };
        if lua.app_data_ref::<Rc<Databases>>().is_some() {
            lazy.get(lua, find)?;
        }
        Ok(lazy)
    }

    fn get(
        &self,
        lua: &Lua,
        find: fn(&Databases, &str) -> Result<T, axkit_db::Error>,
    ) -> mlua::Result<T> {
        if let Some(db) = self.db.borrow().as_ref() {
            return Ok(db.clone());
        }
        let databases = lua.app_data_ref::<Rc<Databases>>().ok_or_else(|| {
            mlua::Error::runtime("databases are available once the worker has started (in hooks)")
        })?;
        let db = find(&databases, &self.name).map_err(raise)?;
        *self.db.borrow_mut() = Some(db.clone());
        Ok(db)
    }
}

/// Something a request holds open (a transaction, a subscription): a
/// `RefCell<Option<T>>` that the end of the request empties.
trait Held {
    fn release(&self);
}

impl<T> Held for RefCell<Option<T>> {
    fn release(&self) {
        if let Ok(mut held) = self.try_borrow_mut() {
            held.take();
        }
    }
}

/// Kept in the context's state: what the request's scripts hold open,
/// released when the request ends. Only what is still open: a request that
/// lives long (a stream, a long poll) may open and end thousands in turn.
/// Weak, so that one the script let go of ends when the collector takes it
/// (its connection given back then, not at the end of the request); one
/// the script ended leaves at once ([`finish`]).
#[derive(Default)]
struct RequestHeld(Vec<Weak<dyn Held>>);

impl Drop for RequestHeld {
    fn drop(&mut self) {
        for held in self.0.iter().filter_map(Weak::upgrade) {
            held.release();
        }
    }
}

/// `Option<T>` in a `RefCell`, shared with the request's [`RequestHeld`]:
/// the state of a transaction or subscription object.
type Shared<T> = Rc<RefCell<Option<T>>>;

/// The state of a transaction or subscription `t`, released when the
/// request whose hook runs now ends (nothing outside a request: a script's
/// top level keeps what it opens until it ends it or the collector takes
/// it).
fn shared<T: 'static>(t: T) -> Shared<T> {
    let shared = Rc::new(RefCell::new(Some(t)));
    let held: Weak<dyn Held> = Rc::downgrade(&shared) as Weak<_>;
    crate::request::with_current(|ctx| match ctx.state_mut::<RequestHeld>() {
        Some(kept) => {
            // The entries of what the collector took go before the list
            // grows, which then holds at most twice the most ever open at
            // once, at no cost per entry.
            if kept.0.len() == kept.0.capacity() {
                kept.0.retain(|h| h.strong_count() > 0);
            }
            kept.0.push(held);
        }
        None => ctx.set_state(RequestHeld(vec![held])),
    });
    shared
}

/// Take `T` out for a call (so that a call abandoned half-way drops it,
/// which ends it), or say why there is none.
fn take<T>(shared: &Shared<T>, what: &str) -> mlua::Result<T> {
    out(shared).ok_or_else(|| {
        mlua::Error::runtime(format!("the {what} is over (or in use by another call)"))
    })
}

/// `T`, unless it is over or a call has it.
fn out<T>(shared: &Shared<T>) -> Option<T> {
    shared.try_borrow_mut().ok().and_then(|mut t| t.take())
}

/// Give `T` back after a call.
fn put<T>(shared: &Shared<T>, t: T) {
    *shared.borrow_mut() = Some(t);
}

/// Take `T` out for good, to commit or roll it back.
fn finish<T: 'static>(shared: &Shared<T>, what: &str) -> mlua::Result<T> {
    let t = take(shared, what)?;
    forget(shared);
    Ok(t)
}

/// End `shared` now (`close`, a `<close>` variable going out of scope);
/// nothing when it is over already, or while a call has it.
fn close<T: 'static>(shared: &Shared<T>) {
    if let Some(t) = out(shared) {
        forget(shared);
        drop(t);
    }
}

/// `shared` is over: the current request has nothing to release. (One
/// ended in another request than the one that opened it stays in that
/// one's list until the collector takes it.)
fn forget<T: 'static>(shared: &Shared<T>) {
    crate::request::with_current(|ctx| {
        if let Some(kept) = ctx.state_mut::<RequestHeld>() {
            let ended = Rc::as_ptr(shared);
            kept.0.retain(|h| !std::ptr::addr_eq(h.as_ptr(), ended));
        }
    });
}
