//! The third loading stage: check every line against the registry (known,
//! its owner loaded or in use, allowed in its scope, argument count and typed
//! values), give the core's structural directives their meaning (`Server`,
//! `Location`, `Plugin`, `Listen`, names), merge each scope into the ones
//! it encloses and freeze one [`LocationConfig`] per `<Server>` and
//! `<Location>`, defaults filled in, so that a request never merges.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::directive::{Args, Merge, Scopes};
use super::model::{prefix_matches, ConfigError, LocationNode, ServerConfig};
use super::plugins::{Owners, Plugins};
use super::registry::{DirectiveId, Registry, CORE};
use super::snapshot::FileReader;
use super::syntax::Node;
use super::value::{
    default_setting, parse_value, quote, BlockLine, LocationConfig, Setting, Value,
};

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
    /// Those of them written with `proxy-protocol`.
    proxy_protocol: Vec<SocketAddr>,
    /// Host names (servers only): (lowercased, directive, file, line).
    names: Vec<(String, &'static str, Arc<str>, u32)>,
    /// Nested `<Location>` blocks with a valid prefix.
    locations: Vec<(&'n Node, String)>,
}

/// The stage's state: [`run`](Self::run) does the whole stage.
pub(super) struct Validator<'a> {
    pub(super) reg: Arc<Registry>,
    pub(super) owners: Owners,
    skip: HashSet<String>,
    /// See [`Plugins::unresolved`].
    unresolved: bool,
    ids: CoreIds,
    /// Parsed defaults, by id.
    defaults: Table,
    /// Every error so far, the earlier stages' included.
    pub(super) errors: Vec<ConfigError>,
    /// What the keys that read files read them through (see
    /// [`Key::parsed_with_files`](super::Key::parsed_with_files)).
    pub(super) files: FileReader<'a>,
}

