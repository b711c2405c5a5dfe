//! Where plugins come from: a [`PluginSource`] answers `Plugin NAME`, both
//! when a config is loaded (which directives does NAME declare?) and in
//! each worker (make NAME). The Rust plugins compiled into the binary are
//! one source; a script host such as `axkit-lua` is another. A
//! [`Catalog`] is a binary's sources in lookup order.

use std::path::PathBuf;
use std::rc::Rc;

use super::{ListenSpec, Plugin, PluginInit, PluginSpec, SharedMemorySpec};
use crate::config::{Config, ConfigError, Directive, FileReader};

/// A source of plugins: the one trait through which the config loader
/// learns what a `Plugin NAME` line declares and a worker instantiates it.
/// The Rust plugins compiled into a binary are a source like any other
/// (the first in its [`Catalog`]), so that loading and instantiating take
/// one path whatever a plugin is written in; the [`Catalog`] is a plain
/// struct, because there is only one way to search a list of sources.
///
/// A source has two ways to know a plugin. Compiled-in plugins are known
/// before any config is read ([`plugins`](Self::plugins)): their directives
/// are registered whether or not the config loads them, so that `axkit
/// --directives` lists them and a directive written without its `Plugin`
/// line gets "add `Plugin NAME`" rather than "unknown directive". Script
/// plugins are looked for by name in the config's `PluginDir`s
/// ([`find`](Self::find)), which reads (and, in the Lua host, runs) the
/// script to learn its directives.
///
/// The `axkit` crate cannot depend on its script hosts, so they plug in
/// through this trait, registered with
/// [`Server::source`](crate::Server::source). A source lives in one thread
/// (a worker, or the master while it loads a config), so it may keep
/// per-worker state such as an interpreter.
///
/// A source reads its scripts only through the [`FileReader`] that `find`
/// is given, never from the disk directly: the master's reads are recorded
/// into the configuration snapshot it hands its workers, and a worker's are
/// answered from that snapshot. So a worker restarted after a crash runs the
/// scripts the master loaded, not edits saved since the last SIGHUP.
pub trait PluginSource {
    /// The source's name (e.g. `lua`): the owner of its own
    /// [`directives`](Self::directives) in errors and `axkit --directives`.
    fn name(&self) -> &str;

    /// The plugins this source has without reading a config, each with the
    /// directives it declares: compiled-in plugins. None for a script host.
    fn plugins(&self) -> Vec<(&str, Vec<Directive>)> {
        Vec::new()
    }

    /// The source's own directives (e.g. `LuaTimeLimit`), known without
    /// reading the config. They may be written wherever the source is in
    /// use (see [`in_use`](Self::in_use)), with no `Plugin` line: a source
    /// is not a plugin. (A `Plugin NAME` line naming a source with
    /// directives, which older configs needed, still puts it in use, with
    /// a deprecation warning.)
    fn directives(&self) -> Vec<Directive> {
        Vec::new()
    }

    /// When the source is in use, so that its own directives may be
    /// written. By default: when the config has a `PluginDir`, which is
    /// where a script host finds its plugins.
    fn in_use(&self) -> InUse {
        InUse::WithPluginDir
    }

    /// Look for plugin `name`, which is not among [`plugins`](Self::plugins),
    /// in `plugin_dirs`, reading (and testing for) files with
    /// [`FileReader::plugin_file`] only: Ok(Some(its directives)) if found,
    /// Ok(None) if not, Err(message with file:line) if it is broken. Called
    /// whenever a config is loaded (start-up, `--check`, reload, and each
    /// worker's start).
    fn find(
        &self,
        name: &str,
        plugin_dirs: &[PathBuf],
        files: &mut FileReader<'_>,
    ) -> Result<Option<Vec<Directive>>, String> {
        let _ = (name, plugin_dirs, files);
        Ok(None)
    }

    /// For an "unknown plugin" error: the paths [`find`](Self::find) looked
    /// at for `name` in `plugin_dirs`, and the names of the plugins it
    /// would find there (for a did-you-mean). None by default.
    fn searched(&self, name: &str, plugin_dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
        let _ = (name, plugin_dirs);
        (Vec::new(), Vec::new())
    }

