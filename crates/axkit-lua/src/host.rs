//! The Lua state of one worker: a sandboxed base environment holding the
//! scripting API, one environment table per script (its module-level state,
//! which lives across requests in this worker), the modules scripts
//! require, the worker's timers and file roots, and the clock of the
//! running slice that `LuaTimeLimit` bounds (enforced by `watchdog.rs`).
//!
//! Lua 5.4 rather than LuaJIT: LuaJIT runs no debug hooks inside compiled
//! traces, so a count hook cannot stop `while true do end` there without
//! switching the JIT off, which gives up most of its advantage.

use std::cell::{Cell, RefCell};
use std::ffi::c_int;
use std::future::{poll_fn, Future};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use axkit::config::{Directive, FileReader, PluginFile};
use axkit::{Hook, Hooks};
use mlua::{
    ffi, FromLuaMulti, Function, IntoLuaMulti, LightUserData, Lua, LuaOptions, RegistryKey, StdLib,
    Table, Thread,
};

use crate::directives;
use crate::files::Files;
use crate::modules::{Modules, Owner};
use crate::timer::Timers;
use crate::watchdog::{self, Entered};

/// Finished hook coroutines kept for the next hook calls (by the host's
/// [`Coroutines`] for hooks and timers, by mlua for `call_async`). Without a pool every hook call
/// makes a new Lua thread (object, stack, call info) and the collector
/// frees it again. Only threads whose function returned are pooled, and
/// they are reset (stack emptied) before reuse, so nothing of one request
/// is left for the next.
const THREAD_POOL: usize = 64;

/// The limit while a script's (or a module's) top level runs at load time.
pub(crate) const LOAD_LIMIT: Duration = Duration::from_secs(5);

/// The CPU slice of the Lua code running now: since when, for how long it
/// may run before it is stopped, and where it was stopped. The timer of
/// `watchdog.rs` stops the slice's own coroutine; `start` is for the
/// coroutines scripts create, whose count hook reads the clock at its
/// first check rather than when the slice starts, which spares a clock
/// read per resumption.
#[derive(Default)]
pub(crate) struct Clock {
    armed: Cell<bool>,
    start: Cell<Option<Instant>>,
    limit: Cell<Duration>,
    killed: RefCell<Option<String>>,
}

/// Restores the previous slice when a nested run (a log hook called from a
/// hook) ends.
pub(crate) struct Slice<'a> {
    clock: &'a Clock,
    armed: bool,
    start: Option<Instant>,
    limit: Duration,
    killed: Option<String>,
    entered: Entered,
}

impl Clock {
    /// Start a slice of at most `limit` of uninterrupted Lua execution on
    /// the coroutine `state` (the one resumed, or the one a top level runs
    /// on).
    pub fn arm(&self, limit: Duration, state: *mut ffi::lua_State) -> Slice<'_> {
        self.arm_resumed(limit, state, std::ptr::null_mut())
    }

    /// [`arm`](Self::arm) for a coroutine mlua resumes from `resumer`,
    /// where it makes the message of an error the coroutine ends in (see
    /// `watchdog::enter`).
    pub fn arm_resumed(
        &self,
        limit: Duration,
        state: *mut ffi::lua_State,
        resumer: *mut ffi::lua_State,
    ) -> Slice<'_> {
        Slice {
            clock: self,
            armed: self.armed.replace(true),
            start: self.start.replace(None),
            limit: self.limit.replace(limit),
            killed: self.killed.take(),
            entered: watchdog::enter(state, resumer, self, limit),
        }
    }

    /// Where the running slice was stopped, if it was.
    pub fn killed(&self) -> Option<String> {
        self.killed.borrow().clone()
    }

    pub fn is_killed(&self) -> bool {
        self.killed.borrow().is_some()
    }

    /// The running slice is stopped at `at` (`file:line`).
    pub fn kill(&self, at: String) {
        *self.killed.borrow_mut() = Some(at);
    }

    /// Whether the running slice is past its limit, for a check from a
    /// count hook: the first check starts the slice's time.
    pub fn overran(&self) -> bool {
        if !self.armed.get() {
            return false;
        }
        match self.start.get() {
            None => {
                self.start.set(Some(Instant::now()));
                false
            }
            Some(start) => start.elapsed() >= self.limit.get(),
        }
    }
}

impl Drop for Slice<'_> {
    fn drop(&mut self) {
        watchdog::leave(&self.entered);
        self.clock.armed.set(self.armed);
        self.clock.start.set(self.start);
        self.clock.limit.set(self.limit);
        *self.clock.killed.borrow_mut() = self.killed.take();
    }
}

