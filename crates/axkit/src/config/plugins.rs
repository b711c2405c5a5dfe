//! The second loading stage: find every plugin the config names with
//! `Plugin NAME` (compiled in, or found by a
//! [`PluginSource`](crate::PluginSource) in the `PluginDir`s), tell which
//! sources are in use, and build the [`Registry`] of the directives they
//! all declare, which the validation stage checks every line against.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::directive::Directive;
use super::model::ConfigError;
use super::registry::{nearest, same_name, Registry, CORE};
use super::snapshot::FileReader;
use super::syntax::Node;
use super::value::default_setting;
use crate::plugin::{Catalog, InUse};

/// What the stage found.
pub(super) struct Plugins {
    pub(super) reg: Registry,
    pub(super) owners: Owners,
    /// `Plugin` names whose lines add nothing to chains and produce no
    /// further errors (they were reported): plugins that failed to load,
    /// and sources named as if they were plugins.
    pub(super) skip: HashSet<String>,
    /// Whether a `Plugin` line named a plugin that could not be found or
    /// loaded: its directives are then unknown too, and reporting each of
    /// them would bury the one mistake that matters.
    pub(super) unresolved: bool,
}

/// Whose directives a config may write: the core's, those of the plugins
/// it loads, and those of the plugin sources in use.
pub(super) struct Owners {
    /// Plugins that loaded, in order of first appearance.
    pub(super) loaded: Vec<String>,
    /// Every source with directives of its own: its name, when it is in
    /// use, and whether it is in this config.
    sources: Vec<(String, InUse, bool)>,
}

impl Owners {
    /// Why a directive owned by `owner` may not be written in this config;
    /// None if it may.
    pub(super) fn unavailable(&self, owner: &str) -> Option<String> {
        if owner == CORE || self.loaded.iter().any(|p| p == owner) {
            return None;
        }
        match self.sources.iter().find(|(name, ..)| name == owner) {
            Some((_, InUse::WithPluginDir, false)) => Some(format!(
                "applies to `{owner}` plugins, which are found through `PluginDir`; \
                 add `PluginDir <path>`"
            )),
            Some(_) => None,
            None => Some(format!(
                "plugin `{owner}` is not loaded; add `Plugin {owner}`"
            )),
        }
    }
}

/// The global `ServerRoot`, if the config sets one that is absolute (a
/// relative one is an error the validation stage reports): what relative
/// paths are resolved against ([`FileReader::path`]), from `PluginDir` on.
pub(super) fn server_root(nodes: &[Node]) -> Option<PathBuf> {
    nodes
        .iter()
        .filter(|n| matches!(n, Node::Directive { name, .. } if same_name(name, "ServerRoot")))
        .filter_map(|n| match n.args() {
            [dir] if Path::new(dir).is_absolute() => Some(PathBuf::from(dir)),
            _ => None,
        })
        .next_back()
}

/// Every `Plugin NAME` and `PluginDir` outside plugin blocks (the only
/// places they can mean anything), in config order.
fn collect_plugin_lines<'a>(
    nodes: &'a [Node],
    plugins: &mut Vec<&'a Node>,
    dirs: &mut Vec<&'a Node>,
) {
    for node in nodes {
        match node {
            Node::Directive { name, args, .. } if args.len() == 1 => {
                if same_name(name, "Plugin") {
                    plugins.push(node);
                } else if same_name(name, "PluginDir") {
                    dirs.push(node);
                }
            }
            Node::Block { children, .. }
                if node.is_block("Server") || node.is_block("Location") =>
            {
                collect_plugin_lines(children, plugins, dirs);
            }
            _ => {}
        }
    }
}

/// What is known before a config is read.
pub(crate) struct Known {
    /// The core's directives, and those of the compiled-in plugins and of
    /// the sources.
    pub(crate) reg: Registry,
    /// The compiled-in plugins.
    plugins: Vec<String>,
    /// The sources with directives of their own, and when they are in use.
    sources: Vec<(String, InUse)>,
    /// Declarations in conflict.
    pub(crate) errors: Vec<String>,
}

/// The directives known before a config is read (what `axkit
/// --directives` lists without one), with their owners: the sources'
/// compiled-in plugins, and each source for its own directives.
pub(crate) fn known(catalog: &Catalog) -> Known {
    let mut known = Known {
        reg: Registry::new(),
        plugins: Vec::new(),
        sources: Vec::new(),
        errors: Vec::new(),
    };
    let mut add = |owner: &str, directives: Vec<Directive>| {
        for d in directives {
            // A compiled-in plugin or a source with a broken default is a
            // programming error: loud in debug builds, ignored (no
            // default) in release.
            let checked = default_setting(&d);
            debug_assert!(
                checked.is_ok(),
                "plugin {owner}: directive {}: {checked:?}",
                d.name
            );
            if let Err(message) = known.reg.add(owner, d) {
                known.errors.push(message);
            }
        }
    };
    for source in catalog.sources() {
        for (name, directives) in source.plugins() {
            add(name, directives);
            known.plugins.push(name.to_string());
        }
    }
    for source in catalog.sources() {
        let directives = source.directives();
        if !directives.is_empty() {
            add(source.name(), directives);
            known
                .sources
                .push((source.name().to_string(), source.in_use()));
        }
    }
    known
}

