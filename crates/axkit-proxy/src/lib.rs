//! The `proxy` plugin: a reverse proxy that passes requests to an HTTP
//! upstream and its answers back, both bodies streamed with backpressure,
//! on `axkit-client`'s keep-alive connections (one pool per worker).
//! `docs/proxy.md` has an example per directive.
//!
//! Directives:
//! - `ProxyPass URL` in a `<Location>`: the Location's prefix maps to the
//!   URL's path (`<Location /app>` + `ProxyPass http://b:8080/x/` sends
//!   `/app/a?q` to `http://b:8080/x/a?q`), as Apache does. `ProxyPass
//!   /prefix URL` (in a `<Server>` or a `<Location>`) maps that prefix
//!   instead. Prefixes match whole path segments; the longest matching one
//!   wins (the innermost scope's on a tie). The path sent is the request's
//!   normalised path (what `<Location>` matching saw) re-encoded, so that
//!   `..` or `%2e%2e` cannot step out of the mapped prefix; the query goes
//!   as sent.
//!   The URL may be `upstream://NAME/PATH`: a server of the group
//!   `<Upstream NAME>` (global; see the `upstream` module: `Server
//!   HOST:PORT [weight=N]`, `Balance round-robin|least-conn|hash KEY`,
//!   `MaxFails`, `FailTimeout`, `HealthCheck /PATH INTERVAL`).
//!   A plugin that routes (a Lua script: `r:note("upstream", "pool-b")`)
//!   sets the `UPSTREAM_NOTE` before `response` to a group's name or a
//!   URL: the request goes there instead, its path mapped as the
//!   `ProxyPass` that matched says (a URL's path replacing the one of
//!   the `ProxyPass` URL). A note that is neither is a 502, logged.
//! - `ProxyPassReverse URL` (in a `<Location>`) or `ProxyPassReverse
//!   /PREFIX URL`: `Location`, `Content-Location` and `URI` response
//!   headers that start with the upstream URL get the client's prefix
//!   instead (the `reverse` module).
//! - `ProxyPreserveHost On|Off` (default Off): send the client's `Host`
//!   rather than the URL's.
//! - `ProxyTimeout DURATION`: the three timeouts below at once;
//!   `ProxyConnectTimeout` (default 10s), `ProxyReadTimeout` (each wait
//!   for the upstream's answer, default 60s), `ProxySendTimeout` (each
//!   write of the request to it, default 60s) each override it.
//! - `ProxyNextUpstreamTries N` (default 1): how many times a request
//!   may be sent when the upstream fails before its response head
//!   (refused, reset, timed out, malformed): only requests of an
//!   idempotent method (GET, HEAD, PUT, DELETE, OPTIONS, TRACE) without a
//!   body, so a POST is never sent twice.
//! - `ProxyUpgrade PROTOCOL…` (default `websocket`; `none`): the
//!   protocols a request may switch to; `h2c` is refused (its tunnel
//!   would carry HTTP/2 streams past every Location's rules).
//! - `ProxyKeepAlive COUNT` (global, default 32): idle connections each
//!   worker keeps per upstream (0: none).
//!
//! `https://` upstreams (a `ProxyPass` URL, or `Server https://HOST:PORT`
//! in an `<Upstream>`) are checked against the system's roots, the
//! `HttpClientCAFile`s and the `ProxyTrustedCA`s (global), their names
//! against the URL's host (sent as SNI); `ProxyVerify Off` (global) takes
//! any certificate. See the `trust` module.
//!
//! What is sent upstream: the request's headers less the hop-by-hop ones
//! (`Connection` and the headers it names, `Keep-Alive`, `TE`, `Trailer`,
//! `Transfer-Encoding`, `Upgrade`, `Proxy-*`), `Expect` (the core has
//! answered it) and header values that are not UTF-8; the body framed as
//! the core decoded it (`Content-Length`, else chunked: never both, and a
//! body that ends early or runs long closes the upstream connection
//! rather than reaching it framed two ways); `X-Forwarded-For`,
//! `Forwarded` and `X-Forwarded-Port` are appended to when the peer is a
//! `TrustedProxy` whose header family (`TrustedProxyHeader`) they are,
//! else replaced; `X-Forwarded-Proto` and `X-Forwarded-Host` say what the
//! client asked (`Context::client`); `Via: 1.x axkit` is appended.
//! A request that asks to switch protocols to one `ProxyUpgrade` lists
//! (default `websocket`; never `h2c`) is passed on with its `Upgrade`
//! (any other goes on as plain HTTP/1.1); when the upstream answers 101, the client's connection
//! switches too (`Context::upgrade`) and bytes are copied both ways until
//! either side closes, nothing moves either way for `ProxyReadTimeout`, or
//! the worker drains; a 101 that does not switch to a protocol the client
//! offered is a 502.
//! What comes back: the status and headers less the hop-by-hop ones and
//! the upstream's `Date` and `Server` (the core writes its own), `Via`
//! appended, and the body as it arrives: the head with the body, or its
//! first piece, when they came in one read, else at once (an upstream
//! that thinks before its body). An upstream that cannot be
//! reached or answers what is not HTTP is a 502, one that times out a 504,
//! each logged at level error with the reason (a body that fails before
//! the head went included); a failure once the head
//! has gone closes the client's connection, so that a cut body never
//! looks complete.

use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use axkit::config::core::{TRUSTED_PROXY, TRUSTED_PROXY_HEADER};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;

use axkit::config::{Args, Directive, Key, List, Scopes, ValueType};
use axkit::plugin::{out_of_line, BodyError, TrustedMap, Worker, UPSTREAM_NOTE};
use axkit::{hook, Context, HookFuture, Level, Outcome, Plugin, PluginInit, PluginSpec};
use axkit_client::{
    Body, Client, Error as ClientError, ErrorKind, LiteralName, Origin, Request, Response,
};
use axkit_http::same_field;
use bytes::Bytes;
use tokio::sync::{mpsc, Mutex};

