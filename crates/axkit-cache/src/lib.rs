//! The `cache` plugin: AxKit2's cachecache, by RFC 9111. It caches any
//! response of the Locations where it is on (files, CGI, Lua, proxied),
//! whoever produced it, in a per-worker tier, in shared memory, on disk,
//! or in Redis or memcached shared by several machines.
//!
//! Directives:
//!
//! - `Cache On|Off` (default Off; Server, Location): cache here.
//! - `CacheStore memory | shared [ZONE] | disk DIR [MAX] | redis URL |
//!   memcached HOST:PORT` (default `memory`; a secret: a Redis URL may
//!   hold a password): the tier. `memory` is each worker's own, bounded by
//!   `CacheSize`; `shared` keeps entries in the `axkit-shared` zone ZONE
//!   (default `cache`, declared with `SharedZone cache SIZE`), seen by
//!   every worker, bounded by the zone; `disk` in files beneath DIR
//!   (bounded by MAX, default 1G); `redis` and `memcached` in a server
//!   that several machines may share.
//! - `CacheKeyPrefix PREFIX` (default `axkit:cache:`; global): what the
//!   Redis and memcached keys start with.
//! - `CacheBackendTimeout DURATION` (default 100ms; global): how long one
//!   call to the disk, Redis or memcached tier may take.
//! - `CacheSize SIZE` (default 64M; global): the per-worker tier's bound.
//! - `CacheMaxEntrySize SIZE` (default 1M): a larger body is not stored.
//!   The disk, Redis and memcached tiers store, and read back, no entry
//!   larger than the largest of the scopes with `Cache On` and 64 KiB for
//!   its head: a larger value under an entry's key is a miss, not read.
//! - `CacheLockTimeout DURATION` (default 5s): how long concurrent misses
//!   on one key wait for the request that fills it.
//! - `CachePurgeFrom CIDR…` (repeatable): who may `PURGE` a URL.
//!
//! An ErrorDocument page's walk (`Context::imposed_status`) is neither
//! answered from the cache nor stored: the page's entry describes the
//! page, not the URL that failed.
//!
//! How: in `fixup` (after the access phases, so that a stored answer goes
//! only to a client the Location's `Allow`/`Deny` and `Require` let in;
//! before any content plugin) a GET or HEAD is looked up under its key
//! (the `<Server>` as configured, scheme, host and URI: see `key_for`;
//! HEAD shares GET's entries; a response with `Vary` is stored under a
//! secondary key made of the bytes of the request headers it names and
//! the generation of the URL's variants). A fresh entry answers at once (with
//! `Age`, `Cache-Status: axkit; hit`, and 304 when the client's
//! conditional says it has it). Otherwise the request goes on through the
//! walk and the cache watches its response: in `before_head` it decides
//! from the status and headers whether to store it (only explicit
//! freshness: `s-maxage`, `max-age`, `Expires`; never `no-store`,
//! `private`, `Set-Cookie`, nor an answer to `Authorization` unless
//! `public`/`s-maxage`), and the `write_body_data` filter captures the
//! body, with the head as it stands at the body's first chunk (after the
//! filters ahead of it, compress say, have set theirs), storing it when it
//! is complete and not over `CacheMaxEntrySize`. That head is judged again
//! (`Set-Cookie`, `private`, `no-store`: a session's cookie comes after the
//! decision), and a `Set-Cookie` is never kept in an entry.
//! A stale entry with validators is revalidated by running the walk with
//! `If-None-Match`/`If-Modified-Since` put in the request: a 304 refreshes
//! the entry and the client is answered from it. Concurrent misses on one
//! key wait for the first (in a worker; across workers and servers too
//! with the shared, disk, Redis and memcached tiers, through the tier's
//! fill lock). `stale-while-revalidate` answers with the stale entry at
//! once and refreshes it with a background request (the client's GET run
//! by the worker itself, `Context::background_request`), one at a time per
//! entry; `stale-if-error` answers a 5xx with the stale entry, its body
//! sent in place of the error's even when that error streams.
//! A PURGE, or a POST, PUT, DELETE or PATCH answered with a 2xx or 3xx
//! (RFC 9111 §4.4: its URI, and its `Location` and `Content-Location` on
//! the same host), removes the entry, and with it every variant (whose
//! keys hold the generation of the list it removes); from the memory tier
//! of every worker, through a broadcast. A tier that fails makes the cache
//! step aside: the request is served as if there were no cache, and the
//! worker says so in its log at most every 10 s.

mod disk;
mod entry;
mod memcached;
mod policy;
mod redis_store;
mod storage;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use axkit::config::{Args, Cidr, Directive, Key, List, Scopes};
use axkit::plugin::{Body, BodyChunk, Worker};
use axkit::{hook, Context, HookFuture, Level, Outcome, Plugin, PluginInit, PluginSpec};
use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

pub use disk::DiskStore;
pub use entry::{Entry, Object};
pub use memcached::MemcachedStore;
pub use policy::CacheControl;
pub use redis_store::RedisStore;
pub use storage::{Guarded, MemoryStore, SharedStore, Storage, StoreFuture, StoreResult};

use policy::{ResponseFacts, Storable};

/// The plugin, for `Server::plugin`.
pub const CACHE: PluginSpec = PluginSpec {
    name: "cache",
    directives,
    create,
};

const HERE: Scopes = Scopes::SERVER.or(Scopes::LOCATION);

static ENABLED: Key<bool> = Key::new("Cache")
    .scopes(HERE)
    .doc("Cache responses here (RFC 9111)");

/// Which tier a Location uses.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Tier {
    Memory,
    Shared(String),
    Disk(PathBuf, u64),
    /// The URL, checked when the config loads.
    Redis(String),
    /// `HOST:PORT`.
    Memcached(String),
}

/// A Redis URL may hold a password: it is never shown.
impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tier::Memory => f.write_str("Memory"),
            Tier::Shared(zone) => f.debug_tuple("Shared").field(zone).finish(),
            Tier::Disk(dir, max) => f.debug_tuple("Disk").field(dir).field(max).finish(),
            Tier::Redis(_) => f.write_str("Redis(..)"),
            Tier::Memcached(addr) => f.debug_tuple("Memcached").field(addr).finish(),
        }
    }
}

