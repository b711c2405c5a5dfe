//! Lua plugins for AxKit: `Plugin NAME` finds `NAME.lua` (or
//! `NAME/init.lua`) in a `PluginDir`, and the script implements hooks
//! (`hook_response(r)`…) and declares directives (`directive { … }`) with
//! the same powers as a Rust plugin. Register the source in a binary with
//! `axkit::Server::new().source(axkit_lua::LuaSource::new())`; the stock
//! `axkit` command does. The script API is documented in `docs/lua.md`.
//!
//! One Lua state per worker (the worker is one thread), created with the
//! first script plugin; every hook runs in a coroutine driven by the
//! worker's event loop, so a script that sleeps or waits on a socket
//! suspends only its own request.
//!
//! Directives of the Lua host itself, usable wherever a `PluginDir` is set
//! (where Lua plugins are found; no `Plugin lua` line, which is deprecated):
//! `LuaTimeLimit` (how long a hook or a timer's run may run without
//! suspending before it is stopped), `LuaMemoryLimit` (memory all scripts
//! of a worker may hold), `LuaReload` (re-run a script when its file, or a
//! module it requires, changes, for development) and `LuaFileRoot`
//! (repeatable: the directories the `file` API may touch; none, no file
//! access).
//!
//! The globals `postgres`, `redis` and `sqlite` are the config's databases
//! (`Database NAME URL`), through `axkit-db`'s per-worker pools (`db/`);
//! `session` and `crypto` are `axkit-session`'s (`session.rs`).
//! Live pages (`r:sse`, `r:long_poll`, `shared.subscribe`) are built on
//! `axkit-sse` and `axkit-shared`'s broadcast (`sse.rs`, `shared.rs`).
//! `xml` and `r:dom()` are a small DOM over `axkit-xml`, for processors of
//! the `xmlresponse` chain (`xml.rs`).
//!
//! Scripts, and the modules they `require`, are read through the config's
//! `FileReader`: the master records them in the snapshot it hands its
//! workers, so a worker restarted after a crash runs what the master
//! loaded. Only `LuaReload On` reads the disk again. Timers start when the
//! worker does (`Plugin::worker_start`) and stop when it drains.

mod api;
mod bounds;
mod db;
mod directives;
mod fast;
mod files;
mod form;
mod host;
mod http;
mod io;
mod json;
mod modules;
mod request;
mod script;
mod session;
mod shared;
mod sse;
mod template;
mod timer;
mod watchdog;
mod xml;

/// Entry points for the fuzz targets in fuzz/ (the `fuzzing` feature);
/// not part of the API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    use mlua::{Function, Lua, Table, Value};

    /// The scripts' `json` global, alone in a Lua state of its own.
    pub struct Json {
        lua: Lua,
        encode: Function,
        decode: Function,
    }

    impl Json {
        pub fn new() -> mlua::Result<Json> {
            let lua = Lua::new();
            let base = lua.create_table()?;
            crate::json::install(&lua, &base)?;
            let json: Table = base.raw_get("json")?;
            Ok(Json {
                encode: json.raw_get("encode")?,
                decode: json.raw_get("decode")?,
                lua,
            })
        }

        /// `json.encode(json.decode(text))`: None when `decode` refuses
        /// the text, Err with `encode`'s message when `encode` refuses
        /// what `decode` made.
        pub fn round_trip(&self, text: &[u8]) -> Option<Result<String, String>> {
            let text = self.lua.create_string(text).ok()?;
            let value: Value = self.decode.call(text).ok()?;
            Some(self.encode.call(value).map_err(|e| e.to_string()))
        }
    }
}

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use axkit::config::{Directive, FileReader, Key, Scopes};
use axkit::{Hook, Plugin, PluginInit, PluginSource};
use std::time::Duration;

use host::Host;
use script::ScriptPlugin;

/// The source of Lua plugins. It keeps this thread's Lua state: in a worker
/// that is the state every script plugin of the worker shares.
#[derive(Default)]
pub struct LuaSource {
    host: RefCell<Option<Rc<Host>>>,
}

impl LuaSource {
    pub fn new() -> LuaSource {
        LuaSource::default()
    }

    fn host(&self) -> Result<Rc<Host>, String> {
        if let Some(host) = self.host.borrow().as_ref() {
            return Ok(host.clone());
        }
        let host = Rc::new(Host::new().map_err(|e| format!("cannot start Lua: {e}"))?);
        *self.host.borrow_mut() = Some(host.clone());
        Ok(host)
    }
}