use upstream::Group;

mod reverse;
mod trust;
mod tunnel;
mod upstream;

pub use trust::ProxySource;

/// The `proxy` plugin's spec, for `Server::plugin`.
pub const PROXY: PluginSpec = PluginSpec {
    name: "proxy",
    directives,
    create,
};

/// One `ProxyPass` line.
#[derive(Clone, Debug)]
struct Pass {
    /// `None`: the Location's own prefix.
    prefix: Option<String>,
    /// Where it sends requests, parsed once.
    to: To,
    /// The URL's path (`/` when it has none), as written (encoded).
    path: String,
}

/// Where a request goes.
#[derive(Clone, Debug)]
enum To {
    /// `http://host:port` or `https://…`.
    Origin(Origin),
    /// `upstream://NAME`: a server of that group. Shared, so that each
    /// `ProxyPass` line's name keeps one address ([`line_key`]).
    Group(Arc<str>),
    /// What an `UPSTREAM_NOTE` said, naming nothing usable.
    Invalid(String),
}

static PASS: List<Pass> = List::parsed("ProxyPass", parse_pass)
    .args(Args::Range(1, 2))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("ProxyPass URL (a Location's prefix maps to the URL's path) or ProxyPass /PREFIX URL: send matching requests to an HTTP upstream");

static PRESERVE_HOST: Key<bool> = Key::new("ProxyPreserveHost")
    .scopes(Scopes::GLOBAL.or(Scopes::SERVER).or(Scopes::LOCATION))
    .doc("Send the client's Host header upstream rather than the ProxyPass URL's host");

static TIMEOUT: Key<Option<Duration>> = Key::new("ProxyTimeout")
    .nonzero()
    .doc("The connect, read and send timeouts of ProxyConnectTimeout, ProxyReadTimeout and ProxySendTimeout at once (above 0)");

static CONNECT_TIMEOUT: Key<Option<Duration>> = Key::new("ProxyConnectTimeout")
    .nonzero()
    .doc("How long connecting to an upstream may take (above 0; default 10s, or ProxyTimeout)");

static READ_TIMEOUT: Key<Option<Duration>> = Key::new("ProxyReadTimeout").nonzero().doc(
    "How long each wait for the upstream's response head or body may take (above 0; default 60s, or ProxyTimeout)",
);

static SEND_TIMEOUT: Key<Option<Duration>> = Key::new("ProxySendTimeout").nonzero().doc(
    "How long each write of the request to the upstream may wait (above 0; default 60s, or ProxyTimeout)",
);

static TRIES: Key<usize> = Key::new("ProxyNextUpstreamTries")
    .default("1")
    .doc("How many times a request may be sent upstream when it fails before a response: only idempotent methods without a body (never a POST); 1: no retry");

static UPGRADE: Key<Vec<String>> = Key::parsed("ProxyUpgrade", parse_upgrade)
    .args(Args::Many)
    .default("websocket")
    .doc("The protocols a request may switch to through the proxy (Upgrade), tunnelled once the upstream answers 101; other Upgrade requests go on as plain HTTP/1.1 (`none`: no tunnels; h2c is refused)");

/// `ProxyUpgrade PROTOCOL…`, lower-cased; `none` alone for no tunnel.
fn parse_upgrade(args: &[&str]) -> Result<Vec<String>, String> {
    if let [none] = args {
        if none.eq_ignore_ascii_case("none") {
            return Ok(Vec::new());
        }
    }
    args.iter()
        .map(|p| {
            if p.eq_ignore_ascii_case("h2c") {
                // RFC 9113 deprecates it, and the tunnel would carry every
                // later stream past this proxy's per-request rules.
                return Err("h2c is not tunnelled: HTTP/2 streams inside it would pass every                             Location's rules unseen (RFC 9113 deprecates the h2c upgrade)"
                    .to_string());
            }
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                return Err(format!("expected a protocol name (a token), got {p:?}"));
            }
            Ok(p.to_ascii_lowercase())
        })
        .collect()
}

static KEEP_ALIVE: Key<usize> = Key::new("ProxyKeepAlive")
    .scopes(Scopes::GLOBAL)
    .default("32")
    .doc("Idle keep-alive connections each worker keeps per upstream (0: none)");

const DEFAULT_CONNECT: Duration = Duration::from_secs(10);
const DEFAULT_IO: Duration = Duration::from_secs(60);
/// How long an idle upstream connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The name of the `<Upstream NAME>` block.
pub(crate) const UPSTREAM_BLOCK: &str = "Upstream";

fn directives() -> Vec<Directive> {
    vec![
        Directive::new(UPSTREAM_BLOCK, ValueType::String)
            .args(Args::Block)
            .scopes(Scopes::GLOBAL)
            .doc("<Upstream NAME> Server [https://]HOST:PORT [weight=N]… Balance round-robin|least-conn|hash KEY, MaxFails, FailTimeout, HealthCheck /PATH INTERVAL </Upstream>: a group of servers for ProxyPass upstream://NAME/PATH"),
        PASS.declare(),
        reverse::REVERSE.declare(),
        trust::TRUSTED_CA.declare(),
        trust::VERIFY.declare(),
        PRESERVE_HOST.declare(),
        TIMEOUT.declare(),
        CONNECT_TIMEOUT.declare(),
        READ_TIMEOUT.declare(),
        SEND_TIMEOUT.declare(),
        TRIES.declare(),
        UPGRADE.declare(),
        KEEP_ALIVE.declare(),
    ]
}

