//! Loading a config: read files (expanding `Include`), find the plugins it
//! names, validate every line against the directives those plugins declare,
//! and freeze one merged [`LocationConfig`] per `<Server>` and `<Location>`.
//!
//! Errors are collected, never fatal one by one: an operator fixing a config
//! wants every mistake in one run. The only early exits are when a later
//! stage would mostly report consequences of an earlier failure (a file that
//! cannot be read or parsed leaves the tree incomplete).

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::directive::{Args, Directive, Merge, Scopes};
use super::registry::{nearest, same_name, DirectiveId, Registry, CORE};
use super::snapshot::{FileReader, Snapshot};
use super::syntax::{parse, Node, MAX_DEPTH};
use super::value::{
    default_setting, parse_value, quote, BlockLine, LocationConfig, Setting, Value,
};

/// `Include` inside included files may nest this deep.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where the main config comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A config file; includes are relative to its directory.
    File(PathBuf),
    /// Config text that is not a file, e.g. the built-in config (name
    /// `<built-in>`); includes are relative to the working directory.
    Text { name: String, text: String },
}

/// What the loader needs to know about plugins.
pub trait PluginCatalog {
    /// Every plugin known without reading the config (built-ins): (name, its directive declarations).
    fn builtin(&self) -> Vec<(String, Vec<Directive>)>;
    /// A plugin that is not built in (e.g. a script found in one of `plugin_dirs`, read through `files`): Ok(Some(directives)) if found, Ok(None) if not, Err(message) if found but broken.
    fn find(
        &self,
        name: &str,
        plugin_dirs: &[PathBuf],
        files: &mut FileReader<'_>,
    ) -> Result<Option<Vec<Directive>>, String>;
}