    /// Read the files the source's own directives name (the templates
    /// beneath a `TemplateDir`, certificates…), once the config is
    /// validated: at start-up, by `--check`, on reload, and in each worker
    /// as it loads its config. Only through `files`, like
    /// [`find`](Self::find): the master records what it reads into the
    /// snapshot and a worker replays it, so every worker of a generation
    /// uses what the master loaded. Errors are config errors (say which
    /// file and line is wrong): the load fails with them, and a reload
    /// keeps the old config. A source keeps what it made of the files for
    /// this thread (the worker) to use.
    fn load_files(
        &self,
        config: &Config,
        files: &mut FileReader<'_>,
    ) -> Result<(), Vec<ConfigError>> {
        let _ = (config, files);
        Ok(())
    }

    /// The regions of shared memory this source needs for `config` (see
    /// [`SharedMemory`](super::SharedMemory)): the master creates them
    /// before it starts the workers, keeps those whose name and size a
    /// reload leaves unchanged, and each worker maps them all before it
    /// builds its plugins. Called wherever a config is loaded to be run
    /// (the master at start-up and on SIGHUP, `--no-master`, `--check`).
    /// None by default.
    fn shared_memory(&self, config: &Config) -> Vec<SharedMemorySpec> {
        let _ = config;
        Vec::new()
    }

    /// The listening sockets this source's plugins need for `config` (see
    /// [`ListenSpec`]): the master binds them as root before it starts
    /// the workers, keeps those whose name and address a reload leaves
    /// unchanged, and hands each to the workers it names, whose plugins
    /// take it with [`PluginInit::listener`]. Called wherever a config is
    /// loaded (the master at start-up and on SIGHUP, `--no-master`, which
    /// binds them itself, and `--check`, which binds nothing but refuses a
    /// unix socket in a directory the workers' `User` may write). None by
    /// default.
    fn listeners(&self, config: &Config) -> Vec<ListenSpec> {
        let _ = config;
        Vec::new()
    }

    /// Instantiate plugin `name` in this worker (for a script: from what
    /// `find` read when the worker loaded its config); Ok(None) if it is not
    /// this source's.
    fn create(&self, name: &str, init: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String>;
}

/// When a [`PluginSource`] is in use in a config, which is when its own
/// directives may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InUse {
    /// In every config.
    Always,
    /// In a config with a `PluginDir`: the source finds its plugins there.
    WithPluginDir,
}

impl InUse {
    /// Where the directives of a source used so apply, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            InUse::Always => "in every config",
            InUse::WithPluginDir => "wherever a `PluginDir` is set",
        }
    }
}

/// A binary's sources of plugins, in lookup order: what a config is loaded
/// against and what a worker instantiates its plugins from. A name belongs
/// to the first source that has it, and compiled-in plugins are looked up
/// before any source is searched, so a script cannot shadow a built-in.
pub struct Catalog {
    sources: Vec<Box<dyn PluginSource>>,
}

impl Catalog {
    /// A catalog of `sources`, searched in this order.
    pub fn new(sources: Vec<Box<dyn PluginSource>>) -> Catalog {
        Catalog { sources }
    }

    /// The sources, in lookup order.
    pub fn sources(&self) -> impl Iterator<Item = &dyn PluginSource> {
        self.sources.iter().map(|s| &**s)
    }

    /// Instantiate plugin `name` from the first source that has it.
    pub fn create(&self, name: &str, init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
        for source in &self.sources {
            if let Some(plugin) = source.create(name, init)? {
                return Ok(plugin);
            }
        }
        Err(format!("plugin `{name}` is not built into this binary"))
    }
}

/// The Rust plugins compiled into a binary: the built-in ones and those a
/// binary adds with [`Server::plugin`](crate::Server::plugin).
#[derive(Clone, Default)]
pub(crate) struct RustPlugins {
    specs: Vec<PluginSpec>,
}

impl RustPlugins {
    /// Add `spec`, replacing a plugin of the same name.
    pub(crate) fn add(&mut self, spec: PluginSpec) {
        self.specs.retain(|s| s.name != spec.name);
        self.specs.push(spec);
    }
}

impl PluginSource for RustPlugins {
    fn name(&self) -> &str {
        "rust"
    }

    fn in_use(&self) -> InUse {
        InUse::Always
    }

    fn plugins(&self) -> Vec<(&str, Vec<Directive>)> {
        self.specs
            .iter()
            .map(|s| (s.name, (s.directives)()))
            .collect()
    }

    fn create(&self, name: &str, init: &PluginInit) -> Result<Option<Rc<dyn Plugin>>, String> {
        let Some(spec) = self.specs.iter().find(|s| s.name == name) else {
            return Ok(None);
        };
        (spec.create)(init).map(Some)
    }
}
