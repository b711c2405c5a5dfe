//! `require`: Lua modules shared between scripts, found in the PluginDirs
//! (`require "lib.util"` → `lib/util.lua`, else `lib/util/init.lua`) and
//! read through the config's `FileReader`, like the scripts themselves: the
//! master records them in the snapshot it hands its workers, so a worker
//! restarted after a crash runs the modules the master loaded.
//!
//! A module is read only while a script loads (its top level, or the top
//! level of a module it requires): that is when the reader exists. Later a
//! `require` finds what is already loaded (`package.loaded`, one table per
//! worker, as in Lua) and nothing else. While a script loads, a module
//! found in the cache is read again and kept only if neither its file nor
//! those of the modules it required changed: the master keeps its Lua
//! state from one config load to the next, and each load must record (and
//! run) the modules as they are now. Names are words separated by dots:
//! no `..`, no `/`, no absolute path; there is no C module loader
//! (`package.loadlib`, `package.cpath` do not exist).
//!
//! For `LuaReload`, each module keeps the file it came from, its
//! modification time and the modules it required, so that a change to a
//! module's file reloads that module, the modules that require it, and the
//! scripts that use any of them (see `Host::reload_if_changed`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::SystemTime;

use axkit::config::FileReader;
use mlua::{Function, Lua, LuaString, Table, Value};

use crate::host::{Clock, LOAD_LIMIT};

/// Whose top level created something (a timer): a script, or one load of
/// a module (numbered, so that what the old load of a reloaded module made
/// can be told from what the new one makes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Script(String),
    Module(String, u64),
}

/// A loaded module: where it came from, to tell whether it is still
/// current.
struct Record {
    owner: Owner,
    path: PathBuf,
    source: Vec<u8>,
    /// None when it came from the master's snapshot.
    mtime: Option<SystemTime>,
    /// The modules its top level required.
    deps: Vec<String>,
}

/// A chunk whose top level is running: what it requires is recorded.
struct Frame {
    owner: Owner,
    requires: Vec<String>,
}

/// The module state of one Lua state.
pub(crate) struct Modules {
    /// `package.loaded`.
    loaded: Table,
    base: Table,
    clock: Rc<Clock>,
    /// While a script loads: reads a module's file (see [`Modules::reading`]).
    reader: RefCell<Option<Function>>,
    /// The modification time of the file the reader read last.
    read_mtime: Cell<Option<SystemTime>>,
    records: RefCell<HashMap<String, Record>>,
    loading: RefCell<Vec<Frame>>,
    /// Modules forgotten since the host last asked (see
    /// [`Modules::take_dropped`]).
    dropped: RefCell<Vec<Owner>>,
    /// Module loads so far.
    loads: Cell<u64>,
    /// The modules found current since the script being loaded started.
    checked: RefCell<Vec<String>>,
}

/// A script's (or module's) own global environment: its globals, which
/// fall back to the shared base, with `_G` naming the table itself as in
/// standard Lua. The base holds only the sandbox's API (see `api.rs`), so
/// `_G` reaches nothing more than the script's globals could; its
/// metatable is protected, so no script can swap or reach the base through
/// it.
pub(crate) fn environment(lua: &Lua, base: &Table) -> mlua::Result<Table> {
    let env = lua.create_table()?;
    let meta = lua.create_table()?;
    meta.raw_set("__index", base)?;
    meta.raw_set("__metatable", false)?;
    env.set_metatable(Some(meta))?;
    env.raw_set("_G", &env)?;
    Ok(env)
}

/// Install `require` and `package.loaded` into the base.
pub(crate) fn install(lua: &Lua, base: &Table, clock: Rc<Clock>) -> mlua::Result<Rc<Modules>> {
    let loaded = lua.create_table()?;
    let package = lua.create_table()?;
    package.raw_set("loaded", &loaded)?;
    base.raw_set("package", package)?;
    let modules = Rc::new(Modules {
        loaded,
        base: base.clone(),
        clock,
        reader: RefCell::new(None),
        read_mtime: Cell::new(None),
        records: RefCell::new(HashMap::new()),
        loading: RefCell::new(Vec::new()),
        dropped: RefCell::new(Vec::new()),
        loads: Cell::new(0),
        checked: RefCell::new(Vec::new()),
    });
    let weak = Rc::downgrade(&modules);
    base.raw_set(
        "require",
        lua.create_function(move |lua, name: String| {
            let modules = weak
                .upgrade()
                .ok_or_else(|| mlua::Error::runtime("require: the Lua host is gone"))?;
            modules.require(lua, &name)
        })?,
    )?;
    Ok(modules)
}