/// One problem in a config, with everything needed to find and fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 0 when the error is about a whole file.
    pub line: u32,
    /// The directive: canonical spelling if known, as written otherwise.
    pub directive: Option<String>,
    /// The plugin owning the directive.
    pub plugin: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE: DIRECTIVE (plugin PLUGIN): MESSAGE`, leaving out what is
    /// unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if self.line != 0 {
                write!(f, ":{}", self.line)?;
            }
            f.write_str(": ")?;
        }
        if let Some(d) = &self.directive {
            f.write_str(d)?;
            if let Some(p) = &self.plugin {
                write!(f, " (plugin {p})")?;
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A loaded, validated, frozen config.
#[derive(Clone, Debug)]
pub struct Config {
    pub registry: Arc<Registry>,
    /// Effective global-scope values (Workers, ShutdownTimeout…).
    pub global: Arc<LocationConfig>,
    pub servers: Vec<ServerConfig>,
    /// Every plugin loaded anywhere, in order of first appearance.
    pub plugins: Vec<String>,
    /// The global scope's plugin chain (the `Plugin` lines outside any
    /// `<Server>`), in config order: what runs for events not tied to a
    /// server or location.
    pub global_plugins: Vec<String>,
    /// Every file read (main + includes, and the plugin scripts found),
    /// with its contents: what a worker loads instead of the files on disk.
    /// Empty for a `Source::Text` config without includes or scripts, and
    /// in a worker (which replayed its master's).
    pub snapshot: Arc<Snapshot>,
}

impl Config {
    /// Every distinct listen address, in config order: what to bind.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for s in &self.servers {
            for a in &s.listen {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }
}

/// One `<Server>`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub index: usize,
    /// From the `<Server ADDR…>` arguments, Port and Listen, deduplicated,
    /// in order.
    pub listen: Vec<SocketAddr>,
    /// ServerName then ServerAliases, lowercased; may be `*.example.com`.
    pub names: Vec<String>,
    pub file: Arc<str>,
    pub line: u32,
    /// `[0]` is the Server itself with prefix `/`, then every `<Location>`
    /// at any depth, in config order.
    pub locations: Vec<LocationNode>,
    /// Indexes into `locations`, longest prefix first (later wins a tie, so
    /// an explicit `<Location />` beats the server root).
    order: Vec<usize>,
}

impl ServerConfig {
    /// Longest matching prefix, segment-aware: prefix `/icons` matches
    /// `/icons`, `/icons/` and `/icons/a.png` but not `/iconsx`; a prefix
    /// ending in `/` matches by plain prefix. Falls back to `locations[0]`.
    /// `path` should be the decoded, normalised URL path (no query).
    ///
    /// # Panics
    /// Never for a `ServerConfig` from [`load`] (its `locations` is never
    /// empty); only if a caller emptied `locations` by hand.
    pub fn location_for(&self, path: &str) -> &LocationNode {
        self.order
            .iter()
            .filter_map(|&i| self.locations.get(i))
            .find(|l| prefix_matches(&l.prefix, path))
            .unwrap_or(&self.locations[0])
    }

    /// Whether `host` (a Host header; a `:port` and a trailing dot are
    /// ignored) is one of this server's names, case-insensitively;
    /// `*.example.com` matches any name ending in `.example.com`.
    pub fn matches_name(&self, host: &str) -> bool {
        let host = strip_port(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        self.names.iter().any(|n| match n.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|h| h.eq_ignore_ascii_case(suffix))
            }
            None => n.eq_ignore_ascii_case(host),
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port -> [v6]
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The segment-aware prefix test behind [`ServerConfig::location_for`].
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The server root or one `<Location>`.
#[derive(Clone, Debug)]
pub struct LocationNode {
    /// `/` for the server root.
    pub prefix: String,
    /// Merged global → Server → enclosing Locations → this.
    pub config: Arc<LocationConfig>,
    /// Effective plugin chain: global `Plugin`s, then the Server's, then
    /// each enclosing Location's (outer first), then this one's; each group
    /// in config order.
    pub plugins: Vec<String>,
    /// Where each scope's group begins in `plugins`: the global one at 0,
    /// then the Server's, then each enclosing Location's, this one's last
    /// (a scope without `Plugin` lines starts where the next one does).
    pub scope_starts: Vec<usize>,
}

/// Reads, validates and freezes a config. Returns every error found,
/// sorted by file and line.
pub fn load(source: &Source, catalog: &dyn PluginCatalog) -> Result<Config, Vec<ConfigError>> {
    load_from(source, catalog, None)
}

/// As [`load`], but with every file (and directory listing, and plugin
/// script) taken from `replay` instead of the disk when it is given: how a
/// worker loads the configuration its master validated.
pub fn load_from(
    source: &Source,
    catalog: &dyn PluginCatalog,
    replay: Option<&Snapshot>,
) -> Result<Config, Vec<ConfigError>> {
    let mut ld = Loader {
        errors: Vec::new(),
        files: FileReader::new(replay),
        include_stack: Vec::new(),
    };
    let (main_name, nodes) = match ld.read_main(source) {
        Some(x) => x,
        None => return Err(sorted(ld.errors)),
    };
    if !ld.errors.is_empty() {
        return Err(sorted(ld.errors));
    }
    let plugins = load_plugins(&nodes, catalog, &mut ld.files, &main_name, &mut ld.errors);
    let mut v = Validator::new(plugins, ld.errors);
    let (servers, global, global_plugins) = v.run(&nodes, &main_name);
    if !v.errors.is_empty() {
        return Err(sorted(v.errors));
    }
    Ok(Config {
        registry: v.reg,
        global,
        servers,
        plugins: v.loaded,
        global_plugins,
        snapshot: Arc::new(ld.files.into_snapshot()),
    })
}

fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by(|a, b| (a.file.as_str(), a.line).cmp(&(b.file.as_str(), b.line)));
    errors
}

fn is_block_name(node: &Node, name: &str) -> bool {
    matches!(node, Node::Block { .. }) && same_name(node.name(), name)
}

// ---------------------------------------------------------------------------
// Stage 1: files and Include.

struct Loader<'a> {
    errors: Vec<ConfigError>,
    /// From the disk (recording) or from the snapshot being replayed.
    files: FileReader<'a>,
    /// Canonical paths of the files being read, outermost first: a file
    /// already on it is an include cycle.
    include_stack: Vec<PathBuf>,
}

/// Where an `Include` is, for its errors.
struct At<'a> {
    file: &'a Arc<str>,
    line: u32,
}

impl At<'_> {
    fn error(&self, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line,
            directive: Some("Include".to_string()),
            plugin: Some(CORE.to_string()),
            message,
        }
    }
}

impl Loader<'_> {
    fn read_main(&mut self, source: &Source) -> Option<(String, Vec<Node>)> {
        match source {
            Source::File(path) => {
                let name = path.display().to_string();
                let (canon, text) = match self.files.config_file(path) {
                    Ok(read) => read,
                    Err(e) => {
                        self.errors.push(ConfigError {
                            file: name,
                            line: 0,
                            directive: None,
                            plugin: None,
                            message: format!("cannot read: {e}"),
                        });
                        return None;
                    }
                };
                self.include_stack.push(canon);
                let nodes = self.parse_text(&text, &name)?;
                let dir = path.parent().unwrap_or(Path::new(""));
                let nodes = self.expand(nodes, dir, 0, 0);
                Some((name, nodes))
            }
            Source::Text { name, text } => {
                let nodes = self.parse_text(text, name)?;
                let nodes = self.expand(nodes, Path::new(""), 0, 0);
                Some((name.clone(), nodes))
            }
        }
    }

    fn parse_text(&mut self, text: &str, name: &str) -> Option<Vec<Node>> {
        match parse(text, name) {
            Ok(nodes) => Some(nodes),
            Err(errs) => {
                self.errors.extend(errs);
                None
            }
        }
    }

    /// Replaces `Include` lines by the nodes of the files they name, at any
    /// depth. `dir` is the directory of the file `nodes` came from;
    /// `block_depth` counts the blocks around `nodes`, across files, so that
    /// includes cannot be used to nest blocks deeper than the parser allows.
    fn expand(
        &mut self,
        nodes: Vec<Node>,
        dir: &Path,
        includes: usize,
        block_depth: usize,
    ) -> Vec<Node> {
        let mut out = Vec::with_capacity(nodes.len());
        for node in nodes {
            match node {
                Node::Directive {
                    name,
                    args,
                    file,
                    line,
                } if same_name(&name, "Include") => {
                    let at = At { file: &file, line };
                    if args.len() != 1 {
                        let msg = format!(
                            "expected 1 argument, got {}; usage: Include <path>",
                            args.len()
                        );
                        self.errors.push(at.error(msg));
                        continue;
                    }
                    for path in self.resolve(&at, dir, &args[0]) {
                        out.extend(self.include(&at, &path, includes + 1, block_depth));
                    }
                }
                Node::Block {
                    ref name,
                    ref file,
                    line,
                    ..
                } if same_name(name, "Include") => {
                    let at = At { file, line };
                    let msg =
                        "is not a block; write it as a single line: `Include <path>`".to_string();
                    self.errors.push(at.error(msg));
                }
                Node::Block {
                    name,
                    args,
                    children,
                    file,
                    line,
                } => {
                    if block_depth >= MAX_DEPTH {
                        self.errors.push(ConfigError {
                            file: file.to_string(),
                            line,
                            directive: None,
                            plugin: None,
                            message: format!(
                                "blocks nested deeper than {MAX_DEPTH} (through Include)"
                            ),
                        });
                        continue;
                    }
                    let children = self.expand(children, dir, includes, block_depth + 1);
                    out.push(Node::Block {
                        name,
                        args,
                        children,
                        file,
                        line,
                    });
                }
                other => out.push(other),
            }
        }
        out
    }

    /// The files an `Include` argument names: itself, or every regular file
    /// matching a `*`/`?` pattern in its last component, sorted by name.
    fn resolve(&mut self, at: &At<'_>, dir: &Path, arg: &str) -> Vec<PathBuf> {
        let path = dir.join(arg);
        let pattern = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !pattern.contains(['*', '?']) {
            return vec![path];
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        if parent.to_string_lossy().contains(['*', '?']) {
            self.errors.push(at.error(format!(
                "wildcards are only allowed in the last path component: {}",
                quote(arg)
            )));
            return Vec::new();
        }
        let entries = match self.files.list_dir(parent) {
            Ok(e) => e,
            Err(e) => {
                self.errors
                    .push(at.error(format!("cannot read directory {}: {e}", parent.display())));
                return Vec::new();
            }
        };
        let pat: Vec<char> = pattern.chars().collect();
        let mut names: Vec<String> = entries
            .into_iter()
            // Like a shell, `*` does not pick up hidden files (editor swap
            // files, `.#locks`) unless the pattern asks for a dot.
            .filter(|n| !n.starts_with('.') || pattern.starts_with('.'))
            .filter(|n| glob_match(&pat, &n.chars().collect::<Vec<_>>()))
            .collect();
        names.sort();
        names.into_iter().map(|n| parent.join(n)).collect()
    }

    fn include(
        &mut self,
        at: &At<'_>,
        path: &Path,
        includes: usize,
        block_depth: usize,
    ) -> Vec<Node> {
        if includes > MAX_INCLUDE_DEPTH {
            self.errors
                .push(at.error(format!("includes nested deeper than {MAX_INCLUDE_DEPTH}")));
            return Vec::new();
        }
        let shown = path.display().to_string();
        let (canon, text) = match self.files.config_file(path) {
            Ok(read) => read,
            Err(e) => {
                self.errors
                    .push(at.error(format!("cannot read {shown}: {e}")));
                return Vec::new();
            }
        };
        if self.include_stack.contains(&canon) {
            self.errors
                .push(at.error(format!("include cycle: {shown} is already being read")));
            return Vec::new();
        }
        let Some(nodes) = self.parse_text(&text, &shown) else {
            return Vec::new();
        };
        self.include_stack.push(canon);
        let dir = path.parent().unwrap_or(Path::new(""));
        let out = self.expand(nodes, dir, includes, block_depth);
        self.include_stack.pop();
        out
    }
}

/// `*` and `?` matching with single-star backtracking: linear-ish, no
/// recursion, so a pattern like `*a*a*a*b` can't blow up.
fn glob_match(pat: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pat.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pat[p.min(pat.len())..].iter().all(|&c| c == '*')
}

// ---------------------------------------------------------------------------
// Stage 2: plugins and the registry.

struct Plugins {
    reg: Registry,
    /// Plugins that loaded, in order of first appearance.
    loaded: Vec<String>,
    /// `Plugin` names that failed (already reported): their lines add
    /// nothing to chains and produce no further errors.
    failed: HashSet<String>,
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
                if is_block_name(node, "Server") || is_block_name(node, "Location") =>
            {
                collect_plugin_lines(children, plugins, dirs);
            }
            _ => {}
        }
    }
}

