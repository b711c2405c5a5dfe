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
