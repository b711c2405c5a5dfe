//! The master process: binds the listening sockets (or adopts those that
//! systemd or the master it replaces passed: `systemd.rs`, `upgrade`),
//! starts `Workers N` worker processes that inherit them, restarts a worker
//! that dies, reloads on SIGHUP, starts a new master from the binary on
//! disk on SIGUSR2 (a binary upgrade), drains on SIGTERM/SIGINT/SIGQUIT and
//! passes SIGUSR1 on.
//!
//! Workers are started by re-executing our own binary (posix_spawn through
//! `Command`, with no `pre_exec`) rather than by `fork`: the master runs a
//! tokio runtime, and forking a process with threads is unsafe. A worker
//! learns its sockets from `AXKIT_LISTEN_FDS`, its regions of shared memory
//! from `AXKIT_SHARED_MEMORY` (`shared_memory.rs`) and the configuration from a
//! snapshot of the files the master loaded (written to its stdin: a worker
//! restarted later must not pick up edits made since), and says `ready` on
//! its stdout; the EOF of its stdin then tells it the master is gone.
//!
//! The master is also the reaper of whatever its workers start: what a
//! worker that dies leaves running is ended (`orphans.rs`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{ExitCode, Stdio};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::{core, Config, Source};
use crate::plugin::{Catalog, Level};
use crate::server::master_log::{self, log};
use crate::server::orphans;
use crate::server::pid_file::{self, PidFile};
use crate::server::plugin_listeners::{PluginListeners, PLUGIN_LISTEN_ENV, UPGRADE_PLUGIN_ENV};
use crate::server::privileges;
use crate::server::shared_memory::{Regions, SHARED_MEMORY_ENV};
use crate::server::stdout;
use crate::server::systemd::{self, SYSTEMD_ENV};
use crate::server::{
    load_config, log_warnings, ASK_RELOAD, CONTROL_ENV, GENERATION_ENV, LISTEN_ENV, RESPAWN_ENV,
    WORKER_ENV,
};

/// The listening sockets a new master inherits from the one it replaces
/// (binary upgrade): `FD=ADDR,…` as in [`LISTEN_ENV`].
const UPGRADE_ENV: &str = "AXKIT_UPGRADE_FDS";

/// How long a new worker may take to say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A worker that exits sooner than this after saying `ready` crashed at
/// start: its replacement waits (see `Master::pause`).
const CRASHED_AT_START: Duration = Duration::from_secs(1);

/// A worker that ran this long before it exited ends a run of crashes:
/// the pause before a restart starts again from a second.
const RAN_WELL: Duration = Duration::from_secs(10);

/// The longest pause before a restart, however many crashes in a row.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// How long the master spends ending what a dead worker left, each time;
/// what is left after that is ended when the next of its children exits.
const ORPHANS_LIMIT: Duration = Duration::from_secs(5);

/// What workers run: the master's own binary, even once the file it was
/// started from has been replaced (by a build, a package upgrade). Workers
/// and their master must be the same program (they share the config
/// snapshot's encoding, the environment's meaning); a new binary runs only
/// through a binary upgrade (SIGUSR2), which starts a new master.
const SELF_EXE: &str = "/proc/self/exe";