const STORE_USAGE: &str = "expected CacheStore memory, shared [ZONE], disk DIR [MAX], redis URL \
     or memcached HOST:PORT";

fn parse_store(args: &[&str]) -> Result<Tier, String> {
    match args {
        ["memory"] => Ok(Tier::Memory),
        ["shared"] => Ok(Tier::Shared("cache".into())),
        ["shared", zone] => Ok(Tier::Shared(zone.to_string())),
        ["disk", dir] => Ok(Tier::Disk(dir.into(), 1 << 30)),
        ["disk", dir, max] => {
            let max = axkit::config::parse::size(max)
                .map_err(|_| "disk DIR MAX: MAX is a size such as 512M or 2G".to_string())?;
            Ok(Tier::Disk(dir.into(), max))
        }
        ["redis", url] => {
            // The client's own check, now rather than in the workers.
            axkit_db::Spec::redis("cache", url, 1, Duration::from_secs(1))?;
            Ok(Tier::Redis(url.to_string()))
        }
        ["memcached", addr] => {
            let ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err("memcached HOST:PORT: expected a host and a port".into());
            }
            Ok(Tier::Memcached(addr.to_string()))
        }
        _ => Err(STORE_USAGE.into()),
    }
}

static STORE: Key<Tier> = Key::parsed("CacheStore", parse_store)
    .args(Args::Range(1, 3))
    .default("memory")
    .secret()
    .doc(
        "The tier: memory (per worker, CacheSize), shared [ZONE] (a SharedZone, default `cache`), \
         disk DIR [MAX] (files, default 1G), redis URL, or memcached HOST:PORT",
    );

static KEY_PREFIX: Key<String> = Key::parsed("CacheKeyPrefix", |args| match args {
    [p] if !p.is_empty() && p.len() <= 64 && p.bytes().all(|b| b.is_ascii_graphic()) => {
        Ok(p.to_string())
    }
    _ => Err("expected a prefix of 1 to 64 printable characters, no spaces".into()),
})
.args(Args::One)
.scopes(Scopes::GLOBAL)
.default("axkit:cache:")
.doc("What the cache's Redis and memcached keys start with");

static BACKEND_TIMEOUT: Key<Duration> = Key::new("CacheBackendTimeout")
    .scopes(Scopes::GLOBAL)
    .default("100ms")
    .nonzero()
    .doc("How long one call to the disk, Redis or memcached tier may take (above 0)");

/// How often a worker says that a tier is failing.
const WARN_EVERY: Duration = Duration::from_secs(10);

static SIZE: Key<u64> = Key::new("CacheSize")
    .scopes(Scopes::GLOBAL)
    .default("64M")
    .doc("The bound of each worker's memory tier");

static MAX_ENTRY: Key<u64> = Key::new("CacheMaxEntrySize")
    .default("1M")
    .doc("A response body larger than this is not stored");

/// Room for an entry's head and times beside its body: the disk, Redis
/// and memcached tiers store (and read back) no entry larger than the
/// largest `CacheMaxEntrySize` and this.
const HEAD_ROOM: usize = 64 * 1024;

static LOCK_TIMEOUT: Key<Duration> = Key::new("CacheLockTimeout").default("5s").doc(
    "How long concurrent misses on one key wait for the request filling it (0: they do not \
     wait, each goes to the backend)",
);

static PURGE_FROM: List<Vec<Cidr>> = List::new("CachePurgeFrom")
    .scopes(HERE.or(Scopes::GLOBAL))
    .doc("Client addresses allowed to PURGE a cached URL");

fn directives() -> Vec<Directive> {
    vec![
        ENABLED.declare(),
        STORE.declare(),
        SIZE.declare(),
        MAX_ENTRY.declare(),
        LOCK_TIMEOUT.declare(),
        PURGE_FROM.declare(),
        KEY_PREFIX.declare(),
        BACKEND_TIMEOUT.declare(),
    ]
}

fn create(init: &PluginInit) -> Result<Rc<dyn Plugin>, String> {
    let size = *init.config.global.get(&SIZE) as usize;
    let largest = init
        .config
        .scopes()
        .filter(|c| *c.get(&ENABLED))
        .map(|c| *c.get(&MAX_ENTRY))
        .max();
    Ok(Rc::new(Cache {
        memory: Rc::new(MemoryStore::new(size)),
        entry_limit: (largest.unwrap_or(0) as usize).saturating_add(HEAD_ROOM),
        tiers: RefCell::new(HashMap::new()),
        prefix: init.config.global.get(&KEY_PREFIX).clone(),
        timeout: *init.config.global.get(&BACKEND_TIMEOUT),
        warned: Cell::new(None),
        fills: Rc::new(RefCell::new(HashMap::new())),
        refreshing: Rc::new(RefCell::new(HashSet::new())),
        seq: Cell::new(0),
    }))
}

type Fills = Rc<RefCell<HashMap<Vec<u8>, Rc<Notify>>>>;

struct Cache {
    memory: Rc<MemoryStore>,
    /// The other tiers, opened on first use; None: it cannot be opened
    /// (said once in the log), so that Location has no cache.
    tiers: RefCell<HashMap<Tier, Option<Rc<dyn Storage>>>>,
    prefix: String,
    timeout: Duration,
    /// The largest entry, encoded, that any scope with `Cache On` stores.
    entry_limit: usize,
    /// When this worker last said that a tier failed.
    warned: Cell<Option<Instant>>,
    /// The keys this worker is filling, each with the requests waiting.
    fills: Fills,
    /// The keys of stale entries this worker has a background request
    /// refreshing: from when it is started until it ends, so that the
    /// requests meanwhile start no other (its own fill registers only
    /// once it reaches this plugin).
    refreshing: Rc<RefCell<HashSet<Vec<u8>>>>,
    seq: Cell<u64>,
}

/// This worker fills `key`: while it lives, other requests for the key
/// wait for it; dropped, it wakes them and releases the tier's lock.
struct FillGuard {
    fills: Fills,
    key: Vec<u8>,
    notify: Rc<Notify>,
    lock: Option<(Rc<dyn Storage>, String)>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        let mut fills = self.fills.borrow_mut();
        if fills
            .get(&self.key)
            .is_some_and(|n| Rc::ptr_eq(n, &self.notify))
        {
            fills.remove(&self.key);
        }
        drop(fills);
        self.notify.notify_waiters();
        if let Some((store, token)) = self.lock.take() {
            let key = std::mem::take(&mut self.key);
            tokio::task::spawn_local(async move {
                let _ = store.unlock(&key, &token).await;
            });
        }
    }
}