fn load_plugins(
    nodes: &[Node],
    catalog: &dyn PluginCatalog,
    files: &mut FileReader<'_>,
    main: &str,
    errors: &mut Vec<ConfigError>,
) -> Plugins {
    let mut reg = Registry::new();
    let builtin = catalog.builtin();
    for (plugin, directives) in &builtin {
        for d in directives {
            // A built-in plugin with a broken default is a programming
            // error: loud in debug builds, ignored (no default) in release.
            let checked = default_setting(d);
            debug_assert!(
                checked.is_ok(),
                "plugin {plugin}: directive {}: {checked:?}",
                d.name
            );
            if let Err(message) = reg.add(plugin, d.clone()) {
                errors.push(ConfigError {
                    file: main.to_string(),
                    line: 0,
                    directive: None,
                    plugin: None,
                    message,
                });
            }
        }
    }
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
        if builtin.iter().any(|(b, _)| b == name) {
            loaded.push(name.clone());
            continue;
        }
        match catalog.find(name, &dirs, files) {
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
                if let Some(s) = nearest(name, builtin.iter().map(|(b, _)| b.as_str())) {
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

// ---------------------------------------------------------------------------
// Stage 3: validation, merging and freezing.

/// Per directive id, the occurrences written in one scope (or merged down
/// to it).
type Table = Vec<Vec<Arc<Setting>>>;

/// A plugin in a chain and where it was loaded, for duplicate errors.
#[derive(Clone)]
struct ChainEntry {
    name: String,
    file: Arc<str>,
    line: u32,
}

/// Ids of the directives the loader gives a meaning beyond storing them.
/// Copy, so checks can use it while reporting errors through `&mut self`.
#[derive(Clone, Copy)]
struct CoreIds {
    server: Option<DirectiveId>,
    location: Option<DirectiveId>,
    plugin: Option<DirectiveId>,
    port: Option<DirectiveId>,
    listen: Option<DirectiveId>,
    server_name: Option<DirectiveId>,
    server_alias: Option<DirectiveId>,
    non_negative: [Option<DirectiveId>; 3],
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Global,
    Server,
    Location,
}

impl Scope {
    fn scopes(self) -> Scopes {
        match self {
            Scope::Global => Scopes::GLOBAL,
            Scope::Server => Scopes::SERVER,
            Scope::Location => Scopes::LOCATION,
        }
    }
}

/// What one scope's own lines produced.
struct ScopeBuild<'n> {
    table: Table,
    plugins: Vec<ChainEntry>,
    /// Listen addresses (servers only), in order.
    listen: Vec<SocketAddr>,
    /// Host names (servers only): (lowercased, directive, file, line).
    names: Vec<(String, &'static str, Arc<str>, u32)>,
    /// Nested `<Location>` blocks with a valid prefix.
    locations: Vec<(&'n Node, String)>,
}

struct Validator {
    reg: Arc<Registry>,
    loaded: Vec<String>,
    failed: HashSet<String>,
    ids: CoreIds,
    /// Parsed defaults, by id.
    defaults: Table,
    errors: Vec<ConfigError>,
}

struct ServerBuild {
    file: Arc<str>,
    line: u32,
    listen: Vec<SocketAddr>,
    names: Vec<(String, &'static str, Arc<str>, u32)>,
}

impl Validator {
    fn new(p: Plugins, errors: Vec<ConfigError>) -> Validator {
        let reg = p.reg;
        let id = |n: &str| reg.lookup(n);
        let ids = CoreIds {
            server: id("Server"),
            location: id("Location"),
            plugin: id("Plugin"),
            port: id("Port"),
            listen: id("Listen"),
            server_name: id("ServerName"),
            server_alias: id("ServerAlias"),
            non_negative: [id("Workers"), id("MaxHeaders"), id("MaxKeepAliveRequests")],
        };
        let defaults = reg
            .iter()
            .map(|(_, d, _)| match default_setting(d) {
                Ok(Some(s)) => vec![s],
                _ => Vec::new(),
            })
            .collect();
        Validator {
            reg: Arc::new(reg),
            loaded: p.loaded,
            failed: p.failed,
            ids,
            defaults,
            errors,
        }
    }

    fn empty_table(&self) -> Table {
        vec![Vec::new(); self.reg.len()]
    }

    fn error(&mut self, node: &Node, id: Option<DirectiveId>, message: String) {
        let (directive, plugin) = match id {
            Some(id) => (
                self.reg.directive(id).name.to_string(),
                Some(self.reg.owner(id).to_string()),
            ),
            None => (node.name().to_string(), None),
        };
        self.errors.push(ConfigError {
            file: node.file().to_string(),
            line: node.line(),
            directive: Some(directive),
            plugin,
            message,
        });
    }

    fn run(
        &mut self,
        nodes: &[Node],
        main: &str,
    ) -> (Vec<ServerConfig>, Arc<LocationConfig>, Vec<String>) {
        let global = self.scope(nodes, Scope::Global, &[]);
        let global_chain = global.plugins.clone();
        let global_frozen = self.freeze(&global.table);

        let mut servers: Vec<ServerConfig> = Vec::new();
        let mut builds: Vec<ServerBuild> = Vec::new();
        for node in nodes {
            // Scope and shape errors for these were reported by the global
            // pass; `<Server>` is only valid here, at global scope.
            if !is_block_name(node, "Server") {
                continue;
            }
            if let Some((cfg, build)) =
                self.server(node, servers.len(), &global.table, &global_chain)
            {
                servers.push(cfg);
                builds.push(build);
            }
        }
        if !nodes.iter().any(|n| is_block_name(n, "Server")) {
            self.errors.push(ConfigError {
                file: main.to_string(),
                line: 0,
                directive: None,
                plugin: None,
                message: "no <Server> block: nothing to serve".to_string(),
            });
        }
        self.check_names(&builds);
        let global_plugins = global_chain.into_iter().map(|c| c.name).collect();
        (servers, global_frozen, global_plugins)
    }

    /// Two servers sharing a listen address must not share a name: the
    /// second could never be reached by it.
    fn check_names(&mut self, builds: &[ServerBuild]) {
        for (j, later) in builds.iter().enumerate() {
            for earlier in &builds[..j] {
                let Some(addr) = later.listen.iter().find(|a| earlier.listen.contains(a)) else {
                    continue;
                };
                for (name, directive, file, line) in &later.names {
                    if earlier.names.iter().any(|(n, ..)| n == name) {
                        self.errors.push(ConfigError {
                            file: file.to_string(),
                            line: *line,
                            directive: Some(directive.to_string()),
                            plugin: Some(CORE.to_string()),
                            message: format!(
                                "server name `{name}` is already used by the <Server> at {}:{}, \
                                 which also listens on {addr}",
                                earlier.file, earlier.line
                            ),
                        });
                    }
                }
            }
        }
    }

    fn server(
        &mut self,
        node: &Node,
        index: usize,
        global: &Table,
        global_chain: &[ChainEntry],
    ) -> Option<(ServerConfig, ServerBuild)> {
        let Node::Block {
            children,
            file,
            line,
            ..
        } = node
        else {
            return None;
        };
        let mut own = self.scope(children, Scope::Server, global_chain);
        // `<Server ADDR…>` is the same as a Listen line at the top of it.
        let mut listen = Vec::new();
        let mut header_args = Vec::new();
        for arg in node.args() {
            match parse_listen(arg) {
                Ok(a) => {
                    listen.push(a);
                    header_args.push(Value::Str(arg.clone()));
                }
                Err(e) => self.error(node, self.ids.server, e),
            }
        }
        if let (Some(id), false) = (self.ids.listen, header_args.is_empty()) {
            let s = Arc::new(Setting {
                args: header_args,
                file: file.clone(),
                line: *line,
            });
            own.table[id.0 as usize].insert(0, s);
        }
        for a in own.listen.drain(..) {
            if !listen.contains(&a) {
                listen.push(a);
            }
        }
        if listen.is_empty() {
            self.error(
                node,
                self.ids.server,
                "no listen address; add `Port 8000`, `Listen ADDR:PORT` or `<Server ADDR:PORT>`"
                    .to_string(),
            );
        }
        // ServerName first, then the aliases.
        own.names.sort_by_key(|n| n.1 != "ServerName");
        let mut names: Vec<String> = Vec::new();
        for (n, ..) in &own.names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }

        let merged = self.merge(global, &own.table);
        let mut chain: Vec<ChainEntry> = global_chain.to_vec();
        chain.extend(own.plugins.iter().cloned());
        let starts = vec![0, global_chain.len()];
        let mut locations = vec![LocationNode {
            prefix: "/".to_string(),
            config: self.freeze(&merged),
            plugins: chain.iter().map(|c| c.name.clone()).collect(),
            scope_starts: starts.clone(),
        }];
        // (prefix, file, line) of every Location so far, for duplicates.
        let mut seen: Vec<(String, Arc<str>, u32)> = Vec::new();
        for (loc, prefix) in own.locations {
            let parent = (&chain[..], &starts[..]);
            self.location(loc, prefix, &merged, parent, &mut locations, &mut seen);
        }

        let mut order: Vec<usize> = (0..locations.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (locations[a].prefix.len(), locations[b].prefix.len());
            pb.cmp(&pa).then(b.cmp(&a))
        });
        let cfg = ServerConfig {
            index,
            listen: listen.clone(),
            names,
            file: file.clone(),
            line: *line,
            locations,
            order,
        };
        let build = ServerBuild {
            file: file.clone(),
            line: *line,
            listen,
            names: own.names,
        };
        Some((cfg, build))
    }

    /// `parent_chain`: the enclosing scope's plugin chain and where each
    /// of its scopes begins in it.
    fn location(
        &mut self,
        node: &Node,
        prefix: String,
        parent: &Table,
        (parent_chain, parent_starts): (&[ChainEntry], &[usize]),
        out: &mut Vec<LocationNode>,
        seen: &mut Vec<(String, Arc<str>, u32)>,
    ) {
        let Node::Block { children, .. } = node else {
            return;
        };
        if let Some((_, f, l)) = seen.iter().find(|(p, ..)| *p == prefix) {
            let msg = format!("<Location {prefix}> is already defined at {f}:{l}");
            self.error(node, self.ids.location, msg);
            return;
        }
        seen.push((prefix.clone(), node.file().clone(), node.line()));
        let own = self.scope(children, Scope::Location, parent_chain);
        let merged = self.merge(parent, &own.table);
        let mut chain = parent_chain.to_vec();
        chain.extend(own.plugins.iter().cloned());
        let mut starts = parent_starts.to_vec();
        starts.push(parent_chain.len());
        out.push(LocationNode {
            prefix: prefix.clone(),
            config: self.freeze(&merged),
            plugins: chain.iter().map(|c| c.name.clone()).collect(),
            scope_starts: starts.clone(),
        });
        for (child, child_prefix) in own.locations {
            // Nested prefixes must live inside their parent's, or the
            // nesting (and the merge it implies) would be a lie.
            if child_prefix.len() <= prefix.len() || !prefix_matches(&prefix, &child_prefix) {
                let msg = format!(
                    "prefix `{child_prefix}` is not inside the enclosing <Location {prefix}> ({}:{})",
                    node.file(),
                    node.line()
                );
                self.error(child, self.ids.location, msg);
                continue;
            }
            self.location(child, child_prefix, &merged, (&chain, &starts), out, seen);
        }
    }

    /// Validates the lines of one scope and records what they set. Server
    /// blocks (at global scope) are left to the caller; Location blocks
    /// are returned for the caller to descend into with the merged parent.
    fn scope<'n>(
        &mut self,
        nodes: &'n [Node],
        scope: Scope,
        inherited: &[ChainEntry],
    ) -> ScopeBuild<'n> {
        let mut b = ScopeBuild {
            table: self.empty_table(),
            plugins: Vec::new(),
            listen: Vec::new(),
            names: Vec::new(),
            locations: Vec::new(),
        };
        for node in nodes {
            let Some(id) = self.check_known(node, scope) else {
                continue;
            };
            if Some(id) == self.ids.server {
                // Handled by `run` (only ever valid at global scope).
                continue;
            }
            if Some(id) == self.ids.location {
                match node.args() {
                    [p] if p.starts_with('/') => b.locations.push((node, p.clone())),
                    _ => self.error(
                        node,
                        Some(id),
                        "expected exactly one URL prefix starting with `/`, e.g. <Location /icons>"
                            .to_string(),
                    ),
                }
                continue;
            }
            let Some(setting) = self.setting(node, id) else {
                continue;
            };
            if !self.special(node, id, &setting, &mut b, inherited) {
                continue;
            }
            b.table[id.0 as usize].push(Arc::new(setting));
        }
        b
    }

    /// Lookup, plugin-loaded, scope and block-shape checks. Returns the id
    /// when the node may be interpreted further.
    fn check_known(&mut self, node: &Node, scope: Scope) -> Option<DirectiveId> {
        let Some(id) = self.reg.lookup(node.name()) else {
            let mut msg = "unknown directive".to_string();
            if let Some(s) = self.reg.suggest(node.name()) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            }
            self.error(node, None, msg);
            return None;
        };
        let d = self.reg.directive(id);
        let owner = self.reg.owner(id);
        if owner != CORE && !self.loaded.iter().any(|p| p == owner) {
            let msg = format!("plugin `{owner}` is not loaded; add `Plugin {owner}`");
            self.error(node, Some(id), msg);
            return None;
        }
        if !d.scopes.contains(scope.scopes()) {
            let msg = format!(
                "not allowed in {}; allowed in: {}",
                scope.scopes().describe(),
                d.scopes.describe()
            );
            self.error(node, Some(id), msg);
            return None;
        }
        let is_block = matches!(node, Node::Block { .. });
        if d.args == Args::Block && !is_block {
            let msg = format!("must be written as a block: `{}`", d.usage());
            self.error(node, Some(id), msg);
            return None;
        }
        if d.args != Args::Block && is_block {
            let msg = format!("is not a block; write it as a single line: `{}`", d.usage());
            self.error(node, Some(id), msg);
            return None;
        }
        Some(id)
    }

    /// Argument count and typed values.
    fn setting(&mut self, node: &Node, id: DirectiveId) -> Option<Setting> {
        let d = self.reg.directive(id);
        let n = node.args().len();
        let count_error = match d.args {
            Args::One if n != 1 => Some(format!("expected 1 argument, got {n}")),
            Args::Many if n == 0 => Some("expected at least 1 argument, got 0".to_string()),
            Args::Range(min, max) if n < usize::from(min) || n > usize::from(max) => {
                Some(format!("expected {min} to {max} arguments, got {n}"))
            }
            Args::Flag if n != 0 => Some(format!("takes no arguments, got {n}")),
            _ => None,
        };
        if let Some(msg) = count_error {
            let msg = format!("{msg}; usage: {}", d.usage());
            self.error(node, Some(id), msg);
            return None;
        }
        let mut args = Vec::with_capacity(n + 1);
        if d.args == Args::Flag {
            args.push(Value::Flag);
        }
        if let Node::Block { children, .. } = node {
            args.push(Value::Block(children.iter().map(block_line).collect()));
        }
        let ty = d.value.clone();
        let mut ok = true;
        for a in node.args() {
            match parse_value(&ty, a) {
                Ok(v) => args.push(v),
                Err(msg) => {
                    self.error(node, Some(id), msg);
                    ok = false;
                }
            }
        }
        ok.then(|| Setting {
            args,
            file: node.file().clone(),
            line: node.line(),
        })
    }

    /// Extra meaning and checks for a few core directives. Returns whether
    /// the setting should be recorded.
    fn special(
        &mut self,
        node: &Node,
        id: DirectiveId,
        s: &Setting,
        b: &mut ScopeBuild<'_>,
        inherited: &[ChainEntry],
    ) -> bool {
        let ids = self.ids;
        if ids.non_negative.contains(&Some(id)) {
            if let Some(Value::Int(n)) = s.args.first() {
                if *n < 0 {
                    let msg = format!("expected a non-negative integer, got {n}");
                    self.error(node, Some(id), msg);
                    return false;
                }
            }
        } else if Some(id) == ids.port {
            let Some(Value::Int(p)) = s.args.first() else {
                return false;
            };
            match u16::try_from(*p) {
                Ok(p) => b.listen.push(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p))),
                Err(_) => {
                    let msg = format!("expected a port number from 0 to 65535, got {p}");
                    self.error(node, Some(id), msg);
                    return false;
                }
            }
        } else if Some(id) == ids.listen {
            let mut ok = true;
            for a in node.args() {
                match parse_listen(a) {
                    Ok(addr) => b.listen.push(addr),
                    Err(e) => {
                        self.error(node, Some(id), e);
                        ok = false;
                    }
                }
            }
            return ok;
        } else if Some(id) == ids.server_name || Some(id) == ids.server_alias {
            let directive = if Some(id) == ids.server_name {
                // Replace semantics: a later ServerName in the same server
                // supersedes the earlier one.
                b.names.retain(|n| n.1 != "ServerName");
                "ServerName"
            } else {
                "ServerAlias"
            };
            for a in node.args() {
                b.names.push((
                    a.to_ascii_lowercase(),
                    directive,
                    node.file().clone(),
                    node.line(),
                ));
            }
        } else if Some(id) == ids.plugin {
            let Some(name) = node.args().first() else {
                return false;
            };
            if self.failed.contains(name) {
                return false;
            }
            let previous = inherited
                .iter()
                .chain(b.plugins.iter())
                .find(|c| &c.name == name);
            if let Some(prev) = previous {
                let msg = format!(
                    "plugin `{name}` is already loaded in this scope ({}:{})",
                    prev.file, prev.line
                );
                self.error(node, Some(id), msg);
                return false;
            }
            b.plugins.push(ChainEntry {
                name: name.clone(),
                file: node.file().clone(),
                line: node.line(),
            });
        }
        true
    }

    /// Replace: the inner scope's last occurrence wins; Append: outer
    /// occurrences then inner ones.
    fn merge(&self, parent: &Table, own: &Table) -> Table {
        parent
            .iter()
            .zip(own)
            .enumerate()
            .map(|(i, (outer, inner))| {
                if inner.is_empty() {
                    return outer.clone();
                }
                match self.reg.directive(DirectiveId(i as u32)).merge {
                    Merge::Replace => inner.last().cloned().into_iter().collect(),
                    Merge::Append => outer.iter().chain(inner).cloned().collect(),
                }
            })
            .collect()
    }

    /// Fills in defaults where nothing is set. Done only when freezing so
    /// that an Append default never gets mixed with written values.
    fn freeze(&self, table: &Table) -> Arc<LocationConfig> {
        let settings = table
            .iter()
            .zip(&self.defaults)
            .map(|(set, def)| {
                if set.is_empty() {
                    def.clone()
                } else {
                    set.clone()
                }
            })
            .collect();
        Arc::new(LocationConfig {
            registry: self.reg.clone(),
            settings,
        })
    }
}