/// Create a listening socket. It is non-blocking (a property of the shared
/// open file, which every worker wants) and inheritable.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Let a descriptor survive exec into a worker (`inherit`), or not. Every
/// listening socket and region of shared memory of the master is
/// close-on-exec except while the worker it is meant for is being started:
/// otherwise each worker (and each CGI process it starts) would also
/// inherit descriptors it was not given, such as the socket of an address
/// a reload has dropped.
fn set_inheritable(fd: RawFd, inherit: bool) -> std::io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        let flags = if inherit {
            flags & !libc::FD_CLOEXEC
        } else {
            flags | libc::FD_CLOEXEC
        };
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Print where we listen, with the real port when the config said 0.
pub(crate) fn announce(listeners: &[(SocketAddr, TcpListener)], workers: usize) {
    for (_, l) in listeners {
        if let Ok(addr) = l.local_addr() {
            println!(
                "axkit: listening on http://{addr}/ ({workers} worker{})",
                if workers == 1 { "" } else { "s" }
            );
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Bind every address of `config`, reusing sockets we already have.
fn bind_all(
    config: &Config,
    existing: &[(SocketAddr, TcpListener)],
) -> Result<Vec<(SocketAddr, TcpListener)>, String> {
    let mut out = Vec::new();
    for addr in config.listen_addrs() {
        let listener = match existing.iter().find(|(a, _)| *a == addr) {
            Some((_, l)) => l
                .try_clone()
                .map_err(|e| format!("cannot reuse socket for {addr}: {e}"))?,
            None => bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?,
        };
        out.push((addr, listener));
    }
    Ok(out)
}

/// Listening sockets handed over by the master (worker side).
pub(crate) fn inherited_listeners() -> Result<Vec<(SocketAddr, TcpListener)>, String> {
    let spec = std::env::var(LISTEN_ENV).map_err(|_| format!("{LISTEN_ENV} is not set"))?;
    listeners_from(LISTEN_ENV, &spec)
}

/// The sockets named by `spec` (`FD=ADDR,…`), the value of `var`.
fn listeners_from(var: &str, spec: &str) -> Result<Vec<(SocketAddr, TcpListener)>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').filter(|s| !s.is_empty()) {
        let (fd, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("bad {var} entry {item:?}"))?;
        let fd: i32 = fd
            .parse()
            .map_err(|_| format!("bad descriptor in {var}: {fd:?}"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("bad address in {var}: {addr:?}"))?;
        // SAFETY: the master passed this descriptor to us for exactly this.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        // Ours only: a CGI started by this worker must not inherit it.
        // SAFETY: plain fcntl on the descriptor we now own.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        }
        out.push((addr, listener));
    }
    Ok(out)
}

struct WorkerProc {
    pid: u32,
    generation: u64,
    /// Its place in the generation (0..Workers), which a replacement
    /// takes over: see `Worker::index`.
    slot: usize,
    started: Instant,
    /// Held open: dropping it tells the worker we are gone.
    _stdin: ChildStdin,
    /// The task passing its stdout on to ours, which ends at its EOF.
    forwarder: tokio::task::JoinHandle<()>,
}

struct Master<'a> {
    catalog: &'a Catalog,
    source: Source,
    /// Our binary, as found at start: a binary upgrade runs what is at
    /// this path now.
    exe: std::path::PathBuf,
    worker_args: Vec<OsString>,
    config: Config,
    listeners: Vec<(SocketAddr, TcpListener)>,
    /// The current configuration's shared memory.
    regions: Regions,
    /// The current configuration's plugin sockets (a console's).
    plugin_listeners: PluginListeners,
    workers: HashMap<u32, WorkerProc>,
    generation: u64,
    events: mpsc::UnboundedSender<Event>,
    /// Turns true at SIGTERM/SIGINT/SIGQUIT: a wait for a starting worker
    /// (up to READY_TIMEOUT) ends at once, so that shutdown is not held up.
    stopping: watch::Receiver<bool>,
    pid_file: Option<PidFile>,
    /// The new master a binary upgrade started, while it runs: it is the
    /// service's main process now, so we tell systemd nothing more.
    successor: Option<u32>,
    /// The master whose binary upgrade started this one (our parent then).
    predecessor: Option<u32>,
    /// The write end of the control pipe every worker inherits, to ask
    /// for a reload (see `server::ask_master`).
    control: OwnedFd,
    /// The processes we started (workers, starting or not, and a new
    /// master), until their tokio `Child` has reaped them: our other
    /// children are adopted (`orphans.rs`).
    own: Rc<RefCell<HashSet<u32>>>,
    /// A worker exited since what the workers left was last all ended.
    orphans_due: bool,
    /// Workers in a row that crashed at start or could not start: the
    /// next start waits 1 s doubled as many times, up to MAX_PAUSE. Zero
    /// again once a worker has run well, and at a reload that started its
    /// workers.
    crashes: u32,
    /// When the restart after a crash at start or a failed start is due:
    /// one for all the workers that die before it, so that they wait out
    /// one pause, the one logged (a timer each would start them all at
    /// the first one's end, and again at each other's).
    respawn_due: Option<Instant>,
}

/// What the master's loop hears from its helper tasks.
enum Event {
    /// A worker process ended, with its status.
    Exited(u32, String),
    /// The new master of a binary upgrade ended, with its status.
    SuccessorExited(u32, String),
    /// Try again to bring the current generation up to strength: the
    /// restart due then, which a later one may have replaced.
    Respawn(Instant),
}

/// What a worker is handed besides its config: the listening sockets,
/// the regions of shared memory and the plugins' own sockets.
type Handed<'a> = (
    &'a [(SocketAddr, TcpListener)],
    &'a Regions,
    &'a PluginListeners,
);

