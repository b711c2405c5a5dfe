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
//! A request that asks to switch protocols (a WebSocket) is passed on with
//! its `Upgrade`; when the upstream answers 101, the client's connection
//! switches too (`Context::upgrade`) and bytes are copied both ways until
//! either side closes, nothing moves either way for `ProxyReadTimeout`, or
//! the worker drains.
//! What comes back: the status and headers less the hop-by-hop ones and
//! the upstream's `Date` and `Server` (the core writes its own), `Via`
//! appended, and the body as it arrives. An upstream that cannot be
//! reached or answers what is not HTTP is a 502, one that times out a 504,
//! each logged at level error with the reason; a failure once the head
//! has gone closes the client's connection, so that a cut body never
//! looks complete.

use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use axkit::config::core::{TRUSTED_PROXY, TRUSTED_PROXY_HEADER};
use std::collections::HashMap;

use axkit::config::{Args, Directive, Key, List, Scopes, ValueType};
use axkit::plugin::{BodyError, Worker, UPSTREAM_NOTE};
use axkit::{hook, Context, HookFuture, Level, Outcome, Plugin, PluginInit, PluginSpec};
use axkit_client::{Body, Client, Error as ClientError, ErrorKind, Request, Response};
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
    /// `scheme://authority`, without a path.
    origin: String,
    /// The URL's path (`/` when it has none), as written (encoded).
    path: String,
}

static PASS: List<Pass> = List::parsed("ProxyPass", parse_pass)
    .args(Args::Range(1, 2))
    .scopes(Scopes::SERVER.or(Scopes::LOCATION))
    .doc("ProxyPass URL (a Location's prefix maps to the URL's path) or ProxyPass /PREFIX URL: send matching requests to an HTTP upstream");

static PRESERVE_HOST: Key<bool> = Key::new("ProxyPreserveHost")
    .scopes(Scopes::GLOBAL.or(Scopes::SERVER).or(Scopes::LOCATION))
    .doc("Send the client's Host header upstream rather than the ProxyPass URL's host");

static TIMEOUT: Key<Option<Duration>> = Key::new("ProxyTimeout")
    .doc("The connect, read and send timeouts of ProxyConnectTimeout, ProxyReadTimeout and ProxySendTimeout at once");

static CONNECT_TIMEOUT: Key<Option<Duration>> = Key::new("ProxyConnectTimeout")
    .doc("How long connecting to an upstream may take (default 10s, or ProxyTimeout)");

static READ_TIMEOUT: Key<Option<Duration>> = Key::new("ProxyReadTimeout").doc(
    "How long each wait for the upstream's response head or body may take (default 60s, or ProxyTimeout)",
);

static SEND_TIMEOUT: Key<Option<Duration>> = Key::new("ProxySendTimeout").doc(
    "How long each write of the request to the upstream may wait (default 60s, or ProxyTimeout)",
);

static TRIES: Key<usize> = Key::new("ProxyNextUpstreamTries")
    .default("1")
    .doc("How many times a request may be sent upstream when it fails before a response: only idempotent methods without a body (never a POST); 1: no retry");

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
        KEEP_ALIVE.declare(),
    ]
}