fn parse_pass(args: &[&str]) -> Result<Pass, String> {
    let (prefix, url) = prefix_and_url(args, "ProxyPass")?;
    let (to, path) = split_url(url)?;
    Ok(Pass { prefix, to, path })
}

/// The arguments of `DIRECTIVE URL` or `DIRECTIVE /PREFIX URL`: the
/// prefix, if given, and the URL.
fn prefix_and_url<'a>(
    args: &[&'a str],
    directive: &str,
) -> Result<(Option<String>, &'a str), String> {
    match args {
        [url] => Ok((None, url)),
        [prefix, url] if prefix.starts_with('/') => Ok((Some(prefix.to_string()), url)),
        [prefix, _] => Err(format!("the prefix must start with /, got {prefix:?}")),
        _ => Err(format!(
            "expected {directive} URL or {directive} /PREFIX URL"
        )),
    }
}

/// `http://host:port/path` into its origin and `/path`, checked as the
/// client will take it.
fn split_url(url: &str) -> Result<(To, String), String> {
    if let Some(rest) = url.strip_prefix("upstream://") {
        let (name, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if name.is_empty() || rest.contains(['?', '#']) {
            return Err(format!("expected upstream://NAME/PATH, got {url:?}"));
        }
        let path = if path.is_empty() { "/" } else { path };
        return Ok((To::Group(name.into()), path.to_string()));
    }
    Request::get(url).map_err(|e| e.to_string())?;
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("expected an http:// or https:// URL, got {url:?}"));
    };
    if rest.contains(['?', '#']) {
        return Err(format!(
            "a ProxyPass URL has no query or fragment, got {url:?}"
        ));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let origin = Origin::parse(&format!("{scheme}://{authority}")).map_err(|e| e.to_string())?;
    Ok((To::Origin(origin), path.to_string()))
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let idle = *init.config.global.get(&KEEP_ALIVE);
    let groups = upstream::groups(init.config)?;
    let mut by_line = TrustedMap::default();
    for server in &init.config.servers {
        for location in &server.locations {
            for (pass, setting) in location
                .config
                .list(&PASS)
                .iter()
                .zip(location.config.settings(PASS.name()))
            {
                if let To::Group(name) = &pass.to {
                    let Some(group) = groups.get(&**name) else {
                        return Err(format!(
                            "{}:{}: ProxyPass: no <Upstream {name}> in the config",
                            setting.file, setting.line
                        ));
                    };
                    by_line.insert(line_key(name), group.clone());
                }
            }
        }
    }
    let reversed = reverse::resolve(init.config, &groups)?;
    Ok(Rc::new(Proxy {
        // The worker's trust (`HttpClientCAFile`) and the proxy's own, a
        // pool of its own.
        client: trust::client(init.config, idle, IDLE_TIMEOUT)?,
        groups,
        by_line,
        reversed,
        scratch: RefCell::new(Scratch {
            value: String::with_capacity(128),
            peer: None,
            peer_text: String::new(),
        }),
    }))
}

/// The plugin: one per worker, with the worker's pool of upstream
/// connections and its view of the upstream groups.
struct Proxy {
    client: Client,
    groups: HashMap<String, Rc<Group>>,
    /// The group of each `ProxyPass upstream://NAME` line ([`line_key`]):
    /// a request only looks a name up when a plugin routed it by one.
    by_line: TrustedMap<usize, Rc<Group>>,
    /// Every Location's `ProxyPassReverse` lines, resolved.
    reversed: reverse::Reversed,
    /// Where the forwarding headers' values are made, one request at a
    /// time (no await while it is borrowed).
    scratch: RefCell<Scratch>,
}

/// The worker's room for the forwarding headers' values.
struct Scratch {
    /// The value being made.
    value: String,
    /// The last client address forwarded, and `peer_text` its text: made
    /// again only for another address (behind a load balancer, or on a
    /// keep-alive connection, a request's client is mostly the previous
    /// one's).
    peer: Option<IpAddr>,
    peer_text: String,
}

#[axkit::plugin]
impl Plugin for Proxy {
    fn response<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        let Some(target) = upstream_url(ctx) else {
            return Outcome::Declined.into();
        };
        hook(self.forward(ctx, target))
    }

    fn worker_start(&self, worker: &Worker) {
        for group in self.groups.values() {
            group.start_checks(worker, &self.client);
        }
    }
}

/// The upstream URL for this request: the `ProxyPass` whose prefix is the
/// longest to match the request's normalised path.
fn upstream_url(ctx: &Context) -> Option<Target> {
    let path = ctx.request.decoded_path();
    let location = ctx.location_prefix();
    let mut best: Option<(&Pass, &str)> = None;
    for pass in ctx.config().list(&PASS) {
        let prefix = pass.prefix.as_deref().unwrap_or(location);
        if under(path, prefix) && best.is_none_or(|(_, b)| prefix.len() >= b.len()) {
            best = Some((pass, prefix));
        }
    }
    let (pass, prefix) = best?;
    // A plugin that routes names the group, or a URL, instead.
    let routed = ctx.notes.get(UPSTREAM_NOTE).map(|note| routed(note));
    let (to, base) = match routed {
        Some((to, base)) => (to, base),
        None => (pass.to.clone(), Cow::Borrowed(pass.path.as_str())),
    };
    let rest = &path[prefix.len().min(path.len())..];
    let mut url = String::with_capacity(base.len() + rest.len() + 16);
    url.push_str(&base);
    let rest = match (base.ends_with('/'), rest.strip_prefix('/')) {
        (true, Some(r)) => r,
        _ => rest,
    };
    url.extend(axkit_http::encode_path(rest));
    if let Some(query) = ctx.request.query() {
        url.push('?');
        // A `#` would end the URL the client parses.
        match query.contains('#') {
            true => url.push_str(&query.replace('#', "%23")),
            false => url.push_str(query),
        }
    }
    Some(Target { to, path: url })
}