/// Ends once the master is told to stop.
async fn stopped(stopping: &watch::Receiver<bool>) {
    let _ = stopping.clone().wait_for(|stop| *stop).await;
}

/// Run `f` unless the master is told to stop first (None then).
async fn unless_stopping<T>(
    stopping: &watch::Receiver<bool>,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        value = f => Some(value),
        _ = stopped(stopping) => None,
    }
}

pub(super) fn worker_count(config: &Config) -> usize {
    match *config.global.get(&core::WORKERS) {
        n if n > 0 => n,
        _ => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    }
}

impl Master<'_> {
    /// Start worker `slot` of `count` of `generation` (`respawn`: in place
    /// of one that died) on `listeners` with `regions` and the plugins'
    /// sockets meant for it, hand it the configuration (`snapshot`,
    /// encoded), and wait for `ready`.
    async fn spawn(
        &self,
        (generation, respawn): (u64, bool),
        (slot, count): (usize, usize),
        (listeners, regions, plugin): Handed<'_>,
        snapshot: &[u8],
    ) -> Result<WorkerProc, String> {
        let fds = listeners
            .iter()
            .map(|(addr, l)| format!("{}={}", l.as_raw_fd(), addr))
            .collect::<Vec<_>>()
            .join(",");
        // Only these descriptors, and only for this exec. The master is one
        // thread, so no other process starts in between.
        let inherit = |on: bool| {
            listeners
                .iter()
                .map(|(_, l)| l.as_raw_fd())
                .chain(regions.fds())
                .chain(plugin.fds(slot))
                .chain([self.control.as_raw_fd()])
                .try_for_each(|fd| set_inheritable(fd, on))
                .map_err(|e| format!("cannot pass descriptors to a worker: {e}"))
        };
        let spawned = inherit(true).and_then(|()| {
            let mut command = Command::new(SELF_EXE);
            for var in SYSTEMD_ENV
                .iter()
                .chain([&UPGRADE_ENV, &UPGRADE_PLUGIN_ENV])
            {
                command.env_remove(var);
            }
            if respawn {
                command.env(RESPAWN_ENV, "1");
            }
            command
                .arg0(&self.exe)
                .arg("--worker")
                .args(&self.worker_args)
                .env(LISTEN_ENV, fds)
                .env(SHARED_MEMORY_ENV, regions.env())
                .env(PLUGIN_LISTEN_ENV, plugin.env(slot))
                .env(WORKER_ENV, format!("{slot}/{count}"))
                .env(GENERATION_ENV, generation.to_string())
                .env(CONTROL_ENV, self.control.as_raw_fd().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start worker: {e}"))
        });
        let _ = inherit(false);
        let mut child: Child = spawned?;
        let pid = child.id().unwrap_or(0);
        self.own.borrow_mut().insert(pid);
        let mut stdin = child.stdin.take().ok_or("worker has no stdin pipe")?;
        let stdout = child.stdout.take().ok_or("worker has no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        // A worker that died at once is noticed by the `ready` wait below;
        // one that never reads must not hold the master here.
        let ready = unless_stopping(&self.stopping, async {
            let _ = tokio::time::timeout(READY_TIMEOUT, stdin.write_all(snapshot)).await;
            tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await
        })
        .await;
        let (events, own) = (self.events.clone(), self.own.clone());
        tokio::task::spawn_local(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            own.borrow_mut().remove(&pid);
            let _ = events.send(Event::Exited(pid, status));
        });
        match ready {
            Some(Ok(Ok(Some(line)))) if line == "ready" => {
                // A worker's stdout (`RequestLog -`) goes on to ours.
                // Bytes as they come, not lines: a line that is not UTF-8
                // must not end the forwarding (the worker's writes would
                // then fail). Never blocking this loop (`stdout.rs`).
                let forwarder = tokio::task::spawn_local(async move {
                    let mut out = lines.into_inner();
                    let mut line = Vec::new();
                    while matches!(out.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                        if let Some(n) = stdout::forward(&line).filter(|n| n.is_power_of_two()) {
                            log(
                                Level::Error,
                                &format!(
                                    "stdout is not being read: {n} line(s) of the workers' \
                                     output dropped so far"
                                ),
                            );
                        }
                        line.clear();
                    }
                });
                Ok(WorkerProc {
                    pid,
                    generation,
                    slot,
                    started: Instant::now(),
                    _stdin: stdin,
                    forwarder,
                })
            }
            None => {
                signal_pid(pid, libc::SIGKILL);
                Err(format!("worker {pid} not started: shutting down"))
            }
            _ => {
                signal_pid(pid, libc::SIGKILL);
                Err(format!("worker {pid} failed to start"))
            }
        }
    }

    /// Start a full generation of `config`'s workers; on failure kill
    /// what was started.
    async fn spawn_generation(
        &self,
        generation: u64,
        with: Handed<'_>,
        config: &Config,
    ) -> Result<Vec<WorkerProc>, String> {
        // Encoded once for the whole generation.
        let snapshot = config.snapshot.encode();
        let mut started = Vec::new();
        let count = worker_count(config);
        for slot in 0..count {
            match self
                .spawn((generation, false), (slot, count), with, &snapshot)
                .await
            {
                Ok(worker) => started.push(worker),
                Err(e) => {
                    for w in started {
                        signal_pid(w.pid, libc::SIGKILL);
                    }
                    return Err(e);
                }
            }
        }
        Ok(started)
    }

    async fn reload(&mut self) {
        log(Level::Notice, "SIGHUP: reloading configuration");
        let config = match load_config(&self.source, self.catalog) {
            Ok(c) => c,
            Err(errors) => {
                master_log::config_errors(&errors);
                log(
                    Level::Error,
                    "reload failed: configuration has errors; keeping the old one",
                );
                return;
            }
        };
        log_warnings(&config);
        let failed = |e: &dyn std::fmt::Display| {
            log(
                Level::Error,
                &format!("reload failed: {e}; keeping the old configuration"),
            );
        };
        let listeners = match bind_all(&config, &self.listeners) {
            Ok(l) => l,
            Err(e) => return failed(&e),
        };
        let regions = match Regions::create(&config, self.catalog, &self.regions) {
            Ok(r) => r,
            Err(e) => return failed(&e),
        };
        let plugin_listeners =
            match PluginListeners::create(&config, self.catalog, &self.plugin_listeners) {
                Ok(l) => l,
                Err(e) => return failed(&e),
            };
        let generation = self.generation + 1;
        match self
            .spawn_generation(
                generation,
                (&listeners, &regions, &plugin_listeners),
                &config,
            )
            .await
        {
            Ok(started) => self.workers.extend(started.into_iter().map(|w| (w.pid, w))),
            Err(e) => {
                self.remove_socket_files(&plugin_listeners, &self.plugin_listeners);
                log(
                    Level::Error,
                    &format!("reload failed: {e}; keeping the old configuration"),
                );
                return;
            }
        }
        for w in self.workers.values().filter(|w| w.generation < generation) {
            signal_pid(w.pid, libc::SIGTERM);
        }
        // Its workers started: the crashes were the old configuration's
        // (or were fixed meanwhile), and a crash of the new one at start
        // is its first, not one more of a run that may have reached
        // MAX_PAUSE, nor one to wait for the old one's restart.
        self.crashes = 0;
        self.respawn_due = None;
        self.generation = generation;
        self.config = config;
        self.listeners = listeners;
        // The old generation mapped what it uses: a region dropped here
        // lives on in its workers until they exit.
        self.regions = regions;
        // So is a socket dropped here, in the old worker that served it;
        // its file, if a unix one's, goes now: new clients are the new
        // generation's.
        self.remove_socket_files(&self.plugin_listeners, &plugin_listeners);
        self.plugin_listeners = plugin_listeners;
        if let Err(e) = master_log::configure(&self.config) {
            log(Level::Error, &e);
        }
        log(Level::Notice, "configuration reloaded");
    }

    async fn worker_exited(&mut self, pid: u32, status: String) {
        // Whatever the worker started is ours now (a worker that drained
        // should have left nothing).
        self.orphans_due = true;
        self.end_orphans().await;
        let Some(w) = self.workers.remove(&pid) else {
            return;
        };
        if w.generation != self.generation {
            return;
        }
        let ran = w.started.elapsed();
        if ran >= RAN_WELL {
            self.crashes = 0;
        }
        if ran >= CRASHED_AT_START {
            log(
                Level::Error,
                &format!("worker {pid} exited ({status}); starting a new one"),
            );
            return self.respawn().await;
        }
        // Crashing at start: don't spin, and back off while it goes on.
        let pause = self.respawn_later();
        log(
            Level::Error,
            &format!(
                "worker {pid} exited ({status}); starting a new one in {}s ({} crash(es) \
                 at start in a row)",
                whole_seconds(pause),
                self.crashes
            ),
        );
    }

    /// After a crash at start or a failed start: bring the generation up
    /// to strength once a pause has passed, without holding up the loop (a
    /// reload, a stop) meanwhile, and return the pause. It is 1 s, doubled
    /// for each earlier one in a row, up to MAX_PAUSE; a worker that dies
    /// while a restart is due waits for that one, without counting again:
    /// workers that die together are one crash, however many they are.
    fn respawn_later(&mut self) -> Duration {
        let now = Instant::now();
        if let Some(due) = self.respawn_due {
            return due.saturating_duration_since(now);
        }
        let pause = Duration::from_secs(1u64 << self.crashes.min(5)).min(MAX_PAUSE);
        self.crashes += 1;
        let due = now + pause;
        self.respawn_due = Some(due);
        let events = self.events.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(due).await;
            let _ = events.send(Event::Respawn(due));
        });
        pause
    }

    /// The restart due at `due` is now, unless another has replaced it.
    async fn respawn_if_due(&mut self, due: Instant) {
        if self.respawn_due == Some(due) {
            self.respawn_due = None;
            self.respawn().await;
        }
    }

    /// End what the workers that exited left, if any of them did; or else
    /// reap the adopted processes that exited on their own.
    async fn end_orphans(&mut self) {
        if !self.orphans_due {
            return orphans::reap_exited(&self.own.borrow());
        }
        let own = self.own.clone();
        self.orphans_due = !orphans::end_all(|| own.borrow().clone(), ORPHANS_LIMIT).await;
    }

    /// Start workers until the current generation is at full strength.
    async fn respawn(&mut self) {
        let want = worker_count(&self.config);
        let snapshot = self.config.snapshot.encode();
        // The first place of the generation that no worker holds.
        let vacant = |workers: &HashMap<u32, WorkerProc>, generation| {
            (0..want).find(|&slot| {
                !workers
                    .values()
                    .any(|w| w.generation == generation && w.slot == slot)
            })
        };
        while let Some(slot) = vacant(&self.workers, self.generation) {
            let listeners = match bind_all(&self.config, &self.listeners) {
                Ok(l) => l,
                Err(e) => return log(Level::Crit, &e),
            };
            match self
                .spawn(
                    (self.generation, true),
                    (slot, want),
                    (&listeners, &self.regions, &self.plugin_listeners),
                    &snapshot,
                )
                .await
            {
                Ok(worker) => {
                    self.workers.insert(worker.pid, worker);
                }
                Err(_) if *self.stopping.borrow() => return,
                Err(e) => {
                    let pause = self.respawn_later();
                    let message = format!("{e}; retrying in {}s", whole_seconds(pause));
                    return log(Level::Crit, &message);
                }
            }
        }
    }

    /// Tell systemd `state`, unless a new master has taken over.
    fn notify(&self, state: &str) {
        if self.successor.is_none() {
            systemd::notify(state);
        }
    }

    /// A line for systemd's STATUS: what this master serves.
    fn status(&self) -> String {
        let addrs: Vec<String> = self
            .listeners
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect();
        format!(
            "serving on {} with {} worker(s), configuration generation {}",
            addrs.join(" "),
            worker_count(&self.config),
            self.generation
        )
    }

    /// The master whose binary upgrade started this one, while it runs:
    /// for as long as it is our parent (once it has exited we are
    /// another's).
    fn running_predecessor(&self) -> Option<u32> {
        // SAFETY: getppid has no memory effects.
        let parent = unsafe { libc::getppid() } as u32;
        self.predecessor.filter(|&old| old == parent)
    }

    /// Remove the files of the unix sockets of `dropped` that `kept` does
    /// not hold, unless another master may be using them: the new one of a
    /// binary upgrade, or the old one that started this, while it runs
    /// (nginx's rule for its unix listeners). The other removes them when
    /// it is the only one left.
    fn remove_socket_files(&self, dropped: &PluginListeners, kept: &PluginListeners) {
        if self.successor.is_some() || self.running_predecessor().is_some() {
            return;
        }
        for e in dropped.remove_files(kept) {
            log(Level::Warn, &e);
        }
    }

    /// SIGUSR2, a binary upgrade (nginx's way): start a new master from
    /// the binary now at our path, with our command line, handing it our
    /// listening sockets (named in [`UPGRADE_ENV`]). It loads the config,
    /// starts its workers on the same sockets and writes the PidFile,
    /// ours having moved to `FILE.oldbin`; both generations then serve
    /// until this master is told to stop (SIGQUIT or SIGTERM) and drains.
    /// If the new master exits first, this one carries on as before.
    fn upgrade(&mut self) {
        // While the master we replace runs, its PidFile is at FILE.oldbin:
        // an upgrade of ours would move our own file there over it, and
        // leave a master in no file (nginx refuses this too).
        if let Some(old) = self.running_predecessor() {
            let message = format!(
                "SIGUSR2 ignored: a binary upgrade is in progress (the old master {old} still \
                 runs); stop one of the two masters first"
            );
            return log(Level::Warn, &message);
        }
        if let Some(pid) = self.successor {
            let message = format!("SIGUSR2 ignored: the new master {pid} is still running");
            return log(Level::Warn, &message);
        }
        if let Some(Err(e)) = self.pid_file.as_ref().map(PidFile::move_to_oldbin) {
            return log(Level::Error, &format!("binary upgrade failed: {e}"));
        }
        let fds = self
            .listeners
            .iter()
            .map(|(addr, l)| format!("{}={}", l.as_raw_fd(), addr))
            .collect::<Vec<_>>()
            .join(",");
        let inherit = |on: bool| {
            self.listeners
                .iter()
                .map(|(_, l)| l.as_raw_fd())
                .chain(self.plugin_listeners.all_fds())
                .try_for_each(|fd| set_inheritable(fd, on))
        };
        let spawned = inherit(true).and_then(|()| {
            let mut command = Command::new(&self.exe);
            // The new master tells systemd it is the main process now; the
            // sockets systemd passed are in UPGRADE_ENV like the others.
            for var in SYSTEMD_ENV.iter().filter(|v| **v != "NOTIFY_SOCKET") {
                command.env_remove(var);
            }
            command
                .args(std::env::args_os().skip(1))
                .env(UPGRADE_ENV, fds)
                .env(UPGRADE_PLUGIN_ENV, self.plugin_listeners.upgrade_env())
                .spawn()
        });
        let _ = inherit(false);
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                if let Some(p) = &self.pid_file {
                    p.move_back_from_oldbin();
                }
                let message = format!(
                    "binary upgrade failed: cannot start {}: {e}",
                    self.exe.display()
                );
                return log(Level::Error, &message);
            }
        };
        let pid = child.id().unwrap_or(0);
        self.own.borrow_mut().insert(pid);
        let (events, own) = (self.events.clone(), self.own.clone());
        tokio::task::spawn_local(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            own.borrow_mut().remove(&pid);
            let _ = events.send(Event::SuccessorExited(pid, status));
        });
        self.successor = Some(pid);
        log(
            Level::Notice,
            &format!(
                "SIGUSR2: binary upgrade: started a new master (pid {pid}) from {}; once it \
                 serves, SIGQUIT to this master ({}) drains and ends it",
                self.exe.display(),
                std::process::id()
            ),
        );
    }

    /// The new master of a binary upgrade ended: this master is the one
    /// again (its PidFile back in place).
    fn successor_exited(&mut self, pid: u32, status: &str) {
        if self.successor != Some(pid) {
            return;
        }
        self.successor = None;
        if let Some(p) = &self.pid_file {
            p.move_back_from_oldbin();
        }
        log(
            Level::Error,
            &format!(
                "binary upgrade: the new master {pid} exited ({status}); this master carries on"
            ),
        );
    }

    /// Wait until every worker has exited, or `deadline`, keeping the
    /// tasks forwarding their output.
    async fn await_workers(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
        deadline: Instant,
        forwarders: &mut Vec<tokio::task::JoinHandle<()>>,
    ) {
        while !self.workers.is_empty() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::Exited(pid, _))) => {
                    forwarders.extend(self.workers.remove(&pid).map(|w| w.forwarder));
                }
                Ok(Some(Event::Respawn(_) | Event::SuccessorExited(..))) => {}
                _ => break,
            }
        }
    }

    async fn stop(&mut self, mut events: mpsc::UnboundedReceiver<Event>) {
        log(Level::Notice, "shutting down: finishing in-flight requests");
        for w in self.workers.values() {
            signal_pid(w.pid, libc::SIGTERM);
        }
        // Workers close theirs as they stop accepting; once ours are closed
        // too, new connections are refused rather than left unanswered in
        // the backlog until we exit.
        self.listeners.clear();
        self.remove_socket_files(&self.plugin_listeners, &PluginListeners::default());
        self.plugin_listeners = PluginListeners::default();
        let limit = *self.config.global.get(&core::SHUTDOWN_TIMEOUT);
        let mut forwarders = Vec::new();
        let deadline = Instant::now() + limit + Duration::from_secs(2);
        self.await_workers(&mut events, deadline, &mut forwarders)
            .await;
        for w in self.workers.values() {
            signal_pid(w.pid, libc::SIGKILL);
        }
        // Only once a worker is gone are its children ours: wait for
        // those just killed, which die at once.
        let deadline = Instant::now() + Duration::from_secs(2);
        self.await_workers(&mut events, deadline, &mut forwarders)
            .await;
        self.orphans_due = true;
        self.end_orphans().await;
        // What the workers wrote last (their final access-log lines) is
        // passed on and written before we exit, within a bound: a stdout
        // nobody reads must not hold the stop up.
        let drained = tokio::time::timeout(FLUSH_LIMIT, async {
            for f in forwarders {
                let _ = f.await;
            }
        })
        .await
        .is_ok();
        if !(drained && stdout::flush(FLUSH_LIMIT)) {
            log(
                Level::Error,
                "stdout is not being read: the workers' last output may be lost",
            );
        }
    }
}

