//! [`Worker`]: the worker process a plugin runs in, as
//! [`Plugin::worker_start`](crate::Plugin::worker_start) hands it over:
//! which of the generation's workers this is, when it begins to drain, and
//! its log. Background work that is not tied to a request (timers,
//! subscriptions, pool upkeep) starts there and ends when the worker
//! drains.

use std::rc::Weak;

use crate::server::WorkerHandle;

use super::log::Level;

/// The worker process a plugin runs in. Cheap to clone; a plugin may keep
/// it for the life of the worker.
#[derive(Clone)]
pub struct Worker {
    /// Weak: the worker holds its plugins, which may hold this.
    pub(crate) rt: Weak<WorkerHandle>,
    pub(crate) index: usize,
    pub(crate) count: usize,
}

impl Worker {
    /// This worker's place in its generation, from 0 to
    /// [`count`](Self::count) − 1. A worker restarted after a crash takes
    /// the place of the one it replaces, so no two running workers of a
    /// generation share an index (across a reload, the old generation's
    /// worker 0 drains while the new one's starts). A single process
    /// (`--no-master`) is worker 0 of 1.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers the generation has (`Workers`).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The configuration generation this worker runs: 1 at start, one
    /// more per reload (SIGHUP); a binary upgrade's new master starts at 1
    /// again.
    pub fn generation(&self) -> u64 {
        self.rt.upgrade().map_or(1, |rt| rt.generation)
    }

    /// The config the server runs, as its command line named it (a path,
    /// or `<built-in>`).
    pub fn config_name(&self) -> &'static str {
        crate::server::CONFIG_NAME
            .get()
            .map_or("<built-in>", String::as_str)
    }

    /// Change `LogLevel` at run time in every worker of this generation
    /// and of older ones still draining (the next reload's workers go by
    /// their config again). Works through the metrics region in shared
    /// memory: Err when it is not in use (no `stats` or `console` plugin
    /// loaded).
    pub fn set_log_level(&self, level: Level) -> Result<(), String> {
        super::metrics::set_log_level(self.generation(), level)
    }

    /// The `LogLevel` this worker logs at now.
    pub fn log_level(&self) -> Level {
        self.rt.upgrade().map_or(Level::Info, |rt| rt.log_level())
    }

    /// Ask the master to reload the configuration, as SIGHUP does. Err in
    /// a process without a master (`--no-master`). Whether the reload
    /// worked is the master's to say (its log; a new generation).
    pub fn request_reload(&self) -> Result<(), String> {
        crate::server::ask_master(crate::server::ASK_RELOAD)
    }

    /// Whether the worker has begun to drain.
    pub fn is_stopping(&self) -> bool {
        self.rt.upgrade().is_none_or(|rt| rt.shutting_down.get())
    }

    /// Resolves when the worker begins to drain (SIGTERM or SIGINT, a
    /// reload that replaces it, or its master gone): background work
    /// should end then. The worker exits once its connections are done,
    /// whether or not background work has.
    pub async fn stopping(&self) {
        let Some(rt) = self.rt.upgrade() else {
            return;
        };
        // Registered before the flag is read: `notify_waiters` wakes a
        // `Notified` made before it, even one not polled yet.
        let notified = rt.shutdown.notified();
        if rt.shutting_down.get() {
            return;
        }
        notified.await;
    }

    /// A log line through the worker's global `logging` hooks (the
    /// `ErrorLog`, a script's sink…), at or below `LogLevel`; to stderr
    /// when no plugin logs.
    pub fn log(&self, level: Level, message: &str) {
        match self.rt.upgrade() {
            Some(rt) => rt.log(level, message),
            None => super::log::log_to_stderr(level, message),
        }
    }
}
