//! The runtime tables a worker builds once from its config: for each
//! `<Location>` the plugins of every hook in the order they run and the
//! values the core reads per request; for each `<Server>` its connection
//! settings; for the worker the lot, plus what its connections share. And
//! per request, [`RequestRt`]: the server's side of a
//! [`Context`](crate::plugin::Context), which plugins never see.
//!
//! Everything here is per worker and lives on one thread, hence `Rc` and
//! `Cell`: no locks on the hot path.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use axkit_http::Limits;
use tokio::sync::Notify;

use crate::config::{core, Config, LocationConfig, LocationNode, ServerConfig};
use crate::plugin::metrics::Slot;
use crate::plugin::{
    called_hooks, Catalog, Context, Descriptors, Headers, Hook, Level, Outcome, Plugin, PluginInit,
    Reclaimable, Request, Trust,
};
use crate::server::conn_io::{ConnIo, ReadBuffers};
use crate::server::hooks;
use crate::server::idle::IdleWaits;
use crate::server::park::Parking;

/// A plugin in a chain, with the name it was loaded under (for logs) and
/// its index in `Config::plugins` (for the metrics: which plugin answered).
pub(crate) type Entry = (Rc<str>, Rc<dyn Plugin>, u16);

/// Every plugin of a worker by name, with its index in `Config::plugins`.
type Built = HashMap<String, (Rc<dyn Plugin>, u16)>;

/// Per-`<Location>` runtime: its merged config, cached hot values, and for
/// each hook the plugins that implement it, in the order they run.
///
/// That order is scope order (global, Server, enclosing Locations, this
/// one; config order within each), except for the content hooks
/// ([`CONTENT_HOOKS`]): there the innermost scope goes first, so that the
/// application loaded in a `<Location>` answers its requests before a file
/// server loaded for the whole `<Server>`, whatever the order of the lines.
pub(crate) struct LocationRt {
    pub config: Arc<LocationConfig>,
    pub prefix: String,
    /// Where the `<Location>` (or `<Server>`) begins, for trace lines.
    pub file: Arc<str>,
    pub line: u32,
    /// `Trace On` here.
    pub trace: bool,
    chains: Vec<Vec<Entry>>,
    pub max_body: u64,
    pub body_timeout: Duration,
    pub send_timeout: Duration,
    /// The label of its requests in the metrics (0 without them).
    pub series: u32,
}

/// The hooks that produce a response: a Location's own plugins get the
/// first say there. The others (translation, access, fixups, filters,
/// logging) are cross-cutting and keep scope order.
pub(crate) const CONTENT_HOOKS: [Hook; 2] = [Hook::XmlResponse, Hook::Response];

impl LocationRt {
    /// `node` is the scope's config (its plugin chain in scope order).
    fn new(node: &LocationNode, all: &Built, series: u32) -> LocationRt {
        let config = node.config.clone();
        let (prefix, file, line) = (node.prefix.clone(), node.file.clone(), node.line);
        let plugins = &node.plugins;
        let mut chains = vec![Vec::new(); Hook::COUNT];
        let entries = plugins.iter().filter_map(|name| {
            let (plugin, index) = all.get(name)?;
            Some((Rc::<str>::from(name.as_str()), plugin.clone(), *index))
        });
        for (name, plugin, index) in entries {
            let hooks = called_hooks(&*plugin);
            for hook in Hook::ALL {
                if hooks.contains(hook) {
                    chains[hook as usize].push((name.clone(), plugin.clone(), index));
                }
            }
        }
        let order = node.content_order();
        for hook in CONTENT_HOOKS {
            chains[hook as usize] = innermost_first(&chains[hook as usize], &order);
        }
        LocationRt {
            max_body: *config.get(&core::MAX_REQUEST_BODY),
            body_timeout: *config.get(&core::BODY_TIMEOUT),
            send_timeout: *config.get(&core::SEND_TIMEOUT),
            trace: *config.get(&core::TRACE),
            config,
            prefix,
            file,
            line,
            chains,
            series,
        }
    }

    /// The plugins that run for `hook` here, in the order they run.
    pub fn chain(&self, hook: Hook) -> &[Entry] {
        &self.chains[hook as usize]
    }
}