/// A request on its way to the origin, and what the cache does with its
/// response.
struct Fill {
    store: Rc<dyn Storage>,
    primary: Vec<u8>,
    guard: Option<FillGuard>,
    /// Why it went forward (RFC 9211 `fwd`).
    reason: &'static str,
    /// The stale entry found, and the key it was found under.
    stale: Option<(Rc<Entry>, Vec<u8>)>,
    /// The request's validators were replaced by the stale entry's; the
    /// client's own, to answer it from the refreshed entry.
    revalidating: Option<(Option<String>, Option<String>)>,
    authorized: bool,
    request_no_store: bool,
    is_head: bool,
    /// Secondary-key values of the request, by lowercase header name,
    /// as sent (bytes: a value that is not UTF-8 is a value all the same).
    request_headers: Vec<(String, Vec<u8>)>,
    max: usize,
    capture: Option<Capture>,
    /// The response was answered from an entry ([`answer`]).
    replacing: Option<Replacement>,
}

/// The body of a response answered from an entry once its producer had
/// been run: that producer may be streaming already (a proxy or a script
/// that flushed its error page before the head went out), and its bytes
/// are not the entry's. The filter sends the entry's body with the first
/// chunk it sees and drops every chunk after it.
enum Replacement {
    Pending(Bytes),
    Sent,
}

/// The request state: the fill, taken out while a hook works on it
/// beside the rest of the context.
struct Slot(Option<Fill>);

fn take_fill(ctx: &mut Context) -> Option<Fill> {
    ctx.state_mut::<Slot>().and_then(|s| s.0.take())
}

fn put_fill(ctx: &mut Context, fill: Fill) {
    ctx.set_state(Slot(Some(fill)));
}

struct Capture {
    /// Its headers are empty until `take_head`.
    entry: Entry,
    vary: Vec<String>,
    head_taken: bool,
    body: BytesMut,
}

enum Lookup {
    Fresh(Rc<Entry>),
    Stale(Rc<Entry>, Vec<u8>),
    Miss(Vec<u8>, &'static str),
}

/// RFC 9211's field for this cache.
const NAME: &str = "axkit";

impl Cache {
    fn store(&self, ctx: &Context) -> Option<Rc<dyn Storage>> {
        let tier = ctx.config().get(&STORE);
        if *tier == Tier::Memory {
            return Some(self.memory.clone());
        }
        let mut tiers = self.tiers.borrow_mut();
        let opened = tiers.entry(tier.clone()).or_insert_with(|| {
            self.open(tier, ctx.worker())
                .map_err(|e| ctx.log(Level::Error, &format!("cache: {e}: not caching")))
                .ok()
        });
        opened.clone()
    }

    fn open(&self, tier: &Tier, worker: Worker) -> Result<Rc<dyn Storage>, String> {
        let outside: Box<dyn Storage> = match tier {
            Tier::Memory => return Ok(self.memory.clone()),
            Tier::Shared(zone) => return Ok(Rc::new(SharedStore::open(zone)?)),
            Tier::Disk(dir, max) => Box::new(DiskStore::new(dir, *max, self.entry_limit, worker)),
            Tier::Redis(url) => Box::new(RedisStore::open(
                url,
                &self.prefix,
                self.timeout,
                self.entry_limit,
                worker,
            )?),
            Tier::Memcached(addr) => Box::new(MemcachedStore::new(
                addr,
                &self.prefix,
                self.entry_limit,
                worker,
            )),
        };
        Ok(Rc::new(Guarded::new(outside, self.timeout)))
    }

    /// A tier call failed: the request goes on without the cache, and the
    /// log says so, at most every [`WARN_EVERY`] per worker (a dead
    /// backend would otherwise write a line per request).
    fn broken(&self, ctx: &Context, e: &str) {
        let now = Instant::now();
        if self
            .warned
            .get()
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return;
        }
        self.warned.set(Some(now));
        ctx.log(
            Level::Warn,
            &format!("cache: the tier failed, serving without it (said at most every 10s): {e}"),
        );
    }

    async fn lookup(
        &self,
        store: &Rc<dyn Storage>,
        primary: &[u8],
        ctx: &Context,
    ) -> Result<Lookup, String> {
        let now = SystemTime::now();
        let (object, key, miss) = match store.get(primary).await? {
            Some(o) if matches!(*o, Object::Variants { .. }) => {
                let Object::Variants { generation, names } = &*o else {
                    unreachable!()
                };
                let key = secondary_key(primary, *generation, &request_values(ctx, names));
                (store.get(&key).await?, key, "vary-miss")
            }
            found => (found, primary.to_vec(), "uri-miss"),
        };
        Ok(match object.as_deref() {
            Some(Object::Response(e)) => {
                let e = e.clone();
                if e.staleness(now).is_none() {
                    Lookup::Fresh(e)
                } else {
                    Lookup::Stale(e, key)
                }
            }
            _ => Lookup::Miss(key, miss),
        })
    }