/// Finds the plugins of `nodes` (the whole config, includes expanded) and
/// registers their directives, with those known before; `main` names the
/// config in errors that have no line. A deprecated line is a warning.
pub(super) fn load_plugins(
    nodes: &[Node],
    catalog: &Catalog,
    files: &mut FileReader<'_>,
    main: &str,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Plugins {
    let Known {
        mut reg,
        plugins: compiled,
        sources,
        errors: conflicts,
    } = known(catalog);
    errors.extend(conflicts.into_iter().map(|message| ConfigError {
        file: main.to_string(),
        line: 0,
        directive: None,
        plugin: None,
        message,
    }));
    let mut lines = Vec::new();
    let mut dir_lines = Vec::new();
    collect_plugin_lines(nodes, &mut lines, &mut dir_lines);
    let mut dirs = Vec::new();
    for node in dir_lines {
        let dir = files.path(&node.args()[0]);
        // Only a warning: another PluginDir may hold every script. A
        // plugin not found says where it was looked for.
        if let Err(e) = std::fs::metadata(&dir).and_then(|md| {
            if md.is_dir() {
                Ok(())
            } else {
                Err(std::io::Error::other("not a directory"))
            }
        }) {
            warnings.push(ConfigError {
                file: node.file().to_string(),
                line: node.line(),
                directive: Some("PluginDir".to_string()),
                plugin: Some(CORE.to_string()),
                message: format!("{}: {e}", dir.display()),
            });
        }
        dirs.push(dir);
    }

    let mut loaded: Vec<String> = Vec::new();
    let mut skip = HashSet::new();
    let mut unresolved = false;
    for node in lines {
        let name = &node.args()[0];
        if loaded.contains(name) || skip.contains(name) {
            continue;
        }
        let at_line = |message: String| ConfigError {
            file: node.file().to_string(),
            line: node.line(),
            directive: Some("Plugin".to_string()),
            plugin: Some(CORE.to_string()),
            message,
        };
        if compiled.contains(name) {
            loaded.push(name.clone());
            continue;
        }
        let source = sources.iter().find(|(s, _)| s == name).map(|(_, u)| u);
        match (find(catalog, name, &dirs, files), source) {
            (Ok(Some(directives)), _) => {
                for d in directives {
                    // Script plugins declare directives at run time, so a
                    // bad default is a config-time error, not a bug.
                    if let Err(e) = default_setting(&d) {
                        errors.push(at_line(format!(
                            "plugin `{name}` declares `{}` with an invalid default: {e}",
                            d.name
                        )));
                        continue;
                    }
                    if let Err(message) = reg.add(name, d) {
                        errors.push(at_line(message));
                    }
                }
                loaded.push(name.clone());
            }
            // A script of that name (`shared.lua`) is found first; only
            // without one is this an older config loading a source as a
            // plugin to write its directives: still accepted, and it puts
            // the source in use.
            (Ok(None), Some(in_use)) => {
                warnings.push(at_line(format!(
                    "`Plugin {name}` is deprecated: `{name}` is a plugin source, not a plugin, \
                     and its directives apply {}; remove this line",
                    in_use.describe()
                )));
                skip.insert(name.clone());
            }
            (Ok(None), None) => {
                errors.push(at_line(unknown_plugin(catalog, name, &compiled, &dirs)));
                skip.insert(name.clone());
                unresolved = true;
            }
            (Err(e), _) => {
                errors.push(at_line(format!("cannot load plugin `{name}`: {e}")));
                skip.insert(name.clone());
                unresolved = true;
            }
        }
    }
    let sources = sources
        .into_iter()
        .map(|(name, in_use)| {
            // Named by a (deprecated) Plugin line, or in use by its rule.
            let used = skip.contains(&name)
                || match in_use {
                    InUse::Always => true,
                    InUse::WithPluginDir => !dirs.is_empty(),
                };
            (name, in_use, used)
        })
        .collect();
    Plugins {
        reg,
        owners: Owners { loaded, sources },
        skip,
        unresolved,
    }
}

/// "unknown plugin": the nearest name among the compiled-in plugins and
/// the scripts in the `PluginDir`s, and every path the sources looked at.
fn unknown_plugin(catalog: &Catalog, name: &str, compiled: &[String], dirs: &[PathBuf]) -> String {
    let mut searched = Vec::new();
    let mut names: Vec<String> = compiled.to_vec();
    for source in catalog.sources() {
        let (paths, found) = source.searched(name, dirs);
        searched.extend(paths);
        names.extend(found);
    }
    let mut message = format!("unknown plugin `{name}`");
    if let Some(s) = nearest(name, names.iter().map(String::as_str)) {
        message.push_str(&format!("; did you mean `{s}`?"));
    }
    if !searched.is_empty() {
        let paths: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
        message.push_str(&format!(" (looked for {})", paths.join(", ")));
    }
    message
}

/// A plugin that is not known before the config is read, from the first
/// source that finds it in `plugin_dirs`.
fn find(
    catalog: &Catalog,
    name: &str,
    plugin_dirs: &[PathBuf],
    files: &mut FileReader<'_>,
) -> Result<Option<Vec<Directive>>, String> {
    for source in catalog.sources() {
        if let Some(directives) = source.find(name, plugin_dirs, files)? {
            return Ok(Some(directives));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::{errors, load_text, with_server};

    #[test]
    fn plugin_errors() {
        assert_eq!(
            errors(&format!("Plugin serve_cgl\n{}", with_server(""))),
            ["t.conf:1: Plugin (plugin core): unknown plugin `serve_cgl`; did you mean `serve_cgi`?"]
        );
        assert_eq!(
            errors(&format!("Plugin nothing_like_it\n{}", with_server(""))),
            ["t.conf:1: Plugin (plugin core): unknown plugin `nothing_like_it`"]
        );
        assert_eq!(
            errors(&format!("Plugin broken\n{}", with_server("Plugin broken"))),
            ["t.conf:1: Plugin (plugin core): cannot load plugin `broken`: syntax error at line 3"]
        );
        assert_eq!(
            errors(&format!("Plugin clash\n{}", with_server(""))),
            ["t.conf:1: Plugin (plugin core): directive `greeting` is declared by both `hello` and `clash`"]
        );
        assert_eq!(
            errors(&format!("Plugin baddefault\n{}", with_server(""))),
            ["t.conf:1: Plugin (plugin core): plugin `baddefault` declares `Bd` with an invalid default: \
              expected a size like 512, 10K, 10M or 1G, got \"lots\""]
        );
        // Script plugins are found through PluginDir, wherever it is written.
        let cfg = load_text(&format!(
            "Plugin script\n{}PluginDir lua\n",
            with_server("ScriptOpt 3")
        ))
        .unwrap();
        assert_eq!(cfg.plugins, ["script"]);
        assert_eq!(
            cfg.servers[0].locations[0].config.int("script_opt"),
            Some(3)
        );
        assert_eq!(
            cfg.registry
                .owner(cfg.registry.lookup("ScriptOpt").unwrap()),
            "script"
        );
    }

    #[test]
    fn source_directives_apply_where_the_source_is_in_use() {
        // The test source finds its plugins through PluginDir, so its own
        // directives need one, not a Plugin line.
        let cfg = load_text(&format!(
            "PluginDir lua\nScriptLimit 2s\n{}",
            with_server("")
        ))
        .unwrap();
        assert_eq!(
            cfg.global.duration("ScriptLimit"),
            Some(Duration::from_secs(2))
        );
        // The test source reads no directory: `lua` need not exist, which
        // is only worth a warning.
        let warnings: Vec<String> = cfg.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("t.conf:1: PluginDir (plugin core): lua: "),
            "{warnings:?}"
        );
        assert_eq!(
            errors(&format!("ScriptLimit 2s\n{}", with_server(""))),
            [
                "t.conf:1: ScriptLimit (plugin cat): applies to `cat` plugins, which are found \
              through `PluginDir`; add `PluginDir <path>`"
            ]
        );
        // An old-style `Plugin cat` is accepted with one warning, puts the
        // source in use, and adds nothing to any chain.
        let cfg = load_text(&format!(
            "Plugin cat\nScriptLimit 2s\n{}",
            with_server("Plugin cat")
        ))
        .unwrap();
        let warnings: Vec<String> = cfg.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "t.conf:1: Plugin (plugin core): `Plugin cat` is deprecated: `cat` is a plugin \
              source, not a plugin, and its directives apply wherever a `PluginDir` is set; \
              remove this line"
            ]
        );
        assert!(cfg.plugins.is_empty());
        assert!(cfg.global_plugins.is_empty());
        assert!(cfg.servers[0].locations[0].plugins.is_empty());
        // A source is not a plugin to suggest.
        assert_eq!(
            errors(&format!("Plugin cta\n{}", with_server(""))),
            ["t.conf:1: Plugin (plugin core): unknown plugin `cta`"]
        );
    }
}