/// `pause` in whole seconds for the log, rounded up: what is left of a
/// pause under way is no whole number.
fn whole_seconds(pause: Duration) -> u128 {
    pause.as_millis().div_ceil(1000)
}

/// How long a stopping master waits for its workers' last output to be
/// read and written, each.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

fn signal_pid(pid: u32, sig: i32) {
    if pid > 0 {
        // SAFETY: kill(2) on a child we started.
        unsafe {
            libc::kill(pid as i32, sig);
        }
    }
}

/// The control pipe: (read end, write end), both close-on-exec (the write
/// end is inherited by each worker only while it starts), the write end
/// non-blocking, so that a worker never waits on it.
fn control_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array with two new descriptors we own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (read, write) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        let flags = libc::fcntl(fds[1], libc::F_GETFL);
        if flags < 0 || libc::fcntl(fds[1], libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((read, write))
    }
}

/// What the workers ask on the control pipe: a reload (the console's
/// `reload`) is done as SIGHUP is, by sending ourselves one, so that it
/// takes the same path (systemd's RELOADING included).
async fn hear_workers(read: OwnedFd) {
    use tokio::io::AsyncReadExt;
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(read) else {
        return log(Level::Error, "cannot watch the control pipe");
    };
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        if buf[..n].contains(&ASK_RELOAD) {
            log(Level::Notice, "a worker asked for a reload");
            signal_pid(std::process::id(), libc::SIGHUP);
        }
    }
}

