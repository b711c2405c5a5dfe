//! One worker process: a single-threaded event loop that accepts on the
//! inherited listening sockets and serves connections, plus the hook runner
//! that walks a request through the plugins of its `<Location>`.
//!
//! Everything here is per worker and lives on one thread, hence `Rc` and
//! `Cell`: no locks on the hot path.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use axkit_http::Limits;
use bytes::BytesMut;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::{core, Config, LocationConfig};
use crate::plugin::Catalog;
use crate::plugin::{
    escape_log, BodyChunk, ConnInfo, Context, Failure, Hook, HookFuture, Level, LogRecord, Outcome,
    Plugin, PluginInit,
};
use crate::server::idle::{self, IdleWaits};
use crate::server::{connection, log_to_stderr};

/// A plugin in a chain, with the name it was loaded under (for logs).
pub(crate) type Entry = (Rc<str>, Rc<dyn Plugin>);

/// Per-`<Location>` runtime: its merged config, cached hot values, and for
/// each hook the plugins that implement it, in chain order.
pub(crate) struct LocationRt {
    pub config: Arc<LocationConfig>,
    pub prefix: String,
    chains: Vec<Vec<Entry>>,
    pub max_body: u64,
    pub body_timeout: Duration,
    pub send_timeout: Duration,
}

impl LocationRt {
    fn new(
        config: Arc<LocationConfig>,
        prefix: String,
        plugins: &[String],
        all: &HashMap<String, Rc<dyn Plugin>>,
    ) -> LocationRt {
        let mut chains = vec![Vec::new(); Hook::COUNT];
        for name in plugins {
            if let Some(plugin) = all.get(name) {
                let hooks = plugin.hooks();
                let name: Rc<str> = Rc::from(name.as_str());
                for hook in Hook::ALL {
                    if hooks.contains(hook) {
                        chains[hook as usize].push((name.clone(), plugin.clone()));
                    }
                }
            }
        }
        LocationRt {
            max_body: *config.get(&core::MAX_REQUEST_BODY),
            body_timeout: *config.get(&core::BODY_TIMEOUT),
            send_timeout: *config.get(&core::SEND_TIMEOUT),
            config,
            prefix,
            chains,
        }
    }

    pub fn chain(&self, hook: Hook) -> &[Entry] {
        &self.chains[hook as usize]
    }
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
    pub log_level: Level,
    pub shutting_down: Cell<bool>,
    pub shutdown: Notify,
    /// Connections waiting for their next request.
    pub idle: IdleWaits,
    /// Connections accepted and not yet closed.
    pub active: Cell<usize>,
    /// `MaxConnections`: no accepting while `active` is there.
    max_connections: usize,
    /// Notified when `active` drops below `max_connections`.
    room: Notify,
    /// Idle connections closed to make room since the last log line
    /// about it, and when that line was written.
    reclaimed: Cell<(u64, Option<std::time::Instant>)>,
    next_conn_id: Cell<u64>,
    /// Read buffers of connections that went idle, for the next one that
    /// gets bytes: a busy keep-alive connection releases its buffer while
    /// it waits for each request, and 4 KiB chunks are too big for
    /// malloc's fast path.
    read_buffers: RefCell<Vec<BytesMut>>,
}

/// Spare read buffers a worker keeps at most (64 × 4 KiB).
const SPARE_READ_BUFFERS: usize = 64;

/// At `MaxConnections`, a new connection that has not sent a byte for
/// this long may be closed to make room: it is more likely a client that
/// holds a slot than one about to send its request.
const FRESH_GRACE: Duration = Duration::from_secs(3);

/// How often a worker at `MaxConnections` says that it closes idle
/// connections (it may do so for every new client).
const RECLAIM_LOG_EVERY: Duration = Duration::from_secs(10);