/// `chain` in the node's content order ([`LocationNode::content_order`]):
/// the innermost scope's plugins first, each group still in config order.
fn innermost_first(chain: &[Entry], order: &[&str]) -> Vec<Entry> {
    order
        .iter()
        .filter_map(|name| chain.iter().find(|entry| &*entry.0 == *name).cloned())
        .collect()
}

/// Per-`<Server>` runtime: its locations and the connection-level settings
/// that apply before a Location is known.
pub(crate) struct ServerRt {
    pub locations: Vec<Rc<LocationRt>>,
    pub limits: Limits,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub keepalive: bool,
    pub max_keepalive_requests: u64,
    /// Pre-serialised `Server: …\r\n`, empty when switched off.
    pub server_header: Rc<[u8]>,
    /// `TrustedProxy`: None when not written, so that a request's client
    /// is then the connection's at the cost of one test.
    pub trust: Option<Trust>,
    /// `TraceFrom`: the clients whose `X-AxKit-Trace: 1` is honoured.
    pub trace_from: Vec<crate::config::Cidr>,
    /// `ProxyProtocolFrom`: the peers a `proxy-protocol` listener whose
    /// first Server this is takes connections from; empty: any.
    pub proxy_protocol_from: Vec<crate::config::Cidr>,
}

impl ServerRt {
    fn new(config: &ServerConfig, all: &Built, metrics: Option<&Slot>) -> ServerRt {
        let root = &config.locations[0].config;
        // Its label in the metrics: its name, else its first address.
        let name = match (config.names.first(), config.listen.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(addr)) => addr.to_string(),
            (None, None) => String::new(),
        };
        let locations = config
            .locations
            .iter()
            .map(|node| {
                Rc::new(LocationRt::new(
                    node,
                    all,
                    metrics.map_or(0, |m| m.series(&name, &node.prefix)),
                ))
            })
            .collect();
        let mut server_header = Vec::new();
        if let Some(token) = root.get(&core::SERVER_TOKEN) {
            axkit_http::write_header(&mut server_header, "Server", token.as_bytes());
        }
        let size = |key| usize::try_from(*root.get(key)).unwrap_or(usize::MAX);
        let proxies: Vec<_> = root
            .list(&core::TRUSTED_PROXY)
            .iter()
            .flatten()
            .copied()
            .collect();
        let trust = (!proxies.is_empty()).then(|| Trust {
            proxies,
            forwarded: root
                .get(&core::TRUSTED_PROXY_HEADER)
                .eq_ignore_ascii_case("forwarded"),
        });
        ServerRt {
            locations,
            limits: Limits {
                max_request_line: size(&core::MAX_REQUEST_LINE),
                max_header_bytes: size(&core::MAX_HEADER_SIZE),
                max_headers: (*root.get(&core::MAX_HEADERS)).max(1),
            },
            header_timeout: *root.get(&core::HEADER_TIMEOUT),
            keepalive_timeout: *root.get(&core::KEEPALIVE_TIMEOUT),
            // nginx's and Apache's reading of a zero keep-alive timeout:
            // no keep-alive, rather than advertising it and then closing.
            keepalive: *root.get(&core::KEEPALIVE) && !root.get(&core::KEEPALIVE_TIMEOUT).is_zero(),
            max_keepalive_requests: *root.get(&core::MAX_KEEPALIVE_REQUESTS) as u64,
            server_header: Rc::from(server_header),
            trust,
            trace_from: root
                .list(&core::TRACE_FROM)
                .iter()
                .flatten()
                .copied()
                .collect(),
            proxy_protocol_from: root
                .list(&core::PROXY_PROTOCOL_FROM)
                .iter()
                .flatten()
                .copied()
                .collect(),
        }
    }
}