struct ServerBuild {
    file: Arc<str>,
    line: u32,
    listen: Vec<SocketAddr>,
    proxy_protocol: Vec<SocketAddr>,
    names: Vec<(String, &'static str, Arc<str>, u32)>,
}

impl<'a> Validator<'a> {
    /// Validation against the plugins found, after the earlier stages'
    /// `errors`, reading files through the earlier stages' `files`.
    pub(super) fn new(p: Plugins, errors: Vec<ConfigError>, files: FileReader<'a>) -> Self {
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
            owners: p.owners,
            skip: p.skip,
            unresolved: p.unresolved,
            ids,
            defaults,
            errors,
            files,
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

    /// Validates and freezes the whole config (`nodes`, includes
    /// expanded; `main` names it in errors without a line): its servers,
    /// the frozen global scope and the global plugin chain.
    pub(super) fn run(
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
            if !node.is_block("Server") {
                continue;
            }
            if let Some((cfg, build)) =
                self.server(node, servers.len(), &global.table, &global_chain)
            {
                servers.push(cfg);
                builds.push(build);
            }
        }
        if !nodes.iter().any(|n| n.is_block("Server")) {
            self.errors.push(ConfigError {
                file: main.to_string(),
                line: 0,
                directive: None,
                plugin: None,
                message: "no <Server> block: nothing to serve".to_string(),
            });
        }
        self.check_names(&builds);
        self.check_proxy_protocol(&builds);
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

    /// A listening socket either expects a PROXY protocol header on every
    /// connection or on none: Servers sharing an address must agree.
    fn check_proxy_protocol(&mut self, builds: &[ServerBuild]) {
        for (j, later) in builds.iter().enumerate() {
            for earlier in &builds[..j] {
                let differs = later.listen.iter().find(|a| {
                    earlier.listen.contains(a)
                        && earlier.proxy_protocol.contains(a) != later.proxy_protocol.contains(a)
                });
                if let Some(addr) = differs {
                    self.errors.push(ConfigError {
                        file: later.file.to_string(),
                        line: later.line,
                        directive: Some("Listen".to_string()),
                        plugin: Some(CORE.to_string()),
                        message: format!(
                            "{addr} is `proxy-protocol` for one <Server> and not for the other, \
                             at {}:{}; one socket is either or neither",
                            earlier.file, earlier.line
                        ),
                    });
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
                typed: None,
                expected: Vec::new(),
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
        self.check_guards(
            &own.table,
            &chain,
            "in this <Server> (outside the <Location>s that load it)",
        );
        let starts = vec![0, global_chain.len()];
        let mut locations = vec![LocationNode {
            prefix: "/".to_string(),
            file: file.clone(),
            line: *line,
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

        let mut cfg =
            ServerConfig::new(index, listen.clone(), names, file.clone(), *line, locations);
        cfg.proxy_protocol = own.proxy_protocol.clone();
        let build = ServerBuild {
            file: file.clone(),
            line: *line,
            listen,
            proxy_protocol: own.proxy_protocol,
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
        self.check_guards(&own.table, &chain, &format!("in <Location {prefix}>"));
        let mut starts = parent_starts.to_vec();
        starts.push(parent_chain.len());
        out.push(LocationNode {
            prefix: prefix.clone(),
            file: node.file().clone(),
            line: node.line(),
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

    /// Refuse every line of `table` (one scope's own) of a directive that
    /// refuses requests ([`Directive::guard`](super::Directive::guard))
    /// whose plugin is not in the scope's `chain`: `Deny from all` at
    /// Server level with `Plugin access` only inside a `<Location>` would
    /// leave the rest of the server open while reading as closed.
    fn check_guards(&mut self, table: &Table, chain: &[ChainEntry], scope: &str) {
        for (i, settings) in table.iter().enumerate() {
            let id = DirectiveId(i as u32);
            if settings.is_empty() || !self.reg.directive(id).guard {
                continue;
            }
            let owner = self.reg.owner(id);
            if chain.iter().any(|c| c.name == owner) || self.skip.contains(owner) {
                continue;
            }
            for s in settings {
                self.errors.push(ConfigError {
                    file: s.file.to_string(),
                    line: s.line,
                    directive: Some(self.reg.directive(id).name.to_string()),
                    plugin: Some(owner.to_string()),
                    message: format!(
                        "plugin `{owner}` does not run {scope}, so this line would guard \
                         nothing there: add `Plugin {owner}` to this scope (or one around \
                         it), or move the line into the <Location> that loads it"
                    ),
                });
            }
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
            proxy_protocol: Vec::new(),
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

    /// Lookup, owner-available, scope and block-shape checks. Returns the id
    /// when the node may be interpreted further.
    fn check_known(&mut self, node: &Node, scope: Scope) -> Option<DirectiveId> {
        let Some(id) = self.reg.lookup(node.name()) else {
            let suggestion = self.reg.suggest(node.name());
            // Probably a directive of the plugin that could not be found:
            // that error was reported, once.
            if self.unresolved && suggestion.is_none() {
                return None;
            }
            let mut msg = "unknown directive".to_string();
            if let Some(s) = suggestion {
                msg.push_str(&format!("; did you mean `{s}`?"));
            }
            self.error(node, None, msg);
            return None;
        };
        let d = self.reg.directive(id);
        let owner = self.reg.owner(id);
        if let Some(msg) = self.owners.unavailable(owner) {
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
        let key = d.key;
        let secret = d.secret.then(|| secret_error(d, None));
        let mut ok = true;
        // `Include` was resolved against its file when it was read.
        let include = d.name == "Include";
        let expect = d.expect;
        let mut expected = Vec::new();
        for a in node.args() {
            match parse_value(&ty, a) {
                // `-` is stdout wherever a path may name it.
                Ok(Value::Path(p)) if a != "-" && !include => {
                    let path = self.files.path(&p);
                    expected.extend(expect.map(|what| (path.clone(), what)));
                    args.push(Value::Path(path))
                }
                Ok(v) => args.push(v),
                Err(msg) => {
                    self.error(node, Some(id), secret.clone().unwrap_or(msg));
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let mut setting = Setting {
            args,
            file: node.file().clone(),
            line: node.line(),
            typed: None,
            expected,
        };
        // A typed key converts the value now, once: a bad value is an
        // error here, with file:line, like any other.
        if let Some(key) = key {
            let converted = key.0.convert(&setting, &mut self.files);
            setting.expected.extend(self.files.take_expected());
            match converted {
                Ok(typed) => setting.typed = Some(typed),
                Err(msg) => {
                    let msg = match secret {
                        // What the parse function says helps, unless it
                        // quotes the value.
                        Some(_) if !node.args().iter().any(|a| msg.contains(a.as_str())) => {
                            secret_error(self.reg.directive(id), Some(&msg))
                        }
                        Some(generic) => generic,
                        None => msg,
                    };
                    self.error(node, Some(id), msg);
                    return None;
                }
            }
        }
        Some(setting)
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
        if Some(id) == ids.port {
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
            let mut addrs = node.args();
            let proxy = addrs.len() > 1
                && addrs
                    .last()
                    .is_some_and(|w| w.eq_ignore_ascii_case("proxy-protocol"));
            if proxy {
                addrs = &addrs[..addrs.len() - 1];
            }
            for a in addrs {
                match parse_listen(a) {
                    Ok(addr) => {
                        b.listen.push(addr);
                        if proxy {
                            b.proxy_protocol.push(addr);
                        }
                    }
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
            if self.skip.contains(name) {
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
        Arc::new(LocationConfig::new(self.reg.clone(), settings))
    }
}

/// What is wrong with a secret directive's value, without quoting it:
/// `why` is what its conversion said, given only when that quotes none of
/// the arguments.
fn secret_error(d: &super::Directive, why: Option<&str>) -> String {
    let why = why.map(|w| format!(": {w}")).unwrap_or_default();
    format!(
        "invalid value (not shown: the directive is secret){why}; usage: {}",
        d.usage()
    )
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
