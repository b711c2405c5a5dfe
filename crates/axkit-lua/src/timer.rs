//! The `timer` global: Lua functions run in the background, tied to no
//! request. Timers are per worker: every worker process runs the timers
//! its scripts create (a script's top level runs in each worker, so a
//! `timer.every` there runs once per worker), except
//! `timer.once_per_server`, which runs in one worker of the server.
//!
//! Each run is a coroutine of its own under `LuaTimeLimit` (the global
//! value), as a hook is: it may `sleep` or wait on a socket, and is
//! stopped if it computes longer than the limit without suspending. An
//! error or a stop is logged with the script's file:line, and a
//! repeating timer carries on at its next tick.
//!
//! Timers created while scripts load (their top level, in the master or a
//! worker loading its config) wait until the worker starts serving
//! (`Plugin::worker_start`): the master and `axkit --check` never run
//! them. They all stop when the worker begins to drain (a run in progress
//! finishes, or ends with the worker); after a SIGHUP the new generation's
//! workers start their own. With `LuaReload On`, the
//! timers a script's (or module's) top level created are cancelled when
//! it is loaded again, which creates them anew.
//!
//! Their memory is Rust's, outside `LuaMemoryLimit` (about a kilobyte
//! each, with the task), so a worker keeps at most `LuaMaxTimers` pending
//! (every repeating timer counts): past it `timer.at`… return nil and an
//! error. They are kept by id, so that one ends in O(1) however many
//! there are.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

use axkit::plugin::Worker;
use axkit::Level;
use mlua::{
    Function, IntoLuaMulti, Lua, MultiValue, Table, UserData, UserDataMethods, Value, WeakLua,
};
use tokio::task::AbortHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::host::{Clock, Coroutines};
use crate::modules::{Modules, Owner};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Once, after a delay.
    At,
    /// Repeatedly, in every worker.
    Every,
    /// Repeatedly, in the elected worker only.
    OncePerServer,
}

/// One timer.
pub(crate) struct Entry {
    /// Its key among the timers, in the order they were made.
    id: u64,
    kind: Kind,
    delay: Duration,
    func: Function,
    args: Vec<Value>,
    /// The script or module whose top level created it, if one did.
    owner: Option<Owner>,
    /// Where its function is defined, for the log.
    place: String,
    /// No more runs: cancelled, finished, or the worker drains.
    done: Cell<bool>,
    running: Cell<bool>,
    task: RefCell<Option<AbortHandle>>,
}

/// The timers of one Lua state.
pub(crate) struct Timers {
    lua: WeakLua,
    clock: Rc<Clock>,
    coroutines: Rc<Coroutines>,
    modules: Rc<Modules>,
    /// `LuaTimeLimit` as configured globally.
    limit: Cell<Duration>,
    /// Set when the worker starts serving.
    worker: RefCell<Option<Worker>>,
    /// The worker drains: nothing runs any more.
    stopped: Cell<bool>,
    /// Timers not done yet, by id (creation order: those made while the
    /// scripts loaded start in that order).
    entries: RefCell<BTreeMap<u64, Rc<Entry>>>,
    next_id: Cell<u64>,
    /// `LuaMaxTimers`: at most this many entries.
    max: Cell<usize>,
}

/// Whether this worker runs the `once_per_server` timers: worker 0 of its
/// generation. This is the seam for a server-wide lock (the shared
/// dictionary's): across a reload, the old generation's worker 0 stops
/// its timers only when it begins to drain, which is after the new
/// generation's worker 0 has started its own.
fn elected(worker: &Worker) -> bool {
    worker.index() == 0
}

impl Timers {
    pub fn set_limit(&self, limit: Duration) {
        self.limit.set(limit);
    }

    pub fn set_max(&self, max: usize) {
        self.max.set(max);
    }

