//! `require`: Lua modules shared between scripts, found in the PluginDirs
//! (`require "lib.util"` → `lib/util.lua`, else `lib/util/init.lua`) and
//! read through the config's `FileReader`, like the scripts themselves: the
//! master records them in the snapshot it hands its workers, so a worker
//! restarted after a crash runs the modules the master loaded.
//!
//! A module is read only while a script loads (its top level, or the top
//! level of a module it requires): that is when the reader exists. Later a
//! `require` finds what is already loaded (`package.loaded`, one table per
//! worker, as in Lua) and nothing else. Names are words separated by dots:
//! no `..`, no `/`, no absolute path; there is no C module loader
//! (`package.loadlib`, `package.cpath` do not exist).
//!
//! For `LuaReload`, each module keeps the file it came from, its
//! modification time and the modules it required, so that a change to a
//! module's file reloads that module, the modules that require it, and the
//! scripts that use any of them (see `Host::reload_if_changed`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::SystemTime;

use axkit::config::FileReader;
use mlua::{Function, Lua, LuaString, Table, Value};

use crate::host::{Clock, LOAD_LIMIT};

/// Whose top level created something (a timer): a script or a module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Script(String),
    Module(String),
}

/// A loaded module, for `LuaReload`.
struct Record {
    path: PathBuf,
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
    ) -> (R, Vec<String>) {
        let files = RefCell::new(files);
        let result = lua.scope(|scope| {
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
        });
        match result {
            Ok(r) => r,
            // Only making the scoped function can fail, before `load`.
            Err(e) => panic!("cannot set up the module reader: {e}"),
        }
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

    /// `LuaReload`: forget the modules whose file changed since they were
    /// loaded, and those that required them (directly or not), so that the
    /// next `require` loads them again. Returns their names.
    pub fn drop_changed(&self) -> Vec<String> {
        let mut records = self.records.borrow_mut();
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
        for name in &changed {
            records.remove(name);
            let _ = self.loaded.raw_set(name.as_str(), Value::Nil);
        }
        changed
    }

    fn require(&self, lua: &Lua, name: &str) -> mlua::Result<Value> {
        module_path(name).map_err(mlua::Error::runtime)?;
        for frame in self.loading.borrow_mut().iter_mut() {
            if !frame.requires.iter().any(|r| r == name) {
                frame.requires.push(name.to_string());
            }
        }
        let cached: Value = self.loaded.raw_get(name)?;
        if !cached.is_nil() {
            return Ok(cached);
        }
        let owner = Owner::Module(name.to_string());
        if self.loading.borrow().iter().any(|f| f.owner == owner) {
            let chain: Vec<String> = self
                .loading
                .borrow()
                .iter()
                .filter_map(|f| match &f.owner {
                    Owner::Module(m) => Some(m.clone()),
                    Owner::Script(_) => None,
                })
                .chain([name.to_string()])
                .collect();
            return Err(mlua::Error::runtime(format!(
                "require: modules require each other: {}",
                chain.join(" → ")
            )));
        }
        let reader = self.reader.borrow().clone().ok_or_else(|| {
            mlua::Error::runtime(format!(
                "require {name:?}: modules are read when scripts load; require it at the \
                 top level of the script (or of a module it requires)"
            ))
        })?;
        let (path, source) = match reader.call::<(Option<String>, LuaString)>(name)? {
            (Some(path), source) => (path, source),
            (None, why) => return Err(mlua::Error::runtime(why.to_string_lossy())),
        };
        let mtime = self.read_mtime.take();
        let env = environment(lua, &self.base)?;
        let bytes = source.as_bytes();
        let chunk = lua
            .load(&*bytes)
            .set_name(format!("@{path}"))
            .set_environment(env);
        self.loading.borrow_mut().push(Frame {
            owner,
            requires: Vec::new(),
        });
        let result = {
            let _slice = self.clock.arm(LOAD_LIMIT);
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
        self.records.borrow_mut().insert(
            name.to_string(),
            Record {
                path: PathBuf::from(path),
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
