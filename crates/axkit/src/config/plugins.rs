//! The second loading stage: find every plugin the config names with
//! `Plugin NAME` (compiled in, or found by a [`PluginSource`](crate::PluginSource) in the
//! `PluginDir`s) and build the [`Registry`] of the directives they
//! declare, which the validation stage checks every line against.

use std::collections::HashSet;
use std::path::PathBuf;

use super::directive::Directive;
use super::model::ConfigError;
use super::registry::{nearest, same_name, Registry, CORE};
use super::snapshot::FileReader;
use super::syntax::Node;
use super::value::default_setting;
use crate::plugin::Catalog;

/// What the stage found.
pub(super) struct Plugins {
    pub(super) reg: Registry,
    /// Plugins that loaded, in order of first appearance.
    pub(super) loaded: Vec<String>,
    /// `Plugin` names that failed (already reported): their lines add
    /// nothing to chains and produce no further errors.
    pub(super) failed: HashSet<String>,
}

/// Every `Plugin NAME` and `PluginDir` outside plugin blocks (the only
/// places they can mean anything), in config order.
fn collect_plugin_lines<'a>(
    nodes: &'a [Node],
    plugins: &mut Vec<&'a Node>,
    dirs: &mut Vec<PathBuf>,
) {
    for node in nodes {
        match node {
            Node::Directive { name, args, .. } if args.len() == 1 => {
                if same_name(name, "Plugin") {
                    plugins.push(node);
                } else if same_name(name, "PluginDir") {
                    dirs.push(PathBuf::from(&args[0]));
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

/// The plugins known before a config is read, with their directives: the
/// sources' compiled-in plugins, then each source itself, owning its own
/// directives.
fn known(catalog: &Catalog) -> Vec<(String, Vec<Directive>)> {
    let compiled = catalog.sources().flat_map(|source| {
        source
            .plugins()
            .into_iter()
            .map(|(name, directives)| (name.to_string(), directives))
    });
    let sources = catalog
        .sources()
        .map(|source| (source.name().to_string(), source.directives()));
    compiled.chain(sources).collect()
}

/// The registry of the core's directives and of every plugin known before
/// a config is read (what `axkit --directives` lists without one), and the
/// names of those plugins. Errors are declarations in conflict.
pub(crate) fn known_registry(catalog: &Catalog) -> (Registry, Vec<String>, Vec<String>) {
    let mut reg = Registry::new();
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for (plugin, directives) in known(catalog) {
        for d in directives {
            // A compiled-in plugin with a broken default is a programming
            // error: loud in debug builds, ignored (no default) in release.
            let checked = default_setting(&d);
            debug_assert!(
                checked.is_ok(),
                "plugin {plugin}: directive {}: {checked:?}",
                d.name
            );
            if let Err(message) = reg.add(&plugin, d) {
                errors.push(message);
            }
        }
        names.push(plugin);
    }
    (reg, names, errors)
}

/// Finds the plugins of `nodes` (the whole config, includes expanded) and
/// registers their directives, with those of the plugins known before;
/// `main` names the config in errors that have no line.
pub(super) fn load_plugins(
    nodes: &[Node],
    catalog: &Catalog,
    files: &mut FileReader<'_>,
    main: &str,
    errors: &mut Vec<ConfigError>,
) -> Plugins {
    let (mut reg, builtin, conflicts) = known_registry(catalog);
    errors.extend(conflicts.into_iter().map(|message| ConfigError {
        file: main.to_string(),
        line: 0,
        directive: None,
        plugin: None,
        message,
    }));
    let mut lines = Vec::new();
    let mut dirs = Vec::new();
    collect_plugin_lines(nodes, &mut lines, &mut dirs);

    let mut loaded: Vec<String> = Vec::new();
    let mut failed = HashSet::new();
    for node in lines {
        let name = &node.args()[0];
        if loaded.contains(name) || failed.contains(name) {
            continue;
        }
        let err = |message: String| ConfigError {
            file: node.file().to_string(),
            line: node.line(),
            directive: Some("Plugin".to_string()),
            plugin: Some(CORE.to_string()),
            message,
        };
        if builtin.contains(name) {
            loaded.push(name.clone());
            continue;
        }
        match find(catalog, name, &dirs, files) {
            Ok(Some(directives)) => {
                for d in directives {
                    // Script plugins declare directives at run time, so a
                    // bad default is a config-time error, not a bug.
                    if let Err(e) = default_setting(&d) {
                        errors.push(err(format!(
                            "plugin `{name}` declares `{}` with an invalid default: {e}",
                            d.name
                        )));
                        continue;
                    }
                    if let Err(message) = reg.add(name, d) {
                        errors.push(err(message));
                    }
                }
                loaded.push(name.clone());
            }
            Ok(None) => {
                let mut message = format!("unknown plugin `{name}`");
                if let Some(s) = nearest(name, builtin.iter().map(String::as_str)) {
                    message.push_str(&format!("; did you mean `{s}`?"));
                }
                errors.push(err(message));
                failed.insert(name.clone());
            }
            Err(e) => {
                errors.push(err(format!("cannot load plugin `{name}`: {e}")));
                failed.insert(name.clone());
            }
        }
    }
    Plugins {
        reg,
        loaded,
        failed,
    }
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
}