/// `lib.util` → `lib/util`; anything but words of letters, digits, `_`
/// and `-` separated by single dots is refused.
fn module_path(name: &str) -> Result<String, String> {
    let word = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if name.split('.').all(word) {
        Ok(name.replace('.', "/"))
    } else {
        Err(format!(
            "require: invalid module name {name:?} (words separated by dots, as in \"lib.util\")"
        ))
    }
}

impl Modules {
    /// Run `load` (a script's top level) with `files` as the reader of the
    /// modules it requires from `dirs`, as `owner`; returns what `load`
    /// returned and the modules required meanwhile.
    pub fn reading<R>(
        &self,
        lua: &Lua,
        owner: Owner,
        dirs: &[PathBuf],
        files: &mut FileReader<'_>,
        load: impl FnOnce() -> R,
    ) -> mlua::Result<(R, Vec<String>)> {
        self.checked.borrow_mut().clear();
        let files = RefCell::new(files);
        lua.scope(|scope| {
            // (path, source), or (nil, why not): an error raised here would
            // reach the script wrapped in a callback error of its own.
            let reader = scope.create_function(|lua, name: String| {
                let rel = module_path(&name).map_err(mlua::Error::runtime)?;
                let found = match crate::host::resolve(&rel, dirs, &mut files.borrow_mut()) {
                    Ok(found) => found,
                    Err(e) => return Ok((None, lua.create_string(e)?)),
                };
                let Some((path, file)) = found else {
                    let tried: String = dirs
                        .iter()
                        .flat_map(|d| [d.join(format!("{rel}.lua")), d.join(&rel).join("init.lua")])
                        .map(|p| format!("\n\tno file '{}'", p.display()))
                        .collect();
                    let why = format!("module '{name}' not found:{tried}");
                    return Ok((None, lua.create_string(why)?));
                };
                self.read_mtime.set(file.modified);
                Ok((
                    Some(path.display().to_string()),
                    lua.create_string(&file.bytes)?,
                ))
            })?;
            let outer = self.reader.replace(Some(reader));
            self.loading.borrow_mut().push(Frame {
                owner,
                requires: Vec::new(),
            });
            let result = load();
            let frame = self.loading.borrow_mut().pop();
            *self.reader.borrow_mut() = outer;
            Ok((result, frame.map(|f| f.requires).unwrap_or_default()))
        })
    }

    /// Who is being loaded now, if anything (the innermost chunk).
    pub fn owner(&self) -> Option<Owner> {
        self.loading.borrow().last().map(|f| f.owner.clone())
    }

    /// The file a loaded module came from and its modification time then.
    pub fn file_of(&self, name: &str) -> Option<(PathBuf, Option<SystemTime>)> {
        self.records
            .borrow()
            .get(name)
            .map(|r| (r.path.clone(), r.mtime))
    }

    /// The module loads forgotten (their file changed) since the last
    /// call: what their top levels created (timers) goes with them.
    pub fn take_dropped(&self) -> Vec<Owner> {
        self.dropped.take()
    }

    fn forget(&self, name: &str) {
        if let Some(record) = self.records.borrow_mut().remove(name) {
            self.dropped.borrow_mut().push(record.owner);
        }
        let _ = self.loaded.raw_set(name, Value::Nil);
    }