impl WorkerRt {
    /// Instantiate every plugin of `config` and precompute the chains.
    /// `listeners` are the configured addresses of the sockets, in the order
    /// their accept loops will be started.
    pub fn new(
        config: Arc<Config>,
        catalog: &Catalog,
        listeners: &[SocketAddr],
    ) -> Result<WorkerRt, String> {
        let mut all: HashMap<String, Rc<dyn Plugin>> = HashMap::new();
        let mut plugins = Vec::new();
        for name in &config.plugins {
            let init = PluginInit {
                config: &config,
                name,
            };
            let plugin = catalog
                .create(name, &init)
                .map_err(|e| format!("plugin `{name}`: {e}"))?;
            plugins.push(plugin.clone());
            all.insert(name.clone(), plugin);
        }
        let mut servers = Vec::new();
        for server in &config.servers {
            let root = &server.locations[0].config;
            let locations = server
                .locations
                .iter()
                .map(|node| {
                    Rc::new(LocationRt::new(
                        node.config.clone(),
                        node.prefix.clone(),
                        &node.plugins,
                        &all,
                    ))
                })
                .collect();
            let mut server_header = Vec::new();
            if let Some(token) = root.get(&core::SERVER_TOKEN) {
                axkit_http::write_header(&mut server_header, "Server", token.as_bytes());
            }
            let size = |key| usize::try_from(*root.get(key)).unwrap_or(usize::MAX);
            servers.push(ServerRt {
                locations,
                limits: Limits {
                    max_request_line: size(&core::MAX_REQUEST_LINE),
                    max_header_bytes: size(&core::MAX_HEADER_SIZE),
                    max_headers: (*root.get(&core::MAX_HEADERS)).max(1),
                },
                header_timeout: *root.get(&core::HEADER_TIMEOUT),
                keepalive_timeout: *root.get(&core::KEEPALIVE_TIMEOUT),
                keepalive: *root.get(&core::KEEPALIVE),
                max_keepalive_requests: *root.get(&core::MAX_KEEPALIVE_REQUESTS) as u64,
                server_header: Rc::from(server_header),
            });
        }
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
        if let Some(pos) = listener_servers.iter().position(|s| s.is_empty()) {
            return Err(format!("no <Server> listens on {}", listeners[pos]));
        }
        let global = Rc::new(LocationRt::new(
            config.global.clone(),
            String::new(),
            &config.global_plugins,
            &all,
        ));
        let log_level = *config.global.get(&core::LOG_LEVEL);
        let max_connections = max_connections(&config);
        Ok(WorkerRt {
            config,
            servers,
            global,
            plugins,
            listener_servers,
            log_level,
            shutting_down: Cell::new(false),
            shutdown: Notify::new(),
            idle: IdleWaits::new(),
            active: Cell::new(0),
            max_connections,
            room: Notify::new(),
            reclaimed: Cell::new((0, None)),
            next_conn_id: Cell::new(1),
            read_buffers: RefCell::new(Vec::new()),
        })
    }

    /// An empty read buffer, recycled when one is spare.
    pub fn read_buffer(&self) -> BytesMut {
        self.read_buffers.borrow_mut().pop().unwrap_or_default()
    }

    /// Keep `buf` for another connection (its contents are dropped).
    pub fn recycle_read_buffer(&self, mut buf: BytesMut) {
        let mut spare = self.read_buffers.borrow_mut();
        if buf.capacity() > 0 && spare.len() < SPARE_READ_BUFFERS {
            buf.clear();
            spare.push(buf);
        }
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        let was = self.active.get();
        self.active.set(was - 1);
        if was == self.max_connections {
            self.room.notify_waiters();
        }
    }

    /// A new client arrived while the worker is at `MaxConnections`:
    /// close the connections that have waited longest for a request (see
    /// `IdleWaits::reclaim`), a few at a time so that a burst of clients
    /// finds room too. Said in the log at most every
    /// [`RECLAIM_LOG_EVERY`]. When nothing could be closed (it all became
    /// busy meanwhile), the new connection is served one over the limit;
    /// the accept loop then waits for room.
    fn make_room(&self) {
        let batch = (self.max_connections / 64).clamp(1, 32);
        let closed = self.idle.reclaim(batch, FRESH_GRACE) as u64;
        if closed == 0 {
            return;
        }
        let (count, last) = self.reclaimed.get();
        let count = count + closed;
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now < t + RECLAIM_LOG_EVERY) {
            self.reclaimed.set((count, last));
            return;
        }
        self.reclaimed.set((0, Some(now)));
        let since = match last {
            Some(t) => format!(" in the last {}s", now.duration_since(t).as_secs()),
            None => String::new(),
        };
        self.log(
            Level::Warn,
            &format!(
                "MaxConnections ({}) reached: closed {count} idle connection(s){since} to make room for new clients",
                self.max_connections
            ),
        );
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

