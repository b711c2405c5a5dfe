//! What a loaded config is: the frozen [`Config`] with its servers
//! ([`ServerConfig`]) and their locations ([`LocationNode`]), how a request
//! picks among them (by listen address and Host, then by longest URL
//! prefix), where a config comes from ([`Source`]), and the one error type
//! every loading stage reports ([`ConfigError`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::registry::Registry;
use super::snapshot::Snapshot;
use super::value::LocationConfig;

/// Where the main config comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A config file; includes are relative to its directory.
    File(PathBuf),
    /// Config text that is not a file, e.g. the built-in config (name
    /// `<built-in>`); includes are relative to the working directory.
    Text { name: String, text: String },
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
    /// What is worth fixing but does not stop the config from loading (a
    /// deprecated line), sorted like errors: `axkit --check` prints them
    /// and the master logs them.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    /// Every scope's merged config: the global one, then each server's
    /// locations (its own scope first), for a plugin that checks or
    /// gathers what every scope says.
    pub fn scopes(&self) -> impl Iterator<Item = &Arc<LocationConfig>> {
        std::iter::once(&self.global).chain(
            self.servers
                .iter()
                .flat_map(|s| s.locations.iter().map(|n| &n.config)),
        )
    }

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
    /// The addresses of `listen` written with `proxy-protocol`: every
    /// connection on them starts with a PROXY protocol header.
    pub proxy_protocol: Vec<SocketAddr>,
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
    /// A server with its locations (`locations[0]` being the server root),
    /// ready for [`location_for`](Self::location_for).
    pub(super) fn new(
        index: usize,
        listen: Vec<SocketAddr>,
        names: Vec<String>,
        file: Arc<str>,
        line: u32,
        locations: Vec<LocationNode>,
    ) -> ServerConfig {
        let mut order: Vec<usize> = (0..locations.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (locations[a].prefix.len(), locations[b].prefix.len());
            pb.cmp(&pa).then(b.cmp(&a))
        });
        ServerConfig {
            index,
            listen,
            proxy_protocol: Vec::new(),
            names,
            file,
            line,
            locations,
            order,
        }
    }

    /// Longest matching prefix, segment-aware: prefix `/icons` matches
    /// `/icons`, `/icons/` and `/icons/a.png` but not `/iconsx`; a prefix
    /// ending in `/` matches by plain prefix. Falls back to `locations[0]`.
    /// `path` should be the decoded, normalised URL path (no query).
    ///
    /// # Panics
    /// Never for a `ServerConfig` from [`load`](super::load()) (its
    /// `locations` is never empty); only if a caller emptied `locations` by
    /// hand.
    pub fn location_for(&self, path: &str) -> &LocationNode {
        self.location_for_parts(&[path])
    }

    /// [`location_for`](Self::location_for) the path that `parts` make
    /// joined, without joining them: what a plugin asks about a path it
    /// has in pieces (a directory's path and its index's name) on every
    /// request, where a joined copy would be an allocation.
    pub fn location_for_parts(&self, parts: &[&str]) -> &LocationNode {
        self.order
            .iter()
            .filter_map(|&i| self.locations.get(i))
            .find(|l| prefix_matches_parts(&l.prefix, parts))
            .unwrap_or(&self.locations[0])
    }

    /// Whether `host` (a Host header; a `:port` and a trailing dot are
    /// ignored) is one of this server's names, case-insensitively;
    /// `*.example.com` matches any name ending in `.example.com`.
    pub fn matches_name(&self, host: &str) -> bool {
        let host = axkit_http::strip_port(host);
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

/// The segment-aware prefix test behind [`ServerConfig::location_for`].
pub(super) fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix_matches_parts(prefix, &[path])
}

/// [`prefix_matches`] for the path that `parts` make joined: the prefix
/// is compared piece by piece, and the byte after it is the next one of
/// whichever part holds it.
fn prefix_matches_parts(prefix: &str, parts: &[&str]) -> bool {
    let mut rest = prefix.as_bytes();
    let mut parts = parts.iter().map(|p| p.as_bytes());
    let mut after: &[u8] = &[];
    for part in parts.by_ref() {
        let n = rest.len().min(part.len());
        if part[..n] != rest[..n] {
            return false;
        }
        rest = &rest[n..];
        if rest.is_empty() {
            after = &part[n..];
            break;
        }
    }
    if !rest.is_empty() {
        return false;
    }
    if prefix.ends_with('/') {
        return true;
    }
    let next = after.first().or_else(|| parts.find_map(<[u8]>::first));
    matches!(next, None | Some(b'/'))
}

/// The server root or one `<Location>`.
#[derive(Clone, Debug)]
pub struct LocationNode {
    /// `/` for the server root.
    pub prefix: String,
    /// Where the `<Location>` (or, for the server root, the `<Server>`)
    /// begins.
    pub file: Arc<str>,
    pub line: u32,
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

impl LocationNode {
    /// `plugins` in the order the content hooks (`xmlresponse`,
    /// `response`) try them: the innermost scope's first, each scope's in
    /// config order. The first that does not decline answers, so this is
    /// the order that decides which plugin answers a request here.
    pub fn content_order(&self) -> Vec<&str> {
        let scope_of = |at: usize| {
            self.scope_starts
                .iter()
                .rposition(|&s| s <= at)
                .unwrap_or(0)
        };
        let mut ordered: Vec<(usize, &str)> = self
            .plugins
            .iter()
            .enumerate()
            .map(|(at, name)| (scope_of(at), name.as_str()))
            .collect();
        // Stable: config order within a scope.
        ordered.sort_by_key(|&(scope, _)| std::cmp::Reverse(scope));
        ordered.into_iter().map(|(_, name)| name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{load_text, with_server};

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
        // In pieces, every way of cutting a path, the same Location.
        for path in [
            "/icons",
            "/icons/a.png",
            "/iconsx",
            "/docs/",
            "/docs",
            "/a/b/c/d",
            "/a/b/",
        ] {
            for cut in 0..=path.len() {
                for cut2 in cut..=path.len() {
                    let parts = [&path[..cut], &path[cut..cut2], "", &path[cut2..]];
                    let joined = s.location_for_parts(&parts).prefix.as_str();
                    assert_eq!(joined, at(path), "{parts:?}");
                }
            }
        }
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
        assert_eq!(axkit_http::strip_port("[::1]:80"), "[::1]");
        assert_eq!(axkit_http::strip_port("::1"), "::1");
    }
}