    /// Whether another request is filling `key` (in this worker, or in
    /// another holding the tier's lock); waits for it to end, at most
    /// `limit`.
    async fn wait_for_fill(
        &self,
        store: &Rc<dyn Storage>,
        key: &[u8],
        limit: Duration,
        mine: bool,
    ) -> bool {
        if !mine {
            let notify = self.fills.borrow().get(key).cloned();
            if let Some(notify) = notify {
                let _ = tokio::time::timeout(limit, notify.notified()).await;
                return true;
            }
        }
        if !matches!(store.locked(key).await, Ok(true)) {
            return false;
        }
        let until = Instant::now() + limit;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !matches!(store.locked(key).await, Ok(true)) {
                break;
            }
            if matches!(store.get(key).await, Ok(Some(_))) {
                break;
            }
        }
        true
    }

    fn register(&self, key: &[u8]) -> FillGuard {
        let notify = Rc::new(Notify::new());
        self.fills
            .borrow_mut()
            .entry(key.to_vec())
            .or_insert_with(|| notify.clone());
        FillGuard {
            fills: self.fills.clone(),
            key: key.to_vec(),
            notify,
            lock: None,
        }
    }

    async fn purge(&self, ctx: &mut Context) -> Outcome {
        let ip = ctx.client().addr.ip();
        if !allowed(ctx.config().list(&PURGE_FROM), ip) {
            ctx.log_reason(
                403,
                format_args!("PURGE from an address not in CachePurgeFrom"),
            );
            return Outcome::Status(403);
        }
        let Some(store) = self.store(ctx) else {
            return Outcome::Status(404);
        };
        let primary = cache_key(ctx);
        let everywhere = *ctx.config().get(&STORE) == Tier::Memory;
        match remove_key(&store, everywhere, &primary).await {
            Ok(true) => {
                ctx.response.headers.set("Content-Type", "text/plain");
                ctx.response.body = Body::Bytes(Bytes::from_static(b"purged\n"));
                Outcome::Done
            }
            Ok(false) => {
                ctx.log_reason(404, format_args!("PURGE of a URL the cache does not hold"));
                Outcome::Status(404)
            }
            Err(e) => Outcome::Error(format!("cache: purge: {e}")),
        }
    }

    async fn handle(&self, ctx: &mut Context) -> Outcome {
        if !*ctx.config().get(&ENABLED) {
            return Outcome::Declined;
        }
        // An error page's walk (ErrorDocument) serves the page, not the
        // URL asked for. Answered from the page's own entry, a 200, the
        // page's validators and freshness went out with the error status,
        // and a client's `If-None-Match: *` got 304 for a URL that does not
        // exist; looked up and filled, the error was stored as the page's
        // own URL's entry.
        if ctx.imposed_status().is_some() {
            return Outcome::Declined;
        }
        let method = ctx.request.method();
        if method == "PURGE" {
            return self.purge(ctx).await;
        }
        if matches!(method, "POST" | "PUT" | "DELETE" | "PATCH") {
            if let Some(store) = self.store(ctx) {
                let everywhere = *ctx.config().get(&STORE) == Tier::Memory;
                ctx.set_state(Invalidate { store, everywhere });
                ctx.before_head(|ctx| Box::pin(invalidate(ctx)));
            }
            return Outcome::Declined;
        }
        if method != "GET" && method != "HEAD" {
            return Outcome::Declined;
        }
        let Some(store) = self.store(ctx) else {
            return Outcome::Declined;
        };
        let primary = cache_key(ctx);
        let request_cc = CacheControl::parse(header_values(ctx, "Cache-Control"));
        let authorized = ctx.request.header_bytes("Authorization").is_some();
        let no_cache = request_cc.no_cache
            || header_values(ctx, "Pragma").any(|p| p.trim().eq_ignore_ascii_case("no-cache"));
        let limit = *ctx.config().get(&LOCK_TIMEOUT);
        let mut fill = Fill {
            store: store.clone(),
            primary: primary.clone(),
            guard: None,
            reason: "request",
            stale: None,
            revalidating: None,
            authorized,
            request_no_store: request_cc.no_store,
            is_head: ctx.request.is_head(),
            request_headers: Vec::new(),
            max: *ctx.config().get(&MAX_ENTRY) as usize,
            capture: None,
            replacing: None,
        };
        if !(authorized || no_cache || request_cc.no_store) {
            for attempt in 0..3 {
                let found = match self.lookup(&store, &primary, ctx).await {
                    Ok(found) => found,
                    Err(e) => {
                        self.broken(ctx, &e);
                        return Outcome::Declined;
                    }
                };
                let key = match found {
                    Lookup::Fresh(entry) => {
                        answer(ctx, &entry, format!("{NAME}; hit"), None);
                        return Outcome::Done;
                    }
                    Lookup::Stale(entry, key) => {
                        let over = entry.staleness(SystemTime::now()).unwrap_or_default();
                        // A background request is the refresh itself: it
                        // goes to the origin.
                        if !ctx.conn.background
                            && !entry.must_revalidate
                            && over.as_millis() as u64 <= entry.swr_ms
                        {
                            let busy = self.fills.borrow().contains_key(&key)
                                || self.refreshing.borrow().contains(&key)
                                || matches!(store.locked(&key).await, Ok(true));
                            if !busy {
                                self.refresh(ctx, key);
                            }
                            answer(
                                ctx,
                                &entry,
                                format!("{NAME}; hit; detail=stale-while-revalidate"),
                                None,
                            );
                            return Outcome::Done;
                        }
                        fill.reason = "stale";
                        fill.stale = Some((entry, key.clone()));
                        key
                    }
                    Lookup::Miss(key, why) => {
                        fill.reason = why;
                        key
                    }
                };
                if attempt < 2 {
                    let mine = fill.guard.is_some();
                    if !mine && !self.fills.borrow().contains_key(&key) {
                        fill.guard = Some(self.register(&key));
                        let token = self.token();
                        match store.lock(&key, &token, limit).await {
                            Ok(true) => {
                                if let Some(g) = &mut fill.guard {
                                    g.lock = Some((store.clone(), token));
                                }
                                break;
                            }
                            Ok(false) => {}
                            Err(_) => break,
                        }
                    }
                    if self
                        .wait_for_fill(&store, &key, limit, fill.guard.is_some())
                        .await
                    {
                        continue;
                    }
                }
                break;
            }
        }
        if let Some((stale, _)) = fill.stale.clone() {
            if stale.has_validators() {
                // Ask the origin whether the stale entry is still good.
                let client = (
                    ctx.request.header("If-None-Match").map(str::to_string),
                    ctx.request.header("If-Modified-Since").map(str::to_string),
                );
                let set = |ctx: &mut Context, name: &str, value: Option<&str>| match value {
                    Some(v) => ctx.request.set_header(name, v),
                    None => ctx.request.remove_header(name),
                };
                let etag = stale.header("ETag");
                let lm = stale.header("Last-Modified");
                if set(ctx, "If-None-Match", etag).is_ok()
                    && set(ctx, "If-Modified-Since", lm).is_ok()
                {
                    fill.revalidating = Some(client);
                }
            }
        }
        put_fill(ctx, fill);
        ctx.before_head(|ctx| Box::pin(on_head(ctx)));
        Outcome::Declined
    }

    /// Refresh the stale entry under `key` with a background request made
    /// as this one was by the client (RFC 5861 §3), which the cache sees
    /// as a request that must go to the origin.
    fn refresh(&self, ctx: &Context, key: Vec<u8>) {
        let sent = ctx.original_request();
        let mut target = sent.path().to_string();
        if let Some(query) = sent.query() {
            target.push('?');
            target.push_str(query);
        }
        // The client's conditionals and range were for its own copy.
        let headers = sent.headers().filter(|(name, _)| {
            !(name.len() > 3 && name[..3].eq_ignore_ascii_case("if-")
                || name.eq_ignore_ascii_case("range"))
        });
        let shown = axkit::plugin::escape_log_bytes(target.as_bytes()).into_owned();
        let run = match ctx.background_request(&target, headers) {
            Ok(run) => run,
            Err(e) => {
                ctx.log(
                    Level::Warn,
                    &format!("cache: cannot refresh \"{shown}\": {e}"),
                );
                return;
            }
        };
        let worker = ctx.worker();
        let refreshing = self.refreshing.clone();
        refreshing.borrow_mut().insert(key.clone());
        tokio::task::spawn_local(async move {
            let result = run.await;
            refreshing.borrow_mut().remove(&key);
            if let Err(e) = result {
                worker.log(
                    Level::Info,
                    &format!("cache: the background refresh of \"{shown}\" did not run: {e}"),
                );
            }
        });
    }

    fn token(&self) -> String {
        self.seq.set(self.seq.get() + 1);
        format!("{}:{}", std::process::id(), self.seq.get())
    }
}