fn parse_pass(args: &[&str]) -> Result<Pass, String> {
    let (prefix, url) = prefix_and_url(args, "ProxyPass")?;
    let (origin, path) = split_url(url)?;
    Ok(Pass {
        prefix,
        origin,
        path,
    })
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

/// `http://host:port/path` into `http://host:port` and `/path`, checked
/// as the client will take it.
fn split_url(url: &str) -> Result<(String, String), String> {
    if let Some(rest) = url.strip_prefix("upstream://") {
        let (name, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if name.is_empty() || rest.contains(['?', '#']) {
            return Err(format!("expected upstream://NAME/PATH, got {url:?}"));
        }
        let path = if path.is_empty() { "/" } else { path };
        return Ok((format!("upstream://{name}"), path.to_string()));
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
    Ok((format!("{scheme}://{authority}"), path.to_string()))
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let idle = *init.config.global.get(&KEEP_ALIVE);
    let groups = upstream::groups(init.config)?;
    for server in &init.config.servers {
        for location in &server.locations {
            for (pass, setting) in location
                .config
                .list(&PASS)
                .iter()
                .zip(location.config.settings(PASS.name()))
            {
                if let Some(name) = pass.origin.strip_prefix("upstream://") {
                    if !groups.contains_key(name) {
                        return Err(format!(
                            "{}:{}: ProxyPass: no <Upstream {name}> in the config",
                            setting.file, setting.line
                        ));
                    }
                }
            }
        }
    }
    reverse::check(init.config, &groups)?;
    Ok(Rc::new(Proxy {
        // The worker's trust (`HttpClientCAFile`) and the proxy's own, a
        // pool of its own.
        client: trust::client(init.config, idle, IDLE_TIMEOUT)?,
        groups,
    }))
}

/// The plugin: one per worker, with the worker's pool of upstream
/// connections and its view of the upstream groups.
struct Proxy {
    client: Client,
    groups: HashMap<String, Rc<Group>>,
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
    let (origin, base) = match &routed {
        Some(Ok((origin, base))) => (origin.clone(), base.as_str()),
        Some(Err(note)) => (format!("{INVALID}{note}"), "/"),
        None => (pass.origin.clone(), pass.path.as_str()),
    };
    let rest = &path[prefix.len().min(path.len())..];
    let mut url = String::with_capacity(base.len() + rest.len() + 16);
    url.push_str(base);
    let rest = match (base.ends_with('/'), rest.strip_prefix('/')) {
        (true, Some(r)) => r,
        _ => rest,
    };
    url.extend(axkit_http::encode_path(rest));
    if let Some(query) = ctx.request.query() {
        url.push('?');
        // A `#` would end the URL the client parses.
        url.push_str(&query.replace('#', "%23"));
    }
    Some(Target { origin, path: url })
}

/// What an `UPSTREAM_NOTE` names: a URL (`http://host:port/base`, whose
/// path replaces the `ProxyPass` URL's), else a group; as origin and
/// path, or the note back when it is neither.
fn routed(note: &str) -> Result<(String, String), String> {
    if note.contains("://") {
        return split_url(note).map_err(|_| note.to_string());
    }
    Ok((format!("upstream://{note}"), "/".to_string()))
}

/// The origin of a note that names nothing usable.
const INVALID: &str = "invalid://";

/// Where a request goes: an origin (`http://host:port`, or
/// `upstream://NAME` for a group) and the path and query sent there.
struct Target {
    origin: String,
    path: String,
}

/// Whether `path` lies under `prefix`, by whole segments.
fn under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// Headers never passed on: hop-by-hop (RFC 9110 §7.6.1), or the
/// framing, which the sender writes itself.
fn hop_by_hop(name: &str) -> bool {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || name.len() > 6 && name[..6].eq_ignore_ascii_case("proxy-")
}

/// The header names a `Connection` header lists, lower-cased.
fn connection_tokens<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn join(old: Option<String>, new: &str) -> String {
    match old {
        Some(old) if !old.trim().is_empty() => format!("{old}, {new}"),
        _ => new.to_string(),
    }
}

/// A `Forwarded` node or host: a token, or else a quoted string.
fn forwarded_value(text: &str) -> String {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !text.is_empty() && text.bytes().all(token) {
        return text.to_string();
    }
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// The headers sent upstream, and the `Host` among them.
fn upstream_headers(ctx: &mut Context) -> Vec<(String, String)> {
    let request = &ctx.request;
    let named = connection_tokens(request.headers().filter_map(|(n, v)| {
        n.eq_ignore_ascii_case("connection")
            .then(|| std::str::from_utf8(v).ok())
            .flatten()
    }));
    let peer = ctx.conn.client().ip();
    let config = ctx.config();
    let trusted = config
        .list(&TRUSTED_PROXY)
        .iter()
        .flatten()
        .any(|net| net.contains(peer));
    let family_forwarded = config.get(&TRUSTED_PROXY_HEADER) == "Forwarded";
    let preserve_host = *config.get(&PRESERVE_HOST);
    // Values of the forwarding headers appended to, when trusted.
    let mut xff = None;
    let mut forwarded = None;
    let mut xfport = None;
    let mut via = None;
    let mut out = Vec::with_capacity(16);
    let all = |old: &mut Option<String>, v: &str| *old = Some(join(old.take(), v));
    for (name, value) in request.headers() {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "x-forwarded-for" if trusted && !family_forwarded => all(&mut xff, value),
            "x-forwarded-port" if trusted && !family_forwarded => all(&mut xfport, value),
            "forwarded" if trusted && family_forwarded => all(&mut forwarded, value),
            "via" => all(&mut via, value),
            "host" if preserve_host => out.push((name.to_string(), value.to_string())),
            "host" | "expect" | "x-forwarded-for" | "x-forwarded-port" | "x-forwarded-proto"
            | "x-forwarded-host" | "forwarded" => {}
            _ if hop_by_hop(name) || named.contains(&lower) => {}
            _ => out.push((name.to_string(), value.to_string())),
        }
    }
    let proto = if ctx.conn.tls { "https" } else { "http" };
    let host = request.header("host").map(str::to_string);
    let version = match request.version() {
        axkit_http::Version::Http10 => "1.0",
        _ => "1.1",
    };
    let mut element = format!("for={}", forwarded_value(&node(peer)));
    if let Some(host) = &host {
        element.push_str(&format!(";host={}", forwarded_value(host)));
    }
    element.push_str(&format!(";proto={proto}"));
    out.push(("X-Forwarded-For".into(), join(xff, &peer.to_string())));
    if let Some(port) = xfport {
        out.push(("X-Forwarded-Port".into(), port));
    }
    let client = ctx.client().clone();
    out.push(("X-Forwarded-Proto".into(), client.scheme().to_string()));
    if let Some(authority) = ctx.authority() {
        out.push(("X-Forwarded-Host".into(), authority.to_string()));
    }
    out.push(("Forwarded".into(), join(forwarded, &element)));
    out.push(("Via".into(), join(via, &format!("{version} axkit"))));
    out
}

/// An address as a `Forwarded` node: IPv6 in brackets.
fn node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The protocol a request asks to switch to, when it may be tunnelled:
/// HTTP/1.1, `Connection: upgrade`, `Upgrade`, no body.
fn wants_upgrade(ctx: &Context, framing: &Framing) -> Option<String> {
    let request = &ctx.request;
    let asked = request
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let ok = asked
        && matches!(framing, Framing::None)
        && request.version() == axkit_http::Version::Http11;
    ok.then(|| request.header("upgrade").map(str::to_string))
        .flatten()
}

/// The timeouts of one exchange.
struct Limits {
    connect: Duration,
    read: Duration,
    send: Duration,
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

fn request_framing(ctx: &Context) -> Framing {
    if ctx.request.header_bytes("transfer-encoding").is_some() {
        return Framing::Chunked;
    }
    match ctx
        .request
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(n) if n > 0 => Framing::Length(n),
        _ => Framing::None,
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
        let framing = request_framing(ctx);
        // Only a request that can be sent again as it was, and whose
        // repetition does no harm: an idempotent method and no body (a
        // streamed body is gone once sent).
        let tries = match idempotent(ctx.request.method()) && matches!(framing, Framing::None) {
            true => (*config.get(&TRIES)).max(1),
            false => 1,
        };
        if let Some(note) = target.origin.strip_prefix(INVALID) {
            let why = "not an http:// or https:// URL nor a group name";
            return self.failed(ctx, &format!("{note:?} (note {UPSTREAM_NOTE})"), why, 502);
        }
        let group = match target.origin.strip_prefix("upstream://") {
            Some(name) => match self.groups.get(name) {
                Some(group) => Some(group.clone()),
                None => {
                    let url = format!("{}{}", target.origin, target.path);
                    return self.failed(ctx, &url, "no such upstream group", 502);
                }
            },
            None => None,
        };
        let headers = upstream_headers(ctx);
        let upgrade = wants_upgrade(ctx, &framing);
        let mut attempt = 1;
        let mut tried = Vec::new();
        let mut url;
        // Held until the response is over: least-conn counts it.
        let mut _in_flight = None;
        let (result, body_error) = loop {
            let server = match &group {
                Some(group) => {
                    let (index, in_flight) = group.pick(ctx, &tried);
                    _in_flight = Some(in_flight);
                    url = format!("{}{}", group.servers[index].origin, target.path);
                    tried.push(index);
                    Some((group, index))
                }
                None => {
                    url = format!("{}{}", target.origin, target.path);
                    None
                }
            };
            let (result, body_error) = self
                .exchange(ctx, &url, &headers, &framing, &limits, upgrade.as_deref())
                .await;
            if let Some((group, index)) = server {
                match &result {
                    Ok(_) => group.answered(index),
                    // The client's own failure says nothing of the server.
                    Err(_) if body_error.is_some() => {}
                    Err(e) => {
                        if group.failed(index) {
                            let line = ctx.request.request_line();
                            ctx.log(
                                Level::Warn,
                                &format!(
                                    "proxy: {line}: upstream {}: {} marked down: {e}",
                                    group.name, group.servers[index].authority
                                ),
                            );
                        }
                    }
                }
            }
            match result {
                // A group's servers are each tried once.
                Err(e)
                    if attempt < tries
                        && e.kind() != ErrorKind::InvalidRequest
                        && group.as_ref().is_none_or(|g| tried.len() < g.servers.len()) =>
                {
                    let line = ctx.request.request_line();
                    ctx.log(
                        Level::Warn,
                        &format!("proxy: {line}: upstream {url}: {e}: trying again ({attempt} of {tries} failed)"),
                    );
                    attempt += 1;
                }
                result => break (result, body_error),
            }
        };
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                if let Some(body) = body_error {
                    return body.into();
                }
                let status = match e.kind() {
                    ErrorKind::Timeout => 504,
                    _ => 502,
                };
                return self.failed(ctx, &url, &e.to_string(), status);
            }
        };
        ctx.response.status = response.status;
        let named = connection_tokens(
            response
                .headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
                .map(|(_, v)| v),
        );
        let chunked = response.header("transfer-encoding").is_some();
        let mut via = None;
        for (name, value) in response.headers() {
            let lower = name.to_ascii_lowercase();
            match lower.as_str() {
                "via" => via = Some(join(via, value)),
                "date" | "server" => {}
                // The client checked that every Content-Length agrees.
                "content-length" if !chunked => {
                    let n = value.split(',').next().unwrap_or("").trim();
                    ctx.response.headers.set("Content-Length", n.to_string());
                }
                _ if hop_by_hop(name) || named.contains(&lower) => {}
                _ => ctx
                    .response
                    .headers
                    .add(name.to_string(), value.to_string()),
            }
        }
        ctx.response.headers.set("Via", join(via, "1.1 axkit"));
        reverse::rewrite(ctx, &self.groups);
        if response.status == 101 {
            return self.tunnel(ctx, &url, response, limits.read).await;
        }
        // Commits the head even when no body follows (a HEAD's length).
        if ctx.write(Bytes::new()).await.is_err() {
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
                    return self.failed(ctx, &url, &e.to_string(), 502);
                }
            }
        }
    }

    /// Send the request to `url` with the client's body, if any, streamed
    /// up as it comes: the upstream's response head, and the client's body
    /// error when that is why it failed.
    async fn exchange(
        &self,
        ctx: &mut Context,
        url: &str,
        headers: &[(String, String)],
        framing: &Framing,
        limits: &Limits,
        upgrade: Option<&str>,
    ) -> (Result<Response, ClientError>, Option<BodyError>) {
        let mut request = match Request::new(ctx.request.method(), url) {
            Ok(r) => r,
            Err(e) => return (Err(e), None),
        };
        request = request
            .connect_timeout(limits.connect)
            .read_timeout(limits.read)
            .send_timeout(limits.send)
            .max_size(None)
            .default_user_agent(false);
        if let Some(protocol) = upgrade {
            request = request.upgrade(protocol);
        }
        for (name, value) in headers {
            request = request.header(name.clone(), value.clone());
        }
        if matches!(framing, Framing::None) {
            return (self.client.send(request).await, None);
        }
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
        idle: Duration,
    ) -> Outcome {
        let protocol = response.header("upgrade").unwrap_or("").to_string();
        let Some(mut upstream) = response.upgraded() else {
            return self.failed(ctx, url, "101 without a connection", 502);
        };
        let worker = ctx.worker();
        let logger = ctx.logger();
        let line = ctx.request.request_line();
        let mut client = match ctx.upgrade(&protocol).await {
            Ok(client) => client,
            Err(e) => {
                logger.log(
                    Level::Error,
                    &format!("proxy: {line}: upstream {url}: switching protocols: {e}"),
                );
                return Outcome::Done;
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

    /// Log why the upstream failed and answer `status` (too late once the
    /// head has gone: the core then closes the connection).
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
        assert_eq!(
            split_url("http://b:81").unwrap(),
            ("http://b:81".into(), "/".into())
        );
        assert_eq!(
            split_url("https://b/x/").unwrap(),
            ("https://b".into(), "/x/".into())
        );
        assert!(split_url("http://b/x?y").is_err());
        assert!(split_url("ftp://b/").is_err());
        assert!(parse_pass(&["app", "http://b/"]).is_err());
    }

    #[test]
    fn forwarded_values() {
        assert_eq!(forwarded_value("1.2.3.4"), "1.2.3.4");
        assert_eq!(forwarded_value("[::1]"), "\"[::1]\"");
        assert_eq!(forwarded_value("a:8\"0"), "\"a:8\\\"0\"");
    }
}