    /// `LuaReload`: forget the modules whose file changed since they were
    /// loaded, and those that required them (directly or not), so that the
    /// next `require` loads them again.
    pub fn drop_changed(&self) {
        let records = self.records.borrow();
        let mut changed: Vec<String> = records
            .iter()
            .filter(|(_, r)| crate::host::mtime(&r.path) != r.mtime)
            .map(|(name, _)| name.clone())
            .collect();
        loop {
            let more: Vec<String> = records
                .iter()
                .filter(|(name, r)| {
                    !changed.contains(name) && r.deps.iter().any(|d| changed.contains(d))
                })
                .map(|(name, _)| name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            changed.extend(more);
        }
        drop(records);
        for name in &changed {
            self.forget(name);
        }
    }

    /// Read `name` with `reader`: its path and source.
    fn read(&self, reader: &Function, name: &str) -> mlua::Result<(String, LuaString)> {
        match reader.call::<(Option<String>, LuaString)>(name)? {
            (Some(path), source) => Ok((path, source)),
            (None, why) => Err(mlua::Error::runtime(why.to_string_lossy())),
        }
    }

    /// Whether the cached module `name` is what its file (and those of the
    /// modules it required) hold now. A value a script put in
    /// `package.loaded` itself has no file, and stays.
    fn current(&self, reader: &Function, name: &str) -> mlua::Result<bool> {
        if self.checked.borrow().iter().any(|c| c == name) {
            return Ok(true);
        }
        let Some((path, deps)) = self
            .records
            .borrow()
            .get(name)
            .map(|r| (r.path.clone(), r.deps.clone()))
        else {
            return Ok(true);
        };
        let Ok((now, source)) = self.read(reader, name) else {
            return Ok(false);
        };
        let same = self
            .records
            .borrow()
            .get(name)
            .is_some_and(|r| Path::new(&now) == path && r.source == *source.as_bytes());
        if !same {
            return Ok(false);
        }
        for dep in deps {
            if !self.current(reader, &dep)? {
                return Ok(false);
            }
        }
        self.checked.borrow_mut().push(name.to_string());
        Ok(true)
    }

    fn require(&self, lua: &Lua, name: &str) -> mlua::Result<Value> {
        module_path(name).map_err(mlua::Error::runtime)?;
        for frame in self.loading.borrow_mut().iter_mut() {
            if !frame.requires.iter().any(|r| r == name) {
                frame.requires.push(name.to_string());
            }
        }
        let cached: Value = self.loaded.raw_get(name)?;
        let reader = self.reader.borrow().clone();
        if !cached.is_nil() {
            match &reader {
                Some(reader) if !self.current(reader, name)? => self.forget(name),
                _ => return Ok(cached),
            }
        }
        let loading = |f: &Frame| matches!(&f.owner, Owner::Module(m, _) if m == name);
        if self.loading.borrow().iter().any(loading) {
            let chain: Vec<String> = self
                .loading
                .borrow()
                .iter()
                .filter_map(|f| match &f.owner {
                    Owner::Module(m, _) => Some(m.clone()),
                    Owner::Script(_) => None,
                })
                .chain([name.to_string()])
                .collect();
            return Err(mlua::Error::runtime(format!(
                "require: modules require each other: {}",
                chain.join(" → ")
            )));
        }
        let reader = reader.ok_or_else(|| {
            mlua::Error::runtime(format!(
                "require {name:?}: modules are read when scripts load; require it at the \
                 top level of the script (or of a module it requires)"
            ))
        })?;
        let (path, source) = self.read(&reader, name)?;
        let mtime = self.read_mtime.take();
        let env = environment(lua, &self.base)?;
        let bytes = source.as_bytes();
        let chunk = lua
            .load(&*bytes)
            .set_name(format!("@{path}"))
            .set_environment(env);
        self.loads.set(self.loads.get() + 1);
        let owner = Owner::Module(name.to_string(), self.loads.get());
        self.loading.borrow_mut().push(Frame {
            owner: owner.clone(),
            requires: Vec::new(),
        });
        let result = {
            let _slice = self.clock.arm(LOAD_LIMIT, lua.current_thread().state());
            let result = chunk.call::<Value>((name, path.as_str()));
            match self.clock.killed() {
                Some(at) => Err(mlua::Error::runtime(format!(
                    "{path}: top level ran longer than {LOAD_LIMIT:?} (stopped at {at})"
                ))),
                None => result,
            }
        };
        let deps = self
            .loading
            .borrow_mut()
            .pop()
            .map(|f| f.requires)
            .unwrap_or_default();
        let value = match result? {
            Value::Nil => Value::Boolean(true),
            v => v,
        };
        self.loaded.raw_set(name, &value)?;
        self.checked.borrow_mut().push(name.to_string());
        self.records.borrow_mut().insert(
            name.to_string(),
            Record {
                owner,
                path: PathBuf::from(path),
                source: bytes.to_vec(),
                mtime,
                deps,
            },
        );
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::module_path;

    #[test]
    fn module_names() {
        assert_eq!(module_path("util").unwrap(), "util");
        assert_eq!(module_path("lib.text-utils_2").unwrap(), "lib/text-utils_2");
        for bad in [
            "", ".", "..", "a..b", ".a", "a.", "../x", "a/b", "/etc/x", "a b", "é",
        ] {
            assert!(module_path(bad).is_err(), "{bad:?}");
        }
    }
}