/// The broadcast channel on which a worker tells every worker to drop a
/// key from its memory tier (a PURGE, an invalidation).
const PURGE_CHANNEL: &str = "axkit-cache:purge";

/// Remove `key` from `store`; with `everywhere` (the memory tier, each
/// worker's own) from every worker's, through a broadcast. Whether this
/// worker's tier had it.
async fn remove_key(store: &Rc<dyn Storage>, everywhere: bool, key: &[u8]) -> StoreResult<bool> {
    if everywhere {
        // Without the broadcast ring (a binary without axkit-shared) the
        // other workers keep theirs until they expire. The message starts
        // with this process's id: the broadcast reaches this worker too,
        // later, and would remove an entry stored since.
        let mut message = Vec::with_capacity(4 + key.len());
        message.extend_from_slice(&std::process::id().to_le_bytes());
        message.extend_from_slice(key);
        let _ = axkit_shared::broadcast(PURGE_CHANNEL, &message);
    }
    store.remove(key).await
}

/// An unsafe request in flight: its tier, for [`invalidate`].
struct Invalidate {
    store: Rc<dyn Storage>,
    everywhere: bool,
}

/// RFC 9111 §4.4: a POST, PUT, DELETE or PATCH answered with a 2xx or 3xx
/// invalidates the entries of its URI and of its response's `Location`
/// and `Content-Location` when they are on the same host.
async fn invalidate(ctx: &mut Context) {
    let Some((store, everywhere)) = ctx
        .state_mut::<Invalidate>()
        .map(|i| (i.store.clone(), i.everywhere))
    else {
        return;
    };
    if !(200..400).contains(&ctx.response.status) {
        return;
    }
    let mut keys = vec![cache_key(ctx)];
    for name in ["Location", "Content-Location"] {
        if let Some(key) = ctx
            .response
            .headers
            .get(name)
            .and_then(|v| same_host_key(ctx, v))
        {
            keys.push(key);
        }
    }
    for key in keys {
        let _ = remove_key(&store, everywhere, &key).await;
    }
}

/// The primary key of a `Location`-style reference (a path, or an
/// absolute URL on the request's own host); None for another host's.
fn same_host_key(ctx: &Context, reference: &str) -> Option<Vec<u8>> {
    let host = ctx.authority().unwrap_or("").to_ascii_lowercase();
    let path = if reference.starts_with('/') && !reference.starts_with("//") {
        reference
    } else {
        let (_, rest) = reference.split_once("://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if !authority.eq_ignore_ascii_case(&host) {
            return None;
        }
        if path.is_empty() {
            "/"
        } else {
            path
        }
    };
    Some(key_for(ctx, path))
}

#[axkit::plugin]
impl Plugin for Cache {
    /// PURGEs and invalidations that other workers broadcast reach this
    /// worker's memory tier.
    fn worker_start(&self, worker: &Worker) {
        let memory = self.memory.clone();
        let worker = worker.clone();
        match axkit_shared::subscribe(PURGE_CHANNEL, 1024) {
            Ok(mut purges) => {
                let me = std::process::id().to_le_bytes();
                tokio::task::spawn_local(async move {
                    loop {
                        tokio::select! {
                            message = purges.recv() => {
                                // Another worker's only (see `remove_key`).
                                if let Some((from, key)) = message.split_at_checked(4) {
                                    if from != me {
                                        memory.remove_now(key);
                                    }
                                }
                            }
                            () = worker.stopping() => break,
                        }
                    }
                });
            }
            Err(e) => worker.log(
                Level::Info,
                &format!("cache: PURGE reaches only the worker that gets it: {e}"),
            ),
        }
    }

    /// Everything the cache does to a request starts here, after
    /// `access_control`, `authentication` and `authorization`: a hit, a
    /// PURGE or a stale answer is a response like any other and goes only
    /// where the Location's rules let the client through (as nginx runs
    /// its access phase before `proxy_cache`). Answering earlier, in
    /// `post_read_request`, gave a page stored for one client to any
    /// other, denied or anonymous.
    fn fixup<'a>(&'a self, ctx: &'a mut Context) -> HookFuture<'a> {
        if !*ctx.config().get(&ENABLED) {
            return Outcome::Declined.into();
        }
        hook(self.handle(ctx))
    }