    /// Send a log line through the `logging` hooks of `location`'s chain.
    /// Sinks that finish at once (all the built-in ones) write in order;
    /// one that has to wait continues as its own task. Without any sink in
    /// the chain, lines go to stderr so that nothing is lost. Every sink
    /// gets the message escaped (`escape_log`): messages quote paths,
    /// headers and script output, and no sink has to remember.
    pub fn log_via(
        &self,
        location: &LocationRt,
        level: Level,
        message: &str,
        peer: Option<SocketAddr>,
    ) {
        if level > self.log_level {
            return;
        }
        let chain = location.chain(Hook::Logging);
        if chain.is_empty() {
            log_to_stderr(level, message);
            return;
        }
        let owned = Rc::new((level, escape_log(message).into_owned(), peer));
        for (_, plugin) in chain {
            let plugin = plugin.clone();
            let line = owned.clone();
            let fut = async move {
                let record = LogRecord {
                    level: line.0,
                    message: &line.1,
                    peer: line.2,
                };
                plugin.logging(&record).await
            };
            let mut fut = Box::pin(fut);
            let waker = Waker::from(Arc::new(NoopWake));
            match fut.as_mut().poll(&mut TaskContext::from_waker(&waker)) {
                Poll::Ready(Outcome::Declined) => continue,
                Poll::Ready(_) => return,
                Poll::Pending => {
                    tokio::task::spawn_local(fut);
                }
            }
        }
    }

    pub fn reopen_logs(&self) {
        for plugin in &self.plugins {
            plugin.reopen_logs();
        }
    }

    /// Pick the `<Server>` for a request on listener `listener` by Host.
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
}

struct NoopWake;
impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

/// How a hook's plugins are walked (DESIGN.md, "Hooks").
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every plugin while they return Declined or Ok; anything else stops.
    AllWhileOk,
    /// Until the first plugin that does not decline.
    FirstNotDeclined,
}

fn mode(hook: Hook) -> Mode {
    match hook {
        Hook::UriTranslation
        | Hook::MimeMap
        | Hook::Authentication
        | Hook::XmlResponse
        | Hook::Response
        | Hook::Error => Mode::FirstNotDeclined,
        _ => Mode::AllWhileOk,
    }
}

fn call<'a>(plugin: &'a dyn Plugin, hook: Hook, ctx: &'a mut Context) -> HookFuture<'a> {
    match hook {
        Hook::PostReadRequest => plugin.post_read_request(ctx),
        Hook::UriTranslation => plugin.uri_translation(ctx),
        Hook::MimeMap => plugin.mime_map(ctx),
        Hook::AccessControl => plugin.access_control(ctx),
        Hook::Authentication => plugin.authentication(ctx),
        Hook::Authorization => plugin.authorization(ctx),
        Hook::Fixup => plugin.fixup(ctx),
        Hook::XmlResponse => plugin.xmlresponse(ctx),
        Hook::Response => plugin.response(ctx),
        Hook::ResponseSent => plugin.response_sent(ctx),
        Hook::Error => plugin.error(ctx),
        // Hooks with other arguments have their own runners.
        Hook::Logging
        | Hook::Connect
        | Hook::PreRequest
        | Hook::BodyData
        | Hook::WriteBodyData
        | Hook::Disconnect => Outcome::Declined.into(),
    }
}

/// Turns a panic inside a hook into `Outcome::Error`, so that it costs the
/// one request and never the worker.
struct CatchUnwind<F>(F);

impl<F: Future<Output = Outcome> + Unpin> Future for CatchUnwind<F> {
    type Output = Outcome;
    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Outcome> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => Poll::Ready(Outcome::Error(format!(
                "panicked: {}",
                panic_message(&panic)
            ))),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Start a hook, catching a panic in its synchronous part too.
fn guarded<'a>(start: impl FnOnce() -> HookFuture<'a>) -> CatchUnwind<HookFuture<'a>> {
    match catch_unwind(AssertUnwindSafe(start)) {
        Ok(fut) => CatchUnwind(fut),
        Err(panic) => CatchUnwind(HookFuture::Ready(Some(Outcome::Error(format!(
            "panicked: {}",
            panic_message(&panic)
        ))))),
    }
}