/// Everything a worker shares between its connections.
pub(crate) struct WorkerRt {
    pub config: Arc<Config>,
    pub servers: Vec<ServerRt>,
    /// The global plugin chain, for log lines not tied to a request.
    pub global: Rc<LocationRt>,
    plugins: Vec<Rc<dyn Plugin>>,
    /// Per listening socket: the servers bound to it, default first.
    pub listener_servers: Vec<Vec<usize>>,
    /// Per listening socket: whether connections start with a PROXY
    /// protocol header.
    pub listener_proxy: Vec<bool>,
    log_level: Level,
    /// Where this worker counts (see `plugin/metrics.rs`), when the config
    /// asked for the metrics region.
    pub metrics: Option<&'static Slot>,
    /// The configuration generation this worker runs (1 at start, one
    /// more per reload).
    pub generation: u64,
    /// Whether any request may be traced (see `trace.rs`): else the walk
    /// never looks.
    pub tracing: bool,
    /// This worker's index in its generation and the generation's size
    /// (see [`crate::plugin::Worker::index`]).
    place: (usize, usize),
    pub shutting_down: Cell<bool>,
    pub shutdown: Notify,
    /// Connections waiting for their next request.
    pub idle: IdleWaits,
    /// The epoll that watches parked idle connections (none if the kernel
    /// would not give one: connections then stay live).
    pub parking: Option<Parking>,
    /// Connections accepted and not yet closed.
    pub active: Cell<usize>,
    /// `MaxConnections`: no accepting while `active` is there. Lowered
    /// for a while when the worker runs out of descriptors below it
    /// (`worker.rs`).
    pub(super) max_connections: Cell<usize>,
    /// `max_connections` and `crowded` as configured, which they return
    /// to once descriptors have not run short for a while, and while
    /// lowered, when they last did and under which open-file limit.
    pub(super) configured: (usize, usize),
    pub(super) short_of_fds: Cell<Option<(std::time::Instant, usize)>>,
    /// From this many connections on, the worker leaves new clients to
    /// its siblings for a moment before it accepts (`worker.rs`); never,
    /// for a lone worker.
    pub(super) crowded: Cell<usize>,
    /// Notified when `active` drops below `max_connections`.
    pub(super) room: Notify,
    /// Requests in flight that may be asked to end when idle connections
    /// cannot make room (`Context::set_reclaimable`).
    pub(crate) reclaimable: Reclaimable,
    /// Idle connections closed and reclaimable requests ended to make
    /// room since the last log line about it, and when that line was
    /// written.
    pub(super) reclaimed: Cell<(u64, u64, Option<std::time::Instant>)>,
    /// Failed accepts left out of the log since the last line about one,
    /// and when that line was written.
    pub(super) accept_failures: Cell<(u64, Option<std::time::Instant>)>,
    /// The most connections open at once since the heap was last
    /// trimmed (`WorkerRt::trim_after_a_fall`).
    pub(super) conn_peak: Cell<usize>,
    /// The connections open at the previous sweep: a fall still going on
    /// is trimmed after it, not half way through.
    pub(super) conn_swept: Cell<usize>,
    next_conn_id: Cell<u64>,
    /// Read buffers of connections that went idle.
    pub read_buffers: ReadBuffers,
    /// What the plugins' constructors warned about (`PluginInit::warn`).
    pub plugin_warnings: Vec<String>,
}