    fn write_body_data<'a>(
        &'a self,
        ctx: &'a mut Context,
        chunk: &'a mut BodyChunk,
    ) -> HookFuture<'a> {
        if let Some(replacing) = ctx
            .state_mut::<Slot>()
            .and_then(|s| s.0.as_mut())
            .and_then(|f| f.replacing.as_mut())
        {
            chunk.data = match std::mem::replace(replacing, Replacement::Sent) {
                Replacement::Pending(body) => body,
                Replacement::Sent => Bytes::new(),
            };
            return Outcome::Ok.into();
        }
        let first = ctx
            .state::<Slot>()
            .and_then(|s| s.0.as_ref())
            .and_then(|f| f.capture.as_ref())
            .is_some_and(|c| !c.head_taken);
        if first {
            if let Some(mut fill) = take_fill(ctx) {
                take_head(ctx, &mut fill);
                put_fill(ctx, fill);
            }
        }
        let Some(fill) = ctx.state_mut::<Slot>().and_then(|s| s.0.as_mut()) else {
            return Outcome::Declined.into();
        };
        let Some(capture) = &mut fill.capture else {
            return Outcome::Declined.into();
        };
        if capture.body.len() + chunk.data.len() > fill.max {
            fill.capture = None;
            fill.guard = None;
            return Outcome::Declined.into();
        }
        capture.body.extend_from_slice(&chunk.data);
        if !chunk.last {
            return Outcome::Declined.into();
        }
        hook(async move {
            if let Some(mut fill) = take_fill(ctx) {
                finish_fill(&mut fill).await;
                put_fill(ctx, fill);
            }
            Outcome::Declined
        })
    }
}

/// Take down the head that describes the captured body: its headers, and
/// the request values its `Vary` names for the entry's key.
///
/// Called with the first chunk this filter sees (or at `before_head` for
/// a status without a body), not when the cache decides to store: a
/// filter ahead of this one in the chain changes the head as it changes
/// the bytes (compress's `Content-Encoding`, `Vary` and weak `ETag`, all
/// set with its first chunk), and whatever those filters did is what the
/// bytes captured here are. Filters after this one have not run yet, so
/// their headers stay out, as their bytes do. The `before_head` work
/// cannot tell the two apart: it runs in the order it was registered,
/// not in the chain's.
///
/// The decision to store is made again on these headers: work on the head
/// registered after the cache's (a session's cookie, added as the head
/// goes out) or a filter ahead of it may have added a `Set-Cookie`, a
/// `private` or a `no-store` since, and such a response is somebody's.
fn take_head(ctx: &mut Context, fill: &mut Fill) {
    let Some(capture) = &mut fill.capture else {
        return;
    };
    let headers = &ctx.response.headers;
    let cc = response_cache_control(headers);
    if headers.get("Set-Cookie").is_some() || cc.no_store || cc.private {
        fill.capture = None;
        fill.guard = None;
        let said = headers
            .get("Cache-Status")
            .and_then(|v| v.strip_suffix("; stored"));
        if let Some(said) = said.map(str::to_string) {
            ctx.response.headers.set("Cache-Status", said);
        }
        return;
    }
    capture.entry.headers = stored_headers(headers);
    capture.vary = vary_names(headers);
    capture.head_taken = true;
    fill.request_headers = request_values(ctx, &capture.vary);
}

/// A response's `Cache-Control`, every line of it.
fn response_cache_control(headers: &axkit::plugin::Headers) -> CacheControl {
    CacheControl::parse(
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .map(|(_, v)| v),
    )
}

/// The lowercase header names a response's `Vary` lines list.
fn vary_names(headers: &axkit::plugin::Headers) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Store what was captured, and let the waiting requests look again.
async fn finish_fill(fill: &mut Fill) {
    if let Some(capture) = fill.capture.take() {
        let mut entry = capture.entry;
        entry.body = capture.body.freeze();
        let key = if capture.vary.is_empty() {
            fill.primary.clone()
        } else {
            let values = capture
                .vary
                .iter()
                .map(|n| {
                    let v = fill
                        .request_headers
                        .iter()
                        .find(|(h, _)| h == n)
                        .map(|(_, v)| v.clone());
                    (n.clone(), v.unwrap_or_default())
                })
                .collect::<Vec<_>>();
            // The variants stored since the list was last written (and not
            // purged since) keep their generation; a new list, after a
            // PURGE or with other names, starts a new one.
            let generation = match fill.store.get(&fill.primary).await {
                Ok(Some(o)) => match &*o {
                    Object::Variants { generation, names } if *names == capture.vary => *generation,
                    _ => new_generation(),
                },
                Ok(None) => new_generation(),
                Err(_) => {
                    fill.guard = None;
                    return;
                }
            };
            let variants = Rc::new(Object::Variants {
                generation,
                names: capture.vary.clone(),
            });
            let keep = entry.keep_for().max(Duration::from_secs(3600));
            let _ = fill.store.put(&fill.primary, variants, keep).await;
            secondary_key(&fill.primary, generation, &values)
        };
        let keep = entry.keep_for();
        let _ = fill
            .store
            .put(&key, Rc::new(Object::Response(Rc::new(entry))), keep)
            .await;
    }
    fill.guard = None;
}

/// The response head is about to go: decide what the cache does with it.
async fn on_head(ctx: &mut Context) {
    if let Some(mut fill) = take_fill(ctx) {
        decide(ctx, &mut fill).await;
        put_fill(ctx, fill);
    }
}