    /// The worker starts serving: start the timers created so far, and
    /// stop them all when it begins to drain. Only the first call counts
    /// (each script plugin of the worker passes it on): whether this was it.
    pub fn start(self: &Rc<Self>, worker: &Worker) -> bool {
        if self.worker.borrow().is_some() {
            return false;
        }
        *self.worker.borrow_mut() = Some(worker.clone());
        let pending: Vec<Rc<Entry>> = self.entries.borrow().values().cloned().collect();
        for entry in pending {
            self.spawn(entry);
        }
        let this = Rc::downgrade(self);
        let worker = worker.clone();
        tokio::task::spawn_local(async move {
            worker.stopping().await;
            if let Some(this) = this.upgrade() {
                this.stop();
            }
        });
        true
    }

    /// No more runs; a run in progress finishes, or ends with the worker.
    fn stop(&self) {
        self.stopped.set(true);
        let all = std::mem::take(&mut *self.entries.borrow_mut());
        for entry in all.values() {
            self.cancel_one(entry);
        }
    }

    /// The timers that `owner`'s top level created.
    pub fn owned_by(&self, owner: &Owner) -> Vec<Rc<Entry>> {
        self.entries
            .borrow()
            .values()
            .filter(|e| e.owner.as_ref() == Some(owner))
            .cloned()
            .collect()
    }

    /// Cancel `entries` (a run in progress finishes).
    pub fn cancel(&self, entries: &[Rc<Entry>]) {
        for entry in entries {
            self.cancel_one(entry);
        }
    }

    /// Whether it stopped a timer that would have run again.
    fn cancel_one(&self, entry: &Rc<Entry>) -> bool {
        if entry.done.replace(true) {
            return false;
        }
        // Not from within its own run: the task would die at its next
        // await, cutting the run short. It ends after the run instead.
        if !entry.running.get() {
            if let Some(task) = entry.task.take() {
                task.abort();
            }
        }
        self.forget(entry);
        true
    }

    fn forget(&self, entry: &Entry) {
        self.entries.borrow_mut().remove(&entry.id);
    }