/// A loaded script: its environment and hook functions.
pub(crate) struct Script {
    pub name: String,
    pub path: PathBuf,
    pub env: RefCell<Table>,
    /// `hook_<name>` per [`Hook`], as found when the script was (re)loaded.
    functions: RefCell<Vec<Option<HookFn>>>,
    pub hooks: Hooks,
    pub directives: Vec<Directive>,
    /// For `LuaReload`: the script's file and the files of the modules
    /// its top level required, each with its modification time when last
    /// loaded (None when the source came from the master's snapshot, so
    /// that the first look at the file reloads it).
    watch: RefCell<Vec<(PathBuf, Option<SystemTime>)>>,
}

/// A hook function, also held in the registry so that the C API can push
/// it onto a pooled coroutine (see [`Host::thread`]).
#[derive(Clone)]
struct HookFn {
    func: Function,
    key: Rc<RegistryKey>,
}

impl Script {
    /// The script's `hook_<name>` function.
    pub fn function(&self, hook: Hook) -> Option<Function> {
        self.functions.borrow()[hook as usize]
            .as_ref()
            .map(|f| f.func.clone())
    }

    /// Its registry index, valid until the script is reloaded.
    pub fn function_id(&self, hook: Hook) -> Option<c_int> {
        self.functions.borrow()[hook as usize]
            .as_ref()
            .map(|f| f.key.id())
    }
}

/// One Lua state and the scripts loaded into it.
pub(crate) struct Host {
    pub lua: Lua,
    pub clock: Rc<Clock>,
    base: Table,
    /// Request objects made so far (see [`Host::next_request`]).
    requests: Cell<u64>,
    pub coroutines: Rc<Coroutines>,
    /// The slot of a request whose only hook finished, emptied for the
    /// next request (see `ScriptPlugin::request_object`).
    pub spare_slot: Cell<Option<Rc<crate::request::Slot>>>,
    /// How many hook calls with `r` a request may see from this worker's
    /// script plugins, roughly: each hook function counts 1, one that may
    /// run several times per request (`hook_body_data`…) 2. See
    /// `ScriptPlugin::request_object`.
    pub request_hooks: Cell<u32>,
    /// Scripts loaded, by plugin name, so that a worker's `create` uses
    /// what its config load just executed.
    scripts: RefCell<Vec<Rc<Script>>>,
    pub modules: Rc<Modules>,
    pub files: Rc<Files>,
    pub timers: Rc<Timers>,
    /// The PluginDirs of the last load, where `LuaReload` finds modules.
    plugin_dirs: RefCell<Vec<PathBuf>>,
}

impl Host {
    pub fn new() -> mlua::Result<Host> {
        let lua = Lua::new_with(
            StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH,
            LuaOptions::new().thread_pool_size(THREAD_POOL),
        )?;
        let clock = Rc::new(Clock::default());
        // Requests make short-lived garbage (the request object, strings):
        // the generational collector deals with it in small steps.
        lua.load("collectgarbage('generational')").exec()?;
        let base = crate::api::install(&lua, clock.clone())?;
        crate::request::install(&lua)?;
        let modules = crate::modules::install(&lua, &base, clock.clone())?;
        let files = crate::files::install(&lua, &base)?;
        // For the request's file calls (`r:send_file`).
        lua.set_app_data(files.clone());
        let coroutines = Rc::new(Coroutines::default());
        let timers = crate::timer::install(
            &lua,
            &base,
            clock.clone(),
            coroutines.clone(),
            modules.clone(),
        )?;
        // What the base took what it needed from, and scripts must never
        // reach (a chunk given the state's globals would): gone from them.
        let globals = lua.globals();
        for name in ["os", "dofile", "loadfile", "load", "collectgarbage"] {
            globals.raw_set(name, mlua::Value::Nil)?;
        }
        Ok(Host {
            modules,
            files,
            timers,
            plugin_dirs: RefCell::new(Vec::new()),
            lua,
            requests: Cell::new(0),
            coroutines,
            spare_slot: Cell::new(None),
            request_hooks: Cell::new(0),
            clock,
            base,
            scripts: RefCell::new(Vec::new()),
        })
    }

    /// A new request object `r`: a light userdata holding a number never
    /// used before in this worker, with the top bit set so that it is no
    /// address of anything.
    pub fn next_request(&self) -> LightUserData {
        let n = self.requests.get() + 1;
        self.requests.set(n);
        LightUserData((n as usize | 1 << (usize::BITS - 1)) as *mut std::ffi::c_void)
    }

