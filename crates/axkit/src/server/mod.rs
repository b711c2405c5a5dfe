//! The server: the master process that owns the listening sockets and the
//! worker processes (`master.rs`), each worker's event loop (`worker.rs`)
//! and runtime tables (`runtime.rs`), and the request walk (`walk.rs`),
//! which runs hooks (`hooks.rs`) and does its I/O through `conn_io.rs` and
//! `response.rs`; once started, a process lets go of the pages only
//! starting needed (`startup_pages.rs`). [`Server`] is the entry point a binary uses: the stock
//! `axkit` command and any custom binary with extra Rust plugins alike.

pub(crate) mod background;
mod conn_io;
pub(crate) mod explain;
mod hooks;
mod idle;
pub(crate) mod master;
pub(crate) mod master_log;
mod metrics;
mod orphans;
mod park;
mod pid_file;
pub(crate) mod plugin_listeners;
pub(crate) mod privileges;
pub(crate) mod response;
pub(crate) mod runtime;
pub(crate) mod shared_memory;
mod startup_pages;
mod stdout;
mod systemd;
mod trace;
pub(crate) mod walk;
mod worker;

// The seam to the plugin API: a Context holds the server's side of its
// request, and its I/O methods call `response`.
pub(crate) use hooks::catching;
pub(crate) use runtime::{LogRoute, RequestRt};
// What a plugin's `Worker` holds.
pub(crate) use runtime::WorkerRt as WorkerHandle;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{self, Config, ConfigError, Source};
use crate::plugin::{log_to_stderr, Catalog, Level, PluginSource, PluginSpec, RustPlugins};

/// Set in a worker's environment: it was started by a master, as worker
/// `INDEX/COUNT` of its generation (see [`crate::plugin::Worker::index`]).
pub(crate) const WORKER_ENV: &str = "AXKIT_WORKER";
/// The listening sockets a worker inherits: `FD=ADDR,FD=ADDR`, ADDR being
/// the address as configured (it may have port 0).
pub(crate) const LISTEN_ENV: &str = "AXKIT_LISTEN_FDS";
/// Set in a worker's environment: the configuration generation it runs (1
/// at start, one more per reload).
pub(crate) const GENERATION_ENV: &str = "AXKIT_GENERATION";
/// Set in a worker's environment when it replaces one that died.
pub(crate) const RESPAWN_ENV: &str = "AXKIT_RESPAWN";
/// Set in a worker's environment: the write end of the pipe on which it
/// asks its master for things (see [`ask_master`]).
pub(crate) const CONTROL_ENV: &str = "AXKIT_CONTROL_FD";

/// The config this process runs, as the command line named it (a path,
/// or `<built-in>`).
pub(crate) static CONFIG_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What a worker may ask its master, one byte on the control pipe.
pub(crate) const ASK_RELOAD: u8 = b'R';

/// The worker's end of the control pipe.
static CONTROL: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();

/// Worker side: keep the control pipe the master passed ([`CONTROL_ENV`]),
/// close-on-exec so that a CGI process does not inherit it.
pub(crate) fn adopt_control_fd() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let Some(fd) = std::env::var(CONTROL_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    // SAFETY: the master passed this descriptor to us for exactly this;
    // fcntl only changes its flags.
    let owned = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return;
        }
        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        OwnedFd::from_raw_fd(fd)
    };
    let _ = CONTROL.set(owned);
}