/// What an `UPSTREAM_NOTE` names: a URL (`http://host:port/base`, whose
/// path replaces the `ProxyPass` URL's), else a group; with the path to
/// map to. A note that is neither is [`To::Invalid`].
fn routed(note: &str) -> (To, Cow<'static, str>) {
    if note.contains("://") {
        return match split_url(note) {
            Ok((to, base)) => (to, Cow::Owned(base)),
            Err(_) => (To::Invalid(note.to_string()), Cow::Borrowed("/")),
        };
    }
    (To::Group(note.into()), Cow::Borrowed("/"))
}

/// A `ProxyPass` line's key among the groups: the address of its name in
/// the frozen config, which its requests' targets share (a name a plugin
/// routed by is another allocation, and found by name).
fn line_key(name: &Arc<str>) -> usize {
    Arc::as_ptr(name) as *const u8 as usize
}

/// Where a request goes, and the path and query sent there.
struct Target {
    to: To,
    path: String,
}

/// `origin` and `path` as one URL, for a log line.
fn url_of(origin: &impl std::fmt::Display, path: &str) -> String {
    format!("{origin}{path}")
}

/// Whether `path` lies under `prefix`, by whole segments.
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// The header names a `Connection` header's value lists, lower-cased.
fn connection_tokens(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
}

fn join(old: Option<String>, new: &str) -> String {
    match old {
        Some(old) if !old.trim().is_empty() => format!("{old}, {new}"),
        _ => new.to_string(),
    }
}

/// `old, new` into `out` (emptied first), or `new` alone when there is no
/// `old` or it is blank.
fn join_into(out: &mut String, old: Option<&str>, new: &str) {
    out.clear();
    if let Some(old) = old.filter(|o| !o.trim().is_empty()) {
        out.push_str(old);
        out.push_str(", ");
    }
    out.push_str(new);
}