    /// A coroutine that will run the hook function registered at `id`
    /// (`func` gives it as a value): a pooled one, the function pushed with
    /// the C API (cheaper than mlua's checks), or a new one.
    pub fn thread(
        &self,
        id: c_int,
        func: impl FnOnce() -> Option<Function>,
    ) -> mlua::Result<Thread> {
        match self.coroutines.take() {
            Some(thread) => {
                // SAFETY: a pooled coroutine's function returned (see
                // `Coroutines::put`): empty its stack and push the next function.
                unsafe {
                    let ts = thread.state();
                    // Hooks leave it empty already (timers may not).
                    if ffi::lua_gettop(ts) != 0 {
                        ffi::lua_settop(ts, 0);
                    }
                    ffi::lua_rawgeti(ts, ffi::LUA_REGISTRYINDEX, id.into());
                }
                Ok(thread)
            }
            None => {
                let func =
                    func().ok_or_else(|| mlua::Error::runtime("the hook function is gone"))?;
                self.lua.create_thread(func)
            }
        }
    }

    /// Compile and run `source` (read from `path`, modified at `mtime`) in
    /// a fresh environment, collecting the directives it declares; the
    /// modules it requires are found in `dirs` and read through `files`.
    /// The script replaces any earlier one loaded as plugin `name` (in the
    /// master, at the previous config load; with `LuaReload`, the running
    /// version), and the timers that one's top level created go; if it
    /// does not load, the timers the failed run created go instead.
    pub fn load(
        &self,
        name: &str,
        from: (&Path, &[u8], Option<SystemTime>),
        dirs: &[PathBuf],
        files: &mut FileReader<'_>,
    ) -> Result<Rc<Script>, String> {
        let owner = Owner::Script(name.to_string());
        let old = self.timers.owned_by(&owner);
        let loaded = self.run_script(name, from, dirs, files);
        let gone = match loaded {
            Ok(_) => old,
            Err(_) => {
                let mut created = self.timers.owned_by(&owner);
                created.retain(|t| !old.iter().any(|o| Rc::ptr_eq(o, t)));
                created
            }
        };
        self.timers.cancel(&gone);
        loaded
    }