impl WorkerRt {
    /// Instantiate every plugin of `config` and precompute the chains.
    /// `listeners` are the configured addresses of the sockets, in the order
    /// their accept loops will be started.
    pub fn new(
        config: Arc<Config>,
        catalog: &Catalog,
        listeners: &[SocketAddr],
    ) -> Result<WorkerRt, Vec<String>> {
        let place = super::worker_place();
        let (generation, respawned) = super::worker_generation();
        // Claimed before the plugins are built, so that they may register
        // gauges.
        let metrics = Slot::claim(&config, generation, place.0, respawned);
        let mut all: Built = HashMap::new();
        let mut plugins = Vec::new();
        // Every plugin is built, so that all their errors are reported at
        // once, as the loader reports the config's.
        let mut errors = Vec::new();
        let warnings = RefCell::new(Vec::new());
        for (index, name) in config.plugins.iter().enumerate() {
            let init = PluginInit {
                config: &config,
                name,
                warnings: &warnings,
            };
            match catalog.create(name, &init) {
                Ok(plugin) => {
                    plugins.push(plugin.clone());
                    all.insert(name.clone(), (plugin, index as u16));
                }
                Err(e) => errors.push(format!("plugin `{name}`: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let servers: Vec<ServerRt> = config
            .servers
            .iter()
            .map(|server| ServerRt::new(server, &all, metrics))
            .collect();
        let listener_servers = listeners
            .iter()
            .map(|addr| {
                config
                    .servers
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.listen.contains(addr))
                    .map(|(i, _)| i)
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        let listener_proxy = listeners
            .iter()
            .map(|addr| {
                config
                    .servers
                    .iter()
                    .any(|s| s.proxy_protocol.contains(addr))
            })
            .collect();
        if let Some(pos) = listener_servers.iter().position(|s| s.is_empty()) {
            return Err(vec![format!("no <Server> listens on {}", listeners[pos])]);
        }
        // The global scope as a node of its own, for what runs before a
        // Server is known.
        let global_node = LocationNode {
            prefix: String::new(),
            file: Arc::from(""),
            line: 0,
            config: config.global.clone(),
            plugins: config.global_plugins.clone(),
            scope_starts: vec![0],
        };
        let global = Rc::new(LocationRt::new(&global_node, &all, 0));
        let log_level = *config.global.get(&core::LOG_LEVEL);
        // The console may turn LogLevel to debug at run time (through
        // the metrics region), which traces every request.
        let tracing = log_level >= Level::Debug
            || metrics.is_some()
            || servers
                .iter()
                .any(|s| !s.trace_from.is_empty() || s.locations.iter().any(|l| l.trace));
        let max_connections = Descriptors::of(&config).max_connections;
        let crowded = if super::master::worker_count(&config) > 1 {
            max_connections - max_connections / 8
        } else {
            usize::MAX
        };
        Ok(WorkerRt {
            config,
            servers,
            global,
            plugins,
            listener_servers,
            listener_proxy,
            log_level,
            tracing,
            metrics,
            generation,
            place,
            shutting_down: Cell::new(false),
            shutdown: Notify::new(),
            idle: IdleWaits::new(),
            parking: Parking::new().ok(),
            active: Cell::new(0),
            max_connections: Cell::new(max_connections),
            crowded: Cell::new(crowded),
            configured: (max_connections, crowded),
            short_of_fds: Cell::new(None),
            room: Notify::new(),
            reclaimable: Reclaimable::default(),
            reclaimed: Cell::new((0, 0, None)),
            accept_failures: Cell::new((0, None)),
            conn_peak: Cell::new(0),
            conn_swept: Cell::new(0),
            next_conn_id: Cell::new(1),
            read_buffers: ReadBuffers::default(),
            plugin_warnings: warnings.into_inner(),
        })
    }

    /// The plugins' view of this worker (`Plugin::worker_start`,
    /// `Context::worker`).
    pub fn view(self: &Rc<Self>) -> crate::plugin::Worker {
        crate::plugin::Worker {
            rt: Rc::downgrade(self),
            index: self.place.0,
            count: self.place.1,
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        let id = self.next_conn_id.get();
        self.next_conn_id.set(id + 1);
        id
    }

    /// A log line not tied to a request.
    pub fn log(&self, level: Level, message: &str) {
        self.log_via(&self.global, level, message, None);
    }

    /// Send a log line through the `logging` hooks of `location`'s chain
    /// (see [`hooks::run_logging`]); without any sink in the chain, lines
    /// go to stderr so that nothing is lost.
    pub fn log_via(
        &self,
        location: &LocationRt,
        level: Level,
        message: &str,
        peer: Option<SocketAddr>,
    ) {
        if level > self.log_level() {
            return;
        }
        self.log_always(location, level, message, peer);
    }

    /// As [`log_via`](Self::log_via), whatever `LogLevel` says: a traced
    /// request's lines.
    pub fn log_always(
        &self,
        location: &LocationRt,
        level: Level,
        message: &str,
        peer: Option<SocketAddr>,
    ) {
        let chain = location.chain(Hook::Logging);
        if chain.is_empty() {
            crate::plugin::log_to_stderr(level, message);
            return;
        }
        hooks::run_logging(chain, level, message, peer);
    }

    /// `LogLevel`: the config's, unless the console changed it for every
    /// worker (`Worker::set_log_level`).
    pub fn log_level(&self) -> Level {
        self.metrics
            .and_then(|m| m.log_level())
            .unwrap_or(self.log_level)
    }

    pub fn reopen_logs(&self) {
        for plugin in &self.plugins {
            plugin.reopen_logs();
        }
    }

    /// Tell every plugin that the worker starts serving.
    pub fn worker_start(&self, worker: &crate::plugin::Worker) {
        for plugin in &self.plugins {
            plugin.worker_start(worker);
        }
    }

    /// The `<Server>` for a request on listener `listener`, by Host.
    pub fn pick_server(&self, listener: usize, head: &axkit_http::RequestHead) -> usize {
        let candidates = &self.listener_servers[listener];
        // The host is only looked at when there is a choice.
        if candidates.len() > 1 {
            if let Some(host) = head.host() {
                for &i in candidates {
                    if self.config.servers[i].matches_name(host) {
                        return i;
                    }
                }
            }
        }
        candidates[0]
    }

    /// The `<Location>` of `server` that the request's path falls in.
    pub fn pick_location(&self, server: usize, request: &Request) -> Rc<LocationRt> {
        let locations = &self.servers[server].locations;
        if locations.len() == 1 {
            return locations[0].clone();
        }
        let config = &self.config.servers[server];
        let node = config.location_for(request.decoded_path());
        let index = config
            .locations
            .iter()
            .position(|n| std::ptr::eq(n, node))
            .unwrap_or(0);
        locations[index].clone()
    }
}

/// The hooks that run only in the root chain of the first `<Server>` on
/// an address: no request has said yet which Server or Location a
/// connection is for.
const CONNECTION_HOOKS: [Hook; 3] = [Hook::Connect, Hook::PreRequest, Hook::Disconnect];

impl WorkerRt {
    /// Plugins loaded where none of their hooks ever runs, one message
    /// each (for `axkit --check`). The one case the config and the hook
    /// sets decide for sure: a plugin whose hooks are all connection hooks
    /// ([`CONNECTION_HOOKS`]), loaded in a `<Location>` or in a `<Server>`
    /// that is not the first on any of its addresses. (Whether a content
    /// plugin is shadowed by one before it that answers everything is
    /// decided per request, so it is not reported.)
    pub fn unreachable_plugins(&self) -> Vec<String> {
        let connection_only = |name: &str| {
            let i = self.config.plugins.iter().position(|p| p == name)?;
            let hooks: Vec<Hook> = Hook::ALL
                .into_iter()
                .filter(|&h| called_hooks(&*self.plugins[i]).contains(h))
                .collect();
            let only = !hooks.is_empty() && hooks.iter().all(|h| CONNECTION_HOOKS.contains(h));
            only.then(|| {
                hooks
                    .iter()
                    .map(|h| h.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        };
        let first_on = |addr: &SocketAddr| {
            self.config
                .servers
                .iter()
                .position(|s| s.listen.contains(addr))
        };
        let mut out = Vec::new();
        for (index, server) in self.config.servers.iter().enumerate() {
            let first_somewhere = server.listen.iter().any(|a| first_on(a) == Some(index));
            for (n, node) in server.locations.iter().enumerate() {
                // The node's own `Plugin` lines: its last scope group.
                let own = node
                    .scope_starts
                    .last()
                    .map_or(&node.plugins[..], |&s| &node.plugins[s..]);
                for name in own {
                    let Some(hooks) = connection_only(name) else {
                        continue;
                    };
                    let (place, why) = if n > 0 {
                        (
                            format!(
                                "<Location {}> of the <Server> at {}:{}",
                                node.prefix, server.file, server.line
                            ),
                            "they run in the Server's own chain, not a Location's".to_string(),
                        )
                    } else if !first_somewhere {
                        let addr = server.listen.iter().find_map(|a| {
                            let first = &self.config.servers[first_on(a)?];
                            Some(format!(
                                "{a} is the <Server> at {}:{}",
                                first.file, first.line
                            ))
                        });
                        (
                            format!("the <Server> at {}:{}", server.file, server.line),
                            format!(
                                "they run for the first <Server> on an address, and the first on {}",
                                addr.unwrap_or_default()
                            ),
                        )
                    } else {
                        continue;
                    };
                    out.push(format!(
                        "plugin `{name}` in {place} is never called: it implements only connection hooks ({hooks}), and {why}"
                    ));
                }
            }
        }
        out
    }
}

/// An internal redirect a hook asked for (`walk::follow_redirects`).
pub(crate) struct Redirect {
    /// The local URI to walk, with its query.
    pub target: String,
    /// The status the final response must carry (ErrorDocument), if any.
    pub status: Option<u16>,
    /// The request goes on as it is, with another URI (its method, body
    /// and notes), rather than as a fresh GET.
    pub same_request: bool,
}

/// The server's side of one request: what the walk and the I/O behind
/// `Context`'s methods need. A [`Context`](crate::plugin::Context) holds
/// one, and plugins cannot reach into it.
pub(crate) struct RequestRt {
    /// The connection, lent to the request for its duration.
    pub io: Box<ConnIo>,
    pub location: Rc<LocationRt>,
    pub worker: Rc<WorkerRt>,
    /// Index of the `<Server>` that took the request.
    pub server: usize,
    /// An internal redirect asked for by a hook.
    pub redirect: Option<Redirect>,
    /// The status an internal redirect imposed on this response.
    pub status_override: Option<u16>,
    /// The fields of the error response that an ErrorDocument's page
    /// replaced which still hold for it (a challenge, `Allow`…; see
    /// `walk::ERROR_FIELDS`), added to the page's when it goes out with
    /// that status (Apache's `err_headers_out`). None for every other
    /// response.
    pub error_headers: Option<Headers>,
    /// The plugin that answered, for the metrics: its index in
    /// `Config::plugins` plus one; 0 for none (the core answered).
    pub answered: u16,
    /// The request as the client sent it, once an internal redirect has
    /// put another in `Context::request` (boxed: rare, and a Context is
    /// built for every request).
    pub original: Option<Box<Request>>,
    /// The level of this request's trace lines, when it is traced (see
    /// `trace.rs`).
    pub trace: Option<Level>,
    /// The `before_head` hook has run for this response (it runs once,
    /// whichever way the head goes out first).
    pub head_hook_ran: bool,
    /// The answer a hook left for after `fixup`
    /// (`Context::answer_after_fixup`).
    pub after_fixup: Option<fn(&mut Context) -> Outcome>,
    /// Where the request has been, once it has moved between Locations
    /// or hooks have read its body; None until then (boxed: rare, and a
    /// `RequestRt` is built and moved for every request).
    pub moved: Option<Box<Moved>>,
    /// The index of the last plugin this walk's first `post_read_request`
    /// chain called before the request moved, if it called any
    /// (`walk::first_post_read`): an internal redirect notes the calls of
    /// an unmoved walk from it.
    pub post_read_upto: Option<u16>,
}

/// Where a request has been ([`RequestRt::moved`]).
#[derive(Default)]
pub(crate) struct Moved {
    /// The Location whose `body_data` hooks read the request body, which
    /// a hand-off to another Location must not lose (`walk::body_lost`).
    pub body_read_in: Option<Rc<LocationRt>>,
    /// The Locations whose `post_read_request` chains ran for the request
    /// since its walk from the start, in order, once it has entered more
    /// than one (by `Context::rewrite_uri` or a hand-off); empty until
    /// then. A plugin in one of those chains has run `post_read_request`
    /// (`walk::post_read_elsewhere`).
    pub post_read_in: Vec<Rc<LocationRt>>,
    /// Each `post_read_request` or `post_read_request_handed_over` call
    /// of a plugin (by its index in `Config::plugins`) with the Location
    /// the request was in as it was called, whose lines the plugin took
    /// up then, in order: those of the first chain, before the request
    /// moved, filled in as it moves (`RequestRt::note_first_calls`), and
    /// those of the walks before an internal redirect
    /// (`RequestRt::calls_so_far`). For `HandOff::taken_up`.
    pub post_read_calls: Vec<(u16, Rc<LocationRt>)>,
}

impl RequestRt {
    #[inline]
    pub fn new(
        io: Box<ConnIo>,
        worker: Rc<WorkerRt>,
        server: usize,
        location: Rc<LocationRt>,
    ) -> RequestRt {
        RequestRt {
            io,
            location,
            worker,
            server,
            redirect: None,
            status_override: None,
            error_headers: None,
            answered: 0,
            original: None,
            trace: None,
            head_hook_ran: false,
            after_fixup: None,
            moved: None,
            post_read_upto: None,
        }
    }

    /// Note in `Moved::post_read_in` that the `post_read_request` chain
    /// of `location` ran, unless it was the last noted.
    pub fn note_post_read_in(&mut self, location: Rc<LocationRt>) {
        let last = self.post_read_in().last();
        if !last.is_some_and(|last| Rc::ptr_eq(last, &location)) {
            self.moved_mut().post_read_in.push(location);
        }
    }

    /// Note in `Moved::post_read_calls` the calls of the
    /// `post_read_request` chain of `first`, the Location the request
    /// started in, made before it first moved: up to the plugin of index
    /// `last`, the one that moved it, or the whole chain (a hand-off).
    pub fn note_first_calls(&mut self, first: &Rc<LocationRt>, last: Option<u16>) {
        let chain = first.chain(Hook::PostReadRequest);
        let upto = last.map_or(chain.len(), |last| {
            chain
                .iter()
                .position(|entry| entry.2 == last)
                .map_or(0, |at| at + 1)
        });
        let calls = chain[..upto].iter().map(|entry| (entry.2, first.clone()));
        self.moved_mut().post_read_calls.extend(calls);
    }

    /// Every `post_read_request` call made for the client request so far,
    /// this walk's included, as `Moved::post_read_calls` holds them, for
    /// the walk an internal redirect begins.
    pub fn calls_so_far(&mut self) -> Vec<(u16, Rc<LocationRt>)> {
        if let (true, Some(last)) = (self.post_read_in().is_empty(), self.post_read_upto) {
            let here = self.location.clone();
            self.note_first_calls(&here, Some(last));
        }
        self.post_read_upto = None;
        self.moved
            .take()
            .map(|moved| moved.post_read_calls)
            .unwrap_or_default()
    }

    /// `Moved::post_read_in`: empty for a request that never left its
    /// first Location.
    pub fn post_read_in(&self) -> &[Rc<LocationRt>] {
        self.moved.as_ref().map_or(&[], |m| &m.post_read_in)
    }

    /// `Moved::post_read_calls`.
    pub fn post_read_calls(&self) -> &[(u16, Rc<LocationRt>)] {
        self.moved.as_ref().map_or(&[], |m| &m.post_read_calls)
    }

    /// `Moved::body_read_in`.
    pub fn body_read_in(&self) -> Option<&LocationRt> {
        self.moved.as_ref()?.body_read_in.as_deref()
    }

    /// The record of where the request has been, made on first use.
    pub fn moved_mut(&mut self) -> &mut Moved {
        self.moved.get_or_insert_with(Default::default)
    }

    /// The merged config of the request's Location.
    pub fn config(&self) -> &LocationConfig {
        &self.location.config
    }

    /// The prefix of the request's Location.
    pub fn prefix(&self) -> &str {
        &self.location.prefix
    }

    /// Serve `uri` instead, once the current hook returns.
    pub fn redirect_to(&mut self, uri: &str, status: Option<u16>, same_request: bool) {
        self.redirect = Some(Redirect {
            target: uri.to_string(),
            status,
            same_request,
        });
    }

    /// The request the client sent, when an internal redirect replaced it.
    pub fn original(&self) -> Option<&Request> {
        self.original.as_deref()
    }

    pub fn head_sent(&self) -> bool {
        self.io.head_sent
    }

    pub fn body_bytes_sent(&self) -> u64 {
        self.io.body_bytes_sent
    }

    /// The `TrustedProxy` setting of the request's `<Server>`.
    pub fn trust(&self) -> Option<&Trust> {
        self.worker.servers[self.server].trust.as_ref()
    }

    /// The `<Server>` that took the request.
    pub fn server_config(&self) -> &ServerConfig {
        &self.worker.config.servers[self.server]
    }

    /// Log through the `logging` hooks of the request's chain.
    pub fn log(&self, level: Level, message: &str, peer: SocketAddr) {
        self.worker
            .log_via(&self.location, level, message, Some(peer));
    }

    /// Where this request's log lines go, to keep after it is over.
    pub fn log_route(&self) -> LogRoute {
        LogRoute {
            worker: self.worker.clone(),
            location: self.location.clone(),
        }
    }
}

/// A request's `logging` chain, kept by a [`Logger`](crate::plugin::Logger)
/// beyond the request.
pub(crate) struct LogRoute {
    worker: Rc<WorkerRt>,
    location: Rc<LocationRt>,
}

impl LogRoute {
    pub fn log(&self, level: Level, message: &str, peer: SocketAddr) {
        self.worker
            .log_via(&self.location, level, message, Some(peer));
    }
}