/// The listening sockets this master starts with: those systemd passed
/// (socket activation) and those of the master it replaces (binary
/// upgrade), each under the `Listen` address it serves; `bind_all` binds
/// the rest.
fn inherited_sockets(config: &Config) -> Result<Vec<(SocketAddr, TcpListener)>, String> {
    let (mut sockets, warnings) = systemd::adopt(&config.listen_addrs());
    for w in warnings {
        log(Level::Warn, &w);
    }
    if let Ok(spec) = std::env::var(UPGRADE_ENV) {
        let passed = listeners_from(UPGRADE_ENV, &spec)?;
        log(
            Level::Notice,
            &format!(
                "binary upgrade: took over {} listening socket(s) from the old master",
                passed.len()
            ),
        );
        sockets.extend(passed);
    }
    Ok(sockets)
}

/// Run the master until SIGTERM/SIGINT/SIGQUIT.
pub(crate) fn run(catalog: &Catalog, source: Source, worker_args: Vec<OsString>) -> ExitCode {
    let config = match load_config(&source, catalog) {
        Ok(c) => c,
        Err(errors) => {
            super::report_errors(&errors);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = master_log::configure(&config) {
        eprintln!("axkit: {e}");
        return ExitCode::FAILURE;
    }
    let fail = |e: &str| {
        log(Level::Crit, e);
        ExitCode::FAILURE
    };
    log_warnings(&config);
    if let Some(w) = privileges::warning(&config) {
        log(Level::Warn, &w);
    }
    let pid_path = config.global.get(&core::PID_FILE).clone();
    if let Some(Err(e)) = pid_path.as_deref().map(pid_file::check_free) {
        return fail(&e);
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(&format!("cannot find own executable: {e}")),
    };
    let listeners = match inherited_sockets(&config).and_then(|got| bind_all(&config, &got)) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let regions = match Regions::create(&config, catalog, &Regions::default()) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let plugin_listeners = match PluginListeners::from_upgrade()
        .and_then(|got| PluginListeners::create(&config, catalog, &got))
    {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
    let runtime = match crate::server::event_loop() {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let (control_read, control) = match control_pipe() {
        Ok(pipe) => pipe,
        Err(e) => return fail(&format!("cannot make the control pipe: {e}")),
    };
    // Before any worker starts, so that all they start is beneath us.
    if let Err(e) = orphans::become_subreaper() {
        log(
            Level::Warn,
            &format!("{e}: what a worker that dies leaves running is not ended"),
        );
    }
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        tokio::task::spawn_local(hear_workers(control_read));
        let (tx, mut events) = mpsc::unbounded_channel();
        let (stop_tx, stopping) = watch::channel(false);
        let count = worker_count(&config);
        let mut master = Master {
            catalog,
            source,
            exe,
            worker_args,
            config,
            listeners: Vec::new(),
            regions,
            plugin_listeners,
            workers: HashMap::new(),
            generation: 1,
            events: tx,
            stopping: stopping.clone(),
            pid_file: None,
            successor: None,
            // SAFETY: getppid has no memory effects.
            predecessor: std::env::var_os(UPGRADE_ENV).map(|_| unsafe { libc::getppid() } as u32),
            control,
            own: Rc::default(),
            orphans_due: false,
            crashes: 0,
            respawn_due: None,
        };
        let signals = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::user_defined2()),
            signal(SignalKind::child()),
        );
        let (
            Ok(mut term),
            Ok(mut int),
            Ok(mut quit),
            Ok(mut hup),
            Ok(mut usr1),
            Ok(mut usr2),
            Ok(mut child),
        ) = signals
        else {
            return fail("cannot install signal handlers");
        };
        // Heard in a task of its own, so that a stop request also reaches
        // the master while it waits for a worker to start.
        tokio::task::spawn_local(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
                _ = quit.recv() => {}
            }
            let _ = stop_tx.send(true);
        });
        match master
            .spawn_generation(
                1,
                (&listeners, &master.regions, &master.plugin_listeners),
                &master.config,
            )
            .await
        {
            Ok(started) => master
                .workers
                .extend(started.into_iter().map(|w| (w.pid, w))),
            Err(_) if *master.stopping.borrow() => {
                master.stop(events).await;
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                master.remove_socket_files(&master.plugin_listeners, &PluginListeners::default());
                return fail(&e);
            }
        }
        master.listeners = listeners;
        if let Some(path) = &pid_path {
            match PidFile::write(path) {
                Ok(p) => master.pid_file = Some(p),
                Err(e) => {
                    log(Level::Crit, &e);
                    master.stop(events).await;
                    return ExitCode::FAILURE;
                }
            }
        }
        announce(&master.listeners, count);
        // A master started by a binary upgrade is the service's main
        // process from now on.
        let main_pid = match std::env::var_os(UPGRADE_ENV) {
            Some(_) => format!("MAINPID={}\n", std::process::id()),
            None => String::new(),
        };
        master.notify(&format!("{main_pid}READY=1\nSTATUS={}", master.status()));
        super::startup_pages::release();
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    master.notify(&format!(
                        "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                        systemd::monotonic_usec()
                    ));
                    master.reload().await;
                    master.notify(&format!("READY=1\nSTATUS={}", master.status()));
                    // The config language ran again.
                    super::startup_pages::release();
                }
                _ = usr1.recv() => {
                    master_log::reopen();
                    for w in master.workers.values() {
                        signal_pid(w.pid, libc::SIGUSR1);
                    }
                }
                _ = usr2.recv() => master.upgrade(),
                // An adopted process exited, or one being ended did.
                _ = child.recv() => master.end_orphans().await,
                Some(event) = events.recv() => match event {
                    Event::Exited(pid, status) => master.worker_exited(pid, status).await,
                    Event::SuccessorExited(pid, status) => master.successor_exited(pid, &status),
                    Event::Respawn(due) => master.respawn_if_due(due).await,
                },
                _ = stopped(&stopping) => break,
            }
        }
        master.notify("STOPPING=1\nSTATUS=finishing in-flight requests");
        master.stop(events).await;
        log(Level::Notice, "stopped");
        ExitCode::SUCCESS
    })
}