    fn run_script(
        &self,
        name: &str,
        (path, source, mtime): (&Path, &[u8], Option<SystemTime>),
        dirs: &[PathBuf],
        files: &mut FileReader<'_>,
    ) -> Result<Rc<Script>, String> {
        *self.plugin_dirs.borrow_mut() = dirs.to_vec();
        let env = crate::modules::environment(&self.lua, &self.base).map_err(|e| e.to_string())?;
        let declared: Rc<RefCell<Vec<Directive>>> = Rc::default();
        let collect = declared.clone();
        let directive = self
            .lua
            .create_function(move |_, spec: Table| {
                collect.borrow_mut().push(directives::declare(&spec)?);
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        env.raw_set("directive", directive)
            .map_err(|e| e.to_string())?;
        // The return names are in the script's own globals too, so that
        // `return OK` finds them without falling back to the base.
        for name in ["OK", "DECLINED", "DONE"] {
            self.base
                .raw_get::<mlua::Value>(name)
                .and_then(|v| env.raw_set(name, v))
                .map_err(|e| e.to_string())?;
        }
        let chunk = self
            .lua
            .load(source)
            .set_name(format!("@{}", path.display()))
            .set_environment(env.clone());
        let owner = Owner::Script(name.to_string());
        let reading = self.modules.reading(&self.lua, owner, dirs, files, || {
            let _slice = self
                .clock
                .arm(LOAD_LIMIT, self.lua.current_thread().state());
            let result = chunk.exec();
            match self.clock.killed() {
                Some(at) => Err(format!(
                    "{}: top level ran longer than {LOAD_LIMIT:?} (stopped at {at})",
                    path.display()
                )),
                None => result.map_err(|e| e.to_string()),
            }
        });
        let (result, required) = reading.map_err(|e| e.to_string())?;
        // The timers of the modules that were loaded again go (those
        // modules' new top levels made theirs).
        for module in self.modules.take_dropped() {
            let timers = self.timers.owned_by(&module);
            self.timers.cancel(&timers);
        }
        result?;
        let mut watch = vec![(path.to_path_buf(), mtime)];
        watch.extend(required.iter().filter_map(|m| self.modules.file_of(m)));
        let mut hooks = Hooks::NONE;
        let mut functions = Vec::with_capacity(Hook::COUNT);
        for hook in Hook::ALL {
            let key = format!("hook_{}", hook.name());
            match env.raw_get::<mlua::Value>(key.as_str()) {
                Ok(mlua::Value::Function(func)) => {
                    hooks = hooks.with(hook);
                    let key = self
                        .lua
                        .create_registry_value(&func)
                        .map_err(|e| e.to_string())?;
                    functions.push(Some(HookFn {
                        func,
                        key: Rc::new(key),
                    }));
                }
                Ok(mlua::Value::Nil) => functions.push(None),
                _ => return Err(format!("{}: `{key}` is not a function", path.display())),
            }
        }
        let directives = declared.take();
        let script = Rc::new(Script {
            name: name.to_string(),
            path: path.to_path_buf(),
            env: RefCell::new(env),
            functions: RefCell::new(functions),
            hooks,
            directives,
            watch: RefCell::new(watch),
        });
        let mut scripts = self.scripts.borrow_mut();
        scripts.retain(|s| s.name != name);
        scripts.push(script.clone());
        Ok(script)
    }

    /// The script most recently loaded as plugin `name`.
    pub fn loaded(&self, name: &str) -> Option<Rc<Script>> {
        self.scripts
            .borrow()
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// `LuaReload On`: if the script's file or the file of a module it
    /// required changed since it was loaded, run it again and take its new
    /// environment (module state starts over). The modules whose files
    /// changed are loaded again, with those that require them; the
    /// timers the old top levels created are cancelled (see
    /// [`Host::load`]). A script that no longer loads keeps its old
    /// version and its timers; the error is returned for the log, once
    /// per change. This reads the disk, not the master's snapshot: it is a
    /// development mode.
    pub fn reload_if_changed(&self, script: &Script) -> Result<(), String> {
        let seen = script.watch.borrow().clone();
        let now: Vec<_> = seen.iter().map(|(p, _)| (p.clone(), mtime(p))).collect();
        if now == seen {
            return Ok(());
        }
        *script.watch.borrow_mut() = now;
        self.modules.drop_changed();
        let fresh = std::fs::read(&script.path)
            .map_err(|e| format!("{}: {e}", script.path.display()))
            .and_then(|source| {
                let dirs = self.plugin_dirs.borrow().clone();
                let from = (script.path.as_path(), &source[..], mtime(&script.path));
                self.load(&script.name, from, &dirs, &mut FileReader::new(None))
            })?;
        *script.env.borrow_mut() = fresh.env.borrow().clone();
        *script.functions.borrow_mut() = fresh.functions.borrow().clone();
        *script.watch.borrow_mut() = fresh.watch.borrow().clone();
        Ok(())
    }
}

/// A file's modification time, if it can be read.
pub(crate) fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Finished coroutines kept for the next run (see [`THREAD_POOL`]),
/// shared by request hooks, connection and log hooks, and timers.
#[derive(Default)]
pub(crate) struct Coroutines(RefCell<Vec<Thread>>, std::cell::OnceCell<Function>);

/// What [`run_limited`] runs a function through: a table raised as an
/// error leaves the coroutine as a description of it, so that mlua, which
/// makes a message of any other value with `__tostring` outside the
/// slice and its time limit, never runs a script's (one that loops hung
/// the worker). Strings, numbers and the host's own errors pass as they
/// are.
const GUARD: &str = r#"
local pcall, type, error = pcall, type, error
local function pass(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "table" then e = "(error object is a table value)" end
  error(e, 0)
end
return function(f, ...) return pass(pcall(f, ...)) end
"#;

impl Coroutines {
    /// The function [`GUARD`] makes, once per Lua state.
    fn guard(&self, lua: &Lua) -> mlua::Result<Function> {
        if let Some(guard) = self.1.get() {
            return Ok(guard.clone());
        }
        let guard: Function = lua.load(GUARD).set_name("=axkit").call(())?;
        Ok(self.1.get_or_init(|| guard).clone())
    }

    pub fn take(&self) -> Option<Thread> {
        self.0.borrow_mut().pop()
    }

    /// Keep `thread`, whose function returned.
    pub fn put(&self, thread: Thread) {
        let mut pool = self.0.borrow_mut();
        if pool.len() < THREAD_POOL {
            pool.push(thread);
        }
    }
}

/// Call `func(args)` on a coroutine of its own (a pooled one when there
/// is one), with the clock armed for `limit` at each resumption, as a hook
/// is run: `Err(where)` if the limit stopped it.
pub(crate) async fn run_limited<R: FromLuaMulti>(
    lua: &Lua,
    coroutines: &Coroutines,
    clock: &Clock,
    limit: Duration,
    func: &Function,
    args: impl IntoLuaMulti,
) -> Result<mlua::Result<R>, String> {
    let guarded = coroutines.guard(lua).and_then(|guard| {
        let mut args = args.into_lua_multi(lua)?;
        args.push_front(mlua::Value::Function(func.clone()));
        Ok((guard, args))
    });
    let (guard, args) = match guarded {
        Ok(guarded) => guarded,
        Err(e) => return Ok(Err(e)),
    };
    let thread = match coroutines.take() {
        Some(thread) => thread.reset(guard).map(|()| thread),
        None => lua.create_thread(guard),
    };
    let thread = match thread {
        Ok(thread) => thread,
        Err(e) => return Ok(Err(e)),
    };
    let state = thread.state();
    let mut run = match thread.clone().into_async::<R>(args) {
        Ok(run) => run,
        Err(e) => return Ok(Err(e)),
    };
    let result = poll_fn(|cx| {
        let _slice = clock.arm(limit, state);
        let poll = Pin::new(&mut run).poll(cx);
        if let Some(at) = clock.killed() {
            return Poll::Ready(Err(at));
        }
        poll.map(Ok)
    })
    .await;
    drop(run);
    if matches!(result, Ok(Ok(_))) {
        coroutines.put(thread);
    }
    result
}

/// Find and read `NAME.lua` or `NAME/init.lua` in the plugin directories,
/// through `files` (the disk, or the master's snapshot in a worker). A name
/// is a relative path of plain components (`apps/wiki`), never `..`.
pub(crate) fn resolve(
    name: &str,
    dirs: &[PathBuf],
    files: &mut FileReader<'_>,
) -> Result<Option<(PathBuf, PluginFile)>, String> {
    for path in candidates(name, dirs) {
        match files.plugin_file(&path) {
            Ok(Some(file)) => return Ok(Some((path, file))),
            Ok(None) => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    Ok(None)
}

/// The paths [`resolve`] looks at for script `name`, in order: none for
/// a name that is not a plain relative path.
fn candidates(name: &str, dirs: &[PathBuf]) -> Vec<PathBuf> {
    let rel = Path::new(name);
    if name.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Vec::new();
    }
    dirs.iter()
        .flat_map(|dir| {
            [
                dir.join(format!("{name}.lua")),
                dir.join(rel).join("init.lua"),
            ]
        })
        .collect()
}

/// For an "unknown plugin" error: the paths looked at for `name`, and the
/// scripts the `dirs` hold (`NAME.lua`, `NAME/init.lua`).
pub(crate) fn searched(name: &str, dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut names = Vec::new();
    for entry in dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
    {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = file_name.strip_suffix(".lua") {
            names.push(stem.to_string());
        } else if path.join("init.lua").is_file() {
            names.push(file_name);
        }
    }
    (candidates(name, dirs), names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_scripts_and_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("axkit-lua-resolve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("apps/blog")).unwrap();
        std::fs::write(dir.join("hello.lua"), "-- \u{e9}").unwrap();
        std::fs::write(dir.join("apps/blog/init.lua"), "").unwrap();
        let dirs = [PathBuf::from("/nonexistent"), dir.clone()];
        let mut files = FileReader::new(None);
        let found = |name: &str, files: &mut FileReader<'_>| {
            resolve(name, &dirs, files)
                .unwrap()
                .map(|(path, file)| (path, file.bytes))
        };
        assert_eq!(
            found("hello", &mut files),
            Some((dir.join("hello.lua"), "-- \u{e9}".into()))
        );
        assert_eq!(
            found("apps/blog", &mut files),
            Some((dir.join("apps/blog/init.lua"), Vec::new()))
        );
        assert_eq!(found("missing", &mut files), None);
        for bad in ["", "../hello", "/etc/passwd", "apps/../hello"] {
            assert_eq!(found(bad, &mut files), None, "{bad}");
        }

        // Replayed without the disk, the same names find the same files,
        // and the misses stay misses.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("missing.lua"), "").unwrap();
        let snapshot = files.into_snapshot();
        let mut replay = FileReader::new(Some(&snapshot));
        assert_eq!(
            found("hello", &mut replay),
            Some((dir.join("hello.lua"), "-- \u{e9}".into()))
        );
        assert!(found("apps/blog", &mut replay).is_some());
        assert_eq!(found("missing", &mut replay), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