/// Converts a plugin block's body to untyped lines. Depth is bounded by the
/// parser's nesting limit.
fn block_line(node: &Node) -> BlockLine {
    let children = match node {
        Node::Block { children, .. } => children.iter().map(block_line).collect(),
        Node::Directive { .. } => Vec::new(),
    };
    BlockLine {
        name: node.name().to_string(),
        args: node.args().to_vec(),
        file: node.file().clone(),
        line: node.line(),
        children,
    }
}

/// `ADDR:PORT`, `[V6]:PORT`, `*:PORT` or a bare `PORT` (= 0.0.0.0:PORT).
/// Host names are refused: resolving them at load time would make the
/// config depend on DNS.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let port = text.strip_prefix("*:").unwrap_or(text);
    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = port.parse::<u16>() {
            return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)));
        }
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!(
            "expected ADDR:PORT, [IPV6]:PORT or PORT, got {}",
            quote(text)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ValueType;
    use std::time::Duration;

    /// A catalog with a few built-ins and some script plugins found by name.
    struct Cat;

    impl PluginCatalog for Cat {
        fn builtin(&self) -> Vec<(String, Vec<Directive>)> {
            let sl = Scopes::SERVER | Scopes::LOCATION;
            vec![
                (
                    "serve_file".into(),
                    vec![
                        Directive::new("DocumentRoot", ValueType::Path).scopes(sl),
                        Directive::new("DirectoryIndex", ValueType::String)
                            .args(Args::Many)
                            .append()
                            .default("index.html"),
                    ],
                ),
                (
                    "serve_cgi".into(),
                    vec![Directive::new("CGI_Match", ValueType::Regex)],
                ),
                ("uri_to_file".into(), vec![]),
                (
                    "hello".into(),
                    vec![
                        Directive::new("Greeting", ValueType::String).default("Hello"),
                        Directive::new("Perl", ValueType::String).args(Args::Block),
                        Directive::new("Verbose", ValueType::String).args(Args::Flag),
                        Directive::new("Pair", ValueType::Integer).args(Args::Range(2, 3)),
                    ],
                ),
            ]
        }

        fn find(
            &self,
            name: &str,
            dirs: &[PathBuf],
            _files: &mut FileReader<'_>,
        ) -> Result<Option<Vec<Directive>>, String> {
            match name {
                "script" if dirs.iter().any(|d| d == Path::new("lua")) => {
                    Ok(Some(vec![Directive::new("ScriptOpt", ValueType::Integer)]))
                }
                "broken" => Err("syntax error at line 3".into()),
                "clash" => Ok(Some(vec![Directive::new("greeting", ValueType::String)])),
                "baddefault" => Ok(Some(vec![
                    Directive::new("Bd", ValueType::Size).default("lots")
                ])),
                _ => Ok(None),
            }
        }
    }

    fn load_text(text: &str) -> Result<Config, Vec<ConfigError>> {
        let source = Source::Text {
            name: "t.conf".into(),
            text: text.into(),
        };
        load(&source, &Cat)
    }

    fn errors(text: &str) -> Vec<String> {
        match load_text(text) {
            Ok(_) => panic!("config loaded:\n{text}"),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    /// A config that is valid except for the line(s) under test.
    fn with_server(lines: &str) -> String {
        format!("<Server>\nPort 8000\n{lines}\n</Server>\n")
    }

    #[test]
    fn display_leaves_out_missing_parts() {
        let mut e = ConfigError {
            file: "etc/a.conf".into(),
            line: 12,
            directive: Some("DocumentRot".into()),
            plugin: None,
            message: "unknown directive".into(),
        };
        assert_eq!(
            e.to_string(),
            "etc/a.conf:12: DocumentRot: unknown directive"
        );
        e.plugin = Some("files".into());
        assert_eq!(
            e.to_string(),
            "etc/a.conf:12: DocumentRot (plugin files): unknown directive"
        );
        e.line = 0;
        e.directive = None;
        assert_eq!(e.to_string(), "etc/a.conf: unknown directive");
    }

    #[test]
    fn unknown_directive_suggests() {
        assert_eq!(
            errors(&with_server("Plugin serve_file\nDocumentRot x")),
            ["t.conf:4: DocumentRot: unknown directive; did you mean `DocumentRoot`?"]
        );
        assert_eq!(
            errors(&with_server("Zebra 1")),
            ["t.conf:3: Zebra: unknown directive"]
        );
        assert_eq!(
            errors(&with_server("<Zebra>\n</Zebra>")),
            ["t.conf:3: Zebra: unknown directive"]
        );
    }

    #[test]
    fn bad_value() {
        assert_eq!(
            errors(&format!("Workers four\n{}", with_server(""))),
            ["t.conf:1: Workers (plugin core): expected an integer, got \"four\""]
        );
        assert_eq!(
            errors(&format!("Workers -1\n{}", with_server(""))),
            ["t.conf:1: Workers (plugin core): expected a non-negative integer, got -1"]
        );
        assert_eq!(
            errors(&with_server("MaxRequestBody 10Q")),
            ["t.conf:3: MaxRequestBody (plugin core): expected a size like 512, 10K, 10M or 1G, got \"10Q\""]
        );
    }

    #[test]
    fn wrong_scope() {
        assert_eq!(
            errors(&with_server("<Location /a>\nWorkers 4\n</Location>")),
            ["t.conf:4: Workers (plugin core): not allowed in <Location>; allowed in: global"]
        );
        assert_eq!(
            errors(&format!("Port 80\n{}", with_server(""))),
            ["t.conf:1: Port (plugin core): not allowed in global; allowed in: <Server>"]
        );
        assert_eq!(
            errors(&format!("<Location /x>\n</Location>\n{}", with_server(""))),
            ["t.conf:1: Location (plugin core): not allowed in global; allowed in: <Server>, <Location>"]
        );
        assert_eq!(
            errors(&with_server("<Server>\n</Server>")),
            ["t.conf:3: Server (plugin core): not allowed in <Server>; allowed in: global"]
        );
    }

    #[test]
    fn plugin_not_loaded() {
        assert_eq!(
            errors(&with_server("CGI_Match \\.cgi$")),
            ["t.conf:3: CGI_Match (plugin serve_cgi): plugin `serve_cgi` is not loaded; add `Plugin serve_cgi`"]
        );
        // Loaded anywhere is enough.
        let text = "<Server>\nPort 1\nCGI_Match x\n</Server>\n<Server>\nPort 2\nPlugin serve_cgi\n</Server>";
        assert!(load_text(text).is_ok());
    }

    #[test]
    fn missing_file() {
        let path = std::env::temp_dir().join("axkit-config-test-does-not-exist/x.conf");
        let errs = load(&Source::File(path.clone()), &Cat).unwrap_err();
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [format!(
                "{}: cannot read: No such file or directory (os error 2)",
                path.display()
            )]
        );
    }

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
    fn duplicate_plugins_in_a_chain() {
        assert_eq!(
            errors(&format!("Plugin hello\n{}", with_server("Plugin hello"))),
            ["t.conf:4: Plugin (plugin core): plugin `hello` is already loaded in this scope (t.conf:1)"]
        );
        assert_eq!(
            errors(&with_server("<Location /a>\nPlugin hello\nPlugin hello\n</Location>")),
            ["t.conf:5: Plugin (plugin core): plugin `hello` is already loaded in this scope (t.conf:4)"]
        );
        // The same plugin in two sibling scopes is fine.
        let cfg = load_text(&with_server(
            "<Location /a>\nPlugin hello\n</Location>\n<Location /b>\nPlugin hello\n</Location>",
        ))
        .unwrap();
        assert_eq!(cfg.servers[0].locations[1].plugins, ["hello"]);
        assert_eq!(cfg.servers[0].locations[2].plugins, ["hello"]);
    }

    #[test]
    fn argument_counts_and_shapes() {
        let text = with_server(
            "Plugin hello\nPlugin serve_file\nDocumentRoot a b\nDirectoryIndex\nPair 1\nVerbose yes\n\
             Perl x\n<Greeting>\n</Greeting>\nPair 1 2 3 4",
        );
        assert_eq!(
            errors(&text),
            [
                "t.conf:5: DocumentRoot (plugin serve_file): expected 1 argument, got 2; usage: DocumentRoot <path>",
                "t.conf:6: DirectoryIndex (plugin serve_file): expected at least 1 argument, got 0; \
                 usage: DirectoryIndex <string>...",
                "t.conf:7: Pair (plugin hello): expected 2 to 3 arguments, got 1; usage: Pair <integer>{2,3}",
                "t.conf:8: Verbose (plugin hello): takes no arguments, got 1; usage: Verbose",
                "t.conf:9: Perl (plugin hello): must be written as a block: `<Perl ...> ... </Perl>`",
                "t.conf:10: Greeting (plugin hello): is not a block; write it as a single line: `Greeting <string>`",
                "t.conf:12: Pair (plugin hello): expected 2 to 3 arguments, got 4; usage: Pair <integer>{2,3}",
            ]
        );
    }

    #[test]
    fn server_errors() {
        assert_eq!(
            errors("Workers 2\n"),
            ["t.conf: no <Server> block: nothing to serve"]
        );
        assert_eq!(
            errors("<Server>\nServerName a\n</Server>"),
            ["t.conf:1: Server (plugin core): no listen address; add `Port 8000`, `Listen ADDR:PORT` \
              or `<Server ADDR:PORT>`"]
        );
        assert_eq!(
            errors("<Server nowhere>\nPort 1\n</Server>"),
            ["t.conf:1: Server (plugin core): expected ADDR:PORT, [IPV6]:PORT or PORT, got \"nowhere\""]
        );
        assert_eq!(
            errors(&with_server("Port 70000\nListen 1.2.3.4:80 x:1")),
            [
                "t.conf:3: Port (plugin core): expected a port number from 0 to 65535, got 70000",
                "t.conf:4: Listen (plugin core): expected ADDR:PORT, [IPV6]:PORT or PORT, got \"x:1\"",
            ]
        );
        let dup = "<Server>\nPort 80\nServerName A.com\n</Server>\n\
                   <Server>\nListen 80 8080\nServerName b.com\nServerAlias a.com\n</Server>";
        assert_eq!(
            errors(dup),
            ["t.conf:8: ServerAlias (plugin core): server name `a.com` is already used by the <Server> \
              at t.conf:1, which also listens on 0.0.0.0:80"]
        );
        // Same names on different addresses are fine.
        assert!(load_text(&dup.replace("Listen 80 8080", "Listen 8080")).is_ok());
    }

    #[test]
    fn location_errors() {
        assert_eq!(
            errors(&with_server("<Location icons>\n</Location>\n<Location>\n</Location>")),
            [
                "t.conf:3: Location (plugin core): expected exactly one URL prefix starting with `/`, \
                 e.g. <Location /icons>",
                "t.conf:5: Location (plugin core): expected exactly one URL prefix starting with `/`, \
                 e.g. <Location /icons>",
            ]
        );
        assert_eq!(
            errors(&with_server("<Location /a>\n<Location /ab>\n</Location>\n</Location>")),
            ["t.conf:4: Location (plugin core): prefix `/ab` is not inside the enclosing <Location /a> (t.conf:3)"]
        );
        assert_eq!(
            errors(&with_server(
                "<Location /a>\n</Location>\n<Location /a>\n</Location>"
            )),
            ["t.conf:5: Location (plugin core): <Location /a> is already defined at t.conf:3"]
        );
    }

    #[test]
    fn all_errors_collected_and_sorted() {
        let text = "Zebra 1\n<Server>\nWorkers 1\n</Server>\nKeepAlive maybe\n";
        assert_eq!(
            errors(text),
            [
                "t.conf:1: Zebra: unknown directive",
                "t.conf:2: Server (plugin core): no listen address; add `Port 8000`, `Listen ADDR:PORT` \
                 or `<Server ADDR:PORT>`",
                "t.conf:3: Workers (plugin core): not allowed in <Server>; allowed in: global",
                "t.conf:5: KeepAlive (plugin core): expected On or Off, got \"maybe\"",
            ]
        );
    }

    #[test]
    fn merging() {
        let text = "\
Plugin hello
Plugin serve_file
Greeting Hi
DirectoryIndex a.html
MaxRequestBody 2M
ShutdownTimeout 5s
<Server [::1]:8080 8000>
    Port 8000
    Listen 127.0.0.1:9000
    ServerName Example.COM
    ServerAlias *.example.com www.example.org
    Plugin serve_cgi
    DirectoryIndex b.html c.html
    Greeting Hey
    Greeting Howdy
    <Location /icons>
        Plugin uri_to_file
        DirectoryIndex d.html
        <Location /icons/small>
            Greeting Yo
            MaxRequestBody 10K
        </Location>
    </Location>
    <Location /docs/>
        Verbose
    </Location>
</Server>
";
        let cfg = load_text(text).unwrap();
        assert_eq!(
            cfg.plugins,
            ["hello", "serve_file", "serve_cgi", "uri_to_file"]
        );
        assert_eq!(cfg.snapshot.files().count(), 0);
        assert_eq!(
            cfg.global.duration("ShutdownTimeout"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(cfg.global.int("Workers"), Some(0));
        assert!(!cfg.global.is_set("Workers"));
        assert!(cfg.global.is_set("shutdown_timeout"));

        let s = &cfg.servers[0];
        assert_eq!(s.index, 0);
        assert_eq!(
            s.listen,
            [
                "[::1]:8080".parse::<SocketAddr>().unwrap(),
                "0.0.0.0:8000".parse().unwrap(),
                "127.0.0.1:9000".parse().unwrap(),
            ]
        );
        assert_eq!(s.names, ["example.com", "*.example.com", "www.example.org"]);
        assert_eq!(s.locations.len(), 4);
        let prefixes: Vec<&str> = s.locations.iter().map(|l| l.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/", "/icons", "/icons/small", "/docs/"]);

        let root = &s.locations[0];
        assert_eq!(root.plugins, ["hello", "serve_file", "serve_cgi"]);
        assert_eq!(root.config.str("Greeting"), Some("Howdy"));
        let idx: Vec<&str> = root
            .config
            .settings("DirectoryIndex")
            .iter()
            .flat_map(|s| s.args.iter().filter_map(Value::as_str))
            .collect();
        assert_eq!(idx, ["a.html", "b.html", "c.html"]);
        // values() is the last effective occurrence.
        assert_eq!(root.config.values("DirectoryIndex").len(), 2);
        assert_eq!(root.config.size("MaxRequestBody"), Some(2 << 20));
        assert_eq!(root.config.settings("Listen").len(), 2);
        assert!(!root.config.flag("Verbose"));

        let icons = &s.locations[1];
        assert_eq!(
            icons.plugins,
            ["hello", "serve_file", "serve_cgi", "uri_to_file"]
        );
        assert_eq!(icons.config.settings("DirectoryIndex").len(), 3);
        assert_eq!(icons.config.str("Greeting"), Some("Howdy"));

        let small = &s.locations[2];
        assert_eq!(small.plugins, icons.plugins);
        assert_eq!(small.config.str("Greeting"), Some("Yo"));
        assert_eq!(small.config.size("MaxRequestBody"), Some(10 << 10));
        let g = &small.config.settings("greeting")[0];
        assert_eq!((&*g.file, g.line), ("t.conf", 20));

        assert!(s.locations[3].config.flag("Verbose"));
        assert_eq!(cfg.global.str("Greeting"), Some("Hi"));
        // Defaults where nothing is written; an Append default is replaced,
        // not extended, by written values.
        let bare = load_text("Plugin serve_file\n<Server 80>\n</Server>").unwrap();
        let root = &bare.servers[0].locations[0].config;
        assert_eq!(
            root.values("DirectoryIndex")[0].as_str(),
            Some("index.html")
        );
        assert!(root.settings("DirectoryIndex")[0].is_default());
        assert_eq!(root.str("ServerToken"), Some("AxKit"));
        assert!(root.path("DocumentRoot").is_none());
    }

    #[test]
    fn block_directives_keep_raw_lines() {
        let text = with_server(
            "Plugin hello\n<Perl a b>\n  my $x = 1\n  <Sub foo>\n    return\n  </Sub>\n</Perl>",
        );
        let cfg = load_text(&text).unwrap();
        let values = cfg.servers[0].locations[0].config.values("Perl");
        let lines = values[0].as_block().unwrap();
        assert_eq!(values[1].as_str(), Some("a"));
        assert_eq!(values[2].as_str(), Some("b"));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].name, "my");
        assert_eq!(lines[0].args, ["$x", "=", "1"]);
        assert_eq!(lines[1].name, "Sub");
        assert_eq!(lines[1].children[0].name, "return");
        assert_eq!(lines[1].children[0].line, 7);
    }

    #[test]
    fn location_for_longest_segment_aware() {
        let text = with_server(
            "<Location /icons>\n<Location /icons/small>\n</Location>\n</Location>\n\
             <Location /docs/>\n</Location>\n<Location /a/b/c>\n</Location>",
        );
        let cfg = load_text(&text).unwrap();
        let s = &cfg.servers[0];
        let at = |p: &str| s.location_for(p).prefix.as_str();
        assert_eq!(at("/icons"), "/icons");
        assert_eq!(at("/icons/"), "/icons");
        assert_eq!(at("/icons/a.png"), "/icons");
        assert_eq!(at("/iconsx"), "/");
        assert_eq!(at("/icons/small"), "/icons/small");
        assert_eq!(at("/icons/small/x.png"), "/icons/small");
        assert_eq!(at("/icons/smaller"), "/icons");
        assert_eq!(at("/docs/x"), "/docs/");
        assert_eq!(at("/docs/"), "/docs/");
        assert_eq!(at("/docs"), "/");
        assert_eq!(at("/docsx"), "/");
        assert_eq!(at("/a/b/c/d"), "/a/b/c");
        assert_eq!(at("/a/b"), "/");
        assert_eq!(at(""), "/");
        assert_eq!(at("*"), "/");
        // An explicit <Location /> beats the server root.
        let cfg = load_text(&with_server(
            "<Location />\nGreeting x\nPlugin hello\n</Location>",
        ))
        .unwrap();
        assert_eq!(cfg.servers[0].location_for("/x").plugins, ["hello"]);
    }

    #[test]
    fn server_names_and_selection() {
        let text = "<Server 80>\nServerName a.com\n</Server>\n\
                    <Server 80>\nServerName b.com\nServerAlias *.b.com\n</Server>\n<Server 81>\n</Server>";
        let cfg = load_text(text).unwrap();
        let b = &cfg.servers[1];
        assert!(b.matches_name("B.COM"));
        assert!(b.matches_name("b.com:80"));
        assert!(b.matches_name("b.com."));
        assert!(b.matches_name("www.b.com"));
        assert!(b.matches_name("x.y.B.com"));
        assert!(!b.matches_name(".b.com"));
        assert!(!b.matches_name("xb.com"));
        assert!(!b.matches_name("a.com"));
        assert!(!b.matches_name(""));
        assert!(!b.matches_name("é.b.co"));
        let a80: SocketAddr = "0.0.0.0:80".parse().unwrap();
        let a81: SocketAddr = "0.0.0.0:81".parse().unwrap();
        assert_eq!(cfg.listen_addrs(), [a80, a81]);
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn name_normalisation_in_configs() {
        let text = "plugin serve_file\n<server>\nport 80\ndocument_root /a\n<location /x>\ndocument-root /b\n\
                    </LOCATION>\n</SERVER>";
        let cfg = load_text(text).unwrap();
        let s = &cfg.servers[0];
        assert_eq!(
            s.locations[0].config.path("DocumentRoot"),
            Some(Path::new("/a"))
        );
        assert_eq!(
            s.locations[1].config.path("documentroot"),
            Some(Path::new("/b"))
        );
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("axkit-config-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let p = self.0.join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(&p, text).unwrap();
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn error_strings(r: Result<Config, Vec<ConfigError>>) -> Vec<String> {
        r.err().unwrap().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn include_files_and_wildcards() {
        let t = TempDir::new("include");
        t.write("conf.d/20-b.conf", "Greeting from-b\n");
        t.write("conf.d/10-a.conf", "Plugin hello\nGreeting from-a\n");
        t.write("conf.d/.hidden.conf", "Zebra 1\n");
        t.write("conf.d/notes.txt", "Zebra 1\n");
        t.write("server.conf", "Port 80\nInclude conf.d/*.conf\n");
        let main = t.write(
            "main.conf",
            "<Server>\n  Include server.conf\n  Include conf.d/*.none\n</Server>\n",
        );
        let cfg = load(&Source::File(main.clone()), &Cat).unwrap();
        let root = &cfg.servers[0].locations[0];
        assert_eq!(root.config.str("Greeting"), Some("from-b"));
        assert_eq!(root.plugins, ["hello"]);
        let g = &root.config.settings("Greeting")[0];
        assert!(g.file.ends_with("20-b.conf"), "{}", g.file);
        assert_eq!(g.line, 1);
        let names: Vec<String> = cfg
            .snapshot
            .files()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["main.conf", "server.conf", "10-a.conf", "20-b.conf"]
        );

        // A plain missing include is an error at the Include line.
        let bad = t.write("bad.conf", "Include missing.conf\n<Server 80>\n</Server>\n");
        let missing = t.0.join("missing.conf");
        assert_eq!(
            error_strings(load(&Source::File(bad.clone()), &Cat)),
            [format!(
                "{}:1: Include (plugin core): cannot read {}: No such file or directory (os error 2)",
                bad.display(),
                missing.display()
            )]
        );
        // Errors inside included files name the included file.
        t.write("typo.conf", "Wrokers 2\n");
        let inc = t.write("inc.conf", "Include typo.conf\n<Server 80>\n</Server>\n");
        assert_eq!(
            error_strings(load(&Source::File(inc), &Cat)),
            [format!(
                "{}:1: Wrokers: unknown directive; did you mean `Workers`?",
                t.0.join("typo.conf").display()
            )]
        );
        let args = t.write(
            "args.conf",
            "Include\n<Include x>\n</Include>\n<Server 80>\n</Server>\n",
        );
        assert_eq!(
            error_strings(load(&Source::File(args.clone()), &Cat)),
            [
                format!("{}:1: Include (plugin core): expected 1 argument, got 0; usage: Include <path>", args.display()),
                format!(
                    "{}:2: Include (plugin core): is not a block; write it as a single line: `Include <path>`",
                    args.display()
                ),
            ]
        );
    }

    #[test]
    fn include_cycles_and_depth() {
        let t = TempDir::new("cycle");
        let a = t.write("a.conf", "Include b.conf\n<Server 80>\n</Server>\n");
        let b = t.write("b.conf", "Include a.conf\n");
        assert_eq!(
            error_strings(load(&Source::File(a.clone()), &Cat)),
            [format!(
                "{}:1: Include (plugin core): include cycle: {} is already being read",
                b.display(),
                t.0.join("a.conf").display()
            )]
        );
        // A chain of 17 nested includes is one too many.
        for i in 0..17 {
            t.write(&format!("d{i}.conf"), &format!("Include d{}.conf\n", i + 1));
        }
        t.write("d17.conf", "Workers 1\n");
        let main = t.write("deep.conf", "Include d0.conf\n<Server 80>\n</Server>\n");
        assert_eq!(
            error_strings(load(&Source::File(main), &Cat)),
            [format!(
                "{}:1: Include (plugin core): includes nested deeper than 16",
                t.0.join("d15.conf").display()
            )]
        );
        t.write("d15.conf", "Workers 1\n");
        assert!(load(&Source::File(t.0.join("deep.conf")), &Cat).is_ok());
        // Includes cannot be used to nest blocks past the parser's limit.
        t.write("nest.conf", "<Perl>\nInclude nest2.conf\n</Perl>\n");
        t.write("nest2.conf", &("<A>\n".repeat(32) + &"</A>\n".repeat(32)));
        let m = t.write(
            "nestmain.conf",
            "Plugin hello\nInclude nest.conf\n<Server 80>\n</Server>\n",
        );
        let errs = error_strings(load(&Source::File(m), &Cat));
        assert!(
            errs[0].ends_with("blocks nested deeper than 32 (through Include)"),
            "{errs:?}"
        );
    }

    #[test]
    fn glob() {
        let g = |p: &str, n: &str| {
            glob_match(
                &p.chars().collect::<Vec<_>>(),
                &n.chars().collect::<Vec<_>>(),
            )
        };
        assert!(g("*.conf", "a.conf"));
        assert!(g("*.conf", ".conf"));
        assert!(!g("*.conf", "a.confx"));
        assert!(g("a?c", "abc"));
        assert!(!g("a?c", "ac"));
        assert!(g("*", ""));
        assert!(g("**a*", "bab"));
        assert!(!g(&"*a".repeat(50), &"a".repeat(40)));
    }

    /// xorshift64*: deterministic, dependency-free randomness for the
    /// robustness test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Never panics, whatever the input: random bytes, and random edits of a
    /// realistic config (which keeps most lines meaningful, so validation
    /// and merging are exercised, not just the tokenizer).
    #[test]
    fn random_input_never_panics() {
        let sample = "\u{feff}# sample\nPlugin hello\nPlugin serve_file\nPlugin serve_cgi\nWorkers 4 # four\n\
                      PluginDir lua\nKeepAlive off\n<Server [::1]:8080 8000>\n  Port 8001\n  ServerName a.com\n  \
                      ServerAlias *.a.com\n  CGI_Match \"\\.(cgi|pl)$\"\n  DirectoryIndex a 'b c' \\\n   d\n  \
                      Pair 1 2\n  <Perl x>\n    line \"q\"\n  </Perl>\n  <Location /icons>\n    Greeting 'hi'\n    \
                      Verbose\n    MaxRequestBody 10M\n    <Location /icons/s>\n      SendTimeout 1m30s\n    \
                      </Location>\n  </Location>\n</Server>\r\n<Server 9000>\n</Server>\n";
        assert!(load_text(sample).is_ok(), "{:?}", load_text(sample).err());
        let alphabet = b"<>/\"'\\# \n\r\tPlugServerLocation0123456789*?-_KMGms\0";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                let len = rng.below(200);
                (0..len)
                    .map(|_| {
                        if rng.below(3) == 0 {
                            rng.next() as u8
                        } else {
                            alphabet[rng.below(alphabet.len())]
                        }
                    })
                    .collect()
            } else {
                let mut b = sample.as_bytes().to_vec();
                for _ in 0..1 + rng.below(4) {
                    let pos = rng.below(b.len());
                    match rng.below(4) {
                        0 => b[pos] = alphabet[rng.below(alphabet.len())],
                        1 => {
                            b.remove(pos);
                        }
                        2 => b.insert(pos, alphabet[rng.below(alphabet.len())]),
                        _ => {
                            // Duplicate a slice: repeats lines and blocks.
                            let end = (pos + rng.below(40)).min(b.len());
                            let piece = b[pos..end].to_vec();
                            b.splice(pos..pos, piece);
                        }
                    }
                }
                b
            };
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&text, "fuzz.conf");
            if let Err(errs) = load_text(&text) {
                assert!(!errs.is_empty());
                for e in &errs {
                    let _ = e.to_string();
                }
            }
        }
    }
}
