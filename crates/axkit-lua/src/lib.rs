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
//! Directives of the Lua host itself, usable after `Plugin lua`:
//! `LuaTimeLimit` (how long a hook may run without suspending before it is
//! stopped with a 500) and `LuaReload` (re-run a script when its file
//! changes, for development).
//!
//! Scripts are read through the config's `FileReader`: the master records
//! them in the snapshot it hands its workers, so a worker restarted after
//! a crash runs the script the master loaded. Only `LuaReload On` reads
//! the disk again.

mod api;
mod directives;
mod fast;
mod form;
mod host;
mod io;
mod request;
mod script;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use axkit::config::{Directive, FileReader, Scopes, ValueType};
use axkit::{Hook, Plugin, PluginInit, PluginSource};

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

impl PluginSource for LuaSource {
    fn name(&self) -> &'static str {
        "lua"
    }

    fn directives(&self) -> Vec<Directive> {
        vec![
            Directive::new("LuaTimeLimit", ValueType::Duration)
                .scopes(Scopes::ALL)
                .default("5s")
                .doc("How long a Lua hook may run without suspending before it is stopped (500)"),
            Directive::new("LuaMemoryLimit", ValueType::Size)
                .scopes(Scopes::GLOBAL)
                .default("1G")
                .doc(
                    "Memory all Lua scripts of one worker may hold; beyond it an allocation \
                     is a Lua error (500) rather than the worker being killed. 0: no limit",
                ),
            Directive::new("LuaReload", ValueType::OnOff)
                .scopes(Scopes::GLOBAL)
                .default("off")
                .doc(
                    "Re-run a Lua script when its file changes (development; module state resets)",
                ),
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
        let script = self.host()?.load(name, &path, &file.bytes, file.modified)?;
        Ok(Some(script.directives.clone()))
    }

    fn create(&self, name: &str, init: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        // `Plugin lua` loads the host itself, so that its directives may be
        // used.
        if name == self.name() {
            return Ok(Some(Rc::new(LuaHost)));
        }
        // The script this worker ran when it loaded its config: no second
        // look at the disk, which may hold a newer edit.
        let Some(host) = self.host.borrow().clone() else {
            return Ok(None);
        };
        let Some(script) = host.loaded(name) else {
            return Ok(None);
        };
        let memory = init.config.global.size("LuaMemoryLimit").unwrap_or(0);
        host.lua
            .set_memory_limit(usize::try_from(memory).unwrap_or(usize::MAX))
            .map_err(|e| format!("LuaMemoryLimit: {e}"))?;
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
        Ok(Some(Rc::new(ScriptPlugin {
            host,
            script,
            reload: global.flag("LuaReload"),
            global_limit: global
                .duration("LuaTimeLimit")
                .unwrap_or(script::DEFAULT_TIME_LIMIT),
            limit_id: global.registry().lookup("LuaTimeLimit"),
        })))
    }
}

/// `Plugin lua`: the Lua host as a plugin, so that its directives
/// (`LuaTimeLimit`, `LuaReload`) may be written. It has no hooks.
struct LuaHost;

#[axkit::plugin]
impl Plugin for LuaHost {}