async fn decide(ctx: &mut Context, fill: &mut Fill) {
    let status = ctx.response.status;
    let now = SystemTime::now();
    let stale = fill.stale.clone();
    if status == 304 {
        if let (Some(client), Some((stale, key))) = (fill.revalidating.take(), stale.as_ref()) {
            let (refreshed, keep_it) = refresh(stale, &ctx.response.headers, now);
            fill.guard = None;
            let refreshed = Rc::new(refreshed);
            let _ = if keep_it {
                let keep = refreshed.keep_for();
                fill.store
                    .put(key, Rc::new(Object::Response(refreshed.clone())), keep)
                    .await
            } else {
                fill.store.remove(key).await.map(|_| ())
            };
            // The origin's cookies were made for this request: they go to
            // this client, never into the entry.
            let cookies: Vec<String> = ctx
                .response
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
                .map(|(_, v)| v.to_string())
                .collect();
            answer_fill(
                ctx,
                fill,
                &refreshed,
                format!("{NAME}; fwd=stale; fwd-status=304"),
                Some(client),
            );
            for cookie in cookies {
                ctx.response.headers.add("Set-Cookie", cookie);
            }
            return;
        }
    }
    if status >= 500 {
        if let Some((stale, _)) = stale.filter(|(s, _)| {
            !s.must_revalidate
                && s.staleness(now)
                    .is_some_and(|over| over.as_millis() as u64 <= s.sie_ms)
        }) {
            let client = fill.revalidating.take();
            fill.guard = None;
            answer_fill(
                ctx,
                fill,
                &stale,
                format!("{NAME}; fwd=stale; fwd-status={status}"),
                client,
            );
            return;
        }
    }
    let reason = fill.reason;
    let headers = &ctx.response.headers;
    let cc = response_cache_control(headers);
    let vary = vary_names(headers);
    let date = headers.get("Date").and_then(axkit_http::parse_http_date);
    let facts = ResponseFacts {
        status,
        cc: &cc,
        expires: headers.get("Expires"),
        date,
        vary_star: vary.iter().any(|v| v == "*"),
        set_cookie: headers.get("Set-Cookie").is_some(),
        authorized: fill.authorized,
        request_no_store: fill.request_no_store,
    };
    let too_big = headers
        .get("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > fill.max as u64);
    let fwd = if status == 304 || fill.stale.is_none() {
        format!("{NAME}; fwd={reason}")
    } else {
        format!("{NAME}; fwd={reason}; fwd-status={status}")
    };
    match policy::storable(&facts, now) {
        Storable::Yes(fresh) if !fill.is_head && !too_big && status != 304 => {
            let age = headers
                .get("Age")
                .and_then(|a| policy::delta_seconds(a.trim()))
                .unwrap_or(0)
                * 1000;
            let apparent = date
                .and_then(|d| now.duration_since(d).ok())
                .map_or(0, |d| d.as_millis() as u64);
            let entry = Entry {
                status,
                headers: Vec::new(),
                body: Bytes::new(),
                stored_ms: entry::epoch_ms(now),
                initial_age_ms: age.max(apparent),
                fresh_ms: fresh.as_millis() as u64,
                swr_ms: cc.stale_while_revalidate.unwrap_or(0) * 1000,
                sie_ms: cc.stale_if_error.unwrap_or(0) * 1000,
                must_revalidate: cc.must_revalidate,
            };
            fill.capture = Some(Capture {
                entry,
                vary: Vec::new(),
                head_taken: false,
                body: BytesMut::new(),
            });
            ctx.response
                .headers
                .set("Cache-Status", format!("{fwd}; stored"));
            if axkit_http::bodiless(status) {
                // No body, so no filter call to take the head with: it is
                // taken once the rest of the work on the head is done.
                ctx.before_head(|ctx| {
                    Box::pin(async move {
                        if let Some(mut fill) = take_fill(ctx) {
                            take_head(ctx, &mut fill);
                            finish_fill(&mut fill).await;
                            put_fill(ctx, fill);
                        }
                    })
                });
            }
        }
        _ => {
            fill.guard = None;
            ctx.response.headers.set("Cache-Status", fwd);
        }
    }
}

/// RFC 9111 §4.3.4: the stored headers, updated from a 304, and the
/// entry's clock restarted. A stored weak tag the 304's strong one
/// matches stays weak: the origin validated the representation it knows,
/// and what is stored may be a transform of it (a compressed coding,
/// whose bytes the strong tag does not name).
///
/// What is never stored is not taken from the 304 either (a `Set-Cookie`
/// is for the one client the 304 answers), nor the fields that describe
/// the stored bytes, which the 304 did not send. Whether the entry may
/// still be kept: not once the 304 says `no-store` or `private`.
fn refresh(stale: &Entry, update: &axkit::plugin::Headers, now: SystemTime) -> (Entry, bool) {
    const OF_THE_BYTES: &[&str] = &["content-encoding", "content-range", "content-type"];
    let mut entry = stale.clone();
    let weak = stale.header("ETag").and_then(|t| t.strip_prefix("W/"));
    for (name, value) in stored_headers(update) {
        if name.eq_ignore_ascii_case("etag") && weak == Some(value.as_str()) {
            continue;
        }
        if OF_THE_BYTES.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        entry
            .headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        entry.headers.push((name, value));
    }
    let cc = CacheControl::parse(
        entry
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .map(|(_, v)| v.as_str()),
    );
    let keep = !(cc.no_store || cc.private);
    let facts = ResponseFacts {
        status: entry.status,
        cc: &cc,
        expires: entry.header("Expires"),
        date: None,
        vary_star: false,
        set_cookie: false,
        authorized: false,
        request_no_store: false,
    };
    entry.fresh_ms = match policy::storable(&facts, now) {
        Storable::Yes(fresh) => fresh.as_millis() as u64,
        Storable::No(_) => 0,
    };
    entry.swr_ms = cc.stale_while_revalidate.unwrap_or(0) * 1000;
    entry.sie_ms = cc.stale_if_error.unwrap_or(0) * 1000;
    entry.must_revalidate = cc.must_revalidate;
    entry.stored_ms = entry::epoch_ms(now);
    entry.initial_age_ms = 0;
    (entry, keep)
}

/// The response headers worth keeping: not those the server writes for
/// each response, nor hop-by-hop ones, nor this cache's own, nor a
/// `Set-Cookie`. A response with one is not stored at all; this is the
/// last line of that rule, should a cookie reach an entry another way.
fn stored_headers(headers: &axkit::plugin::Headers) -> Vec<(String, String)> {
    const SKIP: &[&str] = &[
        "date",
        "server",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "age",
        "cache-status",
        "set-cookie",
    ];
    headers
        .iter()
        .filter(|(n, _)| !SKIP.iter().any(|s| n.eq_ignore_ascii_case(s)))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Answer from `entry`: its status, headers and body, `Age`, and
/// `Cache-Status`; 304 when the client's validators (`client`, else the
/// request's own) say it has it.
fn answer(
    ctx: &mut Context,
    entry: &Entry,
    status_field: String,
    client: Option<(Option<String>, Option<String>)>,
) {
    let (inm, ims) = client.unwrap_or_else(|| {
        (
            ctx.request.header("If-None-Match").map(str::to_string),
            ctx.request.header("If-Modified-Since").map(str::to_string),
        )
    });
    let fresh_304 = entry.status == 200
        && policy::not_modified(
            inm.as_deref(),
            ims.as_deref(),
            entry.header("ETag"),
            entry.header("Last-Modified"),
        );
    ctx.notes
        .insert(axkit::plugin::STORED_RESPONSE_NOTE.into(), NAME.into());
    let response = &mut ctx.response;
    response.headers.clear();
    for (n, v) in &entry.headers {
        response.headers.add(n.clone(), v.clone());
    }
    response
        .headers
        .set("Age", entry.age(SystemTime::now()).as_secs().to_string());
    response.headers.set("Cache-Status", status_field);
    if fresh_304 {
        response.status = 304;
        response.body = Body::Empty;
    } else {
        response.status = entry.status;
        response.body = Body::Bytes(entry.body.clone());
    }
}

/// [`answer`], for a request whose producer has run: its bytes, if it
/// streams any, give way to the entry's (see [`Replacement`]).
fn answer_fill(
    ctx: &mut Context,
    fill: &mut Fill,
    entry: &Entry,
    status_field: String,
    client: Option<(Option<String>, Option<String>)>,
) {
    answer(ctx, entry, status_field, client);
    let body = match &ctx.response.body {
        Body::Bytes(b) => b.clone(),
        _ => Bytes::new(),
    };
    fill.replacing = Some(Replacement::Pending(body));
}

/// The primary key (GET and HEAD share it): the `<Server>` (see
/// [`key_for`]), then the scheme, host and request-target.
fn cache_key(ctx: &Context) -> Vec<u8> {
    key_for(ctx, ctx.request.uri())
}

/// The primary key of `target` on the request's host. It starts with the
/// `<Server>` that answers, as its config names it (its first listen
/// address as written, `0.0.0.0:80` for `Listen 80`, and its
/// `ServerName`): the tiers are shared by every Server of a worker (and
/// the outside ones by every server using them), and one Server's answer
/// for a Host is not another's. Written as configured rather than as
/// bound, so that every worker, every restart and every machine running
/// the same config on one Redis or memcached agree on it.
fn key_for(ctx: &Context, target: &str) -> Vec<u8> {
    thread_local! {
        /// Each Server's part, by its index, made once per worker:
        /// formatting an address for every lookup cost a hit 700
        /// instructions.
        static SERVERS: RefCell<Vec<Option<Rc<str>>>> = const { RefCell::new(Vec::new()) };
    }
    let server = ctx.server();
    let part = SERVERS.with_borrow_mut(|parts| {
        if parts.len() <= server.index {
            parts.resize(server.index + 1, None);
        }
        parts[server.index]
            .get_or_insert_with(|| {
                let listen = server.listen.first().map(ToString::to_string);
                let name = server.names.first().map_or("", String::as_str);
                format!("{} {name} ", listen.unwrap_or_default()).into()
            })
            .clone()
    });
    let scheme = ctx.client().scheme();
    let host = ctx.authority().unwrap_or("");
    let mut key = Vec::with_capacity(part.len() + scheme.len() + 3 + host.len() + target.len());
    key.extend_from_slice(part.as_bytes());
    key.extend_from_slice(scheme.as_bytes());
    key.extend_from_slice(b"://");
    key.extend(host.bytes().map(|b| b.to_ascii_lowercase()));
    key.extend_from_slice(target.as_bytes());
    key
}

fn header_values<'a>(ctx: &'a Context, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    ctx.request
        .headers()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
}

/// The values of the request headers `names`, each field's lines joined
/// by commas, as bytes: a value that is not UTF-8 keys a variant of its
/// own, never the one for an absent field.
fn request_values(ctx: &Context, names: &[String]) -> Vec<(String, Vec<u8>)> {
    names
        .iter()
        .map(|n| {
            let mut value = Vec::new();
            let lines = ctx
                .request
                .headers()
                .filter(|(h, _)| h.eq_ignore_ascii_case(n));
            for (i, (_, v)) in lines.enumerate() {
                if i > 0 {
                    value.push(b',');
                }
                value.extend_from_slice(v);
            }
            (n.clone(), value.trim_ascii().to_vec())
        })
        .collect()
}

/// A generation for a URL's variants that no other fill picks, in this
/// worker or in another process or machine sharing the tier: the process,
/// a count and the time, hashed. Made only when a fill writes a new list
/// of variants, never on a hit.
fn new_generation() -> u64 {
    thread_local! {
        static MADE: Cell<u64> = const { Cell::new(0) };
    }
    let made = MADE.with(|m| {
        m.set(m.get() + 1);
        m.get()
    });
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let digest = Sha256::digest(format!("{} {made} {now}", std::process::id()));
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
}

/// A variant's key: the primary key, the generation of the URL's variants
/// and the values of the request headers the response varies by, each
/// name and value preceded by its length, so that no two lists of values
/// make one key.
fn secondary_key(primary: &[u8], generation: u64, values: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut key = primary.to_vec();
    key.extend_from_slice(format!("\0{generation:016x}").as_bytes());
    for (name, value) in values {
        key.push(0);
        for part in [name.as_bytes(), value] {
            key.extend_from_slice(part.len().to_string().as_bytes());
            key.push(b':');
            key.extend_from_slice(part);
        }
    }
    key
}

fn allowed(lists: &[Vec<Cidr>], ip: IpAddr) -> bool {
    lists.iter().flatten().any(|c| c.contains(ip))
}

/// Entry points for the fuzz targets in `fuzz/` (the `fuzzing` feature):
/// what reads the bytes a shared tier gives back (the disk tier's record,
/// memcached's reply line; `Object::decode` is public) and RFC 9111's
/// rules on a response's fields. Not part of the API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::policy::{
        delta_seconds, etag_matches, not_modified, storable, ResponseFacts, Storable,
        MAX_DELTA_SECONDS,
    };

    /// The disk tier's file for `payload`, worth keeping until `until_ms`
    /// (ms since the epoch).
    pub fn disk_record(until_ms: u64, payload: &[u8]) -> Vec<u8> {
        crate::disk::record(until_ms, payload)
    }

    /// A disk tier file's payload while it is not expired.
    pub fn disk_live(data: &[u8]) -> Option<&[u8]> {
        crate::disk::Dir::live(data)
    }

    /// A memcached reply line as read (CRLF included): its words and, if
    /// it has one, the size of the value that follows it; or the error.
    pub fn memcached_reply(line: &[u8]) -> Result<(Vec<String>, Option<usize>), String> {
        let reply = crate::memcached::Reply::parse(line)?;
        let size = reply.value_size().ok();
        Ok((reply.0, size))
    }

    /// The largest value a memcached reply may announce.
    pub const MEMCACHED_MAX_VALUE: usize = crate::memcached::MAX_VALUE;
}