/// How long a hook may run without suspending (per Location).
pub(crate) static LUA_TIME_LIMIT: Key<Duration> = Key::new("LuaTimeLimit")
    .default("5s")
    .zero_is_no_limit()
    .doc("How long a Lua hook may run without suspending before it is stopped (500); 0: no limit");

static LUA_MEMORY_LIMIT: Key<u64> = Key::new("LuaMemoryLimit")
    .scopes(Scopes::GLOBAL)
    .default("1G")
    .doc(
        "Memory all Lua scripts of one worker may hold; beyond it an allocation \
         is a Lua error (500) rather than the worker being killed. 0: no limit",
    );

/// Timers live in Rust memory, outside LuaMemoryLimit: a bound of their own.
static LUA_MAX_TIMERS: Key<usize> = Key::new("LuaMaxTimers")
    .scopes(Scopes::GLOBAL)
    .default("10000")
    .doc(
        "Timers (timer.at, timer.every, timer.once_per_server) one worker keeps \
         pending at most; past it they return nil and an error",
    );

static LUA_RELOAD: Key<bool> = Key::new("LuaReload")
    .scopes(Scopes::GLOBAL)
    .default("off")
    .doc("Re-run a Lua script when its file changes (development; module state resets)");

impl PluginSource for LuaSource {
    fn name(&self) -> &str {
        "lua"
    }

    /// Written wherever a `PluginDir` is set (the default
    /// [`in_use`](PluginSource::in_use)), as Lua plugins can be loaded there.
    fn directives(&self) -> Vec<Directive> {
        vec![
            LUA_TIME_LIMIT.declare(),
            LUA_MEMORY_LIMIT.declare(),
            LUA_MAX_TIMERS.declare(),
            LUA_RELOAD.declare(),
            files::LUA_FILE_ROOT.declare(),
            io::LUA_PROCESS.declare(),
        ]
    }

    /// Loading runs the script's top level (that is where it declares its
    /// directives), so a syntax or load error is reported with file:line
    /// at start-up, by `--check` and on reload.
    fn find(
        &self,
        name: &str,
        plugin_dirs: &[PathBuf],
        files: &mut FileReader<'_>,
    ) -> Result<Option<Vec<Directive>>, String> {
        let Some((path, file)) = host::resolve(name, plugin_dirs, files)? else {
            return Ok(None);
        };
        let from = (path.as_path(), &file.bytes[..], file.modified);
        let script = self.host()?.load(name, from, plugin_dirs, files)?;
        Ok(Some(script.directives.clone()))
    }

    fn searched(&self, name: &str, plugin_dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
        host::searched(name, plugin_dirs)
    }

    fn create(&self, name: &str, init: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        // The script this worker ran when it loaded its config: no second
        // look at the disk, which may hold a newer edit.
        let Some(host) = self.host.borrow().clone() else {
            return Ok(None);
        };
        let Some(script) = host.loaded(name) else {
            return Ok(None);
        };
        crate::db::configure(&host.lua, init.config)?;
        let memory = *init.config.global.get(&LUA_MEMORY_LIMIT);
        host.lua
            .set_memory_limit(usize::try_from(memory).unwrap_or(usize::MAX))
            .map_err(|e| format!("LuaMemoryLimit: {e}"))?;
        host.lua.set_app_data(bounds::MemoryLimit(
            usize::try_from(memory).unwrap_or(usize::MAX),
        ));
        let calls: u32 = Hook::ALL
            .into_iter()
            .filter(|&h| script.hooks.contains(h))
            .map(|h| match h {
                Hook::Connect | Hook::PreRequest | Hook::Disconnect | Hook::Logging => 0,
                // These may run more than once per request.
                Hook::BodyData | Hook::WriteBodyData | Hook::Error => 2,
                _ => 1,
            })
            .sum();
        host.request_hooks.set(host.request_hooks.get() + calls);
        let global = &init.config.global;
        host.lua
            .set_app_data(template::GlobalConfig(global.clone()));
        host.files.configure(
            global.list(&files::LUA_FILE_ROOT),
            global.get(&axkit::config::core::SERVER_ROOT).as_deref(),
        )?;
        host.lua
            .set_app_data(io::ProcessPolicy(std::cell::Cell::new(
                *global.get(&io::LUA_PROCESS),
            )));
        host.timers.set_limit(*global.get(&LUA_TIME_LIMIT));
        host.timers.set_max(*global.get(&LUA_MAX_TIMERS));
        Ok(Some(Rc::new(ScriptPlugin {
            host,
            script,
            reload: *global.get(&LUA_RELOAD),
            global_limit: *global.get(&LUA_TIME_LIMIT),
        })))
    }
}