/// Record why a request is leaving the normal path.
fn note_failure(ctx: &mut Context, plugin: &str, hook: Hook, outcome: &Outcome) {
    let message = match outcome {
        Outcome::Error(m) => m.clone(),
        Outcome::Status(s) => format!("returned status {s}"),
        _ => return,
    };
    ctx.failure = Some(Failure {
        plugin: plugin.to_string(),
        hook: hook.name(),
        message,
    });
}

/// Run one request hook over the chain of the request's Location.
pub(crate) async fn run_hook(ctx: &mut Context, hook: Hook) -> Outcome {
    let location = ctx.location.clone();
    let mode = mode(hook);
    let mut result = Outcome::Declined;
    for (name, plugin) in location.chain(hook) {
        let outcome = guarded(|| call(&**plugin, hook, ctx)).await;
        note_failure(ctx, name, hook, &outcome);
        match (mode, outcome) {
            (_, Outcome::Declined) => {}
            (Mode::AllWhileOk, Outcome::Ok) => result = Outcome::Ok,
            (_, other) => return other,
        }
    }
    result
}

/// Run `body_data` over the chain with one chunk of request body.
pub(crate) async fn run_body_data(ctx: &mut Context, chunk: &[u8]) -> Outcome {
    let location = ctx.location.clone();
    let mut result = Outcome::Declined;
    for (name, plugin) in location.chain(Hook::BodyData) {
        let outcome = guarded(|| plugin.body_data(ctx, chunk)).await;
        note_failure(ctx, name, Hook::BodyData, &outcome);
        match outcome {
            Outcome::Declined => {}
            Outcome::Ok => result = Outcome::Ok,
            other => return other,
        }
    }
    result
}

/// Run the `write_body_data` filters over one outgoing chunk.
pub(crate) async fn run_write_body_data(ctx: &mut Context, chunk: &mut BodyChunk) -> Outcome {
    let location = ctx.location.clone();
    ctx.io.filtering = true;
    let mut result = Outcome::Ok;
    for (name, plugin) in location.chain(Hook::WriteBodyData) {
        let outcome = guarded(|| plugin.write_body_data(ctx, chunk)).await;
        note_failure(ctx, name, Hook::WriteBodyData, &outcome);
        match outcome {
            Outcome::Declined | Outcome::Ok => {}
            other => {
                result = other;
                break;
            }
        }
    }
    ctx.io.filtering = false;
    result
}

/// Run a connection-level hook (`connect`, `pre_request`, `disconnect`).
/// Returns false if a plugin rejected the connection.
pub(crate) async fn run_conn_hook(
    worker: &WorkerRt,
    location: &LocationRt,
    hook: Hook,
    conn: &ConnInfo,
) -> bool {
    for (name, plugin) in location.chain(hook) {
        let outcome = guarded(|| match hook {
            Hook::Connect => plugin.connect(conn),
            Hook::PreRequest => plugin.pre_request(conn),
            _ => plugin.disconnect(conn),
        })
        .await;
        match outcome {
            Outcome::Declined | Outcome::Ok => {}
            _ if hook == Hook::Disconnect => {}
            other => {
                if let Outcome::Error(m) = &other {
                    worker.log(
                        Level::Error,
                        &format!("plugin {name}, hook {}: {m}", hook.name()),
                    );
                }
                return false;
            }
        }
    }
    true
}