/// `ip` onto `out` as `Display` writes it; an IPv4 address by hand, as
/// `Display` takes several times longer (it pads).
fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// A `Forwarded` node or host onto `out`: a token, or else a quoted
/// string.
fn forwarded_value(out: &mut String, text: &str) {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !text.is_empty() && text.bytes().all(token) {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// The fields the proxy adds to an upstream request, names checked at
/// compile time.
const X_FORWARDED_FOR: LiteralName = LiteralName::new("X-Forwarded-For");
const X_FORWARDED_PORT: LiteralName = LiteralName::new("X-Forwarded-Port");
const X_FORWARDED_PROTO: LiteralName = LiteralName::new("X-Forwarded-Proto");
const X_FORWARDED_HOST: LiteralName = LiteralName::new("X-Forwarded-Host");
const FORWARDED: LiteralName = LiteralName::new("Forwarded");
const VIA: LiteralName = LiteralName::new("Via");

/// Add the headers sent upstream to `request`: the client's less the
/// hop-by-hop ones and those its `Connection` lists (`named`), its `Host`
/// only when preserved; then the forwarding headers, their values made in
/// `scratch` (the worker's, reused). Each goes straight into the request's
/// one buffer.
fn upstream_headers(ctx: &Context, named: &[String], request: &mut Request, scratch: &mut Scratch) {
    let incoming = &ctx.request;
    let peer = ctx.conn.client().ip();
    let config = ctx.config();
    let trusted = config
        .list(&TRUSTED_PROXY)
        .iter()
        .flatten()
        .any(|net| net.contains(peer));
    // Which family a trusted peer's headers are (read only for one).
    let family_forwarded = trusted && config.get(&TRUSTED_PROXY_HEADER) == "Forwarded";
    let preserve_host = *config.get(&PRESERVE_HOST);
    // Values of the forwarding headers appended to, when trusted.
    let mut xff = None;
    let mut forwarded = None;
    let mut xfport = None;
    let mut via = None;
    let mut host = None;
    let all = |old: &mut Option<String>, v: &str| *old = Some(join(old.take(), v));
    for (name, bytes) in incoming.headers() {
        let is = |h: &str| name.eq_ignore_ascii_case(h);
        // Most fields go on as received; those whose values are read
        // here must be text.
        let passed = !(is("x-forwarded-for")
            || is("x-forwarded-port")
            || is("forwarded")
            || is("via")
            || is("host"));
        if passed {
            // `HTTP2-Settings` belongs to an h2c upgrade of the client's
            // own connection (RFC 9113 §3.1 deprecates it), never
            // tunnelled: it is connection-specific whether or not the
            // client named it in `Connection`.
            if !(is("expect")
                || is("x-forwarded-proto")
                || is("x-forwarded-host")
                || is("http2-settings")
                || axkit_http::hop_by_hop(name)
                || named.iter().any(|t| t.eq_ignore_ascii_case(name)))
            {
                request.add_header_bytes(name, bytes);
            }
            continue;
        }
        let Ok(value) = std::str::from_utf8(bytes) else {
            continue;
        };
        if is("x-forwarded-for") || is("x-forwarded-port") {
            if trusted && !family_forwarded {
                all(
                    if is("x-forwarded-for") {
                        &mut xff
                    } else {
                        &mut xfport
                    },
                    value,
                );
            }
        } else if is("forwarded") {
            if trusted && family_forwarded {
                all(&mut forwarded, value);
            }
        } else if is("via") {
            all(&mut via, value);
        } else {
            // Host: the first, as `header("host")` would give it.
            host = host.or(Some(value));
            if preserve_host {
                request.add_header(name, value);
            }
        }
    }
    let via_self = match incoming.version() {
        axkit_http::Version::Http10 => "1.0 axkit",
        _ => "1.1 axkit",
    };
    if scratch.peer != Some(peer) {
        scratch.peer_text.clear();
        push_ip(&mut scratch.peer_text, peer);
        scratch.peer = Some(peer);
    }
    let Scratch {
        value: scratch,
        peer_text,
        ..
    } = scratch;
    join_into(scratch, xff.as_deref(), peer_text);
    request.add_header_literal(X_FORWARDED_FOR, scratch);
    if let Some(port) = &xfport {
        request.add_header_literal(X_FORWARDED_PORT, port);
    }
    let client = ctx.client();
    request.add_header_literal(X_FORWARDED_PROTO, client.scheme());
    if let Some(authority) = ctx.authority() {
        request.add_header_literal(X_FORWARDED_HOST, authority);
    }
    // for=NODE;host=HOST;proto=PROTO, a node's IPv6 address bracketed
    // (and so quoted).
    join_into(scratch, forwarded.as_deref(), "for=");
    match peer {
        IpAddr::V4(_) => scratch.push_str(peer_text),
        IpAddr::V6(v6) => {
            let _ = write!(scratch, "\"[{v6}]\"");
        }
    }
    if let Some(host) = host {
        scratch.push_str(";host=");
        forwarded_value(scratch, host);
    }
    // This hop's element: the scheme of the connection `for=` names (a
    // PROXY header's word included), as `X-Forwarded-Proto` gives the
    // client's.
    scratch.push_str(if ctx.conn.https() {
        ";proto=https"
    } else {
        ";proto=http"
    });
    request.add_header_literal(FORWARDED, scratch);
    join_into(scratch, via.as_deref(), via_self);
    request.add_header_literal(VIA, scratch);
}

/// The protocols a request asks to switch to that may be tunnelled
/// (`ProxyUpgrade`, in the client's order), when it may switch at all:
/// HTTP/1.1, `Connection: upgrade`, `Upgrade`, no body. None: the request
/// goes on as plain HTTP/1.1, its `Upgrade` dropped as a hop-by-hop field
/// (an `h2c` one, say, as Apache's mod_proxy_http does with whatever is
/// not `upgrade=websocket`).
fn wants_upgrade(ctx: &Context, incoming: &Incoming) -> Option<String> {
    let request = &ctx.request;
    let ok = incoming.named.iter().any(|t| t == "upgrade")
        && matches!(incoming.framing, Framing::None)
        && request.version() == axkit_http::Version::Http11;
    if !ok {
        return None;
    }
    let allowed = ctx.config().get(&UPGRADE);
    let asked = request.header("upgrade")?;
    let kept = asked
        .split(',')
        .map(str::trim)
        .filter(|p| {
            let name = p.split('/').next().unwrap_or("");
            allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .collect::<Vec<_>>();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// Whether the protocol a 101 switches to (its `Upgrade`, one protocol)
/// is one of those the client's `Upgrade` listed (RFC 9110 §7.8).
fn offered(asked: &str, switched: &str) -> bool {
    let switched = switched.trim();
    !switched.is_empty()
        && asked
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(switched))
}

/// The timeouts of one exchange.
struct Limits {
    connect: Duration,
    read: Duration,
    send: Duration,
}

/// Log that a group's server is now marked down after `e`.
#[cold]
#[inline(never)]
fn marked_down(ctx: &Context, group: &Group, index: usize, e: &ClientError) {
    let line = ctx.request.request_line();
    ctx.log(
        Level::Warn,
        &format!(
            "proxy: {line}: upstream {}: {} marked down: {e}",
            group.name, group.servers[index].authority
        ),
    );
}

/// The client closed its connection while the upstream had not answered:
/// the upstream's connection is dropped with the request, and the
/// answer is nginx's 499 for the access log (no one reads it).
#[cold]
#[inline(never)]
fn client_left(ctx: &Context, url: &str) -> Outcome {
    let line = ctx.request.request_line();
    ctx.log(
        Level::Info,
        &format!("proxy: {line}: upstream {url}: the client went away before the answer (499)"),
    );
    Outcome::Status(499)
}

/// Log that a request to `url` failed with `e` and is sent again.
#[cold]
#[inline(never)]
fn trying_again(ctx: &Context, url: &str, e: &ClientError, attempt: usize, tries: usize) {
    let line = ctx.request.request_line();
    ctx.log(
        Level::Warn,
        &format!("proxy: {line}: upstream {url}: {e}: trying again ({attempt} of {tries} failed)"),
    );
}

/// Whether a method may be repeated without harm (RFC 9110 §9.2.2).
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

/// How the request body goes upstream: as the core decoded it.
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What the proxy needs of the client's request headers, found in one
/// pass over them (each pass makes a `str` of every name again).
struct Incoming {
    /// The header names its `Connection` headers list, lower-cased.
    named: Vec<String>,
    /// How its body goes upstream.
    framing: Framing,
}

impl Incoming {
    fn of(ctx: &Context) -> Incoming {
        let mut named = Vec::new();
        let mut chunked = false;
        let mut length = None;
        for (name, value) in ctx.request.headers() {
            if name.eq_ignore_ascii_case("connection") {
                if let Ok(value) = std::str::from_utf8(value) {
                    named.extend(connection_tokens(value));
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = true;
            } else if name.eq_ignore_ascii_case("content-length") && length.is_none() {
                length = Some(value);
            }
        }
        // As the core decoded the body (it refused a request framed two
        // ways, or with lengths that disagree).
        let length = length
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let framing = match (chunked, length) {
            (true, _) => Framing::Chunked,
            (false, Some(n)) if n > 0 => Framing::Length(n),
            _ => Framing::None,
        };
        Incoming { named, framing }
    }
}

/// Feed the request body into `tx` as it comes: one piece in flight, so
/// a fast client waits for a slow upstream. Returns the client's body
/// error, if any.
async fn pump(ctx: &mut Context, tx: mpsc::Sender<io::Result<Bytes>>) -> Option<BodyError> {
    loop {
        match ctx.read_body().await {
            Ok(Some(piece)) => {
                if tx.send(Ok(piece)).await.is_err() {
                    return None;
                }
            }
            Ok(None) => return None,
            Err(e) => {
                let _ = tx.send(Err(io::Error::other(e.reason))).await;
                return Some(e);
            }
        }
    }
}

/// The upstream's status and headers into the client's response, less
/// the hop-by-hop ones and its `Date` and `Server` (the core writes its
/// own), with `Via` appended and `ProxyPassReverse` applied. Its
/// `Content-Length` is passed on only when `length_needed`: a body sent
/// whole gets the core's own.
fn pass_headers(
    ctx: &mut Context,
    response: &Response,
    reversed: &reverse::Reversed,
    length_needed: bool,
) {
    ctx.response.status = response.status;
    // The head was flagged as it was parsed: most have neither field,
    // and are walked once.
    let mut named = Vec::new();
    if response.has_connection_field() {
        for (name, value) in response.headers() {
            if name.eq_ignore_ascii_case("connection") {
                named.extend(connection_tokens(value));
            }
        }
    }
    let chunked = response.has_transfer_encoding();
    let mut via: Option<String> = None;
    for (name, value) in response.headers() {
        let is = |h: &str| same_field(name, h);
        if is("Via") {
            via = Some(join(via, value));
        } else if is("Date") || is("Server") {
        } else if is("Content-Length") {
            // The client checked that every Content-Length agrees.
            if length_needed && !chunked {
                let n = value.split_once(',').map_or(value, |(n, _)| n).trim();
                ctx.response.headers.set("Content-Length", n.to_string());
            }
        } else if axkit_http::hop_by_hop(name) || named.iter().any(|t| t.eq_ignore_ascii_case(name))
        {
        } else {
            // A slice of the upstream's head: no copy, and no second
            // look at bytes its parser checked.
            ctx.response
                .headers
                .add(header_name(name), response.header_value(value));
        }
    }
    let via = match via {
        Some(via) => Cow::Owned(join(Some(via), "1.1 axkit")),
        None => Cow::Borrowed("1.1 axkit"),
    };
    ctx.response.headers.set("Via", via);
    reverse::rewrite(ctx, reversed);
}

/// A response header's name as the core keeps it: the usual ones as sent
/// by most servers need no copy.
fn header_name(name: &str) -> Cow<'static, str> {
    const USUAL: &[&str] = &[
        "Content-Type",
        "Last-Modified",
        "ETag",
        "Accept-Ranges",
        "Cache-Control",
        "Expires",
        "Vary",
        "Content-Encoding",
        "Content-Language",
        "Location",
        "Set-Cookie",
        "Age",
        "Content-Range",
        "content-type",
        "last-modified",
        "etag",
        "accept-ranges",
        "cache-control",
        "expires",
        "vary",
        "content-encoding",
        "location",
        "set-cookie",
    ];
    match USUAL.iter().find(|u| **u == name) {
        Some(usual) => Cow::Borrowed(usual),
        None => Cow::Owned(name.to_string()),
    }
}

impl Proxy {
    async fn forward(&self, ctx: &mut Context, target: Target) -> Outcome {
        let config = ctx.config();
        let all = *config.get(&TIMEOUT);
        let limits = Limits {
            connect: config
                .get(&CONNECT_TIMEOUT)
                .or(all)
                .unwrap_or(DEFAULT_CONNECT),
            read: config.get(&READ_TIMEOUT).or(all).unwrap_or(DEFAULT_IO),
            send: config.get(&SEND_TIMEOUT).or(all).unwrap_or(DEFAULT_IO),
        };
        let incoming = Incoming::of(ctx);
        let framing = &incoming.framing;
        // Only a request that can be sent again as it was, and whose
        // repetition does no harm: an idempotent method and no body (a
        // streamed body is gone once sent).
        let tries = match idempotent(ctx.request.method()) && matches!(framing, Framing::None) {
            true => (*config.get(&TRIES)).max(1),
            false => 1,
        };
        let group = match &target.to {
            To::Origin(_) => None,
            To::Group(name) => match self
                .by_line
                .get(&line_key(name))
                .or_else(|| self.groups.get(&**name))
            {
                Some(group) => Some(group.clone()),
                None => return self.unroutable(ctx, &target),
            },
            To::Invalid(_) => return self.unroutable(ctx, &target),
        };
        let upgrade = wants_upgrade(ctx, &incoming);
        let mut attempt = 1;
        let mut tried = Vec::new();
        let mut origin;
        // Held until the response is over: least-conn counts it.
        let mut _in_flight = None;
        // The response is moved as little as it can be (each move a
        // `memcpy` of a few hundred bytes): no tuple with the body error,
        // and out of the loop at once.
        let mut response = loop {
            let server = match (&group, &target.to) {
                (Some(group), _) => {
                    let (index, in_flight) = group.pick(ctx, &tried);
                    _in_flight = Some(in_flight);
                    origin = group.servers[index].origin.clone();
                    tried.push(index);
                    Some((group, index))
                }
                (None, To::Origin(o)) => {
                    origin = o.clone();
                    None
                }
                (None, _) => unreachable!("a target without a group is an origin"),
            };
            let mut body_error = None;
            let result = 'sent: {
                // Bound before the sending: a `match` on the result around
                // it would keep the result in the hook's future (allocated
                // per request) beside the sending's.
                let mut request = match self.request(ctx, &incoming, &origin, &target.path, &limits)
                {
                    Ok(request) => request,
                    Err(e) => break 'sent Err(e),
                };
                // Moved only when it asks for an upgrade (a few hundred
                // bytes each time).
                if let Some(protocol) = &upgrade {
                    request = request.upgrade(protocol.as_str());
                }
                match framing {
                    // Without a body to send, the client's close is seen
                    // while the upstream thinks (nginx's
                    // `proxy_ignore_client_abort off`): waiting on would
                    // hold both connections and a backend worker for up
                    // to ProxyReadTimeout for no one.
                    Framing::None => tokio::select! {
                        result = self.client.send(request) => result,
                        () = ctx.client_closed() => {
                            return client_left(ctx, &url_of(&origin, &target.path));
                        }
                    },
                    // Out of line: this future is large, and the hook's
                    // whole future (and its code) would be as large for
                    // every request.
                    _ => {
                        let (result, error) =
                            out_of_line(self.exchange(ctx, request, framing)).await;
                        body_error = error;
                        result
                    }
                }
            };
            if let Some((group, index)) = server {
                match &result {
                    Ok(_) => group.answered(index),
                    // The client's own failure says nothing of the server.
                    Err(_) if body_error.is_some() => {}
                    Err(e) => {
                        if group.failed(index) {
                            marked_down(ctx, group, index, e);
                        }
                    }
                }
            }
            match result {
                Ok(response) => break response,
                // A group's servers are each tried once.
                Err(e)
                    if attempt < tries
                        && e.kind() != ErrorKind::InvalidRequest
                        && group.as_ref().is_none_or(|g| tried.len() < g.servers.len()) =>
                {
                    trying_again(ctx, &url_of(&origin, &target.path), &e, attempt, tries);
                    attempt += 1;
                }
                Err(e) => {
                    let url = url_of(&origin, &target.path);
                    return self.exchange_failed(ctx, &url, e, body_error);
                }
            }
        };
        let url = || url_of(&origin, &target.path);
        if response.status == 101 {
            let protocol = response.header("upgrade").unwrap_or("").to_string();
            if !upgrade
                .as_deref()
                .is_some_and(|asked| offered(asked, &protocol))
            {
                let why = "101 without an Upgrade the client asked for";
                return self.failed(ctx, &url(), why, 502);
            }
            pass_headers(ctx, &response, &self.reversed, true);
            // Out of line, as the streamed body's exchange is.
            return out_of_line(self.tunnel(ctx, &url(), response, &protocol, limits.read)).await;
        }
        // A body already read off the connection (a small one, usually)
        // goes out with the head in one write, as a response made here
        // would; a response to HEAD keeps the upstream's Content-Length.
        let whole = response.body_done() && !ctx.request.is_head();
        pass_headers(ctx, &response, &self.reversed, !whole);
        if whole {
            let mut body = Bytes::new();
            // Read already: taken without a future of its own, which
            // would make the hook's (allocated per request) larger.
            loop {
                match response.try_chunk() {
                    Some(Ok(Some(piece))) if body.is_empty() => body = piece,
                    Some(Ok(Some(piece))) => body = [body, piece].concat().into(),
                    Some(Ok(None)) => break,
                    Some(Err(e)) => return self.body_failed(ctx, &url(), &e.to_string()),
                    None => return self.body_failed(ctx, &url(), "the body was not read"),
                }
            }
            ctx.response.body = axkit::plugin::Body::Bytes(body);
            return Outcome::Done;
        }
        // Out of line, as the streamed request body's exchange is.
        out_of_line(self.stream(ctx, &url(), response)).await
    }

    /// Send the response's head, then its body as it comes.
    async fn stream(&self, ctx: &mut Context, url: &str, mut response: Response) -> Outcome {
        // A piece read with the head leaves in one write with it; with
        // none at hand the head goes at once, as nginx sends it: an
        // upstream that thinks before its body (an event stream) must not
        // leave the client without a head meanwhile.
        let committed = match response.try_chunk() {
            // Commits the head even when no body follows (a HEAD's
            // length).
            Some(Ok(piece)) => {
                let last = piece.is_none();
                match ctx.write(piece.unwrap_or_default()).await {
                    Ok(()) if last => return Outcome::Done,
                    committed => committed,
                }
            }
            None => ctx.flush().await,
            // The head has not gone: the client gets a 502 rather than a
            // connection that closes without an answer.
            Some(Err(e)) => return self.body_failed(ctx, url, &e.to_string()),
        };
        if committed.is_err() {
            return Outcome::Done;
        }
        loop {
            match response.chunk().await {
                Ok(Some(piece)) => {
                    if ctx.write(piece).await.is_err() {
                        return Outcome::Done;
                    }
                }
                Ok(None) => return Outcome::Done,
                Err(e) => {
                    // The head has gone: the client's connection closes.
                    return self.failed(ctx, url, &e.to_string(), 502);
                }
            }
        }
    }

    /// The request for `path` at `origin`, with the client's headers and
    /// the exchange's timeouts (its body and upgrade still to add).
    fn request(
        &self,
        ctx: &Context,
        incoming: &Incoming,
        origin: &Origin,
        path: &str,
        limits: &Limits,
    ) -> Result<Request, ClientError> {
        let mut request = Request::to(ctx.request.method(), origin, path)?
            .connect_timeout(limits.connect)
            .read_timeout(limits.read)
            .send_timeout(limits.send)
            .max_size(None)
            .default_user_agent(false);
        let scratch = &mut self.scratch.borrow_mut();
        upstream_headers(ctx, &incoming.named, &mut request, scratch);
        Ok(request)
    }

    /// Send `request` with the client's body streamed up as it comes: the
    /// upstream's response head, and the client's body error when that is
    /// why it failed.
    async fn exchange(
        &self,
        ctx: &mut Context,
        mut request: Request,
        framing: &Framing,
    ) -> (Result<Response, ClientError>, Option<BodyError>) {
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(1);
        let rx = Rc::new(Mutex::new(rx));
        let next = move || {
            let rx = rx.clone();
            async move { rx.lock().await.recv().await.transpose() }
        };
        request = match framing {
            Framing::Length(n) => request.body(Body::sized(*n, next)),
            _ => request.body(Body::from_fn(next)),
        };
        let sent = self.client.send(request);
        tokio::pin!(sent);
        let pumping = pump(ctx, tx);
        tokio::pin!(pumping);
        let mut body_error = None;
        let mut pumped = false;
        loop {
            tokio::select! {
                result = &mut sent => return (result, body_error),
                e = &mut pumping, if !pumped => {
                    pumped = true;
                    body_error = e;
                }
            }
        }
    }

    /// The upstream switched protocols: switch the client's connection
    /// too, and copy bytes both ways until either side closes, nothing
    /// moves for `idle` (the read timeout), or the worker drains.
    async fn tunnel(
        &self,
        ctx: &mut Context,
        url: &str,
        response: Response,
        protocol: &str,
        idle: Duration,
    ) -> Outcome {
        let Some(mut upstream) = response.upgraded() else {
            return self.failed(ctx, url, "101 without a connection", 502);
        };
        let worker = ctx.worker();
        let logger = ctx.logger();
        let line = ctx.request.request_line();
        let mut client = match ctx.upgrade(protocol).await {
            Ok(client) => client,
            Err(e) => {
                logger.log(
                    Level::Error,
                    &format!("proxy: {line}: upstream {url}: switching protocols: {e}"),
                );
                // The 101 has not gone (or the connection closes): never
                // a bare 101 on a connection that stays HTTP.
                return Outcome::Status(502);
            }
        };
        if let tunnel::End::Idle = tunnel::join(&mut client, &mut upstream, idle, &worker).await {
            logger.log(
                Level::Info,
                &format!("proxy: {line}: upstream {url}: tunnel idle for {idle:?}, closed"),
            );
        }
        Outcome::Done
    }

    /// A target that names no upstream: a group that does not exist, or a
    /// note that is neither a URL nor a group (502, logged).
    #[cold]
    #[inline(never)]
    fn unroutable(&self, ctx: &Context, target: &Target) -> Outcome {
        let (url, why) = match &target.to {
            To::Invalid(note) => (
                format!("{note:?} (note {UPSTREAM_NOTE})"),
                "not an http:// or https:// URL nor a group name",
            ),
            To::Group(name) => (
                url_of(&format_args!("upstream://{name}"), &target.path),
                "no such upstream group",
            ),
            To::Origin(_) => unreachable!("an origin is always routable"),
        };
        self.failed(ctx, &url, why, 502)
    }

    /// The exchange failed: the client's body error when that is why (the
    /// core answers it), else 504 for a timeout and 502 for the rest,
    /// logged.
    #[cold]
    #[inline(never)]
    fn exchange_failed(
        &self,
        ctx: &Context,
        url: &str,
        e: ClientError,
        body_error: Option<BodyError>,
    ) -> Outcome {
        if let Some(body) = body_error {
            return body.into();
        }
        let status = match e.kind() {
            ErrorKind::Timeout => 504,
            _ => 502,
        };
        self.failed(ctx, url, &e.to_string(), status)
    }

    /// The upstream's body failed before the head went: a 502, without
    /// the upstream's headers, which describe a response the client never
    /// gets.
    #[cold]
    #[inline(never)]
    fn body_failed(&self, ctx: &mut Context, url: &str, why: &str) -> Outcome {
        ctx.response.headers.clear();
        self.failed(ctx, url, why, 502)
    }

    /// Log why the upstream failed and answer `status` (too late once the
    /// head has gone: the core then closes the connection). Out of line,
    /// as the other failures' paths, so that the usual request's code
    /// stays compact.
    #[cold]
    #[inline(never)]
    fn failed(&self, ctx: &Context, url: &str, why: &str, status: u16) -> Outcome {
        let line = ctx.request.request_line();
        ctx.log(
            Level::Error,
            &format!("proxy: {line}: upstream {url}: {why} ({status})"),
        );
        if ctx.head_sent() {
            return Outcome::Error(format!("upstream {url}: {why}"));
        }
        Outcome::Status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert!(under("/app", "/app"));
        assert!(under("/app/x", "/app"));
        assert!(!under("/application", "/app"));
        assert!(under("/app/x", "/app/"));
        assert!(under("/x", "/"));
    }

    #[test]
    fn urls() {
        let split = |url: &str| match split_url(url).unwrap() {
            (To::Origin(origin), path) => format!("{origin} {path}"),
            (To::Group(name), path) => format!("group {name} {path}"),
            (To::Invalid(note), _) => format!("invalid {note}"),
        };
        assert_eq!(split("http://b:81"), "http://b:81 /");
        assert_eq!(split("https://b/x/"), "https://b /x/");
        assert_eq!(split("upstream://g/y"), "group g /y");
        assert!(split_url("http://b/x?y").is_err());
        assert!(split_url("ftp://b/").is_err());
        assert!(parse_pass(&["app", "http://b/"]).is_err());
    }

    #[test]
    fn forwarded_values() {
        let value = |text: &str| {
            let mut out = String::new();
            forwarded_value(&mut out, text);
            out
        };
        assert_eq!(value("1.2.3.4"), "1.2.3.4");
        assert_eq!(value("[::1]"), "\"[::1]\"");
        assert_eq!(value("a:8\"0"), "\"a:8\\\"0\"");
        for ip in ["0.9.10.255", "100.1.20.3", "::1"] {
            let mut out = String::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip);
        }
        let mut out = String::from("stale");
        join_into(&mut out, Some(" "), "b");
        assert_eq!(out, "b");
        join_into(&mut out, Some("a"), "b");
        assert_eq!(out, "a, b");
    }
}