    /// A new timer's handle; `Err` with the message `timer.at`… return
    /// beside nil when the worker has `LuaMaxTimers` pending already.
    fn create(
        self: &Rc<Self>,
        kind: Kind,
        (seconds, func, args): (f64, Function, MultiValue),
    ) -> mlua::Result<Result<Handle, String>> {
        let name = match kind {
            Kind::At => "timer.at",
            Kind::Every => "timer.every",
            Kind::OncePerServer => "timer.once_per_server",
        };
        // Bounded, so that a deadline, or a repeating timer's next one,
        // always fits the clock.
        let delay = crate::bounds::seconds(name, seconds)?;
        if kind != Kind::At && delay.is_zero() {
            return Err(mlua::Error::runtime(format!(
                "{name}: the interval must be more than 0 seconds"
            )));
        }
        let info = func.info();
        // A script's chunk is named `@FILE` (short_src would cut a long
        // path); a chunk from `load` is its text, which short_src sums up.
        let file = match info.source.as_deref().and_then(|s| s.strip_prefix('@')) {
            Some(path) => path.to_string(),
            None => info.short_src.unwrap_or_else(|| "?".into()),
        };
        let place = format!("{file}:{}", info.line_defined.unwrap_or(0));
        if self.entries.borrow().len() >= self.max.get() {
            return Ok(Err(format!(
                "{name}: too many pending timers (LuaMaxTimers {})",
                self.max.get()
            )));
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let entry = Rc::new(Entry {
            id,
            kind,
            delay,
            func,
            args: args.into_iter().collect(),
            owner: self.modules.owner(),
            place,
            done: Cell::new(self.stopped.get()),
            running: Cell::new(false),
            task: RefCell::new(None),
        });
        if !self.stopped.get() {
            self.entries.borrow_mut().insert(id, entry.clone());
            if self.worker.borrow().is_some() {
                self.spawn(entry.clone());
            }
        }
        Ok(Ok(Handle {
            entry,
            timers: Rc::downgrade(self),
        }))
    }

    fn spawn(self: &Rc<Self>, entry: Rc<Entry>) {
        let task = tokio::task::spawn_local(self.clone().run(entry.clone()));
        *entry.task.borrow_mut() = Some(task.abort_handle());
    }

    async fn run(self: Rc<Self>, entry: Rc<Entry>) {
        let Some(worker) = self.worker.borrow().clone() else {
            return;
        };
        if entry.kind == Kind::OncePerServer && !elected(&worker) {
            entry.done.set(true);
            self.forget(&entry);
            return;
        }
        let start = Instant::now() + entry.delay;
        if entry.kind == Kind::At {
            tokio::time::sleep_until(start).await;
            if !entry.done.get() {
                self.run_once(&worker, &entry).await;
            }
        } else {
            // A run that takes longer than the interval delays the next
            // one rather than bunching them up.
            let mut tick = tokio::time::interval_at(start, entry.delay);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            while !entry.done.get() {
                tick.tick().await;
                if entry.done.get() {
                    break;
                }
                self.run_once(&worker, &entry).await;
            }
        }
        entry.done.set(true);
        self.forget(&entry);
    }

    async fn run_once(&self, worker: &Worker, entry: &Entry) {
        entry.running.set(true);
        let args: MultiValue = entry.args.iter().cloned().collect();
        let limit = self.limit.get();
        let Some(lua) = self.lua.try_upgrade() else {
            return;
        };
        let result = crate::host::run_limited::<MultiValue>(
            &lua,
            &self.coroutines,
            &self.clock,
            limit,
            &entry.func,
            args,
        )
        .await;
        entry.running.set(false);
        let failure = match result {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(at) => format!("LuaTimeLimit ({limit:?}) exceeded, stopped at {at}"),
        };
        worker.log(Level::Error, &format!("timer {}: {failure}", entry.place));
    }
}

/// What `timer.at`… return: `handle:cancel()`.
struct Handle {
    entry: Rc<Entry>,
    timers: Weak<Timers>,
}

impl UserData for Handle {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // True if this stopped runs to come; false if there were none.
        m.add_method("cancel", |_, h, ()| {
            Ok(match h.timers.upgrade() {
                Some(timers) => timers.cancel_one(&h.entry),
                None => false,
            })
        });
    }
}

/// Install `timer` into the base.
pub(crate) fn install(
    lua: &Lua,
    base: &Table,
    clock: Rc<Clock>,
    coroutines: Rc<Coroutines>,
    modules: Rc<Modules>,
) -> mlua::Result<Rc<Timers>> {
    let timers = Rc::new(Timers {
        lua: lua.weak(),
        clock,
        coroutines,
        modules,
        limit: Cell::new(Duration::from_secs(5)),
        worker: RefCell::new(None),
        stopped: Cell::new(false),
        entries: RefCell::new(BTreeMap::new()),
        next_id: Cell::new(0),
        // Until the worker's config is read: the scripts' top levels,
        // which run once as they load, are not held to it.
        max: Cell::new(usize::MAX),
    });
    let timer = lua.create_table()?;
    for (name, kind) in [
        ("at", Kind::At),
        ("every", Kind::Every),
        ("once_per_server", Kind::OncePerServer),
    ] {
        let weak = Rc::downgrade(&timers);
        timer.raw_set(
            name,
            lua.create_function(move |lua, args: (f64, Function, MultiValue)| {
                let timers = weak
                    .upgrade()
                    .ok_or_else(|| mlua::Error::runtime("timer: the Lua host is gone"))?;
                match timers.create(kind, args)? {
                    Ok(handle) => handle.into_lua_multi(lua),
                    Err(why) => (Value::Nil, why).into_lua_multi(lua),
                }
            })?,
        )?;
    }
    base.raw_set("timer", timer)?;
    Ok(timers)
}