/// Serve on `listeners` until told to stop, then let in-flight requests
/// finish for up to the configured ShutdownTimeout. `ready` is called once
/// the accept loops run.
pub(crate) async fn serve(
    worker: Rc<WorkerRt>,
    listeners: Vec<std::net::TcpListener>,
    ready: impl FnOnce(),
) {
    for (index, listener) in listeners.into_iter().enumerate() {
        let listener = match listener
            .set_nonblocking(true)
            .and_then(|_| TcpListener::from_std(listener))
        {
            Ok(l) => l,
            Err(e) => {
                worker.log(Level::Crit, &format!("cannot use listening socket: {e}"));
                return;
            }
        };
        tokio::task::spawn_local(accept_loop(worker.clone(), listener, index));
    }
    // The idle clock starts now, not when the sweeper first runs (plugins
    // may have taken a while to start).
    worker.idle.sweep();
    tokio::task::spawn_local(sweep_idle(worker.clone()));
    // The signal handlers go in before `ready`: from then on the master may
    // forward SIGUSR1, whose default action would kill the worker.
    // A task of its own: `run_until` polls the worker's main future on
    // every turn of the event loop, and the signal streams need not be
    // asked each time.
    let stop = tokio::task::spawn_local(wait_for_stop(worker.clone()));
    ready();
    let _ = stop.await;
    worker.shutting_down.set(true);
    worker.shutdown.notify_waiters();
    worker.idle.shutdown();
    let limit = *worker.config.global.get(&core::SHUTDOWN_TIMEOUT);
    let deadline = tokio::time::Instant::now() + limit;
    while worker.active.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if worker.active.get() > 0 {
        worker.log(
            Level::Warn,
            &format!(
                "shutdown timeout: closing {} connections",
                worker.active.get()
            ),
        );
    }
}

/// Wait for SIGTERM/SIGINT, or for the master to go away (our stdin, a pipe
/// from the master, reaches EOF). SIGUSR1 reopens logs meanwhile. The
/// handlers are installed by the call itself, before the first poll.
fn wait_for_stop(worker: Rc<WorkerRt>) -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut hup)) = signals else {
            worker.log(Level::Crit, "cannot install signal handlers");
            return;
        };
        let master_gone = async {
            if std::env::var_os(super::WORKER_ENV).is_none() {
                return std::future::pending::<()>().await;
            }
            super::wait_for_eof_on_stdin().await
        };
        tokio::pin!(master_gone);
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = &mut master_gone => return,
                _ = usr1.recv() => worker.reopen_logs(),
                // A worker ignores SIGHUP: reloading is the master's job.
                _ = hup.recv() => {}
            }
        }
    }
}

/// End the idle waits whose time is up, for as long as the worker runs.
async fn sweep_idle(worker: Rc<WorkerRt>) {
    let mut tick = tokio::time::interval(idle::SWEEP);
    loop {
        tick.tick().await;
        worker.idle.sweep();
    }
}

/// The worker's `MaxConnections`, or by default 7/8 of its open-file limit
/// (a worker out of descriptors could not open the files its requests ask
/// for either).
fn max_connections(config: &Config) -> usize {
    match *config.global.get(&core::MAX_CONNECTIONS) {
        n if n > 0 => n,
        _ => {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit only writes the struct it is given.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
            let files = if ok { limit.rlim_cur } else { 1024 };
            usize::try_from(files / 8 * 7).unwrap_or(usize::MAX).max(1)
        }
    }
}

async fn accept_loop(worker: Rc<WorkerRt>, listener: TcpListener, index: usize) {
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    // One subscription for the loop's life: shutdown happens once.
    let notified = worker.shutdown.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    loop {
        if worker.shutting_down.get() {
            return;
        }
        if worker.active.get() >= worker.max_connections && !worker.idle.can_reclaim(FRESH_GRACE) {
            // Full, and every connection is busy (or has only just
            // connected): the kernel queues new clients for the other
            // workers, or for us once one of ours closes or goes idle.
            // The sweep interval bounds how late an idle one is noticed.
            let room = worker.room.notified();
            tokio::select! {
                _ = &mut notified => return,
                _ = room => {}
                _ = tokio::time::sleep(idle::SWEEP) => {}
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = &mut notified => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if worker.active.get() >= worker.max_connections {
                        worker.make_room();
                    }
                    // Counted here, not when the task first runs: this
                    // loop may accept several before that.
                    worker.active.set(worker.active.get() + 1);
                    tokio::task::spawn_local(connection::serve(worker.clone(), stream, peer, index, bound));
                }
                Err(e) => {
                    // Out of descriptors or memory: back off rather than spin.
                    worker.log(Level::Error, &format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