/// Ask the master for `what` (a byte such as [`ASK_RELOAD`]): Err in a
/// process that has no master (`--no-master`) or when the pipe fails.
/// Whichever privileges the worker dropped to, a pipe reaches the master,
/// where a signal from an unprivileged worker to a root master would not.
pub(crate) fn ask_master(what: u8) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let fd = CONTROL
        .get()
        .ok_or("this process has no master (--no-master)")?;
    // SAFETY: a one-byte write from a live buffer to our descriptor; the
    // pipe is non-blocking and a write under PIPE_BUF is atomic.
    let n = unsafe { libc::write(fd.as_raw_fd(), [what].as_ptr().cast(), 1) };
    if n == 1 {
        Ok(())
    } else {
        Err(format!(
            "cannot reach the master: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// A server binary: the `axkit` command line, with the plugins and plugin
/// sources it is given. The stock `axkit` command is
/// `Server::new().plugins(axkit_plugins::builtin()).source(axkit_lua::LuaSource::new()).main()`.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     // No plugin: a config can load none, and every request is a 404.
///     axkit::Server::new().main()
/// }
/// ```
pub struct Server {
    rust: RustPlugins,
    sources: Vec<Box<dyn PluginSource>>,
    builtin_config: fn() -> String,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// A server with no plugins yet: add them with [`plugin`](Self::plugin)
    /// and [`plugins`](Self::plugins) (the built-in ones are in the
    /// `axkit-plugins` crate) and sources of script plugins with
    /// [`source`](Self::source).
    pub fn new() -> Server {
        Server {
            rust: RustPlugins::default(),
            sources: Vec::new(),
            builtin_config: crate::cli::default_builtin_config,
        }
    }

    /// Add several plugins (`axkit_plugins::builtin()`, say).
    pub fn plugins(mut self, specs: impl IntoIterator<Item = PluginSpec>) -> Server {
        for spec in specs {
            self.rust.add(spec);
        }
        self
    }

    /// Add a plugin (a third-party plugin, or a replacement for a built-in
    /// one of the same name).
    pub fn plugin(mut self, spec: PluginSpec) -> Server {
        self.rust.add(spec);
        self
    }

    /// Add a source of plugins, such as a script host (searched, in the
    /// order added, for a `Plugin NAME` that is not compiled in).
    pub fn source(mut self, source: impl PluginSource + 'static) -> Server {
        self.sources.push(Box::new(source));
        self
    }

    /// The config the command runs when given no `-c FILE` (`cargo run`'s
    /// demo): its text, made by `config`. By default it serves `demo/` as
    /// static files on 127.0.0.1:8000. `config` is called in the master and
    /// again in each worker it starts, so it must give the same text each
    /// time; relative paths in it are taken from the working directory, as
    /// in a config file.
    pub fn builtin_config(mut self, config: fn() -> String) -> Server {
        self.builtin_config = config;
        self
    }

    /// Run the command line (`axkit --help` says what it takes).
    pub fn main(self) -> ExitCode {
        let mut sources: Vec<Box<dyn PluginSource>> = vec![Box::new(self.rust)];
        sources.extend(self.sources);
        crate::cli::main(Catalog::new(sources), self.builtin_config)
    }
}

/// Load and validate a config.
pub(crate) fn load_config(source: &Source, catalog: &Catalog) -> Result<Config, Vec<ConfigError>> {
    let config = config::load(source, catalog)?;
    let mut errors = privileges::check(&config);
    errors.extend(plugin_listeners::check(&config, catalog));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// Print every config error, one per line, to stderr.
pub(crate) fn report_errors(errors: &[ConfigError]) {
    let mut err = std::io::stderr().lock();
    for e in errors {
        let _ = writeln!(err, "axkit: {e}");
    }
}

/// Log a loaded config's warnings. Only where a config is first loaded
/// (the master, a single process): a worker loads the same config again
/// and would repeat them.
pub(crate) fn log_warnings(config: &Config) {
    for w in &config.warnings {
        master_log::log(Level::Warn, &w.to_string());
    }
}

/// Resolves when stdin (a pipe from the master) reaches EOF or fails: the
/// master is gone and the worker must not outlive it.
pub(crate) async fn wait_for_eof_on_stdin() {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: fd 0 is the pipe the master gave us; nothing else uses it.
    let fd = unsafe { OwnedFd::from_raw_fd(0) };
    let Ok(mut pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
        return std::future::pending().await;
    };
    let mut buf = [0u8; 64];
    loop {
        use tokio::io::AsyncReadExt;
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Run one worker in this process (`--no-master`, or a worker started by
/// the master with inherited sockets).
pub(crate) fn run_worker(
    config: Config,
    catalog: &Catalog,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    ready: impl FnOnce(),
) -> ExitCode {
    // A panic in a hook is caught and answered with a 500 by the hook
    // runner; this puts the panic's message and location in the log format
    // instead of Rust's raw "thread 'main' panicked" text.
    std::panic::set_hook(Box::new(|info| {
        log_to_stderr(Level::Error, &format!("panic: {info}"));
    }));
    close_inherited_on_exec();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|(a, _)| *a).collect();
    let config = Arc::new(config);
    let worker = match runtime::WorkerRt::new(config.clone(), catalog, &addrs) {
        Ok(w) => std::rc::Rc::new(w),
        Err(errors) => {
            for e in errors {
                log_to_stderr(Level::Crit, &e);
            }
            return ExitCode::FAILURE;
        }
    };
    // Root opened what the plugins' constructors open (log files); no
    // plugin's background work and no request runs with it.
    if let Err(e) = privileges::drop_privileges(&config) {
        log_to_stderr(Level::Crit, &format!("cannot run as User: {e}"));
        return ExitCode::FAILURE;
    }
    let runtime = match event_loop() {
        Ok(rt) => rt,
        Err(e) => {
            log_to_stderr(Level::Crit, &e);
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let sockets = listeners.into_iter().map(|(_, l)| l).collect();
    local.block_on(&runtime, worker::serve(worker, sockets, ready));
    // Requests still in flight drop their forms (and uploads) with it.
    drop(local);
    crate::plugin::form::remove_upload_dir();
    ExitCode::SUCCESS
}

/// This worker's index and its generation's worker count, from
/// [`WORKER_ENV`]; a process the master did not start is worker 0 of 1.
fn worker_place() -> (usize, usize) {
    std::env::var(WORKER_ENV)
        .ok()
        .and_then(|v| {
            let (index, count) = v.split_once('/')?;
            Some((index.parse().ok()?, count.parse().ok()?))
        })
        .filter(|(index, count)| index < count)
        .unwrap_or((0, 1))
}

/// This worker's configuration generation, from [`GENERATION_ENV`] (1 in
/// a process the master did not start), and whether it replaces a worker
/// that died.
fn worker_generation() -> (u64, bool) {
    let generation = std::env::var(GENERATION_ENV)
        .ok()
        .and_then(|g| g.parse().ok())
        .unwrap_or(1);
    (generation, std::env::var_os(RESPAWN_ENV).is_some())
}

/// A process's event loop: one thread.
pub(crate) fn event_loop() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the event loop: {e}"))
}

/// Build every plugin of `config` once, as a worker would, and drop them:
/// what `--check` does after the config itself loaded. Ok: the plugins'
/// own warnings, and those about plugins that can never be called where
/// they are loaded.
pub(crate) fn build_plugins(config: Config, catalog: &Catalog) -> Result<Vec<String>, Vec<String>> {
    runtime::WorkerRt::new(Arc::new(config), catalog, &[]).map(|mut w| {
        let mut out = std::mem::take(&mut w.plugin_warnings);
        out.extend(w.unreachable_plugins());
        out
    })
}

/// Mark every descriptor above stderr close-on-exec. The server's own are
/// already; this catches any the worker inherited (a make jobserver's
/// pipes, a supervisor's sockets; under a master, its sockets and regions,
/// which the worker has opened as its own by now), which the programs it
/// starts (CGI scripts, Lua's `process.run`) would otherwise inherit in
/// turn, whichever plugin starts them.
fn close_inherited_on_exec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD change no state but the flag; a
        // descriptor closed meanwhile (the directory's own) just fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}
